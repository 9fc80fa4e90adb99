//! `wardwatch simulate`: a synthetic virtual ward against any broker and
//! store (a demo, or ops checking a staging deployment end to end). It
//! enrols the ward's patients (pathways, SpO2 Scale 2 for COPD, devices on
//! loan), sends heart-failure weight history, then publishes each
//! patient's readings every interval over MQTT (QoS 1) until stopped.
//! The values come from `wardwatch-sim`: seeded and reproducible.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use chrono::Utc;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::info;
use wardwatch_core::{DeviceId, PatientId};
use wardwatch_sim::{Ward, WardPlan};
use wardwatch_store::rules::Setting;
use wardwatch_store::{Backend, RecordStore, RulesStore, ViewStore};

use crate::loadgen::TargetArgs;

/// Command-line arguments of `wardwatch simulate`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Where to publish and enrol.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Patients (every block of ten has one sepsis, one COPD exacerbation
    /// and one heart-failure weight gain; the rest are stable).
    #[arg(long, default_value_t = 20)]
    pub patients: usize,
    /// Seed: the same seed gives the same ward and the same values.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Seconds between a patient's readings (a real ward: hours; a demo: seconds).
    #[arg(long, default_value_t = 5.0)]
    pub interval_secs: f64,
    /// Stop after this many seconds (0: run until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    pub duration_secs: u64,
    /// Seconds from the start until scripted deteriorations begin.
    #[arg(long, default_value_t = 20)]
    pub onset_secs: i64,
    /// Seconds a deterioration takes to reach its worst.
    #[arg(long, default_value_t = 40)]
    pub ramp_secs: i64,
    /// Chance that a reading set carries a probe-off artefact (quarantined).
    #[arg(long, default_value_t = 0.01)]
    pub artefact_rate: f64,
    /// Chance that a device misses a reading.
    #[arg(long, default_value_t = 0.02)]
    pub dropout_rate: f64,
    /// The ward's team.
    #[arg(long, default_value = "ward-a")]
    pub team: String,
    /// Prefix of patient and device ids.
    #[arg(long, default_value = "sim-")]
    pub prefix: String,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// What a run did.
#[derive(Debug, Serialize)]
pub struct SimSummary {
    /// Patients simulated.
    pub patients: usize,
    /// Patients with a scripted deterioration (they should alert).
    pub deteriorating: Vec<String>,
    /// Stable patients (they should not).
    pub stable: Vec<String>,
    /// Messages published.
    pub messages_published: u64,
    /// Messages the broker confirmed (QoS 1).
    pub broker_acks: u64,
}

impl SimSummary {
    /// Prints the summary for a person.
    pub fn print(&self) {
        println!(
            "simulated {} patients: {} messages published, {} confirmed by the broker",
            self.patients, self.messages_published, self.broker_acks
        );
        println!("expected to alert: {}", self.deteriorating.join(", "));
    }
}

impl SimulateArgs {
    fn plan(&self) -> Result<WardPlan> {
        if self.patients == 0 || self.patients > 100_000 {
            bail!("--patients must be between 1 and 100000");
        }
        if !(self.interval_secs >= 0.1 && self.interval_secs <= 86_400.0) {
            bail!("--interval-secs must be between 0.1 and 86400");
        }
        for (name, rate) in [
            ("--artefact-rate", self.artefact_rate),
            ("--dropout-rate", self.dropout_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                bail!("{name} must be between 0 and 1");
            }
        }
        Ok(WardPlan {
            seed: self.seed,
            patients: self.patients,
            prefix: self.prefix.clone(),
            onset: chrono::Duration::seconds(self.onset_secs.max(0)),
            ramp: chrono::Duration::seconds(self.ramp_secs.max(1)),
            artefact_rate: self.artefact_rate,
            dropout_rate: self.dropout_rate,
        })
    }
}

/// Enrols the ward: each patient on their pathway, COPD on SpO2 Scale 2
/// (audited as the simulator's decision), each device lent from four days
/// ago so the weight history is attributed. Safe to repeat.
pub async fn enrol(store: &Backend, ward: &Ward, team: &str) -> Result<()> {
    let from = ward.started() - chrono::Duration::days(4);
    for p in ward.patients() {
        let patient = PatientId::new(p.patient_id.clone())?;
        let device = DeviceId::new(p.device_id.clone())?;
        // Repeats find the patient already enrolled and leave them be.
        if store.patient_view(&p.patient_id).await?.is_none() {
            let enrolment = wardwatch_store::records::Enrolment {
                id: patient.clone(),
                team: team.to_string(),
                pathway: p.pathway.to_string(),
                nhs_number: None,
                date_of_birth: None,
            };
            store
                .enrol_patient(&enrolment, "wardwatch-simulator")
                .await
                .with_context(|| format!("enrolling {}", p.patient_id))?;
        }
        let view = store.patient_view(&p.patient_id).await?;
        if p.spo2_scale() == 2 && view.as_ref().is_some_and(|v| v.spo2_scale != 2) {
            store
                .set_patient(
                    &patient,
                    Setting::CarePlanOxygen(false),
                    "wardwatch-simulator",
                    "simulated ward: on air at home",
                )
                .await?;
            store
                .set_patient(
                    &patient,
                    Setting::Spo2Scale(2),
                    "wardwatch-simulator",
                    "simulated ward: COPD with an 88-92% target",
                )
                .await?;
        }
        let lent = store.device(&p.device_id).await?;
        if lent.and_then(|d| d.patient_id).as_deref() != Some(p.patient_id.as_str()) {
            store
                .assign_device(&device, &patient, from)
                .await
                .with_context(|| format!("lending {} to {}", p.device_id, p.patient_id))?;
        }
    }
    Ok(())
}

/// Runs the simulator until `duration_secs` or `stop`.
pub async fn run(args: SimulateArgs, stop: CancellationToken) -> Result<SimSummary> {
    let mut ward = Ward::new(args.plan()?, Utc::now());
    let store = args.target.store().await?;
    enrol(&store, &ward, &args.team).await?;
    store.close().await;

    let (addr, tls) = args.target.broker()?;
    let (host, port, creds) = (addr.host, addr.port, addr.credentials);
    // As a load generator's first connection (`staging-publisher` users).
    let (client_id, creds) = wardwatch_engine::credentials::connection_identity(
        &creds,
        &format!("{}sim-{}-", args.prefix, args.seed),
        "pub0",
    );
    let mut opts = MqttOptions::new(client_id, host, port);
    opts.set_keep_alive(Duration::from_secs(30))
        .set_inflight(100)
        .set_max_packet_size(1 << 20, 1 << 20)
        // Persistent, as a real kit's: unacknowledged readings survive a
        // broker restart (rumqttc drops them on a fresh clean session).
        .set_clean_session(false);
    if let Some((u, p)) = &creds {
        opts.set_credentials(u.clone(), p.clone());
    }
    wardwatch_ingest::tls::apply(&mut opts, tls);
    let (client, mut eventloop) = AsyncClient::new(opts, 1024);
    let acked = Arc::new(AtomicU64::new(0));
    let acked_c = acked.clone();
    let poller = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    acked_c.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
                Ok(_) => {}
                // rumqttc reconnects on the next poll; QoS 1 messages in
                // flight are resent with it.
                Err(e) => {
                    tracing::warn!(message = "Simulator's broker connection failed; retrying.", error = %e);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });

    let mut published = 0u64;
    for m in ward.history(3) {
        client
            .publish(m.topic, QoS::AtLeastOnce, false, m.payload)
            .await?;
        published += 1;
    }
    info!(
        message = "Simulated ward running.",
        patients = ward.patients().len(),
        interval_secs = args.interval_secs,
        seed = args.seed
    );
    let mut tick = tokio::time::interval(Duration::from_secs_f64(args.interval_secs));
    let end = (args.duration_secs > 0)
        .then(|| tokio::time::Instant::now() + Duration::from_secs(args.duration_secs));
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        if end.is_some_and(|e| tokio::time::Instant::now() >= e) {
            break;
        }
        for m in ward.tick(Utc::now()) {
            client
                .publish(m.topic, QoS::AtLeastOnce, false, m.payload)
                .await?;
            published += 1;
        }
    }
    // Let the broker confirm what was sent before leaving.
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while acked.load(Ordering::Relaxed) < published && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), poller).await;
    let names = |want: bool| -> Vec<String> {
        ward.patients()
            .iter()
            .filter(|p| p.scenario.deteriorates() == want)
            .map(|p| format!("{} ({})", p.patient_id, p.scenario.as_str()))
            .collect()
    };
    Ok(SimSummary {
        patients: ward.patients().len(),
        deteriorating: names(true),
        stable: names(false),
        messages_published: published,
        broker_acks: acked.load(Ordering::Relaxed),
    })
}
