//! Checkpoints: the whole durable state written as records into a new recovery base, so the journal's size tracks
//! the live data.
//!
//! The journal starts a new segment when the checkpoint begins (under the router lock, so every session created or
//! ended later is in the new segment); then each session is written under its own lock while the broker runs on.
//! A delivery acknowledged while the checkpoint is written is either in it or not, and its record is in the new
//! segment either way: replayed over the checkpoint at the next start, the records give the same state (they set
//! state, see [`super::record`]). A message is written once per checkpoint, however many sessions hold it, under a
//! new identifier.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::{Durable, Record};
use crate::journal::{Checkpoint, JournalError};
use crate::message::Message;
use crate::queue::InflightState;
use crate::router::{DurableState, Router};

/// Writes a checkpoint of the durable state of the router behind `router`.
///
/// # Errors
/// The journal's, when the checkpoint cannot be written (the previous recovery base stays).
pub fn checkpoint(router: &Mutex<Router>, durable: &Durable) -> Result<(), JournalError> {
    let (cp, state) = {
        let router = router.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        (durable.journal().begin_checkpoint()?, router.durable_state())
    };
    write(cp, durable, &state)
}

/// [`checkpoint`] for a router the caller holds (at startup, before anything else runs).
pub(super) fn checkpoint_now(router: &Router, durable: &Durable) -> Result<(), JournalError> {
    let cp = durable.journal().begin_checkpoint()?;
    write(cp, durable, &router.durable_state())
}

fn write(mut cp: Checkpoint, durable: &Durable, state: &DurableState) -> Result<(), JournalError> {
    let DurableState { sessions, retained, wills } = state;
    let now = Instant::now();
    let mut buf = Vec::new();
    let mut put = |cp: &mut Checkpoint, record: &Record<'_>| -> Result<(), JournalError> {
        buf.clear();
        record.encode(&mut buf);
        cp.append(&buf)
    };
    let next_id = || durable.next_message_id();
    let mut shared = Shared::default();
    for msg in retained.iter().filter(|m| !crate::sys::is_sys_topic(m.topic())) {
        let id = next_id();
        put(&mut cp, &Record::Message { id, msg: msg.stored(now) })?;
        put(&mut cp, &Record::Retain { topic: msg.topic(), msg: Some(id) })?;
    }
    for (client, due, msg) in wills {
        let due_ms = Some(super::wall_ms(*due, now));
        put(&mut cp, &Record::Will { client, will: Some((msg.stored(now), 0)), due_ms })?;
    }
    for session in sessions {
        let state = session.lock();
        let client = &*session.client_id;
        if let Some(will) = state.will() {
            put(&mut cp, &super::connected_will(client, will, now))?;
        }
        // A session that ends with its connection: only the will of that connection is kept.
        if !state.outbox().is_durable() {
            continue;
        }
        let expiry = super::secs(state.expiry());
        let owner = state.owner().map(crate::router::SessionOwner::stored);
        put(&mut cp, &Record::SessionOpen { client, fresh: true, expiry, owner })?;
        if let Some(at) = state.disconnected_at() {
            put(&mut cp, &Record::SessionOffline { client, at_ms: super::wall_ms(at, now), expiry })?;
        }
        for (filter, opts) in state.subscriptions().iter() {
            put(&mut cp, &Record::Subscribe { client, filter, opts: opts.stored() })?;
        }
        let mut result = Ok(());
        state.outbox().for_each_entry(|seq, delivery, inflight| {
            if result.is_err() {
                return;
            }
            let msg = match shared.written(&delivery.msg, &next_id) {
                Written::Before(id) => id,
                Written::Now(id) => {
                    if let Err(e) = put(&mut cp, &Record::Message { id, msg: delivery.msg.stored(now) }) {
                        result = Err(e);
                        return;
                    }
                    id
                }
            };
            let sub_ids = delivery.sub_ids.to_vec();
            let (qos, retain) = (delivery.qos, delivery.retain);
            result = put(&mut cp, &Record::Enqueue { client, seq, msg, qos, retain, sub_ids });
            if let (Ok(()), Some((pid, st))) = (&result, inflight) {
                result = put(&mut cp, &Record::Sent { client, seq, pid: pid.get() });
                if result.is_ok() && st == InflightState::AwaitPubComp {
                    result = put(&mut cp, &Record::Released { client, seq });
                }
            }
        });
        result?;
        for pid in state.inbound_qos2().iter() {
            put(&mut cp, &Record::Inbound { client, pid: pid.get(), held: true })?;
        }
    }
    cp.finish()
}

/// The identifiers of the messages a checkpoint wrote that more than one holder shares, so that a message queued for
/// many sessions is written once (and recovery gives every session the same copy).
#[derive(Default)]
struct Shared {
    /// Keyed by address; the `Arc` keeps the message alive, so its address is not reused by another one while the
    /// checkpoint is written.
    ids: HashMap<*const Message, (u64, Arc<Message>)>,
}

enum Written {
    /// Written earlier in this checkpoint, under this identifier.
    Before(u64),
    /// To be written now, under this identifier.
    Now(u64),
}

impl Shared {
    fn written(&mut self, msg: &Arc<Message>, next_id: &impl Fn() -> u64) -> Written {
        // A message held once is held by this queue alone: no other session can meet it later in the checkpoint.
        if Arc::strong_count(msg) == 1 {
            return Written::Now(next_id());
        }
        match self.ids.entry(Arc::as_ptr(msg)) {
            std::collections::hash_map::Entry::Occupied(e) => Written::Before(e.get().0),
            std::collections::hash_map::Entry::Vacant(e) => Written::Now(e.insert((next_id(), msg.clone())).0),
        }
    }
}
