//! The Kafka bus: producer, consumer construction and deliberate close, and
//! topic administration, all through rdkafka. The same code talks to the local
//! Tansu broker and to an Apache Kafka cluster; only the config differs.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::future::BoxFuture;
use futures::FutureExt;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::statistics::Statistics;
use rdkafka::ClientContext;

use crate::config::KafkaConfig;
use crate::metrics::{Metrics, PartitionLabels, StageLabels};
use crate::records::Record;
use crate::topics::TopicSpec;

impl KafkaConfig {
    /// The rdkafka client config with the pass-through properties.
    pub fn client_config(&self) -> anyhow::Result<ClientConfig> {
        self.client_config_with(&[])
    }

    /// `defaults` first, then the pass-through properties, which win: an operator
    /// can tune anything we set.
    pub fn client_config_with(&self, defaults: &[(&str, String)]) -> anyhow::Result<ClientConfig> {
        if self.bootstrap_servers.trim().is_empty() {
            anyhow::bail!("no Kafka cluster configured: set kafka.bootstrap_servers (or NETGPT__KAFKA__BOOTSTRAP_SERVERS), or use `netgpt demo`, which starts a local broker");
        }
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers).set("client.id", &self.client_id);
        for (k, v) in defaults {
            c.set(*k, v);
        }
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        Ok(c)
    }
}

/// Result of one delivery: partition and offset of the written record.
pub type Delivery = BoxFuture<'static, Result<(i32, i64), KafkaError>>;

/// An idempotent producer (`enable.idempotence`, `acks=all`) of framed records.
#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer,
}

impl Producer {
    pub fn new(cfg: &KafkaConfig) -> anyhow::Result<Self> {
        let inner: FutureProducer = cfg
            .client_config_with(&[
                ("linger.ms", "5".into()),
                ("delivery.timeout.ms", cfg.delivery_timeout_ms.to_string()),
            ])?
            // Correctness, not tuning: retries must not duplicate or reorder.
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create()
            .context("creating the Kafka producer")?;
        Ok(Self { inner })
    }

    /// Queues a record; the returned future resolves when the broker has it.
    pub async fn send<R: Record>(&self, topic: &str, record: &R) -> Delivery {
        self.send_bytes(topic, record.key().as_bytes(), &record.to_bytes(), None).await
    }

    /// Queues raw bytes (used for dead letters and by tests that write foreign records).
    /// Waits while the local queue is full instead of failing: backpressure, not loss.
    pub async fn send_bytes(&self, topic: &str, key: &[u8], payload: &[u8], headers: Option<OwnedHeaders>) -> Delivery {
        let mut record = FutureRecord::to(topic).key(key).payload(payload);
        if let Some(h) = headers {
            record = record.headers(h);
        }
        loop {
            match self.inner.send_result(record) {
                Ok(fut) => {
                    return async move {
                        match fut.await {
                            Ok(Ok(d)) => Ok((d.partition, d.offset)),
                            Ok(Err((e, _))) => Err(e),
                            Err(_canceled) => Err(KafkaError::Canceled),
                        }
                    }
                    .boxed();
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((e, _)) => return futures::future::ready(Err(e)).boxed(),
            }
        }
    }

    /// Waits until every queued record is delivered or `timeout` passes.
    pub fn flush(&self, timeout: Duration) -> anyhow::Result<()> {
        self.inner.flush(timeout).context("flushing the producer")
    }
}

/// Consumer context: logs rebalances, commits stored offsets before partitions
/// are revoked (so the next owner starts after what this one finished), and
/// feeds the lag gauge from librdkafka statistics.
pub struct StageContext {
    pub stage: String,
    pub metrics: Arc<Metrics>,
}

impl ClientContext for StageContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition < 0 || p.consumer_lag < 0 {
                    continue;
                }
                self.metrics
                    .consumer_lag
                    .get_or_create(&PartitionLabels { stage: self.stage.clone(), topic: topic.clone(), partition: partition.to_string() })
                    .set(p.consumer_lag);
            }
        }
    }
}

impl ConsumerContext for StageContext {
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            tracing::info!(stage = %self.stage, partitions = tpl.count(), "partitions assigned");
        }
        let assigned = consumer.assignment().map(|a| a.count()).unwrap_or(0);
        self.metrics.assigned_partitions.get_or_create(&StageLabels { stage: self.stage.clone() }).set(assigned as i64);
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                tracing::info!(stage = %self.stage, partitions = tpl.count(), "partitions revoked; committing stored offsets");
                if let Err(e) = consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync) {
                    // Nothing stored since the last commit is the common case.
                    tracing::debug!(stage = %self.stage, error = %e, "commit on revoke");
                }
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => tracing::warn!(stage = %self.stage, error = %e, "rebalance error"),
        }
    }
}

pub type StageConsumer = StreamConsumer<StageContext>;

/// A group consumer that stores offsets only when told to (`enable.auto.offset.store=false`)
/// and auto-commits what was stored.
pub fn group_consumer(cfg: &KafkaConfig, group_id: &str, stage: &str, metrics: Arc<Metrics>) -> anyhow::Result<StageConsumer> {
    let mut defaults = vec![
        ("group.id", group_id.to_string()),
        ("enable.auto.commit", "true".into()),
        ("auto.commit.interval.ms", "1000".into()),
        ("auto.offset.reset", "earliest".into()),
        ("session.timeout.ms", cfg.session_timeout_ms.to_string()),
        ("enable.partition.eof", "false".into()),
        // Routing is latency-sensitive: don't let a fetch sit on the broker
        // for librdkafka's default 500 ms waiting for more data.
        ("fetch.wait.max.ms", "20".into()),
    ];
    if cfg.statistics_interval_ms > 0 {
        defaults.push(("statistics.interval.ms", cfg.statistics_interval_ms.to_string()));
    }
    cfg.client_config_with(&defaults)?
        // Correctness, not tuning: offsets are stored by the stage loop only.
        .set("enable.auto.offset.store", "false")
        .create_with_context(StageContext { stage: stage.to_string(), metrics }).context("creating the Kafka consumer")
}

/// Closes a consumer deliberately: commit what is stored, leave the group, and
/// drop it — all on a blocking thread bounded by `timeout`: a synchronous
/// commit waits for the group coordinator without limit when the broker is
/// gone, and librdkafka's destroy can block while it holds prefetched messages.
pub async fn close_consumer<C: ConsumerContext + 'static>(consumer: StreamConsumer<C>, timeout: Duration) {
    close(consumer, timeout, true).await
}

/// Closes a read-only consumer (from [`reader`]): nothing to commit.
pub async fn close_reader<C: ConsumerContext + 'static>(consumer: StreamConsumer<C>, timeout: Duration) {
    close(consumer, timeout, false).await
}

async fn close<C: ConsumerContext + 'static>(consumer: StreamConsumer<C>, timeout: Duration, commit: bool) {
    let closing = tokio::task::spawn_blocking(move || {
        if commit && let Err(e) = consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync) {
            tracing::debug!(error = %e, "final commit (nothing stored is normal)");
        }
        consumer.unsubscribe();
        drop(consumer);
    });
    if tokio::time::timeout(timeout, closing).await.is_err() {
        tracing::warn!(?timeout, "consumer close timed out; abandoning it (offsets stored before were committed by auto-commit)");
    }
}

/// Creates the declared topics that do not exist yet; returns the names created.
pub async fn create_topics(cfg: &KafkaConfig, specs: &[TopicSpec]) -> anyhow::Result<Vec<String>> {
    let admin: AdminClient<DefaultClientContext> = cfg.client_config()?.create().context("creating the Kafka admin client")?;
    let retention: Vec<String> = specs.iter().map(|s| s.retention_ms.to_string()).collect();
    let new: Vec<NewTopic<'_>> = specs
        .iter()
        .zip(&retention)
        .map(|(s, r)| {
            NewTopic::new(&s.name, s.partitions, TopicReplication::Fixed(-1))
                .set("cleanup.policy", &s.cleanup_policy)
                .set("retention.ms", r)
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin.create_topics(&new, &opts).await.context("create_topics request")?;
    let mut created = Vec::new();
    for r in results {
        match r {
            Ok(name) => created.push(name),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => anyhow::bail!("creating topic {name}: {code}"),
        }
    }
    Ok(created)
}

/// Topic names and partition counts the cluster reports.
pub fn list_topics(cfg: &KafkaConfig, timeout: Duration) -> anyhow::Result<Vec<(String, usize)>> {
    let consumer: BaseConsumer = cfg.client_config()?.create().context("creating a metadata client")?;
    let md = consumer.fetch_metadata(None, timeout).context("fetching cluster metadata")?;
    let mut topics: Vec<(String, usize)> = md.topics().iter().map(|t| (t.name().to_string(), t.partitions().len())).collect();
    topics.sort();
    Ok(topics)
}

/// The id the cluster reports for itself (Kafka metadata), if it reports one.
pub fn cluster_id(cfg: &KafkaConfig, timeout: Duration) -> anyhow::Result<Option<String>> {
    let consumer: BaseConsumer = cfg.client_config()?.create().context("creating a metadata client")?;
    Ok(consumer.client().fetch_cluster_id(timeout))
}

/// A read-only consumer: it never commits, so it moves no group's offsets.
pub fn reader(cfg: &KafkaConfig, group_id: &str) -> anyhow::Result<StreamConsumer> {
    cfg.client_config_with(&[("group.id", group_id.to_string())])?
        .set("enable.auto.commit", "false")
        .create()
        .context("creating a Kafka reader")
}

/// Assigns every partition of `topic` at its beginning, with no group join
/// (which takes seconds); returns the partition ids.
pub fn assign_from_beginning(consumer: &StreamConsumer, topic: &str, timeout: Duration) -> anyhow::Result<Vec<i32>> {
    let md = consumer.fetch_metadata(Some(topic), timeout).with_context(|| format!("fetching metadata of {topic}"))?;
    let partitions: Vec<i32> = md.topics().iter().flat_map(|t| t.partitions()).map(|p| p.id()).collect();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for &p in &partitions {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    Ok(partitions)
}

/// The newest record per key of a (compacted) topic, read from the beginning
/// up to the end as of now, without a consumer group. Stages call this at
/// start-up for the update topics: their group offsets point *after* the
/// update they last applied, which a restarted process no longer holds.
pub async fn latest_per_key<R: crate::records::Record>(cfg: &KafkaConfig, topic: &str, timeout: Duration) -> anyhow::Result<Vec<R>> {
    use rdkafka::Message;
    let consumer = reader(cfg, "netgpt.catch-up")?;
    let mut ends = Vec::new();
    for p in assign_from_beginning(&consumer, topic, timeout)? {
        let (low, high) = consumer.fetch_watermarks(topic, p, timeout)?;
        if high > low {
            ends.push((p, high));
        }
    }
    let mut latest: std::collections::HashMap<String, R> = std::collections::HashMap::new();
    if !ends.is_empty() {
        let mut done = std::collections::HashSet::new();
        let deadline = tokio::time::Instant::now() + timeout;
        while done.len() < ends.len() {
            let msg = tokio::time::timeout_at(deadline, consumer.recv()).await.context("reading the update topic timed out")??;
            match R::from_bytes(msg.payload().unwrap_or_default()) {
                Ok(r) => {
                    latest.insert(r.key(), r);
                }
                Err(e) => tracing::warn!(topic, offset = msg.offset(), error = %e, "skipping an undecodable update"),
            }
            if ends.iter().any(|(p, high)| *p == msg.partition() && msg.offset() + 1 >= *high) {
                done.insert(msg.partition());
            }
        }
    }
    close_reader(consumer, Duration::from_millis(cfg.close_timeout_ms)).await;
    Ok(latest.into_values().collect())
}
