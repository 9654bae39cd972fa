//! The `tally` stage: reads requests and telemetry through the at-least-once
//! stage loop and records what arrived and how late. It is the demo's observer
//! until the edge, router and cloud stages consume these topics themselves.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use netgpt_core::AnyRecord;
use netgpt_core::avro::TimestampMillis;
use netgpt_core::stage::{Incoming, Outgoing, Rejection, Stage};
use netgpt_core::topics::{SITE_TELEMETRY, TOOL_REQUESTS};

#[derive(Default, Debug)]
pub struct TallyState {
    pub requests: u64,
    pub duplicate_requests: u64,
    pub telemetry: u64,
    /// Request created_at → read by this stage, milliseconds.
    pub request_delay_ms: Vec<f64>,
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
        vec![TOOL_REQUESTS.into(), SITE_TELEMETRY.into()]
    }

    async fn handle(&mut self, input: Incoming<'_>) -> Result<Vec<Outgoing>, Rejection> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match input.record {
            AnyRecord::ToolRequest(r) => {
                if s.seen.insert(r.request_id) {
                    s.requests += 1;
                    s.request_delay_ms.push((TimestampMillis::now().0 - r.created_at.0) as f64);
                } else {
                    s.duplicate_requests += 1;
                }
            }
            AnyRecord::SiteTelemetry(_) => s.telemetry += 1,
            other => return Err(Rejection(format!("tally takes ToolRequest and SiteTelemetry, got {}", other.record_name()))),
        }
        Ok(Vec::new())
    }
}
