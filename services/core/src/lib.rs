//! netgpt-core: what every stage shares — the record types of the topic
//! contract, the Avro codec with Confluent framing, configuration, the Kafka
//! bus with its at-least-once stage loop, metrics, and the local broker.

pub mod avro;
pub mod broker;
pub mod bus;
pub mod config;
pub mod metrics;
pub mod records;
pub mod samples;
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
