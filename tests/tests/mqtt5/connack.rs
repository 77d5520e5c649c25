//! CONNECT/CONNACK: protocol level selection and mixed versions, what CONNACK advertises, session expiry, Receive
//! Maximum and Maximum Packet Size both ways, Assigned Client Identifier, Server Keep Alive.

use std::time::Duration;

use mqtt_codec::{Packet, Property, ProtocolVersion, QoS, ReasonCode};
use tests::raw::{ConnectOpts, RawClient, Rx};
use tests::{Settings, start_broker, start_default_broker, unique};

use super::QUIET;
use crate::v5client::{C5, Conn, Pub, user_props};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_level_selects_31_311_and_5_on_one_listener() {
    let b = start_default_broker().await;
    for (version, level) in [(ProtocolVersion::V31, 3u8), (ProtocolVersion::V311, 4), (ProtocolVersion::V5, 5)] {
        let c = Conn { version, ..Conn::new(&unique(&format!("lvl{level}"))) };
        let (mut s, ack) = C5::connect(b.addr, &c).await;
        if level == 5 {
            // MQTT 5 CONNACK: flags, reason code, then a property block.
            assert_eq!(ack.bytes[0], 0x20);
            assert!(ack.bytes.len() > 4 && ack.bytes[4] > 0, "v5 CONNACK with properties: {:02x?}", ack.bytes);
        } else {
            assert_eq!(ack.bytes, vec![0x20, 0x02, 0x00, 0x00], "3.x CONNACK for level {level}");
        }
        // The session speaks the negotiated version: a SUBACK in that version's format.
        let topic = unique("lvl/t");
        s.sub(&topic, 1).await;
        s.disconnect().await;
    }
    // An unknown level gets the 3.1.1 refusal "unacceptable protocol version".
    let mut bytes = ConnectOpts::new(&unique("lvl6")).encode();
    let level_at = bytes.windows(4).position(|w| w == b"MQTT").unwrap() + 4;
    bytes[level_at] = 6;
    let mut raw = RawClient::tcp(b.addr).await;
    raw.send_raw(&bytes).await;
    assert_eq!(raw.recv().await, Rx::ConnAck { session_present: false, code: 1 });
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_subscriber_gets_v5_message_without_properties_and_back() {
    let b = start_default_broker().await;
    let topic = unique("mixed/t");
    let mut old = RawClient::connect_v311(b.addr, &unique("old")).await;
    old.subscribe_one(&topic, QoS::AtLeastOnce).await;
    let mut new = C5::v5(b.addr, &unique("new")).await;
    new.sub(&topic, 1).await;

    // v5 -> v3.1.1: the 3.1.1 decoder (which knows no properties) takes it byte for byte.
    let mut p = Pub::new(&topic, b"from-v5", 1).user("k", "v").expiry(100);
    p.content_type = Some("text/plain".into());
    new.publish_ok(p).await;
    let got = old.recv_publish().await;
    assert_eq!(
        (got.topic.as_str(), got.payload.as_slice(), got.qos),
        (topic.as_str(), &b"from-v5"[..], QoS::AtLeastOnce)
    );
    old.puback(got.pid.unwrap()).await;
    let own = new.recv_publish().await;
    assert_eq!(user_props(&own.publish().properties), vec![("k".into(), "v".into())]);
    new.ack(&own).await;

    // v3.1.1 -> v5: a v5 PUBLISH with an empty property block.
    old.publish_acked(&topic, b"from-v311", QoS::AtLeastOnce, false).await;
    let f = new.recv_publish().await;
    let p = f.publish();
    assert_eq!((p.payload, p.topic.as_str()), (&b"from-v311"[..], topic.as_str()));
    assert!(p.properties.is_empty(), "no properties invented: {:?}", p.properties);
    new.ack(&f).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connack_advertises_the_default_capabilities() {
    let b = start_default_broker().await;
    let (c, ack) = C5::connect(b.addr, &Conn::new(&unique("caps"))).await;
    let a = ack.connack();
    assert!(!a.session_present);
    let p = &a.properties;
    assert_eq!(p.receive_maximum(), Some(1024), "Receive Maximum");
    assert_eq!(p.maximum_packet_size(), Some(2 * 1024 * 1024), "Maximum Packet Size = limits.max_packet_size");
    assert_eq!(p.topic_alias_maximum(), Some(32), "Topic Alias Maximum");
    // Defaults need no property: QoS 2, retain, wildcards, identifiers and shared subscriptions all available.
    assert_eq!(p.maximum_qos(), None);
    assert_eq!(p.retain_available(), None);
    assert_eq!(p.wildcard_subscription_available(), None);
    assert_eq!(p.subscription_identifier_available(), None);
    assert_eq!(p.shared_subscription_available(), None);
    // Nothing capped, nothing assigned, nothing asked for.
    assert_eq!(p.session_expiry_interval(), None);
    assert_eq!(p.server_keep_alive(), None);
    assert_eq!(p.assigned_client_identifier(), None);
    assert_eq!(p.response_information(), None);
    c.disconnect().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_user_properties_are_accepted() {
    let b = start_default_broker().await;
    let mut c = Conn::new(&unique("cup"));
    c.user = vec![("a".into(), "1".into()), ("a".into(), "2".into())];
    let (mut s, _) = C5::connect(b.addr, &c).await;
    s.send(&Packet::PingReq).await;
    assert!(matches!(s.recv().await.packet(), Packet::PingResp));
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_expiry_zero_ends_the_session_at_disconnect() {
    let b = start_default_broker().await;
    let id = unique("exp0");
    let topic = unique("exp0/t");
    // Clean Start 0 but no Session Expiry Interval: MQTT 5 means 0, the session ends with the connection.
    let (mut s, _) = C5::connect(b.addr, &Conn::new(&id).clean(false)).await;
    s.sub(&topic, 1).await;
    s.disconnect().await;
    b.wait_stats("the session to end", |s| s.clients_connected == 0 && s.sessions == 0).await;
    let (_, ack) = C5::connect(b.addr, &Conn::new(&id).clean(false)).await;
    assert!(!ack.connack().session_present);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_expiry_keeps_the_session_for_its_interval_then_discards_it() {
    let mut settings = Settings::default();
    settings.sessions.persistent_session_expiry = Some(Duration::from_secs(1));
    let b = start_broker(settings).await;
    let short = unique("exp1");
    let never = unique("expmax");
    let old = unique("exp311");
    let topic = unique("exp/t");
    for c in [Conn::new(&short).clean(false).expiry(1), Conn::new(&never).clean(false).expiry(u32::MAX)] {
        let (mut s, ack) = C5::connect(b.addr, &c).await;
        // Granted as asked: no Session Expiry Interval in CONNACK.
        assert_eq!(ack.connack().properties.session_expiry_interval(), None);
        s.sub(&topic, 1).await;
        s.disconnect().await;
    }
    // A 3.1.1 persistent session lives for sessions.persistent_session_expiry.
    let (mut s, _) = C5::connect(b.addr, &Conn::v311(&old).clean(false)).await;
    s.sub(&topic, 1).await;
    s.disconnect().await;
    // A non-zero expiry can be raised at DISCONNECT [MQTT-3.14.2-2 allows it when CONNECT's was not 0].
    let raised = unique("expraise");
    let (s, _) = C5::connect(b.addr, &Conn::new(&raised).clean(false).expiry(1)).await;
    s.disconnect_with(ReasonCode::Success, &[Property::SessionExpiryInterval(60)]).await;
    // A resumed session takes the expiry of the CONNECT that resumed it.
    let lowered = unique("explower");
    let (s, _) = C5::connect(b.addr, &Conn::new(&lowered).clean(false).expiry(60)).await;
    s.disconnect().await;
    let (s, ack) = C5::connect(b.addr, &Conn::new(&lowered).clean(false).expiry(1)).await;
    assert!(ack.connack().session_present);
    s.disconnect().await;
    b.wait_stats("five offline sessions", |s| s.clients_connected == 0 && s.sessions == 5).await;
    let mut p = C5::v5(b.addr, &unique("exppub")).await;
    p.publish_ok(Pub::new(&topic, b"queued", 1)).await;
    b.wait_session(&short, "a queued message", |s| s.queued_messages == 1).await;

    // After 1 s (plus the broker's 1 s tick) the 1 s sessions are gone, the never-expiring one is kept.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(b.broker.session_stats(&short).is_none(), "expired v5 session discarded");
    assert!(b.broker.session_stats(&old).is_none(), "expired 3.1.1 session discarded");
    assert!(b.broker.session_stats(&raised).is_some(), "the expiry raised at DISCONNECT to 60 s holds");
    assert!(b.broker.session_stats(&lowered).is_none(), "resumed with expiry 1: expired");
    let (mut s, ack) = C5::connect(b.addr, &Conn::new(&short).clean(false).expiry(1)).await;
    assert!(!ack.connack().session_present);
    s.expect_silence(QUIET).await;
    let (mut s, ack) = C5::connect(b.addr, &Conn::new(&never).clean(false).expiry(u32::MAX)).await;
    assert!(ack.connack().session_present, "0xFFFFFFFF never expires");
    let f = s.recv_publish().await;
    assert_eq!(f.text(), "queued");
    s.ack(&f).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_persistent_session_never_expires_by_default() {
    let b = start_default_broker().await;
    let id = unique("p311");
    let (s, _) = C5::connect(b.addr, &Conn::v311(&id).clean(false)).await;
    s.disconnect().await;
    b.wait_stats("offline", |s| s.clients_connected == 0 && s.sessions == 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, ack) = C5::connect(b.addr, &Conn::v311(&id).clean(false)).await;
    assert!(ack.connack().session_present);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_expiry_at_disconnect_cannot_revive_a_zero_expiry() {
    let b = start_default_broker().await;
    let (mut s, _) = C5::connect(b.addr, &Conn::new(&unique("exprev"))).await;
    let d = mqtt_codec::Disconnect {
        reason: ReasonCode::Success,
        properties: mqtt_codec::Properties::from_list(&[Property::SessionExpiryInterval(60)]),
    };
    s.send(&Packet::Disconnect(d)).await;
    s.expect_disconnect(ReasonCode::ProtocolError, Duration::from_secs(2)).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_expiry_can_be_lowered_at_disconnect() {
    let b = start_default_broker().await;
    let id = unique("explow");
    let (s, _) = C5::connect(b.addr, &Conn::new(&id).clean(false).expiry(300)).await;
    s.disconnect_with(ReasonCode::Success, &[Property::SessionExpiryInterval(0)]).await;
    b.wait_stats("the session to end at once", |s| s.clients_connected == 0 && s.sessions == 0).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_receive_maximum_one_means_one_unacked_qos1_at_a_time() {
    let b = start_default_broker().await;
    let topic = unique("rm/t");
    let (mut sub, _) = C5::connect(b.addr, &Conn::new(&unique("rm1")).receive_maximum(1)).await;
    sub.sub(&topic, 2).await;
    let mut p = C5::v5(b.addr, &unique("rmpub")).await;
    for n in 0..3 {
        p.publish_ok(Pub::new(&topic, format!("m{n}").as_bytes(), if n == 1 { 2 } else { 1 })).await;
    }
    for n in 0..3 {
        let f = sub.recv_publish().await;
        assert_eq!(f.text(), format!("m{n}"));
        // Nothing else while this one is unacknowledged.
        sub.expect_silence(QUIET).await;
        sub.ack(&f).await;
    }
    sub.expect_silence(QUIET).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_publish_beyond_our_receive_maximum_gets_disconnect_0x93() {
    let b = start_default_broker().await;
    let (mut c, ack) = C5::connect(b.addr, &Conn::new(&unique("rmx"))).await;
    let max = ack.connack().properties.receive_maximum().unwrap();
    // `max` QoS 2 PUBLISH packets left unreleased (no PUBREL) are allowed ...
    let mut bytes = Vec::new();
    for id in 1..=max {
        let mut p = Pub::new("rmx/t", b"x", 2);
        p.pid = id;
        bytes.extend(p.encode(ProtocolVersion::V5));
    }
    c.send_raw(&bytes).await;
    for id in 1..=max {
        match c.recv().await.packet() {
            Packet::PubRec(a) => assert_eq!(a.packet_id.get(), id),
            other => panic!("expected PUBREC {id}, got {other:?}"),
        }
    }
    // ... one more is a protocol violation [MQTT-3.3.4-8].
    let mut p = Pub::new("rmx/t", b"x", 2);
    p.pid = max + 1;
    c.send_raw(&p.encode(ProtocolVersion::V5)).await;
    c.expect_disconnect(ReasonCode::ReceiveMaximumExceeded, Duration::from_secs(2)).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_maximum_packet_size_is_advertised_and_enforced_with_0x95() {
    let mut settings = Settings::default();
    settings.limits.max_packet_size = 1024;
    let b = start_broker(settings).await;
    let (mut c, ack) = C5::connect(b.addr, &Conn::new(&unique("mps"))).await;
    assert_eq!(ack.connack().properties.maximum_packet_size(), Some(1024));
    c.publish_ok(Pub::new("mps/t", &[b'a'; 900], 1)).await;
    c.publish(Pub::new("mps/t", &[b'a'; 1100], 1)).await;
    c.expect_disconnect(ReasonCode::PacketTooLarge, Duration::from_secs(2)).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_larger_than_client_maximum_is_never_sent_and_counted_dropped() {
    let b = start_default_broker().await;
    let topic = unique("cmps/t");
    let id = unique("cmps");
    let (mut sub, _) = C5::connect(b.addr, &Conn::new(&id).max_packet(128)).await;
    sub.sub(&topic, 1).await;
    let mut p = C5::v5(b.addr, &unique("cmpspub")).await;
    let before = b.stats().messages_dropped;
    p.publish_ok(Pub::new(&topic, &[b'x'; 300], 1)).await;
    p.publish_ok(Pub::new(&topic, &[b'y'; 300], 0)).await;
    p.publish_ok(Pub::new(&topic, b"small", 1)).await;
    let f = sub.recv_publish().await;
    assert_eq!(f.text(), "small", "only the message that fits arrives");
    assert!(f.bytes.len() <= 128);
    sub.ack(&f).await;
    sub.expect_silence(QUIET).await;
    b.wait_stats("two drops", |s| s.messages_dropped == before + 2).await;
    let s = b.wait_session(&id, "two drops", |s| s.dropped_messages == 2).await;
    assert_eq!(s.inflight_messages, 0, "the too-large QoS 1 message is not left in flight");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_client_id_gets_an_assigned_client_identifier() {
    let b = start_default_broker().await;
    for clean in [true, false] {
        let (mut c, ack) = C5::connect(b.addr, &Conn::new("").clean(clean).expiry(10)).await;
        let id = ack.connack().properties.assigned_client_identifier().expect("Assigned Client Identifier").to_owned();
        assert!(!id.is_empty());
        assert!(b.broker.session_stats(&id).is_some(), "the session is held under the assigned id {id}");
        c.sub(&unique("assigned/t"), 0).await;
        c.disconnect().await;
    }
    // 3.1.1 with an empty id and clean session: accepted, no properties to carry an id.
    let (_, ack) = C5::connect(b.addr, &Conn::v311("")).await;
    assert_eq!(ack.bytes, vec![0x20, 2, 0, 0]);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_keep_alive_caps_the_client_keep_alive() {
    let mut settings = Settings::default();
    settings.sessions.max_keepalive = 1;
    let b = start_broker(settings).await;
    for (asked, told) in [(60u16, Some(1u16)), (0, Some(1)), (1, None)] {
        let (c, ack) = C5::connect(b.addr, &Conn::new(&unique("ska")).keep_alive(asked)).await;
        assert_eq!(ack.connack().properties.server_keep_alive(), told, "asked {asked}");
        c.disconnect().await;
    }
    // And it is enforced: silent for 1.5 x 1 s gets DISCONNECT 0x8D.
    let (mut c, _) = C5::connect(b.addr, &Conn::new(&unique("ska")).keep_alive(60)).await;
    let t0 = std::time::Instant::now();
    c.expect_disconnect(ReasonCode::KeepAliveTimeout, Duration::from_secs(4)).await;
    let waited = t0.elapsed();
    assert!(waited >= Duration::from_millis(1400) && waited < Duration::from_millis(3000), "closed after {waited:?}");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_receive_maximum_counts_qos2_until_pubcomp() {
    let b = start_default_broker().await;
    let topic = unique("rm2/t");
    let (mut sub, _) = C5::connect(b.addr, &Conn::new(&unique("rm2")).receive_maximum(1)).await;
    sub.sub(&topic, 2).await;
    let mut p = C5::v5(b.addr, &unique("rm2pub")).await;
    p.publish_ok(Pub::new(&topic, b"a", 2)).await;
    p.publish_ok(Pub::new(&topic, b"b", 2)).await;
    let f = sub.recv_publish().await;
    let id = f.publish().qos_pid.packet_id().unwrap();
    sub.send(&Packet::PubRec(mqtt_codec::Ack::new(id))).await;
    assert!(matches!(sub.recv().await.packet(), Packet::PubRel(a) if a.packet_id == id));
    // The send quota comes back with PUBCOMP, not PUBREC [MQTT-4.9.0-2].
    sub.expect_silence(QUIET).await;
    sub.send(&Packet::PubComp(mqtt_codec::Ack::new(id))).await;
    let f = sub.recv_publish().await;
    assert_eq!(f.text(), "b");
    b.shutdown().await;
}
