//! `netgpt tail TOPIC`: decoded records as JSON lines.

use std::time::Duration;

use clap::Args;
use netgpt_core::{AnyRecord, Config};
use rdkafka::Message;
use rdkafka::consumer::Consumer;

#[derive(Args)]
pub struct TailArgs {
    /// Topic to read (e.g. netgpt.tool-requests).
    pub topic: String,
    /// Stop after this many records.
    #[arg(long)]
    pub max: Option<u64>,
    /// Stop when no record arrived for this many seconds (default: follow forever).
    #[arg(long)]
    pub idle_secs: Option<u64>,
    /// Start at the end of the topic instead of the beginning.
    #[arg(long)]
    pub latest: bool,
}

pub async fn run(config: &Config, args: TailArgs) -> anyhow::Result<()> {
    // Read-only: a reader never commits. From the beginning unless --latest.
    // A group of its own, so concurrent tails never split the partitions.
    let consumer = netgpt_core::bus::reader(&config.kafka, &format!("{}.tail.{}", config.kafka.group_prefix, uuid::Uuid::new_v4()))?;
    if args.latest {
        consumer.subscribe(&[&args.topic])?; // no committed offset: starts at the end (auto.offset.reset=latest)
    } else {
        netgpt_core::bus::assign_from_beginning(&consumer, &args.topic, Duration::from_secs(10))?;
    }
    let mut n = 0u64;
    loop {
        if args.max.is_some_and(|m| n >= m) {
            break;
        }
        let next = match args.idle_secs {
            Some(s) => match tokio::time::timeout(Duration::from_secs(s), consumer.recv()).await {
                Ok(m) => m,
                Err(_) => break,
            },
            None => consumer.recv().await,
        };
        let msg = next?;
        let line = match AnyRecord::from_bytes(msg.payload().unwrap_or_default()) {
            Ok(rec) => serde_json::to_string(&rec)?,
            Err(e) => serde_json::json!({
                "undecodable": e.to_string(),
                "partition": msg.partition(),
                "offset": msg.offset(),
            })
            .to_string(),
        };
        println!("{line}");
        n += 1;
    }
    netgpt_core::bus::close_reader(consumer, Duration::from_millis(config.kafka.close_timeout_ms)).await;
    Ok(())
}
