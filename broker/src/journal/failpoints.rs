//! Named points where tests inject I/O errors into a journal, to reach the paths a crash cannot time.
//!
//! A fail point is armed for one journal directory (so tests running in parallel do not disturb each other) and
//! fails its next `times` hits. Compiled in for unit tests and with the `failpoints` feature; without them every
//! point is a no-op the optimiser removes.

use std::io;
use std::path::Path;

/// Where an I/O error can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailPoint {
    /// Creating a new segment file (the writer's rotation).
    SegmentCreate,
    /// The writer's write of a batch: nothing is written.
    Write,
    /// The writer's write of a batch: half of it reaches the file, then the write fails (a torn write).
    WriteTorn,
    /// The writer's fsync of the segment.
    Fsync,
    /// Writing a record into a checkpoint.
    CheckpointWrite,
    /// The fsync of a finished checkpoint file.
    CheckpointFsync,
    /// Renaming a finished checkpoint over the old recovery base.
    CheckpointRename,
}

#[cfg(any(test, feature = "failpoints"))]
mod armed {
    use super::FailPoint;
    use std::path::{Path, PathBuf};
    use std::sync::{Mutex, PoisonError};

    static ARMED: Mutex<Vec<(PathBuf, FailPoint, u32)>> = Mutex::new(Vec::new());

    /// Makes the next `times` hits of `point` in the journal at `dir` fail with an I/O error.
    pub fn arm(dir: &Path, point: FailPoint, times: u32) {
        let mut armed = ARMED.lock().unwrap_or_else(PoisonError::into_inner);
        armed.retain(|(d, p, _)| !(d == dir && *p == point));
        armed.push((dir.to_path_buf(), point, times));
    }

    /// Disarms every fail point of the journal at `dir`.
    pub fn disarm_all(dir: &Path) {
        ARMED.lock().unwrap_or_else(PoisonError::into_inner).retain(|(d, _, _)| d != dir);
    }

    static PAUSED: Mutex<Vec<(PathBuf, FailPoint, usize)>> = Mutex::new(Vec::new());
    static RESUMED: std::sync::Condvar = std::sync::Condvar::new();

    /// Makes every thread that reaches `point` in the journal at `dir` wait there until [`resume`].
    pub fn pause(dir: &Path, point: FailPoint) {
        PAUSED.lock().unwrap_or_else(PoisonError::into_inner).push((dir.to_path_buf(), point, 0));
    }

    /// Lets the threads waiting at `point` go on.
    pub fn resume(dir: &Path, point: FailPoint) {
        PAUSED.lock().unwrap_or_else(PoisonError::into_inner).retain(|(d, p, _)| !(d == dir && *p == point));
        RESUMED.notify_all();
    }

    /// How many threads wait at `point` now.
    pub fn waiting(dir: &Path, point: FailPoint) -> usize {
        let paused = PAUSED.lock().unwrap_or_else(PoisonError::into_inner);
        paused.iter().find(|(d, p, _)| d == dir && *p == point).map_or(0, |e| e.2)
    }

    pub(super) fn wait_if_paused(dir: &Path, point: FailPoint) {
        let mut paused = PAUSED.lock().unwrap_or_else(PoisonError::into_inner);
        let find = |v: &mut Vec<(PathBuf, FailPoint, usize)>| v.iter().position(|(d, p, _)| d == dir && *p == point);
        let Some(i) = find(&mut paused) else { return };
        if let Some(e) = paused.get_mut(i) {
            e.2 += 1;
        }
        while find(&mut paused).is_some() {
            paused = RESUMED.wait(paused).unwrap_or_else(PoisonError::into_inner);
        }
    }

    pub(super) fn fires(dir: &Path, point: FailPoint) -> bool {
        let mut armed = ARMED.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(entry) = armed.iter_mut().find(|(d, p, n)| d == dir && *p == point && *n > 0) else {
            return false;
        };
        entry.2 -= 1;
        true
    }
}

#[cfg(any(test, feature = "failpoints"))]
pub use armed::{arm, disarm_all, pause, resume, waiting};

/// `Err` when `point` is armed for the journal at `dir` (and uses up one of its hits).
///
/// # Errors
/// An [`io::ErrorKind::Other`] error naming the point.
#[cfg(any(test, feature = "failpoints"))]
pub(crate) fn hit(dir: &Path, point: FailPoint) -> io::Result<()> {
    armed::wait_if_paused(dir, point);
    if armed::fires(dir, point) {
        return Err(io::Error::other(format!("injected failure at fail point {point:?}")));
    }
    Ok(())
}

/// Always `Ok` without the `failpoints` feature.
#[cfg(not(any(test, feature = "failpoints")))]
#[inline(always)]
pub(crate) fn hit(_dir: &Path, _point: FailPoint) -> io::Result<()> {
    Ok(())
}
