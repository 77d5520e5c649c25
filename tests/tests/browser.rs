//! A real browser: headless Chromium loads tests/browser/index.html, whose MQTT.js client connects to the broker
//! over ws://, subscribes, and shows what mosquitto_pub publishes over plain TCP. The assertion is on the page's
//! text. Needs /usr/bin/chromium (or $CHROMIUM), node, the npm packages of tests/browser (scripts/tls-deps.sh
//! installs all three) and mosquitto_pub; a missing one skips locally and fails under REQUIRE_INTEROP=1.

mod tls_support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use broker::config::{ListenerSettings, Transport};
use broker::{Broker, Listener, Settings};
use tests::process::{self, run};
use tls_support::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;

fn browser_dir() -> PathBuf {
    process::workspace_dir().join("tests/browser")
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

#[tokio::test]
async fn browser_mqtt_js_over_websocket_shows_a_mosquitto_pub_message() {
    let dir = browser_dir();
    let ready = process::require("chromium (apt: chromium)", chromium().is_file())
        && process::require("node", process::on_path("node"))
        && process::require(
            "npm packages of tests/browser (npm ci)",
            dir.join("node_modules/mqtt/dist/mqtt.min.js").is_file()
                && dir.join("node_modules/playwright-core/package.json").is_file(),
        )
        && need("mosquitto_pub");
    if !ready {
        return;
    }

    // One broker, two listeners: ws:// for the page, plain MQTT for mosquitto_pub.
    let ws_tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mqtt_tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (ws_addr, mqtt_addr) = (ws_tcp.local_addr().unwrap(), mqtt_tcp.local_addr().unwrap());
    let ws_settings = ListenerSettings {
        transport: Transport::WebSocket { path: "/mqtt".into() },
        ..ListenerSettings::plain(ws_addr)
    };
    let listeners = vec![Listener::from_tcp(ws_tcp, &ws_settings).unwrap(), Listener::plain(mqtt_tcp)];
    let broker = Broker::new(Settings::default()).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = broker.clone();
    let task = tokio::spawn(async move {
        serving
            .serve_listeners(listeners, async move {
                let _ = stopped.await;
            })
            .await
    });

    let topic = unique("browser/dashboard");
    let text = format!("hello browser {}", unique("msg"));
    let shot = std::env::temp_dir().join(format!("{}.png", unique("browser-page")));
    let broker_url = format!("ws://127.0.0.1:{}/mqtt", ws_addr.port());
    let mut node = tokio::process::Command::new("node")
        .arg(dir.join("run.mjs"))
        .args(["--broker", &broker_url, "--topic", &topic, "--expect", &text, "--timeout", "40000"])
        .arg("--screenshot")
        .arg(&shot)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(node.stdout.take().unwrap()).lines();
    let limit = Duration::from_secs(45);
    let first = within_for(limit, "page subscribed", lines.next_line()).await.unwrap().unwrap_or_default();
    assert!(first.starts_with("SUBSCRIBED subscribed to"), "page did not subscribe: {first}");
    assert_eq!(broker.stats().clients_connected, 1);

    let port = mqtt_addr.port().to_string();
    let out = run("mosquitto_pub", &["-h", "127.0.0.1", "-p", &port, "-q", "1", "-t", &topic, "-m", &text], WAIT).await;
    assert_eq!(out.code, Some(0), "mosquitto_pub: {}", out.stderr);

    let page = within_for(limit, "page shows the message", lines.next_line()).await.unwrap().unwrap_or_default();
    assert_eq!(page, format!("PAGE {topic}: {text}"));
    let status = within_for(limit, "node exits", node.wait()).await.unwrap();
    assert!(status.success(), "node run.mjs: {status}");
    eprintln!("screenshot of the page: {}", shot.display());

    let _ = stop.send(());
    within_for(Duration::from_secs(10), "broker shutdown", task).await.unwrap().unwrap();
}
