//! Test harness: a real Mosquitto started from the project's config on a free
//! port, a fresh PostgreSQL database per test, the real `wardwatch` binary,
//! and a TCP proxy that can cut the engine off from PostgreSQL.
//!
//! Environment: `WARDWATCH_TEST_PG` (admin URL, default
//! `postgres://postgres@127.0.0.1:5432/postgres`).
//!
//! By concern: [`broker`], [`database`], [`engine`], and the receivers
//! ([`webhook`]); what every test needs (free ports, waiting,
//! unique names) is here.

#![allow(dead_code)]

mod broker;
mod database;
mod engine;
pub mod webhook;

#[allow(unused_imports)]
pub use broker::*;
#[allow(unused_imports)]
pub use database::*;
#[allow(unused_imports)]
pub use engine::*;
#[allow(unused_imports)]
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// Every wait in a test is bounded by this.
pub const WAIT: Duration = Duration::from_secs(60);

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A port that was free a moment ago. Only for servers that cannot bind
/// port 0 and report it (Mosquitto): [`Broker::start`] retries on another
/// port when the broker could not bind this one.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Polls `f` until it returns `Some`, or panics after [`WAIT`] with `what`.
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `text` with `from` replaced by `to`, failing the test unless `from`
/// occurs exactly once: a config edit that silently matched nothing would
/// leave the test running on the shipped settings.
pub fn edit(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "the edit {from:?} -> {to:?} must match exactly once"
    );
    text.replacen(from, to, 1)
}

pub fn unique(tag: &str) -> String {
    format!("{tag}-{}-{}", std::process::id(), rand::random::<u32>())
}

pub fn path_exists(p: &Path) -> bool {
    p.exists()
}

/// A child's stdout, line by line, on a channel (read on a thread).
pub fn stdout_lines(stdout: std::process::ChildStdout) -> tokio::sync::mpsc::Receiver<String> {
    use std::io::{BufRead, BufReader};
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(64);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.blocking_send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// The next line from [`stdout_lines`] (empty if none came in time).
pub async fn next_line(rx: &mut tokio::sync::mpsc::Receiver<String>) -> String {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}
