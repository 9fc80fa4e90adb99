//! The embedded MQTT broker: with no broker URL the engine runs its own,
//! connects to it like to any broker, and a simulated ward published to it
//! alerts for its deteriorations and for no stable patient.

mod common;

use std::collections::BTreeSet;

use common::*;

async fn embedded_engine(db: &Db, port: u16) -> Engine {
    Engine::start_with(
        "",
        &db.url,
        &unique("eng"),
        &[(
            "WARDWATCH_MQTT_EMBEDDED_LISTEN",
            format!("127.0.0.1:{port}").as_str(),
        )],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_broker_url_the_engine_runs_its_own_and_the_simulated_ward_alerts() {
    let db = Db::create("embedded").await;
    let port = free_port();
    let mut engine = embedded_engine(&db, port).await;
    assert!(
        engine.log().contains("Embedded MQTT broker running"),
        "says plainly that it is the embedded broker"
    );
    let out = wardwatch()
        .args([
            "simulate",
            "--patients",
            "10",
            "--seed",
            "11",
            "--interval-secs",
            "1",
            "--duration-secs",
            "15",
            "--onset-secs",
            "2",
            "--ramp-secs",
            "6",
            "--json",
        ])
        .env("WARDWATCH_MQTT_URL", format!("mqtt://127.0.0.1:{port}"))
        .env("WARDWATCH_DATABASE_URL", &db.url)
        .output()
        .expect("wardwatch simulate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let published = summary["messages_published"].as_u64().unwrap();
    assert_eq!(summary["broker_acks"].as_u64(), Some(published));
    let expected: BTreeSet<String> = ["sim-p006", "sim-p007", "sim-p008"]
        .into_iter()
        .map(String::from)
        .collect();
    let got = eventually("an alert for each deterioration", || async {
        let got: BTreeSet<String> = sqlx::query_scalar::<_, String>(
            "SELECT DISTINCT patient_id FROM alerts WHERE kind = 'clinical'",
        )
        .fetch_all(&db.pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
        expected.is_subset(&got).then_some(got)
    })
    .await;
    assert_eq!(got, expected, "no stable patient alerts");
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
        .env("WARDWATCH_HTTP_ADDR", format!("127.0.0.1:{}", free_port()))
        .output()
        .expect("wardwatch serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("embedded MQTT broker cannot listen") && err.contains(&port.to_string()),
        "{err}"
    );
}
