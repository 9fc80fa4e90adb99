//! Single-vital thresholds with persistence and hysteresis, as a pure state
//! machine per (patient, rule).
//!
//! A flood of false alerts teaches nurses to ignore them, so a breach raises
//! only after it has *persisted* — for K consecutive readings or T seconds,
//! whichever the rule asks — and clears only after values are back inside
//! the limits *by a margin* for a *hold time*. A value oscillating around a
//! limit therefore raises at most one flag and does not flap.

use std::sync::Arc;

pub use wardwatch_core::flag::Severity;

/// When a threshold applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    /// Always.
    #[default]
    Always,
    /// Only while no complete NEWS2 set is fresh for the patient (or NEWS2
    /// does not apply): limits for partial kits (an oximeter alone, a BP
    /// cuff alone) that NEWS2 would otherwise cover.
    WithoutNews2,
}

/// "At least `k` of the last `n` readings breach, within `window_secs`":
/// catches values hovering around a limit, where one reading back inside
/// would otherwise reset a run of consecutive breaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KOfN {
    /// Breaching readings needed.
    pub k: u8,
    /// Among this many latest readings (at most [`RECENT`]).
    pub n: u8,
    /// All within this long, seconds.
    pub window_secs: i64,
}

/// Readings a threshold remembers for [`KOfN`].
pub const RECENT: usize = 8;

/// One limit on one vital, with its anti-flapping settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// Breach when a value is below this (canonical unit), if set.
    pub low: Option<f64>,
    /// Breach when a value is above this, if set.
    pub high: Option<f64>,
    /// A single reading below this raises at once (no persistence): a level
    /// where waiting for a second reading is itself the hazard.
    pub immediate_low: Option<f64>,
    /// A single reading above this raises at once.
    pub immediate_high: Option<f64>,
    /// Severity of the flag this raises.
    pub severity: Severity,
    /// Raise after this many consecutive breaching readings ...
    pub persist_readings: u32,
    /// ... or once the breach has lasted this long (seconds), whichever
    /// comes first. The clock decides this too: a breach with no reading
    /// back inside by then raises without waiting for the next reading.
    pub persist_secs: i64,
    /// ... or when this many of the latest readings breach.
    pub k_of_n: Option<KOfN>,
    /// Clear only when values are inside the limits by at least this much ...
    pub clear_margin: f64,
    /// ... continuously for this long (seconds).
    pub clear_hold_secs: i64,
    /// When it applies.
    pub scope: Scope,
    /// What to do, in the flag's words (e.g. "recheck after 5 minutes'
    /// rest; do not wait for the recheck to escalate").
    pub guidance: Option<Arc<str>>,
}

impl Default for Threshold {
    fn default() -> Self {
        Self {
            low: None,
            high: None,
            immediate_low: None,
            immediate_high: None,
            severity: Severity::Low,
            persist_readings: 1,
            persist_secs: 0,
            k_of_n: None,
            clear_margin: 0.0,
            clear_hold_secs: 0,
            scope: Scope::Always,
            guidance: None,
        }
    }
}

impl Threshold {
    fn breached(&self, v: f64) -> bool {
        self.low.is_some_and(|lo| v < lo) || self.high.is_some_and(|hi| v > hi)
    }

    fn immediate(&self, v: f64) -> bool {
        self.immediate_low.is_some_and(|lo| v < lo) || self.immediate_high.is_some_and(|hi| v > hi)
    }

    fn comfortably_inside(&self, v: f64) -> bool {
        self.low.is_none_or(|lo| v >= lo + self.clear_margin)
            && self.high.is_none_or(|hi| v <= hi - self.clear_margin)
    }

    /// How far `v` is past the limit, in the limit's own direction
    /// (positive = worse); `None` for a value inside.
    pub fn excess(&self, v: f64) -> Option<f64> {
        let below = self.low.filter(|lo| v < *lo).map(|lo| lo - v);
        let above = self.high.filter(|hi| v > *hi).map(|hi| v - hi);
        below.or(above)
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
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ThresholdState {
    /// A flag is open.
    pub raised: bool,
    /// Consecutive breaching readings.
    breach_count: u32,
    /// Time (s) of the first reading of the current breach run.
    breach_since: Option<i64>,
    /// The latest breaching reading of the run (value, time): the evidence
    /// when the clock raises.
    last_breach: Option<(f64, i64)>,
    /// Time (s) since values have been comfortably inside, while raised.
    inside_since: Option<i64>,
    /// The latest readings' times, newest at `recent_next - 1`, and which
    /// of them breached (bit i for slot i).
    recent_times: [i64; RECENT],
    recent_breach: u8,
    recent_len: u8,
    recent_next: u8,
}

impl ThresholdState {
    fn remember(&mut self, breach: bool, at: i64) {
        let i = usize::from(self.recent_next);
        self.recent_times[i] = at;
        if breach {
            self.recent_breach |= 1 << i;
        } else {
            self.recent_breach &= !(1 << i);
        }
        self.recent_next = ((i + 1) % RECENT) as u8;
        self.recent_len = (usize::from(self.recent_len) + 1).min(RECENT) as u8;
    }

    /// Breaches among the latest `n` readings within `window` of `at`.
    fn recent_breaches(&self, n: u8, window: i64, at: i64) -> u8 {
        let n = usize::from(n.min(self.recent_len)).min(RECENT);
        (1..=n)
            .map(|back| (usize::from(self.recent_next) + RECENT - back) % RECENT)
            .filter(|&i| at - self.recent_times[i] <= window)
            .filter(|&i| self.recent_breach & (1 << i) != 0)
            .count() as u8
    }

    /// Feeds one reading (value in canonical units, time in seconds).
    /// Readings must arrive in time order for a patient and vital.
    pub fn observe(&mut self, rule: &Threshold, value: f64, at: i64) -> Transition {
        let breach = rule.breached(value) || rule.immediate(value);
        self.remember(breach, at);
        if breach {
            self.inside_since = None;
            self.breach_count = self.breach_count.saturating_add(1);
            let since = *self.breach_since.get_or_insert(at);
            self.last_breach = Some((value, at));
            if self.raised {
                return Transition::Updated;
            }
            let immediate = rule.immediate(value);
            let by_count = self.breach_count >= rule.persist_readings.max(1);
            let by_time = rule.persist_secs > 0 && at - since >= rule.persist_secs;
            let by_share = rule
                .k_of_n
                .is_some_and(|r| self.recent_breaches(r.n, r.window_secs, at) >= r.k.max(1));
            if immediate || by_count || by_time || by_share {
                self.raised = true;
                return Transition::Raised;
            }
            return Transition::None;
        }
        // Not breaching: the breach run is over.
        self.breach_count = 0;
        self.breach_since = None;
        self.last_breach = None;
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
            self.raised = false;
            self.inside_since = None;
            return Transition::Cleared;
        }
        Transition::None
    }

    /// When the clock alone would raise this breach (a run of breaching
    /// readings with nothing back inside since), if it can.
    pub fn due_at(&self, rule: &Threshold) -> Option<i64> {
        if self.raised || rule.persist_secs <= 0 {
            return None;
        }
        self.breach_since.map(|since| since + rule.persist_secs)
    }

    /// The clock at `now` (s): raises a breach that has lasted the
    /// persistence time with no reading back inside, even when no further
    /// reading arrives (a spot check a few times a day must not wait hours
    /// for the next one). Returns the evidence (value, time) when it raises.
    pub fn on_clock(&mut self, rule: &Threshold, now: i64) -> Option<(f64, i64)> {
        let due = self.due_at(rule)?;
        if now < due {
            return None;
        }
        self.raised = true;
        self.last_breach
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// COPD SpO2 personalised limits (88–92 target): low 88.
    fn copd_spo2() -> Threshold {
        Threshold {
            low: Some(88.0),
            severity: Severity::High,
            persist_readings: 3,
            persist_secs: 300,
            clear_margin: 1.0,
            clear_hold_secs: 600,
            ..Default::default()
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
            high: Some(130.0),
            severity: Severity::Medium,
            persist_readings: 2,
            clear_margin: 5.0,
            ..Default::default()
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

    #[test]
    fn below_the_immediate_level_one_reading_raises_at_once() {
        // COVID oximetry: 92% or below is an emergency now.
        let r = Threshold {
            low: Some(92.5),
            immediate_low: Some(92.5),
            severity: Severity::Emergency,
            persist_readings: 2,
            persist_secs: 300,
            clear_margin: 1.0,
            clear_hold_secs: 1800,
            ..Default::default()
        };
        let mut s = ThresholdState::default();
        assert_eq!(s.observe(&r, 80.0, 0), Transition::Raised);
        // A recheck at 93 does not cancel it: it must clear by its hold.
        assert_eq!(s.observe(&r, 93.0, 300), Transition::None);
        assert!(s.raised);
    }

    #[test]
    fn the_clock_raises_a_breach_that_no_reading_came_back_from() {
        let r = Threshold {
            low: Some(94.5),
            severity: Severity::High,
            persist_readings: 2,
            persist_secs: 900,
            ..Default::default()
        };
        let mut s = ThresholdState::default();
        assert_eq!(s.observe(&r, 93.0, 1_000), Transition::None);
        assert_eq!(s.due_at(&r), Some(1_900));
        assert_eq!(s.on_clock(&r, 1_899), None);
        assert_eq!(s.on_clock(&r, 1_900), Some((93.0, 1_000)));
        assert!(s.raised);
        assert_eq!(s.on_clock(&r, 2_000), None, "raised once");
        // A recheck back inside before the deadline cancels the timer.
        let mut q = ThresholdState::default();
        q.observe(&r, 93.0, 0);
        q.observe(&r, 96.0, 600);
        assert_eq!(q.due_at(&r), None);
        assert_eq!(q.on_clock(&r, 10_000), None);
    }

    #[test]
    fn values_hovering_around_a_limit_raise_on_k_of_n() {
        // COPD, limit 88: 84 / 89 alternating never makes three in a row.
        let plain = copd_spo2();
        let hovering = Threshold {
            k_of_n: Some(KOfN {
                k: 2,
                n: 3,
                window_secs: 4 * 3600,
            }),
            ..copd_spo2()
        };
        let values = [(84.0, 0), (89.0, 3600), (84.0, 7200), (89.0, 10_800)];
        let mut a = ThresholdState::default();
        assert!(feed(&plain, &mut a, &values)
            .iter()
            .all(|t| *t == Transition::None));
        let mut b = ThresholdState::default();
        assert_eq!(
            feed(&hovering, &mut b, &values),
            vec![
                Transition::None,
                Transition::None,
                Transition::Raised,
                Transition::None
            ]
        );
        // Outside the window, old breaches do not count.
        let mut c = ThresholdState::default();
        let spread = [(84.0, 0), (89.0, 5 * 3600), (84.0, 10 * 3600)];
        assert!(feed(&hovering, &mut c, &spread)
            .iter()
            .all(|t| *t == Transition::None));
    }

    #[test]
    fn excess_is_the_distance_past_the_limit() {
        let r = copd_spo2();
        assert_eq!(r.excess(85.0), Some(3.0));
        assert_eq!(r.excess(88.0), None);
    }
}
