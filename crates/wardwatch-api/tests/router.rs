//! The API's own contract, in-process: its router served on `127.0.0.1:0`
//! over a real store (a fresh PostgreSQL database, then an embedded SQLite
//! file), with no broker, rules or engine. Who may see what, and that bad
//! requests get a reason.
//!
//! Environment: `WARDWATCH_TEST_PG` (admin URL, default
//! `postgres://postgres@127.0.0.1:5432/postgres`).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use chrono::{Duration, Utc};
use wardwatch_api::{new_token, token_hash, ApiState, Catalog, FailedAuth};
use wardwatch_core::PatientId;
use wardwatch_store::prelude::*;
use wardwatch_store::testing::{enrol, FreshPg};
use wardwatch_store::{Backend, PgStore, SqliteStore};

/// Serves the router on a free loopback port; returns its base URL.
async fn serve(store: Backend) -> String {
    let pathways = wardwatch_rules::pathway::built_in().unwrap();
    let rules = wardwatch_rules::shard::RuleSet::new(pathways);
    let state = ApiState {
        store,
        feed: None,
        failed: Arc::new(FailedAuth::with_trusted_proxies(Vec::new())),
        catalog: Arc::new(Catalog {
            teams: Some(wardwatch_alerting::policy::Teams::built_in().unwrap()),
            pathways: Arc::new(arc_swap::ArcSwap::from_pointee(rules)),
            rules_enabled: false,
        }),
        rules: Arc::new(OnceLock::new()),
        readings: None,
    };
    let app = wardwatch_api::router(state).into_make_service_with_connect_info::<SocketAddr>();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// A user on `teams` with a fresh token.
async fn user(store: &Backend, id: &str, role: &str, teams: &[&str]) -> String {
    let teams: Vec<String> = teams.iter().map(|t| t.to_string()).collect();
    store.upsert_user(id, role, None, &teams).await.unwrap();
    let token = new_token();
    store
        .insert_token(id, &token_hash(&token), Utc::now() + Duration::hours(1))
        .await
        .unwrap();
    token
}

async fn get(base: &str, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new().get(format!("{base}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(serde_json::Value::Null);
    (status, body)
}

/// The contract, against one store.
async fn the_contract(store: Backend) {
    let nurse_a = user(&store, "nurse-a", "nurse", &["ward-a"]).await;
    user(&store, "nurse-b", "nurse", &["ward-b"]).await;
    for (patient, team) in [("pa-1", "ward-a"), ("pb-1", "ward-b")] {
        enrol(&store, &PatientId::new(patient).unwrap(), team, None)
            .await
            .unwrap();
    }
    let base = serve(store).await;

    // No token, or a wrong one: 401 with a reason, never data.
    for token in [None, Some("ww_not-a-token")] {
        let (status, body) = get(&base, "/api/v1/alerts", token).await;
        assert_eq!(status, 401, "{body}");
        assert!(
            body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{body}"
        );
    }

    // The nurse is who the token says, on her own team.
    let (status, me) = get(&base, "/api/v1/me", Some(&nurse_a)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["id"], "nurse-a");
    assert_eq!(me["teams"], serde_json::json!(["ward-a"]));

    // Her team's patients, and not another team's: the other team's
    // patient is "not found", as an absent one is.
    let (status, list) = get(&base, "/api/v1/teams/ward-a/patients", Some(&nurse_a)).await;
    assert_eq!(status, 200, "{list}");
    let ids: Vec<&str> = list
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, ["pa-1"], "{list}");
    let (status, _) = get(&base, "/api/v1/teams/ward-b/patients", Some(&nurse_a)).await;
    assert!(matches!(status, 403 | 404), "{status}");
    let (own, _) = get(&base, "/api/v1/patients/pa-1", Some(&nurse_a)).await;
    let (other, _) = get(&base, "/api/v1/patients/pb-1", Some(&nurse_a)).await;
    let (absent, _) = get(&base, "/api/v1/patients/nobody", Some(&nurse_a)).await;
    assert_eq!((own, other, absent), (200, 404, 404));

    // A bad request says what is wrong.
    let (status, body) = get(
        &base,
        "/api/v1/patients/pa-1/readings?from=yesterday",
        Some(&nurse_a),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );

    // Alert lists take the four states and four severities by name, and
    // anything else is refused with what is allowed, not read as "all".
    for query in [
        "state=open",
        "state=acknowledged",
        "state=resolved",
        "state=unresolved",
        "severity=low",
        "severity=emergency",
    ] {
        let (status, body) = get(&base, &format!("/api/v1/alerts?{query}"), Some(&nurse_a)).await;
        assert_eq!(status, 200, "{query}: {body}");
    }
    for (query, names) in [
        ("state=closed", "open, acknowledged, resolved or unresolved"),
        ("severity=urgent", "low, medium, high or emergency"),
    ] {
        let (status, body) = get(&base, &format!("/api/v1/alerts?{query}"), Some(&nurse_a)).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body["detail"].as_str().is_some_and(|d| d.contains(names)),
            "{query}: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_keeps_its_contract_on_postgresql() {
    // The database is dropped with `db`, when the test ends, pass or fail.
    let db = FreshPg::create("api_router").await;
    let pg = PgStore::connect(&db.url, 4).await.unwrap();
    pg.migrate().await.unwrap();
    the_contract(Backend::Pg(pg)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_keeps_its_contract_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("ww.db")).await.unwrap();
    the_contract(Backend::Sqlite(store)).await;
}
