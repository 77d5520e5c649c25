//! Message stamps and the per-publisher loss, duplication and reordering count.
//!
//! Every payload starts with a 20-byte stamp: publisher id (u32 LE), sequence number (u64 LE, from 0) and the send
//! time in nanoseconds since the generator's start (u64 LE). The rest is filler up to the payload size.

use std::time::Instant;

/// Bytes of the stamp at the start of each payload.
pub const STAMP_LEN: usize = 20;

/// Writes the stamp into the start of `payload` (which is at least [`STAMP_LEN`] long).
pub fn stamp(payload: &mut [u8], publisher: u32, seq: u64, sent_ns: u64) {
    if let Some(head) = payload.get_mut(..STAMP_LEN) {
        head[..4].copy_from_slice(&publisher.to_le_bytes());
        head[4..12].copy_from_slice(&seq.to_le_bytes());
        head[12..20].copy_from_slice(&sent_ns.to_le_bytes());
    }
}

/// Reads a stamp: publisher, sequence number, send time.
pub fn read_stamp(payload: &[u8]) -> Option<(u32, u64, u64)> {
    let head = payload.get(..STAMP_LEN)?;
    let publisher = u32::from_le_bytes(head[..4].try_into().ok()?);
    let seq = u64::from_le_bytes(head[4..12].try_into().ok()?);
    let sent = u64::from_le_bytes(head[12..20].try_into().ok()?);
    Some((publisher, seq, sent))
}

/// Nanoseconds since `origin`.
pub fn nanos_since(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

#[derive(Default, Clone)]
struct Stream {
    seen: Vec<u64>,
    max_seen: Option<u64>,
}

/// What one receiver saw from each publisher.
#[derive(Default, Clone)]
pub struct Tracker {
    streams: Vec<Stream>,
    limit: u64,
    distinct: u64,
    /// Messages received, duplicates included.
    pub received: u64,
    /// Messages received again.
    pub duplicates: u64,
    /// Messages received after a later one of the same publisher.
    pub reordered: u64,
    /// Payloads without a valid stamp, or from an unknown publisher, or beyond the count sent.
    pub foreign: u64,
}

impl Tracker {
    /// A tracker for `publishers` publishers, each sending `per_publisher` messages.
    pub fn new(publishers: usize, per_publisher: u64) -> Self {
        let words = usize::try_from(per_publisher.div_ceil(64)).unwrap_or(0);
        Self {
            streams: vec![Stream { seen: vec![0; words], max_seen: None }; publishers],
            limit: per_publisher,
            ..Self::default()
        }
    }

    /// Records one payload. Returns its stamp when it was valid.
    pub fn record(&mut self, payload: &[u8]) -> Option<(u32, u64, u64)> {
        self.received += 1;
        let Some((publisher, seq, sent)) = read_stamp(payload) else {
            self.foreign += 1;
            return None;
        };
        if seq >= self.limit {
            self.foreign += 1;
            return None;
        }
        let stream = usize::try_from(publisher).ok().and_then(|p| self.streams.get_mut(p));
        let word = usize::try_from(seq / 64).ok();
        let Some((stream, word)) = stream.zip(word) else {
            self.foreign += 1;
            return None;
        };
        let Some(bits) = stream.seen.get_mut(word) else {
            self.foreign += 1;
            return None;
        };
        let bit = 1u64 << (seq % 64);
        if *bits & bit != 0 {
            self.duplicates += 1;
            return Some((publisher, seq, sent));
        }
        *bits |= bit;
        self.distinct += 1;
        match stream.max_seen {
            Some(max) if seq < max => self.reordered += 1,
            _ => stream.max_seen = Some(seq),
        }
        Some((publisher, seq, sent))
    }

    /// Distinct messages received.
    pub fn unique(&self) -> u64 {
        self.distinct
    }
}

/// Correctness totals over a scenario.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Errors {
    /// Messages expected and never received.
    pub lost: u64,
    /// Messages received more than once.
    pub duplicated: u64,
    /// Messages received out of publisher order.
    pub reordered: u64,
    /// Payloads that were not ours.
    pub foreign: u64,
}

impl Errors {
    /// Totals of a receiver that expected `expected` distinct messages.
    pub fn of(t: &Tracker, expected: u64) -> Self {
        Self {
            lost: expected.saturating_sub(t.unique()),
            duplicated: t.duplicates,
            reordered: t.reordered,
            foreign: t.foreign,
        }
    }

    /// Adds another set.
    pub fn add(&mut self, o: Errors) {
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.reordered += o.reordered;
        self.foreign += o.foreign;
    }

    /// Whether anything went wrong.
    pub fn any(&self) -> bool {
        self.lost + self.duplicated + self.reordered + self.foreign > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(p: u32, seq: u64) -> Vec<u8> {
        let mut v = vec![0; 64];
        stamp(&mut v, p, seq, 7);
        v
    }

    #[test]
    fn counts_loss_duplicates_and_reordering() {
        let mut t = Tracker::new(2, 10);
        for seq in [0, 1, 3, 2, 3, 5] {
            t.record(&payload(0, seq));
        }
        for seq in 0..10 {
            t.record(&payload(1, seq));
        }
        t.record(&payload(2, 0));
        t.record(&payload(0, 10));
        let e = Errors::of(&t, 20);
        assert_eq!(e, Errors { lost: 5, duplicated: 1, reordered: 1, foreign: 2 });
        assert_eq!(t.received, 18);
    }

    #[test]
    fn stamp_round_trips() {
        let v = payload(3, 1 << 40);
        assert_eq!(read_stamp(&v), Some((3, 1 << 40, 7)));
        assert_eq!(read_stamp(&v[..10]), None);
    }
}
