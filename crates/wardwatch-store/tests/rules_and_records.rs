//! The rules' and records' store contract on both backends: the same checks
//! run against PostgreSQL and the embedded SQLite store through the traits,
//! covering enrolment and the patients the rules read (including the
//! "changed since" refresh), audited settings and personalised limits,
//! flags with their events and the one-open-flag rule, the start-up replay,
//! enrolment with an NHS number, transfers that carry open alerts, the
//! device catalogue, manual observations and notes on readings.
//!
//! Rows no trait method writes or returns (readings, alerts, audit rows)
//! are written and read with small raw SQL statements both dialects accept.

use chrono::{DateTime, Duration, NaiveDate, SecondsFormat, TimeZone, Utc};
use serde_json::json;
use wardwatch_core::{DeviceId, NhsNumber, PatientId, Vital};
use wardwatch_store::records::{Enrolment, ManualEntry};
use wardwatch_store::rules::{
    FlagChange, FlagRecord, FlagsOutcome, LimitRow, OpenFlagRow, PatientFilter, ReplayRow, Setting,
};
use wardwatch_store::sqlite::SqliteStore;
use wardwatch_store::testing::{enrol, pg_admin_url, FreshPg as Db, Raw};
use wardwatch_store::{PgStore, RecordStore, RulesStore, Store, StoreError};

fn t(mins: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap() + Duration::minutes(mins)
}

/// A time as an SQL literal both backends read the same way (and as sqlx
/// binds it on SQLite).
fn lit(at: DateTime<Utc>) -> String {
    format!("'{}'", at.to_rfc3339_opts(SecondsFormat::AutoSi, false))
}

fn pid(s: &str) -> PatientId {
    PatientId::new(s).unwrap()
}

fn rejected<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) -> String {
    match r {
        Err(StoreError::Rejected(m)) => m,
        other => panic!("{what}: expected Rejected, got {other:?}"),
    }
}

/// A reading as ingest stores it.
async fn reading<S: Raw>(s: &S, patient: &str, vital: &str, at: DateTime<Utc>, value: f64) {
    s.exec(format!(
        "INSERT INTO readings (time, patient_id, device_id, vital, value, received_at, source) \
         VALUES ({at}, '{patient}', 'ox-1', '{vital}', {value}, {at}, 'senml')",
        at = lit(at)
    ))
    .await;
}

/// (field, old, new) of a patient's audit rows, oldest first.
async fn audit_rows<S: Raw>(s: &S, patient: &str) -> Vec<(String, Option<String>, Option<String>)> {
    let col = |c: &str| {
        format!("SELECT {c} FROM patient_settings_audit WHERE patient_id = '{patient}' ORDER BY id")
    };
    let fields = s.texts(col("field")).await;
    let old = s.texts(col("old_value")).await;
    let new = s.texts(col("new_value")).await;
    fields
        .into_iter()
        .zip(old)
        .zip(new)
        .map(|((f, o), n)| (f.unwrap_or_default(), o, n))
        .collect()
}

fn limit(vital: &str, low: Option<f64>, high: Option<f64>) -> LimitRow {
    LimitRow {
        vital: vital.into(),
        low,
        high,
        severity: "high".into(),
        persist_readings: 2,
        persist_secs: 300,
        clear_margin: 1.0,
        clear_hold_secs: 600,
    }
}

fn flag(
    patient: &str,
    rule: &str,
    severity: &'static str,
    change: FlagChange,
    at: DateTime<Utc>,
) -> FlagRecord {
    FlagRecord {
        patient_id: patient.into(),
        rule: rule.into(),
        technical: rule == "silent",
        severity,
        change,
        at,
        summary: format!("{rule} {severity}"),
        evidence: json!({"readings": [{"vital": "spo2", "value": 89.0}]}),
    }
}

async fn rules_check<S: Store + RulesStore + RecordStore + Raw>(s: &S) {
    let (p1, p2) = (pid("p1"), pid("p2"));

    // Enrolment, the one audited way onto a team: a pathway for the new;
    // enrolling a known id again is refused (a pathway change is an audited
    // clinical decision, a team move a transfer); the move is a transfer.
    enrol(s, &p1, "ward-a", Some("copd")).await.unwrap();
    enrol(s, &p2, "ward-a", None).await.unwrap();
    rejected(enrol(s, &pid("p3"), "  ", None).await, "an empty team");
    let m = rejected(
        enrol(s, &p1, "ward-a", Some("heart_failure")).await,
        "enrolling a known patient again",
    );
    assert_eq!(m, "patient id p1 is already in use");
    assert_eq!(
        s.transfer(&p2, "ward-b", None, "dr moss", "closer to home")
            .await
            .unwrap(),
        0
    );
    assert_eq!(s.team_of("p2").await.unwrap().as_deref(), Some("ward-b"));
    assert_eq!(s.team_of("nobody").await.unwrap(), None);

    let all = s.patient_rows(PatientFilter::All).await.unwrap();
    let ids: Vec<&str> = all.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["p1", "p2"]);
    assert_eq!(all[0].pathway, "copd");
    assert_eq!(all[1].pathway, "general");
    assert_eq!(
        (all[0].spo2_scale, all[0].care_plan_oxygen, all[0].pregnant),
        (1, false, false)
    );
    assert_eq!((all[0].date_of_birth, all[0].discharged), (None, false));
    assert!(all[0].limits.is_empty());
    let wanted = ["p2".to_string(), "ghost".to_string()];
    let some = s.patient_rows(PatientFilter::Ids(&wanted)).await.unwrap();
    assert_eq!(some.len(), 1);
    assert_eq!(some[0].id, "p2");
    assert!(s
        .patient_rows(PatientFilter::Ids(&[]))
        .await
        .unwrap()
        .is_empty());

    // Settings: each change bumps the version past every one seen so far,
    // so the "changed since" refresh picks it up.
    let high = |rows: &[wardwatch_store::rules::PatientRow]| {
        rows.iter().map(|p| p.settings_version).max().unwrap_or(0)
    };
    let seen = high(&all);
    // Scale 2 needs the care plan's oxygen status stated first.
    rejected(
        s.set_patient(&p1, Setting::Spo2Scale(2), "dr who", "COPD target 88-92")
            .await,
        "Scale 2 with no stated care-plan oxygen",
    );
    s.set_patient(
        &p1,
        Setting::CarePlanOxygen(false),
        "dr who",
        "on air at home",
    )
    .await
    .unwrap();
    s.set_patient(&p1, Setting::Spo2Scale(2), "dr who", "COPD target 88-92")
        .await
        .unwrap();
    let changed = s
        .patient_rows(PatientFilter::ChangedSince(seen))
        .await
        .unwrap();
    let row1 = changed.iter().find(|p| p.id == "p1").expect("p1 changed");
    assert_eq!(row1.spo2_scale, 2);
    assert!(
        row1.settings_version > seen,
        "{} > {seen}",
        row1.settings_version
    );
    let seen = row1.settings_version;
    // p1 holds the highest version now; a limit change must still move it up.
    s.set_limit(
        &p1,
        &limit("spo2", Some(88.0), Some(92.0)),
        "dr who",
        "COPD",
    )
    .await
    .unwrap();
    let changed = s
        .patient_rows(PatientFilter::ChangedSince(seen))
        .await
        .unwrap();
    let row1 = changed.iter().find(|p| p.id == "p1").expect("p1 changed");
    assert!(
        row1.settings_version > seen,
        "a limit change moves the version up: {} > {seen}",
        row1.settings_version
    );
    assert_eq!(row1.limits, vec![limit("spo2", Some(88.0), Some(92.0))]);
    let seen = row1.settings_version;
    s.set_limit(&p2, &limit("heart_rate", None, Some(120.0)), "dr who", "AF")
        .await
        .unwrap();
    let changed = s
        .patient_rows(PatientFilter::ChangedSince(seen))
        .await
        .unwrap();
    let row2 = changed.iter().find(|p| p.id == "p2").expect("p2 changed");
    assert!(row2.settings_version > seen);
    assert_eq!(row2.limits.len(), 1);

    // Rejected changes write nothing.
    rejected(
        s.set_patient(&pid("ghost"), Setting::Pregnant(true), "dr", "why")
            .await,
        "an unknown patient",
    );
    let m = rejected(
        s.set_patient(&p1, Setting::Spo2Scale(3), "dr", "why").await,
        "scale 3",
    );
    assert_eq!(m, "SpO2 scale must be 1 or 2, not 3");
    rejected(
        s.set_patient(&p1, Setting::Pregnant(true), " ", "why")
            .await,
        "no actor",
    );
    rejected(
        s.set_patient(&p1, Setting::Pregnant(true), "dr", "").await,
        "no reason",
    );
    rejected(
        s.set_limit(&pid("ghost"), &limit("spo2", Some(88.0), None), "dr", "why")
            .await,
        "a limit for an unknown patient",
    );
    rejected(
        s.set_limit(&p1, &limit("spo2", Some(88.0), None), "dr", " ")
            .await,
        "a limit without a reason",
    );
    // The table's checks refuse an inverted limit as bad data, not as a retry.
    let bad = s
        .set_limit(&p1, &limit("spo2", Some(95.0), Some(90.0)), "dr", "why")
        .await;
    assert!(matches!(bad, Err(StoreError::Database(_))), "{bad:?}");
    let m = rejected(
        s.remove_limit(&p1, "heart_rate", "dr", "why").await,
        "no such limit",
    );
    assert_eq!(m, "patient p1 has no personal heart_rate limit");

    // More settings, each audited with the old value as PostgreSQL shows it.
    s.set_patient(&p1, Setting::CarePlanOxygen(true), "dr", "LTOT")
        .await
        .unwrap();
    s.set_patient(&p1, Setting::Pregnant(true), "dr", "booked")
        .await
        .unwrap();
    let dob = NaiveDate::from_ymd_opt(1950, 2, 3).unwrap();
    s.set_patient(&p1, Setting::DateOfBirth(dob), "dr", "records")
        .await
        .unwrap();
    s.set_patient(
        &p1,
        Setting::Pathway("heart_failure".into()),
        "dr",
        "review",
    )
    .await
    .unwrap();
    let gone = t(5) + Duration::milliseconds(120);
    s.set_patient(&p1, Setting::Discharged(gone), "dr", "home")
        .await
        .unwrap();
    let rows = s
        .patient_rows(PatientFilter::Ids(&["p1".into()]))
        .await
        .unwrap();
    let r = &rows[0];
    assert_eq!(r.pathway, "heart_failure");
    assert!(r.care_plan_oxygen && r.pregnant && r.discharged);
    assert_eq!(r.date_of_birth, Some(dob));
    s.set_patient(&p1, Setting::Readmitted, "dr", "back")
        .await
        .unwrap();
    s.set_limit(&p1, &limit("spo2", Some(87.0), Some(93.0)), "dr", "wider")
        .await
        .unwrap();
    s.remove_limit(&p2, "heart_rate", "dr", "rate controlled")
        .await
        .unwrap();
    let rows = s.patient_rows(PatientFilter::All).await.unwrap();
    assert!(!rows[0].discharged);
    assert_eq!(rows[0].limits[0].low, Some(87.0));
    assert!(rows[1].limits.is_empty());

    let s1 = |x: &str| Some(x.to_string());
    let limit_was =
        "low 88 high 92 severity high persist 2 readings or 300 s, clear 1 inside for 600 s";
    let limit_now =
        "low 87 high 93 severity high persist 2 readings or 300 s, clear 1 inside for 600 s";
    assert_eq!(
        audit_rows(s, "p1").await,
        vec![
            ("enrolled".into(), None, s1("team ward-a, pathway copd")),
            ("care_plan_oxygen".into(), s1("false"), s1("false")),
            ("spo2_scale".into(), s1("1"), s1("2")),
            ("limit:spo2".into(), None, s1(limit_was)),
            ("care_plan_oxygen".into(), s1("false"), s1("true")),
            ("pregnant".into(), s1("false"), s1("true")),
            ("date_of_birth".into(), None, s1("1950-02-03")),
            ("pathway".into(), s1("copd"), s1("heart_failure")),
            ("discharged_at".into(), None, s1(&gone.to_rfc3339())),
            (
                "discharged_at".into(),
                s1("2026-11-23 08:05:00.12+00"),
                None
            ),
            ("limit:spo2".into(), s1(limit_was), s1(limit_now)),
        ]
    );
    assert_eq!(
        audit_rows(s, "p2").await,
        vec![
            ("enrolled".into(), None, s1("team ward-a, pathway general")),
            ("team_id".into(), s1("ward-a"), s1("ward-b")),
            ("limit:heart_rate".into(), None, s1("low none high 120 severity high persist 2 readings or 300 s, clear 1 inside for 600 s")),
            ("limit:heart_rate".into(), s1("set"), None),
        ]
    );
    assert_eq!(
        s.int("SELECT count(*) FROM patient_settings_audit WHERE actor = 'dr who'".into())
            .await,
        4,
        "care-plan oxygen, Scale 2 and two limits"
    );

    // Flags: raise, update, clear, a clear with nothing open, raise again.
    let out = s
        .write_flags(&[
            flag("p1", "news2", "medium", FlagChange::Open, t(1)),
            flag("p1", "news2", "high", FlagChange::Open, t(2)),
            flag("p2", "silent", "low", FlagChange::Open, t(2)),
        ])
        .await
        .unwrap();
    assert_eq!(
        out,
        FlagsOutcome {
            raised: 2,
            updated: 1,
            cleared: 0,
            ignored: 0
        }
    );
    assert_eq!(
        s.open_flags().await.unwrap(),
        vec![
            OpenFlagRow {
                patient_id: "p1".into(),
                rule: "news2".into(),
                severity: "high".into()
            },
            OpenFlagRow {
                patient_id: "p2".into(),
                rule: "silent".into(),
                severity: "low".into()
            },
        ]
    );
    let out = s
        .write_flags(&[
            flag("p1", "news2", "high", FlagChange::Clear, t(3)),
            flag("p1", "news2", "high", FlagChange::Clear, t(4)),
            flag("p1", "spo2", "low", FlagChange::Clear, t(4)),
            flag("p1", "news2", "emergency", FlagChange::Open, t(5)),
        ])
        .await
        .unwrap();
    assert_eq!(
        out,
        FlagsOutcome {
            raised: 1,
            updated: 0,
            cleared: 1,
            ignored: 2
        }
    );
    assert_eq!(
        s.int("SELECT count(*) FROM flags WHERE patient_id = 'p1'".into())
            .await,
        2
    );
    assert_eq!(
        s.int("SELECT count(*) FROM flags WHERE patient_id = 'p1' AND cleared_at IS NULL".into())
            .await,
        1
    );
    let first = s
        .int("SELECT min(id) FROM flags WHERE patient_id = 'p1'".into())
        .await;
    assert_eq!(
        s.texts(format!(
            "SELECT severity FROM flags WHERE id = {first} AND raised_at = {} AND updated_at = {} \
             AND cleared_at = {}",
            lit(t(1)),
            lit(t(3)),
            lit(t(3))
        ))
        .await,
        vec![Some("high".to_string())]
    );
    assert_eq!(
        s.texts(
            "SELECT state || ' ' || severity || ' ' || rule FROM flag_events ORDER BY id".into()
        )
        .await
        .into_iter()
        .flatten()
        .collect::<Vec<_>>(),
        [
            "raised medium news2",
            "updated high news2",
            "raised low silent",
            "cleared high news2",
            "raised emergency news2"
        ]
    );
    assert_eq!(
        s.int("SELECT count(*) FROM flag_events WHERE flag_id IN (SELECT id FROM flags WHERE technical = true)".into())
            .await,
        1
    );
    // A failed batch leaves nothing behind (a flag for an unknown patient).
    let bad = s
        .write_flags(&[
            flag("p2", "news2", "low", FlagChange::Open, t(6)),
            flag("ghost", "news2", "low", FlagChange::Open, t(6)),
        ])
        .await;
    assert!(bad.is_err(), "{bad:?}");
    assert_eq!(s.open_flags().await.unwrap().len(), 2);
    assert_eq!(s.int("SELECT count(*) FROM flag_events".into()).await, 5);

    // The replay: per-vital horizons, [from, to), time order.
    reading(s, "p1", "spo2", t(1), 91.0).await;
    reading(s, "p1", "spo2", t(5), 92.0).await;
    reading(s, "p2", "spo2", t(5), 97.0).await;
    reading(s, "p1", "heart_rate", t(2), 80.0).await;
    reading(s, "p1", "body_temperature", t(3), 37.0).await;
    reading(s, "p1", "spo2", t(10), 93.0).await;
    let replay = s
        .replay_slice(
            t(0),
            t(10),
            &[("spo2".into(), t(3)), ("heart_rate".into(), t(0))],
        )
        .await
        .unwrap();
    let row = |p: &str, v: &str, value: f64, time| ReplayRow {
        patient_id: p.into(),
        vital: v.into(),
        value,
        time,
        device_id: "ox-1".into(),
    };
    assert_eq!(
        replay,
        vec![
            row("p1", "heart_rate", 80.0, t(2)),
            row("p1", "spo2", 92.0, t(5)),
            row("p2", "spo2", 97.0, t(5)),
        ]
    );
    let later = s
        .replay_slice(t(10), t(20), &[("spo2".into(), t(0))])
        .await
        .unwrap();
    assert_eq!(later, vec![row("p1", "spo2", 93.0, t(10))]);
    assert!(s.replay_slice(t(0), t(20), &[]).await.unwrap().is_empty());
}

async fn records_check<S: Store + RulesStore + RecordStore + Raw>(s: &S) {
    let nhs = NhsNumber::parse("943 476 5919").unwrap();
    let dob = NaiveDate::from_ymd_opt(1948, 7, 5).unwrap();
    let enrolment = |id: &str, nhs: Option<NhsNumber>| Enrolment {
        id: pid(id),
        team: "ward-a".into(),
        pathway: "copd".into(),
        nhs_number: nhs,
        date_of_birth: Some(dob),
    };

    // Enrolment with identity: a second record for either id or NHS number is refused.
    s.enrol_patient(&enrolment("p1", Some(nhs.clone())), "clerk")
        .await
        .unwrap();
    s.enrol_patient(&enrolment("p2", None), "clerk")
        .await
        .unwrap();
    s.enrol_patient(&enrolment("p4", None), "clerk")
        .await
        .unwrap();
    let m = rejected(
        s.enrol_patient(&enrolment("p1", None), "clerk").await,
        "a known id",
    );
    assert_eq!(m, "patient id p1 is already in use");
    let m = rejected(
        s.enrol_patient(&enrolment("p3", Some(nhs.clone())), "clerk")
            .await,
        "a known NHS number",
    );
    assert!(m.starts_with("this NHS number is already enrolled"), "{m}");
    rejected(
        s.enrol_patient(&enrolment("p3", None), " ").await,
        "no actor",
    );
    assert_eq!(s.team_of("p3").await.unwrap(), None);
    let rows = s.patient_rows(PatientFilter::All).await.unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(
        (rows[0].pathway.as_str(), rows[0].date_of_birth),
        ("copd", Some(dob))
    );
    assert_eq!(
        audit_rows(s, "p1").await,
        vec![(
            "enrolled".into(),
            None,
            Some("team ward-a, pathway copd".into())
        )]
    );

    // A transfer carries the open alert (not the resolved one) with the new
    // team's policy, and records the move on it.
    let alert = |state: &str, kind: &str| {
        format!(
            "INSERT INTO alerts (patient_id, team_id, kind, severity, state, opened_at, policy, tier, summary) \
             VALUES ('p1', 'ward-a', '{kind}', 'high', '{state}', {}, '{{\"tiers\": [{{\"name\": \"nurse\"}}]}}', 0, 'x')",
            lit(t(0))
        )
    };
    s.exec(alert("open", "clinical")).await;
    s.exec(alert("resolved", "technical")).await;
    let policy = json!({"tiers": [{"name": "community team"}]});
    assert_eq!(
        s.transfer(&pid("p1"), "ward-b", Some(&policy), "dr", "moved house")
            .await
            .unwrap(),
        1
    );
    assert_eq!(s.team_of("p1").await.unwrap().as_deref(), Some("ward-b"));
    let alerts =
        |sql: &str| format!("SELECT {sql} FROM alerts WHERE patient_id = 'p1' ORDER BY id");
    assert_eq!(
        s.texts(alerts("team_id")).await,
        [Some("ward-b".to_string()), Some("ward-a".to_string())]
    );
    assert_eq!(
        s.texts(alerts("policy -> 'tiers' -> 0 ->> 'name'")).await,
        [
            Some("community team".to_string()),
            Some("nurse".to_string())
        ]
    );
    assert_eq!(
        s.texts("SELECT detail ->> 'team' FROM alert_events WHERE kind = 'transferred' AND actor = 'wardwatch'".into())
            .await,
        [Some("ward-b".to_string())]
    );
    assert_eq!(
        audit_rows(s, "p1").await.last().cloned(),
        Some((
            "team_id".into(),
            Some("ward-a".into()),
            Some("ward-b".into())
        ))
    );
    let m = rejected(
        s.transfer(&pid("p1"), "ward-b", None, "dr", "why").await,
        "the same team",
    );
    assert_eq!(m, "patient p1 is already on team ward-b");
    rejected(
        s.transfer(&pid("ghost"), "ward-b", None, "dr", "why").await,
        "unknown",
    );
    rejected(
        s.transfer(&pid("p1"), "ward-c", None, "dr", " ").await,
        "no reason",
    );
    // Without a policy the alert keeps its own; a second transfer moves
    // alerts too.
    assert_eq!(
        s.transfer(&pid("p1"), "ward-c", None, "dr moss", "back again")
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.texts(alerts(
            "team_id || ' ' || (policy -> 'tiers' -> 0 ->> 'name')"
        ))
        .await,
        [
            Some("ward-c community team".to_string()),
            Some("ward-a nurse".to_string())
        ]
    );
    assert_eq!(
        s.int("SELECT count(*) FROM alert_events WHERE kind = 'transferred'".into())
            .await,
        2
    );

    // The device catalogue: status is derived from assignments and retirement.
    let d1 = DeviceId::new("ox-1").unwrap();
    let d2 = DeviceId::new("bp-1").unwrap();
    let row = s
        .register_device(&d1, "Nonin 3230", "pulse_oximeter")
        .await
        .unwrap();
    assert_eq!(
        (
            row.id.as_str(),
            row.model.as_deref(),
            row.kind.as_deref(),
            row.status.as_str()
        ),
        (
            "ox-1",
            Some("Nonin 3230"),
            Some("pulse_oximeter"),
            "available"
        )
    );
    let row = s
        .register_device(&d1, " Nonin 3231 ", "pulse_oximeter")
        .await
        .unwrap();
    assert_eq!(row.model.as_deref(), Some("Nonin 3231"));
    let m = rejected(
        s.register_device(&d2, "Omron", "toaster").await,
        "a bad kind",
    );
    assert!(m.starts_with("kind must be one of pulse_oximeter"), "{m}");
    rejected(
        s.register_device(&d2, " ", "blood_pressure_monitor").await,
        "no model",
    );
    s.register_device(&d2, "Omron M7", "blood_pressure_monitor")
        .await
        .unwrap();
    s.assign_device(&d1, &pid("p2"), t(0)).await.unwrap();
    let row = s.device("ox-1").await.unwrap().unwrap();
    assert_eq!(
        (
            row.status.as_str(),
            row.patient_id.as_deref(),
            row.assigned_from
        ),
        ("assigned", Some("p2"), Some(t(0)))
    );
    let m = rejected(s.retire_device(&d1).await, "an assigned device");
    assert_eq!(m, "device ox-1 is assigned to a patient; return it first");
    s.unassign_device(&d1, t(30)).await.unwrap();
    let row = s.device("ox-1").await.unwrap().unwrap();
    assert_eq!(
        (row.status.as_str(), row.patient_id, row.assigned_from),
        ("available", None, None)
    );
    let row = s.retire_device(&d1).await.unwrap();
    assert_eq!(row.status, "retired");
    let m = rejected(s.retire_device(&d1).await, "retired twice");
    assert_eq!(m, "device ox-1 is already retired");
    let m = rejected(
        s.retire_device(&DeviceId::new("nope").unwrap()).await,
        "unknown",
    );
    assert_eq!(m, "device nope is not in the catalogue");
    let all = s.devices().await.unwrap();
    assert_eq!(
        all.iter()
            .map(|d| (d.id.as_str(), d.status.as_str()))
            .collect::<Vec<_>>(),
        [("bp-1", "available"), ("ox-1", "retired")]
    );
    assert_eq!(s.device("nope").await.unwrap(), None);

    // Manual observations: stored as readings, retries add nothing, a
    // different value at the same time is refused.
    let p2 = pid("p2");
    let entry = |values: &'static [(Vital, f64)]| ManualEntry {
        patient: &p2,
        taken_at: t(20),
        values,
        recorded_by: "nurse",
        note: Some("by phone"),
    };
    let new = s
        .record_manual(
            &entry(&[(Vital::Spo2, 94.0), (Vital::HeartRate, 80.0)]),
            t(21),
        )
        .await
        .unwrap();
    assert_eq!(
        new.iter()
            .map(|r| (
                r.patient_id.as_str(),
                r.vital,
                r.value,
                r.time,
                r.received_at
            ))
            .collect::<Vec<_>>(),
        [
            ("p2", Vital::Spo2, 94.0, t(20), t(21)),
            ("p2", Vital::HeartRate, 80.0, t(20), t(21))
        ]
    );
    let again = s
        .record_manual(
            &entry(&[(Vital::Spo2, 94.0), (Vital::HeartRate, 80.0)]),
            t(22),
        )
        .await
        .unwrap();
    assert!(again.is_empty(), "{again:?}");
    let more = s
        .record_manual(
            &entry(&[(Vital::Spo2, 94.0), (Vital::RespiratoryRate, 18.0)]),
            t(22),
        )
        .await
        .unwrap();
    assert_eq!(
        more.iter().map(|r| r.vital).collect::<Vec<_>>(),
        [Vital::RespiratoryRate]
    );
    let m = rejected(
        s.record_manual(
            &entry(&[(Vital::BodyTemperature, 37.0), (Vital::Spo2, 90.0)]),
            t(23),
        )
        .await,
        "a different value",
    );
    assert!(
        m.starts_with("a different spo2 is already recorded for p2 at 2026-11-23T08:20:00+00:00"),
        "{m}"
    );
    let manual = "SELECT count(*) FROM readings WHERE patient_id = 'p2' AND device_id = 'manual' AND source = 'manual'";
    assert_eq!(s.int(manual.into()).await, 3);
    assert_eq!(s.int("SELECT count(*) FROM manual_entries".into()).await, 2);
    assert_eq!(
        s.texts("SELECT recorded_by || ' ' || note FROM manual_entries ORDER BY id".into())
            .await,
        [
            Some("nurse by phone".to_string()),
            Some("nurse by phone".to_string())
        ]
    );
    let ghost = pid("ghost");
    let m = rejected(
        s.record_manual(
            &ManualEntry {
                patient: &ghost,
                ..entry(&[(Vital::Spo2, 94.0)])
            },
            t(21),
        )
        .await,
        "an unknown patient",
    );
    assert_eq!(m, "patient ghost is not enrolled");
    rejected(
        s.record_manual(
            &ManualEntry {
                recorded_by: " ",
                ..entry(&[(Vital::Spo2, 95.0)])
            },
            t(21),
        )
        .await,
        "nobody recording",
    );
    let p4 = pid("p4");
    s.set_patient(&p4, Setting::Discharged(t(0)), "dr", "home")
        .await
        .unwrap();
    let m = rejected(
        s.record_manual(
            &ManualEntry {
                patient: &p4,
                ..entry(&[(Vital::Spo2, 94.0)])
            },
            t(21),
        )
        .await,
        "a discharged patient",
    );
    assert!(m.contains("is discharged"), "{m}");
    assert_eq!(s.int(manual.into()).await, 3);

    // Notes on readings.
    let note = s
        .add_reading_note("p2", "spo2", t(20), "manual", " nurse ", "probe slipped")
        .await
        .unwrap()
        .expect("a note on an existing reading");
    assert_eq!(
        (
            note.vital.as_str(),
            note.time,
            note.device_id.as_str(),
            note.author.as_str(),
            note.text.as_str()
        ),
        ("spo2", t(20), "manual", "nurse", "probe slipped")
    );
    assert!((Utc::now() - note.created_at).num_seconds().abs() < 60);
    assert_eq!(
        s.add_reading_note("p2", "spo2", t(21), "manual", "nurse", "x")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.add_reading_note("p2", "spo2", t(20), "ox-1", "nurse", "x")
            .await
            .unwrap(),
        None
    );
    rejected(
        s.add_reading_note("p2", "spo2", t(20), "manual", "nurse", " ")
            .await,
        "empty",
    );
    let long = "x".repeat(2001);
    let m = rejected(
        s.add_reading_note("p2", "spo2", t(20), "manual", "nurse", &long)
            .await,
        "too long",
    );
    assert_eq!(m, "a note is at most 2000 characters");
    let second = s
        .add_reading_note("p2", "heart_rate", t(20), "manual", "nurse", "irregular")
        .await
        .unwrap()
        .unwrap();
    let notes = s.reading_notes("p2", t(0), t(30)).await.unwrap();
    assert_eq!(notes, vec![note.clone(), second]);
    assert!(s
        .reading_notes("p2", t(21), t(30))
        .await
        .unwrap()
        .is_empty());
    assert!(s.reading_notes("p2", t(0), t(20)).await.unwrap().is_empty());
    assert!(s.reading_notes("p1", t(0), t(30)).await.unwrap().is_empty());
}

/// A migrated store on a fresh database; the database lives (and is
/// dropped) with the returned guard.
async fn pg(tag: &str) -> (Db, PgStore) {
    let db = Db::create(tag).await;
    let store = PgStore::connect(&db.url, 4).await.unwrap();
    store.migrate().await.unwrap();
    (db, store)
}

async fn sqlite() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("wardwatch.db"))
        .await
        .unwrap();
    (dir, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_the_rules_contract() {
    let (_db, store) = pg("rules").await;
    rules_check(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_the_rules_contract() {
    let (_dir, store) = sqlite().await;
    rules_check(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_the_records_contract() {
    let (_db, store) = pg("records").await;
    records_check(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_the_records_contract() {
    let (_dir, store) = sqlite().await;
    records_check(&store).await;
}

/// Every patient's personal limits reach them, whatever order the
/// database sorts ids in (an `en-US` collation puts `alice` before `Bob`;
/// byte order does not).
async fn limits_check<S: Store + RulesStore + RecordStore>(s: &S) {
    let ids = ["alice", "Bob", "carol", "Dave", "p-2", "p1", "P3"];
    for id in ids {
        enrol(s, &pid(id), "ward-a", Some("general")).await.unwrap();
        s.set_limit(
            &pid(id),
            &limit("spo2", Some(88.0), Some(92.0)),
            "dr who",
            "COPD",
        )
        .await
        .unwrap();
    }
    let rows = s.patient_rows(PatientFilter::All).await.unwrap();
    for id in ids {
        let row = rows.iter().find(|p| p.id == id).expect("enrolled");
        assert_eq!(
            row.limits,
            vec![limit("spo2", Some(88.0), Some(92.0))],
            "{id}'s limit"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_with_a_language_collation_gives_every_patient_their_limits() {
    let admin = sqlx::PgPool::connect(&pg_admin_url()).await.unwrap();
    let name = format!("ww_collation_{}", std::process::id());
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name}"
    )))
    .execute(&admin)
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' \
         LOCALE 'C.UTF-8'"
    )))
    .execute(&admin)
    .await
    .unwrap();
    let url = format!("{}/{name}", pg_admin_url().rsplit_once('/').unwrap().0);
    let store = PgStore::connect(&url, 2).await.unwrap();
    store.migrate().await.unwrap();
    limits_check(&store).await;
    store.pool().close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&admin)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_gives_every_patient_their_limits() {
    let (_dir, store) = sqlite().await;
    limits_check(&store).await;
}
