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
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    tracing_subscriber::registry().with(fmt).with(level).init();
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            let signal = tokio::select! {
                _ = ctrl_c => "SIGINT",
                _ = term.recv() => "SIGTERM",
            };
            tracing::info!(signal, "stopping: the current batch is committed first");
        }
        Err(_) => {
            let _ = ctrl_c.await;
            tracing::info!(
                signal = "SIGINT",
                "stopping: the current batch is committed first"
            );
        }
    }
}
