//! Alerting: flags become alerts that reach the clinical team responsible
//! for the patient, and escalate when nobody acts.
//!
//! # Layout
//! - [`policy`]: teams and escalation policies from `config/teams/*.toml`,
//!   strictly validated (a `default` team must exist).
//! - [`lifecycle`]: the alert lifecycle as pure decisions (open, worsen,
//!   join, clear, snooze, escalate), with explicit times, and the
//!   idempotency key of each notification.
//! - [`feed`]: the live feed of alert changes (for the API's SSE stream).
//! - [`outbox`]: what the delivery worker does with claimed deliveries:
//!   storm digests, their idempotency key, retry backoff.
//! - [`channel`]: the documented message, HMAC-SHA256 webhook signatures,
//!   and the senders (webhook, MQTT with PUBACK, Notify SMS and e-mail).
//!
//! The store applies each decision in one transaction with its deliveries
//! (the outbox); the engine's delivery worker sends them.

pub mod channel;
pub mod feed;
pub mod lifecycle;
pub mod outbox;
pub mod policy;
