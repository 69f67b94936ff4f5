//! An installer runs `crowdflow-agent selfcheck` at each step: with broker and aggregator up
//! it confirms capture, outbox, broker and salt; with the broker down it says so and how to fix.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crowdflow_tests::authority::Authority;
use crowdflow_tests::capture::{Probe, write_probes};
use crowdflow_tests::{Mosquitto, free_port, runtime, workspace_binary};

fn config(dir: &Path, port: u16, pcap: &Path) -> std::path::PathBuf {
    let path = dir.join(format!("agent-{port}.toml"));
    let salt = crowdflow_tests::key::salt_section();
    let text = format!(
        "sensor_id = \"selfcheck-1\"\n[broker]\nurl = \"mqtt://127.0.0.1:{port}\"\n\
         {salt}[capture]\nsource = \"pcap\"\npcap = [\"{}\"]\n[outbox]\ndir = \"{}\"\n",
        pcap.display(),
        dir.join("outbox").display()
    );
    std::fs::write(&path, text).expect("config");
    path
}

fn selfcheck(config: &Path) -> (Option<i32>, String) {
    let out = Command::new(workspace_binary("crowdflow-agent"))
        .args(["selfcheck", "--timeout-s", "5", "--config"])
        .arg(config)
        .output()
        .expect("selfcheck runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn selfcheck_confirms_a_working_installation_and_names_a_missing_broker() {
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(dir.path());
    let pcap = dir.path().join("one.pcap");
    write_probes(
        &pcap,
        &[Probe {
            t_us: 0,
            address: [2, 0, 0, 0, 0, 1],
        }],
    );
    let runtime = runtime();
    let report = runtime.block_on(async {
        let authority = Authority::spawn(broker.port);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let config = config(dir.path(), broker.port, &pcap);
        let handle = tokio::task::spawn_blocking(move || selfcheck(&config));
        let report = handle.await.expect("join");
        drop(authority);
        report
    });
    let (_, out) = report;
    for line in [
        "ok   config",
        "ok   capture",
        "ok   outbox",
        "ok   broker",
        "ok   salt",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }

    let down = config(dir.path(), free_port(), &pcap);
    let (code, out) = selfcheck(&down);
    assert_eq!(code, Some(1));
    assert!(
        out.contains("FAIL broker") && out.contains("cannot reach"),
        "{out}"
    );

    let missing = config(dir.path(), broker.port, &dir.path().join("nope.pcap"));
    let (code, out) = selfcheck(&missing);
    assert_eq!(code, Some(1));
    assert!(
        out.contains("FAIL capture") && out.contains("nope.pcap: cannot open"),
        "{out}"
    );
}
