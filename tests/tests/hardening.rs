//! Hostile clients against the `broker` binary: each attack is bounded, and a well-behaved client connected at
//! the same time still publishes and receives.

use std::path::PathBuf;

use tests::process::BrokerProcess;
use tests::raw::{ConnectOpts, Event, Qos, RawClient, Rx, Version, publish_bytes};
use tests::{WAIT, unique};

/// Starts the broker binary with this TOML configuration (on a port of its own). `None`: the binary is missing
/// and that is allowed here (a skip).
fn start_with(toml: &str) -> Option<(BrokerProcess, PathBuf)> {
    let path = std::env::temp_dir().join(format!("{}.toml", unique("hardening-config")));
    std::fs::write(&path, toml).unwrap();
    let b = BrokerProcess::start(&["--config", path.to_str().unwrap()])?;
    Some((b, path))
}

/// A well-behaved client: subscribes to a topic of its own, publishes to it at QoS 1 and gets each message back.
struct Bystander {
    c: RawClient,
    topic: String,
    sent: u32,
}

impl Bystander {
    async fn connect(addr: std::net::SocketAddr) -> Self {
        let mut c = RawClient::connect_v311(addr, &unique("bystander")).await;
        let topic = unique("bystander/t");
        c.subscribe_one(&topic, Qos::AtLeastOnce).await;
        Self { c, topic, sent: 0 }
    }

    /// Publishes one message and asserts it is acknowledged and delivered back.
    async fn round_trip(&mut self) {
        self.sent += 1;
        let payload = format!("m{}", self.sent);
        let got = self.c.publish_acked(&self.topic, payload.as_bytes(), Qos::AtLeastOnce, false).await;
        let mut got: Vec<String> = got.iter().map(|p| p.text()).collect();
        while got.is_empty() {
            match self.c.recv().await {
                Rx::Publish(p) => {
                    if let Some(id) = p.pid {
                        self.c.puback(id).await;
                    }
                    got.push(p.text());
                }
                other => panic!("bystander: unexpected {other:?}"),
            }
        }
        assert_eq!(got, vec![payload], "the bystander's own message, once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribe_with_too_many_filters_closes_that_connection_only() {
    let Some((b, config)) = start_with("[limits]\nmax_filters_per_subscribe = 16\n") else { return };
    let mut bystander = Bystander::connect(b.addr).await;
    let filters: Vec<String> = (0..17).map(|i| format!("many/{i}")).collect();
    let filters: Vec<(&str, Qos)> = filters.iter().map(|f| (f.as_str(), Qos::AtMostOnce)).collect();

    // At the cap: granted.
    let (mut fine, _) = RawClient::connect(b.addr, &ConnectOpts::new(&unique("at-cap")).version(Version::V5)).await;
    assert_eq!(fine.subscribe(&filters[..16]).await, vec![0; 16]);

    // One more: MQTT 5 is told Quota exceeded and closed; MQTT 3.1.1 is closed.
    let (mut v5, _) = RawClient::connect(b.addr, &ConnectOpts::new(&unique("over-v5")).version(Version::V5)).await;
    send_subscribe(&mut v5, &filters).await;
    let seen = v5.expect_closed(WAIT).await;
    assert!(
        seen.iter().any(|p| matches!(p, Rx::Other(s) if s.contains("QuotaExceeded"))),
        "DISCONNECT 0x97 expected, got {seen:?}"
    );
    let mut v3 = RawClient::connect_v311(b.addr, &unique("over-v3")).await;
    send_subscribe(&mut v3, &filters).await;
    let seen = v3.expect_closed(WAIT).await;
    assert!(!seen.iter().any(|p| matches!(p, Rx::SubAck { .. })), "no SUBACK: {seen:?}");

    bystander.round_trip().await;
    fine.assert_alive().await;
    let _ = std::fs::remove_file(config);
}

/// Sends a SUBSCRIBE without waiting for its SUBACK.
async fn send_subscribe(c: &mut RawClient, filters: &[(&str, Qos)]) {
    use mqtt_codec::{List, Packet, PacketId, Properties, Subscribe, Subscription, SubscriptionOptions, TopicFilter};
    let subs: Vec<Subscription<'_>> = filters
        .iter()
        .map(|(f, q)| Subscription { filter: TopicFilter::new(f).unwrap(), options: SubscriptionOptions::qos(*q) })
        .collect();
    let id = c.next_pid();
    let packet = Subscribe {
        packet_id: PacketId::new(id).unwrap(),
        properties: Properties::empty(),
        subscriptions: List::from_slice(&subs),
    };
    c.send(&Packet::Subscribe(packet)).await;
}

/// One client fills the retained store, then subscribes to `#` with the filter repeated a hundred times in one
/// packet, and reads slowly. The walk over the store goes in steps at its reading pace: meanwhile another client
/// publishes and receives; the wide subscriber gets every retained message exactly once (none dropped for its
/// full queue, the repeated filter walked once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wide_subscribe_over_many_retained_messages_holds_nobody_up_and_loses_nothing() {
    const RETAINED: usize = 20_000;
    let Some((b, config)) =
        start_with(&format!("[limits]\nmax_retained_messages = {RETAINED}\nmax_queued_messages = 1000\n"))
    else {
        return;
    };
    let prefix = unique("wide");
    let mut filler = RawClient::connect_v311(b.addr, &unique("filler")).await;
    let mut bulk = Vec::new();
    for i in 0..RETAINED - 1 {
        bulk.extend(publish_bytes(Version::V311, &format!("{prefix}/{i:05}"), b"r", Qos::AtMostOnce, 0, true, false));
    }
    filler.send_raw(&bulk).await;
    // The last one at QoS 1: once it is acknowledged, every earlier one on this connection is stored.
    let last = format!("{prefix}/{:05}", RETAINED - 1);
    filler.publish_acked(&last, b"r", Qos::AtLeastOnce, true).await;

    let mut bystander = Bystander::connect(b.addr).await;
    let mut wide = RawClient::connect_v311(b.addr, &unique("wide-sub")).await;
    let codes = wide.subscribe(&[("#", Qos::AtMostOnce); 100]).await;
    assert_eq!(codes, vec![0; 100]);
    // The wide subscriber reads nothing for a while; the bystander is served meanwhile.
    for _ in 0..20 {
        bystander.round_trip().await;
    }
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    while seen.len() < RETAINED {
        match wide.next_event(WAIT).await {
            Event::Packet(Rx::Publish(p)) if p.topic.starts_with(&prefix) => {
                assert!(p.retain, "sent as retained");
                total += 1;
                seen.insert(p.topic);
                if total % 5_000 == 0 {
                    bystander.round_trip().await;
                }
            }
            Event::Packet(Rx::Publish(_)) => {} // the bystander's messages match `#` too
            other => panic!("after {} of {RETAINED} retained messages: {other:?}", seen.len()),
        }
    }
    assert_eq!(total, RETAINED, "each retained message once");
    let extra = wide.assert_alive().await;
    assert!(extra.iter().all(|p| !p.topic.starts_with(&prefix)), "no retained message twice: {extra:?}");
    bystander.round_trip().await;
    let _ = std::fs::remove_file(config);
}
