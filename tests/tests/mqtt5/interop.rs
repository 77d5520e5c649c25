//! MQTT 5 clients other projects wrote against the broker: rumqttc's v5 API, paho-mqtt 2.x scenarios
//! (`tests/python/v5_*.py`), and `mosquitto_pub`/`mosquitto_sub -V mqttv5` with `-D` properties. A missing program
//! skips locally and fails under `REQUIRE_INTEROP=1`.

use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use tests::process::{on_path, paho_available, require, run, workspace_dir};
use tests::{start_default_broker, unique, within};
use tokio::sync::mpsc;

use crate::v5client::{C5, Pub, user_props};

/// A rumqttc v5 client whose event loop runs in a task; incoming packets come out of the channel.
async fn rumqttc_v5(addr: std::net::SocketAddr, id: &str) -> (AsyncClient, mpsc::UnboundedReceiver<Packet>) {
    let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(5));
    let (client, eventloop) = AsyncClient::new(o, 16);
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(drive(eventloop, tx));
    match within("rumqttc v5 CONNACK", rx.recv()).await {
        Some(Packet::ConnAck(a)) => assert_eq!(a.code, rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    (client, rx)
}

async fn drive(mut eventloop: EventLoop, tx: mpsc::UnboundedSender<Packet>) {
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(p)) => {
                if tx.send(p).is_err() {
                    return;
                }
            }
            Ok(Event::Outgoing(_)) => {}
            Err(_) => return,
        }
    }
}

async fn next_matching(rx: &mut mpsc::UnboundedReceiver<Packet>, what: &str, f: impl Fn(&Packet) -> bool) -> Packet {
    loop {
        match within(what, rx.recv()).await {
            Some(p) if f(&p) => return p,
            Some(_) => {}
            None => panic!("rumqttc event loop ended waiting for {what}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_v5_qos1_and_qos2_round_trip_with_user_properties() {
    let b = start_default_broker().await;
    let topic = unique("rv5/t");
    let (sub, mut sub_rx) = rumqttc_v5(b.addr, &unique("rv5sub")).await;
    within("subscribe", sub.subscribe(&topic, QoS::ExactlyOnce)).await.unwrap();
    next_matching(&mut sub_rx, "SUBACK", |p| matches!(p, Packet::SubAck(_))).await;
    // A raw v5 subscriber checks what rumqttc put on the wire came through.
    let mut raw = C5::v5(b.addr, &unique("rv5raw")).await;
    raw.sub(&topic, 2).await;

    let (publisher, mut pub_rx) = rumqttc_v5(b.addr, &unique("rv5pub")).await;
    for (qos, n) in [(QoS::AtLeastOnce, 1), (QoS::ExactlyOnce, 2)] {
        let props = PublishProperties {
            user_properties: vec![("n".into(), n.to_string()), ("lib".into(), "rumqttc".into())],
            content_type: Some("text/plain".into()),
            ..PublishProperties::default()
        };
        let payload = format!("qos{n}").into_bytes();
        within("publish", publisher.publish_with_properties(&topic, qos, false, payload, props)).await.unwrap();
        let done = if n == 1 { "PUBACK" } else { "PUBCOMP" };
        next_matching(&mut pub_rx, done, |p| matches!(p, Packet::PubAck(_) | Packet::PubComp(_))).await;

        let Packet::Publish(p) = next_matching(&mut sub_rx, "PUBLISH", |p| matches!(p, Packet::Publish(_))).await
        else {
            unreachable!()
        };
        assert_eq!((&p.payload[..], p.qos), (format!("qos{n}").as_bytes(), qos));
        let props = p.properties.expect("properties forwarded");
        assert_eq!(props.user_properties, vec![("n".into(), n.to_string()), ("lib".into(), "rumqttc".into())]);
        assert_eq!(props.content_type.as_deref(), Some("text/plain"));

        let f = raw.recv_publish().await;
        assert_eq!(
            user_props(&f.publish().properties),
            vec![("n".into(), n.to_string()), ("lib".into(), "rumqttc".into())]
        );
        raw.ack(&f).await;
    }
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_v5_persistent_session_resumes_with_queued_qos1() {
    let b = start_default_broker().await;
    let topic = unique("rv5s/t");
    let id = unique("rv5s");
    let options = |clean| {
        let mut o = MqttOptions::new(&id, b.addr.ip().to_string(), b.addr.port());
        o.set_clean_start(clean);
        o.set_session_expiry_interval(Some(60));
        o
    };
    let (client, eventloop) = AsyncClient::new(options(true), 16);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(drive(eventloop, tx));
    next_matching(&mut rx, "CONNACK", |p| matches!(p, Packet::ConnAck(_))).await;
    within("subscribe", client.subscribe(&topic, QoS::AtLeastOnce)).await.unwrap();
    next_matching(&mut rx, "SUBACK", |p| matches!(p, Packet::SubAck(_))).await;
    within("disconnect", client.disconnect()).await.unwrap();
    within("event loop end", task).await.unwrap();
    b.wait_stats("offline", |s| s.clients_connected == 0 && s.sessions == 1).await;

    let mut p = C5::v5(b.addr, &unique("rv5spub")).await;
    p.publish_ok(Pub::new(&topic, b"while away", 1)).await;

    let (_client, eventloop) = AsyncClient::new(options(false), 16);
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(drive(eventloop, tx));
    match next_matching(&mut rx, "CONNACK", |p| matches!(p, Packet::ConnAck(_))).await {
        Packet::ConnAck(a) => assert!(a.session_present),
        _ => unreachable!(),
    }
    match next_matching(&mut rx, "PUBLISH", |p| matches!(p, Packet::Publish(_))).await {
        Packet::Publish(p) => assert_eq!(&p.payload[..], b"while away"),
        _ => unreachable!(),
    }
    b.shutdown().await;
}

async fn python(script: &str, addr: std::net::SocketAddr) {
    let path = workspace_dir().join("tests").join("python").join(script);
    let port = addr.port().to_string();
    let out = run("python3", &[path.to_str().unwrap(), "127.0.0.1", &port], Duration::from_secs(30)).await;
    assert_eq!(out.code, Some(0), "{script} failed:\nstdout:\n{}\nstderr:\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("OK "), "{script} printed no OK line: {}", out.stdout);
    eprintln!("{script}: {}", out.stdout.trim());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_v5_request_response_with_response_topic_and_correlation_data() {
    if !require("python3 with paho-mqtt 2.x (pip install 'paho-mqtt>=2')", paho_available()) {
        return;
    }
    let b = start_default_broker().await;
    python("v5_request_response.py", b.addr).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_v5_shared_subscription_load_balancing() {
    if !require("python3 with paho-mqtt 2.x (pip install 'paho-mqtt>=2')", paho_available()) {
        return;
    }
    let b = start_default_broker().await;
    python("v5_shared.py", b.addr).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_v5_session_expiry_across_a_reconnect() {
    if !require("python3 with paho-mqtt 2.x (pip install 'paho-mqtt>=2')", paho_available()) {
        return;
    }
    let b = start_default_broker().await;
    python("v5_session_expiry.py", b.addr).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_v5_will_delay() {
    if !require("python3 with paho-mqtt 2.x (pip install 'paho-mqtt>=2')", paho_available()) {
        return;
    }
    let b = start_default_broker().await;
    python("v5_will_delay.py", b.addr).await;
    b.shutdown().await;
}

fn mosquitto_clients() -> bool {
    require("mosquitto_pub and mosquitto_sub (apt-get install mosquitto-clients)", {
        on_path("mosquitto_pub") && on_path("mosquitto_sub")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_v5_user_properties_both_ways() {
    if !mosquitto_clients() {
        return;
    }
    let b = start_default_broker().await;
    let port = b.port().to_string();
    let topic = unique("mosq5/t");
    // mosquitto_sub prints the user properties of what it receives (-F '%P').
    let sub = {
        let args: Vec<String> = ["-V", "mqttv5", "-h", "127.0.0.1", "-p", &port, "-t", &topic, "-C", "1", "-W", "10"]
            .iter()
            .map(|s| s.to_string())
            .chain(["-F".into(), "%P|%p".into()])
            .collect();
        tokio::spawn(async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run("mosquitto_sub", &args, Duration::from_secs(15)).await
        })
    };
    b.wait_stats("mosquitto_sub to subscribe", |s| s.clients_connected == 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await; // its SUBSCRIBE follows its CONNECT
    let mut raw = C5::v5(b.addr, &unique("mosq5raw")).await;
    raw.sub(&topic, 1).await;
    let out = run(
        "mosquitto_pub",
        &[
            "-V",
            "mqttv5",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            &topic,
            "-q",
            "1",
            "-m",
            "hello-v5",
            "-D",
            "publish",
            "user-property",
            "color",
            "blue",
            "-D",
            "publish",
            "user-property",
            "size",
            "xl",
            "-D",
            "publish",
            "content-type",
            "text/plain",
        ],
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(out.code, Some(0), "mosquitto_pub: {}", out.stderr);
    let f = raw.recv_publish().await;
    assert_eq!(f.text(), "hello-v5");
    assert_eq!(
        user_props(&f.publish().properties),
        vec![("color".into(), "blue".into()), ("size".into(), "xl".into())]
    );
    assert_eq!(f.publish().properties.content_type(), Some("text/plain"));
    let out = within("mosquitto_sub", sub).await.unwrap();
    assert_eq!(out.code, Some(0), "mosquitto_sub: {}", out.stderr);
    assert_eq!(out.stdout.trim(), "color:blue size:xl|hello-v5", "mosquitto_sub -F '%P|%p'");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_v5_session_expiry_keeps_messages_for_a_returning_subscriber() {
    if !mosquitto_clients() {
        return;
    }
    let b = start_default_broker().await;
    let port = b.port().to_string();
    let topic = unique("mosq5s/t");
    let id = unique("mosq5s");
    let sub_args = |last: &[&str]| {
        let mut v: Vec<String> = ["-V", "mqttv5", "-h", "127.0.0.1", "-p", &port, "-t", &topic, "-q", "1", "-i", &id]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(last.iter().map(|s| s.to_string()));
        v
    };
    // First run: clean start, Session Expiry Interval 60 set with -D; exit once subscribed (-E). The session stays.
    let args = sub_args(&["-D", "connect", "session-expiry-interval", "60", "-E"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let first = run("mosquitto_sub", &args, Duration::from_secs(10)).await;
    assert_eq!(first.code, Some(0), "mosquitto_sub -E: {}", first.stderr);
    b.wait_stats("an offline session", |s| s.clients_connected == 0 && s.sessions == 1).await;
    let mut p = C5::v5(b.addr, &unique("mosq5spub")).await;
    p.publish_ok(Pub::new(&topic, b"kept-1", 1)).await;
    p.publish_ok(Pub::new(&topic, b"kept-2", 1)).await;
    b.wait_session(&id, "two queued", |s| s.queued_messages == 2).await;
    // Second run resumes it (-c: Clean Start 0; mosquitto_sub then sets the expiry itself, -x).
    let args = sub_args(&["-c", "-x", "60", "-C", "2", "-W", "10"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let second = run("mosquitto_sub", &args, Duration::from_secs(10)).await;
    assert_eq!(second.code, Some(0), "mosquitto_sub: {}", second.stderr);
    assert_eq!(second.stdout.lines().collect::<Vec<_>>(), vec!["kept-1", "kept-2"]);
    b.wait_stats("mosquitto_sub gone", |s| s.clients_connected == 1).await;
    assert!(b.broker.session_stats(&id).is_some(), "its session is kept after the second run too");
    b.shutdown().await;
}
