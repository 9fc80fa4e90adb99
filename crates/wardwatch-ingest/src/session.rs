//! The MQTT session: a small MQTT 3.1.1 client of our own (rumqttc's codec,
//! not its event loop), built for acknowledge-after-commit.
//!
//! Per connection, three parts run apart so none can stall another:
//! - the **reader** parses packets off the socket and hands each PUBLISH to
//!   decoding through a bounded channel. When that channel is full it simply
//!   stops reading: TCP backpressure reaches the broker, nothing is buffered
//!   without bound.
//! - the **writer** owns the socket's write half: it writes PUBACKs in batches
//!   as they are released, and PINGREQs on the keep-alive, whether or not the
//!   reader is blocked, so a busy engine is never mistaken for a dead one.
//! - the **acker** (one for the whole session) owns the [`AckTracker`] and
//!   hands releasable packet ids to the current connection's writer.
//!
//! Why not rumqttc's event loop: it writes one queued request per turn of its
//! loop while reading up to ten packets per turn, so under a steady flood
//! acknowledgements fell ever further behind (measured: about one PUBACK per
//! ten PUBLISHes at 8,000 messages/s), and a task blocked on our backpressure
//! stopped its keep-alive, ending in a reconnect and a redelivery storm.
//!
//! Each connection is an epoch; when it ends, its unsent acks end with it and
//! the broker redelivers those messages (idempotent writes absorb them).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use rumqttc::{
    ConnAck, Connect, ConnectReturnCode, Packet, PingReq, PubAck, QoS, Subscribe, SubscribeFilter,
    SubscribeReasonCode,
};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The broker connection's read side: TCP or TLS over TCP.
type OwnedReadHalf = Box<dyn AsyncRead + Send + Unpin>;
/// Its write side.
type OwnedWriteHalf = Box<dyn AsyncWrite + Send + Unpin>;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use wardwatch_core::DeliveryTag;

use crate::ack::AckTracker;

/// The topic filters wardwatch subscribes to (SenML, FHIR).
pub const SUBSCRIPTIONS: [&str; 2] = [
    "wardwatch/v1/devices/+/readings",
    "wardwatch/v1/devices/+/observations",
];

/// What the session's link to the broker is doing now, for `/healthz` and
/// for anyone who must know the engine can receive: connected alone is not
/// enough, since a message published before the broker confirmed the
/// subscription (SUBACK) may never be routed to us.
#[derive(Debug, Default)]
pub struct LinkStatus {
    connected: std::sync::atomic::AtomicBool,
    subscribed: std::sync::atomic::AtomicBool,
}

impl LinkStatus {
    /// Connected to the broker (CONNACK received).
    pub fn connected(&self) -> bool {
        self.connected.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Connected and every subscription confirmed by the broker.
    pub fn subscribed(&self) -> bool {
        self.connected() && self.subscribed.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn set(&self, connected: bool, subscribed: bool) {
        use std::sync::atomic::Ordering::SeqCst;
        self.subscribed.store(subscribed, SeqCst);
        self.connected.store(connected, SeqCst);
    }
}

/// A broker URL, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    /// Host name or address (also the name a TLS certificate must carry).
    pub host: String,
    /// Port: 1883 for `mqtt://`, 8883 for `mqtts://` unless given.
    pub port: u16,
    /// User name and password, when the URL has them.
    pub credentials: Option<(String, String)>,
    /// `mqtts://`: TLS, the server verified against the configured CA.
    pub tls: bool,
}

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
    /// TLS (`mqtts://`): the client configuration that verifies the broker.
    pub tls: Option<std::sync::Arc<tokio_rustls::rustls::ClientConfig>>,
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
    /// Where the session reports its link (shared with the health endpoint).
    pub status: std::sync::Arc<LinkStatus>,
}

impl SessionConfig {
    /// Parses `mqtt[s]://[user:pass@]host[:port]`.
    /// Errors quote the URL with its password masked: they reach logs.
    pub fn parse_url(url: &str) -> Result<BrokerAddress, SessionError> {
        let shown = redact_url(url);
        let (rest, tls) = if let Some(r) = url.strip_prefix("mqtts://") {
            (r, true)
        } else if let Some(r) = url
            .strip_prefix("mqtt://")
            .or_else(|| url.strip_prefix("tcp://"))
        {
            (r, false)
        } else {
            return Err(SessionError::BadUrl(format!(
                "{shown:?} must start with mqtt:// or mqtts://"
            )));
        };
        let rest = rest.trim_end_matches('/');
        let (auth, hostport) = match rest.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, rest),
        };
        let credentials = auth.map(|a| match a.split_once(':') {
            Some((u, p)) => (u.to_string(), p.to_string()),
            None => (a.to_string(), String::new()),
        });
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (
                h.to_string(),
                p.parse::<u16>()
                    .map_err(|_| SessionError::BadUrl(format!("bad port in {shown:?}")))?,
            ),
            None => (hostport.to_string(), if tls { 8883 } else { 1883 }),
        };
        if host.is_empty() {
            return Err(SessionError::BadUrl(format!("no host in {shown:?}")));
        }
        Ok(BrokerAddress {
            host,
            port,
            credentials,
            tls,
        })
    }
}

/// A URL for logs and errors: the password after `user:` replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.rsplit_once('@') {
        Some((auth, host)) => match auth.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// Session errors.
#[derive(Debug, Error)]
pub enum SessionError {
    /// The broker URL could not be understood.
    #[error("bad MQTT URL: {0}")]
    BadUrl(String),
    /// Socket trouble.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS handshake failed (an untrusted or wrong-name certificate).
    #[error("TLS: {0}")]
    Tls(String),
    /// The broker sent something we cannot parse, or too large a packet.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The broker refused the connection.
    #[error("broker refused the connection: {0:?}")]
    Refused(ConnectReturnCode),
    /// Nothing arrived from the broker for two keep-alive periods.
    #[error("no traffic from the broker for {0:?}")]
    Silent(Duration),
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
    /// The broker sent its stored (retained) copy, not a live publish.
    pub retain: bool,
    /// When the reader received it.
    pub received_at: DateTime<Utc>,
    /// Set when the packet exceeded `max_packet_bytes`: the payload's real
    /// size. `payload` then holds only its first bytes, for the quarantine.
    pub oversized: Option<usize>,
}

/// Messages to the acker task.
#[derive(Debug)]
pub enum AckEvent {
    /// A new connection started; its writer takes packet ids to acknowledge here.
    Connected {
        /// The connection's epoch.
        epoch: u64,
        /// The connection writer's inbox. Its capacity exceeds the number of
        /// distinct packet ids, so `try_send` cannot fail for lack of room.
        writer: mpsc::Sender<u16>,
    },
    /// A QoS 1 message arrived (sent by the reader before the delivery itself).
    Arrived {
        /// Its tag.
        tag: DeliveryTag,
        /// Its packet id.
        pkid: u16,
    },
    /// These messages are fully committed.
    Committed(Vec<DeliveryTag>),
    /// Hand everything releasable to the writer now and answer when done.
    Flush(oneshot::Sender<()>),
}

/// Handles to a running session.
pub struct Session {
    /// Where the batch writer reports commits.
    pub acks: mpsc::Sender<AckEvent>,
    /// Stop reading and disconnect once acks are flushed.
    pub disconnect: CancellationToken,
    /// The connection task (reconnects with backoff).
    pub poll_task: JoinHandle<()>,
    /// The acker task.
    pub ack_task: JoinHandle<()>,
}

/// More than the 65,535 packet ids that can be unacknowledged at once.
const WRITER_INBOX: usize = 65_536;

/// Starts the session: deliveries go to `deliveries`; commits come back on
/// [`Session::acks`]. Cancel [`Session::disconnect`] only after the pipeline
/// has drained, so the last acks go out before the DISCONNECT.
pub fn start(config: SessionConfig, deliveries: mpsc::Sender<Delivery>) -> Session {
    let (ack_tx, ack_rx) = mpsc::channel(config.max_inflight * 2 + 16);
    let disconnect = CancellationToken::new();
    let ack_task = tokio::spawn(run_acker(ack_rx));
    let poll_task = tokio::spawn(run_connections(
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

async fn run_connections(
    config: SessionConfig,
    deliveries: mpsc::Sender<Delivery>,
    acks: mpsc::Sender<AckEvent>,
    disconnect: CancellationToken,
) {
    let mut epoch = 0u64;
    let mut backoff = config.reconnect_min;
    loop {
        epoch += 1;
        let result = tokio::select! {
            _ = disconnect.cancelled() => return,
            r = tokio::time::timeout(Duration::from_secs(10), connect(&config)) => r,
        };
        let (reader, writer, leftover, connack) = match result {
            Ok(Ok(c)) => c,
            Ok(Err(error)) => {
                connection_failed(&error.to_string(), backoff);
                if !sleep_or_stop(&disconnect, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(config.reconnect_max);
                continue;
            }
            Err(_) => {
                connection_failed("connect timed out", backoff);
                if !sleep_or_stop(&disconnect, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(config.reconnect_max);
                continue;
            }
        };
        metrics::counter!("wardwatch_mqtt_connections_total").increment(1);
        config.status.set(true, false);
        info!(
            message = "Connected to MQTT broker.",
            host = %config.host,
            port = config.port,
            session_present = connack.session_present,
            epoch
        );
        backoff = config.reconnect_min;

        let (writer_tx, writer_rx) = mpsc::channel::<u16>(WRITER_INBOX);
        if acks
            .send(AckEvent::Connected {
                epoch,
                writer: writer_tx,
            })
            .await
            .is_err()
        {
            return;
        }
        let stop_writer = CancellationToken::new();
        let mut writer_task = tokio::spawn(run_writer(
            writer,
            writer_rx,
            config.keep_alive,
            stop_writer.clone(),
        ));
        let mut reader_task = tokio::spawn(run_reader(
            reader,
            leftover,
            epoch,
            config.clone(),
            deliveries.clone(),
            acks.clone(),
        ));
        let outcome = tokio::select! {
            _ = disconnect.cancelled() => None,
            r = &mut reader_task => Some(r.map_or_else(|e| e.to_string(), |e| e.to_string())),
            r = &mut writer_task => Some(r.map_or_else(
                |e| e.to_string(),
                |e| e.map_or_else(|e| e.to_string(), |_| "writer stopped".into()),
            )),
        };
        config.status.set(false, false);
        match outcome {
            None => {
                // Graceful: release every committed ack, then DISCONNECT, then
                // read until the broker closes so our close is a FIN, not an RST.
                let (tx, rx) = oneshot::channel();
                if acks.send(AckEvent::Flush(tx)).await.is_ok() {
                    let _ = rx.await;
                }
                stop_writer.cancel();
                let _ = tokio::time::timeout(Duration::from_secs(5), writer_task).await;
                if tokio::time::timeout(Duration::from_secs(2), &mut reader_task)
                    .await
                    .is_err()
                {
                    reader_task.abort();
                }
                return;
            }
            Some(reason) => {
                reader_task.abort();
                writer_task.abort();
                metrics::counter!("wardwatch_mqtt_connection_errors_total").increment(1);
                warn!(message = "MQTT connection lost; reconnecting.", error = %reason, retry_in_ms = backoff.as_millis() as u64);
                if !sleep_or_stop(&disconnect, jitter(backoff)).await {
                    return;
                }
                backoff = (backoff * 2).min(config.reconnect_max);
            }
        }
    }
}

fn connection_failed(error: &str, retry_in: Duration) {
    metrics::counter!("wardwatch_mqtt_connection_errors_total").increment(1);
    warn!(message = "Cannot connect to the MQTT broker; retrying.", %error, retry_in_ms = retry_in.as_millis() as u64);
}

/// Sleeps unless told to stop; false when stopping.
async fn sleep_or_stop(stop: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = stop.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

type Connected = (OwnedReadHalf, OwnedWriteHalf, BytesMut, ConnAck);

/// TCP connect, CONNECT (persistent session), CONNACK, SUBSCRIBE.
async fn connect(config: &SessionConfig) -> Result<Connected, SessionError> {
    let stream = TcpStream::connect((config.host.as_str(), config.port)).await?;
    stream.set_nodelay(true)?;
    let (mut reader, mut writer): (OwnedReadHalf, OwnedWriteHalf) = match &config.tls {
        None => {
            let (r, w) = stream.into_split();
            (Box::new(r), Box::new(w))
        }
        Some(tls) => {
            let name = rustls_pki_types::ServerName::try_from(config.host.clone())
                .map_err(|e| SessionError::Tls(format!("{:?}: {e}", config.host)))?;
            let stream = tokio_rustls::TlsConnector::from(tls.clone())
                .connect(name, stream)
                .await
                .map_err(|e| SessionError::Tls(e.to_string()))?;
            let (r, w) = tokio::io::split(stream);
            (Box::new(r), Box::new(w))
        }
    };
    let mut connect = Connect::new(config.client_id.clone());
    connect.clean_session = false;
    connect.keep_alive = u16::try_from(config.keep_alive.as_secs()).unwrap_or(u16::MAX);
    if let Some((u, p)) = &config.credentials {
        connect.set_login(u.clone(), p.clone());
    }
    let mut out = BytesMut::new();
    connect
        .write(&mut out)
        .map_err(|e| SessionError::Protocol(format!("{e:?}")))?;
    writer.write_all(&out).await?;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let connack = loop {
        match Packet::read(&mut buf, config.max_packet_bytes) {
            Ok(Packet::ConnAck(c)) => break c,
            Ok(other) => {
                return Err(SessionError::Protocol(format!(
                    "expected CONNACK, got {other:?}"
                )))
            }
            Err(rumqttc::Error::InsufficientBytes(_)) => {
                if reader.read_buf(&mut buf).await? == 0 {
                    return Err(SessionError::Protocol(
                        "broker closed the connection".into(),
                    ));
                }
            }
            Err(e) => return Err(SessionError::Protocol(format!("{e:?}"))),
        }
    };
    if connack.code != ConnectReturnCode::Success {
        return Err(SessionError::Refused(connack.code));
    }
    let filters = SUBSCRIPTIONS
        .iter()
        .map(|t| SubscribeFilter::new(t.to_string(), QoS::AtLeastOnce));
    let mut sub = Subscribe::new_many(filters);
    sub.pkid = 1;
    out.clear();
    sub.write(&mut out)
        .map_err(|e| SessionError::Protocol(format!("{e:?}")))?;
    writer.write_all(&out).await?;
    Ok((reader, writer, buf, connack))
}

/// Reads packets; forwards PUBLISHes. Returns why the connection ended.
async fn run_reader(
    mut reader: OwnedReadHalf,
    mut buf: BytesMut,
    epoch: u64,
    config: SessionConfig,
    deliveries: mpsc::Sender<Delivery>,
    acks: mpsc::Sender<AckEvent>,
) -> SessionError {
    let silence = config.keep_alive * 2;
    let mut seq = 0u64;
    loop {
        let mut oversized = None;
        let packet = match Packet::read(&mut buf, config.max_packet_bytes) {
            Ok(p) => p,
            Err(rumqttc::Error::PayloadSizeLimitExceeded(_)) => {
                // Refusing it would end the connection, and the broker would
                // redeliver it first on every reconnect, forever: skip it on
                // the wire instead and let it be quarantined as oversized.
                match skip_oversized(&mut reader, &mut buf, silence).await {
                    Ok((publish, size)) => {
                        oversized = Some(size);
                        Packet::Publish(publish)
                    }
                    Err(e) => return e,
                }
            }
            Err(rumqttc::Error::InsufficientBytes(_)) => {
                if let Err(e) = read_some(silence, reader.read_buf(&mut buf)).await {
                    return e;
                }
                continue;
            }
            Err(e) => return SessionError::Protocol(format!("{e:?}")),
        };
        match packet {
            Packet::Publish(p) => {
                let tag = DeliveryTag { epoch, seq };
                seq += 1;
                metrics::counter!("wardwatch_messages_received_total").increment(1);
                let pkid = (p.qos != QoS::AtMostOnce).then_some(p.pkid);
                if let Some(pkid) = pkid {
                    if acks.send(AckEvent::Arrived { tag, pkid }).await.is_err() {
                        return SessionError::Protocol("acker stopped".into());
                    }
                }
                let d = Delivery {
                    tag,
                    pkid,
                    topic: p.topic,
                    payload: p.payload,
                    dup: p.dup,
                    retain: p.retain,
                    received_at: now_micros(),
                    oversized,
                };
                // Waiting here is the backpressure: we stop reading and TCP
                // tells the broker; the writer keeps acking and pinging.
                if deliveries.send(d).await.is_err() {
                    // The pipeline is shutting down: keep the connection open
                    // for the last acks, discarding whatever else arrives
                    // (unacknowledged, so the broker redelivers it later).
                    return drain(reader, silence).await;
                }
            }
            Packet::SubAck(s) => {
                if s.return_codes.contains(&SubscribeReasonCode::Failure) {
                    warn!(message = "The broker refused a subscription; check the engine user's ACL.", codes = ?s.return_codes);
                    metrics::counter!("wardwatch_mqtt_subscription_failures_total").increment(1);
                } else {
                    config.status.set(true, true);
                    info!(message = "Subscribed to the device topics.", epoch);
                }
            }
            Packet::PingResp => {}
            Packet::Disconnect => {
                return SessionError::Protocol("broker sent DISCONNECT".into());
            }
            other => {
                tracing::debug!(message = "Ignored MQTT packet.", packet = ?other);
            }
        }
    }
}

/// How much of an oversized payload is kept for the quarantine.
const OVERSIZED_PREFIX: usize = 2048;

/// One socket read, bounded by `silence` (the writer pings every keep-alive,
/// so a live broker always sends something within it). End of stream is an
/// error: the connection is over.
async fn read_some(
    silence: Duration,
    read: impl std::future::Future<Output = std::io::Result<usize>>,
) -> Result<usize, SessionError> {
    match tokio::time::timeout(silence, read).await {
        Ok(Ok(0)) => Err(SessionError::Protocol(
            "broker closed the connection".into(),
        )),
        Ok(Ok(n)) => Ok(n),
        Ok(Err(e)) => Err(SessionError::Io(e)),
        Err(_) => Err(SessionError::Silent(silence)),
    }
}

/// Reads until `buf` holds at least `n` bytes.
async fn fill(
    reader: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    n: usize,
    silence: Duration,
) -> Result<(), SessionError> {
    while buf.len() < n {
        read_some(silence, reader.read_buf(buf)).await?;
    }
    Ok(())
}

fn bytes_at(buf: &BytesMut, from: usize, to: usize) -> Result<&[u8], SessionError> {
    buf.get(from..to)
        .ok_or_else(|| SessionError::Protocol("short packet".into()))
}

/// Parses the header of a PUBLISH too large to hold, keeps its first bytes,
/// and discards the rest from the socket. Returns it with the real payload size.
async fn skip_oversized(
    reader: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    silence: Duration,
) -> Result<(rumqttc::Publish, usize), SessionError> {
    use bytes::Buf;

    fill(reader, buf, 2, silence).await?;
    let byte0 = bytes_at(buf, 0, 1)?[0];
    if byte0 >> 4 != 3 {
        return Err(SessionError::Protocol(format!(
            "oversized packet of type {} (only PUBLISH is expected to be large)",
            byte0 >> 4
        )));
    }
    let mut remaining = 0usize;
    let mut header_len = 1;
    for shift in [0u32, 7, 14, 21] {
        fill(reader, buf, header_len + 1, silence).await?;
        let b = bytes_at(buf, header_len, header_len + 1)?[0];
        header_len += 1;
        remaining += usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        if shift == 21 {
            return Err(SessionError::Protocol("malformed remaining length".into()));
        }
    }
    let qos = match (byte0 >> 1) & 0b11 {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        2 => QoS::ExactlyOnce,
        _ => return Err(SessionError::Protocol("invalid QoS 3".into())),
    };
    fill(reader, buf, header_len + 2, silence).await?;
    let tl = bytes_at(buf, header_len, header_len + 2)?;
    let topic_len = usize::from(u16::from_be_bytes([tl[0], tl[1]]));
    let pkid_len = if qos == QoS::AtMostOnce { 0 } else { 2 };
    let var_len = 2 + topic_len + pkid_len;
    let payload_len = remaining
        .checked_sub(var_len)
        .ok_or_else(|| SessionError::Protocol("PUBLISH shorter than its topic".into()))?;
    let keep = payload_len.min(OVERSIZED_PREFIX);
    fill(reader, buf, header_len + var_len + keep, silence).await?;
    let topic_start = header_len + 2;
    let topic =
        String::from_utf8_lossy(bytes_at(buf, topic_start, topic_start + topic_len)?).into_owned();
    let pkid = if pkid_len == 2 {
        let p = bytes_at(buf, topic_start + topic_len, topic_start + topic_len + 2)?;
        u16::from_be_bytes([p[0], p[1]])
    } else {
        0
    };
    let prefix = Bytes::copy_from_slice(bytes_at(
        buf,
        header_len + var_len,
        header_len + var_len + keep,
    )?);
    // Discard the whole packet: what is buffered, then the rest off the socket.
    let mut left = header_len + remaining;
    let buffered = left.min(buf.len());
    buf.advance(buffered);
    left -= buffered;
    let mut sink = vec![0u8; 64 * 1024];
    while left > 0 {
        let want = left.min(sink.len());
        left -= read_some(silence, reader.read(&mut sink[..want])).await?;
    }
    let mut publish = rumqttc::Publish::from_bytes(topic, qos, prefix);
    publish.pkid = pkid;
    publish.dup = byte0 & 0b1000 != 0;
    publish.retain = byte0 & 1 != 0;
    Ok((publish, payload_len))
}

/// Reads and discards until the broker closes the connection. Closing a
/// socket with unread data sends RST instead of FIN, and a broker that gets
/// an RST may discard our last PUBACKs and the DISCONNECT still in its buffer.
async fn drain(mut reader: OwnedReadHalf, silence: Duration) -> SessionError {
    let mut sink = vec![0u8; 64 * 1024];
    loop {
        if let Err(e) = read_some(silence, reader.read(&mut sink)).await {
            return e;
        }
    }
}

/// Writes PUBACKs in batches and PINGREQs on the keep-alive.
async fn run_writer(
    mut writer: OwnedWriteHalf,
    mut pkids: mpsc::Receiver<u16>,
    keep_alive: Duration,
    stop: CancellationToken,
) -> Result<(), SessionError> {
    let mut out = BytesMut::with_capacity(16 * 1024);
    let mut ping = tokio::time::interval(keep_alive.max(Duration::from_secs(1)));
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    loop {
        out.clear();
        tokio::select! {
            biased;
            _ = stop.cancelled() => {
                while let Ok(pkid) = pkids.try_recv() {
                    encode_puback(&mut out, pkid)?;
                }
                rumqttc::Disconnect.write(&mut out).map_err(|e| SessionError::Protocol(format!("{e:?}")))?;
                writer.write_all(&out).await?;
                writer.shutdown().await.ok();
                return Ok(());
            }
            first = pkids.recv() => {
                let Some(first) = first else { return Ok(()) };
                encode_puback(&mut out, first)?;
                let mut n = 1u64;
                while let Ok(pkid) = pkids.try_recv() {
                    encode_puback(&mut out, pkid)?;
                    n += 1;
                }
                writer.write_all(&out).await?;
                metrics::counter!("wardwatch_acks_sent_total").increment(n);
            }
            _ = ping.tick() => {
                PingReq.write(&mut out).map_err(|e| SessionError::Protocol(format!("{e:?}")))?;
                writer.write_all(&out).await?;
            }
        }
    }
}

fn encode_puback(out: &mut BytesMut, pkid: u16) -> Result<(), SessionError> {
    PubAck::new(pkid)
        .write(out)
        .map(|_| ())
        .map_err(|e| SessionError::Protocol(format!("{e:?}")))
}

/// The current time at the store's precision (PostgreSQL keeps microseconds),
/// so a receipt time read back from the store equals the one used to decode.
pub fn now_micros() -> DateTime<Utc> {
    let now = wardwatch_core::clock::engine::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

/// Spreads reconnects of many engines so they do not hammer a recovering broker together.
fn jitter(d: Duration) -> Duration {
    let nanos = wardwatch_core::clock::engine::now().timestamp_subsec_nanos() as u64;
    let spread = d.as_millis() as u64 / 4 + 1;
    d + Duration::from_millis(nanos % spread)
}

async fn run_acker(mut inbox: mpsc::Receiver<AckEvent>) {
    let mut tracker = AckTracker::new();
    let mut writer: Option<mpsc::Sender<u16>> = None;
    while let Some(ev) = inbox.recv().await {
        match ev {
            AckEvent::Connected { epoch, writer: w } => {
                let dropped = tracker.connected(epoch);
                if dropped > 0 {
                    metrics::counter!("wardwatch_acks_dropped_on_reconnect_total")
                        .increment(dropped as u64);
                    info!(
                        message =
                            "Dropped acks of the previous connection; the broker redelivers them.",
                        dropped
                    );
                }
                writer = Some(w);
            }
            AckEvent::Arrived { tag, pkid } => {
                tracker.arrived(tag, pkid);
            }
            AckEvent::Committed(tags) => {
                let ready = tracker.committed(tags);
                if let Some(w) = &writer {
                    for pkid in ready {
                        // Cannot be full (see WRITER_INBOX); closed means the
                        // connection ended and the broker will redeliver.
                        if w.try_send(pkid).is_err() {
                            break;
                        }
                    }
                }
            }
            AckEvent::Flush(reply) => {
                let _ = reply.send(());
            }
        }
        metrics::gauge!("wardwatch_acks_pending").set(tracker.pending() as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_parse_with_and_without_credentials() {
        let addr = |host: &str, port, credentials: Option<(&str, &str)>, tls| BrokerAddress {
            host: host.into(),
            port,
            credentials: credentials.map(|(u, p)| (u.into(), p.into())),
            tls,
        };
        assert_eq!(
            SessionConfig::parse_url("mqtt://127.0.0.1:1883").unwrap(),
            addr("127.0.0.1", 1883, None, false)
        );
        assert_eq!(
            SessionConfig::parse_url("mqtt://eng:s3cret@broker").unwrap(),
            addr("broker", 1883, Some(("eng", "s3cret")), false)
        );
        assert_eq!(
            SessionConfig::parse_url("mqtts://eng:s3cret@broker").unwrap(),
            addr("broker", 8883, Some(("eng", "s3cret")), true)
        );
        assert_eq!(
            SessionConfig::parse_url("mqtts://broker:18883").unwrap(),
            addr("broker", 18883, None, true)
        );
        assert!(SessionConfig::parse_url("http://x").is_err());
        // An error never shows the password.
        for bad in [
            "http://eng:s3cret@broker",
            "mqtt://eng:s3cret@broker:notaport",
            "mqtt://eng:s3cret@:1883",
        ] {
            let e = SessionConfig::parse_url(bad).unwrap_err().to_string();
            assert!(!e.contains("s3cret") && e.contains("eng:***@"), "{e}");
        }
        assert!(SessionConfig::parse_url("mqtt://x:notaport").is_err());
        assert!(SessionConfig::parse_url("mqtt://:1883").is_err());
    }
}
