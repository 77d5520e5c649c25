//! The user-level flows with a real third-party client, rumqttc (MQTT 3.1.1): QoS 0/1/2 round trips, QoS 2 exactly
//! once across dropped connections, redelivery on reconnect, retained messages, the will on keep alive expiry,
//! persistent-session queueing, session takeover and the queue-full policy.

use std::time::{Duration, Instant};

use mqtt_codec::PacketType;
use rumqttc::{Packet, QoS};
use tests::client::{self, Ev, options};
use tests::proxy::Proxy;
use tests::{Settings, WAIT, start_broker, start_default_broker, unique};

const QUIET: Duration = Duration::from_millis(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos_0_1_2_round_trips() {
    let b = start_default_broker().await;
    let topic = unique("rq/round");
    let (mut sub, present) = client::connect(options(b.addr, &unique("sub")), false).await;
    assert!(!present);
    assert_eq!(sub.subscribe(&topic, QoS::ExactlyOnce).await, Some(QoS::ExactlyOnce));
    let (mut publisher, _) = client::connect(options(b.addr, &unique("pub")), false).await;
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let payload = format!("{qos:?}");
        publisher.publish(&topic, qos, false, payload.clone()).await;
        let p = sub.next_publish().await;
        assert_eq!(
            (p.topic.as_str(), &p.payload[..], p.qos, p.retain),
            (topic.as_str(), payload.as_bytes(), qos, false)
        );
    }
    sub.expect_no_publish(QUIET).await;
    // rumqttc completed every flow: nothing left in flight at the broker.
    let stats = b.wait_stats("all deliveries", |s| s.messages_delivered == 3).await;
    assert_eq!(stats.messages_received, 3);
    publisher.disconnect().await;
    sub.disconnect().await;
    b.wait_stats("both clients gone", |s| s.clients_connected == 0 && s.sessions == 0).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_exactly_once_across_dropped_connections() {
    let b = start_default_broker().await;
    let topic = unique("rq/once");
    let (mut sub, _) = client::connect(options(b.addr, &unique("sub")), false).await;
    sub.subscribe(&topic, QoS::ExactlyOnce).await;

    let proxy = Proxy::start(b.addr).await;
    let mut o = options(proxy.addr, &unique("pub"));
    o.set_clean_session(false);
    let (mut publisher, _) = client::connect(o, true).await;

    // 1. The broker's PUBREC is lost with the connection: rumqttc resends the PUBLISH after reconnecting.
    // 2. The client's PUBREL is lost with the connection: rumqttc resends the PUBREL after reconnecting.
    for (n, cut) in [(1, "server PUBREC"), (2, "client PUBREL")] {
        if n == 1 {
            proxy.cut_on_server_packet(PacketType::PubRec);
        } else {
            proxy.cut_on_client_packet(PacketType::PubRel);
        }
        publisher.publish_nowait(&topic, QoS::ExactlyOnce, false, format!("message {n}")).await;
        let mut errors = 0;
        loop {
            match publisher.next().await {
                Ev::Err(_) => errors += 1,
                Ev::In(Packet::ConnAck(a)) => assert!(a.session_present, "the session must be resumed"),
                Ev::In(Packet::PubComp(_)) => break,
                Ev::In(_) => {}
            }
        }
        assert_eq!((proxy.cuts(), errors), (n, 1), "{cut}: the connection was cut once");
        let p = sub.next_publish().await;
        assert_eq!(p.payload, format!("message {n}").as_bytes());
        sub.expect_no_publish(QUIET).await;
    }
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_messages_are_redelivered_on_reconnect() {
    let b = start_default_broker().await;
    let id = unique("redeliver");
    let topic = unique("rq/redeliver");
    let mut o = options(b.addr, &id);
    o.set_clean_session(false);
    o.set_manual_acks(true);
    let (mut sub, _) = client::connect(o.clone(), false).await;
    sub.subscribe(&topic, QoS::AtLeastOnce).await;
    let (mut publisher, _) = client::connect(options(b.addr, &unique("pub")), false).await;
    publisher.publish(&topic, QoS::AtLeastOnce, false, "ack me").await;
    let first = sub.next_publish().await;
    assert!(!first.dup);
    // The application crashes before acknowledging.
    sub.kill().await;

    let (mut sub, present) = client::connect(o, false).await;
    assert!(present);
    let again = sub.next_publish().await;
    assert_eq!((&again.payload[..], again.dup, again.pkid), (&b"ack me"[..], true, first.pkid));
    within_ack(&sub, &again).await;
    sub.expect_no_publish(QUIET).await;
    b.wait_session(&id, "nothing in flight", |s| s.inflight_messages == 0).await;
    b.shutdown().await;
}

async fn within_ack(c: &client::Client, p: &rumqttc::Publish) {
    tests::within("ack", c.client.ack(p)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_set_replace_clear() {
    let b = start_default_broker().await;
    let topic = unique("rq/retained");
    let (mut publisher, _) = client::connect(options(b.addr, &unique("pub")), false).await;
    publisher.publish(&topic, QoS::AtLeastOnce, true, "first").await;
    publisher.publish(&topic, QoS::AtLeastOnce, true, "second").await;

    let (mut a, _) = client::connect(options(b.addr, &unique("a")), false).await;
    a.subscribe(&topic, QoS::AtLeastOnce).await;
    let p = a.next_publish().await;
    assert_eq!((&p.payload[..], p.retain), (&b"second"[..], true));
    a.expect_no_publish(QUIET).await;

    publisher.publish(&topic, QoS::AtLeastOnce, true, "").await;
    // The live subscriber sees the empty message; a late one sees nothing.
    let cleared = a.next_publish().await;
    assert!(cleared.payload.is_empty());
    b.wait_stats("the retained message to be cleared", |s| s.retained_messages == 0).await;
    let (mut late, _) = client::connect(options(b.addr, &unique("late")), false).await;
    late.subscribe(&topic, QoS::AtLeastOnce).await;
    late.expect_no_publish(QUIET).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_on_keepalive_expiry() {
    let b = start_default_broker().await;
    let topic = unique("rq/will");
    let (mut watcher, _) = client::connect(options(b.addr, &unique("watcher")), false).await;
    watcher.subscribe(&topic, QoS::AtLeastOnce).await;

    let proxy = Proxy::start(b.addr).await;
    let mut o = options(proxy.addr, &unique("device"));
    o.set_keep_alive(Duration::from_secs(1));
    o.set_last_will(rumqttc::LastWill::new(&topic, "device lost", QoS::AtLeastOnce, false));
    let (device, _) = client::connect(o, false).await;
    // The device keeps running but its packets no longer arrive: only the keep alive can notice.
    proxy.freeze();
    let frozen = Instant::now();
    let p = watcher.next_publish().await;
    let after = frozen.elapsed();
    assert_eq!((&p.payload[..], p.qos), (&b"device lost"[..], QoS::AtLeastOnce));
    assert!(after <= Duration::from_millis(3000), "will after {after:?}; keep alive 1 s");
    drop(device);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_session_queues_while_offline() {
    let b = start_default_broker().await;
    let id = unique("persistent");
    let topic = unique("rq/persistent");
    let mut o = options(b.addr, &id);
    o.set_clean_session(false);
    let (mut sub, present) = client::connect(o.clone(), false).await;
    assert!(!present);
    sub.subscribe(&topic, QoS::AtLeastOnce).await;
    sub.disconnect().await;

    let (mut publisher, _) = client::connect(options(b.addr, &unique("pub")), false).await;
    for i in 0..20 {
        let qos = if i % 2 == 0 { QoS::AtLeastOnce } else { QoS::ExactlyOnce };
        publisher.publish(&topic, qos, false, format!("{i}")).await;
    }
    b.wait_session(&id, "20 queued messages", |s| s.queued_messages == 20).await;

    let (mut sub, present) = client::connect(o, false).await;
    assert!(present, "session present on resume");
    let got: Vec<String> =
        sub.publishes(20).await.iter().map(|p| String::from_utf8_lossy(&p.payload).into_owned()).collect();
    assert_eq!(got, (0..20).map(|i| i.to_string()).collect::<Vec<_>>());
    sub.expect_no_publish(QUIET).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_takeover_closes_the_first_connection() {
    let b = start_default_broker().await;
    let id = unique("twin");
    let topic = unique("rq/twin");
    let (mut first, _) = client::connect(options(b.addr, &id), false).await;
    first.subscribe(&topic, QoS::AtLeastOnce).await;
    let (mut second, present) = client::connect(options(b.addr, &id), false).await;
    assert!(!present);
    let err = first.wait_error().await;
    assert!(!err.is_empty());
    second.subscribe(&topic, QoS::AtLeastOnce).await;
    let (mut publisher, _) = client::connect(options(b.addr, &unique("pub")), false).await;
    publisher.publish(&topic, QoS::AtLeastOnce, false, "to the second").await;
    assert_eq!(&second.next_publish().await.payload[..], b"to the second");
    assert_eq!(b.stats().clients_connected, 2);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_full_drops_are_counted_and_the_rest_delivered() {
    let mut settings = Settings::default();
    settings.limits.max_inflight_messages = 2;
    settings.limits.max_queued_messages = 3;
    let b = start_broker(settings).await;
    let id = unique("slowpoke");
    let topic = unique("rq/full");
    let mut o = options(b.addr, &id);
    o.set_manual_acks(true);
    let (mut slow, _) = client::connect(o, false).await;
    slow.subscribe(&topic, QoS::AtLeastOnce).await;
    let (mut publisher, _) = client::connect(options(b.addr, &unique("pub")), false).await;
    for i in 0..10 {
        publisher.publish(&topic, QoS::AtLeastOnce, false, format!("{i}")).await;
    }
    let s = b.wait_session(&id, "5 drops", |s| s.dropped_messages == 5).await;
    assert_eq!((s.inflight_messages, s.queued_messages), (2, 3));
    assert_eq!(b.stats().messages_dropped, 5);

    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    while got.len() < 5 {
        assert!(Instant::now() < deadline, "got only {got:?}");
        let p = slow.next_publish().await;
        got.push(String::from_utf8_lossy(&p.payload).into_owned());
        within_ack(&slow, &p).await;
    }
    assert_eq!(got, ["0", "1", "2", "3", "4"]);
    slow.expect_no_publish(QUIET).await;
    b.shutdown().await;
}
