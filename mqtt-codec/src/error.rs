//! Decode and encode errors: one variant per rule, each naming its specification statement where one exists.

use core::fmt;

use crate::reason::ReasonCode;

/// Why a packet could not be decoded.
///
/// [`DecodeError::spec`] names the statement of the MQTT specification that the input broke, and
/// [`DecodeError::reason_code`] gives the MQTT 5 reason code a server sends before closing the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum DecodeError {
    /// The Remaining Length (or another Variable Byte Integer) has more than 4 bytes, or is not in its shortest form.
    MalformedVarInt,
    /// The whole packet (fixed header included) is longer than the receiver's maximum (which the receiver knows:
    /// it is not repeated here, so that the error fits two words and passing it on moves no memory).
    PacketTooLarge {
        /// Length of the whole packet in bytes.
        len: u32,
    },
    /// Packet type 0, or AUTH (15) outside MQTT 5.
    InvalidPacketType(u8),
    /// Reserved flag bits in the fixed header have the wrong value.
    InvalidHeaderFlags {
        /// The packet type (upper four bits of the first byte).
        packet_type: u8,
        /// The flag bits as received.
        flags: u8,
    },
    /// A QoS field holds 3.
    InvalidQoS,
    /// A QoS 0 PUBLISH has the DUP flag set.
    DupWithQoS0,
    /// A field runs past the end of the packet (or of its property block).
    Truncated,
    /// Bytes are left over after the last field of the packet.
    TrailingBytes,
    /// A UTF-8 string is not well-formed UTF-8.
    InvalidUtf8,
    /// A UTF-8 string contains U+0000.
    NulInString,
    /// A topic name is empty (and, in MQTT 5, no Topic Alias stands in for it).
    EmptyTopic,
    /// A PUBLISH topic name contains `+` or `#`.
    WildcardInTopicName,
    /// A topic filter is empty or misuses `+` or `#`.
    InvalidTopicFilter,
    /// A shared subscription filter `$share/{group}/{filter}` is malformed.
    InvalidSharedSubscription,
    /// The CONNECT protocol name does not match the protocol level.
    InvalidProtocolName,
    /// The CONNECT protocol level is not 3, 4 or 5.
    UnsupportedProtocolLevel(u8),
    /// The reserved bit of the CONNECT flags is set.
    ReservedConnectFlag,
    /// Will QoS or Will Retain is set while the Will Flag is not.
    WillFlagsWithoutWill,
    /// The CONNECT Password flag is set without the User Name flag (MQTT 3.1 and 3.1.1).
    PasswordWithoutUsername,
    /// A packet identifier is zero.
    ZeroPacketId,
    /// A SUBSCRIBE carries no topic filter.
    EmptySubscribe,
    /// An UNSUBSCRIBE carries no topic filter.
    EmptyUnsubscribe,
    /// Reserved bits of the subscription options are set.
    ReservedSubscriptionOptions,
    /// Retain Handling holds 3.
    InvalidRetainHandling,
    /// The reserved bits of the CONNACK acknowledge flags are set.
    InvalidConnAckFlags,
    /// A CONNACK with a non-zero return code claims a present session.
    SessionPresentOnRefusal,
    /// A reason code (or MQTT 3 return code) that this packet type does not allow.
    InvalidReasonCode {
        /// The packet type.
        packet_type: u8,
        /// The code as received.
        code: u8,
    },
    /// An unknown property identifier.
    InvalidPropertyId(u32),
    /// A property that is not allowed on this packet.
    PropertyNotAllowed(u8),
    /// A property that may appear once appears more than once.
    DuplicateProperty(u8),
    /// A property holds a value outside its range (for example a boolean property other than 0 or 1).
    InvalidPropertyValue(u8),
    /// Topic Alias 0.
    TopicAliasZero,
    /// Subscription Identifier 0.
    SubscriptionIdentifierZero,
    /// Receive Maximum 0.
    ReceiveMaximumZero,
    /// Maximum Packet Size 0.
    MaximumPacketSizeZero,
    /// An Authentication Data property without an Authentication Method.
    AuthDataWithoutMethod,
    /// A SUBACK or UNSUBACK without reason codes.
    EmptyPayload,
    /// No Local set on a shared subscription.
    NoLocalOnSharedSubscription,
}

impl DecodeError {
    /// The specification statement this error breaks, such as `"MQTT-3.3.2-2"`, where one is numbered.
    pub const fn spec(&self) -> Option<&'static str> {
        Some(match self {
            Self::MalformedVarInt => "MQTT-1.5.5-1",
            Self::PacketTooLarge { .. } => "MQTT-3.1.2-24",
            Self::InvalidHeaderFlags { .. } => "MQTT-2.1.3-1",
            Self::InvalidQoS => "MQTT-3.3.1-4",
            Self::DupWithQoS0 => "MQTT-3.3.1-2",
            Self::InvalidUtf8 => "MQTT-1.5.4-1",
            Self::NulInString => "MQTT-1.5.4-2",
            Self::EmptyTopic => "MQTT-4.7.3-1",
            Self::WildcardInTopicName => "MQTT-3.3.2-2",
            Self::InvalidTopicFilter => "MQTT-4.7.1-1",
            Self::InvalidSharedSubscription => "MQTT-4.8.2-1",
            Self::InvalidProtocolName => "MQTT-3.1.2-1",
            Self::UnsupportedProtocolLevel(_) => "MQTT-3.1.2-2",
            Self::ReservedConnectFlag => "MQTT-3.1.2-3",
            Self::WillFlagsWithoutWill => "MQTT-3.1.2-11",
            Self::PasswordWithoutUsername => "MQTT-3.1.2-22",
            Self::ZeroPacketId => "MQTT-2.3.1-1",
            Self::EmptySubscribe => "MQTT-3.8.3-3",
            Self::EmptyUnsubscribe => "MQTT-3.10.3-2",
            Self::ReservedSubscriptionOptions => "MQTT-3.8.3-5",
            Self::InvalidRetainHandling => "MQTT-3.8.3-5",
            Self::InvalidConnAckFlags => "MQTT-3.2.2-1",
            Self::SessionPresentOnRefusal => "MQTT-3.2.2-4",
            Self::TopicAliasZero => "MQTT-3.3.2-8",
            Self::SubscriptionIdentifierZero => "MQTT-3.8.2-1",
            Self::DuplicateProperty(_) => "MQTT-2.2.2-2",
            Self::NoLocalOnSharedSubscription => "MQTT-3.8.3-4",
            Self::InvalidPacketType(_)
            | Self::Truncated
            | Self::TrailingBytes
            | Self::InvalidReasonCode { .. }
            | Self::InvalidPropertyId(_)
            | Self::PropertyNotAllowed(_)
            | Self::InvalidPropertyValue(_)
            | Self::ReceiveMaximumZero
            | Self::MaximumPacketSizeZero
            | Self::AuthDataWithoutMethod
            | Self::EmptyPayload => return None,
        })
    }

    /// The MQTT 5 reason code for a DISCONNECT (or CONNACK) that answers this error.
    pub const fn reason_code(&self) -> ReasonCode {
        match self {
            Self::PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            Self::UnsupportedProtocolLevel(_) => ReasonCode::UnsupportedProtocolVersion,
            Self::InvalidTopicFilter | Self::InvalidSharedSubscription => ReasonCode::TopicFilterInvalid,
            Self::WildcardInTopicName | Self::EmptyTopic => ReasonCode::TopicNameInvalid,
            Self::TopicAliasZero => ReasonCode::TopicAliasInvalid,
            Self::DupWithQoS0
            | Self::DuplicateProperty(_)
            | Self::SubscriptionIdentifierZero
            | Self::ReceiveMaximumZero
            | Self::MaximumPacketSizeZero
            | Self::AuthDataWithoutMethod
            | Self::NoLocalOnSharedSubscription
            | Self::InvalidPropertyValue(_)
            | Self::ZeroPacketId => ReasonCode::ProtocolError,
            _ => ReasonCode::MalformedPacket,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Self::MalformedVarInt => "variable byte integer longer than 4 bytes",
            Self::PacketTooLarge { len } => {
                return write!(f, "packet of {len} bytes exceeds the maximum packet size");
            }
            Self::InvalidPacketType(t) => return write!(f, "invalid packet type {t}"),
            Self::InvalidHeaderFlags { packet_type, flags } => {
                return write!(f, "invalid fixed header flags {flags:#06b} for packet type {packet_type}");
            }
            Self::InvalidQoS => "QoS 3 is not a valid QoS",
            Self::DupWithQoS0 => "DUP flag set on a QoS 0 PUBLISH",
            Self::Truncated => "field runs past the end of the packet",
            Self::TrailingBytes => "unexpected bytes after the last field",
            Self::InvalidUtf8 => "string is not well-formed UTF-8",
            Self::NulInString => "string contains U+0000",
            Self::EmptyTopic => "empty topic name",
            Self::WildcardInTopicName => "wildcard in a topic name",
            Self::InvalidTopicFilter => "invalid topic filter",
            Self::InvalidSharedSubscription => "invalid shared subscription filter",
            Self::InvalidProtocolName => "protocol name does not match the protocol level",
            Self::UnsupportedProtocolLevel(l) => return write!(f, "unsupported protocol level {l}"),
            Self::ReservedConnectFlag => "reserved CONNECT flag set",
            Self::WillFlagsWithoutWill => "will QoS or will retain set without the will flag",
            Self::PasswordWithoutUsername => "password flag set without the user name flag",
            Self::ZeroPacketId => "packet identifier 0",
            Self::EmptySubscribe => "SUBSCRIBE without topic filters",
            Self::EmptyUnsubscribe => "UNSUBSCRIBE without topic filters",
            Self::ReservedSubscriptionOptions => "reserved subscription option bits set",
            Self::InvalidRetainHandling => "retain handling 3",
            Self::InvalidConnAckFlags => "reserved CONNACK flag bits set",
            Self::SessionPresentOnRefusal => "session present set on a refused connection",
            Self::InvalidReasonCode { packet_type, code } => {
                return write!(f, "reason code {code:#04x} not allowed on packet type {packet_type}");
            }
            Self::InvalidPropertyId(id) => return write!(f, "unknown property identifier {id:#04x}"),
            Self::PropertyNotAllowed(id) => return write!(f, "property {id:#04x} not allowed on this packet"),
            Self::DuplicateProperty(id) => return write!(f, "property {id:#04x} included more than once"),
            Self::InvalidPropertyValue(id) => return write!(f, "invalid value for property {id:#04x}"),
            Self::TopicAliasZero => "topic alias 0",
            Self::SubscriptionIdentifierZero => "subscription identifier 0",
            Self::ReceiveMaximumZero => "receive maximum 0",
            Self::MaximumPacketSizeZero => "maximum packet size 0",
            Self::AuthDataWithoutMethod => "authentication data without authentication method",
            Self::EmptyPayload => "acknowledgement without reason codes",
            Self::NoLocalOnSharedSubscription => "no local set on a shared subscription",
        };
        f.write_str(text)
    }
}

impl core::error::Error for DecodeError {}

/// Why a packet could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum EncodeError {
    /// The output buffer is smaller than the encoded packet (its length is the caller's; it is not repeated here, so
    /// that the error fits two words and passing it on moves no memory).
    BufferTooSmall {
        /// Bytes the packet needs.
        needed: usize,
    },
    /// A string or binary field is longer than 65,535 bytes.
    FieldTooLong,
    /// The packet is longer than the 268,435,455 bytes a Remaining Length can express.
    PacketTooLong,
    /// A value does not fit a Variable Byte Integer (over 268,435,455).
    VarIntTooLarge,
    /// The packet, a property or a reason code does not exist in the chosen protocol version.
    NotInVersion,
    /// A property that is not allowed on this packet.
    PropertyNotAllowed(u8),
    /// The packet holds a value the specification forbids (for example a PUBLISH topic with a wildcard).
    InvalidValue,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BufferTooSmall { needed } => {
                write!(f, "output buffer is smaller than the {needed} bytes needed")
            }
            Self::FieldTooLong => f.write_str("field longer than 65535 bytes"),
            Self::PacketTooLong => f.write_str("packet longer than the maximum remaining length"),
            Self::VarIntTooLarge => f.write_str("value too large for a variable byte integer"),
            Self::NotInVersion => f.write_str("not available in this protocol version"),
            Self::PropertyNotAllowed(id) => write!(f, "property {id:#04x} not allowed on this packet"),
            Self::InvalidValue => f.write_str("value not allowed by the specification"),
        }
    }
}

impl core::error::Error for EncodeError {}
