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

/// Serves until `shutdown` is cancelled. The listener is injected so tests can bind port 0.
pub async fn serve(
    listener: TcpListener,
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
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
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
