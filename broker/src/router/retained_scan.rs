//! Sending the retained messages of a new subscription in bounded steps (see [`Router::subscribe_deferred`]).

use std::sync::Arc;

use tokio::time::Instant;

use super::retained::{Cursor, Scan};
use super::{Router, SessionHandle, SubOpts, access};
use crate::queue::Delivery;

/// What a [`Router::send_retained`] step left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetainedStep {
    /// Every retained message of the subscription was queued (or skipped: expired).
    Done,
    /// The step's budget ran out: call again.
    More,
    /// The session's queue is full: call again once the client has taken messages off it.
    Full,
}

/// The retained messages still to send for one subscription (see [`Router::subscribe_deferred`]).
#[derive(Debug)]
pub struct RetainedScan {
    filter: Box<str>,
    opts: SubOpts,
    cursor: Cursor,
}

impl RetainedScan {
    pub(super) fn new(filter: &str, opts: SubOpts) -> Self {
        Self { filter: filter.into(), opts, cursor: Cursor::default() }
    }

    /// The subscription's topic filter.
    pub fn filter(&self) -> &str {
        &self.filter
    }
}

impl Router {
    /// One step of sending a subscription's retained messages: visits at most `budget` nodes of the retained store
    /// and queues what matches, up to what the session's queue has room for. Retained messages sent on subscribe
    /// carry RETAIN=1 [MQTT-3.3.1-8]; the subscriber reads them at its pace and nobody waits for it.
    pub fn send_retained(
        &mut self,
        session: &Arc<SessionHandle>,
        scan: &mut RetainedScan,
        now: Instant,
        budget: usize,
    ) -> RetainedStep {
        let mut full = false;
        match self.scan_retained(session, scan, now, budget, &mut full) {
            Scan::Done => RetainedStep::Done,
            Scan::Paused if full => RetainedStep::Full,
            Scan::Paused => RetainedStep::More,
        }
    }

    /// A step of [`Router::send_retained`]. With `full` false on entry, the walk pauses at a message the queue has
    /// no room for and sets `full`; with `full` true, a full queue drops (as [`Router::deliver`]).
    pub(super) fn scan_retained(
        &self,
        session: &Arc<SessionHandle>,
        scan: &mut RetainedScan,
        now: Instant,
        budget: usize,
        full: &mut bool,
    ) -> Scan {
        let wait_for_room = !*full;
        let opts = scan.opts;
        self.store.scan_retained(&scan.filter, &mut scan.cursor, budget, &mut |m| {
            if m.is_expired(now) || (opts.acl_check && !access::may_read(session, m.topic())) {
                return true;
            }
            let delivery = Delivery {
                msg: Arc::new(m.clone()),
                qos: m.qos.min(opts.qos),
                retain: true,
                sub_ids: opts.id.into_iter().collect(),
            };
            {
                let state = session.lock();
                // Offline, nothing drains the queue: waiting for room would wait forever.
                if wait_for_room && state.conn.is_some() && !state.outbox.would_accept(&delivery, true) {
                    *full = true;
                    return false;
                }
            }
            // A persistent session's queue entry is journaled like any routed message's.
            let target = [(session.clone(), delivery)];
            let refused = self.journal_routed(&target[0].1.msg, false, None, &target, now);
            let [(_, delivery)] = target;
            self.deliver(session, delivery, &mut None, refused);
            true
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mqtt_codec::{QoS, RetainHandling};
    use tokio::time::Instant;

    use super::*;
    use crate::message::Message;
    use crate::queue::OutboxLimits;
    use crate::router::{ConnLink, RouterLimits, SharedStrategy};

    fn router(max_pending_wills: usize) -> Router {
        let outbox =
            OutboxLimits { max_inflight: 10, max_queued: 10, max_queued_bytes: 1 << 20, queue_qos0_offline: false };
        let limits = RouterLimits {
            outbox,
            max_retained: 100,
            max_retained_bytes: 0,
            max_pending_wills,
            max_subscriptions: 10,
            shared_strategy: SharedStrategy::RoundRobin,
            disconnect_slow_consumers: false,
        };
        Router::new(limits, Arc::default())
    }

    fn queued(s: &Arc<SessionHandle>) -> usize {
        s.lock().outbox.queued()
    }

    #[test]
    fn past_the_pending_wills_limit_a_will_goes_out_at_once_and_is_counted() {
        let mut r = router(2);
        let t0 = Instant::now();
        let (watcher, _) = r.connect("watcher", true, None, ConnLink::new(0), t0);
        let opts = SubOpts::qos(QoS::AtMostOnce);
        r.subscribe(&watcher, "will/+", opts, RetainHandling::DoNotSend, t0).unwrap();
        for i in 1..=3u64 {
            let id = format!("c{i}");
            let (s, _) = r.connect(&id, false, None, ConnLink::new(i), t0);
            let will = Message::from_parts(&format!("will/{id}"), b"gone", QoS::AtMostOnce, false);
            r.disconnect(&s, i, Some((will, Duration::from_secs(60))), t0);
        }
        assert_eq!(queued(&watcher), 1, "the third will went out at once");
        assert_eq!(r.counters.budget.dropped(crate::budget::DropReason::WillNotDelayed), 1);
        r.tick(t0 + Duration::from_secs(60));
        assert_eq!(queued(&watcher), 3, "the two delayed ones after their delay");
    }
}
