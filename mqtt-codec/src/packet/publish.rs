//! PUBLISH.

use crate::error::{DecodeError, EncodeError};
use crate::properties::{Properties, PropertyContext};
use crate::topic::TopicName;
use crate::types::{PacketId, QoS, QosPid};
use crate::wire::{Reader, Writer};

use super::PacketType;

/// PUBLISH: an application message, in either direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Publish<'a> {
    /// Set on a redelivery of a QoS 1 or 2 message; never on QoS 0 [MQTT-3.3.1-2].
    pub dup: bool,
    /// QoS and, for QoS 1 and 2, the packet identifier.
    pub qos_pid: QosPid,
    /// The RETAIN flag.
    pub retain: bool,
    /// The topic; empty only in MQTT 5 with a Topic Alias property.
    pub topic: TopicName<'a>,
    /// MQTT 5 PUBLISH properties.
    pub properties: Properties<'a>,
    /// The application payload.
    pub payload: &'a [u8],
}

impl<'a> Publish<'a> {
    pub(crate) fn decode<const V5: bool>(flags: u8, r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let dup = flags & 0b1000 != 0;
        let qos = QoS::from_u8((flags >> 1) & 0b11)?;
        let retain = flags & 1 != 0;
        if dup && qos == QoS::AtMostOnce {
            return Err(DecodeError::DupWithQoS0);
        }
        let topic = TopicName::new_or_empty(r.utf8()?)?;
        let qos_pid = match qos {
            QoS::AtMostOnce => QosPid::AtMostOnce,
            QoS::AtLeastOnce => QosPid::AtLeastOnce(PacketId::decode(r.u16()?)?),
            QoS::ExactlyOnce => QosPid::ExactlyOnce(PacketId::decode(r.u16()?)?),
        };
        let properties = if V5 { Properties::read(r, PropertyContext::Publish)? } else { Properties::empty() };
        if topic.is_empty() && (!V5 || properties.topic_alias().is_none()) {
            return Err(DecodeError::EmptyTopic);
        }
        let payload = r.take(r.len())?;
        Ok(Self { dup, qos_pid, retain, topic, properties, payload })
    }

    pub(super) fn first_byte(&self) -> u8 {
        PacketType::Publish.first_byte()
            | (u8::from(self.dup) << 3)
            | ((self.qos_pid.qos() as u8) << 1)
            | u8::from(self.retain)
    }

    pub(super) fn check<const V5: bool>(&self) -> Result<(), EncodeError> {
        if self.dup && self.qos_pid == QosPid::AtMostOnce {
            return Err(EncodeError::InvalidValue);
        }
        if V5 {
            self.properties.check(PropertyContext::Publish)?;
            if self.topic.is_empty() && self.properties.topic_alias().is_none() {
                return Err(EncodeError::InvalidValue);
            }
        } else if !self.properties.is_empty() {
            return Err(EncodeError::NotInVersion);
        } else if self.topic.is_empty() {
            return Err(EncodeError::InvalidValue);
        }
        Ok(())
    }

    pub(super) fn write_body<const V5: bool>(&self, w: &mut Writer<'_>) {
        w.put_str(self.topic.as_str());
        if let Some(id) = self.qos_pid.packet_id() {
            w.put_u16(id.get());
        }
        if V5 {
            self.properties.write(w);
        }
        w.put_slice(self.payload)
    }
}
