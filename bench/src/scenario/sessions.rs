//! Many persistent sessions with queued messages, for restart benchmarks: `fill` creates the sessions and fills
//! their queues while they are away; `drain` (typically after the broker restarted) brings them back and checks that
//! each gets its whole queue, once and in order.
//!
//! Session `N` has the client id `ID-N` and subscribes to `ID/s/N`; its messages carry stream 0 and the sequence
//! numbers 0..messages, so a message routed to the wrong session shows as a duplicate there.

use mqtt_codec::QoS;
use tokio::time::Instant;

use super::throughput::join;
use super::{Ctx, PubSpec, publish, rate, receive};
use crate::check::{Errors, Tracker};
use crate::conn::{Conn, ConnError};
use crate::report::Report;

/// Sessions created at the same time while filling.
const SUBSCRIBE_CONCURRENCY: usize = 50;

/// Fill parameters.
pub struct Fill {
    /// Persistent sessions.
    pub sessions: u32,
    /// Messages queued for each session.
    pub messages: u64,
    /// Publisher connections sharing the work.
    pub publishers: u32,
    /// QoS of subscriptions and publications (1 or 2: QoS 0 is not queued offline by default).
    pub qos: QoS,
    /// Payload bytes.
    pub size: usize,
    /// QoS 1/2 window per publisher.
    pub window: usize,
    /// Client id and topic prefix of the sessions (the same for `drain`).
    pub id: String,
}

/// Drain parameters.
pub struct Drain {
    /// Persistent sessions that return.
    pub sessions: u32,
    /// Messages each one expects.
    pub messages: u64,
    /// As [`Fill::id`].
    pub id: String,
}

fn client_id(id: &str, n: u32) -> String {
    format!("{id}-{n}")
}

fn topic(id: &str, n: u32) -> String {
    format!("{id}/s/{n}")
}

/// Creates the sessions (each subscribes and disconnects), then publishes `messages` to each session's topic; every
/// publication is acknowledged before the run ends. The headline is acknowledged messages per second.
///
/// # Errors
/// Connection errors during setup or the run.
pub async fn fill(ctx: &Ctx, p: &Fill) -> Result<Report, ConnError> {
    let probe = ctx.probe();
    let t0 = Instant::now();
    let ids: Vec<u32> = (0..p.sessions).collect();
    for chunk in ids.chunks(SUBSCRIBE_CONCURRENCY) {
        let mut tasks = Vec::new();
        for &n in chunk {
            let (addr, wait, qos) = (ctx.addr, ctx.handshake, p.qos);
            let (cid, filter) = (client_id(&p.id, n), topic(&p.id, n));
            tasks.push(tokio::spawn(async move {
                let (mut c, _) = Conn::connect(addr, None, &cid, false, 60, wait).await?;
                c.subscribe(&filter, qos, wait).await?;
                c.disconnect().await;
                Ok(())
            }));
        }
        for t in tasks {
            join(t).await?;
        }
    }
    let subscribed = t0.elapsed();

    let t1 = Instant::now();
    let deadline = t1 + ctx.timeout;
    let mut tasks = Vec::new();
    for j in 0..p.publishers.max(1) {
        let mut conn = ctx.client(&format!("fill{j}")).await?;
        let mine: Vec<u32> = (j..p.sessions).step_by(usize::try_from(p.publishers.max(1)).unwrap_or(1)).collect();
        let spec = PubSpec {
            id: 0,
            topic: String::new(),
            topic_per_message: false,
            qos: p.qos,
            size: p.size,
            count: p.messages,
            window: p.window,
            retain: false,
            rate: None,
        };
        let (id, origin) = (p.id.clone(), ctx.origin);
        tasks.push(tokio::spawn(async move {
            let (mut acked, mut completed) = (0u64, true);
            for n in mine {
                let spec = PubSpec { topic: topic(&id, n), ..spec.clone() };
                let s = publish(&mut conn, &spec, origin, deadline).await?;
                acked += s.acked;
                if !s.completed {
                    completed = false;
                    break;
                }
            }
            conn.disconnect().await;
            Ok((acked, completed))
        }));
    }
    let (mut acked, mut completed) = (0u64, true);
    for t in tasks {
        let (a, c) = join(t).await?;
        acked += a;
        completed &= c;
    }
    let end = Instant::now();
    let expected = u64::from(p.sessions) * p.messages;
    let metrics = vec![
        ("fill_rate", rate(acked, t1, Some(end))),
        ("acked", acked as f64),
        ("subscribe_ms", subscribed.as_secs_f64() * 1e3),
    ];
    let params = vec![
        ("sessions", p.sessions.to_string()),
        ("messages", p.messages.to_string()),
        ("publishers", p.publishers.to_string()),
        ("qos", (p.qos as u8).to_string()),
        ("size", p.size.to_string()),
        ("window", p.window.to_string()),
    ];
    let errors = Errors { lost: expected.saturating_sub(acked), ..Errors::default() };
    Ok(ctx.report("fill", params, ("fill_rate", "msg/s"), metrics, errors, &probe, t0.elapsed(), completed))
}

/// What one returning session saw.
struct Served {
    connacked: Instant,
    last: Option<Instant>,
    completed: bool,
    errors: Errors,
    unique: u64,
}

/// Every session connects at once with clean session 0 (a session that is not present counts its whole queue as
/// lost) and reads until it has its `messages`. Headline: ms from the first CONNECT to the last message of all.
///
/// # Errors
/// Connection errors.
pub async fn drain(ctx: &Ctx, p: &Drain) -> Result<Report, ConnError> {
    let probe = ctx.probe();
    let t0 = Instant::now();
    let deadline = t0 + ctx.timeout;
    let mut tasks = Vec::new();
    for n in 0..p.sessions {
        let (addr, wait, grace, messages) = (ctx.addr, ctx.timeout, ctx.grace, p.messages);
        let cid = client_id(&p.id, n);
        tasks.push(tokio::spawn(async move {
            let (mut c, present) = Conn::connect(addr, None, &cid, false, 60, wait).await?;
            let connacked = Instant::now();
            if !present {
                c.disconnect().await;
                let errors = Errors { lost: messages, ..Errors::default() };
                return Ok(Served { connacked, last: None, completed: false, errors, unique: 0 });
            }
            let mut tracker = Tracker::new(1, messages);
            let stats = receive(&mut c, &mut tracker, messages, deadline, grace, |_, _| {}).await?;
            c.disconnect().await;
            let errors = Errors::of(&tracker, messages);
            Ok(Served { connacked, last: stats.last, completed: stats.completed, errors, unique: tracker.unique() })
        }));
    }
    let (mut errors, mut completed, mut unique) = (Errors::default(), true, 0u64);
    let (mut connacked, mut last) = (t0, None::<Instant>);
    for t in tasks {
        let s = join(t).await?;
        errors.add(s.errors);
        completed &= s.completed;
        unique += s.unique;
        connacked = connacked.max(s.connacked);
        last = last.max(s.last);
    }
    let ms = |t: Option<Instant>| t.map_or(f64::NAN, |t| t.duration_since(t0).as_secs_f64() * 1e3);
    let metrics = vec![
        ("drain_ms", ms(last)),
        ("connected_ms", ms(Some(connacked))),
        ("drain_rate", rate(unique, t0, last)),
        ("received", unique as f64),
    ];
    let params = vec![("sessions", p.sessions.to_string()), ("messages", p.messages.to_string())];
    Ok(ctx.report("drain", params, ("drain_ms", "ms"), metrics, errors, &probe, t0.elapsed(), completed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_have_distinct_ids_and_topics() {
        assert_eq!(client_id("pq", 7), "pq-7");
        assert_eq!(topic("pq", 7), "pq/s/7");
        assert_ne!(topic("pq", 1), topic("pq", 10));
    }
}
