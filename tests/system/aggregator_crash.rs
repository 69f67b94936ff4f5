//! The aggregator is killed with SIGKILL in the middle of a steady stream and restarted,
//! behind a real Mosquitto (external mode: persistent session, shared subscription, acks
//! only after commit): the stored counts equal what a fault-free run stores.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crowdflow_aggregator::store::{BucketQuery, Resolution, SqliteStore, Store};
use crowdflow_aggregator::zone::ZoneId;
use crowdflow_contract::epoch::{EpochId, RotationSchedule};
use crowdflow_contract::identity::Kind;
use crowdflow_contract::sketch::{Precision, Sketch, SketchUnion};
use crowdflow_contract::window::{Window, WindowLength};
use crowdflow_contract::wire::{SensorId, SketchMessage};
use crowdflow_tests::capture::write_probes;
use crowdflow_tests::gate::{self, DEVICES};
use crowdflow_tests::{Mosquitto, announced_salt, run_binary, runtime, stored};
use jiff::{SignedDuration, Timestamp};
use rumqttc::{AsyncClient, MqttOptions, QoS};

/// (frames stored, devices) over all salts: each device probes once, so per-salt unions add.
async fn totals(store: &SqliteStore) -> (u64, f64) {
    (
        stored::frames(store).await,
        stored::devices(store, "gate", Kind::WifiRandom, Resolution::Minute).await,
    )
}

#[test]
fn a_sigkilled_aggregator_loses_nothing_behind_mosquitto() {
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(dir.path());
    let pcap = dir.path().join("stream.pcap");
    // 100 devices, each probing once, four per second from 1 s to 26 s.
    write_probes(&pcap, &gate::probes([0x0a, 0x11, 0x22], 250_000));
    let aggregator_cfg = gate::aggregator_config(
        &dir.path().join("aggregator.toml"),
        &format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[broker]\nmode = \"external\"\nurl = \"mqtt://127.0.0.1:{}\"\n\
             [storage]\nkind = \"sqlite\"\npath = \"{}\"\n[salt]\nannounce_every_s = 5",
            broker.port,
            dir.path().join("crowdflow.db").display()
        ),
    );
    let mut aggregator = run_binary(
        "crowdflow-aggregator",
        &aggregator_cfg,
        "crowdflow-aggregator",
    );
    let runtime = runtime();
    runtime.block_on(async {
        // The aggregator listens 3 s for a leader, then announces the salt.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let mut agent = run_binary(
            "crowdflow-agent",
            &gate::agent_config(dir.path(), broker.port, &pcap),
            "crowdflow-agent",
        );
        let store =
            SqliteStore::open(&dir.path().join("crowdflow.db"), Precision::DEFAULT).expect("open");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
        while totals(&store).await.0 == 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let before = totals(&store).await.0;
        assert!(
            before > 0 && before < DEVICES,
            "killed mid-stream: {before} frames stored\n{}",
            String::from_utf8_lossy(&aggregator.output())
        );
        aggregator.kill();
        // Windows close while it is down; Mosquitto keeps them for its persistent session.
        tokio::time::sleep(Duration::from_secs(12)).await;
        aggregator = run_binary(
            "crowdflow-aggregator",
            &aggregator_cfg,
            "crowdflow-aggregator",
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while totals(&store).await.0 < DEVICES && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (frames, devices) = totals(&store).await;
        agent.terminate(Duration::from_secs(5));
        aggregator.terminate(Duration::from_secs(5));
        assert_eq!(
            (frames, devices),
            (DEVICES, DEVICES as f64),
            "the fault-free run stores 100 frames of 100 devices\nagent:\n{}\naggregator:\n{}",
            String::from_utf8_lossy(&agent.output()),
            String::from_utf8_lossy(&aggregator.output())
        );
    });
}

/// Sketches of `sensor` in its windows: 1,500 devices each (HLL mode, so every merge
/// rewrites whole sketches), overlapping between windows and sensors.
fn heavy_sketch(sensor: u64, window: u64) -> Sketch {
    let mut s = Sketch::new(Precision::DEFAULT);
    let first = sensor * 700 + window * 300;
    (first..first + 1_500).for_each(|d| s.insert_bytes(&d.to_le_bytes()));
    s
}

/// `count` 10 s windows of `epoch` ending at least 20 s ago, newest first.
fn recent_windows(epoch: EpochId, schedule: &RotationSchedule, count: usize) -> Vec<Window> {
    let length = WindowLength::new(10).expect("10 s");
    let mut w = Window::containing(Timestamp::now() - SignedDuration::from_secs(20), length);
    let mut out = Vec::new();
    while out.len() < count {
        if schedule.spans(&w).iter().all(|s| s.epoch == epoch) {
            out.push(w);
        }
        w = Window::containing(w.start() - SignedDuration::from_secs(1), length);
    }
    out
}

fn heavy_config(dir: &Path, port: u16, sensors: u64) -> PathBuf {
    let path = dir.join("heavy.toml");
    let mut text = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n[broker]\nmode = \"external\"\nurl = \"mqtt://127.0.0.1:{port}\"\nclient_id = \"heavy\"\n[storage]\nkind = \"sqlite\"\npath = \"{}\"\n\
         [salt]\nannounce_every_s = 5\n[counting]\nwindow_s = 10\n\
         [[zones]]\nid = \"hall\"\nname = \"Hall\"\narea_m2 = 800.0\n",
        dir.join("heavy.db").display()
    );
    for s in 0..sensors {
        text += &format!("[[sensors]]\nid = \"h{s}\"\nzone = \"hall\"\nsenses = [\"wifi\"]\n");
    }
    std::fs::write(&path, text).expect("config");
    path
}

/// kill -9 lands while the aggregator commits (it is always committing under this load),
/// five times: SQLite's WAL keeps the file consistent, every commit survives, and the broker
/// redelivers what was not committed, so the end state equals a run without crashes.
#[test]
fn repeated_sigkills_mid_write_leave_a_consistent_complete_store() {
    const SENSORS: u64 = 40;
    const WINDOWS: u64 = 40;
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(dir.path());
    let config = heavy_config(dir.path(), broker.port, SENSORS);
    let db = dir.path().join("heavy.db");
    let mut aggregator = run_binary("crowdflow-aggregator", &config, "crowdflow-aggregator");
    let runtime = runtime();
    runtime.block_on(async {
        let mut options = MqttOptions::new("heavy-publisher", "127.0.0.1", broker.port);
        options
            .set_max_packet_size(1 << 20, 1 << 20)
            .set_inflight(200);
        let (client, mut events) = AsyncClient::new(options, 5_000);
        let announcement = announced_salt(&client, &mut events).await;
        let now = Timestamp::now();
        let current = announcement
            .salts
            .iter()
            .find(|s| s.starts <= now && now < s.ends)
            .expect("the current epoch's salt");
        let (epoch, fp) = (current.epoch, current.salt.fingerprint());
        tokio::spawn(async move { while events.poll().await.is_ok() {} });

        let windows = recent_windows(epoch, &RotationSchedule::default(), WINDOWS as usize);
        let mut expected = SketchUnion::new(Precision::DEFAULT);
        for w in 0..WINDOWS {
            for s in 0..SENSORS {
                let sketch = heavy_sketch(s, w);
                expected.add(&sketch);
                let payload = SketchMessage {
                    sensor_id: SensorId::new(&format!("h{s}")).expect("id"),
                    kind: Kind::Wifi,
                    window: windows[w as usize],
                    epoch,
                    salt_fp: fp,
                    sketch,
                    frames: 1,
                    agent_version: "test".into(),
                }
                .encode();
                client
                    .publish(
                        format!("crowdflow/v1/sketch/h{s}"),
                        QoS::AtLeastOnce,
                        false,
                        payload,
                    )
                    .await
                    .expect("publish");
            }
        }
        let total = SENSORS * WINDOWS;
        let store = SqliteStore::open(&db, Precision::DEFAULT).expect("open");
        let mut kills = Vec::new();
        for _ in 0..5 {
            // Kill once this run has committed something (so it is mid-stream).
            let at_start = stored::frames(&store).await;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while stored::frames(&store).await == at_start && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
            aggregator.kill();
            let committed = stored::frames(&store).await;
            kills.push(committed);
            if committed == total {
                break;
            }
            aggregator = run_binary("crowdflow-aggregator", &config, "crowdflow-aggregator");
        }
        stored::wait_for_frames(&store, total, Duration::from_secs(90)).await;
        aggregator.terminate(Duration::from_secs(5));
        eprintln!("frames committed at each kill -9: {kills:?} of {total}");
        assert!(
            kills.len() >= 3 && kills[0] < total,
            "the kills landed mid-stream: frames committed at each kill {kills:?}"
        );
        let integrity: String = rusqlite_check(&db);
        assert_eq!(
            integrity,
            "ok",
            "PRAGMA integrity_check after {} kills",
            kills.len()
        );
        assert_eq!(
            stored::frames(&store).await,
            total,
            "every message stored once, kills at {kills:?}\n{}",
            String::from_utf8_lossy(&aggregator.output())
        );
        let at = windows[WINDOWS as usize - 1].start();
        let buckets = store
            .zone_sketches(BucketQuery {
                zone: &ZoneId::new("hall").expect("zone id"),
                kind: Kind::Wifi,
                resolution: Resolution::Day,
                from: at - SignedDuration::from_hours(24),
                to: at + SignedDuration::from_hours(24),
            })
            .await
            .expect("read");
        let mut union = SketchUnion::new(Precision::DEFAULT);
        buckets.iter().for_each(|b| union.add(&b.sketch));
        assert_eq!(
            union.estimate(),
            expected.estimate(),
            "the stored union equals the union of everything sent"
        );
    });
}

/// SQLite's own verdict on the file.
fn rusqlite_check(db: &Path) -> String {
    let conn = rusqlite::Connection::open(db).expect("open for the check");
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check")
}
