//! Who may ask what: API tokens, their roles, and an axum extractor per role, so that a
//! handler's signature says which role it needs (`async fn series(_: Planner, ...)`).
//!
//! A token's BLAKE3 hash is all the config holds (`crowdflow-aggregator new-token` prints a
//! fresh token once). The token comes as `Authorization: Bearer T`, or as `?token=T` only where
//! a browser cannot set headers (EventSource, downloads; [`TokenConfig::query_token_allowed`]
//! says where): URLs end up in proxy and server logs, browser history and `Referer` headers,
//! so everywhere else a token in the URL is refused, with a message saying to use the header.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// What a bearer token may do; each role includes the ones before it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Live numbers and alerts (event safety crews).
    Viewer,
    /// History, flows, exports (traffic planners).
    Planner,
    /// Sensor and zone status, the config view (operators).
    Admin,
}

impl Role {
    /// Its name in config files and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Planner => "planner",
            Role::Admin => "admin",
        }
    }

    /// The role named `name` in a config file, if it is one.
    pub fn parse(name: &str) -> Option<Role> {
        match name {
            "viewer" => Some(Role::Viewer),
            "planner" => Some(Role::Planner),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// An API token: only its BLAKE3 hash is configured (`crowdflow-aggregator hash-token`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// Who holds it (for logs; never the token).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// BLAKE3 of the token.
    pub hash: blake3::Hash,
}

/// A fresh random secret (192 bits, hex) from the OS: API tokens, and the aggregator's own
/// password on its embedded broker.
pub fn new_secret() -> Result<String, crowdflow_contract::salt::SaltError> {
    use rand::TryRng;
    let mut bytes = [0u8; 24];
    rand::rngs::SysRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| crowdflow_contract::salt::SaltError::Entropy(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The hash a config stores for `token`.
pub fn hash_token(token: &str) -> blake3::Hash {
    blake3::hash(token.as_bytes())
}

/// "a viewer", "an admin".
fn article(role: &str) -> String {
    let an = role.starts_with(['a', 'e', 'i', 'o', 'u']);
    format!("{} {role}", if an { "an" } else { "a" })
}

/// Where the role extractors find the configured tokens (the API's state implements it).
pub trait TokenConfig {
    /// Every configured token.
    fn tokens(&self) -> &[ApiToken];
    /// The role of requests without a token (`None`: only public endpoints answer).
    fn anonymous_role(&self) -> Option<Role>;
    /// Whether `?token=` is read for a request to `uri` (where a browser cannot send the
    /// header); elsewhere it is refused. None by default.
    fn query_token_allowed(&self, uri: &Uri) -> bool {
        let _ = uri;
        false
    }
    /// Told of every refusal, to count and log it (never the token).
    fn refused(&self, refusal: &Refusal, parts: &Parts) {
        let _ = (refusal, parts);
    }
}

/// Why a request was refused its role; the message says what to do, never echoes the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No token, and anonymous callers do not have the role.
    #[error("{} token is required (Authorization: Bearer TOKEN)", article(.0.as_str()))]
    Missing(Role),
    /// No bearer token, an `Authorization` header of another scheme (`Basic ...`, a bare
    /// token), and anonymous callers do not have the role. Ignored, not refused, where
    /// anonymous callers may: a proxy's basic authentication passes its header through.
    #[error(
        "{} token is required as Authorization: Bearer TOKEN; the Authorization header sent is not of the Bearer scheme",
        article(.0.as_str())
    )]
    NotBearer(Role),
    /// The token matches no configured hash.
    #[error("unknown token")]
    Unknown,
    /// A token in the URL of a request that can send it as a header.
    #[error(
        "a token in the URL (?token=) is accepted only by the live stream and CSV downloads; \
         send it in the Authorization header (Authorization: Bearer TOKEN)"
    )]
    TokenInQuery,
    /// The token's role is below the one needed.
    #[error("this needs the {} role; the token has {}", need.as_str(), has.as_str())]
    Forbidden {
        /// The role the endpoint needs.
        need: Role,
        /// The token's role.
        has: Role,
    },
}

impl Refusal {
    /// 401 when the caller is unknown, 403 when known but not allowed.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::Missing(_)
            | Refusal::NotBearer(_)
            | Refusal::Unknown
            | Refusal::TokenInQuery => StatusCode::UNAUTHORIZED,
            Refusal::Forbidden { .. } => StatusCode::FORBIDDEN,
        }
    }

    /// Every label [`Refusal::failure`] gives.
    pub const FAILURES: [&'static str; 2] = ["unknown_token", "token_in_query"];

    /// The metric label of a refusal that is a failed attempt (a wrong token, a token where
    /// it leaks); `None` for the ordinary ones (no token yet, a known token's role too low).
    pub fn failure(&self) -> Option<&'static str> {
        match self {
            Refusal::Unknown => Some("unknown_token"),
            Refusal::TokenInQuery => Some("token_in_query"),
            Refusal::Missing(_) | Refusal::NotBearer(_) | Refusal::Forbidden { .. } => None,
        }
    }
}

/// The same JSON shape as every other API error (`{"error": "..."}`).
impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.to_string() });
        (self.status(), axum::Json(body)).into_response()
    }
}

/// The `token` query parameter of `uri`, decoded as handlers decode parameters.
pub fn query_token(uri: &Uri) -> Option<String> {
    Query::<HashMap<String, String>>::try_from_uri(uri)
        .ok()
        .and_then(|Query(mut params)| params.remove("token"))
}

/// Refuses a token in the URL of a request that may not carry one there.
pub fn check_query_token(config: &impl TokenConfig, uri: &Uri) -> Result<(), Refusal> {
    match query_token(uri) {
        Some(_) if !config.query_token_allowed(uri) => Err(Refusal::TokenInQuery),
        _ => Ok(()),
    }
}

/// The token a request presents: `Authorization: Bearer T`, else `?token=T` where allowed.
fn presented(config: &impl TokenConfig, parts: &Parts) -> Result<Option<String>, Refusal> {
    check_query_token(config, &parts.uri)?;
    let header = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // The scheme is case-insensitive (RFC 9110 section 11.1).
        .and_then(|v| {
            v.get(..7)
                .filter(|scheme| scheme.eq_ignore_ascii_case("bearer "))
                .map(|_| &v[7..])
        });
    Ok(match header {
        Some(token) => Some(token.to_owned()),
        None => query_token(&parts.uri),
    })
}

/// The caller's role if it is at least `need`; a refusal is told to `config` first.
pub fn authorize(config: &impl TokenConfig, parts: &Parts, need: Role) -> Result<Role, Refusal> {
    identify(config, parts, need).map(|caller| caller.role)
}

/// Who is calling: the role, and the name the config gives the token ("anonymous" without
/// one), for records of who did what (an acknowledged alert).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// What the caller may do.
    pub role: Role,
    /// The token's configured name, or "anonymous".
    pub name: String,
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.role.as_str())
    }
}

/// The caller if their role is at least `need`, with their token's name; a refusal is told
/// to `config` first.
pub fn identify(config: &impl TokenConfig, parts: &Parts, need: Role) -> Result<Caller, Refusal> {
    judge(config, parts, need).inspect_err(|refusal| config.refused(refusal, parts))
}

/// A caller with the viewer role or above, named: who acknowledges an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedViewer(pub Caller);

impl<S: TokenConfig + Send + Sync> FromRequestParts<S> for NamedViewer {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Refusal> {
        identify(state, parts, Role::Viewer).map(NamedViewer)
    }
}

fn judge(config: &impl TokenConfig, parts: &Parts, need: Role) -> Result<Caller, Refusal> {
    let Some(token) = presented(config, parts)? else {
        return config
            .anonymous_role()
            .filter(|r| *r >= need)
            .map(|role| Caller {
                role,
                name: "anonymous".to_owned(),
            })
            .ok_or_else(|| {
                if parts.headers.contains_key(header::AUTHORIZATION) {
                    Refusal::NotBearer(need)
                } else {
                    Refusal::Missing(need)
                }
            });
    };
    let hash = hash_token(token.trim());
    let known = config
        .tokens()
        .iter()
        .find(|t| t.hash == hash)
        .ok_or(Refusal::Unknown)?;
    if known.role < need {
        return Err(Refusal::Forbidden {
            need,
            has: known.role,
        });
    }
    Ok(Caller {
        role: known.role,
        name: known.name.clone(),
    })
}

/// Declares an extractor that admits callers with at least `$role` and holds their role.
macro_rules! role_extractor {
    ($(#[$doc:meta])* $name:ident, $role:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name(pub Role);

        impl<S: TokenConfig + Send + Sync> FromRequestParts<S> for $name {
            type Rejection = Refusal;

            async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Refusal> {
                authorize(state, parts, $role).map($name)
            }
        }
    };
}

role_extractor!(
    /// A caller with the viewer role or above (live numbers, alerts, the stream).
    Viewer,
    Role::Viewer
);
role_extractor!(
    /// A caller with the planner role or above (history, flows, exports).
    Planner,
    Role::Planner
);
role_extractor!(
    /// A caller with the admin role (sensor health, the config view).
    Admin,
    Role::Admin
);

#[cfg(test)]
mod tests {
    use super::*;

    struct Config {
        tokens: Vec<ApiToken>,
        anonymous: Option<Role>,
        refusals: std::sync::Mutex<Vec<Refusal>>,
    }

    impl TokenConfig for Config {
        fn tokens(&self) -> &[ApiToken] {
            &self.tokens
        }
        fn anonymous_role(&self) -> Option<Role> {
            self.anonymous
        }
        fn query_token_allowed(&self, uri: &Uri) -> bool {
            uri.path() == "/stream"
        }
        fn refused(&self, refusal: &Refusal, _: &Parts) {
            self.refusals
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(refusal.clone());
        }
    }

    fn config(anonymous: Option<Role>) -> Config {
        let token = |name: &str, role| ApiToken {
            name: name.into(),
            role,
            hash: hash_token(name),
        };
        Config {
            tokens: vec![token("v", Role::Viewer), token("p", Role::Planner)],
            anonymous,
            refusals: std::sync::Mutex::default(),
        }
    }

    fn parts(uri: &str, authorization: Option<&str>) -> Parts {
        let mut request = axum::http::Request::get(uri);
        if let Some(a) = authorization {
            request = request.header(header::AUTHORIZATION, a);
        }
        request.body(()).expect("request").into_parts().0
    }

    #[test]
    fn another_scheme_is_named_where_a_token_is_needed_and_ignored_where_not() {
        let c = config(Some(Role::Viewer));
        let basic = parts("/x", Some("Basic dXNlcjpwYXNz"));
        let refusal = authorize(&c, &basic, Role::Planner).expect_err("needs a token");
        assert_eq!(refusal, Refusal::NotBearer(Role::Planner));
        assert_eq!(refusal.status(), StatusCode::UNAUTHORIZED);
        assert!(refusal.to_string().contains("not of the Bearer scheme"));
        // A proxy's basic authentication in front of the public dashboard: anonymous.
        assert_eq!(authorize(&c, &basic, Role::Viewer), Ok(Role::Viewer));
    }

    #[test]
    fn a_bearer_header_wins_over_the_query_and_is_trimmed() {
        let c = config(None);
        let p = parts("/stream?token=v", Some("Bearer  p "));
        assert_eq!(
            presented(&c, &parts("/x", Some("bearer lower")))
                .ok()
                .flatten()
                .as_deref(),
            Some("lower"),
            "the scheme is case-insensitive"
        );
        assert_eq!(authorize(&c, &p, Role::Planner), Ok(Role::Planner));
        assert_eq!(
            authorize(&c, &parts("/stream?token=v", None), Role::Viewer),
            Ok(Role::Viewer)
        );
    }

    #[test]
    fn a_token_in_the_url_is_refused_where_a_header_can_be_sent() {
        let c = config(None);
        for (uri, header) in [
            ("/x?token=v", None),
            ("/x?token=v", Some("Bearer v")),
            ("/x?tok%65n=v", None),
            ("/x?a=1&token=", None),
        ] {
            let refusal = authorize(&c, &parts(uri, header), Role::Viewer).expect_err(uri);
            assert_eq!(refusal, Refusal::TokenInQuery, "{uri}");
            assert_eq!(refusal.status(), StatusCode::UNAUTHORIZED);
            assert!(
                refusal.to_string().contains("Authorization header"),
                "{refusal}"
            );
        }
        assert_eq!(
            check_query_token(&c, &"/stream?token=v".parse().expect("uri")),
            Ok(())
        );
        assert_eq!(
            check_query_token(&c, &"/x?a=1".parse().expect("uri")),
            Ok(())
        );
    }

    #[test]
    fn every_refusal_is_told_and_only_wrong_tokens_are_failures() {
        let c = config(None);
        let _ = authorize(&c, &parts("/x", None), Role::Viewer);
        let _ = authorize(&c, &parts("/x", Some("Bearer guess")), Role::Viewer);
        let _ = authorize(&c, &parts("/x", Some("Bearer v")), Role::Admin);
        let _ = authorize(&c, &parts("/x?token=v", None), Role::Viewer);
        let _ = authorize(&c, &parts("/x", Some("Bearer v")), Role::Viewer);
        let told = c
            .refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let failures: Vec<Option<&str>> = told.iter().map(Refusal::failure).collect();
        assert_eq!(
            failures,
            [None, Some("unknown_token"), None, Some("token_in_query")]
        );
    }

    #[test]
    fn refusals_say_why_with_401_or_403() {
        let c = config(None);
        let missing = authorize(&c, &parts("/x", None), Role::Planner).expect_err("no token");
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            missing.to_string(),
            "a planner token is required (Authorization: Bearer TOKEN)"
        );
        let unknown =
            authorize(&c, &parts("/x", Some("Bearer guess")), Role::Viewer).expect_err("unknown");
        assert_eq!(
            (unknown.status(), unknown.to_string()),
            (StatusCode::UNAUTHORIZED, "unknown token".to_owned())
        );
        let low = authorize(&c, &parts("/x", Some("Bearer v")), Role::Admin).expect_err("low");
        assert_eq!(low.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            low.to_string(),
            "this needs the admin role; the token has viewer"
        );
    }

    #[test]
    fn anonymous_callers_get_the_configured_role_and_no_more() {
        let c = config(Some(Role::Viewer));
        assert_eq!(
            authorize(&c, &parts("/x", None), Role::Viewer),
            Ok(Role::Viewer)
        );
        assert_eq!(
            authorize(&c, &parts("/x", None), Role::Planner),
            Err(Refusal::Missing(Role::Planner))
        );
        // A presented token is judged on its own, not upgraded to the anonymous role.
        assert_eq!(
            authorize(&c, &parts("/x", Some("Bearer guess")), Role::Viewer),
            Err(Refusal::Unknown)
        );
    }
}
