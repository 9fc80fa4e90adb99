//! One conformance suite, two backends: the same checks of the store
//! contract run against PostgreSQL and the embedded SQLite store, so a
//! deployment that moves between them keeps every guarantee. Covered so far:
//! readings (attribution by assignment, half-open hand-over, idempotent
//! redelivery), quarantine (reasons, counting rule), relative-time anchors,
//! patients and device assignments; users, tokens and the audit trail.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use wardwatch_core::{
    DeliveryTag, DeviceId, PatientId, QuarantineReason, Reading, ReadingSource, Rejection, Vital,
};
use wardwatch_store::access::AuditEntry;
use wardwatch_store::sqlite::SqliteStore;
use wardwatch_store::testing::{enrol, FreshPg as Db};
use wardwatch_store::{
    AccessStore, IngestMessage, MaintenanceStore, PgStore, RecordStore, RulesStore, Store,
    StoreError,
};

fn t(mins: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap() + Duration::minutes(mins)
}

fn reading(device: &str, vital: Vital, at: DateTime<Utc>, value: f64) -> Reading {
    Reading {
        device_id: DeviceId::new(device).unwrap(),
        vital,
        time: at,
        value,
        received_at: t(100),
        source: ReadingSource::Senml,
        source_name: Some(format!("urn:dev:{device}")),
        update_interval_secs: None,
    }
}

fn message(
    key: u8,
    device: &str,
    readings: Vec<Reading>,
    rejections: Vec<Rejection>,
) -> IngestMessage {
    IngestMessage {
        tag: DeliveryTag {
            epoch: 1,
            seq: u64::from(key),
        },
        topic: format!("wardwatch/v1/devices/{device}/readings"),
        device_id: Some(device.into()),
        key: [key; 16],
        received_at: t(100),
        readings,
        rejections,
        relative_anchor: None,
        redelivered: false,
    }
}

fn counts(pairs: &[(QuarantineReason, u64)]) -> BTreeMap<QuarantineReason, u64> {
    pairs.iter().copied().collect()
}

fn rejected<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
    assert!(matches!(r, Err(StoreError::Rejected(_))), "{what}: {r:?}");
}

async fn conformance<S: Store + RulesStore + RecordStore>(s: &S) {
    let (p1, p2) = (PatientId::new("p1").unwrap(), PatientId::new("p2").unwrap());
    let d1 = DeviceId::new("ox-1").unwrap();
    enrol(s, &p1, "ward-a", None).await.unwrap();
    enrol(s, &p2, "ward-b", None).await.unwrap();
    rejected(enrol(s, &p1, " ", None).await, "an empty team");
    rejected(
        s.assign_device(&d1, &PatientId::new("nobody").unwrap(), t(0))
            .await,
        "an unknown patient",
    );
    // ox-1: p1 from t0, handed to p2 at t20.
    s.assign_device(&d1, &p1, t(0)).await.unwrap();
    s.assign_device(&d1, &p2, t(20)).await.unwrap();
    rejected(s.assign_device(&d1, &p1, t(10)).await, "rewriting history");

    // Attribution: before t0 nobody; t10 p1; the hand-over instant p2.
    let first = message(
        1,
        "ox-1",
        vec![
            reading("ox-1", Vital::Spo2, t(10), 96.0),
            reading("ox-1", Vital::Spo2, t(20), 95.0),
            reading("ox-1", Vital::Spo2, t(-5), 97.0),
        ],
        vec![Rejection::record(
            QuarantineReason::BadUnit,
            "unit",
            3,
            "{}",
        )],
    );
    let unknown = message(
        2,
        "zz-9",
        vec![reading("zz-9", Vital::HeartRate, t(10), 70.0)],
        vec![],
    );
    let out = s
        .write_batch(&[first.clone(), unknown.clone()])
        .await
        .unwrap();
    assert_eq!((out.readings_inserted, out.readings_duplicate), (2, 0));
    let owners: Vec<(&str, f64)> = out
        .new_readings
        .iter()
        .map(|r| (r.patient_id.as_str(), r.value))
        .collect();
    assert_eq!(owners, vec![("p1", 96.0), ("p2", 95.0)]);
    assert_eq!(
        out.quarantined,
        counts(&[
            (QuarantineReason::BadUnit, 1),
            (QuarantineReason::UnknownDevice, 1),
            (QuarantineReason::UnassignedDevice, 1),
        ])
    );

    // A broker redelivery: nothing new, nothing counted twice.
    let mut again = first.clone();
    again.redelivered = true;
    let out = s.write_batch(&[again]).await.unwrap();
    assert_eq!((out.readings_inserted, out.readings_duplicate), (0, 2));
    assert!(out.new_readings.is_empty());
    assert!(out.quarantined.is_empty(), "{:?}", out.quarantined);
    // A device sending the same bad payload again (not a redelivery) still counts.
    let out = s.write_batch(std::slice::from_ref(&first)).await.unwrap();
    assert_eq!(out.readings_inserted, 0);
    assert_eq!(
        out.quarantined,
        counts(&[
            (QuarantineReason::BadUnit, 1),
            (QuarantineReason::UnassignedDevice, 1),
        ])
    );
    // The same message twice in one batch: one row, two receipts counted.
    let twice = message(
        3,
        "ox-1",
        vec![reading("ox-1", Vital::HeartRate, t(30), 80.0)],
        vec![Rejection::record(QuarantineReason::Malformed, "x", 1, "{}")],
    );
    let out = s.write_batch(&[twice.clone(), twice]).await.unwrap();
    assert_eq!((out.readings_inserted, out.readings_duplicate), (1, 1));
    assert_eq!(out.quarantined, counts(&[(QuarantineReason::Malformed, 2)]));

    // Relative-time anchors survive for redeliveries.
    let mut anchored = message(4, "ox-1", vec![], vec![]);
    anchored.relative_anchor = Some(t(99));
    s.write_batch(&[anchored]).await.unwrap();
    assert_eq!(s.relative_anchor(&[4; 16]).await.unwrap(), Some(t(99)));
    assert_eq!(s.relative_anchor(&[5; 16]).await.unwrap(), None);

    // Return: not before the loan began; afterwards readings belong to nobody.
    rejected(
        s.unassign_device(&d1, t(20)).await,
        "returned before it was lent",
    );
    s.unassign_device(&d1, t(40)).await.unwrap();
    rejected(s.unassign_device(&d1, t(50)).await, "returned twice");
    let late = message(
        6,
        "ox-1",
        vec![
            reading("ox-1", Vital::Spo2, t(39), 94.0),
            reading("ox-1", Vital::Spo2, t(40), 93.0),
        ],
        vec![],
    );
    let out = s.write_batch(&[late]).await.unwrap();
    assert_eq!(out.readings_inserted, 1);
    assert_eq!(out.new_readings[0].patient_id, "p2");
    assert_eq!(
        out.quarantined,
        counts(&[(QuarantineReason::UnassignedDevice, 1)])
    );
}

/// Quarantine expiry: rows last seen before the cutoff go, in bounded
/// slices; the rest stay.
async fn maintenance_conformance<S: MaintenanceStore>(s: &S, quarantined: i64) {
    assert!(quarantined > 2, "the conformance run quarantined rows");
    assert_eq!(s.purge_quarantine(t(-24 * 60), 1000).await.unwrap(), 0);
    let later = Utc::now() + Duration::days(1);
    assert_eq!(s.purge_quarantine(later, 2).await.unwrap(), 2);
    assert_eq!(
        s.purge_quarantine(later, 1000).await.unwrap(),
        u64::try_from(quarantined - 2).unwrap()
    );
    assert_eq!(s.purge_quarantine(later, 1000).await.unwrap(), 0);
}

async fn access_conformance<S: Store + AccessStore>(s: &S) {
    let now = t(0);
    let hash = |n: u8| vec![n; 32];
    rejected(
        s.upsert_user("u", "surgeon", None, &[]).await,
        "an unknown role",
    );
    rejected(
        s.upsert_user("u", "patient", None, &[]).await,
        "a patient account without its record",
    );
    rejected(
        s.upsert_user("u", "nurse", Some("p1"), &[]).await,
        "a nurse tied to one record",
    );
    s.upsert_user(
        "nurse-a",
        "nurse",
        None,
        &["ward-b".into(), "ward-a".into()],
    )
    .await
    .unwrap();
    s.upsert_user("pat-1", "patient", Some("p1"), &[])
        .await
        .unwrap();
    rejected(
        s.insert_token("nobody", &hash(9), now + Duration::days(1))
            .await,
        "a token for no one",
    );
    s.insert_token("nurse-a", &hash(1), now + Duration::days(1))
        .await
        .unwrap();
    s.insert_token("nurse-a", &hash(2), now - Duration::minutes(1))
        .await
        .unwrap();
    s.insert_token("pat-1", &hash(3), now + Duration::days(1))
        .await
        .unwrap();
    let who = s.authenticate(&hash(1), now).await.unwrap().unwrap();
    assert_eq!(
        (who.user_id.as_str(), who.role.as_str(), who.teams.clone()),
        (
            "nurse-a",
            "nurse",
            vec!["ward-a".to_string(), "ward-b".to_string()]
        )
    );
    assert_eq!(
        s.authenticate(&hash(2), now).await.unwrap(),
        None,
        "expired"
    );
    assert_eq!(
        s.authenticate(&hash(7), now).await.unwrap(),
        None,
        "unknown"
    );
    let me = s.authenticate(&hash(3), now).await.unwrap().unwrap();
    assert_eq!(me.patient_id.as_deref(), Some("p1"));
    // Teams are replaced, not added to.
    s.upsert_user("nurse-a", "nurse", None, &["ward-c".into()])
        .await
        .unwrap();
    let who = s.authenticate(&hash(1), now).await.unwrap().unwrap();
    assert_eq!(who.teams, vec!["ward-c".to_string()]);
    assert_eq!(s.revoke_tokens("nurse-a").await.unwrap(), 2);
    assert_eq!(
        s.authenticate(&hash(1), now).await.unwrap(),
        None,
        "revoked"
    );
    assert!(s.disable_user("pat-1").await.unwrap());
    assert!(!s.disable_user("pat-1").await.unwrap(), "already disabled");
    assert_eq!(
        s.authenticate(&hash(3), now).await.unwrap(),
        None,
        "disabled"
    );
    let users = s.users().await.unwrap();
    let listed: Vec<(&str, bool)> = users.iter().map(|u| (u.id.as_str(), u.disabled)).collect();
    assert_eq!(listed, vec![("nurse-a", false), ("pat-1", true)]);

    for (i, status) in [200, 404, 401].into_iter().enumerate() {
        s.audit(&AuditEntry {
            user_id: (status != 401).then(|| "nurse-a".to_string()),
            action: "GET".into(),
            resource: format!("/api/v1/patients/p{i}"),
            patient_id: (status == 200).then(|| "p1".to_string()),
            status,
            client: Some("127.0.0.1".into()),
            detail: serde_json::json!({"n": i}),
        })
        .await
        .unwrap();
    }
    let newest = s.audit_entries(2).await.unwrap();
    let seen: Vec<(i32, serde_json::Value)> = newest
        .iter()
        .map(|r| (r.entry.status, r.entry.detail.clone()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (401, serde_json::json!({"n": 2})),
            (404, serde_json::json!({"n": 1}))
        ]
    );
    assert!(newest[0].id > newest[1].id && newest[0].at >= newest[1].at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_the_store_contract() {
    let db = Db::create("conformance").await;
    let store = PgStore::connect(&db.url, 4).await.unwrap();
    store.migrate().await.unwrap();
    conformance(&store).await;
    let quarantined: i64 = sqlx::query_scalar("SELECT count(*) FROM quarantine")
        .fetch_one(store.pool())
        .await
        .unwrap();
    maintenance_conformance(&store, quarantined).await;
    access_conformance(&store).await;
    // The audit trails are append-only: the database itself refuses changes.
    for sql in [
        "UPDATE audit_log SET status = 200",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
        "TRUNCATE alert_events",
        "TRUNCATE patient_settings_audit",
    ] {
        let changed = sqlx::query(sql).execute(store.pool()).await;
        assert!(
            changed
                .as_ref()
                .is_err_and(|e| e.to_string().contains("append-only")),
            "{sql}: {changed:?}"
        );
    }
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(kept > 0, "the conformance run wrote audit entries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_the_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data").join("wardwatch.db");
    let store = SqliteStore::open(&path).await.unwrap();
    conformance(&store).await;
    let quarantined: i64 = sqlx::query_scalar("SELECT count(*) FROM quarantine")
        .fetch_one(store.pool())
        .await
        .unwrap();
    maintenance_conformance(&store, quarantined).await;
    access_conformance(&store).await;
    // The audit trail is append-only: the database itself refuses changes.
    let changed = sqlx::query("UPDATE audit_log SET status = 200")
        .execute(store.pool())
        .await;
    assert!(changed.is_err(), "{changed:?}");
    // WAL mode, so readers never block the writer.
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    // Reopening keeps the data and does not re-run migrations.
    drop(store);
    let again = SqliteStore::open(&path).await.unwrap();
    assert_eq!(
        again
            .relative_anchor(&[4; 16])
            .await
            .unwrap()
            .map(|a| a.timestamp()),
        Some(t(99).timestamp())
    );
}
