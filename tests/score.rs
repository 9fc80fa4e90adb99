//! `wardwatch score news2` from the command line.

mod common;

use common::wardwatch;

fn run(args: &[&str]) -> (bool, String, String) {
    let out = wardwatch()
        .args(["score", "news2"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_septic_picture_scores_high_with_its_breakdown() {
    let (ok, out, _) = run(&[
        "--rr", "25", "--spo2", "94", "--sbp", "100", "--hr", "115", "--temp", "38.6", "--acvpu",
        "A", "--oxygen", "air",
    ]);
    assert!(ok);
    assert!(out.starts_with("NEWS2 9 (high)"), "{out}");
    assert!(out.contains("Emergency response"), "{out}");
    assert!(out.contains("continuous monitoring"), "{out}");
    assert!(!out.contains("partial"), "{out}");
}

#[test]
fn json_output_carries_total_band_response_and_sub_scores() {
    let (ok, out, _) = run(&[
        "--rr", "16", "--spo2", "91", "--sbp", "120", "--hr", "70", "--temp", "38.05", "--json",
    ]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    // SpO2 91 scores 3, 38.05 °C rounds to 38.1 and scores 1: total 4 with a single 3.
    assert_eq!(v["total"], 4);
    assert_eq!(v["band"], "low_medium");
    assert_eq!(v["partial"], true, "no --acvpu: consciousness not assessed");
    assert_eq!(v["oxygen_assumed"], true, "no --oxygen: air assumed");
    assert_eq!(v["breakdown"][6]["value"], 38.1);
    assert_eq!(v["breakdown"][6]["score"], 1);
    assert!(v["clinical_response"]
        .as_str()
        .unwrap()
        .contains("Urgent ward-based"));
}

#[test]
fn scale_2_on_oxygen_scores_high_saturations() {
    let (ok, out, _) = run(&[
        "--rr", "16", "--spo2", "97", "--scale", "2", "--oxygen", "o2", "--sbp", "120", "--hr",
        "70", "--temp", "37", "--acvpu", "A", "--json",
    ]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["breakdown"][1]["score"], 3, "SpO2 97 on oxygen, scale 2");
    assert_eq!(v["breakdown"][2]["score"], 2, "on oxygen");
    assert_eq!(v["total"], 5);
}

#[test]
fn bad_or_missing_arguments_fail_with_a_clear_message() {
    let (ok, _, err) = run(&[
        "--rr", "16", "--spo2", "120", "--sbp", "120", "--hr", "70", "--temp", "37",
    ]);
    assert!(!ok);
    assert!(
        err.contains("--spo2 120 is outside the plausible range"),
        "{err}"
    );
    let (ok, _, err) = run(&["--rr", "16", "--sbp", "120", "--hr", "70", "--temp", "37"]);
    assert!(!ok);
    assert!(err.contains("--spo2"), "{err}");
    let (ok, _, err) = run(&[
        "--rr", "16", "--spo2", "97", "--sbp", "120", "--hr", "70", "--temp", "37", "--acvpu", "Z",
    ]);
    assert!(!ok);
    assert!(err.contains("A, C, V, P, U"), "{err}");
    let (ok, _, _) = run(&[
        "--rr", "16", "--spo2", "97", "--sbp", "120", "--hr", "70", "--temp", "37", "--scale", "3",
    ]);
    assert!(!ok);
}
