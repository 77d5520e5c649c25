//! Rate-limited notices: what the broker drops or refuses without telling the client (an MQTT 3 client cannot be
//! told why a PUBLISH went nowhere) is logged at `info`, at most one line per reason per [`INTERVAL`], with the
//! number of occurrences the line stands for. A client that repeats a mistake thousands of times a second costs one
//! line every ten seconds; the counters in [`crate::Stats`] hold the exact totals.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Shortest time between two lines of one reason.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Longest client-controlled string (client id, topic) a log line quotes, in bytes.
pub const MAX_LOGGED: usize = 128;

/// One reason's rate limit: when its last line was written and how many occurrences came since.
pub struct Notice {
    state: Mutex<State>,
}

struct State {
    last_line: Option<Instant>,
    /// Occurrences not yet reported in a line.
    unreported: u64,
}

impl Notice {
    /// A reason with no line written yet.
    pub const fn new() -> Self {
        Self { state: Mutex::new(State { last_line: None, unreported: 0 }) }
    }

    /// Counts `n` occurrences at `now`. Returns the number of occurrences a line written now reports (these and
    /// those since the previous line) when a line is due: for the first occurrences, then for the first ones at
    /// least [`INTERVAL`] after the previous line.
    pub fn hit(&self, now: Instant, n: u64) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.unreported = s.unreported.saturating_add(n);
        if s.last_line.is_some_and(|last| now.saturating_duration_since(last) < INTERVAL) {
            return None;
        }
        s.last_line = Some(now);
        Some(std::mem::take(&mut s.unreported))
    }
}

impl Default for Notice {
    fn default() -> Self {
        Self::new()
    }
}

/// `s` cut to at most [`MAX_LOGGED`] bytes (at a character boundary), so a client cannot fill the log.
pub fn truncated(s: &str) -> &str {
    if s.len() <= MAX_LOGGED {
        return s;
    }
    let mut end = MAX_LOGGED;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_reports_what_it_stands_for() {
        let n = Notice::new();
        let t0 = Instant::now();
        assert_eq!(n.hit(t0, 1), Some(1), "the first occurrence is logged at once");
        for i in 1..=5 {
            assert_eq!(n.hit(t0 + Duration::from_secs(i), 1), None, "within the interval: counted only");
        }
        assert_eq!(n.hit(t0 + INTERVAL, 1), Some(6), "the next line reports the five held back and itself");
        assert_eq!(n.hit(t0 + INTERVAL + Duration::from_secs(1), 1), None);
        assert_eq!(n.hit(t0 + INTERVAL * 3, 3), Some(4));
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncated("short"), "short");
        let long = "é".repeat(100); // 200 bytes
        let cut = truncated(&long);
        assert!(cut.len() <= MAX_LOGGED && cut.len() >= MAX_LOGGED - 1);
        assert!(long.starts_with(cut));
        assert_eq!(truncated(&"x".repeat(500)).len(), MAX_LOGGED);
    }
}
