//! Bearer tokens: 256 random bits, shown once, stored only as SHA-256.
//! Failed authentication is rate limited per client address and logged.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use wardwatch_store::prelude::*;

use axum::http::HeaderMap;
use chrono::Utc;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tracing::warn;
use wardwatch_store::access::Principal;

use crate::problem::Problem;
use crate::ApiState;

/// A new token: `ww_` + 64 hex digits (256 random bits).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("ww_{}", hex::encode(bytes))
}

/// What the store keeps of a token.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Failed authentications per client address in the current window.
#[derive(Debug, Default)]
pub struct FailedAuth {
    by_client: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

/// Failures allowed per client per window before requests are refused.
const MAX_FAILURES: u32 = 10;
const WINDOW: Duration = Duration::from_secs(60);
/// Clients remembered at most (the map is bounded).
const MAX_CLIENTS: usize = 10_000;

impl FailedAuth {
    fn blocked(&self, ip: IpAddr) -> bool {
        let Ok(m) = self.by_client.lock() else {
            return false;
        };
        m.get(&ip)
            .is_some_and(|(n, since)| *n >= MAX_FAILURES && since.elapsed() < WINDOW)
    }

    fn failed(&self, ip: IpAddr) {
        let Ok(mut m) = self.by_client.lock() else {
            return;
        };
        if m.len() >= MAX_CLIENTS {
            m.retain(|_, (_, since)| since.elapsed() < WINDOW);
        }
        let e = m.entry(ip).or_insert((0, Instant::now()));
        if e.1.elapsed() >= WINDOW {
            *e = (0, Instant::now());
        }
        e.0 = e.0.saturating_add(1);
    }
}

/// The caller behind the request's bearer token.
pub(crate) async fn authenticate(
    state: &ApiState,
    headers: &HeaderMap,
    ip: IpAddr,
) -> Result<Principal, Problem> {
    if state.failed.blocked(ip) {
        metrics::counter!("wardwatch_api_auth_failures_total", "reason" => "rate_limited")
            .increment(1);
        return Err(Problem::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "Too many failed sign-ins",
            "too many failed authentications from this address; wait a minute".into(),
        ));
    }
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        state.failed.failed(ip);
        metrics::counter!("wardwatch_api_auth_failures_total", "reason" => "missing").increment(1);
        warn!(message = "API request without a bearer token.", client = %ip);
        return Err(Problem::unauthorized(
            "an Authorization: Bearer token is required",
        ));
    };
    match state
        .store
        .authenticate(&token_hash(token), Utc::now())
        .await
    {
        Ok(Some(p)) => Ok(p),
        Ok(None) => {
            state.failed.failed(ip);
            metrics::counter!("wardwatch_api_auth_failures_total", "reason" => "invalid")
                .increment(1);
            warn!(message = "API request with an unknown, expired or revoked token.", client = %ip);
            Err(Problem::unauthorized(
                "the token is unknown, expired or revoked",
            ))
        }
        Err(e) => Err(Problem::unavailable(&e)),
    }
}
