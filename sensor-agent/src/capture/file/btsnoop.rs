//! btsnoop (`btmon -w`, Android's HCI snoop log): HCI packets normalized to a LINKTYPE.

use std::io::BufRead;

use super::*;

impl<R: BufRead> CaptureReader<R> {
    pub(super) fn btsnoop_header(&mut self, magic: [u8; 4]) -> Result<Format, FileError> {
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

    pub(super) fn next_btsnoop(
        &mut self,
        datalink: Btsnoop,
    ) -> Result<Option<Packet<'_>>, FileError> {
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
                reason: format!(
                    "record length over {MAX_RECORD} bytes (the record header is corrupt)"
                ),
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
}
