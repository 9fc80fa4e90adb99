//! A real Mosquitto per test, started from the project's config on a free
//! port with its own users and ACL, and a publisher that waits for PUBACK.

use super::*;

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

pub fn readings_topic(device: &str) -> String {
    format!("wardwatch/v1/devices/{device}/readings")
}

pub fn observations_topic(device: &str) -> String {
    format!("wardwatch/v1/devices/{device}/observations")
}
