//! Broker credentials: who may connect to the MQTT broker, as what, and
//! which topics each may use.
//!
//! The broker binds every client id to its user name (Mosquitto's
//! `use_username_as_clientid`, and the embedded broker's check), so one
//! device's password, which sits in a patient's home, cannot take over the
//! engine's session or another device's. Each kind of user has its own
//! namespace, so no name can be two things at once:
//!
//! | kind | user name | may |
//! |---|---|---|
//! | device | its device id | publish its own readings and observations (the shipped ACL's pattern) |
//! | team app | `team@<team id>` (never a valid device id) | read its team's alerts |
//! | service | `wardwatch-engine`, `wardwatch-alerts` | the shipped ACL's blocks |
//! | staging publisher | `<name>-pub<n>`, `<name>-watch`, `<name>-probe` | publish as any device, read every team's alerts: load tests only |
//!
//! Password files use Mosquitto's `$7$` format (PBKDF2-HMAC-SHA512), read
//! by Mosquitto 2 and by the embedded broker alike. Passwords are 24 random
//! bytes, so the iteration count (Mosquitto's own 101) is not what keeps
//! them safe; their entropy is.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{bail, Context, Result};
use base64::Engine as _;
use rand::RngCore;
use sha2::Sha512;

/// PBKDF2 rounds, as `mosquitto_passwd` writes them.
const ITERATIONS: u32 = 101;
/// Salt bytes, as `mosquitto_passwd` writes them.
const SALT_LEN: usize = 12;
/// The prefix of every user the engine's own services use; devices may not
/// take it.
const SERVICE_PREFIX: &str = "wardwatch-";
/// Team apps' user names start with this: `@` is not allowed in a device
/// id, so a team app can never be a device, nor a device a team app.
const TEAM_PREFIX: &str = "team@";

/// A new random password: 24 bytes, URL-safe base64 (32 characters).
pub fn random_password() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `$7$<iterations>$<salt>$<hash>` for `password` with a fresh salt.
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; SALT_LEN];
    rand::rng().fill_bytes(&mut salt);
    let mut hash = [0u8; 64];
    pbkdf2::pbkdf2_hmac::<Sha512>(password.as_bytes(), &salt, ITERATIONS, &mut hash);
    let b64 = base64::engine::general_purpose::STANDARD;
    format!("$7${ITERATIONS}${}${}", b64.encode(salt), b64.encode(hash))
}

/// Whether `password` matches a stored `$7$` hash (anything else: no).
/// The comparison takes the same time wherever the bytes differ.
pub fn verify_password(stored: &str, password: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some(""), Some("7"), Some(iterations), Some(salt), Some(hash), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let (Ok(iterations), Ok(salt), Ok(hash)) = (
        iterations.parse::<u32>(),
        b64.decode(salt),
        b64.decode(hash),
    ) else {
        return false;
    };
    // A hostile file must not make a connect spin for minutes.
    if iterations == 0 || iterations > 1_000_000 || hash.is_empty() || hash.len() > 64 {
        return false;
    }
    let mut got = vec![0u8; hash.len()];
    pbkdf2::pbkdf2_hmac::<Sha512>(password.as_bytes(), &salt, iterations, &mut got);
    got.iter().zip(&hash).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// A password file's users and their stored hashes.
#[derive(Debug, Clone, Default)]
pub struct PasswordFile {
    users: HashMap<String, String>,
}

impl PasswordFile {
    /// Reads a Mosquitto password file; a missing file is an empty one.
    pub fn load(path: &Path) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let mut users = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                bail!("{}:{}: not `user:hash`", path.display(), n + 1);
            };
            users.insert(user.to_string(), hash.to_string());
        }
        Ok(Self { users })
    }

    /// Whether `user` exists and `password` is theirs.
    pub fn check(&self, user: &str, password: &str) -> bool {
        self.users
            .get(user)
            .is_some_and(|h| verify_password(h, password))
    }

    /// Whether the file has `user`.
    pub fn contains(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }
}

/// What a credential is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A device publishing its own readings (user name = device id).
    Device(String),
    /// A team's nurse app reading the team's alerts.
    TeamApp(String),
    /// One of the engine's own sessions (`engine` or `alerts`).
    Service(String),
    /// A load generator's connections (staging brokers only).
    StagingPublisher { name: String, connections: usize },
}

impl Principal {
    /// The broker user names this principal connects as.
    pub fn users(&self) -> Vec<String> {
        match self {
            Principal::Device(id) => vec![id.clone()],
            Principal::TeamApp(team) => vec![format!("{TEAM_PREFIX}{team}")],
            Principal::Service(name) => vec![format!("{SERVICE_PREFIX}{name}")],
            Principal::StagingPublisher { name, connections } => {
                let mut users: Vec<String> = staging_roles(*connections)
                    .into_iter()
                    .map(|role| connection_user(name, &role))
                    .collect();
                users.dedup();
                users
            }
        }
    }

    /// Refuses a name that would cross into another principal's namespace.
    pub fn check(&self) -> Result<()> {
        match self {
            Principal::Device(id) => {
                wardwatch_core::DeviceId::new(id)
                    .map_err(|e| crate::EngineError::Config(e.to_string()))?;
                if id.starts_with(SERVICE_PREFIX) {
                    bail!("device ids starting with {SERVICE_PREFIX:?} are kept for the engine's own users");
                }
            }
            Principal::TeamApp(team) => {
                // It becomes a topic level: no wildcards, no separators.
                if team.is_empty()
                    || team.len() > 64
                    || !team
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
                {
                    bail!("a team id is 1 to 64 letters, digits, `.`, `_` or `-`, not {team:?}");
                }
            }
            Principal::Service(name) => {
                if !matches!(name.as_str(), "engine" | "alerts") {
                    bail!("the engine's services are `engine` (ingest) and `alerts` (the alert publisher), not {name:?}");
                }
            }
            Principal::StagingPublisher { name, connections } => {
                if !name.starts_with(SERVICE_PREFIX) {
                    bail!("staging publishers' names start with {SERVICE_PREFIX:?} (devices may not take it), e.g. wardwatch-loadgen");
                }
                if *connections == 0 || *connections > 1024 {
                    bail!("--connections must be 1 to 1024");
                }
            }
        }
        Ok(())
    }

    /// The ACL lines this principal needs beyond the shipped ACL, if any.
    pub fn acl_block(&self) -> Option<String> {
        match self {
            Principal::Device(_) | Principal::Service(_) => None,
            Principal::TeamApp(team) => Some(format!(
                "\n# Team {team}'s nurse app (wardwatch credentials team {team}).\nuser {TEAM_PREFIX}{team}\ntopic read wardwatch/v1/teams/{team}/alerts\n"
            )),
            Principal::StagingPublisher { name, .. } => {
                let mut out = format!(
                    "\n# Load generator {name} (wardwatch credentials staging-publisher): STAGING ONLY,\n# it may publish as any device.\n"
                );
                for user in self.users() {
                    out.push_str(&format!(
                        "user {user}\ntopic write wardwatch/v1/devices/+/readings\ntopic write wardwatch/v1/devices/+/observations\ntopic read wardwatch/v1/teams/+/alerts\n"
                    ));
                }
                Some(out)
            }
        }
    }
}

/// The roles of a load generator's connections: one per publishing
/// connection, the alert watcher and the probe publisher.
fn staging_roles(connections: usize) -> Vec<String> {
    let mut roles: Vec<String> = (0..connections).map(|c| format!("pub{c}")).collect();
    roles.push("watch".into());
    roles.push("probe".into());
    roles
}

/// The user (and client id) of one of a tool's connections: the URL's user
/// with the connection's role, because the broker binds each client id to
/// one user and two connections of one user would take each other over.
pub fn connection_user(base: &str, role: &str) -> String {
    format!("{base}-{role}")
}

/// The client id and credentials of one of a tool's connections: with a
/// user in the URL, `<user>-<role>` is both the user and the client id (the
/// broker binds them; `staging-publisher` issues exactly these); without
/// one (an anonymous test broker), `<prefix><role>` as the client id.
pub fn connection_identity(
    credentials: &Option<(String, String)>,
    prefix: &str,
    role: &str,
) -> (String, Option<(String, String)>) {
    match credentials {
        Some((user, password)) => {
            let user = connection_user(user, role);
            (user.clone(), Some((user, password.clone())))
        }
        None => (format!("{prefix}{role}"), None),
    }
}

/// Issued credentials: printed once, never stored in clear.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Issued {
    /// The user names written (one password for all of them).
    pub users: Vec<String>,
    /// The password.
    pub password: String,
    /// Whether an existing user's password was replaced.
    pub rotated: bool,
    /// Whether ACL lines were appended.
    pub acl_appended: bool,
}

/// Writes `principal`'s users into the password file (and its ACL lines
/// into `acl`, when it needs any): a new random password unless one is
/// given. An existing user is refused unless `rotate` is set, so a typo
/// cannot silently lock a device out.
pub fn issue(
    principal: &Principal,
    passwd: &Path,
    acl: Option<&Path>,
    password: Option<String>,
    rotate: bool,
) -> Result<Issued> {
    principal.check()?;
    let users = principal.users();
    let existing = PasswordFile::load(passwd)?;
    let taken: Vec<&String> = users.iter().filter(|u| existing.contains(u)).collect();
    if !taken.is_empty() && !rotate {
        bail!(
            "{} already in {}: pass --rotate to give a new password",
            taken
                .iter()
                .map(|u| u.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            passwd.display()
        );
    }
    let rotated = !taken.is_empty();
    let acl_block = principal.acl_block();
    let acl_appended = match (&acl_block, acl) {
        (Some(block), Some(acl)) => {
            let text = std::fs::read_to_string(acl)
                .with_context(|| format!("reading the ACL {}", acl.display()))?;
            // Rotating keeps the lines already there.
            let first = format!("user {}\n", users[0]);
            if !text.contains(&first) {
                let mut text = text;
                text.push_str(block);
                write_atomic(acl, &text)?;
                true
            } else {
                false
            }
        }
        (Some(_), None) => bail!("{principal:?} needs ACL lines: pass --acl FILE"),
        (None, _) => false,
    };
    let password = password.unwrap_or_else(random_password);
    if password.is_empty() || password.contains(['\n', '\r']) {
        bail!("a password must be non-empty and on one line");
    }
    let old = match std::fs::read_to_string(passwd) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", passwd.display())),
    };
    let mut text: String = old
        .lines()
        .filter(|l| {
            l.split_once(':')
                .is_none_or(|(u, _)| !users.iter().any(|x| x == u))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    for user in &users {
        text.push_str(&format!("{user}:{}\n", hash_password(&password)));
    }
    write_atomic(passwd, &text)?;
    Ok(Issued {
        users,
        password,
        rotated,
        acl_appended,
    })
}

/// Replaces a file in one step, readable by its owner only (it holds
/// password hashes), so a broker reloading meanwhile reads old or new.
fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("wardwatch-tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let keep = std::fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0o600);
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(keep))
            .with_context(|| format!("setting permissions on {}", tmp.display()))?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash_password("s3cret");
        assert!(h.starts_with("$7$101$"));
        assert!(verify_password(&h, "s3cret"));
        assert!(!verify_password(&h, "s3cres"));
        assert!(!verify_password(&h, ""));
        assert!(!verify_password("$6$abc$def", "s3cret"));
        assert!(!verify_password("", "s3cret"));
    }

    #[test]
    fn reads_what_mosquitto_passwd_writes() {
        // `mosquitto_passwd -b pw alice secret` (Mosquitto 2.0.11).
        let line = "$7$101$tpAcyvGpMZlOC0/O$3H4f35IWT5mErB+L8ZJty+Lpp2bATB4A9x7q91W8w9d3PZeh4n2F8VRCLSru0aK6ZcL2lcyBAa7u99OUjGmJKQ==";
        assert!(verify_password(line, "secret"));
        assert!(!verify_password(line, "Secret"));
    }

    #[test]
    fn names_cannot_cross_namespaces() {
        assert!(Principal::Device("dev-1".into()).check().is_ok());
        assert!(Principal::Device("wardwatch-engine".into())
            .check()
            .is_err());
        assert!(Principal::Device("team@ward-a".into()).check().is_err());
        assert!(Principal::Service("root".into()).check().is_err());
        assert_eq!(
            Principal::TeamApp("ward-a".into()).users(),
            vec!["team@ward-a"]
        );
        assert!(Principal::StagingPublisher {
            name: "loadgen".into(),
            connections: 2
        }
        .check()
        .is_err());
        assert_eq!(
            Principal::StagingPublisher {
                name: "wardwatch-loadgen".into(),
                connections: 2
            }
            .users(),
            vec![
                "wardwatch-loadgen-pub0",
                "wardwatch-loadgen-pub1",
                "wardwatch-loadgen-watch",
                "wardwatch-loadgen-probe"
            ]
        );
    }

    #[test]
    fn issuing_refuses_an_existing_user_unless_rotating() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("passwd");
        let dev = Principal::Device("dev-1".into());
        let first = issue(&dev, &pw, None, None, false).unwrap();
        assert_eq!(first.password.len(), 32);
        assert!(PasswordFile::load(&pw)
            .unwrap()
            .check("dev-1", &first.password));
        assert!(issue(&dev, &pw, None, None, false).is_err());
        let second = issue(&dev, &pw, None, None, true).unwrap();
        assert!(second.rotated);
        let file = PasswordFile::load(&pw).unwrap();
        assert!(file.check("dev-1", &second.password));
        assert!(!file.check("dev-1", &first.password), "the old one is gone");
        assert_eq!(std::fs::read_to_string(&pw).unwrap().lines().count(), 1);
    }

    #[test]
    fn a_team_app_gets_its_acl_lines_once() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("passwd");
        let acl = dir.path().join("acl");
        std::fs::write(&acl, "# shipped\n").unwrap();
        let app = Principal::TeamApp("ward-a".into());
        assert!(issue(&app, &pw, None, None, false).is_err(), "needs --acl");
        let i = issue(&app, &pw, Some(&acl), None, false).unwrap();
        assert!(i.acl_appended);
        issue(&app, &pw, Some(&acl), None, true).unwrap();
        let text = std::fs::read_to_string(&acl).unwrap();
        assert_eq!(text.matches("user team@ward-a\n").count(), 1, "{text}");
        assert!(text.contains("topic read wardwatch/v1/teams/ward-a/alerts"));
    }
}
