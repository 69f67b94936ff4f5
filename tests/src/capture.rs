//! Writing small radiotap pcap files for scenarios.

use std::io::Write;
use std::path::Path;

/// A probe request from `address` at `t_us` microseconds after the file's start.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    pub t_us: u64,
    pub address: [u8; 6],
}

/// Writes a radiotap pcap: a beacon at time 0 (not counted; it anchors the pace), then the
/// probe requests.
pub fn write_probes(path: &Path, probes: &[Probe]) {
    let mut f = Vec::new();
    f.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    f.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    f.extend_from_slice(&65535u32.to_le_bytes());
    f.extend_from_slice(&127u32.to_le_bytes());
    let beacon_source = [0x00, 0x11, 0x22, 0x33, 0x44, 0x55];
    record(&mut f, 0, 0x80, &beacon_source);
    for p in probes {
        record(&mut f, p.t_us, 0x40, &p.address);
    }
    std::fs::File::create(path)
        .and_then(|mut file| file.write_all(&f))
        .expect("write pcap");
}

fn record(f: &mut Vec<u8>, t_us: u64, fc0: u8, source: &[u8; 6]) {
    let mut frame = vec![0, 0, 8, 0, 0, 0, 0, 0, fc0, 0, 0, 0];
    frame.extend_from_slice(&[0xff; 6]);
    frame.extend_from_slice(source);
    frame.extend_from_slice(&[0xff; 6]);
    frame.extend_from_slice(&[0, 0, 0, 0]);
    let secs = 1_777_284_000 + (t_us / 1_000_000) as u32;
    f.extend_from_slice(&secs.to_le_bytes());
    f.extend_from_slice(&((t_us % 1_000_000) as u32).to_le_bytes());
    f.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    f.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    f.extend_from_slice(&frame);
}
