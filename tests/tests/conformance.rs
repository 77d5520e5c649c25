//! Cases that outside testing found wrong, over real sockets (MQTT 3.1 / 3.1.1; MQTT 5 ones are in
//! `mqtt5/conformance.rs`): MQTT 3.1 client identifiers and CONNACK, `$` topics, topic depth, acknowledgements of
//! the wrong type, and what the broker logs about refusals and drops (the built binary, its stderr read back).

use std::time::Duration;

use mqtt_codec::{Packet, Properties, Publish, QosPid, TopicName};
use tests::process::BrokerProcess;
use tests::raw::{ConnectOpts, Qos, RawClient, Rx, Version, encode};
use tests::{Settings, WAIT, start_broker, start_default_broker, unique, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const QUIET: Duration = Duration::from_millis(300);

/// Sends a CONNECT on a fresh socket and returns the first four bytes the broker answers (a CONNACK of MQTT 3.x),
/// exactly as they are on the wire.
async fn connack_bytes(addr: std::net::SocketAddr, opts: &ConnectOpts) -> [u8; 4] {
    let mut s = within("TCP connect", TcpStream::connect(addr)).await.unwrap();
    within("write CONNECT", s.write_all(&opts.encode())).await.unwrap();
    let mut ack = [0u8; 4];
    within("read CONNACK", s.read_exact(&mut ack)).await.unwrap();
    ack
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt31_empty_client_id_is_refused_with_return_code_2() {
    let b = start_default_broker().await;
    // MQTT 3.1 requires 1 to 23 characters; Mosquitto refuses an empty one with "identifier rejected" even with a
    // clean session, which 3.1.1 would accept.
    let (mut c, ack) = RawClient::connect_with(b.addr, &ConnectOpts::new("").version(Version::V31)).await;
    assert_eq!(ack, Rx::ConnAck { session_present: false, code: 2 });
    assert!(c.expect_closed(WAIT).await.is_empty());
    // Like Mosquitto, an identifier longer than 23 characters is accepted.
    let long = unique("a-client-identifier-longer-than-23");
    let (mut c, present) = RawClient::connect(b.addr, &ConnectOpts::new(&long).version(Version::V31)).await;
    assert!(!present);
    c.assert_alive().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt31_connack_first_byte_is_zero_even_when_the_session_resumes() {
    let b = start_default_broker().await;
    for (version, resumed) in [(Version::V31, [0x20, 0x02, 0x00, 0x00]), (Version::V311, [0x20, 0x02, 0x01, 0x00])] {
        let id = unique("v31-ack");
        let opts = ConnectOpts::new(&id).clean(false).version(version);
        assert_eq!(connack_bytes(b.addr, &opts).await, [0x20, 0x02, 0x00, 0x00], "{version:?}: new session");
        b.wait_stats("the first connection to end", |s| s.clients_connected == 0).await;
        // The session is kept: 3.1.1 says so in the Session Present bit, 3.1 has no such bit (reserved, 0).
        assert_eq!(connack_bytes(b.addr, &opts).await, resumed, "{version:?}: resumed session");
        b.wait_stats("the second connection to end", |s| s.clients_connected == 0).await;
    }
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_publish_to_dollar_topics_except_sys_and_share_and_wildcards_never_match_them() {
    let b = start_default_broker().await;
    let thing = unique("thing");
    let shadow = format!("$aws/things/{thing}/shadow/update");
    let mut everything = RawClient::connect_v311(b.addr, &unique("all")).await;
    let codes = everything.subscribe(&[("#", Qos::AtLeastOnce), ("+/things/#", Qos::AtLeastOnce)]).await;
    assert_eq!(codes, vec![1, 1]);
    let mut aws = RawClient::connect_v311(b.addr, &unique("aws")).await;
    aws.subscribe_one("$aws/#", Qos::AtLeastOnce).await;
    let mut exact = RawClient::connect_v311(b.addr, &unique("exact")).await;
    exact.subscribe_one(&shadow, Qos::AtLeastOnce).await;
    let mut publisher = RawClient::connect_v311(b.addr, &unique("pub")).await;

    publisher.publish_acked(&shadow, b"{\"state\":{}}", Qos::AtLeastOnce, false).await;
    for c in [&mut aws, &mut exact] {
        let p = c.recv_publish().await;
        assert_eq!((p.topic.as_str(), p.text().as_str()), (shadow.as_str(), "{\"state\":{}}"));
        c.puback(p.pid.unwrap()).await;
    }
    // A `$` topic never matches a filter that starts with a wildcard [MQTT-4.7.2-1].
    everything.expect_silence(QUIET).await;

    // Retained on a `$` topic, it reaches a later `$aws/#` subscriber.
    publisher.publish_acked(&shadow, b"last", Qos::AtLeastOnce, true).await;
    for c in [&mut aws, &mut exact] {
        let p = c.recv_publish().await;
        c.puback(p.pid.unwrap()).await;
    }
    let mut late = RawClient::connect_v311(b.addr, &unique("late")).await;
    late.subscribe_one("$aws/#", Qos::AtMostOnce).await;
    let p = late.recv_publish().await;
    assert_eq!((p.topic.as_str(), p.text().as_str(), p.retain), (shadow.as_str(), "last", true));

    // `$SYS` belongs to the broker and `$share/` is no topic name: acknowledged (MQTT 3 has no refusal), not
    // routed, counted.
    let mut sys = RawClient::connect_v311(b.addr, &unique("sys")).await;
    sys.subscribe_one("$SYS/#", Qos::AtLeastOnce).await;
    let refused = b.stats().messages_refused;
    publisher.publish_acked(&format!("$SYS/{thing}"), b"forged", Qos::AtLeastOnce, false).await;
    publisher.publish_acked(&format!("$share/g/{thing}"), b"not a topic", Qos::AtLeastOnce, false).await;
    b.wait_stats("two refused publishes", |s| s.messages_refused == refused + 2).await;
    for c in [&mut sys, &mut everything, &mut aws] {
        c.expect_silence(QUIET).await;
    }
    publisher.assert_alive().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_as_deep_as_mosquitto_allows_are_routed_by_default() {
    let b = start_default_broker().await;
    // Mosquitto allows 200 separators; go past that.
    let root = unique("deep");
    let deep = format!("{root}/{}", vec!["l"; 300].join("/"));
    let filter = format!("{root}/{}/#", vec!["+"; 299].join("/"));
    let mut sub = RawClient::connect_v311(b.addr, &unique("deepsub")).await;
    assert_eq!(sub.subscribe(&[(&filter, Qos::AtLeastOnce), (&deep, Qos::AtLeastOnce)]).await, vec![1, 1]);
    let mut publisher = RawClient::connect_v311(b.addr, &unique("deeppub")).await;
    publisher.publish_acked(&deep, b"down there", Qos::AtLeastOnce, false).await;
    let p = sub.recv_publish().await;
    assert_eq!((p.topic.as_str(), p.text().as_str()), (deep.as_str(), "down there"));
    sub.puback(p.pid.unwrap()).await;
    sub.expect_silence(QUIET).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qos1_publish_too_deep_on_mqtt311_is_acknowledged_dropped_and_counted() {
    let mut settings = Settings::default();
    settings.mqtt.max_topic_levels = 3;
    let b = start_broker(settings).await;
    let mut sub = RawClient::connect_v311(b.addr, &unique("sub")).await;
    sub.subscribe_one("#", Qos::AtLeastOnce).await;
    let mut publisher = RawClient::connect_v311(b.addr, &unique("pub")).await;
    let before = b.stats();
    // MQTT 3.1.1 has no way to refuse a PUBLISH: the acknowledgement is the normal one.
    publisher.publish_acked("a/b/c/d", b"too deep", Qos::AtLeastOnce, false).await;
    publisher.publish_acked("a/b/c/d", b"too deep", Qos::ExactlyOnce, false).await;
    publisher.publish_acked("a/b/c/d", b"too deep", Qos::AtMostOnce, false).await;
    let s = b.wait_stats("three refused", |s| s.messages_refused == before.messages_refused + 3).await;
    assert_eq!(s.messages_delivered, before.messages_delivered);
    sub.expect_silence(QUIET).await;
    publisher.publish_acked("a/b/c", b"deep enough", Qos::AtLeastOnce, false).await;
    assert_eq!(sub.recv_publish().await.text(), "deep enough");
    b.shutdown().await;
}

/// A subscriber holding one QoS 1 and one QoS 2 message in flight: returns it with their packet ids.
async fn subscriber_with_both_flows_in_flight(b: &tests::TestBroker) -> (RawClient, u16, u16) {
    subscriber_with_both_flows_in_flight_as(b, &unique("acksub")).await
}

async fn subscriber_with_both_flows_in_flight_as(b: &tests::TestBroker, id: &str) -> (RawClient, u16, u16) {
    let topic = unique("acks/t");
    let mut sub = RawClient::connect_v311(b.addr, id).await;
    sub.subscribe_one(&topic, Qos::ExactlyOnce).await;
    let mut publisher = RawClient::connect_v311(b.addr, &unique("ackpub")).await;
    publisher.publish_acked(&topic, b"one", Qos::AtLeastOnce, false).await;
    publisher.publish_acked(&topic, b"two", Qos::ExactlyOnce, false).await;
    let one = sub.recv_publish().await;
    let two = sub.recv_publish().await;
    assert_eq!((one.qos, two.qos), (Qos::AtLeastOnce, Qos::ExactlyOnce));
    (sub, one.pid.unwrap(), two.pid.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_of_the_other_qos_flow_closes_the_connection() {
    let b = start_default_broker().await;
    // PUBCOMP for the QoS 1 message.
    let (mut sub, qos1, _) = subscriber_with_both_flows_in_flight(&b).await;
    sub.pubcomp(qos1).await;
    sub.expect_closed(WAIT).await;
    // PUBREC for the QoS 1 message.
    let (mut sub, qos1, _) = subscriber_with_both_flows_in_flight(&b).await;
    sub.pubrec(qos1).await;
    sub.expect_closed(WAIT).await;
    // PUBACK for the QoS 2 message, before and after its PUBREC.
    let (mut sub, _, qos2) = subscriber_with_both_flows_in_flight(&b).await;
    sub.puback(qos2).await;
    sub.expect_closed(WAIT).await;
    let (mut sub, _, qos2) = subscriber_with_both_flows_in_flight(&b).await;
    sub.pubrec(qos2).await;
    assert_eq!(sub.recv().await, Rx::PubRel(qos2));
    sub.puback(qos2).await;
    sub.expect_closed(WAIT).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_for_ids_not_in_flight_are_harmless() {
    let b = start_default_broker().await;
    let id = unique("acksub");
    let (mut sub, qos1, qos2) = subscriber_with_both_flows_in_flight_as(&b, &id).await;
    // Both flows completed as they should, then every acknowledgement again (a duplicate after a resend), and
    // acknowledgements for ids never used.
    sub.puback(qos1).await;
    sub.pubrec(qos2).await;
    assert_eq!(sub.recv().await, Rx::PubRel(qos2));
    sub.pubcomp(qos2).await;
    for id in [qos1, qos2, 999] {
        sub.puback(id).await;
        sub.pubcomp(id).await;
    }
    sub.assert_alive().await;
    b.wait_session(&id, "nothing in flight", |s| s.inflight_messages == 0).await;
    b.shutdown().await;
}

/// Waits until the broker's log has a line containing every one of `parts`, and returns it.
async fn log_line(b: &BrokerProcess, parts: &[&str]) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let log = b.log_text();
        if let Some(line) = log.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
            return line.to_owned();
        }
        assert!(tokio::time::Instant::now() < deadline, "no log line with {parts:?}:\n{log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A configuration file of its own for a broker process.
fn config_file(toml: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("{}.toml", unique("conformance-config")));
    std::fs::write(&path, toml).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_refused_for_its_keep_alive_is_logged_with_that_reason_and_the_client_id() {
    let config = config_file("[sessions]\nmax_keepalive = 60\n");
    let Some(b) = BrokerProcess::start(&["--config", config.to_str().unwrap()]) else { return };
    let id = unique("sleepy");
    let (mut c, ack) = RawClient::connect_with(b.addr, &ConnectOpts::new(&id).keep_alive(120)).await;
    // The return code is Mosquitto's ("identifier rejected"); the log says what really happened.
    assert_eq!(ack, Rx::ConnAck { session_present: false, code: 2 });
    c.expect_closed(WAIT).await;
    let line = log_line(&b, &["CONNECT refused", &format!("client_id=\"{id}\"")]).await;
    assert!(line.contains("keep alive exceeds max_keepalive") && line.contains("keep_alive=120"), "{line}");
    let _ = std::fs::remove_file(config);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protocol_error_is_logged_as_the_rule_it_broke_not_as_a_malformed_packet() {
    let Some(b) = BrokerProcess::start(&[]) else { return };
    let id = unique("dup0");
    let mut c = RawClient::connect_v311(b.addr, &id).await;
    // A QoS 0 PUBLISH with DUP set: well-formed, but against [MQTT-3.3.1-2] (MQTT 5 answers DISCONNECT 0x82).
    let p = Packet::Publish(Publish {
        dup: false,
        qos_pid: QosPid::AtMostOnce,
        retain: false,
        topic: TopicName::new("dup/zero").unwrap(),
        properties: Properties::empty(),
        payload: b"x",
    });
    let mut bytes = encode(&p, Version::V311);
    bytes[0] |= 0b1000;
    c.send_raw(&bytes).await;
    c.expect_closed(WAIT).await;
    let line = log_line(&b, &["connection closed", &format!("client_id=\"{id}\"")]).await;
    assert!(line.contains("protocol error: DUP flag set on a QoS 0 PUBLISH [MQTT-3.3.1-2]"), "{line}");
    assert!(!line.contains("malformed"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_drops_are_logged_at_info_once_per_interval_with_a_count_and_a_truncated_topic() {
    let config = config_file("[mqtt]\nmax_topic_levels = 3\n");
    let Some(b) = BrokerProcess::start(&["--config", config.to_str().unwrap()]) else { return };
    let id = unique("deep-publisher");
    let mut c = RawClient::connect_v311(b.addr, &id).await;
    let long_level = "x".repeat(200);
    let deep = format!("a/b/c/{long_level}");
    for _ in 0..20 {
        c.publish_acked(&deep, b"dropped", Qos::AtLeastOnce, false).await;
    }
    c.publish_acked("$SYS/forged", b"dropped", Qos::AtLeastOnce, false).await;
    c.assert_alive().await;
    let sys = log_line(&b, &["PUBLISH refused", "$SYS topics are reserved for the broker"]).await;
    assert!(sys.contains(&format!("client_id=\"{id}\"")) && sys.contains("count=1"), "{sys}");
    // One line for the twenty (the next one would come ten seconds after the first).
    let first = log_line(&b, &["PUBLISH refused", "more levels than mqtt.max_topic_levels"]).await;
    assert!(first.contains("count=1") && first.contains(&format!("client_id=\"{id}\"")), "{first}");
    let lines = b.log_text().lines().filter(|l| l.contains("more levels than mqtt.max_topic_levels")).count();
    assert_eq!(lines, 1, "{}", b.log_text());
    // The topic is quoted cut to 128 bytes.
    let quoted = &deep[..128];
    assert!(first.contains(&format!("topic=\"{quoted}\"")), "{first}");
    assert!(!first.contains(&deep[..129]), "{first}");
    let _ = std::fs::remove_file(config);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connect_is_logged_with_its_client_id() {
    let config = config_file("[sessions]\nmax_keepalive = 60\n");
    let Some(b) = BrokerProcess::start(&["--config", config.to_str().unwrap()]) else { return };
    let id = unique("refused-keepalive");
    // MQTT 3.1.1 cannot be told a Server Keep Alive: keep alive 0 over a max_keepalive is refused (0x02).
    let mut c = RawClient::tcp(b.addr).await;
    match c.handshake(&ConnectOpts::new(&id).keep_alive(0)).await {
        Rx::ConnAck { code, .. } => assert_eq!(code, 0x02),
        other => panic!("expected a refusing CONNACK, got {other:?}"),
    }
    let line = log_line(&b, &["connection closed", &format!("client_id=\"{id}\"")]).await;
    assert!(line.contains("refused with"), "{line}");
    let _ = std::fs::remove_file(config);
}
