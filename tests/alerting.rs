//! End-to-end alerting tests: readings over a real Mosquitto, the real
//! engine and PostgreSQL, webhooks into a real local HTTP server that checks
//! signatures and fails on demand, alerts read back over MQTT.

mod common;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::{Duration as ChronoDuration, SecondsFormat, Utc};
use common::webhook::*;
use common::*;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

/// A team directory whose default policy pages two webhook tiers quickly.
fn teams_dir(dir: &Path, port: u16, wait: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let hook = |p: &str| {
        format!(
            r#"[{{ channel = "webhook", url = "http://127.0.0.1:{port}/{p}", secret_env = "WARDWATCH_TEST_SECRET" }}]"#
        )
    };
    std::fs::write(
        dir.join("default.toml"),
        format!(
            r#"id = "default"
fallback = {{ channel = "webhook", url = "http://127.0.0.1:{port}/fallback", secret_env = "WARDWATCH_TEST_SECRET" }}
[escalation]
repeat = "{wait}"
group_window = "1s"
start_tier = {{ low = 0, medium = 0, high = 0, emergency = 0 }}
[[escalation.tiers]]
name = "ward nurse"
wait = "{wait}"
targets = {}
[[escalation.tiers]]
name = "nurse in charge"
wait = "{wait}"
targets = {}
"#,
            hook("tier0"),
            hook("tier1")
        ),
    )
    .unwrap();
}

/// A config file like the shipped one with a short delivery timeout.
fn config_file(dir: &Path) -> std::path::PathBuf {
    let attempts = if dir.join("few-attempts").exists() {
        2
    } else {
        5
    };
    let shipped = std::fs::read_to_string(repo().join("config/wardwatch.toml")).unwrap();
    let text = edit(
        &edit(
            &shipped,
            "request_timeout_ms = 10000",
            "request_timeout_ms = 1000",
        ),
        "max_attempts = 6",
        &format!("max_attempts = {attempts}"),
    );
    let path = dir.join("wardwatch.toml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn engine(broker: &Broker, db: &Db, dir: &Path, client: &str) -> Engine {
    engine_with(broker, db, dir, client, &[]).await
}

async fn engine_with(
    broker: &Broker,
    db: &Db,
    dir: &Path,
    client: &str,
    extra: &[(&str, &str)],
) -> Engine {
    let teams = dir.join("teams");
    let config = config_file(dir);
    let mut env = vec![
        ("WARDWATCH_TEAMS_DIR", teams.to_str().unwrap()),
        ("WARDWATCH_TEST_SECRET", SECRET),
        ("WARDWATCH_CONFIG", config.to_str().unwrap()),
    ];
    env.extend_from_slice(extra);
    Engine::start_with(&broker.engine_url(), &db.url, client, &env).await
}

/// Subscribes to a team's alert topic with the load generator's watcher
/// account (it may read every team's alerts).
async fn subscribe(broker: &Broker, team: &str) -> Arc<Mutex<Vec<serde_json::Value>>> {
    let user = format!("{LOADGEN_USER}-watch");
    let mut o = MqttOptions::new(&user, "127.0.0.1", broker.port);
    o.set_credentials(&user, LOADGEN_PASS);
    let (client, mut el) = AsyncClient::new(o, 100);
    client
        .subscribe(
            format!("wardwatch/v1/teams/{team}/alerts"),
            QoS::AtLeastOnce,
        )
        .await
        .unwrap();
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
                    if let Ok(v) = serde_json::from_slice(&p.payload) {
                        g.lock().unwrap().push(v);
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    tokio::time::timeout(WAIT, subscribed.notified())
        .await
        .unwrap();
    got
}

/// What most alerting tests start from: a webhook receiver, a team policy
/// paging it (tiers of one hour), a broker, a database and an engine.
struct Ward {
    dir: tempfile::TempDir,
    receiver: Receiver,
    broker: Broker,
    db: Db,
    engine: Engine,
}

async fn ward(tag: &str) -> Ward {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::default();
    let port = receiver.start().await;
    teams_dir(&dir.path().join("teams"), port, "1h");
    let broker = Broker::start().await;
    let db = Db::create(tag).await;
    let engine = engine(&broker, &db, dir.path(), &unique("eng")).await;
    Ward {
        dir,
        receiver,
        broker,
        db,
        engine,
    }
}

fn now_secs() -> f64 {
    Utc::now().timestamp_micros() as f64 / 1e6
}

fn an_hour_ago() -> String {
    (Utc::now() - ChronoDuration::hours(1)).to_rfc3339_opts(SecondsFormat::Secs, true)
}

async fn events(db: &Db, alert: i64) -> Vec<(String, String)> {
    sqlx::query_as("SELECT kind, actor FROM alert_events WHERE alert_id = $1 ORDER BY id")
        .bind(alert)
        .fetch_all(&db.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deterioration_pages_its_team_then_escalates_until_someone_acknowledges() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::default();
    let port = receiver.start().await;
    teams_dir(&dir.path().join("teams"), port, "3s");
    let broker = Broker::start().await;
    let db = Db::create("alert_escalate").await;
    let engine = engine(&broker, &db, dir.path(), &unique("eng")).await;
    let nurse_app = subscribe(&broker, "ward-a").await;
    enrol(&db.url, "pat-1", "ward-a", "patch-1", &an_hour_ago());

    let mut p = broker.loadgen_publisher().await;
    p.publish(&readings_topic("patch-1"), septic_pack(now_secs() - 60.0))
        .await;
    p.flush().await;

    // The first tier is paged over a signed webhook and the team's topic.
    let first = eventually("tier 0 paged", || async {
        receiver.unique("/tier0").into_iter().next()
    })
    .await;
    let b = &first.body;
    assert_eq!(b["patient_id"], "pat-1");
    assert_eq!(b["team_id"], "ward-a");
    assert_eq!(b["kind"], "clinical");
    assert_eq!(b["severity"], "emergency", "NEWS2 9: high band");
    assert_eq!(b["state"], "open");
    assert_eq!(b["purpose"], "page");
    assert_eq!(b["tier"], 0);
    assert_eq!(b["rules"], serde_json::json!(["news2"]));
    assert!(first.key.starts_with("alert-"), "{}", first.key);
    let alert_id = b["alert_id"].as_i64().unwrap();
    let mqtt = eventually("MQTT alert", || async {
        nurse_app.lock().unwrap().first().cloned()
    })
    .await;
    assert_eq!(mqtt["alert_id"], alert_id);
    assert_eq!(mqtt["severity"], "emergency");
    assert_eq!(mqtt["tier"], 0);

    // Nobody acknowledges: the next tier is paged after the wait.
    let second = eventually("tier 1 paged", || async {
        receiver.unique("/tier1").into_iter().next()
    })
    .await;
    assert_eq!(second.body["alert_id"], alert_id);
    assert_eq!(second.body["tier"], 1);

    // Acknowledgement stops every further page at once.
    let out = admin(
        &db.url,
        &[
            "alert",
            "ack",
            "--id",
            &alert_id.to_string(),
            "--by",
            "nurse-ann",
        ],
    );
    assert!(out.contains("acknowledged"), "{out}");
    let acked_at = Utc::now();
    // A send claimed just before the acknowledgement may still land; wait
    // until the outbox holds nothing unfinished for this alert.
    let unfinished = format!(
        "SELECT count(*) FROM deliveries WHERE alert_id = {alert_id} AND status = 'pending'"
    );
    eventually("no delivery left in flight", || async {
        (db.count(&unfinished).await == 0).then_some(())
    })
    .await;
    let pages_at_ack = receiver.hits().len();
    // Then until the engine's escalation pass has run at a time two more
    // escalation periods (3 s each) past the acknowledgement: had the
    // acknowledgement not stopped the clock, tier 2 and a repeat would be due.
    let past = (acked_at.timestamp_millis() as f64 / 1000.0) + 7.0;
    eventually(
        "escalation checked two periods past the acknowledgement",
        || async {
            (engine
                .metric("wardwatch_escalation_checked_at_seconds")
                .await
                >= past)
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        db.count(&unfinished).await,
        0,
        "nothing queued after acknowledgement"
    );
    assert_eq!(receiver.hits().len(), pages_at_ack, "{:?}", receiver.hits());
    let e = admin_fails(
        &db.url,
        &[
            "alert",
            "ack",
            "--id",
            &alert_id.to_string(),
            "--by",
            "nurse-bob",
        ],
    );
    assert!(e.contains("not open"), "{e}");

    let e = admin_fails(
        &db.url,
        &[
            "alert",
            "resolve",
            "--id",
            &alert_id.to_string(),
            "--by",
            "nurse-ann",
            "--outcome",
            "other",
        ],
    );
    assert!(e.contains("note"), "{e}");
    admin(
        &db.url,
        &[
            "alert",
            "resolve",
            "--id",
            &alert_id.to_string(),
            "--by",
            "nurse-ann",
            "--outcome",
            "visit_arranged",
            "--note",
            "community nurse visiting",
        ],
    );
    // The engine exports time to acknowledge per team.
    eventually("time-to-acknowledge histogram", || async {
        // A histogram appears with its first observation.
        (parse_metric(
            &engine.metrics().await,
            "wardwatch_time_to_acknowledge_seconds_count{team=\"ward-a\"}",
        ) == Some(1.0))
        .then_some(())
    })
    .await;
    let trail = events(&db, alert_id).await;
    let kinds: Vec<&str> = trail.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"opened"));
    assert!(kinds.contains(&"escalated"), "{kinds:?}");
    assert!(trail.contains(&("acknowledged".into(), "nurse-ann".into())));
    assert_eq!(trail.last(), Some(&("resolved".into(), "nurse-ann".into())));
    assert_eq!(receiver.bad_signatures.load(Ordering::SeqCst), 0);
    drop(engine);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_or_silent_receiver_sees_exactly_one_delivery_per_step_even_across_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::default();
    // The first request is received but its answer is held past the
    // engine's timeout and the engine is killed meanwhile; the next two fail.
    receiver.hold_first_ms.store(30_000, Ordering::SeqCst);
    receiver.fail_first.store(2, Ordering::SeqCst);
    let port = receiver.start().await;
    teams_dir(&dir.path().join("teams"), port, "1h");
    let broker = Broker::start().await;
    let db = Db::create("alert_crash").await;
    let client = unique("eng");
    let mut engine = engine(&broker, &db, dir.path(), &client).await;
    enrol(&db.url, "pat-1", "ward-a", "patch-1", &an_hour_ago());
    let mut p = broker.loadgen_publisher().await;
    p.publish(&readings_topic("patch-1"), septic_pack(now_secs() - 60.0))
        .await;
    p.flush().await;

    eventually("first webhook received", || async {
        (!receiver.hits().is_empty()).then_some(())
    })
    .await;
    // Crash between send and record: the engine never learns the outcome.
    engine.kill9();
    let engine = self::engine(&broker, &db, dir.path(), &client).await;

    // Sent again under the same key after the claim lapses, failed twice,
    // then accepted: the receiver saw several requests, all one step.
    eventually("delivery recorded as sent", || async {
        (db.count("SELECT count(*) FROM deliveries WHERE channel = 'webhook' AND status = 'sent'")
            .await
            == 1)
            .then_some(())
    })
    .await;
    let hits: Vec<_> = receiver
        .hits()
        .into_iter()
        .filter(|h| h.path == "/tier0")
        .collect();
    assert!(hits.len() >= 3, "retried: {hits:?}");
    assert_eq!(
        receiver.unique("/tier0").len(),
        1,
        "one step, one key: {hits:?}"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM alerts").await,
        1,
        "the restart opened no second alert"
    );
    assert_eq!(receiver.bad_signatures.load(Ordering::SeqCst), 0);
    drop(engine);
}

/// A complete set of observations: RR 16, SpO2 97, SBP 120, the given
/// pulse and temperature, alert.
fn obs(bt: f64, hr: f64, temp: f64) -> String {
    format!(
        r#"[{{"bt":{bt},"n":"respiratory_rate","u":"/min","v":16}},
            {{"n":"spo2","u":"%","v":97}},
            {{"n":"systolic_bp","u":"mm[Hg]","v":120}},
            {{"n":"heart_rate","u":"/min","v":{hr}}},
            {{"n":"body_temperature","u":"Cel","v":{temp}}},
            {{"n":"consciousness","vs":"A"}}]"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_alert_per_episode_a_worse_severity_repages_new_rules_group_and_a_transfer_moves_it() {
    let Ward {
        dir: _dir,
        receiver,
        broker,
        db,
        engine,
    } = ward("alert_episode").await;
    admin(
        &db.url,
        &[
            "patient",
            "add",
            "--id",
            "pat-1",
            "--team",
            "ward-a",
            "--pathway",
            "post-discharge",
        ],
    );
    staff(&db.url, "ward-b");
    admin(
        &db.url,
        &[
            "device",
            "assign",
            "--device",
            "patch-1",
            "--patient",
            "pat-1",
            "--from",
            &an_hour_ago(),
        ],
    );
    let mut p = broker.loadgen_publisher().await;
    let t0 = now_secs() - 600.0;
    let send = |k: u32, hr: f64, temp: f64| {
        (
            readings_topic("patch-1"),
            obs(t0 + f64::from(k) * 60.0, hr, temp),
        )
    };
    // NEWS2 2 (pulse 95, 38.3 °C): low; an alert opens at tier 0.
    let (topic, pack) = send(0, 95.0, 38.3);
    p.publish(&topic, pack).await;
    p.flush().await;
    eventually("low page", || async {
        (receiver.unique("/tier0").len() == 1).then_some(())
    })
    .await;
    // The fever persists (2 readings over 38.0): a medium flag on the same
    // episode re-pages at once, as medium.
    let (topic, pack) = send(1, 95.0, 38.3);
    p.publish(&topic, pack).await;
    p.flush().await;
    let pages = eventually("medium re-page", || async {
        let u = receiver.unique("/tier0");
        (u.len() == 2).then_some(u)
    })
    .await;
    assert_eq!(pages[0].body["severity"], "low");
    assert_eq!(pages[1].body["severity"], "medium");
    assert_eq!(pages[1].body["purpose"], "page");
    assert_eq!(
        pages[0].body["alert_id"], pages[1].body["alert_id"],
        "one episode"
    );
    // Tachycardia over three sets (NEWS2 stays in the low band): a new rule
    // at the same severity joins the episode and sends one update.
    for k in 2..5 {
        let (topic, pack) = send(k, 125.0, 38.3);
        p.publish(&topic, pack).await;
    }
    p.flush().await;
    let all = eventually("grouped update", || async {
        let u = receiver.unique("/tier0");
        (u.len() == 3).then_some(u)
    })
    .await;
    assert_eq!(all[2].body["purpose"], "update");
    let rules = all[2].body["rules"].as_array().unwrap().clone();
    assert_eq!(rules.len(), 3, "{rules:?}");
    assert_eq!(
        db.count("SELECT count(*) FROM alerts").await,
        1,
        "one alert for the episode"
    );
    assert_eq!(db.count("SELECT count(*) FROM alert_flags").await, 3);

    // A transfer moves the open alert to the new team.
    let out = admin(
        &db.url,
        &["patient", "add", "--id", "pat-1", "--team", "ward-b"],
    );
    assert!(out.contains("1 open alert(s) moved"), "{out}");
    let team: String = sqlx::query_scalar("SELECT team_id FROM alerts")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(team, "ward-b");
    assert_eq!(
        db.count("SELECT count(*) FROM alert_events WHERE kind = 'transferred'")
            .await,
        1
    );
    // The command line enrols and moves as the API does: both audited,
    // with who (given, or the operating-system user) and why.
    assert_eq!(
        db.count(
            "SELECT count(*) FROM patient_settings_audit WHERE patient_id = 'pat-1' \
             AND field = 'enrolled' AND actor LIKE 'cli:%'"
        )
        .await,
        1
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM patient_settings_audit WHERE patient_id = 'pat-1' \
             AND field = 'team_id' AND old_value = 'ward-a' AND new_value = 'ward-b' \
             AND actor LIKE 'cli:%' AND reason = 'moved with `wardwatch patient add`'"
        )
        .await,
        1
    );
    // A pathway change is not a move: refused, with the audited way to make it.
    let e = admin_fails(
        &db.url,
        &[
            "patient",
            "add",
            "--id",
            "pat-1",
            "--team",
            "ward-b",
            "--pathway",
            "copd",
        ],
    );
    assert!(e.contains("a pathway change is a clinical decision"), "{e}");
    drop(engine);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snooze_holds_back_a_rule_until_its_severity_worsens() {
    let Ward {
        dir: _dir,
        receiver,
        broker,
        db,
        engine,
    } = ward("alert_snooze").await;
    enrol(&db.url, "pat-1", "ward-a", "patch-1", &an_hour_ago());
    let e = admin_fails(
        &db.url,
        &[
            "alert",
            "snooze",
            "--patient",
            "pat-1",
            "--rule",
            "news2",
            "--for",
            "48h",
            "--by",
            "dr-a",
            "--reason",
            "known AF",
        ],
    );
    assert!(e.contains("may be snoozed for at most"), "{e}");
    admin(
        &db.url,
        &[
            "alert",
            "snooze",
            "--patient",
            "pat-1",
            "--rule",
            "news2",
            "--for",
            "2h",
            "--by",
            "dr-a",
            "--reason",
            "known AF, reviewed",
        ],
    );
    let mut p = broker.loadgen_publisher().await;
    let t0 = now_secs() - 300.0;
    // NEWS2 1 (pulse 95): low, snoozed: no alert, and the reason is stored.
    p.publish(&readings_topic("patch-1"), obs(t0, 95.0, 37.0))
        .await;
    p.flush().await;
    let note: String = eventually("flag event applied", || async {
        sqlx::query_scalar::<_, Option<String>>(
            "SELECT alert_note FROM flag_events WHERE alerted_at IS NOT NULL ORDER BY id LIMIT 1",
        )
        .fetch_optional(&db.pool)
        .await
        .unwrap()
        .flatten()
    })
    .await;
    assert!(note.starts_with("snoozed until"), "{note}");
    assert_eq!(db.count("SELECT count(*) FROM alerts").await, 0);
    // Worse: the septic picture breaks through the snooze.
    p.publish(&readings_topic("patch-1"), septic_pack(t0 + 60.0))
        .await;
    p.flush().await;
    let page = eventually("break-through page", || async {
        receiver.unique("/tier0").into_iter().next()
    })
    .await;
    assert_eq!(page.body["severity"], "emergency");
    drop(engine);
}

/// A GOV.UK Notify stand-in: checks the bearer JWT like Notify does and
/// records the notifications.
async fn notify_server(
    key_secret: &'static str,
    service: &'static str,
) -> (u16, Arc<Mutex<Vec<serde_json::Value>>>) {
    use base64::Engine as _;
    let got: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/v2/notifications/{kind}",
        post(move |headers: HeaderMap, body: Bytes| {
            let g = g.clone();
            async move {
                let token = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .unwrap_or("")
                    .to_string();
                let parts: Vec<&str> = token.split('.').collect();
                if parts.len() != 3 {
                    return StatusCode::FORBIDDEN;
                }
                use hmac::Mac;
                let mut mac =
                    <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(key_secret.as_bytes())
                        .unwrap();
                mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
                let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(parts[2])
                    .unwrap_or_default();
                let claims: serde_json::Value = serde_json::from_slice(
                    &base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(parts[1])
                        .unwrap_or_default(),
                )
                .unwrap_or_default();
                let fresh =
                    (Utc::now().timestamp() - claims["iat"].as_i64().unwrap_or(0)).abs() < 30;
                if mac.verify_slice(&sig).is_err() || claims["iss"] != service || !fresh {
                    return StatusCode::FORBIDDEN;
                }
                g.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap_or_default());
                StatusCode::CREATED
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_goes_through_notify_and_a_tier_that_cannot_be_reached_tells_the_fallback() {
    const SERVICE: &str = "26785a09-ab16-4eb0-8407-a37497a57506";
    const KEY_SECRET: &str = "3d844edf-8d35-48ac-975b-e847b4f122b0";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("few-attempts"), "").unwrap();
    let receiver = Receiver::default();
    // The ward's webhook is down for good.
    receiver.fail_first.store(usize::MAX, Ordering::SeqCst);
    let port = receiver.start().await;
    let (notify_port, sms) = notify_server(KEY_SECRET, SERVICE).await;
    let teams = dir.path().join("teams");
    std::fs::create_dir_all(&teams).unwrap();
    std::fs::write(
        teams.join("default.toml"),
        format!(
            r#"id = "default"
fallback = {{ channel = "sms", phone = "+447700900999" }}
[escalation]
repeat = "1h"
start_tier = {{ low = 0, medium = 0, high = 0, emergency = 0 }}
[[escalation.tiers]]
name = "ward nurse"
wait = "1h"
targets = [{{ channel = "webhook", url = "http://127.0.0.1:{port}/broken", secret_env = "WARDWATCH_TEST_SECRET" }}]
"#
        ),
    )
    .unwrap();
    let broker = Broker::start().await;
    let db = Db::create("alert_fallback").await;
    let notify_url = format!("http://127.0.0.1:{notify_port}");
    let api_key = format!("test_key-{SERVICE}-{KEY_SECRET}");
    let engine = engine_with(
        &broker,
        &db,
        dir.path(),
        &unique("eng"),
        &[
            ("WARDWATCH_NOTIFY_URL", notify_url.as_str()),
            ("WARDWATCH_NOTIFY_API_KEY", api_key.as_str()),
        ],
    )
    .await;
    enrol(&db.url, "pat-1", "ward-a", "patch-1", &an_hour_ago());
    let mut p = broker.loadgen_publisher().await;
    p.publish(&readings_topic("patch-1"), septic_pack(now_secs() - 60.0))
        .await;
    p.flush().await;
    // Two failed attempts at the webhook, then the fallback is texted.
    let texts = eventually("fallback SMS", || async {
        let g = sms.lock().unwrap().clone();
        (!g.is_empty()).then_some(g)
    })
    .await;
    assert_eq!(texts[0]["phone_number"], "+447700900999");
    let summary = texts[0]["personalisation"]["summary"]
        .as_str()
        .unwrap_or("");
    assert!(
        summary.contains("undeliverable") && summary.contains("pat-1"),
        "{summary}"
    );
    assert!(texts[0]["reference"]
        .as_str()
        .unwrap_or("")
        .contains("undeliverable"));
    assert!(
        receiver
            .hits()
            .iter()
            .filter(|h| h.path == "/broken")
            .count()
            >= 2
    );
    assert_eq!(
        db.count("SELECT count(*) FROM deliveries WHERE channel = 'webhook' AND status = 'failed'")
            .await,
        1
    );
    assert_eq!(
        db.count("SELECT count(*) FROM alert_events WHERE kind = 'undeliverable'")
            .await,
        1
    );
    drop(engine);
}

async fn next(
    rx: &mut tokio::sync::broadcast::Receiver<wardwatch_engine::alerting::FeedEvent>,
) -> wardwatch_engine::alerting::FeedEvent {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_feed_carries_every_alert_change_whoever_made_it() {
    let Ward {
        dir: _dir,
        receiver: _receiver,
        broker,
        db,
        engine,
    } = ward("alert_feed").await;
    // The feed as the API will run it, in this process, on the same store.
    let store = wardwatch_store::PgStore::connect(&db.url, 2).await.unwrap();
    let (feed, mut rx) = tokio::sync::broadcast::channel(64);
    let stop = tokio_util::sync::CancellationToken::new();
    // From the first event of this fresh database: whenever the follower
    // starts, it misses nothing.
    tokio::spawn(wardwatch_engine::alerting::follow_alert_events(
        wardwatch_store::Backend::Pg(store),
        Some(0),
        feed,
        Arc::new(tokio::sync::Notify::new()),
        Duration::from_millis(100),
        stop.clone(),
    ));
    enrol(&db.url, "pat-1", "ward-a", "patch-1", &an_hour_ago());
    let mut p = broker.loadgen_publisher().await;
    p.publish(&readings_topic("patch-1"), septic_pack(now_secs() - 60.0))
        .await;
    p.flush().await;
    let opened = next(&mut rx).await;
    assert_eq!(
        (opened.event.as_str(), opened.actor.as_str()),
        ("opened", "wardwatch")
    );
    assert_eq!(opened.patient_id, "pat-1");
    assert_eq!(opened.team_id, "ward-a");
    assert_eq!(opened.severity, "emergency");
    // An acknowledgement from another process (the CLI) reaches the feed too.
    admin(
        &db.url,
        &[
            "alert",
            "ack",
            "--id",
            &opened.alert_id.to_string(),
            "--by",
            "nurse-ann",
        ],
    );
    let acked = next(&mut rx).await;
    assert_eq!(
        (acked.event.as_str(), acked.actor.as_str()),
        ("acknowledged", "nurse-ann")
    );
    assert_eq!(acked.state, "acknowledged");
    assert_eq!(acked.alert_id, opened.alert_id);
    stop.cancel();
    drop(engine);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_alert_commits_but_before_it_is_delivered_resumes_from_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    // The receiver's port is bound but nobody answers yet: the page cannot
    // go out (it times out), and no other process can take the port.
    let held = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = held.local_addr().unwrap().port();
    teams_dir(&dir.path().join("teams"), port, "1h");
    let broker = Broker::start().await;
    let db = Db::create("alert_outbox").await;
    let client = unique("eng");
    let mut first = engine(&broker, &db, dir.path(), &client).await;
    enrol(&db.url, "pat-1", "ward-a", "patch-1", &an_hour_ago());
    let mut p = broker.loadgen_publisher().await;
    p.publish(&readings_topic("patch-1"), septic_pack(now_secs() - 60.0))
        .await;
    p.flush().await;
    eventually("alert and its page committed", || async {
        (db.count(
            "SELECT count(*) FROM deliveries WHERE channel = 'webhook' AND status = 'pending'",
        )
        .await
            == 1)
            .then_some(())
    })
    .await;
    first.kill9();
    // The receiver comes up; a new engine resumes the outbox.
    let receiver = Receiver::default();
    receiver.serve_on(held);
    let second = engine(&broker, &db, dir.path(), &client).await;
    let page = eventually("page delivered after the restart", || async {
        receiver.unique("/tier0").into_iter().next()
    })
    .await;
    assert_eq!(page.body["patient_id"], "pat-1");
    eventually("recorded as sent", || async {
        (db.count("SELECT count(*) FROM deliveries WHERE channel = 'webhook' AND status = 'sent'")
            .await
            == 1)
            .then_some(())
    })
    .await;
    assert_eq!(receiver.unique("/tier0").len(), 1);
    assert_eq!(db.count("SELECT count(*) FROM alerts").await, 1);
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_storm_first_pages_go_out_at_once_and_updates_are_digested() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::default();
    let port = receiver.start().await;
    let teams = dir.path().join("teams");
    teams_dir(&teams, port, "1h");
    let text = edit(
        &std::fs::read_to_string(teams.join("default.toml")).unwrap(),
        "group_window = \"1s\"",
        "group_window = \"1s\"\nstorm_alerts = 3\nstorm_window = \"10m\"",
    );
    std::fs::write(teams.join("default.toml"), text).unwrap();
    let broker = Broker::start().await;
    let db = Db::create("alert_storm").await;
    let engine = engine(&broker, &db, dir.path(), &unique("eng")).await;
    let n = 12;
    for i in 0..n {
        let (pat, dev) = (format!("pat-{i}"), format!("patch-{i}"));
        admin(
            &db.url,
            &[
                "patient",
                "add",
                "--id",
                &pat,
                "--team",
                "ward-a",
                "--pathway",
                "post-discharge",
            ],
        );
        admin(
            &db.url,
            &[
                "device",
                "assign",
                "--device",
                &dev,
                "--patient",
                &pat,
                "--from",
                &an_hour_ago(),
            ],
        );
    }
    let mut p = broker.loadgen_publisher().await;
    let t0 = now_secs() - 600.0;
    // Per patient: a low NEWS2 (page), a persisting fever (worse: page),
    // then tachycardia over three sets (a new rule, same severity: update).
    for (k, (hr, temp)) in [
        (95.0, 38.3),
        (95.0, 38.3),
        (125.0, 38.3),
        (125.0, 38.3),
        (125.0, 38.3),
    ]
    .into_iter()
    .enumerate()
    {
        for i in 0..n {
            let t = t0 + k as f64 * 60.0;
            p.publish(&readings_topic(&format!("patch-{i}")), obs(t, hr, temp))
                .await;
        }
    }
    p.flush().await;
    eventually("every update delivered", || async {
        (db.count("SELECT count(*) FROM deliveries WHERE purpose = 'update' AND status = 'sent'")
            .await
            == 2 * n)
            .then_some(())
    })
    .await;
    let webhook = receiver.hits();
    let pages = webhook
        .iter()
        .filter(|h| h.body["purpose"] == "page")
        .count();
    assert_eq!(
        pages,
        2 * n as usize,
        "every first page and every worsening, one each, at once"
    );
    let digests: Vec<_> = webhook
        .iter()
        .filter(|h| h.body["purpose"] == "digest")
        .collect();
    let singles = webhook
        .iter()
        .filter(|h| h.body["purpose"] == "update")
        .count();
    assert!(!digests.is_empty(), "a storm digests updates");
    let digested: usize = digests
        .iter()
        .map(|d| d.body["alerts"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(digested + singles, n as usize, "no update lost");
    assert!(
        digests.len() + singles < n as usize,
        "fewer messages than updates"
    );
    assert_eq!(receiver.bad_signatures.load(Ordering::SeqCst), 0);
    drop(engine);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flag_held_back_by_a_snooze_alerts_when_the_snooze_ends() {
    let Ward {
        dir: _dir,
        receiver,
        broker,
        db,
        engine,
    } = ward("alert_snooze_end").await;
    enrol(&db.url, "pat-1", "ward-a", "patch-1", &an_hour_ago());
    admin(
        &db.url,
        &[
            "alert",
            "snooze",
            "--patient",
            "pat-1",
            "--rule",
            "news2",
            "--for",
            "3s",
            "--by",
            "dr-a",
            "--reason",
            "reviewed on the phone",
        ],
    );
    let mut p = broker.loadgen_publisher().await;
    // NEWS2 1, steady: suppressed while snoozed, and nothing new follows.
    p.publish(
        &readings_topic("patch-1"),
        obs(now_secs() - 60.0, 95.0, 37.0),
    )
    .await;
    p.flush().await;
    let page = eventually("page after the snooze ended", || async {
        receiver.unique("/tier0").into_iter().next()
    })
    .await;
    assert_eq!(page.body["severity"], "low");
    assert_eq!(
        db.count("SELECT count(*) FROM flag_events WHERE alert_note LIKE 'snoozed until%'")
            .await,
        1,
        "it was held back first"
    );
    drop(engine);
}

/// A teams directory like [`teams_dir`] with extra policy lines after
/// `[escalation]`.
fn teams_dir_with(dir: &Path, port: u16, wait: &str, extra: &str) {
    teams_dir(dir, port, wait);
    let file = dir.join("default.toml");
    let text = edit(
        &std::fs::read_to_string(&file).unwrap(),
        "[escalation]\n",
        &format!("[escalation]\n{extra}\n"),
    );
    std::fs::write(file, text).unwrap();
}

fn enrol_copd(db: &Db, patient: &str, device: &str) {
    admin(
        &db.url,
        &[
            "patient",
            "add",
            "--id",
            patient,
            "--team",
            "ward-a",
            "--pathway",
            "copd",
        ],
    );
    admin(
        &db.url,
        &[
            "device",
            "assign",
            "--device",
            device,
            "--patient",
            patient,
            "--from",
            &an_hour_ago(),
        ],
    );
}

fn spo2_at(bt: f64, v: f64) -> String {
    format!(r#"[{{"bt":{bt},"n":"spo2","u":"%","v":{v}}}]"#)
}

/// Pages (purpose `page`) the receiver acted on, one per idempotency key.
fn pages(receiver: &Receiver, path: &str) -> Vec<Hit> {
    receiver
        .unique(path)
        .into_iter()
        .filter(|h| h.body["purpose"] == "page")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worsening_inside_an_open_alert_repages_it_and_a_snooze_never_hides_it() {
    let Ward {
        dir: _dir,
        receiver,
        broker,
        db,
        engine: _engine,
    } = ward("alert_worsening").await;
    // COPD: SpO2 below 88 (high) after three readings.
    enrol_copd(&db, "copd-w", "ox-w");
    let mut p = broker.loadgen_publisher().await;
    let t0 = now_secs() - 600.0;
    for k in 0..3 {
        p.publish(
            &readings_topic("ox-w"),
            spo2_at(t0 + f64::from(k) * 10.0, 87.0),
        )
        .await;
    }
    p.flush().await;
    let first = eventually("the first page", || async {
        let p = pages(&receiver, "/tier0");
        (!p.is_empty()).then_some(p)
    })
    .await;
    let alert_id = first[0].body["alert_id"].as_i64().unwrap();
    // 86: one more point past the limit, under the 3-point SpO2 margin:
    // evidence only. 83: four points worse than when paged: re-paged as
    // the same alert.
    p.publish(&readings_topic("ox-w"), spo2_at(t0 + 40.0, 86.0))
        .await;
    p.publish(&readings_topic("ox-w"), spo2_at(t0 + 50.0, 83.0))
        .await;
    p.flush().await;
    let repaged = eventually("a re-page for the worse value", || async {
        let p = pages(&receiver, "/tier0");
        (p.len() >= 2).then_some(p)
    })
    .await;
    assert!(
        repaged.iter().all(|h| h.body["alert_id"] == alert_id),
        "{repaged:?}"
    );
    let worsened = db
        .count(&format!(
            "SELECT count(*) FROM alert_events WHERE alert_id = {alert_id} AND kind = 'worsened'"
        ))
        .await;
    assert_eq!(worsened, 1, "86 did not re-page; 83 did");

    // A nurse snoozes the rule for 2 h. 82 (1 point worse than paged) is
    // held back; 75 (8 points worse) breaks through the snooze.
    admin(
        &db.url,
        &[
            "alert",
            "snooze",
            "--patient",
            "copd-w",
            "--rule",
            "threshold:spo2:0",
            "--for",
            "2h",
            "--by",
            "nurse-ann",
            "--reason",
            "known low baseline, GP aware",
        ],
    );
    p.publish(&readings_topic("ox-w"), spo2_at(t0 + 60.0, 82.0))
        .await;
    p.flush().await;
    eventually("82 held back by the snooze", || async {
        (db.count("SELECT count(*) FROM flag_events WHERE patient_id = 'copd-w' AND alert_note LIKE 'snoozed until%'")
            .await
            >= 1)
            .then_some(())
    })
    .await;
    assert_eq!(pages(&receiver, "/tier0").len(), 2);
    p.publish(&readings_topic("ox-w"), spo2_at(t0 + 70.0, 75.0))
        .await;
    p.flush().await;
    let through = eventually("75 breaks through the snooze", || async {
        let p = pages(&receiver, "/tier0");
        (p.len() >= 3).then_some(p)
    })
    .await;
    assert!(through.iter().all(|h| h.body["alert_id"] == alert_id));
    // The snooze is audited with who and why.
    let (by, reason): (String, String) =
        sqlx::query_as("SELECT by_user, reason FROM snoozes WHERE patient_id = 'copd-w'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        (by.as_str(), reason.as_str()),
        ("nurse-ann", "known low baseline, GP aware")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_alert_nobody_resolves_is_reminded_and_the_fallback_hears_of_unanswered_repeats(
) {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::default();
    let port = receiver.start().await;
    teams_dir_with(
        &dir.path().join("teams"),
        port,
        "1s",
        "ack_timeout = \"2s\"\nfallback_after_repeats = 2",
    );
    let broker = Broker::start().await;
    let db = Db::create("alert_remind").await;
    let _engine = engine(&broker, &db, dir.path(), &unique("eng")).await;
    enrol(&db.url, "pat-r", "ward-a", "patch-r", &an_hour_ago());
    enrol(&db.url, "pat-f", "ward-a", "patch-f", &an_hour_ago());
    let mut p = broker.loadgen_publisher().await;
    p.publish(&readings_topic("patch-r"), septic_pack(now_secs() - 60.0))
        .await;
    p.flush().await;
    let first = eventually("pat-r paged", || async {
        pages(&receiver, "/tier0").into_iter().next()
    })
    .await;
    let id = first.body["alert_id"].as_i64().unwrap();
    admin(
        &db.url,
        &["alert", "ack", "--id", &id.to_string(), "--by", "nurse-ann"],
    );
    // Acknowledged, never resolved: a reminder after the ack timeout.
    let reminder = eventually("a reminder", || async {
        receiver
            .unique("/tier0")
            .into_iter()
            .find(|h| h.body["purpose"] == "reminder" && h.body["alert_id"] == id)
    })
    .await;
    assert_eq!(reminder.body["state"], "acknowledged");
    // Another alert nobody acknowledges: tier 0, tier 1, then tier 1's
    // repeats; after the second repeat the fallback is told too.
    p.publish(&readings_topic("patch-f"), septic_pack(now_secs() - 60.0))
        .await;
    p.flush().await;
    let told = eventually("the fallback told of unanswered repeats", || async {
        receiver
            .unique("/fallback")
            .into_iter()
            .find(|h| h.body["purpose"] == "page")
    })
    .await;
    assert_eq!(told.body["patient_id"], "pat-f");
    assert_eq!(told.body["tier"], 1);
}

#[test]
fn the_engine_refuses_to_start_when_a_team_reaches_nobody_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let teams = dir.path().join("teams");
    teams_dir(&teams, 9, "1h");
    let file = teams.join("default.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("targets = ") {
                "targets = []".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&file, text).unwrap();
    let out = wardwatch()
        .arg("serve")
        .env("WARDWATCH_TEAMS_DIR", &teams)
        .env("WARDWATCH_HTTP_ADDR", "127.0.0.1:0")
        .env("WARDWATCH_MQTT_EMBEDDED_LISTEN", "127.0.0.1:0")
        .env(
            "WARDWATCH_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("w.db").display()),
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("default.toml") && err.contains("no tier names a person"),
        "{err}"
    );
}
