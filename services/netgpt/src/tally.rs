//! The `tally` stage: the demo's observer at the end of the pipeline. It reads
//! proposals, decisions, final answers and telemetry through the at-least-once
//! stage loop, joins them by request id, and — on the evaluation side only —
//! checks each final answer against the request's reference call.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use netgpt_core::AnyRecord;
use netgpt_core::avro::TimestampMillis;
use netgpt_core::records::{AgentResponse, DecisionReason, Origin, Placement};
use netgpt_core::stage::{Incoming, Outgoing, Rejection, Stage};
use netgpt_core::topics::{AGENT_RESPONSES, EDGE_PROPOSALS, ROUTING_DECISIONS, SITE_TELEMETRY};
use netgpt_edge::workload::same_call;

#[derive(Default, Debug)]
pub struct TierTally {
    pub proposals: u64,
    pub schema_valid: u64,
    pub exact: u64,
}

/// What the evaluation side keeps of a proposal.
#[derive(Debug, Clone)]
struct ProposalSeen {
    reference: Option<serde_json::Value>,
}

/// What it keeps of a decision.
#[derive(Debug, Clone)]
pub struct DecisionSeen {
    pub policy: String,
    pub reason: DecisionReason,
    pub shadow_agrees: Option<bool>,
}

/// Per-policy outcome of the final answers.
#[derive(Default, Debug)]
pub struct PolicyTally {
    pub answers: u64,
    pub cloud: u64,
    pub explored: u64,
    pub network_down: u64,
    pub success: u64,
    pub schema_valid: u64,
    pub cost: f64,
    pub latency_ms: Vec<f64>,
    pub shadow_compared: u64,
    pub shadow_agreed: u64,
}

#[derive(Default, Debug)]
pub struct TallyState {
    pub proposals: u64,
    pub duplicates: u64,
    pub telemetry: u64,
    pub decisions: u64,
    pub responses: u64,
    pub conservative_decisions: u64,
    pub by_tier: BTreeMap<String, TierTally>,
    /// Edge inference time per proposal, ms.
    pub edge_latency_ms: Vec<f64>,
    /// Request created_at → proposal read here, ms.
    pub pipeline_delay_ms: Vec<f64>,
    proposals_seen: HashMap<uuid::Uuid, ProposalSeen>,
    decisions_seen: HashMap<uuid::Uuid, DecisionSeen>,
    responses_seen: HashMap<uuid::Uuid, AgentResponse>,
    decision_ids: HashSet<uuid::Uuid>,
}

fn parse(json: &str) -> Option<serde_json::Value> {
    serde_json::from_str(json).ok()
}

impl TallyState {
    /// Final answers joined with their decision and reference, per policy.
    pub fn by_policy(&self) -> BTreeMap<String, PolicyTally> {
        let mut out: BTreeMap<String, PolicyTally> = BTreeMap::new();
        for (id, r) in &self.responses_seen {
            let Some(d) = self.decisions_seen.get(id) else { continue };
            let t = out.entry(d.policy.clone()).or_default();
            t.answers += 1;
            t.cloud += u64::from(r.origin == Origin::Cloud);
            t.explored += u64::from(d.reason == DecisionReason::Exploration);
            t.network_down += u64::from(r.network_down_fallback);
            t.schema_valid += u64::from(r.schema_valid);
            let reference = self.proposals_seen.get(id).and_then(|p| p.reference.as_ref());
            t.success += u64::from(matches!((reference, parse(&r.tool_call_json)), (Some(a), Some(b)) if same_call(a, &b)));
            t.cost += r.cost;
            t.latency_ms.push(r.latency_ms);
            if let Some(agree) = d.shadow_agrees {
                t.shadow_compared += 1;
                t.shadow_agreed += u64::from(agree);
            }
        }
        out
    }
}

pub struct Tally {
    pub state: Arc<Mutex<TallyState>>,
}

impl Stage for Tally {
    fn name(&self) -> &str {
        "tally"
    }

    fn input_topics(&self) -> Vec<String> {
        vec![EDGE_PROPOSALS.into(), ROUTING_DECISIONS.into(), AGENT_RESPONSES.into(), SITE_TELEMETRY.into()]
    }

    async fn handle(&mut self, input: Incoming<'_>) -> Result<Vec<Outgoing>, Rejection> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match input.record {
            AnyRecord::EdgeProposal(p) => {
                let id = p.request.request_id;
                if s.proposals_seen.contains_key(&id) {
                    s.duplicates += 1;
                    return Ok(Vec::new());
                }
                s.proposals += 1;
                s.edge_latency_ms.push(p.edge_latency_ms);
                s.pipeline_delay_ms.push((TimestampMillis::now().0 - p.request.created_at.0) as f64);
                // Evaluation side: the reference call never reaches the model or the router.
                let reference = p.request.eval_reference_call.as_deref().and_then(parse);
                let exact = matches!((&reference, parse(&p.call_json)), (Some(r), Some(c)) if same_call(&c, r));
                let tier = p.request.eval_difficulty.map_or("UNLABELLED", |d| d.as_str()).to_string();
                let t = s.by_tier.entry(tier).or_default();
                t.proposals += 1;
                t.schema_valid += u64::from(p.schema_valid);
                t.exact += u64::from(exact);
                s.proposals_seen.insert(id, ProposalSeen { reference });
            }
            AnyRecord::RoutingDecision(d) => {
                if !s.decision_ids.insert(d.request_id) {
                    s.duplicates += 1;
                    return Ok(Vec::new());
                }
                s.decisions += 1;
                s.conservative_decisions += u64::from(d.network.conservative_default);
                let seen = DecisionSeen {
                    policy: d.policy_name.clone(),
                    reason: d.reason,
                    shadow_agrees: d.shadow_placement.map(|p| p == d.placement || d.reason == DecisionReason::Exploration && p == Placement::Edge),
                };
                s.decisions_seen.insert(d.request_id, seen);
            }
            AnyRecord::AgentResponse(r) => {
                if s.responses_seen.contains_key(&r.request_id) {
                    s.duplicates += 1;
                    return Ok(Vec::new());
                }
                s.responses += 1;
                s.responses_seen.insert(r.request_id, r);
            }
            AnyRecord::SiteTelemetry(_) => s.telemetry += 1,
            other => return Err(Rejection(format!("tally takes proposals, decisions, responses and telemetry, got {}", other.record_name()))),
        }
        Ok(Vec::new())
    }
}
