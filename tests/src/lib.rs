//! Shared helpers for the whole-system scenarios: temp dirs, free ports, real brokers and
//! the project's binaries as child processes (killed when dropped).
#![allow(missing_docs)]

pub mod authority;
pub mod cable;
pub mod capture;
pub mod gate;
pub mod key;
pub mod salt;
pub mod shipped_mosquitto;
pub mod stored;

use std::io::Read as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port nobody listens on right now, and one that no other test of this process was given.
///
/// Ports come from below the kernel's ephemeral range: a port the kernel hands out (as
/// binding to port 0 does) can be taken by any outgoing connection of a test running in
/// parallel (an MQTT client, a PostgreSQL connection) before the server meant for it binds
/// it, which made a broker fail with "address in use" now and then.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .filter(|low| *low > 12_000)
        .unwrap_or(32_768);
    let (base, span) = (ephemeral - 12_000, 12_000);
    // Processes running tests at once start at different places (by pid).
    let start = (std::process::id() % span) * 7919 % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port =
            u16::try_from(base + (start + n % span) % span).expect("below the ephemeral range");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {base}..{}", base + span)
}

/// Subscribes `client` to the salt topic and returns the first announcement (within 20 s),
/// for tests that publish sketches as sensors: they hash under the aggregator's salt.
pub async fn announced_salt(
    client: &rumqttc::AsyncClient,
    events: &mut rumqttc::EventLoop,
) -> crowdflow_contract::wire::SaltAnnouncement {
    use rumqttc::{Event, Packet, QoS};
    client
        .subscribe("crowdflow/v1/salt", QoS::AtMostOnce)
        .await
        .expect("subscribe");
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Ok(Event::Incoming(Packet::Publish(p))) = events.poll().await {
                let (announcement, _) = crowdflow_contract::wire::SaltAnnouncement::decode_signed(
                    &p.payload,
                    &key::trusted_keys(),
                )
                .expect("an announcement signed by the suite's key");
                break announcement;
            }
        }
    })
    .await
    .expect("a salt is announced")
}

/// Waits until something accepts TCP connections on `port`.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A plain HTTP/1.1 GET on 127.0.0.1; the response body (no TLS, no redirects).
pub fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    http_request(port, path, "")
}

/// [`http_get`] with `Authorization: Bearer TOKEN` (the aggregator refuses a token in the
/// URL except on the stream and downloads).
pub fn http_get_as(port: u16, path: &str, token: &str) -> std::io::Result<String> {
    http_request(port, path, &format!("Authorization: Bearer {token}\r\n"))
}

fn http_request(port: u16, path: &str, headers: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{headers}\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or(response))
}

/// A child process killed on drop.
#[derive(Debug)]
pub struct Proc {
    pub child: Child,
    pub name: &'static str,
    output: Option<std::sync::Arc<std::sync::Mutex<Vec<u8>>>>,
}

impl Proc {
    /// Wraps a spawned child whose output is not captured.
    pub fn new(child: Child, name: &'static str) -> Proc {
        Proc {
            child,
            name,
            output: None,
        }
    }

    /// Spawns `command` with stdout and stderr drained continuously into one buffer (a full
    /// pipe would block the child).
    pub fn spawn_capturing(mut command: Command, name: &'static str) -> Proc {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{name} does not start: {e}"));
        let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let pipes: Vec<Box<dyn std::io::Read + Send>> = [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        .collect();
        for mut pipe in pipes {
            let sink = output.clone();
            std::thread::spawn(move || {
                let mut chunk = [0u8; 8192];
                while let Ok(n) = pipe.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut out) = sink.lock() {
                        out.extend_from_slice(&chunk[..n]);
                    }
                }
            });
        }
        Proc {
            child,
            name,
            output: Some(output),
        }
    }

    /// Everything the child wrote so far (captured children only).
    pub fn output(&self) -> Vec<u8> {
        self.output
            .as_ref()
            .and_then(|o| o.lock().ok().map(|o| o.clone()))
            .unwrap_or_default()
    }

    /// Stops with SIGTERM (graceful) and waits up to `timeout`, then kills.
    pub fn terminate(&mut self, timeout: Duration) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills with SIGKILL (a crash).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Mosquitto broker of our own on a free port (anonymous, no persistence).
#[derive(Debug)]
pub struct Mosquitto {
    pub port: u16,
    pub proc: Proc,
}

fn mosquitto_binary() -> PathBuf {
    for candidate in [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    PathBuf::from("mosquitto")
}

impl Mosquitto {
    /// Starts one; panics with an install hint if it cannot.
    pub fn start(dir: &Path) -> Mosquitto {
        Mosquitto::start_on(dir, free_port())
    }

    /// Starts one on `port` (to restart a broker where clients expect it).
    pub fn start_on(dir: &Path, port: u16) -> Mosquitto {
        Mosquitto::start_with(dir, port, "")
    }

    /// Starts one on `port` with `listener_options` (e.g. TLS) added to its listener.
    pub fn start_with(dir: &Path, port: u16, listener_options: &str) -> Mosquitto {
        let conf = dir.join(format!("mosquitto-{port}.conf"));
        std::fs::write(
            &conf,
            format!("per_listener_settings false\nlistener {port} 127.0.0.1\n{listener_options}allow_anonymous true\npersistence false\nmax_packet_size 4194304\nmax_queued_messages 100000\n"),
        )
        .expect("write mosquitto.conf");
        Mosquitto::start_conf(&conf, port)
    }

    /// Starts one with the config file `conf`, which listens on `port`.
    pub fn start_conf(conf: &Path, port: u16) -> Mosquitto {
        let child = Command::new(mosquitto_binary())
            .arg("-c")
            .arg(conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto runs (scripts/test.sh installs it: apt-get install mosquitto)");
        let proc = Proc::new(child, "mosquitto");
        assert!(
            wait_for_port(port, Duration::from_secs(10)),
            "mosquitto did not listen on {port}"
        );
        Mosquitto { port, proc }
    }
}

/// The scenarios' async runtime: one thread with timers and I/O (the processes under test
/// do the work).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A throwaway database on the test PostgreSQL server, dropped with the value.
pub async fn scratch_database() -> crowdflow_aggregator::store::ScratchDatabase {
    crowdflow_aggregator::store::ScratchDatabase::create(&postgres_server())
        .await
        .expect("scratch database")
}

/// Writes the config of agent `sensor` to `dir/agent.toml`: it replays `pcap` (Wi-Fi) to the
/// broker on `mqtt_port` in `window_s` windows, with its outbox in `dir/outbox`.
pub fn replay_agent_config(
    dir: &Path,
    sensor: &str,
    mqtt_port: u16,
    pcap: &Path,
    window_s: u64,
) -> PathBuf {
    let path = dir.join("agent.toml");
    let text = format!(
        "sensor_id = \"{sensor}\"\n[broker]\nurl = \"mqtt://127.0.0.1:{mqtt_port}\"\n{}[capture]\nsource = \"pcap\"\nsenses = [\"wifi\"]\n\
         pcap = [\"{}\"]\n[counting]\nwindow_s = {window_s}\n[outbox]\ndir = \"{}\"\n",
        key::salt_section(),
        pcap.display(),
        dir.join("outbox").display()
    );
    std::fs::write(&path, text).expect("agent config");
    path
}

/// The PostgreSQL server for tests that store there (`scripts/test.sh` starts one).
pub fn postgres_server() -> String {
    std::env::var("CROWDFLOW_TEST_POSTGRES").unwrap_or_else(|_| {
        panic!(
            "CROWDFLOW_TEST_POSTGRES is not set: run `bash scripts/test.sh` (it starts a PostgreSQL), or set it to a server URL such as postgres://postgres@127.0.0.1:5432/postgres"
        )
    })
}

/// Runs `binary run --config CONFIG` of this workspace at debug log level, output captured.
/// An aggregator gets the suite's signing key beside its config ([`key::install_beside`]).
pub fn run_binary(binary: &str, config: &Path, name: &'static str) -> Proc {
    if binary == "crowdflow-aggregator" {
        key::install_beside(config);
    }
    let mut command = Command::new(workspace_binary(binary));
    command
        .args(["run", "--config"])
        .arg(config)
        .env("CROWDFLOW_LOG", "debug");
    Proc::spawn_capturing(command, name)
}

/// A binary of this workspace, next to the test executable's directory. `cargo test
/// --workspace` (what scripts/test.sh runs) rebuilds it; `cargo test -p crowdflow-tests`
/// alone does not rebuild other packages' binaries, so run it after `cargo build --workspace`.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace` first",
        path.display()
    );
    path
}

/// Every way an address could be written out: raw bytes (both byte orders) and hex with
/// every common separator, in upper and lower case.
pub fn address_notations(address: &[u8; 6]) -> Vec<Vec<u8>> {
    let mut out = vec![address.to_vec(), address.iter().rev().copied().collect()];
    for bytes in [
        address.to_vec(),
        address.iter().rev().copied().collect::<Vec<u8>>(),
    ] {
        for sep in ["", ":", "-", " ", "."] {
            let lower: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let upper: Vec<String> = bytes.iter().map(|b| format!("{b:02X}")).collect();
            out.push(lower.join(sep).into_bytes());
            out.push(upper.join(sep).into_bytes());
        }
        // Cisco style: 001b.6384.4500
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        out.push(format!("{}.{}.{}", &hex[0..4], &hex[4..8], &hex[8..12]).into_bytes());
    }
    out
}

/// Panics if any address appears in `haystack` in any notation.
pub fn assert_no_addresses(haystack: &[u8], addresses: &[[u8; 6]], what: &str) {
    // One pass per needle length over the haystack, looking windows up in a set: fast
    // enough for thousands of addresses over megabytes of payloads.
    let mut by_len: std::collections::BTreeMap<usize, foldhash::HashSet<Vec<u8>>> =
        std::collections::BTreeMap::new();
    for address in addresses {
        for needle in address_notations(address) {
            by_len.entry(needle.len()).or_default().insert(needle);
        }
    }
    for (len, needles) in &by_len {
        if let Some(found) = haystack.windows(*len).find(|w| needles.contains(*w)) {
            panic!(
                "{what} contains a device address ({})",
                String::from_utf8_lossy(found)
            );
        }
    }
}

/// Every file below `dir`, with its contents.
pub fn files_below(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.push((path, bytes));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 6] = [0x00, 0x1b, 0x63, 0x84, 0x45, 0x07];

    #[test]
    fn the_scan_finds_an_address_in_every_notation() {
        for text in [
            "00:1b:63:84:45:07",
            "00-1B-63-84-45-07",
            "001b63844507",
            "001b.6384.4507",
            "07:45:84:63:1b:00",
        ] {
            let leak = format!("{{\"note\":\"{text}\"}}");
            let caught =
                std::panic::catch_unwind(|| assert_no_addresses(leak.as_bytes(), &[A], "x"));
            assert!(caught.is_err(), "{text} not caught");
        }
        let raw = [b'x', 0x00, 0x1b, 0x63, 0x84, 0x45, 0x07, b'y'];
        assert!(std::panic::catch_unwind(|| assert_no_addresses(&raw, &[A], "x")).is_err());
        assert_no_addresses(b"00:1b:63:84:45:08 is another device", &[A], "x");
    }
}
