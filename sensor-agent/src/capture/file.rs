//! pcap and pcapng capture files, read by magic number (not by file name).
//!
//! A small, total reader: every malformed structure is an error naming what and where, and
//! the reader never allocates more than [`MAX_RECORD`] for a record whatever a header claims.

use std::io::{self, Read};

use super::LinkType;

/// Largest record accepted (802.11 frames are < 12 KB; a bigger claim is corruption).
pub const MAX_RECORD: usize = 256 * 1024;

/// Why a capture file cannot be read (further).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// I/O failure.
    #[error("read error: {0}")]
    Io(#[from] io::Error),
    /// The first bytes are not a pcap or pcapng magic number.
    #[error("not a pcap or pcapng file (unknown magic number {0:#010x})")]
    NotACapture(u32),
    /// The file ends inside a header or record.
    #[error("file is truncated inside {what} at byte {offset}")]
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

/// One captured packet, borrowed from the reader's buffer.
#[derive(Debug)]
pub struct Packet<'a> {
    /// Capture time, nanoseconds since the Unix epoch (as recorded; may go backwards).
    pub ts_ns: i64,
    /// Link-layer type of the interface it was captured on.
    pub link: LinkType,
    /// The captured bytes.
    pub data: &'a [u8],
}

enum Format {
    Pcap {
        big_endian: bool,
        nanos: bool,
        link: LinkType,
    },
    Pcapng {
        big_endian: bool,
        interfaces: Vec<Interface>,
    },
}

#[derive(Clone, Copy)]
struct Interface {
    link: LinkType,
    /// Nanoseconds per timestamp unit numerator/denominator: ts_ns = units * mul / div.
    mul: i128,
    div: i128,
}

/// Streams packets out of a pcap or pcapng file.
pub struct CaptureReader<R: Read> {
    input: R,
    format: Format,
    offset: u64,
    buf: Vec<u8>,
}

impl<R: Read> std::fmt::Debug for CaptureReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureReader")
            .field("offset", &self.offset)
            .finish()
    }
}

const PCAP_US: u32 = 0xa1b2_c3d4;
const PCAP_NS: u32 = 0xa1b2_3c4d;
const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_BOM: u32 = 0x1a2b_3c4d;

impl<R: Read> CaptureReader<R> {
    /// Reads the file header and detects the format.
    pub fn new(mut input: R) -> Result<Self, FileError> {
        let mut magic = [0u8; 4];
        read_exact_or(&mut input, &mut magic, "file header", 0)?;
        let le = u32::from_le_bytes(magic);
        let be = u32::from_be_bytes(magic);
        let mut reader = CaptureReader {
            input,
            format: Format::Pcapng {
                big_endian: false,
                interfaces: Vec::new(),
            },
            offset: 4,
            buf: Vec::with_capacity(4096),
        };
        reader.format = match (le, be) {
            (PCAP_US, _) | (_, PCAP_US) => reader.pcap_header(be == PCAP_US, false)?,
            (PCAP_NS, _) | (_, PCAP_NS) => reader.pcap_header(be == PCAP_NS, true)?,
            (PCAPNG_SHB, _) => reader.pcapng_first_section()?,
            _ => return Err(FileError::NotACapture(be)),
        };
        Ok(reader)
    }

    fn pcap_header(&mut self, big_endian: bool, nanos: bool) -> Result<Format, FileError> {
        let mut rest = [0u8; 20];
        read_exact_or(&mut self.input, &mut rest, "pcap file header", 0)?;
        self.offset = 24;
        let link = u32_at(&rest, 16, big_endian);
        Ok(Format::Pcap {
            big_endian,
            nanos,
            link: LinkType::from_dlt(link & 0x0fff_ffff),
        })
    }

    fn pcapng_first_section(&mut self) -> Result<Format, FileError> {
        let mut head = [0u8; 8];
        read_exact_or(&mut self.input, &mut head, "pcapng section header", 0)?;
        let big_endian = match u32::from_le_bytes([head[4], head[5], head[6], head[7]]) {
            PCAPNG_BOM => false,
            _ if u32::from_be_bytes([head[4], head[5], head[6], head[7]]) == PCAPNG_BOM => true,
            _ => {
                return Err(FileError::Corrupt {
                    what: "pcapng section header",
                    offset: 0,
                    reason: "bad byte-order magic".into(),
                });
            }
        };
        let total = u32_at(&head, 0, big_endian) as usize;
        self.offset = 12;
        self.skip_block_body(total, 12, 0)?;
        Ok(Format::Pcapng {
            big_endian,
            interfaces: Vec::new(),
        })
    }

    /// Skips the rest of a block of `total` bytes of which `consumed` were read.
    fn skip_block_body(
        &mut self,
        total: usize,
        consumed: usize,
        start: u64,
    ) -> Result<(), FileError> {
        if total < consumed || !total.is_multiple_of(4) || total > MAX_RECORD + 64 {
            return Err(FileError::Corrupt {
                what: "pcapng block",
                offset: start,
                reason: format!("impossible block length {total}"),
            });
        }
        let mut skip = vec![0u8; total - consumed];
        read_exact_or(&mut self.input, &mut skip, "pcapng block", start)?;
        self.offset += skip.len() as u64;
        Ok(())
    }

    /// The next packet, `None` at the end of the file.
    pub fn next_packet(&mut self) -> Result<Option<Packet<'_>>, FileError> {
        match self.format {
            Format::Pcap { .. } => self.next_pcap(),
            Format::Pcapng { .. } => self.next_pcapng(),
        }
    }

    fn next_pcap(&mut self) -> Result<Option<Packet<'_>>, FileError> {
        let Format::Pcap {
            big_endian,
            nanos,
            link,
        } = self.format
        else {
            return Ok(None);
        };
        let start = self.offset;
        let mut head = [0u8; 16];
        if !read_header_or_eof(&mut self.input, &mut head, "pcap record header", start)? {
            return Ok(None);
        }
        let secs = i64::from(u32_at(&head, 0, big_endian));
        let frac = i64::from(u32_at(&head, 4, big_endian));
        let incl = u32_at(&head, 8, big_endian) as usize;
        if incl > MAX_RECORD {
            return Err(FileError::Corrupt {
                what: "pcap record",
                offset: start,
                reason: format!("record length {incl} exceeds {MAX_RECORD}"),
            });
        }
        self.buf.resize(incl, 0);
        read_exact_or(&mut self.input, &mut self.buf, "pcap record", start)?;
        self.offset += 16 + incl as u64;
        let ts_ns = secs * 1_000_000_000 + if nanos { frac } else { frac * 1000 };
        Ok(Some(Packet {
            ts_ns,
            link,
            data: &self.buf,
        }))
    }

    fn next_pcapng(&mut self) -> Result<Option<Packet<'_>>, FileError> {
        loop {
            let Format::Pcapng { big_endian, .. } = self.format else {
                return Ok(None);
            };
            let start = self.offset;
            let mut head = [0u8; 8];
            if !read_header_or_eof(&mut self.input, &mut head, "pcapng block header", start)? {
                return Ok(None);
            }
            let kind = u32_at(&head, 0, big_endian);
            let total = u32_at(&head, 4, big_endian) as usize;
            if total < 12 || !total.is_multiple_of(4) || total > MAX_RECORD + 64 {
                return Err(FileError::Corrupt {
                    what: "pcapng block",
                    offset: start,
                    reason: format!("impossible block length {total}"),
                });
            }
            self.buf.resize(total - 8, 0);
            read_exact_or(&mut self.input, &mut self.buf, "pcapng block", start)?;
            self.offset += total as u64;
            let body_len = total - 12;
            match kind {
                PCAPNG_SHB => self.new_section(start)?,
                1 => self.add_interface(body_len, start)?,
                6 => {
                    if let Some((ts_ns, link, from, len)) = self.enhanced_packet(body_len, start)? {
                        return Ok(Some(Packet {
                            ts_ns,
                            link,
                            data: &self.buf[from..from + len],
                        }));
                    }
                }
                3 => {
                    if let Some((link, len)) = self.simple_packet(body_len, start)? {
                        return Ok(Some(Packet {
                            ts_ns: 0,
                            link,
                            data: &self.buf[4..4 + len],
                        }));
                    }
                }
                _ => {} // name resolution, statistics, custom blocks: not needed
            }
        }
    }

    fn new_section(&mut self, start: u64) -> Result<(), FileError> {
        let bom = [self.buf[0], self.buf[1], self.buf[2], self.buf[3]];
        let big_endian = if u32::from_le_bytes(bom) == PCAPNG_BOM {
            false
        } else if u32::from_be_bytes(bom) == PCAPNG_BOM {
            true
        } else {
            return Err(FileError::Corrupt {
                what: "pcapng section header",
                offset: start,
                reason: "bad byte-order magic".into(),
            });
        };
        self.format = Format::Pcapng {
            big_endian,
            interfaces: Vec::new(),
        };
        Ok(())
    }

    fn add_interface(&mut self, body_len: usize, start: u64) -> Result<(), FileError> {
        let Format::Pcapng {
            big_endian,
            ref mut interfaces,
        } = self.format
        else {
            return Ok(());
        };
        if body_len < 8 {
            return Err(FileError::Corrupt {
                what: "pcapng interface block",
                offset: start,
                reason: "shorter than 8 bytes".into(),
            });
        }
        let link = LinkType::from_dlt(u32::from(u16_at(&self.buf, 0, big_endian)));
        let (mul, div) = ts_resolution(&self.buf[8..body_len], big_endian);
        interfaces.push(Interface { link, mul, div });
        Ok(())
    }

    fn enhanced_packet(
        &self,
        body_len: usize,
        start: u64,
    ) -> Result<Option<(i64, LinkType, usize, usize)>, FileError> {
        let Format::Pcapng {
            big_endian,
            ref interfaces,
        } = self.format
        else {
            return Ok(None);
        };
        let corrupt = |reason: &str| FileError::Corrupt {
            what: "pcapng packet block",
            offset: start,
            reason: reason.into(),
        };
        if body_len < 20 {
            return Err(corrupt("shorter than its fixed fields"));
        }
        let b = &self.buf;
        let iface = interfaces
            .get(u32_at(b, 0, big_endian) as usize)
            .ok_or_else(|| corrupt("refers to an undeclared interface"))?;
        let units =
            (u64::from(u32_at(b, 4, big_endian)) << 32) | u64::from(u32_at(b, 8, big_endian));
        let captured = u32_at(b, 12, big_endian) as usize;
        if captured > body_len - 20 {
            return Err(corrupt("captured length exceeds the block"));
        }
        let ts_ns = i64::try_from(i128::from(units) * iface.mul / iface.div).unwrap_or(i64::MAX);
        Ok(Some((ts_ns, iface.link, 20, captured)))
    }

    fn simple_packet(
        &self,
        body_len: usize,
        start: u64,
    ) -> Result<Option<(LinkType, usize)>, FileError> {
        let Format::Pcapng {
            big_endian,
            ref interfaces,
        } = self.format
        else {
            return Ok(None);
        };
        let Some(iface) = interfaces.first() else {
            return Err(FileError::Corrupt {
                what: "pcapng simple packet block",
                offset: start,
                reason: "no interface declared".into(),
            });
        };
        let original = u32_at(&self.buf, 0, big_endian) as usize;
        Ok(Some((iface.link, original.min(body_len.saturating_sub(4)))))
    }
}

/// The `if_tsresol` option (code 9) of an interface block, as ns = units * mul / div.
fn ts_resolution(mut options: &[u8], big_endian: bool) -> (i128, i128) {
    let mut resolution = (1000, 1); // default: microseconds
    while options.len() >= 4 {
        let code = u16_at(options, 0, big_endian);
        let len = usize::from(u16_at(options, 2, big_endian));
        let padded = (len + 3) & !3;
        if code == 0 || options.len() < 4 + len {
            break;
        }
        if code == 9 && len >= 1 {
            let v = options[4];
            let exp = u32::from(v & 0x7f);
            resolution = if v & 0x80 == 0 {
                // 10^-exp seconds per unit
                match exp {
                    0..=9 => (10i128.pow(9 - exp), 1),
                    10..=30 => (1, 10i128.pow(exp - 9)),
                    _ => resolution,
                }
            } else if exp <= 60 {
                (1_000_000_000, 1i128 << exp)
            } else {
                resolution
            };
        }
        options = &options[(4 + padded).min(options.len())..];
    }
    resolution
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap(link: u32, records: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&PCAP_US.to_le_bytes());
        f.extend_from_slice(&2u16.to_le_bytes());
        f.extend_from_slice(&4u16.to_le_bytes());
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&65535u32.to_le_bytes());
        f.extend_from_slice(&link.to_le_bytes());
        for (s, us, data) in records {
            f.extend_from_slice(&s.to_le_bytes());
            f.extend_from_slice(&us.to_le_bytes());
            f.extend_from_slice(&(data.len() as u32).to_le_bytes());
            f.extend_from_slice(&(data.len() as u32).to_le_bytes());
            f.extend_from_slice(data);
        }
        f
    }

    #[test]
    fn pcap_records_come_out_with_time_and_link_type() {
        let file = pcap(127, &[(10, 500, b"abc"), (11, 0, b"")]);
        let mut r = CaptureReader::new(&file[..]).expect("header");
        let p = r.next_packet().expect("ok").expect("first");
        assert_eq!(
            (p.ts_ns, p.link, p.data),
            (10_000_500_000, LinkType::Radiotap, &b"abc"[..])
        );
        let p = r.next_packet().expect("ok").expect("second");
        assert_eq!(p.data.len(), 0);
        assert!(r.next_packet().expect("ok").is_none());
    }

    #[test]
    fn not_a_capture_names_the_magic() {
        let err = CaptureReader::new(&b"hello world, not pcap"[..]).expect_err("magic");
        assert!(
            err.to_string().contains("not a pcap or pcapng file"),
            "{err}"
        );
        assert!(matches!(
            CaptureReader::new(&b"ab"[..]),
            Err(FileError::Truncated { .. })
        ));
    }

    #[test]
    fn a_cut_record_is_reported_as_truncated_with_its_offset() {
        let mut file = pcap(105, &[(1, 0, b"abcdef")]);
        file.truncate(file.len() - 2);
        let mut r = CaptureReader::new(&file[..]).expect("header");
        let err = r.next_packet().expect_err("truncated");
        assert!(
            err.to_string()
                .contains("truncated inside pcap record at byte 24"),
            "{err}"
        );
    }

    #[test]
    fn absurd_record_lengths_are_refused_without_allocating() {
        let mut file = pcap(105, &[]);
        file.extend_from_slice(&[0; 8]);
        file.extend_from_slice(&u32::MAX.to_le_bytes());
        file.extend_from_slice(&u32::MAX.to_le_bytes());
        let mut r = CaptureReader::new(&file[..]).expect("header");
        assert!(matches!(r.next_packet(), Err(FileError::Corrupt { .. })));
    }

    #[test]
    fn pcapng_resolution_option_is_honoured() {
        let mut opts = Vec::new();
        opts.extend_from_slice(&9u16.to_le_bytes());
        opts.extend_from_slice(&1u16.to_le_bytes());
        opts.extend_from_slice(&[9, 0, 0, 0]);
        assert_eq!(ts_resolution(&opts, false), (1, 1));
        assert_eq!(ts_resolution(&[], false), (1000, 1));
    }
}
