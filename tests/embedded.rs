//! The embedded MQTT broker: with no broker URL the engine runs its own,
//! connects to it like to any broker, and a simulated ward published to it
//! alerts for its deteriorations and for no stable patient.

mod common;

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
    simulate(&format!("mqtt://127.0.0.1:{port}"), &db.url, 11, 15);
    let expected = simulated_deteriorations();
    let got = clinical_alerts_for(&db, &expected).await;
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
