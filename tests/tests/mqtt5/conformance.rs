//! MQTT 5 cases that outside testing found wrong: packets that exactly fit the client's Maximum Packet Size, a
//! CONNACK for a tiny Maximum Packet Size, `$` topics, and acknowledgements of the wrong QoS flow.

use std::time::Duration;

use mqtt_codec::{Ack, Packet, ProtocolVersion, ReasonCode};
use tests::{start_default_broker, unique};

use super::QUIET;
use crate::v5client::{C5, Conn, Pub, pid};

const CLOSE: Duration = Duration::from_secs(2);

/// A payload that makes the QoS 1 PUBLISH of `topic` (no properties) exactly `size` bytes long, as the broker sends
/// it to a subscriber.
fn payload_for(topic: &str, size: usize) -> Vec<u8> {
    let len = |n: usize| Pub { pid: 1, ..Pub::new(topic, &vec![b'p'; n], 1) }.encode(ProtocolVersion::V5).len();
    // The Remaining Length may take one byte more than it did for the empty payload.
    let mut n = size - len(0);
    while len(n) > size {
        n -= 1;
    }
    assert_eq!(len(n), size, "no payload makes a packet of exactly {size} bytes");
    vec![b'p'; n]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_exactly_fits_the_client_maximum_packet_size_is_delivered() {
    const MAX: u32 = 200;
    let b = start_default_broker().await;
    let mut publisher = C5::v5(b.addr, &unique("fitpub")).await;
    // Without topic aliases, alone (encoded for it) and beside another subscriber (one encoding shared by both), and
    // with aliases (encoded per subscriber, an alias only where it still fits).
    for (aliases, fanned_out) in [(None, false), (None, true), (Some(5), true)] {
        let topic = unique("fit/t");
        let mut conn = Conn::new(&unique("fit")).max_packet(MAX);
        conn.topic_alias_maximum = aliases;
        let (mut sub, _) = C5::connect(b.addr, &conn).await;
        sub.sub(&topic, 1).await;
        let mut other = C5::v5(b.addr, &unique("fitother")).await;
        if fanned_out {
            other.sub(&topic, 1).await;
        }
        let exact = payload_for(&topic, MAX as usize);
        let oversized = b.stats().messages_oversized;
        publisher.publish_ok(Pub::new(&topic, &exact, 1)).await;
        publisher.publish_ok(Pub::new(&topic, &[exact.as_slice(), b"+"].concat(), 1)).await;
        publisher.publish_ok(Pub::new(&topic, b"small", 1)).await;
        let f = sub.recv_publish().await;
        assert_eq!(
            f.bytes.len(),
            MAX as usize,
            "aliases {aliases:?}, fanned out {fanned_out}: the packet of exactly {MAX} bytes arrives"
        );
        assert_eq!(f.payload(), exact);
        sub.ack(&f).await;
        // One byte more exceeds the limit [MQTT-3.1.2-25]: never sent, counted.
        let f = sub.recv_publish().await;
        assert_eq!((f.text().as_str(), sub.topic_of(&f)), ("small", topic.clone()), "aliases {aliases:?}");
        sub.ack(&f).await;
        sub.expect_silence(QUIET).await;
        b.wait_stats("one oversized", |s| s.messages_oversized == oversized + 1).await;
        if fanned_out {
            for _ in 0..3 {
                let f = other.recv_publish().await;
                other.ack(&f).await;
            }
        }
        sub.disconnect().await;
        other.disconnect().await;
    }
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connack_leaves_out_properties_that_would_exceed_a_tiny_maximum_packet_size() {
    let b = start_default_broker().await;
    // The default CONNACK carries Maximum Packet Size, Receive Maximum and Topic Alias Maximum: 20 bytes.
    let (_, roomy) = C5::connect(b.addr, &Conn::new(&unique("roomy"))).await;
    assert!(roomy.bytes.len() > 8, "{roomy:?}");
    for max in [5u32, 8, 12] {
        let (mut c, f) = C5::connect(b.addr, &Conn::new(&unique("tiny")).max_packet(max)).await;
        assert!(
            f.bytes.len() <= max as usize,
            "CONNACK of {} bytes for Maximum Packet Size {max}: {f:?}",
            f.bytes.len()
        );
        // Still a working connection.
        c.send(&Packet::PingReq).await;
        assert!(matches!(c.recv().await.packet(), Packet::PingResp));
    }
    // An assigned client identifier cannot be left out: when it does not fit, nothing may be sent, and the
    // connection closes without CONNACK [MQTT-3.1.2-24].
    let mut c = C5::tcp(b.addr).await;
    c.send_raw(&Conn::new("").max_packet(8).encode()).await;
    let seen = c.expect_closed(CLOSE).await;
    assert!(seen.is_empty(), "sent {seen:?}");
    b.wait_stats("the refused client gone", |s| s.clients_connected == 0).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dollar_topics_are_open_to_clients_except_sys_and_share() {
    let b = start_default_broker().await;
    let thing = unique("thing");
    let shadow = format!("$aws/things/{thing}/shadow/update");
    let (mut everything, _) = C5::connect(b.addr, &Conn::new(&unique("all"))).await;
    everything.sub("#", 1).await;
    let mut aws = C5::v5(b.addr, &unique("aws")).await;
    aws.sub("$aws/#", 1).await;
    let mut c = C5::v5(b.addr, &unique("dollarpub")).await;
    let (r, _) = c.publish_ack(Pub::new(&shadow, b"{}", 1)).await;
    assert_eq!(r, ReasonCode::Success);
    let f = aws.recv_publish().await;
    assert_eq!(aws.topic_of(&f), shadow);
    aws.ack(&f).await;
    let (r, _) = c.publish_ack(Pub::new(&format!("$other/{thing}"), b"{}", 2)).await;
    assert_eq!(r, ReasonCode::NoMatchingSubscribers, "`#` does not match a `$` topic");
    for (topic, want, text) in [
        (format!("$SYS/{thing}"), ReasonCode::NotAuthorized, "$SYS topics are reserved for the broker"),
        (format!("$share/g/{thing}"), ReasonCode::TopicNameInvalid, "$share/ starts a shared subscription filter"),
    ] {
        for qos in [1, 2] {
            let (r, f) = c.publish_ack(Pub::new(&topic, b"x", qos)).await;
            assert_eq!(r, want, "{topic} QoS {qos}");
            let reason = match f.packet() {
                Packet::PubAck(a) | Packet::PubRec(a) => a.properties.reason_string().map(str::to_owned),
                _ => None,
            };
            assert!(reason.is_some_and(|r| r.starts_with(text)), "{topic}: {f:?}");
        }
    }
    everything.expect_silence(QUIET).await;
    aws.expect_silence(QUIET).await;
    b.shutdown().await;
}

/// A subscriber with one QoS 1 and one QoS 2 message in flight, and their packet ids.
async fn both_flows_in_flight(b: &tests::TestBroker) -> (C5, u16, u16) {
    let topic = unique("acks5/t");
    let mut sub = C5::v5(b.addr, &unique("acks5")).await;
    sub.sub(&topic, 2).await;
    let mut p = C5::v5(b.addr, &unique("acks5pub")).await;
    p.publish_ok(Pub::new(&topic, b"one", 1)).await;
    p.publish_ok(Pub::new(&topic, b"two", 2)).await;
    let one = sub.recv_publish().await.publish().qos_pid.packet_id().unwrap().get();
    let two = sub.recv_publish().await.publish().qos_pid.packet_id().unwrap().get();
    (sub, one, two)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_of_the_other_qos_flow_gets_disconnect_0x82() {
    let b = start_default_broker().await;
    let (mut sub, qos1, _) = both_flows_in_flight(&b).await;
    sub.send(&Packet::PubComp(Ack::new(pid(qos1)))).await;
    sub.expect_disconnect(ReasonCode::ProtocolError, CLOSE).await;
    let (mut sub, _, qos2) = both_flows_in_flight(&b).await;
    sub.puback(qos2).await;
    sub.expect_disconnect(ReasonCode::ProtocolError, CLOSE).await;
    // Acknowledgements for ids not in flight stay harmless.
    let (mut sub, qos1, qos2) = both_flows_in_flight(&b).await;
    sub.puback(qos1).await;
    sub.puback(qos1).await;
    sub.send(&Packet::PubComp(Ack::new(pid(999)))).await;
    sub.send(&Packet::PubRec(Ack::new(pid(qos2)))).await;
    assert!(matches!(sub.recv().await.packet(), Packet::PubRel(a) if a.packet_id.get() == qos2));
    sub.send(&Packet::PubComp(Ack::new(pid(qos2)))).await;
    sub.send(&Packet::PubComp(Ack::new(pid(qos2)))).await;
    sub.send(&Packet::PingReq).await;
    assert!(matches!(sub.recv().await.packet(), Packet::PingResp));
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_too_large_for_the_client_are_logged_at_info_once_per_interval_with_a_count() {
    let Some(b) = tests::process::BrokerProcess::start(&[]) else { return };
    let topic = unique("biglog/t");
    let id = unique("biglog");
    let (mut sub, _) = C5::connect(b.addr, &Conn::new(&id).max_packet(64)).await;
    sub.sub(&topic, 1).await;
    let mut p = C5::v5(b.addr, &unique("biglogpub")).await;
    for _ in 0..10 {
        p.publish_ok(Pub::new(&topic, &[b'x'; 100], 1)).await;
    }
    p.publish_ok(Pub::new(&topic, b"fits", 1)).await;
    let f = sub.recv_publish().await;
    assert_eq!(f.text(), "fits", "the ten large ones were dropped first");
    let deadline = tokio::time::Instant::now() + tests::WAIT;
    let log = loop {
        let log = b.log_text();
        if log.contains("larger than the client's Maximum Packet Size") {
            break log;
        }
        assert!(tokio::time::Instant::now() < deadline, "no drop logged:\n{log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("larger than the client's Maximum Packet Size")).collect();
    // The first drop is logged at once; those after it fall in the same ten seconds.
    assert_eq!(lines.len(), 1, "{log}");
    let line = lines[0];
    assert!(line.contains(&format!("client_id=\"{id}\"")) && line.contains("max_packet_size=64"), "{line}");
    // The drops the first line stands for: the ones written out in the first batch (at least one).
    let count: u64 = line.split("count=").nth(1).and_then(|r| r.split(' ').next()).unwrap().parse().unwrap();
    assert!((1..=10).contains(&count), "{line}");
}
