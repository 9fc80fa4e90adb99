//! Fault injection under a steady `wardwatch loadgen` load. Each scenario
//! runs the real engine against its own Mosquitto (project config,
//! persistence on) and a fresh PostgreSQL database, injects one fault
//! while loadgen publishes and deteriorating patients raise alerts, then
//! counts every published reading in the store and every notification at a
//! local webhook receiver, and prints one `FAULT …` line with the figures
//! (`scripts/faults.sh` runs the long pass and collects them).
//!
//! `WARDWATCH_FAULT_SECS` sets the load's length (default 20 s: the pass CI
//! runs); `WARDWATCH_FAULT_SEED` the random moments of the kills.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{Duration as ChronoDuration, SecondsFormat, Utc};
use common::webhook::*;
use common::*;
use rand::{Rng, SeedableRng};

/// Every tier waits this long for an acknowledgement before the next.
const TIER_WAIT_SECS: u64 = 6;
/// The background load: devices × 1 pack/s × readings per pack.
const DEVICES: usize = 40;
const PACK: usize = 5;
const TEAM: &str = "ward-f";
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

fn load_secs() -> u64 {
    std::env::var("WARDWATCH_FAULT_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
        .max(10)
}

fn seed() -> u64 {
    std::env::var("WARDWATCH_FAULT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20261203)
}

fn rfc3339(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// One scenario's ward: receiver, broker, database, engine, and the
/// patients who deteriorate during the run.
struct Ward {
    name: &'static str,
    dir: tempfile::TempDir,
    receiver: Receiver,
    broker: Broker,
    db: Db,
    engine: Option<Engine>,
    client_id: String,
    engine_db_url: String,
    env: Vec<(String, String)>,
    probes: Vec<String>,
    peak_rss_kib: u64,
}

impl Ward {
    async fn new(name: &'static str) -> Ward {
        let dir = tempfile::tempdir().unwrap();
        let receiver = Receiver::default();
        let port = receiver.start().await;
        let teams = dir.path().join("teams");
        std::fs::create_dir_all(&teams).unwrap();
        let hook = |p: &str| {
            format!(
                r#"[{{ channel = "webhook", url = "http://127.0.0.1:{port}/{p}", secret_env = "WARDWATCH_TEST_SECRET" }}]"#
            )
        };
        std::fs::write(
            teams.join("default.toml"),
            format!(
                r#"id = "default"
fallback = {{ channel = "webhook", url = "http://127.0.0.1:{port}/fallback", secret_env = "WARDWATCH_TEST_SECRET" }}
[escalation]
repeat = "1h"
group_window = "1s"
start_tier = {{ low = 0, medium = 0, high = 0, emergency = 0 }}
[[escalation.tiers]]
name = "ward nurse"
wait = "{TIER_WAIT_SECS}s"
targets = {}
[[escalation.tiers]]
name = "nurse in charge"
wait = "{TIER_WAIT_SECS}s"
targets = {}
"#,
                hook("tier0"),
                hook("tier1")
            ),
        )
        .unwrap();
        let shipped = std::fs::read_to_string(repo().join("config/wardwatch.toml")).unwrap();
        let config = edit(
            &edit(
                &shipped,
                "request_timeout_ms = 10000",
                "request_timeout_ms = 1000",
            ),
            "max_attempts = 6",
            "max_attempts = 3",
        );
        let config_path = dir.path().join("wardwatch.toml");
        std::fs::write(&config_path, config).unwrap();
        let env = vec![
            (
                "WARDWATCH_TEAMS_DIR".to_string(),
                teams.to_string_lossy().into_owned(),
            ),
            ("WARDWATCH_TEST_SECRET".into(), SECRET.into()),
            (
                "WARDWATCH_CONFIG".into(),
                config_path.to_string_lossy().into_owned(),
            ),
        ];
        let broker = Broker::start().await;
        let db = Db::create(&format!("fault_{name}")).await;
        let engine_db_url = db.url.clone();
        Ward {
            name,
            dir,
            receiver,
            broker,
            db,
            engine: None,
            client_id: unique("eng"),
            engine_db_url,
            env,
            probes: Vec::new(),
            peak_rss_kib: 0,
        }
    }

    async fn start_engine(&mut self) {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.engine = Some(
            Engine::start_with(
                &self.broker.engine_url(),
                &self.engine_db_url,
                &self.client_id,
                &env,
            )
            .await,
        );
    }

    fn engine(&self) -> &Engine {
        self.engine.as_ref().expect("engine running")
    }

    fn sample_memory(&mut self) {
        if let Some(e) = &self.engine {
            let (rss, hwm) = e.memory_kib();
            self.peak_rss_kib = self.peak_rss_kib.max(rss).max(hwm);
        }
    }

    /// Patients who each deteriorate once during the run: one alert each
    /// is expected, paged at tier 0 and, with nobody acknowledging, at
    /// tier 1 a tier's wait later.
    fn enrol_probes(&mut self, n: usize) {
        let from = rfc3339(Utc::now() - ChronoDuration::hours(1));
        for i in 0..n {
            let p = format!("fx-{i}");
            enrol(&self.db.url, &p, TEAM, &format!("fxd-{i}"), &from);
            self.probes.push(p);
        }
    }

    /// Starts `wardwatch loadgen` for `secs` seconds in the background.
    fn loadgen(&self, secs: u64) -> std::process::Child {
        wardwatch()
            .args([
                "loadgen",
                "--mqtt-url",
                &self.broker.url(LOADGEN_USER, LOADGEN_PASS),
                "--database-url",
                &self.db.url,
                "--devices",
                &DEVICES.to_string(),
                "--rate",
                "1",
                "--duration",
                &secs.to_string(),
                "--pack-size",
                &PACK.to_string(),
                "--connections",
                "2",
                "--settle",
                "90",
                "--team",
                TEAM,
                "--prefix",
                &format!("lg-{}-", self.name),
                "--json",
                "--quiet",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start loadgen")
    }
}

/// The scenario's figures, printed as one line and checked.
struct Figures {
    published: i64,
    stored: i64,
    lost: i64,
    duplicated: i64,
    alerts_expected: usize,
    alerts_opened: i64,
    paged: BTreeMap<String, usize>,
    doubled_steps: usize,
    /// Packs loadgen published that the broker never acknowledged (a
    /// broker killed with them in flight): by MQTT's contract still the
    /// publisher's to resend, so not the engine's to have stored.
    unacked_messages: i64,
    extra: String,
}

impl Figures {
    fn print(&self, name: &str) {
        let paged: Vec<String> = self.paged.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "FAULT scenario={name} secs={} readings_published={} stored={} lost={} duplicated={} packs_unacknowledged_by_broker={} alerts_expected={} opened={} notified[{}] steps_notified_twice={} {}",
            load_secs(),
            self.published,
            self.stored,
            self.lost,
            self.duplicated,
            self.unacked_messages,
            self.alerts_expected,
            self.alerts_opened,
            paged.join(" "),
            self.doubled_steps,
            self.extra
        );
    }
}

/// Waits for loadgen's summary and counts the store and the receiver.
/// `tiers` are the receiver paths every probe's alert must reach.
async fn finish(
    ward: &mut Ward,
    loadgen: std::process::Child,
    tiers: &[&str],
    extra: String,
) -> Figures {
    let out = tokio::task::spawn_blocking(move || loadgen.wait_with_output())
        .await
        .unwrap()
        .expect("loadgen output");
    assert!(
        out.status.success(),
        "loadgen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("loadgen's JSON summary");
    let published = summary["readings_published"].as_i64().unwrap();
    let stored = summary["readings_stored"].as_i64().unwrap();
    // Rows beyond one per published reading (the unique key makes exact
    // copies impossible; this would catch a reading stored under two times).
    let rows = ward
        .db
        .count("SELECT count(*) FROM readings WHERE patient_id LIKE 'lg-%'")
        .await;
    let distinct = ward
        .db
        .count("SELECT count(*) FROM (SELECT DISTINCT patient_id, vital, time FROM readings WHERE patient_id LIKE 'lg-%') d")
        .await;
    let duplicated = (rows - published).max(0) + (rows - distinct);
    // Every probe's alert reaches every tier asked for.
    let expected = ward.probes.len();
    let receiver = ward.receiver.clone();
    let probes: HashSet<String> = ward.probes.iter().cloned().collect();
    eventually("every probe's alert notified at every tier", || {
        let receiver = receiver.clone();
        let probes = probes.clone();
        async move {
            let hits = receiver.hits();
            tiers
                .iter()
                .all(|t| {
                    let reached: HashSet<&str> = hits
                        .iter()
                        .filter(|h| h.path == *t && h.body["purpose"] != "update")
                        .filter_map(|h| h.body["patient_id"].as_str())
                        .filter(|p| probes.contains(*p))
                        .collect();
                    reached.len() == probes.len()
                })
                .then_some(())
        }
    })
    .await;
    let opened = ward
        .db
        .count("SELECT count(*) FROM alerts WHERE patient_id LIKE 'fx-%' AND kind <> 'delivery'")
        .await;
    let hits = ward.receiver.hits();
    let mut paged = BTreeMap::new();
    let mut keys_per_step: BTreeMap<(String, String, String), HashSet<String>> = BTreeMap::new();
    for h in &hits {
        let purpose = h.body["purpose"].as_str().unwrap_or("").to_string();
        if purpose == "update" {
            continue;
        }
        // The idempotency key names the step (alert, purpose, tier, round,
        // target); retries reuse it. The same step with another round is
        // a second notification (repeats are an hour apart in this policy).
        let step: Vec<&str> = h
            .key
            .split(':')
            .filter(|part| !part.starts_with("round-"))
            .collect();
        keys_per_step
            .entry((step.join(":"), h.path.clone(), purpose))
            .or_default()
            .insert(h.key.clone());
    }
    for ((_, path, purpose), _) in keys_per_step.iter() {
        *paged
            .entry(format!("{}:{purpose}", path.trim_start_matches('/')))
            .or_insert(0) += 1;
    }
    let doubled: Vec<_> = keys_per_step.iter().filter(|(_, k)| k.len() > 1).collect();
    if !doubled.is_empty() {
        println!("steps notified under more than one key: {doubled:?}");
    }
    let doubled_steps = doubled.len();
    ward.sample_memory();
    let f = Figures {
        published,
        stored,
        lost: summary["readings_lost"].as_i64().unwrap(),
        duplicated,
        alerts_expected: expected,
        alerts_opened: opened,
        paged,
        doubled_steps,
        unacked_messages: (summary["messages_published"].as_i64().unwrap()
            - summary["broker_acks"].as_i64().unwrap())
        .max(0),
        extra,
    };
    f.print(ward.name);
    assert!(published > 0);
    // Every reading the broker acknowledged is stored; only a broker killed
    // mid-publish may leave packs unacknowledged (and so unstored).
    assert!(
        f.lost <= f.unacked_messages * PACK as i64,
        "readings lost beyond what the broker never acknowledged"
    );
    if ward.name != "broker" {
        assert_eq!(f.lost, 0, "readings lost");
        assert_eq!(f.unacked_messages, 0, "packs the broker never acknowledged");
    }
    assert_eq!(f.duplicated, 0, "readings duplicated");
    assert_eq!(
        opened, expected as i64,
        "one alert per deteriorating patient"
    );
    assert_eq!(f.doubled_steps, 0, "an escalation step notified twice");
    assert_eq!(
        ward.receiver.bad_signatures.load(Ordering::SeqCst),
        0,
        "every webhook signature verifies"
    );
    f
}

/// The run's clock and the probes' deteriorations, spread over `secs`;
/// each scenario calls [`Run::tick`] in its loop and injects its fault
/// between ticks.
struct Run {
    publisher: Publisher,
    started: Instant,
    secs: u64,
    every: Duration,
    next: usize,
}

impl Run {
    async fn start(ward: &Ward, secs: u64) -> Run {
        Run {
            publisher: ward.broker.loadgen_publisher().await,
            started: Instant::now(),
            secs,
            every: Duration::from_secs_f64(secs as f64 / (ward.probes.len() + 1) as f64),
            next: 0,
        }
    }

    fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    fn going(&self) -> bool {
        self.elapsed() < Duration::from_secs(self.secs)
    }

    async fn deteriorate_next(&mut self) {
        let bt = Utc::now().timestamp_micros() as f64 / 1e6 - 5.0;
        self.publisher
            .publish(
                &readings_topic(&format!("fxd-{}", self.next)),
                septic_pack(bt),
            )
            .await;
        self.next += 1;
    }

    /// Publishes a deterioration when one is due, samples memory, waits 100 ms.
    async fn tick(&mut self, ward: &mut Ward) {
        if self.next < ward.probes.len() && self.elapsed() >= self.every * (self.next as u32 + 1) {
            self.deteriorate_next().await;
        }
        ward.sample_memory();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    /// Publishes any deterioration still due and waits for the broker's acks.
    async fn end(mut self, ward: &Ward) {
        while self.next < ward.probes.len() {
            self.deteriorate_next().await;
        }
        self.publisher.flush().await;
    }
}

fn probes_for(secs: u64) -> usize {
    (secs / 5).clamp(3, 40) as usize
}

/// `kill -9` of the engine five times at random moments, restarted each
/// time: every reading stored once, every alert paged once per tier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_five_times_under_load() {
    let secs = load_secs();
    let mut ward = Ward::new("kill9").await;
    ward.start_engine().await;
    ward.enrol_probes(probes_for(secs));
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed());
    let mut at: Vec<Duration> = (0..5)
        .map(|_| Duration::from_secs_f64(rng.random_range(0.1..0.9) * secs as f64))
        .collect();
    at.sort();
    let lg = ward.loadgen(secs);
    let mut kills = 0usize;
    let mut run = Run::start(&ward, secs).await;
    while run.going() {
        run.tick(&mut ward).await;
        if kills < at.len() && run.elapsed() >= at[kills] {
            kills += 1;
            ward.sample_memory();
            if let Some(e) = ward.engine.as_mut() {
                e.kill9();
            }
            ward.start_engine().await;
        }
    }
    run.end(&ward).await;
    while kills < at.len() {
        kills += 1;
        ward.engine.as_mut().unwrap().kill9();
        ward.start_engine().await;
    }
    let extra = format!("kills={kills} peak_rss_kib={}", ward.peak_rss_kib);
    finish(&mut ward, lg, &["/tier0", "/tier1"], extra).await;
}

/// Mosquitto killed (SIGKILL) mid-run and restarted from its persistence
/// file: once both are back, nothing lost, nothing paged twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_killed_and_restarted_under_load() {
    let secs = load_secs();
    let mut ward = Ward::new("broker").await;
    ward.start_engine().await;
    ward.enrol_probes(probes_for(secs));
    let lg = ward.loadgen(secs);
    let (kill_at, back_at) = (secs / 3, secs / 3 + 3);
    let mut state = 0;
    let mut run = Run::start(&ward, secs).await;
    while run.going() {
        run.tick(&mut ward).await;
        if state == 0 && run.elapsed() >= Duration::from_secs(kill_at) {
            state = 1;
            ward.broker.kill9();
        } else if state == 1 && run.elapsed() >= Duration::from_secs(back_at) {
            state = 2;
            ward.broker.resume().await;
        }
    }
    run.end(&ward).await;
    let extra = format!("broker_down_secs=3 peak_rss_kib={}", ward.peak_rss_kib);
    finish(&mut ward, lg, &["/tier0", "/tier1"], extra).await;
}

/// PostgreSQL unreachable for 30 s (half the run in the short pass): the
/// engine stops acknowledging, its memory stays bounded, it drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_gone_for_thirty_seconds_under_load() {
    let secs = load_secs();
    let mut ward = Ward::new("database").await;
    let proxy = PgProxy::start(pg_port()).await;
    ward.engine_db_url = ward.db.url_via(proxy.port);
    ward.start_engine().await;
    ward.enrol_probes(probes_for(secs));
    let lg = ward.loadgen(secs);
    let outage = 30.min(secs / 2);
    let (cut_at, back_at) = (secs / 4, secs / 4 + outage);
    let mut state = 0;
    let mut rss_before = 0;
    let mut run = Run::start(&ward, secs).await;
    while run.going() {
        run.tick(&mut ward).await;
        if state == 0 && run.elapsed() >= Duration::from_secs(cut_at) {
            state = 1;
            rss_before = ward.engine().memory_kib().0;
            proxy.cut();
        } else if state == 1 && run.elapsed() >= Duration::from_secs(back_at) {
            state = 2;
            proxy.restore();
        }
    }
    run.end(&ward).await;
    let extra = format!(
        "outage_secs={outage} rss_before_kib={rss_before} peak_rss_kib={}",
        ward.peak_rss_kib
    );
    finish(&mut ward, lg, &["/tier0", "/tier1"], extra).await;
}

/// The first tiers' receiver fails (500) for the first half, then hangs:
/// retries, escalation past it, the `undeliverable` alert to the fallback,
/// and ingest never held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_then_hanging_receiver_under_load() {
    let secs = load_secs();
    let mut ward = Ward::new("webhook").await;
    ward.start_engine().await;
    ward.enrol_probes(probes_for(secs));
    ward.receiver.failing.store(true, Ordering::SeqCst);
    let lg = ward.loadgen(secs);
    let mut run = Run::start(&ward, secs).await;
    while run.going() {
        run.tick(&mut ward).await;
        if run.elapsed() >= Duration::from_secs(secs / 2)
            && ward.receiver.failing.load(Ordering::SeqCst)
        {
            ward.receiver.hanging.store(true, Ordering::SeqCst);
            ward.receiver.failing.store(false, Ordering::SeqCst);
        }
    }
    run.end(&ward).await;
    let extra = format!("peak_rss_kib={}", ward.peak_rss_kib);
    let f = finish(&mut ward, lg, &["/tier0", "/tier1", "/fallback"], extra).await;
    ward.receiver.hanging.store(false, Ordering::SeqCst);
    assert!(
        f.paged.get("fallback:undeliverable").copied().unwrap_or(0) >= ward.probes.len(),
        "the fallback told of every undeliverable alert: {:?}",
        f.paged
    );
}

/// A live-stream client that connects and never reads: ingest is not
/// slowed and the engine's memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_client_under_load() {
    use tokio::io::AsyncWriteExt;
    let secs = load_secs();
    let mut ward = Ward::new("sse").await;
    ward.start_engine().await;
    ward.enrol_probes(probes_for(secs));
    admin(
        &ward.db.url,
        &[
            "user", "add", "--id", "nurse-f", "--role", "nurse", "--team", TEAM,
        ],
    );
    let token = admin(&ward.db.url, &["token", "create", "--user", "nurse-f"])
        .trim()
        .to_string();
    // Several stalled readers: each sends its request and never reads.
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", ward.engine().http))
            .await
            .unwrap();
        s.write_all(
            format!(
                "GET /api/v1/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        stalled.push(s);
    }
    let rss_start = ward.engine().memory_kib().0;
    let lg = ward.loadgen(secs);
    let mut run = Run::start(&ward, secs).await;
    while run.going() {
        run.tick(&mut ward).await;
    }
    run.end(&ward).await;
    let extra = format!(
        "stalled_clients={} rss_start_kib={rss_start} peak_rss_kib={}",
        stalled.len(),
        ward.peak_rss_kib
    );
    finish(&mut ward, lg, &["/tier0", "/tier1"], extra).await;
    drop(stalled);
}

/// The engine host's clock jumps an hour forward, then back (libfaketime
/// on the engine process only; the monotonic clock untouched, as in a real
/// step): no escalation fires early or stalls, no reading is refused as
/// future-timed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_step_forward_and_back_under_load() {
    assert!(
        path_exists(std::path::Path::new(LIBFAKETIME)),
        "{LIBFAKETIME} is missing: install Debian's faketime package (scripts/test.sh does)"
    );
    let secs = load_secs();
    let mut ward = Ward::new("clock").await;
    let step_file = ward.dir.path().join("faketime");
    std::fs::write(&step_file, "+0\n").unwrap();
    for (k, v) in [
        ("LD_PRELOAD", LIBFAKETIME.to_string()),
        (
            "FAKETIME_TIMESTAMP_FILE",
            step_file.to_string_lossy().into_owned(),
        ),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".into()),
        ("FAKETIME_CACHE_DURATION", "1".into()),
    ] {
        ward.env.push((k.to_string(), v));
    }
    ward.start_engine().await;
    ward.enrol_probes(probes_for(secs));
    let lg = ward.loadgen(secs);
    let mut state = 0;
    let mut run = Run::start(&ward, secs).await;
    while run.going() {
        run.tick(&mut ward).await;
        if state == 0 && run.elapsed() >= Duration::from_secs(secs / 3) {
            state = 1;
            std::fs::write(&step_file, "+1h\n").unwrap();
        } else if state == 1 && run.elapsed() >= Duration::from_secs(2 * secs / 3) {
            state = 2;
            std::fs::write(&step_file, "+0\n").unwrap();
        }
    }
    run.end(&ward).await;
    // Each alert's tier 1 page came a tier's wait after its tier 0 page,
    // by the receiver's own clock: not at once, not an hour late.
    let extra_pending = format!("peak_rss_kib={}", ward.peak_rss_kib);
    let f = finish(&mut ward, lg, &["/tier0", "/tier1"], extra_pending).await;
    let hits = ward.receiver.hits();
    let alerts: HashSet<String> = hits
        .iter()
        .filter(|h| h.path == "/tier0")
        .map(|h| h.body["alert_id"].to_string())
        .collect();
    let mut gaps = Vec::new();
    for a in &alerts {
        let v: serde_json::Value = serde_json::from_str(a).unwrap();
        let (Some(t0), Some(t1)) = (
            hits.iter()
                .filter(|h| h.path == "/tier0" && h.body["alert_id"] == v)
                .map(|h| h.at)
                .min(),
            hits.iter()
                .filter(|h| h.path == "/tier1" && h.body["alert_id"] == v)
                .map(|h| h.at)
                .min(),
        ) else {
            panic!("alert {a} not paged at both tiers")
        };
        gaps.push(t1.duration_since(t0).as_secs_f64());
    }
    gaps.sort_by(f64::total_cmp);
    println!(
        "FAULT scenario=clock tier0_to_tier1_secs min={:.1} max={:.1} (tier wait {TIER_WAIT_SECS} s)",
        gaps[0],
        gaps[gaps.len() - 1]
    );
    assert!(
        gaps[0] >= TIER_WAIT_SECS as f64 - 1.5,
        "an escalation fired early after the clock step: {gaps:?}"
    );
    assert!(
        gaps[gaps.len() - 1] <= TIER_WAIT_SECS as f64 + 15.0,
        "an escalation stalled after the clock step: {gaps:?}"
    );
    let future = ward
        .db
        .count("SELECT count(*) FROM quarantine WHERE reason = 'future_time'")
        .await;
    assert_eq!(
        future, 0,
        "readings refused as future-timed after the step back"
    );
    assert_eq!(f.lost, 0);
}
