//! The admin API of the real broker binary: listing clients, one session's detail, disconnecting a client (its will
//! goes out) and deleting an offline session (its queue is gone, also after a restart), with HTTP basic
//! authentication against a password file; read-only without one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rumqttc::{LastWill, QoS};
use tests::client::{self, Ev, options};
use tests::http::{get, request};
use tests::process::{BrokerProcess, broker_bin, require, run};
use tests::unique;

/// `Authorization` for `ops:secret`.
const OPS: (&str, &str) = ("Authorization", "Basic b3BzOnNlY3JldA==");

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_credentials_the_api_lists_clients_and_refuses_actions() {
    let Some(broker) = BrokerProcess::start(&[]) else { return };
    let http = broker.http_addr().unwrap();
    let id = unique("listed");
    let mut o = options(broker.addr, &id);
    o.set_credentials("alice", "pw");
    let (_c, _) = client::connect(o, false).await;
    let r = get(http, "/api/clients").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let body = json(&r.body);
    let clients = body["clients"].as_array().unwrap();
    let me = clients.iter().find(|c| c["client_id"] == id.as_str()).unwrap_or_else(|| panic!("{body}"));
    assert_eq!(me["connected"], true);
    assert_eq!(me["protocol"], "3.1.1");
    assert_eq!(me["username"], "alice");
    assert!(me["address"].as_str().unwrap().starts_with("127.0.0.1:"), "{me}");
    assert!(me["connected_since"].as_u64().unwrap() > 1_600_000_000, "{me}");
    assert_eq!((me["queued"].as_u64(), me["inflight"].as_u64(), me["dropped"].as_u64()), (Some(0), Some(0), Some(0)));
    // Acting needs credentials, which this endpoint has no file for.
    let r = request(http, "POST", &format!("/api/clients/{id}/disconnect"), &[], "").await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(get(http, "/api/clients/nobody-here").await.status, 404);
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A config whose HTTP endpoint takes `ops:secret`, in a fresh directory.
async fn secured_config() -> Option<(PathBuf, PathBuf)> {
    let bin = broker_bin();
    if !require("the broker binary (cargo build -p broker)", bin.is_some()) {
        return None;
    }
    let dir = std::env::temp_dir().join(unique("admin"));
    std::fs::create_dir_all(&dir).unwrap();
    let passwd = dir.join("passwd").display().to_string();
    let out = run(
        &bin.unwrap().display().to_string(),
        &["passwd", "-c", "-b", &passwd, "ops", "secret"],
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let config = write(
        &dir,
        "broker.toml",
        &format!(
            "[[listeners]]\nbind = \"127.0.0.1:0\"\n[http]\nbind = \"127.0.0.1:0\"\n[http.auth]\npassword_file = {passwd:?}\n"
        ),
    );
    Some((dir, config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnecting_a_client_sends_its_will_and_deleting_an_offline_session_drops_its_queue_for_good() {
    let Some((dir, config)) = secured_config().await else { return };
    let data = dir.join("data");
    let config_arg = config.display().to_string();
    let broker = BrokerProcess::start_in(&data, &["--config", &config_arg]).unwrap();
    let http = broker.http_addr().unwrap();

    // Credentials: none or wrong are refused; probes stay open.
    assert_eq!(get(http, "/api/clients").await.status, 401);
    assert_eq!(request(http, "GET", "/metrics", &[("Authorization", "Basic b3BzOndyb25n")], "").await.status, 401);
    assert_eq!(get(http, "/healthz").await.status, 200);
    assert_eq!(request(http, "GET", "/api/clients", &[OPS], "").await.status, 200);

    // Disconnect: the will goes out.
    let will_topic = unique("admin/will");
    let (mut watcher, _) = client::connect(options(broker.addr, &unique("watcher")), false).await;
    watcher.subscribe(&will_topic, QoS::AtLeastOnce).await;
    let victim_id = unique("victim");
    let mut o = options(broker.addr, &victim_id);
    o.set_last_will(LastWill::new(&will_topic, "gone", QoS::AtLeastOnce, false));
    let (mut victim, _) = client::connect(o, false).await;
    let r = request(http, "POST", &format!("/api/clients/{victim_id}/disconnect"), &[OPS], "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let will = watcher.next_publish().await;
    assert_eq!((will.topic.as_str(), &will.payload[..]), (will_topic.as_str(), &b"gone"[..]));
    loop {
        if let Ev::Err(_) = victim.next().await {
            break;
        }
    }
    let r = request(http, "POST", &format!("/api/clients/{victim_id}/disconnect"), &[OPS], "").await;
    assert_eq!(r.status, 404, "not connected any more: {}", r.body);

    // An offline persistent session with 3 queued messages.
    let topic = unique("admin/q");
    let sleeper = unique("sleeper");
    let mut o = options(broker.addr, &sleeper);
    o.set_clean_session(false);
    let (mut s, _) = client::connect(o.clone(), false).await;
    s.subscribe(&topic, QoS::AtLeastOnce).await;
    s.disconnect().await;
    let (mut publisher, _) = client::connect(options(broker.addr, &unique("pub")), false).await;
    for i in 0..3 {
        publisher.publish(&topic, QoS::AtLeastOnce, false, format!("m{i}")).await;
    }
    let r = request(http, "GET", &format!("/api/clients/{sleeper}"), &[OPS], "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let detail = json(&r.body);
    assert_eq!(detail["session"]["connected"], false, "{detail}");
    assert_eq!(detail["session"]["queued"], 3, "{detail}");
    assert_eq!(detail["subscriptions"][0]["filter"], topic.as_str(), "{detail}");
    let r = request(http, "DELETE", "/api/sessions/nobody", &[OPS], "").await;
    assert_eq!(r.status, 404);
    let r = request(http, "DELETE", &format!("/api/sessions/{sleeper}"), &[OPS], "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(request(http, "GET", &format!("/api/clients/{sleeper}"), &[OPS], "").await.status, 404);
    publisher.disconnect().await;
    watcher.disconnect().await;

    // After a restart on the same journal the session is still gone: no session, no queued messages.
    assert_eq!(broker.terminate(), Some(0));
    let broker = BrokerProcess::start_in(&data, &["--config", &config_arg]).unwrap();
    let mut o = options(broker.addr, &sleeper);
    o.set_clean_session(false);
    let (mut s, present) = client::connect(o, false).await;
    assert!(!present, "the deleted session came back after a restart");
    s.expect_no_publish(Duration::from_millis(500)).await;
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_connected_clients_session_is_not_deleted() {
    let Some((dir, config)) = secured_config().await else { return };
    let Some(broker) = BrokerProcess::start_with_config(&config) else { return };
    let http = broker.http_addr().unwrap();
    let id = unique("online");
    let (_c, _) = client::connect(options(broker.addr, &id), false).await;
    let r = request(http, "DELETE", &format!("/api/sessions/{id}"), &[OPS], "").await;
    assert_eq!(r.status, 409, "{}", r.body);
    let _ = std::fs::remove_dir_all(&dir);
}
