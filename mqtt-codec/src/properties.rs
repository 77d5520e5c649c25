//! MQTT 5 properties (section 2.2.2): validated on decode, iterated without allocation.
//!
//! A decoded [`Properties`] keeps the validated wire bytes and yields [`Property`] values on iteration; one built
//! for encoding borrows a caller's `&[Property]`. Both compare equal when they hold the same properties in the same
//! order.

use core::fmt;

use crate::error::{DecodeError, EncodeError};
use crate::topic::TopicName;
use crate::types::QoS;
use crate::wire::{self, Reader, Writer, add, varint_len};

macro_rules! property_ids {
    ($($(#[$doc:meta])* $name:ident = $value:literal,)*) => {
        /// A property identifier.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        #[repr(u8)]
        pub enum PropertyId {
            $($(#[$doc])* $name = $value,)*
        }

        impl PropertyId {
            /// The identifier for a value, if it names a property.
            pub const fn from_u32(v: u32) -> Option<Self> {
                match v {
                    $($value => Some(Self::$name),)*
                    _ => None,
                }
            }
        }
    };
}

property_ids! {
    /// Payload Format Indicator (byte).
    PayloadFormatIndicator = 0x01,
    /// Message Expiry Interval (four-byte integer).
    MessageExpiryInterval = 0x02,
    /// Content Type (UTF-8 string).
    ContentType = 0x03,
    /// Response Topic (UTF-8 string).
    ResponseTopic = 0x08,
    /// Correlation Data (binary).
    CorrelationData = 0x09,
    /// Subscription Identifier (variable byte integer).
    SubscriptionIdentifier = 0x0B,
    /// Session Expiry Interval (four-byte integer).
    SessionExpiryInterval = 0x11,
    /// Assigned Client Identifier (UTF-8 string).
    AssignedClientIdentifier = 0x12,
    /// Server Keep Alive (two-byte integer).
    ServerKeepAlive = 0x13,
    /// Authentication Method (UTF-8 string).
    AuthenticationMethod = 0x15,
    /// Authentication Data (binary).
    AuthenticationData = 0x16,
    /// Request Problem Information (byte).
    RequestProblemInformation = 0x17,
    /// Will Delay Interval (four-byte integer).
    WillDelayInterval = 0x18,
    /// Request Response Information (byte).
    RequestResponseInformation = 0x19,
    /// Response Information (UTF-8 string).
    ResponseInformation = 0x1A,
    /// Server Reference (UTF-8 string).
    ServerReference = 0x1C,
    /// Reason String (UTF-8 string).
    ReasonString = 0x1F,
    /// Receive Maximum (two-byte integer).
    ReceiveMaximum = 0x21,
    /// Topic Alias Maximum (two-byte integer).
    TopicAliasMaximum = 0x22,
    /// Topic Alias (two-byte integer).
    TopicAlias = 0x23,
    /// Maximum QoS (byte).
    MaximumQoS = 0x24,
    /// Retain Available (byte).
    RetainAvailable = 0x25,
    /// User Property (UTF-8 string pair).
    UserProperty = 0x26,
    /// Maximum Packet Size (four-byte integer).
    MaximumPacketSize = 0x27,
    /// Wildcard Subscription Available (byte).
    WildcardSubscriptionAvailable = 0x28,
    /// Subscription Identifier Available (byte).
    SubscriptionIdentifierAvailable = 0x29,
    /// Shared Subscription Available (byte).
    SharedSubscriptionAvailable = 0x2A,
}

/// Where a property block sits: each packet with properties, and the will properties of CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[allow(missing_docs)]
pub enum PropertyContext {
    Connect,
    Will,
    ConnAck,
    Publish,
    PubAck,
    PubRec,
    PubRel,
    PubComp,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

impl PropertyContext {
    const fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl PropertyId {
    /// Whether this property may appear in this context (table 2-4 of MQTT 5).
    pub const fn allowed_in(self, ctx: PropertyContext) -> bool {
        use PropertyContext as C;
        let publish_will = C::Publish.bit() | C::Will.bit();
        let acks = C::PubAck.bit()
            | C::PubRec.bit()
            | C::PubRel.bit()
            | C::PubComp.bit()
            | C::SubAck.bit()
            | C::UnsubAck.bit()
            | C::ConnAck.bit()
            | C::Disconnect.bit()
            | C::Auth.bit();
        let mask = match self {
            Self::PayloadFormatIndicator
            | Self::MessageExpiryInterval
            | Self::ContentType
            | Self::ResponseTopic
            | Self::CorrelationData => publish_will,
            Self::SubscriptionIdentifier => C::Publish.bit() | C::Subscribe.bit(),
            Self::SessionExpiryInterval => C::Connect.bit() | C::ConnAck.bit() | C::Disconnect.bit(),
            Self::AssignedClientIdentifier
            | Self::ServerKeepAlive
            | Self::ResponseInformation
            | Self::MaximumQoS
            | Self::RetainAvailable
            | Self::WildcardSubscriptionAvailable
            | Self::SubscriptionIdentifierAvailable
            | Self::SharedSubscriptionAvailable => C::ConnAck.bit(),
            Self::AuthenticationMethod | Self::AuthenticationData => {
                C::Connect.bit() | C::ConnAck.bit() | C::Auth.bit()
            }
            Self::RequestProblemInformation | Self::RequestResponseInformation => C::Connect.bit(),
            Self::WillDelayInterval => C::Will.bit(),
            Self::ServerReference => C::ConnAck.bit() | C::Disconnect.bit(),
            Self::ReasonString => acks,
            Self::ReceiveMaximum | Self::TopicAliasMaximum | Self::MaximumPacketSize => {
                C::Connect.bit() | C::ConnAck.bit()
            }
            Self::TopicAlias => C::Publish.bit(),
            Self::UserProperty => u16::MAX,
        };
        mask & ctx.bit() != 0
    }

    /// Whether the property may appear more than once in this context.
    pub const fn repeatable_in(self, ctx: PropertyContext) -> bool {
        match self {
            Self::UserProperty => true,
            // A server sends one Subscription Identifier per matching subscription [MQTT-3.3.4-4].
            Self::SubscriptionIdentifier => matches!(ctx, PropertyContext::Publish),
            _ => false,
        }
    }
}

/// One property with its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[allow(missing_docs)]
pub enum Property<'a> {
    /// `true`: the payload is UTF-8.
    PayloadFormatIndicator(bool),
    MessageExpiryInterval(u32),
    ContentType(&'a str),
    /// A topic name: no wildcards [MQTT-3.3.2-14].
    ResponseTopic(&'a str),
    CorrelationData(&'a [u8]),
    /// 1 to 268,435,455.
    SubscriptionIdentifier(u32),
    SessionExpiryInterval(u32),
    AssignedClientIdentifier(&'a str),
    ServerKeepAlive(u16),
    AuthenticationMethod(&'a str),
    AuthenticationData(&'a [u8]),
    RequestProblemInformation(bool),
    WillDelayInterval(u32),
    RequestResponseInformation(bool),
    ResponseInformation(&'a str),
    ServerReference(&'a str),
    ReasonString(&'a str),
    /// Never 0.
    ReceiveMaximum(u16),
    TopicAliasMaximum(u16),
    /// Never 0.
    TopicAlias(u16),
    /// QoS 0 or 1 (a server that supports QoS 2 omits the property).
    MaximumQoS(QoS),
    RetainAvailable(bool),
    /// A name and a value.
    UserProperty(&'a str, &'a str),
    /// Never 0.
    MaximumPacketSize(u32),
    WildcardSubscriptionAvailable(bool),
    SubscriptionIdentifierAvailable(bool),
    SharedSubscriptionAvailable(bool),
}

impl<'a> Property<'a> {
    /// This property's identifier.
    pub const fn id(&self) -> PropertyId {
        match self {
            Self::PayloadFormatIndicator(_) => PropertyId::PayloadFormatIndicator,
            Self::MessageExpiryInterval(_) => PropertyId::MessageExpiryInterval,
            Self::ContentType(_) => PropertyId::ContentType,
            Self::ResponseTopic(_) => PropertyId::ResponseTopic,
            Self::CorrelationData(_) => PropertyId::CorrelationData,
            Self::SubscriptionIdentifier(_) => PropertyId::SubscriptionIdentifier,
            Self::SessionExpiryInterval(_) => PropertyId::SessionExpiryInterval,
            Self::AssignedClientIdentifier(_) => PropertyId::AssignedClientIdentifier,
            Self::ServerKeepAlive(_) => PropertyId::ServerKeepAlive,
            Self::AuthenticationMethod(_) => PropertyId::AuthenticationMethod,
            Self::AuthenticationData(_) => PropertyId::AuthenticationData,
            Self::RequestProblemInformation(_) => PropertyId::RequestProblemInformation,
            Self::WillDelayInterval(_) => PropertyId::WillDelayInterval,
            Self::RequestResponseInformation(_) => PropertyId::RequestResponseInformation,
            Self::ResponseInformation(_) => PropertyId::ResponseInformation,
            Self::ServerReference(_) => PropertyId::ServerReference,
            Self::ReasonString(_) => PropertyId::ReasonString,
            Self::ReceiveMaximum(_) => PropertyId::ReceiveMaximum,
            Self::TopicAliasMaximum(_) => PropertyId::TopicAliasMaximum,
            Self::TopicAlias(_) => PropertyId::TopicAlias,
            Self::MaximumQoS(_) => PropertyId::MaximumQoS,
            Self::RetainAvailable(_) => PropertyId::RetainAvailable,
            Self::UserProperty(..) => PropertyId::UserProperty,
            Self::MaximumPacketSize(_) => PropertyId::MaximumPacketSize,
            Self::WildcardSubscriptionAvailable(_) => PropertyId::WildcardSubscriptionAvailable,
            Self::SubscriptionIdentifierAvailable(_) => PropertyId::SubscriptionIdentifierAvailable,
            Self::SharedSubscriptionAvailable(_) => PropertyId::SharedSubscriptionAvailable,
        }
    }

    /// Reads one property and checks its value.
    fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let raw = r.varint()?;
        let id = PropertyId::from_u32(raw).ok_or(DecodeError::InvalidPropertyId(raw))?;
        let flag = |r: &mut Reader<'a>| match r.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::InvalidPropertyValue(id as u8)),
        };
        Ok(match id {
            PropertyId::PayloadFormatIndicator => Self::PayloadFormatIndicator(flag(r)?),
            PropertyId::MessageExpiryInterval => Self::MessageExpiryInterval(r.u32()?),
            PropertyId::ContentType => Self::ContentType(r.utf8()?),
            PropertyId::ResponseTopic => {
                let topic = r.utf8()?;
                TopicName::new(topic)?;
                Self::ResponseTopic(topic)
            }
            PropertyId::CorrelationData => Self::CorrelationData(r.binary()?),
            PropertyId::SubscriptionIdentifier => match r.varint()? {
                0 => return Err(DecodeError::SubscriptionIdentifierZero),
                v => Self::SubscriptionIdentifier(v),
            },
            PropertyId::SessionExpiryInterval => Self::SessionExpiryInterval(r.u32()?),
            PropertyId::AssignedClientIdentifier => Self::AssignedClientIdentifier(r.utf8()?),
            PropertyId::ServerKeepAlive => Self::ServerKeepAlive(r.u16()?),
            PropertyId::AuthenticationMethod => Self::AuthenticationMethod(r.utf8()?),
            PropertyId::AuthenticationData => Self::AuthenticationData(r.binary()?),
            PropertyId::RequestProblemInformation => Self::RequestProblemInformation(flag(r)?),
            PropertyId::WillDelayInterval => Self::WillDelayInterval(r.u32()?),
            PropertyId::RequestResponseInformation => Self::RequestResponseInformation(flag(r)?),
            PropertyId::ResponseInformation => Self::ResponseInformation(r.utf8()?),
            PropertyId::ServerReference => Self::ServerReference(r.utf8()?),
            PropertyId::ReasonString => Self::ReasonString(r.utf8()?),
            PropertyId::ReceiveMaximum => match r.u16()? {
                0 => return Err(DecodeError::ReceiveMaximumZero),
                v => Self::ReceiveMaximum(v),
            },
            PropertyId::TopicAliasMaximum => Self::TopicAliasMaximum(r.u16()?),
            PropertyId::TopicAlias => match r.u16()? {
                0 => return Err(DecodeError::TopicAliasZero),
                v => Self::TopicAlias(v),
            },
            PropertyId::MaximumQoS => match r.u8()? {
                0 => Self::MaximumQoS(QoS::AtMostOnce),
                1 => Self::MaximumQoS(QoS::AtLeastOnce),
                _ => return Err(DecodeError::InvalidPropertyValue(id as u8)),
            },
            PropertyId::RetainAvailable => Self::RetainAvailable(flag(r)?),
            PropertyId::UserProperty => Self::UserProperty(r.utf8()?, r.utf8()?),
            PropertyId::MaximumPacketSize => match r.u32()? {
                0 => return Err(DecodeError::MaximumPacketSizeZero),
                v => Self::MaximumPacketSize(v),
            },
            PropertyId::WildcardSubscriptionAvailable => Self::WildcardSubscriptionAvailable(flag(r)?),
            PropertyId::SubscriptionIdentifierAvailable => Self::SubscriptionIdentifierAvailable(flag(r)?),
            PropertyId::SharedSubscriptionAvailable => Self::SharedSubscriptionAvailable(flag(r)?),
        })
    }

    /// Checks a value built for encoding against the same rules as decoding.
    fn check(&self) -> Result<(), EncodeError> {
        let ok = match *self {
            Self::SubscriptionIdentifier(v) => (1..=wire::MAX_VARINT).contains(&v),
            Self::ReceiveMaximum(v) | Self::TopicAlias(v) => v != 0,
            Self::MaximumPacketSize(v) => v != 0,
            Self::MaximumQoS(q) => q != QoS::ExactlyOnce,
            Self::ResponseTopic(t) => TopicName::new(t).is_ok(),
            _ => true,
        };
        let strings_ok = match *self {
            Self::ContentType(s)
            | Self::ResponseTopic(s)
            | Self::AssignedClientIdentifier(s)
            | Self::AuthenticationMethod(s)
            | Self::ResponseInformation(s)
            | Self::ServerReference(s)
            | Self::ReasonString(s) => !wire::has_nul(s.as_bytes()),
            Self::UserProperty(k, v) => !wire::has_nul(k.as_bytes()) && !wire::has_nul(v.as_bytes()),
            _ => true,
        };
        if ok && strings_ok { Ok(()) } else { Err(EncodeError::InvalidValue) }
    }

    fn write(&self, w: &mut Writer<'_>) {
        w.put_u8(self.id() as u8);
        match *self {
            Self::PayloadFormatIndicator(b)
            | Self::RequestProblemInformation(b)
            | Self::RequestResponseInformation(b)
            | Self::RetainAvailable(b)
            | Self::WildcardSubscriptionAvailable(b)
            | Self::SubscriptionIdentifierAvailable(b)
            | Self::SharedSubscriptionAvailable(b) => w.put_u8(u8::from(b)),
            Self::MaximumQoS(q) => w.put_u8(q as u8),
            Self::ServerKeepAlive(v) | Self::ReceiveMaximum(v) | Self::TopicAliasMaximum(v) | Self::TopicAlias(v) => {
                w.put_u16(v)
            }
            Self::MessageExpiryInterval(v)
            | Self::SessionExpiryInterval(v)
            | Self::WillDelayInterval(v)
            | Self::MaximumPacketSize(v) => w.put_u32(v),
            Self::SubscriptionIdentifier(v) => w.put_varint(v),
            Self::ContentType(s)
            | Self::ResponseTopic(s)
            | Self::AssignedClientIdentifier(s)
            | Self::AuthenticationMethod(s)
            | Self::ResponseInformation(s)
            | Self::ServerReference(s)
            | Self::ReasonString(s) => w.put_str(s),
            Self::CorrelationData(b) | Self::AuthenticationData(b) => w.put_binary(b),
            Self::UserProperty(k, v) => {
                w.put_str(k);
                w.put_str(v)
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Repr<'a> {
    /// Validated wire bytes, without the length prefix.
    Wire(&'a [u8]),
    /// Properties built by the caller for encoding.
    List(&'a [Property<'a>]),
}

/// A block of MQTT 5 properties. Empty in MQTT 3.x packets.
#[derive(Clone, Copy)]
pub struct Properties<'a>(Repr<'a>);

impl Default for Properties<'_> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<'a> Properties<'a> {
    /// No properties.
    pub const fn empty() -> Self {
        Self(Repr::List(&[]))
    }

    /// Properties to encode, in this order. They are checked against the packet when it is encoded.
    pub const fn from_list(list: &'a [Property<'a>]) -> Self {
        Self(Repr::List(list))
    }

    /// Validates the body of a property block (without its length prefix) for a context.
    ///
    /// # Errors
    /// The first rule the bytes break: an unknown or disallowed property, a duplicate, a bad value, or a truncated
    /// field.
    pub fn from_wire(bytes: &'a [u8], ctx: PropertyContext) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let mut seen: u64 = 0;
        while !r.is_empty() {
            let p = Property::read(&mut r)?;
            let id = p.id();
            if !id.allowed_in(ctx) {
                return Err(DecodeError::PropertyNotAllowed(id as u8));
            }
            let bit = 1u64 << (id as u8);
            if seen & bit != 0 && !id.repeatable_in(ctx) {
                return Err(DecodeError::DuplicateProperty(id as u8));
            }
            seen |= bit;
        }
        let auth_method = 1u64 << (PropertyId::AuthenticationMethod as u8);
        let auth_data = 1u64 << (PropertyId::AuthenticationData as u8);
        if seen & auth_data != 0 && seen & auth_method == 0 {
            return Err(DecodeError::AuthDataWithoutMethod);
        }
        Ok(Self(Repr::Wire(bytes)))
    }

    /// Reads a length-prefixed property block.
    pub(crate) fn read(r: &mut Reader<'a>, ctx: PropertyContext) -> Result<Self, DecodeError> {
        // Errors made afresh rather than passed on with `?`: moving a `DecodeError` between `Result`s of different
        // layouts is a `memcpy` call on Cortex-M.
        let len = match r.varint() {
            Ok(len) => len,
            Err(DecodeError::MalformedVarInt) => return Err(DecodeError::MalformedVarInt),
            Err(_) => return Err(DecodeError::Truncated),
        };
        let Some(bytes) = usize::try_from(len).ok().and_then(|len| r.take(len).ok()) else {
            return Err(DecodeError::Truncated);
        };
        Self::from_wire(bytes, ctx)
    }

    /// The validated wire bytes of a decoded block, without the length prefix.
    pub const fn as_wire(&self) -> Option<&'a [u8]> {
        match self.0 {
            Repr::Wire(b) => Some(b),
            Repr::List(_) => None,
        }
    }

    /// Whether the block holds no property.
    pub const fn is_empty(&self) -> bool {
        match self.0 {
            Repr::Wire(b) => b.is_empty(),
            Repr::List(l) => l.is_empty(),
        }
    }

    /// The properties in order.
    pub fn iter(&self) -> PropertyIter<'a> {
        PropertyIter(match self.0 {
            Repr::Wire(b) => IterRepr::Wire(Reader::new(b)),
            Repr::List(l) => IterRepr::List(l.iter()),
        })
    }

    /// The encoded length of the block's body (without its length prefix).
    ///
    /// # Errors
    /// [`EncodeError::FieldTooLong`] or [`EncodeError::VarIntTooLarge`] for a value its field cannot hold.
    pub fn body_len(&self) -> Result<usize, EncodeError> {
        Writer::measure(|w| self.write_items(w))
    }

    /// The encoded length of the block, length prefix included.
    ///
    /// # Errors
    /// As [`Properties::body_len`], and [`EncodeError::PacketTooLong`] for a block longer than a Variable Byte
    /// Integer can say.
    pub fn wire_len(&self) -> Result<usize, EncodeError> {
        let body = self.body_len()?;
        add(body, varint_len(wire::to_varint(body)?)?)
    }

    /// Checks a caller-built block against the rules for its context.
    pub(crate) fn check(&self, ctx: PropertyContext) -> Result<(), EncodeError> {
        // Decoded blocks get the same checks: they were validated for their own context, which may allow what this
        // one does not (two Subscription Identifiers are fine in PUBLISH, not in SUBSCRIBE).
        let mut seen: u64 = 0;
        for p in self.iter() {
            let id = p.id();
            if !id.allowed_in(ctx) {
                return Err(EncodeError::PropertyNotAllowed(id as u8));
            }
            let bit = 1u64 << (id as u8);
            if seen & bit != 0 && !id.repeatable_in(ctx) {
                return Err(EncodeError::InvalidValue);
            }
            seen |= bit;
            p.check()?;
        }
        // The decoder rejects Authentication Data without an Authentication Method, so the encoder must too.
        let auth_method = 1u64 << (PropertyId::AuthenticationMethod as u8);
        let auth_data = 1u64 << (PropertyId::AuthenticationData as u8);
        if seen & auth_data != 0 && seen & auth_method == 0 {
            return Err(EncodeError::InvalidValue);
        }
        Ok(())
    }

    /// Writes the block, length prefix included.
    pub(crate) fn write(&self, w: &mut Writer<'_>) {
        // Measured over a writer that only counts. A block too long for its prefix makes the packet too long, which
        // the packet's own measurement reports (as `PacketTooLong`).
        let mut len = Writer::new(&mut []);
        self.write_items(&mut len);
        w.put_varint(u32::try_from(len.position()).unwrap_or(u32::MAX).min(wire::MAX_VARINT));
        self.write_items(w);
    }

    fn write_items(&self, w: &mut Writer<'_>) {
        match self.0 {
            Repr::Wire(b) => w.put_slice(b),
            Repr::List(l) => l.iter().for_each(|p| p.write(w)),
        }
    }
}

macro_rules! getters {
    ($($(#[$doc:meta])* $fn:ident -> $ty:ty = $variant:ident;)*) => {
        impl<'a> Properties<'a> {
            $(
                $(#[$doc])*
                pub fn $fn(&self) -> Option<$ty> {
                    self.iter().find_map(|p| match p {
                        Property::$variant(v) => Some(v),
                        _ => None,
                    })
                }
            )*
        }
    };
}

getters! {
    /// Payload Format Indicator: `true` for UTF-8.
    payload_format_indicator -> bool = PayloadFormatIndicator;
    /// Message Expiry Interval in seconds.
    message_expiry_interval -> u32 = MessageExpiryInterval;
    /// Content Type.
    content_type -> &'a str = ContentType;
    /// Response Topic.
    response_topic -> &'a str = ResponseTopic;
    /// Correlation Data.
    correlation_data -> &'a [u8] = CorrelationData;
    /// The first Subscription Identifier.
    subscription_identifier -> u32 = SubscriptionIdentifier;
    /// Session Expiry Interval in seconds.
    session_expiry_interval -> u32 = SessionExpiryInterval;
    /// Assigned Client Identifier.
    assigned_client_identifier -> &'a str = AssignedClientIdentifier;
    /// Server Keep Alive in seconds.
    server_keep_alive -> u16 = ServerKeepAlive;
    /// Authentication Method.
    authentication_method -> &'a str = AuthenticationMethod;
    /// Authentication Data.
    authentication_data -> &'a [u8] = AuthenticationData;
    /// Request Problem Information.
    request_problem_information -> bool = RequestProblemInformation;
    /// Will Delay Interval in seconds.
    will_delay_interval -> u32 = WillDelayInterval;
    /// Request Response Information.
    request_response_information -> bool = RequestResponseInformation;
    /// Response Information.
    response_information -> &'a str = ResponseInformation;
    /// Server Reference.
    server_reference -> &'a str = ServerReference;
    /// Reason String.
    reason_string -> &'a str = ReasonString;
    /// Receive Maximum.
    receive_maximum -> u16 = ReceiveMaximum;
    /// Topic Alias Maximum.
    topic_alias_maximum -> u16 = TopicAliasMaximum;
    /// Topic Alias.
    topic_alias -> u16 = TopicAlias;
    /// Maximum QoS.
    maximum_qos -> QoS = MaximumQoS;
    /// Retain Available.
    retain_available -> bool = RetainAvailable;
    /// Maximum Packet Size.
    maximum_packet_size -> u32 = MaximumPacketSize;
    /// Wildcard Subscription Available.
    wildcard_subscription_available -> bool = WildcardSubscriptionAvailable;
    /// Subscription Identifier Available.
    subscription_identifier_available -> bool = SubscriptionIdentifierAvailable;
    /// Shared Subscription Available.
    shared_subscription_available -> bool = SharedSubscriptionAvailable;
}

impl PartialEq for Properties<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Properties<'_> {}

impl fmt::Debug for Properties<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Properties<'_> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "[");
        for p in self.iter() {
            defmt::write!(f, "{}, ", p);
        }
        defmt::write!(f, "]");
    }
}

enum IterRepr<'a> {
    Wire(Reader<'a>),
    List(core::slice::Iter<'a, Property<'a>>),
}

/// Iterator over a [`Properties`] block.
pub struct PropertyIter<'a>(IterRepr<'a>);

impl<'a> Iterator for PropertyIter<'a> {
    type Item = Property<'a>;

    fn next(&mut self) -> Option<Property<'a>> {
        match &mut self.0 {
            // The bytes were validated when the block was decoded, so reading cannot fail here.
            IterRepr::Wire(r) if !r.is_empty() => Property::read(r).ok(),
            IterRepr::Wire(_) => None,
            IterRepr::List(it) => it.next().copied(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_and_list_compare_equal() {
        let list = [Property::TopicAlias(3), Property::UserProperty("k", "v"), Property::UserProperty("k", "w")];
        let props = Properties::from_list(&list);
        let mut buf = [0u8; 64];
        let mut w = Writer::new(&mut buf);
        props.write(&mut w);
        let n = w.position();
        let mut r = Reader::new(&buf[..n]);
        let decoded = Properties::read(&mut r, PropertyContext::Publish).unwrap();
        assert!(r.is_empty());
        assert_eq!(decoded, props);
        assert_eq!(decoded.topic_alias(), Some(3));
        assert_eq!(props.wire_len().unwrap(), n);
    }

    #[test]
    fn encode_checks_match_decode_checks() {
        // Regression: Authentication Data without an Authentication Method encoded, but could not be decoded.
        let list = [Property::AuthenticationData(b"x")];
        assert_eq!(Properties::from_list(&list).check(PropertyContext::Auth), Err(EncodeError::InvalidValue));
        let list = [Property::AuthenticationMethod("m"), Property::AuthenticationData(b"x")];
        assert_eq!(Properties::from_list(&list).check(PropertyContext::Auth), Ok(()));
        // Regression: a decoded PUBLISH block with two Subscription Identifiers passed the SUBSCRIBE check.
        let decoded = Properties::from_wire(&[0x0B, 1, 0x0B, 2], PropertyContext::Publish).unwrap();
        assert_eq!(decoded.check(PropertyContext::Publish), Ok(()));
        assert_eq!(decoded.check(PropertyContext::Subscribe), Err(EncodeError::InvalidValue));
    }

    #[test]
    fn rules() {
        let ctx = PropertyContext::Publish;
        assert_eq!(Properties::from_wire(&[0x23, 0, 0], ctx).unwrap_err(), DecodeError::TopicAliasZero);
        assert_eq!(Properties::from_wire(&[0x0B, 0], ctx).unwrap_err(), DecodeError::SubscriptionIdentifierZero);
        assert_eq!(Properties::from_wire(&[0x11, 0, 0, 0, 1], ctx).unwrap_err(), DecodeError::PropertyNotAllowed(0x11));
        assert_eq!(Properties::from_wire(&[0x01, 1, 0x01, 1], ctx).unwrap_err(), DecodeError::DuplicateProperty(1));
        assert_eq!(Properties::from_wire(&[0x01, 2], ctx).unwrap_err(), DecodeError::InvalidPropertyValue(1));
        assert_eq!(Properties::from_wire(&[0x02, 0, 0], ctx).unwrap_err(), DecodeError::Truncated);
        assert_eq!(Properties::from_wire(&[0x05], ctx).unwrap_err(), DecodeError::InvalidPropertyId(5));
        // Subscription Identifier repeats in PUBLISH but not in SUBSCRIBE.
        assert!(Properties::from_wire(&[0x0B, 1, 0x0B, 2], ctx).is_ok());
        assert_eq!(
            Properties::from_wire(&[0x0B, 1, 0x0B, 2], PropertyContext::Subscribe).unwrap_err(),
            DecodeError::DuplicateProperty(0x0B)
        );
    }
}
