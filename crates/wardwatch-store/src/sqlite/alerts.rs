//! Alerts, their events and the delivery outbox on SQLite: the twin of
//! [`crate::alerts`] for [`SqliteStore`], with the same plans applied in one
//! transaction. One writer connection serialises claims, so the
//! `FOR UPDATE SKIP LOCKED` of PostgreSQL has no counterpart here.
//!
//! Times the engine compares later (event, delivery and join times) are
//! bound from Rust rather than left to column defaults, so every stored
//! time has the one RFC 3339 shape that compares correctly as text.

use super::{begin_write, classify, SqliteStore};

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use sqlx::sqlite::SqliteConnection;
use sqlx::{FromRow, Row};

use crate::alerts::{
    nonempty, Acknowledgement, AlertAction, AlertEventRow, AlertFilter, AlertRow, AppliedEvents,
    ClaimedDelivery, DueAlert, EscalationApply, NewDelivery, OpenAlertRow, PendingFlagEvent,
    SnoozeLimits, SnoozeRow, StateFilter,
};
use crate::StoreError;

/// The columns of an [`AlertRow`] (PostgreSQL's `ALERT_COLUMNS`): the tier's
/// name from the policy snapshot, and the alert's distinct rules in byte
/// order (PostgreSQL's C collation) as a JSON array.
macro_rules! alert_columns {
    () => {
        crate::sql::alert_columns!(
            "COALESCE(CAST(a.policy -> 'tiers' -> a.tier ->> 'name' AS TEXT), '')",
            "(SELECT json_group_array(r.rule ORDER BY r.rule) FROM \
               (SELECT DISTINCT f.rule AS rule FROM alert_flags af JOIN flags f ON f.id = af.flag_id \
                WHERE af.alert_id = a.id) r)"
        )
    };
}

/// A stored value that is not what this backend wrote.
fn decode_error(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Database(sqlx::Error::Decode(Box::new(e)))
}

/// PostgreSQL refuses a negative `LIMIT`; SQLite would read it as "no limit".
fn check_limit(limit: i64) -> Result<i64, StoreError> {
    if limit < 0 {
        return Err(StoreError::Database(sqlx::Error::InvalidArgument(
            "LIMIT must not be negative".into(),
        )));
    }
    Ok(limit)
}

async fn fetch_alert(conn: &mut SqliteConnection, id: i64) -> Result<AlertRow, StoreError> {
    let r = sqlx::query(concat!(
        "SELECT ",
        alert_columns!(),
        " FROM alerts a WHERE a.id = $1"
    ))
    .bind(id)
    .fetch_one(&mut *conn)
    .await
    .map_err(classify)?;
    AlertRow::from_row(&r).map_err(classify)
}

async fn event(
    conn: &mut SqliteConnection,
    alert_id: i64,
    actor: &str,
    kind: &str,
    detail: Value,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO alert_events (alert_id, actor, kind, detail, at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(alert_id)
    .bind(actor)
    .bind(kind)
    .bind(detail.to_string())
    .bind(wardwatch_core::clock::engine::now())
    .execute(&mut *conn)
    .await
    .map_err(classify)?;
    Ok(())
}

async fn insert_deliveries(
    conn: &mut SqliteConnection,
    alert_id: i64,
    deliveries: &[NewDelivery],
) -> Result<(), StoreError> {
    for d in deliveries {
        sqlx::query(
            "INSERT INTO deliveries (alert_id, purpose, tier, round, channel, target, idempotency_key, \
             status, next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9) \
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
        .bind(wardwatch_core::clock::engine::now())
        .execute(&mut *conn)
        .await
        .map_err(classify)?;
    }
    Ok(())
}

async fn cancel_pending(
    conn: &mut SqliteConnection,
    alert_id: i64,
    purposes: &[&str],
) -> Result<u64, StoreError> {
    let purposes = serde_json::to_string(purposes).map_err(decode_error)?;
    let res = sqlx::query(
        "UPDATE deliveries SET status = 'cancelled', lease_until = NULL \
         WHERE alert_id = $1 AND status = 'pending' AND purpose IN (SELECT value FROM json_each($2))",
    )
    .bind(alert_id)
    .bind(purposes)
    .execute(&mut *conn)
    .await
    .map_err(classify)?;
    Ok(res.rows_affected())
}

async fn join_flag(
    conn: &mut SqliteConnection,
    alert_id: i64,
    flag_id: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO alert_flags (alert_id, flag_id, joined_at) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING",
    )
    .bind(alert_id)
    .bind(flag_id)
    .bind(wardwatch_core::clock::engine::now())
    .execute(&mut *conn)
    .await
    .map_err(classify)?;
    Ok(())
}

/// Applies one event's plan (PostgreSQL's `PgStore::apply_action`):
/// returns the alert the event went to and a note when it went nowhere.
async fn apply_action(
    tx: &mut SqliteConnection,
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
                .bind(policy.to_string())
                .bind(tier)
                .bind(next_escalation_at)
                .bind(&ev.summary)
                .bind(paged.to_string())
                .fetch_one(&mut *tx)
                .await
                .map_err(classify)?;
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
                .bind(paged.to_string())
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
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
                .bind(paged.map(|p| p.to_string()))
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
            event(tx, a.id, "wardwatch", "evidence", detail).await?;
            if !deliveries.is_empty() {
                // An update already claimed (being sent) was built before
                // this flag joined: it does not count.
                let pending: bool = sqlx::query_scalar(crate::sql::alerts::PENDING_UPDATE_EXISTS)
                    .bind(a.id)
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(classify)?;
                // One pending update carries every flag that joins before
                // it is sent: it is built at send time.
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
                    .await
                    .map_err(classify)?;
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

impl crate::AlertStore for SqliteStore {
    /// Claims up to `limit` due deliveries for `lease`; pages and updates of
    /// alerts no longer open are cancelled instead. Claimed in due order.
    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        lease: Duration,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let limit = check_limit(limit)?;
        let mut tx = begin_write(&self.pool).await?;
        sqlx::query(
            "UPDATE deliveries SET status = 'cancelled', lease_until = NULL \
             WHERE status = 'pending' AND next_attempt_at <= $1 AND EXISTS (SELECT 1 FROM alerts a \
               WHERE a.id = deliveries.alert_id \
               AND ((deliveries.purpose = 'page' AND a.state <> 'open') \
                 OR (deliveries.purpose IN ('update', 'reminder') AND a.state = 'resolved')))",
        )
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        let due: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM deliveries WHERE status = 'pending' AND next_attempt_at <= $1 \
             AND (lease_until IS NULL OR lease_until < $1) ORDER BY next_attempt_at, id LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await
        .map_err(classify)?;
        let mut out = Vec::with_capacity(due.len());
        for id in due {
            let r = sqlx::query(
                "UPDATE deliveries SET lease_until = $2, attempts = attempts + 1 WHERE id = $1 \
                 RETURNING id, alert_id, purpose, tier, round, channel, target, idempotency_key, \
                   attempts, created_at",
            )
            .bind(id)
            .bind(now + lease)
            .fetch_one(&mut *tx)
            .await
            .map_err(classify)?;
            let alert_id: i64 = r.try_get("alert_id").map_err(classify)?;
            let alert = fetch_alert(&mut tx, alert_id).await?;
            out.push(ClaimedDelivery {
                id: r.try_get("id").map_err(classify)?,
                alert_id,
                purpose: r.try_get("purpose").map_err(classify)?,
                tier: r.try_get("tier").map_err(classify)?,
                round: r.try_get("round").map_err(classify)?,
                channel: r.try_get("channel").map_err(classify)?,
                target: r.try_get("target").map_err(classify)?,
                key: r.try_get("idempotency_key").map_err(classify)?,
                attempts: r.try_get("attempts").map_err(classify)?,
                created_at: r.try_get("created_at").map_err(classify)?,
                alert,
            });
        }
        tx.commit().await.map_err(classify)?;
        Ok(out)
    }

    async fn finish_delivery(
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
                    .await
                    .map_err(classify)?;
            }
            (Some(e), Some(at)) => {
                sqlx::query(crate::sql::alerts::RETRY_DELIVERY)
                    .bind(id)
                    .bind(at)
                    .bind(e)
                    .execute(&self.pool)
                    .await
                    .map_err(classify)?;
            }
            (Some(e), None) => {
                // Only a delivery still pending fails: an acknowledgement may
                // have cancelled it while it was being sent.
                sqlx::query(crate::sql::alerts::FAIL_DELIVERY)
                    .bind(id)
                    .bind(e)
                    .execute(&self.pool)
                    .await
                    .map_err(classify)?;
            }
        }
        Ok(())
    }

    async fn fallback_if_undeliverable(
        &self,
        alert_id: i64,
        tier: i32,
        round: i32,
        fallback: NewDelivery,
    ) -> Result<bool, StoreError> {
        let mut tx = begin_write(&self.pool).await?;
        // The configured targets decide; the team's MQTT topic only when a
        // tier has nothing else (`bool_and` is `min` over 0/1 here).
        let all_failed: Option<bool> = sqlx::query_scalar(
            "SELECT COALESCE(min(status = 'failed') FILTER (WHERE channel <> 'mqtt'), \
                             min(status = 'failed')) \
               AND (SELECT state = 'open' FROM alerts WHERE id = $1) FROM deliveries \
             WHERE alert_id = $1 AND purpose = 'page' AND tier = $2 AND round = $3",
        )
        .bind(alert_id)
        .bind(tier)
        .bind(round)
        .fetch_one(&mut *tx)
        .await
        .map_err(classify)?;
        if !all_failed.unwrap_or(false) {
            return Ok(false);
        }
        let summary = format!(
            "notifications for alert {alert_id} could not be delivered at tier {tier}; \
             the team's fallback is told"
        );
        let technical: i64 = sqlx::query_scalar(
            "INSERT INTO alerts (patient_id, team_id, kind, severity, state, opened_at, policy, tier, summary) \
             SELECT patient_id, team_id, 'delivery', 'high', 'open', $3, policy, tier, $2 \
             FROM alerts WHERE id = $1 \
             ON CONFLICT (patient_id, kind) WHERE state <> 'resolved' DO UPDATE SET summary = excluded.summary \
             RETURNING id",
        )
        .bind(alert_id)
        .bind(&summary)
        .bind(wardwatch_core::clock::engine::now())
        .fetch_one(&mut *tx)
        .await
        .map_err(classify)?;
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
        tx.commit().await.map_err(classify)?;
        Ok(true)
    }

    /// The seconds are computed here from whole microseconds, as PostgreSQL
    /// stores and subtracts them, so both backends give the same number.
    async fn acknowledgements_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<Acknowledgement>, StoreError> {
        let rows = sqlx::query(
            "SELECT team_id, opened_at, acknowledged_at FROM alerts WHERE acknowledged_at > $1 \
             ORDER BY acknowledged_at LIMIT 10000",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter()
            .map(|r| {
                let opened: DateTime<Utc> = r.try_get("opened_at").map_err(classify)?;
                let at: DateTime<Utc> = r.try_get("acknowledged_at").map_err(classify)?;
                let micros = at.timestamp_micros() - opened.timestamp_micros();
                Ok(Acknowledgement {
                    team_id: r.try_get("team_id").map_err(classify)?,
                    seconds: micros as f64 / 1e6,
                    at,
                })
            })
            .collect()
    }

    async fn alert_events_since(
        &self,
        after: i64,
        gaps: &[i64],
        limit: i64,
    ) -> Result<Vec<AlertEventRow>, StoreError> {
        let limit = check_limit(limit)?;
        let gaps = serde_json::to_string(gaps).map_err(decode_error)?;
        let rows = sqlx::query(concat!(
            "SELECT e.id AS event_id, e.kind AS event, e.actor AS event_actor, e.at AS event_at, ",
            alert_columns!(),
            " FROM alert_events e JOIN alerts a ON a.id = e.alert_id \
             WHERE e.id > $1 OR e.id IN (SELECT value FROM json_each($2)) ORDER BY e.id LIMIT $3"
        ))
        .bind(after)
        .bind(gaps)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter()
            .map(|r| AlertEventRow::from_row(r).map_err(classify))
            .collect()
    }

    async fn alerts_opened_since(
        &self,
        team: &str,
        since: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        sqlx::query_scalar(crate::sql::alerts::COUNT_TEAM_ALERTS_SINCE)
            .bind(team)
            .bind(since)
            .fetch_one(&self.pool)
            .await
            .map_err(classify)
    }

    async fn last_alert_event_id(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar(crate::sql::alerts::LAST_ALERT_EVENT_ID)
            .fetch_one(&self.pool)
            .await
            .map_err(classify)
    }

    async fn acknowledge_alert(
        &self,
        alert_id: i64,
        user: &str,
        now: DateTime<Utc>,
    ) -> Result<AlertRow, StoreError> {
        let user = nonempty(user, "the user")?;
        let mut tx = begin_write(&self.pool).await?;
        let res = sqlx::query(crate::sql::alerts::ACKNOWLEDGE_ALERT)
            .bind(alert_id)
            .bind(now)
            .bind(&user)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
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
        tx.commit().await.map_err(classify)?;
        Ok(row)
    }

    async fn resolve_alert(
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
        let mut tx = begin_write(&self.pool).await?;
        let res = sqlx::query(crate::sql::alerts::RESOLVE_ALERT)
            .bind(alert_id)
            .bind(now)
            .bind(&user)
            .bind(outcome)
            .bind(note)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
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
        tx.commit().await.map_err(classify)?;
        Ok(row)
    }

    async fn snooze(
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
        let mut tx = begin_write(&self.pool).await?;
        let known: bool = sqlx::query_scalar(crate::sql::records::PATIENT_EXISTS)
            .bind(patient)
            .fetch_one(&mut *tx)
            .await
            .map_err(classify)?;
        if !known {
            return Err(StoreError::Rejected(format!(
                "patient {patient} is not enrolled"
            )));
        }
        let flag = sqlx::query(
            "SELECT severity, CAST(json_extract(evidence, '$.measure') AS REAL) AS measure FROM flags \
             WHERE patient_id = $1 AND rule = $2 AND cleared_at IS NULL",
        )
        .bind(patient)
        .bind(rule)
        .fetch_optional(&mut *tx)
        .await
        .map_err(classify)?;
        let (severity, measure): (String, Option<f64>) = match flag {
            Some(r) => (
                r.try_get("severity").map_err(classify)?,
                r.try_get("measure").map_err(classify)?,
            ),
            None => ("low".into(), None),
        };
        limits.check(&severity, until)?;
        sqlx::query(
            "INSERT INTO snoozes (patient_id, rule, severity, until, by_user, reason, created_at, measure) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(patient)
        .bind(rule)
        .bind(&severity)
        .bind(until)
        .bind(&user)
        .bind(&reason)
        .bind(wardwatch_core::clock::engine::now())
        .bind(measure)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        // Recorded on the open alert too, so its trail says who snoozed what.
        let open: Option<i64> = sqlx::query_scalar(crate::sql::alerts::OPEN_ALERT_OF_PATIENT)
            .bind(patient)
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?;
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
        tx.commit().await.map_err(classify)?;
        Ok(severity)
    }

    /// PostgreSQL does this in one statement (a data-modifying CTE); here
    /// the flags are handed back first, then the snoozes marked ended, in
    /// one transaction.
    async fn end_snoozes(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        // Runs every second: most seconds no snooze ends, so a read on the
        // partial index answers without taking the write lock.
        let ending: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM snoozes WHERE ended_at IS NULL AND until <= $1)",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(classify)?;
        if !ending {
            return Ok(0);
        }
        let mut tx = begin_write(&self.pool).await?;
        // From the ending snoozes to their open flags (not a scan of every
        // flag); GROUP BY gives each flag one event however many ended.
        let handed = sqlx::query(
            "INSERT INTO flag_events (flag_id, patient_id, rule, state, severity, at, summary, evidence, \
               recorded_at) \
             SELECT f.id, f.patient_id, f.rule, 'updated', f.severity, $1, 'snooze ended; ' || f.summary, \
                    f.evidence, $2 \
             FROM snoozes s JOIN flags f ON f.patient_id = s.patient_id AND f.rule = s.rule \
               AND f.cleared_at IS NULL \
             WHERE s.ended_at IS NULL AND s.until <= $1 \
             GROUP BY f.id ORDER BY f.id",
        )
        .bind(now)
        .bind(wardwatch_core::clock::engine::now())
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        sqlx::query("UPDATE snoozes SET ended_at = $1 WHERE ended_at IS NULL AND until <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(handed.rows_affected())
    }

    async fn list_alerts(
        &self,
        state: Option<StateFilter>,
        limit: i64,
    ) -> Result<Vec<AlertRow>, StoreError> {
        <Self as crate::AlertStore>::find_alerts(
            self,
            &AlertFilter {
                state,
                ..AlertFilter::default()
            },
            limit,
        )
        .await
    }

    /// The teams filter is applied before the limit, as on PostgreSQL.
    async fn find_alerts(
        &self,
        filter: &AlertFilter<'_>,
        limit: i64,
    ) -> Result<Vec<AlertRow>, StoreError> {
        let limit = check_limit(limit)?;
        let teams = filter
            .teams
            .map(serde_json::to_string)
            .transpose()
            .map_err(decode_error)?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            alert_columns!(),
            " FROM alerts a WHERE ($1 IS NULL OR a.state = $1 \
               OR ($1 = 'unresolved' AND a.state <> 'resolved')) \
             AND ($2 IS NULL OR a.team_id IN (SELECT value FROM json_each($2))) \
             AND ($3 IS NULL OR a.severity = $3) \
             ORDER BY a.id DESC LIMIT $4"
        ))
        .bind(filter.state.map(StateFilter::as_str))
        .bind(teams)
        .bind(filter.severity.map(wardwatch_core::flag::Severity::as_str))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter()
            .map(|r| AlertRow::from_row(r).map_err(classify))
            .collect()
    }

    async fn alert(&self, id: i64) -> Result<Option<AlertRow>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            alert_columns!(),
            " FROM alerts a WHERE a.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        row.as_ref()
            .map(|r| AlertRow::from_row(r).map_err(classify))
            .transpose()
    }
}

impl crate::EscalationStore for SqliteStore {
    /// Pending events oldest first, each applied and marked in the same
    /// transaction: an event is applied exactly once.
    async fn apply_flag_events<F>(
        &self,
        limit: i64,
        now: DateTime<Utc>,
        mut decide: F,
    ) -> Result<AppliedEvents, StoreError>
    where
        F: FnMut(&PendingFlagEvent, Option<&OpenAlertRow>, Option<&SnoozeRow>) -> AlertAction
            + Send,
    {
        let limit = check_limit(limit)?;
        let mut out = AppliedEvents::default();
        let mut tx = begin_write(&self.pool).await?;
        let events = sqlx::query_as::<_, PendingFlagEvent>(
            "SELECT e.id AS event_id, e.flag_id, e.patient_id, p.team_id, e.rule, f.technical, e.state, \
             e.severity, e.at, e.summary, CAST(json_extract(e.evidence, '$.measure') AS REAL) AS measure \
             FROM flag_events e \
             JOIN flags f ON f.id = e.flag_id JOIN patients p ON p.id = e.patient_id \
             WHERE e.alerted_at IS NULL ORDER BY e.id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&mut *tx)
        .await
        .map_err(classify)?;
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
                 a.paged FROM alerts a WHERE a.patient_id = $1 AND a.kind = $2 AND a.state <> 'resolved'",
            )
            .bind(&ev.patient_id)
            .bind(kind)
            .bind(ev.flag_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?;
            let snooze = sqlx::query_as::<_, SnoozeRow>(crate::sql::alerts::ACTIVE_SNOOZE)
                .bind(&ev.patient_id)
                .bind(&ev.rule)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await
                .map_err(classify)?;
            let action = decide(&ev, open.as_ref(), snooze.as_ref());
            let (alert_id, note) =
                apply_action(&mut tx, &ev, open.as_ref(), action, now, &mut out).await?;
            sqlx::query(crate::sql::alerts::MARK_FLAG_EVENT_ALERTED)
                .bind(ev.event_id)
                .bind(now)
                .bind(alert_id)
                .bind(note)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
            out.events += 1;
        }
        tx.commit().await.map_err(classify)?;
        out.changed.sort_unstable();
        out.changed.dedup();
        Ok(out)
    }

    /// Due open alerts, earliest deadline first, each stepped with `plan`
    /// in one transaction.
    async fn escalate_due<F>(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        mut plan: F,
    ) -> Result<Vec<i64>, StoreError>
    where
        F: FnMut(&DueAlert) -> Option<EscalationApply> + Send,
    {
        let limit = check_limit(limit)?;
        let mut tx = begin_write(&self.pool).await?;
        // Open alerts past their deadline; acknowledged ones past their
        // reminder, or with none scheduled yet (just acknowledged).
        let due_alerts = sqlx::query_as::<_, DueAlert>(
            "SELECT id, team_id, severity, state, tier, round, policy, acknowledged_at, next_escalation_at \
             FROM alerts WHERE (state = 'open' AND next_escalation_at <= $1) \
             OR (state = 'acknowledged' AND (next_escalation_at IS NULL OR next_escalation_at <= $1)) \
             ORDER BY next_escalation_at NULLS FIRST LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await
        .map_err(classify)?;
        let mut done = Vec::new();
        for due in due_alerts {
            let Some(step) = plan(&due) else {
                // A policy that cannot be read: keep escalating on a minute's
                // repeat rather than go quiet.
                sqlx::query(crate::sql::alerts::SET_NEXT_ESCALATION)
                    .bind(due.id)
                    .bind(now + Duration::minutes(1))
                    .execute(&mut *tx)
                    .await
                    .map_err(classify)?;
                continue;
            };
            sqlx::query(crate::sql::alerts::ESCALATE_ALERT)
                .bind(due.id)
                .bind(step.tier)
                .bind(step.round)
                .bind(step.next_escalation_at)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
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
        tx.commit().await.map_err(classify)?;
        Ok(done)
    }
}
