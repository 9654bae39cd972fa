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
use netgpt_core::topics::{SITE_TELEMETRY, TOOL_REQUESTS};
use netgpt_router::NetworkConfig;
use netgpt_sim::traffic::{RequestSource, SiteLinks};
use rand::SeedableRng;
use rand::rngs::StdRng;
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
            for rec in links.readings(&mut rng, telemetry_rounds as f64 / telemetry_hz, TimestampMillis::now()) {
                pending.push(track(producer.send(SITE_TELEMETRY, &rec).await, false));
            }
            telemetry_rounds += 1;
        }
        let due = (t * rate) as u64;
        while sent_requests < due {
            let mut rec = source.request(&mut rng, TimestampMillis::now());
            // The seed fixes what is asked, not the request's identity: every run
            // sends new requests. Ids drawn from the seed repeated across runs,
            // and the lake's one-row-per-request views kept only the first run's.
            rec.request_id = uuid::Uuid::new_v4();
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
