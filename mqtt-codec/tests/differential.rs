//! Differential tests against `mqttbytes` 0.6 (the codec of rumqtt), on valid packets only.
//!
//! Strategies generate `mqttbytes` packet structs (they own their data); each test builds our borrowed `Packet`
//! from one and checks, for MQTT 3.1.1 (`mqttbytes::v4`) and MQTT 5 (`mqttbytes::v5`):
//! - both codecs write exactly the same bytes;
//! - our decoder reads `mqttbytes`' bytes back to our packet;
//! - `mqttbytes` reads our bytes back to its packet, consuming all of them.
//!
//! Where `mqttbytes` legitimately differs on valid input, generation is restricted around it:
//! 1. CONNECT: `mqttbytes` patches the connect flags at an absolute offset of its output buffer, so it is only
//!    correct when writing into an empty buffer. Every write here uses a fresh `BytesMut`.
//! 2. MQTT 3.1 (`MQIsdp`, level 3) and AUTH do not exist in `mqttbytes`: not tested here.
//! 3. User name and password: `mqttbytes` treats an empty one as absent and holds the password as a `String`. User
//!    names, when present, are non-empty; passwords are UTF-8, and an empty one stands for "no password".
//! 4. Empty property blocks: `mqttbytes` reads a Property Length of 0 as `None`. Generated blocks are `None` when
//!    empty, so both sides agree.
//! 5. MQTT 5 CONNACK: with `properties: None`, `mqttbytes` leaves out the Property Length (a malformed v5 CONNACK
//!    that it cannot read back itself). Generated CONNACKs always carry `Some(..)`, possibly with no property, and the
//!    packet `mqttbytes` reads back is compared after mapping an empty block to `None`.
//! 6. MQTT 5 DISCONNECT: `mqttbytes` rejects the valid empty DISCONNECT (`PayloadRequired`) and a DISCONNECT with
//!    a reason code but no Property Length (it insists on one). Our bytes are fed to `mqttbytes` only for
//!    DISCONNECTs with properties; its own bytes (every form) are always decoded by us.
//! 7. Property order: `mqttbytes` writes properties in a fixed order per packet; our codec keeps the caller's order,
//!    so our lists are built in `mqttbytes`' order to compare bytes exactly.
//! 8. QoS 0 PUBLISH: `mqttbytes` reads its packet identifier as 0; generated QoS 0 PUBLISHes have `pkid: 0`.
//! 9. `mqttbytes` accepts much that is invalid (DUP on QoS 0, wildcards in topic names, reserved flags, zero
//!    packet ids, 0 for Topic Alias or Receive Maximum, booleans other than 0/1; see `malformed.rs`) and silently
//!    truncates strings over 65,535 bytes; only valid values and short fields are generated.

use bytes::{Bytes, BytesMut};
use mqtt_codec::{
    Ack, ConnAck, Connect, Disconnect, List, Packet, PacketId, Properties, Property, ProtocolVersion, Publish, QoS,
    QosPid, ReasonCode, RetainHandling, SubAck, Subscribe, Subscription, SubscriptionOptions, TopicFilter, TopicName,
    UnsubAck, Unsubscribe, Will, decode,
};
use mqttbytes::{v4, v5};
use proptest::collection::vec;
use proptest::option::weighted;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// Cases per test.
const CASES: u32 = 256;

const MAX_VARINT: usize = 268_435_455;

// ------------------------------------------------------------------------------------------------ shared helpers

fn pid(v: u16) -> PacketId {
    PacketId::new(v).unwrap()
}

fn qos(q: mqttbytes::QoS) -> QoS {
    match q {
        mqttbytes::QoS::AtMostOnce => QoS::AtMostOnce,
        mqttbytes::QoS::AtLeastOnce => QoS::AtLeastOnce,
        mqttbytes::QoS::ExactlyOnce => QoS::ExactlyOnce,
    }
}

fn reason(code: u8) -> ReasonCode {
    ReasonCode::from_u8(code).unwrap()
}

fn encode(p: Packet<'_>, v: ProtocolVersion) -> Result<Vec<u8>, TestCaseError> {
    let mut buf = vec![0u8; p.encoded_len(v).map_err(|e| TestCaseError::fail(format!("{p:?}: {e:?}")))?];
    p.encode(v, &mut buf).map_err(|e| TestCaseError::fail(format!("{p:?}: {e:?}")))?;
    Ok(buf)
}

fn write_v4(p: &v4::Packet) -> Vec<u8> {
    let mut b = BytesMut::new();
    match p {
        v4::Packet::Connect(x) => x.write(&mut b).map(drop),
        v4::Packet::ConnAck(x) => x.write(&mut b).map(drop),
        v4::Packet::Publish(x) => x.write(&mut b).map(drop),
        v4::Packet::PubAck(x) => x.write(&mut b).map(drop),
        v4::Packet::PubRec(x) => x.write(&mut b).map(drop),
        v4::Packet::PubRel(x) => x.write(&mut b).map(drop),
        v4::Packet::PubComp(x) => x.write(&mut b).map(drop),
        v4::Packet::Subscribe(x) => x.write(&mut b).map(drop),
        v4::Packet::SubAck(x) => x.write(&mut b).map(drop),
        v4::Packet::Unsubscribe(x) => x.write(&mut b).map(drop),
        v4::Packet::UnsubAck(x) => x.write(&mut b).map(drop),
        v4::Packet::PingReq => v4::PingReq.write(&mut b).map(drop),
        v4::Packet::PingResp => v4::PingResp.write(&mut b).map(drop),
        v4::Packet::Disconnect => v4::Disconnect.write(&mut b).map(drop),
    }
    .unwrap();
    b.to_vec()
}

fn write_v5(p: &v5::Packet) -> Vec<u8> {
    let mut b = BytesMut::new();
    match p {
        v5::Packet::Connect(x) => x.write(&mut b).map(drop),
        v5::Packet::ConnAck(x) => x.write(&mut b).map(drop),
        v5::Packet::Publish(x) => x.write(&mut b).map(drop),
        v5::Packet::PubAck(x) => x.write(&mut b).map(drop),
        v5::Packet::PubRec(x) => x.write(&mut b).map(drop),
        v5::Packet::PubRel(x) => x.write(&mut b).map(drop),
        v5::Packet::PubComp(x) => x.write(&mut b).map(drop),
        v5::Packet::Subscribe(x) => x.write(&mut b).map(drop),
        v5::Packet::SubAck(x) => x.write(&mut b).map(drop),
        v5::Packet::Unsubscribe(x) => x.write(&mut b).map(drop),
        v5::Packet::UnsubAck(x) => x.write(&mut b).map(drop),
        v5::Packet::PingReq => v5::PingReq.write(&mut b).map(drop),
        v5::Packet::PingResp => v5::PingResp.write(&mut b).map(drop),
        v5::Packet::Disconnect(x) => x.write(&mut b).map(drop),
    }
    .unwrap();
    b.to_vec()
}

/// Both ways for MQTT 3.1.1: same bytes, each codec reads the other's.
fn agree_v4(ours: Packet<'_>, theirs: &v4::Packet) -> Result<(), TestCaseError> {
    let our_bytes = encode(ours, ProtocolVersion::V311)?;
    let their_bytes = write_v4(theirs);
    prop_assert_eq!(&our_bytes, &their_bytes, "bytes differ for {:?}", ours);
    prop_assert_eq!(decode(&their_bytes, ProtocolVersion::V311), Ok(ours));
    let mut stream = BytesMut::from(&our_bytes[..]);
    prop_assert_eq!(v4::read(&mut stream, usize::MAX), Ok(theirs.clone()));
    prop_assert!(stream.is_empty());
    Ok(())
}

/// Empty property blocks read back as `None` in `mqttbytes` (see point 5 of the module doc).
fn normalize_v5(p: v5::Packet) -> v5::Packet {
    match p {
        v5::Packet::ConnAck(mut c) => {
            if c.properties.as_ref().is_some_and(|p| p.len() == 0) {
                c.properties = None;
            }
            v5::Packet::ConnAck(c)
        }
        other => other,
    }
}

/// Both ways for MQTT 5; `theirs_reads_ours` is false where `mqttbytes` cannot read a valid packet (point 6).
fn agree_v5(ours: Packet<'_>, theirs: &v5::Packet, theirs_reads_ours: bool) -> Result<(), TestCaseError> {
    let our_bytes = encode(ours, ProtocolVersion::V5)?;
    let their_bytes = write_v5(theirs);
    prop_assert_eq!(&our_bytes, &their_bytes, "bytes differ for {:?}", ours);
    prop_assert_eq!(decode(&their_bytes, ProtocolVersion::V5), Ok(ours));
    if theirs_reads_ours {
        let mut stream = BytesMut::from(&our_bytes[..]);
        let read = v5::read(&mut stream, usize::MAX).map(normalize_v5);
        prop_assert_eq!(read, Ok(normalize_v5(theirs.clone())));
        prop_assert!(stream.is_empty());
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------ value strategies

fn text() -> BoxedStrategy<String> {
    "[^\\x00]{0,10}".boxed()
}

fn nonempty_text() -> BoxedStrategy<String> {
    "[^\\x00]{1,10}".boxed()
}

fn binary() -> BoxedStrategy<Bytes> {
    vec(any::<u8>(), 0..16).prop_map(Bytes::from).boxed()
}

fn level() -> BoxedStrategy<String> {
    prop_oneof![3 => "[^\\x00+#/]{0,6}", 1 => Just(String::new())].boxed()
}

fn topic_name() -> BoxedStrategy<String> {
    vec(level(), 1..5).prop_map(|l| l.join("/")).prop_filter("empty topic", |t| !t.is_empty()).boxed()
}

fn topic_filter() -> BoxedStrategy<String> {
    let lvl = prop_oneof![3 => level(), 1 => Just("+".to_string())];
    (vec(lvl, 0..5), any::<bool>(), weighted(0.2, "[^\\x00+#/]{1,6}"))
        .prop_map(|(mut levels, hash, group)| {
            if hash || levels.is_empty() {
                levels.push("#".into());
            }
            let f = levels.join("/");
            group.map_or(f.clone(), |g| format!("$share/{g}/{f}"))
        })
        .prop_filter("invalid filter", |f| TopicFilter::new(f).is_ok())
        .boxed()
}

fn mb_qos() -> impl Strategy<Value = mqttbytes::QoS> {
    prop_oneof![Just(mqttbytes::QoS::AtMostOnce), Just(mqttbytes::QoS::AtLeastOnce), Just(mqttbytes::QoS::ExactlyOnce)]
}

fn flag() -> impl Strategy<Value = u8> {
    0u8..=1
}

fn users() -> BoxedStrategy<Vec<(String, String)>> {
    vec((text(), text()), 0..3).boxed()
}

fn opt<T: std::fmt::Debug>(s: impl Strategy<Value = T>) -> impl Strategy<Value = Option<T>> {
    weighted(0.4, s)
}

/// Login: a non-empty user name and a possibly empty password (point 3).
fn login() -> impl Strategy<Value = (String, String)> {
    (nonempty_text(), text())
}

fn password(p: &str) -> Option<&[u8]> {
    (!p.is_empty()).then_some(p.as_bytes())
}

fn user_props<'a>(out: &mut Vec<Property<'a>>, users: &'a [(String, String)]) {
    out.extend(users.iter().map(|(k, v)| Property::UserProperty(k, v)));
}

// ------------------------------------------------------------------------------------------------ MQTT 3.1.1

fn v4_connect() -> impl Strategy<Value = v4::Connect> {
    let will = (topic_name(), binary(), mb_qos(), any::<bool>())
        .prop_map(|(topic, message, qos, retain)| v4::LastWill { topic, message, qos, retain });
    (any::<u16>(), text(), any::<bool>(), proptest::option::of(will), proptest::option::of(login())).prop_map(
        |(keep_alive, client_id, clean_session, last_will, login)| v4::Connect {
            protocol: mqttbytes::Protocol::V4,
            keep_alive,
            client_id,
            clean_session,
            last_will,
            login: login.map(|(username, password)| v4::Login { username, password }),
        },
    )
}

fn ours_v4_connect(c: &v4::Connect) -> Packet<'_> {
    Packet::Connect(Connect {
        protocol: ProtocolVersion::V311,
        clean_start: c.clean_session,
        keep_alive: c.keep_alive,
        properties: Properties::empty(),
        client_id: &c.client_id,
        will: c.last_will.as_ref().map(|w| Will {
            topic: TopicName::new(&w.topic).unwrap(),
            payload: &w.message,
            qos: qos(w.qos),
            retain: w.retain,
            properties: Properties::empty(),
        }),
        username: c.login.as_ref().map(|l| l.username.as_str()),
        password: c.login.as_ref().and_then(|l| password(&l.password)),
    })
}

fn v4_publish() -> impl Strategy<Value = v4::Publish> {
    (any::<bool>(), mb_qos(), any::<bool>(), topic_name(), 1u16.., vec(any::<u8>(), 0..64)).prop_map(
        |(dup, qos, retain, topic, pkid, payload)| {
            let qos0 = qos == mqttbytes::QoS::AtMostOnce;
            v4::Publish {
                dup: dup && !qos0,
                qos,
                retain,
                topic,
                pkid: if qos0 { 0 } else { pkid },
                payload: Bytes::from(payload),
            }
        },
    )
}

fn ours_v4_publish(p: &v4::Publish) -> Packet<'_> {
    Packet::Publish(Publish {
        dup: p.dup,
        qos_pid: QosPid::from_parts(qos(p.qos), PacketId::new(p.pkid).unwrap_or(pid(1))),
        retain: p.retain,
        topic: TopicName::new(&p.topic).unwrap(),
        properties: Properties::empty(),
        payload: &p.payload,
    })
}

fn v4_suback_code() -> impl Strategy<Value = v4::SubscribeReasonCode> {
    prop_oneof![mb_qos().prop_map(v4::SubscribeReasonCode::Success), Just(v4::SubscribeReasonCode::Failure)]
}

fn v4_code(c: &v4::SubscribeReasonCode) -> ReasonCode {
    match c {
        v4::SubscribeReasonCode::Success(q) => reason(*q as u8),
        v4::SubscribeReasonCode::Failure => ReasonCode::UnspecifiedError,
    }
}

fn v4_connack_code() -> impl Strategy<Value = v4::ConnectReturnCode> {
    use v4::ConnectReturnCode as C;
    proptest::sample::select(vec![
        C::Success,
        C::RefusedProtocolVersion,
        C::BadClientId,
        C::ServiceUnavailable,
        C::BadUserNamePassword,
        C::NotAuthorized,
    ])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn v4_connect_agrees(c in v4_connect()) {
        agree_v4(ours_v4_connect(&c), &v4::Packet::Connect(c.clone()))?;
    }

    #[test]
    fn v4_connack_agrees(code in v4_connack_code(), session_present in any::<bool>()) {
        let session_present = session_present && code == v4::ConnectReturnCode::Success;
        let ours = Packet::ConnAck(ConnAck {
            session_present,
            code: ReasonCode::from_v3_connack(code as u8).unwrap(),
            properties: Properties::empty(),
        });
        agree_v4(ours, &v4::Packet::ConnAck(v4::ConnAck { session_present, code }))?;
    }

    #[test]
    fn v4_publish_agrees(p in v4_publish()) {
        agree_v4(ours_v4_publish(&p), &v4::Packet::Publish(p.clone()))?;
    }

    #[test]
    fn v4_pub_acks_agree(pkid in 1u16..) {
        let ack = Ack::new(pid(pkid));
        agree_v4(Packet::PubAck(ack), &v4::Packet::PubAck(v4::PubAck { pkid }))?;
        agree_v4(Packet::PubRec(ack), &v4::Packet::PubRec(v4::PubRec { pkid }))?;
        agree_v4(Packet::PubRel(ack), &v4::Packet::PubRel(v4::PubRel { pkid }))?;
        agree_v4(Packet::PubComp(ack), &v4::Packet::PubComp(v4::PubComp { pkid }))?;
        agree_v4(
            Packet::UnsubAck(UnsubAck { packet_id: pid(pkid), properties: Properties::empty(), codes: List::from_slice(&[]) }),
            &v4::Packet::UnsubAck(v4::UnsubAck { pkid }),
        )?;
    }

    #[test]
    fn v4_subscribe_agrees(pkid in 1u16.., filters in vec((topic_filter(), mb_qos()), 1..5)) {
        let subs: Vec<_> = filters
            .iter()
            .map(|(f, q)| Subscription { filter: TopicFilter::new(f).unwrap(), options: SubscriptionOptions::qos(qos(*q)) })
            .collect();
        let ours = Packet::Subscribe(Subscribe { packet_id: pid(pkid), properties: Properties::empty(), subscriptions: List::from_slice(&subs) });
        let theirs = v4::Subscribe {
            pkid,
            filters: filters.iter().map(|(path, qos)| v4::SubscribeFilter { path: path.clone(), qos: *qos }).collect(),
        };
        agree_v4(ours, &v4::Packet::Subscribe(theirs))?;
    }

    #[test]
    fn v4_suback_agrees(pkid in 1u16.., return_codes in vec(v4_suback_code(), 1..8)) {
        let codes: Vec<_> = return_codes.iter().map(v4_code).collect();
        let ours = Packet::SubAck(SubAck { packet_id: pid(pkid), properties: Properties::empty(), codes: List::from_slice(&codes) });
        agree_v4(ours, &v4::Packet::SubAck(v4::SubAck { pkid, return_codes }))?;
    }

    #[test]
    fn v4_unsubscribe_agrees(pkid in 1u16.., topics in vec(topic_filter(), 1..5)) {
        let filters: Vec<_> = topics.iter().map(|f| TopicFilter::new(f).unwrap()).collect();
        let ours = Packet::Unsubscribe(Unsubscribe { packet_id: pid(pkid), properties: Properties::empty(), filters: List::from_slice(&filters) });
        agree_v4(ours, &v4::Packet::Unsubscribe(v4::Unsubscribe { pkid, topics: topics.clone() }))?;
    }
}

#[test]
fn v4_fixed_packets_agree() {
    agree_v4(Packet::PingReq, &v4::Packet::PingReq).unwrap();
    agree_v4(Packet::PingResp, &v4::Packet::PingResp).unwrap();
    agree_v4(Packet::Disconnect(Disconnect::normal()), &v4::Packet::Disconnect).unwrap();
}

// ------------------------------------------------------------------------------------------------ MQTT 5

fn v5_connect_props() -> impl Strategy<Value = Option<v5::ConnectProperties>> {
    (
        opt(any::<u32>()),
        opt(1u16..),
        opt(1u32..),
        opt(any::<u16>()),
        opt(flag()),
        opt(flag()),
        users(),
        opt(text()),
        opt(binary()),
    )
        .prop_map(|(sei, rm, mps, tam, rri, rpi, user_properties, method, data)| {
            let p = v5::ConnectProperties {
                session_expiry_interval: sei,
                receive_maximum: rm,
                max_packet_size: mps,
                topic_alias_max: tam,
                request_response_info: rri,
                request_problem_info: rpi,
                user_properties,
                // Authentication Data needs an Authentication Method.
                authentication_data: if method.is_some() { data } else { None },
                authentication_method: method,
            };
            let empty = v5::ConnectProperties { user_properties: Vec::new(), ..p.clone() } == EMPTY_CONNECT_PROPS
                && p.user_properties.is_empty();
            (!empty).then_some(p)
        })
}

const EMPTY_CONNECT_PROPS: v5::ConnectProperties = v5::ConnectProperties {
    session_expiry_interval: None,
    receive_maximum: None,
    max_packet_size: None,
    topic_alias_max: None,
    request_response_info: None,
    request_problem_info: None,
    user_properties: Vec::new(),
    authentication_method: None,
    authentication_data: None,
};

fn connect_props(p: Option<&v5::ConnectProperties>) -> Vec<Property<'_>> {
    let mut v = Vec::new();
    let Some(p) = p else { return v };
    v.extend(p.session_expiry_interval.map(Property::SessionExpiryInterval));
    v.extend(p.receive_maximum.map(Property::ReceiveMaximum));
    v.extend(p.max_packet_size.map(Property::MaximumPacketSize));
    v.extend(p.topic_alias_max.map(Property::TopicAliasMaximum));
    v.extend(p.request_response_info.map(|b| Property::RequestResponseInformation(b == 1)));
    v.extend(p.request_problem_info.map(|b| Property::RequestProblemInformation(b == 1)));
    user_props(&mut v, &p.user_properties);
    v.extend(p.authentication_method.as_deref().map(Property::AuthenticationMethod));
    v.extend(p.authentication_data.as_deref().map(Property::AuthenticationData));
    v
}

fn v5_will_props() -> impl Strategy<Value = Option<v5::WillProperties>> {
    (opt(any::<u32>()), opt(flag()), opt(any::<u32>()), opt(text()), opt(topic_name()), opt(binary()), users())
        .prop_map(|(delay_interval, pfi, mei, content_type, response_topic, correlation_data, user_properties)| {
            let p = v5::WillProperties {
                delay_interval,
                payload_format_indicator: pfi,
                message_expiry_interval: mei,
                content_type,
                response_topic,
                correlation_data,
                user_properties,
            };
            let empty = p.delay_interval.is_none()
                && p.payload_format_indicator.is_none()
                && p.message_expiry_interval.is_none()
                && p.content_type.is_none()
                && p.response_topic.is_none()
                && p.correlation_data.is_none()
                && p.user_properties.is_empty();
            (!empty).then_some(p)
        })
}

fn will_props(p: Option<&v5::WillProperties>) -> Vec<Property<'_>> {
    let mut v = Vec::new();
    let Some(p) = p else { return v };
    v.extend(p.delay_interval.map(Property::WillDelayInterval));
    v.extend(p.payload_format_indicator.map(|b| Property::PayloadFormatIndicator(b == 1)));
    v.extend(p.message_expiry_interval.map(Property::MessageExpiryInterval));
    v.extend(p.content_type.as_deref().map(Property::ContentType));
    v.extend(p.response_topic.as_deref().map(Property::ResponseTopic));
    v.extend(p.correlation_data.as_deref().map(Property::CorrelationData));
    user_props(&mut v, &p.user_properties);
    v
}

fn v5_connect() -> impl Strategy<Value = v5::Connect> {
    let will = (topic_name(), binary(), mb_qos(), any::<bool>(), v5_will_props())
        .prop_map(|(topic, message, qos, retain, properties)| v5::LastWill { topic, message, qos, retain, properties });
    // In MQTT 5 a password may come without a user name; one of the two is non-empty (point 3).
    let login = prop_oneof![login(), (Just(String::new()), nonempty_text())];
    (any::<u16>(), text(), any::<bool>(), proptest::option::of(will), proptest::option::of(login), v5_connect_props())
        .prop_map(|(keep_alive, client_id, clean_session, last_will, login, properties)| v5::Connect {
            protocol: mqttbytes::Protocol::V5,
            keep_alive,
            client_id,
            clean_session,
            last_will,
            login: login.map(|(username, password)| v5::Login { username, password }),
            properties,
        })
}

fn v5_connack_props() -> impl Strategy<Value = v5::ConnAckProperties> {
    let a = (
        opt(any::<u32>()),
        opt(1u16..),
        opt(flag()),
        opt(flag()),
        opt(1u32..),
        opt(text()),
        opt(any::<u16>()),
        opt(text()),
        users(),
    );
    let b = (
        opt(flag()),
        opt(flag()),
        opt(flag()),
        opt(any::<u16>()),
        opt(text()),
        opt(text()),
        opt(text()),
        opt(binary()),
    );
    (a, b).prop_map(|((sei, rm, mq, ra, mps, aci, tam, rs, user_properties), (wsa, sia, ssa, ska, ri, sr, am, ad))| {
        v5::ConnAckProperties {
            session_expiry_interval: sei,
            receive_max: rm,
            max_qos: mq,
            retain_available: ra,
            max_packet_size: mps,
            assigned_client_identifier: aci,
            topic_alias_max: tam,
            reason_string: rs,
            user_properties,
            wildcard_subscription_available: wsa,
            subscription_identifiers_available: sia,
            shared_subscription_available: ssa,
            server_keep_alive: ska,
            response_information: ri,
            server_reference: sr,
            authentication_data: if am.is_some() { ad } else { None },
            authentication_method: am,
        }
    })
}

fn connack_props(p: Option<&v5::ConnAckProperties>) -> Vec<Property<'_>> {
    let mut v = Vec::new();
    let Some(p) = p else { return v };
    let qos01 = |b: u8| if b == 0 { QoS::AtMostOnce } else { QoS::AtLeastOnce };
    v.extend(p.session_expiry_interval.map(Property::SessionExpiryInterval));
    v.extend(p.receive_max.map(Property::ReceiveMaximum));
    v.extend(p.max_qos.map(|b| Property::MaximumQoS(qos01(b))));
    v.extend(p.retain_available.map(|b| Property::RetainAvailable(b == 1)));
    v.extend(p.max_packet_size.map(Property::MaximumPacketSize));
    v.extend(p.assigned_client_identifier.as_deref().map(Property::AssignedClientIdentifier));
    v.extend(p.topic_alias_max.map(Property::TopicAliasMaximum));
    v.extend(p.reason_string.as_deref().map(Property::ReasonString));
    user_props(&mut v, &p.user_properties);
    v.extend(p.wildcard_subscription_available.map(|b| Property::WildcardSubscriptionAvailable(b == 1)));
    v.extend(p.subscription_identifiers_available.map(|b| Property::SubscriptionIdentifierAvailable(b == 1)));
    v.extend(p.shared_subscription_available.map(|b| Property::SharedSubscriptionAvailable(b == 1)));
    v.extend(p.server_keep_alive.map(Property::ServerKeepAlive));
    v.extend(p.response_information.as_deref().map(Property::ResponseInformation));
    v.extend(p.server_reference.as_deref().map(Property::ServerReference));
    v.extend(p.authentication_method.as_deref().map(Property::AuthenticationMethod));
    v.extend(p.authentication_data.as_deref().map(Property::AuthenticationData));
    v
}

fn v5_connack_code() -> impl Strategy<Value = v5::ConnectReturnCode> {
    use v5::ConnectReturnCode as C;
    proptest::sample::select(vec![
        C::Success,
        C::UnspecifiedError,
        C::MalformedPacket,
        C::ProtocolError,
        C::ImplementationSpecificError,
        C::UnsupportedProtocolVersion,
        C::ClientIdentifierNotValid,
        C::BadUserNamePassword,
        C::NotAuthorized,
        C::ServerUnavailable,
        C::ServerBusy,
        C::Banned,
        C::BadAuthenticationMethod,
        C::TopicNameInvalid,
        C::PacketTooLarge,
        C::QuotaExceeded,
        C::PayloadFormatInvalid,
        C::RetainNotSupported,
        C::QoSNotSupported,
        C::UseAnotherServer,
        C::ServerMoved,
        C::ConnectionRateExceeded,
    ])
}

fn v5_publish_props() -> impl Strategy<Value = Option<v5::PublishProperties>> {
    (
        opt(flag()),
        opt(any::<u32>()),
        opt(1u16..),
        opt(topic_name()),
        opt(binary()),
        users(),
        vec(1..=MAX_VARINT, 0..3),
        opt(text()),
    )
        .prop_map(|(pfi, mei, ta, rt, cd, user_properties, subscription_identifiers, ct)| {
            let p = v5::PublishProperties {
                payload_format_indicator: pfi,
                message_expiry_interval: mei,
                topic_alias: ta,
                response_topic: rt,
                correlation_data: cd,
                user_properties,
                subscription_identifiers,
                content_type: ct,
            };
            let empty = p.payload_format_indicator.is_none()
                && p.message_expiry_interval.is_none()
                && p.topic_alias.is_none()
                && p.response_topic.is_none()
                && p.correlation_data.is_none()
                && p.user_properties.is_empty()
                && p.subscription_identifiers.is_empty()
                && p.content_type.is_none();
            (!empty).then_some(p)
        })
}

fn publish_props(p: Option<&v5::PublishProperties>) -> Vec<Property<'_>> {
    let mut v = Vec::new();
    let Some(p) = p else { return v };
    v.extend(p.payload_format_indicator.map(|b| Property::PayloadFormatIndicator(b == 1)));
    v.extend(p.message_expiry_interval.map(Property::MessageExpiryInterval));
    v.extend(p.topic_alias.map(Property::TopicAlias));
    v.extend(p.response_topic.as_deref().map(Property::ResponseTopic));
    v.extend(p.correlation_data.as_deref().map(Property::CorrelationData));
    user_props(&mut v, &p.user_properties);
    v.extend(p.subscription_identifiers.iter().map(|&id| Property::SubscriptionIdentifier(id as u32)));
    v.extend(p.content_type.as_deref().map(Property::ContentType));
    v
}

fn v5_publish() -> impl Strategy<Value = v5::Publish> {
    (
        any::<bool>(),
        mb_qos(),
        any::<bool>(),
        topic_name(),
        1u16..,
        v5_publish_props(),
        vec(any::<u8>(), 0..64),
        any::<bool>(),
    )
        .prop_map(|(dup, qos, retain, topic, pkid, properties, payload, alias_only)| {
            let qos0 = qos == mqttbytes::QoS::AtMostOnce;
            // An empty topic name stands for the Topic Alias it carries.
            let topic = if alias_only && properties.as_ref().is_some_and(|p| p.topic_alias.is_some()) {
                String::new()
            } else {
                topic
            };
            v5::Publish {
                dup: dup && !qos0,
                qos,
                retain,
                topic,
                pkid: if qos0 { 0 } else { pkid },
                properties,
                payload: Bytes::from(payload),
            }
        })
}

/// A Reason String and User Properties, or `None` when there is neither.
type AckProps = Option<(Option<String>, Vec<(String, String)>)>;

/// The properties of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK.
fn ack_props() -> impl Strategy<Value = AckProps> {
    (opt(text()), users()).prop_map(|(r, u)| (r.is_some() || !u.is_empty()).then_some((r, u)))
}

fn reason_user_props<'a>(reason_string: Option<&'a String>, users: &'a [(String, String)]) -> Vec<Property<'a>> {
    let mut v: Vec<_> = reason_string.map(|s| Property::ReasonString(s)).into_iter().collect();
    user_props(&mut v, users);
    v
}

macro_rules! v5_ack_test {
    ($name:ident, $variant:ident, $reason:ty, $props:ident, [$($code:ident),*]) => {
        proptest! {
            #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]
            #[test]
            fn $name(
                pkid in 1u16..,
                code in proptest::sample::select(vec![$(<$reason>::$code),*]),
                props in ack_props(),
            ) {
                let theirs = v5::$variant {
                    pkid,
                    reason: code,
                    properties: props.clone().map(|(reason_string, user_properties)| v5::$props {
                        reason_string,
                        user_properties,
                    }),
                };
                let list = props.as_ref().map(|(r, u)| reason_user_props(r.as_ref(), u)).unwrap_or_default();
                let ours = Packet::$variant(Ack {
                    packet_id: pid(pkid),
                    reason: reason(code as u8),
                    properties: Properties::from_list(&list),
                });
                agree_v5(ours, &v5::Packet::$variant(theirs), true)?;
            }
        }
    };
}

v5_ack_test!(
    v5_puback_agrees,
    PubAck,
    v5::PubAckReason,
    PubAckProperties,
    [
        Success,
        NoMatchingSubscribers,
        UnspecifiedError,
        ImplementationSpecificError,
        NotAuthorized,
        TopicNameInvalid,
        PacketIdentifierInUse,
        QuotaExceeded,
        PayloadFormatInvalid
    ]
);
v5_ack_test!(
    v5_pubrec_agrees,
    PubRec,
    v5::PubRecReason,
    PubRecProperties,
    [
        Success,
        NoMatchingSubscribers,
        UnspecifiedError,
        ImplementationSpecificError,
        NotAuthorized,
        TopicNameInvalid,
        PacketIdentifierInUse,
        QuotaExceeded,
        PayloadFormatInvalid
    ]
);
v5_ack_test!(v5_pubrel_agrees, PubRel, v5::PubRelReason, PubRelProperties, [Success, PacketIdentifierNotFound]);
v5_ack_test!(v5_pubcomp_agrees, PubComp, v5::PubCompReason, PubCompProperties, [Success, PacketIdentifierNotFound]);

fn v5_retain_rule() -> impl Strategy<Value = v5::RetainForwardRule> {
    prop_oneof![
        Just(v5::RetainForwardRule::OnEverySubscribe),
        Just(v5::RetainForwardRule::OnNewSubscribe),
        Just(v5::RetainForwardRule::Never)
    ]
}

fn retain_handling(r: &v5::RetainForwardRule) -> RetainHandling {
    match r {
        v5::RetainForwardRule::OnEverySubscribe => RetainHandling::SendAtSubscribe,
        v5::RetainForwardRule::OnNewSubscribe => RetainHandling::SendAtNewSubscribe,
        v5::RetainForwardRule::Never => RetainHandling::DoNotSend,
    }
}

fn v5_subscribe_filter() -> impl Strategy<Value = v5::SubscribeFilter> {
    (topic_filter(), mb_qos(), any::<bool>(), any::<bool>(), v5_retain_rule()).prop_map(
        |(path, qos, nolocal, preserve_retain, retain_forward_rule)| {
            // No Local on a shared subscription is a protocol error [MQTT-3.8.3-4].
            let shared = path.starts_with("$share/");
            v5::SubscribeFilter { path, qos, nolocal: nolocal && !shared, preserve_retain, retain_forward_rule }
        },
    )
}

fn v5_suback_code() -> impl Strategy<Value = v5::SubscribeReasonCode> {
    use v5::SubscribeReasonCode as C;
    proptest::sample::select(vec![
        C::QoS0,
        C::QoS1,
        C::QoS2,
        C::Unspecified,
        C::ImplementationSpecific,
        C::NotAuthorized,
        C::TopicFilterInvalid,
        C::PkidInUse,
        C::QuotaExceeded,
        C::SharedSubscriptionsNotSupported,
        C::SubscriptionIdNotSupported,
        C::WildcardSubscriptionsNotSupported,
    ])
}

fn v5_unsuback_code() -> impl Strategy<Value = v5::UnsubAckReason> {
    use v5::UnsubAckReason as C;
    proptest::sample::select(vec![
        C::Success,
        C::NoSubscriptionExisted,
        C::UnspecifiedError,
        C::ImplementationSpecificError,
        C::NotAuthorized,
        C::TopicFilterInvalid,
        C::PacketIdentifierInUse,
    ])
}

fn v5_disconnect_code() -> impl Strategy<Value = v5::DisconnectReasonCode> {
    use v5::DisconnectReasonCode as C;
    proptest::sample::select(vec![
        C::NormalDisconnection,
        C::DisconnectWithWillMessage,
        C::UnspecifiedError,
        C::MalformedPacket,
        C::ProtocolError,
        C::ImplementationSpecificError,
        C::NotAuthorized,
        C::ServerBusy,
        C::ServerShuttingDown,
        C::KeepAliveTimeout,
        C::SessionTakenOver,
        C::TopicFilterInvalid,
        C::TopicNameInvalid,
        C::ReceiveMaximumExceeded,
        C::TopicAliasInvalid,
        C::PacketTooLarge,
        C::MessageRateTooHigh,
        C::QuotaExceeded,
        C::AdministrativeAction,
        C::PayloadFormatInvalid,
        C::RetainNotSupported,
        C::QoSNotSupported,
        C::UseAnotherServer,
        C::ServerMoved,
        C::SharedSubscriptionNotSupported,
        C::ConnectionRateExceeded,
        C::MaximumConnectTime,
        C::SubscriptionIdentifiersNotSupported,
        C::WildcardSubscriptionsNotSupported,
    ])
}

fn v5_disconnect_props() -> impl Strategy<Value = Option<v5::DisconnectProperties>> {
    (opt(any::<u32>()), opt(text()), users(), opt(text())).prop_map(
        |(session_expiry_interval, reason_string, user_properties, server_reference)| {
            let empty = session_expiry_interval.is_none()
                && reason_string.is_none()
                && user_properties.is_empty()
                && server_reference.is_none();
            (!empty).then_some(v5::DisconnectProperties {
                session_expiry_interval,
                reason_string,
                user_properties,
                server_reference,
            })
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn v5_connect_agrees(c in v5_connect()) {
        let props = connect_props(c.properties.as_ref());
        let wprops = will_props(c.last_will.as_ref().and_then(|w| w.properties.as_ref()));
        let ours = Packet::Connect(Connect {
            protocol: ProtocolVersion::V5,
            clean_start: c.clean_session,
            keep_alive: c.keep_alive,
            properties: Properties::from_list(&props),
            client_id: &c.client_id,
            will: c.last_will.as_ref().map(|w| Will {
                topic: TopicName::new(&w.topic).unwrap(),
                payload: &w.message,
                qos: qos(w.qos),
                retain: w.retain,
                properties: Properties::from_list(&wprops),
            }),
            username: c.login.as_ref().and_then(|l| (!l.username.is_empty()).then_some(l.username.as_str())),
            password: c.login.as_ref().and_then(|l| password(&l.password)),
        });
        agree_v5(ours, &v5::Packet::Connect(c.clone()), true)?;
    }

    #[test]
    fn v5_connack_agrees(code in v5_connack_code(), session_present in any::<bool>(), props in v5_connack_props()) {
        let session_present = session_present && code == v5::ConnectReturnCode::Success;
        let list = connack_props(Some(&props));
        let ours = Packet::ConnAck(ConnAck {
            session_present,
            code: reason(code as u8),
            properties: Properties::from_list(&list),
        });
        // Always Some(..): with None, mqttbytes leaves out the Property Length (point 5).
        let theirs = v5::ConnAck { session_present, code, properties: Some(props.clone()) };
        agree_v5(ours, &v5::Packet::ConnAck(theirs), true)?;
    }

    #[test]
    fn v5_publish_agrees(p in v5_publish()) {
        let list = publish_props(p.properties.as_ref());
        let ours = Packet::Publish(Publish {
            dup: p.dup,
            qos_pid: QosPid::from_parts(qos(p.qos), PacketId::new(p.pkid).unwrap_or(pid(1))),
            retain: p.retain,
            topic: if p.topic.is_empty() { TopicName::empty() } else { TopicName::new(&p.topic).unwrap() },
            properties: Properties::from_list(&list),
            payload: &p.payload,
        });
        agree_v5(ours, &v5::Packet::Publish(p.clone()), true)?;
    }

    #[test]
    fn v5_subscribe_agrees(
        pkid in 1u16..,
        id in opt(1..=MAX_VARINT),
        user_properties in users(),
        filters in vec(v5_subscribe_filter(), 1..5),
    ) {
        let mut list: Vec<_> = id.map(|id| Property::SubscriptionIdentifier(id as u32)).into_iter().collect();
        user_props(&mut list, &user_properties);
        let subs: Vec<_> = filters
            .iter()
            .map(|f| Subscription {
                filter: TopicFilter::new(&f.path).unwrap(),
                options: SubscriptionOptions {
                    qos: qos(f.qos),
                    no_local: f.nolocal,
                    retain_as_published: f.preserve_retain,
                    retain_handling: retain_handling(&f.retain_forward_rule),
                },
            })
            .collect();
        let ours = Packet::Subscribe(Subscribe {
            packet_id: pid(pkid),
            properties: Properties::from_list(&list),
            subscriptions: List::from_slice(&subs),
        });
        let properties = (id.is_some() || !user_properties.is_empty())
            .then(|| v5::SubscribeProperties { id, user_properties: user_properties.clone() });
        agree_v5(ours, &v5::Packet::Subscribe(v5::Subscribe { pkid, filters: filters.clone(), properties }), true)?;
    }

    #[test]
    fn v5_suback_agrees(pkid in 1u16.., return_codes in vec(v5_suback_code(), 1..8), props in ack_props()) {
        let codes: Vec<_> = return_codes.iter().map(|c| reason(*c as u8)).collect();
        let list = props.as_ref().map(|(r, u)| reason_user_props(r.as_ref(), u)).unwrap_or_default();
        let ours = Packet::SubAck(SubAck {
            packet_id: pid(pkid),
            properties: Properties::from_list(&list),
            codes: List::from_slice(&codes),
        });
        let properties = props.clone().map(|(reason_string, user_properties)| v5::SubAckProperties { reason_string, user_properties });
        agree_v5(ours, &v5::Packet::SubAck(v5::SubAck { pkid, return_codes, properties }), true)?;
    }

    #[test]
    fn v5_unsubscribe_agrees(pkid in 1u16.., topics in vec(topic_filter(), 1..5), user_properties in users()) {
        let filters: Vec<_> = topics.iter().map(|f| TopicFilter::new(f).unwrap()).collect();
        let mut list = Vec::new();
        user_props(&mut list, &user_properties);
        let ours = Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(pkid),
            properties: Properties::from_list(&list),
            filters: List::from_slice(&filters),
        });
        let properties = (!user_properties.is_empty())
            .then(|| v5::UnsubscribeProperties { user_properties: user_properties.clone() });
        agree_v5(ours, &v5::Packet::Unsubscribe(v5::Unsubscribe { pkid, filters: topics.clone(), properties }), true)?;
    }

    #[test]
    fn v5_unsuback_agrees(pkid in 1u16.., reasons in vec(v5_unsuback_code(), 1..8), props in ack_props()) {
        let codes: Vec<_> = reasons.iter().map(|c| reason(*c as u8)).collect();
        let list = props.as_ref().map(|(r, u)| reason_user_props(r.as_ref(), u)).unwrap_or_default();
        let ours = Packet::UnsubAck(UnsubAck {
            packet_id: pid(pkid),
            properties: Properties::from_list(&list),
            codes: List::from_slice(&codes),
        });
        let properties = props.clone().map(|(reason_string, user_properties)| v5::UnsubAckProperties { reason_string, user_properties });
        agree_v5(ours, &v5::Packet::UnsubAck(v5::UnsubAck { pkid, reasons, properties }), true)?;
    }

    #[test]
    fn v5_disconnect_agrees(code in v5_disconnect_code(), properties in v5_disconnect_props()) {
        let mut list = Vec::new();
        if let Some(p) = &properties {
            list.extend(p.session_expiry_interval.map(Property::SessionExpiryInterval));
            list.extend(p.reason_string.as_deref().map(Property::ReasonString));
            user_props(&mut list, &p.user_properties);
            list.extend(p.server_reference.as_deref().map(Property::ServerReference));
        }
        let ours = Packet::Disconnect(Disconnect { reason: reason(code as u8), properties: Properties::from_list(&list) });
        // mqttbytes reads a v5 DISCONNECT only when it has properties (point 6).
        let theirs_reads_ours = properties.is_some();
        agree_v5(ours, &v5::Packet::Disconnect(v5::Disconnect { reason_code: code, properties: properties.clone() }), theirs_reads_ours)?;
    }
}

#[test]
fn v5_fixed_packets_agree() {
    agree_v5(Packet::PingReq, &v5::Packet::PingReq, true).unwrap();
    agree_v5(Packet::PingResp, &v5::Packet::PingResp, true).unwrap();
}

/// The differences of point 6, pinned down so that this file notices if a later `mqttbytes` fixes them.
#[test]
fn mqttbytes_rejects_valid_short_v5_disconnects() {
    for bytes in [&[0xe0, 0x00][..], &[0xe0, 0x01, 0x8b]] {
        assert!(decode(bytes, ProtocolVersion::V5).is_ok());
        let mut stream = BytesMut::from(bytes);
        assert!(v5::read(&mut stream, usize::MAX).is_err(), "mqttbytes now reads {bytes:02x?}");
    }
}

/// Point 5: mqttbytes' v5 CONNACK without properties is malformed (no Property Length); we reject it.
#[test]
fn mqttbytes_v5_connack_without_properties_is_malformed() {
    let bytes = write_v5(&v5::Packet::ConnAck(v5::ConnAck::new(v5::ConnectReturnCode::Success, false)));
    assert_eq!(bytes, [0x20, 0x02, 0x00, 0x00]);
    assert_eq!(decode(&bytes, ProtocolVersion::V5), Err(mqtt_codec::DecodeError::Truncated));
}
