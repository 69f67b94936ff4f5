//! `crowdflow-agent selfcheck`: what an installer runs at each step. Every check says in
//! plain words what is wrong and what to do about it.

use std::fmt;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::time::Duration;

use crowdflow_contract::wire::SaltAnnouncement;
use jiff::Timestamp;
use rumqttc::{AsyncClient, ConnectReturnCode, ConnectionError, Event, Packet, QoS};

use crate::capture::file::CaptureReader;
use crate::capture::{SUPPORTED, live};
use crate::config::{AgentConfig, Source};

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
    let mut checks = vec![clock(), capture(&config.source), outbox(&config.outbox_dir)];
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

fn capture(source: &Source) -> Check {
    match source {
        Source::Pcap { files, .. } => {
            for path in files {
                if let Err(e) = first_packet(path) {
                    return fail("capture", format!("{}: {e}", path.display()));
                }
            }
            pass(
                "capture",
                format!("{} capture file(s) readable", files.len()),
            )
        }
        Source::Live { wifi, ble } => {
            let mut found = Vec::new();
            if let Some(w) = wifi {
                match live::check_monitor_interface(&w.interface) {
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
    match reader.next_packet() {
        Ok(Some(p)) if !p.link.is_supported() => Err(format!(
            "link type {} is not supported; supported are {SUPPORTED}",
            p.link
        )),
        Ok(_) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

fn outbox(dir: &Path) -> Check {
    let probe = dir.join(".selfcheck");
    let result = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&probe, b"ok"))
        .and_then(|()| std::fs::remove_file(&probe));
    match result {
        Ok(()) => pass("outbox", format!("{} is writable", dir.display())),
        Err(e) => fail(
            "outbox",
            format!(
                "{} is not writable ({e}): create it and give the agent's user write access (the systemd unit's StateDirectory does this)",
                dir.display()
            ),
        ),
    }
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
        Ok(Ok(())) => pass(
            "broker",
            format!("{}:{} accepted our credentials", b.host, b.port),
        ),
        Ok(Err(ConnectionError::ConnectionRefused(code))) => {
            let why = match code {
                ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized => {
                    "refused our username/password: check broker.username and the password (or CROWDFLOW_BROKER_PASSWORD)"
                }
                _ => "refused the connection",
            };
            return vec![fail(
                "broker",
                format!("{}:{} {why} ({code:?})", b.host, b.port),
            )];
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
    let _ = client.subscribe(salt_topic.clone(), QoS::AtMostOnce).await;
    let _ = client
        .publish(
            b.topics.salt_request(&config.sensor_id),
            QoS::AtMostOnce,
            false,
            Vec::new(),
        )
        .await;
    let salt = tokio::time::timeout(timeout, async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == salt_topic => {
                    return SaltAnnouncement::decode(&p.payload).map_err(|e| e.to_string());
                }
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await;
    let _ = client.disconnect().await;
    let salt = match salt {
        Ok(Ok(a)) => {
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
        Ok(Err(e)) => fail("salt", format!("the salt announcement was unusable: {e}")),
        Err(_) => fail(
            "salt",
            format!(
                "no salt within {} s: is the aggregator running, and may this account read the salt topic?",
                timeout.as_secs()
            ),
        ),
    };
    vec![broker, salt]
}
