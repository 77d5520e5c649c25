//! Limits: max connections, max packet size, the in-flight window, per-session queue caps by count and bytes with
//! visible drops, and isolation of a slow subscriber from everyone else.

use std::time::Duration;

use tests::raw::{ConnectOpts, Event, Qos, RawClient, Rx};
use tests::{Settings, WAIT, start_broker, unique};

const QUIET: Duration = Duration::from_millis(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_max_connections_are_refused() {
    let mut settings = Settings::default();
    settings.limits.max_connections = 2;
    let b = start_broker(settings).await;
    let mut one = RawClient::connect_v311(b.addr, &unique("one")).await;
    let two = RawClient::connect_v311(b.addr, &unique("two")).await;

    let mut third = RawClient::tcp(b.addr).await;
    let sent = third.try_send_raw(&ConnectOpts::new(&unique("three")).encode()).await;
    if sent {
        let seen = third.expect_closed(WAIT).await;
        assert!(!seen.iter().any(|p| matches!(p, Rx::ConnAck { code: 0, .. })), "third accepted: {seen:?}");
    }
    one.assert_alive().await;

    // A freed slot is usable again.
    two.disconnect().await;
    b.wait_stats("a slot to free up", |s| s.clients_connected == 1).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (mut c, ack) = {
            let mut c = RawClient::tcp(b.addr).await;
            c.version = tests::raw::Version::V311;
            c.send_raw(&ConnectOpts::new(&unique("four")).encode()).await;
            let ev = c.next_event(Duration::from_secs(1)).await;
            (c, ev)
        };
        match ack {
            Event::Packet(Rx::ConnAck { code: 0, .. }) => {
                c.assert_alive().await;
                break;
            }
            // The permit of the closed connection is released as its task ends; retry briefly.
            other => assert!(tokio::time::Instant::now() < deadline, "slot not reusable: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packet_over_max_packet_size_closes_that_connection_only() {
    let mut settings = Settings::default();
    settings.limits.max_packet_size = 1024;
    let b = start_broker(settings).await;
    let topic = unique("big/t");
    let mut sub = RawClient::connect_v311(b.addr, &unique("sub")).await;
    sub.subscribe_one(&topic, Qos::AtMostOnce).await;
    let mut big = RawClient::connect_v311(b.addr, &unique("big")).await;
    let mut small = RawClient::connect_v311(b.addr, &unique("small")).await;

    // Exactly at the limit (fixed header included) is fine.
    let at_limit = vec![b'x'; 1024 - 1 - 2 - 2 - topic.len()];
    small.publish_acked(&topic, &at_limit, Qos::AtMostOnce, false).await;
    let p = sub.recv_publish().await;
    assert_eq!(p.payload.len(), at_limit.len());

    // One byte more closes the connection, and nothing is routed.
    let over = vec![b'x'; at_limit.len() + 1];
    big.publish(&topic, &over, Qos::AtMostOnce, 0, false, false).await;
    big.expect_closed(WAIT).await;
    sub.expect_silence(QUIET).await;
    // A huge declared length is refused from the fixed header alone, before the body arrives.
    let mut liar = RawClient::connect_v311(b.addr, &unique("liar")).await;
    liar.send_raw(&[0x30, 0xff, 0xff, 0xff, 0x7f]).await;
    liar.expect_closed(WAIT).await;

    small.publish_acked(&topic, b"still here", Qos::AtLeastOnce, false).await;
    assert_eq!(sub.recv_publish().await.text(), "still here");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inflight_window_holds_back_the_rest_in_order() {
    let mut settings = Settings::default();
    settings.limits.max_inflight_messages = 3;
    let b = start_broker(settings).await;
    let id = unique("window");
    let topic = unique("window/t");
    let mut sub = RawClient::connect_v311(b.addr, &id).await;
    sub.subscribe_one(&topic, Qos::AtLeastOnce).await;
    let mut publisher = RawClient::connect_v311(b.addr, &unique("pub")).await;
    for i in 0..10 {
        publisher.publish_acked(&topic, i.to_string().as_bytes(), Qos::AtLeastOnce, false).await;
    }
    let mut window = Vec::new();
    for _ in 0..3 {
        window.push(sub.recv_publish().await);
    }
    sub.expect_silence(QUIET).await;
    let s = b.wait_session(&id, "a full window", |s| s.inflight_messages == 3).await;
    assert_eq!(s.queued_messages, 7);
    // Each PUBACK opens the window by one.
    let mut got: Vec<String> = window.iter().map(|p| p.text()).collect();
    let mut unacked: std::collections::VecDeque<u16> = window.iter().map(|p| p.pid.unwrap()).collect();
    while got.len() < 10 {
        sub.puback(unacked.pop_front().unwrap()).await;
        let p = sub.recv_publish().await;
        unacked.push_back(p.pid.unwrap());
        got.push(p.text());
        if got.len() < 10 {
            sub.expect_silence(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(got, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
    for id in unacked {
        sub.puback(id).await;
    }
    b.wait_session(&id, "an empty window", |s| s.inflight_messages == 0 && s.queued_messages == 0).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_drops_visibly_per_session_and_broker_wide() {
    let mut settings = Settings::default();
    settings.limits.max_inflight_messages = 2;
    settings.limits.max_queued_messages = 5;
    let b = start_broker(settings).await;
    let id = unique("stuck");
    let topic = unique("stuck/t");
    let mut slow = RawClient::connect_v311(b.addr, &id).await;
    slow.subscribe_one(&topic, Qos::AtLeastOnce).await;
    let mut publisher = RawClient::connect_v311(b.addr, &unique("pub")).await;
    for i in 0..20 {
        publisher.publish_acked(&topic, format!("{i}").as_bytes(), Qos::AtLeastOnce, false).await;
    }
    let s = b.wait_session(&id, "13 drops", |s| s.dropped_messages == 13).await;
    assert_eq!((s.inflight_messages, s.queued_messages), (2, 5));
    assert_eq!(b.stats().messages_dropped, 13);
    assert_eq!(b.stats().messages_received, 20);
    // What was kept is the oldest, in order: 0..7.
    let mut got = Vec::new();
    while got.len() < 7 {
        let p = slow.recv_publish().await;
        got.push(p.text());
        slow.puback(p.pid.unwrap()).await;
    }
    assert_eq!(got, (0..7).map(|i| i.to_string()).collect::<Vec<_>>());
    slow.expect_silence(QUIET).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_byte_limit_drops_visibly() {
    let mut settings = Settings::default();
    settings.limits.max_inflight_messages = 1;
    settings.limits.max_queued_bytes = 100;
    // A packet larger than the whole queue could never be queued.
    settings.limits.max_packet_size = 100;
    let b = start_broker(settings).await;
    let id = unique("bytes");
    let topic = unique("bytes/t");
    let mut slow = RawClient::connect_v311(b.addr, &id).await;
    slow.subscribe_one(&topic, Qos::AtLeastOnce).await;
    let mut publisher = RawClient::connect_v311(b.addr, &unique("pub")).await;
    // 30-byte payloads: one in flight; 100 queued bytes hold 3 payloads (2 when the topic is counted too,
    // as the broker does); far below the 1,000-message count limit, so only the byte limit drops.
    const N: u64 = 10;
    for i in 0..N as u8 {
        publisher.publish_acked(&topic, &[b'a' + i; 30], Qos::AtLeastOnce, false).await;
    }
    let s = b
        .wait_session(&id, "drops", |s| {
            s.inflight_messages + s.queued_messages + s.dropped_messages as usize == N as usize
        })
        .await;
    assert_eq!(s.inflight_messages, 1);
    assert!((2..=3).contains(&s.queued_messages), "100 bytes hold 2 or 3 messages of 30 bytes: {s:?}");
    let kept = 1 + s.queued_messages;
    assert_eq!(s.dropped_messages, N - kept as u64);
    assert_eq!(b.stats().messages_dropped, s.dropped_messages);
    // The kept ones are the oldest, in order.
    for i in 0..kept as u8 {
        let p = slow.recv_publish().await;
        assert_eq!(p.payload, vec![b'a' + i; 30]);
        slow.puback(p.pid.unwrap()).await;
    }
    slow.expect_silence(QUIET).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_costs_nobody_else_their_messages() {
    let mut settings = Settings::default();
    settings.limits.max_inflight_messages = 4;
    settings.limits.max_queued_messages = 8;
    let b = start_broker(settings).await;
    let topic = unique("shared/t");
    let slow_id = unique("slow");
    let fast_id = unique("fast");
    let mut slow = RawClient::connect_v311(b.addr, &slow_id).await;
    slow.subscribe_one(&topic, Qos::AtLeastOnce).await;
    let mut fast = RawClient::connect_v311(b.addr, &fast_id).await;
    fast.subscribe_one(&topic, Qos::AtLeastOnce).await;
    let mut publisher = RawClient::connect_v311(b.addr, &unique("pub")).await;

    const N: usize = 200;
    // The fast subscriber reads each message before the next is published, so its own queue never fills; the
    // slow one never reads, so its queue fills after 12 messages and stays full.
    for i in 0..N {
        // The publisher is never held back by the slow subscriber: every PUBACK comes promptly.
        publisher.publish_acked(&topic, i.to_string().as_bytes(), Qos::AtLeastOnce, false).await;
        let p = fast.recv_publish().await;
        assert_eq!(p.text(), i.to_string(), "the fast subscriber gets every message, in order");
        fast.puback(p.pid.unwrap()).await;
    }
    let s = b.wait_session(&slow_id, "the slow subscriber's drops", |s| s.dropped_messages == (N - 12) as u64).await;
    assert_eq!((s.inflight_messages, s.queued_messages), (4, 8));
    let fast_stats = b.broker.session_stats(&fast_id).unwrap();
    assert_eq!(fast_stats.dropped_messages, 0);
    assert_eq!(b.stats().messages_dropped, (N - 12) as u64);
    slow.assert_alive().await;
    b.shutdown().await;
}

/// With queue limits raised far above the defaults, a subscriber that stops reading must neither lose its messages
/// nor slow down the publisher and the other subscribers: publishers wait briefly for a subscriber that is reading
/// its way through a backlog, never for one that reads nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_does_not_slow_publishers_even_with_large_queues() {
    const N: usize = 12_000;
    const BATCH: usize = 100;
    let mut settings = Settings::default();
    settings.limits.max_queued_messages = 100_000;
    settings.limits.max_queued_bytes = 512 * 1024 * 1024;
    let b = start_broker(settings).await;
    let topic = unique("stuck/t");
    let stuck_id = unique("stuck");
    let mut stuck = RawClient::connect_v311(b.addr, &stuck_id).await;
    stuck.subscribe_one(&topic, Qos::AtMostOnce).await;
    let mut reader = RawClient::connect_v311(b.addr, &unique("reader")).await;
    reader.subscribe_one(&topic, Qos::AtMostOnce).await;
    let mut publisher = RawClient::connect_v311(b.addr, &unique("pub")).await;

    // 2 KiB payloads: 24 MB in all, more than the kernel buffers of the stuck connection hold, so the broker's
    // queue for it grows well past the backlog threshold (2,048 messages).
    let payload = |i: usize| {
        let mut p = format!("{i:08}").into_bytes();
        p.resize(2048, b'.');
        p
    };
    let reading = tokio::spawn(async move {
        for i in 0..N {
            let p = reader.recv_publish().await;
            assert_eq!(&p.payload[..8], format!("{i:08}").as_bytes(), "the reader gets every message, in order");
        }
        reader
    });
    // Bounded well above what the transfer takes (a few seconds in a debug build), and well below what holding the
    // publisher 50 ms per read for the stuck subscriber would take (minutes).
    tests::within_for(Duration::from_secs(60), "publishing past a stuck subscriber", async {
        for start in (0..N).step_by(BATCH) {
            let batch: Vec<u8> = (start..start + BATCH)
                .flat_map(|i| {
                    tests::raw::publish_bytes(publisher.version, &topic, &payload(i), Qos::AtMostOnce, 0, false, false)
                })
                .collect();
            publisher.send_raw(&batch).await;
        }
        publisher.publish_acked(&topic, &payload(N), Qos::AtLeastOnce, false).await;
    })
    .await;
    let mut reader = tests::within_for(Duration::from_secs(60), "the reader", reading).await.unwrap();
    assert_eq!(&reader.recv_publish().await.payload[..8], format!("{N:08}").as_bytes());
    let s = b.wait_session(&stuck_id, "the stuck subscriber's backlog", |s| s.queued_messages > 2048).await;
    assert_eq!(s.dropped_messages, 0);

    // Nothing was lost for the stuck subscriber either: once it reads, everything arrives in order.
    for i in 0..=N {
        let p = stuck.recv_publish().await;
        assert_eq!(&p.payload[..8], format!("{i:08}").as_bytes(), "the stuck subscriber gets every message, in order");
    }
    b.shutdown().await;
}
