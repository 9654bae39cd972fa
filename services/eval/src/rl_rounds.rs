//! `rl-rounds`: the edge model trained online, round after round, on the
//! cloud answers of the traffic it served, with the router refitted for each
//! new model — and what that does to the traffic.
//!
//! One run (an objective and a seed) in its own lake:
//!
//! ```text
//! round r traffic: requests → the serving edge model (real, as served) → the
//!                  router with the serving bundle's policy → kept edge answer
//!                  or the simulated cloud → Parquet logs in the lake, tallied
//! trainer round r: datasets built from all logs so far (DataFusion) → RL on a
//!                  copy of the serving model → gate → if accepted, the router
//!                  refitted for it; both stored in the lake → served in r+1
//! ```
//!
//! The same code as `netgpt trainer --once` after `netgpt simulate`, except
//! that the edge is the real model rather than the synthetic stand-in and
//! nothing is announced on Kafka (the pair is loaded from the lake directly).
//! Row r is the traffic served after r trainer rounds; its trainer columns
//! describe the round trained on that traffic (none after the last).

use std::path::{Path, PathBuf};

use netgpt_archive::store::Lake;
use netgpt_core::AnyRecord;
use netgpt_core::config::local_path;
use netgpt_core::records::ModelUpdate;
use netgpt_dataset::engine::LogEngine;
use netgpt_edge::agent::EdgeAgent;
use netgpt_edge::stage::EdgeConfig;
use netgpt_router::bundle::RouterBundle;
use netgpt_sim::edge::ModelEdge;
use netgpt_sim::offload::{LakeWriter, OffloadLogSpec, RecordSink, World, simulate};
use netgpt_trainer::TrainerConfig;
use netgpt_trainer::publish::{NoPublisher, RoundSetup};
use serde::Serialize;

use crate::Inputs;
use crate::tally::TallyState;

/// The RL objective of a run: the full one, or an ablation without one of its terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objective {
    /// PPO surrogate + β·KL(π_θ‖π_old) + γ·NLL(cloud targets).
    SftAnchored,
    /// β = 0: no trust region to the previous policy.
    NoReverseKl,
    /// γ = 0: no pull towards the cloud targets / SFT prior.
    NoForwardKl,
}

impl Objective {
    pub const ALL: [Objective; 3] = [Objective::SftAnchored, Objective::NoReverseKl, Objective::NoForwardKl];

    pub fn name(self) -> &'static str {
        match self {
            Objective::SftAnchored => "sft-anchored",
            Objective::NoReverseKl => "no-reverse-kl",
            Objective::NoForwardKl => "no-forward-kl",
        }
    }

    pub fn parse(s: &str) -> anyhow::Result<Self> {
        Self::ALL.into_iter().find(|o| o.name() == s).ok_or_else(|| anyhow::anyhow!("unknown objective {s:?}: one of sft-anchored, no-reverse-kl, no-forward-kl"))
    }

    fn apply(self, cfg: &mut TrainerConfig) {
        match self {
            Objective::SftAnchored => {}
            Objective::NoReverseKl => cfg.rl.reverse_kl = 0.0,
            Objective::NoForwardKl => cfg.rl.forward_kl = 0.0,
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RlRoundsSpec {
    /// Trainer rounds per run (the traffic is measured rounds + 1 times).
    pub rounds: usize,
    /// Requests of traffic per round.
    pub requests: u64,
    pub seeds: Vec<u64>,
    pub objectives: Vec<Objective>,
    /// Router policy served (from each round's bundle).
    pub policy: String,
    /// Request templates of the traffic: train, held-out or mixed.
    pub split: String,
    /// Each run's lake goes under here (replaced when it exists).
    pub work_dir: PathBuf,
    pub show_progress: bool,
    /// Runs at once (one per core is the most that helps).
    pub parallel: usize,
}

/// The traffic of one round, and the trainer round that followed it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RoundRow {
    pub objective: String,
    pub seed: u64,
    pub round: usize,
    pub model_version: String,
    pub policy_version: String,
    /// What the round's traffic did (the answers of the served policy).
    #[serde(flatten)]
    pub traffic: crate::tally::Measures,
    /// The trainer round on this traffic's logs (absent after the last round).
    pub rl_targets: Option<usize>,
    pub mean_reward: Option<f64>,
    /// "accepted", "rejected" (by the gate or a failed refit) or "skipped" (too little data).
    pub verdict: Option<String>,
    pub reasons: Option<String>,
    pub train_seconds: Option<f64>,
}

/// Every run of `spec`, one row per round; `on_row` sees each row as it is measured.
///
/// Runs are independent (each has its own lake), so `spec.parallel` of them
/// run at once, each on its own runtime worker: one run is single-threaded
/// (candle on one thread), so on a 2-core machine two runs take the time of
/// one. Rows come back in (objective, seed, round) order.
pub async fn run(spec: &RlRoundsSpec, inputs: &Inputs, mut on_row: impl FnMut(&RoundRow)) -> anyhow::Result<Vec<RoundRow>> {
    anyhow::ensure!(spec.requests > 0 && !spec.seeds.is_empty() && !spec.objectives.is_empty(), "rl-rounds needs requests, at least one seed and one objective");
    inputs.trainer.rl.validate()?;
    let runs: Vec<(Objective, u64)> = spec.objectives.iter().flat_map(|&o| spec.seeds.iter().map(move |&s| (o, s))).collect();
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(spec.parallel.max(1)));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<RoundRow>();
    let mut tasks = Vec::new();
    for (objective, seed) in runs {
        let (spec, inputs, permits, tx) = (spec.clone(), inputs.clone(), permits.clone(), tx.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await?;
            let lake_dir = spec.work_dir.join(format!("{}-seed{seed}", objective.name()));
            run_one(&spec, &inputs, objective, seed, &lake_dir, &mut |row: &RoundRow| {
                let _ = tx.send(row.clone());
            })
            .await
        }));
    }
    drop(tx);
    while let Some(row) = rx.recv().await {
        on_row(&row);
    }
    let mut rows = Vec::new();
    for t in tasks {
        rows.extend(t.await??);
    }
    Ok(rows)
}

/// The model served at the start of a round: the configured one, or the trainer's newest.
enum Serving {
    Configured,
    Published(ModelUpdate),
}

impl Serving {
    fn load(&self, edge: &EdgeConfig) -> anyhow::Result<EdgeAgent> {
        let mut agent = match self {
            Serving::Configured => EdgeAgent::load(&edge.model_dir, &edge.model_version)?,
            Serving::Published(u) => netgpt_edge::stage::load_update(u)?,
        };
        agent.constrained = edge.constrained_decoding;
        Ok(agent)
    }
}

async fn run_one(spec: &RlRoundsSpec, inputs: &Inputs, objective: Objective, seed: u64, lake_dir: &Path, on_row: &mut impl FnMut(&RoundRow)) -> anyhow::Result<Vec<RoundRow>> {
    if lake_dir.exists() {
        std::fs::remove_dir_all(lake_dir)?;
    }
    std::fs::create_dir_all(lake_dir)?;
    let lake = Lake::open(&lake_dir.display().to_string(), &Default::default())?;
    let mut trainer = inputs.trainer.clone();
    objective.apply(&mut trainer);
    trainer.rl.seed = trainer.rl.seed.wrapping_add(seed);
    let mut serving = Serving::Configured;
    let mut bundle = RouterBundle::load(&inputs.router.router.bundle_dir)?;
    let mut policy_version = format!("{}/{}", bundle.version, spec.policy);
    let mut rows = Vec::new();
    for round in 0..=spec.rounds {
        let agent = serving.load(&inputs.edge)?;
        anyhow::ensure!(bundle.model_version == agent.version, "the router bundle {} was fitted for {}, not the served {}", bundle.version, bundle.model_version, agent.version);
        let mut row = RoundRow { objective: objective.name().into(), seed, round, model_version: agent.version.clone(), policy_version: policy_version.clone(), ..Default::default() };
        let world = World::new(inputs.router.clone(), bundle.clone(), Box::new(ModelEdge(agent)), inputs.cloud.clone());
        let tally = serve_traffic(spec, &world, &lake, seed, round).await?;
        row.traffic = tally.measures(&spec.policy)?;
        if round < spec.rounds {
            let engine = LogEngine::open(&lake).await?;
            netgpt_dataset::build::build(&engine, &lake, netgpt_dataset::sql::DATASETS, Some(format!("round-{round}")), false).await?;
            let setup = RoundSetup { cfg: &trainer, router: &inputs.router, current_bundle: Some(bundle.clone()), constrained: inputs.edge.constrained_decoding, show_progress: spec.show_progress };
            let outcome = netgpt_trainer::publish::round(setup, &lake, serving.load(&inputs.edge)?, &NoPublisher).await?;
            let r = &outcome.report;
            row.rl_targets = r.skipped.is_none().then_some(r.learnable_targets);
            row.mean_reward = (!r.iterations.is_empty()).then(|| r.iterations.iter().map(|i| i.mean_reward).sum::<f64>() / r.iterations.len() as f64);
            let verdict = if outcome.published.is_some() {
                "accepted"
            } else if r.skipped.is_some() {
                "skipped"
            } else {
                "rejected"
            };
            row.verdict = Some(verdict.into());
            row.reasons = r.skipped.clone().or_else(|| (!r.gate.reasons.is_empty()).then(|| r.gate.reasons.join("; ")));
            row.train_seconds = Some(r.rl_seconds + r.gate_seconds + r.refit.as_ref().map_or(0.0, |f| f.seconds));
            if let Some((policy, model)) = outcome.published {
                let uri = policy.scorer_uri.as_deref().ok_or_else(|| anyhow::anyhow!("policy update {} names no bundle", policy.version))?;
                bundle = RouterBundle::load(&local_path(uri)?)?;
                policy_version = policy.version.clone();
                serving = Serving::Published(model);
            }
        }
        on_row(&row);
        rows.push(row);
    }
    Ok(rows)
}

/// Writes the round's traffic to the lake and tallies it on the way.
async fn serve_traffic(spec: &RlRoundsSpec, world: &World, lake: &Lake, seed: u64, round: usize) -> anyhow::Result<TallyState> {
    const DAY_MS: i64 = 86_400_000;
    let defaults = OffloadLogSpec::default();
    let traffic = OffloadLogSpec {
        requests: spec.requests,
        seed: seed.wrapping_mul(1_000).wrapping_add(round as u64),
        // One simulated day per round: rounds never share an hour partition.
        start_ms: defaults.start_ms + round as i64 * DAY_MS,
        policies: vec![spec.policy.clone()],
        phase_ms: DAY_MS,
        split: spec.split.clone(),
        ..defaults
    };
    let mut sink = Tallied { lake: LakeWriter::new(lake, traffic.max_rows_per_file, traffic.seed)?, tally: TallyState::default() };
    simulate(&traffic, world, &mut sink, spec.show_progress).await?;
    sink.lake.finish().await?;
    Ok(sink.tally)
}

/// The lake writer, with every record also shown to the tally.
struct Tallied<'a> {
    lake: LakeWriter<'a>,
    tally: TallyState,
}

impl RecordSink for Tallied<'_> {
    async fn push(&mut self, topic: &str, record: AnyRecord, timestamp_ms: i64) -> anyhow::Result<()> {
        self.tally.observe(&record);
        self.lake.push(topic, record, timestamp_ms).await
    }
}

/// The rows as CSV (one header line, then one line per row).
pub fn to_csv(rows: &[RoundRow]) -> String {
    let mut out = String::from("objective,seed,round,model_version,policy_version,answers,offload_rate,explored_rate,task_success,schema_valid,edge_exact,edge_schema_valid,cost_per_1k,rl_targets,mean_reward,verdict,train_seconds\n");
    let opt = |v: Option<String>| v.unwrap_or_default();
    for r in rows {
        out.push_str(&format!(
            "{},{},{},{},{},{},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{},{},{},{}\n",
            r.objective,
            r.seed,
            r.round,
            r.model_version,
            r.policy_version,
            r.traffic.answers,
            r.traffic.offload_rate,
            r.traffic.explored_rate,
            r.traffic.task_success,
            r.traffic.schema_valid,
            r.traffic.edge_exact,
            r.traffic.edge_schema_valid,
            r.traffic.cost_per_1k,
            opt(r.rl_targets.map(|v| v.to_string())),
            opt(r.mean_reward.map(|v| format!("{v:.6}"))),
            opt(r.verdict.clone()),
            opt(r.train_seconds.map(|v| format!("{v:.1}"))),
        ));
    }
    out
}

fn interval_of(rows: &[RoundRow], objective: &str, round: usize, f: &dyn Fn(&RoundRow) -> Option<f64>) -> crate::stats::Interval {
    crate::stats::Interval::of(&rows.iter().filter(|r| r.objective == objective && r.round == round).filter_map(f).collect::<Vec<_>>())
}

/// What a missed goal came from, as far as the rows say: rounds the trainer
/// skipped (and why), and how much offload there was to reduce at the start.
fn why_missed(rows: &[RoundRow], objective: &str) -> String {
    let own: Vec<&RoundRow> = rows.iter().filter(|r| r.objective == objective).collect();
    let trained: Vec<&&RoundRow> = own.iter().filter(|r| r.verdict.is_some()).collect();
    let skipped: Vec<&&RoundRow> = trained.iter().copied().filter(|r| r.verdict.as_deref() == Some("skipped")).collect();
    let first: Vec<f64> = own.iter().filter(|r| r.round == 0).map(|r| r.traffic.offload_rate).collect();
    let mut why = format!(" Why: the traffic before any round sent {:.1} % of requests to the cloud", 100.0 * first.iter().sum::<f64>() / first.len().max(1) as f64);
    if let Some(r) = skipped.first() {
        why.push_str(&format!("; {} of {} trainer rounds were skipped ({})", skipped.len(), trained.len(), r.reasons.as_deref().unwrap_or("no reason recorded")));
    }
    why.push('.');
    why
}

/// Per seed, 1 − offload(last round) / offload(round 0), for `objective`.
pub fn offload_reductions(rows: &[RoundRow], objective: &str) -> Vec<f64> {
    let last = rows.iter().filter(|r| r.objective == objective).map(|r| r.round).max().unwrap_or(0);
    let mut seeds: Vec<u64> = rows.iter().filter(|r| r.objective == objective).map(|r| r.seed).collect();
    seeds.sort_unstable();
    seeds.dedup();
    seeds
        .iter()
        .filter_map(|&s| {
            let at = |round: usize| rows.iter().find(|r| r.objective == objective && r.seed == s && r.round == round).map(|r| r.traffic.offload_rate);
            let (first, end) = (at(0)?, at(last)?);
            (first > 0.0).then(|| 1.0 - end / first)
        })
        .collect()
}

/// Plots and the results section.
pub fn summarise(rows: &[RoundRow], spec: &RlRoundsSpec, out: &Path, command: &str) -> anyhow::Result<String> {
    use crate::plot::{Mark, Panel, Point, Series};
    use crate::report::table;
    use crate::stats::Interval;
    let objectives: Vec<&str> = spec.objectives.iter().map(|o| o.name()).collect();
    type Column = (&'static str, fn(&RoundRow) -> Option<f64>, usize);
    let columns: [Column; 6] = [
        ("offload", |r| Some(r.traffic.offload_rate), 4),
        ("task success", |r| Some(r.traffic.task_success), 4),
        ("schema-valid", |r| Some(r.traffic.schema_valid), 4),
        ("edge exact", |r| Some(r.traffic.edge_exact), 4),
        ("mean reward (round trained on it)", |r| r.mean_reward, 3),
        ("spend per 1k", |r| Some(r.traffic.cost_per_1k), 3),
    ];
    let panels: Vec<Panel> = columns
        .iter()
        .map(|(name, f, _)| Panel {
            title: name.to_string(),
            x_label: "traffic after this many trainer rounds".into(),
            y_label: name.to_string(),
            series: objectives
                .iter()
                .map(|o| {
                    let pts = (0..=spec.rounds)
                        .map(|round| {
                            let v = interval_of(rows, o, round, f);
                            Point::with_err(round as f64, v.mean, v.half_width)
                        })
                        .filter(|p| p.y.is_finite())
                        .collect();
                    Series::new(*o, Mark::LineAndMarkers, pts)
                })
                .collect(),
        })
        .collect();
    crate::plot::write_svg(&out.join("rl_rounds.svg"), &format!("Online RL rounds (mean over seeds {:?}, bars: 95 % CI)", spec.seeds), &panels, 2)?;

    let mut header = vec!["objective", "round"];
    header.extend(columns.iter().map(|c| c.0));
    header.push("gate verdicts");
    let mut body = Vec::new();
    for o in &objectives {
        for round in 0..=spec.rounds {
            let mut line = vec![o.to_string(), round.to_string()];
            line.extend(columns.iter().map(|(_, f, d)| {
                let v = interval_of(rows, o, round, f);
                if v.n == 0 { "–".to_string() } else { v.show(*d) }
            }));
            let verdicts: Vec<String> = rows.iter().filter(|r| r.objective == *o && r.round == round).filter_map(|r| r.verdict.clone()).collect();
            let count = |v: &str| verdicts.iter().filter(|x| x.as_str() == v).count();
            line.push(if verdicts.is_empty() { "–".into() } else { format!("{} accepted, {} rejected, {} skipped", count("accepted"), count("rejected"), count("skipped")) });
            body.push(line);
        }
    }
    let mut s = String::from("## RL rounds: offload, success and schema validity over online rounds\n\n");
    s.push_str(&format!(
        "Command: `{command}` · seeds {:?} · {} trainer rounds · {} requests of traffic per round ({} templates), served by the real edge model and the router's `{}` policy, falling back to the simulated cloud · objectives {:?}.\n\n",
        spec.seeds, spec.rounds, spec.requests, spec.split, spec.policy, objectives
    ));
    s.push_str("Raw rows: `rl_rounds.csv`. Plot: `rl_rounds.svg`.\n\n![rl rounds](rl-rounds/rl_rounds.svg)\n\n");
    s.push_str("Row r is the traffic served after r trainer rounds; its mean reward and gate verdicts are those of the round trained on that traffic.\n\n");
    s.push_str(&table(&header, &body));
    for o in &objectives {
        let red = Interval::of(&offload_reductions(rows, o));
        let first = |f: &dyn Fn(&RoundRow) -> Option<f64>| interval_of(rows, o, 0, f);
        let last = |f: &dyn Fn(&RoundRow) -> Option<f64>| interval_of(rows, o, spec.rounds, f);
        let (s0, s1) = (first(&|r| Some(r.traffic.task_success)), last(&|r| Some(r.traffic.task_success)));
        let valid = rows.iter().filter(|r| r.objective == *o).map(|r| r.traffic.schema_valid).fold(f64::INFINITY, f64::min);
        let equal_success = s1.hi() >= s0.lo();
        let verdict = if red.lo() >= 0.4 && equal_success && valid >= 0.99 {
            "meets the goal (≥ 40 % at equal success, schema validity ≥ 99 %)"
        } else if red.mean >= 0.4 && equal_success && valid >= 0.99 {
            "meets the 40 % goal on average; the interval reaches below it"
        } else {
            "misses the goal (≥ 40 % at equal success, schema validity ≥ 99 %)"
        };
        s.push_str(&format!(
            "\n- **{o}**: offload reduction after {} rounds {} (per seed, 1 − last/first); task success {} → {}; lowest schema validity of any round {:.4} — {verdict}.",
            spec.rounds,
            red.show(3),
            s0.show(4),
            s1.show(4),
            valid
        ));
        if verdict.starts_with("misses") {
            s.push_str(&why_missed(rows, o));
        }
    }
    s.push_str("\n\nThe offload rate includes the router's exploration floor (a share of would-be edge answers sent to the cloud so later fits see unbiased outcomes), so it cannot fall below that share.\n");
    Ok(s)
}
