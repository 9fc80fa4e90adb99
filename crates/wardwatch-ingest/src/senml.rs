//! SenML JSON (RFC 8428) pack resolution.
//!
//! A pack is a JSON array of records. Base fields (`bn`, `bt`, `bu`, `bv`;
//! `bver` and `bs` are accepted and ignored) apply to the record that carries
//! them and every following record until a later record sets them again
//! (RFC 8428 §4.6). Each record is resolved on its own: a bad record is refused
//! alone and the others still decode.
//!
//! Wardwatch specifics:
//! - the vital comes from the record's own `n` (a wardwatch vital name or a
//!   LOINC code), never from `bn`, which only names the device;
//! - resolved times below 2^28 are relative to the receiving clock (§4.5.3);
//! - data values (`vd`) and sums without a value are refused;
//! - a record whose base fields have the wrong JSON type is refused and its
//!   base fields are not applied; well-typed base fields take effect even when
//!   the rest of their record is refused.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value};
use wardwatch_core::{QuarantineReason, Vital, VitalValue};

use crate::item::{Candidate, Failure, Item};

/// Resolved times below this many seconds are relative to now (RFC 8428 §4.5.3).
pub const RELATIVE_TIME_LIMIT: f64 = 268_435_456.0; // 2^28

/// Highest SenML version understood (`bver`); RFC 8428 is version 10.
pub const MAX_VERSION: f64 = 10.0;

/// Every field RFC 8428 defines; others are ignored unless they end in `_`.
const KNOWN_FIELDS: [&str; 15] = [
    "bn", "bt", "bu", "bv", "bs", "bver", "n", "u", "v", "vs", "vb", "vd", "s", "t", "ut",
];

/// A resolved pack.
#[derive(Debug)]
pub(crate) struct Pack {
    pub(crate) items: Vec<Item>,
    /// Any record's time was resolved relative to `now`.
    pub(crate) relative_time: bool,
}

/// The base values in force.
#[derive(Debug, Default)]
struct Base {
    name: String,
    time: f64,
    unit: Option<String>,
    value: f64,
}

/// Resolves a parsed SenML pack. `Err` is a payload-level malformed detail.
pub(crate) fn resolve(root: &Value, now: DateTime<Utc>) -> Result<Pack, String> {
    let records = root
        .as_array()
        .ok_or_else(|| "SenML pack must be a JSON array of records".to_string())?;
    let mut base = Base::default();
    let mut relative_time = false;
    let items = records
        .iter()
        .enumerate()
        .map(|(index, rec)| Item {
            index,
            record: rec.to_string(),
            outcome: resolve_record(rec, &mut base, now, &mut relative_time),
        })
        .collect();
    Ok(Pack {
        items,
        relative_time,
    })
}

fn resolve_record(
    rec: &Value,
    base: &mut Base,
    now: DateTime<Utc>,
    relative_time: &mut bool,
) -> Result<Candidate, Failure> {
    let obj = rec
        .as_object()
        .ok_or_else(|| Failure::malformed("SenML record must be a JSON object"))?;

    // Base fields first: they apply to this record even if it is refused later.
    let bn = opt_str(obj, "bn")?;
    let bt = opt_num(obj, "bt")?;
    let bu = opt_str(obj, "bu")?;
    let bv = opt_num(obj, "bv")?;
    opt_num(obj, "bs")?;
    let bver = opt_num(obj, "bver")?;
    if let Some(bn) = bn {
        base.name = bn.to_string();
    }
    if let Some(bt) = bt {
        base.time = bt;
    }
    if let Some(bu) = bu {
        base.unit = Some(bu.to_string());
    }
    if let Some(bv) = bv {
        base.value = bv;
    }
    if let Some(ver) = bver {
        if ver > MAX_VERSION {
            return Err(Failure::malformed(format!(
                "SenML version bver {ver} is not supported; at most {MAX_VERSION} is understood"
            )));
        }
    }

    if let Some(key) = obj
        .keys()
        .find(|k| k.ends_with('_') && !KNOWN_FIELDS.contains(&k.as_str()))
    {
        return Err(Failure::malformed(format!(
            "must-understand field {key:?} is not supported"
        )));
    }

    let n = opt_str(obj, "n")?;
    let u = opt_str(obj, "u")?;
    let t = opt_num(obj, "t")?;
    let ut = opt_num(obj, "ut")?;
    let update_interval_secs = match ut {
        None => None,
        // One second to thirty days: anything else is a device fault, not a cadence.
        Some(ut) if ut.is_finite() && (1.0..=MAX_UPDATE_INTERVAL_SECS).contains(&ut) => {
            Some(ut.round() as u32)
        }
        Some(ut) => {
            return Err(Failure::malformed(format!(
                "update interval ut {ut} s is outside 1 s to 30 days"
            )))
        }
    };
    let s = opt_num(obj, "s")?;
    let v = opt_num(obj, "v")?;
    let vs = opt_str(obj, "vs")?;
    let vb = match obj.get("vb") {
        None => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(other) => return Err(wrong_type("vb", "a boolean", other)),
    };
    let vd = opt_str(obj, "vd")?;

    let present: Vec<&str> = [
        ("v", v.is_some()),
        ("vs", vs.is_some()),
        ("vb", vb.is_some()),
        ("vd", vd.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, p)| p.then_some(k))
    .collect();
    if present.len() > 1 {
        return Err(Failure::malformed(format!(
            "record has more than one value field ({}); exactly one of v, vs, vb is allowed",
            present.join(", ")
        )));
    }
    let value = if let Some(v) = v {
        VitalValue::Number(base.value + v)
    } else if let Some(vs) = vs {
        VitalValue::Text(vs.to_string())
    } else if let Some(vb) = vb {
        VitalValue::Bool(vb)
    } else if vd.is_some() {
        return Err(Failure::malformed(
            "data values (vd) are not supported; use v, vs or vb",
        ));
    } else if s.is_some() {
        return Err(Failure::malformed(
            "record has a sum (s) but no value; sums alone are not supported",
        ));
    } else {
        return Err(Failure::malformed(
            "record has no value; exactly one of v, vs, vb is required",
        ));
    };

    let time = resolve_time(base.time + t.unwrap_or(0.0), now, relative_time)?;

    let Some(n) = n else {
        return Err(Failure::new(
            QuarantineReason::UnknownVital,
            "record has no name (n), so the vital is unknown",
        ));
    };
    let vital = Vital::from_name(n)
        .or_else(|| Vital::from_loinc(n))
        .ok_or_else(|| {
            Failure::new(
                QuarantineReason::UnknownVital,
                format!(
                    "unknown vital {n:?}; expected one of {} or a LOINC code",
                    Vital::ALL.map(Vital::as_str).join(", ")
                ),
            )
        })?;

    let source_name = (!base.name.is_empty()).then(|| format!("{}{n}", base.name));
    Ok(Candidate {
        vital,
        value,
        unit: u.map(str::to_string).or_else(|| base.unit.clone()),
        time,
        source_name,
        update_interval_secs,
    })
}

/// The longest expected update interval a device may declare (30 days).
const MAX_UPDATE_INTERVAL_SECS: f64 = 30.0 * 86_400.0;

/// Turns a resolved SenML time (seconds) into an absolute instant.
fn resolve_time(
    secs: f64,
    now: DateTime<Utc>,
    relative_time: &mut bool,
) -> Result<DateTime<Utc>, Failure> {
    let unrepresentable = || Failure::malformed(format!("time {secs} s is not representable"));
    if !secs.is_finite() {
        return Err(unrepresentable());
    }
    let micros = (secs * 1e6).round();
    // i64::MAX as f64 rounds up to 2^63, which itself is out of range.
    if !(micros >= i64::MIN as f64 && micros < i64::MAX as f64) {
        return Err(unrepresentable());
    }
    let micros = micros as i64;
    if secs < RELATIVE_TIME_LIMIT {
        *relative_time = true;
        now.checked_add_signed(TimeDelta::microseconds(micros))
            .ok_or_else(unrepresentable)
    } else {
        DateTime::from_timestamp_micros(micros).ok_or_else(unrepresentable)
    }
}

fn opt_str<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, Failure> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(wrong_type(key, "a string", other)),
    }
}

fn opt_num(obj: &Map<String, Value>, key: &str) -> Result<Option<f64>, Failure> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .map(Some)
            .ok_or_else(|| wrong_type(key, "a number", &Value::Number(n.clone()))),
        Some(other) => Err(wrong_type(key, "a number", other)),
    }
}

fn wrong_type(key: &str, expected: &str, got: &Value) -> Failure {
    let kind = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    Failure::malformed(format!("field {key:?} must be {expected}, got {kind}"))
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use wardwatch_core::{DeviceId, Reading, ReadingSource, Rejection};

    use super::*;
    use crate::decode::{decode, Decoded, PayloadFormat, ValidationPolicy};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
    }

    fn run_at(payload: &str, now: DateTime<Utc>, policy: &ValidationPolicy) -> Decoded {
        let dev = DeviceId::new("ox-01").unwrap();
        decode(
            PayloadFormat::Senml,
            &dev,
            payload.as_bytes(),
            now,
            now,
            policy,
        )
    }

    fn run(payload: &str) -> Decoded {
        run_at(payload, now(), &ValidationPolicy::default())
    }

    fn epoch(secs: f64) -> DateTime<Utc> {
        DateTime::from_timestamp_micros((secs * 1e6).round() as i64).unwrap()
    }

    fn only_rejection(d: &Decoded) -> &Rejection {
        assert!(d.readings.is_empty(), "{d:?}");
        assert_eq!(d.rejections.len(), 1, "{d:?}");
        &d.rejections[0]
    }

    fn summary(r: &Reading) -> (Vital, f64, DateTime<Utc>, Option<&str>) {
        (r.vital, r.value, r.time, r.source_name.as_deref())
    }

    #[test]
    fn rfc8428_multiple_datapoints_example_resolves_base_name_time_and_unit() {
        // RFC 8428 §5.1.2, with wardwatch vital names in place of voltage/current.
        let pack = r#"[
            {"bn":"urn:dev:ow:10e2073a010800:","bt":1.276020076001e+09,
             "bu":"/min","bver":5,"n":"respiratory_rate","u":"1/min","v":16},
            {"n":"heart_rate","t":-5,"v":72},
            {"n":"heart_rate","t":-4,"v":73},
            {"n":"heart_rate","t":-3,"v":74},
            {"n":"heart_rate","t":-2,"v":75},
            {"n":"heart_rate","t":-1,"v":76},
            {"n":"heart_rate","v":77}
        ]"#;
        let now = epoch(1_276_020_100.0);
        let d = run_at(pack, now, &ValidationPolicy::default());
        assert!(d.rejections.is_empty(), "{d:?}");
        assert!(!d.relative_time);
        let bt = 1_276_020_076.001;
        let got: Vec<_> = d.readings.iter().map(summary).collect();
        let name = |n: &'static str| match n {
            "rr" => Some("urn:dev:ow:10e2073a010800:respiratory_rate"),
            _ => Some("urn:dev:ow:10e2073a010800:heart_rate"),
        };
        assert_eq!(
            got,
            vec![
                (Vital::RespiratoryRate, 16.0, epoch(bt), name("rr")),
                (Vital::HeartRate, 72.0, epoch(bt - 5.0), name("hr")),
                (Vital::HeartRate, 73.0, epoch(bt - 4.0), name("hr")),
                (Vital::HeartRate, 74.0, epoch(bt - 3.0), name("hr")),
                (Vital::HeartRate, 75.0, epoch(bt - 2.0), name("hr")),
                (Vital::HeartRate, 76.0, epoch(bt - 1.0), name("hr")),
                (Vital::HeartRate, 77.0, epoch(bt), name("hr")),
            ]
        );
        // Sub-second precision survives: .001 s.
        assert_eq!(d.readings[0].time.timestamp_subsec_micros(), 1000);
        assert!(d.readings.iter().all(|r| r.source == ReadingSource::Senml));
    }

    #[test]
    fn relative_times_without_base_time_count_back_from_now() {
        // RFC 8428 §4.5.3: a time of 0 is "now", negative values are in the past.
        let d = run(r#"[{"n":"heart_rate","u":"/min","v":72,"t":-60},
                {"n":"heart_rate","u":"/min","v":73},
                {"n":"heart_rate","u":"/min","v":74,"t":-0.5}]"#);
        assert!(d.rejections.is_empty(), "{d:?}");
        assert!(d.relative_time);
        let times: Vec<_> = d.readings.iter().map(|r| r.time).collect();
        assert_eq!(
            times,
            vec![
                now() - Duration::seconds(60),
                now(),
                now() - Duration::milliseconds(500)
            ]
        );
    }

    #[test]
    fn update_interval_is_carried_and_refused_when_absurd() {
        let d = run(r#"[{"n":"spo2","u":"%","v":97,"ut":900},
                {"n":"spo2","u":"%","v":96},
                {"n":"spo2","u":"%","v":95,"ut":0},
                {"n":"spo2","u":"%","v":95,"ut":1e9}]"#);
        let uts: Vec<_> = d.readings.iter().map(|r| r.update_interval_secs).collect();
        assert_eq!(uts, vec![Some(900), None]);
        assert_eq!(d.rejections.len(), 2, "{d:?}");
        assert!(d.rejections.iter().all(
            |r| r.reason == QuarantineReason::Malformed && r.detail.contains("update interval")
        ));
    }

    #[test]
    fn base_value_is_added_to_each_value() {
        let d = run(r#"[{"bv":90,"bu":"%","n":"spo2","v":7},
                {"n":"spo2","v":-2},
                {"n":"spo2","vs":"ignored-by-bv","u":""}]"#);
        let values: Vec<_> = d.readings.iter().map(|r| r.value).collect();
        assert_eq!(values, vec![97.0, 88.0]);
        // bv only applies to v: a string value for spo2 is the wrong type.
        assert_eq!(d.rejections.len(), 1);
        assert_eq!(d.rejections[0].reason, QuarantineReason::Malformed);
        assert_eq!(d.rejections[0].record_index, Some(2));
    }

    #[test]
    fn record_unit_overrides_base_unit() {
        let d = run(r#"[{"bu":"Cel","n":"body_temperature","v":37.2},
                {"n":"body_temperature","u":"degF","v":98.6},
                {"n":"body_temperature","v":36.9}]"#);
        assert!(d.rejections.is_empty(), "{d:?}");
        let values: Vec<_> = d.readings.iter().map(|r| r.value).collect();
        assert_eq!(values[0], 37.2);
        assert!((values[1] - 37.0).abs() < 1e-9);
        assert_eq!(values[2], 36.9, "u applies to its own record only");
    }

    #[test]
    fn base_fields_changing_mid_pack_apply_from_that_record_on() {
        let t0 = 1_714_564_000.0;
        let pack = format!(
            r#"[{{"bn":"a/","bt":{t0},"bu":"/min","n":"heart_rate","v":70}},
                {{"n":"respiratory_rate","v":14}},
                {{"bn":"b/","bt":{t1},"bu":"%","n":"spo2","v":96}},
                {{"n":"spo2","t":1,"v":95}},
                {{"bn":"","n":"spo2","v":94}}]"#,
            t1 = t0 + 100.0
        );
        let d = run(&pack);
        assert!(d.rejections.is_empty(), "{d:?}");
        let got: Vec<_> = d.readings.iter().map(summary).collect();
        assert_eq!(
            got,
            vec![
                (Vital::HeartRate, 70.0, epoch(t0), Some("a/heart_rate")),
                (
                    Vital::RespiratoryRate,
                    14.0,
                    epoch(t0),
                    Some("a/respiratory_rate")
                ),
                (Vital::Spo2, 96.0, epoch(t0 + 100.0), Some("b/spo2")),
                (Vital::Spo2, 95.0, epoch(t0 + 101.0), Some("b/spo2")),
                (Vital::Spo2, 94.0, epoch(t0 + 100.0), None),
            ]
        );
    }

    #[test]
    fn base_time_applies_to_following_records_until_reset() {
        let pack = r#"[{"bt":-120,"n":"heart_rate","u":"/min","v":70},
                       {"n":"heart_rate","u":"/min","v":71,"t":10},
                       {"bt":-30,"n":"heart_rate","u":"/min","v":72},
                       {"n":"heart_rate","u":"/min","v":73,"t":-5}]"#;
        let d = run(pack);
        assert!(d.relative_time);
        let times: Vec<_> = d.readings.iter().map(|r| r.time).collect();
        assert_eq!(
            times,
            vec![
                now() - Duration::seconds(120),
                now() - Duration::seconds(110),
                now() - Duration::seconds(30),
                now() - Duration::seconds(35),
            ]
        );
    }

    #[test]
    fn times_below_two_to_the_28_are_relative_and_from_it_on_absolute() {
        let wide = ValidationPolicy {
            max_future_skew: Duration::days(365 * 20),
            retention: Duration::days(365 * 100),
            ..ValidationPolicy::default()
        };
        let d = run_at(
            r#"[{"n":"heart_rate","u":"/min","v":72,"t":268435455}]"#,
            now(),
            &wide,
        );
        assert!(d.relative_time);
        assert_eq!(d.readings[0].time, now() + Duration::seconds(268_435_455));

        let d = run_at(
            r#"[{"n":"heart_rate","u":"/min","v":72,"t":268435456}]"#,
            now(),
            &wide,
        );
        assert!(!d.relative_time);
        assert_eq!(d.readings[0].time, epoch(268_435_456.0));
        assert_eq!(d.readings[0].time.to_rfc3339(), "1978-07-04T21:24:16+00:00");

        // The boundary applies to bt + t, not to t alone.
        let d = run_at(
            r#"[{"bt":268435457,"n":"heart_rate","u":"/min","v":72,"t":-2}]"#,
            now(),
            &wide,
        );
        assert!(d.relative_time);
        assert_eq!(d.readings[0].time, now() + Duration::seconds(268_435_455));
    }

    #[test]
    fn relative_time_flag_is_set_even_when_the_record_is_refused() {
        let d = run(r#"[{"n":"pulse","u":"/min","v":72}]"#);
        assert!(d.relative_time);
        assert_eq!(only_rejection(&d).reason, QuarantineReason::UnknownVital);
    }

    #[test]
    fn missing_value_and_sum_alone_are_malformed_records() {
        let d = run(r#"[{"n":"heart_rate","u":"/min"}]"#);
        let r = only_rejection(&d);
        assert_eq!(r.reason, QuarantineReason::Malformed);
        assert!(r.detail.contains("no value"), "{}", r.detail);

        let d = run(r#"[{"n":"heart_rate","u":"/min","s":72}]"#);
        let r = only_rejection(&d);
        assert_eq!(r.reason, QuarantineReason::Malformed);
        assert!(r.detail.contains("sum"), "{}", r.detail);

        // A sum alongside a value is fine (and ignored).
        let d = run(r#"[{"n":"heart_rate","u":"/min","v":72,"s":1000}]"#);
        assert_eq!(d.readings.len(), 1);
    }

    #[test]
    fn multiple_values_are_malformed_records() {
        let d = run(r#"[{"n":"heart_rate","u":"/min","v":72,"vs":"72"}]"#);
        let r = only_rejection(&d);
        assert_eq!(r.reason, QuarantineReason::Malformed);
        assert!(r.detail.contains("v, vs"), "{}", r.detail);
    }

    #[test]
    fn string_and_boolean_values_map_to_consciousness_and_oxygen() {
        let d = run(r#"[{"n":"consciousness","vs":"V"},
                {"n":"supplemental_oxygen","vb":true},
                {"n":"supplemental_oxygen","vb":false}]"#);
        assert!(d.rejections.is_empty(), "{d:?}");
        let got: Vec<_> = d.readings.iter().map(|r| (r.vital, r.value)).collect();
        assert_eq!(
            got,
            vec![
                (Vital::Consciousness, 2.0),
                (Vital::SupplementalOxygen, 1.0),
                (Vital::SupplementalOxygen, 0.0)
            ]
        );
    }

    #[test]
    fn data_values_are_not_supported() {
        let d = run(r#"[{"n":"heart_rate","vd":"aGk"}]"#);
        let r = only_rejection(&d);
        assert_eq!(r.reason, QuarantineReason::Malformed);
        assert!(r.detail.contains("vd"), "{}", r.detail);
    }

    #[test]
    fn must_understand_fields_reject_the_record_but_other_unknown_fields_are_ignored() {
        let d = run(r#"[{"n":"heart_rate","u":"/min","v":72,"rounding_":"up"},
                {"n":"heart_rate","u":"/min","v":73,"firmware":"1.2"}]"#);
        assert_eq!(d.readings.len(), 1);
        assert_eq!(d.readings[0].value, 73.0);
        let r = &d.rejections[0];
        assert_eq!(r.reason, QuarantineReason::Malformed);
        assert_eq!(r.record_index, Some(0));
        assert!(r.detail.contains("rounding_"), "{}", r.detail);
    }

    #[test]
    fn version_above_10_is_malformed() {
        let d = run(r#"[{"bver":11,"n":"heart_rate","u":"/min","v":72}]"#);
        assert_eq!(only_rejection(&d).reason, QuarantineReason::Malformed);
        let d = run(r#"[{"bver":10,"bs":3,"n":"heart_rate","u":"/min","v":72}]"#);
        assert_eq!(d.readings.len(), 1);
    }

    #[test]
    fn fields_of_the_wrong_json_type_are_malformed_records() {
        for rec in [
            r#"{"n":"heart_rate","u":"/min","v":72,"t":"x"}"#,
            r#"{"n":"heart_rate","u":"/min","v":"72"}"#,
            r#"{"n":72,"u":"/min","v":72}"#,
            r#"{"n":"heart_rate","u":5,"v":72}"#,
            r#"{"bn":5,"n":"heart_rate","u":"/min","v":72}"#,
            r#"{"bt":"now","n":"heart_rate","u":"/min","v":72}"#,
            r#"{"bv":null,"n":"heart_rate","u":"/min","v":72}"#,
            r#"{"n":"supplemental_oxygen","vb":"true"}"#,
            r#"{"n":"consciousness","vs":1}"#,
            r#"["heart_rate",72]"#,
            r#"null"#,
        ] {
            let d = run(&format!("[{rec}]"));
            let r = only_rejection(&d);
            assert_eq!(r.reason, QuarantineReason::Malformed, "{rec}");
            assert_eq!(r.record_index, Some(0));
        }
        let d = run(r#"[{"n":"heart_rate","u":"/min","v":72,"t":"x"}]"#);
        assert_eq!(
            d.rejections[0].detail,
            r#"field "t" must be a number, got a string"#
        );
    }

    #[test]
    fn wrongly_typed_base_fields_are_not_applied_to_later_records() {
        let d = run(r#"[{"bn":"a/","n":"spo2","u":"%","v":97},
                {"bn":7,"n":"spo2","u":"%","v":96},
                {"n":"spo2","u":"%","v":95}]"#);
        assert_eq!(d.rejections.len(), 1);
        assert_eq!(d.rejections[0].record_index, Some(1));
        assert_eq!(d.readings[1].source_name.as_deref(), Some("a/spo2"));
    }

    #[test]
    fn base_fields_of_a_refused_record_still_apply_to_later_records() {
        let d = run(r#"[{"bn":"a/","bu":"%","n":"pulse","v":1},
                {"n":"spo2","v":95}]"#);
        assert_eq!(d.rejections.len(), 1);
        assert_eq!(d.readings.len(), 1);
        assert_eq!(d.readings[0].source_name.as_deref(), Some("a/spo2"));
    }

    #[test]
    fn missing_or_unknown_names_are_unknown_vitals_and_loinc_codes_are_accepted() {
        let d = run(r#"[{"bn":"dev/","u":"/min","v":72},
                {"n":"pulse","u":"/min","v":72},
                {"n":"8867-4","u":"/min","v":72},
                {"bn":"heart_rate","u":"/min","v":72}]"#);
        assert_eq!(d.readings.len(), 1);
        assert_eq!(d.readings[0].vital, Vital::HeartRate);
        let idx: Vec<_> = d
            .rejections
            .iter()
            .map(|r| (r.record_index, r.reason))
            .collect();
        assert_eq!(
            idx,
            vec![
                (Some(0), QuarantineReason::UnknownVital),
                (Some(1), QuarantineReason::UnknownVital),
                (Some(3), QuarantineReason::UnknownVital),
            ]
        );
        assert!(d.rejections[1].detail.contains("\"pulse\""));
    }

    #[test]
    fn one_bad_record_among_good_ones_rejects_only_that_record() {
        let d = run(r#"[{"n":"heart_rate","u":"/min","v":72},
                {"n":"body_temperature","u":"degC","v":37},
                {"n":"spo2","u":"%","v":30},
                {"n":"respiratory_rate","u":"/min","v":18}]"#);
        let vitals: Vec<_> = d.readings.iter().map(|r| r.vital).collect();
        assert_eq!(vitals, vec![Vital::HeartRate, Vital::RespiratoryRate]);
        assert_eq!(d.rejections.len(), 2);
        assert_eq!(d.rejections[0].reason, QuarantineReason::BadUnit);
        assert_eq!(d.rejections[0].record_index, Some(1));
        assert_eq!(
            d.rejections[0].record,
            r#"{"n":"body_temperature","u":"degC","v":37}"#
        );
        assert!(d.rejections[0].detail.contains("degC"));
        assert_eq!(d.rejections[1].reason, QuarantineReason::Implausible);
        assert_eq!(d.rejections[1].record_index, Some(2));
    }

    #[test]
    fn unrepresentable_times_are_malformed() {
        for t in ["1e300", "-1e300", "9.3e12"] {
            let d = run(&format!(
                r#"[{{"n":"heart_rate","u":"/min","v":72,"t":{t}}}]"#
            ));
            let r = only_rejection(&d);
            assert_eq!(r.reason, QuarantineReason::Malformed, "{t}");
            assert!(r.detail.contains("not representable"), "{}", r.detail);
        }
    }
}
