//! `netgpt trainer`: trainer rounds, once or on a schedule.

use std::time::Duration;

use clap::Args;
use netgpt_archive::store::Lake;
use netgpt_core::bus::Producer;
use netgpt_core::records::ModelUpdate;
use netgpt_core::topics::{MODEL_UPDATES, POLICY_UPDATES};
use netgpt_dataset::engine::LogEngine;
use netgpt_edge::agent::EdgeAgent;
use netgpt_trainer::refit::{load_label_rows, policy_update, refit, store_bundle};
use netgpt_trainer::round::{load_targets, run_round, store_model, store_report};

use crate::AppConfig;
use crate::logs::open_lake;

#[derive(Args)]
pub struct TrainerArgs {
    /// Run one round and exit (for cron).
    #[arg(long, conflicts_with = "every")]
    pub once: bool,
    /// Run a round every DURATION (e.g. 90s, 10m, 1h) until Ctrl-C.
    #[arg(long, value_parser = parse_duration)]
    pub every: Option<Duration>,
    /// Train on the newest existing dataset build instead of building one from the logs first.
    #[arg(long)]
    pub no_build: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().map_err(|_| format!("{s:?}: expected a number and a unit (s, m, h)"))?;
    match unit {
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(60 * n)),
        "h" => Ok(Duration::from_secs(3600 * n)),
        _ => Err(format!("{s:?}: unit must be s, m or h")),
    }
}

pub async fn run(app: &AppConfig, args: TrainerArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.once || args.every.is_some(), "give --once or --every DURATION");
    app.trainer.rl.validate()?;
    let lake = open_lake(app)?;
    let shutdown = netgpt_core::shutdown_on_signals();
    loop {
        round(app, &lake, !args.no_build).await?;
        let Some(every) = args.every else { return Ok(()) };
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => return Ok(()),
        }
    }
}

/// The model the edge serves now: the newest edge update on the update topic, else the configured one.
async fn serving_model(app: &AppConfig) -> anyhow::Result<EdgeAgent> {
    if !app.core.kafka.bootstrap_servers.trim().is_empty() {
        let updates: Vec<ModelUpdate> = netgpt_core::bus::latest_per_key(&app.core.kafka, MODEL_UPDATES, Duration::from_secs(10)).await?;
        if let Some(u) = updates.iter().filter(|u| u.channel == "edge").max_by_key(|u| u.published_at) {
            return netgpt_edge::stage::load_update(u);
        }
    }
    EdgeAgent::load(&app.edge.model_dir, &app.edge.model_version)
}

/// One round: datasets, RL, gate, and (if accepted) the model stored and announced.
pub async fn round(app: &AppConfig, lake: &Lake, build: bool) -> anyhow::Result<Option<ModelUpdate>> {
    if build {
        let engine = LogEngine::open(lake).await?;
        netgpt_dataset::build::build(&engine, lake, netgpt_dataset::sql::DATASETS, None, true).await?;
    }
    let (dataset_version, targets) = load_targets(lake, app.trainer.max_targets).await?;
    let mut current = serving_model(app).await?;
    let (cfg, constrained) = (app.trainer.clone(), app.edge.constrained_decoding);
    let (candidate, mut report, current) = tokio::task::spawn_blocking(move || {
        let (candidate, report) = run_round(&cfg, &mut current, &dataset_version, targets, constrained, true)?;
        anyhow::Ok((candidate, report, current))
    })
    .await??;
    let mut update = None;
    if let (Some(mut c), true) = (candidate, report.gate.accepted) {
        let u = store_model(lake, &c, &current.version, serde_json::to_string(&report.gate.after)?).await?;
        report.candidate_version = Some(u.version.clone());
        c.version = u.version.clone();
        // The router's scorer and policy, refitted for the new model; without them nothing is announced.
        let rows = load_label_rows(lake).await?;
        let (settings, refit_cfg, old) = (app.router.clone(), app.trainer.refit.clone(), current_bundle(app).ok());
        let fitted = tokio::task::spawn_blocking(move || refit(&c, &rows, &settings, old.as_ref(), &refit_cfg)).await?;
        match fitted {
            Ok((bundle, proposals, refit_report)) => {
                let uri = store_bundle(lake, &bundle, &proposals).await?;
                let pu = policy_update(&bundle, &app.router.router.policy, &uri)?;
                report.refit = Some(refit_report);
                report.policy_version = Some(pu.version.clone());
                publish(app, &pu, &u).await?;
                update = Some(u);
            }
            Err(e) => {
                report.gate.accepted = false;
                report.gate.reasons.push(format!("the router could not be refitted for the new model, so neither is published: {e}"));
            }
        }
    }
    let at = store_report(lake, &report).await?;
    print_report(&report, &at);
    Ok(update)
}

/// The router bundle in use (router.bundle_dir): its scorer is the "old scorer" of the refit report.
fn current_bundle(app: &AppConfig) -> anyhow::Result<netgpt_router::bundle::RouterBundle> {
    netgpt_router::bundle::RouterBundle::load(&app.router.router.bundle_dir)
}

/// Policy first, then model: the router knows the policy for the new model
/// before any proposal of it can arrive (it keeps the old model's policy for
/// proposals in flight).
async fn publish(app: &AppConfig, policy: &netgpt_core::records::PolicyUpdate, model: &ModelUpdate) -> anyhow::Result<()> {
    if app.core.kafka.bootstrap_servers.trim().is_empty() {
        println!("trainer: no kafka.bootstrap_servers configured: {} and {} stored in the lake but not announced", model.version, policy.version);
        return Ok(());
    }
    let producer = Producer::new(&app.core.kafka)?;
    producer.send(POLICY_UPDATES, policy).await.await.map_err(|e| anyhow::anyhow!("publishing the policy update: {e}"))?;
    producer.send(MODEL_UPDATES, model).await.await.map_err(|e| anyhow::anyhow!("publishing the model update: {e}"))?;
    Ok(())
}

fn print_report(r: &netgpt_trainer::round::RoundReport, at: &str) {
    if let Some(why) = &r.skipped {
        println!("trainer: round skipped: {why}");
        return;
    }
    println!("trainer round on {} ({} cloud targets, {} learnable), from {}:", r.dataset_version, r.targets, r.learnable_targets, r.current_version);
    println!("  {:>4} {:>8} {:>7} {:>7} {:>9} {:>8} {:>7}", "iter", "reward", "exact", "valid", "KL(old)", "NLL", "clip");
    for (i, s) in r.iterations.iter().enumerate() {
        println!("  {:>4} {:>8.3} {:>7.3} {:>7.3} {:>9.5} {:>8.4} {:>7.3}", i + 1, s.mean_reward, s.exact_rate, s.valid_rate, s.kl_old, s.nll_targets, s.clip_fraction);
    }
    let (b, a) = (&r.gate.before, &r.gate.after);
    println!("  held-out (as served)      task success {:.4} → {:.4}   schema-valid {:.4} → {:.4}", b.task_success, a.task_success, b.schema_valid, a.schema_valid);
    println!("  held-out (unconstrained)  task success {:.4} → {:.4}   schema-valid {:.4} → {:.4}", b.raw_task_success, a.raw_task_success, b.raw_schema_valid, a.raw_schema_valid);
    if let Some(f) = &r.refit {
        let old = f.old_scorer.as_ref().map_or("-".to_string(), |c| format!("{:.4}", c.ece));
        println!(
            "  router refit on {} labelled proposals ({} cloud-answered requests; candidate right on {:.3}): ECE old scorer {old}, new raw {:.4}, new calibrated {:.4} ({:.1} s)",
            f.labelled, f.rows, f.candidate_accuracy, f.new_raw.ece, f.new_calibrated.ece, f.seconds
        );
    }
    match (&r.candidate_version, r.gate.accepted) {
        (Some(v), true) => println!("  gate: accepted → {v}, policy {}", r.policy_version.as_deref().unwrap_or("-")),
        _ => println!("  gate: rejected: {}", r.gate.reasons.join("; ")),
    }
    println!("  RL {:.1} s, gate {:.1} s; report at {at}", r.rl_seconds, r.gate_seconds);
}
