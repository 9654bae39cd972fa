//! The evaluation side's observer: joins proposals, decisions and final
//! answers by request id and checks each final answer against the request's
//! reference call (which no routing or model code reads). The demo's `tally`
//! stage feeds it from Kafka; the in-process experiments feed it from the
//! simulation.

use std::collections::{BTreeMap, HashMap, HashSet};

use netgpt_core::AnyRecord;
use netgpt_core::avro::TimestampMillis;
use netgpt_core::records::{AgentResponse, DecisionReason, Origin, Placement};
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

/// What a stretch of traffic did, for the answers of one policy: shares of
/// final answers from the cloud, explored, right (equal to the reference call)
/// and schema-valid; the edge model's own proposals' exact and valid shares.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Measures {
    pub answers: u64,
    pub offload_rate: f64,
    pub explored_rate: f64,
    pub task_success: f64,
    pub schema_valid: f64,
    pub edge_exact: f64,
    pub edge_schema_valid: f64,
    pub cost_per_1k: f64,
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
    /// Takes one record of the pipeline (proposals, decisions, final answers,
    /// telemetry; each counted once per request however often it is
    /// delivered); false for a record of any other kind.
    pub fn observe(&mut self, record: &AnyRecord) -> bool {
        match record {
            AnyRecord::EdgeProposal(p) => {
                let id = p.request.request_id;
                if self.proposals_seen.contains_key(&id) {
                    self.duplicates += 1;
                    return true;
                }
                self.proposals += 1;
                self.edge_latency_ms.push(p.edge_latency_ms);
                self.pipeline_delay_ms.push((TimestampMillis::now().0 - p.request.created_at.0) as f64);
                // Evaluation side: the reference call never reaches the model or the router.
                let reference = p.request.eval_reference_call.as_deref().and_then(parse);
                let exact = matches!((&reference, parse(&p.call_json)), (Some(r), Some(c)) if same_call(&c, r));
                let tier = p.request.eval_difficulty.map_or("UNLABELLED", |d| d.as_str()).to_string();
                let t = self.by_tier.entry(tier).or_default();
                t.proposals += 1;
                t.schema_valid += u64::from(p.schema_valid);
                t.exact += u64::from(exact);
                self.proposals_seen.insert(id, ProposalSeen { reference });
            }
            AnyRecord::RoutingDecision(d) => {
                if !self.decision_ids.insert(d.request_id) {
                    self.duplicates += 1;
                    return true;
                }
                self.decisions += 1;
                self.conservative_decisions += u64::from(d.network.conservative_default);
                let seen = DecisionSeen {
                    policy: d.policy_name.clone(),
                    reason: d.reason,
                    shadow_agrees: d.shadow_placement.map(|p| p == d.placement || d.reason == DecisionReason::Exploration && p == Placement::Edge),
                };
                self.decisions_seen.insert(d.request_id, seen);
            }
            AnyRecord::AgentResponse(r) => {
                if self.responses_seen.contains_key(&r.request_id) {
                    self.duplicates += 1;
                    return true;
                }
                self.responses += 1;
                self.responses_seen.insert(r.request_id, r.clone());
            }
            AnyRecord::SiteTelemetry(_) => self.telemetry += 1,
            _ => return false,
        }
        true
    }

    /// Final answers joined with their decision and reference, per policy.
    /// The traffic measures of the answers `policy` decided.
    pub fn measures(&self, policy: &str) -> anyhow::Result<Measures> {
        let by_policy = self.by_policy();
        let t = by_policy.get(policy).ok_or_else(|| anyhow::anyhow!("no answer was decided by {policy}"))?;
        let n = t.answers.max(1) as f64;
        let (proposals, exact, valid) = self.by_tier.values().fold((0, 0, 0), |(p, e, v), t| (p + t.proposals, e + t.exact, v + t.schema_valid));
        Ok(Measures {
            answers: t.answers,
            offload_rate: t.cloud as f64 / n,
            explored_rate: t.explored as f64 / n,
            task_success: t.success as f64 / n,
            schema_valid: t.schema_valid as f64 / n,
            edge_exact: exact as f64 / proposals.max(1) as f64,
            edge_schema_valid: valid as f64 / proposals.max(1) as f64,
            cost_per_1k: t.cost / n * 1_000.0,
        })
    }

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
