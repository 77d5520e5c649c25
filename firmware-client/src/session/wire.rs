//! The packets a client sends, built with `mqtt-codec` into a caller's buffer.

use mqtt_codec::Properties;
#[cfg(feature = "v5")]
use mqtt_codec::Property;
use mqtt_codec::{
    Ack, Connect, Disconnect, EncodeError, List, Packet, PacketId, ProtocolVersion, Publish, QoS, QosPid, Subscribe,
    Subscription, SubscriptionOptions, TopicFilter, TopicName, Unsubscribe, Will,
};

use crate::Options;

/// Which acknowledgement to send.
#[derive(Clone, Copy, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)] // the spec's names
pub(crate) enum AckKind {
    PubAck,
    PubRec,
    PubRel,
    PubComp,
}

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
    #[cfg(feature = "v5")]
    let props = [
        Property::SessionExpiryInterval(opts.session_expiry_secs),
        Property::ReceiveMaximum(receive_max),
        Property::MaximumPacketSize(max_in),
    ];
    #[cfg(feature = "v5")]
    let properties = if version.is_v5() { Properties::from_list(&props) } else { Properties::empty() };
    #[cfg(not(feature = "v5"))]
    let properties = {
        let _ = (max_in, receive_max);
        Properties::empty()
    };
    Packet::Connect(Connect {
        protocol: version,
        clean_start: opts.clean_start,
        keep_alive: opts.keep_alive_secs,
        properties,
        client_id: opts.client_id,
        will,
        username: opts.username,
        password: opts.password,
    })
    .encode(version, out)
}

pub(crate) fn publish(
    topic: TopicName<'_>,
    payload: &[u8],
    qos: QoS,
    pid: PacketId,
    retain: bool,
    version: ProtocolVersion,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let qos_pid = QosPid::from_parts(qos, pid);
    let p = Publish { dup: false, qos_pid, retain, topic, properties: Properties::empty(), payload };
    Packet::Publish(p).encode(version, out)
}

pub(crate) fn ack(
    kind: AckKind,
    pid: PacketId,
    version: ProtocolVersion,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let a = Ack::new(pid);
    let p = match kind {
        AckKind::PubAck => Packet::PubAck(a),
        AckKind::PubRec => Packet::PubRec(a),
        AckKind::PubRel => Packet::PubRel(a),
        AckKind::PubComp => Packet::PubComp(a),
    };
    p.encode(version, out)
}

pub(crate) fn subscribe(
    pid: PacketId,
    filter: TopicFilter<'_>,
    qos: QoS,
    version: ProtocolVersion,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let subs = [Subscription { filter, options: SubscriptionOptions::qos(qos) }];
    let p = Subscribe { packet_id: pid, properties: Properties::empty(), subscriptions: List::from_slice(&subs) };
    Packet::Subscribe(p).encode(version, out)
}

pub(crate) fn unsubscribe(
    pid: PacketId,
    filter: TopicFilter<'_>,
    version: ProtocolVersion,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let filters = [filter];
    let p = Unsubscribe { packet_id: pid, properties: Properties::empty(), filters: List::from_slice(&filters) };
    Packet::Unsubscribe(p).encode(version, out)
}

pub(crate) fn pingreq(version: ProtocolVersion, out: &mut [u8]) -> Result<usize, EncodeError> {
    Packet::PingReq.encode(version, out)
}

pub(crate) fn disconnect(version: ProtocolVersion, out: &mut [u8]) -> Result<usize, EncodeError> {
    Packet::Disconnect(Disconnect::normal()).encode(version, out)
}
