//! Golden byte vectors: the examples of the MQTT 3.1.1 and 5.0 specifications and hand-checked encodings.
//!
//! Each vector is written out by hand (lengths counted in the comments), never produced by the codec. For each one:
//! encoding gives exactly these bytes, `encoded_len` agrees, and decoding gives back the packet.

use mqtt_codec::{
    Ack, Auth, ConnAck, Connect, Disconnect, List, Packet, PacketId, Properties, Property, ProtocolVersion, Publish,
    QoS, QosPid, ReasonCode, RetainHandling, SubAck, Subscribe, Subscription, SubscriptionOptions, TopicFilter,
    TopicName, UnsubAck, Unsubscribe, Will, decode, frame_len,
};

const V31: ProtocolVersion = ProtocolVersion::V31;
const V311: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn pid(v: u16) -> PacketId {
    PacketId::new(v).unwrap()
}

fn topic(s: &str) -> TopicName<'_> {
    TopicName::new(s).unwrap()
}

fn filter(s: &str) -> TopicFilter<'_> {
    TopicFilter::new(s).unwrap()
}

/// Concatenates byte pieces, so long vectors can be written field by field.
fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Encode gives exactly `bytes`; decode (and streaming decode) gives back `packet`.
fn check(packet: Packet<'_>, version: ProtocolVersion, bytes: &[u8]) {
    let mut buf = vec![0u8; bytes.len() + 8];
    let n = packet.encode(version, &mut buf).unwrap_or_else(|e| panic!("encoding {packet:?}: {e}"));
    assert_eq!(&buf[..n], bytes, "encoding of {packet:?}");
    assert_eq!(packet.encoded_len(version), Ok(n));
    assert_eq!(decode(bytes, version), Ok(packet), "decoding {bytes:02x?}");
    assert_eq!(frame_len(bytes, u32::MAX), Ok(Some(bytes.len())));
    let mut stream = bytes.to_vec();
    stream.extend_from_slice(&[0xc0, 0x00]); // a PINGREQ after it must not be consumed
    assert_eq!(Packet::decode_from(&stream, version, u32::MAX), Ok(Some((packet, bytes.len()))));
}

// ---------------------------------------------------------------------------------------------------------------
// MQTT 3.1.1 (and one MQTT 3.1 CONNECT)
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn v311_connect_spec_flags_0xce() {
    // Spec 3.1.2.10 example variable header: "MQTT", level 4, flags 0xCE (user name, password, will QoS 1, will
    // flag, clean session), keep alive 10.
    let p = Packet::Connect(Connect {
        protocol: V311,
        clean_start: true,
        keep_alive: 10,
        properties: Properties::empty(),
        client_id: "c1",
        will: Some(Will {
            topic: topic("w/t"),
            payload: b"bye",
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Properties::empty(),
        }),
        username: Some("user"),
        password: Some(b"pass"),
    });
    // 10 (header) + 4 (client id) + 5 (will topic) + 5 (will payload) + 6 (user) + 6 (password) = 36
    let bytes = [
        0x10, 0x24, // CONNECT, remaining length 36
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0xce, 0x00, 0x0a, // variable header
        0x00, 0x02, b'c', b'1', // client id
        0x00, 0x03, b'w', b'/', b't', // will topic
        0x00, 0x03, b'b', b'y', b'e', // will payload
        0x00, 0x04, b'u', b's', b'e', b'r', // user name
        0x00, 0x04, b'p', b'a', b's', b's', // password
    ];
    check(p, V311, &bytes);
}

#[test]
fn v311_connect_minimal_empty_client_id() {
    let p = Packet::Connect(Connect {
        protocol: V311,
        clean_start: true,
        keep_alive: 0,
        properties: Properties::empty(),
        client_id: "",
        will: None,
        username: None,
        password: None,
    });
    check(p, V311, &[0x10, 0x0c, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x00, 0x00, 0x00]);
}

#[test]
fn v31_connect_mqisdp() {
    // MQTT 3.1: protocol name "MQIsdp", level 3; user name and password, clean session, keep alive 60.
    let p = Packet::Connect(Connect {
        protocol: V31,
        clean_start: true,
        keep_alive: 60,
        properties: Properties::empty(),
        client_id: "hello",
        will: None,
        username: Some("u"),
        password: Some(b"p"),
    });
    // 8 (name) + 1 + 1 + 2 + 7 (client id) + 3 + 3 = 25
    let bytes = [
        0x10, 0x19, 0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 0x03, 0xc2, 0x00, 0x3c, 0x00, 0x05, b'h', b'e',
        b'l', b'l', b'o', 0x00, 0x01, b'u', 0x00, 0x01, b'p',
    ];
    check(p, V31, &bytes);
    // A CONNECT carries its own version: the connection's version argument does not matter.
    assert_eq!(decode(&bytes, V311), Ok(p));
    assert_eq!(decode(&bytes, V5), Ok(p));
}

#[test]
fn v311_connack() {
    let accepted = ConnAck { session_present: true, code: ReasonCode::Success, properties: Properties::empty() };
    check(Packet::ConnAck(accepted), V311, &[0x20, 0x02, 0x01, 0x00]);
    // The six 3.1.1 return codes map onto reason codes.
    for (code, reason) in [
        (1u8, ReasonCode::UnsupportedProtocolVersion),
        (2, ReasonCode::ClientIdentifierNotValid),
        (3, ReasonCode::ServerUnavailable),
        (4, ReasonCode::BadUserNameOrPassword),
        (5, ReasonCode::NotAuthorized),
    ] {
        let refused = ConnAck { session_present: false, code: reason, properties: Properties::empty() };
        check(Packet::ConnAck(refused), V311, &[0x20, 0x02, 0x00, code]);
        check(Packet::ConnAck(refused), V31, &[0x20, 0x02, 0x00, code]);
    }
}

#[test]
fn v311_publish_spec_example() {
    // Spec 3.3.2.3 example: topic "a/b", packet identifier 10.
    let p = Packet::Publish(Publish {
        dup: false,
        qos_pid: QosPid::AtLeastOnce(pid(10)),
        retain: false,
        topic: topic("a/b"),
        properties: Properties::empty(),
        payload: b"hello",
    });
    check(p, V311, &[0x32, 0x0c, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0a, b'h', b'e', b'l', b'l', b'o']);
}

#[test]
fn v311_publish_flags_and_empty_payload() {
    // DUP + QoS 2 + RETAIN: 0x30 | 0x08 | 0x04 | 0x01.
    let p = Packet::Publish(Publish {
        dup: true,
        qos_pid: QosPid::ExactlyOnce(pid(0xffff)),
        retain: true,
        topic: topic("a/b"),
        properties: Properties::empty(),
        payload: b"",
    });
    check(p, V311, &[0x3d, 0x07, 0x00, 0x03, b'a', b'/', b'b', 0xff, 0xff]);
    // QoS 0 has no packet identifier.
    let p = Packet::Publish(Publish {
        dup: false,
        qos_pid: QosPid::AtMostOnce,
        retain: false,
        topic: topic("a/b"),
        properties: Properties::empty(),
        payload: b"",
    });
    check(p, V311, &[0x30, 0x05, 0x00, 0x03, b'a', b'/', b'b']);
}

#[test]
fn v311_publish_two_byte_remaining_length() {
    // 200 bytes of payload: remaining length 5 + 200 = 205 = 0xcd 0x01.
    let payload = [0x5a; 200];
    let p = Packet::Publish(Publish {
        dup: false,
        qos_pid: QosPid::AtMostOnce,
        retain: false,
        topic: topic("a/b"),
        properties: Properties::empty(),
        payload: &payload,
    });
    check(p, V311, &cat(&[&[0x30, 0xcd, 0x01, 0x00, 0x03, b'a', b'/', b'b'], &payload]));
}

#[test]
fn v311_acks() {
    let ack = Ack::new(pid(10));
    check(Packet::PubAck(ack), V311, &[0x40, 0x02, 0x00, 0x0a]);
    check(Packet::PubRec(ack), V311, &[0x50, 0x02, 0x00, 0x0a]);
    // PUBREL carries the fixed flags 0b0010.
    check(Packet::PubRel(ack), V311, &[0x62, 0x02, 0x00, 0x0a]);
    check(Packet::PubComp(ack), V311, &[0x70, 0x02, 0x00, 0x0a]);
}

#[test]
fn v311_subscribe_spec_example() {
    // Spec 3.8.3 example: "a/b" QoS 1, "c/d" QoS 2.
    let subs = [
        Subscription { filter: filter("a/b"), options: SubscriptionOptions::qos(QoS::AtLeastOnce) },
        Subscription { filter: filter("c/d"), options: SubscriptionOptions::qos(QoS::ExactlyOnce) },
    ];
    let p = Packet::Subscribe(Subscribe {
        packet_id: pid(10),
        properties: Properties::empty(),
        subscriptions: List::from_slice(&subs),
    });
    let bytes = [0x82, 0x0e, 0x00, 0x0a, 0x00, 0x03, b'a', b'/', b'b', 0x01, 0x00, 0x03, b'c', b'/', b'd', 0x02];
    check(p, V311, &bytes);
}

#[test]
fn v311_suback_spec_example() {
    // Spec 3.9.3 example: success QoS 0, success QoS 1, success QoS 2, failure.
    let codes = [ReasonCode::Success, ReasonCode::GrantedQoS1, ReasonCode::GrantedQoS2, ReasonCode::UnspecifiedError];
    let p =
        Packet::SubAck(SubAck { packet_id: pid(10), properties: Properties::empty(), codes: List::from_slice(&codes) });
    check(p, V311, &[0x90, 0x06, 0x00, 0x0a, 0x00, 0x01, 0x02, 0x80]);
}

#[test]
fn v311_unsubscribe_spec_example() {
    // Spec 3.10.3 example: "a/b", "c/d".
    let filters = [filter("a/b"), filter("c/d")];
    let p = Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(10),
        properties: Properties::empty(),
        filters: List::from_slice(&filters),
    });
    check(p, V311, &[0xa2, 0x0c, 0x00, 0x0a, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x03, b'c', b'/', b'd']);
}

#[test]
fn v311_unsuback() {
    let p = Packet::UnsubAck(UnsubAck {
        packet_id: pid(10),
        properties: Properties::empty(),
        codes: List::from_slice(&[]),
    });
    check(p, V311, &[0xb0, 0x02, 0x00, 0x0a]);
}

#[test]
fn v311_ping_and_disconnect() {
    check(Packet::PingReq, V311, &[0xc0, 0x00]);
    check(Packet::PingResp, V311, &[0xd0, 0x00]);
    check(Packet::Disconnect(Disconnect::normal()), V311, &[0xe0, 0x00]);
    check(Packet::PingReq, V31, &[0xc0, 0x00]);
    check(Packet::Disconnect(Disconnect::normal()), V31, &[0xe0, 0x00]);
}

// ---------------------------------------------------------------------------------------------------------------
// MQTT 5.0
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn v5_connect_spec_example() {
    // Spec 3.1.2.12 example variable header: "MQTT", level 5, flags 0xCE, keep alive 10, properties length 5,
    // Session Expiry Interval 10.
    let props = [Property::SessionExpiryInterval(10)];
    let will_props = [Property::WillDelayInterval(5)];
    let p = Packet::Connect(Connect {
        protocol: V5,
        clean_start: true,
        keep_alive: 10,
        properties: Properties::from_list(&props),
        client_id: "c1",
        will: Some(Will {
            topic: topic("w/t"),
            payload: b"bye",
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Properties::from_list(&will_props),
        }),
        username: Some("user"),
        password: Some(b"pass"),
    });
    // 10 + 6 (properties) + 4 (client id) + 6 (will properties) + 5 + 5 + 6 + 6 = 48
    let bytes = cat(&[
        &[0x10, 0x30],
        &[0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0xce, 0x00, 0x0a],
        &[0x05, 0x11, 0x00, 0x00, 0x00, 0x0a],
        &[0x00, 0x02, b'c', b'1'],
        &[0x05, 0x18, 0x00, 0x00, 0x00, 0x05],
        &[0x00, 0x03, b'w', b'/', b't'],
        &[0x00, 0x03, b'b', b'y', b'e'],
        &[0x00, 0x04, b'u', b's', b'e', b'r'],
        &[0x00, 0x04, b'p', b'a', b's', b's'],
    ]);
    check(p, V5, &bytes);
}

#[test]
fn v5_connect_all_connect_and_will_properties() {
    let props = [
        Property::SessionExpiryInterval(0xffff_ffff),
        Property::ReceiveMaximum(100),
        Property::MaximumPacketSize(65_536),
        Property::TopicAliasMaximum(8),
        Property::RequestResponseInformation(true),
        Property::RequestProblemInformation(false),
        Property::UserProperty("k", "v"),
        Property::UserProperty("k", "v"),
        Property::AuthenticationMethod("m"),
        Property::AuthenticationData(&[7]),
    ];
    let will_props = [
        Property::WillDelayInterval(1),
        Property::PayloadFormatIndicator(true),
        Property::MessageExpiryInterval(2),
        Property::ContentType("t"),
        Property::ResponseTopic("r"),
        Property::CorrelationData(&[9]),
        Property::UserProperty("a", "b"),
    ];
    // A password without a user name is allowed in MQTT 5.
    let p = Packet::Connect(Connect {
        protocol: V5,
        clean_start: false,
        keep_alive: 0xffff,
        properties: Properties::from_list(&props),
        client_id: "id",
        will: Some(Will {
            topic: topic("w"),
            payload: b"",
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: Properties::from_list(&will_props),
        }),
        username: None,
        password: Some(b"pw"),
    });
    // properties: 5 + 3 + 5 + 3 + 2 + 2 + 7 + 7 + 4 + 4 = 42
    // will properties: 5 + 2 + 5 + 4 + 4 + 4 + 7 = 31
    // remaining: 10 + 43 + 4 + 32 + 3 + 2 + 4 = 98
    // flags: password 0x40 | will retain 0x20 | will QoS 2 0x10 | will 0x04 = 0x74
    let bytes = cat(&[
        &[0x10, 98],
        &[0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x74, 0xff, 0xff],
        &[42],
        &[0x11, 0xff, 0xff, 0xff, 0xff],
        &[0x21, 0x00, 100],
        &[0x27, 0x00, 0x01, 0x00, 0x00],
        &[0x22, 0x00, 0x08],
        &[0x19, 0x01],
        &[0x17, 0x00],
        &[0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v'],
        &[0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v'],
        &[0x15, 0x00, 0x01, b'm'],
        &[0x16, 0x00, 0x01, 0x07],
        &[0x00, 0x02, b'i', b'd'],
        &[31],
        &[0x18, 0x00, 0x00, 0x00, 0x01],
        &[0x01, 0x01],
        &[0x02, 0x00, 0x00, 0x00, 0x02],
        &[0x03, 0x00, 0x01, b't'],
        &[0x08, 0x00, 0x01, b'r'],
        &[0x09, 0x00, 0x01, 0x09],
        &[0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'b'],
        &[0x00, 0x01, b'w'],
        &[0x00, 0x00],
        &[0x00, 0x02, b'p', b'w'],
    ]);
    check(p, V5, &bytes);
}

#[test]
fn v5_connack_with_many_properties() {
    let props = [
        Property::SessionExpiryInterval(3600),
        Property::ReceiveMaximum(20),
        Property::MaximumQoS(QoS::AtLeastOnce),
        Property::RetainAvailable(false),
        Property::MaximumPacketSize(1 << 20),
        Property::AssignedClientIdentifier("auto-1"),
        Property::TopicAliasMaximum(10),
        Property::ReasonString("ok"),
        Property::UserProperty("k", "v"),
        Property::WildcardSubscriptionAvailable(true),
        Property::SubscriptionIdentifierAvailable(true),
        Property::SharedSubscriptionAvailable(false),
        Property::ServerKeepAlive(30),
        Property::ResponseInformation("r"),
        Property::ServerReference("s"),
        Property::AuthenticationMethod("m"),
        Property::AuthenticationData(&[1, 2]),
    ];
    let p = Packet::ConnAck(ConnAck {
        session_present: false,
        code: ReasonCode::Success,
        properties: Properties::from_list(&props),
    });
    // 5+3+2+2+5+9+3+5+7+2+2+2+3+4+4+4+5 = 67 bytes of properties; remaining 2 + 1 + 67 = 70
    let bytes = cat(&[
        &[0x20, 70, 0x00, 0x00, 67],
        &[0x11, 0x00, 0x00, 0x0e, 0x10],
        &[0x21, 0x00, 0x14],
        &[0x24, 0x01],
        &[0x25, 0x00],
        &[0x27, 0x00, 0x10, 0x00, 0x00],
        &[0x12, 0x00, 0x06, b'a', b'u', b't', b'o', b'-', b'1'],
        &[0x22, 0x00, 0x0a],
        &[0x1f, 0x00, 0x02, b'o', b'k'],
        &[0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v'],
        &[0x28, 0x01],
        &[0x29, 0x01],
        &[0x2a, 0x00],
        &[0x13, 0x00, 0x1e],
        &[0x1a, 0x00, 0x01, b'r'],
        &[0x1c, 0x00, 0x01, b's'],
        &[0x15, 0x00, 0x01, b'm'],
        &[0x16, 0x00, 0x02, 0x01, 0x02],
    ]);
    check(p, V5, &bytes);
    let decoded = decode(&bytes, V5).unwrap();
    let Packet::ConnAck(c) = decoded else { panic!("not a CONNACK: {decoded:?}") };
    assert_eq!(c.properties.assigned_client_identifier(), Some("auto-1"));
    assert_eq!(c.properties.maximum_qos(), Some(QoS::AtLeastOnce));
    assert_eq!(c.properties.maximum_packet_size(), Some(1 << 20));
    assert_eq!(c.properties.authentication_data(), Some(&[1u8, 2][..]));
}

#[test]
fn v5_connack_refused_without_properties() {
    let p =
        Packet::ConnAck(ConnAck { session_present: false, code: ReasonCode::Banned, properties: Properties::empty() });
    check(p, V5, &[0x20, 0x03, 0x00, 0x8a, 0x00]);
}

#[test]
fn v5_publish_with_every_publish_property() {
    let props = [
        Property::PayloadFormatIndicator(true),
        Property::MessageExpiryInterval(60),
        Property::TopicAlias(5),
        Property::ResponseTopic("r/t"),
        Property::CorrelationData(&[0xde, 0xad]),
        Property::UserProperty("a", "1"),
        Property::UserProperty("a", "2"),
        Property::SubscriptionIdentifier(1),
        Property::SubscriptionIdentifier(268_435_455),
        Property::ContentType("text/plain"),
    ];
    let p = Packet::Publish(Publish {
        dup: false,
        qos_pid: QosPid::AtLeastOnce(pid(10)),
        retain: false,
        topic: topic("a/b"),
        properties: Properties::from_list(&props),
        payload: b"hi",
    });
    // properties: 2+5+3+6+5+7+7+2+5+13 = 55; remaining 5 + 2 + 1 + 55 + 2 = 65
    let bytes = cat(&[
        &[0x32, 65, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0a, 55],
        &[0x01, 0x01],
        &[0x02, 0x00, 0x00, 0x00, 0x3c],
        &[0x23, 0x00, 0x05],
        &[0x08, 0x00, 0x03, b'r', b'/', b't'],
        &[0x09, 0x00, 0x02, 0xde, 0xad],
        &[0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'1'],
        &[0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'2'],
        &[0x0b, 0x01],
        &[0x0b, 0xff, 0xff, 0xff, 0x7f],
        &[0x03, 0x00, 0x0a],
        b"text/plain",
        b"hi",
    ]);
    check(p, V5, &bytes);
    let Packet::Publish(decoded) = decode(&bytes, V5).unwrap() else { panic!("not a PUBLISH") };
    let ids: Vec<u32> = decoded
        .properties
        .iter()
        .filter_map(|p| if let Property::SubscriptionIdentifier(v) = p { Some(v) } else { None })
        .collect();
    assert_eq!(ids, [1, 268_435_455]);
    assert_eq!(decoded.properties.topic_alias(), Some(5));
    assert_eq!(decoded.properties.content_type(), Some("text/plain"));
}

#[test]
fn v5_publish_spec_example_and_topic_alias() {
    // Spec 3.3.2.3 example: topic "a/b", packet identifier 10, no properties.
    let p = Packet::Publish(Publish {
        dup: false,
        qos_pid: QosPid::AtLeastOnce(pid(10)),
        retain: false,
        topic: topic("a/b"),
        properties: Properties::empty(),
        payload: b"",
    });
    check(p, V5, &[0x32, 0x08, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0a, 0x00]);
    // An empty topic name with a Topic Alias.
    let props = [Property::TopicAlias(7)];
    let p = Packet::Publish(Publish {
        dup: false,
        qos_pid: QosPid::AtMostOnce,
        retain: true,
        topic: TopicName::empty(),
        properties: Properties::from_list(&props),
        payload: b"x",
    });
    check(p, V5, &[0x31, 0x07, 0x00, 0x00, 0x03, 0x23, 0x00, 0x07, b'x']);
}

#[test]
fn v5_puback_forms() {
    // Success without properties: the reason code is omitted.
    check(Packet::PubAck(Ack::new(pid(10))), V5, &[0x40, 0x02, 0x00, 0x0a]);
    // A reason code without properties: the property length is omitted.
    let ack = Ack { packet_id: pid(10), reason: ReasonCode::NoMatchingSubscribers, properties: Properties::empty() };
    check(Packet::PubAck(ack), V5, &[0x40, 0x03, 0x00, 0x0a, 0x10]);
    let props = [Property::ReasonString("none")];
    let ack = Ack {
        packet_id: pid(10),
        reason: ReasonCode::NoMatchingSubscribers,
        properties: Properties::from_list(&props),
    };
    check(Packet::PubAck(ack), V5, &[0x40, 0x0b, 0x00, 0x0a, 0x10, 0x07, 0x1f, 0x00, 0x04, b'n', b'o', b'n', b'e']);
    // Success with properties keeps the reason byte.
    let props = [Property::UserProperty("k", "v")];
    let ack = Ack { packet_id: pid(1), reason: ReasonCode::Success, properties: Properties::from_list(&props) };
    check(Packet::PubAck(ack), V5, &[0x40, 0x0b, 0x00, 0x01, 0x00, 0x07, 0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v']);
}

#[test]
fn v5_pubrec_pubrel_pubcomp() {
    let props = [Property::UserProperty("k", "v")];
    let rec = Ack { packet_id: pid(10), reason: ReasonCode::QuotaExceeded, properties: Properties::from_list(&props) };
    check(Packet::PubRec(rec), V5, &[0x50, 0x0b, 0x00, 0x0a, 0x97, 0x07, 0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v']);
    let rel = Ack { packet_id: pid(10), reason: ReasonCode::PacketIdentifierNotFound, properties: Properties::empty() };
    check(Packet::PubRel(rel), V5, &[0x62, 0x03, 0x00, 0x0a, 0x92]);
    check(Packet::PubRel(Ack::new(pid(10))), V5, &[0x62, 0x02, 0x00, 0x0a]);
    check(Packet::PubComp(Ack::new(pid(10))), V5, &[0x70, 0x02, 0x00, 0x0a]);
    let props = [Property::ReasonString("gone")];
    let comp = Ack {
        packet_id: pid(10),
        reason: ReasonCode::PacketIdentifierNotFound,
        properties: Properties::from_list(&props),
    };
    check(Packet::PubComp(comp), V5, &[0x70, 0x0b, 0x00, 0x0a, 0x92, 0x07, 0x1f, 0x00, 0x04, b'g', b'o', b'n', b'e']);
}

#[test]
fn v5_subscribe_with_options_and_shared_filter() {
    let props = [Property::SubscriptionIdentifier(1), Property::UserProperty("k", "v")];
    let subs = [
        Subscription {
            filter: filter("a/+"),
            options: SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                no_local: true,
                retain_as_published: true,
                retain_handling: RetainHandling::SendAtNewSubscribe,
            },
        },
        Subscription {
            filter: filter("$share/g/f"),
            options: SubscriptionOptions {
                qos: QoS::AtMostOnce,
                no_local: false,
                retain_as_published: false,
                retain_handling: RetainHandling::DoNotSend,
            },
        },
        Subscription { filter: filter("#"), options: SubscriptionOptions::qos(QoS::ExactlyOnce) },
    ];
    let p = Packet::Subscribe(Subscribe {
        packet_id: pid(10),
        properties: Properties::from_list(&props),
        subscriptions: List::from_slice(&subs),
    });
    // properties 2 + 7 = 9; entries 6 + 13 + 4 = 23; remaining 2 + 1 + 9 + 23 = 35
    let bytes = cat(&[
        &[0x82, 35, 0x00, 0x0a, 9, 0x0b, 0x01, 0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v'],
        &[0x00, 0x03, b'a', b'/', b'+', 0x1d],
        &[0x00, 0x0a],
        b"$share/g/f",
        &[0x20],
        &[0x00, 0x01, b'#', 0x02],
    ]);
    check(p, V5, &bytes);
}

#[test]
fn v5_suback_with_reason_codes() {
    let props = [Property::ReasonString("r")];
    let codes = [
        ReasonCode::Success,
        ReasonCode::GrantedQoS1,
        ReasonCode::GrantedQoS2,
        ReasonCode::UnspecifiedError,
        ReasonCode::ImplementationSpecificError,
        ReasonCode::NotAuthorized,
        ReasonCode::TopicFilterInvalid,
        ReasonCode::PacketIdentifierInUse,
        ReasonCode::QuotaExceeded,
        ReasonCode::SharedSubscriptionsNotSupported,
        ReasonCode::SubscriptionIdentifiersNotSupported,
        ReasonCode::WildcardSubscriptionsNotSupported,
    ];
    let p = Packet::SubAck(SubAck {
        packet_id: pid(10),
        properties: Properties::from_list(&props),
        codes: List::from_slice(&codes),
    });
    let bytes = [
        0x90, 0x13, 0x00, 0x0a, 0x04, 0x1f, 0x00, 0x01, b'r', 0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8f, 0x91, 0x97,
        0x9e, 0xa1, 0xa2,
    ];
    check(p, V5, &bytes);
}

#[test]
fn v5_unsubscribe() {
    let props = [Property::UserProperty("k", "v")];
    let filters = [filter("a/b"), filter("$share/g/f")];
    let p = Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(10),
        properties: Properties::from_list(&props),
        filters: List::from_slice(&filters),
    });
    let bytes = cat(&[
        &[0xa2, 0x1b, 0x00, 0x0a, 0x07, 0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v'],
        &[0x00, 0x03, b'a', b'/', b'b'],
        &[0x00, 0x0a],
        b"$share/g/f",
    ]);
    check(p, V5, &bytes);
}

#[test]
fn v5_unsuback_with_reason_codes() {
    let codes = [
        ReasonCode::Success,
        ReasonCode::NoSubscriptionExisted,
        ReasonCode::UnspecifiedError,
        ReasonCode::ImplementationSpecificError,
        ReasonCode::NotAuthorized,
        ReasonCode::TopicFilterInvalid,
        ReasonCode::PacketIdentifierInUse,
    ];
    let p = Packet::UnsubAck(UnsubAck {
        packet_id: pid(10),
        properties: Properties::empty(),
        codes: List::from_slice(&codes),
    });
    check(p, V5, &[0xb0, 0x0a, 0x00, 0x0a, 0x00, 0x00, 0x11, 0x80, 0x83, 0x87, 0x8f, 0x91]);
}

#[test]
fn v5_ping() {
    check(Packet::PingReq, V5, &[0xc0, 0x00]);
    check(Packet::PingResp, V5, &[0xd0, 0x00]);
}

#[test]
fn v5_disconnect_forms() {
    // An empty DISCONNECT is a Normal Disconnection.
    check(Packet::Disconnect(Disconnect::normal()), V5, &[0xe0, 0x00]);
    check(Packet::Disconnect(Disconnect::with_reason(ReasonCode::ServerShuttingDown)), V5, &[0xe0, 0x01, 0x8b]);
    let props = [
        Property::SessionExpiryInterval(0),
        Property::ReasonString("bye"),
        Property::ServerReference("srv"),
        Property::UserProperty("k", "v"),
    ];
    let p = Packet::Disconnect(Disconnect {
        reason: ReasonCode::DisconnectWithWillMessage,
        properties: Properties::from_list(&props),
    });
    // properties 5 + 6 + 6 + 7 = 24; remaining 1 + 1 + 24 = 26
    let bytes = cat(&[
        &[0xe0, 26, 0x04, 24],
        &[0x11, 0x00, 0x00, 0x00, 0x00],
        &[0x1f, 0x00, 0x03, b'b', b'y', b'e'],
        &[0x1c, 0x00, 0x03, b's', b'r', b'v'],
        &[0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v'],
    ]);
    check(p, V5, &bytes);
}

#[test]
fn v5_auth() {
    let props = [Property::AuthenticationMethod("SCRAM-SHA-1"), Property::AuthenticationData(&[1, 2, 3])];
    let p =
        Packet::Auth(Auth { reason: ReasonCode::ContinueAuthentication, properties: Properties::from_list(&props) });
    // properties 14 + 6 = 20; remaining 22
    let bytes = cat(&[&[0xf0, 22, 0x18, 20, 0x15, 0x00, 0x0b], b"SCRAM-SHA-1", &[0x16, 0x00, 0x03, 1, 2, 3]]);
    check(p, V5, &bytes);
    // Success with nothing else: both fields omitted.
    check(Packet::Auth(Auth { reason: ReasonCode::Success, properties: Properties::empty() }), V5, &[0xf0, 0x00]);
    // Re-authentication names its method (omitting it is a protocol error, spec 3.15.2.2.2).
    let props = [Property::AuthenticationMethod("m")];
    let p = Packet::Auth(Auth { reason: ReasonCode::ReAuthenticate, properties: Properties::from_list(&props) });
    check(p, V5, &[0xf0, 0x06, 0x19, 0x04, 0x15, 0x00, 0x01, b'm']);
}

#[test]
fn v3_rejects_encoding_v5_only_things() {
    use mqtt_codec::EncodeError;
    let p = Packet::Auth(Auth { reason: ReasonCode::Success, properties: Properties::empty() });
    assert_eq!(p.encoded_len(V311), Err(EncodeError::NotInVersion));
    let p = Packet::Disconnect(Disconnect::with_reason(ReasonCode::ServerShuttingDown));
    assert_eq!(p.encoded_len(V311), Err(EncodeError::NotInVersion));
    let p =
        Packet::ConnAck(ConnAck { session_present: false, code: ReasonCode::Banned, properties: Properties::empty() });
    assert_eq!(p.encoded_len(V311), Err(EncodeError::NotInVersion));
}
