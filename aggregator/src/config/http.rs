//! `[http]`: where the API listens, and the role of requests without a token.

use std::net::SocketAddr;

use serde::Deserialize;

use crate::auth::Role;

use super::{FieldError, field};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    #[serde(default = "default_http")]
    listen: String,
    anonymous_role: Option<String>,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp {
            listen: default_http(),
            anonymous_role: None,
        }
    }
}

fn default_http() -> String {
    "127.0.0.1:8080".into()
}

pub(super) fn listen(raw: &RawHttp) -> Result<SocketAddr, FieldError> {
    raw.listen
        .parse()
        .map_err(|_| field("http.listen", "must be ADDRESS:PORT, e.g. 127.0.0.1:8080"))
}

pub(super) fn anonymous_role(raw: &RawHttp) -> Result<Option<Role>, FieldError> {
    raw.anonymous_role
        .as_deref()
        .map(|r| {
            Role::parse(r).ok_or_else(|| {
                field(
                    "http.anonymous_role",
                    "must be \"viewer\", \"planner\" or \"admin\"",
                )
            })
        })
        .transpose()
}
