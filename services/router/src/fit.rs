//! Logged routing samples and what is fitted on them: the best fixed τ, the
//! FuncDyn parameters, and (in [`crate::policynet`]) PolicyNet. Also the exact
//! empirical utility of any policy, used by the fits, the bundle report and the
//! evaluation.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use netgpt_core::records::{LinkRegime, Placement};

use crate::network::{CostModel, FallbackCost, Regimes, RequestShape, SiteState};
use crate::policy::{DecisionInput, FallbackPolicy, FuncDyn, NetFeatures};
use crate::scorer::sigmoid;
use crate::trace::{LinkTrace, TraceConfig, TraceKind};

/// One logged (or simulated) request: what the router saw and what each
/// placement would have been worth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoutingSample {
    pub prompt: String,
    pub score: f64,
    pub schema_valid: bool,
    pub state: SiteState,
    pub shape: RequestShape,
    pub cost: FallbackCost,
    /// Edge outcome: 1 if the edge call was right (a label, or a probability).
    pub q_edge: f64,
    /// Cloud outcome (a label, or the cloud's success rate).
    pub q_cloud: f64,
    /// Importance weight (inverse propensity where the data was explored).
    pub weight: f64,
}

impl RoutingSample {
    pub fn features(&self) -> NetFeatures {
        NetFeatures { rtt_s: self.state.rtt_ms / 1e3, transfer_s: self.cost.transfer_s, price: self.cost.price, loss: self.state.loss_rate, tokens_out: self.shape.tokens_out }
    }

    pub fn input(&self) -> DecisionInput<'_> {
        DecisionInput { prompt: &self.prompt, score: self.score, schema_valid: self.schema_valid, state: &self.state, shape: &self.shape, cost: &self.cost }
    }

    /// Utility of a placement: quality minus the fallback cost if it went to the cloud.
    pub fn utility(&self, placement: Placement) -> f64 {
        match placement {
            Placement::Edge => self.q_edge,
            Placement::Cloud => self.q_cloud - self.cost.delta,
        }
    }
}

/// How a policy does on a set of samples (weighted means).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicyOutcome {
    pub utility: f64,
    pub success: f64,
    pub cloud_fraction: f64,
    /// Mean cloud price per request (currency units).
    pub price: f64,
    /// Mean latency added by fallbacks per request (s).
    pub added_latency_s: f64,
}

pub fn evaluate(policy: &dyn FallbackPolicy, samples: &[RoutingSample]) -> PolicyOutcome {
    let mut o = PolicyOutcome::default();
    let mut w = 0.0;
    for s in samples {
        let placement = policy.decide(&s.input()).placement;
        let cloud = placement == Placement::Cloud;
        o.utility += s.weight * s.utility(placement);
        o.success += s.weight * if cloud { s.q_cloud } else { s.q_edge };
        o.cloud_fraction += s.weight * f64::from(u8::from(cloud));
        o.price += s.weight * if cloud { s.cost.price } else { 0.0 };
        o.added_latency_s += s.weight * if cloud { s.cost.latency_s() } else { 0.0 };
        w += s.weight;
    }
    let w = if w > 0.0 { w } else { 1.0 };
    PolicyOutcome { utility: o.utility / w, success: o.success / w, cloud_fraction: o.cloud_fraction / w, price: o.price / w, added_latency_s: o.added_latency_s / w }
}

/// The single τ with the best empirical utility (grid of 0.005).
pub fn fit_fixed(samples: &[RoutingSample]) -> f64 {
    (0..=200)
        .map(|i| f64::from(i) / 200.0)
        .map(|tau| (tau, evaluate(&crate::policy::FixedThreshold { tau }, samples).utility))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(0.5, |(t, _)| t)
}

/// `[router.funcdyn]`: fitting settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FuncDynFitting {
    pub iterations: usize,
    pub learning_rate: f64,
    /// Temperatures of the sigmoid relaxation, annealed from the first to the second.
    pub temperature_start: f64,
    pub temperature_end: f64,
}

impl Default for FuncDynFitting {
    fn default() -> Self {
        Self { iterations: 600, learning_rate: 0.02, temperature_start: 0.1, temperature_end: 0.01 }
    }
}

/// Fits θ by maximising the smoothed empirical utility with projected Adam
/// (θ1..θ3 ≥ 0) from a few starting points, keeping the θ with the best exact
/// utility. Features are scaled by their spread inside the optimiser only.
pub fn fit_funcdyn(samples: &[RoutingSample], cfg: &FuncDynFitting) -> FuncDyn {
    let valid: Vec<&RoutingSample> = samples.iter().filter(|s| s.schema_valid).collect();
    let x: Vec<[f64; 3]> = valid.iter().map(|s| {
        let f = s.features();
        [f.rtt_s, f.transfer_s, f.price]
    }).collect();
    let mut scale = [0f64; 3];
    for k in 0..3 {
        let mean = x.iter().map(|v| v[k]).sum::<f64>() / x.len().max(1) as f64;
        scale[k] = (x.iter().map(|v| (v[k] - mean).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt().max(1e-9);
    }
    let to_theta = |phi: &[f64; 4]| FuncDyn { theta: [phi[0], phi[1] / scale[0], phi[2] / scale[1], phi[3] / scale[2]] };
    let mut best: Option<(f64, FuncDyn)> = None;
    for start in [0.6, 0.9, 1.2] {
        let mut phi = [start, 0.05, 0.05, 0.05];
        let (mut m, mut v) = ([0f64; 4], [0f64; 4]);
        for it in 0..cfg.iterations {
            let frac = it as f64 / cfg.iterations.max(1) as f64;
            let temp = cfg.temperature_start * (cfg.temperature_end / cfg.temperature_start).powf(frac);
            let mut g = [0f64; 4];
            let mut wsum = 0.0;
            for (s, xi) in valid.iter().zip(&x) {
                let tau = phi[0] - (0..3).map(|k| phi[k + 1] * xi[k] / scale[k]).sum::<f64>();
                let sg = sigmoid((tau - s.score) / temp);
                let du_dtau = s.weight * sg * (1.0 - sg) / temp * ((s.q_cloud - s.cost.delta) - s.q_edge);
                g[0] += du_dtau;
                for k in 0..3 {
                    g[k + 1] -= du_dtau * xi[k] / scale[k];
                }
                wsum += s.weight;
            }
            // Adam ascent step.
            for k in 0..4 {
                let gk = g[k] / wsum.max(1e-9);
                m[k] = 0.9 * m[k] + 0.1 * gk;
                v[k] = 0.999 * v[k] + 0.001 * gk * gk;
                let (mh, vh) = (m[k] / (1.0 - 0.9f64.powi(it as i32 + 1)), v[k] / (1.0 - 0.999f64.powi(it as i32 + 1)));
                phi[k] += cfg.learning_rate * mh / (vh.sqrt() + 1e-8);
            }
            for p in phi.iter_mut().skip(1) {
                *p = p.max(0.0);
            }
        }
        let f = to_theta(&phi);
        let u = evaluate(&f, samples).utility;
        if best.as_ref().is_none_or(|(bu, _)| u > *bu) {
            best = Some((u, f));
        }
    }
    best.map_or(FuncDyn { theta: [0.5, 0.0, 0.0, 0.0] }, |(_, f)| f)
}

/// Network states spread over regimes, diurnal load, price schedules and
/// hours of the day, for simulated logs.
pub fn sample_states(n: usize, seed: u64, regimes: &Regimes, trace: &TraceConfig, schedules: &[String]) -> Vec<(SiteState, i64)> {
    sample_states_in(n, seed, regimes, trace, LinkRegime::VARIANTS, schedules)
}

/// [`sample_states`] restricted to the regimes `links` (drawn uniformly).
pub fn sample_states_in(n: usize, seed: u64, regimes: &Regimes, trace: &TraceConfig, links: &[LinkRegime], schedules: &[String]) -> Vec<(SiteState, i64)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let cfg = TraceConfig { kind: TraceKind::Static, ..trace.clone() };
    let links = if links.is_empty() { LinkRegime::VARIANTS } else { links };
    (0..n)
        .map(|i| {
            let mut t = LinkTrace::for_site(i as u32, &cfg);
            t.regime = links[rng.random_range(0..links.len())];
            let at_s = rng.random_range(0.0..trace.diurnal_period_s.max(1.0));
            let mut s = t.observe(&mut rng, at_s, regimes);
            if !schedules.is_empty() {
                s.price_schedule = schedules[rng.random_range(0..schedules.len())].clone();
            }
            (s, rng.random_range(0..24i64) * 3_600_000)
        })
        .collect()
}

/// A labelled edge proposal (from the calibration run or from the logs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelledProposal {
    pub prompt: String,
    pub features: crate::scorer::ProposalFeatures,
    pub shape: RequestShape,
    pub correct: bool,
    pub tier: String,
    /// Importance weight of the samples made from it: 1/propensity for a
    /// proposal labelled from logs (only cloud-answered requests have a
    /// label), 1 for a calibration run.
    #[serde(default = "unit_weight")]
    pub weight: f64,
}

fn unit_weight() -> f64 {
    1.0
}

/// Simulated routing logs: each proposal seen under `per_proposal` network states.
pub fn simulate_samples(
    proposals: &[LabelledProposal],
    scorer: &crate::scorer::Scorer,
    states: &[(SiteState, i64)],
    per_proposal: usize,
    cost: &CostModel,
    q_cloud: f64,
    seed: u64,
) -> Vec<RoutingSample> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(proposals.len() * per_proposal);
    for p in proposals {
        let score = scorer.score(&p.features);
        for _ in 0..per_proposal {
            let (state, at) = &states[rng.random_range(0..states.len())];
            out.push(RoutingSample {
                prompt: p.prompt.clone(),
                score,
                schema_valid: p.features.schema_valid,
                state: state.clone(),
                shape: p.shape,
                cost: cost.fallback_cost(state, &p.shape, *at),
                q_edge: f64::from(u8::from(p.correct)),
                q_cloud,
                weight: p.weight,
            });
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::network::tests::{cost_model, regimes, shape};
    use crate::policy::{AllCloud, AllEdge, FixedThreshold};
    use crate::policynet::{PolicyNet, PolicyNetTraining};

    /// Samples over GOOD/MID/BAD links with a calibrated score: outcome ~ Bernoulli(s).
    pub fn samples(n: usize, seed: u64) -> Vec<RoutingSample> {
        let mut rng = StdRng::seed_from_u64(seed);
        let c = cost_model();
        (0..n)
            .map(|_| {
                let regime = LinkRegime::VARIANTS[rng.random_range(0..3)];
                let mut state = regimes().state(regime, if rng.random_bool(0.5) { "flat" } else { "peak-offpeak" });
                state.rtt_ms *= rng.random_range(0.7..1.3);
                let score: f64 = if rng.random_bool(0.75) { rng.random::<f64>().powf(0.25) } else { rng.random::<f64>() };
                let shape = shape();
                let at = rng.random_range(0..24i64) * 3_600_000;
                RoutingSample {
                    prompt: "p".into(),
                    score,
                    schema_valid: rng.random_bool(0.98),
                    cost: c.fallback_cost(&state, &shape, at),
                    state,
                    shape,
                    q_edge: f64::from(u8::from(rng.random_bool(score))),
                    q_cloud: f64::from(u8::from(rng.random_bool(0.97))),
                    weight: 1.0,
                }
            })
            .collect()
    }

    #[test]
    fn dynamic_controllers_beat_the_best_fixed_threshold_on_mixed_links() {
        let (train, test) = (samples(6000, 1), samples(6000, 2));
        let fixed = FixedThreshold { tau: fit_fixed(&train) };
        let funcdyn = fit_funcdyn(&train, &FuncDynFitting::default());
        let net = PolicyNet::train(&train, &PolicyNetTraining::default()).unwrap();
        let u = |p: &dyn FallbackPolicy| evaluate(p, &test).utility;
        let (uf, ud, un) = (u(&fixed), u(&funcdyn), u(&net));
        assert!(ud > uf, "FuncDyn {ud} vs fixed {uf}");
        assert!(un > uf, "PolicyNet {un} vs fixed {uf}");
        // In sample, the best fixed τ is at least as good as either bound (τ = 0 and τ = 1 are on its grid,
        // up to invalid calls, which every threshold policy sends to the cloud).
        let ut = |p: &dyn FallbackPolicy| evaluate(p, &train).utility;
        assert!(ut(&fixed) >= ut(&AllCloud) && ut(&fixed) >= ut(&FixedThreshold { tau: 0.0 }), "fixed τ in sample");
        // The fitted form has the theory's signs: worse latency, lower threshold.
        assert!(funcdyn.theta[1] > 0.0, "{:?}", funcdyn.theta);
    }

    #[test]
    fn policynet_thresholds_fall_as_links_get_worse() {
        let net = PolicyNet::train(&samples(6000, 3), &PolicyNetTraining::default()).unwrap();
        let c = cost_model();
        let f = |r: LinkRegime| {
            let state = regimes().state(r, "flat");
            let cost = c.fallback_cost(&state, &shape(), 0);
            NetFeatures { rtt_s: state.rtt_ms / 1e3, transfer_s: cost.transfer_s, price: cost.price, loss: state.loss_rate, tokens_out: shape().tokens_out }
        };
        let taus = net.taus(&[f(LinkRegime::Good), f(LinkRegime::Mid), f(LinkRegime::Bad)]).unwrap();
        assert!(taus[0] > taus[1] && taus[1] > taus[2], "{taus:?}");
        // Near the theory's τ* = q_c − ΔC for this calibrated score.
        for (tau, r) in taus.iter().zip(LinkRegime::VARIANTS) {
            let closed = 0.97 - c.fallback_cost(&regimes().state(*r, "flat"), &shape(), 0).delta;
            assert!((tau - closed).abs() < 0.15, "{r:?}: {tau} vs {closed}");
        }
        let again = PolicyNet::from_params(&serde_json::from_str(&serde_json::to_string(&net.params).unwrap()).unwrap()).unwrap();
        assert_eq!(again.taus(&[f(LinkRegime::Mid)]).unwrap(), net.taus(&[f(LinkRegime::Mid)]).unwrap());
    }

    #[test]
    fn evaluate_weighs_by_importance_weight() {
        let mut s = samples(2, 4);
        s[0].weight = 3.0;
        s[1].weight = 1.0;
        let o = evaluate(&AllEdge, &s);
        assert!((o.success - (3.0 * s[0].q_edge + s[1].q_edge) / 4.0).abs() < 1e-12);
        assert_eq!(o.cloud_fraction, 0.0);
        assert_eq!(evaluate(&AllCloud, &s).cloud_fraction, 1.0);
    }
}
