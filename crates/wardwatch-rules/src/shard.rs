//! Sharded, lock-free evaluation: readings are routed by patient to one of N
//! worker threads; each worker owns its patients' state outright (a plain
//! `HashMap`, no `Mutex`, nothing shared). The rule set is an immutable
//! snapshot behind `ArcSwap`, replaced atomically on reload: workers pick up
//! the new snapshot on their next message, without pausing or dropping any.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SendError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use arc_swap::ArcSwap;
use wardwatch_core::Vital;

use crate::pathway::Pathway;
use crate::patient::{Flag, PatientSettings, PatientState};

/// The immutable rule configuration every worker reads.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    /// Pathways by name.
    pub pathways: BTreeMap<String, Arc<Pathway>>,
    /// Each patient's pathway name and settings.
    pub patients: HashMap<String, (String, PatientSettings)>,
}

/// A reading for the rules (already attributed to a patient).
#[derive(Debug, Clone, PartialEq)]
pub struct RuleReading {
    /// The patient.
    pub patient: String,
    /// What was measured.
    pub vital: Vital,
    /// Canonical value.
    pub value: f64,
    /// Measurement time, seconds since the epoch.
    pub at: i64,
}

/// A flag with the patient it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct PatientFlag {
    /// Whose.
    pub patient: String,
    /// The flag.
    pub flag: Flag,
}

/// Counters, atomics only.
#[derive(Debug, Default)]
pub struct ShardStats {
    /// Readings evaluated.
    pub readings: AtomicU64,
    /// Readings for patients not in the rule set (not enrolled or no pathway).
    pub unknown_patient: AtomicU64,
    /// Flags emitted.
    pub flags: AtomicU64,
}

/// N workers, each owning a disjoint set of patients.
pub struct Shards {
    inputs: Vec<SyncSender<RuleReading>>,
    workers: Vec<JoinHandle<()>>,
    /// The live rule set; `store` a new one to reload.
    pub rules: Arc<ArcSwap<RuleSet>>,
    /// Shared counters.
    pub stats: Arc<ShardStats>,
}

/// Which shard owns a patient: a stable hash, so one patient's state lives
/// in exactly one shard.
pub fn shard_of(patient: &str, n: usize) -> usize {
    let mut h = DefaultHasher::new();
    patient.hash(&mut h);
    (h.finish() % n.max(1) as u64) as usize
}

impl Shards {
    /// Starts `n` workers with bounded inboxes of `capacity`; flags go to
    /// `flags` (bounded too: a slow consumer slows the workers, nothing is dropped).
    pub fn start(
        n: usize,
        capacity: usize,
        rules: RuleSet,
        flags: SyncSender<PatientFlag>,
    ) -> Self {
        let rules = Arc::new(ArcSwap::from_pointee(rules));
        let stats = Arc::new(ShardStats::default());
        let mut inputs = Vec::new();
        let mut workers = Vec::new();
        for _ in 0..n.max(1) {
            let (tx, rx) = sync_channel(capacity.max(1));
            inputs.push(tx);
            let (rules, stats, flags) = (rules.clone(), stats.clone(), flags.clone());
            workers.push(std::thread::spawn(move || worker(rx, rules, stats, flags)));
        }
        Self {
            inputs,
            workers,
            rules,
            stats,
        }
    }

    /// Routes a reading to its patient's shard; blocks while that shard's
    /// inbox is full (backpressure, never a drop).
    pub fn send(&self, r: RuleReading) -> Result<(), SendError<RuleReading>> {
        let i = shard_of(&r.patient, self.inputs.len());
        match self.inputs.get(i) {
            Some(tx) => tx.send(r),
            None => Err(SendError(r)),
        }
    }

    /// Replaces the rule set atomically.
    pub fn reload(&self, rules: RuleSet) {
        self.rules.store(Arc::new(rules));
    }

    /// Closes the inboxes and waits for the workers to finish what they hold.
    pub fn shutdown(self) {
        drop(self.inputs);
        for w in self.workers {
            let _ = w.join();
        }
    }
}

fn worker(
    inbox: Receiver<RuleReading>,
    rules: Arc<ArcSwap<RuleSet>>,
    stats: Arc<ShardStats>,
    out: SyncSender<PatientFlag>,
) {
    let mut patients: HashMap<String, PatientState> = HashMap::new();
    while let Ok(r) = inbox.recv() {
        let set = rules.load();
        stats.readings.fetch_add(1, Ordering::Relaxed);
        let Some((pathway, settings)) = set
            .patients
            .get(&r.patient)
            .and_then(|(name, s)| set.pathways.get(name).map(|p| (p, s)))
        else {
            stats.unknown_patient.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let state = patients.entry(r.patient.clone()).or_default();
        for flag in state.on_reading(pathway, settings, r.vital, r.value, r.at) {
            stats.flags.fetch_add(1, Ordering::Relaxed);
            if out
                .send(PatientFlag {
                    patient: r.patient.clone(),
                    flag,
                })
                .is_err()
            {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::pathway::load_dir;
    use crate::patient::{FlagState, RuleId};

    fn rules(pathway_for_all: &str, patients: &[&str]) -> RuleSet {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/pathways");
        let pathways = load_dir(&dir)
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k, Arc::new(v)))
            .collect();
        RuleSet {
            pathways,
            patients: patients
                .iter()
                .map(|p| {
                    (
                        p.to_string(),
                        (
                            pathway_for_all.to_string(),
                            PatientSettings {
                                news2_applies: false,
                                ..Default::default()
                            },
                        ),
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn a_patient_always_maps_to_the_same_single_shard() {
        for n in [1, 2, 7] {
            for p in ["a", "b", "patient-123"] {
                let s = shard_of(p, n);
                assert!(s < n);
                assert_eq!(s, shard_of(p, n));
            }
        }
    }

    #[test]
    fn readings_from_many_patients_are_all_evaluated_and_flags_come_out() {
        let names: Vec<String> = (0..200).map(|i| format!("p{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let (ftx, frx) = sync_channel(10_000);
        let shards = Shards::start(4, 64, rules("copd", &refs), ftx);
        for p in &names {
            for k in 0..3 {
                shards
                    .send(RuleReading {
                        patient: p.clone(),
                        vital: Vital::Spo2,
                        value: 85.0,
                        at: k * 60,
                    })
                    .unwrap();
            }
        }
        let stats = shards.stats.clone();
        shards.shutdown();
        assert_eq!(stats.readings.load(Ordering::Relaxed), 600);
        let flags: Vec<_> = frx.try_iter().collect();
        // Exactly one raised COPD SpO2 flag per patient: state never split across shards.
        assert_eq!(flags.len(), 200);
        assert!(flags
            .iter()
            .all(|f| f.flag.state == FlagState::Raised && f.flag.rule == RuleId::Threshold(0)));
    }

    #[test]
    fn a_reload_changes_behaviour_without_losing_readings() {
        let (ftx, frx) = sync_channel(10_000);
        // "general" has no SpO2 threshold: nothing raised.
        let shards = Shards::start(2, 16, rules("general", &["p1"]), ftx);
        let send = |at: i64| {
            shards
                .send(RuleReading {
                    patient: "p1".into(),
                    vital: Vital::Spo2,
                    value: 85.0,
                    at,
                })
                .unwrap()
        };
        for k in 0..3 {
            send(k);
        }
        // Let the worker evaluate those under the old rules first.
        let mut waited = 0;
        while shards.stats.readings.load(Ordering::Relaxed) < 3 && waited < 5_000 {
            std::thread::sleep(std::time::Duration::from_millis(1));
            waited += 1;
        }
        assert_eq!(shards.stats.readings.load(Ordering::Relaxed), 3);
        shards.reload(rules("copd", &["p1"]));
        for k in 3..6 {
            send(k);
        }
        let stats = shards.stats.clone();
        shards.shutdown();
        assert_eq!(stats.readings.load(Ordering::Relaxed), 6, "no reading lost");
        let flags: Vec<_> = frx.try_iter().collect();
        assert_eq!(flags.len(), 1, "{flags:?}");
        assert_eq!(
            flags[0].flag.at, 5,
            "raised on the third breach after the reload"
        );
    }

    #[test]
    fn unknown_patients_are_counted_not_evaluated() {
        let (ftx, _frx) = sync_channel(16);
        let shards = Shards::start(1, 4, rules("general", &[]), ftx);
        shards
            .send(RuleReading {
                patient: "ghost".into(),
                vital: Vital::HeartRate,
                value: 200.0,
                at: 0,
            })
            .unwrap();
        let stats = shards.stats.clone();
        shards.shutdown();
        assert_eq!(stats.unknown_patient.load(Ordering::Relaxed), 1);
    }
}
