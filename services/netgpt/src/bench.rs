//! `netgpt bench`: benchmarks that print figures. Speed goals are checked
//! here, never in timed tests.

use std::hint::black_box;
use std::time::{Duration, Instant};

use apache_avro::Schema;
use clap::Subcommand;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use netgpt_core::Config;
use netgpt_core::avro::SchemaRegistry;
use netgpt_core::broker::LocalBroker;
use netgpt_core::bus::Producer;
use netgpt_core::records::{Record, ToolRequest};
use netgpt_core::samples;
use netgpt_core::topics::TopicSpec;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Avro encode/decode of ToolRequest per core: netgpt's typed codec beside
    /// apache-avro's generic Value path.
    Codec {
        #[arg(long, default_value_t = 200_000)]
        records: usize,
    },
    /// Raw produce and consume throughput against the broker (the local one
    /// when no cluster is configured).
    Broker {
        #[arg(long, default_value_t = 1_000_000)]
        messages: usize,
        #[arg(long, default_value_t = 200)]
        size: usize,
        #[arg(long, default_value_t = 3)]
        partitions: i32,
    },
}

pub async fn run(config: &Config, which: BenchCommand) -> anyhow::Result<()> {
    match which {
        BenchCommand::Codec { records } => codec(records),
        BenchCommand::Broker { messages, size, partitions } => broker(config.clone(), messages, size, partitions).await,
    }
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn timed<F: FnMut()>(mut f: F) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn codec(n: usize) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(1);
    let recs: Vec<ToolRequest> = (0..n).map(|_| samples::tool_request(&mut rng)).collect();
    let registry = SchemaRegistry::embedded();
    let schema: &Schema = &registry.latest(ToolRequest::FULL_NAME).ok_or_else(|| anyhow::anyhow!("no ToolRequest schema"))?.schema;

    let mut ours: Vec<Vec<u8>> = Vec::with_capacity(n);
    let enc = timed(|| ours.extend(recs.iter().map(|r| r.to_bytes())));
    let dec = timed(|| {
        for b in &ours {
            black_box(ToolRequest::from_bytes(b).ok());
        }
    });

    let mut theirs: Vec<Vec<u8>> = Vec::with_capacity(n);
    let mut failures = 0usize;
    let generic_enc = timed(|| {
        for r in &recs {
            let v = apache_avro::to_value(r).and_then(|v| v.resolve(schema)).and_then(|v| apache_avro::to_avro_datum(schema, v));
            match v {
                Ok(b) => theirs.push(b),
                Err(_) => failures += 1,
            }
        }
    });
    let generic_dec = timed(|| {
        for b in &theirs {
            let v = apache_avro::from_avro_datum(schema, &mut &b[..], None);
            if v.is_err() {
                failures += 1;
            }
            black_box(v.ok());
        }
    });
    anyhow::ensure!(failures == 0, "apache-avro failed on {failures} records");
    // The same bytes either way (the contract tests check this per field).
    anyhow::ensure!(ours.iter().zip(&theirs).all(|(a, b)| &a[5..] == &b[..]), "codecs disagree");

    println!("ToolRequest codec, {n} records, one core (mean {} bytes/record)", ours.iter().map(Vec::len).sum::<usize>() / n.max(1));
    println!("{:<44} {:>14} {:>14}", "", "encode rec/s", "decode rec/s");
    println!("{:<44} {:>14.0} {:>14.0}", "netgpt typed codec (framed)", rate(n, enc), rate(n, dec));
    println!("{:<44} {:>14.0} {:>14.0}", "apache-avro generic Value (to_value/from_avro)", rate(n, generic_enc), rate(n, generic_dec));
    println!("{:<44} {:>14.1} {:>14.1}", "speed-up", generic_enc.as_secs_f64() / enc.as_secs_f64(), generic_dec.as_secs_f64() / dec.as_secs_f64());
    Ok(())
}

async fn broker(mut config: Config, messages: usize, size: usize, partitions: i32) -> anyhow::Result<()> {
    let local = if config.kafka.bootstrap_servers.trim().is_empty() {
        let b = LocalBroker::start(&config.broker).await?;
        config.kafka = b.kafka_config(config.kafka.clone());
        Some(b)
    } else {
        None
    };
    let topic = format!("netgpt.bench.{}", uuid::Uuid::new_v4().simple());
    let spec = TopicSpec { name: topic.clone(), record: "bytes".into(), partitions, retention_ms: 3_600_000, cleanup_policy: "delete".into() };
    netgpt_core::bus::create_topics(&config.kafka, &[spec]).await?;
    let payload = vec![b'x'; size];

    let producer = Producer::new(&config.kafka)?;
    let t = Instant::now();
    let mut acks = FuturesUnordered::new();
    let mut failed = 0usize;
    for i in 0..messages {
        acks.push(producer.send_bytes(&topic, (i as u64).to_le_bytes().as_slice(), &payload, None).await);
        // Keep the set of pending futures bounded; librdkafka keeps the pipeline full.
        while acks.len() > 50_000 {
            if let Some(Err(_)) = acks.next().await {
                failed += 1;
            }
        }
    }
    while let Some(r) = acks.next().await {
        if r.is_err() {
            failed += 1;
        }
    }
    let produce = t.elapsed();

    let consumer: StreamConsumer = config
        .kafka
        .client_config()?
        .set("group.id", format!("netgpt.bench.{}", uuid::Uuid::new_v4().simple()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[&topic])?;
    let t = Instant::now();
    let mut read = 0usize;
    let mut bytes = 0usize;
    while read < messages - failed {
        match tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await {
            Ok(Ok(m)) => {
                read += 1;
                bytes += m.payload().map_or(0, <[u8]>::len);
            }
            Ok(Err(e)) => anyhow::bail!("consume error: {e}"),
            Err(_) => anyhow::bail!("consume stalled after {read} of {messages} messages"),
        }
    }
    let consume = t.elapsed();
    netgpt_core::bus::close_consumer(consumer, Duration::from_secs(5)).await;
    if let Some(b) = local {
        b.stop().await;
    }
    println!("broker {} ({} partitions), {messages} messages x {size} B", config.kafka.bootstrap_servers, partitions);
    println!("produce (idempotent, acks=all): {:>10.0} msg/s  {:>7.1} MB/s  ({failed} failed)", rate(messages, produce), (messages * size) as f64 / produce.as_secs_f64() / 1e6);
    println!("consume:                        {:>10.0} msg/s  {:>7.1} MB/s", rate(read, consume), bytes as f64 / consume.as_secs_f64() / 1e6);
    Ok(())
}
