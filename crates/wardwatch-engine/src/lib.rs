//! The wardwatch engine's runtime: everything a running engine does, over
//! the domain crates, so the binary only parses, builds and runs it.
//!
//! A reading's path is the module order: [`ingest`] (broker session →
//! decode and batch → commit → PUBACK) hands committed readings to
//! [`scoring`] (the rules core's shards → flags in the store), whose flags
//! wake [`alerting`] (flags → alerts and their outbox → escalation →
//! delivery); [`http`] serves the API, board, `/healthz` and `/metrics`.
//! [`Engine`] wires them and stops them in that order.
//!
//! Around them: [`config`] (the strict configuration), [`telemetry`] (logs,
//! metrics and the pipeline's events), [`broker`] (the embedded MQTT broker)
//! and [`credentials`] (who may use the broker), [`shutdown`] (signals),
//! [`error`] (configuration errors apart from failures).

pub mod alerting;
pub mod broker;
pub mod config;
pub mod credentials;
mod engine;
pub mod error;
pub mod http;
pub mod ingest;
pub mod scoring;
pub mod shutdown;
pub mod telemetry;

pub use config::Config;
pub use engine::{connect_store, try_connect, Bound, Engine};
pub use error::{EngineError, Result};
