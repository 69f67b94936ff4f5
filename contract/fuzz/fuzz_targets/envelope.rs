//! The sketch envelope decoder and the raw sketch codec on arbitrary bytes: every input must
//! give a message or a typed error, and whatever decodes must re-encode and decode again.
#![no_main]

use crowdflow_contract::sketch::{Precision, Sketch};
use crowdflow_contract::wire::{DecodeRules, SketchMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let now = jiff::Timestamp::from_second(1_777_284_000).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let rules = DecodeRules::new(Precision::DEFAULT, now);
    if let Ok(message) = SketchMessage::decode(data, &rules) {
        let again = SketchMessage::decode(&message.encode(), &rules);
        assert!(again.is_ok(), "a decoded envelope must survive re-encoding");
    }
    if let Ok(sketch) = Sketch::decode(data, Precision::DEFAULT) {
        let e = sketch.estimate();
        assert!(e.estimate.is_finite() && e.lower <= e.upper);
        assert!(Sketch::decode(&sketch.encode(), Precision::DEFAULT).is_ok());
    }
});
