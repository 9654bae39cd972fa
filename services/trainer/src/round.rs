//! One trainer round: targets from the newest datasets → RL on a copy of the
//! serving model → gate → (if accepted) the candidate on the object store.

use std::time::Instant;

use arrow::array::{Array, BooleanArray};
use netgpt_archive::store::Lake;
use netgpt_core::avro::TimestampMillis;
use netgpt_core::records::ModelUpdate;
use netgpt_edge::agent::{CONFIG_FILE, EdgeAgent, TOKENIZER_FILE, WEIGHTS_FILE};
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::TrainerConfig;
use crate::gate::{GateReport, judge, measure};
use crate::rl::{IterationStats, frozen, learnable, trainable_copy, train};
use crate::rollout::Target;

/// What a round did, accepted or not (written to `trainer/rounds/` in the lake).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RoundReport {
    pub started_at: String,
    pub dataset_version: String,
    /// Cloud targets read, and those the model can express.
    pub targets: usize,
    pub learnable_targets: usize,
    pub current_version: String,
    /// The candidate's content-derived version (set when it was written).
    pub candidate_version: Option<String>,
    pub iterations: Vec<IterationStats>,
    pub gate: GateReport,
    /// The router bundle refitted for the candidate, and the policy published from it.
    pub refit: Option<crate::refit::RefitReport>,
    pub policy_version: Option<String>,
    pub rl_seconds: f64,
    pub gate_seconds: f64,
    /// Why no RL ran, when it did not.
    pub skipped: Option<String>,
}

/// The newest dataset build's cloud targets (`sft_targets`), newest first,
/// without the requests kept for the router refit (`REFIT_SIDE`).
pub async fn load_targets(lake: &Lake, limit: usize) -> anyhow::Result<(String, Vec<Target>)> {
    let (version, engine) = crate::newest_datasets(lake, &["sft_targets"]).await?;
    let batches = engine
        .query(&format!("SELECT prompt, target_call, edge_agrees FROM dataset_sft_targets WHERE NOT {} ORDER BY responded_at DESC LIMIT {limit}", crate::REFIT_SIDE.replace("{id}", "request_id")))
        .await?;
    let mut targets = Vec::new();
    for b in &batches {
        let (prompts, calls) = (crate::text_column(b, 0, "sft_targets.prompt")?, crate::text_column(b, 1, "sft_targets.target_call")?);
        let agrees = b.column(2).as_any().downcast_ref::<BooleanArray>().ok_or_else(|| anyhow::anyhow!("sft_targets.edge_agrees is not boolean"))?;
        for i in 0..b.num_rows() {
            if prompts.is_null(i) || calls.is_null(i) {
                continue;
            }
            let Ok(call) = serde_json::from_str(calls.value(i)) else { continue };
            targets.push(Target { prompt: prompts.value(i).to_string(), call, edge_agreed: !agrees.is_null(i) && agrees.value(i) });
        }
    }
    Ok((version, targets))
}

/// RL on a copy of `current`, then the gate. Returns the candidate (accepted
/// or not: the caller publishes it only when `report.gate.accepted`).
pub fn run_round(cfg: &TrainerConfig, current: &mut EdgeAgent, dataset_version: &str, targets: Vec<Target>, constrained: bool, show_progress: bool) -> anyhow::Result<(Option<EdgeAgent>, RoundReport)> {
    let mut report = RoundReport {
        started_at: chrono::Utc::now().to_rfc3339(),
        dataset_version: dataset_version.to_string(),
        targets: targets.len(),
        current_version: current.version.clone(),
        ..Default::default()
    };
    let targets = learnable(current, targets);
    report.learnable_targets = targets.len();
    if targets.len() < cfg.min_targets {
        report.skipped = Some(format!("{} learnable cloud targets, fewer than trainer.min_targets = {}", targets.len(), cfg.min_targets));
        return Ok((None, report));
    }
    let started = Instant::now();
    let old = frozen(current)?;
    let mut candidate = trainable_copy(current, "candidate")?;
    report.iterations = train(&cfg.rl, &candidate, &old, &targets, show_progress)?;
    report.rl_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let before = measure(current, constrained, &cfg.gate)?;
    let after = measure(&mut candidate, constrained, &cfg.gate)?;
    report.gate = judge(before, after, &cfg.gate);
    report.gate_seconds = started.elapsed().as_secs_f64();
    Ok((Some(candidate), report))
}

/// The version a model is stored under: `edge-` and the first 12 hex digits
/// of the sha256 of its weights file.
pub fn content_version(agent: &EdgeAgent) -> anyhow::Result<String> {
    let tmp = crate::scratch_dir("version");
    agent.save(&tmp)?;
    let sha: String = Sha256::digest(std::fs::read(tmp.join(WEIGHTS_FILE))?).iter().map(|b| format!("{b:02x}")).collect();
    std::fs::remove_dir_all(&tmp).ok();
    Ok(format!("edge-{}", &sha[..12]))
}

/// Writes `agent` under `models/edge/edge-<sha12 of the weights>/` in the lake
/// (content-addressed: the same weights always land in the same place) and
/// returns the update that announces it, with `parent` as its parent version.
pub async fn store_model(lake: &Lake, agent: &EdgeAgent, parent: &str, metrics_json: String) -> anyhow::Result<ModelUpdate> {
    let tmp = crate::scratch_dir("candidate");
    agent.save(&tmp)?;
    let weights = std::fs::read(tmp.join(WEIGHTS_FILE))?;
    let sha: String = Sha256::digest(&weights).iter().map(|b| format!("{b:02x}")).collect();
    let version = format!("edge-{}", &sha[..12]);
    let folder = format!("models/edge/{version}");
    for file in [WEIGHTS_FILE, CONFIG_FILE, TOKENIZER_FILE] {
        let path = lake.path(&format!("{folder}/{file}"));
        lake.store.put(&path, std::fs::read(tmp.join(file))?.into()).await.map_err(|e| anyhow::anyhow!("writing {path}: {e}"))?;
    }
    std::fs::remove_dir_all(&tmp).ok();
    Ok(ModelUpdate {
        channel: "edge".into(),
        version,
        parent_version: Some(parent.to_string()),
        weights_uri: lake.table_url(&folder).trim_end_matches('/').to_string(),
        weights_sha256: sha,
        metrics_json,
        published_at: TimestampMillis::now(),
    })
}

/// Keeps the round's report in the lake, under `trainer/rounds/`.
pub async fn store_report(lake: &Lake, report: &RoundReport) -> anyhow::Result<String> {
    let name = format!("{}-{}.json", report.started_at.replace([':', '.'], "-"), report.candidate_version.as_deref().unwrap_or("rejected"));
    let path = lake.path(&format!("trainer/rounds/{name}"));
    lake.store.put(&path, serde_json::to_vec_pretty(report)?.into()).await?;
    Ok(format!("{}{path}", lake.base_url))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[tokio::test]
    async fn a_stored_model_is_content_addressed_and_loads_from_its_update() {
        let dir = std::env::temp_dir().join(format!("netgpt-store-model-{}", std::process::id()));
        let lake = Lake::open(&dir.display().to_string(), &Default::default()).unwrap();
        let agent = EdgeAgent::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../edge/checkpoint"), "sft-base").unwrap();
        let a = store_model(&lake, &agent, "sft-base", "{}".into()).await.unwrap();
        let b = store_model(&lake, &agent, "sft-base", "{}".into()).await.unwrap();
        assert_eq!((&a.version, &a.weights_uri, &a.weights_sha256), (&b.version, &b.weights_uri, &b.weights_sha256), "the same weights, the same place");
        assert!(a.version.starts_with("edge-") && a.weights_sha256.starts_with(&a.version["edge-".len()..]));
        assert!(dir.join("models/edge").join(&a.version).join(WEIGHTS_FILE).exists(), "{}", a.weights_uri);
        let loaded = netgpt_edge::stage::load_update(&a).unwrap();
        assert_eq!(loaded.version, a.version);
        let p = "show the downlink throughput of cell A01 for the last 3 hours";
        assert_eq!(loaded.propose(p).unwrap().call_json, agent.propose(p).unwrap().call_json);
        let tampered = ModelUpdate { weights_sha256: "0".repeat(64), ..a };
        assert!(netgpt_edge::stage::load_update(&tampered).is_err(), "a checksum mismatch must be refused");
        std::fs::remove_dir_all(&dir).ok();
    }
}
