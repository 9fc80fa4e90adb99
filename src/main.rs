//! `wardwatch`: the command line. Parses, configures, calls the library.

use std::path::PathBuf;
use wardwatch_store::prelude::*;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use wardwatch::{loadgen, score};
use wardwatch_core::{DeviceId, PatientId};
use wardwatch_engine::{shutdown, telemetry, Config, Engine};
use wardwatch_store::alerts::StateFilter;

#[derive(Parser)]
#[command(
    name = "wardwatch",
    version,
    about = "Virtual-ward remote monitoring engine"
)]
struct Cli {
    /// Configuration file (default: config/wardwatch.toml if present).
    #[arg(long, global = true, env = "WARDWATCH_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the engine: MQTT ingest, storage, /healthz and /metrics.
    Serve,
    /// Create the database if needed and apply migrations, then exit.
    Migrate {
        /// PostgreSQL: also create (if absent) this login role and grant it
        /// what the engine needs: no UPDATE or DELETE on the audit trails,
        /// no DDL. Run `serve` as it (`database.url` with `user=`).
        #[arg(long, value_name = "ROLE")]
        engine_role: Option<String>,
    },
    /// Manage patients.
    Patient {
        #[command(subcommand)]
        command: PatientCommand,
    },
    /// Manage the device catalogue and assignments.
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// Work with alerts: list, acknowledge, resolve, snooze.
    Alert {
        #[command(subcommand)]
        command: AlertCommand,
    },
    /// Manage API users (roles and team memberships).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Simulate a fleet of devices and measure what the engine stores.
    Loadgen(loadgen::LoadgenArgs),
    /// Run the engine, the ward board and a simulated ward in one process;
    /// prints the board's address and a sign-in token.
    Demo(wardwatch::demo::DemoArgs),
    /// Run a simulated virtual ward: realistic patients and scripted
    /// deteriorations published over MQTT (enrols them first).
    Simulate(wardwatch::simulate::SimulateArgs),
    /// Measure detection and alert burden on a realistic simulated home
    /// ward (weeks of ward time in seconds), through the real rules and
    /// alert lifecycle, beside naive single-reading limits.
    Evaluate(wardwatch::evaluate::EvaluateArgs),
    /// Replay stored history through proposed pathways and team policies
    /// and compare, per patient and rule, with what was actually raised.
    /// Read-only against the store.
    Backtest(wardwatch::backtest::BacktestArgs),
    /// Issue MQTT broker credentials (password file and ACL lines) for a
    /// device, a team's app, an engine service or a staging load generator.
    Credentials(wardwatch::credentials::CredentialsArgs),
    /// Compute a clinical score from values given on the command line.
    Score {
        #[command(subcommand)]
        command: ScoreCommand,
    },
}

#[derive(Subcommand)]
enum ScoreCommand {
    /// NEWS2 (RCP 2017): total, band, clinical response, and each sub-score.
    News2(score::News2Args),
}

#[derive(Subcommand)]
enum PatientCommand {
    /// Enrol a patient on a team and pathway (or move an enrolled patient to
    /// another team); both are audited with who and why.
    Add {
        /// Patient id.
        #[arg(long)]
        id: String,
        /// Responsible team (a virtual ward).
        #[arg(long)]
        team: String,
        /// Pathway (a file in rules.pathways_dir); new patients default to `general`.
        #[arg(long)]
        pathway: Option<String>,
        /// Who enrols or moves them (default: `cli:` and the operating-system user).
        #[arg(long)]
        by: Option<String>,
        /// Why, for a move (default: "moved with `wardwatch patient add`").
        #[arg(long)]
        reason: Option<String>,
    },
    /// Change a clinical setting; each change is audited with who and why.
    Set {
        /// Patient id.
        #[arg(long)]
        id: String,
        #[command(flatten)]
        decision: Decision,
        /// Move to another pathway.
        #[arg(long)]
        pathway: Option<String>,
        /// SpO2 scale for NEWS2: 2 only for confirmed hypercapnic respiratory failure.
        #[arg(long, value_parser = clap::value_parser!(i16).range(1..=2))]
        spo2_scale: Option<i16>,
        /// On oxygen per the care plan (used when no reading says).
        #[arg(long)]
        care_plan_oxygen: Option<bool>,
        /// Pregnant (NEWS2 does not apply).
        #[arg(long)]
        pregnant: Option<bool>,
        /// Date of birth, YYYY-MM-DD (NEWS2 applies from 16).
        #[arg(long)]
        date_of_birth: Option<chrono::NaiveDate>,
    },
    /// Set a personalised limit on one vital (replaces the pathway's thresholds on it), audited.
    Limit(LimitArgs),
    /// Remove a personalised limit (the pathway's thresholds apply again), audited.
    Unlimit {
        /// Patient id.
        #[arg(long)]
        id: String,
        /// Vital name, e.g. spo2.
        #[arg(long)]
        vital: String,
        #[command(flatten)]
        decision: Decision,
    },
    /// Discharge: monitoring and alerts stop, history is kept.
    Discharge {
        /// Patient id.
        #[arg(long)]
        id: String,
        #[command(flatten)]
        decision: Decision,
        /// When, RFC 3339 (default: now).
        #[arg(long)]
        at: Option<DateTime<Utc>>,
    },
}

#[derive(clap::Args)]
struct LimitArgs {
    /// Patient id.
    #[arg(long)]
    id: String,
    /// Vital name, e.g. spo2.
    #[arg(long)]
    vital: String,
    /// Breach below this (canonical unit).
    #[arg(long)]
    low: Option<f64>,
    /// Breach above this.
    #[arg(long)]
    high: Option<f64>,
    /// low, medium, high or emergency.
    #[arg(long, default_value = "high")]
    severity: String,
    /// Raise after this many consecutive breaching readings ...
    #[arg(long, default_value_t = 3)]
    persist_readings: i32,
    /// ... or once the breach has lasted this long, seconds.
    #[arg(long, default_value_t = 600)]
    persist_secs: i32,
    /// Clear only this far back inside the limits ...
    #[arg(long, default_value_t = 1.0)]
    clear_margin: f64,
    /// ... for this long, seconds.
    #[arg(long, default_value_t = 900)]
    clear_hold_secs: i32,
    #[command(flatten)]
    decision: Decision,
}

/// Who made a clinical decision and why: every settings change records both.
#[derive(clap::Args)]
struct Decision {
    /// Who decided (a clinician's name or id).
    #[arg(long)]
    by: String,
    /// Why.
    #[arg(long)]
    reason: String,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create or update a user.
    Add {
        /// User id.
        #[arg(long)]
        id: String,
        /// admin, clinician, nurse, patient or proxy.
        #[arg(long)]
        role: String,
        /// A team the user works in (repeat for several).
        #[arg(long = "team")]
        teams: Vec<String>,
        /// For a patient or a proxy: whose record.
        #[arg(long)]
        patient: Option<String>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token; prints the token alone on stdout (it is shown once).
    Create {
        /// The user.
        #[arg(long)]
        user: String,
        /// Valid for this many days.
        #[arg(long, default_value_t = 30)]
        days: i64,
    },
    /// Revoke every token of a user.
    Revoke {
        /// The user.
        #[arg(long)]
        user: String,
    },
}

#[derive(Subcommand)]
enum AlertCommand {
    /// Alerts, newest first.
    List {
        /// Only this state: open, acknowledged, resolved or unresolved.
        #[arg(long)]
        state: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Take an alert: escalation stops at once (no further pages on any channel).
    Ack {
        /// Alert id.
        #[arg(long)]
        id: i64,
        /// Who (a named user).
        #[arg(long)]
        by: String,
    },
    /// Close an alert with an outcome.
    Resolve {
        /// Alert id.
        #[arg(long)]
        id: i64,
        /// Who.
        #[arg(long)]
        by: String,
        /// reviewed_no_action, advice_given, visit_arranged, escalated_emergency,
        /// device_or_data_issue or other (with --note).
        #[arg(long)]
        outcome: String,
        /// What happened.
        #[arg(long)]
        note: Option<String>,
    },
    /// Snooze one rule for one patient for a bounded time; a worse severity breaks through.
    Snooze {
        /// Patient id.
        #[arg(long)]
        patient: String,
        /// Rule key, e.g. news2 or threshold:spo2:0.
        #[arg(long)]
        rule: String,
        /// How long: 30m, 2h ... (at most the team's snooze_max).
        #[arg(long = "for")]
        duration: String,
        #[command(flatten)]
        decision: Decision,
    },
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// Lend a device to a patient from a time (default now); ends its previous assignment.
    Assign {
        /// Device id (as in its topic).
        #[arg(long)]
        device: String,
        /// Patient id.
        #[arg(long)]
        patient: String,
        /// Start of the assignment, RFC 3339 (default: now).
        #[arg(long)]
        from: Option<DateTime<Utc>>,
    },
    /// Return a device: end its assignment at a time (default now).
    Unassign {
        /// Device id.
        #[arg(long)]
        device: String,
        /// End of the assignment, RFC 3339 (default: now).
        #[arg(long)]
        at: Option<DateTime<Utc>>,
    },
}

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One readable line (with its causes), not a backtrace.
            eprintln!("error: {e:#}");
            // A configuration that cannot run gets EX_CONFIG, so a
            // supervisor can stop restarting into it (systemd:
            // RestartPreventExitStatus=78); anything else may pass.
            let config = e
                .chain()
                .filter_map(|c| c.downcast_ref::<wardwatch_engine::EngineError>())
                .any(wardwatch_engine::EngineError::is_config);
            if config {
                std::process::ExitCode::from(78)
            } else {
                std::process::ExitCode::FAILURE
            }
        }
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    // Scoring needs no configuration, database or runtime.
    if let Command::Credentials(args) = &cli.command {
        print!("{}", wardwatch::credentials::run(args)?);
        return Ok(());
    }
    if let Command::Score {
        command: ScoreCommand::News2(args),
    } = &cli.command
    {
        print!("{}", score::news2_report(args)?);
        return Ok(());
    }
    let path = cli.config.clone().or_else(|| {
        let p = PathBuf::from("config/wardwatch.toml");
        p.exists().then_some(p)
    });
    let cfg = Config::load(path.as_deref())?;
    telemetry::init_tracing(cfg.log.format, &cfg.log.filter);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(run(cli.command, cfg))
}

async fn run(command: Command, cfg: Config) -> Result<()> {
    match command {
        Command::Serve => Ok(Engine::new(cfg).run(shutdown::on_signal()).await?),
        Command::Migrate { engine_role } => {
            let backend = wardwatch_engine::try_connect(&cfg).await?;
            if let Some(role) = engine_role {
                match &backend {
                    wardwatch_store::Backend::Pg(store) => {
                        store
                            .grant_engine_role(&role)
                            .await
                            .with_context(|| format!("granting the engine role {role}"))?;
                        println!("engine role {role}: read and append on the audit trails, no UPDATE, DELETE or DDL");
                    }
                    wardwatch_store::Backend::Sqlite(_) => {
                        anyhow::bail!("--engine-role is for PostgreSQL: the embedded store has no roles (its audit trails are append-only by trigger)")
                    }
                }
            }
            println!("database ready");
            Ok(())
        }
        Command::Patient { command } => patient_command(command, &cfg).await,
        Command::Alert { command } => alert_command(command, &cfg).await,
        Command::User {
            command:
                UserCommand::Add {
                    id,
                    role,
                    teams,
                    patient,
                },
        } => {
            let store = admin_store(&cfg).await?;
            store
                .upsert_user(&id, &role, patient.as_deref(), &teams)
                .await?;
            println!("user {id} ({role}) teams [{}]", teams.join(", "));
            Ok(())
        }
        Command::Token { command } => {
            let store = admin_store(&cfg).await?;
            match command {
                TokenCommand::Create { user, days } => {
                    if !(1..=366).contains(&days) {
                        anyhow::bail!("--days must be between 1 and 366");
                    }
                    let token = wardwatch_api::new_token();
                    store
                        .insert_token(
                            &user,
                            &wardwatch_api::token_hash(&token),
                            Utc::now() + chrono::Duration::days(days),
                        )
                        .await?;
                    // The token alone, so scripts can capture it.
                    println!("{token}");
                }
                TokenCommand::Revoke { user } => {
                    let n = store.revoke_tokens(&user).await?;
                    println!("{n} token(s) of {user} revoked");
                }
            }
            Ok(())
        }
        Command::Device { command } => {
            let store = admin_store(&cfg).await?;
            match command {
                DeviceCommand::Assign {
                    device,
                    patient,
                    from,
                } => {
                    let (d, p) = (DeviceId::new(device)?, PatientId::new(patient)?);
                    let from = from.unwrap_or_else(Utc::now);
                    store.assign_device(&d, &p, from).await?;
                    println!("device {d} assigned to {p} from {}", from.to_rfc3339());
                }
                DeviceCommand::Unassign { device, at } => {
                    let d = DeviceId::new(device)?;
                    let at = at.unwrap_or_else(Utc::now);
                    store.unassign_device(&d, at).await?;
                    println!("device {d} returned at {}", at.to_rfc3339());
                }
            }
            Ok(())
        }
        Command::Score { .. } | Command::Credentials(_) => Ok(()),
        Command::Evaluate(args) => {
            let r = wardwatch::evaluate::run(&args, &cfg)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", r.table());
            }
            if !r.all_within_deadline() {
                anyhow::bail!("a scripted deterioration was not paged by its deadline");
            }
            Ok(())
        }
        Command::Backtest(args) => {
            let b = wardwatch::backtest::run(&args, &cfg).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&b)?);
            } else {
                print!("{}", b.table());
            }
            Ok(())
        }
        Command::Demo(args) => wardwatch::demo::run(args, cfg, shutdown::on_signal()).await,
        Command::Simulate(args) => {
            let json = args.json;
            let summary =
                wardwatch::simulate::run(args, wardwatch_engine::shutdown::on_signal()).await?;
            if json {
                println!("{}", serde_json::to_string(&summary)?);
            } else {
                summary.print();
            }
            Ok(())
        }
        Command::Loadgen(args) => {
            let json = args.json;
            let summary = loadgen::run(args).await?;
            if json {
                println!("{}", serde_json::to_string(&summary)?);
            } else {
                summary.print();
            }
            Ok(())
        }
    }
}

async fn alert_command(command: AlertCommand, cfg: &Config) -> Result<()> {
    use wardwatch_alerting::lifecycle::Outcome;
    use wardwatch_alerting::policy::Span;
    let store = admin_store(cfg).await?;
    let show = |a: &wardwatch_store::alerts::AlertRow| {
        format!(
            "alert {} {} {} {} patient {} team {} tier {} ({}) rules [{}]: {}",
            a.id,
            a.state,
            a.kind,
            a.severity,
            a.patient_id,
            a.team_id,
            a.tier,
            a.tier_name,
            a.rules.join(", "),
            a.summary
        )
    };
    match command {
        AlertCommand::List { state, limit, json } => {
            let state = match state.as_deref() {
                None => None,
                Some(s) => Some(StateFilter::parse(s).with_context(|| {
                    format!("--state must be open, acknowledged, resolved or unresolved, not {s:?}")
                })?),
            };
            for a in store.list_alerts(state, limit).await? {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "id": a.id, "patient_id": a.patient_id, "team_id": a.team_id,
                            "kind": a.kind, "severity": a.severity, "state": a.state,
                            "tier": a.tier, "tier_name": a.tier_name, "rules": a.rules,
                            "summary": a.summary, "opened_at": a.opened_at,
                            "acknowledged_by": a.acknowledged_by,
                        })
                    );
                } else {
                    println!("{}", show(&a));
                }
            }
        }
        AlertCommand::Ack { id, by } => {
            let a = store.acknowledge_alert(id, &by, Utc::now()).await?;
            println!("{}", show(&a));
        }
        AlertCommand::Resolve {
            id,
            by,
            outcome,
            note,
        } => {
            let o = Outcome::parse(&outcome).ok_or_else(|| {
                anyhow::anyhow!(
                    "unknown outcome {outcome:?}; one of: {}",
                    Outcome::ALL.map(Outcome::as_str).join(", ")
                )
            })?;
            let a = store
                .resolve_alert(id, &by, o.as_str(), note.as_deref(), Utc::now())
                .await?;
            println!("{}", show(&a));
        }
        AlertCommand::Snooze {
            patient,
            rule,
            duration,
            decision: Decision { by, reason },
        } => {
            if wardwatch_rules::patient::parse_flag_key(&rule).is_none() {
                anyhow::bail!("unknown rule {rule:?} (e.g. news2, threshold:spo2:0, no_data)");
            }
            let span = Span::parse(&duration)
                .filter(|s| s.secs() > 0)
                .ok_or_else(|| {
                    anyhow::anyhow!("--for {duration:?} is not a duration like 30m or 2h")
                })?;
            let teams = wardwatch_engine::alerting::load_teams(&cfg.alerting.teams())?;
            let team = store
                .team_of(&patient)
                .await?
                .ok_or_else(|| anyhow::anyhow!("patient {patient} is not enrolled"))?;
            // The team's longest snooze for the flag's severity, checked by
            // the store against the flag as it stands, as for the API.
            let now = Utc::now();
            let limits = wardwatch_api::snooze_limits(teams.get(&team).map(|t| &t.escalation), now);
            let until = now + chrono::Duration::seconds(span.secs());
            let severity = store
                .snooze(&patient, &rule, until, &by, &reason, &limits)
                .await?;
            println!(
                "{rule} snoozed for patient {patient} until {} at severity {severity} (a worse one breaks through)",
                until.to_rfc3339()
            );
        }
    }
    Ok(())
}

/// Refuses a pathway the rules do not have, listing the ones they do.
fn check_pathway(cfg: &Config, pathway: &str) -> Result<()> {
    let rules = wardwatch_engine::scoring::load_rule_set(&cfg.rules.pathways())?;
    if !rules.pathways.contains_key(pathway) {
        anyhow::bail!(
            "unknown pathway {pathway:?}; configured pathways: {}",
            rules
                .pathways
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

async fn patient_command(command: PatientCommand, cfg: &Config) -> Result<()> {
    use wardwatch_store::rules::{LimitRow, Setting};
    let store = admin_store(cfg).await?;
    match command {
        PatientCommand::Add {
            id,
            team,
            pathway,
            by,
            reason,
        } => {
            let id = PatientId::new(id)?;
            if let Some(p) = &pathway {
                check_pathway(cfg, p)?;
            }
            // A transfer hands open alerts to the new team's policy.
            let teams = match wardwatch_engine::alerting::load_teams(&cfg.alerting.teams()) {
                Ok(teams) => Some(teams),
                Err(e) if cfg.alerting.enabled => return Err(e.into()),
                Err(_) => None,
            };
            // Refused exactly as the API refuses it: a typo would leave the
            // patient on nobody's board.
            wardwatch_api::team_is_run(teams.as_ref(), &store, &team)
                .await
                .context("refused")?;
            let policy = teams
                .as_ref()
                .and_then(|ts| ts.get(&team))
                .and_then(|t| serde_json::to_value(&t.escalation).ok());
            let by = by.unwrap_or_else(|| {
                let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
                format!("cli:{user}")
            });
            // One audited way onto a team: a new patient is enrolled as the
            // API enrols one; a known one is moved as the API transfers one.
            match store.patient_view(id.as_str()).await? {
                None => {
                    let enrolment = wardwatch_store::records::Enrolment {
                        id: id.clone(),
                        team: team.clone(),
                        pathway: pathway.unwrap_or_else(|| "general".into()),
                        nhs_number: None,
                        date_of_birth: None,
                    };
                    store.enrol_patient(&enrolment, &by).await?;
                    println!("patient {id} on team {team}");
                }
                Some(known) => {
                    if let Some(p) = pathway.filter(|p| *p != known.pathway) {
                        anyhow::bail!(
                            "patient {id} is on pathway {}; a pathway change is a clinical decision: \
                             use `wardwatch patient set --id {id} --pathway {p} --by WHO --reason WHY`",
                            known.pathway
                        );
                    }
                    let moved = if known.team_id == team {
                        0
                    } else {
                        let reason =
                            reason.unwrap_or_else(|| "moved with `wardwatch patient add`".into());
                        store
                            .transfer(&id, &team, policy.as_ref(), &by, &reason)
                            .await?
                    };
                    println!("patient {id} on team {team}");
                    if moved > 0 {
                        println!("{moved} open alert(s) moved to team {team}");
                    }
                }
            }
        }
        PatientCommand::Set {
            id,
            decision: Decision { by, reason },
            pathway,
            spo2_scale,
            care_plan_oxygen,
            pregnant,
            date_of_birth,
        } => {
            let id = PatientId::new(id)?;
            let mut changes = Vec::new();
            if let Some(p) = pathway {
                check_pathway(cfg, &p)?;
                changes.push(Setting::Pathway(p));
            }
            // The care plan's oxygen status first: a Scale 2 decision needs it.
            changes.extend(care_plan_oxygen.map(Setting::CarePlanOxygen));
            changes.extend(spo2_scale.map(Setting::Spo2Scale));
            changes.extend(pregnant.map(Setting::Pregnant));
            changes.extend(date_of_birth.map(Setting::DateOfBirth));
            if changes.is_empty() {
                anyhow::bail!("nothing to change: give at least one of --pathway, --spo2-scale, --care-plan-oxygen, --pregnant, --date-of-birth");
            }
            for change in changes {
                let what = format!("{change:?}");
                store.set_patient(&id, change, &by, &reason).await?;
                println!("patient {id}: {what} (by {by})");
            }
        }
        PatientCommand::Limit(a) => {
            let id = PatientId::new(a.id)?;
            let limit = LimitRow {
                vital: a.vital,
                low: a.low,
                high: a.high,
                severity: a.severity,
                persist_readings: a.persist_readings,
                persist_secs: a.persist_secs,
                clear_margin: a.clear_margin,
                clear_hold_secs: a.clear_hold_secs,
            };
            let (vital, threshold) = wardwatch_engine::scoring::limit_threshold(&limit)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            // Within the patient's pathway, exactly as the API checks it.
            let rows = store
                .patient_rows(wardwatch_store::rules::PatientFilter::Ids(
                    std::slice::from_ref(&id.to_string()),
                ))
                .await?;
            let row = rows
                .first()
                .ok_or_else(|| anyhow::anyhow!("no patient {id}"))?;
            let rules = wardwatch_engine::scoring::load_rule_set(&cfg.rules.pathways())?;
            let pathway = rules.pathways.get(&row.pathway).ok_or_else(|| {
                anyhow::anyhow!("the patient's pathway {:?} is not configured", row.pathway)
            })?;
            wardwatch_rules::clinical::check_personal_limit(pathway, vital, &threshold)
                .map_err(|e| anyhow::anyhow!("refused: {e}"))?;
            let Decision { by, reason } = a.decision;
            store.set_limit(&id, &limit, &by, &reason).await?;
            println!("patient {id}: personal {} limit set (by {by})", limit.vital);
        }
        PatientCommand::Unlimit {
            id,
            vital,
            decision: Decision { by, reason },
        } => {
            let id = PatientId::new(id)?;
            store.remove_limit(&id, &vital, &by, &reason).await?;
            println!("patient {id}: personal {vital} limit removed (by {by})");
        }
        PatientCommand::Discharge {
            id,
            decision: Decision { by, reason },
            at,
        } => {
            let id = PatientId::new(id)?;
            let at = at.unwrap_or_else(Utc::now);
            store
                .set_patient(&id, Setting::Discharged(at), &by, &reason)
                .await?;
            println!("patient {id} discharged at {}", at.to_rfc3339());
        }
    }
    Ok(())
}

async fn admin_store(cfg: &Config) -> Result<wardwatch_store::Backend> {
    wardwatch_engine::try_connect(cfg)
        .await
        .context("connecting to the database (WARDWATCH_DATABASE_URL)")
}
