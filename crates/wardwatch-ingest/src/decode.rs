//! The decoding entry point: size limit, format dispatch, validation.
//!
//! [`decode`] turns one MQTT payload into validated [`Reading`]s and
//! [`Rejection`]s. It is a pure function of (format, device, payload, clock
//! reading, policy): nothing is dropped silently, and nothing panics whatever
//! the payload holds.
//!
//! The format modules ([`crate::senml`], [`crate::fhir`]) only resolve the wire
//! structure into [`Item`](crate::item::Item)s (a vital, a raw value, a unit, an absolute time);
//! unit conversion, plausibility and time-window checks happen here, once, for
//! both formats.

use chrono::{DateTime, Duration, Utc};

use crate::item::{Candidate, Failure, Item};
use wardwatch_core::{DeviceId, QuarantineReason, Reading, ReadingSource, Rejection};

/// Which topic a payload arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadFormat {
    /// A SenML JSON pack (RFC 8428) on `.../readings`.
    Senml,
    /// A FHIR R4 Observation or Bundle on `.../observations`.
    Fhir,
}

/// Limits applied to every payload.
#[derive(Debug, Clone)]
pub struct ValidationPolicy {
    /// Payloads larger than this are refused whole (`oversized`). Default 256 KiB.
    pub max_payload_bytes: usize,
    /// How far ahead of `now` a reading may be before it is `future_time`. Default 5 minutes.
    pub max_future_skew: Duration,
    /// Readings older than `now - retention` are `too_old`. Default 2922 days (8 years).
    pub retention: Duration,
    /// Records read from one payload at most; the rest are one
    /// `too_many_records` row. Default 10,000.
    pub max_records: usize,
    /// Refused records of one payload stored one row each at most; the rest
    /// are summarised in one row, so one device cannot flood the quarantine
    /// (or hold the in-order pipeline writing it). Default 100.
    pub max_rejections: usize,
}

impl Default for ValidationPolicy {
    fn default() -> Self {
        Self {
            max_payload_bytes: 256 * 1024,
            max_future_skew: Duration::minutes(5),
            retention: Duration::days(2922),
            max_records: 10_000,
            max_rejections: 100,
        }
    }
}

/// The outcome of decoding one MQTT payload: the good records and the refused ones.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Decoded {
    /// Validated readings, in payload order.
    pub readings: Vec<Reading>,
    /// Refused records (or the refused payload), in payload order.
    pub rejections: Vec<Rejection>,
    /// True when any SenML record's time was resolved relative to `now` (RFC 8428 §4.5.3 values < 2^28);
    /// the caller uses it to keep redeliveries idempotent.
    pub relative_time: bool,
}

/// Longest text stored in `Rejection.record`, in bytes.
pub(crate) const MAX_RECORD_BYTES: usize = 4096;
/// How much of an oversized payload is kept, in bytes.
const OVERSIZED_PREFIX_BYTES: usize = 2048;
/// Longest text stored in `Rejection.detail` or `Reading.source_name`, in bytes.
const MAX_DETAIL_BYTES: usize = 1024;

/// Decodes and validates one payload.
///
/// `now` is both "relative to now" for SenML and the reference for future/too-old checks;
/// `received_at` goes into every Reading.received_at (usually equal to now).
pub fn decode(
    format: PayloadFormat,
    device_id: &DeviceId,
    payload: &[u8],
    now: DateTime<Utc>,
    received_at: DateTime<Utc>,
    policy: &ValidationPolicy,
) -> Decoded {
    let mut out = Decoded::default();

    if payload.len() > policy.max_payload_bytes {
        let prefix = payload.get(..OVERSIZED_PREFIX_BYTES).unwrap_or(payload);
        out.rejections.push(Rejection::payload(
            QuarantineReason::Oversized,
            format!(
                "payload is {} bytes; the limit is {} bytes",
                payload.len(),
                policy.max_payload_bytes
            ),
            stored_record(&String::from_utf8_lossy(prefix)),
        ));
        return out;
    }

    let malformed = |detail: String| {
        Rejection::payload(
            QuarantineReason::Malformed,
            stored_detail(&detail),
            stored_record(&String::from_utf8_lossy(payload)),
        )
    };

    let text = match std::str::from_utf8(payload) {
        Ok(t) => t,
        Err(e) => {
            out.rejections
                .push(malformed(format!("payload is not valid UTF-8: {e}")));
            return out;
        }
    };
    let root: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            out.rejections.push(malformed(format!("not JSON: {e}")));
            return out;
        }
    };

    let (items, source) = match format {
        PayloadFormat::Senml => match crate::senml::resolve(&root, now) {
            Ok(pack) => {
                out.relative_time = pack.relative_time;
                (pack.items, ReadingSource::Senml)
            }
            Err(detail) => {
                out.rejections.push(malformed(detail));
                return out;
            }
        },
        PayloadFormat::Fhir => match crate::fhir::resolve(&root) {
            Ok(items) => (items, ReadingSource::Fhir),
            Err(detail) => {
                out.rejections.push(malformed(detail));
                return out;
            }
        },
    };

    let mut items = items;
    if items.len() > policy.max_records {
        let total = items.len();
        items.truncate(policy.max_records);
        out.rejections.push(Rejection::payload(
            QuarantineReason::TooManyRecords,
            format!(
                "the payload has {total} records; the limit is {}: the {} after it were not read",
                policy.max_records,
                total - policy.max_records
            ),
            stored_record(&String::from_utf8_lossy(
                payload.get(..OVERSIZED_PREFIX_BYTES).unwrap_or(payload),
            )),
        ));
    }
    let mut refused = 0usize;
    // Beyond the cap: the first refused record, kept, and a count by reason.
    let mut first_excess: Option<(QuarantineReason, usize, String)> = None;
    let mut excess: std::collections::BTreeMap<&'static str, usize> = Default::default();
    for item in items {
        let Item {
            index,
            record,
            outcome,
        } = item;
        match outcome.and_then(|c| validate(c, now, policy)) {
            Ok((c, value)) => out.readings.push(Reading {
                device_id: device_id.clone(),
                vital: c.vital,
                time: c.time,
                value,
                received_at,
                source,
                source_name: c.source_name.as_deref().map(stored_detail),
                update_interval_secs: c.update_interval_secs,
            }),
            Err(f) => {
                refused += 1;
                if refused <= policy.max_rejections {
                    out.rejections.push(Rejection::record(
                        f.reason,
                        stored_detail(&f.detail),
                        index,
                        stored_record(&record),
                    ));
                } else {
                    *excess.entry(f.reason.as_str()).or_default() += 1;
                    first_excess.get_or_insert((f.reason, index, record));
                }
            }
        }
    }
    if let Some((reason, index, record)) = first_excess {
        let by_reason: Vec<String> = excess.iter().map(|(r, n)| format!("{r} {n}")).collect();
        out.rejections.push(Rejection::record(
            reason,
            format!(
                "{} more refused records in this payload beyond the first {} (by reason: {}); \
                 the first of them is kept here",
                refused - policy.max_rejections,
                policy.max_rejections,
                by_reason.join(", ")
            ),
            index,
            stored_record(&record),
        ));
    }
    out
}

/// Unit conversion, plausibility, then the time window.
fn validate(
    c: Candidate,
    now: DateTime<Utc>,
    policy: &ValidationPolicy,
) -> Result<(Candidate, f64), Failure> {
    let value = c
        .vital
        .to_canonical(&c.value, c.unit.as_deref())
        .map_err(|e| Failure::new(e.reason(), e.to_string()))?;
    if let Some(limit) = now.checked_add_signed(policy.max_future_skew) {
        if c.time > limit {
            return Err(Failure::new(
                QuarantineReason::FutureTime,
                format!(
                    "time {} is {} s ahead of the receiving clock ({}); at most {} s is allowed",
                    c.time.to_rfc3339(),
                    seconds(c.time.signed_duration_since(now)),
                    now.to_rfc3339(),
                    seconds(policy.max_future_skew),
                ),
            ));
        }
    }
    if let Some(limit) = now.checked_sub_signed(policy.retention) {
        if c.time < limit {
            return Err(Failure::new(
                QuarantineReason::TooOld,
                format!(
                    "time {} is older than the retention window ({} days before {})",
                    c.time.to_rfc3339(),
                    policy.retention.num_days(),
                    now.to_rfc3339(),
                ),
            ));
        }
    }
    Ok((c, value))
}

fn seconds(d: Duration) -> String {
    match d.num_microseconds() {
        Some(us) => format!("{}", us as f64 / 1e6),
        None => format!("{}", d.num_seconds()),
    }
}

/// Replaces NUL characters, which PostgreSQL `text` refuses, with the
/// six-character escape `\u0000`.
pub fn sanitize(s: &str) -> String {
    s.replace('\0', "\\u0000")
}

/// Cuts `s` to at most `max` bytes on a char boundary.
pub fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// A record as stored in `Rejection.record`: sanitised and at most 4096 bytes.
pub fn stored_record(s: &str) -> String {
    truncate(sanitize(s), MAX_RECORD_BYTES)
}

/// A detail or source name as stored: sanitised and bounded.
fn stored_detail(s: &str) -> String {
    truncate(sanitize(s), MAX_DETAIL_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use wardwatch_core::Vital;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
    }

    fn dev() -> DeviceId {
        DeviceId::new("ox-01").unwrap()
    }

    fn run(format: PayloadFormat, payload: &str) -> Decoded {
        decode(
            format,
            &dev(),
            payload.as_bytes(),
            now(),
            now(),
            &ValidationPolicy::default(),
        )
    }

    fn hr_at(t: DateTime<Utc>) -> String {
        format!(
            r#"[{{"n":"heart_rate","u":"/min","v":72,"t":{}}}]"#,
            t.timestamp_micros() as f64 / 1e6
        )
    }

    #[test]
    fn default_policy_matches_the_documented_limits() {
        let p = ValidationPolicy::default();
        assert_eq!(p.max_payload_bytes, 262_144);
        assert_eq!(p.max_future_skew, Duration::minutes(5));
        assert_eq!(p.retention, Duration::days(2922));
    }

    #[test]
    fn non_json_payload_is_one_malformed_payload_rejection_with_the_parser_message() {
        for format in [PayloadFormat::Senml, PayloadFormat::Fhir] {
            let d = run(format, "hello");
            assert!(d.readings.is_empty());
            assert_eq!(d.rejections.len(), 1);
            let r = &d.rejections[0];
            assert_eq!(r.reason, QuarantineReason::Malformed);
            assert_eq!(r.record_index, None);
            assert_eq!(r.detail, "not JSON: expected value at line 1 column 1");
            assert_eq!(r.record, "hello");
        }
    }

    #[test]
    fn invalid_utf8_is_malformed_and_stored_lossily() {
        let d = decode(
            PayloadFormat::Senml,
            &dev(),
            b"[\xff]",
            now(),
            now(),
            &ValidationPolicy::default(),
        );
        assert_eq!(d.rejections.len(), 1);
        assert_eq!(d.rejections[0].reason, QuarantineReason::Malformed);
        assert!(d.rejections[0]
            .detail
            .starts_with("payload is not valid UTF-8"));
        assert_eq!(d.rejections[0].record, "[\u{fffd}]");
    }

    #[test]
    fn senml_payload_that_is_not_an_array_is_malformed() {
        let d = run(PayloadFormat::Senml, r#"{"n":"heart_rate","v":72}"#);
        assert_eq!(d.rejections.len(), 1);
        assert_eq!(d.rejections[0].record_index, None);
        assert_eq!(
            d.rejections[0].detail,
            "SenML pack must be a JSON array of records"
        );
    }

    #[test]
    fn empty_pack_decodes_to_nothing() {
        assert_eq!(run(PayloadFormat::Senml, "[]"), Decoded::default());
    }

    #[test]
    fn a_flood_of_empty_records_makes_a_bounded_number_of_quarantine_rows() {
        // The largest pack of empty records the payload limit admits.
        let n = (256 * 1024 - 2) / 3;
        let pack = format!("[{}{{}}]", "{},".repeat(n - 1));
        assert!(pack.len() <= 256 * 1024);
        let d = decode(
            PayloadFormat::Senml,
            &dev(),
            pack.as_bytes(),
            now(),
            now(),
            &ValidationPolicy::default(),
        );
        assert!(d.readings.is_empty());
        // One row for the unread rest, 100 rows of their own, one summary.
        assert_eq!(d.rejections.len(), 102, "{:?}", &d.rejections[..3]);
        assert!(d.rejections[1..101]
            .iter()
            .all(|r| r.record_index.is_some()));
        let summary = &d.rejections[101];
        assert_eq!(summary.record_index, Some(100));
        assert!(
            summary.detail.starts_with("9900 more refused records")
                && summary.detail.contains("malformed 9900"),
            "{}",
            summary.detail
        );
        let unread = &d.rejections[0];
        assert_eq!(unread.reason, QuarantineReason::TooManyRecords);
        assert!(
            unread.detail.contains(&format!("{n} records"))
                && unread.detail.contains(&format!("{} after it", n - 10_000)),
            "{}",
            unread.detail
        );
    }

    #[test]
    fn records_beyond_the_limit_are_not_read_and_say_so() {
        let policy = ValidationPolicy {
            max_records: 5,
            ..ValidationPolicy::default()
        };
        let records: Vec<String> = (0..8)
            .map(|i| {
                format!(
                    r#"{{"n":"heart_rate","u":"/min","v":{},"t":-{}}}"#,
                    60 + i,
                    10 * i + 1
                )
            })
            .collect();
        let pack = format!("[{}]", records.join(","));
        let d = decode(
            PayloadFormat::Senml,
            &dev(),
            pack.as_bytes(),
            now(),
            now(),
            &policy,
        );
        assert_eq!(d.readings.len(), 5);
        assert_eq!(d.rejections.len(), 1);
        assert_eq!(d.rejections[0].reason, QuarantineReason::TooManyRecords);
        assert!(
            d.rejections[0]
                .detail
                .contains("8 records; the limit is 5: the 3 after it"),
            "{}",
            d.rejections[0].detail
        );
    }

    #[test]
    fn oversized_payload_is_refused_whole_keeping_the_first_2048_bytes() {
        let policy = ValidationPolicy {
            max_payload_bytes: 3000,
            ..ValidationPolicy::default()
        };
        let big = format!("[{}]", "x".repeat(3000));
        let d = decode(
            PayloadFormat::Senml,
            &dev(),
            big.as_bytes(),
            now(),
            now(),
            &policy,
        );
        assert!(d.readings.is_empty());
        assert_eq!(d.rejections.len(), 1);
        let r = &d.rejections[0];
        assert_eq!(r.reason, QuarantineReason::Oversized);
        assert_eq!(r.record_index, None);
        assert_eq!(r.record.len(), 2048);
        assert!(r.detail.contains("3002 bytes"), "{}", r.detail);

        // Exactly at the limit is decoded normally.
        let ok = r#"[{"n":"heart_rate","u":"/min","v":72}]"#;
        let policy = ValidationPolicy {
            max_payload_bytes: ok.len(),
            ..ValidationPolicy::default()
        };
        let d = decode(
            PayloadFormat::Senml,
            &dev(),
            ok.as_bytes(),
            now(),
            now(),
            &policy,
        );
        assert_eq!(d.readings.len(), 1);
        assert!(d.rejections.is_empty());
    }

    #[test]
    fn nul_characters_are_sanitised_in_records_details_and_source_names() {
        // A raw NUL byte: not JSON, stored payload must not contain it.
        let d = run(PayloadFormat::Senml, "[\0]");
        assert_eq!(d.rejections.len(), 1);
        assert!(!d.rejections[0].record.contains('\0'));
        assert_eq!(d.rejections[0].record, "[\\u0000]");
        assert!(!d.rejections[0].detail.contains('\0'));

        // Escaped NULs inside strings decode to real NULs: sanitise source names and details.
        let d = run(
            PayloadFormat::Senml,
            r#"[{"bn":"dev\u0000/","n":"heart_rate","u":"/min","v":72},
                {"n":"pulse\u0000","u":"/min","v":72},
                {"n":"body_temperature","u":"de\u0000gC","v":37}]"#,
        );
        assert_eq!(d.readings.len(), 1);
        assert_eq!(
            d.readings[0].source_name.as_deref(),
            Some("dev\\u0000/heart_rate")
        );
        assert_eq!(d.rejections.len(), 2);
        for r in &d.rejections {
            assert!(!r.record.contains('\0'), "{r:?}");
            assert!(!r.detail.contains('\0'), "{r:?}");
        }
        assert_eq!(sanitize("a\0b\0"), "a\\u0000b\\u0000");
    }

    #[test]
    fn stored_records_are_truncated_to_4096_bytes_on_a_char_boundary() {
        let s = format!("a{}", "é".repeat(3000));
        let t = stored_record(&s);
        assert!(t.len() <= MAX_RECORD_BYTES);
        assert_eq!(t.len(), 4095);
        assert!(s.starts_with(&t));

        // A huge bad record inside a pack.
        let pack = format!(
            r#"[{{"n":"heart_rate","v":72,"x":"{}"}}]"#,
            "y".repeat(10_000)
        );
        let d = run(PayloadFormat::Senml, &pack);
        assert_eq!(d.rejections.len(), 1);
        assert_eq!(d.rejections[0].record.len(), MAX_RECORD_BYTES);
    }

    #[test]
    fn future_time_edge_is_inclusive_of_the_allowed_skew() {
        let edge = now() + Duration::minutes(5);
        let d = run(PayloadFormat::Senml, &hr_at(edge));
        assert_eq!(d.readings.len(), 1, "{d:?}");
        assert_eq!(d.readings[0].time, edge);

        let d = run(
            PayloadFormat::Senml,
            &hr_at(edge + Duration::microseconds(1)),
        );
        assert!(d.readings.is_empty());
        assert_eq!(d.rejections[0].reason, QuarantineReason::FutureTime);
        assert_eq!(d.rejections[0].record_index, Some(0));
    }

    #[test]
    fn too_old_edge_is_inclusive_of_the_retention_window() {
        let edge = now() - Duration::days(2922);
        let d = run(PayloadFormat::Senml, &hr_at(edge));
        assert_eq!(d.readings.len(), 1, "{d:?}");

        let d = run(
            PayloadFormat::Senml,
            &hr_at(edge - Duration::microseconds(1)),
        );
        assert!(d.readings.is_empty());
        assert_eq!(d.rejections[0].reason, QuarantineReason::TooOld);
    }

    #[test]
    fn readings_carry_device_received_at_and_source() {
        let received = now() + Duration::seconds(3);
        let d = decode(
            PayloadFormat::Senml,
            &dev(),
            br#"[{"n":"spo2","u":"%","v":97}]"#,
            now(),
            received,
            &ValidationPolicy::default(),
        );
        assert_eq!(
            d.readings,
            vec![Reading {
                device_id: dev(),
                vital: Vital::Spo2,
                time: now(),
                value: 97.0,
                received_at: received,
                source: ReadingSource::Senml,
                source_name: None,
                update_interval_secs: None,
            }]
        );
        assert!(d.relative_time);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let samples: [&[u8]; 8] = [
            b"",
            b"null",
            b"[null, 1, \"x\", [], {}]",
            b"{\"resourceType\":null}",
            b"{\"resourceType\":\"Bundle\",\"entry\":[null,{},{\"resource\":[]}]}",
            b"[{\"t\":1e308,\"bt\":1e308,\"n\":\"heart_rate\",\"v\":1}]",
            b"[{\"t\":-1e308,\"n\":\"heart_rate\",\"u\":\"/min\",\"v\":1e308,\"bv\":1e308}]",
            b"\xef\xbb\xbf[]",
        ];
        for s in samples {
            for f in [PayloadFormat::Senml, PayloadFormat::Fhir] {
                let _ = decode(f, &dev(), s, now(), now(), &ValidationPolicy::default());
            }
        }
    }
}
