//! Topic names, topic filters and matching: never panic, and agree with the rules that can be checked
//! from outside.
//!
//! Input: a topic and a filter, separated by the first 0xff byte (never part of UTF-8); without one, the
//! same string is used for both.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mqtt_codec::{TopicFilter, TopicName, matches};

fuzz_target!(|data: &[u8]| {
    let (topic, filter) = match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, data),
    };
    let (Ok(topic), Ok(filter)) = (core::str::from_utf8(topic), core::str::from_utf8(filter)) else {
        return;
    };
    // Raw matching takes any strings.
    let raw = matches(filter, topic);

    let name = TopicName::new(topic);
    let parsed = TopicFilter::new(filter);
    if let Ok(f) = &parsed {
        let _ = f.has_wildcards();
        if let Some(shared) = f.shared() {
            assert!(filter.starts_with("$share/"));
            assert!(!shared.group.is_empty() && !shared.group.contains(['+', '#', '/']));
            assert!(filter.ends_with(shared.filter.as_str()));
        }
        if let Ok(t) = &name {
            assert_eq!(f.matches(t), raw);
            // A filter without wildcards matches exactly the topic it spells.
            if !f.has_wildcards() {
                assert_eq!(raw, filter == topic, "{filter:?} vs {topic:?}");
            }
        }
    }
    if let Ok(t) = name {
        assert!(!topic.is_empty() && !topic.contains(['+', '#', '\0']));
        // A valid topic name is a valid filter (shared-subscription syntax aside) that matches itself.
        assert!(matches(topic, topic), "{topic:?} does not match itself");
        if !topic.starts_with("$share/") {
            let own = TopicFilter::new(topic);
            assert!(own.is_ok_and(|f| f.matches(&t)), "{topic:?} as a filter: {own:?}");
        }
        let all = TopicFilter::new("#").is_ok_and(|f| f.matches(&t));
        assert_eq!(all, !topic.starts_with('$'), "'#' vs {topic:?}");
        let one = TopicFilter::new("+").is_ok_and(|f| f.matches(&t));
        assert_eq!(one, !topic.starts_with('$') && !topic.contains('/'), "'+' vs {topic:?}");
    }
});
