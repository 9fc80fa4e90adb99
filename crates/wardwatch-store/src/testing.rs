//! Fresh databases for the tests of every crate (feature `testing`): one
//! PostgreSQL database per test at `WARDWATCH_TEST_PG`, dropped with it.
//! Kept here, next to the schema, so a store contract can be tested in this
//! crate and the engine's tests use the same helper. A failure to create
//! one fails the test at once: there is no fallback to share.

use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::PgPool;

use crate::records::Enrolment;
use crate::{PgStore, RecordStore, SqliteStore, StoreError};
use wardwatch_core::PatientId;

/// The admin URL tests create their databases through.
pub fn pg_admin_url() -> String {
    std::env::var("WARDWATCH_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The port of that server.
pub fn pg_port() -> u16 {
    url::Url::parse(&pg_admin_url())
        .ok()
        .and_then(|u| u.port())
        .unwrap_or(5432)
}

/// A fresh, empty database for one test (no migrations run: opening a
/// store runs them, as in production).
pub struct FreshPg {
    /// Its name (`ww_test_{tag}_{pid}_{n}`).
    pub name: String,
    /// Its URL.
    pub url: String,
    /// A pool on it, for the test's own checks.
    pub pool: PgPool,
}

impl FreshPg {
    /// Creates it.
    pub async fn create(tag: &str) -> FreshPg {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let admin_url = pg_admin_url();
        let admin = PgPool::connect(&admin_url)
            .await
            .expect("PostgreSQL admin connection");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let name = format!(
            "ww_test_{}_{}_{}{}",
            tag,
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            nanos % 1000
        );
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&admin)
            .await
            .expect("create test database");
        admin.close().await;
        let base = admin_url
            .rsplit_once('/')
            .map(|(b, _)| b.to_string())
            .expect("admin URL has a database");
        let url = format!("{base}/{name}");
        let pool = PgPool::connect(&url)
            .await
            .expect("test database connection");
        FreshPg { name, url, pool }
    }

    /// One integer from a query; a failed query fails the test (a stand-in
    /// value would pass `before < expected` and `== 0` checks).
    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The same database through another address (an outage proxy).
    pub fn url_via(&self, port: u16) -> String {
        let mut u = url::Url::parse(&self.url).expect("a database URL");
        u.set_host(Some("127.0.0.1")).expect("a host");
        u.set_port(Some(port)).expect("a port");
        u.to_string()
    }
}

/// A test's database goes with it (connections still open, an engine's
/// included, are ended by `FORCE`); scripts/test.sh also sweeps any left by
/// a run that was killed.
impl Drop for FreshPg {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot block on
        // itself: a thread with its own runtime does the work.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(admin) = PgPool::connect(&pg_admin_url()).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    )))
                    .execute(&admin)
                    .await;
                    admin.close().await;
                }
            });
        })
        .join();
    }
}

// Raw SQL on either backend: fixtures no store trait writes, and rows no
// trait returns, for the conformance suites.

/// The same four calls on PostgreSQL and SQLite; a failing statement
/// panics with its text.
#[allow(async_fn_in_trait)]
pub trait Raw {
    /// Runs a statement.
    async fn exec(&self, sql: String);
    /// One integer.
    async fn int(&self, sql: String) -> i64;
    /// One text, or NULL.
    async fn text(&self, sql: String) -> Option<String>;
    /// A column of texts.
    async fn texts(&self, sql: String) -> Vec<Option<String>>;
}

macro_rules! raw {
    ($store:ty) => {
        impl Raw for $store {
            async fn exec(&self, sql: String) {
                sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .execute(self.pool())
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
            async fn int(&self, sql: String) -> i64 {
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
                    .fetch_one(self.pool())
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
            }
            async fn text(&self, sql: String) -> Option<String> {
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
                    .fetch_one(self.pool())
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
            }
            async fn texts(&self, sql: String) -> Vec<Option<String>> {
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
                    .fetch_all(self.pool())
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
            }
        }
    };
}

raw!(PgStore);
raw!(SqliteStore);

/// Enrols a patient as a test needs one: the one audited path
/// (`RecordStore::enrol_patient`), with no NHS number or date of birth,
/// on `pathway` (default `general`), by `test`.
pub async fn enrol<S: RecordStore>(
    store: &S,
    id: &PatientId,
    team: &str,
    pathway: Option<&str>,
) -> Result<(), StoreError> {
    let enrolment = Enrolment {
        id: id.clone(),
        team: team.to_string(),
        pathway: pathway.unwrap_or("general").to_string(),
        nhs_number: None,
        date_of_birth: None,
    };
    store.enrol_patient(&enrolment, "test").await
}
