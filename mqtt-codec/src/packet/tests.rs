//! Golden vectors and hand-checked cases; property tests live in `mqtt-codec/tests/`.

use super::*;
use crate::{PacketId, Properties, Property, QoS, QosPid, ReasonCode, SubscriptionOptions, TopicFilter, TopicName};

const V311: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn pid(v: u16) -> PacketId {
    PacketId::new(v).unwrap()
}

fn round_trip(packet: Packet<'_>, version: ProtocolVersion, bytes: &[u8]) {
    let mut buf = [0u8; 512];
    let n = packet.encode(version, &mut buf).unwrap();
    assert_eq!(&buf[..n], bytes, "encoding of {packet:?}");
    assert_eq!(packet.encoded_len(version).unwrap(), n);
    assert_eq!(decode(bytes, version).unwrap(), packet);
}

#[test]
fn pingreq_pingresp() {
    round_trip(Packet::PingReq, V311, &[0xc0, 0x00]);
    round_trip(Packet::PingResp, V5, &[0xd0, 0x00]);
}

#[test]
fn publish_qos1_v311() {
    let p = Packet::Publish(Publish {
        dup: false,
        qos_pid: QosPid::AtLeastOnce(pid(10)),
        retain: false,
        topic: TopicName::new("a/b").unwrap(),
        properties: Properties::empty(),
        payload: b"hi",
    });
    round_trip(p, V311, &[0x32, 0x09, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0a, b'h', b'i']);
}

#[test]
fn empty_v5_disconnect_is_valid() {
    round_trip(Packet::Disconnect(Disconnect::normal()), V5, &[0xe0, 0x00]);
    round_trip(
        Packet::Disconnect(Disconnect::with_reason(ReasonCode::DisconnectWithWillMessage)),
        V5,
        &[0xe0, 0x01, 0x04],
    );
}

#[test]
fn subscribe_v5_options() {
    let subs = [Subscription {
        filter: TopicFilter::new("a/+").unwrap(),
        options: SubscriptionOptions {
            qos: QoS::ExactlyOnce,
            no_local: true,
            retain_as_published: true,
            retain_handling: crate::RetainHandling::DoNotSend,
        },
    }];
    let props = [Property::SubscriptionIdentifier(300)];
    let p = Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        properties: Properties::from_list(&props),
        subscriptions: List::from_slice(&subs),
    });
    round_trip(p, V5, &[0x82, 0x0c, 0x00, 0x01, 0x03, 0x0b, 0xac, 0x02, 0x00, 0x03, b'a', b'/', b'+', 0x2e]);
    // The same SUBSCRIBE cannot be said in 3.1.1.
    assert_eq!(p.encoded_len(V311), Err(EncodeError::NotInVersion));
}

#[test]
fn connect_v311_with_will_and_credentials() {
    let p = Packet::Connect(Connect {
        protocol: V311,
        clean_start: true,
        keep_alive: 60,
        properties: Properties::empty(),
        client_id: "c",
        will: Some(Will {
            topic: TopicName::new("w").unwrap(),
            payload: b"x",
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties::empty(),
        }),
        username: Some("u"),
        password: Some(b"p"),
    });
    round_trip(
        p,
        V311,
        &[
            0x10, 0x19, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0xee, 0x00, 0x3c, 0x00, 0x01, b'c', 0x00, 0x01, b'w',
            0x00, 0x01, b'x', 0x00, 0x01, b'u', 0x00, 0x01, b'p',
        ],
    );
}

#[test]
fn too_small_buffer_writes_nothing() {
    let p = Packet::PubAck(Ack::new(pid(7)));
    let mut buf = [0xaa; 3];
    assert_eq!(p.encode(V311, &mut buf), Err(EncodeError::BufferTooSmall { needed: 4 }));
    assert_eq!(buf, [0xaa; 3]);
}

#[test]
fn long_topic_is_an_error_not_a_truncation() {
    let long = "a".repeat(70_000);
    let topic = TopicName::new(&long);
    assert!(topic.is_err());
    let p = Packet::Connect(Connect {
        protocol: V311,
        clean_start: true,
        keep_alive: 0,
        properties: Properties::empty(),
        client_id: &long,
        will: None,
        username: None,
        password: None,
    });
    assert_eq!(p.encoded_len(V311), Err(EncodeError::FieldTooLong));
}

#[test]
fn v31_connack_first_byte_is_reserved() {
    let v31 = ProtocolVersion::V31;
    // A resumed session is not announced in MQTT 3.1: its acknowledge flags byte is reserved and sent as 0.
    let resumed = ConnAck { session_present: true, code: ReasonCode::Success, properties: Properties::empty() };
    let mut buf = [0u8; 8];
    let n = Packet::ConnAck(resumed).encode(v31, &mut buf).unwrap();
    assert_eq!(&buf[..n], &[0x20, 0x02, 0x00, 0x00]);
    assert_eq!(Packet::ConnAck(resumed).encoded_len(v31), Ok(4));
    // The same CONNACK in 3.1.1 carries the Session Present bit.
    let n = Packet::ConnAck(resumed).encode(V311, &mut buf).unwrap();
    assert_eq!(&buf[..n], &[0x20, 0x02, 0x01, 0x00]);
    // Identifier rejected (return code 2), as a 3.1 server answers an empty client identifier.
    let rejected =
        ConnAck { session_present: false, code: ReasonCode::ClientIdentifierNotValid, properties: Properties::empty() };
    round_trip(Packet::ConnAck(rejected), v31, &[0x20, 0x02, 0x00, 0x02]);
    // Received from a 3.1 server, the reserved byte is ignored rather than read as a flag.
    let accepted = ConnAck { session_present: false, ..resumed };
    assert_eq!(decode(&[0x20, 0x02, 0x01, 0x00], v31), Ok(Packet::ConnAck(accepted)));
    assert_eq!(decode(&[0x20, 0x02, 0x01, 0x00], V311), Ok(Packet::ConnAck(resumed)));
}
