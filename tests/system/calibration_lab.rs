//! Calibration on real days: the brno-lab captures (three days of a university lab, hand head
//! counts per 15 minutes in `occupancy_15min.csv`) counted by the agent's own counting state
//! (`Counter`: salted hashing, per-minute windows, the physical-device estimate under the
//! signal gate it learns as it goes) under salts of their own 2022-2023 epochs, each window's
//! envelope checked by the aggregator's `Validator` and stored by its store, the retention
//! purge run as of today, then `crowdflow-aggregator calibrate` on the head counts with
//! leave-one-day-out. Figures: docs/counting-devices.md ("Measured").
//!
//! What is not the live path, and why: the agent replays a file at its recorded pace shifted
//! to the present (hours per day, and the 2022 times are lost), and the aggregator refuses
//! windows more than 7 days old and only issues salts for the current epochs. So the MQTT link
//! and the running service are left out; the envelopes are the ones the agent would publish
//! and are checked as ingest checks them, with "now" at each window's end. The lab's own 14
//! computers are kept in (a deployment hears its static devices: the fitted floor is for
//! them).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crowdflow_agent::capture::file::CaptureReader;
use crowdflow_agent::counting::Counter;
use crowdflow_agent::counting::window::Windows;
use crowdflow_agent::frame::{self, FramePolicy};
use crowdflow_aggregator::calibration::fit::median;
use crowdflow_aggregator::calibration::{self, Prediction, Report};
use crowdflow_aggregator::config::AggregatorConfig;
use crowdflow_aggregator::ingest::Validator;
use crowdflow_aggregator::metrics::Metrics;
use crowdflow_aggregator::store::{Batch, BucketQuery, Resolution, Retention, SqliteStore, Store};
use crowdflow_aggregator::zone::ZoneId;
use crowdflow_contract::identity::Kind;
use crowdflow_contract::salt::Salt;
use crowdflow_contract::sketch::Precision;
use crowdflow_contract::window::WindowLength;
use crowdflow_contract::wire::{EpochSalt, SaltAnnouncement, SensorId, SketchMessage, Topics};
use crowdflow_tests::workspace_binary;
use jiff::{SignedDuration, Timestamp};

const DAYS: [&str; 3] = [
    "sc6-61_2022-10-19",
    "sc6-61_2022-11-16",
    "sc6-61_2023-02-23",
];

fn lab(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../sensor-agent/tests/data/captures/brno-lab")
        .join(rel)
}

fn config_text(db: &Path) -> String {
    format!(
        "[broker]\nmode = \"embedded\"\nlisten = \"127.0.0.1:1883\"\n[storage]\nkind = \"sqlite\"\n\
         path = \"{}\"\n[[zones]]\nid = \"lab\"\nname = \"Lab SC6.61\"\narea_m2 = 80.0\n\
         [[sensors]]\nid = \"lab-1\"\nzone = \"lab\"\nsenses = [\"wifi\", \"ble\"]\n",
        db.display()
    )
}

/// The sketch messages an agent started at the day's first frame would have published.
fn agent_day(
    path: &Path,
    config: &AggregatorConfig,
    validator: &mut Validator,
) -> Vec<SketchMessage> {
    let file = File::open(path).expect("capture");
    let mut reader = CaptureReader::new(BufReader::new(file)).expect("readable");
    let policy = FramePolicy::default();
    let mut sightings = Vec::new();
    let mut out = Vec::new();
    while let Some(p) = reader.next_packet().expect("whole file") {
        let at = Timestamp::from_nanosecond(i128::from(p.ts_ns)).expect("time");
        out.clear();
        frame::decode_packet(&p, &policy, true, &mut out);
        sightings.extend(out.drain(..).map(|s| (at, s)));
    }
    sightings.sort_by_key(|(t, _)| *t);
    let (first, last) = (sightings[0].0, sightings[sightings.len() - 1].0);

    // The authority's salts of every epoch the day touches (the rotation of the config).
    let schedule = &config.rotation;
    let mut salts = Vec::new();
    let mut epoch = schedule.epoch_at(first);
    while epoch <= schedule.epoch_at(last) {
        let salt = Salt::generate().expect("entropy");
        validator.know(epoch, salt.fingerprint());
        salts.push(EpochSalt {
            epoch,
            starts: schedule.start_of(epoch).expect("start"),
            ends: schedule.end_of(epoch).expect("end"),
            salt,
        });
        epoch = epoch.next();
    }
    let sensor = SensorId::new("lab-1").expect("id");
    let windows = Windows::new(
        WindowLength::DEFAULT,
        Precision::DEFAULT,
        Kind::ALL.to_vec(),
    );
    let mut counter = Counter::new(sensor, windows);
    counter.accept_salts(
        SaltAnnouncement {
            authority: "lab-authority".into(),
            issued_at: first,
            salts,
        },
        first,
    );
    // As the live agent: due windows close as time goes on, under the gate learned so far.
    let mut messages = Vec::new();
    let mut closed_at = first;
    for (at, sighting) in &sightings {
        if *at >= closed_at + SignedDuration::from_secs(1) {
            messages.extend(counter.close_due(*at));
            closed_at = *at;
        }
        counter.record_sighting(*at, sighting);
    }
    messages.extend(counter.close_due(last + SignedDuration::from_mins(2)));
    messages.extend(counter.close_all());
    messages
}

/// COUNTS.csv of the lab's hand counts per 15-minute window.
fn counts() -> String {
    let text = std::fs::read_to_string(lab("occupancy_15min.csv")).expect("head counts");
    let mut csv = String::from("zone,start,end,people\n");
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("day,"))
    {
        let f: Vec<&str> = line.split(',').collect();
        let start = Timestamp::from_second(f[1].parse().expect("start")).expect("time");
        csv += &format!(
            "lab,{start},{},{}\n",
            start + SignedDuration::from_mins(15),
            f[2]
        );
    }
    csv
}

#[test]
fn the_lab_days_calibrate_through_the_store() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = dir.path().join("crowdflow.db");
    let config_path = dir.path().join("aggregator.toml");
    std::fs::write(&config_path, config_text(&db)).expect("config");
    let config = Arc::new(AggregatorConfig::load(&config_path, None).expect("config"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let topics = Topics::default();
    let mut validator = Validator::new(config.clone(), Metrics::default());
    let store = SqliteStore::open(&db, Precision::DEFAULT).expect("store");
    let mut stored = BTreeMap::<Kind, usize>::new();
    for day in DAYS {
        let messages = agent_day(
            &lab(&format!("{day}_anonymized.pcap")),
            &config,
            &mut validator,
        );
        let mut accepted = Vec::new();
        for m in messages {
            let now = m.window.end() + SignedDuration::from_secs(3);
            let a = validator
                .check(&topics.sketch(&m.sensor_id), &m.encode(), now)
                .unwrap_or_else(|e| panic!("{day}: ingest refused a window: {e}"));
            *stored.entry(a.kind).or_default() += 1;
            accepted.push(a);
        }
        runtime
            .block_on(store.merge_batch(Batch {
                accepted,
                rejects: Vec::new(),
            }))
            .expect("merge");
    }
    eprintln!("windows stored per kind: {stored:?}");

    // Today's retention purge drops the 2022 minute sketches; the numbers stay, and they are
    // all calibrate reads.
    let lab_zone = ZoneId::new("lab").expect("id");
    let (first, last) = (
        Timestamp::from_second(1_666_184_400).expect("t"),
        Timestamp::from_second(1_677_132_000).expect("t"),
    );
    let query = BucketQuery {
        zone: &lab_zone,
        kind: Kind::WifiDerandomized,
        resolution: Resolution::Minute,
        from: first,
        to: last,
    };
    let report = runtime
        .block_on(store.purge(Retention::default(), Timestamp::now()))
        .expect("purge");
    assert!(report.sketches > 0, "{report:?}");
    assert!(
        runtime
            .block_on(store.zone_sketches(query))
            .expect("read")
            .is_empty()
    );
    let minutes = runtime.block_on(store.zone_numbers(query)).expect("read");
    assert!(minutes.len() > 500, "{} stored minutes", minutes.len());
    drop(store);

    let counts_path = dir.path().join("counts.csv");
    std::fs::write(&counts_path, counts()).expect("counts");
    let out = std::process::Command::new(workspace_binary("crowdflow-aggregator"))
        .args(["calibrate", "--config"])
        .arg(&config_path)
        .arg("--counts")
        .arg(&counts_path)
        .output()
        .expect("calibrate runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success());

    // The same through the library, for the figures.
    let store = SqliteStore::open(&db, Precision::DEFAULT).expect("store");
    let report: Report = runtime
        .block_on(calibration::calibrate(
            &store,
            &config.zones,
            &config.rotation,
            counts().as_bytes(),
        ))
        .expect("report");
    let zone = &report.zones[0];
    assert_eq!(
        zone.validation,
        Some(calibration::fit::Validation::LeaveOneDayOut { days: 4 })
    );
    let naive = zone.naive.expect("naive addresses");
    eprintln!(
        "per 15-minute window, held out by day (occupied: >= 5 persons, 15 windows; empty: 28):"
    );
    let mut figures = BTreeMap::new();
    for k in &zone.kinds {
        if let Some(fit) = &k.fit {
            eprintln!(
                "  {} (factor {}, floor {}, error {}): {}",
                k.kind,
                fit.factor,
                fit.floor,
                fit.error,
                figure(&k.predictions)
            );
            figures.insert(k.kind, split(&k.predictions));
        }
    }
    eprintln!("  naive addresses: {}", figure(&zone.naive_predictions));
    let picked = zone.picked_fit().expect("the lab is calibrated");
    // Physical devices are fitted (BLE is not in these Wi-Fi captures).
    let (occupied, _) = figures[&Kind::WifiDerandomized];
    let (naive_occupied, _) = split(&zone.naive_predictions);
    assert!(
        picked.held_out.median_error < naive.median_error,
        "calibration beats naive address counting: {picked:?} vs {naive:?}"
    );
    assert!(
        occupied.0 * 2.0 < naive_occupied.0,
        "occupied windows: {occupied:?} vs naive {naive_occupied:?}"
    );
}

/// (median relative error, median persons off, share within +-20 %, share within +-30 %)
/// of occupied (>= 5 persons) and of empty windows.
type Split = ((f64, f64, f64, f64), (f64, f64, f64, f64));

fn split(predictions: &[Prediction]) -> Split {
    let of = |keep: &dyn Fn(f64) -> bool| {
        let chosen: Vec<&Prediction> = predictions.iter().filter(|p| keep(p.people)).collect();
        let mut relative: Vec<f64> = chosen
            .iter()
            .map(|p| (p.people - p.predicted).abs() / p.people.max(5.0))
            .collect();
        let mut persons: Vec<f64> = chosen
            .iter()
            .map(|p| (p.people - p.predicted).abs())
            .collect();
        let within = |limit: f64| {
            relative.iter().filter(|r| **r <= limit).count() as f64 / chosen.len().max(1) as f64
        };
        let (within_20, within_30) = (within(0.2), within(0.3));
        (
            median(&mut relative).unwrap_or(f64::NAN),
            median(&mut persons).unwrap_or(f64::NAN),
            within_20,
            within_30,
        )
    };
    (of(&|p| p >= 5.0), of(&|p| p == 0.0))
}

fn figure(predictions: &[Prediction]) -> String {
    let (occupied, empty) = split(predictions);
    format!(
        "occupied: median {:.1} % ({:.1} persons), {:.0} % within +-20 %, {:.0} % within +-30 %; empty: median {:.1} persons",
        occupied.0 * 100.0,
        occupied.1,
        occupied.2 * 100.0,
        occupied.3 * 100.0,
        empty.1
    )
}
