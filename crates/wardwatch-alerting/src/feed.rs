//! The live feed of alert changes: what the ward board's SSE stream
//! carries. The engine follows `alert_events` into it (so changes made by
//! any process appear); the API filters it by the caller's teams.

use chrono::{DateTime, Utc};

/// One change to an alert, as the live feed (the ward board's SSE stream)
/// carries it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FeedEvent {
    /// The `alert_events` row.
    pub event_id: i64,
    /// `opened`, `evidence`, `worsened`, `escalated`, `acknowledged`,
    /// `resolved`, `snoozed`, `transferred`, `undeliverable`, `flag_cleared`.
    pub event: String,
    /// Who (`wardwatch` for the engine itself).
    pub actor: String,
    /// When.
    pub at: DateTime<Utc>,
    /// The alert as it stands.
    pub alert_id: i64,
    /// Whose.
    pub patient_id: String,
    /// Which team sees it.
    pub team_id: String,
    /// `clinical` or `technical`.
    pub kind: String,
    /// Severity.
    pub severity: wardwatch_core::Severity,
    /// State.
    pub state: wardwatch_core::AlertState,
    /// Tier.
    pub tier: i32,
    /// Rules behind it.
    pub rules: Vec<String>,
    /// In words.
    pub summary: String,
}

/// The in-process live feed of alert changes: bounded; a subscriber that
/// falls behind receives `Lagged` and must reload the current state (the
/// API's list) before following the feed again.
pub type AlertFeed = tokio::sync::broadcast::Sender<FeedEvent>;

/// Where the feed stands in `alert_events`: the highest id forwarded, and
/// the ids skipped below it because their transaction had not committed
/// when a later one was read. A skipped id is looked for again until
/// `gap_ttl` has passed (a rolled-back transaction leaves a gap for good),
/// and at most `max_gaps` are remembered, so an event that commits late
/// still reaches the board, once, and memory stays bounded.
#[derive(Debug, Clone)]
pub struct FeedCursor {
    after: i64,
    gaps: std::collections::BTreeMap<i64, DateTime<Utc>>,
    gap_ttl: chrono::Duration,
    max_gaps: usize,
}

impl FeedCursor {
    /// Starts after event `after`.
    pub fn new(after: i64, gap_ttl: chrono::Duration, max_gaps: usize) -> Self {
        Self {
            after,
            gaps: Default::default(),
            gap_ttl,
            max_gaps,
        }
    }

    /// The highest id forwarded.
    pub fn after(&self) -> i64 {
        self.after
    }

    /// Skipped ids still looked for.
    pub fn gaps(&self) -> Vec<i64> {
        self.gaps.keys().copied().collect()
    }

    /// Whether event `id`, just read, is forwarded: a new id is (and the
    /// ids it skipped become gaps); an old one only if it fills a gap.
    pub fn admit(&mut self, id: i64, now: DateTime<Utc>) -> bool {
        if id <= self.after {
            return self.gaps.remove(&id).is_some();
        }
        for missing in (self.after + 1)..id {
            if self.gaps.len() >= self.max_gaps {
                break;
            }
            self.gaps.insert(missing, now);
        }
        self.after = id;
        true
    }

    /// Forgets gaps first missed `gap_ttl` or longer ago.
    pub fn expire(&mut self, now: DateTime<Utc>) {
        let ttl = self.gap_ttl;
        self.gaps.retain(|_, first| now - *first < ttl);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).unwrap()
    }

    #[test]
    fn a_late_commit_is_forwarded_once_and_a_stale_id_never() {
        let mut c = FeedCursor::new(10, chrono::Duration::seconds(90), 100);
        assert!(c.admit(11, t(0)));
        assert!(c.admit(14, t(0)), "12 and 13 not committed yet");
        assert_eq!(c.gaps(), [12, 13]);
        assert!(c.admit(13, t(1)), "13 commits late");
        assert!(!c.admit(13, t(2)), "and is forwarded once");
        assert!(!c.admit(9, t(2)), "before the start");
        assert!(!c.admit(14, t(2)), "already forwarded");
        assert_eq!((c.after(), c.gaps()), (14, vec![12]));
    }

    #[test]
    fn gaps_are_forgotten_after_their_ttl_and_bounded() {
        let mut c = FeedCursor::new(0, chrono::Duration::seconds(90), 100);
        c.admit(3, t(0));
        c.expire(t(89));
        assert_eq!(c.gaps(), [1, 2]);
        c.expire(t(90));
        assert!(c.gaps().is_empty(), "a rolled-back id is given up");
        assert!(!c.admit(1, t(91)));
        let mut c = FeedCursor::new(0, chrono::Duration::seconds(90), 3);
        c.admit(1_000_000, t(0));
        assert_eq!(c.gaps(), [1, 2, 3]);
        assert_eq!(c.after(), 1_000_000);
    }
}
