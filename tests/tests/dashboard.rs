//! The dashboard of the real broker binary in headless Chromium: while a client publishes at a known rate and an
//! offline persistent session's queue grows, the page shows that rate and names that client as the longest
//! queue. A screenshot is saved under target/ (`target/dashboard.png`). Needs /usr/bin/chromium (or $CHROMIUM),
//! node and the npm packages of tests/browser (scripts/tls-deps.sh installs them); a missing one skips locally and
//! fails under REQUIRE_INTEROP=1.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use rumqttc::QoS;
use tests::client::{self, options};
use tests::process::{self, BrokerProcess};
use tests::unique;

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// Messages per second the test publishes.
const RATE: u64 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_publish_rate_and_the_longest_queue() {
    let dir = process::workspace_dir().join("tests/browser");
    let ready = process::require("chromium (apt: chromium)", chromium().is_file())
        && process::require("node", process::on_path("node"))
        && process::require(
            "npm packages of tests/browser (npm ci)",
            dir.join("node_modules/playwright-core/package.json").is_file(),
        );
    if !ready {
        return;
    }
    let Some(broker) = BrokerProcess::start(&[]) else { return };
    let http = broker.http_addr().unwrap();

    // An offline persistent session that everything published queues for.
    let topic = unique("dash/t");
    let sleeper = unique("dash-sleeper");
    let mut o = options(broker.addr, &sleeper);
    o.set_clean_session(false);
    let (mut s, _) = client::connect(o, false).await;
    s.subscribe(&topic, QoS::AtLeastOnce).await;
    s.disconnect().await;

    // A live subscriber too, so the page has deliveries (rates out, latency) to show.
    let (mut watcher, _) = client::connect(options(broker.addr, &unique("dash-watch")), false).await;
    watcher.subscribe(&topic, QoS::AtMostOnce).await;

    // RATE QoS 1 messages a second until the page has been checked.
    let (publisher, _) = client::connect(options(broker.addr, &unique("dash-pub")), false).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pub_topic = topic.clone();
    let stopped = stop.clone();
    let publishing = tokio::spawn(async move {
        let mut publisher = publisher;
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
        while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
            tick.tick().await;
            publisher.publish_nowait(&pub_topic, QoS::AtLeastOnce, false, &b"dashboard"[..]).await;
        }
        publisher
    });

    let target = process::workspace_dir().join("target");
    std::fs::create_dir_all(&target).unwrap();
    let shot = target.join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("node")
            .arg(dir.join("dashboard.mjs"))
            .args(["--url", &format!("http://{http}/"), "--rate", &RATE.to_string(), "--tolerance", "0.3"])
            .args(["--queue-client", &sleeper, "--timeout", "45000", "--screenshot"])
            .arg(&shot)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("node dashboard.mjs within 60 s")
    .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let publisher = publishing.await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "dashboard.mjs: {stdout}\n{}\nbroker log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        broker.log_text()
    );
    assert!(stdout.contains(&format!("longest={sleeper}")), "{stdout}");
    assert!(shot.is_file(), "no screenshot at {}", shot.display());
    eprintln!("{}screenshot: {}", stdout, shot.display());
    publisher.disconnect().await;
    watcher.disconnect().await;
}
