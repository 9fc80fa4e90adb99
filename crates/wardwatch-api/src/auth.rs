//! Bearer tokens: 256 random bits, shown once, stored only as SHA-256.
//! Failed authentication is rate limited per client address and token
//! prefix, counted, and audited in aggregate.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use wardwatch_store::prelude::*;

use axum::http::HeaderMap;
use rand::RngCore;
use sha2::{Digest, Sha256};
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

/// Failed authentications, limited per client address **and token
/// prefix**: a stale browser tab retrying a revoked token is held back
/// without refusing the valid tokens of every other nurse behind the same
/// address (a ward's TLS proxy gives them all one). Refusals are counted in
/// memory and written to the audit log in aggregate ([`FailedAuth::take_refusals`]),
/// so a flood of bad requests cannot fill the disk or hold the store's writer.
#[derive(Debug, Default)]
pub struct FailedAuth {
    by_client: Mutex<HashMap<(IpAddr, String), (u32, Instant)>>,
    refusals: Mutex<HashMap<(IpAddr, &'static str), u64>>,
    /// Reverse proxies whose `X-Forwarded-For` is believed.
    trusted_proxies: Vec<Cidr>,
}

/// Failures allowed per client and token prefix per window before that
/// pair is refused without a look-up.
const MAX_FAILURES: u32 = 10;
const WINDOW: Duration = Duration::from_secs(60);
/// Pairs remembered at most (the maps are bounded).
const MAX_CLIENTS: usize = 10_000;

/// An address block (`10.0.0.0/8`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, bits) = match s.trim().split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s.trim(), None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            Some(b) => b
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
            None => max,
        };
        Ok(Self { net, bits })
    }
}

impl Cidr {
    fn contains(&self, ip: IpAddr) -> bool {
        let bits = u32::from(self.bits);
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// The part of a presented token the limiter keys on: enough to tell one
/// client's tokens apart, never enough to matter if logged.
fn prefix(token: Option<&str>) -> String {
    token.map_or_else(|| "-".to_string(), |t| t.chars().take(11).collect())
}

impl FailedAuth {
    /// A limiter that believes `X-Forwarded-For` from these proxies.
    pub fn with_trusted_proxies(trusted_proxies: Vec<Cidr>) -> Self {
        Self {
            trusted_proxies,
            ..Self::default()
        }
    }

    /// The client's address: the peer, or, when the peer is a trusted
    /// proxy, the nearest address in `X-Forwarded-For` that is not one.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let trusted = |ip: IpAddr| self.trusted_proxies.iter().any(|c| c.contains(ip));
        if !trusted(peer) {
            return peer;
        }
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse().ok())
            .collect();
        forwarded
            .iter()
            .rev()
            .copied()
            .find(|ip| !trusted(*ip))
            .or_else(|| forwarded.first().copied())
            .unwrap_or(peer)
    }

    fn blocked(&self, ip: IpAddr, prefix: &str) -> bool {
        let Ok(m) = self.by_client.lock() else {
            return false;
        };
        m.get(&(ip, prefix.to_string()))
            .is_some_and(|(n, since)| *n >= MAX_FAILURES && since.elapsed() < WINDOW)
    }

    fn failed(&self, ip: IpAddr, prefix: String) {
        let Ok(mut m) = self.by_client.lock() else {
            return;
        };
        if m.len() >= MAX_CLIENTS {
            m.retain(|_, (_, since)| since.elapsed() < WINDOW);
            if m.len() >= MAX_CLIENTS {
                // Still full: forget the lot rather than grow.
                m.clear();
            }
        }
        let e = m.entry((ip, prefix)).or_insert((0, Instant::now()));
        if e.1.elapsed() >= WINDOW {
            *e = (0, Instant::now());
        }
        e.0 = e.0.saturating_add(1);
    }

    fn refused(&self, ip: IpAddr, reason: &'static str) {
        metrics::counter!("wardwatch_api_auth_failures_total", "reason" => reason).increment(1);
        let Ok(mut m) = self.refusals.lock() else {
            return;
        };
        if m.len() >= MAX_CLIENTS && !m.contains_key(&(ip, reason)) {
            // Bounded: the overflow is counted under the unspecified address.
            *m.entry((IpAddr::from([0, 0, 0, 0]), reason)).or_insert(0) += 1;
            return;
        }
        *m.entry((ip, reason)).or_insert(0) += 1;
    }

    /// The refusals counted since the last call: (client, reason, count),
    /// for one aggregate audit entry each.
    pub fn take_refusals(&self) -> Vec<(IpAddr, &'static str, u64)> {
        let Ok(mut m) = self.refusals.lock() else {
            return Vec::new();
        };
        let mut v: Vec<_> = m.drain().map(|((ip, r), n)| (ip, r, n)).collect();
        v.sort();
        v
    }
}

/// The hash of the bearer token a request presents, if any.
pub(crate) fn presented_hash(headers: &HeaderMap) -> Option<Vec<u8>> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(token_hash)
}

/// The caller behind the request's bearer token. `ip` is the client as
/// [`FailedAuth::client_ip`] sees it.
pub(crate) async fn authenticate(
    state: &ApiState,
    headers: &HeaderMap,
    ip: IpAddr,
) -> Result<Principal, Problem> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let key = prefix(token);
    if state.failed.blocked(ip, &key) {
        state.failed.refused(ip, "rate_limited");
        return Err(Problem::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "Too many failed sign-ins",
            "too many failed authentications with this token from this address; wait a minute"
                .into(),
        ));
    }
    let Some(token) = token else {
        state.failed.failed(ip, key);
        state.failed.refused(ip, "missing");
        return Err(Problem::unauthorized(
            "an Authorization: Bearer token is required",
        ));
    };
    match state
        .store
        .authenticate(&token_hash(token), wardwatch_core::clock::engine::now())
        .await
    {
        Ok(Some(p)) => Ok(p),
        Ok(None) => {
            state.failed.failed(ip, key);
            state.failed.refused(ip, "invalid");
            Err(Problem::unauthorized(
                "the token is unknown, expired or revoked",
            ))
        }
        Err(e) => Err(Problem::unavailable(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_trusted_proxys_forwarded_address_is_believed() {
        let g = FailedAuth::with_trusted_proxies(vec![
            "127.0.0.1".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ]);
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "203.0.113.9, 198.51.100.7, 10.1.2.3".parse().unwrap(),
        );
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        let stranger: IpAddr = "192.0.2.1".parse().unwrap();
        // The nearest untrusted hop, not the client's own claim further left.
        assert_eq!(
            g.client_ip(proxy, &h),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(g.client_ip(stranger, &h), stranger);
        assert_eq!(FailedAuth::default().client_ip(proxy, &h), proxy);
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("not-an-ip".parse::<Cidr>().is_err());
        assert!("::1"
            .parse::<Cidr>()
            .unwrap()
            .contains("::1".parse().unwrap()));
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(stranger));
    }

    #[test]
    fn failures_of_one_token_never_block_another_from_the_same_address() {
        let g = FailedAuth::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..MAX_FAILURES {
            g.failed(ip, prefix(Some("ww_deadbeef0000")));
        }
        assert!(g.blocked(ip, &prefix(Some("ww_deadbeef0000"))));
        assert!(!g.blocked(ip, &prefix(Some("ww_0123456789ab"))));
        assert!(!g.blocked(ip, &prefix(None)));
        g.refused(ip, "invalid");
        g.refused(ip, "invalid");
        assert_eq!(g.take_refusals(), vec![(ip, "invalid", 2)]);
        assert!(g.take_refusals().is_empty());
    }
}
