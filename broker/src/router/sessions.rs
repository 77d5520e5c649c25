//! Sessions as the router holds them: the [`StoredSession`] (the state that outlives a connection, journaled when
//! the session is persistent), the handle connections share, and the link to the connection attached now. The live
//! connection's protocol state is [`crate::session::Session`]; it reaches the stored session through the handle. A session whose queue is backlogged holds its publishers back until it
//! has caught up ([`SessionHandle::caught_up`]).

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use mqtt_codec::{PacketId, ReasonCode};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::SubOpts;
use crate::journal::AppendError;
use crate::persist::Record;
use crate::queue::Outbox;

/// The live connection attached to a session.
#[derive(Debug, Clone)]
pub struct ConnLink {
    /// Unique per connection.
    pub id: u64,
    /// Cancelled when the broker ends the connection: another connection took the session over, or (with
    /// `disconnect_slow_consumers`) its queue overflowed. `kick_reason` says which.
    pub kick: CancellationToken,
    reason: Arc<std::sync::atomic::AtomicU8>,
    /// Who is connected, for the admin API.
    pub info: Option<Arc<ConnInfo>>,
}

/// What the admin API shows about a connection: its peer and start, then what its CONNECT said.
#[derive(Debug)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: Option<std::net::SocketAddr>,
    /// When the connection was accepted.
    pub since: std::time::SystemTime,
    /// The protocol version and username of its CONNECT, once accepted.
    pub connect: std::sync::OnceLock<(mqtt_codec::ProtocolVersion, Option<String>)>,
    /// The ACL its permissions come from, once accepted on a listener with one (see
    /// [`crate::auth::ListenerAuth::acl_key`]).
    pub acl: std::sync::OnceLock<Arc<str>>,
}

impl ConnInfo {
    /// A connection from `peer`, now.
    pub fn new(peer: Option<std::net::SocketAddr>) -> Self {
        Self {
            peer,
            since: std::time::SystemTime::now(),
            connect: std::sync::OnceLock::new(),
            acl: std::sync::OnceLock::new(),
        }
    }
}

impl ConnLink {
    /// A link for a new connection.
    pub fn new(id: u64) -> Self {
        let reason = Arc::new(std::sync::atomic::AtomicU8::new(ReasonCode::SessionTakenOver.to_u8()));
        Self { id, kick: CancellationToken::new(), reason, info: None }
    }

    /// Ends the connection for `reason`.
    pub fn kick(&self, reason: ReasonCode) {
        self.reason.store(reason.to_u8(), Ordering::Relaxed);
        self.kick.cancel();
    }

    /// Why the connection was kicked.
    pub fn kick_reason(&self) -> ReasonCode {
        ReasonCode::from_u8(self.reason.load(Ordering::Relaxed)).unwrap_or(ReasonCode::SessionTakenOver)
    }
}

/// The durable side of a session: the state that outlives a connection, held by the router (a persistent session's
/// is journaled). Its fields are private to the router; other modules read them through methods and change them
/// only through methods that journal the change: the outbox's own ([`Outbox`] journals every delivery change) and
/// the ones below.
#[derive(Debug)]
pub struct StoredSession {
    /// Outbound queue and in-flight window.
    pub(super) outbox: Outbox,
    /// Inbound QoS 2 packet ids received and not yet released by PUBREL.
    pub(super) inbound_qos2: PacketIds,
    /// How long the session outlives its connection: `None` forever, zero not at all.
    pub(super) expiry: Option<Duration>,
    /// When the last connection ended, while offline.
    pub(super) disconnected_at: Option<Instant>,
    /// The connection attached now, if any.
    pub(super) conn: Option<ConnLink>,
    /// This session's subscriptions (full filter, `$share/...` included) and their options.
    pub(super) subscriptions: Subscriptions,
    /// What the client last attached may read (checked on delivery for subscriptions with `acl_check`).
    pub(super) access: Option<Arc<crate::auth::ClientAccess>>,
    /// Publishers wait for this backlogged session: its connection notifies [`SessionHandle::caught_up`] once the
    /// queue came down.
    pub(super) holds_publishers: bool,
    /// The subscriber took nothing off its backlogged queue during a publisher's whole wait: it has stopped reading
    /// (a hung dashboard, a device behind a dead link not yet noticed). It holds no publishers until it has caught
    /// up, so its queue grows to the configured limits instead of slowing every publisher it subscribes to.
    pub(super) stalled: bool,
    /// The will of the connection attached now, and its delay, as journaled (persistence on; also for a session
    /// that ends with its connection): a checkpoint writes it again (the connection holds the will it publishes).
    pub(super) will: Option<Arc<(crate::message::Message, Duration)>>,
    /// Who attached it last, for a persistent session with persistence on (journaled with it).
    pub(super) owner: Option<Box<SessionOwner>>,
    pub(super) drops_since_log: u64,
    pub(super) last_drop_log: Option<std::time::Instant>,
}

/// Who attached a session last: the protocol version of its CONNECT, the user it logged in as and the ACL its
/// permissions came from. Kept (and journaled) for persistent sessions, so all three survive a restart: the
/// session's permissions are rebuilt from that ACL at startup, and another user does not resume it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionOwner {
    /// The protocol version of its CONNECT.
    pub version: mqtt_codec::ProtocolVersion,
    /// The username it logged in as (`None`: anonymous, or no authentication).
    pub username: Option<Box<str>>,
    /// The ACL its permissions came from (`None`: none applied).
    pub acl: Option<Arc<str>>,
}

impl SessionOwner {
    /// The owner of the connection `conn`, once its CONNECT was accepted.
    pub(super) fn of(conn: Option<&ConnLink>) -> Option<Self> {
        let info = conn?.info.as_ref()?;
        let (version, username) = info.connect.get()?;
        Some(Self { version: *version, username: username.as_deref().map(Box::from), acl: info.acl.get().cloned() })
    }

    /// As a record stores it.
    pub fn stored(&self) -> crate::persist::record::StoredOwner<'_> {
        crate::persist::record::StoredOwner {
            version: self.version.level(),
            username: self.username.as_deref(),
            acl: self.acl.as_deref(),
        }
    }

    /// From a record; `None` for a version the codec does not know.
    pub fn from_stored(o: crate::persist::record::StoredOwner<'_>) -> Option<Self> {
        let version = mqtt_codec::ProtocolVersion::from_level(o.version).ok()?;
        Some(Self { version, username: o.username.map(Box::from), acl: o.acl.map(Arc::from) })
    }
}

/// Packet ids, as a set made on first use: most sessions never publish at QoS 2, and an empty `HashSet` takes 48
/// bytes in every session (this takes 8 until the first id).
#[derive(Debug, Default)]
#[expect(clippy::box_collection, reason = "the box is the point: 8 bytes in a session that never uses the set")]
pub struct PacketIds(Option<Box<HashSet<PacketId>>>);

impl PacketIds {
    /// Whether `id` is in the set.
    pub fn contains(&self, id: &PacketId) -> bool {
        self.0.as_ref().is_some_and(|ids| ids.contains(id))
    }

    /// Adds `id`; returns whether it was new.
    pub fn insert(&mut self, id: PacketId) -> bool {
        self.0.get_or_insert_with(Box::default).insert(id)
    }

    /// Removes `id`; returns whether it was there.
    pub fn remove(&mut self, id: &PacketId) -> bool {
        self.0.as_mut().is_some_and(|ids| ids.remove(id))
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |ids| ids.len())
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ids, in no order.
    pub fn iter(&self) -> impl Iterator<Item = PacketId> + '_ {
        self.0.iter().flat_map(|ids| ids.iter().copied())
    }
}

/// One session's subscriptions: each filter with its options, in a vector sized to its length. Most devices hold
/// one or two, and the smallest hash map table (four entries) costs several times what a vector of one does. Lookups scan, which `limits.max_subscriptions_per_client` keeps cheap, and
/// only SUBSCRIBE and UNSUBSCRIBE look up: publishing goes through the trie.
#[derive(Debug, Default)]
pub struct Subscriptions(Vec<(Box<str>, SubOpts)>);

impl Subscriptions {
    /// Whether `filter` is subscribed.
    pub fn contains(&self, filter: &str) -> bool {
        self.0.iter().any(|(f, _)| &**f == filter)
    }

    /// Adds `filter` or replaces its options.
    pub fn insert(&mut self, filter: &str, opts: SubOpts) {
        if let Some(entry) = self.0.iter_mut().find(|(f, _)| &**f == filter) {
            entry.1 = opts;
            return;
        }
        // Most sessions stop at one or two.
        super::push_compact(&mut self.0, (filter.into(), opts));
    }

    /// Removes `filter`; returns its options if it was subscribed.
    pub fn remove(&mut self, filter: &str) -> Option<SubOpts> {
        let at = self.0.iter().position(|(f, _)| &**f == filter)?;
        Some(self.0.swap_remove(at).1)
    }

    /// The filters and their options.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&str, &mut SubOpts)> {
        self.0.iter_mut().map(|(f, o)| (&**f, o))
    }

    /// Number of subscriptions.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Each filter with its options.
    pub fn iter(&self) -> impl Iterator<Item = (&str, SubOpts)> + '_ {
        self.0.iter().map(|(f, o)| (&**f, *o))
    }

    /// Removes them all and returns their filters.
    pub fn take_filters(&mut self) -> Vec<Box<str>> {
        std::mem::take(&mut self.0).into_iter().map(|(f, _)| f).collect()
    }
}

impl StoredSession {
    /// Outbound queue and in-flight window.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The outbox, to change: each of its methods journals what it changes in a persistent session.
    pub fn outbox_mut(&mut self) -> &mut Outbox {
        &mut self.outbox
    }

    /// Inbound QoS 2 packet ids received and not yet released by PUBREL.
    pub fn inbound_qos2(&self) -> &PacketIds {
        &self.inbound_qos2
    }

    /// Releases inbound QoS 2 identifier `id` (PUBREL, or an error PUBREC ended its flow) and journals that:
    /// `None` when it was not held, else the record's journal position (`Ok(None)` for a session that is not
    /// journaled).
    ///
    /// # Errors
    /// The journal refused the record (the identifier is released in memory all the same).
    pub fn release_inbound(&mut self, id: PacketId) -> Option<Result<Option<crate::journal::Lsn>, AppendError>> {
        if !self.inbound_qos2.remove(&id) {
            return None;
        }
        Some(self.outbox.append(|client| Record::Inbound { client, pid: id.get(), held: false }))
    }

    /// Holds a recovered inbound QoS 2 identifier (recovery rebuilds state the journal already has).
    pub fn restore_inbound(&mut self, id: PacketId) {
        self.inbound_qos2.insert(id);
    }

    /// How long the session outlives its connection: `None` forever, zero not at all.
    pub fn expiry(&self) -> Option<Duration> {
        self.expiry
    }

    /// Sets the expiry a DISCONNECT asked for. It is journaled with the end of the connection (the router's
    /// `SessionOffline` record), which follows the DISCONNECT.
    pub fn set_expiry_at_disconnect(&mut self, expiry: Option<Duration>) {
        self.expiry = expiry;
    }

    /// When the last connection ended, while offline.
    pub fn disconnected_at(&self) -> Option<Instant> {
        self.disconnected_at
    }

    /// The connection attached now, if any.
    pub fn conn(&self) -> Option<&ConnLink> {
        self.conn.as_ref()
    }

    /// This session's subscriptions.
    pub fn subscriptions(&self) -> &Subscriptions {
        &self.subscriptions
    }

    /// Whether publishers wait for this backlogged session (see [`SessionHandle::caught_up`]).
    pub fn holds_publishers(&self) -> bool {
        self.holds_publishers
    }

    /// The will of the connection attached now and its delay, as journaled (see [`super::Router::note_will`]).
    pub fn will(&self) -> Option<&(crate::message::Message, Duration)> {
        self.will.as_deref()
    }

    /// Who attached it last (persistent sessions with persistence on).
    pub fn owner(&self) -> Option<&SessionOwner> {
        self.owner.as_deref()
    }

    /// Sets the owner read back from the journal (recovery rebuilds state the journal already has).
    pub fn restore_owner(&mut self, owner: Option<SessionOwner>) {
        self.owner = owner.map(Box::new);
    }

    /// Whether the session is offline and its expiry ran out at `now`.
    pub fn is_expired(&self, now: Instant) -> bool {
        match (self.conn.is_some(), self.disconnected_at, self.expiry) {
            (false, Some(at), Some(expiry)) => now.saturating_duration_since(at) >= expiry,
            _ => false,
        }
    }
}

/// One session: its state and the signal that wakes its connection when messages are queued.
#[derive(Debug)]
pub struct SessionHandle {
    /// The client identifier.
    pub client_id: Arc<str>,
    pub(super) state: Mutex<StoredSession>,
    /// Notified when the outbox has something new.
    pub wake: Notify,
    /// Notified (all waiters) when a backlogged outbox has caught up. One for the whole router, shared by every
    /// session: a pointer per session instead of a `Notify` (idle connections are counted in bytes), at the price
    /// of waking publishers that wait for other sessions, which look again and go on waiting. It happens rarely.
    pub(super) caught_up: Arc<Notify>,
}

impl SessionHandle {
    /// Locks the session state. A poisoned lock is recovered: the state stays usable.
    pub fn lock(&self) -> MutexGuard<'_, StoredSession> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until this session's backlog has come down ([`Outbox::has_caught_up`]), the session went offline, or
    /// `limit` passed, whichever is first: a publisher whose messages went into a backlogged queue calls it before
    /// reading more, so a slow subscriber makes its publishers slow down instead of growing the broker's memory.
    /// The limit bounds one wait; a subscriber that took nothing off its queue during a whole wait has stopped
    /// reading and is marked [`StoredSession::stalled`]: it holds no publishers until it has caught up.
    ///
    /// # Cancel safety
    /// Cancel safe: it only waits.
    pub async fn caught_up(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        let mut taken_before = None;
        loop {
            let notified = self.caught_up.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check, so a notification in between is not lost.
            notified.as_mut().enable();
            {
                let state = self.lock();
                if !state.holds_publishers || state.conn.is_none() {
                    return;
                }
                taken_before.get_or_insert(state.outbox.taken());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let mut state = self.lock();
                if state.holds_publishers && Some(state.outbox.taken()) == taken_before {
                    state.holds_publishers = false;
                    state.stalled = true;
                    drop(state);
                    // Other publishers waiting for it go on too.
                    self.caught_up.notify_waiters();
                }
                return;
            }
        }
    }

    /// Called by the session's own connection after it sent from the outbox: releases waiting publishers once the
    /// queue has caught up.
    pub fn release_publishers(&self, state: &mut StoredSession) {
        if (state.holds_publishers || state.stalled) && state.outbox.has_caught_up() {
            state.stalled = false;
            if std::mem::take(&mut state.holds_publishers) {
                self.caught_up.notify_waiters();
            }
        }
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

/// After a message went into a session's queue: an online session whose queue is now backlogged is noted in `slot`
/// for [`Router::take_backlogged`] (if `slot` is empty), and its connection is woken if the message is the first in
/// an empty queue (until it has emptied the queue, the connection comes back by itself: after each batch, and after
/// each acknowledgement that opens the window).
pub(super) fn pushed(
    slot: &mut Option<Arc<SessionHandle>>,
    session: &Arc<SessionHandle>,
    mut state: MutexGuard<'_, StoredSession>,
) {
    if state.conn.is_none() {
        return;
    }
    if !state.stalled && state.outbox.is_backlogged() {
        state.holds_publishers = true;
        if slot.is_none() {
            *slot = Some(session.clone());
        }
    }
    let wake = state.outbox.queued() == 1;
    drop(state);
    if wake {
        session.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use mqtt_codec::QoS;

    use super::*;

    #[test]
    fn packet_ids_are_a_set_made_on_first_use() {
        let mut ids = PacketIds::default();
        let one = PacketId::new(1).unwrap();
        let two = PacketId::new(2).unwrap();
        assert!(ids.is_empty() && !ids.contains(&one) && !ids.remove(&one));
        assert!(ids.0.is_none(), "nothing allocated before the first id");
        assert!(ids.insert(one) && !ids.insert(one) && ids.insert(two));
        assert_eq!(ids.len(), 2);
        assert!(ids.remove(&one) && !ids.remove(&one) && ids.contains(&two) && !ids.contains(&one));
        assert_eq!(std::mem::size_of::<PacketIds>(), 8);
    }

    #[test]
    fn subscriptions_insert_replace_remove_and_stay_small() {
        let mut subs = Subscriptions::default();
        subs.insert("a/+", SubOpts::qos(QoS::AtMostOnce));
        assert_eq!(subs.0.capacity(), 1, "one subscription takes room for one");
        subs.insert("a/+", SubOpts::qos(QoS::ExactlyOnce));
        assert_eq!(subs.len(), 1, "the same filter again replaces its options");
        assert!(subs.contains("a/+") && !subs.contains("a/#"));
        for f in ["b", "c", "d", "e"] {
            subs.insert(f, SubOpts::qos(QoS::AtLeastOnce));
        }
        assert_eq!(subs.len(), 5);
        assert_eq!(subs.remove("a/+").map(|o| o.qos), Some(QoS::ExactlyOnce));
        assert_eq!(subs.remove("a/+"), None);
        let mut filters = subs.take_filters();
        filters.sort();
        assert_eq!(filters, ["b", "c", "d", "e"].map(Box::<str>::from));
        assert!(subs.is_empty());
    }
}
