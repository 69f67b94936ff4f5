//! The production broker of deploy/mosquitto, as shipped (paths and port rewritten only),
//! with its CA and account scripts: TLS is required, anonymous clients are refused, a sensor
//! can publish only as itself and cannot read sketches, sketches survive a broker restart
//! and the salt never reaches the broker's disk; a real agent and aggregator work through it.

use std::time::Duration;

use crowdflow_aggregator::store::{Resolution, SqliteStore};
use crowdflow_contract::identity::Kind;
use crowdflow_contract::sketch::Precision;
use crowdflow_tests::capture::{Probe, write_probes};
use crowdflow_tests::shipped_mosquitto::ShippedMosquitto;
use crowdflow_tests::{run_binary, runtime, stored};
use rumqttc::{ConnectReturnCode, Event, EventLoop, Packet, QoS};

/// The CONNACK code, or None when the connection failed before one.
async fn connack(events: &mut EventLoop) -> Option<ConnectReturnCode> {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(c))) => return Some(c.code),
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

/// Topics of the publishes `events` receives within `wait`.
async fn received(events: &mut EventLoop, wait: Duration) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    out.push((p.topic.clone(), p.payload.to_vec()))
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await;
    out
}

#[test]
fn the_shipped_broker_config_enforces_tls_accounts_and_the_acl() {
    let dir = tempfile::tempdir().expect("tmp");
    let broker = ShippedMosquitto::new(dir.path(), &["crowdflow-aggregator", "gate-1", "gate-2"]);
    let mut mosquitto = broker.start();
    let runtime = runtime();
    runtime.block_on(async {
        let (_a, mut anonymous) = broker.client("anonymous", None, true, true);
        assert_eq!(
            connack(&mut anonymous).await,
            Some(ConnectReturnCode::NotAuthorized),
            "anonymous clients are refused"
        );
        let (_p, mut plaintext) = broker.client("plaintext", Some("gate-1"), false, true);
        assert_eq!(
            connack(&mut plaintext).await,
            None,
            "plaintext MQTT is refused"
        );

        // The aggregators' persistent session, subscribed to sketches and the salt.
        let (aggregator, mut agg_events) = broker.client(
            "crowdflow-aggregator-1",
            Some("crowdflow-aggregator"),
            true,
            false,
        );
        assert_eq!(
            connack(&mut agg_events).await,
            Some(ConnectReturnCode::Success)
        );
        aggregator
            .subscribe("$share/crowdflow/crowdflow/v1/sketch/+", QoS::AtLeastOnce)
            .await
            .expect("sub");
        aggregator
            .subscribe("crowdflow/v1/salt", QoS::AtMostOnce)
            .await
            .expect("sub");
        let (gate1, mut gate1_events) = broker.client("gate-1", Some("gate-1"), true, true);
        assert_eq!(
            connack(&mut gate1_events).await,
            Some(ConnectReturnCode::Success)
        );
        let (gate2, mut gate2_events) = broker.client("gate-2", Some("gate-2"), true, true);
        assert_eq!(
            connack(&mut gate2_events).await,
            Some(ConnectReturnCode::Success)
        );
        gate2
            .subscribe("crowdflow/v1/sketch/#", QoS::AtLeastOnce)
            .await
            .expect("sub");
        gate2
            .subscribe("crowdflow/v1/salt", QoS::AtMostOnce)
            .await
            .expect("sub");
        // Returned salts (after an aggregator restart) reach the aggregators only.
        aggregator
            .subscribe("crowdflow/v1/salt/return/+", QoS::AtMostOnce)
            .await
            .expect("sub");
        gate2
            .subscribe("crowdflow/v1/salt/return/#", QoS::AtMostOnce)
            .await
            .expect("sub");
        // The aggregator's answers to salt requests: each sensor reads its own only.
        for filter in ["crowdflow/v1/salt/answer/+", "crowdflow/v1/salt/answer/gate-2"] {
            gate2
                .subscribe(filter, QoS::AtMostOnce)
                .await
                .expect("sub");
        }
        let _ = received(&mut gate2_events, Duration::from_millis(500)).await;
        let _ = received(&mut agg_events, Duration::from_millis(300)).await;
        for sensor in ["gate-1", "gate-2"] {
            aggregator
                .publish(
                    format!("crowdflow/v1/salt/answer/{sensor}"),
                    QoS::AtMostOnce,
                    false,
                    b"answer".to_vec(),
                )
                .await
                .expect("publish");
        }
        gate1
            .publish(
                "crowdflow/v1/salt/answer/gate-2",
                QoS::AtMostOnce,
                false,
                b"forged answer".to_vec(),
            )
            .await
            .expect("publish");

        gate1
            .publish(
                "crowdflow/v1/sketch/gate-2",
                QoS::AtLeastOnce,
                false,
                b"forged".to_vec(),
            )
            .await
            .expect("publish");
        gate1
            .publish(
                "crowdflow/v1/sketch/gate-1",
                QoS::AtLeastOnce,
                false,
                b"own".to_vec(),
            )
            .await
            .expect("publish");
        gate1
            .publish(
                "crowdflow/v1/salt",
                QoS::AtMostOnce,
                false,
                b"fake salt".to_vec(),
            )
            .await
            .expect("publish");
        for topic in [
            "crowdflow/v1/salt/return/gate-1",
            "crowdflow/v1/salt/return/gate-2",
        ] {
            gate1
                .publish(topic, QoS::AtMostOnce, false, b"returned".to_vec())
                .await
                .expect("publish");
        }
        let _ = received(&mut gate1_events, Duration::from_millis(500)).await;
        let got = received(&mut agg_events, Duration::from_secs(1)).await;
        let mut topics: Vec<&str> = got.iter().map(|(t, _)| t.as_str()).collect();
        topics.sort_unstable();
        assert_eq!(
            topics,
            vec![
                "crowdflow/v1/salt/return/gate-1",
                "crowdflow/v1/sketch/gate-1"
            ],
            "a sensor publishes only as itself, never a salt"
        );
        let mut leaked = received(&mut gate2_events, Duration::from_secs(1)).await;
        let own = |(t, p): &(String, Vec<u8>)| {
            t == "crowdflow/v1/salt/answer/gate-2" && p.as_slice() == b"answer"
        };
        let answers = leaked.iter().filter(|m| own(m)).count();
        assert!(answers >= 1, "a sensor reads its own answer: {leaked:?}");
        leaked.retain(|m| !own(m));
        assert!(
            leaked.is_empty(),
            "a sensor reads no sketches, no returned salts, no one else's answer and no forged one: {leaked:?}"
        );

        // Sketches wait in the aggregators' session across a broker restart; the salt never
        // reaches the broker's disk.
        aggregator.disconnect().await.expect("disconnect");
        let _ = received(&mut agg_events, Duration::from_millis(300)).await;
        for i in 0..3 {
            gate1
                .publish(
                    "crowdflow/v1/sketch/gate-1",
                    QoS::AtLeastOnce,
                    false,
                    format!("queued-{i}").into_bytes(),
                )
                .await
                .expect("publish");
        }
        let (salt_announcer, mut salt_events) = broker.client(
            "crowdflow-aggregator-2",
            Some("crowdflow-aggregator"),
            true,
            true,
        );
        assert_eq!(
            connack(&mut salt_events).await,
            Some(ConnectReturnCode::Success)
        );
        let salt = b"SALT-0123456789abcdef-SALT".to_vec();
        salt_announcer
            .publish("crowdflow/v1/salt", QoS::AtMostOnce, false, salt.clone())
            .await
            .expect("salt");
        let _ = received(&mut salt_events, Duration::from_millis(300)).await;
        let _ = received(&mut gate1_events, Duration::from_millis(500)).await;
        mosquitto.proc.terminate(Duration::from_secs(5));
        let persisted =
            std::fs::read(broker.dir.join("persist/mosquitto.db")).expect("persistence file");
        assert!(
            persisted.windows(8).any(|w| w == b"queued-0"),
            "sketches are persisted"
        );
        assert!(
            !persisted.windows(salt.len()).any(|w| w == salt.as_slice()),
            "the salt is not"
        );
        mosquitto = broker.start();
        let (_again, mut again) = broker.client(
            "crowdflow-aggregator-1",
            Some("crowdflow-aggregator"),
            true,
            false,
        );
        let redelivered = received(&mut again, Duration::from_secs(3)).await;
        let payloads: Vec<String> = redelivered
            .iter()
            .map(|(_, p)| String::from_utf8_lossy(p).into_owned())
            .collect();
        assert_eq!(
            payloads,
            vec!["queued-0", "queued-1", "queued-2"],
            "sketches survive the restart, the salt does not"
        );
    });
    mosquitto.proc.terminate(Duration::from_secs(5));
}

#[test]
fn agent_and_aggregator_work_through_the_shipped_broker_config() {
    let dir = tempfile::tempdir().expect("tmp");
    let broker = ShippedMosquitto::new(dir.path(), &["crowdflow-aggregator", "gate-1", "gate-2"]);
    let _mosquitto = broker.start();
    let ca = dir.path().join("certs/ca.pem");
    let aggregator_cfg = dir.path().join("aggregator.toml");
    std::fs::write(
        &aggregator_cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[broker]\nmode = \"external\"\nurl = \"mqtts://127.0.0.1:{}\"\nca_file = \"{}\"\n\
             username = \"crowdflow-aggregator\"\npassword = \"{}\"\n[storage]\nkind = \"sqlite\"\npath = \"{}\"\n\
             [salt]\nannounce_every_s = 5\n[counting]\nwindow_s = 10\n[[zones]]\nid = \"gate\"\nname = \"Gate\"\narea_m2 = 800.0\n\
             [[sensors]]\nid = \"gate-1\"\nzone = \"gate\"\nsenses = [\"wifi\"]\n",
            broker.port,
            ca.display(),
            broker.password("crowdflow-aggregator"),
            dir.path().join("crowdflow.db").display()
        ),
    )
    .expect("config");
    let pcap = dir.path().join("probes.pcap");
    let probes: Vec<Probe> = (0..25u64)
        .map(|i| Probe {
            t_us: 1_000_000 + i * 200_000,
            address: [0x0a, 0x43, 0x00, 0x00, 0x00, i as u8],
        })
        .collect();
    write_probes(&pcap, &probes);
    let agent_cfg = dir.path().join("agent.toml");
    let salt = crowdflow_tests::key::salt_section();
    std::fs::write(
        &agent_cfg,
        format!(
            "sensor_id = \"gate-1\"\n[broker]\nurl = \"mqtts://127.0.0.1:{}\"\nca_file = \"{}\"\nusername = \"gate-1\"\npassword = \"{}\"\n\
             {salt}[capture]\nsource = \"pcap\"\nsenses = [\"wifi\"]\npcap = [\"{}\"]\n[counting]\nwindow_s = 10\n[outbox]\ndir = \"{}\"\n",
            broker.port,
            ca.display(),
            broker.password("gate-1"),
            pcap.display(),
            dir.path().join("outbox").display()
        ),
    )
    .expect("config");
    let mut aggregator = run_binary(
        "crowdflow-aggregator",
        &aggregator_cfg,
        "crowdflow-aggregator",
    );
    let runtime = runtime();
    runtime.block_on(async {
        tokio::time::sleep(Duration::from_secs(4)).await;
        let mut agent = run_binary("crowdflow-agent", &agent_cfg, "crowdflow-agent");
        let store =
            SqliteStore::open(&dir.path().join("crowdflow.db"), Precision::DEFAULT).expect("open");
        stored::wait_for_frames(&store, 25, Duration::from_secs(60)).await;
        agent.terminate(Duration::from_secs(5));
        aggregator.terminate(Duration::from_secs(5));
        assert_eq!(
            stored::frames(&store).await,
            25,
            "agent:\n{}\naggregator:\n{}",
            String::from_utf8_lossy(&agent.output()),
            String::from_utf8_lossy(&aggregator.output())
        );
        assert_eq!(
            stored::devices(&store, "gate", Kind::WifiRandom, Resolution::Minute).await,
            25.0
        );
    });
}
