//! Fuzzing on the stable toolchain (no nightly, so no libFuzzer): a seeded
//! mutation fuzzer over what input reaches first, the SenML and FHIR
//! decoders, MQTT topic parsing, and the pathway and team-policy loaders.
//!
//! Each [`Target`] takes bytes and must never panic; the decoders must also
//! keep their promises on whatever comes in (every accepted reading finite
//! and plausible, every refusal with a reason). Inputs grow from a seed
//! corpus (`corpus/<target>/`, plus the shipped configuration for the
//! loaders) by byte-level and JSON-aware mutations: flips, cuts, splices,
//! duplicated records, deep nesting, huge and non-finite numbers, times at
//! the edges of the representable range. No coverage guidance: breadth
//! comes from the mutations and from running long (`scripts/fuzz.sh`).
//!
//! A panicking input is written to `target/fuzz-crashes/<target>/` and the
//! run fails; each one found becomes a regression test.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use wardwatch_core::DeviceId;
use wardwatch_ingest::decode::{decode, PayloadFormat, ValidationPolicy};

/// What is fuzzed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// SenML packs.
    Senml,
    /// FHIR Observations and Bundles.
    Fhir,
    /// MQTT topics.
    Topic,
    /// Pathway files (TOML).
    Pathway,
    /// Team policy files (TOML).
    Team,
}

impl Target {
    /// Every target.
    pub const ALL: [Target; 5] = [
        Target::Senml,
        Target::Fhir,
        Target::Topic,
        Target::Pathway,
        Target::Team,
    ];

    /// Its name (corpus folder, script argument).
    pub fn name(self) -> &'static str {
        match self {
            Target::Senml => "senml",
            Target::Fhir => "fhir",
            Target::Topic => "topic",
            Target::Pathway => "pathway",
            Target::Team => "team",
        }
    }

    /// Looks a target up by name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Runs one input; `Err` says which promise an input broke (a panic is
    /// caught by the caller).
    pub fn run(self, input: &[u8]) -> Result<(), String> {
        match self {
            Target::Senml => decoded(PayloadFormat::Senml, input),
            Target::Fhir => decoded(PayloadFormat::Fhir, input),
            Target::Topic => {
                let _ = wardwatch_ingest::topic::parse(&String::from_utf8_lossy(input));
                Ok(())
            }
            Target::Pathway => {
                let text = String::from_utf8_lossy(input);
                let _ = wardwatch_rules::pathway::Pathway::parse(Path::new("fuzz.toml"), &text);
                Ok(())
            }
            Target::Team => {
                let text = String::from_utf8_lossy(input);
                let _ = wardwatch_alerting::policy::parse(Path::new("fuzz.toml"), &text);
                Ok(())
            }
        }
    }
}

/// Decodes and checks the decoder's promises.
fn decoded(format: PayloadFormat, input: &[u8]) -> Result<(), String> {
    let device = DeviceId::new("fuzz-dev").map_err(|e| e.to_string())?;
    let now = Utc
        .with_ymd_and_hms(2026, 1, 5, 8, 0, 0)
        .single()
        .ok_or("a fixed clock")?;
    let policy = ValidationPolicy::default();
    let d = decode(format, &device, input, now, now, &policy);
    for r in &d.readings {
        if !r.value.is_finite() {
            return Err(format!("a non-finite value was accepted: {r:?}"));
        }
        if let Some((lo, hi)) = r.vital.plausible_range() {
            if !(lo..=hi).contains(&r.value) {
                return Err(format!("an implausible value was accepted: {r:?}"));
            }
        }
        if r.time > now + policy.max_future_skew {
            return Err(format!("a future reading was accepted: {r:?}"));
        }
    }
    for q in &d.rejections {
        if q.detail.is_empty() {
            return Err(format!("a refusal without a reason: {q:?}"));
        }
    }
    let bounded = policy.max_rejections + 2;
    let records = d
        .rejections
        .iter()
        .filter(|q| q.record_index.is_some())
        .count();
    if records > bounded {
        return Err(format!("{records} record refusals: the cap did not hold"));
    }
    Ok(())
}

/// Seeds for a target: its corpus folder, and for the loaders the shipped
/// configuration files.
pub fn seeds(target: Target) -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs: Vec<PathBuf> = vec![root.join("corpus").join(target.name())];
    match target {
        Target::Pathway => dirs.push(root.join("../../config/pathways")),
        Target::Team => dirs.push(root.join("../../config/teams")),
        _ => {}
    }
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for f in files {
            if let Ok(bytes) = std::fs::read(&f) {
                out.push(bytes);
            }
        }
    }
    if out.is_empty() {
        out.push(b"[]".to_vec());
    }
    out
}

/// Values that sit at an edge somewhere: numbers, times, strings.
const EDGES: &[&str] = &[
    "0",
    "-0",
    "1e308",
    "-1e308",
    "1e-320",
    "NaN",
    "Infinity",
    "-Infinity",
    "18446744073709551616",
    "-9223372036854775809",
    "268435455",
    "268435456",
    "253402300800",
    "-62135596801",
    "\"9999-12-31T23:59:59Z\"",
    "\"0000-01-01T00:00:00Z\"",
    "\"2026-13-45T25:61:61Z\"",
    "\"\"",
    "null",
    "true",
    "[]",
    "{}",
    "\"\\u0000\"",
    "\"\\ud800\"",
];

/// Mutates `input` in place (one to four mutations).
pub fn mutate(rng: &mut StdRng, input: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    for _ in 0..rng.random_range(1..=4) {
        let len = input.len();
        match rng.random_range(0..10) {
            // Flip a bit.
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                input[i] ^= 1 << rng.random_range(0..8);
            }
            // Cut a range.
            1 if len > 0 => {
                let a = rng.random_range(0..len);
                let b = rng.random_range(a..=len.min(a + 64));
                input.drain(a..b);
            }
            // Duplicate a range (records repeated).
            2 if len > 0 => {
                let a = rng.random_range(0..len);
                let b = rng.random_range(a..=len.min(a + 256));
                let chunk = input[a..b].to_vec();
                let at = rng.random_range(0..=input.len());
                input.splice(at..at, chunk);
            }
            // Splice in part of another seed.
            3 => {
                let other = &corpus[rng.random_range(0..corpus.len())];
                if !other.is_empty() {
                    let a = rng.random_range(0..other.len());
                    let b = rng.random_range(a..=other.len());
                    let at = rng.random_range(0..=input.len());
                    input.splice(at..at, other[a..b].iter().copied());
                }
            }
            // Replace a number or token with an edge value.
            4 | 5 => {
                let edge = EDGES[rng.random_range(0..EDGES.len())].as_bytes();
                let digits: Vec<usize> = input
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| b.is_ascii_digit())
                    .map(|(i, _)| i)
                    .collect();
                if let Some(&start) = digits.get(rng.random_range(0..digits.len().max(1))) {
                    let mut end = start;
                    while end < input.len()
                        && (input[end].is_ascii_digit() || b".eE+-".contains(&input[end]))
                    {
                        end += 1;
                    }
                    input.splice(start..end, edge.iter().copied());
                } else {
                    input.extend_from_slice(edge);
                }
            }
            // Nest deeply.
            6 => {
                let depth = rng.random_range(1..2000);
                let at = rng.random_range(0..=input.len());
                let open = if rng.random_bool(0.5) { b'[' } else { b'{' };
                input.splice(at..at, std::iter::repeat_n(open, depth));
            }
            // Insert a random byte.
            7 => {
                let at = rng.random_range(0..=input.len());
                input.insert(at, rng.random());
            }
            // Multiply the whole input (huge packs).
            8 if len > 0 && len < 64 * 1024 => {
                let copy = input.clone();
                for _ in 0..rng.random_range(1..8) {
                    input.push(b',');
                    input.extend_from_slice(&copy);
                }
            }
            // Truncate.
            _ if len > 0 => input.truncate(rng.random_range(0..len)),
            _ => input.push(b'['),
        }
    }
    // Past the payload limit the decoders refuse whole; stay around it.
    input.truncate(300 * 1024);
}

/// The outcome of a fuzzing run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Inputs run.
    pub runs: u64,
    /// Inputs that panicked or broke a promise, with what happened.
    pub failures: Vec<(Vec<u8>, String)>,
}

/// Fuzzes `target` from `seed` until `runs` inputs or `budget` elapsed,
/// whichever comes first.
pub fn fuzz(target: Target, seed: u64, runs: u64, budget: Duration) -> Outcome {
    let corpus = seeds(target);
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let mut out = Outcome {
        runs: 0,
        failures: Vec::new(),
    };
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    while out.runs < runs && started.elapsed() < budget {
        let mut input = corpus[rng.random_range(0..corpus.len())].clone();
        mutate(&mut rng, &mut input, &corpus);
        out.runs += 1;
        let result = catch_unwind(AssertUnwindSafe(|| target.run(&input)));
        let failure = match result {
            Ok(Ok(())) => None,
            Ok(Err(broken)) => Some(broken),
            Err(panic) => Some(
                panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".into()),
            ),
        };
        if let Some(f) = failure {
            save_crash(target, &input);
            out.failures.push((input, f));
            if out.failures.len() >= 10 {
                break;
            }
        }
    }
    std::panic::set_hook(hook);
    out
}

/// Keeps a failing input where a person can replay it.
fn save_crash(target: Target, input: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/fuzz-crashes")
        .join(target.name());
    if std::fs::create_dir_all(&dir).is_ok() {
        let name = format!("{:016x}", fnv(input));
        let _ = std::fs::write(dir.join(name), input);
    }
}

/// A small stable hash for crash file names.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}
