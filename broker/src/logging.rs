//! Log lines about what clients do, bounded in size and in rate.
//!
//! Client ids, topics and user names come from the network: a client id may be 64 KiB of anything, and a client
//! can fail a thousand connects a second. Every line about one connection's failure goes through `conn_event!`,
//! which lets at most [`LINES_PER_SEC`] such lines out per second over the whole broker (the next one that goes
//! out carries `suppressed`, the number left out before it), and every client-controlled string in it goes through
//! [`Untrusted`], which cuts it to [`MAX_CHARS`] characters and escapes control characters.

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Characters of a client-controlled string that go into a log line.
pub const MAX_CHARS: usize = 64;
/// Per-connection failure lines logged per second over the whole broker.
pub const LINES_PER_SEC: u32 = 20;

/// A client-controlled string as it goes into a log line: at most [`MAX_CHARS`] characters, control characters
/// escaped (no forged log lines), and how many bytes were cut.
#[derive(Clone, Copy)]
pub struct Untrusted<'a>(pub &'a str);

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (shown, (i, c)) in self.0.char_indices().enumerate() {
            if shown == MAX_CHARS {
                return write!(f, "...(+{} bytes)", self.0.len() - i);
            }
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// A budget of log lines per second.
#[derive(Debug)]
pub struct RateLimit {
    per_sec: u32,
    state: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    start: Option<Instant>,
    lines: u32,
    suppressed: u64,
}

impl RateLimit {
    /// A budget of `per_sec` lines a second.
    pub const fn new(per_sec: u32) -> Self {
        Self { per_sec, state: Mutex::new(Window { start: None, lines: 0, suppressed: 0 }) }
    }

    /// Whether a line may go out at `now`: `Some(n)` with the number of lines left out since the last one that
    /// went out, or `None` (the line is counted as left out).
    pub fn allow(&self, now: Instant) -> Option<u64> {
        let mut w = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if w.start.is_none_or(|s| now.saturating_duration_since(s) >= Duration::from_secs(1)) {
            w.start = Some(now);
            w.lines = 0;
        }
        if w.lines >= self.per_sec {
            w.suppressed = w.suppressed.saturating_add(1);
            return None;
        }
        w.lines += 1;
        Some(std::mem::take(&mut w.suppressed))
    }
}

/// The broker-wide budget of per-connection failure lines.
pub static CONN_EVENTS: RateLimit = RateLimit::new(LINES_PER_SEC);

/// Logs a line about one connection's failure at `level` (a `tracing::Level` constant name), within the
/// broker-wide budget; the line gets a `suppressed` field. Wrap client-controlled strings in [`Untrusted`].
macro_rules! conn_event {
    ($level:ident, $($rest:tt)+) => {
        if tracing::enabled!(tracing::Level::$level)
            && let Some(suppressed) = $crate::logging::CONN_EVENTS.allow(std::time::Instant::now())
        {
            tracing::event!(tracing::Level::$level, suppressed, $($rest)+);
        }
    };
}
pub(crate) use conn_event;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_strings_are_cut_and_control_characters_escaped() {
        assert_eq!(Untrusted("sensor-1").to_string(), "sensor-1");
        let long = "é".repeat(100);
        let shown = Untrusted(&long).to_string();
        assert_eq!(shown, format!("{}...(+72 bytes)", "é".repeat(64)));
        assert_eq!(Untrusted("a\nb\u{1b}[31m").to_string(), "a\\nb\\u{1b}[31m");
        assert_eq!(format!("{:?}", Untrusted("x")), "\"x\"");
    }

    #[test]
    fn lines_beyond_the_budget_are_counted_and_reported_with_the_next_line() {
        let limit = RateLimit::new(3);
        let t0 = Instant::now();
        let allowed: Vec<Option<u64>> = (0..5).map(|_| limit.allow(t0)).collect();
        assert_eq!(allowed, [Some(0), Some(0), Some(0), None, None]);
        assert_eq!(limit.allow(t0 + Duration::from_millis(999)), None);
        assert_eq!(limit.allow(t0 + Duration::from_secs(1)), Some(3), "three left out");
        assert_eq!(limit.allow(t0 + Duration::from_secs(1)), Some(0));
    }
}
