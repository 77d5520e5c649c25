//! The operators' HTTP endpoint of the real broker binary: `/healthz`, `/readyz`, and `/metrics` read by the
//! Python `prometheus_client` OpenMetrics parser after a scripted load, whose counters must equal what the clients
//! sent and received.

mod tls_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rumqttc::QoS;
use tests::client::{self, options};
use tests::http::{get, parse_metrics, parser_available};
use tests::process::{BrokerProcess, require};
use tests::unique;

/// Bytes of an MQTT 3.1.1 PUBLISH with a Remaining Length under 128.
fn publish_len(topic: &str, payload: usize, qos: QoS) -> f64 {
    let id = if qos == QoS::AtMostOnce { 0 } else { 2 };
    let remaining = 2 + topic.len() + id + payload;
    assert!(remaining < 128);
    (2 + remaining) as f64
}

/// Scrapes until `ready` holds for the parsed samples (10 s at most).
async fn scrape_until(
    addr: std::net::SocketAddr,
    what: &str,
    ready: impl Fn(&BTreeMap<String, f64>) -> bool,
) -> BTreeMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = get(addr, "/metrics").await;
        assert_eq!(r.status, 200);
        let content_type = r.headers.iter().find(|(k, _)| k == "content-type").map(|(_, v)| v.as_str());
        assert_eq!(content_type, Some("application/openmetrics-text; version=1.0.0; charset=utf-8"));
        let samples = parse_metrics(&r.body);
        if ready(&samples) {
            return samples;
        }
        assert!(Instant::now() < deadline, "{what} within 10 s; last scrape:\n{}", r.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn value(samples: &BTreeMap<String, f64>, key: &str) -> f64 {
    *samples.get(key).unwrap_or_else(|| panic!("no sample {key}; samples: {samples:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_clients_sent_and_received() {
    if !require("python3 prometheus_client (scripts/obs-deps.sh)", parser_available()) {
        return;
    }
    let Some(broker) = BrokerProcess::start(&[]) else { return };
    let http = broker.http_addr().expect("the embedded default configuration serves HTTP");
    assert_eq!((get(http, "/healthz").await.status, get(http, "/readyz").await.status), (200, 200));
    assert_eq!(get(http, "/nothing").await.status, 404);

    let topic = unique("obs/m");
    let (mut sub, _) = client::connect(options(broker.addr, &unique("sub")), false).await;
    assert_eq!(sub.subscribe(&format!("{topic}/#"), QoS::AtLeastOnce).await, Some(QoS::AtLeastOnce));
    let (mut publisher, _) = client::connect(options(broker.addr, &unique("pub")), false).await;
    let (t0, t1) = (format!("{topic}/zero"), format!("{topic}/one"));
    let payload = b"0123456789";
    for _ in 0..20 {
        publisher.publish(&t0, QoS::AtMostOnce, false, &payload[..]).await;
    }
    for _ in 0..10 {
        publisher.publish(&t1, QoS::AtLeastOnce, false, &payload[..]).await;
    }
    // Nobody subscribes to these: one dropped for want of subscribers, one retained.
    let nobody = unique("obs/nobody");
    publisher.publish(&nobody, QoS::AtMostOnce, false, &payload[..]).await;
    let kept = unique("obs/kept");
    publisher.publish(&kept, QoS::AtLeastOnce, true, &payload[..]).await;
    let got = sub.publishes(30).await;
    assert_eq!(got.iter().filter(|p| p.qos == QoS::AtLeastOnce).count(), 10);

    // rumqttc acknowledges each QoS 1 delivery: every one is counted once its PUBACK is in. A connection adds
    // what it read and wrote to the counters once per batch, so the wait covers those counts too.
    let s = scrape_until(http, "32 messages received, 30 deliveries written and 10 acknowledged", |s| {
        s.get(r#"mqtt_delivery_latency_seconds_count{stage="written"}"#) == Some(&30.0)
            && s.get(r#"mqtt_delivery_latency_seconds_count{stage="acknowledged"}"#) == Some(&10.0)
            && s.get(r#"mqtt_messages_received_total{qos="0"}"#) == Some(&21.0)
            && s.get(r#"mqtt_messages_received_total{qos="1"}"#) == Some(&11.0)
            && s.get(r#"mqtt_messages_sent_total{qos="0"}"#) == Some(&20.0)
            && s.get(r#"mqtt_messages_sent_total{qos="1"}"#) == Some(&10.0)
    })
    .await;
    let v = |k: &str| value(&s, k);
    let qos0 = publish_len(&t0, 10, QoS::AtMostOnce);
    let qos1 = publish_len(&t1, 10, QoS::AtLeastOnce);
    let extra = publish_len(&nobody, 10, QoS::AtMostOnce) + publish_len(&kept, 10, QoS::AtLeastOnce);
    assert_eq!(v(r#"mqtt_messages_received_total{qos="0"}"#), 21.0);
    assert_eq!(v(r#"mqtt_messages_received_total{qos="1"}"#), 11.0);
    assert_eq!(v(r#"mqtt_messages_received_total{qos="2"}"#), 0.0);
    assert_eq!(
        v(r#"mqtt_received_bytes_total{qos="0"}"#) + v(r#"mqtt_received_bytes_total{qos="1"}"#),
        20.0 * qos0 + 10.0 * qos1 + extra
    );
    assert_eq!(v(r#"mqtt_messages_sent_total{qos="0"}"#), 20.0);
    assert_eq!(v(r#"mqtt_messages_sent_total{qos="1"}"#), 10.0);
    assert_eq!(v(r#"mqtt_sent_bytes_total{qos="0"}"#), 20.0 * qos0);
    assert_eq!(v(r#"mqtt_sent_bytes_total{qos="1"}"#), 10.0 * qos1);
    // The histogram's +Inf bucket holds every delivery, and the sum is a real, positive latency.
    assert_eq!(v(r#"mqtt_delivery_latency_seconds_bucket{le="+Inf",stage="written"}"#), 30.0);
    assert!(v(r#"mqtt_delivery_latency_seconds_sum{stage="written"}"#) > 0.0);
    assert_eq!(v(r#"mqtt_messages_dropped_total{reason="no_subscribers"}"#), 1.0);
    assert_eq!(v(r#"mqtt_messages_dropped_total{reason="queue_full"}"#), 0.0);
    assert_eq!(v(r#"mqtt_retained_messages{}"#), 1.0);
    assert_eq!(v(r#"mqtt_retained_bytes{}"#), (kept.len() + 10) as f64);
    assert_eq!(v(r#"mqtt_clients_connected{}"#), 2.0);
    assert_eq!(v(r#"mqtt_sessions{state="online"}"#), 2.0);
    assert_eq!(v(r#"mqtt_subscriptions{}"#), 1.0);
    assert_eq!(v(r#"mqtt_queued_messages{}"#), 0.0);
    let listener = format!(r#"listener="{}""#, broker.addr);
    assert_eq!(v(&format!("mqtt_connections{{{listener}}}")), 2.0);
    assert_eq!(v(&format!("mqtt_connections_accepted_total{{{listener}}}")), 2.0);
    // The embedded default journals (persistence on): the retained message was made durable by an fsync.
    assert!(v("mqtt_journal_fsyncs_total{}") >= 1.0);

    publisher.disconnect().await;
    let s = scrape_until(http, "the publisher's connection closed", |s| {
        s.get(&format!("mqtt_connections{{{listener}}}")) == Some(&1.0)
    })
    .await;
    assert_eq!(value(&s, r#"mqtt_clients_connected{}"#), 1.0);
    sub.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_off_says_so_instead_of_serving_zeros() {
    let dir = std::env::temp_dir().join(unique("metrics-off"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("broker.toml");
    std::fs::write(
        &config,
        "[[listeners]]\nbind = \"127.0.0.1:0\"\n[persistence]\nenabled = false\n\
         [http]\nbind = \"127.0.0.1:0\"\nmetrics = false\n",
    )
    .unwrap();
    let Some(broker) = BrokerProcess::start_with_config(&config) else { return };
    let http = broker.http_addr().expect("[http] is on");
    // Messages still flow.
    let topic = unique("obs/off");
    let (mut sub, _) = client::connect(options(broker.addr, &unique("sub")), false).await;
    assert_eq!(sub.subscribe(&topic, QoS::AtLeastOnce).await, Some(QoS::AtLeastOnce));
    let (mut publisher, _) = client::connect(options(broker.addr, &unique("pub")), false).await;
    publisher.publish(&topic, QoS::AtLeastOnce, false, &b"x"[..]).await;
    assert_eq!(sub.publishes(1).await.len(), 1);
    let r = get(http, "/metrics").await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.body, "metrics are off in this broker's configuration (http.metrics = false)\n");
    assert_eq!(get(http, "/healthz").await.status, 200);
    publisher.disconnect().await;
    sub.disconnect().await;
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Python's `urllib` over `ssl` against the endpoint: HTTPS with the test CA (status, body and the serial of the
/// certificate served), then plain HTTP to the same port (`plain`: what went wrong).
const HTTPS_CLIENT: &str = r#"
import json, socket, ssl, sys, urllib.request
ca, port = sys.argv[1], int(sys.argv[2])
ctx = ssl.create_default_context(cafile=ca)
out = {}
with urllib.request.urlopen(f"https://localhost:{port}/metrics", context=ctx, timeout=10) as r:
    out["status"], out["body"] = r.status, r.read().decode()
with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="localhost") as s:
    out["serial"] = s.getpeercert()["serialNumber"]
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        out["plain"] = f"answered {r.status}"
except Exception as e:
    out["plain"] = f"{type(e).__name__}: {e}"
print(json.dumps(out))
"#;

fn fetch_https(ca: &std::path::Path, port: u16) -> serde_json::Value {
    let out = std::process::Command::new("python3")
        .args(["-c", HTTPS_CLIENT, &ca.display().to_string(), &port.to_string()])
        .output()
        .expect("python3");
    assert!(out.status.success(), "python3 HTTPS client: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON from the client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_over_https_and_a_new_certificate_is_served_after_sighup() {
    if !require("python3 prometheus_client (scripts/obs-deps.sh)", parser_available()) {
        return;
    }
    let pki = tls_support::Pki::new("http");
    let leaf = pki.server("http", 1);
    let config = pki.dir.join("broker.toml");
    std::fs::write(
        &config,
        format!(
            "[[listeners]]\nbind = \"127.0.0.1:0\"\n[persistence]\nenabled = false\n\
             [http]\nbind = \"127.0.0.1:0\"\n[http.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            leaf.cert.display(),
            leaf.key.display()
        ),
    )
    .unwrap();
    let Some(broker) = BrokerProcess::start_with_config(&config) else { return };
    let port = broker.http_addr().expect("[http] is on").port();
    let r = tokio::task::spawn_blocking({
        let ca = pki.ca_file.clone();
        move || fetch_https(&ca, port)
    })
    .await
    .unwrap();
    assert_eq!(r["status"], 200, "{r}");
    let samples = parse_metrics(r["body"].as_str().unwrap());
    let listener = format!(r#"mqtt_connections_accepted_total{{listener="{}"}}"#, broker.addr);
    assert_eq!(value(&samples, &listener), 0.0);
    assert_eq!(r["serial"], "01", "{r}");
    let plain = r["plain"].as_str().unwrap();
    assert!(!plain.starts_with("answered"), "plain HTTP to the HTTPS port got an HTTP answer: {plain}");

    // A new certificate, then SIGHUP: new connections get it.
    pki.server("http", 2);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            std::process::Command::new("kill").args(["-HUP", &broker.pid().to_string()]).status().unwrap().success()
        );
        let ca = pki.ca_file.clone();
        let r = tokio::task::spawn_blocking(move || fetch_https(&ca, port)).await.unwrap();
        if r["serial"] == "02" {
            assert_eq!(r["status"], 200);
            break;
        }
        assert!(Instant::now() < deadline, "the new certificate within 10 s; served {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(broker.log_text().contains("TLS certificates reloaded"), "{}", broker.log_text());
}

/// The addresses of every `listening addr=` line of the broker's log so far, in order.
fn listen_addrs(broker: &BrokerProcess) -> Vec<std::net::SocketAddr> {
    broker.log.lock().unwrap().iter().filter_map(|l| tests::process::parse_listen_line(l)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_per_listener_memory_budget_drops_and_fsync_histograms() {
    use tests::raw::{ConnectOpts, RawClient, Rx};
    if !require("python3 prometheus_client (scripts/obs-deps.sh)", parser_available()) {
        return;
    }
    let Some(bin) = tests::process::broker_bin() else { return };
    let dir = std::env::temp_dir().join(unique("metrics-refusals"));
    std::fs::create_dir_all(&dir).unwrap();
    let passwd = dir.join("passwd");
    let made = std::process::Command::new(&bin)
        .args(["passwd", "-c", "-b", &passwd.display().to_string(), "ops", "right"])
        .output()
        .unwrap();
    assert!(made.status.success(), "broker passwd: {}", String::from_utf8_lossy(&made.stderr));
    // Listener A needs a password; listener B takes one connection at a time. Three connections per address, on
    // loopback too; a 4 KiB memory budget; every journal record fsynced.
    let config = dir.join("broker.toml");
    std::fs::write(
        &config,
        format!(
            "[[listeners]]\nbind = \"127.0.0.1:0\"\nallow_anonymous = false\npassword_file = \"{}\"\n\
             [[listeners]]\nbind = \"127.0.0.1:0\"\nmax_connections = 1\n\
             [limits]\nmax_connections_per_address = 3\nper_address_limits_on_loopback = true\n\
             max_message_memory = 4096\n\
             [persistence]\nenabled = true\nfsync = \"always\"\n[http]\nbind = \"127.0.0.1:0\"\n",
            passwd.display()
        ),
    )
    .unwrap();
    let Some(broker) = BrokerProcess::start_with_config(&config) else { return };
    broker.wait_log("http endpoint");
    let deadline = Instant::now() + Duration::from_secs(10);
    let (a, b) = loop {
        if let [a, b] = listen_addrs(&broker)[..] {
            break (a, b);
        }
        assert!(Instant::now() < deadline, "two listening lines within 10 s:\n{}", broker.log_text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let http = broker.http_addr().unwrap();
    let refused = |l: std::net::SocketAddr, reason: &str| {
        format!(r#"mqtt_connections_refused_total{{listener="{l}",reason="{reason}"}}"#)
    };

    // B's one place taken, then a second connection to B is closed as it arrives.
    let mut b1 = RawClient::connect_v311(b, &unique("b1")).await;
    let mut b2 = RawClient::tcp(b).await;
    b2.expect_closed(Duration::from_secs(10)).await;
    // With b1, two connections to A that send nothing fill the address's three places: a fourth is refused.
    let c1 = RawClient::tcp(a).await;
    let c2 = RawClient::tcp(a).await;
    scrape_until(http, "two open connections on A", |s| {
        s.get(&format!(r#"mqtt_connections{{listener="{a}"}}"#)) == Some(&2.0)
    })
    .await;
    let mut c3 = RawClient::tcp(a).await;
    c3.expect_closed(Duration::from_secs(10)).await;
    drop((c1, c2));
    scrape_until(http, "A's connections closed", |s| {
        s.get(&format!(r#"mqtt_connections{{listener="{a}"}}"#)) == Some(&0.0)
    })
    .await;
    // A wrong password on A.
    let opts = ConnectOpts::new(&unique("bad")).login("ops", Some("wrong"));
    let (_, ack) = RawClient::connect_with(a, &opts).await;
    assert!(matches!(ack, Rx::ConnAck { code: 4, .. }), "{ack:?}");

    // Three retained QoS 1 messages, each journaled; one QoS 0 message larger than the whole memory budget.
    let topic = unique("obs/durable");
    for i in 0..3 {
        b1.publish_acked(&format!("{topic}/{i}"), b"kept", mqtt_codec::QoS::AtLeastOnce, true).await;
    }
    b1.publish(&topic, &[0u8; 8192], mqtt_codec::QoS::AtMostOnce, 0, false, false).await;

    let s = scrape_until(http, "the bad password and the budget drop counted", |s| {
        s.get(&refused(a, "bad_username_or_password")) == Some(&1.0)
            && s.get(r#"mqtt_messages_dropped_total{reason="memory_budget"}"#) == Some(&1.0)
    })
    .await;
    let v = |k: &str| value(&s, k);
    assert_eq!(v(&refused(b, "connection_limit")), 1.0);
    assert_eq!(v(&refused(a, "connection_limit")), 0.0);
    assert_eq!(v(&refused(a, "address_connection_limit")), 1.0);
    assert_eq!(v(&refused(b, "address_connection_limit")), 0.0);
    assert_eq!(v(&refused(b, "bad_username_or_password")), 0.0);
    assert_eq!(v(&refused(a, "not_authorized")), 0.0);
    assert_eq!(v(r#"mqtt_message_memory_limit_bytes{}"#), 4096.0);
    // Each fsync lands in one bucket of each histogram; records per fsync sum to the records fsynced.
    let fsyncs = v("mqtt_journal_fsyncs_total{}");
    assert!(fsyncs >= 3.0, "three retained messages acknowledged after their fsync: {fsyncs}");
    assert_eq!(v("mqtt_journal_fsync_latency_seconds_count{}"), fsyncs);
    assert_eq!(v(r#"mqtt_journal_fsync_latency_seconds_bucket{le="+Inf"}"#), fsyncs);
    assert!(v("mqtt_journal_fsync_latency_seconds_sum{}") > 0.0);
    assert_eq!(v("mqtt_journal_records_per_fsync_count{}"), fsyncs);
    assert_eq!(v("mqtt_journal_records_per_fsync_sum{}"), v("mqtt_journal_fsynced_records_total{}"));
    assert!(v(r#"mqtt_journal_records_per_fsync_bucket{le="1.0"}"#) <= fsyncs);
    b1.disconnect().await;
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}
