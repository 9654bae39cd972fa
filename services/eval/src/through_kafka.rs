//! `--through-kafka`: one configuration run twice, in-process and through a
//! Kafka-protocol broker, to show that the fast in-process mode measures what
//! the deployed pipeline does.
//!
//! The configuration: the real edge model, the router with one policy of the
//! shipped bundle, the simulated cloud, sites on fixed links (site i in
//! regime i mod 3), `requests` requests per seed. In-process, the simulation
//! calls the same edge, router and cloud code directly; through Kafka, the
//! load generator produces the same kind of traffic (another draw of it)
//! and the edge, router, cloud and tally stages exchange Avro records over
//! the broker. The two are compared per seed and over seeds; "the same
//! within noise" means every difference lies inside the 95 % interval of a
//! difference between two binomial shares of that size.

use std::path::PathBuf;

use netgpt_core::AnyRecord;
use netgpt_router::NetworkConfig;
use netgpt_router::bundle::RouterBundle;
use netgpt_router::trace::TraceKind;
use netgpt_sim::edge::ModelEdge;
use netgpt_sim::offload::{OffloadLogSpec, RecordSink, World, simulate};
use serde::Serialize;

use crate::Inputs;
use crate::report::{csv, table};
use crate::stats::Interval;
use crate::tally::{Measures, TallyState};

#[derive(Debug, Clone)]
pub struct KafkaCheckSpec {
    pub seeds: Vec<u64>,
    pub requests: u64,
    /// Requests per second produced to the broker.
    pub rate: f64,
    pub policy: String,
    pub sites: u32,
    pub split: String,
    pub out: PathBuf,
}

impl Default for KafkaCheckSpec {
    fn default() -> Self {
        Self { seeds: vec![1, 2, 3], requests: 1_500, rate: 100.0, policy: "funcdyn".into(), sites: 6, split: "held-out".into(), out: PathBuf::from("results/through-kafka") }
    }
}

/// One run's measures.
#[derive(Debug, Clone, Serialize)]
pub struct ModeRow {
    /// in-process or kafka.
    pub mode: String,
    pub seed: u64,
    pub measures: Measures,
}

/// The links of the check: every site on a fixed regime.
pub fn network(inputs: &Inputs) -> NetworkConfig {
    let mut n = inputs.router.network.clone();
    n.trace.kind = TraceKind::Static;
    n
}

/// The in-process run of the configuration for `seed`.
pub async fn in_process(inputs: &Inputs, spec: &KafkaCheckSpec, seed: u64) -> anyhow::Result<Measures> {
    let mut settings = inputs.router.clone();
    settings.network = network(inputs);
    let bundle = RouterBundle::load(&settings.router.bundle_dir)?;
    let mut agent = netgpt_edge::agent::EdgeAgent::load(&inputs.edge.model_dir, &inputs.edge.model_version)?;
    agent.constrained = inputs.edge.constrained_decoding;
    let world = World::new(settings, bundle, Box::new(ModelEdge(agent)), inputs.cloud.clone());
    let traffic = OffloadLogSpec {
        requests: spec.requests,
        seed,
        sites: spec.sites,
        interval_ms: (1_000.0 / spec.rate.max(1e-3)).round().max(1.0) as i64,
        policies: vec![spec.policy.clone()],
        phase_ms: i64::MAX / 4,
        replay_rate: 0.0,
        undecodable_rate: 0.0,
        split: spec.split.clone(),
        ..OffloadLogSpec::default()
    };
    let mut sink = TallyOnly(TallyState::default());
    simulate(&traffic, &world, &mut sink, false).await?;
    sink.0.measures(&spec.policy)
}

struct TallyOnly(TallyState);

impl RecordSink for TallyOnly {
    async fn push(&mut self, _: &str, record: AnyRecord, _: i64) -> anyhow::Result<()> {
        self.0.observe(&record);
        Ok(())
    }
}

pub fn to_csv(rows: &[ModeRow]) -> String {
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let m = &r.measures;
            vec![r.mode.clone(), r.seed.to_string(), m.answers.to_string(), format!("{:.6}", m.offload_rate), format!("{:.6}", m.explored_rate), format!("{:.6}", m.task_success), format!("{:.6}", m.schema_valid), format!("{:.6}", m.edge_exact), format!("{:.6}", m.cost_per_1k)]
        })
        .collect();
    csv(&["mode", "seed", "answers", "offload", "explored", "task_success", "schema_valid", "edge_exact", "cost_per_1k"], &body)
}

/// Half-width of the 95 % interval of the difference of two shares near `p` from `n1` and `n2` draws.
fn share_noise(p: f64, n1: f64, n2: f64) -> f64 {
    1.96 * (p.clamp(0.01, 0.99) * (1.0 - p.clamp(0.01, 0.99)) * (1.0 / n1.max(1.0) + 1.0 / n2.max(1.0))).sqrt()
}

/// One share measured both ways.
#[derive(Debug, Clone)]
pub struct ShareComparison {
    pub name: &'static str,
    pub in_process: Interval,
    pub kafka: Interval,
    /// 95 % half-width of a difference of two shares of these sizes.
    pub noise: f64,
}

impl ShareComparison {
    pub fn difference(&self) -> f64 {
        self.kafka.mean - self.in_process.mean
    }

    pub fn agrees(&self) -> bool {
        self.difference().abs() <= self.noise
    }
}

fn mode_interval(rows: &[ModeRow], mode: &str, f: &dyn Fn(&Measures) -> f64) -> Interval {
    Interval::of(&rows.iter().filter(|r| r.mode == mode).map(|r| f(&r.measures)).collect::<Vec<_>>())
}

/// Per share (offload, task success, schema-valid answers, edge exact): both
/// modes' means over seeds and the noise their difference is judged against.
pub fn compare(rows: &[ModeRow]) -> Vec<ShareComparison> {
    let answers = |mode: &str| rows.iter().filter(|r| r.mode == mode).map(|r| r.measures.answers as f64).sum::<f64>();
    let (n_in, n_kafka) = (answers("in-process"), answers("kafka"));
    type Share = (&'static str, fn(&Measures) -> f64);
    let shares: [Share; 4] = [("offload", |m| m.offload_rate), ("task success", |m| m.task_success), ("schema-valid answers", |m| m.schema_valid), ("edge exact", |m| m.edge_exact)];
    shares
        .iter()
        .map(|(name, f)| {
            let (in_process, kafka) = (mode_interval(rows, "in-process", f), mode_interval(rows, "kafka", f));
            let noise = share_noise((in_process.mean + kafka.mean) / 2.0, n_in, n_kafka);
            ShareComparison { name, in_process, kafka, noise }
        })
        .collect()
}

/// The comparison as a section of the results document. Returns the section
/// text and whether every share agreed.
pub fn summarise(rows: &[ModeRow], spec: &KafkaCheckSpec, command: &str) -> (String, bool) {
    let comparisons = compare(rows);
    let all_agree = comparisons.iter().all(ShareComparison::agrees);
    let mut body: Vec<Vec<String>> = comparisons
        .iter()
        .map(|c| vec![c.name.to_string(), c.in_process.show(4), c.kafka.show(4), format!("{:+.4}", c.difference()), format!("±{:.4}", c.noise), if c.agrees() { "yes" } else { "no" }.into()])
        .collect();
    let (ca, cb) = (mode_interval(rows, "in-process", &|m| m.cost_per_1k), mode_interval(rows, "kafka", &|m| m.cost_per_1k));
    body.push(vec!["spend per 1k".into(), ca.show(3), cb.show(3), format!("{:+.3}", cb.mean - ca.mean), "(follows offload)".into(), "–".into()]);
    let mut s = String::from("## Through Kafka: the in-process mode against the broker pipeline\n\n");
    s.push_str(&format!(
        "Command: `{command}` · seeds {:?} · {} {} requests per seed and mode · policy `{}` of the shipped bundle · {} sites on fixed links (site i in regime i mod 3) · through Kafka at {} requests/s over a local Kafka-protocol broker, with the edge, router, cloud and tally stages of `netgpt demo`.\n\n",
        spec.seeds, spec.requests, spec.split, spec.policy, spec.sites, spec.rate
    ));
    s.push_str("Raw rows: `through_kafka.csv`. The two modes draw different requests from the same generator, so they agree within sampling noise, not exactly; \"noise\" is the 95 % half-width of a difference of two shares of these sizes.\n\n");
    s.push_str(&table(&["measure", "in-process", "through Kafka", "difference", "noise", "within noise"], &body));
    s.push_str(&format!("\n{}\n", if all_agree { "Every share agrees within noise." } else { "Not every share agrees within noise: see the table." }));
    (s, all_agree)
}
