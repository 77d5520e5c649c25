//! SUBSCRIBE/UNSUBSCRIBE, wildcards, granted QoS, `$` topics, the PUBLISH flows of QoS 0, 1 and 2 in both
//! directions, and retained messages. Raw sockets, so flags, packet ids and acknowledgements are exact.

use std::time::Duration;

use tests::raw::{ConnectOpts, Qos, RawClient, Rx};
use tests::{Settings, start_broker, start_default_broker, unique};

const QUIET: Duration = Duration::from_millis(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcards_match_and_unsubscribe_stops_delivery() {
    let b = start_default_broker().await;
    let root = unique("wild");
    let mut sub = RawClient::connect_v311(b.addr, &unique("sub")).await;
    let mut publisher = RawClient::connect_v311(b.addr, &unique("pub")).await;
    let plus = format!("{root}/+/temp");
    let hash = format!("{root}/house/#");
    assert_eq!(sub.subscribe(&[(&plus, Qos::AtMostOnce), (&hash, Qos::AtMostOnce)]).await, vec![0, 0]);

    let cases = [
        (format!("{root}/kitchen/temp"), true), // +
        (format!("{root}/house"), true),        // # matches the parent level too
        (format!("{root}/house/a/b/c"), true),  // # matches any depth
        (format!("{root}/kitchen/hum"), false), // + matches one level only
        (format!("{root}/a/b/temp"), false),    // + does not span levels
        (format!("{root}/housemate/x"), false), // # only after a whole level
    ];
    for (topic, _) in &cases {
        publisher.publish_acked(topic, topic.as_bytes(), Qos::AtMostOnce, false).await;
    }
    // A last marker message on an exact topic: everything before it has been routed.
    let marker = format!("{root}/house/zz-marker");
    publisher.publish_acked(&marker, b"", Qos::AtMostOnce, false).await;
    let mut got = Vec::new();
    loop {
        let p = sub.recv_publish().await;
        if p.topic == marker {
            break;
        }
        got.push(p.topic);
    }
    let want: Vec<String> = cases.iter().filter(|(_, m)| *m).map(|(t, _)| t.clone()).collect();
    assert_eq!(got, want);

    sub.unsubscribe(&[&plus]).await;
    publisher.publish_acked(&format!("{root}/kitchen/temp"), b"x", Qos::AtMostOnce, false).await;
    sub.expect_silence(QUIET).await;
    sub.unsubscribe(&[&hash]).await;
    publisher.publish_acked(&format!("{root}/house"), b"x", Qos::AtMostOnce, false).await;
    sub.expect_silence(QUIET).await;
    // Unsubscribing from a filter never subscribed is still acknowledged.
    sub.unsubscribe(&[&format!("{root}/never")]).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granted_qos_and_delivery_qos_is_the_minimum() {
    let b = start_default_broker().await;
    let t0 = unique("grant/q0");
    let t1 = unique("grant/q1");
    let t2 = unique("grant/q2");
    let mut sub = RawClient::connect_v311(b.addr, &unique("sub")).await;
    let mut publisher = RawClient::connect_v311(b.addr, &unique("pub")).await;
    let codes = sub.subscribe(&[(&t0, Qos::AtMostOnce), (&t1, Qos::AtLeastOnce), (&t2, Qos::ExactlyOnce)]).await;
    assert_eq!(codes, vec![0, 1, 2]);

    for (topic, sub_qos) in [(&t0, Qos::AtMostOnce), (&t1, Qos::AtLeastOnce), (&t2, Qos::ExactlyOnce)] {
        for pub_qos in [Qos::AtMostOnce, Qos::AtLeastOnce, Qos::ExactlyOnce] {
            publisher.publish_acked(topic, b"q", pub_qos, false).await;
            let p = sub.recv_publish().await;
            assert_eq!(p.qos, pub_qos.min(sub_qos), "published at {pub_qos:?} to a {sub_qos:?} subscription");
            assert!(!p.dup && !p.retain);
            match p.qos {
                Qos::AtMostOnce => assert_eq!(p.pid, None),
                Qos::AtLeastOnce => sub.puback(p.pid.unwrap()).await,
                Qos::ExactlyOnce => {
                    let id = p.pid.unwrap();
                    sub.pubrec(id).await;
                    assert_eq!(sub.recv().await, Rx::PubRel(id));
                    sub.pubcomp(id).await;
                }
            }
        }
    }
    sub.expect_silence(QUIET).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_over_the_limit_are_refused_with_0x80() {
    let mut settings = Settings::default();
    settings.limits.max_subscriptions_per_client = 2;
    let b = start_broker(settings).await;
    let root = unique("limit");
    let (a, c, d) = (format!("{root}/a"), format!("{root}/c"), format!("{root}/d"));
    let mut sub = RawClient::connect_v311(b.addr, &unique("sub")).await;
    let codes = sub.subscribe(&[(&a, Qos::AtLeastOnce), (&c, Qos::ExactlyOnce), (&d, Qos::AtMostOnce)]).await;
    assert_eq!(codes, vec![1, 2, 0x80]);
    // Re-subscribing to an existing filter replaces it and is not refused.
    assert_eq!(sub.subscribe(&[(&a, Qos::AtMostOnce)]).await, vec![0]);
    // The refused filter delivers nothing; the granted ones do.
    let mut publisher = RawClient::connect_v311(b.addr, &unique("pub")).await;
    publisher.publish_acked(&d, b"refused", Qos::AtMostOnce, false).await;
    publisher.publish_acked(&c, b"granted", Qos::AtMostOnce, false).await;
    assert_eq!(sub.recv_publish().await.text(), "granted");
    sub.expect_silence(QUIET).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_subscriptions_deliver_one_copy_at_the_highest_qos() {
    let b = start_default_broker().await;
    let root = unique("overlap");
    let topic = format!("{root}/a/b");
    let mut sub = RawClient::connect_v311(b.addr, &unique("sub")).await;
    let mut publisher = RawClient::connect_v311(b.addr, &unique("pub")).await;
    let f1 = format!("{root}/+/b");
    let f2 = format!("{root}/#");
    assert_eq!(sub.subscribe(&[(&f1, Qos::AtMostOnce), (&f2, Qos::AtLeastOnce)]).await, vec![0, 1]);
    assert_eq!(sub.subscribe(&[(&topic, Qos::AtMostOnce)]).await, vec![0]);

    publisher.publish_acked(&topic, b"once", Qos::ExactlyOnce, false).await;
    let p = sub.recv_publish().await;
    assert_eq!((p.text().as_str(), p.qos), ("once", Qos::AtLeastOnce));
    sub.puback(p.pid.unwrap()).await;
    sub.expect_silence(QUIET).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_cannot_publish_to_dollar_topics() {
    let b = start_default_broker().await;
    let name = unique("sys");
    let dollar = format!("$SYS/{name}");
    let mut sub = RawClient::connect_v311(b.addr, &unique("sub")).await;
    let codes = sub.subscribe(&[("#", Qos::AtLeastOnce), (&format!("+/{name}"), Qos::AtLeastOnce)]).await;
    assert_eq!(codes, vec![1, 1]);
    assert_eq!(sub.subscribe(&[(&dollar, Qos::AtLeastOnce), ("$SYS/#", Qos::AtLeastOnce)]).await, vec![1, 1]);
    let mut publisher = RawClient::connect_v311(b.addr, &unique("pub")).await;
    // Acknowledged as usual, but routed nowhere, not even to an exact `$` subscription.
    for qos in [Qos::AtMostOnce, Qos::AtLeastOnce, Qos::ExactlyOnce] {
        publisher.publish_acked(&dollar, b"forged", qos, false).await;
        publisher.publish_acked(&dollar, b"forged retained", qos, true).await;
    }
    sub.expect_silence(QUIET).await;
    assert_eq!(b.stats().retained_messages, 0);
    publisher.assert_alive().await;
    // A normal topic still reaches `#` and `+/name`, as one copy.
    let plain = format!("x/{name}");
    publisher.publish_acked(&plain, b"ok", Qos::AtLeastOnce, false).await;
    let p = sub.recv_publish().await;
    assert_eq!(p.topic, plain);
    sub.puback(p.pid.unwrap()).await;
    sub.expect_silence(QUIET).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_flow_both_directions() {
    let b = start_default_broker().await;
    let topic = unique("qos1/t");
    let sub_id = unique("sub");
    let mut sub = RawClient::connect_v311(b.addr, &sub_id).await;
    sub.subscribe_one(&topic, Qos::AtLeastOnce).await;
    let mut publisher = RawClient::connect_v311(b.addr, &unique("pub")).await;
    // Inbound: PUBLISH -> PUBACK with the same id.
    publisher.publish(&topic, b"one", Qos::AtLeastOnce, 0x1234, false, false).await;
    assert_eq!(publisher.recv().await, Rx::PubAck(0x1234));
    // Outbound: the broker picks its own id; PUBACK completes it.
    let p = sub.recv_publish().await;
    assert_eq!((p.qos, p.dup, p.text().as_str()), (Qos::AtLeastOnce, false, "one"));
    let id = p.pid.unwrap();
    assert_ne!(id, 0);
    sub.puback(id).await;
    b.wait_session(&sub_id, "the PUBACK to complete the flow", |s| s.inflight_messages == 0).await;
    sub.expect_silence(QUIET).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_flow_both_directions() {
    let b = start_default_broker().await;
    let topic = unique("qos2/t");
    let sub_id = unique("sub");
    let mut sub = RawClient::connect_v311(b.addr, &sub_id).await;
    sub.subscribe_one(&topic, Qos::ExactlyOnce).await;
    let mut publisher = RawClient::connect_v311(b.addr, &unique("pub")).await;

    // Inbound: PUBLISH -> PUBREC; PUBREL -> PUBCOMP.
    publisher.publish(&topic, b"exactly", Qos::ExactlyOnce, 77, false, false).await;
    assert_eq!(publisher.recv().await, Rx::PubRec(77));
    // Outbound: PUBLISH -> (PUBREC) -> PUBREL -> (PUBCOMP).
    let p = sub.recv_publish().await;
    assert_eq!((p.qos, p.dup, p.text().as_str()), (Qos::ExactlyOnce, false, "exactly"));
    let id = p.pid.unwrap();
    publisher.pubrel(77).await;
    assert_eq!(publisher.recv().await, Rx::PubComp(77));
    sub.pubrec(id).await;
    assert_eq!(sub.recv().await, Rx::PubRel(id));
    sub.pubcomp(id).await;
    b.wait_session(&sub_id, "the QoS 2 flow to complete", |s| s.inflight_messages == 0).await;
    sub.expect_silence(QUIET).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_qos2_is_delivered_exactly_once_until_pubrel() {
    let b = start_default_broker().await;
    let topic = unique("once/t");
    let mut sub = RawClient::connect_v311(b.addr, &unique("sub")).await;
    sub.subscribe_one(&topic, Qos::AtMostOnce).await;
    let mut publisher = RawClient::connect_v311(b.addr, &unique("pub")).await;

    publisher.publish(&topic, b"first", Qos::ExactlyOnce, 9, false, false).await;
    assert_eq!(publisher.recv().await, Rx::PubRec(9));
    // The same id again (a resend, DUP=1) before PUBREL: acknowledged, not routed again.
    publisher.publish(&topic, b"first", Qos::ExactlyOnce, 9, false, true).await;
    assert_eq!(publisher.recv().await, Rx::PubRec(9));
    publisher.publish(&topic, b"first", Qos::ExactlyOnce, 9, false, true).await;
    assert_eq!(publisher.recv().await, Rx::PubRec(9));
    assert_eq!(sub.recv_publish().await.text(), "first");
    sub.expect_silence(QUIET).await;

    publisher.pubrel(9).await;
    assert_eq!(publisher.recv().await, Rx::PubComp(9));
    // After PUBREL the id is free: a new message with it is a new message.
    publisher.publish(&topic, b"second", Qos::ExactlyOnce, 9, false, false).await;
    assert_eq!(publisher.recv().await, Rx::PubRec(9));
    assert_eq!(sub.recv_publish().await.text(), "second");
    publisher.pubrel(9).await;
    assert_eq!(publisher.recv().await, Rx::PubComp(9));
    sub.expect_silence(QUIET).await;
    assert_eq!(b.stats().messages_received, 4);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_qos2_exactly_once_across_a_dropped_connection() {
    let b = start_default_broker().await;
    let topic = unique("once/drop");
    let pub_id = unique("pub");
    let mut sub = RawClient::connect_v311(b.addr, &unique("sub")).await;
    sub.subscribe_one(&topic, Qos::AtMostOnce).await;

    // PUBLISH, PUBREC, then the connection drops before PUBREL.
    let (mut publisher, _) = RawClient::connect(b.addr, &ConnectOpts::new(&pub_id).clean(false)).await;
    publisher.publish(&topic, b"survivor", Qos::ExactlyOnce, 5, false, false).await;
    assert_eq!(publisher.recv().await, Rx::PubRec(5));
    publisher.drop_connection();
    assert_eq!(sub.recv_publish().await.text(), "survivor");

    // The client resumes, did not see the PUBREC, resends the PUBLISH with DUP=1, then releases it.
    let (mut publisher, present) = RawClient::connect(b.addr, &ConnectOpts::new(&pub_id).clean(false)).await;
    assert!(present);
    publisher.publish(&topic, b"survivor", Qos::ExactlyOnce, 5, false, true).await;
    assert_eq!(publisher.recv().await, Rx::PubRec(5));
    publisher.pubrel(5).await;
    assert_eq!(publisher.recv().await, Rx::PubComp(5));
    sub.expect_silence(QUIET).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_order_is_kept_per_subscriber_through_a_small_window() {
    let mut settings = Settings::default();
    settings.limits.max_inflight_messages = 2;
    let b = start_broker(settings).await;
    let topic = unique("order/t");
    let mut sub = RawClient::connect_v311(b.addr, &unique("sub")).await;
    sub.subscribe_one(&topic, Qos::ExactlyOnce).await;
    let mut publisher = RawClient::connect_v311(b.addr, &unique("pub")).await;
    const N: usize = 60;
    for i in 0..N {
        let qos = [Qos::AtMostOnce, Qos::AtLeastOnce, Qos::ExactlyOnce][i % 3];
        publisher.publish_acked(&topic, i.to_string().as_bytes(), qos, false).await;
    }
    let mut got = Vec::new();
    while got.len() < N {
        match sub.recv().await {
            Rx::Publish(p) => {
                got.push(p.text().parse::<usize>().unwrap());
                match p.qos {
                    Qos::AtMostOnce => {}
                    Qos::AtLeastOnce => sub.puback(p.pid.unwrap()).await,
                    Qos::ExactlyOnce => sub.pubrec(p.pid.unwrap()).await,
                }
            }
            Rx::PubRel(id) => sub.pubcomp(id).await,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, (0..N).collect::<Vec<_>>());
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_are_stored_replaced_and_cleared() {
    let b = start_default_broker().await;
    let topic = unique("retain/t");
    let mut publisher = RawClient::connect_v311(b.addr, &unique("pub")).await;
    publisher.publish_acked(&topic, b"v1", Qos::AtLeastOnce, true).await;
    b.wait_stats("one retained message", |s| s.retained_messages == 1).await;

    let mut s1 = RawClient::connect_v311(b.addr, &unique("s1")).await;
    s1.subscribe_one(&topic, Qos::AtLeastOnce).await;
    let p = s1.recv_publish().await;
    assert_eq!((p.text().as_str(), p.retain, p.qos), ("v1", true, Qos::AtLeastOnce));
    s1.puback(p.pid.unwrap()).await;

    // Replaced; a live subscriber gets it with RETAIN=0 [MQTT-3.3.1-9].
    publisher.publish_acked(&topic, b"v2", Qos::AtMostOnce, true).await;
    let live = s1.recv_publish().await;
    assert_eq!((live.text().as_str(), live.retain), ("v2", false));
    let mut s2 = RawClient::connect_v311(b.addr, &unique("s2")).await;
    s2.subscribe_one(&topic, Qos::AtLeastOnce).await;
    let p = s2.recv_publish().await;
    assert_eq!((p.text().as_str(), p.retain, p.qos), ("v2", true, Qos::AtMostOnce));
    s2.expect_silence(QUIET).await;
    assert_eq!(b.stats().retained_messages, 1);

    // A non-retained publish leaves the retained message alone.
    publisher.publish_acked(&topic, b"not retained", Qos::AtMostOnce, false).await;
    // An empty retained payload deletes it.
    publisher.publish_acked(&topic, b"", Qos::AtMostOnce, true).await;
    b.wait_stats("no retained message", |s| s.retained_messages == 0).await;
    let mut s3 = RawClient::connect_v311(b.addr, &unique("s3")).await;
    s3.subscribe_one(&topic, Qos::AtLeastOnce).await;
    s3.expect_silence(QUIET).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_retained_message_is_delivered_on_subscribe() {
    let b = start_default_broker().await;
    let root = unique("many");
    let mut publisher = RawClient::connect_v311(b.addr, &unique("pub")).await;
    const N: usize = 500;
    for i in 0..N {
        publisher.publish_acked(&format!("{root}/{i}"), i.to_string().as_bytes(), Qos::AtMostOnce, true).await;
    }
    b.wait_stats("all retained", |s| s.retained_messages == N).await;
    let mut sub = RawClient::connect_v311(b.addr, &unique("sub")).await;
    // QoS 1, so the in-flight window (32 by default) and the queue behind it are both used.
    sub.subscribe_one(&format!("{root}/#"), Qos::AtLeastOnce).await;
    let mut seen = vec![false; N];
    for _ in 0..N {
        let p = sub.recv_publish().await;
        assert!(p.retain);
        let i: usize = p.text().parse().unwrap();
        assert!(!seen[i], "message {i} delivered twice");
        seen[i] = true;
        if let Some(id) = p.pid {
            sub.puback(id).await;
        }
    }
    sub.expect_silence(QUIET).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_retained_messages_is_a_hard_limit() {
    let mut settings = Settings::default();
    settings.limits.max_retained_messages = 3;
    let b = start_broker(settings).await;
    let root = unique("cap");
    let mut publisher = RawClient::connect_v311(b.addr, &unique("pub")).await;
    for i in 0..5 {
        publisher.publish_acked(&format!("{root}/{i}"), b"r", Qos::AtLeastOnce, true).await;
    }
    b.wait_stats("the retained cap", |s| s.retained_messages == 3).await;
    // Replacing one that is stored still works at the cap.
    publisher.publish_acked(&format!("{root}/0"), b"replaced", Qos::AtLeastOnce, true).await;
    let mut sub = RawClient::connect_v311(b.addr, &unique("sub")).await;
    sub.subscribe_one(&format!("{root}/#"), Qos::AtMostOnce).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let p = sub.recv_publish().await;
        got.push((p.topic.clone(), p.text()));
    }
    sub.expect_silence(QUIET).await;
    assert!(got.contains(&(format!("{root}/0"), "replaced".to_string())), "got {got:?}");
    assert_eq!(b.stats().retained_messages, 3);
    // Publishers are not punished for it.
    publisher.assert_alive().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_in_and_fan_out_lose_nothing() {
    let b = start_default_broker().await;
    let topic = unique("fan/t");
    const SUBS: usize = 10;
    const PUBS: usize = 5;
    const EACH: usize = 40;
    let mut readers = Vec::new();
    for _ in 0..SUBS {
        let mut s = RawClient::connect_v311(b.addr, &unique("fan-sub")).await;
        s.subscribe_one(&format!("{topic}/+"), Qos::AtLeastOnce).await;
        readers.push(tokio::spawn(async move {
            let got = s.recv_acking(PUBS * EACH).await;
            // Per publisher, order is kept.
            let mut per_pub = vec![Vec::new(); PUBS];
            for p in got {
                let (from, n) = p
                    .text()
                    .split_once(':')
                    .map(|(a, b)| (a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap()))
                    .unwrap();
                per_pub[from].push(n);
            }
            per_pub
        }));
    }
    let mut writers = Vec::new();
    for from in 0..PUBS {
        let addr = b.addr;
        let topic = format!("{topic}/{from}");
        writers.push(tokio::spawn(async move {
            let mut p = RawClient::connect_v311(addr, &unique("fan-pub")).await;
            for n in 0..EACH {
                let qos = if n % 2 == 0 { Qos::AtLeastOnce } else { Qos::ExactlyOnce };
                p.publish_acked(&topic, format!("{from}:{n}").as_bytes(), qos, false).await;
            }
        }));
    }
    for w in writers {
        tests::within("a publisher", w).await.unwrap();
    }
    for r in readers {
        let per_pub = tests::within("a subscriber", r).await.unwrap();
        for got in per_pub {
            assert_eq!(got, (0..EACH).collect::<Vec<_>>());
        }
    }
    let s = b.stats();
    assert_eq!(
        (s.messages_received, s.messages_delivered, s.messages_dropped),
        ((PUBS * EACH) as u64, (SUBS * PUBS * EACH) as u64, 0)
    );
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubscribing_replaces_the_subscription_and_resends_retained() {
    let b = start_default_broker().await;
    let topic = unique("resub/t");
    let mut publisher = RawClient::connect_v311(b.addr, &unique("pub")).await;
    publisher.publish_acked(&topic, b"kept", Qos::ExactlyOnce, true).await;
    let mut sub = RawClient::connect_v311(b.addr, &unique("sub")).await;
    sub.subscribe_one(&topic, Qos::ExactlyOnce).await;
    let p = sub.recv_acking(1).await.remove(0);
    assert_eq!((p.text().as_str(), p.qos, p.retain), ("kept", Qos::ExactlyOnce, true));

    // The same filter again at QoS 0: one subscription, now at QoS 0, and the retained message comes again.
    sub.subscribe_one(&topic, Qos::AtMostOnce).await;
    let p = sub.recv_publish().await;
    assert_eq!((p.text().as_str(), p.qos, p.retain), ("kept", Qos::AtMostOnce, true));
    publisher.publish_acked(&topic, b"live", Qos::ExactlyOnce, false).await;
    let p = sub.recv_publish().await;
    assert_eq!((p.text().as_str(), p.qos), ("live", Qos::AtMostOnce));
    sub.expect_silence(QUIET).await;
    b.shutdown().await;
}
