//! Checkpoints: the caller's whole live state written as records into a new recovery base.
//!
//! `begin` starts a new segment for later appends (its id `k` names the checkpoint) and opens
//! `checkpoint-k.ckpt.tmp`. The caller writes its state while appends continue, so records must be idempotent:
//! recovery replays the checkpoint, then segments `k`, `k + 1`, ..., and a change that landed in both is applied
//! twice. `finish` writes a footer with the record count, fsyncs, renames the file to `checkpoint-k.ckpt`, fsyncs
//! the directory, and only then deletes the older checkpoint and the segments below `k`. A crash at any step
//! leaves either the old base with all its segments or the new one with all of its own.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use super::failpoints::{self, FailPoint};
use super::files::{self, FileKind};
use super::frame::{self, Kind};
use super::{AppendError, JournalError, Shared};

/// A checkpoint being written; see [`super::Journal::begin_checkpoint`]. Its methods do blocking file I/O: run
/// them on a blocking thread. Dropping it unfinished removes its file and leaves the old recovery base in force.
pub struct Checkpoint {
    shared: Arc<Shared>,
    id: u64,
    covers: u64,
    tmp: PathBuf,
    out: Option<BufWriter<File>>,
    frame: Vec<u8>,
    records: u64,
    bytes: u64,
    renamed: bool,
    settled: bool,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint").field("id", &self.id).field("records", &self.records).finish_non_exhaustive()
    }
}

impl Checkpoint {
    pub(super) fn begin(shared: Arc<Shared>) -> Result<Checkpoint, JournalError> {
        let (id, covers) = {
            let mut st = shared.lock();
            match st.refusal() {
                Some(AppendError::Failed(msg)) => return Err(JournalError::Failed(msg)),
                Some(_) => return Err(JournalError::Closed),
                None => {}
            }
            if st.checkpointing {
                return Err(JournalError::CheckpointInProgress);
            }
            st.checkpointing = true;
            let id = st.segment.saturating_add(1);
            st.start_segment(id);
            (id, st.appended)
        };
        shared.wake.notify_one();
        let tmp = files::checkpoint_path(&shared.dir, id).with_extension("ckpt.tmp");
        let mut ckpt = Checkpoint {
            shared,
            id,
            covers,
            tmp,
            out: None,
            frame: Vec::new(),
            records: 0,
            bytes: 0,
            renamed: false,
            settled: false,
        };
        let file = File::create(&ckpt.tmp).map_err(|e| JournalError::io("create checkpoint", &ckpt.tmp, e))?;
        ckpt.out = Some(BufWriter::with_capacity(1 << 20, file));
        let header = files::header_payload(FileKind::Checkpoint, id, ckpt.shared.salt);
        ckpt.write_frame(Kind::Control, |b| b.extend_from_slice(&header))?;
        Ok(ckpt)
    }

    /// Writes one record of the live state.
    ///
    /// # Errors
    /// [`JournalError::Io`] when the file cannot be written; drop the checkpoint then.
    pub fn append(&mut self, record: &[u8]) -> Result<(), JournalError> {
        self.append_with(|b| b.extend_from_slice(record))
    }

    /// Writes one record that `encode` writes into the buffer.
    ///
    /// # Errors
    /// As [`Checkpoint::append`]; [`JournalError::Options`] for a record over [`super::MAX_RECORD_LEN`].
    pub fn append_with(&mut self, encode: impl FnOnce(&mut Vec<u8>)) -> Result<(), JournalError> {
        self.write_frame(Kind::Record, encode)?;
        self.records += 1;
        Ok(())
    }

    /// The last record appended before the checkpoint began: records up to it are in the segments this checkpoint
    /// replaces (the caller's state must cover them), later ones are replayed after it.
    pub fn covers(&self) -> super::Lsn {
        super::Lsn(self.covers)
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    fn write_frame(&mut self, kind: Kind, encode: impl FnOnce(&mut Vec<u8>)) -> Result<(), JournalError> {
        self.frame.clear();
        let len = frame::encode_with(&mut self.frame, kind, self.shared.salt, encode)
            .map_err(|_| JournalError::Options("a checkpoint record is longer than MAX_RECORD_LEN"))?;
        let tmp = &self.tmp;
        let out = self.out.as_mut().ok_or(JournalError::Closed)?;
        failpoints::hit(&self.shared.dir, FailPoint::CheckpointWrite)
            .and_then(|()| out.write_all(&self.frame))
            .map_err(|e| JournalError::io("write checkpoint", tmp, e))?;
        self.bytes += len as u64;
        self.shared.checkpoint_in_progress.fetch_add(len as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Makes the checkpoint durable and the new recovery base, then deletes the checkpoint and segments it
    /// replaces.
    ///
    /// # Errors
    /// [`JournalError::Io`] when writing, fsyncing or renaming fails (the old base stays in force);
    /// [`JournalError::Failed`] when the journal failed meanwhile (the new base is in force, the old segments are
    /// kept). A file that cannot be deleted is only logged: the next open removes it.
    pub fn finish(mut self) -> Result<(), JournalError> {
        let footer = files::footer_payload(self.records);
        self.write_frame(Kind::Control, |b| b.extend_from_slice(&footer))?;
        let dir = self.shared.dir.clone();
        let tmp = self.tmp.clone();
        let out = self.out.take().ok_or(JournalError::Closed)?;
        let file = out.into_inner().map_err(|e| JournalError::io("write checkpoint", &tmp, e.into_error()))?;
        failpoints::hit(&dir, FailPoint::CheckpointFsync)
            .and_then(|()| file.sync_data())
            .map_err(|e| JournalError::io("fsync checkpoint", &tmp, e))?;
        drop(file);
        let path = files::checkpoint_path(&dir, self.id);
        failpoints::hit(&dir, FailPoint::CheckpointRename)
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(|e| JournalError::io("rename checkpoint", &path, e))?;
        self.renamed = true;
        files::sync_dir(&dir).map_err(|e| JournalError::io("fsync directory", &dir, e))?;
        self.retire_covered()?;
        let (id, records, bytes) = (self.id, self.records, self.bytes);
        tracing::info!(id, records, bytes, "journal: checkpoint finished");
        Ok(())
    }

    /// Waits until the writer has moved on to segment `id`, then deletes what the new base covers.
    fn retire_covered(&mut self) -> Result<(), JournalError> {
        let shared = &self.shared;
        let mut st = shared.lock();
        while st.written_segment < self.id && st.failed.is_none() && !st.closed {
            st = shared.progressed.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
        if let Some(msg) = &st.failed {
            return Err(JournalError::Failed(msg.clone()));
        }
        if st.closed {
            // The directory's lock is released: leave the old files for the next open to remove.
            return Ok(());
        }
        let covered: Vec<u64> = st.closed_segments.range(..self.id).map(|(&id, _)| id).collect();
        for id in &covered {
            let bytes = st.closed_segments.remove(id).unwrap_or(0);
            st.log_bytes = st.log_bytes.saturating_sub(bytes);
        }
        st.checkpoint_bytes = self.bytes;
        st.checkpointing = false;
        shared.checkpoint_in_progress.store(0, Ordering::Relaxed);
        self.settled = true;
        drop(st);
        remove_below(&shared.dir, self.id);
        Ok(())
    }
}

/// Deletes the checkpoints, then the segments, below `id`: in that order, so a crash midway never leaves an old
/// checkpoint without the segments that follow it.
fn remove_below(dir: &std::path::Path, id: u64) {
    let listed = match files::list(dir) {
        Ok((listed, _)) => listed,
        Err(error) => {
            tracing::error!(%error, dir = %dir.display(), "journal: cannot list the directory to delete old files");
            return;
        }
    };
    let old = |kind| listed.iter().filter(move |&&(k, i)| k == kind && i < id).map(|&(_, i)| i);
    let paths = old(FileKind::Checkpoint)
        .map(|i| files::checkpoint_path(dir, i))
        .chain(old(FileKind::Segment).map(|i| files::segment_path(dir, i)));
    for path in paths {
        if let Err(error) = fs::remove_file(&path) {
            tracing::error!(%error, path = %path.display(), "journal: cannot delete a file a checkpoint covers");
        }
    }
    if let Err(error) = files::sync_dir(dir) {
        tracing::error!(%error, dir = %dir.display(), "journal: fsync of the directory after deleting failed");
    }
}

impl Drop for Checkpoint {
    fn drop(&mut self) {
        if !self.renamed {
            drop(self.out.take());
            if let Err(error) = fs::remove_file(&self.tmp)
                && error.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(%error, path = %self.tmp.display(), "journal: cannot remove an unfinished checkpoint");
            }
        }
        if !self.settled {
            let mut st = self.shared.lock();
            st.checkpointing = false;
            self.shared.checkpoint_in_progress.store(0, Ordering::Relaxed);
        }
    }
}
