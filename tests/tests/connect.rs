//! CONNECT: validation and return codes, MQTT 3.1 and 3.1.1 on one port, the CONNECT deadline, client
//! identifiers, session takeover and keep alive. Raw sockets, so every byte and every timing is checked.

use std::time::{Duration, Instant};

use tests::raw::{ConnectOpts, Qos, RawClient, Rx, Version};
use tests::{Settings, WAIT, start_broker, start_default_broker, unique};

/// A v3.1.1 CONNECT as bytes, for tests that then corrupt one field. Layout with a one-byte remaining length:
/// `10 len 00 04 'M' 'Q' 'T' 'T' level flags ka ka ...`.
fn connect_v311_bytes(client_id: &str) -> Vec<u8> {
    let bytes = ConnectOpts::new(client_id).encode();
    assert_eq!(&bytes[2..8], b"\x00\x04MQTT", "layout assumed by these tests");
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_31_and_311_clients_share_one_port() {
    let b = start_default_broker().await;
    let topic = unique("mixed/versions");
    let (mut old, present) = RawClient::connect(b.addr, &ConnectOpts::new(&unique("v31")).version(Version::V31)).await;
    assert!(!present);
    let mut new = RawClient::connect_v311(b.addr, &unique("v311")).await;
    old.subscribe_one(&topic, Qos::AtLeastOnce).await;
    new.subscribe_one(&topic, Qos::AtLeastOnce).await;

    // 3.1.1 publishes, both receive.
    new.publish_acked(&topic, b"from 3.1.1", Qos::AtLeastOnce, false).await;
    let got = old.recv_publish().await;
    assert_eq!((got.topic.as_str(), got.text().as_str(), got.qos), (topic.as_str(), "from 3.1.1", Qos::AtLeastOnce));
    old.puback(got.pid.unwrap()).await;
    let own = new.recv_publish().await;
    assert_eq!(own.text(), "from 3.1.1");
    new.puback(own.pid.unwrap()).await;

    // 3.1 publishes, both receive.
    let early = old.publish_acked(&topic, b"from 3.1", Qos::AtLeastOnce, false).await;
    let got = match early.into_iter().next() {
        Some(p) => p,
        None => old.recv_publish().await,
    };
    assert_eq!(got.text(), "from 3.1");
    let got = new.recv_publish().await;
    assert_eq!(got.text(), "from 3.1");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_protocol_level_gets_return_code_1_and_close() {
    let b = start_default_broker().await;
    for level in [2u8, 6, 0xff] {
        let mut bytes = connect_v311_bytes(&unique("level"));
        bytes[8] = level;
        let mut c = RawClient::tcp(b.addr).await;
        c.send_raw(&bytes).await;
        let seen = c.expect_closed(WAIT).await;
        assert_eq!(seen, vec![Rx::ConnAck { session_present: false, code: 1 }], "protocol level {level}");
    }
    assert_eq!(b.stats().clients_connected, 0);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_protocol_name_is_refused() {
    let b = start_default_broker().await;
    let cases: [(&str, Vec<u8>); 3] = [
        ("name MQTX", {
            let mut v = connect_v311_bytes(&unique("name"));
            v[7] = b'X';
            v
        }),
        ("name mqtt (lower case)", {
            let mut v = connect_v311_bytes(&unique("name"));
            v[4..8].copy_from_slice(b"mqtt");
            v
        }),
        ("MQIsdp with level 4", {
            let mut v = ConnectOpts::new(&unique("name")).version(Version::V31).encode();
            assert_eq!(&v[2..10], b"\x00\x06MQIsdp");
            v[10] = 4;
            v
        }),
    ];
    for (what, bytes) in cases {
        let mut c = RawClient::tcp(b.addr).await;
        c.send_raw(&bytes).await;
        let seen = c.expect_closed(WAIT).await;
        assert!(
            !seen.iter().any(|p| matches!(p, Rx::ConnAck { code: 0, .. })),
            "{what}: the CONNECT must not be accepted, got {seen:?}"
        );
    }
    assert_eq!(b.stats().clients_connected, 0);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_connect_flag_closes_the_connection() {
    let b = start_default_broker().await;
    let mut bytes = connect_v311_bytes(&unique("reserved"));
    bytes[9] |= 0x01; // [MQTT-3.1.2-3]
    let mut c = RawClient::tcp(b.addr).await;
    c.send_raw(&bytes).await;
    let seen = c.expect_closed(WAIT).await;
    assert!(!seen.iter().any(|p| matches!(p, Rx::ConnAck { code: 0, .. })), "got {seen:?}");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_connect_is_a_protocol_violation() {
    let b = start_default_broker().await;
    let id = unique("twice");
    let mut c = RawClient::connect_v311(b.addr, &id).await;
    c.send_raw(&ConnectOpts::new(&id).encode()).await;
    let seen = c.expect_closed(WAIT).await;
    assert!(seen.is_empty(), "no answer to a second CONNECT, got {seen:?}");
    b.wait_stats("the client to be gone", |s| s.clients_connected == 0).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_packet_must_be_connect() {
    let b = start_default_broker().await;
    // PINGREQ, SUBSCRIBE and PUBLISH before CONNECT.
    let subscribe = [0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00];
    let publish = [0x30, 0x04, 0x00, 0x01, b'a', b'x'];
    for bytes in [&[0xc0, 0x00][..], &subscribe[..], &publish[..]] {
        let mut c = RawClient::tcp(b.addr).await;
        c.send_raw(bytes).await;
        let seen = c.expect_closed(WAIT).await;
        assert!(seen.is_empty(), "first packet {bytes:02x?}: expected a silent close, got {seen:?}");
    }
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_without_connect_is_closed_after_connect_timeout() {
    let mut settings = Settings::default();
    settings.limits.connect_timeout = Duration::from_millis(400);
    let b = start_broker(settings).await;

    // Silent socket.
    let started = Instant::now();
    let mut silent = RawClient::tcp(b.addr).await;
    // Half a CONNECT, then nothing.
    let mut partial = RawClient::tcp(b.addr).await;
    partial.send_raw(&connect_v311_bytes(&unique("partial"))[..5]).await;

    assert!(silent.expect_closed(WAIT).await.is_empty());
    let silent_after = started.elapsed();
    assert!(partial.expect_closed(WAIT).await.is_empty());
    assert!(
        silent_after >= Duration::from_millis(300) && silent_after < Duration::from_millis(2000),
        "closed after {silent_after:?}, connect_timeout is 400 ms"
    );
    // A client that does send CONNECT in time is served past the deadline.
    let mut ok = RawClient::connect_v311(b.addr, &unique("in-time")).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    ok.assert_alive().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_client_id_with_clean_session_gets_an_assigned_id() {
    let b = start_default_broker().await;
    let topic = unique("anon/echo");
    // Two anonymous clients at once: each has its own assigned id, so neither takes the other over.
    let (mut a, present) = RawClient::connect(b.addr, &ConnectOpts::new("")).await;
    assert!(!present);
    let (mut c, _) = RawClient::connect(b.addr, &ConnectOpts::new("")).await;
    a.subscribe_one(&topic, Qos::AtMostOnce).await;
    c.publish_acked(&topic, b"hi", Qos::AtLeastOnce, false).await;
    assert_eq!(a.recv_publish().await.text(), "hi");
    a.assert_alive().await;
    c.assert_alive().await;
    assert_eq!(b.stats().clients_connected, 2);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_client_id_without_clean_session_is_refused_with_2() {
    let b = start_default_broker().await;
    for version in [Version::V311, Version::V31] {
        let (mut c, ack) = RawClient::connect_with(b.addr, &ConnectOpts::new("").clean(false).version(version)).await;
        assert_eq!(ack, Rx::ConnAck { session_present: false, code: 2 }, "{version:?}");
        assert!(c.expect_closed(WAIT).await.is_empty());
    }
    assert_eq!(b.stats().clients_connected, 0);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_client_id_takes_the_session_over() {
    let b = start_default_broker().await;
    let id = unique("takeover");
    let topic = unique("takeover/t");
    let (mut first, present) = RawClient::connect(b.addr, &ConnectOpts::new(&id).clean(false)).await;
    assert!(!present);
    first.subscribe_one(&topic, Qos::AtLeastOnce).await;

    let (mut second, present) = RawClient::connect(b.addr, &ConnectOpts::new(&id).clean(false)).await;
    assert!(present, "the second connection resumes the first one's session");
    first.expect_closed(WAIT).await;
    b.wait_stats("one client connected", |s| s.clients_connected == 1 && s.sessions == 1).await;

    // The subscription made by the first connection now delivers to the second.
    let mut publisher = RawClient::connect_v311(b.addr, &unique("takeover-pub")).await;
    publisher.publish_acked(&topic, b"to the new owner", Qos::AtLeastOnce, false).await;
    let got = second.recv_publish().await;
    assert_eq!(got.text(), "to the new owner");
    second.puback(got.pid.unwrap()).await;
    second.assert_alive().await;

    // A clean takeover discards the old session.
    let (mut third, present) = RawClient::connect(b.addr, &ConnectOpts::new(&id)).await;
    assert!(!present);
    second.expect_closed(WAIT).await;
    third.assert_alive().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_is_enforced_at_one_and_a_half_times_the_clients_value() {
    let b = start_default_broker().await;
    let started = Instant::now();
    let (mut idle, _) = RawClient::connect(b.addr, &ConnectOpts::new(&unique("idle")).keep_alive(1)).await;
    idle.expect_closed(Duration::from_secs(4)).await;
    let after = started.elapsed();
    assert!(
        after >= Duration::from_millis(1400) && after <= Duration::from_millis(2600),
        "keep alive 1 s: closed after {after:?}, expected about 1.5 s"
    );
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_resets_the_keepalive_and_zero_disables_it() {
    let b = start_default_broker().await;
    let (mut pinging, _) = RawClient::connect(b.addr, &ConnectOpts::new(&unique("pinging")).keep_alive(1)).await;
    let (mut forever, _) = RawClient::connect(b.addr, &ConnectOpts::new(&unique("no-ka")).keep_alive(0)).await;
    // 2.8 s of pings every 700 ms: well past 1.5 s, still served.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        pinging.assert_alive().await;
    }
    let last = Instant::now();
    pinging.expect_closed(Duration::from_secs(4)).await;
    let after = last.elapsed();
    assert!(
        after >= Duration::from_millis(1300) && after <= Duration::from_millis(2600),
        "closed {after:?} after the last PINGREQ"
    );
    // Keep alive 0: never timed out (3.3 s idle by now).
    forever.assert_alive().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_every_connection() {
    let b = start_default_broker().await;
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(RawClient::connect_v311(b.addr, &unique("bye")).await);
    }
    // One more socket that never sent CONNECT.
    let mut pending = RawClient::tcp(b.addr).await;
    b.wait_stats("5 clients", |s| s.clients_connected == 5).await;
    let started = Instant::now();
    let addr = b.addr;
    b.shutdown().await;
    // The listener is gone too.
    let refused = tests::within("connect after shutdown", tokio::net::TcpStream::connect(addr)).await;
    assert!(refused.is_err(), "still accepting after shutdown");
    for c in &mut clients {
        assert!(c.expect_closed(WAIT).await.is_empty());
    }
    pending.expect_closed(WAIT).await;
    assert!(started.elapsed() < Duration::from_secs(5), "shutdown took {:?}", started.elapsed());
}
