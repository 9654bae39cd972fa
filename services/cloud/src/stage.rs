//! The cloud gateway stage: `CloudRequest` in, `AgentResponse` out. Calls run
//! concurrently (bounded by `cloud.max_concurrency`) through the stage loop's
//! `begin`, so one slow cloud call does not hold up the next. When the cloud
//! cannot be reached the edge answer goes out instead, flagged
//! `network_down_fallback`, so no request is left without an answer.

use std::sync::Arc;

use futures::FutureExt;
use netgpt_core::AnyRecord;
use netgpt_core::avro::TimestampMillis;
use netgpt_core::records::{AgentResponse, CloudRequest, Origin};
use netgpt_core::stage::{Incoming, Outgoing, Rejection, Stage, Work};
use netgpt_core::topics::{AGENT_RESPONSES, CLOUD_REQUESTS};
use netgpt_edge::catalog::ToolCatalog;
use netgpt_router::network::{CostModel, SiteState};
use tokio::sync::Semaphore;

use crate::simulated::SimulatedCloud;
use crate::{BackendKind, CloudBackend, CloudConfig};

pub struct CloudGateway {
    backend: Arc<dyn CloudBackend>,
    cost: Arc<CostModel>,
    permits: Arc<Semaphore>,
}

impl CloudGateway {
    pub fn new(backend: Arc<dyn CloudBackend>, cost: CostModel, max_concurrency: usize) -> Self {
        Self { backend, cost: Arc::new(cost), permits: Arc::new(Semaphore::new(max_concurrency.max(1))) }
    }

    /// The configured backend.
    pub fn from_config(cfg: &CloudConfig, cost: CostModel) -> anyhow::Result<Self> {
        let backend: Arc<dyn CloudBackend> = match cfg.backend {
            BackendKind::Simulated => Arc::new(SimulatedCloud::new(cfg.simulated.clone(), cost.clone())),
            BackendKind::OpenAi => Arc::new(crate::openai::OpenAiBackend::new(cfg.openai.clone())?),
        };
        Ok(Self::new(backend, cost, cfg.max_concurrency))
    }

    pub fn backend_name(&self) -> &str {
        self.backend.name()
    }
}

/// Answers one cloud request (the cloud's answer, or the flagged edge answer).
pub async fn answer(backend: &dyn CloudBackend, cost: &CostModel, r: &CloudRequest) -> AgentResponse {
    // Time already spent before the cloud call: request → decision (+ queueing here).
    let before_ms = TimestampMillis::now().0.saturating_sub(r.proposal.request.created_at.0).max(0) as f64;
    let outcome = backend.answer(r).await;
    if let Err(e) = &outcome {
        tracing::warn!(request = %r.proposal.request.request_id, site = %r.proposal.request.site_id, error = %e, "cloud unreachable; answering with the edge proposal");
    }
    response_of(r, outcome, cost, before_ms, TimestampMillis::now())
}

/// The response for a cloud call's outcome, `before_ms` after the request was
/// created and answered at `now` (wall clock in the gateway, simulated time offline).
pub fn response_of(r: &CloudRequest, outcome: Result<crate::CloudAnswer, crate::CloudError>, cost: &CostModel, before_ms: f64, now: TimestampMillis) -> AgentResponse {
    let request = &r.proposal.request;
    let base = AgentResponse {
        request_id: request.request_id,
        site_id: request.site_id.clone(),
        origin: Origin::Cloud,
        tool_call_json: String::new(),
        schema_valid: false,
        network_down_fallback: false,
        latency_ms: 0.0,
        tokens_in: 0,
        tokens_out: 0,
        cost: 0.0,
        model_version: String::new(),
        policy_version: Some(r.decision.policy_version.clone()),
        responded_at: now,
    };
    match outcome {
        Ok(a) => {
            let state = SiteState::from_snapshot(&r.decision.network);
            let price = match cost.schedule(&state.price_schedule) {
                Some(s) => s.price(f64::from(a.tokens_in), f64::from(a.tokens_out), r.decision.decided_at.0),
                None => cost.fallback_cost(&state, &netgpt_router::network::RequestShape::of(request), r.decision.decided_at.0).price,
            };
            AgentResponse {
                schema_valid: ToolCatalog::embedded().check_call(&a.call_json).valid,
                tool_call_json: a.call_json,
                latency_ms: before_ms + a.latency_ms,
                tokens_in: i32::try_from(a.tokens_in).unwrap_or(i32::MAX),
                tokens_out: i32::try_from(a.tokens_out).unwrap_or(i32::MAX),
                cost: price,
                model_version: a.model,
                ..base
            }
        }
        Err(_) => {
            AgentResponse {
                origin: Origin::Edge,
                tool_call_json: r.proposal.call_json.clone(),
                schema_valid: r.proposal.schema_valid,
                network_down_fallback: true,
                latency_ms: now.0.saturating_sub(request.created_at.0).max(0) as f64,
                tokens_out: r.proposal.output_tokens,
                model_version: r.proposal.model_version.clone(),
                ..base
            }
        }
    }
}

impl Stage for CloudGateway {
    fn name(&self) -> &str {
        "cloud"
    }

    fn input_topics(&self) -> Vec<String> {
        vec![CLOUD_REQUESTS.into()]
    }

    fn begin(&mut self, input: &Incoming<'_>) -> Option<Work> {
        let AnyRecord::CloudRequest(r) = &input.record else { return None };
        let (r, backend, cost, permits) = (r.clone(), self.backend.clone(), self.cost.clone(), self.permits.clone());
        Some(
            async move {
                let _permit = permits.acquire_owned().await.map_err(|_| Rejection("the cloud gateway is shutting down".into()))?;
                Ok(vec![Outgoing::new(AGENT_RESPONSES, answer(backend.as_ref(), &cost, &r).await)])
            }
            .boxed(),
        )
    }

    async fn handle(&mut self, input: Incoming<'_>) -> Result<Vec<Outgoing>, Rejection> {
        Err(Rejection(format!("the cloud gateway takes CloudRequest records, not {}", input.record.record_name())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netgpt_core::records::{DecisionReason, Difficulty, EdgeProposal, LinkRegime, Placement, RoutingDecision, ToolRequest};
    use netgpt_router::RouterSettings;

    fn request(reference: &str) -> CloudRequest {
        let settings = RouterSettings::defaults();
        let state = settings.network.regimes.state(LinkRegime::Bad, "flat");
        let req = ToolRequest {
            request_id: uuid::Uuid::new_v4(),
            site_id: "S002".into(),
            tenant: "noc".into(),
            prompt: "set the tilt of A01 to 4 degrees".into(),
            tool_catalog_version: "v1".into(),
            upload_bytes: 6100,
            download_bytes: 300,
            expected_output_tokens: 30,
            created_at: TimestampMillis::now(),
            eval_reference_call: Some(reference.into()),
            eval_difficulty: Some(Difficulty::Medium),
        };
        let decision = RoutingDecision {
            request_id: req.request_id,
            site_id: "S002".into(),
            placement: Placement::Cloud,
            score: 0.2,
            threshold: 0.5,
            reason: DecisionReason::ScoreBelowThreshold,
            reason_detail: None,
            network: state.snapshot(Some(10), false),
            fallback_cost: 0.5,
            policy_name: "fixed".into(),
            policy_version: "p1".into(),
            model_version: "m1".into(),
            scorer_version: "s1".into(),
            propensity: 1.0,
            shadow_policy: None,
            shadow_placement: None,
            shadow_threshold: None,
            decided_at: TimestampMillis::now(),
        };
        let proposal = EdgeProposal {
            request: req,
            model_version: "m1".into(),
            call_json: r#"{"tool":"list_alarms","arguments":{"site_id":"S002"}}"#.into(),
            tool_name: Some("list_alarms".into()),
            schema_valid: true,
            schema_error: None,
            mean_logprob: -0.5,
            min_logprob: -2.0,
            mean_entropy: 0.5,
            output_tokens: 12,
            unknown_word_share: None,
            edge_latency_ms: 10.0,
            proposed_at: TimestampMillis::now(),
        };
        CloudRequest { proposal, decision }
    }

    fn simulated(accuracy: f64, failure_rate: f64) -> SimulatedCloud {
        let mut cfg = crate::CloudConfig::defaults().simulated;
        cfg.accuracy = accuracy;
        cfg.failure_rate = failure_rate;
        SimulatedCloud::new(cfg, RouterSettings::defaults().cost)
    }

    const REFERENCE: &str = r#"{"tool":"set_antenna_tilt","arguments":{"cell_id":"A01","tilt_deg":4}}"#;

    #[tokio::test]
    async fn the_simulated_cloud_answers_at_its_accuracy_with_modelled_latency_and_price() {
        let cloud = simulated(0.9, 0.0);
        let cost = RouterSettings::defaults().cost;
        let (mut right, n) = (0, 2000);
        for _ in 0..n {
            let r = request(REFERENCE);
            let a = answer(&cloud, &cost, &r).await;
            assert_eq!((a.origin, a.network_down_fallback), (Origin::Cloud, false));
            assert!(a.schema_valid, "wrong answers are still valid calls: {}", a.tool_call_json);
            assert!(a.cost > 0.0 && a.latency_ms > 600.0, "BAD link: {} ms", a.latency_ms);
            right += usize::from(a.tool_call_json == REFERENCE);
        }
        let acc = right as f64 / n as f64;
        assert!((0.87..0.93).contains(&acc), "{acc}");
        let r = request(REFERENCE);
        assert_eq!(cloud.simulate(&r), cloud.simulate(&r), "deterministic per request");
    }

    #[tokio::test]
    async fn an_unreachable_cloud_yields_the_flagged_edge_answer() {
        let cloud = simulated(1.0, 1.0);
        let r = request(REFERENCE);
        let a = answer(&cloud, &RouterSettings::defaults().cost, &r).await;
        assert_eq!((a.origin, a.network_down_fallback, a.cost), (Origin::Edge, true, 0.0));
        assert_eq!(a.tool_call_json, r.proposal.call_json);
    }
}
