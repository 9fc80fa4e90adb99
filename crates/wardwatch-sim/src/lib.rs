//! A simulated virtual ward, as the MQTT messages its devices would send.
//!
//! Each patient has a pathway, their own baselines, measurement noise, a
//! daily rhythm (pulse and temperature peak in the afternoon), occasional
//! artefacts (a probe taken off reads SpO2 0, which wardwatch quarantines)
//! and drop-outs (a missed reading). A few follow a script: sepsis (pulse,
//! breathing and temperature up, systolic pressure down), a COPD
//! exacerbation (SpO2 down, breathing up) and heart failure (weight up over
//! days: sent as history at the start, so days pass in seconds).
//!
//! Stable patients stay inside the NEWS2 0 bands and their pathway's
//! limits, so any clinical alert the engine raises for them is a false
//! alarm: the demo and the tests use that to check both failure modes, the
//! missed deterioration and the alert that should not have fired.
//!
//! Pure: the caller owns the clock and the broker. Every patient draws
//! from their own generator seeded by (seed, index), so a run is
//! reproducible and one patient's values do not depend on the others.

pub mod home;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use wardwatch_core::Vital;

/// What happens to a patient during the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Recovering as expected: no clinical alert should fire.
    Stable,
    /// Pulse, breathing and temperature climb, systolic pressure falls.
    Sepsis,
    /// SpO2 falls below the COPD target, breathing quickens.
    CopdExacerbation,
    /// Weight up by about 0.9 kg a day over the last three days.
    HeartFailureGain,
}

impl Scenario {
    /// The name used in logs and summaries.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stable => "stable",
            Self::Sepsis => "sepsis",
            Self::CopdExacerbation => "copd_exacerbation",
            Self::HeartFailureGain => "heart_failure_weight_gain",
        }
    }

    /// True when the engine should alert for this patient.
    pub fn deteriorates(self) -> bool {
        self != Self::Stable
    }
}

/// How a patient's device speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// SenML pack on `wardwatch/v1/devices/{id}/readings`.
    Senml,
    /// FHIR R4 Bundle of Observations on `…/observations`.
    Fhir,
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct WardPlan {
    /// Seed: the same seed and clock give the same messages.
    pub seed: u64,
    /// How many patients.
    pub patients: usize,
    /// Prefix of patient and device ids.
    pub prefix: String,
    /// Time from the start until scripted deteriorations begin.
    pub onset: Duration,
    /// Time a deterioration takes to reach its worst.
    pub ramp: Duration,
    /// Chance that a message carries a probe-off artefact.
    pub artefact_rate: f64,
    /// Chance that a device misses a reading.
    pub dropout_rate: f64,
}

impl Default for WardPlan {
    fn default() -> Self {
        Self {
            seed: 1,
            patients: 20,
            prefix: "sim-".into(),
            onset: Duration::seconds(20),
            ramp: Duration::seconds(40),
            artefact_rate: 0.01,
            dropout_rate: 0.02,
        }
    }
}

/// One patient's usual values.
#[derive(Debug, Clone, Copy)]
struct Baseline {
    heart_rate: f64,
    respiratory_rate: f64,
    spo2: f64,
    systolic_bp: f64,
    diastolic_bp: f64,
    temperature: f64,
    weight: f64,
    /// Hours by which this patient's daily rhythm is shifted.
    rhythm_shift: f64,
}

/// A simulated patient and their device.
#[derive(Debug, Clone)]
pub struct SimPatient {
    /// Patient id.
    pub patient_id: String,
    /// Device id (the MQTT topic's).
    pub device_id: String,
    /// Monitoring pathway.
    pub pathway: &'static str,
    /// What happens to them.
    pub scenario: Scenario,
    /// How their device speaks.
    pub format: Format,
    baseline: Baseline,
    rng: StdRng,
}

impl SimPatient {
    /// COPD patients are scored on SpO2 Scale 2 (a clinician's decision the
    /// simulator records when it enrols them).
    pub fn spo2_scale(&self) -> i16 {
        if self.pathway == "copd" {
            2
        } else {
            1
        }
    }
}

/// One MQTT message to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Topic.
    pub topic: String,
    /// Payload (JSON).
    pub payload: Vec<u8>,
    /// Index of the patient who sent it.
    pub patient: usize,
}

/// The ward: patients and the start of the run.
#[derive(Debug, Clone)]
pub struct Ward {
    plan: WardPlan,
    patients: Vec<SimPatient>,
    started: DateTime<Utc>,
}

/// Pathway, scenario and format by position in a block of ten, so any ward
/// of ten or more has each scripted deterioration and a mix of stable
/// patients on every pathway, in both formats.
const LAYOUT: [(&str, Scenario, Format); 10] = [
    ("general", Scenario::Stable, Format::Senml),
    ("copd", Scenario::Stable, Format::Senml),
    ("post-discharge", Scenario::Stable, Format::Fhir),
    ("heart-failure", Scenario::Stable, Format::Senml),
    ("covid-oximetry", Scenario::Stable, Format::Senml),
    ("general", Scenario::Stable, Format::Fhir),
    ("general", Scenario::Sepsis, Format::Senml),
    ("copd", Scenario::CopdExacerbation, Format::Fhir),
    ("heart-failure", Scenario::HeartFailureGain, Format::Senml),
    ("post-discharge", Scenario::Stable, Format::Senml),
];

/// A normal draw (Box–Muller), so noise is symmetric and mostly small.
fn normal(rng: &mut StdRng, sd: f64) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random_range(0.0..1.0);
    sd * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn round_to(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

impl Ward {
    /// A ward as `plan` describes it, starting at `started`.
    pub fn new(plan: WardPlan, started: DateTime<Utc>) -> Self {
        let patients = (0..plan.patients)
            .map(|i| {
                let (pathway, scenario, format) = LAYOUT[i % LAYOUT.len()];
                let mut rng = StdRng::seed_from_u64(
                    plan.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                );
                let copd = pathway == "copd";
                let baseline = Baseline {
                    heart_rate: rng.random_range(62.0..78.0),
                    respiratory_rate: rng.random_range(14.0..17.0),
                    spo2: if copd {
                        rng.random_range(89.5..91.5)
                    } else {
                        rng.random_range(96.5..98.5)
                    },
                    systolic_bp: rng.random_range(118.0..138.0),
                    diastolic_bp: rng.random_range(68.0..84.0),
                    temperature: rng.random_range(36.5..37.0),
                    weight: rng.random_range(60.0..95.0),
                    rhythm_shift: rng.random_range(-2.0..2.0),
                };
                SimPatient {
                    patient_id: format!("{}p{i:03}", plan.prefix),
                    device_id: format!("{}d{i:03}", plan.prefix),
                    pathway,
                    scenario,
                    format,
                    baseline,
                    rng,
                }
            })
            .collect();
        Self {
            plan,
            patients,
            started,
        }
    }

    /// The patients.
    pub fn patients(&self) -> &[SimPatient] {
        &self.patients
    }

    /// When the run started.
    pub fn started(&self) -> DateTime<Utc> {
        self.started
    }

    /// Daily weights of heart-failure patients for the `days` days up to
    /// the start, sent at once: days of history in a second.
    pub fn history(&mut self, days: u32) -> Vec<Message> {
        let started = self.started;
        let mut out = Vec::new();
        for (i, p) in self.patients.iter_mut().enumerate() {
            if p.pathway != "heart-failure" {
                continue;
            }
            for d in (0..=days).rev() {
                let at = started - Duration::days(i64::from(d)) - Duration::minutes(5);
                let trend = if p.scenario == Scenario::HeartFailureGain {
                    -0.9 * f64::from(d)
                } else {
                    0.0
                };
                let kg = round_to(p.baseline.weight + trend + normal(&mut p.rng, 0.15), 1);
                out.push(message(i, p, at, &[(Vital::BodyWeight, Value::Num(kg))]));
            }
        }
        out
    }

    /// Each patient's reading set at `now` (a missed reading leaves a
    /// patient out).
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<Message> {
        let severity = |p: &SimPatient| -> f64 {
            if !matches!(p.scenario, Scenario::Sepsis | Scenario::CopdExacerbation) {
                return 0.0;
            }
            let into = (now - self.started - self.plan.onset).num_milliseconds() as f64;
            let ramp = self.plan.ramp.num_milliseconds().max(1) as f64;
            (into / ramp).clamp(0.0, 1.0)
        };
        let mut out = Vec::with_capacity(self.patients.len());
        for i in 0..self.patients.len() {
            let f = severity(&self.patients[i]);
            let p = &mut self.patients[i];
            // Draw the same numbers whether or not the reading is sent, so
            // drop-outs and artefacts do not shift later values.
            let dropped = p.rng.random_bool(self.plan.dropout_rate.clamp(0.0, 1.0));
            let artefact = p.rng.random_bool(self.plan.artefact_rate.clamp(0.0, 1.0));
            let set = vitals(p, now, f, artefact);
            if !dropped {
                out.push(message(i, p, now, &set));
            }
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Value {
    Num(f64),
    Text(&'static str),
    Bool(bool),
}

/// One reading set: the pathway's vitals, with rhythm, noise and the
/// deterioration at fraction `f` of its worst.
fn vitals(p: &mut SimPatient, now: DateTime<Utc>, f: f64, artefact: bool) -> Vec<(Vital, Value)> {
    let b = p.baseline;
    let rng = &mut p.rng;
    // Daily rhythm: highest around 16:00, lowest around 04:00.
    let hour = (now.timestamp() as f64 / 3600.0 + b.rhythm_shift).rem_euclid(24.0);
    let rhythm = ((hour - 10.0) / 24.0 * 2.0 * std::f64::consts::PI).sin();
    let mix = |stable: f64, worst: f64| stable * (1.0 - f) + worst * f;
    let stable = f == 0.0;
    let copd = p.pathway == "copd";
    // Stable patients are kept inside the NEWS2 0 bands (and, on COPD,
    // inside the 88–92 target): they must never alert.
    let clamp = |x: f64, lo: f64, hi: f64| if stable { x.clamp(lo, hi) } else { x };
    let (hr_worst, rr_worst, spo2_worst, sbp_worst, temp_worst) = match p.scenario {
        Scenario::Sepsis => (128.0, 27.0, 93.0, 90.0, 39.3),
        Scenario::CopdExacerbation => (104.0, 25.0, 82.0, b.systolic_bp, b.temperature),
        _ => (
            b.heart_rate,
            b.respiratory_rate,
            b.spo2,
            b.systolic_bp,
            b.temperature,
        ),
    };
    let hr = clamp(
        mix(b.heart_rate, hr_worst) + 5.0 * rhythm + normal(rng, 2.5),
        55.0,
        88.0,
    )
    .round();
    let rr = clamp(
        mix(b.respiratory_rate, rr_worst) + normal(rng, 0.8),
        12.0,
        20.0,
    )
    .round();
    let spo2_lo = if copd { 88.0 } else { 96.0 };
    let spo2_hi = if copd { 92.0 } else { 100.0 };
    let spo2 = clamp(mix(b.spo2, spo2_worst) + normal(rng, 0.6), spo2_lo, spo2_hi)
        .round()
        .min(100.0);
    let sbp = clamp(
        mix(b.systolic_bp, sbp_worst) + normal(rng, 4.0),
        112.0,
        160.0,
    )
    .round();
    let dbp = clamp(b.diastolic_bp + normal(rng, 3.0), 60.0, 95.0).round();
    let temp = round_to(
        clamp(
            mix(b.temperature, temp_worst) + 0.25 * rhythm + normal(rng, 0.1),
            36.2,
            37.8,
        ),
        1,
    );
    // A probe taken off reads 0: implausible, so quarantined, never scored.
    let spo2 = if artefact { 0.0 } else { spo2 };
    match p.pathway {
        // A pulse oximeter only.
        "covid-oximetry" => vec![
            (Vital::Spo2, Value::Num(spo2)),
            (Vital::HeartRate, Value::Num(hr)),
        ],
        _ => vec![
            (Vital::RespiratoryRate, Value::Num(rr)),
            (Vital::Spo2, Value::Num(spo2)),
            (Vital::SupplementalOxygen, Value::Bool(false)),
            (Vital::SystolicBp, Value::Num(sbp)),
            (Vital::DiastolicBp, Value::Num(dbp)),
            (Vital::HeartRate, Value::Num(hr)),
            (Vital::Consciousness, Value::Text("A")),
            (Vital::BodyTemperature, Value::Num(temp)),
        ],
    }
}

/// The message a device sends for one reading set.
fn message(index: usize, p: &SimPatient, at: DateTime<Utc>, set: &[(Vital, Value)]) -> Message {
    match p.format {
        Format::Senml => {
            let records: Vec<serde_json::Value> = set
                .iter()
                .enumerate()
                .map(|(j, (vital, value))| {
                    let mut r = serde_json::json!({"n": vital.as_str()});
                    if j == 0 {
                        r["bn"] = format!("urn:dev:sim:{}:", p.device_id).into();
                        r["bt"] = (at.timestamp_millis() as f64 / 1000.0).into();
                    }
                    match value {
                        Value::Num(x) => {
                            r["v"] = (*x).into();
                            r["u"] = vital.canonical_unit().unwrap_or("").into();
                        }
                        Value::Text(s) => r["vs"] = (*s).into(),
                        Value::Bool(b) => r["vb"] = (*b).into(),
                    }
                    r
                })
                .collect();
            Message {
                topic: format!("wardwatch/v1/devices/{}/readings", p.device_id),
                payload: serde_json::Value::Array(records).to_string().into_bytes(),
                patient: index,
            }
        }
        Format::Fhir => {
            let when = at.to_rfc3339_opts(SecondsFormat::Millis, true);
            let entries: Vec<serde_json::Value> = set
                .iter()
                .filter_map(|(vital, value)| {
                    // Vitals without a LOINC code (on oxygen) are not sent
                    // as FHIR; the care plan says the patient is on air.
                    let code = vital.loinc_codes().first()?;
                    let mut o = serde_json::json!({
                        "resourceType": "Observation",
                        "status": "final",
                        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
                        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                        "effectiveDateTime": when,
                        "device": {"display": format!("sim {}", p.device_id)},
                    });
                    match value {
                        Value::Num(x) => {
                            let unit = vital.canonical_unit().unwrap_or("");
                            o["valueQuantity"] = serde_json::json!({"value": x, "unit": unit,
                                "system": "http://unitsofmeasure.org", "code": unit});
                        }
                        Value::Text(s) => o["valueString"] = (*s).into(),
                        Value::Bool(b) => o["valueBoolean"] = (*b).into(),
                    }
                    Some(serde_json::json!({"resource": o}))
                })
                .collect();
            let bundle = serde_json::json!({"resourceType": "Bundle", "type": "collection", "entry": entries});
            Message {
                topic: format!("wardwatch/v1/devices/{}/observations", p.device_id),
                payload: bundle.to_string().into_bytes(),
                patient: index,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn plan(seed: u64) -> WardPlan {
        WardPlan {
            seed,
            patients: 30,
            ..WardPlan::default()
        }
    }

    /// All of a run: history, then a tick a second for `secs`.
    fn run(seed: u64, secs: i64) -> Vec<Message> {
        let mut w = Ward::new(plan(seed), start());
        let mut out = w.history(3);
        for s in 0..secs {
            out.extend(w.tick(start() + Duration::seconds(s)));
        }
        out
    }

    #[test]
    fn the_same_seed_gives_the_same_ward_and_another_seed_does_not() {
        assert_eq!(run(7, 120), run(7, 120));
        assert_ne!(run(7, 120), run(8, 120));
    }

    #[test]
    fn a_ward_of_ten_has_each_deterioration_and_both_formats() {
        let w = Ward::new(plan(1), start());
        let first_ten = &w.patients()[..10];
        for s in [
            Scenario::Sepsis,
            Scenario::CopdExacerbation,
            Scenario::HeartFailureGain,
        ] {
            assert_eq!(first_ten.iter().filter(|p| p.scenario == s).count(), 1);
        }
        assert!(first_ten.iter().any(|p| p.format == Format::Fhir));
        assert!(
            first_ten
                .iter()
                .filter(|p| p.scenario == Scenario::Stable)
                .count()
                >= 6
        );
        assert_eq!(w.patients()[1].spo2_scale(), 2);
    }

    /// Values as a map of vital → value from a SenML or FHIR payload.
    fn values(m: &Message) -> Vec<(String, f64)> {
        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        if let Some(records) = v.as_array() {
            records
                .iter()
                .filter_map(|r| Some((r["n"].as_str()?.to_string(), r["v"].as_f64()?)))
                .collect()
        } else {
            v["entry"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|e| {
                    let o = &e["resource"];
                    let code = o["code"]["coding"][0]["code"].as_str()?;
                    let vital = Vital::from_loinc(code)?;
                    Some((
                        vital.as_str().to_string(),
                        o["valueQuantity"]["value"].as_f64()?,
                    ))
                })
                .collect()
        }
    }

    #[test]
    fn stable_patients_stay_inside_the_news2_zero_bands_all_day() {
        let mut w = Ward::new(
            WardPlan {
                artefact_rate: 0.0,
                ..plan(3)
            },
            start(),
        );
        // Every ten minutes for a day: noise and rhythm at every hour.
        for k in 0..144 {
            for m in w.tick(start() + Duration::minutes(10 * k)) {
                let p = &w.patients()[m.patient];
                if p.scenario != Scenario::Stable {
                    continue;
                }
                for (vital, x) in values(&m) {
                    let (lo, hi) = match (vital.as_str(), p.pathway) {
                        ("heart_rate", _) => (51.0, 90.0),
                        ("respiratory_rate", _) => (12.0, 20.0),
                        ("spo2", "copd") => (88.0, 92.0),
                        ("spo2", _) => (96.0, 100.0),
                        ("systolic_bp", _) => (111.0, 219.0),
                        ("body_temperature", _) => (36.1, 38.0),
                        _ => (f64::MIN, f64::MAX),
                    };
                    assert!((lo..=hi).contains(&x), "{} {vital} {x}", p.patient_id);
                }
            }
        }
    }

    #[test]
    fn sepsis_reaches_its_worst_after_onset_and_ramp() {
        let mut w = Ward::new(
            WardPlan {
                artefact_rate: 0.0,
                dropout_rate: 0.0,
                ..plan(5)
            },
            start(),
        );
        let septic = w
            .patients()
            .iter()
            .position(|p| p.scenario == Scenario::Sepsis)
            .unwrap();
        let at = |w: &mut Ward, secs: i64| {
            let m = w
                .tick(start() + Duration::seconds(secs))
                .into_iter()
                .find(|m| m.patient == septic)
                .unwrap();
            values(&m)
        };
        let get = |v: &[(String, f64)], n: &str| v.iter().find(|(k, _)| k == n).unwrap().1;
        let before = at(&mut w, 10);
        assert!(get(&before, "heart_rate") <= 90.0);
        let worst = at(&mut w, 20 + 40 + 5);
        assert!(get(&worst, "heart_rate") >= 115.0, "{worst:?}");
        assert!(get(&worst, "respiratory_rate") >= 25.0, "{worst:?}");
        assert!(get(&worst, "systolic_bp") <= 100.0, "{worst:?}");
        assert!(get(&worst, "body_temperature") >= 38.8, "{worst:?}");
    }

    #[test]
    fn heart_failure_history_shows_the_gain_only_for_the_scripted_patient() {
        let mut w = Ward::new(plan(2), start());
        let history = w.history(3);
        for (i, p) in w.patients().iter().enumerate() {
            let weights: Vec<f64> = history
                .iter()
                .filter(|m| m.patient == i)
                .flat_map(values)
                .map(|(_, kg)| kg)
                .collect();
            if p.pathway != "heart-failure" {
                assert!(weights.is_empty());
                continue;
            }
            assert_eq!(weights.len(), 4);
            let gain = weights[3] - weights[0];
            if p.scenario == Scenario::HeartFailureGain {
                assert!(gain >= 2.0, "{gain}");
            } else {
                assert!(gain.abs() < 1.0, "{gain}");
            }
        }
    }

    #[test]
    fn artefacts_are_implausible_and_drop_outs_skip_a_reading() {
        let mut w = Ward::new(
            WardPlan {
                artefact_rate: 1.0,
                dropout_rate: 0.0,
                ..plan(4)
            },
            start(),
        );
        let msgs = w.tick(start());
        assert_eq!(msgs.len(), 30);
        for m in &msgs {
            let spo2 = values(m).into_iter().find(|(k, _)| k == "spo2").unwrap().1;
            assert_eq!(spo2, 0.0);
            let range = Vital::Spo2.plausible_range().unwrap();
            assert!(spo2 < range.0, "quarantined by ingest as implausible");
        }
        let mut w = Ward::new(
            WardPlan {
                dropout_rate: 1.0,
                ..plan(4)
            },
            start(),
        );
        assert!(w.tick(start()).is_empty());
    }
}
