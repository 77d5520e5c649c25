//! The router's side of authorization: the read check on delivery, and subscriptions re-classified when a
//! client's permissions change (a reload, or another user resuming the session).

use std::sync::Arc;

use mqtt_codec::SharedFilter;

use super::{Router, SessionHandle, SessionOwner, SessionRef};
use crate::auth::{Access, ClientAccess, FilterAccess};

/// Whether the session's client may read `topic`: asked on delivery for subscriptions whose filter is only partly
/// readable (`SubOpts::acl_check`), never for the others. A session without access (recovered after a restart
/// with no ACL of its owner's configured any more, see [`Router::restore_access`]) gets nothing on such a
/// subscription until its client connects again (fail closed).
pub(super) fn may_read(session: &SessionHandle, topic: &str) -> bool {
    session.lock().access.as_ref().is_some_and(|a| a.allows(Access::Read, topic))
}

impl Router {
    /// Attaches a client's access to its session and re-classifies the session's subscriptions for it.
    pub fn attach_access(&mut self, session: &Arc<SessionHandle>, access: Option<Arc<ClientAccess>>) {
        let has_subscriptions = {
            let mut state = session.lock();
            state.access = access;
            !state.subscriptions.is_empty()
        };
        if has_subscriptions {
            self.reclassify(session);
        }
    }

    /// Whether the stored session of `access`'s client id was last attached by another user (under an ACL; for a
    /// session recovered without its permissions, the user its owner record names).
    pub fn held_by_another_user(&self, access: &ClientAccess) -> bool {
        let Some(session) = self.store.session(&access.client_id) else { return false };
        let state = session.lock();
        match (&state.access, state.owner.as_deref()) {
            (Some(a), _) => a.username != access.username,
            (None, Some(owner)) => owner.acl.is_some() && owner.username.as_deref() != access.username.as_deref(),
            (None, None) => false,
        }
    }

    /// Gives each session recovered at startup the permissions `access_of` rebuilds for its owner (from the ACL
    /// the owner record names), so that its subscriptions deliver what the owner may read before the client
    /// connects again. A session left without permissions gets nothing on its partly readable subscriptions until
    /// then (fail closed).
    pub fn restore_access(&mut self, access_of: impl Fn(&SessionOwner, &str) -> Option<Arc<ClientAccess>>) {
        let sessions: Vec<Arc<SessionHandle>> = self.store.sessions().cloned().collect();
        for session in sessions {
            let access = {
                let state = session.lock();
                match state.owner.as_deref() {
                    Some(owner) if state.access.is_none() && state.conn.is_none() => {
                        access_of(owner, &session.client_id)
                    }
                    _ => None,
                }
            };
            if let Some(access) = access {
                self.attach_access(&session, Some(access));
            }
        }
    }

    /// Re-classifies the subscriptions of the session that `access` belongs to, after its permissions changed.
    pub fn recheck_access(&mut self, access: &Arc<ClientAccess>) {
        let Some(session) = self.store.session(&access.client_id).cloned() else { return };
        let attached = session.lock().access.as_ref().is_some_and(|a| Arc::ptr_eq(a, access));
        if attached {
            self.reclassify(&session);
        }
    }

    fn reclassify(&mut self, session: &Arc<SessionHandle>) {
        let changed: Vec<(Box<str>, super::SubOpts)> = {
            let mut state = session.lock();
            let access = state.access.clone();
            let mut changed = Vec::new();
            for (filter, opts) in state.subscriptions.iter_mut() {
                let check = access.as_ref().is_some_and(|a| a.filter_access(filter) != FilterAccess::All);
                if opts.acl_check != check {
                    opts.acl_check = check;
                    changed.push((filter.into(), *opts));
                }
            }
            changed
        };
        let key = SessionRef(session.clone());
        for (filter, opts) in changed {
            if let Ok(Some(_)) = SharedFilter::parse(&filter) {
                let name: Arc<str> = Arc::from(&*filter);
                if let Some(member) =
                    self.groups.get_mut(&name).and_then(|g| g.members.iter_mut().find(|(s, _)| *s == key))
                {
                    member.1 = opts;
                }
            } else {
                self.trie.insert(&filter, key.clone(), opts);
            }
        }
    }
}
