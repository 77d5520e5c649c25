//! The outbound side of one session: a bounded queue of messages waiting, and the in-flight window of QoS 1/2
//! messages sent but not yet acknowledged. It survives disconnects of persistent sessions.
//!
//! Pure data structure: no I/O, no clock of its own. The session turns what [`Outbox::next_send`] yields into
//! packets.

use std::collections::VecDeque;
use std::sync::Arc;

use mqtt_codec::{PacketId, QoS};
use tokio::time::Instant;

use crate::journal::{AppendError, Lsn};
use crate::message::Message;
use crate::persist::{Durable, Record};

/// Where an in-flight message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflightState {
    /// QoS 1 PUBLISH sent, waiting for PUBACK.
    AwaitPubAck,
    /// QoS 2 PUBLISH sent, waiting for PUBREC.
    AwaitPubRec,
    /// PUBREL sent, waiting for PUBCOMP.
    AwaitPubComp,
}

/// One message for one subscriber: the shared message plus what this subscription makes of it. Small (32 bytes),
/// since a backlog holds one per queued message: the message is shared by every subscriber it goes to, and the
/// Subscription Identifiers take an allocation only when there are some.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The message.
    pub msg: Arc<Message>,
    /// QoS for this subscriber (the lower of the message's and the subscription's).
    pub qos: QoS,
    /// RETAIN flag to send.
    pub retain: bool,
    /// MQTT 5 Subscription Identifiers of every matching subscription.
    pub sub_ids: Box<[u32]>,
}

#[derive(Debug)]
struct Inflight {
    id: PacketId,
    delivery: Delivery,
    state: InflightState,
    /// Sent on the current connection; cleared on disconnect so a resumed session resends it.
    sent: bool,
    /// The delivery's number in this session (see [`Outbox::next_seq`]).
    seq: u64,
}

impl Delivery {
    /// The QoS and packet identifier of its PUBLISH: `id` is the one [`Outbox::next_send`] gave it (none at QoS 0).
    pub fn qos_pid(&self, id: Option<PacketId>) -> mqtt_codec::QosPid {
        match (self.qos, id) {
            (QoS::AtLeastOnce, Some(id)) => mqtt_codec::QosPid::AtLeastOnce(id),
            (QoS::ExactlyOnce, Some(id)) => mqtt_codec::QosPid::ExactlyOnce(id),
            _ => mqtt_codec::QosPid::AtMostOnce,
        }
    }
}

/// What the session should put on the wire next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// A PUBLISH; `id` is `None` for QoS 0; `dup` on a resend.
    Publish { id: Option<PacketId>, delivery: Delivery, dup: bool },
    /// A PUBREL for a QoS 2 message whose PUBREC arrived.
    PubRel(PacketId),
}

/// Messages queued for an online session beyond which publishers wait for it (see [`Outbox::is_backlogged`]).
/// Above the default queue limit (1,000), so it matters only where the limits let a queue grow this long.
pub const BACKLOG_MESSAGES: usize = 2048;
/// Bytes queued beyond which publishers wait, likewise above the default limit (8 MiB).
pub const BACKLOG_BYTES: usize = 8 * 1024 * 1024;

/// Why a message was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// The queue is at its message or byte limit: the message is dropped and counted.
    Full,
    /// A QoS 0 message for an offline session that does not queue QoS 0: not an error, nothing counted.
    Offline,
}

/// Limits of one outbox.
#[derive(Debug, Clone, Copy)]
pub struct OutboxLimits {
    /// In-flight window.
    pub max_inflight: u16,
    /// Messages waiting.
    pub max_queued: usize,
    /// Bytes waiting.
    pub max_queued_bytes: usize,
    /// Queue QoS 0 for offline sessions.
    pub queue_qos0_offline: bool,
}

/// The outbound queue and in-flight window of one session.
#[derive(Debug)]
pub struct Outbox {
    limits: OutboxLimits,
    /// The window in force: the configured one, lowered to the client's MQTT 5 Receive Maximum.
    window: u16,
    queue: VecDeque<Delivery>,
    queued_bytes: usize,
    inflight: VecDeque<Inflight>,
    /// Entries of `inflight` not sent on the current connection (so a send need not look for them).
    unsent: usize,
    last_id: u16,
    dropped: u64,
    expired: u64,
    /// Messages that left the queue (sent or expired): how publishers waiting for a backlog see progress.
    taken: u64,
    /// The number the next queued delivery gets; the queue holds `next_seq - queue.len() .. next_seq`, in order.
    /// A persistent session's records name deliveries by these numbers.
    next_seq: u64,
    /// The journal of a persistent session; `None` for a session that ends with its connection.
    link: Option<Box<Link>>,
    /// A full queue drops its oldest messages to take a new one, instead of refusing the new one (bridges).
    drop_oldest: bool,
}

/// How a persistent session's outbox reaches the journal.
#[derive(Debug)]
struct Link {
    durable: Durable,
    client: Arc<str>,
    /// The last record that numbered a QoS 2 delivery's packet identifier or released it (PUBREC): a QoS 2
    /// PUBLISH or PUBREL goes out only once that is durable, or a crash could make the broker send the message again
    /// under another identifier, or again after the client completed it.
    send_wait: Lsn,
}

impl Outbox {
    /// An empty outbox.
    pub fn new(limits: OutboxLimits) -> Self {
        Self {
            limits,
            window: limits.max_inflight,
            queue: VecDeque::new(),
            queued_bytes: 0,
            inflight: VecDeque::new(),
            unsent: 0,
            last_id: 0,
            dropped: 0,
            expired: 0,
            taken: 0,
            next_seq: 1,
            link: None,
            drop_oldest: false,
        }
    }

    /// Replaces the limits, and chooses what a full queue does: refuse the new message (the default), or drop the
    /// oldest queued ones to make room (`drop_oldest`). Bridges set their own byte bound and policy this way.
    pub fn set_limits(&mut self, limits: OutboxLimits, drop_oldest: bool) {
        self.limits = limits;
        self.window = limits.max_inflight;
        self.drop_oldest = drop_oldest;
    }

    /// Journals every later change of this outbox: the session is persistent.
    pub fn make_durable(&mut self, durable: Durable, client: Arc<str>) {
        self.link = Some(Box::new(Link { durable, client, send_wait: Lsn::ZERO }));
    }

    /// Stops journaling: the session no longer outlives its connection.
    pub fn make_volatile(&mut self) {
        self.link = None;
    }

    /// Whether changes are journaled.
    pub fn is_durable(&self) -> bool {
        self.link.is_some()
    }

    /// Appends the record `f` makes for this session's client id; `None` for a volatile outbox. A journal that
    /// refuses a record that only finishes a delivery is logged: the delivery may be sent again after a restart.
    fn record(&self, f: impl FnOnce(&str) -> Record<'_>) -> Option<Lsn> {
        match self.append(f) {
            Ok(lsn) => lsn,
            Err(e) => {
                let client = self.link.as_ref().map(|l| &*l.client).unwrap_or_default();
                tracing::error!(client_id = client, error = %e, "journal refused a delivery record");
                None
            }
        }
    }

    /// Appends the record `f` makes for this session's client id, for a persistent session (`Ok(None)` for a
    /// volatile one).
    ///
    /// # Errors
    /// The journal refused the record.
    pub fn append(&self, f: impl FnOnce(&str) -> Record<'_>) -> Result<Option<Lsn>, AppendError> {
        let Some(link) = self.link.as_ref() else { return Ok(None) };
        link.durable.append(&f(&link.client)).map(Some)
    }

    /// The number of the delivery at the head of the queue.
    fn head_seq(&self) -> u64 {
        self.next_seq.saturating_sub(self.queue.len() as u64)
    }

    /// The record of a delivery still to be sent: what a checkpoint writes for each queued delivery, in order,
    /// with its number and, when in flight, its packet identifier and state.
    pub fn for_each_entry(&self, mut f: impl FnMut(u64, &Delivery, Option<(PacketId, InflightState)>)) {
        for e in &self.inflight {
            f(e.seq, &e.delivery, Some((e.id, e.state)));
        }
        let head = self.head_seq();
        for (i, d) in self.queue.iter().enumerate() {
            f(head.saturating_add(i as u64), d, None);
        }
    }

    /// Restores a delivery that was in flight (recovery): it is resent, with DUP, when the session resumes.
    pub fn restore_inflight(&mut self, id: PacketId, delivery: Delivery, state: InflightState) {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.saturating_add(1);
        self.last_id = self.last_id.max(id.get());
        self.inflight.push_back(Inflight { id, delivery, state, sent: false, seq });
        self.unsent += 1;
    }

    /// Restores a queued delivery (recovery), after every in-flight one.
    pub fn restore_queued(&mut self, delivery: Delivery) {
        self.queued_bytes = self.queued_bytes.saturating_add(delivery.msg.cost());
        self.queue.push_back(delivery);
        self.next_seq = self.next_seq.saturating_add(1);
    }

    /// The journal position what [`Outbox::next_send`] yielded must wait for before it is written, if any (see
    /// `Link::send_wait`).
    pub fn send_wait(&self) -> Option<Lsn> {
        let link = self.link.as_ref()?;
        (!link.durable.is_durable(link.send_wait)).then_some(link.send_wait)
    }

    /// Notes a record that a QoS 2 PUBLISH or PUBREL must wait for.
    fn hold_send(&mut self, lsn: Option<Lsn>) {
        if let (Some(link), Some(lsn)) = (&mut self.link, lsn) {
            link.send_wait = link.send_wait.max(lsn);
        }
    }

    /// Sets the window for the connection now attached: the configured maximum, lowered to the client's Receive
    /// Maximum [MQTT-3.3.4-9].
    pub fn set_receive_maximum(&mut self, client_max: u16) {
        self.window = self.limits.max_inflight.min(client_max).max(1);
    }

    fn skips_offline(&self, delivery: &Delivery, online: bool) -> bool {
        !online && delivery.qos == QoS::AtMostOnce && !self.limits.queue_qos0_offline
    }

    fn has_room(&self, delivery: &Delivery) -> bool {
        self.queue.len() < self.limits.max_queued
            && self.queued_bytes.saturating_add(delivery.msg.cost()) <= self.limits.max_queued_bytes
    }

    /// Whether dropping the oldest queued messages would make room for this one.
    fn can_make_room(&self, delivery: &Delivery) -> bool {
        self.drop_oldest && self.limits.max_queued > 0 && delivery.msg.cost() <= self.limits.max_queued_bytes
    }

    /// Whether [`Outbox::push`] would queue this delivery now.
    pub fn would_accept(&self, delivery: &Delivery, online: bool) -> bool {
        !self.skips_offline(delivery, online) && (self.has_room(delivery) || self.can_make_room(delivery))
    }

    /// Queues a delivery.
    ///
    /// # Errors
    /// [`Rejected::Full`] when the queue is at a limit (the drop is counted), [`Rejected::Offline`] for QoS 0
    /// while offline unless configured to queue it.
    ///
    /// A persistent session's delivery is journaled by the caller before it is pushed (as entry
    /// [`Outbox::next_seq`]), together with the message: see [`crate::router::Router::publish`].
    pub fn push(&mut self, delivery: Delivery, online: bool) -> Result<(), Rejected> {
        if self.skips_offline(&delivery, online) {
            return Err(Rejected::Offline);
        }
        if !self.has_room(&delivery) {
            if !self.can_make_room(&delivery) {
                self.dropped = self.dropped.saturating_add(1);
                return Err(Rejected::Full);
            }
            while !self.has_room(&delivery) {
                let seq = self.head_seq();
                let Some(old) = self.queue.pop_front() else { break };
                self.queued_bytes = self.queued_bytes.saturating_sub(old.msg.cost());
                self.dropped = self.dropped.saturating_add(1);
                self.taken = self.taken.wrapping_add(1);
                self.record(|client| Record::Done { client, seq });
            }
        }
        self.queued_bytes = self.queued_bytes.saturating_add(delivery.msg.cost());
        self.queue.push_back(delivery);
        self.next_seq = self.next_seq.saturating_add(1);
        Ok(())
    }

    /// The number the next queued delivery gets, which a persistent session's records name it by.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The next thing to send, if the window allows: resends first (DUP PUBLISH or PUBREL), then queued messages
    /// in order. A QoS 1/2 message at the head of the queue waits while the window is full, and so does everything
    /// behind it, so order is kept. Expired messages are dropped, never sent [MQTT-3.3.2-5].
    pub fn next_send(&mut self, now: Instant) -> Option<Outgoing> {
        while self.unsent > 0
            && let Some(pos) = self.inflight.iter().position(|e| !e.sent)
        {
            let entry = self.inflight.get_mut(pos)?;
            // [MQTT-3.3.2-5] only requires dropping copies whose delivery has not started; we also drop an expired
            // message that is to be resent after a reconnect, so that an expired message never reaches a client. A
            // QoS 2 message already at PUBREL finishes its flow.
            if entry.state != InflightState::AwaitPubComp && entry.delivery.msg.is_expired(now) {
                self.finish_at(pos);
                self.expired = self.expired.saturating_add(1);
                continue;
            }
            entry.sent = true;
            self.unsent = self.unsent.saturating_sub(1);
            return Some(match entry.state {
                InflightState::AwaitPubComp => Outgoing::PubRel(entry.id),
                _ => Outgoing::Publish { id: Some(entry.id), delivery: entry.delivery.clone(), dup: true },
            });
        }
        loop {
            let head = self.queue.front()?;
            if head.msg.is_expired(now) {
                let seq = self.head_seq();
                let head = self.queue.pop_front()?;
                self.queued_bytes = self.queued_bytes.saturating_sub(head.msg.cost());
                self.expired = self.expired.saturating_add(1);
                self.taken = self.taken.wrapping_add(1);
                self.record(|client| Record::Done { client, seq });
                continue;
            }
            if head.qos != QoS::AtMostOnce && self.inflight.len() >= usize::from(self.window) {
                return None;
            }
            let seq = self.head_seq();
            let delivery = self.queue.pop_front()?;
            self.queued_bytes = self.queued_bytes.saturating_sub(delivery.msg.cost());
            self.taken = self.taken.wrapping_add(1);
            if delivery.qos == QoS::AtMostOnce {
                self.record(|client| Record::Done { client, seq });
                return Some(Outgoing::Publish { id: None, delivery, dup: false });
            }
            let id = self.next_id();
            let state =
                if delivery.qos == QoS::AtLeastOnce { InflightState::AwaitPubAck } else { InflightState::AwaitPubRec };
            let lsn = self.record(|client| Record::Sent { client, seq, pid: id.get() });
            if state == InflightState::AwaitPubRec {
                self.hold_send(lsn);
            }
            self.inflight.push_back(Inflight { id, delivery: delivery.clone(), state, sent: true, seq });
            return Some(Outgoing::Publish { id: Some(id), delivery, dup: false });
        }
    }

    fn next_id(&mut self) -> PacketId {
        loop {
            self.last_id = self.last_id.wrapping_add(1);
            if let Some(id) = PacketId::new(self.last_id)
                && !self.inflight.iter().any(|e| e.id == id)
            {
                return id;
            }
        }
    }

    /// When the message in flight under `id` was read, unless it is a retained message sent on subscribe (for the
    /// acknowledgement latency metric).
    pub fn inflight_read_at(&self, id: PacketId) -> Option<crate::metrics::Stamp> {
        self.inflight.iter().find(|e| e.id == id).filter(|e| !e.delivery.retain).map(|e| e.delivery.msg.read_at)
    }

    /// Bytes of the messages waiting behind the in-flight window.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// PUBACK arrived. Returns whether it matched a QoS 1 message in flight.
    pub fn on_puback(&mut self, id: PacketId) -> bool {
        self.remove_where(id, InflightState::AwaitPubAck)
    }

    /// PUBREC arrived. Returns whether it matched; if so a PUBREL is due and [`Outbox::next_send`] yields it.
    /// A PUBREC with an error reason (MQTT 5) ends the QoS 2 flow instead: pass `failed = true`.
    pub fn on_pubrec(&mut self, id: PacketId, failed: bool) -> bool {
        let Some(pos) = self.inflight.iter().position(|e| e.id == id) else { return false };
        let Some(e) = self.inflight.get_mut(pos) else { return false };
        match e.state {
            InflightState::AwaitPubRec if failed => {
                self.finish_at(pos);
                true
            }
            // First PUBREC, or a repeat after our PUBREL was lost: (re)send PUBREL.
            InflightState::AwaitPubRec | InflightState::AwaitPubComp => {
                let first = e.state == InflightState::AwaitPubRec;
                e.state = InflightState::AwaitPubComp;
                let seq = e.seq;
                if std::mem::replace(&mut e.sent, false) {
                    self.unsent += 1;
                }
                if first {
                    let lsn = self.record(|client| Record::Released { client, seq });
                    self.hold_send(lsn);
                }
                true
            }
            InflightState::AwaitPubAck => false,
        }
    }

    /// PUBCOMP arrived. Returns whether it matched.
    pub fn on_pubcomp(&mut self, id: PacketId) -> bool {
        self.remove_where(id, InflightState::AwaitPubComp)
    }

    /// Where the message in flight under `id` stands, if one is: tells an acknowledgement of the wrong flow (a
    /// PUBACK for a QoS 2 message) from one for an id no longer in flight (a duplicate after a resend).
    pub fn inflight_state(&self, id: PacketId) -> Option<InflightState> {
        self.inflight.iter().find(|e| e.id == id).map(|e| e.state)
    }

    /// Gives up on a message in flight that can never be sent to this client (too large for its Maximum Packet
    /// Size); it is counted as dropped.
    pub fn discard(&mut self, id: PacketId) {
        if let Some(pos) = self.inflight.iter().position(|e| e.id == id) {
            self.finish_at(pos);
        }
        self.dropped = self.dropped.saturating_add(1);
    }

    /// Counts a QoS 0 message that could not be sent to this client.
    pub fn count_dropped(&mut self) {
        self.dropped = self.dropped.saturating_add(1);
    }

    fn remove_where(&mut self, id: PacketId, state: InflightState) -> bool {
        match self.inflight.iter().position(|e| e.id == id && e.state == state) {
            Some(pos) => {
                self.finish_at(pos);
                true
            }
            None => false,
        }
    }

    /// Removes a finished in-flight delivery (acknowledged, expired or given up) and journals that it is done.
    fn finish_at(&mut self, pos: usize) {
        let Some(e) = self.inflight.remove(pos) else { return };
        if !e.sent {
            self.unsent = self.unsent.saturating_sub(1);
        }
        let seq = e.seq;
        self.record(|client| Record::Done { client, seq });
    }

    /// The connection went away: everything in flight is resent when the session resumes.
    pub fn on_disconnect(&mut self) {
        for e in &mut self.inflight {
            e.sent = false;
        }
        self.unsent = self.inflight.len();
    }

    /// Whether the queue is so long that publishers should wait for this subscriber to catch up: otherwise a
    /// subscriber slower than its publishers holds an ever-growing backlog in memory, when the queue limits allow
    /// one. TCP then holds the publishers' data instead.
    pub fn is_backlogged(&self) -> bool {
        self.queue.len() > BACKLOG_MESSAGES || self.queued_bytes > BACKLOG_BYTES
    }

    /// Whether a backlogged queue has come down far enough (half the thresholds) for its publishers to go on.
    pub fn has_caught_up(&self) -> bool {
        self.queue.len() <= BACKLOG_MESSAGES / 2 && self.queued_bytes <= BACKLOG_BYTES / 2
    }

    /// Messages taken off the queue so far (sent or expired; wraps): a subscriber whose count does not move while
    /// its queue is backlogged has stopped reading.
    pub fn taken(&self) -> u64 {
        self.taken
    }

    /// Messages waiting behind the window.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Messages in flight.
    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }

    /// Messages dropped because the queue was full or the client could not take them.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Messages that expired before they could be delivered.
    pub fn expired(&self) -> u64 {
        self.expired
    }

    /// Whether anything is ready for [`Outbox::next_send`] (a cheap check before taking the write path).
    pub fn has_pending(&self) -> bool {
        self.unsent > 0
            || self
                .queue
                .front()
                .is_some_and(|h| h.qos == QoS::AtMostOnce || self.inflight.len() < usize::from(self.window))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limits(max_inflight: u16, max_queued: usize) -> OutboxLimits {
        OutboxLimits { max_inflight, max_queued, max_queued_bytes: 1 << 20, queue_qos0_offline: false }
    }

    fn d(n: u8, qos: QoS) -> Delivery {
        Delivery {
            msg: Arc::new(Message::from_parts("t", &[n], qos, false)),
            qos,
            retain: false,
            sub_ids: Box::default(),
        }
    }

    fn publish_payload(s: Option<Outgoing>) -> (Option<PacketId>, u8, bool) {
        match s {
            Some(Outgoing::Publish { id, delivery, dup }) => (id, delivery.msg.payload[0], dup),
            other => panic!("expected a publish, got {other:?}"),
        }
    }

    #[test]
    fn a_queued_delivery_is_small() {
        assert!(std::mem::size_of::<Delivery>() <= 32, "{}", std::mem::size_of::<Delivery>());
    }

    #[test]
    fn window_keeps_order_and_blocks_when_full() {
        let now = Instant::now();
        let mut o = Outbox::new(limits(2, 10));
        for n in 0..4 {
            o.push(d(n, QoS::AtLeastOnce), true).unwrap();
        }
        let (id0, p0, _) = publish_payload(o.next_send(now));
        let (_, p1, _) = publish_payload(o.next_send(now));
        assert_eq!((p0, p1), (0, 1));
        assert_eq!(o.next_send(now), None, "window of 2 is full");
        assert!(o.on_puback(id0.unwrap()));
        assert_eq!(publish_payload(o.next_send(now)).1, 2);
        assert_eq!(o.next_send(now), None);
    }

    #[test]
    fn receive_maximum_lowers_the_window() {
        let now = Instant::now();
        let mut o = Outbox::new(limits(10, 10));
        o.set_receive_maximum(1);
        o.push(d(1, QoS::AtLeastOnce), true).unwrap();
        o.push(d(2, QoS::AtLeastOnce), true).unwrap();
        assert!(o.next_send(now).is_some());
        assert_eq!(o.next_send(now), None);
    }

    #[test]
    fn resend_after_disconnect_sets_dup_and_resends_pubrel() {
        let now = Instant::now();
        let mut o = Outbox::new(limits(10, 10));
        o.push(d(1, QoS::AtLeastOnce), true).unwrap();
        o.push(d(2, QoS::ExactlyOnce), true).unwrap();
        let (id1, _, dup1) = publish_payload(o.next_send(now));
        let (id2, _, _) = publish_payload(o.next_send(now));
        assert!(!dup1);
        assert!(o.on_pubrec(id2.unwrap(), false));
        assert_eq!(o.next_send(now), Some(Outgoing::PubRel(id2.unwrap())));
        o.on_disconnect();
        let (rid, _, dup) = publish_payload(o.next_send(now));
        assert_eq!((rid, dup), (id1, true));
        assert_eq!(o.next_send(now), Some(Outgoing::PubRel(id2.unwrap())));
        assert!(o.on_pubcomp(id2.unwrap()));
        assert!(o.on_puback(id1.unwrap()));
        assert_eq!(o.inflight(), 0);
    }

    #[test]
    fn pending_resends_are_tracked_through_acks_discards_and_reconnects() {
        let now = Instant::now();
        let mut o = Outbox::new(limits(10, 10));
        let consistent = |o: &Outbox| assert_eq!(o.unsent, o.inflight.iter().filter(|e| !e.sent).count());
        o.push(d(1, QoS::AtLeastOnce), true).unwrap();
        o.push(d(2, QoS::ExactlyOnce), true).unwrap();
        o.push(d(3, QoS::AtLeastOnce), true).unwrap();
        let ids: Vec<PacketId> = (0..3).map(|_| publish_payload(o.next_send(now)).0.unwrap()).collect();
        assert!(!o.has_pending());
        assert!(o.on_pubrec(ids[1], false));
        assert!(o.on_pubrec(ids[1], false), "a repeated PUBREC asks for the PUBREL again");
        consistent(&o);
        assert!(o.has_pending());
        assert_eq!(o.next_send(now), Some(Outgoing::PubRel(ids[1])));
        assert!(!o.has_pending());
        o.on_disconnect();
        consistent(&o);
        o.discard(ids[0]);
        consistent(&o);
        assert!(o.has_pending());
        assert_eq!(o.next_send(now), Some(Outgoing::PubRel(ids[1])));
        assert_eq!(publish_payload(o.next_send(now)), (Some(ids[2]), 3, true));
        assert!(!o.has_pending());
        assert_eq!(o.next_send(now), None);
        consistent(&o);
        o.on_disconnect();
        assert!(o.on_puback(ids[2]));
        assert!(o.on_pubcomp(ids[1]));
        consistent(&o);
        assert!(!o.has_pending());
        assert_eq!(o.inflight(), 0);
    }

    #[test]
    fn full_queue_drops_and_counts() {
        let mut o = Outbox::new(limits(1, 2));
        o.push(d(1, QoS::AtLeastOnce), false).unwrap();
        o.push(d(2, QoS::AtLeastOnce), false).unwrap();
        assert_eq!(o.push(d(3, QoS::AtLeastOnce), false), Err(Rejected::Full));
        assert_eq!(o.dropped(), 1);
        assert_eq!(o.push(d(4, QoS::AtMostOnce), false), Err(Rejected::Offline));
        assert_eq!(o.dropped(), 1);
    }

    #[test]
    fn byte_limit_counts_payload() {
        let limits = OutboxLimits { max_inflight: 1, max_queued: 100, max_queued_bytes: 5, queue_qos0_offline: true };
        let mut o = Outbox::new(limits);
        let big = Delivery {
            msg: Arc::new(Message::from_parts("t", b"abcd", QoS::AtMostOnce, false)),
            qos: QoS::AtMostOnce,
            retain: false,
            sub_ids: Box::default(),
        };
        o.push(big.clone(), false).unwrap();
        assert_eq!(o.push(big, false), Err(Rejected::Full));
    }

    #[test]
    fn drop_oldest_makes_room_and_counts() {
        let now = Instant::now();
        let mut o = Outbox::new(limits(10, 10));
        let cost = d(0, QoS::AtLeastOnce).msg.cost();
        let bounded = OutboxLimits { max_queued: usize::MAX, max_queued_bytes: 3 * cost, ..limits(10, 10) };
        o.set_limits(bounded, true);
        for n in 0..5 {
            assert!(o.would_accept(&d(n, QoS::AtLeastOnce), false));
            o.push(d(n, QoS::AtLeastOnce), false).unwrap();
        }
        assert_eq!((o.queued(), o.dropped(), o.queued_bytes()), (3, 2, 3 * cost));
        let sent: Vec<u8> = (0..3).map(|_| publish_payload(o.next_send(now)).1).collect();
        assert_eq!(sent, vec![2, 3, 4], "the newest are kept, in order");
        o.set_limits(bounded, false);
        for n in 0..3 {
            o.push(d(n, QoS::AtLeastOnce), false).unwrap();
        }
        assert!(!o.would_accept(&d(9, QoS::AtLeastOnce), false));
        assert_eq!(o.push(d(9, QoS::AtLeastOnce), false), Err(Rejected::Full));
        assert_eq!(o.dropped(), 3);
    }

    #[test]
    fn expired_messages_are_never_sent() {
        let now = Instant::now();
        let mut o = Outbox::new(limits(10, 10));
        let mut msg = Message::from_parts("t", &[1], QoS::AtLeastOnce, false);
        msg.expires_at = Some(now + Duration::from_secs(1));
        let old = Delivery { msg: Arc::new(msg), ..d(1, QoS::AtLeastOnce) };
        o.push(old, true).unwrap();
        o.push(d(2, QoS::AtLeastOnce), true).unwrap();
        assert_eq!(publish_payload(o.next_send(now + Duration::from_secs(2))).1, 2);
        assert_eq!(o.expired(), 1);
    }

    #[test]
    fn backlog_thresholds() {
        let mut o = Outbox::new(limits(10, 10 * BACKLOG_MESSAGES));
        for _ in 0..BACKLOG_MESSAGES {
            o.push(d(0, QoS::AtMostOnce), true).unwrap();
        }
        assert!(!o.is_backlogged() && !o.has_caught_up());
        o.push(d(0, QoS::AtMostOnce), true).unwrap();
        assert!(o.is_backlogged());
        let now = Instant::now();
        while !o.has_caught_up() {
            assert!(o.next_send(now).is_some());
        }
        assert_eq!(o.queued(), BACKLOG_MESSAGES / 2);
    }

    #[test]
    fn packet_ids_skip_those_in_flight() {
        let now = Instant::now();
        let mut o = Outbox::new(limits(3, 10));
        o.last_id = u16::MAX - 1;
        for n in 0..3 {
            o.push(d(n, QoS::AtLeastOnce), true).unwrap();
        }
        let ids: Vec<u16> = (0..3).map(|_| publish_payload(o.next_send(now)).0.unwrap().get()).collect();
        assert_eq!(ids, vec![u16::MAX, 1, 2]);
    }
}
