//! One reading of everything the broker shows an operator, taken under the router's lock once.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{DropReason, LATENCY_BUCKETS_US};
use crate::journal::JournalStats;
use crate::session::Context;

/// How many of the longest queues a snapshot names.
pub const LONGEST_QUEUES: usize = 5;

/// Counters and gauges at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Since the broker started.
    pub uptime: Duration,
    /// Clients connected now.
    pub clients_connected: usize,
    /// Sessions with a connection.
    pub sessions_online: usize,
    /// Persistent sessions without one.
    pub sessions_offline: usize,
    /// Subscriptions of every session.
    pub subscriptions: usize,
    /// Retained messages and their bytes (topic, payload, properties).
    pub retained_messages: usize,
    /// See `retained_messages`.
    pub retained_bytes: usize,
    /// Messages waiting in every session's queue (behind the in-flight windows).
    pub queued_messages: usize,
    /// Their bytes.
    pub queued_bytes: usize,
    /// QoS 1/2 messages sent and not acknowledged.
    pub inflight_messages: usize,
    /// The longest queues (client id, queued messages), longest first; empty queues are left out.
    pub longest_queues: Vec<(String, usize)>,
    /// PUBLISH packets (count, bytes) received at QoS 0, 1, 2.
    pub received: [(u64, u64); 3],
    /// PUBLISH packets (count, bytes) sent at QoS 0, 1, 2.
    pub sent: [(u64, u64); 3],
    /// Drops in [`DropReason::ALL`] order.
    pub drops: [u64; DropReason::ALL.len()],
    /// Latency counts per bucket of [`LATENCY_BUCKETS_US`] (last: above them) and sum in µs, read -> written.
    pub latency_written: ([u64; LATENCY_BUCKETS_US.len() + 1], u64),
    /// The same, read -> acknowledged (QoS 1 and 2).
    pub latency_acked: ([u64; LATENCY_BUCKETS_US.len() + 1], u64),
    /// Message bytes held against the memory budget, and its limit (0: none; see [`crate::budget`]).
    pub memory_used: usize,
    /// See `memory_used`.
    pub memory_limit: usize,
    /// The journal's counters, when persistence is on.
    pub journal: Option<JournalStats>,
    /// Each bridge's state and counters (filled in by [`crate::Broker::metrics_snapshot`]).
    pub bridges: Vec<crate::bridge::BridgeStats>,
}

impl Snapshot {
    /// Messages received, all QoS.
    pub fn messages_received(&self) -> u64 {
        self.received.iter().map(|(n, _)| n).sum()
    }

    /// Messages sent, all QoS.
    pub fn messages_sent(&self) -> u64 {
        self.sent.iter().map(|(n, _)| n).sum()
    }

    /// Bytes received, all QoS.
    pub fn bytes_received(&self) -> u64 {
        self.received.iter().map(|(_, b)| b).sum()
    }

    /// Bytes sent, all QoS.
    pub fn bytes_sent(&self) -> u64 {
        self.sent.iter().map(|(_, b)| b).sum()
    }
}

/// Reads the broker's state. Walks every session (not the retained messages) under the router's lock: a few
/// milliseconds for 10,000 sessions.
pub fn snapshot(ctx: &Context, uptime: Duration) -> Snapshot {
    let m = &ctx.counters.obs;
    let mut s = Snapshot {
        uptime,
        clients_connected: ctx.counters.clients_connected.load(Ordering::Relaxed),
        received: m.received.get(),
        sent: m.sent.get(),
        drops: m.drops(),
        latency_written: m.latency_written.get(),
        latency_acked: m.latency_acked.get(),
        journal: ctx.durable.as_ref().map(|d| d.journal().stats()),
        ..Snapshot::default()
    };
    let c = &ctx.counters;
    let oversized = c.messages_oversized.load(Ordering::Relaxed);
    if let Some(d) = s.drops.get_mut(DropReason::QueueFull as usize) {
        // The router counts every drop; those for the Maximum Packet Size are counted apart as well.
        *d = c.messages_dropped.load(Ordering::Relaxed).saturating_sub(oversized);
    }
    if let Some(d) = s.drops.get_mut(DropReason::TooLarge as usize) {
        *d = oversized;
    }
    if let Some(d) = s.drops.get_mut(DropReason::MemoryBudget as usize) {
        *d = c.budget.dropped(crate::budget::DropReason::Budget);
    }
    s.memory_used = c.budget.used();
    s.memory_limit = c.budget.limit();
    let router = ctx.router();
    let mut queues = Vec::new();
    for handle in router.sessions() {
        let state = handle.lock();
        if state.conn().is_some() {
            s.sessions_online += 1;
        } else {
            s.sessions_offline += 1;
        }
        s.subscriptions += state.subscriptions().len();
        let queued = state.outbox().queued();
        s.queued_messages += queued;
        s.queued_bytes += state.outbox().queued_bytes();
        s.inflight_messages += state.outbox().inflight();
        if queued > 0 {
            queues.push((handle.client_id.clone(), queued));
        }
    }
    // Clients' retained messages: the store leaves the broker's own `$SYS` values out of its counts.
    s.retained_messages = router.retained_count();
    s.retained_bytes = router.retained_bytes();
    drop(router);
    queues.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    s.longest_queues = queues.into_iter().take(LONGEST_QUEUES).map(|(id, n)| (id.to_string(), n)).collect();
    s
}
