//! The HTTP interface: Prometheus metrics and health (the `/api/v1` queries arrive with the
//! API work, on this router).

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use crate::metrics::Metrics;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The aggregator's metrics.
    pub metrics: Metrics,
}

/// The router, testable without a server.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/health", get(health))
        .with_state(state)
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let connected = state.metrics.broker_connected.get() == 1;
    axum::Json(json!({
        "status": if connected { "ok" } else { "degraded" },
        "broker_connected": connected,
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

/// Binds `addr` (so a taken port fails the start, not later).
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// Serves the router on `listener` until the runtime stops.
pub async fn serve(listener: tokio::net::TcpListener, state: AppState) -> std::io::Result<()> {
    axum::serve(listener, router(state)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    async fn get_text(app: Router, path: &str) -> (StatusCode, String) {
        let response = app
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("response");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn metrics_and_health_are_served() {
        let metrics = Metrics::default();
        metrics.rejects.with_label_values(&["bad_json"]).inc_by(2);
        let app = router(AppState {
            metrics: metrics.clone(),
        });
        let (status, text) = get_text(app.clone(), "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(text.contains("crowdflow_ingest_rejects_total{reason=\"bad_json\"} 2"));
        let (status, body) = get_text(app.clone(), "/api/v1/health").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("\"degraded\""), "{body}");
        metrics.broker_connected.set(1);
        let (_, body) = get_text(app.clone(), "/api/v1/health").await;
        assert!(body.contains("\"ok\""), "{body}");
        let (status, _) = get_text(app, "/nowhere").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
