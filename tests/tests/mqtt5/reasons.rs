//! Reason codes on PUBACK/PUBREC (with Reason Strings only when the client allows problem information), and the
//! DISCONNECT a server sends before closing an MQTT 5 connection.

use std::time::Duration;

use mqtt_codec::{Packet, ReasonCode};
use tests::raw::{Qos, RawClient};
use tests::{Settings, start_broker, start_default_broker, unique};

use super::QUIET;
use crate::v5client::{C5, Conn, Pub, WillSpec};

const CLOSE: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puback_and_pubrec_0x10_when_nobody_subscribes() {
    let b = start_default_broker().await;
    let mut c = C5::v5(b.addr, &unique("nomatch")).await;
    let topic = unique("nomatch/t");
    for qos in [1, 2] {
        let (r, _) = c.publish_ack(Pub::new(&topic, b"x", qos)).await;
        assert_eq!(r, ReasonCode::NoMatchingSubscribers, "QoS {qos}");
    }
    c.sub(&topic, 0).await;
    for qos in [1, 2] {
        let (r, _) = c.publish_ack(Pub::new(&topic, b"x", qos)).await;
        assert_eq!(r, ReasonCode::Success, "QoS {qos} with a subscriber");
    }
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_to_a_sys_topic_gets_0x87_and_a_reason_string_only_when_allowed() {
    let b = start_default_broker().await;
    let mut watcher = C5::v5(b.addr, &unique("dollarwatch")).await;
    watcher.sub("$SYS/#", 1).await;
    watcher.sub("$x/#", 1).await;
    for (allow, qos) in [(None, 1), (Some(true), 2), (Some(false), 1), (Some(false), 2)] {
        let mut conn = Conn::new(&unique("dollar"));
        conn.request_problem_information = allow;
        let (mut c, _) = C5::connect(b.addr, &conn).await;
        let (r, f) = c.publish_ack(Pub::new("$SYS/forbidden", b"x", qos)).await;
        assert_eq!(r, ReasonCode::NotAuthorized, "QoS {qos}");
        let text = match f.packet() {
            Packet::PubAck(a) | Packet::PubRec(a) => a.properties.reason_string().map(str::to_owned),
            _ => unreachable!(),
        };
        if allow == Some(false) {
            assert_eq!(text, None, "Request Problem Information 0: no Reason String");
        } else {
            assert!(text.is_some_and(|t| !t.is_empty()), "a Reason String on the error ack");
        }
        c.disconnect().await;
    }
    watcher.expect_silence(QUIET).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_to_a_topic_with_too_many_levels_gets_0x90() {
    let b = start_default_broker().await;
    let mut c = C5::v5(b.addr, &unique("levels")).await;
    let ok = vec!["l"; 1024].join("/");
    let deep = vec!["l"; 1025].join("/");
    c.sub("#", 1).await;
    let (r, _) = c.publish_ack(Pub::new(&ok, b"x", 1)).await;
    assert_eq!(r, ReasonCode::Success, "1024 levels (the default limit) are allowed");
    let f = c.recv_publish().await;
    c.ack(&f).await;
    for qos in [1, 2] {
        let (r, _) = c.publish_ack(Pub::new(&deep, b"x", qos)).await;
        assert_eq!(r, ReasonCode::TopicNameInvalid, "1025 levels, QoS {qos}");
    }
    c.expect_silence(QUIET).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_gets_0x97_when_every_matching_subscriber_queue_is_full() {
    let mut settings = Settings::default();
    settings.limits.max_inflight_messages = 1;
    settings.limits.max_queued_messages = 1;
    let b = start_broker(settings).await;
    let topic = unique("full/t");
    let mut slow = C5::v5(b.addr, &unique("fullslow")).await;
    slow.sub(&topic, 1).await;
    let mut p = C5::v5(b.addr, &unique("fullpub")).await;
    // One in flight (never acknowledged), one queued: the third finds the queue full.
    p.publish_ok(Pub::new(&topic, b"1", 1)).await;
    let f = slow.recv_publish().await;
    assert_eq!(f.text(), "1");
    p.publish_ok(Pub::new(&topic, b"2", 1)).await;
    for qos in [1, 2] {
        let (r, f) = p.publish_ack(Pub::new(&topic, b"3", qos)).await;
        assert_eq!(r, ReasonCode::QuotaExceeded, "QoS {qos}: {f:?}");
    }
    // A 3.1.1 publisher cannot be told: a plain PUBACK.
    let mut old = RawClient::connect_v311(b.addr, &unique("fullold")).await;
    old.publish_acked(&topic, b"4", Qos::AtLeastOnce, false).await;
    assert!(b.stats().messages_dropped >= 3);
    // With another subscriber that has room the message is taken: success.
    let mut fast = C5::v5(b.addr, &unique("fullfast")).await;
    fast.sub(&topic, 1).await;
    let (r, _) = p.publish_ack(Pub::new(&topic, b"5", 1)).await;
    assert_eq!(r, ReasonCode::Success);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packet_gets_disconnect_0x81() {
    let b = start_default_broker().await;
    let mut c = C5::v5(b.addr, &unique("malformed")).await;
    // PINGREQ with a byte of body.
    c.send_raw(&[0xc0, 0x01, 0x00]).await;
    c.expect_disconnect(ReasonCode::MalformedPacket, CLOSE).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_connect_gets_disconnect_0x82() {
    let b = start_default_broker().await;
    let id = unique("twice");
    let mut c = C5::v5(b.addr, &id).await;
    c.send_raw(&Conn::new(&id).encode()).await;
    c.expect_disconnect(ReasonCode::ProtocolError, CLOSE).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_timeout_gets_disconnect_0x8d() {
    let b = start_default_broker().await;
    let (mut c, _) = C5::connect(b.addr, &Conn::new(&unique("ka")).keep_alive(1)).await;
    let t0 = std::time::Instant::now();
    c.expect_disconnect(ReasonCode::KeepAliveTimeout, Duration::from_secs(4)).await;
    assert!(t0.elapsed() >= Duration::from_millis(1400), "not before 1.5 x keep alive: {:?}", t0.elapsed());
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_takeover_gets_disconnect_0x8e() {
    let b = start_default_broker().await;
    let id = unique("takeover");
    let mut first = C5::v5(b.addr, &id).await;
    let (mut second, _) = C5::connect(b.addr, &Conn::new(&id)).await;
    first.expect_disconnect(ReasonCode::SessionTakenOver, CLOSE).await;
    second.send(&Packet::PingReq).await;
    assert!(matches!(second.recv().await.packet(), Packet::PingResp));
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_shutdown_sends_disconnect_0x8b_to_v5_clients() {
    let b = start_default_broker().await;
    let mut c = C5::v5(b.addr, &unique("shutdown")).await;
    let mut old = RawClient::connect_v311(b.addr, &unique("shutdown311")).await;
    b.shutdown().await;
    c.expect_disconnect(ReasonCode::ServerShuttingDown, CLOSE).await;
    // A 3.1.1 client has no DISCONNECT from the server: the socket just closes.
    assert!(old.expect_closed(CLOSE).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_0x04_publishes_the_will_and_a_normal_one_does_not() {
    let b = start_default_broker().await;
    let topic = unique("will04/t");
    let mut watcher = C5::v5(b.addr, &unique("will04watch")).await;
    watcher.sub(&topic, 1).await;
    for (reason, sent) in [(ReasonCode::Success, false), (ReasonCode::DisconnectWithWillMessage, true)] {
        let will = WillSpec { topic: topic.clone(), payload: b"bye".to_vec(), qos: 1, ..WillSpec::default() };
        let (c, _) = C5::connect(b.addr, &Conn::new(&unique("will04")).will(will)).await;
        c.disconnect_with(reason, &[]).await;
        if sent {
            let f = watcher.recv_publish().await;
            assert_eq!(f.text(), "bye");
            watcher.ack(&f).await;
        } else {
            watcher.expect_silence(QUIET).await;
        }
    }
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reason_string_is_left_out_when_it_would_exceed_the_client_maximum_packet_size() {
    let b = start_default_broker().await;
    let (mut c, _) = C5::connect(b.addr, &Conn::new(&unique("rsmax")).max_packet(16)).await;
    let (r, f) = c.publish_ack(Pub::new("$SYS/t", b"x", 1)).await;
    assert_eq!(r, ReasonCode::NotAuthorized);
    assert!(
        f.bytes.len() <= 16,
        "PUBACK of {} bytes exceeds the client's Maximum Packet Size 16 [MQTT-3.4.2-2]: {f:?}",
        f.bytes.len()
    );
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_topic_with_a_wildcard_is_refused() {
    let b = start_default_broker().await;
    let topic = unique("rtw/t");
    let mut sub = C5::v5(b.addr, &unique("rtwsub")).await;
    sub.sub(&topic, 1).await;
    let mut c = C5::v5(b.addr, &unique("rtw")).await;
    let mut p = Pub::new(&topic, b"x", 1);
    p.pid = 1;
    p.response_topic = Some("replies/X".into());
    // The codec will not encode a wildcard there; patch it on the wire.
    let mut bytes = p.encode(c.version);
    let at = bytes.windows(9).position(|w| w == b"replies/X").unwrap() + 8;
    bytes[at] = b'+';
    c.send_raw(&bytes).await;
    // [MQTT-3.3.2-14]: the Response Topic must not contain wildcards; a server treats it as an error.
    let seen = c.expect_closed(CLOSE).await;
    let last = seen.last().and_then(crate::v5client::Frame::disconnect_reason);
    assert!(
        matches!(last, Some(ReasonCode::ProtocolError | ReasonCode::MalformedPacket | ReasonCode::TopicNameInvalid)),
        "expected DISCONNECT 0x82 (or 0x81/0x90), got {seen:?}"
    );
    sub.expect_silence(QUIET).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_gets_disconnect_0x97_when_configured() {
    let mut settings = Settings::default();
    settings.limits.max_inflight_messages = 1;
    settings.limits.max_queued_messages = 1;
    settings.limits.disconnect_slow_consumers = true;
    let b = start_broker(settings).await;
    let topic = unique("slowkick/t");
    let slow_id = unique("slowkick");
    let mut slow = C5::v5(b.addr, &slow_id).await;
    slow.sub(&topic, 1).await;
    let mut p = C5::v5(b.addr, &unique("slowkickpub")).await;
    // One in flight (never acknowledged), one queued: the third overflows the queue and ends the connection.
    p.publish_ok(Pub::new(&topic, b"1", 1)).await;
    assert_eq!(slow.recv_publish().await.text(), "1");
    p.publish_ok(Pub::new(&topic, b"2", 1)).await;
    let (r, _) = p.publish_ack(Pub::new(&topic, b"3", 1)).await;
    assert_eq!(r, ReasonCode::QuotaExceeded);
    slow.expect_disconnect(ReasonCode::QuotaExceeded, CLOSE).await;
    // The publisher is not affected.
    p.send(&Packet::PingReq).await;
    assert!(matches!(p.recv().await.packet(), Packet::PingResp));
    b.shutdown().await;
}
