//! What `calibrate` says: per zone a table of every kind's fit and held-out scores beside
//! naive address counting, the kind picked, and the TOML to paste into the config. The same
//! report is the JSON of `POST /api/v1/calibration`.

use std::fmt::{self, Display};

use crowdflow_contract::identity::Kind;
use serde::{Serialize, Serializer};

use super::counts::RowError;
use super::fit::{Line, MIN_PERSONS, Scores, Validation};
use super::{KindRefusal, ZoneRefusal};
use crate::config::Zone;
use crate::zone::ZoneId;

/// Held-out median errors within this of the lowest (1 percentage point) are a tie: the
/// median of a few dozen held-out counts moves by more than that with a count or two. A tie
/// goes to `wifi_derandomized` (physical devices, not addresses), then to the narrowest 95 %
/// `error` (the interval the crew sees), then to kind order.
const TIE: f64 = 0.01;

/// Why a kind was picked, as the report prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// Its held-out median error is the lowest, and no other kind ties it.
    Lowest,
    /// It tied and is the physical-device estimate.
    TieToDevices,
    /// It tied and has the narrowest 95 % error of those tied.
    TieToNarrowest,
    /// It tied with the same 95 % error: first in kind order.
    TieToOrder,
}

/// The kind a zone's fits give people by, and why: see [`TIE`].
fn best_kind(fits: &[(Kind, KindFit)]) -> Option<(Kind, Reason)> {
    let lowest = fits
        .iter()
        .map(|(_, f)| f.held_out.median_error)
        .fold(f64::INFINITY, f64::min);
    let tied: Vec<&(Kind, KindFit)> = fits
        .iter()
        .filter(|(_, f)| f.held_out.median_error <= lowest + TIE)
        .collect();
    let best = tied.iter().min_by(|a, b| {
        (a.0 != Kind::WifiDerandomized)
            .cmp(&(b.0 != Kind::WifiDerandomized))
            .then(a.1.error.total_cmp(&b.1.error))
            .then(a.0.cmp(&b.0))
    })?;
    let reason = if tied.len() == 1 {
        Reason::Lowest
    } else if best.0 == Kind::WifiDerandomized {
        Reason::TieToDevices
    } else if tied
        .iter()
        .any(|(k, f)| *k != best.0 && f.error == best.1.error)
    {
        Reason::TieToOrder
    } else {
        Reason::TieToNarrowest
    };
    Some((best.0, reason))
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reason::Lowest => "the lowest held-out median error",
            Reason::TieToDevices => {
                "within 1 point of the lowest held-out median error: ties go to wifi_derandomized, the physical devices"
            }
            Reason::TieToNarrowest => {
                "within 1 point of the lowest held-out median error: of those, the narrowest 95 % error"
            }
            Reason::TieToOrder => {
                "within 1 point of the lowest held-out median error and as narrow: the first in kind order"
            }
        })
    }
}
/// The smallest `error` printed (+-1 %): a fit never predicts people better than that, and
/// the config refuses 0.
pub const MIN_ERROR: f64 = 0.01;

/// The calibration of every zone in COUNTS.csv.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Report {
    /// One report per zone counted, in zone id order.
    pub zones: Vec<ZoneReport>,
    /// Zones that got a calibration.
    pub fitted: usize,
    /// The TOML to paste, every fitted zone's snippet (each goes under its own zone).
    pub toml: String,
}

/// One zone's fit.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ZoneReport {
    /// The zone.
    #[schema(value_type = String)]
    pub zone: ZoneId,
    /// Its display name.
    pub name: String,
    /// Counts of the zone in the file.
    pub counts: usize,
    /// Counts with stored minutes (the ones fitted on).
    pub usable: usize,
    /// How held-out counts were chosen (null when the zone was refused first).
    pub validation: Option<Validation>,
    /// Counts left out: fewer than half the minutes of their span stored (none, mostly).
    pub outside: Vec<RowError>,
    /// Counts fitted on the stored part of their span (at least half of it).
    pub partly_stored: Vec<RowError>,
    /// Every kind's fit or refusal.
    pub kinds: Vec<KindReport>,
    /// Naive address counting for comparison: each minute's Wi-Fi addresses (`wifi` +
    /// `wifi_random`) taken as people (factor 1, floor 0), scored on every count.
    pub naive: Option<Scores>,
    /// Naive address counting's people for each count (the addresses themselves).
    pub naive_predictions: Vec<Prediction>,
    /// The kind of the lowest held-out median error (ties: see the report's reason).
    #[schema(value_type = Option<String>)]
    pub picked: Option<Kind>,
    /// Why the zone got no calibration.
    #[serde(serialize_with = "display_option")]
    #[schema(value_type = Option<String>)]
    pub refused: Option<ZoneRefusal>,
    /// The TOML to put under the zone's `[[zones]]` entry.
    pub toml: Option<String>,
    /// What the picked kind cannot do, for the operator to weigh (also a comment in `toml`).
    pub caution: Option<String>,
}

/// One kind's fit.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct KindReport {
    /// The kind.
    #[schema(value_type = String)]
    pub kind: Kind,
    /// Counts with stored minutes of this kind.
    pub observations: usize,
    /// The line and its held-out scores.
    pub fit: Option<KindFit>,
    /// Why there is none.
    #[serde(serialize_with = "display_option")]
    #[schema(value_type = Option<String>)]
    pub refused: Option<KindRefusal>,
    /// Every count's held-out prediction (by the line fitted without its day or block): a
    /// count far off is worth checking (a miscount, a sensor off). Empty when refused.
    pub predictions: Vec<Prediction>,
}

/// A count beside what the devices predicted for it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Prediction {
    /// Its 1-based line in COUNTS.csv.
    pub line: u64,
    /// Persons counted.
    pub people: f64,
    /// Mean devices per stored minute of its span.
    pub devices: f64,
    /// Persons predicted.
    pub predicted: f64,
}

/// How many of a kind's worst held-out predictions the text report lists.
const WORST_LISTED: usize = 3;

impl KindReport {
    /// The counts predicted worst, worst first (relative to `max(count, 5 persons)`).
    pub fn worst(&self, n: usize) -> Vec<Prediction> {
        let miss = |p: &Prediction| (p.people - p.predicted).abs() / p.people.max(MIN_PERSONS);
        let mut all = self.predictions.clone();
        all.sort_by(|a, b| miss(b).total_cmp(&miss(a)));
        all.truncate(n);
        all
    }
}

/// A fitted line, rounded as it goes into the config, with its held-out scores.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct KindFit {
    /// Persons per device (3 significant digits).
    pub factor: f64,
    /// Devices there whoever comes (0.1 device).
    pub floor: f64,
    /// The config's `error`: the held-out conformal quantile rounded up to 0.01, at least
    /// [`MIN_ERROR`].
    pub error: f64,
    /// Counts fitted on.
    pub observations: usize,
    /// How the line fitted without each held-out group predicted it.
    pub held_out: Scores,
}

impl KindFit {
    /// The config's numbers of `line`, judged by `held_out`.
    pub fn new(line: Line, held_out: Scores) -> KindFit {
        KindFit {
            factor: significant(line.factor, 3),
            // + 0.0 turns the -0.0 of a zero intercept into 0.0 (printed and pasted).
            floor: (line.floor * 10.0).round() / 10.0 + 0.0,
            error: ((held_out.error * 100.0 - 1e-9).ceil() / 100.0).max(MIN_ERROR),
            observations: held_out.observations,
            held_out,
        }
    }

    /// The kind's line in `[zones.calibration]`.
    pub fn toml(&self, kind: Kind) -> String {
        format!(
            "{kind} = {{ factor = {}, floor = {:.1}, error = {:.2}, observations = {} }}",
            toml_float(self.factor),
            self.floor,
            self.error,
            self.observations
        )
    }
}

/// `v` to `digits` significant digits.
fn significant(v: f64, digits: i32) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let scale = 10f64.powi(digits - 1 - v.abs().log10().floor() as i32);
    (v * scale).round() / scale
}

/// A TOML float with its significant digits (always with a decimal point).
fn toml_float(v: f64) -> String {
    let decimals = (2 - v.abs().log10().floor() as i32).clamp(1, 9) as usize;
    let text = format!("{v:.decimals$}");
    // 0.8930 -> 0.893 (but keep one decimal).
    let trimmed = text.trim_end_matches('0');
    if trimmed.ends_with('.') {
        format!("{trimmed}0")
    } else {
        trimmed.to_owned()
    }
}

impl ZoneReport {
    /// An empty report of `zone` with `counts` rows in the file.
    pub fn new(zone: &Zone, counts: usize) -> ZoneReport {
        ZoneReport {
            zone: zone.id.clone(),
            name: zone.name.clone(),
            counts,
            usable: 0,
            validation: None,
            outside: Vec::new(),
            partly_stored: Vec::new(),
            kinds: Vec::new(),
            naive: None,
            naive_predictions: Vec::new(),
            picked: None,
            refused: None,
            toml: None,
            caution: None,
        }
    }

    /// Picks the kind of the lowest held-out median error and writes its TOML; refuses the
    /// zone when no kind was fitted.
    pub fn pick(&mut self) {
        let fits = self.fits();
        let best = best_kind(&fits).and_then(|(kind, _)| fits.iter().find(|(k, _)| *k == kind));
        match best {
            Some(&(kind, fit)) => {
                self.picked = Some(kind);
                self.caution = (kind == Kind::WifiDerandomized).then(|| self.dense_caution());
                let caution = self
                    .caution
                    .as_ref()
                    .map_or(String::new(), |c| format!("# caution: {c}\n"));
                self.toml = Some(format!(
                    "# zone {}: put at the end of its [[zones]] entry (replacing any calibration there)\n\
                     {caution}[zones.calibration]\n{}\n",
                    self.zone,
                    fit.toml(kind)
                ));
            }
            None => self.refused = Some(ZoneRefusal::NoKind),
        }
    }

    /// The physical-device estimate reads a small crowd by concurrency and a dense one through
    /// its scans (docs/counting-devices.md: the simulator's squares within +-15 % in 95 % of
    /// their minutes, but no real dense crowd with a head count has checked it): a line
    /// fitted on small crowds is to be checked when the zone gets much fuller.
    fn dense_caution(&self) -> String {
        let most = self
            .kinds
            .iter()
            .flat_map(|k| &k.predictions)
            .map(|p| p.people)
            .fold(0.0, f64::max);
        // The address kind that predicted the held-out counts best.
        let instead = [Kind::Wifi, Kind::WifiRandom]
            .into_iter()
            .filter_map(|k| Some((k, self.picked_fit_of(k)?)))
            .min_by(|a, b| {
                a.1.held_out
                    .median_error
                    .total_cmp(&b.1.held_out.median_error)
            })
            .map_or_else(
                || "calibrate it on counts of the full zone".to_owned(),
                |(k, fit)| format!("replace its line by: {}", fit.toml(k)),
            );
        format!(
            "wifi_derandomized reads a dense crowd (many phones of one model in a minute) \
             through its scans, checked on the simulator only; these counts reach {most:.0} \
             persons: if the zone gets much fuller, check it against a head count, or {instead}"
        )
    }

    /// The picked kind's fit.
    pub fn picked_fit(&self) -> Option<&KindFit> {
        self.picked_fit_of(self.picked?)
    }

    fn picked_fit_of(&self, kind: Kind) -> Option<&KindFit> {
        self.kinds
            .iter()
            .find(|k| k.kind == kind)
            .and_then(|k| k.fit.as_ref())
    }

    fn fits(&self) -> Vec<(Kind, KindFit)> {
        self.kinds
            .iter()
            .filter_map(|k| k.fit.map(|f| (k.kind, f)))
            .collect()
    }
}

impl Report {
    /// The report of `zones`.
    pub fn new(zones: Vec<ZoneReport>) -> Report {
        let toml = zones
            .iter()
            .filter_map(|z| z.toml.clone())
            .collect::<Vec<_>>()
            .join("\n");
        Report {
            fitted: zones.iter().filter(|z| z.picked.is_some()).count(),
            zones,
            toml,
        }
    }
}

const COLUMNS: &str = "  kind                    factor    floor   median error   within +-20 %   error (95 %)   counts";

/// The report as `calibrate` prints it: a table per zone, then the TOML.
impl Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for z in &self.zones {
            write!(f, "{z}")?;
            writeln!(f)?;
        }
        writeln!(
            f,
            "{} of {} zones calibrated.",
            self.fitted,
            self.zones.len()
        )?;
        if !self.toml.is_empty() {
            write!(f, "\n{}", self.toml)?;
        }
        Ok(())
    }
}

impl Display for ZoneReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "zone {} ({}): {} {}, {} with stored minutes",
            self.zone,
            self.name,
            self.counts,
            if self.counts == 1 { "count" } else { "counts" },
            self.usable
        )?;
        match &self.validation {
            Some(v) => writeln!(f, "; held out by {v}")?,
            None => writeln!(f)?,
        }
        if let Some(fit) = self.kinds.iter().find_map(|k| k.fit) {
            writeln!(
                f,
                "  (percentages over the {} counts of at least 5 persons, error (95 %) over all)",
                fit.held_out.occupied
            )?;
        }
        if !self.kinds.is_empty() {
            writeln!(f, "{COLUMNS}")?;
        }
        for k in &self.kinds {
            let mark = if Some(k.kind) == self.picked {
                '*'
            } else {
                ' '
            };
            match (&k.fit, &k.refused) {
                (Some(fit), _) => writeln!(
                    f,
                    "{mark} {:<20} {:>9} {:>8} {}   {:>6}",
                    k.kind.as_str(),
                    toml_float(fit.factor),
                    format!("{:.1}", fit.floor),
                    scores_columns(&fit.held_out, fit.error),
                    k.observations
                )?,
                (None, Some(r)) => writeln!(f, "  {:<20} refused: {r}", k.kind.as_str())?,
                (None, None) => {}
            }
        }
        if let Some(naive) = &self.naive {
            writeln!(
                f,
                "  {:<20} {:>9} {:>8} {}   {:>6}   (wifi + wifi_random addresses taken as people)",
                "naive addresses",
                "1",
                "0",
                scores_columns(naive, naive.error),
                naive.observations
            )?;
        }
        if let (Some(kind), Some((_, why))) = (self.picked, best_kind(&self.fits())) {
            writeln!(f, "  * picked: {kind} ({why})")?;
            if let Some(k) = self.kinds.iter().find(|k| k.kind == kind) {
                let worst: Vec<String> = k
                    .worst(WORST_LISTED)
                    .iter()
                    .map(|p| {
                        format!(
                            "line {} counted {}, predicted {:.1}",
                            p.line, p.people, p.predicted
                        )
                    })
                    .collect();
                writeln!(f, "  worst held-out: {}", worst.join("; "))?;
            }
            if let Some(c) = &self.caution {
                writeln!(f, "  caution: {c}")?;
            }
            if self.picked_fit().is_some_and(|p| p.held_out.error_is_floor) {
                writeln!(
                    f,
                    "  few observations (fewer than 19 held out): the error is a floor, not a bound"
                )?;
            }
        }
        for row in &self.partly_stored {
            writeln!(f, "  note: {row}")?;
        }
        for row in &self.outside {
            writeln!(f, "  not used: {row}")?;
        }
        if let Some(r) = &self.refused {
            writeln!(f, "  refused: {r}")?;
        }
        Ok(())
    }
}

fn scores_columns(s: &Scores, error: f64) -> String {
    format!(
        "{:>14} {:>15} {:>14}",
        format!("{:.1} %", s.median_error * 100.0),
        format!("{:.0} %", s.within_20 * 100.0),
        format!("{error:.2}")
    )
}

fn display_option<T: Display, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_rounded_as_the_config_takes_them() {
        assert_eq!(significant(0.89321, 3), 0.893);
        assert_eq!(significant(0.054321, 3), 0.0543);
        assert_eq!(significant(12.345, 3), 12.3);
        assert_eq!(toml_float(0.893), "0.893");
        assert_eq!(toml_float(0.0543), "0.0543");
        assert_eq!(toml_float(12.3), "12.3");
        assert_eq!(toml_float(2.0), "2.0");
        assert_eq!(toml_float(100.0), "100.0");
        let scores = Scores {
            median_error: 0.1,
            within_20: 0.9,
            occupied: 40,
            median_error_persons: 1.0,
            error: 0.2149,
            error_is_floor: false,
            observations: 40,
        };
        let fit = KindFit::new(
            Line {
                factor: 0.89321,
                floor: -0.04,
            },
            scores,
        );
        assert_eq!(
            fit.toml(Kind::WifiDerandomized),
            "wifi_derandomized = { factor = 0.893, floor = 0.0, error = 0.22, observations = 40 }"
        );
    }

    fn fit(median_error: f64, error: f64) -> KindFit {
        let scores = Scores {
            median_error,
            within_20: 0.9,
            occupied: 40,
            median_error_persons: 1.0,
            error,
            error_is_floor: false,
            observations: 40,
        };
        KindFit::new(
            Line {
                factor: 1.0,
                floor: 0.0,
            },
            scores,
        )
    }

    #[test]
    fn a_tie_goes_to_devices_then_to_the_narrowest_interval() {
        // A demo trial's zone: every median within a point, the 95 % errors far apart. The
        // widest (wifi, first in kind order) was picked and the report said "ties go to
        // wifi_derandomized", which was not there.
        let fits = [
            (Kind::Wifi, fit(0.030, 0.29)),
            (Kind::WifiRandom, fit(0.035, 0.05)),
            (Kind::Ble, fit(0.032, 0.07)),
        ];
        let (kind, why) = best_kind(&fits).expect("a kind");
        assert_eq!((kind, why), (Kind::WifiRandom, Reason::TieToNarrowest));
        assert!(why.to_string().contains("narrowest"), "{why}");

        let mut with_devices = fits.to_vec();
        with_devices.push((Kind::WifiDerandomized, fit(0.039, 0.40)));
        assert_eq!(
            best_kind(&with_devices),
            Some((Kind::WifiDerandomized, Reason::TieToDevices))
        );
        // Out of the tie, the lowest median wins, however wide.
        let clear = [(Kind::Wifi, fit(0.03, 0.29)), (Kind::Ble, fit(0.10, 0.07))];
        assert_eq!(best_kind(&clear), Some((Kind::Wifi, Reason::Lowest)));
        let same = [(Kind::Wifi, fit(0.03, 0.07)), (Kind::Ble, fit(0.03, 0.07))];
        assert_eq!(best_kind(&same), Some((Kind::Wifi, Reason::TieToOrder)));
        assert_eq!(best_kind(&[]), None);
    }
}
