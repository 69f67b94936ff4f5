//! Organizationally unique identifiers (OUIs): whether a Wi-Fi address whose
//! locally-administered bit is clear is a hardware address.
//!
//! A hardware (universally administered) address starts with an OUI the IEEE Registration
//! Authority assigned to its maker. Random addresses are meant to set the locally-administered
//! bit, but some devices and anonymized captures leave it clear: half of one iPhone's 465
//! per-burst addresses in the shared probing-patterns captures, 694 of the 765 "global"
//! addresses of the brno-lab days. Of the 2^22 prefixes such an address can start with, 35,064
//! are assigned (0.8 %), so a random one almost never passes; the lab's own computers
//! (Intel, `dc:fb:48` and `40:ec:99`) do.
//!
//! The list (`sensor-agent/data/oui-ma-l.bin`, 105 KB: sorted 3-byte prefixes, no names) is
//! the IEEE's public MA-L listing of 2024, written by `scripts/oui_prefixes.py`. A maker's
//! newer prefix missing from it only makes its devices count as a random address does (grouped
//! by fingerprint), as before the list.

use std::sync::OnceLock;

use crowdflow_contract::identity::ADDRESS_LEN;

/// Every assigned MA-L prefix, sorted, 3 bytes each.
static ASSIGNED: &[u8] = include_bytes!("../../data/oui-ma-l.bin");

/// Whether `address` is a hardware address: the locally-administered and group bits clear,
/// and its first three bytes an OUI the IEEE assigned.
#[inline]
pub fn is_hardware(address: &[u8; ADDRESS_LEN]) -> bool {
    address[0] & 0x03 == 0 && is_assigned([address[0], address[1], address[2]])
}

/// Whether `prefix` (both low bits of its first byte clear) is in the IEEE's MA-L listing.
fn is_assigned(prefix: [u8; 3]) -> bool {
    let bit = bit_of(prefix);
    assigned()[bit / 64] & (1 << (bit % 64)) != 0
}

/// The 22 bits of a prefix whose first byte's two low bits are clear: its bit in the map.
fn bit_of(prefix: [u8; 3]) -> usize {
    (usize::from(prefix[0] >> 2) << 16) | (usize::from(prefix[1]) << 8) | usize::from(prefix[2])
}

/// The assigned prefixes as a bitmap (512 KiB, built once): one load per lookup, where a
/// binary search over the list cost a windowed replay of the benchmark capture a third of
/// its speed (two thirds of its addresses are global).
fn assigned() -> &'static [u64] {
    static MAP: OnceLock<Vec<u64>> = OnceLock::new();
    MAP.get_or_init(|| {
        let mut map = vec![0u64; (1 << 22) / 64];
        for p in ASSIGNED.chunks_exact(3) {
            // MA-L holds only universally administered individual prefixes.
            if p[0] & 0x03 == 0 {
                let bit = bit_of([p[0], p[1], p[2]]);
                map[bit / 64] |= 1 << (bit % 64);
            }
        }
        map
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_sorted_whole_prefixes() {
        assert_eq!(ASSIGNED.len() % 3, 0);
        assert!(ASSIGNED.len() / 3 > 30_000);
        assert!(
            ASSIGNED
                .chunks(3)
                .zip(ASSIGNED.chunks(3).skip(1))
                .all(|(a, b)| a < b)
        );
    }

    #[test]
    fn makers_prefixes_are_hardware_and_random_or_local_ones_are_not() {
        // Intel (the brno lab's computers), Apple, Samsung.
        for a in [
            [0xdc, 0xfb, 0x48, 1, 2, 3],
            [0x40, 0xec, 0x99, 1, 2, 3],
            [0x00, 0x17, 0xf2, 9, 9, 9],
            [0x00, 0x16, 0x32, 0, 0, 1],
        ] {
            assert!(is_hardware(&a), "{a:02x?}");
        }
        // The same with the locally-administered or the group bit set.
        assert!(!is_hardware(&[0xde, 0xfb, 0x48, 1, 2, 3]));
        assert!(!is_hardware(&[0xdd, 0xfb, 0x48, 1, 2, 3]));
        // The last prefix a hardware address can start with is unassigned.
        assert!(!is_hardware(&[0xfc, 0xff, 0xff, 1, 2, 3]));
        // Every listed universal individual prefix is in the map, and only those (the
        // listing holds 20 with a low bit set, which no hardware address can start with).
        let listed: std::collections::HashSet<&[u8]> =
            ASSIGNED.chunks(3).filter(|p| p[0] & 0x03 == 0).collect();
        assert!(listed.iter().all(|p| is_assigned([p[0], p[1], p[2]])));
        let mapped: u32 = assigned().iter().map(|w| w.count_ones()).sum();
        assert_eq!(mapped as usize, listed.len());
    }
}
