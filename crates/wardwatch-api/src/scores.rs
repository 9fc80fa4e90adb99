//! The current NEWS2 of a patient and the ward board's patient rows, from
//! the latest stored readings (the same chart code the rules run).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use wardwatch_core::Vital;
use wardwatch_rules::news2::{self, Acvpu, Observations, OxygenSource, Score, SpO2Scale};
use wardwatch_store::prelude::*;

use crate::{patient_in_reach, record, refuse, store_error, ApiState, Caller, Problem};

/// A reading counts towards the score for this long (the pathways' default).
const FRESHNESS_SECS: i64 = 3600;

/// The latest value of each vital, with its age.
fn vitals(
    latest: &[(String, String, f64, DateTime<Utc>)],
    patient: &str,
    now: DateTime<Utc>,
) -> Vec<serde_json::Value> {
    latest
        .iter()
        .filter(|r| r.0 == patient)
        .map(|(_, vital, value, at)| {
            serde_json::json!({"vital": vital, "value": value, "at": at,
                "age_secs": (now - *at).num_seconds().max(0)})
        })
        .collect()
}

/// NEWS2 from the latest readings within the freshness window.
fn current_score(
    latest: &[(String, String, f64, DateTime<Utc>)],
    patient: &str,
    scale: i16,
    care_plan_oxygen: bool,
    now: DateTime<Utc>,
) -> Result<Score, String> {
    let fresh = |v: Vital| {
        latest
            .iter()
            .find(|r| {
                r.0 == patient && r.1 == v.as_str() && (now - r.3).num_seconds() <= FRESHNESS_SECS
            })
            .map(|r| r.2)
    };
    let on_oxygen = match fresh(Vital::SupplementalOxygen) {
        Some(x) => (x >= 0.5, OxygenSource::Reading),
        None => (care_plan_oxygen, OxygenSource::CarePlan),
    };
    let obs = Observations {
        respiration_rate: fresh(Vital::RespiratoryRate),
        spo2: fresh(Vital::Spo2),
        on_oxygen: Some(on_oxygen),
        systolic_bp: fresh(Vital::SystolicBp),
        pulse: fresh(Vital::HeartRate),
        consciousness: fresh(Vital::Consciousness).and_then(Acvpu::from_code),
        temperature: fresh(Vital::BodyTemperature),
    };
    let scale = if scale == 2 {
        SpO2Scale::Two
    } else {
        SpO2Scale::One
    };
    news2::score(&obs, scale).map_err(|e| e.to_string())
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
    let care_plan_oxygen = rows.first().is_some_and(|r| r.care_plan_oxygen);
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
    let now = Utc::now();
    let (score, why) = match current_score(&latest, &p.id, p.spo2_scale, care_plan_oxygen, now) {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(e)),
    };
    Json(serde_json::json!({
        "patient_id": p.id,
        "news2": score.map(|s| serde_json::json!({
            "total": s.total, "band": s.band, "partial": s.partial,
            "oxygen_assumed": s.oxygen_assumed, "summary": s.summary(),
            "response": s.band.clinical_response(), "breakdown": s.breakdown,
        })),
        "not_scored": why,
        "freshness_secs": FRESHNESS_SECS,
        "readings": vitals(&latest, &p.id, now),
    }))
    .into_response()
}

fn severity_rank(s: Option<&str>) -> u8 {
    match s {
        Some("emergency") => 0,
        Some("high") => 1,
        Some("medium") => 2,
        Some("low") => 3,
        _ => 4,
    }
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
    if let Err(r) = record(&state, &c, None, StatusCode::OK).await {
        return r;
    }
    let now = Utc::now();
    let trend = |patient: &str, vital: &str| {
        trends
            .iter()
            .filter(|t| t.0 == patient && t.1 == vital)
            .map(|t| serde_json::json!({"hour": t.2, "mean": (t.3 * 10.0).round() / 10.0}))
            .collect::<Vec<_>>()
    };
    let mut rows: Vec<(u8, i32, serde_json::Value)> = patients
        .iter()
        .map(|p| {
            let score = current_score(&latest, &p.id, p.spo2_scale, p.care_plan_oxygen, now).ok();
            let total = score.map_or(-1, |s| i32::from(s.total));
            let row = serde_json::json!({
                "id": p.id, "pathway": p.pathway, "alert_severity": p.alert_severity,
                "silent": p.silent,
                "news2": score.map(|s| serde_json::json!({"total": s.total, "band": s.band, "partial": s.partial})),
                "vitals": vitals(&latest, &p.id, now),
                "trends": {"spo2": trend(&p.id, "spo2"), "heart_rate": trend(&p.id, "heart_rate")},
            });
            (severity_rank(p.alert_severity.as_deref()), -total, row)
        })
        .collect();
    rows.sort_by_key(|r| (r.0, r.1));
    Json(rows.into_iter().map(|r| r.2).collect::<Vec<_>>()).into_response()
}
