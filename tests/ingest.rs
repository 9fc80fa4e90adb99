//! End-to-end ingest tests: real Mosquitto (project config), real
//! PostgreSQL, the real `wardwatch` binary.

mod common;

use chrono::{Duration as ChronoDuration, SecondsFormat, Utc};
use common::*;

fn now_secs() -> f64 {
    Utc::now().timestamp_micros() as f64 / 1e6
}

fn rfc3339(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_senml_pack_and_a_fhir_observation_become_rows_in_canonical_units() {
    let (broker, db, engine) = stack("happy").await;
    let from = rfc3339(Utc::now() - ChronoDuration::hours(1));
    enrol(&db.url, "pat-1", "ward-a", "ox-1", &from);
    enrol(&db.url, "pat-2", "ward-a", "bp-1", &from);

    let mut p = broker.loadgen_publisher().await;
    let bt = now_secs() - 30.0;
    let senml = format!(
        r#"[{{"bn":"urn:dev:mac:0024befffe804ff1:","bt":{bt},"n":"heart_rate","u":"beat/min","v":72}},
            {{"n":"spo2","u":"%","v":97,"t":1}},
            {{"n":"body_temperature","u":"[degF]","v":100.4,"t":2}},
            {{"n":"consciousness","vs":"A","t":3}},
            {{"n":"supplemental_oxygen","vb":true,"t":4}}]"#
    );
    p.publish(&readings_topic("ox-1"), senml).await;
    let effective = rfc3339(Utc::now() - ChronoDuration::minutes(2));
    let fhir = format!(
        r#"{{"resourceType":"Observation","status":"final",
            "code":{{"coding":[{{"system":"http://loinc.org","code":"85354-9"}}]}},
            "effectiveDateTime":"{effective}",
            "component":[
              {{"code":{{"coding":[{{"system":"http://loinc.org","code":"8480-6"}}]}},
                "valueQuantity":{{"value":16,"unit":"kPa","system":"http://unitsofmeasure.org","code":"kPa"}}}},
              {{"code":{{"coding":[{{"system":"http://loinc.org","code":"8462-4"}}]}},
                "valueQuantity":{{"value":80,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}}}}]}}"#
    );
    p.publish(&observations_topic("bp-1"), fhir).await;
    p.flush().await;

    db.wait_for_readings(7, "7 readings stored").await;
    let rows: Vec<(String, String, String, f64, String)> = sqlx::query_as(
        "SELECT patient_id, device_id, vital, value, source FROM readings ORDER BY device_id, vital",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let get = |vital: &str| {
        rows.iter()
            .find(|r| r.2 == vital)
            .unwrap_or_else(|| panic!("{vital} missing in {rows:?}"))
    };
    assert_eq!(get("heart_rate").0, "pat-1");
    assert_eq!(get("heart_rate").3, 72.0);
    assert_eq!(get("spo2").3, 97.0);
    assert!(
        (get("body_temperature").3 - 38.0).abs() < 1e-9,
        "100.4 degF is 38.0 Cel"
    );
    assert_eq!(get("consciousness").3, 0.0);
    assert_eq!(get("supplemental_oxygen").3, 1.0);
    assert_eq!(get("systolic_bp").0, "pat-2");
    assert!((get("systolic_bp").3 - 120.0099).abs() < 1e-3, "16 kPa");
    assert_eq!(get("diastolic_bp").3, 80.0);
    assert_eq!(get("diastolic_bp").4, "fhir");
    assert_eq!(get("spo2").4, "senml");

    // SenML times: bt + t, to the microsecond.
    let t: chrono::DateTime<Utc> =
        sqlx::query_scalar("SELECT time FROM readings WHERE vital = 'spo2'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    let expect = (bt + 1.0) * 1e6;
    assert!((t.timestamp_micros() as f64 - expect).abs() <= 1.0);

    // The device's own name is kept for diagnosis.
    let names = db
        .count("SELECT count(*) FROM device_names WHERE device_id = 'ox-1' AND name LIKE 'urn:dev:mac:0024befffe804ff1:%'")
        .await;
    assert_eq!(names, 5);
    assert_eq!(db.count("SELECT count(*) FROM quarantine").await, 0);
    assert_eq!(engine.metric("wardwatch_readings_stored_total").await, 7.0);
    assert_eq!(
        engine.metric("wardwatch_messages_received_total").await,
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_quarantine_reason_is_stored_with_its_record_and_counted() {
    let (broker, db, engine) = stack("quarantine").await;
    let from = rfc3339(Utc::now() - ChronoDuration::hours(1));
    enrol(&db.url, "pat-q", "ward-a", "ox-q", &from);
    // A known device with no assignment at all.
    admin(
        &db.url,
        &["patient", "add", "--id", "pat-r", "--team", "ward-a"],
    );
    admin(
        &db.url,
        &[
            "device",
            "assign",
            "--device",
            "ox-r",
            "--patient",
            "pat-r",
            "--from",
            &from,
        ],
    );
    admin(
        &db.url,
        &[
            "device",
            "unassign",
            "--device",
            "ox-r",
            "--at",
            &rfc3339(Utc::now() - ChronoDuration::minutes(30)),
        ],
    );

    let mut p = broker.loadgen_publisher().await;
    let now = now_secs();
    let t = readings_topic("ox-q");
    p.publish(&t, "this is not json").await; // malformed
    p.publish(&t, r#"{"n":"heart_rate"}"#).await; // malformed: not a pack
    p.publish(
        &readings_topic("ox-unknown"),
        format!(r#"[{{"bt":{now},"n":"heart_rate","u":"/min","v":70}}]"#),
    )
    .await; // unknown_device
    p.publish(
        &readings_topic("ox-r"),
        format!(r#"[{{"bt":{now},"n":"heart_rate","u":"/min","v":70}}]"#),
    )
    .await; // unassigned_device
            // One pack: a good record among bad ones (unknown_vital, bad_unit, implausible, future_time, too_old).
    let old = now - 9.0 * 365.25 * 86_400.0;
    let future = now + 600.0;
    p.publish(
        &t,
        format!(
            r#"[{{"bt":{now},"n":"heart_rate","u":"/min","v":71}},
                {{"n":"pulse_pressure","u":"mm[Hg]","v":40}},
                {{"n":"body_temperature","u":"degC","v":37}},
                {{"n":"spo2","u":"%","v":101}},
                {{"bt":{future},"n":"respiratory_rate","u":"/min","v":16}},
                {{"bt":{old},"n":"respiratory_rate","u":"/min","v":16}}]"#
        ),
    )
    .await;
    p.publish(&t, vec![b'['; 300 * 1024]).await; // oversized
    p.publish(
        &observations_topic("ox-q"),
        r#"{"resourceType":"Patient","id":"x"}"#,
    )
    .await; // malformed FHIR
    p.flush().await;

    eventually("quarantine rows", || async {
        (db.count("SELECT count(*) FROM quarantine").await >= 10).then_some(())
    })
    .await;
    db.wait_for_readings(1, "the good record").await;
    let reasons: Vec<(String, i64)> =
        sqlx::query_as("SELECT reason, count(*) FROM quarantine GROUP BY reason ORDER BY reason")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let count = |r: &str| reasons.iter().find(|x| x.0 == r).map(|x| x.1).unwrap_or(0);
    assert_eq!(count("malformed"), 3, "{reasons:?}");
    for r in [
        "unknown_device",
        "unassigned_device",
        "unknown_vital",
        "bad_unit",
        "implausible",
        "future_time",
        "too_old",
        "oversized",
    ] {
        assert_eq!(count(r), 1, "{r}: {reasons:?}");
    }
    // Each row says why, and keeps the offending record.
    let (detail, record, device): (String, String, Option<String>) = sqlx::query_as(
        "SELECT detail, record, device_id FROM quarantine WHERE reason = 'bad_unit'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(
        detail.contains("degC") && detail.contains("Cel"),
        "{detail}"
    );
    assert!(record.contains("body_temperature"), "{record}");
    assert_eq!(device.as_deref(), Some("ox-q"));
    let oversized: String =
        sqlx::query_scalar("SELECT detail FROM quarantine WHERE reason = 'oversized'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(
        oversized.contains("262144") || oversized.contains("256"),
        "{oversized}"
    );

    // Counted in metrics, by reason.
    let m = engine.metrics().await;
    assert_eq!(
        parse_metric(&m, r#"wardwatch_quarantined_total{reason="malformed"}"#),
        Some(3.0),
        "{m}"
    );
    for r in [
        "unknown_device",
        "unassigned_device",
        "unknown_vital",
        "bad_unit",
        "implausible",
        "future_time",
        "too_old",
        "oversized",
    ] {
        assert_eq!(
            parse_metric(
                &m,
                &format!("wardwatch_quarantined_total{{reason=\"{r}\"}}")
            ),
            Some(1.0),
            "{r}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_message_leaves_one_row_and_one_quarantine_entry_counted_each_time() {
    let (broker, db, engine) = stack("redeliver").await;
    let from = rfc3339(Utc::now() - ChronoDuration::hours(1));
    enrol(&db.url, "pat-d", "ward-a", "ox-d", &from);
    let mut p = broker.loadgen_publisher().await;
    let now = now_secs();
    let pack = format!(
        r#"[{{"bt":{now},"n":"heart_rate","u":"/min","v":70}},{{"n":"spo2","u":"%","v":300}}]"#
    );
    for _ in 0..5 {
        p.publish(&readings_topic("ox-d"), pack.clone()).await;
    }
    p.flush().await;
    eventually("5 messages processed", || async {
        (engine.metric("wardwatch_readings_duplicate_total").await >= 4.0).then_some(())
    })
    .await;
    assert_eq!(db.count("SELECT count(*) FROM readings").await, 1);
    assert_eq!(db.count("SELECT count(*) FROM quarantine").await, 1);
    assert_eq!(db.count("SELECT times_seen::int8 FROM quarantine").await, 5);
    assert_eq!(engine.metric("wardwatch_readings_stored_total").await, 1.0);
    assert_eq!(
        engine
            .metric(r#"wardwatch_quarantined_total{reason="implausible"}"#)
            .await,
        5.0,
        "each delivery the device made is a refusal to count, stored once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_go_to_whoever_had_the_device_at_the_reading_time() {
    let (broker, db, _engine) = stack("reassign").await;
    let t0 = Utc::now() - ChronoDuration::hours(3);
    let t1 = Utc::now() - ChronoDuration::hours(2);
    let t2 = Utc::now() - ChronoDuration::hours(1);
    admin(
        &db.url,
        &["patient", "add", "--id", "alice", "--team", "ward-a"],
    );
    staff(&db.url, "ward-b");
    admin(
        &db.url,
        &["patient", "add", "--id", "bob", "--team", "ward-b"],
    );
    admin(
        &db.url,
        &[
            "device",
            "assign",
            "--device",
            "ox-lent",
            "--patient",
            "alice",
            "--from",
            &rfc3339(t0),
        ],
    );
    // Lent on to Bob at t1, returned at t2.
    admin(
        &db.url,
        &[
            "device",
            "assign",
            "--device",
            "ox-lent",
            "--patient",
            "bob",
            "--from",
            &rfc3339(t1),
        ],
    );
    admin(
        &db.url,
        &[
            "device",
            "unassign",
            "--device",
            "ox-lent",
            "--at",
            &rfc3339(t2),
        ],
    );
    // Assignments cannot be rewritten into the past.
    let err = admin_fails(
        &db.url,
        &[
            "device",
            "assign",
            "--device",
            "ox-lent",
            "--patient",
            "alice",
            "--from",
            &rfc3339(t1),
        ],
    );
    assert!(err.contains("cannot start at or before"), "{err}");
    let err = admin_fails(
        &db.url,
        &[
            "device",
            "assign",
            "--device",
            "ox-x",
            "--patient",
            "nobody",
        ],
    );
    assert!(err.contains("not enrolled"), "{err}");

    let mut p = broker.loadgen_publisher().await;
    let at = |t: chrono::DateTime<Utc>, mins: i64| {
        (t + ChronoDuration::minutes(mins)).timestamp() as f64
    };
    // Before t0, in Alice's time, exactly at t1 (hand-over: Bob's), in Bob's time, after t2.
    for (secs, v) in [
        (at(t0, -5), 60),
        (at(t0, 30), 61),
        (t1.timestamp_micros() as f64 / 1e6, 62),
        (at(t1, 30), 63),
        (at(t2, 5), 64),
    ] {
        p.publish(
            &readings_topic("ox-lent"),
            format!(r#"[{{"bt":{secs},"n":"heart_rate","u":"/min","v":{v}}}]"#),
        )
        .await;
    }
    p.flush().await;
    eventually("3 attributed + 2 quarantined", || async {
        (db.count("SELECT count(*) FROM readings").await == 3
            && db.count("SELECT count(*) FROM quarantine").await == 2)
            .then_some(())
    })
    .await;
    let rows: Vec<(String, f64)> =
        sqlx::query_as("SELECT patient_id, value FROM readings ORDER BY value")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        rows,
        vec![
            ("alice".into(), 61.0),
            ("bob".into(), 62.0),
            ("bob".into(), 63.0)
        ]
    );
    assert_eq!(
        db.count("SELECT count(*) FROM quarantine WHERE reason = 'unassigned_device'")
            .await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_may_publish_only_under_its_own_id() {
    let (broker, db, engine) = stack("acl").await;
    let from = rfc3339(Utc::now() - ChronoDuration::hours(1));
    enrol(&db.url, "pat-acl1", "ward-a", DEVICE_USERS[0], &from);
    enrol(&db.url, "pat-acl2", "ward-a", DEVICE_USERS[1], &from);
    let mut dev1 =
        Publisher::connect(&broker.url(DEVICE_USERS[0], DEVICE_PASS), DEVICE_USERS[0]).await;
    let now = now_secs();
    // Spoofing device 2: the broker refuses it, so nothing reaches the engine.
    dev1.publish(
        &readings_topic(DEVICE_USERS[1]),
        format!(r#"[{{"bt":{now},"n":"heart_rate","u":"/min","v":99}}]"#),
    )
    .await;
    dev1.publish(
        &readings_topic(DEVICE_USERS[0]),
        format!(r#"[{{"bt":{now},"n":"heart_rate","u":"/min","v":70}}]"#),
    )
    .await;
    dev1.flush().await;
    db.wait_for_readings(1, "own reading stored").await;
    // The engine counts every PUBLISH it receives before anything else: the
    // spoofed one never reached it.
    assert_eq!(
        engine.metric("wardwatch_messages_received_total").await,
        1.0
    );
    assert_eq!(
        db.count("SELECT count(*) FROM readings WHERE patient_id = 'pat-acl2'")
            .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_loses_nothing_and_duplicates_nothing() {
    kill_9_mid_stream(&Db::create("kill9").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_embedded_store_kill_9_mid_stream_loses_nothing_and_duplicates_nothing() {
    kill_9_mid_stream(&SqliteDb::create("kill9")).await;
}

/// Kills the engine mid-stream and restarts it: every reading is stored
/// exactly once (redelivered messages, relative SenML times included). The
/// first engine reaches the broker through a proxy that, before the kill,
/// swallows its PUBACKs: messages it committed are redelivered to the
/// second, which must recognise each one.
async fn kill_9_mid_stream(db: &impl Counted) {
    let broker = Broker::start().await;
    let proxy = TcpProxy::start(broker.port).await;
    let client_id = unique("eng");
    let via_proxy = format!(
        "mqtt://{ENGINE_USER}:{ENGINE_PASS}@127.0.0.1:{}",
        proxy.port
    );
    let mut engine = Engine::start(&via_proxy, db.url(), &client_id).await;
    let devices = 20;
    let from = rfc3339(Utc::now() - ChronoDuration::hours(1));
    for d in 0..devices {
        enrol(
            db.url(),
            &format!("pk-{d}"),
            "ward-k",
            &format!("dk-{d}"),
            &from,
        );
    }
    let mut p = broker.loadgen_publisher().await;
    let packs = 1500usize;
    let base = now_secs() - 3600.0;
    let mut expected = 0i64;
    let mut swallowed_from = 0;
    for i in 0..packs {
        let dev = format!("dk-{}", i % devices);
        // Every 5th pack uses SenML times relative to receipt: a redelivery
        // must resolve them to the same instants, or rows would double.
        let payload = if i % 5 == 0 {
            format!(
                r#"[{{"n":"heart_rate","u":"/min","v":{},"t":-{}}},{{"n":"spo2","u":"%","v":97,"t":-{}}}]"#,
                60 + i % 40,
                i,
                i
            )
        } else {
            let bt = base + i as f64;
            format!(
                r#"[{{"bt":{bt},"n":"heart_rate","u":"/min","v":{}}},{{"n":"spo2","u":"%","v":96}}]"#,
                60 + i % 40
            )
        };
        expected += 2;
        p.publish(&readings_topic(&dev), payload).await;
        if i == packs / 3 {
            // Some messages committed and acknowledged; then the engine's
            // PUBACKs stop reaching the broker ...
            eventually("some readings stored", || async {
                (db.count("SELECT count(*) FROM readings").await > 0).then_some(())
            })
            .await;
            proxy.swallow_client_bytes();
            swallowed_from = db.count("SELECT count(*) FROM readings").await;
        }
        if i == packs / 2 {
            // ... more messages are committed, unacknowledged, and the
            // engine is killed mid-stream.
            eventually("more readings committed, unacknowledged", || async {
                (db.count("SELECT count(*) FROM readings").await >= swallowed_from + 20)
                    .then_some(())
            })
            .await;
            engine.kill9();
        }
    }
    p.flush().await;
    let before = db.count("SELECT count(*) FROM readings").await;
    assert!(
        before < expected,
        "the kill happened before everything was stored"
    );
    let engine2 = Engine::start(&broker.engine_url(), db.url(), &client_id).await;
    eventually("every reading stored after restart", || async {
        (db.count("SELECT count(*) FROM readings").await >= expected).then_some(())
    })
    .await;
    // A sentinel behind everything: the broker delivers the session's queue
    // in order and the engine acknowledges in arrival order, only after
    // commit, so once the sentinel is stored and nothing is left
    // unacknowledged, every redelivery has been received and committed.
    p.publish(
        &readings_topic("dk-0"),
        format!(
            r#"[{{"bt":{},"n":"body_temperature","u":"Cel","v":36.6}}]"#,
            now_secs() - 1.0
        ),
    )
    .await;
    p.flush().await;
    eventually(
        "the sentinel stored and everything acknowledged",
        || async {
            let sentinel = db
                .count("SELECT count(*) FROM readings WHERE vital = 'body_temperature'")
                .await;
            (sentinel == 1 && engine2.metric("wardwatch_acks_pending").await == 0.0).then_some(())
        },
    )
    .await;
    // Exact: nothing lost, nothing twice.
    assert_eq!(
        db.count("SELECT count(*) FROM readings").await,
        expected + 1
    );
    assert_eq!(db.count("SELECT count(*) FROM quarantine").await, 0);
    // The path above was taken: committed messages came back and were
    // recognised, not stored again.
    assert!(
        engine2.metric("wardwatch_readings_duplicate_total").await >= 20.0,
        "committed but unacknowledged messages were redelivered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_stops_acknowledgements_and_drains_on_return() {
    let broker = Broker::start().await;
    let db = Db::create("outage").await;
    let proxy = PgProxy::start(pg_port()).await;
    let engine = Engine::start(
        &broker.engine_url(),
        &db.url_via(proxy.port),
        &unique("eng"),
    )
    .await;
    let from = rfc3339(Utc::now() - ChronoDuration::hours(1));
    enrol(&db.url, "pat-o", "ward-o", "ox-o", &from);
    let mut p = broker.loadgen_publisher().await;
    let base = now_secs() - 600.0;
    p.publish(
        &readings_topic("ox-o"),
        format!(r#"[{{"bt":{base},"n":"heart_rate","u":"/min","v":70}}]"#),
    )
    .await;
    db.wait_for_readings(1, "first reading").await;

    proxy.cut();
    let n = 200;
    for i in 1..=n {
        let bt = base + i as f64;
        p.publish(
            &readings_topic("ox-o"),
            format!(r#"[{{"bt":{bt},"n":"heart_rate","u":"/min","v":70}}]"#),
        )
        .await;
    }
    p.flush().await;
    eventually("the engine notices the outage", || async {
        (engine
            .metric(r#"wardwatch_store_errors_total{kind="transient"}"#)
            .await
            > 0.0)
            .then_some(())
    })
    .await;
    // Nothing acknowledged while nothing can be committed.
    let acks_during = engine.metric("wardwatch_acks_sent_total").await;
    assert_eq!(acks_during, 1.0, "only the first message was acknowledged");
    assert_eq!(db.count("SELECT count(*) FROM readings").await, 1);
    let health = http_get(engine.http, "/healthz").await.unwrap();
    assert_eq!(health.0, 503, "health reports the database outage");

    proxy.restore();
    db.wait_for_readings(n + 1, "backlog drained").await;
    eventually("all acknowledged", || async {
        (engine.metric("wardwatch_acks_sent_total").await == (n + 1) as f64).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_published_while_the_engine_is_down_are_stored_when_it_returns() {
    let mut broker = Broker::start().await;
    let db = Db::create("down").await;
    let client_id = unique("eng");
    let mut engine = Engine::start(&broker.engine_url(), &db.url, &client_id).await;
    let from = rfc3339(Utc::now() - ChronoDuration::hours(1));
    enrol(&db.url, "pat-w", "ward-w", "ox-w", &from);
    assert!(engine.terminate(), "clean exit on SIGTERM");
    let mut p = broker.loadgen_publisher().await;
    let base = now_secs() - 600.0;
    for i in 0..50 {
        let bt = base + i as f64;
        p.publish(
            &readings_topic("ox-w"),
            format!(r#"[{{"bt":{bt},"n":"heart_rate","u":"/min","v":70}}]"#),
        )
        .await;
    }
    p.flush().await;
    // The broker keeps the persistent session's queue across its own restart.
    broker.restart().await;
    let _engine = Engine::start(&broker.engine_url(), &db.url, &client_id).await;
    db.wait_for_readings(50, "queued readings stored").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_stream_acknowledges_what_it_committed_and_loses_nothing() {
    sigterm_mid_stream(&Db::create("sigterm").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_embedded_store_sigterm_mid_stream_acknowledges_what_it_committed() {
    sigterm_mid_stream(&SqliteDb::create("sigterm")).await;
}

/// SIGTERM while batches are in flight: what was committed was acknowledged
/// before the engine left, so a restart stores only the rest, once.
async fn sigterm_mid_stream(db: &impl Counted) {
    let broker = Broker::start().await;
    let client_id = unique("eng");
    let mut engine = Engine::start(&broker.engine_url(), db.url(), &client_id).await;
    let from = rfc3339(Utc::now() - ChronoDuration::hours(3));
    enrol(db.url(), "pat-t", "ward-t", "ox-t", &from);
    let mut p = broker.loadgen_publisher().await;
    let base = now_secs() - 7200.0; // n readings a second apart, all in the past
    let n = 5000i64;
    // Publish in the background so the SIGTERM lands while batches are in flight.
    let publishing = tokio::spawn(async move {
        for i in 0..n {
            let bt = base + i as f64;
            p.publish(
                &readings_topic("ox-t"),
                format!(r#"[{{"bt":{bt},"n":"heart_rate","u":"/min","v":70}}]"#),
            )
            .await;
        }
        p.flush().await;
    });
    eventually("some readings stored", || async {
        (db.count("SELECT count(*) FROM readings").await > 300).then_some(())
    })
    .await;
    assert!(engine.terminate(), "clean exit on SIGTERM");
    publishing.await.unwrap();
    let stored_before = db.count("SELECT count(*) FROM readings").await;
    assert!(
        stored_before < n,
        "SIGTERM came before the end of the stream"
    );
    let engine2 = Engine::start(&broker.engine_url(), db.url(), &client_id).await;
    eventually("every reading stored", || async {
        (db.count("SELECT count(*) FROM readings").await >= n).then_some(())
    })
    .await;
    // Everything committed before the SIGTERM was acknowledged before the
    // DISCONNECT, so the broker redelivered none of it.
    assert_eq!(
        engine2.metric("wardwatch_readings_duplicate_total").await,
        0.0
    );
    assert_eq!(
        engine2.metric("wardwatch_readings_stored_total").await,
        (n - stored_before) as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_reconnects_after_a_broker_restart_and_keeps_ingesting() {
    let mut broker = Broker::start().await;
    let db = Db::create("brokerrestart").await;
    let engine = Engine::start_with(
        &broker.engine_url(),
        &db.url,
        &unique("eng"),
        &[("WARDWATCH_LOG_FORMAT", "json")],
    )
    .await;
    let from = rfc3339(Utc::now() - ChronoDuration::hours(1));
    enrol(&db.url, "pat-b", "ward-b", "ox-b", &from);
    let base = now_secs() - 600.0;
    let publish = |i: usize| {
        (
            readings_topic("ox-b"),
            format!(
                r#"[{{"bt":{},"n":"heart_rate","u":"/min","v":70}}]"#,
                base + i as f64
            ),
        )
    };
    let mut p = broker.loadgen_publisher().await;
    for i in 0..10 {
        let (t, m) = publish(i);
        p.publish(&t, m).await;
    }
    p.flush().await;
    db.wait_for_readings(10, "first ten stored").await;
    drop(p);
    // With the broker gone, health says so (the database part still ok);
    // once it is back and the subscription confirmed, healthy again.
    broker.stop();
    let health = |want: u16| {
        let port = engine.http;
        async move {
            eventually(&format!("/healthz {want}"), || async move {
                http_get(port, "/healthz")
                    .await
                    .filter(|(s, _)| *s == want)
                    .map(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).unwrap())
            })
            .await
        }
    };
    let down = health(503).await;
    assert_eq!(
        (
            down["status"].as_str(),
            down["database"].as_str(),
            down["mqtt"].as_str()
        ),
        (Some("degraded"), Some("ok"), Some("disconnected")),
        "{down}"
    );
    broker.resume().await;
    let up = health(200).await;
    assert_eq!(
        (
            up["status"].as_str(),
            up["database"].as_str(),
            up["mqtt"].as_str()
        ),
        (Some("ok"), Some("ok"), Some("subscribed")),
        "{up}"
    );
    let mut p = broker.loadgen_publisher().await;
    for i in 10..20 {
        let (t, m) = publish(i);
        p.publish(&t, m).await;
    }
    p.flush().await;
    db.wait_for_readings(20, "the next ten stored after the reconnect")
        .await;
    assert!(engine.metric("wardwatch_mqtt_connections_total").await >= 2.0);
    assert!(
        engine
            .metric("wardwatch_mqtt_connection_errors_total")
            .await
            >= 1.0
    );
    // Logs are one JSON object per line when asked for.
    let log = engine.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() > 3);
    for l in &lines {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v.get("level").is_some(), "{l}");
    }
    assert!(log.contains("MQTT connection lost"), "{log}");
}

/// A PUBLISH larger than the engine's MQTT packet limit must not break the
/// connection (the broker would redeliver it first on every reconnect, and
/// ingest would stop for good): it is skipped on the wire and quarantined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packet_above_the_mqtt_limit_is_quarantined_not_a_reconnect_loop() {
    let broker = Broker::start().await;
    let db = Db::create("bigpacket").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = edit(
        &std::fs::read_to_string(repo().join("config/wardwatch.toml")).unwrap(),
        "max_packet_bytes = 2097152",
        "max_packet_bytes = 307200",
    );
    let cfg_path = dir.path().join("wardwatch.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let engine = Engine::start_with(
        &broker.engine_url(),
        &db.url,
        &unique("eng"),
        &[("WARDWATCH_CONFIG", cfg_path.to_str().unwrap())],
    )
    .await;
    let from = rfc3339(Utc::now() - ChronoDuration::hours(1));
    enrol(&db.url, "pat-big", "ward-a", "ox-big", &from);
    let mut p = broker.loadgen_publisher().await;
    let mut big = b"[".to_vec();
    big.extend(std::iter::repeat_n(b' ', 600 * 1024));
    p.publish(&readings_topic("ox-big"), big).await;
    let now = now_secs();
    p.publish(
        &readings_topic("ox-big"),
        format!(r#"[{{"bt":{now},"n":"heart_rate","u":"/min","v":70}}]"#),
    )
    .await;
    p.flush().await;
    db.wait_for_readings(1, "the next message stored").await;
    let detail: String =
        sqlx::query_scalar("SELECT detail FROM quarantine WHERE reason = 'oversized'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(detail.contains("614401 bytes"), "{detail}");
    assert_eq!(
        engine
            .metric("wardwatch_mqtt_connection_errors_total")
            .await,
        0.0
    );
    assert_eq!(engine.metric("wardwatch_acks_sent_total").await, 2.0);
}

/// A retained copy is the broker's stored old publish, resent on every
/// subscription: never a new reading. The shipped broker refuses retain;
/// a broker that allows it still gets nothing stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_message_is_quarantined_as_retained_and_the_shipped_broker_refuses_retain() {
    // The shipped config: a retained publish loses the connection (the
    // broker disconnects the client); the same publish without retain goes.
    let shipped = Broker::start().await;
    let publish = |retain: bool| {
        let mut c = std::process::Command::new("mosquitto_pub");
        c.args(["-V", "mqttv311", "-h", "127.0.0.1", "-q", "1"])
            .args(["-p", &shipped.port.to_string()])
            .args(["-u", DEVICE_USERS[0], "-P", DEVICE_PASS])
            .args(["-t", &readings_topic(DEVICE_USERS[0])])
            .args(["-m", r#"[{"n":"spo2","u":"%","v":97}]"#]);
        if retain {
            c.arg("-r");
        }
        c.output()
            .expect("mosquitto_pub (Debian package mosquitto-clients)")
    };
    let refused = publish(true);
    assert!(
        !refused.status.success(),
        "a retained publish was accepted: {}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let accepted = publish(false);
    assert!(
        accepted.status.success(),
        "{}",
        String::from_utf8_lossy(&accepted.stderr)
    );

    // A broker that allows retain: a retained pack published before the
    // engine subscribes arrives only as the broker's retained copy.
    let broker = Broker::start_with(&[("retain_available false", "retain_available true")]).await;
    let db = Db::create("retained").await;
    enrol(
        &db.url,
        "pat-ret",
        "ward-a",
        DEVICE_USERS[1],
        &rfc3339(Utc::now() - ChronoDuration::hours(1)),
    );
    let mut dev =
        Publisher::connect(&broker.url(DEVICE_USERS[1], DEVICE_PASS), &unique("dev")).await;
    let topic = readings_topic(DEVICE_USERS[1]);
    dev.publish_retained(
        &topic,
        r#"[{"n":"spo2","u":"%","v":96},{"n":"heart_rate","u":"/min","v":70}]"#,
    )
    .await;
    dev.flush().await;
    let client = unique("eng");
    let mut engine = Engine::start(&broker.engine_url(), &db.url, &client).await;
    eventually("the retained copy quarantined", || async {
        (db.count("SELECT count(*) FROM quarantine WHERE reason = 'retained'")
            .await
            == 1)
            .then_some(())
    })
    .await;
    let (detail, record): (String, String) =
        sqlx::query_as("SELECT detail, record FROM quarantine WHERE reason = 'retained'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(detail.contains("retained"), "{detail}");
    assert!(record.contains("spo2"), "{record}");
    assert_eq!(
        engine
            .metric("wardwatch_quarantined_total{reason=\"retained\"}")
            .await,
        1.0
    );
    // A live publish, even with retain set, is forwarded as new (retain
    // flag off) and stored once.
    dev.publish_retained(
        &topic,
        format!(
            r#"[{{"bt":{},"n":"spo2","u":"%","v":95}}]"#,
            Utc::now().timestamp() - 5
        ),
    )
    .await;
    dev.flush().await;
    db.wait_for_readings(1, "the live publish").await;
    // A restart re-subscribes: the broker resends its retained copy (now
    // the live one), which is quarantined again, not stored again.
    engine.terminate();
    let engine = Engine::start(&broker.engine_url(), &db.url, &client).await;
    eventually("the resent copy quarantined", || async {
        (db.count("SELECT count(*) FROM quarantine WHERE reason = 'retained'")
            .await
            == 2)
            .then_some(())
    })
    .await;
    assert_eq!(db.count("SELECT count(*) FROM readings").await, 1);
    drop(engine);
}

/// One device's pack of ~87,000 empty records: a bounded number of
/// quarantine rows saying what happened, and the next pack is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_empty_records_is_quarantined_in_a_bounded_number_of_rows() {
    let (broker, db, engine) = stack("flood").await;
    enrol(
        &db.url,
        "pat-f",
        "ward-a",
        "ox-f",
        &rfc3339(Utc::now() - ChronoDuration::hours(1)),
    );
    let n = (256 * 1024 - 2) / 3;
    let flood = format!("[{}{{}}]", "{},".repeat(n - 1));
    let mut p = broker.loadgen_publisher().await;
    p.publish(&readings_topic("ox-f"), flood).await;
    p.publish(
        &readings_topic("ox-f"),
        format!(
            r#"[{{"bt":{},"n":"spo2","u":"%","v":97}}]"#,
            Utc::now().timestamp() - 5
        ),
    )
    .await;
    p.flush().await;
    db.wait_for_readings(1, "the good pack after the flood")
        .await;
    eventually("the flood's quarantine rows", || async {
        (db.count("SELECT count(*) FROM quarantine").await == 102).then_some(())
    })
    .await;
    let reasons: Vec<(String, i64)> =
        sqlx::query_as("SELECT reason, count(*) FROM quarantine GROUP BY reason ORDER BY reason")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        reasons,
        [
            ("malformed".to_string(), 101),
            ("too_many_records".to_string(), 1)
        ]
    );
    let summary: String = sqlx::query_scalar(
        "SELECT detail FROM quarantine WHERE detail LIKE '% more refused records%'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(summary.contains("9900 more"), "{summary}");
    assert_eq!(
        engine
            .metric("wardwatch_quarantined_total{reason=\"too_many_records\"}")
            .await,
        1.0
    );
}

/// A device over its rate limit: its extra messages are quarantined whole
/// as `rate_limited` (counted, nothing silently dropped), and another
/// device's reading published after the flood is still stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_over_its_rate_limit_is_quarantined_whole_and_holds_nobody_back() {
    let broker = Broker::start().await;
    let db = Db::create("ratelimit").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = edit(
        &edit(
            &std::fs::read_to_string(repo().join("config/wardwatch.toml")).unwrap(),
            "device_rate_per_minute = 120",
            "device_rate_per_minute = 1",
        ),
        "device_burst = 10000",
        "device_burst = 5",
    );
    let cfg_path = dir.path().join("wardwatch.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let engine = Engine::start_with(
        &broker.engine_url(),
        &db.url,
        &unique("eng"),
        &[("WARDWATCH_CONFIG", cfg_path.to_str().unwrap())],
    )
    .await;
    let from = rfc3339(Utc::now() - ChronoDuration::hours(1));
    enrol(&db.url, "pat-loud", "ward-a", "ox-loud", &from);
    enrol(&db.url, "pat-calm", "ward-a", "ox-calm", &from);
    let mut p = broker.loadgen_publisher().await;
    let base = Utc::now().timestamp() - 600;
    for i in 0..50 {
        p.publish(
            &readings_topic("ox-loud"),
            format!(r#"[{{"bt":{},"n":"spo2","u":"%","v":97}}]"#, base + i),
        )
        .await;
    }
    p.publish(
        &readings_topic("ox-calm"),
        format!(r#"[{{"bt":{},"n":"spo2","u":"%","v":96}}]"#, base),
    )
    .await;
    p.flush().await;
    eventually(
        "the calm device's reading and the loud one's quarantine",
        || async {
            (db.count("SELECT count(*) FROM readings WHERE device_id = 'ox-calm'")
                .await
                == 1
                && db.count("SELECT count(*) FROM quarantine").await >= 40)
                .then_some(())
        },
    )
    .await;
    let loud = db
        .count("SELECT count(*) FROM readings WHERE device_id = 'ox-loud'")
        .await;
    let held = db
        .count("SELECT count(*) FROM quarantine WHERE reason = 'rate_limited' AND device_id = 'ox-loud'")
        .await;
    // The burst of 5 (and at most a token or two more as the test runs)
    // is read; every other message is held, none lost.
    assert!(
        (5..=7).contains(&loud),
        "{loud} of the loud device's readings stored"
    );
    assert_eq!(loud + held, 50, "every message either stored or held");
    let record: String =
        sqlx::query_scalar("SELECT record FROM quarantine WHERE reason = 'rate_limited' LIMIT 1")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(
        record.contains("spo2"),
        "the message is kept whole: {record}"
    );
    assert_eq!(
        engine
            .metric("wardwatch_quarantined_total{reason=\"rate_limited\"}")
            .await,
        held as f64
    );
    assert_eq!(
        engine.metric("wardwatch_messages_rate_limited_total").await,
        held as f64
    );
}
