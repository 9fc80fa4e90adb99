//! The PostgreSQL side of [`crate::alerts`]: applying flag events to
//! alerts and the outbox, escalation, delivery claims, acknowledge, resolve
//! and snooze.

use crate::alerts::*;
use crate::{PgStore, StoreError};
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgConnection, Row};

/// The columns of an [`AlertRow`]: the tier's name from the policy
/// snapshot, and the alert's distinct rules as a JSON array.
const ALERT_COLUMNS: &str = crate::sql::alert_columns!(
    "COALESCE(a.policy->'tiers'->a.tier->>'name', '')",
    "to_jsonb(ARRAY(SELECT DISTINCT f.rule FROM alert_flags af JOIN flags f ON f.id = af.flag_id \
     WHERE af.alert_id = a.id ORDER BY f.rule))"
);

async fn event(
    conn: &mut PgConnection,
    alert_id: i64,
    actor: &str,
    kind: &str,
    detail: Value,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO alert_events (alert_id, actor, kind, detail) VALUES ($1, $2, $3, $4)")
        .bind(alert_id)
        .bind(actor)
        .bind(kind)
        .bind(detail)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn insert_deliveries(
    conn: &mut PgConnection,
    alert_id: i64,
    deliveries: &[NewDelivery],
) -> Result<(), StoreError> {
    for d in deliveries {
        sqlx::query(
            "INSERT INTO deliveries (alert_id, purpose, tier, round, channel, target, idempotency_key, \
             status, next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8) \
             ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(alert_id)
        .bind(d.purpose)
        .bind(d.tier)
        .bind(d.round)
        .bind(d.channel)
        .bind(&d.target)
        .bind(format!("alert-{alert_id}:{}", d.key_suffix))
        .bind(d.not_before)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn cancel_pending(
    conn: &mut PgConnection,
    alert_id: i64,
    purposes: &[&str],
) -> Result<u64, StoreError> {
    let res = sqlx::query(
        "UPDATE deliveries SET status = 'cancelled', lease_until = NULL \
         WHERE alert_id = $1 AND status = 'pending' AND purpose = ANY($2)",
    )
    .bind(alert_id)
    .bind(purposes)
    .execute(&mut *conn)
    .await?;
    Ok(res.rows_affected())
}

impl PgStore {
    /// Applies up to `limit` pending flag events, oldest first, each with
    /// the plan `decide` returns, and marks them applied, all in one
    /// transaction: an event is applied exactly once.
    pub async fn apply_flag_events<F>(
        &self,
        limit: i64,
        now: DateTime<Utc>,
        mut decide: F,
    ) -> Result<AppliedEvents, StoreError>
    where
        F: FnMut(&PendingFlagEvent, Option<&OpenAlertRow>, Option<&SnoozeRow>) -> AlertAction,
    {
        let mut out = AppliedEvents::default();
        let mut tx = self.pool.begin().await?;
        let events = sqlx::query_as::<_, PendingFlagEvent>(
            "SELECT e.id AS event_id, e.flag_id, e.patient_id, p.team_id, e.rule, f.technical, e.state, \
             e.severity, e.at, e.summary, (e.evidence->>'measure')::float8 AS measure FROM flag_events e \
             JOIN flags f ON f.id = e.flag_id JOIN patients p ON p.id = e.patient_id \
             WHERE e.alerted_at IS NULL ORDER BY e.id LIMIT $1 FOR UPDATE OF e SKIP LOCKED",
        )
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        for ev in events {
            let kind = if ev.technical {
                "technical"
            } else {
                "clinical"
            };
            let open = sqlx::query_as::<_, OpenAlertRow>(
                "SELECT a.id, a.severity, a.state, a.tier, a.round, a.policy, \
                 (SELECT count(*) FROM alert_flags af JOIN flags f ON f.id = af.flag_id \
                  WHERE af.alert_id = a.id AND f.cleared_at IS NULL AND f.id <> $3) AS other_open_flags, \
                 (SELECT max(d.next_attempt_at) FROM deliveries d WHERE d.alert_id = a.id AND d.purpose = 'update') \
                 AS last_update_at, \
                 a.paged FROM alerts a WHERE a.patient_id = $1 AND a.kind = $2 AND a.state <> 'resolved' FOR UPDATE",
            )
            .bind(&ev.patient_id)
            .bind(kind)
            .bind(ev.flag_id)
            .fetch_optional(&mut *tx)
            .await?;
            let snooze = sqlx::query_as::<_, SnoozeRow>(crate::sql::alerts::ACTIVE_SNOOZE)
                .bind(&ev.patient_id)
                .bind(&ev.rule)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
            let action = decide(&ev, open.as_ref(), snooze.as_ref());
            let (alert_id, note) = self
                .apply_action(&mut tx, &ev, open.as_ref(), action, now, &mut out)
                .await?;
            sqlx::query(crate::sql::alerts::MARK_FLAG_EVENT_ALERTED)
                .bind(ev.event_id)
                .bind(now)
                .bind(alert_id)
                .bind(note)
                .execute(&mut *tx)
                .await?;
            out.events += 1;
        }
        tx.commit().await?;
        out.changed.sort_unstable();
        out.changed.dedup();
        Ok(out)
    }

    async fn apply_action(
        &self,
        tx: &mut PgConnection,
        ev: &PendingFlagEvent,
        open: Option<&OpenAlertRow>,
        action: AlertAction,
        now: DateTime<Utc>,
        out: &mut AppliedEvents,
    ) -> Result<(Option<i64>, Option<String>), StoreError> {
        let detail = ev.detail();
        match action {
            AlertAction::Open {
                kind: k,
                severity,
                tier,
                policy,
                next_escalation_at,
                deliveries,
                paged,
            } => {
                let id: i64 = sqlx::query_scalar(crate::sql::alerts::INSERT_ALERT)
                    .bind(&ev.patient_id)
                    .bind(&ev.team_id)
                    .bind(k)
                    .bind(severity.as_str())
                    .bind(now)
                    .bind(&policy)
                    .bind(tier)
                    .bind(next_escalation_at)
                    .bind(&ev.summary)
                    .bind(&paged)
                    .fetch_one(&mut *tx)
                    .await?;
                join_flag(tx, id, ev.flag_id).await?;
                event(tx, id, "wardwatch", "opened", detail).await?;
                insert_deliveries(tx, id, &deliveries).await?;
                out.opened.push((id, severity.to_string(), ev.rule.clone()));
                out.changed.push(id);
                Ok((Some(id), None))
            }
            AlertAction::Worsen {
                severity,
                tier,
                round,
                next_escalation_at,
                deliveries,
                paged,
            } => {
                let Some(a) = open else {
                    return Ok((None, Some("no open alert to worsen".into())));
                };
                sqlx::query(crate::sql::alerts::WORSEN_ALERT)
                    .bind(a.id)
                    .bind(severity.as_str())
                    .bind(tier)
                    .bind(round)
                    .bind(next_escalation_at)
                    .bind(&ev.summary)
                    .bind(&paged)
                    .execute(&mut *tx)
                    .await?;
                join_flag(tx, a.id, ev.flag_id).await?;
                event(tx, a.id, "wardwatch", "worsened", detail).await?;
                insert_deliveries(tx, a.id, &deliveries).await?;
                out.changed.push(a.id);
                Ok((Some(a.id), None))
            }
            AlertAction::Join { deliveries, paged } => {
                let Some(a) = open else {
                    return Ok((None, Some("no open alert to join".into())));
                };
                join_flag(tx, a.id, ev.flag_id).await?;
                sqlx::query(crate::sql::alerts::UPDATE_ALERT_SUMMARY)
                    .bind(a.id)
                    .bind(&ev.summary)
                    .bind(&paged)
                    .execute(&mut *tx)
                    .await?;
                event(tx, a.id, "wardwatch", "evidence", detail).await?;
                if !deliveries.is_empty() {
                    // An update already claimed (being sent) was built
                    // before this flag joined: it does not count.
                    let pending: bool =
                        sqlx::query_scalar(crate::sql::alerts::PENDING_UPDATE_EXISTS)
                            .bind(a.id)
                            .bind(now)
                            .fetch_one(&mut *tx)
                            .await?;
                    // One pending update carries every flag that joins
                    // before it is sent: it is built at send time.
                    if !pending {
                        insert_deliveries(tx, a.id, &deliveries).await?;
                    }
                }
                Ok((Some(a.id), None))
            }
            AlertAction::Clear { resolve } => {
                let Some(a) = open else {
                    return Ok((None, Some("cleared with no open alert".into())));
                };
                event(tx, a.id, "wardwatch", "flag_cleared", detail).await?;
                if resolve {
                    sqlx::query(crate::sql::alerts::AUTO_RESOLVE_ALERT)
                        .bind(a.id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    cancel_pending(tx, a.id, &["page", "update", "reminder"]).await?;
                    event(
                        tx,
                        a.id,
                        "wardwatch",
                        "resolved",
                        serde_json::json!({"automatic": true, "rule": ev.rule}),
                    )
                    .await?;
                    out.changed.push(a.id);
                }
                Ok((Some(a.id), None))
            }
            AlertAction::Suppressed { until } => {
                out.suppressed += 1;
                Ok((
                    open.map(|a| a.id),
                    Some(format!("snoozed until {}", until.to_rfc3339())),
                ))
            }
            AlertAction::Nothing => Ok((open.map(|a| a.id), Some("no open alert".into()))),
        }
    }

    /// Claims up to `limit` open alerts whose escalation is due and applies
    /// `plan` to each, in one transaction. Several engines may run this: a
    /// claimed alert is skipped by the others, so no step is done twice.
    pub async fn escalate_due<F>(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        mut plan: F,
    ) -> Result<Vec<i64>, StoreError>
    where
        F: FnMut(&DueAlert) -> Option<EscalationApply>,
    {
        let mut tx = self.pool.begin().await?;
        // Open alerts past their deadline; acknowledged ones past their
        // reminder, or with none scheduled yet (just acknowledged).
        let due_alerts = sqlx::query_as::<_, DueAlert>(
            "SELECT id, team_id, severity, state, tier, round, policy, acknowledged_at, next_escalation_at \
             FROM alerts WHERE (state = 'open' AND next_escalation_at <= $1) \
             OR (state = 'acknowledged' AND (next_escalation_at IS NULL OR next_escalation_at <= $1)) \
             ORDER BY next_escalation_at NULLS FIRST LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let mut done = Vec::new();
        for due in due_alerts {
            let Some(step) = plan(&due) else {
                // A policy that cannot be read: keep escalating on a minute's
                // repeat rather than go quiet.
                sqlx::query(crate::sql::alerts::SET_NEXT_ESCALATION)
                    .bind(due.id)
                    .bind(now + Duration::minutes(1))
                    .execute(&mut *tx)
                    .await?;
                continue;
            };
            sqlx::query(crate::sql::alerts::ESCALATE_ALERT)
                .bind(due.id)
                .bind(step.tier)
                .bind(step.round)
                .bind(step.next_escalation_at)
                .execute(&mut *tx)
                .await?;
            if let Some(kind) = step.event {
                event(
                    &mut tx,
                    due.id,
                    "wardwatch",
                    kind,
                    serde_json::json!({"from_tier": due.tier, "tier": step.tier, "round": step.round}),
                )
                .await?;
                insert_deliveries(&mut tx, due.id, &step.deliveries).await?;
                done.push(due.id);
            }
        }
        tx.commit().await?;
        Ok(done)
    }

    /// Claims up to `limit` due deliveries for `lease` (a crashed sender's
    /// claim lapses and the delivery is sent again, same key). Pages and
    /// updates of alerts no longer open are cancelled instead: an
    /// acknowledgement stops every further page at once.
    pub async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        lease: Duration,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE deliveries d SET status = 'cancelled', lease_until = NULL FROM alerts a \
             WHERE a.id = d.alert_id AND d.status = 'pending' AND d.next_attempt_at <= $1 \
             AND ((d.purpose = 'page' AND a.state <> 'open') OR (d.purpose IN ('update', 'reminder') AND a.state = 'resolved'))",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let rows = sqlx::query(
            "WITH due AS (SELECT id FROM deliveries WHERE status = 'pending' AND next_attempt_at <= $1 \
               AND (lease_until IS NULL OR lease_until < $1) ORDER BY next_attempt_at, id LIMIT $2 \
               FOR UPDATE SKIP LOCKED) \
             UPDATE deliveries d SET lease_until = $3, attempts = d.attempts + 1 FROM due WHERE d.id = due.id \
             RETURNING d.id, d.alert_id, d.purpose, d.tier, d.round, d.channel, d.target, d.idempotency_key, \
               d.attempts, d.created_at",
        )
        .bind(now)
        .bind(limit)
        .bind(now + lease)
        .fetch_all(&mut *tx)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let alert_id: i64 = r.try_get("alert_id")?;
            let a = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {ALERT_COLUMNS} FROM alerts a WHERE a.id = $1"
            )))
            .bind(alert_id)
            .fetch_one(&mut *tx)
            .await?;
            out.push(ClaimedDelivery {
                id: r.try_get("id")?,
                alert_id,
                purpose: r.try_get("purpose")?,
                tier: r.try_get("tier")?,
                round: r.try_get("round")?,
                channel: r.try_get("channel")?,
                target: r.try_get("target")?,
                key: r.try_get("idempotency_key")?,
                attempts: r.try_get("attempts")?,
                created_at: r.try_get("created_at")?,
                alert: AlertRow::from_row(&a)?,
            });
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Records a delivery's outcome. A failure is retried at `retry_at`, or
    /// marked failed when `retry_at` is `None` (attempts exhausted).
    pub async fn finish_delivery(
        &self,
        id: i64,
        now: DateTime<Utc>,
        error: Option<&str>,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        match (error, retry_at) {
            (None, _) => {
                sqlx::query(crate::sql::alerts::MARK_DELIVERY_SENT)
                    .bind(id)
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
            }
            (Some(e), Some(at)) => {
                sqlx::query(crate::sql::alerts::RETRY_DELIVERY)
                    .bind(id)
                    .bind(at)
                    .bind(e)
                    .execute(&self.pool)
                    .await?;
            }
            (Some(e), None) => {
                // Only a delivery still pending fails: an acknowledgement may
                // have cancelled it while it was being sent.
                sqlx::query(crate::sql::alerts::FAIL_DELIVERY)
                    .bind(id)
                    .bind(e)
                    .execute(&self.pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// After a page failed for good: if every page of that step failed,
    /// raise a technical `undeliverable` alert for the patient (or join the
    /// open technical one) and queue its notice to the team's fallback,
    /// once per step. The clinical alert keeps escalating on its own clock.
    pub async fn fallback_if_undeliverable(
        &self,
        alert_id: i64,
        tier: i32,
        round: i32,
        fallback: NewDelivery,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        // The team's MQTT topic is always published to, but a broker
        // accepting a message is not a person reading it: the configured
        // targets decide (the topic only when a tier has nothing else).
        let all_failed: bool = sqlx::query_scalar(
            "SELECT COALESCE(bool_and(status = 'failed') FILTER (WHERE channel <> 'mqtt'), \
                             bool_and(status = 'failed')) \
               AND (SELECT state = 'open' FROM alerts WHERE id = $1) FROM deliveries \
             WHERE alert_id = $1 AND purpose = 'page' AND tier = $2 AND round = $3",
        )
        .bind(alert_id)
        .bind(tier)
        .bind(round)
        .fetch_one(&mut *tx)
        .await
        .map(|b: Option<bool>| b.unwrap_or(false))?;
        if !all_failed {
            return Ok(false);
        }
        let summary = format!(
            "notifications for alert {alert_id} could not be delivered at tier {tier}; \
             the team's fallback is told"
        );
        let technical: i64 = sqlx::query_scalar(
            "INSERT INTO alerts (patient_id, team_id, kind, severity, state, opened_at, policy, tier, summary) \
             SELECT patient_id, team_id, 'delivery', 'high', 'open', now(), policy, tier, $2 \
             FROM alerts WHERE id = $1 \
             ON CONFLICT (patient_id, kind) WHERE state <> 'resolved' DO UPDATE SET summary = excluded.summary \
             RETURNING id",
        )
        .bind(alert_id)
        .bind(&summary)
        .fetch_one(&mut *tx)
        .await?;
        let mut notice = fallback;
        notice.key_suffix = format!("for-alert-{alert_id}:{}", notice.key_suffix);
        insert_deliveries(&mut tx, technical, std::slice::from_ref(&notice)).await?;
        event(
            &mut tx,
            alert_id,
            "wardwatch",
            "undeliverable",
            serde_json::json!({"tier": tier, "round": round, "technical_alert": technical}),
        )
        .await?;
        event(
            &mut tx,
            technical,
            "wardwatch",
            "opened",
            serde_json::json!({"undeliverable_alert": alert_id, "tier": tier, "round": round}),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Acknowledgements after `since`, oldest first.
    pub async fn acknowledgements_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<Acknowledgement>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT team_id, EXTRACT(EPOCH FROM acknowledged_at - opened_at)::float8 AS seconds, \
             acknowledged_at AS at FROM alerts WHERE acknowledged_at > $1 ORDER BY acknowledged_at LIMIT 10000",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Alert events with an id above `after`, plus the ids in `gaps` (ids
    /// skipped earlier because their transaction had not committed yet),
    /// oldest first, with the alert as it stands.
    pub async fn alert_events_since(
        &self,
        after: i64,
        gaps: &[i64],
        limit: i64,
    ) -> Result<Vec<AlertEventRow>, StoreError> {
        let rows = sqlx::query_as::<_, AlertEventRow>(sqlx::AssertSqlSafe(format!(
            "SELECT e.id AS event_id, e.kind AS event, e.actor AS event_actor, e.at AS event_at, {ALERT_COLUMNS} FROM alert_events e \
             JOIN alerts a ON a.id = e.alert_id \
             WHERE e.id > $1 OR e.id = ANY($2) ORDER BY e.id LIMIT $3"
        )))
        .bind(after)
        .bind(gaps)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Alerts opened for a team since `since` (the storm guard's measure).
    pub async fn alerts_opened_since(
        &self,
        team: &str,
        since: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar(crate::sql::alerts::COUNT_TEAM_ALERTS_SINCE)
                .bind(team)
                .bind(since)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// The newest alert event id (the live feed starts after it).
    pub async fn last_alert_event_id(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(crate::sql::alerts::LAST_ALERT_EVENT_ID)
            .fetch_one(&self.pool)
            .await?)
    }

    /// A named user takes the alert: escalation stops at once.
    pub async fn acknowledge_alert(
        &self,
        alert_id: i64,
        user: &str,
        now: DateTime<Utc>,
    ) -> Result<AlertRow, StoreError> {
        let user = nonempty(user, "the user")?;
        let mut tx = self.pool.begin().await?;
        let res = sqlx::query(crate::sql::alerts::ACKNOWLEDGE_ALERT)
            .bind(alert_id)
            .bind(now)
            .bind(&user)
            .execute(&mut *tx)
            .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::Rejected(format!(
                "alert {alert_id} is not open (it may be acknowledged or resolved already, or not exist)"
            )));
        }
        let cancelled = cancel_pending(&mut tx, alert_id, &["page"]).await?;
        event(
            &mut tx,
            alert_id,
            &user,
            "acknowledged",
            serde_json::json!({"pages_cancelled": cancelled}),
        )
        .await?;
        let row = fetch_alert(&mut tx, alert_id).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Closes the alert with an outcome.
    pub async fn resolve_alert(
        &self,
        alert_id: i64,
        user: &str,
        outcome: &str,
        note: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<AlertRow, StoreError> {
        let user = nonempty(user, "the user")?;
        if outcome == "other" && note.is_none_or(|n| n.trim().is_empty()) {
            return Err(StoreError::Rejected(
                "outcome \"other\" needs a note saying what happened".into(),
            ));
        }
        let mut tx = self.pool.begin().await?;
        let res = sqlx::query(crate::sql::alerts::RESOLVE_ALERT)
            .bind(alert_id)
            .bind(now)
            .bind(&user)
            .bind(outcome)
            .bind(note)
            .execute(&mut *tx)
            .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::Rejected(format!(
                "alert {alert_id} is already resolved, or does not exist"
            )));
        }
        cancel_pending(&mut tx, alert_id, &["page", "update", "reminder"]).await?;
        event(
            &mut tx,
            alert_id,
            &user,
            "resolved",
            serde_json::json!({"outcome": outcome, "note": note}),
        )
        .await?;
        let row = fetch_alert(&mut tx, alert_id).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Snoozes a rule for a patient until `until` (bounded by the caller's
    /// policy), at the severity of its open flag (a worse one breaks through).
    pub async fn snooze(
        &self,
        patient: &str,
        rule: &str,
        until: DateTime<Utc>,
        user: &str,
        reason: &str,
        limits: &SnoozeLimits,
    ) -> Result<String, StoreError> {
        let user = nonempty(user, "the user")?;
        let reason = nonempty(reason, "the reason")?;
        let mut tx = self.pool.begin().await?;
        let known: bool = sqlx::query_scalar(crate::sql::records::PATIENT_EXISTS)
            .bind(patient)
            .fetch_one(&mut *tx)
            .await?;
        if !known {
            return Err(StoreError::Rejected(format!(
                "patient {patient} is not enrolled"
            )));
        }
        let flag = sqlx::query(
            "SELECT severity, (evidence->>'measure')::float8 AS measure FROM flags WHERE patient_id = $1 \
             AND rule = $2 AND cleared_at IS NULL",
        )
        .bind(patient)
        .bind(rule)
        .fetch_optional(&mut *tx)
        .await?;
        let (severity, measure): (String, Option<f64>) = match flag {
            Some(r) => (r.try_get("severity")?, r.try_get("measure")?),
            None => ("low".into(), None),
        };
        limits.check(&severity, until)?;
        sqlx::query(
            "INSERT INTO snoozes (patient_id, rule, severity, until, by_user, reason, measure) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(patient)
        .bind(rule)
        .bind(&severity)
        .bind(until)
        .bind(&user)
        .bind(&reason)
        .bind(measure)
        .execute(&mut *tx)
        .await?;
        // Recorded on the open alert too, so its trail says who snoozed what.
        let open: Option<i64> = sqlx::query_scalar(crate::sql::alerts::OPEN_ALERT_OF_PATIENT)
            .bind(patient)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(id) = open {
            event(
                &mut tx,
                id,
                &user,
                "snoozed",
                serde_json::json!({"rule": rule, "until": until, "reason": reason, "severity": severity}),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(severity)
    }

    /// Snoozes that ran out by `now`: each rule's still-open flag is handed
    /// back to alerting as a new flag event, so a flag held back while
    /// snoozed (and steady since, so the rules emit nothing new) is not
    /// forgotten. Returns how many flags were handed back.
    pub async fn end_snoozes(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let res = sqlx::query(
            "WITH ended AS (UPDATE snoozes SET ended_at = $1 WHERE ended_at IS NULL AND until <= $1 \
                            RETURNING patient_id, rule) \
             INSERT INTO flag_events (flag_id, patient_id, rule, state, severity, at, summary, evidence) \
             SELECT DISTINCT ON (f.id) f.id, f.patient_id, f.rule, 'updated', f.severity, $1, \
                    'snooze ended; ' || f.summary, f.evidence \
             FROM flags f JOIN ended e ON e.patient_id = f.patient_id AND e.rule = f.rule \
             WHERE f.cleared_at IS NULL",
        )
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected())
    }

    /// Alerts, newest first, optionally of one state.
    pub async fn list_alerts(
        &self,
        state: Option<StateFilter>,
        limit: i64,
    ) -> Result<Vec<AlertRow>, StoreError> {
        self.find_alerts(
            &AlertFilter {
                state,
                ..AlertFilter::default()
            },
            limit,
        )
        .await
    }

    /// Alerts matching `filter`, newest first. The teams filter is applied
    /// in the query, before the limit, so one team's busy day never pushes
    /// another team's alerts out of its list.
    pub async fn find_alerts(
        &self,
        filter: &AlertFilter<'_>,
        limit: i64,
    ) -> Result<Vec<AlertRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ALERT_COLUMNS} FROM alerts a WHERE ($1::text IS NULL OR a.state = $1 \
               OR ($1 = 'unresolved' AND a.state <> 'resolved')) \
             AND ($2::text[] IS NULL OR a.team_id = ANY($2)) \
             AND ($3::text IS NULL OR a.severity = $3) \
             ORDER BY a.id DESC LIMIT $4"
        )))
        .bind(filter.state.map(StateFilter::as_str))
        .bind(filter.teams)
        .bind(filter.severity.map(wardwatch_core::flag::Severity::as_str))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| AlertRow::from_row(r).map_err(StoreError::from))
            .collect()
    }

    /// One alert.
    pub async fn alert(&self, id: i64) -> Result<Option<AlertRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ALERT_COLUMNS} FROM alerts a WHERE a.id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(|r| AlertRow::from_row(r).map_err(StoreError::from))
            .transpose()
    }
}

async fn fetch_alert(conn: &mut PgConnection, id: i64) -> Result<AlertRow, StoreError> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {ALERT_COLUMNS} FROM alerts a WHERE a.id = $1"
    )))
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(AlertRow::from_row(&r)?)
}

async fn join_flag(conn: &mut PgConnection, alert_id: i64, flag_id: i64) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO alert_flags (alert_id, flag_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(alert_id)
    .bind(flag_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
