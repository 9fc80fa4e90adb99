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

/// Readings/s through one shard worker: 10,000 patients on mixed pathways,
/// the worker's own per-reading path (patient slot, rule set snapshot,
/// every rule, the silent-device deadline), without the channel.
fn bench_worker(c: &mut Criterion) {
    use std::path::Path;
    use std::sync::Arc;

    use arc_swap::ArcSwap;
    use criterion::Throughput;
    use wardwatch_core::Vital;
    use wardwatch_rules::pathway::load_dir;
    use wardwatch_rules::patient::{PatientSettings, PatientState};
    use wardwatch_rules::shard::{
        PatientConfig, PatientKey, RuleSet, ShardInput, ShardStats, ShardWorker, SlotReading,
    };

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/pathways");
    let rules = RuleSet::new(load_dir(&dir).expect("pathways"));
    let names: Vec<String> = rules.pathways.keys().cloned().collect();
    let n = 10_000usize;
    let mut worker = ShardWorker::new(
        Arc::new(ArcSwap::from_pointee(rules)),
        Arc::new(ShardStats::default()),
    );
    let keys: Vec<PatientKey> = (0..n).map(|i| Arc::from(format!("patient-{i}"))).collect();
    // One device on loan each, whose own silence is watched.
    let devices: Vec<PatientKey> = (0..n).map(|i| Arc::from(format!("device-{i}"))).collect();
    let mut out = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let config = PatientConfig {
            pathway: names[i % names.len()].clone(),
            settings: PatientSettings::default(),
            monitored: true,
            devices: vec![devices[i].clone()],
        };
        worker.handle(
            ShardInput::Patient {
                slot: i as u32,
                patient: k.clone(),
                config: Arc::new(config),
            },
            &mut out,
        );
    }
    worker.handle(
        ShardInput::Restore {
            open: vec![],
            now: 0,
        },
        &mut out,
    );
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
        "PatientState: {} bytes inline (+ {} bytes per threshold on the heap)",
        std::mem::size_of::<PatientState>(),
        std::mem::size_of::<wardwatch_rules::threshold::Threshold>()
            + std::mem::size_of::<wardwatch_rules::threshold::ThresholdState>()
            + 8
    );
    let mut g = c.benchmark_group("worker");
    g.throughput(Throughput::Elements(1));
    g.bench_function("handle_reading_10k_patients_mixed_pathways", |b| {
        b.iter(|| {
            let p = i % n;
            let (vital, base) = vitals[(i / n) % vitals.len()];
            i += 1;
            t += 1;
            let r = SlotReading {
                slot: p as u32,
                vital,
                value: base + (i % 5) as f64 * 0.1,
                at: t,
                update_interval_secs: None,
                last_in_set: true,
                device: Some(devices[p].clone()),
            };
            worker.handle(ShardInput::Reading(r), &mut out);
            black_box(out.len());
            out.clear();
        })
    });
    g.finish();
}

criterion_group!(worker_benches, bench_worker);

criterion_main!(benches, worker_benches);
