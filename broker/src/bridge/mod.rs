//! Bridges to upstream brokers, with durable store-and-forward.
//!
//! Each bridge is a persistent session of this broker, `$bridge/<name>` (no network client may take that identifier),
//! subscribed to the local filters of its `out` rules. Its outbox is the store-and-forward queue: the router queues
//! (and, with persistence, journals) a matching message there before the local publisher gets its PUBACK / PUBREC,
//! whether or not the upstream is reachable, and the entry is done only when the upstream acknowledged it (PUBACK,
//! or PUBCOMP for QoS 2). The queue is bounded in bytes per bridge, with a policy for overflow
//! ([`Overflow`]).
//!
//! The bridge task ([`link`]) drives the upstream connection with `mqtt-codec`: it attaches to the session while the
//! upstream is connected (and detaches when the link drops, so the session queues like any offline session), sends
//! from the outbox under the in-flight window using the outbox's own packet identifiers (so each upstream
//! acknowledgement names exactly one stored message), resends what was in flight with DUP after a reconnection, and
//! reconnects with exponential backoff and jitter.
//!
//! `in` rules subscribe upstream (MQTT 5 No Local; for MQTT 3.1.1, Mosquitto's bridge bit in the protocol level), and
//! what arrives is published locally with the bridge's session as publisher: its own `out` subscriptions have No
//! Local, so a message that came in over a bridge never goes back out over it.

mod link;
mod settings;
mod tls;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use mqtt_codec::RetainHandling;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use settings::{
    BridgeSettings, BridgeTls, Direction, FileBridge, Invalid, Overflow, Protocol, TopicRule, TryOrder, parse_topic,
    split_address, validate,
};

use crate::queue::OutboxLimits;
use crate::router::{ConnLink, Router, SubOpts};
use crate::session::Context;

/// Client identifiers starting with this are the broker's own bridge sessions.
pub const CLIENT_ID_PREFIX: &str = "$bridge/";

/// The counters of one bridge ([`crate::Broker::bridge_stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BridgeStats {
    /// The bridge's name.
    pub name: String,
    /// Its client identifier upstream (Mosquitto's `remote_clientid`, which names its `$SYS` topics).
    pub client_id: String,
    /// Whether the upstream connection is up now.
    pub connected: bool,
    /// The upstream address of the current (or last) connection.
    pub upstream: Option<String>,
    /// Successful upstream connections since start.
    pub connects: u64,
    /// Messages waiting to go upstream.
    pub queued_messages: usize,
    /// Their bytes (the bound is `max_queue_bytes`).
    pub queued_bytes: usize,
    /// QoS 1/2 messages sent upstream and not yet acknowledged.
    pub inflight_messages: usize,
    /// Messages dropped by the overflow policy (or too large for the queue).
    pub dropped_messages: u64,
    /// Messages the upstream acknowledged (QoS 1/2) or that were sent (QoS 0).
    pub forwarded_messages: u64,
    /// Messages received from the upstream and published locally.
    pub received_messages: u64,
}

/// What the bridge task shares with [`crate::Broker::bridge_stats`].
#[derive(Debug, Default)]
pub(crate) struct Shared {
    connected: AtomicBool,
    connects: AtomicU64,
    forwarded: AtomicU64,
    received: AtomicU64,
    upstream: std::sync::Mutex<Option<String>>,
}

/// The bridges of a broker.
#[derive(Debug, Clone, Default)]
pub(crate) struct Bridges {
    list: Vec<(Arc<BridgeSettings>, Arc<Shared>)>,
}

impl Bridges {
    /// Creates (or resumes, after a restart) each bridge's session: subscribed to its `out` filters and nothing else,
    /// with the bridge's queue bound and overflow policy. Called once the router holds what the journal recovered.
    pub(crate) fn prepare(router: &mut Router, bridges: &[BridgeSettings]) -> Self {
        let now = Instant::now();
        let mut list = Vec::with_capacity(bridges.len());
        for (i, b) in bridges.iter().enumerate() {
            let id = b.local_client_id();
            let conn_id = link::PREPARE_CONN_ID.saturating_sub(i as u64);
            let (session, _) = router.connect(&id, false, None, ConnLink::new(conn_id), now);
            let wanted: Vec<(String, SubOpts)> = b
                .topics
                .iter()
                .filter(|r| r.direction.is_out())
                .map(|r| {
                    let opts = SubOpts { no_local: true, retain_as_published: true, ..SubOpts::qos(r.qos) };
                    (r.local_filter(), opts)
                })
                .collect();
            let stale: Vec<String> = session
                .lock()
                .subscriptions()
                .iter()
                .filter(|(f, _)| !wanted.iter().any(|(w, _)| w == f))
                .map(|(f, _)| f.to_owned())
                .collect();
            for f in stale {
                router.unsubscribe(&session, &f);
            }
            for (filter, opts) in &wanted {
                // Merged rules on the same filter keep the highest QoS.
                let opts = wanted
                    .iter()
                    .filter(|(f, _)| f == filter)
                    .fold(*opts, |a, (_, o)| SubOpts { qos: a.qos.max(o.qos), ..a });
                if let Err(e) = router.subscribe(&session, filter, opts, RetainHandling::DoNotSend, now) {
                    tracing::error!(bridge = b.name, filter, error = ?e, "bridge subscription refused");
                }
            }
            // A store-and-forward queue keeps QoS 0 messages too while the upstream is away (whatever
            // `sessions.queue_qos0_offline` says for clients), under the same byte bound and overflow policy.
            let bounded = OutboxLimits {
                max_inflight: b.max_inflight,
                max_queued: usize::MAX,
                max_queued_bytes: b.max_queue_bytes,
                queue_qos0_offline: true,
            };
            session.lock().outbox_mut().set_limits(bounded, b.overflow == Overflow::DropOldest);
            let queued = session.lock().outbox().queued();
            router.disconnect(&session, conn_id, None, now);
            tracing::info!(bridge = b.name, client_id = id, queued, "bridge session ready");
            list.push((Arc::new(b.clone()), Arc::new(Shared::default())));
        }
        Self { list }
    }

    /// Starts one task per bridge on `tracker`; they end when `stop` is cancelled.
    pub(crate) fn spawn(&self, ctx: &Context, tracker: &TaskTracker, stop: &CancellationToken) {
        for (settings, shared) in &self.list {
            let tls = match settings.tls.as_ref().map(tls::client_config).transpose() {
                Ok(tls) => tls,
                Err(e) => {
                    tracing::error!(bridge = settings.name, error = %e, "bridge TLS unusable; the bridge stays down");
                    continue;
                }
            };
            let task = link::Task {
                settings: settings.clone(),
                shared: shared.clone(),
                ctx: ctx.clone(),
                tls,
                stop: stop.clone(),
            };
            tracker.spawn(task.run());
        }
    }

    /// Each bridge's counters.
    pub(crate) fn stats(&self, router: &Router) -> Vec<BridgeStats> {
        self.list
            .iter()
            .map(|(b, s)| {
                let mut stats = BridgeStats {
                    name: b.name.clone(),
                    client_id: b.client_id.clone(),
                    connected: s.connected.load(Ordering::Relaxed),
                    upstream: s.upstream.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone(),
                    connects: s.connects.load(Ordering::Relaxed),
                    forwarded_messages: s.forwarded.load(Ordering::Relaxed),
                    received_messages: s.received.load(Ordering::Relaxed),
                    ..BridgeStats::default()
                };
                if let Some(session) = router.session(&b.local_client_id()) {
                    let state = session.lock();
                    stats.queued_messages = state.outbox().queued();
                    stats.queued_bytes = state.outbox().queued_bytes();
                    stats.inflight_messages = state.outbox().inflight();
                    stats.dropped_messages = state.outbox().dropped();
                }
                stats
            })
            .collect()
    }
}
