//! `[[tokens]]`: API tokens by the hash of each (the token itself is never configured).

use serde::Deserialize;

use crate::auth::{ApiToken, Role};

use super::{FieldError, field};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawToken {
    name: String,
    role: String,
    blake3: String,
}

pub(super) fn tokens(raw: &[RawToken]) -> Result<Vec<ApiToken>, FieldError> {
    let mut out: Vec<ApiToken> = Vec::new();
    for (i, t) in raw.iter().enumerate() {
        let at = |f: &str| format!("tokens[{i}].{f}");
        let role = Role::parse(&t.role)
            .ok_or_else(|| field(at("role"), "must be \"viewer\", \"planner\" or \"admin\""))?;
        let hash = blake3::Hash::from_hex(t.blake3.trim()).map_err(|_| {
            field(
                at("blake3"),
                "must be 64 hex digits: the output of `crowdflow-aggregator hash-token` (never the token itself)",
            )
        })?;
        if out.iter().any(|o| o.hash == hash) {
            return Err(field(at("blake3"), "another token has this hash"));
        }
        out.push(ApiToken {
            name: t.name.clone(),
            role,
            hash,
        });
    }
    Ok(out)
}
