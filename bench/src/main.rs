//! `mqtt-bench`: a load generator for MQTT brokers, and a null relay that gives the machine's fan-in limit.
//!
//! Data flow: `main` parses the command line -> `scenario::*` sets up clients and runs the publisher and subscriber
//! loops of `scenario` over `conn` (hand-driven sockets, packets from `mqtt-codec`) -> `check` counts loss,
//! duplicates and reordering from the stamps in the payloads -> `proc` reads the broker's CPU and memory ->
//! `report` prints one human line and one JSON line. `relay` is the null relay server.
//!
//! See `bench/README.md` for the scenarios and options. The exit status is 0 when every message arrived exactly
//! once and in order within the time limit, 1 otherwise, 2 on a usage error.

mod check;
mod conn;
mod proc;
mod relay;
mod report;
mod scenario;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use mqtt_codec::QoS;

use crate::scenario::Ctx;

const USAGE: &str = "\
usage: mqtt-bench SCENARIO [--option value]...

scenarios (defaults in brackets):
  fan-in    --publishers [10] --qos [0] --size [64] --count [100000 per publisher] --window [64]
            --persistent [0]  (1: the subscriber holds a persistent session, clean session 0)
  fan-out   --subscribers [100] --qos [0] --size [64] --count [10000] --window [64]
  latency   --rate [5000] --count [25000] --qos [0] --size [64] --window [64]
  idle      --clients [5000] --sources [8] --keep-alive [60] --concurrency [64]
  retained  --topics [10000] --size [64] --window [64]
  offline   --messages [10000] --qos [1] --size [64] --window [64]
  fill      --sessions [1000] --messages [1000 per session] --publishers [10] --qos [1] --size [64] --window [64]
            --id [pq]  (persistent sessions ID-0.. subscribe to ID/s/N and leave; then their queues are filled)
  drain     --sessions [1000] --messages [1000] --id [pq]  (the sessions return; each must get its queue, in order)
  relay     --listen [127.0.0.1:1884]   (serve the null relay until killed)

common:
  --host [127.0.0.1:1883]  broker address (loopback only)
  --broker-pid PID         read the broker's CPU time and peak RSS from /proc/PID
  --label [broker]         name printed with the results
  --timeout [30]           seconds one run may take
  --grace-ms [200]         extra read time after the last expected message, to catch duplicates
  --threads [1]            runtime worker threads (1: a current-thread runtime)
";

struct Args {
    scenario: String,
    opts: BTreeMap<String, String>,
}

impl Args {
    fn parse() -> Result<Self, String> {
        let mut it = std::env::args().skip(1);
        let scenario = it.next().ok_or("missing scenario")?;
        if scenario == "-h" || scenario == "--help" {
            return Err(String::new());
        }
        let mut opts = BTreeMap::new();
        while let Some(k) = it.next() {
            let key = k.strip_prefix("--").ok_or_else(|| format!("unexpected argument {k}"))?;
            let v = it.next().ok_or_else(|| format!("--{key} needs a value"))?;
            opts.insert(key.to_owned(), v);
        }
        Ok(Self { scenario, opts })
    }

    fn get<T: FromStr>(&mut self, key: &str, default: T) -> Result<T, String> {
        match self.opts.remove(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("bad value for --{key}: {v}")),
        }
    }

    fn qos(&mut self, default: u8) -> Result<QoS, String> {
        QoS::from_u8(self.get("qos", default)?).map_err(|_| "--qos must be 0, 1 or 2".to_owned())
    }

    fn done(&self) -> Result<(), String> {
        match self.opts.keys().next() {
            Some(k) => Err(format!("unknown option --{k} for {}", self.scenario)),
            None => Ok(()),
        }
    }
}

enum Job {
    FanIn(scenario::throughput::FanIn),
    FanOut(scenario::throughput::FanOut),
    Latency(scenario::latency::Latency),
    Idle(scenario::idle::Idle),
    Retained(scenario::queues::Retained),
    Offline(scenario::queues::Offline),
    Fill(scenario::sessions::Fill),
    Drain(scenario::sessions::Drain),
    Relay(SocketAddr),
}

fn loopback(addr: SocketAddr) -> Result<SocketAddr, String> {
    if addr.ip().is_loopback() { Ok(addr) } else { Err(format!("{addr} is not a loopback address")) }
}

fn plan(a: &mut Args) -> Result<(Ctx, Job, usize), String> {
    let addr = loopback(a.get("host", SocketAddr::from(([127, 0, 0, 1], 1883)))?)?;
    let ctx = Ctx {
        addr,
        label: a.get("label", "broker".to_owned())?,
        broker_pid: a.opts.remove("broker-pid"),
        timeout: Duration::from_secs_f64(a.get("timeout", 30.0)?),
        handshake: Duration::from_secs(10),
        grace: Duration::from_millis(a.get("grace-ms", 200)?),
        origin: std::time::Instant::now(),
        prefix: scenario::run_prefix(),
    };
    let threads = a.get("threads", 1usize)?;
    let job = match a.scenario.as_str() {
        "fan-in" => Job::FanIn(scenario::throughput::FanIn {
            publishers: a.get("publishers", 10)?,
            qos: a.qos(0)?,
            size: a.get("size", 64)?,
            count: a.get("count", 100_000)?,
            window: a.get("window", 64)?,
            persistent: a.get::<u8>("persistent", 0)? != 0,
        }),
        "fan-out" => Job::FanOut(scenario::throughput::FanOut {
            subscribers: a.get("subscribers", 100)?,
            qos: a.qos(0)?,
            size: a.get("size", 64)?,
            count: a.get("count", 10_000)?,
            window: a.get("window", 64)?,
        }),
        "latency" => Job::Latency(scenario::latency::Latency {
            rate: a.get("rate", 5000.0)?,
            count: a.get("count", 25_000)?,
            qos: a.qos(0)?,
            size: a.get("size", 64)?,
            window: a.get("window", 64)?,
        }),
        "idle" => Job::Idle(scenario::idle::Idle {
            clients: a.get("clients", 5000)?,
            sources: a.get("sources", 8)?,
            keep_alive: a.get("keep-alive", 60)?,
            concurrency: a.get("concurrency", 64)?,
        }),
        "retained" => Job::Retained(scenario::queues::Retained {
            topics: a.get("topics", 10_000)?,
            size: a.get("size", 64)?,
            window: a.get("window", 64)?,
        }),
        "offline" => Job::Offline(scenario::queues::Offline {
            messages: a.get("messages", 10_000)?,
            qos: a.qos(1)?,
            size: a.get("size", 64)?,
            window: a.get("window", 64)?,
        }),
        "fill" => Job::Fill(scenario::sessions::Fill {
            sessions: a.get("sessions", 1000)?,
            messages: a.get("messages", 1000)?,
            publishers: a.get("publishers", 10)?,
            qos: a.qos(1)?,
            size: a.get("size", 64)?,
            window: a.get("window", 64)?,
            id: a.get("id", "pq".to_owned())?,
        }),
        "drain" => Job::Drain(scenario::sessions::Drain {
            sessions: a.get("sessions", 1000)?,
            messages: a.get("messages", 1000)?,
            id: a.get("id", "pq".to_owned())?,
        }),
        "relay" => Job::Relay(loopback(a.get("listen", SocketAddr::from(([127, 0, 0, 1], 1884)))?)?),
        other => return Err(format!("unknown scenario {other}")),
    };
    a.done()?;
    Ok((ctx, job, threads))
}

async fn run(ctx: Ctx, job: Job) -> Result<bool, String> {
    let report = match job {
        Job::FanIn(p) => scenario::throughput::fan_in(&ctx, &p).await,
        Job::FanOut(p) => scenario::throughput::fan_out(&ctx, &p).await,
        Job::Latency(p) => scenario::latency::latency(&ctx, &p).await,
        Job::Idle(p) => scenario::idle::idle(&ctx, &p).await,
        Job::Retained(p) => scenario::queues::retained(&ctx, &p).await,
        Job::Offline(p) => scenario::queues::offline(&ctx, &p).await,
        Job::Fill(p) => scenario::sessions::fill(&ctx, &p).await,
        Job::Drain(p) => scenario::sessions::drain(&ctx, &p).await,
        Job::Relay(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("bind {addr}: {e}"))?;
            eprintln!("null relay listening on {}", listener.local_addr().map_err(|e| e.to_string())?);
            relay::serve(listener).await.map_err(|e| format!("relay: {e}"))?;
            return Ok(true);
        }
    }
    .map_err(|e| e.to_string())?;
    // A closed stdout (e.g. piped into `head`) must not turn a finished run into a panic.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", report.human());
    let _ = writeln!(out, "{}", report.json());
    Ok(report.ok())
}

fn main() -> ExitCode {
    let mut args = match Args::parse() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("mqtt-bench: {e}");
            }
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (ctx, job, threads) = match plan(&mut args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("mqtt-bench: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let rt = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mqtt-bench: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let scenario = args.scenario.clone();
    match rt.block_on(run(ctx, job)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("mqtt-bench: {scenario}: messages lost, duplicated or reordered, or the run timed out");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("mqtt-bench: {scenario}: {e}");
            ExitCode::FAILURE
        }
    }
}
