//! Alert latency probes for `wardwatch loadgen --probes N`: while the
//! background fleet publishes stable readings, each probe patient publishes
//! one deteriorating set of observations, and the time from that publish to
//! the first page is measured at a local webhook receiver and on the team's
//! MQTT alert topic (hdrhistogram, microseconds).
//!
//! The engine's team policy must send its first tier to the receiver
//! (`scripts/bench-e2e.sh` writes such a team file); the receiver checks
//! nothing but the JSON body, since only arrival time matters here.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::Utc;
use hdrhistogram::Histogram;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde::Serialize;

/// Latency figures of one path.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    /// Probes that arrived.
    pub received: u64,
    /// Median, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
    /// Slowest, milliseconds.
    pub max_ms: f64,
}

/// What the probes measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProbeSummary {
    /// Probes published.
    pub sent: u64,
    /// Publish → webhook receipt.
    pub webhook: Latency,
    /// Publish → MQTT alert received.
    pub mqtt: Latency,
}

/// One path's latencies, and the probes already counted on it (the first
/// page per probe counts; repeats do not).
type Path = Mutex<(Histogram<u64>, HashSet<String>)>;

/// Publish times by probe patient, and the two paths.
#[derive(Clone)]
struct Clocks {
    sent: Arc<Mutex<HashMap<String, Instant>>>,
    webhook: Arc<Path>,
    mqtt: Arc<Path>,
}

fn histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 600_000_000, 3).context("histogram")
}

impl Clocks {
    fn new() -> Result<Self> {
        Ok(Self {
            sent: Arc::default(),
            webhook: Arc::new(Mutex::new((histogram()?, HashSet::new()))),
            mqtt: Arc::new(Mutex::new((histogram()?, HashSet::new()))),
        })
    }

    /// Records the first page for a probe patient on one path.
    fn arrived(&self, path: &Path, body: &[u8]) {
        let now = Instant::now();
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
            return;
        };
        if v["purpose"] != "page" {
            return;
        }
        let Some(patient) = v["patient_id"].as_str() else {
            return;
        };
        let Some(sent) = self.sent.lock().ok().and_then(|m| m.get(patient).copied()) else {
            return;
        };
        if let Ok(mut g) = path.lock() {
            if g.1.insert(patient.to_string()) {
                let us = now.duration_since(sent).as_micros();
                let _ = g.0.record(u64::try_from(us).unwrap_or(u64::MAX).max(1));
            }
        }
    }
}

fn figures(h: &Histogram<u64>) -> Latency {
    let ms = |us: u64| us as f64 / 1000.0;
    Latency {
        received: h.len(),
        p50_ms: ms(h.value_at_quantile(0.5)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        max_ms: ms(h.max()),
    }
}

/// A deteriorating set of observations (NEWS2 9: an emergency page).
pub fn septic_pack(time_us: i64) -> Vec<u8> {
    let bt = time_us as f64 / 1e6;
    format!(
        r#"[{{"bt":{bt:.6},"n":"respiratory_rate","u":"/min","v":25}},{{"n":"spo2","u":"%","v":94}},{{"n":"systolic_bp","u":"mm[Hg]","v":100}},{{"n":"heart_rate","u":"/min","v":115}},{{"n":"body_temperature","u":"Cel","v":38.6}},{{"n":"consciousness","vs":"A"}}]"#
    )
    .into_bytes()
}

/// Running probes.
pub struct Probes {
    clocks: Clocks,
    task: tokio::task::JoinHandle<Result<u64>>,
}

/// Where and how to probe.
pub struct ProbePlan {
    /// Broker host, port, credentials.
    pub broker: (String, u16, Option<(String, String)>),
    /// TLS for an `mqtts://` broker.
    pub tls: Option<std::sync::Arc<tokio_rustls::rustls::ClientConfig>>,
    /// The probe patients' devices (already enrolled).
    pub devices: Vec<(String, String)>,
    /// The patients' team (its alert topic is watched).
    pub team: String,
    /// The receiver's port (the team's first tier posts there).
    pub webhook_port: u16,
    /// Wait this long before the first probe.
    pub warmup: Duration,
    /// Space between probes.
    pub every: Duration,
    /// Client id prefix.
    pub prefix: String,
}

impl Probes {
    /// Starts the receiver, the MQTT watcher and the probe publisher.
    pub async fn start(plan: ProbePlan) -> Result<Self> {
        let clocks = Clocks::new()?;
        // The webhook receiver.
        let c = clocks.clone();
        let app = axum::Router::new().route(
            "/{*path}",
            axum::routing::post(move |body: axum::body::Bytes| {
                let c = c.clone();
                async move {
                    c.arrived(&c.webhook, &body);
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", plan.webhook_port))
            .await
            .with_context(|| format!("binding the probe receiver on port {}", plan.webhook_port))?;
        tokio::spawn(async move { axum::serve(listener, app).await });

        let (host, port, creds) = plan.broker.clone();
        let options = |role: &str| {
            let (id, identity) =
                wardwatch_engine::credentials::connection_identity(&creds, &plan.prefix, role);
            let mut o = MqttOptions::new(id, host.clone(), port);
            o.set_keep_alive(Duration::from_secs(30));
            if let Some((u, p)) = identity {
                o.set_credentials(u, p);
            }
            wardwatch_ingest::tls::apply(&mut o, plan.tls.clone());
            o
        };
        // The nurse app's view: the team's alert topic.
        let (watcher, mut watch_loop) = AsyncClient::new(options("watch"), 64);
        watcher
            .subscribe(
                format!("wardwatch/v1/teams/{}/alerts", plan.team),
                QoS::AtLeastOnce,
            )
            .await
            .context("subscribing to the team's alerts")?;
        let c = clocks.clone();
        tokio::spawn(async move {
            let _keep = watcher;
            loop {
                match watch_loop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => c.arrived(&c.mqtt, &p.payload),
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        // The probes themselves, on their own connection.
        let (client, mut probe_loop) = AsyncClient::new(options("probe"), 64);
        tokio::spawn(async move {
            loop {
                if probe_loop.poll().await.is_err() {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        });
        let sent = clocks.sent.clone();
        let task = tokio::spawn(async move {
            tokio::time::sleep(plan.warmup).await;
            let mut n = 0u64;
            for (patient, device) in &plan.devices {
                let payload = septic_pack(Utc::now().timestamp_micros());
                if let Ok(mut m) = sent.lock() {
                    m.insert(patient.clone(), Instant::now());
                }
                client
                    .publish(
                        format!("wardwatch/v1/devices/{device}/readings"),
                        QoS::AtLeastOnce,
                        false,
                        payload,
                    )
                    .await
                    .context("publishing a probe")?;
                n += 1;
                tokio::time::sleep(plan.every).await;
            }
            Ok(n)
        });
        Ok(Self { clocks, task })
    }

    /// Waits for the probes to be sent and up to `settle` for their pages.
    pub async fn finish(self, settle: Duration) -> Result<ProbeSummary> {
        let sent = self.task.await.context("probe task")??;
        let deadline = Instant::now() + settle;
        loop {
            let (w, m) = (
                self.clocks.webhook.lock().map(|g| g.0.len()).unwrap_or(0),
                self.clocks.mqtt.lock().map(|g| g.0.len()).unwrap_or(0),
            );
            if (w >= sent && m >= sent) || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let webhook = self
            .clocks
            .webhook
            .lock()
            .map(|g| figures(&g.0))
            .unwrap_or_default();
        let mqtt = self
            .clocks
            .mqtt
            .lock()
            .map(|g| figures(&g.0))
            .unwrap_or_default();
        Ok(ProbeSummary {
            sent,
            webhook,
            mqtt,
        })
    }
}
