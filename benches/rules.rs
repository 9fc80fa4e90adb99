//! The rules core's costs. Run: `cargo bench --bench rules`
//!
//! So far: one NEWS2 evaluation (target < 100 ns).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use wardwatch_rules::news2::{score, Acvpu, Observations, OxygenSource, SpO2Scale};

fn bench_news2(c: &mut Criterion) {
    let obs = Observations {
        respiration_rate: Some(22.0),
        spo2: Some(94.0),
        on_oxygen: Some((false, OxygenSource::Reading)),
        systolic_bp: Some(104.0),
        pulse: Some(112.0),
        consciousness: Some(Acvpu::Alert),
        temperature: Some(38.45),
    };
    c.bench_function("news2/evaluate", |b| {
        b.iter(|| score(black_box(&obs), black_box(SpO2Scale::One)))
    });
    c.bench_function("news2/evaluate_scale2_partial", |b| {
        let partial = Observations {
            consciousness: None,
            on_oxygen: Some((true, OxygenSource::CarePlan)),
            ..obs
        };
        b.iter(|| score(black_box(&partial), black_box(SpO2Scale::Two)))
    });
}

criterion_group!(benches, bench_news2);

/// Readings/s through one worker's state: 10,000 patients on mixed pathways,
/// a HashMap lookup and the full rule evaluation per reading (no channel).
fn bench_worker(c: &mut Criterion) {
    use std::collections::HashMap;
    use std::path::Path;

    use criterion::Throughput;
    use wardwatch_core::Vital;
    use wardwatch_rules::pathway::load_dir;
    use wardwatch_rules::patient::{PatientSettings, PatientState};

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/pathways");
    let pathways: Vec<_> = load_dir(&dir).expect("pathways").into_values().collect();
    let settings = PatientSettings::default();
    let n = 10_000usize;
    let mut patients: HashMap<String, PatientState> = HashMap::with_capacity(n);
    let names: Vec<String> = (0..n).map(|i| format!("patient-{i}")).collect();
    let vitals = [
        (Vital::RespiratoryRate, 16.0),
        (Vital::Spo2, 95.0),
        (Vital::SystolicBp, 118.0),
        (Vital::HeartRate, 84.0),
        (Vital::BodyTemperature, 37.2),
        (Vital::BodyWeight, 80.0),
    ];
    let mut i = 0usize;
    let mut t = 0i64;
    // Memory per patient: the state itself plus its threshold states on the heap.
    eprintln!(
        "PatientState: {} bytes inline (+ {} bytes per pathway threshold)",
        std::mem::size_of::<PatientState>(),
        std::mem::size_of::<wardwatch_rules::threshold::ThresholdState>()
    );
    let mut g = c.benchmark_group("worker");
    g.throughput(Throughput::Elements(1));
    g.bench_function("on_reading_10k_patients_mixed_pathways", |b| {
        b.iter(|| {
            let p = i % n;
            let (vital, base) = vitals[(i / n) % vitals.len()];
            let pathway = &pathways[p % pathways.len()];
            i += 1;
            t += 1;
            if !patients.contains_key(&names[p]) {
                patients.insert(names[p].clone(), PatientState::default());
            }
            let Some(state) = patients.get_mut(&names[p]) else {
                return Vec::new();
            };
            black_box(state.on_reading(pathway, &settings, vital, base + (i % 5) as f64 * 0.1, t))
        })
    });
    g.finish();
}

criterion_group!(worker_benches, bench_worker);

criterion_main!(benches, worker_benches);
