//! The journal's errors.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::MAX_RECORD_LEN;

/// Errors of the journal as a whole.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// A file operation failed.
    #[error("journal: {op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: Arc<io::Error>,
    },
    /// An earlier I/O error failed the journal: nothing appended since the last durable record will become
    /// durable, and no append is taken any more.
    #[error("journal failed: {0}")]
    Failed(Arc<str>),
    /// [`Journal::close`](super::Journal::close) was called.
    #[error("journal is closed")]
    Closed,
    /// Another journal (maybe another process) has this directory open.
    #[error("journal directory {} is in use by another process", .0.display())]
    Locked(PathBuf),
    /// Only one checkpoint runs at a time.
    #[error("a checkpoint is already in progress")]
    CheckpointInProgress,
    /// The options cannot work.
    #[error("invalid journal options: {0}")]
    Options(&'static str),
}

impl JournalError {
    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        JournalError::Io { op, path: path.to_path_buf(), source: Arc::new(source) }
    }
}

/// Why an append was refused. The record was not taken.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// Taking the record would pass `max_bytes` (refuse the message, MQTT 5 reason code 0x97 Quota exceeded; a
    /// checkpoint brings space back).
    #[error("journal full: {used} bytes used, a {record}-byte record would pass max_bytes {max_bytes}")]
    Full {
        /// Bytes in use.
        used: u64,
        /// Bytes the record needed (with its frame).
        record: u64,
        /// The bound.
        max_bytes: u64,
    },
    /// The record is longer than [`MAX_RECORD_LEN`].
    #[error("record of {0} bytes is longer than the journal's limit of {MAX_RECORD_LEN}")]
    TooLarge(usize),
    /// The journal failed on an I/O error (see [`JournalError::Failed`]).
    #[error("journal failed: {0}")]
    Failed(Arc<str>),
    /// The journal is closed.
    #[error("journal is closed")]
    Closed,
}
