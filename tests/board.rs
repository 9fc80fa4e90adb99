//! The ward board in a real headless Chromium (Debian's `chromium`, driven
//! by `playwright-core` from `tests/board/`): sign in with a token, watch an
//! alert appear for each of two patients after their readings are published
//! over MQTT, acknowledge one by keyboard alone and one by mouse, resolve
//! each with an outcome (by mouse, then by keyboard), see every state
//! change, and save screenshots under the test's output folder. On the way
//! it checks WCAG 2.1 A/AA with axe-core (sign-in screen, board with
//! alerts, tablet width) and that the page fits a 768 px tablet.

mod common;

use std::process::{Command, Stdio};

use chrono::{Duration as ChronoDuration, SecondsFormat, Utc};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nurse_sees_an_alert_arrive_on_the_board_and_acknowledges_it() {
    board_round(&Db::create("board").await, "board").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_embedded_store_the_board_works_the_same() {
    board_round(&SqliteDb::create("board"), "board-sqlite").await;
}

/// Signs in, sees the alerts arrive, acknowledges and resolves them by
/// mouse and by keyboard, with the accessibility checks on the way.
async fn board_round(db: &impl Counted, shot: &str) {
    let board = repo().join("tests/board");
    assert!(
        board.join("node_modules/playwright-core").exists(),
        "run scripts/test.sh (it installs tests/board's packages and Debian's chromium)"
    );
    let broker = Broker::start().await;
    let engine = Engine::start(&broker.engine_url(), db.url(), &unique("eng")).await;
    let from = (Utc::now() - ChronoDuration::hours(1)).to_rfc3339_opts(SecondsFormat::Secs, true);
    enrol(db.url(), "pat-7", "ward-a", "patch-7", &from);
    enrol(db.url(), "pat-8", "ward-a", "patch-8", &from);
    admin(
        db.url(),
        &[
            "user",
            "add",
            "--id",
            "nurse-ann",
            "--role",
            "nurse",
            "--team",
            "ward-a",
        ],
    );
    let token = admin(db.url(), &["token", "create", "--user", "nurse-ann"])
        .trim()
        .to_string();
    let out_dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("board");
    std::fs::create_dir_all(&out_dir).unwrap();
    let screenshot = out_dir.join(format!("ward-{shot}.png"));
    let _ = std::fs::remove_file(&screenshot);

    let mut child = Command::new("node")
        .arg("board.mjs")
        .current_dir(&board)
        .env("BOARD_URL", format!("http://127.0.0.1:{}/", engine.http))
        .env("BOARD_TOKEN", &token)
        .env("SCREENSHOT", &screenshot)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node");
    let mut rx = stdout_lines(child.stdout.take().unwrap());
    // WCAG 2.1 A/AA as axe-core checks it (contrast, names, labels, ...).
    assert_eq!(
        next_line(&mut rx).await,
        "A11Y signin 0",
        "the sign-in screen"
    );
    assert_eq!(next_line(&mut rx).await, "READY");
    // A septic picture arrives over MQTT for each patient.
    let mut p = broker.loadgen_publisher().await;
    let bt = Utc::now().timestamp() as f64 - 30.0;
    for device in ["patch-7", "patch-8"] {
        p.publish(
            &readings_topic(device),
            format!(
                r#"[{{"bt":{bt},"n":"respiratory_rate","u":"/min","v":25}},{{"n":"spo2","u":"%","v":94}},
                    {{"n":"systolic_bp","u":"mm[Hg]","v":100}},{{"n":"heart_rate","u":"/min","v":115}},
                    {{"n":"body_temperature","u":"Cel","v":38.6}},{{"n":"consciousness","vs":"A"}}]"#
            ),
        )
        .await;
    }
    p.flush().await;
    for patient in ["pat-7", "pat-8"] {
        assert_eq!(
            next_line(&mut rx).await,
            format!("ALERT {patient} emergency NEWS2 9 (high)"),
            "the alert and the patient's row with the current NEWS2"
        );
    }
    assert_eq!(
        next_line(&mut rx).await,
        "A11Y board 0",
        "the board with open alerts"
    );
    assert_eq!(
        next_line(&mut rx).await,
        "KEYBOARD ACK pat-7 reached focus-visible acknowledged by nurse-ann",
        "Tab reaches the acknowledge button, with a visible focus ring; Enter acknowledges"
    );
    assert_eq!(
        next_line(&mut rx).await,
        "MOUSE ACK pat-8 acknowledged by nurse-ann",
        "a click acknowledges"
    );
    assert_eq!(
        next_line(&mut rx).await,
        "TABLET 0 fits",
        "a 768 px tablet: no violations, no sideways scrolling"
    );
    assert_eq!(
        next_line(&mut rx).await,
        "MOUSE RESOLVE pat-8 advice_given gone",
        "resolved by mouse with the chosen outcome, and off the list"
    );
    assert_eq!(
        next_line(&mut rx).await,
        "KEYBOARD RESOLVE pat-7 visit_arranged gone",
        "resolved by keyboard alone with the chosen outcome, and off the list"
    );
    assert_eq!(next_line(&mut rx).await, "REVOKE");
    admin(db.url(), &["token", "revoke", "--user", "nurse-ann"]);
    assert_eq!(
        next_line(&mut rx).await,
        "SIGNED OUT 0 token Signed out: your access token was refused (revoked or expired). Sign in again.",
        "told, asked to sign in again (focus on the token field), and no retries"
    );
    assert_eq!(next_line(&mut rx).await, "A11Y signed-out 0");
    assert_eq!(next_line(&mut rx).await, "DONE");
    let status = child.wait().unwrap();
    assert!(status.success());
    assert!(
        std::fs::metadata(&screenshot).unwrap().len() > 10_000,
        "a real screenshot"
    );
    for (patient, outcome) in [("pat-7", "visit_arranged"), ("pat-8", "advice_given")] {
        assert_eq!(
            db.count(&format!(
                "SELECT count(*) FROM alerts WHERE patient_id = '{patient}' AND state = 'resolved' \
                 AND acknowledged_by = 'nurse-ann' AND resolved_by = 'nurse-ann' AND outcome = '{outcome}'"
            ))
            .await,
            1,
            "{patient}: acknowledged and resolved with {outcome} in the store"
        );
    }
    drop(engine);
}
