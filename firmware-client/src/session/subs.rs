//! The subscription table: filters the application asked for, their state with the broker, and matching of
//! incoming topics to a [`SubId`] so the application can pick its handler.

use heapless::Vec;
use mqtt_codec::QoS;

/// A subscription's handle: returned by `subscribe`, and carried by each message whose topic it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SubId(pub(crate) u8);

impl SubId {
    /// The slot index, below the `SUBS` capacity.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// SUBSCRIBE to send.
    ToSubscribe,
    /// SUBSCRIBE sent with this packet identifier.
    Subscribing(u16),
    /// SUBACK granted it.
    Active,
    /// UNSUBSCRIBE to send.
    ToUnsubscribe,
    /// UNSUBSCRIBE sent with this packet identifier.
    Unsubscribing(u16),
}

pub(crate) struct Sub<const L: usize> {
    /// A valid filter (checked by `Session::subscribe`), as bytes.
    pub(crate) filter: Vec<u8, L, u8>,
    pub(crate) qos: QoS,
    pub(crate) state: State,
}

pub(crate) struct Subs<const S: usize, const L: usize> {
    slots: [Option<Sub<L>>; S],
}

impl<const S: usize, const L: usize> Subs<S, L> {
    pub(crate) fn new() -> Self {
        const { assert!(S <= 255 && L <= 255, "at most 255 subscriptions of at most 255 bytes") };
        // A loop that writes each slot's tag: `[const { None }; S]` is copied whole from flash, with `memcpy`.
        Self { slots: core::array::from_fn(|_| None) }
    }

    /// Adds a filter, or `None` when the table is full or the filter longer than `L`.
    pub(crate) fn add(&mut self, filter: &str, qos: QoS) -> Option<SubId> {
        let (i, slot) = self.slots.iter_mut().enumerate().find(|(_, s)| s.is_none())?;
        let id = SubId(u8::try_from(i).ok()?);
        let sub = slot.insert(Sub { filter: Vec::new(), qos, state: State::ToSubscribe });
        // Written in place, byte by byte: building the `Vec` first and moving it, or `extend_from_slice`, links
        // `memcpy` (0.7 KB of flash on Cortex-M). `black_box` hides a constant filter from LLVM, which would
        // otherwise unroll the loop and merge the stores into a `memcpy` call again; it affects code size only.
        for &b in core::hint::black_box(filter).as_bytes() {
            if sub.filter.push(b).is_err() {
                *slot = None;
                return None;
            }
        }
        Some(id)
    }

    pub(crate) fn get_mut(&mut self, id: SubId) -> Option<&mut Sub<L>> {
        self.slots.get_mut(id.index())?.as_mut()
    }

    pub(crate) fn remove(&mut self, id: SubId) {
        if let Some(slot) = self.slots.get_mut(id.index()) {
            *slot = None;
        }
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (SubId, &mut Sub<L>)> {
        self.slots.iter_mut().enumerate().filter_map(|(i, s)| Some((SubId(u8::try_from(i).ok()?), s.as_mut()?)))
    }

    /// The subscription waiting for the ack with identifier `pid`.
    pub(crate) fn find(&mut self, pid: u16) -> Option<(SubId, &mut Sub<L>)> {
        self.iter_mut().find(|(_, s)| matches!(s.state, State::Subscribing(p) | State::Unsubscribing(p) if p == pid))
    }

    pub(crate) fn pid_in_use(&self, pid: u16) -> bool {
        self.slots
            .iter()
            .flatten()
            .any(|s| matches!(s.state, State::Subscribing(p) | State::Unsubscribing(p) if p == pid))
    }

    /// The first live subscription whose filter matches `topic`.
    pub(crate) fn matching(&self, topic: &str) -> Option<SubId> {
        self.slots.iter().enumerate().find_map(|(i, s)| {
            let s = s.as_ref()?;
            let live = !matches!(s.state, State::ToUnsubscribe | State::Unsubscribing(_));
            (live && mqtt_codec::matches(core::str::from_utf8(&s.filter).unwrap_or_default(), topic))
                .then_some(SubId(u8::try_from(i).ok()?))
        })
    }

    /// A new connection: requests in flight are lost and sent again; with `session_present` false the broker
    /// forgot every subscription, so all are sent again.
    /// Out of line: it has two callers, and inlined twice it costs flash on Cortex-M.
    #[inline(never)]
    pub(crate) fn on_reconnect(&mut self, session_present: bool) {
        for (_, s) in self.iter_mut() {
            s.state = match s.state {
                State::Subscribing(_) | State::ToSubscribe => State::ToSubscribe,
                State::Active if !session_present => State::ToSubscribe,
                State::Active => State::Active,
                State::Unsubscribing(_) | State::ToUnsubscribe => State::ToUnsubscribe,
            };
        }
    }
}
