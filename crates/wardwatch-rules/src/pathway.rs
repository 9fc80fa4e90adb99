//! Pathways: per-cohort rule settings from `config/pathways/*.toml`.
//!
//! A configuration error must never take down monitoring: files are parsed
//! strictly (unknown fields are errors), every value is checked, and an
//! error names the file, the line and the field, so the running
//! configuration can be kept and the operator knows what to fix.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;
use wardwatch_core::Vital;

use crate::threshold::{KOfN, Scope, Severity, Threshold, RECENT};
use crate::trend::{Spo2FallRule, WeightGainRule};

/// Why a pathway file was refused.
#[derive(Debug, Error)]
pub enum PathwayError {
    /// The directory or a file could not be read (the cause is the
    /// source, so a printed chain says it once).
    #[error("cannot read {path}")]
    Io {
        /// Which file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not valid TOML, an unknown field, or a value of the wrong type
    /// (the message carries the line, column and field).
    #[error("{path}: {message}")]
    Parse {
        /// Which file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// Parsed, but a value makes no sense.
    #[error("{path}: {field}: {message}")]
    Invalid {
        /// Which file.
        path: PathBuf,
        /// The field, e.g. `thresholds[1].low`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Two files declare the same pathway name.
    #[error("{path}: pathway {name:?} is already defined in another file")]
    Duplicate {
        /// The second file.
        path: PathBuf,
        /// The name.
        name: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PathwayFile {
    name: String,
    #[serde(default)]
    description: String,
    expected_interval_mins: i64,
    news2: News2File,
    #[serde(default)]
    thresholds: Vec<ThresholdFile>,
    #[serde(default)]
    trends: TrendsFile,
    /// Per vital, the minutes expected between its readings where they
    /// differ from `expected_interval_mins` (daily weights on a pathway of
    /// hourly SpO2): each device is declared silent by its own vitals'.
    #[serde(default)]
    cadence: BTreeMap<String, i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct News2File {
    enabled: bool,
    freshness_mins: i64,
    #[serde(default = "default_news2_clear_hold")]
    clear_hold_mins: i64,
}

fn default_news2_clear_hold() -> i64 {
    60
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThresholdFile {
    vital: String,
    low: Option<f64>,
    high: Option<f64>,
    /// A single reading beyond this raises at once.
    immediate_low: Option<f64>,
    immediate_high: Option<f64>,
    severity: SeverityFile,
    persist_readings: u32,
    persist_secs: i64,
    k_of_n: Option<KOfNFile>,
    clear_margin: f64,
    clear_hold_secs: i64,
    #[serde(default)]
    scope: ScopeFile,
    guidance: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KOfNFile {
    k: u8,
    n: u8,
    window_mins: i64,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ScopeFile {
    #[default]
    Always,
    WithoutNews2,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum SeverityFile {
    Low,
    Medium,
    High,
    Emergency,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrendsFile {
    weight_gain: Option<WeightGainFile>,
    spo2_fall: Option<Spo2FallFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightGainFile {
    gain_kg: f64,
    window_days: i64,
    /// A sustained rate that raises, kg/day (0 turns the rate off).
    #[serde(default = "default_rate")]
    rate_kg_per_day: f64,
    #[serde(default = "default_rate_window")]
    rate_window_days: i64,
    #[serde(default = "default_clear_margin")]
    clear_margin_kg: f64,
}

fn default_rate() -> f64 {
    0.5
}

fn default_rate_window() -> i64 {
    4
}

fn default_clear_margin() -> f64 {
    1.0
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Spo2FallFile {
    fall_points: f64,
    sustain_mins: i64,
}

/// Checks one limit (a pathway's or a clinician's personal one): returns
/// the offending field and what is wrong.
pub fn check_threshold(vital: Vital, t: &Threshold) -> Result<(), (&'static str, String)> {
    if t.low.is_none() && t.high.is_none() {
        return Err(("low", "a threshold needs low, high or both".into()));
    }
    if let (Some(lo), Some(hi)) = (t.low, t.high) {
        if lo >= hi {
            return Err(("low", format!("low {lo} must be below high {hi}")));
        }
    }
    if let Some((plo, phi)) = vital.plausible_range() {
        for (name, v) in [("low", t.low), ("high", t.high)] {
            if let Some(v) = v {
                if !(plo..=phi).contains(&v) {
                    return Err((
                        name,
                        format!("{v} is outside the plausible range {plo}–{phi} for {vital}"),
                    ));
                }
            }
        }
    }
    for (name, limit, immediate, below) in [
        ("immediate_low", t.low, t.immediate_low, true),
        ("immediate_high", t.high, t.immediate_high, false),
    ] {
        match (limit, immediate) {
            (None, Some(_)) => {
                return Err((
                    name,
                    format!("needs {} as well", if below { "low" } else { "high" }),
                ))
            }
            (Some(l), Some(i)) if (below && i > l) || (!below && i < l) => {
                return Err((
                    name,
                    format!("{i} must be at or beyond the limit {l} itself"),
                ))
            }
            _ => {}
        }
    }
    if t.persist_readings == 0 {
        return Err(("persist_readings", "must be at least 1".into()));
    }
    if let Some(r) = t.k_of_n {
        if r.k == 0 || r.k > r.n || usize::from(r.n) > RECENT || r.window_secs <= 0 {
            return Err((
                "k_of_n",
                format!("needs 1 <= k <= n <= {RECENT} and a positive window"),
            ));
        }
    }
    if t.persist_secs < 0 || t.clear_hold_secs < 0 || t.clear_margin < 0.0 {
        return Err((
            "persist_secs",
            "durations and margins must not be negative".into(),
        ));
    }
    Ok(())
}

/// One validated pathway.
#[derive(Debug, Clone, PartialEq)]
pub struct Pathway {
    /// Its name (patients refer to it).
    pub name: String,
    /// For people.
    pub description: String,
    /// Expected seconds between readings; `no_data` after twice this.
    pub expected_interval_secs: i64,
    /// NEWS2 scored for this pathway.
    pub news2_enabled: bool,
    /// How long a reading counts towards NEWS2, seconds.
    pub news2_freshness_secs: i64,
    /// An open NEWS2 flag clears only after scores of 0 for this long,
    /// seconds, so a patient hovering between 0 and 1 is not re-flagged
    /// on every reading.
    pub news2_clear_hold_secs: i64,
    /// Single-vital limits.
    pub thresholds: Vec<(Vital, Threshold)>,
    /// Heart-failure weight trend, if monitored.
    pub weight_gain: Option<WeightGainRule>,
    /// SpO2 fall from the patient's median, if monitored.
    pub spo2_fall: Option<Spo2FallRule>,
    /// Per vital, the expected seconds between readings where they differ
    /// from `expected_interval_secs`.
    pub cadence: BTreeMap<Vital, i64>,
}

impl Pathway {
    /// Expected seconds between readings of `vital`.
    pub fn cadence_secs(&self, vital: Vital) -> i64 {
        self.cadence
            .get(&vital)
            .copied()
            .unwrap_or(self.expected_interval_secs)
    }
}

impl Pathway {
    /// Parses and validates one file's text.
    pub fn parse(path: &Path, text: &str) -> Result<Self, PathwayError> {
        let f: PathwayFile = toml::from_str(text).map_err(|e| PathwayError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim().to_string(),
        })?;
        let invalid = |field: &str, message: String| PathwayError::Invalid {
            path: path.to_path_buf(),
            field: field.to_string(),
            message,
        };
        if f.name.trim().is_empty() {
            return Err(invalid("name", "must not be empty".into()));
        }
        if !(1..=7 * 24 * 60).contains(&f.expected_interval_mins) {
            return Err(invalid(
                "expected_interval_mins",
                format!(
                    "{} is not between 1 minute and 7 days",
                    f.expected_interval_mins
                ),
            ));
        }
        if !(1..=24 * 60).contains(&f.news2.freshness_mins) {
            return Err(invalid(
                "news2.freshness_mins",
                format!("{} is not between 1 and 1440", f.news2.freshness_mins),
            ));
        }
        if !(0..=24 * 60).contains(&f.news2.clear_hold_mins) {
            return Err(invalid(
                "news2.clear_hold_mins",
                format!("{} is not between 0 and 1440", f.news2.clear_hold_mins),
            ));
        }
        let mut thresholds = Vec::new();
        for (i, t) in f.thresholds.iter().enumerate() {
            let field = |name: &str| format!("thresholds[{i}].{name}");
            let vital = Vital::from_name(&t.vital)
                .ok_or_else(|| invalid(&field("vital"), format!("unknown vital {:?}", t.vital)))?;
            let threshold = Threshold {
                low: t.low,
                high: t.high,
                immediate_low: t.immediate_low,
                immediate_high: t.immediate_high,
                severity: match t.severity {
                    SeverityFile::Low => Severity::Low,
                    SeverityFile::Medium => Severity::Medium,
                    SeverityFile::High => Severity::High,
                    SeverityFile::Emergency => Severity::Emergency,
                },
                persist_readings: t.persist_readings,
                persist_secs: t.persist_secs,
                k_of_n: t.k_of_n.as_ref().map(|k| KOfN {
                    k: k.k,
                    n: k.n,
                    window_secs: k.window_mins.saturating_mul(60),
                }),
                clear_margin: t.clear_margin,
                clear_hold_secs: t.clear_hold_secs,
                scope: match t.scope {
                    ScopeFile::Always => Scope::Always,
                    ScopeFile::WithoutNews2 => Scope::WithoutNews2,
                },
                guidance: t.guidance.as_deref().map(Into::into),
            };
            check_threshold(vital, &threshold)
                .map_err(|(name, message)| invalid(&field(name), message))?;
            // Persistence sized to the cadence: waiting for more readings
            // than the pathway expects within the persistence time would,
            // at spot-check cadences, mean waiting hours.
            if threshold.persist_readings > 1
                && threshold.persist_secs <= 0
                && f.expected_interval_mins > 60
            {
                return Err(invalid(
                    &field("persist_secs"),
                    format!(
                        "with readings every {} min, persist_readings = {} needs a persist_secs that raises on the clock",
                        f.expected_interval_mins, threshold.persist_readings
                    ),
                ));
            }
            thresholds.push((vital, threshold));
        }
        let weight_gain = match &f.trends.weight_gain {
            Some(w)
                if w.gain_kg <= 0.0
                    || w.window_days < 1
                    || w.rate_kg_per_day < 0.0
                    || !(3..=14).contains(&w.rate_window_days)
                    || !(0.0..w.gain_kg).contains(&w.clear_margin_kg) =>
            {
                return Err(invalid(
                    "trends.weight_gain",
                    "gain_kg must be positive, window_days at least 1, rate_kg_per_day 0 or more, \
                     rate_window_days 3 to 14 and clear_margin_kg from 0 to below gain_kg"
                        .into(),
                ))
            }
            Some(w) => Some(WeightGainRule {
                gain_kg: w.gain_kg,
                window_secs: w.window_days * 86_400,
                rate_kg_per_day: (w.rate_kg_per_day > 0.0).then_some(w.rate_kg_per_day),
                rate_window_secs: w.rate_window_days * 86_400,
                clear_margin_kg: w.clear_margin_kg,
            }),
            None => None,
        };
        let spo2_fall = match &f.trends.spo2_fall {
            Some(s) if s.fall_points <= 0.0 || s.sustain_mins < 1 => {
                return Err(invalid(
                    "trends.spo2_fall",
                    "fall_points must be positive and sustain_mins at least 1".into(),
                ))
            }
            Some(s) => Some(Spo2FallRule {
                fall_points: s.fall_points,
                sustain_secs: s.sustain_mins * 60,
            }),
            None => None,
        };
        let mut cadence = BTreeMap::new();
        for (name, mins) in &f.cadence {
            let field = format!("cadence.{name}");
            let vital = Vital::from_name(name)
                .ok_or_else(|| invalid(&field, format!("unknown vital {name:?}")))?;
            if !(1..=7 * 24 * 60).contains(mins) {
                return Err(invalid(
                    &field,
                    format!("{mins} is not between 1 minute and 7 days"),
                ));
            }
            cadence.insert(vital, mins * 60);
        }
        Ok(Self {
            name: f.name,
            description: f.description,
            expected_interval_secs: f.expected_interval_mins * 60,
            news2_enabled: f.news2.enabled,
            news2_freshness_secs: f.news2.freshness_mins * 60,
            news2_clear_hold_secs: f.news2.clear_hold_mins * 60,
            thresholds,
            weight_gain,
            spo2_fall,
            cadence,
        })
    }
}

/// The pathways shipped in `config/pathways`, built into the binary so it
/// runs from any folder and after `cargo install` (a folder of files, when
/// present, replaces them).
const BUILT_IN: &[(&str, &str)] = &[
    (
        "copd.toml",
        include_str!("../../../config/pathways/copd.toml"),
    ),
    (
        "covid-oximetry.toml",
        include_str!("../../../config/pathways/covid-oximetry.toml"),
    ),
    (
        "general.toml",
        include_str!("../../../config/pathways/general.toml"),
    ),
    (
        "heart-failure.toml",
        include_str!("../../../config/pathways/heart-failure.toml"),
    ),
    (
        "post-discharge.toml",
        include_str!("../../../config/pathways/post-discharge.toml"),
    ),
];

/// The built-in pathways (the shipped files as they were at build time).
pub fn built_in() -> Result<BTreeMap<String, Pathway>, PathwayError> {
    collect(
        BUILT_IN
            .iter()
            .map(|(file, text)| (PathBuf::from(format!("built-in/{file}")), text.to_string())),
    )
}

/// Loads every `*.toml` in a directory; all or nothing.
pub fn load_dir(dir: &Path) -> Result<BTreeMap<String, Pathway>, PathwayError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PathwayError::Io { path, source }
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut texts = Vec::with_capacity(files.len());
    for path in files {
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        texts.push((path, text));
    }
    collect(texts)
}

/// Parses (file, text) pairs into a set keyed by pathway name.
fn collect(
    texts: impl IntoIterator<Item = (PathBuf, String)>,
) -> Result<BTreeMap<String, Pathway>, PathwayError> {
    let mut out = BTreeMap::new();
    for (path, text) in texts {
        let p = Pathway::parse(&path, &text)?;
        if out.contains_key(&p.name) {
            return Err(PathwayError::Duplicate { path, name: p.name });
        }
        out.insert(p.name.clone(), p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_pathways() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config/pathways")
    }

    #[test]
    fn the_built_in_pathways_are_the_shipped_files() {
        // Every shipped file is built in, and each parses to the same pathway.
        let files = load_dir(&repo_pathways()).unwrap();
        let built_in = built_in().unwrap();
        assert_eq!(built_in, files);
        assert_eq!(
            std::fs::read_dir(repo_pathways()).unwrap().count(),
            BUILT_IN.len()
        );
    }

    #[test]
    fn a_missing_folder_names_itself_and_its_cause_once() {
        let e = load_dir(Path::new("/nonexistent/pathways")).unwrap_err();
        assert_eq!(e.to_string(), "cannot read /nonexistent/pathways");
        let cause = std::error::Error::source(&e).map(|c| c.to_string());
        assert!(cause.is_some_and(|c| c.contains("No such file")));
    }

    #[test]
    fn the_shipped_pathways_load() {
        let all = load_dir(&repo_pathways()).unwrap();
        let names: Vec<_> = all.keys().cloned().collect();
        assert_eq!(
            names,
            [
                "copd",
                "covid-oximetry",
                "general",
                "heart-failure",
                "post-discharge"
            ]
        );
        let copd = &all["copd"];
        assert_eq!(copd.thresholds[0].0, Vital::Spo2);
        assert_eq!(copd.thresholds[0].1.low, Some(88.0));
        assert!(copd.spo2_fall.is_some());
        let hf = &all["heart-failure"];
        assert_eq!(hf.expected_interval_secs, 86_400);
        assert_eq!(hf.weight_gain.unwrap().gain_kg, 2.0);
        assert!(!all["covid-oximetry"].news2_enabled);
    }

    #[test]
    fn errors_name_the_file_the_line_and_the_field() {
        let p = Path::new("config/pathways/bad.toml");
        let e = Pathway::parse(
            p,
            "name = \"x\"\nexpected_interval_mins = 60\n[news2]\nenabled = true\nfreshness_mins = 60\nfreshnes = 1\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("bad.toml") && e.contains("line 6") && e.contains("freshnes"),
            "{e}"
        );

        let e = Pathway::parse(
            p,
            "name = \"x\"\nexpected_interval_mins = 60\n[news2]\nenabled = true\nfreshness_mins = 60\n\
             [[thresholds]]\nvital = \"spo2\"\nlow = 95.0\nhigh = 90.0\nseverity = \"high\"\n\
             persist_readings = 1\npersist_secs = 0\nclear_margin = 1.0\nclear_hold_secs = 0\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("thresholds[0].low") && e.contains("below high"),
            "{e}"
        );

        let e = Pathway::parse(
            p,
            "name = \"x\"\nexpected_interval_mins = 60\n[news2]\nenabled = true\nfreshness_mins = 60\n\
             [[thresholds]]\nvital = \"pulse\"\nhigh = 120.0\nseverity = \"high\"\n\
             persist_readings = 1\npersist_secs = 0\nclear_margin = 1.0\nclear_hold_secs = 0\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("thresholds[0].vital") && e.contains("pulse"),
            "{e}"
        );

        let e = Pathway::parse(
            p,
            "name = \"x\"\nexpected_interval_mins = 60\n[news2]\nenabled = true\nfreshness_mins = 60\n\
             [[thresholds]]\nvital = \"spo2\"\nlow = 40.0\nseverity = \"high\"\n\
             persist_readings = 1\npersist_secs = 0\nclear_margin = 1.0\nclear_hold_secs = 0\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("plausible range"), "{e}");
    }

    #[test]
    fn a_duplicate_pathway_name_is_refused() {
        let dir = std::env::temp_dir().join(format!("ww-pathways-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let body = "name = \"same\"\nexpected_interval_mins = 60\n[news2]\nenabled = true\nfreshness_mins = 60\n";
        std::fs::write(dir.join("a.toml"), body).unwrap();
        std::fs::write(dir.join("b.toml"), body).unwrap();
        let e = load_dir(&dir).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).ok();
        assert!(e.contains("b.toml") && e.contains("already defined"), "{e}");
    }
}
