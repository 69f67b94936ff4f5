//! What every request and answer passes through, whatever its route: a token in the URL is
//! refused where a header can be sent, and every answer carries the security headers.
//!
//! - `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer` on everything: a
//!   browser never guesses a JSON or CSV answer to be HTML, and a stream URL with its token
//!   never leaves in a `Referer`.
//! - `Content-Security-Policy` on every HTML page (the dashboard, and the page of a binary
//!   built without it): only this origin, plus the map's tile server when one is configured.
//! - `Cache-Control: no-store` on `/api/` and `/metrics`: live numbers and role-dependent
//!   answers must not be kept by a browser or proxy. The dashboard's files keep their own
//!   caching (hashed names, cached for a year; the page revalidated).

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::auth::{TokenConfig, check_query_token};
use crate::config::Dashboard;

/// The content security policy of HTML pages: only this origin, plus the tile server if one
/// is configured (its origin is checked by the config: no quotes, spaces or semicolons).
pub(super) fn csp(dashboard: &Dashboard) -> HeaderValue {
    let tiles = dashboard
        .tile_origin()
        .map(|o| format!(" {o}"))
        .unwrap_or_default();
    HeaderValue::from_str(&format!(
        "default-src 'self'; img-src 'self' data:{tiles}; style-src 'self' 'unsafe-inline'; \
         connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ))
    // Unreachable with a validated tile URL; the policy without the tiles is stricter.
    .unwrap_or_else(|_| {
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        )
    })
}

/// Refuses (401) a token in the URL of a request that can send it as a header, on every
/// route, public ones included: the URL is already on its way into logs.
pub(super) async fn token_scope<S: Clone + Send + Sync + 'static>(
    State(state): State<AppState<S>>,
    request: Request,
    next: Next,
) -> Response {
    match check_query_token(&state, request.uri()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            let (parts, _) = request.into_parts();
            state.refused(&refusal, &parts);
            refusal.into_response()
        }
    }
}

/// Adds the security headers to every answer.
pub(super) async fn security_headers(
    State(csp): State<HeaderValue>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let dynamic = path.starts_with("/api/") || path == "/metrics";
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if dynamic {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if is_html(h) {
        h.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    response
}

fn is_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.trim_start().to_ascii_lowercase().starts_with("text/html"))
}
