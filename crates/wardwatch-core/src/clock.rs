//! The engine's one clock ([`engine::now`]). Every decision that depends on
//! time (is a reading in the future, is a device silent, is an escalation,
//! a snooze's end or a lease due) is a pure function that takes `now` as an
//! argument; the runtime loops read this clock once per pass and pass it
//! in, and tests pass explicit instants, so time-dependent behaviour is
//! tested without sleeping and without a clock trait to inject.

/// The engine's time: one clock for every decision it makes (is a reading
/// in the future, is an escalation due, when was an alert acknowledged).
///
/// It is not the host's wall clock read afresh each time: a step in that
/// clock (an hour forward or back, from a bad RTC, a VM resume or a
/// mis-set NTP server) would fire every pending escalation at once, stall
/// them for an hour, or quarantine every reading as `future_time`. Instead
/// the time runs on the monotonic clock from an anchor, and the anchor is
/// set from a reference: on PostgreSQL the database's own clock, sampled
/// every few seconds (so every engine and the database's `now()` agree);
/// with no reference, the host's clock, followed only while it moves
/// smoothly (NTP slewing), never across a step.
pub mod engine {
    use chrono::{DateTime, Utc};
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::OnceLock;
    use std::time::Instant;

    /// How far the host's clock may move against the monotonic one between
    /// two samples and still be followed (NTP slews far less).
    pub const MAX_FOLLOWED_MICROS: i64 = 2_000_000;
    /// Backward corrections smaller than this are held (time never runs
    /// back by a few milliseconds between two readings); larger ones are
    /// taken, so a reference corrected back is followed, not waited out.
    const HOLD_BACK_MICROS: i64 = 1_000_000;
    const UNSET: i64 = i64::MIN;

    static START: OnceLock<Instant> = OnceLock::new();
    /// Wall micros minus monotonic micros since START.
    static OFFSET: AtomicI64 = AtomicI64::new(UNSET);
    static LAST: AtomicI64 = AtomicI64::new(i64::MIN);

    fn mono_micros(at: Instant) -> i64 {
        let start = *START.get_or_init(Instant::now);
        i64::try_from(at.saturating_duration_since(start).as_micros()).unwrap_or(i64::MAX)
    }

    fn offset() -> i64 {
        let o = OFFSET.load(Ordering::Acquire);
        if o != UNSET {
            return o;
        }
        let o = Utc::now().timestamp_micros() - mono_micros(Instant::now());
        match OFFSET.compare_exchange(UNSET, o, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => o,
            Err(set) => set,
        }
    }

    /// The engine's current time.
    pub fn now() -> DateTime<Utc> {
        let o = offset();
        let t = mono_micros(Instant::now()).saturating_add(o);
        let last = LAST.load(Ordering::Relaxed);
        let t = if t < last && last - t < HOLD_BACK_MICROS {
            last
        } else {
            LAST.store(t, Ordering::Relaxed);
            t
        };
        DateTime::from_timestamp_micros(t).unwrap_or_else(Utc::now)
    }

    /// Anchors the engine's time to a reference clock read between `sent`
    /// and `received` (its midpoint is taken as the reading's instant).
    /// Returns how far the host's clock is from the reference, in seconds
    /// (positive: the host is ahead), for the operator.
    pub fn observe_reference(sent: Instant, received: Instant, reference: DateTime<Utc>) -> f64 {
        let mid = mono_micros(sent) + (mono_micros(received) - mono_micros(sent)) / 2;
        let _ = offset();
        OFFSET.store(reference.timestamp_micros() - mid, Ordering::Release);
        let host = Utc::now().timestamp_micros() - mono_micros(Instant::now());
        (host - (reference.timestamp_micros() - mid)) as f64 / 1e6
    }

    /// With no reference: follows the host's clock if it has moved by less
    /// than [`MAX_FOLLOWED_MICROS`] against the engine's; otherwise keeps
    /// the engine's time and returns the step (seconds, positive: the host
    /// jumped ahead) for a warning.
    pub fn follow_host() -> Result<(), f64> {
        let host = Utc::now().timestamp_micros() - mono_micros(Instant::now());
        let ours = offset();
        if (host - ours).abs() <= MAX_FOLLOWED_MICROS {
            OFFSET.store(host, Ordering::Release);
            Ok(())
        } else {
            Err((host - ours) as f64 / 1e6)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn runs_on_from_a_reference_and_ignores_the_host() {
            let t0 = Instant::now();
            let reference = Utc::now() - chrono::Duration::hours(1);
            let host_ahead = observe_reference(t0, t0, reference);
            assert!((host_ahead - 3600.0).abs() < 5.0, "{host_ahead}");
            let n = now();
            assert!(
                (n - reference).num_seconds().abs() < 5,
                "{n} vs {reference}"
            );
            // The host is an hour away: not followed.
            let step = follow_host().unwrap_err();
            assert!((step - 3600.0).abs() < 5.0, "{step}");
            assert!((now() - reference).num_seconds().abs() < 5);
            // A small backward correction is held, time never runs back.
            let before = now();
            let t1 = Instant::now();
            observe_reference(t1, t1, before - chrono::Duration::milliseconds(300));
            assert!(now() >= before);
            // Back on the host's time.
            let t2 = Instant::now();
            observe_reference(t2, t2, Utc::now());
            assert!(follow_host().is_ok());
            assert!((now() - Utc::now()).num_milliseconds().abs() < 1000);
        }
    }
}
