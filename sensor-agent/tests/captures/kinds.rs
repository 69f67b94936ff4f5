//! Capture files of every kind the field's tools write, made here byte by byte, and
//! counted by tshark and by `replay`: the two must agree on each.
//!
//! The writers below follow the format specs (pcap: draft-ietf-opsawg-pcap; pcapng:
//! draft-ietf-opsawg-pcapng; btsnoop: RFC 1761 as extended by BlueZ; the nRF Sniffer's
//! UART format; Bluetooth Core 5.x Vol 4 Part E 7.7.65 and Vol 6 Part B 2.3), and tshark
//! must read them as meant: every test also checks that tshark saw the frames it was given.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// A probe request from `sa` (SSID wildcard, four rates), without FCS.
pub fn probe_request(sa: [u8; 6], seq: u16) -> Vec<u8> {
    let mut f = vec![0x40, 0x00, 0x00, 0x00];
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&sa);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&(seq << 4).to_le_bytes());
    f.extend_from_slice(&[0x00, 0x00, 0x01, 0x04, 0x02, 0x04, 0x0b, 0x16]);
    f
}

/// A beacon from `bssid`: never counted.
pub fn beacon(bssid: [u8; 6]) -> Vec<u8> {
    let mut f = vec![0x80, 0x00, 0x00, 0x00];
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&bssid);
    f.extend_from_slice(&bssid);
    f.extend_from_slice(&[0x10, 0x00]);
    f.extend_from_slice(&[0; 8]); // timestamp
    f.extend_from_slice(&[0x64, 0x00, 0x01, 0x04]); // interval, capabilities
    f.extend_from_slice(&[0x00, 0x02, b'a', b'p']);
    f
}

/// `frame` with its correct FCS appended.
pub fn with_fcs(frame: &[u8]) -> Vec<u8> {
    let mut f = frame.to_vec();
    f.extend_from_slice(&crc32fast::hash(frame).to_le_bytes());
    f
}

/// `frame` with a wrong FCS appended.
pub fn with_wrong_fcs(frame: &[u8]) -> Vec<u8> {
    let mut f = with_fcs(frame);
    let last = f.len() - 1;
    f[last] ^= 0x5a;
    f
}

/// Radiotap Flags bits.
pub const FCS_AT_END: u8 = 0x10;
pub const BAD_FCS: u8 = 0x40;

/// A radiotap header (Flags, dBm signal) before `frame`.
pub fn radiotap(flags: u8, dbm: i8, frame: &[u8]) -> Vec<u8> {
    let mut r = vec![0, 0, 12, 0];
    r.extend_from_slice(&(0x02u32 | 0x20).to_le_bytes());
    r.push(flags);
    r.push(dbm as u8);
    r.extend_from_slice(&[0, 0]);
    r.extend_from_slice(frame);
    r
}

/// A PPI header with an 802.11-Common field (`flags`: 0x0001 FCS present, 0x0004 FCS
/// invalid) before `frame`.
pub fn ppi(flags: u16, dbm: i8, frame: &[u8]) -> Vec<u8> {
    let mut p = vec![0, 0, 32, 0];
    p.extend_from_slice(&105u32.to_le_bytes());
    p.extend_from_slice(&2u16.to_le_bytes());
    p.extend_from_slice(&20u16.to_le_bytes());
    let mut common = [0u8; 20];
    common[8..10].copy_from_slice(&flags.to_le_bytes());
    common[18] = dbm as u8;
    p.extend_from_slice(&common);
    p.extend_from_slice(frame);
    p
}

/// Classic pcap magic variants.
#[derive(Clone, Copy, Debug)]
pub enum Magic {
    Micro,
    Nano,
    /// Kuznetzov's patched libpcap: 0xa1b2cd34, 24-byte record headers.
    Modified,
}

/// A classic pcap file; `link_field` is written as is (link type plus annotations).
pub fn pcap(magic: Magic, big_endian: bool, link_field: u32, records: &[Vec<u8>]) -> Vec<u8> {
    let u32b = |v: u32| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let u16b = |v: u16| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut f = Vec::new();
    f.extend_from_slice(&u32b(match magic {
        Magic::Micro => 0xa1b2_c3d4,
        Magic::Nano => 0xa1b2_3c4d,
        Magic::Modified => 0xa1b2_cd34,
    }));
    f.extend_from_slice(&u16b(2));
    f.extend_from_slice(&u16b(4));
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&u32b(65535));
    f.extend_from_slice(&u32b(link_field));
    for (i, data) in records.iter().enumerate() {
        f.extend_from_slice(&u32b(1_700_000_000 + i as u32));
        f.extend_from_slice(&u32b(1000 * i as u32));
        f.extend_from_slice(&u32b(data.len() as u32));
        f.extend_from_slice(&u32b(data.len() as u32));
        if let Magic::Modified = magic {
            f.extend_from_slice(&u32b(2)); // ifindex
            f.extend_from_slice(&u16b(0)); // protocol
            f.extend_from_slice(&[0, 0]); // packet type, pad
        }
        f.extend_from_slice(data);
    }
    f
}

/// A pcapng writer: blocks in either byte order, several sections.
pub struct Pcapng {
    pub bytes: Vec<u8>,
    big_endian: bool,
}

impl Pcapng {
    pub fn new(big_endian: bool) -> Pcapng {
        let mut w = Pcapng {
            bytes: Vec::new(),
            big_endian,
        };
        w.section(big_endian);
        w
    }

    fn u32b(&self, v: u32) -> [u8; 4] {
        if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    fn u16b(&self, v: u16) -> [u8; 2] {
        if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    /// Any block: type, length, body padded to 4, length.
    pub fn block(&mut self, kind: u32, body: &[u8]) {
        let mut body = body.to_vec();
        while !body.len().is_multiple_of(4) {
            body.push(0);
        }
        let total = 12 + body.len() as u32;
        let (k, t) = (self.u32b(kind), self.u32b(total));
        self.bytes.extend_from_slice(&k);
        self.bytes.extend_from_slice(&t);
        self.bytes.extend_from_slice(&body);
        self.bytes.extend_from_slice(&t);
    }

    /// A new section (its interfaces start from 0).
    pub fn section(&mut self, big_endian: bool) {
        self.big_endian = big_endian;
        let mut body = self.u32b(0x1a2b_3c4d).to_vec();
        body.extend_from_slice(&self.u16b(1));
        body.extend_from_slice(&self.u16b(0));
        body.extend_from_slice(&[0xff; 8]); // section length unknown
        self.block(0x0a0d_0d0a, &body);
    }

    /// An interface; `fcs_len` writes `if_fcslen`.
    pub fn interface(&mut self, link: u16, fcs_len: Option<u8>) {
        let mut body = self.u16b(link).to_vec();
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(&self.u32b(65535));
        body.extend_from_slice(&self.u16b(9)); // if_tsresol: microseconds
        body.extend_from_slice(&self.u16b(1));
        body.extend_from_slice(&[6, 0, 0, 0]);
        if let Some(n) = fcs_len {
            body.extend_from_slice(&self.u16b(13));
            body.extend_from_slice(&self.u16b(1));
            body.extend_from_slice(&[n, 0, 0, 0]);
        }
        body.extend_from_slice(&[0; 4]); // opt_endofopt
        self.block(1, &body);
    }

    /// An Enhanced Packet Block.
    pub fn packet(&mut self, iface: u32, ts_us: u64, data: &[u8]) {
        let body = self.epb_body(iface, ts_us, data);
        self.block(6, &body);
    }

    /// An Enhanced Packet Block with an `epb_flags` option of `flags` (FCS length in bits
    /// 5-8).
    pub fn packet_with_flags(&mut self, iface: u32, ts_us: u64, data: &[u8], flags: u32) {
        let mut body = self.epb_body(iface, ts_us, data);
        while !body.len().is_multiple_of(4) {
            body.push(0);
        }
        body.extend_from_slice(&self.u16b(2));
        body.extend_from_slice(&self.u16b(4));
        body.extend_from_slice(&self.u32b(flags));
        body.extend_from_slice(&[0; 4]); // opt_endofopt
        self.block(6, &body);
    }

    /// An Enhanced Packet Block's fields and data, without options.
    fn epb_body(&self, iface: u32, ts_us: u64, data: &[u8]) -> Vec<u8> {
        let mut body = self.u32b(iface).to_vec();
        body.extend_from_slice(&self.u32b((ts_us >> 32) as u32));
        body.extend_from_slice(&self.u32b(ts_us as u32));
        body.extend_from_slice(&self.u32b(data.len() as u32));
        body.extend_from_slice(&self.u32b(data.len() as u32));
        body.extend_from_slice(data);
        body
    }

    /// The obsolete Packet Block (type 2): 16-bit interface id and drop count.
    pub fn obsolete_packet(&mut self, iface: u16, ts_us: u64, data: &[u8]) {
        let mut body = self.u16b(iface).to_vec();
        body.extend_from_slice(&self.u16b(0));
        body.extend_from_slice(&self.u32b((ts_us >> 32) as u32));
        body.extend_from_slice(&self.u32b(ts_us as u32));
        body.extend_from_slice(&self.u32b(data.len() as u32));
        body.extend_from_slice(&self.u32b(data.len() as u32));
        body.extend_from_slice(data);
        self.block(2, &body);
    }

    /// A Simple Packet Block (interface 0).
    pub fn simple_packet(&mut self, data: &[u8]) {
        let mut body = self.u32b(data.len() as u32).to_vec();
        body.extend_from_slice(data);
        self.block(3, &body);
    }

    /// A Name Resolution Block of about `size` bytes of IPv4 records.
    pub fn name_resolution(&mut self, size: usize) {
        let mut body = Vec::new();
        let mut i = 0u32;
        while body.len() < size {
            let name = format!("host-{i:06}.example.org\0");
            let len = 4 + name.len();
            body.extend_from_slice(&self.u16b(1));
            body.extend_from_slice(&self.u16b(len as u16));
            body.extend_from_slice(&[10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
            body.extend_from_slice(name.as_bytes());
            while !body.len().is_multiple_of(4) {
                body.push(0);
            }
            i += 1;
        }
        body.extend_from_slice(&[0; 4]); // nrb_record_end
        self.block(4, &body);
    }

    /// An Interface Statistics Block, a Decryption Secrets Block, a Custom Block, and a
    /// block of a type no spec defines yet.
    pub fn other_blocks(&mut self) {
        let mut isb = self.u32b(0).to_vec();
        isb.extend_from_slice(&[0; 8]);
        self.block(5, &isb);
        let secrets = b"CLIENT_RANDOM 00 00\n";
        let mut dsb = self.u32b(0x544c_534b).to_vec(); // TLS key log
        dsb.extend_from_slice(&self.u32b(secrets.len() as u32));
        dsb.extend_from_slice(secrets);
        self.block(10, &dsb);
        let mut custom = self.u32b(32473).to_vec(); // example PEN
        custom.extend_from_slice(b"kismet data");
        self.block(0x4000_0bad, &custom);
        self.block(0x0000_0c0f, &[1, 2, 3, 4]);
    }
}

/// The BLE link-layer CRC-24 (Core Vol 6 Part B 3.1.1): an LFSR with polynomial
/// x^24+x^10+x^9+x^6+x^4+x^3+x+1, initial value 0x555555 on advertising channels, bits
/// least significant first; sent least significant byte first.
fn crc24(pdu: &[u8]) -> [u8; 3] {
    let mut lfsr: [u8; 24] = [0; 24];
    for (i, bit) in lfsr.iter_mut().enumerate() {
        *bit = ((0x55_5555u32 >> i) & 1) as u8; // position 0 holds the LSB of init
    }
    for &byte in pdu {
        for b in 0..8 {
            let input = (byte >> b) & 1;
            let feedback = lfsr[23] ^ input;
            for i in (1..24).rev() {
                lfsr[i] = lfsr[i - 1];
                if feedback == 1 && [1, 3, 4, 6, 9, 10].contains(&i) {
                    lfsr[i] ^= 1;
                }
            }
            lfsr[0] = feedback;
        }
    }
    // transmitted starting with position 23
    let mut out = [0u8; 3];
    for k in 0..24 {
        out[k / 8] |= lfsr[23 - k] << (k % 8);
    }
    out
}

/// An advertising-channel link-layer packet: access address, header, payload, CRC.
pub fn ll_packet(header: u8, payload: &[u8], good_crc: bool) -> Vec<u8> {
    let mut p = 0x8e89_bed6u32.to_le_bytes().to_vec();
    let mut pdu = vec![header, payload.len() as u8];
    pdu.extend_from_slice(payload);
    let mut crc = crc24(&pdu);
    if !good_crc {
        crc[0] ^= 0x01;
    }
    p.extend_from_slice(&pdu);
    p.extend_from_slice(&crc);
    p
}

/// ADV_IND (`random`: TxAdd) from `adv_a` (as transmitted, LSB first).
pub fn adv_ind(adv_a: [u8; 6], random: bool, good_crc: bool) -> Vec<u8> {
    let mut payload = adv_a.to_vec();
    payload.extend_from_slice(&[0x02, 0x01, 0x06]);
    ll_packet(if random { 0x40 } else { 0x00 }, &payload, good_crc)
}

/// A PDU of the extended family (type 7, or 8 for AUX_CONNECT_RSP) in the common extended
/// advertising payload format, with AdvA when given, then ADI, then AD data.
pub fn extended_pdu(kind: u8, adv_a: Option<[u8; 6]>, random: bool) -> Vec<u8> {
    let mut ext = Vec::new();
    let mut flags = 0x08; // ADI
    if adv_a.is_some() {
        flags |= 0x01;
    }
    ext.push(flags);
    if let Some(a) = adv_a {
        ext.extend_from_slice(&a);
    }
    ext.extend_from_slice(&[0x01, 0x10]); // ADI: DID 1, SID 1
    let mut payload = vec![ext.len() as u8]; // AdvMode 0: non-connectable, non-scannable
    payload.extend_from_slice(&ext);
    payload.extend_from_slice(&[0x02, 0x01, 0x06]);
    ll_packet(kind | if random { 0x40 } else { 0 }, &payload, true)
}

/// A LINKTYPE 272 packet: board id, UART header, BLE header (`flags`: bit 0 CRC ok, bits
/// 4-6 PHY), link-layer packet (with a coding indicator after the AA on LE Coded); protocol
/// version 0 writes the legacy header of nRF Sniffer 1.x instead.
pub fn nordic(protover: u8, flags: u8, rssi_magnitude: u8, ll: &[u8]) -> Vec<u8> {
    let coded = (flags >> 4) & 7 == 2;
    let mut ll = ll.to_vec();
    if coded {
        ll.insert(4, 0x00); // CI: S=8
    }
    if protover == 0 {
        // nRF Sniffer 1.x (0.9.7): marker, packet id, counter, unused, payload length, and
        // the BLE header without its length byte
        let mut p = vec![0xbe, 0xef, 0x06, 7, 0, 0, 0, (9 + ll.len()) as u8];
        p.extend_from_slice(&[flags, 37, rssi_magnitude]);
        p.extend_from_slice(&0xffffu16.to_le_bytes()); // event counter
        p.extend_from_slice(&1000u32.to_le_bytes()); // delta time
        p.extend_from_slice(&ll);
        return p;
    }
    let mut p = vec![0x01]; // board id
    let payload_len = (10 + ll.len()) as u16;
    if protover == 1 {
        p.extend_from_slice(&[6, payload_len as u8]);
    } else {
        p.extend_from_slice(&payload_len.to_le_bytes());
    }
    p.push(protover);
    p.extend_from_slice(&7u16.to_le_bytes()); // packet counter
    p.push(if protover >= 3 { 0x02 } else { 0x06 }); // packet id: advertising PDU
    p.extend_from_slice(&[10, flags, 37, rssi_magnitude]);
    p.extend_from_slice(&0xffffu16.to_le_bytes()); // event counter
    p.extend_from_slice(&1000u32.to_le_bytes()); // timestamp
    p.extend_from_slice(&ll);
    p
}

/// An HCI LE Advertising Report event (H:4 type byte first) of `reports`: (address as
/// transmitted, address type, RSSI).
pub fn hci_legacy_reports(reports: &[([u8; 6], u8, i8)]) -> Vec<u8> {
    let mut params = vec![0x02, reports.len() as u8];
    for (addr, addr_type, rssi) in reports {
        params.extend_from_slice(&[0x00, *addr_type]);
        params.extend_from_slice(addr);
        params.extend_from_slice(&[3, 0x02, 0x01, 0x06]);
        params.push(*rssi as u8);
    }
    let mut p = vec![0x04, 0x3e, params.len() as u8];
    p.extend_from_slice(&params);
    p
}

/// An HCI LE Extended Advertising Report event with one report.
pub fn hci_extended_report(addr: [u8; 6], addr_type: u8, rssi: i8) -> Vec<u8> {
    let mut params = vec![0x0d, 1];
    params.extend_from_slice(&0x0000u16.to_le_bytes()); // non-connectable, extended
    params.push(addr_type);
    params.extend_from_slice(&addr);
    params.extend_from_slice(&[0x01, 0x01, 0x01, 0x7f, rssi as u8]);
    params.extend_from_slice(&[0, 0, 0]); // periodic interval, direct address type
    params.extend_from_slice(&[0; 6]);
    params.extend_from_slice(&[3, 0x02, 0x01, 0x06]);
    let mut p = vec![0x04, 0x3e, params.len() as u8];
    p.extend_from_slice(&params);
    p
}

/// HCI LE Set Scan Enable (a command) and its Command Complete (an event that reports
/// nobody).
pub fn hci_scan_enable() -> Vec<u8> {
    vec![0x01, 0x0c, 0x20, 0x02, 0x01, 0x00]
}
pub fn hci_command_complete() -> Vec<u8> {
    vec![0x04, 0x0e, 0x04, 0x01, 0x0c, 0x20, 0x00]
}

/// A btsnoop file of `datalink` (1001 H1, 1002 H4, 2001 monitor) from H:4 packets.
pub fn btsnoop(datalink: u32, h4_packets: &[Vec<u8>]) -> Vec<u8> {
    let mut f = b"btsnoop\0".to_vec();
    f.extend_from_slice(&1u32.to_be_bytes());
    f.extend_from_slice(&datalink.to_be_bytes());
    for (i, p) in h4_packets.iter().enumerate() {
        let event = p[0] == 0x04;
        let (flags, data): (u32, &[u8]) = match datalink {
            1002 => (if event { 3 } else { 2 }, p),
            1001 => (if event { 3 } else { 2 }, &p[1..]),
            _ => (if event { 3 } else { 2 }, &p[1..]), // monitor: adapter 0, opcode 3/2
        };
        f.extend_from_slice(&(data.len() as u32).to_be_bytes());
        f.extend_from_slice(&(data.len() as u32).to_be_bytes());
        f.extend_from_slice(&flags.to_be_bytes());
        f.extend_from_slice(&0u32.to_be_bytes());
        let ts: i64 = 0x00dc_ddb3_0f2f_8000 + 1_700_000_000_000_000 + i as i64;
        f.extend_from_slice(&ts.to_be_bytes());
        f.extend_from_slice(data);
    }
    f
}

/// tshark's `-T fields` output, one row per frame.
pub fn tshark_fields(path: &Path, extra: &[&str], fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(path).args(extra).args(["-T", "fields"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd
        .output()
        .expect("tshark runs (scripts/test.sh installs it: apt-get install tshark)");
    assert!(
        out.status.success(),
        "tshark on {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

/// What tshark says a Wi-Fi capture holds under the agent's FCS rule: (probe requests,
/// distinct global sources, distinct locally administered sources). The rule is applied to
/// tshark's own verdicts: a kept FCS that tshark finds bad, or a driver's bad-FCS flag on a
/// frame without FCS, is not counted.
pub fn tshark_wifi(path: &Path) -> (u64, u64, u64) {
    let rows = tshark_fields(
        path,
        &[
            "-o",
            "wlan.check_checksum:TRUE",
            "-Y",
            "wlan.fc.type_subtype == 4",
        ],
        &[
            "wlan.sa",
            "wlan.fcs.status",
            "wlan.fcs",
            "radiotap.flags.badfcs",
        ],
    );
    let mut n = 0;
    let (mut global, mut local) = (BTreeSet::new(), BTreeSet::new());
    for row in &rows {
        let field = |i: usize| row.get(i).map(String::as_str).unwrap_or("");
        let fcs_bad = field(1) == "0";
        let flagged_without_fcs = field(2).is_empty() && field(3) == "1";
        if fcs_bad || flagged_without_fcs {
            continue;
        }
        let sa = field(0).to_owned();
        assert!(!sa.is_empty(), "tshark decoded the probe request: {row:?}");
        n += 1;
        let first = u8::from_str_radix(&sa[..2], 16).expect("hex");
        if first & 0x02 != 0 {
            local.insert(sa);
        } else {
            global.insert(sa);
        }
    }
    (n, global.len() as u64, local.len() as u64)
}

/// What tshark says a BLE link-layer capture holds: (advertising PDUs naming their sender
/// with a good CRC, distinct advertisers). PDU types 0, 1, 2, 4, 6 (legacy) and 7, 8
/// (extended, AdvA present); CRC as tshark recomputes it or as the sniffer flagged it.
pub fn tshark_ble_ll(path: &Path) -> (u64, u64) {
    let rows = tshark_fields(
        path,
        &["-Y", "btle"],
        &[
            "btle.advertising_header.pdu_type",
            "btle.advertising_address",
            "btle.crc.incorrect",
            "nordic_ble.crcok",
            "_ws.malformed",
        ],
    );
    let mut n = 0;
    let mut distinct = BTreeSet::new();
    for row in &rows {
        let field = |i: usize| row.get(i).map(String::as_str).unwrap_or("");
        let pdu_type = u8::from_str_radix(field(0).trim_start_matches("0x"), 16).unwrap_or(0xff);
        let crc_bad = !field(2).is_empty() || field(3) == "0" || field(3) == "False";
        if ![0, 1, 2, 4, 6, 7, 8].contains(&pdu_type) || field(1).is_empty() || crc_bad {
            continue;
        }
        assert!(
            field(4).is_empty(),
            "tshark finds the packet malformed: {row:?}"
        );
        n += 1;
        distinct.insert(field(1).to_owned());
    }
    (n, distinct.len() as u64)
}

/// What tshark says an HCI capture holds: (advertising reports, distinct addresses, packets
/// that report nobody).
pub fn tshark_hci(path: &Path) -> (u64, u64, u64) {
    let rows = tshark_fields(
        path,
        &[],
        &["bthci_evt.le_meta_subevent", "bthci_evt.bd_addr"],
    );
    let (mut reports, mut silent) = (0, 0);
    let mut distinct = BTreeSet::new();
    for row in &rows {
        let field = |i: usize| row.get(i).map(String::as_str).unwrap_or("");
        let subevent = field(0);
        if ["0x02", "0x0d", "0x0b", "0x02,0x02"].contains(&subevent) && !field(1).is_empty() {
            for addr in field(1).split(',') {
                reports += 1;
                distinct.insert(addr.to_owned());
            }
        } else {
            silent += 1;
        }
    }
    (reports, distinct.len() as u64, silent)
}
