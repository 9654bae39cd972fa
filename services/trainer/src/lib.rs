//! netgpt-trainer: the edge model improves from what the cloud answered.
//!
//! A round ([`round`]) reads the newest datasets (cloud answers as targets),
//! runs schema-preserving, SFT-anchored RL on a copy of the serving model
//! ([`rl`], rollouts and rewards in [`rollout`]), measures the candidate
//! against the serving model on the same held-out requests ([`gate`]), and
//! only when the gate passes writes it to the object store at a
//! content-addressed path; [`refit`] then fits the router's scorer and
//! policies for it, so the `PolicyUpdate` and `ModelUpdate` published
//! together name the same model.

pub mod gate;
pub mod publish;
pub mod refit;
pub mod rl;
pub mod rollout;
pub mod round;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::DataType;
use datafusion::prelude::ParquetReadOptions;
use netgpt_archive::store::Lake;
use netgpt_dataset::engine::LogEngine;
use serde::{Deserialize, Serialize};

/// Which logged requests the router refit labels (SQL over a request id
/// column `{id}`): ids ending in 0-4, 5/16 ≈ 31 % of random UUIDs. RL trains
/// on the others, so the refit measures the candidate on answers it did not learn.
pub const REFIT_SIDE: &str = "substr({id}, 36, 1) IN ('0', '1', '2', '3', '4')";

/// `[trainer]` in netgpt.toml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainerConfig {
    /// A round needs at least this many learnable cloud targets ...
    pub min_targets: usize,
    /// ... and uses at most this many, the newest.
    pub max_targets: usize,
    pub rl: rl::RlConfig,
    pub gate: gate::GateConfig,
    pub refit: refit::RefitConfig,
}

impl Default for TrainerConfig {
    fn default() -> Self {
        Self { min_targets: 64, max_targets: 20_000, rl: rl::RlConfig::default(), gate: gate::GateConfig::default(), refit: refit::RefitConfig::default() }
    }
}

/// A fresh scratch folder name (process, time and a counter: calls running
/// side by side never share one).
pub(crate) fn scratch_dir(label: &str) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!("netgpt-{label}-{}-{nanos}-{n}", std::process::id()))
}

/// A query engine over `lake` with the datasets `names` of the newest build
/// registered as tables `dataset_<name>`; and that build's version.
pub(crate) async fn newest_datasets(lake: &Lake, names: &[&str]) -> anyhow::Result<(String, LogEngine)> {
    let manifest = netgpt_dataset::build::latest(lake).await?;
    let engine = LogEngine::open(lake).await?;
    for name in names {
        let entry = manifest.datasets.get(*name).ok_or_else(|| anyhow::anyhow!("dataset build {} has no {name}", manifest.version))?;
        engine.ctx.register_parquet(format!("dataset_{name}"), entry.url.as_str(), ParquetReadOptions::default()).await?;
    }
    Ok((manifest.version, engine))
}

/// Column `i` of `batch` as text (string views and dictionaries cast to UTF-8).
pub(crate) fn text_column(batch: &RecordBatch, i: usize, what: &str) -> anyhow::Result<StringArray> {
    let text = arrow::compute::cast(batch.column(i), &DataType::Utf8).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
    text.as_any().downcast_ref::<StringArray>().cloned().ok_or_else(|| anyhow::anyhow!("{what} is not text"))
}
