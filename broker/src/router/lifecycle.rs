//! The life of a session: a connection attaches ([`Router::try_connect`]), detaches ([`Router::disconnect`]) leaving
//! its will, and the session ends when it expires or its client asks; delayed wills and expiry are driven by
//! [`Router::tick`].

use super::*;

impl Router {
    /// Attaches a connection to the session of `client_id`, unless another connection is attached to it now: that
    /// one is kicked ([`ReasonCode::SessionTakenOver`]) and `Err(Busy)` says to wait until its connection has
    /// ended ([`Router::connection_ended`]) and try again. Its last acts (what it had received, its DISCONNECT, its
    /// will, the end of a session that expires with it) are applied before the new connection attaches, so the new
    /// one sees a session as the old connection left it.
    ///
    /// # Errors
    /// [`Busy`] while another connection is attached to the session.
    pub fn try_connect(
        &mut self,
        client_id: &str,
        clean_start: bool,
        expiry: Option<Duration>,
        link: ConnLink,
        now: Instant,
    ) -> Result<(Arc<SessionHandle>, bool), Busy> {
        if let Some(existing) = self.store.session(client_id) {
            let state = existing.lock();
            if let Some(old) = &state.conn {
                if !old.kick.is_cancelled() {
                    old.kick(ReasonCode::SessionTakenOver);
                }
                return Err(Busy);
            }
        }
        Ok(self.connect(client_id, clean_start, expiry, link, now))
    }

    /// Attaches a connection to the session of `client_id` at once, taking the session from a connection attached
    /// now (which is kicked, and whose late [`Router::disconnect`] then changes nothing but its will). Connections
    /// use [`Router::try_connect`] first and this only when the old connection did not end in time.
    ///
    /// `clean_start` discards a stored session; `expiry` is how long the session outlives the connection (`None`:
    /// forever, zero: it ends with the connection). A new network connection cancels a delayed will of the client
    /// [MQTT-3.1.2-8], whether it resumes the session or not. Returns the session and whether a stored one was
    /// resumed.
    pub fn connect(
        &mut self,
        client_id: &str,
        clean_start: bool,
        expiry: Option<Duration>,
        link: ConnLink,
        now: Instant,
    ) -> (Arc<SessionHandle>, bool) {
        let pending = self.pending_wills.len();
        self.pending_wills.retain(|w| &*w.client_id != client_id);
        if self.pending_wills.len() != pending {
            self.journal(&Record::Will { client: client_id, will: None, due_ms: None });
        }
        if let Some(existing) = self.store.session(client_id).cloned() {
            let mut state = existing.lock();
            if let Some(old) = state.conn.take() {
                old.kick(ReasonCode::SessionTakenOver);
            }
            let expired = state.is_expired(now);
            if !clean_start && !expired {
                state.conn = Some(link);
                state.expiry = expiry;
                state.disconnected_at = None;
                state.outbox.on_disconnect();
                self.journal_resume(&existing, &mut state);
                drop(state);
                return (existing, true);
            }
            drop(state);
            self.remove_session(&existing);
        }
        let handle = self.new_session(client_id, expiry, Some(link));
        self.journal_open(&handle);
        self.store.insert_session(handle.clone());
        (handle, false)
    }

    /// Notified (all waiters) whenever a connection detaches from its session: a connection that found its session
    /// [`Busy`] waits for it, then tries again. One for the whole router, so a connection costs no signal of its
    /// own; a waiter woken for another session looks again and waits on.
    pub fn connection_ended(&self) -> Arc<Notify> {
        self.conn_ended.clone()
    }

    /// The connection `conn_id` of this session ended, with the will to publish (and its delay), if any.
    ///
    /// A session whose expiry is zero ends now; others keep their subscriptions and queue, and resend what was in
    /// flight when they resume. A will goes out when its delay ends or the session ends, whichever comes first.
    pub fn disconnect(
        &mut self,
        session: &Arc<SessionHandle>,
        conn_id: u64,
        will: Option<(Message, Duration)>,
        now: Instant,
    ) {
        let mut state = session.lock();
        if state.conn.as_ref().is_none_or(|c| c.id != conn_id) {
            drop(state);
            // Taken over by force (see `connect`): the new network connection cancels a delayed will
            // [MQTT-3.1.2-8]; an immediate one goes out now [MQTT-3.1.4-3].
            if let Some((msg, delay)) = will
                && delay.is_zero()
            {
                self.publish_will(msg, now);
            }
            return;
        }
        state.conn = None;
        // A connection waiting to take this session over tries again.
        self.conn_ended.notify_waiters();
        state.disconnected_at = Some(now);
        state.outbox.on_disconnect();
        // The next connection starts with a clean slate: it may well read.
        state.stalled = false;
        if std::mem::take(&mut state.holds_publishers) {
            // Nothing drains an offline queue: publishers waiting for it go on.
            session.caught_up.notify_waiters();
        }
        let expiry = state.expiry;
        let will = will.map(|(msg, delay)| (msg, delay.min(expiry.unwrap_or(Duration::MAX))));
        self.journal_offline(session, &mut state, will.as_ref(), now);
        drop(state);
        if let Some((msg, wait)) = will {
            let full = self.limits.max_pending_wills > 0 && self.pending_wills.len() >= self.limits.max_pending_wills;
            if full {
                // Not lost, not held: a client cannot make the broker hold more wills than the limit.
                self.counters.budget.count(crate::budget::DropReason::WillNotDelayed);
                crate::logging::conn_event!(WARN, "pending wills at their limit; will published without its delay");
            }
            if wait.is_zero() || full {
                self.publish_will(msg, now);
            } else {
                self.pending_wills.push(PendingWill { client_id: session.client_id.clone(), due: now + wait, msg });
            }
        }
        if expiry == Some(Duration::ZERO) {
            self.remove_session(session);
        }
    }

    /// Publishes wills whose delay ended and discards sessions whose expiry ran out while offline.
    pub fn tick(&mut self, now: Instant) {
        let mut due = Vec::new();
        self.pending_wills.retain(|w| {
            if w.due <= now {
                due.push((w.client_id.clone(), w.msg.clone()));
                false
            } else {
                true
            }
        });
        for (client, msg) in due {
            // Published first: a crash between the two records sends it again rather than never.
            self.publish_will(msg, now);
            self.journal(&Record::Will { client: &client, will: None, due_ms: None });
        }
        let expired: Vec<Arc<SessionHandle>> =
            self.store.sessions().filter(|s| s.lock().is_expired(now)).cloned().collect();
        for session in expired {
            tracing::debug!(client_id = ?Untrusted(&session.client_id), "session expired");
            self.remove_session(&session);
        }
    }

    pub(super) fn publish_will(&mut self, msg: Message, now: Instant) {
        self.publish(msg.published_at(now), None, now);
    }

    pub(super) fn remove_session(&mut self, session: &Arc<SessionHandle>) {
        if self.store.session(&session.client_id).is_some_and(|s| Arc::ptr_eq(s, session)) {
            self.store.remove_session(&session.client_id);
        }
        let mut state = session.lock();
        if state.outbox.is_durable() {
            state.outbox.make_volatile();
            self.journal(&Record::SessionEnd { client: &session.client_id });
        }
        // The will of its last connection went out or was discarded when that connection ended (before this).
        if state.will.take().is_some() {
            self.journal(&Record::Will { client: &session.client_id, will: None, due_ms: None });
        }
        let filters = state.subscriptions.take_filters();
        drop(state);
        for f in filters {
            self.unlink(session, &f);
        }
    }
}
