//! Test harness: a real Mosquitto started from the project's config on a free
//! port, a fresh PostgreSQL database per test, the real `wardwatch` binary,
//! and a TCP proxy that can cut the engine off from PostgreSQL.
//!
//! Environment: `WARDWATCH_TEST_PG` (admin URL, default
//! `postgres://postgres@127.0.0.1:5432/postgres`).

#![allow(dead_code)]

mod raw;
pub mod webhook;
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
/// The engine's alert publisher: a user of its own.
pub const ALERTS_USER: &str = "wardwatch-alerts";
pub const ALERTS_PASS: &str = "alerts-secret";
/// The load generator (a staging publisher: `<user>-pub<n>`, `-watch`, `-probe`).
pub const LOADGEN_USER: &str = "wardwatch-loadgen";
pub const LOADGEN_PASS: &str = "loadgen-secret";
/// The tests' own publishers, one user per connection.
pub const TESTPUB_USER: &str = "wardwatch-testpub";
/// Connections each staging publisher has users for.
pub const STAGING_CONNECTIONS: usize = 8;
/// Device users created in every test broker (user name = device id).
pub const DEVICE_USERS: [&str; 2] = ["acl-dev-1", "acl-dev-2"];
pub const DEVICE_PASS: &str = "device-secret";
/// A device user only the broker's readiness check uses, so the check never
/// takes over a session a test holds.
const READY_USER: &str = "broker-ready-check";

/// Every wait in a test is bounded by this.
pub const WAIT: Duration = Duration::from_secs(60);

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A port that was free a moment ago. Only for servers that cannot bind
/// port 0 and report it (Mosquitto): [`Broker::start`] retries on another
/// port when the broker could not bind this one.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The address a `wardwatch` process logged for its HTTP listener
/// (`HTTP listening.`, human or JSON log), once it has bound.
pub fn logged_http_port(log: &str) -> Option<u16> {
    logged_port(log, "HTTP listening.", "addr")
}

/// The port in field `field` of the first log line with `message` (human
/// `field=host:port` or JSON `"field":"host:port"`).
pub fn logged_port(log: &str, message: &str, field: &str) -> Option<u16> {
    let line = log.lines().find(|l| l.contains(message))?;
    let rest = line
        .split_once(&format!("{field}="))
        .or_else(|| line.split_once(&format!("\"{field}\":\"")))?
        .1;
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']'))
        .collect();
    addr.parse::<std::net::SocketAddr>().ok().map(|a| a.port())
}

/// Whether an MQTT broker on `port` answers a CONNECT with CONNACK (a
/// listening socket alone does not mean it is ready for sessions).
pub async fn mqtt_answers(port: u16, user: &str, pass: &str) -> bool {
    mqtt_answers_over(port, user, pass, None).await
}

/// [`mqtt_answers`], over TLS to `localhost` when a CA is given.
pub async fn mqtt_answers_over(port: u16, user: &str, pass: &str, ca: Option<&Path>) -> bool {
    let host = if ca.is_some() {
        "localhost"
    } else {
        "127.0.0.1"
    };
    let mut o = MqttOptions::new(user, host, port);
    o.set_credentials(user, pass);
    if let Some(ca) = ca {
        o.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(
                wardwatch_ingest::tls::client_config(Some(ca)).expect("test CA"),
            ),
        ));
    }
    let (client, mut el) = AsyncClient::new(o, 10);
    let ok = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap_or(false);
    let _ = client.disconnect().await;
    ok
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
    /// Edits to the project's config (each must match exactly once).
    edits: Vec<(String, String)>,
    /// The CA that signs the listener's certificate, when it speaks TLS.
    tls_ca: Option<PathBuf>,
}

impl Broker {
    pub async fn start() -> Broker {
        Self::start_with(&[]).await
    }

    /// A broker from the project's config whose one listener speaks TLS
    /// with `cert`/`key` (PEM files), signed by `ca`.
    pub async fn start_tls(ca: &Path, cert: &Path, key: &Path) -> Broker {
        let listener = format!(
            "listener 1883\ncertfile {}\nkeyfile {}",
            cert.display(),
            key.display()
        );
        Self::start_configured(&[("listener 1883", &listener)], Some(ca.to_path_buf())).await
    }

    /// A broker from the project's config with `edits` applied.
    pub async fn start_with(edits: &[(&str, &str)]) -> Broker {
        Self::start_configured(edits, None).await
    }

    async fn start_configured(edits: &[(&str, &str)], tls_ca: Option<PathBuf>) -> Broker {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::create_dir_all(d.join("data")).unwrap();
        std::fs::copy(repo().join("config/mosquitto/acl"), d.join("acl")).unwrap();
        // Users are issued as an operator would: `wardwatch credentials`.
        let passwd = d.join("passwd");
        let acl = d.join("acl");
        let connections = STAGING_CONNECTIONS.to_string();
        let mut issues: Vec<(Vec<&str>, &str)> = vec![
            (vec!["service", "engine"], ENGINE_PASS),
            (vec!["service", "alerts"], ALERTS_PASS),
            (
                vec![
                    "staging-publisher",
                    LOADGEN_USER,
                    "--connections",
                    &connections,
                ],
                LOADGEN_PASS,
            ),
            (
                vec![
                    "staging-publisher",
                    TESTPUB_USER,
                    "--connections",
                    &connections,
                ],
                LOADGEN_PASS,
            ),
            (vec!["device", READY_USER], DEVICE_PASS),
        ];
        issues.extend(
            DEVICE_USERS
                .iter()
                .map(|u| (vec!["device", *u], DEVICE_PASS)),
        );
        for (args, password) in issues {
            let out = wardwatch()
                .arg("credentials")
                .args(&args)
                .arg("--passwd")
                .arg(&passwd)
                .arg("--acl")
                .arg(&acl)
                .arg("--password-env")
                .arg("WARDWATCH_TEST_BROKER_PASSWORD")
                .env("WARDWATCH_TEST_BROKER_PASSWORD", password)
                .output()
                .expect("wardwatch credentials");
            assert!(
                out.status.success(),
                "wardwatch credentials {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut b = Broker {
            port: 0,
            dir,
            child: None,
            edits: edits
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            tls_ca,
        };
        // Mosquitto cannot bind port 0 and tell us which port it took, so a
        // port found free may be taken by someone else before it binds:
        // then it exits, and we try another.
        for _ in 0..10 {
            b.port = free_port();
            b.write_config();
            if b.spawn().await {
                return b;
            }
        }
        panic!(
            "mosquitto did not start on any of 10 free ports: {}",
            b.log()
        );
    }

    /// The project's config, rewritten only for the port, file paths and
    /// log destination.
    fn write_config(&self) {
        let mut conf = std::fs::read_to_string(repo().join("config/mosquitto/mosquitto.conf"))
            .expect("project mosquitto.conf");
        for (from, to) in &self.edits {
            conf = edit(&conf, from, to);
        }
        let d = self.dir.path();
        let port = self.port;
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
    }

    /// Starts Mosquitto and waits until it answers an MQTT CONNECT; false
    /// when it exited first (its port was taken).
    async fn spawn(&mut self) -> bool {
        let mut child = Command::new("mosquitto")
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto (Debian package mosquitto)");
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            if mqtt_answers_over(self.port, READY_USER, DEVICE_PASS, self.tls_ca.as_deref()).await {
                self.child = Some(child);
                return true;
            }
            if tokio::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "mosquitto did not answer on port {}: {}",
                    self.port,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the broker gracefully (it saves its persistence file) and starts it again.
    pub async fn restart(&mut self) {
        self.stop();
        self.resume().await;
    }

    /// Kills the broker with SIGKILL: no chance to save its persistence
    /// file beyond what autosave wrote.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the broker gracefully (it saves its persistence file).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }

    /// Starts a stopped broker again on its port, with its persisted state.
    pub async fn resume(&mut self) {
        assert!(
            self.spawn().await,
            "mosquitto could not restart on port {}: {}",
            self.port,
            self.log()
        );
    }

    pub fn url(&self, user: &str, pass: &str) -> String {
        format!("mqtt://{user}:{pass}@127.0.0.1:{}", self.port)
    }

    pub fn engine_url(&self) -> String {
        self.url(ENGINE_USER, ENGINE_PASS)
    }

    /// The broker's password file and ACL (to issue users into).
    pub fn passwd_path(&self) -> PathBuf {
        self.dir.path().join("passwd")
    }

    pub fn acl_path(&self) -> PathBuf {
        self.dir.path().join("acl")
    }

    /// Makes Mosquitto re-read its password file and ACL (SIGHUP), as an
    /// operator does after issuing credentials; returns once a user issued
    /// before the reload can connect.
    pub async fn reload(&self, issued_user: &str, issued_pass: &str) {
        let pid = self.child.as_ref().expect("broker running").id();
        let st = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let port = self.port;
        eventually("the broker re-read its password file", || async move {
            mqtt_answers(port, issued_user, issued_pass)
                .await
                .then_some(())
        })
        .await;
    }

    /// The alert publisher's URL (its own user).
    pub fn alerts_url(&self) -> String {
        self.url(ALERTS_USER, ALERTS_PASS)
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

    /// One integer from a query; a failed query fails the test (a stand-in
    /// value would pass `before < expected` and `== 0` checks).
    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

/// A test's database goes with it (connections still open, an engine's
/// included, are ended by `FORCE`); scripts/test.sh also sweeps any left by
/// a run that was killed.
impl Drop for Db {
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
        let log = std::env::temp_dir().join(format!("wardwatch-{}.log", unique(client_id)));
        let file = std::fs::File::create(&log).expect("engine log");
        let mut cmd = wardwatch();
        // The alert publisher's own user on the same broker (tests give the
        // engine's URL; an embedded broker needs none).
        let alerts_url = mqtt_url.replace(
            &format!("{ENGINE_USER}:{ENGINE_PASS}@"),
            &format!("{ALERTS_USER}:{ALERTS_PASS}@"),
        );
        cmd.arg("serve")
            .env("WARDWATCH_MQTT_URL", mqtt_url)
            .env("WARDWATCH_MQTT_ALERTS_URL", alerts_url)
            .env("WARDWATCH_DATABASE_URL", db_url)
            // The engine binds a free port itself and logs it: no race with
            // another test for a port found free beforehand.
            .env("WARDWATCH_HTTP_ADDR", "127.0.0.1:0")
            .env("WARDWATCH_MQTT_CLIENT_ID", client_id)
            .stdout(Stdio::null())
            .stderr(file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start wardwatch serve");
        let http = {
            let log = log.clone();
            let mut exited = None;
            let port = tokio::time::timeout(WAIT, async {
                loop {
                    if let Some(port) = std::fs::read_to_string(&log)
                        .ok()
                        .and_then(|l| logged_http_port(&l))
                    {
                        return Some(port);
                    }
                    if let Ok(Some(status)) = child.try_wait() {
                        exited = Some(status);
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
            .await;
            match port {
                Ok(Some(port)) => port,
                _ => panic!(
                    "the engine logged no HTTP address (exit: {exited:?}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ),
            }
        };
        let e = Engine {
            http,
            child: Some(child),
            log,
        };
        // Healthy: the database answers and the broker confirmed the
        // device subscriptions (SUBACK), so nothing published from now on
        // can miss the engine.
        eventually("engine /healthz: database ok, MQTT subscribed", || async {
            http_get(http, "/healthz").await.filter(|(s, _)| *s == 200)
        })
        .await;
        e
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// The engine's resident memory now and at its peak, in KiB
    /// (`VmRSS`, `VmHWM` from /proc).
    pub fn memory_kib(&self) -> (u64, u64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
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

    /// The engine's Prometheus exposition; a failed scrape fails the test
    /// (an empty text would read as "every counter is zero").
    pub async fn metrics(&self) -> String {
        match http_get(self.http, "/metrics").await {
            Some((200, body)) => body,
            other => panic!("scraping /metrics on port {} failed: {other:?}", self.http),
        }
    }

    /// The value of one metric line (exact name and labels). A series the
    /// engine does not export fails the test: the engine registers every
    /// counter at zero, so absence means a wrong name or a dead exporter.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.metrics().await;
        parse_metric(&text, series)
            .unwrap_or_else(|| panic!("the engine exports no series {series}; it has:\n{text}"))
    }
}

/// One series' value from a Prometheus exposition, `None` when absent.
pub fn parse_metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok()).flatten()
    })
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

    /// Publishes with the retain flag set (a broker keeps the last one).
    pub async fn publish_retained(&mut self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, true, payload.into())
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
    /// A publisher with a staging publisher's credentials (may publish as
    /// any device): each call takes the next connection's user, so two
    /// publishers in one test do not take each other over.
    pub async fn loadgen_publisher(&self) -> Publisher {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % STAGING_CONNECTIONS;
        let user = format!("{TESTPUB_USER}-pub{n}");
        Publisher::connect(&self.url(&user, LOADGEN_PASS), &user).await
    }
}

/// Gives a team a member, so enrolment accepts it (a team nobody runs is
/// refused, by the CLI as by the API).
pub fn staff(db_url: &str, team: &str) {
    if team == "ward-a" || team == "default" {
        return; // have policy files in config/teams
    }
    admin(
        db_url,
        &[
            "user",
            "add",
            "--id",
            &format!("staff-{team}"),
            "--role",
            "nurse",
            "--team",
            team,
        ],
    );
}

/// Enrols a patient and assigns a device through the real CLI.
pub fn enrol(db_url: &str, patient: &str, team: &str, device: &str, from: &str) {
    staff(db_url, team);
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

/// `text` with `from` replaced by `to`, failing the test unless `from`
/// occurs exactly once: a config edit that silently matched nothing would
/// leave the test running on the shipped settings.
pub fn edit(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "the edit {from:?} -> {to:?} must match exactly once"
    );
    text.replacen(from, to, 1)
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

/// A septic set of observations (NEWS2 high): one alert for its patient.
pub fn septic_pack(bt: f64) -> String {
    format!(
        r#"[{{"bt":{bt},"n":"respiratory_rate","u":"/min","v":25}},
            {{"n":"spo2","u":"%","v":94}},
            {{"n":"systolic_bp","u":"mm[Hg]","v":100}},
            {{"n":"heart_rate","u":"/min","v":115}},
            {{"n":"body_temperature","u":"Cel","v":38.6}},
            {{"n":"consciousness","vs":"A"}}]"#
    )
}
