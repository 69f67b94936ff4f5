//! From a device address to the keyed hash that feeds a sketch.
//!
//! `blake3::keyed_hash(salt, domain || address)`, with a domain per medium so that a Wi-Fi and
//! a BLE address with the same bytes never collide. The address is borrowed, hashed and
//! forgotten: nothing here stores it, and [`DeviceHash`] cannot be printed or serialized,
//! so an individual hash cannot leave the agent by accident.

mod lanes;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::salt::Salt;

/// Length of a device address (EUI-48 for Wi-Fi, BD_ADDR for BLE).
pub const ADDRESS_LEN: usize = 6;

/// Bytes of the blake3 output kept as the device hash (128 bits: collisions are negligible).
const HASH_LEN: usize = 16;

/// The radio a device was heard on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Medium {
    /// IEEE 802.11.
    Wifi,
    /// Bluetooth Low Energy.
    Ble,
}

impl Medium {
    /// The domain-separation prefix hashed before the address.
    fn domain(self) -> &'static [u8; 16] {
        match self {
            Medium::Wifi => b"crowdflow/v1/wif",
            Medium::Ble => b"crowdflow/v1/ble",
        }
    }
}

/// The sketch kinds kept apart, because randomized addresses inflate naive counts.
///
/// `wifi` and `wifi_random` count transmitter addresses. `wifi_derandomized` counts the
/// physical Wi-Fi devices behind them: within one window the agent groups probe requests by
/// their capability fingerprint and counts each group as the largest number of its addresses
/// active at one moment; its members are [`hash_slot`] keys, (fingerprint, concurrency slot)
/// hashed under the epoch salt like addresses, so the zone's sensors and the minutes of an
/// occupancy window dedupe as for addresses. It is a second view of the same frames, never
/// to be added to `wifi` + `wifi_random`; its messages carry `frames: 0` (the frames are
/// counted under the Wi-Fi address kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Wi-Fi, globally administered address (a stable hardware MAC).
    Wifi,
    /// Wi-Fi, locally administered address (randomized MAC).
    WifiRandom,
    /// Bluetooth LE advertiser address.
    Ble,
    /// Wi-Fi, physical devices: randomized addresses de-randomized within one window by
    /// capability fingerprint (see the type's documentation).
    WifiDerandomized,
}

impl Kind {
    /// Every kind, in wire order.
    pub const ALL: [Kind; 4] = [
        Kind::Wifi,
        Kind::WifiRandom,
        Kind::Ble,
        Kind::WifiDerandomized,
    ];

    /// The kinds that count addresses: disjoint, so their counts add up to all addresses.
    pub const ADDRESSES: [Kind; 3] = [Kind::Wifi, Kind::WifiRandom, Kind::Ble];

    /// Classifies an address heard on `medium`: Wi-Fi addresses with the
    /// locally-administered bit (0x02 of the first octet) set are randomized.
    pub fn classify(medium: Medium, address: &[u8; ADDRESS_LEN]) -> Kind {
        match medium {
            Medium::Ble => Kind::Ble,
            Medium::Wifi if address[0] & 0x02 != 0 => Kind::WifiRandom,
            Medium::Wifi => Kind::Wifi,
        }
    }

    /// The wire name (`wifi`, `wifi_random`, `ble`, `wifi_derandomized`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Wifi => "wifi",
            Kind::WifiRandom => "wifi_random",
            Kind::Ble => "ble",
            Kind::WifiDerandomized => "wifi_derandomized",
        }
    }

    /// The medium a kind is heard on.
    pub fn medium(self) -> Medium {
        match self {
            Kind::Wifi | Kind::WifiRandom | Kind::WifiDerandomized => Medium::Wifi,
            Kind::Ble => Medium::Ble,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of the sketch kinds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown kind (expected wifi, wifi_random, ble or wifi_derandomized)")]
pub struct UnknownKind;

impl FromStr for Kind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or(UnknownKind)
    }
}

/// The salted hash of one device address. It lives only inside the agent, on its way into
/// a sketch: it has no `Debug` of its bytes, no `Display` and no serde. (`Eq` and `Hash`
/// let the agent key a window's in-memory state by it instead of by the address.)
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceHash([u8; HASH_LEN]);

impl DeviceHash {
    /// The hash bytes, for feeding a sketch.
    pub(crate) fn as_bytes(&self) -> &[u8; HASH_LEN] {
        &self.0
    }

    /// Eight of the hash's bytes as a key of an in-memory hash table (the hash is uniform,
    /// so they key as well as all sixteen, in less room). Like the hash itself, never output.
    pub fn table_key(&self) -> u64 {
        let mut head = [0u8; 8];
        head.copy_from_slice(&self.0[..8]);
        u64::from_le_bytes(head)
    }
}

impl fmt::Debug for DeviceHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeviceHash(..)")
    }
}

/// Hashes a device address under the epoch's salt; the address is only borrowed.
#[inline]
pub fn hash_device(salt: &Salt, medium: Medium, address: &[u8; ADDRESS_LEN]) -> DeviceHash {
    keyed(salt, medium.domain(), address)
}

/// Hashes many device addresses, each exactly as [`hash_device`] would, into `out` in order.
/// Sixteen at a time share the SIMD lanes of one compression where the CPU has AVX-512 or
/// AVX2, about six times the one-at-a-time rate (replay, #15); the addresses are only
/// borrowed.
pub fn hash_devices(
    salt: &Salt,
    devices: &[(Medium, [u8; ADDRESS_LEN])],
    out: &mut Vec<DeviceHash>,
) {
    hash_many(salt, devices, out, |block, (medium, address)| {
        block.push(medium.domain(), address);
    });
}

/// The keyed hash of each item, put into a lane by `push`, sixteen to a compression.
fn hash_many<T>(
    salt: &Salt,
    items: impl IntoIterator<Item = T>,
    out: &mut Vec<DeviceHash>,
    push: impl Fn(&mut lanes::Block, T),
) {
    let mut block = lanes::Block::new();
    let mut hashes = Vec::with_capacity(lanes::LANES);
    let mut flush = |block: &mut lanes::Block| {
        hashes.clear();
        lanes::hash_lanes(salt.key(), block, &mut hashes);
        out.extend(hashes.iter().map(|&h| DeviceHash(h)));
        block.clear();
    };
    for item in items {
        push(&mut block, item);
        if block.is_full() {
            flush(&mut block);
        }
    }
    if !block.is_empty() {
        flush(&mut block);
    }
}

/// Domain of [`hash_slot`] keys: Wi-Fi fingerprint slots.
const SLOT_DOMAIN: &[u8; 16] = b"crowdflow/v1/wfs";

/// Length of the in-memory capability fingerprint digest that [`hash_slot`] takes.
pub const FINGERPRINT_LEN: usize = 8;

/// Hashes the key of one physical Wi-Fi device of a window, (capability fingerprint,
/// concurrency slot), under the epoch's salt, exactly as an address is hashed (keyed
/// BLAKE3, 16 bytes kept), in a domain of its own. The fingerprint digest is only borrowed.
#[inline]
pub fn hash_slot(salt: &Salt, fingerprint: &[u8; FINGERPRINT_LEN], slot: u16) -> DeviceHash {
    keyed(salt, SLOT_DOMAIN, &slot_key(fingerprint, slot))
}

/// The bytes hashed after [`SLOT_DOMAIN`]: the fingerprint digest, then the slot (big-endian).
fn slot_key(fingerprint: &[u8; FINGERPRINT_LEN], slot: u16) -> [u8; FINGERPRINT_LEN + 2] {
    let mut key = [0u8; FINGERPRINT_LEN + 2];
    key[..FINGERPRINT_LEN].copy_from_slice(fingerprint);
    key[FINGERPRINT_LEN..].copy_from_slice(&slot.to_be_bytes());
    key
}

/// The keys of slots `0..slots` of one fingerprint, each exactly as [`hash_slot`] would
/// hash it, into `out` in slot order (sixteen to a compression, as [`hash_devices`]).
pub fn hash_slots(
    salt: &Salt,
    fingerprint: &[u8; FINGERPRINT_LEN],
    slots: u16,
    out: &mut Vec<DeviceHash>,
) {
    hash_many(salt, 0..slots, out, |block, slot| {
        block.push(SLOT_DOMAIN, &slot_key(fingerprint, slot));
    });
}

fn keyed(salt: &Salt, domain: &[u8; 16], key: &[u8]) -> DeviceHash {
    let mut input = [0u8; 32];
    input[..16].copy_from_slice(domain);
    let len = 16 + key.len().min(16);
    input[16..len].copy_from_slice(&key[..len - 16]);
    let hash = blake3::keyed_hash(salt.key(), &input[..len]);
    let mut out = [0; HASH_LEN];
    out.copy_from_slice(&hash.as_bytes()[..HASH_LEN]);
    DeviceHash(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::salt::SALT_LEN;

    const PHONE: [u8; 6] = [0x4c, 0x5e, 0x0c, 0xb0, 0x4f, 0xf7];

    fn salt(byte: u8) -> Salt {
        Salt::from_slice(&[byte; SALT_LEN]).expect("32 bytes")
    }

    #[test]
    fn same_address_and_salt_give_the_same_hash() {
        let s = salt(1);
        assert_eq!(
            hash_device(&s, Medium::Wifi, &PHONE).as_bytes(),
            hash_device(&s, Medium::Wifi, &PHONE).as_bytes()
        );
    }

    #[test]
    fn another_salt_gives_an_unlinkable_hash() {
        assert_ne!(
            hash_device(&salt(1), Medium::Wifi, &PHONE).as_bytes(),
            hash_device(&salt(2), Medium::Wifi, &PHONE).as_bytes()
        );
    }

    #[test]
    fn media_are_domain_separated() {
        let s = salt(1);
        assert_ne!(
            hash_device(&s, Medium::Wifi, &PHONE).as_bytes(),
            hash_device(&s, Medium::Ble, &PHONE).as_bytes()
        );
    }

    #[test]
    fn the_hash_is_the_documented_keyed_blake3() {
        let s = salt(9);
        let mut input = b"crowdflow/v1/wif".to_vec();
        input.extend_from_slice(&PHONE);
        let expected = blake3::keyed_hash(&[9; SALT_LEN], &input);
        assert_eq!(
            &hash_device(&s, Medium::Wifi, &PHONE).as_bytes()[..],
            &expected.as_bytes()[..16]
        );
    }

    #[test]
    fn slots_hash_like_addresses_in_their_own_domain() {
        let s = salt(3);
        let fp = [1, 2, 3, 4, 5, 6, 7, 8];
        let mut input = b"crowdflow/v1/wfs".to_vec();
        input.extend_from_slice(&fp);
        input.extend_from_slice(&[0, 2]);
        let expected = blake3::keyed_hash(&[3; SALT_LEN], &input);
        assert_eq!(
            &hash_slot(&s, &fp, 2).as_bytes()[..],
            &expected.as_bytes()[..16]
        );
        assert_ne!(
            hash_slot(&s, &fp, 0).as_bytes(),
            hash_slot(&s, &fp, 1).as_bytes()
        );
        assert_ne!(
            hash_slot(&s, &fp, 0).as_bytes(),
            hash_slot(&salt(4), &fp, 0).as_bytes()
        );
    }

    #[test]
    fn many_addresses_hash_as_one_at_a_time() {
        let s = salt(5);
        let devices: Vec<(Medium, [u8; 6])> = (0..40u8)
            .map(|i| {
                let medium = if i % 3 == 0 {
                    Medium::Ble
                } else {
                    Medium::Wifi
                };
                (medium, [i, 0x5e, i ^ 0x0c, 0xb0, i, 0xf7])
            })
            .collect();
        let mut many = Vec::new();
        hash_devices(&s, &devices, &mut many);
        assert_eq!(many.len(), devices.len());
        for ((medium, address), hash) in devices.iter().zip(&many) {
            assert_eq!(
                hash.as_bytes(),
                hash_device(&s, *medium, address).as_bytes()
            );
        }
    }

    #[test]
    fn many_slots_hash_as_one_at_a_time() {
        let s = salt(6);
        let fp = [9, 8, 7, 6, 5, 4, 3, 2];
        let mut many = Vec::new();
        hash_slots(&s, &fp, 37, &mut many);
        let one: Vec<_> = (0..37)
            .map(|slot| *hash_slot(&s, &fp, slot).as_bytes())
            .collect();
        assert_eq!(many.iter().map(|h| *h.as_bytes()).collect::<Vec<_>>(), one);
    }

    #[test]
    fn debug_of_a_hash_shows_no_bytes() {
        assert_eq!(
            format!("{:?}", hash_device(&salt(1), Medium::Ble, &PHONE)),
            "DeviceHash(..)"
        );
    }

    #[test]
    fn locally_administered_wifi_addresses_are_random_kind() {
        assert_eq!(Kind::classify(Medium::Wifi, &PHONE), Kind::Wifi);
        let random = [0xda, 0xa1, 0x19, 0x22, 0x69, 0x42];
        assert_eq!(Kind::classify(Medium::Wifi, &random), Kind::WifiRandom);
        assert_eq!(Kind::classify(Medium::Ble, &random), Kind::Ble);
    }

    #[test]
    fn kinds_round_trip_through_their_wire_names() {
        for kind in Kind::ALL {
            assert_eq!(kind.as_str().parse::<Kind>(), Ok(kind));
            assert_eq!(
                serde_json::to_string(&kind).expect("json"),
                format!("\"{kind}\"")
            );
        }
        assert_eq!("WIFI".parse::<Kind>(), Err(UnknownKind));
    }
}
