//! Small value types shared by the packets.

use core::num::NonZeroU16;

use crate::error::DecodeError;

/// The protocol version, from the CONNECT protocol level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ProtocolVersion {
    /// MQTT 3.1, protocol name `MQIsdp`, level 3.
    V31,
    /// MQTT 3.1.1, protocol name `MQTT`, level 4.
    V311,
    /// MQTT 5.0, protocol name `MQTT`, level 5.
    V5,
}

impl ProtocolVersion {
    /// The protocol level byte of CONNECT.
    pub const fn level(self) -> u8 {
        match self {
            Self::V31 => 3,
            Self::V311 => 4,
            Self::V5 => 5,
        }
    }

    /// The protocol name of CONNECT.
    pub const fn name(self) -> &'static str {
        match self {
            Self::V31 => "MQIsdp",
            Self::V311 | Self::V5 => "MQTT",
        }
    }

    /// The version for a protocol level byte.
    ///
    /// # Errors
    /// [`DecodeError::UnsupportedProtocolLevel`] for anything but 3, 4 and 5.
    pub const fn from_level(level: u8) -> Result<Self, DecodeError> {
        match level {
            3 => Ok(Self::V31),
            4 => Ok(Self::V311),
            5 => Ok(Self::V5),
            other => Err(DecodeError::UnsupportedProtocolLevel(other)),
        }
    }

    /// Whether this version has properties and reason codes.
    pub const fn is_v5(self) -> bool {
        matches!(self, Self::V5)
    }
}

/// Quality of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum QoS {
    /// At most once.
    AtMostOnce = 0,
    /// At least once.
    AtLeastOnce = 1,
    /// Exactly once.
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS for its two-bit wire value.
    ///
    /// # Errors
    /// [`DecodeError::InvalidQoS`] for 3 (or anything larger).
    pub const fn from_u8(v: u8) -> Result<Self, DecodeError> {
        match v {
            0 => Ok(Self::AtMostOnce),
            1 => Ok(Self::AtLeastOnce),
            2 => Ok(Self::ExactlyOnce),
            _ => Err(DecodeError::InvalidQoS),
        }
    }
}

/// A packet identifier: never zero [MQTT-2.3.1-1].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PacketId(NonZeroU16);

impl PacketId {
    /// A packet identifier, or `None` for zero.
    pub const fn new(v: u16) -> Option<Self> {
        match NonZeroU16::new(v) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }

    /// Its value.
    pub const fn get(self) -> u16 {
        self.0.get()
    }

    /// The identifier after this one, wrapping from 65,535 to 1.
    pub const fn next(self) -> Self {
        match NonZeroU16::new(self.0.get().wrapping_add(1)) {
            Some(v) => Self(v),
            None => Self(NonZeroU16::MIN),
        }
    }

    pub(crate) fn decode(v: u16) -> Result<Self, DecodeError> {
        Self::new(v).ok_or(DecodeError::ZeroPacketId)
    }
}

/// A PUBLISH QoS with its packet identifier: QoS 0 has none, QoS 1 and 2 always have one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum QosPid {
    /// QoS 0.
    AtMostOnce,
    /// QoS 1 with its packet identifier.
    AtLeastOnce(PacketId),
    /// QoS 2 with its packet identifier.
    ExactlyOnce(PacketId),
}

impl QosPid {
    /// The QoS.
    pub const fn qos(self) -> QoS {
        match self {
            Self::AtMostOnce => QoS::AtMostOnce,
            Self::AtLeastOnce(_) => QoS::AtLeastOnce,
            Self::ExactlyOnce(_) => QoS::ExactlyOnce,
        }
    }

    /// The packet identifier, for QoS 1 and 2.
    pub const fn packet_id(self) -> Option<PacketId> {
        match self {
            Self::AtMostOnce => None,
            Self::AtLeastOnce(id) | Self::ExactlyOnce(id) => Some(id),
        }
    }

    /// Builds one from a QoS and, for QoS 1 and 2, an identifier (ignored for QoS 0).
    pub const fn from_parts(qos: QoS, id: PacketId) -> Self {
        match qos {
            QoS::AtMostOnce => Self::AtMostOnce,
            QoS::AtLeastOnce => Self::AtLeastOnce(id),
            QoS::ExactlyOnce => Self::ExactlyOnce(id),
        }
    }
}

/// MQTT 5 Retain Handling: whether retained messages are sent when a subscription is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RetainHandling {
    /// Send retained messages at the time of the subscribe.
    #[default]
    SendAtSubscribe = 0,
    /// Send them only if the subscription did not exist before.
    SendAtNewSubscribe = 1,
    /// Do not send them.
    DoNotSend = 2,
}

/// The options byte of a SUBSCRIBE entry. MQTT 3.x carries only the QoS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SubscriptionOptions {
    /// Maximum QoS the subscriber accepts.
    pub qos: QoS,
    /// MQTT 5: do not send this client's own publications back to it.
    pub no_local: bool,
    /// MQTT 5: keep the RETAIN flag as published when forwarding.
    pub retain_as_published: bool,
    /// MQTT 5: when to send retained messages.
    pub retain_handling: RetainHandling,
}

impl SubscriptionOptions {
    /// Options with only a QoS, as MQTT 3.x has them.
    pub const fn qos(qos: QoS) -> Self {
        Self { qos, no_local: false, retain_as_published: false, retain_handling: RetainHandling::SendAtSubscribe }
    }

    /// Whether any MQTT 5-only option is set.
    pub const fn has_v5_options(&self) -> bool {
        self.no_local || self.retain_as_published || !matches!(self.retain_handling, RetainHandling::SendAtSubscribe)
    }

    pub(crate) const fn to_byte(self) -> u8 {
        (self.qos as u8)
            | ((self.no_local as u8) << 2)
            | ((self.retain_as_published as u8) << 3)
            | ((self.retain_handling as u8) << 4)
    }

    pub(crate) const fn from_byte(b: u8, v5: bool) -> Result<Self, DecodeError> {
        let reserved = if v5 { 0b1100_0000 } else { 0b1111_1100 };
        if b & reserved != 0 {
            return Err(DecodeError::ReservedSubscriptionOptions);
        }
        let qos = match QoS::from_u8(b & 0b11) {
            Ok(q) => q,
            Err(e) => return Err(e),
        };
        let retain_handling = match (b >> 4) & 0b11 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendAtNewSubscribe,
            2 => RetainHandling::DoNotSend,
            _ => return Err(DecodeError::InvalidRetainHandling),
        };
        Ok(Self { qos, no_local: b & 0b100 != 0, retain_as_published: b & 0b1000 != 0, retain_handling })
    }
}
