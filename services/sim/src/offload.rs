//! Offline offload logs: the pipeline's records for a stretch of simulated
//! time, written to the lake in the archiver's layout (one Parquet table per
//! topic, Hive partitions by hour, objects named by partition and offset
//! range), without a broker.
//!
//! Per request: the request, the synthetic edge's proposal, the real router's
//! decision (the committed router bundle's scorer and policies, one policy
//! per phase, announced by a `PolicyUpdate`), then the edge answer or a cloud
//! request and the simulated cloud's answer. Telemetry comes from the link
//! traces at a fixed period. A small share of records is delivered twice (a
//! consumer's replay after a crash, which the SQL views deduplicate) and a
//! small share of requests arrives undecodable (a dead letter instead).
//!
//! Deterministic: the same spec writes the same rows.

use std::collections::HashMap;
use std::time::Instant;

use arrow::datatypes::SchemaRef;
use netgpt_archive::archiver::{hour_of, write_object};
use netgpt_archive::schema::{Origin, arrow_schema, row, table_name};
use netgpt_archive::store::{Lake, cluster_tag};
use netgpt_cloud::simulated::{SimulatedCloud, SimulatedConfig};
use netgpt_cloud::stage::response_of;
use netgpt_core::AnyRecord;
use netgpt_core::avro::{Bytes, TimestampMillis};
use netgpt_core::records::{CloudRequest, DeadLetter, DeadLetterKind, Placement, PolicyUpdate, Record};
use netgpt_core::topics::*;
use netgpt_router::RouterSettings;
use netgpt_router::bundle::{RouterBundle, load_proposals};
use netgpt_router::stage::{LoadedPolicy, RouterStage, SiteTable, edge_answer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::edge::{Proposer, SyntheticEdge};
use crate::traffic::{RequestSource, SiteLinks};

/// What to simulate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OffloadLogSpec {
    pub requests: u64,
    pub seed: u64,
    pub sites: u32,
    /// Simulated time of the first request (ms since the epoch).
    pub start_ms: i64,
    /// Between two requests (ms).
    pub interval_ms: i64,
    /// Between two telemetry readings of a site (ms).
    pub telemetry_every_ms: i64,
    /// Router policies (from the router bundle), one per phase, in turn.
    pub policies: Vec<String>,
    pub phase_ms: i64,
    /// Share of records delivered twice.
    pub replay_rate: f64,
    /// Share of requests that arrive undecodable (dead-lettered).
    pub undecodable_rate: f64,
    /// Templates the requests come from: train, held-out or mixed.
    pub split: String,
    pub max_rows_per_file: usize,
}

impl Default for OffloadLogSpec {
    fn default() -> Self {
        Self {
            requests: 1_000,
            seed: 11,
            sites: 4,
            // 2026-11-02T00:00:00Z
            start_ms: 1_793_577_600_000,
            interval_ms: 100,
            telemetry_every_ms: 1_000,
            policies: vec!["funcdyn".into(), "fixed".into(), "routellm".into()],
            phase_ms: 3_600_000,
            replay_rate: 0.005,
            undecodable_rate: 0.001,
            split: "mixed".into(),
            max_rows_per_file: 250_000,
        }
    }
}

/// The parts that answer: an edge (synthetic or the real model), the real
/// router (bundle), the simulated cloud.
pub struct World {
    pub settings: RouterSettings,
    pub bundle: RouterBundle,
    pub edge: Box<dyn Proposer>,
    pub cloud: SimulatedCloud,
}

impl World {
    /// The router bundle (and its labelled proposals) from `settings.router.bundle_dir`.
    pub fn load(settings: RouterSettings, cloud: SimulatedConfig) -> anyhow::Result<Self> {
        let dir = settings.router.bundle_dir.clone();
        let bundle = RouterBundle::load(&dir)?;
        let edge = SyntheticEdge::from_proposals(&load_proposals(&dir)?, &bundle.model_version)?;
        Ok(Self::new(settings, bundle, Box::new(edge), cloud))
    }

    pub fn new(settings: RouterSettings, bundle: RouterBundle, edge: Box<dyn Proposer>, cloud: SimulatedConfig) -> Self {
        let cloud = SimulatedCloud::new(SimulatedConfig { sleep: false, ..cloud }, settings.cost.clone());
        Self { settings, bundle, edge, cloud }
    }
}

/// What was written.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OffloadLogReport {
    pub requests: u64,
    pub records: u64,
    pub files: u64,
    /// Rows per table.
    pub rows: std::collections::BTreeMap<String, u64>,
    pub seconds: f64,
}

/// Where simulated records go: the lake ([`LakeWriter`]), a broker, memory.
pub trait RecordSink {
    /// One record of `topic`, stamped `timestamp_ms` (simulated time).
    fn push(&mut self, topic: &str, record: AnyRecord, timestamp_ms: i64) -> impl std::future::Future<Output = anyhow::Result<()>> + Send;
}

/// Writes the log `spec` describes to `lake`.
pub async fn write(spec: &OffloadLogSpec, world: &World, lake: &Lake, show_progress: bool) -> anyhow::Result<OffloadLogReport> {
    let started = Instant::now();
    let mut out = LakeWriter::new(lake, spec.max_rows_per_file, spec.seed)?;
    simulate(spec, world, &mut out, show_progress).await?;
    let mut report = out.finish().await?;
    report.requests = spec.requests;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Runs the simulation `spec` describes, sending every record to `out` in time
/// order (a cloud answer comes ~1 s after its request, after later requests'
/// records, as it would reach Kafka).
pub async fn simulate<S: RecordSink>(spec: &OffloadLogSpec, world: &World, out: &mut S, show_progress: bool) -> anyhow::Result<()> {
    let mut pending = InTimeOrder::default();
    anyhow::ensure!(!spec.policies.is_empty(), "an offload log needs at least one router policy");
    anyhow::ensure!(spec.interval_ms > 0 && spec.telemetry_every_ms > 0 && spec.phase_ms > 0, "intervals must be positive");
    anyhow::ensure!(spec.sites > 0, "an offload log needs at least one site");
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let source = RequestSource::new(&spec.split, spec.sites)?;
    let mut links = SiteLinks::new(spec.sites, &world.settings.network);
    let sites = SiteTable::default();
    let routers = spec
        .policies
        .iter()
        .map(|name| Ok(RouterStage::new(world.settings.clone(), sites.clone(), LoadedPolicy::from_bundle(&world.bundle, name)?, None)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let bar = netgpt_core::progress::bar(spec.requests, "simulating", show_progress);
    let mut next_telemetry = spec.start_ms;
    let mut phase = usize::MAX;
    for i in 0..spec.requests {
        let t = spec.start_ms + i as i64 * spec.interval_ms;
        while next_telemetry <= t {
            let t_s = (next_telemetry - spec.start_ms) as f64 / 1e3;
            for reading in links.readings(&mut rng, t_s, TimestampMillis(next_telemetry)) {
                sites.update(&reading);
                pending.add(SITE_TELEMETRY, reading.into(), next_telemetry);
            }
            next_telemetry += spec.telemetry_every_ms;
        }
        let now_phase = ((t - spec.start_ms) / spec.phase_ms) as usize % routers.len();
        if now_phase != phase {
            phase = now_phase;
            let update = PolicyUpdate { published_at: TimestampMillis(t), ..world.bundle.policy_update(&spec.policies[phase], None)? };
            pending.add(POLICY_UPDATES, update.into(), t);
        }
        pending.release_until(t, out).await?;
        let request = source.request(&mut rng, TimestampMillis(t));
        if rng.random_bool(spec.undecodable_rate) {
            pending.add(DEAD_LETTER, undecodable(&mut rng, &request.to_bytes(), t).into(), t);
            bar.inc(1);
            continue;
        }
        let mut records: Vec<(&'static str, AnyRecord, i64)> = vec![(TOOL_REQUESTS, request.clone().into(), t)];
        let proposal = world.edge.propose(&mut rng, &request, TimestampMillis(t + 2))?;
        let proposed = proposal.proposed_at.0 + proposal.edge_latency_ms.round() as i64;
        let proposal = netgpt_core::records::EdgeProposal { proposed_at: TimestampMillis(proposed), ..proposal };
        records.push((EDGE_PROPOSALS, proposal.clone().into(), proposed));
        let decision = netgpt_core::records::RoutingDecision { decided_at: TimestampMillis(proposed + 1), ..routers[phase].decide(&proposal) };
        let decided = decision.decided_at.0;
        records.push((ROUTING_DECISIONS, decision.clone().into(), decided));
        let answer = match decision.placement {
            Placement::Edge => edge_answer(&proposal, &decision, TimestampMillis(decided)),
            Placement::Cloud => {
                let cloud_request = CloudRequest { proposal, decision };
                let outcome = world.cloud.simulate(&cloud_request);
                let latency = outcome.as_ref().map_or(0.0, |a| a.latency_ms);
                let answered = decided + latency.round() as i64;
                let response = response_of(&cloud_request, outcome, &world.settings.cost, (decided - t) as f64, TimestampMillis(answered));
                records.push((CLOUD_REQUESTS, cloud_request.into(), decided));
                response
            }
        };
        let answered = answer.responded_at.0;
        records.push((AGENT_RESPONSES, answer.into(), answered));
        for (topic, record, at) in records {
            let replay = rng.random_bool(spec.replay_rate);
            if replay {
                pending.add(topic, record.clone(), at);
            }
            pending.add(topic, record, at);
        }
        bar.inc(1);
    }
    pending.release_until(i64::MAX, out).await?;
    bar.finish_and_clear();
    Ok(())
}

/// Records waiting for their time, released oldest first (ties in the order added).
#[derive(Default)]
struct InTimeOrder {
    heap: std::collections::BinaryHeap<std::cmp::Reverse<(i64, u64)>>,
    records: HashMap<u64, (&'static str, AnyRecord)>,
    next: u64,
}

impl InTimeOrder {
    fn add(&mut self, topic: &'static str, record: AnyRecord, at: i64) {
        self.heap.push(std::cmp::Reverse((at, self.next)));
        self.records.insert(self.next, (topic, record));
        self.next += 1;
    }

    async fn release_until<S: RecordSink>(&mut self, t: i64, out: &mut S) -> anyhow::Result<()> {
        while let Some(std::cmp::Reverse((at, seq))) = self.heap.peek().copied() {
            if at > t {
                break;
            }
            self.heap.pop();
            if let Some((topic, record)) = self.records.remove(&seq) {
                out.push(topic, record, at).await?;
            }
        }
        Ok(())
    }
}

/// A request whose bytes were cut short on the way: the edge's dead letter for it.
fn undecodable<R: Rng>(rng: &mut R, bytes: &[u8], t: i64) -> DeadLetter {
    let cut = bytes.len() / 2;
    DeadLetter {
        id: uuid::Builder::from_random_bytes(rng.random()).into_uuid(),
        stage: "edge".into(),
        source_topic: TOOL_REQUESTS.into(),
        source_partition: 0,
        source_offset: -1,
        source_key: None,
        payload: Bytes(bytes[..cut].to_vec()),
        error_kind: DeadLetterKind::Undecodable,
        error: format!("truncated record: {cut} of {} bytes", bytes.len()),
        failed_at: TimestampMillis(t + 1),
    }
}

/// One table's partitions being filled.
struct TableOut {
    name: String,
    schema: SchemaRef,
    next_offset: Vec<i64>,
    buffers: Vec<Vec<(serde_json::Map<String, serde_json::Value>, Origin)>>,
}

/// Rows into Parquet objects, the way the archiver lays them out: per topic
/// partition (chosen by an FNV-1a hash of the record key: stable, though not
/// librdkafka's partitioner), one object per run of offsets within one hour.
pub struct LakeWriter<'a> {
    lake: &'a Lake,
    /// Its objects' cluster tag: a simulated log numbers offsets itself, so
    /// it counts as a cluster of its own, one per seed (two seeds written to
    /// one lake keep apart instead of overwriting each other's objects).
    cluster: String,
    tables: HashMap<String, TableOut>,
    max_rows: usize,
    report: OffloadLogReport,
}

impl<'a> LakeWriter<'a> {
    pub fn new(lake: &'a Lake, max_rows: usize, seed: u64) -> anyhow::Result<Self> {
        let mut tables = HashMap::new();
        for t in netgpt_core::topics::declared()? {
            let partitions = t.partitions.max(1) as usize;
            tables.insert(t.name.clone(), TableOut { name: table_name(&t.name), schema: arrow_schema(&t.record)?, next_offset: vec![0; partitions], buffers: vec![Vec::new(); partitions] });
        }
        Ok(Self { lake, cluster: cluster_tag(&format!("netgpt-simulate-{seed}")), tables, max_rows: max_rows.max(1), report: OffloadLogReport::default() })
    }

    async fn put(lake: &Lake, cluster: &str, table: &TableOut, partition: usize, rows: Vec<(serde_json::Map<String, serde_json::Value>, Origin)>, report: &mut OffloadLogReport) -> anyhow::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        write_object(lake, &table.name, &table.schema, cluster, partition as i32, &rows).await?;
        report.files += 1;
        *report.rows.entry(table.name.clone()).or_default() += rows.len() as u64;
        Ok(())
    }

    /// Writes what is buffered.
    pub async fn finish(mut self) -> anyhow::Result<OffloadLogReport> {
        for table in self.tables.values_mut() {
            for partition in 0..table.buffers.len() {
                let rows = std::mem::take(&mut table.buffers[partition]);
                Self::put(self.lake, &self.cluster, table, partition, rows, &mut self.report).await?;
            }
        }
        Ok(self.report)
    }
}

impl RecordSink for LakeWriter<'_> {
    async fn push(&mut self, topic: &str, record: AnyRecord, timestamp_ms: i64) -> anyhow::Result<()> {
        let table = self.tables.get_mut(topic).ok_or_else(|| anyhow::anyhow!("no table for topic {topic}"))?;
        let partition = (netgpt_core::hash::fnv1a(record.key().as_bytes()) % table.buffers.len() as u64) as usize;
        let buffer = &mut table.buffers[partition];
        if buffer.first().is_some_and(|(_, o)| hour_of(o.timestamp_ms) != hour_of(timestamp_ms)) || buffer.len() >= self.max_rows {
            let rows = std::mem::take(buffer);
            Self::put(self.lake, &self.cluster, table, partition, rows, &mut self.report).await?;
        }
        let table = self.tables.get_mut(topic).ok_or_else(|| anyhow::anyhow!("no table for topic {topic}"))?;
        let offset = table.next_offset[partition];
        table.next_offset[partition] += 1;
        table.buffers[partition].push((row(&record)?, Origin { partition: partition as i32, offset, timestamp_ms }));
        self.report.records += 1;
        Ok(())
    }
}

