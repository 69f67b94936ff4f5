//! pcapng: sections, interfaces with their own link types, and every block type, read or
//! skipped by its length without buffering.

use std::io::{BufRead, Read};

use super::*;

pub(super) fn section_byte_order(bom: &[u8], start: u64) -> Result<bool, FileError> {
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

/// A block length must hold the block's fixed part, be a multiple of 4 and stay within
/// Wireshark's own limit for any block (wiretap/pcapng.c `MAX_BLOCK_SIZE`, 128 MiB and a
/// packet: it writes name resolution, decryption secrets and custom blocks of many MiB, never
/// more). Skipped blocks are streamed past, packet data is capped by [`MAX_RECORD`]; a larger
/// length is a corrupt field, which would otherwise swallow the rest of the file as a
/// "truncated" block.
///
/// [`MAX_RECORD`]: super::MAX_RECORD
pub(super) fn check_block_length(total: u32, min: u32, start: u64) -> Result<(), FileError> {
    const MAX_BLOCK: u32 = 134_348_832;
    if total > MAX_BLOCK {
        return Err(corrupt(
            "pcapng block",
            start,
            &format!("block length over {MAX_BLOCK} bytes, more than any writer makes"),
        ));
    }
    if total < min || !total.is_multiple_of(4) {
        return Err(corrupt(
            "pcapng block",
            start,
            "impossible block length (under the block's fixed part or not a multiple of 4)",
        ));
    }
    Ok(())
}

/// What the agent uses of an interface block's options.
pub(super) struct InterfaceOptions {
    /// `if_tsresol` (code 9) as ns = units * mul / div; microseconds by default.
    pub(super) resolution: (i128, i128),
    /// `if_fcslen` (code 13): bytes of FCS at the end of each packet.
    pub(super) fcs_len: Option<u8>,
}

pub(super) fn interface_options(mut options: &[u8], big_endian: bool) -> InterfaceOptions {
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

/// The FCS length (octets) a packet block's `epb_flags` option (code 2, 32 bits) gives in
/// its bits 5-8; `None` without the option or when the field is 0 ("not available").
pub(super) fn packet_fcs_len(mut options: &[u8], big_endian: bool) -> Option<u8> {
    while options.len() >= 4 {
        let code = u16_at(options, 0, big_endian);
        let len = usize::from(u16_at(options, 2, big_endian));
        if code == 0 || options.len() < 4 + len {
            return None;
        }
        if code == 2 && len == 4 {
            let flags = u32_at(&options[4..8], 0, big_endian);
            let fcs = ((flags >> 5) & 0xf) as u8;
            return (fcs != 0).then_some(fcs);
        }
        let padded = (len + 3) & !3;
        options = &options[(4 + padded).min(options.len())..];
    }
    None
}

/// `if_tsresol`: 10^-n seconds per unit, or 2^-n with the top bit set.
pub(super) fn ts_resolution(v: u8) -> Option<(i128, i128)> {
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

impl<R: BufRead> CaptureReader<R> {
    pub(super) fn pcapng_first_section(&mut self) -> Result<Format, FileError> {
        let mut head = [0u8; 8];
        read_exact_or(&mut self.input, &mut head, "pcapng section header", 0)?;
        let big_endian = section_byte_order(&head[4..8], 0)?;
        let total = u32_at(&head, 0, big_endian);
        self.offset = 12;
        check_block_length(total, 28, 0)?;
        self.finish_block(u64::from(total), 12, 0)?;
        Ok(Format::Pcapng { big_endian })
    }

    pub(super) fn next_pcapng(&mut self) -> Result<Option<Packet<'_>>, FileError> {
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
    pub(super) fn new_section(&mut self, head: &[u8; 8], start: u64) -> Result<(), FileError> {
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

    pub(super) fn interface_block(&mut self, total: u64, start: u64) -> Result<(), FileError> {
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
    pub(super) fn packet_block(
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
                    &format!("packet length over {MAX_RECORD} bytes"),
                ));
            }
            0 // another interface's big packet (USB, D-Bus): skipped unread below
        } else {
            self.buf.resize(captured as usize, 0);
            read_exact_or(&mut self.input, &mut self.buf, WHAT, start)?;
            self.offset += captured;
            captured as usize
        };
        let mut consumed = 28 + len as u64;
        let mut iface = iface;
        if len as u64 == captured {
            consumed = self.packet_options(total, captured, big_endian, &mut iface, start)?;
        }
        self.finish_block(total, consumed, start)?;
        let ts_ns = i64::try_from(i128::from(units) * iface.mul / iface.div).unwrap_or(i64::MAX);
        Ok(Some((ts_ns, iface, len)))
    }

    /// Reads a packet block's options after its `captured` bytes of data: a `epb_flags`
    /// (`pack_flags` in the obsolete block) FCS length applies to this packet, over the
    /// interface's `if_fcslen` (pcapng spec, section 4.3.1: bits 5-8, 0 = not given). Returns
    /// the bytes of the block consumed. Options beyond 64 KiB mean a corrupt block length.
    fn packet_options(
        &mut self,
        total: u64,
        captured: u64,
        big_endian: bool,
        iface: &mut Interface,
        start: u64,
    ) -> Result<u64, FileError> {
        const MAX_OPTIONS: u64 = 64 * 1024;
        let data_end = 28 + ((captured + 3) & !3);
        let Some(options) = total.checked_sub(data_end + 4) else {
            return Ok(28 + captured); // no room for padding: finish_block names the fault
        };
        if options == 0 {
            return Ok(28 + captured);
        }
        if options > MAX_OPTIONS {
            // A length field gone bad (tshark: "total block length ... is too large"); were
            // it skipped, every packet after it would be lost as a "truncated" end.
            return Err(corrupt(
                "pcapng packet block",
                start,
                &format!(
                    "block length leaves over {MAX_OPTIONS} bytes of options after its packet \
                     (the length field is corrupt)"
                ),
            ));
        }
        let what = "pcapng packet block options";
        let mut bytes = vec![0u8; (data_end - 28 - captured + options) as usize];
        read_exact_or(&mut self.input, &mut bytes, what, start)?;
        self.offset += bytes.len() as u64;
        let padding = (data_end - 28 - captured) as usize;
        if let Some(fcs) = packet_fcs_len(&bytes[padding..], big_endian) {
            iface.fcs_len = Some(fcs);
        }
        Ok(data_end + options)
    }

    pub(super) fn simple_packet_block(
        &mut self,
        total: u64,
        start: u64,
    ) -> Result<Interface, FileError> {
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
                &format!("packet length over {MAX_RECORD} bytes"),
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
    pub(super) fn read_body(
        &mut self,
        len: u64,
        what: &'static str,
        start: u64,
    ) -> Result<(), FileError> {
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
    pub(super) fn finish_block(
        &mut self,
        total: u64,
        consumed: u64,
        start: u64,
    ) -> Result<(), FileError> {
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
                "trailing length differs from the leading length",
            ));
        }
        Ok(())
    }
}
