//! `wardwatch demo` as a newcomer runs it: from the checkout's files, with no
//! broker and no database configured, it runs its own broker and the
//! embedded SQLite store, serves the board, prints a working sign-in token,
//! shows the simulated ward's alerts to the demo nurse, and stops cleanly on
//! SIGINT after the engine has received everything that was published, with
//! every received message committed.

mod common;

use std::process::Stdio;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_a_clean_checkout_with_no_services_the_demo_serves_alerts_and_stops_cleanly() {
    demo_round("-INT", true).await;
}

/// As after `cargo install`: no `config/` anywhere, so the configuration,
/// pathways and teams are the ones built into the binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_an_empty_folder_the_demo_runs_on_its_built_in_files_and_stops_cleanly_on_sigterm() {
    demo_round("-TERM", false).await;
}

/// Runs the demo from a clean copy of the checkout's config (or from an
/// empty folder), checks the board, token and alerts, then stops it with
/// `signal`.
async fn demo_round(signal: &str, with_config: bool) {
    // A clean checkout's configuration, in a directory of its own: the
    // store goes to ./data/wardwatch.db there, no service is configured.
    let checkout = tempfile::tempdir().unwrap();
    if with_config {
        copy_dir(&repo().join("config"), &checkout.path().join("config"));
    }
    let mut demo = wardwatch();
    if !with_config {
        demo.env_remove("WARDWATCH_CONFIG")
            .env_remove("WARDWATCH_PATHWAYS_DIR")
            .env_remove("WARDWATCH_TEAMS_DIR");
    }
    let mut child = demo
        .args([
            "demo",
            "--patients",
            "10",
            "--interval-secs",
            "1",
            "--onset-secs",
            "2",
            "--ramp-secs",
            "5",
        ])
        .current_dir(checkout.path())
        .env_remove("WARDWATCH_MQTT_URL")
        .env_remove("WARDWATCH_DATABASE_URL")
        // Free ports the demo picks itself: it prints the board's address.
        .env("WARDWATCH_HTTP_ADDR", "127.0.0.1:0")
        .env("WARDWATCH_MQTT_EMBEDDED_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("wardwatch demo");
    let mut rx = stdout_lines(child.stdout.take().unwrap());
    let board = next_line(&mut rx).await;
    let http: u16 = board
        .strip_prefix("Ward board: http://127.0.0.1:")
        .and_then(|rest| rest.strip_suffix('/'))
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("the board's address: {board}"));
    assert_ne!(http, 0, "the port the demo bound, not the one configured");
    assert!(next_line(&mut rx)
        .await
        .starts_with("Sign in as demo-nurse"));
    let token = next_line(&mut rx).await;
    assert!(token.starts_with("ww_") && token.len() == 67, "{token}");

    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{http}");
    let page = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Ward board"));
    let me: serde_json::Value = client
        .get(format!("{base}/api/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (me["role"].as_str(), me["teams"][0].as_str()),
        (Some("nurse"), Some("ward-a"))
    );
    // The simulated deteriorations reach the demo nurse's alert list.
    eventually("alerts for the demo nurse", || {
        let (client, base, token) = (client.clone(), base.clone(), token.clone());
        async move {
            let alerts: serde_json::Value = client
                .get(format!("{base}/api/v1/alerts"))
                .bearer_auth(&token)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let n = alerts
                .as_array()?
                .iter()
                .filter(|a| a["kind"] == "clinical")
                .count();
            (n >= 3).then_some(())
        }
    })
    .await;

    let _ = std::process::Command::new("kill")
        .arg(signal)
        .arg(child.id().to_string())
        .status();
    let mut stopped = String::new();
    while let Some(line) = tokio::time::timeout(WAIT, rx.recv()).await.ok().flatten() {
        if line.starts_with("Demo stopped") {
            stopped = line;
        }
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
    // "Demo stopped: N messages published, N received by the engine, N
    // committed and acknowledged."
    let words: Vec<&str> = stopped.split_whitespace().collect();
    assert!(words.len() > 12, "{stopped}");
    assert_ne!(words[2], "0", "{stopped}");
    assert_eq!(
        (words[2], words[2]),
        (words[5], words[10]),
        "everything published was received, committed and acknowledged: {stopped}"
    );
    // And it is in the file: every simulated patient's readings.
    let file = checkout.path().join("data/wardwatch.db");
    let pool = sqlite_pool(&file).await;
    let readings: i64 = sqlx::query_scalar("SELECT count(*) FROM readings")
        .fetch_one(&pool)
        .await
        .unwrap();
    let patients: i64 = sqlx::query_scalar("SELECT count(DISTINCT patient_id) FROM readings")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(
        readings > 0 && patients == 10,
        "{readings} readings of {patients} patients"
    );
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgresql_configured_but_down_the_demo_says_what_it_needs() {
    let port = free_port();
    let out = wardwatch()
        .arg("demo")
        .current_dir(repo())
        .env_remove("WARDWATCH_MQTT_URL")
        .env(
            "WARDWATCH_DATABASE_URL",
            format!("postgres://ward:s3cret@127.0.0.1:{port}/wardwatch"),
        )
        .env("WARDWATCH_HTTP_ADDR", "127.0.0.1:0")
        .env("WARDWATCH_MQTT_EMBEDDED_LISTEN", "127.0.0.1:0")
        .output()
        .expect("wardwatch demo");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the demo cannot open its database"), "{err}");
    assert!(err.contains("leave [database] url empty"), "{err}");
    assert!(
        !err.contains("s3cret"),
        "the password stays out of messages: {err}"
    );
}
