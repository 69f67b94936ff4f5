//! The dashboard (`dashboard/`), built into the binary by `build.rs` and served at `/` with
//! everything it needs: event networks are often offline. Without a dashboard build the
//! start page says how to make one and where the numbers are meanwhile. Both pages get the
//! content security policy from `api/layers.rs`.

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::ApiError;

/// One built file.
#[derive(Debug)]
pub struct Asset {
    /// Path under `dashboard/dist`.
    pub path: &'static str,
    /// Its media type.
    pub content_type: &'static str,
    /// The file.
    pub body: &'static [u8],
    /// The same file gzip-compressed by the build, when it made one.
    pub gzip: Option<&'static [u8]>,
}

include!(concat!(env!("OUT_DIR"), "/dashboard_assets.rs"));

/// Whether this binary carries a dashboard build.
pub fn built() -> bool {
    find("index.html").is_some()
}

fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// One built file; the security headers (content security policy, nosniff) are added to
/// every answer by [`super::layers`].
fn serve(asset: &Asset, headers: &HeaderMap, immutable: bool) -> Response {
    let accepts_gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let (body, gzipped) = match asset.gzip {
        Some(gz) if accepts_gzip => (gz, true),
        _ => (asset.body, false),
    };
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    // Built file names carry a content hash, so they never change; the page itself must be
    // fetched fresh to pick up a new build.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if immutable {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        }),
    );
    if gzipped {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

/// `/`: the dashboard, or how to build it.
pub(super) async fn index(headers: HeaderMap) -> Response {
    match find("index.html") {
        Some(page) => serve(page, &headers, false),
        None => not_built().into_response(),
    }
}

/// `/assets/{file}`: the dashboard's scripts and styles.
pub(super) async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match find(&format!("assets/{file}")) {
        Some(a) => serve(a, &headers, true),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no dashboard file assets/{file} in this build"),
        )
        .into_response(),
    }
}

fn not_built() -> Html<&'static str> {
    Html(concat!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>crowdflow</title>",
        "<link rel=\"icon\" href=\"data:,\"></head>",
        "<body style=\"font-family:sans-serif;max-width:42em;margin:2em auto;line-height:1.5\">",
        "<h1>crowdflow aggregator</h1>",
        "<p><strong>This binary was built without the dashboard.</strong> Build it (Node.js 18 or ",
        "newer and npm; nothing is fetched at run time), then rebuild the aggregator:</p>",
        "<pre>cd dashboard &amp;&amp; npm ci &amp;&amp; npm run build &amp;&amp; cd ..\n",
        "cargo build --release -p crowdflow-aggregator</pre>",
        "<p><code>bash scripts/demo.sh</code> and <code>bash scripts/test.sh</code> do this for you.</p>",
        "<p>Meanwhile the numbers are served here:</p><ul>",
        "<li><a href=\"/api/v1/zones\">/api/v1/zones</a>: every zone, live (viewer)</li>",
        "<li><a href=\"/api/v1/stream\">/api/v1/stream</a>: live updates and alerts (Server-Sent Events)</li>",
        "<li><a href=\"/api/v1/alerts\">/api/v1/alerts</a>, <a href=\"/api/v1/open-data\">/api/v1/open-data</a>, ",
        "<a href=\"/api/v1/privacy\">/api/v1/privacy</a>, <a href=\"/api/v1/register\">/api/v1/register</a></li>",
        "<li><a href=\"/api/v1/openapi.json\">/api/v1/openapi.json</a>: the whole API; <a href=\"/metrics\">/metrics</a></li>",
        "</ul></body></html>"
    ))
}
