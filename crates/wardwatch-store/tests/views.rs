//! What the API reads, on both backends: the same checks run against
//! PostgreSQL and the embedded SQLite store through [`ViewStore`], covering
//! the patient view, readings (order, limit, vital filter, half-open range),
//! epoch-aligned buckets, the latest reading of each vital, the ward board's
//! patients and hourly trends, and the team report's figures (adherence,
//! alert counts, time to acknowledge, escalations). A third test runs both
//! on the same data and asserts they answer identically.
//!
//! Alerts, flags, their links and alert events have no trait method that
//! writes them as the report needs, and `created_at` is the database's own
//! clock, so those are written with small raw SQL statements both dialects
//! accept.

use std::collections::HashMap;

use chrono::{DateTime, Duration, NaiveDate, SecondsFormat, Timelike, Utc};
use wardwatch_core::{DeliveryTag, DeviceId, NhsNumber, PatientId, Reading, ReadingSource, Vital};
use wardwatch_store::records::Enrolment;
use wardwatch_store::reports::{AlertCount, TeamReport, TimeToAck};
use wardwatch_store::rules::Setting;
use wardwatch_store::sqlite::SqliteStore;
use wardwatch_store::testing::{enrol, FreshPg as Db, Raw};
use wardwatch_store::views::{
    BucketRow, HourlyMean, PatientView, ReadingKey, ReadingRow, TeamPatient,
};
use wardwatch_store::{
    IngestMessage, PgStore, RecordStore, RulesStore, Store, StoreError, ViewStore,
};

/// A time as an SQL literal both backends read the same way (and as sqlx
/// binds it on SQLite).
fn lit(at: DateTime<Utc>) -> String {
    format!("'{}'", at.to_rfc3339_opts(SecondsFormat::AutoSi, false))
}

/// Sets a patient's `created_at` as the backend's own column default
/// writes it (the two defaults differ in shape).
trait CreatedAt: Raw {
    async fn created_at(&self, patient: &str, at: DateTime<Utc>);
}

impl CreatedAt for PgStore {
    async fn created_at(&self, patient: &str, at: DateTime<Utc>) {
        self.exec(format!(
            "UPDATE patients SET created_at = {} WHERE id = '{patient}'",
            lit(at)
        ))
        .await;
    }
}

impl CreatedAt for SqliteStore {
    async fn created_at(&self, patient: &str, at: DateTime<Utc>) {
        // The column default's shape: "Z", six fraction digits here.
        let text = at.format("%Y-%m-%dT%H:%M:%S%.6fZ");
        self.exec(format!(
            "UPDATE patients SET created_at = '{text}' WHERE id = '{patient}'"
        ))
        .await;
    }
}

/// The start of the hour three hours ago: every fixture reading is in the
/// past and within the last day (latest readings and trends use now).
fn base_now() -> DateTime<Utc> {
    let now = Utc::now();
    let hour = now
        .with_nanosecond(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_minute(0))
        .unwrap();
    hour - Duration::hours(3)
}

fn reading(device: &str, vital: Vital, at: DateTime<Utc>, value: f64) -> Reading {
    Reading {
        device_id: DeviceId::new(device).unwrap(),
        vital,
        time: at,
        value,
        received_at: at + Duration::seconds(1),
        source: ReadingSource::Senml,
        source_name: None,
        update_interval_secs: None,
    }
}

fn manual(r: Reading) -> Reading {
    Reading {
        source: ReadingSource::Manual,
        ..r
    }
}

fn message(key: u8, device: &str, readings: Vec<Reading>) -> IngestMessage {
    IngestMessage {
        tag: DeliveryTag {
            epoch: 1,
            seq: u64::from(key),
        },
        topic: format!("wardwatch/v1/devices/{device}/readings"),
        device_id: Some(device.into()),
        key: [key; 16],
        received_at: readings[0].received_at,
        readings,
        rejections: vec![],
        relative_anchor: None,
        redelivered: false,
    }
}

fn pid(s: &str) -> PatientId {
    PatientId::new(s).unwrap()
}

fn did(s: &str) -> DeviceId {
    DeviceId::new(s).unwrap()
}

fn dob() -> NaiveDate {
    NaiveDate::from_ymd_opt(1950, 1, 2).unwrap()
}

fn row(vital: &str, time: DateTime<Utc>, value: f64, device: &str, source: &str) -> ReadingRow {
    ReadingRow {
        vital: vital.into(),
        time,
        value,
        device_id: device.into(),
        source: source.into(),
    }
}

fn bucket(start: DateTime<Utc>, count: i64, min: f64, max: f64, avg: f64) -> BucketRow {
    BucketRow {
        start,
        count,
        min,
        max,
        avg,
    }
}

/// Epoch-aligned bucket start (date_bin from 1970-01-01), computed here.
fn epoch_bucket(t: DateTime<Utc>, width: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp().div_euclid(width) * width, 0).unwrap()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Patients, devices, readings, alerts, flags and escalations, relative to `b`.
async fn setup<S: Store + RulesStore + RecordStore + CreatedAt>(s: &S, b: DateTime<Utc>) {
    let m = Duration::minutes;
    // pa: COPD, scale 2, on oxygen, two devices now (a third returned).
    s.enrol_patient(
        &Enrolment {
            id: pid("pa"),
            team: "ward-a".into(),
            pathway: "copd".into(),
            nhs_number: Some(NhsNumber::parse("9434765919").unwrap()),
            date_of_birth: Some(dob()),
        },
        "nurse-1",
    )
    .await
    .unwrap();
    s.set_patient(
        &pid("pa"),
        Setting::CarePlanOxygen(true),
        "dr-1",
        "home oxygen",
    )
    .await
    .unwrap();
    s.set_patient(&pid("pa"), Setting::Spo2Scale(2), "dr-1", "hypercapnic")
        .await
        .unwrap();
    // pb: general, admitted and discharged inside the report's period.
    s.enrol_patient(
        &Enrolment {
            id: pid("pb"),
            team: "ward-a".into(),
            pathway: "general".into(),
            nhs_number: None,
            date_of_birth: Some(dob()),
        },
        "nurse-1",
    )
    .await
    .unwrap();
    // pc: another team, no date of birth.
    enrol(s, &pid("pc"), "ward-b", None).await.unwrap();
    // pd: created exactly at the report's end (outside it).
    enrol(s, &pid("pd"), "ward-a", None).await.unwrap();
    // pe: discharged exactly at the report's start (outside it).
    enrol(s, &pid("pe"), "ward-a", None).await.unwrap();

    s.assign_device(&did("old-1"), &pid("pa"), b - m(120))
        .await
        .unwrap();
    s.unassign_device(&did("old-1"), b - m(60)).await.unwrap();
    s.assign_device(&did("ox-a"), &pid("pa"), b - m(120))
        .await
        .unwrap();
    s.assign_device(&did("bp-a"), &pid("pa"), b - m(120))
        .await
        .unwrap();
    s.assign_device(&did("ox-b"), &pid("pb"), b + m(30))
        .await
        .unwrap();
    s.assign_device(&did("ox-c"), &pid("pc"), b - Duration::days(10))
        .await
        .unwrap();

    let out = s
        .write_batch(&[
            message(
                1,
                "ox-a",
                vec![
                    reading("ox-a", Vital::Spo2, b - m(90), 97.0),
                    reading("ox-a", Vital::Spo2, b, 95.0),
                    reading("ox-a", Vital::HeartRate, b, 80.0),
                    reading("ox-a", Vital::Spo2, b + m(10), 93.0),
                    manual(reading("ox-a", Vital::Spo2, b + m(20), 94.0)),
                    reading("ox-a", Vital::Spo2, b + m(70), 90.0),
                    reading("ox-a", Vital::HeartRate, b + m(70), 85.0),
                    reading("ox-a", Vital::Spo2, b + m(130), 88.0),
                ],
            ),
            message(
                2,
                "ox-b",
                vec![
                    reading(
                        "ox-b",
                        Vital::Spo2,
                        b + m(40) + Duration::milliseconds(250),
                        96.0,
                    ),
                    reading("ox-b", Vital::Spo2, b + m(160), 92.0),
                ],
            ),
            message(
                3,
                "ox-c",
                vec![reading("ox-c", Vital::Spo2, b - Duration::days(8), 99.0)],
            ),
        ])
        .await
        .unwrap();
    assert_eq!(out.readings_inserted, 11);

    // The report covers [b - 1h, b + 3h).
    s.created_at("pa", b - m(120)).await;
    s.created_at("pb", b + m(30) + Duration::microseconds(123_456))
        .await;
    s.created_at("pc", b - m(60)).await;
    s.created_at("pd", b + m(180)).await;
    s.created_at("pe", b - m(300)).await;
    s.set_patient(
        &pid("pb"),
        Setting::Discharged(b + m(150)),
        "dr-1",
        "recovered",
    )
    .await
    .unwrap();
    s.set_patient(
        &pid("pe"),
        Setting::Discharged(b - m(60)),
        "dr-1",
        "recovered",
    )
    .await
    .unwrap();

    // Flags: news2 twice and a threshold on pa (cleared), pa's device
    // silent (open), news2 on pb (cleared).
    let flag = |patient: &str, rule: &str, technical: bool, open: bool| {
        format!(
            "INSERT INTO flags (patient_id, rule, technical, severity, raised_at, updated_at, \
               cleared_at, summary, evidence) \
             VALUES ('{patient}', '{rule}', {technical}, 'high', {at}, {at}, {cleared}, 's', '{{}}') \
             RETURNING id",
            at = lit(b),
            cleared = if open { "NULL".into() } else { lit(b + m(1)) },
        )
    };
    let f1 = s.int(flag("pa", "news2", false, false)).await;
    let f2 = s.int(flag("pa", "threshold:spo2:0", false, false)).await;
    let f3 = s.int(flag("pa", "no_data", true, true)).await;
    let f4 = s.int(flag("pb", "news2", false, false)).await;
    let f5 = s.int(flag("pa", "news2", false, false)).await;
    let fc = s.int(flag("pc", "news2", false, false)).await;
    // A device's own silence, by its id.
    s.int(flag("pa", "no_data:ox-7", true, true)).await;

    // Alerts: (patient, team, kind, severity, state, opened, wait to ack).
    let alert = |p: &str,
                 team: &str,
                 kind: &str,
                 sev: &str,
                 state: &str,
                 opened: DateTime<Utc>,
                 wait: Option<Duration>| {
        format!(
            "INSERT INTO alerts (patient_id, team_id, kind, severity, state, opened_at, \
               acknowledged_at, policy, tier, summary) \
             VALUES ('{p}', '{team}', '{kind}', '{sev}', '{state}', {}, {}, '{{}}', 0, 's') \
             RETURNING id",
            lit(opened),
            wait.map_or("NULL".into(), |w| lit(opened + w)),
        )
    };
    let secs = |s: i64| Some(Duration::seconds(s));
    let a1 = s
        .int(alert(
            "pa",
            "ward-a",
            "clinical",
            "high",
            "resolved",
            b,
            secs(60),
        ))
        .await;
    let a2 = s
        .int(alert(
            "pa",
            "ward-a",
            "clinical",
            "emergency",
            "resolved",
            b + m(10),
            Some(Duration::milliseconds(120_500)),
        ))
        .await;
    s.int(alert(
        "pa",
        "ward-a",
        "clinical",
        "medium",
        "resolved",
        b + m(20),
        Some(Duration::microseconds(30_000_125)),
    ))
    .await;
    let a4 = s
        .int(alert(
            "pa",
            "ward-a",
            "technical",
            "low",
            "open",
            b + m(30),
            None,
        ))
        .await;
    let a5 = s
        .int(alert(
            "pa",
            "ward-a",
            "clinical",
            "high",
            "acknowledged",
            b + m(40),
            secs(600),
        ))
        .await;
    let a6 = s
        .int(alert(
            "pb",
            "ward-a",
            "clinical",
            "medium",
            "resolved",
            b + m(50),
            secs(45),
        ))
        .await;
    // Outside the period, or another team's.
    s.int(alert(
        "pa",
        "ward-a",
        "clinical",
        "low",
        "resolved",
        b - m(120),
        secs(5),
    ))
    .await;
    s.int(alert(
        "pa",
        "ward-a",
        "delivery",
        "low",
        "resolved",
        b + m(180),
        secs(5),
    ))
    .await;
    let ac = s
        .int(alert(
            "pc",
            "ward-b",
            "clinical",
            "high",
            "resolved",
            b,
            secs(7),
        ))
        .await;
    for (a, f) in [
        (a1, f1),
        (a1, f2),
        (a2, f1),
        (a2, f5),
        (a4, f3),
        (a5, f2),
        (a6, f4),
        (ac, fc),
    ] {
        s.exec(format!(
            "INSERT INTO alert_flags (alert_id, flag_id, joined_at) VALUES ({a}, {f}, {})",
            lit(b)
        ))
        .await;
    }
    let event = |a: i64, kind: &str, tier: i32, from: i32, at: DateTime<Utc>| {
        format!(
            "INSERT INTO alert_events (alert_id, actor, kind, detail, at) \
             VALUES ({a}, 'escalator', '{kind}', '{{\"tier\": {tier}, \"from_tier\": {from}}}', {}) \
             RETURNING id",
            lit(at)
        )
    };
    s.int(event(a1, "escalated", 1, 0, b + m(5))).await;
    s.int(event(a1, "escalated", 2, 1, b + m(6))).await;
    s.int(event(a2, "escalated", 1, 1, b + m(11))).await; // a repeat round
    s.int(event(a2, "acknowledged", 2, 1, b + m(12))).await;
    s.int(event(a5, "escalated", 1, 0, b + m(180))).await; // at the end
    s.int(event(a6, "escalated", 1, 0, b + m(55))).await;
    s.int(event(ac, "escalated", 1, 0, b + m(5))).await; // another team
}

/// Everything the views answer for the fixture, checked against concrete
/// values; returned for the cross-backend comparison.
async fn check<S: Store + RulesStore + RecordStore + ViewStore + CreatedAt>(
    s: &S,
    b: DateTime<Utc>,
) -> String {
    setup(s, b).await;
    let m = Duration::minutes;
    let mut dump = String::new();

    // The patient view.
    let pa = s.patient_view("pa").await.unwrap();
    assert_eq!(
        pa,
        Some(PatientView {
            id: "pa".into(),
            team_id: "ward-a".into(),
            pathway: "copd".into(),
            spo2_scale: 2,
            discharged: false,
            nhs_number: Some("9434765919".into()),
            date_of_birth: Some(dob()),
            devices: strings(&["bp-a", "ox-a"]),
        })
    );
    let pb = s.patient_view("pb").await.unwrap().unwrap();
    assert!(pb.discharged);
    assert_eq!(
        (pb.nhs_number.as_deref(), pb.devices.clone()),
        (None, strings(&["ox-b"]))
    );
    let pc = s.patient_view("pc").await.unwrap().unwrap();
    assert_eq!(
        (
            pc.team_id.as_str(),
            pc.pathway.as_str(),
            pc.spo2_scale,
            pc.date_of_birth
        ),
        ("ward-b", "general", 1, None)
    );
    let pd = s.patient_view("pd").await.unwrap().unwrap();
    assert!(pd.devices.is_empty());
    assert_eq!(s.patient_view("nobody").await.unwrap(), None);
    dump += &format!("{pa:?}\n{pb:?}\n{pc:?}\n{pd:?}\n");

    // Readings: time then vital, manual ones included, half-open range.
    let all = s
        .readings_of("pa", None, b - m(60), b + m(180), 100)
        .await
        .unwrap();
    assert_eq!(
        all,
        vec![
            row("heart_rate", b, 80.0, "ox-a", "senml"),
            row("spo2", b, 95.0, "ox-a", "senml"),
            row("spo2", b + m(10), 93.0, "ox-a", "senml"),
            row("spo2", b + m(20), 94.0, "ox-a", "manual"),
            row("heart_rate", b + m(70), 85.0, "ox-a", "senml"),
            row("spo2", b + m(70), 90.0, "ox-a", "senml"),
            row("spo2", b + m(130), 88.0, "ox-a", "senml"),
        ]
    );
    // Pages of two after a cursor are the same rows, none twice (two rows
    // share a time: the cursor tells them apart by vital).
    let mut paged = Vec::new();
    let mut after: Option<ReadingKey> = None;
    loop {
        let page = s
            .readings_page("pa", None, b - m(60), b + m(180), after.as_ref(), 2)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(ReadingKey {
            time: last.time,
            vital: last.vital.clone(),
            device_id: last.device_id.clone(),
        });
        paged.extend(page);
    }
    assert_eq!(paged, all);
    let spo2 = s
        .readings_of("pa", Some("spo2"), b - m(120), b + m(180), 2)
        .await
        .unwrap();
    assert_eq!(
        spo2,
        vec![
            row("spo2", b - m(90), 97.0, "ox-a", "senml"),
            row("spo2", b, 95.0, "ox-a", "senml"),
        ]
    );
    let window = s
        .readings_of("pa", None, b + m(10), b + m(70), 100)
        .await
        .unwrap();
    assert_eq!(
        window.iter().map(|r| r.time).collect::<Vec<_>>(),
        vec![b + m(10), b + m(20)]
    );
    let pb_rows = s.readings_of("pb", None, b, b + m(60), 10).await.unwrap();
    assert_eq!(pb_rows.len(), 1);
    assert_eq!(pb_rows[0].time, b + m(40) + Duration::milliseconds(250));
    assert!(s
        .readings_of("nobody", None, b - m(600), b + m(600), 10)
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        s.readings_of("pa", None, b, b + m(60), -1).await,
        Err(StoreError::Database(_))
    ));
    dump += &format!("{all:?}\n{spo2:?}\n{window:?}\n{pb_rows:?}\n");

    // Buckets: hourly, and a width that does not divide an hour (aligned
    // to the epoch, not to `from`).
    let hourly = s
        .reading_buckets("pa", "spo2", b - m(60), b + m(180), 3600)
        .await
        .unwrap();
    assert_eq!(
        hourly,
        vec![
            bucket(b, 3, 93.0, 95.0, 94.0),
            bucket(b + m(60), 1, 90.0, 90.0, 90.0),
            bucket(b + m(120), 1, 88.0, 88.0, 88.0),
        ]
    );
    let odd = s
        .reading_buckets("pa", "spo2", b - m(120), b + m(180), 7000)
        .await
        .unwrap();
    let mut expected: Vec<BucketRow> = Vec::new();
    for (t, v) in [
        (b - m(90), 97.0),
        (b, 95.0),
        (b + m(10), 93.0),
        (b + m(20), 94.0),
        (b + m(70), 90.0),
        (b + m(130), 88.0),
    ] {
        let start = epoch_bucket(t, 7000);
        match expected.last_mut() {
            Some(e) if e.start == start => {
                e.avg = (e.avg * e.count as f64 + v) / (e.count + 1) as f64;
                e.count += 1;
                e.min = e.min.min(v);
                e.max = e.max.max(v);
            }
            _ => expected.push(bucket(start, 1, v, v, v)),
        }
    }
    assert_eq!(odd.len(), expected.len());
    for (got, want) in odd.iter().zip(&expected) {
        assert_eq!(
            (got.start, got.count, got.min, got.max),
            (want.start, want.count, want.min, want.max)
        );
        assert!((got.avg - want.avg).abs() < 1e-9, "{got:?} vs {want:?}");
    }
    assert!(matches!(
        s.reading_buckets("pa", "spo2", b, b + m(60), 0).await,
        Err(StoreError::Database(_))
    ));
    dump += &format!("{hourly:?}\n{odd:?}\n");

    // Latest reading of each vital over the last week.
    let latest = s
        .latest_readings(&strings(&["pa", "pb", "pc"]))
        .await
        .unwrap();
    assert_eq!(
        latest
            .iter()
            .map(|r| (r.patient_id.clone(), r.vital.clone(), r.value, r.time))
            .collect::<Vec<_>>(),
        vec![
            ("pa".to_string(), "heart_rate".to_string(), 85.0, b + m(70)),
            ("pa".to_string(), "spo2".to_string(), 88.0, b + m(130)),
            ("pb".to_string(), "spo2".to_string(), 92.0, b + m(160)),
        ]
    );
    assert!(s.latest_readings(&[]).await.unwrap().is_empty());
    dump += &format!("{latest:?}\n");

    // Monitored patients of teams (discharged ones left out).
    let mut ids = s
        .patients_of_teams(&strings(&["ward-a", "ward-b"]))
        .await
        .unwrap();
    ids.sort();
    assert_eq!(ids, strings(&["pa", "pc", "pd"]));
    assert_eq!(
        s.patients_of_teams(&strings(&["ward-b"])).await.unwrap(),
        strings(&["pc"])
    );
    assert!(s.patients_of_teams(&[]).await.unwrap().is_empty());
    dump += &format!("{ids:?}\n");

    // The board: the most urgent open alert, and a silent device.
    let board = s.team_patients("ward-a").await.unwrap();
    assert_eq!(
        board,
        vec![
            TeamPatient {
                id: "pa".into(),
                pathway: "copd".into(),
                spo2_scale: 2,
                care_plan_oxygen: true,
                alert_severity: Some("high".into()),
                silent: true,
                silent_devices: vec!["ox-7".into()],
            },
            TeamPatient {
                id: "pd".into(),
                pathway: "general".into(),
                spo2_scale: 1,
                care_plan_oxygen: false,
                alert_severity: None,
                silent: false,
                silent_devices: vec![],
            },
        ]
    );
    assert!(s.team_patients("ward-z").await.unwrap().is_empty());
    dump += &format!("{board:?}\n");

    // Hourly means over the last day.
    let trends = s
        .hourly_trends(&strings(&["pa", "pb", "pc"]), &["spo2", "heart_rate"])
        .await
        .unwrap();
    let tr = |p: &str, v: &str, h: DateTime<Utc>, x: f64| HourlyMean {
        patient_id: p.to_string(),
        vital: v.to_string(),
        hour: h,
        mean: x,
    };
    assert_eq!(
        trends,
        vec![
            tr("pa", "heart_rate", b, 80.0),
            tr("pa", "heart_rate", b + m(60), 85.0),
            tr("pa", "spo2", b - m(120), 97.0),
            tr("pa", "spo2", b, 94.0),
            tr("pa", "spo2", b + m(60), 90.0),
            tr("pa", "spo2", b + m(120), 88.0),
            tr("pb", "spo2", b, 96.0),
            tr("pb", "spo2", b + m(120), 92.0),
        ]
    );
    let only_hr = s
        .hourly_trends(&strings(&["pa"]), &["heart_rate"])
        .await
        .unwrap();
    assert_eq!(only_hr.len(), 2);
    dump += &format!("{trends:?}\n");

    // The team report over [b - 1h, b + 3h).
    let cadence: HashMap<String, u32> = [("copd".to_string(), 60), ("general".to_string(), 0)]
        .into_iter()
        .collect();
    let report = s
        .team_report("ward-a", b - m(60), b + m(180), &cadence)
        .await
        .unwrap();
    let pb_secs = 7199.876544;
    assert_eq!(
        report
            .adherence
            .iter()
            .map(|a| (
                a.patient_id.as_str(),
                a.pathway.as_str(),
                a.monitored_hours,
                a.received,
                a.expected
            ))
            .collect::<Vec<_>>(),
        vec![
            ("pa", "copd", 4.0, 4, Some(4)),
            ("pb", "general", pb_secs / 3600.0, 1, None),
        ]
    );
    assert_eq!(report.patient_days, (14_400.0 + pb_secs) / 86_400.0);
    let count = |kind: &str, rule: &str, severity: &str, count: i64| AlertCount {
        kind: kind.into(),
        rule: rule.into(),
        severity: severity.into(),
        count,
    };
    assert_eq!(
        report.alerts,
        vec![
            count("clinical", "news2", "emergency", 1),
            count("clinical", "news2", "high", 1),
            count("clinical", "news2", "medium", 1),
            count("clinical", "threshold:spo2:0", "high", 2),
            count("technical", "no_data", "low", 1),
        ]
    );
    assert_eq!(report.alerts_opened, 6);
    // Waits: 30.000125, 45, 60, 120.5, 600 s; p90 interpolates at 3.6.
    assert_eq!(
        report.time_to_ack,
        TimeToAck {
            acknowledged: 5,
            unacknowledged: 1,
            p50_secs: Some(60.0),
            p90_secs: Some(120.5 + (600.0 - 120.5) * (0.9 * 4.0 - 3.0)),
            max_secs: Some(600.0),
        }
    );
    assert!((report.time_to_ack.p90_secs.unwrap() - 408.2).abs() < 1e-9);
    assert_eq!((report.escalations, report.alerts_escalated), (3, 2));

    // A period with nothing in it, and a team with nobody.
    let empty = s
        .team_report("ward-a", b - m(600), b - m(590), &cadence)
        .await
        .unwrap();
    assert_eq!(
        empty,
        TeamReport {
            adherence: vec![],
            patient_days: 0.0,
            alerts: vec![],
            alerts_opened: 0,
            time_to_ack: TimeToAck::default(),
            escalations: 0,
            alerts_escalated: 0,
        }
    );
    // A period running into the future is clipped at now.
    let open = s
        .team_report("ward-b", b, b + Duration::days(1), &cadence)
        .await
        .unwrap();
    assert_eq!(open.adherence.len(), 1);
    let hours = open.adherence[0].monitored_hours;
    assert!((3.0..4.0).contains(&hours), "{hours}");
    assert_eq!(open.time_to_ack.p50_secs, Some(7.0));
    dump += &format!("{report:?}\n{empty:?}\n");
    dump
}

async fn postgres() -> (Db, PgStore) {
    let db = Db::create("views").await;
    let store = PgStore::connect(&db.url, 4).await.unwrap();
    store.migrate().await.unwrap();
    (db, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_answers_the_views() {
    let (_db, store) = postgres().await;
    check(&store, base_now()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_answers_the_views() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("wardwatch.db"))
        .await
        .unwrap();
    check(&store, base_now()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_backends_answer_alike() {
    let b = base_now();
    let (_db, pg) = postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let lite = SqliteStore::open(&dir.path().join("wardwatch.db"))
        .await
        .unwrap();
    let on_pg = check(&pg, b).await;
    let on_sqlite = check(&lite, b).await;
    for (p, l) in on_pg.lines().zip(on_sqlite.lines()) {
        assert_eq!(p, l);
    }
    assert_eq!(on_pg, on_sqlite);
}
