//! The MQTT session: one task polls the event loop and does nothing else, one
//! task owns the [`AckTracker`] and sends acknowledgements.
//!
//! Why two tasks: awaiting `ack` in the task that polls the event loop
//! deadlocks when the request channel is full (rumqtt issue 1025). The poll
//! task only forwards; the acker never awaits the client (it uses `try_ack`
//! and retries on a tick), so it always drains its inbox and no cycle of full
//! channels can form.
//!
//! Each connection gets a fresh client and event loop: acks still queued in an
//! old client's request channel die with it instead of being replayed on the
//! next connection, where the broker may have reused their packet ids.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use rumqttc::{AsyncClient, ClientError, Event, MqttOptions, Packet, Publish, QoS};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use wardwatch_core::DeliveryTag;

use crate::ack::AckTracker;

/// The topic filters wardwatch subscribes to (SenML, FHIR).
pub const SUBSCRIPTIONS: [&str; 2] = [
    "wardwatch/v1/devices/+/readings",
    "wardwatch/v1/devices/+/observations",
];

/// Host, port and optional (user, password) of a broker URL.
pub type BrokerAddress = (String, u16, Option<(String, String)>);

/// Settings for the ingest session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Fixed client id: with `clean_session = false` the broker keeps our
    /// subscriptions and queues messages while we are down.
    pub client_id: String,
    /// Optional credentials.
    pub credentials: Option<(String, String)>,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// The most unacknowledged messages the broker will send us (its
    /// in-flight window); sizes our channels so they never fill first.
    pub max_inflight: usize,
    /// Largest incoming packet accepted by the client (bytes).
    pub max_packet_bytes: usize,
    /// First reconnect delay; doubles up to `reconnect_max`.
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
}

impl SessionConfig {
    /// Parses `mqtt://[user:pass@]host[:port]` into host, port and credentials.
    pub fn parse_url(url: &str) -> Result<BrokerAddress, SessionError> {
        let rest = url
            .strip_prefix("mqtt://")
            .or_else(|| url.strip_prefix("tcp://"))
            .ok_or_else(|| SessionError::BadUrl(format!("{url:?} must start with mqtt://")))?;
        let rest = rest.trim_end_matches('/');
        let (auth, hostport) = match rest.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, rest),
        };
        let creds = auth.map(|a| match a.split_once(':') {
            Some((u, p)) => (u.to_string(), p.to_string()),
            None => (a.to_string(), String::new()),
        });
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (
                h.to_string(),
                p.parse::<u16>()
                    .map_err(|_| SessionError::BadUrl(format!("bad port in {url:?}")))?,
            ),
            None => (hostport.to_string(), 1883),
        };
        if host.is_empty() {
            return Err(SessionError::BadUrl(format!("no host in {url:?}")));
        }
        Ok((host, port, creds))
    }

    fn options(&self) -> MqttOptions {
        let mut o = MqttOptions::new(self.client_id.clone(), self.host.clone(), self.port);
        o.set_clean_session(false)
            .set_manual_acks(true)
            .set_keep_alive(self.keep_alive)
            .set_max_packet_size(self.max_packet_bytes, self.max_packet_bytes)
            .set_request_channel_capacity(self.request_capacity());
        if let Some((u, p)) = &self.credentials {
            o.set_credentials(u.clone(), p.clone());
        }
        o
    }

    /// Room for every possible ack plus subscriptions and a disconnect.
    fn request_capacity(&self) -> usize {
        self.max_inflight * 2 + 16
    }
}

/// Session set-up errors.
#[derive(Debug, Error)]
pub enum SessionError {
    /// The broker URL could not be understood.
    #[error("bad MQTT URL: {0}")]
    BadUrl(String),
}

/// One received PUBLISH, handed to decoding.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Connection epoch and arrival order.
    pub tag: DeliveryTag,
    /// Packet id to acknowledge; `None` for QoS 0 (nothing to acknowledge).
    pub pkid: Option<u16>,
    /// The topic it was published on.
    pub topic: String,
    /// The raw payload.
    pub payload: Bytes,
    /// The broker marked it as a redelivery.
    pub dup: bool,
    /// When the poll task received it.
    pub received_at: DateTime<Utc>,
}

/// Messages to the acker task.
#[derive(Debug)]
pub enum AckEvent {
    /// A new connection started with this client.
    Connected {
        /// The connection's epoch.
        epoch: u64,
        /// The client that sends acks on it.
        client: AsyncClient,
    },
    /// A QoS 1 message arrived (sent by the poll task before the delivery itself).
    Arrived {
        /// Its tag.
        tag: DeliveryTag,
        /// Its packet id.
        pkid: u16,
    },
    /// These messages are fully committed.
    Committed(Vec<DeliveryTag>),
    /// Send everything releasable now and answer when done.
    Flush(oneshot::Sender<()>),
}

/// Handles to a running session.
pub struct Session {
    /// Where the batch writer reports commits.
    pub acks: mpsc::Sender<AckEvent>,
    /// Stop reading and disconnect once acks are flushed.
    pub disconnect: CancellationToken,
    /// The poll task.
    pub poll_task: JoinHandle<()>,
    /// The acker task.
    pub ack_task: JoinHandle<()>,
}

/// Starts the session: deliveries go to `deliveries`; commits come back on
/// [`Session::acks`]. Cancel [`Session::disconnect`] only after the pipeline
/// has drained, so the last acks go out before the DISCONNECT.
pub fn start(config: SessionConfig, deliveries: mpsc::Sender<Delivery>) -> Session {
    let (ack_tx, ack_rx) = mpsc::channel(config.max_inflight * 2 + 16);
    let disconnect = CancellationToken::new();
    let ack_task = tokio::spawn(run_acker(ack_rx));
    let poll_task = tokio::spawn(run_poll(
        config,
        deliveries,
        ack_tx.clone(),
        disconnect.clone(),
    ));
    Session {
        acks: ack_tx,
        disconnect,
        poll_task,
        ack_task,
    }
}

async fn run_poll(
    config: SessionConfig,
    deliveries: mpsc::Sender<Delivery>,
    acks: mpsc::Sender<AckEvent>,
    disconnect: CancellationToken,
) {
    let mut epoch = 0u64;
    let mut backoff = config.reconnect_min;
    loop {
        epoch += 1;
        let (client, mut eventloop) = AsyncClient::new(config.options(), config.request_capacity());
        let subs = SUBSCRIPTIONS
            .iter()
            .map(|t| rumqttc::SubscribeFilter::new(t.to_string(), QoS::AtLeastOnce));
        if let Err(error) = client.try_subscribe_many(subs) {
            warn!(message = "Failed to queue subscription.", %error);
        }
        if acks
            .send(AckEvent::Connected {
                epoch,
                client: client.clone(),
            })
            .await
            .is_err()
        {
            return;
        }
        let mut seq = 0u64;
        loop {
            let event = tokio::select! {
                _ = disconnect.cancelled() => {
                    graceful_disconnect(&client, &mut eventloop, &acks).await;
                    return;
                }
                e = eventloop.poll() => e,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(c))) => {
                    metrics::counter!("wardwatch_mqtt_connections_total").increment(1);
                    info!(
                        message = "Connected to MQTT broker.",
                        host = %config.host,
                        port = config.port,
                        session_present = c.session_present,
                        epoch
                    );
                    backoff = config.reconnect_min;
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let tag = DeliveryTag { epoch, seq };
                    seq += 1;
                    metrics::counter!("wardwatch_messages_received_total").increment(1);
                    let pkid = (p.qos != QoS::AtMostOnce).then_some(p.pkid);
                    if let Some(pkid) = pkid {
                        if acks.send(AckEvent::Arrived { tag, pkid }).await.is_err() {
                            return;
                        }
                    }
                    let d = Delivery {
                        tag,
                        pkid,
                        topic: p.topic,
                        payload: p.payload,
                        dup: p.dup,
                        received_at: Utc::now(),
                    };
                    // Waiting here is the backpressure: the broker stops at its
                    // in-flight window, so this wait is bounded by it.
                    tokio::select! {
                        _ = disconnect.cancelled() => {
                            graceful_disconnect(&client, &mut eventloop, &acks).await;
                            return;
                        }
                        r = deliveries.send(d) => if r.is_err() {
                            // Pipeline gone (shutting down): keep the connection until told to disconnect.
                            debug!(message = "Delivery dropped during shutdown; the broker will redeliver it.");
                        }
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    metrics::counter!("wardwatch_mqtt_connection_errors_total").increment(1);
                    warn!(message = "MQTT connection lost; reconnecting.", %error, retry_in_ms = backoff.as_millis() as u64);
                    break;
                }
            }
        }
        drop(eventloop);
        tokio::select! {
            _ = disconnect.cancelled() => return,
            _ = tokio::time::sleep(jitter(backoff)) => {}
        }
        backoff = (backoff * 2).min(config.reconnect_max);
    }
}

/// Flushes releasable acks, then sends DISCONNECT and polls until it is out.
async fn graceful_disconnect(
    client: &AsyncClient,
    eventloop: &mut rumqttc::EventLoop,
    acks: &mpsc::Sender<AckEvent>,
) {
    let (tx, rx) = oneshot::channel();
    if acks.send(AckEvent::Flush(tx)).await.is_ok() {
        let _ = rx.await;
    }
    if client.try_disconnect().is_err() {
        return;
    }
    let deadline = tokio::time::sleep(Duration::from_secs(5));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => return,
            e = eventloop.poll() => match e {
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}

/// Spreads reconnects of many engines so they do not hammer a recovering broker together.
fn jitter(d: Duration) -> Duration {
    let nanos = Utc::now().timestamp_subsec_nanos() as u64;
    let spread = d.as_millis() as u64 / 4 + 1;
    d + Duration::from_millis(nanos % spread)
}

async fn run_acker(mut inbox: mpsc::Receiver<AckEvent>) {
    let mut tracker = AckTracker::new();
    let mut client: Option<AsyncClient> = None;
    let mut ready: std::collections::VecDeque<u16> = std::collections::VecDeque::new();
    let mut retry = tokio::time::interval(Duration::from_millis(5));
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut flush_reply = None;
        tokio::select! {
            ev = inbox.recv() => match ev {
                None => return,
                Some(AckEvent::Connected { epoch, client: c }) => {
                    let dropped = tracker.connected(epoch) + ready.len();
                    ready.clear();
                    if dropped > 0 {
                        metrics::counter!("wardwatch_acks_dropped_on_reconnect_total").increment(dropped as u64);
                        info!(message = "Dropped acks of the previous connection; the broker redelivers them.", dropped);
                    }
                    client = Some(c);
                }
                Some(AckEvent::Arrived { tag, pkid }) => {
                    tracker.arrived(tag, pkid);
                }
                Some(AckEvent::Committed(tags)) => ready.extend(tracker.committed(tags)),
                Some(AckEvent::Flush(reply)) => flush_reply = Some(reply),
            },
            _ = retry.tick(), if !ready.is_empty() => {}
        }
        if let Some(c) = &client {
            while let Some(&pkid) = ready.front() {
                let mut p = Publish::new("", QoS::AtLeastOnce, Vec::new());
                p.pkid = pkid;
                match c.try_ack(&p) {
                    Ok(()) => {
                        ready.pop_front();
                        metrics::counter!("wardwatch_acks_sent_total").increment(1);
                    }
                    Err(ClientError::TryRequest(_)) => break, // channel full: retry on the tick
                    Err(_) => {
                        ready.clear(); // connection gone: redelivery will follow
                        break;
                    }
                }
            }
        }
        metrics::gauge!("wardwatch_acks_pending").set((tracker.pending() + ready.len()) as f64);
        if let Some(reply) = flush_reply {
            let _ = reply.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_parse_with_and_without_credentials() {
        assert_eq!(
            SessionConfig::parse_url("mqtt://127.0.0.1:1883").unwrap(),
            ("127.0.0.1".into(), 1883, None)
        );
        assert_eq!(
            SessionConfig::parse_url("mqtt://eng:s3cret@broker").unwrap(),
            ("broker".into(), 1883, Some(("eng".into(), "s3cret".into())))
        );
        assert!(SessionConfig::parse_url("http://x").is_err());
        assert!(SessionConfig::parse_url("mqtt://x:notaport").is_err());
        assert!(SessionConfig::parse_url("mqtt://:1883").is_err());
    }
}
