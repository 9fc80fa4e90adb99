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
criterion_main!(benches);
