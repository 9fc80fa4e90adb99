//! The `wardwatch` binary's library: configuration, wiring and commands.
//! Domain logic lives in the crates under `crates/`; this package only
//! parses, configures and connects them.
//!
//! # Layout
//! - [`config`]: the strict, documented configuration and its env overrides.
//! - [`pipeline`]: ingest wiring (session → decode/batch → writer → acks).
//! - [`alerting`]: the alerting loops (flags → alerts with their outbox,
//!   escalation, delivery) over the store.
//! - [`rules`]: the rules runtime (committed readings → shards → flags in
//!   the store), start-up rebuild, reload on SIGHUP and file change.
//! - [`broker`]: the embedded MQTT broker (no `[mqtt] url`).
//! - [`credentials`]: broker users, password files and ACL lines (`wardwatch credentials`).
//! - [`serve`]: the engine process (`wardwatch serve`).
//! - [`http`]: `/healthz` and `/metrics`.
//! - [`loadgen`]: `wardwatch loadgen`, the synthetic device fleet.
//! - [`demo`]: `wardwatch demo`, engine, board and simulated ward in one process.
//! - [`simulate`]: `wardwatch simulate`, a synthetic virtual ward.
//! - [`probe`]: alert latency probes for `loadgen --probes`.
//! - [`score`]: `wardwatch score news2`.
//! - [`evaluate`]: `wardwatch evaluate` (the realistic simulated ward
//!   through the rules and the alert lifecycle) and `wardwatch backtest`
//!   (stored history through a proposed rule set).
//! - [`telemetry`]: logging, metrics, and the pipeline's operational events.
//! - [`shutdown`]: SIGINT/SIGTERM handling.

pub mod alerting;
pub mod backtest;
pub mod broker;
pub mod config;
pub mod credentials;
pub mod demo;
pub mod evaluate;
pub mod http;
pub mod loadgen;
pub mod pipeline;
pub mod probe;
pub mod rules;
pub mod score;
pub mod serve;
pub mod shutdown;
pub mod simulate;
pub mod telemetry;
