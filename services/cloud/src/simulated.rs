//! The simulated cloud, for demos and experiments — a simulation, not a model.
//! It answers with the request's evaluation reference call at a configured
//! accuracy (otherwise with a plausible wrong call), takes the latency the
//! network model gives for the site's link plus the cloud model's time per
//! token, and charges the site's price schedule. Draws hash the request id, so
//! a re-delivered request gets the same answer.

use futures::FutureExt;
use futures::future::BoxFuture;
use netgpt_core::records::CloudRequest;
use netgpt_edge::catalog::ToolCatalog;
use netgpt_edge::workload::plausible_mistake;
use netgpt_router::network::{CostModel, RequestShape, SiteState};
use netgpt_router::stage::request_draw;
use serde::{Deserialize, Serialize};

use crate::{CloudAnswer, CloudBackend, CloudError};

/// `[cloud.simulated]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimulatedConfig {
    /// Fraction of requests answered with the reference call.
    pub accuracy: f64,
    /// Fraction of calls that fail as if the cloud were unreachable.
    pub failure_rate: f64,
    /// Relative jitter of the modelled latency.
    pub latency_jitter: f64,
    /// Actually wait the modelled latency (true) or only report it (false:
    /// virtual time, so a short demo covers many fallbacks).
    pub sleep: bool,
    pub seed: u64,
    pub model: String,
}

pub struct SimulatedCloud {
    cfg: SimulatedConfig,
    cost: CostModel,
    catalog: &'static ToolCatalog,
}

impl SimulatedCloud {
    pub fn new(cfg: SimulatedConfig, cost: CostModel) -> Self {
        Self { cfg, cost, catalog: ToolCatalog::embedded() }
    }

    /// The answer, its modelled latency (ms) and tokens, without waiting.
    pub fn simulate(&self, r: &CloudRequest) -> Result<CloudAnswer, CloudError> {
        let id = &r.proposal.request.request_id;
        let draw = |salt: u64| request_draw(id, self.cfg.seed.wrapping_add(salt));
        if draw(1) < self.cfg.failure_rate {
            return Err(CloudError::Unavailable { attempts: 1, last: "simulated outage".into() });
        }
        let call_json = match &r.proposal.request.eval_reference_call {
            Some(reference) if draw(2) < self.cfg.accuracy => reference.clone(),
            Some(reference) => serde_json::from_str(reference)
                .ok()
                .and_then(|call| plausible_mistake(self.catalog, &call, draw(3)))
                .map(|c| c.to_string())
                .unwrap_or_else(|| r.proposal.call_json.clone()),
            // No reference (a request from outside the simulation): the simulation cannot know better than the edge.
            None => r.proposal.call_json.clone(),
        };
        let state = SiteState::from_snapshot(&r.decision.network);
        let shape = RequestShape::of(&r.proposal.request);
        let cost = self.cost.fallback_cost(&state, &shape, r.decision.decided_at.0);
        let jitter = 1.0 + self.cfg.latency_jitter * (2.0 * draw(4) - 1.0);
        Ok(CloudAnswer {
            tokens_in: shape.tokens_in.round() as u32,
            tokens_out: (call_json.len() as f64 / RequestShape::BYTES_PER_TOKEN).ceil() as u32,
            call_json,
            latency_ms: cost.latency_s() * 1e3 * jitter,
            model: self.cfg.model.clone(),
        })
    }
}

impl CloudBackend for SimulatedCloud {
    fn name(&self) -> &str {
        &self.cfg.model
    }

    fn answer<'a>(&'a self, request: &'a CloudRequest) -> BoxFuture<'a, Result<CloudAnswer, CloudError>> {
        async move {
            let a = self.simulate(request)?;
            if self.cfg.sleep {
                tokio::time::sleep(std::time::Duration::from_secs_f64(a.latency_ms / 1e3)).await;
            }
            Ok(a)
        }
        .boxed()
    }
}
