//! The rules runtime: feeds the rules core (`wardwatch-rules`) with what
//! the store committed, and records the flags it produces.
//!
//! ```text
//! writers ──Vec<NewReading>──▶ router task ──▶ shards (× rules.shards) ──PatientFlag──▶ flag writer ──▶ flags, flag_events
//!  (after commit, before ack)   (settings from the store, clock ticks, reload)
//! ```
//!
//! Every channel is bounded. A slow flag writer (database down) fills the
//! flag channel, the shards wait, the router waits, the ingest writers wait
//! before acknowledging, and the broker stops sending: nothing is dropped.
//! A crash between a reading's commit and its flag is repaired at start-up:
//! the router replays recent stored readings and reconciles with the
//! store's open flags before ingest starts.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::error::{Context, Result};
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use wardwatch_core::Vital;
use wardwatch_rules::news2::SpO2Scale;
use wardwatch_rules::pathway::{check_threshold, load_dir};
use wardwatch_rules::patient::{FlagState, PatientSettings};
use wardwatch_rules::shard::{
    Input, OpenFlag, PatientConfig, PatientFlag, PatientKey, RuleReading, RuleSet, Shards,
};
use wardwatch_rules::threshold::{Severity, Threshold};
use wardwatch_store::rules::{
    FlagChange, FlagRecord, LimitRow, PatientFilter, PatientRow, ReplayRow,
};
use wardwatch_store::{Backend, NewReading, RulesInput, RulesStore, StoreError};

use crate::config::{RulesConfig, Source};

/// Committed readings waiting for the rules, in batches (one per commit).
pub type RulesFeed = mpsc::Sender<RulesInput>;

/// The pathways in force, shared by the rules and the API (reloads swap it).
pub type SharedRuleSet = Arc<arc_swap::ArcSwap<RuleSet>>;

/// Loads and validates the pathway files, once, for everyone.
pub fn load_shared_rule_set(source: &Source) -> Result<SharedRuleSet> {
    let rule_set = load_rule_set(source)?;
    info!(
        message = "Pathways loaded.",
        pathways = rule_set.pathways.len(),
        from = %source
    );
    Ok(Arc::new(arc_swap::ArcSwap::from_pointee(rule_set)))
}

/// Loads and validates the pathway files (or the built-in set).
pub fn load_rule_set(source: &Source) -> Result<RuleSet> {
    let pathways = match source {
        Source::Dir(dir) => {
            load_dir(dir).with_context(|| format!("loading pathways from {}", dir.display()))?
        }
        Source::BuiltIn => wardwatch_rules::pathway::built_in()
            .context("loading the built-in pathways (a build defect)")?,
    };
    if pathways.is_empty() {
        crate::error::bail!("no pathway files (*.toml) in {source}");
    }
    Ok(RuleSet::new(pathways))
}

/// A stored personalised limit as the rules use it.
pub fn limit_threshold(l: &LimitRow) -> Result<(Vital, Threshold), String> {
    let vital = Vital::from_name(&l.vital).ok_or_else(|| format!("unknown vital {:?}", l.vital))?;
    let severity =
        Severity::parse(&l.severity).ok_or_else(|| format!("unknown severity {:?}", l.severity))?;
    let t = Threshold {
        low: l.low,
        high: l.high,
        severity,
        persist_readings: u32::try_from(l.persist_readings).map_err(|e| e.to_string())?,
        persist_secs: i64::from(l.persist_secs),
        clear_margin: l.clear_margin,
        clear_hold_secs: i64::from(l.clear_hold_secs),
        ..Threshold::default()
    };
    check_threshold(vital, &t).map_err(|(field, msg)| format!("{field}: {msg}"))?;
    Ok((vital, t))
}

/// NEWS2 applies to this person (the rule lives in `wardwatch_rules::clinical`).
pub fn news2_applies(row: &PatientRow, today: chrono::NaiveDate) -> bool {
    wardwatch_rules::clinical::person_applicability(row.date_of_birth, row.pregnant, today)
        .applies()
}

/// A stored patient as the rules see them.
pub fn patient_config(row: &PatientRow, today: chrono::NaiveDate) -> PatientConfig {
    let mut overrides = Vec::new();
    for l in &row.limits {
        match limit_threshold(l) {
            Ok(o) => overrides.push(o),
            Err(e) => {
                // The store's checks make this unreachable; say so loudly if not.
                error!(message = "A stored personal limit is invalid; the pathway's thresholds apply.", patient = %row.id, vital = %l.vital, error = %e);
                metrics::counter!("wardwatch_rules_invalid_limits_total").increment(1);
            }
        }
    }
    PatientConfig {
        pathway: row.pathway.clone(),
        settings: PatientSettings {
            scale: if row.spo2_scale == 2 {
                SpO2Scale::Two
            } else {
                SpO2Scale::One
            },
            care_plan_oxygen: row.care_plan_oxygen,
            news2_applies: news2_applies(row, today),
            overrides,
            version: u64::try_from(row.settings_version).unwrap_or(0),
        },
        monitored: !row.discharged,
        devices: row.devices.iter().map(|d| Arc::from(d.as_str())).collect(),
    }
}

/// Retries a store call on transient errors until it succeeds or shutdown.
async fn retry<T, F, Fut>(what: &str, shutdown: &CancellationToken, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut backoff = Duration::from_millis(100);
    loop {
        match f().await {
            Ok(v) => return Some(v),
            Err(e) => {
                warn!(message = "Rules store call failed; retrying.", what, error = %e, retry_in_ms = backoff.as_millis() as u64);
                metrics::counter!("wardwatch_rules_store_errors_total", "what" => what.to_string())
                    .increment(1);
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// The running rules: hand committed readings to [`Rules::feed`]; call
/// [`Rules::stop`] after ingest has stopped.
pub struct Rules {
    /// Where the ingest writers send committed readings.
    pub feed: RulesFeed,
    router: tokio::task::JoinHandle<()>,
    flag_writer: tokio::task::JoinHandle<()>,
}

impl Rules {
    /// Loads pathways (an invalid file stops start-up: there is no running
    /// configuration to keep yet), starts the shards, loads every patient,
    /// replays recent readings, reconciles with the store's open flags, and
    /// only then returns, so ingest starts on rebuilt state.
    pub async fn start(
        cfg: &RulesConfig,
        store: Backend,
        pathways: SharedRuleSet,
        on_flags: Option<Arc<tokio::sync::Notify>>,
        shutdown: CancellationToken,
    ) -> Result<Option<Self>> {
        let replay_horizons = horizons(&pathways.load(), cfg.replay_mins);
        let (flag_tx, flag_rx) = mpsc::channel(4096);
        let mut shards =
            Shards::start_shared(cfg.shard_count(), cfg.shard_inbox, pathways, flag_tx);
        // The flag writer ends once the shards have stopped and it has
        // recorded everything they sent.
        let flag_writer = tokio::spawn(write_flags(
            store.clone(),
            flag_rx,
            on_flags,
            shutdown.clone(),
        ));

        let Some(rows) = retry("load patients", &shutdown, || {
            store.patient_rows(PatientFilter::All)
        })
        .await
        else {
            return Ok(None);
        };
        let today = wardwatch_core::clock::engine::now().date_naive();
        let mut version = 0;
        let mut applied = std::collections::HashMap::with_capacity(rows.len());
        let mut pathway_of = std::collections::HashMap::with_capacity(rows.len());
        let in_force = shards.rules.load_full();
        for row in &rows {
            version = version.max(row.settings_version);
            applied.insert(row.id.clone(), row.settings_version);
            track_pathway(&mut pathway_of, row);
            if !row.discharged && !in_force.pathways.contains_key(&row.pathway) {
                missing_pathway(row);
            }
            let config = Arc::new(patient_config(row, today));
            shards
                .send(Input::Patient {
                    patient: Arc::from(row.id.as_str()),
                    config,
                })
                .await?;
        }
        let now = wardwatch_core::clock::engine::now();
        let Some(replayed) = replay(&store, &mut shards, &replay_horizons, now, &shutdown).await?
        else {
            return Ok(None);
        };
        let Some(open) = retry("load open flags", &shutdown, || store.open_flags()).await else {
            return Ok(None);
        };
        let open: Vec<OpenFlag> = open
            .into_iter()
            .filter_map(|f| {
                let (rule, subject) = wardwatch_rules::patient::parse_flag_key(&f.rule)?;
                Some(OpenFlag {
                    patient: Arc::from(f.patient_id.as_str()),
                    rule,
                    severity: Severity::parse(&f.severity)?,
                    subject: subject.map(|s| Arc::from(s.as_str())),
                })
            })
            .collect();
        let open_count = open.len();
        shards.restore(open, now.timestamp()).await?;
        info!(
            message = "Rules state rebuilt from the store.",
            patients = rows.len(),
            readings_replayed = replayed,
            open_flags = open_count,
            shards = shards.len()
        );
        let (feed, feed_rx) = mpsc::channel(cfg.shard_inbox.div_ceil(64).max(4));
        let router = tokio::spawn(route(
            Router {
                shards,
                store,
                version,
                applied,
                pathway_of,
                cfg: cfg.clone(),
                fingerprint: fingerprint(&cfg.pathways()),
            },
            feed_rx,
            shutdown,
        ));
        Ok(Some(Self {
            feed,
            router,
            flag_writer,
        }))
    }

    /// Waits for the rules to finish what they hold: call after ingest has
    /// stopped and dropped its senders. Every committed reading is
    /// evaluated and every flag recorded before this returns (unless the
    /// database stays down, in which case start-up replay repairs it).
    pub async fn stop(self) {
        drop(self.feed);
        let _ = self.router.await;
        let _ = self.flag_writer.await;
    }
}

/// How far back each vital is replayed: trends need their windows, the
/// rest need NEWS2 freshness and threshold persistence.
fn horizons(rules: &RuleSet, replay_mins: u64) -> Vec<(Vital, i64)> {
    let base = i64::try_from(replay_mins.saturating_mul(60)).unwrap_or(i64::MAX / 2);
    let mut weight = base;
    let mut spo2 = base;
    for p in rules.pathways.values() {
        if let Some(w) = &p.weight_gain {
            weight = weight.max(w.window_secs).max(w.rate_window_secs);
        }
        if let Some(s) = &p.spo2_fall {
            spo2 = spo2.max(86_400 + s.sustain_secs);
        }
    }
    Vital::ALL
        .iter()
        .map(|v| {
            let secs = match v {
                Vital::BodyWeight => weight,
                Vital::Spo2 => spo2,
                _ => base,
            };
            (*v, secs)
        })
        .collect()
}

/// Replays stored readings in one-hour slices, oldest first. Returns how many.
async fn replay(
    store: &Backend,
    shards: &mut Shards,
    horizons: &[(Vital, i64)],
    now: DateTime<Utc>,
    shutdown: &CancellationToken,
) -> Result<Option<u64>> {
    let since: Vec<(String, DateTime<Utc>)> = horizons
        .iter()
        .map(|(v, secs)| {
            (
                v.as_str().to_string(),
                now - chrono::Duration::seconds(*secs),
            )
        })
        .collect();
    let Some(earliest) = since.iter().map(|(_, t)| *t).min() else {
        return Ok(Some(0));
    };
    let slice = chrono::Duration::hours(1);
    let mut from = earliest;
    let mut count = 0u64;
    // Up to now plus the accepted clock skew of devices.
    let end = now + chrono::Duration::minutes(10);
    while from < end {
        let to = (from + slice).min(end);
        let Some(rows) = retry("replay readings", shutdown, || {
            store.replay_slice(from, to, &since)
        })
        .await
        else {
            return Ok(None);
        };
        for r in rows {
            if let Some(reading) = rule_reading_from_replay(&r) {
                shards.send(Input::Replay(reading)).await?;
                count += 1;
            }
        }
        from = to;
    }
    Ok(Some(count))
}

fn rule_reading_from_replay(r: &ReplayRow) -> Option<RuleReading> {
    Some(RuleReading {
        patient: Arc::from(r.patient_id.as_str()),
        vital: Vital::from_name(&r.vital)?,
        value: r.value,
        at: r.time.timestamp(),
        update_interval_secs: None,
        last_in_set: true,
        device: device_key(&r.device_id),
    })
}

/// The device a reading came from, for its own silence watch (typed-in
/// observations have none).
fn device_key(device_id: &str) -> Option<PatientKey> {
    (device_id != "manual").then(|| Arc::from(device_id))
}

struct Router {
    shards: Shards,
    store: Backend,
    /// Highest settings version seen.
    version: i64,
    /// The settings version applied per patient (refreshes re-read a short
    /// overlap; unchanged patients are skipped).
    applied: std::collections::HashMap<String, i64>,
    /// The pathway each monitored patient is on (a reload may not drop one).
    pathway_of: std::collections::HashMap<String, String>,
    cfg: RulesConfig,
    /// The pathway files' names, sizes and modification times.
    fingerprint: Vec<(PathBuf, u64, Option<SystemTime>)>,
}

impl Router {
    /// Sends the settings of patients the shards do not know yet (enrolled
    /// since start-up) before their readings.
    async fn learn(&mut self, batch: &[NewReading], shutdown: &CancellationToken) -> Result<()> {
        let unknown: HashSet<&str> = batch
            .iter()
            .map(|r| r.patient_id.as_str())
            .filter(|p| !self.shards.knows(p))
            .collect();
        self.learn_ids(unknown.into_iter().map(str::to_string).collect(), shutdown)
            .await
    }

    /// Loads the settings of these patients if the shards do not know them.
    async fn learn_ids(&mut self, ids: Vec<String>, shutdown: &CancellationToken) -> Result<()> {
        let ids: Vec<String> = ids.into_iter().filter(|p| !self.shards.knows(p)).collect();
        if ids.is_empty() {
            return Ok(());
        }
        let store = self.store.clone();
        let Some(rows) = retry("load new patients", shutdown, || {
            store.patient_rows(PatientFilter::Ids(&ids))
        })
        .await
        else {
            return Ok(());
        };
        self.apply(rows).await.map(|_| ())
    }

    /// Sends changed patients' settings; returns how many changed.
    async fn apply(&mut self, rows: Vec<PatientRow>) -> Result<usize> {
        let today = wardwatch_core::clock::engine::now().date_naive();
        let mut changed = 0;
        for row in rows {
            self.version = self.version.max(row.settings_version);
            if self.applied.get(&row.id) == Some(&row.settings_version) {
                continue;
            }
            self.applied.insert(row.id.clone(), row.settings_version);
            changed += 1;
            let config = Arc::new(patient_config(&row, today));
            track_pathway(&mut self.pathway_of, &row);
            if !self
                .shards
                .rules
                .load()
                .pathways
                .contains_key(&config.pathway)
            {
                missing_pathway(&row);
            }
            self.shards
                .send(Input::Patient {
                    patient: Arc::from(row.id.as_str()),
                    config,
                })
                .await?;
        }
        // Lets operators (and tests) see which settings the rules run on.
        metrics::gauge!("wardwatch_rules_settings_version").set(self.version as f64);
        Ok(changed)
    }

    async fn refresh(&mut self, shutdown: &CancellationToken) -> Result<()> {
        let store = self.store.clone();
        let since = self.version;
        let Some(rows) = retry("refresh patients", shutdown, || {
            store.patient_rows(PatientFilter::ChangedSince(since))
        })
        .await
        else {
            return Ok(());
        };
        let changed = self.apply(rows).await?;
        if changed > 0 {
            info!(
                message = "Patients' rule settings changed.",
                patients = changed
            );
        }
        Ok(())
    }

    /// Reloads the pathway files; an invalid set is refused and the running
    /// rules are kept.
    fn reload(&mut self, why: &str) {
        let source = self.cfg.pathways();
        self.fingerprint = fingerprint(&source);
        let loaded = load_rule_set(&source).and_then(|set| {
            // No silent fallback: a set that drops a pathway patients are on
            // is refused, so nobody is quietly moved to other rules.
            let mut orphaned: Vec<(&String, &String)> = self
                .pathway_of
                .iter()
                .filter(|(_, pw)| !set.pathways.contains_key(*pw))
                .collect();
            orphaned.sort();
            if let Some((patient, pathway)) = orphaned.first() {
                crate::error::bail!(
                    "pathway {pathway:?} is missing from {} but {} monitored patient(s) are on it (e.g. {patient}); \
                     move them to another pathway first",
                    source,
                    orphaned.iter().filter(|(_, p)| p == pathway).count()
                );
            }
            Ok(set)
        });
        match loaded {
            Ok(set) => {
                let n = set.pathways.len();
                self.shards.reload(set);
                metrics::counter!("wardwatch_rules_reloads_total", "outcome" => "applied")
                    .increment(1);
                info!(message = "Rules reloaded.", trigger = why, pathways = n);
            }
            Err(e) => {
                metrics::counter!("wardwatch_rules_reloads_total", "outcome" => "refused")
                    .increment(1);
                error!(
                    message = "Rules reload refused; the running rules are kept.",
                    trigger = why,
                    error = format!("{e:#}")
                );
            }
        }
    }
}

fn track_pathway(pathway_of: &mut std::collections::HashMap<String, String>, row: &PatientRow) {
    if row.discharged {
        pathway_of.remove(&row.id);
    } else {
        pathway_of.insert(row.id.clone(), row.pathway.clone());
    }
}

/// A stored patient on a pathway the files do not define (enrolment and
/// reload refuse that, so only a file removed while the engine was down
/// gets here): said loudly, counted, and the general pathway's rules run
/// rather than none.
fn missing_pathway(row: &PatientRow) {
    error!(message = "Patient's pathway is not configured; the general pathway applies until it is restored.", patient = %row.id, pathway = %row.pathway);
}

/// A cheap change detector for the pathway directory (no inotify needed,
/// works on every filesystem and in containers).
/// What a reload watches: the folder's files, sizes and times (nothing for
/// the built-in set, which cannot change under a running engine).
fn fingerprint(source: &Source) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let Source::Dir(dir) = source else {
        return Vec::new();
    };
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "toml"))
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some((e.path(), m.len(), m.modified().ok()))
        })
        .collect();
    out.sort();
    out
}

fn hangups() -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}

async fn next_hangup(s: &mut Option<tokio::signal::unix::Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

async fn route(
    mut router: Router,
    mut feed: mpsc::Receiver<RulesInput>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(router.cfg.tick_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut refresh = tokio::time::interval(Duration::from_secs(router.cfg.refresh_secs));
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let watch_every = Duration::from_secs(router.cfg.watch_secs.max(1));
    let mut watch = tokio::time::interval(watch_every);
    let mut hup = hangups();
    let result: Result<()> = async {
        loop {
            tokio::select! {
                // The clock first, so no_data keeps time under full ingest load.
                biased;
                _ = tick.tick() => {
                    router.shards.tick(wardwatch_core::clock::engine::now().timestamp()).await?;
                    publish_stats(&router.shards);
                }
                _ = refresh.tick() => router.refresh(&shutdown).await?,
                _ = next_hangup(&mut hup) => router.reload("SIGHUP"),
                _ = watch.tick(), if router.cfg.watch_secs > 0 => {
                    if fingerprint(&router.cfg.pathways()) != router.fingerprint {
                        router.reload("file change");
                    }
                }
                input = feed.recv() => {
                    // Ends when ingest has stopped and dropped every sender.
                    let Some(input) = input else { return Ok(()) };
                    let batch = match input {
                        RulesInput::Readings(batch) => batch,
                        RulesInput::ManualSet { patient_id, context, taken_at } => {
                            router.learn_ids(vec![patient_id.clone()], &shutdown).await?;
                            let values = context
                                .iter()
                                .map(|(vital, value, t)| wardwatch_rules::patient::Evidence {
                                    vital: *vital,
                                    value: *value,
                                    at: t.timestamp(),
                                })
                                .collect();
                            router
                                .shards
                                .send(Input::ScoreAsOf {
                                    patient: Arc::from(patient_id.as_str()),
                                    values,
                                    at: taken_at.timestamp(),
                                })
                                .await?;
                            continue;
                        }
                    };
                    if let Some(first) = batch.first() {
                        // Receipt → the rules: ingest, commit and the feed queue.
                        let lag = (wardwatch_core::clock::engine::now() - first.received_at).num_microseconds().unwrap_or(0);
                        metrics::histogram!("wardwatch_rules_input_latency_seconds")
                            .record(lag.max(0) as f64 / 1e6);
                    }
                    router.learn(&batch, &shutdown).await?;
                    let mut readings = Vec::with_capacity(batch.len());
                    let mut patient: Option<PatientKey> = None;
                    for (i, r) in batch.iter().enumerate() {
                        // Consecutive readings of one patient come from one
                        // message (batch order is message order): one set.
                        let last_in_set = batch
                            .get(i + 1)
                            .is_none_or(|next| next.patient_id != r.patient_id);
                        let key = match &patient {
                            Some(k) if k.as_ref() == r.patient_id => k.clone(),
                            _ => Arc::from(r.patient_id.as_str()),
                        };
                        patient = Some(key.clone());
                        readings.push(RuleReading {
                            patient: key,
                            vital: r.vital,
                            value: r.value,
                            at: r.time.timestamp(),
                            update_interval_secs: r.update_interval_secs,
                            last_in_set,
                            device: device_key(&r.device_id),
                        });
                    }
                    router.shards.send_batch(readings).await?;
                }
            }
        }
    }
    .await;
    if let Err(e) = result {
        error!(message = "Rules router stopped.", error = format!("{e:#}"));
    }
    let shards = router.shards;
    let stats = shards.stats.clone();
    // Joining the worker threads blocks: do it off the async workers.
    let _ = tokio::task::spawn_blocking(move || shards.shutdown()).await;
    info!(
        message = "Rules stopped.",
        readings = stats.readings.load(std::sync::atomic::Ordering::Relaxed),
        flags = stats.flags.load(std::sync::atomic::Ordering::Relaxed)
    );
    // The flag channel is closed now; the writer drains it and stops.
}

/// The shards' atomic counters as Prometheus series.
fn publish_stats(shards: &Shards) {
    use std::sync::atomic::Ordering::Relaxed;
    let s = &shards.stats;
    metrics::counter!("wardwatch_rules_readings_total").absolute(s.readings.load(Relaxed));
    metrics::counter!("wardwatch_rules_replayed_readings_total").absolute(s.replayed.load(Relaxed));
    metrics::counter!("wardwatch_rules_unknown_patient_total")
        .absolute(s.unknown_patient.load(Relaxed));
    metrics::counter!("wardwatch_rules_missing_pathway_total")
        .absolute(s.missing_pathway.load(Relaxed));
    metrics::counter!("wardwatch_rules_flags_emitted_total").absolute(s.flags.load(Relaxed));
    metrics::gauge!("wardwatch_rules_patients").set(shards.patients() as f64);
    metrics::gauge!("wardwatch_rules_clock_seconds").set(shards.clock() as f64);
}

/// Records flags in batches, retrying while the database is unavailable.
/// A batch the database refuses (not a transient error) is split to find
/// the refused change, which is set aside with the reason
/// (`flags_set_aside`), as ingest quarantines a refused reading: one bad
/// flag must never hold every other flag and, behind them, every
/// acknowledgement to the broker.
async fn write_flags(
    store: Backend,
    mut flags: mpsc::Receiver<PatientFlag>,
    on_flags: Option<Arc<tokio::sync::Notify>>,
    stop: CancellationToken,
) {
    let mut batch: Vec<PatientFlag> = Vec::with_capacity(256);
    loop {
        batch.clear();
        // recv_many returns 0 only when the channel is closed and empty.
        if flags.recv_many(&mut batch, 256).await == 0 {
            return;
        }
        let records: Vec<FlagRecord> = batch.iter().map(flag_record).collect();
        // Slices still to write, first on top: order is kept (a raise is
        // written before its clear).
        let mut pending = Vec::with_capacity(8);
        pending.push(0..records.len());
        while let Some(range) = pending.pop() {
            let slice = &records[range.clone()];
            let mut backoff = Duration::from_millis(100);
            loop {
                match store.write_flags(slice).await {
                    Ok(_) => {
                        for f in &batch[range.clone()] {
                            log_flag(f);
                        }
                        metrics::counter!("wardwatch_flag_writes_total", "outcome" => "ok")
                            .increment(1);
                        break;
                    }
                    Err(e) if !e.is_transient() && slice.len() > 1 => {
                        metrics::counter!("wardwatch_flag_writes_total", "outcome" => "refused")
                            .increment(1);
                        let mid = range.start + slice.len() / 2;
                        pending.push(mid..range.end);
                        pending.push(range.start..mid);
                        break;
                    }
                    Err(e) if !e.is_transient() => {
                        set_aside(&store, &slice[0], &e.to_string()).await;
                        break;
                    }
                    Err(e) => {
                        metrics::counter!("wardwatch_flag_writes_total", "outcome" => "error")
                            .increment(1);
                        warn!(message = "Cannot record flags; retrying.", error = %e, flags = slice.len());
                        tokio::select! {
                            // Shutting down with the database down: the start-up
                            // replay raises these again from the stored readings.
                            _ = stop.cancelled(), if flags.is_closed() => return,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                }
            }
        }
        // Alerting picks the new flag events up at once.
        if let Some(n) = &on_flags {
            n.notify_one();
        }
    }
}

/// Keeps a refused flag change, with the database's reason, where
/// operators see it; never silently dropped.
async fn set_aside(store: &Backend, f: &FlagRecord, reason: &str) {
    error!(
        message = "A flag change was refused by the database and set aside; the others are recorded.",
        patient = %f.patient_id,
        rule = %f.rule,
        change = f.change.as_str(),
        reason
    );
    metrics::counter!("wardwatch_flags_set_aside_total").increment(1);
    if let Err(e) = store
        .set_aside_flag(f, reason, wardwatch_core::clock::engine::now())
        .await
    {
        error!(message = "Cannot store a set-aside flag; it is only in this log.", patient = %f.patient_id, rule = %f.rule, summary = %f.summary, error = %e);
    }
}

fn flag_record(f: &PatientFlag) -> FlagRecord {
    let flag = &f.flag;
    FlagRecord {
        patient_id: f.patient.to_string(),
        rule: flag.key(),
        technical: flag.rule.is_technical(),
        severity: flag.severity.as_str(),
        change: match flag.state {
            FlagState::Raised | FlagState::Updated => FlagChange::Open,
            FlagState::Cleared => FlagChange::Clear,
        },
        at: DateTime::from_timestamp(flag.at, 0).unwrap_or_else(wardwatch_core::clock::engine::now),
        summary: flag.summary.clone(),
        evidence: serde_json::json!({
            "readings": flag.readings,
            "news2": flag.news2,
            "measure": flag.measure,
        }),
    }
}

fn log_flag(f: &PatientFlag) {
    let flag = &f.flag;
    metrics::counter!(
        "wardwatch_flags_total",
        "rule" => flag.rule.family(),
        "severity" => flag.severity.as_str(),
        "state" => flag.state.as_str()
    )
    .increment(1);
    if flag.state != FlagState::Updated {
        info!(
            message = "Flag.",
            patient = %f.patient,
            rule = %flag.rule,
            severity = flag.severity.as_str(),
            state = flag.state.as_str(),
            summary = %flag.summary
        );
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;

    fn row(dob: Option<NaiveDate>, pregnant: bool) -> PatientRow {
        PatientRow {
            id: "p".into(),
            pathway: "general".into(),
            spo2_scale: 1,
            care_plan_oxygen: false,
            date_of_birth: dob,
            pregnant,
            discharged: false,
            settings_version: 1,
            limits: vec![],
            devices: vec![],
        }
    }

    #[test]
    fn news2_applies_to_adults_from_their_sixteenth_birthday_and_not_in_pregnancy() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        let born = |y, m, d| Some(NaiveDate::from_ymd_opt(y, m, d).unwrap());
        assert!(news2_applies(&row(born(2010, 11, 23), false), today));
        assert!(!news2_applies(&row(born(2010, 11, 24), false), today));
        assert!(news2_applies(&row(None, false), today));
        assert!(!news2_applies(&row(born(1990, 1, 1), true), today));
    }

    #[test]
    fn stored_limits_are_validated_like_pathway_thresholds() {
        let good = LimitRow {
            vital: "spo2".into(),
            low: Some(88.0),
            high: Some(92.0),
            severity: "high".into(),
            persist_readings: 3,
            persist_secs: 600,
            clear_margin: 1.0,
            clear_hold_secs: 900,
        };
        assert!(limit_threshold(&good).is_ok());
        let bad = LimitRow {
            low: Some(95.0),
            ..good.clone()
        };
        assert!(limit_threshold(&bad).unwrap_err().contains("low"));
        let bad = LimitRow {
            vital: "mood".into(),
            ..good
        };
        assert!(limit_threshold(&bad).unwrap_err().contains("unknown vital"));
    }

    #[test]
    fn a_missing_pathway_folder_is_an_error_that_names_it_and_its_cause_once() {
        let e = load_rule_set(&Source::Dir("/nonexistent/pathways".into())).unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "loading pathways from /nonexistent/pathways: cannot read /nonexistent/pathways: \
             No such file or directory (os error 2)"
        );
    }

    #[test]
    fn replay_covers_the_trend_windows() {
        let h = horizons(&load_rule_set(&Source::BuiltIn).unwrap(), 120);
        let of = |v| h.iter().find(|(x, _)| *x == v).unwrap().1;
        assert_eq!(of(Vital::HeartRate), 7200);
        assert!(of(Vital::Spo2) >= 86_400 + 15 * 60);
        assert!(of(Vital::BodyWeight) >= 3 * 86_400);
    }
}
