//! What answers at the edge in a simulation ([`Proposer`]): the real model
//! ([`ModelEdge`], for controlled evaluations of it) or a synthetic agent.
//!
//! The synthetic edge agent is not a model but a stand-in for offline logs whose size
//! makes running the real one impractical (benchmarks over millions of
//! requests, SQL golden tests). It is right at the rate the real model was
//! right per difficulty tier, and its proposal features are drawn from real
//! proposals of the same tier and outcome: the labelled proposals the router
//! bundle was fitted on (`services/router/bundle/proposals.jsonl`). Its calls
//! are the request's reference call, or a plausible mistake, or (when the drawn
//! features say invalid) the reference without a required argument; each is
//! checked against the tool's schema like a real proposal.

use std::collections::HashMap;

use netgpt_core::avro::TimestampMillis;
use netgpt_core::records::{Difficulty, EdgeProposal, ToolRequest};
use netgpt_edge::catalog::ToolCatalog;
use netgpt_edge::workload::plausible_mistake;
use netgpt_router::fit::LabelledProposal;
use netgpt_router::scorer::ProposalFeatures;
use netgpt_edge::agent::EdgeAgent;
use rand::Rng;
use rand::rngs::StdRng;
use serde_json::Value;

/// The edge side of a simulation: a proposal for each request.
pub trait Proposer: Send + Sync {
    /// The proposal for `request`, started at `at` (simulated time).
    fn propose(&self, rng: &mut StdRng, request: &ToolRequest, at: TimestampMillis) -> anyhow::Result<EdgeProposal>;
    /// The version its proposals carry.
    fn model_version(&self) -> &str;
}

/// The real edge model, run on every request (greedy decoding, as served).
pub struct ModelEdge(pub EdgeAgent);

impl Proposer for ModelEdge {
    fn propose(&self, _: &mut StdRng, request: &ToolRequest, at: TimestampMillis) -> anyhow::Result<EdgeProposal> {
        let p = self.0.propose(&request.prompt).map_err(|e| anyhow::anyhow!("edge model on request {}: {e}", request.request_id))?;
        Ok(netgpt_edge::stage::proposal_record(request.clone(), &self.0.version, p, at))
    }

    fn model_version(&self) -> &str {
        &self.0.version
    }
}

/// Runs the real edge model over `requests` and labels each proposal right or
/// wrong by the request's reference call (offline fits and evaluations only:
/// the reference never reaches the live router).
pub fn labelled_proposals(agent: &EdgeAgent, requests: &[ToolRequest], progress: bool) -> anyhow::Result<Vec<LabelledProposal>> {
    let bar = netgpt_core::progress::bar(requests.len() as u64, "edge proposals", progress);
    let mut out = Vec::with_capacity(requests.len());
    for r in requests {
        let p = agent.propose(&r.prompt).map_err(|e| anyhow::anyhow!("edge model on request {}: {e}", r.request_id))?;
        let parsed: Option<Value> = serde_json::from_str(&p.call_json).ok();
        let reference: Option<Value> = r.eval_reference_call.as_deref().and_then(|c| serde_json::from_str(c).ok());
        let correct = matches!((&parsed, &reference), (Some(a), Some(b)) if netgpt_edge::workload::same_call(a, b));
        out.push(LabelledProposal {
            features: ProposalFeatures {
                mean_logprob: p.mean_logprob,
                min_logprob: p.min_logprob,
                mean_entropy: p.mean_entropy,
                schema_valid: p.check.valid,
                output_tokens: p.output_tokens as f64,
                unknown_word_share: p.unknown_word_share,
                tool: p.check.tool.clone(),
            },
            shape: netgpt_router::network::RequestShape::of(r),
            correct,
            tier: r.eval_difficulty.map_or("UNLABELLED", |d| d.as_str()).to_string(),
            prompt: r.prompt.clone(),
            weight: 1.0,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(out)
}

pub struct SyntheticEdge {
    /// Features of real proposals by (tier, right).
    pools: HashMap<(String, bool), Vec<ProposalFeatures>>,
    /// Features of wrong [0] and right [1] proposals of every tier.
    by_outcome: [Vec<ProposalFeatures>; 2],
    /// Share of right proposals per tier.
    accuracy: HashMap<String, f64>,
    catalog: &'static ToolCatalog,
    model_version: String,
}

impl SyntheticEdge {
    pub fn from_proposals(proposals: &[LabelledProposal], model_version: &str) -> anyhow::Result<Self> {
        let mut pools: HashMap<(String, bool), Vec<ProposalFeatures>> = HashMap::new();
        for p in proposals {
            pools.entry((p.tier.clone(), p.correct)).or_default().push(p.features.clone());
        }
        let by_outcome = [false, true].map(|right| proposals.iter().filter(|p| p.correct == right).map(|p| p.features.clone()).collect::<Vec<_>>());
        anyhow::ensure!(by_outcome.iter().all(|v| !v.is_empty()), "the labelled proposals need right and wrong examples");
        let mut accuracy = HashMap::new();
        for d in Difficulty::VARIANTS {
            let tier = d.as_str().to_string();
            let right = pools.get(&(tier.clone(), true)).map_or(0, Vec::len);
            let wrong = pools.get(&(tier.clone(), false)).map_or(0, Vec::len);
            anyhow::ensure!(right + wrong > 0, "the labelled proposals have no {tier} example");
            accuracy.insert(tier, right as f64 / (right + wrong) as f64);
        }
        Ok(Self { pools, by_outcome, accuracy, catalog: ToolCatalog::embedded(), model_version: model_version.to_string() })
    }

    /// Share of right proposals for a tier.
    pub fn accuracy(&self, tier: Difficulty) -> f64 {
        self.accuracy.get(tier.as_str()).copied().unwrap_or(0.0)
    }

    /// The call without its tool's first required argument: schema-invalid.
    fn without_a_required_argument(&self, mut call: Value) -> Value {
        let required = call.get("tool").and_then(Value::as_str).and_then(|t| self.catalog.get(t)).and_then(|t| t.args.iter().find(|a| a.required)).map(|a| a.name.clone());
        if let (Some(name), Some(args)) = (required, call.get_mut("arguments").and_then(Value::as_object_mut)) {
            args.remove(&name);
        }
        call
    }

    /// The proposal for `request`, made at `at`.
    pub fn propose_with<R: Rng>(&self, rng: &mut R, request: &ToolRequest, at: TimestampMillis) -> EdgeProposal {
        let tier = request.eval_difficulty.unwrap_or(Difficulty::Medium);
        let right = rng.random_bool(self.accuracy(tier));
        // A tier the real model never got wrong (or right) borrows that outcome's features from all tiers.
        let pool = self.pools.get(&(tier.as_str().to_string(), right)).unwrap_or(&self.by_outcome[usize::from(right)]);
        let features = &pool[rng.random_range(0..pool.len())];
        let reference: Option<Value> = request.eval_reference_call.as_deref().and_then(|r| serde_json::from_str(r).ok());
        let call = match reference {
            Some(reference) if right => reference,
            Some(reference) if !features.schema_valid => self.without_a_required_argument(reference),
            Some(reference) => plausible_mistake(self.catalog, &reference, rng.random()).unwrap_or_else(|| self.without_a_required_argument(reference)),
            None => serde_json::json!({"tool": "open_ticket", "arguments": {}}),
        };
        let call_json = call.to_string();
        let check = self.catalog.check_call(&call_json);
        EdgeProposal {
            request: request.clone(),
            model_version: self.model_version.clone(),
            call_json,
            tool_name: check.tool,
            schema_valid: check.valid,
            schema_error: check.error,
            mean_logprob: features.mean_logprob,
            min_logprob: features.min_logprob,
            mean_entropy: features.mean_entropy,
            output_tokens: features.output_tokens.round() as i32,
            unknown_word_share: features.unknown_word_share,
            // What `netgpt bench edge` measures for the real model, roughly: ~2 ms + 0.1 ms per token.
            edge_latency_ms: 2.0 + 0.1 * features.output_tokens + rng.random_range(0.0..0.5),
            proposed_at: at,
        }
    }
}

impl Proposer for SyntheticEdge {
    fn propose(&self, rng: &mut StdRng, request: &ToolRequest, at: TimestampMillis) -> anyhow::Result<EdgeProposal> {
        Ok(self.propose_with(rng, request, at))
    }

    fn model_version(&self) -> &str {
        &self.model_version
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn proposals() -> Vec<LabelledProposal> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../router/bundle");
        netgpt_router::bundle::load_proposals(&dir).unwrap()
    }

    #[test]
    fn synthetic_proposals_are_right_at_the_measured_rate_and_invalid_ones_fail_the_schema() {
        let edge = SyntheticEdge::from_proposals(&proposals(), "synthetic").unwrap();
        let source = crate::traffic::RequestSource::new("mixed", 4).unwrap();
        let mut rng = StdRng::seed_from_u64(3);
        let (mut right, mut n, mut invalid_checked) = (0, 0, 0);
        for _ in 0..3000 {
            let r = source.request(&mut rng, TimestampMillis(0));
            let p = edge.propose_with(&mut rng, &r, TimestampMillis(5));
            let reference: Value = serde_json::from_str(r.eval_reference_call.as_deref().unwrap()).unwrap();
            let call: Value = serde_json::from_str(&p.call_json).unwrap();
            right += usize::from(netgpt_edge::workload::same_call(&call, &reference));
            n += 1;
            if !p.schema_valid {
                assert!(p.schema_error.is_some());
                invalid_checked += 1;
            }
        }
        let expected: f64 = Difficulty::VARIANTS.iter().map(|d| edge.accuracy(*d)).sum::<f64>() / 3.0;
        let got = right as f64 / n as f64;
        // Tiers are not equally frequent, so only a loose check against the mean rate.
        assert!((got - expected).abs() < 0.1, "right {got:.3} vs per-tier mean {expected:.3}");
        assert!(got < 1.0 && invalid_checked < n);
    }
}
