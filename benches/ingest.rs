//! Decoding and validation costs on the reading path (pure CPU, no I/O).
//!
//! Run: `cargo bench --bench ingest`

use std::hint::black_box;

use chrono::Utc;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use wardwatch_core::{DeviceId, Vital, VitalValue};
use wardwatch_ingest::decode::{decode, PayloadFormat, ValidationPolicy};

fn senml_pack(records: usize) -> Vec<u8> {
    let mut rng = rand::rng();
    wardwatch::loadgen::pack(
        "ox-bench-1",
        Utc::now().timestamp_micros(),
        records,
        &mut rng,
    )
}

const FHIR_BP: &str = r#"{"resourceType":"Observation","status":"final",
  "code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},
  "effectiveDateTime":"2026-11-23T10:00:00Z",
  "component":[
    {"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},
     "valueQuantity":{"value":128,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}},
    {"code":{"coding":[{"system":"http://loinc.org","code":"8462-4"}]},
     "valueQuantity":{"value":82,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}}]}"#;

fn bench_decode(c: &mut Criterion) {
    let device = DeviceId::new("ox-bench-1").expect("id");
    let policy = ValidationPolicy::default();
    let now = Utc::now();
    let mut g = c.benchmark_group("decode");
    let pack = senml_pack(10);
    g.throughput(Throughput::Elements(10));
    g.bench_function("senml_pack_10_records", |b| {
        b.iter(|| {
            decode(
                PayloadFormat::Senml,
                &device,
                black_box(&pack),
                now,
                now,
                &policy,
            )
        })
    });
    let fhir = FHIR_BP.as_bytes();
    g.throughput(Throughput::Elements(2));
    g.bench_function("fhir_bp_panel", |b| {
        b.iter(|| {
            decode(
                PayloadFormat::Fhir,
                &device,
                black_box(fhir),
                now,
                now,
                &policy,
            )
        })
    });
    g.finish();
}

fn bench_validate(c: &mut Criterion) {
    let values: Vec<(Vital, VitalValue, &str)> = vec![
        (Vital::HeartRate, VitalValue::Number(72.0), "beat/min"),
        (Vital::RespiratoryRate, VitalValue::Number(16.0), "/min"),
        (Vital::Spo2, VitalValue::Number(97.0), "%"),
        (Vital::SystolicBp, VitalValue::Number(16.0), "kPa"),
        (Vital::DiastolicBp, VitalValue::Number(80.0), "mm[Hg]"),
        (Vital::BodyTemperature, VitalValue::Number(99.1), "[degF]"),
        (Vital::BloodGlucose, VitalValue::Number(100.0), "mg/dL"),
        (Vital::BodyWeight, VitalValue::Number(180.0), "[lb_av]"),
        (Vital::OxygenFlow, VitalValue::Number(2.0), "L/min"),
        (Vital::HeartRate, VitalValue::Number(71.0), "{beats}/min"),
    ];
    let mut g = c.benchmark_group("validate");
    g.throughput(Throughput::Elements(values.len() as u64));
    g.bench_function("to_canonical_10_values", |b| {
        b.iter(|| {
            for (v, x, u) in &values {
                let _ = black_box(v.to_canonical(black_box(x), Some(u)));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench_decode, bench_validate);
criterion_main!(benches);
