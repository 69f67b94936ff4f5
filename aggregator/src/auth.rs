//! Who may ask what: API tokens, their roles, and an axum extractor per role, so that a
//! handler's signature says which role it needs (`async fn series(_: Planner, ...)`).
//!
//! A token's BLAKE3 hash is all the config holds (`crowdflow-aggregator new-token` prints a
//! fresh token once). The token comes as `Authorization: Bearer T`, or as `?token=T` where a
//! browser cannot set headers (EventSource, downloads).

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
