//! A connection's output that waits for the journal, so the connection can go on reading while it waits.
//!
//! An acknowledgement goes out only once the records it answers for are durable. Blocking the connection for
//! that wait would also stop it from reading what its client sent meanwhile: a publisher's next PUBLISH packets
//! would sit in the socket until the fsync that covers the previous ones ended, and join only the commit after
//! the next one. Held here instead, the output waits in order (chunk by chunk, each with the journal position it
//! needs), while the connection reads, journals and holds more; each chunk is released once its position is
//! durable. Output produced behind a held chunk waits at least as long, so nothing overtakes it.

use std::collections::VecDeque;

use super::Durable;
use crate::journal::Lsn;

/// Output chunks in order, each released once its journal position is durable.
#[derive(Debug, Default)]
pub struct HeldOutput {
    /// Chunks with the position each waits for, non-decreasing.
    chunks: VecDeque<(Lsn, Vec<u8>)>,
    bytes: usize,
}

impl HeldOutput {
    /// Takes `out` (emptying it) when it must wait: for `wait`, a position not yet durable, or because earlier
    /// output is still held. Output that need not wait and has nothing held before it stays in `out`.
    pub fn hold(&mut self, durable: &Durable, wait: Option<Lsn>, out: &mut Vec<u8>) {
        let wait = wait.filter(|&lsn| !durable.is_durable(lsn));
        let last = self.chunks.back().map(|(lsn, _)| *lsn);
        let Some(lsn) = wait.max(last) else { return };
        if out.is_empty() {
            return;
        }
        self.bytes += out.len();
        match self.chunks.back_mut() {
            // Waits for the same position as the chunk before it: one chunk.
            Some((last, chunk)) if *last == lsn => chunk.append(out),
            _ => self.chunks.push_back((lsn, std::mem::take(out))),
        }
    }

    /// Moves the chunks that became durable, in order, to the end of `out`.
    pub fn release(&mut self, durable: &Durable, out: &mut Vec<u8>) {
        if self.chunks.is_empty() {
            return;
        }
        let done = durable.journal().durable();
        while let Some((lsn, _)) = self.chunks.front()
            && *lsn <= done
        {
            let Some((_, mut chunk)) = self.chunks.pop_front() else { break };
            self.bytes -= chunk.len();
            if out.is_empty() {
                // Keeps the chunk's allocation as the output buffer.
                std::mem::swap(out, &mut chunk);
            } else {
                out.append(&mut chunk);
            }
        }
    }

    /// The position the first held chunk waits for.
    pub fn next_wait(&self) -> Option<Lsn> {
        self.chunks.front().map(|(lsn, _)| *lsn)
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Gives everything held back, in front of `out`: the position the whole must wait for and the bytes. For a
    /// connection that ends, whose last output still goes out once durable.
    pub fn into_output(self, out: &mut Vec<u8>) -> Option<Lsn> {
        let lsn = self.chunks.back().map(|(lsn, _)| *lsn)?;
        let mut all = Vec::with_capacity(self.bytes + out.len());
        for (_, chunk) in self.chunks {
            all.extend_from_slice(&chunk);
        }
        all.append(out);
        *out = all;
        Some(lsn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::failpoints::{self, FailPoint};
    use crate::journal::{Journal, JournalOptions};

    fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !cond() {
            assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    #[test]
    fn output_waits_in_order_until_its_records_are_fsynced() {
        let tmp = tempfile::tempdir().unwrap();
        let (journal, _) = Journal::open(tmp.path(), JournalOptions::default()).unwrap();
        let durable = Durable::new(journal, 1);
        let mut held = HeldOutput::default();
        let mut out = Vec::new();

        failpoints::pause(tmp.path(), FailPoint::Fsync);
        let first = durable.journal().append(b"first").unwrap();
        eventually("the writer waits in its fsync", || failpoints::waiting(tmp.path(), FailPoint::Fsync) == 1);
        out.extend_from_slice(b"ack1 ");
        held.hold(&durable, Some(first), &mut out);
        assert!(out.is_empty(), "an acknowledgement of a record not yet fsynced is held");
        // Read and journaled while the first fsync runs: joins the next commit.
        let second = durable.journal().append(b"second").unwrap();
        out.extend_from_slice(b"ack2 ");
        held.hold(&durable, Some(second), &mut out);
        // Output that waits for nothing still goes after what is held.
        out.extend_from_slice(b"ping");
        held.hold(&durable, None, &mut out);
        assert!(out.is_empty());
        assert_eq!((held.next_wait(), held.bytes()), (Some(first), 14));
        held.release(&durable, &mut out);
        assert!(out.is_empty(), "nothing is released before its fsync");

        failpoints::resume(tmp.path(), FailPoint::Fsync);
        eventually("the first record is durable", || durable.is_durable(first));
        held.release(&durable, &mut out);
        if durable.is_durable(second) {
            assert_eq!(out, b"ack1 ack2 ping");
        } else {
            assert_eq!(out, b"ack1 ");
            eventually("the second record is durable", || durable.is_durable(second));
            held.release(&durable, &mut out);
            assert_eq!(out, b"ack1 ack2 ping");
        }
        assert_eq!((held.next_wait(), held.bytes()), (None, 0));
        out.clear();
        out.extend_from_slice(b"free");
        held.hold(&durable, None, &mut out);
        assert_eq!(out, b"free", "with nothing held, output that waits for nothing goes at once");
        durable.journal().close().unwrap();
    }

    #[test]
    fn a_closing_connection_gets_its_held_output_back_in_front_with_the_last_position() {
        let tmp = tempfile::tempdir().unwrap();
        let (journal, _) = Journal::open(tmp.path(), JournalOptions::default()).unwrap();
        let durable = Durable::new(journal, 1);
        let mut held = HeldOutput::default();
        failpoints::pause(tmp.path(), FailPoint::Fsync);
        let a = durable.journal().append(b"a").unwrap();
        eventually("the writer waits in its fsync", || failpoints::waiting(tmp.path(), FailPoint::Fsync) == 1);
        let b = durable.journal().append(b"b").unwrap();
        let mut out = b"ack-a ".to_vec();
        held.hold(&durable, Some(a), &mut out);
        out.extend_from_slice(b"ack-b ");
        held.hold(&durable, Some(b), &mut out);
        out.extend_from_slice(b"disconnect");
        assert_eq!(held.into_output(&mut out), Some(b));
        assert_eq!(out, b"ack-a ack-b disconnect");
        failpoints::resume(tmp.path(), FailPoint::Fsync);
        durable.journal().close().unwrap();
    }
}
