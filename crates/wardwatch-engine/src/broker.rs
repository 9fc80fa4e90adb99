//! The embedded MQTT broker (cargo feature `embedded-broker`, on by
//! default): with no `[mqtt] url` configured, the engine runs rumqttd in
//! its own threads and connects to it over TCP like to any broker, so the
//! ingest path is the same code.
//!
//! It is for trials and small sites: rumqttd keeps queues in memory only,
//! so messages queued for a disconnected client do not survive a restart of
//! the process. Production sites run Mosquitto (or another broker) and set
//! `[mqtt] url`.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::error::{bail, Result};

use crate::credentials::PasswordFile;

/// Who may connect to the embedded broker.
#[derive(Debug, Clone, Default)]
pub struct EmbeddedUsers {
    /// The engine's own sessions (and the demo's simulator): user name →
    /// password, made at start.
    pub sessions: HashMap<String, String>,
    /// Devices and tools, from `[mqtt.embedded] password_file`.
    pub file: PasswordFile,
}

impl EmbeddedUsers {
    /// Whether a CONNECT may proceed: a known user with its password, and
    /// a client id equal to the user name (as Mosquitto's
    /// `use_username_as_clientid` makes it), so no one holding one
    /// password can take over another client's session.
    pub fn admits(&self, client_id: &str, user: &str, password: &str) -> bool {
        if client_id != user {
            return false;
        }
        match self.sessions.get(user) {
            Some(p) => constant_time_eq(p.as_bytes(), password.as_bytes()),
            None => self.file.check(user, password),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Starts the embedded broker on `listen` and waits until it accepts
/// connections; returns the address it listens on (port 0 picks a free
/// one). Refuses at once, with the reason, when the port is taken (a system
/// broker, another engine).
///
/// `max_payload` is the largest packet it forwards: keep it at the engine's
/// own limit, so the engine (not the broker) refuses and quarantines an
/// oversized message.
#[cfg(feature = "embedded-broker")]
pub fn start(
    listen: SocketAddr,
    max_payload: usize,
    max_inflight: usize,
    mut users: EmbeddedUsers,
) -> Result<SocketAddr> {
    use std::net::TcpListener;
    use std::sync::Arc;

    use crate::error::Context;
    use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

    // It authenticates every client, but rumqttd has no per-topic ACL and
    // no TLS here: any device with a password could publish as another or
    // read every team's alerts. Only this machine may reach it.
    if !listen.ip().is_loopback() {
        crate::error::bail!(
            "the embedded MQTT broker cannot limit a device to its own topics (no ACL) and has \
             no TLS, so it listens only on a loopback address (127.0.0.1 or ::1), not {listen}; \
             for devices on a network set [mqtt] url to a real broker (Mosquitto with config/mosquitto)"
        );
    }
    let probe = TcpListener::bind(listen)
        .with_context(|| format!("the embedded MQTT broker cannot listen on {listen} (port in use?); set [mqtt.embedded] listen or [mqtt] url"))?;
    // rumqttd binds by address, so a requested port 0 is resolved here.
    let listen = probe
        .local_addr()
        .context("the embedded broker's address")?;
    drop(probe);
    // The readiness check connects as a user of its own, with a password
    // made now, so it is a clean MQTT session (no error in the broker's
    // log) and no one else can use it.
    let ready_password = crate::credentials::random_password();
    users
        .sessions
        .insert(READY_USER.to_string(), ready_password.clone());
    let users = Arc::new(users);
    let mut connections = ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: max_payload,
        max_inflight_count: max_inflight,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    connections.set_auth_handler(move |client_id: String, user: String, password: String| {
        let users = users.clone();
        async move {
            let admitted = users.admits(&client_id, &user, &password);
            if !admitted {
                metrics::counter!("wardwatch_embedded_broker_refused_total").increment(1);
                tracing::warn!(message = "The embedded broker refused a connection: unknown user, wrong password, or a client id that is not the user name.", client_id = %client_id, user = %user);
            }
            admitted
        }
    });
    let server = ServerSettings {
        name: "wardwatch-embedded".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 10_010,
            // Packets forwarded to a subscriber per router pass: the engine
            // takes up to its in-flight window at a time.
            max_outgoing_packet_count: max_inflight as u64,
            // The in-memory log per filter: 10 segments of 100 MiB. A
            // subscriber more than that behind loses the oldest messages
            // (rumqttd rolls the log over): see the README's limits.
            max_segment_size: 100 * 1024 * 1024,
            max_segment_count: 10,
            ..Default::default()
        },
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..Default::default()
    };
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!(message = "The embedded MQTT broker stopped.", error = %e);
            }
        })
        .context("starting the embedded MQTT broker's thread")?;
    wait_until_listening(listen, &ready_password)?;
    Ok(listen)
}

/// The embedded broker's readiness check's user (and client id).
#[cfg(feature = "embedded-broker")]
const READY_USER: &str = "wardwatch-ready-check";

/// Without the feature there is no embedded broker: say how to get one.
#[cfg(not(feature = "embedded-broker"))]
pub fn start(
    _listen: SocketAddr,
    _max_payload: usize,
    _max_inflight: usize,
    _users: EmbeddedUsers,
) -> Result<SocketAddr> {
    bail!("no [mqtt] url is configured and this build has no embedded broker (built without the `embedded-broker` feature): set WARDWATCH_MQTT_URL")
}

/// Waits until the broker answers an MQTT CONNECT with a CONNACK that
/// accepts it, so the check is an ordinary session in the broker's log.
#[cfg(feature = "embedded-broker")]
fn wait_until_listening(listen: SocketAddr, password: &str) -> Result<()> {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    let connect = connect_packet(READY_USER, password);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(mut s) = TcpStream::connect_timeout(&listen, Duration::from_millis(200)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
            let mut connack = [0u8; 4];
            let accepted = s.write_all(&connect).is_ok()
                && s.read_exact(&mut connack).is_ok()
                && connack == [0x20, 0x02, 0x00, 0x00];
            if accepted {
                // Dropped without a DISCONNECT: rumqttd logs a client's
                // DISCONNECT as an error ("already gone"), a closed socket
                // after CONNACK as an ordinary disconnect.
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("the embedded MQTT broker did not start listening on {listen} within 10 s")
}

/// An MQTT 3.1.1 CONNECT: clean session, user name and password, the user
/// name as client id, keep-alive 10 s.
#[cfg(feature = "embedded-broker")]
fn connect_packet(user: &str, password: &str) -> Vec<u8> {
    let field = |out: &mut Vec<u8>, s: &str| {
        out.extend_from_slice(&(s.len() as u16).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    };
    let mut body = Vec::new();
    field(&mut body, "MQTT");
    body.extend_from_slice(&[0x04, 0b1100_0010, 0x00, 0x0A]);
    field(&mut body, user);
    field(&mut body, user);
    field(&mut body, password);
    let mut packet = vec![0x10];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        packet.push(byte);
        if len == 0 {
            break;
        }
    }
    packet.extend(body);
    packet
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "embedded-broker")]
    #[test]
    fn the_readiness_check_sends_a_well_formed_connect() {
        let p = connect_packet("u", "pw");
        // Fixed header, remaining length, protocol name and level, flags
        // (user name, password, clean session), keep-alive, then the
        // client id, user name and password.
        assert_eq!(
            p,
            [
                0x10, 20, 0, 4, b'M', b'Q', b'T', b'T', 4, 0xC2, 0, 10, 0, 1, b'u', 0, 1, b'u', 0,
                2, b'p', b'w'
            ]
        );
        let long = connect_packet(&"x".repeat(100), "y");
        assert_eq!(
            &long[..3],
            &[0x10, 0xD9, 0x01],
            "remaining length 217 in two bytes"
        );
    }

    #[test]
    fn admits_a_known_user_only_under_its_own_client_id() {
        let mut users = EmbeddedUsers::default();
        users
            .sessions
            .insert("wardwatch-engine".into(), "pw".into());
        assert!(users.admits("wardwatch-engine", "wardwatch-engine", "pw"));
        assert!(!users.admits("wardwatch-engine", "wardwatch-engine", "px"));
        assert!(!users.admits("wardwatch-engine", "wardwatch-engine", ""));
        assert!(
            !users.admits("other", "wardwatch-engine", "pw"),
            "client id bound to user"
        );
        assert!(!users.admits("dev-1", "dev-1", "pw"), "unknown user");
    }
}
