//! The HTTP listener: the operator endpoints (`GET /healthz`, `GET /metrics`)
//! and, when given, the API's routes.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use wardwatch_store::Backend;

#[derive(Clone)]
struct AppState {
    metrics: PrometheusHandle,
    store: Backend,
}

/// Serves until `shutdown` is cancelled. The listener is injected so tests can bind port 0.
pub async fn serve(
    listener: TcpListener,
    metrics: PrometheusHandle,
    store: Backend,
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
        .with_state(AppState { metrics, store });
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

async fn healthz(State(s): State<AppState>) -> impl IntoResponse {
    let db = tokio::time::timeout(Duration::from_secs(2), s.store.ping()).await;
    match db {
        Ok(Ok(_)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"status":"ok","database":"ok"}"#,
        ),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"status":"degraded","database":"unreachable"}"#,
        ),
    }
}

async fn render_metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}
