//! Secure by default, through the router: security headers on every answer, tokens in URLs
//! only where a header cannot be sent, failed logins counted, and the stream's subscriber cap.

use super::*;

async fn answer(state: &AppState<SqliteStore>, path: &str, token: Option<&str>) -> Response {
    let mut request = Request::get(path);
    if let Some(t) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    router(state.clone())
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("response")
}

fn header_of(response: &Response, name: header::HeaderName) -> &str {
    response
        .headers()
        .get(&name)
        .map_or("", |v| v.to_str().unwrap_or("(not ascii)"))
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let (state, _dir) = state().await;
    for (path, token) in [
        ("/api/v1/health", None),
        ("/api/v1/zones", None),
        ("/api/v1/zones", Some(VIEWER)),
        ("/api/v1/series?zones=nowhere", Some(PLANNER)),
        ("/api/v1/openapi.json", None),
        ("/metrics", None),
    ] {
        let r = answer(&state, path, token).await;
        assert_eq!(
            header_of(&r, header::X_CONTENT_TYPE_OPTIONS),
            "nosniff",
            "{path}"
        );
        assert_eq!(header_of(&r, header::CACHE_CONTROL), "no-store", "{path}");
        assert_eq!(
            header_of(&r, header::REFERRER_POLICY),
            "no-referrer",
            "{path}"
        );
        assert_eq!(
            header_of(&r, header::CONTENT_SECURITY_POLICY),
            "",
            "{path}: not HTML"
        );
    }
    // The start page, built or not, is HTML under the policy and not kept from caches'
    // revalidation rules of its own.
    let page = answer(&state, "/", None).await;
    assert!(header_of(&page, header::CONTENT_TYPE).starts_with("text/html"));
    let csp = header_of(&page, header::CONTENT_SECURITY_POLICY);
    assert!(
        csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(header_of(&page, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    assert_ne!(header_of(&page, header::CACHE_CONTROL), "no-store");
    // Unknown paths outside the API, too.
    let missing = answer(&state, "/nothing", None).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        header_of(&missing, header::X_CONTENT_TYPE_OPTIONS),
        "nosniff"
    );
}

#[tokio::test]
async fn the_dashboards_files_keep_their_caching() {
    let (state, _dir) = state().await;
    if !dashboard::built() {
        return;
    }
    let (_, page) = call(&state, "/", None).await;
    let script = page
        .split("src=\"/assets/")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page loads its script from /assets/");
    let r = answer(&state, &format!("/assets/{script}"), None).await;
    assert_eq!(
        header_of(&r, header::CACHE_CONTROL),
        "public, max-age=31536000, immutable"
    );
    assert_eq!(header_of(&r, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    assert_eq!(
        header_of(&answer(&state, "/", None).await, header::CACHE_CONTROL),
        "no-cache"
    );
}

#[tokio::test]
async fn the_pages_policy_admits_the_configured_tile_server() {
    let config =
        config_with("[dashboard]\ntile_url = \"https://tiles.example.org/{z}/{x}/{y}.png\"\n");
    let (state, _dir) = state_with(config).await;
    let page = answer(&state, "/", None).await;
    let csp = header_of(&page, header::CONTENT_SECURITY_POLICY);
    assert!(
        csp.contains("img-src 'self' data: https://tiles.example.org;"),
        "{csp}"
    );
}

#[tokio::test]
async fn a_token_in_the_url_works_only_for_the_stream_and_downloads() {
    let (state, _dir) = state().await;
    let series = format!("/api/v1/series?zones=neude&{DAY1}");
    // Where a header can be sent, the URL's token is refused, public endpoints included.
    for path in [
        format!("/api/v1/zones?token={VIEWER}"),
        format!("/api/v1/session?token={PLANNER}"),
        format!("{series}&token={PLANNER}"),
        format!("{series}&format=columns&token={PLANNER}"),
        "/api/v1/health?token=anything".to_owned(),
        "/?token=anything".to_owned(),
    ] {
        let (status, body) = call(&state, &path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
        let error: Value = serde_json::from_str(&body).expect("json");
        assert!(
            error["error"]
                .as_str()
                .is_some_and(|e| e.contains("Authorization header")),
            "{path}: {body}"
        );
        // Even beside a valid header: the token is in the URL all the same.
        let (status, _) = call(&state, &path, Some(ADMIN)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} with a header");
    }
    // Where a browser cannot send one: the stream (EventSource) and downloads.
    let csv = answer(
        &state,
        &format!("{series}&format=csv&token={PLANNER}"),
        None,
    )
    .await;
    assert_eq!(csv.status(), StatusCode::OK);
    assert!(header_of(&csv, header::CONTENT_TYPE).starts_with("text/csv"));
    let (status, _) = call(&state, "/api/v1/open-data?format=csv&token=x", None).await;
    assert_eq!(status, StatusCode::OK);
    let stream = answer(&state, &format!("/api/v1/stream?token={VIEWER}"), None).await;
    assert_eq!(stream.status(), StatusCode::OK);
    let csv_as_viewer = answer(&state, &format!("{series}&format=csv&token={VIEWER}"), None).await;
    assert_eq!(csv_as_viewer.status(), StatusCode::FORBIDDEN);
    let refused = state
        .metrics
        .http_auth_failures
        .with_label_values(&["token_in_query"])
        .get();
    assert_eq!(refused, 12);
}

#[tokio::test]
async fn failed_logins_are_counted_in_full() {
    let (state, _dir) = state().await;
    for _ in 0..20 {
        let (status, _) = call(&state, "/api/v1/zones", Some("guess")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = call(&state, "/api/v1/stream?token=guess", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The session's probe with a wrong token is a failed login too; no token is not.
    let _ = call(&state, "/api/v1/session", Some("guess")).await;
    let _ = call(&state, "/api/v1/session", None).await;
    let _ = call(&state, "/api/v1/zones", None).await;
    let failures = |reason: &str| {
        state
            .metrics
            .http_auth_failures
            .with_label_values(&[reason])
            .get()
    };
    assert_eq!(failures("unknown_token"), 22);
    // The log kept at most a burst of them.
    assert_eq!(
        state.auth_log.suppressed("unknown_token"),
        22 - u64::from(crowdflow_contract::log_limit::BURST)
    );
    let metrics = call(&state, "/metrics", None).await.1;
    assert!(
        metrics.contains("crowdflow_http_auth_failures_total{reason=\"unknown_token\"} 22"),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_stream_refuses_subscribers_beyond_its_cap_with_503_and_retry_after() {
    let (state, _dir) = state_with(config_with(
        "[http]\nmax_connections = 4\nmax_streams = 2\n",
    ))
    .await;
    let stream = format!("/api/v1/stream?token={VIEWER}");
    let first = answer(&state, &stream, None).await;
    let second = answer(&state, &stream, Some(VIEWER)).await;
    assert_eq!(
        (first.status(), second.status()),
        (StatusCode::OK, StatusCode::OK)
    );
    assert_eq!(state.metrics.http_streams.get(), 2);

    let refused = answer(&state, &stream, None).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header_of(&refused, header::RETRY_AFTER), "30");
    assert!(header_of(&refused, header::CONTENT_TYPE).starts_with("application/json"));
    assert_eq!(header_of(&refused, header::CACHE_CONTROL), "no-store");
    let body = axum::body::to_bytes(refused.into_body(), 1 << 16)
        .await
        .expect("body");
    let error: Value = serde_json::from_slice(&body).expect("json");
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|e| e.contains("http.max_streams = 2")),
        "{error}"
    );
    // Callers without a valid token learn nothing about the load.
    let (status, _) = call(&state, "/api/v1/stream?token=guess", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(state.metrics.http_streams_refused.get(), 1);

    // A subscriber that leaves frees its slot at once.
    drop(first);
    assert_eq!(state.metrics.http_streams.get(), 1);
    let again = answer(&state, &stream, None).await;
    assert_eq!(again.status(), StatusCode::OK);
    drop((second, again));
    assert_eq!(state.metrics.http_streams.get(), 0);
}
