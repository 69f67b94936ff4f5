//! pcapng output as a monitor-mode sensor would record it: interface 0 is 802.11 with
//! radiotap (probe requests with the antenna signal), interface 1 is Bluetooth LE link layer
//! with pseudo-header (advertisements with signal and a valid CRC). Wireshark, tshark and
//! the agent's `replay` read it.

use std::io::Write;

use crowdflow_contract::identity::Medium;

use super::Frame;
use crate::phone_model::{MODELS, probe_header};
use crowdflow_agent::frame::crc24;

const LINKTYPE_RADIOTAP: u16 = 127;
const LINKTYPE_BLE_LL_WITH_PHDR: u16 = 256;
const ADVERTISING_AA: u32 = 0x8E89_BED6;

/// Writes frames of one sensor to a pcapng stream.
#[derive(Debug)]
pub struct PcapngWriter<W: Write> {
    out: W,
}

fn block(kind: u32, body: &[u8]) -> Vec<u8> {
    let padded = body.len().div_ceil(4) * 4;
    let total = (12 + padded) as u32;
    let mut b = Vec::with_capacity(total as usize);
    b.extend_from_slice(&kind.to_le_bytes());
    b.extend_from_slice(&total.to_le_bytes());
    b.extend_from_slice(body);
    b.resize(8 + padded, 0);
    b.extend_from_slice(&total.to_le_bytes());
    b
}

fn interface(link: u16) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&link.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    body.extend_from_slice(&65535u32.to_le_bytes());
    block(1, &body)
}

/// A probe request with a radiotap header carrying the antenna signal: its sequence number
/// and its model's elements (a wildcard SSID and rates alone without a model).
fn probe_request(f: &Frame) -> Vec<u8> {
    let mut p = vec![0, 0, 9, 0, 0x20, 0, 0, 0, f.rssi as u8];
    p.extend_from_slice(&probe_header(f.address, f.seq));
    match f.phone.and_then(|i| MODELS.get(usize::from(i))) {
        Some(model) => p.extend_from_slice(&model.elements(f.burst)),
        None => p.extend_from_slice(&[0x00, 0x00, 0x01, 0x04, 0x02, 0x04, 0x0b, 0x16]),
    }
    p
}

/// An ADV_NONCONN_IND from a random address, with the DLT 256 pseudo-header.
fn advertisement(f: &Frame) -> Vec<u8> {
    let flags: u16 = 0x0001 | 0x0002 | 0x0400 | 0x0800; // dewhitened, signal, CRC checked+valid
    let mut p = vec![37, f.rssi as u8, 0x80, 0];
    p.extend_from_slice(&ADVERTISING_AA.to_le_bytes());
    p.extend_from_slice(&flags.to_le_bytes());
    let start = p.len();
    p.extend_from_slice(&ADVERTISING_AA.to_le_bytes());
    p.push(0x42);
    p.push(9);
    p.extend(f.address.iter().rev());
    p.extend_from_slice(&[0x02, 0x01, 0x06]);
    let crc = crc24(0x55_5555, &p[start + 4..]);
    p.extend_from_slice(&crc.to_le_bytes()[..3]);
    p
}

impl<W: Write> PcapngWriter<W> {
    /// Starts the file: section header and the two interfaces.
    pub fn new(mut out: W) -> std::io::Result<PcapngWriter<W>> {
        let mut shb = Vec::new();
        shb.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
        shb.extend_from_slice(&1u16.to_le_bytes());
        shb.extend_from_slice(&0u16.to_le_bytes());
        shb.extend_from_slice(&(-1i64).to_le_bytes());
        out.write_all(&block(0x0a0d_0d0a, &shb))?;
        out.write_all(&interface(LINKTYPE_RADIOTAP))?;
        out.write_all(&interface(LINKTYPE_BLE_LL_WITH_PHDR))?;
        Ok(PcapngWriter { out })
    }

    /// Appends one frame (timestamps in microseconds, the pcapng default).
    pub fn write(&mut self, f: &Frame) -> std::io::Result<()> {
        let (iface, data) = match f.medium {
            Medium::Wifi => (0u32, probe_request(f)),
            Medium::Ble => (1u32, advertisement(f)),
        };
        let ts = u64::try_from(f.t_us).unwrap_or(0);
        let mut body = Vec::with_capacity(20 + data.len());
        body.extend_from_slice(&iface.to_le_bytes());
        body.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        body.extend_from_slice(&(ts as u32).to_le_bytes());
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(&data);
        self.out.write_all(&block(6, &body))
    }

    /// Flushes and returns the stream.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}
