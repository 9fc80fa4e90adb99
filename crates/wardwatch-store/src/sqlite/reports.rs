//! The SQLite side of [`crate::reports`]: per-team figures over a period,
//! the same figures as PostgreSQL's (the conformance suite compares them).

use super::classify;
use super::views::{percentile_cont, secs_between, trunc_us};
use super::SqliteStore;
use crate::reports::{Adherence, AlertCount, TeamReport, TimeToAck};
use crate::StoreError;
use chrono::{DateTime, Utc};
use sqlx::Row;
use std::collections::HashMap;

impl SqliteStore {
    pub(super) async fn team_report_of(
        &self,
        team: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        expected_interval_mins: &HashMap<String, u32>,
    ) -> Result<TeamReport, StoreError> {
        let (from, to, now) = (
            trunc_us(from),
            trunc_us(to),
            trunc_us(wardwatch_core::clock::engine::now()),
        );

        // Patients monitored in the period, clipped to it (and to now): the
        // clipping is done here, as created_at is written by SQLite itself
        // (a "Z" suffix) and would not compare as text with bound times.
        let patients = sqlx::query(
            "SELECT id, pathway, created_at, discharged_at FROM patients \
             WHERE team_id = $1 ORDER BY id",
        )
        .bind(team)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        let mut adherence = Vec::with_capacity(patients.len());
        let mut monitored_secs = 0.0;
        for r in &patients {
            let created: DateTime<Utc> = r.try_get("created_at").map_err(classify)?;
            let discharged: Option<DateTime<Utc>> = r.try_get("discharged_at").map_err(classify)?;
            let (created, discharged) = (trunc_us(created), discharged.map(trunc_us));
            if created >= to || discharged.is_some_and(|d| d <= from) {
                continue;
            }
            let id: String = r.try_get("id").map_err(classify)?;
            let pathway: String = r.try_get("pathway").map_err(classify)?;
            let start = created.max(from);
            let stop = discharged.map_or(to, |d| d.min(to)).min(now);
            let secs = secs_between(start, stop).max(0.0);
            let received: i64 = sqlx::query_scalar(
                "SELECT count(DISTINCT time) FROM readings WHERE patient_id = $1 \
                   AND time >= $2 AND time < $3 AND source <> 'manual'",
            )
            .bind(&id)
            .bind(start)
            .bind(stop)
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?;
            monitored_secs += secs;
            let expected = expected_interval_mins
                .get(&pathway)
                .filter(|m| **m > 0)
                .map(|m| (secs / (f64::from(*m) * 60.0)).floor() as i64);
            adherence.push(Adherence {
                patient_id: id,
                pathway,
                monitored_hours: secs / 3600.0,
                received,
                expected,
            });
        }

        let alerts: Vec<AlertCount> = sqlx::query_as(
            "SELECT a.kind, r.rule, a.severity, count(*) AS count FROM alerts a \
             JOIN (SELECT DISTINCT af.alert_id AS alert_id, f.rule AS rule FROM alert_flags af \
               JOIN flags f ON f.id = af.flag_id) r ON r.alert_id = a.id \
             WHERE a.team_id = $1 AND a.opened_at >= $2 AND a.opened_at < $3 \
             GROUP BY a.kind, r.rule, a.severity ORDER BY a.kind, r.rule, a.severity",
        )
        .bind(team)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;

        // Time to acknowledge: percentile_cont and max over exact durations.
        let opened_rows = sqlx::query(
            "SELECT opened_at, acknowledged_at FROM alerts \
             WHERE team_id = $1 AND opened_at >= $2 AND opened_at < $3",
        )
        .bind(team)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        let mut waits = Vec::with_capacity(opened_rows.len());
        for r in &opened_rows {
            let opened: DateTime<Utc> = r.try_get("opened_at").map_err(classify)?;
            let acked: Option<DateTime<Utc>> = r.try_get("acknowledged_at").map_err(classify)?;
            if let Some(acked) = acked {
                waits.push(secs_between(trunc_us(opened), trunc_us(acked)));
            }
        }
        waits.sort_by(f64::total_cmp);
        let opened = opened_rows.len() as i64;
        let acknowledged = waits.len() as i64;

        let esc = sqlx::query(
            "SELECT count(*) AS escalations, count(DISTINCT e.alert_id) AS alerts FROM alert_events e \
             JOIN alerts a ON a.id = e.alert_id \
             WHERE a.team_id = $1 AND e.kind = 'escalated' AND e.at >= $2 AND e.at < $3 \
               AND CAST(e.detail ->> 'tier' AS INTEGER) > CAST(e.detail ->> 'from_tier' AS INTEGER)",
        )
        .bind(team)
        .bind(from)
        .bind(to)
        .fetch_one(&self.pool)
        .await
        .map_err(classify)?;

        Ok(TeamReport {
            adherence,
            patient_days: monitored_secs / 86_400.0,
            alerts,
            alerts_opened: opened,
            time_to_ack: TimeToAck {
                acknowledged,
                unacknowledged: opened - acknowledged,
                p50_secs: percentile_cont(&waits, 0.5),
                p90_secs: percentile_cont(&waits, 0.9),
                max_secs: waits.last().copied(),
            },
            escalations: esc.try_get("escalations").map_err(classify)?,
            alerts_escalated: esc.try_get("alerts").map_err(classify)?,
        })
    }
}
