//! CONNECT and CONNACK.

use crate::error::{DecodeError, EncodeError};
use crate::properties::{Properties, PropertyContext};
use crate::reason::ReasonCode;
use crate::topic::TopicName;
use crate::types::{ProtocolVersion, QoS};
use crate::wire::{Reader, Writer, has_nul};

use super::PacketType;

/// A will message, published by the server when the connection ends without DISCONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Will<'a> {
    /// Topic of the will message.
    pub topic: TopicName<'a>,
    /// Payload of the will message.
    pub payload: &'a [u8],
    /// QoS of the will message.
    pub qos: QoS,
    /// Whether the will message is retained.
    pub retain: bool,
    /// MQTT 5 will properties (Will Delay Interval, Message Expiry Interval, ...).
    pub properties: Properties<'a>,
}

/// CONNECT: the first packet a client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Connect<'a> {
    /// The protocol version this CONNECT asks for; it is encoded in this version.
    pub protocol: ProtocolVersion,
    /// Clean Session (3.x) or Clean Start (5).
    pub clean_start: bool,
    /// Keep alive in seconds; 0 disables it.
    pub keep_alive: u16,
    /// MQTT 5 CONNECT properties.
    pub properties: Properties<'a>,
    /// Client identifier; may be empty.
    pub client_id: &'a str,
    /// The will message, if any.
    pub will: Option<Will<'a>>,
    /// User name.
    pub username: Option<&'a str>,
    /// Password.
    pub password: Option<&'a [u8]>,
}

const USERNAME: u8 = 0x80;
const PASSWORD: u8 = 0x40;
const WILL_RETAIN: u8 = 0x20;
const WILL_FLAG: u8 = 0x04;
const CLEAN: u8 = 0x02;
const RESERVED: u8 = 0x01;

impl<'a> Connect<'a> {
    pub(crate) fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let name = r.utf8()?;
        let level = r.u8()?;
        let protocol = match (name, level) {
            ("MQIsdp", 3) => ProtocolVersion::V31,
            ("MQTT", 4) => ProtocolVersion::V311,
            ("MQTT", 5) => ProtocolVersion::V5,
            ("MQTT" | "MQIsdp", other) => return Err(DecodeError::UnsupportedProtocolLevel(other)),
            _ => return Err(DecodeError::InvalidProtocolName),
        };
        let flags = r.u8()?;
        if flags & RESERVED != 0 {
            return Err(DecodeError::ReservedConnectFlag);
        }
        let will_flag = flags & WILL_FLAG != 0;
        let will_qos = QoS::from_u8((flags >> 3) & 0b11)?;
        let will_retain = flags & WILL_RETAIN != 0;
        if !will_flag && (will_qos != QoS::AtMostOnce || will_retain) {
            return Err(DecodeError::WillFlagsWithoutWill);
        }
        let has_username = flags & USERNAME != 0;
        let has_password = flags & PASSWORD != 0;
        if has_password && !has_username && !protocol.is_v5() {
            return Err(DecodeError::PasswordWithoutUsername);
        }
        let keep_alive = r.u16()?;
        let properties =
            if protocol.is_v5() { Properties::read(r, PropertyContext::Connect)? } else { Properties::empty() };
        let client_id = r.utf8()?;
        let will = if will_flag {
            let properties =
                if protocol.is_v5() { Properties::read(r, PropertyContext::Will)? } else { Properties::empty() };
            let topic = TopicName::new(r.utf8()?)?;
            let payload = r.binary()?;
            Some(Will { topic, payload, qos: will_qos, retain: will_retain, properties })
        } else {
            None
        };
        let username = if has_username { Some(r.utf8()?) } else { None };
        let password = if has_password { Some(r.binary()?) } else { None };
        Ok(Self {
            protocol,
            clean_start: flags & CLEAN != 0,
            keep_alive,
            properties,
            client_id,
            will,
            username,
            password,
        })
    }

    /// Encodes this CONNECT, whose `protocol` is MQTT 3.1 or 3.1.1, at the start of `out`; returns the bytes
    /// written. Only the MQTT 3 encoder is linked: a client that calls this carries no MQTT 5 property code.
    ///
    /// # Errors
    /// As [`Packet::encode`](super::Packet::encode); [`EncodeError::InvalidValue`] when `protocol` is MQTT 5.
    pub fn encode_v311(&self, out: &mut [u8]) -> Result<usize, EncodeError> {
        self.check::<false>()?;
        super::encode_packet(PacketType::Connect.first_byte(), out, &|w| self.write_body::<false>(w))
    }

    /// Encodes this CONNECT, whose `protocol` is MQTT 5, at the start of `out`; returns the bytes written.
    ///
    /// # Errors
    /// As [`Packet::encode`](super::Packet::encode); [`EncodeError::InvalidValue`] when `protocol` is not MQTT 5.
    pub fn encode_v5(&self, out: &mut [u8]) -> Result<usize, EncodeError> {
        self.check::<true>()?;
        super::encode_packet(PacketType::Connect.first_byte(), out, &|w| self.write_body::<true>(w))
    }

    /// Encodes this CONNECT in its own `protocol` version at the start of `out`; returns the bytes written.
    ///
    /// # Errors
    /// As [`Packet::encode`](super::Packet::encode).
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, EncodeError> {
        if self.protocol.is_v5() { self.encode_v5(out) } else { self.encode_v311(out) }
    }

    /// The exact number of bytes [`Connect::encode`] writes.
    ///
    /// # Errors
    /// As [`Connect::encode`], except [`EncodeError::BufferTooSmall`].
    pub fn encoded_len(&self) -> Result<usize, EncodeError> {
        if self.protocol.is_v5() {
            self.check::<true>()?;
            super::packet_len(|w| self.write_body::<true>(w))
        } else {
            self.check::<false>()?;
            super::packet_len(|w| self.write_body::<false>(w))
        }
    }

    fn check<const V5: bool>(&self) -> Result<(), EncodeError> {
        if self.protocol.is_v5() != V5 {
            return Err(EncodeError::InvalidValue);
        }
        if !V5 {
            if !self.properties.is_empty() || self.will.is_some_and(|w| !w.properties.is_empty()) {
                return Err(EncodeError::NotInVersion);
            }
            if self.password.is_some() && self.username.is_none() {
                return Err(EncodeError::InvalidValue);
            }
        }
        let nul = |s: &str| has_nul(s.as_bytes());
        if nul(self.client_id) || self.username.is_some_and(nul) || self.will.is_some_and(|w| w.topic.is_empty()) {
            return Err(EncodeError::InvalidValue);
        }
        if V5 {
            self.properties.check(PropertyContext::Connect)?;
            if let Some(will) = &self.will {
                will.properties.check(PropertyContext::Will)?;
            }
        }
        Ok(())
    }

    fn write_body<const V5: bool>(&self, w: &mut Writer<'_>) {
        w.put_str(self.protocol.name());
        w.put_u8(self.protocol.level());
        let mut flags = 0;
        if self.clean_start {
            flags |= CLEAN;
        }
        if let Some(will) = &self.will {
            flags |= WILL_FLAG | ((will.qos as u8) << 3);
            if will.retain {
                flags |= WILL_RETAIN;
            }
        }
        if self.username.is_some() {
            flags |= USERNAME;
        }
        if self.password.is_some() {
            flags |= PASSWORD;
        }
        w.put_u8(flags);
        w.put_u16(self.keep_alive);
        if V5 {
            self.properties.write(w);
        }
        w.put_str(self.client_id);
        if let Some(will) = &self.will {
            if V5 {
                will.properties.write(w);
            }
            w.put_str(will.topic.as_str());
            w.put_binary(will.payload);
        }
        if let Some(u) = self.username {
            w.put_str(u);
        }
        if let Some(p) = self.password {
            w.put_binary(p);
        }
    }
}

/// CONNACK: the server's answer to CONNECT.
///
/// The MQTT 3.x return codes map onto [`ReasonCode`] (see [`ReasonCode::to_v3_connack`]); other codes cannot be
/// encoded in MQTT 3.x.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ConnAck<'a> {
    /// Whether the server resumed a stored session. MQTT 3.1 has no such flag: its first CONNACK byte is reserved,
    /// so the flag is encoded as 0 and decoded as `false` there.
    pub session_present: bool,
    /// The result of the connection attempt.
    pub code: ReasonCode,
    /// MQTT 5 CONNACK properties.
    pub properties: Properties<'a>,
}

impl<'a> ConnAck<'a> {
    /// `v31`: MQTT 3.1, whose first CONNACK byte is reserved.
    pub(crate) fn decode<const V5: bool>(r: &mut Reader<'a>, v31: bool) -> Result<Self, DecodeError> {
        let flags = r.u8()?;
        if flags & 0xfe != 0 && !v31 {
            return Err(DecodeError::InvalidConnAckFlags);
        }
        let raw = r.u8()?;
        let code = if V5 {
            ReasonCode::decode(raw, PacketType::ConnAck)?
        } else {
            ReasonCode::from_v3_connack(raw)
                .ok_or(DecodeError::InvalidReasonCode { packet_type: PacketType::ConnAck as u8, code: raw })?
        };
        // MQTT 3.1 reserves the whole first byte: a sender's bits there mean nothing.
        let session_present = flags & 1 != 0 && !v31;
        if session_present && code != ReasonCode::Success {
            return Err(DecodeError::SessionPresentOnRefusal);
        }
        let properties = if V5 { Properties::read(r, PropertyContext::ConnAck)? } else { Properties::empty() };
        Ok(Self { session_present, code, properties })
    }

    fn code_byte(&self, version: ProtocolVersion) -> Result<u8, EncodeError> {
        if self.session_present && self.code != ReasonCode::Success {
            return Err(EncodeError::InvalidValue);
        }
        if version.is_v5() {
            self.properties.check(PropertyContext::ConnAck)?;
            self.code.check_encode(PacketType::ConnAck)
        } else if !self.properties.is_empty() {
            Err(EncodeError::NotInVersion)
        } else {
            self.code.to_v3_connack().ok_or(EncodeError::NotInVersion)
        }
    }

    /// Encodes this CONNACK in `version` at the start of `out`; returns the bytes written.
    ///
    /// # Errors
    /// As [`Packet::encode`](super::Packet::encode).
    pub fn encode(&self, version: ProtocolVersion, out: &mut [u8]) -> Result<usize, EncodeError> {
        let code = self.code_byte(version)?;
        super::encode_packet(PacketType::ConnAck.first_byte(), out, &|w| self.write_body(version, code, w))
    }

    /// The exact number of bytes [`ConnAck::encode`] writes.
    ///
    /// # Errors
    /// As [`ConnAck::encode`], except [`EncodeError::BufferTooSmall`].
    pub fn encoded_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        let code = self.code_byte(version)?;
        super::packet_len(|w| self.write_body(version, code, w))
    }

    fn write_body(&self, version: ProtocolVersion, code: u8, w: &mut Writer<'_>) {
        // The acknowledge flags of MQTT 3.1 are reserved (0): the Session Present bit came with 3.1.1.
        w.put_u8(u8::from(self.session_present && version != ProtocolVersion::V31));
        w.put_u8(code);
        if version.is_v5() {
            self.properties.write(w);
        }
    }
}
