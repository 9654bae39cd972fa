//! The router's side of a round: the scorer and the threshold policies
//! refitted for the candidate model, so the policy a `PolicyUpdate` announces
//! was fitted for the model the `ModelUpdate` announces.
//!
//! Labels describe the candidate, not the model that served: for logged
//! requests the cloud answered, the candidate proposes again and its call is
//! labelled right when it equals the cloud's. Only cloud-answered requests
//! carry a label, and the router sent a request to the cloud either because
//! its score was low (propensity 1) or by exploration (propensity ε), so the
//! policy fits weight each row by 1/propensity (inverse-propensity weighting):
//! explored rows stand for the many kept edge answers that have no label.
//! The scorer's fit is unweighted. Without exploration data the refit sees
//! only the hard cases; the router's `exploration_rate` is what provides it.

use arrow::array::{Array, Float64Array, Int32Array, Int64Array};
use netgpt_archive::store::Lake;
use netgpt_edge::agent::EdgeAgent;
use netgpt_edge::workload::same_call;
use netgpt_router::RouterSettings;
use netgpt_router::bundle::{BUNDLE_FILE, PROPOSALS_FILE, RouterBundle, fit_bundle, test_split};
use netgpt_router::fit::LabelledProposal;
use netgpt_router::network::RequestShape;
use netgpt_router::scorer::{CalibrationReport, ProposalFeatures};
use object_store::ObjectStoreExt;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `[trainer.refit]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefitConfig {
    /// At most this many logged rows are labelled for the fits.
    pub proposals: usize,
    /// Fewer labelled rows than this: no refit (the policy stays as it is).
    pub min_rows: usize,
    pub seed: u64,
}

impl Default for RefitConfig {
    fn default() -> Self {
        Self { proposals: 3000, min_rows: 100, seed: 29 }
    }
}

/// A cloud-answered request from the logs.
#[derive(Debug, Clone)]
pub struct LabelRow {
    pub prompt: String,
    pub shape: RequestShape,
    pub propensity: f64,
    pub cloud_call: Value,
}

/// Cloud-answered requests of the newest dataset build (routing samples with
/// their cloud call), those on the refit side (`REFIT_SIDE`): RL never trained
/// on them, so the candidate's labels are not inflated by memorised answers.
pub async fn load_label_rows(lake: &Lake) -> anyhow::Result<Vec<LabelRow>> {
    let (_, engine) = crate::newest_datasets(lake, &["routing_samples", "sft_targets"]).await?;
    let batches = engine
        .query(
            &format!(
                "SELECT r.prompt, r.upload_bytes, r.download_bytes, r.expected_output_tokens, r.propensity, t.target_call \
                 FROM dataset_routing_samples r JOIN dataset_sft_targets t ON t.request_id = r.request_id \
                 WHERE r.answered_by = 'CLOUD' AND {} ORDER BY r.request_id",
                crate::REFIT_SIDE.replace("{id}", "r.request_id")
            ),
        )
        .await?;
    let mut rows = Vec::new();
    for b in &batches {
        let (prompts, calls) = (crate::text_column(b, 0, "routing_samples.prompt")?, crate::text_column(b, 5, "sft_targets.target_call")?);
        let int64 = |i: usize| b.column(i).as_any().downcast_ref::<Int64Array>().ok_or_else(|| anyhow::anyhow!("column {i} is not a 64-bit integer"));
        let (up, down) = (int64(1)?, int64(2)?);
        let tokens = b.column(3).as_any().downcast_ref::<Int32Array>().ok_or_else(|| anyhow::anyhow!("expected_output_tokens is not a 32-bit integer"))?;
        let propensity = b.column(4).as_any().downcast_ref::<Float64Array>().ok_or_else(|| anyhow::anyhow!("propensity is not a double"))?;
        for i in 0..b.num_rows() {
            if prompts.is_null(i) || calls.is_null(i) || propensity.is_null(i) {
                continue;
            }
            let Ok(cloud_call) = serde_json::from_str(calls.value(i)) else { continue };
            let upload = up.value(i).max(0) as f64;
            rows.push(LabelRow {
                prompt: prompts.value(i).to_string(),
                shape: RequestShape { upload_bytes: upload, download_bytes: down.value(i).max(0) as f64, tokens_in: upload / RequestShape::BYTES_PER_TOKEN, tokens_out: f64::from(tokens.value(i).max(1)) },
                propensity: propensity.value(i).clamp(1e-3, 1.0),
                cloud_call,
            });
        }
    }
    Ok(rows)
}

/// The candidate's labelled proposals: each logged row (at most
/// `cfg.proposals`, a seeded sample) proposed again as served, labelled by
/// agreement with the cloud's call, and weighted 1/propensity (normalised to
/// mean 1) for the policy fits. Rows are not repeated, so the fit's held-back
/// split shares no proposal with its training splits.
pub fn relabel(agent: &EdgeAgent, rows: &[LabelRow], cfg: &RefitConfig) -> anyhow::Result<Vec<LabelledProposal>> {
    anyhow::ensure!(!rows.is_empty(), "no cloud-answered requests to label");
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.shuffle(&mut StdRng::seed_from_u64(cfg.seed));
    order.truncate(cfg.proposals);
    let mean_inverse = order.iter().map(|&i| 1.0 / rows[i].propensity).sum::<f64>() / order.len() as f64;
    let mut out = Vec::with_capacity(order.len());
    for i in order {
        let row = &rows[i];
        let Ok(p) = agent.propose(&row.prompt) else { continue };
        let correct = serde_json::from_str::<Value>(&p.call_json).is_ok_and(|c| same_call(&c, &row.cloud_call));
        out.push(LabelledProposal {
            prompt: row.prompt.clone(),
            features: ProposalFeatures { mean_logprob: p.mean_logprob, min_logprob: p.min_logprob, mean_entropy: p.mean_entropy, schema_valid: p.check.valid, output_tokens: p.output_tokens as f64, unknown_word_share: p.unknown_word_share, tool: p.check.tool.clone() },
            shape: row.shape,
            correct,
            tier: "LOGGED".into(),
            weight: 1.0 / row.propensity / mean_inverse,
        });
    }
    Ok(out)
}

/// What the refit measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RefitReport {
    pub rows: usize,
    pub labelled: usize,
    pub candidate_accuracy: f64,
    /// On the held-back proposals: the scorer in use (fitted for the previous
    /// model), the new scorer before and after its calibration map.
    pub old_scorer: Option<CalibrationReport>,
    pub new_raw: CalibrationReport,
    pub new_calibrated: CalibrationReport,
    pub bundle_version: String,
    pub seconds: f64,
}

/// Refits scorer and policies for `agent` (whose `version` the bundle names).
pub fn refit(agent: &EdgeAgent, rows: &[LabelRow], settings: &RouterSettings, old: Option<&RouterBundle>, cfg: &RefitConfig) -> anyhow::Result<(RouterBundle, Vec<LabelledProposal>, RefitReport)> {
    let started = std::time::Instant::now();
    anyhow::ensure!(rows.len() >= cfg.min_rows, "{} cloud-answered requests, fewer than trainer.refit.min_rows = {}", rows.len(), cfg.min_rows);
    let labelled = relabel(agent, rows, cfg)?;
    let (bundle, shuffled) = fit_bundle(labelled, settings, &agent.version, cfg.seed)?;
    let test: Vec<(ProposalFeatures, bool)> = test_split(&shuffled).iter().map(|p| (p.features.clone(), p.correct)).collect();
    let report = RefitReport {
        rows: rows.len(),
        labelled: shuffled.len(),
        candidate_accuracy: shuffled.iter().filter(|p| p.correct).count() as f64 / shuffled.len().max(1) as f64,
        old_scorer: old.map(|b| b.scorer.report(&test)),
        new_raw: bundle.report.calibration_before.clone(),
        new_calibrated: bundle.report.calibration_after.clone(),
        bundle_version: bundle.version.clone(),
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok((bundle, shuffled, report))
}

/// Writes the bundle under `router/bundles/<version>/` in the lake (content-
/// addressed: its version hashes scorer and policies); returns the folder's URL.
pub async fn store_bundle(lake: &Lake, bundle: &RouterBundle, proposals: &[LabelledProposal]) -> anyhow::Result<String> {
    let tmp = crate::scratch_dir("bundle");
    bundle.save(&tmp, proposals)?;
    let folder = format!("router/bundles/{}", bundle.version);
    for file in [BUNDLE_FILE, PROPOSALS_FILE] {
        let path = lake.path(&format!("{folder}/{file}"));
        lake.store.put(&path, std::fs::read(tmp.join(file))?.into()).await.map_err(|e| anyhow::anyhow!("writing {path}: {e}"))?;
    }
    std::fs::remove_dir_all(&tmp).ok();
    Ok(lake.table_url(&folder).trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use netgpt_edge::workload::{Split, WorkloadGenerator};

    #[tokio::test]
    async fn the_refit_bundle_names_the_new_model_and_the_policy_update_loads_from_the_lake() {
        let mut agent = EdgeAgent::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../edge/checkpoint"), "sft-base").unwrap();
        agent.version = "edge-test".into();
        let g = WorkloadGenerator::new(agent.catalog(), Split::HeldOut).unwrap();
        let mut rng = StdRng::seed_from_u64(8);
        // Logged rows: most sent to the cloud below threshold (propensity 1), a few explored (ε = 0.05).
        let rows: Vec<LabelRow> = (0..240)
            .map(|i| {
                let e = g.sample(&mut rng);
                LabelRow { shape: RequestShape { upload_bytes: 6100.0, download_bytes: 300.0, tokens_in: 1525.0, tokens_out: 30.0 }, propensity: if i % 10 == 0 { 0.05 } else { 1.0 }, prompt: e.prompt, cloud_call: e.call }
            })
            .collect();
        let cfg = RefitConfig { proposals: 200, min_rows: 100, seed: 3 };
        let labelled = relabel(&agent, &rows, &cfg).unwrap();
        assert_eq!(labelled.len(), 200);
        let (heavy, light): (Vec<_>, Vec<_>) = labelled.iter().partition(|p| p.weight > 1.0);
        assert!(!heavy.is_empty() && heavy.iter().all(|p| p.weight > 10.0 * light[0].weight), "explored rows carry 1/ε the weight");
        let mean = labelled.iter().map(|p| p.weight).sum::<f64>() / labelled.len() as f64;
        assert!((mean - 1.0).abs() < 1e-9);

        let settings = RouterSettings::defaults();
        let old = RouterBundle::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../router/bundle")).unwrap();
        let (bundle, proposals, report) = refit(&agent, &rows, &settings, Some(&old), &cfg).unwrap();
        assert_eq!(bundle.model_version, "edge-test");
        assert!(report.old_scorer.is_some() && report.new_calibrated.n > 0);
        assert!(refit(&agent, &rows[..50], &settings, None, &cfg).is_err(), "too few rows is an error, not a silent refit");

        let dir = std::env::temp_dir().join(format!("netgpt-refit-{}", std::process::id()));
        let lake = Lake::open(&dir.display().to_string(), &Default::default()).unwrap();
        let uri = store_bundle(&lake, &bundle, &proposals).await.unwrap();
        let update = bundle.policy_update("funcdyn", Some(&uri)).unwrap();
        assert_eq!((update.model_version.as_str(), update.scorer_version.as_str()), ("edge-test", bundle.scorer.version.as_str()));
        let current = std::sync::Arc::new(old.scorer.clone());
        let loaded = netgpt_router::stage::LoadedPolicy::from_update(&update, &current).unwrap();
        assert_eq!((loaded.model_version.as_str(), loaded.scorer.version.as_str()), ("edge-test", bundle.scorer.version.as_str()));
        std::fs::remove_dir_all(&dir).ok();
    }
}
