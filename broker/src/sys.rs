//! The `$SYS` tree: the broker's own state as retained QoS 0 messages under Mosquitto's names, published every
//! `sys_interval` seconds (only the values that changed), so `mosquitto_sub -t '$SYS/#' -v` and the dashboards
//! written for Mosquitto work unchanged.
//!
//! The messages go through the router like any other, so subscribers get them only as the ACL lets them read
//! (`topic read $SYS/#`); clients cannot publish under `$SYS`. They are not journaled: the first tick after a
//! restart publishes them again.

use std::collections::HashMap;
use std::time::Duration;

use crate::metrics::Snapshot;

/// Whether a topic belongs to the `$SYS` tree (never journaled).
pub fn is_sys_topic(topic: &str) -> bool {
    topic.starts_with("$SYS/")
}

/// Mosquitto's load averages: exponentially weighted per-minute rates over 1, 5 and 15 minutes.
#[derive(Debug, Default, Clone, Copy)]
struct Load([f64; 3]);

const LOAD_WINDOWS: [(u64, &str); 3] = [(1, "1min"), (5, "5min"), (15, "15min")];

impl Load {
    /// Folds in `delta` events seen over `interval`.
    #[expect(clippy::cast_precision_loss)] // counts far below 2^52
    fn update(&mut self, delta: u64, interval: Duration) {
        let secs = interval.as_secs_f64().max(1e-3);
        let per_minute = delta as f64 * 60.0 / secs;
        for (avg, (minutes, _)) in self.0.iter_mut().zip(LOAD_WINDOWS) {
            let keep = (-secs / (minutes as f64 * 60.0)).exp();
            *avg = *avg * keep + per_minute * (1.0 - keep);
        }
    }
}

/// What the `$SYS` task remembers between ticks.
#[derive(Debug, Default)]
pub struct SysTree {
    /// The payload last published on each topic.
    published: HashMap<String, String>,
    /// The previous snapshot's counters, for the load averages.
    prev: Option<Snapshot>,
    loads: HashMap<&'static str, Load>,
    /// The most clients connected at once since start.
    max_clients: usize,
}

impl SysTree {
    /// The `$SYS` topics and payloads for this snapshot, taken `interval` after the previous one; only those whose
    /// payload changed since they were last returned.
    pub fn tick(&mut self, s: &Snapshot, interval: Duration) -> Vec<(String, String)> {
        self.max_clients = self.max_clients.max(s.clients_connected);
        let mut all: Vec<(String, String)> = vec![
            ("version".into(), format!("edge-mqtt version {}", env!("CARGO_PKG_VERSION"))),
            ("uptime".into(), format!("{} seconds", s.uptime.as_secs())),
            ("clients/connected".into(), s.clients_connected.to_string()),
            ("clients/active".into(), s.clients_connected.to_string()),
            ("clients/disconnected".into(), s.sessions_offline.to_string()),
            ("clients/inactive".into(), s.sessions_offline.to_string()),
            ("clients/total".into(), (s.sessions_online + s.sessions_offline).to_string()),
            ("clients/maximum".into(), self.max_clients.to_string()),
            ("messages/received".into(), s.messages_received().to_string()),
            ("messages/sent".into(), s.messages_sent().to_string()),
            ("publish/messages/received".into(), s.messages_received().to_string()),
            ("publish/messages/sent".into(), s.messages_sent().to_string()),
            ("publish/messages/dropped".into(), s.drops.iter().sum::<u64>().to_string()),
            ("messages/stored".into(), (s.retained_messages + s.queued_messages).to_string()),
            ("store/messages/count".into(), (s.retained_messages + s.queued_messages).to_string()),
            ("store/messages/bytes".into(), (s.retained_bytes + s.queued_bytes).to_string()),
            ("bytes/received".into(), s.bytes_received().to_string()),
            ("bytes/sent".into(), s.bytes_sent().to_string()),
            ("publish/bytes/received".into(), s.bytes_received().to_string()),
            ("publish/bytes/sent".into(), s.bytes_sent().to_string()),
            ("subscriptions/count".into(), s.subscriptions.to_string()),
            ("retained messages/count".into(), s.retained_messages.to_string()),
        ];
        all.extend(bridge_topics(&s.bridges));
        let prev = self.prev.take().unwrap_or_else(|| Snapshot { uptime: s.uptime, ..Snapshot::default() });
        let counters: [(&'static str, u64, u64); 4] = [
            ("messages/received", s.messages_received(), prev.messages_received()),
            ("messages/sent", s.messages_sent(), prev.messages_sent()),
            ("bytes/received", s.bytes_received(), prev.bytes_received()),
            ("bytes/sent", s.bytes_sent(), prev.bytes_sent()),
        ];
        for (name, now, before) in counters {
            let load = self.loads.entry(name).or_default();
            load.update(now.saturating_sub(before), interval);
            for (avg, (_, window)) in load.0.iter().zip(LOAD_WINDOWS) {
                all.push((format!("load/{name}/{window}"), format!("{avg:.2}")));
            }
        }
        self.prev = Some(s.clone());
        let mut changed = Vec::new();
        for (name, value) in all {
            let topic = format!("$SYS/broker/{name}");
            if self.published.get(&topic) != Some(&value) {
                self.published.insert(topic.clone(), value.clone());
                changed.push((topic, value));
            }
        }
        changed
    }
}

/// Each bridge under Mosquitto's `$SYS/broker/connection/<remote client id>/state` (`1` connected, `0` not), and
/// beside it what Mosquitto does not publish: the store-and-forward queue (`queued/messages`, `queued/bytes`) and
/// the counters `forwarded` and `dropped`. A client identifier that cannot be a topic level (`+`, `#`) is left out.
fn bridge_topics(bridges: &[crate::bridge::BridgeStats]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for b in bridges.iter().filter(|b| !b.client_id.is_empty() && !b.client_id.contains(['+', '#', '\0'])) {
        let at = |leaf: &str| format!("connection/{}/{leaf}", b.client_id);
        out.push((at("state"), u8::from(b.connected).to_string()));
        out.push((at("queued/messages"), b.queued_messages.to_string()));
        out.push((at("queued/bytes"), b.queued_bytes.to_string()));
        out.push((at("forwarded"), b.forwarded_messages.to_string()));
        out.push((at("dropped"), b.dropped_messages.to_string()));
    }
    out
}

impl crate::Broker {
    /// Publishes the `$SYS` tree every `every` (the values that changed) until `stop`.
    pub(crate) async fn publish_sys(self, every: Duration, stop: tokio_util::sync::CancellationToken) {
        let mut tree = SysTree::default();
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                now = interval.tick() => {
                    let changed = tree.tick(&self.metrics_snapshot(), now.duration_since(last).max(every));
                    last = now;
                    let mut router = self.shared.ctx.router();
                    for (topic, payload) in changed {
                        let msg = crate::message::Message::new(
                            bytes::Bytes::from(topic),
                            bytes::Bytes::from(payload),
                            mqtt_codec::QoS::AtMostOnce,
                            true,
                        );
                        router.publish(msg, None, now);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mosquitto_names_published_when_they_change_and_loads_per_minute() {
        let mut t = SysTree::default();
        let mut s = Snapshot { clients_connected: 3, ..Snapshot::default() };
        s.received[0] = (600, 6000);
        let first = t.tick(&s, Duration::from_secs(10));
        let get = |v: &[(String, String)], k: &str| v.iter().find(|(t, _)| t == k).map(|(_, p)| p.clone());
        assert_eq!(get(&first, "$SYS/broker/clients/connected").as_deref(), Some("3"));
        assert_eq!(get(&first, "$SYS/broker/messages/received").as_deref(), Some("600"));
        assert_eq!(get(&first, "$SYS/broker/retained messages/count").as_deref(), Some("0"));
        assert!(get(&first, "$SYS/broker/version").unwrap().starts_with("edge-mqtt version "));
        // 600 messages in 10 s is 3600 a minute; the 1-minute average moves 1 - e^(-1/6) of the way there.
        let one = get(&first, "$SYS/broker/load/messages/received/1min").unwrap();
        assert_eq!(one, format!("{:.2}", 3600.0 * (1.0 - (-10.0f64 / 60.0).exp())));
        // Nothing changed: nothing but the decaying loads is published again.
        let second = t.tick(&s, Duration::from_secs(10));
        assert_eq!(get(&second, "$SYS/broker/clients/connected"), None);
        assert_eq!(get(&second, "$SYS/broker/version"), None);
        assert!(get(&second, "$SYS/broker/load/messages/received/1min").is_some());
        assert!(second.iter().all(|(topic, _)| is_sys_topic(topic)));
    }

    #[test]
    fn bridges_under_mosquittos_connection_state_topic() {
        let mut t = SysTree::default();
        let bridge = crate::bridge::BridgeStats {
            name: "cloud".into(),
            client_id: "gateway-17".into(),
            queued_messages: 4,
            queued_bytes: 400,
            ..crate::bridge::BridgeStats::default()
        };
        let odd = crate::bridge::BridgeStats { name: "odd".into(), client_id: "a+b".into(), ..bridge.clone() };
        let mut s = Snapshot { bridges: vec![bridge, odd], ..Snapshot::default() };
        let get = |v: &[(String, String)], k: &str| v.iter().find(|(t, _)| t == k).map(|(_, p)| p.clone());
        let first = t.tick(&s, Duration::from_secs(10));
        assert_eq!(get(&first, "$SYS/broker/connection/gateway-17/state").as_deref(), Some("0"));
        assert_eq!(get(&first, "$SYS/broker/connection/gateway-17/queued/messages").as_deref(), Some("4"));
        assert_eq!(get(&first, "$SYS/broker/connection/gateway-17/queued/bytes").as_deref(), Some("400"));
        assert!(!first.iter().any(|(t, _)| t.contains("a+b")), "{first:?}");
        s.bridges[0].connected = true;
        s.bridges[0].queued_messages = 0;
        let second = t.tick(&s, Duration::from_secs(10));
        assert_eq!(get(&second, "$SYS/broker/connection/gateway-17/state").as_deref(), Some("1"));
        assert_eq!(get(&second, "$SYS/broker/connection/gateway-17/queued/messages").as_deref(), Some("0"));
        assert_eq!(get(&second, "$SYS/broker/connection/gateway-17/queued/bytes"), None, "unchanged");
    }
}
