//! An agent and the aggregator reach a Mosquitto that requires TLS with client
//! certificates (mqtts:// with a CA and a client certificate): sketches flow and are stored;
//! a plaintext client and a TLS client without a certificate are refused. And the embedded
//! broker with TLS of its own.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crowdflow_aggregator::store::{Resolution, SqliteStore};
use crowdflow_contract::identity::Kind;
use crowdflow_contract::sketch::Precision;
use crowdflow_tests::capture::{Probe, write_probes};
use crowdflow_tests::{Mosquitto, free_port, run_binary, runtime, stored};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Transport};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA.
fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=crowdflow test CA",
        ],
    );
    for (name, ext) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        ),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        std::fs::write(dir.join(format!("{name}.ext")), ext).expect("ext");
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
            ],
        );
    }
    // Mosquitto may drop to its own user before reading the files.
    for entry in std::fs::read_dir(dir).expect("dir") {
        let path = entry.expect("entry").path();
        let _ =
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644));
    }
    let _ = std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755));
}

fn tls_keys(dir: &Path) -> String {
    format!(
        "ca_file = \"{}\"\nclient_cert_file = \"{}\"\nclient_key_file = \"{}\"\n",
        dir.join("ca.pem").display(),
        dir.join("client.pem").display(),
        dir.join("client.key").display()
    )
}

fn aggregator_config(dir: &Path, port: u16) -> PathBuf {
    let path = dir.join("aggregator.toml");
    let text = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n[broker]\nmode = \"external\"\nurl = \"mqtts://127.0.0.1:{port}\"\n{}\
         [storage]\nkind = \"sqlite\"\npath = \"{}\"\n[salt]\nannounce_every_s = 5\n[counting]\nwindow_s = 10\n\
         [[zones]]\nid = \"gate\"\nname = \"Gate\"\narea_m2 = 800.0\n\
         [[sensors]]\nid = \"gate-1\"\nzone = \"gate\"\nsenses = [\"wifi\"]\n",
        tls_keys(dir),
        dir.join("crowdflow.db").display()
    );
    std::fs::write(&path, text).expect("config");
    path
}

fn agent_config(dir: &Path, port: u16, pcap: &Path) -> PathBuf {
    let path = dir.join("agent.toml");
    let salt = crowdflow_tests::key::salt_section();
    let text = format!(
        "sensor_id = \"gate-1\"\n[broker]\nurl = \"mqtts://127.0.0.1:{port}\"\n{}\
         {salt}[capture]\nsource = \"pcap\"\nsenses = [\"wifi\"]\npcap = [\"{}\"]\n[counting]\nwindow_s = 10\n[outbox]\ndir = \"{}\"\n",
        tls_keys(dir),
        pcap.display(),
        dir.join("outbox").display()
    );
    std::fs::write(&path, text).expect("config");
    path
}

/// Whether a client with `transport` gets a CONNACK within 5 s.
async fn connects(port: u16, transport: Transport) -> bool {
    let mut options = MqttOptions::new("tls-probe", "127.0.0.1", port);
    options.set_transport(transport);
    let (_client, mut events) = AsyncClient::new(options, 4);
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap_or(false)
}

#[test]
fn agent_and_aggregator_work_through_a_tls_only_mosquitto() {
    let dir = tempfile::tempdir().expect("tmp");
    certificates(dir.path());
    let port = free_port();
    let d = dir.path().display();
    let _broker = Mosquitto::start_with(
        dir.path(),
        port,
        &format!(
            "cafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\nrequire_certificate true\n"
        ),
    );
    let pcap = dir.path().join("probes.pcap");
    let probes: Vec<Probe> = (0..30u64)
        .map(|i| Probe {
            t_us: 1_000_000 + i * 200_000,
            address: [0x0a, 0x42, 0x00, 0x00, 0x00, i as u8],
        })
        .collect();
    write_probes(&pcap, &probes);
    let mut aggregator = run_binary(
        "crowdflow-aggregator",
        &aggregator_config(dir.path(), port),
        "crowdflow-aggregator",
    );
    let runtime = runtime();
    runtime.block_on(async {
        let ca = std::fs::read(dir.path().join("ca.pem")).expect("ca");
        assert!(
            !connects(port, Transport::Tcp).await,
            "plaintext is refused"
        );
        assert!(
            !connects(port, Transport::tls(ca, None, None)).await,
            "TLS without a client certificate is refused"
        );
        // The aggregator listens 3 s for a leader before it announces a salt.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let mut agent = run_binary(
            "crowdflow-agent",
            &agent_config(dir.path(), port, &pcap),
            "crowdflow-agent",
        );
        let store =
            SqliteStore::open(&dir.path().join("crowdflow.db"), Precision::DEFAULT).expect("open");
        stored::wait_for_frames(&store, 30, Duration::from_secs(60)).await;
        agent.terminate(Duration::from_secs(5));
        aggregator.terminate(Duration::from_secs(5));
        assert_eq!(
            stored::frames(&store).await,
            30,
            "agent:\n{}\naggregator:\n{}",
            String::from_utf8_lossy(&agent.output()),
            String::from_utf8_lossy(&aggregator.output())
        );
        assert_eq!(
            stored::devices(&store, "gate", Kind::WifiRandom, Resolution::Minute).await,
            30.0
        );
    });
}

/// The embedded broker with TLS (`broker.tls_cert_file`) on a non-loopback-capable listener:
/// the agent logs in over mqtts with its password and the broker's CA; a plaintext client is
/// refused; every frame is stored.
#[test]
fn agent_reaches_the_embedded_broker_over_tls() {
    let dir = tempfile::tempdir().expect("tmp");
    certificates(dir.path());
    let (port, http) = (free_port(), free_port());
    let pcap = dir.path().join("probes.pcap");
    let probes: Vec<Probe> = (0..30u64)
        .map(|i| Probe {
            t_us: 1_000_000 + i * 200_000,
            address: [0x0a, 0x43, 0x00, 0x00, 0x00, i as u8],
        })
        .collect();
    write_probes(&pcap, &probes);
    let d = dir.path();
    let aggregator_cfg = d.join("aggregator.toml");
    std::fs::write(
        &aggregator_cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:{http}\"\n[broker]\nmode = \"embedded\"\nlisten = \"127.0.0.1:{port}\"\n\
             tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n\
             [storage]\nkind = \"sqlite\"\npath = \"{}\"\n[salt]\nannounce_every_s = 5\n[counting]\nwindow_s = 10\n\
             [[zones]]\nid = \"gate\"\nname = \"Gate\"\narea_m2 = 800.0\n\
             [[sensors]]\nid = \"gate-1\"\nzone = \"gate\"\nsenses = [\"wifi\"]\npassword = \"gate-1-secret\"\n",
            d.join("server.pem").display(),
            d.join("server.key").display(),
            d.join("crowdflow.db").display()
        ),
    )
    .expect("config");
    let salt = crowdflow_tests::key::salt_section();
    let agent_cfg = d.join("agent.toml");
    std::fs::write(
        &agent_cfg,
        format!(
            "sensor_id = \"gate-1\"\n[broker]\nurl = \"mqtts://127.0.0.1:{port}\"\nca_file = \"{}\"\n\
             username = \"gate-1\"\npassword = \"gate-1-secret\"\n\
             {salt}[capture]\nsource = \"pcap\"\nsenses = [\"wifi\"]\npcap = [\"{}\"]\n[counting]\nwindow_s = 10\n[outbox]\ndir = \"{}\"\n",
            d.join("ca.pem").display(),
            pcap.display(),
            d.join("outbox").display()
        ),
    )
    .expect("config");
    let mut aggregator = run_binary(
        "crowdflow-aggregator",
        &aggregator_cfg,
        "crowdflow-aggregator",
    );
    assert!(
        crowdflow_tests::wait_for_port(port, Duration::from_secs(15)),
        "broker up"
    );
    let runtime = runtime();
    runtime.block_on(async {
        assert!(
            !connects(port, Transport::Tcp).await,
            "plaintext is refused on the TLS port"
        );
        let mut agent = run_binary("crowdflow-agent", &agent_cfg, "crowdflow-agent");
        let store = SqliteStore::open(&d.join("crowdflow.db"), Precision::DEFAULT).expect("open");
        stored::wait_for_frames(&store, 30, Duration::from_secs(60)).await;
        agent.terminate(Duration::from_secs(5));
        aggregator.terminate(Duration::from_secs(5));
        assert_eq!(
            stored::frames(&store).await,
            30,
            "agent:\n{}\naggregator:\n{}",
            String::from_utf8_lossy(&agent.output()),
            String::from_utf8_lossy(&aggregator.output())
        );
    });
}
