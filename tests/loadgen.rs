//! `wardwatch loadgen` is an ops tool: it must run against a real deployment
//! and report what it published and what the store holds.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_publishes_and_counts_what_the_engine_stored() {
    let (broker, db, _engine) = stack("loadgen").await;
    let out = wardwatch()
        .args([
            "loadgen",
            "--mqtt-url",
            &broker.url(LOADGEN_USER, LOADGEN_PASS),
            "--database-url",
            &db.url,
            "--devices",
            "20",
            "--rate",
            "5",
            "--duration",
            "2",
            "--pack-size",
            "12",
            "--connections",
            "2",
            "--settle",
            "20",
            "--json",
        ])
        .output()
        .expect("run loadgen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("one JSON summary on stdout");
    let published = summary["readings_published"].as_i64().unwrap();
    assert!(published >= 20 * 12, "{summary}");
    assert_eq!(
        summary["readings_stored"].as_i64().unwrap(),
        published,
        "{summary}"
    );
    assert_eq!(summary["readings_lost"].as_i64().unwrap(), 0);
    assert_eq!(
        summary["broker_acks"].as_i64().unwrap(),
        summary["messages_published"].as_i64().unwrap()
    );
    // The store agrees, and packs of 12 repeat vitals at distinct times.
    assert_eq!(db.count("SELECT count(*) FROM readings").await, published);
    assert_eq!(db.count("SELECT count(*) FROM quarantine").await, 0);
}

#[test]
fn loadgen_explains_itself() {
    let out = wardwatch().args(["loadgen", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--devices", "--rate", "--pack-size", "--qos", "--duration"] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}
