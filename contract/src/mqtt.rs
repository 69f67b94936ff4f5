//! The MQTT link as both deployables run it (feature `mqtt`): TLS from a broker section's
//! files, and an event pump that never cancels a poll.

use std::time::Duration;

use rumqttc::{ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Transport};
use tokio::sync::mpsc::Receiver;
use tokio::task::JoinHandle;

use crate::config_file::TlsFiles;

/// Switches `options` to TLS with `tls`'s CA and optional client certificate.
pub fn use_tls(options: &mut MqttOptions, tls: &TlsFiles) {
    options.set_transport(Transport::tls(tls.ca.clone(), tls.client.clone(), None));
}

/// The client id a session lives under: `name`, then 64 bits keyed by a secret of the
/// client's (`name-0123456789abcdef`): an agent's broker password; the aggregator's salt
/// signing key, so that its id, and the queue the broker keeps under it, survive a change of
/// its broker password.
///
/// MQTT hands a session to whoever connects with its id, and Mosquitto's ACL cannot bind an
/// id to an account: any sensor's account could take over the aggregator's persistent
/// session (pushing it off and dropping the sketches queued for it) or push another sensor
/// off the broker. Nobody without the secret can compute this id, and brokers never show
/// client ids to other clients (Mosquitto's own log does: keep it to the operators). Stable
/// across restarts, so a broker's queue survives them. Without a secret (a broker that lets
/// anyone do anything) `name` is used as it is. The embedded broker binds ids to accounts
/// itself and accepts both forms.
pub fn session_client_id(name: &str, secret: Option<&[u8]>) -> String {
    let Some(secret) = secret else {
        return name.to_owned();
    };
    let key = blake3::derive_key("crowdflow 2026-12 MQTT session client id", secret);
    let mac = blake3::keyed_hash(&key, name.as_bytes());
    let suffix: String = mac.as_bytes()[..SESSION_SUFFIX_BYTES]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{name}-{suffix}")
}

/// Bytes of the key-derived suffix of [`session_client_id`] (hex digits: twice as many).
pub const SESSION_SUFFIX_BYTES: usize = 8;

/// `client_id` without the suffix [`session_client_id`] adds, if it has one.
pub fn session_name(client_id: &str) -> &str {
    match client_id.rsplit_once('-') {
        Some((name, suffix))
            if suffix.len() == 2 * SESSION_SUFFIX_BYTES
                && suffix
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            name
        }
        _ => client_id,
    }
}

/// A CONNACK return code in MQTT 3.1.1's words (section 3.2.2.3), for logs and checks.
pub fn connack_text(code: ConnectReturnCode) -> &'static str {
    match code {
        ConnectReturnCode::Success => "connection accepted",
        ConnectReturnCode::RefusedProtocolVersion => "unacceptable protocol version",
        ConnectReturnCode::BadClientId => "identifier rejected",
        ConnectReturnCode::ServiceUnavailable => "server unavailable",
        ConnectReturnCode::BadUserNamePassword => "bad user name or password",
        ConnectReturnCode::NotAuthorized => "not authorized",
    }
}

/// A connection failure in words: a refused CONNACK by its code's name, else the error.
pub fn connection_error_text(e: &ConnectionError) -> String {
    match e {
        ConnectionError::ConnectionRefused(code) => {
            format!("the broker refused the connection: {}", connack_text(*code))
        }
        e => e.to_string(),
    }
}

/// One event of the broker connection.
pub type BrokerEvent = Result<Event, ConnectionError>;

/// Polls `events` in a task of its own and hands each event over the returned channel.
///
/// A poll cancelled mid-connect (as in a `select!` beside a timer) restarts the connection,
/// and a TLS handshake, on a Raspberry Pi above all, can outlast the timer's period: the
/// connection would never come up. After an error the pump waits a second before it
/// reconnects. Abort the task once the receiver is done.
pub fn pump(mut events: EventLoop) -> (Receiver<BrokerEvent>, JoinHandle<()>) {
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let task = tokio::spawn(async move {
        loop {
            let event = events.poll().await;
            let failed = event.is_err();
            if tx.send(event).await.is_err() {
                break;
            }
            if failed {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });
    (rx, task)
}

/// Receives events until the outgoing DISCONNECT has been written and the broker has closed
/// the connection (or the link fails), so a clean shutdown flushes what was queued before it.
/// Waiting for the close also reads the broker's last acknowledgements: a socket closed with
/// bytes unread is reset, and the broker logs the reset as an error.
pub async fn flush_until_disconnect(events: &mut Receiver<BrokerEvent>) {
    while let Some(Ok(event)) = events.recv().await {
        if matches!(event, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
            break;
        }
    }
    while let Some(Ok(_)) = events.recv().await {}
}

#[cfg(test)]
mod tests {
    use super::{session_client_id, session_name};

    #[test]
    fn a_session_id_is_keyed_by_the_password_and_stable() {
        let id = session_client_id("crowdflow-aggregator-1", Some(b"pw-1"));
        assert_eq!(
            id,
            session_client_id("crowdflow-aggregator-1", Some(b"pw-1"))
        );
        assert!(id.starts_with("crowdflow-aggregator-1-"), "{id}");
        assert_eq!(id.len(), "crowdflow-aggregator-1-".len() + 16);
        assert_ne!(
            id,
            session_client_id("crowdflow-aggregator-1", Some(b"pw-2"))
        );
        assert_ne!(
            id,
            session_client_id("crowdflow-aggregator-2", Some(b"pw-1"))
        );
        assert_eq!(
            session_client_id("crowdflow-agent-s1", None),
            "crowdflow-agent-s1"
        );
        assert_eq!(session_name(&id), "crowdflow-aggregator-1");
        assert_eq!(
            session_name("crowdflow-agent-gate-1"),
            "crowdflow-agent-gate-1"
        );
        assert_eq!(
            session_name("crowdflow-agent-gate-0123456789ABCDEF"),
            "crowdflow-agent-gate-0123456789ABCDEF"
        );
    }
}
