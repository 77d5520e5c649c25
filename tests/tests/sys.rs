//! The `$SYS` tree of the real broker binary, read with `mosquitto_sub -t '$SYS/#'`: Mosquitto's names, retained
//! (a late subscriber gets every value at once), updated every `sys_interval`, and readable only as the ACL allows.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tests::process::{BrokerProcess, Output, broker_bin, on_path, require, run};
use tests::unique;

const LIMIT: Duration = Duration::from_secs(20);

fn mosquitto_sub_available() -> bool {
    require("mosquitto_sub (apt: mosquitto-clients)", on_path("mosquitto_sub"))
}

async fn mosquitto_sub(port: u16, args: &[&str]) -> Output {
    let port = port.to_string();
    let mut all = vec!["-h", "127.0.0.1", "-p", &port];
    all.extend_from_slice(args);
    run("mosquitto_sub", &all, LIMIT).await
}

/// `topic payload` lines of `mosquitto_sub -v` into pairs (topics with a space, such as
/// `$SYS/broker/retained messages/count`, keep it: the payload is the last word).
fn lines(out: &Output) -> Vec<(String, String)> {
    out.stdout.lines().filter_map(|l| l.rsplit_once(' ')).map(|(t, p)| (t.to_owned(), p.to_owned())).collect()
}

#[tokio::test]
async fn a_late_subscriber_gets_the_whole_retained_tree_under_mosquittos_names() {
    if !mosquitto_sub_available() {
        return;
    }
    // The embedded default configuration: sys_interval = 10, the first publication at start.
    let Some(broker) = BrokerProcess::start(&[]) else { return };
    let out = mosquitto_sub(broker.port(), &["-t", "$SYS/#", "-v", "-C", "34", "-W", "10"]).await;
    assert_eq!(out.code, Some(0), "mosquitto_sub: {}", out.stderr);
    let got = lines(&out);
    let value = |topic: &str| {
        got.iter().find(|(t, _)| t == topic).map(|(_, p)| p.clone()).unwrap_or_else(|| panic!("no {topic} in {got:#?}"))
    };
    // The first publication races this subscriber's connection: it counts it or not.
    assert!(["0", "1"].contains(&value("$SYS/broker/clients/connected").as_str()), "{got:#?}");
    assert_eq!(value("$SYS/broker/messages/received"), "0");
    assert!(["0", "1"].contains(&value("$SYS/broker/subscriptions/count").as_str()), "{got:#?}");
    assert_eq!(value("$SYS/broker/retained messages/count"), "0");
    assert_eq!(value("$SYS/broker/load/messages/received/1min"), "0.00");
    assert!(out.stdout.contains("$SYS/broker/version edge-mqtt version "), "{}", out.stdout);
    assert!(out.stdout.contains("$SYS/broker/uptime "), "{}", out.stdout);
    for name in ["bytes/received", "bytes/sent", "messages/sent", "clients/total", "load/bytes/sent/15min"] {
        value(&format!("$SYS/broker/{name}"));
    }
    // `#` does not match topics starting with `$` [MQTT-4.7.2-1].
    let all = mosquitto_sub(broker.port(), &["-t", "#", "-v", "-W", "2"]).await;
    assert!(!all.stdout.contains("$SYS"), "{}", all.stdout);
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn sys_updates_every_interval_and_only_reaches_clients_the_acl_lets_read_it() {
    if !mosquitto_sub_available() {
        return;
    }
    let Some(bin) = broker_bin() else {
        require("the broker binary (cargo build -p broker)", false);
        return;
    };
    let dir = std::env::temp_dir().join(unique("sys-acl"));
    std::fs::create_dir_all(&dir).unwrap();
    let passwd = dir.join("passwd").display().to_string();
    for (i, user) in ["ops", "dev"].iter().enumerate() {
        let mut args = vec!["passwd", "-b", &passwd, user, "secret"];
        if i == 0 {
            args.insert(1, "-c");
        }
        let out = run(&bin.display().to_string(), &args, LIMIT).await;
        assert_eq!(out.code, Some(0), "{}", out.stderr);
    }
    let acl = write(&dir, "acl", "user ops\ntopic read $SYS/#\n\nuser dev\ntopic readwrite dev/#\n");
    let config = write(
        &dir,
        "broker.toml",
        &format!(
            "sys_interval = 1\n[[listeners]]\nbind = \"127.0.0.1:0\"\npassword_file = {:?}\nacl_file = {:?}\n",
            passwd,
            acl.display().to_string()
        ),
    );
    let Some(broker) = BrokerProcess::start_with_config(&config) else { return };
    let port = broker.port();

    // dev may not read $SYS: its subscription to it is refused (the one to dev/x granted keeps it connected), and
    // nothing arrives in 3 intervals, neither the retained values nor an update; mosquitto_sub times out (27).
    let dev = mosquitto_sub(port, &["-u", "dev", "-P", "secret", "-t", "$SYS/#", "-t", "dev/x", "-v", "-W", "3"]).await;
    assert_eq!(dev.code, Some(27), "dev: {}", dev.stderr);
    assert!(dev.stdout.is_empty(), "dev read $SYS: {}", dev.stdout);

    // ops reads $SYS: for 4 s (4 intervals) it sees the uptime advance and, last, the connected count that
    // includes itself (dev has gone).
    let (connected, uptime) = ("$SYS/broker/clients/connected", "$SYS/broker/uptime");
    let ops = mosquitto_sub(port, &["-u", "ops", "-P", "secret", "-t", connected, "-t", uptime, "-v", "-W", "4"]).await;
    assert_eq!(ops.code, Some(27), "ops: {}", ops.stderr);
    let got = lines(&ops);
    let last = got.iter().rev().find(|(t, _)| t == connected).map(|(_, v)| v.as_str());
    assert_eq!(last, Some("1"), "{}", ops.stdout);
    let uptimes: Vec<&str> = ops.stdout.lines().filter(|l| l.starts_with(uptime)).collect();
    assert!(uptimes.len() >= 2, "the uptime was published at least twice: {}", ops.stdout);
    let _ = std::fs::remove_dir_all(&dir);
}
