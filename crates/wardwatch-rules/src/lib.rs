//! The rules core: readings in, flags out, deterministic and free of I/O.
//!
//! # Layout
//! - [`clinical`]: the one home of each clinical policy the rules, the API
//!   and the board share: NEWS2 applicability and freshness, the oxygen
//!   status, the band a partial set may raise (and why), severity order,
//!   rule families, the board's NEWS2 wording.
//! - [`news2`]: the National Early Warning Score 2 (Royal College of
//!   Physicians, 2017) exactly as the chart: rounding to the chart's
//!   precision, every band edge, SpO2 Scales 1 and 2, the single-parameter-3
//!   rule, the clinical response for each band, and honest reporting of
//!   missing or assumed parameters.
//! - [`threshold`]: single-vital limits with persistence and hysteresis, a
//!   pure state machine per (patient, rule) so flapping values raise at most
//!   one flag.
//! - [`trend`]: heart-failure weight gain and a sustained SpO2 fall from the
//!   patient's own 24-hour median, in fixed-size per-patient state.
//! - [`patient`]: one patient's state combining the rules, and the [`patient::Flag`]s
//!   it raises, updates and clears.
//! - [`pathway`]: per-cohort settings from `config/pathways/*.toml`, strictly
//!   validated with errors naming file, line and field.
//! - [`shard`]: a router that interns patients, and N worker threads, each
//!   owning its patients' state outright; the rule set behind `ArcSwap`,
//!   reloaded without pausing; clock ticks drive `no_data`; a start-up
//!   replay plus the store's open flags rebuild state after a restart.
//! - [`silence`]: `no_data` deadlines in a heap, driven by time passed in,
//!   raised once per silence and cleared when data resumes.
//!
//! It does no I/O (the engine feeds it committed readings, settings and
//! ticks, and stores its flags) and imports only `wardwatch-core`, so the
//! clinical logic can be tested and reviewed on its own.

pub mod clinical;
pub mod news2;
pub mod pathway;
pub mod patient;
pub mod shard;
pub mod silence;
pub mod threshold;
pub mod trend;
