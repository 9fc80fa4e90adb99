//! One patient's rule state and the flags it produces: readings in, flags
//! out, deterministic. A shard worker (to come) owns many of these outright.

use serde::Serialize;
use wardwatch_core::Vital;

use crate::news2::{self, Acvpu, Band, Observations, OxygenSource, Score, SpO2Scale};
use crate::pathway::Pathway;
use crate::threshold::{Severity, ThresholdState, Transition};
use crate::trend::{Spo2Trend, WeightTrend};

/// Which rule a flag comes from. One open flag per patient and rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleId {
    /// The NEWS2 aggregate.
    News2,
    /// The pathway's n-th single-vital threshold.
    Threshold(u8),
    /// Heart-failure weight gain.
    WeightGain,
    /// SpO2 fall from the patient's median.
    Spo2Fall,
}

/// What happened to the flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagState {
    /// Newly raised.
    Raised,
    /// Still open, with new evidence or a new severity.
    Updated,
    /// Back to normal.
    Cleared,
}

/// A flag: the rules core's output, the alerting layer's input.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flag {
    /// The rule.
    pub rule: RuleId,
    /// How urgent.
    pub severity: Severity,
    /// Raised, updated or cleared.
    pub state: FlagState,
    /// When (s), the time of the reading that caused it.
    pub at: i64,
    /// The evidence in words: the value and limit, or the NEWS2 summary
    /// (which says when the score is partial or assumed oxygen).
    pub evidence: String,
    /// The NEWS2 breakdown, for NEWS2 flags.
    pub news2: Option<Score>,
}

/// Clinician-set, per-patient facts the rules need.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PatientSettings {
    /// SpO2 scale (Scale 2 only by a clinician's decision).
    pub scale: SpO2Scale,
    /// On oxygen according to the care plan, used when no reading says.
    pub care_plan_oxygen: bool,
    /// NEWS2 applies (adult, not pregnant).
    pub news2_applies: bool,
}

impl Default for PatientSettings {
    fn default() -> Self {
        Self {
            scale: SpO2Scale::One,
            care_plan_oxygen: false,
            news2_applies: true,
        }
    }
}

/// NEWS2 band → flag severity.
pub fn news2_severity(band: Band) -> Severity {
    match band {
        Band::Zero | Band::Low => Severity::Low,
        Band::LowMedium => Severity::Medium,
        Band::Medium => Severity::High,
        Band::High => Severity::Emergency,
    }
}

/// Everything the rules remember about one patient.
#[derive(Debug, Clone, Default)]
pub struct PatientState {
    /// Latest (value, time) per vital, indexed as `Vital::ALL`.
    latest: [Option<(f64, i64)>; 11],
    thresholds: Vec<ThresholdState>,
    weight: WeightTrend,
    spo2: Spo2Trend,
    /// The band of the open NEWS2 flag, if one is open.
    news2_open: Option<Band>,
}

fn slot(v: Vital) -> usize {
    Vital::ALL.iter().position(|x| *x == v).unwrap_or(0)
}

fn transition_flag(
    t: Transition,
    rule: RuleId,
    severity: Severity,
    at: i64,
    evidence: String,
) -> Option<Flag> {
    let state = match t {
        Transition::None => return None,
        Transition::Raised => FlagState::Raised,
        Transition::Updated => FlagState::Updated,
        Transition::Cleared => FlagState::Cleared,
    };
    Some(Flag {
        rule,
        severity,
        state,
        at,
        evidence,
        news2: None,
    })
}

impl PatientState {
    /// Feeds one reading (canonical unit, time in s) and returns the flags it
    /// raised, updated or cleared.
    pub fn on_reading(
        &mut self,
        pathway: &Pathway,
        settings: &PatientSettings,
        vital: Vital,
        value: f64,
        at: i64,
    ) -> Vec<Flag> {
        let mut flags = Vec::new();
        let s = slot(vital);
        if self.latest[s].is_none_or(|(_, t)| at >= t) {
            self.latest[s] = Some((value, at));
        }
        if self.thresholds.len() != pathway.thresholds.len() {
            self.thresholds = vec![ThresholdState::default(); pathway.thresholds.len()];
        }
        for (i, (v, rule)) in pathway.thresholds.iter().enumerate() {
            if *v != vital {
                continue;
            }
            let Some(state) = self.thresholds.get_mut(i) else {
                continue;
            };
            let t = state.observe(rule, value, at);
            let limit = match (rule.low, rule.high) {
                (Some(lo), Some(hi)) => format!("limits {lo}–{hi}"),
                (Some(lo), None) => format!("lower limit {lo}"),
                (None, Some(hi)) => format!("upper limit {hi}"),
                (None, None) => String::new(),
            };
            let id = RuleId::Threshold(u8::try_from(i).unwrap_or(u8::MAX));
            flags.extend(transition_flag(
                t,
                id,
                rule.severity,
                at,
                format!("{vital} {value} ({limit})"),
            ));
        }
        if let (Vital::BodyWeight, Some(rule)) = (vital, &pathway.weight_gain) {
            let (t, gain) = self.weight.observe(rule, value, at);
            flags.extend(transition_flag(
                t,
                RuleId::WeightGain,
                Severity::High,
                at,
                format!(
                    "weight {value} kg, +{gain} kg within {} days",
                    rule.window_secs / 86_400
                ),
            ));
        }
        if let (Vital::Spo2, Some(rule)) = (vital, &pathway.spo2_fall) {
            let base = self.spo2.baseline(at);
            let t = self.spo2.observe(rule, value, at);
            let evidence = match base {
                Some(b) => format!("SpO2 {value}% against the patient's 24 h median {b}%"),
                None => format!("SpO2 {value}%"),
            };
            flags.extend(transition_flag(
                t,
                RuleId::Spo2Fall,
                Severity::High,
                at,
                evidence,
            ));
        }
        if pathway.news2_enabled && settings.news2_applies && is_news2_input(vital) {
            flags.extend(self.news2(pathway, settings, at));
        }
        flags
    }

    fn fresh(&self, v: Vital, now: i64, window: i64) -> Option<f64> {
        self.latest[slot(v)]
            .filter(|(_, t)| now - t <= window && *t <= now)
            .map(|(x, _)| x)
    }

    fn news2(&mut self, pathway: &Pathway, settings: &PatientSettings, at: i64) -> Option<Flag> {
        let w = pathway.news2_freshness_secs;
        let on_oxygen = match self.fresh(Vital::SupplementalOxygen, at, w) {
            Some(x) => (x >= 0.5, OxygenSource::Reading),
            None => (settings.care_plan_oxygen, OxygenSource::CarePlan),
        };
        let consciousness = self
            .fresh(Vital::Consciousness, at, w)
            .and_then(|code| Acvpu::from_letter(&format!("{}", code.round() as i64)));
        let obs = Observations {
            respiration_rate: self.fresh(Vital::RespiratoryRate, at, w),
            spo2: self.fresh(Vital::Spo2, at, w),
            on_oxygen: Some(on_oxygen),
            systolic_bp: self.fresh(Vital::SystolicBp, at, w),
            pulse: self.fresh(Vital::HeartRate, at, w),
            consciousness,
            temperature: self.fresh(Vital::BodyTemperature, at, w),
        };
        // Incomplete observations give no score; the flag stays as it was.
        let score = news2::score(&obs, settings.scale).ok()?;
        let flag = |state| Flag {
            rule: RuleId::News2,
            severity: news2_severity(score.band),
            state,
            at,
            evidence: score.summary(),
            news2: Some(score),
        };
        match (self.news2_open, score.band) {
            (None, Band::Zero) => None,
            (None, band) => {
                self.news2_open = Some(band);
                Some(flag(FlagState::Raised))
            }
            (Some(_), Band::Zero) => {
                self.news2_open = None;
                Some(flag(FlagState::Cleared))
            }
            (Some(open), band) if open != band => {
                // A change of band, worse or better, updates at once.
                self.news2_open = Some(band);
                Some(flag(FlagState::Updated))
            }
            (Some(_), _) => None,
        }
    }
}

fn is_news2_input(v: Vital) -> bool {
    matches!(
        v,
        Vital::RespiratoryRate
            | Vital::Spo2
            | Vital::SupplementalOxygen
            | Vital::SystolicBp
            | Vital::HeartRate
            | Vital::Consciousness
            | Vital::BodyTemperature
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::pathway::load_dir;

    fn pathway(name: &str) -> Pathway {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/pathways");
        load_dir(&dir).unwrap().remove(name).unwrap()
    }

    fn obs_set(
        p: &mut PatientState,
        pw: &Pathway,
        s: &PatientSettings,
        at: i64,
        (rr, spo2, sbp, hr, temp): (f64, f64, f64, f64, f64),
    ) -> Vec<Flag> {
        let mut out = Vec::new();
        for (v, x) in [
            (Vital::RespiratoryRate, rr),
            (Vital::Spo2, spo2),
            (Vital::SystolicBp, sbp),
            (Vital::HeartRate, hr),
            (Vital::BodyTemperature, temp),
        ] {
            out.extend(p.on_reading(pw, s, v, x, at));
        }
        out
    }

    #[test]
    fn a_deteriorating_patient_gets_one_news2_flag_updated_as_it_worsens() {
        let pw = pathway("general");
        let s = PatientSettings::default();
        let mut p = PatientState::default();
        p.on_reading(&pw, &s, Vital::Consciousness, 0.0, 0);
        p.on_reading(&pw, &s, Vital::SupplementalOxygen, 0.0, 0);
        assert!(obs_set(&mut p, &pw, &s, 10, (16.0, 97.0, 120.0, 70.0, 37.0)).is_empty());
        // Pulse 95 (1): low band, raised once.
        let f = obs_set(&mut p, &pw, &s, 600, (16.0, 97.0, 120.0, 95.0, 37.0));
        let news: Vec<_> = f.iter().filter(|f| f.rule == RuleId::News2).collect();
        assert_eq!(news.len(), 1);
        assert_eq!(news[0].state, FlagState::Raised);
        assert_eq!(news[0].severity, Severity::Low);
        // The same picture again: no new flag.
        assert!(obs_set(&mut p, &pw, &s, 1200, (16.0, 97.0, 120.0, 95.0, 37.0)).is_empty());
        // Sepsis-like worsening, reading by reading: each change of band
        // updates the one open flag at once; no second flag is raised.
        let f = obs_set(&mut p, &pw, &s, 1800, (25.0, 94.0, 100.0, 115.0, 38.6));
        let news: Vec<_> = f.iter().filter(|f| f.rule == RuleId::News2).collect();
        let bands: Vec<_> = news.iter().map(|f| (f.state, f.severity)).collect();
        assert_eq!(
            bands,
            vec![
                (FlagState::Updated, Severity::Medium),    // RR 25: a single 3
                (FlagState::Updated, Severity::High),      // + SpO2 94: 5
                (FlagState::Updated, Severity::Emergency), // + SBP 100: 7
            ]
        );
        // Pulse 115 and temperature 38.6 raise the total to 9 within the same band.
        assert_eq!(news[2].news2.unwrap().total, 7);
        // Recovery to all-normal values clears it (whether the alert resolves
        // is the alerting layer's decision).
        let f = obs_set(&mut p, &pw, &s, 3600, (16.0, 97.0, 120.0, 70.0, 37.0));
        let last = f.iter().rev().find(|f| f.rule == RuleId::News2).unwrap();
        assert_eq!(last.state, FlagState::Cleared);
    }

    #[test]
    fn stale_parameters_give_no_score_and_a_missing_consciousness_is_reported() {
        let pw = pathway("general");
        let s = PatientSettings::default();
        let mut p = PatientState::default();
        // Respiration measured two hours ago: outside the 60-minute window.
        p.on_reading(&pw, &s, Vital::RespiratoryRate, 30.0, 0);
        let f = obs_set(&mut p, &pw, &s, 7200, (30.0, 97.0, 120.0, 70.0, 37.0));
        let news: Vec<_> = f.iter().filter(|f| f.rule == RuleId::News2).collect();
        assert_eq!(news.len(), 1, "scored once all five are fresh");
        assert!(
            news[0].evidence.contains("consciousness not assessed"),
            "{}",
            news[0].evidence
        );
        assert!(news[0].evidence.contains("assumed"), "{}", news[0].evidence);
        let mut q = PatientState::default();
        q.on_reading(&pw, &s, Vital::RespiratoryRate, 30.0, 0);
        for (v, x) in [
            (Vital::Spo2, 97.0),
            (Vital::SystolicBp, 120.0),
            (Vital::HeartRate, 70.0),
            (Vital::BodyTemperature, 37.0),
        ] {
            assert!(q
                .on_reading(&pw, &s, v, x, 7200)
                .iter()
                .all(|f| f.rule != RuleId::News2));
        }
    }

    #[test]
    fn news2_is_not_scored_for_patients_it_does_not_apply_to() {
        let pw = pathway("general");
        let s = PatientSettings {
            news2_applies: false,
            ..Default::default()
        };
        let mut p = PatientState::default();
        assert!(obs_set(&mut p, &pw, &s, 0, (30.0, 85.0, 80.0, 140.0, 40.0)).is_empty());
    }

    #[test]
    fn copd_uses_personalised_spo2_limits_not_scale_1_alone() {
        let pw = pathway("copd");
        let s = PatientSettings {
            news2_applies: false,
            ..Default::default()
        };
        let mut p = PatientState::default();
        let mut raised = Vec::new();
        for (i, v) in [89.0, 90.0, 87.0, 86.0, 86.0].iter().enumerate() {
            raised.extend(p.on_reading(&pw, &s, Vital::Spo2, *v, i as i64 * 60));
        }
        assert_eq!(raised.len(), 1, "{raised:?}");
        assert_eq!(raised[0].rule, RuleId::Threshold(0));
        assert_eq!(raised[0].state, FlagState::Raised);
        assert_eq!(raised[0].severity, Severity::High);
        assert!(
            raised[0].evidence.contains("limits 88–96"),
            "{}",
            raised[0].evidence
        );
    }

    #[test]
    fn heart_failure_weight_gain_flags() {
        let pw = pathway("heart-failure");
        let s = PatientSettings::default();
        let mut p = PatientState::default();
        assert!(p.on_reading(&pw, &s, Vital::BodyWeight, 80.0, 0).is_empty());
        let f = p.on_reading(&pw, &s, Vital::BodyWeight, 82.1, 2 * 86_400);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule, RuleId::WeightGain);
        assert!(f[0].evidence.contains("+2.1 kg"), "{}", f[0].evidence);
    }

    #[test]
    fn per_patient_state_fits_the_budget() {
        // Target: at most 2 KiB per patient (thresholds add 24 bytes each on the heap).
        let size = std::mem::size_of::<PatientState>();
        assert!(size <= 2048, "{size}");
    }
}
