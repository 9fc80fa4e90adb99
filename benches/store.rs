//! The batch writer's rows/s into a real PostgreSQL: UNNEST against COPY, at
//! several batch sizes, measured side by side in one run.
//!
//! Run: `cargo bench --bench store` (PostgreSQL from `WARDWATCH_BENCH_PG`,
//! default `postgres://postgres@127.0.0.1:5432/postgres`; it creates and
//! drops its own database `ww_bench_store`).

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sqlx::{Connection, PgConnection};
use wardwatch_core::{DeliveryTag, DeviceId, Reading, ReadingSource, Vital};
use wardwatch_store::{IngestMessage, PgStore, Store, WriteMethod};

const DEVICES: usize = 2000;
const PER_MESSAGE: usize = 10;

fn admin_url() -> String {
    std::env::var("WARDWATCH_BENCH_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn db_url() -> String {
    let a = admin_url();
    let base = a.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap_or(a);
    format!("{base}/ww_bench_store")
}

async fn setup() -> PgStore {
    let mut admin = PgConnection::connect(&admin_url())
        .await
        .expect("PostgreSQL");
    sqlx::query("DROP DATABASE IF EXISTS ww_bench_store WITH (FORCE)")
        .execute(&mut admin)
        .await
        .expect("drop");
    sqlx::query("CREATE DATABASE ww_bench_store")
        .execute(&mut admin)
        .await
        .expect("create");
    let store = PgStore::connect(&db_url(), 4).await.expect("connect");
    store.migrate().await.expect("migrate");
    let pairs: Vec<(String, String)> = (0..DEVICES)
        .map(|i| (format!("bp{i}"), format!("bd{i}")))
        .collect();
    let from = Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap();
    store
        .enrol_bulk("bench", &pairs, from)
        .await
        .expect("enrol");
    store
}

/// `rows` readings spread over messages of 10, at fresh times (no conflicts).
fn batch(rows: usize, counter: &mut i64) -> Vec<IngestMessage> {
    let base = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let vitals = [
        Vital::HeartRate,
        Vital::Spo2,
        Vital::RespiratoryRate,
        Vital::SystolicBp,
        Vital::DiastolicBp,
    ];
    (0..rows.div_ceil(PER_MESSAGE))
        .map(|m| {
            *counter += 1;
            let device = format!("bd{}", (*counter as usize) % DEVICES);
            let t = base + chrono::Duration::microseconds(*counter);
            let readings = (0..PER_MESSAGE)
                .map(|j| Reading {
                    device_id: DeviceId::new(device.clone()).expect("id"),
                    vital: vitals[j % vitals.len()],
                    time: t + chrono::Duration::milliseconds(j as i64 / vitals.len() as i64),
                    value: 70.0 + j as f64,
                    received_at: t,
                    source: ReadingSource::Senml,
                    source_name: None,
                    update_interval_secs: None,
                })
                .collect();
            IngestMessage {
                tag: DeliveryTag {
                    epoch: 1,
                    seq: m as u64,
                },
                topic: format!("wardwatch/v1/devices/{device}/readings"),
                device_id: Some(device),
                key: [0; 16],
                received_at: t,
                readings,
                rejections: Vec::new(),
                relative_anchor: None,
                redelivered: false,
            }
        })
        .collect()
}

fn bench_writer(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let store = rt.block_on(setup());
    let mut counter = 0i64;
    let mut g = c.benchmark_group("batch_write");
    g.sample_size(20).measurement_time(Duration::from_secs(8));
    for rows in [500usize, 2000, 5000] {
        g.throughput(Throughput::Elements(rows as u64));
        for method in [WriteMethod::Unnest, WriteMethod::Copy] {
            let s = store.clone().with_write_method(method);
            let name = match method {
                WriteMethod::Unnest => "unnest",
                WriteMethod::Copy => "copy",
            };
            g.bench_with_input(BenchmarkId::new(name, rows), &rows, |b, &rows| {
                b.iter_custom(|iters| {
                    let batches: Vec<_> = (0..iters).map(|_| batch(rows, &mut counter)).collect();
                    rt.block_on(async {
                        let start = Instant::now();
                        for b in &batches {
                            let out = s.write_batch(b).await.expect("write");
                            assert_eq!(out.readings_inserted as usize, b.len() * PER_MESSAGE);
                        }
                        start.elapsed()
                    })
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench_writer);
criterion_main!(benches);
