//! How the delivery worker treats what it claims from the outbox: in an
//! alert storm, a team's updates go out as one digest per target (pages
//! never wait); a digest's idempotency key names the deliveries it carries;
//! a failed delivery is retried with exponential backoff.
//!
//! Pure: the engine's delivery loop asks the store how many alerts a team
//! opened and passes the answer in.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use crate::policy::EscalationPolicy;

/// Where a team's storm window begins: alerts opened since then count.
pub fn storm_window_start(policy: &EscalationPolicy, now: DateTime<Utc>) -> DateTime<Utc> {
    now - Duration::seconds(policy.storm_window.secs())
}

/// A team is in a storm once it has opened at least `storm_alerts` alerts
/// within its storm window.
pub fn in_storm(policy: &EscalationPolicy, opened_in_window: i64) -> bool {
    opened_in_window >= policy.storm_alerts
}

/// Splits claimed deliveries into those sent one by one and digests.
/// `digestible` gives (team, target) for a delivery that may be digested
/// (an update of a team in a storm) and `None` for one that goes out alone
/// (a page, or a team not in a storm). Deliveries to the same team and
/// target form one digest; a group of one is sent alone. Order within a
/// digest is claim order.
pub fn digest_groups<D>(
    claimed: Vec<D>,
    mut digestible: impl FnMut(&D) -> Option<(String, String)>,
) -> (Vec<D>, Vec<Vec<D>>) {
    let mut groups: BTreeMap<(String, String), Vec<D>> = BTreeMap::new();
    let mut singles = Vec::new();
    for d in claimed {
        match digestible(&d) {
            Some(key) => groups.entry(key).or_default().push(d),
            None => singles.push(d),
        }
    }
    let mut digests = Vec::new();
    for (_, group) in groups {
        if group.len() == 1 {
            singles.extend(group);
        } else {
            digests.push(group);
        }
    }
    (singles, digests)
}

/// A digest's idempotency key: the team and the deliveries it carries, so
/// a resend of the same digest (after a lost response) is recognisable and
/// a different set of updates is not.
pub fn digest_key(team_id: &str, delivery_ids: impl IntoIterator<Item = i64>) -> String {
    let ids: Vec<String> = delivery_ids.into_iter().map(|id| id.to_string()).collect();
    format!("digest:{team_id}:{}", ids.join("-"))
}

/// The wait before retrying a delivery that failed `attempts` times:
/// 1 s, 2 s, 4 s, ... (capped at 2^9 s), plus `jitter` (0.0..=1.0) of up
/// to a quarter of that, so many failed deliveries do not retry in step.
pub fn retry_delay(attempts: i32, jitter: f64) -> Duration {
    let doublings = attempts.clamp(1, 10) - 1;
    let base = 1_000i64 << doublings;
    let jitter = (base as f64 / 4.0 * jitter.clamp(0.0, 1.0)) as i64;
    Duration::milliseconds(base + jitter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Span;

    fn policy(alerts: i64, window: &str) -> EscalationPolicy {
        let team = crate::policy::parse(
            std::path::Path::new("t.toml"),
            "id = \"t\"\nfallback = { channel = \"email\", address = \"d@example.nhs.uk\" }\n\
             [escalation]\nrepeat = \"10m\"\n\
             start_tier = { low = 0, medium = 0, high = 0, emergency = 0 }\n[[escalation.tiers]]\nname = \"n\"\nwait = \"5m\"\n\
             targets = [{ channel = \"email\", address = \"n@example.nhs.uk\" }]\n",
        )
        .unwrap();
        let mut p = team.escalation;
        p.storm_alerts = alerts;
        p.storm_window = Span::parse(window).unwrap();
        p
    }

    #[test]
    fn a_storm_starts_at_the_configured_count_within_the_window() {
        let p = policy(10, "5m");
        assert!(!in_storm(&p, 9));
        assert!(in_storm(&p, 10));
        let now = DateTime::from_timestamp(1_000_000, 0).unwrap();
        assert_eq!((now - storm_window_start(&p, now)).num_seconds(), 300);
    }

    #[test]
    fn updates_to_one_team_and_target_become_one_digest_and_the_rest_go_alone() {
        // (id, team, target, digestible)
        let claimed = vec![
            (1, "a", "t1", true),
            (2, "a", "t1", true),
            (3, "a", "t2", true),  // alone on its target
            (4, "a", "t1", false), // a page
            (5, "b", "t1", true),
            (6, "b", "t1", true),
        ];
        let (singles, digests) =
            digest_groups(claimed, |d| d.3.then(|| (d.1.to_string(), d.2.to_string())));
        let ids = |v: &[(i32, &str, &str, bool)]| v.iter().map(|d| d.0).collect::<Vec<_>>();
        let mut single_ids = ids(&singles);
        single_ids.sort();
        assert_eq!(single_ids, [3, 4]);
        let digest_ids: Vec<Vec<i32>> = digests.iter().map(|g| ids(g)).collect();
        assert_eq!(digest_ids, [vec![1, 2], vec![5, 6]]);
    }

    #[test]
    fn nothing_is_digested_when_nothing_may_be() {
        let (singles, digests) = digest_groups(vec![1, 2, 3], |_| None);
        assert_eq!(singles, [1, 2, 3]);
        assert!(digests.is_empty());
    }

    #[test]
    fn a_digest_key_names_its_team_and_deliveries() {
        assert_eq!(digest_key("ward-a", [7, 9, 12]), "digest:ward-a:7-9-12");
        assert_ne!(
            digest_key("ward-a", [7, 9]),
            digest_key("ward-a", [7, 9, 12])
        );
        assert_ne!(digest_key("ward-a", [7]), digest_key("ward-b", [7]));
    }

    #[test]
    fn retries_back_off_doubling_from_one_second_with_bounded_jitter() {
        let ms = |a, j| retry_delay(a, j).num_milliseconds();
        assert_eq!(ms(0, 0.0), 1_000);
        assert_eq!(ms(1, 0.0), 1_000);
        assert_eq!(ms(2, 0.0), 2_000);
        assert_eq!(ms(3, 0.0), 4_000);
        assert_eq!(ms(10, 0.0), 512_000);
        assert_eq!(ms(50, 0.0), 512_000, "capped");
        assert_eq!(ms(3, 1.0), 5_000, "at most a quarter more");
        assert_eq!(ms(3, 7.0), 5_000, "jitter is clamped");
        assert_eq!(ms(-4, 0.5), 1_125, "no attempts yet waits as one");
    }
}
