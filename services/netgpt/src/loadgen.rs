//! `netgpt loadgen`: synthetic tool requests and per-site telemetry.
//!
//! Requests come from the edge agent's workload generator (tool catalog,
//! paraphrases, difficulty tiers, reference calls for evaluation). Each site's
//! telemetry follows a link trace of the network model (`[network.trace]`:
//! Markov regime switches and diurnal drift, or a fixed regime per site).

use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use netgpt_core::Config;
use netgpt_core::avro::TimestampMillis;
use netgpt_core::bus::{Delivery, Producer};
use netgpt_core::records::{SiteTelemetry, ToolRequest};
use netgpt_core::topics::{SITE_TELEMETRY, TOOL_REQUESTS};
use netgpt_edge::catalog::{CATALOG_VERSION, ToolCatalog};
use netgpt_edge::workload::{Split, WorkloadGenerator};
use netgpt_router::NetworkConfig;
use netgpt_router::trace::LinkTrace;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

#[derive(Args, Clone)]
pub struct LoadgenArgs {
    /// Requests per second across all sites [default: loadgen.rate].
    #[arg(long)]
    pub rate: Option<f64>,
    /// Number of sites [default: loadgen.sites].
    #[arg(long)]
    pub sites: Option<u32>,
    /// Stop after this many seconds (default: until Ctrl-C).
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Workload seed [default: loadgen.seed].
    #[arg(long)]
    pub seed: Option<u64>,
}

/// What a load run produced (acknowledged by the broker).
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    pub requests: u64,
    pub telemetry: u64,
    pub failed: u64,
    pub elapsed: Duration,
}

pub async fn run(config: &Config, network: &NetworkConfig, args: LoadgenArgs) -> anyhow::Result<()> {
    let producer = Producer::new(&config.kafka)?;
    let shutdown = netgpt_core::shutdown_on_signals();
    let report = generate(config, network, &args, &producer, shutdown).await?;
    println!(
        "loadgen: {} requests and {} telemetry records acknowledged in {:.1} s ({} failed)",
        report.requests,
        report.telemetry,
        report.elapsed.as_secs_f64(),
        report.failed
    );
    if report.failed > 0 {
        anyhow::bail!("{} records were not delivered", report.failed);
    }
    Ok(())
}

/// Draws requests from the edge agent's workload generator.
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

    pub fn request<R: Rng>(&self, rng: &mut R) -> ToolRequest {
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
            created_at: TimestampMillis::now(),
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
    pub fn readings<R: Rng>(&mut self, rng: &mut R, t_s: f64) -> Vec<SiteTelemetry> {
        let dt = (t_s - self.last_t).max(0.0);
        self.last_t = t_s;
        let now = TimestampMillis::now();
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

/// Produces load until `seconds` pass or `shutdown` is cancelled, then waits
/// for every record to be acknowledged.
pub async fn generate(config: &Config, network: &NetworkConfig, args: &LoadgenArgs, producer: &Producer, shutdown: CancellationToken) -> anyhow::Result<LoadReport> {
    let rate = args.rate.unwrap_or(config.loadgen.rate);
    let sites = args.sites.unwrap_or(config.loadgen.sites).max(1);
    let telemetry_hz = config.loadgen.telemetry_hz;
    let mut rng = StdRng::seed_from_u64(args.seed.unwrap_or(config.loadgen.seed));
    let source = RequestSource::new(&config.loadgen.split, sites)?;
    let mut links = SiteLinks::new(sites, network);
    let start = Instant::now();
    let mut pending: FuturesUnordered<futures::future::BoxFuture<'static, (bool, bool)>> = FuturesUnordered::new();
    let mut report = LoadReport::default();
    let (mut sent_requests, mut telemetry_rounds) = (0u64, 0u64);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let track = |d: Delivery, is_request: bool| -> futures::future::BoxFuture<'static, (bool, bool)> {
        Box::pin(async move { (is_request, d.await.is_ok()) })
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
            Some((is_request, ok)) = pending.next(), if !pending.is_empty() => {
                tally(&mut report, is_request, ok);
                continue;
            }
        }
        let t = start.elapsed().as_secs_f64();
        if args.seconds.is_some_and(|s| t >= s) {
            break;
        }
        // Telemetry first, so a site's state is known before its requests.
        while telemetry_hz > 0.0 && (telemetry_rounds as f64) <= t * telemetry_hz {
            for rec in links.readings(&mut rng, telemetry_rounds as f64 / telemetry_hz) {
                pending.push(track(producer.send(SITE_TELEMETRY, &rec).await, false));
            }
            telemetry_rounds += 1;
        }
        let due = (t * rate) as u64;
        while sent_requests < due {
            let rec = source.request(&mut rng);
            pending.push(track(producer.send(TOOL_REQUESTS, &rec).await, true));
            sent_requests += 1;
        }
    }
    while let Some((is_request, ok)) = pending.next().await {
        tally(&mut report, is_request, ok);
    }
    report.elapsed = start.elapsed();
    Ok(report)
}

fn tally(report: &mut LoadReport, is_request: bool, ok: bool) {
    match (ok, is_request) {
        (false, _) => report.failed += 1,
        (true, true) => report.requests += 1,
        (true, false) => report.telemetry += 1,
    }
}
