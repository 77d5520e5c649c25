//! Session unit tests: the packets the session builds against `Packet::encode`, and sans-IO flows byte for byte.

use mqtt_codec::{
    Ack, Connect, Disconnect, List, Packet, PacketId, Properties, ProtocolVersion, Publish, QoS, QosPid, Subscribe,
    Subscription, SubscriptionOptions, TopicFilter, TopicName, Unsubscribe, Will,
};

use super::packets;
use super::*;
use crate::{LastWill, Options};
use std::vec::Vec;

const V3: ProtocolVersion = ProtocolVersion::V311;

fn codec(p: Packet<'_>, v: ProtocolVersion) -> Vec<u8> {
    let mut buf = vec![0u8; 1024];
    let n = p.encode(v, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

fn ours(f: impl FnOnce(&mut [u8]) -> Result<usize, mqtt_codec::EncodeError>) -> Vec<u8> {
    let mut buf = vec![0u8; 1024];
    let n = f(&mut buf).unwrap();
    buf.truncate(n);
    buf
}

fn pid(v: u16) -> PacketId {
    PacketId::new(v).unwrap()
}

#[test]
fn connect_matches_codec() {
    let mut opts = Options::new("dev-1");
    opts.keep_alive_secs = 30;
    let plain = Connect {
        protocol: V3,
        clean_start: false,
        keep_alive: 30,
        properties: Properties::empty(),
        client_id: "dev-1",
        will: None,
        username: None,
        password: None,
    };
    assert_eq!(ours(|o| packets::connect(&opts, V3, 256, 4, o)), codec(Packet::Connect(plain), V3));
    opts.clean_start = true;
    opts.username = Some("user");
    opts.password = Some(b"secret");
    opts.will = Some(LastWill { topic: "dev/1/status", payload: b"offline", qos: QoS::AtLeastOnce, retain: true });
    let full = Connect {
        clean_start: true,
        username: Some("user"),
        password: Some(b"secret"),
        will: Some(Will {
            topic: TopicName::new("dev/1/status").unwrap(),
            payload: b"offline",
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties::empty(),
        }),
        ..plain
    };
    assert_eq!(ours(|o| packets::connect(&opts, V3, 256, 4, o)), codec(Packet::Connect(full), V3));
    opts.username = None;
    let mut buf = [0u8; 128];
    assert!(packets::connect(&opts, V3, 256, 4, &mut buf).is_err(), "3.1.1 password needs a user name");
}

#[cfg(feature = "v5")]
#[test]
fn v5_connect_matches_codec() {
    use mqtt_codec::Property;
    let mut opts = Options::new("dev-5");
    opts.session_expiry_secs = 120;
    opts.will = Some(LastWill { topic: "w", payload: b"x", qos: QoS::AtMostOnce, retain: false });
    let props = [Property::SessionExpiryInterval(120), Property::ReceiveMaximum(4), Property::MaximumPacketSize(256)];
    let c = Connect {
        protocol: ProtocolVersion::V5,
        clean_start: false,
        keep_alive: 60,
        properties: Properties::from_list(&props),
        client_id: "dev-5",
        will: Some(Will {
            topic: TopicName::new("w").unwrap(),
            payload: b"x",
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Properties::empty(),
        }),
        username: None,
        password: None,
    };
    let v = ProtocolVersion::V5;
    assert_eq!(ours(|o| packets::connect(&opts, v, 256, 4, o)), codec(Packet::Connect(c), v));
}

fn versions() -> Vec<ProtocolVersion> {
    let mut v = vec![V3];
    if cfg!(feature = "v5") {
        v.push(ProtocolVersion::V5);
    }
    v
}

#[test]
fn client_packets_match_codec() {
    for v in versions() {
        let topic = TopicName::new("a/b").unwrap();
        let filter = TopicFilter::new("a/+").unwrap();
        for (qos, qp) in [
            (QoS::AtMostOnce, QosPid::AtMostOnce),
            (QoS::AtLeastOnce, QosPid::AtLeastOnce(pid(7))),
            (QoS::ExactlyOnce, QosPid::ExactlyOnce(pid(7))),
        ] {
            let p = Publish {
                dup: false,
                qos_pid: qp,
                retain: true,
                topic,
                properties: Properties::empty(),
                payload: b"hi",
            };
            assert_eq!(ours(|o| packets::publish(topic, b"hi", qos, pid(7), true, v, o)), codec(Packet::Publish(p), v));
        }
        let subs = [Subscription { filter, options: SubscriptionOptions::qos(QoS::ExactlyOnce) }];
        let s =
            Subscribe { packet_id: pid(9), properties: Properties::empty(), subscriptions: List::from_slice(&subs) };
        assert_eq!(
            ours(|o| packets::subscribe(pid(9), filter.as_str().as_bytes(), Some(QoS::ExactlyOnce), v, o)),
            codec(Packet::Subscribe(s), v)
        );
        let fs = [filter];
        let u = Unsubscribe { packet_id: pid(10), properties: Properties::empty(), filters: List::from_slice(&fs) };
        assert_eq!(
            ours(|o| packets::subscribe(pid(10), filter.as_str().as_bytes(), None, v, o)),
            codec(Packet::Unsubscribe(u), v)
        );
        let a = Ack::new(pid(3));
        assert_eq!(ours(|o| packets::ack(PacketType::PubAck, pid(3), o)), codec(Packet::PubAck(a), v));
        assert_eq!(ours(|o| packets::ack(PacketType::PubRec, pid(3), o)), codec(Packet::PubRec(a), v));
        assert_eq!(ours(|o| packets::ack(PacketType::PubRel, pid(3), o)), codec(Packet::PubRel(a), v));
        assert_eq!(ours(|o| packets::ack(PacketType::PubComp, pid(3), o)), codec(Packet::PubComp(a), v));
        assert_eq!(ours(packets::pingreq), codec(Packet::PingReq, v));
        assert_eq!(ours(packets::disconnect), codec(Packet::Disconnect(Disconnect::normal()), v));
    }
}

#[test]
fn long_payload_uses_multi_byte_length_and_short_buffer_is_refused() {
    let topic = TopicName::new("t").unwrap();
    let payload = vec![0x5a; 300];
    let p = Publish {
        dup: false,
        qos_pid: QosPid::AtMostOnce,
        retain: false,
        topic,
        properties: Properties::empty(),
        payload: &payload,
    };
    assert_eq!(
        ours(|o| packets::publish(topic, &payload, QoS::AtMostOnce, pid(1), false, V3, o)),
        codec(Packet::Publish(p), V3)
    );
    let mut small = [0u8; 100];
    assert!(matches!(
        packets::publish(topic, &payload, QoS::AtMostOnce, pid(1), false, V3, &mut small),
        Err(mqtt_codec::EncodeError::BufferTooSmall { needed: 306 })
    ));
}

// --- sans-IO flows -------------------------------------------------------------------------------------------

type S<'a> = Session<'a, 4, 2, 32>;

fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

fn drain(s: &mut S<'_>, now: Instant) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    while let Some(n) = s.poll_transmit(now, &mut buf).unwrap() {
        out.push(buf[..n].to_vec());
    }
    out
}

fn opts() -> Options<'static> {
    let mut o = Options::new("c");
    #[cfg(feature = "v5")]
    {
        o.version = V3;
    }
    o.keep_alive_secs = 10;
    o.response_timeout_ms = 2_000;
    o
}

fn connected<'a>(store: &'a mut [u8], session_present: bool) -> S<'a> {
    let mut s = S::new(opts(), store);
    s.connect(t(0));
    assert_eq!(drain(&mut s, t(0)), vec![vec![0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0, 0, 10, 0, 1, b'c']]);
    let connack = [0x20, 2, u8::from(session_present), 0];
    let ev = s.on_packet(t(1), &connack).unwrap();
    assert_eq!(ev, Some(Event::Connected { session_present }));
    s
}

#[test]
fn qos2_outbound_resumes_byte_for_byte_with_dup_then_pubrel() {
    let mut store = [0u8; 128];
    let mut s = connected(&mut store, false);
    let id = s.publish(Message::new("a/b", b"x", QoS::ExactlyOnce)).unwrap().unwrap();
    assert_eq!(id.get(), 1);
    let first = vec![0x34, 8, 0, 3, b'a', b'/', b'b', 0, 1, b'x'];
    assert_eq!(drain(&mut s, t(2)), vec![first.clone()]);
    // Link breaks before PUBREC: on resume, same bytes with DUP=1.
    s.on_connection_lost();
    s.connect(t(10));
    assert_eq!(drain(&mut s, t(10)).len(), 1, "only CONNECT before CONNACK");
    s.on_packet(t(11), &[0x20, 2, 1, 0]).unwrap();
    let mut dup = first.clone();
    dup[0] |= 0x08;
    assert_eq!(drain(&mut s, t(11)), vec![dup]);
    assert_eq!(s.on_packet(t(12), &[0x50, 2, 0, 1]).unwrap(), None);
    assert_eq!(drain(&mut s, t(12)), vec![vec![0x62, 2, 0, 1]]);
    // Link breaks before PUBCOMP: PUBREL is resent, not the PUBLISH.
    s.on_connection_lost();
    s.connect(t(20));
    drain(&mut s, t(20));
    s.on_packet(t(21), &[0x20, 2, 1, 0]).unwrap();
    assert_eq!(drain(&mut s, t(21)), vec![vec![0x62, 2, 0, 1]]);
    let ev = s.on_packet(t(22), &[0x70, 2, 0, 1]).unwrap();
    assert_eq!(ev, Some(Event::Published { pid: id, reason: ReasonCode::Success }));
    assert_eq!(s.pending(), 0);
}

#[test]
fn qos2_inbound_is_delivered_once_across_reconnect() {
    let mut store = [0u8; 128];
    let mut s = connected(&mut store, false);
    let publish = [0x34, 7, 0, 1, b't', 0, 5, b'h', b'i'];
    let ev = s.on_packet(t(2), &publish).unwrap();
    assert!(matches!(
        ev,
        Some(Event::Message(Message { topic: "t", payload: b"hi", qos: QoS::ExactlyOnce, .. }, None))
    ));
    assert_eq!(drain(&mut s, t(2)), vec![vec![0x50, 2, 0, 5]]);
    s.on_connection_lost();
    s.connect(t(10));
    drain(&mut s, t(10));
    s.on_packet(t(11), &[0x20, 2, 1, 0]).unwrap();
    let mut dup = publish;
    dup[0] |= 0x08;
    assert_eq!(s.on_packet(t(12), &dup).unwrap(), None, "redelivery is not delivered again");
    assert_eq!(drain(&mut s, t(12)), vec![vec![0x50, 2, 0, 5]]);
    assert_eq!(s.on_packet(t(13), &[0x62, 2, 0, 5]).unwrap(), None);
    assert_eq!(drain(&mut s, t(13)), vec![vec![0x70, 2, 0, 5]]);
    // After PUBREL the identifier is free: a new message with it is delivered.
    assert!(s.on_packet(t(14), &publish).unwrap().is_some());
}

#[test]
fn keepalive_pings_when_idle_and_times_out_without_pingresp() {
    let mut store = [0u8; 64];
    let mut s = connected(&mut store, false);
    assert_eq!(s.next_deadline(), Some(t(10_000)), "keep alive counts from CONNECT");
    s.poll_timeout(t(9_999)).unwrap();
    assert!(drain(&mut s, t(9_999)).is_empty());
    s.poll_timeout(t(10_000)).unwrap();
    assert_eq!(drain(&mut s, t(10_000)), vec![vec![0xc0, 0]]);
    assert_eq!(s.next_deadline(), Some(t(12_000)));
    s.on_packet(t(10_050), &[0xd0, 0]).unwrap();
    assert_eq!(s.next_deadline(), Some(t(20_000)));
    // Any packet sent restarts the idle clock.
    s.publish(Message::new("t", b"", QoS::AtMostOnce)).unwrap();
    drain(&mut s, t(15_000));
    assert_eq!(s.next_deadline(), Some(t(25_000)));
    s.poll_timeout(t(25_000)).unwrap();
    assert_eq!(drain(&mut s, t(25_000)), vec![vec![0xc0, 0]]);
    s.poll_timeout(t(26_999)).unwrap();
    assert_eq!(s.poll_timeout(t(27_000)), Err(Error::Timeout));
    assert!(!s.is_connected());
}

#[test]
fn connack_timeout_and_refusal() {
    let mut store = [0u8; 64];
    let mut s = S::new(opts(), &mut store);
    s.connect(t(0));
    assert_eq!(s.next_deadline(), None, "the clock starts when CONNECT is handed out");
    drain(&mut s, t(100));
    assert_eq!(s.next_deadline(), Some(t(2_100)));
    assert_eq!(s.poll_timeout(t(2_100)), Err(Error::Timeout));
    s.connect(t(3_000));
    drain(&mut s, t(3_000));
    assert_eq!(s.on_packet(t(3_001), &[0x20, 2, 0, 5]), Err(Error::Refused(ReasonCode::NotAuthorized)));
    assert!(!s.is_connected());
}

#[test]
fn capacity_full_hands_the_value_back() {
    let mut store = [0u8; 48];
    let mut s = S::new(opts(), &mut store);
    let m = Message::new("t", b"0123456789", QoS::AtLeastOnce);
    for _ in 0..2 {
        s.publish(m).unwrap();
    }
    assert_eq!(s.publish(m), Err(Rejected::Full(m)), "store bytes exhausted");
    let small = Message::new("t", b"", QoS::AtMostOnce);
    s.publish(small).unwrap();
    s.publish(small).unwrap();
    assert_eq!(s.publish(small), Err(Rejected::Full(small)), "INFLIGHT entries exhausted");
    assert_eq!(s.publish(Message::new("a/+", b"", QoS::AtMostOnce)).unwrap_err().into_inner().topic, "a/+");
    let a = s.subscribe("a/#", QoS::AtMostOnce).unwrap();
    s.subscribe("b", QoS::AtMostOnce).unwrap();
    assert_eq!(s.subscribe("c", QoS::AtMostOnce), Err(Rejected::Full("c")));
    assert_eq!(s.subscribe("a/#/b", QoS::AtMostOnce), Err(Rejected::Invalid("a/#/b")));
    let long = "x".repeat(33);
    assert_eq!(s.subscribe(&long, QoS::AtMostOnce), Err(Rejected::Invalid(long.as_str())));
    assert_eq!(a.index(), 0);
}

#[test]
fn offline_publishes_go_out_in_order_after_connack_and_subscriptions_are_restored() {
    let mut store = [0u8; 128];
    let mut s = S::new(opts(), &mut store);
    let sub = s.subscribe("cmd/#", QoS::AtLeastOnce).unwrap();
    s.publish(Message::new("t", b"1", QoS::AtMostOnce)).unwrap();
    s.publish(Message::new("t", b"2", QoS::AtLeastOnce)).unwrap();
    s.publish(Message::new("t", b"3", QoS::AtMostOnce)).unwrap();
    s.connect(t(0));
    assert_eq!(drain(&mut s, t(0)).len(), 1);
    s.on_packet(t(1), &[0x20, 2, 0, 0]).unwrap();
    let sent = drain(&mut s, t(1));
    assert_eq!(
        sent,
        vec![
            vec![0x82, 10, 0, 2, 0, 5, b'c', b'm', b'd', b'/', b'#', 1],
            vec![0x30, 4, 0, 1, b't', b'1'],
            vec![0x32, 6, 0, 1, b't', 0, 1, b'2'],
            vec![0x30, 4, 0, 1, b't', b'3'],
        ]
    );
    assert_eq!(
        s.on_packet(t(2), &[0x90, 3, 0, 2, 1]).unwrap(),
        Some(Event::Subscribed { sub, granted: Some(QoS::AtLeastOnce) })
    );
    let ev = s.on_packet(t(3), &[0x30, 7, 0, 5, b'c', b'm', b'd', b'/', b'x']).unwrap();
    assert!(matches!(ev, Some(Event::Message(Message { topic: "cmd/x", .. }, Some(id))) if id == sub));
    // Reconnect without a session: the subscription is sent again, the QoS 1 message resent.
    s.on_connection_lost();
    s.connect(t(10));
    drain(&mut s, t(10));
    s.on_packet(t(11), &[0x20, 2, 0, 0]).unwrap();
    assert_eq!(
        drain(&mut s, t(11)),
        vec![vec![0x82, 10, 0, 3, 0, 5, b'c', b'm', b'd', b'/', b'#', 1], vec![0x3a, 6, 0, 1, b't', 0, 1, b'2']]
    );
    s.unsubscribe(sub);
    assert_eq!(drain(&mut s, t(12)), vec![vec![0xa2, 9, 0, 4, 0, 5, b'c', b'm', b'd', b'/', b'#']]);
    assert_eq!(s.on_packet(t(13), &[0xb0, 2, 0, 4]).unwrap(), Some(Event::Unsubscribed { sub }));
}

#[test]
fn packets_a_server_may_not_send_drop_the_link() {
    for bad in [&[0x10u8, 0][..], &[0x82, 2, 0, 1], &[0xc0, 0], &[0x20, 2, 0, 0], &[0x40, 3, 0, 1, 0]] {
        let mut store = [0u8; 64];
        let mut s = connected(&mut store, false);
        assert!(s.on_packet(t(5), bad).is_err(), "{bad:02x?}");
        assert!(!s.is_connected());
    }
}
