//! The simulated ward end to end over a real Mosquitto and PostgreSQL:
//! `wardwatch simulate` enrols its patients and publishes; the engine must
//! alert for every scripted deterioration and for no stable patient.

mod common;

use std::collections::BTreeSet;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulated_ward_alerts_for_each_deterioration_and_no_stable_patient() {
    let (broker, db, engine) = stack("simulate").await;
    let out = wardwatch()
        .args([
            "simulate",
            "--patients",
            "10",
            "--seed",
            "3",
            "--interval-secs",
            "1",
            "--duration-secs",
            "20",
            "--onset-secs",
            "3",
            "--ramp-secs",
            "8",
            "--json",
        ])
        .env("WARDWATCH_MQTT_URL", broker.url(LOADGEN_USER, LOADGEN_PASS))
        .env("WARDWATCH_DATABASE_URL", &db.url)
        .output()
        .expect("wardwatch simulate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["patients"], 10);
    let published = summary["messages_published"].as_u64().unwrap();
    assert_eq!(summary["broker_acks"].as_u64(), Some(published));
    let expected: BTreeSet<String> = ["sim-p006", "sim-p007", "sim-p008"]
        .into_iter()
        .map(String::from)
        .collect();
    let named: BTreeSet<String> = summary["deteriorating"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().split(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(named, expected);

    // Every message was committed (readings or quarantined artefacts).
    let clinical = || async {
        sqlx::query_scalar::<_, String>(
            "SELECT DISTINCT patient_id FROM alerts WHERE kind = 'clinical' ORDER BY 1",
        )
        .fetch_all(&db.pool)
        .await
        .unwrap()
        .into_iter()
        .collect::<BTreeSet<String>>()
    };
    let got = eventually("an alert for each deterioration", || async {
        let got = clinical().await;
        expected.is_subset(&got).then_some(got)
    })
    .await;
    assert_eq!(got, expected, "no stable patient alerts");
    let rules: Vec<(String, String)> = sqlx::query_as(
        "SELECT DISTINCT a.patient_id, f.rule FROM alerts a JOIN alert_flags af ON af.alert_id = a.id \
         JOIN flags f ON f.id = af.flag_id ORDER BY 1, 2",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let has = |p: &str, r: &str| rules.iter().any(|(a, b)| a == p && b.starts_with(r));
    assert!(
        has("sim-p006", "news2"),
        "sepsis scored by NEWS2: {rules:?}"
    );
    assert!(has("sim-p007", "news2"), "COPD on Scale 2: {rules:?}");
    assert!(has("sim-p008", "weight_gain"), "heart failure: {rules:?}");
    // COPD patients were put on Scale 2, audited as the simulator's decision.
    assert_eq!(
        db.count(
            "SELECT count(*) FROM patients WHERE spo2_scale = 2 AND id IN ('sim-p001', 'sim-p007')"
        )
        .await,
        2
    );
    drop(engine);
}
