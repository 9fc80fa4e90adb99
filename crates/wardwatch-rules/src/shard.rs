//! Sharded, lock-free evaluation: inputs are routed by patient to one of N
//! worker threads; each worker owns its patients' state outright (a plain
//! hash map, no `Mutex`, nothing shared). The rule set is an immutable
//! snapshot behind `ArcSwap`, replaced atomically on reload: workers pick up
//! the new snapshot on their next input, without pausing or dropping any.
//!
//! Everything a worker does is driven by its inputs ([`ShardInput`]):
//! readings, patients' settings, and clock ticks, so the same inputs give the
//! same flags. [`ShardWorker::handle`] is that logic without a thread, for
//! tests and benchmarks.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use arc_swap::ArcSwap;
use rustc_hash::{FxBuildHasher, FxHashMap};
use tokio::sync::mpsc;
use wardwatch_core::Vital;

use crate::pathway::Pathway;
use crate::patient::{Flag, FlagState, PatientSettings, PatientState, RuleId};
use crate::silence::{SilenceEvent, SilenceWatch};
use crate::threshold::Severity;

/// A patient's id as the rules hold it: shared, so routing, state and flags
/// never copy the text.
pub type PatientKey = Arc<str>;

/// The pathway used when a patient's pathway is missing from the rule set
/// (counted in [`ShardStats::missing_pathway`]): adult NEWS2 still runs.
pub const FALLBACK_PATHWAY: &str = "general";

/// Severity of a `no_data` flag (a technical flag: a device to check).
pub const NO_DATA_SEVERITY: Severity = Severity::Medium;

/// The immutable rule configuration every worker reads.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    /// Pathways by name.
    pub pathways: BTreeMap<String, Arc<Pathway>>,
    /// Bumped on every reload, so patients re-derive their rules once.
    pub generation: u64,
}

impl RuleSet {
    /// A rule set from loaded pathways.
    pub fn new(pathways: BTreeMap<String, Pathway>) -> Self {
        Self {
            pathways: pathways
                .into_iter()
                .map(|(k, v)| (k, Arc::new(v)))
                .collect(),
            generation: 0,
        }
    }
}

/// What the rules know about a patient beyond their readings.
#[derive(Debug, Clone, PartialEq)]
pub struct PatientConfig {
    /// Pathway name.
    pub pathway: String,
    /// Clinician-set settings.
    pub settings: PatientSettings,
    /// False once discharged: no rules, no `no_data`, open flags cleared.
    pub monitored: bool,
    /// Devices on loan now: each one's silence raises its own `no_data`
    /// (a patient with none is watched as a whole).
    pub devices: Vec<PatientKey>,
}

/// A reading for the rules (already committed and attributed to a patient).
#[derive(Debug, Clone, PartialEq)]
pub struct RuleReading {
    /// The patient.
    pub patient: PatientKey,
    /// What was measured.
    pub vital: Vital,
    /// Canonical value.
    pub value: f64,
    /// Measurement time, seconds since the epoch.
    pub at: i64,
    /// The device's declared update interval (SenML `ut`), seconds.
    pub update_interval_secs: Option<u32>,
    /// The last reading of its observation set (consecutive readings of one
    /// patient from one message): NEWS2 is scored once, here. Set it on
    /// every reading that arrives alone.
    pub last_in_set: bool,
    /// The device that sent it, if known.
    pub device: Option<PatientKey>,
}

/// A flag the store holds open, for reconciliation after a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenFlag {
    /// Whose.
    pub patient: PatientKey,
    /// Which rule.
    pub rule: RuleId,
    /// Its severity.
    pub severity: Severity,
    /// Its subject (the device of a device's `no_data`).
    pub subject: Option<PatientKey>,
}

/// A patient's place in its shard: the router interns patient ids once,
/// so a worker indexes a `Vec` instead of hashing text on every reading.
pub type Slot = u32;

/// A reading addressed to a shard slot.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotReading {
    /// The patient's slot in the shard.
    pub slot: Slot,
    /// What was measured.
    pub vital: Vital,
    /// Canonical value.
    pub value: f64,
    /// Measurement time, seconds since the epoch.
    pub at: i64,
    /// The device's declared update interval (SenML `ut`), seconds.
    pub update_interval_secs: Option<u32>,
    /// The last reading of its observation set: NEWS2 is scored here.
    pub last_in_set: bool,
    /// The device that sent it, if known.
    pub device: Option<PatientKey>,
}

/// A stored open flag addressed to a shard slot.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotFlag {
    /// The patient's slot.
    pub slot: Slot,
    /// The flag.
    pub open: OpenFlag,
}

/// What callers send to [`Shards`]; it interns the patient and routes it.
#[derive(Debug, Clone)]
pub enum Input {
    /// A live reading.
    Reading(RuleReading),
    /// A stored reading replayed at start-up.
    Replay(RuleReading),
    /// A patient's settings.
    Patient {
        /// Whose.
        patient: PatientKey,
        /// The settings.
        config: Arc<PatientConfig>,
    },
    /// Score a set as of its time from the readings given (a manual entry
    /// taken before the latest device readings).
    ScoreAsOf {
        /// Whose.
        patient: PatientKey,
        /// The set and the stored readings around its time.
        values: Vec<crate::patient::Evidence>,
        /// The set's time, seconds.
        at: i64,
    },
}

/// One input to a shard worker.
#[derive(Debug, Clone)]
pub enum ShardInput {
    /// A live reading: evaluated, flags emitted.
    Reading(SlotReading),
    /// Live readings of one committed batch, in order: one channel message
    /// and one wake-up of the worker for the lot.
    Readings(Vec<SlotReading>),
    /// A stored reading replayed at start-up: rebuilds state, emits nothing.
    Replay(SlotReading),
    /// A patient's settings (enrolment, a clinician's change, discharge).
    Patient {
        /// The slot the router gave this patient.
        slot: Slot,
        /// Whose.
        patient: PatientKey,
        /// The new settings.
        config: Arc<PatientConfig>,
    },
    /// End of the start-up replay: the store's open flags for this shard's
    /// patients, and the time now. Flags the replay found open that the
    /// store does not know are raised; flags the store holds open are kept
    /// open (not raised again); silent-device deadlines get a full interval
    /// of grace so a backlog can drain first.
    Restore {
        /// The store's open flags for this shard's patients.
        open: Vec<SlotFlag>,
        /// Now, seconds since the epoch.
        now: i64,
    },
    /// The clock: `no_data` deadlines up to this time (s) fall due.
    Tick(i64),
    /// Score a set as of `at` from `values` ([`Input::ScoreAsOf`]).
    ScoreAsOf {
        /// The patient's slot.
        slot: Slot,
        /// The readings.
        values: Vec<crate::patient::Evidence>,
        /// The set's time, seconds.
        at: i64,
    },
}

/// A flag with the patient it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct PatientFlag {
    /// Whose.
    pub patient: PatientKey,
    /// The flag.
    pub flag: Flag,
}

/// Counters, atomics only.
#[derive(Debug, Default)]
pub struct ShardStats {
    /// Live readings evaluated.
    pub readings: AtomicU64,
    /// Stored readings replayed at start-up.
    pub replayed: AtomicU64,
    /// Readings for patients the rules have no settings for (not enrolled,
    /// or discharged): not evaluated.
    pub unknown_patient: AtomicU64,
    /// Readings evaluated on the fallback pathway because the patient's
    /// pathway is not in the rule set.
    pub missing_pathway: AtomicU64,
    /// Flags emitted.
    pub flags: AtomicU64,
}

/// Which shard owns a patient: a stable hash, so one patient's state lives
/// in exactly one shard.
pub fn shard_of(patient: &str, n: usize) -> usize {
    (FxBuildHasher.hash_one(patient) % n.max(1) as u64) as usize
}

struct Patient {
    key: PatientKey,
    config: Arc<PatientConfig>,
    state: PatientState,
    /// The pathway resolved for a rule set generation.
    pathway: Option<(u64, Arc<Pathway>)>,
    /// Latest update interval a device declared.
    update_interval_secs: Option<u32>,
    /// The persistence deadline this patient has in the timer heap.
    timer: Option<i64>,
    /// Devices whose silence is watched for this patient.
    watched_devices: Vec<PatientKey>,
}

/// One shard's state and logic, with no thread of its own.
pub struct ShardWorker {
    rules: Arc<ArcSwap<RuleSet>>,
    stats: Arc<ShardStats>,
    /// Indexed by slot.
    patients: Vec<Option<Patient>>,
    silence: SilenceWatch<Slot>,
    /// Each lent device's silence, by (patient slot, device).
    device_silence: SilenceWatch<(Slot, PatientKey)>,
    /// Threshold persistence deadlines: (when, slot), one live entry per
    /// patient (a stale entry is skipped when it falls due).
    timers: std::collections::BinaryHeap<std::cmp::Reverse<(i64, Slot)>>,
    /// Latest clock tick (s).
    now: i64,
    /// Start-up replay done: `no_data` deadlines are live.
    restored: bool,
    /// During replay: the latest open flag per patient and rule.
    replay_open: FxHashMap<(Slot, RuleId), Flag>,
}

impl ShardWorker {
    /// An empty shard reading rules from `rules`.
    pub fn new(rules: Arc<ArcSwap<RuleSet>>, stats: Arc<ShardStats>) -> Self {
        Self {
            rules,
            stats,
            patients: Vec::new(),
            silence: SilenceWatch::new(),
            device_silence: SilenceWatch::new(),
            timers: Default::default(),
            now: 0,
            restored: false,
            replay_open: FxHashMap::default(),
        }
    }

    /// Patients held.
    pub fn patients(&self) -> usize {
        self.patients.iter().flatten().count()
    }

    /// Applies one input; flags go to `out`.
    pub fn handle(&mut self, input: ShardInput, out: &mut Vec<PatientFlag>) {
        match input {
            ShardInput::Reading(r) => {
                self.stats.readings.fetch_add(1, Ordering::Relaxed);
                self.reading(r, false, out);
            }
            ShardInput::Readings(batch) => {
                self.stats
                    .readings
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                for r in batch {
                    self.reading(r, false, out);
                }
            }
            ShardInput::Replay(r) => {
                self.stats.replayed.fetch_add(1, Ordering::Relaxed);
                let mut flags = Vec::new();
                let slot = r.slot;
                self.reading(r, true, &mut flags);
                for f in flags {
                    let key = (slot, f.flag.rule);
                    if f.flag.state == FlagState::Cleared {
                        self.replay_open.remove(&key);
                    } else {
                        self.replay_open.insert(key, f.flag);
                    }
                }
            }
            ShardInput::Patient {
                slot,
                patient,
                config,
            } => self.patient(slot, patient, config, out),
            ShardInput::Restore { open, now } => self.restore(open, now, out),
            ShardInput::Tick(now) => self.tick(now, out),
            ShardInput::ScoreAsOf { slot, values, at } => self.score_as_of(slot, &values, at, out),
        }
        self.stats
            .flags
            .fetch_add(out.len() as u64, Ordering::Relaxed);
    }

    fn reading(&mut self, r: SlotReading, replay: bool, out: &mut Vec<PatientFlag>) {
        let set = self.rules.load();
        let stats = &self.stats;
        let Some(Some(p)) = self.patients.get_mut(r.slot as usize) else {
            stats.unknown_patient.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if !p.config.monitored {
            stats.unknown_patient.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if p.pathway.as_ref().is_none_or(|(g, _)| *g != set.generation) {
            p.pathway = resolve(stats, &set, &p.config.pathway).map(|pw| (set.generation, pw));
        }
        let Some((_, pathway)) = &p.pathway else {
            stats.unknown_patient.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let settings = &p.config.settings;
        let key = &p.key;
        let emit = |flag: Flag, out: &mut Vec<PatientFlag>| {
            out.push(PatientFlag {
                patient: key.clone(),
                flag,
            })
        };
        for f in p.state.configure(pathway, settings, set.generation, r.at) {
            emit(f, out);
        }
        for f in p
            .state
            .on_reading_in_set(pathway, settings, r.vital, r.value, r.at, r.last_in_set)
        {
            emit(f, out);
        }
        if r.update_interval_secs.is_some() {
            p.update_interval_secs = r.update_interval_secs;
        }
        let gap = no_data_gap(pathway, p.update_interval_secs);
        // The patient as a whole only when no device is on loan (each lent
        // device is watched on its own below; a patient-wide watch would
        // take whichever device last declared an interval).
        let whole = if p.config.devices.is_empty() {
            self.silence.observe(&r.slot, gap, r.at)
        } else {
            None
        };
        if let Some(SilenceEvent::Cleared { at, .. }) = whole {
            if !replay {
                emit(
                    no_data_flag(FlagState::Cleared, at, "readings resumed".into(), None),
                    out,
                );
            }
        }
        // The device's own silence, by its own cadence: its declared
        // update interval, else the pathway's for this vital.
        if let Some(device) = r.device.as_ref().filter(|d| p.config.devices.contains(d)) {
            let gap = 2 * r
                .update_interval_secs
                .map_or(pathway.cadence_secs(r.vital), i64::from);
            let key = (r.slot, device.clone());
            let event = if self.device_silence.is_watched(&key) {
                self.device_silence.observe(&key, gap, r.at)
            } else {
                self.device_silence.watch(key, gap, r.at);
                if !p.watched_devices.contains(device) {
                    p.watched_devices.push(device.clone());
                }
                None
            };
            if let (Some(SilenceEvent::Cleared { at, .. }), false) = (event, replay) {
                emit(
                    no_data_flag(
                        FlagState::Cleared,
                        at,
                        format!("device {device} reporting again"),
                        Some(device.clone()),
                    ),
                    out,
                );
            }
        }
        schedule(&mut self.timers, r.slot, p);
    }

    fn patient(
        &mut self,
        slot: Slot,
        patient: PatientKey,
        config: Arc<PatientConfig>,
        out: &mut Vec<PatientFlag>,
    ) {
        let i = slot as usize;
        if !config.monitored {
            // Discharge: clear what is open, forget the state.
            if let Some(p) = self.patients.get_mut(i).and_then(Option::take) {
                for (rule, severity) in p.state.open_flags() {
                    out.push(PatientFlag {
                        patient: patient.clone(),
                        flag: Flag {
                            rule,
                            severity,
                            state: FlagState::Cleared,
                            at: self.now,
                            summary: "patient discharged".into(),
                            readings: Vec::new(),
                            news2: None,
                            measure: None,
                            subject: None,
                        },
                    });
                }
            }
            if self.silence.is_raised(&slot) {
                out.push(PatientFlag {
                    patient,
                    flag: no_data_flag(
                        FlagState::Cleared,
                        self.now,
                        "patient discharged".into(),
                        None,
                    ),
                });
            }
            self.silence.unwatch(&slot);
            return;
        }
        if self.patients.len() <= i {
            self.patients.resize_with(i + 1, || None);
        }
        let set = self.rules.load();
        let pathway = resolve(&self.stats, &set, &config.pathway);
        let Some(entry) = self.patients.get_mut(i) else {
            return;
        };
        let p = entry.get_or_insert_with(|| Patient {
            key: patient.clone(),
            config: config.clone(),
            state: PatientState::default(),
            pathway: None,
            update_interval_secs: None,
            timer: None,
            watched_devices: Vec::new(),
        });
        p.config = config;
        p.pathway = None;
        let Some(pathway) = pathway else {
            return;
        };
        let gap = no_data_gap(&pathway, p.update_interval_secs);
        for flag in p
            .state
            .configure(&pathway, &p.config.settings, set.generation, self.now)
        {
            out.push(PatientFlag {
                patient: patient.clone(),
                flag,
            });
        }
        p.pathway = Some((set.generation, pathway.clone()));
        if p.config.devices.is_empty() {
            // No device on loan: the patient is watched as a whole.
            if self.silence.is_watched(&slot) {
                self.silence.set_gap(&slot, gap);
            } else if self.restored {
                // Newly enrolled: expected readings start now.
                self.silence.watch(slot, gap, self.now);
            }
        } else if self.silence.is_watched(&slot) {
            // Devices on loan: each is watched on its own instead.
            if self.silence.is_raised(&slot) {
                out.push(PatientFlag {
                    patient: patient.clone(),
                    flag: no_data_flag(
                        FlagState::Cleared,
                        self.now,
                        "each device on loan is now watched on its own".into(),
                        None,
                    ),
                });
            }
            self.silence.unwatch(&slot);
        }
        // A device returned: its silence no longer matters.
        let returned: Vec<PatientKey> = p
            .watched_devices
            .iter()
            .filter(|d| !p.config.devices.contains(d))
            .cloned()
            .collect();
        for device in returned {
            let key = (slot, device.clone());
            if self.device_silence.is_raised(&key) {
                out.push(PatientFlag {
                    patient: patient.clone(),
                    flag: no_data_flag(
                        FlagState::Cleared,
                        self.now,
                        format!("device {device} returned"),
                        Some(device.clone()),
                    ),
                });
            }
            self.device_silence.unwatch(&key);
            p.watched_devices.retain(|d| *d != device);
        }
        // A device lent since: its readings are expected from now.
        if self.restored {
            for device in &p.config.devices {
                if !p.watched_devices.contains(device) {
                    let gap = 2 * pathway.expected_interval_secs;
                    self.device_silence
                        .watch((slot, device.clone()), gap, self.now);
                    p.watched_devices.push(device.clone());
                }
            }
        }
    }

    fn restore(&mut self, open: Vec<SlotFlag>, now: i64, out: &mut Vec<PatientFlag>) {
        self.now = self.now.max(now);
        let set = self.rules.load();
        // Every monitored patient (or each device on loan) is watched, with
        // a full interval of grace.
        for (i, p) in self.patients.iter_mut().enumerate() {
            let (Some(p), Ok(slot)) = (p, Slot::try_from(i)) else {
                continue;
            };
            let Some(pathway) = resolve(&self.stats, &set, &p.config.pathway) else {
                continue;
            };
            let gap = no_data_gap(&pathway, p.update_interval_secs);
            if p.config.devices.is_empty() {
                if !self.silence.is_watched(&slot) {
                    self.silence.watch(slot, gap, now);
                }
                self.silence.grace(&slot, now);
            } else {
                self.silence.unwatch(&slot);
            }
            for device in &p.config.devices {
                let key = (slot, device.clone());
                if !self.device_silence.is_watched(&key) {
                    self.device_silence
                        .watch(key.clone(), 2 * pathway.expected_interval_secs, now);
                }
                self.device_silence.grace(&key, now);
            }
            p.watched_devices = p.config.devices.clone();
        }
        let mut store_open: FxHashMap<(Slot, RuleId, Option<PatientKey>), OpenFlag> =
            FxHashMap::default();
        for f in open {
            store_open.insert((f.slot, f.open.rule, f.open.subject.clone()), f.open);
        }
        // Open after the replay but unknown to the store (the engine stopped
        // between a commit and recording the flag): raise it now.
        let mut replay_open: Vec<_> = std::mem::take(&mut self.replay_open).into_iter().collect();
        replay_open.sort_by_key(|(k, _)| *k);
        for ((slot, rule), mut flag) in replay_open {
            let Some(Some(p)) = self.patients.get(slot as usize) else {
                continue;
            };
            let patient = p.key.clone();
            match store_open.remove(&(slot, rule, None)) {
                None => {
                    flag.state = FlagState::Raised;
                    out.push(PatientFlag { patient, flag });
                }
                Some(stored) if stored.severity != flag.severity => {
                    flag.state = FlagState::Updated;
                    out.push(PatientFlag { patient, flag });
                }
                Some(_) => {}
            }
        }
        // Open in the store only: keep it open so it clears normally, or
        // clear it when its rule no longer applies.
        let mut rest: Vec<_> = store_open.into_iter().collect();
        rest.sort_by(|a, b| a.0.cmp(&b.0));
        for ((slot, rule, subject), stored) in rest {
            let kept = if rule == RuleId::NoData {
                match &subject {
                    Some(device) => {
                        let key = (slot, device.clone());
                        self.device_silence.assume_raised(&key);
                        self.device_silence.is_raised(&key)
                    }
                    None => {
                        self.silence.assume_raised(&slot);
                        self.silence.is_raised(&slot)
                    }
                }
            } else {
                match self.patients.get_mut(slot as usize) {
                    Some(Some(p)) => p.state.assume_open(rule, stored.severity),
                    _ => false,
                }
            };
            if !kept {
                out.push(PatientFlag {
                    patient: stored.patient,
                    flag: Flag {
                        rule,
                        severity: stored.severity,
                        state: FlagState::Cleared,
                        at: now,
                        summary: format!("{rule} no longer applies to this patient"),
                        readings: Vec::new(),
                        news2: None,
                        measure: None,
                        subject,
                    },
                });
            }
        }
        // Breaches the replay left pending fall due on the clock from now.
        for (i, p) in self.patients.iter_mut().enumerate() {
            if let (Some(p), Ok(slot)) = (p, Slot::try_from(i)) {
                p.timer = None;
                schedule(&mut self.timers, slot, p);
            }
        }
        self.restored = true;
    }

    fn score_as_of(
        &mut self,
        slot: Slot,
        values: &[crate::patient::Evidence],
        at: i64,
        out: &mut Vec<PatientFlag>,
    ) {
        let set = self.rules.load();
        let Some(Some(p)) = self.patients.get_mut(slot as usize) else {
            self.stats.unknown_patient.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if !p.config.monitored {
            return;
        }
        if p.pathway.as_ref().is_none_or(|(g, _)| *g != set.generation) {
            p.pathway =
                resolve(&self.stats, &set, &p.config.pathway).map(|pw| (set.generation, pw));
        }
        let Some((_, pathway)) = &p.pathway else {
            return;
        };
        if let Some(flag) = p
            .state
            .score_set_as_of(pathway, &p.config.settings, values, at)
        {
            out.push(PatientFlag {
                patient: p.key.clone(),
                flag,
            });
        }
    }

    fn tick(&mut self, now: i64, out: &mut Vec<PatientFlag>) {
        self.now = self.now.max(now);
        if !self.restored {
            return;
        }
        while let Some(std::cmp::Reverse((due, slot))) = self.timers.peek().copied() {
            if due > self.now {
                break;
            }
            self.timers.pop();
            let Some(Some(p)) = self.patients.get_mut(slot as usize) else {
                continue;
            };
            if p.timer != Some(due) || !p.config.monitored {
                continue;
            }
            p.timer = None;
            for flag in p.state.on_clock(self.now) {
                out.push(PatientFlag {
                    patient: p.key.clone(),
                    flag,
                });
            }
            schedule(&mut self.timers, slot, p);
        }
        for ev in self.silence.advance(self.now) {
            if let SilenceEvent::Raised {
                patient: slot,
                last_seen,
            } = ev
            {
                let Some(Some(p)) = self.patients.get(slot as usize) else {
                    continue;
                };
                let silent_mins = (self.now - last_seen) / 60;
                out.push(PatientFlag {
                    patient: p.key.clone(),
                    flag: no_data_flag(
                        FlagState::Raised,
                        self.now,
                        format!("no readings for {silent_mins} min (last at {last_seen} s)"),
                        None,
                    ),
                });
            }
        }
        for ev in self.device_silence.advance(self.now) {
            if let SilenceEvent::Raised {
                patient: (slot, device),
                last_seen,
            } = ev
            {
                let Some(Some(p)) = self.patients.get(slot as usize) else {
                    continue;
                };
                let silent_mins = (self.now - last_seen) / 60;
                out.push(PatientFlag {
                    patient: p.key.clone(),
                    flag: no_data_flag(
                        FlagState::Raised,
                        self.now,
                        format!("device {device} silent for {silent_mins} min (last reading at {last_seen} s)"),
                        Some(device),
                    ),
                });
            }
        }
        if self.silence.heap_len() > 2 * self.patients.len() + 1024 {
            self.silence.compact();
        }
        if self.device_silence.heap_len() > 4 * self.patients.len() + 1024 {
            self.device_silence.compact();
        }
    }
}

/// Puts the patient's next persistence deadline in the heap unless an entry
/// for it (or an earlier one) is already there.
fn schedule(
    timers: &mut std::collections::BinaryHeap<std::cmp::Reverse<(i64, Slot)>>,
    slot: Slot,
    p: &mut Patient,
) {
    let Some(due) = p.state.next_due() else {
        return;
    };
    if p.timer.is_none_or(|t| t > due) {
        p.timer = Some(due);
        timers.push(std::cmp::Reverse((due, slot)));
    }
}

/// The patient's pathway, or the fallback (counted) when it is missing.
fn resolve(stats: &ShardStats, set: &RuleSet, name: &str) -> Option<Arc<Pathway>> {
    match set.pathways.get(name) {
        Some(p) => Some(p.clone()),
        None => {
            stats.missing_pathway.fetch_add(1, Ordering::Relaxed);
            set.pathways.get(FALLBACK_PATHWAY).cloned()
        }
    }
}

/// The silence allowed before `no_data`: twice the device's declared
/// interval if it declared one, else twice the pathway's.
fn no_data_gap(pathway: &Pathway, update_interval_secs: Option<u32>) -> i64 {
    2 * update_interval_secs.map_or(pathway.expected_interval_secs, i64::from)
}

fn no_data_flag(state: FlagState, at: i64, summary: String, device: Option<PatientKey>) -> Flag {
    Flag {
        rule: RuleId::NoData,
        severity: NO_DATA_SEVERITY,
        state,
        at,
        summary,
        readings: Vec::new(),
        news2: None,
        measure: None,
        subject: device,
    }
}

/// The inbox is closed: the shards were shut down.
#[derive(Debug, thiserror::Error)]
#[error("the rules shards have shut down")]
pub struct ShardsClosed;

/// The router and its N workers, each owning a disjoint set of patients.
/// The router interns each patient once (id → shard and slot); it is owned
/// by one task, so it needs no lock either.
pub struct Shards {
    inputs: Vec<mpsc::Sender<ShardInput>>,
    workers: Vec<JoinHandle<()>>,
    /// Patient id → (shard, slot, settings sent).
    registry: FxHashMap<PatientKey, (usize, Slot, bool)>,
    next_slot: Vec<Slot>,
    /// The live rule set; use [`Shards::reload`] to replace it.
    pub rules: Arc<ArcSwap<RuleSet>>,
    /// Shared counters.
    pub stats: Arc<ShardStats>,
    /// Per shard, the latest clock tick it has fully handled (its flags
    /// handed on), seconds; 0 before the first.
    clocks: Vec<Arc<AtomicI64>>,
}

impl Shards {
    /// Starts `n` worker threads with bounded inboxes of `capacity`; flags go
    /// to `flags` (bounded too: a slow consumer slows the workers, and they
    /// in turn the senders; nothing is dropped).
    pub fn start(
        n: usize,
        capacity: usize,
        rules: RuleSet,
        flags: mpsc::Sender<PatientFlag>,
    ) -> Self {
        Self::start_shared(n, capacity, Arc::new(ArcSwap::from_pointee(rules)), flags)
    }

    /// Like [`Shards::start`] on a rule set shared with others (the API
    /// checks enrolments and scores the board against the same pathways,
    /// reloads included).
    pub fn start_shared(
        n: usize,
        capacity: usize,
        rules: Arc<ArcSwap<RuleSet>>,
        flags: mpsc::Sender<PatientFlag>,
    ) -> Self {
        let stats = Arc::new(ShardStats::default());
        let mut inputs = Vec::new();
        let mut workers = Vec::new();
        let mut clocks = Vec::new();
        for i in 0..n.max(1) {
            let (tx, rx) = mpsc::channel(capacity.max(1));
            let worker = ShardWorker::new(rules.clone(), stats.clone());
            let flags = flags.clone();
            let clock = Arc::new(AtomicI64::new(0));
            let worker_clock = clock.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("rules-{i}"))
                .spawn(move || run_worker(worker, rx, flags, worker_clock));
            if let Ok(handle) = spawned {
                // Out of threads: fewer shards still evaluate everything.
                inputs.push(tx);
                workers.push(handle);
                clocks.push(clock);
            }
        }
        let next_slot = vec![0; inputs.len()];
        Self {
            inputs,
            workers,
            registry: FxHashMap::default(),
            next_slot,
            rules,
            stats,
            clocks,
        }
    }

    /// The clock time (s) up to which every shard has handled its ticks and
    /// handed on the flags they raised (`no_data`): time-driven rules have
    /// been decided up to here. 0 before every shard's first tick.
    pub fn clock(&self) -> i64 {
        self.clocks
            .iter()
            .map(|c| c.load(Ordering::Acquire))
            .min()
            .unwrap_or(0)
    }

    /// Shards running.
    pub fn len(&self) -> usize {
        self.inputs.len()
    }

    /// True when no shard could start.
    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }

    /// True once the patient's settings (monitored or discharged) were sent
    /// to their shard.
    pub fn knows(&self, patient: &str) -> bool {
        self.registry.get(patient).is_some_and(|e| e.2)
    }

    /// Patients interned.
    pub fn patients(&self) -> usize {
        self.registry.len()
    }

    fn place(&mut self, patient: &PatientKey) -> Result<(usize, Slot), ShardsClosed> {
        if let Some((shard, slot, _)) = self.registry.get(patient) {
            return Ok((*shard, *slot));
        }
        let shard = shard_of(patient, self.inputs.len());
        let next = self.next_slot.get_mut(shard).ok_or(ShardsClosed)?;
        let slot = *next;
        *next = next.checked_add(1).ok_or(ShardsClosed)?;
        self.registry.insert(patient.clone(), (shard, slot, false));
        Ok((shard, slot))
    }

    fn route(&mut self, input: Input) -> Result<(usize, ShardInput), ShardsClosed> {
        let slot_reading = |slot, r: RuleReading| SlotReading {
            device: r.device,
            slot,
            vital: r.vital,
            value: r.value,
            at: r.at,
            update_interval_secs: r.update_interval_secs,
            last_in_set: r.last_in_set,
        };
        Ok(match input {
            Input::Reading(r) => {
                let (shard, slot) = self.place(&r.patient)?;
                (shard, ShardInput::Reading(slot_reading(slot, r)))
            }
            Input::Replay(r) => {
                let (shard, slot) = self.place(&r.patient)?;
                (shard, ShardInput::Replay(slot_reading(slot, r)))
            }
            Input::ScoreAsOf {
                patient,
                values,
                at,
            } => {
                let (shard, slot) = self.place(&patient)?;
                (shard, ShardInput::ScoreAsOf { slot, values, at })
            }
            Input::Patient { patient, config } => {
                let (shard, slot) = self.place(&patient)?;
                if let Some(e) = self.registry.get_mut(&patient) {
                    e.2 = true;
                }
                (
                    shard,
                    ShardInput::Patient {
                        slot,
                        patient,
                        config,
                    },
                )
            }
        })
    }

    /// Routes an input to its patient's shard; waits while that shard's
    /// inbox is full (backpressure, never a drop).
    pub async fn send(&mut self, input: Input) -> Result<(), ShardsClosed> {
        let (shard, input) = self.route(input)?;
        let tx = self.inputs.get(shard).ok_or(ShardsClosed)?;
        tx.send(input).await.map_err(|_| ShardsClosed)
    }

    /// Routes a committed batch's live readings: one message per shard, in
    /// batch order within each shard (so each patient's order is kept).
    pub async fn send_batch(&mut self, batch: Vec<RuleReading>) -> Result<(), ShardsClosed> {
        let mut per: Vec<Vec<SlotReading>> = vec![Vec::new(); self.inputs.len()];
        for r in batch {
            let (shard, slot) = self.place(&r.patient)?;
            if let Some(v) = per.get_mut(shard) {
                v.push(SlotReading {
                    slot,
                    vital: r.vital,
                    value: r.value,
                    at: r.at,
                    update_interval_secs: r.update_interval_secs,
                    last_in_set: r.last_in_set,
                    device: r.device,
                });
            }
        }
        for (tx, readings) in self.inputs.iter().zip(per) {
            if !readings.is_empty() {
                tx.send(ShardInput::Readings(readings))
                    .await
                    .map_err(|_| ShardsClosed)?;
            }
        }
        Ok(())
    }

    /// [`Shards::send`] for callers outside an async runtime.
    pub fn blocking_send(&mut self, input: Input) -> Result<(), ShardsClosed> {
        let (shard, input) = self.route(input)?;
        let tx = self.inputs.get(shard).ok_or(ShardsClosed)?;
        tx.blocking_send(input).map_err(|_| ShardsClosed)
    }

    /// The clock, to every shard.
    pub async fn tick(&self, now: i64) -> Result<(), ShardsClosed> {
        for tx in &self.inputs {
            tx.send(ShardInput::Tick(now))
                .await
                .map_err(|_| ShardsClosed)?;
        }
        Ok(())
    }

    /// Ends the start-up replay: each shard gets the store's open flags for
    /// its own patients.
    pub async fn restore(&mut self, open: Vec<OpenFlag>, now: i64) -> Result<(), ShardsClosed> {
        let mut per: Vec<Vec<SlotFlag>> = vec![Vec::new(); self.inputs.len()];
        for f in open {
            let (shard, slot) = self.place(&f.patient)?;
            if let Some(v) = per.get_mut(shard) {
                v.push(SlotFlag { slot, open: f });
            }
        }
        for (tx, open) in self.inputs.iter().zip(per) {
            tx.send(ShardInput::Restore { open, now })
                .await
                .map_err(|_| ShardsClosed)?;
        }
        Ok(())
    }

    /// Replaces the rule set atomically; patients re-derive their rules on
    /// their next input.
    pub fn reload(&self, mut rules: RuleSet) {
        rules.generation = self.rules.load().generation.wrapping_add(1);
        self.rules.store(Arc::new(rules));
    }

    /// Closes the inboxes and waits (blocking) for the workers to finish
    /// what they hold.
    pub fn shutdown(self) {
        drop(self.inputs);
        for w in self.workers {
            let _ = w.join();
        }
    }
}

fn run_worker(
    mut worker: ShardWorker,
    mut inbox: mpsc::Receiver<ShardInput>,
    out: mpsc::Sender<PatientFlag>,
    clock: Arc<AtomicI64>,
) {
    let mut flags = Vec::new();
    while let Some(input) = inbox.blocking_recv() {
        let tick = match input {
            ShardInput::Tick(now) => Some(now),
            _ => None,
        };
        worker.handle(input, &mut flags);
        for f in flags.drain(..) {
            if out.blocking_send(f).is_err() {
                return;
            }
        }
        // Only once the tick's flags are on their way.
        if let Some(now) = tick {
            clock.store(now, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::pathway::load_dir;

    fn rule_set() -> RuleSet {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/pathways");
        RuleSet::new(load_dir(&dir).unwrap())
    }

    fn config(pathway: &str) -> Arc<PatientConfig> {
        Arc::new(PatientConfig {
            pathway: pathway.into(),
            settings: PatientSettings {
                news2_applies: false,
                ..Default::default()
            },
            monitored: true,
            devices: Vec::new(),
        })
    }

    fn key(s: &str) -> PatientKey {
        Arc::from(s)
    }

    fn reading(p: &str, vital: Vital, value: f64, at: i64) -> RuleReading {
        RuleReading {
            patient: key(p),
            vital,
            value,
            at,
            update_interval_secs: None,
            last_in_set: true,
            device: None,
        }
    }

    /// A worker without a thread, and a tiny router, for exact step-by-step tests.
    struct Harness {
        w: ShardWorker,
        slots: std::collections::HashMap<String, Slot>,
    }

    fn worker() -> Harness {
        Harness {
            w: ShardWorker::new(
                Arc::new(ArcSwap::from_pointee(rule_set())),
                Arc::new(ShardStats::default()),
            ),
            slots: Default::default(),
        }
    }

    impl Harness {
        fn slot(&mut self, p: &str) -> Slot {
            let n = self.slots.len() as Slot;
            *self.slots.entry(p.to_string()).or_insert(n)
        }

        fn run(&mut self, input: ShardInput) -> Vec<PatientFlag> {
            let mut out = Vec::new();
            self.w.handle(input, &mut out);
            out
        }

        fn configure(&mut self, p: &str, config: Arc<PatientConfig>) -> Vec<PatientFlag> {
            let slot = self.slot(p);
            self.run(ShardInput::Patient {
                slot,
                patient: key(p),
                config,
            })
        }

        fn enrol(&mut self, p: &str, pathway: &str) {
            self.configure(p, config(pathway));
        }

        fn slot_reading(&mut self, r: RuleReading) -> SlotReading {
            SlotReading {
                slot: self.slot(&r.patient),
                vital: r.vital,
                value: r.value,
                at: r.at,
                update_interval_secs: r.update_interval_secs,
                last_in_set: r.last_in_set,
                device: r.device,
            }
        }

        fn reading(&mut self, r: RuleReading) -> Vec<PatientFlag> {
            let r = self.slot_reading(r);
            self.run(ShardInput::Reading(r))
        }

        fn replay(&mut self, r: RuleReading) -> Vec<PatientFlag> {
            let r = self.slot_reading(r);
            self.run(ShardInput::Replay(r))
        }

        fn restore(&mut self, open: Vec<OpenFlag>, now: i64) -> Vec<PatientFlag> {
            let open = open
                .into_iter()
                .map(|f| SlotFlag {
                    slot: self.slot(&f.patient),
                    open: f,
                })
                .collect();
            self.run(ShardInput::Restore { open, now })
        }

        fn tick(&mut self, now: i64) -> Vec<PatientFlag> {
            self.run(ShardInput::Tick(now))
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
        let (ftx, mut frx) = mpsc::channel(10_000);
        let mut shards = Shards::start(4, 64, rule_set(), ftx);
        for p in &names {
            shards
                .blocking_send(Input::Patient {
                    patient: key(p),
                    config: config("copd"),
                })
                .unwrap();
            for k in 0..3 {
                shards
                    .blocking_send(Input::Reading(reading(p, Vital::Spo2, 85.0, k * 60)))
                    .unwrap();
            }
        }
        let stats = shards.stats.clone();
        shards.shutdown();
        assert_eq!(stats.readings.load(Ordering::Relaxed), 600);
        let mut flags = Vec::new();
        while let Ok(f) = frx.try_recv() {
            flags.push(f);
        }
        // Exactly one raised COPD SpO2 flag per patient: state never split across shards.
        assert_eq!(flags.len(), 200);
        assert!(flags.iter().all(|f| f.flag.state == FlagState::Raised
            && f.flag.rule
                == RuleId::Threshold {
                    vital: Vital::Spo2,
                    n: 0
                }));
    }

    #[test]
    fn a_reload_changes_behaviour_without_losing_readings() {
        let (ftx, mut frx) = mpsc::channel(10_000);
        // Start with a rule set where COPD has no SpO2 threshold: nothing raised.
        let mut lenient = rule_set();
        let mut copd = (*lenient.pathways["copd"]).clone();
        copd.thresholds.clear();
        lenient.pathways.insert("copd".into(), Arc::new(copd));
        let mut shards = Shards::start(2, 16, lenient, ftx);
        shards
            .blocking_send(Input::Patient {
                patient: key("p1"),
                config: config("copd"),
            })
            .unwrap();
        let send = |shards: &mut Shards, at: i64| {
            shards
                .blocking_send(Input::Reading(reading("p1", Vital::Spo2, 85.0, at)))
                .unwrap()
        };
        for k in 0..3 {
            send(&mut shards, k);
        }
        // Let the worker evaluate those under the old rules first.
        let mut waited = 0;
        while shards.stats.readings.load(Ordering::Relaxed) < 3 && waited < 5_000 {
            std::thread::sleep(std::time::Duration::from_millis(1));
            waited += 1;
        }
        assert_eq!(shards.stats.readings.load(Ordering::Relaxed), 3);
        shards.reload(rule_set());
        for k in 3..6 {
            send(&mut shards, k);
        }
        let stats = shards.stats.clone();
        shards.shutdown();
        assert_eq!(stats.readings.load(Ordering::Relaxed), 6, "no reading lost");
        let flags: Vec<_> = std::iter::from_fn(|| frx.try_recv().ok()).collect();
        assert_eq!(flags.len(), 1, "{flags:?}");
        assert_eq!(
            flags[0].flag.at, 5,
            "raised on the third breach after the reload"
        );
    }

    #[test]
    fn unknown_patients_are_counted_not_evaluated() {
        let mut h = worker();
        assert!(h
            .reading(reading("ghost", Vital::HeartRate, 200.0, 0))
            .is_empty());
        assert_eq!(h.w.stats.unknown_patient.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_missing_pathway_falls_back_to_general_and_is_counted() {
        let mut h = worker();
        h.enrol("p", "no-such-pathway");
        h.reading(reading("p", Vital::HeartRate, 70.0, 0));
        assert!(h.w.stats.missing_pathway.load(Ordering::Relaxed) >= 1);
        assert_eq!(h.w.stats.unknown_patient.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn no_data_is_raised_by_the_clock_once_and_cleared_when_data_resumes() {
        let mut h = worker();
        // general: expected every 4 h → no_data after 8 h of silence.
        h.enrol("p", "general");
        h.restore(vec![], 0);
        h.reading(reading("p", Vital::HeartRate, 70.0, 100));
        let gap = 2 * rule_set().pathways["general"].expected_interval_secs;
        assert!(h.tick(100 + gap - 1).is_empty());
        let f = h.tick(100 + gap);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].flag.rule, RuleId::NoData);
        assert_eq!(f[0].flag.state, FlagState::Raised);
        // Still silent: not raised again.
        assert!(h.tick(100 + 3 * gap).is_empty());
        let f = h.reading(reading("p", Vital::HeartRate, 70.0, 100 + 3 * gap));
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].flag.rule, f[0].flag.state),
            (RuleId::NoData, FlagState::Cleared)
        );
    }

    #[test]
    fn a_devices_declared_interval_refines_the_no_data_cadence() {
        let mut h = worker();
        h.enrol("p", "general");
        h.restore(vec![], 0);
        let mut r = reading("p", Vital::Spo2, 97.0, 0);
        r.update_interval_secs = Some(300);
        h.reading(r);
        assert!(h.tick(599).is_empty());
        let f = h.tick(600);
        assert_eq!(
            f.len(),
            1,
            "twice the device's 5 min, not the pathway's 4 h"
        );
    }

    #[test]
    fn a_newly_enrolled_patient_who_never_sends_is_flagged_silent() {
        let mut h = worker();
        h.restore(vec![], 1_000);
        h.enrol("p", "covid-oximetry");
        let gap = 2 * rule_set().pathways["covid-oximetry"].expected_interval_secs;
        assert!(h.tick(1_000 + gap - 1).is_empty());
        assert_eq!(h.tick(1_000 + gap).len(), 1);
    }

    #[test]
    fn restart_rebuild_raises_no_storm_and_keeps_an_ongoing_deterioration() {
        // Before the restart: 100 patients, each last heard from long ago
        // (their readings may be queued in the broker), and one COPD
        // patient whose low SpO2 flag is open in the store.
        let mut h = worker();
        for i in 0..100 {
            h.enrol(&format!("p{i}"), "general");
            h.replay(reading(&format!("p{i}"), Vital::HeartRate, 70.0, 0));
        }
        h.enrol("copd", "copd");
        for k in 0..3 {
            h.replay(reading("copd", Vital::Spo2, 85.0, k * 60));
        }
        let rule = RuleId::Threshold {
            vital: Vital::Spo2,
            n: 0,
        };
        let now = 86_400;
        let open = vec![OpenFlag {
            patient: key("copd"),
            rule,
            severity: Severity::High,
            subject: None,
        }];
        let f = h.restore(open, now);
        assert!(
            f.is_empty(),
            "already open in the store: not raised again: {f:?}"
        );
        // Right after the restart: no no_data storm, although every deadline passed.
        assert!(h.tick(now + 1).is_empty());
        // The open flag is still open: a further breach updates, a recovery clears.
        let f = h.reading(reading("copd", Vital::Spo2, 84.0, now + 10));
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].flag.rule, f[0].flag.state),
            (rule, FlagState::Updated)
        );
    }

    #[test]
    fn restart_raises_a_deterioration_the_store_never_recorded() {
        let mut h = worker();
        h.enrol("copd", "copd");
        for k in 0..3 {
            assert!(h
                .replay(reading("copd", Vital::Spo2, 85.0, k * 60))
                .is_empty());
        }
        let f = h.restore(vec![], 600);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].flag.state, FlagState::Raised);
        assert_eq!(f[0].flag.at, 120, "dated by the reading that raised it");
    }

    #[test]
    fn a_spot_check_below_the_review_limit_raises_on_the_clock_without_a_second_reading() {
        let mut h = worker();
        h.enrol("cv", "covid-oximetry");
        assert!(h.restore(vec![], 0).is_empty());
        // One reading of 93 at t = 1000: urgent review tier, no recheck.
        assert!(h
            .reading(reading("cv", Vital::Spo2, 93.0, 1_000))
            .is_empty());
        assert!(h.run(ShardInput::Tick(1_899)).is_empty());
        let f = h.run(ShardInput::Tick(1_900));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(
            (f[0].flag.rule.key(), f[0].flag.state, f[0].flag.severity),
            (
                "threshold:spo2:1".to_string(),
                FlagState::Raised,
                Severity::High
            )
        );
        assert!(
            f[0].flag.summary.contains("urgent clinical review"),
            "{}",
            f[0].flag.summary
        );
        assert!(h.run(ShardInput::Tick(5_000)).is_empty(), "once");
        // A first reading of 80 is an emergency at once, with its guidance.
        h.enrol("cv2", "covid-oximetry");
        let f = h.reading(reading("cv2", Vital::Spo2, 80.0, 2_000));
        assert_eq!(f.len(), 1, "the emergency tier at once: {f:?}");
        let emergency = f
            .iter()
            .find(|x| x.flag.severity == Severity::Emergency)
            .unwrap();
        assert_eq!(emergency.flag.state, FlagState::Raised);
        assert!(
            emergency.flag.summary.contains("do not wait"),
            "{}",
            emergency.flag.summary
        );
        // A recheck at 96 before the clock cancels a pending review.
        h.enrol("cv3", "covid-oximetry");
        h.reading(reading("cv3", Vital::Spo2, 94.0, 3_000));
        h.reading(reading("cv3", Vital::Spo2, 96.0, 3_300));
        let later = h.run(ShardInput::Tick(10_000));
        assert!(later.iter().all(|f| &*f.patient != "cv3"), "{later:?}");
    }

    #[test]
    fn each_lent_device_falls_silent_on_its_own_cadence_and_a_returned_one_is_forgotten() {
        let mut h = worker();
        // Heart failure: daily weights (24 h cadence), plus an oximeter the
        // pathway expects hourly.
        let mut hf = rule_set();
        let mut pw = (*hf.pathways["heart-failure"]).clone();
        pw.cadence.insert(Vital::Spo2, 3600);
        hf.pathways.insert("heart-failure".into(), Arc::new(pw));
        h.w.rules.store(Arc::new(hf));
        let devices = vec![key("scale-1"), key("ox-1")];
        let cfg = |devices: Vec<PatientKey>| {
            Arc::new(PatientConfig {
                pathway: "heart-failure".into(),
                settings: PatientSettings::default(),
                monitored: true,
                devices,
            })
        };
        h.configure("hf", cfg(devices.clone()));
        assert!(h.restore(vec![], 0).is_empty());
        let from = |device: &str, vital, value, at| RuleReading {
            device: Some(key(device)),
            ..reading("hf", vital, value, at)
        };
        h.reading(from("scale-1", Vital::BodyWeight, 80.0, 100));
        h.reading(from("ox-1", Vital::Spo2, 97.0, 100));
        // Two hours on, the scale is fine (daily) but the oximeter is silent.
        let f = h.run(ShardInput::Tick(100 + 2 * 3600));
        let silent: Vec<_> = f.iter().map(|x| (x.flag.key(), x.flag.state)).collect();
        assert_eq!(
            silent,
            vec![("no_data:ox-1".to_string(), FlagState::Raised)],
            "{f:?}"
        );
        assert!(
            f[0].flag.summary.contains("device ox-1 silent"),
            "{}",
            f[0].flag.summary
        );
        // The oximeter returned: its flag clears and it is no longer watched.
        let f = h.configure("hf", cfg(vec![key("scale-1")]));
        assert_eq!(
            f.iter()
                .map(|x| (x.flag.key(), x.flag.state))
                .collect::<Vec<_>>(),
            vec![("no_data:ox-1".to_string(), FlagState::Cleared)]
        );
        // The scale falls silent only after two days.
        assert!(h.run(ShardInput::Tick(100 + 47 * 3600)).is_empty());
        let f = h.run(ShardInput::Tick(100 + 48 * 3600));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].flag.key(), "no_data:scale-1");
        // A stored device flag survives a restart without being raised again.
        let mut h2 = worker();
        h2.configure("hf", cfg(vec![key("scale-1")]));
        let open = vec![OpenFlag {
            patient: key("hf"),
            rule: RuleId::NoData,
            severity: NO_DATA_SEVERITY,
            subject: Some(key("scale-1")),
        }];
        assert!(h2.restore(open, 10).is_empty());
        let f = h2.reading(from("scale-1", Vital::BodyWeight, 80.0, 20));
        assert_eq!(
            f.iter()
                .map(|x| (x.flag.key(), x.flag.state))
                .collect::<Vec<_>>(),
            vec![("no_data:scale-1".to_string(), FlagState::Cleared)]
        );
    }

    #[test]
    fn restart_clears_a_stored_flag_whose_rule_no_longer_applies() {
        let mut h = worker();
        h.enrol("p", "general");
        let open = vec![OpenFlag {
            patient: key("p"),
            subject: None,
            rule: RuleId::Threshold {
                vital: Vital::Spo2,
                n: 7,
            },
            severity: Severity::High,
        }];
        let f = h.restore(open, 10);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].flag.state, FlagState::Cleared);
    }

    #[test]
    fn a_personal_limit_replaces_the_pathway_threshold_and_the_old_flag_clears() {
        let mut h = worker();
        h.enrol("p", "copd");
        h.restore(vec![], 0);
        let mut raised = Vec::new();
        for k in 0..3 {
            raised.extend(h.reading(reading("p", Vital::Spo2, 87.0, k * 60)));
        }
        assert_eq!(raised.len(), 1);
        // A clinician sets this patient's own limit: 85–96.
        let mut cfg = (*config("copd")).clone();
        let mut limit = rule_set().pathways["copd"].thresholds[0].1.clone();
        limit.low = Some(85.0);
        cfg.settings.overrides = vec![(Vital::Spo2, limit)];
        cfg.settings.version = 1;
        let f = h.configure("p", Arc::new(cfg));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].flag.state, FlagState::Cleared);
        // 87 is inside the personal limit: nothing more.
        for k in 3..8 {
            assert!(h
                .reading(reading("p", Vital::Spo2, 87.0, k * 60))
                .is_empty());
        }
        let mut f = Vec::new();
        for k in 8..11 {
            f.extend(h.reading(reading("p", Vital::Spo2, 84.0, k * 60)));
        }
        assert_eq!(f.len(), 1);
        assert_eq!(
            f[0].flag.rule,
            RuleId::Personal {
                vital: Vital::Spo2,
                n: 0
            }
        );
    }

    #[test]
    fn discharge_clears_open_flags_and_stops_no_data() {
        let mut h = worker();
        h.enrol("p", "copd");
        h.restore(vec![], 0);
        for k in 0..3 {
            h.reading(reading("p", Vital::Spo2, 85.0, k * 60));
        }
        let mut cfg = (*config("copd")).clone();
        cfg.monitored = false;
        let f = h.configure("p", Arc::new(cfg));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].flag.state, FlagState::Cleared);
        assert!(h.tick(10_000_000).is_empty());
        assert_eq!(h.w.patients(), 0);
    }

    #[test]
    fn news2_is_scored_once_per_observation_set_not_per_reading() {
        let mut h = worker();
        h.configure(
            "p",
            Arc::new(PatientConfig {
                pathway: "general".into(),
                settings: PatientSettings::default(),
                monitored: true,
                devices: Vec::new(),
            }),
        );
        h.restore(vec![], 0);
        let set = [
            (Vital::RespiratoryRate, 25.0),
            (Vital::Spo2, 94.0),
            (Vital::SystolicBp, 100.0),
            (Vital::HeartRate, 115.0),
            (Vital::BodyTemperature, 38.6),
            (Vital::Consciousness, 0.0),
        ];
        let mut flags = Vec::new();
        for (i, (v, x)) in set.iter().enumerate() {
            let mut r = reading("p", *v, *x, 60);
            r.last_in_set = i == set.len() - 1;
            flags.extend(h.reading(r));
        }
        assert_eq!(flags.len(), 1, "{flags:?}");
        let score = flags[0].flag.news2.unwrap();
        assert_eq!((score.total, score.partial), (9, false));
    }
}
