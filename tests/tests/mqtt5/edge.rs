//! Corners of MQTT 5 where brokers often slip: aliases are per connection, identifiers follow re-subscription, shared
//! subscriptions get no retained messages, No Local on a shared subscription, Clean Start with a Session Expiry,
//! takeover and the will, expiry of retained messages, the client's Maximum Packet Size on retained messages.

use std::time::Duration;

use mqtt_codec::{Packet, ReasonCode};
use tests::{start_default_broker, unique};

use super::QUIET;
use crate::v5client::{C5, Conn, Pub, Sub, WillSpec, sub_ids};

const CLOSE: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_subscriptions_get_no_retained_messages_on_subscribe() {
    let b = start_default_broker().await;
    let topic = unique("shret/t");
    let mut p = C5::v5(b.addr, &unique("shretpub")).await;
    p.publish_ok(Pub::new(&topic, b"retained", 1).retain()).await;
    let mut c = C5::v5(b.addr, &unique("shret")).await;
    c.sub(&format!("$share/g/{topic}"), 1).await;
    c.expect_silence(QUIET).await;
    // Live messages do arrive.
    p.publish_ok(Pub::new(&topic, b"live", 1)).await;
    let f = c.recv_publish().await;
    assert_eq!(f.text(), "live");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_local_on_a_shared_subscription_is_a_protocol_error() {
    let b = start_default_broker().await;
    let mut c = C5::v5(b.addr, &unique("shnl")).await;
    // The codec will not encode it; build a valid SUBSCRIBE and set the No Local bit on the wire.
    let filter = "$share/g/shnl/t";
    let mut bytes = crate::v5client::encode(
        &Packet::Subscribe(mqtt_codec::Subscribe {
            packet_id: crate::v5client::pid(1),
            properties: mqtt_codec::Properties::empty(),
            subscriptions: mqtt_codec::List::from_slice(&[mqtt_codec::Subscription {
                filter: mqtt_codec::TopicFilter::new(filter).unwrap(),
                options: mqtt_codec::SubscriptionOptions::qos(mqtt_codec::QoS::AtLeastOnce),
            }]),
        }),
        c.version,
    );
    let last = bytes.len() - 1;
    bytes[last] |= 0x04;
    c.send_raw(&bytes).await;
    c.expect_disconnect(ReasonCode::ProtocolError, CLOSE).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_identifier_follows_the_latest_subscribe() {
    let b = start_default_broker().await;
    let topic = unique("sidre/t");
    let mut c = C5::v5(b.addr, &unique("sidre")).await;
    let mut p = C5::v5(b.addr, &unique("sidrepub")).await;
    for (id, want) in [(Some(1), vec![1]), (Some(2), vec![2]), (None, vec![])] {
        c.subscribe_with(&[Sub::new(&topic, 1)], id).await;
        p.publish_ok(Pub::new(&topic, b"x", 1)).await;
        let f = c.recv_publish().await;
        assert_eq!(sub_ids(&f.publish().properties), want, "after subscribing with {id:?}");
        c.ack(&f).await;
    }
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_identifier_zero_is_a_protocol_error() {
    let b = start_default_broker().await;
    let mut c = C5::v5(b.addr, &unique("sid0")).await;
    let mut bytes = crate::v5client::encode(
        &Packet::Subscribe(mqtt_codec::Subscribe {
            packet_id: crate::v5client::pid(1),
            properties: mqtt_codec::Properties::from_list(&[mqtt_codec::Property::SubscriptionIdentifier(5)]),
            subscriptions: mqtt_codec::List::from_slice(&[mqtt_codec::Subscription {
                filter: mqtt_codec::TopicFilter::new("sid0/t").unwrap(),
                options: mqtt_codec::SubscriptionOptions::qos(mqtt_codec::QoS::AtMostOnce),
            }]),
        }),
        c.version,
    );
    let at = bytes.windows(2).position(|w| w == [0x0b, 5]).unwrap();
    bytes[at + 1] = 0;
    c.send_raw(&bytes).await;
    c.expect_disconnect(ReasonCode::ProtocolError, CLOSE).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_local_on_one_subscription_does_not_hide_the_other() {
    let b = start_default_broker().await;
    let root = unique("nl2");
    let mut c = C5::v5(b.addr, &unique("nl2")).await;
    c.subscribe_with(&[Sub { no_local: true, ..Sub::new(&format!("{root}/t"), 1) }], Some(1)).await;
    c.subscribe_with(&[Sub::new(&format!("{root}/+"), 1)], Some(2)).await;
    c.publish_ok(Pub::new(&format!("{root}/t"), b"own", 1)).await;
    let f = c.recv_publish().await;
    assert_eq!(sub_ids(&f.publish().properties), vec![2], "only through the subscription without No Local");
    c.ack(&f).await;
    c.expect_silence(QUIET).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_topic_aliases_stay_within_the_client_maximum() {
    let b = start_default_broker().await;
    let root = unique("amax");
    let (mut c, _) = C5::connect(b.addr, &Conn::new(&unique("amax")).aliases(1)).await;
    c.sub(&format!("{root}/+"), 0).await;
    let mut p = C5::v5(b.addr, &unique("amaxpub")).await;
    let topics: Vec<String> = (0..3).map(|i| format!("{root}/{i}")).collect();
    for round in 0..2 {
        for t in &topics {
            p.publish_ok(Pub::new(t, format!("{round}").as_bytes(), 0)).await;
        }
    }
    for _round in 0..2 {
        for t in &topics {
            let f = c.recv_publish().await;
            if let Some(a) = f.publish().properties.topic_alias() {
                assert_eq!(a, 1, "alias above the client's Topic Alias Maximum 1: {f:?}");
            }
            assert_eq!(&c.topic_of(&f), t);
        }
    }
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_aliases_do_not_survive_a_reconnect() {
    let b = start_default_broker().await;
    let topic = unique("areconn/t");
    let id = unique("areconn");
    let conn = Conn::new(&id).clean(false).expiry(60).aliases(5);
    let mut p = C5::v5(b.addr, &unique("areconnpub")).await;
    let (mut c, _) = C5::connect(b.addr, &conn).await;
    c.sub(&topic, 1).await;
    for _ in 0..2 {
        p.publish_ok(Pub::new(&topic, b"x", 1)).await;
        let f = c.recv_publish().await;
        c.ack(&f).await;
    }
    // Our alias towards the broker, set on the first connection.
    c.publish_ok(Pub::new(&topic, b"set", 1).alias(2)).await;
    let own = c.recv_publish().await;
    c.ack(&own).await;
    c.disconnect().await;

    let (mut c, ack) = C5::connect(b.addr, &conn).await;
    assert!(ack.connack().session_present);
    p.publish_ok(Pub::new(&topic, b"after", 1)).await;
    let f = c.recv_publish().await;
    assert_eq!(f.publish().topic.as_str(), topic, "a new connection starts with no aliases [MQTT-3.3.2-7]");
    c.ack(&f).await;
    c.publish(Pub::new("", b"stale", 1).alias(2)).await;
    c.expect_disconnect(ReasonCode::ProtocolError, CLOSE).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_qos0_with_payload_format_indicator_gets_disconnect_0x99() {
    let b = start_default_broker().await;
    let mut c = C5::v5(b.addr, &unique("pfi0")).await;
    let mut msg = Pub::new("pfi0/t", &[0xc3, 0x28], 0);
    msg.pfi = Some(true);
    c.publish(msg).await;
    c.expect_disconnect(ReasonCode::PayloadFormatInvalid, CLOSE).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_start_with_session_expiry_discards_the_old_session_and_keeps_the_new_one() {
    let b = start_default_broker().await;
    let topic = unique("csx/t");
    let id = unique("csx");
    let (mut c, _) = C5::connect(b.addr, &Conn::new(&id).clean(false).expiry(60)).await;
    c.sub(&topic, 1).await;
    c.disconnect().await;
    let (c, ack) = C5::connect(b.addr, &Conn::new(&id).clean(true).expiry(60)).await;
    assert!(!ack.connack().session_present, "Clean Start 1 discards the stored session");
    c.disconnect().await;
    let mut p = C5::v5(b.addr, &unique("csxpub")).await;
    let (r, _) = p.publish_ack(Pub::new(&topic, b"x", 1)).await;
    assert_eq!(r, ReasonCode::NoMatchingSubscribers, "the old subscription went with the old session");
    let (_, ack) = C5::connect(b.addr, &Conn::new(&id).clean(false).expiry(60)).await;
    assert!(ack.connack().session_present, "the new session outlived its connection");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_publishes_an_immediate_will_but_not_a_delayed_one_of_a_resumed_session() {
    let b = start_default_broker().await;
    let topic = unique("tow/t");
    let mut watcher = C5::v5(b.addr, &unique("towwatch")).await;
    watcher.sub(&topic, 1).await;
    let will = |delay| WillSpec { topic: topic.clone(), payload: b"w".to_vec(), qos: 1, delay, ..WillSpec::default() };

    let id = unique("tow0");
    let (mut first, _) = C5::connect(b.addr, &Conn::new(&id).will(will(None))).await;
    let (_second, _) = C5::connect(b.addr, &Conn::new(&id)).await;
    first.expect_disconnect(ReasonCode::SessionTakenOver, CLOSE).await;
    let f = watcher.recv_publish().await;
    assert_eq!(f.text(), "w", "a will without delay goes out on takeover [MQTT-3.1.4-3]");
    watcher.ack(&f).await;

    let id = unique("tow5");
    let conn = Conn::new(&id).clean(false).expiry(60);
    let (mut first, _) = C5::connect(b.addr, &conn.clone().will(will(Some(5)))).await;
    let (_second, ack) = C5::connect(b.addr, &conn).await;
    assert!(ack.connack().session_present);
    first.expect_disconnect(ReasonCode::SessionTakenOver, CLOSE).await;
    watcher.expect_silence(Duration::from_millis(1200)).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_message_expiry_is_counted_down_for_late_subscribers() {
    let b = start_default_broker().await;
    let topic = unique("rexp/t");
    let mut p = C5::v5(b.addr, &unique("rexppub")).await;
    p.publish_ok(Pub::new(&topic, b"r", 1).retain().expiry(20)).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut c = C5::v5(b.addr, &unique("rexp")).await;
    c.sub(&topic, 1).await;
    let f = c.recv_publish().await;
    let left = f.publish().properties.message_expiry_interval();
    assert!(matches!(left, Some(18)), "20 s less the time retained: {left:?}");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_message_larger_than_client_maximum_is_not_sent_on_subscribe() {
    let b = start_default_broker().await;
    let root = unique("rbig");
    let mut p = C5::v5(b.addr, &unique("rbigpub")).await;
    p.publish_ok(Pub::new(&format!("{root}/big"), &[b'x'; 500], 1).retain()).await;
    p.publish_ok(Pub::new(&format!("{root}/small"), b"s", 1).retain()).await;
    let id = unique("rbig");
    let (mut c, _) = C5::connect(b.addr, &Conn::new(&id).max_packet(200)).await;
    c.sub(&format!("{root}/+"), 1).await;
    let f = c.recv_publish().await;
    assert_eq!(f.text(), "s");
    c.ack(&f).await;
    c.expect_silence(QUIET).await;
    b.wait_session(&id, "the big one counted as dropped", |s| s.dropped_messages == 1).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribing_a_shared_subscription() {
    let b = start_default_broker().await;
    let topic = unique("shun/t");
    let filter = format!("$share/g/{topic}");
    let mut c = C5::v5(b.addr, &unique("shun")).await;
    c.sub(&filter, 1).await;
    assert_eq!(c.unsubscribe(&[&filter]).await, vec![ReasonCode::Success]);
    assert_eq!(c.unsubscribe(&[&filter]).await, vec![ReasonCode::NoSubscriptionExisted]);
    let (r, _) = c.publish_ack(Pub::new(&topic, b"x", 1)).await;
    assert_eq!(r, ReasonCode::NoMatchingSubscribers);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resent_message_after_reconnect_carries_its_full_topic() {
    let b = start_default_broker().await;
    let topic = unique("aresend/t");
    let id = unique("aresend");
    let conn = Conn::new(&id).clean(false).expiry(60).aliases(5);
    let (mut c, _) = C5::connect(b.addr, &conn).await;
    c.sub(&topic, 1).await;
    let mut p = C5::v5(b.addr, &unique("aresendpub")).await;
    p.publish_ok(Pub::new(&topic, b"1", 1)).await;
    p.publish_ok(Pub::new(&topic, b"2", 1)).await;
    let first = c.recv_publish().await;
    c.ack(&first).await;
    let second = c.recv_publish().await;
    assert!(second.publish().topic.is_empty(), "sent by alias: {second:?}");
    drop(c); // unacknowledged
    b.wait_stats("offline", |s| s.clients_connected == 1).await;
    let (mut c, _) = C5::connect(b.addr, &conn).await;
    let again = c.recv_publish().await;
    let p = again.publish();
    assert!(p.dup, "a resend");
    assert_eq!(again.text(), "2");
    assert_eq!(p.topic.as_str(), topic, "the new connection knows no alias: full topic [MQTT-3.3.2-7]");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubrec_with_an_error_ends_the_qos2_flow_and_frees_the_window() {
    let b = start_default_broker().await;
    let topic = unique("recerr/t");
    let (mut c, _) = C5::connect(b.addr, &Conn::new(&unique("recerr")).receive_maximum(1)).await;
    c.sub(&topic, 2).await;
    let mut p = C5::v5(b.addr, &unique("recerrpub")).await;
    p.publish_ok(Pub::new(&topic, b"refused", 2)).await;
    p.publish_ok(Pub::new(&topic, b"next", 2)).await;
    let f = c.recv_publish().await;
    assert_eq!(f.text(), "refused");
    let id = f.publish().qos_pid.packet_id().unwrap();
    let rec = mqtt_codec::Ack { reason: ReasonCode::UnspecifiedError, ..mqtt_codec::Ack::new(id) };
    c.send(&Packet::PubRec(rec)).await;
    // No PUBREL for a refused message; the window opens for the next one.
    let f = c.recv_publish().await;
    assert_eq!(f.text(), "next", "got {f:?}");
    c.ack(&f).await;
    c.expect_silence(QUIET).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assigned_client_identifier_resumes_its_session() {
    let b = start_default_broker().await;
    let (c, ack) = C5::connect(b.addr, &Conn::new("").clean(false).expiry(60)).await;
    let id = ack.connack().properties.assigned_client_identifier().unwrap().to_owned();
    c.disconnect().await;
    let (_, ack) = C5::connect(b.addr, &Conn::new(&id).clean(false).expiry(60)).await;
    assert!(ack.connack().session_present);
    assert_eq!(ack.connack().properties.assigned_client_identifier(), None, "no new id when the client sent one");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_filter_levels_are_counted_without_the_share_prefix() {
    let b = start_default_broker().await;
    let mut c = C5::v5(b.addr, &unique("shlv")).await;
    let levels = vec!["l"; 64].join("/");
    // 64 levels are allowed in a plain filter, and the same filter in a group: `$share/g/` is not a topic level.
    let codes = c.subscribe_with(&[Sub::new(&levels, 1), Sub::new(&format!("$share/g/{levels}"), 1)], None).await;
    assert_eq!(codes, vec![ReasonCode::GrantedQoS1, ReasonCode::GrantedQoS1]);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_packet_ids_get_0x92_on_pubcomp_and_pubrel() {
    let b = start_default_broker().await;
    let mut c = C5::v5(b.addr, &unique("pid92")).await;
    c.send(&Packet::PubRel(mqtt_codec::Ack::new(crate::v5client::pid(77)))).await;
    match c.recv().await.packet() {
        Packet::PubComp(a) => {
            assert_eq!((a.packet_id.get(), a.reason), (77, ReasonCode::PacketIdentifierNotFound));
        }
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    c.send(&Packet::PubRec(mqtt_codec::Ack::new(crate::v5client::pid(78)))).await;
    match c.recv().await.packet() {
        Packet::PubRel(a) => assert_eq!((a.packet_id.get(), a.reason), (78, ReasonCode::PacketIdentifierNotFound)),
        other => panic!("expected PUBREL, got {other:?}"),
    }
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_start_takeover_cancels_a_delayed_will() {
    let b = start_default_broker().await;
    let topic = unique("towc/t");
    let id = unique("towc");
    let mut watcher = C5::v5(b.addr, &unique("towcwatch")).await;
    watcher.sub(&topic, 1).await;
    let w = WillSpec { topic: topic.clone(), payload: b"w".to_vec(), qos: 1, delay: Some(1), ..WillSpec::default() };
    let (mut first, _) = C5::connect(b.addr, &Conn::new(&id).clean(false).expiry(60).will(w)).await;
    let (_second, ack) = C5::connect(b.addr, &Conn::new(&id).clean(true)).await;
    assert!(!ack.connack().session_present);
    first.expect_disconnect(ReasonCode::SessionTakenOver, CLOSE).await;
    // A new network connection for the client id within the Will Delay Interval cancels the will [MQTT-3.1.2-8],
    // whether it resumes the session or not. Watched past the delay.
    watcher.expect_silence(Duration::from_millis(2500)).await;
    b.shutdown().await;
}
