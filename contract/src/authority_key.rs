//! The salt authority's signing key and the public keys agents and replicas pin.
//!
//! Who may publish on the salt topic is the broker's business and differs between brokers;
//! whether a salt counts must not be. So the authority signs every announcement and recovery
//! request with an Ed25519 key (RFC 8032, through `ring`, already in the tree for TLS), and an
//! agent or replica accepts one only when it verifies under a public key its own config pins.
//! A sensor's broker credentials are then worth nothing for planting a salt.
//!
//! Text forms: a public key is `ed25519:` followed by its 32 bytes in standard base64 (what
//! configs pin); a signing key file is PKCS#8 in PEM (`-----BEGIN PRIVATE KEY-----`), as
//! `crowdflow-aggregator salt-key new` writes it or `openssl genpkey -algorithm ed25519` does.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use zeroize::Zeroizing;

/// Length of an Ed25519 public key in bytes.
const PUBLIC_LEN: usize = 32;
/// Length of an Ed25519 signature in bytes.
pub const SIGNATURE_LEN: usize = 64;
/// The prefix of a public key's text form.
const PUBLIC_PREFIX: &str = "ed25519:";
const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

/// Why a key could not be made or read. Messages never contain key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The operating system's random source failed.
    #[error("the operating system's random source failed")]
    Entropy,
    /// A signing key file that is not an Ed25519 PKCS#8 PEM.
    #[error(
        "not an Ed25519 private key in PKCS#8 PEM ({0}); make one with `crowdflow-aggregator salt-key new FILE`"
    )]
    SigningKey(&'static str),
    /// A public key that is not `ed25519:` + 32 bytes of base64.
    #[error("not an Ed25519 public key ({0}); expected ed25519: followed by 44 base64 characters")]
    PublicKey(&'static str),
}

/// The authority's private key. Never printed; the PKCS#8 bytes are zeroized on drop.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    pkcs8: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("public", &self.public_key())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Result<SigningKey, KeyError> {
        let document =
            Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| KeyError::Entropy)?;
        SigningKey::from_pkcs8(document.as_ref())
    }

    /// A key from PKCS#8 DER (v1 as OpenSSL writes it, or v2 as `ring` does).
    pub fn from_pkcs8(der: &[u8]) -> Result<SigningKey, KeyError> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|_| KeyError::SigningKey("the DER is not an Ed25519 PKCS#8 key"))?;
        Ok(SigningKey {
            pair,
            pkcs8: Zeroizing::new(der.to_vec()),
        })
    }

    /// A key from the text of a PEM file.
    pub fn from_pem(text: &str) -> Result<SigningKey, KeyError> {
        let body = text
            .trim()
            .strip_prefix(PEM_BEGIN)
            .and_then(|rest| rest.trim_end().strip_suffix(PEM_END))
            .ok_or(KeyError::SigningKey("no BEGIN/END PRIVATE KEY lines"))?;
        let compact: Zeroizing<String> =
            Zeroizing::new(body.chars().filter(|c| !c.is_whitespace()).collect());
        let der = Zeroizing::new(
            BASE64
                .decode(compact.as_bytes())
                .map_err(|_| KeyError::SigningKey("the PEM body is not base64"))?,
        );
        SigningKey::from_pkcs8(&der)
    }

    /// The PEM text of this key, for a key file (zeroized when dropped).
    pub fn to_pem(&self) -> Zeroizing<String> {
        let encoded = Zeroizing::new(BASE64.encode(&*self.pkcs8));
        let mut pem = Zeroizing::new(String::with_capacity(encoded.len() + 80));
        pem.push_str(PEM_BEGIN);
        pem.push('\n');
        for line in encoded.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str(PEM_END);
        pem.push('\n');
        pem
    }

    /// The public half, to pin in agents' and replicas' configs.
    pub fn public_key(&self) -> PublicKey {
        let mut bytes = [0u8; PUBLIC_LEN];
        bytes.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(bytes)
    }

    /// A secret derived from the private key for `context` (BLAKE3's key derivation): what
    /// only this key's holder can compute, e.g. the aggregator's MQTT session id.
    pub fn derive_secret(&self, context: &str) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(blake3::derive_key(context, &self.pkcs8))
    }

    /// Signs `message` under a context string, so that a signature made for one kind of
    /// message can never be passed off as another kind.
    pub fn sign(&self, context: &str, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        let signed = Zeroizing::new(framed(context, message));
        let mut out = [0u8; SIGNATURE_LEN];
        out.copy_from_slice(self.pair.sign(&signed).as_ref());
        out
    }
}

/// An Ed25519 public key; its text form is `ed25519:BASE64`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; PUBLIC_LEN]);

impl PublicKey {
    /// Whether `signature` signs `message` under `context` with this key's private half.
    pub fn verifies(&self, context: &str, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(&framed(context, message), signature)
            .is_ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBLIC_PREFIX}{}", BASE64.encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<PublicKey, KeyError> {
        let encoded = s
            .trim()
            .strip_prefix(PUBLIC_PREFIX)
            .ok_or(KeyError::PublicKey("no ed25519: prefix"))?;
        let raw = BASE64
            .decode(encoded)
            .map_err(|_| KeyError::PublicKey("not base64"))?;
        let bytes: [u8; PUBLIC_LEN] = raw
            .try_into()
            .map_err(|_| KeyError::PublicKey("not 32 bytes"))?;
        Ok(PublicKey(bytes))
    }
}

/// The public keys of the authorities one agent or replica trusts (more than one for
/// replicas, and while a key is being replaced).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedKeys(Vec<PublicKey>);

impl TrustedKeys {
    /// The given keys.
    pub fn new(keys: Vec<PublicKey>) -> TrustedKeys {
        TrustedKeys(keys)
    }

    /// Parses the text forms, naming the position of a bad one.
    pub fn parse<S: AsRef<str>>(texts: &[S]) -> Result<TrustedKeys, (usize, KeyError)> {
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| t.as_ref().parse().map_err(|e| (i, e)))
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedKeys)
    }

    /// Adds a key (a replica trusts its own).
    pub fn with(mut self, key: PublicKey) -> TrustedKeys {
        if !self.0.contains(&key) {
            self.0.push(key);
        }
        self
    }

    /// The key among these that made `signature`, if any.
    pub fn signer(&self, context: &str, message: &[u8], signature: &[u8]) -> Option<PublicKey> {
        self.0
            .iter()
            .find(|k| k.verifies(context, message, signature))
            .copied()
    }

    /// How many keys are trusted.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The keys.
    pub fn iter(&self) -> impl Iterator<Item = &PublicKey> {
        self.0.iter()
    }
}

/// `context`, a zero byte, then the message: what is actually signed.
fn framed(context: &str, message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(context.len() + 1 + message.len());
    out.extend_from_slice(context.as_bytes());
    out.push(0);
    out.extend_from_slice(message);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_derived_secret_is_the_keys_alone_and_per_context() {
        let key = SigningKey::generate().expect("entropy");
        let again = SigningKey::from_pem(&key.to_pem()).expect("pem");
        assert_eq!(*key.derive_secret("a"), *again.derive_secret("a"), "stable");
        assert_ne!(
            *key.derive_secret("a"),
            *key.derive_secret("b"),
            "per context"
        );
        let other = SigningKey::generate().expect("entropy");
        assert_ne!(
            *key.derive_secret("a"),
            *other.derive_secret("a"),
            "per key"
        );
    }

    #[test]
    fn a_signature_verifies_only_under_its_key_context_and_message() {
        let key = SigningKey::generate().expect("entropy");
        let other = SigningKey::generate().expect("entropy");
        let sig = key.sign("ctx", b"message");
        assert!(key.public_key().verifies("ctx", b"message", &sig));
        assert!(!key.public_key().verifies("other ctx", b"message", &sig));
        assert!(!key.public_key().verifies("ctx", b"messagE", &sig));
        assert!(!other.public_key().verifies("ctx", b"message", &sig));
        assert!(!key.public_key().verifies("ctx", b"message", &sig[..63]));
    }

    #[test]
    fn keys_survive_their_text_forms() {
        let key = SigningKey::generate().expect("entropy");
        let back = SigningKey::from_pem(&key.to_pem()).expect("pem");
        assert_eq!(back.public_key(), key.public_key());
        let text = key.public_key().to_string();
        assert!(
            text.starts_with("ed25519:") && text.len() == 8 + 44,
            "{text}"
        );
        assert_eq!(text.parse::<PublicKey>(), Ok(key.public_key()));
    }

    #[test]
    fn an_openssl_key_is_read() {
        // `openssl genpkey -algorithm ed25519` (PKCS#8 v1, no public key inside).
        let pem = "-----BEGIN PRIVATE KEY-----\n\
                   MC4CAQAwBQYDK2VwBCIEIGOQH0mxmAESTYU1MVRrePbECzW1aWMBI6bMMclwAyUz\n\
                   -----END PRIVATE KEY-----\n";
        let key = SigningKey::from_pem(pem).expect("openssl pem");
        assert!(key.public_key().verifies("c", b"m", &key.sign("c", b"m")));
    }

    #[test]
    fn bad_keys_say_what_is_wrong_without_echoing_them() {
        for (text, expect) in [
            ("ed25519:AAAA", "not 32 bytes"),
            ("rsa:AAAA", "no ed25519: prefix"),
            ("ed25519:***", "not base64"),
        ] {
            let err = text.parse::<PublicKey>().expect_err(text);
            assert!(err.to_string().contains(expect), "{text}: {err}");
        }
        for (text, expect) in [
            ("hello", "BEGIN/END"),
            (
                "-----BEGIN PRIVATE KEY-----\n***\n-----END PRIVATE KEY-----",
                "not base64",
            ),
            (
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
                "not an Ed25519 PKCS#8",
            ),
        ] {
            let err = SigningKey::from_pem(text).expect_err(text);
            assert!(err.to_string().contains(expect), "{text}: {err}");
        }
        let (i, _) = TrustedKeys::parse(&["ed25519:x"]).expect_err("bad");
        assert_eq!(i, 0);
    }

    #[test]
    fn debug_shows_only_the_public_half() {
        let key = SigningKey::generate().expect("entropy");
        let shown = format!("{key:?}");
        assert!(shown.contains(&key.public_key().to_string()));
        assert!(!shown.contains(&BASE64.encode(&*key.pkcs8)[..20]));
    }
}
