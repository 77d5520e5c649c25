//! Packets: the [`Packet`] enum, [`decode`] of one framed packet, and encoding into a caller's buffer.
//!
//! Each packet type sits in its own module and provides `decode` (body only), `check` and `write_body`;
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

    /// The first byte of a packet of this type with its fixed flags.
    const fn first_byte(self) -> u8 {
        ((self as u8) << 4) | self.fixed_flags()
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
    if version.is_v5() {
        decode_in::<true, false>(frame, false)
    } else {
        decode_in::<false, false>(frame, version == ProtocolVersion::V31)
    }
}

/// Decodes one packet of a type a server sends to an MQTT 3.1.1 client: CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL,
/// PUBCOMP, SUBACK, UNSUBACK and PINGRESP, exactly as [`decode`] does. The other types (a 3.1.1 DISCONNECT among
/// them, which only a client sends) are [`DecodeError::InvalidPacketType`].
///
/// A client calls this rather than [`decode`] so that neither the decoders of the other packet types nor the MQTT 5
/// property code end up in its image.
///
/// # Errors
/// As [`decode`].
pub fn decode_from_server_v311(frame: &[u8]) -> Result<Packet<'_>, DecodeError> {
    decode_in::<false, true>(frame, false)
}

/// Decodes one packet of a type a server sends to an MQTT 5 client: those of [`decode_from_server_v311`], and
/// DISCONNECT and AUTH, exactly as [`decode`] does. The other types are [`DecodeError::InvalidPacketType`].
///
/// # Errors
/// As [`decode`].
pub fn decode_from_server_v5(frame: &[u8]) -> Result<Packet<'_>, DecodeError> {
    decode_in::<true, true>(frame, false)
}

/// Checks the fixed header of one framed packet and returns its type, its flags and a reader over its body.
fn split_frame(frame: &[u8], v5: bool) -> Result<(PacketType, u8, Reader<'_>), DecodeError> {
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
    if kind == PacketType::Auth && !v5 {
        return Err(DecodeError::InvalidPacketType(type_bits));
    }
    if kind != PacketType::Publish && flags != kind.fixed_flags() {
        return Err(DecodeError::InvalidHeaderFlags { packet_type: type_bits, flags });
    }
    Ok((kind, flags, Reader::new(body)))
}

/// The one decoder behind [`decode`] and the client's: `V5` picks the version at compile time, so a 3.1.1 build
/// links no property code; `FROM_SERVER` refuses the packet types only a client sends (and drops their decoders).
/// `v31` is MQTT 3.1, which differs from 3.1.1 in CONNACK only.
fn decode_in<const V5: bool, const FROM_SERVER: bool>(frame: &[u8], v31: bool) -> Result<Packet<'_>, DecodeError> {
    let (kind, flags, mut r) = split_frame(frame, V5)?;
    let r = &mut r;
    let packet = match kind {
        PacketType::Connect if !FROM_SERVER => Packet::Connect(Connect::decode(r)?),
        PacketType::ConnAck => Packet::ConnAck(ConnAck::decode::<V5>(r, v31)?),
        PacketType::Publish => Packet::Publish(Publish::decode::<V5>(flags, r)?),
        PacketType::PubAck => Packet::PubAck(Ack::decode::<V5>(kind, r)?),
        PacketType::PubRec => Packet::PubRec(Ack::decode::<V5>(kind, r)?),
        PacketType::PubRel => Packet::PubRel(Ack::decode::<V5>(kind, r)?),
        PacketType::PubComp => Packet::PubComp(Ack::decode::<V5>(kind, r)?),
        PacketType::Subscribe if !FROM_SERVER => Packet::Subscribe(Subscribe::decode::<V5>(r)?),
        PacketType::SubAck => Packet::SubAck(SubAck::decode::<V5>(r)?),
        PacketType::Unsubscribe if !FROM_SERVER => Packet::Unsubscribe(Unsubscribe::decode::<V5>(r)?),
        PacketType::UnsubAck => Packet::UnsubAck(UnsubAck::decode::<V5>(r)?),
        PacketType::PingReq if !FROM_SERVER => Packet::PingReq,
        PacketType::PingResp => Packet::PingResp,
        PacketType::Disconnect if V5 || !FROM_SERVER => Packet::Disconnect(Disconnect::decode::<V5>(r)?),
        PacketType::Auth if V5 => Packet::Auth(Auth::decode(r)?),
        _ => return Err(DecodeError::InvalidPacketType(kind as u8)),
    };
    r.finish()?;
    Ok(packet)
}

/// The length of a whole packet whose body `body` writes.
fn packet_len(body: impl FnOnce(&mut Writer<'_>)) -> Result<usize, EncodeError> {
    let body_len = Writer::measure(body)?;
    add(add(body_len, 1)?, varint_len(to_varint(body_len)?)?)
}

/// Writes a packet: the first byte, the Remaining Length, then `body`. The body runs twice, over a writer that only
/// counts and then over `out`, so each packet type has one body function for both (a client's image carries no
/// separate sizing code). `dyn`, so the optimizer keeps one copy of the body rather than inlining it at both calls.
/// Nothing is written unless the whole packet fits.
fn encode_packet(first: u8, out: &mut [u8], body: &dyn Fn(&mut Writer<'_>)) -> Result<usize, EncodeError> {
    let body_len = Writer::measure(body)?;
    let rem = to_varint(body_len)?;
    let total = add(add(body_len, 1)?, varint_len(rem)?)?;
    let Some(out) = out.get_mut(..total) else { return Err(EncodeError::BufferTooSmall { needed: total }) };
    let mut w = Writer::new(out);
    w.put_u8(first);
    w.put_varint(rem);
    body(&mut w);
    debug_assert_eq!(w.position(), total, "an encoder wrote other than it measured");
    Ok(total)
}

/// PINGREQ, at the start of `out`; returns its length (2).
///
/// # Errors
/// [`EncodeError::BufferTooSmall`].
pub fn encode_pingreq(out: &mut [u8]) -> Result<usize, EncodeError> {
    encode_packet(PacketType::PingReq.first_byte(), out, &|_| {})
}

/// PINGRESP, at the start of `out`; returns its length (2).
///
/// # Errors
/// [`EncodeError::BufferTooSmall`].
pub fn encode_pingresp(out: &mut [u8]) -> Result<usize, EncodeError> {
    encode_packet(PacketType::PingResp.first_byte(), out, &|_| {})
}

/// Per-version entry points for a packet type with `first_byte`, `check::<V5>` and `write_body::<V5>`.
macro_rules! encode_entry_points {
    ($ty:ident, $name:literal) => {
        impl $ty<'_> {
            #[doc = concat!("Encodes this ", $name, " in MQTT 3.1.1 (and 3.1) at the start of `out`; returns the bytes written.")]
            ///
            /// Only the MQTT 3 encoder is linked: a client that calls this carries no MQTT 5 property code.
            ///
            /// # Errors
            /// As [`Packet::encode`].
            pub fn encode_v311(&self, out: &mut [u8]) -> Result<usize, EncodeError> {
                self.check::<false>()?;
                encode_packet(self.first_byte(), out, &|w| self.write_body::<false>(w))
            }

            #[doc = concat!("Encodes this ", $name, " in MQTT 5 at the start of `out`; returns the bytes written.")]
            ///
            /// # Errors
            /// As [`Packet::encode`].
            pub fn encode_v5(&self, out: &mut [u8]) -> Result<usize, EncodeError> {
                self.check::<true>()?;
                encode_packet(self.first_byte(), out, &|w| self.write_body::<true>(w))
            }

            #[doc = concat!("Encodes this ", $name, " in `version` ([`", stringify!($ty), "::encode_v311`] or [`", stringify!($ty), "::encode_v5`]).")]
            ///
            /// # Errors
            /// As [`Packet::encode`].
            pub fn encode(&self, version: ProtocolVersion, out: &mut [u8]) -> Result<usize, EncodeError> {
                if version.is_v5() { self.encode_v5(out) } else { self.encode_v311(out) }
            }

            /// The exact number of bytes `encode` writes in `version`, after checking that it can be encoded.
            ///
            /// # Errors
            /// As [`Packet::encoded_len`].
            pub fn encoded_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
                if version.is_v5() {
                    self.check::<true>()?;
                    packet_len(|w| self.write_body::<true>(w))
                } else {
                    self.check::<false>()?;
                    packet_len(|w| self.write_body::<false>(w))
                }
            }
        }
    };
}

encode_entry_points!(Publish, "PUBLISH");
encode_entry_points!(Subscribe, "SUBSCRIBE");
encode_entry_points!(SubAck, "SUBACK");
encode_entry_points!(Unsubscribe, "UNSUBSCRIBE");
encode_entry_points!(UnsubAck, "UNSUBACK");
encode_entry_points!(Disconnect, "DISCONNECT");

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

    /// The exact number of bytes [`Packet::encode`] writes, after checking that the packet can be encoded.
    ///
    /// A CONNECT is encoded in its own protocol version; other packets in `version`.
    ///
    /// # Errors
    /// As [`Packet::encode`], except [`EncodeError::BufferTooSmall`].
    pub fn encoded_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        match self {
            Self::Connect(p) => p.encoded_len(),
            Self::ConnAck(p) => p.encoded_len(version),
            Self::Publish(p) => p.encoded_len(version),
            Self::PubAck(p) | Self::PubRec(p) | Self::PubRel(p) | Self::PubComp(p) => {
                p.encoded_len(self.packet_type(), version)
            }
            Self::Subscribe(p) => p.encoded_len(version),
            Self::SubAck(p) => p.encoded_len(version),
            Self::Unsubscribe(p) => p.encoded_len(version),
            Self::UnsubAck(p) => p.encoded_len(version),
            Self::PingReq | Self::PingResp => Ok(2),
            Self::Disconnect(p) => p.encoded_len(version),
            Self::Auth(p) => p.encoded_len(version),
        }
    }

    /// Encodes the packet at the start of `out` and returns the number of bytes written.
    ///
    /// Nothing is written unless the whole packet fits. Each packet type also has its own entry points
    /// (`Publish::encode_v311`, `Publish::encode_v5`, ...), which link only what that type and version need.
    ///
    /// # Errors
    /// [`EncodeError::BufferTooSmall`]; [`EncodeError::FieldTooLong`] for a string or binary field over 65,535
    /// bytes (never truncated); [`EncodeError::NotInVersion`] for an MQTT 5 feature in an MQTT 3 packet;
    /// [`EncodeError::InvalidValue`] or [`EncodeError::PropertyNotAllowed`] for a packet that would not decode.
    pub fn encode(&self, version: ProtocolVersion, out: &mut [u8]) -> Result<usize, EncodeError> {
        match self {
            Self::Connect(p) => p.encode(out),
            Self::ConnAck(p) => p.encode(version, out),
            Self::Publish(p) => p.encode(version, out),
            Self::PubAck(p) | Self::PubRec(p) | Self::PubRel(p) | Self::PubComp(p) => {
                p.encode(self.packet_type(), version, out)
            }
            Self::Subscribe(p) => p.encode(version, out),
            Self::SubAck(p) => p.encode(version, out),
            Self::Unsubscribe(p) => p.encode(version, out),
            Self::UnsubAck(p) => p.encode(version, out),
            Self::PingReq => encode_pingreq(out),
            Self::PingResp => encode_pingresp(out),
            Self::Disconnect(p) => p.encode(version, out),
            Self::Auth(p) => p.encode(version, out),
        }
    }
}

#[cfg(test)]
mod tests;
