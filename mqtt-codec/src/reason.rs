//! MQTT 5 reason codes (section 2.4), with the MQTT 3.x CONNACK return codes mapped onto them.

use crate::error::{DecodeError, EncodeError};
use crate::packet::PacketType;

macro_rules! reason_codes {
    ($($(#[$doc:meta])* $name:ident = $value:literal,)*) => {
        /// An MQTT 5 reason code. Which codes a packet may carry is checked on decode and encode.
        ///
        /// The value 0x00 is named `Success` here; the specification also calls it Normal Disconnection
        /// (DISCONNECT) and Granted QoS 0 (SUBACK).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        #[repr(u8)]
        pub enum ReasonCode {
            $($(#[$doc])* $name = $value,)*
        }

        impl ReasonCode {
            /// The reason code for a byte, if it is one.
            pub const fn from_u8(v: u8) -> Option<Self> {
                match v {
                    $($value => Some(Self::$name),)*
                    _ => None,
                }
            }
        }
    };
}

reason_codes! {
    /// Success, Normal Disconnection, Granted QoS 0.
    Success = 0x00,
    /// Granted QoS 1.
    GrantedQoS1 = 0x01,
    /// Granted QoS 2.
    GrantedQoS2 = 0x02,
    /// Disconnect with Will Message.
    DisconnectWithWillMessage = 0x04,
    /// No matching subscribers.
    NoMatchingSubscribers = 0x10,
    /// No subscription existed.
    NoSubscriptionExisted = 0x11,
    /// Continue authentication.
    ContinueAuthentication = 0x18,
    /// Re-authenticate.
    ReAuthenticate = 0x19,
    /// Unspecified error (also the MQTT 3.1.1 SUBACK failure code).
    UnspecifiedError = 0x80,
    /// Malformed Packet.
    MalformedPacket = 0x81,
    /// Protocol Error.
    ProtocolError = 0x82,
    /// Implementation specific error.
    ImplementationSpecificError = 0x83,
    /// Unsupported Protocol Version.
    UnsupportedProtocolVersion = 0x84,
    /// Client Identifier not valid.
    ClientIdentifierNotValid = 0x85,
    /// Bad User Name or Password.
    BadUserNameOrPassword = 0x86,
    /// Not authorized.
    NotAuthorized = 0x87,
    /// Server unavailable.
    ServerUnavailable = 0x88,
    /// Server busy.
    ServerBusy = 0x89,
    /// Banned.
    Banned = 0x8A,
    /// Server shutting down.
    ServerShuttingDown = 0x8B,
    /// Bad authentication method.
    BadAuthenticationMethod = 0x8C,
    /// Keep Alive timeout.
    KeepAliveTimeout = 0x8D,
    /// Session taken over.
    SessionTakenOver = 0x8E,
    /// Topic Filter invalid.
    TopicFilterInvalid = 0x8F,
    /// Topic Name invalid.
    TopicNameInvalid = 0x90,
    /// Packet Identifier in use.
    PacketIdentifierInUse = 0x91,
    /// Packet Identifier not found.
    PacketIdentifierNotFound = 0x92,
    /// Receive Maximum exceeded.
    ReceiveMaximumExceeded = 0x93,
    /// Topic Alias invalid.
    TopicAliasInvalid = 0x94,
    /// Packet too large.
    PacketTooLarge = 0x95,
    /// Message rate too high.
    MessageRateTooHigh = 0x96,
    /// Quota exceeded.
    QuotaExceeded = 0x97,
    /// Administrative action.
    AdministrativeAction = 0x98,
    /// Payload format invalid.
    PayloadFormatInvalid = 0x99,
    /// Retain not supported.
    RetainNotSupported = 0x9A,
    /// QoS not supported.
    QoSNotSupported = 0x9B,
    /// Use another server.
    UseAnotherServer = 0x9C,
    /// Server moved.
    ServerMoved = 0x9D,
    /// Shared Subscriptions not supported.
    SharedSubscriptionsNotSupported = 0x9E,
    /// Connection rate exceeded.
    ConnectionRateExceeded = 0x9F,
    /// Maximum connect time.
    MaximumConnectTime = 0xA0,
    /// Subscription Identifiers not supported.
    SubscriptionIdentifiersNotSupported = 0xA1,
    /// Wildcard Subscriptions not supported.
    WildcardSubscriptionsNotSupported = 0xA2,
}

impl ReasonCode {
    /// The wire value.
    pub const fn to_u8(self) -> u8 {
        self as u8
    }

    /// Whether this code reports a failure (0x80 and above).
    pub const fn is_error(self) -> bool {
        self.to_u8() >= 0x80
    }

    /// Whether an MQTT 5 packet of this type may carry this code.
    pub const fn allowed_in(self, packet: PacketType) -> bool {
        use ReasonCode as R;
        match packet {
            PacketType::ConnAck => matches!(
                self,
                R::Success
                    | R::UnspecifiedError
                    | R::MalformedPacket
                    | R::ProtocolError
                    | R::ImplementationSpecificError
                    | R::UnsupportedProtocolVersion
                    | R::ClientIdentifierNotValid
                    | R::BadUserNameOrPassword
                    | R::NotAuthorized
                    | R::ServerUnavailable
                    | R::ServerBusy
                    | R::Banned
                    | R::BadAuthenticationMethod
                    | R::TopicNameInvalid
                    | R::PacketTooLarge
                    | R::QuotaExceeded
                    | R::PayloadFormatInvalid
                    | R::RetainNotSupported
                    | R::QoSNotSupported
                    | R::UseAnotherServer
                    | R::ServerMoved
                    | R::ConnectionRateExceeded
            ),
            PacketType::PubAck | PacketType::PubRec => matches!(
                self,
                R::Success
                    | R::NoMatchingSubscribers
                    | R::UnspecifiedError
                    | R::ImplementationSpecificError
                    | R::NotAuthorized
                    | R::TopicNameInvalid
                    | R::PacketIdentifierInUse
                    | R::QuotaExceeded
                    | R::PayloadFormatInvalid
            ),
            PacketType::PubRel | PacketType::PubComp => matches!(self, R::Success | R::PacketIdentifierNotFound),
            PacketType::SubAck => matches!(
                self,
                R::Success
                    | R::GrantedQoS1
                    | R::GrantedQoS2
                    | R::UnspecifiedError
                    | R::ImplementationSpecificError
                    | R::NotAuthorized
                    | R::TopicFilterInvalid
                    | R::PacketIdentifierInUse
                    | R::QuotaExceeded
                    | R::SharedSubscriptionsNotSupported
                    | R::SubscriptionIdentifiersNotSupported
                    | R::WildcardSubscriptionsNotSupported
            ),
            PacketType::UnsubAck => matches!(
                self,
                R::Success
                    | R::NoSubscriptionExisted
                    | R::UnspecifiedError
                    | R::ImplementationSpecificError
                    | R::NotAuthorized
                    | R::TopicFilterInvalid
                    | R::PacketIdentifierInUse
            ),
            PacketType::Disconnect => matches!(
                self,
                R::Success
                    | R::DisconnectWithWillMessage
                    | R::UnspecifiedError
                    | R::MalformedPacket
                    | R::ProtocolError
                    | R::ImplementationSpecificError
                    | R::NotAuthorized
                    | R::ServerBusy
                    | R::ServerShuttingDown
                    | R::KeepAliveTimeout
                    | R::SessionTakenOver
                    | R::TopicFilterInvalid
                    | R::TopicNameInvalid
                    | R::ReceiveMaximumExceeded
                    | R::TopicAliasInvalid
                    | R::PacketTooLarge
                    | R::MessageRateTooHigh
                    | R::QuotaExceeded
                    | R::AdministrativeAction
                    | R::PayloadFormatInvalid
                    | R::RetainNotSupported
                    | R::QoSNotSupported
                    | R::UseAnotherServer
                    | R::ServerMoved
                    | R::SharedSubscriptionsNotSupported
                    | R::ConnectionRateExceeded
                    | R::MaximumConnectTime
                    | R::SubscriptionIdentifiersNotSupported
                    | R::WildcardSubscriptionsNotSupported
            ),
            PacketType::Auth => matches!(self, R::Success | R::ContinueAuthentication | R::ReAuthenticate),
            _ => false,
        }
    }

    /// Whether an MQTT 3.x SUBACK may carry this code (0x00, 0x01, 0x02 or 0x80).
    pub const fn allowed_in_v3_suback(self) -> bool {
        matches!(self, Self::Success | Self::GrantedQoS1 | Self::GrantedQoS2 | Self::UnspecifiedError)
    }

    /// The MQTT 3.x CONNACK return code for this reason, for the six codes MQTT 3.x has.
    pub const fn to_v3_connack(self) -> Option<u8> {
        Some(match self {
            Self::Success => 0,
            Self::UnsupportedProtocolVersion => 1,
            Self::ClientIdentifierNotValid => 2,
            Self::ServerUnavailable => 3,
            Self::BadUserNameOrPassword => 4,
            Self::NotAuthorized => 5,
            _ => return None,
        })
    }

    /// The reason for an MQTT 3.x CONNACK return code.
    pub const fn from_v3_connack(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::Success,
            1 => Self::UnsupportedProtocolVersion,
            2 => Self::ClientIdentifierNotValid,
            3 => Self::ServerUnavailable,
            4 => Self::BadUserNameOrPassword,
            5 => Self::NotAuthorized,
            _ => return None,
        })
    }

    pub(crate) fn decode(code: u8, packet: PacketType) -> Result<Self, DecodeError> {
        Self::from_u8(code)
            .filter(|r| r.allowed_in(packet))
            .ok_or(DecodeError::InvalidReasonCode { packet_type: packet as u8, code })
    }

    pub(crate) fn check_encode(self, packet: PacketType) -> Result<u8, EncodeError> {
        if self.allowed_in(packet) { Ok(self.to_u8()) } else { Err(EncodeError::InvalidValue) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_byte() {
        let mut known = 0;
        for b in 0..=255u8 {
            if let Some(r) = ReasonCode::from_u8(b) {
                assert_eq!(r.to_u8(), b);
                known += 1;
            }
        }
        assert_eq!(known, 43);
    }

    #[test]
    fn v3_connack_codes() {
        for code in 0..=5u8 {
            let r = ReasonCode::from_v3_connack(code).unwrap();
            assert_eq!(r.to_v3_connack(), Some(code));
        }
        assert_eq!(ReasonCode::from_v3_connack(6), None);
        assert_eq!(ReasonCode::Banned.to_v3_connack(), None);
    }
}
