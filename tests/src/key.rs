//! The suite's salt authority key: every aggregator a scenario starts signs with it (the key
//! file is put beside the aggregator's config, where `salt.signing_key_file` looks by
//! default) and every agent pins its public key, as an installer would.

use std::path::Path;
use std::sync::OnceLock;

use crowdflow_contract::authority_key::{SigningKey, TrustedKeys};

/// The key, made once per test process.
pub fn authority_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate().expect("entropy"))
}

/// The keys an agent of the suite trusts.
pub fn trusted_keys() -> TrustedKeys {
    TrustedKeys::new(vec![authority_key().public_key()])
}

/// The agent config's `[salt]` section that pins the suite's key.
pub fn salt_section() -> String {
    format!(
        "[salt]\ntrusted_keys = [\"{}\"]\n",
        authority_key().public_key()
    )
}

/// Writes the suite's key beside the aggregator config `config`, unless a key is there.
pub fn install_beside(config: &Path) {
    let path = config
        .parent()
        .unwrap_or(Path::new("."))
        .join("salt-signing.key");
    if !path.exists() {
        std::fs::write(&path, authority_key().to_pem().as_bytes()).expect("signing key");
    }
}
