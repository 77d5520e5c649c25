//! Throughput: fan-in (P publishers -> 1 wildcard subscriber) and fan-out (1 publisher -> S subscribers).

use mqtt_codec::QoS;
use tokio::time::Instant;

use super::{Ctx, PubSpec, PubStats, RecvStats, publish, rate, receive};
use crate::check::{Errors, Tracker};
use crate::conn::{Conn, ConnError};
use crate::report::Report;

/// Fan-in parameters.
pub struct FanIn {
    /// Publishers.
    pub publishers: u32,
    /// QoS of publications and of the subscription.
    pub qos: QoS,
    /// Payload bytes.
    pub size: usize,
    /// Messages per publisher.
    pub count: u64,
    /// QoS 1/2 window per publisher.
    pub window: usize,
    /// The subscriber connects with clean session 0 (client id `PREFIX-sub`), so a broker with persistence stores
    /// every message it routes to it.
    pub persistent: bool,
}

/// P publishers publish to `PREFIX/in/P`; one subscriber holds `PREFIX/in/+`. The rate is distinct messages
/// received per second, from the first publish to the last arrival.
///
/// # Errors
/// Connection errors during setup or the run.
pub async fn fan_in(ctx: &Ctx, p: &FanIn) -> Result<Report, ConnError> {
    let probe = ctx.probe();
    let mut sub = if p.persistent {
        Conn::connect(ctx.addr, None, &format!("{}-sub", ctx.prefix), false, 60, ctx.handshake).await?.0
    } else {
        ctx.client("sub").await?
    };
    sub.subscribe(&format!("{}/in/+", ctx.prefix), p.qos, ctx.handshake).await?;
    let mut pubs = Vec::new();
    for i in 0..p.publishers {
        pubs.push(ctx.client(&format!("pub{i}")).await?);
    }
    let t0 = Instant::now();
    let deadline = t0 + ctx.timeout;
    let expected = u64::from(p.publishers) * p.count;
    let grace = ctx.grace;
    let publishers = usize::try_from(p.publishers).unwrap_or(0);
    let count = p.count;
    let receiver = tokio::spawn(async move {
        let mut tracker = Tracker::new(publishers, count);
        let r = receive(&mut sub, &mut tracker, expected, deadline, grace, |_, _| {}).await;
        sub.disconnect().await;
        r.map(|s| (s, tracker))
    });
    let mut tasks = Vec::new();
    for (i, mut conn) in pubs.into_iter().enumerate() {
        let spec = PubSpec {
            id: u32::try_from(i).unwrap_or(u32::MAX),
            topic: format!("{}/in/{i}", ctx.prefix),
            topic_per_message: false,
            qos: p.qos,
            size: p.size,
            count: p.count,
            window: p.window,
            retain: false,
            rate: None,
        };
        let origin = ctx.origin;
        tasks.push(tokio::spawn(async move {
            let r = publish(&mut conn, &spec, origin, deadline).await;
            conn.disconnect().await;
            r
        }));
    }
    let mut sent = Vec::new();
    for t in tasks {
        sent.push(join(t).await?);
    }
    let (stats, tracker) = join(receiver).await?;
    let wall = t0.elapsed();
    let msg_rate = rate(tracker.unique(), t0, stats.last);
    let pub_rate = publish_rate(&sent, t0);
    let metrics = vec![
        ("rate", msg_rate),
        ("mbyte_per_s", msg_rate * p.size as f64 / 1e6),
        ("publish_rate", pub_rate),
        ("received", tracker.unique() as f64),
    ];
    let params = vec![
        ("publishers", p.publishers.to_string()),
        ("qos", (p.qos as u8).to_string()),
        ("size", p.size.to_string()),
        ("count", p.count.to_string()),
        ("window", p.window.to_string()),
        ("persistent", u8::from(p.persistent).to_string()),
    ];
    let completed = stats.completed && sent.iter().all(|s| s.completed);
    Ok(ctx.report(
        "fan-in",
        params,
        ("rate", "msg/s"),
        metrics,
        Errors::of(&tracker, expected),
        &probe,
        wall,
        completed,
    ))
}

/// Fan-out parameters.
pub struct FanOut {
    /// Subscribers.
    pub subscribers: u32,
    /// QoS of publications and subscriptions.
    pub qos: QoS,
    /// Payload bytes.
    pub size: usize,
    /// Messages published.
    pub count: u64,
    /// QoS 1/2 window of the publisher.
    pub window: usize,
}

/// One publisher publishes to `PREFIX/out`; S subscribers each hold it. The rate is deliveries (messages times
/// subscribers) per second, from the first publish to the last arrival at any subscriber.
///
/// # Errors
/// Connection errors during setup or the run.
pub async fn fan_out(ctx: &Ctx, p: &FanOut) -> Result<Report, ConnError> {
    let probe = ctx.probe();
    let topic = format!("{}/out", ctx.prefix);
    let mut subs = Vec::new();
    for i in 0..p.subscribers {
        let mut c = ctx.client(&format!("sub{i}")).await?;
        c.subscribe(&topic, p.qos, ctx.handshake).await?;
        subs.push(c);
    }
    let mut publisher = ctx.client("pub").await?;
    let t0 = Instant::now();
    let deadline = t0 + ctx.timeout;
    let (count, grace) = (p.count, ctx.grace);
    let mut receivers = Vec::new();
    for mut sub in subs {
        receivers.push(tokio::spawn(async move {
            let mut tracker = Tracker::new(1, count);
            let r = receive(&mut sub, &mut tracker, count, deadline, grace, |_, _| {}).await;
            sub.disconnect().await;
            r.map(|s| (s, tracker))
        }));
    }
    let spec = PubSpec {
        id: 0,
        topic,
        topic_per_message: false,
        qos: p.qos,
        size: p.size,
        count: p.count,
        window: p.window,
        retain: false,
        rate: None,
    };
    let sent = publish(&mut publisher, &spec, ctx.origin, deadline).await?;
    publisher.disconnect().await;
    let mut errors = Errors::default();
    let mut last: Option<Instant> = None;
    let mut delivered = 0u64;
    let mut completed = sent.completed;
    for r in receivers {
        let (s, t): (RecvStats, Tracker) = join(r).await?;
        errors.add(Errors::of(&t, count));
        delivered += t.unique();
        last = last.max(s.last);
        completed &= s.completed;
    }
    let wall = t0.elapsed();
    let deliveries = rate(delivered, t0, last);
    let metrics = vec![
        ("deliveries_per_s", deliveries),
        ("publish_rate", publish_rate(&[sent], t0)),
        ("delivered", delivered as f64),
    ];
    let params = vec![
        ("subscribers", p.subscribers.to_string()),
        ("qos", (p.qos as u8).to_string()),
        ("size", p.size.to_string()),
        ("count", p.count.to_string()),
        ("window", p.window.to_string()),
    ];
    Ok(ctx.report("fan-out", params, ("deliveries_per_s", "deliveries/s"), metrics, errors, &probe, wall, completed))
}

/// Messages per second the publishers wrote, over the slowest one's sending time.
fn publish_rate(sent: &[PubStats], t0: Instant) -> f64 {
    let n: u64 = sent.iter().map(|s| s.sent).sum();
    rate(n, t0, sent.iter().map(|s| s.end).max())
}

/// Joins a task, turning a panic into an error.
pub(super) async fn join<T>(t: tokio::task::JoinHandle<Result<T, ConnError>>) -> Result<T, ConnError> {
    t.await.map_err(|e| ConnError::Protocol(format!("task failed: {e}")))?
}
