//! The vitals wardwatch understands: names, LOINC codes, canonical units,
//! accepted conversions and physiological plausibility ranges.
//!
//! Everything is stored in one canonical unit per vital so that rules and
//! analysts never convert. Values with a unit we cannot convert are refused
//! rather than guessed: a temperature in an unknown unit could be Celsius or
//! Fahrenheit, and guessing wrong scores a septic patient as well.

use std::fmt;

use thiserror::Error;

use crate::quarantine::QuarantineReason;

/// A kind of measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Vital {
    /// Pulse, beats per minute.
    HeartRate,
    /// Breaths per minute.
    RespiratoryRate,
    /// Peripheral oxygen saturation, percent.
    Spo2,
    /// Systolic blood pressure, mmHg.
    SystolicBp,
    /// Diastolic blood pressure, mmHg.
    DiastolicBp,
    /// Body temperature, degrees Celsius.
    BodyTemperature,
    /// Blood glucose, mmol/L.
    BloodGlucose,
    /// Body weight, kg.
    BodyWeight,
    /// ACVPU, stored as 0 = Alert, 1 = new Confusion, 2 = Voice, 3 = Pain, 4 = Unresponsive.
    Consciousness,
    /// On supplemental oxygen: stored as 1 (on oxygen) or 0 (on air).
    SupplementalOxygen,
    /// Oxygen flow rate, L/min.
    OxygenFlow,
    /// Inhaled (inspired) oxygen concentration, percent; above room air's
    /// 21% means supplemental oxygen.
    InhaledOxygen,
}

/// The ACVPU letters in stored order: the stored value is the index.
pub const ACVPU: [&str; 5] = ["A", "C", "V", "P", "U"];

/// A value as it arrived, before conversion.
#[derive(Debug, Clone, PartialEq)]
pub enum VitalValue {
    /// A number (SenML `v`, FHIR `valueQuantity.value`).
    Number(f64),
    /// A string (SenML `vs`, FHIR `valueString` or a coded answer).
    Text(String),
    /// A boolean (SenML `vb`, FHIR `valueBoolean`).
    Bool(bool),
}

/// Why a value could not be turned into a canonical number.
#[derive(Debug, Error, PartialEq)]
pub enum UnitError {
    /// The unit is missing or not one we convert.
    #[error("{0}")]
    BadUnit(String),
    /// The value has the wrong type for the vital (text for a number, ...).
    #[error("{0}")]
    WrongType(String),
    /// Non-finite or outside the physiological range.
    #[error("{0}")]
    Implausible(String),
}

impl UnitError {
    /// The quarantine reason this maps to.
    pub fn reason(&self) -> QuarantineReason {
        match self {
            Self::BadUnit(_) => QuarantineReason::BadUnit,
            Self::WrongType(_) => QuarantineReason::Malformed,
            Self::Implausible(_) => QuarantineReason::Implausible,
        }
    }
}

/// mg/dL of glucose per mmol/L (molar mass 180.156 g/mol).
const GLUCOSE_MG_DL_PER_MMOL_L: f64 = 18.0156;
/// mmHg per kPa.
const MMHG_PER_KPA: f64 = 7.500_616_827_041_697;
/// kg per avoirdupois pound (exact by definition).
const KG_PER_LB: f64 = 0.453_592_37;

impl Vital {
    /// Every vital, in a stable order.
    pub const ALL: [Vital; 12] = [
        Self::HeartRate,
        Self::RespiratoryRate,
        Self::Spo2,
        Self::SystolicBp,
        Self::DiastolicBp,
        Self::BodyTemperature,
        Self::BloodGlucose,
        Self::BodyWeight,
        Self::Consciousness,
        Self::SupplementalOxygen,
        Self::OxygenFlow,
        Self::InhaledOxygen,
    ];

    /// The stable name: SenML `n`, `readings.vital`, API paths.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HeartRate => "heart_rate",
            Self::RespiratoryRate => "respiratory_rate",
            Self::Spo2 => "spo2",
            Self::SystolicBp => "systolic_bp",
            Self::DiastolicBp => "diastolic_bp",
            Self::BodyTemperature => "body_temperature",
            Self::BloodGlucose => "blood_glucose",
            Self::BodyWeight => "body_weight",
            Self::Consciousness => "consciousness",
            Self::SupplementalOxygen => "supplemental_oxygen",
            Self::OxygenFlow => "oxygen_flow",
            Self::InhaledOxygen => "inhaled_oxygen_concentration",
        }
    }

    /// Looks a vital up by its stable name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == name)
    }

    /// LOINC codes accepted for this vital; the first is the one wardwatch emits.
    pub fn loinc_codes(self) -> &'static [&'static str] {
        match self {
            Self::HeartRate => &["8867-4"],
            Self::RespiratoryRate => &["9279-1"],
            Self::Spo2 => &["59408-5", "2708-6"],
            Self::SystolicBp => &["8480-6"],
            Self::DiastolicBp => &["8462-4"],
            Self::BodyTemperature => &["8310-5"],
            Self::BloodGlucose => &["15074-8", "2339-0"],
            Self::BodyWeight => &["29463-7"],
            Self::Consciousness => &["67775-7"],
            Self::SupplementalOxygen => &[],
            Self::OxygenFlow => &["3151-8"],
            Self::InhaledOxygen => &["3150-0"],
        }
    }

    /// SNOMED CT codes accepted for this vital (as UK devices and records
    /// send them: the vital-signs observables of the UK edition, e.g. as
    /// listed by the NHS-oriented Virtually Healthcare FHIR guide; the
    /// oxygen-administration procedures for supplemental oxygen, with a
    /// boolean value).
    pub fn snomed_codes(self) -> &'static [&'static str] {
        match self {
            Self::HeartRate => &["364075005", "78564009"],
            Self::RespiratoryRate => &["86290005"],
            Self::Spo2 => &["431314004", "442476006", "1325691000000100"],
            Self::SystolicBp => &["72313002", "271649006"],
            Self::DiastolicBp => &["1091811000000102", "271650006"],
            Self::BodyTemperature => &["386725007", "276885007"],
            Self::BloodGlucose => &["997671000000106"],
            Self::BodyWeight => &["27113001"],
            Self::Consciousness => &[],
            Self::SupplementalOxygen => &["371907003", "371908008"],
            Self::OxygenFlow => &[],
            Self::InhaledOxygen => &["250774007"],
        }
    }

    /// Looks a vital up by a SNOMED CT code.
    pub fn from_snomed(code: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|v| v.snomed_codes().contains(&code))
    }

    /// Looks a vital up by a LOINC code.
    pub fn from_loinc(code: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|v| v.loinc_codes().contains(&code))
    }

    /// The UCUM unit values are stored in; `None` for coded or boolean vitals.
    pub fn canonical_unit(self) -> Option<&'static str> {
        match self {
            Self::HeartRate | Self::RespiratoryRate => Some("/min"),
            Self::Spo2 => Some("%"),
            Self::SystolicBp | Self::DiastolicBp => Some("mm[Hg]"),
            Self::BodyTemperature => Some("Cel"),
            Self::BloodGlucose => Some("mmol/L"),
            Self::BodyWeight => Some("kg"),
            Self::OxygenFlow => Some("L/min"),
            Self::InhaledOxygen => Some("%"),
            Self::Consciousness | Self::SupplementalOxygen => None,
        }
    }

    /// Units accepted on input, for error messages.
    pub fn accepted_units(self) -> &'static str {
        match self {
            Self::HeartRate => "/min, beat/min, 1/min",
            Self::RespiratoryRate => "/min, 1/min",
            Self::Spo2 => "%",
            Self::SystolicBp | Self::DiastolicBp => "mm[Hg], mmHg, kPa",
            Self::BodyTemperature => "Cel, degF, [degF]",
            Self::BloodGlucose => "mmol/L, mg/dL",
            Self::BodyWeight => "kg, g, [lb_av]",
            Self::OxygenFlow => "L/min",
            Self::InhaledOxygen => "%",
            Self::Consciousness => "none (a string A, C, V, P or U)",
            Self::SupplementalOxygen => "none (a boolean)",
        }
    }

    /// The physiological range (inclusive, canonical unit) outside which a
    /// value is a device fault or a typo, not a patient.
    pub fn plausible_range(self) -> Option<(f64, f64)> {
        match self {
            Self::HeartRate => Some((20.0, 300.0)),
            Self::RespiratoryRate => Some((2.0, 80.0)),
            Self::Spo2 => Some((50.0, 100.0)),
            Self::SystolicBp => Some((40.0, 300.0)),
            Self::DiastolicBp => Some((20.0, 200.0)),
            Self::BodyTemperature => Some((25.0, 45.0)),
            Self::BloodGlucose => Some((0.5, 50.0)),
            Self::BodyWeight => Some((1.0, 400.0)),
            Self::OxygenFlow => Some((0.0, 60.0)),
            Self::InhaledOxygen => Some((21.0, 100.0)),
            Self::Consciousness | Self::SupplementalOxygen => None,
        }
    }

    /// Converts a raw value with its unit into the canonical stored number,
    /// checking type, unit and plausibility.
    pub fn to_canonical(self, value: &VitalValue, unit: Option<&str>) -> Result<f64, UnitError> {
        match self {
            Self::Consciousness => {
                if let Some(u) = unit.filter(|u| !u.is_empty()) {
                    return Err(UnitError::BadUnit(format!(
                        "consciousness takes no unit, got {u:?}"
                    )));
                }
                match value {
                    VitalValue::Text(s) => ACVPU
                        .iter()
                        .position(|l| l.eq_ignore_ascii_case(s.trim()))
                        .map(|i| i as f64)
                        .ok_or_else(|| {
                            UnitError::Implausible(format!(
                                "consciousness {s:?} is not one of A, C, V, P, U (ACVPU)"
                            ))
                        }),
                    _ => Err(UnitError::WrongType(
                        "consciousness needs a string value (SenML vs) of A, C, V, P or U".into(),
                    )),
                }
            }
            Self::SupplementalOxygen => {
                if let Some(u) = unit.filter(|u| !u.is_empty()) {
                    return Err(UnitError::BadUnit(format!(
                        "supplemental_oxygen takes no unit, got {u:?}"
                    )));
                }
                match value {
                    VitalValue::Bool(b) => Ok(if *b { 1.0 } else { 0.0 }),
                    _ => Err(UnitError::WrongType(
                        "supplemental_oxygen needs a boolean value (SenML vb)".into(),
                    )),
                }
            }
            _ => {
                let VitalValue::Number(raw) = value else {
                    return Err(UnitError::WrongType(format!(
                        "{self} needs a numeric value (SenML v, FHIR valueQuantity)"
                    )));
                };
                if !raw.is_finite() {
                    return Err(UnitError::Implausible(format!(
                        "{self} value is not finite"
                    )));
                }
                let Some(unit) = unit.filter(|u| !u.is_empty()) else {
                    return Err(UnitError::BadUnit(format!(
                        "{self} has no unit; accepted: {}",
                        self.accepted_units()
                    )));
                };
                let v = self.convert(*raw, unit).ok_or_else(|| {
                    UnitError::BadUnit(format!(
                        "unit {unit:?} is not accepted for {self}; accepted: {}",
                        self.accepted_units()
                    ))
                })?;
                if let Some((lo, hi)) = self.plausible_range() {
                    if !(lo..=hi).contains(&v) {
                        let cu = self.canonical_unit().unwrap_or("");
                        return Err(UnitError::Implausible(format!(
                            "{self} {v} {cu} is outside the plausible range {lo}–{hi} {cu}"
                        )));
                    }
                }
                Ok(v)
            }
        }
    }

    /// Unit conversion table. UCUM annotations (`{beats}/min`) carry no
    /// meaning in UCUM and are ignored.
    fn convert(self, v: f64, unit: &str) -> Option<f64> {
        let unit = strip_annotations(unit);
        let u = unit.as_str();
        match self {
            Self::HeartRate => matches!(u, "/min" | "beat/min" | "1/min").then_some(v),
            Self::RespiratoryRate => matches!(u, "/min" | "1/min").then_some(v),
            Self::Spo2 => (u == "%").then_some(v),
            Self::SystolicBp | Self::DiastolicBp => match u {
                "mm[Hg]" | "mmHg" => Some(v),
                "kPa" => Some(v * MMHG_PER_KPA),
                _ => None,
            },
            Self::BodyTemperature => match u {
                "Cel" => Some(v),
                "degF" | "[degF]" => Some((v - 32.0) * 5.0 / 9.0),
                _ => None,
            },
            Self::BloodGlucose => match u {
                "mmol/L" | "mmol/l" => Some(v),
                "mg/dL" | "mg/dl" => Some(v / GLUCOSE_MG_DL_PER_MMOL_L),
                _ => None,
            },
            Self::BodyWeight => match u {
                "kg" => Some(v),
                "g" => Some(v / 1000.0),
                "[lb_av]" => Some(v * KG_PER_LB),
                _ => None,
            },
            Self::OxygenFlow => matches!(u, "L/min" | "l/min").then_some(v),
            Self::InhaledOxygen => (u == "%").then_some(v),
            Self::Consciousness | Self::SupplementalOxygen => None,
        }
    }
}

/// Removes UCUM curly-brace annotations: `{beats}/min` → `/min`.
fn strip_annotations(unit: &str) -> String {
    let mut out = String::with_capacity(unit.len());
    let mut depth = 0u32;
    for c in unit.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

impl fmt::Display for Vital {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(v: f64) -> VitalValue {
        VitalValue::Number(v)
    }

    #[test]
    fn names_and_loinc_codes_round_trip() {
        for v in Vital::ALL {
            assert_eq!(Vital::from_name(v.as_str()), Some(v));
            for code in v.loinc_codes() {
                assert_eq!(Vital::from_loinc(code), Some(v));
            }
        }
        assert_eq!(Vital::from_loinc("2708-6"), Some(Vital::Spo2));
        assert_eq!(Vital::from_loinc("2339-0"), Some(Vital::BloodGlucose));
        assert_eq!(Vital::from_name("pulse"), None);
    }

    #[test]
    fn accepted_units_convert_to_canonical() {
        let t = |v: Vital, x: f64, u: &str| v.to_canonical(&num(x), Some(u)).unwrap();
        assert_eq!(t(Vital::HeartRate, 72.0, "beat/min"), 72.0);
        assert_eq!(t(Vital::HeartRate, 72.0, "1/min"), 72.0);
        assert_eq!(t(Vital::HeartRate, 72.0, "{beats}/min"), 72.0);
        assert!((t(Vital::SystolicBp, 16.0, "kPa") - 120.009_869).abs() < 1e-5);
        assert_eq!(t(Vital::DiastolicBp, 80.0, "mmHg"), 80.0);
        assert!((t(Vital::BodyTemperature, 98.6, "degF") - 37.0).abs() < 1e-9);
        assert!((t(Vital::BodyTemperature, 101.3, "[degF]") - 38.5).abs() < 1e-9);
        assert!((t(Vital::BloodGlucose, 90.0, "mg/dL") - 4.99567).abs() < 1e-5);
        assert_eq!(t(Vital::BodyWeight, 81_500.0, "g"), 81.5);
        assert!((t(Vital::BodyWeight, 180.0, "[lb_av]") - 81.646_626_6).abs() < 1e-6);
        assert_eq!(t(Vital::OxygenFlow, 2.0, "L/min"), 2.0);
    }

    #[test]
    fn unknown_or_missing_units_are_bad_units_not_guesses() {
        let e = Vital::BodyTemperature
            .to_canonical(&num(37.0), Some("degC"))
            .unwrap_err();
        assert_eq!(e.reason(), QuarantineReason::BadUnit);
        assert!(e.to_string().contains("Cel, degF"));
        let e = Vital::BodyTemperature
            .to_canonical(&num(37.0), None)
            .unwrap_err();
        assert_eq!(e.reason(), QuarantineReason::BadUnit);
        let e = Vital::Spo2
            .to_canonical(&num(97.0), Some("%EL"))
            .unwrap_err();
        assert_eq!(e.reason(), QuarantineReason::BadUnit);
    }

    #[test]
    fn plausibility_ranges_are_inclusive_at_both_edges() {
        let cases = [
            (Vital::HeartRate, 20.0, 300.0, "/min"),
            (Vital::RespiratoryRate, 2.0, 80.0, "/min"),
            (Vital::Spo2, 50.0, 100.0, "%"),
            (Vital::SystolicBp, 40.0, 300.0, "mm[Hg]"),
            (Vital::DiastolicBp, 20.0, 200.0, "mm[Hg]"),
            (Vital::BodyTemperature, 25.0, 45.0, "Cel"),
            (Vital::BloodGlucose, 0.5, 50.0, "mmol/L"),
            (Vital::BodyWeight, 1.0, 400.0, "kg"),
        ];
        for (v, lo, hi, u) in cases {
            assert_eq!(v.to_canonical(&num(lo), Some(u)), Ok(lo), "{v} low edge");
            assert_eq!(v.to_canonical(&num(hi), Some(u)), Ok(hi), "{v} high edge");
            for bad in [lo - 0.01, hi + 0.01, f64::NAN, f64::INFINITY] {
                let e = v.to_canonical(&num(bad), Some(u)).unwrap_err();
                assert_eq!(e.reason(), QuarantineReason::Implausible, "{v} {bad}");
            }
        }
    }

    #[test]
    fn plausibility_is_checked_after_conversion() {
        // 115 degF = 46.1 Cel: implausible even though 115 is a fine number.
        let e = Vital::BodyTemperature
            .to_canonical(&num(115.0), Some("degF"))
            .unwrap_err();
        assert_eq!(e.reason(), QuarantineReason::Implausible);
    }

    #[test]
    fn consciousness_is_acvpu_and_oxygen_is_boolean() {
        let c = |s: &str| Vital::Consciousness.to_canonical(&VitalValue::Text(s.into()), None);
        assert_eq!(c("A"), Ok(0.0));
        assert_eq!(c("C"), Ok(1.0));
        assert_eq!(c("V"), Ok(2.0));
        assert_eq!(c("P"), Ok(3.0));
        assert_eq!(c("u"), Ok(4.0));
        assert_eq!(c("X").unwrap_err().reason(), QuarantineReason::Implausible);
        assert_eq!(
            Vital::Consciousness
                .to_canonical(&num(0.0), None)
                .unwrap_err()
                .reason(),
            QuarantineReason::Malformed
        );
        let o = |b| Vital::SupplementalOxygen.to_canonical(&VitalValue::Bool(b), None);
        assert_eq!(o(true), Ok(1.0));
        assert_eq!(o(false), Ok(0.0));
        assert_eq!(
            Vital::HeartRate
                .to_canonical(&VitalValue::Text("72".into()), Some("/min"))
                .unwrap_err()
                .reason(),
            QuarantineReason::Malformed
        );
    }
}
