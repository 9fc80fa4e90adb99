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
    let rows = board_rows(&db, &engine).await;
    let news2 = &rows[0]["news2"];
    assert_eq!(news2["status"], "unscorable", "{rows}");
    assert_eq!(news2["words"], "unscorable (partial: at least 6)", "{rows}");
    assert_eq!(news2["lower_bound"], true, "{rows}");
}

/// Ward A's board rows, as a nurse of the ward (added here) sees them.
async fn board_rows(db: &Db, engine: &Engine) -> serde_json::Value {
    admin(
        &db.url,
        &[
            "user", "add", "--id", "nurse-a", "--role", "nurse", "--team", "ward-a",
        ],
    );
    let token = admin(&db.url, &["token", "create", "--user", "nurse-a"]);
    reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{}/api/v1/teams/ward-a/patients",
            engine.http
        ))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A copy of the shipped pathways with `edits` applied to one file.
fn pathways_with(file: &str, edits: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(repo().join("config/pathways")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    let path = dir.path().join(file);
    let mut text = std::fs::read_to_string(&path).unwrap();
    for (from, to) in edits {
        text = edit(&text, from, to);
    }
    std::fs::write(path, text).unwrap();
    dir
}

fn spo2(t: f64, v: f64) -> String {
    format!(r#"[{{"bt":{t},"n":"spo2","u":"%","v":{v}}}]"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn covid_oximetry_pages_a_first_reading_of_80_at_once_and_a_lone_93_on_the_clock() {
    // The review tier's clock shortened from 15 min to 3 s for the test.
    let pathways = pathways_with(
        "covid-oximetry.toml",
        &[("persist_secs = 900", "persist_secs = 3")],
    );
    let broker = Broker::start().await;
    let db = Db::create("kit_covid").await;
    let engine = Engine::start_with(
        &broker.engine_url(),
        &db.url,
        &unique("eng"),
        &[("WARDWATCH_PATHWAYS_DIR", pathways.path().to_str().unwrap())],
    )
    .await;
    enrol_on(&db, "cv-low", "covid-oximetry", "ox-l");
    enrol_on(&db, "cv-93", "covid-oximetry", "ox-r");
    let mut p = broker.loadgen_publisher().await;
    // The first reading ever: 80%. An emergency now, with the SOP's
    // guidance, not after a second reading hours later.
    p.publish(&readings_topic("ox-l"), spo2(now_secs() - 5.0, 80.0))
        .await;
    // One 93% spot check and nothing after it.
    p.publish(&readings_topic("ox-r"), spo2(now_secs() - 1.0, 93.0))
        .await;
    p.flush().await;
    let a = wait_alerts(&db, "cv-low", 1).await;
    assert_eq!(a[0].0, "emergency", "{a:?}");
    assert!(a[0].1.contains("do not wait"), "{a:?}");
    // The clock raises the review without any further reading.
    let a = wait_alerts(&db, "cv-93", 1).await;
    assert_eq!(a[0].0, "high", "{a:?}");
    assert!(a[0].1.contains("no reading back inside"), "{a:?}");
    assert_eq!(
        db.count("SELECT count(*) FROM readings WHERE patient_id = 'cv-93'")
            .await,
        1,
        "raised on the clock, not by a second reading"
    );
    drop(engine);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copd_patient_hovering_around_the_limit_raises_though_no_three_are_in_a_row() {
    let (broker, db, _engine) = stack("kit_hover").await;
    enrol_on(&db, "copd-h", "copd", "ox-h");
    let mut p = broker.loadgen_publisher().await;
    let t0 = now_secs() - 5.0 * 1200.0;
    for (k, v) in [84.0, 89.0, 84.0, 89.0, 84.0].iter().enumerate() {
        p.publish(&readings_topic("ox-h"), spo2(t0 + k as f64 * 1200.0, *v))
            .await;
    }
    p.flush().await;
    let raised = eventually("the COPD SpO2 flag", || async {
        let n = db
            .count(
                "SELECT count(*) FROM flag_events WHERE patient_id = 'copd-h' \
                 AND rule = 'threshold:spo2:0' AND state = 'raised'",
            )
            .await;
        (n > 0).then_some(n)
    })
    .await;
    assert_eq!(raised, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_personal_limit_never_removes_the_pathways_emergency_tier_and_is_bounded_by_it() {
    let (broker, db, _engine) = stack("kit_personal").await;
    enrol_on(&db, "cv-p", "covid-oximetry", "ox-p");
    let limit = |readings: &str| {
        [
            "patient",
            "limit",
            "--id",
            "cv-p",
            "--vital",
            "spo2",
            "--low",
            "90",
            "--severity",
            "high",
            "--persist-readings",
            readings,
            "--persist-secs",
            "600",
            "--by",
            "dr-a",
            "--reason",
            "lives at altitude",
        ]
        .map(String::from)
    };
    let args = limit("2");
    admin(
        &db.url,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    // Slower than the pathway allows: refused, with the reason.
    let slow = limit("5");
    let e = admin_fails(
        &db.url,
        &slow.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(e.contains("persist_readings 5 waits longer"), "{e}");
    // On general, SpO2's highest tier is medium: a high personal limit is refused.
    enrol_on(&db, "gen-p", "general", "ox-g");
    let e = admin_fails(
        &db.url,
        &[
            "patient",
            "limit",
            "--id",
            "gen-p",
            "--vital",
            "spo2",
            "--low",
            "90",
            "--severity",
            "high",
            "--persist-readings",
            "2",
            "--persist-secs",
            "600",
            "--by",
            "dr-a",
            "--reason",
            "x",
        ],
    );
    assert!(e.contains("above the general pathway's highest"), "{e}");
    // SpO2 85: the personal high tier and the pathway's emergency tier both
    // apply; the alert is an emergency.
    let mut p = broker.loadgen_publisher().await;
    p.publish(&readings_topic("ox-p"), spo2(now_secs() - 5.0, 85.0))
        .await;
    p.flush().await;
    let a = wait_alerts(&db, "cv-p", 1).await;
    assert_eq!(a[0].0, "emergency", "{a:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_silent_fallbacks_a_typo_team_or_pathway_is_refused_and_a_reload_may_not_drop_a_pathway_in_use(
) {
    let pathways = pathways_with("copd.toml", &[]);
    let broker = Broker::start().await;
    let db = Db::create("kit_fallbacks").await;
    let engine = Engine::start_with(
        &broker.engine_url(),
        &db.url,
        &unique("eng"),
        &[("WARDWATCH_PATHWAYS_DIR", pathways.path().to_str().unwrap())],
    )
    .await;
    // The CLI refuses what the API refuses.
    let e = admin_fails(
        &db.url,
        &["patient", "add", "--id", "p-typo", "--team", "ward-aa"],
    );
    assert!(e.contains("no policy file and no members"), "{e}");
    let e = admin_fails(
        &db.url,
        &[
            "patient",
            "add",
            "--id",
            "p-typo",
            "--team",
            "ward-a",
            "--pathway",
            "cpod",
        ],
    );
    assert!(e.contains("unknown pathway \"cpod\""), "{e}");
    assert_eq!(
        db.count("SELECT count(*) FROM patients WHERE id = 'p-typo'")
            .await,
        0
    );
    // A patient on copd; the copd file removed and a reload asked for: refused.
    enrol_on(&db, "p-copd", "copd", "ox-c");
    let mut p = broker.loadgen_publisher().await;
    p.publish(&readings_topic("ox-c"), spo2(now_secs() - 5.0, 95.0))
        .await;
    p.flush().await;
    eventually("the patient known to the rules", || async {
        (engine.metric("wardwatch_rules_readings_total").await >= 1.0).then_some(())
    })
    .await;
    std::fs::remove_file(pathways.path().join("copd.toml")).unwrap();
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &engine.pid().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let log = eventually("the reload refused", || async {
        let log = engine.log();
        log.contains("Rules reload refused").then_some(log)
    })
    .await;
    assert!(
        log.contains("pathway \\\"copd\\\" is missing")
            || log.contains("pathway \"copd\" is missing"),
        "{log}"
    );
    assert!(log.contains("p-copd"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phoned_in_set_taken_before_the_latest_device_readings_is_scored_as_of_its_time() {
    let (broker, db, engine) = stack("kit_manual").await;
    enrol_on(&db, "man-1", "general", "kit-m");
    admin(
        &db.url,
        &[
            "user", "add", "--id", "nurse-m", "--role", "nurse", "--team", "ward-a",
        ],
    );
    let token = admin(&db.url, &["token", "create", "--user", "nurse-m"])
        .trim()
        .to_string();
    let now = now_secs();
    // The kit (no respiratory rate) 45 min ago: unwell; 5 min ago: settled.
    let kit = |t: f64, spo2: f64, hr: f64, sbp: f64, temp: f64| {
        format!(
            r#"[{{"bt":{t},"n":"spo2","u":"%","v":{spo2}}},{{"n":"heart_rate","u":"/min","v":{hr}}},
                {{"n":"systolic_bp","u":"mm[Hg]","v":{sbp}}},{{"n":"body_temperature","u":"Cel","v":{temp}}}]"#
        )
    };
    let mut p = broker.loadgen_publisher().await;
    p.publish(
        &readings_topic("kit-m"),
        kit(now - 45.0 * 60.0, 94.0, 115.0, 100.0, 38.6),
    )
    .await;
    p.publish(
        &readings_topic("kit-m"),
        kit(now - 5.0 * 60.0, 97.0, 72.0, 122.0, 37.0),
    )
    .await;
    p.flush().await;
    db.wait_for_readings(8, "the kit's readings").await;
    // The nurse phoned 40 min ago and types in what she counted then.
    let taken =
        (Utc::now() - ChronoDuration::minutes(40)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let res: serde_json::Value = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{}/api/v1/patients/man-1/observations",
            engine.http
        ))
        .bearer_auth(&token)
        .json(&serde_json::json!({"taken_at": taken, "observations": [
            {"vital": "respiratory_rate", "value": 28},
            {"vital": "consciousness", "value": "A"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // As of its time: RR 28 (3) with the kit's readings of then, SpO2 94 (1),
    // pulse 115 (2), systolic 100 (2), 38.6 °C (1): 9, complete, not the
    // settled values of 5 min ago.
    assert_eq!(res["scored"], true, "{res}");
    assert_eq!(res["news2"]["status"], "complete", "{res}");
    assert_eq!(res["news2"]["total"], 9, "{res}");
    assert_eq!(
        res["news2"]["used"].as_array().map(Vec::len),
        Some(6),
        "{res}"
    );
    let a = eventually("the alert at emergency", || async {
        let a = alerts(&db, "man-1").await;
        a.iter().any(|(s, _)| s == "emergency").then_some(a)
    })
    .await;
    assert!(a.len() == 1, "one alert, worsened: {a:?}");
    let complete = db
        .count(
            "SELECT count(*) FROM flag_events WHERE patient_id = 'man-1' AND rule = 'news2' \
             AND summary LIKE 'NEWS2 9 (high)%'",
        )
        .await;
    assert_eq!(complete, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_on_two_litres_a_minute_scores_the_oxygen_points() {
    let (broker, db, _engine) = stack("kit_oxygen").await;
    enrol_on(&db, "o2-1", "general", "kit-o");
    let mut p = broker.loadgen_publisher().await;
    // A normal full set, but on 2 L/min: the air-or-oxygen row scores 2.
    let t = now_secs() - 30.0;
    p.publish(
        &readings_topic("kit-o"),
        format!(
            r#"[{{"bt":{t},"n":"respiratory_rate","u":"/min","v":16}},{{"n":"spo2","u":"%","v":97}},
                {{"n":"systolic_bp","u":"mm[Hg]","v":120}},{{"n":"heart_rate","u":"/min","v":70}},
                {{"n":"body_temperature","u":"Cel","v":37.0}},{{"n":"consciousness","vs":"A"}},
                {{"n":"oxygen_flow","u":"L/min","v":2}}]"#
        ),
    )
    .await;
    p.flush().await;
    let summary: String = eventually("the NEWS2 flag", || async {
        sqlx::query_scalar("SELECT summary FROM flags WHERE patient_id = 'o2-1' AND rule = 'news2'")
            .fetch_optional(&db.pool)
            .await
            .unwrap()
    })
    .await;
    assert!(summary.starts_with("NEWS2 2 (low)"), "{summary}");
    assert!(
        !summary.contains("assumed"),
        "oxygen status from the reading: {summary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_device_raises_its_own_no_data_while_the_patients_other_device_reports() {
    let (broker, db, engine) = stack("kit_devices").await;
    enrol_on(&db, "two-kit", "general", "ox-fast");
    admin(
        &db.url,
        &[
            "device",
            "assign",
            "--device",
            "scale-slow",
            "--patient",
            "two-kit",
            "--from",
            &hours_ago(2),
        ],
    );
    // The rules learn the second device from the assignment.
    eventually("the assignment seen by the rules", || async {
        let v = db.count("SELECT max(settings_version) FROM patients").await as f64;
        (engine.metric("wardwatch_rules_settings_version").await >= v).then_some(())
    })
    .await;
    let mut p = broker.loadgen_publisher().await;
    let t = now_secs() - 1.0;
    // The oximeter declares a reading every second (SenML ut), the scale
    // one an hour: the oximeter is silent after 2 s, the scale is not.
    p.publish(
        &readings_topic("ox-fast"),
        format!(r#"[{{"bt":{t},"ut":1,"n":"spo2","u":"%","v":97}}]"#),
    )
    .await;
    p.publish(
        &readings_topic("scale-slow"),
        format!(r#"[{{"bt":{t},"ut":3600,"n":"body_weight","u":"kg","v":81.5}}]"#),
    )
    .await;
    p.flush().await;
    let rules: Vec<String> = eventually("the oximeter's own no_data", || async {
        let r: Vec<String> = sqlx::query_scalar(
            "SELECT rule FROM flags WHERE patient_id = 'two-kit' AND rule LIKE 'no_data%' \
             AND cleared_at IS NULL",
        )
        .fetch_all(&db.pool)
        .await
        .unwrap();
        (!r.is_empty()).then_some(r)
    })
    .await;
    assert_eq!(rules, vec!["no_data:ox-fast"], "the scale is not silent");
    // It pages as a technical alert, and the board names the device.
    let a = wait_alerts(&db, "two-kit", 1).await;
    assert!(a[0].1.contains("device ox-fast silent"), "{a:?}");
    admin(
        &db.url,
        &[
            "user", "add", "--id", "nurse-d", "--role", "nurse", "--team", "ward-a",
        ],
    );
    let token = admin(&db.url, &["token", "create", "--user", "nurse-d"])
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
    assert_eq!(
        rows[0]["silent_devices"],
        serde_json::json!(["ox-fast"]),
        "{rows}"
    );
    // It reports again: its flag clears.
    p.publish(
        &readings_topic("ox-fast"),
        format!(
            r#"[{{"bt":{},"ut":60,"n":"spo2","u":"%","v":97}}]"#,
            now_secs()
        ),
    )
    .await;
    p.flush().await;
    eventually("the oximeter's no_data cleared", || async {
        (db.count(
            "SELECT count(*) FROM flags WHERE patient_id = 'two-kit' AND rule = 'no_data:ox-fast' \
             AND cleared_at IS NOT NULL",
        )
        .await
            == 1)
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn where_news2_does_not_apply_the_pathways_limits_still_page_and_the_board_says_not_applicable(
) {
    let (broker, db, engine) = stack("kit_pregnant").await;
    enrol_on(&db, "preg-1", "general", "ox-p");
    admin(
        &db.url,
        &[
            "patient",
            "set",
            "--id",
            "preg-1",
            "--pregnant",
            "true",
            "--by",
            "dr-jones",
            "--reason",
            "28 weeks",
        ],
    );
    let mut p = broker.loadgen_publisher().await;
    let t0 = now_secs() - 1200.0;
    // Three oximeter readings 10 minutes apart: SpO2 88 breaches general's
    // partial-kit limit (91 or below) for longer than its 15 minutes.
    for k in 0..3 {
        let t = t0 + f64::from(k) * 600.0;
        p.publish(
            &readings_topic("ox-p"),
            format!(
                r#"[{{"bt":{t},"n":"spo2","u":"%","v":88}},{{"n":"heart_rate","u":"/min","v":96}}]"#
            ),
        )
        .await;
    }
    p.flush().await;
    let a = wait_alerts(&db, "preg-1", 1).await;
    assert!(a[0].1.contains("SpO2"), "{a:?}");
    // No NEWS2 flag at all: NEWS2 is not validated in pregnancy.
    let news2 = db
        .count("SELECT count(*) FROM flags WHERE patient_id = 'preg-1' AND rule = 'news2'")
        .await;
    assert_eq!(news2, 0);
    let rows = board_rows(&db, &engine).await;
    assert_eq!(rows[0]["news2"]["status"], "not_applicable", "{rows}");
}
