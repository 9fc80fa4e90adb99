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

fn septic_pack(bt: f64) -> String {
    format!(
        r#"[{{"bt":{bt},"n":"respiratory_rate","u":"/min","v":25}},
            {{"n":"spo2","u":"%","v":94}},
            {{"n":"systolic_bp","u":"mm[Hg]","v":100}},
            {{"n":"heart_rate","u":"/min","v":115}},
            {{"n":"body_temperature","u":"Cel","v":38.6}},
            {{"n":"consciousness","vs":"A"}}]"#
    )
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

fn token(db: &Db, user: &str) -> String {
    admin(&db.url, &["token", "create", "--user", user])
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_each_role_only_within_its_reach() {
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
    let roles = [
        ("admin", admin_t.as_str()),
        ("nurse-a", nurse_t.as_str()),
        ("clinician-b", clin_t.as_str()),
        ("patient-a", patient_t.as_str()),
        ("proxy-a", proxy_t.as_str()),
    ];
    // (method, path, expected status per role in the order above)
    let matrix: Vec<(Method, String, [u16; 5])> = vec![
        (
            M::GET,
            "/api/v1/patients/pa".into(),
            [200, 200, 404, 200, 200],
        ),
        (
            M::GET,
            "/api/v1/patients/pb".into(),
            [200, 404, 200, 404, 404],
        ),
        (
            M::GET,
            "/api/v1/patients/nobody".into(),
            [404, 404, 404, 404, 404],
        ),
        (M::GET, "/api/v1/alerts".into(), [200, 200, 200, 404, 404]),
        (M::GET, "/api/v1/audit".into(), [200, 404, 404, 404, 404]),
    ];
    for (method, path, expected) in &matrix {
        for ((role, tok), want) in roles.iter().zip(expected) {
            let (status, ctype, _) = api.call(method.clone(), path, Some(tok), None).await;
            assert_eq!(status.as_u16(), *want, "{method} {path} as {role}");
            if *want >= 400 {
                assert_eq!(
                    ctype, "application/problem+json",
                    "{method} {path} as {role}"
                );
            }
        }
    }
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
    let (_, _, theirs) = api
        .call(M::GET, "/api/v1/alerts?state=open", Some(&clin_t), None)
        .await;
    assert_eq!(ids(&theirs), vec![alert_b]);

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
    let reads = db
        .count("SELECT count(*) FROM audit_log WHERE user_id = 'nurse-a' AND patient_id = 'pa' AND action = 'GET' AND status = 200")
        .await;
    assert_eq!(reads, 1);
    assert!(
        db.count("SELECT count(*) FROM audit_log WHERE user_id IS NULL AND status = 401")
            .await
            >= 3
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM alert_events WHERE kind = 'acknowledged' AND actor = 'nurse-a'"
        )
        .await,
        1
    );
    drop(engine);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_stream_shows_a_nurse_her_teams_alert_changes_only() {
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
    let mut body = res.bytes_stream();
    // Let the stream subscribe before anything happens.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut p = broker.loadgen_publisher().await;
    let now = Utc::now().timestamp() as f64;
    p.publish(&readings_topic("dev-b"), septic_pack(now - 60.0))
        .await;
    p.publish(&readings_topic("dev-a"), septic_pack(now - 60.0))
        .await;
    p.flush().await;
    let mut text = String::new();
    let got = tokio::time::timeout(WAIT, async {
        while let Some(chunk) = body.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if text.contains("\"patient_id\":\"pa\"") {
                return;
            }
        }
    })
    .await;
    assert!(got.is_ok(), "no event for the nurse's team: {text}");
    assert!(text.contains("event: alert"), "{text}");
    assert!(
        !text.contains("\"patient_id\":\"pb\""),
        "another team's alert leaked: {text}"
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
    assert!(
        score2["not_scored"]
            .as_str()
            .unwrap()
            .contains("respiration"),
        "{score2}"
    );
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
    // Every route the API serves, from its source.
    let src = std::fs::read_to_string(repo().join("crates/wardwatch-api/src/lib.rs")).unwrap();
    let routes: Vec<&str> = src
        .lines()
        .filter_map(|l| l.trim().strip_prefix(".route(\""))
        .filter_map(|l| l.split('"').next())
        .filter(|p| p.starts_with("/api/v1/") || p.starts_with("/fhir/"))
        .filter(|p| *p != "/api/v1/openapi.json")
        .collect();
    assert!(routes.len() >= 10, "{routes:?}");
    for r in routes {
        assert!(
            doc["paths"].get(r).is_some(),
            "{r} is not in the OpenAPI document"
        );
    }
    drop(engine);
}
