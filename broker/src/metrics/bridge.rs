//! The bridges' part of `/metrics`: one sample per bridge in each family, labelled `bridge` with the name from the
//! configuration (so the label set is bounded by the config, never by the network).

use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use crate::bridge::BridgeStats;

fn n(v: usize) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// Which value of a bridge a family shows, and as what.
type Family = (&'static str, &'static str, Option<Unit>, MetricType, fn(&BridgeStats) -> u64);

fn families() -> [Family; 7] {
    [
        (
            "mqtt_bridge_connected",
            "1 while the bridge's upstream connection is up, else 0.",
            None,
            MetricType::Gauge,
            |b| u64::from(b.connected),
        ),
        (
            "mqtt_bridge_queued_messages",
            "Messages waiting in the bridge's store-and-forward queue (behind its in-flight window).",
            None,
            MetricType::Gauge,
            |b| n(b.queued_messages),
        ),
        (
            "mqtt_bridge_queued",
            "Bytes of those messages (bound: max_queue_bytes).",
            Some(Unit::Bytes),
            MetricType::Gauge,
            |b| n(b.queued_bytes),
        ),
        (
            "mqtt_bridge_inflight_messages",
            "Messages sent upstream, not yet acknowledged.",
            None,
            MetricType::Gauge,
            |b| n(b.inflight_messages),
        ),
        (
            "mqtt_bridge_forwarded_messages",
            "Messages the upstream acknowledged (QoS 1 and 2) or that were sent to it (QoS 0).",
            None,
            MetricType::Counter,
            |b| b.forwarded_messages,
        ),
        (
            "mqtt_bridge_dropped_messages",
            "Messages the bridge dropped: its overflow policy, or too large for the queue or the upstream.",
            None,
            MetricType::Counter,
            |b| b.dropped_messages,
        ),
        (
            "mqtt_bridge_received_messages",
            "Messages received from the upstream and published here.",
            None,
            MetricType::Counter,
            |b| b.received_messages,
        ),
    ]
}

/// Writes the bridge families; nothing when no bridge is configured.
pub(super) fn encode(e: &mut DescriptorEncoder<'_>, bridges: &[BridgeStats]) -> std::fmt::Result {
    if bridges.is_empty() {
        return Ok(());
    }
    for (name, help, unit, kind, value) in families() {
        let mut m = e.encode_descriptor(name, help, unit.as_ref(), kind)?;
        for b in bridges {
            let labels = [("bridge", b.name.as_str())];
            let v = value(b);
            let mut sample = m.encode_family(&labels)?;
            match kind {
                MetricType::Counter => sample.encode_counter::<NoLabelSet, _, u64>(&v, None)?,
                _ => sample.encode_gauge(&i64::try_from(v).unwrap_or(i64::MAX))?,
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_labelled_sample_per_bridge_in_each_family() {
        let bridges = [
            BridgeStats {
                name: "cloud".into(),
                connected: true,
                queued_messages: 3,
                queued_bytes: 300,
                forwarded_messages: 7,
                ..BridgeStats::default()
            },
            BridgeStats { name: "backup".into(), dropped_messages: 2, ..BridgeStats::default() },
        ];
        let snap = crate::metrics::Snapshot { bridges: bridges.to_vec(), ..crate::metrics::Snapshot::default() };
        let text = crate::metrics::export::encode(&snap, &crate::metrics::Metrics::default());
        for line in [
            "mqtt_bridge_connected{bridge=\"cloud\"} 1",
            "mqtt_bridge_connected{bridge=\"backup\"} 0",
            "mqtt_bridge_queued_messages{bridge=\"cloud\"} 3",
            "mqtt_bridge_queued_bytes{bridge=\"cloud\"} 300",
            "mqtt_bridge_forwarded_messages_total{bridge=\"cloud\"} 7",
            "mqtt_bridge_dropped_messages_total{bridge=\"backup\"} 2",
            "mqtt_bridge_received_messages_total{bridge=\"backup\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        let none =
            crate::metrics::export::encode(&crate::metrics::Snapshot::default(), &crate::metrics::Metrics::default());
        assert!(!none.contains("mqtt_bridge_"), "{none}");
    }
}
