//! Thousands of malformed and hostile messages interleaved with valid ones reach the
//! aggregator: it never stops consuming, stores every valid window, and counts each reject
//! under its reason.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crowdflow_aggregator::store::{Resolution, SqliteStore, Store};
use crowdflow_contract::epoch::{EpochId, RotationSchedule};
use crowdflow_contract::identity::Kind;
use crowdflow_contract::log_limit::BURST;
use crowdflow_contract::salt::SaltFingerprint;
use crowdflow_contract::sketch::{Precision, Sketch};
use crowdflow_contract::window::{Window, WindowLength};
use crowdflow_contract::wire::{SensorId, SketchMessage};
use crowdflow_tests::{
    announced_salt, free_port, http_get, run_binary, runtime, stored, wait_for_port,
};
use jiff::{SignedDuration, Timestamp};
use rumqttc::{AsyncClient, MqttOptions, QoS};

fn config(dir: &Path, port: u16, http: u16) -> PathBuf {
    let path = dir.join("aggregator.toml");
    let text = format!(
        "[http]\nlisten = \"127.0.0.1:{http}\"\n[broker]\nmode = \"embedded\"\nlisten = \"127.0.0.1:{port}\"\n[storage]\nkind = \"sqlite\"\npath = \"{}\"\n\
         [salt]\nannounce_every_s = 5\n[counting]\nwindow_s = 10\n\
         [[zones]]\nid = \"hall\"\nname = \"Hall\"\narea_m2 = 300.0\n\
         [[sensors]]\nid = \"s1\"\nzone = \"hall\"\nsenses = [\"wifi\"]\n\
         [[sensors]]\nid = \"s2\"\nzone = \"hall\"\nsenses = [\"wifi\"]\n",
        dir.join("crowdflow.db").display()
    );
    std::fs::write(&path, text).expect("config");
    path
}

fn message(
    sensor: &str,
    window: Window,
    epoch: EpochId,
    fp: SaltFingerprint,
    keys: std::ops::Range<u64>,
) -> SketchMessage {
    let mut sketch = Sketch::new(Precision::DEFAULT);
    for k in keys.clone() {
        sketch.insert_bytes(&k.to_le_bytes());
    }
    SketchMessage {
        sensor_id: SensorId::new(sensor).expect("id"),
        kind: Kind::WifiRandom,
        window,
        epoch,
        salt_fp: fp,
        sketch,
        frames: keys.end - keys.start,
        agent_version: "bad-input-test".into(),
    }
}

/// The i-th hostile message: (topic, payload, the reason the aggregator must give).
fn hostile(i: usize, valid: &SketchMessage, corpus: &[Vec<u8>]) -> (String, Vec<u8>, &'static str) {
    let topic = |s: &str| format!("crowdflow/v1/sketch/{s}");
    let mut m = valid.clone();
    match i % 10 {
        0 => (topic("s2"), valid.encode(), "topic_mismatch"),
        1 => {
            m.sensor_id = SensorId::new("intruder").expect("id");
            (topic("intruder"), m.encode(), "unknown_sensor")
        }
        2 => {
            m.salt_fp = "0000000000000000".parse().expect("fp");
            (topic("s1"), m.encode(), "salt_mismatch")
        }
        3 => {
            m.epoch = m.epoch.previous().previous();
            (topic("s1"), m.encode(), "bad_epoch")
        }
        4 => {
            m.kind = Kind::Ble;
            (topic("s1"), m.encode(), "kind_not_allowed")
        }
        5 => (topic("s1"), vec![b'{'; 70_000], "too_large"),
        6 => (
            topic("s1"),
            format!("{{\"v\": 1, \"sensor_id\": \"s1\", \"junk\": {i}").into_bytes(),
            "bad_json",
        ),
        7 => {
            let mut bytes = valid.encode();
            let at = bytes.len() / 2 + i % 50;
            bytes.truncate(at);
            (topic("s1"), bytes, "bad_json")
        }
        8 => {
            // A decodable envelope around a corrupted sketch from the fuzz corpus.
            let text = String::from_utf8(valid.encode()).expect("utf8");
            let doc: serde_json::Value = serde_json::from_str(&text).expect("json");
            let mut doc = doc;
            let bad = &corpus[i % corpus.len()];
            doc["sketch"]["b64"] =
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bad).into();
            (
                topic("s1"),
                serde_json::to_vec(&doc).expect("json"),
                "bad_sketch",
            )
        }
        9 if i % 20 == 9 => {
            // A count no radio can hear: once it overflowed the stored sums (#14).
            m.frames = u64::MAX;
            (topic("s1"), m.encode(), "bad_frames")
        }
        _ => (
            topic("s1"),
            (0..(i % 300) as u8).map(|b| b.wrapping_mul(31)).collect(),
            "bad_json",
        ),
    }
}

#[test]
fn hostile_messages_never_stop_ingest_and_every_valid_window_is_stored() {
    let dir = tempfile::tempdir().expect("tmp");
    let (port, http) = (free_port(), free_port());
    let started = std::time::Instant::now();
    let mut aggregator = run_binary(
        "crowdflow-aggregator",
        &config(dir.path(), port, http),
        "crowdflow-aggregator",
    );
    assert!(wait_for_port(port, Duration::from_secs(15)));
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contract/tests/fixtures");
    let corpus: Vec<Vec<u8>> = std::fs::read_dir(fixtures.join("fuzz"))
        .expect("fuzz corpus")
        .map(|e| std::fs::read(e.expect("entry").path()).expect("read"))
        .chain([b"garbage".to_vec(), vec![3, 1, 7, 14, 5, 8, 0, 1]])
        // Only what the codec refuses: some fuzz finds are valid sketches once rebuilt.
        .filter(|bytes| Sketch::decode(bytes, Precision::DEFAULT).is_err())
        .collect();
    assert!(corpus.len() >= 3);

    let runtime = runtime();
    let expected = runtime.block_on(async {
        let mut options = MqttOptions::new("bad-input-test", "127.0.0.1", port);
        options
            .set_max_packet_size(1 << 20, 1 << 20)
            .set_inflight(100);
        let (client, mut events) = AsyncClient::new(options, 4096);
        let announcement = announced_salt(&client, &mut events).await;
        let salt = &announcement.salts[0];
        let (epoch, fp) = (salt.epoch, salt.salt.fingerprint());
        tokio::spawn(async move { while events.poll().await.is_ok() {} });

        // 100 valid windows (50 per sensor), 5 distinct devices each, within the current epoch.
        let schedule = RotationSchedule::default();
        let now = Timestamp::now();
        let mut valid = Vec::new();
        let mut t = Window::containing(
            now - SignedDuration::from_mins(9),
            WindowLength::new(10).expect("10 s"),
        );
        while valid.len() < 100 {
            if schedule.spans(&t).iter().all(|s| s.epoch == epoch) {
                for sensor in ["s1", "s2"] {
                    let k = valid.len() as u64 * 5;
                    valid.push(message(sensor, t, epoch, fp, k..k + 5));
                }
            }
            t = t.next();
        }
        let mut expected: BTreeMap<&'static str, u64> = BTreeMap::new();
        for i in 0..1000 {
            let (topic, payload, reason) = hostile(i, &valid[i % valid.len()], &corpus);
            *expected.entry(reason).or_insert(0) += 1;
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .expect("publish");
            if i % 10 == 0 {
                let m = &valid[i / 10];
                client
                    .publish(
                        format!("crowdflow/v1/sketch/{}", m.sensor_id),
                        QoS::AtLeastOnce,
                        false,
                        m.encode(),
                    )
                    .await
                    .expect("publish");
            }
        }
        let store =
            SqliteStore::open(&dir.path().join("crowdflow.db"), Precision::DEFAULT).expect("open");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut frames = 0;
        while tokio::time::Instant::now() < deadline {
            frames = stored::frames(&store).await;
            if frames >= 500 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        assert_eq!(frames, 500, "every valid window is stored");
        assert_eq!(
            stored::devices(&store, "hall", Kind::WifiRandom, Resolution::Minute).await,
            500.0
        );
        // Rejects under a configured sensor's topic count in its stored health.
        let health = store.sensor_health().await.expect("health");
        let s1 = health
            .iter()
            .find(|h| h.sensor.as_str() == "s1")
            .expect("s1");
        assert_eq!(
            s1.rejects.get("salt_mismatch").copied(),
            expected.get("salt_mismatch").copied()
        );
        assert!(health.iter().all(|h| h.sensor.as_str() != "intruder"));
        expected
    });
    assert!(
        aggregator.child.try_wait().expect("status").is_none(),
        "the aggregator is still running"
    );
    let metrics = http_get(http, "/metrics").expect("GET /metrics");
    for (reason, count) in &expected {
        let line = format!("crowdflow_ingest_rejects_total{{reason=\"{reason}\"}} {count}");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
    assert!(
        metrics.contains("crowdflow_ingest_accepted_total 100"),
        "{metrics}"
    );
    aggregator.terminate(Duration::from_secs(5));
    // The log shows each reason, but a flood only as a burst a minute (the metrics above
    // count every one); a slow machine may have spread them over more than one minute.
    let log = String::from_utf8_lossy(&aggregator.output()).into_owned();
    let minutes = started.elapsed().as_secs() / 60 + 1;
    for (reason, count) in expected {
        let seen = log
            .lines()
            .filter(|l| {
                l.contains("sketch rejected") && l.contains(&format!("reason=\"{reason}\""))
            })
            .count() as u64;
        let burst = u64::from(BURST);
        assert!(
            (count.min(burst)..=count.min(burst * minutes)).contains(&seen),
            "{seen} lines for {count} rejects for {reason}"
        );
    }
    assert!(!log.contains("panicked"), "{log}");
}
