//! Offline counting of capture files: `crowdflow-agent replay`.
//!
//! Uses a fresh random salt that is dropped at the end, so the output is a count and
//! nothing else: installers and researchers can check what the agent would report for a
//! capture without any broker or aggregator.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crowdflow_contract::identity::Kind;
use crowdflow_contract::salt::{Salt, SaltError};
use crowdflow_contract::sketch::{Estimate, Precision};
use serde::Serialize;

use crate::capture::SUPPORTED;
use crate::capture::file::{CaptureReader, FileError};
use crate::count::{KindSketches, Tally};
use crate::frame::{self, FramePolicy, Skip};

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
}

/// Replays `paths` in order under one fresh salt.
pub fn replay(
    paths: &[PathBuf],
    policy: &FramePolicy,
    pace: Pace,
) -> Result<ReplayReport, ReplayError> {
    let started = Instant::now();
    let salt = Salt::generate()?;
    let mut sketches = KindSketches::new(Precision::DEFAULT);
    let mut tally = Tally::default();
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut skipped_link_types = BTreeMap::new();
    for path in paths {
        let mut sink = Sink {
            salt: &salt,
            sketches: &mut sketches,
            tally: &mut tally,
            skipped_link_types: &mut skipped_link_types,
        };
        match replay_file(path, policy, pace, &mut sink) {
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
            Err(e) => errors.push(e.to_string()),
        }
    }
    drop(salt);
    Ok(ReplayReport {
        frames: tally.frames,
        counted: Kind::ALL
            .into_iter()
            .map(|k| (k, tally.counted(k)))
            .collect(),
        skipped: tally.skipped_by_reason(),
        skipped_link_types,
        distinct: sketches.estimates(),
        elapsed_s: started.elapsed().as_secs_f64(),
        peak_rss_mib: peak_rss_mib(),
        errors,
        warnings,
    })
}

/// Where one file's outcomes go.
struct Sink<'a> {
    salt: &'a Salt,
    sketches: &'a mut KindSketches,
    tally: &'a mut Tally,
    skipped_link_types: &'a mut BTreeMap<String, u64>,
}

/// Counts one file. Packets of link types the agent cannot read (another interface of a
/// pcapng) are skipped and counted; a file with nothing else is an error naming its types.
fn replay_file(
    path: &Path,
    policy: &FramePolicy,
    pace: Pace,
    sink: &mut Sink<'_>,
) -> Result<(), ReplayError> {
    let file = File::open(path).map_err(|source| ReplayError::Open {
        path: path.to_owned(),
        source,
    })?;
    let file_error = |source| ReplayError::File {
        path: path.to_owned(),
        source,
    };
    let mut reader =
        CaptureReader::new(BufReader::with_capacity(1 << 20, file)).map_err(file_error)?;
    let mut clock = PaceClock::new(pace);
    let mut unsupported: BTreeMap<String, u64> = BTreeMap::new();
    let mut supported = 0u64;
    let mut outcomes = Vec::new();
    while let Some(packet) = reader.next_packet().map_err(file_error)? {
        if packet.link.is_supported() {
            supported += 1;
        } else {
            *unsupported.entry(packet.link.to_string()).or_default() += 1;
        }
        clock.wait_for(packet.ts_ns);
        outcomes.clear();
        frame::decode_packet(&packet, policy, &mut outcomes);
        for outcome in &outcomes {
            sink.tally.record(outcome);
            if let Ok(heard) = outcome {
                sink.sketches.insert(sink.salt, heard);
            }
        }
    }
    for (link, n) in &unsupported {
        *sink.skipped_link_types.entry(link.clone()).or_default() += n;
    }
    if supported == 0 && !unsupported.is_empty() {
        return Err(ReplayError::LinkType {
            path: path.to_owned(),
            links: unsupported.into_keys().collect::<Vec<_>>().join(", "),
        });
    }
    Ok(())
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
    fn new(pace: Pace) -> PaceClock {
        PaceClock { pace, origin: None }
    }

    fn wait_for(&mut self, ts_ns: i64) {
        if self.pace == Pace::Fast {
            return;
        }
        let (t0, start) = *self.origin.get_or_insert((ts_ns, Instant::now()));
        let due = Duration::from_nanos(u64::try_from(ts_ns.saturating_sub(t0)).unwrap_or(0));
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
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
        out += "kind         counted frames   distinct devices [95% bounds]\n";
        for kind in Kind::ALL {
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
        out
    }
}
