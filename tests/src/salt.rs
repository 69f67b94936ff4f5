//! The salt seen from outside, as an attacker with broker access would see it: a watcher
//! that collects every salt announced on the broker, and the scan that shows none of them
//! reached a file, a log or a database row (privacy invariant: the salt never touches a disk).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

const SALT_TOPIC: &str = "crowdflow/v1/salt";

/// An epoch id and the salt bytes announced for it.
type EpochSalt = (String, Vec<u8>);

/// Collects the salt bytes of every announcement on a broker, across broker restarts, until
/// dropped.
pub struct SaltWatch {
    /// (epoch, salt) of every distinct salt announced.
    salts: Arc<Mutex<Vec<EpochSalt>>>,
    task: tokio::task::JoinHandle<()>,
}

impl SaltWatch {
    /// Starts watching the broker on `port`, as `credentials` where it wants them.
    pub fn start(port: u16, credentials: Option<(&str, &str)>) -> SaltWatch {
        let mut options = MqttOptions::new("salt-watch", "127.0.0.1", port);
        if let Some((user, password)) = credentials {
            options.set_credentials(user, password);
        }
        let (client, mut events) = AsyncClient::new(options, 16);
        let salts = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&salts);
        let task = tokio::spawn(async move {
            loop {
                match events.poll().await {
                    // A clean session after every (re)connection: subscribe again.
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = client.try_subscribe(SALT_TOPIC, QoS::AtMostOnce);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let mut seen = seen.lock().expect("salt list");
                        for entry in salts_of(&p.payload) {
                            if !seen.contains(&entry) {
                                seen.push(entry);
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        SaltWatch { salts, task }
    }

    /// The distinct salts announced so far.
    pub fn salts(&self) -> Vec<Vec<u8>> {
        let seen = self.salts.lock().expect("salt list");
        let mut salts: Vec<Vec<u8>> = Vec::new();
        for (_, salt) in seen.iter() {
            if !salts.contains(salt) {
                salts.push(salt.clone());
            }
        }
        salts
    }

    /// How many distinct salts each epoch had (epoch ids are dates, not secrets).
    pub fn salts_per_epoch(&self) -> std::collections::BTreeMap<String, usize> {
        let mut per_epoch = std::collections::BTreeMap::new();
        for (epoch, _) in self.salts.lock().expect("salt list").iter() {
            *per_epoch.entry(epoch.clone()).or_insert(0) += 1;
        }
        per_epoch
    }

    /// Waits up to `timeout` for the first announcement; `None` if none came.
    pub async fn first(&self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(salt) = self.salts().into_iter().next() {
                return Some(salt);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Shows how many salts were seen, never their bytes.
impl std::fmt::Debug for SaltWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaltWatch")
            .field("salts", &self.salts().len())
            .finish()
    }
}

impl Drop for SaltWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The epoch and salt bytes of an announcement's entries (base64 in its JSON, which a signed
/// announcement carries base64-encoded in `signed`: read, not verified, as an eavesdropper would).
fn salts_of(payload: &[u8]) -> Vec<EpochSalt> {
    let Ok(mut doc) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return Vec::new();
    };
    if let Some(body) = doc["signed"]
        .as_str()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
    {
        let Ok(inner) = serde_json::from_slice::<serde_json::Value>(&body) else {
            return Vec::new();
        };
        doc = inner;
    }
    let entries = doc["salts"].as_array().cloned().unwrap_or_default();
    entries
        .iter()
        .filter_map(|e| {
            let salt = base64::engine::general_purpose::STANDARD
                .decode(e["salt"].as_str()?)
                .ok()?;
            Some((e["epoch"].as_str().unwrap_or_default().to_owned(), salt))
        })
        .collect()
}

/// Every way a salt could be written out: raw, hex in either case, base64 (standard and
/// URL-safe, padded or not).
pub fn notations(salt: &[u8]) -> Vec<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let hex: String = salt.iter().map(|b| format!("{b:02x}")).collect();
    vec![
        salt.to_vec(),
        hex.clone().into_bytes(),
        hex.to_uppercase().into_bytes(),
        // The unpadded forms are prefixes of the padded ones: they catch both.
        STANDARD_NO_PAD.encode(salt).into_bytes(),
        URL_SAFE_NO_PAD.encode(salt).into_bytes(),
    ]
}

/// Panics if any of `salts` appears in `haystack` in any notation.
pub fn assert_absent(haystack: &[u8], salts: &[Vec<u8>], what: &str) {
    for salt in salts {
        for form in notations(salt) {
            assert!(
                !haystack.windows(form.len()).any(|w| w == form.as_slice()),
                "{what} contains the salt"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scan_finds_a_salt_in_every_notation() {
        let salt: Vec<u8> = (0..32).map(|i| i * 7 + 3).collect();
        for form in notations(&salt) {
            let mut leak = b"{\"k\":\"".to_vec();
            leak.extend_from_slice(&form);
            leak.extend_from_slice(b"\"}");
            let caught =
                std::panic::catch_unwind(|| assert_absent(&leak, std::slice::from_ref(&salt), "x"));
            assert!(
                caught.is_err(),
                "{} not caught",
                String::from_utf8_lossy(&form)
            );
        }
        let padded = base64::engine::general_purpose::STANDARD.encode(&salt);
        assert!(
            std::panic::catch_unwind(|| assert_absent(
                padded.as_bytes(),
                std::slice::from_ref(&salt),
                "x"
            ))
            .is_err()
        );
        let other: Vec<u8> = salt.iter().map(|b| b ^ 1).collect();
        assert_absent(&other, &[salt], "x");
    }

    #[test]
    fn an_announcement_yields_its_salts() {
        let a = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
        let b = base64::engine::general_purpose::STANDARD.encode([2u8; 32]);
        let payload = format!(
            r#"{{"v":1,"salts":[{{"epoch":"2026-04-27","salt":"{a}"}},{{"epoch":"2026-04-28","salt":"{b}"}}]}}"#
        );
        assert_eq!(
            salts_of(payload.as_bytes()),
            vec![
                ("2026-04-27".to_owned(), vec![1u8; 32]),
                ("2026-04-28".to_owned(), vec![2u8; 32])
            ]
        );
        assert!(salts_of(b"not json").is_empty());
    }
}
