//! The PostgreSQL store against a real database: both bulk methods, idempotency,
//! attribution and admin rules.

mod common;

use chrono::{Duration, TimeZone, Utc};
use common::Db;
use wardwatch_core::{
    DeliveryTag, DeviceId, PatientId, QuarantineReason, Reading, ReadingSource, Rejection, Vital,
};
use wardwatch_store::testing::enrol;
use wardwatch_store::{IngestMessage, PgStore, Store, WriteMethod};

/// Patient p1 on a ward, lent device d1 from `from`.
async fn enrol_p1_with_d1(s: &PgStore, from: chrono::DateTime<Utc>) {
    let p1 = PatientId::new("p1").unwrap();
    enrol(s, &p1, "ward", None).await.unwrap();
    s.assign_device(&DeviceId::new("d1").unwrap(), &p1, from)
        .await
        .unwrap();
}

/// A delivery of `payload` from device d1, as the session would hand it over.
fn d1_delivery(
    payload: &'static [u8],
    dup: bool,
    received_at: chrono::DateTime<Utc>,
) -> wardwatch_ingest::session::Delivery {
    wardwatch_ingest::session::Delivery {
        tag: DeliveryTag { epoch: 1, seq: 0 },
        pkid: Some(1),
        topic: "wardwatch/v1/devices/d1/readings".into(),
        payload: bytes::Bytes::from_static(payload),
        dup,
        retain: false,
        received_at,
        oversized: None,
    }
}

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
            update_interval_secs: None,
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
        redelivered: false,
    }
}

async fn both_methods_write_once_and_only_once(method: WriteMethod, guard: bool) {
    let db = Db::create("store").await;
    let s = store(&db, method).await.with_conflict_guard(guard);
    let base = Utc.with_ymd_and_hms(2026, 11, 1, 8, 0, 0).unwrap();
    enrol_p1_with_d1(&s, base - Duration::days(1)).await;
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

    // Broker redeliveries mixed with a new message: the new rows go in, the
    // old ones are skipped, whatever their order in the statement, and only
    // the new message's refusal is counted again.
    let redelivered: Vec<_> = batch
        .iter()
        .cloned()
        .map(|mut m| {
            m.redelivered = true;
            m
        })
        .collect();
    let mut mixed = redelivered.clone();
    mixed.insert(1, message(3, "d1", 4, base + Duration::hours(1)));
    let again = s.write_batch(&mixed).await.unwrap();
    assert_eq!(again.readings_inserted, 4);
    assert_eq!(again.readings_duplicate, 500);
    assert_eq!(again.quarantined.get(&QuarantineReason::BadUnit), Some(&1));
    let again = s.write_batch(&redelivered).await.unwrap();
    assert_eq!(again.readings_inserted, 0);
    assert_eq!(again.readings_duplicate, 500);
    assert!(again.quarantined.is_empty(), "{:?}", again.quarantined);
    // The device itself sending the same refused payload again is a new
    // event: counted, though it stays one row.
    let resent = s.write_batch(&batch[1..]).await.unwrap();
    assert_eq!(
        resent.quarantined.get(&QuarantineReason::UnknownDevice),
        Some(&3)
    );

    assert_eq!(db.count("SELECT count(*) FROM readings").await, 504);
    assert_eq!(db.count("SELECT count(*) FROM quarantine").await, 6);
    let seen = |agg: &str| format!("SELECT {agg}(times_seen)::int8 FROM quarantine");
    assert_eq!(db.count(&seen("min")).await, 1);
    assert_eq!(db.count(&seen("max")).await, 4);
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
    assert_eq!(
        sum,
        (0..500).map(|i| 60.0 + i as f64).sum::<f64>()
            + (0..4).map(|i| 60.0 + i as f64).sum::<f64>()
    );
}

#[tokio::test]
async fn unnest_writes_once_and_only_once() {
    both_methods_write_once_and_only_once(WriteMethod::Unnest, false).await;
}

#[tokio::test]
async fn copy_writes_once_and_only_once() {
    both_methods_write_once_and_only_once(WriteMethod::Copy, false).await;
}

/// The statements used on TimescaleDB before 2.18.1 (see `PgStore::conflict_guard`).
#[tokio::test]
async fn guarded_unnest_writes_once_and_only_once() {
    both_methods_write_once_and_only_once(WriteMethod::Unnest, true).await;
}

#[tokio::test]
async fn guarded_copy_writes_once_and_only_once() {
    both_methods_write_once_and_only_once(WriteMethod::Copy, true).await;
}

#[tokio::test]
async fn unassigning_needs_an_open_assignment_and_a_later_time() {
    let db = Db::create("admin").await;
    let s = store(&db, WriteMethod::Unnest).await;
    let (d, p) = (DeviceId::new("d9").unwrap(), PatientId::new("p9").unwrap());
    let t = Utc.with_ymd_and_hms(2026, 11, 1, 8, 0, 0).unwrap();
    assert!(s.unassign_device(&d, t).await.is_err());
    assert!(enrol(&s, &p, " ", None).await.is_err(), "empty team");
    enrol(&s, &p, "ward", None).await.unwrap();
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
    enrol_p1_with_d1(&s, base - Duration::days(1)).await;
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
    // The batch's relative-time anchor (at `base`) expires on its own clock.
    assert_eq!(
        s.purge_anchors(base - Duration::seconds(1)).await.unwrap(),
        0
    );
    assert_eq!(
        s.purge_anchors(base + Duration::seconds(1)).await.unwrap(),
        1
    );
}

/// A redelivered SenML pack with relative times must resolve to the same
/// instants as its first delivery, or the redelivery would add rows.
#[tokio::test]
async fn a_redelivered_relative_time_pack_resolves_to_its_first_receipt() {
    use wardwatch_engine::ingest::{prepare, RecentAnchors};
    use wardwatch_ingest::decode::ValidationPolicy;

    let db = Db::create("anchor").await;
    let s = store(&db, WriteMethod::Unnest).await;
    enrol_p1_with_d1(&s, Utc::now() - Duration::days(1)).await;
    let payload = br#"[{"n":"heart_rate","u":"/min","v":70,"t":-30},{"n":"spo2","u":"%","v":97}]"#;
    let first_receipt = wardwatch_ingest::session::now_micros() - Duration::seconds(90);
    let delivery = |dup: bool, received_at| d1_delivery(payload, dup, received_at);
    let policy = ValidationPolicy::default();
    let stop = tokio_util::sync::CancellationToken::new();
    // A fresh memory each time: this test is about the store's anchors.
    let recent = || RecentAnchors::new(16);
    let first = prepare(
        &delivery(false, first_receipt),
        &s,
        &policy,
        &mut recent(),
        &stop,
    )
    .await
    .unwrap();
    assert_eq!(first.relative_anchor, Some(first_receipt));
    assert_eq!(s.write_batch(&[first]).await.unwrap().readings_inserted, 2);

    // The broker redelivers it (DUP set) after a crash, 90 s later.
    let again = prepare(
        &delivery(true, Utc::now()),
        &s,
        &policy,
        &mut recent(),
        &stop,
    )
    .await
    .unwrap();
    assert_eq!(again.received_at, first_receipt);
    let out = s.write_batch(&[again]).await.unwrap();
    assert_eq!(out.readings_inserted, 0, "same instants, nothing new");
    assert_eq!(out.readings_duplicate, 2);

    // Without DUP it is a new measurement (a device resending "now" values).
    let fresh = prepare(
        &delivery(false, Utc::now()),
        &s,
        &policy,
        &mut recent(),
        &stop,
    )
    .await
    .unwrap();
    assert_eq!(s.write_batch(&[fresh]).await.unwrap().readings_inserted, 2);
    assert_eq!(db.count("SELECT count(*) FROM readings").await, 4);
}

/// The same message twice in one batch (a redelivery overtaking its original,
/// or a device resending) and a record refused twice (a BP panel's two
/// components) must not make PostgreSQL refuse the whole batch.
#[tokio::test]
async fn repeated_messages_and_rejections_within_one_batch_commit() {
    let db = Db::create("dupbatch").await;
    let s = store(&db, WriteMethod::Unnest).await;
    let base = Utc.with_ymd_and_hms(2026, 11, 1, 8, 0, 0).unwrap();
    enrol_p1_with_d1(&s, base - Duration::days(1)).await;
    let mut m = message(1, "d1", 3, base);
    m.rejections.push(Rejection::record(
        QuarantineReason::BadUnit,
        "second component",
        3,
        "{}",
    ));
    let mut redelivery = m.clone();
    redelivery.redelivered = true;
    let out = s.write_batch(&[m.clone(), redelivery]).await.unwrap();
    assert_eq!(out.readings_inserted, 3);
    assert_eq!(out.readings_duplicate, 3);
    // Two refusals, counted once: the second copy is the broker's redelivery.
    assert_eq!(out.quarantined.get(&QuarantineReason::BadUnit), Some(&2));
    assert_eq!(db.count("SELECT count(*) FROM quarantine").await, 2);
    assert_eq!(
        db.count("SELECT sum(times_seen)::int8 FROM quarantine")
            .await,
        4
    );
}

/// After a reconnect the broker may redeliver a message whose original is
/// still in the pipeline, not yet committed: the in-memory anchor covers it.
#[tokio::test]
async fn a_redelivery_overtaking_its_uncommitted_original_resolves_to_the_same_times() {
    use wardwatch_engine::ingest::{prepare, RecentAnchors};
    use wardwatch_ingest::decode::ValidationPolicy;

    let db = Db::create("overtake").await;
    let s = store(&db, WriteMethod::Unnest).await;
    enrol_p1_with_d1(&s, Utc::now() - Duration::days(1)).await;
    let payload = br#"[{"n":"heart_rate","u":"/min","v":70}]"#;
    let delivery = |dup: bool, received_at| d1_delivery(payload, dup, received_at);
    let policy = ValidationPolicy::default();
    let stop = tokio_util::sync::CancellationToken::new();
    let mut recent = RecentAnchors::new(16);
    let t1 = wardwatch_ingest::session::now_micros() - Duration::seconds(5);
    let original = prepare(&delivery(false, t1), &s, &policy, &mut recent, &stop)
        .await
        .unwrap();
    // Not committed yet when the redelivery is prepared.
    let redelivery = prepare(&delivery(true, Utc::now()), &s, &policy, &mut recent, &stop)
        .await
        .unwrap();
    assert_eq!(redelivery.received_at, t1);
    let out = s.write_batch(&[original, redelivery]).await.unwrap();
    assert_eq!(out.readings_inserted, 1);
    assert_eq!(out.readings_duplicate, 1);
}
