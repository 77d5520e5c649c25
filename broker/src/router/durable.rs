//! The router's side of persistence: the records of session lifecycle, subscriptions, retained messages and
//! wills (the outbox journals its own deliveries), and the entry points recovery and checkpoints use.
//!
//! Only sessions that outlive their connection are journaled ([`crate::persist::outlives_connection`]); their
//! outbox holds the journal link ([`Outbox::make_durable`]), which is also how the router tells them apart.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mqtt_codec::{PacketId, RetainHandling};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{
    ConnLink, PacketIds, PendingWill, Router, SessionHandle, SessionOwner, StoredSession, SubOpts, Subscriptions,
};
use crate::journal::Lsn;
use crate::message::Message;
use crate::persist::record::Entry;
use crate::persist::{self, Durable, Record};
use crate::queue::{Delivery, Outbox};

/// The state a checkpoint writes, taken from the router at one moment (see [`crate::persist::checkpoint`]).
#[derive(Debug)]
pub struct DurableState {
    /// The sessions that outlive their connection (each is locked and written in turn).
    pub sessions: Vec<Arc<SessionHandle>>,
    /// The retained messages.
    pub retained: Vec<Message>,
    /// The pending wills: client id, when it goes out, the message.
    pub wills: Vec<(Arc<str>, Instant, Message)>,
}

impl Router {
    /// Journals every later durable change. Sessions held now that outlive their connection (recovered ones)
    /// become durable.
    pub fn set_durable(&mut self, durable: Durable) {
        for session in self.store.sessions() {
            let mut state = session.lock();
            if persist::outlives_connection(state.expiry) {
                state.outbox.make_durable(durable.clone(), session.client_id.clone());
            }
        }
        self.durable = Some(durable);
    }

    /// The journal, when persistence is on.
    pub fn durable(&self) -> Option<&Durable> {
        self.durable.as_ref()
    }

    /// The journal position of the last record the router appended since the previous call, if any: a connection
    /// sends the acknowledgement of what it just asked the router to do once this is durable.
    pub fn take_lsn(&self) -> Option<Lsn> {
        let lsn = self.lsn.replace(Lsn::ZERO);
        (lsn > Lsn::ZERO).then_some(lsn)
    }

    pub(super) fn note_lsn(&self, lsn: Option<Lsn>) {
        if let Some(lsn) = lsn
            && lsn > self.lsn.get()
        {
            self.lsn.set(lsn);
        }
    }

    /// Appends a record; a journal that refuses it is logged (the change stays in memory only).
    pub(super) fn journal(&self, record: &Record<'_>) {
        let Some(durable) = &self.durable else { return };
        match durable.append(record) {
            Ok(lsn) => self.note_lsn(Some(lsn)),
            Err(e) => tracing::error!(error = %e, "journal refused a record; the change will not survive a restart"),
        }
    }

    /// Journals a routed message in one record (see [`Record::Routed`]): the message, its entry in every
    /// persistent session among `targets` that can queue it (numbered as those queues will number it), whether it
    /// became its topic's retained message, and the publisher's QoS 2 identifier. Nothing when none of that is
    /// durable. Returns whether the journal refused the record: then persistent sessions must not queue it.
    pub(super) fn journal_routed(
        &self,
        msg: &Message,
        retained: bool,
        origin: Option<(&Arc<SessionHandle>, PacketId)>,
        targets: &[(Arc<SessionHandle>, Delivery)],
        now: Instant,
    ) -> bool {
        let Some(durable) = &self.durable else { return false };
        // `$SYS` values are published again by the first tick after a restart.
        let retained = retained && !crate::sys::is_sys_topic(msg.topic());
        let mut entries = Vec::new();
        for (session, d) in targets {
            let state = session.lock();
            if state.outbox.is_durable() && state.outbox.would_accept(d, state.conn.is_some()) {
                let seq = state.outbox.next_seq();
                entries.push((session.client_id.clone(), seq, d.qos, d.retain, d.sub_ids.to_vec()));
            }
        }
        let origin = origin.filter(|(o, _)| o.lock().outbox.is_durable()).map(|(o, id)| (&*o.client_id, id.get()));
        let appended = if !entries.is_empty() || retained {
            let entries = entries
                .iter()
                .map(|(client, seq, qos, retain, sub_ids)| Entry {
                    client,
                    seq: *seq,
                    qos: *qos,
                    retain: *retain,
                    sub_ids: sub_ids.clone(),
                })
                .collect();
            let id = durable.next_message_id();
            durable.append(&Record::Routed { id, msg: msg.stored(now), retain: retained, origin, entries })
        } else if let Some((client, pid)) = origin {
            durable.append(&Record::Inbound { client, pid, held: true })
        } else {
            return false;
        };
        match appended {
            Ok(lsn) => {
                self.note_lsn(Some(lsn));
                false
            }
            Err(e) => {
                tracing::warn!(topic = msg.topic(), error = %e, "journal refused a message");
                true
            }
        }
    }

    /// A new session: journaled when it outlives its connection.
    pub(super) fn journal_open(&self, session: &Arc<SessionHandle>) {
        let Some(durable) = &self.durable else { return };
        let mut state = session.lock();
        if !persist::outlives_connection(state.expiry) {
            return;
        }
        state.outbox.make_durable(durable.clone(), session.client_id.clone());
        state.owner = SessionOwner::of(state.conn.as_ref()).map(Box::new);
        let expiry = persist::secs(state.expiry);
        let owner = state.owner.as_deref().map(SessionOwner::stored);
        self.journal(&Record::SessionOpen { client: &session.client_id, fresh: true, expiry, owner });
    }

    /// A resumed session, with the expiry its new connection asked for: one that now ends with its connection
    /// is no longer journaled.
    pub(super) fn journal_resume(&self, session: &Arc<SessionHandle>, state: &mut StoredSession) {
        if !state.outbox.is_durable() {
            return;
        }
        if persist::outlives_connection(state.expiry) {
            if let Some(owner) = SessionOwner::of(state.conn.as_ref()) {
                state.owner = Some(Box::new(owner));
            }
            let expiry = persist::secs(state.expiry);
            let owner = state.owner.as_deref().map(SessionOwner::stored);
            self.journal(&Record::SessionOpen { client: &session.client_id, fresh: false, expiry, owner });
        } else {
            state.outbox.make_volatile();
            state.will = None;
            self.journal(&Record::SessionEnd { client: &session.client_id });
        }
    }

    /// A persistent session's connection ended at `now`, leaving `will` to go out after the wait given.
    pub(super) fn journal_offline(
        &self,
        session: &Arc<SessionHandle>,
        state: &mut StoredSession,
        will: Option<&(Message, Duration)>,
        now: Instant,
    ) {
        if !state.outbox.is_durable() || !persist::outlives_connection(state.expiry) {
            // It ends now (with its connection, or a DISCONNECT set its expiry to zero): `remove_session` journals
            // the end, and that the will of the connection is settled.
            return;
        }
        state.will = None;
        let client = &*session.client_id;
        self.journal(&Record::SessionOffline { client, at_ms: persist::now_ms(), expiry: persist::secs(state.expiry) });
        match will.filter(|(_, wait)| !wait.is_zero()) {
            Some((msg, wait)) => {
                let delay = u32::try_from(wait.as_secs()).unwrap_or(u32::MAX);
                let due_ms = persist::wall_ms(now + *wait, now);
                let will = Some((msg.stored(now), delay));
                self.journal(&Record::Will { client, will, due_ms: Some(due_ms) });
            }
            None => self.journal(&Record::Will { client, will: None, due_ms: None }),
        }
    }

    /// The will of a session's new connection (or none), journaled when persistence is on, so that a crash while
    /// the connection is open still publishes it after the restart: after its delay for a persistent session, at
    /// once for one that ends with its connection (it is not journaled otherwise; recovery finds its will without a
    /// session). Like the session's own records, the CONNACK waits for it ([`Router::take_lsn`]).
    pub fn note_will(&self, session: &Arc<SessionHandle>, will: Option<&Arc<(Message, Duration)>>, now: Instant) {
        if self.durable.is_none() {
            return;
        }
        let mut state = session.lock();
        let client = &*session.client_id;
        match will {
            Some(will) => {
                self.journal(&persist::connected_will(client, will, now));
                state.will = Some(will.clone());
            }
            None if state.will.take().is_some() => self.journal(&Record::Will { client, will: None, due_ms: None }),
            None => {}
        }
    }

    /// A session read back from the journal (recovery, before [`Router::set_durable`]): offline since
    /// `disconnected_at`, with its subscriptions (retained messages are not sent again).
    pub fn restore_session(
        &mut self,
        client_id: &str,
        expiry: Option<Duration>,
        disconnected_at: Instant,
        subscriptions: &[(String, SubOpts)],
    ) -> Arc<SessionHandle> {
        let handle = self.new_session(client_id, expiry, None);
        handle.lock().disconnected_at = Some(disconnected_at);
        self.store.insert_session(handle.clone());
        for (filter, opts) in subscriptions {
            // The limit held when the subscriptions were made; a lower one now keeps what was granted.
            if self.subscribe(&handle, filter, *opts, RetainHandling::DoNotSend, disconnected_at).is_err() {
                tracing::warn!(client_id, filter, "recovered subscription over the limit; dropped");
            }
        }
        handle
    }

    /// A retained message read back from the journal (recovery).
    pub fn restore_retained(&mut self, msg: &Message) {
        if self.store.set_retained(msg).is_err() {
            tracing::warn!(topic = msg.topic(), "recovered retained message over the limit; dropped");
        }
    }

    /// A pending will read back from the journal (recovery); it goes out at `due` (at the next tick if past).
    pub fn restore_will(&mut self, client_id: &str, due: Instant, msg: Message) {
        self.pending_wills.push(PendingWill { client_id: Arc::from(client_id), due, msg });
    }

    /// What a checkpoint writes.
    pub fn durable_state(&self) -> DurableState {
        let sessions = self
            .store
            .sessions()
            .filter(|s| {
                let state = s.lock();
                state.outbox.is_durable() || state.will.is_some()
            })
            .cloned()
            .collect();
        let mut retained = Vec::new();
        self.store.for_each_retained_message(&mut |m| retained.push(m.clone()));
        let wills = self.pending_wills.iter().map(|w| (w.client_id.clone(), w.due, w.msg.clone())).collect();
        DurableState { sessions, retained, wills }
    }

    /// A session attached to `conn` (or offline), with empty state.
    pub(super) fn new_session(
        &self,
        client_id: &str,
        expiry: Option<Duration>,
        conn: Option<ConnLink>,
    ) -> Arc<SessionHandle> {
        Arc::new(SessionHandle {
            client_id: Arc::from(client_id),
            state: Mutex::new(StoredSession {
                outbox: Outbox::new(self.limits.outbox),
                inbound_qos2: PacketIds::default(),
                expiry,
                disconnected_at: None,
                conn,
                subscriptions: Subscriptions::default(),
                access: None,
                holds_publishers: false,
                stalled: false,
                will: None,
                owner: None,
                drops_since_log: 0,
                last_drop_log: None,
            }),
            wake: Notify::new(),
            caught_up: self.caught_up.clone(),
        })
    }
}
