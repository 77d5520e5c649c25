//! The packets the session sends and receives, through `mqtt-codec`'s narrow entry points: per packet type and
//! version for encoding, and the decoder of the packets a server sends. Without the `v5` feature only the MQTT 3.1.1
//! ones are called, so no MQTT 5 property code is linked into the image.

use mqtt_codec::{
    Ack, Connect, DecodeError, Disconnect, EncodeError, List, Packet, PacketId, PacketType, Properties,
    ProtocolVersion, Publish, QoS, QosPid, ReasonCode, Subscribe, Subscription, SubscriptionOptions, TopicFilter,
    TopicName, Unsubscribe, Will,
};

use crate::Options;

/// Whether `version` is MQTT 5; always false without the `v5` feature, so 3.1.1 builds drop the MQTT 5 code.
fn is_v5(version: ProtocolVersion) -> bool {
    cfg!(feature = "v5") && version.is_v5()
}

/// CONNECT in `version`; in MQTT 5 with Session Expiry Interval, Receive Maximum `receive_max` and Maximum Packet
/// Size `max_in`.
pub(crate) fn connect(
    opts: &Options<'_>,
    version: ProtocolVersion,
    max_in: u32,
    receive_max: u16,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let will = match &opts.will {
        Some(w) => Some(Will {
            topic: TopicName::new(w.topic).map_err(|_| EncodeError::InvalidValue)?,
            payload: w.payload,
            qos: w.qos,
            retain: w.retain,
            properties: Properties::empty(),
        }),
        None => None,
    };
    let mut connect = Connect {
        protocol: ProtocolVersion::V311,
        clean_start: opts.clean_start,
        keep_alive: opts.keep_alive_secs,
        properties: Properties::empty(),
        client_id: opts.client_id,
        will,
        username: opts.username,
        password: opts.password,
    };
    #[cfg(feature = "v5")]
    if version.is_v5() {
        use mqtt_codec::Property;
        let props = [
            Property::SessionExpiryInterval(opts.session_expiry_secs),
            Property::ReceiveMaximum(receive_max),
            Property::MaximumPacketSize(max_in),
        ];
        connect.protocol = ProtocolVersion::V5;
        connect.properties = Properties::from_list(&props);
        return connect.encode_v5(out);
    }
    let _ = (version, max_in, receive_max, &mut connect);
    connect.encode_v311(out)
}

/// PUBLISH with DUP=0 (the store sets DUP on its copy once sent). `pid` is ignored for QoS 0.
pub(crate) fn publish(
    topic: TopicName<'_>,
    payload: &[u8],
    qos: QoS,
    pid: PacketId,
    retain: bool,
    version: ProtocolVersion,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let p = Publish {
        dup: false,
        qos_pid: QosPid::from_parts(qos, pid),
        retain,
        topic,
        properties: Properties::empty(),
        payload,
    };
    if is_v5(version) { p.encode_v5(out) } else { p.encode_v311(out) }
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP (`kind`) with success: in MQTT 5 too the packet identifier alone, which is
/// exactly what the 3.1.1 encoder writes.
pub(crate) fn ack(kind: PacketType, pid: PacketId, out: &mut [u8]) -> Result<usize, EncodeError> {
    Ack::new(pid).encode_v311(kind, out)
}

/// SUBSCRIBE to `filter` with maximum QoS `qos`, or UNSUBSCRIBE from it when `qos` is `None`.
pub(crate) fn subscribe(
    pid: PacketId,
    filter: &[u8],
    qos: Option<QoS>,
    version: ProtocolVersion,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let filter = core::str::from_utf8(filter).ok().and_then(|f| TopicFilter::new(f).ok());
    let filter = filter.ok_or(EncodeError::InvalidValue)?;
    let v5 = is_v5(version);
    match qos {
        Some(qos) => {
            let subs = [Subscription { filter, options: SubscriptionOptions::qos(qos) }];
            let s =
                Subscribe { packet_id: pid, properties: Properties::empty(), subscriptions: List::from_slice(&subs) };
            if v5 { s.encode_v5(out) } else { s.encode_v311(out) }
        }
        None => {
            let filters = [filter];
            let u =
                Unsubscribe { packet_id: pid, properties: Properties::empty(), filters: List::from_slice(&filters) };
            if v5 { u.encode_v5(out) } else { u.encode_v311(out) }
        }
    }
}

pub(crate) fn pingreq(out: &mut [u8]) -> Result<usize, EncodeError> {
    mqtt_codec::encode_pingreq(out)
}

/// DISCONNECT; the empty body is also MQTT 5's Normal Disconnection.
pub(crate) fn disconnect(out: &mut [u8]) -> Result<usize, EncodeError> {
    Disconnect::normal().encode_v311(out)
}

/// A packet from the broker, reduced to what the session uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inbound<'a> {
    ConnAck {
        session_present: bool,
        code: ReasonCode,
        /// MQTT 5: Receive Maximum, Maximum Packet Size, Server Keep Alive.
        limits: Limits,
    },
    Publish {
        topic: &'a str,
        payload: &'a [u8],
        qos_pid: QosPid,
        retain: bool,
    },
    /// PUBACK, PUBREC, PUBREL or PUBCOMP: the packet type, identifier and (MQTT 5) reason.
    Ack(u8, PacketId, ReasonCode),
    /// SUBACK with its first code (the client subscribes one filter at a time).
    SubAck(PacketId, ReasonCode),
    UnsubAck(PacketId),
    PingResp,
    /// MQTT 5 DISCONNECT from the server.
    Disconnect(ReasonCode),
    /// A packet type the session never expects (MQTT 5 AUTH: the client uses no enhanced authentication).
    Other(u8),
}

/// MQTT 5 CONNACK properties the session obeys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Limits {
    pub(crate) receive_max: Option<u16>,
    pub(crate) max_packet: Option<u32>,
    pub(crate) keep_alive: Option<u16>,
}

/// Decodes one framed packet from the broker. Packet types only a client sends are malformed here
/// ([`DecodeError::InvalidPacketType`]).
pub(crate) fn decode(frame: &[u8], version: ProtocolVersion) -> Result<Inbound<'_>, DecodeError> {
    let packet = if is_v5(version) {
        mqtt_codec::decode_from_server_v5(frame)?
    } else {
        mqtt_codec::decode_from_server_v311(frame)?
    };
    Ok(inbound(packet))
}

/// The session's view of a decoded packet.
fn inbound(p: Packet<'_>) -> Inbound<'_> {
    match p {
        Packet::ConnAck(c) => {
            let mut limits = Limits::default();
            #[cfg(feature = "v5")]
            for p in c.properties.iter() {
                use mqtt_codec::Property;
                match p {
                    Property::ReceiveMaximum(v) => limits.receive_max = Some(v),
                    Property::MaximumPacketSize(v) => limits.max_packet = Some(v),
                    Property::ServerKeepAlive(v) => limits.keep_alive = Some(v),
                    _ => {}
                }
            }
            #[cfg(not(feature = "v5"))]
            let _ = &mut limits;
            Inbound::ConnAck { session_present: c.session_present, code: c.code, limits }
        }
        Packet::Publish(p) => {
            Inbound::Publish { topic: p.topic.as_str(), payload: p.payload, qos_pid: p.qos_pid, retain: p.retain }
        }
        Packet::PubAck(a) => Inbound::Ack(4, a.packet_id, a.reason),
        Packet::PubRec(a) => Inbound::Ack(5, a.packet_id, a.reason),
        Packet::PubRel(a) => Inbound::Ack(6, a.packet_id, a.reason),
        Packet::PubComp(a) => Inbound::Ack(7, a.packet_id, a.reason),
        Packet::SubAck(s) => {
            Inbound::SubAck(s.packet_id, s.codes.iter().next().unwrap_or(ReasonCode::UnspecifiedError))
        }
        Packet::UnsubAck(u) => Inbound::UnsubAck(u.packet_id),
        Packet::PingResp => Inbound::PingResp,
        Packet::Disconnect(d) => Inbound::Disconnect(d.reason),
        other => Inbound::Other(other.packet_type() as u8),
    }
}
