//! Durable storage for wardwatch behind store traits that both backends,
//! PostgreSQL and embedded SQLite, implement.
//!
//! # Layout
//! - [`Store`]: what the engine needs from storage: write a batch of decoded
//!   messages atomically (readings and quarantine rows together), look up
//!   relative-time anchors, and the admin operations on patients and devices.
//! - [`batch`]: the batch types ([`IngestMessage`], [`BatchOutcome`]) and the
//!   pure attribution of readings to patients by device assignment.
//! - [`model`]: the rows and changes of each concern, shared by both
//!   backends (re-exported at the crate root under their concern's name):
//!   - [`access`]: users, team memberships, API token hashes, the audit log;
//!   - [`alerts`]: alerts, their events and the delivery outbox;
//!   - [`rules`]: patients' settings and personalised limits, the start-up
//!     replay, flags and events;
//!   - [`records`]: enrolment with identity, transfers, the device
//!     catalogue, manual observations, correction notes and users;
//!   - [`views`]: what the API and the board read;
//!   - [`reports`]: per-team figures over a period.
//! - [`postgres`] and [`sqlite`]: the two backends, one file per concern
//!   under the same names (`access.rs`, `alerts.rs`, `records.rs`,
//!   `reports.rs`, `rules.rs`, `views.rs`; `mod.rs` holds the connection,
//!   migrations and the ingest write). PostgreSQL uses TimescaleDB
//!   hypertables, compression and retention when the extension exists, and
//!   plain tables and a retention sweep when it does not; SQLite
//!   (`./data/wardwatch.db`, WAL) is for trials and small sites.
//! - [`backend`]: the traits beyond ingest and [`Backend`], the one store
//!   type the engine holds (PostgreSQL or SQLite). One conformance suite
//!   per contract (this crate's `tests/`) runs against both backends.
//! - `sql`: the statements both dialects read alike, written once.
//! - `testing` (feature `testing`): fresh test databases for every
//!   crate's tests.

pub mod backend;
pub mod batch;
pub mod model;
pub mod postgres;
mod sql;
pub mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

pub use model::{access, alerts, records, reports, rules, views};

use std::future::Future;

use chrono::{DateTime, Utc};
use thiserror::Error;

pub use backend::{
    AccessStore, AlertStore, Backend, EscalationStore, LoadTestStore, MaintenanceStore,
    RecordStore, RulesStore, ViewStore,
};
/// Every store trait, for callers holding a [`Backend`].
pub mod prelude {
    pub use crate::{
        AccessStore, AlertStore, EscalationStore, LoadTestStore, MaintenanceStore, RecordStore,
        RulesStore, Store, ViewStore,
    };
}

pub use batch::{
    Assignment, BatchOutcome, IngestMessage, MessageKey, NewReading, ReadingFeed, RulesInput,
};
pub use postgres::{PgStore, StorageMode, TimescalePolicy, WriteMethod};
pub use sqlite::SqliteStore;

/// Errors from the store. `Unavailable` is worth retrying; the others are not.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database could not be reached, the connection broke, or it refused
    /// for a reason of its own state (deadlock, timeout, read-only): retry.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// The database refused the data itself (classes 21, 22, 23).
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// Migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// An admin request that cannot be carried out, with the reason for the user.
    #[error("{0}")]
    Rejected(String),
}

impl StoreError {
    /// True when retrying the same operation later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => Self::Unavailable(e),
            sqlx::Error::Database(db) => {
                // Only errors caused by the data itself are worth isolating:
                // 21 cardinality, 22 data exception, 23 integrity constraint.
                // Everything else (connection loss, deadlock or serialization
                // failure, statement timeout, read-only standby after a
                // failover, lock timeout, permissions) is the database's
                // state, not the message's: retry, never discard.
                let code = db.code().map(|c| c.to_string()).unwrap_or_default();
                if code.starts_with("21") || code.starts_with("22") || code.starts_with("23") {
                    Self::Database(e)
                } else {
                    Self::Unavailable(e)
                }
            }
            _ => Self::Database(e),
        }
    }
}

/// What ingest needs from storage, and nothing else. Implementations must make
/// [`Store::write_batch`] atomic and idempotent.
pub trait Store: Clone + Send + Sync + 'static {
    /// Commits every reading and rejection of these messages in one
    /// transaction. Readings are attributed to the patient their device was
    /// assigned to at the reading's time; unattributable ones are quarantined.
    /// Writing the same messages again inserts nothing new.
    fn write_batch(
        &self,
        messages: &[IngestMessage],
    ) -> impl Future<Output = Result<BatchOutcome, StoreError>> + Send;

    /// The first receipt time of a message whose SenML times were relative, if
    /// it was committed before.
    fn relative_anchor(
        &self,
        key: &MessageKey,
    ) -> impl Future<Output = Result<Option<DateTime<Utc>>, StoreError>> + Send;
}
