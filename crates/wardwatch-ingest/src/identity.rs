//! What makes a message the same message again: its idempotency key, and
//! the receipt time a relative-time SenML pack was first resolved against
//! (so a redelivery resolves to the same instants, not to "now").

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

pub use wardwatch_core::reading::MessageKey;

/// The idempotency key of a message: same topic and payload, same key.
pub fn message_key(topic: &str, payload: &[u8]) -> MessageKey {
    let mut h = Sha256::new();
    h.update(topic.as_bytes());
    h.update([0u8]);
    h.update(payload);
    let digest = h.finalize();
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

/// The first receipt times of recent relative-time messages, bounded: the
/// oldest entry is forgotten first. The store keeps them durably; this covers
/// the window before the original is committed.
#[derive(Debug)]
pub struct RecentAnchors {
    map: HashMap<MessageKey, DateTime<Utc>>,
    order: VecDeque<MessageKey>,
    capacity: usize,
}

impl RecentAnchors {
    /// Remembers at most `capacity` messages.
    pub fn new(capacity: usize) -> Self {
        Self {
            map: HashMap::with_capacity(capacity.min(1 << 16)),
            order: VecDeque::with_capacity(capacity.min(1 << 16)),
            capacity: capacity.max(1),
        }
    }

    /// The anchor of a message seen recently.
    pub fn get(&self, key: &MessageKey) -> Option<DateTime<Utc>> {
        self.map.get(key).copied()
    }

    /// Records (or refreshes) a message's anchor.
    pub fn insert(&mut self, key: MessageKey, anchor: DateTime<Utc>) {
        if self.map.insert(key, anchor).is_none() {
            self.order.push_back(key);
            while self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }

    /// Messages remembered.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Nothing remembered.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_anchors_forget_the_oldest_first() {
        let t = |s| DateTime::from_timestamp(s, 0).unwrap();
        let mut r = RecentAnchors::new(2);
        r.insert([1; 16], t(1));
        r.insert([2; 16], t(2));
        r.insert([1; 16], t(10)); // refresh keeps its place
        assert_eq!(r.get(&[1; 16]), Some(t(10)));
        r.insert([3; 16], t(3));
        assert_eq!(r.len(), 2);
        assert_eq!(r.get(&[1; 16]), None);
        assert_eq!(r.get(&[2; 16]), Some(t(2)));
        assert_eq!(r.get(&[3; 16]), Some(t(3)));
    }

    #[test]
    fn message_keys_depend_on_topic_and_payload() {
        assert_eq!(message_key("a", b"x"), message_key("a", b"x"));
        assert_ne!(message_key("a", b"x"), message_key("b", b"x"));
        assert_ne!(message_key("a", b"x"), message_key("a", b"y"));
        assert_ne!(message_key("ab", b""), message_key("a", b"b"));
    }
}
