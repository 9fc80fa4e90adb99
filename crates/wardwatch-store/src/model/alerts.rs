//! Alert persistence: applying flag events to alerts with their outbox
//! deliveries in one transaction, claiming due escalations and deliveries
//! safely (`FOR UPDATE SKIP LOCKED`), and the clinicians' actions
//! (acknowledge, resolve, snooze), each recorded as an append-only event.
//!
//! The decisions themselves come from the caller (the alerting crate's pure
//! lifecycle), so this module only reads state, applies plans, and keeps
//! the invariants the database can enforce: one open alert per patient and
//! kind, one delivery per idempotency key.

use crate::StoreError;
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use wardwatch_core::flag::{AlertState, FlagState, Severity};

/// A flag event waiting to be applied to alerts.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct PendingFlagEvent {
    /// The event.
    pub event_id: i64,
    /// Its flag.
    pub flag_id: i64,
    /// Whose.
    pub patient_id: String,
    /// The patient's team now.
    pub team_id: String,
    /// Rule key.
    pub rule: String,
    /// A technical flag.
    pub technical: bool,
    /// Raised, updated or cleared.
    #[sqlx(try_from = "String")]
    pub state: FlagState,
    /// Severity.
    #[sqlx(try_from = "String")]
    pub severity: Severity,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// In words.
    pub summary: String,
    /// How bad, in the rule's terms (`evidence.measure`): NEWS2 total,
    /// distance past a limit, kg gained.
    pub measure: Option<f64>,
}

impl PendingFlagEvent {
    /// What an alert event records of the flag event behind it: one shape
    /// on every backend, since the trail is read across them.
    pub fn detail(&self) -> Value {
        serde_json::json!({
            "flag_id": self.flag_id, "rule": self.rule, "state": self.state,
            "severity": self.severity, "summary": self.summary, "event_id": self.event_id,
        })
    }
}

/// The open or acknowledged alert of a patient and kind.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct OpenAlertRow {
    /// Id.
    pub id: i64,
    /// Severity.
    #[sqlx(try_from = "String")]
    pub severity: Severity,
    /// Open or acknowledged.
    #[sqlx(try_from = "String")]
    pub state: AlertState,
    /// Tier.
    pub tier: i32,
    /// Round.
    pub round: i32,
    /// The policy snapshot.
    pub policy: Value,
    /// Open flags on it other than the event's own.
    pub other_open_flags: i64,
    /// When its latest grouped update is (or was) due.
    pub last_update_at: Option<DateTime<Utc>>,
    /// Per rule, the measure the team was last told about (a JSON object).
    pub paged: Value,
}

/// An active snooze.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct SnoozeRow {
    /// Severity it was set at.
    #[sqlx(try_from = "String")]
    pub severity: Severity,
    /// Until.
    pub until: DateTime<Utc>,
    /// The flag's measure when it was snoozed.
    pub measure: Option<f64>,
}

/// The longest snooze per flag severity (seconds; 0: none allowed), from
/// the team's policy, checked against the flag's severity as stored, in
/// the snooze's own transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnoozeLimits {
    /// Low.
    pub low: i64,
    /// Medium.
    pub medium: i64,
    /// High.
    pub high: i64,
    /// Emergency.
    pub emergency: i64,
    /// When the snooze is asked for.
    pub now: DateTime<Utc>,
}

impl SnoozeLimits {
    /// Refuses a snooze beyond the limit for `severity`.
    pub fn check(&self, severity: &str, until: DateTime<Utc>) -> Result<(), StoreError> {
        let max = match severity {
            "low" => self.low,
            "medium" => self.medium,
            "high" => self.high,
            _ => self.emergency,
        };
        if max <= 0 {
            return Err(StoreError::Rejected(format!(
                "a {severity} flag cannot be snoozed under this team's policy"
            )));
        }
        if until > self.now + Duration::seconds(max) {
            return Err(StoreError::Rejected(format!(
                "a {severity} flag may be snoozed for at most {max} s under this team's policy"
            )));
        }
        Ok(())
    }
}

/// A delivery to create. The store prefixes `key_suffix` with the alert id.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    /// `page`, `update` or `undeliverable`.
    pub purpose: &'static str,
    /// Tier.
    pub tier: i32,
    /// Round.
    pub round: i32,
    /// Channel name.
    pub channel: &'static str,
    /// The target as JSON.
    pub target: String,
    /// The idempotency key after `alert-{id}:`.
    pub key_suffix: String,
    /// Not before.
    pub not_before: DateTime<Utc>,
}

/// What to do with one flag event.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertAction {
    /// Open an alert.
    Open {
        /// `clinical` or `technical`.
        kind: &'static str,
        /// Severity.
        severity: Severity,
        /// Starting tier.
        tier: i32,
        /// The policy snapshot.
        policy: Value,
        /// When to escalate.
        next_escalation_at: DateTime<Utc>,
        /// Pages.
        deliveries: Vec<NewDelivery>,
        /// The measures paged (JSON object).
        paged: Value,
    },
    /// Raise the alert's severity, or page a worse measure, and re-page.
    Worsen {
        /// Severity.
        severity: Severity,
        /// Tier.
        tier: i32,
        /// Round.
        round: i32,
        /// When to escalate.
        next_escalation_at: DateTime<Utc>,
        /// Pages.
        deliveries: Vec<NewDelivery>,
        /// The measures paged (JSON object).
        paged: Value,
    },
    /// Join as evidence; maybe one grouped update.
    Join {
        /// Update deliveries (created only if none is pending).
        deliveries: Vec<NewDelivery>,
        /// The measures told, when they change.
        paged: Option<Value>,
    },
    /// Record a clear; maybe resolve.
    Clear {
        /// Resolve the alert.
        resolve: bool,
    },
    /// Snoozed: no alert.
    Suppressed {
        /// Until.
        until: DateTime<Utc>,
    },
    /// Nothing.
    Nothing,
}

/// What applying a batch changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppliedEvents {
    /// Events applied.
    pub events: u64,
    /// Alerts opened, with their severity and first rule.
    pub opened: Vec<(i64, String, String)>,
    /// Alerts whose state or severity changed (for live feeds).
    pub changed: Vec<i64>,
    /// Events held back by a snooze.
    pub suppressed: u64,
}

/// An alert whose escalation (open) or reminder (acknowledged) is due, or
/// an acknowledged alert whose reminder is not scheduled yet.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DueAlert {
    /// Id.
    pub id: i64,
    /// Team.
    pub team_id: String,
    /// Severity.
    #[sqlx(try_from = "String")]
    pub severity: Severity,
    /// Open or acknowledged.
    #[sqlx(try_from = "String")]
    pub state: AlertState,
    /// Tier.
    pub tier: i32,
    /// Round.
    pub round: i32,
    /// Policy snapshot.
    pub policy: Value,
    /// When it was acknowledged, if it was.
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// The deadline that fell due (`None`: none scheduled yet).
    pub next_escalation_at: Option<DateTime<Utc>>,
}

/// An escalation step to apply.
#[derive(Debug, Clone, PartialEq)]
pub struct EscalationApply {
    /// New tier.
    pub tier: i32,
    /// New round.
    pub round: i32,
    /// Next deadline.
    pub next_escalation_at: DateTime<Utc>,
    /// Pages.
    pub deliveries: Vec<NewDelivery>,
    /// The alert event to record (`escalated`, `reminded`), or none for a
    /// step that only schedules.
    pub event: Option<&'static str>,
}

/// A claimed delivery with what its message needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedDelivery {
    /// Delivery id.
    pub id: i64,
    /// Its alert.
    pub alert_id: i64,
    /// Purpose.
    pub purpose: String,
    /// Tier.
    pub tier: i32,
    /// Round.
    pub round: i32,
    /// Channel.
    pub channel: String,
    /// Target JSON.
    pub target: String,
    /// Idempotency key.
    pub key: String,
    /// Attempts so far, this one included.
    pub attempts: i32,
    /// When it was created (for time-to-deliver).
    pub created_at: DateTime<Utc>,
    /// The alert as it stands.
    pub alert: AlertRow,
}

/// An alert as listed and as notified.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AlertRow {
    /// Id.
    pub id: i64,
    /// Patient.
    pub patient_id: String,
    /// Team.
    pub team_id: String,
    /// `clinical` or `technical`.
    pub kind: String,
    /// Severity.
    #[sqlx(try_from = "String")]
    pub severity: Severity,
    /// State.
    #[sqlx(try_from = "String")]
    pub state: AlertState,
    /// Tier.
    pub tier: i32,
    /// The tier's name from the policy snapshot.
    pub tier_name: String,
    /// Summary (the latest flag's).
    pub summary: String,
    /// Opened.
    pub opened_at: DateTime<Utc>,
    /// Rules of its flags (a JSON array on both backends).
    #[sqlx(json)]
    pub rules: Vec<String>,
    /// Acknowledged by.
    pub acknowledged_by: Option<String>,
}

/// One `alert_events` row with its alert as it stands: what the live feed
/// follows.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AlertEventRow {
    /// The event's id (increasing, with gaps from rolled-back transactions).
    #[sqlx(rename = "event_id")]
    pub id: i64,
    /// `opened`, `evidence`, `worsened`, `escalated`, `acknowledged`, ...
    pub event: String,
    /// Who (`wardwatch` for the engine itself).
    #[sqlx(rename = "event_actor")]
    pub actor: String,
    /// When.
    #[sqlx(rename = "event_at")]
    pub at: DateTime<Utc>,
    /// The alert now (its columns under their own names).
    #[sqlx(flatten)]
    pub alert: AlertRow,
}

/// An acknowledgement, wherever it was made (CLI, API, another engine):
/// what the time-to-acknowledge histogram records.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Acknowledgement {
    /// The alert's team.
    pub team_id: String,
    /// Seconds from opening to acknowledgement.
    pub seconds: f64,
    /// When it was acknowledged.
    pub at: DateTime<Utc>,
}

/// Which states an alert list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFilter {
    /// Only alerts in this state.
    Is(AlertState),
    /// Open or acknowledged: what a ward board shows, however many are
    /// resolved.
    Unresolved,
}

impl StateFilter {
    /// The name an operator or a query string uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Is(state) => state.as_str(),
            Self::Unresolved => "unresolved",
        }
    }

    /// Parses `open`, `acknowledged`, `resolved` or `unresolved`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "unresolved" => Some(Self::Unresolved),
            _ => AlertState::parse(s).map(Self::Is),
        }
    }
}

/// Which alerts to list; `None` fields do not filter.
#[derive(Debug, Clone, Copy, Default)]
pub struct AlertFilter<'a> {
    /// Only these states.
    pub state: Option<StateFilter>,
    /// Only these teams' alerts (`None`: every team).
    pub teams: Option<&'a [String]>,
    /// Only this severity.
    pub severity: Option<Severity>,
}

pub(crate) fn nonempty(s: &str, what: &str) -> Result<String, StoreError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(StoreError::Rejected(format!("{what} must not be empty")));
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_filters_read_back_their_names_and_refuse_others() {
        for name in ["open", "acknowledged", "resolved", "unresolved"] {
            let f = StateFilter::parse(name).map(StateFilter::as_str);
            assert_eq!(f, Some(name));
        }
        assert_eq!(
            StateFilter::parse("open"),
            Some(StateFilter::Is(AlertState::Open))
        );
        for other in ["", "Open", "closed", "all"] {
            assert_eq!(StateFilter::parse(other), None, "{other:?}");
        }
    }
}
