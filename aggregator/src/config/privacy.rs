//! `[privacy]` and `[open_data]`: the operator's words for the privacy statement, and the
//! rules that keep published numbers from singling out a person (design §2.6, §2.7).

use serde::Deserialize;

use super::{FieldError, field};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPrivacy {
    operator: Option<String>,
    contact: Option<String>,
    purpose: Option<String>,
    legal_basis: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOpenData {
    #[serde(default = "default_k")]
    k: u64,
    #[serde(default = "default_rounding")]
    rounding: u64,
    #[serde(default = "default_licence")]
    licence: String,
}

impl Default for RawOpenData {
    fn default() -> Self {
        RawOpenData {
            k: default_k(),
            rounding: default_rounding(),
            licence: default_licence(),
        }
    }
}

fn default_k() -> u64 {
    10
}
fn default_rounding() -> u64 {
    10
}
fn default_licence() -> String {
    "CC BY 4.0".into()
}

/// The operator's words for the privacy statement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Privacy {
    /// Who runs the counting (the controller).
    pub operator: Option<String>,
    /// Where to ask.
    pub contact: Option<String>,
    /// Why it counts.
    pub purpose: Option<String>,
    /// The legal basis, in the operator's words.
    pub legal_basis: Option<String>,
}

/// Open-data export rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenData {
    /// Counts below this are suppressed.
    pub k: u64,
    /// Counts are rounded to a multiple of this.
    pub rounding: u64,
    /// The licence named in the export.
    pub licence: String,
}

impl From<RawPrivacy> for Privacy {
    fn from(raw: RawPrivacy) -> Privacy {
        Privacy {
            operator: raw.operator,
            contact: raw.contact,
            purpose: raw.purpose,
            legal_basis: raw.legal_basis,
        }
    }
}

pub(super) fn open_data(raw: RawOpenData) -> Result<OpenData, FieldError> {
    if raw.k == 0 || raw.rounding == 0 {
        return Err(field(
            "open_data.k",
            "k and rounding must be at least 1 (k = 10 suppresses counts below 10)",
        ));
    }
    Ok(OpenData {
        k: raw.k,
        rounding: raw.rounding,
        licence: raw.licence,
    })
}
