//! Malformed and hostile input over raw sockets: each case closes that connection (MQTT 3.1.1 has no reason
//! codes to send), and the broker keeps serving everyone else.

use std::time::Duration;

use tests::raw::{ConnectOpts, Qos, RawClient, Rx};
use tests::{Settings, TestBroker, WAIT, start_broker, unique};

/// A PUBLISH with a raw topic field.
fn publish_with_topic(flags: u8, topic: &[u8], pid: Option<u16>, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    body.extend_from_slice(topic);
    if let Some(pid) = pid {
        body.extend_from_slice(&pid.to_be_bytes());
    }
    body.extend_from_slice(payload);
    assert!(body.len() < 128);
    let mut v = vec![0x30 | flags, body.len() as u8];
    v.extend_from_slice(&body);
    v
}

struct Case {
    name: &'static str,
    /// Send CONNECT first.
    connected: bool,
    bytes: Vec<u8>,
}

fn cases() -> Vec<Case> {
    let mut bad_name = ConnectOpts::new(&unique("bad-name")).encode();
    bad_name[4..8].copy_from_slice(b"MQTX");
    let c = |name, connected, bytes: Vec<u8>| Case { name, connected, bytes };
    vec![
        c("bad protocol name", false, bad_name),
        c("missing CONNECT (PUBLISH first)", false, publish_with_topic(0, b"a/b", None, b"x")),
        c("missing CONNECT (SUBSCRIBE first)", false, vec![0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'#', 0x00]),
        c("packet over the max size", true, {
            let mut v = vec![0x30, 0x80, 0x10]; // remaining length 2048 > max 1024
            v.extend_from_slice(&[0u8; 64]);
            v
        }),
        c("invalid UTF-8 topic", true, publish_with_topic(0, &[b'a', 0xc3, 0x28], None, b"x")),
        c("UTF-16 surrogate in topic", true, publish_with_topic(0, &[0xed, 0xa0, 0x80], None, b"x")),
        c("NUL in topic", true, publish_with_topic(0, b"a\0b", None, b"x")),
        c("empty topic", true, publish_with_topic(0, b"", None, b"x")),
        c("+ wildcard in a PUBLISH topic", true, publish_with_topic(0, b"a/+/c", None, b"x")),
        c("# wildcard in a PUBLISH topic", true, publish_with_topic(0x02, b"a/#", Some(1), b"x")),
        c("PUBLISH QoS 3", true, publish_with_topic(0x06, b"a", Some(1), b"x")),
        c("QoS 1 PUBLISH with packet id 0", true, publish_with_topic(0x02, b"a", Some(0), b"x")),
        c("PUBLISH QoS 0 with DUP=1", true, publish_with_topic(0x08, b"a", None, b"x")),
        c("remaining length shorter than the topic", true, vec![0x30, 0x02, 0x00, 0x05, b'a']),
        c("reserved packet type 0", true, vec![0x00, 0x00]),
        c("AUTH in MQTT 3.1.1", true, vec![0xf0, 0x00]),
        c("varint over four bytes", true, vec![0x30, 0xff, 0xff, 0xff, 0xff, 0x01]),
        c("SUBSCRIBE with flags 0000", true, vec![0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00]),
        c("SUBSCRIBE without filters", true, vec![0x82, 0x02, 0x00, 0x01]),
        c("SUBSCRIBE asking QoS 3", true, vec![0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x03]),
        c("SUBSCRIBE filter a/#/b", true, vec![0x82, 0x0a, 0x00, 0x01, 0x00, 0x05, b'a', b'/', b'#', b'/', b'b', 0x00]),
        c("UNSUBSCRIBE filter a+", true, vec![0xa2, 0x06, 0x00, 0x01, 0x00, 0x02, b'a', b'+']),
        c("PUBREL with flags 0000", true, vec![0x60, 0x02, 0x00, 0x01]),
        c("CONNACK from a client", true, vec![0x20, 0x02, 0x00, 0x00]),
        c("SUBACK from a client", true, vec![0x90, 0x03, 0x00, 0x01, 0x00]),
        c("PINGRESP from a client", true, vec![0xd0, 0x00]),
        c("second CONNECT", true, ConnectOpts::new(&unique("again")).encode()),
    ]
}

/// A subscriber and a publisher that must keep working while the hostile clients come and go.
async fn bystanders(b: &TestBroker, topic: &str) -> (RawClient, RawClient) {
    let mut sub = RawClient::connect_v311(b.addr, &unique("bystander-sub")).await;
    sub.subscribe_one(topic, Qos::AtLeastOnce).await;
    let publisher = RawClient::connect_v311(b.addr, &unique("bystander-pub")).await;
    (sub, publisher)
}

async fn round_trip(sub: &mut RawClient, publisher: &mut RawClient, topic: &str, text: &str) {
    publisher.publish_acked(topic, text.as_bytes(), Qos::AtLeastOnce, false).await;
    let p = sub.recv_publish().await;
    assert_eq!(p.text(), text);
    sub.puback(p.pid.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_malformed_packet_closes_only_its_connection() {
    let mut settings = Settings::default();
    settings.limits.max_packet_size = 1024;
    let b = start_broker(settings).await;
    let topic = unique("calm/t");
    let (mut sub, mut publisher) = bystanders(&b, &topic).await;

    let mut failures = Vec::new();
    for case in cases() {
        let mut c = if case.connected {
            RawClient::connect_v311(b.addr, &unique("hostile")).await
        } else {
            RawClient::tcp(b.addr).await
        };
        c.send_raw(&case.bytes).await;
        // A close is the only answer: no CONNACK, no acknowledgement, nothing routed.
        match c.closed_within(Duration::from_secs(2)).await {
            Ok(seen) if seen.is_empty() => {}
            Ok(seen) => failures.push(format!("{}: closed, but first sent {seen:?}", case.name)),
            Err(seen) => failures.push(format!("{}: still open after 2 s; sent {seen:?}", case.name)),
        }
        round_trip(&mut sub, &mut publisher, &topic, case.name).await;
    }
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
    sub.expect_silence(Duration::from_millis(200)).await;
    b.wait_stats("only the bystanders connected", |s| s.clients_connected == 2).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubrel_for_an_unknown_id_is_answered_with_pubcomp() {
    // MQTT 3.1.1 4.3.3: the receiver answers every PUBREL with PUBCOMP, even for an id it no longer holds (its
    // PUBCOMP may have been lost), so this is no protocol violation: the connection stays up.
    let b = start_broker(Settings::default()).await;
    let mut c = RawClient::connect_v311(b.addr, &unique("stray-rel")).await;
    c.pubrel(4242).await;
    assert_eq!(c.recv().await, Rx::PubComp(4242));
    c.assert_alive().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_floods_do_not_disturb_other_clients() {
    // Noise may start like a CONNECT with a long body: the CONNECT deadline closes those.
    let mut settings = Settings::default();
    settings.limits.connect_timeout = Duration::from_secs(1);
    let b = start_broker(settings).await;
    let topic = unique("flood/t");
    let (mut sub, mut publisher) = bystanders(&b, &topic).await;
    // Several connections at once sending 64 KiB of noise each (deterministic xorshift bytes).
    let mut tasks = Vec::new();
    for n in 0..8u64 {
        let addr = b.addr;
        tasks.push(tokio::spawn(async move {
            let mut c = RawClient::tcp(addr).await;
            let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ n;
            let noise: Vec<u8> = (0..65536)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = c.try_send_raw(&noise).await;
            c.expect_closed(WAIT).await;
        }));
    }
    round_trip(&mut sub, &mut publisher, &topic, "during the flood").await;
    for t in tasks {
        tests::within("a noisy connection to be closed", t).await.unwrap();
    }
    round_trip(&mut sub, &mut publisher, &topic, "after the flood").await;
    b.wait_stats("only the bystanders connected", |s| s.clients_connected == 2).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_split_byte_by_byte_or_coalesced_are_framed_correctly() {
    let b = start_broker(Settings::default()).await;
    let topic = unique("framing/t");
    let (mut sub, mut publisher) = bystanders(&b, &topic).await;

    // Byte by byte: CONNECT, then a QoS 1 PUBLISH, each byte its own write.
    let mut slow = RawClient::tcp(b.addr).await;
    let mut stream = ConnectOpts::new(&unique("dribble")).encode();
    stream.extend(tests::raw::publish_bytes(
        tests::raw::Version::V311,
        &topic,
        b"dribbled",
        Qos::AtLeastOnce,
        3,
        false,
        false,
    ));
    for byte in stream {
        slow.send_raw(&[byte]).await;
    }
    assert_eq!(slow.recv().await, Rx::ConnAck { session_present: false, code: 0 });
    assert_eq!(slow.recv().await, Rx::PubAck(3));
    let p = sub.recv_publish().await;
    assert_eq!(p.text(), "dribbled");
    sub.puback(p.pid.unwrap()).await;

    // Coalesced: CONNECT, SUBSCRIBE, three PUBLISH and PINGREQ in one write.
    let own = unique("coalesced/t");
    let v = tests::raw::Version::V311;
    let mut burst = ConnectOpts::new(&unique("burst")).encode();
    let filter_len = own.len() as u16;
    let mut subscribe = vec![0x82, (2 + 2 + own.len() + 1) as u8, 0x00, 0x07];
    subscribe.extend_from_slice(&filter_len.to_be_bytes());
    subscribe.extend_from_slice(own.as_bytes());
    subscribe.push(0x01);
    burst.extend(subscribe);
    for (i, qos) in [Qos::AtMostOnce, Qos::AtLeastOnce, Qos::ExactlyOnce].into_iter().enumerate() {
        burst.extend(tests::raw::publish_bytes(v, &own, format!("b{i}").as_bytes(), qos, 10 + i as u16, false, false));
    }
    burst.extend([0xc0, 0x00]);
    let mut fast = RawClient::tcp(b.addr).await;
    fast.send_raw(&burst).await;
    let mut got = Vec::new();
    while got.len() < 8 {
        got.push(fast.recv().await);
    }
    let expect_in_order = [
        Rx::ConnAck { session_present: false, code: 0 },
        Rx::SubAck { pid: 7, codes: vec![1] },
        Rx::PubAck(11),
        Rx::PubRec(12),
        Rx::PingResp,
    ];
    let acks: Vec<Rx> = got.iter().filter(|p| !matches!(p, Rx::Publish(_))).cloned().collect();
    assert_eq!(acks, expect_in_order);
    let texts: Vec<String> =
        got.iter().filter_map(|p| if let Rx::Publish(p) = p { Some(p.text()) } else { None }).collect();
    assert_eq!(texts, ["b0", "b1", "b2"], "its own messages, in order");
    round_trip(&mut sub, &mut publisher, &topic, "still fine").await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_its_socket_blocks_nobody() {
    let b = start_broker(Settings::default()).await;
    let topic = unique("stalled/t");
    // This one subscribes and then never reads again: its TCP buffers fill up.
    let stalled_id = unique("stalled");
    let mut stalled = RawClient::connect_v311(b.addr, &stalled_id).await;
    stalled.subscribe_one(&topic, Qos::AtMostOnce).await;
    let (mut sub, mut publisher) = bystanders(&b, &topic).await;
    let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let progress = received.clone();
    let reader = tokio::spawn(async move {
        let mut n = 0usize;
        while n < 4000 {
            let p = sub.recv_publish().await;
            if let Some(id) = p.pid {
                sub.puback(id).await;
            }
            n += 1;
            progress.store(n, std::sync::atomic::Ordering::Relaxed);
        }
        sub
    });
    // 4000 x 2 KiB = 8 MiB: far more than the socket buffers of the stalled client hold. The publisher keeps within
    // 200 messages of the reading subscriber: QoS 0 to a consumer that falls 1000 messages behind is dropped by
    // design, and this test is about the stalled client holding up nobody, not about outrunning the reader.
    let payload = vec![b'z'; 2048];
    for i in 0..4000usize {
        if i % 200 == 0 {
            let caught_up = async {
                while received.load(std::sync::atomic::Ordering::Relaxed) + 200 < i {
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
            };
            tests::within_for(2 * WAIT, "the reading subscriber to keep up", caught_up).await;
        }
        publisher.publish_acked(&topic, &payload, Qos::AtMostOnce, false).await;
    }
    publisher.assert_alive().await;
    let _sub = tests::within_for(2 * WAIT, "the reading subscriber to get all 4000", reader).await.unwrap();
    // The stalled client's socket and then its queue filled; the overflow is dropped and counted against it alone.
    let s = b.broker.session_stats(&stalled_id).unwrap();
    assert!(s.queued_messages == 1000 && s.dropped_messages > 0, "the stalled client did not back up: {s:?}");
    assert_eq!(b.stats().messages_dropped, s.dropped_messages);
    b.shutdown().await;
}

/// At the default `info` level a plain TCP connection has no span (it would cost about 500 bytes per client), so the
/// line of a connection that ends with an error names the peer and the client itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_for_an_error_is_logged_with_its_peer_and_client_id() {
    let Some(b) = tests::process::BrokerProcess::start(&[]) else { return };
    let id = unique("logged");
    let mut c = RawClient::connect_v311(b.addr, &id).await;
    let local = c.local_addr();
    c.send_raw(&publish_with_topic(0, b"a/#", None, b"x")).await;
    c.expect_closed(WAIT).await;
    let want_peer = format!("peer={local}");
    let want_id = format!("client_id=\"{id}\"");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let log = b.log_text();
        let line = log.lines().find(|l| l.contains("connection closed") && l.contains(&want_id));
        if let Some(line) = line {
            assert!(line.contains(&want_peer) && line.contains("wildcard"), "{line}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no `connection closed` line for {id}:\n{log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
