//! The MQTT protocol state of one connection: packets and `now` in, bytes to send out.
//!
//! No sockets, no tasks, no clock: [`connection`](crate::connection) feeds it frames and the time, and writes what
//! it leaves in the output buffer. Routing goes through the synchronous [`Router`].
//!
//! - [`connect`]: the CONNECT handshake, with MQTT 5 enhanced authentication ([`auth`]).
//! - `inbound`: PUBLISH, SUBSCRIBE and UNSUBSCRIBE from the client.
//! - `outbound`: deliveries from the session's outbox to the client.
//! - `notice`: rate-limited `info` lines for what is dropped or refused without the client being told.
//! - `retained`: the retained messages of new subscriptions, sent in bounded steps.

pub mod auth;
pub mod connect;
mod inbound;
mod limits;
mod notice;
mod outbound;
mod retained;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use mqtt_codec::{
    Ack, Auth, DecodeError, Disconnect, EncodeError, Packet, PacketId, PacketType, Properties, Property,
    ProtocolVersion, ReasonCode, decode,
};
use tokio::time::Instant;

use crate::config::MqttSettings;
use crate::journal::Lsn;
use crate::message::Message;
use crate::persist::Durable;
use crate::queue::InflightState;
use crate::router::{Counters, RetainedScan, Router, SessionHandle};
use auth::{AuthExchange, AuthStep, Authenticator};

pub use connect::{Handshake, Pending, Refused, TakeOver, handshake};

/// What ends a connection from the protocol's side.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// A packet broke the codec's rules: the log names the rule, and whether the packet was malformed (DISCONNECT
    /// `0x81`) or well-formed but against the protocol (`0x82`, or a more precise code).
    #[error("{kind}: {0}{spec}", kind = decode_kind(.0), spec = SpecRef(.0.spec()))]
    Decode(#[from] DecodeError),
    /// A packet the client must not send now (a second CONNECT [MQTT-3.1.0-2], or a server-only packet).
    #[error("protocol error: unexpected {0:?} packet")]
    Unexpected(PacketType),
    /// Nothing arrived within 1.5 times the keep alive [MQTT-3.1.2-24].
    #[error("keep alive timeout")]
    KeepAliveTimeout,
    /// A rule of the session broken, with the reason code the server reports.
    #[error("{1} ({0:?})")]
    Violation(ReasonCode, &'static str),
    /// A packet could not be encoded (an internal error).
    #[error("encode: {0}")]
    Encode(#[from] EncodeError),
}

/// How a decode error is described in the log, after the reason code that reports it.
fn decode_kind(e: &DecodeError) -> &'static str {
    match e.reason_code() {
        ReasonCode::MalformedPacket => "malformed packet",
        ReasonCode::PacketTooLarge => "packet too large",
        _ => "protocol error",
    }
}

/// ` [MQTT-x.y.z-n]` after an error's text, where the rule is numbered.
struct SpecRef(Option<&'static str>);

impl std::fmt::Display for SpecRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(id) => write!(f, " [{id}]"),
            None => Ok(()),
        }
    }
}

impl ProtocolError {
    /// The MQTT 5 reason code for the DISCONNECT that reports this error.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            Self::Decode(e) => e.reason_code(),
            Self::Unexpected(_) => ReasonCode::ProtocolError,
            Self::KeepAliveTimeout => ReasonCode::KeepAliveTimeout,
            Self::Violation(code, _) => *code,
            Self::Encode(_) => ReasonCode::ImplementationSpecificError,
        }
    }
}

/// What the connection should do after a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep going.
    Continue,
    /// The client sent DISCONNECT: flush and close.
    Disconnect,
}

/// What the server offers and enforces, derived from the settings once.
#[derive(Debug, Clone, Default)]
pub struct Capabilities {
    /// Protocol features (advertised to MQTT 5 clients in CONNACK).
    pub mqtt: MqttSettings,
    /// Largest packet accepted (advertised as Maximum Packet Size).
    pub max_packet_size: u32,
    /// Largest keep alive granted; 0 keeps the client's.
    pub max_keepalive: u16,
    /// Most topic filters one SUBSCRIBE may carry; 0: no limit.
    pub max_filters_per_subscribe: usize,
    /// Seconds a keep alive 0 connection may go without a packet; 0: forever.
    pub idle_timeout_secs: u16,
    /// Sessions held at once; 0: no limit.
    pub max_sessions: usize,
    /// Expiry of MQTT 3.x persistent sessions; `None` never.
    pub persistent_session_expiry: Option<Duration>,
}

impl Capabilities {
    /// What the settings offer.
    pub fn from_settings(settings: &crate::Settings) -> Self {
        Self {
            mqtt: settings.mqtt.clone(),
            max_packet_size: settings.limits.max_packet_size,
            max_keepalive: settings.sessions.max_keepalive,
            max_filters_per_subscribe: settings.limits.max_filters_per_subscribe,
            idle_timeout_secs: settings.sessions.idle_timeout_secs,
            max_sessions: settings.limits.max_sessions,
            persistent_session_expiry: settings.sessions.persistent_session_expiry,
        }
    }
}

/// Broker-wide context a session needs.
#[derive(Clone)]
pub struct Context {
    /// The router.
    pub router: Arc<Mutex<Router>>,
    /// Counters.
    pub counters: Arc<Counters>,
    /// What the server offers.
    pub caps: Arc<Capabilities>,
    /// Enhanced authentication methods.
    pub auth: Arc<dyn Authenticator>,
    /// The journal, when persistence is on.
    pub durable: Option<Durable>,
    /// The listener's authentication, when it has any (see [`crate::auth`]); `None` lets everyone do everything.
    pub(crate) gate: Option<Arc<crate::auth::Gate>>,
}

impl Context {
    /// A context without persistence or authentication (everyone may do everything), as tests and the fuzz
    /// targets drive sessions.
    pub fn new(
        router: Arc<Mutex<Router>>,
        counters: Arc<Counters>,
        caps: Arc<Capabilities>,
        auth: Arc<dyn Authenticator>,
    ) -> Self {
        Self { router, counters, caps, auth, durable: None, gate: None }
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("caps", &self.caps).finish_non_exhaustive()
    }
}

impl Context {
    /// Locks the router. A poisoned lock is recovered: the router's state stays consistent per operation.
    pub fn router(&self) -> MutexGuard<'_, Router> {
        self.router.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Encodes a packet at the end of `out`.
pub(crate) fn encode_into(out: &mut Vec<u8>, packet: &Packet<'_>, version: ProtocolVersion) -> Result<(), EncodeError> {
    let len = packet.encoded_len(version)?;
    let start = out.len();
    out.resize(start.saturating_add(len), 0);
    let written = packet.encode(version, out.get_mut(start..).unwrap_or_default());
    if written.is_err() {
        out.truncate(start);
    }
    written.map(|_| ())
}

/// The protocol state of one live connection; it ends with the connection. What outlives the connection is the
/// router's [`crate::router::StoredSession`], reached through [`Session::handle`].
pub struct Session {
    ctx: Context,
    version: ProtocolVersion,
    handle: Arc<SessionHandle>,
    conn_id: u64,
    keep_alive: Option<Duration>,
    last_rx: Instant,
    /// The will and its delay. Behind a pointer: most clients set none, and an idle connection's future holds the
    /// session; shared with the stored session, which keeps it for checkpoints while persistence is on.
    will: Option<Arc<(Message, Duration)>>,
    out: Vec<u8>,
    /// The session expiry requested at CONNECT (zero may not become non-zero at DISCONNECT).
    session_expiry: Option<Duration>,
    /// MQTT 5: the client's Maximum Packet Size (`u32::MAX` if it set none).
    client_max_packet: u32,
    /// MQTT 5: aliases the client may receive.
    client_topic_alias_max: u16,
    /// MQTT 5: whether reason strings and user properties may go on acks.
    problem_information: bool,
    /// MQTT 5 topic aliases, made on first use: most clients use none, and every connection's future holds the
    /// session (two empty maps are 96 bytes).
    aliases: Option<Box<Aliases>>,
    /// MQTT 5 enhanced authentication: the method of this connection, and a re-authentication under way.
    auth_method: Option<String>,
    reauth: Option<Box<dyn AuthExchange>>,
    /// A subscriber whose queue became backlogged with messages this client published.
    backlogged: Option<Arc<SessionHandle>>,
    /// PUBLISH packets read since the last [`Session::poll_outbox`], added to the metrics there (made on the first
    /// one: 8 bytes in a subscriber's session).
    received: Option<Box<crate::metrics::ReceivedTally>>,
    /// The journal position that must be durable before the output is sent (see [`Session::take_durable_wait`]).
    durable_wait: Option<Lsn>,
    /// What this client may publish and read; `None`: everything (see [`crate::auth`]).
    access: Option<Arc<crate::auth::ClientAccess>>,
    /// Retained messages still to send for this connection's new subscriptions, oldest first; made on first use.
    /// Boxed: 8 bytes in every connection's future instead of an empty queue's 32.
    #[expect(clippy::box_collection, reason = "an idle connection's future holds the session")]
    retained: Option<Box<VecDeque<RetainedScan>>>,
}

/// A connection's MQTT 5 topic aliases.
#[derive(Default)]
struct Aliases {
    /// Set by the client: alias to topic.
    inbound: HashMap<u16, Bytes>,
    /// Set by the broker: topic to alias.
    outbound: HashMap<Box<str>, u16>,
}

impl Session {
    /// The topic alias tables, made on first use.
    fn aliases(&mut self) -> &mut Aliases {
        self.aliases.get_or_insert_with(Box::default)
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

    /// A subscriber that messages published on this connection left backlogged (its queue long and growing): the
    /// connection waits with [`SessionHandle::caught_up`] before it reads more, so TCP slows the publisher down
    /// instead of the broker holding an ever longer queue.
    pub fn take_backlogged(&mut self) -> Option<Arc<SessionHandle>> {
        let slow = self.backlogged.take()?;
        // A client far behind on its own deliveries does not wait: two clients that publish to each other while
        // both are behind would wait for each other, and neither would send.
        if self.handle.lock().holds_publishers() {
            return None;
        }
        Some(slow)
    }

    /// Bytes waiting to be written.
    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    /// The journal position the output must wait for: what the acknowledgements in it answer for (a message stored
    /// for persistent sessions, a subscription, an inbound QoS 2 identifier) is durable only once the journal is
    /// durable there. `None` when nothing waits (no persistence, or nothing durable was changed). The connection
    /// waits with [`Durable::wait`] before it writes the output.
    pub fn take_durable_wait(&mut self) -> Option<Lsn> {
        self.durable_wait.take()
    }

    /// The journal, when persistence is on.
    pub fn durable(&self) -> Option<&Durable> {
        self.ctx.durable.as_ref()
    }

    /// Makes the output wait for `lsn` too.
    pub fn wait_until_durable(&mut self, lsn: Lsn) {
        self.wait_for(Some(lsn));
    }

    fn wait_for(&mut self, lsn: Option<Lsn>) {
        if let Some(lsn) = lsn {
            self.durable_wait = Some(self.durable_wait.map_or(lsn, |w| w.max(lsn)));
        }
    }

    /// Releases an inbound QoS 2 identifier (journaled); the acknowledgement waits for the record. Returns whether
    /// the identifier was held.
    fn release_inbound(&mut self, id: PacketId) -> Result<bool, ProtocolError> {
        let released = self.handle.lock().release_inbound(id);
        match released {
            None => Ok(false),
            Some(Ok(lsn)) => {
                self.wait_for(lsn);
                Ok(true)
            }
            Some(Err(e)) => {
                tracing::warn!(client_id = self.client_id(), error = %e, "journal refused an inbound QoS 2 record");
                Err(ProtocolError::Violation(ReasonCode::QuotaExceeded, "message store full"))
            }
        }
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

    /// Adds the PUBLISH packets read since the last call to the metrics.
    pub(crate) fn flush_received(&mut self) {
        if let Some(t) = &mut self.received {
            self.ctx.counters.obs.add_received(t);
        }
    }

    /// When the message in flight under `id` was read, if metrics are kept (a search of the in-flight window).
    fn inflight_read_at(&self, state: &crate::router::StoredSession, id: PacketId) -> Option<crate::metrics::Stamp> {
        if self.ctx.counters.obs.enabled() { state.outbox().inflight_read_at(id) } else { None }
    }

    /// Records the latency of a delivery the subscriber just acknowledged.
    fn observe_acked(&self, read_at: Option<crate::metrics::Stamp>) {
        if let Some(us) = read_at.and_then(|at| at.micros_until(crate::metrics::Stamp::now())) {
            self.ctx.counters.obs.latency_acked.observe_us(us);
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
            Packet::Publish(p) => self.on_publish(frame, &p, now)?,
            // An acknowledgement for an id not in flight (a duplicate after a resend) is harmless; one for an id in
            // flight in the other QoS flow is a protocol error, as in Mosquitto [MQTT-4.3.2, 4.3.3].
            Packet::PubAck(a) => {
                let mut state = self.handle.lock();
                let read_at = self.inflight_read_at(&state, a.packet_id);
                if state.outbox_mut().on_puback(a.packet_id) {
                    self.observe_acked(read_at);
                } else if state.outbox().inflight_state(a.packet_id).is_some() {
                    return Err(ProtocolError::Violation(ReasonCode::ProtocolError, "PUBACK for a QoS 2 message"));
                }
            }
            Packet::PubRec(a) => {
                let failed = a.reason.is_error();
                let mut state = self.handle.lock();
                if state.outbox_mut().on_pubrec(a.packet_id, failed) {
                    return Ok(Flow::Continue);
                }
                if state.outbox().inflight_state(a.packet_id) == Some(InflightState::AwaitPubAck) {
                    return Err(ProtocolError::Violation(ReasonCode::ProtocolError, "PUBREC for a QoS 1 message"));
                }
                drop(state);
                if self.version.is_v5() && !failed {
                    let rel = Ack { reason: ReasonCode::PacketIdentifierNotFound, ..Ack::new(a.packet_id) };
                    self.send(&Packet::PubRel(rel))?;
                }
            }
            Packet::PubComp(a) => {
                let mut state = self.handle.lock();
                let read_at = self.inflight_read_at(&state, a.packet_id);
                if state.outbox_mut().on_pubcomp(a.packet_id) {
                    self.observe_acked(read_at);
                } else if state.outbox().inflight_state(a.packet_id) == Some(InflightState::AwaitPubAck) {
                    return Err(ProtocolError::Violation(ReasonCode::ProtocolError, "PUBCOMP for a QoS 1 message"));
                }
            }
            Packet::PubRel(a) => {
                let known = self.release_inbound(a.packet_id)?;
                let mut comp = Ack::new(a.packet_id);
                if !known && self.version.is_v5() {
                    comp.reason = ReasonCode::PacketIdentifierNotFound;
                }
                // PUBCOMP even for an unknown id: our earlier PUBCOMP may have been lost [MQTT-4.3.3-11].
                self.send(&Packet::PubComp(comp))?;
            }
            Packet::Subscribe(s) => self.on_subscribe(&s)?,
            Packet::Unsubscribe(u) => self.on_unsubscribe(&u)?,
            Packet::PingReq => self.send(&Packet::PingResp)?,
            Packet::Disconnect(d) => return self.on_disconnect(&d),
            Packet::Auth(a) => self.on_auth(&a)?,
            other => return Err(ProtocolError::Unexpected(other.packet_type())),
        }
        Ok(Flow::Continue)
    }

    fn on_disconnect(&mut self, d: &Disconnect<'_>) -> Result<Flow, ProtocolError> {
        if let Some(secs) = d.properties.session_expiry_interval() {
            // A session that was to end with the connection cannot be made to outlive it [MQTT-3.14.2-2].
            if self.session_expiry == Some(Duration::ZERO) && secs != 0 {
                return Err(ProtocolError::Violation(ReasonCode::ProtocolError, "session expiry set at DISCONNECT"));
            }
            let expiry = connect::expiry_from_secs(secs, self.ctx.caps.mqtt.max_session_expiry);
            let mut state = self.handle.lock();
            // Unless another connection took the session by force meanwhile: it is that connection's now.
            if state.conn().is_some_and(|c| c.id == self.conn_id) {
                state.set_expiry_at_disconnect(expiry);
            }
        }
        // A normal DISCONNECT discards the will [MQTT-3.1.2-10]; MQTT 5's 0x04 asks for it to be published.
        if d.reason != ReasonCode::DisconnectWithWillMessage {
            self.will = None;
        }
        Ok(Flow::Disconnect)
    }

    /// Re-authentication (MQTT 5, section 4.12.1).
    fn on_auth(&mut self, a: &Auth<'_>) -> Result<(), ProtocolError> {
        let Some(method) = self.auth_method.clone() else {
            return Err(ProtocolError::Violation(ReasonCode::ProtocolError, "AUTH without enhanced authentication"));
        };
        if a.properties.authentication_method() != Some(method.as_str()) {
            return Err(ProtocolError::Violation(ReasonCode::ProtocolError, "AUTH with another method"));
        }
        let data = a.properties.authentication_data().unwrap_or_default();
        let step = match (a.reason, self.reauth.as_mut()) {
            (ReasonCode::ReAuthenticate, _) => {
                let mut exchange = self
                    .ctx
                    .auth
                    .start(&method, self.client_id())
                    .ok_or(ProtocolError::Violation(ReasonCode::BadAuthenticationMethod, "method withdrawn"))?;
                let step = exchange.step(data);
                self.reauth = Some(exchange);
                step
            }
            (ReasonCode::ContinueAuthentication, Some(exchange)) => exchange.step(data),
            _ => return Err(ProtocolError::Violation(ReasonCode::ProtocolError, "unexpected AUTH")),
        };
        let (reason, data) = match step {
            AuthStep::Continue(d) => (ReasonCode::ContinueAuthentication, Some(d)),
            AuthStep::Success(d) => {
                self.reauth = None;
                (ReasonCode::Success, d)
            }
            AuthStep::Failure => {
                return Err(ProtocolError::Violation(ReasonCode::NotAuthorized, "re-authentication failed"));
            }
        };
        let mut props = vec![Property::AuthenticationMethod(&method)];
        if let Some(d) = &data {
            props.push(Property::AuthenticationData(d));
        }
        self.send(&Packet::Auth(Auth { reason, properties: Properties::from_list(&props) }))
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

    /// Ends the connection: hands the will (unless the client sent a normal DISCONNECT) to the router, which
    /// publishes it now or after its delay, and detaches from the session.
    pub fn close(mut self, now: Instant) {
        self.flush_received();
        // A will goes where its client could publish (`$SYS` and `$share/...` are not such places).
        let max_levels = self.ctx.caps.mqtt.max_topic_levels;
        let will = self
            .will
            .take()
            .map(Arc::unwrap_or_clone)
            .filter(|(w, _)| inbound::refuse_topic(w.topic(), max_levels).is_none());
        if let Some((w, delay)) = &will {
            tracing::debug!(client_id = &*self.handle.client_id, topic = w.topic(), ?delay, "will");
        }
        self.ctx.router().disconnect(&self.handle, self.conn_id, will, now);
        self.ctx.counters.clients_connected.fetch_sub(1, Ordering::Relaxed);
    }
}
