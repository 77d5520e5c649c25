//! Retained messages: at most one per topic, bounded in number.

use std::collections::HashMap;

use crate::message::Message;

/// The retained message store.
#[derive(Debug)]
pub struct Retained {
    messages: HashMap<String, Message>,
    max: usize,
}

/// The store is at its limit and the topic holds no retained message yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetainedFull;

impl Retained {
    /// An empty store holding at most `max` messages.
    pub fn new(max: usize) -> Self {
        Self { messages: HashMap::new(), max }
    }

    /// Stores, replaces or (with an empty payload) deletes the retained message of a topic.
    ///
    /// # Errors
    /// [`RetainedFull`] when a new topic would exceed the limit; existing topics can still be replaced or cleared.
    pub fn set(&mut self, msg: &Message) -> Result<(), RetainedFull> {
        if msg.payload.is_empty() {
            self.messages.remove(msg.topic());
            return Ok(());
        }
        if let Some(slot) = self.messages.get_mut(msg.topic()) {
            *slot = msg.clone();
            return Ok(());
        }
        if self.messages.len() >= self.max {
            return Err(RetainedFull);
        }
        self.messages.insert(msg.topic().to_owned(), msg.clone());
        Ok(())
    }

    /// Every retained message whose topic matches `filter` (all of them: no cap).
    pub fn matching<'a>(&'a self, filter: &'a str) -> impl Iterator<Item = &'a Message> + 'a {
        self.messages.values().filter(move |m| mqtt_codec::matches(filter, m.topic()))
    }

    /// Every retained message.
    pub fn all(&self) -> impl Iterator<Item = &Message> + '_ {
        self.messages.values()
    }

    /// Number of retained messages.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use mqtt_codec::QoS;

    use super::*;

    #[test]
    fn set_replace_clear_and_limit() {
        let mut r = Retained::new(1);
        r.set(&Message::from_parts("a", b"1", QoS::AtMostOnce, true)).unwrap();
        r.set(&Message::from_parts("a", b"2", QoS::AtMostOnce, true)).unwrap();
        assert_eq!(r.matching("#").map(|m| m.payload.to_vec()).collect::<Vec<_>>(), vec![b"2".to_vec()]);
        assert_eq!(r.set(&Message::from_parts("b", b"x", QoS::AtMostOnce, true)), Err(RetainedFull));
        r.set(&Message::from_parts("a", b"", QoS::AtMostOnce, true)).unwrap();
        assert!(r.is_empty());
        r.set(&Message::from_parts("$SYS/x", b"1", QoS::AtMostOnce, true)).unwrap();
        assert_eq!(r.matching("#").count(), 0);
        assert_eq!(r.matching("$SYS/#").count(), 1);
    }
}
