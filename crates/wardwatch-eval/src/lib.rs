//! Clinical evaluation: detection and alert burden, measured.
//!
//! Runs the real rules core ([`wardwatch_rules::shard::ShardWorker`], the
//! code the engine's shards run) and the real alert lifecycle
//! ([`wardwatch_alerting::lifecycle`]: opening, worsening, grouping,
//! escalation, reminders) over a ward of readings on a simulated clock, with
//! a simple nurse who acknowledges every page and resolves what turns out
//! to be nothing. What it reports is what a clinical safety officer asks:
//! was each scripted deterioration paged within its deadline, how long
//! after it became actionable, how many pages a stable patient costs a
//! day, and what share of pages were about a real deterioration. The same
//! ward under naive single-reading limits (every reading outside normal
//! pages) is measured side by side.
//!
//! # Layout
//! - [`Ward`]: patients (pathway, kit, settings, ground truth) and their
//!   readings, from the simulator ([`Ward::from_home`]) or from stored
//!   history (the binary's `backtest`).
//! - [`run_engine`], [`run_naive`]: the pages each raises.
//! - [`report`]: detection per scenario and burden, side by side.
//!
//! Pure: no I/O, no wall clock.

pub mod backtest;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use serde::Serialize;
use wardwatch_alerting::lifecycle::{
    plan_escalation, plan_flag, AlertKind, AlertSnapshot, AlertState, FlagInput, Plan, Purpose,
};
use wardwatch_alerting::policy::{EscalationPolicy, Target, Team};
use wardwatch_core::Vital;
use wardwatch_rules::clinical;
use wardwatch_rules::news2::{self, SpO2Scale};
use wardwatch_rules::patient::{Flag, FlagState, PatientSettings};
use wardwatch_rules::shard::{
    PatientConfig, PatientFlag, PatientKey, RuleSet, ShardInput, ShardStats, ShardWorker,
    SlotReading,
};
use wardwatch_rules::threshold::Threshold;
use wardwatch_sim::home::HomeWard;

/// One patient as the evaluation sees them.
#[derive(Debug, Clone)]
pub struct Patient {
    /// Id.
    pub id: String,
    /// Pathway.
    pub pathway: String,
    /// Devices on loan.
    pub devices: Vec<String>,
    /// SpO2 Scale 2.
    pub scale2: bool,
    /// NEWS2 applies (adult, not pregnant).
    pub news2_applies: bool,
    /// On oxygen per the care plan.
    pub care_plan_oxygen: bool,
    /// Personal limits (as the store's rows become them).
    pub overrides: Vec<(Vital, Threshold)>,
    /// Monitored from (s; `None`: from the ward's start). Silence is
    /// watched from here, as the engine watches a patient from enrolment.
    pub enrolled_at: Option<i64>,
    /// Ground truth, when known: the scenario's name.
    pub scenario: Option<String>,
    /// The deterioration is about a device (a technical alert).
    pub technical: bool,
    /// Ground truth: onset, actionable and deadline (s).
    pub onset: Option<i64>,
    /// When a clinician would want to act.
    pub actionable: Option<i64>,
    /// By when a page must have reached someone.
    pub deadline: Option<i64>,
}

/// One reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// Patient index.
    pub patient: usize,
    /// Device (`manual` for typed-in observations).
    pub device: String,
    /// Vital.
    pub vital: Vital,
    /// Canonical value.
    pub value: f64,
    /// When (s).
    pub at: i64,
    /// The device's declared update interval (SenML `ut`), seconds.
    pub ut: Option<u32>,
}

/// Patients and their readings over [start, end).
#[derive(Debug, Clone)]
pub struct Ward {
    /// The patients.
    pub patients: Vec<Patient>,
    /// Readings in time order.
    pub readings: Vec<Reading>,
    /// Start (s).
    pub start: i64,
    /// End (s).
    pub end: i64,
}

impl Ward {
    /// The simulator's home ward, with its ground truth.
    pub fn from_home(w: &HomeWard) -> Self {
        let patients = w
            .patients
            .iter()
            .map(|p| Patient {
                id: p.id.clone(),
                pathway: p.pathway.to_string(),
                devices: p.devices.iter().map(|d| d.id.clone()).collect(),
                scale2: p.scale2,
                news2_applies: true,
                care_plan_oxygen: false,
                overrides: Vec::new(),
                enrolled_at: None,
                scenario: Some(p.scenario.as_str().to_string()),
                technical: p.scenario.technical(),
                onset: p.onset,
                actionable: p.actionable,
                deadline: p.deadline,
            })
            .collect();
        let readings = w
            .readings
            .iter()
            .map(|r| Reading {
                patient: r.patient,
                device: r.device.clone(),
                vital: r.vital,
                value: r.value,
                at: r.at,
                ut: r.ut.and_then(|u| u32::try_from(u).ok()),
            })
            .collect();
        Self {
            patients,
            readings,
            start: w.plan.start,
            end: w.plan.start + w.plan.days * 86_400,
        }
    }

    fn days(&self) -> f64 {
        (self.end - self.start) as f64 / 86_400.0
    }
}

/// One page: a notification to a person about an alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page {
    /// Patient index.
    pub patient: usize,
    /// When (s).
    pub at: i64,
    /// About a device, not the patient.
    pub technical: bool,
    /// The rules on the alert when paged (for backtests).
    pub rule: String,
    /// Why: `opened`, `worsened`, `escalated`.
    pub why: &'static str,
}

/// The simulated nurse.
#[derive(Debug, Clone, Copy)]
pub struct Nurse {
    /// Seconds from a page to her acknowledgement.
    pub ack_after: i64,
    /// Seconds from acknowledging to resolving an alert that proved to be
    /// nothing (reviewed, no action).
    pub resolve_after: i64,
    /// Seconds from acknowledging a real deterioration to resolving it once
    /// acted on (a visit arranged, escalated); later flags open it again.
    pub act_after: i64,
}

impl Default for Nurse {
    fn default() -> Self {
        Self {
            ack_after: 10 * 60,
            resolve_after: 30 * 60,
            act_after: 3 * 3600,
        }
    }
}

/// Everything the engine run produced.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// Pages to a person.
    pub pages: Vec<Page>,
    /// Reminders of acknowledged, unresolved alerts.
    pub reminders: usize,
    /// Alerts opened.
    pub alerts: usize,
    /// Flags raised (all rules).
    pub flags_raised: usize,
    /// Each flag raised: patient, rule key, when.
    pub raised: Vec<(usize, String, i64)>,
    /// Each alert opened: patient, technical, the flag that opened it, when.
    pub opened: Vec<(usize, bool, String, i64)>,
}

fn ts(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(s, 0).unwrap_or_default()
}

struct Alert {
    patient: usize,
    kind: AlertKind,
    severity: wardwatch_rules::threshold::Severity,
    state: AlertState,
    tier: usize,
    round: i32,
    policy: EscalationPolicy,
    next_escalation_at: Option<i64>,
    open_flags: BTreeSet<String>,
    paged: BTreeMap<String, f64>,
    last_update_at: Option<DateTime<Utc>>,
    ack_due: Option<i64>,
    resolve_due: Option<i64>,
}

/// The alerting side: the lifecycle's plans applied in memory, as the store
/// applies them in its transactions.
struct Book<'a> {
    team: &'a Team,
    ward: &'a Ward,
    nurse: Nurse,
    alerts: Vec<Alert>,
    current: HashMap<(usize, bool), usize>,
    run: Run,
}

/// Whether any notice of a plan reaches a person (an MQTT topic alone
/// reaches nobody in particular).
fn reaches_someone(notices: &[wardwatch_alerting::lifecycle::Notice]) -> bool {
    notices
        .iter()
        .any(|n| n.purpose == Purpose::Page && n.target != Target::Mqtt)
}

impl Book<'_> {
    fn truly_deteriorating(&self, patient: usize, technical: bool, at: i64) -> bool {
        let p = &self.ward.patients[patient];
        p.onset.is_some_and(|o| at >= o) && p.technical == technical
    }

    fn page(&mut self, i: usize, at: i64, why: &'static str, rule: &str) {
        let a = &mut self.alerts[i];
        a.ack_due = Some(at + self.nurse.ack_after);
        let technical = a.kind == AlertKind::Technical;
        self.run.pages.push(Page {
            patient: a.patient,
            at,
            technical,
            rule: rule.to_string(),
            why,
        });
    }

    fn flag(&mut self, patient: usize, f: &Flag, now: i64) {
        let technical = f.rule.is_technical();
        let key = f.key();
        if f.state == FlagState::Raised {
            self.run.flags_raised += 1;
            self.run.raised.push((patient, key.clone(), now));
        }
        let input = FlagInput {
            rule: key.clone(),
            technical,
            state: f.state,
            severity: f.severity,
            measure: f.measure,
        };
        let idx = self.current.get(&(patient, technical)).copied();
        let snapshot = idx.map(|i| {
            let a = &self.alerts[i];
            AlertSnapshot {
                id: i as i64,
                severity: a.severity,
                state: a.state,
                tier: a.tier,
                round: a.round,
                policy: a.policy.clone(),
                other_open_flags: a.open_flags.iter().filter(|r| **r != key).count(),
                paged: a.paged.clone(),
            }
        });
        let last_update = idx.and_then(|i| self.alerts[i].last_update_at);
        let plan = plan_flag(
            self.team,
            snapshot.as_ref(),
            &input,
            None,
            last_update,
            ts(now),
        );
        match plan {
            Plan::Open {
                kind,
                severity,
                tier,
                next_escalation_at,
                notices,
                paged,
            } => {
                self.alerts.push(Alert {
                    patient,
                    kind,
                    severity,
                    state: AlertState::Open,
                    tier,
                    round: 0,
                    policy: self.team.escalation.clone(),
                    next_escalation_at: Some(next_escalation_at.timestamp()),
                    open_flags: BTreeSet::from([key.clone()]),
                    paged,
                    last_update_at: None,
                    ack_due: None,
                    resolve_due: None,
                });
                let i = self.alerts.len() - 1;
                self.current.insert((patient, technical), i);
                self.run.alerts += 1;
                self.run.opened.push((patient, technical, key.clone(), now));
                if reaches_someone(&notices) {
                    self.page(i, now, "opened", &key);
                } else {
                    self.alerts[i].ack_due = Some(now + self.nurse.ack_after);
                }
            }
            Plan::Worsen {
                severity,
                tier,
                round,
                next_escalation_at,
                notices,
                paged,
            } => {
                if let Some(i) = idx {
                    let a = &mut self.alerts[i];
                    a.severity = severity;
                    a.tier = tier;
                    a.round = round;
                    a.state = AlertState::Open;
                    a.next_escalation_at = Some(next_escalation_at.timestamp());
                    a.paged = paged;
                    a.resolve_due = None;
                    a.open_flags.insert(key.clone());
                    if reaches_someone(&notices) {
                        self.page(i, now, "worsened", &key);
                    }
                }
            }
            Plan::Join { notices, paged } => {
                if let Some(i) = idx {
                    let a = &mut self.alerts[i];
                    a.open_flags.insert(key.clone());
                    if let Some(p) = paged {
                        a.paged = p;
                    }
                    if !notices.is_empty() {
                        a.last_update_at = Some(ts(now));
                    }
                }
            }
            Plan::Clear { resolve } => {
                if let Some(i) = idx {
                    self.alerts[i].open_flags.remove(&key);
                    if resolve {
                        self.alerts[i].state = AlertState::Resolved;
                        self.current.remove(&(patient, technical));
                    }
                }
            }
            Plan::Suppressed { .. } | Plan::Nothing => {}
        }
    }

    /// The clock: escalations, reminders and the nurse's actions due by `now`.
    fn tick(&mut self, now: i64) {
        for i in 0..self.alerts.len() {
            if self.alerts[i].state == AlertState::Resolved {
                continue;
            }
            // The nurse.
            if let Some(due) = self.alerts[i].ack_due.filter(|d| *d <= now) {
                let a = &mut self.alerts[i];
                a.ack_due = None;
                if a.state == AlertState::Open {
                    a.state = AlertState::Acknowledged;
                    a.next_escalation_at = None;
                }
                let (patient, technical) = (a.patient, a.kind == AlertKind::Technical);
                let after = if self.truly_deteriorating(patient, technical, due) {
                    self.nurse.act_after
                } else {
                    self.nurse.resolve_after
                };
                self.alerts[i].resolve_due = Some(due + after);
            }
            if self.alerts[i].resolve_due.is_some_and(|d| d <= now) {
                let a = &mut self.alerts[i];
                a.resolve_due = None;
                a.state = AlertState::Resolved;
                let key = (a.patient, a.kind == AlertKind::Technical);
                if self.current.get(&key) == Some(&i) {
                    self.current.remove(&key);
                }
                continue;
            }
            // Escalation and reminders, as the engine's escalation pass.
            let a = &self.alerts[i];
            let due = match (a.state, a.next_escalation_at) {
                (AlertState::Acknowledged, None) => {
                    let next = now + a.policy.ack_timeout.secs();
                    self.alerts[i].next_escalation_at = Some(next);
                    continue;
                }
                (_, Some(t)) if t <= now => true,
                _ => false,
            };
            if !due {
                continue;
            }
            let e = plan_escalation(
                &a.policy,
                self.team.mqtt,
                a.tier,
                a.round,
                a.severity,
                a.state,
                &self.team.fallback,
                ts(now),
            );
            let state = a.state;
            let rule = a.open_flags.iter().next().cloned().unwrap_or_default();
            let a = &mut self.alerts[i];
            a.tier = e.tier;
            a.round = e.round;
            a.next_escalation_at = Some(e.next_escalation_at.timestamp());
            if state == AlertState::Acknowledged {
                self.run.reminders += 1;
            } else if reaches_someone(&e.notices) {
                self.page(i, now, "escalated", &rule);
            }
        }
    }
}

/// Runs the rules core and the alert lifecycle over the ward.
pub fn run_engine(ward: &Ward, rules: RuleSet, team: &Team, nurse: Nurse) -> Run {
    let mut w = ShardWorker::new(
        Arc::new(ArcSwap::from_pointee(rules)),
        Arc::new(ShardStats::default()),
    );
    let keys: Vec<PatientKey> = ward
        .patients
        .iter()
        .map(|p| Arc::from(p.id.as_str()))
        .collect();
    let index: HashMap<PatientKey, usize> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.clone(), i))
        .collect();
    let mut book = Book {
        team,
        ward,
        nurse,
        alerts: Vec::new(),
        current: HashMap::new(),
        run: Run::default(),
    };
    let mut out: Vec<PatientFlag> = Vec::new();
    let apply = |out: &mut Vec<PatientFlag>, book: &mut Book, now: i64| {
        for pf in out.drain(..) {
            if let Some(&i) = index.get(&pf.patient) {
                book.flag(i, &pf.flag, now);
            }
        }
    };
    let register = |w: &mut ShardWorker, out: &mut Vec<PatientFlag>, i: usize| {
        let p = &ward.patients[i];
        let config = PatientConfig {
            pathway: p.pathway.clone(),
            settings: PatientSettings {
                scale: if p.scale2 {
                    SpO2Scale::Two
                } else {
                    SpO2Scale::One
                },
                care_plan_oxygen: p.care_plan_oxygen,
                news2_applies: p.news2_applies,
                overrides: p.overrides.clone(),
                version: 1,
            },
            monitored: true,
            devices: p.devices.iter().map(|d| Arc::from(d.as_str())).collect(),
        };
        w.handle(
            ShardInput::Patient {
                slot: i as u32,
                patient: keys[i].clone(),
                config: Arc::new(config),
            },
            out,
        );
    };
    // Patients enrolled later join when the clock reaches them.
    let mut registered: Vec<bool> = ward
        .patients
        .iter()
        .map(|p| p.enrolled_at.is_none_or(|t| t <= ward.start))
        .collect();
    for (i, _) in registered.iter().enumerate().filter(|(_, r)| **r) {
        register(&mut w, &mut out, i);
    }
    // The rest, in enrolment order: the clock takes them off the front.
    let mut joining: std::collections::VecDeque<(i64, usize)> = {
        let mut later: Vec<(i64, usize)> = ward
            .patients
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.enrolled_at.filter(|_| !registered[i]).map(|t| (t, i)))
            .collect();
        later.sort_unstable();
        later.into()
    };
    w.handle(
        ShardInput::Restore {
            open: Vec::new(),
            now: ward.start,
        },
        &mut out,
    );
    apply(&mut out, &mut book, ward.start);
    let mut clock = ward.start;
    let readings = &ward.readings;
    let mut k = 0;
    while k < readings.len() {
        // One set: consecutive readings of one patient, device and time.
        let r0 = &readings[k];
        let mut end = k + 1;
        while end < readings.len()
            && readings[end].patient == r0.patient
            && readings[end].device == r0.device
            && readings[end].at == r0.at
        {
            end += 1;
        }
        while clock + 60 <= r0.at {
            clock += 60;
            while let Some(&(_, i)) = joining.front().filter(|(t, _)| *t <= clock) {
                joining.pop_front();
                if !registered[i] {
                    registered[i] = true;
                    register(&mut w, &mut out, i);
                }
            }
            w.handle(ShardInput::Tick(clock), &mut out);
            apply(&mut out, &mut book, clock);
            book.tick(clock);
        }
        if !registered[r0.patient] {
            registered[r0.patient] = true;
            register(&mut w, &mut out, r0.patient);
        }
        // As ingest validates: implausible values are quarantined, never scored.
        let valid: Vec<&Reading> = readings[k..end]
            .iter()
            .filter(|r| {
                r.vital
                    .plausible_range()
                    .is_none_or(|(lo, hi)| (lo..=hi).contains(&r.value))
            })
            .collect();
        for (j, r) in valid.iter().enumerate() {
            let device = (r.device != "manual").then(|| Arc::from(r.device.as_str()));
            w.handle(
                ShardInput::Reading(SlotReading {
                    slot: r.patient as u32,
                    vital: r.vital,
                    value: r.value,
                    at: r.at,
                    update_interval_secs: r.ut,
                    last_in_set: j + 1 == valid.len(),
                    device,
                }),
                &mut out,
            );
        }
        apply(&mut out, &mut book, r0.at.max(clock));
        k = end;
    }
    while clock + 60 <= ward.end {
        clock += 60;
        w.handle(ShardInput::Tick(clock), &mut out);
        apply(&mut out, &mut book, clock);
        book.tick(clock);
    }
    book.run
}

/// Whether a reading alone scores on the RCP chart (the chart itself, as
/// the rules score it: rounding and the patient's SpO2 scale included).
fn scores_on_its_own(r: &Reading, p: &Patient) -> bool {
    if r.vital == Vital::Consciousness {
        // Anything but Alert scores 3 (a set needs a measured parameter).
        return r.value > 0.0;
    }
    let obs = clinical::observations(|v| (v == r.vital).then_some(r.value), false);
    let scale = if p.scale2 {
        SpO2Scale::Two
    } else {
        SpO2Scale::One
    };
    news2::score_partial(&obs, scale).is_ok_and(|s| {
        s.breakdown.iter().any(|b| {
            b.parameter != news2::Parameter::AirOrOxygen && b.value.is_some() && b.score > 0
        })
    })
}

/// Naive single-reading limits: every reading outside the normal range
/// pages (the NEWS2 0 band for the vitals NEWS2 scores, on the patient's
/// SpO2 scale, and the pathway's own limits), with no persistence,
/// grouping or silence detection.
pub fn run_naive(ward: &Ward, rules: &RuleSet) -> Run {
    let mut run = Run::default();
    for r in &ward.readings {
        let p = &ward.patients[r.patient];
        if r.vital
            .plausible_range()
            .is_some_and(|(lo, hi)| !(lo..=hi).contains(&r.value))
        {
            continue;
        }
        let pathway = rules.pathways.get(&p.pathway);
        let news2 = pathway.is_some_and(|pw| pw.news2_enabled);
        let v = r.value;
        let outside_news2 = news2 && scores_on_its_own(r, p);
        let outside_pathway = pathway.is_some_and(|pw| {
            pw.thresholds.iter().any(|(vital, t)| {
                *vital == r.vital
                    && (t.low.is_some_and(|lo| v < lo) || t.high.is_some_and(|hi| v > hi))
            })
        });
        if outside_news2 || outside_pathway {
            run.pages.push(Page {
                patient: r.patient,
                at: r.at,
                technical: false,
                rule: format!("naive:{}", r.vital.as_str()),
                why: "opened",
            });
            run.alerts += 1;
        }
    }
    run
}

/// Detection of one scripted scenario, over its patients.
#[derive(Debug, Clone, Serialize)]
pub struct Detection {
    /// Scenario.
    pub scenario: String,
    /// Patients with it whose deterioration the kit could show before the
    /// run ended (assessable).
    pub patients: usize,
    /// Patients with it that the kit never showed in the run (a device
    /// left flat, the run ending first): not counted either way.
    pub not_assessable: usize,
    /// Paged at all after onset.
    pub caught: usize,
    /// Paged by the deadline.
    pub within_deadline: usize,
    /// Minutes from actionable to the first page: median, p90, max
    /// (negative: paged before the ground truth's actionable time).
    pub minutes_median: Option<f64>,
    /// 90th percentile.
    pub minutes_p90: Option<f64>,
    /// Worst.
    pub minutes_max: Option<f64>,
    /// Minutes from actionable to the deadline, median (what was allowed).
    pub deadline_minutes_median: Option<f64>,
}

/// Alert burden.
#[derive(Debug, Clone, Serialize)]
pub struct Burden {
    /// Pages to a person.
    pub pages: usize,
    /// Pages per patient-day, every patient.
    pub pages_per_patient_day: f64,
    /// Clinical pages per stable patient-day: the false-alarm load.
    pub clinical_pages_per_stable_patient_day: f64,
    /// Technical pages (silent devices) per stable patient-day.
    pub technical_pages_per_stable_patient_day: f64,
    /// Share of pages that belong to a true deterioration.
    pub true_share: f64,
    /// Reminders of acknowledged alerts.
    pub reminders: usize,
}

/// Detection and burden, the engine and the naive limits side by side.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Patients.
    pub patients: usize,
    /// Days of ward time.
    pub days: f64,
    /// Readings.
    pub readings: usize,
    /// Per scenario, the engine.
    pub detection: Vec<Detection>,
    /// Per scenario, naive limits.
    pub naive_detection: Vec<Detection>,
    /// The engine's burden.
    pub engine: Burden,
    /// Naive limits' burden.
    pub naive: Burden,
}

fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * (sorted.len() - 1) as f64).round() as usize;
    sorted.get(rank.min(sorted.len() - 1)).copied()
}

fn detection(ward: &Ward, run: &Run) -> Vec<Detection> {
    let mut by: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, p) in ward.patients.iter().enumerate() {
        if let (Some(s), Some(_)) = (&p.scenario, p.onset) {
            by.entry(s.clone()).or_default().push(i);
        }
    }
    by.into_iter()
        .map(|(scenario, patients)| {
            let mut minutes = Vec::new();
            let mut deadlines = Vec::new();
            let mut within = 0;
            let mut assessable = 0;
            for &i in &patients {
                let p = &ward.patients[i];
                let (Some(onset), Some(actionable), Some(deadline)) =
                    (p.onset, p.actionable, p.deadline)
                else {
                    continue;
                };
                if deadline > ward.end {
                    continue;
                }
                assessable += 1;
                deadlines.push((deadline - actionable) as f64 / 60.0);
                let first = run
                    .pages
                    .iter()
                    .filter(|pg| pg.patient == i && pg.at >= onset && pg.technical == p.technical)
                    .map(|pg| pg.at)
                    .min();
                if let Some(at) = first {
                    minutes.push((at - actionable) as f64 / 60.0);
                    if at <= deadline {
                        within += 1;
                    }
                }
            }
            minutes.sort_by(|a, b| a.total_cmp(b));
            deadlines.sort_by(|a, b| a.total_cmp(b));
            Detection {
                scenario,
                patients: assessable,
                not_assessable: patients.len() - assessable,
                caught: minutes.len(),
                within_deadline: within,
                minutes_median: percentile(&minutes, 0.5),
                minutes_p90: percentile(&minutes, 0.9),
                minutes_max: minutes.last().copied(),
                deadline_minutes_median: percentile(&deadlines, 0.5),
            }
        })
        .collect()
}

fn burden(ward: &Ward, run: &Run) -> Burden {
    let days = ward.days();
    let stable: BTreeSet<usize> = ward
        .patients
        .iter()
        .enumerate()
        .filter(|(_, p)| p.onset.is_none())
        .map(|(i, _)| i)
        .collect();
    let stable_days = (stable.len() as f64 * days).max(f64::MIN_POSITIVE);
    let all_days = (ward.patients.len() as f64 * days).max(f64::MIN_POSITIVE);
    let on_stable = |technical: bool| {
        run.pages
            .iter()
            .filter(|p| stable.contains(&p.patient) && p.technical == technical)
            .count() as f64
    };
    let truly = run
        .pages
        .iter()
        .filter(|pg| {
            let p = &ward.patients[pg.patient];
            p.onset.is_some_and(|o| pg.at >= o) && p.technical == pg.technical
        })
        .count();
    Burden {
        pages: run.pages.len(),
        pages_per_patient_day: run.pages.len() as f64 / all_days,
        clinical_pages_per_stable_patient_day: on_stable(false) / stable_days,
        technical_pages_per_stable_patient_day: on_stable(true) / stable_days,
        true_share: if run.pages.is_empty() {
            0.0
        } else {
            truly as f64 / run.pages.len() as f64
        },
        reminders: run.reminders,
    }
}

/// The report for a ward from both runs.
pub fn report(ward: &Ward, engine: &Run, naive: &Run) -> Report {
    Report {
        patients: ward.patients.len(),
        days: ward.days(),
        readings: ward.readings.len(),
        detection: detection(ward, engine),
        naive_detection: detection(ward, naive),
        engine: burden(ward, engine),
        naive: burden(ward, naive),
    }
}

impl Report {
    /// Every scripted deterioration was paged by its deadline.
    pub fn all_within_deadline(&self) -> bool {
        self.detection
            .iter()
            .all(|d| d.within_deadline == d.patients)
    }

    /// A plain table for people.
    pub fn table(&self) -> String {
        let fmt = |x: Option<f64>| x.map_or("-".to_string(), |m| format!("{m:.0}"));
        let mut s = format!(
            "Simulated home ward: {} patients, {:.0} days, {} readings\n\n",
            self.patients, self.days, self.readings
        );
        s.push_str(
            "Detection: minutes from the actionable time to the first page (negative: paged\n\
             before it); allowed: minutes from actionable to the deadline (median)\n",
        );
        s.push_str(&format!(
            "{:<30} {:>8} {:>9} {:>7} {:>6} {:>6} {:>9} | {:>9} {:>7}\n",
            "scenario",
            "patients",
            "in time",
            "median",
            "p90",
            "max",
            "allowed",
            "naive ok",
            "median"
        ));
        for (d, n) in self.detection.iter().zip(&self.naive_detection) {
            s.push_str(&format!(
                "{:<30} {:>8} {:>9} {:>7} {:>6} {:>6} {:>9} | {:>9} {:>7}\n",
                d.scenario,
                d.patients,
                format!("{}/{}", d.within_deadline, d.patients),
                fmt(d.minutes_median),
                fmt(d.minutes_p90),
                fmt(d.minutes_max),
                fmt(d.deadline_minutes_median),
                format!("{}/{}", n.within_deadline, n.patients),
                fmt(n.minutes_median),
            ));
        }
        s.push_str("\nAlert burden                         engine      naive\n");
        let row = |name: &str, a: f64, b: f64| format!("{name:<34} {a:>9.2} {b:>10.2}\n");
        s.push_str(&row(
            "pages per patient-day",
            self.engine.pages_per_patient_day,
            self.naive.pages_per_patient_day,
        ));
        s.push_str(&row(
            "clinical pages per stable pt-day",
            self.engine.clinical_pages_per_stable_patient_day,
            self.naive.clinical_pages_per_stable_patient_day,
        ));
        s.push_str(&row(
            "technical pages per stable pt-day",
            self.engine.technical_pages_per_stable_patient_day,
            self.naive.technical_pages_per_stable_patient_day,
        ));
        s.push_str(&row(
            "share of pages about a deterioration",
            self.engine.true_share,
            self.naive.true_share,
        ));
        s.push_str(&format!(
            "{:<34} {:>9} {:>10}\n",
            "pages", self.engine.pages, self.naive.pages
        ));
        s.push_str(&format!(
            "{:<34} {:>9} {:>10}\n",
            "reminders (acknowledged, unresolved)", self.engine.reminders, "-"
        ));
        s
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use wardwatch_rules::pathway::load_dir;
    use wardwatch_sim::home::{HomePlan, HomeWard};

    use super::*;

    fn shipped() -> (RuleSet, Team) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let rules = RuleSet::new(load_dir(&root.join("pathways")).unwrap());
        let teams = wardwatch_alerting::policy::Teams::load_dir(&root.join("teams")).unwrap();
        (rules, teams.get("default").unwrap().clone())
    }

    fn patient(id: &str, pathway: &str, device: &str) -> Patient {
        Patient {
            id: id.into(),
            pathway: pathway.into(),
            devices: vec![device.into()],
            scale2: false,
            news2_applies: true,
            care_plan_oxygen: false,
            overrides: Vec::new(),
            enrolled_at: None,
            scenario: None,
            technical: false,
            onset: None,
            actionable: None,
            deadline: None,
        }
    }

    #[test]
    fn an_oximeter_reading_of_84_and_135_pages_once_and_naive_limits_page_per_reading() {
        let (rules, team) = shipped();
        let start = 1_767_571_200;
        let reading = |vital, value, at| Reading {
            patient: 0,
            device: "ox".into(),
            vital,
            value,
            at,
            ut: None,
        };
        let mut readings = Vec::new();
        for k in 0..3 {
            let at = start + 3600 + k * 600;
            readings.push(reading(Vital::Spo2, 84.0, at));
            readings.push(reading(Vital::HeartRate, 135.0, at));
        }
        let ward = Ward {
            patients: vec![patient("p", "general", "ox")],
            readings,
            start,
            end: start + 86_400,
        };
        let run = run_engine(&ward, rules.clone(), &team, Nurse::default());
        let first: Vec<&Page> = run.pages.iter().filter(|p| !p.technical).collect();
        assert_eq!(first.len(), 1, "{:?}", run.pages);
        assert_eq!((first[0].at, first[0].why), (start + 3600, "opened"));
        // Six readings outside normal: six naive pages.
        assert_eq!(run_naive(&ward, &rules).pages.len(), 6);
    }

    #[test]
    fn a_small_home_ward_catches_every_scripted_deterioration_in_time() {
        let (rules, team) = shipped();
        let home = HomeWard::new(HomePlan {
            patients: 12,
            days: 5,
            ..HomePlan::default()
        });
        let ward = Ward::from_home(&home);
        let engine = run_engine(&ward, rules.clone(), &team, Nurse::default());
        let naive = run_naive(&ward, &rules);
        let r = report(&ward, &engine, &naive);
        assert!(r.all_within_deadline(), "{}", r.table());
        assert!(
            r.engine.clinical_pages_per_stable_patient_day
                <= r.naive.clinical_pages_per_stable_patient_day / 2.0,
            "{}",
            r.table()
        );
    }
}
