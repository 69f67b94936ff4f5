//! The MQTT link as both deployables run it (feature `mqtt`): TLS from a broker section's
//! files, and an event pump that never cancels a poll.

use std::time::Duration;

use rumqttc::{ConnectionError, Event, EventLoop, MqttOptions, Transport};
use tokio::sync::mpsc::Receiver;
use tokio::task::JoinHandle;

use crate::config_file::TlsFiles;

/// Switches `options` to TLS with `tls`'s CA and optional client certificate.
pub fn use_tls(options: &mut MqttOptions, tls: &TlsFiles) {
    options.set_transport(Transport::tls(tls.ca.clone(), tls.client.clone(), None));
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
