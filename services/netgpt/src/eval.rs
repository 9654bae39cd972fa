//! `netgpt eval EXPERIMENT`: the evaluation's experiments, in-process.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use netgpt_eval::rl_rounds::{Inputs, Objective, RlRoundsSpec, RoundRow, to_csv};

use crate::AppConfig;

#[derive(Subcommand)]
pub enum EvalCommand {
    /// Online trainer rounds: each round's traffic is served by the current
    /// edge model and router policy and logged; a trainer round on those logs
    /// (RL, gate, router refit) gives the next pair. Prints offload rate, task
    /// success and schema validity per round; writes rl_rounds.csv.
    RlRounds(RlRoundsArgs),
}

#[derive(Args)]
pub struct RlRoundsArgs {
    /// Trainer rounds per run.
    #[arg(long, default_value_t = 4)]
    pub rounds: usize,
    /// Requests of traffic per round.
    #[arg(long, default_value_t = 5_000)]
    pub requests: u64,
    /// One run per seed (and objective).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub seeds: Vec<u64>,
    /// RL objectives: sft-anchored, no-reverse-kl, no-forward-kl.
    #[arg(long, value_delimiter = ',', default_value = "sft-anchored")]
    pub objectives: Vec<String>,
    /// Request templates of the traffic: train, held-out or mixed.
    #[arg(long, default_value = "mixed")]
    pub split: String,
    /// Results (CSV) go here; each run's lake under OUT/lakes/.
    #[arg(long, default_value = "results/rl-rounds")]
    pub out: PathBuf,
}

pub async fn run(app: &AppConfig, cmd: EvalCommand) -> anyhow::Result<()> {
    match cmd {
        EvalCommand::RlRounds(args) => rl_rounds(app, args).await,
    }
}

async fn rl_rounds(app: &AppConfig, args: RlRoundsArgs) -> anyhow::Result<()> {
    let objectives = args.objectives.iter().map(|o| Objective::parse(o)).collect::<anyhow::Result<Vec<_>>>()?;
    let spec = RlRoundsSpec {
        rounds: args.rounds,
        requests: args.requests,
        seeds: args.seeds.clone(),
        objectives,
        policy: app.router.router.policy.clone(),
        split: args.split.clone(),
        work_dir: args.out.join("lakes"),
        show_progress: true,
    };
    let inputs = Inputs { edge: app.edge.clone(), router: app.router.clone(), cloud: app.cloud.simulated.clone(), trainer: app.trainer.clone() };
    println!(
        "rl-rounds: {} rounds × {} requests ({} templates), policy {}, objectives {}, seeds {:?}",
        spec.rounds,
        spec.requests,
        spec.split,
        spec.policy,
        args.objectives.join(","),
        spec.seeds
    );
    println!("{:<14} {:>4} {:>5} {:<18} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>8} {:>8}", "objective", "seed", "round", "model", "offload", "explored", "success", "valid", "edge ok", "$/1k", "targets", "gate");
    let rows = netgpt_eval::rl_rounds::run(&spec, &inputs, print_row).await?;
    std::fs::create_dir_all(&args.out)?;
    let csv = args.out.join("rl_rounds.csv");
    std::fs::write(&csv, to_csv(&rows))?;
    println!("rows: {}", csv.display());
    Ok(())
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
        r.offload_rate,
        r.explored_rate,
        r.task_success,
        r.schema_valid,
        r.edge_exact,
        r.cost_per_1k,
        r.rl_targets.map_or("-".to_string(), |n| n.to_string()),
        gate
    );
}
