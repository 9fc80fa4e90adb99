//! A fresh PostgreSQL database per test (dropped afterwards), an embedded
//! SQLite file, and a TCP proxy that can cut the engine off from PostgreSQL.

use super::*;

/// A fresh database for one test, the store crate's own helper.
#[allow(unused_imports)]
pub use wardwatch_store::testing::{pg_admin_url, pg_port, FreshPg as Db};

/// Waiting on a test database's readings.
#[allow(async_fn_in_trait)]
pub trait WaitForReadings {
    /// Waits (bounded by [`WAIT`]) until `readings` holds exactly `n` rows.
    async fn wait_for_readings(&self, n: i64, what: &str);
}

impl WaitForReadings for Db {
    async fn wait_for_readings(&self, n: i64, what: &str) {
        eventually(what, || async {
            (self.count("SELECT count(*) FROM readings").await == n).then_some(())
        })
        .await;
    }
}

/// A TCP proxy (to PostgreSQL or a broker) that a test can cut (dropping
/// every connection and refusing new ones) and restore: a real outage as
/// the engine sees it. It can also swallow what the client sends while
/// still passing the server's bytes on: acknowledgements that never arrive.
pub struct PgProxy {
    pub port: u16,
    up: Arc<AtomicBool>,
    swallow: Arc<AtomicBool>,
    cut: Arc<Notify>,
}

/// The same proxy in front of a broker.
pub type TcpProxy = PgProxy;

impl PgProxy {
    pub async fn start(target_port: u16) -> PgProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let swallow = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(Notify::new());
        let (up2, swallow2, cut2) = (up.clone(), swallow.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let (cut3, swallow3) = (cut2.clone(), swallow2.clone());
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(("127.0.0.1", target_port)).await else {
                        return;
                    };
                    let (mut in_r, mut in_w) = inbound.into_split();
                    let (mut out_r, mut out_w) = outbound.into_split();
                    let upstream = async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match in_r.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if swallow3.load(Ordering::SeqCst) {
                                continue;
                            }
                            if out_w.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    let downstream = tokio::io::copy(&mut out_r, &mut in_w);
                    tokio::select! {
                        _ = upstream => {}
                        _ = downstream => {}
                        _ = cut3.notified() => {}
                    }
                });
            }
        });
        PgProxy {
            port,
            up,
            swallow,
            cut,
        }
    }

    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.notify_waiters();
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    /// From now on the client's bytes are read and dropped (the server's
    /// still reach it): for a broker, the engine's PUBACKs are lost.
    pub fn swallow_client_bytes(&self) {
        self.swallow.store(true, Ordering::SeqCst);
    }
}

/// Where an engine under test keeps its data, and how a test counts rows
/// there: the same checks on PostgreSQL and the embedded SQLite store.
#[allow(async_fn_in_trait)]
pub trait Counted {
    /// The engine's database URL.
    fn url(&self) -> &str;
    /// One integer from a query.
    async fn count(&self, sql: &str) -> i64;
}

impl Counted for Db {
    fn url(&self) -> &str {
        &self.url
    }
    async fn count(&self, sql: &str) -> i64 {
        Db::count(self, sql).await
    }
}

/// An embedded-store file for an engine under test.
pub struct SqliteDb {
    _dir: tempfile::TempDir,
    pub file: PathBuf,
    pub url: String,
}

impl SqliteDb {
    pub fn create(tag: &str) -> SqliteDb {
        let (dir, file, url) = sqlite_target(tag);
        SqliteDb {
            _dir: dir,
            file,
            url,
        }
    }
}

impl Counted for SqliteDb {
    fn url(&self) -> &str {
        &self.url
    }
    async fn count(&self, sql: &str) -> i64 {
        let pool = sqlite_pool(&self.file).await;
        let n = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(&pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        pool.close().await;
        n
    }
}

/// An embedded-store file in a fresh temporary directory, as a database URL
/// the engine takes (`sqlite://…`); the directory lives as long as the guard.
pub fn sqlite_target(tag: &str) -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::Builder::new()
        .prefix(&format!("wardwatch-{tag}-"))
        .tempdir()
        .expect("temp dir");
    let file = dir.path().join("wardwatch.db");
    let url = format!("sqlite://{}", file.display());
    (dir, file, url)
}

/// A read connection to an embedded-store file the engine writes.
pub async fn sqlite_pool(file: &Path) -> sqlx::SqlitePool {
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(file)
        .busy_timeout(Duration::from_secs(10));
    sqlx::SqlitePool::connect_with(opts)
        .await
        .expect("open the embedded store")
}

/// [`clinical_alerts_for`] on an embedded-store file.
pub async fn sqlite_clinical_alerts_for(
    file: &Path,
    expected: &std::collections::BTreeSet<String>,
) -> std::collections::BTreeSet<String> {
    let pool = sqlite_pool(file).await;
    eventually("an alert for each deterioration", || async {
        let got: std::collections::BTreeSet<String> = sqlx::query_scalar::<_, String>(
            "SELECT DISTINCT patient_id FROM alerts WHERE kind = 'clinical'",
        )
        .fetch_all(&pool)
        .await
        .ok()?
        .into_iter()
        .collect();
        expected.is_subset(&got).then_some(got)
    })
    .await
}

/// Waits until every patient in `expected` has a clinical alert; returns
/// everyone who has one then.
pub async fn clinical_alerts_for(
    db: &Db,
    expected: &std::collections::BTreeSet<String>,
) -> std::collections::BTreeSet<String> {
    eventually("an alert for each deterioration", || async {
        let got: std::collections::BTreeSet<String> = sqlx::query_scalar::<_, String>(
            "SELECT DISTINCT patient_id FROM alerts WHERE kind = 'clinical'",
        )
        .fetch_all(&db.pool)
        .await
        .ok()?
        .into_iter()
        .collect();
        expected.is_subset(&got).then_some(got)
    })
    .await
}
