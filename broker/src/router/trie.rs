//! The subscription tree: one node per topic level, `+` and `#` stored as ordinary levels.
//!
//! Matching walks the topic's levels once, following the exact level, `+` and `#` at each node, so its cost grows
//! with the depth of the topic and the number of matching filters, not with the number of subscriptions.

use std::collections::HashMap;

/// foldhash with a per-process random seed: several times faster than SipHash on short topic levels, and still
/// seeded, so clients cannot precompute colliding levels.
type Children<T, V> = HashMap<Box<str>, Node<T, V>, foldhash::fast::RandomState>;

/// One topic level. The children map is boxed and made on first use: most nodes are leaves (a device's own topic),
/// and a leaf's slot in its parent's table is then 48 bytes instead of 80.
#[derive(Debug)]
struct Node<T, V> {
    children: Option<Box<Children<T, V>>>,
    subscribers: Vec<(T, V)>,
}

impl<T, V> Default for Node<T, V> {
    fn default() -> Self {
        Self { children: None, subscribers: Vec::new() }
    }
}

impl<T, V> Node<T, V> {
    fn is_empty(&self) -> bool {
        self.children.is_none() && self.subscribers.is_empty()
    }

    fn child(&self, level: &str) -> Option<&Self> {
        self.children.as_deref()?.get(level)
    }

    fn child_mut(&mut self, level: &str) -> Option<&mut Self> {
        self.children.as_deref_mut()?.get_mut(level)
    }

    fn child_or_insert(&mut self, level: &str) -> &mut Self {
        self.children.get_or_insert_with(Box::default).entry(level.into()).or_default()
    }

    /// Removes a child; the map goes when it is empty, so `is_empty` stays true to its word.
    fn remove_child(&mut self, level: &str) {
        if let Some(children) = self.children.as_deref_mut() {
            children.remove(level);
            if children.is_empty() {
                self.children = None;
            }
        }
    }
}

/// Topic filters and their subscribers of type `T` (compared with `==` for identity), each with a value `V`
/// (the subscription's options).
#[derive(Debug)]
pub struct Trie<T, V> {
    root: Node<T, V>,
    len: usize,
}

impl<T, V> Default for Trie<T, V> {
    fn default() -> Self {
        Self { root: Node::default(), len: 0 }
    }
}

impl<T: Clone + PartialEq, V: Clone> Trie<T, V> {
    /// Adds or updates a subscription. Returns `true` if it is new, `false` if it replaced one.
    pub fn insert(&mut self, filter: &str, subscriber: T, value: V) -> bool {
        let mut node = &mut self.root;
        for level in filter.split('/') {
            node = node.child_or_insert(level);
        }
        if let Some(existing) = node.subscribers.iter_mut().find(|(s, _)| *s == subscriber) {
            existing.1 = value;
            false
        } else {
            // Most filters have a single subscriber.
            super::push_compact(&mut node.subscribers, (subscriber, value));
            self.len = self.len.saturating_add(1);
            true
        }
    }

    /// Removes a subscription. Returns whether it existed. Empty nodes are pruned.
    pub fn remove(&mut self, filter: &str, subscriber: &T) -> bool {
        let levels: Vec<&str> = filter.split('/').collect();
        let removed = remove_at(&mut self.root, &levels, subscriber);
        if removed {
            self.len = self.len.saturating_sub(1);
        }
        removed
    }

    /// Appends every subscription matching `topic` to `out`; a subscriber may appear once per matching filter.
    pub fn matches<'a>(&'a self, topic: &str, out: &mut Vec<&'a (T, V)>) {
        // A wildcard in the first level never matches a topic starting with `$` [MQTT-4.7.2-1].
        let system = topic.starts_with('$');
        collect(&self.root, Some(topic), true, system, out);
    }

    /// Number of subscriptions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no subscriptions.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

fn remove_at<T: PartialEq, V>(node: &mut Node<T, V>, levels: &[&str], subscriber: &T) -> bool {
    let Some((first, rest)) = levels.split_first() else {
        let before = node.subscribers.len();
        node.subscribers.retain(|(s, _)| s != subscriber);
        return node.subscribers.len() != before;
    };
    let Some(child) = node.child_mut(first) else {
        return false;
    };
    let removed = remove_at(child, rest, subscriber);
    if child.is_empty() {
        node.remove_child(first);
    }
    removed
}

/// Collects the subscribers of `node` matching `rest`, the levels of the topic not consumed yet (`None` once every
/// level is consumed). The recursion is as deep as the topic has levels, which the session bounds.
fn collect<'a, T, V>(node: &'a Node<T, V>, rest: Option<&str>, first: bool, system: bool, out: &mut Vec<&'a (T, V)>) {
    let wildcard_ok = !(system && first);
    if wildcard_ok && let Some(hash) = node.child("#") {
        out.extend(hash.subscribers.iter());
    }
    let Some(rest) = rest else {
        out.extend(node.subscribers.iter());
        return;
    };
    let (level, tail) = match rest.split_once('/') {
        Some((level, tail)) => (level, Some(tail)),
        None => (rest, None),
    };
    if let Some(child) = node.child(level) {
        collect(child, tail, false, system, out);
    }
    if wildcard_ok && let Some(plus) = node.child("+") {
        collect(plus, tail, false, system, out);
    }
}

#[cfg(test)]
mod tests {
    use mqtt_codec::QoS;

    use super::*;

    fn matching(trie: &Trie<u32, QoS>, topic: &str) -> Vec<u32> {
        let mut out = Vec::new();
        trie.matches(topic, &mut out);
        let mut ids: Vec<u32> = out.into_iter().map(|(s, _)| *s).collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn agrees_with_the_codec_matcher() {
        let filters = ["#", "+", "a/+", "a/#", "a/b", "+/b", "$SYS/#", "+/+/c", "/+", "a/+/#", "a//b"];
        let topics = ["a", "a/b", "a/c", "b/b", "$SYS/x", "$SYS", "x/y/c", "/a", "a/b/c", "a//b", "a/"];
        let mut trie = Trie::default();
        for (i, f) in filters.iter().enumerate() {
            trie.insert(f, i as u32, QoS::AtMostOnce);
        }
        for t in topics {
            let expected: Vec<u32> =
                filters.iter().enumerate().filter(|(_, f)| mqtt_codec::matches(f, t)).map(|(i, _)| i as u32).collect();
            assert_eq!(matching(&trie, t), expected, "topic {t}");
        }
    }

    #[test]
    fn insert_replace_remove_prunes() {
        let mut trie = Trie::default();
        assert!(trie.insert("a/b/c", 1u32, QoS::AtMostOnce));
        assert!(!trie.insert("a/b/c", 1, QoS::ExactlyOnce));
        assert_eq!(trie.len(), 1);
        let mut out = Vec::new();
        trie.matches("a/b/c", &mut out);
        assert_eq!(out, vec![&(1, QoS::ExactlyOnce)]);
        assert!(trie.remove("a/b/c", &1));
        assert!(!trie.remove("a/b/c", &1));
        assert!(trie.root.is_empty());
    }
}
