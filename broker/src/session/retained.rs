//! The retained messages of new subscriptions, sent in bounded steps.
//!
//! A SUBSCRIBE does not walk the retained store under the router lock in one go: a filter such as `#` over 100,000
//! retained messages would hold every other client up for the whole walk. Each subscription that should get
//! retained messages leaves a [`RetainedScan`]; every turn of the connection's loop ([`Session::poll_outbox`])
//! takes one step of the oldest scan, which visits at most [`STEP_NODES`] nodes of the store and queues no more
//! than the session's queue has room for, then lets the router lock go. The walk thus follows the subscriber's
//! reading pace: retained messages wait in the store rather than being dropped from a full queue.

use tokio::time::Instant;

use super::Session;
use crate::router::{RetainedScan, RetainedStep};

/// Nodes of the retained store one step visits: a few tens of microseconds under the router lock.
const STEP_NODES: usize = 1024;

impl Session {
    /// Queues the retained messages of a subscription to be sent. A scan of the same filter still under way is
    /// replaced (a SUBSCRIBE repeating a filter walks the store once for it).
    pub(super) fn queue_retained(&mut self, scan: RetainedScan) {
        let scans = self.retained.get_or_insert_with(Box::default);
        scans.retain(|s| s.filter() != scan.filter());
        scans.push_back(scan);
    }

    /// Drops what is left to send of the retained messages of `filter` (the client unsubscribed).
    pub(super) fn cancel_retained(&mut self, filter: &str) {
        if let Some(scans) = self.retained.as_mut() {
            scans.retain(|s| s.filter() != filter);
            if scans.is_empty() {
                self.retained = None;
            }
        }
    }

    /// Takes one step of the oldest retained scan; `Done` when none is left after it.
    pub(super) fn poll_retained(&mut self, now: Instant) -> RetainedStep {
        let Some(scans) = self.retained.as_mut() else { return RetainedStep::Done };
        let Some(scan) = scans.front_mut() else {
            self.retained = None;
            return RetainedStep::Done;
        };
        let step = self.ctx.router().send_retained(&self.handle, scan, now, STEP_NODES);
        if step == RetainedStep::Done {
            scans.pop_front();
            if scans.is_empty() {
                self.retained = None;
            }
            return if self.retained.is_some() { RetainedStep::More } else { RetainedStep::Done };
        }
        step
    }
}
