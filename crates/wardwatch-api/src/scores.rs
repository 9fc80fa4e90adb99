//! The current NEWS2 of a patient and the ward board's patient rows, from
//! the latest stored readings (the same chart code the rules run).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use wardwatch_core::Vital;
use wardwatch_rules::clinical::{self, BoardNews2};
use wardwatch_rules::news2::SpO2Scale;
use wardwatch_rules::threshold::Severity;
use wardwatch_store::prelude::*;
use wardwatch_store::rules::PatientRow;

use wardwatch_store::views::LatestReading;

use crate::{patient_in_reach, record, refuse, store_error, ApiState, Caller, Problem};

/// The latest value of each vital, with its age.
fn vitals(latest: &[LatestReading], patient: &str, now: DateTime<Utc>) -> Vec<serde_json::Value> {
    latest
        .iter()
        .filter(|r| r.patient_id == patient)
        .map(|r| {
            serde_json::json!({"vital": r.vital, "value": r.value, "at": r.time,
                "age_secs": (now - r.time).num_seconds().max(0)})
        })
        .collect()
}

/// NEWS2 as the board says it, from the latest readings, with the rules'
/// own policies (the patient's pathway's freshness and cadence, NEWS2
/// applicability, partial sets as lower bounds).
fn board_score(
    state: &ApiState,
    latest: &[LatestReading],
    row: &PatientRow,
    now: DateTime<Utc>,
) -> Option<BoardNews2> {
    let pathway = state.catalog.pathway(&row.pathway)?;
    let person = clinical::person_applicability(row.date_of_birth, row.pregnant, now.date_naive());
    let scale = if row.spo2_scale == 2 {
        SpO2Scale::Two
    } else {
        SpO2Scale::One
    };
    let last = |v: Vital| {
        latest
            .iter()
            .find(|r| r.patient_id == row.id && r.vital == v.as_str())
            .map(|r| (r.value, r.time.timestamp()))
    };
    Some(clinical::board_news2(
        last,
        &pathway,
        person,
        scale,
        row.care_plan_oxygen,
        now.timestamp(),
    ))
}

/// The board's NEWS2 as JSON: its status and words, and the score (a lower
/// bound for `partial`) with its breakdown.
fn news2_json(b: &BoardNews2) -> serde_json::Value {
    let score = match b {
        BoardNews2::Complete { score } | BoardNews2::Partial { score } => Some(score),
        BoardNews2::Unscorable { partial, .. } => partial.as_ref(),
        BoardNews2::NotApplicable { .. } => None,
    };
    let mut v = serde_json::to_value(b).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("words".into(), b.words().into());
        o.insert("explain".into(), b.explain().into());
        if let Some(s) = score {
            o.insert("total".into(), s.total.into());
            o.insert(
                "band".into(),
                serde_json::to_value(s.band).unwrap_or_default(),
            );
            o.insert("partial".into(), s.partial.into());
            o.insert("lower_bound".into(), s.lower_bound.into());
            o.insert("summary".into(), s.summary().into());
            o.insert("response".into(), s.band.clinical_response().into());
            o.insert(
                "breakdown".into(),
                serde_json::to_value(s.breakdown).unwrap_or_default(),
            );
            o.insert(
                "missing".into(),
                serde_json::to_value(s.missing).unwrap_or_default(),
            );
            o.insert("oxygen_assumed".into(), s.oxygen_assumed.into());
        }
    }
    v
}

/// `GET /api/v1/patients/{id}/score`: the current NEWS2 with its breakdown
/// and the age of every reading it rests on, or why there is none.
pub(crate) async fn patient_score(
    State(state): State<ApiState>,
    c: Caller,
    Path(id): Path<String>,
) -> Response {
    let p = match patient_in_reach(&state, &c, &id).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let rows = match state
        .store
        .patient_rows(wardwatch_store::rules::PatientFilter::Ids(
            std::slice::from_ref(&p.id),
        ))
        .await
    {
        Ok(r) => r,
        Err(e) => return store_error(e),
    };
    let latest = match state
        .store
        .latest_readings(std::slice::from_ref(&p.id))
        .await
    {
        Ok(l) => l,
        Err(e) => return store_error(e),
    };
    if let Err(r) = record(&state, &c, Some(&p.id), StatusCode::OK).await {
        return r;
    }
    let now = wardwatch_core::clock::engine::now();
    let board = rows
        .first()
        .and_then(|row| board_score(&state, &latest, row, now));
    let freshness = state
        .catalog
        .pathway(&p.pathway)
        .map(|pw| clinical::freshness_secs(&pw));
    let complete = match &board {
        Some(BoardNews2::Complete { .. }) => board.as_ref().map(news2_json),
        _ => None,
    };
    Json(serde_json::json!({
        "patient_id": p.id,
        // A complete score only; anything else is said in `board`.
        "news2": complete,
        "board": board.as_ref().map(news2_json),
        "not_scored": match &board {
            Some(b) => b.explain(),
            None => Some(format!("pathway {:?} is not configured", p.pathway)),
        },
        "freshness_secs": freshness,
        "readings": vitals(&latest, &p.id, now),
    }))
    .into_response()
}

fn severity_rank(s: Option<&str>) -> u8 {
    clinical::severity_rank(s.and_then(Severity::parse))
}

/// `GET /api/v1/teams/{team}/patients`: the board's rows, most urgent first
/// (open alert severity, then NEWS2).
pub(crate) async fn team_patients(
    State(state): State<ApiState>,
    c: Caller,
    Path(team): Path<String>,
) -> Response {
    let allowed =
        c.is(&["admin"]) || (c.is(&["nurse", "clinician"]) && c.principal.teams.contains(&team));
    if !allowed {
        return refuse(&state, &c, None, Problem::not_found("team")).await;
    }
    let patients = match state.store.team_patients(&team).await {
        Ok(p) => p,
        Err(e) => return store_error(e),
    };
    let ids: Vec<String> = patients.iter().map(|p| p.id.clone()).collect();
    let latest = match state.store.latest_readings(&ids).await {
        Ok(l) => l,
        Err(e) => return store_error(e),
    };
    let trends = match state
        .store
        .hourly_trends(&ids, &["spo2", "heart_rate"])
        .await
    {
        Ok(t) => t,
        Err(e) => return store_error(e),
    };
    // A board read names every patient it showed.
    let detail = serde_json::json!({"patients": ids});
    if let Err(r) = crate::record_detail(&state, &c, None, StatusCode::OK, detail).await {
        return r;
    }
    let now = wardwatch_core::clock::engine::now();
    let trend = |patient: &str, vital: &str| {
        trends
            .iter()
            .filter(|t| t.patient_id == patient && t.vital == vital)
            .map(|t| serde_json::json!({"hour": t.hour, "mean": (t.mean * 10.0).round() / 10.0}))
            .collect::<Vec<_>>()
    };
    let settings = match state
        .store
        .patient_rows(wardwatch_store::rules::PatientFilter::Ids(&ids))
        .await
    {
        Ok(r) => r,
        Err(e) => return store_error(e),
    };
    let mut rows: Vec<(u8, i32, serde_json::Value)> = patients
        .iter()
        .map(|p| {
            let board = settings
                .iter()
                .find(|r| r.id == p.id)
                .and_then(|r| board_score(&state, &latest, r, now));
            let total = match &board {
                Some(BoardNews2::Complete { score } | BoardNews2::Partial { score }) => {
                    i32::from(score.total)
                }
                _ => -1,
            };
            let row = serde_json::json!({
                "id": p.id, "pathway": p.pathway, "alert_severity": p.alert_severity,
                "silent": p.silent, "silent_devices": p.silent_devices,
                "news2": board.as_ref().map(news2_json),
                "vitals": vitals(&latest, &p.id, now),
                "trends": {"spo2": trend(&p.id, "spo2"), "heart_rate": trend(&p.id, "heart_rate")},
            });
            (severity_rank(p.alert_severity.as_deref()), -total, row)
        })
        .collect();
    rows.sort_by_key(|r| (r.0, r.1));
    Json(rows.into_iter().map(|r| r.2).collect::<Vec<_>>()).into_response()
}
