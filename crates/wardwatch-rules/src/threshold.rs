//! Single-vital thresholds with persistence and hysteresis, as a pure state
//! machine per (patient, rule).
//!
//! A flood of false alerts teaches nurses to ignore them, so a breach raises
//! only after it has *persisted* — for K consecutive readings or T seconds,
//! whichever the rule asks — and clears only after values are back inside
//! the limits *by a margin* for a *hold time*. A value oscillating around a
//! limit therefore raises at most one flag and does not flap.

use serde::Serialize;

/// How urgent a raised flag is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
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
        [Self::Low, Self::Medium, Self::High, Self::Emergency]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// One limit on one vital, with its anti-flapping settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    /// Breach when a value is below this (canonical unit), if set.
    pub low: Option<f64>,
    /// Breach when a value is above this, if set.
    pub high: Option<f64>,
    /// Severity of the flag this raises.
    pub severity: Severity,
    /// Raise after this many consecutive breaching readings ...
    pub persist_readings: u32,
    /// ... or once the breach has lasted this long (seconds), whichever comes first.
    pub persist_secs: i64,
    /// Clear only when values are inside the limits by at least this much ...
    pub clear_margin: f64,
    /// ... continuously for this long (seconds).
    pub clear_hold_secs: i64,
}

impl Threshold {
    fn breached(&self, v: f64) -> bool {
        self.low.is_some_and(|lo| v < lo) || self.high.is_some_and(|hi| v > hi)
    }

    fn comfortably_inside(&self, v: f64) -> bool {
        self.low.is_none_or(|lo| v >= lo + self.clear_margin)
            && self.high.is_none_or(|hi| v <= hi - self.clear_margin)
    }
}

/// What an observation did to the flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing to report.
    None,
    /// The breach persisted: raise a flag.
    Raised,
    /// Still breaching while raised: the open flag gets this reading as evidence.
    Updated,
    /// Back inside by the margin for the hold time: clear the flag.
    Cleared,
}

/// Per (patient, rule) state. Small and `Copy` so a shard can hold many.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ThresholdState {
    /// A flag is open.
    pub raised: bool,
    /// Consecutive breaching readings.
    breach_count: u32,
    /// Time (s) of the first reading of the current breach run.
    breach_since: Option<i64>,
    /// Time (s) since values have been comfortably inside, while raised.
    inside_since: Option<i64>,
}

impl ThresholdState {
    /// Feeds one reading (value in canonical units, time in seconds).
    /// Readings must arrive in time order for a patient and vital.
    pub fn observe(&mut self, rule: &Threshold, value: f64, at: i64) -> Transition {
        if rule.breached(value) {
            self.inside_since = None;
            self.breach_count = self.breach_count.saturating_add(1);
            let since = *self.breach_since.get_or_insert(at);
            if self.raised {
                return Transition::Updated;
            }
            let by_count = self.breach_count >= rule.persist_readings.max(1);
            let by_time = rule.persist_secs > 0 && at - since >= rule.persist_secs;
            if by_count || by_time {
                self.raised = true;
                return Transition::Raised;
            }
            return Transition::None;
        }
        // Not breaching: the breach run is over.
        self.breach_count = 0;
        self.breach_since = None;
        if !self.raised {
            return Transition::None;
        }
        if !rule.comfortably_inside(value) {
            // Inside the limits but within the margin: neither breach nor recovery.
            self.inside_since = None;
            return Transition::None;
        }
        let since = *self.inside_since.get_or_insert(at);
        if at - since >= rule.clear_hold_secs {
            *self = Self::default();
            return Transition::Cleared;
        }
        Transition::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// COPD SpO2 personalised limits (88–92 target): low 88.
    fn copd_spo2() -> Threshold {
        Threshold {
            low: Some(88.0),
            high: None,
            severity: Severity::High,
            persist_readings: 3,
            persist_secs: 300,
            clear_margin: 1.0,
            clear_hold_secs: 600,
        }
    }

    fn feed(rule: &Threshold, s: &mut ThresholdState, values: &[(f64, i64)]) -> Vec<Transition> {
        values.iter().map(|&(v, t)| s.observe(rule, v, t)).collect()
    }

    #[test]
    fn a_single_low_reading_does_not_raise() {
        let r = copd_spo2();
        let mut s = ThresholdState::default();
        let t = feed(&r, &mut s, &[(85.0, 0), (90.0, 60), (90.0, 120)]);
        assert!(t.iter().all(|x| *x == Transition::None));
        assert!(!s.raised);
    }

    #[test]
    fn a_breach_raises_after_k_readings() {
        let r = copd_spo2();
        let mut s = ThresholdState::default();
        let t = feed(&r, &mut s, &[(87.0, 0), (86.0, 10), (85.0, 20), (84.0, 30)]);
        assert_eq!(
            t,
            vec![
                Transition::None,
                Transition::None,
                Transition::Raised,
                Transition::Updated
            ]
        );
    }

    #[test]
    fn a_breach_raises_after_t_seconds_even_with_sparse_readings() {
        let r = copd_spo2();
        let mut s = ThresholdState::default();
        let t = feed(&r, &mut s, &[(87.0, 0), (87.0, 300)]);
        assert_eq!(t, vec![Transition::None, Transition::Raised]);
    }

    #[test]
    fn the_limit_itself_is_not_a_breach() {
        let r = copd_spo2();
        let mut s = ThresholdState::default();
        let t = feed(
            &r,
            &mut s,
            &[(88.0, 0), (88.0, 10), (88.0, 20), (88.0, 400)],
        );
        assert!(t.iter().all(|x| *x == Transition::None));
    }

    #[test]
    fn flapping_around_the_limit_raises_at_most_one_flag_and_does_not_clear() {
        let r = copd_spo2();
        let mut s = ThresholdState::default();
        let mut raised = 0;
        let mut cleared = 0;
        // 87.5 / 88.5 alternating every minute for two hours.
        for i in 0..120 {
            let v = if i % 2 == 0 { 87.5 } else { 88.5 };
            match s.observe(&r, v, i * 60) {
                Transition::Raised => raised += 1,
                Transition::Cleared => cleared += 1,
                _ => {}
            }
        }
        // Never three in a row nor 300 s in one run: nothing raised at all.
        assert_eq!((raised, cleared), (0, 0));
        // Now a real breach, then flapping inside the margin: one flag, no clear.
        let base = 200 * 60;
        for k in 0..3 {
            s.observe(&r, 86.0, base + k);
        }
        assert!(s.raised);
        for i in 0..120 {
            let v = if i % 2 == 0 { 87.5 } else { 88.5 };
            let t = s.observe(&r, v, base + 10 + i * 60);
            assert_ne!(t, Transition::Raised);
            assert_ne!(
                t,
                Transition::Cleared,
                "88.5 is inside but within the 1.0 margin"
            );
        }
    }

    #[test]
    fn clearing_needs_the_margin_for_the_hold_time() {
        let r = copd_spo2();
        let mut s = ThresholdState::default();
        feed(&r, &mut s, &[(85.0, 0), (85.0, 10), (85.0, 20)]);
        assert!(s.raised);
        // 89 is inside by exactly the margin; hold 600 s.
        let t = feed(&r, &mut s, &[(89.0, 100), (90.0, 400), (89.5, 699)]);
        assert_eq!(t, vec![Transition::None; 3]);
        assert_eq!(s.observe(&r, 90.0, 700), Transition::Cleared);
        assert!(!s.raised);
    }

    #[test]
    fn a_dip_during_the_hold_restarts_it() {
        let r = copd_spo2();
        let mut s = ThresholdState::default();
        feed(&r, &mut s, &[(85.0, 0), (85.0, 10), (85.0, 20)]);
        feed(&r, &mut s, &[(90.0, 100), (88.5, 500)]); // within margin: hold restarts
        assert_eq!(s.observe(&r, 90.0, 650), Transition::None);
        assert_eq!(s.observe(&r, 90.0, 1249), Transition::None);
        assert_eq!(s.observe(&r, 90.0, 1250), Transition::Cleared);
    }

    #[test]
    fn high_limits_work_the_same_way() {
        let hr = Threshold {
            low: None,
            high: Some(130.0),
            severity: Severity::Medium,
            persist_readings: 2,
            persist_secs: 0,
            clear_margin: 5.0,
            clear_hold_secs: 0,
        };
        let mut s = ThresholdState::default();
        let t = feed(
            &hr,
            &mut s,
            &[(131.0, 0), (135.0, 1), (128.0, 2), (124.0, 3)],
        );
        assert_eq!(
            t,
            vec![
                Transition::None,
                Transition::Raised,
                Transition::None,
                Transition::Cleared
            ]
        );
    }
}
