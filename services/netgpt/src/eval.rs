//! `netgpt eval EXPERIMENT`: the evaluation's experiments. Each writes its raw
//! rows (CSV) and plots (SVG) under `--out`/EXPERIMENT and replaces its own
//! section of the results document (`--doc`). `netgpt eval all` runs them all.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, Subcommand};
use netgpt_eval::lab::{Lab, SeedProposals};
use netgpt_eval::report::{command_line, write_section};
use netgpt_eval::rl_rounds::{Objective, RlRoundsSpec, RoundRow};
use netgpt_eval::{Inputs, dynamic, frontier, rl_rounds, scorer_refresh, theorem, through_kafka};

use crate::AppConfig;

#[derive(Subcommand)]
pub enum EvalCommand {
    /// Task success against cost and latency for GOOD, MID and BAD links under
    /// each price schedule, every policy, the trade-off swept.
    Frontier(FrontierArgs),
    /// Time-varying links: dynamic thresholds against the best fixed τ in hindsight.
    Dynamic(DynamicArgs),
    /// Online trainer rounds: each round's traffic is served by the current
    /// edge model and router policy and logged; a trainer round on those logs
    /// (RL, gate, router refit) gives the next pair. Offload rate, task
    /// success, schema validity and mean reward per round.
    RlRounds(RlRoundsArgs),
    /// Routing accuracy and calibration with and without periodic scorer refits under drift.
    ScorerRefresh(ScorerRefreshArgs),
    /// τ*(S) from the empirical score distribution against RTT, bandwidth and price.
    Theorem(TheoremArgs),
    /// One configuration in-process and through a local Kafka-protocol broker: the same numbers within noise.
    ThroughKafka(ThroughKafkaArgs),
    /// Every experiment at its default size, then the results document.
    All(AllArgs),
}

#[derive(Args, Clone)]
pub struct Common {
    /// One repetition per seed.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub seeds: Vec<u64>,
    /// Raw rows and plots go to OUT/EXPERIMENT/.
    #[arg(long, default_value = "docs/results")]
    pub out: PathBuf,
    /// The results document whose section the experiment replaces.
    #[arg(long, default_value = "docs/results.md")]
    pub doc: PathBuf,
}

#[derive(Args)]
pub struct FrontierArgs {
    #[command(flatten)]
    pub common: Common,
    /// Fresh requests per seed proposed by the edge model (half fit, half measured).
    #[arg(long, default_value_t = 2_000)]
    pub proposals: usize,
    /// Trade-off multipliers of the cost model's λ (must include 1).
    #[arg(long, value_delimiter = ',', default_value = "0.25,0.5,1,2,4,8")]
    pub kappas: Vec<f64>,
    /// Also run one configuration through Kafka and compare (see `eval through-kafka`).
    #[arg(long)]
    pub through_kafka: bool,
}

#[derive(Args)]
pub struct DynamicArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value_t = 2_000)]
    pub proposals: usize,
    /// Simulated minutes per trace.
    #[arg(long, default_value_t = 60.0)]
    pub minutes: f64,
    /// Regime switches per site per minute.
    #[arg(long, default_value_t = 1.0)]
    pub switches_per_minute: f64,
}

#[derive(Args)]
pub struct RlRoundsArgs {
    #[command(flatten)]
    pub common: Common,
    /// Trainer rounds per run.
    #[arg(long, default_value_t = RL_ROUNDS)]
    pub rounds: usize,
    /// Requests of traffic per round. The router refit needs trainer.refit.min_rows
    /// cloud answers among the 5/16 of requests set aside for it, and the shipped edge
    /// sends ~4.5 % of requests to the cloud: 10,000 requests give ~140.
    #[arg(long, default_value_t = RL_REQUESTS)]
    pub requests: u64,
    /// RL objectives: sft-anchored, no-reverse-kl, no-forward-kl.
    #[arg(long, value_delimiter = ',', default_value = "sft-anchored,no-reverse-kl,no-forward-kl")]
    pub objectives: Vec<String>,
    /// Request templates of the traffic: train, held-out or mixed.
    #[arg(long, default_value = "mixed")]
    pub split: String,
}

#[derive(Args)]
pub struct ScorerRefreshArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value_t = 4)]
    pub periods: usize,
    /// Requests per period.
    #[arg(long, default_value_t = 1_200)]
    pub requests: usize,
    /// Share of a period's requests labelled by a cloud answer.
    #[arg(long, default_value_t = 0.4)]
    pub label_rate: f64,
}

#[derive(Args)]
pub struct TheoremArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value_t = 2_000)]
    pub proposals: usize,
}

#[derive(Args)]
pub struct ThroughKafkaArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value_t = 1_500)]
    pub requests: u64,
    /// Requests per second produced to the broker.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    #[arg(long, default_value = "funcdyn")]
    pub policy: String,
}

#[derive(Args)]
pub struct AllArgs {
    #[command(flatten)]
    pub common: Common,
    /// Skip the broker run (for a machine without the local broker installed).
    #[arg(long)]
    pub no_kafka: bool,
}

/// rl-rounds' default size (also `eval all`'s).
const RL_ROUNDS: usize = 2;
const RL_REQUESTS: u64 = 10_000;

pub(crate) fn inputs(app: &AppConfig) -> Inputs {
    Inputs { edge: app.edge.clone(), router: app.router.clone(), cloud: app.cloud.simulated.clone(), trainer: app.trainer.clone() }
}

pub async fn run(app: &AppConfig, cmd: EvalCommand) -> anyhow::Result<()> {
    let command = command_line();
    match cmd {
        EvalCommand::Frontier(a) => {
            let lab = Lab::load(&inputs(app))?;
            let data = proposals(&lab, &a.common.seeds, a.proposals)?;
            run_frontier(&lab, &a.common, a.proposals, a.kappas.clone(), &data, &command)?;
            if a.through_kafka {
                run_through_kafka(app, &a.common, through_kafka::KafkaCheckSpec::default(), &command).await?;
            }
            Ok(())
        }
        EvalCommand::Dynamic(a) => {
            let lab = Lab::load(&inputs(app))?;
            let data = proposals(&lab, &a.common.seeds, a.proposals)?;
            let spec = dynamic::DynamicSpec { seeds: a.common.seeds.clone(), proposals: a.proposals, duration_s: a.minutes * 60.0, switches_per_minute: a.switches_per_minute, out: a.common.out.join("dynamic"), ..Default::default() };
            run_dynamic(&lab, &a.common, &spec, &data, &command)
        }
        EvalCommand::Theorem(a) => {
            let lab = Lab::load(&inputs(app))?;
            let data = proposals(&lab, &a.common.seeds, a.proposals)?;
            run_theorem(&lab, &a.common, a.proposals, &data, &command)
        }
        EvalCommand::ScorerRefresh(a) => {
            let lab = Lab::load(&inputs(app))?;
            let spec = scorer_refresh::ScorerRefreshSpec { seeds: a.common.seeds.clone(), periods: a.periods, requests: a.requests, label_rate: a.label_rate, out: a.common.out.join("scorer-refresh"), ..Default::default() };
            run_scorer_refresh(&lab, &a.common, &spec, &command)
        }
        EvalCommand::RlRounds(a) => {
            let objectives = a.objectives.iter().map(|o| Objective::parse(o)).collect::<anyhow::Result<Vec<_>>>()?;
            run_rl_rounds(app, &a.common, a.rounds, a.requests, objectives, &a.split, &command).await
        }
        EvalCommand::ThroughKafka(a) => {
            let spec = through_kafka::KafkaCheckSpec { requests: a.requests, rate: a.rate, policy: a.policy.clone(), ..Default::default() };
            run_through_kafka(app, &a.common, spec, &command).await
        }
        EvalCommand::All(a) => run_all(app, &a, &command).await,
    }
}

/// Every experiment at its default size; the proposals of the routing experiments are made once.
async fn run_all(app: &AppConfig, a: &AllArgs, command: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let c = &a.common;
    let timed = |name: &str, t: Instant| println!("== {name} done in {:.0} s (total {:.0} s) ==\n", t.elapsed().as_secs_f64(), started.elapsed().as_secs_f64());
    let lab = Lab::load(&inputs(app))?;
    let t = Instant::now();
    let proposals_n = 2_000;
    let data = proposals(&lab, &c.seeds, proposals_n)?;
    timed("edge proposals", t);
    let t = Instant::now();
    run_frontier(&lab, c, proposals_n, frontier::FrontierSpec::default().kappas, &data, command)?;
    timed("frontier", t);
    let t = Instant::now();
    let spec = dynamic::DynamicSpec { seeds: c.seeds.clone(), proposals: proposals_n, out: c.out.join("dynamic"), ..Default::default() };
    run_dynamic(&lab, c, &spec, &data, command)?;
    timed("dynamic", t);
    let t = Instant::now();
    run_theorem(&lab, c, proposals_n, &data, command)?;
    timed("theorem", t);
    let t = Instant::now();
    let spec = scorer_refresh::ScorerRefreshSpec { seeds: c.seeds.clone(), out: c.out.join("scorer-refresh"), ..Default::default() };
    run_scorer_refresh(&lab, c, &spec, command)?;
    timed("scorer-refresh", t);
    if !a.no_kafka {
        let t = Instant::now();
        run_through_kafka(app, c, through_kafka::KafkaCheckSpec::default(), command).await?;
        timed("through-kafka", t);
    }
    let t = Instant::now();
    run_rl_rounds(app, c, RL_ROUNDS, RL_REQUESTS, Objective::ALL.to_vec(), "mixed", command).await?;
    timed("rl-rounds", t);
    println!("every experiment done in {:.1} min; results: {}", started.elapsed().as_secs_f64() / 60.0, c.doc.display());
    Ok(())
}

fn proposals(lab: &Lab, seeds: &[u64], n: usize) -> anyhow::Result<Vec<SeedProposals>> {
    seeds.iter().map(|&s| lab.proposals(s, n, "held-out", true)).collect()
}

/// Image links in the document point at the experiment's folder, relative to the document.
fn images(doc: &Path, dir: &Path) -> String {
    let base = doc.parent().unwrap_or(Path::new(""));
    dir.strip_prefix(base).unwrap_or(dir).display().to_string()
}

fn finish(common: &Common, name: &str, dir: &Path, csv_name: &str, csv: String, section: String) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(csv_name), csv)?;
    // Sections name their plots by the experiment's folder; point them at where they were written.
    let section = section.replace(&format!("]({name}/"), &format!("]({}/", images(&common.doc, dir)));
    write_section(&common.doc, name, &section)?;
    println!("{section}");
    println!("rows: {} · section \"{name}\" of {}", dir.join(csv_name).display(), common.doc.display());
    Ok(())
}

fn run_frontier(lab: &Lab, c: &Common, proposals: usize, kappas: Vec<f64>, data: &[SeedProposals], command: &str) -> anyhow::Result<()> {
    let spec = frontier::FrontierSpec { seeds: c.seeds.clone(), proposals, kappas, out: c.out.join("frontier"), ..Default::default() };
    let rows = frontier::run(lab, &spec, data)?;
    let section = frontier::summarise(&rows, &spec, command)?;
    finish(c, "frontier", &spec.out, "frontier.csv", frontier::to_csv(&rows), section)
}

fn run_dynamic(lab: &Lab, c: &Common, spec: &dynamic::DynamicSpec, data: &[SeedProposals], command: &str) -> anyhow::Result<()> {
    let rows = dynamic::run(lab, spec, data)?;
    let spec = &dynamic::DynamicSpec { middle_score_share: Some(lab.middle_score_share(data)), ..spec.clone() };
    let section = dynamic::summarise(&rows, spec, command)?;
    finish(c, "dynamic", &spec.out, "dynamic.csv", dynamic::to_csv(&rows), section)
}

fn run_theorem(lab: &Lab, c: &Common, proposals: usize, data: &[SeedProposals], command: &str) -> anyhow::Result<()> {
    let spec = theorem::TheoremSpec { seeds: c.seeds.clone(), proposals, out: c.out.join("theorem"), ..Default::default() };
    let rows = theorem::run(lab, &spec, data);
    let section = theorem::summarise(lab, &rows, data, &spec, command)?;
    finish(c, "theorem", &spec.out, "theorem.csv", theorem::to_csv(&rows), section)
}

fn run_scorer_refresh(lab: &Lab, c: &Common, spec: &scorer_refresh::ScorerRefreshSpec, command: &str) -> anyhow::Result<()> {
    let rows = scorer_refresh::run(lab, spec)?;
    let section = scorer_refresh::summarise(&rows, spec, command)?;
    finish(c, "scorer-refresh", &spec.out, "scorer_refresh.csv", scorer_refresh::to_csv(&rows), section)
}

async fn run_through_kafka(app: &AppConfig, c: &Common, spec: through_kafka::KafkaCheckSpec, command: &str) -> anyhow::Result<()> {
    let spec = through_kafka::KafkaCheckSpec { seeds: c.seeds.clone(), out: c.out.join("through-kafka"), ..spec };
    let inputs = inputs(app);
    let mut rows = Vec::new();
    for &seed in &spec.seeds {
        let t = Instant::now();
        let measures = through_kafka::in_process(&inputs, &spec, seed).await?;
        println!("seed {seed} in-process: {measures:?} ({:.0} s)", t.elapsed().as_secs_f64());
        rows.push(through_kafka::ModeRow { mode: "in-process".into(), seed, measures });
        let t = Instant::now();
        let measures = crate::eval_kafka::run_seed(app, &inputs, &spec, seed).await?;
        println!("seed {seed} through Kafka: {measures:?} ({:.0} s)", t.elapsed().as_secs_f64());
        rows.push(through_kafka::ModeRow { mode: "kafka".into(), seed, measures });
    }
    let (section, _) = through_kafka::summarise(&rows, &spec, command);
    finish(c, "through-kafka", &spec.out, "through_kafka.csv", through_kafka::to_csv(&rows), section)
}

async fn run_rl_rounds(app: &AppConfig, c: &Common, rounds: usize, requests: u64, objectives: Vec<Objective>, split: &str, command: &str) -> anyhow::Result<()> {
    let out = c.out.join("rl-rounds");
    let spec = RlRoundsSpec {
        rounds,
        requests,
        seeds: c.seeds.clone(),
        objectives,
        policy: app.router.router.policy.clone(),
        split: split.to_string(),
        work_dir: out.join("lakes"),
        // Runs in parallel print rows, not progress bars.
        show_progress: parallel_runs() == 1,
        parallel: parallel_runs(),
    };
    println!(
        "rl-rounds: {} rounds × {} requests ({} templates), policy {}, objectives {:?}, seeds {:?}",
        spec.rounds,
        spec.requests,
        spec.split,
        spec.policy,
        spec.objectives.iter().map(|o| o.name()).collect::<Vec<_>>(),
        spec.seeds
    );
    println!("{:<14} {:>4} {:>5} {:<18} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>8} {:>8}", "objective", "seed", "round", "model", "offload", "explored", "success", "valid", "edge ok", "$/1k", "targets", "gate");
    let rows = rl_rounds::run(&spec, &inputs(app), print_row).await?;
    let section = rl_rounds::summarise(&rows, &spec, &out, command)?;
    finish(c, "rl-rounds", &out, "rl_rounds.csv", rl_rounds::to_csv(&rows), section)
}

/// rl-rounds runs at once: one per core (each run is single-threaded).
fn parallel_runs() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn print_row(r: &RoundRow) {
    let gate = match (&r.verdict, &r.reasons) {
        (None, _) => "-".to_string(),
        (Some(v), None) => v.clone(),
        (Some(v), Some(why)) => format!("{v}: {why}"),
    };
    println!(
        "{:<14} {:>4} {:>5} {:<18} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>7.3} {:>8} {}",
        r.objective,
        r.seed,
        r.round,
        r.model_version,
        r.traffic.offload_rate,
        r.traffic.explored_rate,
        r.traffic.task_success,
        r.traffic.schema_valid,
        r.traffic.edge_exact,
        r.traffic.cost_per_1k,
        r.rl_targets.map_or("-".to_string(), |n| n.to_string()),
        gate
    );
}
