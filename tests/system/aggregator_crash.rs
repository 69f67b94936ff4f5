//! The aggregator is killed with SIGKILL in the middle of a steady stream and restarted,
//! behind a real Mosquitto (external mode: persistent session, shared subscription, acks
//! only after commit): the stored counts equal what a fault-free run stores.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crowdflow_aggregator::store::{Resolution, SqliteStore};
use crowdflow_contract::identity::Kind;
use crowdflow_contract::sketch::Precision;
use crowdflow_tests::capture::{Probe, write_probes};
use crowdflow_tests::{Mosquitto, run_binary, stored};

const DEVICES: u64 = 100;

/// 100 devices, each probing once, four per second from 1 s to 26 s.
fn probes() -> Vec<Probe> {
    (0..DEVICES)
        .map(|i| Probe {
            t_us: 1_000_000 + i * 250_000,
            address: [0x0a, 0x11, 0x22, 0x00, (i >> 8) as u8, i as u8],
        })
        .collect()
}

fn aggregator_config(dir: &Path, port: u16) -> PathBuf {
    let path = dir.join("aggregator.toml");
    let text = format!(
        "[broker]\nmode = \"external\"\nurl = \"mqtt://127.0.0.1:{port}\"\n[storage]\nkind = \"sqlite\"\npath = \"{}\"\n\
         [salt]\nannounce_every_s = 5\n[counting]\nwindow_s = 10\n\
         [[zones]]\nid = \"gate\"\nname = \"Gate\"\narea_m2 = 800.0\n\
         [[sensors]]\nid = \"gate-1\"\nzone = \"gate\"\nsenses = [\"wifi\"]\n",
        dir.join("crowdflow.db").display()
    );
    std::fs::write(&path, text).expect("config");
    path
}

fn agent_config(dir: &Path, port: u16, pcap: &Path) -> PathBuf {
    let path = dir.join("agent.toml");
    let text = format!(
        "sensor_id = \"gate-1\"\n[broker]\nurl = \"mqtt://127.0.0.1:{port}\"\n[capture]\nsource = \"pcap\"\nsenses = [\"wifi\"]\n\
         pcap = [\"{}\"]\n[counting]\nwindow_s = 10\n[outbox]\ndir = \"{}\"\n",
        pcap.display(),
        dir.join("outbox").display()
    );
    std::fs::write(&path, text).expect("config");
    path
}

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
    write_probes(&pcap, &probes());
    let aggregator_cfg = aggregator_config(dir.path(), broker.port);
    let mut aggregator = run_binary(
        "crowdflow-aggregator",
        &aggregator_cfg,
        "crowdflow-aggregator",
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        // The aggregator listens 3 s for a leader, then announces the salt.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let mut agent = run_binary(
            "crowdflow-agent",
            &agent_config(dir.path(), broker.port, &pcap),
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
