//! The ack tracker: a pure state machine deciding which MQTT PUBLISH packets
//! may be acknowledged now.
//!
//! A message may be acknowledged only once everything it produced (readings
//! and quarantine rows) is committed. Batches commit out of arrival order
//! relative to the broker's view, but MQTT 3.1.1 wants PUBACKs in arrival
//! order, so a committed message waits until every earlier message of the same
//! connection is committed too.
//!
//! Acks never cross connections: a packet id is only meaningful on the
//! connection it arrived on, and after a reconnect without a resumed session
//! the broker may reuse it for a different message. Each connection is an
//! epoch; starting a new one forgets everything pending from the old one. The
//! broker redelivers those messages and idempotent writes absorb the repeat.

use std::collections::VecDeque;

use wardwatch_core::DeliveryTag;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    seq: u64,
    pkid: u16,
    committed: bool,
}

/// Tracks arrivals and commits for the current connection and releases packet
/// ids to acknowledge, in arrival order.
#[derive(Debug, Default)]
pub struct AckTracker {
    /// The current connection; tags from any other epoch are stale.
    epoch: u64,
    /// Messages of the current epoch not yet released, in arrival order.
    pending: VecDeque<Pending>,
    /// Commits seen for tags that were never registered (a wiring bug if non-zero).
    unknown_commits: u64,
}

impl AckTracker {
    /// A tracker with no connection yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new connection started: pending acks of older connections are dropped,
    /// never sent on the new one. Returns how many were dropped.
    pub fn connected(&mut self, epoch: u64) -> usize {
        let dropped = self.pending.len();
        self.epoch = epoch;
        self.pending.clear();
        dropped
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// A QoS 1 message arrived. Returns false (and records nothing) if it
    /// belongs to a connection that is no longer current.
    pub fn arrived(&mut self, tag: DeliveryTag, pkid: u16) -> bool {
        if tag.epoch != self.epoch {
            return false;
        }
        debug_assert!(self.pending.back().is_none_or(|p| p.seq < tag.seq));
        self.pending.push_back(Pending {
            seq: tag.seq,
            pkid,
            committed: false,
        });
        true
    }

    /// Everything these messages carried is committed. Returns the packet ids
    /// that may now be acknowledged, in arrival order.
    pub fn committed(&mut self, tags: impl IntoIterator<Item = DeliveryTag>) -> Vec<u16> {
        for tag in tags {
            if tag.epoch != self.epoch {
                continue; // stale: the broker will redeliver it on this connection
            }
            match self.pending.binary_search_by_key(&tag.seq, |p| p.seq) {
                Ok(i) => {
                    if let Some(p) = self.pending.get_mut(i) {
                        p.committed = true;
                    }
                }
                Err(_) => self.unknown_commits += 1,
            }
        }
        let mut ready = Vec::new();
        while self.pending.front().is_some_and(|p| p.committed) {
            if let Some(p) = self.pending.pop_front() {
                ready.push(p.pkid);
            }
        }
        ready
    }

    /// Messages of this connection still waiting for a commit or for an earlier one.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Commits for tags never registered in the current epoch.
    pub fn unknown_commits(&self) -> u64 {
        self.unknown_commits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(epoch: u64, seq: u64) -> DeliveryTag {
        DeliveryTag { epoch, seq }
    }

    #[test]
    fn nothing_is_acked_before_its_commit() {
        let mut t = AckTracker::new();
        t.connected(1);
        assert!(t.arrived(tag(1, 0), 10));
        assert!(t.committed([]).is_empty());
        assert_eq!(t.pending(), 1);
        assert_eq!(t.committed([tag(1, 0)]), vec![10]);
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn acks_are_released_in_arrival_order_even_when_commits_are_not() {
        let mut t = AckTracker::new();
        t.connected(1);
        for (seq, pkid) in [(0, 5), (1, 6), (2, 7)] {
            t.arrived(tag(1, seq), pkid);
        }
        assert!(t.committed([tag(1, 2)]).is_empty(), "2 waits for 0 and 1");
        assert!(t.committed([tag(1, 1)]).is_empty(), "1 waits for 0");
        assert_eq!(t.committed([tag(1, 0)]), vec![5, 6, 7]);
    }

    #[test]
    fn a_reconnect_drops_pending_acks_of_the_old_connection() {
        let mut t = AckTracker::new();
        t.connected(1);
        t.arrived(tag(1, 0), 1);
        t.arrived(tag(1, 1), 2);
        assert_eq!(t.connected(2), 2);
        // A late commit of the old connection must not ack packet id 1 on the new one,
        // where the broker may have reused id 1 for a different message.
        t.arrived(tag(2, 0), 1);
        assert!(t.committed([tag(1, 0), tag(1, 1)]).is_empty());
        assert_eq!(t.pending(), 1);
        assert_eq!(t.committed([tag(2, 0)]), vec![1]);
    }

    #[test]
    fn arrivals_from_a_stale_connection_are_refused() {
        let mut t = AckTracker::new();
        t.connected(3);
        assert!(!t.arrived(tag(2, 0), 1));
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn a_repeated_commit_is_harmless() {
        let mut t = AckTracker::new();
        t.connected(1);
        t.arrived(tag(1, 0), 9);
        assert_eq!(t.committed([tag(1, 0)]), vec![9]);
        assert!(t.committed([tag(1, 0)]).is_empty());
        assert_eq!(t.unknown_commits(), 1);
    }

    #[test]
    fn many_interleaved_batches_ack_every_message_exactly_once() {
        let mut t = AckTracker::new();
        t.connected(7);
        let n = 1000u64;
        for seq in 0..n {
            t.arrived(tag(7, seq), (seq % 65_535 + 1) as u16);
        }
        // Commit in batches of odd then even seqs.
        let mut acked = Vec::new();
        acked.extend(t.committed((0..n).filter(|s| s % 2 == 1).map(|s| tag(7, s))));
        assert!(acked.is_empty());
        acked.extend(t.committed((0..n).filter(|s| s % 2 == 0).map(|s| tag(7, s))));
        let expect: Vec<u16> = (0..n).map(|s| (s % 65_535 + 1) as u16).collect();
        assert_eq!(acked, expect);
    }
}
