//! The broker-wide memory budget for message bytes, and why messages were dropped.
//!
//! Every message a client publishes is charged to the [`Budget`] once, for its cost (topic, payload, properties),
//! when the broker takes it in, and the charge is given back when the last reference to it goes: the last queue
//! that held it sent it (and got its acknowledgement), the retained store replaced it, the pending will went out.
//! A message fanned out to a thousand subscribers is one copy in memory and is charged once. So the sum is the
//! message bytes the broker holds for queues, in-flight windows, retained messages and delayed wills together,
//! what RSS shows of them (small messages are copied out of the read buffer they arrived in, so they do not pin
//! it; see [`crate::message::Message::compact`]).
//!
//! A message the budget cannot take is not routed: an MQTT 5 publisher of QoS 1 or 2 gets `0x97 Quota exceeded`,
//! and the drop is counted under [`DropReason::Budget`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Why a message (or a copy of it) was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The broker-wide memory budget was used up: the message was refused as a whole.
    Budget,
    /// The retained store held `max_retained_messages` or `max_retained_bytes`: the message was routed, not retained.
    RetainedFull,
    /// `max_pending_wills` delayed wills were waiting: this will went out at once instead of after its delay.
    WillNotDelayed,
}

const REASONS: usize = 3;

/// Bytes held against a limit, and drops by reason. Shared by the whole broker.
#[derive(Debug)]
pub struct Budget {
    limit: usize,
    used: AtomicUsize,
    drops: [AtomicU64; REASONS],
}

/// Bytes of one message charged to the budget; given back on drop.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Default for Budget {
    /// No limit.
    fn default() -> Self {
        Self { limit: 0, used: AtomicUsize::new(0), drops: Default::default() }
    }
}

impl Budget {
    /// A budget of `limit` bytes; 0: no limit (bytes are still counted).
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self { limit, used: AtomicUsize::new(0), drops: Default::default() })
    }

    /// Charges `bytes`, or `None` (nothing charged) when that would go over the limit.
    pub fn charge(self: &Arc<Self>, bytes: usize) -> Option<Charge> {
        let ok = self.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
            let after = used.checked_add(bytes)?;
            (self.limit == 0 || after <= self.limit).then_some(after)
        });
        ok.ok().map(|_| Charge { budget: self.clone(), bytes })
    }

    /// Charges `bytes` whatever the limit: for messages recovered from the journal at startup, which were
    /// acknowledged before the restart and are never refused. Past the limit, new messages are refused until
    /// enough of them are delivered.
    pub fn charge_recovered(self: &Arc<Self>, bytes: usize) -> Charge {
        // Saturating: the sum of real message sizes cannot reach `usize::MAX`.
        let _ = self.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| Some(used.saturating_add(bytes)));
        Charge { budget: self.clone(), bytes }
    }

    /// Bytes charged now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// The limit; 0: none.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Counts a drop.
    pub fn count(&self, reason: DropReason) {
        if let Some(c) = self.drops.get(reason as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Drops counted for a reason.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops.get(reason as usize).map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_up_to_the_limit_and_gives_back_on_drop() {
        let b = Budget::new(100);
        let a = b.charge(60).unwrap();
        assert!(b.charge(41).is_none(), "over the limit: nothing charged");
        let c = b.charge(40).unwrap();
        assert_eq!(b.used(), 100);
        drop(a);
        assert_eq!(b.used(), 40);
        drop(c);
        assert_eq!(b.used(), 0);
        let unlimited = Budget::new(0);
        let _big = unlimited.charge(usize::MAX / 2).unwrap();
        assert_eq!(unlimited.used(), usize::MAX / 2);
    }

    #[test]
    fn recovered_bytes_are_charged_past_the_limit_and_given_back() {
        let b = Budget::new(100);
        let _held = b.charge(80).unwrap();
        let recovered = b.charge_recovered(50);
        assert_eq!(b.used(), 130, "recovered messages are charged whatever the limit");
        assert!(b.charge(1).is_none(), "new messages are refused while over the limit");
        drop(recovered);
        assert_eq!(b.used(), 80);
    }

    #[test]
    fn drops_are_counted_by_reason() {
        let b = Budget::new(0);
        b.count(DropReason::Budget);
        b.count(DropReason::Budget);
        b.count(DropReason::WillNotDelayed);
        assert_eq!(
            [DropReason::Budget, DropReason::RetainedFull, DropReason::WillNotDelayed].map(|r| b.dropped(r)),
            [2, 0, 1]
        );
    }
}
