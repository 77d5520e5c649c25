//! The bytes on the wire: the packets a client sends, and (without `v5`) the packets a broker sends.
//!
//! `mqtt-codec` is the reference: it validates topics and filters, frames the stream and, with `v5`, decodes.
//! This module writes the client's few packet shapes directly and, for MQTT 3.1.1, decodes the seven server
//! packet types directly, because the codec's general `encode`/`decode` link every packet type and the MQTT 5
//! property machinery into the image (about 12 KB of flash on Cortex-M4). Unit tests check both directions
//! against the codec byte for byte, and a property test checks that the decoder accepts exactly what the codec
//! accepts.

use mqtt_codec::{EncodeError, PacketId, ProtocolVersion, QoS, TopicFilter, TopicName};

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

/// A cursor over the output; `None` means it ran out of room (never, after [`frame`] sized it).
struct Writer<'o> {
    out: &'o mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn u8(&mut self, b: u8) -> Option<()> {
        *self.out.get_mut(self.pos)? = b;
        self.pos = self.pos.checked_add(1)?;
        Some(())
    }

    fn u16(&mut self, v: u16) -> Option<()> {
        self.raw(&v.to_be_bytes())
    }

    fn u32(&mut self, v: u32) -> Option<()> {
        self.raw(&v.to_be_bytes())
    }

    fn raw(&mut self, b: &[u8]) -> Option<()> {
        let end = self.pos.checked_add(b.len())?;
        self.out.get_mut(self.pos..end)?.copy_from_slice(b);
        self.pos = end;
        Some(())
    }

    /// A two-byte length and the bytes (length checked by [`field`] when sizing).
    fn field(&mut self, b: &[u8]) -> Option<()> {
        self.u16(u16::try_from(b.len()).ok()?)?;
        self.raw(b)
    }

    fn varint(&mut self, mut v: usize) -> Option<()> {
        loop {
            let byte = u8::try_from(v & 0x7f).ok()?;
            v >>= 7;
            if v == 0 {
                return self.u8(byte);
            }
            self.u8(byte | 0x80)?;
        }
    }
}

/// The size of a length-prefixed field.
fn field(b: &[u8]) -> Result<usize, EncodeError> {
    if b.len() > usize::from(u16::MAX) {
        return Err(EncodeError::FieldTooLong);
    }
    Ok(b.len().saturating_add(2))
}

/// Writes a fixed header and a `body_len`-byte body, after checking the whole packet fits `out`.
fn frame(
    out: &mut [u8],
    first: u8,
    body_len: usize,
    body: impl FnOnce(&mut Writer<'_>) -> Option<()>,
) -> Result<usize, EncodeError> {
    let header = match body_len {
        0..=127 => 2,
        128..=16_383 => 3,
        16_384..=2_097_151 => 4,
        2_097_152..=268_435_455 => 5,
        _ => return Err(EncodeError::PacketTooLong),
    };
    let total = body_len.saturating_add(header);
    let available = out.len();
    let Some(out) = out.get_mut(..total) else { return Err(EncodeError::BufferTooSmall { needed: total, available }) };
    let mut w = Writer { out, pos: 0 };
    w.u8(first).and_then(|()| w.varint(body_len)).and_then(|()| body(&mut w)).ok_or(EncodeError::InvalidValue)?;
    if w.pos == total { Ok(total) } else { Err(EncodeError::InvalidValue) }
}

/// Sums field sizes, failing on the first too long.
fn sum(parts: &[usize]) -> Result<usize, EncodeError> {
    parts.iter().try_fold(0usize, |acc, &p| acc.checked_add(p)).ok_or(EncodeError::PacketTooLong)
}

pub(crate) fn connect(
    opts: &Options<'_>,
    version: ProtocolVersion,
    max_in: u32,
    receive_max: u16,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let v5 = version.is_v5();
    let nul = |s: &str| s.bytes().any(|b| b == 0);
    if nul(opts.client_id) || opts.username.is_some_and(nul) {
        return Err(EncodeError::InvalidValue);
    }
    if !v5 && opts.password.is_some() && opts.username.is_none() {
        return Err(EncodeError::InvalidValue);
    }
    let mut flags = 0u8;
    let mut len = sum(&[10, field(opts.client_id.as_bytes())?])?;
    // Properties: Session Expiry Interval, Receive Maximum, Maximum Packet Size; will properties: none.
    const PROPS: usize = 13;
    if v5 {
        len = sum(&[len, 1, PROPS])?;
    }
    if let Some(w) = &opts.will {
        TopicName::new(w.topic).map_err(|_| EncodeError::InvalidValue)?;
        flags |= 0x04 | ((w.qos as u8) << 3) | (u8::from(w.retain) << 5);
        len = sum(&[len, field(w.topic.as_bytes())?, field(w.payload)?, usize::from(v5)])?;
    }
    if let Some(u) = opts.username {
        flags |= 0x80;
        len = sum(&[len, field(u.as_bytes())?])?;
    }
    if let Some(p) = opts.password {
        flags |= 0x40;
        len = sum(&[len, field(p)?])?;
    }
    if opts.clean_start {
        flags |= 0x02;
    }
    frame(out, 0x10, len, |w| {
        w.field(b"MQTT")?;
        w.u8(version.level())?;
        w.u8(flags)?;
        w.u16(opts.keep_alive_secs)?;
        if v5 {
            w.u8(PROPS as u8)?;
            w.u8(0x11)?;
            #[cfg(feature = "v5")]
            w.u32(opts.session_expiry_secs)?;
            #[cfg(not(feature = "v5"))]
            w.u32(0)?;
            w.u8(0x21)?;
            w.u16(receive_max)?;
            w.u8(0x27)?;
            w.u32(max_in)?;
        }
        w.field(opts.client_id.as_bytes())?;
        if let Some(will) = &opts.will {
            if v5 {
                w.u8(0)?;
            }
            w.field(will.topic.as_bytes())?;
            w.field(will.payload)?;
        }
        if let Some(u) = opts.username {
            w.field(u.as_bytes())?;
        }
        if let Some(p) = opts.password {
            w.field(p)?;
        }
        Some(())
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
    let has_pid = qos != QoS::AtMostOnce;
    let v5 = version.is_v5();
    let len = sum(&[field(topic.as_str().as_bytes())?, if has_pid { 2 } else { 0 }, usize::from(v5), payload.len()])?;
    frame(out, 0x30 | ((qos as u8) << 1) | u8::from(retain), len, |w| {
        w.field(topic.as_str().as_bytes())?;
        if has_pid {
            w.u16(pid.get())?;
        }
        if v5 {
            w.u8(0)?;
        }
        w.raw(payload)
    })
}

pub(crate) fn ack(kind: AckKind, pid: PacketId, out: &mut [u8]) -> Result<usize, EncodeError> {
    frame(out, kind as u8, 2, |w| w.u16(pid.get()))
}

pub(crate) fn subscribe(
    pid: PacketId,
    filter: TopicFilter<'_>,
    qos: QoS,
    version: ProtocolVersion,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let v5 = version.is_v5();
    let len = sum(&[2, usize::from(v5), field(filter.as_str().as_bytes())?, 1])?;
    frame(out, 0x82, len, |w| {
        w.u16(pid.get())?;
        if v5 {
            w.u8(0)?;
        }
        w.field(filter.as_str().as_bytes())?;
        w.u8(qos as u8)
    })
}

pub(crate) fn unsubscribe(
    pid: PacketId,
    filter: TopicFilter<'_>,
    version: ProtocolVersion,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let v5 = version.is_v5();
    let len = sum(&[2, usize::from(v5), field(filter.as_str().as_bytes())?])?;
    frame(out, 0xa2, len, |w| {
        w.u16(pid.get())?;
        if v5 {
            w.u8(0)?;
        }
        w.field(filter.as_str().as_bytes())
    })
}

pub(crate) fn pingreq(out: &mut [u8]) -> Result<usize, EncodeError> {
    frame(out, 0xc0, 0, |_| Some(()))
}

/// DISCONNECT; in MQTT 5 an empty body means Normal Disconnection.
pub(crate) fn disconnect(out: &mut [u8]) -> Result<usize, EncodeError> {
    frame(out, 0xe0, 0, |_| Some(()))
}

#[cfg(feature = "v5")]
pub(crate) use mqtt_codec::decode;

#[cfg(not(feature = "v5"))]
pub(crate) use v311::decode;

/// The MQTT 3.1.1 decoder for the packets a server sends, as strict as `mqtt_codec::decode`.
#[cfg(any(test, not(feature = "v5")))]
pub(crate) mod v311 {
    use mqtt_codec::{
        Ack, ConnAck, DecodeError, List, Packet, PacketId, Properties, ProtocolVersion, Publish, QoS, QosPid,
        ReasonCode, SubAck, TopicName, UnsubAck,
    };

    fn pid(b: &[u8]) -> Result<PacketId, DecodeError> {
        match b {
            [hi, lo] => PacketId::new(u16::from_be_bytes([*hi, *lo])).ok_or(DecodeError::ZeroPacketId),
            [] | [_] => Err(DecodeError::Truncated),
            _ => Err(DecodeError::TrailingBytes),
        }
    }

    fn suback_code(b: u8) -> Result<&'static [ReasonCode], DecodeError> {
        Ok(match b {
            0 => &[ReasonCode::Success],
            1 => &[ReasonCode::GrantedQoS1],
            2 => &[ReasonCode::GrantedQoS2],
            0x80 => &[ReasonCode::UnspecifiedError],
            code => return Err(DecodeError::InvalidReasonCode { packet_type: 9, code }),
        })
    }

    /// Decodes one framed MQTT 3.1.1 packet of a type a server sends. Client packet types are refused as
    /// [`DecodeError::InvalidPacketType`]. A SUBACK keeps only its first return code (the client subscribes one
    /// filter at a time), after checking them all.
    pub(crate) fn decode(frame: &[u8], _version: ProtocolVersion) -> Result<Packet<'_>, DecodeError> {
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
        if kind != 3 && matches!(kind, 2 | 4..=7 | 9 | 11 | 13) && flags != fixed {
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
                Packet::ConnAck(ConnAck { session_present, code, properties: Properties::empty() })
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
                let topic = TopicName::new(topic)?;
                let (qos_pid, payload) = match qos {
                    QoS::AtMostOnce => (QosPid::AtMostOnce, rest),
                    _ => {
                        let (id, payload) = rest.split_at_checked(2).ok_or(DecodeError::Truncated)?;
                        (QosPid::from_parts(qos, pid(id)?), payload)
                    }
                };
                Packet::Publish(Publish {
                    dup,
                    qos_pid,
                    retain: flags & 1 != 0,
                    topic,
                    properties: Properties::empty(),
                    payload,
                })
            }
            4 => Packet::PubAck(Ack::new(pid(body)?)),
            5 => Packet::PubRec(Ack::new(pid(body)?)),
            6 => Packet::PubRel(Ack::new(pid(body)?)),
            7 => Packet::PubComp(Ack::new(pid(body)?)),
            9 => {
                let (id, codes) = body.split_at_checked(2).ok_or(DecodeError::Truncated)?;
                let packet_id = pid(id)?;
                let (&first_code, more) = codes.split_first().ok_or(DecodeError::EmptyPayload)?;
                let first_code = suback_code(first_code)?;
                for &c in more {
                    suback_code(c)?;
                }
                Packet::SubAck(SubAck {
                    packet_id,
                    properties: Properties::empty(),
                    codes: List::from_slice(first_code),
                })
            }
            11 => Packet::UnsubAck(UnsubAck {
                packet_id: pid(body)?,
                properties: Properties::empty(),
                codes: List::from_slice(&[]),
            }),
            13 if body.is_empty() => Packet::PingResp,
            13 => return Err(DecodeError::TrailingBytes),
            other => return Err(DecodeError::InvalidPacketType(other)),
        })
    }
}
