//! `wardwatch demo`: the engine, its embedded broker (when no `[mqtt] url`
//! is set), the API and ward board, and a simulated ward, in one process.
//! It prints the board's address and a sign-in token for a demo nurse on
//! the ward's team, and stops cleanly on Ctrl-C or SIGTERM: the simulator
//! first, then, once the engine has received what was published, the
//! engine (which commits and acknowledges what it holds).

use std::time::Duration;
use wardwatch_store::prelude::*;

use anyhow::{Context, Result};
use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::simulate::{self, SimulateArgs};
use wardwatch_engine::Config;

/// Command-line arguments of `wardwatch demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Simulated patients.
    #[arg(long, default_value_t = 20)]
    pub patients: usize,
    /// Seed of the simulated ward.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Seconds between a patient's readings.
    #[arg(long, default_value_t = 5.0)]
    pub interval_secs: f64,
    /// Seconds until the scripted deteriorations begin.
    #[arg(long, default_value_t = 20)]
    pub onset_secs: i64,
    /// Seconds a deterioration takes to reach its worst.
    #[arg(long, default_value_t = 40)]
    pub ramp_secs: i64,
}

/// The team the demo ward and its nurse belong to.
const TEAM: &str = "ward-a";
const NURSE: &str = "demo-nurse";

/// Runs the demo until `stop`.
pub async fn run(args: DemoArgs, mut cfg: Config, stop: CancellationToken) -> Result<()> {
    if !cfg.embedded_broker() {
        anyhow::bail!(
            "the demo publishes its simulated ward on the engine's embedded broker: unset \
             WARDWATCH_MQTT_URL (and [mqtt] url); against a real broker run `wardwatch serve` \
             and `wardwatch simulate` with a staging publisher's credentials"
        );
    }
    // The simulated ward connects as a user of its own.
    cfg.mqtt.embedded.local_publisher = Some((
        "wardwatch-demo".into(),
        wardwatch_engine::credentials::random_password(),
    ));
    // `serve` waits for a database that is down (production: the broker
    // holds the readings meanwhile); a demo should say at once what it needs.
    // The embedded store (no URL) needs nothing.
    match tokio::time::timeout(Duration::from_secs(10), wardwatch_engine::try_connect(&cfg)).await {
        Ok(Ok(store)) => store.close().await,
        Ok(Err(e)) => {
            return Err(anyhow::Error::from(e).context(format!(
                "the demo cannot open its database {}: start PostgreSQL, or leave \
                 [database] url empty (and WARDWATCH_DATABASE_URL unset) for the embedded store",
                redact(&cfg.database.url)
            )))
        }
        Err(_) => anyhow::bail!(
            "no answer from the database {} within 10 s; set WARDWATCH_DATABASE_URL",
            redact(&cfg.database.url)
        ),
    }
    let engine_stop = CancellationToken::new();
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let mut engine = tokio::spawn(
        wardwatch_engine::Engine::new(cfg.clone())
            .announce_to(bound_tx)
            .run(engine_stop.clone()),
    );
    // The engine's real addresses (a configured port 0 is a free port).
    let bound = tokio::select! {
        b = bound_rx => b.ok(),
        ended = &mut engine => {
            return match ended {
                Ok(Err(engine_error)) => Err(engine_error.into()),
                _ => Err(anyhow::anyhow!("the engine stopped while starting")),
            };
        }
    };
    let Some(bound) = bound else {
        engine_stop.cancel();
        return match engine.await {
            Ok(Err(engine_error)) => Err(engine_error.into()),
            _ => Err(anyhow::anyhow!("the engine stopped while starting")),
        };
    };
    let http = bound.http;
    if let Err(e) = wait_until_healthy(http, &stop, &engine).await {
        engine_stop.cancel();
        return match engine.await {
            Ok(Err(engine_error)) => Err(engine_error.into()),
            _ => Err(e),
        };
    }
    let store = wardwatch_engine::try_connect(&cfg).await?;
    store
        .upsert_user(NURSE, "nurse", None, &[TEAM.to_string()])
        .await
        .context("creating the demo nurse")?;
    let token = wardwatch_api::new_token();
    store
        .insert_token(
            NURSE,
            &wardwatch_api::token_hash(&token),
            Utc::now() + chrono::Duration::days(1),
        )
        .await?;
    store.close().await;
    let board = match http.ip() {
        ip if ip.is_unspecified() => format!("http://127.0.0.1:{}/", http.port()),
        _ => format!("http://{http}/"),
    };
    println!("Ward board: {board}");
    println!("Sign in as {NURSE} (team {TEAM}) with this token, valid for 24 h:");
    println!("{token}");
    println!("Stop with Ctrl-C.");

    let sim_stop = CancellationToken::new();
    let sim_args = SimulateArgs {
        target: crate::loadgen::TargetArgs {
            mqtt_url: bound
                .publisher_url
                .clone()
                .context("the embedded broker gave no publisher address")?,
            mqtt_ca_file: None,
            database_url: cfg.database.url.clone(),
        },
        patients: args.patients,
        seed: args.seed,
        interval_secs: args.interval_secs,
        duration_secs: 0,
        onset_secs: args.onset_secs,
        ramp_secs: args.ramp_secs,
        artefact_rate: 0.01,
        dropout_rate: 0.02,
        team: TEAM.into(),
        prefix: "demo-".into(),
        json: false,
    };
    let mut sim = tokio::spawn(simulate::run(sim_args, sim_stop.clone()));
    // The simulator runs until stopped; if it ends first, the board would
    // stay empty for no visible reason: stop the demo and say why.
    let ended_early = tokio::select! {
        _ = stop.cancelled() => None,
        ended = &mut sim => Some(ended),
    };
    if let Some(ended) = ended_early {
        engine_stop.cancel();
        let _ = engine.await;
        return match ended {
            Ok(Ok(_)) => Err(anyhow::anyhow!("the simulator stopped on its own")),
            Ok(Err(e)) => Err(e.context("the simulator failed")),
            Err(e) => Err(anyhow::anyhow!("the simulator task failed: {e}")),
        };
    }
    info!(message = "Stopping the demo: the simulator first, then the engine.");
    sim_stop.cancel();
    let published = match sim.await {
        Ok(Ok(s)) => s.messages_published,
        Ok(Err(e)) => {
            warn!(message = "The simulator failed.", error = format!("{e:#}"));
            0
        }
        Err(e) => {
            warn!(message = "The simulator task failed.", error = %e);
            0
        }
    };
    // The embedded broker keeps messages in memory: let the engine take,
    // commit and acknowledge (acknowledged only after commit) what was
    // published before it stops (bounded wait).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let received = counter(http, "wardwatch_messages_received_total").await;
        let acked = counter(http, "wardwatch_acks_sent_total").await;
        if (received >= published as f64 && acked >= received)
            || tokio::time::Instant::now() >= deadline
        {
            println!(
                "Demo stopped: {published} messages published, {received} received by the engine, \
                 {acked} committed and acknowledged."
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    engine_stop.cancel();
    Ok(engine.await.context("engine task")??)
}

/// Polls `/healthz` until the engine answers 200; fails if it exits first.
async fn wait_until_healthy(
    http: std::net::SocketAddr,
    stop: &CancellationToken,
    engine: &tokio::task::JoinHandle<wardwatch_engine::Result<()>>,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        if engine.is_finished() {
            anyhow::bail!("the engine stopped while starting");
        }
        if stop.is_cancelled() {
            anyhow::bail!("stopped before the engine was ready");
        }
        if get(http, "/healthz").await.is_some_and(|(s, _)| s == 200) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("the engine did not become healthy within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A counter from the engine's own metrics page (0 until it appears).
async fn counter(http: std::net::SocketAddr, name: &str) -> f64 {
    let Some((_, body)) = get(http, "/metrics").await else {
        return 0.0;
    };
    body.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum()
}

/// A minimal HTTP/1.1 GET on loopback (no client library needed for two probes).
async fn get(addr: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = if addr.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let mut s = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// A database URL without its password, for messages.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}
