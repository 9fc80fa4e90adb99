//! Logging and metrics set-up, and the operational events of the ingest
//! pipeline: each event logs and counts in one place so names never drift.

use std::io::IsTerminal;
use std::time::Duration;

use crate::error::{Context, Result};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;
use wardwatch_core::QuarantineReason;
use wardwatch_store::{BatchOutcome, StoreError};

use crate::config::LogFormat;

/// Installs the tracing subscriber (human or JSON lines on stderr).
pub fn init_tracing(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // A second init (tests, repeated commands) is harmless: keep the first.
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Human => builder.try_init(),
    };
}

/// Installs the Prometheus recorder and describes wardwatch's metrics.
pub fn init_metrics() -> Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("wardwatch_batch_commit_seconds".into()),
            &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ],
        )
        .context("metric buckets")?
        .set_buckets_for_metric(
            Matcher::Suffix("_latency_seconds".into()),
            &[
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ],
        )
        .context("metric buckets")?
        .set_buckets_for_metric(
            Matcher::Full("wardwatch_time_to_acknowledge_seconds".into()),
            &[
                30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14_400.0,
            ],
        )
        .context("metric buckets")?
        .set_buckets_for_metric(
            Matcher::Full("wardwatch_delivery_seconds".into()),
            &[
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ],
        )
        .context("metric buckets")?
        .set_buckets_for_metric(
            Matcher::Full("wardwatch_batch_rows".into()),
            &[1.0, 10.0, 100.0, 500.0, 1000.0, 2500.0, 5000.0, 10_000.0],
        )
        .context("metric buckets")?
        .install_recorder()
        .context("installing the Prometheus recorder")?;
    describe();
    Ok(handle)
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "wardwatch_messages_received_total",
        "MQTT PUBLISH packets received."
    );
    describe_counter!(
        "wardwatch_readings_stored_total",
        "New rows committed to readings."
    );
    describe_counter!(
        "wardwatch_readings_duplicate_total",
        "Readings already stored (redeliveries), skipped by the unique key."
    );
    describe_counter!(
        "wardwatch_quarantined_total",
        "Refused inputs committed to the quarantine table, by reason."
    );
    describe_histogram!(
        "wardwatch_batch_commit_seconds",
        Unit::Seconds,
        "Time to commit one batch (readings and quarantine rows, one transaction)."
    );
    describe_histogram!("wardwatch_batch_rows", "Rows per committed batch.");
    describe_counter!(
        "wardwatch_store_errors_total",
        "Failed batch commits, by kind (transient: retried; refused: bisected)."
    );
    describe_gauge!(
        "wardwatch_ingest_queue_depth",
        "Deliveries waiting for decoding (bounded by the broker's in-flight window)."
    );
    describe_gauge!(
        "wardwatch_acks_pending",
        "Messages received but not yet acknowledged."
    );
    describe_counter!(
        "wardwatch_acks_sent_total",
        "PUBACKs handed to the MQTT client."
    );
    describe_counter!(
        "wardwatch_mqtt_connections_total",
        "Successful MQTT connections."
    );
    describe_counter!(
        "wardwatch_mqtt_connection_errors_total",
        "MQTT connection failures and drops."
    );
    describe_gauge!(
        "wardwatch_escalation_checked_at_seconds",
        Unit::Seconds,
        "Unix time up to which every due escalation has been made (the last completed escalation pass)."
    );
    // Pre-register every reason so dashboards and alerts see zeros, not gaps.
    for r in QuarantineReason::ALL {
        metrics::counter!("wardwatch_quarantined_total", "reason" => r.as_str()).increment(0);
    }
    // Every counter exists from the start, at zero: a dashboard sees a
    // flat line rather than a gap, and a check that reads a counter can
    // tell "none yet" from "not exported" (a missing series is an error).
    for name in [
        "wardwatch_messages_received_total",
        "wardwatch_readings_stored_total",
        "wardwatch_readings_duplicate_total",
        "wardwatch_acks_sent_total",
        "wardwatch_acks_dropped_on_reconnect_total",
        "wardwatch_mqtt_connections_total",
        "wardwatch_mqtt_connection_errors_total",
        "wardwatch_mqtt_subscription_failures_total",
        "wardwatch_ingest_task_failures_total",
        "wardwatch_alerting_task_failures_total",
        "wardwatch_alert_flag_events_total",
        "wardwatch_alert_flags_snoozed_total",
        "wardwatch_escalations_total",
        "wardwatch_digests_total",
        "wardwatch_undeliverable_total",
        "wardwatch_rules_invalid_limits_total",
        "wardwatch_rules_readings_total",
        "wardwatch_rules_replayed_readings_total",
        "wardwatch_rules_unknown_patient_total",
        "wardwatch_rules_missing_pathway_total",
        "wardwatch_rules_flags_emitted_total",
        "wardwatch_flags_set_aside_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    describe_gauge!(
        "wardwatch_rules_clock_seconds",
        Unit::Seconds,
        "Unix time up to which every rules shard has decided its time-driven rules (no_data)."
    );
    // Gauges read 0 until their part of the engine first reports.
    for name in [
        "wardwatch_escalation_checked_at_seconds",
        "wardwatch_rules_clock_seconds",
        "wardwatch_rules_patients",
        "wardwatch_rules_settings_version",
        "wardwatch_acks_pending",
        "wardwatch_ingest_queue_depth",
    ] {
        metrics::gauge!(name).set(0.0);
    }
    for kind in ["transient", "refused"] {
        metrics::counter!("wardwatch_store_errors_total", "kind" => kind).increment(0);
    }
    for outcome in ["applied", "refused"] {
        metrics::counter!("wardwatch_rules_reloads_total", "outcome" => outcome).increment(0);
    }
    for outcome in ["ok", "error"] {
        metrics::counter!("wardwatch_flag_writes_total", "outcome" => outcome).increment(0);
    }
    for reason in ["rate_limited", "missing", "invalid"] {
        metrics::counter!("wardwatch_api_auth_failures_total", "reason" => reason).increment(0);
    }
    metrics::counter!("wardwatch_api_streams_closed_total", "reason" => "access_lost").increment(0);
}

/// A batch committed.
pub fn batch_committed(outcome: &BatchOutcome, messages: usize, rows: usize, took: Duration) {
    metrics::counter!("wardwatch_readings_stored_total").increment(outcome.readings_inserted);
    metrics::counter!("wardwatch_readings_duplicate_total").increment(outcome.readings_duplicate);
    for (reason, n) in &outcome.quarantined {
        metrics::counter!("wardwatch_quarantined_total", "reason" => reason.as_str()).increment(*n);
    }
    metrics::histogram!("wardwatch_batch_commit_seconds").record(took.as_secs_f64());
    metrics::histogram!("wardwatch_batch_rows").record(rows as f64);
    tracing::debug!(
        message = "Committed batch.",
        messages,
        rows,
        inserted = outcome.readings_inserted,
        duplicates = outcome.readings_duplicate,
        took_ms = took.as_millis() as u64
    );
}

/// A batch failed to commit.
pub fn batch_failed(error: &StoreError, messages: usize, retry_in: Option<Duration>) {
    let kind = if error.is_transient() {
        "transient"
    } else {
        "refused"
    };
    metrics::counter!("wardwatch_store_errors_total", "kind" => kind).increment(1);
    match retry_in {
        Some(d) => warn!(
            message = "Failed to store batch; retrying. Messages stay unacknowledged.",
            %error,
            messages,
            retry_in_ms = d.as_millis() as u64
        ),
        None => warn!(
            message = "The database refused a batch; isolating the message that causes it.",
            %error,
            messages
        ),
    }
}

/// The storage path in use.
pub fn storage_mode(mode: wardwatch_store::StorageMode) {
    metrics::gauge!("wardwatch_storage_timescale").set(match mode {
        wardwatch_store::StorageMode::Timescale => 1.0,
        wardwatch_store::StorageMode::Plain => 0.0,
    });
    info!(message = "Storage ready.", mode = ?mode);
}
