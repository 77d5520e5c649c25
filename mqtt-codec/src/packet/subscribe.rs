//! SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK.

use crate::error::{DecodeError, EncodeError};
use crate::properties::{Properties, PropertyContext};
use crate::reason::ReasonCode;
use crate::topic::TopicFilter;
use crate::types::{PacketId, SubscriptionOptions};
use crate::wire::{Reader, Writer};

use super::PacketType;
use super::list::List;

/// One entry of a SUBSCRIBE: a filter and its options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Subscription<'a> {
    /// The topic filter, possibly a shared subscription.
    pub filter: TopicFilter<'a>,
    /// Its options.
    pub options: SubscriptionOptions,
}

/// Reads the rest of the packet as a non-empty list, validating each entry with `check`.
fn read_list<'a, T>(
    r: &mut Reader<'a>,
    empty: DecodeError,
    mut check: impl FnMut(&mut Reader<'a>) -> Result<T, DecodeError>,
) -> Result<&'a [u8], DecodeError> {
    let bytes = r.rest();
    if r.is_empty() {
        return Err(empty);
    }
    while !r.is_empty() {
        check(r)?;
    }
    Ok(bytes)
}

fn check_props<const V5: bool>(props: &Properties<'_>, ctx: PropertyContext) -> Result<(), EncodeError> {
    if V5 {
        props.check(ctx)
    } else if props.is_empty() {
        Ok(())
    } else {
        Err(EncodeError::NotInVersion)
    }
}

fn read_props<'a, const V5: bool>(r: &mut Reader<'a>, ctx: PropertyContext) -> Result<Properties<'a>, DecodeError> {
    if V5 { Properties::read(r, ctx) } else { Ok(Properties::empty()) }
}

/// SUBSCRIBE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Subscribe<'a> {
    /// Packet identifier.
    pub packet_id: PacketId,
    /// MQTT 5 properties (Subscription Identifier, User Property).
    pub properties: Properties<'a>,
    /// At least one filter [MQTT-3.8.3-3].
    pub subscriptions: List<'a, Subscription<'a>>,
}

impl<'a> Subscribe<'a> {
    pub(crate) fn decode<const V5: bool>(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let packet_id = PacketId::decode(r.u16()?)?;
        let properties = read_props::<V5>(r, PropertyContext::Subscribe)?;
        let bytes = read_list(r, DecodeError::EmptySubscribe, |r| {
            let filter = TopicFilter::new(r.utf8()?)?;
            let options = SubscriptionOptions::from_byte(r.u8()?, V5)?;
            if options.no_local && filter.shared().is_some() {
                return Err(DecodeError::NoLocalOnSharedSubscription);
            }
            Ok(())
        })?;
        Ok(Self { packet_id, properties, subscriptions: List::from_wire(bytes) })
    }

    pub(super) fn first_byte(&self) -> u8 {
        PacketType::Subscribe.first_byte()
    }

    pub(super) fn check<const V5: bool>(&self) -> Result<(), EncodeError> {
        if self.subscriptions.is_empty() {
            return Err(EncodeError::InvalidValue);
        }
        // No Local is an MQTT 5 option, so in MQTT 3 the first check catches the second's case too.
        if !V5 && self.subscriptions.any_v5_options() {
            return Err(EncodeError::NotInVersion);
        }
        if self.subscriptions.any_no_local_on_shared() {
            return Err(EncodeError::InvalidValue);
        }
        check_props::<V5>(&self.properties, PropertyContext::Subscribe)
    }

    pub(super) fn write_body<const V5: bool>(&self, w: &mut Writer<'_>) {
        w.put_u16(self.packet_id.get());
        if V5 {
            self.properties.write(w);
        }
        self.subscriptions.write(w)
    }
}

/// SUBACK: one reason code per filter of the SUBSCRIBE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SubAck<'a> {
    /// Packet identifier of the SUBSCRIBE.
    pub packet_id: PacketId,
    /// MQTT 5 properties (Reason String, User Property).
    pub properties: Properties<'a>,
    /// Granted QoS or failure, per filter. MQTT 3.x allows 0x00, 0x01, 0x02 and 0x80.
    pub codes: List<'a, ReasonCode>,
}

fn check_code<const V5: bool>(code: u8, kind: PacketType) -> Result<ReasonCode, DecodeError> {
    let err = DecodeError::InvalidReasonCode { packet_type: kind as u8, code };
    let reason = ReasonCode::from_u8(code).ok_or(err)?;
    let ok = if V5 { reason.allowed_in(kind) } else { reason.allowed_in_v3_suback() };
    if ok { Ok(reason) } else { Err(err) }
}

fn check_codes<const V5: bool>(codes: &List<'_, ReasonCode>, kind: PacketType) -> Result<(), EncodeError> {
    if codes.is_empty() {
        return Err(EncodeError::InvalidValue);
    }
    for c in codes.iter() {
        let ok = if V5 { c.allowed_in(kind) } else { c.allowed_in_v3_suback() };
        if !ok {
            return Err(if V5 { EncodeError::InvalidValue } else { EncodeError::NotInVersion });
        }
    }
    Ok(())
}

impl<'a> SubAck<'a> {
    pub(crate) fn decode<const V5: bool>(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let packet_id = PacketId::decode(r.u16()?)?;
        let properties = read_props::<V5>(r, PropertyContext::SubAck)?;
        let bytes = read_list(r, DecodeError::EmptyPayload, |r| check_code::<V5>(r.u8()?, PacketType::SubAck))?;
        Ok(Self { packet_id, properties, codes: List::from_wire(bytes) })
    }

    pub(super) fn first_byte(&self) -> u8 {
        PacketType::SubAck.first_byte()
    }

    pub(super) fn check<const V5: bool>(&self) -> Result<(), EncodeError> {
        check_props::<V5>(&self.properties, PropertyContext::SubAck)?;
        check_codes::<V5>(&self.codes, PacketType::SubAck)
    }

    pub(super) fn write_body<const V5: bool>(&self, w: &mut Writer<'_>) {
        w.put_u16(self.packet_id.get());
        if V5 {
            self.properties.write(w);
        }
        self.codes.write(w)
    }
}

/// UNSUBSCRIBE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Unsubscribe<'a> {
    /// Packet identifier.
    pub packet_id: PacketId,
    /// MQTT 5 properties (User Property).
    pub properties: Properties<'a>,
    /// At least one filter [MQTT-3.10.3-2].
    pub filters: List<'a, TopicFilter<'a>>,
}

impl<'a> Unsubscribe<'a> {
    pub(crate) fn decode<const V5: bool>(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let packet_id = PacketId::decode(r.u16()?)?;
        let properties = read_props::<V5>(r, PropertyContext::Unsubscribe)?;
        let bytes = read_list(r, DecodeError::EmptyUnsubscribe, |r| TopicFilter::new(r.utf8()?))?;
        Ok(Self { packet_id, properties, filters: List::from_wire(bytes) })
    }

    pub(super) fn first_byte(&self) -> u8 {
        PacketType::Unsubscribe.first_byte()
    }

    pub(super) fn check<const V5: bool>(&self) -> Result<(), EncodeError> {
        if self.filters.is_empty() {
            return Err(EncodeError::InvalidValue);
        }
        check_props::<V5>(&self.properties, PropertyContext::Unsubscribe)
    }

    pub(super) fn write_body<const V5: bool>(&self, w: &mut Writer<'_>) {
        w.put_u16(self.packet_id.get());
        if V5 {
            self.properties.write(w);
        }
        self.filters.write(w)
    }
}

/// UNSUBACK. MQTT 3.x carries only the packet identifier; MQTT 5 adds one reason code per filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct UnsubAck<'a> {
    /// Packet identifier of the UNSUBSCRIBE.
    pub packet_id: PacketId,
    /// MQTT 5 properties (Reason String, User Property).
    pub properties: Properties<'a>,
    /// MQTT 5 reason codes, one per filter; empty in MQTT 3.x.
    pub codes: List<'a, ReasonCode>,
}

impl<'a> UnsubAck<'a> {
    pub(crate) fn decode<const V5: bool>(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let packet_id = PacketId::decode(r.u16()?)?;
        if !V5 {
            return Ok(Self { packet_id, properties: Properties::empty(), codes: List::from_slice(&[]) });
        }
        let properties = Properties::read(r, PropertyContext::UnsubAck)?;
        let bytes = read_list(r, DecodeError::EmptyPayload, |r| check_code::<V5>(r.u8()?, PacketType::UnsubAck))?;
        Ok(Self { packet_id, properties, codes: List::from_wire(bytes) })
    }

    pub(super) fn first_byte(&self) -> u8 {
        PacketType::UnsubAck.first_byte()
    }

    pub(super) fn check<const V5: bool>(&self) -> Result<(), EncodeError> {
        if !V5 {
            return if self.codes.is_empty() && self.properties.is_empty() {
                Ok(())
            } else {
                Err(EncodeError::NotInVersion)
            };
        }
        check_props::<V5>(&self.properties, PropertyContext::UnsubAck)?;
        check_codes::<V5>(&self.codes, PacketType::UnsubAck)
    }

    pub(super) fn write_body<const V5: bool>(&self, w: &mut Writer<'_>) {
        w.put_u16(self.packet_id.get());
        if V5 {
            self.properties.write(w);
            self.codes.write(w);
        }
    }
}
