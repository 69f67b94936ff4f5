//! The per-epoch salt: the secret that keys device hashes for one epoch.
//!
//! The salt is what makes a sketch unlinkable once its epoch is over, so it is handled like a
//! key: 32 bytes from the operating system's CSPRNG, held in memory only, zeroized on drop,
//! and never printed or serialized by this type. Messages identify a salt by its
//! [`SaltFingerprint`], a keyed hash of a constant that reveals nothing about the salt.

use std::fmt;
use std::str::FromStr;

use rand::TryRng;
use rand::rngs::SysRng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length of a salt in bytes.
pub const SALT_LEN: usize = 32;

/// Length of a salt fingerprint in bytes (printed as twice as many hex digits).
pub const FINGERPRINT_LEN: usize = 8;

/// The constant whose keyed hash is the fingerprint.
const FINGERPRINT_CONTEXT: &[u8] = b"crowdflow/v1 salt fingerprint";

/// Errors of salt handling.
#[derive(Debug, thiserror::Error)]
pub enum SaltError {
    /// The operating system's random source failed.
    #[error("the system random source failed: {0}")]
    Entropy(String),
    /// A salt of the wrong length was offered.
    #[error("a salt is {SALT_LEN} bytes, got {0}")]
    Length(usize),
    /// A fingerprint was not 16 hex digits.
    #[error("a salt fingerprint is {} hex digits", FINGERPRINT_LEN * 2)]
    Fingerprint,
}

/// A 32-byte secret that keys the device hashes of one epoch.
///
/// No `Clone`, `Debug` of the bytes, `Display` or serde: the only ways out are
/// [`Salt::fingerprint`] and the salt message codec in [`crate::wire`].
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Salt([u8; SALT_LEN]);

impl Salt {
    /// Draws a fresh salt from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, SaltError> {
        let mut salt = Salt([0; SALT_LEN]);
        SysRng
            .try_fill_bytes(&mut salt.0)
            .map_err(|e| SaltError::Entropy(e.to_string()))?;
        Ok(salt)
    }

    /// Copies a salt out of a received buffer; the caller zeroizes the buffer.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, SaltError> {
        let array: [u8; SALT_LEN] = bytes
            .try_into()
            .map_err(|_| SaltError::Length(bytes.len()))?;
        Ok(Salt(array))
    }

    /// The fingerprint that names this salt in messages and storage.
    pub fn fingerprint(&self) -> SaltFingerprint {
        let hash = blake3::keyed_hash(&self.0, FINGERPRINT_CONTEXT);
        let mut fp = [0; FINGERPRINT_LEN];
        fp.copy_from_slice(&hash.as_bytes()[..FINGERPRINT_LEN]);
        SaltFingerprint(fp)
    }

    /// The key bytes, for the hashing and the salt codec inside this crate only.
    pub(crate) fn key(&self) -> &[u8; SALT_LEN] {
        &self.0
    }
}

impl fmt::Debug for Salt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Salt(fp={})", self.fingerprint())
    }
}

/// A public name for a salt: the first 8 bytes of `blake3::keyed_hash(salt, constant)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SaltFingerprint([u8; FINGERPRINT_LEN]);

impl SaltFingerprint {
    /// The raw fingerprint bytes.
    pub fn as_bytes(&self) -> &[u8; FINGERPRINT_LEN] {
        &self.0
    }
}

impl fmt::Display for SaltFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for SaltFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SaltFingerprint({self})")
    }
}

impl FromStr for SaltFingerprint {
    type Err = SaltError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.as_bytes();
        if digits.len() != FINGERPRINT_LEN * 2 {
            return Err(SaltError::Fingerprint);
        }
        let mut fp = [0; FINGERPRINT_LEN];
        for (byte, pair) in fp.iter_mut().zip(digits.chunks_exact(2)) {
            *byte = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
        }
        Ok(SaltFingerprint(fp))
    }
}

fn hex_value(digit: u8) -> Result<u8, SaltError> {
    match digit {
        b'0'..=b'9' => Ok(digit - b'0'),
        b'a'..=b'f' => Ok(digit - b'a' + 10),
        b'A'..=b'F' => Ok(digit - b'A' + 10),
        _ => Err(SaltError::Fingerprint),
    }
}

impl Serialize for SaltFingerprint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SaltFingerprint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <&str>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_salts_differ_and_have_distinct_fingerprints() {
        let a = Salt::generate().expect("entropy");
        let b = Salt::generate().expect("entropy");
        assert_ne!(a.key(), b.key());
        assert_ne!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn debug_shows_the_fingerprint_and_never_the_bytes() {
        let salt = Salt::from_slice(&[0xAB; SALT_LEN]).expect("32 bytes");
        let shown = format!("{salt:?}");
        assert!(shown.starts_with("Salt(fp="), "{shown}");
        assert!(!shown.to_lowercase().contains("abab"), "{shown}");
        assert!(!shown.contains("171"), "{shown}");
    }

    #[test]
    fn fingerprint_is_not_a_prefix_of_the_salt() {
        let salt = Salt::from_slice(&[7; SALT_LEN]).expect("32 bytes");
        assert_ne!(
            &salt.fingerprint().as_bytes()[..],
            &salt.key()[..FINGERPRINT_LEN]
        );
    }

    #[test]
    fn fingerprint_round_trips_through_hex() {
        let fp = Salt::generate().expect("entropy").fingerprint();
        let text = fp.to_string();
        assert_eq!(text.len(), 16);
        assert_eq!(text.parse::<SaltFingerprint>().expect("hex"), fp);
        assert_eq!(
            text.to_uppercase().parse::<SaltFingerprint>().expect("hex"),
            fp
        );
    }

    #[test]
    fn malformed_fingerprints_are_rejected() {
        for bad in [
            "",
            "abc",
            "0123456789abcdeg",
            "0123456789abcdef0",
            "é123456789abcde",
        ] {
            assert!(bad.parse::<SaltFingerprint>().is_err(), "{bad}");
        }
    }

    #[test]
    fn salts_of_the_wrong_length_are_rejected() {
        assert!(matches!(
            Salt::from_slice(&[0; 31]),
            Err(SaltError::Length(31))
        ));
        assert!(matches!(
            Salt::from_slice(&[0; 33]),
            Err(SaltError::Length(33))
        ));
    }
}
