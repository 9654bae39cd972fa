//! Fallback policies: given a proposal's score and the site's network state,
//! keep the edge answer or fall back to the cloud. Every policy is a small,
//! pure unit (no IO, no clock), so the router, the evaluation and the tests run
//! the same code. Parameters travel as JSON ([`PolicySpec`]) in `PolicyUpdate`
//! records and in the router bundle.

use netgpt_core::records::{DecisionReason, Placement};
use serde::{Deserialize, Serialize};

use crate::network::{FallbackCost, RequestShape, SiteState};
use crate::policynet::PolicyNet;
use crate::textclf::TextClassifier;

/// Everything a policy may look at for one request.
#[derive(Debug, Clone, Copy)]
pub struct DecisionInput<'a> {
    /// The request text (RouteLLM-style policies decide from it alone).
    pub prompt: &'a str,
    /// The scorer's calibrated score of the edge proposal.
    pub score: f64,
    pub schema_valid: bool,
    pub state: &'a SiteState,
    pub shape: &'a RequestShape,
    pub cost: &'a FallbackCost,
}

/// What a policy decided and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub placement: Placement,
    /// τ the score was compared with (for RouteLLM: the classifier's cut).
    pub threshold: f64,
    pub reason: DecisionReason,
    pub detail: Option<String>,
}

pub trait FallbackPolicy: Send + Sync {
    fn name(&self) -> &'static str;
    fn decide(&self, x: &DecisionInput<'_>) -> Verdict;
}

/// The network features of threshold controllers, in the units of the cost
/// model: RTT (s), transfer time 8·bytes/B (s), cloud price (currency units),
/// loss rate, expected output tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NetFeatures {
    pub rtt_s: f64,
    pub transfer_s: f64,
    pub price: f64,
    pub loss: f64,
    pub tokens_out: f64,
}

impl NetFeatures {
    pub fn of(x: &DecisionInput<'_>) -> Self {
        Self { rtt_s: x.state.rtt_ms / 1e3, transfer_s: x.cost.transfer_s, price: x.cost.price, loss: x.state.loss_rate, tokens_out: x.shape.tokens_out }
    }
}

/// Keep when s ≥ τ; an invalid edge call can never be the answer, so it falls back.
pub fn threshold_verdict(x: &DecisionInput<'_>, tau: f64) -> Verdict {
    let tau = if tau.is_finite() { tau.clamp(0.0, 1.0) } else { 1.0 };
    let (placement, reason) = if !x.schema_valid {
        (Placement::Cloud, DecisionReason::InvalidEdgeCall)
    } else if x.score >= tau {
        (Placement::Edge, DecisionReason::ScoreAboveThreshold)
    } else {
        (Placement::Cloud, DecisionReason::ScoreBelowThreshold)
    };
    Verdict { placement, threshold: tau, reason, detail: None }
}

/// Every answer from the edge, valid or not (the lower bound on cost).
pub struct AllEdge;

impl FallbackPolicy for AllEdge {
    fn name(&self) -> &'static str {
        "all-edge"
    }
    fn decide(&self, _: &DecisionInput<'_>) -> Verdict {
        Verdict { placement: Placement::Edge, threshold: 0.0, reason: DecisionReason::FixedPlacement, detail: None }
    }
}

/// Every answer from the cloud (the upper bound on quality and cost).
pub struct AllCloud;

impl FallbackPolicy for AllCloud {
    fn name(&self) -> &'static str {
        "all-cloud"
    }
    fn decide(&self, _: &DecisionInput<'_>) -> Verdict {
        Verdict { placement: Placement::Cloud, threshold: 1.0, reason: DecisionReason::FixedPlacement, detail: None }
    }
}

/// One threshold whatever the network (a FrugalGPT-style cascade: try the
/// cheap model, escalate when its score is low).
pub struct FixedThreshold {
    pub tau: f64,
}

impl FallbackPolicy for FixedThreshold {
    fn name(&self) -> &'static str {
        "fixed"
    }
    fn decide(&self, x: &DecisionInput<'_>) -> Verdict {
        threshold_verdict(x, self.tau)
    }
}

/// RouteLLM-style: a classifier of "the edge will fail" from the request text
/// alone (it never sees the proposal), with a cut calibrated to a target
/// cloud-call fraction.
pub struct RouteLlm {
    pub classifier: TextClassifier,
    pub cut: f64,
}

impl FallbackPolicy for RouteLlm {
    fn name(&self) -> &'static str {
        "routellm"
    }
    fn decide(&self, x: &DecisionInput<'_>) -> Verdict {
        let p_fail = self.classifier.p_fail(x.prompt);
        let placement = if p_fail > self.cut { Placement::Cloud } else { Placement::Edge };
        Verdict { placement, threshold: self.cut, reason: DecisionReason::PreEdgeClassifier, detail: Some(format!("p_fail={p_fail:.3}")) }
    }
}

/// FuncDyn: the closed form with the structure of τ*(S) = q_c − ΔC(S),
/// τ(S) = clip(θ0 − θ1·RTT − θ2·8·bytes/B − θ3·price, 0, 1) with θ ≥ 0,
/// fitted on logged samples by maximising empirical utility.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FuncDyn {
    pub theta: [f64; 4],
}

impl FuncDyn {
    pub fn tau(&self, f: &NetFeatures) -> f64 {
        let [t0, t1, t2, t3] = self.theta;
        (t0 - t1 * f.rtt_s - t2 * f.transfer_s - t3 * f.price).clamp(0.0, 1.0)
    }
}

impl FallbackPolicy for FuncDyn {
    fn name(&self) -> &'static str {
        "funcdyn"
    }
    fn decide(&self, x: &DecisionInput<'_>) -> Verdict {
        threshold_verdict(x, self.tau(&NetFeatures::of(x)))
    }
}

impl FallbackPolicy for PolicyNet {
    fn name(&self) -> &'static str {
        "policynet"
    }
    fn decide(&self, x: &DecisionInput<'_>) -> Verdict {
        threshold_verdict(x, self.tau(&NetFeatures::of(x)))
    }
}

/// The oracle τ*(S): the utility-maximising threshold for the fallback cost of
/// this request, computed numerically from an empirical score distribution
/// (see [`crate::oracle`]) and tabulated over ΔC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Oracle {
    /// (ΔC, τ*) pairs, ΔC ascending.
    pub table: Vec<(f64, f64)>,
}

impl Oracle {
    pub fn tau(&self, delta: f64) -> f64 {
        let (xs, ys): (Vec<f64>, Vec<f64>) = self.table.iter().copied().unzip();
        crate::scorer::interpolate(&xs, &ys, delta)
    }
}

impl FallbackPolicy for Oracle {
    fn name(&self) -> &'static str {
        "oracle"
    }
    fn decide(&self, x: &DecisionInput<'_>) -> Verdict {
        threshold_verdict(x, self.tau(x.cost.delta))
    }
}

/// A policy's parameters as they travel in `PolicyUpdate.params_json` and in
/// the router bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "lowercase")]
pub enum PolicySpec {
    #[serde(rename = "all-edge")]
    AllEdge,
    #[serde(rename = "all-cloud")]
    AllCloud,
    Fixed { tau: f64 },
    RouteLlm { classifier: TextClassifier, cut: f64 },
    FuncDyn(FuncDyn),
    PolicyNet(crate::policynet::PolicyNetParams),
    Oracle(Oracle),
}

/// Names accepted by `router.policy` and the demo, in display order.
pub const POLICY_NAMES: [&str; 7] = ["all-edge", "all-cloud", "fixed", "routellm", "funcdyn", "policynet", "oracle"];

impl PolicySpec {
    pub fn name(&self) -> &'static str {
        match self {
            PolicySpec::AllEdge => "all-edge",
            PolicySpec::AllCloud => "all-cloud",
            PolicySpec::Fixed { .. } => "fixed",
            PolicySpec::RouteLlm { .. } => "routellm",
            PolicySpec::FuncDyn(_) => "funcdyn",
            PolicySpec::PolicyNet(_) => "policynet",
            PolicySpec::Oracle(_) => "oracle",
        }
    }

    pub fn build(&self) -> anyhow::Result<Box<dyn FallbackPolicy>> {
        Ok(match self {
            PolicySpec::AllEdge => Box::new(AllEdge),
            PolicySpec::AllCloud => Box::new(AllCloud),
            PolicySpec::Fixed { tau } => {
                anyhow::ensure!((0.0..=1.0).contains(tau), "fixed threshold {tau} is outside [0, 1]");
                Box::new(FixedThreshold { tau: *tau })
            }
            PolicySpec::RouteLlm { classifier, cut } => Box::new(RouteLlm { classifier: classifier.clone(), cut: *cut }),
            PolicySpec::FuncDyn(f) => {
                anyhow::ensure!(f.theta.iter().all(|t| t.is_finite()) && f.theta[1..].iter().all(|t| *t >= 0.0), "FuncDyn needs finite θ with θ1..θ3 ≥ 0, got {:?}", f.theta);
                Box::new(*f)
            }
            PolicySpec::PolicyNet(p) => Box::new(PolicyNet::from_params(p)?),
            PolicySpec::Oracle(o) => {
                anyhow::ensure!(!o.table.is_empty(), "the oracle table is empty");
                Box::new(o.clone())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::tests::{cost_model, regimes, shape};
    use netgpt_core::records::LinkRegime;

    fn decide(p: &dyn FallbackPolicy, score: f64, valid: bool, regime: LinkRegime) -> Verdict {
        let state = regimes().state(regime, "flat");
        let shape = shape();
        let cost = cost_model().fallback_cost(&state, &shape, 0);
        p.decide(&DecisionInput { prompt: "show alarms at S001", score, schema_valid: valid, state: &state, shape: &shape, cost: &cost })
    }

    #[test]
    fn bounds_place_everything_in_one_place() {
        for (s, v) in [(0.0, true), (1.0, true), (0.5, false)] {
            assert_eq!(decide(&AllEdge, s, v, LinkRegime::Good).placement, Placement::Edge);
            assert_eq!(decide(&AllCloud, s, v, LinkRegime::Bad).placement, Placement::Cloud);
        }
    }

    #[test]
    fn fixed_threshold_keeps_scores_at_or_above_tau_and_never_an_invalid_call() {
        let p = FixedThreshold { tau: 0.6 };
        assert_eq!(decide(&p, 0.6, true, LinkRegime::Mid).placement, Placement::Edge);
        assert_eq!(decide(&p, 0.59, true, LinkRegime::Mid).reason, DecisionReason::ScoreBelowThreshold);
        let v = decide(&p, 0.99, false, LinkRegime::Mid);
        assert_eq!((v.placement, v.reason), (Placement::Cloud, DecisionReason::InvalidEdgeCall));
        assert!(PolicySpec::Fixed { tau: 1.5 }.build().is_err());
    }

    #[test]
    fn funcdyn_lowers_the_threshold_on_worse_links() {
        let f = FuncDyn { theta: [0.9, 1.0, 2.0, 20.0] };
        let (good, bad) = (decide(&f, 0.5, true, LinkRegime::Good), decide(&f, 0.5, true, LinkRegime::Bad));
        assert!(good.threshold > bad.threshold, "{} vs {}", good.threshold, bad.threshold);
        assert!((0.0..=1.0).contains(&bad.threshold));
        assert!(PolicySpec::FuncDyn(FuncDyn { theta: [0.9, -1.0, 0.0, 0.0] }).build().is_err());
    }

    #[test]
    fn routellm_decides_from_the_text_alone() {
        let texts: Vec<(String, bool)> = (0..200).flat_map(|i| [(format!("show alarms at S{i:03}"), false), (format!("what on earth is up near S{i:03}"), true)]).collect();
        let refs: Vec<(&str, bool)> = texts.iter().map(|(t, y)| (t.as_str(), *y)).collect();
        let p = RouteLlm { classifier: TextClassifier::fit(&refs, 1 << 10, 200), cut: 0.5 };
        let state = regimes().state(LinkRegime::Good, "flat");
        let cost = cost_model().fallback_cost(&state, &shape(), 0);
        let at = |prompt: &str, score: f64| p.decide(&DecisionInput { prompt, score, schema_valid: true, state: &state, shape: &shape(), cost: &cost });
        for score in [0.0, 1.0] {
            assert_eq!(at("show alarms at S999", score).placement, Placement::Edge, "the proposal's score is not consulted");
            let v = at("what on earth is up near S999", score);
            assert_eq!((v.placement, v.reason), (Placement::Cloud, DecisionReason::PreEdgeClassifier));
            assert!(v.detail.unwrap().starts_with("p_fail="));
        }
    }

    #[test]
    fn the_oracle_interpolates_its_table_and_specs_round_trip_through_json() {
        let o = Oracle { table: vec![(0.0, 0.9), (1.0, 0.0)] };
        assert!((o.tau(0.5) - 0.45).abs() < 1e-12);
        assert_eq!(o.tau(2.0), 0.0);
        for spec in [PolicySpec::AllEdge, PolicySpec::Fixed { tau: 0.4 }, PolicySpec::FuncDyn(FuncDyn { theta: [1.0, 0.5, 0.1, 2.0] }), PolicySpec::Oracle(o)] {
            let json = serde_json::to_string(&spec).unwrap();
            let back: PolicySpec = serde_json::from_str(&json).unwrap();
            assert_eq!(back, spec);
            assert_eq!(back.build().unwrap().name(), spec.name());
        }
        assert!(serde_json::from_str::<PolicySpec>(r#"{"policy":"coin-flip"}"#).is_err());
    }
}
