//! Packets: the [`Packet`] enum, [`decode`] of one framed packet, and encoding into a caller's buffer.
//!
//! Each packet type sits in its own module and provides `decode` (body only), `body_len` and `write_body`;
//! this module adds and checks the fixed header.

mod ack;
mod connect;
mod disconnect;
mod list;
mod publish;
mod subscribe;

pub use ack::Ack;
pub use connect::{ConnAck, Connect, Will};
pub use disconnect::{Auth, Disconnect};
pub use list::{List, ListItem};
pub use publish::Publish;
pub use subscribe::{SubAck, Subscribe, Subscription, UnsubAck, Unsubscribe};

use crate::error::{DecodeError, EncodeError};
use crate::frame::frame_len;
use crate::types::ProtocolVersion;
use crate::wire::{Reader, Writer, add, decode_varint, to_varint, varint_len};

/// The packet type, from the upper four bits of the first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
#[allow(missing_docs)]
pub enum PacketType {
    Connect = 1,
    ConnAck = 2,
    Publish = 3,
    PubAck = 4,
    PubRec = 5,
    PubRel = 6,
    PubComp = 7,
    Subscribe = 8,
    SubAck = 9,
    Unsubscribe = 10,
    UnsubAck = 11,
    PingReq = 12,
    PingResp = 13,
    Disconnect = 14,
    /// MQTT 5 only.
    Auth = 15,
}

impl PacketType {
    /// The type for the upper four bits of a first byte.
    pub const fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Connect,
            2 => Self::ConnAck,
            3 => Self::Publish,
            4 => Self::PubAck,
            5 => Self::PubRec,
            6 => Self::PubRel,
            7 => Self::PubComp,
            8 => Self::Subscribe,
            9 => Self::SubAck,
            10 => Self::Unsubscribe,
            11 => Self::UnsubAck,
            12 => Self::PingReq,
            13 => Self::PingResp,
            14 => Self::Disconnect,
            15 => Self::Auth,
            _ => return None,
        })
    }

    /// The fixed flag bits every packet but PUBLISH must carry [MQTT-2.1.3-1].
    const fn fixed_flags(self) -> u8 {
        match self {
            Self::PubRel | Self::Subscribe | Self::Unsubscribe => 0b0010,
            _ => 0,
        }
    }
}

/// One MQTT control packet, borrowing its strings and payload from the decoded bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[allow(missing_docs)]
pub enum Packet<'a> {
    Connect(Connect<'a>),
    ConnAck(ConnAck<'a>),
    Publish(Publish<'a>),
    PubAck(Ack<'a>),
    PubRec(Ack<'a>),
    PubRel(Ack<'a>),
    PubComp(Ack<'a>),
    Subscribe(Subscribe<'a>),
    SubAck(SubAck<'a>),
    Unsubscribe(Unsubscribe<'a>),
    UnsubAck(UnsubAck<'a>),
    PingReq,
    PingResp,
    Disconnect(Disconnect<'a>),
    Auth(Auth<'a>),
}

/// Decodes exactly one packet: `frame` must hold one whole packet, as measured by [`frame_len`].
///
/// `version` is the version the connection negotiated; a CONNECT carries its own and ignores it.
///
/// # Errors
/// The first rule the bytes break, including [`DecodeError::TrailingBytes`] and [`DecodeError::Truncated`]
/// when the frame is longer or shorter than its Remaining Length says.
pub fn decode(frame: &[u8], version: ProtocolVersion) -> Result<Packet<'_>, DecodeError> {
    let (&first, rest) = frame.split_first().ok_or(DecodeError::Truncated)?;
    let (remaining, used) = decode_varint(rest)?.ok_or(DecodeError::Truncated)?;
    let body = rest.get(used..).ok_or(DecodeError::Truncated)?;
    let remaining = usize::try_from(remaining).map_err(|_| DecodeError::Truncated)?;
    if body.len() < remaining {
        return Err(DecodeError::Truncated);
    }
    if body.len() > remaining {
        return Err(DecodeError::TrailingBytes);
    }
    let type_bits = first >> 4;
    let flags = first & 0x0f;
    let kind = PacketType::from_u8(type_bits).ok_or(DecodeError::InvalidPacketType(type_bits))?;
    if kind == PacketType::Auth && !version.is_v5() {
        return Err(DecodeError::InvalidPacketType(type_bits));
    }
    if kind != PacketType::Publish && flags != kind.fixed_flags() {
        return Err(DecodeError::InvalidHeaderFlags { packet_type: type_bits, flags });
    }
    let mut r = Reader::new(body);
    let packet = match kind {
        PacketType::Connect => Packet::Connect(Connect::decode(&mut r)?),
        PacketType::ConnAck => Packet::ConnAck(ConnAck::decode(&mut r, version)?),
        PacketType::Publish => Packet::Publish(Publish::decode(flags, &mut r, version)?),
        PacketType::PubAck => Packet::PubAck(Ack::decode(kind, &mut r, version)?),
        PacketType::PubRec => Packet::PubRec(Ack::decode(kind, &mut r, version)?),
        PacketType::PubRel => Packet::PubRel(Ack::decode(kind, &mut r, version)?),
        PacketType::PubComp => Packet::PubComp(Ack::decode(kind, &mut r, version)?),
        PacketType::Subscribe => Packet::Subscribe(Subscribe::decode(&mut r, version)?),
        PacketType::SubAck => Packet::SubAck(SubAck::decode(&mut r, version)?),
        PacketType::Unsubscribe => Packet::Unsubscribe(Unsubscribe::decode(&mut r, version)?),
        PacketType::UnsubAck => Packet::UnsubAck(UnsubAck::decode(&mut r, version)?),
        PacketType::PingReq => Packet::PingReq,
        PacketType::PingResp => Packet::PingResp,
        PacketType::Disconnect => Packet::Disconnect(Disconnect::decode(&mut r, version)?),
        PacketType::Auth => Packet::Auth(Auth::decode(&mut r)?),
    };
    r.finish()?;
    Ok(packet)
}

impl<'a> Packet<'a> {
    /// Frames and decodes the first packet of a stream buffer.
    ///
    /// Returns `Ok(None)` until a whole packet has arrived, else the packet and how many bytes it used.
    ///
    /// # Errors
    /// As [`frame_len`] and [`decode`].
    pub fn decode_from(
        buf: &'a [u8],
        version: ProtocolVersion,
        max_packet_size: u32,
    ) -> Result<Option<(Self, usize)>, DecodeError> {
        let Some(len) = frame_len(buf, max_packet_size)? else {
            return Ok(None);
        };
        let frame = buf.get(..len).ok_or(DecodeError::Truncated)?;
        Ok(Some((decode(frame, version)?, len)))
    }

    /// The packet type.
    pub const fn packet_type(&self) -> PacketType {
        match self {
            Self::Connect(_) => PacketType::Connect,
            Self::ConnAck(_) => PacketType::ConnAck,
            Self::Publish(_) => PacketType::Publish,
            Self::PubAck(_) => PacketType::PubAck,
            Self::PubRec(_) => PacketType::PubRec,
            Self::PubRel(_) => PacketType::PubRel,
            Self::PubComp(_) => PacketType::PubComp,
            Self::Subscribe(_) => PacketType::Subscribe,
            Self::SubAck(_) => PacketType::SubAck,
            Self::Unsubscribe(_) => PacketType::Unsubscribe,
            Self::UnsubAck(_) => PacketType::UnsubAck,
            Self::PingReq => PacketType::PingReq,
            Self::PingResp => PacketType::PingResp,
            Self::Disconnect(_) => PacketType::Disconnect,
            Self::Auth(_) => PacketType::Auth,
        }
    }

    fn first_byte(&self) -> u8 {
        let kind = self.packet_type();
        let flags = match self {
            Self::Publish(p) => p.flags(),
            _ => kind.fixed_flags(),
        };
        ((kind as u8) << 4) | flags
    }

    /// The Remaining Length: the length of everything after the fixed header. Also validates the packet.
    fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        match self {
            Self::Connect(p) => p.body_len(),
            Self::ConnAck(p) => p.body_len(version),
            Self::Publish(p) => p.body_len(version),
            Self::PubAck(p) | Self::PubRec(p) | Self::PubRel(p) | Self::PubComp(p) => {
                p.body_len(self.packet_type(), version)
            }
            Self::Subscribe(p) => p.body_len(version),
            Self::SubAck(p) => p.body_len(version),
            Self::Unsubscribe(p) => p.body_len(version),
            Self::UnsubAck(p) => p.body_len(version),
            Self::PingReq | Self::PingResp => Ok(0),
            Self::Disconnect(p) => p.body_len(version),
            Self::Auth(p) => p.body_len(version),
        }
    }

    /// The exact number of bytes [`Packet::encode`] writes, after checking that the packet can be encoded.
    ///
    /// A CONNECT is encoded in its own protocol version; other packets in `version`.
    ///
    /// # Errors
    /// As [`Packet::encode`], except [`EncodeError::BufferTooSmall`].
    pub fn encoded_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        let body = self.body_len(version)?;
        add(add(body, 1)?, varint_len(to_varint(body)?)?)
    }

    /// Encodes the packet at the start of `out` and returns the number of bytes written.
    ///
    /// Nothing is written unless the whole packet fits.
    ///
    /// # Errors
    /// [`EncodeError::BufferTooSmall`]; [`EncodeError::FieldTooLong`] for a string or binary field over 65,535
    /// bytes (never truncated); [`EncodeError::NotInVersion`] for an MQTT 5 feature in an MQTT 3 packet;
    /// [`EncodeError::InvalidValue`] or [`EncodeError::PropertyNotAllowed`] for a packet that would not decode.
    pub fn encode(&self, version: ProtocolVersion, out: &mut [u8]) -> Result<usize, EncodeError> {
        let body = self.body_len(version)?;
        let rem = to_varint(body)?;
        let total = add(add(body, 1)?, varint_len(rem)?)?;
        if out.len() < total {
            return Err(EncodeError::BufferTooSmall { needed: total, available: out.len() });
        }
        let mut w = Writer::new(out);
        w.put_u8(self.first_byte())?;
        w.put_varint(rem)?;
        match self {
            Self::Connect(p) => p.write_body(&mut w)?,
            Self::ConnAck(p) => p.write_body(version, &mut w)?,
            Self::Publish(p) => p.write_body(version, &mut w)?,
            Self::PubAck(p) | Self::PubRec(p) | Self::PubRel(p) | Self::PubComp(p) => p.write_body(version, &mut w)?,
            Self::Subscribe(p) => p.write_body(version, &mut w)?,
            Self::SubAck(p) => p.write_body(version, &mut w)?,
            Self::Unsubscribe(p) => p.write_body(version, &mut w)?,
            Self::UnsubAck(p) => p.write_body(version, &mut w)?,
            Self::PingReq | Self::PingResp => {}
            Self::Disconnect(p) => p.write_body(version, &mut w)?,
            Self::Auth(p) => p.write_body(&mut w)?,
        }
        Ok(w.position())
    }
}

#[cfg(test)]
mod tests;
