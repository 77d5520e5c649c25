//! ACL files in Mosquitto's `acl_file` syntax, with Mosquitto's semantics.
//!
//! ```text
//! # rules before any `user` line apply to anonymous clients
//! topic read public/#
//! user alice
//! topic readwrite alice/#
//! topic deny alice/secret
//! pattern readwrite devices/%c/#     # every client; %c = client id, %u = username
//! ```
//!
//! A client gets the rules of its `user` section (anonymous clients the rules before any `user` line), then the
//! `pattern` rules with `%c` and `%u` substituted. Within each list `deny` rules come first; the first rule that
//! matches decides (a `deny`, or a grant that includes the access asked for). Nothing matching is a denial.
//! Patterns with `%u` do not apply to anonymous clients; a username or client id holding `+` or `#` gets no pattern
//! rules. A topic starting with `$` is matched only by rules that start with `$`.

use std::collections::HashMap;
use std::path::Path;

/// What a client wants to do with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Receive messages (subscribe, delivery, retained messages).
    Read,
    /// Publish (and set a will).
    Write,
}

/// How a subscription filter stands against a client's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterAccess {
    /// Every topic the filter matches is readable: no check per message.
    All,
    /// No topic the filter matches is readable: the subscription is refused.
    Denied,
    /// Some are: each message is checked on delivery.
    Partial,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    topic: String,
    read: bool,
    write: bool,
}

impl Rule {
    fn deny(&self) -> bool {
        !self.read && !self.write
    }

    fn grants(&self, access: Access) -> bool {
        match access {
            Access::Read => self.read,
            Access::Write => self.write,
        }
    }
}

/// Why an ACL file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AclFileError(String);

/// A parsed ACL file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclFile {
    anonymous: Vec<Rule>,
    users: HashMap<String, Vec<Rule>>,
    patterns: Vec<Rule>,
}

/// Appends a rule, `deny` rules before the others, as Mosquitto orders them.
fn add(list: &mut Vec<Rule>, rule: Rule) {
    if rule.deny() {
        let at = list.iter().take_while(|r| r.deny()).count();
        list.insert(at, rule);
    } else {
        list.push(rule);
    }
}

impl AclFile {
    /// Reads and parses a file.
    ///
    /// # Errors
    /// [`AclFileError`] naming the file or the line.
    pub fn load(path: &Path) -> Result<Self, AclFileError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| AclFileError(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text)
    }

    /// Parses the text of a file.
    ///
    /// # Errors
    /// [`AclFileError`] naming the first bad line.
    pub fn parse(text: &str) -> Result<Self, AclFileError> {
        let mut acl = Self::default();
        let mut user: Option<String> = None;
        for (i, raw) in text.lines().enumerate() {
            let err = |why: &str| AclFileError(format!("line {}: {why}", i + 1));
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (keyword, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let rest = rest.trim();
            match keyword {
                "user" => {
                    if rest.is_empty() {
                        return Err(err("missing username"));
                    }
                    user = Some(rest.to_owned());
                }
                "topic" | "pattern" => {
                    let (first, tail) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                    let (access, topic) = match (first, tail.trim()) {
                        ("", _) => return Err(err("empty topic")),
                        (t, "") => ("readwrite", t),
                        (a, t) => (a, t),
                    };
                    let (read, write) = match access {
                        "read" => (true, false),
                        "write" => (false, true),
                        "readwrite" => (true, true),
                        "deny" => (false, false),
                        _ => return Err(err("access must be read, write, readwrite or deny")),
                    };
                    if mqtt_codec::TopicFilter::new(topic).is_err() {
                        return Err(err("not a valid topic filter"));
                    }
                    let rule = Rule { topic: topic.to_owned(), read, write };
                    if keyword == "pattern" {
                        add(&mut acl.patterns, rule);
                    } else {
                        match &user {
                            Some(u) => add(acl.users.entry(u.clone()).or_default(), rule),
                            None => add(&mut acl.anonymous, rule),
                        }
                    }
                }
                _ => return Err(err("expected user, topic or pattern")),
            }
        }
        Ok(acl)
    }

    /// Whether a `pattern` rule grants or denies by client id (`%c`).
    pub fn uses_client_id(&self) -> bool {
        self.patterns.iter().any(|p| p.topic.contains("%c"))
    }

    /// The rules of one client, with `%c` and `%u` substituted.
    pub fn rules_for(&self, username: Option<&str>, client_id: &str) -> ClientRules {
        let own = match username {
            Some(u) => self.users.get(u),
            None => Some(&self.anonymous),
        };
        let mut rules = own.cloned().unwrap_or_default();
        let dangerous = |s: &str| s.contains(['+', '#']);
        if !dangerous(client_id) && !username.is_some_and(dangerous) {
            for p in &self.patterns {
                if p.topic.contains("%u") && username.is_none() {
                    continue;
                }
                let mut topic = p.topic.replace("%c", client_id);
                if let Some(u) = username {
                    topic = topic.replace("%u", u);
                }
                rules.push(Rule { topic, ..p.clone() });
            }
        }
        ClientRules { rules }
    }
}

/// One client's rules, ready to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRules {
    /// Own rules (deny first), then pattern rules (deny first).
    rules: Vec<Rule>,
}

impl ClientRules {
    /// Whether the client may `access` the topic name `topic`.
    pub fn allows(&self, access: Access, topic: &str) -> bool {
        for r in &self.rules {
            if rule_matches(&r.topic, topic) {
                if r.deny() {
                    return false;
                }
                if r.grants(access) {
                    return true;
                }
            }
        }
        false
    }

    /// How the topics a subscription filter matches stand for reading (a filter without wildcards is exact).
    pub fn filter_access(&self, filter: &str) -> FilterAccess {
        if !filter.contains(['+', '#']) {
            return if self.allows(Access::Read, filter) { FilterAccess::All } else { FilterAccess::Denied };
        }
        // Walk the rules in order, as `allows` would for each topic of the filter. A rule that matches none of
        // them cannot decide; one that covers them all decides for all that are still open.
        let mut some_readable = false;
        let mut undecided_deny = false;
        for r in &self.rules {
            if !intersects(&r.topic, filter) {
                continue;
            }
            let covers = covers(&r.topic, filter);
            if r.deny() {
                if covers {
                    return if some_readable { FilterAccess::Partial } else { FilterAccess::Denied };
                }
                undecided_deny = true;
            } else if r.read {
                if covers && !undecided_deny && !some_readable {
                    return FilterAccess::All;
                }
                some_readable = true;
                if covers {
                    break;
                }
            }
        }
        if some_readable { FilterAccess::Partial } else { FilterAccess::Denied }
    }
}

/// Whether an ACL rule (a filter) matches a topic name; `$` topics only by rules starting with `$`.
fn rule_matches(rule: &str, topic: &str) -> bool {
    if topic.starts_with('$') && !rule.starts_with('$') {
        return false;
    }
    mqtt_codec::matches(rule, topic)
}

/// Whether every topic name `filter` matches is matched by `rule`.
fn covers(rule: &str, filter: &str) -> bool {
    if rule.starts_with('$') != filter.starts_with('$') {
        return false;
    }
    let mut r = rule.split('/');
    let mut f = filter.split('/');
    loop {
        match (r.next(), f.next()) {
            (Some("#"), _) => return true,
            (None, None) => return true,
            (Some(_), Some("#")) => return false,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b && b != "+" => {}
            // `a/#` in the filter matches `a` itself, which `a/+` does not; and nothing else matches here.
            _ => return false,
        }
    }
}

/// Whether some topic name is matched by both filters.
fn intersects(a: &str, b: &str) -> bool {
    if a.starts_with('$') != b.starts_with('$') {
        return false;
    }
    let mut x = a.split('/');
    let mut y = b.split('/');
    loop {
        match (x.next(), y.next()) {
            (Some("#"), _) | (_, Some("#")) | (None, None) => return true,
            // One ended: the other matches its parent only through a trailing `#` (handled above on the next level).
            (None, Some(_)) | (Some(_), None) => return false,
            (Some("+"), Some(_)) | (Some(_), Some("+")) => {}
            (Some(p), Some(q)) if p == q => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# anonymous
topic read public/#
topic deny public/secret

user alice
topic readwrite alice/#
topic deny alice/private/#
topic write  shared/in
topic shared/both

user bob
topic read sensors/+/temp

pattern readwrite devices/%c/#
pattern read users/%u/inbox
pattern deny devices/%c/locked
";

    fn acl() -> AclFile {
        AclFile::parse(FILE).unwrap()
    }

    #[test]
    fn anonymous_rules_are_the_ones_before_any_user_line() {
        let r = acl().rules_for(None, "anon1");
        assert!(r.allows(Access::Read, "public/news"));
        assert!(!r.allows(Access::Write, "public/news"));
        assert!(!r.allows(Access::Read, "public/secret"), "deny wins over an earlier grant");
        assert!(!r.allows(Access::Read, "alice/x"));
        assert!(r.allows(Access::Write, "devices/anon1/t"), "%c applies to anonymous clients");
        assert!(!r.allows(Access::Read, "users/anon1/inbox"), "%u patterns skip anonymous clients");
    }

    #[test]
    fn user_sections_and_patterns() {
        let a = acl().rules_for(Some("alice"), "dev7");
        assert!(a.allows(Access::Write, "alice/a/b") && a.allows(Access::Read, "alice"));
        assert!(!a.allows(Access::Read, "alice/private/x"));
        assert!(a.allows(Access::Write, "shared/in") && !a.allows(Access::Read, "shared/in"));
        assert!(a.allows(Access::Read, "shared/both") && a.allows(Access::Write, "shared/both"));
        assert!(!a.allows(Access::Read, "public/news"), "anonymous rules are not alice's");
        assert!(a.allows(Access::Read, "users/alice/inbox") && !a.allows(Access::Write, "users/alice/inbox"));
        assert!(a.allows(Access::Write, "devices/dev7/x") && !a.allows(Access::Write, "devices/dev8/x"));
        assert!(!a.allows(Access::Write, "devices/dev7/locked"));
        // A user without a section gets the patterns only.
        let z = acl().rules_for(Some("zed"), "z1");
        assert!(z.allows(Access::Read, "users/zed/inbox") && !z.allows(Access::Read, "alice/x"));
    }

    #[test]
    fn wildcards_in_names_get_no_pattern_rules() {
        let r = acl().rules_for(Some("alice"), "dev/#");
        assert!(!r.allows(Access::Write, "devices/dev/#/x"));
        let r = acl().rules_for(Some("+"), "c");
        assert!(!r.allows(Access::Read, "users/+/inbox") && !r.allows(Access::Write, "devices/c/x"));
    }

    #[test]
    fn dollar_topics_need_dollar_rules() {
        let r = AclFile::parse("topic read #\ntopic read $SYS/broker/#\n").unwrap().rules_for(None, "c");
        assert!(r.allows(Access::Read, "a/b"));
        assert!(!r.allows(Access::Read, "$SYS/x"));
        assert!(r.allows(Access::Read, "$SYS/broker/uptime"));
    }

    #[test]
    fn filters_are_classified_once() {
        use FilterAccess::{All, Denied, Partial};
        let anon = acl().rules_for(None, "anon1");
        assert_eq!(anon.filter_access("public/#"), Partial, "public/secret is denied");
        assert_eq!(anon.filter_access("public/+/x"), All);
        assert_eq!(anon.filter_access("public/news"), All);
        assert_eq!(anon.filter_access("public/secret"), Denied);
        assert_eq!(anon.filter_access("#"), Partial);
        assert_eq!(anon.filter_access("alice/#"), Denied);
        assert_eq!(anon.filter_access("devices/anon1/#"), Partial, "devices/anon1/locked is denied");
        assert_eq!(anon.filter_access("$SYS/#"), Denied);
        let bob = acl().rules_for(Some("bob"), "b");
        assert_eq!(bob.filter_access("sensors/+/temp"), All);
        assert_eq!(bob.filter_access("sensors/#"), Partial);
        assert_eq!(bob.filter_access("sensors/a/hum"), Denied);
        assert_eq!(bob.filter_access("+/+/+"), Partial);
        let all = AclFile::parse("topic read #").unwrap().rules_for(None, "c");
        assert_eq!(all.filter_access("#"), All);
        assert_eq!(all.filter_access("$SYS/#"), Denied);
    }

    #[test]
    fn classification_agrees_with_per_topic_checks() {
        let acl = acl();
        let topics = [
            "public",
            "public/news",
            "public/secret",
            "public/a/x",
            "alice",
            "alice/x",
            "alice/private/x",
            "sensors/a/temp",
            "sensors/b/hum",
            "devices/c1/x",
            "devices/c1/locked",
            "users/bob/inbox",
            "shared/in",
            "x",
            "$SYS/a",
        ];
        let filters = [
            "#",
            "+",
            "public/#",
            "public/+",
            "alice/#",
            "sensors/+/temp",
            "+/+/temp",
            "devices/+/#",
            "+/c1/+",
            "$SYS/#",
            "users/#",
        ];
        for (user, cid) in [(None, "c1"), (Some("alice"), "c1"), (Some("bob"), "c1")] {
            let r = acl.rules_for(user, cid);
            for f in filters {
                let readable: Vec<bool> = topics
                    .iter()
                    .filter(|t| (f.starts_with('$') || !t.starts_with('$')) && mqtt_codec::matches(f, t))
                    .map(|t| r.allows(Access::Read, t))
                    .collect();
                match r.filter_access(f) {
                    FilterAccess::All => assert!(readable.iter().all(|x| *x), "{user:?} {f}"),
                    FilterAccess::Denied => assert!(readable.iter().all(|x| !*x), "{user:?} {f}"),
                    FilterAccess::Partial => {}
                }
            }
        }
    }

    #[test]
    fn bad_files_name_the_line() {
        for (text, want) in [
            ("topic maybe a/b", "line 1: access must be"),
            ("\nuser", "line 2: missing username"),
            ("topic read a/#/b", "line 1: not a valid topic filter"),
            ("allow a", "line 1: expected user"),
        ] {
            let e = AclFile::parse(text).unwrap_err().to_string();
            assert!(e.starts_with(want), "{text:?}: {e}");
        }
    }
}
