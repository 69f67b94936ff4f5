//! `crowdflow-agent selfcheck`: what an installer runs at each step. Every check says in
//! plain words what is wrong and what to do about it.

use std::fmt;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::time::Duration;

use crowdflow_contract::identity::Kind;
use crowdflow_contract::wire::{SaltAnnouncement, SaltAnswer, SensorId};
use jiff::Timestamp;
use rumqttc::{AsyncClient, ConnectReturnCode, ConnectionError, Event, Packet, QoS};

use crate::capture::file::CaptureReader;
use crate::capture::wifi_monitor;
use crate::config::{AgentConfig, Source};
use crate::frame::{LinkType, SUPPORTED};

/// One check's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// Passed?
    pub ok: bool,
    /// What was found, and for a failure, what to do.
    pub detail: String,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = if self.ok { "ok  " } else { "FAIL" };
        write!(f, "{mark} {:<8} {}", self.name, self.detail)
    }
}

fn pass(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        ok: true,
        detail: detail.into(),
    }
}

fn fail(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        ok: false,
        detail: detail.into(),
    }
}

/// Runs every check; the broker and salt checks take up to `timeout` each.
pub async fn run(config: &AgentConfig, timeout: Duration) -> Vec<Check> {
    let mut checks = vec![
        clock(),
        capture(&config.source),
        outbox(&config.outbox_dir, &config.sensor_id),
    ];
    if let Some(addr) = config.metrics_listen {
        checks.push(metrics(addr, &config.sensor_id));
    }
    let broker = broker_and_salt(config, timeout).await;
    checks.extend(broker);
    checks
}

fn clock() -> Check {
    let now = Timestamp::now();
    if now.as_second() < 1_735_689_600 {
        return fail(
            "clock",
            format!(
                "the system clock says {now}: set the time (enable NTP: `timedatectl set-ntp true`); windows and salts depend on it"
            ),
        );
    }
    let synced = std::process::Command::new("timedatectl")
        .args(["show", "-p", "NTPSynchronized", "--value"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "yes");
    match synced {
        Some(false) => fail(
            "clock",
            format!(
                "{now}, but NTP is not synchronized: run `timedatectl set-ntp true` and check network access to an NTP server"
            ),
        ),
        _ => pass("clock", format!("{now}")),
    }
}

/// The capture files of a `pcap` source that cannot be counted, each as "FILE: why" (none
/// for a live source: its radios are checked by `selfcheck` on the sensor itself).
pub fn unreadable_capture_files(source: &Source) -> Vec<String> {
    match source {
        Source::Pcap { files, .. } => files
            .iter()
            .filter_map(|path| {
                first_packet(path).err().map(|e| {
                    // A relative path is opened from the current directory, not the config's.
                    let from = std::env::current_dir()
                        .ok()
                        .filter(|_| path.is_relative())
                        .map_or(String::new(), |d| format!(" (from {})", d.display()));
                    format!("{}{from}: {e}", path.display())
                })
            })
            .collect(),
        Source::Live { .. } => Vec::new(),
    }
}

fn capture(source: &Source) -> Check {
    match source {
        Source::Pcap { files, .. } => {
            if let Some(problem) = unreadable_capture_files(source).into_iter().next() {
                return fail("capture", problem);
            }
            pass(
                "capture",
                format!("{} capture file(s) readable", files.len()),
            )
        }
        Source::Live { wifi, ble } => {
            let mut found = Vec::new();
            if let Some(w) = wifi {
                match wifi_monitor::check_monitor_interface(&w.interface) {
                    Ok(()) => found.push(format!("{} is in monitor mode", w.interface)),
                    Err(e) => return fail("capture", e.to_string()),
                }
            }
            if let Some(dev) = ble {
                if Path::new(&format!("/sys/class/bluetooth/hci{dev}")).exists() {
                    found.push(format!("Bluetooth controller hci{dev} present"));
                } else {
                    return fail(
                        "capture",
                        format!(
                            "no Bluetooth controller hci{dev}: check `bluetoothctl list` and that Bluetooth is not disabled (dtoverlay=disable-bt)"
                        ),
                    );
                }
            }
            pass("capture", found.join("; "))
        }
    }
}

fn first_packet(path: &Path) -> Result<(), String> {
    let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut reader = CaptureReader::new(BufReader::new(file)).map_err(|e| e.to_string())?;
    // A multi-interface pcapng may begin with packets of an interface the agent skips:
    // look further than the first packet for one it reads.
    let supported = |links: &[LinkType]| links.iter().any(|l| l.is_supported());
    let (links, error) = reader.link_types(10_000, supported);
    if let Some(e) = error {
        return Err(e.to_string());
    }
    if links.is_empty() || supported(&links) {
        return Ok(());
    }
    let mut unsupported: Vec<String> = links.iter().map(|l| l.to_string()).collect();
    unsupported.sort();
    Err(format!(
        "link type {} is not supported; supported are {SUPPORTED}",
        unsupported.join(", ")
    ))
}

/// Checks the outbox directory without changing the system: nothing is created or written.
/// A directory that does not exist yet passes if the agent could create it (its nearest
/// existing ancestor is writable for this user), as it does at its first start.
fn outbox(dir: &Path, sensor: &SensorId) -> Check {
    let fix = "create it and give the agent's user write access (the systemd unit's StateDirectory does this at the service's first start)";
    if dir.exists() {
        return if !dir.is_dir() {
            fail(
                "outbox",
                format!("{} is not a directory: {fix}", dir.display()),
            )
        } else if writable(dir) {
            let others = crate::publish::outbox::queued_by_others(dir, sensor);
            let note: String = others
                .iter()
                .map(|(id, n)| {
                    format!(
                        "; it holds {n} sketches queued as sensor {id}, which the agent will set aside in {}/ at its start and never send",
                        dir.join(crate::publish::outbox::OTHER_SENSORS).join(id).display()
                    )
                })
                .collect();
            pass("outbox", format!("{} is writable{note}", dir.display()))
        } else {
            fail(
                "outbox",
                format!("{} is not writable for this user: {fix}", dir.display()),
            )
        };
    }
    let Some(ancestor) = dir.ancestors().skip(1).find(|a| a.is_dir()) else {
        return fail(
            "outbox",
            format!("{} has no existing parent directory: {fix}", dir.display()),
        );
    };
    if writable(ancestor) {
        pass(
            "outbox",
            format!(
                "{} does not exist yet; the agent will create it in {}, which is writable",
                dir.display(),
                ancestor.display()
            ),
        )
    } else {
        fail(
            "outbox",
            format!(
                "{} does not exist and {} is not writable for this user: {fix}",
                dir.display(),
                ancestor.display()
            ),
        )
    }
}

/// Whether the metrics address is free (or served by a running agent): `run` would log an
/// error and serve no metrics where another program holds it. Binding and closing at once
/// changes nothing.
fn metrics(addr: std::net::SocketAddr, sensor: &SensorId) -> Check {
    match std::net::TcpListener::bind(addr) {
        Ok(_) => pass("metrics", format!("{addr} is free for the agent's metrics")),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            let body = agent_metrics(addr);
            let mine = format!("{}{{sensor=\"{sensor}\"}} 1", crate::metrics::INFO);
            if body.contains(&mine) {
                pass(
                    "metrics",
                    format!("{addr} serves the metrics of this sensor's running agent"),
                )
            } else if body.contains("crowdflow_agent_") {
                fail(
                    "metrics",
                    format!(
                        "{addr} serves another agent's metrics (another sensor id, or an agent too old to say): this one would serve none; give each agent its own metrics.listen"
                    ),
                )
            } else {
                fail(
                    "metrics",
                    format!(
                        "{addr} is taken by another program: the agent would serve no metrics; choose another metrics.listen"
                    ),
                )
            }
        }
        Err(e) => fail(
            "metrics",
            format!("cannot listen on {addr}: {e}; choose another metrics.listen"),
        ),
    }
}

/// What `addr` answers to `GET /metrics` (empty when nothing answers in time).
fn agent_metrics(addr: std::net::SocketAddr) -> String {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return String::new();
    }
    let mut body = Vec::new();
    let _ = stream.take(1 << 20).read_to_end(&mut body);
    String::from_utf8_lossy(&body).into_owned()
}

/// Whether this process may create entries in `dir` (write and search permission, by the
/// effective user, as the kernel would decide): access(2) asks without writing anything.
#[allow(unsafe_code)]
fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `path` is a valid NUL-terminated string that outlives the call; faccessat
    // only reads it.
    let rc = unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::W_OK | libc::X_OK,
            libc::AT_EACCESS,
        )
    };
    rc == 0
}

async fn broker_and_salt(config: &AgentConfig, timeout: Duration) -> Vec<Check> {
    let b = &config.broker;
    let mut options = b.mqtt_options(format!("crowdflow-selfcheck-{}", config.sensor_id));
    options
        .set_keep_alive(Duration::from_secs(10))
        .set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut events) = AsyncClient::new(options, 16);
    let connected = tokio::time::timeout(timeout, async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    let broker = match connected {
        Ok(Ok(())) if b.username.is_some() => pass(
            "broker",
            format!("{}:{} accepted our credentials", b.host, b.port),
        ),
        // Without an account anyone may connect, and read the salt: fine on a test bench.
        Ok(Ok(())) => pass(
            "broker",
            format!(
                "{}:{} let us in without an account (for a test bench only: a broker anyone may use lets anyone read the salt; in the field give each sensor an account)",
                b.host, b.port
            ),
        ),
        Ok(Err(ConnectionError::ConnectionRefused(code))) => {
            let why = match code {
                ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized => {
                    "refused our login: check broker.username, the password (or CROWDFLOW_BROKER_PASSWORD), and that sensor_id is this account's sensor (the embedded broker takes an agent only under its own account)"
                }
                _ => "refused the connection",
            };
            let mut checks = account(config);
            checks.push(fail(
                "broker",
                format!(
                    "{}:{} {why} (CONNACK: {})",
                    b.host,
                    b.port,
                    crowdflow_contract::mqtt::connack_text(code)
                ),
            ));
            return checks;
        }
        Ok(Err(e)) => {
            return vec![fail(
                "broker",
                format!(
                    "cannot reach {}:{} ({e}): check broker.url, the network and the firewall",
                    b.host, b.port
                ),
            )];
        }
        Err(_) => {
            return vec![fail(
                "broker",
                format!(
                    "no answer from {}:{} within {} s: check broker.url and the network",
                    b.host,
                    b.port,
                    timeout.as_secs()
                ),
            )];
        }
    };
    let salt_topic = b.topics.salt();
    let answer_topic = b.topics.salt_answer(&config.sensor_id);
    let _ = client.subscribe(salt_topic.clone(), QoS::AtMostOnce).await;
    let _ = client
        .subscribe(answer_topic.clone(), QoS::AtMostOnce)
        .await;
    // Asked again every second while waiting: the aggregator answers a sensor at most four
    // times a second, so a selfcheck right after another would otherwise hear nothing.
    let asking = {
        let client = client.clone();
        let request = b.topics.salt_request(&config.sensor_id);
        tokio::spawn(async move {
            loop {
                let _ = client
                    .publish(request.clone(), QoS::AtMostOnce, false, Vec::new())
                    .await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    // Announcements that do not verify are remembered, not final: a good one may follow.
    let mut refused: Option<String> = None;
    let mut salt: Option<Result<SaltAnnouncement, String>> = None;
    let mut answer: Option<Result<SaltAnswer, String>> = None;
    let mut answer_refused: Option<String> = None;
    let _ = tokio::time::timeout(timeout, async {
        while salt.is_none() || answer.is_none() {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == salt_topic && p.retain => {
                    refused = Some("a retained announcement was ignored (the aggregator never retains: someone planted it)".into());
                }
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == salt_topic => {
                    match SaltAnnouncement::decode_signed(&p.payload, &config.trusted_keys) {
                        Ok((a, _)) => salt = Some(Ok(a)),
                        Err(e) => refused = Some(e.to_string()),
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == answer_topic && !p.retain => {
                    // One that does not verify is remembered, not final: the real one may follow.
                    match SaltAnswer::decode_signed(&p.payload, &config.trusted_keys, Timestamp::now()) {
                        Ok((a, _)) if a.sensor_id == config.sensor_id => answer = Some(Ok(a)),
                        Ok((a, _)) => {
                            answer_refused = Some(format!("an answer about {} was copied here", a.sensor_id));
                        }
                        Err(e) => answer_refused = Some(e.to_string()),
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let e = e.to_string();
                    salt.get_or_insert(Err(e.clone()));
                    answer.get_or_insert(Err(e));
                }
            }
        }
    })
    .await;
    asking.abort();
    let _ = client.disconnect().await;
    let salt = match salt {
        Some(Ok(a)) => {
            let now = Timestamp::now();
            match a.salts.iter().find(|s| s.covers(now)) {
                Some(s) => pass(
                    "salt",
                    format!(
                        "epoch {} (fingerprint {}) from {}",
                        s.epoch,
                        s.salt.fingerprint(),
                        a.authority
                    ),
                ),
                None => fail(
                    "salt",
                    "the aggregator answered but no salt covers the current time: compare the clocks of this sensor and the aggregator",
                ),
            }
        }
        Some(Err(e)) => fail("salt", format!("the salt announcement was unusable: {e}")),
        None if refused.is_some() => fail(
            "salt",
            format!(
                "no usable salt within {} s: {}",
                timeout.as_secs(),
                refused.unwrap_or_default()
            ),
        ),
        None => fail(
            "salt",
            format!(
                "no salt within {} s: is the aggregator running, and may this account read the salt topic?",
                timeout.as_secs()
            ),
        ),
    };
    let mut checks = account(config);
    checks.extend([broker, salt]);
    let known = known(
        config,
        answer
            .or(answer_refused.map(|e| Err(format!("{e} (a forged or stale answer was ignored)")))),
        timeout,
    );
    checks.push(known);
    checks
}

/// A broker account named otherwise than the sensor: both shipped brokers (the embedded one,
/// deploy/mosquitto's ACL on `%u`) let an account publish only under its own sensor id, so
/// every sketch and salt request of this agent would be dropped without a word.
fn account(config: &AgentConfig) -> Vec<Check> {
    match &config.broker.username {
        Some(user) if user.as_str() != config.sensor_id.as_str() => vec![fail(
            "account",
            format!(
                "broker.username {user:?} differs from sensor_id {:?}: the shipped brokers let an account publish only under its own sensor id, so make them equal (or give this sensor its own account)",
                config.sensor_id.as_str()
            ),
        )],
        _ => Vec::new(),
    }
}

/// The aggregator's `senses` entry that allows `kind`.
fn sense_of(kind: Kind) -> &'static str {
    match kind {
        Kind::Ble => "ble",
        Kind::Wifi | Kind::WifiRandom | Kind::WifiDerandomized => "wifi",
    }
}

/// Whether the aggregator accepts this sensor's sketches, from its answer to the salt request.
fn known(
    config: &AgentConfig,
    answer: Option<Result<SaltAnswer, String>>,
    timeout: Duration,
) -> Check {
    let id = &config.sensor_id;
    match answer {
        Some(Ok(a)) if a.sensor_id != *id => fail(
            "sensor",
            format!(
                "the aggregator answered about {} instead of {id}",
                a.sensor_id
            ),
        ),
        Some(Ok(a)) if a.known => {
            let sending = config.source.kinds();
            let refused: Vec<Kind> = match &a.kinds {
                Some(accepted) => sending
                    .iter()
                    .copied()
                    .filter(|k| !accepted.contains(k))
                    .collect(),
                None => Vec::new(),
            };
            if refused.is_empty() {
                return pass(
                    "sensor",
                    format!(
                        "the aggregator ({}) knows sensor {id} and accepts its sketches",
                        a.authority
                    ),
                );
            }
            let mut senses: Vec<&str> = refused.iter().map(|k| sense_of(*k)).collect();
            senses.dedup();
            // What the agent's config sets its media with.
            let setting = match config.source {
                Source::Pcap { .. } => "capture.senses",
                Source::Live { .. } => "capture.source",
            };
            fail(
                "sensor",
                format!(
                    "the aggregator ({}) knows sensor {id} but not as a {} sensor: its {} sketches would be rejected as kind_not_allowed. Add {} to this sensor's senses in the aggregator's config, or capture only what it senses there ({setting})",
                    a.authority,
                    senses.join(" and "),
                    refused
                        .iter()
                        .map(|k| k.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    senses
                        .iter()
                        .map(|s| format!("\"{s}\""))
                        .collect::<Vec<_>>()
                        .join(" and "),
                ),
            )
        }
        Some(Ok(a)) => fail(
            "sensor",
            format!(
                "the aggregator ({}) does not know sensor {id}: every sketch would be rejected as unknown_sensor. Add it to the aggregator's config ([[sensors]] id = \"{id}\" with its zone) and restart the aggregator, or correct sensor_id here",
                a.authority
            ),
        ),
        Some(Err(e)) => fail(
            "sensor",
            format!("the aggregator's answer about this sensor was unusable: {e}"),
        ),
        None => fail(
            "sensor",
            format!(
                "no answer about sensor {id} within {} s: is the aggregator running (and as new as this agent), and may this account read {}?",
                timeout.as_secs(),
                config.broker.topics.salt_answer(id)
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_named_otherwise_than_the_sensor_is_named() {
        let text = |user: &str| {
            format!(
                "sensor_id = \"neude-01\"\n[broker]\nurl = \"mqtt://broker.local:1884\"\nusername = \"{user}\"\npassword = \"s3cret\"\n\
                 [salt]\ntrusted_keys = [\"ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\"]\n\
                 [capture]\nsource = \"wifi\"\ninterface = \"wlan1\"\n[outbox]\ndir = \"/tmp/outbox\"\n"
            )
        };
        let parse = |t: &str| AgentConfig::parse(t, Path::new("a.toml"), None).expect("valid");
        assert!(account(&parse(&text("neude-01"))).is_empty());
        let checks = account(&parse(&text("neude-1")));
        assert_eq!(checks.len(), 1);
        assert!(
            !checks[0].ok && checks[0].detail.contains("differs from sensor_id"),
            "{}",
            checks[0]
        );
    }

    #[test]
    fn the_outbox_check_creates_nothing() {
        let me = SensorId::new("neude-01").expect("id");
        let dir = tempfile::tempdir().expect("tmp");
        let missing = dir.path().join("a/b/outbox");
        let check = outbox(&missing, &me);
        assert!(check.ok, "{check}");
        assert!(check.detail.contains("does not exist yet"), "{check}");
        assert!(!dir.path().join("a").exists(), "no directory created");
        let check = outbox(dir.path(), &me);
        assert!(check.ok && check.detail.ends_with("is writable"), "{check}");
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("dir").count(),
            0,
            "no probe left"
        );
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").expect("file");
        assert!(!outbox(&file, &me).ok);
    }

    #[test]
    fn the_outbox_check_names_another_sensors_queue_and_moves_nothing() {
        let me = SensorId::new("neude-01").expect("id");
        let dir = tempfile::tempdir().expect("tmp");
        for (seq, sensor) in [(0, "neude-02"), (1, "neude-02"), (2, "neude-01")] {
            let body = format!("{{\"v\":1,\"sensor_id\":\"{sensor}\"}}");
            std::fs::write(dir.path().join(format!("{seq}.json")), body).expect("queued");
        }
        let check = outbox(dir.path(), &me);
        assert!(
            check.ok
                && check
                    .detail
                    .contains("holds 2 sketches queued as sensor neude-02"),
            "{check}"
        );
        assert!(dir.path().join("0.json").exists(), "nothing moved");
    }

    #[test]
    fn the_metrics_check_names_an_address_another_program_holds() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = held.local_addr().expect("addr");
        let me = SensorId::new("neude-01").expect("id");
        let check = metrics(addr, &me);
        assert!(
            !check.ok && check.detail.contains("taken by another program"),
            "{check}"
        );
        drop(held);
        assert!(metrics(addr, &me).ok);
    }
}
