//! Capture files, read by magic number (not by file name): pcap (microsecond and nanosecond,
//! either byte order, and Kuznetzov's "modified" pcap), pcapng (every block type, several
//! interfaces and sections) and btsnoop (`btmon -w`, Android's HCI snoop log).
//!
//! A small, total reader: every malformed structure is an error naming what and where. Only
//! packet data is held in memory, at most [`MAX_RECORD`] bytes of it; blocks the agent does
//! not need (name resolution, statistics, decryption secrets, custom blocks) are skipped by
//! their length without being buffered, whatever their size (the format allows 4 GiB; a
//! length that runs past the file's end is reported as a truncated block, as tshark does).

use std::io::{self, BufRead, Read};
use std::path::Path;

use crowdflow_contract::identity::Medium;

use crate::frame::{LinkType, Packet};

/// Packets [`media_of`] reads at most: enough for every interface a pcapng file declares
/// at its start, a blink of a busy capture.
const MEDIA_PROBE_PACKETS: usize = 4096;

/// The media (Wi-Fi, BLE) the first packets of the capture file at `path` come from, by their
/// link types: what a `source = "pcap"` agent counts when its config does not list `senses`
/// (an empty BLE sketch each minute from a Wi-Fi capture would be rejected by an aggregator
/// that knows the sensor as Wi-Fi only). `None` when the file cannot be read or has no packet
/// of a type the agent decodes.
pub fn media_of(path: &Path) -> Option<(bool, bool)> {
    let file = std::fs::File::open(path).ok()?;
    let mut reader = CaptureReader::new(io::BufReader::new(file)).ok()?;
    let has = |links: &[LinkType], m: Medium| links.iter().any(|l| l.medium() == Some(m));
    // A read error ends the look: what came before it still tells the media.
    let (links, _) = reader.link_types(MEDIA_PROBE_PACKETS, |links| {
        has(links, Medium::Wifi) && has(links, Medium::Ble)
    });
    let media = (has(&links, Medium::Wifi), has(&links, Medium::Ble));
    (media.0 || media.1).then_some(media)
}

/// Largest packet accepted (802.11 frames are < 12 KB, BLE and HCI packets < 300 B; a
/// bigger claim on a supported link type is corruption).
pub const MAX_RECORD: usize = 256 * 1024;

/// Why a capture file cannot be read (further).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// I/O failure.
    #[error("read error: {0}")]
    Io(#[from] io::Error),
    /// The input holds no byte at all (an empty file, or a pipe already read to its end,
    /// such as `/dev/stdin` given twice).
    #[error("the file is empty (0 bytes): nothing to read")]
    Empty,
    /// The first bytes are not a capture format the agent knows.
    #[error(
        "not a pcap, pcapng or btsnoop file (magic bytes {} as written in the file)",
        hex(.0)
    )]
    NotACapture([u8; 4]),
    /// A known format the agent does not read.
    #[error("{format} (magic bytes {} as written in the file) is not read: {advice}", hex(.magic))]
    Unsupported {
        /// The format, in words.
        format: String,
        /// The first four bytes of the file.
        magic: [u8; 4],
        /// What to do instead.
        advice: &'static str,
    },
    /// The file ends inside a header or record.
    #[error("file is truncated inside the {what} that starts at byte {offset}")]
    Truncated {
        /// The structure that was cut off.
        what: &'static str,
        /// Byte offset where it started.
        offset: u64,
    },
    /// A header field is impossible.
    #[error("corrupt {what} at byte {offset}: {reason}")]
    Corrupt {
        /// The structure at fault.
        what: &'static str,
        /// Byte offset where it started.
        offset: u64,
        /// What is impossible about it.
        reason: String,
    },
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Clone, Copy)]
enum Format {
    Pcap {
        big_endian: bool,
        nanos: bool,
        link: LinkType,
        fcs_len: Option<u8>,
        /// Extra record-header bytes: 8 in the modified format (ifindex, protocol, type, pad).
        extra: usize,
    },
    Pcapng {
        big_endian: bool,
    },
    Btsnoop {
        datalink: Btsnoop,
    },
}

/// The btsnoop datalink types the agent reads, normalized to a LINKTYPE on the way out.
#[derive(Clone, Copy)]
enum Btsnoop {
    /// 1001: HCI packets without the H4 type byte; the record flags say which kind.
    H1,
    /// 1002: H4 (type byte first).
    H4,
    /// 2001: BlueZ monitor; the record flags carry adapter index and opcode.
    Monitor,
}

#[derive(Clone, Copy)]
struct Interface {
    link: LinkType,
    /// Nanoseconds per timestamp unit numerator/denominator: ts_ns = units * mul / div.
    mul: i128,
    div: i128,
    fcs_len: Option<u8>,
}

/// Streams packets out of a pcap, pcapng or btsnoop file.
///
/// Packets are handed out in place from the input's buffer where it holds them whole (a
/// memory map always does, a `BufReader` but at its edges), else copied.
pub struct CaptureReader<R: BufRead> {
    input: R,
    format: Format,
    interfaces: Vec<Interface>,
    offset: u64,
    buf: Vec<u8>,
    /// Bytes of the last packet handed out in place, consumed at the next call.
    pending: usize,
}

impl<R: BufRead> std::fmt::Debug for CaptureReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureReader")
            .field("offset", &self.offset)
            .finish()
    }
}

const PCAP_US: u32 = 0xa1b2_c3d4;
const PCAP_NS: u32 = 0xa1b2_3c4d;
/// Alexey Kuznetzov's patched libpcap ("modified pcap"): 24-byte record headers.
const PCAP_MODIFIED: u32 = 0xa1b2_cd34;
const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_BOM: u32 = 0x1a2b_3c4d;
const BTSNOOP: &[u8; 8] = b"btsnoop\0";
/// Microseconds from 0000-01-01 (btsnoop's epoch) to 1970-01-01.
const BTSNOOP_EPOCH_US: i64 = 0x00dc_ddb3_0f2f_8000;

/// Known formats the agent does not read, by their first bytes, with what to do.
fn known_other_format(magic: [u8; 4]) -> Option<(&'static str, &'static str)> {
    const CONVERT: &str = "convert it with `editcap -F pcapng IN OUT` (Wireshark)";
    match magic {
        [0x1f, 0x8b, ..] => Some(("a gzip-compressed file", "decompress it first (gunzip)")),
        [0x28, 0xb5, 0x2f, 0xfd] => {
            Some(("a zstd-compressed file", "decompress it first (unzstd)"))
        }
        [0x04, 0x22, 0x4d, 0x18] => Some(("an lz4-compressed file", "decompress it first (unlz4)")),
        [0xfd, b'7', b'z', b'X'] => Some(("an xz-compressed file", "decompress it first (unxz)")),
        [b'B', b'Z', b'h', ..] => {
            Some(("a bzip2-compressed file", "decompress it first (bunzip2)"))
        }
        [b's', b'n', b'o', b'o'] => Some(("a Solaris snoop capture", CONVERT)),
        [b'G', b'M', b'B', b'U'] => Some(("a Microsoft Network Monitor 2 capture", CONVERT)),
        [b'R', b'T', b'S', b'S'] => Some(("a Microsoft Network Monitor 1 capture", CONVERT)),
        [b'S', b'Q', b'L', b'i'] => Some((
            "an SQLite database (a Kismet .kismet log?)",
            "export its packets with `kismetdb_to_pcap --in LOG --out FILE.pcapng`",
        )),
        _ => None,
    }
}

impl<R: BufRead> CaptureReader<R> {
    /// Reads the file header and detects the format.
    pub fn new(mut input: R) -> Result<Self, FileError> {
        let mut magic = [0u8; 4];
        if !read_header_or_eof(&mut input, &mut magic, "file header", 0)? {
            return Err(FileError::Empty);
        }
        let le = u32::from_le_bytes(magic);
        let be = u32::from_be_bytes(magic);
        let mut reader = CaptureReader {
            input,
            format: Format::Pcapng { big_endian: false },
            interfaces: Vec::new(),
            offset: 4,
            buf: Vec::with_capacity(4096),
            pending: 0,
        };
        reader.format = match (le, be) {
            (PCAP_US, _) | (_, PCAP_US) => reader.pcap_header(be == PCAP_US, false, 0, magic)?,
            (PCAP_NS, _) | (_, PCAP_NS) => reader.pcap_header(be == PCAP_NS, true, 0, magic)?,
            (PCAP_MODIFIED, _) | (_, PCAP_MODIFIED) => {
                reader.pcap_header(be == PCAP_MODIFIED, false, 8, magic)?
            }
            (PCAPNG_SHB, _) => reader.pcapng_first_section()?,
            _ if magic == BTSNOOP[..4] => reader.btsnoop_header(magic)?,
            _ => {
                return Err(match known_other_format(magic) {
                    Some((format, advice)) => FileError::Unsupported {
                        format: format.into(),
                        magic,
                        advice,
                    },
                    None => FileError::NotACapture(magic),
                });
            }
        };
        Ok(reader)
    }

    /// The distinct link types of the next packets, in the order met: at most `limit`
    /// packets are read, fewer once `enough` holds for the types met, or at the file's end
    /// or a read error (returned beside the types met before it).
    pub fn link_types(
        &mut self,
        limit: usize,
        enough: impl Fn(&[LinkType]) -> bool,
    ) -> (Vec<LinkType>, Option<FileError>) {
        let mut links = Vec::new();
        for _ in 0..limit {
            match self.next_packet() {
                Ok(Some(p)) => {
                    if !links.contains(&p.link) {
                        links.push(p.link);
                    }
                }
                Ok(None) => break,
                Err(e) => return (links, Some(e)),
            }
            if enough(&links) {
                break;
            }
        }
        (links, None)
    }

    /// The next packet, `None` at the end of the file.
    pub fn next_packet(&mut self) -> Result<Option<Packet<'_>>, FileError> {
        self.input.consume(std::mem::take(&mut self.pending));
        match self.format {
            Format::Pcap { .. } => self.next_pcap(),
            Format::Pcapng { .. } => self.next_pcapng(),
            Format::Btsnoop { datalink } => self.next_btsnoop(datalink),
        }
    }
}

fn corrupt(what: &'static str, offset: u64, reason: &str) -> FileError {
    FileError::Corrupt {
        what,
        offset,
        reason: reason.into(),
    }
}

fn u32_at(b: &[u8], at: usize, big_endian: bool) -> u32 {
    let bytes = [b[at], b[at + 1], b[at + 2], b[at + 3]];
    if big_endian {
        u32::from_be_bytes(bytes)
    } else {
        u32::from_le_bytes(bytes)
    }
}

fn u16_at(b: &[u8], at: usize, big_endian: bool) -> u16 {
    let bytes = [b[at], b[at + 1]];
    if big_endian {
        u16::from_be_bytes(bytes)
    } else {
        u16::from_le_bytes(bytes)
    }
}

impl<R: BufRead> CaptureReader<R> {
    /// The next `len` bytes of the input: in place when its buffer holds them (consumed at
    /// the next packet), else read into `buf`.
    fn record(&mut self, len: usize, what: &'static str, offset: u64) -> Result<&[u8], FileError> {
        if self.input.fill_buf()?.len() >= len {
            self.pending = len;
            return Ok(&self.input.fill_buf()?[..len]);
        }
        self.buf.resize(len, 0);
        read_exact_or(&mut self.input, &mut self.buf, what, offset)?;
        Ok(&self.buf)
    }
}

fn read_exact_or<R: Read>(
    input: &mut R,
    buf: &mut [u8],
    what: &'static str,
    offset: u64,
) -> Result<(), FileError> {
    input.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => FileError::Truncated { what, offset },
        _ => FileError::Io(e),
    })
}

/// Fills `buf`; `false` at a clean end of file, an error if the file ends inside it.
fn read_header_or_eof<R: Read>(
    input: &mut R,
    buf: &mut [u8],
    what: &'static str,
    offset: u64,
) -> Result<bool, FileError> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(FileError::Truncated { what, offset }),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FileError::Io(e)),
        }
    }
    Ok(true)
}

mod btsnoop;
pub mod mapped;
mod pcap;
mod pcapng;

#[cfg(test)]
mod tests;
