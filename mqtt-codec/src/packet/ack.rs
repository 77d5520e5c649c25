//! PUBACK, PUBREC, PUBREL and PUBCOMP: one shape, four packet types.

use crate::error::{DecodeError, EncodeError};
use crate::properties::{Properties, PropertyContext};
use crate::reason::ReasonCode;
use crate::types::{PacketId, ProtocolVersion};
use crate::wire::{Reader, Writer};

use super::PacketType;

/// The body of PUBACK, PUBREC, PUBREL and PUBCOMP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Ack<'a> {
    /// The packet identifier of the PUBLISH (or PUBREL) being acknowledged.
    pub packet_id: PacketId,
    /// MQTT 5 reason code; always `Success` in MQTT 3.x.
    pub reason: ReasonCode,
    /// MQTT 5 properties (Reason String, User Property).
    pub properties: Properties<'a>,
}

impl<'a> Ack<'a> {
    /// A successful acknowledgement without properties.
    pub const fn new(packet_id: PacketId) -> Self {
        Self { packet_id, reason: ReasonCode::Success, properties: Properties::empty() }
    }

    const fn context(kind: PacketType) -> PropertyContext {
        match kind {
            PacketType::PubRec => PropertyContext::PubRec,
            PacketType::PubRel => PropertyContext::PubRel,
            PacketType::PubComp => PropertyContext::PubComp,
            _ => PropertyContext::PubAck,
        }
    }

    pub(crate) fn decode<const V5: bool>(kind: PacketType, r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let packet_id = PacketId::decode(r.u16()?)?;
        let mut ack = Self::new(packet_id);
        if V5 && !r.is_empty() {
            ack.reason = ReasonCode::decode(r.u8()?, kind)?;
            if !r.is_empty() {
                ack.properties = Properties::read(r, Self::context(kind))?;
            }
        }
        Ok(ack)
    }

    /// Encodes this acknowledgement as a `kind` packet (PUBACK, PUBREC, PUBREL or PUBCOMP) in MQTT 3.1.1 (and 3.1)
    /// at the start of `out`; returns the bytes written. Only the MQTT 3 encoder is linked.
    ///
    /// # Errors
    /// As [`Packet::encode`](super::Packet::encode); [`EncodeError::InvalidValue`] for any other `kind`.
    pub fn encode_v311(&self, kind: PacketType, out: &mut [u8]) -> Result<usize, EncodeError> {
        self.check::<false>(kind)?;
        super::encode_packet(kind.first_byte(), out, &|w| self.write_body::<false>(w))
    }

    /// Encodes this acknowledgement as a `kind` packet in MQTT 5 at the start of `out`; returns the bytes written.
    ///
    /// # Errors
    /// As [`Ack::encode_v311`].
    pub fn encode_v5(&self, kind: PacketType, out: &mut [u8]) -> Result<usize, EncodeError> {
        self.check::<true>(kind)?;
        super::encode_packet(kind.first_byte(), out, &|w| self.write_body::<true>(w))
    }

    /// Encodes this acknowledgement as a `kind` packet in `version`.
    ///
    /// # Errors
    /// As [`Ack::encode_v311`].
    pub fn encode(&self, kind: PacketType, version: ProtocolVersion, out: &mut [u8]) -> Result<usize, EncodeError> {
        if version.is_v5() { self.encode_v5(kind, out) } else { self.encode_v311(kind, out) }
    }

    /// The exact number of bytes [`Ack::encode`] writes.
    ///
    /// # Errors
    /// As [`Ack::encode_v311`], except [`EncodeError::BufferTooSmall`].
    pub fn encoded_len(&self, kind: PacketType, version: ProtocolVersion) -> Result<usize, EncodeError> {
        if version.is_v5() {
            self.check::<true>(kind)?;
            super::packet_len(|w| self.write_body::<true>(w))
        } else {
            self.check::<false>(kind)?;
            super::packet_len(|w| self.write_body::<false>(w))
        }
    }

    fn check<const V5: bool>(&self, kind: PacketType) -> Result<(), EncodeError> {
        if !matches!(kind, PacketType::PubAck | PacketType::PubRec | PacketType::PubRel | PacketType::PubComp) {
            return Err(EncodeError::InvalidValue);
        }
        if !V5 {
            return if self.reason == ReasonCode::Success && self.properties.is_empty() {
                Ok(())
            } else {
                Err(EncodeError::NotInVersion)
            };
        }
        self.reason.check_encode(kind)?;
        self.properties.check(Self::context(kind))
    }

    fn write_body<const V5: bool>(&self, w: &mut Writer<'_>) {
        w.put_u16(self.packet_id.get());
        if V5 {
            let props = !self.properties.is_empty();
            if self.reason != ReasonCode::Success || props {
                w.put_u8(self.reason.to_u8());
            }
            if props {
                self.properties.write(w);
            }
        }
    }
}
