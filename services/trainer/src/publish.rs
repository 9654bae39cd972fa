//! A round to the end: an accepted candidate stored, the router refitted for
//! it, and both announced together — `PolicyUpdate` first, then
//! `ModelUpdate` — with a registry entry that `netgpt model rollback` reads.

use futures::future::BoxFuture;
use netgpt_archive::store::Lake;
use netgpt_core::avro::TimestampMillis;
use netgpt_core::bus::Producer;
use netgpt_core::records::{ModelUpdate, PolicyUpdate};
use netgpt_core::topics::{MODEL_UPDATES, POLICY_UPDATES};
use netgpt_edge::agent::EdgeAgent;
use netgpt_router::RouterSettings;
use netgpt_router::bundle::RouterBundle;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};

use crate::TrainerConfig;
use crate::refit::{load_label_rows, policy_update, refit, store_bundle};
use crate::round::{RoundReport, load_targets, run_round, store_model, store_report};

/// Where updates go: the update topics, or nowhere (a dry run).
pub trait Publisher: Send + Sync {
    /// The policy for the new model first, then the model: the router knows
    /// the policy before any proposal of the new model can reach it, and keeps
    /// the old model's policy for proposals still in flight.
    fn publish<'a>(&'a self, policy: &'a PolicyUpdate, model: &'a ModelUpdate) -> BoxFuture<'a, anyhow::Result<()>>;
}

pub struct KafkaPublisher(pub Producer);

impl Publisher for KafkaPublisher {
    fn publish<'a>(&'a self, policy: &'a PolicyUpdate, model: &'a ModelUpdate) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            self.0.send(POLICY_UPDATES, policy).await.await.map_err(|e| anyhow::anyhow!("publishing policy update {}: {e}", policy.version))?;
            self.0.send(MODEL_UPDATES, model).await.await.map_err(|e| anyhow::anyhow!("publishing model update {}: {e}", model.version))?;
            Ok(())
        })
    }
}

/// Stores, announces nothing (no cluster configured, or a dry run).
pub struct NoPublisher;

impl Publisher for NoPublisher {
    fn publish<'a>(&'a self, _: &'a PolicyUpdate, _: &'a ModelUpdate) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// One published (or re-published) pair: `trainer/registry/` in the lake.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegistryEntry {
    /// "publish" or "rollback".
    pub kind: String,
    pub policy: PolicyUpdate,
    pub model: ModelUpdate,
}

pub async fn record(lake: &Lake, entry: &RegistryEntry) -> anyhow::Result<()> {
    let path = lake.path(&format!("trainer/registry/{:016}-{}.json", entry.model.published_at.0, entry.model.version));
    lake.store.put(&path, serde_json::to_vec_pretty(entry)?.into()).await?;
    Ok(())
}

/// Every registry entry, oldest first.
pub async fn registry(lake: &Lake) -> anyhow::Result<Vec<RegistryEntry>> {
    use futures::TryStreamExt;
    let metas: Vec<_> = lake.store.list(Some(&lake.path("trainer/registry"))).try_collect().await?;
    let mut names: Vec<_> = metas.into_iter().map(|m| m.location).collect();
    names.sort();
    let mut out = Vec::new();
    for path in names {
        let bytes = lake.store.get(&path).await?.bytes().await?;
        out.push(serde_json::from_slice(&bytes).map_err(|e| anyhow::anyhow!("{path}: {e}"))?);
    }
    Ok(out)
}

/// What a round needs besides the lake and the serving model.
pub struct RoundSetup<'a> {
    pub cfg: &'a TrainerConfig,
    pub router: &'a RouterSettings,
    /// The router bundle in use (its scorer is compared with the refitted one).
    pub current_bundle: Option<RouterBundle>,
    pub constrained: bool,
    pub show_progress: bool,
}

/// What came of a round.
pub struct RoundOutcome {
    pub report: RoundReport,
    pub report_url: String,
    pub published: Option<(PolicyUpdate, ModelUpdate)>,
}

/// RL, gate and — only for an accepted candidate whose router refit
/// succeeded — storage and announcement. A rejected round changes nothing
/// downstream: no object under `models/`, no update, no registry entry.
pub async fn round(setup: RoundSetup<'_>, lake: &Lake, mut current: EdgeAgent, publisher: &dyn Publisher) -> anyhow::Result<RoundOutcome> {
    let (dataset_version, targets) = load_targets(lake, setup.cfg.max_targets).await?;
    let (cfg, constrained, progress) = (setup.cfg.clone(), setup.constrained, setup.show_progress);
    let (candidate, report, current) = tokio::task::spawn_blocking(move || {
        let (candidate, report) = run_round(&cfg, &mut current, &dataset_version, targets, constrained, progress)?;
        anyhow::Ok((candidate, report, current))
    })
    .await??;
    conclude(&setup, lake, &current.version, candidate, report, publisher).await
}

/// The end of a round for `candidate` (judged in `report.gate`): when
/// accepted, the router refitted for it, both stored and announced, and a
/// registry entry; when not, only the report is kept.
pub async fn conclude(setup: &RoundSetup<'_>, lake: &Lake, current_version: &str, candidate: Option<EdgeAgent>, mut report: RoundReport, publisher: &dyn Publisher) -> anyhow::Result<RoundOutcome> {
    let mut published = None;
    if let (Some(mut c), true) = (candidate, report.gate.accepted) {
        let rows = load_label_rows(lake).await?;
        // The version is the weights' hash: known before anything is written.
        c.version = crate::round::content_version(&c)?;
        let (settings, refit_cfg, old) = (setup.router.clone(), setup.cfg.refit.clone(), setup.current_bundle.clone());
        let (fitted, c) = tokio::task::spawn_blocking(move || (refit(&c, &rows, &settings, old.as_ref(), &refit_cfg), c)).await?;
        match fitted {
            Ok((bundle, proposals, refit_report)) => {
                let model = store_model(lake, &c, current_version, serde_json::to_string(&report.gate.after)?).await?;
                let uri = store_bundle(lake, &bundle, &proposals).await?;
                let policy = policy_update(&bundle, &setup.router.router.policy, &uri)?;
                anyhow::ensure!(policy.model_version == model.version, "refitted for {} but storing {}", policy.model_version, model.version);
                report.candidate_version = Some(model.version.clone());
                report.refit = Some(refit_report);
                report.policy_version = Some(policy.version.clone());
                publisher.publish(&policy, &model).await?;
                record(lake, &RegistryEntry { kind: "publish".into(), policy: policy.clone(), model: model.clone() }).await?;
                published = Some((policy, model));
            }
            Err(e) => {
                report.gate.accepted = false;
                report.gate.reasons.push(format!("the router could not be refitted for the new model, so neither is published: {e}"));
            }
        }
    }
    let report_url = store_report(lake, &report).await?;
    Ok(RoundOutcome { report, report_url, published })
}

/// The pair to go back to from the newest published one: its parent's
/// registry entry re-stamped now, or None when the parent was never published
/// by the trainer (the caller falls back to the configured model and bundle).
pub fn rollback_pair(entries: &[RegistryEntry]) -> anyhow::Result<Option<RegistryEntry>> {
    let newest = entries.last().ok_or_else(|| anyhow::anyhow!("the trainer has published nothing: there is nothing to roll back"))?;
    let parent = newest.model.parent_version.clone().ok_or_else(|| anyhow::anyhow!("{} has no parent version", newest.model.version))?;
    let now = TimestampMillis::now();
    Ok(entries.iter().rev().find(|e| e.model.version == parent).map(|e| RegistryEntry {
        kind: "rollback".into(),
        policy: PolicyUpdate { published_at: now, ..e.policy.clone() },
        model: ModelUpdate { published_at: now, ..e.model.clone() },
    }))
}
