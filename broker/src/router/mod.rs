//! The router: the one owner of sessions, subscriptions and retained messages.
//!
//! It is a plain synchronous struct behind one `std::sync::Mutex` (never held across an `.await`). Publishing
//! matches the topic in the [`trie`], merges overlapping subscriptions of a session into one copy at the highest
//! granted QoS, and pushes into each session's bounded [`Outbox`] without ever waiting for a subscriber: a full
//! queue drops the message for that subscriber only, and counts and logs the drop. Where the limits let a queue grow
//! long, a subscriber far behind is reported to the publisher's connection ([`Router::take_backlogged`]), which
//! waits for it before reading more ([`SessionHandle::caught_up`]). A message for several subscribers is shared
//! ([`Delivery`] holds an `Arc`) and encoded once per shape ([`Message::encoded`]).

mod access;
mod admin;
mod durable;
mod lifecycle;
pub mod retained;
mod retained_scan;
mod sessions;
mod shared;
pub mod store;
pub mod trie;

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use mqtt_codec::{PacketId, QoS, ReasonCode, RetainHandling, SharedFilter};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::journal::Lsn;
use crate::logging::Untrusted;
use crate::message::Message;
use crate::persist::{Durable, Record};
use crate::queue::{Delivery, OutboxLimits, Rejected};
pub use retained::Scan;
pub use retained_scan::{RetainedScan, RetainedStep};
use shared::Group;
pub use shared::SharedStrategy;
use store::{MemoryStore, Store};
use trie::Trie;

pub use admin::{EndError, SessionView};
pub use durable::DurableState;
use sessions::pushed;
pub use sessions::{
    ConnInfo, ConnLink, PacketIds, SessionHandle, SessionOwner, SessionRef, StoredSession, Subscriptions,
};

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
    /// PUBLISH packets refused and not routed (topic too deep, a reserved `$` topic, a payload not in its format).
    pub messages_refused: AtomicU64,
    /// Messages not sent to a client because they exceed its Maximum Packet Size (also in `messages_dropped`).
    pub messages_oversized: AtomicU64,
    /// The memory budget for message bytes, with drops by reason (see [`crate::budget`]).
    pub budget: Arc<crate::budget::Budget>,
    /// Everything else operators see (see [`crate::metrics`]).
    pub obs: crate::metrics::Metrics,
}

/// Limits and policies the router applies.
#[derive(Debug, Clone, Copy)]
pub struct RouterLimits {
    /// Per-session outbox limits.
    pub outbox: OutboxLimits,
    /// Retained messages.
    pub max_retained: usize,
    /// Bytes of retained messages (0: no limit).
    pub max_retained_bytes: usize,
    /// Delayed wills waiting at once; beyond it a will goes out at once (0: no limit).
    pub max_pending_wills: usize,
    /// Subscriptions per session.
    pub max_subscriptions: usize,
    /// How shared subscription groups pick a member.
    pub shared_strategy: SharedStrategy,
    /// Disconnect a connected client whose queue overflows (MQTT 5: DISCONNECT `0x97`) instead of only dropping.
    pub disconnect_slow_consumers: bool,
}

/// The options of one subscription, as the trie stores them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubOpts {
    /// Granted QoS.
    pub qos: QoS,
    /// MQTT 5 No Local.
    pub no_local: bool,
    /// MQTT 5 Retain As Published.
    pub retain_as_published: bool,
    /// MQTT 5 Subscription Identifier.
    pub id: Option<u32>,
    /// The ACL lets the subscriber read some of the topics this filter matches, not all: each message is checked
    /// against the session's [`crate::auth::ClientAccess`] on delivery (see [`crate::auth`]).
    pub acl_check: bool,
}

impl SubOpts {
    /// Plain options: a QoS and nothing else.
    pub fn qos(qos: QoS) -> Self {
        Self { qos, no_local: false, retain_as_published: false, id: None, acl_check: false }
    }

    /// The options as the journal stores them.
    pub fn stored(self) -> crate::persist::record::StoredSubOpts {
        let Self { qos, no_local, retain_as_published, id, acl_check } = self;
        crate::persist::record::StoredSubOpts { qos, no_local, retain_as_published, id, acl_check }
    }

    /// The options read back from the journal.
    pub fn from_stored(o: crate::persist::record::StoredSubOpts) -> Self {
        let crate::persist::record::StoredSubOpts { qos, no_local, retain_as_published, id, acl_check } = o;
        Self { qos, no_local, retain_as_published, id, acl_check }
    }
}

/// Why a subscription was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeError {
    /// The session holds its maximum number of subscriptions.
    TooMany,
}

/// What became of a published message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Routed {
    /// Sessions (or shared groups) whose subscriptions matched.
    pub matched: usize,
    /// Of those, how many could not take it (queue full).
    pub dropped: usize,
}

#[derive(Debug)]
struct PendingWill {
    client_id: Arc<str>,
    due: Instant,
    msg: Message,
}

/// Pushes onto a list that grows by half, from room for one, instead of doubling from room for four: the lists the
/// router keeps per topic filter and per session mostly hold one or two entries, and there are thousands of them.
fn push_compact<T>(list: &mut Vec<T>, item: T) {
    if list.len() == list.capacity() {
        list.reserve_exact((list.len() / 2).max(1));
    }
    list.push(item);
}

/// Sessions, subscriptions and retained messages.
#[derive(Debug)]
pub struct Router {
    store: Box<dyn Store>,
    trie: Trie<SessionRef, SubOpts>,
    /// Shared subscriptions: the trie maps each filter to the full `$share/{group}/{filter}` string, which names
    /// the group.
    shared_trie: Trie<Arc<str>, ()>,
    groups: HashMap<Arc<str>, Group>,
    pending_wills: Vec<PendingWill>,
    limits: RouterLimits,
    counters: Arc<Counters>,
    /// The allocation of the match list, kept from one publish to the next (see [`recycle`]).
    scratch: Vec<usize>,
    rng: u64,
    /// Shared by every session (see `SessionHandle::caught_up`).
    caught_up: Arc<Notify>,
    /// An online session whose queue the last [`Router::publish`] left backlogged.
    backlogged: Option<Arc<SessionHandle>>,
    /// See [`Router::connection_ended`].
    conn_ended: Arc<Notify>,
    /// The journal, when persistence is on (see [`crate::persist`]).
    durable: Option<Durable>,
    /// The last journal position appended since [`Router::take_lsn`] (see there).
    lsn: Cell<Lsn>,
}

/// Another connection is attached to the session: it has been kicked; wait for [`Router::connection_ended`] and
/// try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

impl Router {
    /// An empty router over an in-memory store.
    pub fn new(limits: RouterLimits, counters: Arc<Counters>) -> Self {
        let store = MemoryStore::new(limits.max_retained).with_max_retained_bytes(limits.max_retained_bytes);
        Self::with_store(Box::new(store), limits, counters)
    }

    /// A router over the given store.
    pub fn with_store(store: Box<dyn Store>, limits: RouterLimits, counters: Arc<Counters>) -> Self {
        Self {
            store,
            trie: Trie::default(),
            shared_trie: Trie::default(),
            groups: HashMap::new(),
            pending_wills: Vec::new(),
            limits,
            counters,
            scratch: Vec::new(),
            rng: 0x9e37_79b9_7f4a_7c15,
            backlogged: None,
            caught_up: Arc::default(),
            conn_ended: Arc::default(),
            durable: None,
            lsn: Cell::new(Lsn::ZERO),
        }
    }

    /// The broker's memory budget for message bytes.
    pub fn budget(&self) -> &Arc<crate::budget::Budget> {
        &self.counters.budget
    }

    fn unlink(&mut self, session: &Arc<SessionHandle>, filter: &str) {
        let key = SessionRef(session.clone());
        if let Ok(Some(shared)) = SharedFilter::parse(filter) {
            let name: Arc<str> = Arc::from(filter);
            if let Some(group) = self.groups.get_mut(&name) {
                group.members.retain(|(s, _)| *s != key);
                if group.members.is_empty() {
                    self.groups.remove(&name);
                    self.shared_trie.remove(shared.filter.as_str(), &name);
                }
            }
        } else {
            self.trie.remove(filter, &key);
        }
    }

    /// Subscribes a session (a `$share/{group}/{filter}` filter joins that group) and queues the retained messages
    /// that match, as `retain_handling` says (never for shared subscriptions). Returns the granted QoS.
    ///
    /// # Errors
    /// [`SubscribeError::TooMany`] past the per-session limit.
    pub fn subscribe(
        &mut self,
        session: &Arc<SessionHandle>,
        filter: &str,
        opts: SubOpts,
        retain_handling: RetainHandling,
        now: Instant,
    ) -> Result<QoS, SubscribeError> {
        let (qos, scan) = self.subscribe_deferred(session, filter, opts, retain_handling)?;
        if let Some(mut scan) = scan {
            // One walk; what the queue has no room for is dropped and counted, as for any message.
            self.scan_retained(session, &mut scan, now, usize::MAX, &mut true);
        }
        Ok(qos)
    }

    /// Subscribes a session as [`Router::subscribe`] does, but leaves the retained messages to send: the caller
    /// sends them with [`Router::send_retained`] in bounded steps, releasing the router lock in between, so a
    /// filter matching a large retained store holds nobody else up.
    ///
    /// # Errors
    /// [`SubscribeError::TooMany`] past the per-session limit.
    pub fn subscribe_deferred(
        &mut self,
        session: &Arc<SessionHandle>,
        filter: &str,
        opts: SubOpts,
        retain_handling: RetainHandling,
    ) -> Result<(QoS, Option<RetainedScan>), SubscribeError> {
        self.lsn.set(Lsn::ZERO);
        let existed = {
            let mut state = session.lock();
            let existed = state.subscriptions.contains(filter);
            if !existed && state.subscriptions.len() >= self.limits.max_subscriptions {
                return Err(SubscribeError::TooMany);
            }
            state.subscriptions.insert(filter, opts);
            if state.outbox.is_durable() {
                self.journal(&Record::Subscribe { client: &session.client_id, filter, opts: opts.stored() });
            }
            existed
        };
        let key = SessionRef(session.clone());
        if let Ok(Some(shared)) = SharedFilter::parse(filter) {
            let name: Arc<str> = Arc::from(filter);
            let group = self.groups.entry(name.clone()).or_default();
            match group.members.iter_mut().find(|(s, _)| *s == key) {
                Some(member) => member.1 = opts,
                None => group.members.push((key, opts)),
            }
            self.shared_trie.insert(shared.filter.as_str(), name, ());
            return Ok((opts.qos, None));
        }
        self.trie.insert(filter, key, opts);
        let send_retained = match retain_handling {
            RetainHandling::SendAtSubscribe => true,
            RetainHandling::SendAtNewSubscribe => !existed,
            RetainHandling::DoNotSend => false,
        };
        // The count leaves out the `$SYS` values, which only a filter starting with `$SYS` can match.
        let any = self.store.retained_count() > 0 || filter.starts_with("$SYS");
        let scan = (send_retained && any).then(|| RetainedScan::new(filter, opts));
        Ok((opts.qos, scan))
    }

    /// Removes a subscription. Returns whether it existed.
    pub fn unsubscribe(&mut self, session: &Arc<SessionHandle>, filter: &str) -> bool {
        self.lsn.set(Lsn::ZERO);
        let mut state = session.lock();
        let existed = state.subscriptions.remove(filter).is_some();
        if existed && state.outbox.is_durable() {
            self.journal(&Record::Unsubscribe { client: &session.client_id, filter });
        }
        drop(state);
        if existed {
            self.unlink(session, filter);
        }
        existed
    }

    /// Routes a published message: updates the retained store, then queues one copy per matching session at the
    /// highest QoS any of its matching subscriptions granted (capped by the message's QoS), carrying every matching
    /// Subscription Identifier [MQTT-3.3.4-3..5], and one copy per matching shared group. `origin` is the
    /// publishing session, for No Local.
    pub fn publish(&mut self, msg: Message, origin: Option<&Arc<SessionHandle>>, now: Instant) -> Routed {
        self.publish_from(msg, origin, None, now)
    }

    /// [`Router::publish`] for a QoS 2 PUBLISH whose packet identifier `qos2_id` the publisher's session holds
    /// until PUBREL: the identifier is journaled in the message's own record (see [`Router::journal_routed`]).
    pub fn publish_from(
        &mut self,
        mut msg: Message,
        origin: Option<&Arc<SessionHandle>>,
        qos2_id: Option<PacketId>,
        now: Instant,
    ) -> Routed {
        // What `take_backlogged` and `take_lsn` report after this call is about this message only (a will published
        // by the broker itself has no publisher to hold back).
        self.backlogged = None;
        self.lsn.set(Lsn::ZERO);
        if let (Some(origin), Some(id)) = (origin, qos2_id) {
            origin.lock().inbound_qos2.insert(id);
        }
        let mut retained = false;
        if msg.retain {
            if self.store.set_retained(&msg).is_err() {
                self.counters.budget.count(crate::budget::DropReason::RetainedFull);
                crate::logging::conn_event!(
                    WARN,
                    topic = ?Untrusted(msg.topic()),
                    max = self.limits.max_retained,
                    "retained store full; message not retained"
                );
            } else {
                retained = true;
            }
        }
        let mut routed = Routed::default();
        let mut targets: Vec<(Arc<SessionHandle>, Delivery)> = Vec::new();
        let expired = msg.is_expired(now);
        let mut matches: Vec<&(SessionRef, SubOpts)> = recycle(std::mem::take(&mut self.scratch));
        let mut groups: Vec<Arc<str>> = Vec::new();
        if !expired {
            // References into the trie, so matching takes no reference count per subscriber.
            self.trie.matches(msg.topic(), &mut matches);
            if !self.shared_trie.is_empty() {
                let mut found = Vec::new();
                self.shared_trie.matches(msg.topic(), &mut found);
                groups.extend(found.into_iter().map(|(name, ())| name.clone()));
            }
        }
        // Shared by every delivery; encoded once for them when there are several.
        msg.set_fanout(matches.len() + groups.len() > 1);
        let msg = Arc::new(msg);
        // One copy per session [MQTT-3.3.5-1]: sort by identity, merge the options of its matching subscriptions.
        if matches.len() > 1 {
            matches.sort_by_key(|(s, _)| Arc::as_ptr(&s.0) as usize);
        }
        let mut rest = matches.as_slice();
        while let Some(((session, _), tail)) = rest.split_first() {
            let same = tail.iter().take_while(|(s, _)| s == session).count();
            let (group, after) = rest.split_at(same + 1);
            rest = after;
            let is_origin = origin.is_some_and(|o| Arc::ptr_eq(o, &session.0));
            let mut qos = None;
            let mut retain = false;
            let mut sub_ids = Vec::new();
            for (_, opts) in group {
                if opts.no_local && is_origin {
                    continue; // [MQTT-3.8.3-3]
                }
                if opts.acl_check && !access::may_read(&session.0, msg.topic()) {
                    continue;
                }
                qos = Some(qos.map_or(opts.qos, |q: QoS| q.max(opts.qos)));
                retain |= opts.retain_as_published && msg.retain;
                sub_ids.extend(opts.id);
            }
            let Some(qos) = qos else { continue };
            routed.matched += 1;
            let delivery = Delivery { msg: msg.clone(), qos: qos.min(msg.qos), retain, sub_ids: sub_ids.into() };
            targets.push((session.0.clone(), delivery));
        }
        self.scratch = recycle(matches);
        for name in groups {
            routed.matched += 1;
            match self.pick_shared(&name, &msg) {
                Some(target) => targets.push(target),
                None => routed.dropped += 1,
            }
        }
        let origin_id = origin.zip(qos2_id);
        let refused = self.journal_routed(&msg, retained, origin_id, &targets, now);
        let mut backlogged = None;
        for (session, delivery) in targets {
            if !self.deliver(&session, delivery, &mut backlogged, refused) {
                routed.dropped += 1;
            }
        }
        self.backlogged = backlogged;
        routed
    }

    /// A session (online, queue backlogged) that the publisher of the message just routed by [`Router::publish`]
    /// should wait for with [`SessionHandle::caught_up`].
    pub fn take_backlogged(&mut self) -> Option<Arc<SessionHandle>> {
        self.backlogged.take()
    }

    /// Queues a delivery for a session; a full queue drops it, counted and logged. Returns whether it was queued
    /// (a QoS 0 message skipped for an offline session counts as handled). `refused`: the journal refused the
    /// message, so a persistent session cannot queue it (it is dropped, counted and logged).
    /// A session whose queue this left backlogged goes into `backlogged` (if that is empty).
    fn deliver(
        &self,
        session: &Arc<SessionHandle>,
        delivery: Delivery,
        backlogged: &mut Option<Arc<SessionHandle>>,
        refused: bool,
    ) -> bool {
        let mut state = session.lock();
        let online = state.conn.is_some();
        if refused && state.outbox.is_durable() && state.outbox.would_accept(&delivery, online) {
            state.outbox.count_dropped();
            self.counters.messages_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(client_id = &*session.client_id, "journal full or failed; message not queued");
            return false;
        }
        match state.outbox.push(delivery, online) {
            Ok(()) => {
                pushed(backlogged, session, state);
                true
            }
            Err(Rejected::Offline) => true,
            Err(Rejected::Full) => {
                self.counters.messages_dropped.fetch_add(1, Ordering::Relaxed);
                if self.limits.disconnect_slow_consumers
                    && let Some(conn) = &state.conn
                    && !conn.kick.is_cancelled()
                {
                    let client_id = Untrusted(&session.client_id);
                    crate::logging::conn_event!(WARN, ?client_id, "queue full; disconnecting the slow consumer");
                    conn.kick(ReasonCode::QuotaExceeded);
                }
                state.drops_since_log = state.drops_since_log.saturating_add(1);
                let now = std::time::Instant::now();
                if state.last_drop_log.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1)) {
                    crate::logging::conn_event!(
                        WARN,
                        client_id = ?Untrusted(&session.client_id),
                        dropped = state.drops_since_log,
                        dropped_total = state.outbox.dropped(),
                        queued = state.outbox.queued(),
                        "session queue full; dropping messages"
                    );
                    state.drops_since_log = 0;
                    state.last_drop_log = Some(now);
                }
                false
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

    /// Every session held.
    pub fn sessions(&self) -> impl Iterator<Item = &Arc<SessionHandle>> {
        self.store.sessions()
    }

    /// Bytes of the retained messages held (the broker's own `$SYS` values are not counted).
    pub fn retained_bytes(&self) -> usize {
        self.store.retained_bytes()
    }
}

/// An empty vector of another element type that reuses the allocation of `v` (the standard library collects
/// in place when the layouts agree, as for `usize` and a reference).
fn recycle<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(max_queued: usize) -> Router {
        let outbox =
            OutboxLimits { max_inflight: 10, max_queued, max_queued_bytes: 1 << 20, queue_qos0_offline: false };
        let limits = RouterLimits {
            outbox,
            max_retained: 100,
            max_retained_bytes: 0,
            max_pending_wills: 0,
            max_subscriptions: 10,
            shared_strategy: SharedStrategy::RoundRobin,
            disconnect_slow_consumers: false,
        };
        Router::new(limits, Arc::default())
    }

    fn link(id: u64) -> ConnLink {
        ConnLink::new(id)
    }

    fn drain(s: &Arc<SessionHandle>) -> Vec<(Vec<u8>, QoS, bool, Vec<u32>)> {
        let mut out = Vec::new();
        let mut st = s.lock();
        while let Some(crate::queue::Outgoing::Publish { delivery: d, .. }) = st.outbox.next_send(Instant::now()) {
            out.push((d.msg.payload.to_vec(), d.qos, d.retain, d.sub_ids.to_vec()));
        }
        out
    }

    fn sub(r: &mut Router, s: &Arc<SessionHandle>, filter: &str, opts: SubOpts) {
        r.subscribe(s, filter, opts, RetainHandling::SendAtSubscribe, Instant::now()).unwrap();
    }

    fn publish(r: &mut Router, topic: &str, payload: &[u8], qos: QoS, retain: bool) -> Routed {
        r.publish(Message::from_parts(topic, payload, qos, retain), None, Instant::now())
    }

    const NEVER: Option<Duration> = None;
    const NOW: Option<Duration> = Some(Duration::ZERO);

    #[test]
    fn overlapping_subscriptions_deliver_one_copy_at_highest_qos_with_every_id() {
        let mut r = router(10);
        let (s, _) = r.connect("c", true, NOW, link(1), Instant::now());
        sub(&mut r, &s, "a/#", SubOpts { id: Some(7), ..SubOpts::qos(QoS::AtMostOnce) });
        sub(&mut r, &s, "a/+", SubOpts { id: Some(9), ..SubOpts::qos(QoS::AtLeastOnce) });
        let routed = publish(&mut r, "a/b", b"x", QoS::ExactlyOnce, false);
        assert_eq!(routed, Routed { matched: 1, dropped: 0 });
        let got = drain(&s);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, QoS::AtLeastOnce);
        let mut ids = got[0].3.clone();
        ids.sort_unstable();
        assert_eq!(ids, vec![7, 9]);
    }

    #[test]
    fn no_local_and_retain_as_published() {
        let mut r = router(10);
        let (s, _) = r.connect("c", true, NOW, link(1), Instant::now());
        sub(&mut r, &s, "n", SubOpts { no_local: true, ..SubOpts::qos(QoS::AtMostOnce) });
        sub(&mut r, &s, "k", SubOpts { retain_as_published: true, ..SubOpts::qos(QoS::AtMostOnce) });
        r.publish(Message::from_parts("n", b"own", QoS::AtMostOnce, false), Some(&s), Instant::now());
        assert!(drain(&s).is_empty());
        publish(&mut r, "k", b"kept", QoS::AtMostOnce, true);
        assert_eq!(drain(&s), vec![(b"kept".to_vec(), QoS::AtMostOnce, true, vec![])]);
    }

    #[test]
    fn persistent_session_queues_while_offline_and_takeover_kicks() {
        let mut r = router(10);
        let now = Instant::now();
        let (s, present) = r.connect("p", false, NEVER, link(1), now);
        assert!(!present);
        sub(&mut r, &s, "t", SubOpts::qos(QoS::AtLeastOnce));
        r.disconnect(&s, 1, None, now);
        publish(&mut r, "t", b"q1", QoS::AtLeastOnce, false);
        publish(&mut r, "t", b"q0", QoS::AtMostOnce, false);
        let second = link(2);
        let (s2, present) = r.connect("p", false, NEVER, second.clone(), now);
        assert!(present && Arc::ptr_eq(&s, &s2));
        assert_eq!(drain(&s2), vec![(b"q1".to_vec(), QoS::AtLeastOnce, false, vec![])]);
        r.connect("p", false, NEVER, link(3), now);
        assert!(second.kick.is_cancelled());
        // The late disconnect of the kicked connection does not detach the new one.
        r.disconnect(&s2, 2, None, now);
        assert_eq!(s2.lock().conn.as_ref().map(|c| c.id), Some(3));
    }

    #[test]
    fn try_connect_kicks_the_attached_connection_and_waits_until_it_detached() {
        let mut r = router(10);
        let now = Instant::now();
        let first = link(1);
        let (s, _) = r.connect("t", false, NEVER, first.clone(), now);
        let ended = r.connection_ended();
        let notified = ended.notified();
        let mut notified = std::pin::pin!(notified);
        notified.as_mut().enable();
        assert_eq!(r.try_connect("t", false, NEVER, link(2), now).map(|_| ()), Err(Busy));
        assert!(first.kick.is_cancelled(), "the old connection is told to close");
        assert_eq!(s.lock().conn.as_ref().map(|c| c.id), Some(1), "and keeps the session until it has");
        // Its DISCONNECT with Session Expiry 0, read after the kick, ends the session before the new one attaches.
        s.lock().expiry = Some(Duration::ZERO);
        r.disconnect(&s, 1, None, now);
        assert!(futures_util::FutureExt::now_or_never(notified).is_some(), "the waiting connection is woken");
        let (s2, present) = r.try_connect("t", false, NEVER, link(2), now).expect("attached");
        assert!(!present && !Arc::ptr_eq(&s, &s2));
    }

    #[test]
    fn a_new_connection_cancels_a_delayed_will_even_with_a_clean_start() {
        let mut r = router(10);
        let t0 = Instant::now();
        let (watcher, _) = r.connect("w", true, NEVER, link(1), t0);
        sub(&mut r, &watcher, "will", SubOpts::qos(QoS::AtMostOnce));
        let (s, _) = r.connect("e", false, NEVER, link(2), t0);
        let will = Message::from_parts("will", b"gone", QoS::AtMostOnce, false);
        r.disconnect(&s, 2, Some((will, Duration::from_secs(5))), t0);
        r.connect("e", true, NEVER, link(3), t0 + Duration::from_secs(1));
        r.tick(t0 + Duration::from_secs(10));
        assert!(drain(&watcher).is_empty());
    }

    #[test]
    fn session_with_zero_expiry_is_discarded_with_its_subscriptions() {
        let mut r = router(10);
        let (s, _) = r.connect("c", true, NOW, link(1), Instant::now());
        sub(&mut r, &s, "t", SubOpts::qos(QoS::AtMostOnce));
        sub(&mut r, &s, "$share/g/t", SubOpts::qos(QoS::AtMostOnce));
        r.disconnect(&s, 1, None, Instant::now());
        assert_eq!(r.session_count(), 0);
        assert!(r.trie.is_empty() && r.shared_trie.is_empty() && r.groups.is_empty());
    }

    #[test]
    fn session_expires_while_offline_and_delayed_will_goes_out() {
        let mut r = router(10);
        let t0 = Instant::now();
        let (watcher, _) = r.connect("w", true, NEVER, link(1), t0);
        sub(&mut r, &watcher, "will", SubOpts::qos(QoS::AtMostOnce));
        let (s, _) = r.connect("e", false, Some(Duration::from_secs(10)), link(2), t0);
        let will = Message::from_parts("will", b"gone", QoS::AtMostOnce, false);
        r.disconnect(&s, 2, Some((will, Duration::from_secs(5))), t0);
        r.tick(t0 + Duration::from_secs(4));
        assert!(drain(&watcher).is_empty(), "will delay not over yet");
        r.tick(t0 + Duration::from_secs(5));
        assert_eq!(drain(&watcher).len(), 1);
        assert!(r.session("e").is_some());
        r.tick(t0 + Duration::from_secs(10));
        assert!(r.session("e").is_none(), "expired");
    }

    #[test]
    fn reconnect_in_time_cancels_the_delayed_will() {
        let mut r = router(10);
        let t0 = Instant::now();
        let (watcher, _) = r.connect("w", true, NEVER, link(1), t0);
        sub(&mut r, &watcher, "will", SubOpts::qos(QoS::AtMostOnce));
        let (s, _) = r.connect("e", false, NEVER, link(2), t0);
        let will = Message::from_parts("will", b"gone", QoS::AtMostOnce, false);
        r.disconnect(&s, 2, Some((will, Duration::from_secs(5))), t0);
        r.connect("e", false, NEVER, link(3), t0 + Duration::from_secs(1));
        r.tick(t0 + Duration::from_secs(10));
        assert!(drain(&watcher).is_empty());
    }

    #[test]
    fn retained_delivered_on_subscribe_as_retain_handling_says() {
        let mut r = router(10);
        publish(&mut r, "r/1", b"a", QoS::AtLeastOnce, true);
        publish(&mut r, "r/2", b"b", QoS::AtMostOnce, true);
        let (s, _) = r.connect("c", true, NOW, link(1), Instant::now());
        sub(&mut r, &s, "r/+", SubOpts::qos(QoS::ExactlyOnce));
        let mut got = drain(&s);
        got.sort();
        assert_eq!(
            got,
            vec![(b"a".to_vec(), QoS::AtLeastOnce, true, vec![]), (b"b".to_vec(), QoS::AtMostOnce, true, vec![])]
        );
        let now = Instant::now();
        let opts = SubOpts::qos(QoS::AtMostOnce);
        r.subscribe(&s, "r/+", opts, RetainHandling::SendAtNewSubscribe, now).unwrap();
        assert!(drain(&s).is_empty(), "not a new subscription");
        r.subscribe(&s, "r/#", opts, RetainHandling::DoNotSend, now).unwrap();
        assert!(drain(&s).is_empty());
    }

    #[test]
    fn shared_group_round_robin_and_full_member_does_not_lose() {
        let mut r = router(1);
        let now = Instant::now();
        let (a, _) = r.connect("a", true, NOW, link(1), now);
        let (b, _) = r.connect("b", true, NOW, link(2), now);
        sub(&mut r, &a, "$share/g/jobs/+", SubOpts::qos(QoS::AtLeastOnce));
        sub(&mut r, &b, "$share/g/jobs/+", SubOpts::qos(QoS::AtLeastOnce));
        for n in 0..2u8 {
            assert_eq!(publish(&mut r, "jobs/x", &[n], QoS::AtLeastOnce, false), Routed { matched: 1, dropped: 0 });
        }
        assert_eq!(drain(&a).len() + drain(&b).len(), 2);
        assert_eq!(a.lock().outbox.queued() + b.lock().outbox.queued(), 0);
        // Fill a's queue (limit 1): the group's next message goes to b instead of being dropped.
        a.lock()
            .outbox
            .push(
                Delivery {
                    msg: Arc::new(Message::from_parts("x", b"", QoS::AtLeastOnce, false)),
                    qos: QoS::AtLeastOnce,
                    retain: false,
                    sub_ids: Box::default(),
                },
                true,
            )
            .unwrap();
        for n in 0..1u8 {
            assert_eq!(publish(&mut r, "jobs/y", &[n], QoS::AtLeastOnce, false).dropped, 0);
        }
        assert_eq!(b.lock().outbox.queued(), 1);
    }

    #[test]
    fn slow_consumer_is_kicked_with_quota_exceeded_when_configured() {
        let mut r = router(1);
        r.limits.disconnect_slow_consumers = true;
        let now = Instant::now();
        let conn = link(1);
        let (slow, _) = r.connect("slow", false, NEVER, conn.clone(), now);
        sub(&mut r, &slow, "t", SubOpts::qos(QoS::AtLeastOnce));
        publish(&mut r, "t", b"1", QoS::AtLeastOnce, false);
        assert!(!conn.kick.is_cancelled());
        publish(&mut r, "t", b"2", QoS::AtLeastOnce, false);
        assert!(conn.kick.is_cancelled());
        assert_eq!(conn.kick_reason(), ReasonCode::QuotaExceeded);
        assert_eq!(slow.lock().outbox.dropped(), 1);
    }

    /// Publishes until the subscriber's queue is backlogged; returns the session the router reports.
    fn fill_backlog(r: &mut Router, s: &Arc<SessionHandle>) -> Arc<SessionHandle> {
        for _ in 0..crate::queue::BACKLOG_MESSAGES {
            publish(r, "t", b"x", QoS::AtMostOnce, false);
        }
        assert!(r.take_backlogged().is_none(), "not backlogged at the threshold");
        publish(r, "t", b"x", QoS::AtMostOnce, false);
        let slow = r.take_backlogged().expect("backlogged");
        assert!(Arc::ptr_eq(&slow, s));
        assert!(r.take_backlogged().is_none(), "reported once");
        slow
    }

    /// A router with one connected clean-session subscriber to `t` at QoS 0, already backlogged: the router, the
    /// session and the handle the router reported for it.
    fn backlogged_subscriber(client_id: &str) -> (Router, Arc<SessionHandle>, Arc<SessionHandle>) {
        let mut r = router(10 * crate::queue::BACKLOG_MESSAGES);
        let (s, _) = r.connect(client_id, true, NOW, link(1), Instant::now());
        sub(&mut r, &s, "t", SubOpts::qos(QoS::AtMostOnce));
        let slow = fill_backlog(&mut r, &s);
        (r, s, slow)
    }

    /// The subscriber's connection sends until its queue has caught up, then releases its publishers.
    fn catch_up(s: &Arc<SessionHandle>) {
        let mut state = s.lock();
        while !state.outbox.has_caught_up() {
            assert!(state.outbox.next_send(Instant::now()).is_some());
        }
        s.release_publishers(&mut state);
    }

    #[tokio::test]
    async fn a_backlogged_subscriber_holds_its_publishers_until_it_caught_up() {
        let (mut r, s, slow) = backlogged_subscriber("slow");
        let wait = Duration::from_secs(30);
        let held = tokio::time::timeout(Duration::from_millis(50), slow.caught_up(wait)).await;
        assert!(held.is_err(), "a publisher waits while the queue is backlogged");
        let waiter = tokio::spawn(async move { slow.caught_up(wait).await });
        tokio::task::yield_now().await;
        // The subscriber's connection sends; each batch ends by releasing the publishers once it caught up.
        let sent = {
            let mut state = s.lock();
            let mut sent = 0;
            while !state.outbox.has_caught_up() {
                assert!(state.outbox.next_send(Instant::now()).is_some());
                sent += 1;
                s.release_publishers(&mut state);
                assert!(state.holds_publishers != state.outbox.has_caught_up());
            }
            s.release_publishers(&mut state);
            assert!(!state.holds_publishers);
            sent
        };
        assert_eq!(sent, crate::queue::BACKLOG_MESSAGES + 1 - crate::queue::BACKLOG_MESSAGES / 2);
        tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("released well before its limit").unwrap();
        assert!(r.take_backlogged().is_none());
    }

    #[tokio::test]
    async fn a_publisher_waits_for_its_own_slow_subscriber_not_for_another_one() {
        let mut r = router(10 * crate::queue::BACKLOG_MESSAGES);
        let now = Instant::now();
        let (one, _) = r.connect("one", true, NOW, link(1), now);
        let (two, _) = r.connect("two", true, NOW, link(2), now);
        sub(&mut r, &one, "t", SubOpts::qos(QoS::AtMostOnce));
        sub(&mut r, &two, "t", SubOpts::qos(QoS::AtMostOnce));
        for _ in 0..=crate::queue::BACKLOG_MESSAGES {
            publish(&mut r, "t", b"x", QoS::AtMostOnce, false);
        }
        assert!(one.lock().outbox.is_backlogged() && two.lock().outbox.is_backlogged());
        let waiting_for_one = tokio::spawn({
            let one = one.clone();
            async move { one.caught_up(Duration::from_secs(30)).await }
        });
        tokio::task::yield_now().await;
        catch_up(&two);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting_for_one.is_finished(), "another session caught up");
        catch_up(&one);
        tokio::time::timeout(Duration::from_secs(5), waiting_for_one).await.expect("released").unwrap();
    }

    #[tokio::test]
    async fn a_subscriber_that_stopped_reading_holds_its_publishers_for_one_wait_only() {
        let (mut r, s, slow) = backlogged_subscriber("stuck");
        // A second publisher waits for it too, with a longer limit: it is let go when the first wait ends.
        let other = tokio::spawn({
            let slow = slow.clone();
            async move { slow.caught_up(Duration::from_secs(30)).await }
        });
        tokio::task::yield_now().await;
        // Nothing is taken off the queue during the whole wait: the subscriber is stalled.
        tokio::time::timeout(Duration::from_secs(5), slow.caught_up(Duration::from_millis(20)))
            .await
            .expect("one wait, bounded by its limit");
        tokio::time::timeout(Duration::from_secs(5), other).await.expect("waiters let go").unwrap();
        assert!(s.lock().stalled && !s.lock().holds_publishers);
        // Its queue goes on growing up to the limits; nobody is held for it.
        for _ in 0..100 {
            publish(&mut r, "t", b"x", QoS::AtMostOnce, false);
            assert!(r.take_backlogged().is_none());
        }
        assert_eq!(s.lock().outbox.queued(), crate::queue::BACKLOG_MESSAGES + 101);
        // Once it has read its way down to half the threshold it holds publishers again when it falls behind.
        catch_up(&s);
        assert!(!s.lock().stalled);
        for _ in 0..crate::queue::BACKLOG_MESSAGES {
            publish(&mut r, "t", b"x", QoS::AtMostOnce, false);
        }
        assert!(r.take_backlogged().is_some_and(|b| Arc::ptr_eq(&b, &s)));
    }

    #[tokio::test]
    async fn a_subscriber_that_reads_during_a_wait_is_not_stalled() {
        let (mut r, s, slow) = backlogged_subscriber("slow-reader");
        let waiter = tokio::spawn(async move { slow.caught_up(Duration::from_millis(50)).await });
        tokio::task::yield_now().await;
        // It reads one message, not enough to catch up: the publisher waits its limit out and it stays a backlog.
        assert!(s.lock().outbox.next_send(Instant::now()).is_some());
        tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("bounded").unwrap();
        assert!(!s.lock().stalled && s.lock().holds_publishers);
        publish(&mut r, "t", b"x", QoS::AtMostOnce, false);
        assert!(r.take_backlogged().is_some_and(|b| Arc::ptr_eq(&b, &s)));
    }

    #[test]
    fn a_backlog_is_reported_to_the_publish_that_added_to_it_only() {
        let (mut r, s, _) = backlogged_subscriber("slow");
        publish(&mut r, "t", b"x", QoS::AtMostOnce, false);
        assert_eq!(publish(&mut r, "elsewhere", b"x", QoS::AtMostOnce, false).matched, 0);
        assert!(r.take_backlogged().is_none(), "a message for nobody waits for nobody");
        publish(&mut r, "t", b"x", QoS::AtMostOnce, false);
        assert!(r.take_backlogged().is_some_and(|b| Arc::ptr_eq(&b, &s)));
    }

    #[tokio::test]
    async fn a_backlogged_subscriber_that_disconnects_releases_its_publishers() {
        let mut r = router(10 * crate::queue::BACKLOG_MESSAGES);
        let (s, _) = r.connect("gone", false, NEVER, link(1), Instant::now());
        sub(&mut r, &s, "t", SubOpts::qos(QoS::AtLeastOnce));
        let slow = fill_backlog(&mut r, &s);
        let waiter = tokio::spawn(async move { slow.caught_up(Duration::from_secs(30)).await });
        tokio::task::yield_now().await;
        r.disconnect(&s, 1, None, Instant::now());
        tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("released at disconnect").unwrap();
        // Offline, the queue grows without holding anyone (nothing could drain it).
        publish(&mut r, "t", b"x", QoS::AtLeastOnce, false);
        assert!(r.take_backlogged().is_none());
    }

    #[test]
    fn the_match_list_keeps_its_allocation_from_one_publish_to_the_next() {
        let mut r = router(10);
        let now = Instant::now();
        let sessions: Vec<_> = (0..20).map(|i| r.connect(&format!("c{i}"), true, NOW, link(i), now).0).collect();
        for s in &sessions {
            sub(&mut r, s, "t", SubOpts::qos(QoS::AtMostOnce));
        }
        assert_eq!(publish(&mut r, "t", b"x", QoS::AtMostOnce, false).matched, 20);
        let capacity = r.scratch.capacity();
        assert!(capacity >= 20);
        let ptr = r.scratch.as_ptr();
        assert_eq!(publish(&mut r, "t", b"y", QoS::AtMostOnce, false).matched, 20);
        assert_eq!((r.scratch.as_ptr(), r.scratch.capacity()), (ptr, capacity));
        for s in &sessions {
            assert_eq!(drain(s).len(), 2);
        }
    }

    #[test]
    fn full_queue_drops_for_that_session_only() {
        let mut r = router(1);
        let now = Instant::now();
        let (slow, _) = r.connect("slow", false, NEVER, link(1), now);
        let (fast, _) = r.connect("fast", false, NEVER, link(2), now);
        sub(&mut r, &slow, "t", SubOpts::qos(QoS::AtLeastOnce));
        sub(&mut r, &fast, "t", SubOpts::qos(QoS::AtLeastOnce));
        publish(&mut r, "t", b"1", QoS::AtLeastOnce, false);
        assert_eq!(drain(&fast).len(), 1);
        assert_eq!(publish(&mut r, "t", b"2", QoS::AtLeastOnce, false), Routed { matched: 2, dropped: 1 });
        assert_eq!(drain(&fast).len(), 1);
        assert_eq!(slow.lock().outbox.dropped(), 1);
        assert_eq!(r.counters.messages_dropped.load(Ordering::Relaxed), 1);
    }
}
