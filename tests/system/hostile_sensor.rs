//! A hostile sensor (#14), from one list of cases, on the embedded broker and on Mosquitto
//! with the shipped config and ACL: sensor `s2` logs in with its own password and tries
//! everything the ACL forbids while sensor `s1` publishes honestly. Pass: the attacker reads
//! nothing of `s1`, its forgeries reach no one (an observer on the aggregator's account
//! watches sketches and statuses), the aggregator keeps its one session, and the stored
//! counts and the accepted total are exactly what `s1` and `s2` may send themselves.
//!
//! The brokers differ where the ACL cannot: Mosquitto cannot refuse a retained publish on a
//! topic the account may write, so `s2`'s retained sketch of its own reaches the aggregator
//! once (as its own sketch would; a redelivery is idempotent), and it cannot bind a client id
//! to an account, so the aggregator's session there lives under an id keyed by its password
//! (`contract::mqtt::session_client_id`) that the attacker's guess does not reach.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crowdflow_aggregator::store::{Resolution, SqliteStore};
use crowdflow_contract::epoch::{EpochId, RotationSchedule};
use crowdflow_contract::identity::Kind;
use crowdflow_contract::mqtt::session_client_id;
use crowdflow_contract::salt::SaltFingerprint;
use crowdflow_contract::sketch::{Precision, Sketch};
use crowdflow_contract::window::{Window, WindowLength};
use crowdflow_contract::wire::{SensorId, SketchMessage};
use crowdflow_tests::shipped_mosquitto::ShippedMosquitto;
use crowdflow_tests::{
    Mosquitto, Proc, announced_salt, free_port, http_get, run_binary, runtime, stored,
    wait_for_port,
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
    /// Log in with the aggregator's client id (taking over its session), and hold on.
    AggregatorClientId,
    /// Log in with `s1`'s agent's client id (pushing it off), and hold on.
    SensorClientId,
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
    Attack::SensorClientId,
    Attack::WrongPassword,
];

/// Every publish a client received: (topic, payload).
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// Bytes the attacker puts in every forged payload, to spot one wherever it arrives.
const MARK: &[u8] = b"forged-by-s2";

/// The aggregator's account on either broker (the observer logs in with it too).
const AGGREGATOR: &str = "crowdflow-aggregator";

/// Where the attack runs: the broker, the aggregator behind it, and how clients log in.
struct Arena {
    dir: tempfile::TempDir,
    port: u16,
    http: u16,
    /// Mosquitto with the shipped config, or None for the embedded broker.
    shipped: Option<(ShippedMosquitto, Mosquitto)>,
    aggregator: Proc,
}

impl Arena {
    fn embedded() -> Arena {
        let dir = tempfile::tempdir().expect("tmp");
        let (port, http) = (free_port(), free_port());
        let broker = format!(
            "mode = \"embedded\"\nlisten = \"127.0.0.1:{port}\"\n\
             username = \"{AGGREGATOR}\"\npassword = \"secret-agg\"\n"
        );
        let sensors = "password = \"secret-1\"\n";
        let sensors2 = "password = \"secret-2\"\n";
        let config = config(dir.path(), &broker, http, sensors, sensors2);
        let aggregator = run_binary("crowdflow-aggregator", &config, "crowdflow-aggregator");
        assert!(wait_for_port(port, Duration::from_secs(15)), "broker up");
        Arena {
            dir,
            port,
            http,
            shipped: None,
            aggregator,
        }
    }

    fn mosquitto() -> Arena {
        let dir = tempfile::tempdir().expect("tmp");
        let shipped =
            ShippedMosquitto::new(&dir.path().join("mosquitto"), &[AGGREGATOR, "s1", "s2"]);
        let running = shipped.start();
        let http = free_port();
        let broker = format!(
            "mode = \"external\"\nurl = \"mqtts://127.0.0.1:{}\"\nca_file = \"{}\"\n\
             username = \"{AGGREGATOR}\"\npassword = \"{}\"\n",
            shipped.port,
            shipped.ca_file().display(),
            shipped.password(AGGREGATOR)
        );
        let config = config(dir.path(), &broker, http, "", "");
        let aggregator = run_binary("crowdflow-aggregator", &config, "crowdflow-aggregator");
        assert!(
            wait_for_port(http, Duration::from_secs(15)),
            "aggregator up"
        );
        Arena {
            dir,
            port: shipped.port,
            http,
            shipped: Some((shipped, running)),
            aggregator,
        }
    }

    /// The password of `account`.
    fn password(&self, account: &str) -> String {
        match (&self.shipped, account) {
            (Some((shipped, _)), _) => shipped.password(account),
            (None, AGGREGATOR) => "secret-agg".into(),
            (None, "s1") => "secret-1".into(),
            (None, _) => "secret-2".into(),
        }
    }

    /// Client `id` logging in as `user` with `user`'s password, or with `password_of`'s.
    fn options(&self, id: &str, user: &str, password_of: &str) -> MqttOptions {
        let mut o = match &self.shipped {
            Some((shipped, _)) => shipped.options(id, Some(user), true, true),
            None => MqttOptions::new(id, "127.0.0.1", self.port),
        };
        o.set_credentials(user, self.password(password_of));
        o.set_max_packet_size(1 << 20, 1 << 20)
            .set_keep_alive(Duration::from_secs(30));
        o
    }

    fn on_mosquitto(&self) -> bool {
        self.shipped.is_some()
    }
}

fn config(dir: &Path, broker: &str, http: u16, s1: &str, s2: &str) -> PathBuf {
    let path = dir.join("aggregator.toml");
    let text = format!(
        "[http]\nlisten = \"127.0.0.1:{http}\"\n[broker]\n{broker}\
         [storage]\nkind = \"sqlite\"\npath = \"{}\"\n\
         [salt]\nannounce_every_s = 5\n[counting]\nwindow_s = 10\n\
         [[zones]]\nid = \"hall\"\nname = \"Hall\"\narea_m2 = 300.0\n\
         [[sensors]]\nid = \"s1\"\nzone = \"hall\"\n{s1}senses = [\"wifi\"]\n\
         [[sensors]]\nid = \"s2\"\nzone = \"hall\"\n{s2}senses = [\"wifi\"]\n",
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
fn a_hostile_sensor_on_the_embedded_broker_reads_nothing_forges_nothing_and_changes_no_count() {
    attack(Arena::embedded());
}

#[test]
fn a_hostile_sensor_on_the_shipped_mosquitto_reads_nothing_forges_nothing_and_changes_no_count() {
    attack(Arena::mosquitto());
}

/// Marked payloads among `seen`, by topic.
fn marked(seen: &Seen) -> Vec<String> {
    let seen = seen.lock().expect("lock");
    seen.iter()
        .filter(|(_, p)| p.windows(MARK.len()).any(|w| w == MARK))
        .map(|(t, _)| t.clone())
        .collect()
}

fn attack(mut arena: Arena) {
    let mosquitto = arena.on_mosquitto();
    let runtime = runtime();
    runtime.block_on(async {
        // The honest sensor: reads the salt, and listens where the attacker would forge.
        // The id a real agent of s1 uses.
        let honest_id =
            session_client_id("crowdflow-agent-s1", Some(arena.password("s1").as_bytes()));
        let (honest, mut honest_events) =
            AsyncClient::new(arena.options(&honest_id, "s1", "s1"), 1024);
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
        // What the aggregator's account sees of sketches and statuses.
        let (observer, mut observer_events) = AsyncClient::new(
            arena.options("hostile-test-observer", AGGREGATOR, AGGREGATOR),
            1024,
        );
        assert_eq!(
            connack(&mut observer_events).await,
            Some(ConnectReturnCode::Success),
            "the observer logs in on the aggregator's account"
        );
        for filter in ["crowdflow/v1/sketch/+", "crowdflow/v1/status/+"] {
            observer
                .subscribe(filter, QoS::AtLeastOnce)
                .await
                .expect("subscribe");
        }
        let observed = Arc::new(Mutex::new(Vec::new()));
        keep(observer_events, observed.clone(), Arc::new(Mutex::new(0)));

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
            AsyncClient::new(arena.options("crowdflow-agent-s2", "s2", "s2"), 1024);
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
        // Connections the attacker holds on to while s1 publishes.
        let mut held = Vec::new();
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
                Attack::WillAsOther
                | Attack::AggregatorClientId
                | Attack::SensorClientId
                | Attack::WrongPassword => {
                    let mut o = match *attack {
                        // The id the aggregator's session has on the embedded broker, and
                        // what an attacker would guess on Mosquitto.
                        Attack::AggregatorClientId => {
                            arena.options("crowdflow-aggregator-1", "s2", "s2")
                        }
                        Attack::SensorClientId => arena.options("crowdflow-agent-s1", "s2", "s2"),
                        Attack::WrongPassword => arena.options("crowdflow-agent-s1", "s1", "s2"),
                        _ => arena.options("s2-will", "s2", "s2"),
                    };
                    if matches!(attack, Attack::WillAsOther) {
                        o.set_last_will(LastWill::new(
                            "crowdflow/v1/status/s1",
                            MARK.to_vec(),
                            QoS::AtLeastOnce,
                            true,
                        ));
                    }
                    let (c, mut e) = AsyncClient::new(o, 16);
                    let code = connack(&mut e).await;
                    if code != Some(ConnectReturnCode::Success) {
                        refused_logins.push(format!("{attack:?}"));
                    } else if matches!(attack, Attack::AggregatorClientId | Attack::SensorClientId)
                    {
                        // Held (and re-taken after every push-off) while s1 publishes.
                        keep(e, Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(0)));
                        held.push(c);
                    }
                    // A will's connection is dropped without DISCONNECT, so a will that
                    // were allowed would be published now.
                }
            }
        }
        let expected_refused: &[&str] = if mosquitto {
            // Mosquitto has no client-id binding: the guessed ids log in, but the sessions
            // live under ids keyed by passwords; a will outside the ACL is dropped rather
            // than refused.
            &["WrongPassword"]
        } else {
            &[
                "WillAsOther",
                "AggregatorClientId",
                "SensorClientId",
                "WrongPassword",
            ]
        };
        refused_logins.retain(|a| !(mosquitto && a == "WillAsOther"));
        assert_eq!(refused_logins, expected_refused, "hostile logins refused");

        // The honest sensor's windows, after the attack (one retained status, as agents do).
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
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // s2's retained sketch of its own reaches the aggregator only through Mosquitto.
        let (frames, devices, accepted) = if mosquitto {
            (100, 100.0, 11)
        } else {
            (50, 50.0, 10)
        };
        let store = SqliteStore::open(&arena.dir.path().join("crowdflow.db"), Precision::DEFAULT)
            .expect("open");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::time::Instant::now() < deadline && stored::frames(&store).await < frames {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        // Time for a late forgery to land, were one let through.
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(held);
        let metrics = http_get(arena.http, "/metrics").expect("GET /metrics");
        let ingest: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("crowdflow_ingest"))
            .collect();
        assert_eq!(
            stored::frames(&store).await,
            frames,
            "what s1 and s2 may send; observed {:?}; {ingest:?}\n{}",
            observed
                .lock()
                .expect("lock")
                .iter()
                .map(|(t, _)| t)
                .collect::<Vec<_>>(),
            String::from_utf8_lossy(&arena.aggregator.output())
        );
        assert_eq!(
            stored::devices(&store, "hall", Kind::WifiRandom, Resolution::Minute).await,
            devices,
            "what s1 and s2 may send"
        );
        assert!(
            metrics.contains(&format!("crowdflow_ingest_accepted_total {accepted}\n")),
            "{metrics}"
        );
        if !mosquitto {
            // Every refusal counted by reason, beyond the few lines the log shows.
            assert!(
                metrics.contains("crowdflow_broker_refused_total{reason=\"wrong_password\"} 1\n"),
                "{metrics}"
            );
            let refused: f64 = metrics
                .lines()
                .filter(|l| l.starts_with("crowdflow_broker_refused_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            assert!(refused >= 10.0, "refusals counted: {metrics}");
        }

        // Mosquitto (2.0) grants a subscription the ACL denies and delivers nothing on it;
        // the embedded broker refuses it in the SUBACK. Either way nothing arrives (below).
        assert_eq!(
            *refused_subs.lock().expect("lock"),
            if mosquitto { 0 } else { reads },
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
        assert_eq!(
            marked(&honest_seen),
            Vec::<String>::new(),
            "no forgery reached the honest sensor"
        );
        let own: &[&str] = if mosquitto {
            &["crowdflow/v1/sketch/s2"]
        } else {
            &[]
        };
        assert_eq!(
            marked(&observed),
            own,
            "no forgery reached the aggregator's account, beyond s2's own sketch"
        );
    });
    arena.aggregator.terminate(Duration::from_secs(5));
    let log = String::from_utf8_lossy(&arena.aggregator.output()).into_owned();
    assert_eq!(
        log.matches("connected to the broker").count(),
        1,
        "the aggregator kept its one session\n{log}"
    );
    if !mosquitto {
        assert!(
            log.contains("embedded broker refused"),
            "refusals are logged\n{log}"
        );
    }
    assert!(!log.contains("panicked"), "{log}");
}
