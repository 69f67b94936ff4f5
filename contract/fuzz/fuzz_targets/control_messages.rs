//! The salt announcement, salt recovery, salt answer and status decoders on arbitrary bytes.
#![no_main]

use crowdflow_contract::authority_key::TrustedKeys;
use crowdflow_contract::wire::{AgentStatus, SaltAnnouncement, SaltAnswer, SaltRecovery};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(announcement) = SaltAnnouncement::decode(data) {
        assert!(SaltAnnouncement::decode(&announcement.encode()).is_ok());
    }
    if let Ok(request) = SaltRecovery::decode(data) {
        assert_eq!(SaltRecovery::decode(&request.encode()), Ok(request));
    }
    // The signed forms: any key, since the fuzzer cannot sign; the envelope decoding around
    // the signature check is what is exercised.
    let _ = SaltAnnouncement::decode_signed(data, &TrustedKeys::default());
    let _ = SaltRecovery::decode_signed(data, &TrustedKeys::default(), jiff::Timestamp::UNIX_EPOCH);
    let _ = SaltAnswer::decode(data);
    let _ = SaltAnswer::decode_signed(data, &TrustedKeys::default(), jiff::Timestamp::UNIX_EPOCH);
    if let Ok(status) = AgentStatus::decode(data) {
        assert!(AgentStatus::decode(&status.encode()).is_ok());
    }
});
