//! The embedded defaults: with no broker URL the engine runs its own broker
//! and connects to it like to any broker; with the embedded SQLite store as
//! well, a simulated ward published to it alerts for its deteriorations and
//! for no stable patient, exactly as on Mosquitto and PostgreSQL.

mod common;

use common::*;

/// An engine on its own embedded broker (a free port it picks), and the
/// broker's port as it logged it.
async fn embedded_engine(db_url: &str) -> (Engine, u16) {
    let engine = Engine::start_with(
        "",
        db_url,
        &unique("eng"),
        &[("WARDWATCH_MQTT_EMBEDDED_LISTEN", "127.0.0.1:0")],
    )
    .await;
    let port = logged_port(&engine.log(), "Embedded MQTT broker running", "listen")
        .expect("the embedded broker's address in the log");
    (engine, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_broker_url_the_engine_runs_its_own_and_the_simulated_ward_alerts() {
    let db = Db::create("embedded").await;
    let (mut engine, port) = embedded_engine(&db.url).await;
    assert!(
        engine.log().contains("Embedded MQTT broker running"),
        "says plainly that it is the embedded broker"
    );
    simulate(&format!("mqtt://127.0.0.1:{port}"), &db.url, 11, 15);
    let expected = simulated_deteriorations();
    let got = clinical_alerts_for(&db, &expected).await;
    assert_eq!(got, expected, "no stable patient alerts");
    assert!(engine.terminate(), "a clean exit on SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_embedded_broker_and_sqlite_the_simulated_ward_alerts_for_its_deteriorations_only() {
    let (_dir, file, url) = sqlite_target("embedded-sqlite");
    let (mut engine, port) = embedded_engine(&url).await;
    assert!(
        engine.log().contains("Embedded SQLite store"),
        "says plainly that it is the embedded store"
    );
    let summary = simulate(&format!("mqtt://127.0.0.1:{port}"), &url, 11, 15);
    let expected = simulated_deteriorations();
    let got = sqlite_clinical_alerts_for(&file, &expected).await;
    assert_eq!(got, expected, "no stable patient alerts");
    // The same ward's stable patients kept sending throughout.
    let pool = sqlite_pool(&file).await;
    let senders: i64 = sqlx::query_scalar("SELECT count(DISTINCT patient_id) FROM readings")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(senders, 10, "{summary}");
    // Escalation runs on SQLite too: each alert was paged (outbox rows).
    let paged: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT a.id) FROM alerts a JOIN deliveries d ON d.alert_id = a.id \
         WHERE a.kind = 'clinical' AND d.purpose = 'page'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(paged >= 3, "every clinical alert was paged: {paged}");
    assert!(engine.terminate(), "a clean exit on SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_is_refused_with_the_reason() {
    let db = Db::create("embedded_clash").await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = wardwatch()
        .arg("serve")
        .env("WARDWATCH_MQTT_URL", "")
        .env(
            "WARDWATCH_MQTT_EMBEDDED_LISTEN",
            format!("127.0.0.1:{port}"),
        )
        .env("WARDWATCH_DATABASE_URL", &db.url)
        .env("WARDWATCH_HTTP_ADDR", "127.0.0.1:0")
        .output()
        .expect("wardwatch serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("embedded MQTT broker cannot listen") && err.contains(&port.to_string()),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_embedded_broker_refuses_a_network_address_with_the_reason() {
    let db = Db::create("embedded_open").await;
    let out = wardwatch()
        .arg("serve")
        .env("WARDWATCH_MQTT_URL", "")
        .env("WARDWATCH_MQTT_EMBEDDED_LISTEN", "0.0.0.0:0")
        .env("WARDWATCH_DATABASE_URL", &db.url)
        .env("WARDWATCH_HTTP_ADDR", "127.0.0.1:0")
        .output()
        .expect("run wardwatch serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("listens only on a loopback address") && err.contains("0.0.0.0"),
        "{err}"
    );
}
