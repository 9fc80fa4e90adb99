//! The PostgreSQL side of [`crate::reports`]: per-team figures over a period.

use crate::reports::*;
use crate::{PgStore, StoreError};
use chrono::{DateTime, Utc};
use sqlx::Row;
use std::collections::HashMap;

impl PgStore {
    /// The report for `team` over `[from, to)`. `expected_interval_mins`
    /// gives each pathway's expected cadence. Patients count for the team
    /// they are on now (a transfer moves their history with them).
    pub async fn team_report(
        &self,
        team: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        expected_interval_mins: &HashMap<String, u32>,
    ) -> Result<TeamReport, StoreError> {
        let rows = sqlx::query(
            "WITH p AS ( \
               SELECT id, pathway, GREATEST(created_at, $2) AS start, \
                      LEAST(COALESCE(discharged_at, 'infinity'), $3, now()) AS stop \
               FROM patients WHERE team_id = $1 AND created_at < $3 \
                 AND (discharged_at IS NULL OR discharged_at > $2)) \
             SELECT p.id, p.pathway, \
               GREATEST(EXTRACT(EPOCH FROM (p.stop - p.start)), 0)::float8 AS secs, \
               (SELECT count(DISTINCT r.time) FROM readings r WHERE r.patient_id = p.id \
                  AND r.time >= p.start AND r.time < p.stop AND r.source <> 'manual') AS received \
             FROM p ORDER BY p.id",
        )
        .bind(team)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        let mut adherence = Vec::with_capacity(rows.len());
        let mut monitored_secs = 0.0;
        for r in &rows {
            let pathway: String = r.try_get("pathway")?;
            let secs: f64 = r.try_get("secs")?;
            monitored_secs += secs;
            let expected = expected_interval_mins
                .get(&pathway)
                .filter(|m| **m > 0)
                .map(|m| (secs / (f64::from(*m) * 60.0)).floor() as i64);
            adherence.push(Adherence {
                patient_id: r.try_get("id")?,
                pathway,
                monitored_hours: secs / 3600.0,
                received: r.try_get("received")?,
                expected,
            });
        }

        let alerts: Vec<AlertCount> = sqlx::query_as(
            "SELECT a.kind, r.rule, a.severity, count(*) AS count FROM alerts a \
             CROSS JOIN LATERAL (SELECT DISTINCT f.rule FROM alert_flags af \
               JOIN flags f ON f.id = af.flag_id WHERE af.alert_id = a.id) r \
             WHERE a.team_id = $1 AND a.opened_at >= $2 AND a.opened_at < $3 \
             GROUP BY a.kind, r.rule, a.severity ORDER BY a.kind, r.rule, a.severity",
        )
        .bind(team)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;

        let ack = sqlx::query(
            "SELECT count(*) AS opened, count(acknowledged_at) AS acknowledged, \
               percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM acknowledged_at - opened_at)) AS p50, \
               percentile_cont(0.9) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM acknowledged_at - opened_at)) AS p90, \
               max(EXTRACT(EPOCH FROM acknowledged_at - opened_at))::float8 AS longest \
             FROM alerts WHERE team_id = $1 AND opened_at >= $2 AND opened_at < $3",
        )
        .bind(team)
        .bind(from)
        .bind(to)
        .fetch_one(&self.pool)
        .await?;
        let opened: i64 = ack.try_get("opened")?;
        let acknowledged: i64 = ack.try_get("acknowledged")?;

        let esc = sqlx::query(
            "SELECT count(*) AS escalations, count(DISTINCT e.alert_id) AS alerts FROM alert_events e \
             JOIN alerts a ON a.id = e.alert_id \
             WHERE a.team_id = $1 AND e.kind = 'escalated' AND e.at >= $2 AND e.at < $3 \
               AND (e.detail->>'tier')::int > (e.detail->>'from_tier')::int",
        )
        .bind(team)
        .bind(from)
        .bind(to)
        .fetch_one(&self.pool)
        .await?;

        Ok(TeamReport {
            adherence,
            patient_days: monitored_secs / 86_400.0,
            alerts,
            alerts_opened: opened,
            time_to_ack: TimeToAck {
                acknowledged,
                unacknowledged: opened - acknowledged,
                p50_secs: ack.try_get("p50")?,
                p90_secs: ack.try_get("p90")?,
                max_secs: ack.try_get("longest")?,
            },
            escalations: esc.try_get("escalations")?,
            alerts_escalated: esc.try_get("alerts")?,
        })
    }
}
