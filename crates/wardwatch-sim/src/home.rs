//! A realistic home ward on a simulated clock, with ground truth: what
//! virtual-ward patients' kits really send, and when each scripted
//! deterioration became actionable.
//!
//! Unlike [`crate::Ward`] (every vital every second, for end-to-end tests),
//! each pathway here has its own kit and cadence: COVID oximetry spot
//! checks three times a day with an oximeter; COPD an oximeter and a
//! thermometer three times a day, with respiratory rate and consciousness
//! only from a nurse's daily phone call; heart failure a morning weight and
//! blood pressure; post-discharge an oximeter, cuff and thermometer four
//! times a day; general (acute) a patch reporting every minute plus a cuff
//! twice a day; and an oximeter-only general kit. Stable patients vary as
//! real ones do (noise, a daily rhythm, COPD baselines of NEWS2 1-3, cold
//! fingers reading low, probe-off artefacts, missed checks, devices left
//! uncharged for a day). Six deteriorations are scripted, each with its
//! onset, the moment a clinician would want to act (actionable) and the
//! deadline by which a page must have reached someone.
//!
//! Pure and seeded: the same seed gives the same ward; weeks of ward time
//! are generated in milliseconds.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use wardwatch_core::Vital;

/// Seconds in an hour and a day.
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

/// What happens to a home patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HomeScenario {
    /// Recovering as expected (with real variation).
    Stable,
    /// Sepsis on a continuous patch: pulse, breathing and temperature up,
    /// pressure down over eight hours.
    Sepsis,
    /// COPD: SpO2 below the 88-92% target and breathing faster over 36 h.
    CopdExacerbation,
    /// Heart failure: 0.7 kg a day of fluid.
    HeartFailureDecompensation,
    /// COVID: SpO2 falling to 89% over a day, seen at spot checks.
    CovidHypoxia,
    /// A device stops sending (flat battery, left in a drawer).
    SilentDevice,
    /// A slow SpO2 decline over three days after discharge.
    SlowSpo2Decline,
}

impl HomeScenario {
    /// Stable name for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stable => "stable",
            Self::Sepsis => "sepsis",
            Self::CopdExacerbation => "copd_exacerbation",
            Self::HeartFailureDecompensation => "heart_failure_decompensation",
            Self::CovidHypoxia => "covid_hypoxia",
            Self::SilentDevice => "silent_device",
            Self::SlowSpo2Decline => "slow_spo2_decline",
        }
    }

    /// A deterioration the team must hear about.
    pub fn deteriorates(self) -> bool {
        self != Self::Stable
    }

    /// A device problem (a technical alert), not the patient.
    pub fn technical(self) -> bool {
        self == Self::SilentDevice
    }
}

/// One device of a kit, what it measures and how often.
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    /// Its id.
    pub id: String,
    /// The vitals it sends together.
    pub vitals: Vec<Vital>,
    /// Local times of its checks, seconds after midnight (spot checks), or
    /// empty for a continuous device.
    pub at: Vec<i64>,
    /// For a continuous device: seconds between readings.
    pub every: Option<i64>,
    /// The update interval the device's app declares (SenML `ut`): the
    /// longest gap in its schedule, or its period.
    pub ut: i64,
}

/// A simulated home patient and their ground truth.
#[derive(Debug, Clone, PartialEq)]
pub struct HomePatient {
    /// Patient id.
    pub id: String,
    /// Pathway.
    pub pathway: &'static str,
    /// The kit.
    pub devices: Vec<Device>,
    /// A nurse phones daily and enters respiratory rate and consciousness.
    pub phone_call: bool,
    /// SpO2 Scale 2 (COPD with an 88-92% target), on air per the care plan.
    pub scale2: bool,
    /// What happens.
    pub scenario: HomeScenario,
    /// Ground truth: when the deterioration began (s), if it does.
    pub onset: Option<i64>,
    /// Ground truth: when a clinician would want to act (s).
    pub actionable: Option<i64>,
    /// Ground truth: by when a page must have reached someone (s).
    pub deadline: Option<i64>,
}

/// One reading as the store would hold it.
#[derive(Debug, Clone, PartialEq)]
pub struct HomeReading {
    /// Index of the patient.
    pub patient: usize,
    /// The device (`manual` for a nurse's entry).
    pub device: String,
    /// The vital.
    pub vital: Vital,
    /// Canonical value (possibly an artefact).
    pub value: f64,
    /// When (s since the epoch).
    pub at: i64,
    /// The device's declared update interval (SenML `ut`), seconds.
    pub ut: Option<i64>,
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct HomePlan {
    /// Seed.
    pub seed: u64,
    /// Patients (a block of twelve has every kit and scenario).
    pub patients: usize,
    /// Days of ward time.
    pub days: i64,
    /// Start (s since the epoch; midnight UTC).
    pub start: i64,
}

impl Default for HomePlan {
    fn default() -> Self {
        Self {
            seed: 1,
            patients: 24,
            days: 14,
            // Monday 2026-01-05 00:00 UTC.
            start: 1_767_571_200,
        }
    }
}

/// The ward's layout by position in a block of twelve: (pathway, kit,
/// scenario).
const LAYOUT: [(&str, Kit, HomeScenario); 12] = [
    ("covid-oximetry", Kit::Oximeter3, HomeScenario::Stable),
    ("covid-oximetry", Kit::Oximeter3, HomeScenario::CovidHypoxia),
    ("copd", Kit::OximeterThermometer, HomeScenario::Stable),
    (
        "copd",
        Kit::OximeterThermometer,
        HomeScenario::CopdExacerbation,
    ),
    ("heart-failure", Kit::ScalesAndCuff, HomeScenario::Stable),
    (
        "heart-failure",
        Kit::ScalesAndCuff,
        HomeScenario::HeartFailureDecompensation,
    ),
    ("general", Kit::Patch, HomeScenario::Stable),
    ("general", Kit::Patch, HomeScenario::Sepsis),
    ("post-discharge", Kit::Spot4, HomeScenario::Stable),
    ("post-discharge", Kit::Spot4, HomeScenario::SlowSpo2Decline),
    ("general", Kit::Oximeter3, HomeScenario::Stable),
    ("covid-oximetry", Kit::Oximeter3, HomeScenario::SilentDevice),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kit {
    /// An oximeter at 08:00, 14:00 and 20:00.
    Oximeter3,
    /// Oximeter and thermometer three times a day; a nurse's call at 11:00.
    OximeterThermometer,
    /// Scales and a BP cuff at 07:00.
    ScalesAndCuff,
    /// A patch every minute and a cuff at 09:00 and 18:00.
    Patch,
    /// Oximeter, cuff and thermometer at 07:00, 12:00, 17:00, 22:00.
    Spot4,
}

fn times(hours: &[i64]) -> Vec<i64> {
    hours.iter().map(|h| h * HOUR).collect()
}

fn kit(kit: Kit, index: usize) -> (Vec<Device>, bool) {
    let dev = |name: &str, vitals: &[Vital], at: Vec<i64>, every: Option<i64>| {
        // The longest gap of a daily schedule, overnight included.
        let ut = every.unwrap_or_else(|| {
            let mut gaps: Vec<i64> = at.windows(2).map(|w| w[1] - w[0]).collect();
            gaps.push(DAY - at.last().copied().unwrap_or(0) + at.first().copied().unwrap_or(0));
            gaps.into_iter().max().unwrap_or(DAY)
        });
        Device {
            id: format!("home-{name}-{index:03}"),
            vitals: vitals.to_vec(),
            at,
            every,
            ut,
        }
    };
    match kit {
        Kit::Oximeter3 => (
            vec![dev(
                "ox",
                &[Vital::Spo2, Vital::HeartRate],
                times(&[8, 14, 20]),
                None,
            )],
            false,
        ),
        Kit::OximeterThermometer => (
            vec![
                dev(
                    "ox",
                    &[Vital::Spo2, Vital::HeartRate],
                    times(&[8, 14, 20]),
                    None,
                ),
                dev("thermo", &[Vital::BodyTemperature], times(&[8, 20]), None),
            ],
            true,
        ),
        Kit::ScalesAndCuff => (
            vec![
                dev("scale", &[Vital::BodyWeight], times(&[7]), None),
                dev(
                    "cuff",
                    &[Vital::SystolicBp, Vital::DiastolicBp, Vital::HeartRate],
                    times(&[7]),
                    None,
                ),
            ],
            false,
        ),
        Kit::Patch => (
            vec![
                dev(
                    "patch",
                    &[
                        Vital::HeartRate,
                        Vital::RespiratoryRate,
                        Vital::Spo2,
                        Vital::BodyTemperature,
                    ],
                    Vec::new(),
                    Some(60),
                ),
                dev(
                    "cuff",
                    &[Vital::SystolicBp, Vital::DiastolicBp],
                    times(&[9, 18]),
                    None,
                ),
            ],
            false,
        ),
        Kit::Spot4 => (
            vec![
                dev(
                    "ox",
                    &[Vital::Spo2, Vital::HeartRate],
                    times(&[7, 12, 17, 22]),
                    None,
                ),
                dev(
                    "cuff",
                    &[Vital::SystolicBp, Vital::DiastolicBp],
                    times(&[7, 12, 17, 22]),
                    None,
                ),
                dev(
                    "thermo",
                    &[Vital::BodyTemperature],
                    times(&[7, 12, 17, 22]),
                    None,
                ),
            ],
            false,
        ),
    }
}

/// A normal draw (Box-Muller).
fn normal(rng: &mut StdRng, sd: f64) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random_range(0.0..1.0);
    sd * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// A patient's usual values.
#[derive(Debug, Clone, Copy)]
struct Usual {
    hr: f64,
    rr: f64,
    spo2: f64,
    sbp: f64,
    dbp: f64,
    temp: f64,
    kg: f64,
    shift: f64,
}

/// The ward: patients, their ground truth and every reading.
#[derive(Debug, Clone)]
pub struct HomeWard {
    /// The plan it was made from.
    pub plan: HomePlan,
    /// The patients.
    pub patients: Vec<HomePatient>,
    /// Every reading, in time order.
    pub readings: Vec<HomeReading>,
}

impl HomeWard {
    /// Generates the ward.
    pub fn new(plan: HomePlan) -> Self {
        let mut patients = Vec::with_capacity(plan.patients);
        let mut readings = Vec::new();
        for i in 0..plan.patients {
            let (pathway, kit_kind, scenario) = LAYOUT[i % LAYOUT.len()];
            let mut rng = StdRng::seed_from_u64(
                plan.seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            let copd = pathway == "copd";
            let usual = Usual {
                hr: rng.random_range(62.0..80.0),
                // COPD: a little fast at baseline (NEWS2 of 1-3 from RR 21-22
                // and a pulse in the 90s is usual for them).
                rr: if copd {
                    rng.random_range(19.5..22.0)
                } else {
                    rng.random_range(13.5..17.5)
                },
                spo2: if copd {
                    rng.random_range(89.0..91.0)
                } else {
                    rng.random_range(96.3..98.3)
                },
                sbp: rng.random_range(115.0..140.0),
                dbp: rng.random_range(65.0..85.0),
                temp: rng.random_range(36.4..37.0),
                kg: rng.random_range(58.0..100.0),
                shift: rng.random_range(-1.5..1.5),
            };
            let (devices, phone_call) = kit(kit_kind, i);
            // Onset on the third day at a random hour; the script decides
            // when it became actionable.
            let onset = scenario.deteriorates().then(|| {
                plan.start + 2 * DAY + rng.random_range(0..20) * HOUR + rng.random_range(0..60) * 60
            });
            let mut p = HomePatient {
                id: format!("home-p{i:03}"),
                pathway,
                devices,
                phone_call,
                scale2: copd,
                scenario,
                onset,
                actionable: None,
                deadline: None,
            };
            let mut own = simulate(&plan, &mut p, i, usual, &mut rng);
            if p.scenario.deteriorates() && !p.scenario.technical() {
                // The deadline: an hour after the second reading the kit
                // actually took once it was actionable. It cannot be seen
                // before the first (a missed check or a flat device delays
                // it), and one reading at the edge cannot tell measurement
                // noise from change, so one confirming reading is allowed:
                // sparse cadences get their next check or two, a patch
                // about an hour.
                p.deadline = p.actionable.and_then(|a| {
                    let mut seen: Vec<i64> = own
                        .iter()
                        .filter(|r| r.at >= a && shows(p.scenario, r.vital))
                        .map(|r| r.at)
                        .collect();
                    seen.dedup();
                    seen.get(1).map(|t| t + HOUR)
                });
            } else if p.scenario.technical() {
                // A device is silent when it has missed two of its declared
                // intervals (one missed spot check is common, and a page for
                // each would teach nurses to ignore technical alerts): the
                // team must hear of it within an hour of that.
                let last = own
                    .iter()
                    .filter(|r| r.device == p.devices[0].id)
                    .map(|r| r.at)
                    .max();
                p.deadline = last.map(|l| l + 2 * p.devices[0].ut + HOUR);
            }
            readings.append(&mut own);
            patients.push(p);
        }
        readings.sort_by(|a, b| {
            (a.at, a.patient, a.device.as_str()).cmp(&(b.at, b.patient, b.device.as_str()))
        });
        Self {
            plan,
            patients,
            readings,
        }
    }

    /// Patient-days of stable patients.
    pub fn stable_patient_days(&self) -> f64 {
        self.patients
            .iter()
            .filter(|p| !p.scenario.deteriorates())
            .count() as f64
            * self.plan.days as f64
    }
}

/// How far into the scripted deterioration a time is, 0 to 1.
fn progress(onset: Option<i64>, at: i64, over: i64) -> f64 {
    onset.map_or(0.0, |o| ((at - o) as f64 / over as f64).clamp(0.0, 1.0))
}

/// The true values at `at` (before measurement noise and artefacts).
struct Truth {
    hr: f64,
    rr: f64,
    spo2: f64,
    sbp: f64,
    dbp: f64,
    temp: f64,
    kg: f64,
}

fn truth(p: &HomePatient, u: &Usual, at: i64, start: i64) -> Truth {
    let hour = ((at - start) as f64 / 3600.0 + u.shift).rem_euclid(24.0);
    let rhythm = ((hour - 10.0) / 24.0 * 2.0 * std::f64::consts::PI).sin();
    let mut t = Truth {
        hr: u.hr + 5.0 * rhythm,
        rr: u.rr,
        spo2: u.spo2,
        sbp: u.sbp,
        dbp: u.dbp,
        temp: u.temp + 0.2 * rhythm,
        kg: u.kg,
    };
    match p.scenario {
        HomeScenario::Sepsis => {
            let f = progress(p.onset, at, 8 * HOUR);
            t.hr += 50.0 * f;
            t.rr += 13.0 * f;
            t.temp += 2.3 * f;
            t.sbp -= 35.0 * f;
            t.spo2 -= 3.0 * f;
        }
        HomeScenario::CopdExacerbation => {
            let f = progress(p.onset, at, 36 * HOUR);
            t.spo2 -= 6.5 * f;
            t.rr += 6.0 * f;
            t.hr += 18.0 * f;
        }
        HomeScenario::HeartFailureDecompensation => {
            if let Some(o) = p.onset {
                let days = ((at - o) as f64 / DAY as f64).max(0.0);
                t.kg += 0.7 * days;
                t.sbp -= 2.0 * days;
            }
        }
        HomeScenario::CovidHypoxia => {
            let f = progress(p.onset, at, 24 * HOUR);
            t.spo2 = t.spo2 * (1.0 - f) + 89.0 * f;
            t.hr += 15.0 * f;
        }
        HomeScenario::SlowSpo2Decline => {
            let f = progress(p.onset, at, 72 * HOUR);
            t.spo2 = t.spo2 * (1.0 - f) + 89.5 * f;
            t.hr += 10.0 * f;
        }
        HomeScenario::Stable | HomeScenario::SilentDevice => {}
    }
    t
}

/// The true NEWS2 (all seven parameters, alert, on air) at `at`: the
/// ground truth for sepsis's actionable time. Written out from the RCP
/// chart here on purpose, not taken from `wardwatch-rules`: the ground
/// truth must not share the code it judges.
fn true_news2(t: &Truth) -> u8 {
    let rr = match t.rr.round() {
        x if x <= 8.0 => 3,
        x if x <= 11.0 => 1,
        x if x <= 20.0 => 0,
        x if x <= 24.0 => 2,
        _ => 3,
    };
    let sp = match t.spo2.round() {
        x if x <= 91.0 => 3,
        x if x <= 93.0 => 2,
        x if x <= 95.0 => 1,
        _ => 0,
    };
    let sbp = match t.sbp.round() {
        x if x <= 90.0 => 3,
        x if x <= 100.0 => 2,
        x if x <= 110.0 => 1,
        x if x <= 219.0 => 0,
        _ => 3,
    };
    let hr = match t.hr.round() {
        x if x <= 40.0 => 3,
        x if x <= 50.0 => 1,
        x if x <= 90.0 => 0,
        x if x <= 110.0 => 1,
        x if x <= 130.0 => 2,
        _ => 3,
    };
    let temp = match (t.temp * 10.0).round() / 10.0 {
        x if x <= 35.0 => 3,
        x if x <= 36.0 => 1,
        x if x <= 38.0 => 0,
        x if x <= 39.0 => 1,
        _ => 2,
    };
    rr + sp + sbp + hr + temp
}

/// Whether the truth at `at` is actionable for the patient's scenario.
fn actionable_now(p: &HomePatient, t: &Truth, at: i64, baseline_kg: f64) -> bool {
    match p.scenario {
        // RCP: 5 or more is the key threshold for an urgent response.
        HomeScenario::Sepsis => true_news2(t) >= 5,
        // Below the COPD target range.
        HomeScenario::CopdExacerbation => t.spo2 < 87.5,
        // NICE NG106: more than about 2 kg (a little over 2.9 days here).
        HomeScenario::HeartFailureDecompensation => t.kg - baseline_kg >= 2.0,
        // COVID Oximetry @home SOP: 93-94% needs urgent clinical review.
        HomeScenario::CovidHypoxia => t.spo2 < 94.5,
        // A single red NEWS2 score (91% or below).
        HomeScenario::SlowSpo2Decline => t.spo2 < 91.5,
        HomeScenario::SilentDevice | HomeScenario::Stable => {
            let _ = at;
            false
        }
    }
}

/// How long after a check's due time it is taken (a person, not a cron).
fn jitter(rng: &mut StdRng) -> i64 {
    rng.random_range(-20..40) * 60
}

fn simulate(
    plan: &HomePlan,
    p: &mut HomePatient,
    index: usize,
    u: Usual,
    rng: &mut StdRng,
) -> Vec<HomeReading> {
    let mut out = Vec::new();
    let end = plan.start + plan.days * DAY;
    let baseline_kg = u.kg;
    // Ground truth, scanned minute by minute from onset.
    if let Some(onset) = p.onset {
        if p.scenario == HomeScenario::SilentDevice {
            // Nobody can know before a reading is due and missed: the next
            // check after the device stopped. The team must hear of it
            // before a second reading is missed, plus an hour (the device
            // declares its schedule's longest gap as its interval).
            let due = next_check(&p.devices[0], onset, plan.start);
            p.actionable = Some(due);
        } else {
            let mut t = onset;
            while t < end {
                if actionable_now(p, &truth(p, &u, t, plan.start), t, baseline_kg) {
                    p.actionable = Some(t);
                    break;
                }
                t += 60;
            }
        }
    }
    // A device left uncharged for a day, once in a while (stable patients too).
    let mut dropped: Vec<(usize, i64)> = Vec::new();
    for d in 0..p.devices.len() {
        for day in 0..plan.days {
            if rng.random_bool(0.01) {
                dropped.push((d, plan.start + day * DAY));
            }
        }
    }
    for (d, dev) in p.devices.iter().enumerate() {
        let mut checks: Vec<i64> = Vec::new();
        if let Some(every) = dev.every {
            let mut t = plan.start;
            while t < end {
                checks.push(t);
                t += every;
            }
        } else {
            for day in 0..plan.days {
                for at in &dev.at {
                    // A missed check now and then.
                    if rng.random_bool(0.08) {
                        continue;
                    }
                    checks.push(plan.start + day * DAY + at + jitter(rng));
                }
            }
        }
        let silent_from = (p.scenario == HomeScenario::SilentDevice && d == 0)
            .then_some(p.onset)
            .flatten();
        for at in checks {
            if at < plan.start || at >= end || silent_from.is_some_and(|s| at >= s) {
                continue;
            }
            if dropped
                .iter()
                .any(|(dd, from)| *dd == d && at >= *from && at < from + DAY)
            {
                continue;
            }
            let t = truth(p, &u, at, plan.start);
            let continuous = dev.every.is_some();
            // Cold fingers: a spot-check oximeter now and then reads a few
            // points low, and the patient rechecks five minutes later.
            let cold = !continuous && dev.vitals.contains(&Vital::Spo2) && rng.random_bool(0.03);
            for v in &dev.vitals {
                let mut value = measure(*v, &t, rng);
                if *v == Vital::Spo2 && cold {
                    value -= rng.random_range(4.0..9.0_f64).round();
                }
                // A probe-off artefact (quarantined as implausible).
                if *v == Vital::Spo2 && rng.random_bool(0.002) {
                    value = 0.0;
                }
                out.push(HomeReading {
                    patient: index,
                    device: dev.id.clone(),
                    vital: *v,
                    value,
                    at,
                    ut: Some(dev.ut),
                });
            }
            if cold {
                let again = at + 5 * 60;
                for v in &dev.vitals {
                    out.push(HomeReading {
                        patient: index,
                        device: dev.id.clone(),
                        vital: *v,
                        value: measure(*v, &truth(p, &u, again, plan.start), rng),
                        at: again,
                        ut: Some(dev.ut),
                    });
                }
            }
        }
    }
    // The nurse's daily call (11:00): respiratory rate and consciousness.
    if p.phone_call {
        for day in 0..plan.days {
            let at = plan.start + day * DAY + 11 * HOUR + jitter(rng);
            if at >= end || rng.random_bool(0.05) {
                continue;
            }
            let t = truth(p, &u, at, plan.start);
            for (vital, value) in [
                (
                    Vital::RespiratoryRate,
                    measure(Vital::RespiratoryRate, &t, rng),
                ),
                (Vital::Consciousness, 0.0),
            ] {
                out.push(HomeReading {
                    patient: index,
                    device: "manual".into(),
                    vital,
                    value,
                    at,
                    ut: None,
                });
            }
        }
    }
    out
}

/// The vitals a scenario shows in (for its deadline).
fn shows(s: HomeScenario, v: Vital) -> bool {
    match s {
        HomeScenario::Sepsis => matches!(
            v,
            Vital::HeartRate | Vital::RespiratoryRate | Vital::BodyTemperature
        ),
        HomeScenario::CopdExacerbation
        | HomeScenario::CovidHypoxia
        | HomeScenario::SlowSpo2Decline => v == Vital::Spo2,
        HomeScenario::HeartFailureDecompensation => v == Vital::BodyWeight,
        HomeScenario::SilentDevice | HomeScenario::Stable => true,
    }
}

/// The first scheduled check of a device at or after `t` (its due time;
/// a continuous device reports within a minute).
fn next_check(d: &Device, t: i64, start: i64) -> i64 {
    if let Some(every) = d.every {
        return t + every;
    }
    let day = (t - start).div_euclid(DAY);
    (day..day + 3)
        .flat_map(|k| d.at.iter().map(move |a| start + k * DAY + a))
        .filter(|c| *c >= t)
        .min()
        .unwrap_or(t)
}

/// A measured value: the truth with the device's noise, at the precision
/// devices report.
fn measure(v: Vital, t: &Truth, rng: &mut StdRng) -> f64 {
    match v {
        Vital::HeartRate => (t.hr + normal(rng, 3.0)).round(),
        Vital::RespiratoryRate => (t.rr + normal(rng, 1.0)).round(),
        Vital::Spo2 => (t.spo2 + normal(rng, 0.8)).round().min(100.0),
        Vital::SystolicBp => (t.sbp + normal(rng, 5.0)).round(),
        Vital::DiastolicBp => (t.dbp + normal(rng, 4.0)).round(),
        Vital::BodyTemperature => ((t.temp + normal(rng, 0.12)) * 10.0).round() / 10.0,
        Vital::BodyWeight => ((t.kg + normal(rng, 0.25)) * 10.0).round() / 10.0,
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_ward_with_its_ground_truth() {
        let a = HomeWard::new(HomePlan::default());
        let b = HomeWard::new(HomePlan::default());
        assert_eq!(a.readings, b.readings);
        assert_eq!(a.patients, b.patients);
        let c = HomeWard::new(HomePlan {
            seed: 2,
            ..HomePlan::default()
        });
        assert_ne!(a.readings, c.readings);
    }

    #[test]
    fn every_scripted_deterioration_has_onset_actionable_and_deadline_in_order() {
        let w = HomeWard::new(HomePlan::default());
        let mut seen = std::collections::BTreeSet::new();
        for p in w.patients.iter().filter(|p| p.scenario.deteriorates()) {
            let (o, a, d) = (p.onset.unwrap(), p.actionable.unwrap(), p.deadline.unwrap());
            assert!(o <= a && a < d, "{} {o} {a} {d}", p.id);
            seen.insert(p.scenario);
        }
        assert_eq!(seen.len(), 6, "every scenario: {seen:?}");
    }

    #[test]
    fn kits_send_what_they_measure_at_their_cadence() {
        let w = HomeWard::new(HomePlan {
            patients: 12,
            days: 2,
            ..HomePlan::default()
        });
        let per = |i: usize| w.readings.iter().filter(|r| r.patient == i).count();
        // COVID: about three checks a day of two vitals (some missed, a
        // few rechecks); a patch: one set a minute.
        assert!((8..=16).contains(&per(0)), "{}", per(0));
        assert!(per(6) > 2 * 1440 * 4);
        // No respiratory rate from a COVID kit; COPD's comes from the nurse.
        assert!(!w
            .readings
            .iter()
            .any(|r| r.patient == 0 && r.vital == Vital::RespiratoryRate));
        assert!(w
            .readings
            .iter()
            .any(|r| r.patient == 2 && r.vital == Vital::RespiratoryRate && r.device == "manual"));
        assert!(w.readings.windows(2).all(|p| p[0].at <= p[1].at));
    }
}
