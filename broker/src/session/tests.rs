//! Sessions driven through frames, as the connection drives them, with no socket.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use mqtt_codec::{
    Connect, List, Packet, PacketId, Properties, Property, ProtocolVersion, Publish, QoS, QosPid, Subscribe,
    Subscription, SubscriptionOptions, TopicFilter, TopicName, decode,
};
use tokio::time::Instant;

use super::auth::NoMethods;
use super::{Capabilities, Context, Handshake, Session, handshake};
use crate::queue::{BACKLOG_MESSAGES, OutboxLimits};
use crate::router::{ConnLink, Counters, Router, RouterLimits, SharedStrategy};

fn context() -> Context {
    let outbox = OutboxLimits {
        max_inflight: 64,
        max_queued: 100 * BACKLOG_MESSAGES,
        max_queued_bytes: 1 << 30,
        queue_qos0_offline: false,
    };
    let limits = RouterLimits {
        outbox,
        max_retained: 10,
        max_retained_bytes: 0,
        max_pending_wills: 0,
        max_subscriptions: 10,
        shared_strategy: SharedStrategy::RoundRobin,
        disconnect_slow_consumers: false,
    };
    let counters = Arc::new(Counters::default());
    let router = Arc::new(Mutex::new(Router::new(limits, counters.clone())));
    let caps = Arc::new(Capabilities::from_settings(&crate::Settings::default()));
    Context { router, counters, caps, auth: Arc::new(NoMethods), gate: None, durable: None }
}

fn frame(packet: &Packet<'_>) -> Bytes {
    frame_in(packet, ProtocolVersion::V311)
}

fn frame_in(packet: &Packet<'_>, version: ProtocolVersion) -> Bytes {
    let mut out = Vec::new();
    super::encode_into(&mut out, packet, version).unwrap();
    Bytes::from(out)
}

fn connect(ctx: &Context, client_id: &str, conn: u64) -> Session {
    connect_in(ctx, client_id, conn, ProtocolVersion::V311)
}

fn connect_in(ctx: &Context, client_id: &str, conn: u64, protocol: ProtocolVersion) -> Session {
    let connect = Connect {
        protocol,
        clean_start: true,
        keep_alive: 0,
        properties: Properties::empty(),
        client_id,
        will: None,
        username: None,
        password: None,
    };
    let frame = frame_in(&Packet::Connect(connect), protocol);
    match handshake(ctx.clone(), &frame, ConnLink::new(conn), Instant::now()).unwrap() {
        Handshake::Accepted(session) => *session,
        _ => panic!("{client_id} not accepted"),
    }
}

fn subscribe(s: &mut Session, filter: &str) {
    let subs = [Subscription {
        filter: TopicFilter::new(filter).unwrap(),
        options: SubscriptionOptions::qos(QoS::AtMostOnce),
    }];
    let packet = Subscribe {
        packet_id: PacketId::new(1).unwrap(),
        properties: Properties::empty(),
        subscriptions: List::from_slice(&subs),
    };
    s.on_packet(Instant::now(), &frame(&Packet::Subscribe(packet))).unwrap();
    s.output().clear();
}

fn publish(s: &mut Session, topic: &str) {
    let p = Publish {
        dup: false,
        qos_pid: QosPid::AtMostOnce,
        retain: false,
        topic: TopicName::new(topic).unwrap(),
        properties: Properties::empty(),
        payload: b"x",
    };
    s.on_packet(Instant::now(), &frame(&Packet::Publish(p))).unwrap();
}

#[test]
fn a_publisher_waits_for_a_backlogged_subscriber_unless_it_is_backlogged_itself() {
    let ctx = context();
    let mut a = connect(&ctx, "a", 1);
    let mut b = connect(&ctx, "b", 2);
    subscribe(&mut b, "to/b");
    for _ in 0..BACKLOG_MESSAGES {
        publish(&mut a, "to/b");
    }
    assert!(a.take_backlogged().is_none(), "b is not behind yet");
    publish(&mut a, "to/b");
    let slow = a.take_backlogged().expect("b is behind");
    assert!(Arc::ptr_eq(&slow, b.handle()));
    assert!(a.take_backlogged().is_none(), "told once per publish that found the backlog");

    // b publishes to a, which falls behind as well. Each would wait for the other while neither sends: a client
    // that is behind itself does not wait.
    subscribe(&mut a, "to/a");
    for _ in 0..=BACKLOG_MESSAGES {
        publish(&mut b, "to/a");
        assert!(b.take_backlogged().is_none(), "b is behind itself");
    }
    assert!(a.handle().lock().outbox().is_backlogged());
    publish(&mut a, "to/b");
    assert!(a.take_backlogged().is_none(), "a is behind itself");

    // b catches up; its publications now wait for a.
    while b.poll_outbox(Instant::now()).unwrap() {
        b.output().clear();
    }
    assert!(!b.handle().lock().holds_publishers());
    assert!(!b.output().is_empty(), "b's deliveries went out");
    publish(&mut b, "to/a");
    assert!(b.take_backlogged().is_some_and(|s| Arc::ptr_eq(&s, a.handle())));
}

#[test]
fn a_client_subscribed_to_its_own_topic_never_waits_for_itself() {
    let ctx = context();
    let mut a = connect(&ctx, "self", 1);
    subscribe(&mut a, "loop");
    for _ in 0..=BACKLOG_MESSAGES {
        publish(&mut a, "loop");
    }
    assert!(a.handle().lock().outbox().is_backlogged());
    assert!(a.take_backlogged().is_none());
}

/// Every PUBLISH the session has ready, decoded: (packet id, Subscription Identifiers, payload).
fn deliveries(s: &mut Session) -> Vec<(Option<u16>, Vec<u32>, Vec<u8>)> {
    while s.poll_outbox(Instant::now()).unwrap() {}
    let out = Bytes::from(std::mem::take(s.output()));
    let mut rest = out.clone();
    let mut got = Vec::new();
    while !rest.is_empty() {
        let len = mqtt_codec::frame_len(&rest, u32::MAX).unwrap().unwrap();
        let frame = rest.split_to(len);
        let Ok(Packet::Publish(p)) = decode(&frame, s.version()) else { panic!("not a publish") };
        let ids = p.properties.iter().filter_map(|p| match p {
            Property::SubscriptionIdentifier(id) => Some(id),
            _ => None,
        });
        got.push((p.qos_pid.packet_id().map(PacketId::get), ids.collect(), p.payload.to_vec()));
    }
    got
}

#[test]
fn one_message_to_several_subscribers_is_right_for_each() {
    let ctx = context();
    let mut v3 = connect_in(&ctx, "v3", 1, ProtocolVersion::V311);
    let mut v5 = connect_in(&ctx, "v5", 2, ProtocolVersion::V5);
    let mut v5_id = connect_in(&ctx, "v5-id", 3, ProtocolVersion::V5);
    let mut publisher = connect(&ctx, "pub", 4);
    let opts = SubscriptionOptions::qos(QoS::AtLeastOnce);
    for (s, id) in [(&mut v3, None), (&mut v5, None), (&mut v5_id, Some(7))] {
        let subs = [Subscription { filter: TopicFilter::new("fan/+").unwrap(), options: opts }];
        let list = id.map(Property::SubscriptionIdentifier);
        let list: Vec<Property<'_>> = list.into_iter().collect();
        let packet = Subscribe {
            packet_id: PacketId::new(1).unwrap(),
            properties: if s.version().is_v5() { Properties::from_list(&list) } else { Properties::empty() },
            subscriptions: List::from_slice(&subs),
        };
        s.on_packet(Instant::now(), &frame_in(&Packet::Subscribe(packet), s.version())).unwrap();
        s.output().clear();
    }
    // A few deliveries first, so the packet identifiers differ between the subscribers.
    for _ in 0..2 {
        publish(&mut publisher, "fan/warm-up");
    }
    v3.handle()
        .lock()
        .outbox_mut()
        .push(
            crate::queue::Delivery {
                msg: Arc::new(crate::message::Message::from_parts("fan/x", b"only v3", QoS::AtLeastOnce, false)),
                qos: QoS::AtLeastOnce,
                retain: false,
                sub_ids: Box::default(),
            },
            true,
        )
        .unwrap();
    for payload in [&b"one"[..], b"two"] {
        let p = Publish {
            dup: false,
            qos_pid: QosPid::AtLeastOnce(PacketId::new(9).unwrap()),
            retain: false,
            topic: TopicName::new("fan/out").unwrap(),
            properties: Properties::empty(),
            payload,
        };
        publisher.on_packet(Instant::now(), &frame(&Packet::Publish(p))).unwrap();
    }
    // The warm-up went at QoS 0 (as published); the identifiers of the QoS 1 deliveries differ per subscriber.
    let d = |id: Option<u16>, ids: &[u32], payload: &[u8]| (id, ids.to_vec(), payload.to_vec());
    assert_eq!(
        deliveries(&mut v3),
        vec![
            d(None, &[], b"x"),
            d(None, &[], b"x"),
            d(Some(1), &[], b"only v3"),
            d(Some(2), &[], b"one"),
            d(Some(3), &[], b"two")
        ]
    );
    assert_eq!(
        deliveries(&mut v5),
        vec![d(None, &[], b"x"), d(None, &[], b"x"), d(Some(1), &[], b"one"), d(Some(2), &[], b"two")]
    );
    assert_eq!(
        deliveries(&mut v5_id),
        vec![d(None, &[7], b"x"), d(None, &[7], b"x"), d(Some(1), &[7], b"one"), d(Some(2), &[7], b"two")]
    );
}

#[test]
fn a_topic_at_the_most_levels_allowed_is_matched_on_a_small_stack() {
    // Matching recurses once per level: the most levels allowed must leave a wide margin under a tokio worker's
    // 2 MiB, even in a debug build.
    let levels = crate::config::MAX_TOPIC_LEVELS;
    assert_eq!(crate::Settings::default().mqtt.max_topic_levels, levels);
    let run = std::thread::Builder::new().stack_size(768 * 1024).spawn(move || {
        let ctx = context();
        let mut sub = connect(&ctx, "deep-sub", 1);
        let deep = vec!["a"; levels].join("/");
        let plus = vec!["+"; levels].join("/");
        subscribe(&mut sub, "#");
        subscribe(&mut sub, &plus);
        subscribe(&mut sub, &deep);
        let mut publisher = connect(&ctx, "deep-pub", 2);
        publish(&mut publisher, &deep);
        sub.poll_outbox(Instant::now()).unwrap();
        let out = sub.output().clone();
        let received = decode(&out, ProtocolVersion::V311).unwrap();
        assert!(matches!(received, Packet::Publish(p) if p.topic.as_str() == deep));
    });
    run.unwrap().join().expect("matched without overflowing the stack");
}

#[test]
fn an_ack_of_the_other_qos_flow_is_a_protocol_error_and_one_for_an_id_not_in_flight_is_not() {
    use mqtt_codec::Ack;
    let ack = |s: &mut Session, packet: fn(Ack<'static>) -> Packet<'static>, id: u16| {
        s.on_packet(Instant::now(), &frame(&packet(Ack::new(PacketId::new(id).unwrap()))))
    };
    let in_flight = |ctx: &Context, id: &str| {
        let mut s = connect(ctx, id, 1);
        s.output().clear();
        let push = |qos| crate::queue::Delivery {
            msg: Arc::new(crate::message::Message::from_parts("acks", b"x", qos, false)),
            qos,
            retain: false,
            sub_ids: Box::default(),
        };
        let mut state = s.handle().lock();
        state.outbox_mut().push(push(QoS::AtLeastOnce), true).unwrap();
        state.outbox_mut().push(push(QoS::ExactlyOnce), true).unwrap();
        drop(state);
        assert_eq!(deliveries(&mut s).iter().map(|d| d.0).collect::<Vec<_>>(), vec![Some(1), Some(2)]);
        s
    };
    let ctx = context();
    let mut s = in_flight(&ctx, "pubcomp-for-qos1");
    assert!(ack(&mut s, Packet::PubComp, 1).is_err(), "PUBCOMP for the QoS 1 message");
    let mut s = in_flight(&ctx, "pubrec-for-qos1");
    assert!(ack(&mut s, Packet::PubRec, 1).is_err(), "PUBREC for the QoS 1 message");
    let mut s = in_flight(&ctx, "puback-for-qos2");
    assert!(ack(&mut s, Packet::PubAck, 2).is_err(), "PUBACK for the QoS 2 message");

    let mut s = in_flight(&ctx, "harmless");
    for (packet, id) in
        [(Packet::PubAck as fn(_) -> _, 1), (Packet::PubAck, 1), (Packet::PubComp, 1), (Packet::PubAck, 7)]
    {
        assert!(ack(&mut s, packet, id).is_ok(), "an id not in flight (any more) is harmless");
    }
    ack(&mut s, Packet::PubRec, 2).unwrap();
    assert!(ack(&mut s, Packet::PubAck, 2).is_err(), "PUBACK for the QoS 2 message awaiting PUBCOMP");
}

#[test]
fn a_connack_sheds_the_properties_a_client_can_do_without_first() {
    use mqtt_codec::{ConnAck, ReasonCode};
    let all = [
        Property::ResponseInformation("responses/a-long-prefix/for-this-client"),
        Property::TopicAliasMaximum(32),
        Property::SharedSubscriptionAvailable(false),
        Property::SessionExpiryInterval(60),
        Property::MaximumPacketSize(1 << 20),
        Property::ReceiveMaximum(100),
        Property::MaximumQoS(QoS::AtLeastOnce),
        Property::ServerKeepAlive(30),
        Property::AssignedClientIdentifier("auto-0123456789abcdef"),
    ];
    let len = |props: &[Property<'_>]| {
        let c = ConnAck { session_present: false, code: ReasonCode::Success, properties: Properties::from_list(props) };
        Packet::ConnAck(c).encoded_len(ProtocolVersion::V5).unwrap()
    };
    // For each limit, exactly the longest prefix of least-needed properties goes.
    let essential = &all[7..];
    for shed in 0..=7 {
        let max = u32::try_from(len(&all[shed..])).unwrap();
        let mut props = all.to_vec();
        assert!(super::connect::fit_connack(&mut props, false, ProtocolVersion::V5, max));
        assert_eq!(props, all[shed..], "limit {max}");
    }
    let mut props = all.to_vec();
    let max = u32::try_from(len(essential)).unwrap() - 1;
    assert!(!super::connect::fit_connack(&mut props, false, ProtocolVersion::V5, max), "the essentials never go");
}

/// A context whose router holds up to `max_retained` retained messages and queues up to `max_queued` messages per
/// session, and whose SUBSCRIBE carries at most `max_filters` filters.
fn context_with(max_retained: usize, max_queued: usize, max_filters: usize) -> Context {
    context_with_budget(max_retained, max_queued, max_filters, 0)
}

/// As [`context_with`], with a memory budget of `budget` bytes (0: none).
fn context_with_budget(max_retained: usize, max_queued: usize, max_filters: usize, budget: usize) -> Context {
    let outbox = OutboxLimits { max_inflight: 64, max_queued, max_queued_bytes: 1 << 30, queue_qos0_offline: false };
    let limits = RouterLimits {
        outbox,
        max_retained,
        max_retained_bytes: 0,
        max_pending_wills: 0,
        max_subscriptions: 10,
        shared_strategy: SharedStrategy::RoundRobin,
        disconnect_slow_consumers: false,
    };
    let counters = Arc::new(Counters { budget: crate::budget::Budget::new(budget), ..Counters::default() });
    let router = Arc::new(Mutex::new(Router::new(limits, counters.clone())));
    let caps = Capabilities {
        max_filters_per_subscribe: max_filters,
        ..Capabilities::from_settings(&crate::Settings::default())
    };
    Context { router, counters, caps: Arc::new(caps), auth: Arc::new(NoMethods), gate: None, durable: None }
}

fn subscribe_packet(s: &mut Session, filters: &[&str]) -> Result<super::Flow, super::ProtocolError> {
    let subs: Vec<Subscription<'_>> = filters
        .iter()
        .map(|f| Subscription {
            filter: TopicFilter::new(f).unwrap(),
            options: SubscriptionOptions::qos(QoS::AtMostOnce),
        })
        .collect();
    let packet = Subscribe {
        packet_id: PacketId::new(1).unwrap(),
        properties: Properties::empty(),
        subscriptions: List::from_slice(&subs),
    };
    s.on_packet(Instant::now(), &frame_in(&Packet::Subscribe(packet), s.version()))
}

fn publish_retained(s: &mut Session, topic: &str) {
    let p = Publish {
        dup: false,
        qos_pid: QosPid::AtMostOnce,
        retain: true,
        topic: TopicName::new(topic).unwrap(),
        properties: Properties::empty(),
        payload: topic.as_bytes(),
    };
    s.on_packet(Instant::now(), &frame(&Packet::Publish(p))).unwrap();
}

/// Drives the connection's loop: each turn moves what is ready into the output, as the connection does, and a
/// reader takes it. Returns the payloads of every PUBLISH sent, with the largest queue length seen.
fn read_all(s: &mut Session) -> (Vec<Vec<u8>>, usize) {
    let mut got = Vec::new();
    let mut longest = 0;
    for _ in 0..100_000 {
        let more = s.poll_outbox(Instant::now()).unwrap();
        longest = longest.max(s.handle().lock().outbox().queued());
        let mut rest = Bytes::from(std::mem::take(s.output()));
        while !rest.is_empty() {
            let len = mqtt_codec::frame_len(&rest, u32::MAX).unwrap().unwrap();
            let frame = rest.split_to(len);
            if let Ok(Packet::Publish(p)) = decode(&frame, s.version()) {
                got.push(p.payload.to_vec());
            }
        }
        if !more {
            return (got, longest);
        }
    }
    panic!("the session never ran out of things to send");
}

#[test]
fn a_subscribe_with_more_filters_than_the_cap_closes_the_connection_with_quota_exceeded() {
    let ctx = context_with(10, 100, 3);
    let mut s = connect_in(&ctx, "many", 1, ProtocolVersion::V5);
    assert!(subscribe_packet(&mut s, &["a", "b", "c"]).is_ok(), "at the cap");
    s.output().clear();
    let err = subscribe_packet(&mut s, &["d", "e", "f", "g"]).unwrap_err();
    assert_eq!(err.reason_code(), mqtt_codec::ReasonCode::QuotaExceeded);
    assert!(s.output().is_empty(), "no SUBACK");
    assert_eq!(s.handle().lock().subscriptions().len(), 3, "none of the refused packet's filters subscribed");
}

#[test]
fn a_filter_repeated_in_one_subscribe_counts_once_and_gets_the_retained_messages_once() {
    let ctx = context_with(10, 100, 1000);
    let mut p = connect(&ctx, "retainer", 1);
    for t in ["r/1", "r/2", "r/3"] {
        publish_retained(&mut p, t);
    }
    let mut s = connect(&ctx, "repeater", 2);
    s.output().clear();
    // Eleven times the same filter, with a subscription cap of ten.
    subscribe_packet(&mut s, &["r/#"; 11]).unwrap();
    let suback = std::mem::take(s.output());
    let ack = match decode(&suback, s.version()) {
        Ok(Packet::SubAck(ack)) => ack,
        other => panic!("not a SUBACK: {other:?}"),
    };
    assert!(ack.codes.iter().all(|c| !c.is_error()), "{:?}", ack.codes);
    assert_eq!(s.handle().lock().subscriptions().len(), 1);
    let (got, _) = read_all(&mut s);
    assert_eq!(got, vec![b"r/1".to_vec(), b"r/2".to_vec(), b"r/3".to_vec()]);
}

#[test]
fn retained_messages_of_a_wide_subscription_arrive_in_steps_at_the_readers_pace() {
    let n = 5_000;
    let ctx = context_with(n, 100, 1000);
    let mut p = connect(&ctx, "retainer", 1);
    for i in 0..n {
        publish_retained(&mut p, &format!("bulk/{i:05}"));
    }
    let mut s = connect(&ctx, "wide", 2);
    subscribe_packet(&mut s, &["#"]).unwrap();
    assert!(!s.output().is_empty(), "the SUBACK goes first");
    assert_eq!(s.handle().lock().outbox().queued(), 0, "nothing walked under the SUBSCRIBE");
    s.output().clear();
    // A step visits a bounded part of the store, and the router lock is free between steps: another client
    // publishes in the middle of the walk.
    assert!(s.poll_outbox(Instant::now()).unwrap(), "more to come");
    s.output().clear();
    let mut other = connect(&ctx, "other", 3);
    subscribe(&mut other, "live");
    publish(&mut p, "live");
    assert_eq!(deliveries(&mut other).len(), 1);
    let (mut got, longest) = read_all(&mut s);
    assert_eq!(got.iter().filter(|m| m.as_slice() == b"x").count(), 1, "the live message too");
    got.retain(|m| m.as_slice() != b"x");
    assert!(longest <= 100, "the queue never went past its limit ({longest})");
    assert_eq!(s.handle().lock().outbox().dropped(), 0, "nothing dropped for a full queue");
    // Every retained message once, in topic order; the first step's went out above.
    assert_eq!(got.len() + usize::min(100, n), n, "each retained message exactly once");
    let expected: Vec<Vec<u8>> = (n - got.len()..n).map(|i| format!("bulk/{i:05}").into_bytes()).collect();
    assert_eq!(got, expected);
}

#[test]
fn an_unsubscribe_stops_the_retained_messages_still_to_send() {
    let ctx = context_with(3000, 100, 1000);
    let mut p = connect(&ctx, "retainer", 1);
    for i in 0..3000 {
        publish_retained(&mut p, &format!("u/{i:04}"));
    }
    let mut s = connect(&ctx, "quitter", 2);
    subscribe_packet(&mut s, &["u/+"]).unwrap();
    assert!(s.poll_outbox(Instant::now()).unwrap());
    s.output().clear();
    let filters = [TopicFilter::new("u/+").unwrap()];
    let packet = mqtt_codec::Unsubscribe {
        packet_id: PacketId::new(2).unwrap(),
        properties: Properties::empty(),
        filters: List::from_slice(&filters),
    };
    s.on_packet(Instant::now(), &frame(&Packet::Unsubscribe(packet))).unwrap();
    s.output().clear();
    let (got, _) = read_all(&mut s);
    assert!(got.len() <= 100, "only what was queued before the UNSUBSCRIBE ({})", got.len());
}

#[test]
fn a_message_over_the_memory_budget_is_refused_with_quota_exceeded_and_counted() {
    let ctx = context_with_budget(10, 100, 1000, 100);
    let mut sub = connect(&ctx, "sub", 1);
    subscribe(&mut sub, "b/#");
    let mut p = connect_in(&ctx, "pub5", 2, ProtocolVersion::V5);
    p.output().clear();
    let mut acks = Vec::new();
    for (i, size) in [60usize, 60, 10].into_iter().enumerate() {
        let payload = vec![b'x'; size];
        let publish = Publish {
            dup: false,
            qos_pid: QosPid::AtLeastOnce(PacketId::new(i as u16 + 1).unwrap()),
            retain: false,
            topic: TopicName::new("b/t").unwrap(),
            properties: Properties::empty(),
            payload: &payload,
        };
        p.on_packet(Instant::now(), &frame_in(&Packet::Publish(publish), ProtocolVersion::V5)).unwrap();
        let out = std::mem::take(p.output());
        match decode(&out, ProtocolVersion::V5) {
            Ok(Packet::PubAck(a)) => acks.push(a.reason),
            other => panic!("{other:?}"),
        }
    }
    use mqtt_codec::ReasonCode;
    // 63 bytes fit in 100, a second 63 do not, 13 more do.
    assert_eq!(acks, [ReasonCode::Success, ReasonCode::QuotaExceeded, ReasonCode::Success]);
    assert_eq!(ctx.counters.budget.dropped(crate::budget::DropReason::Budget), 1);
    assert_eq!(ctx.counters.budget.used(), 63 + 13);
    assert_eq!(deliveries(&mut sub).len(), 2);
    assert_eq!(ctx.counters.budget.used(), 0, "given back once delivered");
}

/// A persistent QoS 2 subscriber's deliveries with persistence on: the whole batch the connection writes at once
/// waits for one commit (the journal position of its last `Sent` record), not one commit per PUBLISH; and none of
/// it is released before that commit, so after a crash the broker resends exactly what the client may hold.
#[test]
fn a_batch_of_qos2_deliveries_waits_for_one_commit_of_all_its_packet_ids() {
    use crate::journal::failpoints::{self, FailPoint};
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = context();
    // The default fsyncs always.
    let settings = crate::persist::PersistenceSettings {
        enabled: true,
        path: dir.path().to_path_buf(),
        ..crate::persist::PersistenceSettings::default()
    };
    let (durable, _) = crate::persist::open(&settings, &mut ctx.router.lock().unwrap()).unwrap();
    ctx.durable = Some(durable.clone());
    let connect = Connect {
        protocol: ProtocolVersion::V311,
        clean_start: false,
        keep_alive: 0,
        properties: Properties::empty(),
        client_id: "q2-sub",
        will: None,
        username: None,
        password: None,
    };
    let Handshake::Accepted(mut s) =
        handshake(ctx.clone(), &frame(&Packet::Connect(connect)), ConnLink::new(1), Instant::now()).unwrap()
    else {
        panic!("not accepted")
    };
    let subs = [Subscription {
        filter: TopicFilter::new("q2/#").unwrap(),
        options: SubscriptionOptions::qos(QoS::ExactlyOnce),
    }];
    let packet = Subscribe {
        packet_id: PacketId::new(1).unwrap(),
        properties: Properties::empty(),
        subscriptions: List::from_slice(&subs),
    };
    s.on_packet(Instant::now(), &frame(&Packet::Subscribe(packet))).unwrap();
    s.output().clear();
    let _ = s.take_durable_wait();

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    failpoints::pause(dir.path(), FailPoint::Fsync);
    for n in 0..10u8 {
        let msg = crate::message::Message::from_parts("q2/t", &[n], QoS::ExactlyOnce, false);
        ctx.router.lock().unwrap().publish(msg, None, Instant::now());
    }
    while failpoints::waiting(dir.path(), FailPoint::Fsync) == 0 {
        assert!(std::time::Instant::now() < deadline, "the writer never reached its fsync");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    s.poll_outbox(Instant::now()).unwrap();
    let wait = s.take_durable_wait().expect("the QoS 2 PUBLISH packets wait for their Sent records");
    let mut rest = Bytes::from(std::mem::take(s.output()));
    let mut ids = Vec::new();
    while let Some(len) = mqtt_codec::frame_len(&rest, u32::MAX).unwrap() {
        let packet = rest.split_to(len);
        if let Packet::Publish(p) = decode(&packet, ProtocolVersion::V311).unwrap() {
            ids.extend(p.qos_pid.packet_id());
        }
    }
    assert_eq!(ids.len(), 10, "all ten in one batch");
    assert_eq!(wait.get(), durable.journal().stats().appended_records, "one wait, for the last Sent record");
    assert!(!durable.is_durable(wait), "nothing released before its commit");
    failpoints::resume(dir.path(), FailPoint::Fsync);
    while !durable.is_durable(wait) {
        assert!(std::time::Instant::now() < deadline, "the batch never became durable");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    durable.journal().close().unwrap();
}
