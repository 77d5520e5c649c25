//! Retained messages: at most one per topic, bounded in number, indexed by topic level.
//!
//! The store is a tree with one node per topic level, like the subscription [`trie`](super::trie) but keyed the
//! other way round: it holds topics, and a filter walks it. A filter reaches only the subtrees its levels allow
//! (`a/+/c` visits `a`'s children and one grandchild each, `a/#` the subtree under `a`), never the whole store.
//!
//! A filter that matches a large part of the store (`#` over 100,000 topics) is walked in bounded steps: each
//! [`Retained::scan`] call visits at most a given number of nodes and leaves a [`Cursor`] at the next node to visit,
//! so the caller can release the router lock between steps and other clients keep their latency. Children are kept
//! in topic-level order, so a cursor stays valid while topics come and go between steps: the walk goes on with the
//! first node after the last one visited, whatever changed.

use std::collections::BTreeMap;

use crate::message::Message;

#[derive(Debug, Default)]
struct Node {
    msg: Option<Message>,
    children: BTreeMap<Box<str>, Node>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.msg.is_none() && self.children.is_empty()
    }
}

/// The retained message store.
#[derive(Debug)]
pub struct Retained {
    root: Node,
    len: usize,
    max: usize,
    /// Sum of the messages' costs, and its limit (0: none).
    bytes: usize,
    max_bytes: usize,
}

/// The store is at its limit and the topic holds no retained message yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetainedFull;

/// Where a walk of the store goes on: at the node with these levels (the default starts at the beginning).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor(Vec<Box<str>>);

/// What a [`Retained::scan`] step found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// Every match was seen.
    Done,
    /// The node budget ran out, or the callback asked to stop: the cursor points at the next node.
    Paused,
}

impl Retained {
    /// An empty store holding at most `max` messages.
    pub fn new(max: usize) -> Self {
        Self { root: Node::default(), len: 0, max, bytes: 0, max_bytes: 0 }
    }

    /// The same store, holding at most `max_bytes` bytes of messages (their cost: topic, payload, properties).
    #[must_use]
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Bytes of retained messages held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Stores, replaces or (with an empty payload) deletes the retained message of a topic.
    ///
    /// # Errors
    /// [`RetainedFull`] when a new topic would exceed the count limit, or the message the byte limit; existing
    /// topics can still be cleared, and replaced within the byte limit.
    pub fn set(&mut self, msg: &Message) -> Result<(), RetainedFull> {
        let levels: Vec<&str> = msg.topic().split('/').collect();
        if msg.payload.is_empty() {
            if let Some(old) = remove_at(&mut self.root, &levels) {
                self.len = self.len.saturating_sub(1);
                self.bytes = self.bytes.saturating_sub(old);
            }
            return Ok(());
        }
        let fits = |held: usize| self.max_bytes == 0 || held.saturating_add(msg.cost()) <= self.max_bytes;
        if let Some(slot) = find_mut(&mut self.root, &levels).and_then(|n| n.msg.as_mut()) {
            let others = self.bytes.saturating_sub(slot.cost());
            if !fits(others) {
                return Err(RetainedFull);
            }
            self.bytes = others.saturating_add(msg.cost());
            *slot = msg.clone();
            return Ok(());
        }
        if self.len >= self.max || !fits(self.bytes) {
            return Err(RetainedFull);
        }
        self.bytes = self.bytes.saturating_add(msg.cost());
        let mut node = &mut self.root;
        for level in levels {
            node = node.children.entry(level.into()).or_default();
        }
        node.msg = Some(msg.clone());
        self.len = self.len.saturating_add(1);
        Ok(())
    }

    /// Walks the messages whose topic matches `filter`, in topic-level order, starting at `cursor`, visiting at
    /// most `budget` nodes (at least one). `f` gets each match and returns whether it took it; on `false` the walk
    /// pauses with `cursor` at that message, to offer it again on the next step.
    pub fn scan(&self, filter: &str, cursor: &mut Cursor, budget: usize, f: &mut dyn FnMut(&Message) -> bool) -> Scan {
        let filter: Vec<&str> = filter.split('/').collect();
        let resume = std::mem::take(cursor);
        let mut walk =
            Walk { filter: &filter, resume: &resume, budget: budget.max(1), path: Vec::new(), f, stop: None };
        if walk.visit(&self.root, 0, false, true) {
            return Scan::Done;
        }
        *cursor = walk.stop.unwrap_or_default();
        Scan::Paused
    }

    /// Every retained message whose topic matches `filter`, in one walk (copies share the payload bytes).
    pub fn matching(&self, filter: &str) -> Vec<Message> {
        let mut out = Vec::new();
        self.scan(filter, &mut Cursor::default(), usize::MAX, &mut |m| {
            out.push(m.clone());
            true
        });
        out
    }

    /// Every retained message, in topic-level order.
    pub fn all(&self) -> impl Iterator<Item = &Message> + '_ {
        // Depth first with an explicit stack: topic depth is client-controlled, recursion would be too.
        let mut stack = vec![&self.root];
        std::iter::from_fn(move || {
            while let Some(node) = stack.pop() {
                stack.extend(node.children.values().rev());
                if let Some(msg) = &node.msg {
                    return Some(msg);
                }
            }
            None
        })
    }

    /// Number of retained messages.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

fn find_mut<'a>(mut node: &'a mut Node, levels: &[&str]) -> Option<&'a mut Node> {
    for level in levels {
        node = node.children.get_mut(*level)?;
    }
    Some(node)
}

/// Clears the message at `levels`, pruning nodes left empty. Returns the cost of the one there was.
fn remove_at(node: &mut Node, levels: &[&str]) -> Option<usize> {
    let Some((first, rest)) = levels.split_first() else {
        return node.msg.take().map(|m| m.cost());
    };
    let child = node.children.get_mut(*first)?;
    let removed = remove_at(child, rest);
    if child.is_empty() {
        node.children.remove(*first);
    }
    removed
}

/// One step of a walk: the filter's levels, where the previous step stopped, and what is left of the budget.
struct Walk<'a, 'f> {
    filter: &'a [&'a str],
    /// Where to start; nodes before it in topic-level order were visited by earlier steps.
    resume: &'a Cursor,
    budget: usize,
    /// The levels of the node being visited.
    path: Vec<&'a str>,
    f: &'f mut dyn FnMut(&Message) -> bool,
    /// Set when the walk pauses: the next node to visit.
    stop: Option<Cursor>,
}

impl<'a> Walk<'a, '_> {
    /// Visits `node` (at `depth`, reached by `self.path`) and the part of its subtree the filter allows. `all`: a
    /// `#` above matched, so every descendant matches. `on_resume`: `self.path` is a prefix of `self.resume`.
    /// Returns `false` when the walk paused.
    fn visit(&mut self, node: &'a Node, depth: usize, all: bool, on_resume: bool) -> bool {
        // A node on the way to the resume point comes before it: an earlier step saw its message. Passing it again
        // costs no budget, so every step makes progress.
        let resume = &self.resume.0;
        let seen = on_resume && depth < resume.len();
        if !seen {
            if self.budget == 0 {
                self.pause();
                return false;
            }
            self.budget -= 1;
        }
        let next = self.filter.get(depth).copied();
        let here = all || next.is_none() || next == Some("#");
        if here
            && !seen
            && let Some(msg) = &node.msg
            && !(self.f)(msg)
        {
            // The caller could not take it: the next step starts with it.
            self.pause();
            return false;
        }
        let (child_all, exact) = match next {
            _ if all => (true, None),
            None => return true,
            Some("#") => (true, None),
            Some("+") => (false, None),
            Some(level) => (false, Some(level)),
        };
        // A wildcard in the first level never matches a topic starting with `$` [MQTT-4.7.2-1].
        let skip_system = depth == 0 && exact.is_none();
        let from = if on_resume { resume.get(depth).map(|l| &**l) } else { None };
        let children: Box<dyn Iterator<Item = (&'a Box<str>, &'a Node)>> = match (exact, from) {
            (Some(level), from) if from.is_none_or(|f| level >= f) => {
                Box::new(node.children.get_key_value(level).into_iter())
            }
            (Some(_), _) => return true,
            (None, Some(from)) => {
                Box::new(node.children.range::<str, _>((std::ops::Bound::Included(from), std::ops::Bound::Unbounded)))
            }
            (None, None) => Box::new(node.children.iter()),
        };
        for (level, child) in children {
            if skip_system && level.starts_with('$') {
                continue;
            }
            let child_on_resume = from.is_some_and(|f| f == &**level);
            self.path.push(level);
            let done = self.visit(child, depth + 1, child_all, child_on_resume);
            self.path.pop();
            if !done {
                return false;
            }
        }
        true
    }

    /// Pauses at the node being visited (`self.path`).
    fn pause(&mut self) {
        self.stop = Some(Cursor(self.path.iter().map(|l| Box::from(*l)).collect()));
    }
}

#[cfg(test)]
mod tests {
    use mqtt_codec::QoS;

    use super::*;

    fn msg(topic: &str, payload: &[u8]) -> Message {
        Message::from_parts(topic, payload, QoS::AtMostOnce, true)
    }

    fn topics(found: &[Message]) -> Vec<String> {
        let mut t: Vec<String> = found.iter().map(|m| m.topic().to_owned()).collect();
        t.sort();
        t
    }

    #[test]
    fn set_replace_clear_and_limit() {
        let mut r = Retained::new(1);
        r.set(&msg("a", b"1")).unwrap();
        r.set(&msg("a", b"2")).unwrap();
        assert_eq!(r.matching("#").iter().map(|m| m.payload.to_vec()).collect::<Vec<_>>(), vec![b"2".to_vec()]);
        assert_eq!(r.set(&msg("b", b"x")), Err(RetainedFull));
        r.set(&msg("a", b"")).unwrap();
        assert!(r.is_empty() && r.root.is_empty(), "cleared and pruned");
        r.set(&msg("$SYS/x", b"1")).unwrap();
        assert_eq!(r.matching("#").len(), 0);
        assert_eq!(r.matching("+/x").len(), 0);
        assert_eq!(r.matching("$SYS/#").len(), 1);
    }

    #[test]
    fn the_byte_limit_holds_for_new_and_replaced_topics() {
        let mut r = Retained::new(100).with_max_bytes(10);
        r.set(&msg("a", b"1234")).unwrap(); // 5 bytes
        r.set(&msg("b", b"123")).unwrap(); // 4 bytes
        assert_eq!(r.bytes(), 9);
        assert_eq!(r.set(&msg("c", b"1")), Err(RetainedFull), "11 > 10");
        assert_eq!(r.set(&msg("a", b"123456")), Err(RetainedFull), "replacing a: 4 + 7 > 10");
        r.set(&msg("a", b"12345")).unwrap();
        assert_eq!(r.bytes(), 10);
        r.set(&msg("a", b"")).unwrap();
        assert_eq!(r.bytes(), 4);
        r.set(&msg("c", b"1")).unwrap();
        assert_eq!((r.len(), r.bytes()), (2, 6));
    }

    #[test]
    fn a_parent_and_its_child_are_both_kept_and_cleared_apart() {
        let mut r = Retained::new(10);
        r.set(&msg("a", b"1")).unwrap();
        r.set(&msg("a/b", b"2")).unwrap();
        r.set(&msg("a", b"")).unwrap();
        assert_eq!(topics(&r.matching("#")), ["a/b"]);
        assert_eq!(r.len(), 1);
        r.set(&msg("a/b", b"")).unwrap();
        assert!(r.root.is_empty());
    }

    const TOPICS: [&str; 14] =
        ["a", "a/b", "a/c", "b/b", "$SYS/x", "$SYS", "x/y/c", "/a", "a/b/c", "a//b", "a/", "/", "b", "a/b/c/d"];

    #[test]
    fn agrees_with_the_codec_matcher_at_every_step_size() {
        let filters = ["#", "+", "a/+", "a/#", "a/b", "+/b", "$SYS/#", "+/+/c", "/+", "a/+/#", "a//b", "+/#", "/#"];
        let mut r = Retained::new(100);
        for t in TOPICS {
            r.set(&msg(t, b"x")).unwrap();
        }
        for f in filters {
            let mut expected: Vec<&str> = TOPICS.iter().copied().filter(|t| mqtt_codec::matches(f, t)).collect();
            expected.sort_unstable();
            for budget in [1, 2, 3, 7, usize::MAX] {
                let mut found = Vec::new();
                let mut cursor = Cursor::default();
                let mut steps = 0;
                while r.scan(f, &mut cursor, budget, &mut |m| {
                    found.push(m.clone());
                    true
                }) == Scan::Paused
                {
                    steps += 1;
                    assert!(steps < 100, "a walk makes progress");
                }
                assert_eq!(topics(&found), expected, "filter {f}, budget {budget}");
            }
        }
    }

    #[test]
    fn a_message_refused_by_the_callback_is_offered_again_on_the_next_step() {
        let mut r = Retained::new(100);
        for t in TOPICS {
            r.set(&msg(t, b"x")).unwrap();
        }
        let mut found = Vec::new();
        let mut cursor = Cursor::default();
        // One message per step, as a subscriber whose queue has room for one more takes them.
        loop {
            let mut room = 1;
            let step = r.scan("#", &mut cursor, usize::MAX, &mut |m| {
                if room == 0 {
                    return false;
                }
                room -= 1;
                found.push(m.clone());
                true
            });
            if step == Scan::Done {
                break;
            }
        }
        let mut expected: Vec<&str> = TOPICS.iter().copied().filter(|t| !t.starts_with('$')).collect();
        expected.sort_unstable();
        assert_eq!(topics(&found), expected);
        let in_order: Vec<String> = found.iter().map(|m| m.topic().to_owned()).collect();
        assert_eq!(in_order.len(), expected.len(), "each message once");
    }

    #[test]
    fn a_walk_goes_on_past_topics_removed_and_added_between_steps() {
        let mut r = Retained::new(1000);
        for i in 0..100 {
            r.set(&msg(&format!("t/{i:03}"), b"x")).unwrap();
        }
        let mut found = Vec::new();
        let mut cursor = Cursor::default();
        assert_eq!(
            r.scan("t/+", &mut cursor, 12, &mut |m| {
                found.push(m.topic().to_owned());
                true
            }),
            Scan::Paused
        );
        let seen = found.len();
        assert!(seen > 0 && seen < 100);
        // The next topic to visit goes away, and one is added before the cursor and one after it.
        r.set(&msg(&format!("t/{seen:03}"), b"")).unwrap();
        r.set(&msg("t/000a", b"x")).unwrap();
        r.set(&msg("t/zzz", b"x")).unwrap();
        while r.scan("t/+", &mut cursor, 12, &mut |m| {
            found.push(m.topic().to_owned());
            true
        }) == Scan::Paused
        {}
        let mut expected: Vec<String> = (0..100).filter(|i| *i != seen).map(|i| format!("t/{i:03}")).collect();
        expected.push("t/zzz".into());
        assert_eq!(found, expected, "in order, each once; the one added behind the cursor is not seen");
    }

    #[test]
    fn a_filter_visits_only_the_subtrees_it_can_match() {
        let mut r = Retained::new(100_000);
        for i in 0..10_000 {
            r.set(&msg(&format!("bulk/{i}"), b"x")).unwrap();
        }
        r.set(&msg("home/kitchen/temp", b"21")).unwrap();
        // With a budget of 10 nodes, a filter outside `bulk` finishes in one step.
        for f in ["home/+/temp", "home/#", "+/kitchen/temp"] {
            let mut n = 0;
            let step = r.scan(f, &mut Cursor::default(), if f.starts_with('+') { 10_010 } else { 10 }, &mut |_| {
                n += 1;
                true
            });
            assert_eq!((step, n), (Scan::Done, 1), "filter {f}");
        }
    }
}
