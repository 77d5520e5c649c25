//! Latency at a fixed publish rate: the send time travels in the payload, the subscriber records arrival minus
//! send time in an HDR histogram.

use hdrhistogram::Histogram;
use mqtt_codec::QoS;
use tokio::time::Instant;

use super::throughput::join;
use super::{Ctx, PubSpec, publish, receive};
use crate::check::{Errors, Tracker, read_stamp};
use crate::conn::ConnError;
use crate::report::Report;

/// Latency parameters.
pub struct Latency {
    /// Messages per second.
    pub rate: f64,
    /// Messages sent in all.
    pub count: u64,
    /// QoS of publication and subscription.
    pub qos: QoS,
    /// Payload bytes.
    pub size: usize,
    /// QoS 1/2 window of the publisher.
    pub window: usize,
}

/// One publisher at a fixed rate, one subscriber; percentiles of the one-way latency in microseconds.
///
/// # Errors
/// Connection errors during setup or the run.
pub async fn latency(ctx: &Ctx, p: &Latency) -> Result<Report, ConnError> {
    let probe = ctx.probe();
    let topic = format!("{}/lat", ctx.prefix);
    let mut sub = ctx.client("sub").await?;
    sub.subscribe(&topic, p.qos, ctx.handshake).await?;
    let mut publisher = ctx.client("pub").await?;
    let t0 = Instant::now();
    let deadline = t0 + ctx.timeout;
    let (count, grace, origin) = (p.count, ctx.grace, ctx.origin);
    let receiver = tokio::spawn(async move {
        let mut tracker = Tracker::new(1, count);
        // 1 ns to 60 s, three significant figures.
        let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
            .map_err(|e| ConnError::Protocol(format!("histogram: {e}")))?;
        let r = receive(&mut sub, &mut tracker, count, deadline, grace, |payload, now| {
            if let Some((_, _, sent)) = read_stamp(payload) {
                let since = now.into_std().saturating_duration_since(origin).as_nanos();
                let arrived = u64::try_from(since).unwrap_or(u64::MAX);
                hist.saturating_record(arrived.saturating_sub(sent).max(1));
            }
        })
        .await;
        sub.disconnect().await;
        r.map(|s| (s, tracker, hist))
    });
    let spec = PubSpec {
        id: 0,
        topic,
        topic_per_message: false,
        qos: p.qos,
        size: p.size,
        count: p.count,
        window: p.window,
        retain: false,
        rate: Some(p.rate),
    };
    let sent = publish(&mut publisher, &spec, ctx.origin, deadline).await?;
    publisher.disconnect().await;
    let (stats, tracker, hist) = join(receiver).await?;
    let wall = t0.elapsed();
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let metrics = vec![
        ("p99_us", us(0.99)),
        ("p50_us", us(0.5)),
        ("p999_us", us(0.999)),
        ("max_us", hist.max() as f64 / 1000.0),
        ("mean_us", hist.mean() / 1000.0),
        ("samples", hist.len() as f64),
    ];
    let params = vec![
        ("rate", format!("{}", p.rate)),
        ("qos", (p.qos as u8).to_string()),
        ("size", p.size.to_string()),
        ("count", p.count.to_string()),
    ];
    let completed = stats.completed && sent.completed;
    Ok(ctx.report(
        "latency",
        params,
        ("p99_us", "us p99"),
        metrics,
        Errors::of(&tracker, count),
        &probe,
        wall,
        completed,
    ))
}
