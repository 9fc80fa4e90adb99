//! Alerting's store contract on both backends: the same checks run against
//! PostgreSQL and the embedded SQLite store through the traits, covering
//! flag events becoming alerts (exactly once), escalation, the delivery
//! outbox's leases and outcomes, the fallback when a step cannot be
//! delivered, clinicians' actions (acknowledge, resolve, snooze), the
//! listings and the live feed.
//!
//! Flags and flag events have no trait method of their own here, so they
//! are written with small raw SQL statements that both dialects accept.

use chrono::{DateTime, Duration, SecondsFormat, TimeZone, Utc};
use serde_json::{json, Value};
use wardwatch_core::flag::Severity;
use wardwatch_core::PatientId;
use wardwatch_store::alerts::{
    AlertAction, AlertFilter, AlertRow, DueAlert, EscalationApply, NewDelivery, OpenAlertRow,
    PendingFlagEvent, SnoozeLimits, SnoozeRow, StateFilter,
};
use wardwatch_store::sqlite::SqliteStore;
use wardwatch_store::testing::{enrol, FreshPg as Db, Raw};
use wardwatch_store::{
    AlertStore, EscalationStore, PgStore, RecordStore, RulesStore, Store, StoreError,
};

fn t(mins: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap() + Duration::minutes(mins)
}

/// A time as an SQL literal both backends read the same way (and as sqlx
/// binds it on SQLite).
fn lit(at: DateTime<Utc>) -> String {
    format!("'{}'", at.to_rfc3339_opts(SecondsFormat::AutoSi, false))
}

fn rejected<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
    assert!(matches!(r, Err(StoreError::Rejected(_))), "{what}: {r:?}");
}

/// Opens a flag; returns its id.
async fn flag<S: Raw>(
    s: &S,
    patient: &str,
    rule: &str,
    technical: bool,
    severity: &str,
    at: DateTime<Utc>,
) -> i64 {
    s.int(format!(
        "INSERT INTO flags (patient_id, rule, technical, severity, raised_at, updated_at, summary, evidence) \
         VALUES ('{patient}', '{rule}', {technical}, '{severity}', {at}, {at}, '{rule} of {patient}', '{{\"measure\": 2.5}}') \
         RETURNING id",
        at = lit(at)
    ))
    .await
}

/// A flag event as the rules write it; returns its id.
async fn flag_event<S: Raw>(s: &S, flag: i64, state: &str, at: DateTime<Utc>) -> i64 {
    s.int(format!(
        "INSERT INTO flag_events (flag_id, patient_id, rule, state, severity, at, summary, evidence) \
         SELECT id, patient_id, rule, '{state}', severity, {at}, rule || ' ' || '{state}' || ' at ' || {at}, evidence \
         FROM flags WHERE id = {flag} RETURNING id",
        at = lit(at)
    ))
    .await
}

async fn delivery<S: Raw>(s: &S, key: &str) -> i64 {
    s.int(format!(
        "SELECT id FROM deliveries WHERE idempotency_key = '{key}'"
    ))
    .await
}

async fn status<S: Raw>(s: &S, id: i64) -> String {
    s.text(format!("SELECT status FROM deliveries WHERE id = {id}"))
        .await
        .unwrap_or_default()
}

fn policy() -> Value {
    json!({"tiers": [{"name": "ward nurse"}, {"name": "registrar"}]})
}

fn page(tier: i32, at: DateTime<Utc>) -> NewDelivery {
    NewDelivery {
        purpose: "page",
        tier,
        round: 0,
        channel: "sms",
        target: r#"{"to":"+447700900123"}"#.into(),
        key_suffix: format!("t{tier}r0:sms"),
        not_before: at,
    }
}

/// What `decide` was shown for one event.
#[derive(Debug, Clone)]
struct Seen {
    event: i64,
    summary: String,
    open: Option<(i64, i64, Option<DateTime<Utc>>)>,
    snooze: Option<SnoozeRow>,
    /// The event's measure and the open alert's paged measures.
    measure: Option<f64>,
    paged: Option<serde_json::Value>,
}

/// A small lifecycle: open, join (with one grouped update), clear, or hold
/// back while snoozed; records what it was shown.
fn decider(
    now: DateTime<Utc>,
    seen: &mut Vec<Seen>,
) -> impl FnMut(&PendingFlagEvent, Option<&OpenAlertRow>, Option<&SnoozeRow>) -> AlertAction + Send + '_
{
    move |ev, open, snooze| {
        seen.push(Seen {
            event: ev.event_id,
            summary: ev.summary.clone(),
            open: open.map(|o| (o.id, o.other_open_flags, o.last_update_at)),
            snooze: snooze.cloned(),
            measure: ev.measure,
            paged: open.map(|o| o.paged.clone()),
        });
        if let Some(s) = snooze {
            return AlertAction::Suppressed { until: s.until };
        }
        if ev.state == "cleared" {
            return match open {
                Some(o) => AlertAction::Clear {
                    resolve: o.other_open_flags == 0,
                },
                None => AlertAction::Nothing,
            };
        }
        match open {
            None => AlertAction::Open {
                kind: if ev.technical {
                    "technical"
                } else {
                    "clinical"
                },
                severity: ev.severity,
                tier: 0,
                policy: policy(),
                next_escalation_at: ev.at + Duration::minutes(5),
                deliveries: vec![page(0, now)],
                paged: serde_json::json!({ ev.rule.clone(): ev.measure }),
            },
            Some(_) => AlertAction::Join {
                deliveries: vec![NewDelivery {
                    purpose: "update",
                    tier: 0,
                    round: 0,
                    channel: "sms",
                    target: r#"{"to":"+447700900123"}"#.into(),
                    key_suffix: format!("update:{}", ev.event_id),
                    not_before: now,
                }],
                paged: None,
            },
        }
    }
}

fn step(now: DateTime<Utc>) -> impl FnMut(&DueAlert) -> Option<EscalationApply> + Send {
    move |due| {
        assert_eq!(due.policy, policy());
        if due.state == "acknowledged" {
            // As the engine does: schedule the reminder first, then remind.
            return Some(match due.next_escalation_at {
                None => EscalationApply {
                    tier: due.tier,
                    round: due.round,
                    next_escalation_at: t(150),
                    deliveries: vec![],
                    event: None,
                },
                Some(_) => EscalationApply {
                    tier: due.tier,
                    round: due.round + 1,
                    next_escalation_at: t(300),
                    deliveries: vec![],
                    event: Some("reminded"),
                },
            });
        }
        Some(EscalationApply {
            tier: due.tier + 1,
            round: 0,
            next_escalation_at: t(30),
            deliveries: vec![page(due.tier + 1, now)],
            event: Some("escalated"),
        })
    }
}

/// Snooze limits that allow a day at every severity but emergency.
fn day_limits(now: DateTime<Utc>) -> SnoozeLimits {
    SnoozeLimits {
        low: 86_400,
        medium: 86_400,
        high: 86_400,
        emergency: 0,
        now,
    }
}

/// A filter as an operator writes it: names, parsed as the API parses them.
fn all<'a>(
    state: Option<&str>,
    teams: Option<&'a [String]>,
    severity: Option<&str>,
) -> AlertFilter<'a> {
    AlertFilter {
        state: state.map(|s| StateFilter::parse(s).expect("a state name")),
        teams,
        severity: severity.map(|s| Severity::parse(s).expect("a severity name")),
    }
}

fn ids(rows: &[AlertRow]) -> Vec<i64> {
    rows.iter().map(|a| a.id).collect()
}

async fn check<S: AlertStore + EscalationStore + Store + RulesStore + RecordStore + Raw>(s: &S) {
    for (p, team) in [("p1", "ward-a"), ("p2", "ward-b")] {
        enrol(s, &PatientId::new(p).unwrap(), team, None)
            .await
            .unwrap();
    }
    assert_eq!(s.last_alert_event_id().await.unwrap(), 0);
    let f1 = flag(s, "p1", "news2", false, "high", t(0)).await;
    let f2 = flag(s, "p1", "spo2_low", false, "medium", t(1)).await;
    let f3 = flag(s, "p2", "news2", false, "medium", t(2)).await;
    let f4 = flag(s, "p1", "silent_device", true, "low", t(3)).await;
    let e1 = flag_event(s, f1, "raised", t(0)).await;
    let e2 = flag_event(s, f2, "raised", t(1)).await;
    flag_event(s, f3, "raised", t(2)).await;
    flag_event(s, f4, "raised", t(3)).await;

    // Oldest first, up to the limit: f1 opens an alert, f2 joins it.
    let mut seen = Vec::new();
    let applied = s
        .apply_flag_events(2, t(5), decider(t(5), &mut seen))
        .await
        .unwrap();
    assert_eq!(applied.events, 2);
    assert_eq!(applied.opened.len(), 1);
    let a1 = applied.opened[0].0;
    assert_eq!(
        applied.opened,
        vec![(a1, "high".to_string(), "news2".to_string())]
    );
    assert_eq!(applied.changed, vec![a1]);
    assert_eq!(
        seen.iter().map(|v| v.event).collect::<Vec<_>>(),
        vec![e1, e2]
    );
    assert_eq!(seen[0].open, None);
    // f1 is the open flag other than f2's own; no update queued yet.
    assert_eq!(seen[1].open, Some((a1, 1, None)));
    // The measures paged when it opened come back with the open alert.
    assert_eq!(seen[1].paged, Some(serde_json::json!({"news2": 2.5})));
    assert!(seen.iter().all(|v| v.snooze.is_none()));

    // A second event of f1 joins too, while the update queued for f2 is
    // still pending: no second update.
    let e5 = flag_event(s, f1, "updated", t(4)).await;
    seen.clear();
    let applied = s
        .apply_flag_events(100, t(5), decider(t(5), &mut seen))
        .await
        .unwrap();
    assert_eq!(applied.events, 3);
    assert_eq!(applied.suppressed, 0);
    let (a2, a3) = (applied.opened[0].0, applied.opened[1].0);
    assert_eq!(
        applied.opened,
        vec![
            (a2, "medium".to_string(), "news2".to_string()),
            (a3, "low".to_string(), "silent_device".to_string())
        ]
    );
    assert_eq!(applied.changed, vec![a2, a3]);
    assert_eq!(seen[2].event, e5);
    assert_eq!(seen[2].open, Some((a1, 1, Some(t(5)))));
    assert_eq!(
        s.int(format!(
            "SELECT count(*) FROM deliveries WHERE alert_id = {a1} AND purpose = 'update'"
        ))
        .await,
        1
    );
    // Exactly once.
    let again = s
        .apply_flag_events(100, t(6), decider(t(6), &mut seen))
        .await
        .unwrap();
    assert_eq!(again.events, 0);
    assert_eq!(
        s.int(format!(
            "SELECT count(*) FROM flag_events WHERE alert_id = {a1} AND alerted_at IS NOT NULL"
        ))
        .await,
        3
    );

    let alert1 = s.alert(a1).await.unwrap().expect("alert 1");
    assert_eq!(alert1.patient_id, "p1");
    assert_eq!(alert1.team_id, "ward-a");
    assert_eq!(alert1.kind, "clinical");
    assert_eq!(alert1.severity, "high");
    assert_eq!(alert1.state, "open");
    assert_eq!((alert1.tier, alert1.tier_name.as_str()), (0, "ward nurse"));
    assert_eq!(alert1.rules, vec!["news2", "spo2_low"]);
    assert_eq!(alert1.opened_at, t(5));
    assert_eq!(alert1.acknowledged_by, None);
    assert!(alert1.summary.starts_with("news2 updated at"), "{alert1:?}");
    assert_eq!(s.alert(a3).await.unwrap().unwrap().kind, "technical");
    assert_eq!(s.alerts_opened_since("ward-a", t(5)).await.unwrap(), 2);
    assert_eq!(s.alerts_opened_since("ward-a", t(6)).await.unwrap(), 0);
    assert_eq!(s.alerts_opened_since("ward-b", t(0)).await.unwrap(), 1);

    // Escalation: a1 is due at t5, a2 at t7, a3 at t8.
    assert_eq!(
        s.escalate_due(t(7), 100, step(t(7))).await.unwrap(),
        vec![a1, a2]
    );
    assert_eq!(
        s.escalate_due(t(7), 100, step(t(7))).await.unwrap(),
        Vec::<i64>::new()
    );
    let alert1 = s.alert(a1).await.unwrap().unwrap();
    assert_eq!((alert1.tier, alert1.tier_name.as_str()), (1, "registrar"));
    // No plan: tried again a minute later.
    assert_eq!(
        s.escalate_due(t(8), 100, |_: &DueAlert| None)
            .await
            .unwrap(),
        Vec::<i64>::new()
    );
    assert_eq!(
        s.escalate_due(t(8) + Duration::seconds(59), 100, step(t(8)))
            .await
            .unwrap(),
        Vec::<i64>::new()
    );
    assert_eq!(s.alert(a3).await.unwrap().unwrap().tier, 0);

    // The outbox: earliest first, up to the limit, leased.
    let d1 = delivery(s, &format!("alert-{a1}:t0r0:sms")).await;
    let u1 = delivery(s, &format!("alert-{a1}:update:{e2}")).await;
    let d2 = delivery(s, &format!("alert-{a2}:t0r0:sms")).await;
    let d3 = delivery(s, &format!("alert-{a3}:t0r0:sms")).await;
    let d1t1 = delivery(s, &format!("alert-{a1}:t1r0:sms")).await;
    let d2t1 = delivery(s, &format!("alert-{a2}:t1r0:sms")).await;
    let lease = Duration::minutes(1);
    let mut first = s.claim_deliveries(t(7), 4, lease).await.unwrap();
    first.sort_by_key(|c| c.id);
    assert_eq!(
        first.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![d1, u1, d2, d3]
    );
    assert!(first.iter().all(|c| c.attempts == 1));
    let c = &first[0];
    assert_eq!((c.alert_id, c.purpose.as_str()), (a1, "page"));
    assert_eq!((c.tier, c.round, c.channel.as_str()), (0, 0, "sms"));
    assert_eq!(c.target, r#"{"to":"+447700900123"}"#);
    assert_eq!(c.key, format!("alert-{a1}:t0r0:sms"));
    assert_eq!(c.alert.id, a1);
    assert_eq!(c.alert.tier, 1);
    assert_eq!(c.alert.rules, vec!["news2", "spo2_low"]);
    assert_eq!(first[1].purpose, "update");
    let mut rest = s.claim_deliveries(t(7), 100, lease).await.unwrap();
    rest.sort_by_key(|c| c.id);
    assert_eq!(
        rest.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![d1t1, d2t1]
    );
    // Leased: nobody else takes them.
    assert!(s
        .claim_deliveries(t(7) + Duration::seconds(30), 100, lease)
        .await
        .unwrap()
        .is_empty());
    // Outcomes: sent, retry, failed for good; a sent one never fails.
    let sent_at = t(7) + Duration::seconds(5);
    s.finish_delivery(d1, sent_at, None, None).await.unwrap();
    s.finish_delivery(d1, sent_at, Some("late"), None)
        .await
        .unwrap();
    s.finish_delivery(
        d2,
        sent_at,
        Some("timeout"),
        Some(t(7) + Duration::seconds(10)),
    )
    .await
    .unwrap();
    s.finish_delivery(d3, sent_at, Some("bad number"), None)
        .await
        .unwrap();
    assert_eq!(status(s, d1).await, "sent");
    assert_eq!(status(s, d2).await, "pending");
    assert_eq!(status(s, d3).await, "failed");
    assert_eq!(
        s.text(format!("SELECT last_error FROM deliveries WHERE id = {d3}"))
            .await
            .as_deref(),
        Some("bad number")
    );
    assert_eq!(
        s.text(format!("SELECT last_error FROM deliveries WHERE id = {d1}"))
            .await,
        None
    );
    // At t8 the leases end but have not lapsed; the retry is due.
    let retry = s.claim_deliveries(t(8), 100, lease).await.unwrap();
    assert_eq!(
        retry.iter().map(|c| (c.id, c.attempts)).collect::<Vec<_>>(),
        vec![(d2, 2)]
    );
    let mut lapsed = s
        .claim_deliveries(t(8) + Duration::seconds(1), 100, lease)
        .await
        .unwrap();
    lapsed.sort_by_key(|c| c.id);
    assert_eq!(
        lapsed
            .iter()
            .map(|c| (c.id, c.attempts))
            .collect::<Vec<_>>(),
        vec![(u1, 2), (d1t1, 2), (d2t1, 2)]
    );

    // Every page of a3's step failed: a delivery alert to the fallback, once.
    let fallback = || NewDelivery {
        purpose: "undeliverable",
        tier: 0,
        round: 0,
        channel: "sms",
        target: r#"{"to":"+447700900999"}"#.into(),
        key_suffix: "fallback".into(),
        not_before: t(9),
    };
    assert!(s
        .fallback_if_undeliverable(a3, 0, 0, fallback())
        .await
        .unwrap());
    let d = s
        .int("SELECT id FROM alerts WHERE kind = 'delivery'".into())
        .await;
    let dalert = s.alert(d).await.unwrap().unwrap();
    assert_eq!(
        (
            dalert.patient_id.as_str(),
            dalert.team_id.as_str(),
            dalert.severity.as_str(),
            dalert.state.as_str()
        ),
        ("p1", "ward-a", "high", "open")
    );
    assert_eq!(dalert.tier_name, "ward nurse");
    assert!(dalert.rules.is_empty());
    assert_eq!(
        dalert.summary,
        format!(
            "notifications for alert {a3} could not be delivered at tier 0; the team's fallback is told"
        )
    );
    assert!(s
        .fallback_if_undeliverable(a3, 0, 0, fallback())
        .await
        .unwrap());
    assert_eq!(
        s.int("SELECT count(*) FROM alerts WHERE kind = 'delivery'".into())
            .await,
        1
    );
    assert_eq!(
        s.int(format!(
            "SELECT count(*) FROM deliveries WHERE alert_id = {d} AND purpose = 'undeliverable' \
             AND idempotency_key = 'alert-{d}:for-alert-{a3}:fallback'"
        ))
        .await,
        1
    );
    // Not every page failed (one pending, one sent), or no such step.
    assert!(!s
        .fallback_if_undeliverable(a2, 0, 0, fallback())
        .await
        .unwrap());
    assert!(!s
        .fallback_if_undeliverable(a1, 0, 0, fallback())
        .await
        .unwrap());
    assert!(!s
        .fallback_if_undeliverable(a1, 5, 0, fallback())
        .await
        .unwrap());

    // Acknowledging stops the pages (not the update) and the escalation.
    let acked_at = t(10) + Duration::microseconds(1_500_123);
    let row = s
        .acknowledge_alert(a1, " nurse.jo ", acked_at)
        .await
        .unwrap();
    assert_eq!(row.state, "acknowledged");
    assert_eq!(row.acknowledged_by.as_deref(), Some("nurse.jo"));
    assert_eq!(status(s, d1t1).await, "cancelled");
    assert_eq!(status(s, u1).await, "pending");
    assert_eq!(
        s.int(format!(
            "SELECT CAST(detail ->> 'pages_cancelled' AS BIGINT) FROM alert_events \
             WHERE alert_id = {a1} AND kind = 'acknowledged'"
        ))
        .await,
        1
    );
    rejected(
        s.acknowledge_alert(a1, "nurse.jo", t(11)).await,
        "a second acknowledgement",
    );
    rejected(s.acknowledge_alert(a2, " ", t(11)).await, "no user");
    rejected(
        s.acknowledge_alert(999_999, "nurse.jo", t(11)).await,
        "no such alert",
    );
    // a3 (due since t9 after its retry) and a2 (t30) escalate; a1,
    // acknowledged, only gets its reminder scheduled (no event, no page).
    assert_eq!(
        s.escalate_due(t(100), 100, step(t(100))).await.unwrap(),
        vec![a3, a2]
    );
    let a1_row = s.alert(a1).await.unwrap().unwrap();
    assert_eq!(a1_row.state, "acknowledged");
    // A tier beyond the policy has no name.
    let alert2 = s.alert(a2).await.unwrap().unwrap();
    assert_eq!((alert2.tier, alert2.tier_name.as_str()), (2, ""));
    let acks = s.acknowledgements_since(t(0)).await.unwrap();
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].team_id, "ward-a");
    assert_eq!(acks[0].seconds, 301.500123);
    assert_eq!(acks[0].at, acked_at);
    assert!(s.acknowledgements_since(acked_at).await.unwrap().is_empty());

    // Resolving: "other" needs a note; pending pages and updates stop.
    rejected(
        s.resolve_alert(a2, "dr.a", "other", None, t(12)).await,
        "other without a note",
    );
    rejected(
        s.resolve_alert(a2, "dr.a", "other", Some("  "), t(12))
            .await,
        "other with a blank note",
    );
    let row = s
        .resolve_alert(a2, "dr.a", "advice_given", None, t(12))
        .await
        .unwrap();
    assert_eq!(row.state, "resolved");
    assert_eq!(
        s.int(format!(
            "SELECT count(*) FROM deliveries WHERE alert_id = {a2} AND status = 'pending'"
        ))
        .await,
        0
    );
    rejected(
        s.resolve_alert(a2, "dr.a", "advice_given", None, t(13))
            .await,
        "a second resolution",
    );

    // The silent device's flag clears: its alert resolves by itself.
    s.exec(format!(
        "UPDATE flags SET cleared_at = {} WHERE id = {f4}",
        lit(t(11))
    ))
    .await;
    flag_event(s, f4, "cleared", t(11)).await;
    seen.clear();
    let applied = s
        .apply_flag_events(100, t(13), decider(t(13), &mut seen))
        .await
        .unwrap();
    assert_eq!((applied.events, applied.changed.clone()), (1, vec![a3]));
    assert_eq!(s.alert(a3).await.unwrap().unwrap().state, "resolved");

    // Snoozes: at the open flag's severity, recorded on the open alert.
    assert_eq!(
        s.snooze(
            "p1",
            "spo2_low",
            t(20),
            "dr.a",
            "known COPD",
            &day_limits(t(13))
        )
        .await
        .unwrap(),
        "medium"
    );
    assert_eq!(
        s.snooze(
            "p1",
            "spo2_low",
            t(18),
            "dr.a",
            "known COPD",
            &day_limits(t(13))
        )
        .await
        .unwrap(),
        "medium"
    );
    assert_eq!(
        s.snooze(
            "p1",
            "rr_high",
            t(20),
            "dr.a",
            "post-op",
            &day_limits(t(13))
        )
        .await
        .unwrap(),
        "low"
    );
    rejected(
        s.snooze("nobody", "news2", t(20), "dr.a", "r", &day_limits(t(13)))
            .await,
        "an unknown patient",
    );
    rejected(
        s.snooze("p1", "news2", t(20), "dr.a", " ", &day_limits(t(13)))
            .await,
        "no reason",
    );
    // Per-severity limits, against the flag's own severity.
    let short = SnoozeLimits {
        medium: 60,
        ..day_limits(t(13))
    };
    rejected(
        s.snooze("p1", "spo2_low", t(15), "dr.a", "too long", &short)
            .await,
        "longer than the medium limit",
    );
    let none = SnoozeLimits {
        medium: 0,
        ..day_limits(t(13))
    };
    rejected(
        s.snooze("p1", "spo2_low", t(14), "dr.a", "not allowed", &none)
            .await,
        "a severity that may not be snoozed",
    );
    let e7 = flag_event(s, f2, "updated", t(14)).await;
    seen.clear();
    let applied = s
        .apply_flag_events(100, t(14), decider(t(14), &mut seen))
        .await
        .unwrap();
    assert_eq!((applied.events, applied.suppressed), (1, 1));
    assert_eq!(
        seen[0].snooze,
        Some(SnoozeRow {
            severity: wardwatch_core::Severity::Medium,
            until: t(20),
            measure: Some(2.5),
        })
    );
    assert_eq!(seen[0].measure, Some(2.5), "the event's measure");
    assert_eq!(
        s.text(format!(
            "SELECT alert_note FROM flag_events WHERE id = {e7}"
        ))
        .await
        .as_deref(),
        Some("snoozed until 2026-11-23T08:20:00+00:00")
    );
    assert_eq!(
        s.int(format!("SELECT alert_id FROM flag_events WHERE id = {e7}"))
            .await,
        a1
    );
    // Ending: each still-open flag handed back once, however many snoozes
    // of it ended; a rule with no open flag hands back nothing.
    assert_eq!(s.end_snoozes(t(17)).await.unwrap(), 0);
    assert_eq!(s.end_snoozes(t(20)).await.unwrap(), 1);
    assert_eq!(s.end_snoozes(t(21)).await.unwrap(), 0);
    assert_eq!(
        s.int("SELECT count(*) FROM snoozes WHERE ended_at IS NULL".into())
            .await,
        0
    );
    seen.clear();
    let applied = s
        .apply_flag_events(100, t(21), decider(t(21), &mut seen))
        .await
        .unwrap();
    assert_eq!((applied.events, applied.suppressed), (1, 0));
    assert!(
        seen[0].summary == "snooze ended; spo2_low of p1",
        "{seen:?}"
    );
    assert_eq!(seen[0].open.map(|o| o.0), Some(a1));

    // Listings: newest first, filtered before the limit.
    let ward_b = vec!["ward-b".to_string()];
    let none: Vec<String> = Vec::new();
    assert_eq!(
        ids(&s
            .find_alerts(&all(Some("unresolved"), None, None), 100)
            .await
            .unwrap()),
        vec![d, a1]
    );
    assert_eq!(
        ids(&s
            .find_alerts(&all(Some("resolved"), None, None), 100)
            .await
            .unwrap()),
        vec![a3, a2]
    );
    assert_eq!(
        ids(&s
            .find_alerts(&all(None, Some(ward_b.as_slice()), None), 100)
            .await
            .unwrap()),
        vec![a2]
    );
    assert!(s
        .find_alerts(&all(None, Some(none.as_slice()), None), 100)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        ids(&s
            .find_alerts(&all(None, None, Some("high")), 100)
            .await
            .unwrap()),
        vec![d, a1]
    );
    assert_eq!(
        ids(&s
            .find_alerts(&all(Some("open"), None, Some("high")), 100)
            .await
            .unwrap()),
        vec![d]
    );
    assert_eq!(ids(&s.list_alerts(None, 2).await.unwrap()), vec![d, a3]);
    assert_eq!(
        ids(&s
            .list_alerts(StateFilter::parse("acknowledged"), 10)
            .await
            .unwrap()),
        vec![a1]
    );
    assert!(s.alert(999_999).await.unwrap().is_none());
    assert!(s.list_alerts(None, -1).await.is_err());

    // The live feed: ids in order, after a point plus the gaps.
    let feed = s.alert_events_since(0, &[], 1000).await.unwrap();
    assert!(feed.windows(2).all(|w| w[0].id < w[1].id));
    let last = feed.last().unwrap().id;
    assert_eq!(s.last_alert_event_id().await.unwrap(), last);
    let of_a1: Vec<(&str, &str)> = feed
        .iter()
        .filter(|e| e.alert.id == a1)
        .map(|e| (e.event.as_str(), e.actor.as_str()))
        .collect();
    assert_eq!(
        of_a1,
        vec![
            ("opened", "wardwatch"),
            ("evidence", "wardwatch"),
            ("evidence", "wardwatch"),
            ("escalated", "wardwatch"),
            ("acknowledged", "nurse.jo"),
            ("snoozed", "dr.a"),
            ("snoozed", "dr.a"),
            ("snoozed", "dr.a"),
            ("evidence", "wardwatch"),
        ]
    );
    // The alert as it stands now, not as it was then.
    assert!(feed
        .iter()
        .filter(|e| e.alert.id == a1)
        .all(|e| e.alert.state == "acknowledged"));
    let kinds_of = |id: i64| -> Vec<&str> {
        feed.iter()
            .filter(|e| e.alert.id == id)
            .map(|e| e.event.as_str())
            .collect()
    };
    assert_eq!(
        kinds_of(a3),
        vec![
            "opened",
            "undeliverable",
            "undeliverable",
            "escalated",
            "flag_cleared",
            "resolved"
        ]
    );
    assert_eq!(kinds_of(d), vec!["opened", "opened"]);
    let first_id = feed[0].id;
    let gapped = s
        .alert_events_since(last - 1, &[first_id], 10)
        .await
        .unwrap();
    assert_eq!(
        gapped.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![first_id, last]
    );
    assert_eq!(s.alert_events_since(0, &[], 2).await.unwrap().len(), 2);
    assert!(s
        .alert_events_since(last, &[], 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        s.int(format!(
            "SELECT count(*) FROM alert_events WHERE alert_id = {a2} AND kind = 'escalated' \
             AND CAST(detail ->> 'tier' AS BIGINT) = CAST(detail ->> 'from_tier' AS BIGINT) + 1"
        ))
        .await,
        2
    );
    // Past its reminder time it is reminded, and stays acknowledged.
    assert!(s
        .escalate_due(t(149), 100, step(t(149)))
        .await
        .unwrap()
        .iter()
        .all(|id| *id != a1));
    assert!(s
        .escalate_due(t(151), 100, step(t(151)))
        .await
        .unwrap()
        .contains(&a1));
    assert_eq!(s.alert(a1).await.unwrap().unwrap().state, "acknowledged");
    assert_eq!(
        s.int(format!(
            "SELECT count(*) FROM alert_events WHERE alert_id = {a1} AND kind = 'reminded'"
        ))
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_the_alert_contract() {
    let db = Db::create("alerts").await;
    let store = PgStore::connect(&db.url, 4).await.unwrap();
    store.migrate().await.unwrap();
    check(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_the_alert_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("wardwatch.db"))
        .await
        .unwrap();
    check(&store).await;
}
