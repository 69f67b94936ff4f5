//! Capture files, read by magic number (not by file name): pcap (microsecond and nanosecond,
//! either byte order, and Kuznetzov's "modified" pcap), pcapng (every block type, several
//! interfaces and sections) and btsnoop (`btmon -w`, Android's HCI snoop log).
//!
//! A small, total reader: every malformed structure is an error naming what and where. Only
//! packet data is held in memory, at most [`MAX_RECORD`] bytes of it; blocks the agent does
//! not need (name resolution, statistics, decryption secrets, custom blocks) are skipped by
//! their length without being buffered, up to [`MAX_BLOCK`].

use std::io::{self, Read};

use super::LinkType;

/// Largest packet accepted (802.11 frames are < 12 KB, BLE and HCI packets < 300 B; a
/// bigger claim on a supported link type is corruption).
pub const MAX_RECORD: usize = 256 * 1024;

/// Largest pcapng block accepted. Wireshark writes name resolution, decryption secrets and
/// custom blocks of several MiB; 64 MiB leaves room for those and still stops a corrupt
/// length field from sending the reader through gigabytes.
pub const MAX_BLOCK: u64 = 64 * 1024 * 1024;

/// Why a capture file cannot be read (further).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// I/O failure.
    #[error("read error: {0}")]
    Io(#[from] io::Error),
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

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One captured packet, borrowed from the reader's buffer.
#[derive(Debug)]
pub struct Packet<'a> {
    /// Capture time, nanoseconds since the Unix epoch (as recorded; may go backwards).
    pub ts_ns: i64,
    /// Link-layer type of the interface it was captured on.
    pub link: LinkType,
    /// Bytes of frame check sequence at the end of `data`, when the file declares it (the
    /// pcap header's FCS annotation, a pcapng interface's `if_fcslen`); `None` when it does
    /// not say (radiotap then says it per frame).
    pub fcs_len: Option<u8>,
    /// The captured bytes. Empty for a packet of an unsupported link type whose data was
    /// larger than [`MAX_RECORD`] (skipped unread).
    pub data: &'a [u8],
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
pub struct CaptureReader<R: Read> {
    input: R,
    format: Format,
    interfaces: Vec<Interface>,
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
/// Alexey Kuznetzov's patched libpcap ("modified pcap"): 24-byte record headers.
const PCAP_MODIFIED: u32 = 0xa1b2_cd34;
const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_BOM: u32 = 0x1a2b_3c4d;
const BTSNOOP: &[u8; 8] = b"btsnoop\0";
/// Microseconds from 0000-01-01 (btsnoop's epoch) to 1970-01-01.
const BTSNOOP_EPOCH_US: i64 = 0x00dc_ddb3_0f2f_8000;

/// The pcap spec's link-type field (draft-ietf-opsawg-pcap §4): LinkType in the low 16
/// bits, the F bit (0x0400_0000) saying the upper four bits give the FCS length in 16-bit
/// words. libpcap's `LT_LINKTYPE`, `LT_FCS_LENGTH_PRESENT`, `LT_FCS_LENGTH`.
fn pcap_link_field(field: u32) -> (LinkType, Option<u8>) {
    let link = LinkType::from_dlt(field & 0xffff);
    let fcs = (field & 0x0400_0000 != 0).then(|| ((field >> 28) as u8) * 2);
    (link, fcs)
}

/// Known formats the agent does not read, by their first bytes, with what to do.
fn known_other_format(magic: [u8; 4]) -> Option<(&'static str, &'static str)> {
    const CONVERT: &str = "convert it with `editcap -F pcapng IN OUT` (Wireshark)";
    match magic {
        [0x1f, 0x8b, ..] => Some(("a gzip-compressed file", "decompress it first (gunzip)")),
        [0x28, 0xb5, 0x2f, 0xfd] => {
            Some(("a zstd-compressed file", "decompress it first (unzstd)"))
        }
        [0x04, 0x22, 0x4d, 0x18] => Some(("an lz4-compressed file", "decompress it first (unlz4)")),
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

impl<R: Read> CaptureReader<R> {
    /// Reads the file header and detects the format.
    pub fn new(mut input: R) -> Result<Self, FileError> {
        let mut magic = [0u8; 4];
        read_exact_or(&mut input, &mut magic, "file header", 0)?;
        let le = u32::from_le_bytes(magic);
        let be = u32::from_be_bytes(magic);
        let mut reader = CaptureReader {
            input,
            format: Format::Pcapng { big_endian: false },
            interfaces: Vec::new(),
            offset: 4,
            buf: Vec::with_capacity(4096),
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

    fn pcap_header(
        &mut self,
        big_endian: bool,
        nanos: bool,
        extra: usize,
        magic: [u8; 4],
    ) -> Result<Format, FileError> {
        let mut rest = [0u8; 20];
        read_exact_or(&mut self.input, &mut rest, "pcap file header", 0)?;
        self.offset = 24;
        let major = u16_at(&rest, 0, big_endian);
        if major != 2 {
            return Err(FileError::Unsupported {
                format: format!("pcap version {major}.{}", u16_at(&rest, 2, big_endian)),
                magic,
                advice: "only version 2.x exists in the pcap spec; the header is corrupt",
            });
        }
        let (link, fcs_len) = pcap_link_field(u32_at(&rest, 16, big_endian));
        Ok(Format::Pcap {
            big_endian,
            nanos,
            link,
            fcs_len,
            extra,
        })
    }

    fn btsnoop_header(&mut self, magic: [u8; 4]) -> Result<Format, FileError> {
        let mut rest = [0u8; 12];
        read_exact_or(&mut self.input, &mut rest, "btsnoop file header", 0)?;
        self.offset = 16;
        if rest[..4] != BTSNOOP[4..] {
            return Err(FileError::NotACapture(magic));
        }
        let datalink = match u32_at(&rest, 8, true) {
            1001 => Btsnoop::H1,
            1002 => Btsnoop::H4,
            2001 => Btsnoop::Monitor,
            other => {
                let name = match other {
                    1003 => "BCSP",
                    1004 => "H5 (three-wire UART)",
                    _ => "not in the btsnoop spec",
                };
                return Err(FileError::Unsupported {
                    format: format!("a btsnoop file of datalink type {other} ({name})"),
                    magic,
                    advice: "record with `btmon -w FILE` (datalink 2001) or an H4 snoop log",
                });
            }
        };
        Ok(Format::Btsnoop { datalink })
    }

    fn pcapng_first_section(&mut self) -> Result<Format, FileError> {
        let mut head = [0u8; 8];
        read_exact_or(&mut self.input, &mut head, "pcapng section header", 0)?;
        let big_endian = section_byte_order(&head[4..8], 0)?;
        let total = u32_at(&head, 0, big_endian);
        self.offset = 12;
        check_block_length(total, 28, 0)?;
        self.finish_block(u64::from(total), 12, 0)?;
        Ok(Format::Pcapng { big_endian })
    }

    /// The next packet, `None` at the end of the file.
    pub fn next_packet(&mut self) -> Result<Option<Packet<'_>>, FileError> {
        match self.format {
            Format::Pcap { .. } => self.next_pcap(),
            Format::Pcapng { .. } => self.next_pcapng(),
            Format::Btsnoop { datalink } => self.next_btsnoop(datalink),
        }
    }

    fn next_pcap(&mut self) -> Result<Option<Packet<'_>>, FileError> {
        let Format::Pcap {
            big_endian,
            nanos,
            link,
            fcs_len,
            extra,
        } = self.format
        else {
            return Ok(None);
        };
        let start = self.offset;
        let mut head = [0u8; 24];
        let head = &mut head[..16 + extra];
        if !read_header_or_eof(&mut self.input, head, "pcap record header", start)? {
            return Ok(None);
        }
        let secs = i64::from(u32_at(head, 0, big_endian));
        let frac = i64::from(u32_at(head, 4, big_endian));
        let incl = u32_at(head, 8, big_endian) as usize;
        if incl > MAX_RECORD {
            return Err(FileError::Corrupt {
                what: "pcap record",
                offset: start,
                reason: format!("record length {incl} exceeds {MAX_RECORD}"),
            });
        }
        self.buf.resize(incl, 0);
        read_exact_or(&mut self.input, &mut self.buf, "pcap record", start)?;
        self.offset += (16 + extra + incl) as u64;
        let ts_ns = secs * 1_000_000_000 + if nanos { frac } else { frac * 1000 };
        Ok(Some(Packet {
            ts_ns,
            link,
            fcs_len,
            data: &self.buf,
        }))
    }

    fn next_btsnoop(&mut self, datalink: Btsnoop) -> Result<Option<Packet<'_>>, FileError> {
        let start = self.offset;
        let mut head = [0u8; 24];
        if !read_header_or_eof(&mut self.input, &mut head, "btsnoop record header", start)? {
            return Ok(None);
        }
        let incl = u32_at(&head, 4, true) as usize;
        let flags = u32_at(&head, 8, true);
        let ts_us = i64::from_be_bytes([
            head[16], head[17], head[18], head[19], head[20], head[21], head[22], head[23],
        ]);
        if incl > MAX_RECORD {
            return Err(FileError::Corrupt {
                what: "btsnoop record",
                offset: start,
                reason: format!("record length {incl} exceeds {MAX_RECORD}"),
            });
        }
        // Normalize to a registered link type by prefixing what the record flags say.
        let (link, prefix, prefix_len) = match datalink {
            Btsnoop::H4 => (LinkType::HciH4, [0; 4], 0),
            Btsnoop::H1 => {
                // bit 1: command or event (else ACL data); bit 0: received (else sent)
                let h4_type = match (flags & 2 != 0, flags & 1 != 0) {
                    (true, true) => 0x04,
                    (true, false) => 0x01,
                    (false, _) => 0x02,
                };
                (LinkType::HciH4, [h4_type, 0, 0, 0], 1)
            }
            // adapter index (high 16 bits) and opcode (low 16), big-endian as in LINKTYPE 254
            Btsnoop::Monitor => (LinkType::BluetoothLinuxMonitor, flags.to_be_bytes(), 4),
        };
        let prefix = &prefix[..prefix_len];
        self.buf.clear();
        self.buf.extend_from_slice(prefix);
        let at = self.buf.len();
        self.buf.resize(at + incl, 0);
        read_exact_or(
            &mut self.input,
            &mut self.buf[at..],
            "btsnoop record",
            start,
        )?;
        self.offset += (24 + incl) as u64;
        let ts_ns = ts_us.saturating_sub(BTSNOOP_EPOCH_US).saturating_mul(1000);
        Ok(Some(Packet {
            ts_ns,
            link,
            fcs_len: None,
            data: &self.buf,
        }))
    }

    fn next_pcapng(&mut self) -> Result<Option<Packet<'_>>, FileError> {
        loop {
            let Format::Pcapng { big_endian } = self.format else {
                return Ok(None);
            };
            let start = self.offset;
            let mut head = [0u8; 8];
            if !read_header_or_eof(&mut self.input, &mut head, "pcapng block header", start)? {
                return Ok(None);
            }
            self.offset += 8;
            let kind = u32_at(&head, 0, big_endian);
            if kind == PCAPNG_SHB {
                self.new_section(&head, start)?;
                continue;
            }
            let total = u32_at(&head, 4, big_endian);
            check_block_length(total, 12, start)?;
            let total = u64::from(total);
            match kind {
                1 => self.interface_block(total, start)?,
                6 | 2 => {
                    if let Some((ts_ns, iface, len)) = self.packet_block(kind, total, start)? {
                        return Ok(Some(Packet {
                            ts_ns,
                            link: iface.link,
                            fcs_len: iface.fcs_len,
                            data: &self.buf[..len],
                        }));
                    }
                }
                3 => {
                    let iface = self.simple_packet_block(total, start)?;
                    return Ok(Some(Packet {
                        ts_ns: 0,
                        link: iface.link,
                        fcs_len: iface.fcs_len,
                        data: &self.buf,
                    }));
                }
                // Name resolution (4), interface statistics (5), systemd journal (9),
                // decryption secrets (10), custom (0xbad, 0x40000bad), process events and
                // anything newer: nothing to count, skipped by length.
                _ => self.finish_block(total, 8, start)?,
            }
        }
    }

    /// A Section Header Block inside the file: its byte order may differ from the last
    /// section's, and its interfaces start afresh.
    fn new_section(&mut self, head: &[u8; 8], start: u64) -> Result<(), FileError> {
        let mut bom = [0u8; 4];
        read_exact_or(&mut self.input, &mut bom, "pcapng section header", start)?;
        self.offset += 4;
        let big_endian = section_byte_order(&bom, start)?;
        let total = u32_at(head, 4, big_endian);
        check_block_length(total, 28, start)?;
        self.finish_block(u64::from(total), 12, start)?;
        self.format = Format::Pcapng { big_endian };
        self.interfaces.clear();
        Ok(())
    }

    fn interface_block(&mut self, total: u64, start: u64) -> Result<(), FileError> {
        let Format::Pcapng { big_endian } = self.format else {
            return Ok(());
        };
        if total < 20 {
            return Err(corrupt(
                "pcapng interface block",
                start,
                "shorter than 20 bytes",
            ));
        }
        self.read_body(total - 12, "pcapng interface block", start)?;
        self.finish_block(total, 8 + (total - 12), start)?;
        let link = LinkType::from_dlt(u32::from(u16_at(&self.buf, 0, big_endian)));
        let options = interface_options(&self.buf[8..], big_endian);
        self.interfaces.push(Interface {
            link,
            mul: options.resolution.0,
            div: options.resolution.1,
            fcs_len: options.fcs_len,
        });
        Ok(())
    }

    /// An Enhanced Packet Block (6) or the obsolete Packet Block (2): same layout but for
    /// the interface id (32 bits, or 16 bits and a 16-bit drop count).
    fn packet_block(
        &mut self,
        kind: u32,
        total: u64,
        start: u64,
    ) -> Result<Option<(i64, Interface, usize)>, FileError> {
        let Format::Pcapng { big_endian } = self.format else {
            return Ok(None);
        };
        const WHAT: &str = "pcapng packet block";
        if total < 32 {
            return Err(corrupt(WHAT, start, "shorter than its fixed fields"));
        }
        let mut fixed = [0u8; 20];
        read_exact_or(&mut self.input, &mut fixed, WHAT, start)?;
        self.offset += 20;
        let id = if kind == 6 {
            u32_at(&fixed, 0, big_endian)
        } else {
            u32::from(u16_at(&fixed, 0, big_endian))
        };
        let iface = *self
            .interfaces
            .get(id as usize)
            .ok_or_else(|| corrupt(WHAT, start, "refers to an undeclared interface"))?;
        let units = (u64::from(u32_at(&fixed, 4, big_endian)) << 32)
            | u64::from(u32_at(&fixed, 8, big_endian));
        let captured = u64::from(u32_at(&fixed, 12, big_endian));
        if captured > total - 32 {
            return Err(corrupt(WHAT, start, "captured length exceeds the block"));
        }
        let len = if captured as usize > MAX_RECORD {
            if iface.link.is_supported() {
                return Err(corrupt(
                    WHAT,
                    start,
                    &format!("packet length {captured} exceeds {MAX_RECORD}"),
                ));
            }
            0 // another interface's big packet (USB, D-Bus): skipped unread below
        } else {
            self.buf.resize(captured as usize, 0);
            read_exact_or(&mut self.input, &mut self.buf, WHAT, start)?;
            self.offset += captured;
            captured as usize
        };
        self.finish_block(total, 28 + len as u64, start)?;
        let ts_ns = i64::try_from(i128::from(units) * iface.mul / iface.div).unwrap_or(i64::MAX);
        Ok(Some((ts_ns, iface, len)))
    }

    fn simple_packet_block(&mut self, total: u64, start: u64) -> Result<Interface, FileError> {
        let Format::Pcapng { big_endian } = self.format else {
            return Err(corrupt(
                "pcapng simple packet block",
                start,
                "outside a section",
            ));
        };
        const WHAT: &str = "pcapng simple packet block";
        let Some(&iface) = self.interfaces.first() else {
            return Err(corrupt(WHAT, start, "no interface declared"));
        };
        if total < 16 {
            return Err(corrupt(WHAT, start, "shorter than its fixed fields"));
        }
        let mut original = [0u8; 4];
        read_exact_or(&mut self.input, &mut original, WHAT, start)?;
        self.offset += 4;
        let room = total - 16;
        let len = u64::from(u32_at(&original, 0, big_endian)).min(room);
        if len as usize > MAX_RECORD && iface.link.is_supported() {
            return Err(corrupt(
                WHAT,
                start,
                &format!("packet length {len} exceeds {MAX_RECORD}"),
            ));
        }
        let len = if len as usize > MAX_RECORD { 0 } else { len };
        self.buf.resize(len as usize, 0);
        read_exact_or(&mut self.input, &mut self.buf, WHAT, start)?;
        self.offset += len;
        self.finish_block(total, 12 + len, start)?;
        Ok(iface)
    }

    /// Reads `len` bytes into the buffer, growing it only as data arrives (a lying length
    /// field cannot make the reader allocate more than the file holds).
    fn read_body(&mut self, len: u64, what: &'static str, start: u64) -> Result<(), FileError> {
        self.buf.clear();
        let got = (&mut self.input).take(len).read_to_end(&mut self.buf)?;
        if (got as u64) < len {
            return Err(FileError::Truncated {
                what,
                offset: start,
            });
        }
        Ok(())
    }

    /// Skips the rest of a block of `total` bytes of which `consumed` (header included)
    /// were read, without buffering it, and checks the trailing length copy.
    fn finish_block(&mut self, total: u64, consumed: u64, start: u64) -> Result<(), FileError> {
        let Some(rest) = total.checked_sub(consumed + 4) else {
            return Err(corrupt("pcapng block", start, "fields run past its length"));
        };
        let skipped = io::copy(&mut (&mut self.input).take(rest), &mut io::sink())?;
        if skipped < rest {
            return Err(FileError::Truncated {
                what: "pcapng block",
                offset: start,
            });
        }
        let mut trailer = [0u8; 4];
        read_exact_or(&mut self.input, &mut trailer, "pcapng block", start)?;
        self.offset = start + total;
        let big_endian = matches!(self.format, Format::Pcapng { big_endian: true });
        let copy = u64::from(u32_at(&trailer, 0, big_endian));
        // The first section's SHB is finished before the format is set; its trailer is
        // checked in either byte order.
        let copy_swapped = u64::from(u32_at(&trailer, 0, !big_endian));
        if copy != total && copy_swapped != total {
            return Err(corrupt(
                "pcapng block",
                start,
                &format!("trailing length {copy} differs from the leading length {total}"),
            ));
        }
        Ok(())
    }
}

fn corrupt(what: &'static str, offset: u64, reason: &str) -> FileError {
    FileError::Corrupt {
        what,
        offset,
        reason: reason.into(),
    }
}

fn section_byte_order(bom: &[u8], start: u64) -> Result<bool, FileError> {
    let bom = [bom[0], bom[1], bom[2], bom[3]];
    if u32::from_le_bytes(bom) == PCAPNG_BOM {
        Ok(false)
    } else if u32::from_be_bytes(bom) == PCAPNG_BOM {
        Ok(true)
    } else {
        Err(corrupt(
            "pcapng section header",
            start,
            "bad byte-order magic",
        ))
    }
}

/// A block length must hold the block's fixed part, be a multiple of 4 and stay under
/// [`MAX_BLOCK`].
fn check_block_length(total: u32, min: u32, start: u64) -> Result<(), FileError> {
    if total < min || !total.is_multiple_of(4) || u64::from(total) > MAX_BLOCK {
        return Err(corrupt(
            "pcapng block",
            start,
            &format!("impossible block length {total}"),
        ));
    }
    Ok(())
}

/// What the agent uses of an interface block's options.
struct InterfaceOptions {
    /// `if_tsresol` (code 9) as ns = units * mul / div; microseconds by default.
    resolution: (i128, i128),
    /// `if_fcslen` (code 13): bytes of FCS at the end of each packet.
    fcs_len: Option<u8>,
}

fn interface_options(mut options: &[u8], big_endian: bool) -> InterfaceOptions {
    let mut found = InterfaceOptions {
        resolution: (1000, 1),
        fcs_len: None,
    };
    while options.len() >= 4 {
        let code = u16_at(options, 0, big_endian);
        let len = usize::from(u16_at(options, 2, big_endian));
        let padded = (len + 3) & !3;
        if code == 0 || options.len() < 4 + len {
            break;
        }
        match (code, len) {
            (9, 1..) => found.resolution = ts_resolution(options[4]).unwrap_or(found.resolution),
            (13, 1..) => found.fcs_len = Some(options[4]),
            _ => {}
        }
        options = &options[(4 + padded).min(options.len())..];
    }
    found
}

/// `if_tsresol`: 10^-n seconds per unit, or 2^-n with the top bit set.
fn ts_resolution(v: u8) -> Option<(i128, i128)> {
    let exp = u32::from(v & 0x7f);
    if v & 0x80 == 0 {
        match exp {
            0..=9 => Some((10i128.pow(9 - exp), 1)),
            10..=30 => Some((1, 10i128.pow(exp - 9))),
            _ => None,
        }
    } else if exp <= 60 {
        Some((1_000_000_000, 1i128 << exp))
    } else {
        None
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
            err.to_string()
                .contains("not a pcap, pcapng or btsnoop file (magic bytes 68 65 6c 6c"),
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
    fn pcapng_resolution_and_fcs_length_options_are_honoured() {
        let mut opts = Vec::new();
        opts.extend_from_slice(&9u16.to_le_bytes());
        opts.extend_from_slice(&1u16.to_le_bytes());
        opts.extend_from_slice(&[9, 0, 0, 0]);
        opts.extend_from_slice(&13u16.to_le_bytes());
        opts.extend_from_slice(&1u16.to_le_bytes());
        opts.extend_from_slice(&[4, 0, 0, 0]);
        let found = interface_options(&opts, false);
        assert_eq!((found.resolution, found.fcs_len), ((1, 1), Some(4)));
        let none = interface_options(&[], false);
        assert_eq!((none.resolution, none.fcs_len), ((1000, 1), None));
        assert_eq!(ts_resolution(0x80 | 10), Some((1_000_000_000, 1024)));
    }

    #[test]
    fn the_link_type_field_carries_the_fcs_annotation_in_its_upper_bits() {
        assert_eq!(pcap_link_field(0x2400_0069), (LinkType::Ieee80211, Some(4)));
        assert_eq!(pcap_link_field(127), (LinkType::Radiotap, None));
        // FCS length bits without the F bit mean nothing
        assert_eq!(pcap_link_field(0x2000_0069), (LinkType::Ieee80211, None));
        assert_eq!(pcap_link_field(0x0400_0110), (LinkType::NordicBle, Some(0)));
    }

    /// A pcapng file: SHB, one IDB of `link`, then `blocks` (type, body).
    fn pcapng(link: u16, blocks: &[(u32, Vec<u8>)]) -> Vec<u8> {
        let mut f = Vec::new();
        let mut block = |kind: u32, body: &[u8]| {
            let total = (12 + body.len()) as u32;
            f.extend_from_slice(&kind.to_le_bytes());
            f.extend_from_slice(&total.to_le_bytes());
            f.extend_from_slice(body);
            f.extend_from_slice(&total.to_le_bytes());
        };
        let mut shb = PCAPNG_BOM.to_le_bytes().to_vec();
        shb.extend_from_slice(&[1, 0, 0, 0]);
        shb.extend_from_slice(&[0xff; 8]);
        block(PCAPNG_SHB, &shb);
        let mut idb = link.to_le_bytes().to_vec();
        idb.extend_from_slice(&[0, 0, 0, 0, 1, 0]);
        block(1, &idb);
        for (kind, body) in blocks {
            block(*kind, body);
        }
        f
    }

    fn epb(data_len: u32, data: &[u8]) -> Vec<u8> {
        let mut b = vec![0; 12];
        b.extend_from_slice(&data_len.to_le_bytes());
        b.extend_from_slice(&data_len.to_le_bytes());
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn big_packets_of_unsupported_interfaces_are_skipped_unread_and_big_blocks_skipped() {
        // a 300 kB USB packet (LINKTYPE 189), then a 1 MB custom block, then a small packet
        let big = vec![0u8; 300 * 1024];
        let file = pcapng(
            189,
            &[
                (6, epb(big.len() as u32, &big)),
                (0x4000_0bad, vec![0; 1024 * 1024]),
                (6, epb(4, b"abcd")),
            ],
        );
        let mut r = CaptureReader::new(&file[..]).expect("header");
        let p = r.next_packet().expect("ok").expect("big");
        assert_eq!((p.link, p.data.len()), (LinkType::Other(189), 0));
        let p = r.next_packet().expect("ok").expect("small");
        assert_eq!(p.data, b"abcd");
        assert!(r.next_packet().expect("ok").is_none());
        // the same packet on a radio interface is corruption
        let file = pcapng(127, &[(6, epb(big.len() as u32, &big))]);
        let mut r = CaptureReader::new(&file[..]).expect("header");
        assert!(matches!(r.next_packet(), Err(FileError::Corrupt { .. })));
    }

    #[test]
    fn lying_block_lengths_are_refused_without_allocating_them() {
        // a block claiming 60 MB in a 100-byte file: truncated, not a 60 MB allocation
        let mut file = pcapng(127, &[]);
        file.extend_from_slice(&4u32.to_le_bytes());
        file.extend_from_slice(&(60u32 << 20).to_le_bytes());
        let mut r = CaptureReader::new(&file[..]).expect("header");
        assert!(matches!(r.next_packet(), Err(FileError::Truncated { .. })));
        // beyond MAX_BLOCK: corrupt
        let mut file = pcapng(127, &[]);
        file.extend_from_slice(&4u32.to_le_bytes());
        file.extend_from_slice(&u32::MAX.wrapping_sub(3).to_le_bytes());
        let mut r = CaptureReader::new(&file[..]).expect("header");
        let err = r.next_packet().expect_err("corrupt");
        assert!(err.to_string().contains("impossible block length"), "{err}");
    }

    #[test]
    fn every_prefix_of_a_valid_file_is_an_error_or_a_clean_end_never_a_panic() {
        let file = pcapng(
            127,
            &[
                (6, epb(4, b"abcd")),
                (2, epb(3, b"xyz\0")),
                (3, vec![2, 0, 0, 0, 1, 2, 0, 0]),
            ],
        );
        for cut in 0..file.len() {
            if let Ok(mut r) = CaptureReader::new(&file[..cut]) {
                while let Ok(Some(_)) = r.next_packet() {}
            }
        }
        let mut r = CaptureReader::new(&file[..]).expect("header");
        let mut lens = Vec::new();
        while let Some(p) = r.next_packet().expect("valid") {
            lens.push(p.data.len());
        }
        assert_eq!(lens, vec![4, 3, 2]);
    }
}
