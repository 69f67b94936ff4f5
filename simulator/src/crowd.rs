//! The simulated crowd: people with their paths through the zones and the devices they
//! carry, and the truth about who was where.

use std::collections::{BTreeMap, HashSet};

use jiff::Timestamp;

use super::scenario::Scenario;

/// A small deterministic generator (SplitMix64): the same seed gives the same crowd on every
/// platform and every version of this program, which general-purpose generators do not
/// promise.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x6372_6f77_6466_6c6f)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[a, b)`.
    pub fn range(&mut self, a: f64, b: f64) -> f64 {
        a + (b - a) * self.unit()
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.unit().max(f64::MIN_POSITIVE);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// SplitMix64's finalizer: a well-mixed 64-bit hash of `x`.
pub fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A stretch of a person's visit: in one zone, at one spot.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Zone index.
    pub zone: usize,
    /// Start, unix microseconds.
    pub from: i64,
    /// End (exclusive), unix microseconds.
    pub to: i64,
    /// Position, metres east.
    pub x: f64,
    /// Position, metres north.
    pub y: f64,
}

/// One visitor.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    /// Where they are, in time order, without gaps.
    pub segments: Vec<Segment>,
    /// Indexes into the device list.
    pub devices: Vec<usize>,
}

impl Person {
    /// Where the person is at `t`, if present.
    pub fn at(&self, t: i64) -> Option<&Segment> {
        self.segments.iter().find(|s| s.from <= t && t < s.to)
    }

    /// End of the visit.
    pub fn leaves(&self) -> i64 {
        self.segments.last().map_or(0, |s| s.to)
    }
}

/// How a device shows itself on the air.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// A phone probing with its global (hardware) MAC.
    GlobalPhone,
    /// A phone using a new random MAC for every scan burst (iOS-like).
    IosLike,
    /// A phone keeping a random MAC for some minutes (Android-like).
    AndroidLike,
    /// A BLE-only wearable with a rotating resolvable private address.
    Wearable,
}

/// One physical device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Device {
    /// Its carrier.
    pub person: usize,
    /// Behaviour.
    pub model: Model,
    /// Sends Wi-Fi probe requests.
    pub wifi: bool,
    /// Advertises on BLE.
    pub ble: bool,
    /// Private key from which its addresses derive.
    pub key: u64,
    /// Its model's index in [`crate::phone_model::MODELS`] (Wi-Fi devices): the capability
    /// elements of its probe requests.
    pub phone: Option<u8>,
}

fn spot(zone: &super::scenario::Zone, rng: &mut Rng) -> (f64, f64) {
    let r = zone.radius_m * rng.unit().sqrt();
    let a = rng.range(0.0, std::f64::consts::TAU);
    (zone.x + r * a.cos(), zone.y + r * a.sin())
}

fn micros(t: Timestamp) -> i64 {
    t.as_microsecond()
}

/// Salt of the phone model draw from a device's key.
const PHONE_DRAW: u64 = 0x7068_6f6e_655f_6d64;

/// `x` as a uniform number in [0, 1).
fn unit_of(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Builds the crowd of `s`: arrivals, then movements in their order, then devices.
pub fn build(s: &Scenario) -> (Vec<Person>, Vec<Device>) {
    let mut rng = Rng::new(s.seed);
    let end = micros(s.end);
    let mut people = Vec::new();
    for a in &s.arrivals {
        let zone = &s.zones[a.zone];
        for _ in 0..a.people {
            let arrive = rng.range(micros(a.from) as f64, micros(a.to) as f64) as i64;
            let stay = rng.range(a.stay_s[0], a.stay_s[1]) * 1e6;
            let leave = ((arrive as f64 + stay) as i64).min(end);
            if leave <= arrive {
                continue;
            }
            let (x, y) = spot(zone, &mut rng);
            people.push(Person {
                segments: vec![Segment {
                    zone: a.zone,
                    from: arrive,
                    to: leave,
                    x,
                    y,
                }],
                devices: Vec::new(),
            });
        }
    }
    for m in &s.moves {
        for p in &mut people {
            let t = rng.range(micros(m.from) as f64, micros(m.to) as f64) as i64;
            let moves = rng.unit() < m.share;
            let Some(i) = p.segments.iter().position(|g| g.from <= t && t < g.to) else {
                continue;
            };
            if !moves || p.segments[i].zone != m.from_zone {
                continue;
            }
            // Walking over takes a few minutes; the rest of the visit moves along.
            let walk = (rng.range(2.0, 8.0) * 60e6) as i64;
            let (x, y) = spot(&s.zones[m.to_zone], &mut rng);
            let rest = p.segments.split_off(i + 1);
            let old_to = p.segments[i].to;
            p.segments[i].to = t;
            let arrive = (t + walk).min(old_to);
            let shift = arrive - t;
            if arrive < old_to {
                p.segments.push(Segment {
                    zone: m.to_zone,
                    from: arrive,
                    to: old_to,
                    x,
                    y,
                });
            }
            // Later stretches keep their zones but start after the walk.
            for mut g in rest {
                g.from += shift;
                g.to = (g.to + shift).min(end);
                if g.from < g.to {
                    p.segments.push(g);
                }
            }
        }
    }
    let pop = &s.population;
    let mut devices = Vec::new();
    for (i, p) in people.iter_mut().enumerate() {
        let u = rng.unit();
        let model = if u < pop.global_mac {
            Model::GlobalPhone
        } else if u < pop.global_mac + pop.ios_like {
            Model::IosLike
        } else if u < pop.global_mac + pop.ios_like + pop.android_like {
            Model::AndroidLike
        } else {
            continue;
        };
        p.devices.push(devices.len());
        let ble = rng.unit() < pop.ble_phone;
        let key = rng.next_u64();
        // From the key, not the generator: the crowd's other draws stay as they were.
        let phone = crate::phone_model::pick(model, unit_of(mix(key ^ PHONE_DRAW)));
        devices.push(Device {
            person: i,
            model,
            wifi: true,
            ble,
            key,
            phone,
        });
        if rng.unit() < pop.second_device {
            p.devices.push(devices.len());
            devices.push(Device {
                person: i,
                model: Model::Wearable,
                wifi: false,
                ble: true,
                key: rng.next_u64(),
                phone: None,
            });
        }
    }
    (people, devices)
}

/// The truth of one zone in one minute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruthRow {
    /// Zone id.
    pub zone: String,
    /// Minute start.
    pub minute: Timestamp,
    /// Distinct people present at any time in the minute.
    pub persons: u32,
    /// Distinct devices they carried (with a radio that transmits).
    pub devices: u32,
    /// People who entered the zone in the minute.
    pub arrivals: u32,
    /// People who left the zone in the minute.
    pub departures: u32,
}

#[derive(Debug, Default)]
struct Minute {
    persons: HashSet<usize>,
    devices: u32,
    arrivals: u32,
    departures: u32,
}

/// Who was in each zone in each minute, and who came and went.
pub fn truth(s: &Scenario, people: &[Person]) -> Vec<TruthRow> {
    let mut per: BTreeMap<(usize, i64), Minute> = BTreeMap::new();
    for (i, p) in people.iter().enumerate() {
        for g in &p.segments {
            let first = g.from.div_euclid(60_000_000);
            let last = (g.to - 1).div_euclid(60_000_000);
            for m in first..=last {
                let e = per.entry((g.zone, m)).or_default();
                if e.persons.insert(i) {
                    e.devices += p.devices.len() as u32;
                }
            }
            per.entry((g.zone, first)).or_default().arrivals += 1;
            per.entry((g.zone, last)).or_default().departures += 1;
        }
    }
    per.into_iter()
        .filter_map(|((zone, m), e)| {
            Some(TruthRow {
                zone: s.zones[zone].id.clone(),
                minute: Timestamp::from_second(m * 60).ok()?,
                persons: e.persons.len() as u32,
                devices: e.devices,
                arrivals: e.arrivals,
                departures: e.departures,
            })
        })
        .collect()
}
