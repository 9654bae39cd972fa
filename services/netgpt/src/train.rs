//! `netgpt train sft`: supervised training of the edge model.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use netgpt_edge::sft::{EvalReport, SftConfig, tier_names, train_sft};

#[derive(Subcommand)]
pub enum TrainCommand {
    /// Train the edge model from scratch on the synthetic workload and report
    /// held-out accuracy by difficulty tier.
    Sft(SftArgs),
}

#[derive(Args)]
pub struct SftArgs {
    /// Output directory (weights, config, tokenizer, metrics).
    #[arg(long, default_value = "services/edge/checkpoint")]
    pub out: PathBuf,
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long)]
    pub steps: Option<usize>,
    #[arg(long)]
    pub batch: Option<usize>,
    #[arg(long)]
    pub lr: Option<f64>,
    /// Held-out requests evaluated per difficulty tier.
    #[arg(long)]
    pub eval_per_tier: Option<usize>,
}

pub fn run(cmd: TrainCommand) -> anyhow::Result<()> {
    match cmd {
        TrainCommand::Sft(a) => {
            let d = SftConfig::default();
            let cfg = SftConfig {
                seed: a.seed.unwrap_or(d.seed),
                steps: a.steps.unwrap_or(d.steps),
                batch: a.batch.unwrap_or(d.batch),
                lr: a.lr.unwrap_or(d.lr),
                eval_per_tier: a.eval_per_tier.unwrap_or(d.eval_per_tier),
                ..d
            };
            println!("training the edge model: {} steps x {} requests, seed {} -> {}", cfg.steps, cfg.batch, cfg.seed, a.out.display());
            let r = train_sft(&cfg, &a.out, true)?;
            println!(
                "{} parameters, {:.0} s ({:.1} steps/s), final loss {:.4}",
                r.parameters, r.train_seconds, r.steps_per_second, r.final_loss
            );
            print_eval(&r.held_out);
            print_eval(&r.train);
            println!("metrics: {}", a.out.join(netgpt_edge::agent::METRICS_FILE).display());
            Ok(())
        }
    }
}

#[derive(Args)]
pub struct EvalEdgeArgs {
    /// Model directory [default: edge.model_dir].
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Decode with schema constraints.
    #[arg(long)]
    pub constrained: bool,
    #[arg(long, default_value_t = 300)]
    pub per_tier: usize,
    /// Seed of the held-out requests (the training run used its seed + 1000).
    #[arg(long, default_value_t = 1007)]
    pub seed: u64,
}

/// `netgpt eval-edge`: held-out accuracy of a model directory.
pub fn eval_edge(default_dir: &std::path::Path, a: EvalEdgeArgs) -> anyhow::Result<()> {
    let dir = a.model.unwrap_or_else(|| default_dir.to_path_buf());
    let mut agent = netgpt_edge::agent::EdgeAgent::load(&dir, "eval")?;
    agent.constrained = a.constrained;
    println!("model {}, {} decoding", dir.display(), if a.constrained { "schema-constrained" } else { "unconstrained" });
    print_eval(&netgpt_edge::sft::evaluate(&agent, netgpt_edge::workload::Split::HeldOut, a.seed, a.per_tier)?);
    Ok(())
}

pub fn print_eval(r: &EvalReport) {
    println!("{} requests (seed {}):", r.split, r.seed);
    println!("  {:<8} {:>6} {:>8} {:>13} {:>13}", "tier", "n", "exact", "schema-valid", "right tool");
    for tier in tier_names() {
        if let Some(m) = r.by_tier.get(tier) {
            println!("  {:<8} {:>6} {:>7.1}% {:>12.1}% {:>12.1}%", tier, m.n, 100.0 * m.exact, 100.0 * m.schema_valid, 100.0 * m.tool_correct);
        }
    }
    if std::env::var_os("NETGPT_SHOW_ERRORS").is_some() {
        for (prompt, want, got) in &r.examples_wrong {
            println!("  x {prompt:?}\n      want {want}\n      got  {got}");
        }
    }
    let m = &r.overall;
    println!("  {:<8} {:>6} {:>7.1}% {:>12.1}% {:>12.1}%   mean latency {:.2} ms", "all", m.n, 100.0 * m.exact, 100.0 * m.schema_valid, 100.0 * m.tool_correct, r.mean_latency_ms);
    let sep = &r.separation;
    println!("  right vs wrong calls: AUROC {:.3} (mean token log-prob), {:.3} (min token log-prob)", sep.auroc_mean_logprob, sep.auroc_min_logprob);
    println!("  reliability of the raw sequence probability (uncalibrated):");
    println!("    {:<11} {:>5} {:>11} {:>9}", "confidence", "n", "mean conf", "accuracy");
    for b in sep.reliability.iter().filter(|b| b.n > 0) {
        println!("    [{:.1}, {:.1}) {:>5} {:>11.3} {:>9.3}", b.lo, b.hi, b.n, b.mean_confidence, b.accuracy);
    }
}
