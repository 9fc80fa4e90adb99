//! The embedded defaults: with no broker URL the engine runs its own broker
//! and connects to it like to any broker; with the embedded SQLite store as
//! well, a simulated ward published to it alerts for its deteriorations and
//! for no stable patient, exactly as on Mosquitto and PostgreSQL.

mod common;

use std::time::Duration;

use common::*;

/// The simulator's staging user on the embedded broker's password file.
const SIM_USER: &str = "wardwatch-sim";
const SIM_PASS: &str = "sim-secret";

/// An engine on its own embedded broker (a free port it picks), the
/// broker's port as it logged it, and the password file it reads (with a
/// staging publisher for the simulator, issued by `wardwatch credentials`).
async fn embedded_engine(db_url: &str) -> (Engine, u16, tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("passwd");
    let acl = dir.path().join("acl");
    std::fs::write(&acl, "").unwrap();
    let out = wardwatch()
        .args(["credentials", "staging-publisher", SIM_USER])
        .arg("--passwd")
        .arg(&passwd)
        .arg("--acl")
        .arg(&acl)
        .args(["--password-env", "SIM_PASS"])
        .env("SIM_PASS", SIM_PASS)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let client_id = unique("eng");
    let engine = Engine::start_with(
        "",
        db_url,
        &client_id,
        &[
            ("WARDWATCH_MQTT_EMBEDDED_LISTEN", "127.0.0.1:0"),
            (
                "WARDWATCH_MQTT_EMBEDDED_PASSWORD_FILE",
                passwd.to_str().unwrap(),
            ),
        ],
    )
    .await;
    let port = logged_port(&engine.log(), "Embedded MQTT broker running", "listen")
        .expect("the embedded broker's address in the log");
    (engine, port, dir, client_id)
}

fn sim_url(port: u16) -> String {
    format!("mqtt://{SIM_USER}:{SIM_PASS}@127.0.0.1:{port}")
}

/// Whether the broker on `port` accepts a CONNECT with this identity.
async fn connects(port: u16, client_id: &str, credentials: Option<(&str, &str)>) -> bool {
    let mut o = rumqttc::MqttOptions::new(client_id, "127.0.0.1", port);
    if let Some((u, p)) = credentials {
        o.set_credentials(u, p);
    }
    let (client, mut el) = rumqttc::AsyncClient::new(o, 10);
    let ok = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match el.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a))) => {
                    return a.code == rumqttc::ConnectReturnCode::Success
                }
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap_or(false);
    let _ = client.disconnect().await;
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_admits_only_known_users_under_their_own_client_id() {
    let db = Db::create("embedded_auth").await;
    let (mut engine, port, _dir, engine_id) = embedded_engine(&db.url).await;
    let user = format!("{SIM_USER}-pub0");
    assert!(
        connects(port, &user, Some((&user, SIM_PASS))).await,
        "an issued user"
    );
    assert!(!connects(port, "anyone", None).await, "anonymous");
    assert!(
        !connects(port, &user, Some((&user, "guess"))).await,
        "a wrong password"
    );
    // Someone holding a publisher's password cannot take the engine's id.
    assert!(
        !connects(port, &engine_id, Some((&user, SIM_PASS))).await,
        "another client's id ({engine_id})"
    );
    // rumqttd refuses a CONNECT without a user name itself; the wrong
    // password and the borrowed client id reach the check and are counted.
    assert_eq!(
        engine
            .metric("wardwatch_embedded_broker_refused_total")
            .await,
        2.0,
        "refusals are counted"
    );
    assert!(engine
        .log()
        .contains("The embedded broker refused a connection"));
    // The engine's own session was never disturbed.
    let (status, _) = http_get(engine.http, "/healthz").await.unwrap();
    assert_eq!(status, 200);
    assert!(engine.terminate(), "a clean exit on SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_broker_url_the_engine_runs_its_own_and_the_simulated_ward_alerts() {
    let db = Db::create("embedded").await;
    let (mut engine, port, _dir, _) = embedded_engine(&db.url).await;
    assert!(
        engine.log().contains("Embedded MQTT broker running"),
        "says plainly that it is the embedded broker"
    );
    simulate(&sim_url(port), &db.url, 11, 15);
    let expected = simulated_deteriorations();
    let got = clinical_alerts_for(&db, &expected).await;
    assert_eq!(got, expected, "no stable patient alerts");
    assert!(engine.terminate(), "a clean exit on SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_embedded_broker_and_sqlite_the_simulated_ward_alerts_for_its_deteriorations_only() {
    let (_dir, file, url) = sqlite_target("embedded-sqlite");
    let (mut engine, port, _dir, _) = embedded_engine(&url).await;
    assert!(
        engine.log().contains("Embedded SQLite store"),
        "says plainly that it is the embedded store"
    );
    let summary = simulate(&sim_url(port), &url, 11, 15);
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
    // A port in use may free itself: an ordinary failure, which a
    // supervisor may restart.
    assert_eq!(out.status.code(), Some(1), "{out:?}");
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
    // Only the configuration can cure this: EX_CONFIG, so a supervisor
    // stops restarting into it.
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("listens only on a loopback address") && err.contains("0.0.0.0"),
        "{err}"
    );
}
