//! A crash-safe, append-only journal of opaque records: the storage engine under the broker's persistence.
//!
//! It knows nothing about MQTT. The caller appends records ([`Journal::append`]) without blocking; one writer
//! thread writes everything appended since its last write with one `write`, fsyncs once ([`FsyncMode::Always`]),
//! then advances the durable [`Lsn`] that [`Journal::wait_durable`] waits for (group commit). Records go to
//! segment files of about [`JournalOptions::segment_bytes`]; a checkpoint ([`Journal::begin_checkpoint`]) writes
//! the caller's whole live state as records into a new recovery base and deletes the segments it covers, so disk
//! use tracks live data, bounded by [`JournalOptions::max_bytes`].
//!
//! [`Journal::open`] recovers: the newest intact checkpoint, then the later segments, in order. Damage never stops
//! it: a torn tail is cut off, a damaged region is skipped up to the next valid frame, the unreadable bytes are
//! copied into a `*.corrupt` file beside the journal and logged. `docs/persistence.md` describes the format, the
//! recovery rules and the loss window of each fsync mode.

mod checkpoint;
mod error;
pub mod failpoints;
mod files;
mod frame;
mod recovery;
mod writer;

pub use checkpoint::Checkpoint;
pub use error::{AppendError, JournalError};
pub use frame::MAX_RECORD_LEN;
pub use recovery::{CorruptRegion, Recovered, RecoveryReport};

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

use frame::Kind;

/// When the writer fsyncs, and so what "durable" means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncMode {
    /// fsync after every batch; a record is durable once fsynced. Nothing durable is lost on power loss.
    Always,
    /// Durable means written to the operating system (survives a crash of the process, not of the machine);
    /// fsync every interval, so power loss loses at most about that interval.
    Interval(Duration),
    /// Durable means written to the operating system; fsync only at close and at checkpoints. Power loss loses
    /// whatever the kernel had not written back.
    Never,
}

/// How a journal is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalOptions {
    /// When the writer fsyncs.
    pub fsync: FsyncMode,
    /// Bound on the journal's files (segments and checkpoint, counting records appended and not yet written):
    /// an append that would pass it fails with [`AppendError::Full`]. A checkpoint being written is counted
    /// too but is never refused (it is how space comes back), so the directory can briefly hold `max_bytes` plus
    /// one checkpoint.
    pub max_bytes: u64,
    /// A segment is closed and a new one started once it holds about this many bytes.
    pub segment_bytes: u64,
}

impl Default for JournalOptions {
    /// fsync always, 1 GiB, 64 MiB segments.
    fn default() -> Self {
        Self { fsync: FsyncMode::Always, max_bytes: 1 << 30, segment_bytes: 64 << 20 }
    }
}

/// Log sequence number: the position of an appended record, increasing by one per record from 1 in each open
/// journal (`Lsn::ZERO` is "nothing"). Not stored on disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(u64);

impl Lsn {
    /// Before the first record.
    pub const ZERO: Lsn = Lsn(0);

    /// The number.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// Counters of a journal since it was opened.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JournalStats {
    /// Bytes of the journal's files, counting records appended and not yet written and a checkpoint in progress.
    pub bytes_on_disk: u64,
    /// Bytes of the segments written since the last checkpoint (what [`Journal::wants_checkpoint`] weighs).
    pub log_bytes: u64,
    /// Bytes of the checkpoint that is the recovery base (0 without one).
    pub checkpoint_bytes: u64,
    /// Records taken by `append`.
    pub appended_records: u64,
    /// Payload bytes taken by `append`.
    pub appended_bytes: u64,
    /// Appends refused because of `max_bytes`.
    pub refused_appends: u64,
    /// Records made durable.
    pub durable_records: u64,
    /// Write calls of batches (group commits).
    pub writes: u64,
    /// fsyncs of segments by the writer.
    pub fsyncs: u64,
    /// Records that those fsyncs made durable.
    pub fsynced_records: u64,
    /// Sum of the fsyncs' durations, in nanoseconds.
    pub fsync_nanos_sum: u64,
    /// The longest fsync, in nanoseconds.
    pub fsync_nanos_max: u64,
    /// fsyncs per bucket of [`crate::metrics::FSYNC_BUCKETS_US`] (the last: above them).
    pub fsync_us_buckets: Vec<u64>,
    /// fsyncs per bucket of [`crate::metrics::RECORDS_PER_FSYNC_BUCKETS`] by the records each made durable.
    pub records_per_fsync_buckets: Vec<u64>,
    /// Whether the journal failed on an I/O error.
    pub failed: bool,
}

impl JournalStats {
    /// Records per fsync (0 before the first).
    #[allow(clippy::cast_precision_loss)] // counters far below 2^52
    pub fn records_per_fsync(&self) -> f64 {
        if self.fsyncs == 0 { 0.0 } else { self.fsynced_records as f64 / self.fsyncs as f64 }
    }
}

/// What the writer has done, for async waiters.
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    durable: u64,
    failed: bool,
    closed: bool,
}

/// State shared by the appenders, the writer and checkpoints, behind one lock that is never held during I/O.
#[derive(Debug, Default)]
struct State {
    /// Frames appended and not yet taken by the writer.
    buf: Vec<u8>,
    /// Offsets in `buf` where a new segment starts, with its id.
    splits: Vec<(usize, u64)>,
    /// LSN of the last appended record.
    appended: u64,
    /// LSN of the last record the writer made durable.
    durable: u64,
    /// Segment receiving appends.
    segment: u64,
    /// Segment the writer is writing.
    written_segment: u64,
    /// Bytes of each closed segment since the last checkpoint.
    closed_segments: BTreeMap<u64, u64>,
    /// Bytes of the segment receiving appends, counting records not yet written.
    segment_len: u64,
    /// Bytes of every segment since the last checkpoint (closed ones and the current one).
    log_bytes: u64,
    /// The writer sleeps on `wake` (so an append must wake it; otherwise it will see the record by itself).
    writer_waiting: bool,
    /// Bytes of the current checkpoint file.
    checkpoint_bytes: u64,
    checkpointing: bool,
    closing: bool,
    closed: bool,
    failed: Option<Arc<str>>,
    appended_bytes: u64,
    refused: u64,
}

impl State {
    /// Starts segment `id` for the records appended from now on.
    fn start_segment(&mut self, id: u64) {
        self.splits.push((self.buf.len(), id));
        self.closed_segments.insert(self.segment, self.segment_len);
        self.segment = id;
        self.segment_len = files::header_len();
        self.log_bytes += self.segment_len;
    }

    fn refusal(&self) -> Option<AppendError> {
        if let Some(msg) = &self.failed {
            return Some(AppendError::Failed(msg.clone()));
        }
        (self.closing || self.closed).then_some(AppendError::Closed)
    }
}

struct Shared {
    dir: PathBuf,
    /// The journal's salt (see [`frame`]).
    salt: u32,
    opts: JournalOptions,
    state: Mutex<State>,
    /// Wakes the writer: records appended, a checkpoint begun, close.
    wake: Condvar,
    /// Wakes threads waiting for the writer (close, checkpoint finish).
    progressed: Condvar,
    progress: watch::Sender<Progress>,
    /// Bytes written so far into a checkpoint in progress.
    checkpoint_in_progress: AtomicU64,
    writes: AtomicU64,
    fsyncs: AtomicU64,
    fsynced_records: AtomicU64,
    fsync_nanos_sum: AtomicU64,
    fsync_nanos_max: AtomicU64,
    fsync_us: crate::metrics::BoundedHistogram,
    records_per_fsync: crate::metrics::BoundedHistogram,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks the journal failed (the first error wins), logs it, and wakes every waiter.
    fn fail(&self, error: &JournalError) {
        let mut st = self.lock();
        if st.failed.is_none() {
            tracing::error!(dir = %self.dir.display(), %error, durable_lsn = st.durable, appended_lsn = st.appended,
                "journal failed: records after the durable LSN are not durable and no append is taken any more");
            st.failed = Some(error.to_string().into());
        }
        drop(st);
        self.progressed.notify_all();
        self.progress.send_modify(|p| p.failed = true);
    }
}

/// The handle on an open journal: cheap to clone, `Send + Sync`. The last handle dropped closes the journal.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Holds the directory's lock until closed.
    lock: Mutex<Option<File>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // A failure was logged when it happened.
        let _ = close(&self.shared, &self.writer, &self.lock);
    }
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("dir", &self.inner.shared.dir).finish_non_exhaustive()
    }
}

impl Journal {
    /// Opens the journal in `dir` (creating the directory), recovers it, and starts the writer thread. Blocking:
    /// call it before serving, or from `spawn_blocking`.
    ///
    /// The returned [`Recovered`] yields the recovered records in order. It holds its files open, so a
    /// checkpoint that deletes them meanwhile does not disturb it.
    ///
    /// # Errors
    /// [`JournalError::Options`] for a zero `max_bytes` or `segment_bytes`, [`JournalError::Locked`] when the
    /// directory is open elsewhere, [`JournalError::Io`] when the directory cannot be read or written. Damaged
    /// files are never an error: recovery keeps what it can read and reports the rest.
    pub fn open(dir: &Path, opts: JournalOptions) -> Result<(Journal, Recovered), JournalError> {
        if opts.max_bytes == 0 || opts.segment_bytes == 0 {
            return Err(JournalError::Options("max_bytes and segment_bytes must be above 0"));
        }
        if let FsyncMode::Interval(d) = opts.fsync
            && d.is_zero()
        {
            return Err(JournalError::Options("the fsync interval must be above 0"));
        }
        std::fs::create_dir_all(dir).map_err(|e| JournalError::io("create directory", dir, e))?;
        let lock = files::lock(dir)?;
        let opened = recovery::recover(dir)?;
        let segment = opened.next_segment;
        let file = files::create_segment(dir, segment, opened.salt)
            .map_err(|e| JournalError::io("create segment", &files::segment_path(dir, segment), e))?;
        let closed_segments = opened.segment_bytes;
        let state = State {
            segment,
            written_segment: segment,
            segment_len: files::header_len(),
            log_bytes: closed_segments.values().sum::<u64>() + files::header_len(),
            closed_segments,
            checkpoint_bytes: opened.checkpoint_bytes,
            ..State::default()
        };
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            salt: opened.salt,
            opts,
            state: Mutex::new(state),
            wake: Condvar::new(),
            progressed: Condvar::new(),
            progress: watch::Sender::new(Progress::default()),
            checkpoint_in_progress: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            fsynced_records: AtomicU64::new(0),
            fsync_nanos_sum: AtomicU64::new(0),
            fsync_nanos_max: AtomicU64::new(0),
            fsync_us: crate::metrics::BoundedHistogram::new(&crate::metrics::FSYNC_BUCKETS_US),
            records_per_fsync: crate::metrics::BoundedHistogram::new(&crate::metrics::RECORDS_PER_FSYNC_BUCKETS),
        });
        let writer = writer::spawn(shared.clone(), file, segment)
            .map_err(|e| JournalError::io("start writer thread", dir, e))?;
        let inner = Inner { shared, writer: Mutex::new(Some(writer)), lock: Mutex::new(Some(lock)) };
        Ok((Journal { inner: Arc::new(inner) }, opened.recovered))
    }

    /// Takes a copy of `record` into the pending batch and returns its LSN. Never does I/O.
    ///
    /// # Errors
    /// See [`Journal::append_with`].
    pub fn append(&self, record: &[u8]) -> Result<Lsn, AppendError> {
        self.append_with(|buf| buf.extend_from_slice(record))
    }

    /// Appends a record that `encode` writes at the end of the batch buffer (no allocation per record). `encode`
    /// runs under the journal's lock: keep it short and do not call the journal from it. Never does I/O.
    ///
    /// # Errors
    /// [`AppendError::Full`] when the record would pass `max_bytes`, [`AppendError::TooLarge`] past
    /// [`MAX_RECORD_LEN`], [`AppendError::Failed`] after an I/O error, [`AppendError::Closed`] after close. The
    /// record is not taken.
    pub fn append_with(&self, encode: impl FnOnce(&mut Vec<u8>)) -> Result<Lsn, AppendError> {
        let shared = &self.inner.shared;
        let mut st = shared.lock();
        if let Some(refusal) = st.refusal() {
            return Err(refusal);
        }
        let start = st.buf.len();
        let len =
            frame::encode_with(&mut st.buf, Kind::Record, shared.salt, encode).map_err(AppendError::TooLarge)? as u64;
        let rotate = st.segment_len > files::header_len() && st.segment_len + len > shared.opts.segment_bytes;
        let needed = len + if rotate { files::header_len() } else { 0 };
        let used = st.log_bytes + st.checkpoint_bytes + shared.checkpoint_in_progress.load(Ordering::Relaxed);
        if used + needed > shared.opts.max_bytes {
            st.buf.truncate(start);
            st.refused += 1;
            return Err(AppendError::Full { used, record: needed, max_bytes: shared.opts.max_bytes });
        }
        if rotate {
            // The split goes before this record's frame, which is already in the buffer.
            let id = st.segment.saturating_add(1);
            st.start_segment(id);
            if let Some(split) = st.splits.last_mut() {
                split.0 = start;
            }
        }
        st.segment_len += len;
        st.log_bytes += len;
        st.appended += 1;
        st.appended_bytes += len - frame::HEADER_LEN as u64;
        let lsn = Lsn(st.appended);
        let wake = st.writer_waiting;
        drop(st);
        if wake {
            shared.wake.notify_one();
        }
        Ok(lsn)
    }

    /// The highest durable LSN: fsynced in [`FsyncMode::Always`], written to the OS in the other modes.
    pub fn durable(&self) -> Lsn {
        Lsn(self.inner.shared.lock().durable)
    }

    /// Waits until `lsn` is durable.
    ///
    /// # Errors
    /// [`JournalError::Failed`] when the journal failed before `lsn` became durable (the caller must not
    /// acknowledge what it stands for), [`JournalError::Closed`] when it was closed first.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future only stops the wait.
    pub async fn wait_durable(&self, lsn: Lsn) -> Result<(), JournalError> {
        let shared = &self.inner.shared;
        let mut rx = shared.progress.subscribe();
        let progress = match rx.wait_for(|p| p.durable >= lsn.0 || p.failed || p.closed).await {
            Ok(p) => *p,
            Err(_) => return Err(JournalError::Closed),
        };
        if progress.durable >= lsn.0 {
            return Ok(());
        }
        match &shared.lock().failed {
            Some(msg) => Err(JournalError::Failed(msg.clone())),
            None => Err(JournalError::Closed),
        }
    }

    /// Starts a checkpoint: records appended from now on go to a new segment, and the returned [`Checkpoint`]
    /// takes the caller's whole live state as records. Its `finish` makes it the recovery base and deletes the
    /// segments it covers. Creates the checkpoint file: blocking, like the checkpoint's own methods.
    ///
    /// # Errors
    /// [`JournalError::CheckpointInProgress`] when one is running, [`JournalError::Failed`] /
    /// [`JournalError::Closed`] as for appends, [`JournalError::Io`] when the file cannot be created.
    pub fn begin_checkpoint(&self) -> Result<Checkpoint, JournalError> {
        Checkpoint::begin(self.inner.shared.clone())
    }

    /// Whether the segments written since the last checkpoint outweigh it enough to be worth compacting: more
    /// than twice the checkpoint and more than `min(32 MiB, max_bytes / 4)`; or, once the journal uses three
    /// quarters of `max_bytes`, more than half the checkpoint (so a large live state is compacted before appends
    /// are refused, while each checkpoint still replaces at least half its own size of log). The caller then
    /// checkpoints.
    pub fn wants_checkpoint(&self) -> bool {
        let shared = &self.inner.shared;
        let st = shared.lock();
        let max = shared.opts.max_bytes;
        let floor = (32 << 20).min(max / 4);
        let used = st.log_bytes + st.checkpoint_bytes;
        let pressed = used > max / 4 * 3 && st.log_bytes > st.checkpoint_bytes / 2;
        !st.checkpointing && (st.log_bytes > floor.max(2 * st.checkpoint_bytes) || pressed)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> JournalStats {
        let shared = &self.inner.shared;
        let st = shared.lock();
        let ckpt = shared.checkpoint_in_progress.load(Ordering::Relaxed);
        JournalStats {
            bytes_on_disk: st.log_bytes + st.checkpoint_bytes + ckpt,
            log_bytes: st.log_bytes,
            checkpoint_bytes: st.checkpoint_bytes,
            appended_records: st.appended,
            appended_bytes: st.appended_bytes,
            refused_appends: st.refused,
            durable_records: st.durable,
            writes: shared.writes.load(Ordering::Relaxed),
            fsyncs: shared.fsyncs.load(Ordering::Relaxed),
            fsynced_records: shared.fsynced_records.load(Ordering::Relaxed),
            fsync_nanos_sum: shared.fsync_nanos_sum.load(Ordering::Relaxed),
            fsync_nanos_max: shared.fsync_nanos_max.load(Ordering::Relaxed),
            fsync_us_buckets: shared.fsync_us.get().0,
            records_per_fsync_buckets: shared.records_per_fsync.get().0,
            failed: st.failed.is_some(),
        }
    }

    /// The journal's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.shared.dir
    }

    /// Writes and fsyncs everything appended, stops the writer and releases the directory (the clean shutdown).
    /// Later appends fail with [`AppendError::Closed`]. Blocking. Calling it again does nothing.
    ///
    /// # Errors
    /// [`JournalError::Failed`] when the journal failed (now or earlier): what was appended after the last
    /// durable LSN is not on disk.
    pub fn close(&self) -> Result<(), JournalError> {
        close(&self.inner.shared, &self.inner.writer, &self.inner.lock)
    }
}

fn close(
    shared: &Shared,
    writer: &Mutex<Option<JoinHandle<()>>>,
    lock: &Mutex<Option<File>>,
) -> Result<(), JournalError> {
    shared.lock().closing = true;
    shared.wake.notify_one();
    let handle = writer.lock().unwrap_or_else(PoisonError::into_inner).take();
    if let Some(handle) = handle
        && handle.join().is_err()
    {
        shared.fail(&JournalError::Failed("the writer thread panicked".into()));
    }
    // The directory may be opened again (by this process too) from here on.
    drop(lock.lock().unwrap_or_else(PoisonError::into_inner).take());
    let mut st = shared.lock();
    st.closed = true;
    let failed = st.failed.clone();
    drop(st);
    shared.progress.send_modify(|p| p.closed = true);
    shared.progressed.notify_all();
    match failed {
        Some(msg) => Err(JournalError::Failed(msg)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
