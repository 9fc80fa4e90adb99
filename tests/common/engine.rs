//! The real `wardwatch` binary: the engine under test, its admin commands,
//! its log and metrics, and the shared test sets (the septic pack, the
//! simulated ward).

use super::*;

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

/// A broker, a fresh database and an engine connected to both: how most
/// ingest tests begin.
pub async fn stack(tag: &str) -> (Broker, Db, Engine) {
    let broker = Broker::start().await;
    let db = Db::create(tag).await;
    let engine = Engine::start(&broker.engine_url(), &db.url, &unique("eng")).await;
    (broker, db, engine)
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
