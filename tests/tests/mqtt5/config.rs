//! `settings.mqtt`: what CONNACK advertises follows the configuration, and the broker enforces what it advertises
//! (SUBACK 0x9E/0xA1/0xA2, Maximum QoS, Retain Available, Receive Maximum, Topic Alias Maximum, Session Expiry cap,
//! Response Information, topic levels, shared subscription strategy).

use std::collections::HashMap;
use std::time::Duration;

use broker::router::SharedStrategy;
use mqtt_codec::{QoS, ReasonCode};
use tests::{Settings, start_broker, unique};

use super::QUIET;
use crate::v5client::{C5, Conn, Pub, Sub, WillSpec};

const CLOSE: Duration = Duration::from_secs(2);

fn restricted() -> Settings {
    let mut s = Settings::default();
    s.mqtt.retain_available = false;
    s.mqtt.maximum_qos = QoS::AtLeastOnce;
    s.mqtt.wildcard_subscriptions = false;
    s.mqtt.subscription_identifiers = false;
    s.mqtt.shared_subscriptions = false;
    s.mqtt.receive_maximum = 10;
    s.mqtt.topic_alias_maximum = 0;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connack_reflects_the_configured_capabilities() {
    let b = start_broker(restricted()).await;
    let (c, ack) = C5::connect(b.addr, &Conn::new(&unique("cfgcaps"))).await;
    let p = ack.connack().properties;
    assert_eq!(p.retain_available(), Some(false));
    assert_eq!(p.maximum_qos(), Some(QoS::AtLeastOnce));
    assert_eq!(p.wildcard_subscription_available(), Some(false));
    assert_eq!(p.subscription_identifier_available(), Some(false));
    assert_eq!(p.shared_subscription_available(), Some(false));
    assert_eq!(p.receive_maximum(), Some(10));
    assert_eq!(p.topic_alias_maximum(), None, "0 aliases: the property is absent");
    c.disconnect().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suback_refuses_disabled_features_per_filter() {
    let b = start_broker(restricted()).await;
    let mut c = C5::v5(b.addr, &unique("cfgsub")).await;
    let codes =
        c.subscribe_with(&[Sub::new("cfg/+", 1), Sub::new("$share/g/cfg/t", 1), Sub::new("cfg/plain", 2)], None).await;
    assert_eq!(
        codes,
        vec![
            ReasonCode::WildcardSubscriptionsNotSupported,
            ReasonCode::SharedSubscriptionsNotSupported,
            ReasonCode::GrantedQoS1
        ],
        "QoS 2 is granted as the Maximum QoS 1"
    );
    let codes = c.subscribe_with(&[Sub::new("cfg/id", 0)], Some(3)).await;
    assert_eq!(codes, vec![ReasonCode::SubscriptionIdentifiersNotSupported]);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos_above_maximum_and_retain_when_unavailable_are_refused() {
    let b = start_broker(restricted()).await;
    let mut c = C5::v5(b.addr, &unique("cfgq2")).await;
    c.publish(Pub::new("cfg/q", b"x", 2)).await;
    c.expect_disconnect(ReasonCode::QoSNotSupported, CLOSE).await;
    let mut c = C5::v5(b.addr, &unique("cfgret")).await;
    c.publish(Pub::new("cfg/r", b"x", 1).retain()).await;
    c.expect_disconnect(ReasonCode::RetainNotSupported, CLOSE).await;
    // A will that asks for either is refused at CONNECT.
    for (qos, retain, code) in [(2, false, ReasonCode::QoSNotSupported), (1, true, ReasonCode::RetainNotSupported)] {
        let w = WillSpec { topic: "cfg/will".into(), payload: b"w".to_vec(), qos, retain, ..WillSpec::default() };
        let (mut c, f) = C5::connect_with(b.addr, &Conn::new(&unique("cfgwill")).will(w)).await;
        assert_eq!(f.connack().code, code);
        c.expect_closed(CLOSE).await;
    }
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_receive_maximum_is_enforced_with_0x93() {
    let mut s = Settings::default();
    s.mqtt.receive_maximum = 2;
    let b = start_broker(s).await;
    let (mut c, ack) = C5::connect(b.addr, &Conn::new(&unique("cfgrm"))).await;
    assert_eq!(ack.connack().properties.receive_maximum(), Some(2));
    for id in 1..=2u16 {
        let mut p = Pub::new("cfgrm/t", b"x", 2);
        p.pid = id;
        c.publish(p).await;
        assert!(matches!(c.recv().await.packet(), mqtt_codec::Packet::PubRec(a) if a.packet_id.get() == id));
    }
    let mut p = Pub::new("cfgrm/t", b"x", 2);
    p.pid = 3;
    c.publish(p).await;
    c.expect_disconnect(ReasonCode::ReceiveMaximumExceeded, CLOSE).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_alias_maximum_zero_refuses_every_alias() {
    let b = start_broker(restricted()).await;
    let mut c = C5::v5(b.addr, &unique("cfgalias")).await;
    c.publish(Pub::new("cfg/a", b"x", 0).alias(1)).await;
    c.expect_disconnect(ReasonCode::TopicAliasInvalid, CLOSE).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_topic_aliases_can_be_switched_off() {
    let mut s = Settings::default();
    s.mqtt.server_topic_aliases = false;
    let b = start_broker(s).await;
    let topic = unique("cfgsa/t");
    let (mut c, _) = C5::connect(b.addr, &Conn::new(&unique("cfgsa")).aliases(10)).await;
    c.sub(&topic, 0).await;
    let mut p = C5::v5(b.addr, &unique("cfgsapub")).await;
    for _ in 0..2 {
        p.publish_ok(Pub::new(&topic, b"x", 0)).await;
    }
    for _ in 0..2 {
        let f = c.recv_publish().await;
        assert_eq!((f.publish().topic.as_str(), f.publish().properties.topic_alias()), (topic.as_str(), None));
    }
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_expiry_is_capped_and_the_cap_is_reflected_in_connack() {
    let mut s = Settings::default();
    s.mqtt.max_session_expiry = Some(Duration::from_secs(1));
    let b = start_broker(s).await;
    let ids = [unique("cfgcap60"), unique("cfgcapmax")];
    for (id, asked) in ids.iter().zip([60u32, u32::MAX]) {
        let (c, ack) = C5::connect(b.addr, &Conn::new(id).clean(false).expiry(asked)).await;
        assert_eq!(ack.connack().properties.session_expiry_interval(), Some(1), "asked {asked}");
        c.disconnect().await;
    }
    // Asking for less than the cap is granted as asked.
    let (c, ack) = C5::connect(b.addr, &Conn::new(&unique("cfgcap0"))).await;
    assert_eq!(ack.connack().properties.session_expiry_interval(), None);
    c.disconnect().await;
    b.wait_stats("two offline sessions", |s| s.clients_connected == 0 && s.sessions == 2).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(b.stats().sessions, 0, "both capped sessions expired after 1 s");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_information_is_sent_only_when_requested() {
    let mut s = Settings::default();
    s.mqtt.response_information = Some("replies".into());
    let b = start_broker(s).await;
    let id = unique("cfgri");
    let mut conn = Conn::new(&id);
    conn.request_response_information = Some(true);
    let (c, ack) = C5::connect(b.addr, &conn).await;
    assert_eq!(ack.connack().properties.response_information(), Some(format!("replies/{id}").as_str()));
    c.disconnect().await;
    for ask in [None, Some(false)] {
        let mut conn = Conn::new(&unique("cfgri"));
        conn.request_response_information = ask;
        let (c, ack) = C5::connect(b.addr, &conn).await;
        assert_eq!(ack.connack().properties.response_information(), None, "asked {ask:?}");
        c.disconnect().await;
    }
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_response_information_by_default_even_when_requested() {
    let b = start_broker(Settings::default()).await;
    let mut conn = Conn::new(&unique("ri"));
    conn.request_response_information = Some(true);
    let (_, ack) = C5::connect(b.addr, &conn).await;
    assert_eq!(ack.connack().properties.response_information(), None);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_topic_levels_limit_filters_and_names() {
    let mut s = Settings::default();
    s.mqtt.max_topic_levels = 3;
    let b = start_broker(s).await;
    let mut c = C5::v5(b.addr, &unique("cfglv")).await;
    let codes = c.subscribe_with(&[Sub::new("a/b/c", 1), Sub::new("a/b/c/d", 1)], None).await;
    assert_eq!(codes, vec![ReasonCode::GrantedQoS1, ReasonCode::TopicFilterInvalid]);
    let (r, _) = c.publish_ack(Pub::new("a/b/c", b"x", 1)).await;
    assert_eq!(r, ReasonCode::Success);
    let f = c.recv_publish().await;
    c.ack(&f).await;
    let (r, _) = c.publish_ack(Pub::new("a/b/c/d", b"x", 1)).await;
    assert_eq!(r, ReasonCode::TopicNameInvalid);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_shared_strategy_delivers_each_message_once_to_some_member() {
    let mut s = Settings::default();
    s.mqtt.shared_subscription_strategy = SharedStrategy::Random;
    let b = start_broker(s).await;
    let topic = unique("cfgrnd/t");
    let mut members = Vec::new();
    for i in 0..3 {
        let mut c = C5::v5(b.addr, &unique(&format!("cfgrnd{i}"))).await;
        c.sub(&format!("$share/g/{topic}"), 0).await;
        members.push(c);
    }
    let mut p = C5::v5(b.addr, &unique("cfgrndpub")).await;
    let n = 60;
    for i in 0..n {
        p.publish_ok(Pub::new(&topic, format!("{i}").as_bytes(), 1)).await;
    }
    let mut seen = HashMap::new();
    let mut counts = Vec::new();
    for (m, c) in members.iter_mut().enumerate() {
        let mut k = 0;
        while let crate::v5client::Ev::Frame(f) = c.next_event(QUIET).await {
            assert!(seen.insert(f.text(), m).is_none(), "{} delivered twice", f.text());
            k += 1;
        }
        counts.push(k);
    }
    assert_eq!(seen.len(), n, "every message delivered once: {counts:?}");
    // With 60 messages, a member left out entirely would happen by chance with probability ~1e-10.
    assert!(counts.iter().all(|&k| k > 0), "spread over every member: {counts:?}");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_levels_of_a_shared_filter_are_counted_without_the_share_prefix() {
    let mut s = Settings::default();
    s.mqtt.max_topic_levels = 3;
    let b = start_broker(s).await;
    let mut c = C5::v5(b.addr, &unique("cfglvsh")).await;
    // The filter is `a/b/c` (3 levels); `$share/g/` names the group and is not a topic level [MQTT-4.8.2].
    let codes = c.subscribe_with(&[Sub::new("$share/g/a/b/c", 1), Sub::new("$share/g/a/b/c/d", 1)], None).await;
    assert_eq!(codes, vec![ReasonCode::GrantedQoS1, ReasonCode::TopicFilterInvalid]);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_topic_alias_maximum_also_bounds_the_aliases_we_send() {
    let mut s = Settings::default();
    s.mqtt.topic_alias_maximum = 2;
    let b = start_broker(s).await;
    let root = unique("cfgab");
    let (mut c, _) = C5::connect(b.addr, &Conn::new(&unique("cfgab")).aliases(10)).await;
    c.sub(&format!("{root}/+"), 0).await;
    let mut p = C5::v5(b.addr, &unique("cfgabpub")).await;
    let topics: Vec<String> = (0..4).map(|i| format!("{root}/{i}")).collect();
    for t in topics.iter().chain(topics.iter()) {
        p.publish_ok(Pub::new(t, b"x", 0)).await;
    }
    for t in topics.iter().chain(topics.iter()) {
        let f = c.recv_publish().await;
        if let Some(a) = f.publish().properties.topic_alias() {
            assert!((1..=2).contains(&a), "alias {a} above mqtt.topic_alias_maximum 2");
        }
        assert_eq!(&c.topic_of(&f), t);
    }
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt3_clients_are_held_to_the_same_limits() {
    let b = start_broker(restricted()).await;
    let mut c = C5::connect(b.addr, &Conn::v311(&unique("cfg311"))).await.0;
    // MQTT 3.x has one failure code in SUBACK.
    let codes = c
        .subscribe_with(&[Sub::new("cfg311/+", 1), Sub::new("$share/g/cfg311/t", 1), Sub::new("cfg311/t", 2)], None)
        .await;
    assert_eq!(codes.iter().map(|c| c.to_u8()).collect::<Vec<_>>(), vec![0x80, 0x80, 0x01]);
    // A QoS 2 publication above Maximum QoS closes the connection (no DISCONNECT in MQTT 3).
    c.publish(Pub::new("cfg311/t", b"x", 2)).await;
    let seen = c.expect_closed(CLOSE).await;
    assert!(seen.is_empty(), "MQTT 3 gets no DISCONNECT: {seen:?}");
    b.shutdown().await;
}

#[test]
fn mqtt_section_of_a_config_file_reaches_the_settings() {
    let dir = std::env::temp_dir().join(unique("v5cfg"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broker.toml");
    std::fs::write(
        &path,
        "[mqtt]\nretain_available = false\nmaximum_qos = 1\nshared_subscription_strategy = \"random\"\n\
         receive_maximum = 7\ntopic_alias_maximum = 3\nmax_session_expiry_secs = 90\n\
         response_information = \"resp\"\nmax_topic_levels = 5\n",
    )
    .unwrap();
    let cfg = broker::config::Config::load(Some(&path)).unwrap();
    let m = &cfg.settings.mqtt;
    assert!(!m.retain_available);
    assert_eq!(m.maximum_qos, QoS::AtLeastOnce);
    assert_eq!(m.shared_subscription_strategy, SharedStrategy::Random);
    assert_eq!((m.receive_maximum, m.topic_alias_maximum, m.max_topic_levels), (7, 3, 5));
    assert_eq!(m.max_session_expiry, Some(Duration::from_secs(90)));
    assert_eq!(m.response_information.as_deref(), Some("resp"));
    // Untouched keys keep their defaults.
    assert!(m.wildcard_subscriptions && m.subscription_identifiers && m.shared_subscriptions && m.server_topic_aliases);
    std::fs::remove_dir_all(&dir).unwrap();
}
