//! The engine's configuration: `config/wardwatch.toml` (every setting is
//! documented there) plus environment overrides. Strict: unknown keys are
//! errors, and settings that would stall ingest are refused at load with a
//! message that says what to change.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{bail, Context, EngineError, Result};
use serde::Deserialize;
use wardwatch_ingest::decode::ValidationPolicy;
use wardwatch_ingest::session::{BrokerAddress, SessionConfig};
use wardwatch_store::{TimescalePolicy, WriteMethod};

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Broker connection.
    pub mqtt: MqttConfig,
    /// PostgreSQL connection and bulk-write method.
    pub database: DatabaseConfig,
    /// Validation limits and batching.
    pub ingest: IngestConfig,
    /// Retention and TimescaleDB policies.
    pub storage: StorageConfig,
    /// The rules core: pathways, shards, clock, reload.
    pub rules: RulesConfig,
    /// Alerts: teams, escalation, delivery.
    pub alerting: AlertingConfig,
    /// The HTTP listener (health, metrics).
    pub http: HttpConfig,
    /// Logging.
    pub log: LogConfig,
}

/// `[mqtt]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// `mqtt://[user:pass@]host[:port]`. Env: `WARDWATCH_MQTT_URL`. Empty:
    /// run the embedded broker (trials and small sites).
    pub url: String,
    /// The CA certificates (PEM) that sign the broker's certificate, for
    /// `mqtts://` URLs; unset: the Mozilla roots. Env: `WARDWATCH_MQTT_CA_FILE`.
    pub ca_file: Option<std::path::PathBuf>,
    /// The alert publisher's broker URL, with its own user: the broker
    /// binds each client id to one user, so it cannot share the ingest
    /// session's. Env: `WARDWATCH_MQTT_ALERTS_URL`. Required with `url`;
    /// unused with the embedded broker (which makes its own).
    pub alerts_url: String,
    /// The embedded broker, used when `url` is empty.
    pub embedded: EmbeddedBrokerConfig,
    /// Fixed client id of the persistent session.
    pub client_id: String,
    /// Keep-alive in seconds.
    pub keep_alive_secs: u64,
    /// The broker's in-flight window for us (`max_inflight_messages`).
    pub max_inflight: usize,
    /// Largest packet the client accepts; keep it at or above the broker's `max_packet_size`.
    pub max_packet_bytes: usize,
    /// First reconnect delay.
    pub reconnect_min_ms: u64,
    /// Longest reconnect delay.
    pub reconnect_max_ms: u64,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            ca_file: None,
            alerts_url: String::new(),
            embedded: EmbeddedBrokerConfig::default(),
            client_id: "wardwatch-engine".into(),
            keep_alive_secs: 30,
            max_inflight: 1000,
            max_packet_bytes: 2 * 1024 * 1024,
            reconnect_min_ms: 200,
            reconnect_max_ms: 30_000,
        }
    }
}

/// `[mqtt.embedded]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedBrokerConfig {
    /// Where it listens: loopback by default, and not 1883, so it never
    /// clashes with (or stands in for) a system broker.
    pub listen: std::net::SocketAddr,
    /// Devices' and tools' credentials (a Mosquitto password file, made
    /// with `wardwatch credentials`). Empty: only the engine's own
    /// sessions (and the demo's simulator) can connect. Env:
    /// `WARDWATCH_MQTT_EMBEDDED_PASSWORD_FILE`.
    pub password_file: Option<std::path::PathBuf>,
    /// The engine's own passwords (ingest, alerts), made at start (never
    /// configured).
    #[serde(skip)]
    pub session_passwords: Option<(String, String)>,
    /// A publisher in this process (the demo's simulated ward): base user
    /// name (it connects as `<user>-pub0`) and password, made at start.
    #[serde(skip)]
    pub local_publisher: Option<(String, String)>,
}

impl Default for EmbeddedBrokerConfig {
    fn default() -> Self {
        Self {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 18830)),
            password_file: None,
            session_passwords: None,
            local_publisher: None,
        }
    }
}

/// The TLS client configuration for `addr` (`None` unless `mqtts://`).
pub fn mqtt_tls(
    addr: &BrokerAddress,
    ca_file: Option<&std::path::Path>,
) -> Result<Option<std::sync::Arc<tokio_rustls::rustls::ClientConfig>>> {
    if !addr.tls {
        return Ok(None);
    }
    Ok(Some(
        wardwatch_ingest::tls::client_config(ca_file).setting("mqtt.ca_file")?,
    ))
}

/// The alert publisher's user on the embedded broker.
pub fn embedded_alerts_user(client_id: &str) -> String {
    format!("{client_id}-alerts")
}

/// The embedded store's file when no database URL is set, relative to the
/// working directory.
pub const EMBEDDED_DATABASE: &str = "data/wardwatch.db";

/// Where the engine keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseTarget {
    /// A PostgreSQL URL.
    Postgres(String),
    /// An SQLite file: for trials and small sites.
    Sqlite(std::path::PathBuf),
}

impl DatabaseConfig {
    /// The configured database: PostgreSQL, or the embedded SQLite file.
    pub fn target(&self) -> DatabaseTarget {
        database_target(&self.url)
    }
}

/// Reads a database URL: empty means the embedded store.
pub fn database_target(url: &str) -> DatabaseTarget {
    let url = url.trim();
    if url.is_empty() {
        return DatabaseTarget::Sqlite(EMBEDDED_DATABASE.into());
    }
    match url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        Some(path) => DatabaseTarget::Sqlite(path.into()),
        None => DatabaseTarget::Postgres(url.to_string()),
    }
}

/// `[database]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// PostgreSQL URL (`postgres://…`), or `sqlite://<file>`; empty for
    /// the embedded SQLite store in [`EMBEDDED_DATABASE`]. Env:
    /// `WARDWATCH_DATABASE_URL`.
    pub url: String,
    /// Pool size.
    pub max_connections: u32,
    /// `unnest` or `copy`.
    pub write_method: WriteMethod,
    /// PostgreSQL: the API's own pool (its reads never wait for ingest's
    /// connections).
    pub api_max_connections: u32,
    /// PostgreSQL: an API statement running longer is cancelled.
    pub api_statement_timeout_secs: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            max_connections: 8,
            write_method: WriteMethod::Unnest,
            api_max_connections: 4,
            api_statement_timeout_secs: 15,
        }
    }
}

/// `[ingest]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Payloads larger than this are quarantined as `oversized`.
    pub max_payload_bytes: usize,
    /// Readings further ahead than this are quarantined as `future_time`.
    pub max_future_skew_secs: u64,
    /// Records read from one payload at most (the rest: one `too_many_records` row).
    pub max_records_per_payload: usize,
    /// Refused records of one payload stored a row each at most (the rest: one summary row).
    pub max_rejections_per_payload: usize,
    /// Sustained messages per minute one device may send (0: no limit);
    /// beyond `device_burst` more, its messages are quarantined whole as
    /// `rate_limited`, not read. Default 120 (the fastest device sends 60).
    pub device_rate_per_minute: u32,
    /// Messages a device may send at once beyond the sustained rate: a
    /// backlog the broker delivers after an outage. Default 2,000 (33 hours
    /// of a per-minute patch).
    pub device_burst: u32,
    /// Flush a batch at this many messages.
    pub batch_max_messages: usize,
    /// Flush a batch at this many rows (readings plus rejections).
    pub batch_max_rows: usize,
    /// Flush a batch this long after its first message at the latest.
    pub batch_max_delay_ms: u64,
    /// Batches committed concurrently (one database connection each).
    pub writers: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_payload_bytes: 256 * 1024,
            max_future_skew_secs: 300,
            max_records_per_payload: 10_000,
            max_rejections_per_payload: 100,
            device_rate_per_minute: 120,
            device_burst: 10_000,
            batch_max_messages: 300,
            batch_max_rows: 10_000,
            batch_max_delay_ms: 20,
            writers: 2,
        }
    }
}

/// `[storage]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Readings older than this are dropped (and refused as `too_old`).
    pub retention_days: u64,
    /// TimescaleDB chunk interval.
    pub chunk_interval_hours: u64,
    /// TimescaleDB: compress chunks older than this.
    pub compress_after_days: u64,
    /// Plain PostgreSQL: how often the retention sweep runs (quarantine
    /// expiry runs on it on every store).
    pub sweep_interval_secs: u64,
    /// Quarantine rows not seen again for this long are deleted.
    pub quarantine_retention_days: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            retention_days: 2922,
            chunk_interval_hours: 24,
            compress_after_days: 7,
            sweep_interval_secs: 3600,
            quarantine_retention_days: 90,
        }
    }
}

/// `[rules]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// Score readings and raise flags. Off only to measure ingest alone
    /// (benchmarks); a clinical deployment runs with it on. Env:
    /// `WARDWATCH_RULES_ENABLED`.
    pub enabled: bool,
    /// Directory of pathway files (`*.toml`). Unset: `config/pathways` when
    /// that folder exists, else the pathways built into the binary. Env:
    /// `WARDWATCH_PATHWAYS_DIR`.
    pub pathways_dir: Option<PathBuf>,
    /// Worker threads; 0 means one per CPU core.
    pub shards: usize,
    /// Inputs each shard's inbox holds before senders wait.
    pub shard_inbox: usize,
    /// How often the clock ticks (drives `no_data`), milliseconds.
    pub tick_ms: u64,
    /// How often patients' changed settings are read from the store, seconds.
    pub refresh_secs: u64,
    /// How often the pathway files are checked for changes, seconds (0: only on SIGHUP).
    pub watch_secs: u64,
    /// Readings of vitals without a longer trend window are replayed from
    /// this far back at start-up, minutes.
    pub replay_mins: u64,
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            pathways_dir: None,
            shards: 0,
            shard_inbox: 4096,
            tick_ms: 1000,
            refresh_secs: 5,
            watch_secs: 5,
            replay_mins: 120,
        }
    }
}

impl RulesConfig {
    /// Where the pathways come from.
    pub fn pathways(&self) -> Source {
        Source::resolve(self.pathways_dir.as_deref(), "config/pathways")
    }

    /// Worker threads to start.
    pub fn shard_count(&self) -> usize {
        if self.shards > 0 {
            self.shards
        } else {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        }
    }
}

/// `[alerting]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertingConfig {
    /// Turn flags into alerts and deliver them. Env: `WARDWATCH_ALERTING_ENABLED`.
    pub enabled: bool,
    /// Team files (`*.toml`, one `default.toml` required). Unset:
    /// `config/teams` when that folder exists, else the teams built into the
    /// binary. Env: `WARDWATCH_TEAMS_DIR`.
    pub teams_dir: Option<PathBuf>,
    /// How often due escalations are looked for, milliseconds.
    pub escalation_poll_ms: u64,
    /// How often pending work is looked for when nothing wakes the loops, milliseconds.
    pub poll_ms: u64,
    /// Deliveries sent concurrently.
    pub delivery_batch: usize,
    /// Attempts before a delivery is marked failed (backoff doubles from 1 s, with jitter).
    pub max_attempts: i32,
    /// Timeout of one webhook, Notify or MQTT delivery, milliseconds.
    pub request_timeout_ms: u64,
    /// A GOV.UK Notify-compatible API for SMS and e-mail.
    pub notify: NotifySettings,
}

impl AlertingConfig {
    /// Where the team files come from.
    pub fn teams(&self) -> Source {
        Source::resolve(self.teams_dir.as_deref(), "config/teams")
    }
}

/// Where a set of shipped files (pathways, teams) is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A folder of `*.toml` files: the whole set (nothing is merged with
    /// the built-in files, so what is in the folder is what runs).
    Dir(PathBuf),
    /// The files as shipped, built into the binary.
    BuiltIn,
}

impl Source {
    /// A configured folder is used as given (a missing one is an error
    /// when loading, never a quiet fallback); unset, the conventional
    /// folder when it exists, else the built-in set.
    fn resolve(configured: Option<&Path>, conventional: &str) -> Self {
        match configured {
            Some(dir) => Self::Dir(dir.to_path_buf()),
            None if Path::new(conventional).is_dir() => Self::Dir(conventional.into()),
            None => Self::BuiltIn,
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dir(dir) => write!(f, "{}", dir.display()),
            Self::BuiltIn => f.write_str("the built-in set"),
        }
    }
}

impl Default for AlertingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            teams_dir: None,
            escalation_poll_ms: 1000,
            poll_ms: 500,
            delivery_batch: 32,
            max_attempts: 6,
            request_timeout_ms: 10_000,
            notify: NotifySettings::default(),
        }
    }
}

/// `[alerting.notify]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifySettings {
    /// Base URL; empty disables SMS and e-mail (their deliveries fail and
    /// the fallback is told). Env: `WARDWATCH_NOTIFY_URL`.
    pub base_url: String,
    /// Environment variable holding the API key (never in files, never logged).
    pub api_key_env: String,
    /// Template for text messages (personalisation: `summary`).
    pub sms_template_id: String,
    /// Template for e-mails (personalisation: `subject`, `summary`).
    pub email_template_id: String,
}

impl Default for NotifySettings {
    fn default() -> Self {
        Self {
            base_url: String::new(),
            api_key_env: "WARDWATCH_NOTIFY_API_KEY".into(),
            sms_template_id: String::new(),
            email_template_id: String::new(),
        }
    }
}

/// `[http]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address. Env: `WARDWATCH_HTTP_ADDR`.
    pub addr: SocketAddr,
    /// Reverse proxies (addresses or CIDR blocks) whose `X-Forwarded-For`
    /// names the client, for the sign-in limiter and the audit. Empty:
    /// the peer address is the client. Env: `WARDWATCH_HTTP_TRUSTED_PROXIES`
    /// (comma-separated).
    pub trusted_proxies: Vec<String>,
    /// HTTPS: the certificate chain (PEM, leaf first). With `tls_key_file`
    /// the listener speaks only HTTPS. Env: `WARDWATCH_HTTP_TLS_CERT_FILE`.
    pub tls_cert_file: Option<std::path::PathBuf>,
    /// HTTPS: the private key (PEM). Env: `WARDWATCH_HTTP_TLS_KEY_FILE`.
    pub tls_key_file: Option<std::path::PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            trusted_proxies: Vec::new(),
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

impl HttpConfig {
    /// The trusted proxies, parsed; a bad entry is refused with its text.
    pub fn trusted_proxies(&self) -> Result<Vec<wardwatch_api::Cidr>> {
        self.trusted_proxies
            .iter()
            .map(|p| {
                p.parse().map_err(|e: String| {
                    crate::EngineError::Config(format!("http.trusted_proxies: {e}"))
                })
            })
            .collect()
    }
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `human` or `json`. Env: `WARDWATCH_LOG_FORMAT`.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `wardwatch=debug,info`. Env: `RUST_LOG`.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            filter: "info".into(),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

impl Config {
    /// Loads a file (if given and present), applies environment overrides, validates.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let mut cfg = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    EngineError::Config(format!("reading config file {}: {e}", p.display()))
                })?;
                Self::from_toml(&text).map_err(|e| {
                    EngineError::Config(format!("in config file {}: {e}", p.display()))
                })?
            }
            None => Self::default(),
        };
        cfg.apply_env(|k| std::env::var(k).ok())?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| EngineError::Config(e.to_string()))
    }

    /// Environment overrides (injected for tests).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<()> {
        if let Some(v) = get("WARDWATCH_MQTT_URL") {
            self.mqtt.url = v;
        }
        if let Some(v) = get("WARDWATCH_DATABASE_URL") {
            self.database.url = v;
        }
        if let Some(v) = get("WARDWATCH_HTTP_ADDR") {
            self.http.addr = v
                .parse()
                .with_context(|| format!("WARDWATCH_HTTP_ADDR={v:?} is not host:port"))?;
        }
        if let Some(v) = get("WARDWATCH_RULES_ENABLED") {
            self.rules.enabled = match v.as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => bail!("WARDWATCH_RULES_ENABLED must be true or false, not {v:?}"),
            };
        }
        if let Some(v) = get("WARDWATCH_ALERTING_ENABLED") {
            self.alerting.enabled = match v.as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => bail!("WARDWATCH_ALERTING_ENABLED must be true or false, not {v:?}"),
            };
        }
        if let Some(v) = get("WARDWATCH_HTTP_TRUSTED_PROXIES") {
            self.http.trusted_proxies = v
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect();
        }
        if let Some(v) = get("WARDWATCH_TEAMS_DIR") {
            self.alerting.teams_dir = Some(v).filter(|v| !v.is_empty()).map(Into::into);
        }
        if let Some(v) = get("WARDWATCH_NOTIFY_URL") {
            self.alerting.notify.base_url = v;
        }
        if let Some(v) = get("WARDWATCH_PATHWAYS_DIR") {
            self.rules.pathways_dir = Some(v).filter(|v| !v.is_empty()).map(Into::into);
        }
        if let Some(v) = get("WARDWATCH_MQTT_CLIENT_ID") {
            self.mqtt.client_id = v;
        }
        if let Some(v) = get("WARDWATCH_MQTT_CA_FILE") {
            self.mqtt.ca_file = Some(v).filter(|v| !v.is_empty()).map(Into::into);
        }
        if let Some(v) = get("WARDWATCH_HTTP_TLS_CERT_FILE") {
            self.http.tls_cert_file = Some(v).filter(|v| !v.is_empty()).map(Into::into);
        }
        if let Some(v) = get("WARDWATCH_HTTP_TLS_KEY_FILE") {
            self.http.tls_key_file = Some(v).filter(|v| !v.is_empty()).map(Into::into);
        }
        if let Some(v) = get("WARDWATCH_MQTT_ALERTS_URL") {
            self.mqtt.alerts_url = v;
        }
        if let Some(v) = get("WARDWATCH_MQTT_EMBEDDED_PASSWORD_FILE") {
            self.mqtt.embedded.password_file = Some(v).filter(|v| !v.is_empty()).map(Into::into);
        }
        if let Some(v) = get("WARDWATCH_MQTT_EMBEDDED_LISTEN") {
            self.mqtt.embedded.listen = v.parse().with_context(|| {
                format!("WARDWATCH_MQTT_EMBEDDED_LISTEN={v:?} is not host:port")
            })?;
        }
        if let Some(v) = get("WARDWATCH_LOG_FORMAT") {
            self.log.format = match v.as_str() {
                "json" => LogFormat::Json,
                "human" => LogFormat::Human,
                _ => bail!("WARDWATCH_LOG_FORMAT must be human or json, not {v:?}"),
            };
        }
        Ok(())
    }

    /// Refuses settings that would stall or lose data.
    pub fn validate(&self) -> Result<()> {
        SessionConfig::parse_url(&self.broker_url()).setting("mqtt.url")?;
        if !self.mqtt.alerts_url.trim().is_empty() {
            SessionConfig::parse_url(&self.mqtt.alerts_url).setting("mqtt.alerts_url")?;
        }
        if self.http.tls_cert_file.is_some() != self.http.tls_key_file.is_some() {
            bail!("http.tls_cert_file and http.tls_key_file go together (HTTPS needs both)");
        }
        if self.mqtt.keep_alive_secs < 5 {
            bail!("mqtt.keep_alive_secs must be at least 5: the engine pings on it and treats two silent periods as a dead connection");
        }
        if self.mqtt.max_inflight < 2 {
            bail!("mqtt.max_inflight must be at least 2");
        }
        if self.ingest.batch_max_messages == 0 || self.ingest.batch_max_rows == 0 {
            bail!("ingest.batch_max_messages and ingest.batch_max_rows must be positive");
        }
        // A batch fills only if the broker may send that many unacknowledged
        // messages; every writer may hold one batch while the next fills.
        let needed = self.ingest.batch_max_messages * (self.ingest.writers + 1);
        if needed > self.mqtt.max_inflight {
            bail!(
                "ingest.batch_max_messages ({}) × (ingest.writers ({}) + 1) must be at most \
                 mqtt.max_inflight ({}): the broker sends no more than its in-flight window \
                 before we acknowledge, so larger batches would wait for their timer on every flush",
                self.ingest.batch_max_messages,
                self.ingest.writers,
                self.mqtt.max_inflight
            );
        }
        if self.ingest.writers == 0 || self.ingest.writers as u32 >= self.database.max_connections {
            bail!(
                "ingest.writers must be at least 1 and below database.max_connections ({}), \
                 leaving a connection for health checks and anchors",
                self.database.max_connections
            );
        }
        if self.mqtt.max_packet_bytes < self.ingest.max_payload_bytes {
            bail!("mqtt.max_packet_bytes must be at least ingest.max_payload_bytes, or oversized payloads would break the connection instead of being quarantined");
        }
        if self.storage.quarantine_retention_days == 0 {
            bail!("storage.quarantine_retention_days must be positive");
        }
        if self.storage.retention_days == 0 {
            bail!("storage.retention_days must be positive");
        }
        if self.rules.tick_ms < 10 || self.rules.tick_ms > 60_000 {
            bail!("rules.tick_ms must be between 10 and 60000: the clock drives no_data flags");
        }
        if self.alerting.delivery_batch == 0
            || self.alerting.max_attempts < 1
            || self.alerting.poll_ms == 0
            || self.alerting.escalation_poll_ms == 0
        {
            bail!("alerting.delivery_batch, max_attempts, poll_ms and escalation_poll_ms must be positive");
        }
        if self.alerting.enabled && !self.rules.enabled {
            bail!("alerting.enabled needs rules.enabled: alerts come from the rules' flags");
        }
        if self.rules.shard_inbox == 0 || self.rules.refresh_secs == 0 {
            bail!("rules.shard_inbox and rules.refresh_secs must be positive");
        }
        Ok(())
    }

    /// The engine's two broker sessions have users of their own: the
    /// broker binds each client id to its user, so a shared one would make
    /// the alert publisher take over the ingest session. Checked by
    /// `serve` only (tools do not publish alerts).
    pub fn check_broker_identities(&self) -> Result<()> {
        let ingest_user = SessionConfig::parse_url(&self.broker_url())
            .setting("mqtt.url")?
            .credentials;
        if !self.embedded_broker() && self.alerting.enabled {
            if self.mqtt.alerts_url.trim().is_empty() {
                bail!("mqtt.alerts_url (WARDWATCH_MQTT_ALERTS_URL) is not set: the alert publisher needs its own broker user (e.g. mqtt://wardwatch-alerts:SECRET@broker:1883; `wardwatch credentials service alerts` makes one)");
            }
            let alerts_user = SessionConfig::parse_url(&self.mqtt.alerts_url)
                .setting("mqtt.alerts_url")?
                .credentials;
            if let (Some((a, _)), Some((b, _))) = (&ingest_user, &alerts_user) {
                if a == b {
                    bail!("mqtt.url and mqtt.alerts_url use the same broker user {a:?}: the broker binds each client id to its user, so the alert publisher would take over the ingest session; give it its own (wardwatch-alerts)");
                }
            }
        }
        Ok(())
    }

    /// True when the engine runs its own broker (no `[mqtt] url`).
    pub fn embedded_broker(&self) -> bool {
        self.mqtt.url.trim().is_empty()
    }

    /// The broker the ingest session connects to: the configured one, or
    /// the embedded one as the engine's own user.
    pub fn broker_url(&self) -> String {
        if self.embedded_broker() {
            let (password, _) = self
                .mqtt
                .embedded
                .session_passwords
                .clone()
                .unwrap_or_default();
            format!(
                "mqtt://{}:{password}@{}",
                self.mqtt.client_id, self.mqtt.embedded.listen
            )
        } else {
            self.mqtt.url.clone()
        }
    }

    /// The alert publisher's broker, parsed (its own user; on the embedded
    /// broker, the engine's alerts session).
    pub fn alerts_broker(&self) -> Result<BrokerAddress> {
        SessionConfig::parse_url(&self.alerts_broker_url()).setting("mqtt.alerts_url")
    }

    /// The broker the alert publisher connects to, as its own user.
    pub fn alerts_broker_url(&self) -> String {
        if self.embedded_broker() {
            let (_, password) = self
                .mqtt
                .embedded
                .session_passwords
                .clone()
                .unwrap_or_default();
            format!(
                "mqtt://{}:{password}@{}",
                embedded_alerts_user(&self.mqtt.client_id),
                self.mqtt.embedded.listen
            )
        } else {
            self.mqtt.alerts_url.clone()
        }
    }

    /// The TLS client configuration for a broker address: `Some` for
    /// `mqtts://`, verifying against `[mqtt] ca_file`.
    pub fn mqtt_tls(
        &self,
        addr: &BrokerAddress,
    ) -> Result<Option<std::sync::Arc<tokio_rustls::rustls::ClientConfig>>> {
        mqtt_tls(addr, self.mqtt.ca_file.as_deref())
    }

    /// The MQTT session settings.
    pub fn session(&self) -> Result<SessionConfig> {
        let addr = SessionConfig::parse_url(&self.broker_url()).setting("mqtt.url")?;
        let tls = self.mqtt_tls(&addr)?;
        Ok(SessionConfig {
            host: addr.host,
            port: addr.port,
            client_id: self.mqtt.client_id.clone(),
            credentials: addr.credentials,
            tls,
            keep_alive: Duration::from_secs(self.mqtt.keep_alive_secs),
            max_inflight: self.mqtt.max_inflight,
            max_packet_bytes: self.mqtt.max_packet_bytes,
            reconnect_min: Duration::from_millis(self.mqtt.reconnect_min_ms),
            reconnect_max: Duration::from_millis(self.mqtt.reconnect_max_ms),
            status: Default::default(),
        })
    }

    /// Validation limits.
    pub fn validation(&self) -> ValidationPolicy {
        ValidationPolicy {
            max_payload_bytes: self.ingest.max_payload_bytes,
            max_future_skew: chrono::Duration::seconds(self.ingest.max_future_skew_secs as i64),
            retention: chrono::Duration::days(self.storage.retention_days as i64),
            max_records: self.ingest.max_records_per_payload.max(1),
            max_rejections: self.ingest.max_rejections_per_payload.max(1),
        }
    }

    /// TimescaleDB policies.
    pub fn timescale(&self) -> TimescalePolicy {
        TimescalePolicy {
            chunk_interval: Duration::from_secs(self.storage.chunk_interval_hours * 3600),
            compress_after: Duration::from_secs(self.storage.compress_after_days * 86_400),
            retention: Duration::from_secs(self.storage.retention_days * 86_400),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alert_publisher_needs_a_broker_user_of_its_own() {
        let mut cfg = Config::default();
        cfg.mqtt.url = "mqtt://wardwatch-engine:a@broker".into();
        let e = cfg.check_broker_identities().unwrap_err().to_string();
        assert!(e.contains("WARDWATCH_MQTT_ALERTS_URL"), "{e}");
        cfg.mqtt.alerts_url = "mqtt://wardwatch-engine:a@broker".into();
        let e = cfg.check_broker_identities().unwrap_err().to_string();
        assert!(e.contains("same broker user"), "{e}");
        cfg.mqtt.alerts_url = "mqtt://wardwatch-alerts:b@broker".into();
        cfg.check_broker_identities().unwrap();
        // Without alerting, or on the embedded broker, none is needed.
        cfg.mqtt.alerts_url.clear();
        cfg.alerting.enabled = false;
        cfg.check_broker_identities().unwrap();
        cfg.alerting.enabled = true;
        cfg.mqtt.url.clear();
        cfg.check_broker_identities().unwrap();
    }

    #[test]
    fn the_shipped_config_file_parses_and_validates() {
        let text = include_str!("../../../config/wardwatch.toml");
        let cfg = Config::from_toml(text).unwrap();
        cfg.validate().unwrap();
    }

    #[test]
    fn the_shipped_config_file_is_the_built_in_default() {
        // Running with no file is running with the shipped one.
        let text = include_str!("../../../config/wardwatch.toml");
        let shipped = Config::from_toml(text).unwrap();
        assert_eq!(format!("{shipped:?}"), format!("{:?}", Config::default()));
    }

    #[test]
    fn a_configured_folder_is_used_as_given_and_unset_falls_back_to_the_built_in_set() {
        let dir = tempfile::tempdir().unwrap();
        let given = Source::resolve(Some(dir.path()), "config/pathways");
        assert_eq!(given, Source::Dir(dir.path().into()));
        // A configured folder that is missing stays that folder (loading
        // then fails with its name), never a quiet switch to the built-in set.
        let missing = dir.path().join("absent");
        assert_eq!(
            Source::resolve(Some(&missing), "config/pathways"),
            Source::Dir(missing.clone())
        );
        let conventional = dir.path().join("config/pathways");
        let conventional = conventional.to_str().unwrap();
        assert_eq!(Source::resolve(None, conventional), Source::BuiltIn);
        std::fs::create_dir_all(conventional).unwrap();
        assert_eq!(
            Source::resolve(None, conventional),
            Source::Dir(conventional.into())
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = Config::from_toml("[mqtt]\nurll = \"x\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("unknown field"), "{e:#}");
    }

    #[test]
    fn batches_that_cannot_fill_within_the_inflight_window_are_refused() {
        let mut cfg = Config::default();
        cfg.mqtt.max_inflight = 90;
        cfg.ingest.writers = 2;
        cfg.ingest.batch_max_messages = 31;
        let e = cfg.validate().unwrap_err();
        assert!(e.to_string().contains("in-flight window"), "{e}");
        cfg.ingest.batch_max_messages = 30;
        cfg.validate().unwrap();
    }

    #[test]
    fn no_database_url_means_the_embedded_store() {
        assert_eq!(
            Config::default().database.target(),
            DatabaseTarget::Sqlite(EMBEDDED_DATABASE.into())
        );
        assert_eq!(
            database_target("sqlite:///var/lib/ww.db"),
            DatabaseTarget::Sqlite("/var/lib/ww.db".into())
        );
        assert_eq!(
            database_target("sqlite:ww.db"),
            DatabaseTarget::Sqlite("ww.db".into())
        );
        assert_eq!(
            database_target(" postgres://x/y "),
            DatabaseTarget::Postgres("postgres://x/y".into())
        );
    }

    #[test]
    fn environment_overrides_win_over_the_file() {
        let mut cfg = Config::default();
        cfg.apply_env(|k| match k {
            "WARDWATCH_MQTT_URL" => Some("mqtt://b:1884".into()),
            "WARDWATCH_DATABASE_URL" => Some("postgres://x/y".into()),
            "WARDWATCH_HTTP_ADDR" => Some("127.0.0.1:9999".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(cfg.mqtt.url, "mqtt://b:1884");
        assert_eq!(cfg.database.url, "postgres://x/y");
        assert_eq!(cfg.http.addr.port(), 9999);
        assert!(cfg
            .apply_env(|k| (k == "WARDWATCH_HTTP_ADDR").then(|| "nope".into()))
            .is_err());
    }
}
