//! Offline counting of capture files: `crowdflow-agent replay`.
//!
//! Uses a fresh random salt that is dropped at the end, so the output is a count and
//! nothing else: installers and researchers can check what the agent would report for a
//! capture without any broker or aggregator.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crowdflow_contract::identity::{ADDRESS_LEN, DeviceHash, Kind, Medium, hash_devices};
use crowdflow_contract::salt::{Salt, SaltError};
use crowdflow_contract::sketch::{Estimate, Precision};
use crowdflow_contract::window::{Window, WindowLength};
use jiff::Timestamp;
use serde::Serialize;

use crate::capture::file::mapped::MappedFile;
use crate::capture::file::{CaptureReader, FileError};
use crate::counting::devices::{
    MIN_CADENCE_ADDRESSES, MIN_CADENCE_ADDRESSES_SCANS, RssiGate, ScanCadence,
};
use crate::counting::sketches::{KindSketches, KindUnion, WindowCount, is_grouped_hardware};
use crate::counting::tally::Tally;
use crate::frame::SUPPORTED;
use crate::frame::{self, FcsRule, FramePolicy, Skip};

/// How fast to replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pace {
    /// As fast as possible.
    #[default]
    Fast,
    /// At the speed the frames were recorded (for live-like feeds).
    Recorded,
}

/// Why one file could not be (fully) replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The file cannot be opened.
    #[error("{path}: cannot open: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a readable capture, or breaks off.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: FileError,
    },
    /// No packet of the file is of a supported link type.
    #[error(
        "{path}: unsupported link type {links}: nothing in the file can be counted; supported are {SUPPORTED}"
    )]
    LinkType {
        /// The file.
        path: PathBuf,
        /// Its link types, named ("1 (ETHERNET)").
        links: String,
    },
    /// No salt could be drawn.
    #[error("cannot draw a salt: {0}")]
    Salt(#[from] SaltError),
}

impl ReplayError {
    /// Whether the file was cut after its header (so some records were read).
    fn read_any(&self) -> bool {
        matches!(self, ReplayError::File { source: FileError::Truncated { offset, .. }, .. } if *offset > 0)
    }
}

/// The outcome of replaying one or more files.
#[derive(Debug, Serialize)]
pub struct ReplayReport {
    /// Frames read.
    pub frames: u64,
    /// Frames counted, per kind.
    pub counted: BTreeMap<Kind, u64>,
    /// Frames skipped, per reason (non-zero only).
    pub skipped: BTreeMap<&'static str, u64>,
    /// Packets skipped as `unsupported_link_type`, per link type ("1 (ETHERNET)"): the
    /// other interfaces of a multi-interface pcapng (`dumpcap -i eth0 -i wlan0mon`,
    /// `mergecap`, Kismet).
    pub skipped_link_types: BTreeMap<String, u64>,
    /// Distinct transmitter addresses among counted frames, with 2-sigma bounds.
    pub distinct: BTreeMap<Kind, Estimate>,
    /// Wall time of the replay.
    pub elapsed_s: f64,
    /// Peak resident memory of the process in MiB (Linux; absent elsewhere).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rss_mib: Option<f64>,
    /// Files that could not be read, with the reason (the command then exits non-zero).
    pub errors: Vec<String>,
    /// Files read up to a cut-off last record (a capture stopped mid-write): their frames
    /// are counted, the cut record is skipped as `capture_truncated`.
    pub warnings: Vec<String>,
    /// With `--window`: the signal gate (dBm) of the device estimate, learned from all the
    /// replayed Wi-Fi frames (the installation's history), or the `--min-rssi` given; null
    /// without a gate (no far mode heard) or without `--window`.
    pub device_gate_dbm: Option<i8>,
    /// With `--window`: the scan cadence of the device estimate (scans of one device per
    /// minute), learned from the recurring random addresses of all the replayed windows; null
    /// before 100 of them (crowd minutes are then not read) or without `--window`.
    pub scan_cadence: Option<f64>,
    /// With `--window`: the counts of every UTC-aligned window that heard a frame, in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub windows: Option<Vec<WindowReport>>,
    /// Stopped by [`interrupt`] (Ctrl-C): the counts are of the frames read before it.
    pub interrupted: bool,
}

/// The counts of one window.
#[derive(Debug, Serialize)]
pub struct WindowReport {
    /// First instant of the window (UTC).
    pub start: Timestamp,
    /// First instant after it.
    pub end: Timestamp,
    /// Frames of the window: read, counted per kind, skipped per reason.
    pub frames: WindowFrames,
    /// Distinct addresses per kind, and physical Wi-Fi devices (`wifi_derandomized`).
    pub distinct: BTreeMap<Kind, Estimate>,
    /// Devices: `wifi` the physical Wi-Fi device estimate, `ble` the distinct BLE addresses.
    pub devices: Devices,
    /// The replayed frames, all files together, begin or end inside the window (a capture
    /// started, stopped, was cut or interrupted in it), or a silence of [`PAUSE`] or more
    /// does (a paused capture): its counts are of part of the window.
    pub partial: bool,
}

/// Frames of one window.
#[derive(Debug, Serialize)]
pub struct WindowFrames {
    /// Frames read.
    pub total: u64,
    /// Counted, per kind.
    pub counted: BTreeMap<Kind, u64>,
    /// Skipped, per reason (non-zero only).
    pub skipped: BTreeMap<&'static str, u64>,
}

/// Devices of one window, with 2-sigma bounds.
#[derive(Debug, Serialize)]
pub struct Devices {
    /// Physical Wi-Fi devices (see `crate::counting::devices`).
    pub wifi: Estimate,
    /// BLE advertisers: addresses (resolvable private addresses rotate about every 15 min).
    pub ble: Estimate,
}

/// Per-window counting of a replay: windows stay open until the replay ends (files may
/// overlap in time), then each is finished under the gate learned from all frames.
struct WindowedReplay {
    length: WindowLength,
    gate: RssiGate,
    /// The scan cadence, learned from every window before any is finished.
    cadence: ScanCadence,
    open: Vec<OpenWindow>,
    /// Where each open window is in `open`, by its start (ns): a capture of months holds
    /// hundreds of thousands of windows, which a search through `open` made quadratic.
    index: foldhash::HashMap<i64, usize>,
    /// The window of the previous frame (frames come mostly in time order).
    last: usize,
    /// The current file's previous frame (ns), none before its first.
    previous_ns: Option<i64>,
    /// The current run of frames (ns, earliest and latest): a file's, up to a pause.
    run: Option<(i64, i64)>,
    /// The runs ended so far: when the captures ran.
    runs: Vec<(i64, i64)>,
}

/// A silence this long inside a file is read as a paused capture, so the windows it starts
/// and ends in are partial, whatever their length. Shorter silences are a quiet place: a
/// sensor in an empty room still hears its routers and computers every few minutes (brno-lab
/// nights).
pub const PAUSE: Duration = Duration::from_secs(15 * 60);

struct OpenWindow {
    start_ns: i64,
    count: WindowCount,
    tally: Tally,
    /// A file begins or ends, or a capture pauses, inside it.
    partial: bool,
}

const NS_PER_S: i64 = 1_000_000_000;

/// [`PAUSE`] in nanoseconds, as frames are timed.
const PAUSE_NS: i64 = PAUSE.as_secs() as i64 * NS_PER_S;

impl WindowedReplay {
    /// The open window holding `ts_ns`, opened if new.
    fn window_of(&mut self, ts_ns: i64) -> &mut OpenWindow {
        let len_ns = self.len_ns();
        // The previous frame's window, without a division (a 64-bit division per frame was
        // a tenth of a windowed replay, #15).
        if let Some(w) = self.open.get(self.last)
            && (w.start_ns..w.start_ns + len_ns).contains(&ts_ns)
        {
            return &mut self.open[self.last];
        }
        let start_ns = ts_ns.div_euclid(len_ns) * len_ns;
        let open = &mut self.open;
        self.last = *self.index.entry(start_ns).or_insert_with(|| {
            let start = Timestamp::from_second(start_ns.div_euclid(NS_PER_S))
                .unwrap_or(Timestamp::UNIX_EPOCH);
            let mut count = WindowCount::new(Precision::DEFAULT, start);
            if let Some(previous) = open.last() {
                count.reserve(previous.count.devices().fingerprinted());
            }
            open.push(OpenWindow {
                start_ns,
                count,
                tally: Tally::default(),
                partial: false,
            });
            open.len() - 1
        });
        &mut self.open[self.last]
    }

    fn len_ns(&self) -> i64 {
        i64::from(self.length.seconds()) * NS_PER_S
    }

    /// A file's frames begin: its first frame's window is partial unless it starts there.
    fn begin_file(&mut self) {
        self.previous_ns = None;
    }

    /// A file's frames end (read to its end, cut, or interrupted).
    fn end_file(&mut self) {
        self.previous_ns = None;
        self.runs.extend(self.run.take());
    }

    /// Marks partial the windows where the captures began or stopped: the runs of all files
    /// taken together, so that files one capture was split into (`tcpdump -G`, `dumpcap -b`)
    /// or several sensors' overlapping files mark only the edges of the whole. A gap under
    /// [`PAUSE`] between one run's end and the next one's start is a silence, as inside a
    /// file. A run beginning within a second of its window's start, or ending within a second
    /// of its end, leaves it whole: a capture rarely begins on the instant.
    fn mark_edges(&mut self) -> Vec<(i64, i64)> {
        let len_ns = self.len_ns();
        let mut runs = std::mem::take(&mut self.runs);
        runs.extend(self.run.take());
        runs.sort_unstable();
        let mut merged: Vec<(i64, i64)> = Vec::with_capacity(runs.len());
        for (first, last) in runs {
            match merged.last_mut() {
                Some(run) if first - run.1 < PAUSE_NS => run.1 = run.1.max(last),
                _ => merged.push((first, last)),
            }
        }
        for &(first, last) in &merged {
            let begins = first.div_euclid(len_ns) * len_ns;
            if first > begins + NS_PER_S {
                self.mark_partial(begins);
            }
            let ends = last.div_euclid(len_ns) * len_ns;
            if last < ends + len_ns - NS_PER_S {
                self.mark_partial(ends);
            }
        }
        merged
    }

    fn mark_partial(&mut self, start_ns: i64) {
        if let Some(&i) = self.index.get(&start_ns) {
            self.open[i].partial = true;
        }
    }

    /// Counts a frame in its window; `device` is the counted address's salted hash,
    /// `hardware` [`is_grouped_hardware`] of its sighting.
    fn add(
        &mut self,
        device: Option<&DeviceHash>,
        ts_ns: i64,
        outcome: &Result<frame::Sighting, Skip>,
        hardware: bool,
    ) {
        // A packet of a link type the agent cannot read says nothing of a window: no window
        // of "0 devices" for it, and it does not bridge a pause (the report's totals keep it).
        if matches!(outcome, Err(Skip::UnsupportedLinkType)) {
            return;
        }
        if let Ok(s) = outcome
            && let (Medium::Wifi, Some(rssi)) = (s.heard.medium, s.heard.rssi)
        {
            self.gate.observe(rssi);
        }
        if let Some(previous) = self.previous_ns
            && ts_ns - previous >= PAUSE_NS
        {
            self.runs.extend(self.run.take());
        }
        self.previous_ns = Some(ts_ns);
        self.run = Some(match self.run {
            None => (ts_ns, ts_ns),
            Some((first, last)) => (first.min(ts_ns), last.max(ts_ns)),
        });
        let window = self.window_of(ts_ns);
        window.tally.record(&outcome.map(|s| s.heard));
        if let (Ok(sighting), Some(device)) = (outcome, device) {
            let ms = (ts_ns - window.start_ns) / 1_000_000;
            window.count.insert_hashed_ms(
                device,
                i32::try_from(ms).unwrap_or(i32::MAX),
                sighting,
                hardware,
            );
        }
    }

    /// The windows in time order, and the gate used; the address sketches of all windows
    /// are added into `whole` (the replay's own distinct counts).
    fn finish(
        mut self,
        salt: &Salt,
        policy: &FramePolicy,
        whole: &mut KindSketches,
    ) -> (Option<i8>, Option<f64>, Vec<WindowReport>) {
        let ran = self.mark_edges();
        // A configured gate was applied to every frame already; else the learned one.
        let gate = policy.min_rssi.or_else(|| self.gate.learned());
        let extra = if policy.min_rssi.is_some() {
            None
        } else {
            gate
        };
        let length = self.length;
        self.open.sort_by_key(|w| w.start_ns);
        // Learned from every window first, as the gate is from every frame. The windows are
        // grouped on every core: each its own, and the cadence's sums (whole numbers) add up
        // to the same in any order.
        let taught = on_every_core(self.open.iter_mut().collect(), |w| {
            let mut cadence = ScanCadence::default();
            w.count.teach(extra, &mut cadence);
            cadence
        });
        for t in &taught {
            self.cadence.add(t);
        }
        let cadence = self.cadence.learned(policy.devices);
        let finished = on_every_core(self.open, |w| {
            let sketches = w.count.finish(Some(salt), extra, cadence, policy.devices);
            (w.start_ns, w.tally, w.partial, sketches)
        });
        let mut union = KindUnion::new(Precision::DEFAULT);
        let windows = finished
            .into_iter()
            .map(|(start_ns, tally, partial, sketches)| {
                let start = Timestamp::from_second(start_ns.div_euclid(NS_PER_S))
                    .unwrap_or(Timestamp::UNIX_EPOCH);
                let window = Window::containing(start, length);
                union.add(&sketches);
                let distinct: BTreeMap<Kind, Estimate> = sketches
                    .estimates()
                    .into_iter()
                    .map(|(k, e)| (k, tidy(e)))
                    .collect();
                WindowReport {
                    start: window.start(),
                    end: window.end(),
                    frames: WindowFrames {
                        total: tally.frames,
                        counted: Kind::ADDRESSES
                            .into_iter()
                            .map(|k| (k, tally.counted(k)))
                            .collect(),
                        skipped: tally.skipped_by_reason(),
                    },
                    devices: Devices {
                        wifi: distinct[&Kind::WifiDerandomized],
                        ble: distinct[&Kind::Ble],
                    },
                    distinct,
                    partial,
                }
            })
            .collect();
        union.add_into(whole);
        (gate, cadence, with_silent_windows(windows, &ran))
    }
}

/// `windows` (in time order) with the windows the captures ran through in silence put in
/// as heard nothing: those inside a run of frames (`ran`, ns, the files together, split at
/// silences of [`PAUSE`] or more), so they read 0, as the live agent publishes them, rather
/// than leaving holes in a series (a fresh user's trial). Windows outside every run (before a
/// file began, after it ended, in a pause) are not known and stay out.
fn with_silent_windows(windows: Vec<WindowReport>, ran: &[(i64, i64)]) -> Vec<WindowReport> {
    let ran_through = |start: Timestamp, end: Timestamp| {
        let (start, end) = (start.as_second() * NS_PER_S, end.as_second() * NS_PER_S);
        ran.iter()
            .any(|&(first, last)| first < start && end <= last)
    };
    let mut out: Vec<WindowReport> = Vec::with_capacity(windows.len());
    for w in windows {
        // Within a run, frames are never PAUSE apart: a longer gap holds no such window (and
        // a months' gap between files is not walked window by window).
        if let Some(before) = out.last()
            && w.start.as_second() - before.end.as_second() < PAUSE.as_secs() as i64
        {
            let length = before.end.duration_since(before.start);
            let mut start = before.end;
            let mut silent = Vec::new();
            while start < w.start {
                let end = start + length;
                if ran_through(start, end) {
                    silent.push(heard_nothing(before, start, end));
                }
                start = end;
            }
            out.extend(silent);
        }
        out.push(w);
    }
    out
}

/// A window from `start` to `end` that heard nothing, with the kinds of `like`.
fn heard_nothing(like: &WindowReport, start: Timestamp, end: Timestamp) -> WindowReport {
    let zero = Estimate::ZERO;
    WindowReport {
        start,
        end,
        frames: WindowFrames {
            total: 0,
            counted: like.frames.counted.keys().map(|&k| (k, 0)).collect(),
            skipped: BTreeMap::new(),
        },
        distinct: like.distinct.keys().map(|&k| (k, zero)).collect(),
        devices: Devices {
            wifi: zero,
            ble: zero,
        },
        partial: false,
    }
}

/// `f` of every item, in order, the items split among the machine's cores (a replay's
/// windows are grouped and finished each on its own: a third of a windowed replay's time
/// on one core, #15).
fn on_every_core<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let per_core = items.len().div_ceil(cores).max(1);
    if items.len() <= 1 || cores == 1 {
        return items.into_iter().map(f).collect();
    }
    let mut items = items.into_iter();
    let shares: Vec<Vec<T>> = std::iter::from_fn(|| {
        let share: Vec<T> = items.by_ref().take(per_core).collect();
        (!share.is_empty()).then_some(share)
    })
    .collect();
    let f = &f;
    std::thread::scope(|scope| {
        let running: Vec<_> = shares
            .into_iter()
            .map(|share| scope.spawn(move || share.into_iter().map(f).collect::<Vec<R>>()))
            .collect();
        running
            .into_iter()
            .flat_map(|r| r.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// Replays `paths` in order under one fresh salt.
pub fn replay(
    paths: &[PathBuf],
    policy: &FramePolicy,
    pace: Pace,
) -> Result<ReplayReport, ReplayError> {
    replay_windows(paths, policy, pace, None)
}

/// Replays `paths` in order under one fresh salt and, with `window`, reports every
/// UTC-aligned window with its physical Wi-Fi device estimate.
pub fn replay_windows(
    paths: &[PathBuf],
    policy: &FramePolicy,
    pace: Pace,
    window: Option<WindowLength>,
) -> Result<ReplayReport, ReplayError> {
    let started = Instant::now();
    let salt = Salt::generate()?;
    let mut sketches = KindSketches::new(Precision::DEFAULT);
    let mut tally = Tally::default();
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut skipped_link_types = BTreeMap::new();
    let mut windowed = window.map(|length| WindowedReplay {
        length,
        gate: RssiGate::default(),
        cadence: ScanCadence::default(),
        open: Vec::new(),
        index: foldhash::HashMap::default(),
        last: 0,
        previous_ns: None,
        run: None,
        runs: Vec::new(),
    });
    let mut seen = std::collections::HashSet::new();
    let mut contents: BTreeMap<[u8; 32], PathBuf> = BTreeMap::new();
    // One file cannot be a copy of another: its extra pass is saved.
    let several = paths.len() > 1;
    for path in paths {
        if interrupted() {
            break;
        }
        // A file named twice would count its frames twice (and lift single frames of the
        // device estimate into groups).
        let key = if is_stdin(path) {
            PathBuf::from(STDIN)
        } else {
            std::fs::canonicalize(path).unwrap_or_else(|_| path.clone())
        };
        if !seen.insert(key) {
            warnings.push(format!(
                "{}: given more than once; counted once",
                path.display()
            ));
            continue;
        }
        // A copy under another name would count its frames twice too.
        if let Some(content) = several.then(|| content_key(path)).flatten() {
            if let Some(first) = contents.get(&content) {
                warnings.push(format!(
                    "{}: the same capture as {}; counted once",
                    path.display(),
                    first.display()
                ));
                continue;
            }
            contents.insert(content, path.clone());
        }
        let before = tally.clone();
        if let Some(w) = windowed.as_mut() {
            w.begin_file();
        }
        let counts = Counts {
            salt: &salt,
            sketches: &mut sketches,
            tally: &mut tally,
            windowed: windowed.as_mut(),
            skipped_link_types: &mut skipped_link_types,
        };
        let result = replay_file(path, policy, pace, counts);
        if let Some(w) = windowed.as_mut() {
            w.end_file();
        }
        match result {
            // A header and no packet (a capture stopped before it heard anything): said, so
            // that its zeros are not read as a place heard empty.
            Ok(()) if tally.frames == before.frames && !interrupted() => {
                warnings.push(format!(
                    "{}: the file holds no packets (a header only): nothing to count",
                    path.display()
                ));
            }
            Ok(()) => {}
            Err(
                e @ ReplayError::File {
                    source: FileError::Truncated { .. },
                    ..
                },
            ) if e.read_any() => {
                tally.skip(Skip::CaptureTruncated);
                warnings.push(e.to_string());
            }
            // Ctrl-C before a pipe sent its first byte: nothing to read is no fault.
            Err(ReplayError::File {
                source: FileError::Empty,
                ..
            }) if interrupted() => {}
            Err(e) => errors.push(e.to_string()),
        }
        warnings.extend(fcs_hint(path, policy, &before, &tally));
    }
    warnings.extend(gate_hint(policy, &tally));
    if interrupted() {
        warnings.push(format!(
            "interrupted: the counts are of the frames read before it{}",
            if window.is_some() {
                " (the last window is partial)"
            } else {
                ""
            }
        ));
    }
    let (device_gate_dbm, scan_cadence, windows) =
        match windowed.map(|w| w.finish(&salt, policy, &mut sketches)) {
            Some((gate, cadence, windows)) => (gate, cadence.map(tidy_f64), Some(windows)),
            None => (None, None, None),
        };
    drop(salt);
    Ok(ReplayReport {
        frames: tally.frames,
        counted: Kind::ADDRESSES
            .into_iter()
            .map(|k| (k, tally.counted(k)))
            .collect(),
        skipped: tally.skipped_by_reason(),
        skipped_link_types,
        distinct: sketches
            .estimates()
            .into_iter()
            .map(|(k, e)| (k, tidy(e)))
            .collect(),
        elapsed_s: started.elapsed().as_secs_f64(),
        peak_rss_mib: peak_rss_mib(),
        errors,
        warnings,
        device_gate_dbm,
        scan_cadence,
        windows,
        interrupted: interrupted(),
    })
}

/// What tells a file's copy from another capture: the hash of its packets (link type,
/// timestamp, bytes), whatever the file format holding them, so that `lab.pcap` and its
/// `editcap -F pcapng` conversion are one capture. None for standard input, anything but a
/// regular file, or an unreadable file (whose error comes when it is replayed). Hashed in
/// memory only; the key is never shown.
fn content_key(path: &Path) -> Option<[u8; 32]> {
    // A pipe or a device (`/dev/stdin`) would be consumed by reading it.
    let meta = std::fs::metadata(path).ok()?;
    if path == Path::new(STDIN) || !meta.is_file() {
        return None;
    }
    let file = File::open(path).ok()?;
    match MappedFile::new(file) {
        Ok(mapped) => packets_hash(CaptureReader::new(mapped).ok()?),
        Err(file) => {
            packets_hash(CaptureReader::new(BufReader::with_capacity(1 << 20, file)).ok()?)
        }
    }
}

/// The blake3 hash of every packet of `reader` (see [`content_key`]); a file that breaks
/// off is hashed up to where it does.
fn packets_hash<R: BufRead>(mut reader: CaptureReader<R>) -> Option<[u8; 32]> {
    let mut hash = blake3::Hasher::new();
    while let Ok(Some(p)) = reader.next_packet() {
        if interrupted() {
            return None;
        }
        hash.update(&p.link.dlt().to_le_bytes());
        hash.update(&p.ts_ns.to_le_bytes());
        hash.update(&(p.data.len() as u64).to_le_bytes());
        hash.update(p.data);
    }
    Some(*hash.finalize().as_bytes())
}

/// A warning when the signal gate skipped every frame that would have counted: a gate above
/// what the sensor hears (`--min-rssi 0`) reads an empty place, which a crew would believe.
fn gate_hint(policy: &FramePolicy, tally: &Tally) -> Option<String> {
    let counted: u64 = Kind::ADDRESSES.iter().map(|&k| tally.counted(k)).sum();
    let too_far = tally.skipped(Skip::TooFar);
    let gate = policy.min_rssi?;
    (counted == 0 && too_far > 0).then(|| {
        format!(
            "nothing counted: all {too_far} frames were weaker than --min-rssi {gate} dBm \
             (skipped as below_rssi_threshold): give a lower gate, e.g. -75"
        )
    })
}

/// A warning for a file of which nothing counted because every frame with an FCS failed
/// its check: what captures whose addresses were rewritten look like (the FCS was not
/// recomputed), which `--ignore-fcs` counts as tshark does.
fn fcs_hint(path: &Path, policy: &FramePolicy, before: &Tally, after: &Tally) -> Option<String> {
    let bad = after.all_failed_fcs_since(before)?;
    (policy.fcs == FcsRule::Check).then(|| {
        format!(
            "{}: nothing counted: all {bad} frames with a frame check sequence failed it \
             (skipped as bad_fcs). Captures whose addresses were rewritten, such as \
             anonymized ones, keep the old FCS: --ignore-fcs counts them as tshark does",
            path.display()
        )
    })
}

/// Where one file's frames are counted.
struct Counts<'a> {
    salt: &'a Salt,
    sketches: &'a mut KindSketches,
    tally: &'a mut Tally,
    windowed: Option<&'a mut WindowedReplay>,
    skipped_link_types: &'a mut BTreeMap<String, u64>,
}

/// Decoded frames waiting to be counted, so that their addresses are hashed together
/// ([`hash_devices`]: 16 share the SIMD lanes of one compression). Counted in capture order,
/// with the same results as one at a time.
struct Batch {
    frames: Vec<(i64, Result<frame::Sighting, Skip>)>,
    devices: Vec<(Medium, [u8; ADDRESS_LEN])>,
    hashes: Vec<DeviceHash>,
    /// Per frame, with windows: [`is_grouped_hardware`].
    hardware: Vec<bool>,
    size: usize,
}

impl Batch {
    /// Frames a batch holds as fast as possible: a multiple of the 16 lanes, large enough
    /// that handing batches between threads costs little (with 256, the hand-offs made a
    /// plain replay of the benchmark capture a fifth slower than one thread), small enough
    /// for the second-level cache (about 300 KiB).
    const FAST: usize = 4096;

    fn new(size: usize) -> Batch {
        Batch {
            frames: Vec::with_capacity(size + 8),
            devices: Vec::with_capacity(size + 8),
            hashes: Vec::with_capacity(size + 8),
            hardware: Vec::with_capacity(size + 8),
            size,
        }
    }

    fn push(&mut self, ts_ns: i64, outcome: Result<frame::Sighting, Skip>) {
        if let Ok(s) = &outcome {
            self.devices.push((s.heard.medium, s.heard.address));
        }
        self.frames.push((ts_ns, outcome));
    }

    fn is_full(&self) -> bool {
        self.frames.len() >= self.size
    }

    /// Hashes the batch's addresses under `salt` and, for a `windowed` replay, looks up
    /// which are hardware ones. The OUI table's lookups of a batch run in one loop, where
    /// their cache misses overlap; one per frame among the rest of its work stalled each time
    /// (#15: a seventh of a windowed replay).
    fn prepare(&mut self, salt: &Salt, windowed: bool) {
        self.hashes.clear();
        hash_devices(salt, &self.devices, &mut self.hashes);
        self.devices.clear();
        self.hardware.clear();
        if windowed {
            self.hardware.extend(
                self.frames
                    .iter()
                    .map(|(_, o)| o.as_ref().is_ok_and(is_grouped_hardware)),
            );
        }
    }

    /// Counts the prepared frames; the batch is empty after.
    fn count(&mut self, counts: &mut Counts<'_>) {
        let mut hashes = self.hashes.iter();
        let mut hardware = self.hardware.iter();
        for (ts_ns, outcome) in self.frames.drain(..) {
            counts.tally.record(&outcome.map(|s| s.heard));
            let device = outcome.as_ref().ok().and_then(|_| hashes.next());
            match counts.windowed.as_deref_mut() {
                // The replay's own sketches are the union of its windows'.
                Some(windowed) => {
                    let hardware = hardware.next().copied().unwrap_or(false);
                    windowed.add(device, ts_ns, &outcome, hardware)
                }
                None => {
                    if let (Ok(s), Some(device)) = (&outcome, device) {
                        counts.sketches.insert_hash(s.heard.kind(), device);
                    }
                }
            }
        }
    }
}

/// Set by [`interrupt`]; read between frames.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Stops the replays of this process at their next frame (the binary calls it on SIGINT or
/// SIGTERM): each reports what it counted so far, with `interrupted` set, instead of a long
/// `--recorded-speed` run ending with nothing.
pub fn interrupt() {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// The path that names standard input (`--pcap -`, as `tshark -r -` reads a pipe).
pub const STDIN: &str = "-";

/// Whether `path` names standard input: [`STDIN`] or one of the system's names for it, so
/// that `--pcap - --pcap /dev/stdin` reads it once.
fn is_stdin(path: &Path) -> bool {
    ["-", "/dev/stdin", "/dev/fd/0", "/proc/self/fd/0"]
        .iter()
        .any(|name| path == Path::new(name))
}

/// Standard input read on a thread of its own, in chunks: a read blocked on a pipe whose
/// writer is idle cannot be interrupted, so Ctrl-C would wait for the writer (and a second
/// one lost the counts). Reads here wake every 100 ms to see [`interrupt`], then end as at
/// the end of the input.
struct StdinChunks {
    chunks: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
}

impl StdinChunks {
    fn spawn() -> StdinChunks {
        // A few chunks ahead at most: the reader stays a MiB or so before the replay.
        let (send, chunks) = std::sync::mpsc::sync_channel(2);
        std::thread::spawn(move || {
            use std::io::Read;
            let mut stdin = std::io::stdin().lock();
            loop {
                let mut chunk = vec![0; 1 << 20];
                let sent = match stdin.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => {
                        chunk.truncate(n);
                        send.send(Ok(chunk))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => send.send(Err(e)),
                };
                if sent.is_err() {
                    break;
                }
            }
        });
        StdinChunks {
            chunks,
            chunk: Vec::new(),
            at: 0,
        }
    }
}

impl std::io::Read for StdinChunks {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        use std::sync::mpsc::RecvTimeoutError;
        while self.at == self.chunk.len() {
            if interrupted() {
                return Ok(0);
            }
            match self.chunks.recv_timeout(Duration::from_millis(100)) {
                Ok(chunk) => {
                    self.chunk = chunk?;
                    self.at = 0;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(0),
            }
        }
        let n = out.len().min(self.chunk.len() - self.at);
        out[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Counts one file (standard input for [`STDIN`]). Packets of link types the agent cannot
/// read (another interface of a pcapng) are skipped and counted; a file with nothing else is
/// an error naming its types.
fn replay_file(
    path: &Path,
    policy: &FramePolicy,
    pace: Pace,
    counts: Counts<'_>,
) -> Result<(), ReplayError> {
    let stdin = path == Path::new(STDIN);
    let path = if stdin {
        Path::new("standard input")
    } else {
        path
    };
    let file_error = |source| ReplayError::File {
        path: path.to_owned(),
        source,
    };
    if stdin {
        let input = BufReader::with_capacity(1 << 20, StdinChunks::spawn());
        return count_file(
            CaptureReader::new(input).map_err(file_error)?,
            path,
            policy,
            pace,
            counts,
        );
    }
    let file = File::open(path).map_err(|source| ReplayError::Open {
        path: path.to_owned(),
        source,
    })?;
    match MappedFile::new(file) {
        Ok(mapped) => count_file(
            CaptureReader::new(mapped).map_err(file_error)?,
            path,
            policy,
            pace,
            counts,
        ),
        Err(file) => count_file(
            CaptureReader::new(BufReader::with_capacity(1 << 20, file)).map_err(file_error)?,
            path,
            policy,
            pace,
            counts,
        ),
    }
}

/// Batches on their way to the counting thread: enough to even out the two threads' pace.
const QUEUED_BATCHES: usize = 4;

/// Counts the packets of one open capture (see [`replay_file`]). As fast as possible, the
/// packets are read, decoded and hashed on this thread and counted on a second one (a
/// windowed replay's counting is about half its work): the batches go over a bounded
/// channel in order, and come back empty. At the recorded pace, one thread does both.
fn count_file<R: BufRead>(
    mut reader: CaptureReader<R>,
    path: &Path,
    policy: &FramePolicy,
    pace: Pace,
    counts: Counts<'_>,
) -> Result<(), ReplayError> {
    let salt = counts.salt;
    let windowed = counts.windowed.is_some();
    let (read, links, counts) = match pace {
        Pace::Recorded => {
            let mut counts = counts;
            let (read, links) = read_packets(&mut reader, policy, pace, windowed, |mut b| {
                b.prepare(salt, windowed);
                b.count(&mut counts);
                b
            });
            (read, links, counts)
        }
        Pace::Fast => std::thread::scope(|scope| {
            let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Batch>(QUEUED_BATCHES);
            let (empty_tx, empty_rx) = std::sync::mpsc::channel::<Batch>();
            let counter = scope.spawn(move || {
                let mut counts = counts;
                for mut batch in full_rx {
                    batch.prepare(salt, windowed);
                    batch.count(&mut counts);
                    // The reader may have stopped already: the batch is then dropped.
                    let _ = empty_tx.send(batch);
                }
                counts
            });
            let (read, links) = read_packets(&mut reader, policy, pace, windowed, |b| {
                // A counter that is gone has panicked: its panic is raised below.
                let _ = full_tx.send(b);
                empty_rx
                    .try_recv()
                    .unwrap_or_else(|_| Batch::new(Batch::FAST))
            });
            drop(full_tx);
            let counts = counter
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (read, links, counts)
        }),
    };
    for (link, n) in &links.unsupported {
        *counts.skipped_link_types.entry(link.clone()).or_default() += n;
    }
    read.map_err(|source| ReplayError::File {
        path: path.to_owned(),
        source,
    })?;
    if links.supported == 0 && !links.unsupported.is_empty() {
        return Err(ReplayError::LinkType {
            path: path.to_owned(),
            links: links.unsupported.into_keys().collect::<Vec<_>>().join(", "),
        });
    }
    Ok(())
}

/// The packets of a capture by link type: those the agent reads, and the others by name.
#[derive(Default)]
struct LinkTypes {
    supported: u64,
    unsupported: BTreeMap<String, u64>,
}

/// Reads and decodes a capture's packets in batches, each prepared ([`Batch::prepare`]) and
/// handed to `full`, which gives back an empty batch. On a read fault, the frames before it
/// are handed on still, and the fault returned.
fn read_packets<R: BufRead>(
    reader: &mut CaptureReader<R>,
    policy: &FramePolicy,
    pace: Pace,
    windowed: bool,
    mut full: impl FnMut(Batch) -> Batch,
) -> (Result<(), FileError>, LinkTypes) {
    let mut clock = PaceClock::new(pace);
    let mut links = LinkTypes::default();
    let mut outcomes = Vec::new();
    let mut batch = Batch::new(match pace {
        Pace::Fast => Batch::FAST,
        Pace::Recorded => 1,
    });
    while !interrupted() {
        let packet = match reader.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            Err(e) => {
                full(batch);
                return (Err(e), links);
            }
        };
        if packet.link.is_supported() {
            links.supported += 1;
        } else {
            *links
                .unsupported
                .entry(packet.link.to_string())
                .or_default() += 1;
        }
        clock.wait_for(packet.ts_ns);
        // Ctrl-C while waiting for the frame's moment: it was not heard yet.
        if interrupted() {
            break;
        }
        outcomes.clear();
        frame::decode_packet(&packet, policy, windowed, &mut outcomes);
        for sighting in outcomes.drain(..) {
            batch.push(packet.ts_ns, sighting);
        }
        if batch.is_full() {
            batch = full(batch);
        }
    }
    full(batch);
    (Ok(()), links)
}

/// The process's peak resident set (VmHWM) from /proc, in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Sleeps so that frames come out at their recorded pace (time going backwards is ignored).
struct PaceClock {
    pace: Pace,
    origin: Option<(i64, Instant)>,
}

impl PaceClock {
    const SLICE: Duration = Duration::from_millis(100);

    fn new(pace: Pace) -> PaceClock {
        PaceClock { pace, origin: None }
    }

    fn wait_for(&mut self, ts_ns: i64) {
        if self.pace == Pace::Fast {
            return;
        }
        let (t0, start) = *self.origin.get_or_insert((ts_ns, Instant::now()));
        let due = Duration::from_nanos(u64::try_from(ts_ns.saturating_sub(t0)).unwrap_or(0));
        // In slices, so that an interrupt during a long gap of the recording is seen soon.
        while let Some(wait) = due.checked_sub(start.elapsed()) {
            if wait.is_zero() || interrupted() {
                break;
            }
            std::thread::sleep(wait.min(Self::SLICE));
        }
    }
}

impl ReplayReport {
    /// The human summary (warnings and errors are the caller's to print, once, on stderr).
    pub fn render(&self) -> String {
        let mut out = format!(
            "{} frames in {:.2} s ({:.0} frames/s)\n",
            self.frames,
            self.elapsed_s,
            self.frames as f64 / self.elapsed_s.max(1e-9)
        );
        out += "kind         counted frames   distinct addresses [95% bounds]\n";
        for kind in Kind::ADDRESSES {
            let e = self.distinct[&kind];
            out += &format!(
                "{:<12} {:>14}   {:.0} [{:.0}, {:.0}]\n",
                kind.as_str(),
                self.counted[&kind],
                e.estimate,
                e.lower,
                e.upper
            );
        }
        if !self.skipped.is_empty() {
            out += "skipped:\n";
            for (reason, n) in &self.skipped {
                out += &format!("  {reason:<24} {n}\n");
            }
        }
        for (link, n) in &self.skipped_link_types {
            out += &format!("  of which link type {link}: {n}\n");
        }
        if let Some(windows) = &self.windows {
            out += &render_windows(windows, self.device_gate_dbm, self.scan_cadence);
        }
        out
    }
}

/// An estimate to two decimals: a sketch of two addresses reads 2.000000004967054, whose
/// digits after the second say nothing.
fn tidy(e: Estimate) -> Estimate {
    Estimate {
        estimate: tidy_f64(e.estimate),
        lower: tidy_f64(e.lower),
        upper: tidy_f64(e.upper),
    }
}

/// A figure to two decimals, as the report gives them.
fn tidy_f64(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The per-window table of the human summary.
fn render_windows(windows: &[WindowReport], gate: Option<i8>, cadence: Option<f64>) -> String {
    let gate = match gate {
        Some(g) => format!("device estimate gated at {g} dBm"),
        None => "no signal gate: no far mode heard".to_owned(),
    };
    let cadence = match cadence {
        Some(c) => format!("scan cadence {c:.2} scans per device per minute"),
        None => format!(
            "no scan cadence: fewer recurring addresses than the {MIN_CADENCE_ADDRESSES} \
             (device count auto) or {MIN_CADENCE_ADDRESSES_SCANS} (scans) it needs, read by concurrency"
        ),
    };
    let mut out = format!("per window ({gate}; {cadence}):\n");
    out +=
        "                             distinct addresses (wifi: global, wifi_random: randomized)\n";
    out += "start                 end                   frames   wifi  wifi_random    ble   wifi devices [sketch 95%]  ble devices [sketch 95%]\n";
    let e = |e: &Estimate| format!("{:.0} [{:.0}, {:.0}]", e.estimate, e.lower, e.upper);
    let distinct = |w: &WindowReport, kind| w.distinct.get(&kind).map_or(0.0, |e| e.estimate);
    let utc = |t: &Timestamp| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    for w in windows {
        let line = format!(
            "{:<21} {:<21} {:>6} {:>6.0} {:>12.0} {:>6.0}   {:<26} {:<24}{}",
            utc(&w.start),
            utc(&w.end),
            w.frames.total,
            distinct(w, Kind::Wifi),
            distinct(w, Kind::WifiRandom),
            distinct(w, Kind::Ble),
            e(&w.devices.wifi),
            e(&w.devices.ble),
            if w.partial { "  partial*" } else { "" },
        );
        out += line.trim_end();
        out.push('\n');
    }
    out += "(device bounds are the sketch's only; the estimate's own error: docs/counting-devices.md)\n";
    if windows.iter().any(|w| w.partial) {
        out += "(*partial: the files' frames begin or end, or pause for 15 min or more, inside the window: it counts part of it)\n";
    }
    out
}
