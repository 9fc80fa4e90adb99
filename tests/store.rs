//! The PostgreSQL store against a real database: both bulk methods, idempotency,
//! attribution and admin rules.

mod common;

use chrono::{Duration, TimeZone, Utc};
use common::Db;
use wardwatch_core::{
    DeliveryTag, DeviceId, PatientId, QuarantineReason, Reading, ReadingSource, Rejection, Vital,
};
use wardwatch_store::{IngestMessage, PgStore, Store, WriteMethod};

async fn store(db: &Db, method: WriteMethod) -> PgStore {
    let s = PgStore::connect(&db.url, 4)
        .await
        .unwrap()
        .with_write_method(method);
    s.migrate().await.unwrap();
    s
}

fn message(seq: u64, device: &str, n: usize, base: chrono::DateTime<Utc>) -> IngestMessage {
    let readings = (0..n)
        .map(|i| Reading {
            device_id: DeviceId::new(device).unwrap(),
            vital: Vital::HeartRate,
            time: base + Duration::seconds(i as i64),
            value: 60.0 + i as f64,
            received_at: base,
            source: ReadingSource::Senml,
            source_name: Some(format!("urn:dev:test:{device}:\ttab")),
        })
        .collect();
    IngestMessage {
        tag: DeliveryTag { epoch: 1, seq },
        topic: format!("wardwatch/v1/devices/{device}/readings"),
        device_id: Some(device.into()),
        key: [seq as u8; 16],
        received_at: base,
        readings,
        rejections: vec![Rejection::record(
            QuarantineReason::BadUnit,
            "unit \"x\" is not accepted",
            n,
            "{\"n\":\"spo2\",\"u\":\"x\"}",
        )],
        relative_anchor: Some(base),
    }
}

async fn both_methods_write_once_and_only_once(method: WriteMethod) {
    let db = Db::create("store").await;
    let s = store(&db, method).await;
    let base = Utc.with_ymd_and_hms(2026, 11, 1, 8, 0, 0).unwrap();
    s.upsert_patient(&PatientId::new("p1").unwrap(), "ward")
        .await
        .unwrap();
    s.assign_device(
        &DeviceId::new("d1").unwrap(),
        &PatientId::new("p1").unwrap(),
        base - Duration::days(1),
    )
    .await
    .unwrap();
    let batch = vec![
        message(1, "d1", 500, base),
        message(2, "d-unknown", 3, base),
    ];
    let first = s.write_batch(&batch).await.unwrap();
    assert_eq!(first.readings_inserted, 500);
    assert_eq!(first.readings_duplicate, 0);
    assert_eq!(first.quarantined.get(&QuarantineReason::BadUnit), Some(&2));
    assert_eq!(
        first.quarantined.get(&QuarantineReason::UnknownDevice),
        Some(&3)
    );

    let again = s.write_batch(&batch).await.unwrap();
    assert_eq!(again.readings_inserted, 0);
    assert_eq!(again.readings_duplicate, 500);
    assert!(again.quarantined.is_empty(), "{:?}", again.quarantined);

    assert_eq!(db.count("SELECT count(*) FROM readings").await, 500);
    assert_eq!(db.count("SELECT count(*) FROM quarantine").await, 5);
    assert_eq!(
        db.count("SELECT min(times_seen)::int8 FROM quarantine")
            .await,
        2
    );
    assert_eq!(db.count("SELECT count(*) FROM device_names").await, 1);
    assert_eq!(
        s.relative_anchor(&[1u8; 16]).await.unwrap(),
        Some(base),
        "anchors are kept for redeliveries"
    );
    let sum: f64 = sqlx::query_scalar("SELECT sum(value) FROM readings")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(sum, (0..500).map(|i| 60.0 + i as f64).sum::<f64>());
}

#[tokio::test]
async fn unnest_writes_once_and_only_once() {
    both_methods_write_once_and_only_once(WriteMethod::Unnest).await;
}

#[tokio::test]
async fn copy_writes_once_and_only_once() {
    both_methods_write_once_and_only_once(WriteMethod::Copy).await;
}

#[tokio::test]
async fn unassigning_needs_an_open_assignment_and_a_later_time() {
    let db = Db::create("admin").await;
    let s = store(&db, WriteMethod::Unnest).await;
    let (d, p) = (DeviceId::new("d9").unwrap(), PatientId::new("p9").unwrap());
    let t = Utc.with_ymd_and_hms(2026, 11, 1, 8, 0, 0).unwrap();
    assert!(s.unassign_device(&d, t).await.is_err());
    assert!(s.upsert_patient(&p, " ").await.is_err(), "empty team");
    s.upsert_patient(&p, "ward").await.unwrap();
    s.assign_device(&d, &p, t).await.unwrap();
    let e = s.unassign_device(&d, t).await.unwrap_err();
    assert!(e.to_string().contains("cannot be returned"), "{e}");
    s.unassign_device(&d, t + Duration::hours(1)).await.unwrap();
    assert!(s.unassign_device(&d, t + Duration::hours(2)).await.is_err());
    // A new loan may start after the return.
    s.assign_device(&d, &p, t + Duration::hours(3))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_retention_sweep_deletes_only_old_readings() {
    let db = Db::create("retention").await;
    let s = store(&db, WriteMethod::Unnest).await;
    let base = Utc::now() - Duration::days(10);
    s.upsert_patient(&PatientId::new("p1").unwrap(), "ward")
        .await
        .unwrap();
    s.assign_device(
        &DeviceId::new("d1").unwrap(),
        &PatientId::new("p1").unwrap(),
        base - Duration::days(1),
    )
    .await
    .unwrap();
    s.write_batch(&[message(1, "d1", 100, base)]).await.unwrap();
    let cutoff = base + Duration::seconds(40);
    let mut deleted = 0;
    loop {
        let n = s.sweep_retention(cutoff, 15).await.unwrap();
        if n == 0 {
            break;
        }
        deleted += n;
    }
    assert_eq!(deleted, 40);
    assert_eq!(db.count("SELECT count(*) FROM readings").await, 60);
}
