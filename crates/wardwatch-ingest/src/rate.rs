//! A per-device message rate limit, so one device (faulty or hostile)
//! cannot hold the one in-order pipeline every patient's readings share.
//!
//! A token bucket per device: a burst large enough for a day's backlog of a
//! per-minute device arriving at once after an outage (the broker sends a
//! queue as fast as it can), and a sustained rate above any device's
//! cadence. A message beyond it is not decoded: it is quarantined whole as
//! `rate_limited`, so nothing is silently dropped and an operator can see
//! (and replay) exactly what was held back.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

/// Devices tracked at most; beyond it, full buckets are forgotten first
/// (a forgotten device starts again with a full burst: never stricter).
const MAX_DEVICES: usize = 1_000_000;

/// The limit's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained messages per minute per device; 0 turns the limit off.
    pub per_minute: u32,
    /// Messages a device may send at once beyond the sustained rate.
    pub burst: u32,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: DateTime<Utc>,
}

/// Per-device token buckets.
#[derive(Debug)]
pub struct DeviceRateLimiter {
    limit: RateLimit,
    buckets: HashMap<String, Bucket>,
}

impl DeviceRateLimiter {
    /// A limiter with `limit`.
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: HashMap::new(),
        }
    }

    /// Whether `device` may send one more message at `now`; takes a token
    /// when it may.
    pub fn admit(&mut self, device: &str, now: DateTime<Utc>) -> bool {
        if self.limit.per_minute == 0 {
            return true;
        }
        let burst = f64::from(self.limit.burst.max(1));
        let per_sec = f64::from(self.limit.per_minute) / 60.0;
        if self.buckets.len() >= MAX_DEVICES && !self.buckets.contains_key(device) {
            self.forget_full(now);
        }
        let b = self.buckets.entry(device.to_string()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = (now - b.at).num_microseconds().unwrap_or(i64::MAX).max(0) as f64 / 1e6;
        b.tokens = (b.tokens + elapsed * per_sec).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forgets devices whose bucket has refilled (they would be admitted
    /// in full anyway).
    fn forget_full(&mut self, now: DateTime<Utc>) {
        let burst = f64::from(self.limit.burst.max(1));
        let per_sec = f64::from(self.limit.per_minute) / 60.0;
        self.buckets.retain(|_, b| {
            let elapsed = (now - b.at).num_seconds().max(0) as f64;
            b.tokens + elapsed * per_sec < burst
        });
        if self.buckets.len() >= MAX_DEVICES {
            // Everyone is mid-burst: start afresh rather than grow.
            self.buckets.clear();
        }
    }

    /// Devices tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether none is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let mut l = DeviceRateLimiter::new(RateLimit {
            per_minute: 60,
            burst: 5,
        });
        for _ in 0..5 {
            assert!(l.admit("d", at(0)));
        }
        assert!(!l.admit("d", at(0)), "the sixth at once");
        assert!(l.admit("other", at(0)), "another device is not affected");
        assert!(l.admit("d", at(1)), "one more token a second later");
        assert!(!l.admit("d", at(1)));
        // A quiet spell refills up to the burst, not beyond.
        for _ in 0..5 {
            assert!(l.admit("d", at(3600)));
        }
        assert!(!l.admit("d", at(3600)));
    }

    #[test]
    fn zero_turns_it_off() {
        let mut l = DeviceRateLimiter::new(RateLimit {
            per_minute: 0,
            burst: 0,
        });
        for _ in 0..10_000 {
            assert!(l.admit("d", at(0)));
        }
        assert!(l.is_empty());
    }

    #[test]
    fn a_clock_step_back_takes_nothing_and_gives_nothing() {
        let mut l = DeviceRateLimiter::new(RateLimit {
            per_minute: 60,
            burst: 1,
        });
        assert!(l.admit("d", at(100)));
        assert!(!l.admit("d", at(50)));
        assert!(l.admit("d", at(51)));
    }
}
