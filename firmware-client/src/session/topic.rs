//! Topic filter validation and matching, byte by byte.
//!
//! They give exactly the answers of `mqtt_codec::TopicFilter::new(..).is_ok()` and `mqtt_codec::matches` (property
//! tests compare them on generated filters and topics), without `str::split` and `memchr`: 1.4 KB less flash on
//! Cortex-M4, where the codec's versions also name the error and serve the broker's hot paths.

/// The `$share/` prefix of a shared subscription.
const SHARE: &[u8] = b"$share/";

/// Whether `filter` is a valid topic filter [MQTT-4.7.1-1] [MQTT-4.7.1-2] [MQTT-4.7.3-1], a `$share/{group}/{filter}`
/// one included: non-empty, at most 65,535 bytes, no U+0000, `+` a whole level, `#` a whole last level.
pub(crate) fn valid_filter(filter: &str) -> bool {
    let s = filter.as_bytes();
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
    if s.is_empty() || s.len() > usize::from(u16::MAX) || !s.iter().enumerate().all(byte_ok) {
        return false;
    }
    let Some(rest) = s.strip_prefix(SHARE) else { return true };
    // The whole string passed, so the filter after the group does too; the group must be a plain, non-empty level.
    match rest.iter().position(|&b| b == b'/') {
        Some(end) => {
            let (group, filter) = (rest.get(..end).unwrap_or_default(), rest.get(end.saturating_add(1)..));
            !group.is_empty() && !group.iter().any(|&b| b == b'+' || b == b'#') && filter.is_some_and(|f| !f.is_empty())
        }
        None => false,
    }
}

/// The next `/`-separated level, as `str::split('/')` yields them (an empty string is one empty level).
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

/// `a == b` one byte at a time: slice equality links `memcmp`.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// Whether `filter` matches `topic`: `+` is one level, `#` the parent level and everything below, and a filter that
/// starts with a wildcard does not match a topic that starts with `$` [MQTT-4.7.2-1].
///
/// Out of line: inlined into the packet handler it costs flash on Cortex-M.
#[inline(never)]
pub(crate) fn matches(filter: &[u8], topic: &str) -> bool {
    let (f, t) = (filter, topic.as_bytes());
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
    use proptest::prelude::*;

    fn filter() -> impl Strategy<Value = String> {
        prop_oneof![
            "[ab/+#$\u{0}]{0,10}",
            "\\$share/[ab/+#]{0,4}/?[ab/+#]{0,6}",
            "\\$share[ab/+#]{0,6}",
            "[ab]{1,3}(/[ab+#]{1,2}){0,4}/?",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

        #[test]
        fn validation_agrees_with_the_codec(f in filter()) {
            prop_assert_eq!(super::valid_filter(&f), mqtt_codec::TopicFilter::new(&f).is_ok(), "{:?}", f);
        }

        #[test]
        fn matching_agrees_with_the_codec(f in "[ab/+#$]{0,8}", t in "[ab/$]{0,8}") {
            prop_assert_eq!(super::matches(f.as_bytes(), &t), mqtt_codec::matches(&f, &t), "{:?} {:?}", f, t);
        }
    }

    #[test]
    fn spec_examples() {
        for (f, t, m) in [
            ("sport/tennis/player1/#", "sport/tennis/player1", true),
            ("sport/#", "sport", true),
            ("sport/+", "sport", false),
            ("sport/+", "sport/", true),
            ("+/+", "/finance", true),
            ("+", "/finance", false),
            ("#", "$SYS/uptime", false),
            ("$SYS/#", "$SYS/monitor/Clients", true),
        ] {
            assert_eq!(super::matches(f.as_bytes(), t), m, "{f} {t}");
        }
        for ok in ["#", "+/+", "a//b", "$share/g/a/#"] {
            assert!(super::valid_filter(ok), "{ok}");
        }
        for bad in ["", "a/#/b", "a+", "$share/g", "$share//a", "$share/+/a", "a\0"] {
            assert!(!super::valid_filter(bad), "{bad}");
        }
    }
}
