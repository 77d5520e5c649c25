//! The bytes on the wire: the packets a client sends, and (without `v5`) the packets a broker sends.
//!
//! `mqtt-codec` is the reference. It frames the stream and validates topic names, and with `v5` it decodes. This
//! module writes the client's few packet shapes directly and, for MQTT 3.1.1, decodes the seven server packet types
//! directly, because the codec's general `encode`/`decode` link every packet type and the MQTT 5 property
//! machinery into the image (about 12 KB of flash on Cortex-M4). Unit tests check both directions against the
//! codec: encoding byte for byte, and (by property test) decoding that accepts exactly what the codec accepts and
//! yields the same packet.

use mqtt_codec::{DecodeError, EncodeError, PacketId, ProtocolVersion, QoS, QosPid, ReasonCode, TopicName};

use crate::Options;

/// Which acknowledgement to send.
#[derive(Clone, Copy, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)] // the spec's names
pub(crate) enum AckKind {
    PubAck = 0x40,
    PubRec = 0x50,
    PubRel = 0x62,
    PubComp = 0x70,
}

/// A cursor over the output. Writes past its end are dropped but counted, so the same body code first measures a
/// packet (over an empty slice) and then writes it: no separate sizing code per packet.
struct Writer<'o> {
    out: &'o mut [u8],
    pos: usize,
    /// A field longer than 65,535 bytes.
    too_long: bool,
}

impl Writer<'_> {
    fn u8(&mut self, b: u8) {
        if let Some(x) = self.out.get_mut(self.pos) {
            *x = b;
        }
        self.pos = self.pos.saturating_add(1);
    }

    fn u16(&mut self, v: u16) {
        self.raw(&v.to_be_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.raw(&v.to_be_bytes());
    }

    fn raw(&mut self, b: &[u8]) {
        let end = self.pos.saturating_add(b.len());
        if let Some(x) = self.out.get_mut(self.pos..end) {
            super::store::copy(x, b);
        }
        self.pos = end;
    }

    /// A two-byte length and the bytes.
    fn field(&mut self, b: &[u8]) {
        let len = u16::try_from(b.len()).unwrap_or_else(|_| {
            self.too_long = true;
            u16::MAX
        });
        self.u16(len);
        self.raw(b);
    }
}

/// Encodes a packet: `body` writes everything after the fixed header; it runs once to measure and once to write.
fn packet(out: &mut [u8], first: u8, body: &impl Fn(&mut Writer<'_>)) -> Result<usize, EncodeError> {
    let mut measure = Writer { out: &mut [], pos: 0, too_long: false };
    body(&mut measure);
    if measure.too_long {
        return Err(EncodeError::FieldTooLong);
    }
    let body_len = measure.pos;
    if body_len > 268_435_455 {
        return Err(EncodeError::PacketTooLong);
    }
    let mut header = 2usize;
    let mut rest = body_len >> 7;
    while rest > 0 {
        header = header.saturating_add(1);
        rest >>= 7;
    }
    let total = body_len.saturating_add(header);
    let available = out.len();
    let Some(out) = out.get_mut(..total) else { return Err(EncodeError::BufferTooSmall { needed: total, available }) };
    let mut w = Writer { out, pos: 0, too_long: false };
    w.u8(first);
    let mut v = body_len;
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            w.u8(byte);
            break;
        }
        w.u8(byte | 0x80);
    }
    body(&mut w);
    Ok(total)
}

/// Whether `version` is MQTT 5; always false without the `v5` feature, so 3.1.1 builds drop the MQTT 5 code.
fn is_v5(version: ProtocolVersion) -> bool {
    cfg!(feature = "v5") && version.is_v5()
}

pub(crate) fn connect(
    opts: &Options<'_>,
    version: ProtocolVersion,
    max_in: u32,
    receive_max: u16,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let v5 = is_v5(version);
    let nul = |s: &str| s.bytes().any(|b| b == 0);
    if nul(opts.client_id) || opts.username.is_some_and(nul) {
        return Err(EncodeError::InvalidValue);
    }
    if !v5 && opts.password.is_some() && opts.username.is_none() {
        return Err(EncodeError::InvalidValue);
    }
    let mut flags = 0u8;
    if let Some(w) = &opts.will {
        TopicName::new(w.topic).map_err(|_| EncodeError::InvalidValue)?;
        flags |= 0x04 | ((w.qos as u8) << 3) | (u8::from(w.retain) << 5);
    }
    if opts.username.is_some() {
        flags |= 0x80;
    }
    if opts.password.is_some() {
        flags |= 0x40;
    }
    if opts.clean_start {
        flags |= 0x02;
    }
    packet(out, 0x10, &|w| {
        w.field(b"MQTT");
        w.u8(version.level());
        w.u8(flags);
        w.u16(opts.keep_alive_secs);
        if is_v5(version) {
            // Session Expiry Interval, Receive Maximum, Maximum Packet Size.
            w.u8(13);
            w.u8(0x11);
            #[cfg(feature = "v5")]
            w.u32(opts.session_expiry_secs);
            #[cfg(not(feature = "v5"))]
            w.u32(0);
            w.u8(0x21);
            w.u16(receive_max);
            w.u8(0x27);
            w.u32(max_in);
        }
        w.field(opts.client_id.as_bytes());
        if let Some(will) = &opts.will {
            if is_v5(version) {
                w.u8(0);
            }
            w.field(will.topic.as_bytes());
            w.field(will.payload);
        }
        if let Some(u) = opts.username {
            w.field(u.as_bytes());
        }
        if let Some(p) = opts.password {
            w.field(p);
        }
    })
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
    packet(out, 0x30 | ((qos as u8) << 1) | u8::from(retain), &|w| {
        w.field(topic.as_str().as_bytes());
        if qos != QoS::AtMostOnce {
            w.u16(pid.get());
        }
        if is_v5(version) {
            w.u8(0);
        }
        w.raw(payload);
    })
}

pub(crate) fn ack(kind: AckKind, pid: PacketId, out: &mut [u8]) -> Result<usize, EncodeError> {
    packet(out, kind as u8, &|w| w.u16(pid.get()))
}

/// SUBSCRIBE to `filter` with maximum QoS `qos`, or UNSUBSCRIBE from it when `qos` is `None`.
pub(crate) fn subscribe(
    pid: PacketId,
    filter: &[u8],
    qos: Option<QoS>,
    version: ProtocolVersion,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    packet(out, if qos.is_some() { 0x82 } else { 0xa2 }, &|w| {
        w.u16(pid.get());
        if is_v5(version) {
            w.u8(0);
        }
        w.field(filter);
        if let Some(q) = qos {
            w.u8(q as u8);
        }
    })
}

pub(crate) fn pingreq(out: &mut [u8]) -> Result<usize, EncodeError> {
    packet(out, 0xc0, &|_| {})
}

/// DISCONNECT; in MQTT 5 an empty body means Normal Disconnection.
pub(crate) fn disconnect(out: &mut [u8]) -> Result<usize, EncodeError> {
    packet(out, 0xe0, &|_| {})
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
    #[cfg_attr(not(feature = "v5"), allow(dead_code))]
    Disconnect(ReasonCode),
    /// A packet type a server must not send (the 3.1.1 decoder refuses those outright).
    #[cfg_attr(not(feature = "v5"), allow(dead_code))]
    Other(u8),
}

/// MQTT 5 CONNACK properties the session obeys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Limits {
    pub(crate) receive_max: Option<u16>,
    pub(crate) max_packet: Option<u32>,
    pub(crate) keep_alive: Option<u16>,
}

/// Decodes one framed packet from the broker.
pub(crate) fn decode(frame: &[u8], version: ProtocolVersion) -> Result<Inbound<'_>, DecodeError> {
    #[cfg(feature = "v5")]
    return mqtt_codec::decode(frame, version).map(inbound);
    #[cfg(not(feature = "v5"))]
    v311::decode(frame, version)
}

/// The session's view of a packet decoded by `mqtt-codec`.
#[cfg(any(test, feature = "v5"))]
pub(crate) fn inbound(p: mqtt_codec::Packet<'_>) -> Inbound<'_> {
    use mqtt_codec::{Packet, Property};
    match p {
        Packet::ConnAck(c) => {
            let mut limits = Limits::default();
            for p in c.properties.iter() {
                match p {
                    Property::ReceiveMaximum(v) => limits.receive_max = Some(v),
                    Property::MaximumPacketSize(v) => limits.max_packet = Some(v),
                    Property::ServerKeepAlive(v) => limits.keep_alive = Some(v),
                    _ => {}
                }
            }
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

/// The MQTT 3.1.1 decoder for the packets a server sends, as strict as `mqtt_codec::decode`.
#[cfg(any(test, not(feature = "v5")))]
pub(crate) mod v311 {
    use mqtt_codec::{DecodeError, PacketId, ProtocolVersion, QoS, QosPid, ReasonCode, TopicName};

    use super::{Inbound, Limits};

    fn pid(b: &[u8]) -> Result<PacketId, DecodeError> {
        match b {
            [hi, lo] => PacketId::new(u16::from_be_bytes([*hi, *lo])).ok_or(DecodeError::ZeroPacketId),
            [] | [_] => Err(DecodeError::Truncated),
            _ => Err(DecodeError::TrailingBytes),
        }
    }

    fn suback_code(code: u8) -> Result<ReasonCode, DecodeError> {
        match code {
            0 | 1 | 2 | 0x80 => {
                ReasonCode::from_u8(code).ok_or(DecodeError::InvalidReasonCode { packet_type: 9, code })
            }
            _ => Err(DecodeError::InvalidReasonCode { packet_type: 9, code }),
        }
    }

    /// Decodes one framed MQTT 3.1.1 packet of a type a server sends; other types are refused as
    /// [`DecodeError::InvalidPacketType`]. A SUBACK keeps only its first return code, after checking them all.
    pub(crate) fn decode(frame: &[u8], _version: ProtocolVersion) -> Result<Inbound<'_>, DecodeError> {
        let (&first, rest) = frame.split_first().ok_or(DecodeError::Truncated)?;
        match mqtt_codec::frame_len(frame, u32::MAX)? {
            Some(total) if total == frame.len() => {}
            Some(_) => return Err(DecodeError::TrailingBytes),
            None => return Err(DecodeError::Truncated),
        }
        // frame_len checked the Remaining Length, so the body starts after its last byte.
        let header = rest.iter().position(|b| b & 0x80 == 0).ok_or(DecodeError::MalformedVarInt)?;
        let body = rest.get(header.saturating_add(1)..).ok_or(DecodeError::Truncated)?;
        let (kind, flags) = (first >> 4, first & 0x0f);
        let fixed = if kind == 6 { 2 } else { 0 };
        if matches!(kind, 2 | 4..=7 | 9 | 11 | 13) && flags != fixed {
            return Err(DecodeError::InvalidHeaderFlags { packet_type: kind, flags });
        }
        Ok(match kind {
            2 => {
                let [ack_flags, code] = *body else {
                    return Err(if body.len() < 2 { DecodeError::Truncated } else { DecodeError::TrailingBytes });
                };
                if ack_flags & 0xfe != 0 {
                    return Err(DecodeError::InvalidConnAckFlags);
                }
                let code =
                    ReasonCode::from_v3_connack(code).ok_or(DecodeError::InvalidReasonCode { packet_type: 2, code })?;
                let session_present = ack_flags == 1;
                if session_present && code != ReasonCode::Success {
                    return Err(DecodeError::SessionPresentOnRefusal);
                }
                Inbound::ConnAck { session_present, code, limits: Limits::default() }
            }
            3 => {
                let dup = flags & 0b1000 != 0;
                let qos = QoS::from_u8((flags >> 1) & 0b11)?;
                if dup && qos == QoS::AtMostOnce {
                    return Err(DecodeError::DupWithQoS0);
                }
                let (len, rest) = body.split_first_chunk::<2>().ok_or(DecodeError::Truncated)?;
                let (topic, rest) =
                    rest.split_at_checked(usize::from(u16::from_be_bytes(*len))).ok_or(DecodeError::Truncated)?;
                let topic = core::str::from_utf8(topic).map_err(|_| DecodeError::InvalidUtf8)?;
                let topic = TopicName::new(topic)?.as_str();
                let (qos_pid, payload) = match qos {
                    QoS::AtMostOnce => (QosPid::AtMostOnce, rest),
                    _ => {
                        let (id, payload) = rest.split_at_checked(2).ok_or(DecodeError::Truncated)?;
                        (QosPid::from_parts(qos, pid(id)?), payload)
                    }
                };
                Inbound::Publish { topic, payload, qos_pid, retain: flags & 1 != 0 }
            }
            4..=7 => Inbound::Ack(kind, pid(body)?, ReasonCode::Success),
            9 => {
                let (id, codes) = body.split_at_checked(2).ok_or(DecodeError::Truncated)?;
                let packet_id = pid(id)?;
                let (&first_code, more) = codes.split_first().ok_or(DecodeError::EmptyPayload)?;
                for &c in more {
                    suback_code(c)?;
                }
                Inbound::SubAck(packet_id, suback_code(first_code)?)
            }
            11 => Inbound::UnsubAck(pid(body)?),
            13 if body.is_empty() => Inbound::PingResp,
            13 => return Err(DecodeError::TrailingBytes),
            // Client packet types, and DISCONNECT, which a 3.1.1 server never sends.
            _ => return Err(DecodeError::InvalidPacketType(kind)),
        })
    }
}
