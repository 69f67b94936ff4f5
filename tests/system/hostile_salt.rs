//! A hostile sensor owner plants salts: with broker access (any account, or none on a broker
//! without ACL) it publishes salt announcements under ids that sort below and above the
//! aggregator's, signed with its own key, unsigned, and retained, and sends salt recovery
//! requests. Salts count only under a pinned key, so none of it may matter: the zone counts
//! exactly what a run without the attacker counts, no window is lost, no agent answers the
//! attacker, and the attacker's salt fingerprint is in no stored byte and no log.
//! On the embedded broker and on a Mosquitto without an ACL (the salt check must not lean on
//! the broker).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crowdflow_aggregator::store::{PostgresStore, Resolution, SqliteStore, Store};
use crowdflow_contract::authority_key::SigningKey;
use crowdflow_contract::identity::Kind;
use crowdflow_contract::salt::Salt;
use crowdflow_contract::sketch::Precision;
use crowdflow_contract::wire::{EpochSalt, SaltAnnouncement, SaltRecovery, Topics};
use crowdflow_tests::authority::utc_day;
use crowdflow_tests::capture::write_probes;
use crowdflow_tests::gate::{self, DEVICES};
use crowdflow_tests::{
    Mosquitto, Proc, files_below, free_port, run_binary, runtime, scratch_database, stored,
    wait_for_port,
};
use jiff::{SignedDuration, Timestamp};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

#[test]
fn on_the_embedded_broker_planted_salts_change_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let mqtt = free_port();
    let db = dir.path().join("crowdflow.db");
    let store = SqliteStore::open(&db, Precision::DEFAULT).expect("open");
    planted_salts_change_nothing(
        &runtime(),
        &store,
        dir.path(),
        mqtt,
        &format!(
            "[broker]\nmode = \"embedded\"\nlisten = \"127.0.0.1:{mqtt}\"\n\
             [storage]\nkind = \"sqlite\"\npath = \"{}\"",
            db.display()
        ),
        Retained::NotStored,
    );
}

#[test]
fn on_a_mosquitto_without_acl_planted_salts_change_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(dir.path());
    let runtime = runtime();
    let scratch = runtime.block_on(scratch_database());
    let store = runtime
        .block_on(PostgresStore::open(scratch.url(), Precision::DEFAULT))
        .expect("open");
    let setup = format!(
        "[broker]\nmode = \"external\"\nurl = \"mqtt://127.0.0.1:{}\"\n\
         [storage]\nkind = \"postgres\"\nurl = \"{}\"",
        broker.port,
        scratch.url()
    );
    let dump = || runtime.block_on(stored::postgres_dump(scratch.url()));
    let planted = planted_salts_change_nothing(
        &runtime,
        &store,
        dir.path(),
        broker.port,
        &setup,
        Retained::Stored,
    );
    let rows = dump();
    for fp in &planted {
        assert!(
            !contains(&rows, fp.as_bytes()),
            "the planted fingerprint {fp} is in PostgreSQL"
        );
    }
}

/// What the attacker publishes, and what it heard on the salt return topics.
struct Attacker {
    /// Fingerprints of the salts it planted.
    planted: Vec<String>,
    /// Salts agents returned to anyone on `salt/return/#`.
    returns: Arc<Mutex<usize>>,
    /// Its own worker thread: the scenario's runtime runs only while the test blocks on it.
    runtime: tokio::runtime::Runtime,
}

/// A salt for the current epoch (UTC day, one hour either side of now).
fn planted_salt(now: Timestamp) -> EpochSalt {
    EpochSalt {
        epoch: utc_day(now),
        starts: now - SignedDuration::from_hours(1),
        ends: now + SignedDuration::from_hours(1),
        salt: Salt::generate().expect("entropy"),
    }
}

/// Every second: announcements signed with the attacker's own key under a low and a high
/// authority id, an unsigned one, a retained copy, and a signed recovery request for the
/// aggregator's salt.
fn attack(mqtt: u16) -> Attacker {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let key = SigningKey::generate().expect("entropy");
    let now = Timestamp::now();
    let forged: Vec<(SaltAnnouncement, bool)> = [
        ("aaa-attacker", true),
        ("zzz-attacker", true),
        ("aaa-unsigned", false),
    ]
    .into_iter()
    .map(|(id, signed)| {
        (
            SaltAnnouncement {
                authority: id.into(),
                issued_at: now,
                salts: vec![planted_salt(now)],
            },
            signed,
        )
    })
    .collect();
    let planted = forged
        .iter()
        .map(|(a, _)| a.salts[0].salt.fingerprint().to_string())
        .collect();
    let payloads: Vec<Vec<u8>> = forged
        .iter()
        .map(|(a, signed)| {
            if *signed {
                a.sign(&key).to_vec()
            } else {
                a.encode().to_vec()
            }
        })
        .collect();
    let returns = Arc::new(Mutex::new(0));
    let heard = returns.clone();
    runtime.spawn(async move {
        let topics = Topics::default();
        let mut options = MqttOptions::new("gate-2", "127.0.0.1", mqtt);
        options.set_keep_alive(Duration::from_secs(5));
        let (client, mut events) = AsyncClient::new(options, 64);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    for (i, p) in payloads.iter().enumerate() {
                        // The last one also goes out retained, for every later subscriber.
                        let retain = i + 1 == payloads.len();
                        let _ = client.try_publish(topics.salt(), QoS::AtMostOnce, retain, p.clone());
                    }
                    let request = SaltRecovery {
                        epoch: utc_day(now),
                        fp: Salt::generate().expect("entropy").fingerprint(),
                        issued_at: Timestamp::now(),
                    };
                    let _ = client.try_publish(topics.salt_recover(), QoS::AtMostOnce, false, request.sign(&key));
                }
                event = events.poll() => match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = client.try_subscribe("crowdflow/v1/salt/return/#", QoS::AtMostOnce);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) if p.topic.contains("/salt/return/") => {
                        if let Ok(mut n) = heard.lock() {
                            *n += 1;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                },
            }
        }
    });
    Attacker {
        planted,
        returns,
        runtime,
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The gate scenario with the attacker on the broker from before the agent starts; returns
/// the planted fingerprints for the caller's own storage scan.
/// What the broker does with the attacker's retained announcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retained {
    /// Stores it and hands it to the agent when it subscribes (Mosquitto): the agent must
    /// ignore it by name.
    Stored,
    /// Keeps no retained messages (the embedded rmqtt, without its `retain` feature): the
    /// forgery reaches no later subscriber at all.
    NotStored,
}

fn planted_salts_change_nothing(
    runtime: &tokio::runtime::Runtime,
    store: &impl Store,
    dir: &std::path::Path,
    mqtt: u16,
    setup: &str,
    retained: Retained,
) -> Vec<String> {
    let http = free_port();
    let pcap = dir.join("crowd.pcap");
    write_probes(&pcap, &gate::probes([0x0e, 0x5a, 0x17], 200_000));
    let aggregator_cfg = gate::aggregator_config(
        &dir.join("aggregator.toml"),
        &format!("[http]\nlisten = \"127.0.0.1:{http}\"\n{setup}\n[salt]\nannounce_every_s = 5"),
    );
    let mut aggregator = run_binary(
        "crowdflow-aggregator",
        &aggregator_cfg,
        "crowdflow-aggregator",
    );
    assert!(wait_for_port(mqtt, Duration::from_secs(15)), "broker up");
    let attacker = attack(mqtt);
    // Let the forgeries run before the agent asks for its first salt.
    std::thread::sleep(Duration::from_secs(3));
    let agent_cfg = gate::agent_config(dir, mqtt, &pcap);
    let mut agent = run_binary("crowdflow-agent", &agent_cfg, "crowdflow-agent");
    let deadline = Instant::now() + Duration::from_secs(90);
    while runtime.block_on(stored::frames(store)) < DEVICES && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    // Two more announcement rounds with the attacker still at it.
    std::thread::sleep(Duration::from_secs(6));
    let frames = runtime.block_on(stored::frames(store));
    let devices = runtime.block_on(stored::devices(
        store,
        "gate",
        Kind::WifiRandom,
        Resolution::Hour,
    ));
    let Attacker {
        planted,
        returns,
        runtime: attacking,
    } = attacker;
    attacking.shutdown_background();
    let metrics = crowdflow_tests::http_get(http, "/metrics").unwrap_or_default();
    agent.terminate(Duration::from_secs(5));
    aggregator.terminate(Duration::from_secs(5));
    let logs = [&agent, &aggregator]
        .iter()
        .map(|p: &&Proc| String::from_utf8_lossy(&p.output()).into_owned())
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(
        (frames, devices),
        (DEVICES, DEVICES as f64),
        "the attacker changes no count and loses no window\n{logs}"
    );
    let returned = returns.lock().map(|n| *n).unwrap_or(0);
    assert_eq!(
        returned, 0,
        "no agent answers the attacker's recovery request"
    );
    assert!(
        logs.contains("not signed by a trusted salt authority"),
        "the forgeries are refused by name\n{logs}"
    );
    let refused: f64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("crowdflow_salt_messages_refused_total{reason=\"untrusted_signature\"} ")
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(refused >= 1.0, "the forgeries are counted:\n{metrics}");
    assert_eq!(
        logs.contains("ignoring a retained salt"),
        retained == Retained::Stored,
        "a stored retained forgery is ignored by name, and none arrives without a store\n{logs}"
    );
    for fp in &planted {
        assert!(
            !logs.contains(fp.as_str()),
            "planted fingerprint {fp} in a log"
        );
        for (path, bytes) in files_below(dir) {
            assert!(
                !contains(&bytes, fp.as_bytes()),
                "planted fingerprint {fp} in {}",
                path.display()
            );
        }
    }
    planted
}
