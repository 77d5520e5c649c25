//! Shared subscriptions (`$share/GROUP/FILTER`): one copy of a message per group, to the member the group's
//! [`SharedStrategy`] picks.

use super::*;

/// How a shared subscription group picks the member that gets a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SharedStrategy {
    /// Members in turn.
    #[default]
    RoundRobin,
    /// A member at random.
    Random,
}

/// The members of one shared group, and whose turn it is next.
#[derive(Debug, Default)]
pub(super) struct Group {
    pub(super) members: Vec<(SessionRef, SubOpts)>,
    pub(super) next: usize,
}

impl Router {
    /// Picks the member of a shared group that gets a message: the next in turn that is online and has room, else
    /// any member that can queue it. `None` (counted and logged) if no member could take it.
    pub(super) fn pick_shared(
        &mut self,
        name: &Arc<str>,
        msg: &Arc<Message>,
    ) -> Option<(Arc<SessionHandle>, Delivery)> {
        let strategy = self.limits.shared_strategy;
        let start = match strategy {
            SharedStrategy::RoundRobin => self.groups.get(name).map_or(0, |g| g.next),
            SharedStrategy::Random => {
                // xorshift64: cheap and good enough to spread load.
                self.rng ^= self.rng << 13;
                self.rng ^= self.rng >> 7;
                self.rng ^= self.rng << 17;
                usize::try_from(self.rng % 1_000_003).unwrap_or(0)
            }
        };
        let n = self.groups.get(name).map_or(0, |g| g.members.len());
        // Online members first, then offline persistent ones that can queue it.
        for online_pass in [true, false] {
            for i in 0..n {
                let slot = (start + i) % n;
                let Some((session, opts)) = self.groups.get(name).and_then(|g| g.members.get(slot)).cloned() else {
                    continue;
                };
                if opts.acl_check && !access::may_read(&session.0, msg.topic()) {
                    continue;
                }
                let delivery = Delivery {
                    msg: msg.clone(),
                    qos: msg.qos.min(opts.qos),
                    retain: opts.retain_as_published && msg.retain,
                    sub_ids: opts.id.into_iter().collect(),
                };
                let state = session.0.lock();
                let online = state.conn.is_some();
                if online != online_pass || !state.outbox.would_accept(&delivery, online) {
                    continue;
                }
                drop(state);
                if let Some(group) = self.groups.get_mut(name) {
                    group.next = (slot + 1) % n;
                }
                return Some((session.0, delivery));
            }
        }
        self.counters.messages_dropped.fetch_add(1, Ordering::Relaxed);
        crate::logging::conn_event!(
            WARN,
            group = ?Untrusted(name),
            topic = ?Untrusted(msg.topic()),
            "no member of the shared subscription could take a message"
        );
        None
    }
}
