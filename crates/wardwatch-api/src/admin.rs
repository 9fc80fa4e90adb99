//! What only admins manage: users and their team memberships, tokens, and
//! the device catalogue (register, assign to a patient from a time, return,
//! retire). Team policies themselves are reviewed configuration files
//! (`config/teams/*.toml`); `GET /api/v1/teams` lists them with their
//! members. Everyone else gets 404, as for anything outside their reach.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use wardwatch_core::{DeviceId, PatientId};
use wardwatch_store::prelude::*;
use wardwatch_store::records::{DeviceRow, UserRow};

use crate::{json_body, record, record_detail, refuse, store_problem, ApiState, Caller, Problem};

/// Refuses anyone but an admin with the 404 everything out of reach gets.
async fn admin_only(state: &ApiState, c: &Caller) -> Result<(), Response> {
    if c.is(&["admin"]) {
        Ok(())
    } else {
        Err(refuse(state, c, None, Problem::not_found("resource")).await)
    }
}

fn user_json(u: &UserRow) -> serde_json::Value {
    serde_json::json!({"id": u.id, "role": u.role, "patient_id": u.patient_id,
        "teams": u.teams, "disabled": u.disabled})
}

/// `GET /api/v1/users`.
pub(crate) async fn users(State(state): State<ApiState>, c: Caller) -> Response {
    if let Err(r) = admin_only(&state, &c).await {
        return r;
    }
    match state.store.users().await {
        Ok(users) => {
            if let Err(r) = record(&state, &c, None, StatusCode::OK).await {
                return r;
            }
            Json(users.iter().map(user_json).collect::<Vec<_>>()).into_response()
        }
        Err(e) => store_problem(e).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserBody {
    role: String,
    #[serde(default)]
    teams: Vec<String>,
    patient_id: Option<String>,
}

/// `PUT /api/v1/users/{id}`: creates a user or replaces their role and teams.
pub(crate) async fn put_user(
    State(state): State<ApiState>,
    c: Caller,
    Path(id): Path<String>,
    body: Result<Json<UserBody>, JsonRejection>,
) -> Response {
    if let Err(r) = admin_only(&state, &c).await {
        return r;
    }
    let b = match json_body(body) {
        Ok(b) => b,
        Err(e) => return refuse(&state, &c, None, e).await,
    };
    if id.len() > 128 || b.teams.iter().any(|t| t.trim().is_empty() || t.len() > 128) {
        let p = Problem::bad_request("user ids and team names: 1 to 128 characters");
        return refuse(&state, &c, None, p).await;
    }
    if let Some(p) = &b.patient_id {
        match state.store.patient_view(p).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                let p = Problem::bad_request(&format!("patient {p:?} is not enrolled"));
                return refuse(&state, &c, None, p).await;
            }
            Err(e) => return store_problem(e).into_response(),
        }
    }
    if let Err(e) = state
        .store
        .upsert_user(&id, &b.role, b.patient_id.as_deref(), &b.teams)
        .await
    {
        let p = match e {
            wardwatch_store::StoreError::Rejected(m) => Problem::bad_request(&m),
            e => store_problem(e),
        };
        return refuse(&state, &c, None, p).await;
    }
    let detail = serde_json::json!({"user": id, "role": b.role, "teams": b.teams,
        "patient_id": b.patient_id});
    if let Err(r) = record_detail(&state, &c, None, StatusCode::OK, detail.clone()).await {
        return r;
    }
    Json(detail).into_response()
}

/// `DELETE /api/v1/users/{id}`: disables the user and revokes their tokens
/// (their history stays attributable).
pub(crate) async fn disable_user(
    State(state): State<ApiState>,
    c: Caller,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = admin_only(&state, &c).await {
        return r;
    }
    if id == c.principal.user_id {
        let p = Problem::new(
            StatusCode::CONFLICT,
            "Not possible",
            "an admin cannot disable themselves".into(),
        );
        return refuse(&state, &c, None, p).await;
    }
    match state.store.disable_user(&id).await {
        Ok(true) => {
            let detail = serde_json::json!({"user": id});
            if let Err(r) = record_detail(&state, &c, None, StatusCode::NO_CONTENT, detail).await {
                return r;
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => refuse(&state, &c, None, Problem::not_found("active user")).await,
        Err(e) => store_problem(e).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenBody {
    /// Valid for this many days (1–366, default 90).
    days: Option<i64>,
}

/// `POST /api/v1/users/{id}/tokens`: a new token, shown this once.
pub(crate) async fn create_token(
    State(state): State<ApiState>,
    c: Caller,
    Path(id): Path<String>,
    body: Result<Json<TokenBody>, JsonRejection>,
) -> Response {
    if let Err(r) = admin_only(&state, &c).await {
        return r;
    }
    let days = match json_body(body) {
        Ok(b) => b.days.unwrap_or(90),
        Err(e) => return refuse(&state, &c, None, e).await,
    };
    if !(1..=366).contains(&days) {
        let p = Problem::bad_request("days must be between 1 and 366");
        return refuse(&state, &c, None, p).await;
    }
    let token = crate::new_token();
    let expires_at = wardwatch_core::clock::engine::now() + chrono::Duration::days(days);
    match state
        .store
        .insert_token(&id, &crate::token_hash(&token), expires_at)
        .await
    {
        Ok(()) => {
            // The token itself is never audited, only that one was made.
            let detail = serde_json::json!({"user": id, "expires_at": expires_at});
            if let Err(r) = record_detail(&state, &c, None, StatusCode::CREATED, detail).await {
                return r;
            }
            (
                StatusCode::CREATED,
                Json(serde_json::json!({"user": id, "token": token, "expires_at": expires_at})),
            )
                .into_response()
        }
        Err(wardwatch_store::StoreError::Rejected(_)) => {
            refuse(&state, &c, None, Problem::not_found("active user")).await
        }
        Err(e) => store_problem(e).into_response(),
    }
}

/// `GET /api/v1/teams`: admins see every configured team and everyone's
/// memberships; nurses and clinicians their own teams.
pub(crate) async fn teams(State(state): State<ApiState>, c: Caller) -> Response {
    if !c.is(&["admin", "nurse", "clinician"]) {
        return refuse(&state, &c, None, Problem::not_found("resource")).await;
    }
    let users = match state.store.users().await {
        Ok(u) => u,
        Err(e) => return store_problem(e).into_response(),
    };
    let mut ids: Vec<String> = state
        .catalog
        .teams
        .as_ref()
        .map(|t| t.iter().map(|t| t.id.clone()).collect())
        .unwrap_or_default();
    ids.extend(users.iter().flat_map(|u| u.teams.iter().cloned()));
    ids.sort_unstable();
    ids.dedup();
    let admin = c.is(&["admin"]);
    let body: Vec<serde_json::Value> = ids
        .iter()
        .filter(|t| admin || c.principal.teams.contains(t))
        .map(|t| {
            let team = state.catalog.teams.as_ref().and_then(|ts| ts.get(t));
            let configured = team.is_some_and(|x| &x.id == t);
            serde_json::json!({
                "id": t,
                "name": team.filter(|_| configured).map(|x| x.name.clone()),
                // A team without its own file runs on the default policy.
                "policy": if configured { t.as_str() } else { "default" },
                "members": users.iter().filter(|u| !u.disabled && u.teams.contains(t))
                    .map(|u| serde_json::json!({"id": u.id, "role": u.role})).collect::<Vec<_>>(),
            })
        })
        .collect();
    if let Err(r) = record(&state, &c, None, StatusCode::OK).await {
        return r;
    }
    Json(body).into_response()
}

fn device_json(d: &DeviceRow) -> serde_json::Value {
    serde_json::json!({"id": d.id, "model": d.model, "kind": d.kind, "status": d.status,
        "patient_id": d.patient_id, "assigned_from": d.assigned_from})
}

/// `GET /api/v1/devices`: the catalogue.
pub(crate) async fn devices(State(state): State<ApiState>, c: Caller) -> Response {
    if let Err(r) = admin_only(&state, &c).await {
        return r;
    }
    match state.store.devices().await {
        Ok(d) => {
            if let Err(r) = record(&state, &c, None, StatusCode::OK).await {
                return r;
            }
            Json(d.iter().map(device_json).collect::<Vec<_>>()).into_response()
        }
        Err(e) => store_problem(e).into_response(),
    }
}

/// `GET /api/v1/devices/{id}`.
pub(crate) async fn device(
    State(state): State<ApiState>,
    c: Caller,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = admin_only(&state, &c).await {
        return r;
    }
    match state.store.device(&id).await {
        Ok(Some(d)) => {
            if let Err(r) = record(&state, &c, d.patient_id.as_deref(), StatusCode::OK).await {
                return r;
            }
            Json(device_json(&d)).into_response()
        }
        Ok(None) => refuse(&state, &c, None, Problem::not_found("device")).await,
        Err(e) => store_problem(e).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeviceBody {
    model: String,
    kind: String,
}

fn device_id(id: &str) -> Result<DeviceId, Problem> {
    DeviceId::new(id.to_string()).map_err(|e| Problem::bad_request(&e.to_string()))
}

/// `PUT /api/v1/devices/{id}`: adds a device to the catalogue or corrects
/// its model and kind.
pub(crate) async fn put_device(
    State(state): State<ApiState>,
    c: Caller,
    Path(id): Path<String>,
    body: Result<Json<DeviceBody>, JsonRejection>,
) -> Response {
    if let Err(r) = admin_only(&state, &c).await {
        return r;
    }
    let (dev, b) = match (device_id(&id), json_body(body)) {
        (Ok(d), Ok(b)) => (d, b),
        (Err(e), _) | (_, Err(e)) => return refuse(&state, &c, None, e).await,
    };
    match state.store.register_device(&dev, &b.model, &b.kind).await {
        Ok(d) => {
            let detail = serde_json::json!({"device": d.id, "model": d.model, "kind": d.kind});
            if let Err(r) = record_detail(&state, &c, None, StatusCode::OK, detail).await {
                return r;
            }
            Json(device_json(&d)).into_response()
        }
        Err(wardwatch_store::StoreError::Rejected(m)) => {
            refuse(&state, &c, None, Problem::bad_request(&m)).await
        }
        Err(e) => store_problem(e).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AssignBody {
    patient_id: String,
    /// Default: now. Readings from this time on are the patient's.
    from: Option<DateTime<Utc>>,
}

/// The catalogued device, or the 404 for an unknown one (a device is
/// registered with its model and kind before it is lent).
async fn catalogued(state: &ApiState, c: &Caller, id: &str) -> Result<DeviceId, Response> {
    let dev = match device_id(id) {
        Ok(d) => d,
        Err(e) => return Err(refuse(state, c, None, e).await),
    };
    match state.store.device(id).await {
        Ok(Some(_)) => Ok(dev),
        Ok(None) => Err(refuse(state, c, None, Problem::not_found("device")).await),
        Err(e) => Err(store_problem(e).into_response()),
    }
}

/// `POST /api/v1/devices/{id}/assign`: lends the device to a patient from
/// a time (ending any earlier loan then).
pub(crate) async fn assign_device(
    State(state): State<ApiState>,
    c: Caller,
    Path(id): Path<String>,
    body: Result<Json<AssignBody>, JsonRejection>,
) -> Response {
    if let Err(r) = admin_only(&state, &c).await {
        return r;
    }
    let dev = match catalogued(&state, &c, &id).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let b = match json_body(body) {
        Ok(b) => b,
        Err(e) => return refuse(&state, &c, None, e).await,
    };
    let patient = match PatientId::new(b.patient_id.clone()) {
        Ok(p) => p,
        Err(e) => return refuse(&state, &c, None, Problem::bad_request(&e.to_string())).await,
    };
    let from = b.from.unwrap_or_else(wardwatch_core::clock::engine::now);
    let pid = Some(b.patient_id.as_str());
    match state.store.assign_device(&dev, &patient, from).await {
        Ok(()) => answer_device(&state, &c, &id, pid, serde_json::json!({"from": from})).await,
        Err(e) => refuse(&state, &c, pid, store_problem(e)).await,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReturnBody {
    /// Default: now. Readings from this time on are quarantined as unassigned.
    at: Option<DateTime<Utc>>,
}

/// `POST /api/v1/devices/{id}/return`: ends the device's loan.
pub(crate) async fn return_device(
    State(state): State<ApiState>,
    c: Caller,
    Path(id): Path<String>,
    body: Result<Json<ReturnBody>, JsonRejection>,
) -> Response {
    if let Err(r) = admin_only(&state, &c).await {
        return r;
    }
    let dev = match catalogued(&state, &c, &id).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let at = match json_body(body) {
        Ok(b) => b.at.unwrap_or_else(wardwatch_core::clock::engine::now),
        Err(e) => return refuse(&state, &c, None, e).await,
    };
    let holder = state
        .store
        .device(&id)
        .await
        .ok()
        .flatten()
        .and_then(|d| d.patient_id);
    match state.store.unassign_device(&dev, at).await {
        Ok(()) => {
            answer_device(
                &state,
                &c,
                &id,
                holder.as_deref(),
                serde_json::json!({"at": at}),
            )
            .await
        }
        Err(e) => refuse(&state, &c, holder.as_deref(), store_problem(e)).await,
    }
}

/// `POST /api/v1/devices/{id}/retire`: out of service for good.
pub(crate) async fn retire_device(
    State(state): State<ApiState>,
    c: Caller,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = admin_only(&state, &c).await {
        return r;
    }
    let dev = match catalogued(&state, &c, &id).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    match state.store.retire_device(&dev).await {
        Ok(_) => answer_device(&state, &c, &id, None, serde_json::json!({})).await,
        Err(e) => refuse(&state, &c, None, store_problem(e)).await,
    }
}

/// Audits a device change and answers with the device as it now stands.
async fn answer_device(
    state: &ApiState,
    c: &Caller,
    id: &str,
    patient: Option<&str>,
    mut detail: serde_json::Value,
) -> Response {
    if let Some(m) = detail.as_object_mut() {
        m.insert("device".into(), id.into());
    }
    if let Err(r) = record_detail(state, c, patient, StatusCode::OK, detail).await {
        return r;
    }
    match state.store.device(id).await {
        Ok(Some(d)) => Json(device_json(&d)).into_response(),
        Ok(None) => Problem::not_found("device").into_response(),
        Err(e) => store_problem(e).into_response(),
    }
}
