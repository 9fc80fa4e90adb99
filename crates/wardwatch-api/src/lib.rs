//! The HTTP API under `/api/v1`: bearer-token authentication, per-team
//! access control (a resource outside the caller's reach answers 404, so
//! its existence does not leak), an append-only audit of every write and
//! every read of a patient's record, RFC 9457 problem+json errors, and the
//! live SSE stream of alert changes for the caller's teams.
//!
//! # Layout
//! - this file: the state, the [`Caller`] extractor, the audit helpers,
//!   alerts, readings, the stream and the board;
//! - [`patients`]: enrolment, transfer, discharge, personal limits, manual
//!   observations and correction notes;
//! - [`admin`]: users, tokens, teams and the device catalogue (admins only);
//! - [`reports`]: per-team figures over a period;
//! - [`scores`]: the current NEWS2 and the board's patient rows;
//! - [`fhir`]: FHIR R4 Observation search;
//! - [`auth`], [`problem`]: tokens and RFC 9457 errors.
//!
//! The route list is in [`router`]; `openapi.json` describes each one and
//! a test checks that it does.

mod admin;
mod auth;
mod fhir;
mod patients;
mod problem;
mod reports;
mod scores;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use wardwatch_store::prelude::*;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_stream::wrappers::BroadcastStream;
use wardwatch_alerting::feed::AlertFeed;
use wardwatch_alerting::policy::Teams;
use wardwatch_core::flag::Severity;
use wardwatch_store::access::{AuditEntry, Principal};
use wardwatch_store::alerts::{AlertRow, StateFilter};
use wardwatch_store::{Backend, NewReading, StoreError};

pub use auth::{new_token, token_hash, Cidr, FailedAuth};
pub use patients::{team_is_run, TeamCheck};
pub use problem::Problem;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The store.
    pub store: Backend,
    /// The live feed of alert changes.
    pub feed: Option<AlertFeed>,
    /// Failed authentications per client address (rate limit).
    pub failed: Arc<FailedAuth>,
    /// The teams and pathways the engine runs with.
    pub catalog: Arc<Catalog>,
    /// Where manual observations go to be scored: set once the rules have
    /// rebuilt their state (a reading sent before that would be missed).
    /// Weak, so the API never keeps the rules' inbox open at shutdown.
    pub rules: Arc<OnceLock<mpsc::WeakSender<wardwatch_store::RulesInput>>>,
    /// Committed readings, for the stream's `reading` events.
    pub readings: Option<ReadingFeed>,
}

pub use wardwatch_store::ReadingFeed;

/// What the engine was configured with, as the API needs it.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Team policies (a transfer hands open alerts to the new team's).
    pub teams: Option<Teams>,
    /// The pathways in force, shared with the rules (reloads included):
    /// enrolment checks the name, reports compute adherence from the
    /// cadence, the board scores NEWS2 as the rules do.
    pub pathways: Arc<arc_swap::ArcSwap<wardwatch_rules::shard::RuleSet>>,
    /// False when the engine runs without rules: manual observations are
    /// stored but not scored, as device readings are.
    pub rules_enabled: bool,
}

impl Catalog {
    /// A pathway in force, by name.
    pub fn pathway(&self, name: &str) -> Option<Arc<wardwatch_rules::pathway::Pathway>> {
        self.pathways.load().pathways.get(name).cloned()
    }

    /// Pathway name → expected minutes between readings.
    pub fn cadences(&self) -> HashMap<String, u32> {
        self.pathways
            .load()
            .pathways
            .iter()
            .map(|(name, p)| {
                let mins = u32::try_from(p.expected_interval_secs / 60).unwrap_or(0);
                (name.clone(), mins)
            })
            .collect()
    }

    /// The escalation policy open alerts take when moved to `team`.
    fn team_policy(&self, team: &str) -> Option<serde_json::Value> {
        self.teams
            .as_ref()
            .and_then(|t| t.get(team))
            .and_then(|t| serde_json::to_value(&t.escalation).ok())
    }
}

/// The `/api/v1` routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/", get(board))
        .route("/api/v1/me", get(me))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/patients/{id}", get(get_patient))
        .route("/api/v1/alerts", get(list_alerts))
        .route("/api/v1/alerts/{id}/acknowledge", post(acknowledge))
        .route("/api/v1/alerts/{id}/resolve", post(resolve))
        .route("/api/v1/stream", get(stream))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/patients/{id}/readings", get(readings))
        .route("/api/v1/patients/{id}/score", get(scores::patient_score))
        .route("/api/v1/teams/{team}/patients", get(scores::team_patients))
        .route("/api/v1/alerts/{id}/snooze", post(snooze))
        .route("/api/v1/patients", post(patients::enrol))
        .route("/api/v1/patients/{id}/transfer", post(patients::transfer))
        .route("/api/v1/patients/{id}/discharge", post(patients::discharge))
        .route(
            "/api/v1/patients/{id}/limits/{vital}",
            axum::routing::put(patients::set_limit).delete(patients::remove_limit),
        )
        .route(
            "/api/v1/patients/{id}/observations",
            post(patients::record_observations),
        )
        .route("/api/v1/patients/{id}/notes", post(patients::add_note))
        .route("/api/v1/teams", get(admin::teams))
        .route("/api/v1/teams/{team}/report", get(reports::team_report))
        .route("/api/v1/users", get(admin::users))
        .route(
            "/api/v1/users/{id}",
            axum::routing::put(admin::put_user).delete(admin::disable_user),
        )
        .route("/api/v1/users/{id}/tokens", post(admin::create_token))
        .route("/api/v1/devices", get(admin::devices))
        .route(
            "/api/v1/devices/{id}",
            get(admin::device).put(admin::put_device),
        )
        .route("/api/v1/devices/{id}/assign", post(admin::assign_device))
        .route("/api/v1/devices/{id}/return", post(admin::return_device))
        .route("/api/v1/devices/{id}/retire", post(admin::retire_device))
        .route("/fhir/Observation", get(fhir::search_observations))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(query_limit))
        .with_state(state)
}

/// Request bodies above this are refused with 413 (the largest real one, a
/// day of typed-in observations, is a few KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Query strings above this are refused with 414 before any handler (or
/// the audit) sees them; the longest real one is a FHIR search with a
/// paging cursor, well under 1 KiB.
pub const MAX_QUERY_BYTES: usize = 8 * 1024;

async fn query_limit(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let len = req.uri().query().map_or(0, str::len);
    if len > MAX_QUERY_BYTES {
        return Problem::new(
            StatusCode::URI_TOO_LONG,
            "Query too long",
            format!("the query string is {len} bytes; at most {MAX_QUERY_BYTES} are read"),
        )
        .into_response();
    }
    next.run(req).await
}

/// A request's caller, checked.
/// The authenticated caller of a request, with what the audit needs.
/// As an extractor it answers 401 (audited) before any handler runs.
struct Caller {
    principal: Principal,
    client: String,
    method: Method,
    uri: Uri,
}

impl axum::extract::FromRequestParts<ApiState> for Caller {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &ApiState,
    ) -> Result<Self, Response> {
        let addr = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0);
        caller(state, &parts.headers, addr, &parts.method, &parts.uri).await
    }
}

impl Caller {
    fn is(&self, roles: &[&str]) -> bool {
        roles.contains(&self.principal.role.as_str())
    }

    /// Staff (nurse, clinician) reach their teams' patients; admins all;
    /// patients and proxies their own record.
    fn reaches_patient(&self, patient: &str, team: &str) -> bool {
        match self.principal.role.as_str() {
            "admin" => true,
            "nurse" | "clinician" => self.principal.teams.iter().any(|t| t == team),
            "patient" | "proxy" => self.principal.patient_id.as_deref() == Some(patient),
            _ => false,
        }
    }

    /// Alerts: staff of the alert's team, and admins.
    fn reaches_alert(&self, a: &AlertRow) -> bool {
        match self.principal.role.as_str() {
            "admin" => true,
            "nurse" | "clinician" => self.principal.teams.contains(&a.team_id),
            _ => false,
        }
    }
}

async fn caller(
    state: &ApiState,
    headers: &axum::http::HeaderMap,
    addr: SocketAddr,
    method: &Method,
    uri: &Uri,
) -> Result<Caller, Response> {
    let ip = state.failed.client_ip(addr.ip(), headers);
    match auth::authenticate(state, headers, ip).await {
        Ok(principal) => Ok(Caller {
            principal,
            client: ip.to_string(),
            method: method.clone(),
            uri: uri.clone(),
        }),
        // Counted, and audited in aggregate by `audit_refusals`: one row
        // per request would let a flood fill the disk.
        Err(p) => Err(p.into_response()),
    }
}

/// Writes the authentication refusals counted since the last call to the
/// audit log, one entry per client and reason with its count; returns how
/// many refusals it wrote. The engine calls it every minute and at shutdown.
pub async fn audit_refusals(state: &ApiState) -> Result<u64, StoreError> {
    let mut total = 0;
    for (ip, reason, count) in state.failed.take_refusals() {
        let status = if reason == "rate_limited" { 429 } else { 401 };
        tracing::warn!(message = "API requests refused at authentication.", client = %ip, reason, count);
        state
            .store
            .audit(&AuditEntry {
                user_id: None,
                action: "authentication_refused".into(),
                resource: "/api".into(),
                patient_id: None,
                status,
                client: Some(ip.to_string()),
                detail: serde_json::json!({"reason": reason, "count": count}),
            })
            .await?;
        total += count;
    }
    Ok(total)
}

async fn record(
    state: &ApiState,
    c: &Caller,
    patient: Option<&str>,
    status: StatusCode,
) -> Result<(), Response> {
    record_detail(state, c, patient, status, serde_json::json!({})).await
}

/// Audits with what was asked for or why it was refused.
async fn record_detail(
    state: &ApiState,
    c: &Caller,
    patient: Option<&str>,
    status: StatusCode,
    detail: serde_json::Value,
) -> Result<(), Response> {
    // An audit entry that cannot be written refuses the request: no
    // unaudited access to a patient's record.
    state
        .store
        .audit(&AuditEntry {
            user_id: Some(c.principal.user_id.clone()),
            action: c.method.to_string(),
            resource: c.uri.path().to_string(),
            patient_id: patient.map(str::to_string),
            status: i32::from(status.as_u16()),
            client: Some(c.client.clone()),
            detail,
        })
        .await
        .map_err(|e| Problem::unavailable(&e).into_response())
}

/// Refuses a request, keeping the reason in the audit log (operators read
/// it at `GET /api/v1/audit`) and counting it in the metrics.
async fn refuse(state: &ApiState, c: &Caller, patient: Option<&str>, p: Problem) -> Response {
    let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::BAD_REQUEST);
    if let Err(r) = record_detail(
        state,
        c,
        patient,
        status,
        serde_json::json!({"reason": p.detail}),
    )
    .await
    {
        return r;
    }
    p.into_response()
}

/// A JSON body, or the 400 that says what is wrong with it.
fn json_body<T>(
    body: Result<Json<T>, axum::extract::rejection::JsonRejection>,
) -> Result<T, Problem> {
    body.map(|Json(b)| b).map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Body too large",
                format!("the request body is above the API's limit of {MAX_BODY_BYTES} bytes"),
            )
        } else {
            Problem::bad_request(&e.body_text())
        }
    })
}

/// A store refusal as a problem: a rejection is a 409 with its reason.
fn store_problem(e: StoreError) -> Problem {
    match e {
        StoreError::Rejected(m) => Problem::new(StatusCode::CONFLICT, "Not possible", m),
        e => Problem::unavailable(&e),
    }
}

fn store_error(e: StoreError) -> Response {
    store_problem(e).into_response()
}

async fn get_patient(State(state): State<ApiState>, c: Caller, Path(id): Path<String>) -> Response {
    let p = match patient_in_reach(&state, &c, &id).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let limits = match state
        .store
        .patient_rows(wardwatch_store::rules::PatientFilter::Ids(
            std::slice::from_ref(&p.id),
        ))
        .await
    {
        Ok(rows) => rows.into_iter().flat_map(|r| r.limits).collect::<Vec<_>>(),
        Err(e) => return store_error(e),
    };
    if let Err(r) = record(&state, &c, Some(&p.id), StatusCode::OK).await {
        return r;
    }
    Json(serde_json::json!({
        "id": p.id,
        "team_id": p.team_id,
        "pathway": p.pathway,
        "spo2_scale": p.spo2_scale,
        "discharged": p.discharged,
        "nhs_number": p.nhs_number,
        "date_of_birth": p.date_of_birth,
        "devices": p.devices,
        "limits": limits.iter().map(|l| serde_json::json!({
            "vital": l.vital, "low": l.low, "high": l.high, "severity": l.severity,
            "persist_readings": l.persist_readings, "persist_secs": l.persist_secs,
            "clear_margin": l.clear_margin, "clear_hold_secs": l.clear_hold_secs,
        })).collect::<Vec<_>>(),
    }))
    .into_response()
}

#[derive(Serialize)]
struct AlertBody {
    id: i64,
    patient_id: String,
    team_id: String,
    kind: String,
    severity: wardwatch_core::Severity,
    state: wardwatch_core::AlertState,
    tier: i32,
    tier_name: String,
    rules: Vec<String>,
    summary: String,
    opened_at: chrono::DateTime<Utc>,
    acknowledged_by: Option<String>,
}

impl From<AlertRow> for AlertBody {
    fn from(a: AlertRow) -> Self {
        Self {
            id: a.id,
            patient_id: a.patient_id,
            team_id: a.team_id,
            kind: a.kind,
            severity: a.severity,
            state: a.state,
            tier: a.tier,
            tier_name: a.tier_name,
            rules: a.rules,
            summary: a.summary,
            opened_at: a.opened_at,
            acknowledged_by: a.acknowledged_by,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertQuery {
    state: Option<String>,
    team: Option<String>,
    severity: Option<String>,
}

async fn list_alerts(
    State(state): State<ApiState>,
    c: Caller,
    query: Result<Query<AlertQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = query else {
        return refuse(
            &state,
            &c,
            None,
            Problem::bad_request("query parameters are state, team and severity only"),
        )
        .await;
    };
    if !c.is(&["admin", "nurse", "clinician"]) {
        return refuse(&state, &c, None, Problem::not_found("resource")).await;
    }
    let wanted_state = match q.state.as_deref().map(StateFilter::parse) {
        Some(None) => {
            return refuse(
                &state,
                &c,
                None,
                Problem::bad_request("state must be open, acknowledged, resolved or unresolved"),
            )
            .await;
        }
        Some(Some(s)) => Some(s),
        None => None,
    };
    let wanted_severity = match q.severity.as_deref().map(Severity::parse) {
        Some(None) => {
            return refuse(
                &state,
                &c,
                None,
                Problem::bad_request("severity must be low, medium, high or emergency"),
            )
            .await;
        }
        Some(Some(s)) => Some(s),
        None => None,
    };
    // Staff see their teams' alerts (narrowed to one of them on request);
    // admins everyone's. Filtered in the query, before its limit.
    let mine: Vec<String> = match (&q.team, c.is(&["admin"])) {
        (Some(t), true) => vec![t.clone()],
        (Some(t), false) => c
            .principal
            .teams
            .iter()
            .filter(|x| *x == t)
            .cloned()
            .collect(),
        (None, _) => c.principal.teams.clone(),
    };
    let filter = wardwatch_store::alerts::AlertFilter {
        state: wanted_state,
        teams: (!c.is(&["admin"]) || q.team.is_some()).then_some(mine.as_slice()),
        severity: wanted_severity,
    };
    let rows = match state.store.find_alerts(&filter, 500).await {
        Ok(r) => r,
        Err(e) => return store_error(e),
    };
    let body: Vec<AlertBody> = rows
        .into_iter()
        // Defence in depth: the query already kept to the caller's reach.
        .filter(|a| c.reaches_alert(a))
        .map(AlertBody::from)
        .collect();
    // A list read names every patient it showed.
    let mut shown: Vec<&str> = body.iter().map(|a| a.patient_id.as_str()).collect();
    shown.sort_unstable();
    shown.dedup();
    let detail = serde_json::json!({"patients": shown});
    if let Err(r) = record_detail(&state, &c, None, StatusCode::OK, detail).await {
        return r;
    }
    Json(body).into_response()
}

async fn alert_in_reach(state: &ApiState, c: &Caller, id: i64) -> Result<AlertRow, Response> {
    match state.store.alert(id).await {
        Ok(Some(a)) if c.reaches_alert(&a) && c.is(&["nurse", "clinician", "admin"]) => Ok(a),
        Ok(_) => Err(refuse(state, c, None, Problem::not_found("alert")).await),
        Err(e) => Err(store_error(e)),
    }
}

async fn acknowledge(State(state): State<ApiState>, c: Caller, Path(id): Path<i64>) -> Response {
    let a = match alert_in_reach(&state, &c, id).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let result = state
        .store
        .acknowledge_alert(
            id,
            &c.principal.user_id,
            wardwatch_core::clock::engine::now(),
        )
        .await;
    answer_alert_write(&state, &c, &a, result).await
}

/// Audits an alert write (done or refused) and answers it.
async fn answer_alert_write(
    state: &ApiState,
    c: &Caller,
    before: &AlertRow,
    result: Result<AlertRow, StoreError>,
) -> Response {
    let patient = Some(before.patient_id.as_str());
    match result {
        Ok(a) => {
            if let Err(r) = record(state, c, patient, StatusCode::OK).await {
                return r;
            }
            Json(AlertBody::from(a)).into_response()
        }
        Err(e) => refuse(state, c, patient, store_problem(e)).await,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveBody {
    outcome: String,
    note: Option<String>,
}

async fn resolve(
    State(state): State<ApiState>,
    c: Caller,
    Path(id): Path<i64>,
    body: Result<Json<ResolveBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let a = match alert_in_reach(&state, &c, id).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let body = match body {
        Ok(Json(b)) => b,
        Err(e) => return refuse(&state, &c, None, Problem::bad_request(&e.body_text())).await,
    };
    if wardwatch_alerting::lifecycle::Outcome::parse(&body.outcome).is_none() {
        return refuse(
            &state,
            &c,
            None,
            Problem::bad_request(
                "outcome must be one of reviewed_no_action, advice_given, visit_arranged, \
             escalated_emergency, device_or_data_issue, other",
            ),
        )
        .await;
    }
    let result = state
        .store
        .resolve_alert(
            id,
            &c.principal.user_id,
            &body.outcome,
            body.note.as_deref(),
            wardwatch_core::clock::engine::now(),
        )
        .await;
    answer_alert_write(&state, &c, &a, result).await
}

/// The team's longest snooze per severity, as the store checks it against
/// the flag's own severity (no policy: the default team limits).
pub fn snooze_limits(
    policy: Option<&wardwatch_alerting::policy::EscalationPolicy>,
    now: chrono::DateTime<Utc>,
) -> wardwatch_store::alerts::SnoozeLimits {
    let max = policy.map(|p| p.snooze_max.clone()).unwrap_or_default();
    wardwatch_store::alerts::SnoozeLimits {
        low: max.low.secs(),
        medium: max.medium.secs(),
        high: max.high.secs(),
        emergency: max.emergency.secs(),
        now,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SnoozeBody {
    /// `30m`, `2h`: at most the team's `snooze_max` for the flag's severity.
    #[serde(rename = "for")]
    duration: String,
    reason: String,
    /// One of the alert's rules; all of them when absent.
    rule: Option<String>,
}

/// Snoozes an alert's rules for its patient: a worse severity breaks through.
async fn snooze(
    State(state): State<ApiState>,
    c: Caller,
    Path(id): Path<i64>,
    body: Result<Json<SnoozeBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let a = match alert_in_reach(&state, &c, id).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let p = Some(a.patient_id.as_str());
    let body = match json_body(body) {
        Ok(b) => b,
        Err(e) => return refuse(&state, &c, p, e).await,
    };
    let policy = state
        .catalog
        .teams
        .as_ref()
        .and_then(|t| t.get(&a.team_id))
        .map(|t| t.escalation.clone());
    let now = wardwatch_core::clock::engine::now();
    let limits = snooze_limits(policy.as_ref(), now);
    let Some(span) =
        wardwatch_alerting::policy::Span::parse(&body.duration).filter(|s| s.secs() >= 1)
    else {
        let detail = "for must be a duration like 30m or 2h".to_string();
        return refuse(&state, &c, p, Problem::bad_request(&detail)).await;
    };
    let rules: Vec<String> = match &body.rule {
        Some(r) if a.rules.contains(r) => vec![r.clone()],
        Some(r) => {
            let detail = format!(
                "rule {r:?} is not one of this alert's: {}",
                a.rules.join(", ")
            );
            return refuse(&state, &c, p, Problem::bad_request(&detail)).await;
        }
        None => a.rules.clone(),
    };
    let until = now + chrono::Duration::seconds(span.secs());
    let mut snoozed = Vec::new();
    for rule in &rules {
        match state
            .store
            .snooze(
                &a.patient_id,
                rule,
                until,
                &c.principal.user_id,
                &body.reason,
                &limits,
            )
            .await
        {
            Ok(severity) => snoozed.push(serde_json::json!({"rule": rule, "severity": severity})),
            Err(e) => return refuse(&state, &c, p, store_problem(e)).await,
        }
    }
    let detail = serde_json::json!({"until": until, "rules": rules, "reason": body.reason});
    if let Err(r) = record_detail(&state, &c, p, StatusCode::OK, detail).await {
        return r;
    }
    Json(serde_json::json!({"alert_id": a.id, "until": until, "snoozed": snoozed})).into_response()
}

/// How often a live stream re-checks its caller: a revoked token, a
/// disabled user or a nurse moved off a team stops receiving within this.
const STREAM_RECHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// Resolves when the caller behind `hash` may no longer see what the stream
/// was opened for: the token refused, another role, or a team lost.
async fn access_lost(store: Backend, hash: Vec<u8>, original: Principal) {
    loop {
        tokio::time::sleep(STREAM_RECHECK).await;
        match store
            .authenticate(&hash, wardwatch_core::clock::engine::now())
            .await
        {
            Ok(Some(p))
                if p.role == original.role
                    && original.teams.iter().all(|t| p.teams.contains(t)) => {}
            Ok(_) => {
                tracing::info!(message = "Live stream closed: the caller's access changed.", user = %original.user_id);
                metrics::counter!("wardwatch_api_streams_closed_total", "reason" => "access_lost")
                    .increment(1);
                return;
            }
            // The store is unreachable: keep streaming, check again later.
            Err(_) => {}
        }
    }
}

async fn stream(State(state): State<ApiState>, headers: HeaderMap, c: Caller) -> Response {
    if !c.is(&["admin", "nurse", "clinician"]) {
        return refuse(&state, &c, None, Problem::not_found("resource")).await;
    }
    let Some(feed) = &state.feed else {
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Live updates unavailable",
            "alerting is disabled on this engine".into(),
        )
        .into_response();
    };
    // The stream shows the caller's teams' patients as they change; the
    // audit names the teams it was opened for.
    let detail = serde_json::json!({"teams": if c.is(&["admin"]) { vec!["*".to_string()] } else { c.principal.teams.clone() }});
    if let Err(r) = record_detail(&state, &c, None, StatusCode::OK, detail).await {
        return r;
    }
    let admin = c.is(&["admin"]);
    let teams = c.principal.teams.clone();
    let alerts = BroadcastStream::new(feed.subscribe()).filter_map(move |item| {
        let teams = teams.clone();
        async move {
            match item {
                Ok(ev) if admin || teams.contains(&ev.team_id) => {
                    let data = serde_json::to_string(&ev).unwrap_or_default();
                    Some(Ok::<_, Infallible>(
                        Event::default()
                            .event("alert")
                            .id(ev.event_id.to_string())
                            .data(data),
                    ))
                }
                Ok(_) => None,
                // Fell behind: tell the client to reload the list.
                Err(_) => Some(Ok(Event::default().event("lagged").data("reload"))),
            }
        }
    });
    let events = match &state.readings {
        Some(readings) => {
            let reach = Arc::new(tokio::sync::Mutex::new(ReadingReach {
                store: state.store.clone(),
                teams: (!admin).then(|| c.principal.teams.clone()),
                patients: Default::default(),
                fetched: None,
            }));
            let readings = BroadcastStream::new(readings.subscribe())
                .then(move |item| {
                    let reach = reach.clone();
                    async move { reach.lock().await.events(item).await }
                })
                .flat_map(futures_util::stream::iter);
            futures_util::stream::select(alerts.boxed(), readings.boxed()).boxed()
        }
        None => alerts.boxed(),
    };
    let Some(hash) = auth::presented_hash(&headers) else {
        return Problem::unauthorized("an Authorization: Bearer token is required").into_response();
    };
    let events = events.take_until(Box::pin(access_lost(
        state.store.clone(),
        hash,
        c.principal.clone(),
    )));
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Which patients' readings one stream carries: the caller's teams'
/// patients (all for admins), re-read every 30 s so enrolments and
/// transfers show without a reconnect.
struct ReadingReach {
    store: Backend,
    /// `None` for admins.
    teams: Option<Vec<String>>,
    patients: std::collections::HashSet<String>,
    fetched: Option<std::time::Instant>,
}

impl ReadingReach {
    const REFRESH: std::time::Duration = std::time::Duration::from_secs(30);

    async fn events(
        &mut self,
        item: Result<
            Arc<Vec<NewReading>>,
            tokio_stream::wrappers::errors::BroadcastStreamRecvError,
        >,
    ) -> Vec<Result<Event, Infallible>> {
        let Ok(batch) = item else {
            return vec![Ok(Event::default().event("lagged").data("reload"))];
        };
        if let Some(teams) = &self.teams {
            if self.fetched.is_none_or(|t| t.elapsed() > Self::REFRESH) {
                // On a database error keep the last set and try again later.
                if let Ok(ids) = self.store.patients_of_teams(teams).await {
                    self.patients = ids.into_iter().collect();
                }
                self.fetched = Some(std::time::Instant::now());
            }
        }
        batch
            .iter()
            .filter(|r| self.teams.is_none() || self.patients.contains(&r.patient_id))
            .map(|r| {
                let data = serde_json::json!({"patient_id": r.patient_id, "vital": r.vital.as_str(),
                    "value": r.value, "time": r.time});
                Ok(Event::default().event("reading").data(data.to_string()))
            })
            .collect()
    }
}

async fn audit(State(state): State<ApiState>, c: Caller) -> Response {
    if !c.is(&["admin"]) {
        return refuse(&state, &c, None, Problem::not_found("resource")).await;
    }
    let rows = match state.store.audit_entries(500).await {
        Ok(r) => r,
        Err(e) => return store_error(e),
    };
    if let Err(r) = record(&state, &c, None, StatusCode::OK).await {
        return r;
    }
    let body: Vec<_> = rows
        .into_iter()
        .map(|r| {
            serde_json::json!({
                "id": r.id, "at": r.at, "user_id": r.entry.user_id, "action": r.entry.action,
                "resource": r.entry.resource, "patient_id": r.entry.patient_id,
                "status": r.entry.status, "client": r.entry.client,
            })
        })
        .collect();
    Json(body).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadingsQuery {
    vital: Option<String>,
    from: Option<chrono::DateTime<Utc>>,
    to: Option<chrono::DateTime<Utc>>,
    /// `"15m"`, `"1h"`: downsample into buckets (needs `vital`).
    bucket: Option<String>,
    /// Readings per page (1 to 10,000; default 10,000).
    limit: Option<i64>,
    /// Where the previous page ended (its `Link: rel="next"` gives it).
    after: Option<String>,
}

/// Adds a `Link: rel="next"` header when there is a next page.
fn with_next(mut response: Response, next: Option<String>) -> Response {
    if let Some(v) = next.and_then(|n| axum::http::HeaderValue::from_str(&n).ok()) {
        response.headers_mut().insert(axum::http::header::LINK, v);
    }
    response
}

/// Most readings one page returns.
const MAX_PAGE: i64 = 10_000;

/// A page cursor: `<unix micros>~<vital>~<device>` of the last row.
pub(crate) fn page_cursor(r: &wardwatch_store::views::ReadingRow) -> String {
    format!("{}~{}~{}", r.time.timestamp_micros(), r.vital, r.device_id)
}

/// Reads a page cursor back.
pub(crate) fn parse_cursor(s: &str) -> Result<wardwatch_store::views::ReadingKey, Problem> {
    let bad = || Problem::bad_request("the page cursor is not one this API gave");
    let (micros, rest) = s.split_once('~').ok_or_else(bad)?;
    let (vital, device) = rest.split_once('~').ok_or_else(bad)?;
    let time = micros
        .parse::<i64>()
        .ok()
        .and_then(chrono::DateTime::from_timestamp_micros)
        .ok_or_else(bad)?;
    Ok(wardwatch_store::views::ReadingKey {
        time,
        vital: vital.to_string(),
        device_id: device.to_string(),
    })
}

/// Percent-encodes a query value (RFC 3986 unreserved characters kept).
pub(crate) fn query_value(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The patient if the caller reaches them; the 404 otherwise (audited).
async fn patient_in_reach(
    state: &ApiState,
    c: &Caller,
    id: &str,
) -> Result<wardwatch_store::views::PatientView, Response> {
    match state.store.patient_view(id).await {
        Ok(Some(p)) if c.reaches_patient(&p.id, &p.team_id) => Ok(p),
        Ok(_) => Err(refuse(state, c, None, Problem::not_found("patient")).await),
        Err(e) => Err(store_error(e)),
    }
}

async fn readings(
    State(state): State<ApiState>,
    c: Caller,
    Path(id): Path<String>,
    query: Result<Query<ReadingsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return refuse(&state, &c, None, Problem::bad_request(&e.body_text())).await,
    };
    let p = match patient_in_reach(&state, &c, &id).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if let Some(v) = &q.vital {
        if wardwatch_core::Vital::from_name(v).is_none() {
            return refuse(
                &state,
                &c,
                None,
                Problem::bad_request(&format!("unknown vital {v:?}")),
            )
            .await;
        }
    }
    let to = q.to.unwrap_or_else(wardwatch_core::clock::engine::now);
    let from = q.from.unwrap_or(to - chrono::Duration::hours(24));
    if from >= to || to - from > chrono::Duration::days(366) {
        return refuse(
            &state,
            &c,
            None,
            Problem::bad_request("from must be before to, and the range at most 366 days"),
        )
        .await;
    }
    if let Err(r) = record(&state, &c, Some(&p.id), StatusCode::OK).await {
        return r;
    }
    match (&q.bucket, &q.vital) {
        (Some(b), Some(vital)) => {
            let Some(span) = wardwatch_alerting::policy::Span::parse(b).filter(|s| s.secs() >= 1)
            else {
                return refuse(
                    &state,
                    &c,
                    None,
                    Problem::bad_request("bucket must look like 30s, 15m or 1h"),
                )
                .await;
            };
            // A row cap on summaries too: bucket=1s over a year is 31
            // million rows of work for one request.
            let buckets = (to - from).num_seconds() / span.secs().max(1);
            if buckets > MAX_PAGE {
                return refuse(
                    &state,
                    &c,
                    None,
                    Problem::bad_request(&format!(
                        "that is {buckets} buckets; at most {MAX_PAGE}: choose a wider bucket or a shorter range"
                    )),
                )
                .await;
            }
            match state
                .store
                .reading_buckets(&p.id, vital, from, to, span.secs())
                .await
            {
                Ok(rows) => Json(
                    rows.into_iter()
                        .map(|b| {
                            serde_json::json!({"start": b.start, "count": b.count,
                                "min": b.min, "max": b.max, "avg": b.avg})
                        })
                        .collect::<Vec<_>>(),
                )
                .into_response(),
                Err(e) => store_error(e),
            }
        }
        (Some(_), None) => {
            refuse(
                &state,
                &c,
                None,
                Problem::bad_request("bucket needs a vital"),
            )
            .await
        }
        (None, vital) => {
            let limit = q.limit.unwrap_or(MAX_PAGE);
            if !(1..=MAX_PAGE).contains(&limit) {
                return refuse(
                    &state,
                    &c,
                    None,
                    Problem::bad_request("limit must be between 1 and 10000"),
                )
                .await;
            }
            let after = match q.after.as_deref().map(parse_cursor).transpose() {
                Ok(a) => a,
                Err(p) => return refuse(&state, &c, None, p).await,
            };
            // One more than asked: whether a next page exists.
            let rows = state
                .store
                .readings_page(&p.id, vital.as_deref(), from, to, after.as_ref(), limit + 1)
                .await;
            let (rows, next) = match rows {
                Ok(mut rows) => {
                    let more = rows.len() as i64 > limit;
                    rows.truncate(usize::try_from(limit).unwrap_or(0));
                    let next =
                        more.then(|| rows.last().map(page_cursor))
                            .flatten()
                            .map(|cursor| {
                                let mut link = format!(
                            "/api/v1/patients/{}/readings?from={}&to={}&limit={limit}&after={}",
                            query_value(&p.id),
                            query_value(&from.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
                            query_value(&to.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
                            query_value(&cursor)
                        );
                                if let Some(v) = vital {
                                    link.push_str(&format!("&vital={}", query_value(v)));
                                }
                                format!("<{link}>; rel=\"next\"")
                            });
                    (Ok(rows), next)
                }
                Err(e) => (Err(e), None),
            };
            let notes = state.store.reading_notes(&p.id, from, to).await;
            match (rows, notes) {
                (Ok(rows), Ok(notes)) => with_next(
                    Json(
                    rows.into_iter()
                        .map(|r| {
                            // Correction notes travel with the reading they are about.
                            let on_it: Vec<_> = notes
                                .iter()
                                .filter(|n| {
                                    n.vital == r.vital
                                        && n.time == r.time
                                        && n.device_id == r.device_id
                                })
                                .map(|n| {
                                    serde_json::json!({"author": n.author, "text": n.text,
                                    "created_at": n.created_at})
                                })
                                .collect();
                            serde_json::json!({"vital": r.vital, "time": r.time, "value": r.value,
                                "device_id": r.device_id, "source": r.source, "notes": on_it})
                        })
                        .collect::<Vec<_>>(),
                )
                .into_response(),
                    next,
                ),
                (Err(e), _) | (_, Err(e)) => store_error(e),
            }
        }
    }
}

/// The ward board: one static page, no build step; it signs in with a
/// token and follows the live stream.
async fn board() -> Response {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                axum::http::header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline' 'self'; style-src 'unsafe-inline' 'self'",
            ),
        ],
        include_str!("board.html"),
    )
        .into_response()
}

/// `GET /api/v1/me`: who the token belongs to (the board picks its teams).
async fn me(c: Caller) -> Response {
    Json(serde_json::json!({
        "id": c.principal.user_id, "role": c.principal.role,
        "teams": c.principal.teams, "patient_id": c.principal.patient_id,
    }))
    .into_response()
}

/// `GET /api/v1/openapi.json`: the API's description (OpenAPI 3.1); a test
/// checks it names every route.
async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}
