//! `wardwatch backtest` against stored history written by the real engine
//! (MQTT in, flags and alerts out), on PostgreSQL and on SQLite: the
//! shipped rules reproduce what was actually raised, a proposed change
//! shows its difference per patient and rule, and the store is untouched.

mod common;

use chrono::{Duration as ChronoDuration, SecondsFormat, Utc};
use common::*;
use serde_json::Value;

const TABLES: [&str; 8] = [
    "readings",
    "flags",
    "flag_events",
    "alerts",
    "alert_events",
    "deliveries",
    "audit_log",
    "quarantine",
];

fn at(offset_mins: i64) -> String {
    (Utc::now() + ChronoDuration::minutes(offset_mins)).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Two oximeter patients on `general`, three spot checks 10 minutes apart:
/// `bt-low` at SpO2 84 / pulse 135 (raises), `bt-edge` at 93 / 95 (does not).
async fn publish_history(broker: &Broker, db_url: &str) {
    // Enrolled without a pathway: `general`.
    enrol(db_url, "bt-low", "ward-a", "bt-ox-1", &at(-120));
    enrol(db_url, "bt-edge", "ward-a", "bt-ox-2", &at(-120));
    let mut p = broker.loadgen_publisher().await;
    let t0 = Utc::now().timestamp() - 40 * 60;
    for k in 0..3 {
        let t = t0 + k * 600;
        for (device, spo2, hr) in [("bt-ox-2", 93, 95), ("bt-ox-1", 84, 135)] {
            p.publish(
                &readings_topic(device),
                format!(
                    r#"[{{"bt":{t},"n":"spo2","u":"%","v":{spo2}}},{{"n":"heart_rate","u":"/min","v":{hr}}}]"#
                ),
            )
            .await;
        }
    }
    p.flush().await;
}

/// Runs the backtest over the last two hours; its JSON report.
fn backtest(db_url: &str, extra: &[&str]) -> Value {
    let out = admin(
        db_url,
        &[
            &["backtest", "--json", "--from", &at(-120), "--to", &at(5)],
            extra,
        ]
        .concat(),
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("backtest JSON ({e}): {out}"))
}

/// (proposed, actual) flags for one patient and the rules whose key starts
/// with `rule` (a threshold's key ends with its place in the pathway).
fn rule_line(report: &Value, patient: &str, rule: &str) -> (u64, u64) {
    report["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| {
            r["patient"] == patient && r["rule"].as_str().is_some_and(|k| k.starts_with(rule))
        })
        .fold((0, 0), |(p, a), r| {
            (
                p + r["proposed"].as_u64().unwrap_or(0),
                a + r["actual"].as_u64().unwrap_or(0),
            )
        })
}

fn looser_spo2_limit() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(repo().join("config/pathways")).unwrap() {
        let e = e.unwrap();
        let mut text = std::fs::read_to_string(e.path()).unwrap();
        if e.file_name() == "general.toml" {
            text = edit(&text, "low = 91.5", "low = 93.5");
        }
        std::fs::write(dir.path().join(e.file_name()), text).unwrap();
    }
    dir
}

/// What both stores must show, given the reports of the shipped and the
/// proposed rules.
fn check_reports(shipped: &Value, proposed: &Value) {
    // The shipped rules reproduce every flag actually raised, rule by rule.
    let rows = shipped["rules"].as_array().expect("rule lines");
    assert!(
        rows.iter().any(|r| r["patient"] == "bt-low"),
        "the raising patient is reported: {shipped}"
    );
    for r in rows {
        assert_eq!(r["proposed"], r["actual"], "shipped rules differ: {r}");
    }
    assert_eq!(rule_line(shipped, "bt-low", "threshold:spo2"), (1, 1));
    assert_eq!(rule_line(shipped, "bt-edge", "threshold:spo2"), (0, 0));
    let patients = shipped["patients"].as_array().expect("patient lines");
    let low = patients
        .iter()
        .find(|p| p["patient"] == "bt-low")
        .expect("bt-low");
    assert_eq!(low["proposed_alerts"], low["actual_alerts"], "{shipped}");
    assert_eq!(low["actual_alerts"][0], 1, "{shipped}");
    assert_eq!(low["readings"], 6, "{shipped}");
    // The proposed limit (SpO2 93 now raises on a partial kit) shows as a
    // new flag and alert for bt-edge only.
    assert_eq!(rule_line(proposed, "bt-edge", "threshold:spo2"), (1, 0));
    assert_eq!(rule_line(proposed, "bt-low", "threshold:spo2"), (1, 1));
    let edge = proposed["patients"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["patient"] == "bt-edge"))
        .expect("bt-edge");
    assert_eq!(edge["proposed_alerts"][0], 1, "{proposed}");
    assert_eq!(edge["actual_alerts"][0], 0, "{proposed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backtest_on_postgres_reproduces_what_was_raised_and_shows_a_proposed_change_read_only() {
    let (broker, db, engine) = stack("backtest_pg").await;
    publish_history(&broker, &db.url).await;
    eventually("bt-low's alert and both patients' readings", || async {
        let alerts = db.count("SELECT count(*) FROM alerts WHERE patient_id = 'bt-low'").await;
        let readings = db.count("SELECT count(*) FROM readings").await;
        let spo2 = db
            .count("SELECT count(*) FROM flags WHERE patient_id = 'bt-low' AND rule LIKE 'threshold:spo2:%'")
            .await;
        (alerts >= 1 && readings == 12 && spo2 == 1).then_some(())
    })
    .await;
    drop(engine);
    let mut before = Vec::new();
    for t in TABLES {
        before.push(db.count(&format!("SELECT count(*) FROM {t}")).await);
    }
    let shipped = backtest(&db.url, &[]);
    let dir = looser_spo2_limit();
    let proposed = backtest(&db.url, &["--pathways", &dir.path().to_string_lossy()]);
    check_reports(&shipped, &proposed);
    let table = admin(
        &db.url,
        &[
            "backtest",
            "--from",
            &at(-120),
            "--to",
            &at(5),
            "--pathways",
            &dir.path().to_string_lossy(),
        ],
    );
    assert!(
        table.contains("bt-edge") && table.contains("threshold:spo2") && table.contains("+1"),
        "{table}"
    );
    // Read-only: nothing written, and the connection it uses refuses writes.
    for (t, n) in TABLES.iter().zip(before) {
        assert_eq!(
            db.count(&format!("SELECT count(*) FROM {t}")).await,
            n,
            "{t} changed"
        );
    }
    let ro = wardwatch_store::PgStore::connect_read_only(&db.url)
        .await
        .unwrap();
    let write = sqlx::query("DELETE FROM readings").execute(ro.pool()).await;
    assert!(
        write.is_err_and(|e| e.to_string().contains("read-only")),
        "a write on the backtest's connection was accepted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backtest_on_sqlite_reproduces_what_was_raised_and_shows_a_proposed_change_read_only() {
    let broker = Broker::start().await;
    let (_dir, file, url) = sqlite_target("backtest-sqlite");
    let engine = Engine::start(&broker.engine_url(), &url, &unique("eng")).await;
    publish_history(&broker, &url).await;
    let pool = sqlite_pool(&file).await;
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap_or(-1)
        }
    };
    eventually("bt-low's alert and both patients' readings", || async {
        let alerts = count("SELECT count(*) FROM alerts WHERE patient_id = 'bt-low'").await;
        let readings = count("SELECT count(*) FROM readings").await;
        let spo2 = count(
            "SELECT count(*) FROM flags WHERE patient_id = 'bt-low' AND rule LIKE 'threshold:spo2:%'",
        )
        .await;
        (alerts >= 1 && readings == 12 && spo2 == 1).then_some(())
    })
    .await;
    drop(engine);
    let mut before = Vec::new();
    for t in TABLES {
        before.push(
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {t}")))
                .fetch_one(&pool)
                .await
                .unwrap(),
        );
    }
    let shipped = backtest(&url, &[]);
    let dir = looser_spo2_limit();
    let proposed = backtest(&url, &["--pathways", &dir.path().to_string_lossy()]);
    check_reports(&shipped, &proposed);
    for (t, n) in TABLES.iter().zip(before) {
        let now: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {t}")))
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(now, n, "{t} changed");
    }
    let ro = wardwatch_store::SqliteStore::open_read_only(&file)
        .await
        .unwrap();
    let write = sqlx::query("DELETE FROM readings").execute(ro.pool()).await;
    assert!(
        write.is_err(),
        "a write on the backtest's connection was accepted"
    );
}

#[test]
fn backtest_refuses_a_backwards_period_with_the_reason() {
    let (_dir, _file, url) = sqlite_target("backtest-args");
    let err = admin_fails(
        &url,
        &["backtest", "--from", "2026-12-02", "--to", "2026-12-01"],
    );
    assert!(err.contains("--from must be before --to"), "{err}");
    let err = admin_fails(
        &url,
        &["backtest", "--from", "yesterday", "--to", "2026-12-01"],
    );
    assert!(
        err.contains("neither an RFC 3339 time nor a YYYY-MM-DD date"),
        "{err}"
    );
}
