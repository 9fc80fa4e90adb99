//! Teams and their escalation policies, from `config/teams/*.toml`.
//!
//! Parsed strictly like the pathways: unknown fields are errors, and every
//! error names the file, the line (for parse errors) and the field. A team
//! named `default` must exist: patients on a team without its own file are
//! routed by it, so no alert is ever without a destination.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use wardwatch_core::flag::Severity;

const DAY: i64 = 86_400;

/// The team whose policy applies to teams without a file.
pub const DEFAULT_TEAM: &str = "default";

/// Why the team files were refused.
#[derive(Debug, Error)]
pub enum PolicyError {
    /// A file or the directory could not be read (the cause is the
    /// source, so a printed chain says it once).
    #[error("cannot read {path}")]
    Io {
        /// Which.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Not TOML, an unknown field, or a wrong type (with line and column).
    #[error("{path}: {message}")]
    Parse {
        /// Which file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A value that makes no sense.
    #[error("{path}: {field}: {message}")]
    Invalid {
        /// Which file.
        path: PathBuf,
        /// The field, e.g. `escalation.tiers[0].wait_mins`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Two files name the same team, or the default team is missing.
    #[error("{0}")]
    Set(String),
}

/// How a notification travels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "channel", rename_all = "snake_case", deny_unknown_fields)]
pub enum Target {
    /// HTTP POST of the JSON body, signed with HMAC-SHA256.
    Webhook {
        /// Where to POST.
        url: String,
        /// Environment variable holding the signing secret (never in files).
        secret_env: String,
    },
    /// QoS 1 publish to `wardwatch/v1/teams/{team}/alerts`.
    Mqtt,
    /// A text message through a GOV.UK Notify-compatible API.
    Sms {
        /// The phone number.
        phone: String,
    },
    /// An e-mail through a GOV.UK Notify-compatible API.
    Email {
        /// The address.
        address: String,
    },
}

impl Target {
    /// The channel's name, as stored on a delivery.
    pub fn channel(&self) -> &'static str {
        match self {
            Self::Webhook { .. } => "webhook",
            Self::Mqtt => "mqtt",
            Self::Sms { .. } => "sms",
            Self::Email { .. } => "email",
        }
    }

    /// The address, as stored on a delivery (secrets never are).
    pub fn address(&self, team: &str) -> String {
        match self {
            Self::Webhook { url, .. } => url.clone(),
            Self::Mqtt => format!("wardwatch/v1/teams/{team}/alerts"),
            Self::Sms { phone } => phone.clone(),
            Self::Email { address } => address.clone(),
        }
    }
}

/// A duration written as `<n>s`, `<n>m` or `<n>h` (`"15m"`, `"30s"`, `"24h"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(pub i64);

impl Span {
    /// Seconds.
    pub fn secs(self) -> i64 {
        self.0
    }

    /// Parses `"15m"`.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if !s.is_ascii() {
            return None;
        }
        let (n, unit) = s.split_at(s.len().checked_sub(1)?);
        let n: i64 = n.trim().parse().ok()?;
        let k = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            _ => return None,
        };
        n.checked_mul(k).filter(|v| *v >= 0).map(Self)
    }
}

impl Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}s", self.0))
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{s:?} is not a duration like \"30s\", \"15m\" or \"2h\""
            ))
        })
    }
}

/// One step of an escalation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// For people: "ward nurse", "nurse in charge", "on-call consultant".
    pub name: String,
    /// How long to wait for an acknowledgement before the next tier.
    pub wait: Span,
    /// Who is notified at this tier (the team's MQTT topic is always added).
    #[serde(default)]
    pub targets: Vec<Target>,
}

/// Where each severity starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartTiers {
    /// Low severity.
    pub low: usize,
    /// Medium.
    pub medium: usize,
    /// High.
    pub high: usize,
    /// Emergency.
    pub emergency: usize,
}

impl StartTiers {
    /// The starting tier for a severity.
    pub fn of(&self, s: Severity) -> usize {
        match s {
            Severity::Low => self.low,
            Severity::Medium => self.medium,
            Severity::High => self.high,
            Severity::Emergency => self.emergency,
        }
    }
}

/// A team's escalation policy. A snapshot of it is stored on every alert,
/// so an alert follows the policy as it stood when it opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationPolicy {
    /// Ordered tiers; at least one.
    pub tiers: Vec<Tier>,
    /// Starting tier per severity.
    pub start_tier: StartTiers,
    /// On the last tier, re-notify this often until acknowledged.
    pub repeat: Span,
    /// Further flags for an open alert within this window go out as one update.
    #[serde(default = "default_group_window")]
    pub group_window: Span,
    /// Emergency severity also notifies these at once, whatever the tier.
    #[serde(default)]
    pub emergency_targets: Vec<Target>,
    /// Rule families whose clearing resolves the alert by itself
    /// (default: only `no_data`; never NEWS2 unless a team asks).
    #[serde(default = "default_auto_resolve")]
    pub auto_resolve: Vec<String>,
    /// Longest snooze a clinician may set, per severity. A single duration
    /// applies to low, medium and high; an emergency may not be snoozed
    /// unless the table names a duration for it.
    #[serde(default)]
    pub snooze_max: SnoozeMax,
    /// An acknowledged alert that nobody resolves is notified again after
    /// this long (and again each time it passes): acknowledgement is not
    /// the end of care.
    #[serde(default = "default_ack_timeout")]
    pub ack_timeout: Span,
    /// On the last tier, after this many unacknowledged repeats the team's
    /// fallback is told as well (not only when deliveries fail).
    #[serde(default = "default_fallback_after_repeats")]
    pub fallback_after_repeats: i32,
    /// When worsening inside an open alert re-pages it.
    #[serde(default)]
    pub worsening: Worsening,
    /// Storm guard: when at least this many alerts opened for the team
    /// within `storm_window`, updates go out as one digest per target
    /// (first pages, worsening and escalation are never digested).
    #[serde(default = "default_storm_alerts")]
    pub storm_alerts: i64,
    /// The storm guard's window.
    #[serde(default = "default_storm_window")]
    pub storm_window: Span,
}

fn default_storm_alerts() -> i64 {
    10
}

fn default_storm_window() -> Span {
    Span(300)
}

fn default_group_window() -> Span {
    Span(30)
}

fn default_auto_resolve() -> Vec<String> {
    vec!["no_data".into()]
}

fn default_ack_timeout() -> Span {
    Span(4 * 3600)
}

fn default_fallback_after_repeats() -> i32 {
    3
}

/// The longest snooze per severity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnoozeMax {
    /// Low.
    pub low: Span,
    /// Medium.
    pub medium: Span,
    /// High.
    pub high: Span,
    /// Emergency (0: cannot be snoozed).
    pub emergency: Span,
}

impl Default for SnoozeMax {
    fn default() -> Self {
        Self {
            low: Span(24 * 3600),
            medium: Span(12 * 3600),
            high: Span(4 * 3600),
            emergency: Span(0),
        }
    }
}

impl SnoozeMax {
    /// The longest snooze for a severity (0: none allowed).
    pub fn of(&self, s: Severity) -> Span {
        match s {
            Severity::Low => self.low,
            Severity::Medium => self.medium,
            Severity::High => self.high,
            Severity::Emergency => self.emergency,
        }
    }
}

impl<'de> Deserialize<'de> for SnoozeMax {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            low: Span,
            medium: Span,
            high: Span,
            #[serde(default)]
            emergency: Option<Span>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            One(Span),
            Table(Table),
        }
        Ok(match Form::deserialize(d)? {
            Form::One(s) => Self {
                low: s,
                medium: s,
                high: s,
                emergency: Span(0),
            },
            Form::Table(t) => Self {
                low: t.low,
                medium: t.medium,
                high: t.high,
                emergency: t.emergency.unwrap_or(Span(0)),
            },
        })
    }
}

/// When worsening inside an open alert re-pages it (as an update of the
/// same alert): a rise in severity always does; so does a NEWS2 total up by
/// `news2_rise` since it was last paged, or a threshold value worse by the
/// vital's margin (canonical units) since then.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Worsening {
    /// NEWS2 points.
    #[serde(default = "default_news2_rise")]
    pub news2_rise: u8,
    /// Per vital (`spo2`, `heart_rate`, ...): how much further past its
    /// limit a value must be to re-page.
    #[serde(default = "default_margins")]
    pub margins: BTreeMap<String, f64>,
}

impl Eq for Worsening {}

fn default_news2_rise() -> u8 {
    2
}

fn default_margins() -> BTreeMap<String, f64> {
    [
        ("spo2", 3.0),
        ("heart_rate", 15.0),
        ("respiratory_rate", 4.0),
        ("systolic_bp", 15.0),
        ("diastolic_bp", 10.0),
        ("body_temperature", 0.5),
        ("body_weight", 1.0),
        ("blood_glucose", 2.0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

impl Default for Worsening {
    fn default() -> Self {
        Self {
            news2_rise: default_news2_rise(),
            margins: default_margins(),
        }
    }
}

impl Worsening {
    /// How much worse a rule's measure must get to re-page, if it can.
    pub fn margin(&self, rule: &str) -> Option<f64> {
        let mut parts = rule.split(':');
        match parts.next()? {
            "news2" => Some(f64::from(self.news2_rise)),
            "threshold" | "personal" => parts.next().and_then(|v| self.margins.get(v).copied()),
            "weight_gain" => self.margins.get("body_weight").copied(),
            "spo2_fall" => self.margins.get("spo2").copied(),
            _ => None,
        }
    }
}

/// A team (a virtual ward).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Team {
    /// Matches `patients.team_id`.
    pub id: String,
    /// For people.
    #[serde(default)]
    pub name: String,
    /// Publish every notification to the team's MQTT topic (default on).
    #[serde(default = "yes")]
    pub mqtt: bool,
    /// Notified when every target of a tier keeps failing.
    pub fallback: Target,
    /// The policy.
    pub escalation: EscalationPolicy,
}

fn yes() -> bool {
    true
}

impl Team {
    /// Targets of a tier, with the team's MQTT topic when enabled.
    pub fn tier_targets(policy: &EscalationPolicy, tier: usize, mqtt: bool) -> Vec<Target> {
        let mut out = Vec::new();
        if mqtt {
            out.push(Target::Mqtt);
        }
        if let Some(t) = policy.tiers.get(tier) {
            out.extend(t.targets.iter().filter(|t| **t != Target::Mqtt).cloned());
        }
        out
    }

    fn check(&self, path: &Path) -> Result<(), PolicyError> {
        let invalid = |field: &str, message: String| PolicyError::Invalid {
            path: path.to_path_buf(),
            field: field.into(),
            message,
        };
        if self.id.is_empty()
            || !self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
        {
            return Err(invalid(
                "id",
                format!("{:?} must be non-empty A-Z a-z 0-9 . _ : -", self.id),
            ));
        }
        let p = &self.escalation;
        if p.tiers.is_empty() {
            return Err(invalid(
                "escalation.tiers",
                "at least one tier is needed".into(),
            ));
        }
        for (i, t) in p.tiers.iter().enumerate() {
            if !(1..=DAY).contains(&t.wait.secs()) {
                return Err(invalid(
                    &format!("escalation.tiers[{i}].wait"),
                    format!("{} s is not between 1 s and 24 h", t.wait.secs()),
                ));
            }
            for (j, target) in t.targets.iter().enumerate() {
                check_target(target)
                    .map_err(|m| invalid(&format!("escalation.tiers[{i}].targets[{j}]"), m))?;
            }
        }
        let last = p.tiers.len() - 1;
        for (name, s) in [
            ("low", Severity::Low),
            ("medium", Severity::Medium),
            ("high", Severity::High),
            ("emergency", Severity::Emergency),
        ] {
            if p.start_tier.of(s) > last {
                return Err(invalid(
                    &format!("escalation.start_tier.{name}"),
                    format!(
                        "tier {} does not exist (last is {last})",
                        p.start_tier.of(s)
                    ),
                ));
            }
        }
        if !(1..=DAY).contains(&p.repeat.secs()) {
            return Err(invalid(
                "escalation.repeat",
                format!("{} s is not between 1 s and 24 h", p.repeat.secs()),
            ));
        }
        if !(0..=3600).contains(&p.group_window.secs()) {
            return Err(invalid(
                "escalation.group_window",
                format!("{} s is not between 0 and 1 h", p.group_window.secs()),
            ));
        }
        for (name, s) in [
            ("low", p.snooze_max.low),
            ("medium", p.snooze_max.medium),
            ("high", p.snooze_max.high),
            ("emergency", p.snooze_max.emergency),
        ] {
            if !(0..=14 * DAY).contains(&s.secs()) {
                return Err(invalid(
                    &format!("escalation.snooze_max.{name}"),
                    format!("{} s is not between 0 and 14 days", s.secs()),
                ));
            }
        }
        if !(1..=7 * DAY).contains(&p.ack_timeout.secs()) {
            return Err(invalid(
                "escalation.ack_timeout",
                format!("{} s is not between 1 s and 7 days", p.ack_timeout.secs()),
            ));
        }
        if p.fallback_after_repeats < 1 {
            return Err(invalid(
                "escalation.fallback_after_repeats",
                "must be at least 1".into(),
            ));
        }
        if p.worsening.news2_rise < 1
            || p.worsening
                .margins
                .values()
                .any(|m| !(m.is_finite() && *m > 0.0))
        {
            return Err(invalid(
                "escalation.worsening",
                "news2_rise and every margin must be positive".into(),
            ));
        }
        // Escalation must reach a person: the MQTT topic alone is a feed
        // nobody has to be subscribed to.
        let human = p
            .tiers
            .iter()
            .flat_map(|t| t.targets.iter())
            .chain(p.emergency_targets.iter())
            .any(|t| *t != Target::Mqtt);
        if !human {
            return Err(invalid(
                "escalation.tiers",
                "no tier names a person to notify (a webhook, SMS or e-mail target): alerts would \
                 reach only the MQTT topic, which nobody has to watch"
                    .into(),
            ));
        }
        if p.storm_alerts < 2 || !(1..=DAY).contains(&p.storm_window.secs()) {
            return Err(invalid(
                "escalation.storm_alerts",
                "storm_alerts must be at least 2 and storm_window between 1 s and 24 h".into(),
            ));
        }
        for (j, target) in p.emergency_targets.iter().enumerate() {
            check_target(target)
                .map_err(|m| invalid(&format!("escalation.emergency_targets[{j}]"), m))?;
        }
        check_target(&self.fallback).map_err(|m| invalid("fallback", m))?;
        Ok(())
    }
}

/// A URL whose host is this machine.
fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

fn check_target(t: &Target) -> Result<(), String> {
    match t {
        Target::Webhook { url, secret_env } => {
            let Ok(parsed) = reqwest::Url::parse(url) else {
                return Err(format!("url {url:?} is not a URL"));
            };
            match parsed.scheme() {
                "https" => {}
                // Plain HTTP carries a patient's alert in clear text: only
                // to a receiver on this host, where it never crosses a network.
                "http" if is_loopback(&parsed) => {}
                "http" => {
                    return Err(format!(
                        "url {url:?}: plain http:// is allowed only to a receiver on this host \
                         (127.0.0.1, ::1 or localhost); use https://"
                    ))
                }
                _ => return Err(format!("url {url:?} must start with https://")),
            }
            if secret_env.is_empty() {
                return Err("secret_env must name an environment variable".into());
            }
            Ok(())
        }
        Target::Mqtt => Ok(()),
        Target::Sms { phone } => {
            let digits = phone.trim_start_matches('+');
            if digits.len() < 7 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("phone {phone:?} is not a phone number"));
            }
            Ok(())
        }
        Target::Email { address } => {
            if !address.contains('@') || address.contains(char::is_whitespace) {
                return Err(format!("address {address:?} is not an e-mail address"));
            }
            Ok(())
        }
    }
}

/// Every team, validated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Teams {
    teams: BTreeMap<String, Team>,
}

impl Teams {
    /// The team's configuration, or the default team's for a team without a file.
    pub fn get(&self, id: &str) -> Option<&Team> {
        self.teams.get(id).or_else(|| self.teams.get(DEFAULT_TEAM))
    }

    /// All teams.
    pub fn iter(&self) -> impl Iterator<Item = &Team> {
        self.teams.values()
    }

    /// Builds from already-parsed teams (tests).
    pub fn from_teams(teams: impl IntoIterator<Item = Team>) -> Self {
        Self {
            teams: teams.into_iter().map(|t| (t.id.clone(), t)).collect(),
        }
    }

    /// Loads `dir/*.toml`.
    pub fn load_dir(dir: &Path) -> Result<Self, PolicyError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| PolicyError::Io { path, source }
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        let mut texts = Vec::with_capacity(files.len());
        for path in files {
            let text = std::fs::read_to_string(&path).map_err(io(&path))?;
            texts.push((path, text));
        }
        Self::collect(dir, texts)
    }

    /// The shipped `config/teams` (the default team and the demo's ward),
    /// built into the binary so it runs from any folder; a folder of team
    /// files, when present, replaces them.
    pub fn built_in() -> Result<Self, PolicyError> {
        let files = BUILT_IN
            .iter()
            .map(|(file, text)| (PathBuf::from(format!("built-in/{file}")), text.to_string()));
        Self::collect(Path::new("built-in"), files)
    }

    fn collect(
        dir: &Path,
        texts: impl IntoIterator<Item = (PathBuf, String)>,
    ) -> Result<Self, PolicyError> {
        let mut teams = BTreeMap::new();
        for (path, text) in texts {
            let team = parse(&path, &text)?;
            if teams.contains_key(&team.id) {
                return Err(PolicyError::Set(format!(
                    "{}: team {:?} is already defined in another file",
                    path.display(),
                    team.id
                )));
            }
            teams.insert(team.id.clone(), team);
        }
        if !teams.contains_key(DEFAULT_TEAM) {
            return Err(PolicyError::Set(format!(
                "{}: no team {DEFAULT_TEAM:?}: it routes patients whose team has no file of its own",
                dir.display()
            )));
        }
        Ok(Self { teams })
    }
}

/// The shipped team files, as they were at build time.
const BUILT_IN: &[(&str, &str)] = &[
    (
        "default.toml",
        include_str!("../../../config/teams/default.toml"),
    ),
    (
        "ward-a.toml",
        include_str!("../../../config/teams/ward-a.toml"),
    ),
];

/// Parses and validates one team file.
pub fn parse(path: &Path, text: &str) -> Result<Team, PolicyError> {
    let team: Team = toml::from_str(text).map_err(|e| PolicyError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    team.check(path)?;
    Ok(team)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_teams_are_the_shipped_files() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/teams");
        assert_eq!(Teams::built_in().unwrap(), Teams::load_dir(&dir).unwrap());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), BUILT_IN.len());
    }

    const GOOD: &str = r#"
id = "ward-a"
fallback = { channel = "email", address = "duty@example.nhs.uk" }
[escalation]
repeat = "10m"
start_tier = { low = 0, medium = 0, high = 1, emergency = 1 }
[[escalation.tiers]]
name = "ward nurse"
wait = "15m"
targets = [{ channel = "webhook", url = "https://example/hook", secret_env = "S" }]
[[escalation.tiers]]
name = "nurse in charge"
wait = "10m"
"#;

    #[test]
    fn spans_parse_and_odd_text_is_refused_not_a_panic() {
        assert_eq!(Span::parse("15m"), Some(Span(900)));
        assert_eq!(Span::parse(" 2h "), Some(Span(7200)));
        for bad in [
            "",
            "m",
            "15",
            "15µ",
            "µs",
            "-5m",
            "1.5h",
            "99999999999999999h",
        ] {
            assert_eq!(Span::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_team_file_parses_with_defaults() {
        let t = parse(Path::new("ward-a.toml"), GOOD).unwrap();
        assert!(t.mqtt);
        assert_eq!(t.escalation.group_window, Span(30));
        assert_eq!(t.escalation.auto_resolve, vec!["no_data"]);
        let targets = Team::tier_targets(&t.escalation, 0, t.mqtt);
        assert_eq!(targets[0], Target::Mqtt, "every team gets its MQTT topic");
        assert_eq!(targets.len(), 2);
    }

    #[test]
    fn webhooks_are_https_unless_the_receiver_is_on_this_host() {
        let hook = |url: &str| Target::Webhook {
            url: url.into(),
            secret_env: "S".into(),
        };
        for ok in [
            "https://ward.example.nhs.uk/hook",
            "http://127.0.0.1:9090/ward-a",
            "http://[::1]:9090/x",
            "http://localhost/x",
        ] {
            assert_eq!(check_target(&hook(ok)), Ok(()), "{ok}");
        }
        for bad in [
            "http://10.0.0.5/hook",
            "http://ward.example.nhs.uk/hook",
            "http://127.0.0.1.evil.example/x",
            "ftp://127.0.0.1/x",
            "not a url",
        ] {
            assert!(check_target(&hook(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let e = parse(
            Path::new("w.toml"),
            &GOOD.replace("wait = \"15m\"", "wait = \"soon\""),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("w.toml") && e.contains("line") && e.contains("wait"),
            "{e}"
        );
        let e = parse(
            Path::new("w.toml"),
            &GOOD.replace("emergency = 1", "emergency = 5"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("escalation.start_tier.emergency"), "{e}");
        let e = parse(
            Path::new("w.toml"),
            &GOOD.replace("https://example/hook", "ftp://x"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("escalation.tiers[0].targets[0]"), "{e}");
        let e = parse(Path::new("w.toml"), &format!("{GOOD}\nsurprise = 1"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("surprise"), "{e}");
    }

    #[test]
    fn a_policy_that_reaches_nobody_is_refused_naming_the_file() {
        let e = parse(
            Path::new("config/teams/ward-z.toml"),
            r#"
id = "ward-z"
fallback = { channel = "email", address = "duty@example.nhs.uk" }
[escalation]
repeat = "10m"
start_tier = { low = 0, medium = 0, high = 0, emergency = 0 }
[[escalation.tiers]]
name = "ward nurse"
wait = "15m"
targets = [{ channel = "mqtt" }]
"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("ward-z.toml") && e.contains("escalation.tiers") && e.contains("person"),
            "{e}"
        );
    }

    #[test]
    fn snooze_limits_are_per_severity_and_an_emergency_is_not_snoozed_unless_named() {
        let team = |snooze: &str| {
            parse(
                Path::new("t.toml"),
                &format!(
                    r#"
id = "t"
fallback = {{ channel = "email", address = "duty@example.nhs.uk" }}
[escalation]
repeat = "10m"
snooze_max = {snooze}
start_tier = {{ low = 0, medium = 0, high = 0, emergency = 0 }}
[[escalation.tiers]]
name = "nurse"
wait = "15m"
targets = [{{ channel = "email", address = "n@example.nhs.uk" }}]
"#
                ),
            )
            .unwrap()
        };
        let one = team("\"2h\"").escalation.snooze_max;
        assert_eq!(
            (one.of(Severity::High), one.of(Severity::Emergency)),
            (Span(7200), Span(0))
        );
        let table = team("{ low = \"24h\", medium = \"8h\", high = \"1h\", emergency = \"10m\" }")
            .escalation
            .snooze_max;
        assert_eq!(table.of(Severity::Medium), Span(8 * 3600));
        assert_eq!(table.of(Severity::Emergency), Span(600));
    }

    #[test]
    fn the_shipped_teams_load_and_include_the_default() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/teams");
        let teams = Teams::load_dir(&dir).unwrap();
        assert!(teams
            .get("no-such-team")
            .is_some_and(|t| t.id == DEFAULT_TEAM));
    }
}
