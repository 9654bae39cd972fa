//! `netgpt train sft`: supervised training of the edge model.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use netgpt_edge::sft::{EvalReport, SftConfig, tier_names, train_sft};

#[derive(Subcommand)]
pub enum TrainCommand {
    /// Train the edge model from scratch on the synthetic workload and report
    /// held-out accuracy by difficulty tier.
    Sft(SftArgs),
    /// Fit the router: run the edge model over held-out requests, label each
    /// proposal right or wrong, fit the calibrated scorer and every policy
    /// (fixed τ, RouteLLM-style, FuncDyn, PolicyNet, oracle), write the bundle.
    Router(RouterArgs),
}

#[derive(Args)]
pub struct RouterArgs {
    /// Output directory [default: router.bundle_dir].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Labelled proposals to fit on (split four ways: scorer, calibration map, policy fit, test).
    #[arg(long, default_value_t = 3000)]
    pub proposals: usize,
    #[arg(long, default_value_t = 2024)]
    pub seed: u64,
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
    /// Share of prompt words dropped in training.
    #[arg(long)]
    pub word_dropout: Option<f64>,
    /// Probability of each framing augmentation of a training prompt.
    #[arg(long)]
    pub augment: Option<f64>,
}

pub fn run(app: &crate::AppConfig, cmd: TrainCommand) -> anyhow::Result<()> {
    match cmd {
        TrainCommand::Router(a) => train_router(app, a),
        TrainCommand::Sft(a) => {
            let d = SftConfig::default();
            let cfg = SftConfig {
                seed: a.seed.unwrap_or(d.seed),
                steps: a.steps.unwrap_or(d.steps),
                batch: a.batch.unwrap_or(d.batch),
                lr: a.lr.unwrap_or(d.lr),
                eval_per_tier: a.eval_per_tier.unwrap_or(d.eval_per_tier),
                word_dropout: a.word_dropout.unwrap_or(d.word_dropout),
                augment: a.augment.unwrap_or(d.augment),
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
    /// Instead of the evaluation, print the model's proposal for this request
    /// (repeatable), with its scores and schema check.
    #[arg(long)]
    pub prompt: Vec<String>,
    /// Evaluate a pretrained GGUF chat model (llama or qwen2 architecture,
    /// ChatML) instead of a model directory; infra/smollm2.sh fetches one.
    #[arg(long, conflicts_with_all = ["model", "constrained"])]
    pub gguf: Option<PathBuf>,
    /// How the GGUF weights are held: quantized, f32 (faster without a
    /// target-cpu build) or auto.
    #[arg(long, default_value = "auto")]
    pub gguf_weights: String,
}

/// `netgpt eval-edge`: held-out accuracy of a model directory.
pub fn eval_edge(default_dir: &std::path::Path, a: EvalEdgeArgs) -> anyhow::Result<()> {
    if let Some(path) = &a.gguf {
        return eval_gguf(path, &a);
    }
    let dir = a.model.unwrap_or_else(|| default_dir.to_path_buf());
    let mut agent = netgpt_edge::agent::EdgeAgent::load(&dir, "eval")?;
    agent.constrained = a.constrained;
    println!("model {}, {} decoding", dir.display(), if a.constrained { "schema-constrained" } else { "unconstrained" });
    if !a.prompt.is_empty() {
        for prompt in &a.prompt {
            let p = agent.propose(prompt)?;
            print_proposal(prompt, &p);
        }
        return Ok(());
    }
    print_eval(&netgpt_edge::sft::evaluate(&agent, netgpt_edge::workload::Split::HeldOut, a.seed, a.per_tier)?);
    Ok(())
}

/// `netgpt eval-edge --gguf`: the same held-out requests (or `--prompt`s)
/// through a pretrained GGUF chat model.
fn eval_gguf(path: &std::path::Path, a: &EvalEdgeArgs) -> anyhow::Result<()> {
    use netgpt_edge::gguf::{GgufEdge, Weights};
    let edge = GgufEdge::load_with(path, a.gguf_weights.parse::<Weights>()?)?;
    let c = &edge.model.config;
    println!(
        "GGUF model {} ({}, {:?}: {} layers, {} heads, {} key/value heads, {} weights), loaded in {:.1} s with its {}-token system turn; unconstrained greedy decoding",
        path.display(),
        c.name,
        c.arch,
        c.layers,
        c.heads,
        c.kv_heads,
        if edge.model.dequantized { "f32" } else { "quantized" },
        edge.load_time.as_secs_f64(),
        edge.prefix_tokens()
    );
    if !a.prompt.is_empty() {
        for prompt in &a.prompt {
            let (p, g) = edge.propose_timed(prompt)?;
            print_proposal(prompt, &p);
            println!("  {} output tokens in {:.0} ms ({} request tokens in {:.0} ms, then {:.1} ms per token)", p.output_tokens, p.latency.as_secs_f64() * 1e3, g.prompt_tokens, g.prefill.as_secs_f64() * 1e3, g.decode.as_secs_f64() * 1e3 / p.output_tokens.saturating_sub(1).max(1) as f64);
        }
        return Ok(());
    }
    let progress = |done: usize, total: usize| {
        if done.is_multiple_of(10) || done == total {
            eprintln!("  {done}/{total} requests");
        }
    };
    let e = netgpt_edge::gguf::evaluate(&edge, netgpt_edge::workload::Split::HeldOut, a.seed, a.per_tier, progress)?;
    print_eval(&e.report);
    println!(
        "  cost: {:.1} output tokens per request, {:.1} ms per output token end to end; {:.0} ms per request turn ({:.1} tokens), then {:.1} ms per decoded token",
        e.output_tokens as f64 / e.requests.max(1) as f64,
        e.ms_per_output_token(),
        e.prefill.as_secs_f64() * 1e3 / e.requests.max(1) as f64,
        e.prompt_tokens as f64 / e.requests.max(1) as f64,
        e.decode_ms_per_token()
    );
    Ok(())
}

fn print_proposal(prompt: &str, p: &netgpt_edge::agent::Proposal) {
    let check = if p.check.valid { "schema-valid".to_string() } else { format!("invalid: {}", p.check.error.as_deref().unwrap_or("?")) };
    let unknown = p.unknown_word_share.map_or(String::new(), |u| format!(", {:.0}% unknown words", 100.0 * u));
    println!("{prompt:?}\n  {}\n  mean log-prob {:.3}, min {:.3}, entropy {:.3}{unknown}, {check}", p.call_json, p.mean_logprob, p.min_logprob, p.mean_entropy);
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
    let weak: Vec<_> = r.by_template.iter().filter(|t| t.exact < 0.8).collect();
    if !weak.is_empty() {
        println!("  templates below 80 % exact:");
        for t in weak {
            println!("    {:<6} {:>5.1}% of {:>3}  {} {:?}", t.tier, 100.0 * t.exact, t.n, t.tool, t.template);
        }
    }
    let m = &r.overall;
    println!("  {:<8} {:>6} {:>7.1}% {:>12.1}% {:>12.1}%   mean latency {:.2} ms", "all", m.n, 100.0 * m.exact, 100.0 * m.schema_valid, 100.0 * m.tool_correct, r.mean_latency_ms);
    let sep = &r.separation;
    let known = sep.auroc_known_words.map_or(String::new(), |a| format!(", {a:.3} (share of known request words)"));
    println!("  right vs wrong calls: AUROC {:.3} (mean token log-prob), {:.3} (min token log-prob){known}", sep.auroc_mean_logprob, sep.auroc_min_logprob);
    println!("  reliability of the raw sequence probability (uncalibrated):");
    println!("    {:<11} {:>5} {:>11} {:>9}", "confidence", "n", "mean conf", "accuracy");
    for b in sep.reliability.iter().filter(|b| b.n > 0) {
        println!("    [{:.1}, {:.1}) {:>5} {:>11.3} {:>9.3}", b.lo, b.hi, b.n, b.mean_confidence, b.accuracy);
    }
}

/// Runs the edge model over `n` held-out requests and labels each proposal by
/// the request's reference call.
pub fn labelled_proposals(app: &crate::AppConfig, n: usize, seed: u64, progress: bool) -> anyhow::Result<Vec<netgpt_router::fit::LabelledProposal>> {
    use rand::SeedableRng;
    let mut agent = netgpt_edge::agent::EdgeAgent::load(&app.edge.model_dir, &app.edge.model_version)?;
    agent.constrained = app.edge.constrained_decoding;
    let source = netgpt_sim::traffic::RequestSource::new("held-out", app.core.loadgen.sites)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let requests: Vec<_> = (0..n).map(|_| source.request(&mut rng, netgpt_core::avro::TimestampMillis::now())).collect();
    netgpt_sim::edge::labelled_proposals(&agent, &requests, progress)
}

fn train_router(app: &crate::AppConfig, a: RouterArgs) -> anyhow::Result<()> {
    let out = a.out.unwrap_or_else(|| app.router.router.bundle_dir.clone());
    let started = std::time::Instant::now();
    println!("fitting the router for edge model {} ({}) on {} held-out proposals, seed {}", app.edge.model_version, app.edge.model_dir.display(), a.proposals, a.seed);
    let proposals = labelled_proposals(app, a.proposals, a.seed, true)?;
    let (bundle, proposals) = netgpt_router::bundle::fit_bundle(proposals, &app.router, &app.edge.model_version, a.seed)?;
    bundle.save(&out, &proposals)?;
    print_bundle(&bundle);
    println!("bundle {} written to {} in {:.0} s", bundle.version, out.display(), started.elapsed().as_secs_f64());
    Ok(())
}

pub fn print_bundle(b: &netgpt_router::bundle::RouterBundle) {
    let r = &b.report;
    println!("edge accuracy on these proposals: {:.1}% of {}", 100.0 * r.edge_accuracy, r.proposals);
    println!(
        "scorer {} (ranker on {}, isotonic map on {}); on {} held-back proposals: ECE {:.3} -> {:.3}, Brier {:.3} -> {:.3} (raw logistic -> calibrated), AUROC {}",
        b.scorer.version,
        r.scorer_train,
        r.scorer_calibration,
        r.calibration_after.n,
        r.calibration_before.ece,
        r.calibration_after.ece,
        r.calibration_before.brier,
        r.calibration_after.brier,
        r.calibration_after.auroc.map_or("n/a (one outcome only)".to_string(), |a| format!("{a:.3}"))
    );
    println!("  reliability after calibration: {:<8} {:>5} {:>8} {:>9}", "bin", "n", "score", "accuracy");
    for (lo, n, s, acc) in &r.calibration_after.bins {
        println!("  {:>30}[{lo:.1}, {:.1}) {n:>5} {s:>8.3} {acc:>9.3}", "", lo + 0.1);
    }
    println!("policies on {} simulated test samples (held-back proposals x network states; utility = success - ΔC on fallbacks):", r.test_samples);
    println!("  {:<10} {:>8} {:>8} {:>8} {:>10} {:>12}", "policy", "utility", "success", "cloud", "price/req", "added lat.");
    for name in netgpt_router::policy::POLICY_NAMES {
        if let Some(o) = r.outcomes.get(name) {
            println!("  {:<10} {:>8.4} {:>7.1}% {:>7.1}% {:>10.5} {:>10.0}ms", name, o.utility, 100.0 * o.success, 100.0 * o.cloud_fraction, o.price, 1e3 * o.added_latency_s);
        }
    }
    if let Some(netgpt_router::policy::PolicySpec::FuncDyn(f)) = b.policies.get("funcdyn") {
        println!("FuncDyn θ = [{:.3}, {:.3}/s RTT, {:.3}/s transfer, {:.1}/currency]", f.theta[0], f.theta[1], f.theta[2], f.theta[3]);
    }
}
