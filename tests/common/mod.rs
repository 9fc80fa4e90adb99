//! Test harness: a real Mosquitto started from the project's config on a free
//! port, a fresh PostgreSQL database per test, the real `wardwatch` binary,
//! and a TCP proxy that can cut the engine off from PostgreSQL.
//!
//! Environment: `WARDWATCH_TEST_PG` (admin URL, default
//! `postgres://postgres@127.0.0.1:5432/postgres`).

#![allow(dead_code)]

mod raw;
#[allow(unused_imports)]
pub use raw::Raw;

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

pub const ENGINE_USER: &str = "wardwatch-engine";
pub const ENGINE_PASS: &str = "engine-secret";
pub const LOADGEN_USER: &str = "wardwatch-loadgen";
pub const LOADGEN_PASS: &str = "loadgen-secret";
/// Device users created in every test broker (user name = device id).
pub const DEVICE_USERS: [&str; 2] = ["acl-dev-1", "acl-dev-2"];
pub const DEVICE_PASS: &str = "device-secret";

/// Every wait in a test is bounded by this.
pub const WAIT: Duration = Duration::from_secs(60);

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Polls `f` until it returns `Some`, or panics after [`WAIT`] with `what`.
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A Mosquitto process using `config/mosquitto/mosquitto.conf`, rewritten
/// only for the port, file paths and log destination.
pub struct Broker {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Broker {
    pub async fn start() -> Broker {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let conf = std::fs::read_to_string(repo().join("config/mosquitto/mosquitto.conf"))
            .expect("project mosquitto.conf");
        let d = dir.path();
        std::fs::create_dir_all(d.join("data")).unwrap();
        let mut out = String::new();
        for line in conf.lines() {
            let l = line.trim_start();
            let replaced = if l.starts_with("listener ") {
                format!("listener {port} 127.0.0.1")
            } else if l.starts_with("password_file ") {
                format!("password_file {}", d.join("passwd").display())
            } else if l.starts_with("acl_file ") {
                format!("acl_file {}", d.join("acl").display())
            } else if l.starts_with("persistence_location ") {
                format!("persistence_location {}/", d.join("data").display())
            } else if l.starts_with("log_dest ") {
                format!("log_dest file {}", d.join("mosquitto.log").display())
            } else {
                line.to_string()
            };
            out.push_str(&replaced);
            out.push('\n');
        }
        // Run as ourselves: as root, Mosquitto would otherwise switch to the
        // `mosquitto` user, which cannot write into our temporary directory.
        let me = Command::new("id").arg("-un").output().expect("id -un");
        out.push_str(&format!(
            "user {}\n",
            String::from_utf8_lossy(&me.stdout).trim()
        ));
        std::fs::write(d.join("mosquitto.conf"), out).unwrap();
        std::fs::copy(repo().join("config/mosquitto/acl"), d.join("acl")).unwrap();
        let passwd = d.join("passwd");
        let mut users = vec![(ENGINE_USER, ENGINE_PASS), (LOADGEN_USER, LOADGEN_PASS)];
        users.extend(DEVICE_USERS.iter().map(|u| (*u, DEVICE_PASS)));
        for (i, (u, p)) in users.iter().enumerate() {
            let mut cmd = Command::new("mosquitto_passwd");
            if i == 0 {
                cmd.arg("-c");
            }
            let st = cmd
                .arg("-b")
                .arg(&passwd)
                .arg(u)
                .arg(p)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("mosquitto_passwd (Debian package mosquitto)");
            assert!(st.success(), "mosquitto_passwd failed");
        }
        let mut b = Broker {
            port,
            dir,
            child: None,
        };
        b.spawn().await;
        b
    }

    async fn spawn(&mut self) {
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto (Debian package mosquitto)");
        self.child = Some(child);
        let port = self.port;
        eventually("mosquitto to listen", || async move {
            TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        })
        .await;
    }

    /// Stops the broker gracefully (it saves its persistence file) and starts it again.
    pub async fn restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
        self.spawn().await;
    }

    pub fn url(&self, user: &str, pass: &str) -> String {
        format!("mqtt://{user}:{pass}@127.0.0.1:{}", self.port)
    }

    pub fn engine_url(&self) -> String {
        self.url(ENGINE_USER, ENGINE_PASS)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A fresh database for one test.
pub struct Db {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
}

pub fn pg_admin_url() -> String {
    std::env::var("WARDWATCH_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

impl Db {
    pub async fn create(tag: &str) -> Db {
        let admin_url = pg_admin_url();
        let admin = PgPool::connect(&admin_url)
            .await
            .expect("PostgreSQL admin connection");
        let name = format!(
            "ww_test_{}_{}_{}",
            tag,
            std::process::id(),
            rand::random::<u32>()
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
        Db { name, url, pool }
    }

    /// The same database through another address (for the outage proxy).
    pub fn url_via(&self, port: u16) -> String {
        let u = url::Url::parse(&self.url).expect("url");
        let mut u2 = u.clone();
        u2.set_host(Some("127.0.0.1")).unwrap();
        u2.set_port(Some(port)).unwrap();
        u2.to_string()
    }

    /// Waits (bounded by [`WAIT`]) until `readings` holds exactly `n` rows.
    pub async fn wait_for_readings(&self, n: i64, what: &str) {
        eventually(what, || async {
            (self.count("SELECT count(*) FROM readings").await == n).then_some(())
        })
        .await;
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(&self.pool)
            .await
            .unwrap_or(-1)
    }
}

/// The real `wardwatch` binary.
pub fn wardwatch() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wardwatch"));
    c.current_dir(repo());
    c.env("WARDWATCH_CONFIG", repo().join("config/wardwatch.toml"));
    c.env("RUST_LOG", "info");
    c
}

/// Runs an admin command against a database; panics with its output if it fails.
pub fn admin(db_url: &str, args: &[&str]) -> String {
    let out = wardwatch()
        .env("WARDWATCH_DATABASE_URL", db_url)
        .args(args)
        .output()
        .expect("run wardwatch");
    assert!(
        out.status.success(),
        "wardwatch {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Like [`admin`] but expects failure and returns stderr.
pub fn admin_fails(db_url: &str, args: &[&str]) -> String {
    let out = wardwatch()
        .env("WARDWATCH_DATABASE_URL", db_url)
        .args(args)
        .output()
        .expect("run wardwatch");
    assert!(!out.status.success(), "wardwatch {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A running engine process.
pub struct Engine {
    pub http: u16,
    child: Option<Child>,
    log: PathBuf,
}

impl Engine {
    pub async fn start(mqtt_url: &str, db_url: &str, client_id: &str) -> Engine {
        Self::start_with(mqtt_url, db_url, client_id, &[]).await
    }

    pub async fn start_with(
        mqtt_url: &str,
        db_url: &str,
        client_id: &str,
        env: &[(&str, &str)],
    ) -> Engine {
        let http = free_port();
        let log = std::env::temp_dir().join(format!("wardwatch-{client_id}-{http}.log"));
        let file = std::fs::File::create(&log).expect("engine log");
        let mut cmd = wardwatch();
        cmd.arg("serve")
            .env("WARDWATCH_MQTT_URL", mqtt_url)
            .env("WARDWATCH_DATABASE_URL", db_url)
            .env("WARDWATCH_HTTP_ADDR", format!("127.0.0.1:{http}"))
            .env("WARDWATCH_MQTT_CLIENT_ID", client_id)
            .stdout(Stdio::null())
            .stderr(file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start wardwatch serve");
        let e = Engine {
            http,
            child: Some(child),
            log,
        };
        let port = e.http;
        eventually("engine /healthz", || async move {
            http_get(port, "/healthz").await.filter(|(s, _)| *s == 200)
        })
        .await;
        // Give the MQTT session a moment to subscribe.
        eventually("engine MQTT connection", || {
            let log = e.log.clone();
            async move {
                std::fs::read_to_string(&log)
                    .ok()
                    .filter(|l| l.contains("Connected to MQTT broker"))
                    .map(|_| ())
            }
        })
        .await;
        e
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// SIGKILL: no chance to flush or acknowledge anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns whether it exited with success.
    pub fn terminate(&mut self) -> bool {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            return c.wait().map(|s| s.success()).unwrap_or(false);
        }
        false
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn metrics(&self) -> String {
        http_get(self.http, "/metrics")
            .await
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    /// The value of one metric line (exact name and labels) or 0.
    pub async fn metric(&self, series: &str) -> f64 {
        parse_metric(&self.metrics().await, series)
    }
}

pub fn parse_metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Minimal HTTP/1.1 GET; returns (status, body).
pub async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// A publishing client that waits for the broker's PUBACK of each QoS 1 message.
pub struct Publisher {
    client: AsyncClient,
    acked: Arc<AtomicU64>,
    sent: u64,
    task: tokio::task::JoinHandle<()>,
}

impl Publisher {
    pub async fn connect(url: &str, id: &str) -> Publisher {
        let rest = url.strip_prefix("mqtt://").unwrap();
        let (auth, hostport) = rest.rsplit_once('@').unwrap();
        let (user, pass) = auth.split_once(':').unwrap();
        let (host, port) = hostport.rsplit_once(':').unwrap();
        let mut o = MqttOptions::new(id, host, port.parse().unwrap());
        o.set_credentials(user, pass)
            .set_keep_alive(Duration::from_secs(30))
            .set_max_packet_size(2 << 20, 2 << 20)
            .set_inflight(500);
        let (client, mut el) = AsyncClient::new(o, 1000);
        let acked = Arc::new(AtomicU64::new(0));
        let a = acked.clone();
        let task = tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        a.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        Publisher {
            client,
            acked,
            sent: 0,
            task,
        }
    }

    pub async fn publish(&mut self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into())
            .await
            .expect("publish");
        self.sent += 1;
    }

    /// Waits until the broker has acknowledged everything published.
    pub async fn flush(&self) {
        let (acked, sent) = (self.acked.clone(), self.sent);
        eventually("broker PUBACKs", || {
            let acked = acked.clone();
            async move { (acked.load(Ordering::SeqCst) >= sent).then_some(()) }
        })
        .await;
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TCP proxy to PostgreSQL that a test can cut (dropping every connection
/// and refusing new ones) and restore: a real outage as the engine sees it.
pub struct PgProxy {
    pub port: u16,
    up: Arc<AtomicBool>,
    cut: Arc<Notify>,
}

impl PgProxy {
    pub async fn start(target_port: u16) -> PgProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let cut = Arc::new(Notify::new());
        let (up2, cut2) = (up.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let cut3 = cut2.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target_port)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut3.notified() => {}
                    }
                });
            }
        });
        PgProxy { port, up, cut }
    }

    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.notify_waiters();
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

pub fn pg_port() -> u16 {
    url::Url::parse(&pg_admin_url())
        .ok()
        .and_then(|u| u.port())
        .unwrap_or(5432)
}

/// A broker, a fresh database and an engine connected to both: how most
/// ingest tests begin.
pub async fn stack(tag: &str) -> (Broker, Db, Engine) {
    let broker = Broker::start().await;
    let db = Db::create(tag).await;
    let engine = Engine::start(&broker.engine_url(), &db.url, &unique("eng")).await;
    (broker, db, engine)
}

impl Broker {
    /// A publisher with the load generator's credentials (may publish as any device).
    pub async fn loadgen_publisher(&self) -> Publisher {
        Publisher::connect(&self.url(LOADGEN_USER, LOADGEN_PASS), &unique("pub")).await
    }
}

/// Enrols a patient and assigns a device through the real CLI.
pub fn enrol(db_url: &str, patient: &str, team: &str, device: &str, from: &str) {
    admin(db_url, &["patient", "add", "--id", patient, "--team", team]);
    admin(
        db_url,
        &[
            "device",
            "assign",
            "--device",
            device,
            "--patient",
            patient,
            "--from",
            from,
        ],
    );
}

pub fn readings_topic(device: &str) -> String {
    format!("wardwatch/v1/devices/{device}/readings")
}

pub fn observations_topic(device: &str) -> String {
    format!("wardwatch/v1/devices/{device}/observations")
}

pub fn unique(tag: &str) -> String {
    format!("{tag}-{}-{}", std::process::id(), rand::random::<u32>())
}

pub fn path_exists(p: &Path) -> bool {
    p.exists()
}

/// A child's stdout, line by line, on a channel (read on a thread).
pub fn stdout_lines(stdout: std::process::ChildStdout) -> tokio::sync::mpsc::Receiver<String> {
    use std::io::{BufRead, BufReader};
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(64);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.blocking_send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// The next line from [`stdout_lines`] (empty if none came in time).
pub async fn next_line(rx: &mut tokio::sync::mpsc::Receiver<String>) -> String {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Runs `wardwatch simulate` (ten patients, a reading a second, quick
/// deteriorations) against a broker and database; returns its JSON summary
/// after checking every publish was confirmed by the broker.
pub fn simulate(mqtt_url: &str, db_url: &str, seed: u64, secs: u64) -> serde_json::Value {
    let out = wardwatch()
        .args([
            "simulate",
            "--patients",
            "10",
            "--seed",
            &seed.to_string(),
            "--interval-secs",
            "1",
            "--duration-secs",
            &secs.to_string(),
            "--onset-secs",
            "2",
            "--ramp-secs",
            "6",
            "--json",
        ])
        .env("WARDWATCH_MQTT_URL", mqtt_url)
        .env("WARDWATCH_DATABASE_URL", db_url)
        .output()
        .expect("wardwatch simulate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("summary");
    let published = summary["messages_published"].as_u64();
    assert_eq!(summary["broker_acks"].as_u64(), published);
    summary
}

/// The patients of a ten-patient simulated ward with a scripted deterioration.
pub fn simulated_deteriorations() -> std::collections::BTreeSet<String> {
    ["sim-p006", "sim-p007", "sim-p008"]
        .into_iter()
        .map(String::from)
        .collect()
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
