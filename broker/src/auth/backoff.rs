//! Failed logins slow down their source address.
//!
//! The first [`FREE_FAILURES`] failures from an address cost nothing. After that every login attempt from it is
//! given a slot: attempts wait their turn, each turn [`delay`] after the previous one, the delay doubling with
//! every further failure up to [`MAX_DELAY`]. An attempt still being checked counts as a failure until it is known
//! to have succeeded, so attempts in parallel queue up too: a thousand connections at once gain nothing. An attempt whose turn would come after its CONNECT deadline is refused at once (MQTT 5: `0x9F
//! Connection rate exceeded`). A successful login clears the address; so do [`FORGET_AFTER`] without failures.
//! Other addresses are not affected. The table is bounded ([`MAX_ADDRESSES`]; the stalest entry makes room).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Failures from one address before attempts are slowed down.
pub const FREE_FAILURES: u32 = 3;
/// The delay after the first slowed failure; it doubles with each further one.
pub const BASE_DELAY: Duration = Duration::from_millis(250);
/// The longest delay between two attempts from one address.
pub const MAX_DELAY: Duration = Duration::from_secs(8);
/// An address without failures for this long starts afresh.
pub const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Addresses tracked at once.
pub const MAX_ADDRESSES: usize = 10_000;

/// The delay between attempts after `failures` failures.
pub fn delay(failures: u32) -> Duration {
    let slowed = failures.saturating_sub(FREE_FAILURES);
    if slowed == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32.checked_shl(slowed.saturating_sub(1).min(16)).unwrap_or(u32::MAX);
    BASE_DELAY.saturating_mul(factor).min(MAX_DELAY)
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    /// Attempts given a turn and not yet reported as failed or succeeded.
    pending: u32,
    /// The earliest time the next attempt is checked.
    next_slot: Instant,
    last_failure: Instant,
}

/// Failures per source address.
#[derive(Debug, Default)]
pub struct Backoff {
    entries: Mutex<HashMap<IpAddr, Entry>>,
}

/// When an attempt may be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Now.
    Now,
    /// At this time (the caller waits).
    At(Instant),
    /// Not before `deadline`: refuse.
    TooLate,
}

impl Backoff {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Entry>> {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reserves the turn of an attempt from `ip` that must be answered by `deadline`. Unless the answer is
    /// [`Turn::TooLate`], the caller reports the attempt's end: [`Backoff::failed`], [`Backoff::succeeded`] or
    /// [`Backoff::abandoned`].
    pub fn turn(&self, ip: IpAddr, now: Instant, deadline: Instant) -> Turn {
        let mut map = self.lock();
        if map.get(&ip).is_some_and(|e| e.pending == 0 && now.saturating_duration_since(e.last_failure) >= FORGET_AFTER)
        {
            map.remove(&ip);
        }
        let e = Self::entry(&mut map, ip, now);
        let step = delay(e.failures.saturating_add(e.pending));
        if step.is_zero() {
            e.pending = e.pending.saturating_add(1);
            return Turn::Now;
        }
        let slot = e.next_slot.max(now);
        if slot >= deadline {
            return Turn::TooLate;
        }
        e.pending = e.pending.saturating_add(1);
        e.next_slot = slot + step;
        if slot <= now { Turn::Now } else { Turn::At(slot) }
    }

    fn entry(map: &mut HashMap<IpAddr, Entry>, ip: IpAddr, now: Instant) -> &mut Entry {
        if !map.contains_key(&ip) && map.len() >= MAX_ADDRESSES {
            let stalest = map.iter().min_by_key(|(_, e)| e.last_failure).map(|(ip, _)| *ip);
            if let Some(old) = stalest {
                map.remove(&old);
            }
        }
        map.entry(ip).or_insert(Entry { failures: 0, pending: 0, next_slot: now, last_failure: now })
    }

    /// Records a failed login from `ip`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let mut map = self.lock();
        let e = Self::entry(&mut map, ip, now);
        e.pending = e.pending.saturating_sub(1);
        e.failures = e.failures.saturating_add(1);
        e.last_failure = now;
        e.next_slot = e.next_slot.max(now + delay(e.failures));
    }

    /// Records an attempt from `ip` that ended without a verdict (the backend did not answer in time).
    pub fn abandoned(&self, ip: IpAddr) {
        if let Some(e) = self.lock().get_mut(&ip) {
            e.pending = e.pending.saturating_sub(1);
        }
    }

    /// Records a successful login from `ip`.
    pub fn succeeded(&self, ip: IpAddr) {
        self.lock().remove(&ip);
    }

    /// Failures recorded for `ip` (0 when not tracked).
    pub fn failures(&self, ip: IpAddr) -> u32 {
        self.lock().get(&ip).map_or(0, |e| e.failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_after_the_free_failures_and_are_capped() {
        assert_eq!(delay(0), Duration::ZERO);
        assert_eq!(delay(FREE_FAILURES), Duration::ZERO);
        assert_eq!(delay(FREE_FAILURES + 1), BASE_DELAY);
        assert_eq!(delay(FREE_FAILURES + 2), BASE_DELAY * 2);
        assert_eq!(delay(FREE_FAILURES + 3), BASE_DELAY * 4);
        assert_eq!(delay(1000), MAX_DELAY);
        assert_eq!(delay(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn attempts_from_a_failing_address_queue_up_and_others_do_not() {
        let b = Backoff::default();
        let (ip, other): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        let far = t0 + Duration::from_secs(3600);
        for _ in 0..=FREE_FAILURES {
            assert_eq!(b.turn(ip, t0, far), Turn::Now);
            b.failed(ip, t0);
        }
        // Now slowed: sequential attempts wait for the delay, parallel ones get successive slots.
        let d = delay(FREE_FAILURES + 1);
        assert_eq!(b.turn(ip, t0, far), Turn::At(t0 + d));
        assert_eq!(b.turn(ip, t0, far), Turn::At(t0 + 2 * d));
        assert_eq!(b.turn(ip, t0, t0 + d), Turn::TooLate);
        assert_eq!(b.turn(other, t0, far), Turn::Now);
        b.succeeded(ip);
        assert_eq!(b.turn(ip, t0, far), Turn::Now);
        // Forgotten after a quiet spell.
        for _ in 0..10 {
            b.failed(other, t0);
        }
        assert_eq!(b.turn(other, t0 + FORGET_AFTER, t0 + FORGET_AFTER * 2), Turn::Now);
        assert_eq!(b.failures(other), 0);
    }

    #[test]
    fn parallel_attempts_count_before_their_verdict() {
        let b = Backoff::default();
        let ip: IpAddr = "10.0.0.3".parse().unwrap();
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs(10);
        // A thousand attempts at once, none answered yet: the free ones and the first slowed one run now, a few more
        // get slots before the deadline, the rest are refused.
        let turns: Vec<Turn> = (0..1000).map(|_| b.turn(ip, t0, deadline)).collect();
        let now = turns.iter().filter(|t| **t == Turn::Now).count();
        let later = turns.iter().filter(|t| matches!(t, Turn::At(_))).count();
        assert_eq!(now, FREE_FAILURES as usize + 2);
        assert!(later < 10, "{later}");
        assert_eq!(turns.iter().filter(|t| **t == Turn::TooLate).count(), 1000 - now - later);
    }

    #[test]
    fn the_table_is_bounded() {
        let b = Backoff::default();
        let t0 = Instant::now();
        for i in 0..(MAX_ADDRESSES as u32 + 10) {
            b.failed(IpAddr::from(i.to_be_bytes()), t0 + Duration::from_millis(u64::from(i)));
        }
        assert_eq!(b.lock().len(), MAX_ADDRESSES);
        assert_eq!(b.failures(IpAddr::from(0u32.to_be_bytes())), 0, "the stalest went");
    }
}
