//! The HTTP server: hyper's HTTP/1.1 connections on a tokio listener, bounded so that no
//! client, and no crowd of them, can hold the process ([`HttpLimits`], `[http]` in the
//! config).
//!
//! - A connection must send each request head within `header_read_timeout`, counted from
//!   when it starts waiting for one (hyper's own timer): a client trickling its head
//!   (slowloris) or sending nothing is closed.
//! - A connection that has had an answer and then moves no byte for `idle_timeout` is shut
//!   down gracefully (an answer in progress, such as a slow query, finishes first).
//! - At most `max_connections` are open; a connection beyond them is answered a canned 503,
//!   if its socket takes it at once, and closed: never queued. Each connection is a file
//!   descriptor, and the process shares its open-file limit with the embedded broker and
//!   storage, so [`check_open_file_limit`] refuses to start when the limit would let HTTP
//!   take the broker's share of it (the soft limit is raised to the hard one first).
//!
//! `axum::serve` offers none of these bounds, so this small accept loop replaces it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::config::HttpLimits;
use crate::metrics::Metrics;
use crowdflow_contract::log_limit::LogLimit;

/// What a connection beyond `http.max_connections` is told before it is closed.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\nretry-after: 5\r\nconnection: close\r\ncontent-length: 76\r\n\r\n\
{\"error\":\"too many open connections (http.max_connections); retry shortly\"}\n";

/// The most a connection may buffer while reading a request head (hyper's default is about
/// 400 KiB): this API's heads are a few hundred bytes (GET, a query string, a bearer token),
/// and 256 connections at 64 KiB bound the heads' memory to about 16 MiB. A larger head is
/// answered 431 by hyper (which checks between reads, so a head a little over may pass).
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The pause after an accept error that is not about one connection (out of file
/// descriptors, most likely): retrying at once would spin; axum::serve waits as long.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Why the server may not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "http.max_connections = {http} and broker.max_connections = {broker}, with {RESERVED_FILES} \
     kept for storage and logs, need more than the process's open-file limit ({limit}): HTTP \
     and the broker would take each other's file descriptors; lower them or raise the limit \
     (systemd: LimitNOFILE=)"
)]
pub struct OpenFileLimit {
    /// The HTTP connection limit.
    pub http: usize,
    /// The embedded broker's connection limit (0 with an external broker).
    pub broker: usize,
    /// The process's open-file limit.
    pub limit: u64,
}

/// Descriptors kept for everything but connections: storage, logs, the runtime.
const RESERVED_FILES: u64 = 64;

/// Raises the open-file soft limit to the hard limit (as Go's runtime does), then refuses
/// connection limits that would not fit in it together. Nothing is checked where the limit
/// cannot be read.
pub fn check_open_file_limit(http: usize, broker: usize) -> Result<(), OpenFileLimit> {
    match raise_open_file_limit() {
        Some(limit) => fits(http, broker, limit),
        None => {
            tracing::debug!("open-file limit unknown: connection limits not checked");
            Ok(())
        }
    }
}

fn fits(http: usize, broker: usize, limit: u64) -> Result<(), OpenFileLimit> {
    if http as u64 + broker as u64 + RESERVED_FILES <= limit {
        Ok(())
    } else {
        Err(OpenFileLimit {
            http,
            broker,
            limit,
        })
    }
}

/// The soft limit after raising it to the hard one; `None` when unlimited or unknown.
fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        if setrlimit(Resource::Nofile, limit).is_err() {
            tracing::debug!("the open-file soft limit could not be raised");
        }
    }
    getrlimit(Resource::Nofile).current
}

/// Serves `app` on `listener` within `limits` until the runtime stops.
pub async fn run(listener: TcpListener, app: Router, limits: HttpLimits, metrics: Metrics) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let per_address = PerAddress::default();
    let log = LogLimit::per_minute("refused HTTP connections");
    let mut flush = tokio::time::interval(crowdflow_contract::log_limit::WINDOW);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = flush.tick() => {
                log.flush(std::time::Instant::now());
                continue;
            }
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                if !is_connection_error(&e) {
                    if log.allow("accept_error", std::time::Instant::now()) {
                        tracing::error!("cannot accept HTTP connections: {e}");
                    }
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
                continue;
            }
        };
        let Some(address) = per_address.take(peer.ip(), limits.max_connections_per_address) else {
            metrics.http_connections_refused.inc();
            if log.allow("address_limit", std::time::Instant::now()) {
                tracing::warn!(
                    peer = %peer.ip(),
                    max = limits.max_connections_per_address,
                    "HTTP connection limit of one address reached (http.max_connections_per_address): closing its new connections"
                );
            }
            let _ = stream.try_write(BUSY);
            continue;
        };
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                let open = Open::new(slot, address, &metrics);
                tokio::spawn(connection(stream, peer, app.clone(), limits, open));
            }
            Err(_) => {
                metrics.http_connections_refused.inc();
                if log.allow("connection_limit", std::time::Instant::now()) {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "HTTP connection limit reached (http.max_connections): closing new connections"
                    );
                }
                // Best effort and never waiting: the socket takes the answer at once or not.
                let _ = stream.try_write(BUSY);
            }
        }
    }
}

/// Errors about one connection that went away before it was accepted; anything else is the
/// listener's (or the process's) trouble.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// Open connections per client address, so that one client cannot hold every slot.
#[derive(Debug, Default, Clone)]
struct PerAddress(Arc<Mutex<HashMap<IpAddr, usize>>>);

impl PerAddress {
    /// A slot for one more connection from `ip`, unless it holds `max` already.
    fn take(&self, ip: IpAddr, max: usize) -> Option<AddressSlot> {
        let mut open = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let n = open.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            table: self.clone(),
            ip,
        })
    }
}

/// One connection counted against its address; uncounted when dropped.
#[derive(Debug)]
struct AddressSlot {
    table: PerAddress,
    ip: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.table.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// An open connection's slot under `max_connections` and under its address's limit,
/// counted in the gauge while it lives.
struct Open {
    _slot: OwnedSemaphorePermit,
    _address: AddressSlot,
    gauge: prometheus::IntGauge,
}

impl Open {
    fn new(slot: OwnedSemaphorePermit, address: AddressSlot, metrics: &Metrics) -> Open {
        metrics.http_connections.inc();
        Open {
            _slot: slot,
            _address: address,
            gauge: metrics.http_connections.clone(),
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Serves one connection; its slot is freed when this returns.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: HttpLimits,
    _open: Open,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(request)
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        // Before the first answer there is no idle deadline yet: look again a timeout later.
        let wake = activity
            .idle_until(limits.idle_timeout)
            .unwrap_or_else(|| Instant::now() + limits.idle_timeout);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    // Timeouts, resets and malformed requests: the client's business.
                    tracing::debug!(%peer, "HTTP connection ended: {e}");
                }
                return;
            }
            () = tokio::time::sleep_until(wake), if !closing => {
                if activity.idle_until(limits.idle_timeout).is_some_and(|t| t <= Instant::now()) {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

/// When bytes last moved on a connection, and whether it has had an answer.
#[derive(Debug)]
struct Activity {
    start: Instant,
    /// Milliseconds since `start` of the last byte read or written.
    last_ms: AtomicU64,
    /// Bytes were written: an answer began, so the idle timeout applies from now on (until
    /// then the header read timeout does).
    answered: AtomicBool,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            answered: AtomicBool::new(false),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// When the connection counts as idle for `timeout`; `None` before its first answer.
    fn idle_until(&self, timeout: Duration) -> Option<Instant> {
        self.answered.load(Ordering::Relaxed).then(|| {
            self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + timeout
        })
    }
}

/// A socket that records in [`Activity`] when bytes move.
struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> Watched<T> {
    fn wrote(&self, polled: &Poll<std::io::Result<usize>>) {
        if matches!(polled, Poll::Ready(Ok(n)) if *n > 0) {
            self.activity.touch();
            self.activity.answered.store(true, Ordering::Relaxed);
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

    /// A server answering `hello` at `/` within `limits`, on a free port.
    async fn start(limits: HttpLimits, metrics: &Metrics) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = Router::new().route("/", get(|| async { "hello" }));
        tokio::spawn(run(listener, app, limits, metrics.clone()));
        addr
    }

    fn limits(header_read_ms: u64, idle_ms: u64, max_connections: usize) -> HttpLimits {
        HttpLimits {
            header_read_timeout: Duration::from_millis(header_read_ms),
            idle_timeout: Duration::from_millis(idle_ms),
            max_connections,
            max_streams: 1,
            max_connections_per_address: max_connections,
        }
    }

    /// Reads until the server closes the connection (end of stream or reset) or `within`
    /// passes: what arrived, and whether it closed.
    async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, bool) {
        let mut got = Vec::new();
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 1024];
        loop {
            match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
                Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
                Ok(Ok(0) | Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), true),
                Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// Sends a whole request and reads its answer, leaving the connection open.
    async fn ask(stream: &mut TcpStream) -> String {
        stream.write_all(REQUEST).await.expect("write");
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&got).contains("hello") {
            match tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    }

    #[tokio::test]
    async fn a_connection_that_sends_half_a_header_is_closed_after_the_timeout() {
        let metrics = Metrics::default();
        let addr = start(limits(1000, 1000, 8), &metrics).await;
        let mut whole = TcpStream::connect(addr).await.expect("connect");
        assert!(ask(&mut whole).await.contains("200 OK"));

        let mut half = TcpStream::connect(addr).await.expect("connect");
        half.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .await
            .expect("write");
        let mut silent = TcpStream::connect(addr).await.expect("connect");
        let started = Instant::now();
        // Generous: the timeout is 1 s; a loaded machine may take a while to close.
        let (got, closed) = read_until_closed(&mut half, Duration::from_secs(30)).await;
        assert!(closed, "still open after 30 s");
        assert!(!got.contains("hello"), "{got}");
        // Timers never fire early; half a second allows for the head start the server's
        // timer had before this test started counting.
        assert!(
            started.elapsed() >= Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
        let (got, closed) = read_until_closed(&mut silent, Duration::from_secs(30)).await;
        assert!(closed && !got.contains("hello"), "{got}");
    }

    #[tokio::test]
    async fn a_request_head_over_the_buffer_bound_is_refused() {
        let metrics = Metrics::default();
        let addr = start(limits(10_000, 5_000, 8), &metrics).await;
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        // Twice the bound: hyper checks it between reads, so just over it may pass.
        let head = format!(
            "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {}\r\n\r\n",
            "a".repeat(2 * MAX_HEAD_BYTES)
        );
        // The server may stop reading before all of it is sent.
        let _ = stream.write_all(head.as_bytes()).await;
        let (got, closed) = read_until_closed(&mut stream, Duration::from_secs(30)).await;
        assert!(closed, "still open");
        assert!(got.is_empty() || got.starts_with("HTTP/1.1 431"), "{got}");
    }

    #[tokio::test]
    async fn a_kept_alive_connection_is_closed_when_idle() {
        let metrics = Metrics::default();
        // The idle timeout (200 ms) closes it long before the header read timeout (60 s).
        let addr = start(limits(60_000, 200, 8), &metrics).await;
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        assert!(ask(&mut stream).await.contains("hello"));
        let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(30)).await;
        assert!(closed, "an idle connection stays open");
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_are_closed_and_a_freed_slot_serves_again() {
        let metrics = Metrics::default();
        let addr = start(limits(60_000, 60_000, 2), &metrics).await;
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            assert!(ask(&mut stream).await.contains("hello"));
            held.push(stream);
        }
        assert_eq!(metrics.http_connections.get(), 2);
        // The third is not served, and not kept waiting either: closed at once (generous).
        let mut third = TcpStream::connect(addr).await.expect("connect");
        let _ = third.write_all(REQUEST).await;
        let (got, closed) = read_until_closed(&mut third, Duration::from_secs(20)).await;
        assert!(closed, "a connection beyond the limit is kept open");
        assert!(!got.contains("hello"), "{got}");
        assert!(got.is_empty() || got.starts_with("HTTP/1.1 503"), "{got}");
        assert!(metrics.http_connections_refused.get() >= 1);

        // Closing one frees its slot as soon as the server notices; then requests answer.
        drop(held.pop());
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut answered = false;
        while !answered && Instant::now() < deadline {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            answered = ask(&mut stream).await.contains("hello");
            if !answered {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        assert!(answered, "no answer after a slot was freed");
    }

    #[test]
    fn the_canned_busy_answer_is_well_formed() {
        let text = std::str::from_utf8(BUSY).expect("utf-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let json: serde_json::Value = serde_json::from_str(body).expect("json");
        assert!(
            json["error"]
                .as_str()
                .is_some_and(|e| e.contains("http.max_connections"))
        );
    }

    #[test]
    fn one_address_holds_at_most_its_share_and_gets_slots_back() {
        let table = PerAddress::default();
        let one: IpAddr = [10, 0, 0, 1].into();
        let other: IpAddr = [10, 0, 0, 2].into();
        let held: Vec<AddressSlot> = (0..3).filter_map(|_| table.take(one, 3)).collect();
        assert_eq!(held.len(), 3);
        assert!(
            table.take(one, 3).is_none(),
            "a fourth from the same address"
        );
        assert!(
            table.take(other, 3).is_some(),
            "another address is not held up"
        );
        drop(held);
        assert!(
            table.take(one, 3).is_some(),
            "freed when the connections close"
        );
        assert!(
            table.0.lock().expect("lock").get(&other).is_none(),
            "an address with no connection is forgotten"
        );
    }

    #[test]
    fn http_and_broker_connections_must_fit_in_the_open_files_together() {
        assert_eq!(fits(256, 2000, 65_536), Ok(()));
        assert_eq!(fits(256, 704, 1024), Ok(()));
        let err = fits(256, 705, 1024).expect_err("too many");
        assert!(
            err.to_string().contains("LimitNOFILE")
                && err.to_string().contains("broker.max_connections"),
            "{err}"
        );
        assert!(
            raise_open_file_limit().is_none_or(|l| l >= 64),
            "the limit reads back"
        );
    }
}
