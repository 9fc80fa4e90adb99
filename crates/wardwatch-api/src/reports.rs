//! `GET /api/v1/teams/{team}/report?from=…&to=…`: a team's figures over a
//! period, for ward managers: patients monitored, device adherence
//! (readings received against what each pathway expects), alerts per
//! patient-day by rule and severity, time to acknowledge, escalations.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use wardwatch_store::prelude::*;

use crate::{record, refuse, store_problem, ApiState, Caller, Problem};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Period {
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
}

/// Rounds to what a report reader needs.
fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

pub(crate) async fn team_report(
    State(state): State<ApiState>,
    c: Caller,
    Path(team): Path<String>,
    query: Result<Query<Period>, QueryRejection>,
) -> Response {
    if !(c.is(&["admin"]) || c.staff_of(&team)) {
        return refuse(&state, &c, None, Problem::not_found("team")).await;
    }
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return refuse(&state, &c, None, Problem::bad_request(&e.body_text())).await,
    };
    let to = q.to.unwrap_or_else(wardwatch_core::clock::engine::now);
    let from = q.from.unwrap_or(to - chrono::Duration::days(7));
    if from >= to || to - from > chrono::Duration::days(366) {
        let p = Problem::bad_request("from must be before to, and the period at most 366 days");
        return refuse(&state, &c, None, p).await;
    }
    let r = match state
        .store
        .team_report(&team, from, to, &state.catalog.cadences())
        .await
    {
        Ok(r) => r,
        Err(e) => return store_problem(e).into_response(),
    };
    if let Err(resp) = record(&state, &c, None, StatusCode::OK).await {
        return resp;
    }
    let received: i64 = r.adherence.iter().map(|a| a.received).sum();
    let expected: i64 = r.adherence.iter().filter_map(|a| a.expected).sum();
    let ratio = |got: i64, want: i64| (want > 0).then(|| round(got as f64 / want as f64, 3));
    let per_day = |n: i64| (r.patient_days > 0.0).then(|| round(n as f64 / r.patient_days, 3));
    Json(serde_json::json!({
        "team": team,
        "from": from,
        "to": to,
        "patients_monitored": r.adherence.len(),
        "patient_days": round(r.patient_days, 3),
        "adherence": {
            "received": received,
            "expected": expected,
            "ratio": ratio(received, expected),
            "patients": r.adherence.iter().map(|a| serde_json::json!({
                "patient_id": a.patient_id, "pathway": a.pathway,
                "monitored_hours": round(a.monitored_hours, 2),
                "received": a.received, "expected": a.expected,
                "ratio": a.expected.and_then(|e| ratio(a.received, e)),
            })).collect::<Vec<_>>(),
        },
        "alerts": {
            "opened": r.alerts_opened,
            "per_patient_day": per_day(r.alerts_opened),
            "by_rule": r.alerts.iter().map(|a| serde_json::json!({
                "kind": a.kind, "rule": a.rule, "severity": a.severity,
                "count": a.count, "per_patient_day": per_day(a.count),
            })).collect::<Vec<_>>(),
        },
        "time_to_acknowledge": {
            "acknowledged": r.time_to_ack.acknowledged,
            "unacknowledged": r.time_to_ack.unacknowledged,
            "p50_secs": r.time_to_ack.p50_secs.map(|x| round(x, 1)),
            "p90_secs": r.time_to_ack.p90_secs.map(|x| round(x, 1)),
            "max_secs": r.time_to_ack.max_secs.map(|x| round(x, 1)),
        },
        "escalations": {
            "count": r.escalations,
            "alerts_escalated": r.alerts_escalated,
        },
        // How the figures are counted, so a reader does not have to guess.
        "definitions": {
            "received": "device measurement occasions (distinct measurement times, manual entries excluded) while monitored",
            "expected": "monitored minutes divided by the pathway's expected_interval_mins",
            "patient_days": "sum over patients of the time monitored within the period",
            "team": "patients and alerts count for the team they are on now",
        },
    }))
    .into_response()
}
