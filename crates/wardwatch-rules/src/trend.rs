//! Trends against the patient's own values: heart-failure weight gain and a
//! sustained SpO2 fall from the patient's 24-hour median. Bounded state per
//! patient (fixed arrays, no growth with reading rate), pure, time passed in
//! as seconds.

use crate::threshold::Transition;

/// Seconds in an hour and a day.
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

/// Heart-failure weight gain (NICE NG106 patient advice, ESC: more than
/// about 2 kg over 3 days prompts contact with the heart-failure team).
///
/// Measured against a robust baseline, the median of the window's first day
/// of weights (up to three), so one low outlier (or a relative stepping on
/// the scale) neither triggers nor hides a gain. A steady gain slower than
/// `gain_kg` per window is caught by its rate: the least-squares slope over
/// `rate_window_secs` (four days by default, so the days before a gain began
/// do not dilute it), once three weights span at least three days. Clearing has
/// hysteresis: the gain back below `gain_kg - clear_margin_kg` and the rate
/// below half its limit, on two weighings in a row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WeightGainRule {
    /// Gain that raises, kg.
    pub gain_kg: f64,
    /// Window, seconds.
    pub window_secs: i64,
    /// A sustained rate that raises, kg per day (`None`: rate not used).
    pub rate_kg_per_day: Option<f64>,
    /// Over how long the rate is fitted, seconds.
    pub rate_window_secs: i64,
    /// How far below `gain_kg` the gain must fall before clearing, kg.
    pub clear_margin_kg: f64,
}

impl Default for WeightGainRule {
    fn default() -> Self {
        Self {
            gain_kg: 2.0,
            window_secs: 3 * DAY,
            rate_kg_per_day: Some(0.5),
            rate_window_secs: 4 * DAY,
            clear_margin_kg: 1.0,
        }
    }
}

/// The last weights of a patient (scales report once or twice a day; 16
/// entries cover a week of twice-daily weighing).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WeightTrend {
    times: [i64; 16],
    kgs: [f32; 16],
    len: u8,
    next: u8,
    raised: bool,
    /// Consecutive weighings that met the clearing condition while raised.
    clearing: u8,
}

impl Default for WeightTrend {
    fn default() -> Self {
        Self {
            times: [0; 16],
            kgs: [0.0; 16],
            len: 0,
            next: 0,
            raised: false,
            clearing: 0,
        }
    }
}

/// The median of up to three values.
fn median(v: &mut [f64]) -> Option<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

impl WeightTrend {
    /// A weight-gain flag is open.
    pub fn is_raised(&self) -> bool {
        self.raised
    }

    /// Restores an open flag after a restart, so it clears normally later.
    pub fn assume_raised(&mut self) {
        self.raised = true;
    }

    /// Weights (time, kg) in [from, until), oldest first.
    fn since(&self, from: i64, until: i64) -> Vec<(i64, f64)> {
        let mut v: Vec<(i64, f64)> = (0..usize::from(self.len))
            .filter(|&i| self.times[i] >= from && self.times[i] <= until)
            .map(|i| (self.times[i], f64::from(self.kgs[i])))
            .collect();
        v.sort_by_key(|(t, _)| *t);
        v
    }

    /// The least-squares slope (kg/day) of weights spanning at least three
    /// days, with at least three of them (home weighing misses days: asking
    /// for more would leave a gaining patient unassessed exactly when the
    /// scale is skipped).
    fn rate(points: &[(i64, f64)]) -> Option<f64> {
        let (first, last) = (points.first()?.0, points.last()?.0);
        if points.len() < 3 || last - first < 3 * DAY {
            return None;
        }
        let n = points.len() as f64;
        let xs: Vec<f64> = points
            .iter()
            .map(|(t, _)| (t - first) as f64 / DAY as f64)
            .collect();
        let mx = xs.iter().sum::<f64>() / n;
        let my = points.iter().map(|(_, y)| y).sum::<f64>() / n;
        let sxy: f64 = xs
            .iter()
            .zip(points)
            .map(|(x, (_, y))| (x - mx) * (y - my))
            .sum();
        let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
        (sxx > 0.0).then(|| sxy / sxx)
    }

    /// Feeds a weight (kg) at `at` (s); returns the flag transition and the
    /// gain over the window's baseline.
    pub fn observe(&mut self, rule: &WeightGainRule, kg: f64, at: i64) -> (Transition, f64) {
        let in_window = self.since(at - rule.window_secs, at - 1);
        // The baseline: the median of the window's first day of weights (at
        // most three), else its earliest weight.
        let start = in_window.first().map(|(t, _)| *t);
        let mut earliest: Vec<f64> = in_window
            .iter()
            .filter(|(t, _)| start.is_some_and(|s| *t < s + DAY))
            .take(3)
            .map(|(_, w)| *w)
            .collect();
        let baseline = median(&mut earliest);
        let i = usize::from(self.next);
        self.times[i] = at;
        self.kgs[i] = kg as f32;
        self.next = ((i + 1) % self.times.len()) as u8;
        self.len = (usize::from(self.len) + 1).min(self.times.len()) as u8;
        let rate = rule
            .rate_kg_per_day
            .and_then(|_| Self::rate(&self.since(at - rule.rate_window_secs, at)));
        let Some(baseline) = baseline else {
            return (Transition::None, 0.0);
        };
        // f32 storage: compare with a hair of tolerance so 2.0 kg exactly raises.
        let gain = ((kg - baseline) * 1000.0).round() / 1000.0;
        let fast = matches!((rate, rule.rate_kg_per_day), (Some(r), Some(limit)) if r >= limit);
        let breach = gain >= rule.gain_kg || fast;
        let t = if breach {
            self.clearing = 0;
            if self.raised {
                Transition::Updated
            } else {
                self.raised = true;
                Transition::Raised
            }
        } else if self.raised {
            let slow = match (rate, rule.rate_kg_per_day) {
                (Some(r), Some(limit)) => r < limit / 2.0,
                _ => true,
            };
            if gain <= rule.gain_kg - rule.clear_margin_kg && slow {
                self.clearing = self.clearing.saturating_add(1);
            } else {
                self.clearing = 0;
            }
            if self.clearing >= 2 {
                self.raised = false;
                self.clearing = 0;
                Transition::Cleared
            } else {
                Transition::None
            }
        } else {
            Transition::None
        };
        (t, gain)
    }
}

/// A sustained SpO2 fall from the patient's own 24-hour median.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spo2FallRule {
    /// Fall below the baseline median that counts, points.
    pub fall_points: f64,
    /// How long every reading must stay fallen before raising, seconds.
    pub sustain_secs: i64,
}

impl Default for Spo2FallRule {
    fn default() -> Self {
        Self {
            fall_points: 3.0,
            sustain_secs: 15 * 60,
        }
    }
}

/// Per-patient SpO2 history: a histogram of the current hour (SpO2 is
/// 50–100 in whole points after validation) and the medians of the last 24
/// hours. Under 300 bytes, whatever the reading rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spo2Trend {
    hour: i64,
    current: [u16; 51],
    hourly_medians: [u8; 24],
    hourly_hours: [i32; 24],
    fallen_since: Option<i64>,
    raised: bool,
}

impl Default for Spo2Trend {
    fn default() -> Self {
        Self {
            hour: i64::MIN,
            current: [0; 51],
            hourly_medians: [0; 24],
            hourly_hours: [i32::MIN; 24],
            fallen_since: None,
            raised: false,
        }
    }
}

fn median_of_histogram(h: &[u16; 51]) -> Option<u8> {
    let n: u32 = h.iter().map(|&c| u32::from(c)).sum();
    if n == 0 {
        return None;
    }
    let mid = n.div_ceil(2);
    let mut acc = 0u32;
    for (i, &c) in h.iter().enumerate() {
        acc += u32::from(c);
        if acc >= mid {
            return Some(50 + i as u8);
        }
    }
    None
}

impl Spo2Trend {
    /// An SpO2-fall flag is open.
    pub fn is_raised(&self) -> bool {
        self.raised
    }

    /// Restores an open flag after a restart, so it clears normally later.
    pub fn assume_raised(&mut self) {
        self.raised = true;
    }

    /// The baseline: the median of the hourly medians of the 24 hours before
    /// the current hour, once at least 6 hours are known.
    pub fn baseline(&self, at: i64) -> Option<f64> {
        let this_hour = at.div_euclid(HOUR);
        // Fixed array, no allocation: this runs on every SpO2 reading.
        let mut vals = [0u8; 24];
        let mut n = 0usize;
        for i in 0..24 {
            let h = i64::from(self.hourly_hours[i]);
            if h != i64::from(i32::MIN) && h < this_hour && h >= this_hour - 24 {
                vals[n] = self.hourly_medians[i];
                n += 1;
            }
        }
        if n < 6 {
            return None;
        }
        let vals = &mut vals[..n];
        vals.sort_unstable();
        let m = n / 2;
        Some(if n % 2 == 1 {
            f64::from(vals[m])
        } else {
            (f64::from(vals[m - 1]) + f64::from(vals[m])) / 2.0
        })
    }

    fn roll(&mut self, hour: i64) {
        if hour == self.hour {
            return;
        }
        if let Some(m) = median_of_histogram(&self.current) {
            let slot = self.hour.rem_euclid(24) as usize;
            self.hourly_medians[slot] = m;
            self.hourly_hours[slot] = i32::try_from(self.hour).unwrap_or(i32::MIN);
        }
        self.current = [0; 51];
        self.hour = hour;
    }

    /// Feeds an SpO2 reading (%) at `at` (s).
    pub fn observe(&mut self, rule: &Spo2FallRule, spo2: f64, at: i64) -> Transition {
        let baseline = self.baseline(at);
        self.roll(at.div_euclid(HOUR));
        let bucket = (spo2.round().clamp(50.0, 100.0) as usize) - 50;
        self.current[bucket] = self.current[bucket].saturating_add(1);
        let Some(base) = baseline else {
            return Transition::None;
        };
        let fallen = spo2 <= base - rule.fall_points;
        if fallen {
            let since = *self.fallen_since.get_or_insert(at);
            if self.raised {
                return Transition::Updated;
            }
            if at - since >= rule.sustain_secs {
                self.raised = true;
                return Transition::Raised;
            }
            return Transition::None;
        }
        self.fallen_since = None;
        if self.raised {
            self.raised = false;
            return Transition::Cleared;
        }
        Transition::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_kilos_in_three_days_raises_and_less_does_not() {
        let r = WeightGainRule::default();
        let mut w = WeightTrend::default();
        assert_eq!(w.observe(&r, 80.0, 0).0, Transition::None);
        assert_eq!(w.observe(&r, 80.5, DAY).0, Transition::None);
        assert_eq!(w.observe(&r, 81.9, 2 * DAY).0, Transition::None);
        let (t, gain) = w.observe(&r, 82.0, 3 * DAY - 1);
        assert_eq!(
            (t, gain),
            (Transition::Raised, 2.0),
            "from the first day's 80"
        );
        assert_eq!(w.observe(&r, 82.5, 3 * DAY + 100).0, Transition::Updated);
        // With two earlier weights only, their median is the baseline.
        let mut w = WeightTrend::default();
        w.observe(&r, 80.0, 0);
        w.observe(&r, 80.0, DAY);
        assert_eq!(w.observe(&r, 82.0, 2 * DAY), (Transition::Raised, 2.0));
        let mut w = WeightTrend::default();
        w.observe(&r, 80.0, 0);
        assert_eq!(w.observe(&r, 81.9, DAY).0, Transition::None);
    }

    #[test]
    fn one_low_outlier_neither_triggers_nor_hides_a_gain() {
        let r = WeightGainRule::default();
        // Steady 80 kg weighed three times on the first day, one of them
        // 77.5 (a bad step on the scale).
        let mut w = WeightTrend::default();
        for (k, kg) in [80.0, 77.5, 80.1].iter().enumerate() {
            w.observe(&r, *kg, k as i64 * DAY / 4);
        }
        w.observe(&r, 80.1, DAY);
        assert_eq!(
            w.observe(&r, 80.2, 2 * DAY).0,
            Transition::None,
            "a minimum-based baseline would say +2.7"
        );
    }

    #[test]
    fn a_steady_gain_of_0_6_kg_a_day_raises_on_its_rate() {
        let r = WeightGainRule::default();
        let mut w = WeightTrend::default();
        let mut raised_on = None;
        for day in 0..8 {
            let (t, _) = w.observe(&r, 80.0 + 0.6 * f64::from(day), i64::from(day) * DAY);
            if t == Transition::Raised {
                raised_on = Some(day);
            }
        }
        // Never 2 kg within any 3 days (1.8 kg), but 0.6 kg/day over 3+ days.
        assert_eq!(raised_on, Some(3));
    }

    #[test]
    fn a_gain_with_skipped_weighings_still_raises_on_three_weights() {
        // Weighed every other day: on day 4 the rate window holds three
        // weights (0, 2, 4) at 0.6 kg/day; the 3-day gain (from day 2's
        // 81.2) is only 1.2 kg.
        let r = WeightGainRule::default();
        let mut w = WeightTrend::default();
        let mut raised_on = None;
        for day in [0, 2, 4] {
            let (t, _) = w.observe(&r, 80.0 + 0.6 * f64::from(day), i64::from(day) * DAY);
            if t == Transition::Raised {
                raised_on = Some(day);
            }
        }
        assert_eq!(raised_on, Some(4));
        // Two weights three days apart are not a rate.
        let mut w = WeightTrend::default();
        w.observe(&r, 80.0, 0);
        let (t, _) = w.observe(&r, 81.8, 3 * DAY);
        assert_eq!(t, Transition::None);
    }

    #[test]
    fn clearing_needs_the_gain_well_back_and_slow_on_two_weighings() {
        let r = WeightGainRule::default();
        let mut w = WeightTrend::default();
        w.observe(&r, 80.0, 0);
        w.observe(&r, 80.0, DAY / 2);
        assert_eq!(w.observe(&r, 82.5, DAY).0, Transition::Raised);
        // 81.5: under 2 kg but not under 1 kg of gain: stays.
        assert_eq!(w.observe(&r, 81.5, 2 * DAY).0, Transition::None);
        assert!(w.is_raised());
        // 80.6 twice (gain 0.6, under 2 - 1): clears on the second.
        assert_eq!(w.observe(&r, 80.6, 5 * DAY).0, Transition::None);
        assert_eq!(w.observe(&r, 80.6, 5 * DAY + 3600).0, Transition::Cleared);
    }

    fn stable_day(t: &mut Spo2Trend, r: &Spo2FallRule, v: f64) {
        for m in 0..(24 * 60) {
            assert_ne!(t.observe(r, v, i64::from(m) * 60), Transition::Raised);
        }
    }

    #[test]
    fn no_baseline_no_trend_flag() {
        let r = Spo2FallRule::default();
        let mut t = Spo2Trend::default();
        for m in 0..60 {
            assert_eq!(t.observe(&r, 85.0, m * 60), Transition::None);
        }
    }

    #[test]
    fn a_fall_of_three_points_sustained_fifteen_minutes_raises() {
        let r = Spo2FallRule::default();
        let mut t = Spo2Trend::default();
        stable_day(&mut t, &r, 95.0);
        let start = 24 * HOUR;
        assert_eq!(t.baseline(start), Some(95.0));
        // 92 = baseline − 3: fallen. Raised once 15 min have passed.
        let mut raised_at = None;
        for m in 0..=20 {
            if t.observe(&r, 92.0, start + m * 60) == Transition::Raised {
                raised_at = Some(m);
            }
        }
        assert_eq!(raised_at, Some(15));
    }

    #[test]
    fn a_brief_dip_or_a_two_point_fall_does_not_raise() {
        let r = Spo2FallRule::default();
        let mut t = Spo2Trend::default();
        stable_day(&mut t, &r, 96.0);
        let start = 24 * HOUR;
        for m in 0..60 {
            // Two-point fall, sustained: not enough.
            assert_eq!(t.observe(&r, 94.0, start + m * 60), Transition::None);
        }
        for m in 60..120 {
            // Three-point dips that never last 15 minutes.
            let v = if m % 10 == 0 { 96.0 } else { 93.0 };
            assert_ne!(t.observe(&r, v, start + m * 60), Transition::Raised);
        }
    }

    #[test]
    fn the_baseline_is_the_patients_own() {
        // A COPD patient living at 89% is not flagged for being at 89%.
        let r = Spo2FallRule::default();
        let mut t = Spo2Trend::default();
        stable_day(&mut t, &r, 89.0);
        for m in 0..60 {
            assert_eq!(t.observe(&r, 89.0, 24 * HOUR + m * 60), Transition::None);
        }
        assert_eq!(t.baseline(25 * HOUR), Some(89.0));
    }

    #[test]
    fn per_patient_trend_state_is_small() {
        // The per-patient budget for all rules is 2 KiB.
        assert!(
            std::mem::size_of::<Spo2Trend>() <= 300,
            "{}",
            std::mem::size_of::<Spo2Trend>()
        );
        assert!(
            std::mem::size_of::<WeightTrend>() <= 256,
            "{}",
            std::mem::size_of::<WeightTrend>()
        );
    }
}
