//! `netgpt trainer`: trainer rounds, once or on a schedule.

use std::time::Duration;

use clap::Args;
use netgpt_archive::store::Lake;
use netgpt_core::bus::Producer;
use netgpt_core::records::{ModelUpdate, PolicyUpdate};
use netgpt_core::topics::{MODEL_UPDATES, POLICY_UPDATES};
use netgpt_router::stage::ACTIVE_CHANNEL;
use netgpt_dataset::engine::LogEngine;
use netgpt_edge::agent::EdgeAgent;
use netgpt_router::bundle::RouterBundle;
use netgpt_trainer::publish::{KafkaPublisher, NoPublisher, Publisher, RegistryEntry, RoundSetup, registry, rollback_pair};

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

/// The router bundle in use: the one the newest active `PolicyUpdate` names
/// (after a published round), else the configured one. Only the refit
/// report's calibration comparison reads it, so a bundle that cannot be
/// loaded leaves that comparison out rather than failing the round.
async fn serving_bundle(app: &AppConfig) -> Option<RouterBundle> {
    if !app.core.kafka.bootstrap_servers.trim().is_empty() {
        let updates: anyhow::Result<Vec<PolicyUpdate>> = netgpt_core::bus::latest_per_key(&app.core.kafka, POLICY_UPDATES, Duration::from_secs(10)).await;
        let newest = updates.ok().and_then(|us| us.into_iter().filter(|u| u.channel == ACTIVE_CHANNEL).max_by_key(|u| u.published_at));
        if let Some(uri) = newest.and_then(|u| u.scorer_uri) {
            match netgpt_core::config::local_path(&uri).and_then(|dir| RouterBundle::load(&dir)) {
                Ok(b) => return Some(b),
                Err(e) => tracing::warn!(uri = %uri, error = %e, "the served router bundle could not be loaded; comparing with the configured one"),
            }
        }
    }
    RouterBundle::load(&app.router.router.bundle_dir).ok()
}

/// One round: datasets, RL, gate, and (if accepted) model and refitted
/// policy stored and announced together.
pub async fn round(app: &AppConfig, lake: &Lake, build: bool) -> anyhow::Result<Option<(PolicyUpdate, ModelUpdate)>> {
    if build {
        let engine = LogEngine::open(lake).await?;
        netgpt_dataset::build::build(&engine, lake, netgpt_dataset::sql::DATASETS, None, true).await?;
    }
    let current = serving_model(app).await?;
    let setup = RoundSetup {
        cfg: &app.trainer,
        router: &app.router,
        current_bundle: serving_bundle(app).await,
        constrained: app.edge.constrained_decoding,
        show_progress: true,
    };
    let publisher = publisher(app)?;
    let outcome = netgpt_trainer::publish::round(setup, lake, current, publisher.as_ref()).await?;
    print_report(&outcome.report, &outcome.report_url);
    if outcome.published.is_some() && app.core.kafka.bootstrap_servers.trim().is_empty() {
        println!("trainer: no kafka.bootstrap_servers configured: stored in the lake, not announced");
    }
    Ok(outcome.published)
}

fn publisher(app: &AppConfig) -> anyhow::Result<Box<dyn Publisher>> {
    if app.core.kafka.bootstrap_servers.trim().is_empty() {
        return Ok(Box::new(NoPublisher));
    }
    Ok(Box::new(KafkaPublisher(Producer::new(&app.core.kafka)?)))
}

#[derive(clap::Subcommand)]
pub enum ModelCommand {
    /// Go back to the model (and the router policy fitted for it) before the
    /// newest one the trainer published: policy, then model, re-announced.
    Rollback,
    /// The trainer's published models, oldest first.
    List,
}

pub async fn model(app: &AppConfig, cmd: ModelCommand) -> anyhow::Result<()> {
    let lake = open_lake(app)?;
    let entries = registry(&lake).await?;
    match cmd {
        ModelCommand::List => {
            for e in &entries {
                println!("{:<9} {:<18} parent {:<18} policy {:<40} published {}", e.kind, e.model.version, e.model.parent_version.as_deref().unwrap_or("-"), e.policy.version, e.model.published_at.0);
            }
            if entries.is_empty() {
                println!("the trainer has published nothing yet");
            }
            Ok(())
        }
        ModelCommand::Rollback => {
            let entry = match rollback_pair(&entries)? {
                Some(e) => e,
                None => configured_pair(app, entries.last().and_then(|e| e.model.parent_version.clone()).unwrap_or_default(), netgpt_trainer::publish::rollback_stamp(&entries))?,
            };
            anyhow::ensure!(!app.core.kafka.bootstrap_servers.trim().is_empty(), "a rollback is announced on the update topics: configure kafka.bootstrap_servers");
            publisher(app)?.publish(&entry.policy, &entry.model).await?;
            netgpt_trainer::publish::record(&lake, &entry).await?;
            println!("rolled back to {} with policy {}", entry.model.version, entry.policy.version);
            Ok(())
        }
    }
}

/// The configured model and router policy as a pair to re-announce (the
/// parent of the trainer's first model).
fn configured_pair(app: &AppConfig, expect: String, now: netgpt_core::avro::TimestampMillis) -> anyhow::Result<RegistryEntry> {
    anyhow::ensure!(expect == app.edge.model_version, "the parent {expect} is neither in the registry nor the configured edge model ({})", app.edge.model_version);
    let dir = std::fs::canonicalize(&app.edge.model_dir)?;
    let model = ModelUpdate {
        channel: "edge".into(),
        version: app.edge.model_version.clone(),
        parent_version: None,
        weights_uri: format!("file://{}", dir.display()),
        weights_sha256: netgpt_edge::stage::sha256_file(&dir.join(netgpt_edge::agent::WEIGHTS_FILE))?,
        metrics_json: "{}".into(),
        published_at: now,
    };
    let bundle_dir = std::fs::canonicalize(&app.router.router.bundle_dir)?;
    let bundle = RouterBundle::load(&bundle_dir)?;
    anyhow::ensure!(bundle.model_version == app.edge.model_version, "the configured router bundle was fitted for {}, not {}", bundle.model_version, app.edge.model_version);
    let policy = PolicyUpdate { published_at: now, ..bundle.policy_update(&app.router.router.policy, Some(&format!("file://{}", bundle_dir.display())))? };
    Ok(RegistryEntry { kind: "rollback".into(), policy, model })
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
