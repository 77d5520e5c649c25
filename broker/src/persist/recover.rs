//! Recovery: the journal's records replayed into a model of durable state, then that state built into the router.
//!
//! Records are applied in order; each sets or removes a piece of state (see [`super::record`]), so the records
//! written while a checkpoint was taken replay correctly over it. A record that does not decode, or that names a
//! session or delivery that does not exist (its earlier records were in a damaged region), is counted and skipped:
//! everything else is kept. Expiry is wall-clock time: a session or message that expired while the broker was down
//! is gone.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use mqtt_codec::{PacketId, QoS};
use tokio::time::Instant;

use super::record::Record;
use crate::journal::{Recovered, RecoveryReport};
use crate::message::Message;
use crate::queue::{Delivery, InflightState};
use crate::router::{Router, SessionOwner, SubOpts};

/// What recovery found and rebuilt.
#[derive(Debug, Default, Clone)]
pub struct RecoveryStats {
    /// Records read.
    pub records: u64,
    /// Records that did not decode or referred to state that was not there.
    pub skipped: u64,
    /// Sessions rebuilt.
    pub sessions: usize,
    /// Sessions that expired while the broker was down.
    pub expired_sessions: usize,
    /// Messages queued or in flight, over all sessions.
    pub queued: usize,
    /// Messages that expired while the broker was down.
    pub expired_messages: usize,
    /// Retained messages.
    pub retained: usize,
    /// Pending wills.
    pub wills: usize,
    /// The journal identifier the next stored message gets.
    pub next_message: u64,
    /// The journal's own report: files, damage found and set aside.
    pub report: Option<RecoveryReport>,
    /// How long opening, replaying and the first checkpoint took.
    pub duration: Duration,
}

#[derive(Debug, Default)]
struct Session {
    expiry: Option<u32>,
    owner: Option<SessionOwner>,
    offline_at_ms: Option<u64>,
    subscriptions: BTreeMap<String, SubOpts>,
    entries: BTreeMap<u64, Entry>,
    inbound: BTreeSet<u16>,
}

#[derive(Debug)]
struct Entry {
    msg: u64,
    qos: QoS,
    retain: bool,
    sub_ids: Vec<u32>,
    sent: Option<(u16, bool)>,
}

#[derive(Debug)]
struct Will {
    msg: Option<Message>,
    delay: u32,
    due_ms: Option<u64>,
}

#[derive(Default)]
struct Model {
    /// What recovered messages are charged to: the broker's memory budget (see [`crate::budget`]).
    budget: Arc<crate::budget::Budget>,
    sessions: HashMap<String, Session>,
    /// `None`: the message had expired when it was read.
    messages: HashMap<u64, Option<Arc<Message>>>,
    retained: HashMap<String, u64>,
    wills: HashMap<String, Will>,
    max_message: u64,
    skipped: u64,
}

impl Model {
    /// A stored message rebuilt and charged to the budget; `None` when it expired.
    fn message(&self, msg: &super::record::StoredMessage<'_>, now: Instant) -> Option<Arc<Message>> {
        Message::from_stored(msg, now).map(|m| Arc::new(m.charge_recovered(&self.budget)))
    }

    /// Applies one record; `false` when it refers to state that is not there.
    fn apply(&mut self, record: Record<'_>, now: Instant) -> bool {
        match record {
            Record::SessionOpen { client, fresh, expiry, owner } => {
                let s = if fresh {
                    self.sessions.insert(client.to_owned(), Session::default());
                    self.sessions.get_mut(client)
                } else {
                    Some(self.sessions.entry(client.to_owned()).or_default())
                };
                if let Some(s) = s {
                    s.expiry = expiry;
                    s.offline_at_ms = None;
                    // A record without one (an older journal) keeps what an earlier record said.
                    if let Some(owner) = owner.and_then(SessionOwner::from_stored) {
                        s.owner = Some(owner);
                    }
                }
            }
            Record::SessionOffline { client, at_ms, expiry } => {
                let Some(s) = self.sessions.get_mut(client) else { return false };
                s.offline_at_ms = Some(at_ms);
                s.expiry = expiry;
            }
            Record::SessionEnd { client } => {
                self.sessions.remove(client);
            }
            Record::Subscribe { client, filter, opts } => {
                let Some(s) = self.sessions.get_mut(client) else { return false };
                s.subscriptions.insert(filter.to_owned(), SubOpts::from_stored(opts));
            }
            Record::Unsubscribe { client, filter } => {
                let Some(s) = self.sessions.get_mut(client) else { return false };
                s.subscriptions.remove(filter);
            }
            Record::Message { id, msg } => {
                self.max_message = self.max_message.max(id);
                let msg = self.message(&msg, now);
                self.messages.insert(id, msg);
            }
            Record::Routed { id, msg, retain, origin, entries } => {
                self.max_message = self.max_message.max(id);
                if retain {
                    if msg.payload.is_empty() {
                        self.retained.remove(msg.topic);
                    } else {
                        self.retained.insert(msg.topic.to_owned(), id);
                    }
                }
                if let Some((client, pid)) = origin
                    && let Some(s) = self.sessions.get_mut(client)
                {
                    s.inbound.insert(pid);
                }
                for e in entries {
                    let Some(s) = self.sessions.get_mut(e.client) else { continue };
                    let entry = Entry { msg: id, qos: e.qos, retain: e.retain, sub_ids: e.sub_ids, sent: None };
                    s.entries.insert(e.seq, entry);
                }
                let msg = self.message(&msg, now);
                self.messages.insert(id, msg);
            }
            Record::Enqueue { client, seq, msg, qos, retain, sub_ids } => {
                let Some(s) = self.sessions.get_mut(client) else { return false };
                s.entries.insert(seq, Entry { msg, qos, retain, sub_ids, sent: None });
            }
            Record::Sent { client, seq, pid } => {
                let Some(e) = self.sessions.get_mut(client).and_then(|s| s.entries.get_mut(&seq)) else {
                    return false;
                };
                e.sent = Some((pid, false));
            }
            Record::Released { client, seq } => {
                let Some(e) = self.sessions.get_mut(client).and_then(|s| s.entries.get_mut(&seq)) else {
                    return false;
                };
                let Some((_, released)) = &mut e.sent else { return false };
                *released = true;
            }
            Record::Done { client, seq } => {
                if let Some(s) = self.sessions.get_mut(client) {
                    s.entries.remove(&seq);
                }
            }
            Record::Inbound { client, pid, held } => {
                let Some(s) = self.sessions.get_mut(client) else { return false };
                if held {
                    s.inbound.insert(pid);
                } else {
                    s.inbound.remove(&pid);
                }
            }
            Record::Retain { topic, msg: Some(id) } => {
                self.retained.insert(topic.to_owned(), id);
            }
            Record::Retain { topic, msg: None } => {
                self.retained.remove(topic);
            }
            Record::Will { client, will: Some((msg, delay)), due_ms } => {
                let msg = Message::from_stored(&msg, now).map(|m| m.charge_recovered(&self.budget));
                self.wills.insert(client.to_owned(), Will { msg, delay, due_ms });
            }
            Record::Will { client, will: None, .. } => {
                self.wills.remove(client);
            }
        }
        true
    }
}

/// Replays `records` into `router`, which must be empty and without a journal (so that rebuilding appends
/// nothing).
pub(super) fn replay(router: &mut Router, records: Recovered, now: Instant) -> RecoveryStats {
    let mut model = Model { budget: router.budget().clone(), ..Model::default() };
    let mut stats = RecoveryStats::default();
    for bytes in records {
        stats.records += 1;
        let applied = match Record::decode(&bytes) {
            Ok(record) => model.apply(record, now),
            Err(e) => {
                tracing::warn!(error = %e, "journal: a record that does not decode was skipped");
                false
            }
        };
        if !applied {
            model.skipped += 1;
        }
    }
    stats.skipped = model.skipped;
    stats.next_message = model.max_message.saturating_add(1);
    build(router, model, now, &mut stats);
    if stats.skipped > 0 {
        tracing::error!(skipped = stats.skipped, "journal: records skipped during recovery");
    }
    stats
}

/// Builds the router's state from the model.
fn build(router: &mut Router, model: Model, now: Instant, stats: &mut RecoveryStats) {
    let now_ms = super::now_ms();
    let Model { sessions, messages, retained, mut wills, .. } = model;
    let message = |id: u64| messages.get(&id).cloned().flatten();
    for (client, s) in sessions {
        // A session whose connection was open at the crash went offline when the broker stopped; when that was
        // is unknown, so its expiry counts from now.
        let offline_at_ms = s.offline_at_ms.unwrap_or(now_ms);
        let expiry = super::duration(s.expiry);
        let offline_for = Duration::from_millis(now_ms.saturating_sub(offline_at_ms));
        if expiry.is_some_and(|e| offline_for >= e) {
            stats.expired_sessions += 1;
            continue;
        }
        let disconnected_at = now.checked_sub(offline_for).unwrap_or(now);
        let subscriptions: Vec<(String, SubOpts)> = s.subscriptions.into_iter().collect();
        let handle = router.restore_session(&client, expiry, disconnected_at, &subscriptions);
        let mut state = handle.lock();
        state.restore_owner(s.owner);
        for (_, e) in s.entries {
            let Some(msg) = message(e.msg) else {
                stats.expired_messages += 1;
                continue;
            };
            let delivery = Delivery { msg, qos: e.qos, retain: e.retain, sub_ids: e.sub_ids.into() };
            match (e.sent, PacketId::new(e.sent.map_or(0, |(pid, _)| pid))) {
                (Some((_, released)), Some(id)) if e.qos != QoS::AtMostOnce => {
                    let st = match (e.qos, released) {
                        (QoS::AtLeastOnce, _) => InflightState::AwaitPubAck,
                        (_, false) => InflightState::AwaitPubRec,
                        (_, true) => InflightState::AwaitPubComp,
                    };
                    state.outbox_mut().restore_inflight(id, delivery, st);
                }
                _ => state.outbox_mut().restore_queued(delivery),
            }
            stats.queued += 1;
        }
        for pid in s.inbound.into_iter().filter_map(PacketId::new) {
            state.restore_inbound(pid);
        }
        // A will whose connection was open at the crash: the connection ended when the broker stopped.
        if let Some(w) = wills.get_mut(&client)
            && w.due_ms.is_none()
        {
            let wait = Duration::from_secs(u64::from(w.delay)).min(expiry.unwrap_or(Duration::MAX));
            w.due_ms = Some(now_ms.saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)));
        }
        drop(state);
        stats.sessions += 1;
    }
    for (client, w) in wills {
        let Some(msg) = w.msg else { continue };
        let due = w.due_ms.and_then(|ms| super::instant_of(ms, now)).unwrap_or(now);
        router.restore_will(&client, due, msg);
        stats.wills += 1;
    }
    for (_, id) in retained {
        if let Some(msg) = message(id) {
            router.restore_retained(&msg);
            stats.retained += 1;
        }
    }
}
