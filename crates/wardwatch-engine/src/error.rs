//! The engine's one error type. Two kinds matter to whoever runs it: a
//! configuration that cannot run (fixing the file is the only cure, so a
//! supervisor should not restart into it) and a failure while starting or
//! running (a database, a port, a file; restarting may help). The binary
//! tells them apart by exit code.
//!
//! `Display` says only what was being done; the cause is the error's
//! `source`, so anyhow's `{:#}` names each cause once. The alternate form
//! (`{:#}`) of this error on its own, as logs print it, gives the whole chain.

use std::error::Error as StdError;

/// A boxed cause.
pub type Cause = Box<dyn StdError + Send + Sync + 'static>;

/// Why the engine cannot start or has stopped.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The configuration (file, environment or arguments) cannot run.
    Config(String),
    /// Something the engine needs failed, with what it was doing.
    Failed {
        /// What the engine was doing.
        what: String,
        /// Why it failed.
        #[source]
        source: Cause,
    },
    /// A part of the running engine stopped.
    Stopped(String),
}

/// The message; for [`EngineError::Failed`] in the alternate form, each
/// cause after it.
impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Config(m) | Self::Stopped(m) => f.write_str(m),
            Self::Failed { what, source } => {
                f.write_str(what)?;
                if f.alternate() {
                    let mut cause: Option<&(dyn StdError + 'static)> = Some(source.as_ref());
                    while let Some(c) = cause {
                        write!(f, ": {c}")?;
                        cause = c.source();
                    }
                }
                Ok(())
            }
        }
    }
}

impl EngineError {
    /// Whether fixing the configuration is the only cure (this error, or
    /// the engine error it wraps).
    pub fn is_config(&self) -> bool {
        match self {
            Self::Config(_) => true,
            Self::Failed { source, .. } => source
                .downcast_ref::<EngineError>()
                .is_some_and(EngineError::is_config),
            Self::Stopped(_) => false,
        }
    }
}

/// The rules' shards stopped under a running engine.
impl From<wardwatch_rules::shard::ShardsClosed> for EngineError {
    fn from(e: wardwatch_rules::shard::ShardsClosed) -> Self {
        Self::Stopped(e.to_string())
    }
}

/// The engine's results.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Names what was being done when a fallible step fails (anyhow's habit,
/// kept typed).
pub trait Context<T> {
    /// Wraps the error with `what`.
    fn context(self, what: impl Into<String>) -> Result<T>;
    /// Wraps the error with what `what` returns (built only on failure).
    fn with_context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T>;
    /// A configuration error naming the setting `field` and the cause.
    fn setting(self, field: &str) -> Result<T>;
}

impl<T, E: Into<Cause>> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl Into<String>) -> Result<T> {
        self.map_err(|e| EngineError::Failed {
            what: what.into(),
            source: e.into(),
        })
    }

    fn with_context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| EngineError::Failed {
            what: what().into(),
            source: e.into(),
        })
    }

    fn setting(self, field: &str) -> Result<T> {
        self.map_err(|e| EngineError::Config(format!("{field}: {}", e.into())))
    }
}

/// Returns a configuration error built like `format!`.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::EngineError::Config(format!($($arg)*)))
    };
}
pub(crate) use bail;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_is_named_once_in_a_chain() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = Err::<(), _>(io).context("reading teams").unwrap_err();
        assert_eq!(e.to_string(), "reading teams");
        assert_eq!(format!("{e:#}"), "reading teams: no such file");
        let chain = anyhow::Error::from(e);
        assert_eq!(format!("{chain:#}"), "reading teams: no such file");
    }

    #[test]
    fn configuration_errors_are_told_apart() {
        fn refuse() -> Result<()> {
            bail!("mqtt.max_inflight must be at least {}", 2);
        }
        let e = refuse().unwrap_err();
        assert!(e.is_config());
        assert_eq!(e.to_string(), "mqtt.max_inflight must be at least 2");
        let io = std::io::Error::other("refused");
        assert!(!Err::<(), _>(io).context("x").unwrap_err().is_config());
        // Wrapped with what the engine was doing, it is still one.
        assert!(refuse()
            .context("loading the config")
            .unwrap_err()
            .is_config());
    }
}
