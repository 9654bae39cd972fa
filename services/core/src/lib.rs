//! netgpt-core: what every stage shares — the record types of the topic
//! contract, the Avro codec with Confluent framing, configuration, the Kafka
//! bus with its at-least-once stage loop, metrics, and the local broker.

pub mod avro;
pub mod broker;
pub mod bus;
pub mod config;
pub mod fetch;
pub mod hash;
pub mod json;
pub mod metrics;
pub mod progress;
pub mod records;
pub mod samples;
pub mod stats;
pub mod stage;
pub mod topics;

pub use config::Config;
pub use records::{AnyRecord, Record};

/// Installs the `tracing` subscriber: `RUST_LOG` if set, else `info`.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rdkafka=warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// A token cancelled on SIGINT (Ctrl-C) or SIGTERM (what `kill`, systemd and
/// Kubernetes send), so every long-running command shuts down cleanly: drain
/// in-flight outputs, commit, close consumers, stop what it started.
pub fn shutdown_on_signals() -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops cleanly");
                    let _ = tokio::signal::ctrl_c().await;
                    cancel.cancel();
                    return;
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
                _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        cancel.cancel();
    });
    token
}
