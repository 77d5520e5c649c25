//! The storage interface: where sessions (with their subscriptions and queues) and retained messages live.
//!
//! The router reaches its state only through [`Store`]. [`MemoryStore`] keeps everything in memory; a crash-safe
//! store implements the same trait and is chosen at startup, without touching the router or the sessions.

use std::collections::HashMap;
use std::sync::Arc;

use super::SessionHandle;
use super::retained::{Cursor, Retained, RetainedFull, Scan};
use crate::message::Message;

/// Sessions and retained messages.
pub trait Store: Send + std::fmt::Debug {
    /// The session of a client.
    fn session(&self, client_id: &str) -> Option<&Arc<SessionHandle>>;
    /// Adds or replaces the session of `handle.client_id`.
    fn insert_session(&mut self, handle: Arc<SessionHandle>);
    /// Removes the session of a client.
    fn remove_session(&mut self, client_id: &str) -> Option<Arc<SessionHandle>>;
    /// Sessions held.
    fn session_count(&self) -> usize;
    /// Every session.
    fn sessions(&self) -> Box<dyn Iterator<Item = &Arc<SessionHandle>> + '_>;
    /// Stores, replaces or (empty payload) clears a retained message.
    ///
    /// # Errors
    /// [`RetainedFull`] when a new topic would exceed the limit.
    fn set_retained(&mut self, msg: &Message) -> Result<(), RetainedFull>;
    /// Calls `f` with every retained message (`$` topics too).
    fn for_each_retained_message(&self, f: &mut dyn FnMut(&Message));
    /// One bounded step of a walk over the retained messages matching `filter`: at most `budget` nodes from
    /// `cursor` on, calling `f` with each match until it returns `false` (see [`Retained::scan`]).
    fn scan_retained(
        &self,
        filter: &str,
        cursor: &mut Cursor,
        budget: usize,
        f: &mut dyn FnMut(&Message) -> bool,
    ) -> Scan;
    /// Retained messages held.
    fn retained_count(&self) -> usize;
}

/// Everything in memory: lost on restart.
#[derive(Debug)]
pub struct MemoryStore {
    sessions: HashMap<Arc<str>, Arc<SessionHandle>>,
    retained: Retained,
}

impl MemoryStore {
    /// An empty store holding at most `max_retained` retained messages.
    pub fn new(max_retained: usize) -> Self {
        Self { sessions: HashMap::new(), retained: Retained::new(max_retained) }
    }

    /// The same store, holding at most `max_bytes` bytes of retained messages (0: no byte limit).
    #[must_use]
    pub fn with_max_retained_bytes(mut self, max_bytes: usize) -> Self {
        self.retained = self.retained.with_max_bytes(max_bytes);
        self
    }
}

impl Store for MemoryStore {
    fn session(&self, client_id: &str) -> Option<&Arc<SessionHandle>> {
        self.sessions.get(client_id)
    }

    fn insert_session(&mut self, handle: Arc<SessionHandle>) {
        self.sessions.insert(handle.client_id.clone(), handle);
    }

    fn remove_session(&mut self, client_id: &str) -> Option<Arc<SessionHandle>> {
        self.sessions.remove(client_id)
    }

    fn session_count(&self) -> usize {
        self.sessions.len()
    }

    fn sessions(&self) -> Box<dyn Iterator<Item = &Arc<SessionHandle>> + '_> {
        Box::new(self.sessions.values())
    }

    fn set_retained(&mut self, msg: &Message) -> Result<(), RetainedFull> {
        self.retained.set(msg)
    }

    fn scan_retained(
        &self,
        filter: &str,
        cursor: &mut Cursor,
        budget: usize,
        f: &mut dyn FnMut(&Message) -> bool,
    ) -> Scan {
        self.retained.scan(filter, cursor, budget, f)
    }

    fn for_each_retained_message(&self, f: &mut dyn FnMut(&Message)) {
        self.retained.all().for_each(f);
    }

    fn retained_count(&self) -> usize {
        self.retained.len()
    }
}
