//! What a batch write carries and returns, and the pure attribution of
//! readings to patients.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use wardwatch_core::{DeliveryTag, QuarantineReason, Reading, Rejection, Vital};

pub use wardwatch_core::reading::MessageKey;

/// Committed readings as they are stored, one message per batch: ingest
/// sends after commit, the live stream's `reading` events follow it
/// (filtered by the caller's teams). Bounded: a lagging viewer is told to
/// reload, ingest never waits for it.
pub type ReadingFeed = tokio::sync::broadcast::Sender<std::sync::Arc<Vec<NewReading>>>;

/// One decoded MQTT message, ready to be committed.
#[derive(Debug, Clone)]
pub struct IngestMessage {
    /// Which delivery to acknowledge once committed.
    pub tag: DeliveryTag,
    /// The topic it came on.
    pub topic: String,
    /// The topic's device segment as received (may be invalid, hence text).
    pub device_id: Option<String>,
    /// Content key for idempotent quarantine rows and anchors.
    pub key: MessageKey,
    /// When it was (first) received.
    pub received_at: DateTime<Utc>,
    /// Validated readings, not yet attributed to a patient.
    pub readings: Vec<Reading>,
    /// Records refused while decoding.
    pub rejections: Vec<Rejection>,
    /// Set when SenML times were relative to receipt: the anchor to keep so a
    /// redelivery resolves to the same times.
    pub relative_anchor: Option<DateTime<Utc>>,
    /// The broker marked it as a redelivery (MQTT DUP): its refusals were
    /// already counted when it first arrived, if that delivery was committed.
    pub redelivered: bool,
}

/// A reading newly committed and attributed to a patient: what the rules see.
/// Duplicates (redeliveries) are never among them, so the rules never count
/// one measurement twice.
#[derive(Debug, Clone, PartialEq)]
pub struct NewReading {
    /// The patient it was attributed to.
    pub patient_id: String,
    /// What was measured.
    pub vital: Vital,
    /// Canonical value.
    pub value: f64,
    /// Measurement time.
    pub time: DateTime<Utc>,
    /// The device's declared update interval (SenML `ut`), seconds.
    pub update_interval_secs: Option<u32>,
    /// When wardwatch received it (for the stage latencies).
    pub received_at: DateTime<Utc>,
    /// The device that sent it (`manual` for typed-in observations): each
    /// device's silence is watched on its own.
    pub device_id: String,
}

/// What the rules are handed after a commit.
#[derive(Debug, Clone)]
pub enum RulesInput {
    /// A committed batch's new readings, in batch order.
    Readings(Vec<NewReading>),
    /// A manual set (its readings were handed over as `Readings` first), to
    /// be scored as a NEWS2 set as of its time from `context`: the set's own
    /// values and the patient's stored readings around that time.
    ManualSet {
        /// Whose.
        patient_id: String,
        /// (vital, value, time) the set is scored from.
        context: Vec<(Vital, f64, DateTime<Utc>)>,
        /// When the observations were taken.
        taken_at: DateTime<Utc>,
    },
}

/// What a committed batch did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchOutcome {
    /// New rows in `readings`.
    pub readings_inserted: u64,
    /// Readings already present (redeliveries, resent packs).
    pub readings_duplicate: u64,
    /// New quarantine rows, by reason.
    pub quarantined: BTreeMap<QuarantineReason, u64>,
    /// The newly inserted readings, in batch order.
    pub new_readings: Vec<NewReading>,
}

/// One interval during which a device was lent to a patient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The patient.
    pub patient_id: String,
    /// Start (inclusive).
    pub valid_from: DateTime<Utc>,
    /// End (exclusive); `None` while still assigned.
    pub valid_to: Option<DateTime<Utc>>,
}

/// Device catalogue entries relevant to one batch: device id → its assignments.
/// A device absent from the map is unknown.
pub type AssignmentIndex = HashMap<String, Vec<Assignment>>;

/// To whom a reading belongs, or why it belongs to nobody.
pub fn attribute<'a>(
    index: &'a AssignmentIndex,
    device: &str,
    time: DateTime<Utc>,
) -> Result<&'a str, QuarantineReason> {
    let assignments = index.get(device).ok_or(QuarantineReason::UnknownDevice)?;
    assignments
        .iter()
        .find(|a| a.valid_from <= time && a.valid_to.is_none_or(|end| time < end))
        .map(|a| a.patient_id.as_str())
        .ok_or(QuarantineReason::UnassignedDevice)
}

/// A quarantine row as stored.
#[derive(Debug, Clone)]
pub struct QuarantineRow {
    /// Receipt time.
    pub received_at: DateTime<Utc>,
    /// Topic.
    pub topic: String,
    /// Device segment of the topic.
    pub device_id: Option<String>,
    /// Reason.
    pub reason: QuarantineReason,
    /// Human detail.
    pub detail: String,
    /// Offending record.
    pub record: String,
    /// Content key.
    pub key: MessageKey,
    /// 0: refused while decoding; 1: refused at attribution.
    pub part: i16,
    /// Position within the part.
    pub item: i32,
    /// How many times this row occurs in the batch (the same message twice).
    pub repeats: i32,
    /// How many of those occurrences were first deliveries (not MQTT redeliveries).
    pub fresh: i32,
}

/// A reading attributed to a patient, as stored.
#[derive(Debug, Clone)]
pub struct ReadingRow<'a> {
    /// The patient.
    pub patient_id: &'a str,
    /// The reading.
    pub reading: &'a Reading,
}

/// Splits a batch into rows to insert: attributed readings and every
/// quarantine row (decode rejections plus unattributable readings).
pub fn plan<'a>(
    messages: &'a [IngestMessage],
    index: &'a AssignmentIndex,
) -> (Vec<ReadingRow<'a>>, Vec<QuarantineRow>) {
    let mut readings = Vec::with_capacity(messages.iter().map(|m| m.readings.len()).sum());
    let mut quarantine = Vec::new();
    for m in messages {
        for (j, r) in m.rejections.iter().enumerate() {
            quarantine.push(QuarantineRow {
                received_at: m.received_at,
                topic: m.topic.clone(),
                device_id: m.device_id.clone(),
                reason: r.reason,
                detail: r.detail.clone(),
                record: r.record.clone(),
                key: m.key,
                part: 0,
                // The rejection's position, not its record index: one record
                // can yield several rejections (a BP panel's two components).
                item: i32::try_from(j).unwrap_or(i32::MAX),
                repeats: 1,
                fresh: i32::from(!m.redelivered),
            });
        }
        for (i, reading) in m.readings.iter().enumerate() {
            match attribute(index, reading.device_id.as_str(), reading.time) {
                Ok(patient_id) => readings.push(ReadingRow {
                    patient_id,
                    reading,
                }),
                Err(reason) => quarantine.push(QuarantineRow {
                    received_at: m.received_at,
                    topic: m.topic.clone(),
                    device_id: m.device_id.clone(),
                    reason,
                    detail: match reason {
                        QuarantineReason::UnknownDevice => format!(
                            "device {} is not in the device catalogue",
                            reading.device_id
                        ),
                        _ => format!(
                            "device {} was not assigned to a patient at {}",
                            reading.device_id,
                            reading.time.to_rfc3339()
                        ),
                    },
                    record: reading_json(reading),
                    key: m.key,
                    part: 1,
                    item: i32::try_from(i).unwrap_or(i32::MAX),
                    repeats: 1,
                    fresh: i32::from(!m.redelivered),
                }),
            }
        }
    }
    (readings, dedupe(quarantine))
}

/// One row per (key, part, item): PostgreSQL refuses an `ON CONFLICT DO
/// UPDATE` that would touch the same row twice in one statement, which the
/// same message twice in a batch would otherwise cause.
fn dedupe(rows: Vec<QuarantineRow>) -> Vec<QuarantineRow> {
    let mut index: HashMap<(MessageKey, i16, i32), usize> = HashMap::with_capacity(rows.len());
    let mut out: Vec<QuarantineRow> = Vec::with_capacity(rows.len());
    for row in rows {
        match index.get(&(row.key, row.part, row.item)) {
            Some(&i) => {
                if let Some(first) = out.get_mut(i) {
                    first.repeats += row.repeats;
                    first.fresh += row.fresh;
                }
            }
            None => {
                index.insert((row.key, row.part, row.item), out.len());
                out.push(row);
            }
        }
    }
    out
}

/// How devices named themselves in these rows: (device, name) → the latest
/// receipt, one entry per pair (a batch repeats the same name many times).
pub fn device_names<'a>(rows: &[ReadingRow<'a>]) -> BTreeMap<(&'a str, &'a str), DateTime<Utc>> {
    let mut seen: BTreeMap<(&str, &str), DateTime<Utc>> = BTreeMap::new();
    for r in rows {
        if let Some(name) = r.reading.source_name.as_deref() {
            let e = seen
                .entry((r.reading.device_id.as_str(), name))
                .or_insert(r.reading.received_at);
            *e = (*e).max(r.reading.received_at);
        }
    }
    seen
}

/// A reading as JSON text, for the quarantine's `record` column.
fn reading_json(r: &Reading) -> String {
    serde_json::json!({
        "vital": r.vital.as_str(),
        "time": r.time.to_rfc3339(),
        "value": r.value,
        "source": r.source.as_str(),
        "source_name": r.source_name,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use wardwatch_core::{DeviceId, ReadingSource, Vital};

    use super::*;

    fn t(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, h, 0, 0).unwrap()
    }

    fn index() -> AssignmentIndex {
        let mut idx = AssignmentIndex::new();
        idx.insert(
            "ox-1".into(),
            vec![
                Assignment {
                    patient_id: "alice".into(),
                    valid_from: t(1),
                    valid_to: Some(t(5)),
                },
                Assignment {
                    patient_id: "bob".into(),
                    valid_from: t(5),
                    valid_to: None,
                },
            ],
        );
        idx.insert("ox-2".into(), vec![]);
        idx
    }

    #[test]
    fn readings_belong_to_whoever_had_the_device_at_that_time() {
        let idx = index();
        assert_eq!(attribute(&idx, "ox-1", t(1)), Ok("alice"));
        assert_eq!(attribute(&idx, "ox-1", t(4)), Ok("alice"));
        // The hand-over instant belongs to the new patient: intervals are half-open.
        assert_eq!(attribute(&idx, "ox-1", t(5)), Ok("bob"));
        assert_eq!(attribute(&idx, "ox-1", t(23)), Ok("bob"));
        assert_eq!(
            attribute(&idx, "ox-1", t(0)),
            Err(QuarantineReason::UnassignedDevice)
        );
        assert_eq!(
            attribute(&idx, "ox-2", t(3)),
            Err(QuarantineReason::UnassignedDevice)
        );
        assert_eq!(
            attribute(&idx, "nope", t(3)),
            Err(QuarantineReason::UnknownDevice)
        );
    }

    #[test]
    fn one_message_twice_in_a_batch_gives_one_row_per_rejection() {
        let idx = index();
        let msg = IngestMessage {
            tag: DeliveryTag { epoch: 1, seq: 0 },
            topic: "t".into(),
            device_id: Some("ox-1".into()),
            key: [7; 16],
            received_at: t(6),
            readings: Vec::new(),
            // Two rejections of the same record (a BP panel's components).
            rejections: vec![
                Rejection::record(QuarantineReason::FutureTime, "a", 0, "{}"),
                Rejection::record(QuarantineReason::FutureTime, "b", 0, "{}"),
            ],
            relative_anchor: None,
            redelivered: false,
        };
        let msgs = [msg.clone(), msg];
        let (_, q) = plan(&msgs, &idx);
        let keys: Vec<_> = q.iter().map(|r| (r.part, r.item, r.repeats)).collect();
        assert_eq!(keys, vec![(0, 0, 2), (0, 1, 2)]);
    }

    #[test]
    fn plan_quarantines_unattributable_readings_with_their_record() {
        let idx = index();
        let reading = |dev: &str, h| Reading {
            device_id: DeviceId::new(dev).unwrap(),
            vital: Vital::HeartRate,
            time: t(h),
            value: 72.0,
            received_at: t(h),
            source: ReadingSource::Senml,
            source_name: Some("we\"ird".into()),
            update_interval_secs: None,
        };
        let msg = IngestMessage {
            tag: DeliveryTag { epoch: 1, seq: 0 },
            topic: "wardwatch/v1/devices/ox-1/readings".into(),
            device_id: Some("ox-1".into()),
            key: [0; 16],
            received_at: t(6),
            readings: vec![reading("ox-1", 6), reading("ox-1", 0), reading("zz", 6)],
            rejections: vec![Rejection::record(QuarantineReason::BadUnit, "x", 3, "{}")],
            relative_anchor: None,
            redelivered: false,
        };
        let msgs = [msg];
        let (rows, q) = plan(&msgs, &idx);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].patient_id, "bob");
        let reasons: Vec<_> = q.iter().map(|r| (r.reason, r.part, r.item)).collect();
        assert_eq!(
            reasons,
            vec![
                (QuarantineReason::BadUnit, 0, 0),
                (QuarantineReason::UnassignedDevice, 1, 1),
                (QuarantineReason::UnknownDevice, 1, 2),
            ]
        );
        let v: serde_json::Value = serde_json::from_str(&q[1].record).unwrap();
        assert_eq!(v["source_name"], "we\"ird");
        assert_eq!(v["vital"], "heart_rate");
    }
}
