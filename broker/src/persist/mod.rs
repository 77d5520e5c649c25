//! Crash-safe persistence: what must survive a restart, a crash or a power loss, journaled as typed records.
//!
//! The in-memory router stays the hot path. State that outlives a connection changes only through methods that
//! also append a [`Record`] to the [`Journal`] (see `record.rs` for the list): the session's outbox
//! ([`crate::queue::Outbox`]) for queued and in-flight messages, [`crate::router::Router`] for sessions,
//! subscriptions, retained messages and wills, the session's state for inbound QoS 2 identifiers. Only persistent
//! sessions (those that outlive their connection) and retained messages are journaled: a message owed only to
//! sessions that end with their connection costs no disk write.
//!
//! Acknowledgements wait for durability: a connection sends the PUBACK or PUBREC of a message, the PUBCOMP of a
//! released identifier, a SUBACK or an UNSUBACK only once the records they answer for are durable (the journal's
//! group commit makes one fsync cover everything appended meanwhile). A QoS 2 PUBLISH goes to a subscriber only once
//! the record of its packet identifier is durable, and a PUBREL only once the record of the PUBREC is: after a
//! crash the broker resends what the subscriber may hold under the same identifier, so the subscriber's own
//! duplicate detection keeps it exactly once.
//!
//! At startup [`open`] replays the journal ([`recover`]) into an empty router, then writes a checkpoint of the
//! recovered state before anything else is appended. While the broker runs, checkpoints ([`checkpoint`]) keep the
//! journal's size near the live data; the records appended while one is written (they are idempotent) are
//! replayed over it at the next start.

mod checkpoint;
mod held;
pub mod record;
mod recover;
mod settings;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::journal::{AppendError, Journal, JournalOptions, Lsn};
use crate::message::Message;
pub use checkpoint::checkpoint;
pub use held::HeldOutput;
pub use record::Record;
pub use recover::RecoveryStats;
#[cfg(test)]
use settings::FsyncSetting;
pub use settings::{FilePersistence, PersistenceSettings};

/// The journal and the identifiers of stored messages: what every durable change goes through. Cloning gives
/// another handle to the same journal.
#[derive(Clone)]
pub struct Durable {
    inner: Arc<Inner>,
}

struct Inner {
    journal: Journal,
    next_message: AtomicU64,
}

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durable").field("dir", &self.inner.journal.dir()).finish_non_exhaustive()
    }
}

impl Durable {
    fn new(journal: Journal, next_message: u64) -> Self {
        Self { inner: Arc::new(Inner { journal, next_message: AtomicU64::new(next_message.max(1)) }) }
    }

    /// The journal.
    pub fn journal(&self) -> &Journal {
        &self.inner.journal
    }

    /// Appends a record.
    ///
    /// # Errors
    /// [`AppendError`] when the journal is full (`persistence.max_bytes`) or failed.
    pub fn append(&self, record: &Record<'_>) -> Result<Lsn, AppendError> {
        self.inner.journal.append_with(|buf| record.encode(buf))
    }

    /// A new message identifier.
    pub fn next_message_id(&self) -> u64 {
        self.inner.next_message.fetch_add(1, Ordering::Relaxed)
    }

    /// Stores a message under a new identifier, for queue and retained records to refer to.
    ///
    /// # Errors
    /// As [`Durable::append`].
    pub fn store_message(&self, msg: &Message, now: Instant) -> Result<(u64, Lsn), AppendError> {
        let id = self.next_message_id();
        let lsn = self.append(&Record::Message { id, msg: msg.stored(now) })?;
        Ok((id, lsn))
    }

    /// Waits until `lsn` is durable.
    ///
    /// # Errors
    /// The journal failed: what was appended will not become durable.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn wait(&self, lsn: Lsn) -> Result<(), crate::journal::JournalError> {
        if lsn <= self.inner.journal.durable() {
            return Ok(());
        }
        self.inner.journal.wait_durable(lsn).await
    }

    /// Whether `lsn` is durable now.
    pub fn is_durable(&self, lsn: Lsn) -> bool {
        lsn <= self.inner.journal.durable()
    }
}

/// Opens the journal in `settings.path`, replays it into `router` (which must be empty) and writes a checkpoint of
/// what was recovered, so the next start replays little. Returns the journal's handle and what recovery found.
///
/// # Errors
/// A message for the operator when the directory cannot be used (not writable, locked by another broker).
/// Damaged files are not an error: what can be read is kept and the rest is set aside and logged.
pub fn open(
    settings: &PersistenceSettings,
    router: &mut crate::router::Router,
) -> Result<(Durable, RecoveryStats), String> {
    let opts = JournalOptions { fsync: settings.fsync.mode(), max_bytes: settings.max_bytes, ..Default::default() };
    let started = std::time::Instant::now();
    let (journal, recovered) = crate::journal::Journal::open(&settings.path, opts)
        .map_err(|e| format!("persistence.path {}: {e}", settings.path.display()))?;
    let report = recovered.report().clone();
    let now = Instant::now();
    let mut stats = recover::replay(router, recovered, now);
    stats.report = Some(report);
    let durable = Durable::new(journal, stats.next_message);
    router.set_durable(durable.clone());
    checkpoint::checkpoint_now(router, &durable)
        .map_err(|e| format!("persistence.path {}: writing the first checkpoint: {e}", settings.path.display()))?;
    stats.duration = started.elapsed();
    Ok((durable, stats))
}

/// `at` as milliseconds since the Unix epoch, `now` being the monotonic clock's reading for the wall clock's now.
pub fn wall_ms(at: Instant, now: Instant) -> u64 {
    let wall_now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let wall = if at >= now {
        wall_now.saturating_add(at.duration_since(now))
    } else {
        wall_now.saturating_sub(now.duration_since(at))
    };
    u64::try_from(wall.as_millis()).unwrap_or(u64::MAX)
}

/// The monotonic time of a wall-clock time in Unix milliseconds, if it is still to come; `None` once it passed.
pub fn instant_of(ms: u64, now: Instant) -> Option<Instant> {
    let wall_now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let left = Duration::from_millis(ms).checked_sub(wall_now)?;
    now.checked_add(left)
}

/// The wall-clock time now, in Unix milliseconds.
pub fn now_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(u64::MAX)
}

/// A duration as whole seconds for a record (`None`: never).
pub fn secs(d: Option<Duration>) -> Option<u32> {
    d.map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

/// The `Will` record of `client`'s connection open now: its will and delay, to go out when the connection ends
/// (`due_ms` is set only once it has).
pub fn connected_will<'a>(client: &'a str, will: &'a (Message, Duration), now: Instant) -> Record<'a> {
    let (msg, delay) = will;
    Record::Will { client, will: Some((msg.stored(now), secs(Some(*delay)).unwrap_or(u32::MAX))), due_ms: None }
}

/// Seconds from a record as a duration.
pub fn duration(secs: Option<u32>) -> Option<Duration> {
    secs.map(|s| Duration::from_secs(u64::from(s)))
}

/// Whether a session with this expiry outlives its connection, and so is journaled.
pub fn outlives_connection(expiry: Option<Duration>) -> bool {
    expiry != Some(Duration::ZERO)
}
