//! Raw SQL on either backend: fixtures no store trait writes, and rows no
//! trait returns, for the conformance suites.

use wardwatch_store::{PgStore, SqliteStore};

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
