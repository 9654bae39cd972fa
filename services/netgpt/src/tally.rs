//! The `tally` stage: the demo's observer at the end of the pipeline. It reads
//! proposals, decisions, final answers and telemetry through the at-least-once
//! stage loop into the evaluation side's [`TallyState`].

use std::sync::{Arc, Mutex};

pub use netgpt_eval::tally::TallyState;
use netgpt_core::stage::{Incoming, Outgoing, Rejection, Stage};
use netgpt_core::topics::{AGENT_RESPONSES, EDGE_PROPOSALS, ROUTING_DECISIONS, SITE_TELEMETRY};

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
        if !s.observe(&input.record) {
            return Err(Rejection(format!("tally takes proposals, decisions, responses and telemetry, got {}", input.record.record_name())));
        }
        Ok(Vec::new())
    }
}
