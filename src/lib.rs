//! The `wardwatch` binary's commands. The engine itself is
//! [`wardwatch_engine`]; this package parses the command line and runs
//! the engine or one of the tools around it.
//!
//! # Layout
//! - [`demo`]: `wardwatch demo`, engine, board and simulated ward in one process.
//! - [`loadgen`]: `wardwatch loadgen`, the synthetic device fleet; [`probe`]
//!   its alert latency probes.
//! - [`simulate`]: `wardwatch simulate`, a synthetic virtual ward.
//! - [`evaluate`]: `wardwatch evaluate` (the realistic simulated ward
//!   through the rules and the alert lifecycle) and [`backtest`]
//!   (stored history through a proposed rule set).
//! - [`credentials`]: `wardwatch credentials`, a broker user's password and ACL lines.
//! - [`score`]: `wardwatch score news2`.

pub mod backtest;
pub mod credentials;
pub mod demo;
pub mod evaluate;
pub mod loadgen;
pub mod probe;
pub mod score;
pub mod simulate;
