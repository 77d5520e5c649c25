//! Crash-safe persistence, through the real `broker` binary: what a client was told is kept survives `kill -9` and
//! SIGTERM (sessions, subscriptions, queued and in-flight messages, inbound QoS 2 identifiers, retained messages);
//! what expired while the broker was down is gone; a journal cut or damaged at its end still starts, with every
//! record before the damage.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mqtt_codec::{Packet, Properties, Property, ProtocolVersion, Publish, QoS, QosPid, TopicName};
use tests::process::BrokerProcess;
use tests::raw::{ConnectOpts, RawClient, Rx, encode};
use tests::unique;

const QUIET: Duration = Duration::from_millis(300);

/// A persistence directory of the test's own, removed at the end.
struct DataDir(PathBuf);

impl DataDir {
    fn new() -> Self {
        Self(std::env::temp_dir().join(unique("persist-test")))
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start(dir: &Path) -> Option<BrokerProcess> {
    BrokerProcess::start_in(dir, &[])
}

fn texts(got: &[tests::raw::RxPublish]) -> Vec<String> {
    got.iter().map(|p| p.text()).collect()
}

/// A persistent subscriber to `filter` at QoS 2 that goes offline.
async fn offline_subscriber(b: &BrokerProcess, id: &str, filter: &str) {
    let (mut sub, present) = RawClient::connect(b.addr, &ConnectOpts::new(id).clean(false)).await;
    assert!(!present);
    sub.subscribe_one(filter, QoS::ExactlyOnce).await;
    sub.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_messages_subscriptions_and_retained_messages_survive_kill_9() {
    let dir = DataDir::new();
    let Some(b) = start(&dir.0) else { return };
    let id = unique("durable-sub");
    let topic = unique("durable/t");
    let status = unique("durable/status");
    offline_subscriber(&b, &id, &topic).await;
    let mut publisher = RawClient::connect_v311(b.addr, &unique("pub")).await;
    let mut want = Vec::new();
    for i in 0..10 {
        let qos = if i % 2 == 0 { QoS::AtLeastOnce } else { QoS::ExactlyOnce };
        let text = format!("m{i}");
        publisher.publish_acked(&topic, text.as_bytes(), qos, false).await;
        want.push(text);
    }
    publisher.publish_acked(&status, b"online", QoS::AtLeastOnce, true).await;
    b.kill9();

    let b = start(&dir.0).expect("the broker starts again on its data");
    let (mut sub, present) = RawClient::connect(b.addr, &ConnectOpts::new(&id).clean(false)).await;
    assert!(present, "session present after kill -9");
    assert_eq!(texts(&sub.recv_acking(10).await), want, "every acknowledged message, in order");
    sub.expect_silence(QUIET).await;
    // The subscription works without subscribing again.
    let mut publisher = RawClient::connect_v311(b.addr, &unique("pub")).await;
    publisher.publish_acked(&topic, b"live", QoS::AtLeastOnce, false).await;
    assert_eq!(sub.recv_acking(1).await[0].text(), "live");
    // The retained message too.
    let mut late = RawClient::connect_v311(b.addr, &unique("late")).await;
    late.subscribe_one(&status, QoS::AtMostOnce).await;
    let p = late.recv_publish().await;
    assert_eq!((p.text().as_str(), p.retain), ("online", true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_deliveries_are_resent_with_the_same_ids_after_kill_9() {
    let dir = DataDir::new();
    let Some(b) = start(&dir.0) else { return };
    let id = unique("inflight-sub");
    let topic = unique("inflight");
    let opts = ConnectOpts::new(&id).clean(false);
    let (mut sub, _) = RawClient::connect(b.addr, &opts).await;
    sub.subscribe(&[(&format!("{topic}/1"), QoS::AtLeastOnce), (&format!("{topic}/+"), QoS::ExactlyOnce)]).await;
    let mut publisher = RawClient::connect_v311(b.addr, &unique("pub")).await;
    publisher.publish_acked(&format!("{topic}/1"), b"a", QoS::AtLeastOnce, false).await;
    publisher.publish_acked(&format!("{topic}/2"), b"b", QoS::ExactlyOnce, false).await;
    publisher.publish_acked(&format!("{topic}/3"), b"c", QoS::ExactlyOnce, false).await;
    // a: not acknowledged. b: PUBREC sent and PUBREL received, no PUBCOMP. c: not acknowledged.
    let a = sub.recv_publish().await;
    let b_msg = sub.recv_publish().await;
    sub.pubrec(b_msg.pid.unwrap()).await;
    let c = sub.recv_publish().await;
    assert_eq!(sub.recv().await, Rx::PubRel(b_msg.pid.unwrap()));
    assert_eq!(texts(&[a.clone(), b_msg.clone(), c.clone()]), ["a", "b", "c"]);
    b.kill9();

    let b = start(&dir.0).expect("restart");
    let (mut sub, present) = RawClient::connect(b.addr, &opts).await;
    assert!(present);
    let again = sub.recv_publish().await;
    assert_eq!((again.text().as_str(), again.dup, again.pid), ("a", true, a.pid));
    assert_eq!(sub.recv().await, Rx::PubRel(b_msg.pid.unwrap()), "PUBREL resent for b");
    let again = sub.recv_publish().await;
    assert_eq!((again.text().as_str(), again.dup, again.pid), ("c", true, c.pid));
    sub.puback(a.pid.unwrap()).await;
    sub.pubcomp(b_msg.pid.unwrap()).await;
    sub.pubrec(c.pid.unwrap()).await;
    assert_eq!(sub.recv().await, Rx::PubRel(c.pid.unwrap()));
    sub.pubcomp(c.pid.unwrap()).await;
    sub.expect_silence(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qos2_publish_resent_after_kill_9_is_delivered_once() {
    let dir = DataDir::new();
    let Some(b) = start(&dir.0) else { return };
    let sub_id = unique("once-sub");
    let topic = unique("once");
    offline_subscriber(&b, &sub_id, &topic).await;
    let pub_opts = ConnectOpts::new(&unique("once-pub")).clean(false);
    let (mut publisher, _) = RawClient::connect(b.addr, &pub_opts).await;
    publisher.publish(&topic, b"exactly once", QoS::ExactlyOnce, 7, false, false).await;
    assert_eq!(publisher.recv().await, Rx::PubRec(7));
    b.kill9();

    let b = start(&dir.0).expect("restart");
    let (mut publisher, present) = RawClient::connect(b.addr, &pub_opts).await;
    assert!(present, "the publisher's session, with its QoS 2 identifier, survived");
    // The publisher does not know whether its PUBREC was the broker's last word: it resends.
    publisher.publish(&topic, b"exactly once", QoS::ExactlyOnce, 7, false, true).await;
    assert_eq!(publisher.recv().await, Rx::PubRec(7));
    publisher.pubrel(7).await;
    assert_eq!(publisher.recv().await, Rx::PubComp(7));
    let (mut sub, _) = RawClient::connect(b.addr, &ConnectOpts::new(&sub_id).clean(false)).await;
    assert_eq!(texts(&sub.recv_acking(1).await), ["exactly once"]);
    sub.expect_silence(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_keeps_everything() {
    let dir = DataDir::new();
    let Some(b) = start(&dir.0) else { return };
    let id = unique("term-sub");
    let topic = unique("term");
    offline_subscriber(&b, &id, &topic).await;
    let mut publisher = RawClient::connect_v311(b.addr, &unique("pub")).await;
    for i in 0..5 {
        publisher.publish_acked(&topic, format!("t{i}").as_bytes(), QoS::AtLeastOnce, false).await;
    }
    drop(publisher);
    assert_eq!(b.terminate(), Some(0));
    let b = start(&dir.0).expect("restart");
    assert!(b.log_text().contains("recovered"), "{}", b.log_text());
    let (mut sub, present) = RawClient::connect(b.addr, &ConnectOpts::new(&id).clean(false)).await;
    assert!(present);
    assert_eq!(texts(&sub.recv_acking(5).await), ["t0", "t1", "t2", "t3", "t4"]);
}

/// A v5 CONNECT with a Session Expiry Interval.
fn connect_v5(id: &str, expiry: u32) -> Vec<u8> {
    let props = [Property::SessionExpiryInterval(expiry)];
    let c = Packet::Connect(mqtt_codec::Connect {
        protocol: ProtocolVersion::V5,
        clean_start: false,
        keep_alive: 60,
        properties: Properties::from_list(&props),
        client_id: id,
        will: None,
        username: None,
        password: None,
    });
    encode(&c, ProtocolVersion::V5)
}

/// A v5 CONNECT with Session Expiry Interval 3600 and a QoS 1 will of `payload` on `will_topic`, delayed
/// `will_delay` seconds when given.
fn connect_v5_with_will(
    id: &str,
    clean_start: bool,
    will_topic: &str,
    payload: &[u8],
    will_delay: Option<u32>,
) -> Vec<u8> {
    let props = [Property::SessionExpiryInterval(3600)];
    let will_props: Vec<Property<'_>> = will_delay.map(Property::WillDelayInterval).into_iter().collect();
    let c = Packet::Connect(mqtt_codec::Connect {
        protocol: ProtocolVersion::V5,
        clean_start,
        keep_alive: 60,
        properties: Properties::from_list(&props),
        client_id: id,
        will: Some(mqtt_codec::Will {
            topic: TopicName::new(will_topic).unwrap(),
            payload,
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Properties::from_list(&will_props),
        }),
        username: None,
        password: None,
    });
    encode(&c, ProtocolVersion::V5)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_messages_that_expired_while_the_broker_was_down_are_gone() {
    let dir = DataDir::new();
    let Some(b) = start(&dir.0) else { return };
    let short = unique("short");
    let long = unique("long");
    let topic = unique("expiring");
    for (id, expiry) in [(&short, 1), (&long, 3600)] {
        let mut c = RawClient::tcp(b.addr).await;
        c.version = ProtocolVersion::V5;
        c.send_raw(&connect_v5(id, expiry)).await;
        assert!(matches!(c.recv().await, Rx::ConnAck { code: 0, .. }));
        c.subscribe_one(&topic, QoS::AtLeastOnce).await;
        c.disconnect().await;
    }
    // A retained message that expires in one second, and one that does not.
    let mut v5pub = RawClient::tcp(b.addr).await;
    v5pub.version = ProtocolVersion::V5;
    v5pub.send_raw(&connect_v5(&unique("v5pub"), 0)).await;
    assert!(matches!(v5pub.recv().await, Rx::ConnAck { code: 0, .. }));
    let expiring = [Property::MessageExpiryInterval(1)];
    let short_topic = format!("{topic}/short");
    let p = Packet::Publish(Publish {
        dup: false,
        qos_pid: QosPid::AtLeastOnce(mqtt_codec::PacketId::new(1).unwrap()),
        retain: true,
        topic: TopicName::new(&short_topic).unwrap(),
        properties: Properties::from_list(&expiring),
        payload: b"short-lived",
    });
    v5pub.send_raw(&encode(&p, ProtocolVersion::V5)).await;
    assert!(matches!(v5pub.recv().await, Rx::PubAck(1) | Rx::Other(_)));
    b.kill9();
    // Past the short expiry, counted from the disconnect (wall-clock time, which a restart does not reset).
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let b = start(&dir.0).expect("restart");
    let (_, present) = {
        let mut c = RawClient::tcp(b.addr).await;
        c.version = ProtocolVersion::V5;
        c.send_raw(&connect_v5(&short, 1)).await;
        match c.recv().await {
            Rx::ConnAck { session_present, code: 0 } => (c, session_present),
            other => panic!("{other:?}"),
        }
    };
    assert!(!present, "the 1 s session expired while the broker was down");
    let mut c = RawClient::tcp(b.addr).await;
    c.version = ProtocolVersion::V5;
    c.send_raw(&connect_v5(&long, 3600)).await;
    assert_eq!(c.recv().await, Rx::ConnAck { session_present: true, code: 0 });
    let mut late = RawClient::connect_v311(b.addr, &unique("late")).await;
    late.subscribe_one(&short_topic, QoS::AtMostOnce).await;
    late.expect_silence(QUIET).await;
}

/// The newest journal segment of a data directory.
fn newest_segment(dir: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("seg-")))
        .collect();
    segments.sort();
    segments.pop().expect("a segment")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "LOCK" {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A journal cut anywhere in its last records (a torn write), or with a byte flipped there, still starts: the
/// subscriber's session is there with every message whose records lie before the damage, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_or_damaged_journal_tail_starts_with_everything_before_the_damage() {
    let dir = DataDir::new();
    let Some(b) = start(&dir.0) else { return };
    let id = unique("torn-sub");
    let topic = unique("torn");
    offline_subscriber(&b, &id, &topic).await;
    let segment_len = |b: &BrokerProcess| std::fs::metadata(newest_segment(&b.data)).unwrap().len();
    let mut publisher = RawClient::connect_v311(b.addr, &unique("pub")).await;
    let mut ends = Vec::new();
    for i in 0..6 {
        publisher.publish_acked(&topic, format!("m{i}").as_bytes(), QoS::AtLeastOnce, false).await;
        // Acknowledged, so durable: the segment's length now ends after this message's records.
        ends.push(segment_len(&b));
    }
    b.kill9();
    let segment = newest_segment(&dir.0);
    let full = std::fs::read(&segment).unwrap();
    let first = ends[2];
    let mut cuts: Vec<u64> = (first..full.len() as u64).step_by(7).collect();
    cuts.push(full.len() as u64 - 1);
    let mut checked = 0;
    for (cut, flip) in cuts.iter().flat_map(|c| [(*c, false), (*c, true)]) {
        let copy = DataDir::new();
        copy_dir(&dir.0, &copy.0);
        let seg = copy.0.join(segment.file_name().unwrap());
        let mut bytes = full.clone();
        let at = usize::try_from(cut).unwrap();
        if flip {
            bytes[at] ^= 0x5a;
        } else {
            bytes.truncate(at);
        }
        std::fs::write(&seg, &bytes).unwrap();
        let b = start(&copy.0).expect("a damaged journal never stops the broker");
        let (mut sub, present) = RawClient::connect(b.addr, &ConnectOpts::new(&id).clean(false)).await;
        assert!(present, "cut {cut} flip {flip}");
        // Every message whose records end before the damage is there, in order; later ones may be lost.
        let intact = ends.iter().filter(|end| **end <= cut).count();
        let mut got = Vec::new();
        while let tests::raw::Event::Packet(Rx::Publish(p)) = sub.next_event(QUIET).await {
            sub.puback(p.pid.unwrap()).await;
            got.push(p.text());
        }
        let index = |t: &String| t.strip_prefix('m').and_then(|n| n.parse::<usize>().ok());
        let got: Vec<usize> = got.iter().map(|t| index(t).expect("a message that was published")).collect();
        assert!(got.windows(2).all(|w| w[0] < w[1]), "cut {cut} flip {flip}: in order, once each: {got:?}");
        assert_eq!(got.get(..intact), Some(&(0..intact).collect::<Vec<_>>()[..]), "cut {cut} flip {flip}");
        checked += 1;
    }
    eprintln!("torn/damaged journal cases checked: {checked}");
}

/// A delayed will cancelled by a reconnection stays cancelled after a crash; one still pending goes out after the
/// restart, when its delay ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_wills_survive_a_crash_and_cancelled_ones_stay_cancelled() {
    let dir = DataDir::new();
    let Some(b) = start(&dir.0) else { return };
    let watcher = unique("will-watcher");
    let topic = unique("wills");
    offline_subscriber(&b, &watcher, &format!("{topic}/#")).await;
    let will_connect =
        |id: &str, name: &str| connect_v5_with_will(id, false, &format!("{topic}/{name}"), name.as_bytes(), Some(2));
    let (cancelled, pending) = (unique("cancelled"), unique("pending"));
    for (id, name) in [(&cancelled, "cancelled"), (&pending, "pending")] {
        let mut c = RawClient::tcp(b.addr).await;
        c.version = ProtocolVersion::V5;
        c.send_raw(&will_connect(id, name)).await;
        assert!(matches!(c.recv().await, Rx::ConnAck { code: 0, .. }));
        // A SUBACK is sent once everything before it is durable: the session and its will are on disk.
        c.subscribe_one(&unique("anything"), QoS::AtMostOnce).await;
        // Gone without DISCONNECT: the will waits for its delay.
        c.drop_connection();
    }
    // The first comes back in time (its will is cancelled) and leaves cleanly.
    let mut back = RawClient::tcp(b.addr).await;
    back.version = ProtocolVersion::V5;
    back.send_raw(&connect_v5(&cancelled, 3600)).await;
    assert!(matches!(back.recv().await, Rx::ConnAck { session_present: true, code: 0 }));
    back.subscribe_one(&unique("anything"), QoS::AtMostOnce).await;
    back.disconnect().await;
    b.kill9();

    let b = start(&dir.0).expect("restart");
    // When its delay ends, the pending will goes out after the restart; the cancelled one does not.
    let (mut w, present) = RawClient::connect(b.addr, &ConnectOpts::new(&watcher).clean(false)).await;
    assert!(present);
    assert_eq!(texts(&w.recv_acking(1).await), ["pending"]);
    w.expect_silence(QUIET).await;
}

/// The will of a client connected at a kill -9 goes out after the restart, also when its session ends with the
/// connection (MQTT 3.1.1 clean session); a client that left with DISCONNECT leaves no will, also when the
/// DISCONNECT ended its persistent session (MQTT 5 Session Expiry Interval 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_will_of_a_client_connected_at_kill_9_goes_out_after_the_restart() {
    let dir = DataDir::new();
    let Some(b) = start(&dir.0) else { return };
    let watcher = unique("will-watcher");
    let topic = unique("crash-wills");
    offline_subscriber(&b, &watcher, &format!("{topic}/#")).await;
    let will_opts = |id: &str, name: &str| {
        ConnectOpts::new(id).will(&format!("{topic}/{name}"), name.as_bytes(), QoS::AtLeastOnce, false)
    };
    // Connected at the crash: the CONNACK is sent once the will is on disk.
    let (crashed, _) = RawClient::connect(b.addr, &will_opts(&unique("crashed"), "crashed")).await;
    // Gone before it, with DISCONNECT: a clean session, and a persistent one whose DISCONNECT ends it.
    let (mut left, _) = RawClient::connect(b.addr, &will_opts(&unique("left"), "left")).await;
    left.send(&Packet::Disconnect(mqtt_codec::Disconnect::normal())).await;
    left.expect_closed(Duration::from_secs(10)).await;
    let mut ended = RawClient::tcp(b.addr).await;
    ended.version = ProtocolVersion::V5;
    ended.send_raw(&connect_v5_with_will(&unique("ended"), true, &format!("{topic}/ended"), b"ended", None)).await;
    assert!(matches!(ended.recv().await, Rx::ConnAck { code: 0, .. }));
    let end_now = [Property::SessionExpiryInterval(0)];
    let disconnect =
        mqtt_codec::Disconnect { reason: mqtt_codec::ReasonCode::Success, properties: Properties::from_list(&end_now) };
    ended.send(&Packet::Disconnect(disconnect)).await;
    ended.expect_closed(Duration::from_secs(10)).await;
    // A SUBACK is sent once everything journaled before it is durable: what those two DISCONNECTs settled too.
    let (mut other, _) = RawClient::connect(b.addr, &ConnectOpts::new(&unique("barrier")).clean(false)).await;
    other.subscribe_one(&unique("anything"), QoS::AtMostOnce).await;
    b.kill9();
    drop((crashed, other));

    let b = start(&dir.0).expect("restart");
    let (mut w, present) = RawClient::connect(b.addr, &ConnectOpts::new(&watcher).clean(false)).await;
    assert!(present);
    assert_eq!(texts(&w.recv_acking(1).await), ["crashed"]);
    w.expect_silence(QUIET).await;
}

/// The broker-wide memory budget counts the messages recovered after a restart, as it counted them before: with
/// about 50 KiB of a 64 KiB budget queued for an offline session before a kill -9, an MQTT 5 publisher after the
/// restart is refused (0x97) once the rest is used, not after another 64 KiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovered_messages_count_in_the_memory_budget_after_kill_9() {
    let dir = DataDir::new();
    std::fs::create_dir_all(&dir.0).unwrap();
    let config = dir.0.join("budget.toml");
    std::fs::write(&config, "[limits]\nmax_message_memory = 65536\n[persistence]\nenabled = true\n").unwrap();
    let config = config.display().to_string();
    let data = dir.0.join("data");
    let Some(b) = BrokerProcess::start_in(&data, &["--config", &config]) else { return };
    let id = unique("budget-sub");
    let topic = unique("budget/t");
    offline_subscriber(&b, &id, &topic).await;
    let mut publisher = RawClient::connect_v311(b.addr, &unique("pub")).await;
    let payload = vec![b'x'; 1024];
    for _ in 0..48 {
        publisher.publish_acked(&topic, &payload, QoS::AtLeastOnce, false).await;
    }
    b.kill9();

    let b = BrokerProcess::start_in(&data, &["--config", &config]).expect("the broker starts again on its data");
    let opts = ConnectOpts::new(&unique("pub5")).version(ProtocolVersion::V5);
    let (mut p5, _) = RawClient::connect(b.addr, &opts).await;
    let mut accepted = 0u16;
    loop {
        assert!(accepted < 64, "64 KiB more taken after the restart: the recovered messages were not charged");
        p5.publish(&topic, &payload, QoS::AtLeastOnce, accepted + 1, false, false).await;
        let frame = p5.recv_frame().await;
        match mqtt_codec::decode(&frame, ProtocolVersion::V5).unwrap() {
            Packet::PubAck(a) if a.reason == mqtt_codec::ReasonCode::QuotaExceeded => break,
            Packet::PubAck(a) => {
                assert!(!a.reason.is_error(), "{:?}", a.reason);
                accepted += 1;
            }
            other => panic!("expected a PUBACK, got {other:?}"),
        }
    }
    assert!(accepted <= 16, "{accepted} KiB taken after the restart, with about 50 KiB of 64 recovered");
    // The recovered messages are all there, in order.
    let (mut sub, present) = RawClient::connect(b.addr, &ConnectOpts::new(&id).clean(false)).await;
    assert!(present);
    let got = sub.recv_acking(48 + usize::from(accepted)).await;
    assert!(got.iter().all(|p| p.payload == payload));
}
