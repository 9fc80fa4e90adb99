//! Clinical safety on real home kits, through the real engine (MQTT in,
//! flags and alerts out): partial NEWS2 sets, immediate limits, values
//! hovering around a limit, and the board's words for each.

mod common;

use chrono::{Duration as ChronoDuration, SecondsFormat, Utc};
use common::*;

fn now_secs() -> f64 {
    Utc::now().timestamp_micros() as f64 / 1e6
}

fn hours_ago(h: i64) -> String {
    (Utc::now() - ChronoDuration::hours(h)).to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn enrol_on(db: &Db, patient: &str, pathway: &str, device: &str) {
    admin(
        &db.url,
        &[
            "patient",
            "add",
            "--id",
            patient,
            "--team",
            "ward-a",
            "--pathway",
            pathway,
        ],
    );
    admin(
        &db.url,
        &[
            "device",
            "assign",
            "--device",
            device,
            "--patient",
            patient,
            "--from",
            &hours_ago(2),
        ],
    );
}

/// The patient's alerts: (severity, summary).
async fn alerts(db: &Db, patient: &str) -> Vec<(String, String)> {
    sqlx::query_as("SELECT severity, summary FROM alerts WHERE patient_id = $1 ORDER BY id")
        .bind(patient)
        .fetch_all(&db.pool)
        .await
        .unwrap()
}

async fn wait_alerts(db: &Db, patient: &str, n: usize) -> Vec<(String, String)> {
    eventually(&format!("{n} alert(s) for {patient}"), || async {
        let a = alerts(db, patient).await;
        (a.len() >= n).then_some(a)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oximeter_alone_on_general_raises_a_partial_news2_alert_and_the_board_says_partial() {
    let (broker, db, engine) = stack("kit_oximeter").await;
    enrol_on(&db, "ox-only", "general", "ox-1");
    let mut p = broker.loadgen_publisher().await;
    let t = now_secs() - 30.0;
    p.publish(
        &readings_topic("ox-1"),
        format!(
            r#"[{{"bt":{t},"n":"spo2","u":"%","v":84}},{{"n":"heart_rate","u":"/min","v":135}}]"#
        ),
    )
    .await;
    p.flush().await;
    // SpO2 84 (3) and pulse 135 (3): at least 6 whatever is not measured,
    // the medium band, paged as high.
    let a = wait_alerts(&db, "ox-only", 1).await;
    assert_eq!(a[0].0, "high", "{a:?}");
    assert!(
        a[0].1.contains("partial NEWS2 at least 6") && a[0].1.contains("respiration rate"),
        "{a:?}"
    );
    // The board never shows it as a complete score.
    admin(
        &db.url,
        &[
            "user", "add", "--id", "nurse-a", "--role", "nurse", "--team", "ward-a",
        ],
    );
    let token = admin(&db.url, &["token", "create", "--user", "nurse-a"])
        .trim()
        .to_string();
    let rows: serde_json::Value = reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{}/api/v1/teams/ward-a/patients",
            engine.http
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let news2 = &rows[0]["news2"];
    assert_eq!(news2["status"], "unscorable", "{rows}");
    assert_eq!(news2["words"], "unscorable (partial: at least 6)", "{rows}");
    assert_eq!(news2["lower_bound"], true, "{rows}");
}
