//! The engine process: wires the store, the rules, the ingest pipeline, the
//! alerting loops and the HTTP endpoints, and stops them in order when its
//! shutdown token is cancelled.

use std::time::Duration;

use crate::error::{Context, Result};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use wardwatch_store::{Backend, MaintenanceStore, PgStore, SqliteStore, StorageMode};

use crate::alerting::Alerting;
use crate::config::{Config, DatabaseTarget};
use crate::ingest::{self, Batching};
use crate::scoring::Rules;
use crate::{http, telemetry};

/// Where a running engine listens, once it has bound (port 0 in the
/// configuration picks a free port, so only the engine knows).
#[derive(Debug, Clone)]
pub struct Bound {
    /// The HTTP listener (board, API, health, metrics).
    pub http: std::net::SocketAddr,
    /// The embedded broker's URL for this process's own publisher (the
    /// demo's simulated ward), as `[mqtt.embedded] local_publisher`.
    pub publisher_url: Option<String>,
}

/// One engine: a configuration, and who wants to know where it listens.
pub struct Engine {
    config: Config,
    bound: Option<tokio::sync::oneshot::Sender<Bound>>,
}

impl Engine {
    /// An engine that will run `config` (the binary loads and checks it).
    pub fn new(config: Config) -> Self {
        Self {
            config,
            bound: None,
        }
    }

    /// `bound` learns the addresses the engine listens on as soon as they
    /// are bound (port 0 picks a free one; the demo prints it).
    pub fn announce_to(mut self, bound: tokio::sync::oneshot::Sender<Bound>) -> Self {
        self.bound = Some(bound);
        self
    }

    /// Runs until `shutdown` is cancelled, then stops ingest, rules,
    /// alerting and HTTP in that order. An error is the reason it could not
    /// start or had to stop (a supervisor restarts it).
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        run(self.config, shutdown, self.bound).await
    }
}

async fn run(
    mut cfg: Config,
    shutdown: CancellationToken,
    bound: Option<tokio::sync::oneshot::Sender<Bound>>,
) -> Result<()> {
    let metrics = telemetry::init_metrics()?;
    cfg.check_broker_identities()?;
    if cfg.embedded_broker() {
        // The engine's own sessions get passwords nobody else knows.
        let passwords = (
            crate::credentials::random_password(),
            crate::credentials::random_password(),
        );
        let mut users = crate::broker::EmbeddedUsers::default();
        users
            .sessions
            .insert(cfg.mqtt.client_id.clone(), passwords.0.clone());
        users.sessions.insert(
            crate::config::embedded_alerts_user(&cfg.mqtt.client_id),
            passwords.1.clone(),
        );
        if let Some((user, password)) = &cfg.mqtt.embedded.local_publisher {
            // It connects as a tool does: its first publishing connection.
            users.sessions.insert(
                crate::credentials::connection_user(user, "pub0"),
                password.clone(),
            );
        }
        if let Some(path) = &cfg.mqtt.embedded.password_file {
            users.file = crate::credentials::PasswordFile::load(path)
                .with_context(|| format!("[mqtt.embedded] password_file {}", path.display()))?;
        }
        cfg.mqtt.embedded.session_passwords = Some(passwords);
        // Port 0 picks a free port; the session connects to the one taken.
        cfg.mqtt.embedded.listen = crate::broker::start(
            cfg.mqtt.embedded.listen,
            cfg.mqtt.max_packet_bytes,
            cfg.mqtt.max_inflight,
            users,
        )?;
        warn!(
            message = "Embedded MQTT broker running: for trials and small sites only. It keeps queued messages in memory, so they do not survive a restart; set [mqtt] url to use a real broker.",
            listen = %cfg.mqtt.embedded.listen
        );
    }
    let store = connect_store(&cfg, &shutdown).await?;
    let Some(mut store) = store else {
        return Ok(());
    };
    let mode = match &mut store {
        Backend::Pg(pg) => pg
            .prepare_storage(&cfg.timescale())
            .await
            .context("preparing storage")?,
        Backend::Sqlite(_) => {
            // The absolute path: a relative one depends on where the engine
            // was started, and an operator must know which file holds the data.
            let file = match cfg.database.target() {
                DatabaseTarget::Sqlite(path) => std::path::absolute(&path).unwrap_or(path),
                DatabaseTarget::Postgres(_) => std::path::PathBuf::new(),
            };
            warn!(
                message = "Embedded SQLite store: for trials and small sites only; set [database] url to use PostgreSQL.",
                file = %file.display()
            );
            StorageMode::Plain
        }
    };
    telemetry::storage_mode(mode);
    // The engine's time comes from the database before anything is decided.
    let mut clock_warned = false;
    sample_clock(&store, &mut clock_warned).await;
    tokio::spawn(reference_clock(
        store.clone(),
        clock_warned,
        shutdown.clone(),
    ));
    tokio::spawn(maintenance(
        store.clone(),
        mode,
        cfg.clone(),
        shutdown.clone(),
    ));

    let batching = Batching {
        max_messages: cfg.ingest.batch_max_messages,
        max_rows: cfg.ingest.batch_max_rows,
        max_delay: Duration::from_millis(cfg.ingest.batch_max_delay_ms),
        writers: cfg.ingest.writers,
        device_limit: wardwatch_ingest::rate::RateLimit {
            per_minute: cfg.ingest.device_rate_per_minute,
            burst: cfg.ingest.device_burst,
        },
    };
    // Alerting first: the rules' flag writer wakes it.
    let alerting = if cfg.alerting.enabled {
        Some(Alerting::start(&cfg, store.clone(), shutdown.clone())?)
    } else {
        warn!(message = "Alerting is disabled (alerting.enabled = false): flags are recorded but no one is notified.");
        None
    };
    // Pathways are checked before anything runs: an invalid file stops
    // start-up (there is no running configuration to keep yet), whether or
    // not the rules run, since enrolment checks names against them too.
    let pathways = crate::scoring::load_shared_rule_set(&cfg.rules.pathways())?;
    let rules_feed = std::sync::Arc::new(std::sync::OnceLock::new());
    // Committed readings for the live board; bounded (a lagging viewer is
    // told to reload, ingest never waits for it).
    let (live, _) = tokio::sync::broadcast::channel(1024);
    // The API's own pool on PostgreSQL; SQLite has one writer either way.
    let api_store = match (&store, cfg.database.target()) {
        (Backend::Pg(pg), DatabaseTarget::Postgres(url)) => Backend::Pg(
            pg.api_pool(
                &url,
                cfg.database.api_max_connections,
                Duration::from_secs(cfg.database.api_statement_timeout_secs.max(1)),
            )
            .await
            .context("connecting the API's pool")?,
        ),
        _ => store.clone(),
    };
    let api_state = wardwatch_api::ApiState {
        store: api_store.clone(),
        feed: alerting.as_ref().map(|a| a.feed.clone()),
        failed: std::sync::Arc::new(wardwatch_api::FailedAuth::with_trusted_proxies(
            cfg.http.trusted_proxies()?,
        )),
        catalog: std::sync::Arc::new(api_catalog(&cfg, pathways.clone())?),
        rules: rules_feed.clone(),
        readings: Some(live.clone()),
    };
    let refusals = tokio::spawn(audit_refusals(api_state.clone(), shutdown.clone()));
    let last_refusals = api_state.clone();
    let api = wardwatch_api::router(api_state);
    let tls = match (&cfg.http.tls_cert_file, &cfg.http.tls_key_file) {
        (Some(cert), Some(key)) => Some(http::tls_acceptor(cert, key)?),
        _ => None,
    };
    let listener = TcpListener::bind(cfg.http.addr)
        .await
        .with_context(|| format!("binding the HTTP address {}", cfg.http.addr))?;
    let http_addr = listener
        .local_addr()
        .context("the HTTP listener's address")?;
    info!(message = "HTTP listening.", addr = %http_addr, scheme = if tls.is_some() { "https" } else { "http" });
    if let Some(bound) = bound {
        let _ = bound.send(Bound {
            http: http_addr,
            publisher_url: cfg
                .mqtt
                .embedded
                .local_publisher
                .as_ref()
                .filter(|_| cfg.embedded_broker())
                .map(|(user, password)| {
                    format!("mqtt://{user}:{password}@{}", cfg.mqtt.embedded.listen)
                }),
        });
    }
    let session = cfg.session()?;
    let http_task = tokio::spawn(http::serve(
        listener,
        tls,
        metrics,
        store.clone(),
        session.status.clone(),
        Some(api),
        shutdown.clone(),
    ));

    // The rules rebuild their state before ingest starts.
    let rules = if cfg.rules.enabled {
        let wake = alerting.as_ref().map(|a| a.wake.clone());
        let Some(rules) = Rules::start(
            &cfg.rules,
            store.clone(),
            pathways.clone(),
            wake,
            shutdown.clone(),
        )
        .await?
        else {
            return Ok(());
        };
        // Manual observations are scored from now on.
        let _ = rules_feed.set(rules.feed.downgrade());
        Some(rules)
    } else {
        warn!(message = "Rules are disabled (rules.enabled = false): readings are stored but not scored and no flags are raised.");
        None
    };
    let healthy = ingest::run(
        session,
        store.clone(),
        cfg.validation(),
        batching,
        rules.as_ref().map(|r| r.feed.clone()),
        Some(live),
        shutdown.clone(),
    )
    .await;
    if let Some(rules) = rules {
        rules.stop().await;
    }
    if let Some(alerting) = alerting {
        alerting.stop().await;
    }
    http_task
        .await
        .context("HTTP task")?
        .context("HTTP server")?;
    refusals.await.context("refusal audit task")?;
    // What was refused while the server drained.
    if let Err(e) = wardwatch_api::audit_refusals(&last_refusals).await {
        warn!(message = "Cannot audit API refusals; they stay counted in the metrics.", error = %e);
    }
    api_store.close().await;
    store.close().await;
    if !healthy {
        crate::error::bail!("an ingest task failed; exiting so a supervisor restarts the engine");
    }
    info!(message = "wardwatch stopped.");
    Ok(())
}

/// Audits the API's authentication refusals in aggregate every minute and
/// at shutdown (`run` writes the last ones once the server has drained).
async fn audit_refusals(state: wardwatch_api::ApiState, shutdown: CancellationToken) {
    loop {
        let stopping = tokio::select! {
            _ = shutdown.cancelled() => true,
            _ = tokio::time::sleep(Duration::from_secs(60)) => false,
        };
        if let Err(e) = wardwatch_api::audit_refusals(&state).await {
            warn!(message = "Cannot audit API refusals; they stay counted in the metrics.", error = %e);
        }
        if stopping {
            return;
        }
    }
}

/// The pathways and teams the API checks requests against: the same
/// pathways the rules run (shared, reloads included).
fn api_catalog(
    cfg: &Config,
    pathways: crate::scoring::SharedRuleSet,
) -> Result<wardwatch_api::Catalog> {
    // Unreadable team files: alerting refuses to start on them, with the reason.
    Ok(wardwatch_api::Catalog {
        teams: crate::alerting::load_teams(&cfg.alerting.teams()).ok(),
        pathways,
        rules_enabled: cfg.rules.enabled,
    })
}

/// Connects, creates the database if it is missing, and migrates. Waits for
/// an unreachable database (the broker keeps messages meanwhile) rather than
/// exiting. `None` when shut down while waiting.
pub async fn connect_store(cfg: &Config, shutdown: &CancellationToken) -> Result<Option<Backend>> {
    let mut backoff = Duration::from_millis(250);
    loop {
        match try_connect(cfg).await {
            Ok(store) => return Ok(Some(store)),
            Err(error) => {
                warn!(
                    message = "Database not ready; retrying.",
                    error = format!("{error:#}"),
                    retry_in_ms = backoff.as_millis() as u64
                );
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// One connection attempt: connect (creating the database if absent) and
/// migrate. No URL: the embedded SQLite file, created if absent.
pub async fn try_connect(cfg: &Config) -> Result<Backend> {
    match cfg.database.target() {
        DatabaseTarget::Sqlite(path) => {
            let store = SqliteStore::open(&path)
                .await
                .with_context(|| format!("opening the embedded store {}", path.display()))?;
            Ok(Backend::Sqlite(store))
        }
        DatabaseTarget::Postgres(url) => {
            create_database_if_missing(&url).await?;
            let store = PgStore::connect(&url, cfg.database.max_connections)
                .await
                .context("connecting to PostgreSQL")?
                .with_write_method(cfg.database.write_method);
            store.migrate().await.context("running migrations")?;
            Ok(Backend::Pg(store))
        }
    }
}

async fn create_database_if_missing(url: &str) -> Result<()> {
    use sqlx::postgres::PgConnectOptions;
    use sqlx::{ConnectOptions, Connection};
    let opts: PgConnectOptions = url.parse().setting("database.url")?;
    let Some(name) = opts.get_database().map(str::to_owned) else {
        return Ok(());
    };
    match opts.clone().connect().await {
        Ok(c) => {
            c.close().await.ok();
            Ok(())
        }
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => {
            let mut admin = opts
                .database("postgres")
                .connect()
                .await
                .context("connecting to the postgres database to create the engine's")?;
            let quoted = format!("\"{}\"", name.replace('"', "\"\""));
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {quoted}")))
                .execute(&mut admin)
                .await
                .or_else(|e| match &e {
                    // Lost a race with another process creating it: fine.
                    sqlx::Error::Database(d) if d.code().as_deref() == Some("42P04") => {
                        Ok(Default::default())
                    }
                    _ => Err(e),
                })
                .with_context(|| format!("creating the database {name}"))?;
            info!(message = "Created database.", database = %name);
            admin.close().await.ok();
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("connecting to the database {name}")),
    }
}

/// How often the engine's time is re-anchored to its reference.
const CLOCK_SAMPLE: Duration = Duration::from_secs(5);
/// A clock answer slower than this is a poor reference: skipped.
const CLOCK_MAX_RTT: Duration = Duration::from_millis(500);

/// Keeps the engine's time on the database's clock (PostgreSQL) or on the
/// host's while it moves smoothly (SQLite), so a step in the host's clock
/// neither fires every escalation at once nor stalls them
/// ([`wardwatch_core::clock::engine`]).
async fn reference_clock(store: Backend, mut warned: bool, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(CLOCK_SAMPLE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        sample_clock(&store, &mut warned).await;
    }
}

async fn sample_clock(store: &Backend, warned: &mut bool) {
    use wardwatch_core::clock::engine;
    let offset = match store {
        Backend::Pg(pg) => {
            let sent = std::time::Instant::now();
            // Unreachable: the engine's time runs on from the last anchor.
            let Ok(db) = pg.clock().await else { return };
            let received = std::time::Instant::now();
            if received - sent > CLOCK_MAX_RTT {
                return;
            }
            engine::observe_reference(sent, received, db)
        }
        Backend::Sqlite(_) => match engine::follow_host() {
            Ok(()) => 0.0,
            Err(step) => step,
        },
    };
    metrics::gauge!("wardwatch_clock_host_offset_seconds").set(offset);
    if offset.abs() > 2.0 && !*warned {
        let reference = match store {
            Backend::Pg(_) => "keeps the database's time",
            Backend::Sqlite(_) => "keeps its own time on the monotonic clock and does not follow the step (restart to take the host's time)",
        };
        warn!(
            message = format!("This host's clock is {offset:+.1} s from the engine's reference; wardwatch {reference}. Check NTP."),
            offset_seconds = offset
        );
        *warned = true;
    } else if offset.abs() <= 2.0 {
        *warned = false;
    }
}

/// Periodic housekeeping: the retention sweep on plain PostgreSQL (TimescaleDB
/// runs its own policy) and, on both paths, expiry of relative-time anchors.
async fn maintenance(store: Backend, mode: StorageMode, cfg: Config, shutdown: CancellationToken) {
    let mut tick =
        tokio::time::interval(Duration::from_secs(cfg.storage.sweep_interval_secs.max(1)));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(error) = store
            .purge_anchors(wardwatch_core::clock::engine::now() - chrono::Duration::days(7))
            .await
        {
            warn!(message = "Anchor expiry failed.", %error);
        }
        let cutoff = wardwatch_core::clock::engine::now()
            - chrono::Duration::days(cfg.storage.quarantine_retention_days as i64);
        loop {
            match store.purge_quarantine(cutoff, 10_000).await {
                Ok(0) => break,
                Ok(n) => info!(message = "Quarantine expiry deleted old rows.", deleted = n),
                Err(error) => {
                    warn!(message = "Quarantine expiry failed.", %error);
                    break;
                }
            }
        }
        if mode != StorageMode::Plain {
            continue;
        }
        let cutoff = wardwatch_core::clock::engine::now()
            - chrono::Duration::days(cfg.storage.retention_days as i64);
        loop {
            match store.sweep_retention(cutoff, 10_000).await {
                Ok(0) => break,
                Ok(n) => info!(
                    message = "Retention sweep deleted old readings.",
                    deleted = n
                ),
                Err(error) => {
                    warn!(message = "Retention sweep failed.", %error);
                    break;
                }
            }
        }
    }
}
