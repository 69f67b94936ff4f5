//! A hostile sensor on the embedded broker (#14): with accounts configured, sensor `s2` logs
//! in with its own password and tries, from one list of cases, everything the shipped
//! Mosquitto ACL forbids while sensor `s1` publishes honestly. Pass: the attacker reads
//! nothing of `s1`, its forgeries reach no one, and the stored counts and the accepted total
//! are exactly `s1`'s, as in a run without the attacker.
//!
//! The same list is not yet run against Mosquitto: there the shipped config is TLS-only with
//! its own accounts (see deploy_mosquitto.rs, which checks the ACL's core cases itself).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crowdflow_aggregator::store::{Resolution, SqliteStore};
use crowdflow_contract::epoch::{EpochId, RotationSchedule};
use crowdflow_contract::identity::Kind;
use crowdflow_contract::salt::SaltFingerprint;
use crowdflow_contract::sketch::{Precision, Sketch};
use crowdflow_contract::window::{Window, WindowLength};
use crowdflow_contract::wire::{SensorId, SketchMessage};
use crowdflow_tests::{
    announced_salt, free_port, http_get, run_binary, runtime, stored, wait_for_port,
};
use jiff::{SignedDuration, Timestamp};
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, LastWill, MqttOptions, Packet, QoS,
};

/// What the attacker tries; each must change nothing.
#[derive(Debug, Clone, Copy)]
enum Attack {
    /// Subscribe to a filter that would show other sensors' traffic.
    Read(&'static str),
    /// Publish a valid-looking sketch (extra devices) on `s1`'s sketch topic.
    ForgeSketch,
    /// Publish a status on `s1`'s status topic.
    ForgeStatus,
    /// Publish on a topic only the aggregator may publish on.
    Authority(&'static str),
    /// Publish its own valid sketch, but retained.
    RetainOwnSketch,
    /// Log in with a last will on `s1`'s status topic.
    WillAsOther,
    /// Log in with the aggregator's client id (taking over its session).
    AggregatorClientId,
    /// Log in as `s1` with the wrong password.
    WrongPassword,
}

/// Every case, in the order they are tried.
const ATTACKS: &[Attack] = &[
    Attack::Read("#"),
    Attack::Read("crowdflow/v1/sketch/+"),
    Attack::Read("crowdflow/v1/status/#"),
    Attack::Read("crowdflow/v1/salt/return/+"),
    Attack::Read("crowdflow/v1/salt/request/+"),
    Attack::Read("crowdflow/v1/salt/answer/+"),
    Attack::ForgeSketch,
    Attack::ForgeStatus,
    Attack::Authority("crowdflow/v1/salt"),
    Attack::Authority("crowdflow/v1/salt/recover"),
    Attack::Authority("crowdflow/v1/salt/answer/s1"),
    Attack::RetainOwnSketch,
    Attack::WillAsOther,
    Attack::AggregatorClientId,
    Attack::WrongPassword,
];

/// Every publish a client received: (topic, payload).
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// Bytes the attacker puts in every forged payload, to spot one wherever it arrives.
const MARK: &[u8] = b"forged-by-s2";

fn config(dir: &Path, port: u16, http: u16) -> PathBuf {
    let path = dir.join("aggregator.toml");
    let text = format!(
        "[http]\nlisten = \"127.0.0.1:{http}\"\n[broker]\nmode = \"embedded\"\nlisten = \"127.0.0.1:{port}\"\n\
         [storage]\nkind = \"sqlite\"\npath = \"{}\"\n\
         [salt]\nannounce_every_s = 5\n[counting]\nwindow_s = 10\n\
         [[zones]]\nid = \"hall\"\nname = \"Hall\"\narea_m2 = 300.0\n\
         [[sensors]]\nid = \"s1\"\nzone = \"hall\"\npassword = \"secret-1\"\nsenses = [\"wifi\"]\n\
         [[sensors]]\nid = \"s2\"\nzone = \"hall\"\npassword = \"secret-2\"\nsenses = [\"wifi\"]\n",
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
        agent_version: "hostile-sensor-test".into(),
    }
}

fn options(client_id: &str, user: &str, password: &str, port: u16) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
    o.set_credentials(user, password)
        .set_max_packet_size(1 << 20, 1 << 20)
        .set_keep_alive(Duration::from_secs(30));
    o
}

/// The CONNACK code of a fresh connection.
async fn connack(events: &mut EventLoop) -> Option<ConnectReturnCode> {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(a))) => return Some(a.code),
                Ok(_) => {}
                Err(rumqttc::ConnectionError::ConnectionRefused(code)) => return Some(code),
                Err(_) => return None,
            }
        }
    })
    .await
    .ok()
    .flatten()
}

/// Polls `events` for good, keeping every publish it receives in `seen`; refused
/// subscriptions are counted in `refused`.
fn keep(mut events: EventLoop, seen: Seen, refused: Arc<Mutex<usize>>) {
    tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if let Ok(mut s) = seen.lock() {
                        s.push((p.topic.clone(), p.payload.to_vec()));
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(a))) => {
                    let failed = a
                        .return_codes
                        .iter()
                        .filter(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                        .count();
                    if let Ok(mut r) = refused.lock() {
                        *r += failed;
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
}

#[test]
fn a_hostile_sensor_reads_nothing_forges_nothing_and_changes_no_count() {
    let dir = tempfile::tempdir().expect("tmp");
    let (port, http) = (free_port(), free_port());
    let mut aggregator = run_binary(
        "crowdflow-aggregator",
        &config(dir.path(), port, http),
        "crowdflow-aggregator",
    );
    assert!(wait_for_port(port, Duration::from_secs(15)), "broker up");
    let runtime = runtime();
    runtime.block_on(async {
        // The honest sensor: reads the salt, and listens where the attacker would forge.
        let (honest, mut honest_events) =
            AsyncClient::new(options("crowdflow-agent-s1", "s1", "secret-1", port), 1024);
        let announcement = announced_salt(&honest, &mut honest_events).await;
        let salt = &announcement.salts[0];
        let (epoch, fp) = (salt.epoch, salt.salt.fingerprint());
        for filter in ["crowdflow/v1/salt/recover", "crowdflow/v1/salt/answer/s1"] {
            honest
                .subscribe(filter, QoS::AtMostOnce)
                .await
                .expect("subscribe");
        }
        let honest_seen = Arc::new(Mutex::new(Vec::new()));
        keep(honest_events, honest_seen.clone(), Arc::new(Mutex::new(0)));

        let schedule = RotationSchedule::default();
        let mut windows = Vec::new();
        let mut t = Window::containing(
            Timestamp::now() - SignedDuration::from_mins(9),
            WindowLength::new(10).expect("10 s"),
        );
        while windows.len() < 20 {
            if schedule.spans(&t).iter().all(|s| s.epoch == epoch) {
                windows.push(t);
            }
            t = t.next();
        }

        // The attacker, on its own account.
        let (attacker, mut attacker_events) =
            AsyncClient::new(options("crowdflow-agent-s2", "s2", "secret-2", port), 1024);
        assert_eq!(
            connack(&mut attacker_events).await,
            Some(ConnectReturnCode::Success),
            "s2 may log in"
        );
        let attacker_seen = Arc::new(Mutex::new(Vec::new()));
        let refused_subs = Arc::new(Mutex::new(0));
        keep(attacker_events, attacker_seen.clone(), refused_subs.clone());
        let mut reads = 0;
        let mut refused_logins = Vec::new();
        for (i, attack) in ATTACKS.iter().enumerate() {
            let w = windows[10 + i % 10];
            let forged = |sensor: &str| {
                let mut m = message(sensor, w, epoch, fp, 10_000..10_050);
                m.agent_version = String::from_utf8_lossy(MARK).into_owned();
                m.encode()
            };
            match *attack {
                Attack::Read(filter) => {
                    reads += 1;
                    attacker
                        .subscribe(filter, QoS::AtLeastOnce)
                        .await
                        .expect("subscribe");
                }
                Attack::ForgeSketch => {
                    attacker
                        .publish(
                            "crowdflow/v1/sketch/s1",
                            QoS::AtLeastOnce,
                            false,
                            forged("s1"),
                        )
                        .await
                        .expect("publish");
                }
                Attack::ForgeStatus => {
                    attacker
                        .publish(
                            "crowdflow/v1/status/s1",
                            QoS::AtLeastOnce,
                            false,
                            MARK.to_vec(),
                        )
                        .await
                        .expect("publish");
                }
                Attack::Authority(topic) => {
                    attacker
                        .publish(topic, QoS::AtMostOnce, false, MARK.to_vec())
                        .await
                        .expect("publish");
                }
                Attack::RetainOwnSketch => {
                    attacker
                        .publish(
                            "crowdflow/v1/sketch/s2",
                            QoS::AtLeastOnce,
                            true,
                            forged("s2"),
                        )
                        .await
                        .expect("publish");
                }
                Attack::WillAsOther | Attack::AggregatorClientId | Attack::WrongPassword => {
                    let mut o = match *attack {
                        Attack::AggregatorClientId => {
                            options("crowdflow-aggregator-1", "s2", "secret-2", port)
                        }
                        Attack::WrongPassword => {
                            options("crowdflow-agent-s1", "s1", "secret-2", port)
                        }
                        _ => options("crowdflow-agent-s2", "s2", "secret-2", port),
                    };
                    if matches!(attack, Attack::WillAsOther) {
                        o.set_client_id("s2-will".into());
                        o.set_last_will(LastWill::new(
                            "crowdflow/v1/status/s1",
                            MARK.to_vec(),
                            QoS::AtLeastOnce,
                            true,
                        ));
                    }
                    let (_c, mut e) = AsyncClient::new(o, 16);
                    let code = connack(&mut e).await;
                    if code != Some(ConnectReturnCode::Success) {
                        refused_logins.push(*attack);
                    }
                }
            }
        }
        assert_eq!(
            refused_logins.len(),
            3,
            "every hostile login is refused: {refused_logins:?}"
        );

        // The honest sensor's windows, after the attack.
        for (i, w) in windows[..10].iter().enumerate() {
            let k = i as u64 * 5;
            honest
                .publish(
                    "crowdflow/v1/sketch/s1",
                    QoS::AtLeastOnce,
                    false,
                    message("s1", *w, epoch, fp, k..k + 5).encode(),
                )
                .await
                .expect("publish");
            honest
                .publish(
                    "crowdflow/v1/status/s1",
                    QoS::AtLeastOnce,
                    true,
                    b"not a status, but s1's own".to_vec(),
                )
                .await
                .expect("publish");
        }
        let store =
            SqliteStore::open(&dir.path().join("crowdflow.db"), Precision::DEFAULT).expect("open");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::time::Instant::now() < deadline && stored::frames(&store).await < 50 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        // Time for a late forgery to land, were one let through.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(stored::frames(&store).await, 50, "s1's frames only");
        assert_eq!(
            stored::devices(&store, "hall", Kind::WifiRandom, Resolution::Minute).await,
            50.0,
            "s1's devices only"
        );
        let metrics = http_get(http, "/metrics").expect("GET /metrics");
        assert!(
            metrics.contains("crowdflow_ingest_accepted_total 10\n"),
            "{metrics}"
        );

        assert_eq!(
            *refused_subs.lock().expect("lock"),
            reads,
            "every hostile subscription is refused"
        );
        let attacker_got = attacker_seen.lock().expect("lock").clone();
        assert!(
            attacker_got
                .iter()
                .all(|(topic, _)| topic == "crowdflow/v1/salt"),
            "the attacker read nothing but the salt: {:?}",
            attacker_got.iter().map(|(t, _)| t).collect::<Vec<_>>()
        );
        let honest_got = honest_seen.lock().expect("lock").clone();
        assert!(
            honest_got
                .iter()
                .all(|(_, p)| !p.windows(MARK.len()).any(|w| w == MARK)),
            "no forgery reached the honest sensor"
        );
    });
    aggregator.terminate(Duration::from_secs(5));
    let log = String::from_utf8_lossy(&aggregator.output()).into_owned();
    assert!(
        log.contains("embedded broker refused"),
        "refusals are logged\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}
