//! End-to-end rules tests: readings published over a real Mosquitto, stored
//! in the real PostgreSQL, scored by the real engine, flags read back from
//! the store.

mod common;

use std::path::Path;

use chrono::{Duration as ChronoDuration, SecondsFormat, Utc};
use common::*;

fn now_secs() -> f64 {
    Utc::now().timestamp_micros() as f64 / 1e6
}

fn an_hour_ago() -> String {
    (Utc::now() - ChronoDuration::hours(1)).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Flags of a patient: (rule, severity, open).
async fn flags(db: &Db, patient: &str) -> Vec<(String, String, bool)> {
    sqlx::query_as(
        "SELECT rule, severity, cleared_at IS NULL FROM flags WHERE patient_id = $1 ORDER BY id",
    )
    .bind(patient)
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

/// Flag events of a patient and rule, oldest first.
async fn events(db: &Db, patient: &str, rule: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT state FROM flag_events WHERE patient_id = $1 AND rule = $2 ORDER BY id",
    )
    .bind(patient)
    .bind(rule)
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

async fn wait_for_events(db: &Db, patient: &str, rule: &str, n: usize) -> Vec<String> {
    eventually(&format!("{n} {rule} events for {patient}"), || async {
        let e = events(db, patient, rule).await;
        (e.len() >= n).then_some(e)
    })
    .await
}

/// Waits until the engine's rules evaluated at least `n` live readings.
async fn wait_evaluated(engine: &Engine, n: f64) {
    eventually(&format!("{n} readings evaluated"), || async {
        (engine.metric("wardwatch_rules_readings_total").await >= n).then_some(())
    })
    .await;
}

/// Waits until the engine runs on the latest patient settings in the store.
async fn wait_settings_applied(db: &Db, engine: &Engine) {
    let latest = db.count("SELECT max(settings_version) FROM patients").await as f64;
    eventually("settings applied by the engine", || async {
        (engine.metric("wardwatch_rules_settings_version").await >= latest).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deteriorating_patient_gets_one_news2_flag_with_its_breakdown_and_redelivery_adds_nothing(
) {
    let (broker, db, engine) = stack("rules_news2").await;
    enrol(&db.url, "pat-1", "ward-a", "patch-1", &an_hour_ago());
    let mut p = broker.loadgen_publisher().await;
    let pack = septic_pack(now_secs() - 60.0);
    p.publish(&readings_topic("patch-1"), pack.clone()).await;
    p.flush().await;

    let e = wait_for_events(&db, "pat-1", "news2", 1).await;
    let detail: Vec<(String, String)> =
        sqlx::query_as("SELECT state, summary FROM flag_events ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(e, vec!["raised"], "{detail:?}");
    let (severity, total, band, summary, n_readings): (String, i64, String, String, i64) =
        sqlx::query_as(
            "SELECT severity, (evidence->'news2'->>'total')::bigint, evidence->'news2'->>'band', \
             summary, jsonb_array_length(evidence->'readings')::bigint FROM flags WHERE patient_id = 'pat-1'",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
    // RR 25 (3) + SpO2 94 (1) + air (0) + SBP 100 (2) + HR 115 (2) + A (0) + 38.6 (1) = 9.
    assert_eq!((severity.as_str(), total), ("emergency", 9), "{summary}");
    assert_eq!(band, "high");
    assert!(
        summary.contains("assumed"),
        "air from the care plan is said: {summary}"
    );
    assert_eq!(n_readings, 6, "every parameter used is in the evidence");

    // The same message again (a redelivery): stored once, scored once.
    let dup_before = engine.metric("wardwatch_readings_duplicate_total").await;
    p.publish(&readings_topic("patch-1"), pack).await;
    p.flush().await;
    eventually("duplicate counted", || async {
        (engine.metric("wardwatch_readings_duplicate_total").await >= dup_before + 6.0)
            .then_some(())
    })
    .await;
    wait_evaluated(&engine, 6.0).await;
    assert_eq!(engine.metric("wardwatch_rules_readings_total").await, 6.0);
    assert_eq!(events(&db, "pat-1", "news2").await, vec!["raised"]);
    assert_eq!(flags(&db, "pat-1").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_device_raises_no_data_on_the_clock_and_clears_when_it_resumes() {
    let (broker, db, _engine) = stack("rules_silence").await;
    enrol(&db.url, "pat-1", "ward-a", "ox-1", &an_hour_ago());
    let mut p = broker.loadgen_publisher().await;
    // The oximeter declares a 1 s cadence (SenML ut): silent after 2 s.
    let one = |t: f64| format!(r#"[{{"bt":{t},"n":"spo2","u":"%","v":97,"ut":1}}]"#);
    p.publish(&readings_topic("ox-1"), one(now_secs())).await;
    p.flush().await;
    // No further reading arrives: only the clock can raise this, for the
    // device that fell silent.
    let e = wait_for_events(&db, "pat-1", "no_data:ox-1", 1).await;
    assert_eq!(e, vec!["raised"]);
    let technical: bool = sqlx::query_scalar(
        "SELECT technical FROM flags WHERE patient_id = 'pat-1' AND rule = 'no_data:ox-1'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(technical, "a silent device is a technical flag");
    p.publish(&readings_topic("ox-1"), one(now_secs())).await;
    p.flush().await;
    let e = wait_for_events(&db, "pat-1", "no_data:ox-1", 2).await;
    assert_eq!(&e[..2], ["raised", "cleared"]);
    assert_eq!(
        db.count("SELECT count(*) FROM flags WHERE patient_id = 'pat-1' AND rule = 'no_data'")
            .await,
        0,
        "one flag for the device, not a second for the patient as a whole"
    );
}

/// Enrols a patient on a pathway and lends them a device, through the CLI.
fn enrol_on(db: &Db, patient: &str, pathway: &str, device: &str, from: &str) {
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
            from,
        ],
    );
}

/// Writes readings straight into the store, as if committed by an engine
/// that then died before recording any flag.
async fn insert_readings(db: &Db, patient: &str, device: &str, vital: &str, values: &[(f64, i64)]) {
    for (value, mins_ago) in values {
        let t = Utc::now() - ChronoDuration::minutes(*mins_ago);
        sqlx::query(
            "INSERT INTO readings (time, patient_id, device_id, vital, value, received_at, source) \
             VALUES ($1, $2, $3, $4, $5, $1, 'senml')",
        )
        .bind(t)
        .bind(patient)
        .bind(device)
        .bind(vital)
        .bind(value)
        .execute(&db.pool)
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_rebuilds_state_raising_no_storm_and_keeping_every_deterioration() {
    let broker = Broker::start().await;
    let db = Db::create("rules_restart").await;
    let client = unique("eng");
    let from = (Utc::now() - ChronoDuration::days(2)).to_rfc3339_opts(SecondsFormat::Secs, true);
    // Twenty COPD patients last heard from 3 h ago: their 2 h no_data
    // deadlines passed while the engine was down (their readings may be
    // queued in the broker). One COPD patient deteriorates.
    admin(&db.url, &["migrate"]);
    for i in 0..20 {
        let (p, d) = (format!("quiet-{i}"), format!("ox-q{i}"));
        enrol_on(&db, &p, "copd", &d, &from);
        insert_readings(&db, &p, &d, "spo2", &[(95.0, 180)]).await;
    }
    enrol_on(&db, "sick", "copd", "ox-s", &from);

    let mut engine = Engine::start(&broker.engine_url(), &db.url, &client).await;
    let mut p = broker.loadgen_publisher().await;
    for k in 0..3 {
        let t = now_secs() - 300.0 + f64::from(k) * 60.0;
        p.publish(
            &readings_topic("ox-s"),
            format!(r#"[{{"bt":{t},"n":"spo2","u":"%","v":85}}]"#),
        )
        .await;
    }
    p.flush().await;
    let rule = "threshold:spo2:0";
    assert_eq!(wait_for_events(&db, "sick", rule, 1).await, vec!["raised"]);
    assert!(engine.terminate(), "clean stop");

    // While the engine is down, another patient's low readings are
    // committed but their flag never recorded (a crash between the two).
    enrol_on(&db, "missed", "copd", "ox-m", &from);
    insert_readings(
        &db,
        "missed",
        "ox-m",
        "spo2",
        &[(84.0, 20), (84.0, 15), (84.0, 10)],
    )
    .await;

    let engine = Engine::start(&broker.engine_url(), &db.url, &client).await;
    let started = Utc::now().timestamp();
    // The replay found the missed deterioration and raised it.
    assert_eq!(
        wait_for_events(&db, "missed", rule, 1).await,
        vec!["raised"]
    );
    let patients = engine.metric("wardwatch_rules_patients").await;
    assert!(patients >= 22.0, "every patient loaded: {patients}");
    // The shards count replayed readings as they take them, and the gauge
    // is published on the rules' tick: the other shard may still be
    // working through its part when this patient's flag is raised.
    let replayed = eventually("every stored reading replayed", || async {
        let n = engine
            .metric("wardwatch_rules_replayed_readings_total")
            .await;
        (n >= 26.0).then_some(n)
    })
    .await;
    assert!(replayed >= 26.0, "stored readings replayed: {replayed}");
    // Every shard's clock has run two seconds past the rebuild: a storm of
    // overdue no_data deadlines would have been raised by now.
    eventually("the rules' clock past the rebuild", || async {
        (engine.metric("wardwatch_rules_clock_seconds").await >= (started + 2) as f64).then_some(())
    })
    .await;
    // The open flag was kept, not raised again; a further low reading
    // updates it. Its event is written after anything those ticks raised
    // (one flag writer, in order), so it is also the sentinel for the
    // no_data check.
    assert_eq!(events(&db, "sick", rule).await, vec!["raised"]);
    let t = now_secs();
    p.publish(
        &readings_topic("ox-s"),
        format!(r#"[{{"bt":{t},"n":"spo2","u":"%","v":84}}]"#),
    )
    .await;
    p.flush().await;
    assert_eq!(
        wait_for_events(&db, "sick", rule, 2).await,
        vec!["raised", "updated"]
    );
    let no_data = db
        .count("SELECT count(*) FROM flags WHERE rule = 'no_data'")
        .await;
    assert_eq!(no_data, 0, "no no_data storm after a restart");
    // One flag for the rule, kept across the restart (SpO2 85 on Scale 1
    // also raises a partial NEWS2 flag of its own).
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM flags WHERE patient_id = 'sick' AND rule = '{rule}'"
        ))
        .await,
        1
    );
    drop(engine);
}

fn copy_pathways(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(repo().join("config/pathways")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_pathways_and_an_invalid_file_keeps_the_running_rules() {
    let dir = tempfile::tempdir().unwrap();
    copy_pathways(dir.path());
    let broker = Broker::start().await;
    let db = Db::create("rules_reload").await;
    let pathways = dir.path().to_str().unwrap().to_string();
    let engine = Engine::start_with(
        &broker.engine_url(),
        &db.url,
        &unique("eng"),
        &[("WARDWATCH_PATHWAYS_DIR", pathways.as_str())],
    )
    .await;
    enrol_on(&db, "p1", "covid-oximetry", "ox-1", &an_hour_ago());
    let sighup = |pid: u32| {
        let ok = std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    };

    // An invalid edit: refused with file, line and field; the rules stay.
    let file = dir.path().join("covid-oximetry.toml");
    let good = std::fs::read_to_string(&file).unwrap();
    let invalid = edit(&good, "\nlow = 92.5\n", "\nlow = \"ninety\"\n");
    std::fs::write(&file, invalid).unwrap();
    sighup(engine.pid());
    eventually("reload refused", || async {
        let log = engine.log();
        log.contains("Rules reload refused").then_some(log)
    })
    .await;
    let log = engine.log();
    assert!(log.contains("covid-oximetry.toml"), "{log}");
    assert!(log.contains("line"), "names the line: {log}");
    assert!(log.contains("low"), "names the field: {log}");

    // SpO2 93 twice: only the running (valid) rules flag it (urgent review
    // below 94.5), so a flag proves they were kept; an engine that dropped
    // its rules, or fell back to another pathway, raises nothing.
    let mut p = broker.loadgen_publisher().await;
    let t0 = now_secs() - 600.0;
    for k in 0..2 {
        let t = t0 + f64::from(k) * 60.0;
        p.publish(
            &readings_topic("ox-1"),
            format!(r#"[{{"bt":{t},"n":"spo2","u":"%","v":93}}]"#),
        )
        .await;
    }
    p.flush().await;
    assert_eq!(
        wait_for_events(&db, "p1", "threshold:spo2:1", 1).await,
        vec!["raised"],
        "the kept rules flag SpO2 93"
    );
    // SpO2 95 twice for a second patient: above the kept limits, no flag.
    enrol_on(&db, "p2", "covid-oximetry", "ox-2", &an_hour_ago());
    for k in 0..2 {
        let t = t0 + f64::from(k) * 60.0;
        p.publish(
            &readings_topic("ox-2"),
            format!(r#"[{{"bt":{t},"n":"spo2","u":"%","v":95}}]"#),
        )
        .await;
    }
    p.flush().await;
    wait_evaluated(&engine, 4.0).await;
    assert!(flags(&db, "p2").await.is_empty());

    // A valid edit: urgent review below 96 now. SIGHUP applies it without
    // a restart, and the same readings raise.
    let edited = edit(&good, "low = 94.5", "low = 96");
    std::fs::write(&file, edited).unwrap();
    sighup(engine.pid());
    eventually("reload applied", || async {
        engine.log().contains("Rules reloaded").then_some(())
    })
    .await;
    for k in 2..4 {
        let t = t0 + f64::from(k) * 60.0;
        p.publish(
            &readings_topic("ox-2"),
            format!(r#"[{{"bt":{t},"n":"spo2","u":"%","v":95}}]"#),
        )
        .await;
    }
    p.flush().await;
    assert_eq!(
        wait_for_events(&db, "p2", "threshold:spo2:1", 1).await,
        vec!["raised"]
    );
    wait_evaluated(&engine, 6.0).await;
    assert_eq!(
        engine.metric("wardwatch_rules_readings_total").await,
        6.0,
        "no reading lost across the reloads"
    );

    // The directory is also watched: a new file is picked up without a signal.
    let applied = engine
        .metric("wardwatch_rules_reloads_total{outcome=\"applied\"}")
        .await;
    let extra = edit(
        &good,
        "name = \"covid-oximetry\"",
        "name = \"covid-oximetry-2\"",
    );
    std::fs::write(dir.path().join("covid-oximetry-2.toml"), extra).unwrap();
    eventually("reload on file change", || async {
        let log = engine.log();
        (log.contains("file change")
            && engine
                .metric("wardwatch_rules_reloads_total{outcome=\"applied\"}")
                .await
                > applied)
            .then_some(())
    })
    .await;
}

/// actor, field, old value, new value, reason.
type AuditRow = (String, String, Option<String>, Option<String>, String);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clinician_settings_are_audited_and_change_the_scoring_without_a_restart() {
    let (broker, db, engine) = stack("rules_settings").await;
    enrol(&db.url, "p1", "ward-a", "ox-1", &an_hour_ago());
    admin(
        &db.url,
        &[
            "patient",
            "set",
            "--id",
            "p1",
            "--pathway",
            "copd",
            "--by",
            "dr-jones",
            "--reason",
            "COPD confirmed",
        ],
    );
    // A personal SpO2 limit of 85: readings of 87 no longer breach.
    admin(
        &db.url,
        &[
            "patient",
            "limit",
            "--id",
            "p1",
            "--vital",
            "spo2",
            "--low",
            "85",
            "--high",
            "96",
            "--by",
            "dr-jones",
            "--reason",
            "baseline 86-88 on review",
        ],
    );
    // Scale 2 with no stated care-plan oxygen is refused; stated, accepted.
    let e = admin_fails(
        &db.url,
        &[
            "patient",
            "set",
            "--id",
            "p1",
            "--spo2-scale",
            "2",
            "--by",
            "dr-jones",
            "--reason",
            "hypercapnic respiratory failure on ABG",
        ],
    );
    assert!(e.contains("oxygen status stated first"), "{e}");
    admin(
        &db.url,
        &[
            "patient",
            "set",
            "--id",
            "p1",
            "--care-plan-oxygen",
            "false",
            "--spo2-scale",
            "2",
            "--by",
            "dr-jones",
            "--reason",
            "hypercapnic respiratory failure on ABG",
        ],
    );
    let audit: Vec<AuditRow> = sqlx::query_as(
        // The clinician's decisions; the enrolment is audited too (by whoever ran `patient add`).
        "SELECT actor, field, old_value, new_value, reason FROM patient_settings_audit \
         WHERE field <> 'enrolled' ORDER BY id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(audit.len(), 4, "{audit:?}");
    assert_eq!(audit[0].1, "pathway");
    assert_eq!(
        (audit[0].2.as_deref(), audit[0].3.as_deref()),
        (Some("general"), Some("copd"))
    );
    assert_eq!(audit[1].1, "limit:spo2");
    assert_eq!(audit[2].1, "care_plan_oxygen");
    assert_eq!(audit[3].1, "spo2_scale");
    assert_eq!(
        (audit[3].2.as_deref(), audit[3].3.as_deref()),
        (Some("1"), Some("2"))
    );
    assert!(audit.iter().all(|a| a.0 == "dr-jones" && !a.4.is_empty()));

    // Refusals: no reason, unknown pathway, a limit that makes no sense.
    let e = admin_fails(
        &db.url,
        &[
            "patient",
            "set",
            "--id",
            "p1",
            "--spo2-scale",
            "1",
            "--by",
            "x",
            "--reason",
            " ",
        ],
    );
    assert!(e.contains("reason"), "{e}");
    let e = admin_fails(
        &db.url,
        &[
            "patient",
            "set",
            "--id",
            "p1",
            "--pathway",
            "nope",
            "--by",
            "x",
            "--reason",
            "y",
        ],
    );
    assert!(e.contains("unknown pathway") && e.contains("copd"), "{e}");
    let e = admin_fails(
        &db.url,
        &[
            "patient", "limit", "--id", "p1", "--vital", "spo2", "--low", "95", "--high", "90",
            "--by", "x", "--reason", "y",
        ],
    );
    assert!(e.contains("below high"), "{e}");

    wait_settings_applied(&db, &engine).await;
    let mut p = broker.loadgen_publisher().await;
    let t0 = now_secs() - 600.0;
    let mut k = 0;
    let mut send = |v: f64| {
        k += 1;
        let t = t0 + f64::from(k) * 30.0;
        (
            readings_topic("ox-1"),
            format!(r#"[{{"bt":{t},"n":"spo2","u":"%","v":{v}}}]"#),
        )
    };
    let batch: Vec<_> = [87.0, 87.0, 87.0, 84.0, 84.0, 84.0]
        .into_iter()
        .map(&mut send)
        .collect();
    for (topic, payload) in batch {
        p.publish(&topic, payload).await;
    }
    p.flush().await;
    let e = wait_for_events(&db, "p1", "personal:spo2:0", 1).await;
    assert_eq!(
        e,
        vec!["raised"],
        "raised by the personal limit, after three readings below 85"
    );
    wait_evaluated(&engine, 6.0).await;
    assert!(
        events(&db, "p1", "threshold:spo2:0").await.is_empty(),
        "the pathway's 88 limit no longer applies to this patient"
    );

    // Discharge: open flags clear, monitoring stops.
    admin(
        &db.url,
        &[
            "patient",
            "discharge",
            "--id",
            "p1",
            "--by",
            "nurse-a",
            "--reason",
            "recovered",
        ],
    );
    assert_eq!(
        wait_for_events(&db, "p1", "personal:spo2:0", 2).await,
        vec!["raised", "cleared"]
    );
}

/// A flag the database refuses (here a constraint the test adds, standing
/// for a bug or a broken row) is set aside with the reason; every other
/// patient's flags are recorded and ingest keeps acknowledging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flag_the_database_refuses_is_set_aside_and_never_holds_the_others() {
    let (broker, db, engine) = stack("rules_set_aside").await;
    enrol(&db.url, "pat-bad", "ward-a", "ox-bad", &an_hour_ago());
    enrol(&db.url, "pat-good", "ward-a", "ox-good", &an_hour_ago());
    sqlx::query(
        "ALTER TABLE flags ADD CONSTRAINT test_refuses_pat_bad CHECK (patient_id <> 'pat-bad')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let mut p = broker.loadgen_publisher().await;
    let t = now_secs() - 60.0;
    // Both deteriorate in the same moment, so their flags share a batch.
    p.publish(&readings_topic("ox-bad"), septic_pack(t)).await;
    p.publish(&readings_topic("ox-good"), septic_pack(t)).await;
    p.flush().await;
    let good = eventually("pat-good's NEWS2 flag", || async {
        let f = flags(&db, "pat-good").await;
        (!f.is_empty()).then_some(f)
    })
    .await;
    assert_eq!(good[0].0, "news2");
    let (rule, change, reason): (String, String, String) =
        eventually("the set-aside flag", || async {
            sqlx::query_as(
                "SELECT rule, change, reason FROM flags_set_aside WHERE patient_id = 'pat-bad'",
            )
            .fetch_optional(&db.pool)
            .await
            .unwrap()
        })
        .await;
    assert_eq!((rule.as_str(), change.as_str()), ("news2", "open"));
    assert!(reason.contains("test_refuses_pat_bad"), "{reason}");
    assert!(flags(&db, "pat-bad").await.is_empty());
    assert!(engine.metric("wardwatch_flags_set_aside_total").await >= 1.0);
    // Ingest is not held: later readings are stored and acknowledged.
    p.publish(
        &readings_topic("ox-good"),
        format!(
            r#"[{{"bt":{},"n":"spo2","u":"%","v":97}}]"#,
            now_secs() - 1.0
        ),
    )
    .await;
    p.flush().await;
    db.wait_for_readings(13, "the reading after the refusal")
        .await;
    eventually("every message acknowledged", || async {
        (engine.metric("wardwatch_acks_sent_total").await == 3.0).then_some(())
    })
    .await;
}
