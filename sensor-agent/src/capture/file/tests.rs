use super::pcap::pcap_link_field;
use super::pcapng::{interface_options, packet_fcs_len, ts_resolution};
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

/// A pcap of `magic` whose record headers carry `padding` bytes after the standard 16.
fn padded_pcap(magic: u32, padding: usize, records: &[(u32, &[u8])]) -> Vec<u8> {
    let mut f = pcap(127, &[]);
    f[..4].copy_from_slice(&magic.to_le_bytes());
    for (s, data) in records {
        f.extend_from_slice(&s.to_le_bytes());
        f.extend_from_slice(&999_999u32.to_le_bytes());
        f.extend_from_slice(&(data.len() as u32).to_le_bytes());
        f.extend_from_slice(&(data.len() as u32 + 100).to_le_bytes());
        f.extend_from_slice(&vec![0xee; padding]);
        f.extend_from_slice(data);
    }
    f
}

#[test]
fn pcap_variants_with_longer_record_headers_are_read_by_their_records() {
    // standard (0), Nokia (4), Red Hat 6.1 (8) under the standard magic; modified (8) and
    // SuSE 6.3 (12) under the modified one: as `editcap -F nokiapcap` etc. write them
    let cases = [
        (PCAP_US, 0),
        (PCAP_US, 4),
        (PCAP_US, 8),
        (PCAP_MODIFIED, 8),
        (PCAP_MODIFIED, 12),
    ];
    for (magic, padding) in cases {
        let records: [(u32, &[u8]); 3] = [(10, b"abcdef"), (11, b"gh"), (12, b"ijklmnop")];
        let file = padded_pcap(magic, padding, &records);
        let mut r = CaptureReader::new(&file[..]).expect("header");
        for (s, data) in records {
            let p = r.next_packet().expect("ok").expect("record");
            assert_eq!(
                (p.ts_ns, p.data),
                (i64::from(s) * 1_000_000_000 + 999_999_000, data)
            );
        }
        assert!(
            r.next_packet().expect("ok").is_none(),
            "{magic:x} +{padding}"
        );
    }
    // one record only: the standard layout fits it exactly
    let file = padded_pcap(PCAP_US, 0, &[(10, b"abc")]);
    let mut r = CaptureReader::new(&file[..]).expect("header");
    assert_eq!(r.next_packet().expect("ok").expect("one").data, b"abc");
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
            .contains("truncated inside the pcap record that starts at byte 24"),
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
fn a_packet_block_length_gone_bad_mid_file_is_corruption_not_a_truncated_end() {
    // a good packet, then one whose length field claims 2 GiB (tshark: "too large")
    let mut file = pcapng(127, &[(6, epb(4, b"abcd")), (6, epb(4, b"efgh"))]);
    let second = file.len() - 36; // the last block: 12 bytes of frame, 24 of body
    file[second + 4..second + 8].copy_from_slice(&0x7fff_fff0u32.to_le_bytes());
    let mut r = CaptureReader::new(&file[..]).expect("header");
    assert_eq!(r.next_packet().expect("ok").expect("first").data, b"abcd");
    match r.next_packet() {
        Err(FileError::Corrupt { reason, .. }) => {
            // the message names the field, never the bytes read (they may be an address's)
            assert!(reason.contains("block length over") && !reason.contains("2147483632"))
        }
        other => panic!("expected corrupt, got {other:?}"),
    }
}

#[test]
fn lying_block_lengths_are_refused_without_allocating_them() {
    // a block claiming 60 MB in a 100-byte file: truncated, not a 60 MB allocation
    let mut file = pcapng(127, &[]);
    file.extend_from_slice(&4u32.to_le_bytes());
    file.extend_from_slice(&(60u32 << 20).to_le_bytes());
    let mut r = CaptureReader::new(&file[..]).expect("header");
    assert!(matches!(r.next_packet(), Err(FileError::Truncated { .. })));
    // the largest length the format allows: over Wireshark's limit for any block, corrupt
    let mut file = pcapng(127, &[]);
    file.extend_from_slice(&4u32.to_le_bytes());
    file.extend_from_slice(&u32::MAX.wrapping_sub(3).to_le_bytes());
    let mut r = CaptureReader::new(&file[..]).expect("header");
    assert!(matches!(r.next_packet(), Err(FileError::Corrupt { .. })));
    // a length that is no multiple of 4: corrupt
    let mut file = pcapng(127, &[]);
    file.extend_from_slice(&4u32.to_le_bytes());
    file.extend_from_slice(&30u32.to_le_bytes());
    let mut r = CaptureReader::new(&file[..]).expect("header");
    let err = r.next_packet().expect_err("corrupt");
    assert!(err.to_string().contains("impossible block length"), "{err}");
}

#[test]
fn a_skipped_block_of_any_size_is_streamed_past() {
    // a 70 MiB custom block (type 0xBAD), as Wireshark may write: no packet is lost to it
    let len: u32 = 70 << 20;
    let mut file = pcapng(127, &[]);
    let mut block = Vec::with_capacity(len as usize);
    block.extend_from_slice(&0x0000_0badu32.to_le_bytes());
    block.extend_from_slice(&len.to_le_bytes());
    block.resize(len as usize - 4, 0);
    block.extend_from_slice(&len.to_le_bytes());
    file.extend_from_slice(&block);
    let mut r = CaptureReader::new(&file[..]).expect("header");
    assert!(
        matches!(r.next_packet(), Ok(None)),
        "read past it to a clean end"
    );
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

#[test]
fn a_packets_epb_flags_fcs_length_overrides_the_interfaces() {
    // epb_flags (code 2, 4 bytes): FCS length 4 in bits 5-8; then a 0-length FCS field
    // ("not available"), which leaves the interface's (none here).
    let with_flags = |flags: u32| {
        let mut b = epb(5, b"abcde");
        b.extend_from_slice(&[0, 0, 0]); // padding to 4 bytes
        b.extend_from_slice(&1u16.to_le_bytes()); // opt_comment first: skipped
        b.extend_from_slice(&3u16.to_le_bytes());
        b.extend_from_slice(b"hi!\0");
        b.extend_from_slice(&2u16.to_le_bytes());
        b.extend_from_slice(&4u16.to_le_bytes());
        b.extend_from_slice(&flags.to_le_bytes());
        b.extend_from_slice(&[0, 0, 0, 0]); // opt_endofopt
        b
    };
    let file = pcapng(
        105,
        &[
            (6, with_flags(4 << 5 | 1)),
            (6, with_flags(1)),
            (2, with_flags(4 << 5)),
            (6, epb(4, b"abcd")),
        ],
    );
    let mut r = CaptureReader::new(&file[..]).expect("header");
    let mut seen = Vec::new();
    while let Some(p) = r.next_packet().expect("valid") {
        seen.push((p.data.len(), p.fcs_len));
    }
    assert_eq!(seen, vec![(5, Some(4)), (5, None), (5, Some(4)), (4, None)]);
    assert_eq!(packet_fcs_len(&[2, 0, 4, 0, 0x80, 0, 0, 0], false), Some(4));
    assert_eq!(packet_fcs_len(&[0, 2, 0, 4, 0, 0, 0, 0x80], true), Some(4));
    assert_eq!(
        packet_fcs_len(&[2, 0, 4, 0, 0x80], false),
        None,
        "cut short"
    );
}
