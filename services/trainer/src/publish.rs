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
use crate::refit::{LabelRow, load_label_rows, refit, store_bundle};
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
    // No candidate can be published without a router refit: with too few
    // rows for one, RL would be wasted work.
    let rows = load_label_rows(lake).await?;
    if rows.len() < setup.cfg.refit.min_rows {
        let report = RoundReport {
            started_at: chrono::Utc::now().to_rfc3339(),
            dataset_version,
            targets: targets.len(),
            current_version: current.version.clone(),
            skipped: Some(format!("{} cloud-answered requests for the router refit, fewer than trainer.refit.min_rows = {}", rows.len(), setup.cfg.refit.min_rows)),
            ..Default::default()
        };
        let report_url = store_report(lake, &report).await?;
        return Ok(RoundOutcome { report, report_url, published: None });
    }
    let (cfg, constrained, progress) = (setup.cfg.clone(), setup.constrained, setup.show_progress);
    let (candidate, report, current) = tokio::task::spawn_blocking(move || {
        let (candidate, report) = run_round(&cfg, &mut current, &dataset_version, targets, constrained, progress)?;
        anyhow::Ok((candidate, report, current))
    })
    .await??;
    conclude(&setup, lake, &current.version, candidate, report, rows, publisher).await
}

/// The end of a round for `candidate` (judged in `report.gate`): when
/// accepted, the router refitted for it on `rows` (`load_label_rows`), both
/// stored and announced, and a registry entry; when not, only the report is kept.
pub async fn conclude(setup: &RoundSetup<'_>, lake: &Lake, current_version: &str, candidate: Option<EdgeAgent>, mut report: RoundReport, rows: Vec<LabelRow>, publisher: &dyn Publisher) -> anyhow::Result<RoundOutcome> {
    let mut published = None;
    if let (Some(mut c), true) = (candidate, report.gate.accepted) {
        // The version is the weights' hash: known before anything is written.
        c.version = crate::round::content_version(&c)?;
        // Labels for the router must describe the model as served.
        c.constrained = setup.constrained;
        let (settings, refit_cfg, old) = (setup.router.clone(), setup.cfg.refit.clone(), setup.current_bundle.clone());
        let (fitted, c) = tokio::task::spawn_blocking(move || (refit(&c, &rows, &settings, old.as_ref(), &refit_cfg), c)).await?;
        match fitted {
            Ok((bundle, proposals, refit_report)) => {
                anyhow::ensure!(bundle.model_version == c.version, "refitted for {} but the candidate is {}", bundle.model_version, c.version);
                let model = store_model(lake, &c, current_version, serde_json::to_string(&report.gate.after)?).await?;
                let uri = store_bundle(lake, &bundle, &proposals).await?;
                let policy = bundle.policy_update(&setup.router.router.policy, Some(&uri))?;
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

/// When a rollback is stamped: now, but never before the newest announcement
/// (the router orders policy updates by this stamp; a host with a slow clock
/// must not make its rollback look older than what it undoes).
pub fn rollback_stamp(entries: &[RegistryEntry]) -> TimestampMillis {
    let newest = entries.iter().map(|e| e.model.published_at.0.max(e.policy.published_at.0)).max().unwrap_or(0);
    TimestampMillis(TimestampMillis::now().0.max(newest + 1))
}

/// The pair to go back to from the newest published one: its parent's
/// registry entry re-stamped now, or None when the parent was never published
/// by the trainer (the caller falls back to the configured model and bundle).
pub fn rollback_pair(entries: &[RegistryEntry]) -> anyhow::Result<Option<RegistryEntry>> {
    let (newest, earlier) = entries.split_last().ok_or_else(|| anyhow::anyhow!("the trainer has published nothing: there is nothing to roll back"))?;
    let parent = newest.model.parent_version.clone().ok_or_else(|| anyhow::anyhow!("{} has no parent version", newest.model.version))?;
    anyhow::ensure!(parent != newest.model.version, "{} is its own parent: nothing to roll back to", parent);
    let now = rollback_stamp(entries);
    Ok(earlier.iter().rev().find(|e| e.model.version == parent).map(|e| RegistryEntry {
        kind: "rollback".into(),
        policy: PolicyUpdate { published_at: now, ..e.policy.clone() },
        model: ModelUpdate { published_at: now, ..e.model.clone() },
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn entry(version: &str, parent: &str, at: i64) -> RegistryEntry {
        let policy = PolicyUpdate {
            channel: "router".into(),
            version: format!("b-{version}/funcdyn"),
            policy_name: "funcdyn".into(),
            params_json: "{}".into(),
            weights_uri: None,
            scorer_version: "s".into(),
            scorer_uri: None,
            model_version: version.into(),
            published_at: TimestampMillis(at),
        };
        let model = ModelUpdate { channel: "edge".into(), version: version.into(), parent_version: Some(parent.into()), weights_uri: "file:///x".into(), weights_sha256: "0".repeat(64), metrics_json: "{}".into(), published_at: TimestampMillis(at) };
        RegistryEntry { kind: "publish".into(), policy, model }
    }

    #[test]
    fn rollback_goes_to_the_parent_pair_stamped_after_everything_published() {
        let far_future = TimestampMillis::now().0 + 3_600_000;
        let entries = vec![entry("m1", "sft-base", 1), entry("m2", "m1", far_future)];
        let back = rollback_pair(&entries).unwrap().unwrap();
        assert_eq!((back.model.version.as_str(), back.policy.model_version.as_str(), back.kind.as_str()), ("m1", "m1", "rollback"));
        assert!(back.model.published_at.0 > far_future && back.policy.published_at == back.model.published_at, "a rollback must look newer than what it undoes");
        // The first model's parent is not in the registry: the caller falls back to the configured pair.
        assert!(rollback_pair(&entries[..1]).unwrap().is_none());
        assert!(rollback_pair(&[]).is_err());
        assert!(rollback_pair(&[entry("m1", "m1", 1)]).is_err(), "a model that is its own parent has nothing to roll back to");
    }
}
