//! Backtest: what a proposed rule set would have raised over stored
//! history, per patient and per rule, against what was actually raised, so
//! a ward can tune its limits on its own data before changing them.
//!
//! The caller (the binary's `wardwatch backtest`) reads the store and builds
//! the [`Ward`]; this module only runs and compares, so it stays pure.

use std::collections::BTreeMap;

use serde::Serialize;

use wardwatch_alerting::policy::Team;
use wardwatch_rules::shard::RuleSet;

use crate::{run_engine, Nurse, Run, Ward};

/// Runs the proposed rules over the ward, each group of patients (by index)
/// under its own team's policy, and merges the runs.
pub fn run_by_team(ward: &Ward, rules: &RuleSet, groups: &[(&Team, Vec<usize>)]) -> Run {
    let mut all = Run::default();
    for (team, members) in groups {
        let mut local = vec![usize::MAX; ward.patients.len()];
        for (j, &i) in members.iter().enumerate() {
            local[i] = j;
        }
        let sub = Ward {
            patients: members.iter().map(|&i| ward.patients[i].clone()).collect(),
            readings: ward
                .readings
                .iter()
                .filter(|r| local[r.patient] != usize::MAX)
                .map(|r| crate::Reading {
                    patient: local[r.patient],
                    ..r.clone()
                })
                .collect(),
            start: ward.start,
            end: ward.end,
        };
        let run = run_engine(&sub, rules.clone(), team, Nurse::default());
        all.pages.extend(run.pages.into_iter().map(|mut p| {
            p.patient = members[p.patient];
            p
        }));
        all.reminders += run.reminders;
        all.alerts += run.alerts;
        all.flags_raised += run.flags_raised;
        all.raised.extend(
            run.raised
                .into_iter()
                .map(|(p, rule, at)| (members[p], rule, at)),
        );
        all.opened.extend(
            run.opened
                .into_iter()
                .map(|(p, t, rule, at)| (members[p], t, rule, at)),
        );
    }
    all
}

/// A flag the store says was raised.
#[derive(Debug, Clone, PartialEq)]
pub struct ActualFlag {
    /// Patient id.
    pub patient: String,
    /// Rule key, as the engine writes it (`news2`, `threshold:spo2`, ...).
    pub rule: String,
    /// When (s).
    pub at: i64,
}

/// An alert the store says was opened.
#[derive(Debug, Clone, PartialEq)]
pub struct ActualAlert {
    /// Patient id.
    pub patient: String,
    /// Technical (a silent device) rather than clinical.
    pub technical: bool,
    /// When (s).
    pub at: i64,
}

/// One patient and rule: flags raised, proposed against actual.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RuleLine {
    /// Patient id.
    pub patient: String,
    /// Rule key.
    pub rule: String,
    /// Flags the proposed rules would have raised.
    pub proposed: usize,
    /// Flags actually raised.
    pub actual: usize,
}

/// One patient: alerts opened, proposed against actual.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PatientLine {
    /// Patient id.
    pub patient: String,
    /// Pathway (as enrolled now).
    pub pathway: String,
    /// Readings replayed in the period.
    pub readings: usize,
    /// Alerts the proposed rules would have opened (clinical, technical).
    pub proposed_alerts: (usize, usize),
    /// Alerts actually opened (clinical, technical).
    pub actual_alerts: (usize, usize),
}

/// The comparison over [from, to).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Backtest {
    /// Start of the compared period (s).
    pub from: i64,
    /// End (s).
    pub to: i64,
    /// Per patient.
    pub patients: Vec<PatientLine>,
    /// Per patient and rule, every rule either side raised.
    pub rules: Vec<RuleLine>,
    /// Flags: proposed, actual.
    pub flags: (usize, usize),
    /// Alerts: proposed, actual.
    pub alerts: (usize, usize),
}

/// Compares a run of the proposed rules over `ward` with what the store
/// holds, counting only what happened in [from, ward.end) (readings before
/// `from` are a warm-up: trends and persistence need history).
pub fn compare(
    ward: &Ward,
    run: &Run,
    from: i64,
    flags: &[ActualFlag],
    alerts: &[ActualAlert],
) -> Backtest {
    let to = ward.end;
    let inside = |at: i64| at >= from && at < to;
    let mut rules: BTreeMap<(String, String), (usize, usize)> = BTreeMap::new();
    for (p, rule, at) in &run.raised {
        if inside(*at) {
            let id = ward.patients[*p].id.clone();
            rules.entry((id, rule.clone())).or_default().0 += 1;
        }
    }
    for f in flags.iter().filter(|f| inside(f.at)) {
        rules
            .entry((f.patient.clone(), f.rule.clone()))
            .or_default()
            .1 += 1;
    }
    let mut patients: BTreeMap<String, PatientLine> = ward
        .patients
        .iter()
        .map(|p| {
            (
                p.id.clone(),
                PatientLine {
                    patient: p.id.clone(),
                    pathway: p.pathway.clone(),
                    readings: 0,
                    proposed_alerts: (0, 0),
                    actual_alerts: (0, 0),
                },
            )
        })
        .collect();
    for r in ward.readings.iter().filter(|r| inside(r.at)) {
        if let Some(line) = patients.get_mut(&ward.patients[r.patient].id) {
            line.readings += 1;
        }
    }
    let bump = |pair: &mut (usize, usize), technical: bool| {
        if technical {
            pair.1 += 1;
        } else {
            pair.0 += 1;
        }
    };
    for (p, technical, _, at) in &run.opened {
        if inside(*at) {
            if let Some(line) = patients.get_mut(&ward.patients[*p].id) {
                bump(&mut line.proposed_alerts, *technical);
            }
        }
    }
    for a in alerts.iter().filter(|a| inside(a.at)) {
        // An alert for a patient not in the ward (not enrolled now) still counts.
        let line = patients
            .entry(a.patient.clone())
            .or_insert_with(|| PatientLine {
                patient: a.patient.clone(),
                pathway: String::new(),
                readings: 0,
                proposed_alerts: (0, 0),
                actual_alerts: (0, 0),
            });
        bump(&mut line.actual_alerts, a.technical);
    }
    let rules: Vec<RuleLine> = rules
        .into_iter()
        .map(|((patient, rule), (proposed, actual))| RuleLine {
            patient,
            rule,
            proposed,
            actual,
        })
        .collect();
    let patients: Vec<PatientLine> = patients.into_values().collect();
    let flags = (
        rules.iter().map(|r| r.proposed).sum(),
        rules.iter().map(|r| r.actual).sum(),
    );
    let alerts = patients.iter().fold((0, 0), |(p, a), l| {
        (
            p + l.proposed_alerts.0 + l.proposed_alerts.1,
            a + l.actual_alerts.0 + l.actual_alerts.1,
        )
    });
    Backtest {
        from,
        to,
        patients,
        rules,
        flags,
        alerts,
    }
}

impl Backtest {
    /// A plain table for people.
    pub fn table(&self) -> String {
        let mut s = String::from(
            "Alerts opened per patient (clinical + technical): proposed rules vs actually raised\n",
        );
        s.push_str(&format!(
            "{:<24} {:<16} {:>9} {:>13} {:>13}\n",
            "patient", "pathway", "readings", "proposed", "actual"
        ));
        for p in &self.patients {
            s.push_str(&format!(
                "{:<24} {:<16} {:>9} {:>13} {:>13}\n",
                p.patient,
                p.pathway,
                p.readings,
                format!("{} + {}", p.proposed_alerts.0, p.proposed_alerts.1),
                format!("{} + {}", p.actual_alerts.0, p.actual_alerts.1),
            ));
        }
        s.push_str("\nFlags raised per patient and rule\n");
        s.push_str(&format!(
            "{:<24} {:<32} {:>9} {:>7} {:>7}\n",
            "patient", "rule", "proposed", "actual", "change"
        ));
        for r in &self.rules {
            let change = r.proposed as i64 - r.actual as i64;
            s.push_str(&format!(
                "{:<24} {:<32} {:>9} {:>7} {:>+7}\n",
                r.patient, r.rule, r.proposed, r.actual, change
            ));
        }
        s.push_str(&format!(
            "\nTotal: {} flags and {} alerts proposed; {} flags and {} alerts actually raised\n",
            self.flags.0, self.alerts.0, self.flags.1, self.alerts.1
        ));
        s
    }
}
