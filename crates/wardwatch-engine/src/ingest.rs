//! The ingest pipeline, wired with bounded channels:
//!
//! ```text
//! session reader ──Delivery──▶ dispatcher (decode, validate, batch) ──batch──▶ writers (× ingest.writers)
//!   (channel sized to the broker's in-flight window)     (one queue, capacity = writers)      │
//!                                                                                            Committed
//! session writer ◀──PUBACK── acker (AckTracker: arrival order, connection epochs) ◀──────────┘
//! ```
//!
//! A message is acknowledged only after the transaction holding all its rows
//! commits, and after its new readings were handed to the rules (see
//! [`crate::scoring`]). When the database is unreachable the writer retries with backoff,
//! the channels fill, the broker's in-flight window closes, and memory stays
//! bounded; when it returns, the backlog drains.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Mutex};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use wardwatch_core::{QuarantineReason, Rejection};
use wardwatch_ingest::decode::{decode, sanitize, stored_record, truncate, ValidationPolicy};
pub use wardwatch_ingest::identity::{message_key, RecentAnchors};
use wardwatch_ingest::rate::{DeviceRateLimiter, RateLimit};
use wardwatch_ingest::session::{self, AckEvent, Delivery, SessionConfig};
use wardwatch_ingest::topic;
use wardwatch_store::{IngestMessage, ReadingFeed, Store, StoreError};

use crate::scoring::RulesFeed;
use crate::telemetry;

/// When a batch is flushed.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// Flush at this many messages.
    pub max_messages: usize,
    /// Flush at this many rows.
    pub max_rows: usize,
    /// Flush this long after the batch's first message.
    pub max_delay: Duration,
    /// Batches committed concurrently, each on its own connection. While one
    /// waits for its commit to reach disk, another inserts.
    pub writers: usize,
    /// The per-device message rate limit.
    pub device_limit: RateLimit,
}

/// Runs ingest until `shutdown` is cancelled, then drains: the batch in hand
/// is committed and acknowledged before the session disconnects. Returns
/// false when it stopped because a pipeline task died.
pub async fn run<S: Store>(
    session_config: SessionConfig,
    store: S,
    policy: ValidationPolicy,
    batching: Batching,
    rules: Option<RulesFeed>,
    live: Option<ReadingFeed>,
    shutdown: CancellationToken,
) -> bool {
    let (delivery_tx, delivery_rx) = mpsc::channel(session_config.max_inflight);
    let session = session::start(session_config, delivery_tx);
    let writers = batching.writers.max(1);
    let (batch_tx, batch_rx) = mpsc::channel::<Vec<IngestMessage>>(writers);
    // Writers share one queue so a free writer takes the next batch. The lock
    // is held only while waiting to receive, never across a commit.
    let batch_rx = Arc::new(Mutex::new(batch_rx));
    let failed = CancellationToken::new();
    let dispatcher = tokio::spawn(supervised(
        failed.clone(),
        dispatch(
            delivery_rx,
            batch_tx,
            store.clone(),
            policy,
            batching,
            shutdown.clone(),
        ),
    ));
    let writer_tasks: Vec<_> = (0..writers)
        .map(|_| {
            tokio::spawn(supervised(
                failed.clone(),
                write_batches(
                    batch_rx.clone(),
                    store.clone(),
                    session.acks.clone(),
                    rules.clone(),
                    live.clone(),
                    shutdown.clone(),
                    failed.clone(),
                ),
            ))
        })
        .collect();
    // A pipeline task that dies (a panic: a bug) would leave the connection
    // up while nothing is committed or acknowledged. Stop the whole engine
    // instead, so its supervisor restarts it and the broker redelivers.
    let healthy = tokio::select! {
        _ = shutdown.cancelled() => {
            info!(message = "Shutting down ingest: committing the batch in hand.");
            true
        }
        _ = failed.cancelled() => {
            error!(message = "An ingest task stopped unexpectedly; shutting down so the engine restarts.");
            metrics::counter!("wardwatch_ingest_task_failures_total").increment(1);
            shutdown.cancel();
            false
        }
    };
    let _ = dispatcher.await;
    for w in writer_tasks {
        let _ = w.await;
    }
    session.disconnect.cancel();
    let _ = session.poll_task.await;
    drop(session.acks);
    let _ = session.ack_task.await;
    info!(message = "Ingest stopped.");
    healthy
}

/// Runs a task; if it unwinds (a panic), cancels `failed`.
async fn supervised(failed: CancellationToken, task: impl Future<Output = ()>) {
    let guard = failed.drop_guard();
    task.await;
    guard.disarm();
}

/// A delivery's message, with nothing decoded yet.
fn new_message(d: &Delivery) -> IngestMessage {
    IngestMessage {
        tag: d.tag,
        topic: sanitize(&d.topic),
        device_id: topic::raw_device_segment(&d.topic).map(sanitize),
        key: message_key(&d.topic, &d.payload),
        received_at: d.received_at,
        readings: Vec::new(),
        rejections: Vec::new(),
        relative_anchor: None,
        redelivered: d.dup,
    }
}

/// A delivery from a device over its rate limit: kept whole in
/// quarantine, not decoded (decoding and scoring are what it would cost
/// everyone else). `None` when the device is within its limit.
pub fn over_rate_limit(d: &Delivery, limiter: &mut DeviceRateLimiter) -> Option<IngestMessage> {
    let (device, _) = topic::parse(&d.topic).ok()?;
    if limiter.admit(device.as_str(), d.received_at) {
        return None;
    }
    metrics::counter!("wardwatch_messages_rate_limited_total").increment(1);
    let mut msg = new_message(d);
    msg.rejections.push(Rejection::payload(
        QuarantineReason::RateLimited,
        "the device sent more messages than ingest.device_rate_per_minute allows beyond \
         ingest.device_burst: kept here whole and not read, so it cannot hold other \
         patients' readings back"
            .to_string(),
        stored_record(&String::from_utf8_lossy(&d.payload)),
    ));
    Some(msg)
}

/// Decodes one delivery into a message ready to commit. For a redelivered
/// message whose SenML times were relative to receipt, the first receipt
/// time is looked up so the redelivery resolves to the same rows.
pub async fn prepare<S: Store>(
    d: &Delivery,
    store: &S,
    policy: &ValidationPolicy,
    recent: &mut RecentAnchors,
    shutdown: &CancellationToken,
) -> Option<IngestMessage> {
    let mut msg = new_message(d);
    let key = msg.key;
    let (device, format) = match topic::parse(&d.topic) {
        Ok(x) => x,
        Err(e) => {
            msg.rejections.push(Rejection::payload(
                QuarantineReason::Malformed,
                e.to_string(),
                stored_record(&String::from_utf8_lossy(
                    &d.payload[..d.payload.len().min(4096)],
                )),
            ));
            return Some(msg);
        }
    };
    if let Some(size) = d.oversized {
        msg.rejections.push(Rejection::payload(
            QuarantineReason::Oversized,
            format!(
                "payload is {size} bytes; the limit is {} bytes (larger than the MQTT packet limit, so only its first {} bytes were read)",
                policy.max_payload_bytes,
                d.payload.len()
            ),
            stored_record(&String::from_utf8_lossy(&d.payload)),
        ));
        return Some(msg);
    }
    if d.retain {
        msg.rejections.push(Rejection::payload(
            QuarantineReason::Retained,
            "a retained message (the broker's stored copy of an earlier publish, resent on \
             subscription): not a new reading; devices must publish with retain off"
                .to_string(),
            stored_record(&String::from_utf8_lossy(
                &d.payload[..d.payload.len().min(4096)],
            )),
        ));
        return Some(msg);
    }
    let mut anchor = d.received_at;
    let mut decoded = decode(format, &device, &d.payload, anchor, anchor, policy);
    // A redelivery may overtake its original, still in this pipeline after a
    // reconnect and not yet committed: look in memory first, then the store.
    let remembered = if decoded.relative_time && d.dup {
        recent.get(&key)
    } else {
        None
    };
    if let Some(first) = remembered {
        anchor = first;
        decoded = decode(format, &device, &d.payload, anchor, anchor, policy);
        msg.received_at = anchor;
    } else if decoded.relative_time && d.dup {
        let mut backoff = Duration::from_millis(100);
        loop {
            match store.relative_anchor(&key).await {
                Ok(Some(first)) => {
                    anchor = first;
                    decoded = decode(format, &device, &d.payload, anchor, anchor, policy);
                    msg.received_at = anchor;
                    break;
                }
                Ok(None) => break,
                Err(e) if e.is_transient() => {
                    warn!(message = "Cannot look up a relative-time anchor; retrying.", error = %e);
                    tokio::select! {
                        _ = shutdown.cancelled() => return None,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
                Err(e) => {
                    warn!(message = "Relative-time anchor lookup refused; using this receipt.", error = %e);
                    break;
                }
            }
        }
    }
    msg.relative_anchor = decoded.relative_time.then_some(anchor);
    if decoded.relative_time {
        recent.insert(key, anchor);
    }
    msg.readings = decoded.readings;
    msg.rejections = decoded.rejections;
    Some(msg)
}

async fn dispatch<S: Store>(
    mut deliveries: mpsc::Receiver<Delivery>,
    batches: mpsc::Sender<Vec<IngestMessage>>,
    store: S,
    policy: ValidationPolicy,
    batching: Batching,
    shutdown: CancellationToken,
) {
    let mut batch: Vec<IngestMessage> = Vec::with_capacity(batching.max_messages);
    let mut recent = RecentAnchors::new(RECENT_ANCHORS);
    let mut limiter = DeviceRateLimiter::new(batching.device_limit);
    let mut rows = 0usize;
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let flush_at = deadline;
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = async { if let Some(t) = flush_at { tokio::time::sleep_until(t).await } }, if flush_at.is_some() => {
                if !flush(&batches, &mut batch, &mut rows, &mut deadline).await { return; }
            }
            d = deliveries.recv() => {
                let Some(d) = d else { break };
                metrics::gauge!("wardwatch_ingest_queue_depth").set(deliveries.len() as f64);
                let msg = match over_rate_limit(&d, &mut limiter) {
                    Some(held) => held,
                    None => {
                        let Some(msg) = prepare(&d, &store, &policy, &mut recent, &shutdown).await else { break };
                        msg
                    }
                };
                rows += msg.readings.len() + msg.rejections.len();
                batch.push(msg);
                if deadline.is_none() {
                    deadline = Some(tokio::time::Instant::now() + batching.max_delay);
                }
                if (batch.len() >= batching.max_messages || rows >= batching.max_rows)
                    && !flush(&batches, &mut batch, &mut rows, &mut deadline).await
                {
                    return;
                }
            }
        }
    }
    // Shutting down: commit what we hold; undelivered messages stay unacknowledged
    // and the broker redelivers them to the next session.
    flush(&batches, &mut batch, &mut rows, &mut deadline).await;
}

async fn flush(
    batches: &mpsc::Sender<Vec<IngestMessage>>,
    batch: &mut Vec<IngestMessage>,
    rows: &mut usize,
    deadline: &mut Option<tokio::time::Instant>,
) -> bool {
    *deadline = None;
    *rows = 0;
    if batch.is_empty() {
        return true;
    }
    let full = std::mem::take(batch);
    batches.send(full).await.is_ok()
}

async fn write_batches<S: Store>(
    batches: Arc<Mutex<mpsc::Receiver<Vec<IngestMessage>>>>,
    store: S,
    acks: mpsc::Sender<AckEvent>,
    rules: Option<RulesFeed>,
    live: Option<ReadingFeed>,
    shutdown: CancellationToken,
    failed: CancellationToken,
) {
    loop {
        let next = batches.lock().await.recv().await;
        let Some(batch) = next else { return };
        // Sub-batches still to commit; a refused batch is split to isolate the culprit.
        let mut pending: Vec<Vec<IngestMessage>> = vec![batch];
        let mut backoff = Duration::from_millis(100);
        while let Some(part) = pending.pop() {
            let rows: usize = part
                .iter()
                .map(|m| m.readings.len() + m.rejections.len())
                .sum();
            let started = Instant::now();
            match store.write_batch(&part).await {
                Ok(outcome) => {
                    telemetry::batch_committed(&outcome, part.len(), rows, started.elapsed());
                    backoff = Duration::from_millis(100);
                    // Live boards see committed readings; nobody watching
                    // costs nothing, and a slow watcher only lags itself.
                    if let Some(feed) = live.as_ref().filter(|f| f.receiver_count() > 0) {
                        if !outcome.new_readings.is_empty() {
                            let _ = feed.send(Arc::new(outcome.new_readings.clone()));
                        }
                    }
                    // Committed: the rules get the new readings before the
                    // broker gets its ack, so a rules backlog holds back
                    // deliveries instead of growing a queue.
                    if let (Some(feed), false) = (&rules, outcome.new_readings.is_empty()) {
                        if feed
                            .send(wardwatch_store::RulesInput::Readings(outcome.new_readings))
                            .await
                            .is_err()
                        {
                            error!(
                                message =
                                    "The rules stopped; shutting down so the engine restarts."
                            );
                            failed.cancel();
                            return;
                        }
                    }
                    let tags = part.iter().map(|m| m.tag).collect();
                    if acks.send(AckEvent::Committed(tags)).await.is_err() {
                        return;
                    }
                }
                Err(e) if e.is_transient() || is_fallback(&part) => {
                    // Unreachable database (or a refusal of our own minimal
                    // quarantine row, which only a broken schema causes): keep
                    // the batch, keep it unacknowledged, and retry.
                    telemetry::batch_failed(&e, part.len(), Some(backoff));
                    pending.push(part);
                    tokio::select! {
                        // Shutting down: the batch stays unacknowledged and the broker redelivers it.
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
                Err(e) => {
                    telemetry::batch_failed(&e, part.len(), None);
                    if part.len() > 1 {
                        let mut first = part;
                        let second = first.split_off(first.len() / 2);
                        pending.push(second);
                        pending.push(first);
                    } else {
                        pending.extend(part.into_iter().map(|m| vec![refused(m, &e)]));
                    }
                }
            }
        }
    }
}
/// Relative-time messages remembered in memory (a few MB at most).
const RECENT_ANCHORS: usize = 100_000;

/// Marks the quarantine row that stands in for a message the database refused.
const REFUSED_ITEM: u32 = u32::MAX;

fn is_fallback(part: &[IngestMessage]) -> bool {
    matches!(part, [m] if m.readings.is_empty()
        && matches!(m.rejections.as_slice(), [r] if r.record_index == Some(REFUSED_ITEM)))
}

/// A message the database refused even alone: keep it as one quarantine row
/// so it is neither lost silently nor retried forever.
fn refused(m: IngestMessage, error: &StoreError) -> IngestMessage {
    // Keep what the message carried, so nothing is lost to the operator.
    let readings: Vec<_> = m
        .readings
        .iter()
        .map(|r| {
            serde_json::json!({
                "vital": r.vital.as_str(),
                "time": r.time.to_rfc3339(),
                "value": r.value,
            })
        })
        .collect();
    let rejections: Vec<_> = m
        .rejections
        .iter()
        .map(|r| serde_json::json!({"reason": r.reason.as_str(), "detail": r.detail}))
        .collect();
    let record = serde_json::json!({"readings": readings, "rejections": rejections}).to_string();
    IngestMessage {
        readings: Vec::new(),
        rejections: vec![Rejection {
            reason: QuarantineReason::Malformed,
            detail: sanitize(&format!("the database refused this message: {error}")),
            record_index: Some(REFUSED_ITEM),
            record: truncate(sanitize(&record), 64 * 1024),
        }],
        relative_anchor: None,
        ..m
    }
}
