//! Topic names, topic filters, wildcard matching and shared subscriptions.

use core::fmt;

use crate::error::DecodeError;

const MAX_LEN: usize = u16::MAX as usize;

/// A validated topic name: no wildcards, no U+0000, at most 65,535 bytes.
///
/// It is non-empty, except in a decoded MQTT 5 PUBLISH that names its topic through a Topic Alias.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicName<'a>(&'a str);

impl<'a> TopicName<'a> {
    /// Validates a topic name [MQTT-4.7.3-1] [MQTT-3.3.2-2] [MQTT-1.5.4-2].
    ///
    /// # Errors
    /// [`DecodeError::EmptyTopic`], [`DecodeError::WildcardInTopicName`], [`DecodeError::NulInString`], or
    /// [`DecodeError::Truncated`] when it is longer than 65,535 bytes.
    pub fn new(s: &'a str) -> Result<Self, DecodeError> {
        if s.is_empty() {
            return Err(DecodeError::EmptyTopic);
        }
        Self::new_or_empty(s)
    }

    /// The empty topic name of a PUBLISH that uses a Topic Alias (MQTT 5 only).
    pub const fn empty() -> Self {
        Self("")
    }

    pub(crate) fn new_or_empty(s: &'a str) -> Result<Self, DecodeError> {
        if s.len() > MAX_LEN {
            return Err(DecodeError::Truncated);
        }
        // Branch-free over the whole string so it vectorizes; the loop below only runs to name the error.
        if !s.bytes().fold(false, |bad, b| bad | matches!(b, b'+' | b'#' | 0)) {
            return Ok(Self(s));
        }
        for b in s.bytes() {
            match b {
                b'+' | b'#' => return Err(DecodeError::WildcardInTopicName),
                0 => return Err(DecodeError::NulInString),
                _ => {}
            }
        }
        Ok(Self(s))
    }

    /// The topic as a string.
    pub const fn as_str(&self) -> &'a str {
        self.0
    }

    /// Whether this is the empty name of a PUBLISH that relies on a Topic Alias.
    pub const fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the topic starts with `$` (server topics such as `$SYS/...`).
    pub fn is_system(&self) -> bool {
        self.0.starts_with('$')
    }
}

impl fmt::Debug for TopicName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

impl fmt::Display for TopicName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for TopicName<'_> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "{=str}", self.0)
    }
}

/// A validated topic filter: non-empty, `#` only as a whole last level, `+` only as a whole level.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicFilter<'a>(&'a str);

impl<'a> TopicFilter<'a> {
    /// Validates a topic filter [MQTT-4.7.1-1] [MQTT-4.7.1-2] [MQTT-4.7.3-1].
    ///
    /// A filter of the form `$share/{group}/{filter}` must also be a valid shared subscription.
    ///
    /// # Errors
    /// [`DecodeError::InvalidTopicFilter`], [`DecodeError::InvalidSharedSubscription`] or
    /// [`DecodeError::NulInString`].
    pub fn new(s: &'a str) -> Result<Self, DecodeError> {
        if s.len() > MAX_LEN {
            return Err(DecodeError::InvalidTopicFilter);
        }
        // Errors are made here from one-byte results: propagating a whole `DecodeError` with `?` copies it, a
        // `memcpy` call on Cortex-M.
        match check_filter(s) {
            Ok(()) => {}
            Err(FilterError::Nul) => return Err(DecodeError::NulInString),
            Err(FilterError::Invalid) => return Err(DecodeError::InvalidTopicFilter),
        }
        if split_shared(s).is_err() {
            return Err(DecodeError::InvalidSharedSubscription);
        }
        Ok(Self(s))
    }

    /// The filter as a string.
    pub const fn as_str(&self) -> &'a str {
        self.0
    }

    /// Whether the filter contains `+` or `#`.
    pub fn has_wildcards(&self) -> bool {
        self.0.bytes().any(|b| b == b'+' || b == b'#')
    }

    /// The shared subscription this filter names, if it has the `$share/{group}/{filter}` form.
    pub fn shared(&self) -> Option<SharedFilter<'a>> {
        SharedFilter::parse(self.0).ok().flatten()
    }

    /// Whether this filter matches a topic name (see [`matches`]).
    pub fn matches(&self, topic: &TopicName<'_>) -> bool {
        matches(self.0, topic.as_str())
    }
}

impl fmt::Debug for TopicFilter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

impl fmt::Display for TopicFilter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for TopicFilter<'_> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "{=str}", self.0)
    }
}

/// The common case of a valid filter, in one pass (on hosted targets): every `+` and `#` fills its level, nothing follows `#`, and
/// there is no U+0000. [`check_filter`] falls back to its level-by-level walk to name the error.
fn filter_is_valid(s: &[u8]) -> bool {
    let at = |i: Option<usize>| i.and_then(|i| s.get(i)).copied();
    let byte_ok = |(i, &b): (usize, &u8)| match b {
        0 => false,
        b'+' | b'#' => {
            let next = at(i.checked_add(1));
            matches!(at(i.checked_sub(1)), None | Some(b'/'))
                && if b == b'#' { next.is_none() } else { matches!(next, None | Some(b'/')) }
        }
        _ => true,
    };
    !s.is_empty() && s.iter().enumerate().all(byte_ok)
}

/// Why a filter breaks the level rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FilterError {
    /// [`DecodeError::InvalidTopicFilter`].
    Invalid,
    /// [`DecodeError::NulInString`].
    Nul,
}

fn check_filter(s: &str) -> Result<(), FilterError> {
    // Bare-metal targets check level by level only: one loop less in flash, and a device checks few filters.
    if cfg!(not(target_os = "none")) && filter_is_valid(s.as_bytes()) { Ok(()) } else { check_filter_levels(s) }
}

/// The level-by-level rules; the first bad level names the error.
#[allow(clippy::manual_contains)] // `contains` links `memchr` on bare-metal targets
fn check_filter_levels(s: &str) -> Result<(), FilterError> {
    if s.is_empty() {
        return Err(FilterError::Invalid);
    }
    let mut rest = Some(s.as_bytes());
    while let Some(level) = next_level(&mut rest) {
        if crate::wire::has_nul(level) {
            return Err(FilterError::Nul);
        }
        let has = |c: u8| level.iter().any(|&b| b == c);
        if has(b'#') && (level.len() != 1 || rest.is_some()) {
            return Err(FilterError::Invalid);
        }
        if has(b'+') && level.len() != 1 {
            return Err(FilterError::Invalid);
        }
    }
    Ok(())
}

/// The next `/`-separated level, as `str::split('/')` yields them (an empty string is one empty level), byte by byte:
/// `split` links `memchr` on bare-metal targets.
fn next_level<'a>(rest: &mut Option<&'a [u8]>) -> Option<&'a [u8]> {
    let cur = (*rest)?;
    match cur.iter().position(|&b| b == b'/') {
        Some(i) => {
            *rest = cur.get(i.saturating_add(1)..);
            cur.get(..i)
        }
        None => {
            *rest = None;
            Some(cur)
        }
    }
}

/// `a == b` one byte at a time: slice equality links `memcmp` on bare-metal targets.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

const SHARE_PREFIX: &str = "$share/";

/// A shared subscription, `$share/{group}/{filter}` (MQTT 5, section 4.8.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SharedFilter<'a> {
    /// The share name: non-empty, without `/`, `+` or `#` [MQTT-4.8.2-2].
    pub group: &'a str,
    /// The filter the group subscribes to.
    pub filter: TopicFilter<'a>,
}

impl<'a> SharedFilter<'a> {
    /// Splits a `$share/{group}/{filter}` filter; `Ok(None)` when `s` is not a shared subscription.
    ///
    /// # Errors
    /// [`DecodeError::InvalidSharedSubscription`] for an empty or wildcard group or a missing filter.
    pub fn parse(s: &'a str) -> Result<Option<Self>, DecodeError> {
        match split_shared(s) {
            Ok(Some((group, filter))) => Ok(Some(Self { group, filter: TopicFilter(filter) })),
            Ok(None) => Ok(None),
            Err(()) => Err(DecodeError::InvalidSharedSubscription),
        }
    }
}

/// The group and filter of a `$share/{group}/{filter}` filter, `Ok(None)` for any other, `Err` for an invalid one.
fn split_shared(s: &str) -> Result<Option<(&str, &str)>, ()> {
    // Compared byte by byte: `strip_prefix` links `memcmp` on bare-metal targets.
    let n = SHARE_PREFIX.len();
    let rest = match (s.as_bytes().get(..n), s.get(n..)) {
        (Some(prefix), Some(rest)) if same(prefix, SHARE_PREFIX.as_bytes()) => rest,
        _ => return Ok(None),
    };
    let slash = rest.bytes().position(|b| b == b'/').ok_or(())?;
    // `/` is one byte, so both ends are character boundaries.
    let (Some(group), Some(filter)) = (rest.get(..slash), rest.get(slash.saturating_add(1)..)) else { return Err(()) };
    if group.is_empty() || group.bytes().any(|b| b == b'+' || b == b'#') || filter.is_empty() {
        return Err(());
    }
    check_filter(filter).map_err(|_| ())?;
    Ok(Some((group, filter)))
}

/// Whether `filter` matches `topic`.
///
/// `+` matches exactly one level (possibly empty), `#` the parent level and any number of levels below it. A filter
/// starting with a wildcard never matches a topic starting with `$` [MQTT-4.7.2-1].
pub fn matches(filter: &str, topic: &str) -> bool {
    let (f, t) = (filter.as_bytes(), topic.as_bytes());
    if t.first() == Some(&b'$') && matches!(f.first(), Some(b'+' | b'#')) {
        return false;
    }
    let (mut f, mut t) = (Some(f), Some(t));
    loop {
        match (next_level(&mut f), next_level(&mut t)) {
            (Some(b"#"), _) => return true,
            (Some(b"+"), Some(_)) => {}
            (Some(a), Some(b)) if same(a, b) => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        for ok in ["#", "+", "a/+/b", "a/#", "+/+", "/", "a//b", "$SYS/#", "sport/tennis/+", "$share/g/a/#"] {
            assert!(TopicFilter::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/#/b", "a+", "#/a", "a#", "sport+", "a/b#", "$share/g#/a", "$share/g/a/#/b"] {
            assert_eq!(TopicFilter::new(bad), Err(DecodeError::InvalidTopicFilter), "{bad}");
        }
        for bad in ["$share/", "$share//a", "$share/g", "$share/g/", "$share/+/a"] {
            assert_eq!(TopicFilter::new(bad), Err(DecodeError::InvalidSharedSubscription), "{bad}");
        }
        let shared = TopicFilter::new("$share/workers/jobs/+").unwrap().shared().unwrap();
        assert_eq!(shared.group, "workers");
        assert_eq!(shared.filter.as_str(), "jobs/+");
    }

    /// The one-pass checks agree with the level-by-level rules on every string of up to six characters drawn
    /// from the characters that matter (found by benchmarking: the level walk dominated SUBSCRIBE decoding).
    #[test]
    fn fast_paths_agree_with_the_rules() {
        let alphabet = ['a', '/', '+', '#', '\0'];
        let mut s = String::new();
        for len in 0..=6u32 {
            for mut n in 0..alphabet.len().pow(len) {
                s.clear();
                for _ in 0..len {
                    s.push(alphabet[n % alphabet.len()]);
                    n /= alphabet.len();
                }
                let levels = check_filter_levels(&s);
                assert_eq!(filter_is_valid(s.as_bytes()), levels.is_ok(), "{s:?}");
                assert_eq!(check_filter(&s), levels, "{s:?}");
                let first_bad = s.bytes().find(|b| matches!(b, b'+' | b'#' | 0));
                let expected = match first_bad {
                    None => Ok(TopicName(&s)),
                    Some(0) => Err(DecodeError::NulInString),
                    Some(_) => Err(DecodeError::WildcardInTopicName),
                };
                assert_eq!(TopicName::new_or_empty(&s), expected, "{s:?}");
            }
        }
    }

    #[test]
    fn names() {
        assert!(TopicName::new("a/b").is_ok());
        assert_eq!(TopicName::new(""), Err(DecodeError::EmptyTopic));
        assert_eq!(TopicName::new("a/+"), Err(DecodeError::WildcardInTopicName));
        assert_eq!(TopicName::new("a/#"), Err(DecodeError::WildcardInTopicName));
        assert_eq!(TopicName::new("a\0"), Err(DecodeError::NulInString));
    }

    #[test]
    fn matching() {
        let cases = [
            ("sport/tennis/player1/#", "sport/tennis/player1", true),
            ("sport/tennis/player1/#", "sport/tennis/player1/ranking", true),
            ("sport/#", "sport", true),
            ("#", "a/b/c", true),
            ("sport/tennis/+", "sport/tennis/player1", true),
            ("sport/tennis/+", "sport/tennis/player1/ranking", false),
            ("sport/+", "sport", false),
            ("sport/+", "sport/", true),
            ("+/+", "/finance", true),
            ("/+", "/finance", true),
            ("+", "/finance", false),
            ("#", "$SYS/uptime", false),
            ("+/monitor/Clients", "$SYS/monitor/Clients", false),
            ("$SYS/#", "$SYS/monitor/Clients", true),
            ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
            ("a/b", "a/b", true),
            ("a/b", "a/bc", false),
            ("a/b/c", "a/b", false),
        ];
        for (filter, topic, expected) in cases {
            assert_eq!(matches(filter, topic), expected, "{filter} vs {topic}");
        }
    }
}
