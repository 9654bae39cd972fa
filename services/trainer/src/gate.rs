//! The gate: a candidate model is published only if, on the same held-out
//! requests, its task success does not drop and its schema validity (as
//! served) stays above the floor. Otherwise the round is rejected with its
//! reasons and the current model stays.

use std::collections::BTreeMap;

use netgpt_edge::agent::EdgeAgent;
use netgpt_edge::sft::evaluate;
use netgpt_edge::workload::Split;
use serde::{Deserialize, Serialize};

/// `[trainer.gate]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateConfig {
    /// Held-out requests per difficulty tier (the same for both models).
    pub per_tier: usize,
    pub seed: u64,
    /// Schema validity as served (with `edge.constrained_decoding`) must be at least this.
    pub min_schema_valid: f64,
    /// Task success (exact calls) may drop by at most this much.
    pub max_success_drop: f64,
    /// Schema validity of the model's own, unconstrained decoding may drop by
    /// at most this much: the format must be kept by the model, not only by the mask.
    pub max_raw_valid_drop: f64,
}

impl Default for GateConfig {
    fn default() -> Self {
        Self { per_tier: 300, seed: 4242, min_schema_valid: 0.99, max_success_drop: 0.0, max_raw_valid_drop: 0.005 }
    }
}

/// A model's held-out quality.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    /// Exact calls, as served.
    pub task_success: f64,
    pub schema_valid: f64,
    /// Without the decoding mask.
    pub raw_task_success: f64,
    pub raw_schema_valid: f64,
    pub task_success_by_tier: BTreeMap<String, f64>,
    pub finite_weights: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GateReport {
    pub accepted: bool,
    pub reasons: Vec<String>,
    pub before: Quality,
    pub after: Quality,
}

/// Every weight a finite number?
pub fn finite_weights(agent: &EdgeAgent) -> anyhow::Result<bool> {
    for v in agent.varmap.all_vars() {
        let s = v.as_tensor().abs()?.sum_all()?.to_scalar::<f32>()?;
        if !s.is_finite() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Held-out quality of `agent`, served with `constrained` decoding and raw.
pub fn measure(agent: &mut EdgeAgent, constrained: bool, cfg: &GateConfig) -> anyhow::Result<Quality> {
    let finite = finite_weights(agent)?;
    if !finite {
        // Such a model cannot decode (its logits are not numbers): nothing to
        // measure, and `judge` refuses it for this alone.
        return Ok(Quality { finite_weights: false, ..Default::default() });
    }
    let keep = agent.constrained;
    agent.constrained = false;
    let raw = evaluate(agent, Split::HeldOut, cfg.seed, cfg.per_tier);
    agent.constrained = constrained;
    let served = evaluate(agent, Split::HeldOut, cfg.seed, cfg.per_tier);
    agent.constrained = keep;
    let (raw, served) = (raw?, served?);
    Ok(Quality {
        task_success: served.overall.exact,
        schema_valid: served.overall.schema_valid,
        raw_task_success: raw.overall.exact,
        raw_schema_valid: raw.overall.schema_valid,
        task_success_by_tier: served.by_tier.iter().map(|(t, m)| (t.clone(), m.exact)).collect(),
        finite_weights: finite,
    })
}

/// The verdict on `after` (candidate) against `before` (current model).
pub fn judge(before: Quality, after: Quality, cfg: &GateConfig) -> GateReport {
    let mut reasons = Vec::new();
    if !after.finite_weights {
        reasons.push("the candidate has non-finite weights".to_string());
        return GateReport { accepted: false, reasons, before, after };
    }
    if after.schema_valid < cfg.min_schema_valid {
        reasons.push(format!("schema validity as served {:.4} < {:.4}", after.schema_valid, cfg.min_schema_valid));
    }
    if after.task_success < before.task_success - cfg.max_success_drop {
        reasons.push(format!("held-out task success fell {:.4} → {:.4} (allowed drop {:.4})", before.task_success, after.task_success, cfg.max_success_drop));
    }
    if after.raw_schema_valid < before.raw_schema_valid - cfg.max_raw_valid_drop {
        reasons.push(format!("unconstrained schema validity fell {:.4} → {:.4} (allowed drop {:.4})", before.raw_schema_valid, after.raw_schema_valid, cfg.max_raw_valid_drop));
    }
    GateReport { accepted: reasons.is_empty(), reasons, before, after }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn checkpoint() -> EdgeAgent {
        EdgeAgent::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../edge/checkpoint"), "sft-base").unwrap()
    }

    #[test]
    fn an_identical_model_passes_and_a_corrupted_one_is_rejected_with_reasons() {
        let cfg = GateConfig { per_tier: 40, ..Default::default() };
        let mut current = checkpoint();
        let before = measure(&mut current, true, &cfg).unwrap();
        let mut same = crate::rl::trainable_copy(&current, "same").unwrap();
        let verdict = judge(before.clone(), measure(&mut same, true, &cfg).unwrap(), &cfg);
        assert!(verdict.accepted, "{:?}", verdict.reasons);

        // One attention block's weights blown up: the model still decodes, but badly.
        let broken = crate::rl::trainable_copy(&current, "broken").unwrap();
        for (name, var) in broken.varmap.data().lock().unwrap().iter() {
            if name.starts_with("block1.qkv") || name.starts_with("block1.ff1") {
                var.set(&(var.as_tensor() * 50.0).unwrap()).unwrap();
            }
        }
        let mut broken = broken;
        let verdict = judge(before.clone(), measure(&mut broken, true, &cfg).unwrap(), &cfg);
        assert!(!verdict.accepted && !verdict.reasons.is_empty(), "a corrupted model passed: {:?}", verdict.after);

        // A NaN weight.
        let nan = crate::rl::trainable_copy(&current, "nan").unwrap();
        if let Some(var) = nan.varmap.data().lock().unwrap().get("ln_f.gamma") {
            var.set(&(var.as_tensor() * f64::NAN).unwrap()).unwrap();
        }
        let mut nan = nan;
        let verdict = judge(before, measure(&mut nan, true, &cfg).unwrap(), &cfg);
        assert!(verdict.reasons.iter().any(|r| r.contains("non-finite")), "{:?}", verdict.reasons);
    }
}
