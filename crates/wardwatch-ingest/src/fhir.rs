//! FHIR R4 Observation and Bundle decoding (vital-signs profile).
//!
//! A payload is one `Observation` or a `Bundle` whose entries' `resource`s are
//! Observations. Each Observation yields one reading, except the blood-pressure
//! panel (LOINC 85354-9 or 55284-4), which yields one reading per `component`.
//!
//! Record indices: a single Observation is record 0; in a Bundle the index is
//! the entry's index. A bad BP component rejects that component only, under
//! its observation's index, with the component's JSON as the record.
//!
//! The vital is taken from the first `code.coding` whose system is LOINC
//! (`http://loinc.org`) or SNOMED CT (`http://snomed.info/sct`) with a
//! vital-sign code wardwatch knows, or `urn:wardwatch:vital` with a
//! wardwatch vital name. Supplemental oxygen comes as an oxygen flow (LOINC
//! 3151-8), an inhaled oxygen concentration (LOINC 3150-0, SNOMED CT
//! 250774007), or an oxygen-administration procedure (SNOMED CT 371907003
//! nasal cannula, 371908008 mask) with a boolean value.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use wardwatch_core::{QuarantineReason, Vital, VitalValue};

use crate::item::{Candidate, Failure, Item};

/// The LOINC code system URI.
pub const LOINC_SYSTEM: &str = "http://loinc.org";

/// The SNOMED CT code system URI.
pub const SNOMED_SYSTEM: &str = "http://snomed.info/sct";

/// SNOMED CT's blood pressure observable, whose values are in `component[]`.
pub const SNOMED_BP_PANEL: &str = "75367002";
/// Wardwatch's own code system: codes are vital names (`heart_rate`, ...).
pub const WARDWATCH_SYSTEM: &str = "urn:wardwatch:vital";
/// LOINC codes of the blood-pressure panel, whose values are in `component[]`.
pub const BP_PANEL_CODES: [&str; 2] = ["85354-9", "55284-4"];

/// What an Observation's code names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Code {
    Vital(Vital),
    BpPanel,
}

/// Resolves a parsed FHIR payload. `Err` is a payload-level malformed detail.
pub(crate) fn resolve(root: &Value) -> Result<Vec<Item>, String> {
    let obj = root.as_object().ok_or_else(|| {
        "FHIR payload must be a JSON object with resourceType Observation or Bundle".to_string()
    })?;
    let mut items = Vec::new();
    match obj.get("resourceType").and_then(Value::as_str) {
        Some("Observation") => observation(root, 0, &mut items),
        Some("Bundle") => {
            let entries = match obj.get("entry") {
                None => return Ok(items),
                Some(Value::Array(entries)) => entries,
                Some(_) => return Err("Bundle.entry must be an array".to_string()),
            };
            for (index, entry) in entries.iter().enumerate() {
                match entry.get("resource") {
                    Some(res)
                        if res.get("resourceType").and_then(Value::as_str)
                            == Some("Observation") =>
                    {
                        observation(res, index, &mut items);
                    }
                    Some(res) => items.push(Item {
                        index,
                        record: res.to_string(),
                        outcome: Err(Failure::malformed(format!(
                            "Bundle entry {index} holds {}, not an Observation",
                            describe_resource(res)
                        ))),
                    }),
                    None => items.push(Item {
                        index,
                        record: entry.to_string(),
                        outcome: Err(Failure::malformed(format!(
                            "Bundle entry {index} has no resource"
                        ))),
                    }),
                }
            }
        }
        Some(other) => {
            return Err(format!(
                "FHIR resourceType {other:?} is not supported; expected Observation or Bundle"
            ))
        }
        None => {
            return Err(
                "FHIR payload has no resourceType string; expected Observation or Bundle"
                    .to_string(),
            )
        }
    }
    Ok(items)
}

fn describe_resource(res: &Value) -> String {
    match res.get("resourceType").and_then(Value::as_str) {
        Some(rt) => format!("a {rt:?} resource"),
        None => "a resource without resourceType".to_string(),
    }
}

/// Decodes one Observation into items (one, or one per BP component).
fn observation(obs: &Value, index: usize, items: &mut Vec<Item>) {
    let record = obs.to_string();
    match observation_items(obs, index, &record) {
        Ok(mut found) => items.append(&mut found),
        Err(f) => items.push(Item {
            index,
            record,
            outcome: Err(f),
        }),
    }
}

fn observation_items(obs: &Value, index: usize, record: &str) -> Result<Vec<Item>, Failure> {
    let obj = obs
        .as_object()
        .ok_or_else(|| Failure::malformed("Observation must be a JSON object"))?;

    match obj.get("status") {
        None => {}
        Some(Value::String(s)) if s == "entered-in-error" || s == "cancelled" => {
            return Err(Failure::malformed(format!(
                "Observation status is {s:?}; it does not hold a valid measurement"
            )))
        }
        Some(Value::String(_)) => {}
        Some(_) => return Err(Failure::malformed("Observation.status must be a string")),
    }

    let code = obj
        .get("code")
        .ok_or_else(|| Failure::malformed("Observation has no code"))?;
    let code = find_code(code, "Observation.code")?;
    let time = effective_time(obj)?;
    let source_name = device_name(obj);

    match code {
        Code::Vital(vital) => {
            let (value, unit) = value_of(obj, "Observation")?;
            Ok(vec![Item {
                index,
                record: record.to_string(),
                outcome: Ok(Candidate {
                    vital,
                    value,
                    unit,
                    time,
                    source_name,
                    update_interval_secs: None,
                }),
            }])
        }
        Code::BpPanel => {
            let components = match obj.get("component") {
                Some(Value::Array(c)) if !c.is_empty() => c,
                Some(Value::Array(_)) | None => return Err(Failure::malformed(
                    "blood-pressure panel has no component[] (systolic 8480-6, diastolic 8462-4)",
                )),
                Some(_) => {
                    return Err(Failure::malformed("Observation.component must be an array"))
                }
            };
            Ok(components
                .iter()
                .map(|comp| Item {
                    index,
                    record: comp.to_string(),
                    outcome: component(comp, time, source_name.clone()),
                })
                .collect())
        }
    }
}

fn component(
    comp: &Value,
    time: DateTime<Utc>,
    source_name: Option<String>,
) -> Result<Candidate, Failure> {
    let obj = comp
        .as_object()
        .ok_or_else(|| Failure::malformed("Observation.component must be a JSON object"))?;
    let code = obj
        .get("code")
        .ok_or_else(|| Failure::malformed("component has no code"))?;
    let vital = match find_code(code, "component.code")? {
        Code::Vital(v) => v,
        Code::BpPanel => {
            return Err(Failure::new(
                QuarantineReason::UnknownVital,
                "a component cannot itself be a blood-pressure panel",
            ))
        }
    };
    let (value, unit) = value_of(obj, "component")?;
    Ok(Candidate {
        vital,
        value,
        unit,
        time,
        source_name,
        update_interval_secs: None,
    })
}

/// Picks the first coding wardwatch recognises.
fn find_code(code: &Value, what: &str) -> Result<Code, Failure> {
    let obj = code
        .as_object()
        .ok_or_else(|| Failure::malformed(format!("{what} must be a CodeableConcept object")))?;
    let codings: &[Value] = match obj.get("coding") {
        None => &[],
        Some(Value::Array(c)) => c,
        Some(_) => {
            return Err(Failure::malformed(format!(
                "{what}.coding must be an array"
            )))
        }
    };
    let mut seen = Vec::new();
    for coding in codings {
        let system = coding.get("system").and_then(Value::as_str).unwrap_or("");
        let Some(c) = coding.get("code").and_then(Value::as_str) else {
            continue;
        };
        if system == LOINC_SYSTEM {
            if BP_PANEL_CODES.contains(&c) {
                return Ok(Code::BpPanel);
            }
            if let Some(v) = Vital::from_loinc(c) {
                return Ok(Code::Vital(v));
            }
        } else if system == SNOMED_SYSTEM {
            if c == SNOMED_BP_PANEL {
                return Ok(Code::BpPanel);
            }
            if let Some(v) = Vital::from_snomed(c) {
                return Ok(Code::Vital(v));
            }
        } else if system == WARDWATCH_SYSTEM {
            if let Some(v) = Vital::from_name(c) {
                return Ok(Code::Vital(v));
            }
        }
        seen.push(format!("{system}|{c}"));
    }
    let seen = if seen.is_empty() {
        "no codes".to_string()
    } else {
        seen.join(", ")
    };
    let text = obj
        .get("text")
        .and_then(Value::as_str)
        .map(|t| format!(" ({t:?})"))
        .unwrap_or_default();
    Err(Failure::new(
        QuarantineReason::UnknownVital,
        format!(
            "{what} names no vital wardwatch knows{text}: saw {seen}; expected a {LOINC_SYSTEM} or {SNOMED_SYSTEM} vital-sign code, or {WARDWATCH_SYSTEM}"
        ),
    ))
}

/// The `value[x]` of an Observation or component, with its unit.
fn value_of(obj: &Map<String, Value>, what: &str) -> Result<(VitalValue, Option<String>), Failure> {
    let values: Vec<(&String, &Value)> =
        obj.iter().filter(|(k, _)| k.starts_with("value")).collect();
    let (key, value) = match values.as_slice() {
        [] => {
            let detail = match obj.get("dataAbsentReason") {
                Some(dar) => format!(
                    "{what} has no value: dataAbsentReason is {}",
                    concept_text(dar).unwrap_or_else(|| dar.to_string())
                ),
                None => format!("{what} has no value[x]"),
            };
            return Err(Failure::malformed(detail));
        }
        [one] => *one,
        _ => {
            let keys: Vec<&str> = values.iter().map(|(k, _)| k.as_str()).collect();
            return Err(Failure::malformed(format!(
                "{what} has more than one value[x]: {}",
                keys.join(", ")
            )));
        }
    };
    match key.as_str() {
        "valueQuantity" => {
            let q = value
                .as_object()
                .ok_or_else(|| Failure::malformed("valueQuantity must be an object"))?;
            if let Some(c) = q.get("comparator") {
                return Err(Failure::malformed(format!(
                    "valueQuantity.comparator {c} is not supported: the value is not exact"
                )));
            }
            let number = match q.get("value") {
                Some(Value::Number(n)) => n.as_f64().ok_or_else(|| {
                    Failure::malformed("valueQuantity.value is not a representable number")
                })?,
                Some(_) => return Err(Failure::malformed("valueQuantity.value must be a number")),
                None => return Err(Failure::malformed("valueQuantity has no value")),
            };
            let unit = match (q.get("code"), q.get("unit")) {
                (Some(Value::String(c)), _) => Some(c.clone()),
                (Some(_), _) => {
                    return Err(Failure::malformed("valueQuantity.code must be a string"))
                }
                (None, Some(Value::String(u))) => Some(u.clone()),
                (None, Some(_)) => {
                    return Err(Failure::malformed("valueQuantity.unit must be a string"))
                }
                (None, None) => None,
            };
            Ok((VitalValue::Number(number), unit))
        }
        "valueString" => match value {
            Value::String(s) => Ok((VitalValue::Text(s.clone()), None)),
            _ => Err(Failure::malformed("valueString must be a string")),
        },
        "valueBoolean" => match value {
            Value::Bool(b) => Ok((VitalValue::Bool(*b), None)),
            _ => Err(Failure::malformed("valueBoolean must be a boolean")),
        },
        "valueCodeableConcept" => {
            let first_code = value
                .get("coding")
                .and_then(Value::as_array)
                .and_then(|c| c.first())
                .and_then(|c| c.get("code"))
                .and_then(Value::as_str);
            let text = value.get("text").and_then(Value::as_str);
            first_code
                .or(text)
                .map(|s| (VitalValue::Text(s.to_string()), None))
                .ok_or_else(|| {
                    Failure::malformed("valueCodeableConcept has neither coding[0].code nor text")
                })
        }
        other => Err(Failure::malformed(format!(
            "{other} is not supported; use valueQuantity, valueString, valueCodeableConcept or valueBoolean"
        ))),
    }
}

/// A CodeableConcept's text, or its first coding's code.
fn concept_text(v: &Value) -> Option<String> {
    v.get("text")
        .and_then(Value::as_str)
        .or_else(|| {
            v.get("coding")
                .and_then(Value::as_array)
                .and_then(|c| c.first())
                .and_then(|c| c.get("code"))
                .and_then(Value::as_str)
        })
        .map(|s| format!("{s:?}"))
}

/// `effectiveDateTime`, `effectiveInstant` or `effectivePeriod.start`.
fn effective_time(obj: &Map<String, Value>) -> Result<DateTime<Utc>, Failure> {
    let effective: Vec<(&String, &Value)> = obj
        .iter()
        .filter(|(k, _)| k.starts_with("effective"))
        .collect();
    let (key, value) = match effective.as_slice() {
        [] => {
            return Err(Failure::malformed(
                "Observation has no effective time (effectiveDateTime, effectiveInstant or effectivePeriod.start)",
            ))
        }
        [one] => *one,
        _ => {
            return Err(Failure::malformed(
                "Observation has more than one effective[x]",
            ))
        }
    };
    match key.as_str() {
        "effectiveDateTime" | "effectiveInstant" => match value {
            Value::String(s) => parse_date_time(s, key),
            _ => Err(Failure::malformed(format!("{key} must be a string"))),
        },
        "effectivePeriod" => match value.get("start") {
            Some(Value::String(s)) => parse_date_time(s, "effectivePeriod.start"),
            Some(_) => Err(Failure::malformed("effectivePeriod.start must be a string")),
            None => Err(Failure::malformed("effectivePeriod has no start")),
        },
        other => Err(Failure::malformed(format!(
            "{other} is not supported; use effectiveDateTime, effectiveInstant or effectivePeriod.start"
        ))),
    }
}

/// A FHIR dateTime that must carry a time and a zone (so it names one instant).
fn parse_date_time(s: &str, field: &str) -> Result<DateTime<Utc>, Failure> {
    let time_part = s.split_once('T').map(|(_, t)| t);
    let zoned = time_part.is_some_and(|t| t.ends_with('Z') || t.contains(['+', '-']));
    if !zoned {
        return Err(Failure::malformed(format!(
            "{field} must include a time and a time zone"
        )));
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| Failure::malformed(format!("{field} {s:?} is not a valid date-time: {e}")))
}

/// `device.display`, else `device.reference`.
fn device_name(obj: &Map<String, Value>) -> Option<String> {
    let device = obj.get("device")?;
    device
        .get("display")
        .and_then(Value::as_str)
        .or_else(|| device.get("reference").and_then(Value::as_str))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use serde_json::json;
    use wardwatch_core::{DeviceId, ReadingSource, Rejection};

    use super::*;
    use crate::decode::{decode, Decoded, PayloadFormat, ValidationPolicy};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
    }

    fn run(payload: &Value) -> Decoded {
        let dev = DeviceId::new("bp-7").unwrap();
        decode(
            PayloadFormat::Fhir,
            &dev,
            payload.to_string().as_bytes(),
            now(),
            now(),
            &ValidationPolicy::default(),
        )
    }

    fn loinc(code: &str) -> Value {
        json!({"coding": [{"system": LOINC_SYSTEM, "code": code}]})
    }

    fn obs(code: &str, value: Value) -> Value {
        let mut o = json!({
            "resourceType": "Observation",
            "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": loinc(code),
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2024-05-01T11:58:00+01:00",
        });
        if let (Some(map), Value::Object(v)) = (o.as_object_mut(), value) {
            map.extend(v);
        }
        o
    }

    fn qty(value: f64, code: &str) -> Value {
        json!({"valueQuantity": {"value": value, "unit": "ignored", "system": "http://unitsofmeasure.org", "code": code}})
    }

    fn only_rejection(d: &Decoded) -> &Rejection {
        assert!(d.readings.is_empty(), "{d:?}");
        assert_eq!(d.rejections.len(), 1, "{d:?}");
        &d.rejections[0]
    }

    #[test]
    fn single_heart_rate_observation_becomes_one_reading() {
        let mut o = obs("8867-4", qty(72.0, "/min"));
        o["device"] = json!({"reference": "Device/ox-1", "display": "Pulse oximeter 1"});
        let d = run(&o);
        assert!(d.rejections.is_empty(), "{d:?}");
        assert!(!d.relative_time);
        assert_eq!(d.readings.len(), 1);
        let r = &d.readings[0];
        assert_eq!(r.vital, Vital::HeartRate);
        assert_eq!(r.value, 72.0);
        assert_eq!(r.time, Utc.with_ymd_and_hms(2024, 5, 1, 10, 58, 0).unwrap());
        assert_eq!(r.source, ReadingSource::Fhir);
        assert_eq!(r.source_name.as_deref(), Some("Pulse oximeter 1"));
        assert_eq!(r.device_id.as_str(), "bp-7");
    }

    fn snomed(code: &str) -> Value {
        json!({"coding": [{"system": SNOMED_SYSTEM, "code": code}]})
    }

    #[test]
    fn snomed_ct_codes_name_the_same_vitals() {
        let mut o = obs("x", qty(96.0, "%"));
        o["code"] = snomed("431314004");
        let d = run(&o);
        assert!(d.rejections.is_empty(), "{d:?}");
        assert_eq!(
            (d.readings[0].vital, d.readings[0].value),
            (Vital::Spo2, 96.0)
        );
        // A SNOMED CT blood pressure with SNOMED CT components.
        let mut bp = obs("x", json!({}));
        bp["code"] = snomed("75367002");
        bp["component"] = json!([
            {"code": snomed("72313002"), "valueQuantity": {"value": 128, "code": "mm[Hg]"}},
            {"code": snomed("1091811000000102"), "valueQuantity": {"value": 82, "code": "mm[Hg]"}}
        ]);
        let d = run(&bp);
        assert!(d.rejections.is_empty(), "{d:?}");
        let got: Vec<_> = d.readings.iter().map(|r| (r.vital, r.value)).collect();
        assert_eq!(
            got,
            vec![(Vital::SystolicBp, 128.0), (Vital::DiastolicBp, 82.0)]
        );
    }

    #[test]
    fn supplemental_oxygen_can_be_said_in_fhir() {
        let d = run(&obs("3151-8", qty(2.0, "L/min")));
        assert_eq!(
            (d.readings[0].vital, d.readings[0].value),
            (Vital::OxygenFlow, 2.0)
        );
        let d = run(&obs("3150-0", qty(28.0, "%")));
        assert_eq!(
            (d.readings[0].vital, d.readings[0].value),
            (Vital::InhaledOxygen, 28.0)
        );
        let mut o = obs("x", json!({"valueBoolean": true}));
        o["code"] = snomed("371907003");
        let d = run(&o);
        assert!(d.rejections.is_empty(), "{d:?}");
        assert_eq!(
            (d.readings[0].vital, d.readings[0].value),
            (Vital::SupplementalOxygen, 1.0)
        );
    }

    #[test]
    fn temperature_in_fahrenheit_is_converted_to_celsius() {
        let d = run(&obs("8310-5", qty(101.3, "[degF]")));
        assert_eq!(d.readings.len(), 1, "{d:?}");
        assert!((d.readings[0].value - 38.5).abs() < 1e-9);
        assert_eq!(d.readings[0].vital, Vital::BodyTemperature);
    }

    #[test]
    fn quantity_unit_is_used_when_there_is_no_ucum_code() {
        let d = run(&obs(
            "8310-5",
            json!({"valueQuantity": {"value": 37.1, "unit": "Cel"}}),
        ));
        assert_eq!(d.readings.len(), 1, "{d:?}");
        let d = run(&obs("8310-5", json!({"valueQuantity": {"value": 37.1}})));
        assert_eq!(only_rejection(&d).reason, QuarantineReason::BadUnit);
    }

    fn bp_component(code: &str, value: Value) -> Value {
        json!({"code": loinc(code), "valueQuantity": {"value": value, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}})
    }

    #[test]
    fn blood_pressure_panel_yields_one_reading_per_component() {
        let mut o = obs("85354-9", json!({}));
        o["component"] = json!([
            bp_component("8480-6", json!(132)),
            bp_component("8462-4", json!(84))
        ]);
        o["device"] = json!({"reference": "Device/bp-7"});
        let d = run(&o);
        assert!(d.rejections.is_empty(), "{d:?}");
        let got: Vec<_> = d.readings.iter().map(|r| (r.vital, r.value)).collect();
        assert_eq!(
            got,
            vec![(Vital::SystolicBp, 132.0), (Vital::DiastolicBp, 84.0)]
        );
        assert!(d
            .readings
            .iter()
            .all(|r| r.source_name.as_deref() == Some("Device/bp-7")));
    }

    #[test]
    fn a_bad_blood_pressure_component_rejects_only_that_component() {
        let mut o = obs("55284-4", json!({}));
        let bad = bp_component("8462-4", json!("84"));
        o["component"] = json!([bp_component("8480-6", json!(132)), bad]);
        let d = run(&o);
        assert_eq!(d.readings.len(), 1);
        assert_eq!(d.readings[0].vital, Vital::SystolicBp);
        let r = &d.rejections[0];
        assert_eq!(r.reason, QuarantineReason::Malformed);
        assert_eq!(r.record_index, Some(0));
        assert_eq!(r.record, bad.to_string());

        let d = run(&obs("85354-9", json!({})));
        assert!(only_rejection(&d).detail.contains("component"));
    }

    #[test]
    fn bundle_with_mixed_entries_keeps_the_good_ones_and_indexes_the_bad_ones() {
        let bundle = json!({
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [
                {"fullUrl": "urn:uuid:1", "resource": obs("8867-4", qty(72.0, "/min"))},
                {"resource": {"resourceType": "Patient", "id": "p1"}},
                {"resource": obs("59408-5", qty(97.0, "%"))},
                {"resource": obs("8310-5", qty(37.0, "degC"))},
                {"request": {"method": "POST"}},
                {"resource": obs("9279-1", qty(18.0, "/min"))},
            ]
        });
        let d = run(&bundle);
        let vitals: Vec<_> = d.readings.iter().map(|r| r.vital).collect();
        assert_eq!(
            vitals,
            vec![Vital::HeartRate, Vital::Spo2, Vital::RespiratoryRate]
        );
        let rej: Vec<_> = d
            .rejections
            .iter()
            .map(|r| (r.record_index, r.reason))
            .collect();
        assert_eq!(
            rej,
            vec![
                (Some(1), QuarantineReason::Malformed),
                (Some(3), QuarantineReason::BadUnit),
                (Some(4), QuarantineReason::Malformed),
            ]
        );
        assert!(d.rejections[0].detail.contains("\"Patient\""));
        assert_eq!(
            d.rejections[0].record,
            r#"{"id":"p1","resourceType":"Patient"}"#
        );
    }

    #[test]
    fn empty_bundle_decodes_to_nothing() {
        let d = run(&json!({"resourceType": "Bundle", "type": "collection"}));
        assert_eq!(d, Decoded::default());
        let d = run(&json!({"resourceType": "Bundle", "entry": {}}));
        assert_eq!(only_rejection(&d).record_index, None);
    }

    #[test]
    fn date_only_or_zoneless_effective_date_time_is_malformed() {
        for when in ["2024-05-01", "2024-05", "2024", "2024-05-01T11:58:00"] {
            let mut o = obs("8867-4", qty(72.0, "/min"));
            o["effectiveDateTime"] = json!(when);
            let d = run(&o);
            let r = only_rejection(&d);
            assert_eq!(r.reason, QuarantineReason::Malformed, "{when}");
            assert_eq!(
                r.detail, "effectiveDateTime must include a time and a time zone",
                "{when}"
            );
        }
        let mut o = obs("8867-4", qty(72.0, "/min"));
        o["effectiveDateTime"] = json!("2024-13-01T11:58:00Z");
        let d = run(&o);
        assert!(only_rejection(&d).detail.contains("not a valid date-time"));
    }

    #[test]
    fn effective_instant_and_period_start_are_accepted() {
        let mut o = obs("8867-4", qty(72.0, "/min"));
        let map = o.as_object_mut().unwrap();
        map.remove("effectiveDateTime");
        map.insert(
            "effectiveInstant".into(),
            json!("2024-05-01T11:59:30.123456Z"),
        );
        let d = run(&o);
        assert_eq!(
            d.readings[0].time,
            now() - Duration::seconds(30) + Duration::microseconds(123_456)
        );

        let map = o.as_object_mut().unwrap();
        map.remove("effectiveInstant");
        map.insert(
            "effectivePeriod".into(),
            json!({"start": "2024-05-01T11:00:00Z", "end": "2024-05-01T11:05:00Z"}),
        );
        let d = run(&o);
        assert_eq!(d.readings[0].time, now() - Duration::hours(1));

        o.as_object_mut().unwrap().remove("effectivePeriod");
        let d = run(&o);
        assert!(only_rejection(&d).detail.contains("no effective time"));
    }

    #[test]
    fn entered_in_error_and_cancelled_observations_are_malformed() {
        for status in ["entered-in-error", "cancelled"] {
            let mut o = obs("8867-4", qty(72.0, "/min"));
            o["status"] = json!(status);
            let d = run(&o);
            let r = only_rejection(&d);
            assert_eq!(r.reason, QuarantineReason::Malformed);
            assert!(r.detail.contains(status), "{}", r.detail);
        }
        let mut o = obs("8867-4", qty(72.0, "/min"));
        o["status"] = json!("amended");
        assert_eq!(run(&o).readings.len(), 1);
    }

    #[test]
    fn coded_acvpu_answer_maps_to_consciousness() {
        let d = run(&obs(
            "67775-7",
            json!({"valueCodeableConcept": {"coding": [{"system": "urn:wardwatch:acvpu", "code": "P"}], "text": "Pain"}}),
        ));
        assert_eq!(d.readings.len(), 1, "{d:?}");
        assert_eq!(d.readings[0].vital, Vital::Consciousness);
        assert_eq!(d.readings[0].value, 3.0);

        let d = run(&obs(
            "67775-7",
            json!({"valueCodeableConcept": {"text": "C"}}),
        ));
        assert_eq!(d.readings[0].value, 1.0);
        let d = run(&obs("67775-7", json!({"valueString": "A"})));
        assert_eq!(d.readings[0].value, 0.0);
    }

    #[test]
    fn boolean_value_and_wardwatch_code_system_map_to_supplemental_oxygen() {
        let mut o = obs("x", json!({"valueBoolean": true}));
        o["code"] = json!({"coding": [
            {"system": "http://snomed.info/sct", "code": "371825009"},
            {"system": WARDWATCH_SYSTEM, "code": "supplemental_oxygen"}
        ]});
        let d = run(&o);
        assert_eq!(d.readings.len(), 1, "{d:?}");
        assert_eq!(d.readings[0].vital, Vital::SupplementalOxygen);
        assert_eq!(d.readings[0].value, 1.0);
    }

    #[test]
    fn unknown_loinc_code_is_an_unknown_vital() {
        let d = run(&obs("2951-2", qty(140.0, "mmol/L")));
        let r = only_rejection(&d);
        assert_eq!(r.reason, QuarantineReason::UnknownVital);
        assert!(r.detail.contains("http://loinc.org|2951-2"), "{}", r.detail);
        assert_eq!(r.record_index, Some(0));
    }

    #[test]
    fn missing_value_is_malformed_with_the_data_absent_reason() {
        let d = run(&obs(
            "8867-4",
            json!({"dataAbsentReason": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": "error"}]}}),
        ));
        let r = only_rejection(&d);
        assert_eq!(r.reason, QuarantineReason::Malformed);
        assert_eq!(
            r.detail,
            "Observation has no value: dataAbsentReason is \"error\""
        );
        let d = run(&obs("8867-4", json!({})));
        assert_eq!(only_rejection(&d).detail, "Observation has no value[x]");
    }

    #[test]
    fn unsupported_or_inexact_values_are_malformed() {
        for v in [
            json!({"valueInteger": 72}),
            json!({"valueQuantity": {"value": 72, "comparator": "<", "code": "/min"}}),
            json!({"valueQuantity": {"value": "72", "code": "/min"}}),
            json!({"valueString": "72", "valueBoolean": true}),
        ] {
            let d = run(&obs("8867-4", v.clone()));
            assert_eq!(
                only_rejection(&d).reason,
                QuarantineReason::Malformed,
                "{v}"
            );
        }
    }

    #[test]
    fn non_observation_resources_are_refused_whole() {
        for p in [
            json!({"resourceType": "Patient", "id": "p1"}),
            json!({"code": loinc("8867-4")}),
            json!([obs("8867-4", qty(72.0, "/min"))]),
        ] {
            let d = run(&p);
            let r = only_rejection(&d);
            assert_eq!(r.reason, QuarantineReason::Malformed);
            assert_eq!(r.record_index, None);
        }
        let d = run(&json!({"resourceType": "Patient"}));
        assert!(d.rejections[0].detail.contains("\"Patient\""));
    }
}
