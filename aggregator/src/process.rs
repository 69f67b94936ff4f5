//! What the processes that run the aggregator share: logging set-up and stop signals.

/// Logs go to stderr at the level named by CROWDFLOW_LOG (default info); no level logs a
/// salt or payload contents.
pub fn init_logging() {
    let level = std::env::var("CROWDFLOW_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing_subscriber::filter::LevelFilter>().ok())
        .unwrap_or(tracing_subscriber::filter::LevelFilter::INFO);
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // The embedded broker logs every connection at info; keep it to warnings.
    let filter = tracing_subscriber::filter::Targets::new()
        .with_default(level)
        .with_target(
            "rumqttd",
            level.min(tracing_subscriber::filter::LevelFilter::WARN),
        );
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    tracing_subscriber::registry()
        .with(fmt)
        .with(filter)
        .with(QuietBroker)
        .init();
}

/// Drops what rumqttd 0.20 logs as errors when a client simply goes away: an ordinary
/// disconnect (a DISCONNECT packet, then the socket closing) comes out as two errors, and a
/// client process that exits with bytes still unread resets its socket, and a connection
/// closed before its CONNECT packet (a monitoring system's TCP check of the port) is one more.
/// Each made every agent restart, demo stop or health check look like a failure; a sensor
/// that really vanished is reported by its stale alert. Other errors at the same call sites
/// (a malformed packet, a refused connection) still show. Call sites are matched by file and line in the pinned
/// version; after an upgrade they simply stop matching.
struct QuietBroker;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for QuietBroker {
    fn event_enabled(
        &self,
        event: &tracing::Event<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        !benign_broker_error(event)
    }
}

fn benign_broker_error(event: &tracing::Event<'_>) -> bool {
    let m = event.metadata();
    let at = |file: &str, lines: &[u32]| {
        m.file().is_some_and(|f| f.ends_with(file)) && m.line().is_some_and(|l| lines.contains(&l))
    };
    if !m.target().starts_with("rumqttd") {
        return false;
    }
    if at("src/router/routing.rs", &[416, 436, 539]) || at("src/server/broker.rs", &[581]) {
        return true;
    }
    let error = || {
        let mut error = ErrorField::default();
        event.record(&mut error);
        error.0
    };
    if at("src/server/broker.rs", &[512]) {
        return error().contains("connection closed by peer");
    }
    at("src/server/broker.rs", &[592]) && {
        let error = error();
        ["ConnectionReset", "BrokenPipe", "UnexpectedEof"]
            .iter()
            .any(|k| error.contains(k))
    }
}

/// The `error` field of an event, as its Debug text.
#[derive(Default)]
struct ErrorField(String);

impl tracing::field::Visit for ErrorField {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "error" {
            self.0 = format!("{value:?}");
        }
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}
