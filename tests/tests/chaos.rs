//! The crash test of persistence: publishers and subscribers with persistent sessions run against the real
//! `broker` binary, which is killed with SIGKILL at a random moment, again and again, and restarted on the same
//! data each time. Clients resume as well-behaved MQTT clients do (resend their unacknowledged PUBLISH with DUP,
//! or their PUBREL; keep their QoS 2 receive state). At the end every message whose PUBACK or PUBCOMP its
//! publisher received must have reached every subscriber: QoS 1 at least once, QoS 2 exactly once, in order per
//! publisher; sessions must always be present and the retained message must be the last one acknowledged.
//!
//! `CHAOS_ROUNDS` sets the number of kills (default 20); `CHAOS_SEED` replays a run (the seed is printed).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mqtt_codec::{Ack, Packet, PacketId, ProtocolVersion, QoS};
use tests::process::BrokerProcess;
use tests::raw::{ConnectOpts, Event, RawClient, Rx, encode, publish_bytes};
use tests::unique;

const PUBLISHERS: usize = 4;
const SUBSCRIBERS: usize = 3;
/// How long a client waits for the broker before it calls it stuck.
const STUCK: Duration = Duration::from_secs(10);

trait PositionsOf {
    fn positions_of(self, seq: u64) -> Vec<usize>;
}

impl<'a, I: Iterator<Item = &'a (u64, QoS)>> PositionsOf for I {
    fn positions_of(self, seq: u64) -> Vec<usize> {
        self.enumerate().filter(|(_, (s, _))| *s == seq).map(|(i, _)| i).collect()
    }
}

/// xorshift64*: enough to pick kill moments.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn pid(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

fn ack_bytes(packet: Packet<'_>) -> Vec<u8> {
    encode(&packet, ProtocolVersion::V311)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// PUBLISH sent, no acknowledgement yet.
    Published,
    /// PUBREC received, PUBREL sent.
    Released,
}

/// A publisher's state, kept across broker crashes as a client library would keep it.
struct Publisher {
    id: String,
    index: usize,
    qos: QoS,
    next_seq: u64,
    next_pid: u16,
    inflight: Option<(u16, u64, Stage)>,
    acked: u64,
    sessions: u32,
}

impl Publisher {
    fn payload(&self, seq: u64) -> Vec<u8> {
        format!("{} {seq}", self.index).into_bytes()
    }
}

/// A subscriber's state: what its application received, and its QoS 2 receive state.
struct Subscriber {
    id: String,
    /// (publisher, seq, qos) in the order delivered to the application.
    received: Vec<(usize, u64, QoS)>,
    held: HashSet<u16>,
    sessions: u32,
}

/// A connected client, or `None` when the broker is gone.
async fn connect(addr: SocketAddr, id: &str, sessions: &mut u32) -> Option<RawClient> {
    let mut c = RawClient::try_tcp(addr).await?;
    if !c.try_send_raw(&ConnectOpts::new(id).clean(false).encode()).await {
        return None;
    }
    match c.next_event(STUCK).await {
        Event::Packet(Rx::ConnAck { session_present, code: 0 }) => {
            assert_eq!(session_present, *sessions > 0, "{id}: session present after {sessions} sessions");
            *sessions += 1;
            Some(c)
        }
        // Killed while connecting.
        Event::Closed => None,
        other => panic!("{id}: CONNACK {other:?}"),
    }
}

/// Publishes one message after another until the broker dies (or, when `last`, until the one in flight is done).
async fn run_publisher(addr: SocketAddr, mut p: Publisher, topic: String, last: Arc<AtomicBool>) -> Publisher {
    let Some(mut c) = connect(addr, &p.id.clone(), &mut p.sessions).await else { return p };
    // Resume: the unacknowledged PUBLISH again with DUP, or the PUBREL.
    let resent = match p.inflight {
        Some((id, seq, Stage::Published)) => {
            c.try_send_raw(&publish_bytes(ProtocolVersion::V311, &topic, &p.payload(seq), p.qos, id, false, true)).await
        }
        Some((id, _, Stage::Released)) => c.try_send_raw(&ack_bytes(Packet::PubRel(Ack::new(pid(id))))).await,
        None => true,
    };
    if !resent {
        return p;
    }
    loop {
        if p.inflight.is_none() {
            if last.load(Ordering::Relaxed) {
                return p;
            }
            let (seq, id) = (p.next_seq, p.next_pid);
            p.next_seq += 1;
            p.next_pid = p.next_pid.checked_add(1).unwrap_or(1);
            p.inflight = Some((id, seq, Stage::Published));
            let bytes = publish_bytes(ProtocolVersion::V311, &topic, &p.payload(seq), p.qos, id, false, false);
            if !c.try_send_raw(&bytes).await {
                return p;
            }
        }
        let Some((id, seq, stage)) = p.inflight else { continue };
        match c.next_event(STUCK).await {
            Event::Packet(Rx::PubAck(a)) if a == id && p.qos == QoS::AtLeastOnce => {
                p.inflight = None;
                p.acked += 1;
            }
            Event::Packet(Rx::PubRec(a)) if a == id && p.qos == QoS::ExactlyOnce => {
                p.inflight = Some((id, seq, Stage::Released));
                if !c.try_send_raw(&ack_bytes(Packet::PubRel(Ack::new(pid(id))))).await {
                    return p;
                }
            }
            Event::Packet(Rx::PubComp(a)) if a == id && stage == Stage::Released => {
                p.inflight = None;
                p.acked += 1;
            }
            Event::Closed => return p,
            Event::Silent => panic!("{}: the broker answered nothing for {STUCK:?}", p.id),
            Event::Packet(other) => panic!("{}: unexpected {other:?} with {:?} in flight", p.id, p.inflight),
        }
    }
}

/// Receives as a well-behaved subscriber until the broker dies (or, once `done`, until it is quiet).
async fn run_subscriber(addr: SocketAddr, mut s: Subscriber, done: Arc<AtomicBool>) -> Subscriber {
    let Some(mut c) = connect(addr, &s.id.clone(), &mut s.sessions).await else { return s };
    loop {
        let wait = if done.load(Ordering::Relaxed) { Duration::from_millis(700) } else { STUCK };
        let reply = match c.next_event(wait).await {
            Event::Packet(Rx::Publish(p)) => {
                let text = p.text();
                let (publisher, seq) = text.split_once(' ').expect("publisher and seq");
                let entry = (publisher.parse().unwrap(), seq.parse().unwrap(), p.qos);
                match (p.qos, p.pid) {
                    (QoS::AtLeastOnce, Some(id)) => {
                        s.received.push(entry);
                        ack_bytes(Packet::PubAck(Ack::new(pid(id))))
                    }
                    (QoS::ExactlyOnce, Some(id)) => {
                        // Method B of the specification: delivered once per packet identifier until PUBREL.
                        if s.held.insert(id) {
                            s.received.push(entry);
                        }
                        ack_bytes(Packet::PubRec(Ack::new(pid(id))))
                    }
                    other => panic!("{}: unexpected delivery {other:?}", s.id),
                }
            }
            Event::Packet(Rx::PubRel(id)) => {
                s.held.remove(&id);
                ack_bytes(Packet::PubComp(Ack::new(pid(id))))
            }
            Event::Closed => return s,
            Event::Silent if done.load(Ordering::Relaxed) => return s,
            Event::Silent => continue,
            Event::Packet(other) => panic!("{}: unexpected {other:?}", s.id),
        };
        if !c.try_send_raw(&reply).await {
            return s;
        }
    }
}

fn config(dir: &Path) -> PathBuf {
    let path = dir.with_extension("toml");
    let toml = format!(
        "[limits]\nmax_queued_messages = 1000000\nmax_queued_bytes = 268435456\n\
         [persistence]\npath = \"{}\"\n",
        dir.display()
    );
    std::fs::write(&path, toml).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_acknowledged_is_lost_when_the_broker_is_killed_again_and_again() {
    let rounds: usize = std::env::var("CHAOS_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let seed = std::env::var("CHAOS_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    eprintln!("chaos: {rounds} kills, CHAOS_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = std::env::temp_dir().join(unique("chaos-data"));
    let config = config(&dir);
    let config_arg = config.display().to_string();
    let run = unique("chaos");
    let topic = |i: usize| format!("{run}/p/{i}");
    let mut publishers: Vec<Publisher> = (0..PUBLISHERS)
        .map(|index| Publisher {
            id: format!("{run}-pub{index}"),
            index,
            qos: if index % 2 == 0 { QoS::AtLeastOnce } else { QoS::ExactlyOnce },
            next_seq: 0,
            next_pid: 1,
            inflight: None,
            acked: 0,
            sessions: 0,
        })
        .collect();
    let mut subscribers: Vec<Subscriber> = (0..SUBSCRIBERS)
        .map(|i| Subscriber { id: format!("{run}-sub{i}"), received: Vec::new(), held: HashSet::new(), sessions: 0 })
        .collect();
    let mut retained_acked: Option<String> = None;
    for round in 0..=rounds {
        let last = round == rounds;
        let Some(b) = BrokerProcess::start_in(&dir, &["--config", &config_arg]) else { return };
        // The retained message is the last one acknowledged before the crash.
        let mut check = RawClient::connect_v311(b.addr, &unique("retained-check")).await;
        let status = format!("{run}/status");
        check.subscribe_one(&status, QoS::AtMostOnce).await;
        match (&retained_acked, check.next_event(Duration::from_secs(2)).await) {
            (None, Event::Silent) => {}
            (Some(want), Event::Packet(Rx::Publish(p))) => assert_eq!(&p.text(), want, "round {round}"),
            (want, got) => panic!("round {round}: retained {want:?}, got {got:?}"),
        }
        check.publish_acked(&status, format!("round {round}").as_bytes(), QoS::AtLeastOnce, true).await;
        retained_acked = Some(format!("round {round}"));
        drop(check);

        if round == 0 {
            // Every subscriber's session and subscription exist before the first message.
            for s in &mut subscribers {
                let mut c = connect(b.addr, &s.id.clone(), &mut s.sessions).await.expect("connect");
                c.subscribe_one(&format!("{run}/p/#"), QoS::ExactlyOnce).await;
                c.disconnect().await;
            }
        }
        let stop = Arc::new(AtomicBool::new(last));
        // Subscriber 2 is away every other round: its queue grows while it is offline, across crashes.
        let mut subs = Vec::new();
        for s in subscribers.drain(..) {
            let away = s.id.ends_with("sub2") && round % 2 == 1 && !last;
            let (addr, done) = (b.addr, stop.clone());
            subs.push(tokio::spawn(async move { if away { s } else { run_subscriber(addr, s, done).await } }));
        }
        let pubs: Vec<_> = publishers
            .drain(..)
            .map(|p| {
                let (addr, topic, last) = (b.addr, topic(p.index), stop.clone());
                tokio::spawn(run_publisher(addr, p, topic, last))
            })
            .collect();
        let mut running = Some(b);
        if !last && let Some(b) = running.take() {
            tokio::time::sleep(Duration::from_millis(100 + rng.next() % 400)).await;
            b.kill9();
        }
        for p in pubs {
            publishers.push(p.await.expect("publisher"));
        }
        stop.store(true, Ordering::Relaxed);
        for s in subs {
            subscribers.push(s.await.expect("subscriber"));
        }
        drop(running);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&config);

    publishers.sort_by_key(|p| p.index);
    let acked: Vec<u64> = publishers.iter().map(|p| p.acked).collect();
    let mut duplicates = 0usize;
    for s in &subscribers {
        let mut per_publisher: HashMap<usize, Vec<(u64, QoS)>> = HashMap::new();
        for (p, seq, qos) in &s.received {
            per_publisher.entry(*p).or_default().push((*seq, *qos));
        }
        for p in &publishers {
            let got = per_publisher.remove(&p.index).unwrap_or_default();
            // First deliveries in order, with no gap; every acknowledged message among them.
            let mut seen = HashSet::new();
            let mut next = 0;
            for (i, (seq, qos)) in got.iter().enumerate() {
                if seen.insert(*seq) {
                    let around = &got[i.saturating_sub(8)..(i + 4).min(got.len())];
                    let later: Vec<usize> = got.iter().positions_of(next);
                    assert_eq!(
                        *seq, next,
                        "{}: publisher {} out of order or a gap: {around:?}; {next} at {later:?}",
                        s.id, p.index
                    );
                    next += 1;
                } else {
                    assert_eq!(*qos, QoS::AtLeastOnce, "{}: QoS 2 message {} {seq} delivered twice", s.id, p.index);
                    duplicates += 1;
                }
            }
            assert!(next >= p.acked, "{}: {} of publisher {}'s {} acknowledged messages", s.id, next, p.index, p.acked);
        }
    }
    let delivered: Vec<usize> = subscribers.iter().map(|s| s.received.len()).collect();
    eprintln!(
        "chaos: {rounds} kills; acknowledged per publisher {acked:?} (QoS 1, 2, 1, 2); deliveries per subscriber \
         {delivered:?}; QoS 1 duplicates {duplicates}; QoS 2 duplicates 0; lost 0"
    );
}
