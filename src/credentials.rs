//! `wardwatch credentials`: issues a device's, a team app's, a service's or a
//! staging publisher's broker credentials (the model is
//! [`wardwatch_engine::credentials`]).

use anyhow::{Context, Result};
use wardwatch_engine::credentials::{issue, Principal};

/// `wardwatch credentials`: issue broker credentials.
#[derive(Debug, clap::Args)]
pub struct CredentialsArgs {
    #[command(subcommand)]
    pub principal: PrincipalArg,
    /// The broker's password file (Mosquitto format; created if absent).
    #[arg(long, global = true, default_value = "config/mosquitto/passwd")]
    pub passwd: std::path::PathBuf,
    /// The broker's ACL file, for principals that need lines of their own
    /// (team apps, staging publishers).
    #[arg(long, global = true)]
    pub acl: Option<std::path::PathBuf>,
    /// Replace an existing user's password.
    #[arg(long, global = true)]
    pub rotate: bool,
    /// Read the password from this environment variable instead of making
    /// a random one (staging and tests).
    #[arg(long, global = true)]
    pub password_env: Option<String>,
    /// Print the result as JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Who the credentials are for.
#[derive(Debug, clap::Subcommand)]
pub enum PrincipalArg {
    /// A device: user name = device id; the shipped ACL lets it publish
    /// only its own readings and observations.
    Device { id: String },
    /// A team's nurse app: user `team@<team>`, reads that team's alerts.
    Team { id: String },
    /// The engine's ingest session (`engine`) or its alert publisher (`alerts`).
    Service { name: String },
    /// A load generator (staging brokers only: it may publish as any
    /// device): one user per connection.
    StagingPublisher {
        /// Base name, e.g. wardwatch-loadgen.
        name: String,
        /// Publishing connections (`loadgen --connections`).
        #[arg(long, default_value_t = 1)]
        connections: usize,
    },
}

/// Runs `wardwatch credentials`: prints the new password once.
pub fn run(args: &CredentialsArgs) -> Result<String> {
    let principal = match &args.principal {
        PrincipalArg::Device { id } => Principal::Device(id.clone()),
        PrincipalArg::Team { id } => Principal::TeamApp(id.clone()),
        PrincipalArg::Service { name } => Principal::Service(name.clone()),
        PrincipalArg::StagingPublisher { name, connections } => Principal::StagingPublisher {
            name: name.clone(),
            connections: *connections,
        },
    };
    let password = match &args.password_env {
        Some(var) => Some(
            std::env::var(var)
                .ok()
                .filter(|p| !p.is_empty())
                .with_context(|| format!("{var} is empty or unset"))?,
        ),
        None => None,
    };
    let issued = issue(
        &principal,
        &args.passwd,
        args.acl.as_deref(),
        password,
        args.rotate,
    )?;
    if args.json {
        return Ok(format!("{}\n", serde_json::to_string(&issued)?));
    }
    let mut out = String::new();
    for u in &issued.users {
        out.push_str(&format!("user:     {u}\n"));
    }
    out.push_str(&format!("password: {}\n", issued.password));
    out.push_str(&format!(
        "{} {}{}. Shown once: give it to the device or app now. Reload the broker to apply (Mosquitto: kill -HUP).\n",
        if issued.rotated { "Rotated in" } else { "Written to" },
        args.passwd.display(),
        if issued.acl_appended {
            format!(" and {}", args.acl.as_deref().map(|p| p.display().to_string()).unwrap_or_default())
        } else {
            String::new()
        }
    ));
    Ok(out)
}
