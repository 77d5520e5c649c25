//! The broker's session state machine and the router behind it, driven by several clients at once with arbitrary
//! sequences of packets, reconnects, takeovers, acknowledgements and the passing of time.
//!
//! Invariants checked after every step:
//! - nothing panics (the harness);
//! - every session's queue and in-flight window stay within their limits, and the memory budget within its own;
//! - a PUBLISH delivered to a client matches a filter that client id has subscribed to at some point (a queued
//!   message may still go out after an UNSUBSCRIBE, so "at some point", not "now").
//!
//! Input: a sequence of steps, each starting with an opcode byte and a client slot, followed by what the step
//! needs (see [`run`]). Raw packet steps hand arbitrary frames to a connected session.
#![no_main]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use broker::budget::Budget;
use broker::queue::OutboxLimits;
use broker::router::{ConnLink, Counters, Router, RouterLimits, SharedStrategy};
use broker::session::auth::NoMethods;
use broker::session::{Capabilities, Context, Flow, Handshake, Session, handshake};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use mqtt_codec::{
    Ack, Connect, List, Packet, PacketId, Properties, ProtocolVersion, Publish, QoS, QosPid, RetainHandling, Subscribe,
    Subscription, SubscriptionOptions, TopicFilter, TopicName, Unsubscribe, Will, decode, frame_len,
};
use tokio::time::Instant;

const SLOTS: usize = 3;
const IDS: [&str; 4] = ["a", "b", "c", ""];
const FILTERS: [&str; 10] = ["#", "t/+", "t/1", "$share/g/t/#", "+/+", "t/#", "$SYS/#", "u", "+", "$share/h/u"];
const TOPICS: [&str; 6] = ["t/1", "t/2", "u", "t", "$SYS/x", "t/1/2"];
const MAX_QUEUED: usize = 8;
const MAX_INFLIGHT: u16 = 4;
const BUDGET: usize = 16 * 1024;

struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> Option<T> {
        let b = usize::from(self.byte()?);
        from.get(b % from.len()).copied()
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
}

fn context() -> Context {
    let outbox = OutboxLimits {
        max_inflight: MAX_INFLIGHT,
        max_queued: MAX_QUEUED,
        max_queued_bytes: 2048,
        queue_qos0_offline: true,
    };
    let limits = RouterLimits {
        outbox,
        max_retained: 16,
        max_retained_bytes: 4096,
        max_pending_wills: 2,
        max_subscriptions: 4,
        shared_strategy: SharedStrategy::RoundRobin,
        disconnect_slow_consumers: false,
    };
    let counters = Arc::new(Counters { budget: Budget::new(BUDGET), ..Counters::default() });
    let router = Arc::new(Mutex::new(Router::new(limits, counters.clone())));
    let mut settings = broker::Settings::default();
    settings.limits.max_packet_size = 4096;
    settings.limits.max_filters_per_subscribe = 4;
    settings.limits.max_sessions = 3;
    settings.mqtt.topic_alias_maximum = 2;
    let caps = Arc::new(Capabilities::from_settings(&settings));
    Context::new(router, counters, caps, Arc::new(NoMethods))
}

fn encode(p: &Packet<'_>, v: ProtocolVersion) -> Option<Bytes> {
    let mut buf = vec![0u8; p.encoded_len(v).ok()?];
    let n = p.encode(v, &mut buf).ok()?;
    buf.truncate(n);
    Some(Bytes::from(buf))
}

fn pid(b: u8) -> Option<PacketId> {
    PacketId::new(u16::from(b).max(1))
}

struct World {
    ctx: Context,
    slots: [Option<Session>; SLOTS],
    next_conn: u64,
    now: Instant,
    /// Every filter (shared ones as their bare filter) each client id has ever sent in a SUBSCRIBE.
    subscribed: HashMap<String, HashSet<String>>,
}

impl World {
    fn close(&mut self, slot: usize) {
        if let Some(s) = self.slots.get_mut(slot).and_then(Option::take) {
            s.close(self.now);
        }
    }

    /// Hands a frame to a slot's session, as the connection does; a protocol error or DISCONNECT ends it.
    fn feed(&mut self, slot: usize, frame: &Bytes) {
        let Some(session) = self.slots.get_mut(slot).and_then(Option::as_mut) else { return };
        if let Ok(Packet::Subscribe(s)) = decode(frame, session.version()) {
            let seen = self.subscribed.entry(session.client_id().to_owned()).or_default();
            for sub in s.subscriptions.iter() {
                let f = sub.filter;
                seen.insert(f.shared().map_or(f, |s| s.filter).as_str().to_owned());
            }
        }
        match session.on_packet(self.now, frame) {
            Ok(Flow::Continue) => session.output().clear(),
            Ok(Flow::Disconnect) | Err(_) => self.close(slot),
        }
    }

    /// Moves deliveries into the output as the connection does, checks each PUBLISH, and acknowledges some.
    fn poll(&mut self, slot: usize, ack: u8) {
        let mut acks = Vec::new();
        {
            let Some(session) = self.slots.get_mut(slot).and_then(Option::as_mut) else { return };
            let version = session.version();
            let mut rounds = 0;
            while session.poll_outbox(self.now).unwrap_or(false) && rounds < 16 {
                rounds += 1;
            }
            let out = Bytes::from(std::mem::take(session.output()));
            let filters = self.subscribed.get(session.client_id());
            let mut rest = &out[..];
            while let Ok(Some(len)) = frame_len(rest, u32::MAX) {
                let (frame, tail) = rest.split_at(len);
                rest = tail;
                match decode(frame, version) {
                    Ok(Packet::Publish(p)) => {
                        let topic = p.topic.as_str();
                        if !topic.is_empty() {
                            let ok = filters.is_some_and(|fs| fs.iter().any(|f| mqtt_codec::matches(f, topic)));
                            assert!(ok, "{topic} delivered to {} subscribed only to {filters:?}", session.client_id());
                        }
                        if let Some(id) = p.qos_pid.packet_id() {
                            acks.push((p.qos_pid.qos(), id));
                        }
                    }
                    Ok(Packet::PubRel(a)) => acks.push((QoS::AtMostOnce, a.packet_id)),
                    Ok(_) => {}
                    Err(e) => panic!("the broker sent a packet it cannot decode: {e:?}"),
                }
            }
            assert!(rest.is_empty(), "a partial packet in the output");
            if ack & 1 == 0 {
                return;
            }
        }
        let version = self.slots.get(slot).and_then(Option::as_ref).map(Session::version);
        let Some(version) = version else { return };
        for (qos, id) in acks {
            let packet = match qos {
                QoS::AtLeastOnce => Packet::PubAck(Ack::new(id)),
                QoS::ExactlyOnce => Packet::PubRec(Ack::new(id)),
                QoS::AtMostOnce => Packet::PubComp(Ack::new(id)),
            };
            if let Some(frame) = encode(&packet, version) {
                self.feed(slot, &frame);
            }
        }
    }

    fn check(&self) {
        let router = self.ctx.router();
        for id in IDS {
            if let Some(s) = router.session(id) {
                let state = s.lock();
                assert!(state.outbox().queued() <= MAX_QUEUED, "queue of {id}: {}", state.outbox().queued());
                assert!(state.outbox().inflight() <= usize::from(MAX_INFLIGHT), "window of {id}");
            }
        }
        assert!(self.ctx.counters.budget.used() <= BUDGET, "budget: {}", self.ctx.counters.budget.used());
    }
}

fn run(data: &[u8]) -> Option<()> {
    let mut input = Input(data);
    let mut w = World {
        ctx: context(),
        slots: [None, None, None],
        next_conn: 1,
        now: Instant::now(),
        subscribed: HashMap::new(),
    };
    for _ in 0..256 {
        let op = input.byte()?;
        let slot = usize::from(input.byte()?) % SLOTS;
        let version = w.slots.get(slot).and_then(Option::as_ref).map_or(ProtocolVersion::V311, Session::version);
        match op % 8 {
            0 => {
                w.close(slot);
                let flags = input.byte()?;
                let client_id = input.pick(&IDS)?;
                let protocol = if flags & 1 == 0 { ProtocolVersion::V311 } else { ProtocolVersion::V5 };
                let will_topic = TopicName::new(input.pick(&TOPICS)?).ok()?;
                let will = (flags & 4 != 0).then_some(Will {
                    topic: will_topic,
                    payload: b"will",
                    qos: QoS::AtMostOnce,
                    retain: flags & 8 != 0,
                    properties: Properties::empty(),
                });
                let connect = Connect {
                    protocol,
                    clean_start: flags & 2 != 0,
                    keep_alive: u16::from(flags >> 4),
                    properties: Properties::empty(),
                    client_id,
                    will,
                    username: None,
                    password: None,
                };
                let frame = encode(&Packet::Connect(connect), protocol)?;
                let link = ConnLink::new(w.next_conn);
                w.next_conn += 1;
                let mut step = handshake(w.ctx.clone(), &frame, link, w.now);
                if let Ok(Handshake::TakingOver(take)) = step {
                    // The connection holding the session was told to close: it ends, as it would, then the new
                    // one attaches.
                    let held = w.slots.iter().position(|s| s.as_ref().is_some_and(|s| s.client_id() == client_id));
                    if let Some(held) = held {
                        w.close(held);
                    }
                    step = take.resume(w.now, false);
                }
                if let Ok(Handshake::Accepted(mut s)) = step {
                    s.output().clear();
                    if let Some(place) = w.slots.get_mut(slot) {
                        *place = Some(*s);
                    }
                }
            }
            1 => {
                let n = 1 + usize::from(input.byte()? % 5);
                let mut subs = Vec::new();
                for _ in 0..n {
                    let opts = input.byte()?;
                    let mut options = SubscriptionOptions::qos(match opts % 3 {
                        0 => QoS::AtMostOnce,
                        1 => QoS::AtLeastOnce,
                        _ => QoS::ExactlyOnce,
                    });
                    if version.is_v5() {
                        options.retain_handling = match (opts >> 2) % 3 {
                            0 => RetainHandling::SendAtSubscribe,
                            1 => RetainHandling::SendAtNewSubscribe,
                            _ => RetainHandling::DoNotSend,
                        };
                        options.no_local = opts & 0x20 != 0;
                        options.retain_as_published = opts & 0x40 != 0;
                    }
                    subs.push(Subscription { filter: TopicFilter::new(input.pick(&FILTERS)?).ok()?, options });
                }
                let packet = Subscribe {
                    packet_id: pid(input.byte()?)?,
                    properties: Properties::empty(),
                    subscriptions: List::from_slice(&subs),
                };
                let frame = encode(&Packet::Subscribe(packet), version)?;
                w.feed(slot, &frame);
            }
            2 => {
                let filters = [TopicFilter::new(input.pick(&FILTERS)?).ok()?];
                let packet = Unsubscribe {
                    packet_id: pid(input.byte()?)?,
                    properties: Properties::empty(),
                    filters: List::from_slice(&filters),
                };
                let frame = encode(&Packet::Unsubscribe(packet), version)?;
                w.feed(slot, &frame);
            }
            3 => {
                let flags = input.byte()?;
                let topic = TopicName::new(input.pick(&TOPICS)?).ok()?;
                let len = usize::from(input.byte()?) * 8;
                let payload = vec![flags; len];
                let qos_pid = match flags % 3 {
                    0 => QosPid::AtMostOnce,
                    1 => QosPid::AtLeastOnce(pid(input.byte()?)?),
                    _ => QosPid::ExactlyOnce(pid(input.byte()?)?),
                };
                let p = Publish {
                    dup: false,
                    qos_pid,
                    retain: flags & 4 != 0,
                    topic,
                    properties: Properties::empty(),
                    payload: &payload,
                };
                let frame = encode(&Packet::Publish(p), version)?;
                w.feed(slot, &frame);
            }
            4 => {
                let len = usize::from(input.byte()?);
                let raw = input.bytes(len);
                if let Ok(Some(n)) = frame_len(raw, 4096) {
                    let frame = Bytes::copy_from_slice(raw.get(..n)?);
                    w.feed(slot, &frame);
                }
            }
            5 => {
                let ack = input.byte()?;
                w.poll(slot, ack);
            }
            6 => w.close(slot),
            _ => {
                let secs = u64::from(input.byte()?);
                w.now += Duration::from_secs(secs);
                w.ctx.router().tick(w.now);
                for i in 0..SLOTS {
                    let expired =
                        w.slots.get_mut(i).and_then(Option::as_mut).is_some_and(|s| s.on_timeout(w.now).is_err());
                    if expired {
                        w.close(i);
                    }
                }
            }
        }
        w.check();
    }
    for i in 0..SLOTS {
        w.close(i);
    }
    w.check();
    Some(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});
