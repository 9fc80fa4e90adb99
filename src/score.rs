//! `wardwatch score news2`: NEWS2 from the command line, for clinicians
//! checking a chart and for scripts (`--json`).

use anyhow::{bail, Result};
use wardwatch_core::Vital;
use wardwatch_rules::news2::{self, Acvpu, Observations, OxygenSource, SpO2Scale};

/// Arguments of `wardwatch score news2`.
#[derive(Debug, Clone, clap::Args)]
pub struct News2Args {
    /// Respiration rate, breaths/min.
    #[arg(long)]
    pub rr: f64,
    /// SpO2, %.
    #[arg(long)]
    pub spo2: f64,
    /// SpO2 scale: 1, or 2 when a clinician has prescribed a target of 88–92%.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub scale: u8,
    /// Air or oxygen (`air` or `o2`); when omitted, air is assumed and the output says so.
    #[arg(long)]
    pub oxygen: Option<String>,
    /// Systolic blood pressure, mmHg.
    #[arg(long)]
    pub sbp: f64,
    /// Pulse, beats/min.
    #[arg(long)]
    pub hr: f64,
    /// Consciousness: A, C, V, P or U; when omitted the score is partial.
    #[arg(long)]
    pub acvpu: Option<String>,
    /// Temperature, °C.
    #[arg(long)]
    pub temp: f64,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Validates the arguments, scores them, and renders the result.
pub fn news2_report(a: &News2Args) -> Result<String> {
    for (name, vital, v) in [
        ("--rr", Vital::RespiratoryRate, a.rr),
        ("--spo2", Vital::Spo2, a.spo2),
        ("--sbp", Vital::SystolicBp, a.sbp),
        ("--hr", Vital::HeartRate, a.hr),
        ("--temp", Vital::BodyTemperature, a.temp),
    ] {
        let Some((lo, hi)) = vital.plausible_range() else {
            continue;
        };
        if !v.is_finite() || v < lo || v > hi {
            bail!("{name} {v} is outside the plausible range {lo}–{hi}");
        }
    }
    let on_oxygen = match a.oxygen.as_deref() {
        None => None,
        Some("air") => Some((false, OxygenSource::Reading)),
        Some("o2" | "oxygen") => Some((true, OxygenSource::Reading)),
        Some(other) => bail!("--oxygen must be air or o2, not {other:?}"),
    };
    let consciousness = match a.acvpu.as_deref() {
        None => None,
        Some(s) => Some(
            Acvpu::from_letter(s)
                .filter(|_| {
                    s.trim().len() == 1 && s.trim().chars().all(|c| c.is_ascii_alphabetic())
                })
                .ok_or_else(|| {
                    anyhow::anyhow!("--acvpu must be one of A, C, V, P, U, not {s:?}")
                })?,
        ),
    };
    let obs = Observations {
        respiration_rate: Some(a.rr),
        spo2: Some(a.spo2),
        on_oxygen,
        systolic_bp: Some(a.sbp),
        pulse: Some(a.hr),
        consciousness,
        temperature: Some(a.temp),
    };
    let scale = if a.scale == 2 {
        SpO2Scale::Two
    } else {
        SpO2Scale::One
    };
    let s = news2::score(&obs, scale)?;
    if a.json {
        let v = serde_json::json!({
            "total": s.total,
            "band": s.band,
            "risk": s.band.risk(),
            "clinical_response": s.band.clinical_response(),
            "monitoring_frequency": s.band.monitoring_frequency(),
            "scale": s.scale,
            "partial": s.partial,
            "oxygen_assumed": s.oxygen_assumed,
            "breakdown": s.breakdown,
        });
        return Ok(serde_json::to_string_pretty(&v)?);
    }
    let mut out = format!("{}\n", s.summary());
    out.push_str(&format!("response:   {}\n", s.band.clinical_response()));
    out.push_str(&format!("monitoring: {}\n", s.band.monitoring_frequency()));
    for p in &s.breakdown {
        let value = p
            .value
            .map_or("not assessed".to_string(), |v| format!("{v}"));
        out.push_str(&format!(
            "  {:<24} {:>12}  {}\n",
            p.parameter.name(),
            value,
            p.score
        ));
    }
    Ok(out)
}
