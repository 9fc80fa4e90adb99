//! Rules state memory per patient, measured (target <= 2 KiB).
//!
//! Run: `cargo bench --bench rules_memory`
//!
//! A counting global allocator tracks live heap bytes. The figure covers
//! everything the rules hold for a patient: the router's registry entry,
//! the worker's slot (`PatientState`, thresholds, trends), the patient's
//! settings, and the `no_data` watch. Each patient is enrolled on one of the
//! pathways in turn and sent a full set of readings, a day of SpO2 and a
//! week of weights, so trend state is populated as in production.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use wardwatch_core::Vital;
use wardwatch_rules::pathway::load_dir;
use wardwatch_rules::patient::PatientSettings;
use wardwatch_rules::shard::{Input, PatientConfig, RuleReading, RuleSet, Shards};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn main() {
    let n: usize = std::env::args()
        .filter_map(|a| a.parse().ok())
        .next()
        .unwrap_or(10_000);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/pathways");
    let rules = RuleSet::new(load_dir(&dir).expect("pathways"));
    let names: Vec<String> = rules.pathways.keys().cloned().collect();
    // Flags are drained by a thread so the workers never wait.
    let (ftx, mut frx) = mpsc::channel(1024);
    let drain = std::thread::spawn(move || while frx.blocking_recv().is_some() {});
    let mut shards = Shards::start(1, 1024, rules, ftx);
    let before = LIVE.load(Ordering::Relaxed);
    let mut sent = 0u64;
    for i in 0..n {
        let patient: Arc<str> = Arc::from(format!("patient-{i:06}"));
        let device: Arc<str> = Arc::from(format!("device-{i:06}"));
        let config = PatientConfig {
            pathway: names[i % names.len()].clone(),
            settings: PatientSettings::default(),
            monitored: true,
            devices: vec![device.clone()],
        };
        shards
            .blocking_send(Input::Patient {
                patient: patient.clone(),
                config: Arc::new(config),
            })
            .expect("send");
        let mut send = |vital, value, at| {
            shards
                .blocking_send(Input::Reading(RuleReading {
                    patient: patient.clone(),
                    vital,
                    value,
                    at,
                    update_interval_secs: None,
                    last_in_set: true,
                    device: Some(device.clone()),
                }))
                .expect("send");
            sent += 1;
        };
        // A day of SpO2 every 15 minutes, a week of twice-daily weights, and
        // a full set of observations.
        for k in 0..96 {
            send(Vital::Spo2, 95.0 + (k % 3) as f64, k * 900);
        }
        for k in 0..14 {
            send(Vital::BodyWeight, 80.0, k * 43_200);
        }
        for (v, x) in [
            (Vital::RespiratoryRate, 16.0),
            (Vital::SystolicBp, 120.0),
            (Vital::HeartRate, 70.0),
            (Vital::BodyTemperature, 37.0),
            (Vital::Consciousness, 0.0),
        ] {
            send(v, x, 86_400);
        }
    }
    while shards.stats.readings.load(Ordering::Relaxed) < sent {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let after = LIVE.load(Ordering::Relaxed);
    let per = (after - before) as f64 / n as f64;
    println!(
        "rules state: {n} patients, {sent} readings, {} live heap bytes → {per:.0} bytes per patient \
         (PatientState is {} bytes of it)",
        after - before,
        std::mem::size_of::<wardwatch_rules::patient::PatientState>()
    );
    shards.shutdown();
    let _ = drain.join();
}
