//! A crowd simulator that produces the radio traffic a real crowd would, for trials,
//! demos and accuracy tests against a known truth.
//!
//! People arrive, move between zones and leave as a scenario file says ([`scenario`]); each
//! carries devices with documented behaviour ([`crowd::Model`], and a phone model whose
//! capability elements its probe requests carry, [`phone_model`]): probe bursts every
//! `burst_screen_on_s` / `burst_screen_off_s` seconds (±20 %), MACs that are global, new per
//! burst (iOS-like) or kept for `android_rotation_min` (Android-like), BLE advertisers whose
//! resolvable private address changes every `ble_rotation_min` and which a sensor catches
//! every `ble_interval_s`. A sensor hears a frame when the log-distance path loss leaves it
//! above its sensitivity: RSSI = -40 dBm - 27 log10(d / 1 m) + N(0, 4 dB), Wi-Fi heard from
//! -85 dBm (about 50 m), BLE from -88 dBm. Frames come out as they would from the sensor's
//! radio: [`Frame`]s in time order, or standard pcapng files ([`pcapng`]).

pub mod crowd;
pub mod pcapng;
pub mod phone_model;
pub mod scenario;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashSet};

use crowdflow_contract::identity::{ADDRESS_LEN, Medium};

use crowd::{Device, Model, Person, Rng, TruthRow, mix};
pub use scenario::Scenario;

/// Reference RSSI at 1 m, dBm.
const RSSI_1M: f64 = -40.0;
/// Path-loss exponent (crowded outdoor space).
const PATH_LOSS_EXPONENT: f64 = 2.7;
/// Shadowing noise, dB (standard deviation).
const SHADOWING_DB: f64 = 4.0;
/// Weakest Wi-Fi frame a sensor decodes, dBm.
const WIFI_SENSITIVITY: f64 = -85.0;
/// Weakest BLE advertisement a sensor decodes, dBm.
const BLE_SENSITIVITY: f64 = -88.0;
/// Probe requests per scan burst, and their spacing.
const BURST_FRAMES: i64 = 2;
const BURST_SPACING_US: i64 = 20_000;

/// One frame as a sensor's radio heard it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// When, unix microseconds (simulated time).
    pub t_us: i64,
    /// Index into the scenario's sensors.
    pub sensor: usize,
    /// Wi-Fi probe request or BLE advertisement.
    pub medium: Medium,
    /// Transmitter address, most significant byte first.
    pub address: [u8; ADDRESS_LEN],
    /// Received signal strength, dBm.
    pub rssi: i8,
    /// The sender's model ([`phone_model::MODELS`] index), for a probe request.
    pub phone: Option<u8>,
    /// The 802.11 sequence number (12 bits): counting on across an Android-like phone's
    /// frames, restarting at a random value with each address of an iOS-like one.
    pub seq: u16,
    /// The sender's scan burst (its counter), which a vendor element carries.
    pub burst: u32,
    /// The sending device (the simulator's truth; never on the air).
    pub device: u32,
}

impl Frame {
    /// The frame as the agent's decoder reports it, with the capability fingerprint its
    /// probe request's elements give ([`Frame::heard`] without it).
    pub fn sighting(&self) -> crowdflow_agent::frame::Sighting {
        crowdflow_agent::frame::Sighting {
            heard: self.heard(),
            fingerprint: self.phone.and_then(phone_model::fingerprint),
        }
    }

    /// The frame as the agent's decoder would report it.
    pub fn heard(&self) -> crowdflow_agent::frame::Heard {
        crowdflow_agent::frame::Heard {
            medium: self.medium,
            address: self.address,
            rssi: Some(self.rssi),
            // Wi-Fi: the locally administered bit; BLE: every simulated address is random.
            randomized: self.medium == Medium::Ble || self.address[0] & 0x02 != 0,
        }
    }
}

/// What one sensor heard over the whole run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Heard {
    /// Wi-Fi probe requests.
    pub wifi_frames: u64,
    /// BLE advertisements.
    pub ble_frames: u64,
    /// Distinct Wi-Fi addresses (0 unless [`Simulation::tally_addresses`] was asked).
    pub wifi_addresses: usize,
    /// Distinct BLE addresses (0 unless [`Simulation::tally_addresses`] was asked).
    pub ble_addresses: usize,
}

/// Frames and distinct addresses, Wi-Fi then BLE.
type SensorTally = (
    u64,
    u64,
    HashSet<[u8; ADDRESS_LEN]>,
    HashSet<[u8; ADDRESS_LEN]>,
);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Radio {
    Wifi,
    Ble,
}

/// A running simulation: frames come out in time order as it advances.
#[derive(Debug)]
pub struct Simulation {
    scenario: Scenario,
    people: Vec<Person>,
    devices: Vec<Device>,
    /// (time, device, radio) of every device's next transmission.
    due: BinaryHeap<Reverse<(i64, usize, Radio)>>,
    bursts: Vec<u32>,
    /// Every device's next sequence number.
    seqs: Vec<u16>,
    rng: Rng,
    now: i64,
    heard: Vec<SensorTally>,
    /// Whether `heard` keeps every distinct address ([`Simulation::tally_addresses`]).
    tally_addresses: bool,
}

impl Simulation {
    /// Builds the crowd and schedules every device's first transmission.
    pub fn new(scenario: Scenario) -> Simulation {
        let (people, devices) = crowd::build(&scenario);
        let mut rng = Rng::new(scenario.seed.wrapping_add(1));
        let mut due = BinaryHeap::new();
        for (i, d) in devices.iter().enumerate() {
            let Some(first) = people[d.person].segments.first() else {
                continue;
            };
            if d.wifi {
                let t = first.from
                    + (rng.range(0.0, scenario.population.burst_screen_off_s) * 1e6) as i64;
                due.push(Reverse((t, i, Radio::Wifi)));
            }
            if d.ble {
                let t =
                    first.from + (rng.range(0.0, scenario.population.ble_interval_s) * 1e6) as i64;
                due.push(Reverse((t, i, Radio::Ble)));
            }
        }
        Simulation {
            now: scenario.start.as_microsecond(),
            heard: vec![Default::default(); scenario.sensors.len()],
            tally_addresses: false,
            bursts: vec![0; devices.len()],
            seqs: devices.iter().map(|d| (d.key >> 52) as u16).collect(),
            scenario,
            people,
            devices,
            due,
            rng,
        }
    }

    /// The zone where `device`'s carrier is at `t_us` (unix microseconds), if in one (the
    /// truth behind a frame's [`Frame::device`]).
    pub fn device_zone(&self, device: u32, t_us: i64) -> Option<usize> {
        let d = self.devices.get(device as usize)?;
        self.people[d.person].at(t_us).map(|g| g.zone)
    }

    /// Keeps every distinct address each sensor hears from now on, for [`Simulation::heard`]
    /// (what a capture file holds). Off by default: a day's crowd sends millions of rotating
    /// addresses, and the demo's and the benchmark's live feeds, which never ask, held them
    /// all (the scale benchmark's process grew to 11 GB over a soak).
    pub fn tally_addresses(&mut self) {
        self.tally_addresses = true;
    }

    /// The scenario.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// Simulated time reached, unix microseconds.
    pub fn now(&self) -> i64 {
        self.now
    }

    /// Whether every transmission has been made.
    pub fn finished(&self) -> bool {
        self.due.is_empty()
    }

    /// Appends every frame heard before `until` (unix microseconds) to `out`, in time order.
    pub fn advance(&mut self, until: i64, out: &mut Vec<Frame>) {
        let first = out.len();
        while let Some(Reverse((t, device, radio))) = self.due.peek().copied() {
            if t >= until {
                break;
            }
            self.due.pop();
            self.transmit(t, device, radio, out);
        }
        self.now = self.now.max(until);
        out[first..].sort_by_key(|f| (f.t_us, f.sensor));
    }

    fn transmit(&mut self, t: i64, device: usize, radio: Radio, out: &mut Vec<Frame>) {
        let d = self.devices[device];
        let person = &self.people[d.person];
        if t >= person.leaves() {
            return;
        }
        let pop = &self.scenario.population;
        let Some(at) = person.at(t).map(|g| (g.x, g.y)) else {
            // Walking between zones: out of every sensor's range; try again later.
            self.due.push(Reverse((t + 30_000_000, device, radio)));
            return;
        };
        let (next, frames) = match radio {
            Radio::Wifi => {
                let burst = self.bursts[device];
                self.bursts[device] += 1;
                let address = wifi_address(&d, burst, t, pop.android_rotation_min);
                let seq = match d.model {
                    Model::IosLike => (mix(d.key ^ u64::from(burst)) & 0x0fff) as u16,
                    _ => self.seqs[device],
                };
                self.seqs[device] = (seq + BURST_FRAMES as u16) & 0x0fff;
                let interval = if self.rng.unit() < pop.screen_on {
                    pop.burst_screen_on_s
                } else {
                    pop.burst_screen_off_s
                };
                let frames: Vec<_> = (0..BURST_FRAMES)
                    .map(|k| {
                        let seq = (seq + k as u16) & 0x0fff;
                        (t + k * BURST_SPACING_US, Medium::Wifi, address, seq, burst)
                    })
                    .collect();
                (
                    t + (interval * self.rng.range(0.8, 1.2) * 1e6) as i64,
                    frames,
                )
            }
            Radio::Ble => {
                let address = ble_address(&d, t, pop.ble_rotation_min);
                let next = t + (pop.ble_interval_s * self.rng.range(0.8, 1.2) * 1e6) as i64;
                (next, vec![(t, Medium::Ble, address, 0, 0)])
            }
        };
        for (ft, medium, address, seq, burst) in frames {
            for (s, sensor) in self.scenario.sensors.iter().enumerate() {
                let distance = ((sensor.x - at.0).powi(2) + (sensor.y - at.1).powi(2)).sqrt();
                let rssi = RSSI_1M - 10.0 * PATH_LOSS_EXPONENT * distance.max(1.0).log10()
                    + SHADOWING_DB * self.rng.normal();
                let sensitivity = match medium {
                    Medium::Wifi => WIFI_SENSITIVITY,
                    Medium::Ble => BLE_SENSITIVITY,
                };
                if rssi < sensitivity {
                    continue;
                }
                let h = &mut self.heard[s];
                let (frames, addresses) = match medium {
                    Medium::Wifi => (&mut h.0, &mut h.2),
                    Medium::Ble => (&mut h.1, &mut h.3),
                };
                *frames += 1;
                if self.tally_addresses {
                    addresses.insert(address);
                }
                out.push(Frame {
                    t_us: ft,
                    sensor: s,
                    medium,
                    address,
                    rssi: rssi.round().clamp(-127.0, 0.0) as i8,
                    phone: d.phone.filter(|_| medium == Medium::Wifi),
                    seq,
                    burst,
                    device: device as u32,
                });
            }
        }
        if next < person.leaves() {
            self.due.push(Reverse((next, device, radio)));
        }
    }

    /// What each sensor heard so far, by sensor id.
    pub fn heard(&self) -> BTreeMap<String, Heard> {
        self.scenario
            .sensors
            .iter()
            .zip(&self.heard)
            .map(|(s, h)| {
                (
                    s.id.clone(),
                    Heard {
                        wifi_frames: h.0,
                        ble_frames: h.1,
                        wifi_addresses: h.2.len(),
                        ble_addresses: h.3.len(),
                    },
                )
            })
            .collect()
    }

    /// Who was in each zone in each minute.
    pub fn truth(&self) -> Vec<TruthRow> {
        crowd::truth(&self.scenario, &self.people)
    }

    /// People and devices in the crowd.
    pub fn size(&self) -> (usize, usize) {
        (self.people.len(), self.devices.len())
    }
}

/// What [`write_files`] wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// People and devices simulated.
    pub size: (usize, usize),
    /// Frames per sensor file.
    pub heard: BTreeMap<String, Heard>,
    /// Files written.
    pub files: Vec<std::path::PathBuf>,
}

/// Runs the whole scenario into `dir`: one `<sensor>.pcapng` per sensor, `truth.csv` (zone,
/// minute, persons, devices), `heard.csv` (what each sensor's file holds) and
/// `heard_minutes.csv` (the distinct Wi-Fi and BLE devices each sensor heard in each UTC
/// minute: the truth a sensor's own device estimate is judged against).
pub fn write_files(mut sim: Simulation, dir: &std::path::Path) -> std::io::Result<Written> {
    use std::io::{BufWriter, Write};
    std::fs::create_dir_all(dir)?;
    sim.tally_addresses();
    let mut files = Vec::new();
    let mut writers = Vec::new();
    for s in &sim.scenario.sensors {
        let path = dir.join(format!("{}.pcapng", s.id));
        writers.push(pcapng::PcapngWriter::new(BufWriter::new(
            std::fs::File::create(&path)?,
        ))?);
        files.push(path);
    }
    let end = sim.scenario.end.as_microsecond();
    let mut frames = Vec::new();
    let mut minutes = HeardMinutes::default();
    let mut per_minute = String::from("sensor,minute,wifi_devices,ble_devices\n");
    while sim.now() < end && !sim.finished() {
        let step = (sim.now() + 60_000_000).min(end);
        frames.clear();
        sim.advance(step, &mut frames);
        for f in &frames {
            writers[f.sensor].write(f)?;
            minutes.hear(f);
        }
        minutes.flush_before(step, &sim.scenario, &mut per_minute);
    }
    minutes.flush_before(i64::MAX, &sim.scenario, &mut per_minute);
    for w in writers {
        w.finish()?;
    }
    let mut truth = String::from("zone,minute,persons,devices\n");
    for r in sim.truth() {
        truth += &format!("{},{},{},{}\n", r.zone, r.minute, r.persons, r.devices);
    }
    let truth_path = dir.join("truth.csv");
    std::fs::File::create(&truth_path)?.write_all(truth.as_bytes())?;
    let heard = sim.heard();
    let mut csv = String::from("sensor,wifi_frames,ble_frames,wifi_addresses,ble_addresses\n");
    for (id, h) in &heard {
        csv += &format!(
            "{id},{},{},{},{}\n",
            h.wifi_frames, h.ble_frames, h.wifi_addresses, h.ble_addresses
        );
    }
    let heard_path = dir.join("heard.csv");
    std::fs::File::create(&heard_path)?.write_all(csv.as_bytes())?;
    let minutes_path = dir.join("heard_minutes.csv");
    std::fs::File::create(&minutes_path)?.write_all(per_minute.as_bytes())?;
    files.push(truth_path);
    files.push(heard_path);
    files.push(minutes_path);
    Ok(Written {
        size: sim.size(),
        heard,
        files,
    })
}

/// The devices each sensor heard per UTC minute, (Wi-Fi, BLE), until written out.
#[derive(Default)]
struct HeardMinutes(BTreeMap<(i64, usize), (HashSet<u32>, HashSet<u32>)>);

impl HeardMinutes {
    fn hear(&mut self, f: &Frame) {
        let minute = f.t_us.div_euclid(60_000_000) * 60;
        let (wifi, ble) = self.0.entry((minute, f.sensor)).or_default();
        match f.medium {
            Medium::Wifi => wifi.insert(f.device),
            Medium::Ble => ble.insert(f.device),
        };
    }

    /// Writes the minutes that end by `t_us` as CSV rows (frames come in time order).
    fn flush_before(&mut self, t_us: i64, scenario: &Scenario, out: &mut String) {
        let done: Vec<(i64, usize)> = self
            .0
            .keys()
            .take_while(|(minute, _)| (minute + 60).saturating_mul(1_000_000) <= t_us)
            .copied()
            .collect();
        for key in done {
            if let Some((wifi, ble)) = self.0.remove(&key) {
                let minute = jiff::Timestamp::from_second(key.0).unwrap_or_default();
                let sensor = &scenario.sensors[key.1].id;
                *out += &format!("{sensor},{minute},{},{}\n", wifi.len(), ble.len());
            }
        }
    }
}

fn six(x: u64) -> [u8; ADDRESS_LEN] {
    let b = x.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

/// A Wi-Fi source address: global for global phones, locally administered otherwise.
fn wifi_address(d: &Device, burst: u32, t: i64, rotation_min: f64) -> [u8; ADDRESS_LEN] {
    let epoch = match d.model {
        Model::GlobalPhone => 0,
        Model::IosLike => u64::from(burst),
        Model::AndroidLike | Model::Wearable => (t as f64 / (rotation_min * 60e6)) as u64,
    };
    let mut a = six(mix(d.key ^ mix(epoch.wrapping_add(1))));
    if d.model == Model::GlobalPhone {
        // A hardware address starts with its maker's IEEE-assigned prefix.
        let oui = PHONE_MAKER_OUIS[(d.key % PHONE_MAKER_OUIS.len() as u64) as usize];
        a[..3].copy_from_slice(&oui);
    } else {
        a[0] = (a[0] & 0xfc) | 0x02; // unicast, locally administered: a randomized MAC
    }
    a
}

/// Prefixes that phone makers (Apple, Samsung, Huawei, Xiaomi, Google, OnePlus) hold in the
/// IEEE's MA-L listing, which the agent's `frame::oui` tells hardware addresses by.
const PHONE_MAKER_OUIS: [[u8; 3]; 8] = [
    [0x00, 0x1c, 0xb3],
    [0xf0, 0xdb, 0xe2],
    [0x00, 0x16, 0x32],
    [0xb8, 0xbc, 0x5b],
    [0x00, 0x18, 0x82],
    [0x64, 0x09, 0x80],
    [0x3c, 0x5a, 0xb4],
    [0x94, 0x65, 0x2d],
];

/// A BLE resolvable private address (two top bits 01), new every rotation period.
fn ble_address(d: &Device, t: i64, rotation_min: f64) -> [u8; ADDRESS_LEN] {
    let phase = (d.key % 900) as f64 * 1e6;
    let epoch = ((t as f64 + phase) / (rotation_min * 60e6)) as u64;
    let mut a = six(mix(d.key.rotate_left(17) ^ mix(epoch.wrapping_add(7))));
    a[0] = (a[0] & 0x3f) | 0x40;
    a
}

#[cfg(test)]
mod tests;
