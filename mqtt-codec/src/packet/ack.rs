//! PUBACK, PUBREC, PUBREL and PUBCOMP: one shape, four packet types.

use crate::error::{DecodeError, EncodeError};
use crate::properties::{Properties, PropertyContext};
use crate::reason::ReasonCode;
use crate::types::{PacketId, ProtocolVersion};
use crate::wire::{Reader, Writer, add};

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

    pub(crate) fn decode(kind: PacketType, r: &mut Reader<'a>, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = PacketId::decode(r.u16()?)?;
        let mut ack = Self::new(packet_id);
        if version.is_v5() && !r.is_empty() {
            ack.reason = ReasonCode::decode(r.u8()?, kind)?;
            if !r.is_empty() {
                ack.properties = Properties::read(r, Self::context(kind))?;
            }
        }
        Ok(ack)
    }

    pub(crate) fn body_len(&self, kind: PacketType, version: ProtocolVersion) -> Result<usize, EncodeError> {
        if !version.is_v5() {
            return if self.reason == ReasonCode::Success && self.properties.is_empty() {
                Ok(2)
            } else {
                Err(EncodeError::NotInVersion)
            };
        }
        self.reason.check_encode(kind)?;
        self.properties.check(Self::context(kind))?;
        Ok(match (self.reason, self.properties.is_empty()) {
            (ReasonCode::Success, true) => 2,
            (_, true) => 3,
            (_, false) => add(3, self.properties.wire_len()?)?,
        })
    }

    pub(crate) fn write_body(&self, version: ProtocolVersion, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.put_u16(self.packet_id.get())?;
        if version.is_v5() {
            let props = !self.properties.is_empty();
            if self.reason != ReasonCode::Success || props {
                w.put_u8(self.reason.to_u8())?;
            }
            if props {
                self.properties.write(w)?;
            }
        }
        Ok(())
    }
}
