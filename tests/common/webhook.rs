//! A local webhook receiver for alerting tests: checks every signature
//! the documented way, fails or holds answers on demand, and records each
//! request with its idempotency key.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::Utc;

pub const SECRET: &str = "test-webhook-secret";

/// One webhook request as received.
#[derive(Debug, Clone)]
pub struct Hit {
    pub path: String,
    pub key: String,
    pub body: serde_json::Value,
    /// When it arrived (the receiver's own monotonic clock).
    pub at: std::time::Instant,
}

/// A local webhook receiver: verifies every signature (a bad one is a test
/// failure), fails the first `fail_first` requests with 500, and can hold
/// its answer to simulate a receiver that got the request but whose answer
/// never reached the engine.
#[derive(Clone, Default)]
pub struct Receiver {
    pub hits: Arc<Mutex<Vec<Hit>>>,
    pub bad_signatures: Arc<AtomicUsize>,
    pub fail_first: Arc<AtomicUsize>,
    pub hold_first_ms: Arc<AtomicUsize>,
    /// While set, every request but the fallback's fails with 500 (after
    /// being recorded).
    pub failing: Arc<AtomicBool>,
    /// While set, every request but the fallback's is held (a receiver
    /// that hangs).
    pub hanging: Arc<AtomicBool>,
}

impl Receiver {
    pub async fn start(&self) -> u16 {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        self.serve_on(listener)
    }

    /// Serves on a listener bound earlier (so its port was never free for
    /// anyone else in between).
    pub fn serve_on(&self, listener: tokio::net::TcpListener) -> u16 {
        let app = axum::Router::new()
            .route("/{*path}", post(receive))
            .with_state(self.clone());
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        port
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// What a receiver honouring idempotency keys acts on: one per key.
    pub fn unique(&self, path: &str) -> Vec<Hit> {
        let mut seen = HashSet::new();
        self.hits()
            .into_iter()
            .filter(|h| h.path == path && seen.insert(h.key.clone()))
            .collect()
    }
}

/// The documented scheme, computed here from scratch rather than with the
/// crate's own `verify` (an error made the same way on both sides would
/// pass): `X-Wardwatch-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret,
/// "<t>.<body>")>`, with `t` within five minutes of now.
pub fn signature_is_valid(secret: &[u8], header: &str, body: &[u8], now: i64) -> bool {
    use hmac::Mac;
    let Some((t, v1)) = header
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
    else {
        return false;
    };
    let Ok(t_secs) = t.parse::<i64>() else {
        return false;
    };
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(secret).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (now - t_secs).abs() <= 300 && expected == v1
}

async fn receive(
    State(r): State<Receiver>,
    axum::extract::Path(path): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let sig = headers
        .get("x-wardwatch-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !signature_is_valid(SECRET.as_bytes(), sig, &body, Utc::now().timestamp()) {
        r.bad_signatures.fetch_add(1, Ordering::SeqCst);
        return StatusCode::UNAUTHORIZED;
    }
    let key = headers
        .get("x-wardwatch-idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    r.hits.lock().unwrap().push(Hit {
        path: format!("/{path}"),
        key,
        body,
        at: std::time::Instant::now(),
    });
    let fallback = path.starts_with("fallback");
    while !fallback && r.hanging.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !fallback && r.failing.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let hold = r.hold_first_ms.swap(0, Ordering::SeqCst);
    if hold > 0 {
        tokio::time::sleep(Duration::from_millis(hold as u64)).await;
    }
    if r.fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    StatusCode::OK
}
