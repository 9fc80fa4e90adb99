//! One patient's rule state and the flags it produces: readings in, flags
//! out, deterministic. A shard worker owns many of these outright.

use std::fmt;

use serde::{Serialize, Serializer};
use wardwatch_core::Vital;

pub use crate::clinical::news2_severity;
use crate::clinical::{self, alerting_band, is_news2_input, NEWS2_INPUTS};
use crate::news2::{self, Band, Score, SpO2Scale};
use crate::pathway::Pathway;
use crate::threshold::{Scope, Severity, Threshold, ThresholdState, Transition};
use crate::trend::{Spo2Trend, WeightTrend};

/// Which rule a flag comes from. One open flag per patient and rule; the
/// text form ([`RuleId::key`]) is what the store keys open flags by, so it
/// stays stable across restarts and reloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleId {
    /// The NEWS2 aggregate.
    News2,
    /// The pathway's `n`-th single-vital threshold on `vital`.
    Threshold {
        /// The vital.
        vital: Vital,
        /// Position among the pathway's thresholds on that vital.
        n: u8,
    },
    /// A clinician's personalised limit for this patient (replaces the
    /// pathway's thresholds on that vital).
    Personal {
        /// The vital.
        vital: Vital,
        /// Position among the patient's limits on that vital.
        n: u8,
    },
    /// Heart-failure weight gain.
    WeightGain,
    /// SpO2 fall from the patient's median.
    Spo2Fall,
    /// The patient's expected readings stopped (a technical flag).
    NoData,
}

impl RuleId {
    /// The stable text key: `news2`, `threshold:spo2:0`, `personal:spo2:0`,
    /// `weight_gain`, `spo2_fall`, `no_data`.
    pub fn key(&self) -> String {
        self.to_string()
    }

    /// Parses a key written by [`RuleId::key`].
    pub fn parse(key: &str) -> Option<Self> {
        match key {
            "news2" => return Some(Self::News2),
            "weight_gain" => return Some(Self::WeightGain),
            "spo2_fall" => return Some(Self::Spo2Fall),
            "no_data" => return Some(Self::NoData),
            _ => {}
        }
        let mut parts = key.split(':');
        let (kind, vital, n) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let vital = Vital::from_name(vital)?;
        let n = n.parse().ok()?;
        match kind {
            "threshold" => Some(Self::Threshold { vital, n }),
            "personal" => Some(Self::Personal { vital, n }),
            _ => None,
        }
    }

    /// The rule's family, as [`crate::clinical::rule_family`] reads it from the key.
    pub fn family(&self) -> &'static str {
        match self {
            Self::News2 => "news2",
            Self::Threshold { .. } => "threshold",
            Self::Personal { .. } => "personal",
            Self::WeightGain => "weight_gain",
            Self::Spo2Fall => "spo2_fall",
            Self::NoData => "no_data",
        }
    }

    /// Technical rules (a silent device) never merge into a clinical alert.
    pub fn is_technical(&self) -> bool {
        matches!(self, Self::NoData)
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::News2 => f.write_str("news2"),
            Self::Threshold { vital, n } => write!(f, "threshold:{}:{n}", vital.as_str()),
            Self::Personal { vital, n } => write!(f, "personal:{}:{n}", vital.as_str()),
            Self::WeightGain => f.write_str("weight_gain"),
            Self::Spo2Fall => f.write_str("spo2_fall"),
            Self::NoData => f.write_str("no_data"),
        }
    }
}

impl Serialize for RuleId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

pub use wardwatch_core::flag::FlagState;

/// One reading a flag rests on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Evidence {
    /// What was measured.
    #[serde(serialize_with = "vital_name")]
    pub vital: Vital,
    /// Canonical value.
    pub value: f64,
    /// When (s since the epoch).
    pub at: i64,
}

fn subject_text<S: Serializer>(v: &Option<std::sync::Arc<str>>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(t) => s.serialize_str(t),
        None => s.serialize_none(),
    }
}

fn vital_name<S: Serializer>(v: &Vital, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.as_str())
}

/// A flag: the rules core's output, the alerting layer's input.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flag {
    /// The rule.
    pub rule: RuleId,
    /// How urgent.
    pub severity: Severity,
    /// Raised, updated or cleared.
    pub state: FlagState,
    /// When (s), the time of the reading (or clock tick) that caused it.
    pub at: i64,
    /// The evidence in words: the value and limit, or the NEWS2 summary
    /// (which says when the score is partial or assumed oxygen).
    pub summary: String,
    /// The readings that triggered it (for NEWS2, every parameter used).
    pub readings: Vec<Evidence>,
    /// The NEWS2 breakdown, for NEWS2 flags.
    pub news2: Option<Score>,
    /// How bad, in the rule's own terms: the NEWS2 total, how far past its
    /// limit a value is, the kg gained, the points fallen. Alerting re-pages
    /// (and breaks through a snooze) when it worsens by the policy's margin.
    pub measure: Option<f64>,
    /// What the flag is about within the patient, when the rule has one per
    /// thing: the device, for a device's own `no_data`.
    #[serde(serialize_with = "subject_text")]
    pub subject: Option<std::sync::Arc<str>>,
}

impl Flag {
    /// The key the store holds the flag by: the rule's key, with its
    /// subject (`no_data:ox-17`) when it has one.
    pub fn key(&self) -> String {
        match &self.subject {
            Some(s) => format!("{}:{s}", self.rule.key()),
            None => self.rule.key(),
        }
    }
}

/// Parses a stored flag key into its rule and subject (`no_data:ox-17` is
/// the `no_data` rule of device `ox-17`).
pub fn parse_flag_key(key: &str) -> Option<(RuleId, Option<String>)> {
    if let Some(device) = key.strip_prefix("no_data:") {
        return (!device.is_empty()).then(|| (RuleId::NoData, Some(device.to_string())));
    }
    RuleId::parse(key).map(|r| (r, None))
}

/// Clinician-set, per-patient facts the rules need.
#[derive(Debug, Clone, PartialEq)]
pub struct PatientSettings {
    /// SpO2 scale (Scale 2 only by a clinician's decision, audited in the store).
    pub scale: SpO2Scale,
    /// On oxygen according to the care plan, used when no reading says.
    pub care_plan_oxygen: bool,
    /// NEWS2 applies (adult, not pregnant).
    pub news2_applies: bool,
    /// Personalised limits: for each vital listed here, these replace the
    /// pathway's thresholds on that vital.
    pub overrides: Vec<(Vital, Threshold)>,
    /// Bumped whenever any of the above changes, so a patient's state
    /// re-derives its rules once, not on every reading.
    pub version: u64,
}

impl Default for PatientSettings {
    fn default() -> Self {
        Self {
            scale: SpO2Scale::One,
            care_plan_oxygen: false,
            news2_applies: true,
            overrides: Vec::new(),
            version: 0,
        }
    }
}

/// The inverse of [`news2_severity`] for a restored open flag.
fn band_of(severity: Severity) -> Band {
    match severity {
        Severity::Low => Band::Low,
        Severity::Medium => Band::LowMedium,
        Severity::High => Band::Medium,
        Severity::Emergency => Band::High,
    }
}

/// One threshold as it applies to this patient, with its state.
#[derive(Debug, Clone)]
struct ThresholdSlot {
    rule: RuleId,
    vital: Vital,
    limit: Threshold,
    state: ThresholdState,
}

/// Everything the rules remember about one patient.
#[derive(Debug, Clone, Default)]
pub struct PatientState {
    /// Latest (value, time) per vital, indexed by `Vital::index`.
    latest: [Option<(f64, i64)>; Vital::ALL.len()],
    /// The effective thresholds (pathway's, or the patient's own).
    thresholds: Vec<ThresholdSlot>,
    /// (rule set generation, settings version) the thresholds were derived for.
    derived_for: Option<(u64, u64)>,
    weight: WeightTrend,
    spo2: Spo2Trend,
    /// What the open NEWS2 flag last said, if one is open.
    news2_open: Option<News2Open>,
    /// A NEWS2 input arrived since the last score.
    news2_pending: bool,
    /// Since when scores have been 0 while the NEWS2 flag is open.
    news2_zero_since: Option<i64>,
}

/// The open NEWS2 flag's picture: a change of band, of the total, or of
/// what the score rests on updates the flag (alerting decides whether an
/// update pages: a rise of the policy's delta does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct News2Open {
    /// The band the flag stands at (for a lower bound, the band it alone
    /// establishes).
    band: Band,
    total: u8,
    /// Raised from a lower bound (a partial set).
    lower_bound: bool,
    partial: bool,
    oxygen_assumed: bool,
}

impl News2Open {
    fn of(s: &Score) -> Self {
        Self {
            band: alerting_band(s),
            total: s.total,
            lower_bound: s.lower_bound,
            partial: s.partial,
            oxygen_assumed: s.oxygen_assumed,
        }
    }

    /// A restored flag: the band is known; the next score re-establishes
    /// the rest (and updates the flag if it differs).
    fn restored(band: Band) -> Self {
        Self {
            band,
            total: 0,
            lower_bound: false,
            partial: false,
            oxygen_assumed: false,
        }
    }
}

fn slot(v: Vital) -> usize {
    Vital::ALL.iter().position(|x| *x == v).unwrap_or(0)
}

fn transition_flag(
    t: Transition,
    rule: RuleId,
    severity: Severity,
    evidence: Evidence,
    measure: Option<f64>,
    summary: impl FnOnce() -> String,
) -> Option<Flag> {
    let state = match t {
        Transition::None => return None,
        Transition::Raised => FlagState::Raised,
        Transition::Updated => FlagState::Updated,
        Transition::Cleared => FlagState::Cleared,
    };
    Some(Flag {
        rule,
        severity,
        state,
        at: evidence.at,
        summary: summary(),
        readings: vec![evidence],
        news2: None,
        measure: if state == FlagState::Cleared {
            None
        } else {
            measure
        },
        subject: None,
    })
}

/// The thresholds that apply to a patient. A clinician's personal limits
/// narrow or add tiers: on a vital with personal limits, the pathway's
/// tiers up to the highest personal severity give way to them, but a
/// pathway tier of higher severity always stays (a personal SpO2 limit
/// never removes COVID oximetry's emergency tier), and each personal
/// limit is held within the pathway's severity and persistence
/// ([`clinical::bound_personal_limit`]).
fn effective_thresholds(pathway: &Pathway, settings: &PatientSettings) -> Vec<ThresholdSlot> {
    let mut out = Vec::with_capacity(pathway.thresholds.len() + settings.overrides.len());
    let mut counts = [0u8; Vital::ALL.len()];
    let personal: Vec<(Vital, Threshold)> = settings
        .overrides
        .iter()
        .map(|(v, t)| (*v, clinical::bound_personal_limit(pathway, *v, t)))
        .collect();
    for (vital, limit) in &pathway.thresholds {
        let replaced_up_to = personal
            .iter()
            .filter(|(v, _)| v == vital)
            .map(|(_, t)| t.severity)
            .max();
        // The rule id counts every pathway tier, kept or not, so a tier's
        // key does not change when a personal limit is set or removed.
        let n = &mut counts[slot(*vital)];
        let rule = RuleId::Threshold {
            vital: *vital,
            n: *n,
        };
        *n = n.saturating_add(1);
        if replaced_up_to.is_some_and(|s| limit.severity <= s) {
            continue;
        }
        out.push(ThresholdSlot {
            rule,
            vital: *vital,
            limit: limit.clone(),
            state: ThresholdState::default(),
        });
    }
    let mut counts = [0u8; Vital::ALL.len()];
    for (vital, limit) in personal {
        let n = &mut counts[slot(vital)];
        out.push(ThresholdSlot {
            rule: RuleId::Personal { vital, n: *n },
            vital,
            limit,
            state: ThresholdState::default(),
        });
        *n = n.saturating_add(1);
    }
    out
}

/// "spo2 80 (lower limit 92.5); recheck after 5 minutes' rest ..."
fn threshold_summary(vital: Vital, value: f64, limit: &Threshold) -> String {
    let mut s = format!("{vital} {value} ({})", limit_text(limit));
    if let Some(g) = &limit.guidance {
        s.push_str("; ");
        s.push_str(g);
    }
    s
}

fn limit_text(rule: &Threshold) -> String {
    match (rule.low, rule.high) {
        (Some(lo), Some(hi)) => format!("limits {lo}–{hi}"),
        (Some(lo), None) => format!("lower limit {lo}"),
        (None, Some(hi)) => format!("upper limit {hi}"),
        (None, None) => String::new(),
    }
}

impl PatientState {
    /// Re-derives the patient's rules after a reload or a settings change.
    /// A threshold that still applies keeps its state (an open flag stays
    /// open); one that no longer applies has its open flag cleared, so no
    /// flag is orphaned by a configuration change.
    pub fn configure(
        &mut self,
        pathway: &Pathway,
        settings: &PatientSettings,
        generation: u64,
        at: i64,
    ) -> Vec<Flag> {
        let key = (generation, settings.version);
        if self.derived_for == Some(key) {
            return Vec::new();
        }
        self.derived_for = Some(key);
        let mut flags = Vec::new();
        let mut next = effective_thresholds(pathway, settings);
        for old in &self.thresholds {
            match next.iter_mut().find(|s| s.rule == old.rule) {
                Some(new) if new.limit == old.limit => new.state = old.state,
                Some(new) if old.state.raised => {
                    // Same rule, new limits: keep the flag open; the next
                    // reading is judged against the new limits.
                    new.state.raised = true;
                }
                Some(_) => {}
                None if old.state.raised => flags.push(Flag {
                    rule: old.rule,
                    severity: old.limit.severity,
                    state: FlagState::Cleared,
                    at,
                    summary: format!("{} no longer applies: configuration changed", old.rule),
                    readings: Vec::new(),
                    news2: None,
                    measure: None,
                    subject: None,
                }),
                None => {}
            }
        }
        self.thresholds = next;
        let news2_applies = pathway.news2_enabled && settings.news2_applies;
        if let (Some(News2Open { band, .. }), false) = (self.news2_open, news2_applies) {
            self.news2_open = None;
            flags.push(Flag {
                rule: RuleId::News2,
                severity: news2_severity(band),
                state: FlagState::Cleared,
                at,
                summary: "NEWS2 no longer applies to this patient: configuration changed".into(),
                readings: Vec::new(),
                news2: None,
                measure: None,
                subject: None,
            });
        }
        flags
    }

    /// Feeds one reading (canonical unit, time in s) and returns the flags it
    /// raised, updated or cleared. Call [`PatientState::configure`] first
    /// whenever the rule set or the settings may have changed (it is a no-op
    /// when they have not).
    pub fn on_reading(
        &mut self,
        pathway: &Pathway,
        settings: &PatientSettings,
        vital: Vital,
        value: f64,
        at: i64,
    ) -> Vec<Flag> {
        self.on_reading_in_set(pathway, settings, vital, value, at, true)
    }

    /// Like [`PatientState::on_reading`] for one reading of an observation
    /// set (a SenML pack, a FHIR bundle): NEWS2 is scored once, at the
    /// set's last reading, so a flag never shows a half-applied set.
    pub fn on_reading_in_set(
        &mut self,
        pathway: &Pathway,
        settings: &PatientSettings,
        vital: Vital,
        value: f64,
        at: i64,
        last_in_set: bool,
    ) -> Vec<Flag> {
        let mut flags = Vec::new();
        let s = slot(vital);
        if self.latest[s].is_none_or(|(_, t)| at >= t) {
            self.latest[s] = Some((value, at));
        }
        if self.derived_for.is_none() {
            // Never configured (a direct caller): derive once; nothing is open yet.
            self.configure(pathway, settings, 0, at);
        }
        let evidence = Evidence { vital, value, at };
        let news2_covers =
            pathway.news2_enabled && settings.news2_applies && self.complete_set_fresh(pathway, at);
        for t in self.thresholds.iter_mut().filter(|t| t.vital == vital) {
            if t.limit.scope == Scope::WithoutNews2 && news2_covers {
                continue;
            }
            let transition = t.state.observe(&t.limit, value, at);
            let limit = &t.limit;
            flags.extend(transition_flag(
                transition,
                t.rule,
                limit.severity,
                evidence,
                limit.excess(value),
                || threshold_summary(vital, value, limit),
            ));
        }
        if let (Vital::BodyWeight, Some(rule)) = (vital, &pathway.weight_gain) {
            let (t, gain) = self.weight.observe(rule, value, at);
            flags.extend(transition_flag(
                t,
                RuleId::WeightGain,
                Severity::High,
                evidence,
                Some(gain),
                || {
                    format!(
                        "weight {value} kg, +{gain} kg within {} days",
                        rule.window_secs / 86_400
                    )
                },
            ));
        }
        if let (Vital::Spo2, Some(rule)) = (vital, &pathway.spo2_fall) {
            let base = self.spo2.baseline(at);
            let t = self.spo2.observe(rule, value, at);
            flags.extend(transition_flag(
                t,
                RuleId::Spo2Fall,
                Severity::High,
                evidence,
                base.map(|b| b - value),
                || match base {
                    Some(b) => format!("SpO2 {value}% against the patient's 24 h median {b}%"),
                    None => format!("SpO2 {value}%"),
                },
            ));
        }
        if is_news2_input(vital) {
            self.news2_pending = true;
        }
        if last_in_set && self.news2_pending && pathway.news2_enabled && settings.news2_applies {
            self.news2_pending = false;
            flags.extend(self.news2(pathway, settings, at));
        }
        flags
    }

    /// The rules with an open flag, and their severity.
    pub fn open_flags(&self) -> Vec<(RuleId, Severity)> {
        let mut out: Vec<_> = self
            .thresholds
            .iter()
            .filter(|t| t.state.raised)
            .map(|t| (t.rule, t.limit.severity))
            .collect();
        if let Some(open) = self.news2_open {
            out.push((RuleId::News2, news2_severity(open.band)));
        }
        if self.weight.is_raised() {
            out.push((RuleId::WeightGain, Severity::High));
        }
        if self.spo2.is_raised() {
            out.push((RuleId::Spo2Fall, Severity::High));
        }
        out
    }

    /// Restores a flag the store holds open (after a restart), so that it is
    /// not raised again and clears through the normal path. Returns false
    /// when the rule no longer applies to this patient.
    pub fn assume_open(&mut self, rule: RuleId, severity: Severity) -> bool {
        match rule {
            RuleId::News2 => {
                self.news2_open = Some(News2Open::restored(band_of(severity)));
                true
            }
            RuleId::WeightGain => {
                self.weight.assume_raised();
                true
            }
            RuleId::Spo2Fall => {
                self.spo2.assume_raised();
                true
            }
            RuleId::Threshold { .. } | RuleId::Personal { .. } => {
                match self.thresholds.iter_mut().find(|t| t.rule == rule) {
                    Some(t) => {
                        t.state.raised = true;
                        true
                    }
                    None => false,
                }
            }
            RuleId::NoData => false,
        }
    }

    /// Every measured NEWS2 parameter has a fresh reading at `at`.
    fn complete_set_fresh(&self, pathway: &Pathway, at: i64) -> bool {
        let w = clinical::freshness_secs(pathway);
        [
            Vital::RespiratoryRate,
            Vital::Spo2,
            Vital::SystolicBp,
            Vital::HeartRate,
            Vital::BodyTemperature,
        ]
        .iter()
        .all(|v| self.fresh_at(*v, at, w).is_some())
    }

    /// The earliest time the clock alone would raise one of this patient's
    /// threshold breaches, if any is pending.
    pub fn next_due(&self) -> Option<i64> {
        self.thresholds
            .iter()
            .filter_map(|t| t.state.due_at(&t.limit))
            .min()
    }

    /// The clock at `now` (s): raises breaches whose persistence time has
    /// passed with no reading back inside.
    pub fn on_clock(&mut self, now: i64) -> Vec<Flag> {
        let mut flags = Vec::new();
        for t in &mut self.thresholds {
            if let Some((value, at)) = t.state.on_clock(&t.limit, now) {
                let limit = &t.limit;
                let vital = t.vital;
                let mut summary = threshold_summary(vital, value, limit);
                summary.push_str(&format!(
                    "; no reading back inside within {} min",
                    limit.persist_secs / 60
                ));
                flags.push(Flag {
                    rule: t.rule,
                    severity: limit.severity,
                    state: FlagState::Raised,
                    at: now,
                    summary,
                    readings: vec![Evidence { vital, value, at }],
                    news2: None,
                    measure: limit.excess(value),
                    subject: None,
                });
            }
        }
        flags
    }

    fn fresh(&self, v: Vital, now: i64, window: i64) -> Option<f64> {
        self.fresh_at(v, now, window).map(|(x, _)| x)
    }

    fn fresh_at(&self, v: Vital, now: i64, window: i64) -> Option<(f64, i64)> {
        self.latest[slot(v)].filter(|(_, t)| now - t <= window && *t <= now)
    }

    fn news2(&mut self, pathway: &Pathway, settings: &PatientSettings, at: i64) -> Option<Flag> {
        let w = clinical::freshness_secs(pathway);
        let obs = clinical::observations(|v| self.fresh(v, at, w), settings.care_plan_oxygen);
        let readings = NEWS2_INPUTS
            .iter()
            .filter_map(|v| {
                self.fresh_at(*v, at, w).map(|(value, t)| Evidence {
                    vital: *v,
                    value,
                    at: t,
                })
            })
            .collect();
        self.news2_decide(pathway, settings, &obs, readings, at)
    }

    /// Scores a set as of `at` from the readings given (a nurse's entry
    /// taken earlier than the latest device readings, with the stored
    /// history around its time): the values the patient had then, not the
    /// latest ones. Flags as [`PatientState::on_reading`] would.
    pub fn score_set_as_of(
        &mut self,
        pathway: &Pathway,
        settings: &PatientSettings,
        values: &[Evidence],
        at: i64,
    ) -> Option<Flag> {
        if !(pathway.news2_enabled && settings.news2_applies) {
            return None;
        }
        let w = clinical::freshness_secs(pathway);
        let as_of = |v: Vital| {
            values
                .iter()
                .filter(|e| e.vital == v && e.at <= at && at - e.at <= w)
                .max_by_key(|e| e.at)
                .copied()
        };
        let obs = clinical::observations(|v| as_of(v).map(|e| e.value), settings.care_plan_oxygen);
        let readings = NEWS2_INPUTS.iter().filter_map(|v| as_of(*v)).collect();
        self.news2_decide(pathway, settings, &obs, readings, at)
    }

    fn news2_decide(
        &mut self,
        pathway: &Pathway,
        settings: &PatientSettings,
        obs: &news2::Observations,
        readings: Vec<Evidence>,
        at: i64,
    ) -> Option<Flag> {
        // Whatever is fresh: a complete score, or a lower bound from a
        // partial set (see `clinical` for the rule and its RCP basis).
        let score = news2::score_partial(obs, settings.scale).ok()?;
        let now = News2Open::of(&score);
        let state = match self.news2_open {
            None if now.band == Band::Zero => return None,
            None => FlagState::Raised,
            // A partial set never clears or lowers a flag a complete score
            // raised: what it does not measure may still be bad.
            Some(open) if now.lower_bound && !open.lower_bound && now.band <= open.band => {
                self.news2_zero_since = None;
                return None;
            }
            Some(_) if now.band == Band::Zero => {
                // Hysteresis: clear only once scores stayed 0 (or, for a
                // flag raised from a partial set, below any trigger) for
                // the hold.
                let since = *self.news2_zero_since.get_or_insert(at);
                if at - since < pathway.news2_clear_hold_secs {
                    return None;
                }
                FlagState::Cleared
            }
            // A change of band (worse or better), of the total, or of what
            // the score rests on updates the flag at once.
            Some(open) if open != now => FlagState::Updated,
            Some(_) => {
                self.news2_zero_since = None;
                return None;
            }
        };
        self.news2_zero_since = None;
        self.news2_open = (state != FlagState::Cleared).then_some(now);
        Some(Flag {
            rule: RuleId::News2,
            severity: news2_severity(now.band.max(Band::Low)),
            state,
            at,
            summary: score.summary(),
            readings,
            news2: Some(score),
            measure: Some(f64::from(score.total)),
            subject: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::pathway::load_dir;

    fn pathway(name: &str) -> Pathway {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/pathways");
        load_dir(&dir).unwrap().remove(name).unwrap()
    }

    fn obs_set(
        p: &mut PatientState,
        pw: &Pathway,
        s: &PatientSettings,
        at: i64,
        (rr, spo2, sbp, hr, temp): (f64, f64, f64, f64, f64),
    ) -> Vec<Flag> {
        let mut out = Vec::new();
        for (v, x) in [
            (Vital::RespiratoryRate, rr),
            (Vital::Spo2, spo2),
            (Vital::SystolicBp, sbp),
            (Vital::HeartRate, hr),
            (Vital::BodyTemperature, temp),
        ] {
            out.extend(p.on_reading(pw, s, v, x, at));
        }
        out
    }

    #[test]
    fn a_deteriorating_patient_gets_one_news2_flag_updated_as_it_worsens() {
        let pw = pathway("general");
        let s = PatientSettings::default();
        let mut p = PatientState::default();
        p.on_reading(&pw, &s, Vital::Consciousness, 0.0, 0);
        p.on_reading(&pw, &s, Vital::SupplementalOxygen, 0.0, 0);
        assert!(obs_set(&mut p, &pw, &s, 10, (16.0, 97.0, 120.0, 70.0, 37.0)).is_empty());
        // Pulse 95 (1): low band, raised once.
        let f = obs_set(&mut p, &pw, &s, 600, (16.0, 97.0, 120.0, 95.0, 37.0));
        let news: Vec<_> = f.iter().filter(|f| f.rule == RuleId::News2).collect();
        assert_eq!(news.len(), 1);
        assert_eq!(news[0].state, FlagState::Raised);
        assert_eq!(news[0].severity, Severity::Low);
        // The same picture again: no new flag.
        assert!(obs_set(&mut p, &pw, &s, 1200, (16.0, 97.0, 120.0, 95.0, 37.0)).is_empty());
        // Sepsis-like worsening, reading by reading: each change of band
        // updates the one open flag at once; no second flag is raised.
        let f = obs_set(&mut p, &pw, &s, 1800, (25.0, 94.0, 100.0, 115.0, 38.6));
        let news: Vec<_> = f.iter().filter(|f| f.rule == RuleId::News2).collect();
        let bands: Vec<_> = news
            .iter()
            .map(|f| (f.state, f.severity, f.news2.unwrap().total))
            .collect();
        // Pulse 95 → 115 and 38.6 °C raise the total to 9 within the high
        // band: each rise updates the flag too (alerting re-pages when the
        // rise reaches the policy's delta).
        assert_eq!(
            bands,
            vec![
                (FlagState::Updated, Severity::Medium, 4), // RR 25: a single 3
                (FlagState::Updated, Severity::High, 5),   // + SpO2 94 (1)
                (FlagState::Updated, Severity::Emergency, 7), // + SBP 100 (2)
                (FlagState::Updated, Severity::Emergency, 8), // + pulse 115 (2)
                (FlagState::Updated, Severity::Emergency, 9), // + 38.6 °C (1)
            ]
        );
        // Recovery to all-normal values clears it once they have held for
        // the pathway's clear hold (60 min), not on the first normal set;
        // a blip back to 1 within the hold restarts it. (Whether the alert
        // resolves is the alerting layer's decision.)
        let news_at = |p: &mut PatientState, at, hr| {
            let set = [
                (Vital::RespiratoryRate, 16.0),
                (Vital::Spo2, 97.0),
                (Vital::SystolicBp, 120.0),
                (Vital::HeartRate, hr),
                (Vital::BodyTemperature, 37.0),
            ];
            let mut out = Vec::new();
            for (i, (v, x)) in set.iter().enumerate() {
                out.extend(p.on_reading_in_set(&pw, &s, *v, *x, at, i == set.len() - 1));
            }
            out.retain(|f| f.rule == RuleId::News2);
            out
        };
        assert!(news_at(&mut p, 3600, 70.0).is_empty(), "held open");
        assert_eq!(news_at(&mut p, 5400, 95.0)[0].severity, Severity::Low);
        assert!(news_at(&mut p, 6000, 70.0).is_empty());
        assert!(news_at(&mut p, 6000 + 3599, 70.0).is_empty());
        let f = news_at(&mut p, 6000 + 3600, 70.0);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].state, FlagState::Cleared);
    }

    #[test]
    fn stale_parameters_give_no_score_and_a_missing_consciousness_is_reported() {
        let pw = pathway("general");
        let s = PatientSettings::default();
        let mut p = PatientState::default();
        // Respiration measured two hours ago: outside the 60-minute window.
        p.on_reading(&pw, &s, Vital::RespiratoryRate, 30.0, 0);
        let f = obs_set(&mut p, &pw, &s, 7200, (30.0, 97.0, 120.0, 70.0, 37.0));
        let news: Vec<_> = f.iter().filter(|f| f.rule == RuleId::News2).collect();
        assert_eq!(news.len(), 1, "scored once all five are fresh");
        assert!(
            news[0].summary.contains("consciousness not assessed"),
            "{}",
            news[0].summary
        );
        assert!(news[0].summary.contains("assumed"), "{}", news[0].summary);
        let mut q = PatientState::default();
        q.on_reading(&pw, &s, Vital::RespiratoryRate, 30.0, 0);
        for (v, x) in [
            (Vital::Spo2, 97.0),
            (Vital::SystolicBp, 120.0),
            (Vital::HeartRate, 70.0),
            (Vital::BodyTemperature, 37.0),
        ] {
            assert!(q
                .on_reading(&pw, &s, v, x, 7200)
                .iter()
                .all(|f| f.rule != RuleId::News2));
        }
    }

    fn news2_flags(f: &[Flag]) -> Vec<(FlagState, Severity, u8, bool)> {
        f.iter()
            .filter(|f| f.rule == RuleId::News2)
            .map(|f| {
                let s = f.news2.unwrap();
                (f.state, f.severity, s.total, s.lower_bound)
            })
            .collect()
    }

    #[test]
    fn an_oximeter_alone_raises_a_partial_news2_flag_on_red_scores() {
        let pw = pathway("general");
        let s = PatientSettings::default();
        let mut p = PatientState::default();
        // SpO2 84 (3) and pulse 135 (3) from an oximeter: at least 6.
        let mut f = p.on_reading_in_set(&pw, &s, Vital::Spo2, 84.0, 0, false);
        f.extend(p.on_reading_in_set(&pw, &s, Vital::HeartRate, 135.0, 0, true));
        assert_eq!(
            news2_flags(&f),
            vec![(FlagState::Raised, Severity::High, 6, true)]
        );
        let summary = &f.iter().find(|f| f.rule == RuleId::News2).unwrap().summary;
        assert!(summary.starts_with("partial NEWS2 at least 6"), "{summary}");
        // A lower bound of 2 without a red score raises nothing on its own.
        let mut q = PatientState::default();
        let mut f = q.on_reading_in_set(&pw, &s, Vital::Spo2, 94.0, 0, false);
        f.extend(q.on_reading_in_set(&pw, &s, Vital::HeartRate, 95.0, 0, true));
        assert!(news2_flags(&f).is_empty(), "{f:?}");
        // Recovery of the partial picture clears it after the hold.
        let mut f = Vec::new();
        for at in [600, 600 + 3600] {
            f = p.on_reading_in_set(&pw, &s, Vital::Spo2, 97.0, at, false);
            f.extend(p.on_reading_in_set(&pw, &s, Vital::HeartRate, 75.0, at, true));
        }
        assert_eq!(
            news2_flags(&f),
            vec![(FlagState::Cleared, Severity::Low, 0, true)]
        );
    }

    #[test]
    fn a_partial_set_never_clears_or_lowers_a_complete_scores_flag() {
        let pw = pathway("general");
        let s = PatientSettings::default();
        let mut p = PatientState::default();
        p.on_reading(&pw, &s, Vital::Consciousness, 0.0, 0);
        let f = obs_set(&mut p, &pw, &s, 0, (25.0, 94.0, 100.0, 115.0, 38.6));
        assert_eq!(
            news2_flags(&f).last().map(|x| (x.1, x.3)),
            Some((Severity::Emergency, false))
        );
        // Two hours on, only the oximeter reports, and looks fine.
        for k in 0..5 {
            let at = 7200 + k * 1800;
            let mut f = p.on_reading_in_set(&pw, &s, Vital::Spo2, 97.0, at, false);
            f.extend(p.on_reading_in_set(&pw, &s, Vital::HeartRate, 70.0, at, true));
            assert!(news2_flags(&f).is_empty(), "{f:?}");
        }
        assert!(p
            .open_flags()
            .contains(&(RuleId::News2, Severity::Emergency)));
    }

    #[test]
    fn news2_is_not_scored_for_patients_it_does_not_apply_to() {
        let pw = pathway("general");
        let s = PatientSettings {
            news2_applies: false,
            ..Default::default()
        };
        let mut p = PatientState::default();
        assert!(obs_set(&mut p, &pw, &s, 0, (30.0, 85.0, 80.0, 140.0, 40.0)).is_empty());
    }

    #[test]
    fn where_news2_does_not_apply_the_pathways_limits_still_do() {
        // Pregnant on general: no NEWS2, but the partial-kit limits watch
        // every set, complete or not.
        let pw = pathway("general");
        let s = PatientSettings {
            news2_applies: false,
            ..Default::default()
        };
        let mut p = PatientState::default();
        let mut raised = Vec::new();
        for k in 0..2 {
            raised.extend(obs_set(
                &mut p,
                &pw,
                &s,
                k * 600,
                (16.0, 97.0, 120.0, 135.0, 37.0),
            ));
        }
        assert!(raised.iter().all(|f| f.rule != RuleId::News2));
        assert_eq!(
            raised
                .iter()
                .map(|f| (f.rule.key(), f.state))
                .collect::<Vec<_>>(),
            vec![("threshold:heart_rate:0".to_string(), FlagState::Raised)]
        );
    }

    #[test]
    fn copd_uses_personalised_spo2_limits_not_scale_1_alone() {
        let pw = pathway("copd");
        let s = PatientSettings {
            news2_applies: false,
            ..Default::default()
        };
        let mut p = PatientState::default();
        let mut raised = Vec::new();
        for (i, v) in [89.0, 90.0, 87.0, 86.0, 86.0].iter().enumerate() {
            raised.extend(p.on_reading(&pw, &s, Vital::Spo2, *v, i as i64 * 60));
        }
        assert_eq!(raised.len(), 1, "{raised:?}");
        assert_eq!(
            raised[0].rule,
            RuleId::Threshold {
                vital: Vital::Spo2,
                n: 0
            }
        );
        assert_eq!(raised[0].state, FlagState::Raised);
        assert_eq!(raised[0].severity, Severity::High);
        assert!(
            raised[0].summary.contains("limits 88–96"),
            "{}",
            raised[0].summary
        );
    }

    #[test]
    fn heart_failure_weight_gain_flags() {
        let pw = pathway("heart-failure");
        let s = PatientSettings::default();
        let mut p = PatientState::default();
        assert!(p.on_reading(&pw, &s, Vital::BodyWeight, 80.0, 0).is_empty());
        let f = p.on_reading(&pw, &s, Vital::BodyWeight, 82.1, 2 * 86_400);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule, RuleId::WeightGain);
        assert!(f[0].summary.contains("+2.1 kg"), "{}", f[0].summary);
    }

    #[test]
    fn a_rules_family_is_its_keys_family() {
        for rule in [
            RuleId::News2,
            RuleId::Threshold {
                vital: Vital::Spo2,
                n: 1,
            },
            RuleId::Personal {
                vital: Vital::HeartRate,
                n: 0,
            },
            RuleId::WeightGain,
            RuleId::Spo2Fall,
            RuleId::NoData,
        ] {
            assert_eq!(rule.family(), clinical::rule_family(&rule.key()));
        }
    }

    #[test]
    fn per_patient_state_fits_the_budget() {
        // Target: at most 2 KiB per patient (thresholds add 24 bytes each on the heap).
        let size = std::mem::size_of::<PatientState>();
        assert!(size <= 2048, "{size}");
    }
}
