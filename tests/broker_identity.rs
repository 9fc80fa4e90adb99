//! Broker identity on the project's Mosquitto config: a client id is bound
//! to its user, so one device's password cannot take over the engine's
//! session; devices, team apps and the engine's users live in separate
//! namespaces; credentials are issued with `wardwatch credentials`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{Duration as ChronoDuration, Utc};
use common::*;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

fn now_secs() -> f64 {
    Utc::now().timestamp_micros() as f64 / 1e6
}

fn rfc3339(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Issues credentials into the test broker's files, as an operator would.
fn issue(broker: &Broker, args: &[&str]) -> String {
    let out = wardwatch()
        .arg("credentials")
        .args(args)
        .arg("--passwd")
        .arg(broker.passwd_path())
        .arg("--acl")
        .arg(broker.acl_path())
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["password"].as_str().unwrap().to_string()
}

/// Connects with `client_id` (clean session) and disconnects: the attack
/// that, without the binding, discards the named session's queue.
async fn connect_once(port: u16, client_id: &str, user: &str, pass: &str) -> bool {
    let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
    o.set_credentials(user, pass).set_clean_session(true);
    let (client, mut el) = AsyncClient::new(o, 10);
    let ok = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(a))) => {
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
    let _ = tokio::time::timeout(Duration::from_secs(1), el.poll()).await;
    ok
}

/// Subscribes as `user` to `filter` and collects what arrives.
async fn listen(port: u16, user: &str, pass: &str, filter: &str) -> Arc<Mutex<Vec<String>>> {
    let mut o = MqttOptions::new(user, "127.0.0.1", port);
    o.set_credentials(user, pass);
    let (client, mut el) = AsyncClient::new(o, 100);
    client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let subscribed = Arc::new(tokio::sync::Notify::new());
    let s = subscribed.clone();
    tokio::spawn(async move {
        let _client = client;
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => s.notify_one(),
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    g.lock().unwrap().push(p.topic.clone());
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    tokio::time::timeout(WAIT, subscribed.notified())
        .await
        .expect("SUBACK");
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_password_cannot_take_over_the_engines_session_and_discard_its_queue() {
    let broker = Broker::start().await;
    let db = Db::create("takeover").await;
    let client_id = unique("eng");
    let mut engine = Engine::start(&broker.engine_url(), &db.url, &client_id).await;
    let from = rfc3339(Utc::now() - ChronoDuration::hours(1));
    enrol(&db.url, "pat-to", "ward-a", "dev-to", &from);
    // The engine is down: the broker queues readings for its session.
    engine.kill9();
    let mut p = broker.loadgen_publisher().await;
    let now = now_secs();
    for i in 0..10 {
        p.publish(
            &readings_topic("dev-to"),
            format!(
                r#"[{{"bt":{},"n":"heart_rate","u":"/min","v":{}}}]"#,
                now - 60.0 + i as f64,
                70 + i
            ),
        )
        .await;
    }
    p.flush().await;
    // Someone with a device's password connects under the engine's client
    // id, with a clean session, as the engine's own would.
    for id in [client_id.as_str(), ENGINE_USER] {
        assert!(
            connect_once(broker.port, id, DEVICE_USERS[0], DEVICE_PASS).await,
            "the device itself may connect"
        );
    }
    // The engine comes back: its queue is intact.
    let _engine = Engine::start(&broker.engine_url(), &db.url, &client_id).await;
    db.wait_for_readings(10, "every queued reading").await;
    assert_eq!(db.count("SELECT count(*) FROM readings").await, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_apps_read_only_their_teams_alerts_and_devices_read_none() {
    let broker = Broker::start().await;
    let ward_a = issue(&broker, &["team", "ward-a"]);
    // A device whose id happens to be a team's id.
    let dev = issue(&broker, &["device", "ward-b"]);
    broker.reload("team@ward-a", &ward_a).await;
    let app = listen(
        broker.port,
        "team@ward-a",
        &ward_a,
        "wardwatch/v1/teams/+/alerts",
    )
    .await;
    let device = listen(
        broker.port,
        "ward-b",
        &dev,
        "wardwatch/v1/teams/ward-b/alerts",
    )
    .await;
    // The engine's alert publisher writes one alert for each team.
    let mut alerts = Publisher::connect(&broker.alerts_url(), ALERTS_USER).await;
    for team in ["ward-a", "ward-b"] {
        alerts
            .publish(&format!("wardwatch/v1/teams/{team}/alerts"), "{}")
            .await;
    }
    alerts.flush().await;
    // The publisher's own writes went through (PUBACKed); a marker written
    // after them reaches the app, so anything else would have arrived too.
    alerts
        .publish("wardwatch/v1/teams/ward-a/alerts", "{}")
        .await;
    alerts.flush().await;
    eventually("the app got its two", || {
        let app = app.clone();
        async move { (app.lock().unwrap().len() >= 2).then_some(()) }
    })
    .await;
    assert_eq!(
        *app.lock().unwrap(),
        vec!["wardwatch/v1/teams/ward-a/alerts"; 2],
        "only its own team's"
    );
    assert!(
        device.lock().unwrap().is_empty(),
        "a device named like a team reads nothing"
    );
    // The alert publisher cannot publish readings as a device.
    let mut spoof = Publisher::connect(&broker.alerts_url(), ALERTS_USER).await;
    spoof.publish(&readings_topic(DEVICE_USERS[0]), "[]").await;
    spoof.flush().await;
    let reader = listen(
        broker.port,
        ENGINE_USER,
        ENGINE_PASS,
        "wardwatch/v1/devices/+/readings",
    )
    .await;
    let mut own =
        Publisher::connect(&broker.url(DEVICE_USERS[0], DEVICE_PASS), DEVICE_USERS[0]).await;
    own.publish(&readings_topic(DEVICE_USERS[0]), "[]").await;
    own.flush().await;
    eventually("the device's own reading", || {
        let reader = reader.clone();
        async move { (!reader.lock().unwrap().is_empty()).then_some(()) }
    })
    .await;
    assert_eq!(
        reader.lock().unwrap().len(),
        1,
        "the spoofed one was dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issued_device_publishes_and_a_rotated_password_stops_working() {
    let broker = Broker::start().await;
    let first = issue(&broker, &["device", "dev-new"]);
    broker.reload("dev-new", &first).await;
    let out = wardwatch()
        .args(["credentials", "device", "dev-new"])
        .arg("--passwd")
        .arg(broker.passwd_path())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "an existing device is not overwritten"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rotate"));
    let second = issue(&broker, &["device", "dev-new", "--rotate"]);
    broker.reload("dev-new", &second).await;
    assert!(!connect_once(broker.port, "dev-new", "dev-new", &first).await);
    // The engine's own names are not for devices.
    let out = wardwatch()
        .args(["credentials", "device", "wardwatch-engine"])
        .arg("--passwd")
        .arg(broker.passwd_path())
        .output()
        .unwrap();
    assert!(!out.status.success());
}
