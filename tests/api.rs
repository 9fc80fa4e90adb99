//! API tests over real HTTP against the real engine and PostgreSQL: a
//! table-driven access matrix (endpoint × role × own team / other team /
//! own patient / other patient), the audit trail, problem+json errors and
//! the live SSE stream.

mod common;

use chrono::{Duration as ChronoDuration, SecondsFormat, Utc};
use common::*;
use futures_util::StreamExt;
use reqwest::{Method, StatusCode};

fn an_hour_ago() -> String {
    (Utc::now() - ChronoDuration::hours(1)).to_rfc3339_opts(SecondsFormat::Secs, true)
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (StatusCode, String, serde_json::Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request");
        let status = res.status();
        let ctype = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let json = res.json().await.unwrap_or(serde_json::Value::Null);
        (status, ctype, json)
    }
}

/// Every (method, path template) the API serves, read from its router's
/// source, so a new route cannot escape the access matrix or the OpenAPI
/// document.
fn served_routes() -> Vec<(Method, String)> {
    let src = std::fs::read_to_string(repo().join("crates/wardwatch-api/src/lib.rs")).unwrap();
    let start = src.find("pub fn router(").expect("router");
    let body = &src[start..];
    let body = &body[..body.find("\n}\n").expect("end of router")];
    let mut out = Vec::new();
    for chunk in body.split(".route(").skip(1) {
        let path = chunk.split('"').nth(1).expect("route path").to_string();
        let chunk = chunk.split(".layer(").next().unwrap_or(chunk);
        for (name, m) in [
            ("get(", Method::GET),
            ("post(", Method::POST),
            ("put(", Method::PUT),
            ("delete(", Method::DELETE),
        ] {
            let found = chunk.match_indices(name).any(|(i, _)| {
                i == 0
                    || !chunk.as_bytes()[i - 1].is_ascii_alphanumeric()
                        && chunk.as_bytes()[i - 1] != b'_'
            });
            if found {
                out.push((m, path.clone()));
            }
        }
    }
    assert!(out.len() >= 30, "{out:?}");
    out
}

/// A concrete path matches a template when every `{name}` segment is filled.
fn matches_template(path: &str, template: &str) -> bool {
    let path = path.split('?').next().unwrap_or(path);
    let (a, b): (Vec<&str>, Vec<&str>) = (path.split('/').collect(), template.split('/').collect());
    a.len() == b.len()
        && a.iter()
            .zip(&b)
            .all(|(x, t)| (t.starts_with('{') && !x.is_empty()) || x == t)
}

fn token(db: &Db, user: &str) -> String {
    admin(&db.url, &["token", "create", "--user", user])
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_writes_tokens_and_the_audit_follow_each_callers_reach() {
    let (broker, db, engine) = stack("api_matrix").await;
    enrol(&db.url, "pa", "ward-a", "dev-a", &an_hour_ago());
    enrol(&db.url, "pb", "ward-b", "dev-b", &an_hour_ago());
    for args in [
        vec!["user", "add", "--id", "admin1", "--role", "admin"],
        vec![
            "user", "add", "--id", "nurse-a", "--role", "nurse", "--team", "ward-a",
        ],
        vec![
            "user",
            "add",
            "--id",
            "clin-b",
            "--role",
            "clinician",
            "--team",
            "ward-b",
        ],
        vec![
            "user",
            "add",
            "--id",
            "patient-a",
            "--role",
            "patient",
            "--patient",
            "pa",
        ],
        vec![
            "user",
            "add",
            "--id",
            "proxy-a",
            "--role",
            "proxy",
            "--patient",
            "pa",
        ],
    ] {
        admin(&db.url, &args);
    }
    let e = admin_fails(&db.url, &["user", "add", "--id", "x", "--role", "patient"]);
    assert!(e.contains("--patient"), "{e}");
    let t = |u: &str| token(&db, u);
    let (admin_t, nurse_t, clin_t, patient_t, proxy_t) = (
        t("admin1"),
        t("nurse-a"),
        t("clin-b"),
        t("patient-a"),
        t("proxy-a"),
    );
    assert!(
        nurse_t.starts_with("ww_") && nurse_t.len() == 67,
        "{nurse_t}"
    );

    // One alert per team.
    let mut p = broker.loadgen_publisher().await;
    let now = Utc::now().timestamp() as f64;
    p.publish(&readings_topic("dev-a"), septic_pack(now - 60.0))
        .await;
    p.publish(&readings_topic("dev-b"), septic_pack(now - 60.0))
        .await;
    p.flush().await;
    eventually("two alerts", || async {
        (db.count("SELECT count(*) FROM alerts").await == 2).then_some(())
    })
    .await;
    let alert_of = |patient: &str| {
        let pool = db.pool.clone();
        let patient = patient.to_string();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT id FROM alerts WHERE patient_id = $1")
                .bind(patient)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let (alert_a, alert_b) = (alert_of("pa").await, alert_of("pb").await);

    let api = Api {
        base: format!("http://127.0.0.1:{}", engine.http),
        http: reqwest::Client::new(),
    };
    use Method as M;
    // Lists only show what the caller reaches.
    let ids = |v: &serde_json::Value| -> Vec<i64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_i64().unwrap())
            .collect()
    };
    let (_, _, all) = api
        .call(M::GET, "/api/v1/alerts", Some(&admin_t), None)
        .await;
    assert_eq!(ids(&all).len(), 2);
    let (_, _, mine) = api
        .call(M::GET, "/api/v1/alerts", Some(&nurse_t), None)
        .await;
    assert_eq!(ids(&mine), vec![alert_a]);
    // A list read names the patients it showed, and only those.
    let named: serde_json::Value = sqlx::query_scalar(
        "SELECT detail->'patients' FROM audit_log WHERE user_id = 'nurse-a' \
         AND resource = '/api/v1/alerts' ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(named, serde_json::json!(["pa"]));
    let (_, _, theirs) = api
        .call(M::GET, "/api/v1/alerts?state=open", Some(&clin_t), None)
        .await;
    assert_eq!(ids(&theirs), vec![alert_b]);
    // Another team's busy day (600 newer alerts) never pushes a nurse's own
    // alert out of her list: the reach is applied before the list's limit.
    sqlx::query(
        "INSERT INTO alerts (patient_id, team_id, kind, severity, state, opened_at, policy, tier, summary) \
         SELECT 'pb', 'ward-b', 'clinical', 'low', 'resolved', now(), '{}', 0, 'past' \
         FROM generate_series(1, 600)",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let (_, _, mine) = api
        .call(M::GET, "/api/v1/alerts", Some(&nurse_t), None)
        .await;
    assert_eq!(ids(&mine), vec![alert_a]);
    let severity: String = sqlx::query_scalar("SELECT severity FROM alerts WHERE id = $1")
        .bind(alert_a)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let (_, _, same) = api
        .call(
            M::GET,
            &format!("/api/v1/alerts?severity={severity}"),
            Some(&nurse_t),
            None,
        )
        .await;
    assert_eq!(ids(&same), vec![alert_a]);
    let other = if severity == "low" { "high" } else { "low" };
    let (_, _, none) = api
        .call(
            M::GET,
            &format!("/api/v1/alerts?severity={other}"),
            Some(&nurse_t),
            None,
        )
        .await;
    assert!(ids(&none).is_empty());
    // Nor does a busy week of her own team's resolved alerts hide an open
    // one from the board's query.
    sqlx::query(
        "INSERT INTO alerts (patient_id, team_id, kind, severity, state, opened_at, policy, tier, summary) \
         SELECT 'pa', 'ward-a', 'technical', 'low', 'resolved', now(), '{}', 0, 'past' \
         FROM generate_series(1, 600)",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let (_, _, board) = api
        .call(
            M::GET,
            "/api/v1/alerts?state=unresolved",
            Some(&nurse_t),
            None,
        )
        .await;
    assert_eq!(ids(&board), vec![alert_a]);
    let (_, _, bs) = api
        .call(M::GET, "/api/v1/alerts?team=ward-b", Some(&nurse_t), None)
        .await;
    assert!(
        ids(&bs).is_empty(),
        "another team's alerts, even when asked for"
    );

    // Writes: another team's alert does not exist for the caller.
    let ack = |id: i64| format!("/api/v1/alerts/{id}/acknowledge");
    for (tok, want) in [
        (&clin_t, 404),
        (&patient_t, 404),
        (&proxy_t, 404),
        (&nurse_t, 200),
        (&nurse_t, 409),
    ] {
        let (status, _, body) = api.call(M::POST, &ack(alert_a), Some(tok), None).await;
        assert_eq!(status.as_u16(), want, "{body}");
    }
    let resolve = format!("/api/v1/alerts/{alert_b}/resolve");
    let (s, _, _) = api
        .call(
            M::POST,
            &resolve,
            Some(&nurse_t),
            Some(serde_json::json!({"outcome": "advice_given"})),
        )
        .await;
    assert_eq!(s, 404);
    let (s, ctype, body) = api
        .call(
            M::POST,
            &resolve,
            Some(&clin_t),
            Some(serde_json::json!({"outcome": "hugged"})),
        )
        .await;
    assert_eq!(
        (s, ctype.as_str()),
        (StatusCode::BAD_REQUEST, "application/problem+json")
    );
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("outcome must be one of"),
        "{body}"
    );
    let (s, _, body) = api
        .call(
            M::POST,
            &resolve,
            Some(&clin_t),
            Some(serde_json::json!({"outcome": "advice_given", "mood": 1})),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "unknown fields are refused: {body}"
    );
    let (s, _, body) = api
        .call(
            M::POST,
            &resolve,
            Some(&clin_t),
            Some(serde_json::json!({"outcome": "advice_given", "note": "phoned"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "resolved");

    // No token, a wrong token: 401 problem+json.
    let (s, ctype, _) = api.call(M::GET, "/api/v1/alerts", None, None).await;
    assert_eq!(
        (s, ctype.as_str()),
        (StatusCode::UNAUTHORIZED, "application/problem+json")
    );
    let (s, _, _) = api
        .call(M::GET, "/api/v1/alerts", Some("ww_nope"), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // A revoked token stops working.
    admin(&db.url, &["token", "revoke", "--user", "proxy-a"]);
    let (s, _, _) = api
        .call(M::GET, "/api/v1/patients/pa", Some(&proxy_t), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // The audit trail: who read which patient's record, and the refusals.
    let (s, _, _) = api
        .call(M::GET, "/api/v1/patients/pa", Some(&nurse_t), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let reads = db
        .count("SELECT count(*) FROM audit_log WHERE user_id = 'nurse-a' AND patient_id = 'pa' AND action = 'GET' AND status = 200")
        .await;
    assert_eq!(reads, 1);
    assert_eq!(
        db.count(
            "SELECT count(*) FROM alert_events WHERE kind = 'acknowledged' AND actor = 'nurse-a'"
        )
        .await,
        1
    );
    // Refusals are not a row each (a flood would fill the disk): counted,
    // and audited in aggregate, per client and reason, at the latest when
    // the engine stops.
    assert_eq!(
        db.count("SELECT count(*) FROM audit_log WHERE user_id IS NULL")
            .await,
        0
    );
    assert_eq!(
        engine
            .metric("wardwatch_api_auth_failures_total{reason=\"invalid\"}")
            .await,
        2.0
    );
    let mut engine = engine;
    assert!(engine.terminate(), "a clean exit on SIGTERM");
    let refused: Vec<(String, i32, String, i64)> = sqlx::query_as(
        "SELECT detail->>'reason', status, client, (detail->>'count')::bigint FROM audit_log \
         WHERE action = 'authentication_refused' ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        refused,
        [
            ("invalid".to_string(), 401, "127.0.0.1".to_string(), 2),
            ("missing".to_string(), 401, "127.0.0.1".to_string(), 1)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_stream_shows_a_nurse_her_teams_readings_and_alert_changes_only() {
    let (broker, db, engine) = stack("api_stream").await;
    enrol(&db.url, "pa", "ward-a", "dev-a", &an_hour_ago());
    enrol(&db.url, "pb", "ward-b", "dev-b", &an_hour_ago());
    admin(
        &db.url,
        &[
            "user", "add", "--id", "nurse-a", "--role", "nurse", "--team", "ward-a",
        ],
    );
    let tok = token(&db, "nurse-a");
    let res = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/api/v1/stream", engine.http))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // The handler subscribes to both feeds before it answers, so from the
    // 200 on, every event is either sent to us or filtered out.
    let mut body = res.bytes_stream();
    let mut p = broker.loadgen_publisher().await;
    let now = Utc::now().timestamp() as f64;
    // The other team's patient first, until its alert is committed: its
    // readings and alert go out before anything of pa's.
    p.publish(&readings_topic("dev-b"), septic_pack(now - 60.0))
        .await;
    p.flush().await;
    eventually("the other team's alert", || async {
        (db.count("SELECT count(*) FROM alerts WHERE patient_id = 'pb'")
            .await
            > 0)
        .then_some(())
    })
    .await;
    // Then the sentinel: pa's set and the alert it raises come after pb's.
    p.publish(&readings_topic("dev-a"), septic_pack(now - 60.0))
        .await;
    p.flush().await;
    // (event, patient) of every complete server-sent event so far.
    let events_in = |text: &str| -> Vec<(String, String)> {
        text.split("\n\n")
            .filter_map(|chunk| {
                let field = |name: &str| {
                    chunk
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .map(str::to_string)
                };
                let data: serde_json::Value = serde_json::from_str(&field("data: ")?).ok()?;
                Some((field("event: ")?, data["patient_id"].as_str()?.to_string()))
            })
            .collect()
    };
    let mut text = String::new();
    let got = tokio::time::timeout(WAIT, async {
        while let Some(chunk) = body.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            let seen = events_in(&text);
            let has = |e: &str| seen.iter().any(|(ev, p)| ev == e && p == "pa");
            // The six readings of pa's set, then the alert they raise.
            if has("alert")
                && seen
                    .iter()
                    .filter(|(ev, p)| ev == "reading" && p == "pa")
                    .count()
                    == 6
            {
                return;
            }
        }
    })
    .await;
    assert!(
        got.is_ok(),
        "no reading and alert events for the nurse's team: {text}"
    );
    assert!(
        events_in(&text).iter().all(|(_, p)| p == "pa"),
        "another team's reading or alert leaked: {text}"
    );
    drop(engine);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_come_raw_or_downsampled_and_as_a_fhir_searchset() {
    let (broker, db, engine) = stack("api_readings").await;
    let since = (Utc::now() - ChronoDuration::hours(3)).to_rfc3339_opts(SecondsFormat::Secs, true);
    enrol(&db.url, "pa", "ward-a", "dev-a", &since);
    enrol(&db.url, "pb", "ward-b", "dev-b", &since);
    admin(
        &db.url,
        &[
            "user", "add", "--id", "nurse-a", "--role", "nurse", "--team", "ward-a",
        ],
    );
    admin(
        &db.url,
        &[
            "user",
            "add",
            "--id",
            "patient-a",
            "--role",
            "patient",
            "--patient",
            "pa",
        ],
    );
    let (nurse, me) = (token(&db, "nurse-a"), token(&db, "patient-a"));
    // Six SpO2 readings ten minutes apart, plus a full set.
    let mut p = broker.loadgen_publisher().await;
    let base = (Utc::now().timestamp() / 3600) as f64 * 3600.0 - 3600.0;
    for k in 0..6 {
        let t = base + f64::from(k) * 600.0;
        p.publish(
            &readings_topic("dev-a"),
            format!(r#"[{{"bt":{t},"n":"spo2","u":"%","v":{}}}]"#, 94 + k),
        )
        .await;
    }
    p.publish(&readings_topic("dev-a"), septic_pack(base + 30.0))
        .await;
    p.flush().await;
    db.wait_for_readings(12, "12 readings").await;
    let api = Api {
        base: format!("http://127.0.0.1:{}", engine.http),
        http: reqwest::Client::new(),
    };
    let from = chrono::DateTime::from_timestamp(base as i64 - 60, 0)
        .unwrap()
        .to_rfc3339_opts(SecondsFormat::Secs, true);
    let q = |extra: &str| format!("/api/v1/patients/pa/readings?from={from}{extra}");
    let (s, _, raw) = api
        .call(Method::GET, &q("&vital=spo2"), Some(&nurse), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{raw}");
    let values: Vec<f64> = raw
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["value"].as_f64().unwrap())
        .collect();
    assert_eq!(
        values,
        vec![94.0, 94.0, 95.0, 96.0, 97.0, 98.0, 99.0],
        "the set's 94 and the six"
    );
    // Paged, never cut: three at a time, each page links the next, and the
    // pages together are the whole list, in order, each reading once.
    let mut paged = Vec::new();
    let mut next = Some(q("&vital=spo2&limit=3"));
    let mut pages = 0;
    while let Some(path) = next.take() {
        let res = api
            .http
            .get(format!("{}{path}", api.base))
            .bearer_auth(&nurse)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        next = res
            .headers()
            .get("link")
            .and_then(|l| l.to_str().ok())
            .and_then(|l| l.strip_prefix('<'))
            .and_then(|l| l.split_once(">; rel=\"next\""))
            .map(|(url, _)| url.to_string());
        let page: serde_json::Value = res.json().await.unwrap();
        let page = page.as_array().unwrap();
        assert!(page.len() <= 3);
        paged.extend(page.iter().map(|r| r["value"].as_f64().unwrap()));
        pages += 1;
    }
    assert_eq!((paged, pages), (values.clone(), 3));
    for bad in ["&limit=0", "&limit=10001", "&after=nonsense"] {
        let (s, _, body) = api.call(Method::GET, &q(bad), Some(&nurse), None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    // Summaries have a row cap too: one-second buckets over most of a year.
    let (s, _, body) = api
        .call(
            Method::GET,
            "/api/v1/patients/pa/readings?vital=spo2&bucket=1s&from=2026-01-01T00:00:00Z",
            Some(&nurse),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(detail(&body).contains("buckets; at most 10000"), "{body}");
    let (s, _, buckets) = api
        .call(Method::GET, &q("&vital=spo2&bucket=30m"), Some(&me), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{buckets}");
    let b = buckets.as_array().unwrap();
    assert_eq!(b.len(), 2, "{buckets}");
    assert_eq!(b[0]["count"], 4);
    assert_eq!(
        (b[0]["min"].as_f64(), b[0]["max"].as_f64()),
        (Some(94.0), Some(96.0))
    );
    assert_eq!(b[1]["count"], 3);
    let (s, ctype, body) = api
        .call(Method::GET, &q("&bucket=30m"), Some(&nurse), None)
        .await;
    assert_eq!(
        (s, ctype.as_str()),
        (StatusCode::BAD_REQUEST, "application/problem+json"),
        "{body}"
    );
    let (s, _, _) = api
        .call(Method::GET, &q("&nonsense=1"), Some(&nurse), None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _, _) = api
        .call(
            Method::GET,
            "/api/v1/patients/pb/readings",
            Some(&nurse),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // FHIR R4 searchset.
    let res = api
        .http
        .get(format!(
            "{}/fhir/Observation?patient=pa&date=ge{from}",
            api.base
        ))
        .bearer_auth(&me)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/fhir+json");
    let bundle: serde_json::Value = res.json().await.unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "searchset");
    let entries = bundle["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 12);
    assert_eq!(bundle["total"], 12);
    for e in entries {
        assert!(e["fullUrl"]
            .as_str()
            .unwrap()
            .contains("/fhir/Observation/"));
        let o = &e["resource"];
        assert_eq!(o["resourceType"], "Observation");
        assert_eq!(o["status"], "final");
        assert_eq!(o["subject"]["reference"], "Patient/pa");
        assert_eq!(o["category"][0]["coding"][0]["code"], "vital-signs");
        assert_eq!(o["code"]["coding"][0]["system"], "http://loinc.org");
        assert!(
            o["valueQuantity"].is_object() || o["valueString"].is_string(),
            "{o}"
        );
    }
    let spo2 = entries
        .iter()
        .find(|e| e["resource"]["code"]["coding"][0]["code"] == "59408-5")
        .unwrap();
    assert_eq!(
        spo2["resource"]["valueQuantity"]["system"],
        "http://unitsofmeasure.org"
    );
    assert_eq!(spo2["resource"]["valueQuantity"]["code"], "%");
    // FHIR paging: _count per page, Bundle.link "next" until the end; no
    // total while the search spans pages.
    let mut url = format!(
        "{}/fhir/Observation?patient=pa&date=ge{from}&_count=5",
        api.base
    );
    let mut seen = Vec::new();
    let mut totals = Vec::new();
    loop {
        let page: serde_json::Value = api
            .http
            .get(&url)
            .bearer_auth(&me)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        totals.push(page["total"].clone());
        for e in page["entry"].as_array().unwrap() {
            seen.push(e["fullUrl"].as_str().unwrap().to_string());
        }
        let next = page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_string());
        match next {
            Some(n) => url = n,
            None => break,
        }
    }
    let all: Vec<String> = entries
        .iter()
        .map(|e| e["fullUrl"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(seen, all, "three pages of 5, 5 and 2 make the whole search");
    assert!(totals.iter().all(|t| t.is_null()), "{totals:?}");
    let (s, _, _) = api
        .call(Method::GET, "/fhir/Observation?patient=pb", Some(&me), None)
        .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "another patient's record does not exist for a patient"
    );
    let (s, _, _) = api
        .call(
            Method::GET,
            "/fhir/Observation?patient=pa&code=1",
            Some(&me),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        db.count("SELECT count(*) FROM audit_log WHERE user_id = 'patient-a' AND patient_id = 'pa' AND resource = '/fhir/Observation'").await
            >= 1
    );
    drop(engine);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_current_news2_and_the_boards_patient_rows() {
    let (broker, db, engine) = stack("api_scores").await;
    enrol(&db.url, "pa", "ward-a", "dev-a", &an_hour_ago());
    enrol(&db.url, "pa2", "ward-a", "dev-a2", &an_hour_ago());
    enrol(&db.url, "pb", "ward-b", "dev-b", &an_hour_ago());
    admin(
        &db.url,
        &[
            "user", "add", "--id", "nurse-a", "--role", "nurse", "--team", "ward-a",
        ],
    );
    admin(
        &db.url,
        &[
            "user",
            "add",
            "--id",
            "clin-b",
            "--role",
            "clinician",
            "--team",
            "ward-b",
        ],
    );
    admin(
        &db.url,
        &[
            "user",
            "add",
            "--id",
            "patient-a",
            "--role",
            "patient",
            "--patient",
            "pa",
        ],
    );
    let (nurse, clin, me) = (
        token(&db, "nurse-a"),
        token(&db, "clin-b"),
        token(&db, "patient-a"),
    );
    let mut p = broker.loadgen_publisher().await;
    let now = Utc::now().timestamp() as f64;
    p.publish(&readings_topic("dev-a"), septic_pack(now - 120.0))
        .await;
    p.publish(
        &readings_topic("dev-a2"),
        r#"[{"n":"spo2","u":"%","v":97}]"#,
    )
    .await;
    p.flush().await;
    eventually("alert for pa", || async {
        (db.count("SELECT count(*) FROM alerts WHERE patient_id = 'pa'")
            .await
            == 1)
            .then_some(())
    })
    .await;
    let api = Api {
        base: format!("http://127.0.0.1:{}", engine.http),
        http: reqwest::Client::new(),
    };
    let (s, _, score) = api
        .call(Method::GET, "/api/v1/patients/pa/score", Some(&me), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{score}");
    assert_eq!(score["news2"]["total"], 9);
    assert_eq!(score["news2"]["band"], "high");
    assert_eq!(score["news2"]["breakdown"].as_array().unwrap().len(), 7);
    assert!(
        score["news2"]["response"]
            .as_str()
            .unwrap()
            .contains("Emergency"),
        "{score}"
    );
    let ages: Vec<i64> = score["readings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["age_secs"].as_i64().unwrap())
        .collect();
    assert_eq!(ages.len(), 6);
    assert!(ages.iter().all(|a| (100..3600).contains(a)), "{ages:?}");
    let (s, _, score2) = api
        .call(
            Method::GET,
            "/api/v1/patients/pa2/score",
            Some(&nurse),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(score2["news2"].is_null());
    let why = score2["not_scored"].as_str().unwrap();
    assert!(
        why.starts_with("unscorable: no complete NEWS2 set") && why.contains("respiration"),
        "{score2}"
    );
    assert_eq!(score2["board"]["status"], "unscorable", "{score2}");
    let (s, _, _) = api
        .call(Method::GET, "/api/v1/patients/pa/score", Some(&clin), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (s, _, rows) = api
        .call(
            Method::GET,
            "/api/v1/teams/ward-a/patients",
            Some(&nurse),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{rows}");
    let rows = rows.as_array().unwrap();
    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["pa", "pa2"], "the alerting patient first");
    assert_eq!(rows[0]["alert_severity"], "emergency");
    assert_eq!(rows[0]["news2"]["total"], 9);
    assert_eq!(rows[1]["vitals"][0]["vital"], "spo2");
    let spo2_trend = rows[0]["trends"]["spo2"].as_array().unwrap();
    assert_eq!(spo2_trend.len(), 1, "one hourly point so far");
    assert_eq!(spo2_trend[0]["mean"], 94.0);
    // The board read names every patient it showed.
    let named: serde_json::Value = sqlx::query_scalar(
        "SELECT detail->'patients' FROM audit_log \
         WHERE resource = '/api/v1/teams/ward-a/patients' AND status = 200 ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let mut named: Vec<String> = serde_json::from_value(named).unwrap();
    named.sort();
    assert_eq!(named, ["pa", "pa2"]);
    for (tok, want) in [(&clin, 404), (&me, 404)] {
        let (s, _, _) = api
            .call(
                Method::GET,
                "/api/v1/teams/ward-a/patients",
                Some(tok),
                None,
            )
            .await;
        assert_eq!(s.as_u16(), want);
    }
    drop(engine);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_every_route() {
    let (_broker, _db, engine) = stack("api_openapi").await;
    let doc: serde_json::Value = reqwest::get(format!(
        "http://127.0.0.1:{}/api/v1/openapi.json",
        engine.http
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    // Every route the API serves, with each of its methods.
    for (method, path) in served_routes() {
        let m = method.as_str().to_lowercase();
        assert!(
            doc["paths"][&path][&m].is_object(),
            "{method} {path} is not in the OpenAPI document"
        );
    }
    drop(engine);
}

/// Adds users through the real CLI.
fn add_users(db: &Db, users: &[(&str, &str, Option<&str>, Option<&str>)]) {
    for (id, role, team, patient) in users {
        let mut args = vec!["user", "add", "--id", id, "--role", role];
        if let Some(t) = team {
            args.extend(["--team", t]);
        }
        if let Some(p) = patient {
            args.extend(["--patient", p]);
        }
        admin(&db.url, &args);
    }
}

const MATRIX_USERS: [(&str, &str, Option<&str>, Option<&str>); 6] = [
    ("admin1", "admin", None, None),
    ("nurse-a", "nurse", Some("ward-a"), None),
    ("clin-a", "clinician", Some("ward-a"), None),
    ("clin-b", "clinician", Some("ward-b"), None),
    ("patient-a", "patient", None, Some("pa")),
    ("proxy-a", "proxy", None, Some("pa")),
];

/// Every endpoint × every role × own team / other team / own patient /
/// other patient. Writes a role may make are sent with a body that fails
/// validation, so a 400 shows the caller got past the access check without
/// changing anything; a 404 means the resource is out of their reach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_matrix_covers_every_endpoint_role_and_reach() {
    let (broker, db, engine) = stack("api_full_matrix").await;
    enrol(&db.url, "pa", "ward-a", "dev-a", &an_hour_ago());
    enrol(&db.url, "pb", "ward-b", "dev-b", &an_hour_ago());
    add_users(&db, &MATRIX_USERS);
    let tokens: Vec<String> = MATRIX_USERS.iter().map(|u| token(&db, u.0)).collect();

    let mut p = broker.loadgen_publisher().await;
    let now = Utc::now().timestamp() as f64;
    p.publish(&readings_topic("dev-a"), septic_pack(now - 60.0))
        .await;
    p.publish(&readings_topic("dev-b"), septic_pack(now - 60.0))
        .await;
    p.flush().await;
    eventually("two alerts", || async {
        (db.count("SELECT count(*) FROM alerts").await == 2).then_some(())
    })
    .await;
    let alert = |patient: &'static str| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT id FROM alerts WHERE patient_id = $1")
                .bind(patient)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let (a, b) = (alert("pa").await, alert("pb").await);
    let api = Api {
        base: format!("http://127.0.0.1:{}", engine.http),
        http: reqwest::Client::new(),
    };
    use serde_json::json;
    use Method as M;
    let empty = || Some(json!({}));
    let new_patient = json!({"id": "pz", "team": "ward-b", "pathway": "general",
        "date_of_birth": "1950-01-01"});
    // Roles, in order: admin, nurse-a, clin-a, clin-b, patient-a, proxy-a.
    #[rustfmt::skip]
    let matrix: Vec<(Method, String, Option<serde_json::Value>, [u16; 6])> = vec![
        (M::GET, "/".into(), None, [200, 200, 200, 200, 200, 200]),
        (M::GET, "/api/v1/openapi.json".into(), None, [200, 200, 200, 200, 200, 200]),
        (M::GET, "/api/v1/me".into(), None, [200, 200, 200, 200, 200, 200]),
        // Patients: own team, other team, own record, someone else's, nobody.
        (M::GET, "/api/v1/patients/pa".into(), None, [200, 200, 200, 404, 200, 200]),
        (M::GET, "/api/v1/patients/pb".into(), None, [200, 404, 404, 200, 404, 404]),
        (M::GET, "/api/v1/patients/nobody".into(), None, [404, 404, 404, 404, 404, 404]),
        (M::GET, "/api/v1/patients/pa/readings".into(), None, [200, 200, 200, 404, 200, 200]),
        (M::GET, "/api/v1/patients/pb/readings".into(), None, [200, 404, 404, 200, 404, 404]),
        (M::GET, "/api/v1/patients/pa/score".into(), None, [200, 200, 200, 404, 200, 200]),
        (M::GET, "/api/v1/patients/pb/score".into(), None, [200, 404, 404, 200, 404, 404]),
        (M::GET, "/fhir/Observation?patient=pa".into(), None, [200, 200, 200, 404, 200, 200]),
        (M::GET, "/fhir/Observation?patient=pb".into(), None, [200, 404, 404, 200, 404, 404]),
        (M::POST, "/api/v1/patients".into(), empty(), [400, 400, 400, 400, 404, 404]),
        // A real enrolment on ward-b: only its staff and admins may; the
        // admin goes first, so ward-b's clinician then finds the id taken.
        (M::POST, "/api/v1/patients".into(), Some(new_patient), [201, 404, 404, 409, 404, 404]),
        (M::POST, "/api/v1/patients/pa/transfer".into(), empty(), [400, 400, 400, 404, 404, 404]),
        (M::POST, "/api/v1/patients/pb/transfer".into(), empty(), [400, 404, 404, 400, 404, 404]),
        (M::POST, "/api/v1/patients/pa/discharge".into(), empty(), [400, 400, 400, 404, 404, 404]),
        (M::POST, "/api/v1/patients/pb/discharge".into(), empty(), [400, 404, 404, 400, 404, 404]),
        // Personal limits: the team's clinicians only.
        (M::PUT, "/api/v1/patients/pa/limits/spo2".into(), empty(), [404, 404, 400, 404, 404, 404]),
        (M::PUT, "/api/v1/patients/pb/limits/spo2".into(), empty(), [404, 404, 404, 400, 404, 404]),
        (M::DELETE, "/api/v1/patients/pa/limits/spo2".into(), None, [404, 404, 400, 404, 404, 404]),
        (M::DELETE, "/api/v1/patients/pb/limits/spo2".into(), None, [404, 404, 404, 400, 404, 404]),
        // Observations typed in: the team's nurses and clinicians.
        (M::POST, "/api/v1/patients/pa/observations".into(), empty(), [404, 400, 400, 404, 404, 404]),
        (M::POST, "/api/v1/patients/pb/observations".into(), empty(), [404, 404, 404, 400, 404, 404]),
        // Correction notes: the patient, their proxy, the team's staff.
        (M::POST, "/api/v1/patients/pa/notes".into(), empty(), [404, 400, 400, 404, 400, 400]),
        (M::POST, "/api/v1/patients/pb/notes".into(), empty(), [404, 404, 404, 400, 404, 404]),
        // Teams and their figures.
        (M::GET, "/api/v1/teams".into(), None, [200, 200, 200, 200, 404, 404]),
        (M::GET, "/api/v1/teams/ward-a/patients".into(), None, [200, 200, 200, 404, 404, 404]),
        (M::GET, "/api/v1/teams/ward-b/patients".into(), None, [200, 404, 404, 200, 404, 404]),
        (M::GET, "/api/v1/teams/ward-a/report".into(), None, [200, 200, 200, 404, 404, 404]),
        (M::GET, "/api/v1/teams/ward-b/report".into(), None, [200, 404, 404, 200, 404, 404]),
        // Alerts.
        (M::GET, "/api/v1/alerts".into(), None, [200, 200, 200, 200, 404, 404]),
        (M::GET, "/api/v1/stream".into(), None, [200, 200, 200, 200, 404, 404]),
        (M::POST, format!("/api/v1/alerts/{a}/resolve"), empty(), [400, 400, 400, 404, 404, 404]),
        (M::POST, format!("/api/v1/alerts/{b}/resolve"), empty(), [400, 404, 404, 400, 404, 404]),
        (M::POST, format!("/api/v1/alerts/{a}/snooze"), empty(), [400, 400, 400, 404, 404, 404]),
        (M::POST, format!("/api/v1/alerts/{b}/snooze"), empty(), [400, 404, 404, 400, 404, 404]),
        // The admin acknowledges first; ward-a's staff then find it done.
        (M::POST, format!("/api/v1/alerts/{a}/acknowledge"), None, [200, 409, 409, 404, 404, 404]),
        (M::POST, format!("/api/v1/alerts/{b}/acknowledge"), None, [200, 404, 404, 409, 404, 404]),
        // Admin only.
        (M::GET, "/api/v1/audit".into(), None, [200, 404, 404, 404, 404, 404]),
        (M::GET, "/api/v1/users".into(), None, [200, 404, 404, 404, 404, 404]),
        (M::PUT, "/api/v1/users/someone".into(), empty(), [400, 404, 404, 404, 404, 404]),
        (M::DELETE, "/api/v1/users/admin1".into(), None, [409, 404, 404, 404, 404, 404]),
        (M::POST, "/api/v1/users/nurse-a/tokens".into(), Some(json!({"days": 0})), [400, 404, 404, 404, 404, 404]),
        (M::GET, "/api/v1/devices".into(), None, [200, 404, 404, 404, 404, 404]),
        (M::GET, "/api/v1/devices/dev-a".into(), None, [200, 404, 404, 404, 404, 404]),
        (M::PUT, "/api/v1/devices/dev-new".into(), empty(), [400, 404, 404, 404, 404, 404]),
        (M::POST, "/api/v1/devices/dev-a/assign".into(), empty(), [400, 404, 404, 404, 404, 404]),
        (M::POST, "/api/v1/devices/dev-a/return".into(), Some(json!({"at": "soon"})), [400, 404, 404, 404, 404, 404]),
        (M::POST, "/api/v1/devices/dev-a/retire".into(), None, [409, 404, 404, 404, 404, 404]),
    ];
    // Every served route has a row.
    for (method, template) in served_routes() {
        assert!(
            matrix
                .iter()
                .any(|(m, p, _, _)| *m == method && matches_template(p, &template)),
            "{method} {template} is missing from the access matrix"
        );
    }
    let names: Vec<&str> = MATRIX_USERS.iter().map(|u| u.0).collect();
    // The matrix as run, for RELIABILITY.md: each cell is the status the
    // engine answered (checked against the expectation below).
    let mut as_run = format!(
        "| endpoint | {} |\n|---|{}\n",
        MATRIX_USERS
            .iter()
            .map(|(id, role, team, patient)| format!(
                "{role} ({})",
                team.or(*patient)
                    .map(|t| format!("{id}: {t}"))
                    .unwrap_or(id.to_string())
            ))
            .collect::<Vec<_>>()
            .join(" | "),
        "---|".repeat(MATRIX_USERS.len())
    );
    for (method, path, body, expected) in &matrix {
        as_run.push_str(&format!("| `{method} {path}` |"));
        for ((name, tok), want) in names.iter().zip(&tokens).zip(expected) {
            let status = if path.ends_with("/stream") {
                // A live stream never ends: the status line is the answer.
                let res = api
                    .http
                    .get(format!("{}{path}", api.base))
                    .bearer_auth(tok)
                    .send()
                    .await
                    .unwrap();
                res.status()
            } else {
                let (status, ctype, reply) = api
                    .call(method.clone(), path, Some(tok), body.clone())
                    .await;
                if status.as_u16() >= 400 {
                    assert_eq!(
                        ctype, "application/problem+json",
                        "{method} {path} as {name}"
                    );
                    assert!(
                        reply["detail"].is_string(),
                        "{method} {path} as {name}: {reply}"
                    );
                }
                status
            };
            assert_eq!(status.as_u16(), *want, "{method} {path} as {name}");
            as_run.push_str(&format!(" {} |", status.as_u16()));
        }
        as_run.push('\n');
    }
    let out = repo().join("target/reliability");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("access-matrix.md"), &as_run).unwrap();
    println!("{as_run}");
    // Every refusal after sign-in is audited with its reason.
    let refused = db
        .count("SELECT count(*) FROM audit_log WHERE status >= 400 AND user_id IS NOT NULL AND detail ? 'reason'")
        .await;
    let expected_refusals = matrix
        .iter()
        .flat_map(|(_, _, _, e)| e.iter())
        .filter(|s| **s >= 400)
        .count() as i64;
    assert_eq!(refused, expected_refusals);
    drop(engine);
}

fn api_of(engine: &Engine) -> Api {
    Api {
        base: format!("http://127.0.0.1:{}", engine.http),
        http: reqwest::Client::new(),
    }
}

fn detail(body: &serde_json::Value) -> &str {
    body["detail"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patients_are_enrolled_moved_and_discharged_with_every_change_audited() {
    use serde_json::json;
    let (broker, db, engine) = stack("api_patients").await;
    add_users(
        &db,
        &[
            ("admin1", "admin", None, None),
            ("nurse-a", "nurse", Some("ward-a"), None),
            ("clin-a", "clinician", Some("ward-a"), None),
            ("clin-b", "clinician", Some("ward-b"), None),
        ],
    );
    let (admin_t, nurse, clin_a, clin_b) = (
        token(&db, "admin1"),
        token(&db, "nurse-a"),
        token(&db, "clin-a"),
        token(&db, "clin-b"),
    );
    let api = api_of(&engine);
    let enrol_body = |id: &str, nhs: &str, pathway: &str| {
        json!({"id": id, "team": "ward-a", "pathway": pathway, "nhs_number": nhs,
            "date_of_birth": "1948-03-02"})
    };
    let post = |path: &'static str, tok: &str, body: serde_json::Value| {
        let (api, tok) = (&api, tok.to_string());
        async move { api.call(Method::POST, path, Some(&tok), Some(body)).await }
    };

    // The NHS number's check digit catches a mistyped digit.
    let (s, _, body) = post(
        "/api/v1/patients",
        &nurse,
        enrol_body("pn", "943 476 5918", "copd"),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(detail(&body).contains("check digit"), "{body}");
    let (s, _, body) = post(
        "/api/v1/patients",
        &nurse,
        enrol_body("pn", "9434765919", "pneumonia"),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(detail(&body).contains("known: copd"), "{body}");
    let (s, _, body) = post(
        "/api/v1/patients",
        &nurse,
        enrol_body("pn", "943 476 5919", "copd"),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(body["nhs_number"], "943 476 5919");
    // One record per person: the same NHS number under another id is refused.
    let (s, _, body) = post(
        "/api/v1/patients",
        &nurse,
        enrol_body("pn2", "9434765919", "copd"),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert!(detail(&body).contains("already enrolled"), "{body}");
    // Another team's clinician is refused too, but is not told that this
    // NHS number is under care (or on which team); the audit keeps why.
    let mut elsewhere = enrol_body("pn-b", "9434765919", "copd");
    elsewhere["team"] = json!("ward-b");
    let (s, _, body) = post("/api/v1/patients", &clin_b, elsewhere).await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    let said = detail(&body);
    assert!(
        !said.contains("already") && !said.contains("NHS") && !said.contains("ward-a"),
        "{body}"
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM audit_log WHERE user_id = 'clin-b' AND status = 409 \
             AND detail->>'reason' LIKE '%NHS number is already enrolled%'"
        )
        .await,
        1
    );
    // An unknown field is refused, not ignored.
    let mut extra = enrol_body("pn3", "4010232137", "copd");
    extra["ward"] = json!("a");
    let (s, _, body) = post("/api/v1/patients", &nurse, extra).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(detail(&body).contains("unknown field"), "{body}");
    let (s, _, p) = api
        .call(Method::GET, "/api/v1/patients/pn", Some(&nurse), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (
            p["nhs_number"].as_str(),
            p["date_of_birth"].as_str(),
            p["pathway"].as_str()
        ),
        (Some("9434765919"), Some("1948-03-02"), Some("copd"))
    );

    // A personal limit: a clinician's decision, audited with who and why.
    let limit = json!({"low": 88, "high": 96, "severity": "high", "persist_readings": 2,
        "reason": "COPD: target 88-92 agreed with respiratory consultant"});
    let path = "/api/v1/patients/pn/limits/spo2";
    let (s, _, _) = api
        .call(Method::PUT, path, Some(&nurse), Some(limit.clone()))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "nurses do not set limits");
    let (s, _, body) = api
        .call(
            Method::PUT,
            path,
            Some(&clin_a),
            Some(json!({"low": 96, "high": 88, "severity": "high", "reason": "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(detail(&body).contains("low must be below high"), "{body}");
    let (s, _, body) = api
        .call(Method::PUT, path, Some(&clin_a), Some(limit))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (_, _, p) = api
        .call(Method::GET, "/api/v1/patients/pn", Some(&nurse), None)
        .await;
    assert_eq!(p["limits"][0]["vital"], "spo2");
    assert_eq!(p["limits"][0]["low"], 88.0);
    assert_eq!(p["limits"][0]["persist_readings"], 2);
    assert_eq!(
        db.count(
            "SELECT count(*) FROM patient_settings_audit WHERE patient_id = 'pn' \
             AND actor = 'clin-a' AND field = 'limit:spo2' AND reason LIKE 'COPD: target%'"
        )
        .await,
        1
    );
    let (s, _, _) = api.call(Method::DELETE, path, Some(&clin_a), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "a removal needs its reason");
    let (s, _, _) = api
        .call(
            Method::DELETE,
            &format!("{path}?reason=back%20on%20pathway%20targets"),
            Some(&clin_a),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        db.count(
            "SELECT count(*) FROM patient_settings_audit WHERE patient_id = 'pn' \
             AND field = 'limit:spo2' AND new_value IS NULL AND reason = 'back on pathway targets'"
        )
        .await,
        1
    );

    // A device from the catalogue, lent from an hour ago; a deterioration alerts ward A.
    let (s, _, dev) = api
        .call(
            Method::PUT,
            "/api/v1/devices/ox-1",
            Some(&admin_t),
            Some(json!({"model": "Nonin 3230", "kind": "pulse_oximeter"})),
        )
        .await;
    assert_eq!(
        (s, dev["status"].as_str()),
        (StatusCode::OK, Some("available"))
    );
    let (s, _, dev) = api
        .call(
            Method::POST,
            "/api/v1/devices/ox-1/assign",
            Some(&admin_t),
            Some(json!({"patient_id": "pn", "from": an_hour_ago()})),
        )
        .await;
    assert_eq!(
        (s, dev["status"].as_str()),
        (StatusCode::OK, Some("assigned"))
    );
    let mut publisher = broker.loadgen_publisher().await;
    let now = Utc::now().timestamp() as f64;
    publisher
        .publish(&readings_topic("ox-1"), septic_pack(now - 60.0))
        .await;
    publisher.flush().await;
    eventually("an alert for pn on ward-a", || async {
        (db.count("SELECT count(*) FROM alerts WHERE patient_id = 'pn' AND team_id = 'ward-a'")
            .await
            == 1)
            .then_some(())
    })
    .await;

    // A transfer to a team nobody runs (a typo) is refused.
    let (s, _, body) = post(
        "/api/v1/patients/pn/transfer",
        &nurse,
        json!({"team": "ward-bb", "reason": "typo"}),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert!(
        detail(&body).contains("nobody would see this patient"),
        "{body}"
    );
    // Transfer: the patient and the open alert move to ward B.
    let (s, _, body) = post(
        "/api/v1/patients/pn/transfer",
        &nurse,
        json!({"team": "ward-b", "reason": "moved in with daughter"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["alerts_moved"], 1);
    assert_eq!(
        db.count("SELECT count(*) FROM alerts WHERE patient_id = 'pn' AND team_id = 'ward-b'")
            .await,
        1
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM patient_settings_audit WHERE patient_id = 'pn' AND actor = 'nurse-a' \
             AND field = 'team_id' AND old_value = 'ward-a' AND new_value = 'ward-b' \
             AND reason = 'moved in with daughter'"
        )
        .await,
        1
    );
    let (s, _, _) = api
        .call(Method::GET, "/api/v1/patients/pn", Some(&nurse), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "ward A no longer reaches pn");
    let (s, _, _) = api
        .call(Method::GET, "/api/v1/patients/pn", Some(&clin_b), None)
        .await;
    assert_eq!(s, StatusCode::OK);

    // Discharge: monitoring ends, the history stays.
    let (s, _, body) = post(
        "/api/v1/patients/pn/discharge",
        &clin_b,
        json!({"reason": "recovered"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, _, body) = post(
        "/api/v1/patients/pn/discharge",
        &clin_b,
        json!({"reason": "again"}),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    let (_, _, p) = api
        .call(Method::GET, "/api/v1/patients/pn", Some(&clin_b), None)
        .await;
    assert_eq!(p["discharged"], true);
    assert!(
        db.count("SELECT count(*) FROM readings WHERE patient_id = 'pn'")
            .await
            >= 6
    );
    drop(engine);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_observations_are_scored_and_notes_travel_with_their_reading() {
    use serde_json::json;
    let (_broker, db, engine) = stack("api_manual").await;
    enrol(&db.url, "pa", "ward-a", "dev-a", &an_hour_ago());
    add_users(
        &db,
        &[
            ("nurse-a", "nurse", Some("ward-a"), None),
            ("patient-a", "patient", None, Some("pa")),
        ],
    );
    let (nurse, me) = (token(&db, "nurse-a"), token(&db, "patient-a"));
    let api = api_of(&engine);
    let taken =
        (Utc::now() - ChronoDuration::minutes(2)).to_rfc3339_opts(SecondsFormat::Secs, true);
    // A home visit: a full set of observations, typed in.
    let visit = json!({"taken_at": taken, "note": "home visit", "observations": [
        {"vital": "respiratory_rate", "value": 25},
        {"vital": "spo2", "value": 94},
        {"vital": "supplemental_oxygen", "value": false},
        {"vital": "systolic_bp", "value": 100},
        {"vital": "heart_rate", "value": 115},
        {"vital": "consciousness", "value": "A"},
        {"vital": "body_temperature", "value": 101.5, "unit": "[degF]"}]});
    let path = "/api/v1/patients/pa/observations";
    let (s, _, body) = api
        .call(Method::POST, path, Some(&nurse), Some(visit.clone()))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(
        (body["stored"].as_u64(), body["scored"].as_bool()),
        (Some(7), Some(true))
    );
    // Scored like a device's: NEWS2 9 (38.6 °C scores 1) opens a clinical alert.
    eventually("a NEWS2 alert from the typed-in set", || async {
        (db.count(
            "SELECT count(*) FROM alerts a JOIN alert_flags af ON af.alert_id = a.id \
             JOIN flags f ON f.id = af.flag_id WHERE a.patient_id = 'pa' AND f.rule = 'news2' \
             AND f.summary LIKE 'NEWS2 9 (high)%'",
        )
        .await
            == 1)
            .then_some(())
    })
    .await;
    assert_eq!(
        db.count(
            "SELECT count(*) FROM readings WHERE patient_id = 'pa' AND source = 'manual' \
             AND device_id = 'manual'"
        )
        .await,
        7
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM readings WHERE patient_id = 'pa' AND vital = 'body_temperature' \
             AND abs(value - 38.61111) < 0.001"
        )
        .await,
        1,
        "°F converted to °C"
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM manual_entries WHERE patient_id = 'pa' AND recorded_by = 'nurse-a' \
             AND cardinality(vitals) = 7 AND note = 'home visit'"
        )
        .await,
        1
    );
    // The same entry sent again (a retry) stores nothing new.
    let (s, _, body) = api
        .call(Method::POST, path, Some(&nurse), Some(visit.clone()))
        .await;
    assert_eq!((s, body["stored"].as_u64()), (StatusCode::CREATED, Some(0)));
    assert_eq!(db.count("SELECT count(*) FROM manual_entries").await, 1);
    // A different value at the same time is a conflict, not a second truth.
    let mut changed = visit.clone();
    changed["observations"] = json!([{"vital": "spo2", "value": 91}]);
    let (s, _, body) = api
        .call(Method::POST, path, Some(&nurse), Some(changed))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    // Impossible values are refused with the reason, which the audit keeps.
    let bad = json!({"taken_at": taken, "observations": [{"vital": "spo2", "value": 150}]});
    let (s, _, body) = api.call(Method::POST, path, Some(&nurse), Some(bad)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(detail(&body).contains("plausible range"), "{body}");
    assert_eq!(
        db.count(
            "SELECT count(*) FROM audit_log WHERE user_id = 'nurse-a' AND status = 400 \
             AND detail->>'reason' LIKE '%plausible range%'"
        )
        .await,
        1
    );
    let future = json!({"taken_at": "2999-01-01T00:00:00Z",
        "observations": [{"vital": "spo2", "value": 95}]});
    let (s, _, _) = api
        .call(Method::POST, path, Some(&nurse), Some(future))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        db.count("SELECT count(*) FROM readings WHERE source = 'manual'")
            .await,
        7
    );

    // The patient notes that one reading was wrong; it travels with it.
    let note = json!({"vital": "spo2", "time": taken, "device_id": "manual",
        "text": "my hands were cold"});
    let (s, _, body) = api
        .call(
            Method::POST,
            "/api/v1/patients/pa/notes",
            Some(&me),
            Some(note),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(body["author"], "patient-a");
    let missing = json!({"vital": "spo2", "time": "2020-01-01T00:00:00Z", "device_id": "manual",
        "text": "?"});
    let (s, _, _) = api
        .call(
            Method::POST,
            "/api/v1/patients/pa/notes",
            Some(&me),
            Some(missing),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "no such reading");
    let (s, _, rows) = api
        .call(
            Method::GET,
            "/api/v1/patients/pa/readings?vital=spo2",
            Some(&nurse),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let spo2 = &rows.as_array().unwrap()[0];
    assert_eq!(
        (spo2["value"].as_f64(), spo2["source"].as_str()),
        (Some(94.0), Some("manual"))
    );
    assert_eq!(spo2["notes"][0]["text"], "my hands were cold");
    assert_eq!(spo2["notes"][0]["author"], "patient-a");
    drop(engine);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_are_lent_returned_and_retired_like_a_library() {
    use serde_json::json;
    let (broker, db, engine) = stack("api_devices").await;
    admin(
        &db.url,
        &["patient", "add", "--id", "pa", "--team", "ward-a"],
    );
    add_users(&db, &[("admin1", "admin", None, None)]);
    let t = token(&db, "admin1");
    let api = api_of(&engine);
    let (s, _, body) = api
        .call(
            Method::PUT,
            "/api/v1/devices/cuff-1",
            Some(&t),
            Some(json!({"model": "Omron M3", "kind": "sphygmomanometer"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(detail(&body).contains("blood_pressure_monitor"), "{body}");
    let (s, _, _) = api
        .call(
            Method::PUT,
            "/api/v1/devices/cuff-1",
            Some(&t),
            Some(json!({"model": "Omron M3", "kind": "blood_pressure_monitor"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = api
        .call(
            Method::POST,
            "/api/v1/devices/ghost/assign",
            Some(&t),
            Some(json!({"patient_id": "pa"})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "only catalogued devices are lent");
    let (s, _, dev) = api
        .call(
            Method::POST,
            "/api/v1/devices/cuff-1/assign",
            Some(&t),
            Some(json!({"patient_id": "pa", "from": an_hour_ago()})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{dev}");
    assert_eq!(
        (dev["status"].as_str(), dev["patient_id"].as_str()),
        (Some("assigned"), Some("pa"))
    );
    let (s, _, body) = api
        .call(
            Method::POST,
            "/api/v1/devices/cuff-1/retire",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(detail(&body).contains("return it first"), "{body}");

    // Lent: its readings are the patient's.
    let mut p = broker.loadgen_publisher().await;
    let now = Utc::now().timestamp() as f64;
    let bp = |t: f64| format!(r#"[{{"bt":{t},"n":"systolic_bp","u":"mm[Hg]","v":128}}]"#);
    p.publish(&readings_topic("cuff-1"), bp(now - 30.0)).await;
    p.flush().await;
    db.wait_for_readings(1, "the cuff's reading").await;
    assert_eq!(
        db.count("SELECT count(*) FROM readings WHERE patient_id = 'pa' AND device_id = 'cuff-1'")
            .await,
        1
    );
    let (s, _, dev) = api
        .call(
            Method::POST,
            "/api/v1/devices/cuff-1/return",
            Some(&t),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (s, dev["status"].as_str()),
        (StatusCode::OK, Some("available"))
    );
    // Returned: a later reading belongs to no one and is quarantined, not lost.
    p.publish(
        &readings_topic("cuff-1"),
        bp(Utc::now().timestamp() as f64 + 1.0),
    )
    .await;
    p.flush().await;
    eventually("the unassigned reading quarantined", || async {
        (db.count("SELECT count(*) FROM quarantine WHERE device_id = 'cuff-1'")
            .await
            == 1)
            .then_some(())
    })
    .await;
    let (s, _, dev) = api
        .call(
            Method::POST,
            "/api/v1/devices/cuff-1/retire",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(
        (s, dev["status"].as_str()),
        (StatusCode::OK, Some("retired"))
    );
    let (s, _, body) = api
        .call(
            Method::POST,
            "/api/v1/devices/cuff-1/assign",
            Some(&t),
            Some(json!({"patient_id": "pa"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(detail(&body).contains("retired"), "{body}");
    let (_, _, all) = api
        .call(Method::GET, "/api/v1/devices", Some(&t), None)
        .await;
    assert_eq!(all.as_array().unwrap().len(), 1);
    assert_eq!(all[0]["model"], "Omron M3");
    drop(engine);
}

/// Teams whose alerts go out over MQTT only, escalating after `wait`.
fn mqtt_teams(dir: &std::path::Path, wait: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("default.toml"),
        format!(
            r#"id = "default"
fallback = {{ channel = "mqtt" }}
[escalation]
repeat = "1h"
group_window = "1s"
start_tier = {{ low = 0, medium = 0, high = 0, emergency = 0 }}
[[escalation.tiers]]
name = "ward nurse"
wait = "{wait}"
targets = [{{ channel = "mqtt" }}]
[[escalation.tiers]]
name = "nurse in charge"
wait = "1h"
targets = [{{ channel = "mqtt" }}]
# A person at the end (never reached within a test): a policy must name one.
[[escalation.tiers]]
name = "on-call clinician"
wait = "1h"
targets = [{{ channel = "email", address = "on-call@example.nhs.uk" }}]
"#
        ),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_report_counts_adherence_alert_rates_acknowledgement_and_escalation() {
    let dir = tempfile::tempdir().unwrap();
    let teams = dir.path().join("teams");
    mqtt_teams(&teams, "2s");
    let broker = Broker::start().await;
    let db = Db::create("api_report").await;
    let engine = Engine::start_with(
        &broker.engine_url(),
        &db.url,
        &unique("eng"),
        &[("WARDWATCH_TEAMS_DIR", teams.to_str().unwrap())],
    )
    .await;
    let hours_ago =
        |h: i64| (Utc::now() - ChronoDuration::hours(h)).to_rfc3339_opts(SecondsFormat::Secs, true);
    enrol(&db.url, "pa", "ward-a", "dev-a", &hours_ago(5));
    enrol(&db.url, "pb", "ward-a", "dev-b", &hours_ago(5));
    enrol(&db.url, "pc", "ward-b", "dev-c", &hours_ago(5));
    enrol(&db.url, "pd", "ward-a", "dev-d", &hours_ago(5));
    // History: pa enrolled 2 h ago, pb 4 h ago (before the period), pd
    // discharged 4 h ago (before the period: not monitored in it).
    sqlx::query(
        "UPDATE patients SET created_at = now() - CASE id WHEN 'pa' THEN interval '2 hours' \
         ELSE interval '4 hours' END",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    admin(
        &db.url,
        &[
            "patient",
            "discharge",
            "--id",
            "pd",
            "--by",
            "clin",
            "--reason",
            "well",
            "--at",
            &hours_ago(4),
        ],
    );
    add_users(
        &db,
        &[
            ("nurse-a", "nurse", Some("ward-a"), None),
            ("admin1", "admin", None, None),
        ],
    );
    let (nurse, admin_t) = (token(&db, "nurse-a"), token(&db, "admin1"));

    let mut p = broker.loadgen_publisher().await;
    let now = Utc::now().timestamp() as f64;
    let spo2 = |t: f64| format!(r#"[{{"bt":{t},"n":"spo2","u":"%","v":97}}]"#);
    // pa: one reading before enrolment (not counted), two normal, one septic set.
    for (dev, t) in [
        ("dev-a", now - 150.0 * 60.0),
        ("dev-a", now - 100.0 * 60.0),
        ("dev-a", now - 70.0 * 60.0),
        ("dev-b", now - 30.0 * 60.0),
        ("dev-c", now - 30.0 * 60.0),
    ] {
        p.publish(&readings_topic(dev), spo2(t)).await;
    }
    // The alert opens after this instant (the clock the report uses is the
    // database's; both run on this machine).
    let septic_sent = Utc::now();
    p.publish(&readings_topic("dev-a"), septic_pack(now - 60.0))
        .await;
    p.flush().await;
    db.wait_for_readings(11, "all readings").await;
    // The alert escalates once (2 s), then the nurse acknowledges.
    eventually("the alert at tier 1", || async {
        (db.count("SELECT count(*) FROM alerts WHERE patient_id = 'pa' AND tier = 1")
            .await
            == 1)
            .then_some(())
    })
    .await;
    let escalation_seen = Utc::now();
    let api = api_of(&engine);
    let id: i64 = sqlx::query_scalar("SELECT id FROM alerts WHERE patient_id = 'pa'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let ack_sent = Utc::now();
    let (s, _, _) = api
        .call(
            Method::POST,
            &format!("/api/v1/alerts/{id}/acknowledge"),
            Some(&nurse),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let ack_answered = Utc::now();

    let from = hours_ago(3);
    let (s, _, r) = api
        .call(
            Method::GET,
            &format!("/api/v1/teams/ward-a/report?from={from}"),
            Some(&nurse),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["patients_monitored"], 2, "{r}");
    let patient = |id: &str| {
        r["adherence"]["patients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["patient_id"] == id)
            .cloned()
            .unwrap()
    };
    // general pathway: one reading an hour expected.
    let (pa, pb) = (patient("pa"), patient("pb"));
    assert_eq!(
        (pa["received"].as_i64(), pa["expected"].as_i64()),
        (Some(3), Some(2)),
        "{pa}"
    );
    assert_eq!(
        (pb["received"].as_i64(), pb["expected"].as_i64()),
        (Some(1), Some(3)),
        "{pb}"
    );
    assert_eq!(r["adherence"]["received"], 4);
    assert_eq!(r["adherence"]["expected"], 5);
    // 2 h + 3 h monitored: about 0.208 patient-days.
    let days = r["patient_days"].as_f64().unwrap();
    assert!((days - 5.0 / 24.0).abs() < 0.01, "{days}");
    // One septic set: one alert. Its NEWS2 is 9 (respiration 25: 3, SpO2
    // 94: 1, systolic 100: 2, pulse 115: 2, 38.6 °C: 1, alert: 0), band
    // high, which the policy pages as an emergency.
    assert_eq!(r["alerts"]["opened"].as_i64(), Some(1), "{r}");
    let news2 = r["alerts"]["by_rule"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["rule"] == "news2")
        .cloned()
        .unwrap();
    assert_eq!(
        (news2["count"].as_i64(), news2["severity"].as_str()),
        (Some(1), Some("emergency"))
    );
    let per_day = news2["per_patient_day"].as_f64().unwrap();
    assert!(
        (per_day - 1.0 / days).abs() < 0.01,
        "{per_day} vs {}",
        1.0 / days
    );
    // Time to acknowledge, bounded by what this test saw: the alert opened
    // after the septic set was sent and before its escalation was seen; the
    // acknowledgement landed while the request was in flight.
    let secs = |d: ChronoDuration| d.num_milliseconds() as f64 / 1000.0;
    let (shortest, longest) = (
        secs(ack_sent - escalation_seen),
        secs(ack_answered - septic_sent),
    );
    let t = &r["time_to_acknowledge"];
    assert_eq!(t["acknowledged"], 1);
    for q in ["p50_secs", "p90_secs", "max_secs"] {
        let v = t[q].as_f64().unwrap();
        // It escalated after 2 s unacknowledged, so at least that.
        assert!(
            v >= 2.0 && v >= shortest - 0.1 && v <= longest + 0.1,
            "{q}: {t} not in [{shortest}, {longest}]"
        );
    }
    assert_eq!(r["escalations"]["count"], 1, "{r}");
    assert_eq!(r["escalations"]["alerts_escalated"], 1);
    // Ward B's report has only its own patient.
    let (_, _, rb) = api
        .call(
            Method::GET,
            &format!("/api/v1/teams/ward-b/report?from={from}"),
            Some(&admin_t),
            None,
        )
        .await;
    assert_eq!(rb["patients_monitored"], 1);
    assert_eq!(rb["adherence"]["patients"][0]["received"], 1);
    assert_eq!(rb["alerts"]["opened"], 0);
    assert!(rb["time_to_acknowledge"]["p50_secs"].is_null());
    drop(engine);
}

/// A stale browser tab behind the ward's proxy: its revoked token is held
/// back, every other nurse's valid token still works, and a token revoked
/// mid-stream closes the live stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_tab_is_held_back_without_locking_out_the_ward_and_a_revoked_stream_closes() {
    let broker = Broker::start().await;
    let db = Db::create("api_abuse").await;
    let engine = Engine::start_with(
        &broker.engine_url(),
        &db.url,
        &unique("eng"),
        &[("WARDWATCH_HTTP_TRUSTED_PROXIES", "127.0.0.1")],
    )
    .await;
    for user in ["nurse-a", "nurse-b"] {
        admin(
            &db.url,
            &[
                "user", "add", "--id", user, "--role", "nurse", "--team", "ward-a",
            ],
        );
    }
    let good = token(&db, "nurse-a");
    let leaving = token(&db, "nurse-b");
    let http = reqwest::Client::new();
    let get = |tok: String, client: &'static str| {
        let req = http
            .get(format!("http://127.0.0.1:{}/api/v1/alerts", engine.http))
            .bearer_auth(tok)
            .header("x-forwarded-for", client);
        async move { req.send().await.unwrap().status() }
    };
    let stale = format!("ww_{}", "0".repeat(64));
    // The stale tab: ten refusals, then held back.
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(get(stale.clone(), "203.0.113.5").await);
    }
    assert_eq!(statuses[..10], [StatusCode::UNAUTHORIZED; 10]);
    assert_eq!(statuses[10..], [StatusCode::TOO_MANY_REQUESTS; 2]);
    // Behind the same proxy and address, a valid token and another
    // (wrong) token are not held back; another client is its own.
    assert_eq!(get(good.clone(), "203.0.113.5").await, StatusCode::OK);
    let other = format!("ww_{}", "1".repeat(64));
    assert_eq!(get(other, "203.0.113.5").await, StatusCode::UNAUTHORIZED);
    assert_eq!(get(stale, "203.0.113.6").await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        engine
            .metric("wardwatch_api_auth_failures_total{reason=\"rate_limited\"}")
            .await,
        2.0
    );
    // The API runs on its own pool, apart from the ingest writers.
    assert!(
        db.count(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND application_name = 'wardwatch-api'"
        )
        .await
            >= 1
    );
    // A read is not a write: last_used_at moves at most every few minutes.
    let used = || async {
        sqlx::query_scalar::<_, Option<chrono::DateTime<Utc>>>(
            "SELECT last_used_at FROM api_tokens WHERE user_id = 'nurse-a'",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap()
    };
    let first = used().await;
    assert!(first.is_some());
    assert_eq!(get(good.clone(), "203.0.113.5").await, StatusCode::OK);
    assert_eq!(used().await, first);

    // A live stream whose token is revoked closes within seconds.
    let res = http
        .get(format!("http://127.0.0.1:{}/api/v1/stream", engine.http))
        .bearer_auth(&leaving)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = res.bytes_stream();
    admin(&db.url, &["token", "revoke", "--user", "nurse-b"]);
    // Read until the server ends the stream (the common wait bounds it, as
    // `eventually` bounds every other wait: a liveness bound, not a timing).
    tokio::time::timeout(WAIT, async {
        while let Some(chunk) = body.next().await {
            if chunk.is_err() {
                break;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for: the revoked stream to close"));
    assert_eq!(
        engine
            .metric("wardwatch_api_streams_closed_total{reason=\"access_lost\"}")
            .await,
        1.0
    );
    // The valid token's own stream is still served.
    let res = http
        .get(format!("http://127.0.0.1:{}/api/v1/stream", engine.http))
        .bearer_auth(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

/// The engine run as the role `wardwatch migrate --engine-role` makes: it
/// ingests, raises alerts and audits reads, but cannot edit or remove an
/// audit row, an alert event or a settings change, nor drop the triggers
/// that keep them append-only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_runs_as_a_role_that_can_only_append_to_the_audit_trails() {
    let broker = Broker::start().await;
    let db = Db::create("engine_role").await;
    let role = format!("ww_engine_{}_{}", std::process::id(), rand::random::<u32>());
    let said = admin(&db.url, &["migrate", "--engine-role", &role]);
    assert!(said.contains("no UPDATE, DELETE or DDL"), "{said}");
    // Repeating it is harmless (a later migration's tables get grants).
    admin(&db.url, &["migrate", "--engine-role", &role]);
    assert!(
        admin_fails(&db.url, &["migrate", "--engine-role", "Bad; DROP"])
            .contains("lower-case letters")
    );
    // The role logs in without a password: on a cluster that asks for one
    // (a fresh Debian install, scripts/test.sh sets one for postgres) it
    // gets the same, set by the owner.
    let mut u = url::Url::parse(&db.url).unwrap();
    if let Some(pass) = u.password().map(str::to_owned) {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER ROLE \"{role}\" PASSWORD '{}'",
            pass.replace('\'', "''")
        )))
        .execute(&db.pool)
        .await
        .unwrap();
    }
    u.set_username(&role).unwrap();
    let role_url = u.to_string();
    assert_ne!(role_url, db.url);
    let engine = Engine::start(&broker.engine_url(), &role_url, &unique("eng")).await;
    enrol(&db.url, "pa", "ward-a", "dev-a", &an_hour_ago());
    add_users(&db, &[("nurse-a", "nurse", Some("ward-a"), None)]);
    let nurse = token(&db, "nurse-a");
    let mut p = broker.loadgen_publisher().await;
    p.publish(
        &readings_topic("dev-a"),
        septic_pack(Utc::now().timestamp() as f64 - 60.0),
    )
    .await;
    p.flush().await;
    eventually("an alert raised by the engine's role", || async {
        (db.count("SELECT count(*) FROM alert_events").await > 0).then_some(())
    })
    .await;
    let (status, _, _) = api_of(&engine)
        .call(Method::GET, "/api/v1/patients/pa", Some(&nurse), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    eventually("the read audited by the engine's role", || async {
        (db.count("SELECT count(*) FROM audit_log WHERE patient_id = 'pa'")
            .await
            > 0)
        .then_some(())
    })
    .await;
    let as_engine = sqlx::PgPool::connect(&role_url).await.unwrap();
    for sql in [
        "UPDATE audit_log SET status = 200",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
        "DELETE FROM alert_events",
        "UPDATE patient_settings_audit SET reason = 'x'",
        "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only",
        "DROP TRIGGER alert_events_append_only ON alert_events",
        "DELETE FROM _sqlx_migrations",
        "CREATE TABLE sneaky (x int)",
    ] {
        let err = sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&as_engine)
            .await
            .expect_err(sql);
        let code = err
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.to_string())
            .unwrap_or_default();
        assert_eq!(code, "42501", "{sql}: {err}");
        // Refused by the role's grants, not (only) by the trigger, which
        // would say "is append-only" with the same code.
        let msg = err.to_string();
        assert!(
            msg.contains("permission denied") || msg.contains("must be owner"),
            "{sql}: {msg}"
        );
    }
    // What the engine does need still works as the role.
    sqlx::query("UPDATE alerts SET state = state")
        .execute(&as_engine)
        .await
        .unwrap();
    as_engine.close().await;
    drop(engine);
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP OWNED BY \"{role}\"")))
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP ROLE \"{role}\"")))
        .execute(&db.pool)
        .await
        .unwrap();
}

/// Request bodies and query strings at their limits, and JSON built to
/// hurt a parser: each gets a problem+json answer with the reason, and the
/// engine keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_and_query_strings_at_their_limits_get_a_clear_answer() {
    let (_broker, db, engine) = stack("api_limits").await;
    enrol(&db.url, "pa", "ward-a", "dev-a", &an_hour_ago());
    add_users(&db, &[("nurse-a", "nurse", Some("ward-a"), None)]);
    let nurse = token(&db, "nurse-a");
    let api = api_of(&engine);
    let post_raw = |body: Vec<u8>| {
        let api = &api;
        let nurse = &nurse;
        async move {
            let res = api
                .http
                .post(format!("{}/api/v1/patients/pa/notes", api.base))
                .bearer_auth(nurse)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("request");
            let status = res.status().as_u16();
            let ctype = res
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let body: serde_json::Value = res.json().await.unwrap_or_default();
            (status, ctype, body)
        }
    };
    // A JSON object padded to exactly n bytes.
    let padded = |n: usize| {
        let head = r#"{"text":""#;
        let tail = r#""}"#;
        let mut b = head.as_bytes().to_vec();
        b.extend(std::iter::repeat_n(b'x', n - head.len() - tail.len()));
        b.extend(tail.as_bytes());
        assert_eq!(b.len(), n);
        b
    };
    let limit = 64 * 1024;
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        // At the limit the body is read (and refused for what it says).
        ("exactly 64 KiB", padded(limit), 400, "missing field"),
        ("one byte over", padded(limit + 1), 413, "65536 bytes"),
        ("ten times over", padded(10 * limit), 413, "65536 bytes"),
        (
            "nested 30,000 deep",
            format!("{}{}", "[".repeat(30_000), "]".repeat(30_000)).into_bytes(),
            400,
            "invalid type",
        ),
        ("NaN", br#"{"text":NaN}"#.to_vec(), 400, "expected value"),
        (
            "a number past f64",
            br#"{"text":"a","time":1e400}"#.to_vec(),
            400,
            "number out of range",
        ),
        ("not UTF-8", b"{\"text\":\"\xff\xfe\"}".to_vec(), 400, ""),
        ("empty", Vec::new(), 400, "EOF"),
    ];
    for (what, body, want, says) in cases {
        let (status, ctype, reply) = post_raw(body).await;
        assert_eq!(status, want, "{what}: {reply}");
        assert_eq!(ctype, "application/problem+json", "{what}");
        assert!(detail(&reply).contains(says), "{what}: {reply}");
    }
    // Query strings: at the limit read, above it refused before any handler.
    let query = |n: usize| format!("from={}", "x".repeat(n - 5));
    let (status, ctype, reply) = api
        .call(
            Method::GET,
            &format!("/api/v1/patients/pa/readings?{}", query(8 * 1024)),
            Some(&nurse),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert_eq!(ctype, "application/problem+json");
    let (status, ctype, reply) = api
        .call(
            Method::GET,
            &format!("/api/v1/patients/pa/readings?{}", query(8 * 1024 + 1)),
            Some(&nurse),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::URI_TOO_LONG, "{reply}");
    assert_eq!(ctype, "application/problem+json");
    assert!(detail(&reply).contains("8193 bytes"), "{reply}");
    // A URI far past what the HTTP parser buffers: refused by it (no
    // handler runs), never a crash.
    let huge = api
        .http
        .get(format!(
            "{}/api/v1/patients/pa/readings?{}",
            api.base,
            query(1 << 20)
        ))
        .bearer_auth(&nurse)
        .send()
        .await;
    if let Ok(res) = huge {
        assert!(res.status().is_client_error(), "{}", res.status());
    }
    // Still serving, and the oversized requests were counted.
    let (status, _, _) = api
        .call(Method::GET, "/api/v1/patients/pa", Some(&nurse), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let m = engine.metrics().await;
    assert_eq!(
        parse_metric(&m, "wardwatch_api_problems_total{status=\"413\"}"),
        Some(2.0)
    );
    assert_eq!(
        parse_metric(&m, "wardwatch_api_problems_total{status=\"414\"}"),
        Some(1.0)
    );
}
