//! Interop with clients other projects wrote: Debian's `mosquitto_pub`/`mosquitto_sub` against the built `broker`
//! binary (MQTT 3.1 and 3.1.1, QoS 0/1/2, retained, persistent sessions), and Python paho-mqtt 2.x against an
//! in-process broker (a QoS 2 round trip and the README's offline-queue example).
//!
//! A missing program skips the test locally and fails it under `REQUIRE_INTEROP=1`; `scripts/interop-deps.sh`
//! installs them.

use std::process::Stdio;
use std::time::Duration;

use tests::process::{BrokerProcess, Output, on_path, paho_available, require, run, workspace_dir};
use tests::{start_default_broker, unique, within};
use tokio::io::{AsyncBufReadExt, BufReader};

const LIMIT: Duration = Duration::from_secs(15);
const VERSIONS: [&str; 2] = ["mqttv31", "mqttv311"];

fn mosquitto_available() -> bool {
    require(
        "mosquitto_pub/mosquitto_sub (apt: mosquitto-clients)",
        on_path("mosquitto_pub") && on_path("mosquitto_sub"),
    )
}

/// A client id that MQTT 3.1 accepts (at most 23 characters).
fn short_id(prefix: &str) -> String {
    let id = unique(prefix);
    assert!(id.len() <= 23, "{id} is too long for MQTT 3.1");
    id
}

fn check(what: &str, out: &Output) {
    assert_eq!(out.code, Some(0), "{what} failed\nstdout:\n{}\nstderr:\n{}", out.stdout, out.stderr);
}

async fn mosquitto_pub(port: u16, args: &[&str]) {
    let port = port.to_string();
    let mut all = vec!["-h", "127.0.0.1", "-p", &port];
    all.extend_from_slice(args);
    check(&format!("mosquitto_pub {args:?}"), &run("mosquitto_pub", &all, LIMIT).await);
}

async fn mosquitto_sub(port: u16, args: &[&str]) -> Output {
    let port = port.to_string();
    let mut all = vec!["-h", "127.0.0.1", "-p", &port];
    all.extend_from_slice(args);
    run("mosquitto_sub", &all, LIMIT).await
}

/// Starts `mosquitto_sub -d` and returns once its SUBACK arrived, so a publish cannot race the subscription; the
/// returned future yields the subscriber's output lines after it exits.
async fn live_subscriber(port: u16, args: Vec<String>) -> tokio::task::JoinHandle<Vec<String>> {
    // Line-buffered, or the SUBACK line would sit in stdio's pipe buffer until the program exits.
    let mut child = tokio::process::Command::new("stdbuf")
        .args(["-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", &port.to_string(), "-d"])
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("mosquitto_sub runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    within("mosquitto_sub's SUBACK", async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let suback = line.contains("received SUBACK");
            seen.push(line);
            if suback {
                return;
            }
        }
        panic!("mosquitto_sub exited before SUBACK: {seen:?}");
    })
    .await;
    tokio::spawn(async move {
        let rest = tests::within_for(LIMIT, "mosquitto_sub to exit", async {
            while let Some(line) = lines.next_line().await.unwrap() {
                seen.push(line);
            }
            let _ = child.wait().await;
            seen
        });
        rest.await
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_clients_qos_0_1_2_with_mqtt_31_and_311() {
    if !mosquitto_available() {
        return;
    }
    let Some(b) = BrokerProcess::start(&[]) else { return };
    for version in VERSIONS {
        for qos in ["0", "1", "2"] {
            let topic = unique(&format!("mosq/{version}/q{qos}"));
            let payload = format!("hello over {version} at QoS {qos}");
            let args = vec!["-V", version, "-q", qos, "-t", &topic, "-C", "1", "-W", "10", "-F", "%t|%q|%r|%p"];
            let sub = live_subscriber(b.port(), args.into_iter().map(String::from).collect()).await;
            mosquitto_pub(b.port(), &["-V", version, "-q", qos, "-t", &topic, "-m", &payload]).await;
            let lines = within("mosquitto_sub output", sub).await.unwrap();
            let want = format!("{topic}|{qos}|0|{payload}");
            assert!(lines.contains(&want), "{version} QoS {qos}: expected {want:?} in {lines:#?}\n{}", b.log_text());
            // The debug trace shows the complete QoS 2 flow on the subscriber's side.
            if qos == "2" {
                for step in ["received PUBLISH", "sending PUBREC", "received PUBREL", "sending PUBCOMP"] {
                    assert!(lines.iter().any(|l| l.contains(step)), "{version}: no {step:?} in {lines:#?}");
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_clients_retained_set_replace_clear() {
    if !mosquitto_available() {
        return;
    }
    let Some(b) = BrokerProcess::start(&[]) else { return };
    for version in VERSIONS {
        let topic = unique(&format!("mosq/{version}/retained"));
        let read = ["-V", version, "-t", &topic, "-C", "1", "-W", "5", "-F", "%r|%p"];
        mosquitto_pub(b.port(), &["-V", version, "-q", "1", "-r", "-t", &topic, "-m", "first"]).await;
        let out = mosquitto_sub(b.port(), &read).await;
        check("read retained", &out);
        assert_eq!(out.stdout.trim(), "1|first", "{version}");

        mosquitto_pub(b.port(), &["-V", version, "-q", "2", "-r", "-t", &topic, "-m", "second"]).await;
        let out = mosquitto_sub(b.port(), &read).await;
        assert_eq!(out.stdout.trim(), "1|second", "{version}: replaced");

        // An empty retained message clears it: a new subscriber gets nothing within 1 s.
        mosquitto_pub(b.port(), &["-V", version, "-r", "-n", "-t", &topic]).await;
        let out = mosquitto_sub(b.port(), &["-V", version, "-t", &topic, "-W", "1", "-F", "%r|%p"]).await;
        assert_eq!(out.stdout.trim(), "", "{version}: cleared, yet got {:?}", out.stdout);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_clients_persistent_session() {
    if !mosquitto_available() {
        return;
    }
    let Some(b) = BrokerProcess::start(&[]) else { return };
    for version in VERSIONS {
        let id = short_id("msub");
        let topic = unique(&format!("mosq/{version}/persist"));
        // Subscribe with a persistent session (-c) and leave as soon as the SUBACK arrives (-E).
        let out = mosquitto_sub(b.port(), &["-V", version, "-c", "-i", &id, "-q", "1", "-t", &topic, "-E"]).await;
        check("persistent subscribe", &out);
        for (qos, text) in [("1", "one"), ("2", "two"), ("1", "three")] {
            mosquitto_pub(b.port(), &["-V", version, "-q", qos, "-t", &topic, "-m", text]).await;
        }
        // Back with the same id: everything published meanwhile, in order, without subscribing again.
        let out =
            mosquitto_sub(b.port(), &["-V", version, "-c", "-i", &id, "-q", "1", "-t", &topic, "-C", "3", "-W", "5"])
                .await;
        check("resume", &out);
        assert_eq!(out.stdout.lines().collect::<Vec<_>>(), ["one", "two", "three"], "{version}");
    }
}

async fn python(script: &str, args: &[&str]) -> Output {
    let path = workspace_dir().join("tests").join("python").join(script);
    let path = path.to_str().unwrap().to_owned();
    let mut all = vec![path.as_str()];
    all.extend_from_slice(args);
    run("python3", &all, Duration::from_secs(30)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_qos2_round_trip() {
    if !require("python3 with paho-mqtt 2.x (pip: 'paho-mqtt>=2,<3')", paho_available()) {
        return;
    }
    let b = start_default_broker().await;
    let prefix = unique("paho/qos2");
    let out = python("qos2_roundtrip.py", &["127.0.0.1", &b.port().to_string(), &prefix]).await;
    check("qos2_roundtrip.py", &out);
    let stats = b.stats();
    assert_eq!((stats.messages_received, stats.messages_delivered), (20, 20), "{stats:?}");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_readme_queue_example() {
    if !require("python3 with paho-mqtt 2.x (pip: 'paho-mqtt>=2,<3')", paho_available()) {
        return;
    }
    let b = start_default_broker().await;
    let out = python("queue_example.py", &["--host", "127.0.0.1", "--port", &b.port().to_string()]).await;
    check("queue_example.py", &out);
    assert!(out.stdout.contains("session present = True"), "{}", out.stdout);
    assert!(out.stdout.contains("OK: the consumer received all 5 messages"), "{}", out.stdout);
    b.shutdown().await;
}
