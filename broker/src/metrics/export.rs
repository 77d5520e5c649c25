//! `/metrics`: a [`Snapshot`] in the OpenMetrics text format (which Prometheus scrapes), through
//! `prometheus-client`. Names follow the Prometheus conventions: base units in the name (`_seconds`, `_bytes`),
//! `_total` on counters, and no per-client labels (their number would be unbounded).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use super::{
    DropReason, FSYNC_BUCKETS_US, LATENCY_BUCKETS_US, ListenerMetrics, Metrics, RECORDS_PER_FSYNC_BUCKETS, Snapshot,
};

/// The content type of [`encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The OpenMetrics text of a snapshot and the live counters.
pub fn encode(snap: &Snapshot, metrics: &Metrics) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape { snap: snap.clone(), listeners: metrics.listeners() }));
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

#[derive(Debug)]
struct Scrape {
    snap: Snapshot,
    listeners: Vec<Arc<ListenerMetrics>>,
}

const QOS: [&str; 3] = ["0", "1", "2"];

fn gauge(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, unit: Option<&Unit>, v: u64) -> std::fmt::Result {
    let g = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
    g.encode(e.encode_descriptor(name, help, unit, g.metric_type())?)
}

fn counter(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, unit: Option<&Unit>, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, unit, c.metric_type())?)
}

/// A counter family with one label.
fn counters<'a>(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    label: &str,
    values: impl IntoIterator<Item = (&'a str, u64)>,
) -> std::fmt::Result {
    let mut m = e.encode_descriptor(name, help, unit, MetricType::Counter)?;
    for (value, n) in values {
        let labels = [(label, value)];
        m.encode_family(&labels)?.encode_counter::<NoLabelSet, _, u64>(&n, None)?;
    }
    Ok(())
}

fn usize_u64(v: usize) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

#[expect(clippy::cast_precision_loss)] // microsecond sums far below 2^52
fn latency(e: &mut DescriptorEncoder<'_>, snap: &Snapshot) -> std::fmt::Result {
    let mut m = e.encode_descriptor(
        "mqtt_delivery_latency",
        "Time from reading a PUBLISH to writing it to a subscriber's connection (stage=written), and to the \
         subscriber's PUBACK or PUBCOMP (stage=acknowledged, QoS 1 and 2). Retained messages sent on subscribe \
         are not counted.",
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?;
    for (stage, (counts, sum_us)) in [("written", &snap.latency_written), ("acknowledged", &snap.latency_acked)] {
        // Per-bucket counts: the encoder makes them cumulative; f64::MAX is its +Inf bound.
        let buckets: Vec<(f64, u64)> = counts
            .iter()
            .enumerate()
            .map(|(i, c)| (LATENCY_BUCKETS_US.get(i).map_or(f64::MAX, |us| f64::from(*us) / 1e6), *c))
            .collect();
        let count = counts.iter().sum();
        let labels = [("stage", stage)];
        m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(*sum_us as f64 / 1e6, count, &buckets, None)?;
    }
    Ok(())
}

/// A histogram without labels from per-bucket counts over `bounds` (scaled by `scale`) and its sum.
#[expect(clippy::cast_precision_loss)] // bounds and sums far below 2^52
fn histogram(
    e: &mut DescriptorEncoder<'_>,
    (name, help, unit): (&str, &str, Option<&Unit>),
    bounds: &[u64],
    scale: f64,
    (counts, sum): (&[u64], f64),
) -> std::fmt::Result {
    let buckets: Vec<(f64, u64)> =
        counts.iter().enumerate().map(|(i, c)| (bounds.get(i).map_or(f64::MAX, |b| *b as f64 * scale), *c)).collect();
    let mut m = e.encode_descriptor(name, help, unit, MetricType::Histogram)?;
    m.encode_histogram::<NoLabelSet>(sum, counts.iter().sum(), &buckets, None)
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> std::fmt::Result {
        let s = &self.snap;
        let e = &mut e;
        gauge(e, "mqtt_uptime", "Time since the broker started.", Some(&Unit::Seconds), s.uptime.as_secs())?;
        let mut m = e.encode_descriptor("mqtt_connections", "Connections open now.", None, MetricType::Gauge)?;
        for l in &self.listeners {
            let labels = [("listener", l.label.as_str())];
            m.encode_family(&labels)?.encode_gauge(&l.open.load(Ordering::Relaxed))?;
        }
        let mut m =
            e.encode_descriptor("mqtt_connections_accepted", "Connections accepted.", None, MetricType::Counter)?;
        for l in &self.listeners {
            let labels = [("listener", l.label.as_str())];
            m.encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(&l.accepted.load(Ordering::Relaxed), None)?;
        }
        let mut m = e.encode_descriptor(
            "mqtt_connections_refused",
            "Connections refused, by listener and reason: closed as they arrived (connection_limit: \
             limits.max_connections or the listener's max_connections; address_connection_limit, \
             address_connection_rate: the per-address limits), or CONNECT answered with a refusing CONNACK (its MQTT 5 \
             reason code; MQTT 3 return codes count as theirs; other_connack: any other).",
            None,
            MetricType::Counter,
        )?;
        for l in &self.listeners {
            for (reason, n) in l.refusals() {
                let labels = [("listener", l.label.as_str()), ("reason", reason)];
                m.encode_family(&labels)?.encode_counter::<NoLabelSet, _, u64>(&n, None)?;
            }
        }
        gauge(
            e,
            "mqtt_clients_connected",
            "Clients connected now (CONNECT accepted).",
            None,
            usize_u64(s.clients_connected),
        )?;
        let mut m = e.encode_descriptor("mqtt_sessions", "Sessions held, by state.", None, MetricType::Gauge)?;
        for (state, n) in [("online", s.sessions_online), ("offline", s.sessions_offline)] {
            let labels = [("state", state)];
            m.encode_family(&labels)?.encode_gauge(&usize_u64(n))?;
        }
        gauge(e, "mqtt_subscriptions", "Subscriptions of every session.", None, usize_u64(s.subscriptions))?;
        let qos = |v: &[(u64, u64); 3], bytes: bool| {
            QOS.into_iter().zip(v.iter().map(move |(n, b)| if bytes { *b } else { *n })).collect::<Vec<_>>()
        };
        counters(
            e,
            "mqtt_messages_received",
            "PUBLISH packets received from clients.",
            None,
            "qos",
            qos(&s.received, false),
        )?;
        counters(
            e,
            "mqtt_received",
            "Bytes of the PUBLISH packets received.",
            Some(&Unit::Bytes),
            "qos",
            qos(&s.received, true),
        )?;
        counters(e, "mqtt_messages_sent", "PUBLISH packets written to clients.", None, "qos", qos(&s.sent, false))?;
        counters(
            e,
            "mqtt_sent",
            "Bytes of the PUBLISH packets written.",
            Some(&Unit::Bytes),
            "qos",
            qos(&s.sent, true),
        )?;
        let drops = DropReason::ALL.iter().map(|r| r.label()).zip(s.drops.iter().copied());
        counters(
            e,
            "mqtt_messages_dropped",
            "Messages that did not reach a subscriber (or anyone), by reason.",
            None,
            "reason",
            drops,
        )?;
        gauge(
            e,
            "mqtt_message_memory",
            "Message bytes held for queues, in-flight windows, retained messages and wills (the memory budget).",
            Some(&Unit::Bytes),
            usize_u64(s.memory_used),
        )?;
        gauge(
            e,
            "mqtt_message_memory_limit",
            "limits.max_message_memory (0: no limit).",
            Some(&Unit::Bytes),
            usize_u64(s.memory_limit),
        )?;
        gauge(e, "mqtt_retained_messages", "Retained messages held.", None, usize_u64(s.retained_messages))?;
        gauge(e, "mqtt_retained", "Bytes of the retained messages.", Some(&Unit::Bytes), usize_u64(s.retained_bytes))?;
        gauge(
            e,
            "mqtt_queued_messages",
            "Messages waiting in every session's queue.",
            None,
            usize_u64(s.queued_messages),
        )?;
        gauge(
            e,
            "mqtt_queued",
            "Bytes waiting in every session's queue.",
            Some(&Unit::Bytes),
            usize_u64(s.queued_bytes),
        )?;
        let longest = s.longest_queues.first().map_or(0, |(_, n)| *n);
        gauge(e, "mqtt_queue_longest_messages", "Messages in the longest session queue.", None, usize_u64(longest))?;
        gauge(
            e,
            "mqtt_inflight_messages",
            "QoS 1 and 2 messages sent and not yet acknowledged.",
            None,
            usize_u64(s.inflight_messages),
        )?;
        latency(e, s)?;
        super::bridge::encode(e, &s.bridges)?;
        if let Some(j) = &s.journal {
            counter(e, "mqtt_journal_fsyncs", "fsyncs of the journal.", None, j.fsyncs)?;
            counter(
                e,
                "mqtt_journal_fsynced_records",
                "Records made durable by those fsyncs (records per fsync: the ratio of the rates).",
                None,
                j.fsynced_records,
            )?;
            #[expect(clippy::cast_precision_loss)]
            let sum = ConstCounter::new(j.fsync_nanos_sum as f64 / 1e9);
            sum.encode(e.encode_descriptor(
                "mqtt_journal_fsync_duration",
                "Time spent in fsync (mean: the ratio of its rate to the fsyncs' rate).",
                Some(&Unit::Seconds),
                sum.metric_type(),
            )?)?;
            #[expect(clippy::cast_precision_loss)]
            let max = ConstGauge::new(j.fsync_nanos_max as f64 / 1e9);
            max.encode(e.encode_descriptor(
                "mqtt_journal_fsync_max",
                "The longest fsync since start.",
                Some(&Unit::Seconds),
                max.metric_type(),
            )?)?;
            #[expect(clippy::cast_precision_loss)]
            let (fsync_sum, records_sum) = (j.fsync_nanos_sum as f64 / 1e9, j.fsynced_records as f64);
            histogram(
                e,
                ("mqtt_journal_fsync_latency", "Duration of each fsync of the journal.", Some(&Unit::Seconds)),
                &FSYNC_BUCKETS_US,
                1e-6,
                (&j.fsync_us_buckets, fsync_sum),
            )?;
            histogram(
                e,
                (
                    "mqtt_journal_records_per_fsync",
                    "Records each fsync made durable (group commit; a message for a persistent session is one \
                     record when routed, one when sent, one when acknowledged).",
                    None,
                ),
                &RECORDS_PER_FSYNC_BUCKETS,
                1.0,
                (&j.records_per_fsync_buckets, records_sum),
            )?;
            counter(e, "mqtt_journal_appended_records", "Records appended to the journal.", None, j.appended_records)?;
            counter(
                e,
                "mqtt_journal_refused_appends",
                "Appends refused by persistence.max_bytes.",
                None,
                j.refused_appends,
            )?;
            gauge(e, "mqtt_journal", "Bytes of the journal's files.", Some(&Unit::Bytes), j.bytes_on_disk)?;
        }
        Ok(())
    }
}
