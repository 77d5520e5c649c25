//! The writer thread: group commit.
//!
//! It sleeps until records are appended, takes the whole pending batch (swapping buffers under the lock, so
//! appenders never wait for I/O), writes it with one call, fsyncs once when the mode says so, and then publishes
//! the new durable LSN to every waiter. Records appended while it writes form the next batch, so under load one
//! fsync covers everything that arrived during the previous one.

use std::fs::File;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::failpoints::{self, FailPoint};
use super::{FsyncMode, JournalError, Shared, files};

/// Starts the writer thread on `file`, the open segment `segment`.
pub(super) fn spawn(shared: Arc<Shared>, file: File, segment: u64) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("journal-writer".into()).spawn(move || {
        let mut writer =
            Writer { shared: &shared, file, segment, unsynced: false, unsynced_records: 0, last_sync: Instant::now() };
        writer.run();
    })
}

struct Writer<'a> {
    shared: &'a Shared,
    file: File,
    segment: u64,
    /// Bytes written to `file` since its last fsync.
    unsynced: bool,
    /// Records written since the last fsync.
    unsynced_records: u64,
    last_sync: Instant,
}

impl Writer<'_> {
    fn run(&mut self) {
        let shared = self.shared;
        let mut batch = Vec::new();
        let mut splits = Vec::new();
        let mut durable = 0;
        let mut last_batch = 0;
        loop {
            let (appended, closing) = {
                let mut st = shared.lock();
                loop {
                    if st.failed.is_some() {
                        return;
                    }
                    if !st.buf.is_empty() || !st.splits.is_empty() || st.closing {
                        break;
                    }
                    match self.sync_due_in() {
                        Some(wait) if wait.is_zero() => break,
                        Some(wait) => {
                            st.writer_waiting = true;
                            st = shared.wake.wait_timeout(st, wait).unwrap_or_else(PoisonError::into_inner).0;
                            st.writer_waiting = false;
                        }
                        None => {
                            st.writer_waiting = true;
                            st = shared.wake.wait(st).unwrap_or_else(PoisonError::into_inner);
                            st.writer_waiting = false;
                        }
                    }
                }
                if st.appended - durable < last_batch && !st.closing {
                    // Fewer records than the last batch: the appenders it released are likely appending again
                    // right now; give them the CPU once so they join this batch rather than the next.
                    drop(st);
                    std::thread::yield_now();
                    st = shared.lock();
                }
                std::mem::swap(&mut st.buf, &mut batch);
                std::mem::swap(&mut st.splits, &mut splits);
                (st.appended, st.closing)
            };
            if let Err(error) = self.write_batch(&batch, &splits, appended - durable, closing) {
                shared.fail(&error);
                return;
            }
            batch.clear();
            if batch.capacity() > 8 << 20 {
                // A burst grew the buffer; do not keep that much memory for the quiet times after it.
                batch.shrink_to(1 << 20);
            }
            splits.clear();
            last_batch = appended - durable;
            durable = appended;
            self.publish(durable);
            if closing {
                return;
            }
        }
    }

    /// How long until the interval fsync is due, when one is owed.
    fn sync_due_in(&self) -> Option<Duration> {
        match self.shared.opts.fsync {
            FsyncMode::Interval(every) if self.unsynced => Some(every.saturating_sub(self.last_sync.elapsed())),
            _ => None,
        }
    }

    fn write_batch(
        &mut self,
        batch: &[u8],
        splits: &[(usize, u64)],
        records: u64,
        closing: bool,
    ) -> Result<(), JournalError> {
        let mut at = 0;
        for &(offset, id) in splits {
            self.write(batch.get(at..offset).unwrap_or_default())?;
            self.rotate(id)?;
            at = offset;
        }
        self.write(batch.get(at..).unwrap_or_default())?;
        self.unsynced_records += records;
        let sync = match self.shared.opts.fsync {
            FsyncMode::Always => true,
            FsyncMode::Interval(every) => self.last_sync.elapsed() >= every,
            FsyncMode::Never => false,
        };
        if self.unsynced && (sync || closing) {
            self.sync()?;
        }
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), JournalError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let dir = &self.shared.dir;
        let error = |e| JournalError::io("write", &files::segment_path(dir, self.segment), e);
        failpoints::hit(dir, FailPoint::Write).map_err(error)?;
        if let Err(e) = failpoints::hit(dir, FailPoint::WriteTorn) {
            let _ = self.file.write_all(bytes.get(..bytes.len() / 2).unwrap_or_default());
            return Err(error(e));
        }
        self.file.write_all(bytes).map_err(error)?;
        self.unsynced = true;
        self.shared.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), JournalError> {
        let dir = &self.shared.dir;
        let started = Instant::now();
        failpoints::hit(dir, FailPoint::Fsync)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| JournalError::io("fsync", &files::segment_path(dir, self.segment), e))?;
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let shared = self.shared;
        shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        let records = std::mem::take(&mut self.unsynced_records);
        shared.fsynced_records.fetch_add(records, Ordering::Relaxed);
        shared.records_per_fsync.observe(records);
        shared.fsync_us.observe(nanos / 1_000);
        shared.fsync_nanos_sum.fetch_add(nanos, Ordering::Relaxed);
        shared.fsync_nanos_max.fetch_max(nanos, Ordering::Relaxed);
        self.unsynced = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Closes the current segment, fsynced in every mode (once per segment, so `close` has only the last one to
    /// sync), and starts segment `id`.
    fn rotate(&mut self, id: u64) -> Result<(), JournalError> {
        if self.unsynced {
            self.sync()?;
        }
        let dir = &self.shared.dir;
        let path = files::segment_path(dir, id);
        self.file = failpoints::hit(dir, FailPoint::SegmentCreate)
            .and_then(|()| files::create_segment(dir, id, self.shared.salt))
            .map_err(|e| JournalError::io("create segment", &path, e))?;
        self.segment = id;
        Ok(())
    }

    /// Makes `durable` visible to `durable()`, `wait_durable` and checkpoints.
    fn publish(&self, durable: u64) {
        let shared = self.shared;
        let mut st = shared.lock();
        st.durable = durable;
        st.written_segment = self.segment;
        drop(st);
        shared.progressed.notify_all();
        shared.progress.send_if_modified(|p| {
            let changed = p.durable != durable;
            p.durable = durable;
            changed
        });
    }
}
