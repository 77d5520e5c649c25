//! SIGHUP on the real broker binary: `log.level` and the limits new connections read change without a restart.
//! (TLS files: tests/tls.rs; password and ACL files: tests/auth.rs.)

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tests::process::{broker_bin, parse_listen_line, require};
use tests::raw::RawClient;
use tests::unique;

/// Waits (10 s) until a line of `log` satisfies `f`.
fn wait_line(log: &Arc<Mutex<Vec<String>>>, what: &str, f: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(l) = log.lock().unwrap().iter().find(|l| f(l)) {
            return l.clone();
        }
        assert!(Instant::now() < deadline, "no log line {what} within 10 s:\n{}", log.lock().unwrap().join("\n"));
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn sighup_applies_a_new_log_level() {
    let bin = broker_bin();
    if !require("the broker binary (cargo build -p broker)", bin.is_some()) {
        return;
    }
    let dir = std::env::temp_dir().join(unique("reload"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("broker.toml");
    let write = |level: &str| {
        let text = format!(
            "[[listeners]]\nbind = \"127.0.0.1:0\"\n[persistence]\nenabled = false\n[http]\nenabled = false\n\
             [log]\nlevel = \"{level}\"\n"
        );
        std::fs::write(&config, text).unwrap();
    };
    write("info");
    let mut child = Command::new(bin.unwrap())
        .arg("--config")
        .arg(&config)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    let listening = wait_line(&log, "listening", |l| parse_listen_line(l).is_some());
    let addr = parse_listen_line(&listening).unwrap();
    // At info, the debug lines of a connection (and of the start) are not written.
    let c = RawClient::connect_v311(addr, &unique("before")).await;
    c.disconnect().await;
    wait_line(&log, "at info", |l| l.contains("starting broker"));
    assert!(!log.lock().unwrap().iter().any(|l| l.contains("DEBUG")), "{}", log.lock().unwrap().join("\n"));

    write("debug");
    assert!(Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap().success());
    wait_line(&log, "log.level reloaded", |l| l.contains("log.level reloaded") && l.contains("debug"));
    let c = RawClient::connect_v311(addr, &unique("after")).await;
    c.disconnect().await;
    wait_line(&log, "a DEBUG line after the reload", |l| l.contains("DEBUG"));

    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn sighup_gives_new_connections_the_new_limits_and_open_ones_keep_theirs() {
    use mqtt_codec::QoS;
    use tests::process::BrokerProcess;
    use tests::raw::ConnectOpts;

    let dir = std::env::temp_dir().join(unique("reload-limits"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("broker.toml");
    let write = |max_packet_size: u32, max_keepalive: u16| {
        let text = format!(
            "[[listeners]]\nbind = \"127.0.0.1:0\"\n[persistence]\nenabled = false\n[http]\nenabled = false\n\
             [limits]\nmax_packet_size = {max_packet_size}\n[sessions]\nmax_keepalive = {max_keepalive}\n"
        );
        std::fs::write(&config, text).unwrap();
    };
    write(65_536, 0);
    let Some(broker) = BrokerProcess::start_with_config(&config) else { return };
    let topic = unique("reload/limits");
    let big = vec![b'x'; 5000];
    let mut old =
        RawClient::connect(broker.addr, &ConnectOpts { keep_alive: 0, ..ConnectOpts::new(&unique("old")) }).await.0;
    old.subscribe_one(&topic, QoS::AtMostOnce).await;
    old.publish(&topic, &big, QoS::AtMostOnce, 0, false, false).await;
    assert_eq!(old.recv_publish().await.payload.len(), 5000);

    write(1024, 60);
    assert!(Command::new("kill").args(["-HUP", &broker.pid().to_string()]).status().unwrap().success());
    broker.wait_log("limits for new connections reloaded");

    // A new connection: keep alive 0 is refused now that max_keepalive is set (MQTT 3: identifier rejected), and
    // a 5000-byte PUBLISH is over the new max_packet_size.
    let (_, ack) =
        RawClient::connect_with(broker.addr, &ConnectOpts { keep_alive: 0, ..ConnectOpts::new(&unique("ka")) }).await;
    assert!(matches!(ack, tests::raw::Rx::ConnAck { code: 2, .. }), "{ack:?}");
    let mut new = RawClient::connect_v311(broker.addr, &unique("new")).await;
    new.publish(&topic, &big, QoS::AtMostOnce, 0, false, false).await;
    new.expect_closed(Duration::from_secs(10)).await;
    // The open connection keeps the limits it was accepted with.
    old.publish(&topic, &big, QoS::AtMostOnce, 0, false, false).await;
    assert_eq!(old.recv_publish().await.payload.len(), 5000);
    old.disconnect().await;
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}
