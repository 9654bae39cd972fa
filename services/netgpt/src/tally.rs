//! The `tally` stage: the demo's observer at the end of the implemented
//! pipeline. It reads edge proposals and telemetry through the at-least-once
//! stage loop and records what arrived, how late, and — on the evaluation side
//! only — whether each proposal matches the request's reference call.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use netgpt_core::AnyRecord;
use netgpt_core::avro::TimestampMillis;
use netgpt_core::stage::{Incoming, Outgoing, Rejection, Stage};
use netgpt_core::topics::{EDGE_PROPOSALS, SITE_TELEMETRY};
use netgpt_edge::workload::same_call;

#[derive(Default, Debug)]
pub struct TierTally {
    pub proposals: u64,
    pub schema_valid: u64,
    pub exact: u64,
}

#[derive(Default, Debug)]
pub struct TallyState {
    pub proposals: u64,
    pub duplicates: u64,
    pub telemetry: u64,
    pub by_tier: BTreeMap<String, TierTally>,
    /// Edge inference time per proposal, ms.
    pub edge_latency_ms: Vec<f64>,
    /// Request created_at → proposal read here, ms.
    pub pipeline_delay_ms: Vec<f64>,
    seen: HashSet<uuid::Uuid>,
}

pub struct Tally {
    pub state: Arc<Mutex<TallyState>>,
}

impl Stage for Tally {
    fn name(&self) -> &str {
        "tally"
    }

    fn input_topics(&self) -> Vec<String> {
        vec![EDGE_PROPOSALS.into(), SITE_TELEMETRY.into()]
    }

    async fn handle(&mut self, input: Incoming<'_>) -> Result<Vec<Outgoing>, Rejection> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match input.record {
            AnyRecord::EdgeProposal(p) => {
                if !s.seen.insert(p.request.request_id) {
                    s.duplicates += 1;
                    return Ok(Vec::new());
                }
                s.proposals += 1;
                s.edge_latency_ms.push(p.edge_latency_ms);
                s.pipeline_delay_ms.push((TimestampMillis::now().0 - p.request.created_at.0) as f64);
                // Evaluation side: the reference call never reaches the model or the router.
                let exact = match (&p.request.eval_reference_call, serde_json::from_str::<serde_json::Value>(&p.call_json)) {
                    (Some(r), Ok(call)) => serde_json::from_str(r).is_ok_and(|r| same_call(&call, &r)),
                    _ => false,
                };
                let tier = p.request.eval_difficulty.map_or("UNLABELLED", |d| d.as_str()).to_string();
                let t = s.by_tier.entry(tier).or_default();
                t.proposals += 1;
                t.schema_valid += u64::from(p.schema_valid);
                t.exact += u64::from(exact);
            }
            AnyRecord::SiteTelemetry(_) => s.telemetry += 1,
            other => return Err(Rejection(format!("tally takes EdgeProposal and SiteTelemetry, got {}", other.record_name()))),
        }
        Ok(Vec::new())
    }
}
