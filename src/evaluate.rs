//! `wardwatch evaluate`: detection and alert burden on the realistic
//! simulated home ward (`wardwatch_sim::home`), through the real rules core
//! and alert lifecycle (`wardwatch_eval`), with naive single-reading limits
//! side by side.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use wardwatch_alerting::policy::Team;
use wardwatch_eval::{report, run_engine, run_naive, Nurse, Report, Ward};
use wardwatch_rules::shard::RuleSet;
use wardwatch_sim::home::{HomePlan, HomeWard};

use wardwatch_engine::config::{Config, Source};

/// `wardwatch evaluate` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct EvaluateArgs {
    /// Patients (a block of twelve has every kit and scenario).
    #[arg(long, default_value_t = 48)]
    pub patients: usize,
    /// Days of simulated ward time.
    #[arg(long, default_value_t = 14)]
    pub days: i64,
    /// Seed: the same seed gives the same ward.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Pathway files to evaluate (default: the configured ones).
    #[arg(long)]
    pub pathways: Option<PathBuf>,
    /// Team files; the `default` team's policy is used (default: the configured ones).
    #[arg(long)]
    pub teams: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The rule set and team policy to evaluate.
pub fn rules_and_team(
    cfg: &Config,
    pathways: Option<&Path>,
    teams: Option<&Path>,
) -> Result<(RuleSet, Team)> {
    let rules = wardwatch_engine::scoring::load_rule_set(
        &pathways.map_or_else(|| cfg.rules.pathways(), |d| Source::Dir(d.into())),
    )?;
    let teams = wardwatch_engine::alerting::load_teams(
        &teams.map_or_else(|| cfg.alerting.teams(), |d| Source::Dir(d.into())),
    )?;
    let team = teams
        .get(wardwatch_alerting::policy::DEFAULT_TEAM)
        .cloned()
        .context("the teams directory has no default team")?;
    Ok((rules, team))
}

/// Runs the evaluation.
pub fn run(args: &EvaluateArgs, cfg: &Config) -> Result<Report> {
    let (rules, team) = rules_and_team(cfg, args.pathways.as_deref(), args.teams.as_deref())?;
    anyhow::ensure!(
        args.patients > 0 && args.days > 0,
        "patients and days must be positive"
    );
    let home = HomeWard::new(HomePlan {
        seed: args.seed,
        patients: args.patients,
        days: args.days,
        ..HomePlan::default()
    });
    let ward = Ward::from_home(&home);
    let engine = run_engine(&ward, rules.clone(), &team, Nurse::default());
    let naive = run_naive(&ward, &rules);
    Ok(report(&ward, &engine, &naive))
}
