//! The outbound store: every PUBLISH the application handed over and the broker has not finished acknowledging,
//! kept as the serialized packet in a buffer lent by the caller.
//!
//! Entries stay in acceptance order, which is the order they are sent and resent in [MQTT-4.6.0-1]. Their bytes lie
//! back to back at the start of the buffer, so an entry's offset is the sum of the lengths before it and removing one
//! moves the later bytes down. A QoS 2 entry whose PUBREC has arrived drops its bytes and keeps only its packet
//! identifier, since all that is left to send is PUBREL.

use heapless::Vec;

/// Bits 0-1: the QoS of the stored PUBLISH.
const QOS: u8 = 0b0011;
/// Sent on the current connection.
const SENT: u8 = 0b0100;
/// PUBREC received: the entry now stands for a PUBREL awaiting PUBCOMP.
const REL: u8 = 0b1000;
/// The DUP flag in a PUBLISH's first byte.
const DUP: u8 = 0b1000;

/// Moves `buf[from..]` to the start of `buf`, one byte at a time: `copy_within` would link `memmove`, 1.5 KB of
/// flash on Cortex-M for the few bytes the client moves.
pub(crate) fn shift_down(buf: &mut [u8], from: usize) {
    let mut i = 0usize;
    while let Some(&b) = buf.get(i.saturating_add(from)) {
        if let Some(d) = buf.get_mut(i) {
            *d = b;
        }
        i = i.saturating_add(1);
    }
}

/// Copies `src` to the start of `dst` (as much as fits), one byte at a time: `copy_from_slice` would link
/// `memcpy`, 0.9 KB of flash on Cortex-M for the few bytes the client copies. The store is conditional, so LLVM does
/// not turn the loop back into a `memcpy` call.
#[inline(never)]
pub(crate) fn copy(dst: &mut [u8], src: &[u8]) {
    let mut i = 0usize;
    while let Some(&b) = src.get(i) {
        if let Some(d) = dst.get_mut(i) {
            *d = b;
        }
        i = i.saturating_add(1);
    }
}

/// `Vec::remove` without `memmove` (see [`shift_down`]).
pub(crate) fn remove<T, const N: usize>(v: &mut Vec<T, N, u8>, idx: usize) {
    let len = v.len();
    for i in idx.saturating_add(1)..len {
        v.swap(i.saturating_sub(1), i);
    }
    if idx < len {
        v.pop();
    }
}

#[derive(Clone, Copy)]
struct Entry {
    pid: u16,
    len: u16,
    flags: u8,
}

/// What [`Store::next_to_send`] found.
pub(crate) enum Outgoing {
    /// Entry index of a PUBLISH to copy out.
    Publish(usize),
    /// A PUBREL to send for this packet identifier.
    PubRel(u16),
}

pub(crate) struct Store<'a, const N: usize> {
    buf: &'a mut [u8],
    used: usize,
    entries: Vec<Entry, N, u8>,
}

impl<'a, const N: usize> Store<'a, N> {
    pub(crate) const fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, used: 0, entries: Vec::new() }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.entries.is_full()
    }

    /// Free bytes for the next packet.
    pub(crate) fn free(&mut self) -> &mut [u8] {
        self.buf.get_mut(self.used..).unwrap_or_default()
    }

    /// Appends the `len` bytes just written into [`Store::free`]. `pid` is 0 for QoS 0.
    pub(crate) fn commit(&mut self, pid: u16, qos: u8, len: usize) -> bool {
        let Ok(short) = u16::try_from(len) else { return false };
        let Some(end) = self.used.checked_add(len).filter(|&e| e <= self.buf.len()) else { return false };
        if self.entries.push(Entry { pid, len: short, flags: qos & QOS }).is_err() {
            return false;
        }
        self.used = end;
        true
    }

    /// Byte offset of entry `idx`. Out of line (as `matches` and `Subs::on_reconnect`): inlined at each caller it
    /// costs flash on Cortex-M (see the footprint in the README).
    #[inline(never)]
    fn start(&self, idx: usize) -> usize {
        self.entries.iter().take(idx).fold(0usize, |acc, e| acc.saturating_add(usize::from(e.len)))
    }

    /// The stored bytes of entry `idx`.
    pub(crate) fn bytes(&self, idx: usize) -> &[u8] {
        let Some(e) = self.entries.get(idx) else { return &[] };
        let start = self.start(idx);
        self.buf.get(start..start.saturating_add(usize::from(e.len))).unwrap_or_default()
    }

    /// Drops the bytes of entry `idx`, moving later bytes down.
    fn drop_bytes(&mut self, idx: usize) {
        let Some(e) = self.entries.get_mut(idx) else { return };
        let len = usize::from(e.len);
        e.len = 0;
        let start = self.start(idx);
        let Some(end) = start.checked_add(len).filter(|&end| end <= self.used) else { return };
        if let Some(region) = self.buf.get_mut(start..self.used) {
            shift_down(region, len);
        }
        self.used = self.used.saturating_sub(end.saturating_sub(start));
    }

    pub(crate) fn remove(&mut self, idx: usize) {
        if idx < self.entries.len() {
            self.drop_bytes(idx);
            remove(&mut self.entries, idx);
        }
    }

    /// After a reconnect: everything must be sent again.
    pub(crate) fn mark_all_unsent(&mut self) {
        for e in &mut self.entries {
            e.flags &= !SENT;
        }
    }

    /// The broker has no session: PUBRELs are pointless (the message was delivered), PUBLISHes are sent anew.
    pub(crate) fn forget_released(&mut self) {
        while let Some(idx) = self.entries.iter().position(|e| e.flags & REL != 0) {
            remove(&mut self.entries, idx);
        }
    }

    pub(crate) fn pid_in_use(&self, pid: u16) -> bool {
        self.entries.iter().any(|e| e.pid == pid)
    }

    /// The entry a PUBACK (`qos` 1), PUBREC (`qos` 2) or PUBCOMP (`released`) for `pid` answers.
    pub(crate) fn find(&self, pid: u16, qos: u8, released: bool) -> Option<usize> {
        self.entries.iter().position(|e| {
            e.pid == pid && e.flags & QOS == qos && (e.flags & REL != 0) == released && e.flags & SENT != 0
        })
    }

    /// PUBREC arrived for entry `idx`: keep only its identifier; PUBREL is due.
    pub(crate) fn release(&mut self, idx: usize) {
        self.drop_bytes(idx);
        if let Some(e) = self.entries.get_mut(idx) {
            e.flags = (e.flags | REL) & !SENT;
        }
    }

    /// A duplicate PUBREC for a released entry: send PUBREL again.
    pub(crate) fn resend_rel(&mut self, pid: u16) -> bool {
        match self.entries.iter_mut().find(|e| e.pid == pid && e.flags & REL != 0) {
            Some(e) => {
                e.flags &= !SENT;
                true
            }
            None => false,
        }
    }

    /// QoS 1 and 2 messages sent and not yet completed.
    fn in_flight(&self) -> usize {
        self.entries.iter().filter(|e| e.flags & QOS != 0 && e.flags & SENT != 0).count()
    }

    /// The next packet to send, keeping acceptance order: once a new QoS 1/2 PUBLISH must wait for the broker's
    /// receive maximum `quota`, later PUBLISHes wait too (PUBRELs do not count against it).
    pub(crate) fn next_to_send(&self, quota: u16) -> Option<Outgoing> {
        let in_flight = self.in_flight();
        for (idx, e) in self.entries.iter().enumerate() {
            if e.flags & SENT != 0 {
                continue;
            }
            if e.flags & REL != 0 {
                return Some(Outgoing::PubRel(e.pid));
            }
            if e.flags & QOS == 0 {
                return Some(Outgoing::Publish(idx));
            }
            return (in_flight < usize::from(quota)).then_some(Outgoing::Publish(idx));
        }
        None
    }

    /// Copies PUBLISH entry `idx` into `out`. QoS 0 entries are then dropped; QoS 1/2 entries are marked sent and
    /// get DUP=1 in the store, so any later copy is a redelivery byte for byte [MQTT-3.3.1-1].
    pub(crate) fn send_publish(&mut self, idx: usize, out: &mut [u8]) -> Option<usize> {
        let bytes = self.bytes(idx);
        let n = bytes.len();
        copy(out.get_mut(..n)?, bytes);
        let start = self.start(idx);
        let e = self.entries.get_mut(idx)?;
        if e.flags & QOS == 0 {
            self.remove(idx);
        } else {
            e.flags |= SENT;
            if let Some(first) = self.buf.get_mut(start) {
                *first |= DUP;
            }
        }
        Some(n)
    }

    /// Marks the PUBREL for `pid` sent.
    pub(crate) fn rel_sent(&mut self, pid: u16) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.pid == pid && e.flags & REL != 0) {
            e.flags |= SENT;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_keep_order_and_bytes_move_down() {
        let mut buf = [0u8; 16];
        let mut s: Store<'_, 3> = Store::new(&mut buf);
        for (pid, fill, len) in [(1u16, 0xa0u8, 4usize), (2, 0xb2, 5), (3, 0xc4, 3)] {
            s.free()[..len].fill(fill);
            assert!(s.commit(pid, 1, len));
        }
        assert!(s.is_full());
        assert!(!s.commit(4, 1, 1));
        s.remove(1);
        assert_eq!(s.bytes(0), &[0xa0; 4]);
        assert_eq!(s.bytes(1), &[0xc4; 3]);
        assert_eq!(s.free().len(), 9);
        let mut out = [0u8; 8];
        assert!(matches!(s.next_to_send(10), Some(Outgoing::Publish(0))));
        assert_eq!(s.send_publish(0, &mut out), Some(4));
        assert_eq!(out[..4], [0xa0; 4]);
        assert_eq!(s.bytes(0)[0], 0xa8, "DUP set in the store after the first send");
        assert!(s.next_to_send(1).is_none(), "quota of one in flight");
        s.release(0);
        assert!(matches!(s.next_to_send(1), Some(Outgoing::PubRel(1))));
        assert_eq!(s.bytes(1), &[0xc4; 3]);
    }

    #[test]
    fn too_long_for_buffer_is_refused() {
        let mut buf = [0u8; 4];
        let mut s: Store<'_, 2> = Store::new(&mut buf);
        assert!(!s.commit(1, 1, 5));
        assert_eq!(s.len(), 0);
    }
}
