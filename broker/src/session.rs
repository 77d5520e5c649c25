//! The MQTT protocol state of one connection: packets and `now` in, bytes to send out.
//!
//! No sockets, no tasks, no clock: [`connection`](crate::connection) feeds it frames and the time, and writes what
//! it leaves in the output buffer. Routing goes through the synchronous [`Router`].

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use mqtt_codec::{
    Ack, ConnAck, Connect, DecodeError, Disconnect, EncodeError, List, Packet, PacketType, Properties, ProtocolVersion,
    Publish, QoS, QosPid, ReasonCode, SubAck, TopicName, UnsubAck, decode,
};
use tokio::time::Instant;

use crate::message::Message;
use crate::queue::Send;
use crate::router::{ConnLink, Counters, Router, SessionHandle};

/// What ends a connection from the protocol's side.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// A packet broke the codec's rules.
    #[error("malformed packet: {0}")]
    Decode(#[from] DecodeError),
    /// A packet the client must not send now (a second CONNECT [MQTT-3.1.0-2], or a server-only packet).
    #[error("unexpected {0:?} packet")]
    Unexpected(PacketType),
    /// Nothing arrived within 1.5 times the keep alive [MQTT-3.1.2-24].
    #[error("keep alive timeout")]
    KeepAliveTimeout,
    /// A packet could not be encoded (an internal error).
    #[error("encode: {0}")]
    Encode(#[from] EncodeError),
}

impl ProtocolError {
    /// The MQTT 5 reason code for the DISCONNECT that reports this error.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            Self::Decode(e) => e.reason_code(),
            Self::Unexpected(_) => ReasonCode::ProtocolError,
            Self::KeepAliveTimeout => ReasonCode::KeepAliveTimeout,
            Self::Encode(_) => ReasonCode::ImplementationSpecificError,
        }
    }
}

/// Why a CONNECT was refused; the caller sends the CONNACK in `bytes` and closes.
#[derive(Debug)]
pub struct Refused {
    /// The encoded CONNACK.
    pub connack: Vec<u8>,
    /// The reason.
    pub code: ReasonCode,
}

/// What the connection should do after a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep going.
    Continue,
    /// The client sent DISCONNECT: close without publishing the will.
    Disconnect,
}

/// Broker-wide context a session needs.
#[derive(Debug, Clone)]
pub struct Context {
    /// The router.
    pub router: Arc<Mutex<Router>>,
    /// Counters.
    pub counters: Arc<Counters>,
}

impl Context {
    /// Locks the router. A poisoned lock is recovered: the router's state stays consistent per operation.
    pub fn router(&self) -> MutexGuard<'_, Router> {
        self.router.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Most bytes queued for writing per wakeup before the connection flushes and comes back for more.
const MAX_BATCH_BYTES: usize = 64 * 1024;

/// The protocol state of one live connection.
pub struct Session {
    ctx: Context,
    version: ProtocolVersion,
    handle: Arc<SessionHandle>,
    conn_id: u64,
    keep_alive: Option<Duration>,
    last_rx: Instant,
    will: Option<Message>,
    out: Vec<u8>,
}

fn encode_into(out: &mut Vec<u8>, packet: &Packet<'_>, version: ProtocolVersion) -> Result<(), EncodeError> {
    let len = packet.encoded_len(version)?;
    let start = out.len();
    out.resize(start.saturating_add(len), 0);
    let written = packet.encode(version, out.get_mut(start..).unwrap_or_default());
    if written.is_err() {
        out.truncate(start);
    }
    written.map(|_| ())
}

/// Encodes a CONNACK refusing a client.
pub fn refuse(version: ProtocolVersion, code: ReasonCode) -> Refused {
    let mut connack = Vec::new();
    let packet = Packet::ConnAck(ConnAck { session_present: false, code, properties: Properties::empty() });
    // Every refusal code used here exists in MQTT 3.x; if not, the connection closes without a CONNACK.
    let _ = encode_into(&mut connack, &packet, version);
    Refused { connack, code }
}

/// A client identifier the broker assigns to a client that sent an empty one.
fn assign_client_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    format!("auto-{:016x}", h.finish())
}

impl Session {
    /// Handles CONNECT: attaches to (or creates) the session and queues the CONNACK and any resends.
    ///
    /// # Errors
    /// [`Refused`] with the CONNACK to send when the client is refused.
    pub fn connect(
        ctx: Context,
        connect: &Connect<'_>,
        link: ConnLink,
        max_keepalive: u16,
        now: Instant,
    ) -> Result<Self, Refused> {
        let version = connect.protocol;
        let client_id = if connect.client_id.is_empty() {
            // An empty id needs a clean session in MQTT 3.x [MQTT-3.1.3-8]; MQTT 5 assigns one either way.
            if !connect.clean_start && !version.is_v5() {
                return Err(refuse(version, ReasonCode::ClientIdentifierNotValid));
            }
            assign_client_id()
        } else {
            connect.client_id.to_owned()
        };
        let will = connect.will.map(|w| Message::from_parts(w.topic.as_str(), w.payload, w.qos, w.retain));
        let keep_alive = match (connect.keep_alive, max_keepalive) {
            (0, 0) => None,
            (0, max) | (max, 0) => Some(max),
            (k, max) => Some(k.min(max)),
        };
        let conn_id = link.id;
        let (handle, session_present) = ctx.router().connect(&client_id, connect.clean_start, link);
        ctx.counters.clients_connected.fetch_add(1, Ordering::Relaxed);
        let mut session = Self {
            ctx,
            version,
            handle,
            conn_id,
            // The server allows one and a half keep alive periods [MQTT-3.1.2-24].
            keep_alive: keep_alive.map(|k| Duration::from_millis(u64::from(k) * 1500)),
            last_rx: now,
            will,
            out: Vec::with_capacity(64),
        };
        let connack =
            Packet::ConnAck(ConnAck { session_present, code: ReasonCode::Success, properties: Properties::empty() });
        if encode_into(&mut session.out, &connack, version).is_err() {
            session.will = None;
            session.close();
            return Err(refuse(version, ReasonCode::ServerUnavailable));
        }
        tracing::debug!(client_id, session_present, ?version, "connected");
        Ok(session)
    }

    /// The client identifier (assigned by the broker when the client sent none).
    pub fn client_id(&self) -> &str {
        &self.handle.client_id
    }

    /// The protocol version.
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// The session handle (its wake signal tells the connection about new messages).
    pub fn handle(&self) -> &Arc<SessionHandle> {
        &self.handle
    }

    /// Bytes waiting to be written.
    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    /// When [`Session::on_timeout`] must be called, if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.keep_alive.map(|k| self.last_rx + k)
    }

    /// Checks the keep alive.
    ///
    /// # Errors
    /// [`ProtocolError::KeepAliveTimeout`] once 1.5 keep alive periods passed without a packet.
    pub fn on_timeout(&mut self, now: Instant) -> Result<(), ProtocolError> {
        match self.next_deadline() {
            Some(deadline) if now >= deadline => Err(ProtocolError::KeepAliveTimeout),
            _ => Ok(()),
        }
    }

    fn send(&mut self, packet: &Packet<'_>) -> Result<(), ProtocolError> {
        Ok(encode_into(&mut self.out, packet, self.version)?)
    }

    /// Handles one framed packet.
    ///
    /// # Errors
    /// A [`ProtocolError`] closes the connection (and publishes the will).
    pub fn on_packet(&mut self, now: Instant, frame: &Bytes) -> Result<Flow, ProtocolError> {
        self.last_rx = now;
        let packet = decode(frame, self.version)?;
        match packet {
            Packet::Publish(p) => self.on_publish(frame, &p)?,
            Packet::PubAck(a) => {
                self.handle.lock().outbox.on_puback(a.packet_id);
            }
            Packet::PubRec(a) => {
                if !self.handle.lock().outbox.on_pubrec(a.packet_id) && self.version.is_v5() {
                    let mut rel = Ack::new(a.packet_id);
                    rel.reason = ReasonCode::PacketIdentifierNotFound;
                    self.send(&Packet::PubRel(rel))?;
                }
            }
            Packet::PubComp(a) => {
                self.handle.lock().outbox.on_pubcomp(a.packet_id);
            }
            Packet::PubRel(a) => {
                let known = self.handle.lock().inbound_qos2.remove(&a.packet_id);
                let mut comp = Ack::new(a.packet_id);
                if !known && self.version.is_v5() {
                    comp.reason = ReasonCode::PacketIdentifierNotFound;
                }
                // PUBCOMP even for an unknown id: our earlier PUBCOMP may have been lost [MQTT-4.3.3].
                self.send(&Packet::PubComp(comp))?;
            }
            Packet::Subscribe(s) => {
                let mut codes = Vec::new();
                {
                    let mut router = self.ctx.router();
                    for sub in s.subscriptions.iter() {
                        let code = if sub.filter.shared().is_some() {
                            // Shared subscriptions arrive with MQTT 5 support.
                            ReasonCode::UnspecifiedError
                        } else {
                            match router.subscribe(&self.handle, sub.filter.as_str(), sub.options.qos) {
                                Ok(QoS::AtMostOnce) => ReasonCode::Success,
                                Ok(QoS::AtLeastOnce) => ReasonCode::GrantedQoS1,
                                Ok(QoS::ExactlyOnce) => ReasonCode::GrantedQoS2,
                                Err(_) => ReasonCode::UnspecifiedError,
                            }
                        };
                        codes.push(code);
                    }
                }
                let ack =
                    SubAck { packet_id: s.packet_id, properties: Properties::empty(), codes: List::from_slice(&codes) };
                self.send(&Packet::SubAck(ack))?;
            }
            Packet::Unsubscribe(u) => {
                let mut codes = Vec::new();
                {
                    let mut router = self.ctx.router();
                    for f in u.filters.iter() {
                        let existed = router.unsubscribe(&self.handle, f.as_str());
                        codes.push(if existed { ReasonCode::Success } else { ReasonCode::NoSubscriptionExisted });
                    }
                }
                let codes = if self.version.is_v5() { List::from_slice(&codes) } else { List::from_slice(&[]) };
                let ack = UnsubAck { packet_id: u.packet_id, properties: Properties::empty(), codes };
                self.send(&Packet::UnsubAck(ack))?;
            }
            Packet::PingReq => self.send(&Packet::PingResp)?,
            Packet::Disconnect(d) => {
                // A normal DISCONNECT discards the will; MQTT 5's 0x04 asks for it to be published.
                if d.reason != ReasonCode::DisconnectWithWillMessage {
                    self.will = None;
                }
                return Ok(Flow::Disconnect);
            }
            other => return Err(ProtocolError::Unexpected(other.packet_type())),
        }
        Ok(Flow::Continue)
    }

    fn on_publish(&mut self, frame: &Bytes, p: &Publish<'_>) -> Result<(), ProtocolError> {
        self.ctx.counters.messages_received.fetch_add(1, Ordering::Relaxed);
        let topic = p.topic.as_str();
        // Clients cannot publish into `$` topics; the message is acknowledged and dropped.
        let routable = !p.topic.is_system();
        if !routable {
            tracing::debug!(client_id = self.client_id(), topic, "publish to a $ topic ignored");
        }
        let msg =
            || Message::new(frame.slice_ref(topic.as_bytes()), frame.slice_ref(p.payload), p.qos_pid.qos(), p.retain);
        match p.qos_pid {
            QosPid::AtMostOnce => {
                if routable {
                    self.ctx.router().publish(msg());
                }
            }
            QosPid::AtLeastOnce(id) => {
                if routable {
                    self.ctx.router().publish(msg());
                }
                self.send(&Packet::PubAck(Ack::new(id)))?;
            }
            QosPid::ExactlyOnce(id) => {
                // Exactly once: the id is remembered until PUBREL, so a resent PUBLISH is not routed again.
                let first = self.handle.lock().inbound_qos2.insert(id);
                if first && routable {
                    self.ctx.router().publish(msg());
                }
                self.send(&Packet::PubRec(Ack::new(id)))?;
            }
        }
        Ok(())
    }

    /// Moves what the outbox has ready into the output buffer, up to a batch limit. Returns whether more is ready.
    ///
    /// # Errors
    /// [`ProtocolError::Encode`] on an internal encoding failure.
    pub fn poll_outbox(&mut self) -> Result<bool, ProtocolError> {
        let mut state = self.handle.lock();
        let mut delivered = 0u64;
        let result = loop {
            if self.out.len() >= MAX_BATCH_BYTES {
                break Ok(state.outbox.has_pending());
            }
            let Some(next) = state.outbox.next_send() else { break Ok(false) };
            let encoded = match next {
                Send::Publish { id, msg, qos, retain, dup } => {
                    delivered += 1;
                    let qos_pid = match (qos, id) {
                        (QoS::AtLeastOnce, Some(id)) => QosPid::AtLeastOnce(id),
                        (QoS::ExactlyOnce, Some(id)) => QosPid::ExactlyOnce(id),
                        _ => QosPid::AtMostOnce,
                    };
                    let topic = TopicName::new(msg.topic()).map_err(|_| EncodeError::InvalidValue);
                    topic.and_then(|topic| {
                        let publish = Publish {
                            dup: dup && qos_pid != QosPid::AtMostOnce,
                            qos_pid,
                            retain,
                            topic,
                            properties: Properties::empty(),
                            payload: &msg.payload,
                        };
                        encode_into(&mut self.out, &Packet::Publish(publish), self.version)
                    })
                }
                Send::PubRel(id) => encode_into(&mut self.out, &Packet::PubRel(Ack::new(id)), self.version),
            };
            if let Err(e) = encoded {
                break Err(ProtocolError::Encode(e));
            }
        };
        drop(state);
        self.ctx.counters.messages_delivered.fetch_add(delivered, Ordering::Relaxed);
        result
    }

    /// The encoded DISCONNECT for an MQTT 5 client, before the server closes for `reason`.
    pub fn disconnect_packet(&self, reason: ReasonCode) -> Option<Vec<u8>> {
        if !self.version.is_v5() {
            return None;
        }
        let mut out = Vec::new();
        encode_into(&mut out, &Packet::Disconnect(Disconnect::with_reason(reason)), self.version).ok()?;
        Some(out)
    }

    /// Ends the connection: publishes the will unless the client sent a normal DISCONNECT, and detaches from the
    /// session (discarding it if clean).
    pub fn close(mut self) {
        let mut router = self.ctx.router();
        if let Some(will) = self.will.take() {
            tracing::debug!(client_id = &*self.handle.client_id, topic = will.topic(), "publishing will");
            if !will.topic().starts_with('$') {
                router.publish(will);
            }
        }
        router.disconnect(&self.handle, self.conn_id);
        drop(router);
        self.ctx.counters.clients_connected.fetch_sub(1, Ordering::Relaxed);
    }
}
