//! The simulated ward end to end over a real Mosquitto and PostgreSQL:
//! `wardwatch simulate` enrols its patients and publishes; the engine must
//! alert for every scripted deterioration and for no stable patient.

mod common;

use std::collections::BTreeSet;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulated_ward_alerts_for_each_deterioration_and_no_stable_patient() {
    let (broker, db, engine) = stack("simulate").await;
    let summary = simulate(&broker.url(LOADGEN_USER, LOADGEN_PASS), &db.url, 3, 20);
    assert_eq!(summary["patients"], 10);
    let expected = simulated_deteriorations();
    let named: BTreeSet<String> = summary["deteriorating"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().split(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(named, expected);

    let got = clinical_alerts_for(&db, &expected).await;
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
