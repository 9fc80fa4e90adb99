//! The one home of each clinical policy the rules, the API and the board
//! all apply: whether NEWS2 applies to a patient, which readings count
//! (freshness), how the oxygen status is read, which band a partial score
//! may raise, the order of severities, a rule's family, and what the board
//! says about a patient's NEWS2. Written once here so the three cannot
//! drift (they had: the board used a fixed 60-minute freshness and showed
//! NEWS2 for patients it does not apply to).
//!
//! The rule for partial sets (home kits rarely measure all five NEWS2
//! parameters) rests on the RCP's NEWS2 (2017), chart 3: "a score of 3 in
//! any single parameter" calls for an urgent ward-based response, and an
//! aggregate of 5–6 or of 7 and more for urgent or emergency responses. A
//! score from the parameters present is a lower bound of the full score,
//! so when that lower bound alone reaches one of those triggers, the
//! trigger holds whatever the missing parameters would add, and the flag is
//! raised at that band, marked partial. A lower bound of 1–4 without a red
//! score establishes no trigger beyond routine review (the missing
//! parameters might all score 0), so it is shown but raises nothing.

use chrono::NaiveDate;
use serde::Serialize;
use wardwatch_core::Vital;

use crate::news2::{self, Acvpu, Band, Observations, OxygenSource, Score, SpO2Scale};
use crate::pathway::Pathway;
pub use crate::threshold::Severity;

/// Why NEWS2 does or does not apply to a patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Applicability {
    /// Scored.
    Applies,
    /// The patient's pathway does not use NEWS2 (e.g. COVID oximetry).
    PathwayOff,
    /// Under 16: NEWS2 is validated for adults only.
    Under16,
    /// Pregnant: NEWS2 is not validated in pregnancy (use a maternity chart).
    Pregnant,
}

impl Applicability {
    /// NEWS2 is scored.
    pub fn applies(self) -> bool {
        self == Self::Applies
    }

    /// For people, when it does not apply.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Applies => "NEWS2 applies",
            Self::PathwayOff => "NEWS2 is not used on this pathway",
            Self::Under16 => "NEWS2 does not apply under 16",
            Self::Pregnant => "NEWS2 does not apply in pregnancy",
        }
    }
}

/// Whether NEWS2 applies to a person: adults (16 and over) who are not
/// pregnant. An unknown date of birth counts as adult: virtual wards enrol
/// adults, and scoring errs towards alerting.
pub fn person_applicability(
    date_of_birth: Option<NaiveDate>,
    pregnant: bool,
    today: NaiveDate,
) -> Applicability {
    let adult = date_of_birth.is_none_or(|dob| today.years_since(dob).is_some_and(|y| y >= 16));
    if !adult {
        Applicability::Under16
    } else if pregnant {
        Applicability::Pregnant
    } else {
        Applicability::Applies
    }
}

/// Whether NEWS2 applies on a pathway to a person whose own applicability
/// is `person`.
pub fn applicability(pathway: &Pathway, person: Applicability) -> Applicability {
    if !pathway.news2_enabled {
        Applicability::PathwayOff
    } else {
        person
    }
}

/// How long a reading counts towards NEWS2 on a pathway, seconds.
pub fn freshness_secs(pathway: &Pathway) -> i64 {
    pathway.news2_freshness_secs
}

/// On oxygen according to a reading: any oxygen flow above 0 L/min or an
/// inhaled concentration above room air's 21% (a patient on 2 L/min is on
/// oxygen whether or not the device also says so), else a
/// supplemental-oxygen reading (1 = on oxygen).
pub fn on_oxygen_from(
    supplemental: Option<f64>,
    flow: Option<f64>,
    inhaled_percent: Option<f64>,
) -> Option<bool> {
    if flow.is_some_and(|f| f > 0.0) || inhaled_percent.is_some_and(|c| c > 21.0) {
        return Some(true);
    }
    match supplemental {
        Some(s) => Some(s >= 0.5),
        None if flow.is_some() || inhaled_percent.is_some() => Some(false),
        None => None,
    }
}

/// The NEWS2 inputs from the fresh value of each vital (`fresh` answers
/// `None` for a vital with no reading inside the freshness window), the
/// oxygen status from a reading where there is one, else the care plan.
pub fn observations(fresh: impl Fn(Vital) -> Option<f64>, care_plan_oxygen: bool) -> Observations {
    let on_oxygen = match on_oxygen_from(
        fresh(Vital::SupplementalOxygen),
        fresh(Vital::OxygenFlow),
        fresh(Vital::InhaledOxygen),
    ) {
        Some(on) => (on, OxygenSource::Reading),
        None => (care_plan_oxygen, OxygenSource::CarePlan),
    };
    Observations {
        respiration_rate: fresh(Vital::RespiratoryRate),
        spo2: fresh(Vital::Spo2),
        on_oxygen: Some(on_oxygen),
        systolic_bp: fresh(Vital::SystolicBp),
        pulse: fresh(Vital::HeartRate),
        consciousness: fresh(Vital::Consciousness).and_then(Acvpu::from_code),
        temperature: fresh(Vital::BodyTemperature),
    }
}

/// The vitals NEWS2 reads.
pub const NEWS2_INPUTS: [Vital; 9] = [
    Vital::RespiratoryRate,
    Vital::Spo2,
    Vital::SupplementalOxygen,
    Vital::OxygenFlow,
    Vital::InhaledOxygen,
    Vital::SystolicBp,
    Vital::HeartRate,
    Vital::Consciousness,
    Vital::BodyTemperature,
];

/// Whether a vital is a NEWS2 input.
pub fn is_news2_input(v: Vital) -> bool {
    NEWS2_INPUTS.contains(&v)
}

/// The band a score may raise a flag at (see the module's rule for partial
/// sets): a complete score's own band; for a lower bound, the band its
/// total and red scores alone establish (High at 7+, Medium at 5–6,
/// LowMedium for a single 3), else `Zero`.
pub fn alerting_band(score: &Score) -> Band {
    if !score.lower_bound {
        return score.band;
    }
    match score.band {
        Band::High | Band::Medium | Band::LowMedium => score.band,
        Band::Zero | Band::Low => Band::Zero,
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

/// Most urgent first: the board's and the alert list's order (0 first).
pub fn severity_rank(s: Option<Severity>) -> u8 {
    match s {
        Some(Severity::Emergency) => 0,
        Some(Severity::High) => 1,
        Some(Severity::Medium) => 2,
        Some(Severity::Low) => 3,
        None => 4,
    }
}

pub use wardwatch_core::flag::rule_family;

/// The most a clinician's personal limit on `vital` may ask of the
/// pathway: (highest severity, most consecutive readings, longest
/// persistence in seconds). A limit may be stricter, never slower or more
/// severe than the pathway's own tiers on that vital; where the pathway has
/// none, at most `High` (an emergency tier is the pathway's decision), three
/// readings and one expected interval.
pub fn personal_limit_bounds(pathway: &Pathway, vital: Vital) -> (Severity, u32, i64) {
    let tiers: Vec<&crate::threshold::Threshold> = pathway
        .thresholds
        .iter()
        .filter(|(v, _)| *v == vital)
        .map(|(_, t)| t)
        .collect();
    let severity = tiers
        .iter()
        .map(|t| t.severity)
        .max()
        .unwrap_or(Severity::High);
    let readings = tiers.iter().map(|t| t.persist_readings).max().unwrap_or(3);
    let secs = tiers
        .iter()
        .map(|t| t.persist_secs)
        .max()
        .filter(|s| *s > 0)
        .unwrap_or(pathway.expected_interval_secs);
    (severity, readings, secs)
}

/// Checks a personal limit against [`personal_limit_bounds`], saying what
/// is out of bounds (for the API and CLI to refuse it).
pub fn check_personal_limit(
    pathway: &Pathway,
    vital: Vital,
    t: &crate::threshold::Threshold,
) -> Result<(), String> {
    let (severity, readings, secs) = personal_limit_bounds(pathway, vital);
    if t.severity > severity {
        return Err(format!(
            "severity {} is above the {} pathway's highest for {vital} ({})",
            t.severity.as_str(),
            pathway.name,
            severity.as_str()
        ));
    }
    if t.persist_readings > readings {
        return Err(format!(
            "persist_readings {} waits longer than the {} pathway allows for {vital} ({readings})",
            t.persist_readings, pathway.name
        ));
    }
    if t.persist_secs > secs {
        return Err(format!(
            "persist_secs {} waits longer than the {} pathway allows for {vital} ({secs})",
            t.persist_secs, pathway.name
        ));
    }
    Ok(())
}

/// A personal limit held within [`personal_limit_bounds`] (the rules apply
/// this whatever is stored, so an older or hand-edited row cannot loosen
/// the pathway).
pub fn bound_personal_limit(
    pathway: &Pathway,
    vital: Vital,
    t: &crate::threshold::Threshold,
) -> crate::threshold::Threshold {
    let (severity, readings, secs) = personal_limit_bounds(pathway, vital);
    let mut t = t.clone();
    t.severity = t.severity.min(severity);
    t.persist_readings = t.persist_readings.clamp(1, readings.max(1));
    t.persist_secs = t.persist_secs.min(secs);
    t
}

/// What the board says about a patient's NEWS2 now.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum BoardNews2 {
    /// A complete score from fresh readings.
    Complete {
        /// The score.
        score: Score,
    },
    /// Only some parameters are fresh: a lower bound, never shown as a
    /// complete score.
    Partial {
        /// The lower bound.
        score: Score,
    },
    /// No complete set for longer than the pathway's cadence (a kit that
    /// cannot make one, or readings that stopped); the partial lower bound
    /// from what is fresh, if anything is.
    Unscorable {
        /// Seconds since a complete set could last be formed, if ever.
        since_secs: Option<i64>,
        /// The lower bound from the fresh parameters, if any.
        partial: Option<Score>,
    },
    /// NEWS2 is not used for this patient; the pathway's thresholds still apply.
    NotApplicable {
        /// Why.
        reason: Applicability,
    },
}

impl BoardNews2 {
    /// The board's words: "9 (high)", "partial: at least 6 (medium or
    /// higher)", "unscorable", "not applicable".
    pub fn words(&self) -> String {
        match self {
            Self::Complete { score } => format!("{} ({})", score.total, score.band),
            Self::Partial { score } => {
                format!(
                    "partial: at least {} ({} or higher)",
                    score.total, score.band
                )
            }
            Self::Unscorable { partial, .. } => match partial {
                Some(s) if s.total > 0 => format!("unscorable (partial: at least {})", s.total),
                _ => "unscorable".into(),
            },
            Self::NotApplicable { reason } => format!("not applicable: {}", reason.reason()),
        }
    }
}

impl BoardNews2 {
    /// Why there is no complete score, in a sentence (`None` when there is).
    pub fn explain(&self) -> Option<String> {
        let missing = |s: &Score| s.missing.names();
        match self {
            Self::Complete { .. } => None,
            Self::Partial { score } => Some(format!(
                "partial set: a lower bound; not measured recently: {}",
                missing(score)
            )),
            Self::Unscorable {
                since_secs,
                partial,
            } => {
                let when = match since_secs {
                    Some(s) => format!("no complete NEWS2 set for {} min", s / 60),
                    None => "no complete NEWS2 set yet".to_string(),
                };
                Some(match partial {
                    Some(s) => format!("unscorable: {when}; not measured recently: {}", missing(s)),
                    None => format!("unscorable: {when}; no NEWS2 parameter measured recently"),
                })
            }
            Self::NotApplicable { reason } => Some(reason.reason().to_string()),
        }
    }
}

/// The board's NEWS2 for a patient from their latest reading of each vital
/// (`latest` answers (value, time s) for a vital), at `now` (s).
pub fn board_news2(
    latest: impl Fn(Vital) -> Option<(f64, i64)>,
    pathway: &Pathway,
    person: Applicability,
    scale: SpO2Scale,
    care_plan_oxygen: bool,
    now: i64,
) -> BoardNews2 {
    let applies = applicability(pathway, person);
    if !applies.applies() {
        return BoardNews2::NotApplicable { reason: applies };
    }
    let window = freshness_secs(pathway);
    let fresh = |v: Vital| {
        latest(v)
            .filter(|(_, t)| now - t <= window && *t <= now)
            .map(|(x, _)| x)
    };
    let score = news2::score_partial(&observations(fresh, care_plan_oxygen), scale).ok();
    if let Some(s) = score.filter(|s| !s.lower_bound) {
        return BoardNews2::Complete { score: s };
    }
    // When could a complete set last be formed? At the newest of the five
    // measured parameters' latest readings, if the oldest was still fresh then.
    let measured = [
        Vital::RespiratoryRate,
        Vital::Spo2,
        Vital::SystolicBp,
        Vital::HeartRate,
        Vital::BodyTemperature,
    ];
    let times: Option<Vec<i64>> = measured
        .iter()
        .map(|v| latest(*v).map(|(_, t)| t))
        .collect();
    let last_set = times.and_then(|t| {
        let (lo, hi) = (t.iter().min()?, t.iter().max()?);
        (hi - lo <= window).then_some(*hi)
    });
    let since = last_set.map(|t| now - t);
    if since.is_none_or(|s| s > pathway.expected_interval_secs) {
        return BoardNews2::Unscorable {
            since_secs: since,
            partial: score,
        };
    }
    match score {
        Some(s) => BoardNews2::Partial { score: s },
        None => BoardNews2::Unscorable {
            since_secs: since,
            partial: None,
        },
    }
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

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn news2_applies_from_the_sixteenth_birthday_and_not_in_pregnancy() {
        let today = day(2026, 11, 23);
        assert_eq!(
            person_applicability(Some(day(2010, 11, 23)), false, today),
            Applicability::Applies
        );
        assert_eq!(
            person_applicability(Some(day(2010, 11, 24)), false, today),
            Applicability::Under16
        );
        assert_eq!(
            person_applicability(None, false, today),
            Applicability::Applies
        );
        assert_eq!(
            person_applicability(Some(day(1990, 1, 1)), true, today),
            Applicability::Pregnant
        );
        assert_eq!(
            applicability(&pathway("covid-oximetry"), Applicability::Applies),
            Applicability::PathwayOff
        );
    }

    #[test]
    fn any_oxygen_flow_above_zero_is_on_oxygen() {
        assert_eq!(on_oxygen_from(None, Some(2.0), None), Some(true));
        assert_eq!(on_oxygen_from(Some(0.0), Some(0.5), None), Some(true));
        assert_eq!(on_oxygen_from(None, Some(0.0), None), Some(false));
        assert_eq!(on_oxygen_from(Some(1.0), None, None), Some(true));
        assert_eq!(on_oxygen_from(Some(0.0), None, None), Some(false));
        assert_eq!(on_oxygen_from(None, None, Some(28.0)), Some(true));
        assert_eq!(on_oxygen_from(None, None, Some(21.0)), Some(false));
        assert_eq!(on_oxygen_from(None, None, None), None);
        let obs = observations(
            |v| match v {
                Vital::OxygenFlow => Some(2.0),
                _ => None,
            },
            false,
        );
        assert_eq!(obs.on_oxygen, Some((true, OxygenSource::Reading)));
    }

    fn partial(values: &[(Vital, f64)]) -> Score {
        let obs = observations(
            |v| values.iter().find(|(x, _)| *x == v).map(|(_, y)| *y),
            false,
        );
        news2::score_partial(&obs, SpO2Scale::One).unwrap()
    }

    #[test]
    fn a_lower_bound_raises_only_at_a_trigger_it_establishes_alone() {
        // SpO2 84 (3) and pulse 135 (3): at least 6, medium band for sure.
        let s = partial(&[(Vital::Spo2, 84.0), (Vital::HeartRate, 135.0)]);
        assert!(s.lower_bound && s.total == 6);
        assert_eq!(alerting_band(&s), Band::Medium);
        assert_eq!(news2_severity(alerting_band(&s)), Severity::High);
        // A single red score: the RCP's urgent ward-based response.
        let s = partial(&[(Vital::Spo2, 91.0), (Vital::HeartRate, 80.0)]);
        assert_eq!((s.total, alerting_band(&s)), (3, Band::LowMedium));
        // 1–4 without a 3: shown, raises nothing.
        let s = partial(&[(Vital::Spo2, 94.0), (Vital::HeartRate, 95.0)]);
        assert_eq!(
            (s.total, s.band, alerting_band(&s)),
            (2, Band::Low, Band::Zero)
        );
        // At least 7 from an oximeter alone: an emergency.
        let s = partial(&[
            (Vital::Spo2, 85.0),
            (Vital::HeartRate, 135.0),
            (Vital::SystolicBp, 95.0),
        ]);
        assert_eq!(alerting_band(&s), Band::High);
        assert!(
            s.summary().starts_with("partial NEWS2 at least 8"),
            "{}",
            s.summary()
        );
        assert!(s.summary().contains("respiration rate"), "{}", s.summary());
    }

    #[test]
    fn the_board_says_complete_partial_unscorable_or_not_applicable() {
        let general = pathway("general");
        let now = 100_000;
        let full = |v: Vital| match v {
            Vital::RespiratoryRate => Some((16.0, now - 60)),
            Vital::Spo2 => Some((97.0, now - 60)),
            Vital::SystolicBp => Some((120.0, now - 60)),
            Vital::HeartRate => Some((70.0, now - 60)),
            Vital::BodyTemperature => Some((37.0, now - 60)),
            _ => None,
        };
        let b = board_news2(
            full,
            &general,
            Applicability::Applies,
            SpO2Scale::One,
            false,
            now,
        );
        assert!(matches!(b, BoardNews2::Complete { score } if score.total == 0));
        // An oximeter only, never a full set: unscorable, with its lower bound.
        let oximeter = |v: Vital| match v {
            Vital::Spo2 => Some((84.0, now - 60)),
            Vital::HeartRate => Some((135.0, now - 60)),
            _ => None,
        };
        let b = board_news2(
            oximeter,
            &general,
            Applicability::Applies,
            SpO2Scale::One,
            false,
            now,
        );
        assert_eq!(b.words(), "unscorable (partial: at least 6)");
        // A full set 30 min ago, only SpO2 and pulse fresh now (60 min
        // freshness, 60 min cadence): partial.
        let recent = |v: Vital| match v {
            Vital::Spo2 | Vital::HeartRate => full(v),
            _ => full(v).map(|(x, t)| (x, t - 3600 - 60)),
        };
        let b = board_news2(
            recent,
            &general,
            Applicability::Applies,
            SpO2Scale::One,
            false,
            now,
        );
        assert!(matches!(b, BoardNews2::Unscorable { .. }), "{b:?}");
        let half = |v: Vital| match v {
            Vital::Spo2 | Vital::HeartRate => full(v),
            _ => full(v).map(|(x, _)| (x, now - 3000)),
        };
        let b = board_news2(
            half,
            &general,
            Applicability::Applies,
            SpO2Scale::One,
            false,
            now + 1200,
        );
        assert!(matches!(b, BoardNews2::Partial { .. }), "{b:?}");
        let b = board_news2(
            full,
            &general,
            Applicability::Pregnant,
            SpO2Scale::One,
            false,
            now,
        );
        assert_eq!(
            b.words(),
            "not applicable: NEWS2 does not apply in pregnancy"
        );
    }

    #[test]
    fn rule_families_and_severity_order() {
        assert_eq!(rule_family("threshold:spo2:0"), "threshold");
        assert_eq!(rule_family("no_data:ox-1"), "no_data");
        assert_eq!(rule_family("news2"), "news2");
        assert!(severity_rank(Some(Severity::Emergency)) < severity_rank(Some(Severity::Low)));
        assert!(Severity::Emergency > Severity::High);
    }
}
