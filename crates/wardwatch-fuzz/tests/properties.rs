//! Property tests of the decoders: arbitrary bytes never panic, and a valid
//! pack of readings comes back as exactly those readings.

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use wardwatch_core::{DeviceId, Vital};
use wardwatch_ingest::decode::{decode, PayloadFormat, ValidationPolicy};

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn arbitrary_bytes_never_panic_either_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let dev = DeviceId::new("p-dev").unwrap();
        for format in [PayloadFormat::Senml, PayloadFormat::Fhir] {
            let d = decode(format, &dev, &bytes, now(), now(), &ValidationPolicy::default());
            prop_assert!(d.readings.iter().all(|r| r.value.is_finite()));
        }
    }

    #[test]
    fn arbitrary_json_never_panics_either_decoder(text in "[\\[\\]{}\":,0-9a-z.eE+-]{0,400}") {
        let dev = DeviceId::new("p-dev").unwrap();
        for format in [PayloadFormat::Senml, PayloadFormat::Fhir] {
            let _ = decode(format, &dev, text.as_bytes(), now(), now(), &ValidationPolicy::default());
        }
    }

    #[test]
    fn a_valid_senml_pack_round_trips(
        readings in proptest::collection::vec((0usize..4, 0i64..86_400, 0u32..1000), 1..40)
    ) {
        // (vital, seconds before now, value in thousandths of its range)
        let vitals = [
            (Vital::HeartRate, "heart_rate", "/min"),
            (Vital::Spo2, "spo2", "%"),
            (Vital::RespiratoryRate, "respiratory_rate", "/min"),
            (Vital::SystolicBp, "systolic_bp", "mm[Hg]"),
        ];
        let base = now().timestamp();
        let mut want = Vec::new();
        let mut records = Vec::new();
        for (i, (v, ago, frac)) in readings.iter().enumerate() {
            let (vital, name, unit) = vitals[*v];
            let (lo, hi) = vital.plausible_range().unwrap();
            let value = (lo + (hi - lo) * f64::from(*frac) / 1000.0).round();
            // Distinct times: one reading per vital and moment.
            let t = base - ago - i as i64 * 86_400;
            records.push(serde_json::json!({"n": name, "u": unit, "v": value, "t": t}));
            want.push((vital, t, value));
        }
        let pack = serde_json::to_vec(&records).unwrap();
        let policy = ValidationPolicy::default();
        let d = decode(PayloadFormat::Senml, &DeviceId::new("p-dev").unwrap(), &pack, now(), now(), &policy);
        prop_assert!(d.rejections.is_empty(), "{:?}", d.rejections);
        let got: Vec<_> = d.readings.iter().map(|r| (r.vital, r.time.timestamp(), r.value)).collect();
        prop_assert_eq!(got, want);
    }
}
