//! Changes to a patient's record: enrolment, transfer, discharge, personal
//! limits, observations typed in by staff, and correction notes on
//! readings. Every change is audited with who, and the clinical ones with
//! why.
//!
//! Who may do what: enrolment, transfer and discharge are for the team's
//! nurses and clinicians and for admins; personal limits are a clinical
//! decision, for the team's clinicians only; observations are typed in by
//! the team's nurses and clinicians; notes on readings come from the
//! patient, their proxy or the team's staff.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use tokio::sync::mpsc;
use wardwatch_core::{NhsNumber, PatientId, Vital, VitalValue};
use wardwatch_store::prelude::*;
use wardwatch_store::records::{Enrolment, ManualEntry};
use wardwatch_store::rules::{LimitRow, Setting};

use crate::{
    json_body, patient_in_reach, record_detail, refuse, store_problem, ApiState, Caller, Problem,
};

/// How far ahead of the server's clock a typed-in time may be (clock skew
/// of the PC it was typed on), and how far back an observation may be
/// entered: older ones belong in the notes, not in live scoring.
const MAX_FUTURE_SECS: i64 = 300;
const MAX_AGE_DAYS: i64 = 7;

impl Caller {
    /// A nurse or clinician of `team`.
    pub(crate) fn staff_of(&self, team: &str) -> bool {
        self.is(&["nurse", "clinician"]) && self.principal.teams.iter().any(|t| t == team)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnrolBody {
    id: String,
    team: String,
    pathway: String,
    nhs_number: Option<String>,
    date_of_birth: NaiveDate,
}

/// `POST /api/v1/patients`: enrols a patient on a team and pathway.
pub(crate) async fn enrol(
    State(state): State<ApiState>,
    c: Caller,
    body: Result<Json<EnrolBody>, JsonRejection>,
) -> Response {
    if !c.is(&["admin", "nurse", "clinician"]) {
        return refuse(&state, &c, None, Problem::not_found("resource")).await;
    }
    let b = match json_body(body) {
        Ok(b) => b,
        Err(p) => return refuse(&state, &c, None, p).await,
    };
    if !c.is(&["admin"]) && !c.staff_of(&b.team) {
        return refuse(&state, &c, None, Problem::not_found("team")).await;
    }
    let enrolment = match check_enrolment(&state, b) {
        Ok(e) => e,
        Err(p) => return refuse(&state, &c, None, p).await,
    };
    if let Err(p) = team_exists(&state, &enrolment.team).await {
        return refuse(&state, &c, None, p).await;
    }
    let id = enrolment.id.as_str().to_string();
    if let Err(e) = state
        .store
        .enrol_patient(&enrolment, &c.principal.user_id)
        .await
    {
        if let wardwatch_store::StoreError::Rejected(reason) = &e {
            if !conflict_in_reach(&state, &c, &enrolment).await {
                // The real reason stays in the audit; the caller learns
                // nothing about a record on another team.
                let p = Problem::new(
                    StatusCode::CONFLICT,
                    "Not possible",
                    "this patient cannot be enrolled with these details; an administrator can \
                     check for an existing record"
                        .into(),
                );
                let status = StatusCode::CONFLICT;
                let detail = serde_json::json!({"reason": reason, "answered": p.detail});
                if let Err(r) = record_detail(&state, &c, None, status, detail).await {
                    return r;
                }
                return p.into_response();
            }
        }
        return refuse(&state, &c, None, store_problem(e)).await;
    }
    let detail = serde_json::json!({"team": enrolment.team, "pathway": enrolment.pathway});
    if let Err(r) = record_detail(&state, &c, Some(&id), StatusCode::CREATED, detail).await {
        return r;
    }
    (
        StatusCode::CREATED,
        [(
            axum::http::header::LOCATION,
            format!("/api/v1/patients/{id}"),
        )],
        Json(serde_json::json!({
            "id": id, "team_id": enrolment.team, "pathway": enrolment.pathway,
            "nhs_number": enrolment.nhs_number.map(|n| n.to_string()),
            "date_of_birth": enrolment.date_of_birth,
        })),
    )
        .into_response()
}

/// Whether the record an enrolment collided with (same id or NHS number)
/// is one the caller may see: admins always, staff when it is on one of
/// their teams. Otherwise a refusal must not tell them it exists.
async fn conflict_in_reach(state: &ApiState, c: &Caller, e: &Enrolment) -> bool {
    if c.is(&["admin"]) {
        return true;
    }
    let by_nhs = match &e.nhs_number {
        Some(n) => state
            .store
            .patient_by_nhs_number(n.as_str())
            .await
            .ok()
            .flatten()
            .map(|place| place.team_id),
        None => None,
    };
    let by_id = state.store.team_of(e.id.as_str()).await.ok().flatten();
    let teams: Vec<String> = by_nhs.into_iter().chain(by_id).collect();
    !teams.is_empty() && teams.iter().all(|t| c.staff_of(t))
}

/// A patient may only be put on a team someone runs: one with its own
/// policy file or with at least one member. A typo would otherwise leave
/// the patient on nobody's board. The CLI applies the same rule.
async fn team_exists(state: &ApiState, team: &str) -> Result<(), Problem> {
    team_is_run(state.catalog.teams.as_ref(), &state.store, team)
        .await
        .map_err(|e| match e {
            TeamCheck::NobodyRunsIt(message) => {
                Problem::new(StatusCode::CONFLICT, "Not possible", message)
            }
            TeamCheck::Store(e) => store_problem(e),
        })
}

/// Why [`team_is_run`] refused.
#[derive(Debug)]
pub enum TeamCheck {
    /// No policy file and no members.
    NobodyRunsIt(String),
    /// The store could not say.
    Store(wardwatch_store::StoreError),
}

impl std::fmt::Display for TeamCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NobodyRunsIt(m) => f.write_str(m),
            Self::Store(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for TeamCheck {}

/// Whether someone runs `team`: a policy file of its own, or an active
/// member.
pub async fn team_is_run(
    teams: Option<&wardwatch_alerting::policy::Teams>,
    store: &wardwatch_store::Backend,
    team: &str,
) -> Result<(), TeamCheck> {
    if teams.is_some_and(|ts| ts.iter().any(|t| t.id == team)) {
        return Ok(());
    }
    let staffed = store
        .users()
        .await
        .map_err(TeamCheck::Store)?
        .iter()
        .any(|u| !u.disabled && u.teams.iter().any(|t| t == team));
    if staffed {
        Ok(())
    } else {
        Err(TeamCheck::NobodyRunsIt(format!(
            "team {team:?} has no policy file and no members: nobody would see this patient"
        )))
    }
}

fn check_enrolment(state: &ApiState, b: EnrolBody) -> Result<Enrolment, Problem> {
    let id = PatientId::new(b.id).map_err(|e| Problem::bad_request(&e.to_string()))?;
    let team = b.team.trim().to_string();
    if team.is_empty()
        || !team
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    {
        return Err(Problem::bad_request(
            "team must be letters, digits, '-', '_' or '.'",
        ));
    }
    if state.catalog.pathway(&b.pathway).is_none() {
        let known: Vec<String> = state.catalog.cadences().into_keys().collect();
        let mut known: Vec<&str> = known.iter().map(String::as_str).collect();
        known.sort_unstable();
        return Err(Problem::bad_request(&format!(
            "unknown pathway {:?}; known: {}",
            b.pathway,
            known.join(", ")
        )));
    }
    let nhs_number = b
        .nhs_number
        .as_deref()
        .map(NhsNumber::parse)
        .transpose()
        .map_err(|e| Problem::bad_request(&e.to_string()))?;
    let today = wardwatch_core::clock::engine::now().date_naive();
    if b.date_of_birth > today || b.date_of_birth < today - chrono::Days::new(130 * 366) {
        return Err(Problem::bad_request(
            "date_of_birth must be a past date within the last 130 years",
        ));
    }
    Ok(Enrolment {
        id,
        team,
        pathway: b.pathway,
        nhs_number,
        date_of_birth: Some(b.date_of_birth),
    })
}

/// The patient if the caller is admin or staff of the patient's team.
async fn patient_for_admin_or_staff(
    state: &ApiState,
    c: &Caller,
    id: &str,
) -> Result<wardwatch_store::views::PatientView, Response> {
    let p = patient_in_reach(state, c, id).await?;
    if c.is(&["admin"]) || c.staff_of(&p.team_id) {
        Ok(p)
    } else {
        Err(refuse(state, c, None, Problem::not_found("patient")).await)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TransferBody {
    team: String,
    reason: String,
}

/// `POST /api/v1/patients/{id}/transfer`: hands the patient and their open
/// alerts to another team.
pub(crate) async fn transfer(
    State(state): State<ApiState>,
    c: Caller,
    Path(id): Path<String>,
    body: Result<Json<TransferBody>, JsonRejection>,
) -> Response {
    let p = match patient_for_admin_or_staff(&state, &c, &id).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let pid = Some(p.id.as_str());
    let b = match json_body(body) {
        Ok(b) => b,
        Err(e) => return refuse(&state, &c, pid, e).await,
    };
    let Ok(patient) = PatientId::new(p.id.clone()) else {
        return refuse(&state, &c, pid, Problem::not_found("patient")).await;
    };
    if let Err(e) = team_exists(&state, &b.team).await {
        return refuse(&state, &c, pid, e).await;
    }
    let policy = state.catalog.team_policy(&b.team);
    match state
        .store
        .transfer(
            &patient,
            &b.team,
            policy.as_ref(),
            &c.principal.user_id,
            &b.reason,
        )
        .await
    {
        Ok(moved) => {
            let detail = serde_json::json!({"from": p.team_id, "to": b.team, "reason": b.reason,
                "alerts_moved": moved});
            if let Err(r) = record_detail(&state, &c, pid, StatusCode::OK, detail).await {
                return r;
            }
            Json(serde_json::json!({"id": p.id, "team_id": b.team, "alerts_moved": moved}))
                .into_response()
        }
        Err(e) => refuse(&state, &c, pid, store_problem(e)).await,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DischargeBody {
    reason: String,
    /// Default: now.
    at: Option<DateTime<Utc>>,
}

/// `POST /api/v1/patients/{id}/discharge`: ends monitoring (no more
/// no-data alerts); the history stays.
pub(crate) async fn discharge(
    State(state): State<ApiState>,
    c: Caller,
    Path(id): Path<String>,
    body: Result<Json<DischargeBody>, JsonRejection>,
) -> Response {
    let p = match patient_for_admin_or_staff(&state, &c, &id).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let pid = Some(p.id.as_str());
    let b = match json_body(body) {
        Ok(b) => b,
        Err(e) => return refuse(&state, &c, pid, e).await,
    };
    if p.discharged {
        let detail = format!("patient {} is already discharged", p.id);
        return refuse(
            &state,
            &c,
            pid,
            Problem::new(StatusCode::CONFLICT, "Not possible", detail),
        )
        .await;
    }
    let at = b.at.unwrap_or_else(wardwatch_core::clock::engine::now);
    if at > wardwatch_core::clock::engine::now() + chrono::Duration::seconds(MAX_FUTURE_SECS) {
        let p400 = Problem::bad_request("a discharge cannot be dated in the future");
        return refuse(&state, &c, pid, p400).await;
    }
    let Ok(patient) = PatientId::new(p.id.clone()) else {
        return refuse(&state, &c, pid, Problem::not_found("patient")).await;
    };
    if let Err(e) = state
        .store
        .set_patient(
            &patient,
            Setting::Discharged(at),
            &c.principal.user_id,
            &b.reason,
        )
        .await
    {
        return refuse(&state, &c, pid, store_problem(e)).await;
    }
    let detail = serde_json::json!({"at": at, "reason": b.reason});
    if let Err(r) = record_detail(&state, &c, pid, StatusCode::OK, detail).await {
        return r;
    }
    Json(serde_json::json!({"id": p.id, "discharged_at": at})).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitBody {
    low: Option<f64>,
    high: Option<f64>,
    severity: String,
    #[serde(default = "one")]
    persist_readings: i32,
    #[serde(default)]
    persist_secs: i32,
    #[serde(default)]
    clear_margin: f64,
    #[serde(default)]
    clear_hold_secs: i32,
    reason: String,
}

fn one() -> i32 {
    1
}

/// The patient if the caller is a clinician of their team (personal limits
/// are a clinical decision).
async fn patient_for_clinician(
    state: &ApiState,
    c: &Caller,
    id: &str,
) -> Result<wardwatch_store::views::PatientView, Response> {
    let p = patient_in_reach(state, c, id).await?;
    if c.is(&["clinician"]) && c.staff_of(&p.team_id) {
        Ok(p)
    } else {
        Err(refuse(state, c, None, Problem::not_found("patient")).await)
    }
}

/// A personal limit within the patient's pathway's bounds
/// (`wardwatch_rules::clinical::check_personal_limit`).
fn within_pathway(state: &ApiState, pathway: &str, limit: &LimitRow) -> Result<(), Problem> {
    let pathway = state.catalog.pathway(pathway).ok_or_else(|| {
        Problem::new(
            StatusCode::CONFLICT,
            "Not possible",
            format!("the patient's pathway {pathway:?} is not configured"),
        )
    })?;
    let vital = Vital::from_name(&limit.vital)
        .ok_or_else(|| Problem::bad_request(&format!("unknown vital {:?}", limit.vital)))?;
    let t = wardwatch_rules::threshold::Threshold {
        low: limit.low,
        high: limit.high,
        severity: wardwatch_rules::threshold::Severity::parse(&limit.severity)
            .unwrap_or(wardwatch_rules::threshold::Severity::Emergency),
        persist_readings: u32::try_from(limit.persist_readings).unwrap_or(u32::MAX),
        persist_secs: i64::from(limit.persist_secs),
        clear_margin: limit.clear_margin,
        clear_hold_secs: i64::from(limit.clear_hold_secs),
        ..Default::default()
    };
    wardwatch_rules::clinical::check_personal_limit(&pathway, vital, &t)
        .map_err(|e| Problem::bad_request(&e))
}

fn check_limit(vital: &str, b: &LimitBody) -> Result<LimitRow, Problem> {
    let v = Vital::from_name(vital)
        .ok_or_else(|| Problem::bad_request(&format!("unknown vital {vital:?}")))?;
    if b.low.is_none() && b.high.is_none() {
        return Err(Problem::bad_request("give low, high or both"));
    }
    if [b.low, b.high, Some(b.clear_margin)]
        .iter()
        .flatten()
        .any(|x| !x.is_finite())
    {
        return Err(Problem::bad_request("limits must be finite numbers"));
    }
    if let (Some(lo), Some(hi)) = (b.low, b.high) {
        if lo >= hi {
            return Err(Problem::bad_request("low must be below high"));
        }
    }
    if let Some((plo, phi)) = v.plausible_range() {
        if [b.low, b.high]
            .iter()
            .flatten()
            .any(|x| *x < plo || *x > phi)
        {
            return Err(Problem::bad_request(&format!(
                "{vital} limits must lie within {plo}–{phi}"
            )));
        }
    }
    if !matches!(b.severity.as_str(), "low" | "medium" | "high" | "emergency") {
        return Err(Problem::bad_request(
            "severity must be low, medium, high or emergency",
        ));
    }
    if b.persist_readings < 1
        || b.persist_secs < 0
        || b.clear_margin < 0.0
        || b.clear_hold_secs < 0
        || b.persist_secs > 86_400
        || b.clear_hold_secs > 86_400
    {
        return Err(Problem::bad_request(
            "persist_readings ≥ 1; persist_secs, clear_hold_secs within 0–86400; clear_margin ≥ 0",
        ));
    }
    Ok(LimitRow {
        vital: vital.to_string(),
        low: b.low,
        high: b.high,
        severity: b.severity.clone(),
        persist_readings: b.persist_readings,
        persist_secs: b.persist_secs,
        clear_margin: b.clear_margin,
        clear_hold_secs: b.clear_hold_secs,
    })
}

/// `PUT /api/v1/patients/{id}/limits/{vital}`: a personal limit replacing
/// the pathway's thresholds on that vital.
pub(crate) async fn set_limit(
    State(state): State<ApiState>,
    c: Caller,
    Path((id, vital)): Path<(String, String)>,
    body: Result<Json<LimitBody>, JsonRejection>,
) -> Response {
    let p = match patient_for_clinician(&state, &c, &id).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let pid = Some(p.id.as_str());
    let b = match json_body(body) {
        Ok(b) => b,
        Err(e) => return refuse(&state, &c, pid, e).await,
    };
    let limit = match check_limit(&vital, &b) {
        Ok(l) => l,
        Err(e) => return refuse(&state, &c, pid, e).await,
    };
    // Personal limits narrow or add tiers within the pathway's severity and
    // persistence; they never loosen it.
    if let Err(e) = within_pathway(&state, &p.pathway, &limit) {
        return refuse(&state, &c, pid, e).await;
    }
    let Ok(patient) = PatientId::new(p.id.clone()) else {
        return refuse(&state, &c, pid, Problem::not_found("patient")).await;
    };
    if let Err(e) = state
        .store
        .set_limit(&patient, &limit, &c.principal.user_id, &b.reason)
        .await
    {
        return refuse(&state, &c, pid, store_problem(e)).await;
    }
    let body = serde_json::json!({"vital": limit.vital, "low": limit.low, "high": limit.high,
        "severity": limit.severity, "persist_readings": limit.persist_readings,
        "persist_secs": limit.persist_secs, "clear_margin": limit.clear_margin,
        "clear_hold_secs": limit.clear_hold_secs, "reason": b.reason});
    if let Err(r) = record_detail(&state, &c, pid, StatusCode::OK, body.clone()).await {
        return r;
    }
    Json(body).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReasonQuery {
    reason: String,
}

/// `DELETE /api/v1/patients/{id}/limits/{vital}?reason=…`: the pathway's
/// thresholds apply again.
pub(crate) async fn remove_limit(
    State(state): State<ApiState>,
    c: Caller,
    Path((id, vital)): Path<(String, String)>,
    query: Result<Query<ReasonQuery>, QueryRejection>,
) -> Response {
    let p = match patient_for_clinician(&state, &c, &id).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let pid = Some(p.id.as_str());
    let Ok(Query(q)) = query else {
        let p400 = Problem::bad_request("give the reason: ?reason=…");
        return refuse(&state, &c, pid, p400).await;
    };
    let Ok(patient) = PatientId::new(p.id.clone()) else {
        return refuse(&state, &c, pid, Problem::not_found("patient")).await;
    };
    if let Err(e) = state
        .store
        .remove_limit(&patient, &vital, &c.principal.user_id, &q.reason)
        .await
    {
        return refuse(&state, &c, pid, store_problem(e)).await;
    }
    let detail = serde_json::json!({"vital": vital, "reason": q.reason});
    if let Err(r) = record_detail(&state, &c, pid, StatusCode::NO_CONTENT, detail).await {
        return r;
    }
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ObservationItem {
    vital: String,
    /// A number; `"A"`…`"U"` for consciousness; `true`/`false` for
    /// supplemental oxygen.
    value: serde_json::Value,
    /// Default: the vital's canonical unit.
    unit: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ObservationsBody {
    taken_at: DateTime<Utc>,
    observations: Vec<ObservationItem>,
    note: Option<String>,
}

fn check_observations(
    b: &ObservationsBody,
    now: DateTime<Utc>,
) -> Result<Vec<(Vital, f64)>, Problem> {
    if b.observations.is_empty() || b.observations.len() > Vital::ALL.len() {
        return Err(Problem::bad_request(
            "observations: one to eleven, one per vital",
        ));
    }
    if b.taken_at > now + chrono::Duration::seconds(MAX_FUTURE_SECS) {
        return Err(Problem::bad_request("taken_at is in the future"));
    }
    if b.taken_at < now - chrono::Duration::days(MAX_AGE_DAYS) {
        return Err(Problem::bad_request(&format!(
            "taken_at is more than {MAX_AGE_DAYS} days ago; record it as a note instead"
        )));
    }
    if b.note.as_deref().is_some_and(|n| n.chars().count() > 2000) {
        return Err(Problem::bad_request("note: at most 2000 characters"));
    }
    let mut out: Vec<(Vital, f64)> = Vec::with_capacity(b.observations.len());
    for o in &b.observations {
        let v = Vital::from_name(&o.vital)
            .ok_or_else(|| Problem::bad_request(&format!("unknown vital {:?}", o.vital)))?;
        if out.iter().any(|(seen, _)| *seen == v) {
            return Err(Problem::bad_request(&format!("{v} is given twice")));
        }
        let raw = match &o.value {
            serde_json::Value::Number(n) => VitalValue::Number(n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::String(s) => VitalValue::Text(s.clone()),
            serde_json::Value::Bool(x) => VitalValue::Bool(*x),
            _ => {
                return Err(Problem::bad_request(&format!(
                    "{v}: value must be a number, a string or a boolean"
                )))
            }
        };
        let unit = o.unit.as_deref().or(v.canonical_unit());
        let x = v
            .to_canonical(&raw, unit)
            .map_err(|e| Problem::bad_request(&e.to_string()))?;
        out.push((v, x));
    }
    Ok(out)
}

/// `POST /api/v1/patients/{id}/observations`: observations taken by phone
/// or on a visit, stored with source `manual` and who entered them, and
/// scored by the rules like any device's.
pub(crate) async fn record_observations(
    State(state): State<ApiState>,
    c: Caller,
    Path(id): Path<String>,
    body: Result<Json<ObservationsBody>, JsonRejection>,
) -> Response {
    let p = match patient_in_reach(&state, &c, &id).await {
        Ok(p) if c.staff_of(&p.team_id) => p,
        Ok(_) => return refuse(&state, &c, None, Problem::not_found("patient")).await,
        Err(r) => return r,
    };
    let pid = Some(p.id.as_str());
    let b = match json_body(body) {
        Ok(b) => b,
        Err(e) => return refuse(&state, &c, pid, e).await,
    };
    let now = wardwatch_core::clock::engine::now();
    let values = match check_observations(&b, now) {
        Ok(v) => v,
        Err(e) => return refuse(&state, &c, pid, e).await,
    };
    // Scored like device readings: refuse while the rules are rebuilding
    // (or stopping) rather than store a reading they would never see.
    let feed = state.rules.get().and_then(mpsc::WeakSender::upgrade);
    if state.catalog.rules_enabled && feed.is_none() {
        let p503 = Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Starting",
            "the rules are starting or stopping; try again in a few seconds".into(),
        );
        return refuse(&state, &c, pid, p503).await;
    }
    let Ok(patient) = PatientId::new(p.id.clone()) else {
        return refuse(&state, &c, pid, Problem::not_found("patient")).await;
    };
    let entry = ManualEntry {
        patient: &patient,
        taken_at: b.taken_at,
        values: &values,
        recorded_by: &c.principal.user_id,
        note: b.note.as_deref(),
    };
    let new = match state.store.record_manual(&entry, now).await {
        Ok(n) => n,
        Err(e) => return refuse(&state, &c, pid, store_problem(e)).await,
    };
    let stored = new.len();
    if let Some(live) = state.readings.as_ref().filter(|f| f.receiver_count() > 0) {
        if !new.is_empty() {
            let _ = live.send(std::sync::Arc::new(new.clone()));
        }
    }
    // The set is scored as of when it was taken, from what the patient's
    // readings were then (stored history within the pathway's freshness
    // before `taken_at`), not from the latest readings, which may be newer.
    let pathway = state.catalog.pathway(&p.pathway);
    let window = pathway
        .as_ref()
        .map_or(3600, |pw| wardwatch_rules::clinical::freshness_secs(pw));
    let history = match state
        .store
        .readings_of(
            &p.id,
            None,
            b.taken_at - chrono::Duration::seconds(window),
            b.taken_at,
            2000,
        )
        .await
    {
        Ok(h) => h,
        Err(e) => return refuse(&state, &c, pid, store_problem(e)).await,
    };
    let context: Vec<(Vital, f64, DateTime<Utc>)> = history
        .iter()
        .filter_map(|r| Some((Vital::from_name(&r.vital)?, r.value, r.time)))
        .chain(values.iter().map(|(v, x)| (*v, *x, b.taken_at)))
        .collect();
    let settings = match state
        .store
        .patient_rows(wardwatch_store::rules::PatientFilter::Ids(
            std::slice::from_ref(&p.id),
        ))
        .await
    {
        Ok(r) => r,
        Err(e) => return refuse(&state, &c, pid, store_problem(e)).await,
    };
    let as_scored = match (pathway.as_ref(), settings.first()) {
        (Some(pw), Some(row)) => Some(score_as_of(row, pw, &context, b.taken_at)),
        _ => None,
    };
    let scored = match (&feed, new.is_empty()) {
        (Some(f), false) => {
            f.send(wardwatch_store::RulesInput::Readings(new))
                .await
                .is_ok()
                && f.send(wardwatch_store::RulesInput::ManualSet {
                    patient_id: p.id.clone(),
                    context: context.clone(),
                    taken_at: b.taken_at,
                })
                .await
                .is_ok()
        }
        _ => false,
    };
    let detail = serde_json::json!({"taken_at": b.taken_at,
        "vitals": values.iter().map(|(v, _)| v.as_str()).collect::<Vec<_>>(),
        "stored": stored});
    if let Err(r) = record_detail(&state, &c, pid, StatusCode::CREATED, detail).await {
        return r;
    }
    (
        StatusCode::CREATED,
        Json(serde_json::json!({
            "patient_id": p.id, "taken_at": b.taken_at, "source": "manual",
            "recorded_by": c.principal.user_id,
            "readings": values.iter().map(|(v, x)| serde_json::json!({"vital": v.as_str(), "value": x}))
                .collect::<Vec<_>>(),
            // New rows (0 when this exact entry was already recorded).
            "stored": stored,
            "scored": scored,
            // What NEWS2 made of the set as of `taken_at`: the score (a
            // lower bound when parameters were missing), the readings it
            // used, and what was missing.
            "news2": as_scored,
        })),
    )
        .into_response()
}

/// NEWS2 of a manual set as of its time, for the API's answer (the rules
/// score the same set, with the same functions, for the flags).
fn score_as_of(
    p: &wardwatch_store::rules::PatientRow,
    pathway: &wardwatch_rules::pathway::Pathway,
    context: &[(Vital, f64, DateTime<Utc>)],
    taken_at: DateTime<Utc>,
) -> serde_json::Value {
    use wardwatch_rules::clinical;
    let person = clinical::person_applicability(p.date_of_birth, p.pregnant, taken_at.date_naive());
    let applies = clinical::applicability(pathway, person);
    if !applies.applies() {
        return serde_json::json!({"status": "not_applicable", "reason": applies.reason()});
    }
    let window = clinical::freshness_secs(pathway);
    let as_of = |v: Vital| {
        context
            .iter()
            .filter(|(x, _, t)| {
                *x == v && *t <= taken_at && (taken_at - *t).num_seconds() <= window
            })
            .max_by_key(|(_, _, t)| *t)
    };
    let obs = clinical::observations(|v| as_of(v).map(|(_, x, _)| *x), p.care_plan_oxygen);
    let scale = if p.spo2_scale == 2 {
        wardwatch_rules::news2::SpO2Scale::Two
    } else {
        wardwatch_rules::news2::SpO2Scale::One
    };
    let used: Vec<serde_json::Value> = clinical::NEWS2_INPUTS
        .iter()
        .filter_map(|v| as_of(*v))
        .map(|(v, x, t)| serde_json::json!({"vital": v.as_str(), "value": x, "at": t}))
        .collect();
    match wardwatch_rules::news2::score_partial(&obs, scale) {
        Ok(s) => serde_json::json!({
            "status": if s.lower_bound { "partial" } else { "complete" },
            "total": s.total, "band": s.band, "lower_bound": s.lower_bound,
            "missing": s.missing, "summary": s.summary(), "used": used,
        }),
        Err(e) => {
            serde_json::json!({"status": "not_scored", "reason": e.to_string(), "used": used})
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoteBody {
    vital: String,
    time: DateTime<Utc>,
    device_id: String,
    text: String,
}

/// `POST /api/v1/patients/{id}/notes`: a correction note on one reading
/// ("the cuff slipped"); the reading itself is never changed.
pub(crate) async fn add_note(
    State(state): State<ApiState>,
    c: Caller,
    Path(id): Path<String>,
    body: Result<Json<NoteBody>, JsonRejection>,
) -> Response {
    let p = match patient_in_reach(&state, &c, &id).await {
        Ok(p) if c.is(&["patient", "proxy"]) || c.staff_of(&p.team_id) => p,
        Ok(_) => return refuse(&state, &c, None, Problem::not_found("patient")).await,
        Err(r) => return r,
    };
    let pid = Some(p.id.as_str());
    let b = match json_body(body) {
        Ok(b) => b,
        Err(e) => return refuse(&state, &c, pid, e).await,
    };
    match state
        .store
        .add_reading_note(
            &p.id,
            &b.vital,
            b.time,
            &b.device_id,
            &c.principal.user_id,
            &b.text,
        )
        .await
    {
        Ok(Some(n)) => {
            let detail = serde_json::json!({"note_id": n.id, "vital": n.vital, "time": n.time});
            if let Err(r) = record_detail(&state, &c, pid, StatusCode::CREATED, detail).await {
                return r;
            }
            (
                StatusCode::CREATED,
                Json(
                    serde_json::json!({"id": n.id, "vital": n.vital, "time": n.time,
                    "device_id": n.device_id, "author": n.author, "text": n.text,
                    "created_at": n.created_at}),
                ),
            )
                .into_response()
        }
        Ok(None) => refuse(&state, &c, pid, Problem::not_found("reading")).await,
        Err(e) => refuse(&state, &c, pid, store_problem(e)).await,
    }
}
