//! The router: the one owner of sessions, subscriptions and retained messages.
//!
//! It is a plain synchronous struct behind one `std::sync::Mutex` (never held across an `.await`). Publishing
//! matches the topic in the [`trie`], merges overlapping subscriptions of a session into one copy at the highest
//! granted QoS, and pushes into each session's bounded [`Outbox`](crate::queue::Outbox) without ever waiting for a
//! subscriber: a full queue drops the message for that subscriber only, and counts and logs the drop.

pub mod retained;
pub mod store;
pub mod trie;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mqtt_codec::{PacketId, QoS};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::message::Message;
use crate::queue::{Outbox, OutboxLimits, Rejected};
use store::{MemoryStore, Store};
use trie::Trie;

/// Broker-wide counters, updated without the router lock.
#[derive(Debug, Default)]
pub struct Counters {
    /// Clients connected now.
    pub clients_connected: AtomicUsize,
    /// PUBLISH packets received.
    pub messages_received: AtomicU64,
    /// PUBLISH packets sent.
    pub messages_delivered: AtomicU64,
    /// Messages dropped on full queues.
    pub messages_dropped: AtomicU64,
}

/// The live connection attached to a session.
#[derive(Debug, Clone)]
pub struct ConnLink {
    /// Unique per connection.
    pub id: u64,
    /// Cancelled when another connection takes the session over.
    pub kick: CancellationToken,
}

/// Session state that outlives a connection (for persistent sessions).
#[derive(Debug)]
pub struct SessionState {
    /// Outbound queue and in-flight window.
    pub outbox: Outbox,
    /// Inbound QoS 2 packet ids received and not yet released by PUBREL.
    pub inbound_qos2: HashSet<PacketId>,
    /// Clean session: discarded when the connection ends.
    pub clean: bool,
    /// The connection attached now, if any.
    pub conn: Option<ConnLink>,
    /// This session's subscriptions and their granted QoS.
    pub subscriptions: HashMap<String, QoS>,
    drops_since_log: u64,
    last_drop_log: Option<Instant>,
}

/// One session: its state and the signal that wakes its connection when messages are queued.
#[derive(Debug)]
pub struct SessionHandle {
    /// The client identifier.
    pub client_id: Arc<str>,
    state: Mutex<SessionState>,
    /// Notified when the outbox has something new.
    pub wake: Notify,
}

impl SessionHandle {
    /// Locks the session state. A poisoned lock is recovered: the state stays usable.
    pub fn lock(&self) -> MutexGuard<'_, SessionState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A session compared by identity, as the trie stores it.
#[derive(Debug, Clone)]
pub struct SessionRef(pub Arc<SessionHandle>);

impl PartialEq for SessionRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// Limits the router applies.
#[derive(Debug, Clone, Copy)]
pub struct RouterLimits {
    /// Per-session outbox limits.
    pub outbox: OutboxLimits,
    /// Retained messages.
    pub max_retained: usize,
    /// Subscriptions per session.
    pub max_subscriptions: usize,
}

/// Why a subscription was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeError {
    /// The session holds its maximum number of subscriptions.
    TooMany,
}

/// Sessions, subscriptions and retained messages.
#[derive(Debug)]
pub struct Router {
    store: Box<dyn Store>,
    trie: Trie<SessionRef>,
    limits: RouterLimits,
    counters: Arc<Counters>,
    scratch: Vec<(SessionRef, QoS)>,
}

impl Router {
    /// An empty router over an in-memory store.
    pub fn new(limits: RouterLimits, counters: Arc<Counters>) -> Self {
        Self::with_store(Box::new(MemoryStore::new(limits.max_retained)), limits, counters)
    }

    /// A router over the given store.
    pub fn with_store(store: Box<dyn Store>, limits: RouterLimits, counters: Arc<Counters>) -> Self {
        Self { store, trie: Trie::default(), limits, counters, scratch: Vec::new() }
    }

    /// Attaches a connection to the session of `client_id`, creating or discarding it as `clean` says.
    ///
    /// A connection already attached is kicked (takeover). Returns the session and whether it was resumed.
    pub fn connect(&mut self, client_id: &str, clean: bool, link: ConnLink) -> (Arc<SessionHandle>, bool) {
        if let Some(existing) = self.store.session(client_id).cloned() {
            let mut state = existing.lock();
            if let Some(old) = state.conn.take() {
                old.kick.cancel();
            }
            if !clean && !state.clean {
                state.conn = Some(link);
                state.outbox.on_disconnect();
                drop(state);
                return (existing, true);
            }
            drop(state);
            self.remove_session(&existing);
        }
        let handle = Arc::new(SessionHandle {
            client_id: Arc::from(client_id),
            state: Mutex::new(SessionState {
                outbox: Outbox::new(self.limits.outbox),
                inbound_qos2: HashSet::new(),
                clean,
                conn: Some(link),
                subscriptions: HashMap::new(),
                drops_since_log: 0,
                last_drop_log: None,
            }),
            wake: Notify::new(),
        });
        self.store.insert_session(handle.clone());
        (handle, false)
    }

    /// The connection `conn_id` of this session ended. A clean session is discarded; a persistent one keeps its
    /// subscriptions and queue, and resends what was in flight when it resumes.
    pub fn disconnect(&mut self, session: &Arc<SessionHandle>, conn_id: u64) {
        let mut state = session.lock();
        if state.conn.as_ref().is_none_or(|c| c.id != conn_id) {
            return; // taken over: the new connection owns the session now
        }
        state.conn = None;
        state.outbox.on_disconnect();
        let clean = state.clean;
        drop(state);
        if clean {
            self.remove_session(session);
        }
    }

    fn remove_session(&mut self, session: &Arc<SessionHandle>) {
        if self.store.session(&session.client_id).is_some_and(|s| Arc::ptr_eq(s, session)) {
            self.store.remove_session(&session.client_id);
        }
        let filters: Vec<String> = session.lock().subscriptions.drain().map(|(f, _)| f).collect();
        let key = SessionRef(session.clone());
        for f in filters {
            self.trie.remove(&f, &key);
        }
    }

    /// Subscribes a session and queues the retained messages that match. Returns the granted QoS.
    ///
    /// # Errors
    /// [`SubscribeError::TooMany`] past the per-session limit.
    pub fn subscribe(&mut self, session: &Arc<SessionHandle>, filter: &str, qos: QoS) -> Result<QoS, SubscribeError> {
        {
            let mut state = session.lock();
            if !state.subscriptions.contains_key(filter) && state.subscriptions.len() >= self.limits.max_subscriptions {
                return Err(SubscribeError::TooMany);
            }
            state.subscriptions.insert(filter.to_owned(), qos);
        }
        self.trie.insert(filter, SessionRef(session.clone()), qos);
        let mut retained = Vec::new();
        self.store.for_each_retained(filter, &mut |m| retained.push(m.clone()));
        for msg in retained {
            let effective = msg.qos.min(qos);
            self.deliver(session, msg, effective, true);
        }
        Ok(qos)
    }

    /// Removes a subscription. Returns whether it existed.
    pub fn unsubscribe(&mut self, session: &Arc<SessionHandle>, filter: &str) -> bool {
        let existed = session.lock().subscriptions.remove(filter).is_some();
        self.trie.remove(filter, &SessionRef(session.clone()));
        existed
    }

    /// Routes a published message: updates the retained store, then queues one copy per matching session at the
    /// highest QoS any of its matching subscriptions granted (capped by the message's QoS).
    pub fn publish(&mut self, msg: Message) {
        if msg.retain && self.store.set_retained(&msg).is_err() {
            tracing::warn!(
                topic = msg.topic(),
                max = self.limits.max_retained,
                "retained store full; message not retained"
            );
        }
        let mut matches = std::mem::take(&mut self.scratch);
        matches.clear();
        self.trie.matches(msg.topic(), &mut matches);
        // One copy per session: sort by identity, keep the highest QoS [MQTT-3.3.5-1].
        matches.sort_by_key(|(s, _)| Arc::as_ptr(&s.0) as usize);
        let mut i = 0;
        while i < matches.len() {
            let (session, mut qos) = matches[i].clone();
            let mut j = i + 1;
            while j < matches.len() && matches[j].0 == session {
                qos = qos.max(matches[j].1);
                j += 1;
            }
            // Forwarded copies of a retained publication carry RETAIN=0 [MQTT-3.3.1-9].
            self.deliver(&session.0, msg.clone(), qos.min(msg.qos), false);
            i = j;
        }
        matches.clear();
        self.scratch = matches;
    }

    fn deliver(&self, session: &Arc<SessionHandle>, msg: Message, qos: QoS, retain: bool) {
        let mut state = session.lock();
        let online = state.conn.is_some();
        match state.outbox.push(msg, qos, retain, online) {
            Ok(()) => {
                drop(state);
                if online {
                    session.wake.notify_one();
                }
            }
            Err(Rejected::Offline) => {}
            Err(Rejected::Full) => {
                self.counters.messages_dropped.fetch_add(1, Ordering::Relaxed);
                state.drops_since_log = state.drops_since_log.saturating_add(1);
                let now = Instant::now();
                if state.last_drop_log.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1)) {
                    tracing::warn!(
                        client_id = &*session.client_id,
                        dropped = state.drops_since_log,
                        dropped_total = state.outbox.dropped(),
                        queued = state.outbox.queued(),
                        "session queue full; dropping messages"
                    );
                    state.drops_since_log = 0;
                    state.last_drop_log = Some(now);
                }
            }
        }
    }

    /// The session of a client, if held.
    pub fn session(&self, client_id: &str) -> Option<&Arc<SessionHandle>> {
        self.store.session(client_id)
    }

    /// Sessions held.
    pub fn session_count(&self) -> usize {
        self.store.session_count()
    }

    /// Retained messages held.
    pub fn retained_count(&self) -> usize {
        self.store.retained_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(max_queued: usize) -> Router {
        let outbox =
            OutboxLimits { max_inflight: 10, max_queued, max_queued_bytes: 1 << 20, queue_qos0_offline: false };
        Router::new(RouterLimits { outbox, max_retained: 100, max_subscriptions: 10 }, Arc::default())
    }

    fn link(id: u64) -> ConnLink {
        ConnLink { id, kick: CancellationToken::new() }
    }

    fn drain(s: &Arc<SessionHandle>) -> Vec<(Vec<u8>, QoS, bool)> {
        let mut out = Vec::new();
        let mut st = s.lock();
        while let Some(crate::queue::Send::Publish { msg, qos, retain, .. }) = st.outbox.next_send() {
            out.push((msg.payload.to_vec(), qos, retain));
        }
        out
    }

    #[test]
    fn overlapping_subscriptions_deliver_one_copy_at_highest_qos() {
        let mut r = router(10);
        let (s, _) = r.connect("c", true, link(1));
        r.subscribe(&s, "a/#", QoS::AtMostOnce).unwrap();
        r.subscribe(&s, "a/+", QoS::AtLeastOnce).unwrap();
        r.publish(Message::from_parts("a/b", b"x", QoS::ExactlyOnce, false));
        assert_eq!(drain(&s), vec![(b"x".to_vec(), QoS::AtLeastOnce, false)]);
    }

    #[test]
    fn persistent_session_queues_while_offline_and_takeover_kicks() {
        let mut r = router(10);
        let first = link(1);
        let (s, present) = r.connect("p", false, first.clone());
        assert!(!present);
        r.subscribe(&s, "t", QoS::AtLeastOnce).unwrap();
        r.disconnect(&s, 1);
        r.publish(Message::from_parts("t", b"q1", QoS::AtLeastOnce, false));
        r.publish(Message::from_parts("t", b"q0", QoS::AtMostOnce, false));
        let (s2, present) = r.connect("p", false, link(2));
        assert!(present && Arc::ptr_eq(&s, &s2));
        assert_eq!(drain(&s2), vec![(b"q1".to_vec(), QoS::AtLeastOnce, false)]);
        let third = link(3);
        r.connect("p", false, third);
        assert!(!first.kick.is_cancelled());
        // The connection of link 2 was kicked by link 3, and its late disconnect does not detach link 3.
        r.disconnect(&s2, 2);
        assert_eq!(s2.lock().conn.as_ref().map(|c| c.id), Some(3));
    }

    #[test]
    fn clean_session_is_discarded_with_its_subscriptions() {
        let mut r = router(10);
        let (s, _) = r.connect("c", true, link(1));
        r.subscribe(&s, "t", QoS::AtMostOnce).unwrap();
        r.disconnect(&s, 1);
        assert_eq!(r.session_count(), 0);
        assert!(r.trie.is_empty());
    }

    #[test]
    fn retained_delivered_on_subscribe_with_retain_flag() {
        let mut r = router(10);
        r.publish(Message::from_parts("r/1", b"a", QoS::AtLeastOnce, true));
        r.publish(Message::from_parts("r/2", b"b", QoS::AtMostOnce, true));
        let (s, _) = r.connect("c", true, link(1));
        r.subscribe(&s, "r/+", QoS::ExactlyOnce).unwrap();
        let mut got = drain(&s);
        got.sort();
        assert_eq!(got, vec![(b"a".to_vec(), QoS::AtLeastOnce, true), (b"b".to_vec(), QoS::AtMostOnce, true)]);
    }

    #[test]
    fn full_queue_drops_for_that_session_only() {
        let mut r = router(1);
        let (slow, _) = r.connect("slow", false, link(1));
        let (fast, _) = r.connect("fast", false, link(2));
        r.subscribe(&slow, "t", QoS::AtLeastOnce).unwrap();
        r.subscribe(&fast, "t", QoS::AtLeastOnce).unwrap();
        r.publish(Message::from_parts("t", b"1", QoS::AtLeastOnce, false));
        assert_eq!(drain(&fast).len(), 1);
        r.publish(Message::from_parts("t", b"2", QoS::AtLeastOnce, false));
        assert_eq!(drain(&fast).len(), 1);
        assert_eq!(slow.lock().outbox.dropped(), 1);
        assert_eq!(r.counters.messages_dropped.load(Ordering::Relaxed), 1);
    }
}
