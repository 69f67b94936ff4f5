//! pcap: the classic format (microsecond and nanosecond timestamps, either byte order,
//! Kuznetzov's "modified" records and the Nokia, Red Hat 6.1 and SuSE 6.3 variants with
//! longer record headers) and the FCS annotation in its link-type field.

use std::io::BufRead;

use super::*;

/// The pcap spec's link-type field (draft-ietf-opsawg-pcap §4): LinkType in the low 16
/// bits, the F bit (0x0400_0000) saying the upper four bits give the FCS length in 16-bit
/// words. libpcap's `LT_LINKTYPE`, `LT_FCS_LENGTH_PRESENT`, `LT_FCS_LENGTH`.
pub(super) fn pcap_link_field(field: u32) -> (LinkType, Option<u8>) {
    let link = LinkType::from_dlt(field & 0xffff);
    let fcs = (field & 0x0400_0000 != 0).then(|| ((field >> 28) as u8) * 2);
    (link, fcs)
}

impl<R: BufRead> CaptureReader<R> {
    pub(super) fn pcap_header(
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
        let extra = self.record_padding(big_endian, nanos, extra);
        Ok(Format::Pcap {
            big_endian,
            nanos,
            link,
            fcs_len,
            extra,
        })
    }

    /// The bytes a record header carries after the standard 16. Old patched libpcaps share
    /// the magics with longer record headers: Nokia's (+4), Red Hat 6.1's (+8) under the
    /// standard magic, SuSE 6.3's (+12) under the modified one (+8 otherwise). As Wireshark
    /// does (wiretap/libpcap.c), the layout under which the first two records read as
    /// records wins; where none does (a short or damaged start), the magic's own.
    fn record_padding(&mut self, big_endian: bool, nanos: bool, magic_padding: usize) -> usize {
        let candidates: &[usize] = match (nanos, magic_padding) {
            (true, _) => return magic_padding,
            (false, 0) => &[0, 8, 4],
            (false, _) => &[8, 12],
        };
        let Ok(start) = self.input.fill_buf() else {
            return magic_padding;
        };
        candidates
            .iter()
            .copied()
            .find(|&padding| records_fit(start, padding, big_endian))
            .unwrap_or(magic_padding)
    }

    pub(super) fn next_pcap(&mut self) -> Result<Option<Packet<'_>>, FileError> {
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
        let mut head = [0u8; 28];
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
                reason: format!(
                    "record length over {MAX_RECORD} bytes (the record header is corrupt)"
                ),
            });
        }
        self.offset += (16 + extra + incl) as u64;
        let ts_ns = secs * 1_000_000_000 + if nanos { frac } else { frac * 1000 };
        Ok(Some(Packet {
            ts_ns,
            link,
            fcs_len,
            data: self.record(incl, "pcap record", start)?,
        }))
    }
}

/// Whether `bytes`, the start of a microsecond pcap's records, read as two records with
/// `padding` bytes after each standard header (or as records up to the end of `bytes`):
/// captured length within the original length and the record cap, microseconds under a
/// million, the second record within a day of the first.
fn records_fit(bytes: &[u8], padding: usize, big_endian: bool) -> bool {
    let mut at = 0;
    let mut first_secs = None;
    for _ in 0..2 {
        if at == bytes.len() && at > 0 {
            return true;
        }
        let Some(head) = bytes.get(at..at + 16) else {
            return false;
        };
        let secs = u32_at(head, 0, big_endian);
        let micros = u32_at(head, 4, big_endian);
        let (incl, orig) = (u32_at(head, 8, big_endian), u32_at(head, 12, big_endian));
        let near = first_secs.is_none_or(|first: u32| first.abs_diff(secs) <= 86_400);
        if micros >= 1_000_000 || incl > orig || incl as usize > MAX_RECORD || !near {
            return false;
        }
        first_secs = Some(secs);
        at += 16 + padding + incl as usize;
    }
    true
}
