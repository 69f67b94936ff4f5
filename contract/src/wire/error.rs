use crate::sketch::SketchError;

/// Why a message from outside was refused. Messages name the field and the rule, never the
/// offending value, so logs of rejects cannot carry payload contents.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WireError {
    /// Larger than the configured maximum.
    #[error("payload is {len} bytes, the limit is {max}")]
    TooLarge {
        /// Received size.
        len: usize,
        /// Allowed size.
        max: usize,
    },
    /// Not JSON, or JSON of the wrong shape.
    #[error("payload is not a valid v1 JSON message: {0}")]
    Json(String),
    /// A protocol version this build does not speak.
    #[error("unsupported protocol version {0} (this build speaks v1)")]
    Version(u64),
    /// A required field is absent.
    #[error("missing field `{0}`")]
    Missing(&'static str),
    /// A field is present but breaks a rule.
    #[error("field `{field}`: {reason}")]
    Invalid {
        /// The field at fault.
        field: &'static str,
        /// The rule it breaks.
        reason: String,
    },
    /// The embedded sketch is not acceptable.
    #[error("field `sketch`: {0}")]
    Sketch(#[from] SketchError),
    /// A signed message whose signature verifies under none of the pinned keys.
    #[error(
        "not signed by a trusted salt authority (the signature verifies under none of the {0} pinned key(s)); pin the aggregator's key (crowdflow-aggregator salt-key show)"
    )]
    Untrusted(usize),
    /// A topic outside the v1 layout.
    #[error("topic is not a crowdflow v1 topic: {0}")]
    Topic(&'static str),
}

impl WireError {
    /// Every label [`WireError::reason`] gives: counters exist at 0 from the start.
    pub const REASONS: [&'static str; 15] = [
        "too_large",
        "bad_json",
        "bad_version",
        "missing_field",
        "bad_sensor_id",
        "bad_window",
        "bad_epoch",
        "bad_salt_fp",
        "bad_kind",
        "bad_frames",
        "bad_field",
        "wrong_precision",
        "bad_sketch",
        "untrusted_signature",
        "bad_topic",
    ];

    /// A short, stable label for reject counters (a Prometheus label value).
    pub fn reason(&self) -> &'static str {
        match self {
            WireError::TooLarge { .. } => "too_large",
            WireError::Json(_) => "bad_json",
            WireError::Version(_) => "bad_version",
            WireError::Missing(_) => "missing_field",
            WireError::Invalid { field, .. } => match *field {
                "sensor_id" => "bad_sensor_id",
                "window_start" | "window_s" => "bad_window",
                "epoch" => "bad_epoch",
                "salt_fp" => "bad_salt_fp",
                "kind" => "bad_kind",
                "frames" => "bad_frames",
                _ => "bad_field",
            },
            WireError::Sketch(SketchError::WrongPrecision { .. }) => "wrong_precision",
            WireError::Sketch(_) => "bad_sketch",
            WireError::Untrusted(_) => "untrusted_signature",
            WireError::Topic(_) => "bad_topic",
        }
    }

    pub(crate) fn invalid(field: &'static str, reason: impl ToString) -> WireError {
        WireError::Invalid {
            field,
            reason: reason.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_listed() {
        let mut errors = vec![
            WireError::TooLarge { len: 2, max: 1 },
            WireError::Json(String::new()),
            WireError::Version(2),
            WireError::Missing("kind"),
            WireError::Sketch(SketchError::WrongPrecision {
                expected: 12,
                found: 11,
            }),
            WireError::Untrusted(1),
            WireError::Topic("x"),
        ];
        for field in [
            "sensor_id",
            "window_start",
            "epoch",
            "salt_fp",
            "kind",
            "frames",
            "other",
        ] {
            errors.push(WireError::invalid(field, "x"));
        }
        for e in &errors {
            assert!(WireError::REASONS.contains(&e.reason()), "{}", e.reason());
        }
    }
}
