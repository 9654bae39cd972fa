//! What the routing experiments share: the real edge model's labelled
//! proposals on fresh requests (one set per seed), the router bundle's
//! scorer and RouteLLM classifier, network states by regime and price
//! schedule, and the threshold controllers fitted for a cost model.
//!
//! The controllers are fitted exactly as `netgpt train router` fits them
//! (same functions, same settings), on the fit half of a seed's proposals
//! under network states drawn from every regime and schedule; the experiments
//! measure them on the other half.

use netgpt_core::avro::TimestampMillis;
use netgpt_core::records::LinkRegime;
use netgpt_edge::agent::EdgeAgent;
use netgpt_router::CostModel;
use netgpt_router::bundle::RouterBundle;
use netgpt_router::fit::{LabelledProposal, RoutingSample, fit_fixed, fit_funcdyn, sample_states_in, simulate_samples};
use netgpt_router::network::SiteState;
use netgpt_router::oracle::ScoreDistribution;
use netgpt_router::policy::{AllCloud, AllEdge, FallbackPolicy, FixedThreshold, Oracle, PolicySpec, RouteLlm};
use netgpt_router::policynet::PolicyNet;
use netgpt_sim::traffic::RequestSource;
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::Inputs;

/// Network states each fit proposal is seen under (as in the bundle fit).
pub const FIT_STATES_PER_PROPOSAL: usize = 8;

/// The edge model and router bundle the experiments run.
pub struct Lab {
    pub inputs: Inputs,
    pub bundle: RouterBundle,
    pub agent: EdgeAgent,
}

/// One seed's labelled proposals: half to fit controllers on, half to measure.
#[derive(Debug, Clone)]
pub struct SeedProposals {
    pub seed: u64,
    pub fit: Vec<LabelledProposal>,
    pub test: Vec<LabelledProposal>,
}

impl Lab {
    pub fn load(inputs: &Inputs) -> anyhow::Result<Self> {
        let bundle = RouterBundle::load(&inputs.router.router.bundle_dir)?;
        let mut agent = EdgeAgent::load(&inputs.edge.model_dir, &inputs.edge.model_version)?;
        agent.constrained = inputs.edge.constrained_decoding;
        anyhow::ensure!(bundle.model_version == agent.version, "the router bundle {} was fitted for {}, not {}", bundle.version, bundle.model_version, agent.version);
        Ok(Self { inputs: inputs.clone(), bundle, agent })
    }

    /// `n` fresh requests from `split`'s templates, proposed by the real edge model and labelled.
    pub fn proposals(&self, seed: u64, n: usize, split: &str, progress: bool) -> anyhow::Result<SeedProposals> {
        let source = RequestSource::new(split, 8)?;
        let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(7_919).wrapping_add(17));
        let requests: Vec<_> = (0..n).map(|_| source.request(&mut rng, TimestampMillis(0))).collect();
        let mut all = netgpt_sim::edge::labelled_proposals(&self.agent, &requests, progress)?;
        let test = all.split_off(n / 2);
        Ok(SeedProposals { seed, fit: all, test })
    }

    /// `n` states of the given links and schedules (diurnal load, jitter and hour of day drawn).
    pub fn states(&self, n: usize, seed: u64, links: &[LinkRegime], schedules: &[String]) -> Vec<(SiteState, i64)> {
        let net = &self.inputs.router.network;
        sample_states_in(n, seed, &net.regimes, &net.trace, links, schedules)
    }

    pub fn schedules(&self) -> Vec<String> {
        self.inputs.router.cost.price_schedules.iter().map(|s| s.id.clone()).collect()
    }

    /// Routing samples: each proposal under `per_proposal` of `states`, costed by `cost`.
    pub fn samples(&self, proposals: &[LabelledProposal], states: &[(SiteState, i64)], per_proposal: usize, cost: &CostModel, seed: u64) -> Vec<RoutingSample> {
        simulate_samples(proposals, &self.bundle.scorer, states, per_proposal, cost, self.q_cloud(), seed)
    }

    /// Share of the valid measured proposals whose score lies between 0.1 and 0.9.
    pub fn middle_score_share(&self, data: &[SeedProposals]) -> f64 {
        let scores: Vec<f64> = data.iter().flat_map(|d| d.test.iter().filter(|p| p.features.schema_valid).map(|p| self.bundle.scorer.score(&p.features))).collect();
        scores.iter().filter(|s| (0.1..0.9).contains(*s)).count() as f64 / scores.len().max(1) as f64
    }

    pub fn q_cloud(&self) -> f64 {
        self.inputs.router.router.cloud_success_estimate
    }

    /// Every controller fitted on `fit` samples (costed by the cost model they are for).
    pub fn controllers(&self, fit: &[RoutingSample]) -> anyhow::Result<Controllers> {
        let r = &self.inputs.router.router;
        let dist = ScoreDistribution::labelled(fit.iter().filter(|s| s.schema_valid).map(|s| (s.score, s.q_edge)).collect(), 0.02);
        let max_delta = fit.iter().map(|s| s.cost.delta).fold(0.0, f64::max) * 1.5;
        let routellm = match self.bundle.policy("routellm")? {
            PolicySpec::RouteLlm { classifier, cut } => RouteLlm { classifier: classifier.clone(), cut: *cut },
            other => anyhow::bail!("the bundle's routellm entry is a {} policy", other.name()),
        };
        let fixed_tau = fit_fixed(fit);
        Ok(Controllers {
            fixed_tau,
            policies: vec![
                ("all-edge".into(), Box::new(AllEdge)),
                ("all-cloud".into(), Box::new(AllCloud)),
                ("fixed".into(), Box::new(FixedThreshold { tau: fixed_tau })),
                ("routellm".into(), Box::new(routellm)),
                ("funcdyn".into(), Box::new(fit_funcdyn(fit, &r.funcdyn))),
                ("policynet".into(), Box::new(PolicyNet::train(fit, &r.policynet)?)),
                ("oracle".into(), Box::new(Oracle { table: dist.table(self.q_cloud(), max_delta.max(0.1), 80) })),
            ],
        })
    }
}

/// The controllers, by name, in display order.
pub struct Controllers {
    pub fixed_tau: f64,
    pub policies: Vec<(String, Box<dyn FallbackPolicy>)>,
}

impl Controllers {
    pub fn get(&self, name: &str) -> Option<&dyn FallbackPolicy> {
        self.policies.iter().find(|(n, _)| n == name).map(|(_, p)| p.as_ref())
    }
}

/// The cost model with both λ scaled by `kappa` (the quality–cost trade-off).
pub fn scaled(cost: &CostModel, kappa: f64) -> CostModel {
    CostModel { lambda_latency_per_s: cost.lambda_latency_per_s * kappa, lambda_price: cost.lambda_price * kappa, ..cost.clone() }
}

pub fn regime_name(r: LinkRegime) -> &'static str {
    match r {
        LinkRegime::Good => "GOOD",
        LinkRegime::Mid => "MID",
        LinkRegime::Bad => "BAD",
    }
}
