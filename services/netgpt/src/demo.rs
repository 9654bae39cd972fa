//! `netgpt demo`: the whole pipeline in one process on embedded defaults.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use netgpt_core::Config;
use netgpt_core::broker::LocalBroker;
use netgpt_core::bus::Producer;
use netgpt_core::metrics::{Metrics, serve_admin};
use netgpt_core::records::Record;
use netgpt_core::stage::{RunReport, Stage, run_stage};
use netgpt_core::topics::TOOL_REQUESTS;
use netgpt_edge::stage::EdgeStage;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::AppConfig;
use crate::loadgen::{LoadgenArgs, RequestSource, generate};
use crate::stats::percentiles;
use crate::tally::{Tally, TallyState};

#[derive(Args)]
pub struct DemoArgs {
    /// How long to drive load [default: demo.seconds].
    #[arg(long)]
    pub seconds: Option<u64>,
    /// Requests per second [default: loadgen.rate].
    #[arg(long)]
    pub rate: Option<f64>,
}

/// Malformed records the demo injects to show the dead-letter path.
fn malformed_records(max_prompt_bytes: usize) -> anyhow::Result<Vec<(&'static str, Vec<u8>)>> {
    let mut unknown_schema = vec![0u8, 0, 0, 0x30, 0x39];
    unknown_schema.extend_from_slice(b"payload");
    let source = RequestSource::new("train", 1)?;
    let mut rng = rand::rng();
    let mut truncated = source.request(&mut rng).to_bytes();
    truncated.truncate(truncated.len() / 2);
    let mut oversized = source.request(&mut rng);
    oversized.prompt = "please check site S001 ".repeat(max_prompt_bytes / 20 + 1);
    Ok(vec![
        ("json instead of avro", br#"{"prompt": "not avro"}"#.to_vec()),
        ("unknown schema id 12345", unknown_schema),
        ("truncated ToolRequest", truncated),
        ("oversized prompt", oversized.to_bytes()),
    ])
}

pub async fn run(mut app: AppConfig, args: DemoArgs) -> anyhow::Result<()> {
    let seconds = args.seconds.unwrap_or(app.core.demo.seconds);
    let started = Instant::now();
    let broker = LocalBroker::start_unless_configured(&mut app.core).await?;
    let result = run_pipeline(&app, seconds, args.rate).await;
    if let Some(b) = broker {
        b.stop().await;
    }
    let summary = result?;
    println!("{summary}");
    println!("demo finished in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

struct Running {
    name: String,
    stop: CancellationToken,
    handle: JoinHandle<anyhow::Result<RunReport>>,
}

fn spawn<S: Stage + 'static>(stage: S, config: &Config, metrics: &Arc<Metrics>) -> Running {
    let name = stage.name().to_string();
    let (kafka, metrics, stop) = (config.kafka.clone(), metrics.clone(), CancellationToken::new());
    let group = format!("{}.{name}", config.kafka.group_prefix);
    let token = stop.clone();
    let handle = tokio::spawn(async move { run_stage(stage, &kafka, &group, metrics, token).await });
    Running { name, stop, handle }
}

async fn run_pipeline(app: &AppConfig, seconds: u64, rate: Option<f64>) -> anyhow::Result<String> {
    let config = &app.core;
    let specs = netgpt_core::topics::declared()?;
    netgpt_core::bus::create_topics(&config.kafka, &specs).await?;
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    match serve_admin(&config.admin.listen, metrics.clone(), shutdown.clone()).await {
        Ok(addr) => tracing::info!("admin server on http://{addr} (/metrics, /healthz)"),
        Err(e) => tracing::warn!("no admin server: {e:#}"),
    }

    let mut edge = EdgeStage::load(&app.edge)?;
    edge.catch_up(&config.kafka).await?;
    let model_version = edge.model_version().to_string();
    let state = Arc::new(Mutex::new(TallyState::default()));
    let stages = vec![spawn(edge, config, &metrics), spawn(Tally { state: state.clone() }, config, &metrics)];

    // Start the load once every stage's group has its partitions, so the
    // latency figures measure the pipeline, not the initial group joins.
    let join_deadline = Instant::now() + Duration::from_secs(30);
    while stages.iter().any(|s| metrics.assigned(&s.name) == 0 && !s.handle.is_finished()) && Instant::now() < join_deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let producer = Producer::new(&config.kafka)?;
    let malformed = malformed_records(app.edge.max_prompt_bytes)?;
    for (_, bytes) in &malformed {
        producer.send_bytes(TOOL_REQUESTS, b"malformed", bytes, None).await.await.map_err(|e| anyhow::anyhow!("producing a malformed record: {e}"))?;
    }
    let interrupted = netgpt_core::shutdown_on_signals();
    let load_args = LoadgenArgs { rate, sites: None, seconds: Some(seconds as f64), seed: None };
    let load = generate(config, &load_args, &producer, interrupted.clone()).await?;

    // Let the pipeline catch up with everything that was acknowledged.
    let expected = load.requests;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let read = state.lock().unwrap_or_else(|p| p.into_inner()).proposals;
        if read >= expected || Instant::now() > deadline || interrupted.is_cancelled() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut reports = Vec::new();
    for s in stages {
        s.stop.cancel();
        reports.push((s.name, s.handle.await??));
    }
    shutdown.cancel();

    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    let mut out = String::new();
    use std::fmt::Write;
    writeln!(out, "\n== netgpt demo summary ({} s of load, broker {}) ==", seconds, config.kafka.bootstrap_servers)?;
    writeln!(
        out,
        "produced (acknowledged): {} tool requests at {:.0}/s ({} split), {} telemetry records, {} failed",
        load.requests,
        load.requests as f64 / load.elapsed.as_secs_f64(),
        config.loadgen.split,
        load.telemetry,
        load.failed
    )?;
    writeln!(out, "injected malformed:      {} ({})", malformed.len(), malformed.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "))?;
    for (name, r) in &reports {
        writeln!(out, "stage {name:<6} read {:>6}, wrote {:>6}, dead-lettered {}", r.records_in, r.records_out, r.dead_lettered)?;
    }
    writeln!(out, "edge model {model_version}: {} proposals ({} duplicates re-delivered)", s.proposals, s.duplicates)?;
    writeln!(out, "  {:<10} {:>7} {:>13} {:>16}", "tier", "n", "schema-valid", "exact (vs ref)")?;
    for (tier, t) in &s.by_tier {
        let pct = |x: u64| 100.0 * x as f64 / t.proposals.max(1) as f64;
        writeln!(out, "  {:<10} {:>7} {:>12.1}% {:>15.1}%", tier, t.proposals, pct(t.schema_valid), pct(t.exact))?;
    }
    let edge_ms = percentiles(&mut s.edge_latency_ms);
    let delay_ms = percentiles(&mut s.pipeline_delay_ms);
    writeln!(out, "edge inference:          p50 {:.1} ms, p95 {:.1} ms", edge_ms.0, edge_ms.1)?;
    writeln!(out, "request → proposal read: p50 {:.1} ms, p95 {:.1} ms", delay_ms.0, delay_ms.1)?;
    let missing = load.requests.saturating_sub(s.proposals);
    writeln!(out, "requests without a proposal: {missing}")?;
    writeln!(out, "stages running: edge agent, tally (observer). Router and cloud gateway are not implemented yet; no routing numbers are shown.")?;
    if missing > 0 {
        anyhow::bail!("{out}\n{missing} acknowledged requests got no proposal");
    }
    Ok(out)
}
