//! The alert lifecycle as pure decisions: given a flag change (or a due
//! escalation), the alert as it stands, and the time, what should happen.
//! The store applies a [`Plan`] in one transaction with its deliveries
//! (the outbox), so nothing here does I/O and every rule is unit-tested
//! with explicit times.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use wardwatch_core::flag::{FlagState, Severity};

use crate::policy::{EscalationPolicy, Target, Team};

/// Clinical alerts carry patient deterioration; technical ones (a silent
/// device, undeliverable notifications) never merge into a clinical one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// Deterioration.
    Clinical,
    /// Device or delivery problems.
    Technical,
}

impl AlertKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Clinical => "clinical",
            Self::Technical => "technical",
        }
    }
}

pub use wardwatch_core::flag::AlertState;

/// How a resolved alert ended: what a clinical-safety review asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Reviewed; nothing needed.
    ReviewedNoAction,
    /// Advice given to the patient.
    AdviceGiven,
    /// A visit arranged.
    VisitArranged,
    /// Escalated to emergency services.
    EscalatedEmergency,
    /// A device or data problem, not the patient.
    DeviceOrDataIssue,
    /// Something else (a note says what).
    Other,
}

impl Outcome {
    /// Every outcome, for help texts.
    pub const ALL: [Outcome; 6] = [
        Self::ReviewedNoAction,
        Self::AdviceGiven,
        Self::VisitArranged,
        Self::EscalatedEmergency,
        Self::DeviceOrDataIssue,
        Self::Other,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReviewedNoAction => "reviewed_no_action",
            Self::AdviceGiven => "advice_given",
            Self::VisitArranged => "visit_arranged",
            Self::EscalatedEmergency => "escalated_emergency",
            Self::DeviceOrDataIssue => "device_or_data_issue",
            Self::Other => "other",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// Why a notification is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// Someone must act: opening, escalation, a severity increase, a repeat.
    Page,
    /// More evidence for an alert already paged (grouped).
    Update,
    /// Every target of a tier failed: the team's fallback is told.
    Undeliverable,
    /// Acknowledged but not resolved for the policy's `ack_timeout`: the
    /// tier is reminded (escalation does not restart).
    Reminder,
}

impl Purpose {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Page => "page",
            Self::Update => "update",
            Self::Undeliverable => "undeliverable",
            Self::Reminder => "reminder",
        }
    }
}

/// One notification to create in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Why.
    pub purpose: Purpose,
    /// The tier it belongs to.
    pub tier: usize,
    /// Which notification of that tier (repeats and re-pages count up).
    pub round: i32,
    /// To whom.
    pub target: Target,
    /// Not before this time (grouped updates wait for their window).
    pub not_before: DateTime<Utc>,
}

/// A flag change, as the alerting sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagInput {
    /// Rule key (`news2`, `threshold:spo2:0`, `no_data`, ...).
    pub rule: String,
    /// A technical flag.
    pub technical: bool,
    /// Raised, updated or cleared.
    pub state: FlagState,
    /// Its severity.
    pub severity: Severity,
    /// How bad, in the rule's own terms (NEWS2 total; how far past the
    /// limit; kg gained): compared with what was last paged.
    pub measure: Option<f64>,
}

impl FlagInput {
    /// Which kind of alert it belongs to.
    pub fn kind(&self) -> AlertKind {
        if self.technical {
            AlertKind::Technical
        } else {
            AlertKind::Clinical
        }
    }
}

/// The open (or acknowledged) alert for the flag's patient and kind.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSnapshot {
    /// Its id.
    pub id: i64,
    /// Current severity (the highest of its flags).
    pub severity: Severity,
    /// Open or acknowledged.
    pub state: AlertState,
    /// Current tier.
    pub tier: usize,
    /// Notifications of the current tier so far.
    pub round: i32,
    /// The policy as it stood when the alert opened.
    pub policy: EscalationPolicy,
    /// Flags still open on it, other than the one in hand.
    pub other_open_flags: usize,
    /// Per rule, the measure the team was last told about.
    pub paged: BTreeMap<String, f64>,
}

/// An active snooze of the flag's rule for its patient.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snooze {
    /// The severity it was set at: a worse one breaks through.
    pub severity: Severity,
    /// Until when.
    pub until: DateTime<Utc>,
    /// The flag's measure when snoozed: worse by the policy's margin
    /// breaks through too.
    pub measure: Option<f64>,
}

/// What to do about a flag change.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Open a new alert and page its starting tier now.
    Open {
        /// Clinical or technical.
        kind: AlertKind,
        /// The flag's severity.
        severity: Severity,
        /// Starting tier.
        tier: usize,
        /// When to escalate if nobody acknowledges.
        next_escalation_at: DateTime<Utc>,
        /// Pages to create.
        notices: Vec<Notice>,
        /// The measures paged, per rule.
        paged: BTreeMap<String, f64>,
    },
    /// The alert worsens: its severity rises (re-paged at once at the
    /// higher starting tier), or a measure got worse by the policy's margin
    /// since it was last paged (re-paged at the current tier). An
    /// acknowledged alert opens again: it needs a new look.
    Worsen {
        /// New severity.
        severity: Severity,
        /// New tier.
        tier: usize,
        /// New round at that tier.
        round: i32,
        /// When to escalate next.
        next_escalation_at: DateTime<Utc>,
        /// Pages to create.
        notices: Vec<Notice>,
        /// The measures paged, per rule.
        paged: BTreeMap<String, f64>,
    },
    /// The flag joins the alert as evidence; a newly raised flag also sends
    /// one grouped update (at most one pending per alert).
    Join {
        /// Send an update to these (empty: evidence only).
        notices: Vec<Notice>,
        /// The measures told, when they change (a newly joined rule).
        paged: Option<BTreeMap<String, f64>>,
    },
    /// A cleared flag is recorded on the alert; maybe it resolves it.
    Clear {
        /// Resolve the alert (its rule auto-resolves and nothing else is open).
        resolve: bool,
    },
    /// Snoozed: no alert; recorded on the flag event.
    Suppressed {
        /// Until when.
        until: DateTime<Utc>,
    },
    /// Nothing to do (a clear with no open alert).
    Nothing,
}

/// The rule's family (one home: `wardwatch_core::flag`).
pub use wardwatch_core::flag::rule_family;

fn pages(
    policy: &EscalationPolicy,
    mqtt: bool,
    tier: usize,
    round: i32,
    severity: Severity,
    now: DateTime<Utc>,
) -> Vec<Notice> {
    let mut targets = Team::tier_targets(policy, tier, mqtt);
    if severity == Severity::Emergency {
        for t in &policy.emergency_targets {
            if !targets.contains(t) {
                targets.push(t.clone());
            }
        }
    }
    targets
        .into_iter()
        .map(|target| Notice {
            purpose: Purpose::Page,
            tier,
            round,
            target,
            not_before: now,
        })
        .collect()
}

/// How long a tier waits for an acknowledgement; on the last tier, the
/// interval between repeats.
fn wait_of(policy: &EscalationPolicy, tier: usize) -> Duration {
    match policy.tiers.get(tier) {
        Some(t) if tier + 1 < policy.tiers.len() => Duration::seconds(t.wait.secs()),
        _ => Duration::seconds(policy.repeat.secs()),
    }
}

/// Decides what a flag change does. `last_update_at` is when the alert's
/// last grouped update was (or is due to be) sent.
pub fn plan_flag(
    team: &Team,
    existing: Option<&AlertSnapshot>,
    flag: &FlagInput,
    snooze: Option<Snooze>,
    last_update_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Plan {
    if flag.state == FlagState::Cleared {
        return match existing {
            None => Plan::Nothing,
            Some(a) => Plan::Clear {
                resolve: a.other_open_flags == 0
                    && a.policy
                        .auto_resolve
                        .iter()
                        .any(|f| f == rule_family(&flag.rule)),
            },
        };
    }
    let margin = |policy: &EscalationPolicy| policy.worsening.margin(&flag.rule);
    if let Some(s) = snooze.filter(|s| s.until > now && flag.severity <= s.severity) {
        // A snooze never hides worsening: a higher severity (above), or the
        // same flag worse by the policy's margin than when it was snoozed.
        let worse = match (flag.measure, s.measure, margin(&team.escalation)) {
            (Some(m), Some(at_snooze), Some(d)) => m >= at_snooze + d,
            _ => false,
        };
        if !worse {
            return Plan::Suppressed { until: s.until };
        }
    }
    let Some(a) = existing.filter(|a| a.state != AlertState::Resolved) else {
        let policy = &team.escalation;
        let tier = policy.start_tier.of(flag.severity);
        return Plan::Open {
            kind: flag.kind(),
            severity: flag.severity,
            tier,
            next_escalation_at: now + wait_of(policy, tier),
            notices: pages(policy, team.mqtt, tier, 0, flag.severity, now),
            paged: flag
                .measure
                .map(|m| BTreeMap::from([(flag.rule.clone(), m)]))
                .unwrap_or_default(),
        };
    };
    let policy = &a.policy;
    let with_measure = || {
        let mut paged = a.paged.clone();
        if let Some(m) = flag.measure {
            paged.insert(flag.rule.clone(), m);
        }
        paged
    };
    if flag.severity > a.severity {
        let tier = a.tier.max(policy.start_tier.of(flag.severity));
        let round = if tier == a.tier { a.round + 1 } else { 0 };
        return Plan::Worsen {
            severity: flag.severity,
            tier,
            round,
            next_escalation_at: now + wait_of(policy, tier),
            notices: pages(policy, team.mqtt, tier, round, flag.severity, now),
            paged: with_measure(),
        };
    }
    // Worse inside the same severity: NEWS2 up by the policy's delta, a
    // value further past its limit by the vital's margin, since last paged.
    let worse = match (flag.measure, a.paged.get(&flag.rule), margin(policy)) {
        (Some(m), Some(told), Some(d)) => flag.state != FlagState::Cleared && m >= told + d,
        _ => false,
    };
    if worse {
        let (tier, round) = (a.tier, a.round + 1);
        return Plan::Worsen {
            severity: a.severity,
            tier,
            round,
            next_escalation_at: now + wait_of(policy, tier),
            notices: pages(policy, team.mqtt, tier, round, a.severity, now),
            paged: with_measure(),
        };
    }
    let newly_told =
        (!a.paged.contains_key(&flag.rule) && flag.measure.is_some()).then(with_measure);
    if flag.state != FlagState::Raised {
        // New evidence for a rule already on the alert: recorded, not sent.
        return Plan::Join {
            notices: Vec::new(),
            paged: newly_told,
        };
    }
    // A new rule joins the episode: one grouped update to those already
    // paged, no sooner than the group window after the last one.
    let window = Duration::seconds(policy.group_window.secs());
    let not_before = last_update_at.map_or(now, |t| (t + window).max(now));
    let notices = Team::tier_targets(policy, a.tier, team.mqtt)
        .into_iter()
        .map(|target| Notice {
            purpose: Purpose::Update,
            tier: a.tier,
            round: a.round,
            target,
            not_before,
        })
        .collect();
    Plan::Join {
        notices,
        paged: newly_told,
    }
}

/// What a due escalation does.
#[derive(Debug, Clone, PartialEq)]
pub struct Escalation {
    /// The tier now.
    pub tier: usize,
    /// The round at that tier.
    pub round: i32,
    /// When to escalate again.
    pub next_escalation_at: DateTime<Utc>,
    /// Pages to create.
    pub notices: Vec<Notice>,
}

/// An alert's deadline passed. Open (nobody acknowledged): page the next
/// tier, or on the last tier page it again, and after the policy's
/// `fallback_after_repeats` repeats tell the team's fallback too.
/// Acknowledged but not resolved for `ack_timeout`: remind the tier.
#[allow(clippy::too_many_arguments)]
pub fn plan_escalation(
    policy: &EscalationPolicy,
    mqtt: bool,
    tier: usize,
    round: i32,
    severity: Severity,
    state: AlertState,
    fallback: &Target,
    now: DateTime<Utc>,
) -> Escalation {
    if state == AlertState::Acknowledged {
        let round = round + 1;
        let notices = Team::tier_targets(policy, tier, mqtt)
            .into_iter()
            .map(|target| Notice {
                purpose: Purpose::Reminder,
                tier,
                round,
                target,
                not_before: now,
            })
            .collect();
        return Escalation {
            tier,
            round,
            next_escalation_at: now + Duration::seconds(policy.ack_timeout.secs()),
            notices,
        };
    }
    let last = policy.tiers.len().saturating_sub(1);
    let (tier, round) = if tier < last {
        (tier + 1, 0)
    } else {
        (last, round + 1)
    };
    let mut notices = pages(policy, mqtt, tier, round, severity, now);
    if tier == last
        && round == policy.fallback_after_repeats
        && !notices.iter().any(|n| n.target == *fallback)
    {
        notices.push(Notice {
            purpose: Purpose::Page,
            tier,
            round,
            target: fallback.clone(),
            not_before: now,
        });
    }
    Escalation {
        tier,
        round,
        next_escalation_at: now + wait_of(policy, tier),
        notices,
    }
}

/// The idempotency key of one notification: the same step to the same
/// target always has the same key, so a receiver can drop a repeat.
/// `step` distinguishes grouped updates (the flag event that caused them).
pub fn idempotency_key(alert_id: i64, n: &Notice, step: Option<i64>) -> String {
    format!("alert-{alert_id}:{}", key_suffix(n, step))
}

/// [`idempotency_key`] without the alert id (the store adds it once the
/// alert has one).
pub fn key_suffix(n: &Notice, step: Option<i64>) -> String {
    let step = step.map_or(String::new(), |s| format!("event-{s}:"));
    format!(
        "{}:tier-{}:round-{}:{step}{}:{}",
        n.purpose.as_str(),
        n.tier,
        n.round,
        n.target.channel(),
        short_hash(&format!("{:?}", n.target))
    )
}

fn short_hash(s: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(s.as_bytes());
    hex::encode(&d[..6])
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::policy::parse;

    fn team() -> Team {
        parse(
            Path::new("t.toml"),
            r#"
id = "ward-a"
fallback = { channel = "email", address = "duty@example.nhs.uk" }
[escalation]
repeat = "5m"
start_tier = { low = 0, medium = 0, high = 1, emergency = 2 }
emergency_targets = [{ channel = "sms", phone = "+447700900000" }]
[[escalation.tiers]]
name = "nurse"
wait = "15m"
targets = [{ channel = "webhook", url = "https://x/1", secret_env = "S" }]
[[escalation.tiers]]
name = "nurse in charge"
wait = "10m"
targets = [{ channel = "webhook", url = "https://x/2", secret_env = "S" }]
[[escalation.tiers]]
name = "consultant"
wait = "10m"
targets = [{ channel = "email", address = "c@example.nhs.uk" }]
"#,
        )
        .unwrap()
    }

    fn fallback() -> Target {
        team().fallback
    }

    fn measured(rule: &str, state: FlagState, severity: Severity, m: f64) -> FlagInput {
        FlagInput {
            measure: Some(m),
            ..flag(rule, state, severity)
        }
    }

    #[test]
    fn a_snooze_breaks_through_on_a_worse_value_of_the_same_severity() {
        // SpO2 87 against a limit of 88 (1 point past it), snoozed at high.
        let s = Snooze {
            severity: Severity::High,
            until: t0() + Duration::hours(2),
            measure: Some(1.0),
        };
        let rule = "threshold:spo2:0";
        let a_bit_worse = measured(rule, FlagState::Updated, Severity::High, 3.0);
        assert_eq!(
            plan_flag(&team(), None, &a_bit_worse, Some(s), None, t0()),
            Plan::Suppressed { until: s.until },
            "85: 2 points worse, under the 3-point SpO2 margin"
        );
        // 75: 13 points past the limit: pages, snooze or not.
        let much_worse = measured(rule, FlagState::Updated, Severity::High, 13.0);
        assert!(matches!(
            plan_flag(&team(), None, &much_worse, Some(s), None, t0()),
            Plan::Open { .. }
        ));
        // A NEWS2 rise of 2 breaks through a NEWS2 snooze.
        let n = Snooze {
            measure: Some(5.0),
            ..s
        };
        let risen = measured("news2", FlagState::Updated, Severity::High, 7.0);
        assert!(matches!(
            plan_flag(&team(), None, &risen, Some(n), None, t0()),
            Plan::Open { .. }
        ));
    }

    #[test]
    fn worsening_inside_an_open_alert_repages_it_by_the_policys_margins() {
        let mut a = open_alert(Severity::Emergency, 2, AlertState::Acknowledged);
        a.round = 1;
        a.paged.insert("news2".into(), 7.0);
        a.paged.insert("threshold:spo2:0".into(), 1.0);
        // NEWS2 7 -> 8: recorded, not paged; 7 -> 9 (a rise of 2): paged.
        let p = plan_flag(
            &team(),
            Some(&a),
            &measured("news2", FlagState::Updated, Severity::Emergency, 8.0),
            None,
            None,
            t0(),
        );
        assert!(
            matches!(p, Plan::Join { ref notices, .. } if notices.is_empty()),
            "{p:?}"
        );
        let p = plan_flag(
            &team(),
            Some(&a),
            &measured("news2", FlagState::Updated, Severity::Emergency, 9.0),
            None,
            None,
            t0(),
        );
        let Plan::Worsen {
            severity,
            tier,
            round,
            notices,
            paged,
            ..
        } = p
        else {
            panic!("{p:?}")
        };
        assert_eq!((severity, tier, round), (Severity::Emergency, 2, 2));
        assert!(notices.iter().all(|n| n.purpose == Purpose::Page) && !notices.is_empty());
        assert_eq!(paged.get("news2"), Some(&9.0));
        // SpO2 from 87 to 75 (1 -> 13 points past 88): paged.
        let p = plan_flag(
            &team(),
            Some(&a),
            &measured(
                "threshold:spo2:0",
                FlagState::Updated,
                Severity::Emergency,
                13.0,
            ),
            None,
            None,
            t0(),
        );
        assert!(matches!(p, Plan::Worsen { .. }), "{p:?}");
        // A rule not paged before: its first measure is remembered.
        let p = plan_flag(
            &team(),
            Some(&a),
            &measured(
                "threshold:heart_rate:0",
                FlagState::Raised,
                Severity::Medium,
                5.0,
            ),
            None,
            None,
            t0(),
        );
        let Plan::Join {
            paged: Some(paged), ..
        } = p
        else {
            panic!("{p:?}")
        };
        assert_eq!(paged.get("threshold:heart_rate:0"), Some(&5.0));
    }

    #[test]
    fn an_acknowledged_alert_is_reminded_after_the_ack_timeout_and_the_fallback_told_after_n_repeats(
    ) {
        let policy = team().escalation;
        let e = plan_escalation(
            &policy,
            true,
            1,
            0,
            Severity::High,
            AlertState::Acknowledged,
            &fallback(),
            t0(),
        );
        assert_eq!(
            (e.tier, e.round),
            (1, 1),
            "no escalation: a reminder at the same tier"
        );
        assert_eq!(e.next_escalation_at, t0() + Duration::hours(4));
        assert!(!e.notices.is_empty() && e.notices.iter().all(|n| n.purpose == Purpose::Reminder));
        // The last tier's third unacknowledged repeat also tells the fallback.
        let told = |round| {
            plan_escalation(
                &policy,
                true,
                2,
                round,
                Severity::High,
                AlertState::Open,
                &fallback(),
                t0(),
            )
            .notices
            .iter()
            .any(|n| n.target == fallback())
        };
        assert!(!told(0) && !told(1));
        assert!(told(2), "round 3");
        assert!(!told(3), "once");
    }

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn flag(rule: &str, state: FlagState, severity: Severity) -> FlagInput {
        FlagInput {
            rule: rule.into(),
            technical: rule == "no_data",
            state,
            severity,
            measure: None,
        }
    }

    fn open_alert(severity: Severity, tier: usize, state: AlertState) -> AlertSnapshot {
        AlertSnapshot {
            id: 7,
            severity,
            state,
            tier,
            round: 0,
            policy: team().escalation,
            other_open_flags: 0,
            paged: BTreeMap::new(),
        }
    }

    #[test]
    fn a_first_flag_opens_an_alert_at_its_severitys_tier_and_pages_now() {
        let p = plan_flag(
            &team(),
            None,
            &flag("news2", FlagState::Raised, Severity::High),
            None,
            None,
            t0(),
        );
        let Plan::Open {
            kind,
            tier,
            next_escalation_at,
            notices,
            ..
        } = p
        else {
            panic!("{p:?}")
        };
        assert_eq!((kind, tier), (AlertKind::Clinical, 1));
        assert_eq!(next_escalation_at, t0() + Duration::minutes(10));
        let channels: Vec<_> = notices.iter().map(|n| n.target.channel()).collect();
        assert_eq!(channels, vec!["mqtt", "webhook"]);
        assert!(notices
            .iter()
            .all(|n| n.purpose == Purpose::Page && n.not_before == t0()));
    }

    #[test]
    fn emergency_also_notifies_the_emergency_targets() {
        let p = plan_flag(
            &team(),
            None,
            &flag("news2", FlagState::Raised, Severity::Emergency),
            None,
            None,
            t0(),
        );
        let Plan::Open { tier, notices, .. } = p else {
            panic!()
        };
        assert_eq!(tier, 2);
        assert!(notices.iter().any(|n| n.target.channel() == "sms"));
    }

    #[test]
    fn a_silent_device_opens_a_technical_alert() {
        let p = plan_flag(
            &team(),
            None,
            &flag("no_data", FlagState::Raised, Severity::Medium),
            None,
            None,
            t0(),
        );
        assert!(matches!(
            p,
            Plan::Open {
                kind: AlertKind::Technical,
                ..
            }
        ));
    }

    #[test]
    fn a_worse_severity_repages_at_once_at_the_higher_tier_even_when_acknowledged() {
        let a = open_alert(Severity::Medium, 0, AlertState::Acknowledged);
        let p = plan_flag(
            &team(),
            Some(&a),
            &flag("threshold:spo2:0", FlagState::Raised, Severity::Emergency),
            None,
            None,
            t0(),
        );
        let Plan::Worsen {
            severity,
            tier,
            round,
            notices,
            ..
        } = p
        else {
            panic!("{p:?}")
        };
        assert_eq!((severity, tier, round), (Severity::Emergency, 2, 0));
        assert!(notices.iter().all(|n| n.purpose == Purpose::Page));
    }

    #[test]
    fn the_same_or_lower_severity_joins_and_groups_updates() {
        let a = open_alert(Severity::High, 1, AlertState::Open);
        // A new rule: one update, now if none went out recently...
        let p = plan_flag(
            &team(),
            Some(&a),
            &flag(
                "threshold:heart_rate:0",
                FlagState::Raised,
                Severity::Medium,
            ),
            None,
            None,
            t0(),
        );
        let Plan::Join { notices, .. } = p else {
            panic!()
        };
        assert!(
            !notices.is_empty()
                && notices
                    .iter()
                    .all(|n| n.purpose == Purpose::Update && n.not_before == t0())
        );
        // ... or at the end of the window after the last update.
        let last = t0() - Duration::seconds(10);
        let p = plan_flag(
            &team(),
            Some(&a),
            &flag(
                "threshold:heart_rate:0",
                FlagState::Raised,
                Severity::Medium,
            ),
            None,
            Some(last),
            t0(),
        );
        let Plan::Join { notices, .. } = p else {
            panic!()
        };
        assert!(notices
            .iter()
            .all(|n| n.not_before == last + Duration::seconds(30)));
        // More evidence for a rule already on the alert sends nothing.
        let p = plan_flag(
            &team(),
            Some(&a),
            &flag("news2", FlagState::Updated, Severity::High),
            None,
            None,
            t0(),
        );
        assert_eq!(
            p,
            Plan::Join {
                notices: vec![],
                paged: None
            }
        );
    }

    #[test]
    fn a_snooze_holds_back_the_same_severity_but_not_a_worse_one() {
        let s = Snooze {
            severity: Severity::Medium,
            until: t0() + Duration::hours(2),
            measure: None,
        };
        let same = plan_flag(
            &team(),
            None,
            &flag("news2", FlagState::Raised, Severity::Medium),
            Some(s),
            None,
            t0(),
        );
        assert_eq!(same, Plan::Suppressed { until: s.until });
        let worse = plan_flag(
            &team(),
            None,
            &flag("news2", FlagState::Raised, Severity::High),
            Some(s),
            None,
            t0(),
        );
        assert!(matches!(worse, Plan::Open { .. }), "breaks through");
        let expired = plan_flag(
            &team(),
            None,
            &flag("news2", FlagState::Raised, Severity::Medium),
            Some(s),
            None,
            s.until,
        );
        assert!(matches!(expired, Plan::Open { .. }));
    }

    #[test]
    fn clearing_resolves_only_rules_that_auto_resolve_and_only_when_nothing_else_is_open() {
        let mut a = open_alert(Severity::Medium, 0, AlertState::Open);
        let p = plan_flag(
            &team(),
            Some(&a),
            &flag("news2", FlagState::Cleared, Severity::Medium),
            None,
            None,
            t0(),
        );
        assert_eq!(
            p,
            Plan::Clear { resolve: false },
            "NEWS2 does not auto-resolve by default"
        );
        let p = plan_flag(
            &team(),
            Some(&a),
            &flag("no_data", FlagState::Cleared, Severity::Medium),
            None,
            None,
            t0(),
        );
        assert_eq!(p, Plan::Clear { resolve: true });
        a.other_open_flags = 1;
        let p = plan_flag(
            &team(),
            Some(&a),
            &flag("no_data", FlagState::Cleared, Severity::Medium),
            None,
            None,
            t0(),
        );
        assert_eq!(p, Plan::Clear { resolve: false });
        assert_eq!(
            plan_flag(
                &team(),
                None,
                &flag("news2", FlagState::Cleared, Severity::Low),
                None,
                None,
                t0()
            ),
            Plan::Nothing
        );
    }

    #[test]
    fn escalation_climbs_the_tiers_then_repeats_the_last_on_its_interval() {
        let policy = team().escalation;
        let e = plan_escalation(
            &policy,
            true,
            0,
            0,
            Severity::Medium,
            AlertState::Open,
            &fallback(),
            t0(),
        );
        assert_eq!((e.tier, e.round), (1, 0));
        assert_eq!(e.next_escalation_at, t0() + Duration::minutes(10));
        let e = plan_escalation(
            &policy,
            true,
            1,
            0,
            Severity::Medium,
            AlertState::Open,
            &fallback(),
            t0(),
        );
        assert_eq!((e.tier, e.round), (2, 0));
        assert_eq!(
            e.next_escalation_at,
            t0() + Duration::minutes(5),
            "last tier: repeat interval"
        );
        let e = plan_escalation(
            &policy,
            true,
            2,
            0,
            Severity::Medium,
            AlertState::Open,
            &fallback(),
            t0(),
        );
        assert_eq!((e.tier, e.round), (2, 1));
        assert!(e.notices.iter().any(|n| n.target.channel() == "email"));
    }

    #[test]
    fn idempotency_keys_identify_the_step_and_the_target() {
        let n = |tier, round, url: &str| Notice {
            purpose: Purpose::Page,
            tier,
            round,
            target: Target::Webhook {
                url: url.into(),
                secret_env: "S".into(),
            },
            not_before: t0(),
        };
        assert_eq!(
            idempotency_key(1, &n(0, 0, "http://a"), None),
            idempotency_key(1, &n(0, 0, "http://a"), None)
        );
        assert_ne!(
            idempotency_key(1, &n(0, 0, "http://a"), None),
            idempotency_key(1, &n(0, 1, "http://a"), None)
        );
        assert_ne!(
            idempotency_key(1, &n(0, 0, "http://a"), None),
            idempotency_key(1, &n(0, 0, "http://b"), None)
        );
        assert_ne!(
            idempotency_key(1, &n(0, 0, "http://a"), None),
            idempotency_key(2, &n(0, 0, "http://a"), None)
        );
    }
}
