//! The archiver: a consumer group over the record topics that buffers records
//! per topic partition, writes each buffer as one Parquet object (a contiguous
//! offset range, in the Hive partition of its first record's hour), and only
//! then stores the offset. Files roll by record count, bytes, age and hour.
//!
//! Exactly once per record: objects are named by partition and offset range
//! and written atomically before any offset is committed; at start-up the
//! archiver lists what is archived and skips records at or below the highest
//! archived offset of their partition. So a crash re-reads records whose file
//! was not written (they are archived once, later) and skips records whose
//! file was written but whose offset was not committed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use chrono::{TimeZone, Utc};
use netgpt_core::AnyRecord;
use netgpt_core::bus::{Delivery, Producer, close_consumer, group_consumer};
use netgpt_core::config::KafkaConfig;
use netgpt_core::metrics::{Metrics, StageLabels, TopicLabels};
use netgpt_core::records::Record;
use netgpt_core::stage::{dead_letter, dead_letter_kind};
use netgpt_core::topics::DEAD_LETTER;
use object_store::ObjectStoreExt;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use rdkafka::Message;
use rdkafka::consumer::Consumer;
use rdkafka::message::BorrowedMessage;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::ArchiveConfig;
use crate::schema::{Origin, arrow_schema, batch, record_of_topic, row, table_name};
use crate::store::{Lake, ObjectName, cluster_tag};

pub const STAGE: &str = "archive";

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ArchiveReport {
    pub records_in: u64,
    pub records_written: u64,
    pub files_written: u64,
    /// Re-delivered records that were already in an archived object.
    pub already_archived: u64,
    pub dead_lettered: u64,
}

struct Table {
    name: String,
    /// Full name of the record type the topic carries.
    record: String,
    schema: SchemaRef,
}

/// Records of one topic partition waiting to be written.
struct Buffer {
    rows: Vec<(serde_json::Map<String, Value>, Origin)>,
    bytes: usize,
    opened: Instant,
    hour: i64,
    /// Dead letters of this partition's undecodable records, acknowledged before the offset moves.
    dead_letters: Vec<Delivery>,
    last_offset: i64,
}

pub struct Archiver {
    cfg: ArchiveConfig,
    lake: Arc<Lake>,
    tables: HashMap<String, Table>,
    archived: HashMap<(String, i32), i64>,
    buffers: HashMap<(String, i32), Buffer>,
    report: ArchiveReport,
    seen: Arc<std::sync::atomic::AtomicU64>,
    /// Partitions whose archived offset was listed since this process got them.
    listed: std::collections::HashSet<(String, i32)>,
    /// [`cluster_tag`] of the cluster consumed: its objects are the ones that
    /// say what is archived (read when `run` starts).
    cluster: String,
}

/// The hour (since the epoch) of a millisecond timestamp: files never span two.
pub fn hour_of(ms: i64) -> i64 {
    ms.div_euclid(3_600_000)
}

impl Archiver {
    /// Prepares the tables of `cfg.topics` (default: every declared topic).
    /// What is archived already is listed per table when its first record arrives.
    pub async fn new(cfg: ArchiveConfig, lake: Arc<Lake>) -> anyhow::Result<Self> {
        let topics = if cfg.topics.is_empty() { netgpt_core::topics::declared()?.into_iter().map(|t| t.name).collect() } else { cfg.topics.clone() };
        let mut tables = HashMap::new();
        for topic in topics {
            let record = record_of_topic(&topic)?;
            let table = Table { name: table_name(&topic), schema: arrow_schema(&record)?, record };
            tables.insert(topic, table);
        }
        Ok(Self { cfg, lake, tables, archived: HashMap::new(), buffers: HashMap::new(), report: ArchiveReport::default(), seen: Arc::default(), listed: Default::default(), cluster: String::new() })
    }

    /// The highest archived offsets of `key`'s table, read from the lake. One
    /// listing serves every partition of the table it names (they are fresh
    /// as of now); `key` counts as listed even when nothing of it is archived.
    async fn relist(&mut self, key: &(String, i32)) -> anyhow::Result<()> {
        let table = self.tables.get(&key.0).ok_or_else(|| anyhow::anyhow!("no table for {}", key.0))?;
        let found = self.lake.archived_offsets(&table.name, &self.cluster).await?;
        if !found.contains_key(&key.1) {
            self.archived.remove(key);
        }
        for (partition, last) in found {
            let k = (key.0.clone(), partition);
            self.archived.insert(k.clone(), last);
            self.listed.insert(k);
        }
        self.listed.insert(key.clone());
        Ok(())
    }

    /// Records read so far, readable while the archiver runs.
    pub fn records_seen(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.seen.clone()
    }

    pub fn topics(&self) -> Vec<String> {
        let mut t: Vec<String> = self.tables.keys().cloned().collect();
        t.sort();
        t
    }

    /// Consumes until `shutdown`, then writes what is buffered and commits.
    pub async fn run(mut self, kafka: &KafkaConfig, group: &str, metrics: Arc<Metrics>, shutdown: CancellationToken) -> anyhow::Result<ArchiveReport> {
        let producer = Producer::new(kafka)?;
        // Without the id, offsets could not be told from another cluster's:
        // better to stop here than to skip or overwrite records.
        let metadata = kafka.clone();
        let cluster_id = tokio::task::spawn_blocking(move || netgpt_core::bus::cluster_id(&metadata, Duration::from_secs(10)))
            .await??
            .ok_or_else(|| anyhow::anyhow!("the brokers at {} reported no cluster id within 10 s", kafka.bootstrap_servers))?;
        self.cluster = cluster_tag(&cluster_id);
        tracing::info!(cluster_id, tag = %self.cluster, "archiving for this cluster");
        let consumer = group_consumer(kafka, group, STAGE, metrics.clone())?;
        let topics = self.topics();
        consumer.subscribe(&topics.iter().map(String::as_str).collect::<Vec<_>>())?;
        tracing::info!(?topics, lake = %self.lake.base_url, "archiver started");
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut failure = None;
        loop {
            let result = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => self.flush_aged(&consumer).await,
                msg = consumer.recv() => match msg {
                    Ok(m) => self.take(&m, &producer, &consumer, &metrics).await,
                    Err(e) => {
                        tracing::warn!(error = %e, "archiver consumer error");
                        Ok(())
                    }
                },
            };
            if let Err(e) = result {
                failure = Some(e);
                break;
            }
        }
        if failure.is_none() {
            let keys: Vec<(String, i32)> = self.buffers.keys().cloned().collect();
            for k in keys {
                if let Err(e) = self.flush(&k, &consumer).await {
                    failure = Some(e);
                    break;
                }
            }
        }
        close_consumer(consumer, Duration::from_millis(kafka.close_timeout_ms)).await;
        tracing::info!(report = ?self.report, "archiver stopped");
        match failure {
            Some(e) => {
                metrics.set_healthy(false);
                Err(e)
            }
            None => Ok(self.report),
        }
    }

    async fn take(&mut self, m: &BorrowedMessage<'_>, producer: &Producer, consumer: &netgpt_core::bus::StageConsumer, metrics: &Metrics) -> anyhow::Result<()> {
        self.report.records_in += 1;
        self.seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let topic = m.topic().to_string();
        metrics.records_in.get_or_create(&TopicLabels { stage: STAGE.into(), topic: topic.clone() }).inc();
        let key = (topic.clone(), m.partition());
        // Offsets going backwards mean the partition was revoked and assigned
        // again (the group replays from the committed offset): what is buffered
        // will arrive again, so it goes, and what is archived is listed afresh
        // (another archiver may have written files meanwhile).
        if self.buffers.get(&key).is_some_and(|b| m.offset() <= b.last_offset) {
            self.buffers.remove(&key);
            self.listed.remove(&key);
        }
        if !self.listed.contains(&key) {
            self.relist(&key).await?;
        }
        if self.archived.get(&key).is_some_and(|&last| m.offset() <= last) {
            // Written before a crash, committed or not: durable already.
            self.report.already_archived += 1;
            if !self.buffers.contains_key(&key) {
                let _ = consumer.store_offset(&topic, m.partition(), m.offset());
            }
            return Ok(());
        }
        let payload = m.payload().unwrap_or_default();
        let timestamp_ms = m.timestamp().to_millis().unwrap_or_else(|| netgpt_core::avro::TimestampMillis::now().0);
        let origin = Origin { partition: m.partition(), offset: m.offset(), timestamp_ms };
        let expected = self.tables.get(&topic).map(|t| t.record.as_str());
        let decoded = AnyRecord::from_bytes(payload).map_err(|e| dead_letter_kind(&e)).and_then(|r| match expected {
            Some(want) if want == r.record_name() => Ok(r),
            _ => Err((netgpt_core::records::DeadLetterKind::UnexpectedRecord, format!("{} does not belong on {topic}", r.record_name()))),
        });
        // A new hour starts a new file (the Hive partition is the first record's hour).
        if self.buffers.get(&key).is_some_and(|b| !b.rows.is_empty() && b.hour != hour_of(timestamp_ms)) {
            self.flush(&key, consumer).await?;
        }
        let buffer = self.buffers.entry(key.clone()).or_insert_with(|| Buffer {
            rows: Vec::new(),
            bytes: 0,
            opened: Instant::now(),
            hour: hour_of(timestamp_ms),
            dead_letters: Vec::new(),
            last_offset: m.offset(),
        });
        buffer.last_offset = m.offset();
        match decoded {
            Ok(record) => {
                if buffer.rows.is_empty() {
                    buffer.hour = hour_of(timestamp_ms);
                }
                buffer.rows.push((row(&record)?, origin));
                buffer.bytes += payload.len();
            }
            Err((kind, reason)) => {
                tracing::warn!(%topic, partition = m.partition(), offset = m.offset(), %kind, %reason, "dead-lettering record");
                let (dl, headers) = dead_letter(STAGE, &topic, m.partition(), m.offset(), m.key(), payload, kind, reason);
                buffer.dead_letters.push(producer.send_bytes(DEAD_LETTER, m.key().unwrap_or_default(), &dl.to_bytes(), Some(headers)).await);
                self.report.dead_lettered += 1;
                metrics.dead_lettered.get_or_create(&StageLabels { stage: STAGE.into() }).inc();
            }
        }
        if buffer.rows.len() >= self.cfg.max_records_per_file || buffer.bytes >= self.cfg.max_bytes_per_file {
            self.flush(&key, consumer).await?;
        }
        Ok(())
    }

    async fn flush_aged(&mut self, consumer: &netgpt_core::bus::StageConsumer) -> anyhow::Result<()> {
        let max_age = Duration::from_millis(self.cfg.max_file_age_ms);
        let aged: Vec<(String, i32)> = self.buffers.iter().filter(|(_, b)| b.opened.elapsed() >= max_age).map(|(k, _)| k.clone()).collect();
        for k in aged {
            self.flush(&k, consumer).await?;
        }
        Ok(())
    }

    /// Writes one buffer as one object, then stores its last offset.
    async fn flush(&mut self, key: &(String, i32), consumer: &netgpt_core::bus::StageConsumer) -> anyhow::Result<()> {
        let Some(buffer) = self.buffers.remove(key) else { return Ok(()) };
        let (topic, partition) = key;
        // A partition revoked meanwhile is its new owner's to archive.
        let owned = consumer.assignment().map_err(|e| anyhow::anyhow!("reading the assignment: {e}"))?.find_partition(topic, *partition).is_some();
        if !owned {
            self.listed.remove(key);
            tracing::info!(%topic, partition, records = buffer.rows.len(), "partition no longer assigned; dropping its buffer");
            return Ok(());
        }
        // Dead letters first: once the object is written, a restart skips these offsets.
        for d in buffer.dead_letters {
            d.await.map_err(|e| anyhow::anyhow!("dead letter for {topic}[{partition}] not delivered: {e}"))?;
        }
        if let Some((_, last)) = buffer.rows.last() {
            let table = self.tables.get(topic).ok_or_else(|| anyhow::anyhow!("no table for {topic}"))?;
            let path = write_object(&self.lake, &table.name, &table.schema, &self.cluster, *partition, &buffer.rows).await?;
            self.archived.insert(key.clone(), last.offset);
            self.report.files_written += 1;
            self.report.records_written += buffer.rows.len() as u64;
            tracing::debug!(%path, records = buffer.rows.len(), "archived");
        }
        consumer.store_offset(topic, *partition, buffer.last_offset).map_err(|e| anyhow::anyhow!("storing the offset of {topic}[{partition}]: {e}"))?;
        Ok(())
    }
}

/// Writes rows of one Kafka partition (contiguous offsets, in order) as one
/// object of `table`, in the Hive partition of the first row's hour, named by
/// the cluster's tag, the partition and the offset range; returns its path.
pub async fn write_object(lake: &Lake, table: &str, schema: &SchemaRef, cluster: &str, partition: i32, rows: &[(serde_json::Map<String, Value>, Origin)]) -> anyhow::Result<object_store::path::Path> {
    let (Some((_, first)), Some((_, last))) = (rows.first(), rows.last()) else { anyhow::bail!("no rows to write to {table}") };
    let name = ObjectName { cluster: cluster.to_string(), partition, first_offset: first.offset, last_offset: last.offset };
    let at = Utc.timestamp_millis_opt(first.timestamp_ms).single().unwrap_or_else(Utc::now);
    let path = lake.object_path(table, &at.format("%Y-%m-%d").to_string(), at.format("%H").to_string().parse().unwrap_or(0), &name);
    let bytes = parquet_bytes(schema, rows)?;
    lake.store.put(&path, bytes.into()).await.map_err(|e| anyhow::anyhow!("writing {path}: {e}"))?;
    Ok(path)
}

/// One Parquet file (Snappy, one row group per 64k rows) from rows.
pub fn parquet_bytes(schema: &SchemaRef, rows: &[(serde_json::Map<String, Value>, Origin)]) -> anyhow::Result<bytes::Bytes> {
    let props = WriterProperties::builder().set_compression(Compression::SNAPPY).set_max_row_group_row_count(Some(65_536)).build();
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, schema.clone(), Some(props))?;
    for chunk in rows.chunks(65_536) {
        w.write(&batch(schema, chunk)?)?;
    }
    w.close()?;
    Ok(bytes::Bytes::from(out))
}
