//! The words rules, store, alerting and the API share about a flag and the
//! alert it opens: how urgent ([`Severity`]), what happened to the flag
//! ([`FlagState`]), where the alert is in its life ([`AlertState`]), and a
//! rule key's family. Kept here so no crate needs another only for a name.

use serde::{Deserialize, Serialize};

/// How urgent a raised flag is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Review at the next routine check.
    Low,
    /// Review within hours.
    Medium,
    /// Urgent review.
    High,
    /// Emergency response.
    Emergency,
}

impl Severity {
    /// Every severity, least urgent first.
    pub const ALL: [Self; 4] = [Self::Low, Self::Medium, Self::High, Self::Emergency];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Emergency => "emergency",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// A stored name read back: the database admits only the four names,
    /// so an unknown one is a defect, and alerting errs towards urgency
    /// (`High`) rather than dropping or downgrading the alert.
    pub fn from_stored(s: &str) -> Self {
        Self::parse(s).unwrap_or(Self::High)
    }
}

/// What happened to a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagState {
    /// Newly raised.
    Raised,
    /// Still open, with new evidence or a new severity.
    Updated,
    /// Back to normal.
    Cleared,
}

impl FlagState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Raised => "raised",
            Self::Updated => "updated",
            Self::Cleared => "cleared",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Raised, Self::Updated, Self::Cleared]
            .into_iter()
            .find(|x| x.as_str() == s)
    }

    /// A stored name read back; an unknown one (a defect) counts as an
    /// update, which keeps an open alert open rather than opening or
    /// closing one.
    pub fn from_stored(s: &str) -> Self {
        Self::parse(s).unwrap_or(Self::Updated)
    }
}

/// Where an alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// Waiting for someone; escalating.
    Open,
    /// Someone named has it; escalation stopped.
    Acknowledged,
    /// Closed with an outcome.
    Resolved,
}

impl AlertState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Acknowledged => "acknowledged",
            Self::Resolved => "resolved",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Open, Self::Acknowledged, Self::Resolved]
            .into_iter()
            .find(|x| x.as_str() == s)
    }

    /// A stored name read back; an unknown one (a defect) counts as open,
    /// so the alert keeps escalating rather than going quiet.
    pub fn from_stored(s: &str) -> Self {
        Self::parse(s).unwrap_or(Self::Open)
    }
}

macro_rules! display_as_stored_name {
    ($($t:ty),*) => {$(
        /// Shown as its stored name, the word messages and logs use.
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        /// A stored name read back as [`Self::from_stored`] reads it, so a
        /// row type can map the column by name (`sqlx(try_from = "String")`).
        impl From<String> for $t {
            fn from(stored: String) -> Self {
                Self::from_stored(&stored)
            }
        }

        /// Compares with a stored name, as checks against rows read it.
        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    )*};
}

display_as_stored_name!(Severity, FlagState, AlertState);

/// A rule key's family: the part before the first `:` (`threshold`,
/// `personal`, `news2`, `no_data`, ...), the unit of snoozes, auto-resolve
/// and reports.
pub fn rule_family(rule: &str) -> &str {
    rule.split(':').next().unwrap_or(rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_round_trip() {
        for s in Severity::ALL {
            assert_eq!(Severity::parse(s.as_str()), Some(s));
            assert_eq!(Severity::from_stored(s.as_str()), s);
        }
        for f in [FlagState::Raised, FlagState::Updated, FlagState::Cleared] {
            assert_eq!(FlagState::parse(f.as_str()), Some(f));
        }
        for a in [
            AlertState::Open,
            AlertState::Acknowledged,
            AlertState::Resolved,
        ] {
            assert_eq!(AlertState::parse(a.as_str()), Some(a));
        }
        assert_eq!(Severity::parse("High"), None, "names are exact");
        assert_eq!(Severity::Emergency.to_string(), "emergency");
        assert_eq!(AlertState::Acknowledged.to_string(), "acknowledged");
        assert!(AlertState::Open == "open" && AlertState::Open != "opened");
    }

    #[test]
    fn an_unknown_stored_name_errs_towards_attention() {
        assert_eq!(Severity::from_stored("critical"), Severity::High);
        assert_eq!(FlagState::from_stored(""), FlagState::Updated);
        assert_eq!(AlertState::from_stored("closed"), AlertState::Open);
    }

    #[test]
    fn severities_order_by_urgency() {
        assert!(Severity::Low < Severity::Medium);
        assert!(Severity::Medium < Severity::High);
        assert!(Severity::High < Severity::Emergency);
    }

    #[test]
    fn a_rule_family_is_the_part_before_the_first_colon() {
        assert_eq!(rule_family("threshold:spo2:0"), "threshold");
        assert_eq!(rule_family("news2"), "news2");
        assert_eq!(rule_family(""), "");
    }
}
