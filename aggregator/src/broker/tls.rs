//! TLS for the embedded broker (`mqtts`), terminated in front of it with rustls on `ring`.
//!
//! rmqtt's own `tls` feature selects rustls with aws-lc-rs (a C build the workspace avoids,
//! decision 16), so the broker listens on a loopback port of its own and this module accepts
//! TLS on `broker.listen`, handing each decrypted stream to it. Nothing MQTT happens here:
//! logins and the ACL stay the broker's.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// The broker's certificate chain and key, read from `broker.tls_cert_file` and
/// `broker.tls_key_file` (PEM).
#[derive(Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// Where the chain came from (for errors).
    pub cert_file: PathBuf,
    /// The certificate chain (PEM).
    pub cert_chain: Vec<u8>,
    /// The private key (PEM).
    pub key: Vec<u8>,
}

impl std::fmt::Debug for ServerTls {
    // Never print a private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert_file", &self.cert_file)
            .finish_non_exhaustive()
    }
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The files do not hold a usable chain and key.
    #[error("broker.tls_cert_file / broker.tls_key_file: {0}")]
    Material(String),
}

/// A TLS acceptor for `tls` (TLS 1.2 and 1.3, no client certificates: sensors log in with
/// their passwords, inside the encrypted stream).
pub fn acceptor(tls: &ServerTls) -> Result<TlsAcceptor, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&tls.cert_chain)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Material(format!("certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(TlsError::Material(format!(
            "no certificate in {}",
            tls.cert_file.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_slice(&tls.key)
        .map_err(|e| TlsError::Material(format!("private key: {e}")))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| TlsError::Material(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| TlsError::Material(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts TLS connections on `listener` and joins each, decrypted, to the broker at
/// `inner`; at most `max_connections` at once (beyond it a connection is closed at once), and
/// a handshake must finish within `handshake`.
pub async fn terminate(
    listener: TcpListener,
    inner: SocketAddr,
    acceptor: TlsAcceptor,
    max_connections: usize,
    handshake: Duration,
) {
    let slots = Arc::new(Semaphore::new(max_connections));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("embedded broker (TLS): accept failed: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(tcp); // over broker.max_connections
            continue;
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let Ok(Ok(mut tls)) = tokio::time::timeout(handshake, acceptor.accept(tcp)).await
            else {
                tracing::debug!(%peer, "embedded broker (TLS): handshake failed or timed out");
                return;
            };
            let Ok(mut broker) = TcpStream::connect(inner).await else {
                tracing::warn!("embedded broker (TLS): the broker behind it does not answer");
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut tls, &mut broker).await;
        });
    }
}
