//! `netgpt demo`: the whole pipeline in one process on embedded defaults.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use netgpt_core::Config;
use netgpt_core::broker::LocalBroker;
use netgpt_core::bus::Producer;
use netgpt_core::metrics::{Metrics, serve_admin};
use netgpt_core::records::Record;
use netgpt_core::stage::run_stage;
use netgpt_core::topics::TOOL_REQUESTS;
use tokio_util::sync::CancellationToken;

use crate::loadgen::{LoadgenArgs, generate};
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
fn malformed_records() -> Vec<(&'static str, Vec<u8>)> {
    let mut unknown_schema = vec![0u8, 0, 0, 0x30, 0x39];
    unknown_schema.extend_from_slice(b"payload");
    let mut truncated = crate::loadgen::request(&mut rand::rng(), 1).to_bytes();
    truncated.truncate(truncated.len() / 2);
    vec![
        ("json instead of avro", br#"{"prompt": "not avro"}"#.to_vec()),
        ("unknown schema id 12345", unknown_schema),
        ("truncated ToolRequest", truncated),
    ]
}

pub async fn run(mut config: Config, args: DemoArgs) -> anyhow::Result<()> {
    let seconds = args.seconds.unwrap_or(config.demo.seconds);
    let started = Instant::now();
    let broker = LocalBroker::start_unless_configured(&mut config).await?;
    let result = run_pipeline(&config, seconds, args.rate).await;
    if let Some(b) = broker {
        b.stop().await;
    }
    let summary = result?;
    println!("{summary}");
    println!("demo finished in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

async fn run_pipeline(config: &Config, seconds: u64, rate: Option<f64>) -> anyhow::Result<String> {
    let specs = netgpt_core::topics::declared()?;
    netgpt_core::bus::create_topics(&config.kafka, &specs).await?;
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    match serve_admin(&config.admin.listen, metrics.clone(), shutdown.clone()).await {
        Ok(addr) => tracing::info!("admin server on http://{addr} (/metrics, /healthz)"),
        Err(e) => tracing::warn!("no admin server: {e:#}"),
    }

    let state = Arc::new(Mutex::new(TallyState::default()));
    let stage_stop = CancellationToken::new();
    let stage = {
        let (kafka, metrics, stop) = (config.kafka.clone(), metrics.clone(), stage_stop.clone());
        let group = format!("{}.tally", config.kafka.group_prefix);
        let tally = Tally { state: state.clone() };
        tokio::spawn(async move { run_stage(tally, &kafka, &group, metrics, stop).await })
    };

    // Start the load once the stage's group has its partitions, so the latency
    // figures measure the pipeline, not the initial group join.
    let join_deadline = Instant::now() + Duration::from_secs(30);
    while metrics.assigned("tally") == 0 && Instant::now() < join_deadline && !stage.is_finished() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let producer = Producer::new(&config.kafka)?;
    let malformed = malformed_records();
    for (_, bytes) in &malformed {
        producer.send_bytes(TOOL_REQUESTS, b"malformed", bytes, None).await.await.map_err(|e| anyhow::anyhow!("producing a malformed record: {e}"))?;
    }
    let ctrl_c = netgpt_core::shutdown_on_signals();
    let load_args = LoadgenArgs { rate, sites: None, seconds: Some(seconds as f64), seed: None };
    let load = generate(config, &load_args, &producer, ctrl_c.clone()).await?;

    // Let the stage catch up with everything that was acknowledged.
    let expected_in = load.requests + load.telemetry;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let read = {
            let s = state.lock().unwrap_or_else(|p| p.into_inner());
            s.requests + s.telemetry + s.duplicate_requests
        };
        if read >= expected_in || Instant::now() > deadline || ctrl_c.is_cancelled() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stage_stop.cancel();
    let report = stage.await??;
    shutdown.cancel();

    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    let mut delays = std::mem::take(&mut s.request_delay_ms);
    delays.sort_by(f64::total_cmp);
    let pct = |q: f64| delays.get(((delays.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(f64::NAN);
    let mut out = String::new();
    use std::fmt::Write;
    writeln!(out, "\n== netgpt demo summary ({} s of load, broker {}) ==", seconds, config.kafka.bootstrap_servers)?;
    writeln!(out, "produced (acknowledged): {} tool requests at {:.0}/s, {} telemetry records, {} failed", load.requests, load.requests as f64 / load.elapsed.as_secs_f64(), load.telemetry, load.failed)?;
    writeln!(out, "injected malformed:      {} ({})", malformed.len(), malformed.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "))?;
    writeln!(out, "stage `tally` read:      {} records: {} requests ({} duplicates), {} telemetry", report.records_in, s.requests, s.duplicate_requests, s.telemetry)?;
    writeln!(out, "dead-lettered:           {} (netgpt.dead-letter, with the reason)", report.dead_lettered)?;
    writeln!(out, "request created → read:  p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms", pct(0.5), pct(0.95), pct(0.99))?;
    let missing = load.requests.saturating_sub(s.requests);
    writeln!(out, "requests not read:       {missing}")?;
    writeln!(out, "stages running: tally (observer). Edge agent, router and cloud gateway are not implemented yet; no routing numbers are shown.")?;
    if missing > 0 {
        anyhow::bail!("{out}\n{missing} acknowledged requests were never read");
    }
    Ok(out)
}
