//! Malformed packets: a table of hand-built byte strings, each with the exact `DecodeError` the codec must give.
//!
//! For information only, the test also counts how many of these `mqttbytes` 0.6 accepts (it is lax by design) and
//! prints the count; only our codec is asserted to reject every case.

use std::panic::{AssertUnwindSafe, catch_unwind};

use bytes::BytesMut;
use mqtt_codec::{DecodeError as E, Disconnect, Packet, ProtocolVersion, decode, frame_len};

const V311: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// A length-prefixed UTF-8 string or binary field.
fn s(v: &[u8]) -> Vec<u8> {
    let mut out = u16::try_from(v.len()).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(v);
    out
}

/// A whole packet: first byte, Remaining Length (computed here, not by the codec), then the body pieces.
fn pkt(first: u8, body: &[&[u8]]) -> Vec<u8> {
    let body = body.concat();
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        out.push(b);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(&body);
    out
}

/// A v5 property block: its length byte (blocks here stay under 128 bytes) and the properties.
fn props(p: &[&[u8]]) -> Vec<u8> {
    let p = p.concat();
    assert!(p.len() < 128);
    let mut out = vec![p.len() as u8];
    out.extend_from_slice(&p);
    out
}

/// A v3.1.1 CONNECT with the given flags and payload after the client id "c".
fn connect_v311(flags: u8, rest: &[u8]) -> Vec<u8> {
    pkt(0x10, &[&s(b"MQTT"), &[0x04, flags, 0x00, 0x3c], &s(b"c"), rest])
}

/// A v5 CONNECT with the given flags, property block and payload after the client id "c".
fn connect_v5(flags: u8, properties: &[u8], rest: &[u8]) -> Vec<u8> {
    pkt(0x10, &[&s(b"MQTT"), &[0x05, flags, 0x00, 0x3c], properties, &s(b"c"), rest])
}

struct Case {
    name: &'static str,
    version: ProtocolVersion,
    bytes: Vec<u8>,
    expected: E,
}

fn case(name: &'static str, version: ProtocolVersion, bytes: Vec<u8>, expected: E) -> Case {
    Case { name, version, bytes, expected }
}

#[allow(clippy::vec_init_then_push)]
fn cases() -> Vec<Case> {
    let ab = s(b"a/b");
    let no_props = [0x00u8];
    let mut c = Vec::new();

    // ------------------------------------------------------------------ MQTT 3.1.1
    c.push(case("v3 publish + in topic", V311, pkt(0x30, &[&s(b"a/+")]), E::WildcardInTopicName));
    c.push(case("v3 publish # in topic", V311, pkt(0x30, &[&s(b"a/#")]), E::WildcardInTopicName));
    c.push(case("v3 publish U+0000 in topic", V311, pkt(0x30, &[&s(b"a\0b")]), E::NulInString));
    c.push(case("v3 publish empty topic", V311, pkt(0x30, &[&s(b""), b"x"]), E::EmptyTopic));
    c.push(case("v3 publish DUP with QoS 0", V311, pkt(0x38, &[&ab]), E::DupWithQoS0));
    c.push(case("v3 publish QoS 3", V311, pkt(0x36, &[&ab, &[0, 1]]), E::InvalidQoS));
    c.push(case("v3 publish packet id 0", V311, pkt(0x32, &[&ab, &[0, 0]]), E::ZeroPacketId));
    c.push(case("v3 publish invalid UTF-8 topic", V311, pkt(0x30, &[&s(&[0xc3, 0x28])]), E::InvalidUtf8));
    c.push(case("v3 publish surrogate in topic", V311, pkt(0x30, &[&s(&[0xed, 0xa0, 0x80])]), E::InvalidUtf8));
    c.push(case("v3 publish topic runs past end", V311, pkt(0x30, &[&[0x00, 0x05, b'a', b'b']]), E::Truncated));
    c.push(case("v3 publish QoS 1 without packet id", V311, pkt(0x32, &[&ab]), E::Truncated));
    c.push(case("v3 connect reserved flag", V311, connect_v311(0x03, &[]), E::ReservedConnectFlag));
    c.push(case(
        "v3 connect password without user name",
        V311,
        connect_v311(0x42, &s(b"p")),
        E::PasswordWithoutUsername,
    ));
    c.push(case("v3 connect will QoS without will flag", V311, connect_v311(0x0a, &[]), E::WillFlagsWithoutWill));
    c.push(case("v3 connect will retain without will flag", V311, connect_v311(0x22, &[]), E::WillFlagsWithoutWill));
    c.push(case("v3 connect will QoS 3", V311, connect_v311(0x1e, &[&s(b"w")[..], &s(b"x")].concat()), E::InvalidQoS));
    c.push(case(
        "v3 connect wildcard in will topic",
        V311,
        connect_v311(0x06, &[&s(b"w/#")[..], &s(b"x")].concat()),
        E::WildcardInTopicName,
    ));
    c.push(case(
        "v3 connect bad protocol name",
        V311,
        pkt(0x10, &[&s(b"MQTX"), &[0x04, 0x02, 0x00, 0x3c], &s(b"c")]),
        E::InvalidProtocolName,
    ));
    c.push(case(
        "v3 connect unsupported level 6",
        V311,
        pkt(0x10, &[&s(b"MQTT"), &[0x06, 0x02, 0x00, 0x3c], &s(b"c")]),
        E::UnsupportedProtocolLevel(6),
    ));
    c.push(case(
        "v3 connect MQIsdp with level 4",
        V311,
        pkt(0x10, &[&s(b"MQIsdp"), &[0x04, 0x02, 0x00, 0x3c], &s(b"c")]),
        E::UnsupportedProtocolLevel(4),
    ));
    c.push(case("v3 connect trailing byte", V311, connect_v311(0x02, &[0x00]), E::TrailingBytes));
    c.push(case("v3 connect user name missing", V311, connect_v311(0x82, &[]), E::Truncated));
    c.push(case(
        "v3 connect header flags",
        V311,
        pkt(0x11, &[&s(b"MQTT"), &[0x04, 0x02, 0x00, 0x3c], &s(b"c")]),
        E::InvalidHeaderFlags { packet_type: 1, flags: 1 },
    ));
    c.push(case("v3 connack reserved flag bits", V311, vec![0x20, 0x02, 0x02, 0x00], E::InvalidConnAckFlags));
    c.push(case(
        "v3 connack return code 6",
        V311,
        vec![0x20, 0x02, 0x00, 0x06],
        E::InvalidReasonCode { packet_type: 2, code: 6 },
    ));
    c.push(case(
        "v3 connack session present on refusal",
        V311,
        vec![0x20, 0x02, 0x01, 0x05],
        E::SessionPresentOnRefusal,
    ));
    c.push(case("v3 connack trailing byte", V311, vec![0x20, 0x03, 0x00, 0x00, 0x00], E::TrailingBytes));
    c.push(case("v3 puback packet id 0", V311, vec![0x40, 0x02, 0x00, 0x00], E::ZeroPacketId));
    c.push(case("v3 puback reason code byte", V311, vec![0x40, 0x03, 0x00, 0x01, 0x00], E::TrailingBytes));
    c.push(case("v3 puback truncated packet id", V311, vec![0x40, 0x01, 0x00], E::Truncated));
    c.push(case(
        "v3 puback header flags",
        V311,
        vec![0x42, 0x02, 0x00, 0x01],
        E::InvalidHeaderFlags { packet_type: 4, flags: 2 },
    ));
    c.push(case("v3 pubrec packet id 0", V311, vec![0x50, 0x02, 0x00, 0x00], E::ZeroPacketId));
    c.push(case(
        "v3 pubrel flags 0",
        V311,
        vec![0x60, 0x02, 0x00, 0x01],
        E::InvalidHeaderFlags { packet_type: 6, flags: 0 },
    ));
    c.push(case("v3 pubcomp packet id 0", V311, vec![0x70, 0x02, 0x00, 0x00], E::ZeroPacketId));
    c.push(case(
        "v3 subscribe flags 0",
        V311,
        pkt(0x80, &[&[0, 1], &ab, &[0]]),
        E::InvalidHeaderFlags { packet_type: 8, flags: 0 },
    ));
    c.push(case("v3 subscribe empty", V311, pkt(0x82, &[&[0, 1]]), E::EmptySubscribe));
    c.push(case("v3 subscribe packet id 0", V311, pkt(0x82, &[&[0, 0], &ab, &[0]]), E::ZeroPacketId));
    c.push(case("v3 subscribe filter a/#/b", V311, pkt(0x82, &[&[0, 1], &s(b"a/#/b"), &[0]]), E::InvalidTopicFilter));
    c.push(case("v3 subscribe filter a+", V311, pkt(0x82, &[&[0, 1], &s(b"a+"), &[0]]), E::InvalidTopicFilter));
    c.push(case("v3 subscribe filter #/a", V311, pkt(0x82, &[&[0, 1], &s(b"#/a"), &[0]]), E::InvalidTopicFilter));
    c.push(case("v3 subscribe empty filter", V311, pkt(0x82, &[&[0, 1], &s(b""), &[0]]), E::InvalidTopicFilter));
    c.push(case("v3 subscribe U+0000 in filter", V311, pkt(0x82, &[&[0, 1], &s(b"a\0"), &[0]]), E::NulInString));
    c.push(case(
        "v3 subscribe no-local bit is reserved",
        V311,
        pkt(0x82, &[&[0, 1], &ab, &[0x04]]),
        E::ReservedSubscriptionOptions,
    ));
    c.push(case("v3 subscribe requested QoS 3", V311, pkt(0x82, &[&[0, 1], &ab, &[0x03]]), E::InvalidQoS));
    c.push(case("v3 subscribe options byte missing", V311, pkt(0x82, &[&[0, 1], &ab]), E::Truncated));
    c.push(case(
        "v3 suback return code 3",
        V311,
        vec![0x90, 0x03, 0x00, 0x01, 0x03],
        E::InvalidReasonCode { packet_type: 9, code: 3 },
    ));
    c.push(case(
        "v3 suback v5-only code 0x87",
        V311,
        vec![0x90, 0x03, 0x00, 0x01, 0x87],
        E::InvalidReasonCode { packet_type: 9, code: 0x87 },
    ));
    c.push(case("v3 suback without return codes", V311, vec![0x90, 0x02, 0x00, 0x01], E::EmptyPayload));
    c.push(case("v3 unsubscribe empty", V311, pkt(0xa2, &[&[0, 1]]), E::EmptyUnsubscribe));
    c.push(case(
        "v3 unsubscribe flags 0",
        V311,
        pkt(0xa0, &[&[0, 1], &ab]),
        E::InvalidHeaderFlags { packet_type: 10, flags: 0 },
    ));
    c.push(case("v3 unsubscribe packet id 0", V311, pkt(0xa2, &[&[0, 0], &ab]), E::ZeroPacketId));
    c.push(case("v3 unsuback with a reason code", V311, vec![0xb0, 0x03, 0x00, 0x01, 0x00], E::TrailingBytes));
    c.push(case("v3 pingreq with a body", V311, vec![0xc0, 0x01, 0x00], E::TrailingBytes));
    c.push(case(
        "v3 pingreq header flags",
        V311,
        vec![0xc1, 0x00],
        E::InvalidHeaderFlags { packet_type: 12, flags: 1 },
    ));
    c.push(case(
        "v3 pingresp header flags",
        V311,
        vec![0xd8, 0x00],
        E::InvalidHeaderFlags { packet_type: 13, flags: 8 },
    ));
    c.push(case("v3 disconnect with a body", V311, vec![0xe0, 0x01, 0x00], E::TrailingBytes));
    c.push(case("v3 AUTH packet", V311, vec![0xf0, 0x00], E::InvalidPacketType(15)));
    c.push(case("v3 packet type 0", V311, vec![0x00, 0x00], E::InvalidPacketType(0)));
    c.push(case("v3 remaining length of 5 bytes", V311, vec![0x30, 0xff, 0xff, 0xff, 0xff, 0x7f], E::MalformedVarInt));
    // Regression: non-minimal Variable Byte Integers were accepted [MQTT-1.5.5-1].
    c.push(case("v3 remaining length not minimal", V311, vec![0xc0, 0x80, 0x00], E::MalformedVarInt));
    c.push(case(
        "v3 frame shorter than its remaining length",
        V311,
        vec![0x32, 0x0a, 0x00, 0x03, b'a', b'/', b'b'],
        E::Truncated,
    ));

    // ------------------------------------------------------------------ MQTT 5.0
    c.push(case("v5 publish empty topic without alias", V5, pkt(0x30, &[&s(b""), &no_props]), E::EmptyTopic));
    c.push(case("v5 publish + in topic", V5, pkt(0x30, &[&s(b"+"), &no_props]), E::WildcardInTopicName));
    c.push(case("v5 publish topic alias 0", V5, pkt(0x30, &[&s(b""), &props(&[&[0x23, 0, 0]])]), E::TopicAliasZero));
    c.push(case(
        "v5 publish subscription id 0",
        V5,
        pkt(0x30, &[&ab, &props(&[&[0x0b, 0x00]])]),
        E::SubscriptionIdentifierZero,
    ));
    c.push(case(
        "v5 publish duplicate topic alias",
        V5,
        pkt(0x30, &[&ab, &props(&[&[0x23, 0, 1], &[0x23, 0, 2]])]),
        E::DuplicateProperty(0x23),
    ));
    c.push(case(
        "v5 publish duplicate content type",
        V5,
        pkt(0x30, &[&ab, &props(&[&[0x03], &s(b"t"), &[0x03], &s(b"t")])]),
        E::DuplicateProperty(0x03),
    ));
    c.push(case("v5 publish properties overrun packet", V5, pkt(0x30, &[&ab, &[0x05, 0x01, 0x01]]), E::Truncated));
    c.push(case(
        "v5 publish property overruns its block",
        V5,
        pkt(0x30, &[&ab, &[0x02, 0x02, 0x00], &[0, 0, 0, 0]]),
        E::Truncated,
    ));
    c.push(case(
        "v5 publish session expiry not allowed",
        V5,
        pkt(0x30, &[&ab, &props(&[&[0x11, 0, 0, 0, 1]])]),
        E::PropertyNotAllowed(0x11),
    ));
    c.push(case(
        "v5 publish unknown property 0x05",
        V5,
        pkt(0x30, &[&ab, &props(&[&[0x05, 0]])]),
        E::InvalidPropertyId(5),
    ));
    c.push(case(
        "v5 publish payload format indicator 2",
        V5,
        pkt(0x30, &[&ab, &props(&[&[0x01, 0x02]])]),
        E::InvalidPropertyValue(0x01),
    ));
    c.push(case(
        "v5 publish response topic with wildcard",
        V5,
        pkt(0x30, &[&ab, &props(&[&[0x08], &s(b"r/#")])]),
        E::WildcardInTopicName,
    ));
    c.push(case(
        "v5 publish invalid UTF-8 user property",
        V5,
        pkt(0x30, &[&ab, &props(&[&[0x26], &s(&[0xff]), &s(b"v")])]),
        E::InvalidUtf8,
    ));
    c.push(case(
        "v5 publish U+0000 in content type",
        V5,
        pkt(0x30, &[&ab, &props(&[&[0x03], &s(b"a\0")])]),
        E::NulInString,
    ));
    c.push(case(
        "v5 publish property length of 5 bytes",
        V5,
        pkt(0x30, &[&ab, &[0xff, 0xff, 0xff, 0xff, 0x7f]]),
        E::MalformedVarInt,
    ));
    c.push(case(
        "v5 publish subscription id not minimal",
        V5,
        pkt(0x30, &[&ab, &props(&[&[0x0b, 0x81, 0x00]])]),
        E::MalformedVarInt,
    ));
    c.push(case("v5 publish property length not minimal", V5, pkt(0x30, &[&ab, &[0x80, 0x00]]), E::MalformedVarInt));
    c.push(case(
        "v5 auth data without method",
        V5,
        pkt(0xf0, &[&[0x18], &props(&[&[0x16], &s(b"d")])]),
        E::AuthDataWithoutMethod,
    ));
    c.push(case("v5 publish packet id 0", V5, pkt(0x34, &[&ab, &[0, 0], &no_props]), E::ZeroPacketId));
    c.push(case("v5 publish DUP with QoS 0", V5, pkt(0x39, &[&ab, &no_props]), E::DupWithQoS0));
    c.push(case("v5 publish QoS 3", V5, pkt(0x37, &[&ab, &[0, 1], &no_props]), E::InvalidQoS));
    c.push(case(
        "v5 connect duplicate session expiry",
        V5,
        connect_v5(0x02, &props(&[&[0x11, 0, 0, 0, 1], &[0x11, 0, 0, 0, 2]]), &[]),
        E::DuplicateProperty(0x11),
    ));
    c.push(case(
        "v5 connect receive maximum 0",
        V5,
        connect_v5(0x02, &props(&[&[0x21, 0, 0]]), &[]),
        E::ReceiveMaximumZero,
    ));
    c.push(case(
        "v5 connect maximum packet size 0",
        V5,
        connect_v5(0x02, &props(&[&[0x27, 0, 0, 0, 0]]), &[]),
        E::MaximumPacketSizeZero,
    ));
    c.push(case(
        "v5 connect auth data without method",
        V5,
        connect_v5(0x02, &props(&[&[0x16], &s(b"d")]), &[]),
        E::AuthDataWithoutMethod,
    ));
    c.push(case(
        "v5 connect topic alias in will properties",
        V5,
        connect_v5(0x06, &no_props, &[&props(&[&[0x23, 0, 1]])[..], &s(b"w"), &s(b"x")].concat()),
        E::PropertyNotAllowed(0x23),
    ));
    c.push(case(
        "v5 connect will delay in connect properties",
        V5,
        connect_v5(0x02, &props(&[&[0x18, 0, 0, 0, 1]]), &[]),
        E::PropertyNotAllowed(0x18),
    ));
    c.push(case("v5 connect reserved flag", V5, connect_v5(0x03, &no_props, &[]), E::ReservedConnectFlag));
    c.push(case(
        "v5 connect will QoS without will flag",
        V5,
        connect_v5(0x12, &no_props, &[]),
        E::WillFlagsWithoutWill,
    ));
    c.push(case("v5 connect properties missing", V5, connect_v5(0x02, &[], &[]), E::Truncated));
    c.push(case("v5 connack reserved flag bits", V5, vec![0x20, 0x03, 0x80, 0x00, 0x00], E::InvalidConnAckFlags));
    c.push(case(
        "v5 connack reason code 0x10",
        V5,
        vec![0x20, 0x03, 0x00, 0x10, 0x00],
        E::InvalidReasonCode { packet_type: 2, code: 0x10 },
    ));
    c.push(case(
        "v5 connack maximum QoS 2",
        V5,
        pkt(0x20, &[&[0x00, 0x00], &props(&[&[0x24, 0x02]])]),
        E::InvalidPropertyValue(0x24),
    ));
    c.push(case(
        "v5 connack topic alias not allowed",
        V5,
        pkt(0x20, &[&[0x00, 0x00], &props(&[&[0x23, 0, 1]])]),
        E::PropertyNotAllowed(0x23),
    ));
    c.push(case("v5 connack without property length", V5, vec![0x20, 0x02, 0x00, 0x00], E::Truncated));
    c.push(case(
        "v5 puback reason code 0x92",
        V5,
        vec![0x40, 0x03, 0x00, 0x01, 0x92],
        E::InvalidReasonCode { packet_type: 4, code: 0x92 },
    ));
    c.push(case(
        "v5 pubrel reason code 0x10",
        V5,
        vec![0x62, 0x03, 0x00, 0x01, 0x10],
        E::InvalidReasonCode { packet_type: 6, code: 0x10 },
    ));
    c.push(case(
        "v5 puback topic alias not allowed",
        V5,
        pkt(0x40, &[&[0, 1, 0x00], &props(&[&[0x23, 0, 1]])]),
        E::PropertyNotAllowed(0x23),
    ));
    c.push(case("v5 pubcomp packet id 0", V5, vec![0x70, 0x03, 0x00, 0x00, 0x00], E::ZeroPacketId));
    c.push(case(
        "v5 subscribe no-local on shared subscription",
        V5,
        pkt(0x82, &[&[0, 1], &no_props, &s(b"$share/g/f"), &[0x04]]),
        E::NoLocalOnSharedSubscription,
    ));
    c.push(case(
        "v5 subscribe reserved option bits",
        V5,
        pkt(0x82, &[&[0, 1], &no_props, &ab, &[0x40]]),
        E::ReservedSubscriptionOptions,
    ));
    c.push(case(
        "v5 subscribe retain handling 3",
        V5,
        pkt(0x82, &[&[0, 1], &no_props, &ab, &[0x30]]),
        E::InvalidRetainHandling,
    ));
    c.push(case(
        "v5 subscribe two subscription identifiers",
        V5,
        pkt(0x82, &[&[0, 1], &props(&[&[0x0b, 1], &[0x0b, 2]]), &ab, &[0]]),
        E::DuplicateProperty(0x0b),
    ));
    c.push(case(
        "v5 subscribe subscription id 0",
        V5,
        pkt(0x82, &[&[0, 1], &props(&[&[0x0b, 0]]), &ab, &[0]]),
        E::SubscriptionIdentifierZero,
    ));
    c.push(case(
        "v5 subscribe shared without group",
        V5,
        pkt(0x82, &[&[0, 1], &no_props, &s(b"$share//f"), &[0]]),
        E::InvalidSharedSubscription,
    ));
    c.push(case("v5 subscribe empty", V5, pkt(0x82, &[&[0, 1], &no_props]), E::EmptySubscribe));
    c.push(case(
        "v5 subscribe filter a/#/b",
        V5,
        pkt(0x82, &[&[0, 1], &no_props, &s(b"a/#/b"), &[0]]),
        E::InvalidTopicFilter,
    ));
    c.push(case(
        "v5 suback reason code 0x11",
        V5,
        vec![0x90, 0x04, 0x00, 0x01, 0x00, 0x11],
        E::InvalidReasonCode { packet_type: 9, code: 0x11 },
    ));
    c.push(case("v5 suback without reason codes", V5, vec![0x90, 0x03, 0x00, 0x01, 0x00], E::EmptyPayload));
    c.push(case("v5 unsuback without reason codes", V5, vec![0xb0, 0x03, 0x00, 0x01, 0x00], E::EmptyPayload));
    c.push(case(
        "v5 unsuback reason code 0x01",
        V5,
        vec![0xb0, 0x04, 0x00, 0x01, 0x00, 0x01],
        E::InvalidReasonCode { packet_type: 11, code: 0x01 },
    ));
    c.push(case("v5 unsubscribe filter a+", V5, pkt(0xa2, &[&[0, 1], &no_props, &s(b"a+")]), E::InvalidTopicFilter));
    c.push(case("v5 unsubscribe empty", V5, pkt(0xa2, &[&[0, 1], &no_props]), E::EmptyUnsubscribe));
    c.push(case(
        "v5 disconnect reason code 0x19",
        V5,
        vec![0xe0, 0x01, 0x19],
        E::InvalidReasonCode { packet_type: 14, code: 0x19 },
    ));
    c.push(case(
        "v5 disconnect receive maximum not allowed",
        V5,
        pkt(0xe0, &[&[0x00], &props(&[&[0x21, 0, 1]])]),
        E::PropertyNotAllowed(0x21),
    ));
    c.push(case(
        "v5 disconnect header flags",
        V5,
        vec![0xe1, 0x00],
        E::InvalidHeaderFlags { packet_type: 14, flags: 1 },
    ));
    c.push(case("v5 disconnect trailing byte", V5, vec![0xe0, 0x03, 0x00, 0x00, 0x00], E::TrailingBytes));
    c.push(case(
        "v5 auth reason code 0x87",
        V5,
        vec![0xf0, 0x01, 0x87],
        E::InvalidReasonCode { packet_type: 15, code: 0x87 },
    ));
    c.push(case("v5 auth header flags", V5, vec![0xf2, 0x00], E::InvalidHeaderFlags { packet_type: 15, flags: 2 }));
    c.push(case(
        "v5 auth server reference not allowed",
        V5,
        pkt(0xf0, &[&[0x18], &props(&[&[0x1c], &s(b"s")])]),
        E::PropertyNotAllowed(0x1c),
    ));
    c
}

#[test]
fn every_malformed_case_is_rejected_with_its_error() {
    let cases = cases();
    let v3 = cases.iter().filter(|c| c.version == V311).count();
    let v5 = cases.len() - v3;
    assert!(cases.len() >= 45, "only {} cases", cases.len());
    println!("malformed cases: {} ({v3} v3.1.1, {v5} v5)", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let got = decode(&c.bytes, c.version);
        if got != Err(c.expected) {
            failures.push(format!("{}: expected {:?}, got {:?} for {:02x?}", c.name, c.expected, got, c.bytes));
            continue;
        }
        // The streaming entry point agrees whenever the frame is complete.
        if frame_len(&c.bytes, u32::MAX) == Ok(Some(c.bytes.len())) {
            let streamed = Packet::decode_from(&c.bytes, c.version, u32::MAX);
            if streamed != Err(c.expected) {
                failures.push(format!("{}: decode_from gave {streamed:?}", c.name));
            }
        }
        assert!(!c.expected.to_string().is_empty());
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn case_names_are_unique() {
    let cases = cases();
    let mut names: Vec<_> = cases.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len());
}

#[test]
fn valid_empty_v5_disconnect_decodes() {
    assert_eq!(decode(&[0xe0, 0x00], V5), Ok(Packet::Disconnect(Disconnect::normal())));
    assert_eq!(decode(&[0xe0, 0x00], V311), Ok(Packet::Disconnect(Disconnect::normal())));
}

/// What `mqttbytes` 0.6 makes of one case: accepted, rejected, or a panic inside it.
#[derive(Debug, PartialEq)]
enum Lax {
    Accepted,
    Rejected,
    Panicked,
}

fn mqttbytes_verdict(c: &Case) -> Lax {
    let bytes = c.bytes.clone();
    let v5 = c.version == V5;
    let result = catch_unwind(AssertUnwindSafe(move || {
        let mut stream = BytesMut::from(&bytes[..]);
        if v5 {
            mqttbytes::v5::read(&mut stream, 1 << 28).is_ok()
        } else {
            mqttbytes::v4::read(&mut stream, 1 << 28).is_ok()
        }
    }));
    match result {
        Ok(true) => Lax::Accepted,
        Ok(false) => Lax::Rejected,
        Err(_) => Lax::Panicked,
    }
}

#[test]
fn mqttbytes_acceptance_is_reported() {
    // Silence the default panic message of mqttbytes' own panics while counting them.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let cases = cases();
    let verdicts: Vec<_> = cases.iter().map(|c| (c, mqttbytes_verdict(c))).collect();
    std::panic::set_hook(hook);
    for version in [V311, V5] {
        let of_version: Vec<_> = verdicts.iter().filter(|(c, _)| c.version == version).collect();
        let accepted: Vec<_> = of_version.iter().filter(|(_, v)| *v == Lax::Accepted).map(|(c, _)| c.name).collect();
        let panicked: Vec<_> = of_version.iter().filter(|(_, v)| *v == Lax::Panicked).map(|(c, _)| c.name).collect();
        println!(
            "mqttbytes 0.6 {version:?}: accepts {} of {} malformed cases, panics on {}",
            accepted.len(),
            of_version.len(),
            panicked.len()
        );
        println!("  accepted: {accepted:?}");
        println!("  panicked: {panicked:?}");
    }
    // Ours rejects every one (asserted with the exact error above); check once more without the table's errors.
    for c in &cases {
        assert!(decode(&c.bytes, c.version).is_err(), "{}", c.name);
    }
}
