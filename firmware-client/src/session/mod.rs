//! The sans-IO session: packets and `now` in, packets to send and [`Event`]s out. It owns no socket and no clock,
//! so the same code runs under the blocking and async front ends, on the host under tests and under a fuzzer.
//!
//! - [`Session::connect`] starts a connection (first or resumed) once the transport is up.
//! - [`Session::poll_transmit`] writes the next packet to send into a caller's buffer.
//! - [`Session::on_packet`] takes one framed packet from the broker and may return an [`Event`].
//! - [`Session::poll_timeout`] and [`Session::next_deadline`] drive keepalive from the caller's clock.
//! - [`Session::publish`], [`Session::subscribe`] and [`Session::unsubscribe`] queue work, online or not.
//!
//! Any `Err` from `on_packet` or `poll_timeout` means the link is dead: close the transport, open a new one and
//! call `connect` again. The session keeps its in-flight messages and subscriptions across that.

mod packets;
mod store;
mod subs;

pub(crate) use store::shift_down;
pub use subs::SubId;

use heapless::Vec;
use mqtt_codec::{PacketId, PacketType, ProtocolVersion, QoS, QosPid, ReasonCode, TopicFilter, TopicName};

use crate::{Error, Event, Instant, Message, Options, Rejected};
use packets::Inbound;
use store::{Outgoing, Store};
use subs::{State as SubState, Subs};

/// The packet type of an inbound packet, for errors.
fn packet_type(p: &Inbound<'_>) -> u8 {
    match p {
        Inbound::ConnAck { .. } => 2,
        Inbound::Publish { .. } => 3,
        Inbound::Ack(kind, ..) | Inbound::Other(kind) => *kind,
        Inbound::SubAck(..) => 9,
        Inbound::UnsubAck(_) => 11,
        Inbound::PingResp => 13,
        Inbound::Disconnect(_) => 14,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Link {
    Down,
    /// CONNECT queued.
    ConnectDue,
    /// CONNECT sent at `since`, CONNACK awaited.
    Connecting,
    Up,
}

/// Keepalive while the link is up.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ping {
    /// Nothing outstanding.
    Idle,
    /// PINGREQ queued at `since`, PINGRESP awaited.
    Due,
    /// PINGREQ sent, PINGRESP awaited since `since`.
    Out,
}

/// An MQTT client session.
///
/// `INFLIGHT` bounds the outbound messages held at once (in flight or queued while offline) and the inbound QoS 2
/// messages awaiting PUBREL; `SUBS` the subscriptions; `TOPIC` the length of a stored topic filter. The store buffer
/// holds the serialized outbound PUBLISH packets and must fit the largest one.
pub struct Session<'a, const INFLIGHT: usize, const SUBS: usize, const TOPIC: usize> {
    opts: Options<'a>,
    link: Link,
    store: Store<'a, INFLIGHT>,
    subs: Subs<SUBS, TOPIC>,
    /// Inbound QoS 2 identifiers delivered to the application, PUBREL not yet received.
    incoming: Vec<u16, INFLIGHT, u8>,
    /// Acknowledgements to send. The front ends send them before handling the next packet, so one is the most
    /// ever queued; a sans-IO caller must call `poll_transmit` between packets (else [`Error::Overrun`]).
    acks: Vec<(PacketType, PacketId), 2, u8>,
    ping: Ping,
    /// When CONNECT or the outstanding PINGREQ was handed out.
    since: Instant,
    disconnect_due: bool,
    last_tx: Instant,
    next_pid: u16,
    /// The keep alive in effect: ours, or the broker's Server Keep Alive.
    keep_alive_secs: u16,
    max_in: u32,
    max_out: u32,
    /// The broker's Receive Maximum, capped at 255: no more than `INFLIGHT` (at most 255) are ever in flight.
    quota: u8,
}

impl<'a, const INFLIGHT: usize, const SUBS: usize, const TOPIC: usize> Session<'a, INFLIGHT, SUBS, TOPIC> {
    /// A session that has never connected. `store` holds the outbound messages (see the type's doc).
    pub fn new(opts: Options<'a>, store: &'a mut [u8]) -> Self {
        const { assert!(INFLIGHT > 0 && INFLIGHT <= 255, "INFLIGHT must be 1 to 255") };
        let max = u32::try_from(store.len()).unwrap_or(u32::MAX);
        Self {
            opts,
            link: Link::Down,
            ping: Ping::Idle,
            store: Store::new(store),
            subs: Subs::new(),
            incoming: Vec::new(),
            acks: Vec::new(),
            // Both are set before they are read (`connect`, `poll_transmit`). All ones rather than zero: LLVM merged
            // zeros here with the store's uninitialised entries into a `memcpy` from a stack copy, which links
            // 0.7 KB of `memcpy` into the firmware.
            since: Instant::from_millis(u64::MAX),
            disconnect_due: false,
            last_tx: Instant::from_millis(u64::MAX),
            next_pid: 0,
            keep_alive_secs: opts.keep_alive_secs,
            max_in: u32::MAX,
            max_out: max,
            quota: u8::MAX,
        }
    }

    /// Tells the session the sizes of the front end's buffers: the largest packet it can receive (announced to an
    /// MQTT 5 broker as Maximum Packet Size) and the largest it can send (longer publishes are refused).
    pub fn set_buffer_limits(&mut self, rx: usize, tx: usize) {
        self.max_in = u32::try_from(rx).unwrap_or(u32::MAX);
        self.max_out = self.max_out.min(u32::try_from(tx).unwrap_or(u32::MAX));
    }

    fn keep_alive_ms(&self) -> u64 {
        u64::from(self.keep_alive_secs) * 1000
    }

    fn version(&self) -> ProtocolVersion {
        #[cfg(feature = "v5")]
        return self.opts.version;
        #[cfg(not(feature = "v5"))]
        ProtocolVersion::V311
    }

    /// Whether CONNACK accepted the connection and the link has not failed since.
    pub fn is_connected(&self) -> bool {
        self.link == Link::Up
    }

    /// Outbound messages held (in flight or queued).
    pub fn pending(&self) -> usize {
        self.store.len()
    }

    /// Starts a connection over a fresh transport: CONNECT goes out first, then, once CONNACK arrives, the
    /// unacknowledged messages in their original order with DUP=1, PUBRELs, pending (un)subscriptions and the
    /// messages queued while offline.
    pub fn connect(&mut self, now: Instant) {
        self.link = Link::ConnectDue;
        self.acks.clear();
        self.ping = Ping::Idle;
        self.disconnect_due = false;
        self.last_tx = now;
        self.store.mark_all_unsent();
        self.subs.on_reconnect(true);
        if self.opts.clean_start {
            self.incoming.clear();
        }
    }

    /// The transport failed or was closed: nothing more is sent until [`Session::connect`].
    pub fn on_connection_lost(&mut self) {
        self.link = Link::Down;
    }

    /// Queues a DISCONNECT; the link is down once it has been handed out by [`Session::poll_transmit`].
    pub fn disconnect(&mut self) {
        if self.link == Link::Up {
            self.disconnect_due = true;
        } else {
            self.link = Link::Down;
        }
    }

    fn alloc_pid(&mut self) -> Option<PacketId> {
        for _ in 0..=INFLIGHT.saturating_add(SUBS) {
            let pid = PacketId::new(self.next_pid.wrapping_add(1)).or(PacketId::new(1))?;
            self.next_pid = pid.get();
            if !self.store.pid_in_use(pid.get()) && !self.subs.pid_in_use(pid.get()) {
                return Some(pid);
            }
        }
        None
    }

    /// Queues a message for the broker, whether connected or not; it is sent in order with everything queued before.
    ///
    /// Returns the packet identifier for QoS 1 and 2, which [`Event::Published`] carries when the flow completes.
    ///
    /// # Errors
    /// [`Rejected::Full`] when `INFLIGHT` messages are held or the store buffer has no room; [`Rejected::Invalid`]
    /// for a topic with wildcards or a packet larger than the transmit buffer or the broker's maximum.
    /// The message is handed back either way.
    pub fn publish<'m>(&mut self, msg: Message<'m>) -> Result<Option<PacketId>, Rejected<Message<'m>>> {
        let Ok(topic) = TopicName::new(msg.topic) else { return Err(Rejected::Invalid(msg)) };
        if self.store.is_full() {
            return Err(Rejected::Full(msg));
        }
        let saved_pid = self.next_pid;
        let pid = if msg.qos == QoS::AtMostOnce { PacketId::new(1) } else { self.alloc_pid() };
        let Some(pid) = pid else { return Err(Rejected::Full(msg)) };
        let version = self.version();
        let max_out = usize::try_from(self.max_out).unwrap_or(usize::MAX);
        let free = self.store.free();
        let room = free.len().min(max_out);
        let Some(out) = free.get_mut(..room) else { return Err(Rejected::Full(msg)) };
        let n = match packets::publish(topic, msg.payload, msg.qos, pid, msg.retain, version, out) {
            Ok(n) => n,
            Err(mqtt_codec::EncodeError::BufferTooSmall { needed, .. }) if needed <= max_out => {
                self.next_pid = saved_pid;
                return Err(Rejected::Full(msg));
            }
            Err(_) => {
                self.next_pid = saved_pid;
                return Err(Rejected::Invalid(msg));
            }
        };
        let stored_pid = if msg.qos == QoS::AtMostOnce { 0 } else { pid.get() };
        if !self.store.commit(stored_pid, msg.qos as u8, n) {
            self.next_pid = saved_pid;
            return Err(Rejected::Full(msg));
        }
        Ok((msg.qos != QoS::AtMostOnce).then_some(pid))
    }

    /// Adds a subscription; SUBSCRIBE goes out when connected, and again after a reconnect without a session.
    ///
    /// # Errors
    /// [`Rejected::Full`] when `SUBS` subscriptions exist; [`Rejected::Invalid`] for an invalid filter or one longer
    /// than `TOPIC`. The filter is handed back.
    pub fn subscribe<'f>(&mut self, filter: &'f str, qos: QoS) -> Result<SubId, Rejected<&'f str>> {
        if TopicFilter::new(filter).is_err() || filter.len() > TOPIC {
            return Err(Rejected::Invalid(filter));
        }
        self.subs.add(filter, qos).ok_or(Rejected::Full(filter))
    }

    /// Removes a subscription; [`Event::Unsubscribed`] follows the UNSUBACK. Unknown handles are ignored.
    pub fn unsubscribe(&mut self, sub: SubId) {
        if let Some(s) = self.subs.get_mut(sub) {
            s.state = SubState::ToUnsubscribe;
        }
    }

    /// Writes the next packet to send into `out` and returns its length, or `None` when there is nothing to send.
    ///
    /// # Errors
    /// [`Error::Encode`] if `out` cannot hold the packet (CONNECT, SUBSCRIBE); a stored PUBLISH always fits, since
    /// [`Session::publish`] checks it against the transmit buffer.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut [u8]) -> Result<Option<usize>, Error> {
        let n = match self.next_packet(out) {
            Ok(Some(n)) => n,
            other => return other,
        };
        self.last_tx = now;
        if self.link == Link::ConnectDue {
            self.link = Link::Connecting;
            self.since = now;
        }
        Ok(Some(n))
    }

    fn next_packet(&mut self, out: &mut [u8]) -> Result<Option<usize>, Error> {
        let version = self.version();
        match self.link {
            Link::Down | Link::Connecting => return Ok(None),
            Link::ConnectDue => {
                let receive_max = u16::try_from(INFLIGHT).unwrap_or(u16::MAX);
                return packets::connect(&self.opts, version, self.max_in, receive_max, out)
                    .map(Some)
                    .map_err(Error::Encode);
            }
            Link::Up => {}
        }
        if let Some(&(kind, pid)) = self.acks.first() {
            store::remove(&mut self.acks, 0);
            return packets::ack(kind, pid, out).map(Some).map_err(Error::Encode);
        }
        if self.disconnect_due {
            self.disconnect_due = false;
            self.link = Link::Down;
            return packets::disconnect(out).map(Some).map_err(Error::Encode);
        }
        if self.ping == Ping::Due {
            self.ping = Ping::Out;
            let n = packets::pingreq(out).map_err(Error::Encode)?;
            return Ok(Some(n));
        }
        if let Some(n) = self.next_subscription(version, out)? {
            return Ok(Some(n));
        }
        match self.store.next_to_send(u16::from(self.quota)) {
            Some(Outgoing::Publish(idx)) => self.store.send_publish(idx, out).map(Some).ok_or(Error::BufferTooSmall),
            Some(Outgoing::PubRel(pid)) => {
                let id = PacketId::new(pid).ok_or(Error::BufferTooSmall)?;
                let n = packets::ack(PacketType::PubRel, id, out).map_err(Error::Encode)?;
                self.store.rel_sent(pid);
                Ok(Some(n))
            }
            None => Ok(None),
        }
    }

    fn next_subscription(&mut self, version: ProtocolVersion, out: &mut [u8]) -> Result<Option<usize>, Error> {
        let todo =
            self.subs.iter_mut().find(|(_, s)| matches!(s.state, SubState::ToSubscribe | SubState::ToUnsubscribe));
        let Some((id, _)) = todo else { return Ok(None) };
        let pid = self.alloc_pid().ok_or(Error::BufferTooSmall)?;
        let Some(s) = self.subs.get_mut(id) else { return Ok(None) };
        let subscribing = s.state == SubState::ToSubscribe;
        let n =
            packets::subscribe(pid, &s.filter, subscribing.then_some(s.qos), version, out).map_err(Error::Encode)?;
        s.state = if subscribing { SubState::Subscribing(pid.get()) } else { SubState::Unsubscribing(pid.get()) };
        Ok(Some(n))
    }

    /// Handles one framed packet from the broker (`frame` holds exactly one, as `mqtt_codec::frame_len` measures).
    ///
    /// # Errors
    /// Anything the broker may not send, or may not send now, and malformed bytes; CONNACK refusals; an MQTT 5
    /// DISCONNECT. The link is then down.
    ///
    /// `now` is accepted for symmetry with the other inputs: no deadline depends on what arrives, since keepalive
    /// counts what the client sends and PINGRESP is matched by kind.
    pub fn on_packet<'f>(&mut self, now: Instant, frame: &'f [u8]) -> Result<Option<Event<'f>>, Error> {
        let _ = now;
        let result = packets::decode(frame, self.version()).map_err(Error::Malformed).and_then(|p| self.handle(p));
        if result.is_err() {
            self.link = Link::Down;
        }
        result
    }

    fn push_ack(&mut self, kind: PacketType, pid: PacketId) -> Result<(), Error> {
        self.acks.push((kind, pid)).map_err(|_| Error::Overrun)
    }

    fn handle<'f>(&mut self, packet: Inbound<'f>) -> Result<Option<Event<'f>>, Error> {
        if matches!(self.link, Link::Connecting | Link::ConnectDue) {
            return match packet {
                Inbound::ConnAck { session_present, code, limits } => self.on_connack(session_present, code, limits),
                _ => Err(Error::Unexpected(packet_type(&packet))),
            };
        }
        if self.link != Link::Up {
            return Err(Error::NotConnected);
        }
        match packet {
            Inbound::Publish { topic, payload, qos_pid, retain } => {
                if topic.is_empty() {
                    // We never allow topic aliases, so an empty topic is a protocol error.
                    return Err(Error::Unexpected(3));
                }
                match qos_pid {
                    QosPid::AtMostOnce => {}
                    QosPid::AtLeastOnce(pid) => self.push_ack(PacketType::PubAck, pid)?,
                    QosPid::ExactlyOnce(pid) => {
                        let first = !self.incoming.contains(&pid.get());
                        if first {
                            self.incoming.push(pid.get()).map_err(|_| Error::Overrun)?;
                        }
                        self.push_ack(PacketType::PubRec, pid)?;
                        if !first {
                            debug!("duplicate QoS 2 publish {}", pid.get());
                            return Ok(None);
                        }
                    }
                }
                let sub = self.subs.matching(topic);
                Ok(Some(Event::Message(Message { topic, payload, qos: qos_pid.qos(), retain }, sub)))
            }
            Inbound::Ack(4, pid, reason) => Ok(self.complete(self.store.find(pid.get(), 1, false), pid, reason)),
            Inbound::Ack(5, pid, reason) => {
                if let Some(idx) = self.store.find(pid.get(), 2, false) {
                    if reason.is_error() {
                        return Ok(self.complete(Some(idx), pid, reason));
                    }
                    self.store.release(idx);
                } else if !self.store.resend_rel(pid.get()) {
                    warn!("PUBREC for unknown packet id {}", pid.get());
                }
                Ok(None)
            }
            Inbound::Ack(6, pid, _) => {
                if let Some(idx) = self.incoming.iter().position(|&p| p == pid.get()) {
                    store::remove(&mut self.incoming, idx);
                }
                self.push_ack(PacketType::PubComp, pid)?;
                Ok(None)
            }
            Inbound::Ack(_, pid, reason) => Ok(self.complete(self.store.find(pid.get(), 2, true), pid, reason)),
            Inbound::SubAck(pid, code) => {
                let granted = match code {
                    ReasonCode::Success => Some(QoS::AtMostOnce),
                    ReasonCode::GrantedQoS1 => Some(QoS::AtLeastOnce),
                    ReasonCode::GrantedQoS2 => Some(QoS::ExactlyOnce),
                    _ => None,
                };
                let Some((id, sub)) = self.subs.find(pid.get()) else { return Ok(None) };
                if granted.is_some() {
                    sub.state = SubState::Active;
                } else {
                    self.subs.remove(id);
                }
                Ok(Some(Event::Subscribed { sub: id, granted }))
            }
            Inbound::UnsubAck(pid) => {
                let Some((id, _)) = self.subs.find(pid.get()) else { return Ok(None) };
                self.subs.remove(id);
                Ok(Some(Event::Unsubscribed { sub: id }))
            }
            Inbound::PingResp => {
                if self.ping == Ping::Out {
                    self.ping = Ping::Idle;
                }
                Ok(None)
            }
            Inbound::Disconnect(reason) => Err(Error::ServerDisconnect(reason)),
            other => Err(Error::Unexpected(packet_type(&other))),
        }
    }

    fn complete<'f>(&mut self, idx: Option<usize>, pid: PacketId, reason: ReasonCode) -> Option<Event<'f>> {
        let Some(idx) = idx else {
            warn!("ack for unknown packet id {}", pid.get());
            return None;
        };
        self.store.remove(idx);
        Some(Event::Published { pid, reason })
    }

    fn on_connack<'f>(
        &mut self,
        session_present: bool,
        code: ReasonCode,
        limits: packets::Limits,
    ) -> Result<Option<Event<'f>>, Error> {
        if code != ReasonCode::Success {
            return Err(Error::Refused(code));
        }
        self.link = Link::Up;
        self.keep_alive_secs = self.opts.keep_alive_secs;
        self.quota = limits.receive_max.map_or(u8::MAX, |m| u8::try_from(m).unwrap_or(u8::MAX));
        if let Some(max) = limits.max_packet {
            self.max_out = self.max_out.min(max);
        }
        if let Some(ka) = limits.keep_alive {
            self.keep_alive_secs = ka;
        }
        if !session_present {
            self.store.forget_released();
            self.incoming.clear();
            self.subs.on_reconnect(false);
        }
        debug!("connected, session present: {}", session_present);
        Ok(Some(Event::Connected { session_present }))
    }

    /// Keepalive from the caller's clock: queues PINGREQ once the link has been idle for the keep alive interval,
    /// and fails when CONNACK or PINGRESP is later than the response timeout.
    ///
    /// # Errors
    /// [`Error::Timeout`]: the link is dead.
    pub fn poll_timeout(&mut self, now: Instant) -> Result<(), Error> {
        let timeout = u64::from(self.opts.response_timeout_ms);
        let waiting = self.link == Link::Connecting || (self.link == Link::Up && self.ping != Ping::Idle);
        let expired = waiting && now >= self.since.after(timeout);
        if expired {
            self.link = Link::Down;
            return Err(Error::Timeout);
        }
        let idle = now >= self.last_tx.after(self.keep_alive_ms());
        if self.link == Link::Up && self.keep_alive_secs > 0 && self.ping == Ping::Idle && idle {
            self.ping = Ping::Due;
            self.since = now;
        }
        Ok(())
    }

    /// When [`Session::poll_timeout`] next has work: call it then, or earlier.
    pub fn next_deadline(&self) -> Option<Instant> {
        let timeout = u64::from(self.opts.response_timeout_ms);
        match (self.link, self.ping) {
            (Link::Connecting, _) | (Link::Up, Ping::Due | Ping::Out) => Some(self.since.after(timeout)),
            (Link::Up, Ping::Idle) if self.keep_alive_secs > 0 => Some(self.last_tx.after(self.keep_alive_ms())),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
