//! [`List`]: the repeated entries of SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK, borrowed from the wire when
//! decoded and from a caller's slice when encoded.

use core::fmt;

use crate::error::DecodeError;
use crate::reason::ReasonCode;
use crate::topic::TopicFilter;
use crate::wire::{Reader, Writer};

use super::Subscription;

pub(crate) mod sealed {
    use crate::error::DecodeError;
    use crate::wire::{Reader, Writer};

    /// How one entry is read from validated bytes and written.
    pub trait Item<'a>: Sized + Copy {
        fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError>;
        fn write(&self, w: &mut Writer<'_>);
    }
}

/// A type that can be an entry of a [`List`]: [`Subscription`], [`TopicFilter`] or [`ReasonCode`].
pub trait ListItem<'a>: sealed::Item<'a> {}

impl<'a> ListItem<'a> for Subscription<'a> {}
impl<'a> ListItem<'a> for TopicFilter<'a> {}
impl ListItem<'_> for ReasonCode {}

impl<'a> sealed::Item<'a> for Subscription<'a> {
    fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let filter = TopicFilter::new(r.utf8()?)?;
        let options = crate::types::SubscriptionOptions::from_byte(r.u8()?, true)?;
        Ok(Self { filter, options })
    }
    fn write(&self, w: &mut Writer<'_>) {
        w.put_str(self.filter.as_str());
        w.put_u8(self.options.to_byte())
    }
}

impl<'a> sealed::Item<'a> for TopicFilter<'a> {
    fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        TopicFilter::new(r.utf8()?)
    }
    fn write(&self, w: &mut Writer<'_>) {
        w.put_str(self.as_str())
    }
}

impl sealed::Item<'_> for ReasonCode {
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let b = r.u8()?;
        ReasonCode::from_u8(b).ok_or(DecodeError::InvalidReasonCode { packet_type: 0, code: b })
    }
    fn write(&self, w: &mut Writer<'_>) {
        w.put_u8(self.to_u8())
    }
}

#[derive(Clone, Copy)]
enum Repr<'a, T> {
    Wire(&'a [u8]),
    Items(&'a [T]),
}

/// The entries of a SUBSCRIBE, SUBACK, UNSUBSCRIBE or UNSUBACK payload.
#[derive(Clone, Copy)]
pub struct List<'a, T>(Repr<'a, T>);

impl<'a, T: ListItem<'a>> List<'a, T> {
    /// Entries to encode, in order.
    pub const fn from_slice(items: &'a [T]) -> Self {
        Self(Repr::Items(items))
    }

    /// Validated wire bytes (checked by the packet decoder).
    pub(crate) const fn from_wire(bytes: &'a [u8]) -> Self {
        Self(Repr::Wire(bytes))
    }

    /// The entries in order.
    pub fn iter(&self) -> ListIter<'a, T> {
        ListIter(match self.0 {
            Repr::Wire(b) => IterRepr::Wire(Reader::new(b)),
            Repr::Items(items) => IterRepr::Items(items.iter()),
        })
    }

    /// Whether the list is empty.
    pub const fn is_empty(&self) -> bool {
        match self.0 {
            Repr::Wire(b) => b.is_empty(),
            Repr::Items(items) => items.is_empty(),
        }
    }

    /// The number of entries (walks a decoded list).
    pub fn len(&self) -> usize {
        match self.0 {
            Repr::Wire(_) => self.iter().count(),
            Repr::Items(items) => items.len(),
        }
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) {
        match self.0 {
            Repr::Wire(b) => w.put_slice(b),
            Repr::Items(items) => items.iter().for_each(|item| sealed::Item::write(item, w)),
        }
    }
}

impl List<'_, Subscription<'_>> {
    /// Whether an entry sets an MQTT 5-only option (No Local, Retain As Published, Retain Handling).
    ///
    /// A decoded list is walked over its option bytes alone: the entries were validated when it was decoded, and
    /// reading them again would link the SUBSCRIBE decoder into every SUBSCRIBE encoder.
    pub(crate) fn any_v5_options(&self) -> bool {
        match self.0 {
            Repr::Wire(b) => {
                let mut r = Reader::new(b);
                while let (Ok(_), Ok(options)) = (r.binary(), r.u8()) {
                    if options & 0b0011_1100 != 0 {
                        return true;
                    }
                }
                false
            }
            Repr::Items(items) => items.iter().any(|s| s.options.has_v5_options()),
        }
    }

    /// Whether a caller's entry sets No Local on a shared subscription; a decoded list never does, since the
    /// decoder refuses it [MQTT-3.8.3-4].
    pub(crate) fn any_no_local_on_shared(&self) -> bool {
        match self.0 {
            Repr::Wire(_) => false,
            Repr::Items(items) => items.iter().any(|s| s.options.no_local && s.filter.shared().is_some()),
        }
    }
}

impl<'a, T: ListItem<'a> + PartialEq> PartialEq for List<'a, T> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl<'a, T: ListItem<'a> + Eq> Eq for List<'a, T> {}

impl<'a, T: ListItem<'a> + fmt::Debug> fmt::Debug for List<'a, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(feature = "defmt")]
impl<'a, T: ListItem<'a> + defmt::Format> defmt::Format for List<'a, T> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "[");
        for item in self.iter() {
            defmt::write!(f, "{}, ", item);
        }
        defmt::write!(f, "]");
    }
}

enum IterRepr<'a, T> {
    Wire(Reader<'a>),
    Items(core::slice::Iter<'a, T>),
}

/// Iterator over a [`List`].
pub struct ListIter<'a, T>(IterRepr<'a, T>);

impl<'a, T: ListItem<'a>> Iterator for ListIter<'a, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        match &mut self.0 {
            // Validated when the packet was decoded, so reading cannot fail here.
            IterRepr::Wire(r) if !r.is_empty() => T::read(r).ok(),
            IterRepr::Wire(_) => None,
            IterRepr::Items(it) => it.next().copied(),
        }
    }
}
