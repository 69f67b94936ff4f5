//! The replica's salt signing key on disk (`salt.signing_key_file`).
//!
//! The key is not the salt: it only proves who announced a salt, so it may live in a file like
//! a TLS key does (owner-only permissions). A missing file is created on first start, so a
//! fresh install signs from the outset and prints the public key its agents must pin.

use std::io::Write;
use std::path::{Path, PathBuf};

use crowdflow_contract::authority_key::{KeyError, SigningKey};

/// Why the signing key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file exists but cannot be read.
    #[error("cannot read the salt signing key {path} (salt.signing_key_file): {source}")]
    Read {
        /// The key file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file does not hold an Ed25519 key.
    #[error("{path} (salt.signing_key_file): {source}")]
    Invalid {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        source: KeyError,
    },
    /// A new key could not be made or written.
    #[error(
        "cannot create the salt signing key {path} (salt.signing_key_file; point it at a writable place or create the key with `crowdflow-aggregator salt-key new FILE`): {source}"
    )]
    Create {
        /// The key file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Whether [`load_or_create`] found the key or made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Read from the file.
    Loaded,
    /// Made now and written to the file.
    Created,
}

/// The key in `path`, made and written there (owner read/write only) if there is none.
pub fn load_or_create(path: &Path) -> Result<(SigningKey, Origin), KeyFileError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let key = SigningKey::from_pem(&text).map_err(|source| KeyFileError::Invalid {
                path: path.to_owned(),
                source,
            })?;
            Ok((key, Origin::Loaded))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((create(path)?, Origin::Created)),
        Err(source) => Err(KeyFileError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Makes a key and writes it to a new file `path` (never over an existing one).
pub fn create(path: &Path) -> Result<SigningKey, KeyFileError> {
    let failed = |source| KeyFileError::Create {
        path: path.to_owned(),
        source,
    };
    let key = SigningKey::generate().map_err(|e| failed(std::io::Error::other(e.to_string())))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(failed)?;
    file.write_all(key.to_pem().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(failed)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_key_is_created_owner_only_and_then_loaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("salt-signing.key");
        let (made, origin) = load_or_create(&path).expect("created");
        assert_eq!(origin, Origin::Created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o077, 0, "owner only: {mode:o}");
        }
        let (again, origin) = load_or_create(&path).expect("loaded");
        assert_eq!(origin, Origin::Loaded);
        assert_eq!(again.public_key(), made.public_key());
        assert!(create(&path).is_err(), "never overwritten");
    }

    #[test]
    fn a_bad_key_file_names_the_setting() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k");
        std::fs::write(&path, "not a key").expect("write");
        let err = load_or_create(&path).expect_err("invalid");
        assert!(err.to_string().contains("salt.signing_key_file"), "{err}");
        let err = load_or_create(&dir.path().join("no/such/dir/k")).expect_err("unwritable");
        assert!(err.to_string().contains("salt-key new"), "{err}");
    }
}
