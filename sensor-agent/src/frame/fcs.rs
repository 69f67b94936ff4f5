//! The 802.11 frame check sequence, and the rule for which verdict counts.
//!
//! The rule: when the capture keeps the FCS (radiotap Flags "FCS at end", PPI 802.11-Common
//! "FCS present", the pcap link-type
//! field's FCS annotation, a pcapng interface's `if_fcslen`), the agent checks the CRC-32
//! itself and that check decides: a frame whose FCS is right counts even if the driver's
//! radiotap "bad FCS" flag is set (drivers set it on frames they mangled in transit to the
//! capture, and tshark ignores the flag too), and a frame whose FCS is wrong is skipped as
//! `bad_fcs` even if the driver did not flag it. Only when the FCS was dropped does the
//! driver's flag decide, because it is then the only verdict there is.
//!
//! Anonymized public datasets rewrite addresses without recomputing the FCS, so every frame
//! fails its check; [`FcsRule::Ignore`] (`replay --ignore-fcs`) counts them as tshark does
//! by default, and the skipped `bad_fcs` count says when that is needed.

use super::{FcsRule, Skip};

/// The 802.11 frame without its FCS, or `BadFcs` when the FCS (of `fcs_len` bytes at the
/// end, if the capture kept one) does not match, or when there is none and the driver
/// flagged the frame (`flagged_bad`). Under [`FcsRule::Ignore`] only strips the FCS.
pub fn checked_body(
    frame: &[u8],
    fcs_len: Option<u8>,
    flagged_bad: bool,
    rule: FcsRule,
) -> Result<&[u8], Skip> {
    let fcs_len = usize::from(fcs_len.unwrap_or(0));
    let check = rule == FcsRule::Check;
    if fcs_len == 0 {
        return if flagged_bad && check {
            Err(Skip::BadFcs)
        } else {
            Ok(frame)
        };
    }
    let Some(body_len) = frame.len().checked_sub(fcs_len) else {
        return Err(Skip::WifiTruncated);
    };
    let (body, fcs) = frame.split_at(body_len);
    // 802.11's FCS is a 4-byte CRC-32 sent least significant byte first; other lengths
    // (possible in the pcap annotation) are stripped but cannot be checked.
    if let [a, b, c, d] = *fcs
        && check
        && crc32fast::hash(body) != u32::from_le_bytes([a, b, c, d])
    {
        return Err(Skip::BadFcs);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_fcs(body: &[u8]) -> Vec<u8> {
        let mut f = body.to_vec();
        f.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        f
    }

    #[test]
    fn a_good_fcs_counts_whatever_the_driver_flag_says() {
        let frame = with_fcs(b"\x40\x00probe request body");
        assert_eq!(
            checked_body(&frame, Some(4), true, FcsRule::Check),
            Ok(&frame[..frame.len() - 4])
        );
        assert_eq!(
            checked_body(&frame, Some(4), false, FcsRule::Check),
            Ok(&frame[..frame.len() - 4])
        );
    }

    #[test]
    fn a_wrong_fcs_is_skipped_even_unflagged() {
        let mut frame = with_fcs(b"\x40\x00probe request body");
        frame[3] ^= 1;
        assert_eq!(
            checked_body(&frame, Some(4), false, FcsRule::Check),
            Err(Skip::BadFcs)
        );
    }

    #[test]
    fn without_an_fcs_the_driver_flag_decides() {
        assert_eq!(
            checked_body(b"abc", None, true, FcsRule::Check),
            Err(Skip::BadFcs)
        );
        assert_eq!(
            checked_body(b"abc", None, false, FcsRule::Check),
            Ok(&b"abc"[..])
        );
        assert_eq!(
            checked_body(b"abc", Some(0), false, FcsRule::Check),
            Ok(&b"abc"[..])
        );
        assert_eq!(
            checked_body(b"abc", Some(4), false, FcsRule::Check),
            Err(Skip::WifiTruncated)
        );
        // a 2-byte FCS is stripped, not checked
        assert_eq!(
            checked_body(b"abcde", Some(2), false, FcsRule::Check),
            Ok(&b"abc"[..])
        );
    }

    #[test]
    fn ignoring_the_fcs_counts_every_frame_as_tshark_does_by_default() {
        let mut frame = with_fcs(b"\x40\x00probe request body");
        frame[3] ^= 1;
        assert_eq!(
            checked_body(&frame, Some(4), true, FcsRule::Ignore),
            Ok(&frame[..frame.len() - 4])
        );
        assert_eq!(
            checked_body(b"abc", None, true, FcsRule::Ignore),
            Ok(&b"abc"[..])
        );
    }
}
