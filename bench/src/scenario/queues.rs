//! Stored messages: retained messages delivered to a new wildcard subscriber, and the offline queue of a
//! persistent session drained when it returns.

use mqtt_codec::QoS;
use tokio::time::Instant;

use super::{Ctx, PubSpec, publish, rate, receive};
use crate::check::{Errors, Tracker};
use crate::conn::{Conn, ConnError};
use crate::report::Report;

/// Retained parameters.
pub struct Retained {
    /// Retained topics.
    pub topics: u64,
    /// Payload bytes.
    pub size: usize,
    /// QoS 1 window of the publisher that stores them.
    pub window: usize,
}

/// Stores R retained messages (QoS 1, so each is acknowledged), then times a new subscriber to `PREFIX/ret/#`
/// from its CONNECT to the last retained message.
///
/// # Errors
/// Connection errors during setup or the run.
pub async fn retained(ctx: &Ctx, p: &Retained) -> Result<Report, ConnError> {
    let probe = ctx.probe();
    let deadline0 = Instant::now() + ctx.timeout;
    let mut publisher = ctx.client("pub").await?;
    let spec = PubSpec {
        id: 0,
        topic: format!("{}/ret", ctx.prefix),
        topic_per_message: true,
        qos: QoS::AtLeastOnce,
        size: p.size,
        count: p.topics,
        window: p.window,
        retain: true,
        rate: None,
    };
    let stored = publish(&mut publisher, &spec, ctx.origin, deadline0).await?;
    publisher.disconnect().await;
    let store_rate = rate(stored.acked, stored.start, Some(stored.end));
    let rss_stored = probe.0.rss_now();

    let t0 = Instant::now();
    let deadline = t0 + ctx.timeout;
    let mut sub = ctx.client("sub").await?;
    sub.subscribe(&format!("{}/ret/#", ctx.prefix), QoS::AtMostOnce, ctx.handshake).await?;
    let mut tracker = Tracker::new(1, p.topics);
    let stats = receive(&mut sub, &mut tracker, p.topics, deadline, ctx.grace, |_, _| {}).await?;
    sub.disconnect().await;
    let wall = t0.elapsed();
    let delivery_ms = stats.last.map_or(f64::NAN, |l| l.duration_since(t0).as_secs_f64() * 1e3);
    let mut errors = Errors::of(&tracker, p.topics);
    // A retained message must arrive with RETAIN set [MQTT-3.3.1-8].
    errors.foreign += stats.not_retained;
    // Each retained message has its own topic, and MQTT orders messages only within a topic: any order is right.
    errors.reordered = 0;
    let mut metrics = vec![
        ("delivery_ms", delivery_ms),
        ("msgs_per_s", rate(tracker.unique(), t0, stats.last)),
        ("store_rate", store_rate),
    ];
    if let (Some(now), Some(before)) = (rss_stored, probe.0.rss0) {
        metrics.push(("bytes_per_retained", (now.saturating_sub(before) * 1024) as f64 / p.topics.max(1) as f64));
    }
    let params = vec![("topics", p.topics.to_string()), ("size", p.size.to_string())];
    let completed = stats.completed && stored.completed;
    Ok(ctx.report("retained", params, ("delivery_ms", "ms"), metrics, errors, &probe, wall, completed))
}

/// Offline-queue parameters.
pub struct Offline {
    /// Messages queued while the subscriber is away.
    pub messages: u64,
    /// QoS of publication and subscription (1 or 2; QoS 0 is not queued offline by default).
    pub qos: QoS,
    /// Payload bytes.
    pub size: usize,
    /// QoS 1/2 window of the publisher.
    pub window: usize,
}

/// A persistent-session subscriber subscribes and leaves; Q messages are published (each acknowledged); the
/// subscriber returns with the same session and is timed from its CONNECT to the last queued message.
///
/// # Errors
/// Connection errors during setup or the run.
pub async fn offline(ctx: &Ctx, p: &Offline) -> Result<Report, ConnError> {
    let probe = ctx.probe();
    let id = format!("{}-persist", ctx.prefix);
    let topic = format!("{}/off", ctx.prefix);
    let (mut sub, _) = Conn::connect(ctx.addr, None, &id, false, 60, ctx.handshake).await?;
    sub.subscribe(&topic, p.qos, ctx.handshake).await?;
    sub.disconnect().await;
    drop(sub);

    let deadline0 = Instant::now() + ctx.timeout;
    let mut publisher = ctx.client("pub").await?;
    let spec = PubSpec {
        id: 0,
        topic,
        topic_per_message: false,
        qos: p.qos,
        size: p.size,
        count: p.messages,
        window: p.window,
        retain: false,
        rate: None,
    };
    let queued = publish(&mut publisher, &spec, ctx.origin, deadline0).await?;
    publisher.disconnect().await;
    let queue_rate = rate(queued.acked, queued.start, Some(queued.end));
    let rss_queued = probe.0.rss_now();

    let t0 = Instant::now();
    let deadline = t0 + ctx.timeout;
    let (mut sub, present) = Conn::connect(ctx.addr, None, &id, false, 60, ctx.handshake).await?;
    if !present {
        return Err(ConnError::Protocol("session not present on reconnect".into()));
    }
    let mut tracker = Tracker::new(1, p.messages);
    let stats = receive(&mut sub, &mut tracker, p.messages, deadline, ctx.grace, |_, _| {}).await?;
    sub.disconnect().await;
    drop(sub);
    // Leave no session behind: connect once more with a clean session.
    if let Ok((mut c, _)) = Conn::connect(ctx.addr, None, &id, true, 60, ctx.handshake).await {
        c.disconnect().await;
    }
    let wall = t0.elapsed();
    let drain_ms = stats.last.map_or(f64::NAN, |l| l.duration_since(t0).as_secs_f64() * 1e3);
    let mut metrics = vec![
        ("drain_ms", drain_ms),
        ("drain_rate", rate(tracker.unique(), t0, stats.last)),
        ("queue_rate", queue_rate),
    ];
    if let (Some(now), Some(before)) = (rss_queued, probe.0.rss0) {
        metrics.push(("bytes_per_queued", (now.saturating_sub(before) * 1024) as f64 / p.messages.max(1) as f64));
    }
    let params =
        vec![("messages", p.messages.to_string()), ("qos", (p.qos as u8).to_string()), ("size", p.size.to_string())];
    let completed = stats.completed && queued.completed;
    Ok(ctx.report(
        "offline",
        params,
        ("drain_ms", "ms"),
        metrics,
        Errors::of(&tracker, p.messages),
        &probe,
        wall,
        completed,
    ))
}
