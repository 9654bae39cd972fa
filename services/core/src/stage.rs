//! The at-least-once stage loop shared by every consuming stage.
//!
//! For each input record: decode it, hand it to the stage, queue the stage's
//! outputs on the idempotent producer, and store the input offset only when
//! every output has been acknowledged by the broker. Records that cannot be
//! decoded, or that the stage rejects, go to the dead-letter topic (with the
//! reason in the record and in headers) and count as processed once the dead
//! letter is acknowledged. Offsets are stored strictly in consumption order, so
//! a crash re-delivers every record whose outputs might be missing, and no
//! record whose outputs are durable is skipped. Downstream deduplicates by key.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use rdkafka::consumer::Consumer;
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::Message;
use tokio_util::sync::CancellationToken;

use crate::avro::{Bytes, DecodeError, TimestampMillis};
use crate::bus::{Delivery, Producer, close_consumer, group_consumer};
use crate::config::KafkaConfig;
use crate::metrics::{Metrics, StageLabels, TopicLabels};
use crate::records::{AnyRecord, DeadLetter, DeadLetterKind, Record};
use crate::topics::DEAD_LETTER;

/// An input record, decoded.
pub struct Incoming<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub record: AnyRecord,
}

/// A record a stage wants produced.
pub struct Outgoing {
    pub topic: String,
    pub record: AnyRecord,
}

impl Outgoing {
    pub fn new(topic: impl Into<String>, record: impl Into<AnyRecord>) -> Self {
        Self { topic: topic.into(), record: record.into() }
    }
}

/// Why a stage refused a well-formed record; it is dead-lettered with this reason.
#[derive(Debug, Clone)]
pub struct Rejection(pub String);

/// Work a stage hands back to the loop to run concurrently with later records.
pub type Work = BoxFuture<'static, Result<Vec<Outgoing>, Rejection>>;

/// One stage of the pipeline: pure logic between input and output records.
pub trait Stage: Send {
    /// Used for the consumer group, metrics and dead letters.
    fn name(&self) -> &str;
    fn input_topics(&self) -> Vec<String>;
    fn handle(&mut self, input: Incoming<'_>) -> impl Future<Output = Result<Vec<Outgoing>, Rejection>> + Send;

    /// For records whose processing waits on something remote (the cloud
    /// gateway's HTTP calls): return the work as a `'static` future and the
    /// loop runs up to `kafka.max_in_flight` of them at once, instead of one
    /// `handle` after another. Offsets are still stored in input order, only
    /// after each record's outputs are acknowledged. Default: `None`, `handle`
    /// processes the record.
    fn begin(&mut self, _input: &Incoming<'_>) -> Option<Work> {
        None
    }
}

/// How a stage run ended.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RunReport {
    pub records_in: u64,
    pub records_out: u64,
    pub dead_lettered: u64,
}

struct Pending {
    topic: String,
    partition: i32,
    offset: i64,
    started: Instant,
    outputs: Vec<(String, Delivery)>,
    dead_letter: bool,
}

/// Runs `stage` until `shutdown` is cancelled, then drains in-flight outputs,
/// commits and closes the consumer. A delivery failure stops the loop with an
/// error and without storing the offset of the failed input.
pub async fn run_stage<S: Stage>(
    mut stage: S,
    cfg: &KafkaConfig,
    group_id: &str,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> anyhow::Result<RunReport> {
    let name = stage.name().to_string();
    let producer = Producer::new(cfg)?;
    let consumer = group_consumer(cfg, group_id, &name, metrics.clone())?;
    let topics = stage.input_topics();
    consumer.subscribe(&topics.iter().map(String::as_str).collect::<Vec<_>>())?;
    tracing::info!(stage = %name, group = group_id, ?topics, "stage started");

    let stage_label = StageLabels { stage: name.clone() };
    let mut report = RunReport::default();
    let mut inflight: FuturesOrdered<futures::future::BoxFuture<'static, (Pending, Result<(), rdkafka::error::KafkaError>)>> =
        FuturesOrdered::new();
    let mut failure: Option<anyhow::Error> = None;

    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some((pending, result)) = inflight.next(), if !inflight.is_empty() => {
                if let Some(e) = settle(&name, &metrics, pending, result, &consumer, &mut report) {
                    failure = Some(e);
                    break;
                }
            }
            msg = consumer.recv(), if inflight.len() < cfg.max_in_flight => {
                let msg = match msg {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(stage = %stage_label.stage, error = %e, "consumer error");
                        continue;
                    }
                };
                report.records_in += 1;
                metrics.records_in.get_or_create(&TopicLabels { stage: stage_label.stage.clone(), topic: msg.topic().to_string() }).inc();
                let pending = process(&mut stage, &producer, &msg).await;
                inflight.push_back(async move {
                    let mut pending = match pending {
                        Processed::Done(p) => p,
                        Processed::Deferred(work) => work.await,
                    };
                    let mut result = Ok(());
                    for (_, d) in pending.outputs.iter_mut() {
                        if let Err(e) = d.await {
                            result = Err(e);
                            break;
                        }
                    }
                    (pending, result)
                }.boxed());
            }
        }
    }

    // Drain: everything read so far gets its outputs acknowledged (or fails).
    let drain_deadline = Duration::from_millis(cfg.delivery_timeout_ms + 1000);
    if failure.is_none() {
        let drained = tokio::time::timeout(drain_deadline, async {
            while let Some((pending, result)) = inflight.next().await {
                if let Some(e) = settle(&name, &metrics, pending, result, &consumer, &mut report) {
                    return Some(e);
                }
            }
            None
        })
        .await;
        failure = match drained {
            Ok(f) => f,
            Err(_) => Some(anyhow::anyhow!("stage {}: outputs still unacknowledged after {drain_deadline:?}", stage_label.stage)),
        };
    }
    drop(inflight);
    close_consumer(consumer, Duration::from_millis(cfg.close_timeout_ms)).await;
    tracing::info!(stage = %stage_label.stage, ?report, "stage stopped");
    match failure {
        Some(e) => {
            metrics.set_healthy(false);
            Err(e)
        }
        None => Ok(report),
    }
}

fn settle(
    name: &str,
    metrics: &Metrics,
    pending: Pending,
    result: Result<(), rdkafka::error::KafkaError>,
    consumer: &crate::bus::StageConsumer,
    report: &mut RunReport,
) -> Option<anyhow::Error> {
    if let Err(e) = result {
        return Some(anyhow::anyhow!(
            "stage {name}: output for {}[{}]@{} was not delivered ({e}); stopping without committing it",
            pending.topic,
            pending.partition,
            pending.offset
        ));
    }
    if let Err(e) = consumer.store_offset(&pending.topic, pending.partition, pending.offset) {
        // The partition was revoked meanwhile: its next owner re-reads the record (at-least-once).
        tracing::debug!(stage = name, error = %e, "offset not stored (partition revoked)");
    }
    for (topic, _) in &pending.outputs {
        metrics.records_out.get_or_create(&TopicLabels { stage: name.to_string(), topic: topic.clone() }).inc();
    }
    report.records_out += pending.outputs.len() as u64;
    if pending.dead_letter {
        report.dead_lettered += 1;
        metrics.dead_lettered.get_or_create(&StageLabels { stage: name.to_string() }).inc();
    }
    metrics.processing_seconds.get_or_create(&StageLabels { stage: name.to_string() }).observe(pending.started.elapsed().as_secs_f64());
    None
}

/// A record's processing: finished (outputs queued), or remote work still running.
enum Processed {
    Done(Pending),
    Deferred(BoxFuture<'static, Pending>),
}

async fn process<S: Stage>(stage: &mut S, producer: &Producer, msg: &BorrowedMessage<'_>) -> Processed {
    let started = Instant::now();
    let source = Source { topic: msg.topic().to_string(), partition: msg.partition(), offset: msg.offset(), started };
    let payload = msg.payload().unwrap_or_default();
    let verdict = match AnyRecord::from_bytes(payload) {
        Err(e) => Err(dead_letter_kind(&e)),
        Ok(record) => {
            let incoming = Incoming { topic: &source.topic, partition: source.partition, offset: source.offset, record };
            if let Some(work) = stage.begin(&incoming) {
                // The dead-letter path needs the raw record after the work is done.
                let (producer, name) = (producer.clone(), stage.name().to_string());
                let (key, payload) = (msg.key().map(<[u8]>::to_vec), payload.to_vec());
                return Processed::Deferred(
                    async move {
                        let verdict = work.await.map_err(|Rejection(reason)| (DeadLetterKind::Rejected, reason));
                        produce(&producer, &name, source, key.as_deref(), &payload, verdict).await
                    }
                    .boxed(),
                );
            }
            match stage.handle(incoming).await {
                Ok(outputs) => Ok(outputs),
                Err(Rejection(reason)) => Err((DeadLetterKind::Rejected, reason)),
            }
        }
    };
    Processed::Done(produce(producer, stage.name(), source, msg.key(), payload, verdict).await)
}

/// Where an input record came from.
struct Source {
    topic: String,
    partition: i32,
    offset: i64,
    started: Instant,
}

/// Queues a record's outputs, or its dead letter.
async fn produce(
    producer: &Producer,
    stage: &str,
    source: Source,
    key: Option<&[u8]>,
    payload: &[u8],
    verdict: Result<Vec<Outgoing>, (DeadLetterKind, String)>,
) -> Pending {
    let Source { topic, partition, offset, started } = source;
    match verdict {
        Ok(outputs) => {
            let mut deliveries = Vec::with_capacity(outputs.len());
            for o in outputs {
                let bytes = o.record.to_bytes();
                let key = o.record.key();
                let d = producer.send_bytes(&o.topic, key.as_bytes(), &bytes, None).await;
                deliveries.push((o.topic, d));
            }
            Pending { topic, partition, offset, started, outputs: deliveries, dead_letter: false }
        }
        Err((kind, reason)) => {
            tracing::warn!(stage, %topic, partition, offset, %kind, %reason, "dead-lettering record");
            let (dl, headers) = dead_letter(stage, &topic, partition, offset, key, payload, kind, reason);
            let d = producer.send_bytes(DEAD_LETTER, key.unwrap_or_default(), &dl.to_bytes(), Some(headers)).await;
            Pending { topic, partition, offset, started, outputs: vec![(DEAD_LETTER.to_string(), d)], dead_letter: true }
        }
    }
}

/// The dead letter for an input record, with the reason and source also in headers.
#[allow(clippy::too_many_arguments)] // one call per field of the record's origin
pub fn dead_letter(
    stage: &str,
    topic: &str,
    partition: i32,
    offset: i64,
    key: Option<&[u8]>,
    payload: &[u8],
    kind: DeadLetterKind,
    reason: String,
) -> (DeadLetter, OwnedHeaders) {
    let headers = OwnedHeaders::new()
        .insert(Header { key: "netgpt.source.topic", value: Some(topic.as_bytes()) })
        .insert(Header { key: "netgpt.source.partition", value: Some(partition.to_string().as_bytes()) })
        .insert(Header { key: "netgpt.source.offset", value: Some(offset.to_string().as_bytes()) })
        .insert(Header { key: "netgpt.error", value: Some(reason.as_bytes()) });
    let dl = DeadLetter {
        id: uuid::Uuid::new_v4(),
        stage: stage.to_string(),
        source_topic: topic.to_string(),
        source_partition: partition,
        source_offset: offset,
        source_key: key.map(|k| Bytes(k.to_vec())),
        payload: Bytes(payload.to_vec()),
        error_kind: kind,
        error: reason,
        failed_at: TimestampMillis::now(),
    };
    (dl, headers)
}

/// The dead-letter class and reason of a decoding failure.
pub fn dead_letter_kind(e: &DecodeError) -> (DeadLetterKind, String) {
    let kind = match e {
        DecodeError::UnknownSchema(_) => DeadLetterKind::UnknownSchema,
        DecodeError::UnexpectedRecord { .. } => DeadLetterKind::UnexpectedRecord,
        _ => DeadLetterKind::Undecodable,
    };
    (kind, e.to_string())
}
