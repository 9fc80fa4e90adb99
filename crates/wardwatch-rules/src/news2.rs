//! NEWS2 (Royal College of Physicians, *National Early Warning Score 2*,
//! 2017), implemented to the boundary.
//!
//! Values are first rounded to the chart's precision — whole numbers, and
//! temperature to 0.1 °C — half away from zero, in decimal: a reported
//! 38.05 °C is 38.05 to the clinician even though the nearest binary double
//! is 38.04999…, so it bands as 38.1. Then each parameter is scored from the
//! chart, summed, and banded.
//!
//! A score is only as good as its inputs, so the result says what it was
//! built on: a missing consciousness level makes the score *partial* (never
//! silently "Alert"), and an oxygen status taken from the care plan rather
//! than a reading is *assumed*. [`score`] needs the five measured
//! parameters (respiration rate, SpO2, systolic BP, pulse, temperature).
//!
//! Home kits rarely measure all five, so [`score_partial`] scores what is
//! there: its total is a **lower bound** (every missing parameter can only
//! add), said so in the result and its summary, never shown as complete.

use std::fmt;

use serde::Serialize;
use thiserror::Error;

/// Level of consciousness on the ACVPU scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Acvpu {
    /// Alert.
    Alert,
    /// New confusion.
    Confusion,
    /// Responds to voice.
    Voice,
    /// Responds to pain.
    Pain,
    /// Unresponsive.
    Unresponsive,
}

impl Acvpu {
    /// From the stored numeric code (0 A, 1 C, 2 V, 3 P, 4 U); no allocation.
    pub fn from_code(code: f64) -> Option<Self> {
        match code.round() as i64 {
            0 => Some(Self::Alert),
            1 => Some(Self::Confusion),
            2 => Some(Self::Voice),
            3 => Some(Self::Pain),
            4 => Some(Self::Unresponsive),
            _ => None,
        }
    }

    /// From the stored code (0 A, 1 C, 2 V, 3 P, 4 U) or a letter.
    pub fn from_letter(s: &str) -> Option<Self> {
        match s.trim().to_ascii_uppercase().as_str() {
            "A" | "0" => Some(Self::Alert),
            "C" | "1" => Some(Self::Confusion),
            "V" | "2" => Some(Self::Voice),
            "P" | "3" => Some(Self::Pain),
            "U" | "4" => Some(Self::Unresponsive),
            _ => None,
        }
    }
}

/// Which SpO2 scale applies. Scale 2 is a clinician's per-patient decision
/// (e.g. confirmed hypercapnic respiratory failure), never inferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum SpO2Scale {
    /// The default scale.
    #[default]
    One,
    /// For patients with a prescribed target range of 88–92%.
    Two,
}

/// Where the oxygen status came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum OxygenSource {
    /// A supplemental_oxygen reading.
    Reading,
    /// The care plan (no reading): the score says it assumed this.
    CarePlan,
}

/// The inputs of one NEWS2 evaluation, in canonical units.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Observations {
    /// Respiration rate, breaths per minute.
    pub respiration_rate: Option<f64>,
    /// SpO2, percent.
    pub spo2: Option<f64>,
    /// On supplemental oxygen, and where that came from.
    pub on_oxygen: Option<(bool, OxygenSource)>,
    /// Systolic blood pressure, mmHg.
    pub systolic_bp: Option<f64>,
    /// Pulse, beats per minute.
    pub pulse: Option<f64>,
    /// Level of consciousness; `None` when not assessed.
    pub consciousness: Option<Acvpu>,
    /// Temperature, °C.
    pub temperature: Option<f64>,
}

/// The seven NEWS2 parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Parameter {
    /// Respiration rate.
    RespirationRate,
    /// SpO2 (on the patient's scale).
    Spo2,
    /// Air or oxygen.
    AirOrOxygen,
    /// Systolic blood pressure.
    SystolicBp,
    /// Pulse.
    Pulse,
    /// Consciousness.
    Consciousness,
    /// Temperature.
    Temperature,
}

impl Parameter {
    /// All seven, in chart order.
    pub const ALL: [Parameter; 7] = [
        Self::RespirationRate,
        Self::Spo2,
        Self::AirOrOxygen,
        Self::SystolicBp,
        Self::Pulse,
        Self::Consciousness,
        Self::Temperature,
    ];

    /// The chart's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::RespirationRate => "respiration rate",
            Self::Spo2 => "SpO2",
            Self::AirOrOxygen => "air or oxygen",
            Self::SystolicBp => "systolic blood pressure",
            Self::Pulse => "pulse",
            Self::Consciousness => "consciousness",
            Self::Temperature => "temperature",
        }
    }
}

/// The band and the RCP's clinical response to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Band {
    /// Aggregate 0.
    Zero,
    /// Aggregate 1–4, no single parameter scoring 3.
    Low,
    /// Aggregate 1–4 with a single parameter scoring 3 ("low–medium").
    LowMedium,
    /// Aggregate 5–6.
    Medium,
    /// Aggregate 7 or more.
    High,
}

impl Band {
    /// The RCP's clinical risk wording.
    pub fn risk(self) -> &'static str {
        match self {
            Self::Zero | Self::Low => "low",
            Self::LowMedium => "low-medium",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }

    /// The RCP's clinical response for the band.
    pub fn clinical_response(self) -> &'static str {
        match self {
            Self::Zero => "Continue routine NEWS monitoring.",
            Self::Low => {
                "Inform a registered nurse, who must assess the patient and decide whether \
                 increased frequency of monitoring or escalation of care is required."
            }
            Self::LowMedium => {
                "Urgent ward-based response: the registered nurse informs the medical team \
                 caring for the patient, who will review and decide whether escalation of \
                 care is necessary."
            }
            Self::Medium => {
                "Urgent response: the registered nurse immediately informs the medical team \
                 caring for the patient and requests urgent assessment by a clinician or team \
                 with core competencies in the care of acutely ill patients; care in an \
                 environment with monitoring facilities."
            }
            Self::High => {
                "Emergency response: the registered nurse immediately informs the medical \
                 team, at least at specialist registrar level; emergency assessment by a team \
                 with critical-care competencies, including advanced airway skills; consider \
                 transfer to a level 2 or 3 care facility (HDU or ICU)."
            }
        }
    }

    /// The RCP's minimum frequency of monitoring for the band.
    pub fn monitoring_frequency(self) -> &'static str {
        match self {
            Self::Zero => "minimum 12-hourly",
            Self::Low => "minimum 4–6-hourly",
            Self::LowMedium | Self::Medium => "minimum 1-hourly",
            Self::High => "continuous monitoring of vital signs",
        }
    }
}

impl fmt::Display for Band {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.risk())
    }
}

/// One parameter's contribution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SubScore {
    /// Which parameter.
    pub parameter: Parameter,
    /// The value as scored (after rounding); `None` when not assessed.
    pub value: Option<f64>,
    /// Its score, 0–3.
    pub score: u8,
}

/// A computed NEWS2.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Score {
    /// Aggregate score.
    pub total: u8,
    /// Band.
    pub band: Band,
    /// Each parameter's sub-score, in chart order.
    pub breakdown: [SubScore; 7],
    /// The SpO2 scale used.
    pub scale: SpO2Scale,
    /// A parameter was not assessed (consciousness, or for a lower bound a
    /// measured one too): the total excludes it and may understate risk.
    pub partial: bool,
    /// A measured parameter is missing: the total is a lower bound from the
    /// parameters present, never a complete score.
    pub lower_bound: bool,
    /// Which parameters were not assessed.
    pub missing: Missing,
    /// Oxygen status came from the care plan, not a reading.
    pub oxygen_assumed: bool,
}

/// A set of [`Parameter`]s (a bit each, so [`Score`] stays `Copy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Missing(u8);

impl Missing {
    fn bit(p: Parameter) -> u8 {
        1 << Parameter::ALL.iter().position(|x| *x == p).unwrap_or(0)
    }

    /// Adds a parameter.
    pub fn insert(&mut self, p: Parameter) {
        self.0 |= Self::bit(p);
    }

    /// Whether a parameter is in the set.
    pub fn contains(&self, p: Parameter) -> bool {
        self.0 & Self::bit(p) != 0
    }

    /// None missing.
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// The parameters, in chart order.
    pub fn iter(&self) -> impl Iterator<Item = Parameter> + '_ {
        Parameter::ALL.into_iter().filter(|p| self.contains(*p))
    }

    /// Their names, for people: "respiration rate, temperature".
    pub fn names(&self) -> String {
        self.iter()
            .map(Parameter::name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Serialize for Missing {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl Score {
    /// One line for people: "NEWS2 5 (medium), partial: consciousness not
    /// assessed", or for a lower bound "partial NEWS2 at least 6 (medium or
    /// higher): not measured: respiration rate, temperature".
    pub fn summary(&self) -> String {
        if self.lower_bound {
            let mut s = format!(
                "partial NEWS2 at least {} ({} or higher), not measured: {}",
                self.total,
                self.band,
                self.missing.names()
            );
            if self.oxygen_assumed {
                s.push_str("; oxygen status assumed from the care plan");
            }
            return s;
        }
        let mut s = format!("NEWS2 {} ({})", self.total, self.band);
        if self.partial {
            s.push_str(", partial: consciousness not assessed");
        }
        if self.oxygen_assumed {
            s.push_str(", oxygen status assumed from the care plan");
        }
        s
    }
}

/// Why no score could be computed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScoreError {
    /// A required parameter has no fresh reading.
    #[error("NEWS2 needs {}: no fresh reading", .0.iter().map(|p| p.name()).collect::<Vec<_>>().join(", "))]
    Missing(Vec<Parameter>),
    /// A value is not a finite number.
    #[error("{0} is not a finite number")]
    NotFinite(&'static str),
}

/// Rounds to `places` decimals, half away from zero, as the decimal number
/// the value was written as. Going through a 9-decimal rendering absorbs
/// binary representation error (38.05 is stored as 38.0499999999999971…)
/// without moving any genuinely different value across an edge.
pub fn round_half_away(x: f64, places: u32) -> f64 {
    const NANO: f64 = 1e9;
    let places = places.min(9);
    // Far outside any vital sign's range there is no representation error
    // worth absorbing, and the integer arithmetic below would overflow.
    if !x.is_finite() || x.abs() >= 1e9 {
        return x.round();
    }
    let rendered = (x * NANO).round() as i64; // x in nano-units, exact for |x| < 1e9
    let step = 10i64.pow(9 - places);
    let half = step / 2;
    let q = if rendered >= 0 {
        (rendered + half) / step
    } else {
        (rendered - half) / step
    };
    q as f64 / 10f64.powi(places as i32)
}

fn respiration(rr: f64) -> u8 {
    match rr {
        x if x <= 8.0 => 3,
        x if x <= 11.0 => 1,
        x if x <= 20.0 => 0,
        x if x <= 24.0 => 2,
        _ => 3,
    }
}

fn spo2_scale1(s: f64) -> u8 {
    match s {
        x if x <= 91.0 => 3,
        x if x <= 93.0 => 2,
        x if x <= 95.0 => 1,
        _ => 0,
    }
}

fn spo2_scale2(s: f64, on_oxygen: bool) -> u8 {
    match s {
        x if x <= 83.0 => 3,
        x if x <= 85.0 => 2,
        x if x <= 87.0 => 1,
        x if x <= 92.0 => 0,
        _ if !on_oxygen => 0,
        x if x <= 94.0 => 1,
        x if x <= 96.0 => 2,
        _ => 3,
    }
}

fn systolic(sbp: f64) -> u8 {
    match sbp {
        x if x <= 90.0 => 3,
        x if x <= 100.0 => 2,
        x if x <= 110.0 => 1,
        x if x <= 219.0 => 0,
        _ => 3,
    }
}

fn pulse(hr: f64) -> u8 {
    match hr {
        x if x <= 40.0 => 3,
        x if x <= 50.0 => 1,
        x if x <= 90.0 => 0,
        x if x <= 110.0 => 1,
        x if x <= 130.0 => 2,
        _ => 3,
    }
}

fn temperature(t: f64) -> u8 {
    match t {
        x if x <= 35.0 => 3,
        x if x <= 36.0 => 1,
        x if x <= 38.0 => 0,
        x if x <= 39.0 => 1,
        _ => 2,
    }
}

fn consciousness(c: Acvpu) -> u8 {
    match c {
        Acvpu::Alert => 0,
        _ => 3,
    }
}

/// The band for an aggregate, given whether any single parameter scored 3.
pub fn band(total: u8, any_three: bool) -> Band {
    match total {
        0 => Band::Zero,
        7.. => Band::High,
        5 | 6 => Band::Medium,
        _ if any_three => Band::LowMedium,
        _ => Band::Low,
    }
}

/// Scores a set of observations on a scale; every measured parameter
/// (respiration, SpO2, systolic BP, pulse, temperature) is required. No
/// allocation on success.
pub fn score(obs: &Observations, scale: SpO2Scale) -> Result<Score, ScoreError> {
    let required = required(obs);
    if required.iter().any(|(_, v)| v.is_none()) {
        return Err(ScoreError::Missing(
            required
                .iter()
                .filter(|(_, v)| v.is_none())
                .map(|(p, _)| *p)
                .collect(),
        ));
    }
    score_partial(obs, scale)
}

fn required(obs: &Observations) -> [(Parameter, Option<f64>); 5] {
    [
        (Parameter::RespirationRate, obs.respiration_rate),
        (Parameter::Spo2, obs.spo2),
        (Parameter::SystolicBp, obs.systolic_bp),
        (Parameter::Pulse, obs.pulse),
        (Parameter::Temperature, obs.temperature),
    ]
}

/// Scores whatever parameters are present. With all five measured ones
/// this is [`score`]; with fewer, the result is a lower bound
/// ([`Score::lower_bound`], [`Score::missing`]): a missing parameter scores
/// 0 here and can only add. Fails only when no measured parameter is
/// present, or a value is not finite.
pub fn score_partial(obs: &Observations, scale: SpO2Scale) -> Result<Score, ScoreError> {
    let required = required(obs);
    if required.iter().all(|(_, v)| v.is_none()) {
        return Err(ScoreError::Missing(
            required.iter().map(|(p, _)| *p).collect(),
        ));
    }
    for (p, v) in required {
        if v.is_some_and(|x| !x.is_finite()) {
            return Err(ScoreError::NotFinite(p.name()));
        }
    }
    let whole = |v: Option<f64>| v.map(|x| round_half_away(x, 0));
    let rr = whole(obs.respiration_rate);
    let sp = whole(obs.spo2);
    let sbp = whole(obs.systolic_bp);
    let hr = whole(obs.pulse);
    let temp = obs.temperature.map(|t| round_half_away(t, 1));
    let (on_oxygen, oxygen_assumed) = match obs.on_oxygen {
        Some((on, OxygenSource::Reading)) => (on, false),
        Some((on, OxygenSource::CarePlan)) => (on, true),
        None => (false, true),
    };
    let spo2_score = |sp: f64| match scale {
        SpO2Scale::One => spo2_scale1(sp),
        SpO2Scale::Two => spo2_scale2(sp, on_oxygen),
    };
    let sub = |parameter, value: Option<f64>, f: &dyn Fn(f64) -> u8| SubScore {
        parameter,
        value,
        score: value.map_or(0, f),
    };
    let breakdown = [
        sub(Parameter::RespirationRate, rr, &respiration),
        sub(Parameter::Spo2, sp, &spo2_score),
        SubScore {
            parameter: Parameter::AirOrOxygen,
            value: Some(if on_oxygen { 1.0 } else { 0.0 }),
            score: if on_oxygen { 2 } else { 0 },
        },
        sub(Parameter::SystolicBp, sbp, &systolic),
        sub(Parameter::Pulse, hr, &pulse),
        SubScore {
            parameter: Parameter::Consciousness,
            value: obs.consciousness.map(|c| c as u8 as f64),
            score: obs.consciousness.map_or(0, consciousness),
        },
        sub(Parameter::Temperature, temp, &temperature),
    ];
    let mut missing = Missing::default();
    for b in &breakdown {
        if b.value.is_none() {
            missing.insert(b.parameter);
        }
    }
    let total: u8 = breakdown.iter().map(|s| s.score).sum();
    let any_three = breakdown.iter().any(|s| s.score == 3);
    Ok(Score {
        total,
        band: band(total, any_three),
        breakdown,
        scale,
        partial: !missing.is_empty(),
        lower_bound: required.iter().any(|(_, v)| v.is_none()),
        missing,
        oxygen_assumed,
    })
}

/// NEWS2 is validated for adults only: not for under-16s or pregnancy.
pub fn applies_to(age_years: u32, pregnant: bool) -> bool {
    age_years >= 16 && !pregnant
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn normal() -> Observations {
        Observations {
            respiration_rate: Some(16.0),
            spo2: Some(97.0),
            on_oxygen: Some((false, OxygenSource::Reading)),
            systolic_bp: Some(120.0),
            pulse: Some(70.0),
            consciousness: Some(Acvpu::Alert),
            temperature: Some(37.0),
        }
    }

    fn sub(s: &Score, p: Parameter) -> u8 {
        s.breakdown
            .iter()
            .find(|x| x.parameter == p)
            .map(|x| x.score)
            .unwrap()
    }

    fn scored(obs: Observations, scale: SpO2Scale, p: Parameter) -> u8 {
        sub(&score(&obs, scale).unwrap(), p)
    }

    #[test]
    fn normal_observations_score_zero() {
        let s = score(&normal(), SpO2Scale::One).unwrap();
        assert_eq!(s.total, 0);
        assert_eq!(s.band, Band::Zero);
        assert!(!s.partial && !s.oxygen_assumed);
    }

    #[test]
    fn respiration_rate_every_edge_on_both_sides() {
        for (v, expect) in [
            (8.0, 3),
            (9.0, 1),
            (11.0, 1),
            (12.0, 0),
            (20.0, 0),
            (21.0, 2),
            (24.0, 2),
            (25.0, 3),
            (4.0, 3),
            (40.0, 3),
        ] {
            let o = Observations {
                respiration_rate: Some(v),
                ..normal()
            };
            assert_eq!(
                scored(o, SpO2Scale::One, Parameter::RespirationRate),
                expect,
                "rr {v}"
            );
        }
    }

    #[test]
    fn spo2_scale_1_every_edge_on_both_sides() {
        for (v, expect) in [
            (91.0, 3),
            (92.0, 2),
            (93.0, 2),
            (94.0, 1),
            (95.0, 1),
            (96.0, 0),
            (100.0, 0),
            (70.0, 3),
        ] {
            let o = Observations {
                spo2: Some(v),
                ..normal()
            };
            assert_eq!(
                scored(o, SpO2Scale::One, Parameter::Spo2),
                expect,
                "spo2 {v}"
            );
        }
    }

    #[test]
    fn spo2_scale_2_on_air_and_on_oxygen() {
        let on = |v: f64, o2: bool| Observations {
            spo2: Some(v),
            on_oxygen: Some((o2, OxygenSource::Reading)),
            ..normal()
        };
        for (v, air, oxygen) in [
            (83.0, 3, 3),
            (84.0, 2, 2),
            (85.0, 2, 2),
            (86.0, 1, 1),
            (87.0, 1, 1),
            (88.0, 0, 0),
            (92.0, 0, 0),
            (93.0, 0, 1),
            (94.0, 0, 1),
            (95.0, 0, 2),
            (96.0, 0, 2),
            (97.0, 0, 3),
            (100.0, 0, 3),
        ] {
            assert_eq!(
                scored(on(v, false), SpO2Scale::Two, Parameter::Spo2),
                air,
                "scale 2 air {v}"
            );
            assert_eq!(
                scored(on(v, true), SpO2Scale::Two, Parameter::Spo2),
                oxygen,
                "scale 2 O2 {v}"
            );
        }
        // Scale 1 ignores oxygen for the SpO2 sub-score.
        assert_eq!(scored(on(97.0, true), SpO2Scale::One, Parameter::Spo2), 0);
    }

    #[test]
    fn air_or_oxygen_scores_two_for_oxygen() {
        let o = Observations {
            on_oxygen: Some((true, OxygenSource::Reading)),
            ..normal()
        };
        assert_eq!(scored(o, SpO2Scale::One, Parameter::AirOrOxygen), 2);
        assert_eq!(scored(normal(), SpO2Scale::One, Parameter::AirOrOxygen), 0);
    }

    #[test]
    fn systolic_bp_every_edge_on_both_sides() {
        for (v, expect) in [
            (90.0, 3),
            (91.0, 2),
            (100.0, 2),
            (101.0, 1),
            (110.0, 1),
            (111.0, 0),
            (219.0, 0),
            (220.0, 3),
            (60.0, 3),
            (260.0, 3),
        ] {
            let o = Observations {
                systolic_bp: Some(v),
                ..normal()
            };
            assert_eq!(
                scored(o, SpO2Scale::One, Parameter::SystolicBp),
                expect,
                "sbp {v}"
            );
        }
    }

    #[test]
    fn pulse_every_edge_on_both_sides() {
        for (v, expect) in [
            (40.0, 3),
            (41.0, 1),
            (50.0, 1),
            (51.0, 0),
            (90.0, 0),
            (91.0, 1),
            (110.0, 1),
            (111.0, 2),
            (130.0, 2),
            (131.0, 3),
            (25.0, 3),
            (200.0, 3),
        ] {
            let o = Observations {
                pulse: Some(v),
                ..normal()
            };
            assert_eq!(
                scored(o, SpO2Scale::One, Parameter::Pulse),
                expect,
                "pulse {v}"
            );
        }
    }

    #[test]
    fn temperature_every_edge_on_both_sides() {
        for (v, expect) in [
            (35.0, 3),
            (35.1, 1),
            (36.0, 1),
            (36.1, 0),
            (38.0, 0),
            (38.1, 1),
            (39.0, 1),
            (39.1, 2),
            (33.0, 3),
            (41.0, 2),
        ] {
            let o = Observations {
                temperature: Some(v),
                ..normal()
            };
            assert_eq!(
                scored(o, SpO2Scale::One, Parameter::Temperature),
                expect,
                "temp {v}"
            );
        }
    }

    #[test]
    fn consciousness_alert_scores_zero_and_anything_else_three() {
        for (c, expect) in [
            (Acvpu::Alert, 0),
            (Acvpu::Confusion, 3),
            (Acvpu::Voice, 3),
            (Acvpu::Pain, 3),
            (Acvpu::Unresponsive, 3),
        ] {
            let o = Observations {
                consciousness: Some(c),
                ..normal()
            };
            assert_eq!(
                scored(o, SpO2Scale::One, Parameter::Consciousness),
                expect,
                "{c:?}"
            );
        }
    }

    #[test]
    fn decimals_round_half_away_from_zero_in_decimal_not_binary() {
        // 38.05 is 38.0499999… as a double; clinically it is 38.05 → 38.1.
        let t = |v: f64| {
            scored(
                Observations {
                    temperature: Some(v),
                    ..normal()
                },
                SpO2Scale::One,
                Parameter::Temperature,
            )
        };
        assert_eq!(round_half_away(38.05, 1), 38.1);
        assert_eq!(t(38.05), 1);
        assert_eq!(round_half_away(35.04, 1), 35.0);
        assert_eq!(t(35.04), 3);
        assert_eq!(t(35.05), 1); // 35.1
        assert_eq!(t(36.04), 1); // 36.0
        assert_eq!(t(36.05), 0); // 36.1
        assert_eq!(t(38.04), 0); // 38.0
        assert_eq!(t(39.04), 1); // 39.0
        assert_eq!(t(39.05), 2); // 39.1
                                 // Whole-number parameters: x.5 rounds up (away from zero), x.49 down.
        let hr = |v: f64| {
            scored(
                Observations {
                    pulse: Some(v),
                    ..normal()
                },
                SpO2Scale::One,
                Parameter::Pulse,
            )
        };
        assert_eq!(hr(90.49), 0);
        assert_eq!(hr(90.5), 1);
        assert_eq!(hr(40.5), 1);
        assert_eq!(hr(40.49), 3);
        let sp = |v: f64| {
            scored(
                Observations {
                    spo2: Some(v),
                    ..normal()
                },
                SpO2Scale::One,
                Parameter::Spo2,
            )
        };
        assert_eq!(sp(95.5), 0);
        assert_eq!(sp(95.49), 1);
        assert_eq!(sp(91.5), 2);
        let rr = |v: f64| {
            scored(
                Observations {
                    respiration_rate: Some(v),
                    ..normal()
                },
                SpO2Scale::One,
                Parameter::RespirationRate,
            )
        };
        assert_eq!(rr(20.5), 2);
        assert_eq!(rr(8.5), 1);
        let bp = |v: f64| {
            scored(
                Observations {
                    systolic_bp: Some(v),
                    ..normal()
                },
                SpO2Scale::One,
                Parameter::SystolicBp,
            )
        };
        assert_eq!(bp(219.5), 3);
        assert_eq!(bp(110.5), 0);
        assert_eq!(round_half_away(-1.25, 1), -1.3);
        assert_eq!(
            round_half_away(2e12, 1),
            2e12,
            "huge values do not overflow"
        );
        assert!(round_half_away(f64::NAN, 0).is_nan());
    }

    #[test]
    fn bands_follow_the_aggregate_and_the_single_three_rule() {
        assert_eq!(band(0, false), Band::Zero);
        assert_eq!(band(1, false), Band::Low);
        assert_eq!(band(4, false), Band::Low);
        assert_eq!(band(3, true), Band::LowMedium);
        assert_eq!(band(4, true), Band::LowMedium);
        assert_eq!(band(5, false), Band::Medium);
        assert_eq!(
            band(5, true),
            Band::Medium,
            "5 or more overrides the single-3 rule"
        );
        assert_eq!(band(6, true), Band::Medium);
        assert_eq!(band(7, false), Band::High);
        assert_eq!(band(20, true), Band::High);
        // End to end: a single 3 (SpO2 91) with nothing else is low-medium.
        let s = score(
            &Observations {
                spo2: Some(91.0),
                ..normal()
            },
            SpO2Scale::One,
        )
        .unwrap();
        assert_eq!((s.total, s.band), (3, Band::LowMedium));
        assert!(s.band.clinical_response().contains("Urgent ward-based"));
        assert_eq!(s.band.monitoring_frequency(), "minimum 1-hourly");
        // Sepsis-like: RR 25 (3), SpO2 94 (1), SBP 100 (2), pulse 115 (2), temp 38.6 (1) = 9.
        let sepsis = Observations {
            respiration_rate: Some(25.0),
            spo2: Some(94.0),
            systolic_bp: Some(100.0),
            pulse: Some(115.0),
            temperature: Some(38.6),
            ..normal()
        };
        let s = score(&sepsis, SpO2Scale::One).unwrap();
        assert_eq!((s.total, s.band), (9, Band::High));
        assert!(s.band.clinical_response().starts_with("Emergency"));
    }

    #[test]
    fn missing_consciousness_is_partial_never_silently_alert() {
        let s = score(
            &Observations {
                consciousness: None,
                ..normal()
            },
            SpO2Scale::One,
        )
        .unwrap();
        assert!(s.partial);
        assert_eq!(s.breakdown[5].value, None);
        assert!(s.summary().contains("consciousness not assessed"));
    }

    #[test]
    fn oxygen_from_the_care_plan_or_nowhere_is_reported_as_assumed() {
        let s = score(
            &Observations {
                on_oxygen: None,
                ..normal()
            },
            SpO2Scale::One,
        )
        .unwrap();
        assert!(s.oxygen_assumed);
        assert_eq!(sub(&s, Parameter::AirOrOxygen), 0, "default air");
        let s = score(
            &Observations {
                on_oxygen: Some((true, OxygenSource::CarePlan)),
                ..normal()
            },
            SpO2Scale::One,
        )
        .unwrap();
        assert!(s.oxygen_assumed);
        assert_eq!(sub(&s, Parameter::AirOrOxygen), 2);
        assert!(s.summary().contains("assumed"));
    }

    #[test]
    fn missing_measured_parameters_give_no_score_and_say_which() {
        let e = score(
            &Observations {
                pulse: None,
                temperature: None,
                ..normal()
            },
            SpO2Scale::One,
        )
        .unwrap_err();
        assert_eq!(
            e,
            ScoreError::Missing(vec![Parameter::Pulse, Parameter::Temperature])
        );
        assert!(e.to_string().contains("pulse, temperature"));
        let e = score(
            &Observations {
                spo2: Some(f64::NAN),
                ..normal()
            },
            SpO2Scale::One,
        )
        .unwrap_err();
        assert_eq!(e, ScoreError::NotFinite("SpO2"));
    }

    #[test]
    fn news2_is_for_adults_who_are_not_pregnant() {
        assert!(applies_to(16, false));
        assert!(!applies_to(15, false));
        assert!(!applies_to(30, true));
    }

    // Moving a value further from the normal range never lowers its sub-score.
    proptest! {
        #[test]
        fn sub_scores_are_monotone_away_from_normal(a in 0.0f64..60.0, b in 0.0f64..60.0) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            // Respiration: normal 12–20. Below, lower is worse; above, higher is worse.
            if hi <= 16.0 { prop_assert!(respiration(round_half_away(lo, 0)) >= respiration(round_half_away(hi, 0))); }
            if lo >= 16.0 { prop_assert!(respiration(round_half_away(hi, 0)) >= respiration(round_half_away(lo, 0))); }
        }

        #[test]
        fn pulse_and_pressure_are_monotone(a in 20.0f64..300.0, b in 20.0f64..300.0) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let r = |x: f64| round_half_away(x, 0);
            if hi <= 70.0 { prop_assert!(pulse(r(lo)) >= pulse(r(hi))); }
            if lo >= 70.0 { prop_assert!(pulse(r(hi)) >= pulse(r(lo))); }
            if hi <= 150.0 { prop_assert!(systolic(r(lo)) >= systolic(r(hi))); }
            if lo >= 150.0 { prop_assert!(systolic(r(hi)) >= systolic(r(lo))); }
        }

        #[test]
        fn spo2_and_temperature_are_monotone(a in 50.0f64..100.0, b in 50.0f64..100.0, t1 in 25.0f64..45.0, t2 in 25.0f64..45.0) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let r = |x: f64| round_half_away(x, 0);
            prop_assert!(spo2_scale1(r(lo)) >= spo2_scale1(r(hi)));
            if hi <= 90.0 { prop_assert!(spo2_scale2(r(lo), true) >= spo2_scale2(r(hi), true)); }
            if lo >= 90.0 { prop_assert!(spo2_scale2(r(hi), true) >= spo2_scale2(r(lo), true)); }
            let (tl, th) = if t1 <= t2 { (t1, t2) } else { (t2, t1) };
            let rt = |x: f64| round_half_away(x, 1);
            if th <= 37.0 { prop_assert!(temperature(rt(tl)) >= temperature(rt(th))); }
            if tl >= 37.0 { prop_assert!(temperature(rt(th)) >= temperature(rt(tl))); }
        }

        /// The total and band against the RCP chart itself, written here as
        /// ranges (not by re-adding `score()`'s own breakdown). Inputs are
        /// on the chart's grid (whole numbers; temperature in tenths), so no
        /// rounding question arises; both SpO2 scales, air and oxygen.
        #[test]
        fn the_total_and_band_match_the_rcp_chart(
            rr in 2u32..80, sp in 50u32..=100, sbp in 40u32..300,
            hr in 20u32..300, t10 in 250u32..450, o2: bool, c in 0u8..5, scale2: bool,
        ) {
            let obs = Observations {
                respiration_rate: Some(f64::from(rr)), spo2: Some(f64::from(sp)),
                on_oxygen: Some((o2, OxygenSource::Reading)),
                systolic_bp: Some(f64::from(sbp)), pulse: Some(f64::from(hr)),
                temperature: Some(f64::from(t10) / 10.0),
                consciousness: Acvpu::from_letter(&c.to_string()),
            };
            let scale = if scale2 { SpO2Scale::Two } else { SpO2Scale::One };
            let s = score(&obs, scale).unwrap();
            let expected = chart(rr, sp, scale2, o2, sbp, hr, c, t10);
            prop_assert_eq!(s.total, expected.iter().sum::<u8>());
            for (sub, want) in s.breakdown.iter().zip(expected) {
                prop_assert_eq!(sub.score, want, "{:?}", sub.parameter);
            }
            let any3 = expected.contains(&3);
            let band = match s.total {
                0 => Band::Zero,
                7.. => Band::High,
                5..=6 => Band::Medium,
                _ if any3 => Band::LowMedium,
                _ => Band::Low,
            };
            prop_assert_eq!(s.band, band);
        }
    }

    /// RCP NEWS2 chart 1 (2017), row by row, in chart order: respiration,
    /// SpO2 (scale 1 or 2), air or oxygen, systolic BP, pulse,
    /// consciousness (0 = Alert), temperature (tenths of a degree).
    #[allow(clippy::too_many_arguments)]
    fn chart(
        rr: u32,
        sp: u32,
        scale2: bool,
        o2: bool,
        sbp: u32,
        hr: u32,
        c: u8,
        t10: u32,
    ) -> [u8; 7] {
        let respiration = match rr {
            ..=8 => 3,
            9..=11 => 1,
            12..=20 => 0,
            21..=24 => 2,
            _ => 3,
        };
        let spo2 = if !scale2 {
            match sp {
                ..=91 => 3,
                92..=93 => 2,
                94..=95 => 1,
                _ => 0,
            }
        } else {
            match (sp, o2) {
                (..=83, _) => 3,
                (84..=85, _) => 2,
                (86..=87, _) => 1,
                (88..=92, _) | (_, false) => 0,
                (93..=94, true) => 1,
                (95..=96, true) => 2,
                (_, true) => 3,
            }
        };
        let air_or_oxygen = if o2 { 2 } else { 0 };
        let systolic = match sbp {
            ..=90 => 3,
            91..=100 => 2,
            101..=110 => 1,
            111..=219 => 0,
            _ => 3,
        };
        let pulse = match hr {
            ..=40 => 3,
            41..=50 => 1,
            51..=90 => 0,
            91..=110 => 1,
            111..=130 => 2,
            _ => 3,
        };
        let consciousness = if c == 0 { 0 } else { 3 };
        let temperature = match t10 {
            ..=350 => 3,
            351..=360 => 1,
            361..=380 => 0,
            381..=390 => 1,
            _ => 2,
        };
        [
            respiration,
            spo2,
            air_or_oxygen,
            systolic,
            pulse,
            consciousness,
            temperature,
        ]
    }
}
