//! Bridges to an upstream broker (issue 16): Debian's `mosquitto` and a second instance of ours as upstreams.
//!
//! - Outage: the upstream is down while 10,000 QoS 1 and 1,000 QoS 2 messages are published to the edge, which is
//!   killed with SIGKILL and restarted; when the upstream comes back every message arrives, in order per publisher,
//!   the QoS 2 ones exactly once.
//! - In and out with prefixes, both directions at once, and no loops.
//! - A flapping link (a relay cuts the connection at random moments): nothing lost.
//! - TLS upstream with a client certificate.
//! - Overflow: drop-oldest keeps the newest and counts; refuse-newest answers `0x97` to an MQTT 5 publisher.
//! - QoS 0 out-messages wait for the upstream like QoS 1/2, within the byte bound.
//! - Bridge state and queue in `$SYS` (`mosquitto_sub`) and `/metrics` (`prometheus_client`'s parser).
//! - Forwarded counts: a PUBREL resent after a reconnection and answered PUBCOMP `0x92` (a scripted upstream).

mod tls_support;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant as StdInstant};

use broker::bridge::{BridgeSettings, Overflow, Protocol, parse_topic};
use broker::{Broker, Settings};
use rumqttc::{Event, MqttOptions, Packet, QoS};
use tests::client::{self, Ev};
use tests::process::{BrokerProcess, on_path, require, run};
use tests::raw::{ConnectOpts, RawClient, Version};
use tests::{start_broker, unique, within_for};

/// A port nothing listens on now (bound, then released).
fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn mosquitto_bin() -> Option<&'static str> {
    let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"].into_iter().find(|p| Path::new(p).exists());
    require("mosquitto (apt: mosquitto; scripts/interop-deps.sh)", bin.is_some()).then_some(bin).flatten()
}

/// Debian's mosquitto on a given port with a generated config: persistent (its own directory), unlimited queues for
/// offline clients. Killed on drop; [`Mosquitto::stop`] ends it with SIGTERM, so it saves its sessions.
struct Mosquitto {
    child: Option<Child>,
    addr: SocketAddr,
}

impl Mosquitto {
    fn start(bin: &str, port: u16, dir: &Path, extra: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let conf = dir.join("mosquitto.conf");
        let text = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\n\
             max_queued_messages 0\nset_tcp_nodelay true\nuser root\n{extra}",
            dir.display()
        );
        std::fs::write(&conf, text).unwrap();
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mosquitto");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = StdInstant::now() + Duration::from_secs(10);
        while StdStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
            assert!(StdInstant::now() < deadline, "mosquitto did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child: Some(child), addr }
    }

    fn stop(mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = StdInstant::now() + Duration::from_secs(10);
        while child.try_wait().ok().flatten().is_none() {
            assert!(StdInstant::now() < deadline, "mosquitto did not exit within 10 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(unique(tag));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A rumqttc client of `addr` with a persistent session and a large in-flight window.
fn persistent(addr: SocketAddr, id: &str) -> MqttOptions {
    let mut o = client::options(addr, id);
    o.set_clean_session(false);
    o.set_inflight(100);
    o.set_max_packet_size(1 << 20, 1 << 20);
    o
}

/// Publishes `n` messages `0..n` (payload = the number) to `topic` and waits until every one is acknowledged
/// (PUBACK, or PUBCOMP for QoS 2).
async fn publish_all(c: &mut client::Client, topic: &str, qos: QoS, n: usize) {
    publish_range(c, topic, qos, 0..n).await;
}

/// Publishes the numbers of `range` in order and waits for every acknowledgement.
async fn publish_range(c: &mut client::Client, topic: &str, qos: QoS, range: std::ops::Range<usize>) {
    let n = range.len();
    let sender = c.client.clone();
    let topic_owned = topic.to_owned();
    let feeding = tokio::spawn(async move {
        for i in range {
            sender.publish(&topic_owned, qos, false, i.to_string().into_bytes()).await.unwrap();
        }
    });
    let mut acked = 0;
    while acked < n {
        match c.next_within(Duration::from_secs(30)).await {
            Some(Ev::In(Packet::PubAck(_))) if qos == QoS::AtLeastOnce => acked += 1,
            Some(Ev::In(Packet::PubComp(_))) if qos == QoS::ExactlyOnce => acked += 1,
            Some(Ev::In(_)) => {}
            Some(Ev::Err(e)) => panic!("publisher failed after {acked} acknowledgements: {e}"),
            None => panic!("no acknowledgement within 30 s after {acked} of {n}"),
        }
    }
    within_for(Duration::from_secs(10), "publisher feed", feeding).await.unwrap();
}

/// Reads publishes until `done` says the counts of distinct payloads per topic are complete, and returns the payload
/// numbers received per topic, in arrival order; `Err` when nothing arrives for `quiet` or it all takes over `limit`.
async fn collect(
    c: &mut client::Client,
    quiet: Duration,
    limit: Duration,
    done: impl Fn(&HashMap<String, usize>) -> bool,
) -> Result<HashMap<String, Vec<usize>>, String> {
    let deadline = StdInstant::now() + limit;
    let mut got: HashMap<String, Vec<usize>> = HashMap::new();
    let mut seen: std::collections::HashSet<(String, usize)> = std::collections::HashSet::new();
    let mut distinct: HashMap<String, usize> = HashMap::new();
    while !done(&distinct) {
        if StdInstant::now() > deadline {
            return Err(format!("not complete within {limit:?}; distinct so far {distinct:?}"));
        }
        match c.next_within(quiet).await {
            Some(Ev::In(Packet::Publish(p))) => {
                let n = std::str::from_utf8(&p.payload).ok().and_then(|s| s.parse().ok()).expect("numeric payload");
                got.entry(p.topic.clone()).or_default().push(n);
                if seen.insert((p.topic.clone(), n)) {
                    *distinct.entry(p.topic.clone()).or_default() += 1;
                }
            }
            Some(Ev::In(_)) => {}
            Some(Ev::Err(e)) => return Err(format!("subscriber failed: {e}")),
            None => return Err(format!("nothing arrived for {quiet:?}; distinct so far {distinct:?}")),
        }
    }
    Ok(got)
}

/// Every number `0..n` arrived, and their first arrivals are in order; returns how many arrived twice.
fn check_in_order(topic: &str, got: &[usize], n: usize) -> usize {
    let mut seen = vec![false; n];
    let mut firsts = Vec::with_capacity(n);
    for &i in got {
        assert!(i < n, "{topic}: unexpected payload {i}");
        if !std::mem::replace(&mut seen[i], true) {
            firsts.push(i);
        }
    }
    let missing: Vec<usize> = (0..n).filter(|i| !seen[*i]).collect();
    assert!(
        missing.is_empty(),
        "{topic}: {} of {n} missing, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    if let Some(at) = firsts.windows(2).position(|w| w[0] > w[1]) {
        let around = &firsts[at.saturating_sub(5)..(at + 6).min(firsts.len())];
        let dup_at = got.iter().position(|&i| i == firsts[at + 1]).unwrap_or_default();
        panic!(
            "{topic}: first arrivals out of order at {at}: {around:?} (arrivals around it: {:?})",
            &got[dup_at.saturating_sub(8)..(dup_at + 8).min(got.len())]
        );
    }
    got.len() - n
}

fn bridge_config(port: u16, name: &str, client_id: &str, protocol: &str, topics: &[&str], extra: &str) -> String {
    let topics: Vec<String> = topics.iter().map(|t| format!("{t:?}")).collect();
    format!(
        "[[listeners]]\nbind = \"127.0.0.1:0\"\n\n[persistence]\nenabled = true\nfsync = \"always\"\n\n\
         [[bridges]]\nname = \"{name}\"\naddresses = [\"127.0.0.1:{port}\"]\nclient_id = \"{client_id}\"\n\
         protocol = \"{protocol}\"\ntopics = [{}]\nreconnect_min_ms = 50\nreconnect_max_ms = 500\n{extra}",
        topics.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_with_kill_9_loses_nothing_and_duplicates_no_qos2() {
    let Some(bin) = mosquitto_bin() else { return };
    const N1: usize = 10_000;
    const N2: usize = 1_000;
    let dir = TempDir::new("bridge-outage");
    let port = free_port();
    let sub_id = unique("cloud-sub");
    // The upstream subscriber's persistent session, made while the upstream was up; then the outage starts.
    let upstream = Mosquitto::start(bin, port, &dir.0.join("mosq"), "");
    let (mut sub, _) = client::connect(persistent(upstream.addr, &sub_id), false).await;
    assert_eq!(sub.subscribe("edge/#", QoS::ExactlyOnce).await, Some(QoS::ExactlyOnce));
    sub.disconnect().await;
    upstream.stop();

    let conf = dir.0.join("edge.toml");
    let topics = ["edge/# out 2"];
    // The bridge reaches the upstream through a relay, started once the upstream subscriber is back: Mosquitto
    // 2.0 can let a message that arrives while a reconnecting subscriber's queue is moved into its in-flight
    // window overtake that queue, which would hide what this test checks (the order the bridge forwards in).
    let relay_port = free_port();
    std::fs::write(&conf, bridge_config(relay_port, "cloud", &unique("edge"), "3.1.1", &topics, "")).unwrap();
    let data = dir.0.join("edge-data");
    let conf_arg = conf.display().to_string();
    let Some(edge) = BrokerProcess::start_in(&data, &["--config", &conf_arg]) else { return };
    edge.wait_log("bridge down");
    let (mut p1, _) = client::connect(persistent(edge.addr, &unique("pub1")), false).await;
    let (mut p2, _) = client::connect(persistent(edge.addr, &unique("pub2")), false).await;
    let started = StdInstant::now();
    let (a, b) = tokio::join!(publish_all(&mut p1, "edge/q1", QoS::AtLeastOnce, N1), async {
        publish_all(&mut p2, "edge/q2", QoS::ExactlyOnce, N2).await
    });
    let ((), ()) = (a, b);
    eprintln!("{N1} QoS 1 + {N2} QoS 2 acknowledged by the edge in {:?} (upstream down)", started.elapsed());
    drop((p1, p2));
    edge.kill9();

    let Some(edge) = BrokerProcess::start_in(&data, &["--config", &conf_arg]) else { return };
    edge.wait_log(&format!("queued={}", N1 + N2));
    edge.wait_log("bridge down");

    let upstream = Mosquitto::start(bin, port, &dir.0.join("mosq"), "");
    let (mut sub, present) = client::connect(persistent(upstream.addr, &sub_id), false).await;
    assert!(present, "the upstream kept the subscriber's session");
    let _relay = relay(relay_port, upstream.addr).await;
    let started = StdInstant::now();
    let got = collect(&mut sub, Duration::from_secs(30), Duration::from_secs(120), |g| {
        g.get("edge/q1") == Some(&N1) && g.get("edge/q2") == Some(&N2)
    })
    .await;
    let links: Vec<String> = edge
        .log_text()
        .lines()
        .filter(|l| l.contains("bridge connected") || (l.contains("bridge down") && !l.contains("refused")))
        .map(str::to_owned)
        .collect();
    let got = got.unwrap_or_else(|e| panic!("{e}; edge log:\n{}", links.join("\n")));
    eprintln!("all {} messages arrived upstream {:?} after it came back", N1 + N2, started.elapsed());
    eprintln!("edge links:\n{}", links.join("\n"));
    let dup1 = check_in_order("edge/q1", &got["edge/q1"], N1);
    let dup2 = check_in_order("edge/q2", &got["edge/q2"], N2);
    assert_eq!(dup2, 0, "QoS 2 messages arrived twice");
    eprintln!("QoS 1 duplicates: {dup1}");
    edge.wait_log("bridge connected");
    eprintln!("edge links:\n{}", links.join("\n"));
    drop(sub);
    drop(edge);
}

/// An in-process edge broker (no persistence) with one bridge.
fn edge_settings(bridge: BridgeSettings) -> Settings {
    Settings { bridges: vec![bridge], ..Settings::default() }
}

fn rules(lines: &[&str]) -> Vec<broker::bridge::TopicRule> {
    lines.iter().map(|l| parse_topic(l).unwrap()).collect()
}

async fn wait_bridge(edge: &Broker, what: &str, f: impl Fn(&broker::bridge::BridgeStats) -> bool) {
    let deadline = StdInstant::now() + Duration::from_secs(20);
    loop {
        let stats = edge.bridge_stats();
        if stats.first().is_some_and(&f) {
            return;
        }
        assert!(StdInstant::now() < deadline, "bridge never {what}: {stats:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_and_out_with_prefixes_and_no_loops_to_our_own_broker() {
    let upstream = start_broker(Settings::default()).await;
    let site = unique("site");
    let lines = [
        format!("cmd/# in 1 edge/ fleet/{site}/"),
        format!("tele/# out 1 edge/ fleet/{site}/"),
        format!("sync/# both 1 \"\" shared/{site}/"),
    ];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let mut bridge = BridgeSettings::new("up", &upstream.addr.to_string(), rules(&lines));
    bridge.client_id = unique("edge-bridge");
    bridge.protocol = Protocol::V5;
    let edge = start_broker(edge_settings(bridge)).await;
    wait_bridge(&edge.broker, "connected", |s| s.connected).await;

    let (mut up_sub, _) = client::connect(client::options(upstream.addr, &unique("up-sub")), false).await;
    up_sub.subscribe(&format!("fleet/{site}/tele/#"), QoS::AtLeastOnce).await;
    up_sub.subscribe(&format!("fleet/{site}/cmd/local"), QoS::AtLeastOnce).await;
    up_sub.subscribe(&format!("shared/{site}/#"), QoS::AtLeastOnce).await;
    let (mut local_sub, _) = client::connect(client::options(edge.addr, &unique("local-sub")), false).await;
    local_sub.subscribe("edge/#", QoS::AtLeastOnce).await;
    local_sub.subscribe("sync/#", QoS::AtLeastOnce).await;
    // The bridge's upstream SUBSCRIBE is in place once a message for it comes through.
    let (mut up_pub, _) = client::connect(client::options(upstream.addr, &unique("up-pub")), false).await;
    let cmd = format!("fleet/{site}/cmd/reboot");
    let probe = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            up_pub.publish(&cmd, QoS::AtLeastOnce, false, "0").await;
            if let Some(Ev::In(Packet::Publish(p))) = local_sub.next_within(Duration::from_millis(200)).await {
                assert_eq!(p.topic, "edge/cmd/reboot");
                break;
            }
        }
    });
    probe.await.expect("an upstream command reaches the edge");

    let (mut local_pub, _) = client::connect(client::options(edge.addr, &unique("local-pub")), false).await;
    for i in 1..=20 {
        local_pub.publish("edge/cmd/local", QoS::AtLeastOnce, false, i.to_string()).await;
        local_pub.publish("edge/tele/t", QoS::AtLeastOnce, false, i.to_string()).await;
        local_pub.publish("sync/a", QoS::AtLeastOnce, false, i.to_string()).await;
        up_pub.publish(&format!("shared/{site}/sync/b"), QoS::AtLeastOnce, false, i.to_string()).await;
    }
    let tele = format!("fleet/{site}/tele/t");
    let sync_a = format!("shared/{site}/sync/a");
    let sync_b = format!("shared/{site}/sync/b");
    let up = collect(&mut up_sub, Duration::from_secs(10), Duration::from_secs(30), |g| {
        [&tele, &sync_a, &sync_b].iter().all(|t| g.get(*t).is_some_and(|n| *n >= 20))
    })
    .await
    .unwrap();
    let local = collect(&mut local_sub, Duration::from_secs(10), Duration::from_secs(30), |g| {
        ["sync/a", "sync/b"].iter().all(|t| g.get(*t).is_some_and(|n| *n >= 20))
    })
    .await
    .unwrap();
    // Anything that looped would come a second time: give it the time a round trip takes.
    up_sub.expect_no_publish(Duration::from_millis(500)).await;
    local_sub.expect_no_publish(Duration::from_millis(500)).await;
    let want: Vec<usize> = (1..=20).collect();
    for t in [&tele, &sync_a, &sync_b] {
        assert_eq!(up[t], want, "upstream {t}");
    }
    for t in ["sync/a", "sync/b"] {
        assert_eq!(local[t], want, "local {t}");
    }
    assert!(!up.keys().any(|t| t.contains("cmd")), "an in-only rule sent upstream: {:?}", up.keys());
    let stats = &edge.broker.bridge_stats()[0];
    assert!(stats.forwarded_messages >= 40 && stats.received_messages >= 21, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_clients_cannot_take_a_bridge_session() {
    let mut bridge = BridgeSettings::new("locked", &format!("127.0.0.1:{}", free_port()), rules(&["x/# out 1"]));
    bridge.client_id = unique("edge-bridge");
    let edge = start_broker(edge_settings(bridge)).await;
    let mut opts = client::options(edge.addr, "$bridge/locked");
    opts.set_clean_session(false);
    let (_c, ev) = rumqttc::AsyncClient::new(opts, 10);
    let mut ev = ev;
    let refused = within_for(Duration::from_secs(5), "CONNACK", async {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(a))) => return a.code != rumqttc::ConnectReturnCode::Success,
                Ok(_) => {}
                Err(_) => return true,
            }
        }
    })
    .await;
    assert!(refused, "a network client took the bridge's session");
}

/// A relay from `port` (reserved with [`free_port`]) to `target`, started late: until then the upstream is down.
async fn relay(port: u16, target: SocketAddr) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("the reserved port is free");
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(Ok(mut outbound)) =
                    tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(target)).await
                {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_link_loses_nothing() {
    const N1: usize = 2_000;
    const N2: usize = 300;
    let upstream = start_broker(Settings::default()).await;
    let proxy = tests::proxy::Proxy::start(upstream.addr).await;
    let (mut sub, _) = client::connect(persistent(upstream.addr, &unique("up-sub")), false).await;
    let topic = unique("flap");
    sub.subscribe(&format!("{topic}/#"), QoS::ExactlyOnce).await;
    let mut bridge = BridgeSettings::new("flap", &proxy.addr.to_string(), rules(&[&format!("{topic}/# out 2")]));
    bridge.client_id = unique("edge-bridge");
    bridge.reconnect_min = Duration::from_millis(10);
    bridge.reconnect_max = Duration::from_millis(100);
    let edge = start_broker(edge_settings(bridge)).await;
    wait_bridge(&edge.broker, "connected", |s| s.connected).await;
    // Cuts at random moments (a fixed seed per run, printed) while the edge publishes and the bridge drains.
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64 | 1;
    eprintln!("cut seed {seed}");
    let proxy = std::sync::Arc::new(proxy);
    let cutting = tokio::spawn({
        let mut rng = seed;
        let proxy = proxy.clone();
        async move {
            loop {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                tokio::time::sleep(Duration::from_millis(20 + rng % 200)).await;
                proxy.cut_all();
            }
        }
    });
    let (mut p1, _) = client::connect(persistent(edge.addr, &unique("pub1")), false).await;
    let (mut p2, _) = client::connect(persistent(edge.addr, &unique("pub2")), false).await;
    let (t1, t2) = (format!("{topic}/q1"), format!("{topic}/q2"));
    // In four phases, the link cut at the end of each once the bridge has forwarded what was published: the next
    // phase needs a new connection whatever the random cuts did.
    const PHASES: usize = 4;
    for phase in 0..PHASES {
        let (r1, r2) = (phase * N1 / PHASES..(phase + 1) * N1 / PHASES, phase * N2 / PHASES..(phase + 1) * N2 / PHASES);
        tokio::join!(
            publish_range(&mut p1, &t1, QoS::AtLeastOnce, r1),
            publish_range(&mut p2, &t2, QoS::ExactlyOnce, r2)
        );
        wait_bridge(&edge.broker, "drained", |s| s.queued_messages == 0 && s.inflight_messages == 0).await;
        proxy.cut_all();
    }
    let got = collect(&mut sub, Duration::from_secs(20), Duration::from_secs(120), |g| {
        g.get(&t1) == Some(&N1) && g.get(&t2) == Some(&N2)
    })
    .await;
    cutting.abort();
    let stats = edge.broker.bridge_stats().remove(0);
    let got = got.unwrap_or_else(|e| panic!("{e}; bridge {stats:?}"));
    let dup1 = check_in_order(&t1, &got[&t1], N1);
    assert_eq!(check_in_order(&t2, &got[&t2], N2), 0, "QoS 2 messages arrived twice");
    eprintln!("{} connections, {dup1} QoS 1 duplicates", stats.connects);
    assert!(stats.connects >= PHASES as u64, "the link was cut: {stats:?}");
    // Each stored message counts once as forwarded, also one whose acknowledgement came on a later connection
    // (a resent PUBLISH with DUP, or a resent PUBREL the upstream answers with PUBCOMP 0x92).
    assert_eq!(stats.forwarded_messages, (N1 + N2) as u64, "{stats:?}");
}

async fn overflow_case(overflow: Overflow) -> (Vec<usize>, broker::bridge::BridgeStats) {
    const N: usize = 100;
    let upstream = start_broker(Settings::default()).await;
    let port = free_port();
    let topic = unique("over");
    let mut bridge = BridgeSettings::new("over", &format!("127.0.0.1:{port}"), rules(&[&format!("{topic} out 1")]));
    bridge.client_id = unique("edge-bridge");
    bridge.reconnect_min = Duration::from_millis(20);
    bridge.reconnect_max = Duration::from_millis(100);
    bridge.overflow = overflow;
    // Room for about 20 messages of this size.
    let cost = broker::message::Message::from_parts(&topic, b"000", rumqttc_qos(QoS::AtLeastOnce), false).cost();
    bridge.max_queue_bytes = 20 * cost;
    let edge = start_broker(edge_settings(bridge)).await;
    let (mut sub, _) = client::connect(client::options(upstream.addr, &unique("up-sub")), false).await;
    sub.subscribe(&topic, QoS::AtLeastOnce).await;
    let (mut publisher, _) = client::connect(client::options(edge.addr, &unique("pub")), false).await;
    for i in 0..N {
        publisher.publish(&topic, QoS::AtLeastOnce, false, format!("{i:03}")).await;
    }
    let stats = edge.broker.bridge_stats().remove(0);
    assert_eq!((stats.queued_messages, stats.dropped_messages as usize), (20, N - 20), "{stats:?}");
    assert!(stats.queued_bytes <= 20 * cost);
    let _relay = relay(port, upstream.addr).await;
    let got = collect(&mut sub, Duration::from_secs(10), Duration::from_secs(30), |g| g.get(&topic) == Some(&20))
        .await
        .unwrap();
    sub.expect_no_publish(Duration::from_millis(300)).await;
    (got[&topic].clone(), stats)
}

fn rumqttc_qos(q: QoS) -> mqtt_codec::QoS {
    match q {
        QoS::AtMostOnce => mqtt_codec::QoS::AtMostOnce,
        QoS::AtLeastOnce => mqtt_codec::QoS::AtLeastOnce,
        QoS::ExactlyOnce => mqtt_codec::QoS::ExactlyOnce,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflow_drop_oldest_keeps_the_newest_and_counts() {
    let (got, _) = overflow_case(Overflow::DropOldest).await;
    assert_eq!(got, (80..100).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflow_refuse_newest_keeps_the_oldest_and_counts() {
    let (got, _) = overflow_case(Overflow::RefuseNewest).await;
    assert_eq!(got, (0..20).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_upstream_with_a_client_certificate() {
    use broker::config::{ClientAuth, Transport};
    let pki = tls_support::Pki::new("bridge");
    let server = pki.server("upstream", 1);
    let gateway = pki.client("gateway", "gateway-17");
    let watcher = pki.client("watcher", "watcher");
    // The upstream requires a client certificate and takes its CN as the user name.
    let tls = tls_support::tls_settings(&pki, &server, ClientAuth::Required, true);
    let upstream = tls_support::start(Transport::Mqtt, Some(tls)).await;
    let config = tls_support::mqtt_client_config(pki.ca_der(), Some(&watcher));
    let options = tls_support::rumqttc_tls_options(&unique("up-sub"), "localhost", upstream.port(), config, false);
    let (mut sub, _) = client::connect(options, false).await;
    let topic = unique("secure");
    sub.subscribe(&format!("site/{topic}/#"), QoS::AtLeastOnce).await;

    let line = format!("{topic}/# out 1 \"\" site/");
    let mut bridge = BridgeSettings::new("secure", &format!("127.0.0.1:{}", upstream.port()), rules(&[&line]));
    bridge.client_id = unique("edge-bridge");
    bridge.tls = Some(broker::bridge::BridgeTls {
        ca_file: pki.ca_file.clone(),
        cert_file: Some(gateway.cert.clone()),
        key_file: Some(gateway.key.clone()),
        alpn: vec!["mqtt".into()],
        server_name: Some("localhost".into()),
    });
    let edge = start_broker(edge_settings(bridge)).await;
    wait_bridge(&edge.broker, "connected", |s| s.connected).await;
    assert!(upstream.broker.connected_identities().contains(&"gateway-17".to_owned()));
    let (mut publisher, _) = client::connect(client::options(edge.addr, &unique("pub")), false).await;
    for i in 0..10 {
        publisher.publish(&format!("{topic}/t"), QoS::AtLeastOnce, false, i.to_string()).await;
    }
    let remote = format!("site/{topic}/t");
    let got = collect(&mut sub, Duration::from_secs(10), Duration::from_secs(30), |g| g.get(&remote) == Some(&10))
        .await
        .unwrap();
    assert_eq!(got[&remote], (0..10).collect::<Vec<_>>());
}

/// The edge of [`refuse_newest_answers_0x97_to_an_mqtt5_publisher_and_delivers_what_it_took`] and
/// [`qos0_out_messages_wait_for_the_upstream_within_the_byte_bound`]: a bridge to `port`, where nothing listens yet,
/// with room for 20 messages of `topic` with 3-byte payloads.
async fn edge_with_room_for_20(port: u16, topic: &str, overflow: Overflow) -> (tests::TestBroker, usize) {
    let mut bridge = BridgeSettings::new("room", &format!("127.0.0.1:{port}"), rules(&[&format!("{topic} out 1")]));
    bridge.client_id = unique("edge-bridge");
    bridge.reconnect_min = Duration::from_millis(20);
    bridge.reconnect_max = Duration::from_millis(100);
    bridge.overflow = overflow;
    let cost = broker::message::Message::from_parts(topic, b"000", rumqttc_qos(QoS::AtLeastOnce), false).cost();
    bridge.max_queue_bytes = 20 * cost;
    (start_broker(edge_settings(bridge)).await, cost)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuse_newest_answers_0x97_to_an_mqtt5_publisher_and_delivers_what_it_took() {
    const N: usize = 30;
    let upstream = start_broker(Settings::default()).await;
    let port = free_port();
    let topic = unique("refuse5");
    let (edge, _) = edge_with_room_for_20(port, &topic, Overflow::RefuseNewest).await;
    let (mut sub, _) = client::connect(client::options(upstream.addr, &unique("up-sub")), false).await;
    sub.subscribe(&topic, QoS::AtLeastOnce).await;

    // The upstream is down: the first 20 fit in the queue, the other 10 are refused with PUBACK 0x97.
    let (mut publisher, _) =
        RawClient::connect(edge.addr, &ConnectOpts::new(&unique("pub5")).version(Version::V5)).await;
    let mut reasons = Vec::new();
    for i in 0..N {
        let id = publisher.next_pid();
        publisher.publish(&topic, format!("{i:03}").as_bytes(), mqtt_codec::QoS::AtLeastOnce, id, false, false).await;
        // PUBACK: 0x40, Remaining Length, packet id; the reason code follows unless it is 0x00 (length 2).
        let frame = publisher.recv_frame().await;
        assert_eq!(frame.get(..4), Some(&[0x40, frame[1], (id >> 8) as u8, id as u8][..]), "PUBACK {id}: {frame:x?}");
        reasons.push(frame.get(4).copied().unwrap_or(0));
    }
    let want: Vec<u8> = (0..N).map(|i| if i < 20 { 0x00 } else { 0x97 }).collect();
    assert_eq!(reasons, want);
    let stats = edge.broker.bridge_stats().remove(0);
    assert_eq!((stats.queued_messages, stats.dropped_messages), (20, (N - 20) as u64), "{stats:?}");

    // The upstream returns: exactly the 20 accepted messages arrive, in order, and are counted as forwarded.
    let _relay = relay(port, upstream.addr).await;
    let got = collect(&mut sub, Duration::from_secs(10), Duration::from_secs(30), |g| g.get(&topic) == Some(&20))
        .await
        .unwrap();
    sub.expect_no_publish(Duration::from_millis(300)).await;
    assert_eq!(got[&topic], (0..20).collect::<Vec<_>>());
    wait_bridge(&edge.broker, "forwarded the 20", |s| s.forwarded_messages == 20 && s.queued_messages == 0).await;
    assert_eq!(edge.broker.bridge_stats()[0].dropped_messages, (N - 20) as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos0_out_messages_wait_for_the_upstream_within_the_byte_bound() {
    const N: usize = 30;
    let upstream = start_broker(Settings::default()).await;
    let port = free_port();
    let topic = unique("qos0");
    // `sessions.queue_qos0_offline` is off (the default): the bridge queues QoS 0 all the same.
    let (edge, cost) = edge_with_room_for_20(port, &topic, Overflow::DropOldest).await;
    let (mut sub, _) = client::connect(client::options(upstream.addr, &unique("up-sub")), false).await;
    sub.subscribe(&topic, QoS::AtLeastOnce).await;
    let (mut publisher, _) = client::connect(client::options(edge.addr, &unique("pub0")), false).await;
    for i in 0..N {
        publisher.publish(&topic, QoS::AtMostOnce, false, format!("{i:03}")).await;
    }
    // QoS 0 has no acknowledgement: wait until the broker has taken all 30 (20 queued, the 10 oldest dropped).
    wait_bridge(&edge.broker, "queued the newest 20 QoS 0 messages", |s| {
        s.queued_messages == 20 && s.dropped_messages == (N - 20) as u64
    })
    .await;
    assert!(edge.broker.bridge_stats()[0].queued_bytes <= 20 * cost);
    let _relay = relay(port, upstream.addr).await;
    let got = collect(&mut sub, Duration::from_secs(10), Duration::from_secs(30), |g| g.get(&topic) == Some(&20))
        .await
        .unwrap();
    sub.expect_no_publish(Duration::from_millis(300)).await;
    assert_eq!(got[&topic], (N - 20..N).collect::<Vec<_>>());
    wait_bridge(&edge.broker, "forwarded the 20", |s| s.forwarded_messages == 20 && s.queued_messages == 0).await;
}

/// Polls the retained value of a `$SYS` topic with `mosquitto_sub` until it is `want` (30 s at most).
async fn wait_sys(port: u16, topic: &str, want: &str) {
    let deadline = StdInstant::now() + Duration::from_secs(30);
    let port = port.to_string();
    loop {
        let out =
            run("mosquitto_sub", &["-p", &port, "-t", topic, "-C", "1", "-W", "5"], Duration::from_secs(10)).await;
        let got = out.stdout.trim().to_owned();
        if got == want {
            return;
        }
        assert!(StdInstant::now() < deadline, "{topic} is {got:?}, not {want:?}, after 30 s ({})", out.stderr);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Scrapes `/metrics` until `ready` holds for the parsed samples (30 s at most).
async fn scrape_until(
    http: SocketAddr,
    what: &str,
    ready: impl Fn(&std::collections::BTreeMap<String, f64>) -> bool,
) -> std::collections::BTreeMap<String, f64> {
    let deadline = StdInstant::now() + Duration::from_secs(30);
    loop {
        let r = tests::http::get(http, "/metrics").await;
        assert_eq!(r.status, 200);
        let samples = tests::http::parse_metrics(&r.body);
        if ready(&samples) {
            return samples;
        }
        assert!(StdInstant::now() < deadline, "{what} within 30 s; last scrape:\n{}", r.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_state_and_queue_in_sys_and_metrics() {
    let tools = require("mosquitto_sub (apt: mosquitto-clients)", on_path("mosquitto_sub"))
        && require("python3 prometheus_client (scripts/obs-deps.sh)", tests::http::parser_available());
    if !tools {
        return;
    }
    let upstream = start_broker(Settings::default()).await;
    let port = free_port();
    let topic = unique("watched");
    let client_id = unique("gw");
    let dir = TempDir::new("bridge-obs");
    let config = dir.0.join("edge.toml");
    let bridge = bridge_config(port, "watch", &client_id, "5", &[&format!("{topic} out 1")], "");
    let text = format!("sys_interval = 1\n{bridge}");
    std::fs::write(&config, text).unwrap();
    let Some(edge) = BrokerProcess::start_with_config(&config) else { return };
    let http = edge.http_addr().expect("the embedded default configuration serves HTTP");
    let (mut publisher, _) = client::connect(client::options(edge.addr, &unique("pub")), false).await;
    for i in 0..3 {
        publisher.publish(&topic, QoS::AtLeastOnce, false, i.to_string()).await;
    }
    let metric = |name: &str| format!("{name}{{bridge=\"watch\"}}");
    let (connected, queued) = (metric("mqtt_bridge_connected"), metric("mqtt_bridge_queued_messages"));
    let (forwarded, dropped) =
        (metric("mqtt_bridge_forwarded_messages_total"), metric("mqtt_bridge_dropped_messages_total"));
    let s = scrape_until(http, "3 queued while the upstream is down", |s| s.get(&queued) == Some(&3.0)).await;
    assert_eq!((s[&connected], s[&forwarded], s[&dropped]), (0.0, 0.0, 0.0));
    assert!(s[&metric("mqtt_bridge_queued_bytes")] >= 3.0 * (topic.len() + 1) as f64);
    let sys = format!("$SYS/broker/connection/{client_id}");
    wait_sys(edge.port(), &format!("{sys}/state"), "0").await;
    wait_sys(edge.port(), &format!("{sys}/queued/messages"), "3").await;

    let (mut sub, _) = client::connect(client::options(upstream.addr, &unique("up-sub")), false).await;
    sub.subscribe(&topic, QoS::AtLeastOnce).await;
    let _relay = relay(port, upstream.addr).await;
    let got = collect(&mut sub, Duration::from_secs(10), Duration::from_secs(30), |g| g.get(&topic) == Some(&3))
        .await
        .unwrap();
    assert_eq!(got[&topic], vec![0, 1, 2]);
    let s = scrape_until(http, "connected and drained", |s| {
        s.get(&connected) == Some(&1.0) && s.get(&forwarded) == Some(&3.0)
    })
    .await;
    assert_eq!((s[&queued], s[&metric("mqtt_bridge_inflight_messages")]), (0.0, 0.0));
    wait_sys(edge.port(), &format!("{sys}/state"), "1").await;
    wait_sys(edge.port(), &format!("{sys}/queued/messages"), "0").await;
    wait_sys(edge.port(), &format!("{sys}/forwarded"), "3").await;
}

/// One end of a scripted upstream: reads the bridge's packets (PINGREQ skipped) and answers by hand.
struct Scripted {
    stream: tokio::net::TcpStream,
    rx: Vec<u8>,
}

impl Scripted {
    async fn accept(listener: &tokio::net::TcpListener, session_present: bool) -> Self {
        let (stream, _) = within_for(Duration::from_secs(20), "the bridge connects", listener.accept()).await.unwrap();
        let mut s = Self { stream, rx: Vec::new() };
        assert_eq!(s.next().await, "Connect");
        let connack = mqtt_codec::ConnAck {
            session_present,
            code: mqtt_codec::ReasonCode::Success,
            properties: mqtt_codec::Properties::empty(),
        };
        s.send(&mqtt_codec::Packet::ConnAck(connack)).await;
        s
    }

    /// The next packet's type, and its packet identifier if it has one.
    async fn next_with_id(&mut self) -> (String, Option<mqtt_codec::PacketId>) {
        use mqtt_codec::Packet as P;
        loop {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            let frame = match tests::raw::read_frame(&mut self.stream, &mut self.rx, Version::V5, deadline).await {
                tests::raw::Read::Frame(f) => f,
                other => panic!("the bridge sent nothing: {other:?}"),
            };
            let packet = mqtt_codec::decode(&frame, Version::V5).unwrap();
            let id = match &packet {
                P::Publish(p) => p.qos_pid.packet_id(),
                P::PubRel(a) => Some(a.packet_id),
                _ => None,
            };
            if !matches!(packet, P::PingReq) {
                return (format!("{:?}", packet.packet_type()), id);
            }
        }
    }

    async fn next(&mut self) -> String {
        self.next_with_id().await.0
    }

    async fn send(&mut self, packet: &mqtt_codec::Packet<'_>) {
        use tokio::io::AsyncWriteExt;
        let bytes = tests::raw::encode(packet, Version::V5);
        within_for(Duration::from_secs(10), "write to the bridge", self.stream.write_all(&bytes)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pubrel_resent_after_a_reconnection_and_answered_0x92_counts_as_forwarded() {
    use mqtt_codec::{Ack, Packet as P, ReasonCode};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let topic = unique("comp");
    let mut bridge =
        BridgeSettings::new("comp", &listener.local_addr().unwrap().to_string(), rules(&[&format!("{topic} out 2")]));
    bridge.client_id = unique("edge-bridge");
    bridge.reconnect_min = Duration::from_millis(20);
    bridge.reconnect_max = Duration::from_millis(100);
    let edge = start_broker(edge_settings(bridge)).await;
    let mut up = Scripted::accept(&listener, false).await;
    let (mut publisher, _) = client::connect(client::options(edge.addr, &unique("pub")), false).await;
    publisher.publish(&topic, QoS::ExactlyOnce, false, "1").await;

    // The upstream takes the message (PUBREC) and completes it on the bridge's PUBREL, but the link drops before
    // its PUBCOMP gets through.
    let (kind, id) = up.next_with_id().await;
    let id = id.unwrap_or_else(|| panic!("a QoS 2 PUBLISH, got {kind}"));
    up.send(&P::PubRec(Ack::new(id))).await;
    assert_eq!(up.next_with_id().await, ("PubRel".to_owned(), Some(id)));
    drop(up);

    // The bridge resends the PUBREL; the upstream no longer knows the identifier and says so (0x92).
    let mut up = Scripted::accept(&listener, true).await;
    assert_eq!(up.next_with_id().await, ("PubRel".to_owned(), Some(id)));
    up.send(&P::PubComp(Ack { reason: ReasonCode::PacketIdentifierNotFound, ..Ack::new(id) })).await;
    wait_bridge(&edge.broker, "finished and counted the message", |s| {
        s.inflight_messages == 0 && s.queued_messages == 0 && s.forwarded_messages == 1
    })
    .await;
}
