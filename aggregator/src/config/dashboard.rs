//! `[dashboard]`: the page title and an optional map background.

use serde::Deserialize;

use super::{FieldError, field};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDashboard {
    title: Option<String>,
    tile_url: Option<String>,
    tile_attribution: Option<String>,
}

/// What the dashboard shows besides the numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dashboard {
    /// Shown in the page header ("crowdflow" unless set).
    pub title: String,
    /// Optional background map: an XYZ tile URL with `{z}`, `{x}` and `{y}`. Event networks
    /// are often offline, so the plan never needs it.
    pub tile_url: Option<String>,
    /// Attribution the tile provider requires.
    pub tile_attribution: Option<String>,
}

impl Dashboard {
    /// The tile server's origin (`https://host:port`), which the page's CSP must allow.
    pub fn tile_origin(&self) -> Option<&str> {
        let url = self.tile_url.as_deref()?;
        let after_scheme = url.find("://")? + 3;
        let end = url[after_scheme..]
            .find('/')
            .map_or(url.len(), |i| after_scheme + i);
        Some(&url[..end])
    }
}

pub(super) fn dashboard(raw: RawDashboard) -> Result<Dashboard, FieldError> {
    if let Some(url) = &raw.tile_url {
        let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
        let placeholders_ok = ["{z}", "{x}", "{y}"].iter().all(|p| url.contains(p));
        let safe = !url.contains(['"', '\'', ' ', ';']);
        if !(scheme_ok && placeholders_ok && safe) {
            return Err(field(
                "dashboard.tile_url",
                "must be an http(s) XYZ tile URL with {z}, {x} and {y}, e.g. https://tiles.example.org/{z}/{x}/{y}.png",
            ));
        }
    }
    Ok(Dashboard {
        title: raw.title.unwrap_or_else(|| "crowdflow".into()),
        tile_url: raw.tile_url,
        tile_attribution: raw.tile_attribution,
    })
}
