//! Traffic: tool requests from the workload generator and per-site telemetry
//! from the link traces, at times the caller chooses (now, for `netgpt
//! loadgen`; simulated time, for offline logs).

use netgpt_core::avro::TimestampMillis;
use netgpt_core::records::{SiteTelemetry, ToolRequest};
use netgpt_edge::catalog::{CATALOG_VERSION, ToolCatalog};
use netgpt_edge::workload::{Split, WorkloadGenerator};
use netgpt_router::NetworkConfig;
use netgpt_router::trace::LinkTrace;
use rand::Rng;

/// Requests drawn from the train or held-out templates (or both), spread over sites.
pub struct RequestSource {
    train: WorkloadGenerator<'static>,
    held_out: WorkloadGenerator<'static>,
    split: String,
    sites: u32,
}

impl RequestSource {
    pub fn new(split: &str, sites: u32) -> anyhow::Result<Self> {
        anyhow::ensure!(matches!(split, "train" | "held-out" | "mixed"), "loadgen.split must be train, held-out or mixed, not {split:?}");
        let catalog = ToolCatalog::embedded();
        Ok(Self {
            train: WorkloadGenerator::new(catalog, Split::Train)?,
            held_out: WorkloadGenerator::new(catalog, Split::HeldOut)?,
            split: split.to_string(),
            sites: sites.max(1),
        })
    }

    pub fn request<R: Rng>(&self, rng: &mut R, at: TimestampMillis) -> ToolRequest {
        let generator = match self.split.as_str() {
            "train" => &self.train,
            "held-out" => &self.held_out,
            _ if rng.random_bool(0.5) => &self.train,
            _ => &self.held_out,
        };
        let example = generator.sample(rng);
        let site = format!("S{:03}", rng.random_range(0..self.sites));
        ToolRequest {
            request_id: uuid::Builder::from_random_bytes(rng.random()).into_uuid(),
            site_id: site,
            tenant: ["noc", "field-ops", "planning"][rng.random_range(0..3)].to_string(),
            // Uplink on fallback: the prompt plus the tool catalog the cloud model needs.
            upload_bytes: 6_000 + example.prompt.len() as i64,
            download_bytes: example.call_json().len() as i64 + 200,
            expected_output_tokens: (example.call_json().len() / 4) as i32 + 8,
            prompt: example.prompt.clone(),
            tool_catalog_version: CATALOG_VERSION.into(),
            created_at: at,
            eval_reference_call: Some(example.call_json()),
            eval_difficulty: Some(example.difficulty),
        }
    }
}

/// Every site's link over time, as telemetry records.
pub struct SiteLinks {
    traces: Vec<LinkTrace>,
    network: NetworkConfig,
    last_t: f64,
}

impl SiteLinks {
    pub fn new(sites: u32, network: &NetworkConfig) -> Self {
        Self { traces: (0..sites).map(|i| LinkTrace::for_site(i, &network.trace)).collect(), network: network.clone(), last_t: 0.0 }
    }

    /// One reading per site at `t_s` seconds into the run.
    pub fn readings<R: Rng>(&mut self, rng: &mut R, t_s: f64, now: TimestampMillis) -> Vec<SiteTelemetry> {
        let dt = (t_s - self.last_t).max(0.0);
        self.last_t = t_s;
        self.traces
            .iter_mut()
            .enumerate()
            .map(|(i, trace)| {
                trace.step(rng, dt);
                let s = trace.observe(rng, t_s, &self.network.regimes);
                SiteTelemetry {
                    site_id: format!("S{i:03}"),
                    uplink_mbps: s.uplink_mbps,
                    downlink_mbps: s.downlink_mbps,
                    rtt_ms: s.rtt_ms,
                    loss_rate: s.loss_rate,
                    price_schedule_id: s.price_schedule,
                    link_regime: Some(trace.regime),
                    observed_at: now,
                }
            })
            .collect()
    }
}
