//! Who may open a connection: per-source-address connection counts and connection rates.
//!
//! The accept loop asks [`PerAddress::admit`] for every new socket, before spending anything on it. Addresses are
//! grouped the way an attacker gets them: one IPv4 address, or one IPv6 /64 (the smallest prefix a site is given, so
//! a host cannot dodge the limit by picking another of its 2^64 addresses). Loopback is exempt unless configured.
//!
//! The rate is a token bucket per address: `rate` connections per second, up to `rate` at once after a quiet second.
//! An entry is kept while its address holds connections or its bucket is not yet full again, so the table holds at
//! most the open connections plus the addresses seen in the last second or so.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// Per-address limits; zero turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AddressLimits {
    /// Connections one address may hold at once.
    pub max_connections: usize,
    /// New connections one address may open per second.
    pub rate: u32,
    /// Apply the limits to loopback addresses too.
    pub on_loopback: bool,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The address holds its maximum number of connections.
    TooMany,
    /// The address opened connections faster than its rate.
    TooFast,
}

/// An IPv4 address, or the /64 prefix of an IPv6 address (IPv4-mapped IPv6 addresses count as IPv4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    V4(u32),
    V6(u64),
}

impl Key {
    fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(u32::from(v4)),
                None => Self::V6(u64::try_from(u128::from(v6) >> 64).unwrap_or(u64::MAX)),
            },
        }
    }
}

#[derive(Debug)]
struct Entry {
    connections: usize,
    /// Tokens left, as of `at`.
    tokens: f64,
    at: Instant,
}

/// The per-address table, shared by every listener.
#[derive(Debug)]
pub struct PerAddress {
    limits: AddressLimits,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    entries: HashMap<Key, Entry>,
    /// Size at which the next sweep runs: twice what the last one left, so sweeping costs O(1) per admission.
    sweep_at: usize,
}

/// A connection's place in its address's count, given back when it is dropped.
#[derive(Debug)]
pub struct AddressSlot {
    table: Arc<PerAddress>,
    key: Key,
}

impl PerAddress {
    /// A table applying these limits.
    pub fn new(limits: AddressLimits) -> Arc<Self> {
        Arc::new(Self { limits, table: Mutex::new(Table { entries: HashMap::new(), sweep_at: PRUNE_AT }) })
    }

    /// Whether any limit is on.
    pub fn is_active(&self) -> bool {
        self.limits.max_connections > 0 || self.limits.rate > 0
    }

    /// Admits a connection from `ip` at `now`: `Ok(None)` when the address is exempt or no limit is on,
    /// `Ok(Some(slot))` to hold for the connection's life.
    ///
    /// # Errors
    /// [`Refused`] when the address is over a limit; nothing is counted then.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Result<Option<AddressSlot>, Refused> {
        if !self.is_active() || (ip.is_loopback() && !self.limits.on_loopback) {
            return Ok(None);
        }
        let key = Key::of(ip);
        let rate = f64::from(self.limits.rate);
        let mut guard = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let table = &mut *guard;
        if table.entries.len() >= table.sweep_at {
            table.entries.retain(|_, e| e.connections > 0 || refill(e, rate, now) < rate);
            table.sweep_at = table.entries.len().saturating_mul(2).max(PRUNE_AT);
        }
        let entry = table.entries.entry(key).or_insert(Entry { connections: 0, tokens: rate, at: now });
        if self.limits.max_connections > 0 && entry.connections >= self.limits.max_connections {
            return Err(Refused::TooMany);
        }
        if self.limits.rate > 0 {
            entry.tokens = refill(entry, rate, now);
            entry.at = now;
            if entry.tokens < 1.0 {
                return Err(Refused::TooFast);
            }
            entry.tokens -= 1.0;
        }
        entry.connections += 1;
        Ok(Some(AddressSlot { table: self.clone(), key }))
    }

    /// Connections held by the address group of `ip`.
    #[cfg(test)]
    fn connections(&self, ip: IpAddr) -> usize {
        let table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        table.entries.get(&Key::of(ip)).map_or(0, |e| e.connections)
    }
}

/// Entries beyond which the table drops those of addresses with no connection and a full bucket.
const PRUNE_AT: usize = 1024;

/// The tokens of `e` at `now`, capped at one second's worth.
fn refill(e: &Entry, rate: f64, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(e.at).min(Duration::from_secs(1));
    (e.tokens + elapsed.as_secs_f64() * rate).min(rate)
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut table = self.table.table.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = table.entries.get_mut(&self.key) {
            e.connections = e.connections.saturating_sub(1);
            if e.connections == 0 && self.table.limits.rate == 0 {
                table.entries.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn connections_per_address_are_capped_and_given_back() {
        let t = PerAddress::new(AddressLimits { max_connections: 2, rate: 0, on_loopback: false });
        let now = Instant::now();
        let a = t.admit(ip("192.0.2.1"), now).unwrap().unwrap();
        let _b = t.admit(ip("192.0.2.1"), now).unwrap().unwrap();
        assert_eq!(t.admit(ip("192.0.2.1"), now).unwrap_err(), Refused::TooMany);
        assert!(t.admit(ip("192.0.2.2"), now).unwrap().is_some(), "another address");
        drop(a);
        assert_eq!(t.connections(ip("192.0.2.1")), 1);
        assert!(t.admit(ip("192.0.2.1"), now).is_ok(), "a place was given back");
    }

    #[test]
    fn loopback_is_exempt_unless_configured() {
        let now = Instant::now();
        let t = PerAddress::new(AddressLimits { max_connections: 1, rate: 1, on_loopback: false });
        for _ in 0..10 {
            assert!(t.admit(ip("127.0.0.1"), now).unwrap().is_none());
            assert!(t.admit(ip("::1"), now).unwrap().is_none());
        }
        let t = PerAddress::new(AddressLimits { max_connections: 1, rate: 0, on_loopback: true });
        let _held = t.admit(ip("127.0.0.1"), now).unwrap();
        assert_eq!(t.admit(ip("127.0.0.1"), now).unwrap_err(), Refused::TooMany);
    }

    #[test]
    fn the_rate_is_a_bucket_of_one_seconds_worth() {
        let t = PerAddress::new(AddressLimits { max_connections: 0, rate: 3, on_loopback: false });
        let t0 = Instant::now();
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(t.admit(ip("198.51.100.7"), t0).unwrap());
        }
        assert_eq!(t.admit(ip("198.51.100.7"), t0).unwrap_err(), Refused::TooFast);
        // Closing connections gives no tokens back: only time does.
        held.clear();
        assert_eq!(t.admit(ip("198.51.100.7"), t0).unwrap_err(), Refused::TooFast);
        assert!(
            t.admit(ip("198.51.100.7"), t0 + Duration::from_millis(340)).is_ok(),
            "one token after a third of a second"
        );
        assert_eq!(t.admit(ip("198.51.100.7"), t0 + Duration::from_millis(340)).unwrap_err(), Refused::TooFast);
        for _ in 0..3 {
            assert!(t.admit(ip("198.51.100.7"), t0 + Duration::from_secs(60)).is_ok(), "a full bucket, no more");
        }
        assert!(t.admit(ip("198.51.100.7"), t0 + Duration::from_secs(60)).is_err());
    }

    #[test]
    fn an_ipv6_host_counts_as_its_64_prefix_and_mapped_ipv4_as_ipv4() {
        let t = PerAddress::new(AddressLimits { max_connections: 1, rate: 0, on_loopback: false });
        let now = Instant::now();
        let _a = t.admit(ip("2001:db8:1:2::1"), now).unwrap();
        assert_eq!(t.admit(ip("2001:db8:1:2:ffff::9"), now).unwrap_err(), Refused::TooMany);
        assert!(t.admit(ip("2001:db8:1:3::1"), now).is_ok(), "another /64");
        let _b = t.admit(ip("203.0.113.5"), now).unwrap();
        assert_eq!(t.admit(ip("::ffff:203.0.113.5"), now).unwrap_err(), Refused::TooMany);
    }

    #[test]
    fn quiet_addresses_leave_the_table() {
        let t = PerAddress::new(AddressLimits { max_connections: 0, rate: 10, on_loopback: false });
        let t0 = Instant::now();
        for i in 0..3000u32 {
            drop(t.admit(IpAddr::from(i.to_be_bytes()), t0));
        }
        let later = t0 + Duration::from_secs(2);
        for i in 0..3000u32 {
            drop(t.admit(IpAddr::from((i + 1_000_000).to_be_bytes()), later));
        }
        let len = t.table.lock().unwrap().entries.len();
        assert!(len < 6000, "pruned: {len}");
    }
}
