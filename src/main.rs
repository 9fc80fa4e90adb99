//! `wardwatch`: the command line. Parses, configures, calls the library.

use std::path::PathBuf;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use wardwatch::config::Config;
use wardwatch::{loadgen, score, serve, shutdown, telemetry};
use wardwatch_core::{DeviceId, PatientId};
use wardwatch_store::Store;

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
    Migrate,
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
    /// Simulate a fleet of devices and measure what the engine stores.
    Loadgen(loadgen::LoadgenArgs),
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
    /// Enrol a patient on a team (or move an enrolled patient to it).
    Add {
        /// Patient id.
        #[arg(long)]
        id: String,
        /// Responsible team (a virtual ward).
        #[arg(long)]
        team: String,
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
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    // Scoring needs no configuration, database or runtime.
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
        Command::Serve => serve::run(cfg, shutdown::on_signal()).await,
        Command::Migrate => {
            serve::try_connect(&cfg).await?;
            println!("database ready");
            Ok(())
        }
        Command::Patient {
            command: PatientCommand::Add { id, team },
        } => {
            let store = admin_store(&cfg).await?;
            let id = PatientId::new(id)?;
            store.upsert_patient(&id, &team).await?;
            println!("patient {id} on team {team}");
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
        Command::Score { .. } => Ok(()),
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

async fn admin_store(cfg: &Config) -> Result<wardwatch_store::PgStore> {
    serve::try_connect(cfg)
        .await
        .context("connecting to the database (WARDWATCH_DATABASE_URL)")
}
