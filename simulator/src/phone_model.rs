//! Phone models: the capability elements a device's probe requests carry, in shares like a
//! European crowd's.
//!
//! A probe request's supported and extended rates and its HT, VHT and HE capability elements
//! stay the same across a phone's random addresses and differ between models and chipsets
//! (Vanhoef et al. 2016, "Why MAC address randomization is not enough"): what the agent's
//! de-randomization groups by. Phones of one model send the same elements, so a crowd holds
//! few distinct fingerprints, most of them shared by many phones; that is what the device
//! estimate must cope with. The element values follow the IEEE 802.11 layouts (HT: 26
//! octets, VHT: 12, HE: extension 35); the models' exact bits are illustrative, their
//! number and shares (iOS about half of a Dutch crowd, Samsung the largest Android maker)
//! what matters.

use std::sync::OnceLock;

use crowdflow_agent::frame::element::{
    EXTENDED_RATES, EXTENSION, HE_CAPABILITIES, HT_CAPABILITIES, SSID, SUPPORTED_RATES,
    VENDOR_SPECIFIC, VHT_CAPABILITIES,
};
use crowdflow_agent::frame::{Fingerprint, capability_fingerprint};

use crate::crowd::Model;

/// One model's capabilities.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PhoneModel {
    /// What it stands for.
    pub name: &'static str,
    /// How it randomizes its address.
    pub class: Model,
    /// Its share among the devices of its class.
    pub share: f64,
    /// HT capability information field.
    ht_info: u16,
    /// Spatial streams (1 or 2).
    streams: u8,
    /// VHT capability information, for Wi-Fi 5 and later.
    vht_info: Option<u32>,
    /// HE MAC capabilities' first octets, for Wi-Fi 6 and later.
    he_mac: Option<[u8; 3]>,
}

const fn model(
    name: &'static str,
    class: Model,
    share: f64,
    ht_info: u16,
    streams: u8,
    vht_info: Option<u32>,
    he_mac: Option<[u8; 3]>,
) -> PhoneModel {
    PhoneModel {
        name,
        class,
        share,
        ht_info,
        streams,
        vht_info,
        he_mac,
    }
}

/// Every model, by class; shares add up to 1 within a class.
pub const MODELS: [PhoneModel; 15] = [
    // iOS: one chipset per generation, so few fingerprints for half the crowd.
    model(
        "iPhone, Wi-Fi 6E",
        Model::IosLike,
        0.35,
        0x01ef,
        2,
        Some(0x0f80_7b32),
        Some([0x09, 0x00, 0x08]),
    ),
    model(
        "iPhone, Wi-Fi 6",
        Model::IosLike,
        0.45,
        0x01ef,
        2,
        Some(0x0f80_7932),
        Some([0x01, 0x00, 0x08]),
    ),
    model(
        "iPhone, Wi-Fi 5",
        Model::IosLike,
        0.15,
        0x01ad,
        2,
        Some(0x0f80_59b2),
        None,
    ),
    model(
        "iPhone SE",
        Model::IosLike,
        0.05,
        0x002d,
        1,
        Some(0x0f80_0032),
        None,
    ),
    // Android: more makers and chipsets.
    model(
        "Samsung Galaxy S",
        Model::AndroidLike,
        0.25,
        0x09ef,
        2,
        Some(0x0f81_91b2),
        Some([0x01, 0x08, 0x18]),
    ),
    model(
        "Samsung Galaxy A",
        Model::AndroidLike,
        0.20,
        0x012d,
        1,
        Some(0x0380_4032),
        Some([0x03, 0x00, 0x18]),
    ),
    model(
        "Google Pixel",
        Model::AndroidLike,
        0.12,
        0x016f,
        2,
        Some(0x0f80_3932),
        Some([0x05, 0x08, 0x10]),
    ),
    model(
        "Xiaomi",
        Model::AndroidLike,
        0.12,
        0x002d,
        1,
        Some(0x0390_0032),
        Some([0x0b, 0x00, 0x08]),
    ),
    model(
        "Oppo",
        Model::AndroidLike,
        0.08,
        0x006f,
        1,
        Some(0x0380_0072),
        None,
    ),
    model(
        "OnePlus",
        Model::AndroidLike,
        0.08,
        0x01ef,
        2,
        Some(0x0f80_31b2),
        Some([0x0d, 0x08, 0x18]),
    ),
    model("Motorola", Model::AndroidLike, 0.08, 0x010c, 1, None, None),
    model(
        "other Android",
        Model::AndroidLike,
        0.07,
        0x002c,
        1,
        None,
        None,
    ),
    // Devices probing with their hardware address: older phones, laptops, tablets.
    model(
        "older phone",
        Model::GlobalPhone,
        0.50,
        0x000c,
        1,
        None,
        None,
    ),
    model(
        "laptop",
        Model::GlobalPhone,
        0.30,
        0x09ef,
        2,
        Some(0x0f80_79b2),
        Some([0x05, 0x00, 0x10]),
    ),
    model(
        "tablet",
        Model::GlobalPhone,
        0.20,
        0x01ad,
        2,
        Some(0x0f80_41b2),
        None,
    ),
];

/// The model of a device of `class`, from `u` uniform in [0, 1): its index in [`MODELS`].
/// `None` for a class without models (BLE-only wearables).
pub fn pick(class: Model, u: f64) -> Option<u8> {
    let mut left = u;
    let mut last = None;
    for (i, m) in MODELS.iter().enumerate().filter(|(_, m)| m.class == class) {
        last = Some(i as u8);
        if left < m.share {
            return last;
        }
        left -= m.share;
    }
    last
}

/// The 802.11 header of a probe request from `sa` with sequence number `seq` (broadcast
/// destination and BSSID), 24 octets.
pub fn probe_header(sa: [u8; 6], seq: u16) -> Vec<u8> {
    let mut h = vec![0x40, 0x00, 0x00, 0x00];
    h.extend_from_slice(&[0xff; 6]);
    h.extend_from_slice(&sa);
    h.extend_from_slice(&[0xff; 6]);
    h.extend_from_slice(&(seq << 4).to_le_bytes());
    h
}

/// The fingerprint the agent takes of model `index`'s probe requests: computed by the
/// agent's own function from the bytes the pcapng files carry, once per model.
pub fn fingerprint(index: u8) -> Option<Fingerprint> {
    static FINGERPRINTS: OnceLock<Vec<Option<Fingerprint>>> = OnceLock::new();
    FINGERPRINTS
        .get_or_init(|| {
            MODELS
                .iter()
                .map(|m| {
                    let mut frame = probe_header([0x02, 0, 0, 0, 0, 1], 0);
                    frame.extend_from_slice(&m.elements(0));
                    capability_fingerprint(&frame)
                })
                .collect()
        })
        .get(usize::from(index))
        .copied()
        .flatten()
}

impl PhoneModel {
    /// The elements of one of its probe requests: a wildcard SSID (the fingerprint never
    /// reads it), the capability elements, and a vendor element whose payload changes with
    /// every burst (`burst`; some phones carry counters there: never part of the
    /// fingerprint either).
    pub fn elements(&self, burst: u32) -> Vec<u8> {
        let mut e = vec![SSID, 0];
        e.extend_from_slice(&[
            SUPPORTED_RATES,
            8,
            0x82,
            0x84,
            0x8b,
            0x96,
            0x0c,
            0x12,
            0x18,
            0x24,
        ]);
        e.extend_from_slice(&[EXTENDED_RATES, 4, 0x30, 0x48, 0x60, 0x6c]);
        e.extend_from_slice(&[HT_CAPABILITIES, 26]);
        e.extend_from_slice(&self.ht_info.to_le_bytes());
        e.push(0x17); // A-MPDU parameters
        let mut mcs = [0u8; 16];
        mcs[..usize::from(self.streams)].fill(0xff);
        e.extend_from_slice(&mcs);
        e.extend_from_slice(&[0; 7]); // extended capabilities, TxBF, ASEL
        if let Some(vht) = self.vht_info {
            e.extend_from_slice(&[VHT_CAPABILITIES, 12]);
            e.extend_from_slice(&vht.to_le_bytes());
            let map: u16 = if self.streams == 2 { 0xfffa } else { 0xfffe };
            for _ in 0..2 {
                e.extend_from_slice(&map.to_le_bytes());
                e.extend_from_slice(&0u16.to_le_bytes());
            }
        }
        if let Some(mac) = self.he_mac {
            e.extend_from_slice(&[EXTENSION, 22, HE_CAPABILITIES]);
            e.extend_from_slice(&mac);
            e.extend_from_slice(&[0; 3]);
            e.extend_from_slice(&[
                0x22, 0x20, 0x02, 0xc0, 0x0f, 0x03, 0x95, 0x18, 0x00, 0xcc, 0x00,
            ]);
            e.extend_from_slice(&[0xfa, 0xff, 0xfa, 0xff]);
        }
        e.extend_from_slice(&[VENDOR_SPECIFIC, 8, 0x00, 0x50, 0xf2, 0x08]);
        e.extend_from_slice(&burst.to_le_bytes());
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_per_class_and_every_class_picks_its_own() {
        for class in [Model::IosLike, Model::AndroidLike, Model::GlobalPhone] {
            let total: f64 = MODELS
                .iter()
                .filter(|m| m.class == class)
                .map(|m| m.share)
                .sum();
            assert!((total - 1.0).abs() < 1e-9, "{class:?}: {total}");
            for u in [0.0, 0.3, 0.7, 0.999_999] {
                let i = pick(class, u).expect("a model");
                assert_eq!(MODELS[usize::from(i)].class, class);
            }
        }
        assert_eq!(pick(Model::Wearable, 0.5), None);
    }

    #[test]
    fn every_model_has_a_fingerprint_of_its_own_whatever_its_address_and_burst() {
        let fps: Vec<Fingerprint> = (0..MODELS.len() as u8)
            .map(|i| fingerprint(i).expect("capability elements"))
            .collect();
        for (i, a) in fps.iter().enumerate() {
            for b in &fps[i + 1..] {
                assert_ne!(a, b, "{}", MODELS[i].name);
            }
            let mut other = probe_header([0x06, 1, 2, 3, 4, 5], 1234);
            other.extend_from_slice(&MODELS[i].elements(77));
            assert_eq!(capability_fingerprint(&other).as_ref(), Some(a));
        }
    }

    #[test]
    fn elements_are_well_formed_and_only_the_vendor_payload_changes() {
        for m in &MODELS {
            let (a, b) = (m.elements(1), m.elements(2));
            assert_eq!(a.len(), b.len());
            let differ: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
            assert!(differ.iter().all(|&i| i >= a.len() - 4), "{}", m.name);
            let mut rest = a.as_slice();
            while let [_, len, tail @ ..] = rest {
                rest = tail.get(usize::from(*len)..).expect("element fits");
            }
            assert!(rest.is_empty(), "{}: no trailing octet", m.name);
        }
    }
}
