//! The production broker of deploy/mosquitto, as shipped (paths and port rewritten only): its
//! config, ACL, CA script and account script, for the scenarios that test through it.

use std::path::{Path, PathBuf};
use std::process::Command;

use rumqttc::{AsyncClient, EventLoop, MqttOptions, Transport};

use crate::{Mosquitto, free_port};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/mosquitto")
}

fn script(args: &[&str]) -> String {
    let out = Command::new("bash").args(args).output().expect("bash runs");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Creates `id`'s account with add-sensor.sh and returns the password it printed.
fn account(passwd: &Path, id: &str) -> String {
    let out = script(&[
        &deploy().join("add-sensor.sh").display().to_string(),
        &passwd.display().to_string(),
        id,
    ]);
    out.split_once(": ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .expect("password printed")
        .to_owned()
}

fn open_up(path: &Path, mode: u32) {
    let _ = std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode));
}

/// The shipped broker's files in a directory of the test's, with a CA and accounts made by
/// the shipped scripts.
#[derive(Debug)]
pub struct ShippedMosquitto {
    /// Where its files are (`certs/ca.pem`, `persist/`, the config).
    pub dir: PathBuf,
    conf: PathBuf,
    /// Its TLS port on 127.0.0.1.
    pub port: u16,
    /// The CA certificate (PEM) clients trust.
    pub ca: Vec<u8>,
    passwords: Vec<(String, String)>,
}

impl ShippedMosquitto {
    /// Prepares the broker in `dir` with one account per name of `accounts`.
    pub fn new(dir: &Path, accounts: &[&str]) -> ShippedMosquitto {
        let certs = dir.join("certs");
        script(&[
            &deploy().join("make-ca.sh").display().to_string(),
            &certs.display().to_string(),
            "127.0.0.1",
        ]);
        let passwd = dir.join("crowdflow.passwd");
        let passwords = accounts
            .iter()
            .map(|id| (id.to_string(), account(&passwd, id)))
            .collect();
        let persist = dir.join("persist");
        std::fs::create_dir_all(&persist).expect("persist dir");
        // Mosquitto started as root reads its files as the mosquitto user.
        open_up(dir, 0o755);
        open_up(&certs, 0o755);
        open_up(&persist, 0o777);
        for entry in std::fs::read_dir(&certs).expect("certs") {
            open_up(&entry.expect("entry").path(), 0o644);
        }
        open_up(&passwd, 0o644);
        let port = free_port();
        let shipped = std::fs::read_to_string(deploy().join("crowdflow.conf")).expect("conf");
        let conf_text = shipped
            .replace(
                "/etc/mosquitto/crowdflow.passwd",
                &passwd.display().to_string(),
            )
            .replace(
                "/etc/mosquitto/crowdflow.acl",
                &deploy().join("crowdflow.acl").display().to_string(),
            )
            .replace("/etc/mosquitto/certs", &certs.display().to_string())
            .replace("/var/lib/mosquitto/", &format!("{}/", persist.display()))
            .replace("listener 8883", &format!("listener {port} 127.0.0.1"));
        assert_ne!(conf_text, shipped);
        let conf = dir.join("mosquitto.conf");
        std::fs::write(&conf, conf_text).expect("write conf");
        open_up(&conf, 0o644);
        ShippedMosquitto {
            dir: dir.to_owned(),
            conf,
            port,
            ca: std::fs::read(certs.join("ca.pem")).expect("ca"),
            passwords,
        }
    }

    /// Starts it (again, after a stop: persistence is kept).
    pub fn start(&self) -> Mosquitto {
        Mosquitto::start_conf(&self.conf, self.port)
    }

    /// The CA certificate's path, for configs.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("certs/ca.pem")
    }

    /// The password add-sensor.sh printed for `user`.
    pub fn password(&self, user: &str) -> String {
        self.passwords
            .iter()
            .find(|(u, _)| u == user)
            .map(|(_, p)| p.clone())
            .expect("account")
    }

    /// MQTT options for client `id` logging in as `user` (None: anonymously), over TLS or
    /// plaintext, with a clean or persistent session.
    pub fn options(&self, id: &str, user: Option<&str>, tls: bool, clean: bool) -> MqttOptions {
        let mut options = MqttOptions::new(id, "127.0.0.1", self.port);
        options.set_clean_session(clean);
        if tls {
            options.set_transport(Transport::tls(self.ca.clone(), None, None));
        }
        if let Some(user) = user {
            options.set_credentials(user, self.password(user));
        }
        options
    }

    /// A client as [`ShippedMosquitto::options`] describes.
    pub fn client(
        &self,
        id: &str,
        user: Option<&str>,
        tls: bool,
        clean: bool,
    ) -> (AsyncClient, EventLoop) {
        AsyncClient::new(self.options(id, user, tls, clean), 64)
    }
}
