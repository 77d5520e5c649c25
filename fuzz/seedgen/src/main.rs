//! Writes the fuzz seed corpora from valid encodings of every packet type in MQTT 3.1.1 and 5.0
//! (plus a 3.1 CONNECT), so that libFuzzer starts from packets that get past the first checks.
//!
//! Run from the repository root: `cargo run --manifest-path fuzz/seedgen/Cargo.toml -- fuzz/seeds`.

use std::fs;
use std::path::Path;

use mqtt_codec::{
    Ack, Auth, ConnAck, Connect, Disconnect, List, Packet, PacketId, Properties, Property, ProtocolVersion, Publish,
    QoS, QosPid, ReasonCode, RetainHandling, SubAck, Subscribe, Subscription, SubscriptionOptions, TopicFilter,
    TopicName, UnsubAck, Unsubscribe, Will,
};

const V31: ProtocolVersion = ProtocolVersion::V31;
const V311: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn pid(v: u16) -> PacketId {
    PacketId::new(v).expect("non-zero")
}

fn topic(s: &str) -> TopicName<'_> {
    TopicName::new(s).expect("valid topic")
}

fn filter(s: &str) -> TopicFilter<'_> {
    TopicFilter::new(s).expect("valid filter")
}

fn encode(p: &Packet<'_>, v: ProtocolVersion) -> Vec<u8> {
    let mut out = vec![0u8; p.encoded_len(v).unwrap_or_else(|e| panic!("{p:?} in {v:?}: {e:?}"))];
    p.encode(v, &mut out).expect("sized by encoded_len");
    out
}

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = dir.join(target);
    fs::create_dir_all(&d).expect("create seed dir");
    fs::write(d.join(name), bytes).expect("write seed");
}

fn main() {
    let out = std::env::args().nth(1).unwrap_or_else(|| "fuzz/seeds".into());
    let out = Path::new(&out);

    let user = [Property::UserProperty("k", "v")];
    let publish_props = [
        Property::PayloadFormatIndicator(true),
        Property::MessageExpiryInterval(60),
        Property::ContentType("text/plain"),
        Property::ResponseTopic("reply/1"),
        Property::CorrelationData(b"c1"),
        Property::SubscriptionIdentifier(300),
        Property::UserProperty("k", "v"),
    ];
    let alias_props = [Property::TopicAlias(3)];
    let connect_props = [
        Property::SessionExpiryInterval(3600),
        Property::ReceiveMaximum(20),
        Property::MaximumPacketSize(65_536),
        Property::TopicAliasMaximum(10),
        Property::RequestResponseInformation(true),
        Property::RequestProblemInformation(false),
        Property::AuthenticationMethod("SCRAM-SHA-1"),
        Property::AuthenticationData(b"client-first"),
    ];
    let will_props = [Property::WillDelayInterval(5), Property::ContentType("json")];
    let connack_props = [
        Property::AssignedClientIdentifier("auto-1"),
        Property::ServerKeepAlive(30),
        Property::MaximumQoS(QoS::AtLeastOnce),
        Property::RetainAvailable(false),
        Property::WildcardSubscriptionAvailable(true),
        Property::SubscriptionIdentifierAvailable(true),
        Property::SharedSubscriptionAvailable(true),
        Property::ResponseInformation("resp/"),
        Property::ServerReference("other:1883"),
    ];
    let reason_props = [Property::ReasonString("why"), Property::UserProperty("a", "b")];
    let disconnect_props = [Property::SessionExpiryInterval(0), Property::ReasonString("bye")];
    let auth_props = [Property::AuthenticationMethod("SCRAM-SHA-1"), Property::AuthenticationData(b"server-first")];
    let sub_id = [Property::SubscriptionIdentifier(7)];

    let subs = [
        Subscription { filter: filter("sensors/+/temp"), options: SubscriptionOptions::qos(QoS::AtLeastOnce) },
        Subscription { filter: filter("alerts/#"), options: SubscriptionOptions::qos(QoS::ExactlyOnce) },
        Subscription { filter: filter("$SYS/broker/+"), options: SubscriptionOptions::qos(QoS::AtMostOnce) },
    ];
    let subs_v5 = [
        Subscription {
            filter: filter("a/+"),
            options: SubscriptionOptions {
                qos: QoS::ExactlyOnce,
                no_local: true,
                retain_as_published: true,
                retain_handling: RetainHandling::DoNotSend,
            },
        },
        Subscription {
            filter: filter("$share/group/jobs/#"),
            options: SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                no_local: false,
                retain_as_published: false,
                retain_handling: RetainHandling::SendAtNewSubscribe,
            },
        },
    ];
    let filters = [filter("sensors/+/temp"), filter("#")];
    let v3_codes = [ReasonCode::GrantedQoS1, ReasonCode::UnspecifiedError];
    let v5_codes = [ReasonCode::GrantedQoS2, ReasonCode::NotAuthorized, ReasonCode::TopicFilterInvalid];
    let unsub_codes = [ReasonCode::Success, ReasonCode::NoSubscriptionExisted];

    let publish = |qos_pid, dup, retain, props, topic_name, payload| {
        Packet::Publish(Publish { dup, qos_pid, retain, topic: topic_name, properties: props, payload })
    };
    let connect = |protocol, will: bool, props, will_props, creds: bool| {
        Packet::Connect(Connect {
            protocol,
            clean_start: true,
            keep_alive: 60,
            properties: props,
            client_id: "client-1",
            will: will.then(|| Will {
                topic: topic("status/client-1"),
                payload: b"offline",
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: will_props,
            }),
            username: creds.then_some("user"),
            password: creds.then_some(&b"secret"[..]),
        })
    };
    let empty = Properties::empty();

    // (name, packet, versions it is valid in)
    let common: Vec<(&str, Packet<'_>)> = vec![
        ("publish_q0", publish(QosPid::AtMostOnce, false, false, empty, topic("a/b"), &b"21.5"[..])),
        ("publish_q1_retain", publish(QosPid::AtLeastOnce(pid(10)), false, true, empty, topic("s/t"), &b"x"[..])),
        ("publish_q2_dup", publish(QosPid::ExactlyOnce(pid(65535)), true, false, empty, topic("$SYS/x"), &[][..])),
        ("puback", Packet::PubAck(Ack::new(pid(10)))),
        ("pubrec", Packet::PubRec(Ack::new(pid(11)))),
        ("pubrel", Packet::PubRel(Ack::new(pid(11)))),
        ("pubcomp", Packet::PubComp(Ack::new(pid(11)))),
        (
            "subscribe",
            Packet::Subscribe(Subscribe {
                packet_id: pid(1),
                properties: empty,
                subscriptions: List::from_slice(&subs),
            }),
        ),
        (
            "unsubscribe",
            Packet::Unsubscribe(Unsubscribe {
                packet_id: pid(2),
                properties: empty,
                filters: List::from_slice(&filters),
            }),
        ),
        ("pingreq", Packet::PingReq),
        ("pingresp", Packet::PingResp),
        ("disconnect", Packet::Disconnect(Disconnect::normal())),
        ("connack", Packet::ConnAck(ConnAck { session_present: true, code: ReasonCode::Success, properties: empty })),
        (
            "connack_refused",
            Packet::ConnAck(ConnAck { session_present: false, code: ReasonCode::NotAuthorized, properties: empty }),
        ),
    ];
    let v3_only: Vec<(&str, Packet<'_>)> = vec![
        ("connect_min", connect(V311, false, empty, empty, false)),
        ("connect_full", connect(V311, true, empty, empty, true)),
        ("connect_v31", connect(V31, true, empty, empty, true)),
        ("suback", Packet::SubAck(SubAck { packet_id: pid(1), properties: empty, codes: List::from_slice(&v3_codes) })),
        ("unsuback", Packet::UnsubAck(UnsubAck { packet_id: pid(2), properties: empty, codes: List::from_slice(&[]) })),
    ];
    let ack = |reason, props| Ack { packet_id: pid(12), reason, properties: props };
    let v5_only: Vec<(&str, Packet<'_>)> = vec![
        ("connect5_min", connect(V5, false, empty, empty, false)),
        (
            "connect5_full",
            connect(V5, true, Properties::from_list(&connect_props), Properties::from_list(&will_props), true),
        ),
        (
            "publish5_props",
            publish(
                QosPid::AtLeastOnce(pid(5)),
                false,
                false,
                Properties::from_list(&publish_props),
                topic("a/b"),
                &b"{}"[..],
            ),
        ),
        (
            "publish5_alias",
            publish(
                QosPid::AtMostOnce,
                false,
                false,
                Properties::from_list(&alias_props),
                TopicName::empty(),
                &b"1"[..],
            ),
        ),
        (
            "connack5",
            Packet::ConnAck(ConnAck {
                session_present: false,
                code: ReasonCode::Success,
                properties: Properties::from_list(&connack_props),
            }),
        ),
        ("puback5_reason", Packet::PubAck(ack(ReasonCode::NoMatchingSubscribers, empty))),
        ("pubrec5_props", Packet::PubRec(ack(ReasonCode::QuotaExceeded, Properties::from_list(&reason_props)))),
        ("pubrel5_reason", Packet::PubRel(ack(ReasonCode::PacketIdentifierNotFound, empty))),
        ("pubcomp5_props", Packet::PubComp(ack(ReasonCode::Success, Properties::from_list(&user)))),
        (
            "subscribe5",
            Packet::Subscribe(Subscribe {
                packet_id: pid(3),
                properties: Properties::from_list(&sub_id),
                subscriptions: List::from_slice(&subs_v5),
            }),
        ),
        (
            "suback5",
            Packet::SubAck(SubAck {
                packet_id: pid(3),
                properties: Properties::from_list(&reason_props),
                codes: List::from_slice(&v5_codes),
            }),
        ),
        (
            "unsubscribe5",
            Packet::Unsubscribe(Unsubscribe {
                packet_id: pid(4),
                properties: Properties::from_list(&user),
                filters: List::from_slice(&filters),
            }),
        ),
        (
            "unsuback5",
            Packet::UnsubAck(UnsubAck { packet_id: pid(4), properties: empty, codes: List::from_slice(&unsub_codes) }),
        ),
        (
            "disconnect5",
            Packet::Disconnect(Disconnect {
                reason: ReasonCode::ServerShuttingDown,
                properties: Properties::from_list(&disconnect_props),
            }),
        ),
        ("disconnect5_will", Packet::Disconnect(Disconnect::with_reason(ReasonCode::DisconnectWithWillMessage))),
        (
            "auth5",
            Packet::Auth(Auth {
                reason: ReasonCode::ContinueAuthentication,
                properties: Properties::from_list(&auth_props),
            }),
        ),
    ];

    let mut v3_stream = Vec::new();
    for (name, p) in common.iter().chain(&v3_only) {
        let version = if name.ends_with("v31") { V31 } else { V311 };
        let bytes = encode(p, version);
        write(out, "roundtrip", &format!("v3_{name}"), &bytes);
        let selector = if version == V31 { 1 } else { 0 };
        write(out, "decode_v311", name, &[&[selector][..], &bytes].concat());
        v3_stream.extend_from_slice(&bytes);
    }
    write(out, "decode_v311", "stream", &[&[0][..], &v3_stream].concat());

    let mut v5_stream = Vec::new();
    for (i, (name, p)) in common.iter().chain(&v5_only).enumerate() {
        let bytes = encode(p, V5);
        write(out, "roundtrip", &format!("v5_{name}"), &bytes);
        // Every fourth seed runs under a small limit that is just big enough.
        let selector = if i % 4 == 3 && bytes.len() <= 129 { 0x80 | (bytes.len() as u8 - 2) } else { 0 };
        write(out, "decode_v5", name, &[&[selector][..], &bytes].concat());
        v5_stream.extend_from_slice(&bytes);
    }
    write(out, "decode_v5", "stream", &[&[0][..], &v5_stream].concat());
    write(out, "decode_v5", "stream_small_limit", &[&[0x80 | 30][..], &v5_stream].concat());

    let topics: [(&str, &str, &str); 12] = [
        ("exact", "sport/tennis/player1", "sport/tennis/player1"),
        ("plus", "sport/tennis/player1", "sport/tennis/+"),
        ("hash", "sport/tennis/player1/ranking", "sport/#"),
        ("hash_parent", "sport", "sport/#"),
        ("root_hash", "a/b/c", "#"),
        ("sys_hash", "$SYS/uptime", "#"),
        ("sys_plus", "$SYS/monitor/Clients", "+/monitor/Clients"),
        ("sys_exact", "$SYS/monitor/Clients", "$SYS/monitor/+"),
        ("empty_levels", "/finance", "+/+"),
        ("shared", "jobs/1", "$share/workers/jobs/+"),
        ("bad_filter", "a/b", "a/#/b"),
        ("unicode", "caf\u{e9}/\u{1f600}", "caf\u{e9}/+"),
    ];
    for (name, t, f) in topics {
        write(out, "topic", name, &[t.as_bytes(), &[0xff], f.as_bytes()].concat());
    }
    println!("seeds written under {}", out.display());
}
