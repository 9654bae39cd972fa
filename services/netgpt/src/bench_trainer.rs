//! `netgpt bench trainer`: seconds per trainer round and per router refit on
//! a simulated offload log of a stated size.

use std::time::Instant;

use netgpt_dataset::engine::LogEngine;
use netgpt_edge::agent::EdgeAgent;
use netgpt_router::bundle::RouterBundle;
use netgpt_sim::offload::OffloadLogSpec;
use netgpt_trainer::refit::{load_label_rows, refit};
use netgpt_trainer::round::{load_targets, run_round};

use crate::AppConfig;
use netgpt_core::config::netgpt_home;

pub async fn trainer(app: &AppConfig, requests: u64, seed: u64, runs: usize) -> anyhow::Result<()> {
    app.trainer.rl.validate()?;
    let spec = OffloadLogSpec { requests, seed, sites: 8, ..Default::default() };
    let dir = netgpt_home().join(format!("bench/offload-{requests}-{seed}"));
    let lake = crate::bench_logs::offload_log(app, &spec, &dir).await?;
    let started = Instant::now();
    let engine = LogEngine::open(&lake).await?;
    let manifest = netgpt_dataset::build::build(&engine, &lake, netgpt_dataset::sql::DATASETS, Some("bench-trainer".into()), true).await?;
    let build_seconds = started.elapsed().as_secs_f64();
    let (version, targets) = load_targets(&lake, app.trainer.max_targets).await?;
    let rows = load_label_rows(&lake).await?;
    let bundle = RouterBundle::load(&app.router.router.bundle_dir).ok();
    let rl = &app.trainer.rl;
    println!(
        "trainer on {requests} simulated requests: datasets built in {build_seconds:.1} s ({} sft_targets rows); {} RL-side targets, {} refit-side cloud-answered rows",
        manifest.datasets.get("sft_targets").map_or(0, |d| d.rows),
        targets.len(),
        rows.len()
    );
    println!(
        "RL round: {} iterations × {} prompts × {} samples, {} epochs, minibatch {}; gate: {} held-out requests per tier; refit: at most {} labelled proposals",
        rl.iterations, rl.prompts_per_iteration, rl.group_size, rl.epochs, rl.minibatch, app.trainer.gate.per_tier, app.trainer.refit.proposals
    );
    println!("{:>4} {:>10} {:>8} {:>9} {:>10}", "run", "learnable", "RL s", "gate s", "refit s");
    let (mut best_rl, mut best_gate, mut best_refit) = (f64::INFINITY, f64::INFINITY, f64::INFINITY);
    for run in 1..=runs.max(1) {
        let mut current = EdgeAgent::load(&app.edge.model_dir, &app.edge.model_version)?;
        current.constrained = app.edge.constrained_decoding;
        let (cfg, targets, version, constrained) = (app.trainer.clone(), targets.clone(), version.clone(), app.edge.constrained_decoding);
        let (candidate, report) = tokio::task::spawn_blocking(move || run_round(&cfg, &mut current, &version, targets, constrained, false)).await??;
        let Some(mut candidate) = candidate else {
            anyhow::bail!("no RL round ran: {}", report.skipped.unwrap_or_default());
        };
        candidate.constrained = constrained;
        let started = Instant::now();
        let (settings, refit_cfg, rows, old) = (app.router.clone(), app.trainer.refit.clone(), rows.clone(), bundle.clone());
        tokio::task::spawn_blocking(move || refit(&candidate, &rows, &settings, old.as_ref(), &refit_cfg)).await??;
        let refit_seconds = started.elapsed().as_secs_f64();
        println!("{run:>4} {:>10} {:>8.1} {:>9.1} {:>10.1}", report.learnable_targets, report.rl_seconds, report.gate_seconds, refit_seconds);
        best_rl = best_rl.min(report.rl_seconds);
        best_gate = best_gate.min(report.gate_seconds);
        best_refit = best_refit.min(refit_seconds);
    }
    println!(
        "\nbest of {}: RL round {best_rl:.1} s, gate {best_gate:.1} s, router refit {best_refit:.1} s ({} build; candle threads: RAYON_NUM_THREADS={})",
        runs.max(1),
        if cfg!(debug_assertions) { "dev" } else { "release" },
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "unset".into())
    );
    Ok(())
}
