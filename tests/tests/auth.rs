//! Authentication and authorization against the built `broker` binary, each test with its own config, password
//! and ACL files in a temp dir: password files made by Debian's `mosquitto_passwd` and by `broker passwd`, the
//! CONNACK codes of MQTT 3.1.1 and 5, the ACL matrix (patterns, anonymous rules, read/write/deny, wildcard
//! subscribers, retained messages, wills), reload on SIGHUP, the failed-login backoff and the secure default for
//! listeners other hosts can reach.
//!
//! `mosquitto_passwd`, `mosquitto_pub` and `mosquitto_sub` come from `scripts/interop-deps.sh`; a missing one skips
//! locally and fails under `REQUIRE_INTEROP=1`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mqtt_codec::{Packet, ProtocolVersion, QoS, ReasonCode};
use tests::process::{BrokerProcess, Output, broker_bin, on_path, require, run};
use tests::raw::{ConnectOpts, RawClient, Rx};
use tests::unique;

const LIMIT: Duration = Duration::from_secs(20);

/// A fresh directory for one test's files.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(name));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A config with one listener on 127.0.0.1:0 and these extra listener keys.
fn config(dir: &Path, listener_keys: &str) -> PathBuf {
    write(dir, "broker.toml", &format!("[[listeners]]\nbind = \"127.0.0.1:0\"\n{listener_keys}\n"))
}

fn toml_path(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

fn broker_path() -> Option<String> {
    let bin = broker_bin();
    require("the broker binary (cargo build -p broker)", bin.is_some()).then(|| bin.unwrap().display().to_string())
}

/// `broker passwd ARGS`, which must succeed.
async fn broker_passwd(args: &[&str]) {
    let bin = broker_path().expect("broker binary");
    let mut all = vec!["passwd"];
    all.extend_from_slice(args);
    let out = run(&bin, &all, LIMIT).await;
    assert_eq!(out.code, Some(0), "broker passwd {args:?}: {}", out.stderr);
}

/// A password file made with `broker passwd -c -b` for these users.
async fn password_file(dir: &Path, users: &[(&str, &str)]) -> PathBuf {
    let path = dir.join("passwd");
    let file = path.display().to_string();
    for (i, (user, pw)) in users.iter().enumerate() {
        let mut args = vec!["-b", &file, user, pw];
        if i == 0 {
            args.insert(0, "-c");
        }
        broker_passwd(&args).await;
    }
    path
}

async fn connack(addr: std::net::SocketAddr, opts: &ConnectOpts) -> u8 {
    match RawClient::connect_with(addr, opts).await.1 {
        Rx::ConnAck { code, .. } => code,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

fn v5(id: &str) -> ConnectOpts {
    ConnectOpts::new(id).version(ProtocolVersion::V5)
}

/// The reason code of the next PUBACK (MQTT 5).
async fn puback_reason(c: &mut RawClient) -> ReasonCode {
    let frame = c.recv_frame().await;
    match mqtt_codec::decode(&frame, ProtocolVersion::V5).unwrap() {
        Packet::PubAck(a) => a.reason,
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

fn mosquitto_tools() -> bool {
    require(
        "mosquitto_passwd, mosquitto_pub, mosquitto_sub (apt: mosquitto, mosquitto-clients)",
        on_path("mosquitto_passwd") && on_path("mosquitto_pub") && on_path("mosquitto_sub"),
    )
}

async fn mosquitto(program: &str, port: u16, args: &[&str]) -> Output {
    let port = port.to_string();
    let mut all = vec!["-h", "127.0.0.1", "-p", &port];
    all.extend_from_slice(args);
    run(program, &all, LIMIT).await
}

#[tokio::test]
async fn a_mosquitto_passwd_file_works_unchanged_with_mosquitto_clients_on_3_1_1_and_5() {
    if !mosquitto_tools() || broker_path().is_none() {
        return;
    }
    let dir = temp_dir("auth-mosq");
    let pw = dir.join("passwd");
    let file = pw.display().to_string();
    // The default of mosquitto_passwd 2.x ($7$, PBKDF2-SHA512) and the 1.x one ($6$, salted SHA-512).
    let out = run("mosquitto_passwd", &["-c", "-b", &file, "alice", "alice-pw"], LIMIT).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let out = run("mosquitto_passwd", &["-H", "sha512", "-b", &file, "bob", "bob-pw"], LIMIT).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let text = std::fs::read_to_string(&pw).unwrap();
    assert!(text.contains("alice:$7$") && text.contains("bob:$6$"), "{text}");

    let broker =
        BrokerProcess::start_with_config(&config(&dir, &format!("password_file = {}", toml_path(&pw)))).unwrap();
    let port = broker.port();
    for version in ["mqttv311", "mqttv5"] {
        let topic = unique("auth/mosq");
        let ok = mosquitto(
            "mosquitto_pub",
            port,
            &["-V", version, "-u", "alice", "-P", "alice-pw", "-t", &topic, "-m", "hello", "-r", "-q", "1"],
        )
        .await;
        assert_eq!(ok.code, Some(0), "{version}: right password refused: {}", ok.stderr);
        // bob ($6$) reads it back.
        let sub = mosquitto(
            "mosquitto_sub",
            port,
            &["-V", version, "-u", "bob", "-P", "bob-pw", "-t", &topic, "-C", "1", "-W", "10"],
        )
        .await;
        assert_eq!((sub.code, sub.stdout.trim()), (Some(0), "hello"), "{version}: {}", sub.stderr);
        for (user, password) in [("alice", "bob-pw"), ("bob", "wrong"), ("carol", "alice-pw")] {
            let bad =
                mosquitto("mosquitto_pub", port, &["-V", version, "-u", user, "-P", password, "-t", &topic, "-m", "x"])
                    .await;
            assert_ne!(bad.code, Some(0), "{version}: {user} got in with a wrong password");
        }
        let anon = mosquitto("mosquitto_pub", port, &["-V", version, "-t", &topic, "-m", "x"]).await;
        assert_ne!(anon.code, Some(0), "{version}: an anonymous client got in");
    }
    let log = broker.log_text();
    for secret in ["alice-pw", "bob-pw", "$7$", "$6$"] {
        assert!(!log.contains(secret), "the log shows {secret:?}:\n{log}");
    }
    assert!(log.contains("login refused"), "{log}");
}

#[tokio::test]
async fn broker_passwd_writes_argon2id_and_connack_codes_follow_the_protocol_version() {
    if broker_path().is_none() {
        return;
    }
    let dir = temp_dir("auth-codes");
    let pw = password_file(&dir, &[("carol", "carol-pw"), ("dave", "dave-pw")]).await;
    broker_passwd(&["-D", &pw.display().to_string(), "dave"]).await;
    let text = std::fs::read_to_string(&pw).unwrap();
    assert!(text.starts_with("carol:$argon2id$v=19$m=19456,t=2,p=1$") && !text.contains("dave"), "{text}");
    // -U hashes a plaintext file in place.
    let plain = write(&dir, "plain", "# devices\nerin:erin-pw\n");
    broker_passwd(&["-U", &plain.display().to_string()]).await;
    let upgraded = broker::auth::PasswordFile::load(&plain).unwrap();
    assert!(upgraded.verify("erin", b"erin-pw") && !upgraded.verify("erin", b"x"));

    let broker =
        BrokerProcess::start_with_config(&config(&dir, &format!("password_file = {}", toml_path(&pw)))).unwrap();
    let addr = broker.addr;
    let id = unique("codes");
    // MQTT 3.1.1: 0x04 bad user name or password, 0x05 not authorized.
    assert_eq!(connack(addr, &ConnectOpts::new(&id).login("carol", Some("carol-pw"))).await, 0);
    assert_eq!(connack(addr, &ConnectOpts::new(&id).login("carol", Some("nope"))).await, 4);
    assert_eq!(connack(addr, &ConnectOpts::new(&id).login("dave", Some("dave-pw"))).await, 4, "deleted user");
    assert_eq!(connack(addr, &ConnectOpts::new(&id).login("carol", None)).await, 4);
    assert_eq!(connack(addr, &ConnectOpts::new(&id)).await, 5, "anonymous");
    // MQTT 5: 0x86 and 0x87.
    assert_eq!(connack(addr, &v5(&id).login("carol", Some("carol-pw"))).await, 0);
    assert_eq!(connack(addr, &v5(&id).login("carol", Some("nope"))).await, 0x86);
    assert_eq!(connack(addr, &v5(&id)).await, 0x87);
}

const ACL: &str = "\
# anonymous clients
topic read public/#
topic deny public/secret

user zed
topic write public/#

user alice
topic readwrite alice/#
topic deny alice/private/#
topic read sensors/+/temp
topic write commands/#

pattern readwrite devices/%c/#
pattern read inbox/%u/#
";

struct AclBroker {
    broker: BrokerProcess,
    dir: PathBuf,
    acl: PathBuf,
}

async fn acl_broker(name: &str) -> Option<AclBroker> {
    broker_path()?;
    let dir = temp_dir(name);
    let pw = password_file(&dir, &[("alice", "alice-pw"), ("zed", "zed-pw")]).await;
    let acl = write(&dir, "acl", ACL);
    let keys = format!("password_file = {}\nacl_file = {}\nallow_anonymous = true", toml_path(&pw), toml_path(&acl));
    let broker = BrokerProcess::start_with_config(&config(&dir, &keys))?;
    Some(AclBroker { broker, dir, acl })
}

fn alice(id: &str) -> ConnectOpts {
    ConnectOpts::new(id).login("alice", Some("alice-pw"))
}

#[tokio::test]
async fn acl_matrix_publish_subscribe_and_delivery() {
    let Some(b) = acl_broker("auth-acl").await else { return };
    let addr = b.broker.addr;
    // alice reads as client `alice-dev` and writes as `alice-w`; %c differs between the two.
    let (mut reader, _) = RawClient::connect(addr, &alice("alice-dev")).await;
    let (mut writer, _) = RawClient::connect(addr, &alice("alice-w")).await;
    let (mut anon, _) = RawClient::connect(addr, &ConnectOpts::new("anon-dev")).await;
    let (mut zed, _) = RawClient::connect(addr, &ConnectOpts::new("zed-dev").login("zed", Some("zed-pw"))).await;

    // SUBSCRIBE per filter (MQTT 3.1.1: 0x80 for a refused one).
    let codes =
        reader.subscribe(&[("alice/#", QoS::AtMostOnce), ("public/#", QoS::AtMostOnce), ("#", QoS::AtMostOnce)]).await;
    assert_eq!(codes, vec![0, 0x80, 0], "alice: her tree; the anonymous rules are not hers; # is partly readable");
    let codes = anon.subscribe(&[("public/#", QoS::AtMostOnce), ("alice/#", QoS::AtMostOnce)]).await;
    assert_eq!(codes, vec![0, 0x80], "anonymous rules");
    let codes = zed.subscribe(&[("inbox/zed/#", QoS::AtMostOnce), ("inbox/alice/#", QoS::AtMostOnce)]).await;
    assert_eq!(codes, vec![0, 0x80], "%u");

    // Writes. A refused publish is acknowledged and dropped (MQTT 3.1.1), as Mosquitto does.
    for (topic, payload) in [
        ("alice/private/x", "denied: deny rule"),
        ("public/news", "denied: not alice's"),
        ("devices/alice-dev/x", "denied: %c is alice-w"),
        ("sensors/s1/temp", "denied: read only"),
        ("alice/a", "ok-1"),
        ("commands/c1", "write-only"),
        ("devices/alice-w/t", "own device tree"),
    ] {
        let seen = writer.publish_acked(topic, payload.as_bytes(), QoS::AtLeastOnce, false).await;
        assert!(seen.is_empty());
    }
    anon.publish_acked("public/news", b"denied: anonymous cannot write", QoS::AtLeastOnce, false).await;
    anon.publish_acked("devices/anon-dev/up", b"anon's own tree", QoS::AtLeastOnce, false).await;
    // zed may write public/#; anonymous clients read it, public/secret excepted.
    zed.publish_acked("public/secret", b"zed-secret", QoS::AtLeastOnce, false).await;
    zed.publish_acked("public/news", b"zed-news", QoS::AtLeastOnce, false).await;
    // The reader's own device tree (%c = alice-dev): readable for it.
    reader.publish("devices/alice-dev/t", b"ok-2", QoS::AtMostOnce, 0, false, false).await;

    // The reader's `#` gets what alice may read as alice-dev, in order, nothing else.
    let got: Vec<(String, String)> = vec![reader.recv_publish().await, reader.recv_publish().await]
        .into_iter()
        .map(|p| (p.topic.clone(), p.text()))
        .collect();
    assert_eq!(
        got,
        [("alice/a", "ok-1"), ("devices/alice-dev/t", "ok-2")].map(|(t, p)| (t.to_owned(), p.to_owned())).to_vec()
    );
    let news = anon.recv_publish().await;
    assert_eq!((news.topic.as_str(), news.text().as_str()), ("public/news", "zed-news"));
    reader.expect_silence(Duration::from_millis(300)).await;
    anon.expect_silence(Duration::from_millis(100)).await;
    zed.expect_silence(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn acl_mqtt5_codes_retained_messages_and_wills() {
    let Some(b) = acl_broker("auth-acl5").await else { return };
    let addr = b.broker.addr;
    // A will the client may not publish refuses the CONNECT: 0x87 (MQTT 5), 0x05 (MQTT 3.1.1).
    let will = |o: ConnectOpts| o.will("public/will", b"w", QoS::AtMostOnce, false);
    assert_eq!(connack(addr, &will(alice("w1").version(ProtocolVersion::V5))).await, 0x87);
    assert_eq!(connack(addr, &will(alice("w2"))).await, 5);
    assert_eq!(connack(addr, &alice("w3").will("alice/will", b"w", QoS::AtMostOnce, false)).await, 0);

    // Retained messages: one readable, one denied, one write-only for alice.
    let (mut a, _) = RawClient::connect(addr, &alice("ret-pub").version(ProtocolVersion::V5)).await;
    for (topic, qos) in [("alice/r1", 1), ("alice/private/r2", 1), ("commands/r3", 1)] {
        let pid = a.next_pid();
        a.publish(topic, b"retained", if qos == 1 { QoS::AtLeastOnce } else { QoS::AtMostOnce }, pid, true, false)
            .await;
        let want =
            if topic == "alice/private/r2" { ReasonCode::NotAuthorized } else { ReasonCode::NoMatchingSubscribers };
        assert_eq!(puback_reason(&mut a).await, want, "{topic}");
    }
    // A `#` subscriber gets only the retained message it may read.
    let (mut sub, _) = RawClient::connect(addr, &alice("ret-sub").version(ProtocolVersion::V5)).await;
    let codes = sub.subscribe(&[("#", QoS::AtLeastOnce), ("alice/private/#", QoS::AtMostOnce)]).await;
    assert_eq!(codes, vec![1, 0x87]);
    let r = sub.recv_publish().await;
    assert_eq!((r.topic.as_str(), r.retain), ("alice/r1", true));
    if let Some(pid) = r.pid {
        sub.puback(pid).await;
    }
    sub.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn sighup_reloads_the_acl_and_rechecks_live_subscriptions() {
    let Some(b) = acl_broker("auth-reload").await else { return };
    let addr = b.broker.addr;
    let (mut sub, _) = RawClient::connect(addr, &alice("reload-sub")).await;
    assert_eq!(sub.subscribe(&[("alice/#", QoS::AtMostOnce)]).await, vec![0]);
    let (mut publ, _) = RawClient::connect(addr, &alice("reload-pub")).await;
    publ.publish_acked("alice/x", b"before", QoS::AtLeastOnce, false).await;
    assert_eq!(sub.recv_publish().await.text(), "before");

    // The new ACL lets alice still write her whole tree but read only alice/y: the live subscription alice/# must
    // be re-checked, since the publisher may still publish to alice/x.
    std::fs::write(&b.acl, ACL.replace("topic readwrite alice/#", "topic write alice/#\ntopic read alice/y")).unwrap();
    let out = run("kill", &["-HUP", &b.broker.pid().to_string()], LIMIT).await;
    assert_eq!(out.code, Some(0));
    b.broker.wait_log("acl_file reloaded");
    // alice/x is still accepted from the publisher but no longer delivered; alice/y still flows. The subscriber's
    // next message is alice/y: nothing on alice/x came before it.
    publ.publish_acked("alice/x", b"after", QoS::AtLeastOnce, false).await;
    publ.publish_acked("alice/y", b"still", QoS::AtLeastOnce, false).await;
    let next = sub.recv_publish().await;
    assert_eq!((next.topic.as_str(), next.text().as_str()), ("alice/y", "still"));
    sub.expect_silence(Duration::from_millis(200)).await;
    let _ = &b.dir;
}

/// A persistent session keeps its permissions across a kill -9: after the restart its partly readable `#`
/// subscription receives what its user may read while it is offline, and nothing else. Another user does not
/// resume it, also when the ACL file it was attached under is no longer configured.
#[tokio::test]
async fn a_recovered_session_keeps_its_permissions_after_kill_9() {
    if broker_path().is_none() {
        return;
    }
    let dir = temp_dir("auth-restart");
    let pw = password_file(&dir, &[("alice", "alice-pw"), ("zed", "zed-pw")]).await;
    let listener = |acl: &Path| {
        format!("password_file = {}\nacl_file = {}\nallow_anonymous = true", toml_path(&pw), toml_path(acl))
    };
    let cfg = config(&dir, &listener(&write(&dir, "acl", ACL)));
    let data = dir.join("data");
    let start = |cfg: &Path| BrokerProcess::start_in(&data, &["--config", &cfg.display().to_string()]);
    let id = unique("keeps-perms");
    let b = start(&cfg).expect("start");
    let (mut sub, present) = RawClient::connect(b.addr, &alice(&id).clean(false)).await;
    assert!(!present);
    assert_eq!(sub.subscribe(&[("#", QoS::AtLeastOnce)]).await, vec![1], "# is partly readable for alice");
    sub.disconnect().await;
    b.kill9();

    let b = start(&cfg).expect("restart");
    let (mut writer, _) = RawClient::connect(b.addr, &alice(&unique("keeps-perms-w"))).await;
    writer.publish_acked("alice/a", b"for alice", QoS::AtLeastOnce, false).await;
    let (mut zed, _) = RawClient::connect(b.addr, &ConnectOpts::new(&unique("zed")).login("zed", Some("zed-pw"))).await;
    zed.publish_acked("public/news", b"not for alice", QoS::AtLeastOnce, false).await;
    writer.publish_acked("alice/b", b"also for alice", QoS::AtLeastOnce, false).await;
    let (mut sub, present) = RawClient::connect(b.addr, &alice(&id).clean(false)).await;
    assert!(present);
    let got: Vec<String> = sub.recv_acking(2).await.iter().map(|p| format!("{} {}", p.topic, p.text())).collect();
    assert_eq!(got, ["alice/a for alice", "alice/b also for alice"]);
    sub.expect_silence(Duration::from_millis(300)).await;
    sub.disconnect().await;
    drop((writer, zed));
    b.kill9();

    // The same rules under another file name: not the ACL the session was attached under.
    let moved = config(&dir, &listener(&write(&dir, "acl-moved", ACL)));
    let b = start(&moved).expect("restart with another ACL file");
    let zed_as_alice = ConnectOpts::new(&id).clean(false).login("zed", Some("zed-pw"));
    let (mut zed, present) = RawClient::connect(b.addr, &zed_as_alice).await;
    assert!(!present, "another user does not resume alice's session");
    zed.expect_silence(Duration::from_millis(300)).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// One MQTT 5 login attempt from `source`; the CONNACK code and how long it took.
async fn attempt(source: IpAddr, addr: std::net::SocketAddr, id: &str, password: &str) -> (u8, Duration) {
    let started = Instant::now();
    let mut c = RawClient::tcp_from(source, addr).await;
    let opts = v5(id).login("carol", Some(password));
    c.version = opts.version;
    c.send_raw(&opts.encode()).await;
    // A slowed attempt may wait up to the broker's CONNECT timeout (10 s) for its turn.
    let code = match c.next_event(LIMIT).await {
        tests::raw::Event::Packet(Rx::ConnAck { code, .. }) => code,
        other => panic!("expected CONNACK, got {other:?}"),
    };
    (code, started.elapsed())
}

#[tokio::test]
async fn failed_logins_slow_their_source_address_down_and_other_addresses_are_not_affected() {
    if broker_path().is_none() {
        return;
    }
    let dir = temp_dir("auth-backoff");
    let pw = password_file(&dir, &[("carol", "carol-pw")]).await;
    let broker =
        BrokerProcess::start_with_config(&config(&dir, &format!("password_file = {}", toml_path(&pw)))).unwrap();
    let addr = broker.addr;
    let attacker: IpAddr = "127.0.0.1".parse().unwrap();
    let other: IpAddr = "127.0.0.2".parse().unwrap();

    // One after the other: the first failures are answered at once, then each attempt waits for the one before it
    // plus a delay that doubles (broker::auth::backoff: 3 free, then 250 ms, 500 ms, 1 s, ...).
    let mut took = Vec::new();
    for i in 0..7 {
        let (code, t) = attempt(attacker, addr, &format!("bf-seq-{i}"), "wrong").await;
        assert_eq!(code, 0x86, "attempt {i}");
        took.push(t);
    }
    eprintln!("sequential wrong passwords, time to CONNACK: {took:?}");
    for (i, min_ms) in [(4, 250), (5, 500), (6, 1000)] {
        assert!(took[i] >= Duration::from_millis(min_ms), "attempt {i} took {:?}, less than {min_ms} ms", took[i]);
    }

    // 1,000 wrong passwords at once from the same address: a few are checked, the rest are refused with 0x9F
    // (connection rate exceeded) without a password check.
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(200));
    for i in 0..1000 {
        let gate = gate.clone();
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            attempt(attacker, addr, &format!("bf-par-{i}"), "wrong").await.0
        });
    }
    // Meanwhile a client from another address logs in with the right password.
    let (code, other_took) = attempt(other, addr, "bf-other", "carol-pw").await;
    assert_eq!(code, 0, "another address is not held back");
    let mut codes = std::collections::BTreeMap::new();
    while let Some(code) = tasks.join_next().await {
        *codes.entry(code.unwrap()).or_insert(0) += 1;
    }
    let elapsed = started.elapsed();
    eprintln!("1000 parallel wrong passwords: {codes:?} in {elapsed:?}; the other address logged in in {other_took:?}");
    let checked = codes.get(&0x86).copied().unwrap_or(0);
    let refused = codes.get(&0x9F).copied().unwrap_or(0);
    assert_eq!(checked + refused, 1000, "{codes:?}");
    assert!(checked <= 10, "only a few attempts reach the password check: {codes:?}");
    // The right password from the attacking address still works once its turn comes (and clears the address).
    let (code, _) = attempt(attacker, addr, "bf-late", "carol-pw").await;
    assert!(code == 0 || code == 0x9F, "{code:#x}");
    let log = broker.log_text();
    assert!(log.contains("too many failed logins") && !log.contains("carol-pw"), "{log}");
}

#[tokio::test]
async fn a_listener_other_hosts_can_reach_needs_authentication_or_allow_anonymous() {
    let Some(bin) = broker_path() else { return };
    let dir = temp_dir("auth-secure-default");
    let cfg = write(&dir, "open.toml", "[[listeners]]\nbind = \"0.0.0.0:0\"\n");
    let out = run(&bin, &["--config", &cfg.display().to_string()], LIMIT).await;
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("listeners[0]") && out.stderr.contains("allow_anonymous = true"),
        "the error says what to do: {}",
        out.stderr
    );
    // Said explicitly, it starts (and anonymous clients get in).
    let cfg = write(&dir, "anon.toml", "[[listeners]]\nbind = \"0.0.0.0:0\"\nallow_anonymous = true\n");
    let broker = BrokerProcess::start_with_config(&cfg).unwrap();
    let addr = std::net::SocketAddr::new("127.0.0.1".parse().unwrap(), broker.port());
    assert_eq!(connack(addr, &ConnectOpts::new(&unique("anon"))).await, 0);
    // The same on a loopback listener needs nothing.
    let cfg = write(&dir, "local.toml", "[[listeners]]\nbind = \"127.0.0.1:0\"\n");
    let broker = BrokerProcess::start_with_config(&cfg).unwrap();
    assert_eq!(connack(broker.addr, &ConnectOpts::new(&unique("anon"))).await, 0);
}

#[tokio::test]
async fn changed_password_and_acl_files_apply_without_a_signal_and_a_bad_file_keeps_the_old_one() {
    let Some(b) = acl_broker("auth-watch").await else { return };
    let addr = b.broker.addr;
    let pw = b.dir.join("passwd").display().to_string();
    assert_eq!(connack(addr, &ConnectOpts::new("watch-1").login("yan", Some("yan-pw"))).await, 4);
    broker_passwd(&["-b", &pw, "yan", "yan-pw"]).await;
    b.broker.wait_log("password_file reloaded");
    assert_eq!(connack(addr, &ConnectOpts::new("watch-2").login("yan", Some("yan-pw"))).await, 0);

    // A broken ACL file is refused and the old rules stay.
    let (mut sub, _) = RawClient::connect(addr, &alice("watch-sub")).await;
    assert_eq!(sub.subscribe(&[("alice/#", QoS::AtMostOnce)]).await, vec![0]);
    std::fs::write(&b.acl, format!("{ACL}\ntopic sometimes alice/#\n")).unwrap();
    b.broker.wait_log("acl_file not reloaded");
    let (mut publ, _) = RawClient::connect(addr, &alice("watch-pub")).await;
    publ.publish_acked("alice/x", b"old rules", QoS::AtLeastOnce, false).await;
    assert_eq!(sub.recv_publish().await.text(), "old rules");
    // A good one applies to the live subscription.
    std::fs::write(&b.acl, ACL.replace("topic readwrite alice/#", "topic write alice/#\ntopic read alice/y")).unwrap();
    b.broker.wait_log("acl_file reloaded");
    publ.publish_acked("alice/x", b"filtered", QoS::AtLeastOnce, false).await;
    publ.publish_acked("alice/y", b"new rules", QoS::AtLeastOnce, false).await;
    assert_eq!(sub.recv_publish().await.text(), "new rules");
    let log = b.broker.log_text();
    assert!(!log.contains("yan-pw") && !log.contains("$argon2id$"), "{log}");
}

mod tls_support;

/// An in-process broker with one TLS listener using certificate identities as usernames, and this ACL.
async fn mtls_broker(
    pki: &tls_support::Pki,
    client_auth: broker::config::ClientAuth,
    acl: &Path,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let server = pki.server("server", 1);
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let settings = broker::config::ListenerSettings {
        tls: Some(tls_support::tls_settings(pki, &server, client_auth, true)),
        auth: broker::config::AuthSettings { acl_file: Some(acl.to_owned()), ..Default::default() },
        ..broker::config::ListenerSettings::plain(addr)
    };
    let listener = broker::Listener::from_tcp(tcp, &settings).unwrap();
    let b = broker::Broker::new(broker::Settings::default()).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        b.serve_listeners(vec![listener], async move {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    (addr, stop, task)
}

#[tokio::test]
async fn a_certificate_identity_is_the_username_and_cannot_claim_another_client_id() {
    use tls_support::{mqtt_client_config, mqtt_connect, rumqttc_tls_options, tls_connect};
    let dir = temp_dir("auth-mtls");
    let acl = write(&dir, "acl", "pattern readwrite devices/%c/#\nuser sensor-7\ntopic read fleet/#\n");
    let pki = tls_support::Pki::new("auth-mtls");
    let s7 = pki.client("s7", "sensor-7");
    let s8 = pki.client("s8", "sensor-8");
    let (addr, stop, task) = mtls_broker(&pki, broker::config::ClientAuth::Optional, &acl).await;

    // sensor-7 as client id sensor-7: its device tree (%c) and its user section.
    let opts =
        rumqttc_tls_options("sensor-7", "127.0.0.1", addr.port(), mqtt_client_config(pki.ca_der(), Some(&s7)), false);
    let (mut c, _) = tests::client::connect(opts, false).await;
    assert_eq!(c.subscribe("devices/sensor-7/#", rumqttc::QoS::AtLeastOnce).await, Some(rumqttc::QoS::AtLeastOnce));
    assert_eq!(c.subscribe("fleet/#", rumqttc::QoS::AtMostOnce).await, Some(rumqttc::QoS::AtMostOnce));
    assert_eq!(c.subscribe("devices/sensor-8/#", rumqttc::QoS::AtMostOnce).await, None, "another device's tree");
    c.publish("devices/sensor-8/cmd", rumqttc::QoS::AtLeastOnce, false, "denied").await;
    c.publish("devices/sensor-7/up", rumqttc::QoS::AtLeastOnce, false, "mine").await;
    assert_eq!(&c.next_publish().await.payload[..], b"mine");

    // sensor-7's certificate asking for client id sensor-8: refused with 0x02 (identifier rejected), so it can
    // neither reach devices/sensor-8 nor take over sensor-8's session.
    let mut s = tls_connect(addr, mqtt_client_config(pki.ca_der(), Some(&s7))).await.unwrap();
    assert_eq!(mqtt_connect(&mut s, "sensor-8").await.unwrap(), [0x20, 2, 0, 2]);
    // sensor-8's own certificate may.
    let mut s = tls_connect(addr, mqtt_client_config(pki.ca_der(), Some(&s8))).await.unwrap();
    assert_eq!(mqtt_connect(&mut s, "sensor-8").await.unwrap(), [0x20, 2, 0, 0]);
    // No certificate: no username, refused with 0x05.
    let mut s = tls_connect(addr, mqtt_client_config(pki.ca_der(), None)).await.unwrap();
    assert_eq!(mqtt_connect(&mut s, "nobody").await.unwrap(), [0x20, 2, 0, 5]);
    c.expect_no_publish(Duration::from_millis(200)).await;
    c.disconnect().await;
    let _ = stop.send(());
    tests::within("broker shutdown", task).await.unwrap();
}

fn token(key: &jsonwebtoken::EncodingKey, alg: jsonwebtoken::Algorithm, claims: &serde_json_value::Claims) -> String {
    jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), claims, key).unwrap()
}

/// The claims tests put in tokens.
mod serde_json_value {
    #[derive(serde::Serialize)]
    pub struct Claims {
        pub sub: String,
        pub aud: String,
        pub exp: u64,
        pub nbf: u64,
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test]
async fn jwt_passwords_valid_expired_not_yet_valid_wrong_key_and_wrong_audience() {
    use jsonwebtoken::{Algorithm, EncodingKey};
    if broker_path().is_none() || !require("openssl (RSA keys for RS256)", on_path("openssl")) {
        return;
    }
    let dir = temp_dir("auth-jwt");
    // ES256 keys made here, an RS256 key by openssl.
    let ec = rcgen::KeyPair::generate().unwrap();
    let ec_pub = write(&dir, "ec.pub.pem", &ec.public_key_pem());
    let ec_key = EncodingKey::from_ec_pem(ec.serialize_pem().as_bytes()).unwrap();
    let stranger = rcgen::KeyPair::generate().unwrap();
    let stranger_key = EncodingKey::from_ec_pem(stranger.serialize_pem().as_bytes()).unwrap();
    let rsa = dir.join("rsa.key");
    let rsa_pub = dir.join("rsa.pub.pem");
    let (rsa_s, rsa_pub_s) = (rsa.display().to_string(), rsa_pub.display().to_string());
    let out =
        run("openssl", &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", &rsa_s], LIMIT)
            .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let out = run("openssl", &["pkey", "-in", &rsa_s, "-pubout", "-out", &rsa_pub_s], LIMIT).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let rsa_key = EncodingKey::from_rsa_pem(&std::fs::read(&rsa).unwrap()).unwrap();

    let acl = write(&dir, "acl", "pattern readwrite devices/%u/#\n");
    let keys = format!(
        "acl_file = {}\n[listeners.jwt]\npublic_key_files = [{}, {}]\naudience = \"edge-gateway\"\nleeway_secs = 5",
        toml_path(&acl),
        toml_path(&ec_pub),
        toml_path(&rsa_pub)
    );
    let broker = BrokerProcess::start_with_config(&config(&dir, &keys)).unwrap();
    let addr = broker.addr;
    let now = unix_now();
    let claims = |sub: &str, aud: &str, exp: u64, nbf: u64| serde_json_value::Claims {
        sub: sub.to_owned(),
        aud: aud.to_owned(),
        exp,
        nbf,
    };
    let valid = token(&ec_key, Algorithm::ES256, &claims("dev-1", "edge-gateway", now + 600, now - 10));
    let login = |user: &str, tok: &str| ConnectOpts::new(&unique("jwt")).login(user, Some(tok));

    // Valid, with the username the token names: the claim is the username the ACL sees.
    let (mut c, ack) = RawClient::connect_with(addr, &login("dev-1", &valid)).await;
    assert_eq!(ack, Rx::ConnAck { session_present: false, code: 0 });
    assert_eq!(
        c.subscribe(&[("devices/dev-1/#", QoS::AtMostOnce), ("devices/dev-2/#", QoS::AtMostOnce)]).await,
        vec![0, 0x80]
    );
    let rs = token(&rsa_key, Algorithm::RS256, &claims("dev-9", "edge-gateway", now + 600, now - 10));
    assert_eq!(connack(addr, &login("dev-9", &rs)).await, 0, "RS256");
    for (what, tok, user) in [
        ("expired", token(&ec_key, Algorithm::ES256, &claims("dev-1", "edge-gateway", now - 600, now - 900)), "dev-1"),
        (
            "not yet valid",
            token(&ec_key, Algorithm::ES256, &claims("dev-1", "edge-gateway", now + 900, now + 600)),
            "dev-1",
        ),
        (
            "wrong key",
            token(&stranger_key, Algorithm::ES256, &claims("dev-1", "edge-gateway", now + 600, now)),
            "dev-1",
        ),
        ("wrong audience", token(&ec_key, Algorithm::ES256, &claims("dev-1", "cloud-api", now + 600, now)), "dev-1"),
        ("another username", valid.clone(), "dev-2"),
    ] {
        assert_eq!(connack(addr, &login(user, &tok)).await, 4, "{what}");
    }
    let expired = token(&ec_key, Algorithm::ES256, &claims("dev-1", "edge-gateway", now - 600, now - 900));
    assert_eq!(connack(addr, &v5(&unique("jwt5")).login("dev-1", Some(&expired))).await, 0x86, "MQTT 5");
    let log = broker.log_text();
    assert!(log.contains("token refused") && !log.contains(&valid) && !log.contains(&expired), "{log}");
}

#[tokio::test]
async fn another_user_does_not_resume_a_persistent_session_it_could_not_read() {
    let Some(b) = acl_broker("auth-takeover").await else { return };
    let addr = b.broker.addr;
    // alice keeps a session with a subscription and a queued message, then goes away.
    let (mut a, _) = RawClient::connect(addr, &alice("shared-id").clean(false)).await;
    assert_eq!(a.subscribe(&[("alice/#", QoS::AtLeastOnce)]).await, vec![1]);
    a.disconnect().await;
    let (mut publ, _) = RawClient::connect(addr, &alice("takeover-pub")).await;
    publ.publish_acked("alice/q", b"for alice", QoS::AtLeastOnce, false).await;
    // zed connects with the same client id: a fresh session, none of alice's messages.
    let zed = ConnectOpts::new("shared-id").clean(false).login("zed", Some("zed-pw"));
    let (mut z, present) = RawClient::connect(addr, &zed).await;
    assert!(!present, "zed resumed alice's session");
    z.expect_silence(Duration::from_millis(300)).await;
}

/// An embedding application's backend: it awaits before answering, as one asking a remote service would.
struct Fleet;

impl broker::auth::AuthBackend for Fleet {
    fn authenticate<'a>(
        &'a self,
        c: broker::auth::Credentials<'a>,
    ) -> broker::auth::BoxFuture<'a, broker::auth::Verdict> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            match (c.username, c.password) {
                (Some(u), Some(b"fleet-secret")) if u.starts_with("device-") => {
                    broker::auth::Verdict::Allow { username: Some(u.to_owned()) }
                }
                (Some(_), _) => broker::auth::Verdict::BadCredentials,
                (None, _) => broker::auth::Verdict::NotAuthorized,
            }
        })
    }

    fn permissions(
        &self,
        username: Option<&str>,
        _client_id: &str,
    ) -> Option<std::sync::Arc<dyn broker::auth::Permissions>> {
        Some(std::sync::Arc::new(OwnTree(format!("fleet/{}/", username.unwrap_or_default()))))
    }
}

struct OwnTree(String);

impl broker::auth::Permissions for OwnTree {
    fn allows(&self, _access: broker::auth::Access, topic: &str) -> bool {
        topic.starts_with(&self.0)
    }
}

#[tokio::test]
async fn an_embedding_application_plugs_its_own_async_backend() {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let b = broker::Broker::new(broker::Settings::default()).unwrap().with_auth_backend(std::sync::Arc::new(Fleet));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = b.clone();
    let task = tokio::spawn(async move {
        serving
            .serve(vec![tcp], async move {
                let _ = stopped.await;
            })
            .await
    });
    let device = |id: &str, user: &str, pw: &str| ConnectOpts::new(id).login(user, Some(pw));
    assert_eq!(connack(addr, &device("x1", "device-1", "wrong")).await, 4);
    assert_eq!(connack(addr, &device("x2", "laptop", "fleet-secret")).await, 4);
    assert_eq!(connack(addr, &ConnectOpts::new("x3")).await, 5);
    assert_eq!(b.failed_logins(), 3);
    let (mut d1, _) = RawClient::connect(addr, &device("d1", "device-1", "fleet-secret")).await;
    let (mut d2, _) = RawClient::connect(addr, &device("d2", "device-2", "fleet-secret")).await;
    // No filter_access: subscriptions are checked per message.
    assert_eq!(d1.subscribe(&[("#", QoS::AtMostOnce)]).await, vec![0]);
    d2.publish_acked("fleet/device-2/t", b"not for d1", QoS::AtLeastOnce, false).await;
    d1.publish_acked("fleet/device-2/t", b"refused", QoS::AtLeastOnce, false).await;
    d2.publish_acked("fleet/device-1/cmd", b"refused too", QoS::AtLeastOnce, false).await;
    d1.publish("fleet/device-1/t", b"mine", QoS::AtMostOnce, 0, false, false).await;
    let got = d1.recv_publish().await;
    assert_eq!((got.topic.as_str(), got.text().as_str()), ("fleet/device-1/t", "mine"));
    d1.expect_silence(Duration::from_millis(200)).await;
    let _ = stop.send(());
    tests::within("broker shutdown", task).await.unwrap().unwrap();
}
