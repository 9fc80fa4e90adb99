//! The HTTP API under `/api/v1`: bearer-token authentication, per-team
//! access control (a resource outside the caller's reach answers 404, so
//! its existence does not leak), an append-only audit of every write and
//! every read of a patient's record, RFC 9457 problem+json errors, and the
//! live SSE stream of alert changes for the caller's teams.
//!
//! So far (issue 5, first slice): `GET /api/v1/patients/{id}`,
//! `GET /api/v1/patients/{id}/readings` (raw or downsampled),
//! `GET /api/v1/patients/{id}/score`, `GET /api/v1/teams/{team}/patients`,
//! `GET /api/v1/alerts`, `POST /api/v1/alerts/{id}/acknowledge`,
//! `POST /api/v1/alerts/{id}/resolve`, `GET /api/v1/stream`,
//! `GET /api/v1/audit`, and FHIR R4 `GET /fhir/Observation`.

mod auth;
mod fhir;
mod problem;
mod scores;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_stream::wrappers::BroadcastStream;
use wardwatch_alerting::feed::AlertFeed;
use wardwatch_store::access::{AuditEntry, Principal};
use wardwatch_store::alerts::AlertRow;
use wardwatch_store::{PgStore, StoreError};

pub use auth::{new_token, token_hash, FailedAuth};
pub use problem::Problem;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The store.
    pub store: PgStore,
    /// The live feed of alert changes.
    pub feed: Option<AlertFeed>,
    /// Failed authentications per client address (rate limit).
    pub failed: Arc<FailedAuth>,
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
        .route("/fhir/Observation", get(fhir::search_observations))
        .layer(DefaultBodyLimit::max(64 * 1024))
        .with_state(state)
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
    let client = addr.ip().to_string();
    match auth::authenticate(state, headers, addr.ip()).await {
        Ok(principal) => Ok(Caller {
            principal,
            client,
            method: method.clone(),
            uri: uri.clone(),
        }),
        Err(p) => {
            let _ = state
                .store
                .audit(&AuditEntry {
                    user_id: None,
                    action: method.to_string(),
                    resource: uri.path().to_string(),
                    patient_id: None,
                    status: i32::from(p.status),
                    client: Some(client),
                    detail: serde_json::json!({"reason": p.detail}),
                })
                .await;
            Err(p.into_response())
        }
    }
}

async fn record(
    state: &ApiState,
    c: &Caller,
    patient: Option<&str>,
    status: StatusCode,
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
            detail: serde_json::json!({}),
        })
        .await
        .map_err(|e| Problem::unavailable(&e).into_response())
}

fn store_error(e: StoreError) -> Response {
    match e {
        StoreError::Rejected(m) => {
            Problem::new(StatusCode::CONFLICT, "Not possible", m).into_response()
        }
        e => Problem::unavailable(&e).into_response(),
    }
}

#[derive(Serialize)]
struct PatientBody {
    id: String,
    team_id: String,
    pathway: String,
    spo2_scale: i16,
    discharged: bool,
}

async fn get_patient(State(state): State<ApiState>, c: Caller, Path(id): Path<String>) -> Response {
    let view = match state.store.patient_view(&id).await {
        Ok(v) => v,
        Err(e) => return store_error(e),
    };
    let Some(p) = view.filter(|p| c.reaches_patient(&p.id, &p.team_id)) else {
        if let Err(r) = record(&state, &c, None, StatusCode::NOT_FOUND).await {
            return r;
        }
        return Problem::not_found("patient").into_response();
    };
    if let Err(r) = record(&state, &c, Some(&p.id), StatusCode::OK).await {
        return r;
    }
    Json(PatientBody {
        id: p.id,
        team_id: p.team_id,
        pathway: p.pathway,
        spo2_scale: p.spo2_scale,
        discharged: p.discharged,
    })
    .into_response()
}

#[derive(Serialize)]
struct AlertBody {
    id: i64,
    patient_id: String,
    team_id: String,
    kind: String,
    severity: String,
    state: String,
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
}

async fn list_alerts(
    State(state): State<ApiState>,
    c: Caller,
    query: Result<Query<AlertQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = query else {
        return Problem::bad_request("query parameters are state and team only").into_response();
    };
    if !c.is(&["admin", "nurse", "clinician"]) {
        return Problem::not_found("resource").into_response();
    }
    if let Some(s) = &q.state {
        if !matches!(s.as_str(), "open" | "acknowledged" | "resolved") {
            return Problem::bad_request("state must be open, acknowledged or resolved")
                .into_response();
        }
    }
    let rows = match state.store.list_alerts(q.state.as_deref(), 500).await {
        Ok(r) => r,
        Err(e) => return store_error(e),
    };
    let body: Vec<AlertBody> = rows
        .into_iter()
        .filter(|a| c.reaches_alert(a))
        .filter(|a| q.team.as_deref().is_none_or(|t| a.team_id == t))
        .map(AlertBody::from)
        .collect();
    if let Err(r) = record(&state, &c, None, StatusCode::OK).await {
        return r;
    }
    Json(body).into_response()
}

async fn alert_in_reach(state: &ApiState, c: &Caller, id: i64) -> Result<AlertRow, Response> {
    match state.store.alert(id).await {
        Ok(Some(a)) if c.reaches_alert(&a) && c.is(&["nurse", "clinician", "admin"]) => Ok(a),
        Ok(_) => Err(Problem::not_found("alert").into_response()),
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
        .acknowledge_alert(id, &c.principal.user_id, Utc::now())
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
    let status = if result.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::CONFLICT
    };
    if let Err(r) = record(state, c, Some(&before.patient_id), status).await {
        return r;
    }
    match result {
        Ok(a) => Json(AlertBody::from(a)).into_response(),
        Err(e) => store_error(e),
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
        Err(e) => return Problem::bad_request(&e.body_text()).into_response(),
    };
    if wardwatch_alerting::lifecycle::Outcome::parse(&body.outcome).is_none() {
        return Problem::bad_request(
            "outcome must be one of reviewed_no_action, advice_given, visit_arranged, \
             escalated_emergency, device_or_data_issue, other",
        )
        .into_response();
    }
    let result = state
        .store
        .resolve_alert(
            id,
            &c.principal.user_id,
            &body.outcome,
            body.note.as_deref(),
            Utc::now(),
        )
        .await;
    answer_alert_write(&state, &c, &a, result).await
}

async fn stream(State(state): State<ApiState>, c: Caller) -> Response {
    if !c.is(&["admin", "nurse", "clinician"]) {
        return Problem::not_found("resource").into_response();
    }
    let Some(feed) = &state.feed else {
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Live updates unavailable",
            "alerting is disabled on this engine".into(),
        )
        .into_response();
    };
    if let Err(r) = record(&state, &c, None, StatusCode::OK).await {
        return r;
    }
    let admin = c.is(&["admin"]);
    let teams = c.principal.teams.clone();
    let events = BroadcastStream::new(feed.subscribe()).filter_map(move |item| {
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
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn audit(State(state): State<ApiState>, c: Caller) -> Response {
    if !c.is(&["admin"]) {
        return Problem::not_found("resource").into_response();
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
}

/// The patient if the caller reaches them; the 404 otherwise (audited).
async fn patient_in_reach(
    state: &ApiState,
    c: &Caller,
    id: &str,
) -> Result<wardwatch_store::access::PatientView, Response> {
    match state.store.patient_view(id).await {
        Ok(Some(p)) if c.reaches_patient(&p.id, &p.team_id) => Ok(p),
        Ok(_) => {
            record(state, c, None, StatusCode::NOT_FOUND).await?;
            Err(Problem::not_found("patient").into_response())
        }
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
        Err(e) => return Problem::bad_request(&e.body_text()).into_response(),
    };
    let p = match patient_in_reach(&state, &c, &id).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if let Some(v) = &q.vital {
        if wardwatch_core::Vital::from_name(v).is_none() {
            return Problem::bad_request(&format!("unknown vital {v:?}")).into_response();
        }
    }
    let to = q.to.unwrap_or_else(Utc::now);
    let from = q.from.unwrap_or(to - chrono::Duration::hours(24));
    if from >= to || to - from > chrono::Duration::days(366) {
        return Problem::bad_request("from must be before to, and the range at most 366 days")
            .into_response();
    }
    if let Err(r) = record(&state, &c, Some(&p.id), StatusCode::OK).await {
        return r;
    }
    match (&q.bucket, &q.vital) {
        (Some(b), Some(vital)) => {
            let Some(span) = wardwatch_alerting::policy::Span::parse(b).filter(|s| s.secs() >= 1)
            else {
                return Problem::bad_request("bucket must look like 30s, 15m or 1h")
                    .into_response();
            };
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
        (Some(_), None) => Problem::bad_request("bucket needs a vital").into_response(),
        (None, vital) => match state
            .store
            .readings_of(&p.id, vital.as_deref(), from, to, 10_000)
            .await
        {
            Ok(rows) => Json(
                rows.into_iter()
                    .map(|r| {
                        serde_json::json!({"vital": r.vital, "time": r.time, "value": r.value,
                            "device_id": r.device_id, "source": r.source})
                    })
                    .collect::<Vec<_>>(),
            )
            .into_response(),
            Err(e) => store_error(e),
        },
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
