//! What an installer following docs/installing-a-sensor.md sees: the packaged config's
//! placeholders named, the guide's steps 1 and 2 as the binary prints them, a selfcheck that changes
//! nothing, and one clear error for a file `replay` cannot read.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn agent(args: &[&str], config: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crowdflow-agent"));
    cmd.args(args).env_remove("CROWDFLOW_BROKER_PASSWORD");
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    cmd.output().expect("the agent runs")
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_guides_step_1_is_what_a_fresh_install_prints() {
    let example = root().join("deploy/agent/agent.example.toml");
    let out = agent(&["selfcheck", "--timeout-s", "1"], Some(&example));
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    let first = stdout.lines().next().expect("a line");
    // the package installs the example as /etc/crowdflow/agent.toml
    let installed = first.replace(&example.display().to_string(), "/etc/crowdflow/agent.toml");
    let guide = std::fs::read_to_string(root().join("docs/installing-a-sensor.md")).expect("guide");
    assert!(
        guide.contains(&format!("    {installed}\n")),
        "the guide's step 1 should show\n    {installed}"
    );
    assert!(installed.starts_with("FAIL config") && installed.contains("change-me"));

    let out = agent(&["validate"], Some(&example));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("`broker.password`: \"change-me\""));
}

#[test]
fn the_guides_step_2_is_what_validate_prints_with_the_password_in_the_environment() {
    let example = root().join("deploy/agent/agent.example.toml");
    let guide = std::fs::read_to_string(root().join("docs/installing-a-sensor.md")).expect("guide");
    let env = "sudo env $(sudo cat /etc/crowdflow/agent.env) crowdflow-agent";
    for step in ["validate", "selfcheck"] {
        assert!(
            guide.contains(&format!(
                "    {env} {step} --config /etc/crowdflow/agent.toml\n"
            )),
            "the guide runs {step} with the service's environment"
        );
    }
    // What `sudo env $(sudo cat agent.env)` does: the variable set for this command.
    let out = Command::new(env!("CARGO_BIN_EXE_crowdflow-agent"))
        .args(["validate", "--config"])
        .arg(&example)
        .env("CROWDFLOW_BROKER_PASSWORD", "0123456789abcdef")
        .output()
        .expect("the agent runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    let named = stderr
        .find("`broker.url`")
        .map(|at| stderr[at..].lines().next().unwrap_or_default())
        .unwrap_or_else(|| panic!("validate names broker.url next: {stderr}"));
    assert!(
        guide.contains(&format!("    {named}\n")),
        "the guide's step 2 should show\n    {named}"
    );
}

#[test]
fn selfcheck_creates_no_directory() {
    let dir = tempfile::tempdir().expect("tmp");
    let outbox = dir.path().join("state/outbox");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port"); // nothing listens once the listener is dropped
    let config = dir.path().join("agent.toml");
    let salt =
        "[salt]\ntrusted_keys = [\"ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\"]\n";
    std::fs::write(
        &config,
        format!(
            "sensor_id = \"neude-01\"\n[broker]\nurl = \"mqtt://127.0.0.1:{port}\"\n\
             {salt}[capture]\nsource = \"pcap\"\npcap = [\"{}\"]\n[outbox]\ndir = \"{}\"\n",
            root()
                .join("sensor-agent/tests/data/captures/aircrack-ng/test1.pcap")
                .display(),
            outbox.display()
        ),
    )
    .expect("config");
    // A Wi-Fi capture: Wi-Fi kinds only, which validate says.
    let valid = text(&agent(&["validate"], Some(&config)).stdout);
    assert!(
        valid.contains("publishes: wifi, wifi_random, wifi_derandomized\n"),
        "{valid}"
    );
    assert!(valid.contains("device gate: learned"), "{valid}");
    // A capture file that cannot be counted is named by validate, which then fails: a
    // trial's agent was called valid, published a BLE kind it guessed, and counted nothing.
    let missing = dir.path().join("missing.pcap");
    let broken = dir.path().join("broken.toml");
    let text_of_config = std::fs::read_to_string(&config).expect("config");
    let with_gate = text_of_config.replace(
        "source = \"pcap\"\n",
        "source = \"pcap\"\nmin_rssi_dbm = -85\n",
    );
    std::fs::write(&config, &with_gate).expect("config");
    let gated = text(&agent(&["validate"], Some(&config)).stdout);
    assert!(
        gated.contains("device gate: fixed at -85 dBm") && gated.contains("replaces"),
        "{gated}"
    );
    let pcap_line = with_gate
        .lines()
        .find(|l| l.starts_with("pcap = "))
        .expect("pcap line")
        .to_owned();
    std::fs::write(
        &broken,
        with_gate.replace(&pcap_line, &format!("pcap = [\"{}\"]", missing.display())),
    )
    .expect("config");
    let out = agent(&["validate"], Some(&broken));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(text(&out.stdout), "", "not called valid");
    assert!(
        stderr.contains("capture.pcap")
            && stderr.contains("missing.pcap")
            && stderr.contains("cannot open"),
        "{stderr}"
    );
    let out = agent(&["selfcheck", "--timeout-s", "2"], Some(&config));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("ok   outbox") && stdout.contains("does not exist yet"),
        "{stdout}"
    );
    assert!(stdout.contains("FAIL broker"), "{stdout}");
    assert!(
        !dir.path().join("state").exists(),
        "selfcheck created {}",
        outbox.display()
    );
}

#[test]
fn replay_of_a_missing_or_non_capture_file_prints_one_error_and_no_table() {
    let dir = tempfile::tempdir().expect("tmp");
    let text_file = dir.path().join("notes.txt");
    std::fs::write(&text_file, "hello, not a capture").expect("file");
    let missing = dir.path().join("missing.pcap");
    let empty = dir.path().join("empty.pcap");
    std::fs::write(&empty, "").expect("file");
    for (path, message) in [
        (&missing, "cannot open"),
        (&empty, "the file is empty (0 bytes)"),
        (
            &text_file,
            "not a pcap, pcapng or btsnoop file (magic bytes 68 65 6c 6c",
        ),
    ] {
        let out = agent(&["replay", "--pcap", &path.display().to_string()], None);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(text(&out.stdout), "", "no table of zeros");
        let stderr = text(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(message), "{stderr}");
    }
    // A capture of a link type not supported is read (its frames skipped) but counts
    // nothing: its error, and no window of "0 devices" a reader could take for an empty place.
    let prism = root().join("sensor-agent/tests/data/captures/aircrack-ng/wpa.cap");
    let out = agent(
        &[
            "replay",
            "--window",
            "15m",
            "--pcap",
            &prism.display().to_string(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "", "no table of zeros");
    assert!(text(&out.stderr).contains("unsupported link type 119"));
}
