//! The outbound side of one session: a bounded queue of messages waiting, and the in-flight window of QoS 1/2
//! messages sent but not yet acknowledged. It survives disconnects of persistent sessions.
//!
//! Pure data structure: no I/O, no clock. The session turns what [`Outbox::next_send`] yields into packets.

use std::collections::VecDeque;

use mqtt_codec::{PacketId, QoS};

use crate::message::Message;

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

#[derive(Debug)]
struct Inflight {
    id: PacketId,
    msg: Message,
    qos: QoS,
    retain: bool,
    state: InflightState,
    /// Sent on the current connection; cleared on disconnect so a resumed session resends it.
    sent: bool,
    /// Sent at least once before, so a PUBLISH resend carries DUP=1.
    dup: bool,
}

#[derive(Debug)]
struct Queued {
    msg: Message,
    qos: QoS,
    retain: bool,
}

/// What the session should put on the wire next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Send {
    /// A PUBLISH; `id` is `None` for QoS 0.
    Publish { id: Option<PacketId>, msg: Message, qos: QoS, retain: bool, dup: bool },
    /// A PUBREL for a QoS 2 message whose PUBREC arrived.
    PubRel(PacketId),
}

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
    queue: VecDeque<Queued>,
    queued_bytes: usize,
    inflight: VecDeque<Inflight>,
    last_id: u16,
    dropped: u64,
}

impl Outbox {
    /// An empty outbox.
    pub fn new(limits: OutboxLimits) -> Self {
        Self { limits, queue: VecDeque::new(), queued_bytes: 0, inflight: VecDeque::new(), last_id: 0, dropped: 0 }
    }

    /// Queues a message for delivery at `qos`.
    ///
    /// # Errors
    /// [`Rejected::Full`] when the queue is at a limit (the drop is counted), [`Rejected::Offline`] for QoS 0
    /// while offline unless configured to queue it.
    pub fn push(&mut self, msg: Message, qos: QoS, retain: bool, online: bool) -> Result<(), Rejected> {
        if !online && qos == QoS::AtMostOnce && !self.limits.queue_qos0_offline {
            return Err(Rejected::Offline);
        }
        let cost = msg.cost();
        if self.queue.len() >= self.limits.max_queued
            || self.queued_bytes.saturating_add(cost) > self.limits.max_queued_bytes
        {
            self.dropped = self.dropped.saturating_add(1);
            return Err(Rejected::Full);
        }
        self.queued_bytes = self.queued_bytes.saturating_add(cost);
        self.queue.push_back(Queued { msg, qos, retain });
        Ok(())
    }

    /// The next thing to send, if the window allows: resends first (DUP PUBLISH or PUBREL), then queued messages
    /// in order. A QoS 1/2 message at the head of the queue waits while the window is full, and so does everything
    /// behind it, so order is kept.
    pub fn next_send(&mut self) -> Option<Send> {
        if let Some(entry) = self.inflight.iter_mut().find(|e| !e.sent) {
            entry.sent = true;
            return Some(match entry.state {
                InflightState::AwaitPubComp => Send::PubRel(entry.id),
                _ => {
                    let dup = entry.dup;
                    entry.dup = true;
                    Send::Publish {
                        id: Some(entry.id),
                        msg: entry.msg.clone(),
                        qos: entry.qos,
                        retain: entry.retain,
                        dup,
                    }
                }
            });
        }
        let head = self.queue.front()?;
        if head.qos != QoS::AtMostOnce && self.inflight.len() >= usize::from(self.limits.max_inflight) {
            return None;
        }
        let Queued { msg, qos, retain } = self.queue.pop_front()?;
        self.queued_bytes = self.queued_bytes.saturating_sub(msg.cost());
        if qos == QoS::AtMostOnce {
            return Some(Send::Publish { id: None, msg, qos, retain, dup: false });
        }
        let id = self.next_id();
        let state = if qos == QoS::AtLeastOnce { InflightState::AwaitPubAck } else { InflightState::AwaitPubRec };
        self.inflight.push_back(Inflight { id, msg: msg.clone(), qos, retain, state, sent: true, dup: true });
        Some(Send::Publish { id: Some(id), msg, qos, retain, dup: false })
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

    /// PUBACK arrived. Returns whether it matched a QoS 1 message in flight.
    pub fn on_puback(&mut self, id: PacketId) -> bool {
        self.remove_where(id, InflightState::AwaitPubAck)
    }

    /// PUBREC arrived. Returns whether it matched; if so a PUBREL is due and [`Outbox::next_send`] yields it.
    pub fn on_pubrec(&mut self, id: PacketId) -> bool {
        match self.inflight.iter_mut().find(|e| e.id == id) {
            Some(e) if e.state == InflightState::AwaitPubRec => {
                e.state = InflightState::AwaitPubComp;
                e.sent = false;
                true
            }
            // A PUBREC repeated after our PUBREL was lost: send PUBREL again.
            Some(e) if e.state == InflightState::AwaitPubComp => {
                e.sent = false;
                true
            }
            _ => false,
        }
    }

    /// PUBCOMP arrived. Returns whether it matched.
    pub fn on_pubcomp(&mut self, id: PacketId) -> bool {
        self.remove_where(id, InflightState::AwaitPubComp)
    }

    fn remove_where(&mut self, id: PacketId, state: InflightState) -> bool {
        match self.inflight.iter().position(|e| e.id == id && e.state == state) {
            Some(pos) => {
                self.inflight.remove(pos);
                true
            }
            None => false,
        }
    }

    /// The connection went away: everything in flight is resent when the session resumes.
    pub fn on_disconnect(&mut self) {
        for e in &mut self.inflight {
            e.sent = false;
        }
    }

    /// Messages waiting behind the window.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Messages in flight.
    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }

    /// Messages dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Whether anything is ready for [`Outbox::next_send`] (a cheap check before taking the write path).
    pub fn has_pending(&self) -> bool {
        self.inflight.iter().any(|e| !e.sent)
            || self.queue.front().is_some_and(|h| {
                h.qos == QoS::AtMostOnce || self.inflight.len() < usize::from(self.limits.max_inflight)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_inflight: u16, max_queued: usize) -> OutboxLimits {
        OutboxLimits { max_inflight, max_queued, max_queued_bytes: 1 << 20, queue_qos0_offline: false }
    }

    fn msg(n: u8) -> Message {
        Message::from_parts("t", &[n], QoS::AtLeastOnce, false)
    }

    fn publish_payload(s: Option<Send>) -> (Option<PacketId>, u8, bool) {
        match s {
            Some(Send::Publish { id, msg, dup, .. }) => (id, msg.payload[0], dup),
            other => panic!("expected a publish, got {other:?}"),
        }
    }

    #[test]
    fn window_keeps_order_and_blocks_when_full() {
        let mut o = Outbox::new(limits(2, 10));
        for n in 0..4 {
            o.push(msg(n), QoS::AtLeastOnce, false, true).unwrap();
        }
        let (id0, p0, _) = publish_payload(o.next_send());
        let (_, p1, _) = publish_payload(o.next_send());
        assert_eq!((p0, p1), (0, 1));
        assert_eq!(o.next_send(), None, "window of 2 is full");
        assert!(o.on_puback(id0.unwrap()));
        assert_eq!(publish_payload(o.next_send()).1, 2);
        assert_eq!(o.next_send(), None);
    }

    #[test]
    fn resend_after_disconnect_sets_dup_and_resends_pubrel() {
        let mut o = Outbox::new(limits(10, 10));
        o.push(msg(1), QoS::AtLeastOnce, false, true).unwrap();
        o.push(msg(2), QoS::ExactlyOnce, false, true).unwrap();
        let (id1, _, dup1) = publish_payload(o.next_send());
        let (id2, _, _) = publish_payload(o.next_send());
        assert!(!dup1);
        assert!(o.on_pubrec(id2.unwrap()));
        assert_eq!(o.next_send(), Some(Send::PubRel(id2.unwrap())));
        o.on_disconnect();
        let (rid, _, dup) = publish_payload(o.next_send());
        assert_eq!((rid, dup), (id1, true));
        assert_eq!(o.next_send(), Some(Send::PubRel(id2.unwrap())));
        assert!(o.on_pubcomp(id2.unwrap()));
        assert!(o.on_puback(id1.unwrap()));
        assert_eq!(o.inflight(), 0);
    }

    #[test]
    fn full_queue_drops_and_counts() {
        let mut o = Outbox::new(limits(1, 2));
        o.push(msg(1), QoS::AtLeastOnce, false, false).unwrap();
        o.push(msg(2), QoS::AtLeastOnce, false, false).unwrap();
        assert_eq!(o.push(msg(3), QoS::AtLeastOnce, false, false), Err(Rejected::Full));
        assert_eq!(o.dropped(), 1);
        assert_eq!(o.push(msg(4), QoS::AtMostOnce, false, false), Err(Rejected::Offline));
        assert_eq!(o.dropped(), 1);
    }

    #[test]
    fn byte_limit_counts_payload() {
        let mut o = Outbox::new(OutboxLimits {
            max_inflight: 1,
            max_queued: 100,
            max_queued_bytes: 5,
            queue_qos0_offline: true,
        });
        let big = Message::from_parts("t", b"abcd", QoS::AtMostOnce, false);
        o.push(big.clone(), QoS::AtMostOnce, false, false).unwrap();
        assert_eq!(o.push(big, QoS::AtMostOnce, false, false), Err(Rejected::Full));
    }

    #[test]
    fn packet_ids_skip_those_in_flight() {
        let mut o = Outbox::new(limits(3, 10));
        o.last_id = u16::MAX - 1;
        for n in 0..3 {
            o.push(msg(n), QoS::AtLeastOnce, false, true).unwrap();
        }
        let ids: Vec<u16> = (0..3).map(|_| publish_payload(o.next_send()).0.unwrap().get()).collect();
        assert_eq!(ids, vec![u16::MAX, 1, 2]);
    }
}
