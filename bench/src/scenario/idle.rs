//! Idle connections: N clients with keep alive and one subscription each, spread over several 127.x source
//! addresses. Measures the connect rate and the broker's resident memory per connection, then checks that each
//! client is still served by sending it one message.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use mqtt_codec::QoS;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::{Instant, sleep, timeout_at};

use super::{Ctx, PubSpec, publish, rate, receive};
use crate::check::{Errors, Tracker, read_stamp};
use crate::conn::{Conn, ConnError};
use crate::report::Report;

/// Idle parameters.
pub struct Idle {
    /// Clients.
    pub clients: u32,
    /// Source addresses 127.0.0.2 .. 127.0.0.(1 + sources).
    pub sources: u8,
    /// Keep alive in seconds.
    pub keep_alive: u16,
    /// Connections being set up at once.
    pub concurrency: usize,
}

enum Phase {
    /// CONNACK received at `.0`; the TCP connect took `.1`, CONNECT to CONNACK `.2`.
    Connected(Instant, Duration, Duration),
    Subscribed,
}

/// Read and write buffers of one idle client (they grow if a large packet arrives).
const IDLE_BUF: usize = 1024;

/// See the module doc. The connect rate is N over the time from the first connect to the last CONNACK; memory
/// per connection is the broker's resident-set growth after every client subscribed, divided by N.
///
/// # Errors
/// Connection errors of the publisher that checks the clients.
pub async fn idle(ctx: &Ctx, p: &Idle) -> Result<Report, ConnError> {
    let probe = ctx.probe();
    let cpu = || (ctx.broker_pid.as_deref().and_then(crate::proc::cpu_seconds), crate::proc::cpu_seconds("self"));
    let cpu0 = cpu();
    let t0 = Instant::now();
    let deadline = t0 + ctx.timeout;
    let gate = Arc::new(Semaphore::new(p.concurrency.max(1)));
    let (phase_tx, mut phase_rx) = mpsc::unbounded_channel();
    let (go_tx, go_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    for i in 0..p.clients {
        let source =
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + u8::try_from(i % u32::from(p.sources.max(1))).unwrap_or(0)));
        let (gate, phase_tx, mut go_rx) = (gate.clone(), phase_tx.clone(), go_rx.clone());
        let (addr, id, topic) = (ctx.addr, format!("{}-idle{i}", ctx.prefix), format!("{}/idle/{i}", ctx.prefix));
        let (handshake, grace, keep_alive, clients) = (ctx.handshake, ctx.grace, p.keep_alive, p.clients);
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.map_err(|_| ConnError::Closed)?;
            let start = Instant::now();
            let mut c = Conn::open_with(addr, Some(source), IDLE_BUF).await?;
            let opened = Instant::now();
            c.handshake(&id, true, keep_alive, handshake).await?;
            drop(permit);
            let done = Instant::now();
            let _ = phase_tx.send(Phase::Connected(done, opened - start, done - opened));
            timeout_at(deadline, go_rx.wait_for(|go| *go)).await.map_err(|_| ConnError::Timeout("all connected"))?.ok();
            c.subscribe(&topic, QoS::AtMostOnce, handshake).await?;
            let _ = phase_tx.send(Phase::Subscribed);
            let mut tracker = Tracker::new(1, u64::from(clients));
            let mut misrouted = 0u64;
            let r = receive(&mut c, &mut tracker, 1, deadline, grace, |payload, _| {
                // Client i must receive exactly message i (publisher 0, sequence i).
                if read_stamp(payload).is_none_or(|(_, seq, _)| seq != u64::from(i)) {
                    misrouted += 1;
                }
            })
            .await;
            drop(c);
            r.map(|_| (tracker, misrouted))
        }));
    }
    drop(phase_tx);
    let (mut connected, mut subscribed, mut last_connack) = (0u32, 0u32, None);
    // Where a connect's time goes, in microseconds: the TCP handshake, then CONNECT to CONNACK.
    let new_hist = || {
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| ConnError::Protocol(format!("histogram: {e}")))
    };
    let (mut tcp_us, mut connack_us) = (new_hist()?, new_hist()?);
    // The longest pause between two CONNACKs: a stall of the broker (or of the generator) shows here.
    let (mut gap, mut gap_at) = (Duration::ZERO, 0u32);
    let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
    while connected < p.clients {
        match timeout_at(deadline, phase_rx.recv()).await {
            Ok(Some(Phase::Connected(t, tcp, connack))) => {
                connected += 1;
                if let Some(last) = last_connack
                    && t.saturating_duration_since(last) > gap
                {
                    gap = t.saturating_duration_since(last);
                    gap_at = connected;
                }
                last_connack = last_connack.max(Some(t));
                tcp_us.saturating_record(micros(tcp));
                connack_us.saturating_record(micros(connack));
            }
            Ok(Some(Phase::Subscribed)) => subscribed += 1,
            Ok(None) | Err(_) => break,
        }
    }
    let connect_rate = rate(u64::from(connected), t0, last_connack);
    // CPU per connect of the broker and of the generator while clients connect: what a full core would allow.
    let cpu1 = cpu();
    let per_connect = |a: Option<f64>, b: Option<f64>| {
        a.zip(b).map_or(f64::NAN, |(a, b)| (b - a) * 1e6 / f64::from(connected.max(1)))
    };
    let (broker_us, bench_us) = (per_connect(cpu0.0, cpu1.0), per_connect(cpu0.1, cpu1.1));
    let _ = go_tx.send(true);
    while subscribed < connected {
        match timeout_at(deadline, phase_rx.recv()).await {
            Ok(Some(Phase::Subscribed)) => subscribed += 1,
            Ok(Some(Phase::Connected(..))) => {}
            Ok(None) | Err(_) => break,
        }
    }
    // Let the broker settle, then read its memory with every client connected and subscribed.
    sleep(Duration::from_millis(300)).await;
    let rss_all = probe.0.rss_now();

    // One message to each client: every idle connection must still be served.
    let mut publisher = ctx.client("checker").await?;
    let spec = PubSpec {
        id: 0,
        topic: format!("{}/idle", ctx.prefix),
        topic_per_message: true,
        qos: QoS::AtLeastOnce,
        size: 32,
        count: u64::from(p.clients),
        window: 64,
        retain: false,
        rate: None,
    };
    let sent = publish(&mut publisher, &spec, ctx.origin, deadline).await?;
    publisher.disconnect().await;
    let mut errors = Errors::default();
    let mut failed = 0u64;
    for t in tasks {
        match t.await {
            Ok(Ok((tracker, misrouted))) => {
                errors.duplicated += tracker.duplicates;
                errors.foreign += tracker.foreign + misrouted;
                if tracker.unique() == 0 {
                    errors.lost += 1;
                }
            }
            Ok(Err(_)) | Err(_) => {
                failed += 1;
                errors.lost += 1;
            }
        }
    }
    let wall = t0.elapsed();
    let q = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64;
    let mut metrics = vec![
        ("connects_per_s", connect_rate),
        ("connected", f64::from(connected)),
        ("failed", failed as f64),
        ("tcp_p50_us", q(&tcp_us, 0.5)),
        ("tcp_p99_us", q(&tcp_us, 0.99)),
        ("tcp_max_us", tcp_us.max() as f64),
        ("connack_p50_us", q(&connack_us, 0.5)),
        ("connack_p99_us", q(&connack_us, 0.99)),
        ("connack_max_us", connack_us.max() as f64),
        ("connack_gap_max_us", gap.as_micros() as f64),
        ("connack_gap_at", f64::from(gap_at)),
        ("broker_cpu_us_per_connect", broker_us),
        ("bench_cpu_us_per_connect", bench_us),
    ];
    if let (Some(now), Some(before)) = (rss_all, probe.0.rss0) {
        metrics.push(("bytes_per_conn", (now.saturating_sub(before) * 1024) as f64 / f64::from(p.clients.max(1))));
    }
    let params = vec![
        ("clients", p.clients.to_string()),
        ("sources", p.sources.to_string()),
        ("keep_alive", p.keep_alive.to_string()),
    ];
    let completed = connected == p.clients && subscribed == p.clients && sent.completed && failed == 0;
    Ok(ctx.report("idle", params, ("connects_per_s", "connects/s"), metrics, errors, &probe, wall, completed))
}
