//! What the broker counts for operators: message and byte counters by QoS, drops by reason, connections per
//! listener and the delivery latency histograms.
//!
//! The data path only does relaxed atomic additions here ([`Metrics`] lives in the router's `Counters`); everything
//! else (sessions, queues, retained messages, the journal) is read when someone asks: [`export`] writes the
//! OpenMetrics text of `/metrics`, and the `$SYS` tree and the dashboard read the same [`Snapshot`].

mod bridge;
pub mod export;
mod snapshot;

pub use snapshot::{Snapshot, snapshot};

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use mqtt_codec::QoS;

/// When a message was read, compactly: microseconds since the process's first stamp, modulo 2^32 (71 minutes).
/// A latency is the wrapping difference of two stamps, so it is right for any delivery faster than 71 minutes.
/// The default, [`Stamp::NONE`], marks a message read while metrics were off: its delivery is not timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stamp(u32);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Stamp {
    /// No time: the message is not timed.
    pub const NONE: Self = Self(0);

    /// Now (never [`Stamp::NONE`]: the microsecond 0 of each 71-minute turn reads as 1).
    pub fn now() -> Self {
        // Truncation is the point: the stamp wraps.
        #[expect(clippy::cast_possible_truncation)]
        Self((epoch().elapsed().as_micros() as u32).max(1))
    }

    /// The stamp of `at` (a clock reading the caller already has).
    pub fn at(at: Instant) -> Self {
        let d = at.saturating_duration_since(epoch());
        // Truncation is the point: the stamp wraps.
        #[expect(clippy::cast_possible_truncation)]
        let us = d.as_secs().wrapping_mul(1_000_000).wrapping_add(u64::from(d.subsec_micros())) as u32;
        Self(us.max(1))
    }

    /// Microseconds from this stamp to `later`; `None` when either is [`Stamp::NONE`].
    pub fn micros_until(self, later: Self) -> Option<u32> {
        (self.0 != 0 && later.0 != 0).then(|| later.0.wrapping_sub(self.0))
    }
}

/// Why a message did not reach a subscriber (or anyone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum DropReason {
    /// The subscriber's queue was full (or the journal refused the message for a persistent session).
    QueueFull,
    /// Larger than the subscriber's Maximum Packet Size.
    TooLarge,
    /// Its Message Expiry Interval ran out while it waited in a queue.
    Expired,
    /// The publisher may not publish to the topic (ACL).
    AclDenied,
    /// No subscription matched.
    NoSubscribers,
    /// The broker-wide memory budget (`limits.max_message_memory`) was used up: refused as a whole, not routed
    /// (counted by [`crate::budget`]).
    MemoryBudget,
}

impl DropReason {
    /// Every reason, in label order.
    pub const ALL: [Self; 6] =
        [Self::QueueFull, Self::TooLarge, Self::Expired, Self::AclDenied, Self::NoSubscribers, Self::MemoryBudget];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::TooLarge => "too_large",
            Self::Expired => "expired",
            Self::AclDenied => "acl_denied",
            Self::NoSubscribers => "no_subscribers",
            Self::MemoryBudget => "memory_budget",
        }
    }
}

/// Messages and their bytes (the whole PUBLISH packet), by QoS.
#[derive(Debug, Default)]
pub struct ByQos {
    messages: [AtomicU64; 3],
    bytes: [AtomicU64; 3],
}

impl ByQos {
    /// Counts one PUBLISH of `bytes` bytes.
    pub fn add(&self, qos: QoS, bytes: usize) {
        let i = qos as usize;
        if let (Some(m), Some(b)) = (self.messages.get(i), self.bytes.get(i)) {
            m.fetch_add(1, Ordering::Relaxed);
            b.fetch_add(bytes as u64, Ordering::Relaxed);
        }
    }

    /// Messages and bytes at each QoS (0, 1, 2).
    pub fn get(&self) -> [(u64, u64); 3] {
        std::array::from_fn(|i| {
            let load = |a: &[AtomicU64; 3]| a.get(i).map_or(0, |v| v.load(Ordering::Relaxed));
            (load(&self.messages), load(&self.bytes))
        })
    }
}

/// Upper bounds of the latency buckets, in microseconds (50 µs to 10 s).
pub const LATENCY_BUCKETS_US: [u32; 18] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000, 30_000_000,
];

/// A latency histogram of relaxed atomics (cumulative buckets are made when read).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    /// Records one latency.
    pub fn observe_us(&self, us: u32) {
        let i = LATENCY_BUCKETS_US.partition_point(|&b| b < us);
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_us.fetch_add(u64::from(us), Ordering::Relaxed);
    }

    /// Counts per bucket (the last one above every bound) and the sum in microseconds.
    pub fn get(&self) -> ([u64; LATENCY_BUCKETS_US.len() + 1], u64) {
        (
            std::array::from_fn(|i| self.buckets.get(i).map_or(0, |b| b.load(Ordering::Relaxed))),
            self.sum_us.load(Ordering::Relaxed),
        )
    }

    /// The latency in microseconds below which `q` (0..=1) of the observations fall: the upper bound of the bucket
    /// that holds that rank (`None` without observations).
    pub fn quantile_us(counts: &[u64], q: f64) -> Option<u32> {
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(LATENCY_BUCKETS_US.get(i).copied().unwrap_or(u32::MAX));
            }
        }
        None
    }
}

/// What one batch of deliveries adds to the counters, summed in plain integers first: the connection adds it to
/// the shared atomics once per batch ([`Metrics::add_sent`]) rather than once per message.
#[derive(Debug, Default)]
pub struct SentTally {
    sent: [(u64, u64); 3],
    latency: [u64; LATENCY_BUCKETS_US.len() + 1],
    latency_sum_us: u64,
}

impl SentTally {
    /// Counts one PUBLISH of `bytes` bytes written.
    #[inline]
    pub fn sent(&mut self, qos: QoS, bytes: usize) {
        if let Some((n, b)) = self.sent.get_mut(qos as usize) {
            *n += 1;
            *b += bytes as u64;
        }
    }

    /// Records one read -> written latency.
    #[inline]
    pub fn written_after_us(&mut self, us: u32) {
        let i = LATENCY_BUCKETS_US.partition_point(|&b| b < us);
        if let Some(c) = self.latency.get_mut(i) {
            *c += 1;
        }
        self.latency_sum_us += u64::from(us);
    }
}

/// PUBLISH packets (count, bytes) one connection read, by QoS, not yet added to [`Metrics::received`]: the
/// connection adds them once per read batch ([`Metrics::add_received`]).
pub type ReceivedTally = [(u64, u64); 3];

/// Upper bounds of the journal's fsync duration buckets, in microseconds (100 µs to 10 s).
pub const FSYNC_BUCKETS_US: [u64; 13] =
    [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000, 10_000_000];

/// Upper bounds of the journal's records-per-fsync buckets.
pub const RECORDS_PER_FSYNC_BUCKETS: [u64; 12] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000];

/// A histogram of relaxed atomics over fixed upper bounds (inclusive; one more bucket above them all), for what
/// is observed off the message path (the journal's fsyncs).
#[derive(Debug)]
pub struct BoundedHistogram {
    bounds: &'static [u64],
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl BoundedHistogram {
    /// An empty histogram over `bounds` (ascending).
    pub fn new(bounds: &'static [u64]) -> Self {
        Self { bounds, counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(), sum: AtomicU64::new(0) }
    }

    /// Records one value.
    pub fn observe(&self, v: u64) {
        let i = self.bounds.partition_point(|&b| b < v);
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.sum.fetch_add(v, Ordering::Relaxed);
    }

    /// Counts per bucket (the last one above every bound) and the sum.
    pub fn get(&self) -> (Vec<u64>, u64) {
        (self.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect(), self.sum.load(Ordering::Relaxed))
    }
}

/// Why a listener refused a connection: the `reason` label of `mqtt_connections_refused_total`. The first ones close
/// the connection as it arrives; the others answer its CONNECT with a refusing CONNACK (MQTT 3 return codes count
/// as their MQTT 5 reason codes).
pub const REFUSAL_REASONS: [&str; 13] = [
    "connection_limit",
    "address_connection_limit",
    "address_connection_rate",
    "unsupported_protocol_version",
    "client_identifier_not_valid",
    "bad_username_or_password",
    "not_authorized",
    "server_unavailable",
    "server_busy",
    "bad_authentication_method",
    "quota_exceeded",
    "connection_rate_exceeded",
    "other_connack",
];

/// A refusal before CONNECT is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum ArrivalRefusal {
    /// `limits.max_connections` or the listener's `max_connections`.
    ConnectionLimit = 0,
    /// `limits.max_connections_per_address`.
    AddressConnectionLimit = 1,
    /// `limits.max_connection_rate_per_address`.
    AddressConnectionRate = 2,
}

/// The [`REFUSAL_REASONS`] index of a refusing CONNACK's reason code (MQTT 5 numbering).
fn connack_refusal(code: u8) -> usize {
    match code {
        0x84 => 3,
        0x85 => 4,
        0x86 => 5,
        0x87 => 6,
        0x88 => 7,
        0x89 => 8,
        0x8C => 9,
        0x97 => 10,
        0x9F => 11,
        _ => 12,
    }
}

/// Connections of one listener.
#[derive(Debug)]
pub struct ListenerMetrics {
    /// The `listener` label: its bound address.
    pub label: String,
    /// Connections open now.
    pub open: AtomicI64,
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections refused, by [`REFUSAL_REASONS`].
    refused: [AtomicU64; REFUSAL_REASONS.len()],
}

impl ListenerMetrics {
    fn new(label: String) -> Self {
        Self { label, open: AtomicI64::new(0), accepted: AtomicU64::new(0), refused: Default::default() }
    }

    /// Counts a connection closed as it arrived.
    pub fn refused_arrival(&self, why: ArrivalRefusal) {
        if let Some(c) = self.refused.get(why as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a CONNECT refused with a CONNACK of this reason code (MQTT 5 numbering).
    pub fn refused_connect(&self, code: u8) {
        if let Some(c) = self.refused.get(connack_refusal(code)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Refusals by reason label, in [`REFUSAL_REASONS`] order.
    pub fn refusals(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        REFUSAL_REASONS.into_iter().zip(self.refused.iter().map(|c| c.load(Ordering::Relaxed)))
    }
}

/// An open connection of a listener; counted down when dropped.
#[derive(Debug)]
pub struct OpenConnection(Arc<ListenerMetrics>);

impl OpenConnection {
    /// Counts an accepted connection as open until the result is dropped.
    pub fn new(listener: &Arc<ListenerMetrics>) -> Self {
        listener.accepted.fetch_add(1, Ordering::Relaxed);
        listener.open.fetch_add(1, Ordering::Relaxed);
        Self(listener.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The broker's counters beside the router's: everything the data path adds to.
///
/// With `http.metrics = false` ([`Metrics::disabled`]) the per-message work is skipped: the counters by QoS, the
/// delivery latencies and the drops by reason stay at zero, and `/metrics` says the metrics are off.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Per-message metrics are not kept.
    off: bool,
    /// PUBLISH packets received from clients.
    pub received: ByQos,
    /// PUBLISH packets written to clients.
    pub sent: ByQos,
    drops: [AtomicU64; DropReason::ALL.len()],
    /// PUBLISH read -> written to the subscriber's connection.
    pub latency_written: Histogram,
    /// PUBLISH read -> PUBACK (QoS 1) or PUBCOMP (QoS 2) from the subscriber.
    pub latency_acked: Histogram,
    listeners: Mutex<Vec<Arc<ListenerMetrics>>>,
}

impl Metrics {
    /// Counters that skip the per-message work (`http.metrics = false`).
    pub fn disabled() -> Self {
        Self { off: true, ..Self::default() }
    }

    /// Whether per-message metrics are kept.
    #[inline]
    pub fn enabled(&self) -> bool {
        !self.off
    }

    /// Now, when metrics are kept; else [`Stamp::NONE`] (no clock read).
    #[inline]
    pub fn stamp(&self) -> Stamp {
        if self.off { Stamp::NONE } else { Stamp::now() }
    }

    /// The stamp of `at`, a clock reading the caller took for a whole batch of packets, when metrics are kept;
    /// else [`Stamp::NONE`].
    #[inline]
    pub fn stamp_at(&self, at: Instant) -> Stamp {
        if self.off { Stamp::NONE } else { Stamp::at(at) }
    }

    /// Adds a connection's received PUBLISH packets and empties the tally.
    pub fn add_received(&self, t: &mut ReceivedTally) {
        for (i, (n, b)) in t.iter_mut().enumerate() {
            if *n > 0 {
                if let (Some(m), Some(by)) = (self.received.messages.get(i), self.received.bytes.get(i)) {
                    m.fetch_add(*n, Ordering::Relaxed);
                    by.fetch_add(*b, Ordering::Relaxed);
                }
                (*n, *b) = (0, 0);
            }
        }
    }

    /// Adds a batch's deliveries (only what it counted: an empty batch touches nothing).
    pub fn add_sent(&self, t: &SentTally) {
        for (i, (n, b)) in t.sent.iter().enumerate() {
            if *n > 0 {
                let (m, by) = (self.sent.messages.get(i), self.sent.bytes.get(i));
                if let (Some(m), Some(by)) = (m, by) {
                    m.fetch_add(*n, Ordering::Relaxed);
                    by.fetch_add(*b, Ordering::Relaxed);
                }
            }
        }
        let h = &self.latency_written;
        let mut any = false;
        for (c, n) in h.buckets.iter().zip(t.latency) {
            if n > 0 {
                c.fetch_add(n, Ordering::Relaxed);
                any = true;
            }
        }
        if any {
            h.sum_us.fetch_add(t.latency_sum_us, Ordering::Relaxed);
        }
    }

    /// Counts `n` dropped messages.
    pub fn drop_n(&self, reason: DropReason, n: u64) {
        if self.off {
            return;
        }
        if let Some(c) = self.drops.get(reason as usize) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Drops by reason, in [`DropReason::ALL`] order.
    pub fn drops(&self) -> [u64; DropReason::ALL.len()] {
        std::array::from_fn(|i| self.drops.get(i).map_or(0, |c| c.load(Ordering::Relaxed)))
    }

    /// The counters of the listener bound to `label` (made on first use; a listener served again keeps its counts).
    pub fn listener(&self, label: String) -> Arc<ListenerMetrics> {
        let mut all = self.listeners.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(l) = all.iter().find(|l| l.label == label) {
            return l.clone();
        }
        let l = Arc::new(ListenerMetrics::new(label));
        all.push(l.clone());
        l
    }

    /// Every listener's counters.
    pub fn listeners(&self) -> Vec<Arc<ListenerMetrics>> {
        self.listeners.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_wrap_and_latencies_land_in_their_bucket() {
        assert_eq!(Stamp(u32::MAX - 9).micros_until(Stamp(10)), Some(20));
        assert_eq!(Stamp::NONE.micros_until(Stamp::now()), None);
        assert_eq!(Stamp::now().micros_until(Stamp::NONE), None);
        // A millisecond past the epoch, so neither stamp is the "never 0" microsecond.
        let t = Instant::now() + std::time::Duration::from_millis(1);
        assert_eq!(Stamp::at(t).micros_until(Stamp::at(t + std::time::Duration::from_millis(3))), Some(3000));
        let h = Histogram::default();
        for us in [10, 50, 51, 2_000_000, u32::MAX] {
            h.observe_us(us);
        }
        let (counts, sum) = h.get();
        assert_eq!(counts[0], 2); // 10 and 50 (bounds are inclusive)
        assert_eq!(counts[1], 1);
        assert_eq!(counts[LATENCY_BUCKETS_US.len()], 1);
        assert_eq!(sum, 10 + 50 + 51 + 2_000_000 + u64::from(u32::MAX));
        assert_eq!(Histogram::quantile_us(&counts, 0.5), Some(100));
        assert_eq!(Histogram::quantile_us(&[0; 19], 0.5), None);
    }

    #[test]
    fn a_tally_adds_up_to_what_single_observations_would() {
        let (m, one) = (Metrics::default(), Metrics::default());
        let mut t = SentTally::default();
        for (qos, bytes, us) in [(QoS::AtMostOnce, 10, 40), (QoS::AtLeastOnce, 20, 60), (QoS::AtMostOnce, 5, 40)] {
            t.sent(qos, bytes);
            t.written_after_us(us);
            one.sent.add(qos, bytes);
            one.latency_written.observe_us(us);
        }
        m.add_sent(&t);
        assert_eq!(m.sent.get(), one.sent.get());
        assert_eq!(m.latency_written.get(), one.latency_written.get());
        assert_eq!(m.sent.get()[0], (2, 15));
    }

    #[test]
    fn bounded_histograms_put_values_in_their_bucket() {
        let h = BoundedHistogram::new(&RECORDS_PER_FSYNC_BUCKETS);
        for v in [1, 3, 5, 6, 9_999] {
            h.observe(v);
        }
        let (counts, sum) = h.get();
        assert_eq!(counts.len(), RECORDS_PER_FSYNC_BUCKETS.len() + 1);
        assert_eq!((counts[0], counts[2], counts[3], counts[12]), (1, 2, 1, 1));
        assert_eq!(sum, 1 + 3 + 5 + 6 + 9_999);
    }

    #[test]
    fn counters_by_reason_and_qos() {
        let m = Metrics::default();
        m.received.add(QoS::AtLeastOnce, 12);
        m.received.add(QoS::AtLeastOnce, 8);
        m.drop_n(DropReason::Expired, 3);
        assert_eq!(m.received.get()[1], (2, 20));
        assert_eq!(m.drops()[DropReason::Expired as usize], 3);
        let l = m.listener("127.0.0.1:1".into());
        l.refused_connect(0x86);
        l.refused_connect(0x01);
        l.refused_arrival(ArrivalRefusal::AddressConnectionRate);
        let refused: Vec<_> = l.refusals().filter(|(_, n)| *n > 0).collect();
        assert_eq!(refused, [("address_connection_rate", 1), ("bad_username_or_password", 1), ("other_connack", 1)]);
        let open = OpenConnection::new(&l);
        assert_eq!(m.listener("127.0.0.1:1".into()).open.load(Ordering::Relaxed), 1);
        drop(open);
        assert_eq!(l.open.load(Ordering::Relaxed), 0);
        assert_eq!(l.accepted.load(Ordering::Relaxed), 1);
    }
}
