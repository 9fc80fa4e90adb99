//! The alerting runtime: three loops over the store, each safe to run in
//! several engines at once because every claim is `FOR UPDATE SKIP LOCKED`.
//!
//! ```text
//! flag_events ──apply──▶ alerts + alert_events + deliveries (one transaction: the outbox)
//! alerts.next_escalation_at ──escalate──▶ next tier's deliveries
//! deliveries ──send──▶ webhook / MQTT / Notify ──▶ sent | retry with backoff | failed → fallback
//! ```
//!
//! Nothing is sent before it is committed, and a delivery is marked sent
//! only after the receiver confirmed it. A crash between the two sends it
//! again under the same idempotency key, which receivers use to drop the
//! repeat.

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Context, Result};
use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use wardwatch_alerting::channel::{AlertMessage, Channels, MqttPublisher, NotifyConfig};
use wardwatch_alerting::lifecycle::{
    key_suffix, plan_escalation, plan_flag, AlertSnapshot, AlertState, FlagInput, Notice, Plan,
    Purpose, Snooze,
};
use wardwatch_alerting::outbox;
use wardwatch_alerting::policy::{EscalationPolicy, Target, Teams};
use wardwatch_store::alerts::{
    AlertAction, ClaimedDelivery, DueAlert, EscalationApply, NewDelivery, OpenAlertRow,
    PendingFlagEvent, SnoozeRow,
};
use wardwatch_store::{AlertStore, Backend, EscalationStore};

use crate::config::{Config, Source};

/// Loads and validates the team files.
pub fn load_teams(source: &Source) -> Result<Teams> {
    match source {
        Source::Dir(dir) => {
            Teams::load_dir(dir).with_context(|| format!("loading teams from {}", dir.display()))
        }
        Source::BuiltIn => Teams::built_in().context("loading the built-in teams (a build defect)"),
    }
}

pub use wardwatch_alerting::feed::{AlertFeed, FeedCursor, FeedEvent};

/// Follows `alert_events` (whoever wrote them: this engine, another one,
/// the CLI) into `feed`, after event id `from`, or from the newest event at
/// start when `None` (the feed is live-only). Ids skipped because
/// their transaction had not committed yet are re-read for a while (gaps),
/// so an event that commits late still reaches the feed.
pub async fn follow_alert_events(
    store: Backend,
    from: Option<i64>,
    feed: AlertFeed,
    wake: Arc<Notify>,
    poll: Duration,
    shutdown: CancellationToken,
) {
    let after = loop {
        if let Some(id) = from {
            break id;
        }
        match store.last_alert_event_id().await {
            Ok(id) => break id,
            Err(e) => {
                warn!(message = "Alert feed cannot start; retrying.", error = %e);
                if !backoff(&shutdown).await {
                    return;
                }
            }
        }
    };
    let mut cursor = FeedCursor::new(after, GAP_TTL, MAX_GAPS);
    while idle(&wake, poll, &shutdown).await {
        let events = match store
            .alert_events_since(cursor.after(), &cursor.gaps(), 1000)
            .await
        {
            Ok(e) => e,
            Err(e) => {
                warn!(message = "Alert feed read failed; retrying.", error = %e);
                continue;
            }
        };
        let now = wardwatch_core::clock::engine::now();
        for row in events {
            if !cursor.admit(row.id, now) {
                continue;
            }
            let a = row.alert;
            // No subscriber is not an error: the feed is live-only.
            let _ = feed.send(FeedEvent {
                event_id: row.id,
                event: row.event,
                actor: row.actor,
                at: row.at,
                alert_id: a.id,
                patient_id: a.patient_id,
                team_id: a.team_id,
                kind: a.kind,
                severity: a.severity,
                state: a.state,
                tier: a.tier,
                rules: a.rules,
                summary: a.summary,
            });
        }
        cursor.expire(now);
    }
}

/// How long a skipped event id is looked for.
const GAP_TTL: chrono::Duration = chrono::Duration::seconds(90);
/// Skipped ids remembered at most.
const MAX_GAPS: usize = 10_000;

/// How often the live feed looks for new alert events.
const FEED_POLL: Duration = Duration::from_millis(200);

/// The running alerting loops.
pub struct Alerting {
    /// Wake the loops: new flags were recorded.
    pub wake: Arc<Notify>,
    /// The live feed of alert changes, for the API's SSE stream.
    pub feed: AlertFeed,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Alerting {
    /// Loads the teams (an invalid file stops start-up, naming file, line
    /// and field) and starts the loops.
    pub fn start(cfg: &Config, store: Backend, shutdown: CancellationToken) -> Result<Self> {
        let source = cfg.alerting.teams();
        let teams = Arc::new(load_teams(&source)?);
        info!(message = "Teams loaded.", teams = teams.iter().count(), from = %source);
        let addr = cfg.alerts_broker()?;
        let tls = cfg.mqtt_tls(&addr)?;
        // Its client id is its user name: the broker binds the two.
        let client_id = addr
            .credentials
            .as_ref()
            .map(|(user, _)| user.clone())
            .unwrap_or_else(|| crate::config::embedded_alerts_user(&cfg.mqtt.client_id));
        let mqtt = MqttPublisher::start(&addr.host, addr.port, addr.credentials, tls, &client_id);
        let a = &cfg.alerting;
        let notify = if a.notify.base_url.is_empty() {
            None
        } else {
            let key = std::env::var(&a.notify.api_key_env).unwrap_or_default();
            if key.is_empty() {
                warn!(message = "Notify base URL set but its API key variable is empty: SMS and e-mail deliveries will fail.", variable = %a.notify.api_key_env);
            }
            Some(NotifyConfig {
                base_url: a.notify.base_url.clone(),
                api_key: key,
                sms_template_id: a.notify.sms_template_id.clone(),
                email_template_id: a.notify.email_template_id.clone(),
            })
        };
        let channels = Channels::new(
            Some(mqtt),
            notify,
            Arc::new(|name: &str| std::env::var(name).ok().filter(|s| !s.is_empty())),
            Duration::from_millis(a.request_timeout_ms),
        )
        .context("setting up the alert channels")?;
        let wake = Arc::new(Notify::new());
        let send_wake = Arc::new(Notify::new());
        let poll = Duration::from_millis(a.poll_ms);
        let (feed, _) = tokio::sync::broadcast::channel(1024);
        // A loop that dies (a panic: a bug) would silently stop paging:
        // stop the engine instead, so its supervisor restarts it.
        let stop_engine = shutdown.clone();
        let guard = |task: tokio::task::JoinHandle<()>, name: &'static str| {
            let shutdown = stop_engine.clone();
            tokio::spawn(async move {
                if let Err(e) = task.await {
                    error!(message = "An alerting loop died; stopping the engine so it restarts.", task = name, error = %e);
                    metrics::counter!("wardwatch_alerting_task_failures_total").increment(1);
                    shutdown.cancel();
                }
            })
        };
        let tasks = vec![
            tokio::spawn(follow_alert_events(
                store.clone(),
                None,
                feed.clone(),
                Arc::new(Notify::new()),
                FEED_POLL,
                shutdown.clone(),
            )),
            tokio::spawn(apply_loop(
                store.clone(),
                teams.clone(),
                wake.clone(),
                send_wake.clone(),
                poll,
                shutdown.clone(),
            )),
            tokio::spawn(escalation_loop(
                store.clone(),
                teams.clone(),
                send_wake.clone(),
                Duration::from_millis(a.escalation_poll_ms),
                shutdown.clone(),
            )),
            tokio::spawn(delivery_loop(
                store,
                teams,
                channels,
                send_wake,
                poll,
                Sending {
                    batch: a.delivery_batch,
                    max_attempts: a.max_attempts,
                    // A claim outlives any one send; after a crash it lapses
                    // and the delivery goes again under the same key.
                    lease: chrono::Duration::milliseconds(
                        i64::try_from(a.request_timeout_ms).unwrap_or(10_000) * 2 + 1000,
                    ),
                },
                shutdown,
            )),
        ];
        let names = ["feed", "apply", "escalation", "delivery"];
        let tasks = tasks
            .into_iter()
            .zip(names)
            .map(|(t, name)| guard(t, name))
            .collect();
        Ok(Self { wake, feed, tasks })
    }

    /// Waits for the loops to stop (they stop on the shutdown token).
    pub async fn stop(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

async fn idle(wake: &Notify, poll: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = wake.notified() => true,
        _ = tokio::time::sleep(poll) => true,
    }
}

async fn backoff(shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(Duration::from_secs(1)) => true,
    }
}

fn delivery(n: &Notice, step: Option<i64>) -> NewDelivery {
    NewDelivery {
        purpose: n.purpose.as_str(),
        tier: i32::try_from(n.tier).unwrap_or(i32::MAX),
        round: n.round,
        channel: n.target.channel(),
        target: serde_json::to_string(&n.target).unwrap_or_default(),
        key_suffix: key_suffix(n, step),
        not_before: n.not_before,
    }
}

/// The stored snapshot, or the team's current policy if it cannot be read.
fn policy_of(value: &serde_json::Value, fallback: &EscalationPolicy) -> EscalationPolicy {
    serde_json::from_value(value.clone()).unwrap_or_else(|e| {
        error!(message = "An alert's policy snapshot cannot be read; using the team's current policy.", error = %e);
        fallback.clone()
    })
}

fn decide(
    teams: &Teams,
    ev: &PendingFlagEvent,
    open: Option<&OpenAlertRow>,
    snooze: Option<&SnoozeRow>,
    now: DateTime<Utc>,
) -> AlertAction {
    let Some(team) = teams.get(&ev.team_id) else {
        // Unreachable: loading requires a default team.
        return AlertAction::Nothing;
    };
    let flag = FlagInput {
        rule: ev.rule.clone(),
        technical: ev.technical,
        state: ev.state,
        severity: ev.severity,
        measure: ev.measure,
    };
    let existing = open.map(|a| AlertSnapshot {
        id: a.id,
        severity: a.severity,
        state: a.state,
        tier: usize::try_from(a.tier).unwrap_or(0),
        round: a.round,
        policy: policy_of(&a.policy, &team.escalation),
        other_open_flags: usize::try_from(a.other_open_flags).unwrap_or(0),
        paged: serde_json::from_value(a.paged.clone()).unwrap_or_default(),
    });
    let snooze = snooze.map(|s| Snooze {
        severity: s.severity,
        until: s.until,
        measure: s.measure,
    });
    let paged_json =
        |p: &std::collections::BTreeMap<String, f64>| serde_json::to_value(p).unwrap_or_default();
    let last_update = open.and_then(|a| a.last_update_at);
    match plan_flag(team, existing.as_ref(), &flag, snooze, last_update, now) {
        Plan::Open {
            kind,
            severity,
            tier,
            next_escalation_at,
            notices,
            paged,
        } => AlertAction::Open {
            kind: kind.as_str(),
            severity,
            tier: i32::try_from(tier).unwrap_or(0),
            policy: serde_json::to_value(&team.escalation).unwrap_or_default(),
            next_escalation_at,
            deliveries: notices.iter().map(|n| delivery(n, None)).collect(),
            paged: paged_json(&paged),
        },
        Plan::Worsen {
            severity,
            tier,
            round,
            next_escalation_at,
            notices,
            paged,
        } => AlertAction::Worsen {
            severity,
            tier: i32::try_from(tier).unwrap_or(0),
            round,
            next_escalation_at,
            deliveries: notices
                .iter()
                .map(|n| delivery(n, Some(ev.event_id)))
                .collect(),
            paged: paged_json(&paged),
        },
        Plan::Join { notices, paged } => AlertAction::Join {
            deliveries: notices
                .iter()
                .map(|n| delivery(n, Some(ev.event_id)))
                .collect(),
            paged: paged.as_ref().map(paged_json),
        },
        Plan::Clear { resolve } => AlertAction::Clear { resolve },
        Plan::Suppressed { until } => AlertAction::Suppressed { until },
        Plan::Nothing => AlertAction::Nothing,
    }
}

async fn apply_loop(
    store: Backend,
    teams: Arc<Teams>,
    wake: Arc<Notify>,
    send_wake: Arc<Notify>,
    poll: Duration,
    shutdown: CancellationToken,
) {
    while idle(&wake, poll, &shutdown).await {
        loop {
            let now = wardwatch_core::clock::engine::now();
            match store
                .apply_flag_events(200, now, |ev, open, snooze| {
                    decide(&teams, ev, open, snooze, now)
                })
                .await
            {
                Ok(applied) if applied.events == 0 => break,
                Ok(applied) => {
                    for (id, severity, rule) in &applied.opened {
                        metrics::counter!(
                            "wardwatch_alerts_opened_total",
                            "rule" => wardwatch_alerting::lifecycle::rule_family(rule).to_string(),
                            "severity" => severity.clone()
                        )
                        .increment(1);
                        info!(message = "Alert opened.", alert = id, severity = %severity, rule = %rule);
                    }
                    metrics::counter!("wardwatch_alert_flag_events_total")
                        .increment(applied.events);
                    metrics::counter!("wardwatch_alert_flags_snoozed_total")
                        .increment(applied.suppressed);
                    send_wake.notify_one();
                }
                Err(e) => {
                    warn!(message = "Applying flags to alerts failed; retrying.", error = %e);
                    if !backoff(&shutdown).await {
                        return;
                    }
                }
            }
        }
    }
}

async fn escalation_loop(
    store: Backend,
    teams: Arc<Teams>,
    send_wake: Arc<Notify>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut acks_seen = wardwatch_core::clock::engine::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = wardwatch_core::clock::engine::now();
        // A snooze that ran out hands its rule's open flag back.
        match store.end_snoozes(now).await {
            Ok(0) => {}
            Ok(n) => info!(
                message = "Snoozes ended; their open flags go back to alerting.",
                flags = n
            ),
            Err(e) => warn!(message = "Ending snoozes failed; retrying.", error = %e),
        }
        // Time to acknowledge, per team, however the acknowledgement came.
        match store.acknowledgements_since(acks_seen).await {
            Ok(acks) => {
                for ack in acks {
                    metrics::histogram!("wardwatch_time_to_acknowledge_seconds", "team" => ack.team_id)
                        .record(ack.seconds.max(0.0));
                    acks_seen = acks_seen.max(ack.at);
                }
            }
            Err(e) => warn!(message = "Reading acknowledgements failed.", error = %e),
        }
        let plan = |due: &DueAlert| -> Option<EscalationApply> {
            let team = teams.get(&due.team_id)?;
            let policy = policy_of(&due.policy, &team.escalation);
            let state = due.state;
            if state == AlertState::Acknowledged && due.next_escalation_at.is_none() {
                // Just acknowledged: schedule the reminder, nothing to send yet.
                let from = due.acknowledged_at.unwrap_or(now);
                return Some(EscalationApply {
                    tier: due.tier,
                    round: due.round,
                    next_escalation_at: from + chrono::Duration::seconds(policy.ack_timeout.secs()),
                    deliveries: Vec::new(),
                    event: None,
                });
            }
            let e = plan_escalation(
                &policy,
                team.mqtt,
                usize::try_from(due.tier).unwrap_or(0),
                due.round,
                due.severity,
                state,
                &team.fallback,
                now,
            );
            Some(EscalationApply {
                tier: i32::try_from(e.tier).unwrap_or(0),
                round: e.round,
                next_escalation_at: e.next_escalation_at,
                deliveries: e.notices.iter().map(|n| delivery(n, None)).collect(),
                event: Some(if state == AlertState::Acknowledged {
                    "reminded"
                } else {
                    "escalated"
                }),
            })
        };
        match store.escalate_due(now, 100, plan).await {
            Ok(ids) => {
                if !ids.is_empty() {
                    metrics::counter!("wardwatch_escalations_total").increment(ids.len() as u64);
                    info!(message = "Alerts escalated (not acknowledged in time).", alerts = ?ids);
                    send_wake.notify_one();
                }
                // Every alert due by `now` has been escalated: how far the
                // clock of escalation has got (a stalled loop stops it).
                metrics::gauge!("wardwatch_escalation_checked_at_seconds")
                    .set(now.timestamp_millis() as f64 / 1000.0);
            }
            Err(e) => warn!(message = "Escalation pass failed; retrying.", error = %e),
        }
    }
}

fn message(d: &ClaimedDelivery) -> AlertMessage {
    let a = &d.alert;
    AlertMessage {
        alert_id: a.id,
        patient_id: a.patient_id.clone(),
        team_id: a.team_id.clone(),
        kind: a.kind.clone(),
        severity: a.severity,
        state: a.state,
        purpose: d.purpose.clone(),
        tier: d.tier,
        tier_name: a.tier_name.clone(),
        rules: a.rules.clone(),
        summary: a.summary.clone(),
        opened_at: a.opened_at,
        idempotency_key: d.key.clone(),
    }
}

/// Splits claimed deliveries into those sent one by one and, for teams in
/// a storm (at least `storm_alerts` alerts opened within `storm_window`),
/// digests of their updates, one per target. Pages are never digested:
/// a first notification, a worsening or an escalation goes out at once.
async fn storm_guard(
    store: &Backend,
    teams: &Teams,
    claimed: Vec<ClaimedDelivery>,
    now: DateTime<Utc>,
) -> (Vec<ClaimedDelivery>, Vec<Vec<ClaimedDelivery>>) {
    // Asked once per team with updates in this claim.
    let mut storming = std::collections::HashSet::new();
    let updating: std::collections::BTreeSet<&str> = claimed
        .iter()
        .filter(|d| d.purpose == Purpose::Update.as_str())
        .map(|d| d.alert.team_id.as_str())
        .collect();
    for team in updating {
        let Some(policy) = teams.get(team).map(|t| &t.escalation) else {
            continue;
        };
        let opened = store
            .alerts_opened_since(team, outbox::storm_window_start(policy, now))
            .await;
        if opened.is_ok_and(|n| outbox::in_storm(policy, n)) {
            storming.insert(team.to_string());
        }
    }
    outbox::digest_groups(claimed, |d| {
        (d.purpose == Purpose::Update.as_str() && storming.contains(&d.alert.team_id))
            .then(|| (d.alert.team_id.clone(), d.target.clone()))
    })
}

async fn send_digest(channels: &Channels, group: &[ClaimedDelivery]) -> Result<(), String> {
    let Some(first) = group.first() else {
        return Ok(());
    };
    let target: Target =
        serde_json::from_str(&first.target).map_err(|e| format!("unreadable target: {e}"))?;
    let digest = wardwatch_alerting::channel::Digest {
        purpose: "digest",
        team_id: first.alert.team_id.clone(),
        alerts: group.iter().map(message).collect(),
        idempotency_key: outbox::digest_key(&first.alert.team_id, group.iter().map(|d| d.id)),
    };
    metrics::counter!("wardwatch_digests_total").increment(1);
    channels
        .send_digest(&target, &digest)
        .await
        .map_err(|e| e.to_string())
}

/// How deliveries are sent.
#[derive(Debug, Clone, Copy)]
struct Sending {
    batch: usize,
    max_attempts: i32,
    lease: chrono::Duration,
}

async fn delivery_loop(
    store: Backend,
    teams: Arc<Teams>,
    channels: Channels,
    wake: Arc<Notify>,
    poll: Duration,
    sending: Sending,
    shutdown: CancellationToken,
) {
    let Sending {
        batch,
        max_attempts,
        lease,
    } = sending;
    let limit = i64::try_from(batch).unwrap_or(32);
    while idle(&wake, poll, &shutdown).await {
        loop {
            let now = wardwatch_core::clock::engine::now();
            let claimed = match store.claim_deliveries(now, limit, lease).await {
                Ok(c) => c,
                Err(e) => {
                    warn!(message = "Claiming deliveries failed; retrying.", error = %e);
                    break;
                }
            };
            if claimed.is_empty() {
                break;
            }
            let (singles, digests) = storm_guard(&store, &teams, claimed, now).await;
            let sends = singles.into_iter().map(|d| {
                let channels = channels.clone();
                async move {
                    let target: Result<Target, _> = serde_json::from_str(&d.target);
                    let result = match target {
                        Ok(t) => channels
                            .send(&t, &message(&d))
                            .await
                            .map_err(|e| e.to_string()),
                        Err(e) => Err(format!("unreadable target: {e}")),
                    };
                    vec![(d, result)]
                }
            });
            let digest_sends = digests.into_iter().map(|group| {
                let channels = channels.clone();
                async move {
                    let result = send_digest(&channels, &group).await;
                    group
                        .into_iter()
                        .map(|d| (d, result.clone()))
                        .collect::<Vec<_>>()
                }
            });
            let (a, b) = tokio::join!(
                futures_util::future::join_all(sends),
                futures_util::future::join_all(digest_sends)
            );
            for (d, result) in a.into_iter().chain(b).flatten() {
                record(&store, &teams, &d, result, max_attempts).await;
            }
        }
    }
}

async fn record(
    store: &Backend,
    teams: &Teams,
    d: &ClaimedDelivery,
    result: Result<(), String>,
    max_attempts: i32,
) {
    let now = wardwatch_core::clock::engine::now();
    let outcome = match &result {
        Ok(()) => "sent",
        Err(_) if d.attempts >= max_attempts => "failed",
        Err(_) => "retry",
    };
    metrics::counter!("wardwatch_deliveries_total", "channel" => d.channel.clone(), "outcome" => outcome)
        .increment(1);
    let stored = match &result {
        Ok(()) => {
            let took = (now - d.created_at).num_milliseconds().max(0) as f64 / 1000.0;
            metrics::histogram!("wardwatch_delivery_seconds", "channel" => d.channel.clone())
                .record(took);
            store.finish_delivery(d.id, now, None, None).await
        }
        Err(e) => {
            warn!(message = "Delivery failed.", alert = d.alert_id, channel = %d.channel, attempts = d.attempts, error = %e);
            let retry = (d.attempts < max_attempts)
                .then(|| now + outbox::retry_delay(d.attempts, rand::random_range(0.0..=1.0)));
            store.finish_delivery(d.id, now, Some(e), retry).await
        }
    };
    if let Err(e) = stored {
        // The lease lapses and the delivery is sent again, same key.
        warn!(message = "Recording a delivery failed; it will be retried.", error = %e);
        return;
    }
    if outcome == "failed" && d.purpose == Purpose::Page.as_str() {
        let Some(team) = teams.get(&d.alert.team_id) else {
            return;
        };
        let notice = Notice {
            purpose: Purpose::Undeliverable,
            tier: usize::try_from(d.tier).unwrap_or(0),
            round: d.round,
            target: team.fallback.clone(),
            not_before: now,
        };
        match store
            .fallback_if_undeliverable(d.alert_id, d.tier, d.round, delivery(&notice, None))
            .await
        {
            Ok(true) => {
                metrics::counter!("wardwatch_undeliverable_total").increment(1);
                error!(
                    message =
                        "Every target of an escalation step failed; the team's fallback is told.",
                    alert = d.alert_id,
                    tier = d.tier
                );
            }
            Ok(false) => {}
            Err(e) => warn!(message = "Could not queue the fallback notice.", error = %e),
        }
    }
}
