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
    assert!(a.handle().lock().outbox.is_backlogged());
    publish(&mut a, "to/b");
    assert!(a.take_backlogged().is_none(), "a is behind itself");

    // b catches up; its publications now wait for a.
    while b.poll_outbox(Instant::now()).unwrap() {
        b.output().clear();
    }
    assert!(!b.handle().lock().holds_publishers);
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
    assert!(a.handle().lock().outbox.is_backlogged());
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
        .outbox
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
        state.outbox.push(push(QoS::AtLeastOnce), true).unwrap();
        state.outbox.push(push(QoS::ExactlyOnce), true).unwrap();
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
