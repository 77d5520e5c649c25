//! DISCONNECT and AUTH: a reason code and properties, both optional on the wire.

use crate::error::{DecodeError, EncodeError};
use crate::properties::{Properties, PropertyContext};
use crate::reason::ReasonCode;
use crate::types::ProtocolVersion;
use crate::wire::{Reader, Writer};

use super::PacketType;

fn decode_reason_props<'a>(
    r: &mut Reader<'a>,
    kind: PacketType,
    ctx: PropertyContext,
) -> Result<(ReasonCode, Properties<'a>), DecodeError> {
    if r.is_empty() {
        return Ok((ReasonCode::Success, Properties::empty()));
    }
    let reason = ReasonCode::decode(r.u8()?, kind)?;
    let properties = if r.is_empty() { Properties::empty() } else { Properties::read(r, ctx)? };
    Ok((reason, properties))
}

fn reason_props_check(
    reason: ReasonCode,
    properties: &Properties<'_>,
    kind: PacketType,
    ctx: PropertyContext,
) -> Result<(), EncodeError> {
    reason.check_encode(kind)?;
    properties.check(ctx)
}

fn write_reason_props(reason: ReasonCode, properties: &Properties<'_>, w: &mut Writer<'_>) {
    if properties.is_empty() {
        if reason != ReasonCode::Success {
            w.put_u8(reason.to_u8());
        }
    } else {
        w.put_u8(reason.to_u8());
        properties.write(w)
    }
}

/// DISCONNECT. In MQTT 3.x it is empty and only a client sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Disconnect<'a> {
    /// MQTT 5 reason; `Success` is Normal Disconnection.
    pub reason: ReasonCode,
    /// MQTT 5 properties (Session Expiry Interval, Reason String, Server Reference, User Property).
    pub properties: Properties<'a>,
}

impl<'a> Disconnect<'a> {
    /// A normal disconnection without properties.
    pub const fn normal() -> Self {
        Self { reason: ReasonCode::Success, properties: Properties::empty() }
    }

    /// A disconnection with a reason and no properties.
    pub const fn with_reason(reason: ReasonCode) -> Self {
        Self { reason, properties: Properties::empty() }
    }

    pub(crate) fn decode<const V5: bool>(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        if !V5 {
            return Ok(Self::normal());
        }
        let (reason, properties) = decode_reason_props(r, PacketType::Disconnect, PropertyContext::Disconnect)?;
        Ok(Self { reason, properties })
    }

    pub(super) fn first_byte(&self) -> u8 {
        PacketType::Disconnect.first_byte()
    }

    pub(super) fn check<const V5: bool>(&self) -> Result<(), EncodeError> {
        if !V5 {
            // Compared field by field: `==` on the properties would walk them with the MQTT 5 decoder.
            return if self.reason == ReasonCode::Success && self.properties.is_empty() {
                Ok(())
            } else {
                Err(EncodeError::NotInVersion)
            };
        }
        reason_props_check(self.reason, &self.properties, PacketType::Disconnect, PropertyContext::Disconnect)
    }

    pub(super) fn write_body<const V5: bool>(&self, w: &mut Writer<'_>) {
        if V5 {
            write_reason_props(self.reason, &self.properties, w);
        }
    }
}

/// AUTH (MQTT 5 only): a step of an extended authentication exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Auth<'a> {
    /// Success, Continue Authentication or Re-authenticate.
    pub reason: ReasonCode,
    /// Authentication Method, Authentication Data, Reason String, User Property.
    pub properties: Properties<'a>,
}

impl<'a> Auth<'a> {
    pub(crate) fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let (reason, properties) = decode_reason_props(r, PacketType::Auth, PropertyContext::Auth)?;
        Ok(Self { reason, properties })
    }

    /// Encodes this AUTH at the start of `out`; returns the bytes written.
    ///
    /// # Errors
    /// As [`Packet::encode`](super::Packet::encode).
    pub fn encode_v5(&self, out: &mut [u8]) -> Result<usize, EncodeError> {
        self.check()?;
        super::encode_packet(PacketType::Auth.first_byte(), out, &|w| {
            write_reason_props(self.reason, &self.properties, w)
        })
    }

    /// Encodes this AUTH in `version`: [`EncodeError::NotInVersion`] unless it is MQTT 5.
    ///
    /// # Errors
    /// As [`Auth::encode_v5`].
    pub fn encode(&self, version: ProtocolVersion, out: &mut [u8]) -> Result<usize, EncodeError> {
        if version.is_v5() { self.encode_v5(out) } else { Err(EncodeError::NotInVersion) }
    }

    /// The exact number of bytes [`Auth::encode`] writes.
    ///
    /// # Errors
    /// As [`Auth::encode`], except [`EncodeError::BufferTooSmall`].
    pub fn encoded_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        if !version.is_v5() {
            return Err(EncodeError::NotInVersion);
        }
        self.check()?;
        super::packet_len(|w| write_reason_props(self.reason, &self.properties, w))
    }

    fn check(&self) -> Result<(), EncodeError> {
        reason_props_check(self.reason, &self.properties, PacketType::Auth, PropertyContext::Auth)
    }
}
