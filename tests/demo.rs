//! `wardwatch demo` from the checkout: with no broker configured it runs
//! its own, serves the board, prints a working sign-in token, shows the
//! simulated ward's alerts to the demo nurse, and stops cleanly on SIGINT
//! after the engine has received everything that was published.

mod common;

use std::process::Stdio;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_serves_the_board_with_alerts_and_stops_cleanly_on_sigint() {
    let db = Db::create("demo").await;
    let (http, mqtt) = (free_port(), free_port());
    let mut child = wardwatch()
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
        .current_dir(repo())
        .env_remove("WARDWATCH_MQTT_URL")
        .env("WARDWATCH_DATABASE_URL", &db.url)
        .env("WARDWATCH_HTTP_ADDR", format!("127.0.0.1:{http}"))
        .env(
            "WARDWATCH_MQTT_EMBEDDED_LISTEN",
            format!("127.0.0.1:{mqtt}"),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("wardwatch demo");
    let mut rx = stdout_lines(child.stdout.take().unwrap());
    let board = next_line(&mut rx).await;
    assert_eq!(board, format!("Ward board: http://127.0.0.1:{http}/"));
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
        .arg("-INT")
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
    // "Demo stopped: N messages published, N received by the engine."
    let words: Vec<&str> = stopped.split_whitespace().collect();
    assert!(words.len() > 6, "{stopped}");
    assert_eq!(
        words[2], words[5],
        "everything published was received: {stopped}"
    );
    assert!(db.count("SELECT count(*) FROM readings").await > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_postgresql_the_demo_says_what_it_needs() {
    let port = free_port();
    let out = wardwatch()
        .arg("demo")
        .current_dir(repo())
        .env_remove("WARDWATCH_MQTT_URL")
        .env(
            "WARDWATCH_DATABASE_URL",
            format!("postgres://ward:s3cret@127.0.0.1:{port}/wardwatch"),
        )
        .env("WARDWATCH_HTTP_ADDR", format!("127.0.0.1:{}", free_port()))
        .env(
            "WARDWATCH_MQTT_EMBEDDED_LISTEN",
            format!("127.0.0.1:{}", free_port()),
        )
        .output()
        .expect("wardwatch demo");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the demo needs PostgreSQL"), "{err}");
    assert!(
        !err.contains("s3cret"),
        "the password stays out of messages: {err}"
    );
}
