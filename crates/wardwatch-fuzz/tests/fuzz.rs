//! A short fuzzing pass of every target (CI), or a long one:
//! `scripts/fuzz.sh <seconds> [target]` sets `WARDWATCH_FUZZ_SECS` (time
//! per target) and `WARDWATCH_FUZZ_SEED`. Without them: 3,000 inputs per
//! target from a fixed seed, so a CI failure replays exactly.

use std::time::Duration;

use wardwatch_fuzz::{fuzz, Target};

fn pass(target: Target) {
    let secs: u64 = std::env::var("WARDWATCH_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let seed: u64 = std::env::var("WARDWATCH_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    if let Ok(only) = std::env::var("WARDWATCH_FUZZ_TARGET") {
        if only != target.name() {
            return;
        }
    }
    let (runs, budget) = if secs == 0 {
        (3_000, Duration::MAX)
    } else {
        (u64::MAX, Duration::from_secs(secs))
    };
    let out = fuzz(target, seed, runs, budget);
    println!(
        "FUZZ target={} seed={seed} runs={} failures={}",
        target.name(),
        out.runs,
        out.failures.len()
    );
    let shown: Vec<String> = out
        .failures
        .iter()
        .take(3)
        .map(|(input, why)| {
            format!(
                "{why}: {}",
                String::from_utf8_lossy(&input[..input.len().min(300)])
            )
        })
        .collect();
    assert!(
        out.failures.is_empty(),
        "{} failing inputs (saved under target/fuzz-crashes/{}): {shown:#?}",
        out.failures.len(),
        target.name()
    );
}

#[test]
fn senml_decoding_never_panics_and_keeps_its_promises() {
    pass(Target::Senml);
}

#[test]
fn fhir_decoding_never_panics_and_keeps_its_promises() {
    pass(Target::Fhir);
}

#[test]
fn topic_parsing_never_panics() {
    pass(Target::Topic);
}

#[test]
fn pathway_loading_never_panics() {
    pass(Target::Pathway);
}

#[test]
fn team_policy_loading_never_panics() {
    pass(Target::Team);
}

/// The fuzzer itself finds what it is meant to: a target that panics on
/// a deeply nested input is caught and the input kept.
#[test]
fn the_mutations_reach_deep_nesting_and_edge_numbers() {
    use rand::SeedableRng;
    let corpus = wardwatch_fuzz::seeds(Target::Senml);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let (mut deep, mut edge) = (false, false);
    for _ in 0..2_000 {
        let mut input = corpus[0].clone();
        wardwatch_fuzz::mutate(&mut rng, &mut input, &corpus);
        deep |= input.windows(500).any(|w| w.iter().all(|b| *b == b'['));
        edge |= input.windows(3).any(|w| w == b"NaN");
    }
    assert!(deep && edge, "deep {deep}, edge {edge}");
}
