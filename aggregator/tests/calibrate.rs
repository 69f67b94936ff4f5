//! `crowdflow-aggregator calibrate` on a SQLite store: the table and TOML on stdout, the TOML
//! read back by the config loader, exit codes, and refusals naming line and field.

use std::path::Path;
use std::process::{Command, Output};

use crowdflow_aggregator::config::{AggregatorConfig, Calibration, Floor};
use crowdflow_aggregator::store::{Accepted, Batch, SqliteStore, Store};
use crowdflow_aggregator::zone::ZoneId;
use crowdflow_contract::identity::Kind;
use crowdflow_contract::sketch::{Precision, Sketch};
use jiff::{SignedDuration, Timestamp};

/// One stored minute of `n` devices of `kind` in zone `lab`.
fn minute(kind: Kind, at: Timestamp, n: u64) -> Accepted {
    let mut sketch = Sketch::new(Precision::DEFAULT);
    let base = at.as_second().unsigned_abs() * 10_000;
    (base..base + n).for_each(|i| sketch.insert_bytes(&i.to_le_bytes()));
    Accepted {
        sensor: crowdflow_contract::wire::SensorId::new("lab-1").expect("id"),
        zone: ZoneId::new("lab").expect("zone"),
        kind,
        window_start: at,
        window_s: 60,
        epoch: "2026-05-04".parse().expect("epoch"),
        salt_fp: "00000000000000aa".parse().expect("fp"),
        frames: n,
        sketch,
    }
}

/// Eight quarter hours of one morning: 12 + 1.25 x people physical devices a minute,
/// 9 x people Wi-Fi addresses; COUNTS.csv of the people.
fn store(db: &Path) -> String {
    let mut accepted = Vec::new();
    let mut csv = String::from("zone,start,end,people\n");
    let first: Timestamp = "2026-05-04T08:00:00Z".parse().expect("ts");
    for q in 0..8i64 {
        let people = [0u64, 4, 12, 20, 32, 24, 16, 8][q as usize];
        let start = first + SignedDuration::from_mins(15 * q);
        for m in 0..15 {
            let at = start + SignedDuration::from_mins(m);
            accepted.push(minute(Kind::WifiDerandomized, at, 12 + people * 5 / 4));
            accepted.push(minute(Kind::WifiRandom, at, 9 * people));
        }
        csv += &format!(
            "lab,{start},{},{people}\n",
            start + SignedDuration::from_mins(15)
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = SqliteStore::open(db, Precision::DEFAULT).expect("open");
        store
            .merge_batch(Batch {
                accepted,
                rejects: Vec::new(),
            })
            .await
            .expect("store");
    });
    csv
}

fn config(db: &Path) -> String {
    format!(
        "[broker]\nmode = \"embedded\"\nlisten = \"127.0.0.1:1883\"\n[storage]\nkind = \"sqlite\"\n\
         path = \"{}\"\n[[zones]]\nid = \"hall\"\nname = \"Hall\"\narea_m2 = 400.0\n\
         [[zones]]\nid = \"lab\"\nname = \"Lab\"\narea_m2 = 80.0\n",
        db.display()
    )
}

fn calibrate(config: &Path, counts: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crowdflow-aggregator"))
        .arg("calibrate")
        .arg("--config")
        .arg(config)
        .arg("--counts")
        .arg(counts)
        .output()
        .expect("runs")
}

#[test]
fn calibrate_prints_a_table_and_toml_the_config_reads_back() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = dir.path().join("crowdflow.db");
    let counts = store(&db);
    let config_path = dir.path().join("aggregator.toml");
    std::fs::write(&config_path, config(&db)).expect("config");
    let counts_path = dir.path().join("counts.csv");
    // The hall was counted too, but its sensor stored nothing then.
    std::fs::write(
        &counts_path,
        format!("{counts}hall,2026-05-04T08:00:00Z,2026-05-04T08:15:00Z,40\n"),
    )
    .expect("counts");
    let out = calibrate(&config_path, &counts_path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success());
    assert!(
        stdout.contains("held out by leave-one-block-out"),
        "{stdout}"
    );
    assert!(stdout.contains("* wifi_derandomized"), "{stdout}");
    assert!(stdout.contains("naive addresses"), "{stdout}");
    assert!(
        stdout.contains("line 10, start..end: no stored minute of zone hall"),
        "{stdout}"
    );
    assert!(
        stdout.contains("too few observations: 0 counts"),
        "{stdout}"
    );
    assert!(
        stdout.contains("few observations (fewer than 19 held out)"),
        "{stdout}"
    );
    assert!(stdout.contains("1 of 2 zones calibrated."), "{stdout}");

    // The TOML, appended to the config (the lab is its last zone), loads.
    let toml = &stdout[stdout.find("# zone lab").expect("the TOML")..];
    let mut text = config(&db);
    text += toml;
    std::fs::write(&config_path, &text).expect("config");
    let loaded = AggregatorConfig::load(&config_path, None).expect("the pasted TOML loads");
    let lab = &loaded.zones[&ZoneId::new("lab").expect("id")];
    let c: &Calibration = &lab.calibration[&Kind::WifiDerandomized];
    assert!((c.factor - 0.8).abs() < 0.05, "{c:?}");
    assert!(
        matches!(c.floor, Floor::Devices(f) if (f - 12.0).abs() < 1.5),
        "{c:?}"
    );
    assert!(c.error.is_some_and(|e| e > 0.0));
    assert_eq!(c.observations, Some(8));
    let valid = Command::new(env!("CARGO_BIN_EXE_crowdflow-aggregator"))
        .arg("validate")
        .arg("--config")
        .arg(&config_path)
        .output()
        .expect("runs");
    assert!(
        valid.status.success(),
        "{}",
        String::from_utf8_lossy(&valid.stderr)
    );
    assert!(!String::from_utf8_lossy(&valid.stdout).contains("caution"));

    // A guess on the device estimate is valid, with a caution naming the zone.
    let fitted = text
        .lines()
        .find(|l| l.starts_with("wifi_derandomized = {"))
        .expect("the fitted line");
    std::fs::write(
        &config_path,
        text.replace(fitted, "wifi_derandomized = 0.8"),
    )
    .expect("config");
    let guessed = Command::new(env!("CARGO_BIN_EXE_crowdflow-aggregator"))
        .args(["validate", "--config"])
        .arg(&config_path)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&guessed.stdout);
    assert!(guessed.status.success(), "{stdout}");
    assert!(
        stdout.contains("caution: zone lab: a guessed factor on wifi_derandomized"),
        "{stdout}"
    );
}

#[test]
fn calibrate_refuses_bad_files_and_says_when_nothing_was_fitted() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = dir.path().join("crowdflow.db");
    let counts = store(&db);
    let config_path = dir.path().join("aggregator.toml");
    std::fs::write(&config_path, config(&db)).expect("config");
    let counts_path = dir.path().join("counts.csv");

    std::fs::write(
        &counts_path,
        format!("{counts}lab,2026-05-04T10:00:00Z,2026-05-04T10:15:00Z,twelve\n"),
    )
    .expect("counts");
    let out = calibrate(&config_path, &counts_path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("line 10, people: \"twelve\""), "{stderr}");

    // Only the first three quarter hours: too few to fit, exit 1.
    let few: String = counts.lines().take(4).map(|l| format!("{l}\n")).collect();
    std::fs::write(&counts_path, few).expect("counts");
    let out = calibrate(&config_path, &counts_path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("too few observations: 3 counts"),
        "{stdout}"
    );
    assert!(stdout.contains("0 of 1 zones calibrated."), "{stdout}");

    // No store where the config says.
    std::fs::write(&config_path, config(&dir.path().join("elsewhere.db"))).expect("config");
    let out = calibrate(&config_path, &counts_path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no store there"), "{stderr}");
    assert!(!dir.path().join("elsewhere.db").exists());
}
