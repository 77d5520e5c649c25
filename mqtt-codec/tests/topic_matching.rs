//! Property tests for topic matching and validation against a small reference implementation.

use mqtt_codec::{DecodeError, SharedFilter, TopicFilter, TopicName, matches};
use proptest::collection::vec;
use proptest::prelude::*;

/// The matching rules of MQTT 4.7, written as plainly as possible: `#` matches the parent level and everything
/// below it, `+` exactly one level, and a filter starting with a wildcard does not match a topic starting with `$`.
fn reference(filter: &str, topic: &str) -> bool {
    fn go(f: &[&str], t: &[&str]) -> bool {
        match (f.split_first(), t.split_first()) {
            (Some((&"#", _)), _) => true,
            (None, None) => true,
            (Some((&"+", fr)), Some((_, tr))) => go(fr, tr),
            (Some((fl, fr)), Some((tl, tr))) => fl == tl && go(fr, tr),
            _ => false,
        }
    }
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let f: Vec<_> = filter.split('/').collect();
    let t: Vec<_> = topic.split('/').collect();
    go(&f, &t)
}

/// Levels from a small alphabet, so that filters and topics often match.
fn level() -> impl Strategy<Value = String> {
    prop_oneof![Just("a"), Just("b"), Just(""), Just("$s"), Just("é")].prop_map(String::from)
}

fn topic() -> impl Strategy<Value = String> {
    vec(level(), 1..5).prop_map(|l| l.join("/")).prop_filter("empty", |t| !t.is_empty())
}

fn filter() -> impl Strategy<Value = String> {
    let lvl = prop_oneof![3 => level(), 2 => Just("+".to_string())];
    (vec(lvl, 0..5), any::<bool>()).prop_map(|(mut l, hash)| {
        // A filter of one empty level would be the empty string, which is not a filter.
        if hash || l.is_empty() || l == [""] {
            l.push("#".into());
        }
        l.join("/")
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn matching_agrees_with_the_reference(f in filter(), t in topic()) {
        prop_assert!(TopicFilter::new(&f).is_ok(), "generated filter {:?} is invalid", f);
        let name = TopicName::new(&t).unwrap();
        let expected = reference(&f, &t);
        prop_assert_eq!(matches(&f, &t), expected, "{:?} vs {:?}", f, t);
        prop_assert_eq!(TopicFilter::new(&f).unwrap().matches(&name), expected);
    }

    #[test]
    fn a_topic_name_is_a_filter_that_matches_itself(t in topic()) {
        let f = TopicFilter::new(&t).unwrap();
        prop_assert!(!f.has_wildcards());
        prop_assert!(matches(&t, &t));
    }

    #[test]
    fn shared_filters_split_into_group_and_filter(group in "[a-z0-9é]{1,5}", f in filter()) {
        let s = format!("$share/{group}/{f}");
        let shared = TopicFilter::new(&s).unwrap().shared().unwrap();
        prop_assert_eq!(shared.group, group.as_str());
        prop_assert_eq!(shared.filter.as_str(), f.as_str());
        prop_assert_eq!(SharedFilter::parse(&f).unwrap(), None);
    }

    /// A wildcard character inside a level (not the whole level) is never a valid filter, and never a topic name.
    #[test]
    fn wildcards_inside_levels_are_rejected(prefix in "[a-z]{0,3}", suffix in "[a-z]{0,3}", wild in "[+#]") {
        prop_assume!(!(prefix.is_empty() && suffix.is_empty()));
        let level = format!("{prefix}{wild}{suffix}");
        prop_assert_eq!(TopicFilter::new(&level), Err(DecodeError::InvalidTopicFilter));
        let nested = format!("x/{level}/y");
        prop_assert_eq!(TopicFilter::new(&nested), Err(DecodeError::InvalidTopicFilter));
        prop_assert_eq!(TopicName::new(&level), Err(DecodeError::WildcardInTopicName));
    }
}

#[test]
fn spec_examples() {
    // MQTT 3.1.1 / 5.0 section 4.7 examples.
    for (f, t, m) in [
        ("sport/tennis/player1/#", "sport/tennis/player1", true),
        ("sport/tennis/player1/#", "sport/tennis/player1/ranking", true),
        ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true),
        ("sport/#", "sport", true),
        ("sport/tennis/+", "sport/tennis/player1", true),
        ("sport/tennis/+", "sport/tennis/player1/ranking", false),
        ("sport/+", "sport", false),
        ("sport/+", "sport/", true),
        ("+/+", "/finance", true),
        ("/+", "/finance", true),
        ("+", "/finance", false),
        ("#", "$SYS/x", false),
        ("+/monitor/Clients", "$SYS/monitor/Clients", false),
        ("$SYS/#", "$SYS/monitor/Clients", true),
        ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
    ] {
        assert_eq!(matches(f, t), m, "{f} vs {t}");
        assert_eq!(reference(f, t), m, "reference: {f} vs {t}");
    }
    for bad in ["sport/tennis#", "sport/tennis/#/ranking", "sport+"] {
        assert_eq!(TopicFilter::new(bad), Err(DecodeError::InvalidTopicFilter), "{bad}");
    }
}
