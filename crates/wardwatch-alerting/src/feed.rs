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
