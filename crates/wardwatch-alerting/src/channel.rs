//! Notification channels: the documented message, its signature, and the
//! senders (webhook, MQTT, GOV.UK Notify-compatible SMS and e-mail).
//!
//! A sender reports success only when the receiver confirmed: a 2xx answer,
//! or the broker's PUBACK. Anything else is an error the delivery worker
//! retries with backoff under the same idempotency key.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use serde::Serialize;
use sha2::Sha256;
use thiserror::Error;
use tokio::sync::{oneshot, Mutex};
use tracing::{info, warn};

use crate::policy::Target;
use wardwatch_core::flag::{AlertState, Severity};

/// The JSON body every channel carries (the webhook body, the MQTT payload).
/// Documented in the README with an example.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertMessage {
    /// The alert.
    pub alert_id: i64,
    /// The patient.
    pub patient_id: String,
    /// The responsible team.
    pub team_id: String,
    /// `clinical` or `technical`.
    pub kind: String,
    /// `low`, `medium`, `high` or `emergency`.
    pub severity: Severity,
    /// `open`, `acknowledged` or `resolved`.
    pub state: AlertState,
    /// `page`, `update` or `undeliverable`.
    pub purpose: String,
    /// The escalation tier (0 = first).
    pub tier: i32,
    /// The tier's name.
    pub tier_name: String,
    /// The rules behind the alert (`news2`, `threshold:spo2:0`, ...).
    pub rules: Vec<String>,
    /// What happened, in words.
    pub summary: String,
    /// When the alert opened.
    pub opened_at: DateTime<Utc>,
    /// Same step, same key: drop a repeat.
    pub idempotency_key: String,
}

/// Several alerts' updates for one team in one message: what a storm
/// turns its updates into. First pages are never digested.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Digest {
    /// Always `digest`.
    pub purpose: &'static str,
    /// The team.
    pub team_id: String,
    /// The alerts, each as its own message would have been.
    pub alerts: Vec<AlertMessage>,
    /// Same digest, same key.
    pub idempotency_key: String,
}

/// Why a delivery failed.
#[derive(Debug, Error)]
pub enum DeliveryError {
    /// The receiver answered, but not with success.
    #[error("HTTP {status}: {body}")]
    Status {
        /// The status code.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// No answer (connection refused, timeout, TLS).
    #[error("{0}")]
    Transport(String),
    /// The channel is not configured (a missing secret or API key).
    #[error("not configured: {0}")]
    NotConfigured(String),
}

/// `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`: the timestamp is
/// signed with the body so a captured request cannot be replayed later.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        hex::encode(hmac_sha256(secret, timestamp, body))
    )
}

fn hmac_sha256(secret: &[u8], timestamp: i64, body: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so this never fails; an empty MAC
    // would simply not verify.
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret) else {
        return Vec::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// Checks a signature header as a receiver should: the MAC in constant
/// time, and the timestamp within `tolerance_secs` of `now`.
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: i64, tolerance_secs: i64) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = x.parse::<i64>().ok(),
            Some(("v1", x)) => v1 = hex::decode(x).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    if (now - t).abs() > tolerance_secs {
        return false;
    }
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret) else {
        return false;
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&v1).is_ok()
}

/// A GOV.UK Notify-compatible API.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// e.g. `https://api.notifications.service.gov.uk`.
    pub base_url: String,
    /// `{key name}-{service id}-{secret}` (never logged).
    pub api_key: String,
    /// Template for text messages (personalisation: `summary`).
    pub sms_template_id: String,
    /// Template for e-mails (personalisation: `subject`, `summary`).
    pub email_template_id: String,
}

impl NotifyConfig {
    /// The service id and secret inside the API key (the last two UUIDs).
    fn parts(&self) -> Option<(&str, &str)> {
        let k = self.api_key.trim();
        // Byte slicing below: only for an ASCII key of the documented shape.
        if k.len() < 73 || !k.is_ascii() {
            return None;
        }
        let secret = &k[k.len() - 36..];
        let service = &k[k.len() - 73..k.len() - 37];
        Some((service, secret))
    }

    /// A Notify bearer token: a JWT (HS256) with `iss` = service id and `iat` = now.
    pub fn bearer(&self, now: i64) -> Option<String> {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        let (service, secret) = self.parts()?;
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"HS256"}"#);
        let claims = URL_SAFE_NO_PAD.encode(format!(r#"{{"iss":"{service}","iat":{now}}}"#));
        let signing_input = format!("{header}.{claims}");
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).ok()?;
        mac.update(signing_input.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        Some(format!("{signing_input}.{sig}"))
    }
}

/// Outstanding MQTT publishes, by the broker's packet id once known.
#[derive(Default)]
struct MqttAcks {
    /// Publishes handed to the client, in order, awaiting their packet id.
    queued: VecDeque<oneshot::Sender<bool>>,
    /// Publishes written, awaiting PUBACK.
    inflight: HashMap<u16, oneshot::Sender<bool>>,
}

/// An MQTT publisher for team alert topics that reports a publish as done
/// only when the broker acknowledged it.
#[derive(Clone)]
pub struct MqttPublisher {
    client: AsyncClient,
    acks: Arc<Mutex<MqttAcks>>,
    /// Serialises publish + enqueue so packet ids match the queue order.
    order: Arc<Mutex<()>>,
}

impl MqttPublisher {
    /// Connects (in the background, reconnecting) with `client_id`; over
    /// TLS when `tls` is given (`mqtts://`).
    pub fn start(
        host: &str,
        port: u16,
        credentials: Option<(String, String)>,
        tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
        client_id: &str,
    ) -> Self {
        let mut opts = MqttOptions::new(client_id, host, port);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_clean_session(true);
        if let Some((u, p)) = credentials {
            opts.set_credentials(u, p);
        }
        if let Some(tls) = tls {
            opts.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(tls),
            ));
        }
        let (client, mut eventloop) = AsyncClient::new(opts, 256);
        let acks: Arc<Mutex<MqttAcks>> = Arc::default();
        let a = acks.clone();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                        let mut g = a.lock().await;
                        if let Some(tx) = g.queued.pop_front() {
                            g.inflight.insert(pkid, tx);
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        if let Some(tx) = a.lock().await.inflight.remove(&ack.pkid) {
                            let _ = tx.send(true);
                        }
                    }
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        info!(message = "Alert publisher connected to the MQTT broker.");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        // Fail everything outstanding: the delivery worker
                        // retries under the same idempotency key.
                        let mut g = a.lock().await;
                        for tx in g.queued.drain(..) {
                            let _ = tx.send(false);
                        }
                        for (_, tx) in g.inflight.drain() {
                            let _ = tx.send(false);
                        }
                        drop(g);
                        warn!(message = "Alert publisher lost the MQTT broker; reconnecting.", error = %e);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Self {
            client,
            acks,
            order: Arc::default(),
        }
    }

    /// Publishes with QoS 1 and waits for the PUBACK, all within `timeout`.
    /// Never blocks on a full client queue (the broker may be down): that is
    /// an error like any other, retried later under the same key.
    pub async fn publish(
        &self,
        topic: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<(), DeliveryError> {
        let (tx, rx) = oneshot::channel();
        let queued = tokio::time::timeout(timeout, async {
            let _order = self.order.lock().await;
            self.acks.lock().await.queued.push_back(tx);
            if let Err(e) = self
                .client
                .try_publish(topic, QoS::AtLeastOnce, false, payload)
            {
                self.acks.lock().await.queued.pop_back();
                return Err(DeliveryError::Transport(format!(
                    "MQTT client cannot take the publish (broker unreachable?): {e}"
                )));
            }
            Ok(())
        })
        .await;
        match queued {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(DeliveryError::Transport("MQTT publish timed out".into())),
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(true)) => Ok(()),
            Ok(_) => Err(DeliveryError::Transport(
                "MQTT connection lost before PUBACK".into(),
            )),
            Err(_) => Err(DeliveryError::Transport("no PUBACK in time".into())),
        }
    }
}

/// Reads a webhook secret by its environment variable name (injected so
/// tests need not touch the process environment).
pub type Secrets = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Everything needed to send on every channel.
#[derive(Clone)]
pub struct Channels {
    http: reqwest::Client,
    mqtt: Option<MqttPublisher>,
    notify: Option<NotifyConfig>,
    secrets: Secrets,
    timeout: Duration,
}

impl Channels {
    /// Channels with a request timeout.
    pub fn new(
        mqtt: Option<MqttPublisher>,
        notify: Option<NotifyConfig>,
        secrets: Secrets,
        timeout: Duration,
    ) -> Result<Self, DeliveryError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| DeliveryError::Transport(e.to_string()))?;
        Ok(Self {
            http,
            mqtt,
            notify,
            secrets,
            timeout,
        })
    }

    /// Sends one message to one target.
    pub async fn send(&self, target: &Target, msg: &AlertMessage) -> Result<(), DeliveryError> {
        let body = serde_json::to_vec(msg).map_err(|e| DeliveryError::Transport(e.to_string()))?;
        let subject = format!(
            "wardwatch {} alert: patient {}",
            msg.severity, msg.patient_id
        );
        self.deliver(
            target,
            body,
            &msg.idempotency_key,
            &msg.team_id,
            &text_of(msg),
            &subject,
        )
        .await
    }

    /// Sends one digest (a storm's updates for a team) to one target.
    pub async fn send_digest(&self, target: &Target, digest: &Digest) -> Result<(), DeliveryError> {
        let body =
            serde_json::to_vec(digest).map_err(|e| DeliveryError::Transport(e.to_string()))?;
        let text = format!(
            "{} alerts updated for team {}: {}",
            digest.alerts.len(),
            digest.team_id,
            digest
                .alerts
                .iter()
                .map(|a| format!("{} ({}, alert {})", a.patient_id, a.severity, a.alert_id))
                .collect::<Vec<_>>()
                .join("; ")
        );
        let subject = format!("wardwatch digest: {} alerts updated", digest.alerts.len());
        self.deliver(
            target,
            body,
            &digest.idempotency_key,
            &digest.team_id,
            &text,
            &subject,
        )
        .await
    }

    async fn deliver(
        &self,
        target: &Target,
        body: Vec<u8>,
        key: &str,
        team: &str,
        text: &str,
        subject: &str,
    ) -> Result<(), DeliveryError> {
        match target {
            Target::Webhook { url, secret_env } => {
                let secret = (self.secrets)(secret_env).ok_or_else(|| {
                    DeliveryError::NotConfigured(format!("secret {secret_env} is not set"))
                })?;
                let ts = wardwatch_core::clock::engine::now().timestamp();
                let res = self
                    .http
                    .post(url)
                    .header("content-type", "application/json")
                    .header(
                        "x-wardwatch-signature",
                        signature(secret.as_bytes(), ts, &body),
                    )
                    .header("x-wardwatch-idempotency-key", key)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| DeliveryError::Transport(e.to_string()))?;
                check(res).await
            }
            Target::Mqtt => {
                let mqtt = self
                    .mqtt
                    .as_ref()
                    .ok_or_else(|| DeliveryError::NotConfigured("no MQTT publisher".into()))?;
                mqtt.publish(&target.address(team), body, self.timeout)
                    .await
            }
            Target::Sms { phone } => {
                let n = self.notify()?;
                let payload = serde_json::json!({
                    "phone_number": phone,
                    "template_id": n.sms_template_id,
                    "reference": key,
                    "personalisation": {"summary": text},
                });
                self.notify_post(n, "sms", payload).await
            }
            Target::Email { address } => {
                let n = self.notify()?;
                let payload = serde_json::json!({
                    "email_address": address,
                    "template_id": n.email_template_id,
                    "reference": key,
                    "personalisation": {"subject": subject, "summary": text},
                });
                self.notify_post(n, "email", payload).await
            }
        }
    }

    fn notify(&self) -> Result<&NotifyConfig, DeliveryError> {
        self.notify
            .as_ref()
            .ok_or_else(|| DeliveryError::NotConfigured("no Notify API configured".into()))
    }

    async fn notify_post(
        &self,
        n: &NotifyConfig,
        kind: &str,
        payload: serde_json::Value,
    ) -> Result<(), DeliveryError> {
        let token = n
            .bearer(wardwatch_core::clock::engine::now().timestamp())
            .ok_or_else(|| {
                DeliveryError::NotConfigured("the Notify API key is malformed".into())
            })?;
        let url = format!(
            "{}/v2/notifications/{kind}",
            n.base_url.trim_end_matches('/')
        );
        let res = self
            .http
            .post(url)
            .bearer_auth(token)
            .json(&payload)
            .send()
            .await
            .map_err(|e| DeliveryError::Transport(e.to_string()))?;
        check(res).await
    }
}

/// A message as a short text (SMS, e-mail).
pub fn text_of(msg: &AlertMessage) -> String {
    format!(
        "{} {} alert for patient {} ({}): {} [alert {}]",
        msg.severity, msg.kind, msg.patient_id, msg.purpose, msg.summary, msg.alert_id
    )
}

async fn check(res: reqwest::Response) -> Result<(), DeliveryError> {
    let status = res.status();
    if status.is_success() {
        return Ok(());
    }
    let body = res.text().await.unwrap_or_default();
    Err(DeliveryError::Status {
        status: status.as_u16(),
        body: body.chars().take(200).collect(),
    })
}

/// Feeds for in-process subscribers (the ward board's SSE stream): bounded;
/// a subscriber that falls behind is told it lagged and reloads.
pub type AlertFeed = tokio::sync::broadcast::Sender<AlertMessage>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_reject_tampering_and_replays() {
        let body = br#"{"alert_id":1}"#;
        let h = signature(b"s3cret", 1_000, body);
        // The documented scheme, computed outside this crate:
        // printf '1000.{"alert_id":1}' | openssl dgst -sha256 -hmac s3cret
        assert_eq!(
            h,
            "t=1000,v1=6c7ed0a7ab908f8091062c65902f6846f2a40ac74c7e4c2dbf6839d2916f0560"
        );
        assert!(verify(b"s3cret", &h, body, 1_010, 300));
        assert!(
            !verify(b"s3cret", &h, br#"{"alert_id":2}"#, 1_010, 300),
            "body changed"
        );
        assert!(!verify(b"other", &h, body, 1_010, 300), "wrong secret");
        assert!(
            !verify(b"s3cret", &h, body, 2_000, 300),
            "too old: a replay"
        );
        assert!(!verify(b"s3cret", "garbage", body, 1_000, 300));
    }

    #[test]
    fn notify_tokens_are_hs256_jwts_with_service_and_time() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        let n = NotifyConfig {
            base_url: "http://x".into(),
            api_key:
                "test_key-26785a09-ab16-4eb0-8407-a37497a57506-3d844edf-8d35-48ac-975b-e847b4f122b0"
                    .into(),
            sms_template_id: "t".into(),
            email_template_id: "t".into(),
        };
        let token = n.bearer(1_700_000_000).unwrap();
        let parts: Vec<_> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(
            claims,
            r#"{"iss":"26785a09-ab16-4eb0-8407-a37497a57506","iat":1700000000}"#
        );
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(b"3d844edf-8d35-48ac-975b-e847b4f122b0").unwrap();
        mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        assert!(mac
            .verify_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap())
            .is_ok());
    }
}
