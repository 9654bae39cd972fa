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
