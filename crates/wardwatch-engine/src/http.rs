//! The HTTP listener: the operator endpoints (`GET /healthz`, `GET /metrics`)
//! and, when given, the API's routes.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use wardwatch_ingest::session::LinkStatus;
use wardwatch_store::Backend;

#[derive(Clone)]
struct AppState {
    metrics: PrometheusHandle,
    store: Backend,
    /// The ingest session's link to the broker.
    link: Arc<LinkStatus>,
}

/// Serves until `shutdown` is cancelled, over HTTPS when `tls` is given.
/// The listener is injected so tests can bind port 0.
pub async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    metrics: PrometheusHandle,
    store: Backend,
    link: Arc<LinkStatus>,
    api: Option<Router>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let upkeep = metrics.clone();
    let upkeep_stop = shutdown.clone();
    // The exporter needs periodic upkeep when rendered by hand, or histograms grow.
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = upkeep_stop.cancelled() => return,
                _ = tick.tick() => upkeep.run_upkeep(),
            }
        }
    });
    let mut app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(render_metrics))
        .with_state(AppState {
            metrics,
            store,
            link,
        });
    if let Some(api) = api {
        app = app.merge(api);
    }
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    match tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await
        }
        Some(acceptor) => {
            use axum::serve::ListenerExt;
            // `tap_io` gives the peer address as connect info, as for TCP.
            let listener = TlsListener::new(listener, acceptor).tap_io(|_| {});
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await
        }
    }
}

/// HTTPS server settings from PEM files: the certificate chain (leaf
/// first) and its private key. HTTP/1.1 only (the API's protocol).
pub fn tls_acceptor(
    cert_file: &std::path::Path,
    key_file: &std::path::Path,
) -> crate::error::Result<tokio_rustls::TlsAcceptor> {
    use crate::error::Context;
    use rustls_pki_types::pem::PemObject;
    use tokio_rustls::rustls::{self, ServerConfig};

    let certs =
        wardwatch_ingest::tls::load_certificates(cert_file).setting("http.tls_cert_file")?;
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(key_file)
        .setting(&format!("http.tls_key_file {}", key_file.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context(
            "http.tls_cert_file and http.tls_key_file do not make a certificate and its key",
        )?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Handshakes at once at most: beyond this, new connections wait (a flood
/// of half-open handshakes cannot take unbounded memory).
const MAX_HANDSHAKES: usize = 256;
/// A handshake not done by then is dropped (a slow or silent client).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS listener for axum: TCP accepts feed handshakes that run on their
/// own tasks, so one slow client never holds the others back.
struct TlsListener {
    ready: tokio::sync::mpsc::Receiver<(
        tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        std::net::SocketAddr,
    )>,
    local: std::net::SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    fn new(tcp: TcpListener, acceptor: tokio_rustls::TlsAcceptor) -> Self {
        let local = tcp
            .local_addr()
            .unwrap_or_else(|_| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        let permits = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        let accepting = tokio::spawn(async move {
            loop {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let (stream, peer) = match tcp.accept().await {
                    Ok(s) => s,
                    Err(e) => {
                        // Out of file descriptors and the like: back off.
                        tracing::warn!(message = "HTTPS accept failed.", error = %e);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            metrics::counter!("wardwatch_http_tls_handshake_failures_total")
                                .increment(1);
                            tracing::debug!(message = "TLS handshake failed.", peer = %peer, error = %e);
                        }
                        Err(_) => {
                            metrics::counter!("wardwatch_http_tls_handshake_failures_total")
                                .increment(1);
                        }
                    }
                });
            }
        });
        Self {
            ready,
            local,
            accepting,
        }
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept task ended (it never does while we live): wait
            // for shutdown instead of spinning.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Healthy means able to do the job: the database answers and the broker
/// has confirmed the device subscriptions (a message published before the
/// SUBACK may never reach us). Each part is reported on its own.
async fn healthz(State(s): State<AppState>) -> impl IntoResponse {
    let db = tokio::time::timeout(Duration::from_secs(2), s.store.ping()).await;
    let database = if matches!(db, Ok(Ok(_))) {
        "ok"
    } else {
        "unreachable"
    };
    let mqtt = if s.link.subscribed() {
        "subscribed"
    } else if s.link.connected() {
        "connected"
    } else {
        "disconnected"
    };
    let ok = database == "ok" && mqtt == "subscribed";
    let body = serde_json::json!({
        "status": if ok { "ok" } else { "degraded" },
        "database": database,
        "mqtt": mqtt,
    });
    (
        if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}

async fn render_metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}
