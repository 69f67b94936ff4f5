//! COUNTS.csv: the head counts a zone is calibrated against, one observation a row.
//!
//! ```text
//! zone,start,end,people
//! lab,2026-05-04T09:00:00Z,2026-05-04T09:15:00Z,14
//! ```
//!
//! `start` and `end` are RFC 3339 times with an offset, on whole minutes (stored devices are
//! per minute); `people` is the mean number of persons present over `[start, end)` (a hand
//! count, a clicker's balance, ticket scans, a camera count; decimals allowed). Lines starting
//! with `#` are comments; a spreadsheet's byte-order mark is skipped. Every bad row is named
//! by its 1-based line in the file and its field, all in one refusal, so a file is fixed in
//! one go.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;

use crate::config::Zone;
use crate::zone::ZoneId;

/// The header the file must start with.
pub const HEADER: [&str; 4] = ["zone", "start", "end", "people"];

/// At most this many row errors are listed (the count of all is given).
pub const MAX_LISTED: usize = 20;

/// Longest piece of a cell quoted back in an error (the rest is cut).
const QUOTED_CHARS: usize = 40;

/// The densest crowd a head count may report, in persons per m2: standing people pressed
/// together reach about 9 to 10 persons/m2, and beyond that there is no room (G. K. Still,
/// "Introduction to Crowd Science", 2014, ch. 2; Fruin's level of service F starts near
/// 2.2). A count above it for its zone's area is a typo or the wrong zone.
pub const MAX_DENSITY: f64 = 10.0;

/// One head count.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The 1-based line of the file it came from.
    pub line: u64,
    /// The zone counted.
    pub zone: ZoneId,
    /// First instant counted (a whole minute).
    pub start: Timestamp,
    /// First instant after it (a whole minute, after `start`).
    pub end: Timestamp,
    /// Persons present on average over `[start, end)`.
    pub people: f64,
}

/// The field of a row at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = CountsField)]
pub enum Field {
    /// The header line.
    Header,
    /// The row as a whole (its number of columns, or text that is not CSV).
    Row,
    /// `zone`.
    Zone,
    /// `start`.
    Start,
    /// `end`.
    End,
    /// `start` and `end` together (the span they name).
    Span,
    /// `people`.
    People,
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Field::Header => "header",
            Field::Row => "row",
            Field::Zone => "zone",
            Field::Start => "start",
            Field::End => "end",
            Field::Span => "start..end",
            Field::People => "people",
        })
    }
}

/// What is wrong with a field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Problem {
    /// Nothing but comments and blank lines.
    #[error("the file is empty: its first line must be the header `zone,start,end,people`")]
    Empty,
    /// The first line is not the header.
    #[error("the first line must be the header `zone,start,end,people`, found `{0}`")]
    Header(String),
    /// A header and nothing after it.
    #[error("no head counts after the header")]
    NoRows,
    /// Not four columns.
    #[error("{0} columns, expected 4 (zone,start,end,people)")]
    Columns(usize),
    /// Not text, or broken quoting.
    #[error("unreadable: {0}")]
    Unreadable(String),
    /// A zone the config does not have.
    #[error("no zone {0:?} in the config")]
    UnknownZone(String),
    /// Not an RFC 3339 time with an offset.
    #[error("{0:?} is not an RFC 3339 time with an offset, such as 2026-05-04T09:15:00Z")]
    NotATime(String),
    /// Seconds in a time: devices are stored per minute.
    #[error("{0} is not on a whole minute: devices are stored per minute (write e.g. 09:15:00)")]
    NotWholeMinute(String),
    /// `end` not after `start`.
    #[error("end {end} is not after start {start}")]
    EndNotAfterStart {
        /// The row's start.
        start: Timestamp,
        /// The row's end.
        end: Timestamp,
    },
    /// `people` is not a finite number >= 0.
    #[error("{0:?} is not a number of persons (0 or more, e.g. 14 or 13.5)")]
    People(String),
    /// More persons than the zone's area can hold at [`MAX_DENSITY`].
    #[error(
        "{} persons in zone {zone} of {area_m2} m2 is {} persons/m2: no crowd is denser than {MAX_DENSITY} (a typo, or the wrong zone?)",
        short(*people),
        short(*density)
    )]
    Denser {
        /// The row's people.
        people: f64,
        /// The zone.
        zone: ZoneId,
        /// Its area (m2).
        area_m2: f64,
        /// people / area (persons/m2).
        density: f64,
    },
    /// The store holds fewer than half the minutes of the row's span: the devices of a part
    /// are not the people of the whole (a crowd that came in the missing minutes).
    #[error(
        "only {stored} of the {minutes} minutes of [{start}, {end}) are stored for zone {zone}: at least half are needed"
    )]
    MostlyUnstored {
        /// The zone.
        zone: ZoneId,
        /// The row's start.
        start: Timestamp,
        /// The row's end.
        end: Timestamp,
        /// Minutes of the span with stored devices.
        stored: usize,
        /// Minutes in the span.
        minutes: usize,
    },
    /// Some minutes of the row's span are not stored: fitted on the others (a note, not a
    /// refusal).
    #[error(
        "{stored} of the {minutes} minutes of [{start}, {end}) are stored for zone {zone}: fitted on those"
    )]
    PartlyStored {
        /// The zone.
        zone: ZoneId,
        /// The row's start.
        start: Timestamp,
        /// The row's end.
        end: Timestamp,
        /// Minutes of the span with stored devices.
        stored: usize,
        /// Minutes in the span.
        minutes: usize,
    },
    /// The store holds no minute of the zone in the row's span.
    #[error("no stored minute of zone {zone} in [{start}, {end}): outside stored data")]
    OutsideStoredData {
        /// The zone.
        zone: ZoneId,
        /// The row's start.
        start: Timestamp,
        /// The row's end.
        end: Timestamp,
    },
}

/// A refused row: its line, field and problem.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, utoipa::ToSchema)]
#[error("line {line}, {field}: {problem}")]
pub struct RowError {
    /// 1-based line in the file.
    pub line: u64,
    /// The field at fault.
    pub field: Field,
    /// What is wrong.
    #[serde(serialize_with = "display")]
    #[schema(value_type = String)]
    pub problem: Problem,
}

fn display<S: serde::Serializer>(p: &Problem, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(p)
}

/// A COUNTS.csv refused: every bad row (the first [`MAX_LISTED`] named in the message).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", listing(.rows))]
pub struct CountsError {
    /// Every bad row, in file order.
    pub rows: Vec<RowError>,
}

fn listing(rows: &[RowError]) -> String {
    let mut text = format!(
        "COUNTS.csv refused ({} {}):",
        rows.len(),
        if rows.len() == 1 {
            "problem"
        } else {
            "problems"
        }
    );
    for r in rows.iter().take(MAX_LISTED) {
        text += &format!("\n  {r}");
    }
    if rows.len() > MAX_LISTED {
        text += &format!("\n  ... and {} more", rows.len() - MAX_LISTED);
    }
    text
}

/// Reads COUNTS.csv (`text` as given: bytes, UTF-8 expected) against the config's zones.
pub fn parse(text: &[u8], zones: &BTreeMap<ZoneId, Zone>) -> Result<Vec<Observation>, CountsError> {
    let text = text.strip_prefix(b"\xef\xbb\xbf").unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(text);
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut header_seen = false;
    let mut record = csv::StringRecord::new();
    let line_at = |byte: u64| line_of(text, byte);
    loop {
        let line = line_at(reader.position().byte());
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(line, |p| line_at(p.byte()));
                errors.push(RowError {
                    line,
                    field: if header_seen {
                        Field::Row
                    } else {
                        Field::Header
                    },
                    problem: Problem::Unreadable(unreadable(&e)),
                });
                // A broken line cannot be resynchronised reliably: what follows is unread.
                if !matches!(e.kind(), csv::ErrorKind::Utf8 { .. }) {
                    break;
                }
                header_seen = true;
                continue;
            }
        }
        let line = record.position().map_or(line, |p| line_at(p.byte()));
        if record.iter().all(str::is_empty) {
            continue;
        }
        if !header_seen {
            header_seen = true;
            if record.iter().ne(HEADER) {
                errors.push(RowError {
                    line,
                    field: Field::Header,
                    problem: Problem::Header(quoted(&record.iter().collect::<Vec<_>>().join(","))),
                });
            }
            continue;
        }
        match row(line, &record, zones) {
            Ok(o) => rows.push(o),
            Err(mut e) => errors.append(&mut e),
        }
    }
    if !header_seen {
        errors.push(RowError {
            line: 1,
            field: Field::Header,
            problem: Problem::Empty,
        });
    } else if rows.is_empty() && errors.is_empty() {
        errors.push(RowError {
            line: line_of(text, u64::MAX),
            field: Field::Row,
            problem: Problem::NoRows,
        });
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(CountsError { rows: errors })
    }
}

/// The 1-based line of the record the reader placed at `byte`: the reader counts neither
/// blank nor comment lines and places a record before those it skipped, so they are skipped
/// here too.
fn line_of(text: &[u8], byte: u64) -> u64 {
    let mut at = usize::try_from(byte).unwrap_or(usize::MAX).min(text.len());
    while let Some(&b) = text.get(at) {
        let line_start = at == 0 || text[at - 1] == b'\n';
        if b == b'\n' || b == b'\r' {
            at += 1;
        } else if b == b'#' && line_start {
            at = text[at..]
                .iter()
                .position(|c| *c == b'\n')
                .map_or(text.len(), |p| at + p + 1);
        } else {
            break;
        }
    }
    text[..at].iter().filter(|b| **b == b'\n').count() as u64 + 1
}

/// One data row; every field's problem at once.
fn row(
    line: u64,
    record: &csv::StringRecord,
    zones: &BTreeMap<ZoneId, Zone>,
) -> Result<Observation, Vec<RowError>> {
    let at = |field, problem| RowError {
        line,
        field,
        problem,
    };
    if record.len() != HEADER.len() {
        return Err(vec![at(Field::Row, Problem::Columns(record.len()))]);
    }
    let cell = |i: usize| record.get(i).unwrap_or_default();
    let mut errors = Vec::new();
    let zone = ZoneId::new(cell(0)).ok().filter(|z| zones.contains_key(z));
    if zone.is_none() {
        errors.push(at(Field::Zone, Problem::UnknownZone(quoted(cell(0)))));
    }
    let mut time = |i: usize, field: Field| match minute(cell(i)) {
        Ok(t) => Some(t),
        Err(problem) => {
            errors.push(at(field, problem));
            None
        }
    };
    let start = time(1, Field::Start);
    let end = time(2, Field::End);
    if let (Some(start), Some(end)) = (start, end)
        && end <= start
    {
        errors.push(at(Field::End, Problem::EndNotAfterStart { start, end }));
    }
    let people = cell(3)
        .parse::<f64>()
        .ok()
        .filter(|p| p.is_finite() && *p >= 0.0);
    match (people, zone.as_ref().and_then(|z| zones.get(z))) {
        (None, _) => errors.push(at(Field::People, Problem::People(quoted(cell(3))))),
        (Some(people), Some(z)) if people > z.area_m2 * MAX_DENSITY => {
            let problem = Problem::Denser {
                people,
                zone: z.id.clone(),
                area_m2: z.area_m2,
                density: people / z.area_m2,
            };
            errors.push(at(Field::People, problem));
        }
        _ => {}
    }
    match (zone, start, end, people) {
        (Some(zone), Some(start), Some(end), Some(people)) if errors.is_empty() => {
            Ok(Observation {
                line,
                zone,
                start,
                end,
                people,
            })
        }
        _ => Err(errors),
    }
}

/// A number as a person reads it: 1.5e30 rather than 31 digits.
fn short(v: f64) -> String {
    if v.abs() >= 1e6 {
        format!("{v:.2e}")
    } else {
        format!("{}", (v * 10.0).round() / 10.0)
    }
}

/// An RFC 3339 time on a whole minute.
fn minute(cell: &str) -> Result<Timestamp, Problem> {
    let t: Timestamp = cell.parse().map_err(|_| Problem::NotATime(quoted(cell)))?;
    if t.as_second().rem_euclid(60) != 0 || t.subsec_nanosecond() != 0 {
        return Err(Problem::NotWholeMinute(quoted(cell)));
    }
    Ok(t)
}

/// A cell as quoted back in an error: at most [`QUOTED_CHARS`] characters.
fn quoted(cell: &str) -> String {
    let mut q: String = cell.chars().take(QUOTED_CHARS).collect();
    if cell.chars().nth(QUOTED_CHARS).is_some() {
        q.push_str("...");
    }
    q
}

/// What a reading error says, without the crate's positions (the line is named already).
fn unreadable(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "not UTF-8 text (save the file as UTF-8 CSV)".into(),
        csv::ErrorKind::Io(_) => "the file could not be read".into(),
        _ => "not CSV (a quote left open?)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn zones() -> BTreeMap<ZoneId, Zone> {
        let text = r#"[broker]
mode = "embedded"
listen = "127.0.0.1:1883"
[storage]
kind = "sqlite"
path = "unused.db"
[[zones]]
id = "lab"
name = "Lab"
area_m2 = 80.0
"#;
        crate::config::AggregatorConfig::parse(text, Path::new("c.toml"), None)
            .expect("config")
            .zones
    }

    fn refused(text: &str) -> Vec<RowError> {
        parse(text.as_bytes(), &zones()).expect_err("refused").rows
    }

    fn one(text: &str) -> (u64, Field, Problem) {
        let rows = refused(text);
        assert_eq!(rows.len(), 1, "{rows:?}");
        (rows[0].line, rows[0].field, rows[0].problem.clone())
    }

    const HEAD: &str = "zone,start,end,people\n";

    #[test]
    fn rows_are_read_with_comments_spaces_a_bom_and_decimals() {
        let text = format!(
            "\u{feff}# lab counts, clicker\n{HEAD}lab, 2026-05-04T09:00:00Z ,2026-05-04T09:15:00Z,14\n\n\
             # second quarter\nlab,2026-05-04T11:15:00+02:00,2026-05-04T09:30:00Z,13.5\n"
        );
        let rows = parse(text.as_bytes(), &zones()).expect("valid");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].line, 3);
        assert_eq!(rows[0].people, 14.0);
        assert_eq!(rows[1].line, 6);
        assert_eq!(rows[1].start, "2026-05-04T09:15:00Z".parse().expect("ts"));
        assert_eq!(rows[1].people, 13.5);
    }

    #[test]
    fn each_refusal_names_its_line_and_field() {
        let ok = "lab,2026-05-04T09:00:00Z,2026-05-04T09:15:00Z,14";
        assert_eq!(one(""), (1, Field::Header, Problem::Empty));
        assert_eq!(
            one("# only a comment\n\nzone,start,end\n").0,
            3,
            "the header's own line"
        );
        assert_eq!(
            one(&format!("zone,begin,end,people\n{ok}\n")),
            (
                1,
                Field::Header,
                Problem::Header("zone,begin,end,people".into())
            )
        );
        assert_eq!(one(HEAD), (2, Field::Row, Problem::NoRows));
        assert_eq!(
            one(&format!("{ok}\n")).1,
            Field::Header,
            "a file without its header"
        );
        assert_eq!(
            one(&format!("{HEAD}{ok}\nlab,2026-05-04T09:00:00Z,14\n")),
            (3, Field::Row, Problem::Columns(3))
        );
        assert_eq!(
            one(&format!(
                "{HEAD}hall,2026-05-04T09:00:00Z,2026-05-04T09:15:00Z,14\n"
            )),
            (2, Field::Zone, Problem::UnknownZone("hall".into()))
        );
        assert_eq!(
            one(&format!(
                "{HEAD}lab,2026-05-04 9:00,2026-05-04T09:15:00Z,14\n"
            )),
            (2, Field::Start, Problem::NotATime("2026-05-04 9:00".into()))
        );
        assert_eq!(
            one(&format!(
                "{HEAD}lab,2026-05-04T09:00:00Z,2026-05-04T09:15:30Z,14\n"
            )),
            (
                2,
                Field::End,
                Problem::NotWholeMinute("2026-05-04T09:15:30Z".into())
            )
        );
        let (line, field, problem) = one(&format!(
            "{HEAD}lab,2026-05-04T09:15:00Z,2026-05-04T09:15:00Z,14\n"
        ));
        assert_eq!((line, field), (2, Field::End));
        assert!(matches!(problem, Problem::EndNotAfterStart { .. }));
        for people in ["-1", "many", "NaN", "inf", ""] {
            assert_eq!(
                one(&format!(
                    "{HEAD}lab,2026-05-04T09:00:00Z,2026-05-04T09:15:00Z,{people}\n"
                )),
                (2, Field::People, Problem::People(people.into())),
                "{people}"
            );
        }
        // The lab's 80 m2 hold at most 800 persons: 1e30 is a typo, 800 is a crush.
        let (line, field, problem) = one(&format!(
            "{HEAD}lab,2026-05-04T09:00:00Z,2026-05-04T09:15:00Z,1e30\n"
        ));
        assert_eq!((line, field), (2, Field::People));
        assert!(
            problem
                .to_string()
                .starts_with("1.00e30 persons in zone lab of 80 m2 is 1.25e28 persons/m2"),
            "{problem}"
        );
        assert!(
            parse(
                format!("{HEAD}lab,2026-05-04T09:00:00Z,2026-05-04T09:15:00Z,800\n").as_bytes(),
                &zones()
            )
            .is_ok()
        );
        // A quote left open swallows the lines after it into its field.
        assert_eq!(
            one(&format!(
                "{HEAD}lab,2026-05-04T09:00:00Z,2026-05-04T09:15:00Z,\"14\n{ok}\n"
            ))
            .1,
            Field::People
        );
    }

    #[test]
    fn every_bad_row_is_listed_at_once() {
        let text = format!(
            "{HEAD}hall,2026-05-04T09:00:00Z,2026-05-04T09:15:00Z,-3\n\
             lab,2026-05-04T09:00:00Z,2026-05-04T09:15:00Z,4\nlab,x,y,z\n"
        );
        let rows = refused(&text);
        let named: Vec<(u64, Field)> = rows.iter().map(|r| (r.line, r.field)).collect();
        assert_eq!(
            named,
            [
                (2, Field::Zone),
                (2, Field::People),
                (4, Field::Start),
                (4, Field::End),
                (4, Field::People)
            ]
        );
        let message = CountsError { rows }.to_string();
        assert!(
            message.starts_with("COUNTS.csv refused (5 problems):"),
            "{message}"
        );
        assert!(
            message.contains("line 2, zone: no zone \"hall\""),
            "{message}"
        );
    }

    #[test]
    fn text_that_is_not_utf8_is_named_by_line() {
        let mut text =
            format!("{HEAD}lab,2026-05-04T09:00:00Z,2026-05-04T09:15:00Z,1\n").into_bytes();
        text.extend_from_slice(b"lab,\xff\xfe,2026-05-04T09:15:00Z,1\n");
        let rows = parse(&text, &zones()).expect_err("refused").rows;
        assert_eq!((rows[0].line, rows[0].field), (3, Field::Row), "{rows:?}");
        let long = "x".repeat(500);
        let (_, _, problem) = one(&format!(
            "{HEAD}{long},2026-05-04T09:00:00Z,2026-05-04T09:15:00Z,1\n"
        ));
        assert!(problem.to_string().len() < 100, "{problem}");
    }
}
