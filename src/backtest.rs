//! `wardwatch backtest`: replays stored history (PostgreSQL or SQLite)
//! through a proposed rule set and team policies and reports, per patient
//! and per rule, what it would have raised against what was actually
//! raised. Read-only: the store is opened so that the database itself
//! refuses any write.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use wardwatch_core::Vital;
use wardwatch_eval::backtest::{compare, run_by_team, ActualAlert, ActualFlag, Backtest};
use wardwatch_eval::{Patient, Reading, Ward};
use wardwatch_store::rules::PatientFilter;
use wardwatch_store::{Backend, PgStore, RulesStore, SqliteStore};

use wardwatch_engine::config::{Config, DatabaseTarget, Source};

/// `wardwatch backtest` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct BacktestArgs {
    /// Start of the period (RFC 3339, or a date: midnight UTC).
    #[arg(long)]
    pub from: String,
    /// End of the period, exclusive (RFC 3339, or a date: midnight UTC).
    #[arg(long)]
    pub to: String,
    /// The proposed pathway files (default: the configured ones).
    #[arg(long)]
    pub pathways: Option<PathBuf>,
    /// The proposed team files (default: the configured ones).
    #[arg(long)]
    pub teams: Option<PathBuf>,
    /// Hours of history before `from` replayed first and not counted
    /// (trends and persistence need history).
    #[arg(long, default_value_t = 24)]
    pub warmup_hours: i64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// An RFC 3339 time or a date (midnight UTC).
fn parse_time(s: &str) -> Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .with_context(|| format!("{s:?} is neither an RFC 3339 time nor a YYYY-MM-DD date"))?;
    Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
}

/// Opens the configured store so that the database refuses writes.
async fn open_read_only(cfg: &Config) -> Result<Backend> {
    Ok(match cfg.database.target() {
        DatabaseTarget::Sqlite(path) => Backend::Sqlite(
            SqliteStore::open_read_only(&path)
                .await
                .with_context(|| format!("opening {} read-only", path.display()))?,
        ),
        DatabaseTarget::Postgres(url) => Backend::Pg(
            PgStore::connect_read_only(&url)
                .await
                .context("connecting to PostgreSQL read-only")?,
        ),
    })
}

/// Runs the backtest.
pub async fn run(args: &BacktestArgs, cfg: &Config) -> Result<Backtest> {
    let from = parse_time(&args.from)?;
    let to = parse_time(&args.to)?;
    anyhow::ensure!(from < to, "--from must be before --to");
    anyhow::ensure!(
        (0..=24 * 30).contains(&args.warmup_hours),
        "--warmup-hours must be between 0 and 720"
    );
    let rules = wardwatch_engine::scoring::load_rule_set(&match &args.pathways {
        Some(dir) => Source::Dir(dir.clone()),
        None => cfg.rules.pathways(),
    })?;
    let teams = wardwatch_engine::alerting::load_teams(&match &args.teams {
        Some(dir) => Source::Dir(dir.clone()),
        None => cfg.alerting.teams(),
    })?;
    let store = open_read_only(cfg).await?;
    let start = from - Duration::hours(args.warmup_hours);
    let rows = store
        .patient_rows(PatientFilter::All)
        .await
        .context("reading patients")?;
    let mut patients = Vec::with_capacity(rows.len());
    let mut index = BTreeMap::new();
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for row in &rows {
        let team = store
            .team_of(&row.id)
            .await
            .context("reading a patient's team")?
            .unwrap_or_else(|| wardwatch_alerting::policy::DEFAULT_TEAM.to_string());
        let config = wardwatch_engine::scoring::patient_config(row, from.date_naive());
        let i = patients.len();
        index.insert(row.id.clone(), i);
        groups.entry(team).or_default().push(i);
        patients.push(Patient {
            id: row.id.clone(),
            pathway: row.pathway.clone(),
            devices: row.devices.clone(),
            scale2: row.spo2_scale == 2,
            news2_applies: config.settings.news2_applies,
            care_plan_oxygen: row.care_plan_oxygen,
            overrides: config.settings.overrides.clone(),
            enrolled_at: None,
            scenario: None,
            technical: false,
            onset: None,
            actionable: None,
            deadline: None,
        });
    }
    // Every vital from the start; a day at a time so each query stays small.
    let horizons: Vec<(String, DateTime<Utc>)> = Vital::ALL
        .iter()
        .map(|v| (v.as_str().to_string(), start))
        .collect();
    let mut readings = Vec::new();
    let mut slice = start;
    while slice < to {
        let next = (slice + Duration::days(1)).min(to);
        for r in store
            .replay_slice(slice, next, &horizons)
            .await
            .context("reading stored readings")?
        {
            let (Some(&patient), Some(vital)) =
                (index.get(&r.patient_id), Vital::from_name(&r.vital))
            else {
                continue;
            };
            readings.push(Reading {
                patient,
                device: r.device_id,
                vital,
                value: r.value,
                at: r.time.timestamp(),
                ut: None,
            });
        }
        slice = next;
    }
    // A set is one patient's readings from one device at one time.
    readings.sort_by(|a, b| (a.at, a.patient, &a.device).cmp(&(b.at, b.patient, &b.device)));
    // The rows read carry no enrolment time: a patient is watched from
    // their first replayed reading, so a patient enrolled mid-period is not
    // counted silent before it (one with no readings at all is watched
    // from the start, and their devices' silence counts).
    for r in &readings {
        let p = &mut patients[r.patient];
        if p.enrolled_at.is_none() {
            p.enrolled_at = Some(r.at);
        }
    }
    let outcomes = store
        .outcomes_between(from, to)
        .await
        .context("reading raised flags and alerts")?;
    store.close().await;
    let ward = Ward {
        patients,
        readings,
        start: start.timestamp(),
        end: to.timestamp(),
    };
    let mut team_groups = Vec::new();
    for (team, members) in groups {
        let policy = teams
            .get(&team)
            .or_else(|| teams.get(wardwatch_alerting::policy::DEFAULT_TEAM))
            .with_context(|| format!("no policy for team {team} and no default team"))?;
        team_groups.push((policy, members));
    }
    let run = run_by_team(&ward, &rules, &team_groups);
    let flags: Vec<ActualFlag> = outcomes
        .flags
        .into_iter()
        .map(|f| ActualFlag {
            patient: f.patient_id,
            rule: f.rule,
            at: f.raised_at.timestamp(),
        })
        .collect();
    let alerts: Vec<ActualAlert> = outcomes
        .alerts
        .into_iter()
        .map(|a| ActualAlert {
            patient: a.patient_id,
            technical: a.kind == "technical",
            at: a.opened_at.timestamp(),
        })
        .collect();
    Ok(compare(&ward, &run, from.timestamp(), &flags, &alerts))
}
