//! `wardwatch loadgen`: a synthetic fleet of devices for load tests against
//! any wardwatch deployment (ops run it against staging before go-live).
//!
//! It enrols N patients with one device each in the target database,
//! publishes SenML packs over MQTT at a fixed rate per device, then counts
//! what the engine stored to report loss. Readings carry absolute times, so
//! every reading is unique and "stored" can be compared with "published".

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::Utc;
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde::Serialize;

use wardwatch_engine::config::Config;
use wardwatch_ingest::session::SessionConfig;
use wardwatch_store::{Backend, LoadTestStore};

/// The deployment a synthetic fleet or ward runs against: its broker, and
/// its database for enrolment and for counting what was stored.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// Broker to publish to.
    #[arg(
        long,
        env = "WARDWATCH_MQTT_URL",
        default_value = "mqtt://127.0.0.1:1883"
    )]
    pub mqtt_url: String,
    /// CA certificates (PEM) for an `mqtts://` broker; unset: the Mozilla roots.
    #[arg(long, env = "WARDWATCH_MQTT_CA_FILE")]
    pub mqtt_ca_file: Option<std::path::PathBuf>,
    /// The engine's database: a PostgreSQL URL, `sqlite://<file>`, or
    /// empty for the embedded store's file (as the engine reads it).
    #[arg(long, env = "WARDWATCH_DATABASE_URL", default_value = "")]
    pub database_url: String,
}

impl TargetArgs {
    /// The broker's address and, for `mqtts://`, its TLS configuration.
    pub fn broker(
        &self,
    ) -> Result<(
        wardwatch_ingest::session::BrokerAddress,
        Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    )> {
        let addr = SessionConfig::parse_url(&self.mqtt_url)?;
        let tls = wardwatch_engine::config::mqtt_tls(&addr, self.mqtt_ca_file.as_deref())?;
        Ok((addr, tls))
    }

    /// A small pool on the target's database (created and migrated if new).
    pub async fn store(&self) -> Result<Backend> {
        let mut cfg = Config::default();
        cfg.database.url = self.database_url.clone();
        cfg.database.max_connections = 2;
        wardwatch_engine::try_connect(&cfg)
            .await
            .context("connecting to the engine's database")
    }
}

/// Command-line arguments of `wardwatch loadgen`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadgenArgs {
    /// Where to publish and count.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Simulated devices (one patient each).
    #[arg(long, default_value_t = 1000)]
    pub devices: usize,
    /// SenML packs per device per second.
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// Records per SenML pack (one reading each).
    #[arg(long, default_value_t = 10)]
    pub pack_size: usize,
    /// MQTT QoS for publishing (0 or 1).
    #[arg(long, default_value_t = 1)]
    pub qos: u8,
    /// How long to publish, seconds.
    #[arg(long, default_value_t = 30)]
    pub duration: u64,
    /// Publisher connections sharing the devices.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// After publishing, how long to wait without progress for the store to catch up, seconds.
    #[arg(long, default_value_t = 30)]
    pub settle: u64,
    /// Patients' team.
    #[arg(long, default_value = "loadgen")]
    pub team: String,
    /// Prefix of this run's device and patient ids (default: lg-<random>-).
    #[arg(long)]
    pub prefix: Option<String>,
    /// Random seed for values.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print the summary as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// No progress bar (for scripts and CI logs).
    #[arg(long)]
    pub quiet: bool,
    /// Alert latency probes: this many extra patients each publish one
    /// deteriorating set during the run; the time to their first page is
    /// measured at a webhook receiver and on the team's MQTT alert topic.
    #[arg(long, default_value_t = 0)]
    pub probes: usize,
    /// Port of the probes' webhook receiver (the team's first tier must post to it).
    #[arg(long, default_value_t = 18099)]
    pub probe_webhook_port: u16,
    /// Seconds of load before the first probe.
    #[arg(long, default_value_t = 10)]
    pub probe_warmup: u64,
}

/// How long the broker may stay unreachable before the run gives up.
const BROKER_GONE: Duration = Duration::from_secs(120);

/// What a run measured.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// Id prefix of this run.
    pub prefix: String,
    /// Devices simulated.
    pub devices: usize,
    /// Packs published.
    pub messages_published: u64,
    /// Readings published (packs × pack size).
    pub readings_published: u64,
    /// QoS 1 PUBACKs received from the broker.
    pub broker_acks: u64,
    /// Times a connection to the broker failed and was tried again.
    pub broker_reconnect_attempts: u64,
    /// Seconds spent publishing.
    pub publish_seconds: f64,
    /// Readings published per second.
    pub publish_rate: f64,
    /// Readings found in the store for this run's devices.
    pub readings_stored: i64,
    /// Published but not stored.
    pub readings_lost: i64,
    /// Seconds from the first publish until the last stored reading was counted.
    pub end_to_end_seconds: f64,
    /// Readings stored per second over `end_to_end_seconds`.
    pub end_to_end_rate: f64,
    /// Alert latency, when probes ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probes: Option<crate::probe::ProbeSummary>,
}

/// A stable ward: every value inside the NEWS2 0 bands, so the background
/// load raises no flags and probes measure alerts, not an alert storm.
const VITALS: [(&str, &str, f64, f64); 8] = [
    ("heart_rate", "beat/min", 60.0, 90.0),
    ("respiratory_rate", "/min", 12.0, 20.0),
    ("spo2", "%", 96.0, 99.0),
    ("systolic_bp", "mm[Hg]", 112.0, 140.0),
    ("diastolic_bp", "mm[Hg]", 60.0, 90.0),
    ("body_temperature", "Cel", 36.2, 37.8),
    ("blood_glucose", "mmol/L", 4.0, 8.0),
    ("body_weight", "kg", 55.0, 110.0),
];

/// Builds one SenML pack of `size` records at `time_us` (µs since the epoch).
pub fn pack(device: &str, time_us: i64, size: usize, rng: &mut impl Rng) -> Vec<u8> {
    let mut s = String::with_capacity(64 + size * 56);
    let bt = time_us as f64 / 1e6;
    s.push('[');
    for j in 0..size {
        let (name, unit, lo, hi) = VITALS[j % VITALS.len()];
        let v: f64 = rng.random_range(lo..hi);
        // Records beyond the 8 vitals repeat a vital, a millisecond earlier each round.
        let t = -((j / VITALS.len()) as f64) / 1000.0;
        if j == 0 {
            s.push_str(&format!(
                "{{\"bn\":\"urn:dev:loadgen:{device}:\",\"bt\":{bt:.6},\"n\":\"{name}\",\"u\":\"{unit}\",\"v\":{v:.1}}}"
            ));
        } else {
            s.push_str(&format!(
                ",{{\"n\":\"{name}\",\"u\":\"{unit}\",\"v\":{v:.1},\"t\":{t}}}"
            ));
        }
    }
    s.push(']');
    s.into_bytes()
}

/// Runs the load generator and returns its summary.
pub async fn run(args: LoadgenArgs) -> Result<Summary> {
    if args.devices == 0 || args.connections == 0 || args.pack_size == 0 {
        bail!("--devices, --connections and --pack-size must be positive");
    }
    if !(args.rate > 0.0 && args.rate <= 1000.0) {
        bail!("--rate must be in (0, 1000] packs per device per second");
    }
    let qos = match args.qos {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        q => bail!("--qos must be 0 or 1, not {q}"),
    };
    let prefix = args
        .prefix
        .clone()
        .unwrap_or_else(|| format!("lg-{:06x}-", rand::rng().random_range(0..0xff_ffffu32)));
    let store = args.target.store().await?;
    let pairs: Vec<(String, String)> = (0..args.devices)
        .map(|i| (format!("{prefix}p{i}"), format!("{prefix}d{i}")))
        .collect();
    store
        .enrol_bulk(
            &args.team,
            &pairs,
            Utc::now() - chrono::Duration::minutes(10),
        )
        .await
        .context("enrolling load-generator patients and devices")?;
    let probe_pairs: Vec<(String, String)> = (0..args.probes)
        .map(|i| (format!("{prefix}probe{i}"), format!("{prefix}probed{i}")))
        .collect();
    if !probe_pairs.is_empty() {
        store
            .enrol_bulk(
                &args.team,
                &probe_pairs,
                Utc::now() - chrono::Duration::minutes(10),
            )
            .await
            .context("enrolling probe patients")?;
    }

    let (addr, tls) = args.target.broker()?;
    let (host, port, creds) = (addr.host, addr.port, addr.credentials);
    let published = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let reconnects = Arc::new(AtomicU64::new(0));
    let total_expected = (args.devices as f64 * args.rate * args.duration as f64) as u64;
    let bar = if args.quiet || args.json {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new(total_expected * args.pack_size as u64);
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} readings published ({per_sec})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    };

    let probes = if probe_pairs.is_empty() {
        None
    } else {
        let run_for = args.duration.saturating_sub(args.probe_warmup).max(1);
        let every = Duration::from_secs_f64(run_for as f64 / probe_pairs.len() as f64);
        Some(
            crate::probe::Probes::start(crate::probe::ProbePlan {
                broker: (host.clone(), port, creds.clone()),
                tls: tls.clone(),
                devices: probe_pairs.clone(),
                team: args.team.clone(),
                webhook_port: args.probe_webhook_port,
                warmup: Duration::from_secs(args.probe_warmup),
                every,
                prefix: prefix.clone(),
            })
            .await?,
        )
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.connections {
        let devices: Vec<String> = pairs
            .iter()
            .enumerate()
            .filter(|(i, _)| i % args.connections == c)
            .map(|(_, (_, d))| d.clone())
            .collect();
        if devices.is_empty() {
            continue;
        }
        let (client_id, identity) =
            wardwatch_engine::credentials::connection_identity(&creds, &prefix, &format!("pub{c}"));
        let mut opts = MqttOptions::new(client_id, host.clone(), port);
        opts.set_keep_alive(Duration::from_secs(30))
            .set_inflight(1000)
            .set_request_channel_capacity(4096)
            .set_max_packet_size(1 << 20, 1 << 20)
            // A persistent session, as a device should keep: after a broker
            // restart rumqttc resends unacknowledged packs only when the
            // broker says the session is present (with a clean session it
            // drops them, and a run measuring a broker fault counts them lost).
            .set_clean_session(false);
        if let Some((u, p)) = identity {
            opts.set_credentials(u, p);
        }
        wardwatch_ingest::tls::apply(&mut opts, tls.clone());
        let (client, mut eventloop) = AsyncClient::new(opts, 4096);
        let acked_c = acked.clone();
        let reconnects_c = reconnects.clone();
        let poller = tokio::spawn(async move {
            // A broker restart is a fault a run may be measuring: keep
            // polling (rumqttc reconnects and resends what was in flight)
            // and give up only when the broker stays away.
            let mut failing_since: Option<Instant> = None;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        acked_c.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Event::Incoming(Packet::ConnAck(_))) => failing_since = None,
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => {
                        let since = *failing_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > BROKER_GONE {
                            return Err(anyhow::Error::new(e).context("the broker stayed away"));
                        }
                        reconnects_c.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                }
            }
        });
        let args = args.clone();
        let published = published.clone();
        let bar = bar.clone();
        let publisher = tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed.wrapping_add(c as u64));
            let per_sec = devices.len() as f64 * args.rate;
            let end = Instant::now() + Duration::from_secs(args.duration);
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let mut next = 0usize;
            let start = Instant::now();
            let mut sent = 0u64;
            while Instant::now() < end {
                tick.tick().await;
                let due = start.elapsed().as_secs_f64() * per_sec;
                while (sent as f64) < due {
                    let device = &devices[next % devices.len()];
                    next += 1;
                    let now_us = Utc::now().timestamp_micros();
                    let payload = pack(device, now_us, args.pack_size, &mut rng);
                    client
                        .publish(
                            format!("wardwatch/v1/devices/{device}/readings"),
                            qos,
                            false,
                            payload,
                        )
                        .await
                        .context("publishing")?;
                    sent += 1;
                    published.fetch_add(1, Ordering::Relaxed);
                    bar.inc(args.pack_size as u64);
                }
            }
            anyhow::Ok((client, sent))
        });
        tasks.push((publisher, poller));
    }
    let mut clients = Vec::new();
    let mut pollers = Vec::new();
    for (p, poller) in tasks {
        let (client, _) = p.await.context("publisher task")??;
        clients.push(client);
        pollers.push(poller);
    }
    let publish_seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let messages = published.load(Ordering::Relaxed);
    // Wait for the broker to confirm every QoS 1 publish.
    if qos == QoS::AtLeastOnce {
        let wait_until = Instant::now() + Duration::from_secs(args.settle.max(5));
        while acked.load(Ordering::Relaxed) < messages && Instant::now() < wait_until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for c in &clients {
        let _ = c.disconnect().await;
    }
    for p in pollers {
        let _ = tokio::time::timeout(Duration::from_secs(5), p).await;
    }
    let readings_published = messages * args.pack_size as u64;
    let patients: Vec<String> = pairs.iter().map(|(p, _)| p.clone()).collect();
    let (stored, e2e) = wait_for_store(
        &store,
        &patients,
        readings_published as i64,
        args.settle,
        started,
    )
    .await?;
    let probes = match probes {
        Some(p) => Some(p.finish(Duration::from_secs(args.settle)).await?),
        None => None,
    };
    let summary = Summary {
        prefix,
        devices: args.devices,
        messages_published: messages,
        readings_published,
        broker_acks: acked.load(Ordering::Relaxed),
        broker_reconnect_attempts: reconnects.load(Ordering::Relaxed),
        publish_seconds,
        publish_rate: readings_published as f64 / publish_seconds,
        readings_stored: stored,
        readings_lost: readings_published as i64 - stored,
        end_to_end_seconds: e2e,
        end_to_end_rate: stored as f64 / e2e.max(1e-9),
        probes,
    };
    store.close().await;
    Ok(summary)
}

/// Polls the store until every reading is there or nothing changed for `settle` seconds.
async fn wait_for_store(
    store: &Backend,
    patients: &[String],
    expected: i64,
    settle: u64,
    started: Instant,
) -> Result<(i64, f64)> {
    let mut last = -1i64;
    let mut last_change = Instant::now();
    let mut last_change_at = started.elapsed().as_secs_f64();
    loop {
        let n = store.count_readings_of_patients(patients).await?;
        if n != last {
            last = n;
            last_change = Instant::now();
            last_change_at = started.elapsed().as_secs_f64();
        }
        if n >= expected || last_change.elapsed() > Duration::from_secs(settle) {
            return Ok((n, last_change_at));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

impl Summary {
    /// The human summary.
    pub fn print(&self) {
        println!("run prefix:          {}", self.prefix);
        println!("devices:             {}", self.devices);
        println!("messages published:  {}", self.messages_published);
        println!("readings published:  {}", self.readings_published);
        println!("broker acks (QoS 1): {}", self.broker_acks);
        println!(
            "publish rate:        {:.0} readings/s over {:.1} s",
            self.publish_rate, self.publish_seconds
        );
        println!("readings stored:     {}", self.readings_stored);
        println!("readings lost:       {}", self.readings_lost);
        println!(
            "end-to-end:          {:.0} readings/s stored ({:.1} s from first publish to last row)",
            self.end_to_end_rate, self.end_to_end_seconds
        );
        if let Some(p) = &self.probes {
            for (name, l) in [("webhook", &p.webhook), ("mqtt", &p.mqtt)] {
                println!(
                    "alert latency ({name}): {}/{} probes, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                    l.received, p.sent, l.p50_ms, l.p99_ms, l.max_ms
                );
            }
        }
    }
}
