//! The scenarios, and the publisher and subscriber loops they share.
//!
//! Every loop is bounded by a message count and by a deadline; a run that hits its deadline reports what it saw,
//! marked incomplete.

pub mod idle;
pub mod latency;
pub mod queues;
pub mod sessions;
pub mod throughput;

use std::net::SocketAddr;
use std::time::Duration;

use mqtt_codec::{Packet, PacketId, Properties, Publish, QoS, QosPid, TopicName};
use tokio::time::{Instant, sleep_until};

use crate::check::{STAMP_LEN, Tracker, nanos_since, stamp};
use crate::conn::{Conn, ConnError, ack};
use crate::proc::Probe;
use crate::report::Report;

/// What every scenario needs.
pub struct Ctx {
    /// The broker (or relay) under test.
    pub addr: SocketAddr,
    /// Label for the report (e.g. `ours`, `mosquitto`, `relay`).
    pub label: String,
    /// The broker's process id, for its CPU time and memory.
    pub broker_pid: Option<String>,
    /// Upper bound on one run's measured part.
    pub timeout: Duration,
    /// Time given to CONNECT/SUBSCRIBE handshakes.
    pub handshake: Duration,
    /// How long receivers keep reading after the last expected message, to catch duplicates.
    pub grace: Duration,
    /// Origin of the send stamps.
    pub origin: std::time::Instant,
    /// Unique topic and client id prefix of this run.
    pub prefix: String,
}

impl Ctx {
    /// Starts measuring the broker and the generator.
    pub fn probe(&self) -> (Probe, Option<f64>) {
        (Probe::start(self.broker_pid.as_deref()), crate::proc::cpu_seconds("self"))
    }

    /// Connects a client with a clean session and keep alive 60 s.
    ///
    /// # Errors
    /// As [`Conn::connect`].
    pub async fn client(&self, name: &str) -> Result<Conn, ConnError> {
        let id = format!("{}-{name}", self.prefix);
        Ok(Conn::connect(self.addr, None, &id, true, 60, self.handshake).await?.0)
    }

    /// A report with the usage figures filled in.
    #[allow(clippy::too_many_arguments)]
    pub fn report(
        &self,
        scenario: &'static str,
        params: Vec<(&'static str, String)>,
        headline: (&'static str, &'static str),
        metrics: Vec<(&'static str, f64)>,
        errors: crate::check::Errors,
        probe: &(Probe, Option<f64>),
        wall: Duration,
        completed: bool,
    ) -> Report {
        let bench_cpu_s = crate::proc::cpu_seconds("self").zip(probe.1).map(|(b, a)| b - a);
        Report {
            scenario,
            label: self.label.clone(),
            params,
            headline,
            metrics,
            errors,
            broker: probe.0.usage(),
            bench_cpu_s,
            wall_s: wall.as_secs_f64(),
            run_s: probe.0.started.elapsed().as_secs_f64(),
            completed,
        }
    }
}

/// How one publisher sends.
#[derive(Clone)]
pub struct PubSpec {
    /// Publisher id written into each stamp.
    pub id: u32,
    /// Topic; with `topic_per_message`, the sequence number is appended as a last level.
    pub topic: String,
    /// Appends `/SEQ` to the topic of each message.
    pub topic_per_message: bool,
    /// QoS of each PUBLISH.
    pub qos: QoS,
    /// Payload bytes (at least the stamp).
    pub size: usize,
    /// Messages to send.
    pub count: u64,
    /// QoS 1/2 messages sent and not yet acknowledged, at most.
    pub window: usize,
    /// RETAIN flag.
    pub retain: bool,
    /// Messages per second, or as fast as possible.
    pub rate: Option<f64>,
}

/// What a publisher did.
#[derive(Debug, Clone, Copy)]
pub struct PubStats {
    /// Messages written.
    pub sent: u64,
    /// Messages acknowledged (QoS 1: PUBACK; QoS 2: PUBCOMP).
    pub acked: u64,
    /// When sending began and when the last message was written (and, for QoS 1/2, acknowledged).
    pub start: Instant,
    /// See `start`.
    pub end: Instant,
    /// Whether it finished before the deadline.
    pub completed: bool,
}

/// Bytes buffered for writing before the publisher waits for the socket.
const WRITE_HIGH_WATER: usize = 64 * 1024;

/// Sends `spec.count` messages on `conn`, handling QoS 1/2 acknowledgements, until done or `deadline`.
///
/// # Errors
/// Connection errors.
pub async fn publish(
    conn: &mut Conn,
    spec: &PubSpec,
    origin: std::time::Instant,
    deadline: Instant,
) -> Result<PubStats, ConnError> {
    let mut payload = vec![0u8; spec.size.max(STAMP_LEN)];
    let mut topic = String::with_capacity(spec.topic.len() + 12);
    let start = Instant::now();
    let (mut seq, mut inflight, mut acked) = (0u64, 0usize, 0u64);
    let mut next_id = PacketId::new(1).ok_or(ConnError::Protocol("packet id".into()))?;
    let qos0 = spec.qos == QoS::AtMostOnce;
    loop {
        let mut wait_until = None;
        while seq < spec.count && (qos0 || inflight < spec.window) && conn.pending_write() < WRITE_HIGH_WATER {
            if let Some(rate) = spec.rate {
                let due = start + Duration::from_secs_f64(seq as f64 / rate);
                if Instant::now() < due {
                    wait_until = Some(due);
                    break;
                }
            }
            stamp(&mut payload, spec.id, seq, nanos_since(origin));
            topic.clear();
            topic.push_str(&spec.topic);
            if spec.topic_per_message {
                use std::fmt::Write as _;
                let _ = write!(topic, "/{seq}");
            }
            let qos_pid = QosPid::from_parts(spec.qos, next_id);
            if !qos0 {
                next_id = next_id.next();
                inflight += 1;
            }
            conn.queue(&Packet::Publish(Publish {
                dup: false,
                qos_pid,
                retain: spec.retain,
                topic: TopicName::new(&topic).map_err(ConnError::Decode)?,
                properties: Properties::empty(),
                payload: &payload,
            }))?;
            seq += 1;
        }
        if seq == spec.count && inflight == 0 && conn.pending_write() == 0 {
            break;
        }
        if Instant::now() >= deadline {
            return Ok(PubStats { sent: seq, acked, start, end: Instant::now(), completed: false });
        }
        let read = inflight > 0;
        let until = wait_until.unwrap_or(deadline);
        if !read && conn.pending_write() == 0 {
            sleep_until(until).await;
            continue;
        }
        tokio::select! {
            r = conn.io(read) => r?,
            () = sleep_until(until) => {}
        }
        if read {
            conn.drain(|p, out| {
                match p {
                    Packet::PubAck(_) | Packet::PubComp(_) => {
                        inflight = inflight.saturating_sub(1);
                        acked += 1;
                    }
                    Packet::PubRec(a) => out.send(&Packet::PubRel(ack(a.packet_id)))?,
                    _ => {}
                }
                Ok(true)
            })?;
        }
    }
    Ok(PubStats { sent: seq, acked, start, end: Instant::now(), completed: true })
}

/// What a receiver saw.
#[derive(Debug, Clone, Copy)]
pub struct RecvStats {
    /// First and last arrival of a new message.
    pub first: Option<Instant>,
    /// See `first`.
    pub last: Option<Instant>,
    /// Whether every expected message arrived before the deadline.
    pub completed: bool,
    /// PUBLISH packets without the RETAIN flag.
    pub not_retained: u64,
}

/// Reads until `expected` distinct messages arrived (then `grace` longer, to catch duplicates) or `deadline`.
/// `on` sees each payload with the time its read completed.
///
/// # Errors
/// Connection errors.
pub async fn receive(
    conn: &mut Conn,
    tracker: &mut Tracker,
    expected: u64,
    deadline: Instant,
    grace: Duration,
    mut on: impl FnMut(&[u8], Instant),
) -> Result<RecvStats, ConnError> {
    let mut stats = RecvStats { first: None, last: None, completed: false, not_retained: 0 };
    let mut unique = tracker.unique();
    let mut end = deadline;
    loop {
        if !stats.completed && unique >= expected {
            stats.completed = true;
            end = end.min(Instant::now() + grace);
        }
        if Instant::now() >= end {
            break;
        }
        tokio::select! {
            r = conn.io(true) => r?,
            () = sleep_until(end) => break,
        }
        let now = Instant::now();
        conn.drain(|p, out| {
            if let Some((payload, retain)) = Conn::ack_inbound(&p, out)? {
                let before = tracker.unique();
                tracker.record(payload);
                if tracker.unique() != before {
                    unique += 1;
                    stats.first.get_or_insert(now);
                    stats.last = Some(now);
                }
                if !retain {
                    stats.not_retained += 1;
                }
                on(payload, now);
            }
            Ok(true)
        })?;
    }
    let _ = tokio::time::timeout(Duration::from_millis(500), conn.flush()).await;
    Ok(stats)
}

/// A unique prefix for topics and client ids of one run.
pub fn run_prefix() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("mb{}x{nanos:x}", std::process::id())
}

/// Messages per second for `n` messages over `from..to`.
pub fn rate(n: u64, from: Instant, to: Option<Instant>) -> f64 {
    let secs = to.map_or(0.0, |t| t.duration_since(from).as_secs_f64());
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}
