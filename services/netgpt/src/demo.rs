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
use netgpt_core::avro::TimestampMillis;
use netgpt_core::topics::{POLICY_UPDATES, TOOL_REQUESTS};
use netgpt_cloud::stage::CloudGateway;
use netgpt_edge::stage::EdgeStage;
use netgpt_router::bundle::RouterBundle;
use netgpt_router::stage::{RouterStage, SiteTable, follow_telemetry};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::AppConfig;
use crate::loadgen::{LoadgenArgs, generate};
use netgpt_sim::traffic::RequestSource;
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
    let mut truncated = source.request(&mut rng, TimestampMillis::now()).to_bytes();
    truncated.truncate(truncated.len() / 2);
    let mut oversized = source.request(&mut rng, TimestampMillis::now());
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

pub(crate) struct Running {
    pub name: String,
    pub stop: CancellationToken,
    pub handle: JoinHandle<anyhow::Result<RunReport>>,
}

pub(crate) fn spawn<S: Stage + 'static>(stage: S, config: &Config, metrics: &Arc<Metrics>) -> Running {
    let name = stage.name().to_string();
    let (kafka, metrics, stop) = (config.kafka.clone(), metrics.clone(), CancellationToken::new());
    let group = format!("{}.{name}", config.kafka.group_prefix);
    let token = stop.clone();
    let handle = tokio::spawn(async move { run_stage(stage, &kafka, &group, metrics, token).await });
    Running { name, stop, handle }
}

/// Builds the router: the configured bundle, the telemetry follower feeding
/// its site table, and the newest policy updates already on the topic.
pub async fn start_router(app: &AppConfig, stop: &CancellationToken) -> anyhow::Result<(RouterStage, JoinHandle<anyhow::Result<u64>>)> {
    let sites = SiteTable::default();
    let ready = CancellationToken::new();
    let follower = tokio::spawn(follow_telemetry(app.core.kafka.clone(), sites.clone(), app.router.router.telemetry_lookback, ready.clone(), stop.clone()));
    let mut router = RouterStage::load(app.router.clone(), sites)?.with_remote(netgpt_core::fetch::RemoteFolders::new(app.archive.options.clone()));
    router.catch_up(&app.core.kafka).await?;
    // Decide with the backlog of telemetry, not the conservative default.
    if tokio::time::timeout(Duration::from_secs(10), ready.cancelled()).await.is_err() {
        tracing::warn!("telemetry backlog not read within 10 s; deciding with what is known");
    }
    Ok((router, follower))
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

    let mut edge = EdgeStage::load(&app.edge)?.with_remote(netgpt_core::fetch::RemoteFolders::new(app.archive.options.clone()));
    edge.catch_up(&config.kafka).await?;
    let model_version = edge.model_version().to_string();
    let bundle = RouterBundle::load(&app.router.router.bundle_dir)?;
    let follower_stop = CancellationToken::new();
    let (router, follower) = start_router(app, &follower_stop).await?;
    let cloud = CloudGateway::from_config(&app.cloud, app.router.cost.clone())?;
    let lake = Arc::new(crate::logs::open_lake(app)?);
    let archiver = netgpt_archive::archiver::Archiver::new(app.archive.clone(), lake.clone()).await?;
    let archived = archiver.records_seen();
    let archive_stop = CancellationToken::new();
    let archive_task = {
        let (kafka, group, metrics, stop) = (config.kafka.clone(), format!("{}.{}", config.kafka.group_prefix, netgpt_archive::archiver::STAGE), metrics.clone(), archive_stop.clone());
        tokio::spawn(async move { archiver.run(&kafka, &group, metrics, stop).await })
    };
    let cloud_name = cloud.backend_name().to_string();
    let state = Arc::new(Mutex::new(TallyState::default()));
    let stages = vec![
        spawn(edge, config, &metrics),
        spawn(router, config, &metrics),
        spawn(cloud, config, &metrics),
        spawn(Tally { state: state.clone() }, config, &metrics),
    ];

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

    // One phase per policy: each phase's policy arrives as a PolicyUpdate and
    // the router hot-reloads it; decisions carry the policy that made them.
    let policies = if config.demo.policies.is_empty() { vec![app.router.router.policy.clone()] } else { config.demo.policies.clone() };
    let updates = policies.iter().map(|p| bundle.policy_update(p, None)).collect::<anyhow::Result<Vec<_>>>()?;
    let phase = Duration::from_secs_f64(seconds as f64 / updates.len() as f64);
    let switcher = {
        let (producer, interrupted) = (producer.clone(), interrupted.clone());
        tokio::spawn(async move {
            for (i, mut u) in updates.into_iter().enumerate() {
                if i > 0 {
                    tokio::select! {
                        _ = interrupted.cancelled() => break,
                        _ = tokio::time::sleep(phase) => {}
                    }
                }
                u.published_at = TimestampMillis::now();
                if let Err(e) = producer.send(POLICY_UPDATES, &u).await.await {
                    tracing::error!(error = %e, "publishing policy {} failed", u.policy_name);
                }
            }
        })
    };
    let load_args = LoadgenArgs { rate, sites: None, seconds: Some(seconds as f64), seed: None };
    let load = generate(config, &app.router.network, &load_args, &producer, interrupted.clone()).await?;
    switcher.abort();

    // Let the pipeline catch up with everything that was acknowledged.
    let expected = load.requests;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answered = state.lock().unwrap_or_else(|p| p.into_inner()).responses;
        if answered >= expected || Instant::now() > deadline || interrupted.is_cancelled() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut reports = Vec::new();
    for s in stages {
        s.stop.cancel();
        reports.push((s.name, s.handle.await??));
    }
    follower_stop.cancel();
    let telemetry_read = follower.await??;
    // The archiver reads every topic: let it go idle, then stop it (it writes what it buffers).
    let mut last = u64::MAX;
    let idle_deadline = Instant::now() + Duration::from_secs(60);
    while archived.load(std::sync::atomic::Ordering::Relaxed) != last && Instant::now() < idle_deadline {
        last = archived.load(std::sync::atomic::Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    archive_stop.cancel();
    let archive = archive_task.await??;
    shutdown.cancel();

    // Every stage has stopped: take the tally out (no lock is held across the awaits below).
    let mut s = std::mem::take(&mut *state.lock().unwrap_or_else(|p| p.into_inner()));
    let mut out = String::new();
    use std::fmt::Write;
    writeln!(out, "\n== netgpt demo summary ({} s of load, broker {}) ==", seconds, config.kafka.bootstrap_servers)?;
    writeln!(
        out,
        "produced (acknowledged): {} tool requests at {:.0}/s ({} split), {} telemetry records ({:?} links), {} failed",
        load.requests,
        load.requests as f64 / load.elapsed.as_secs_f64(),
        config.loadgen.split,
        load.telemetry,
        app.router.network.trace.kind,
        load.failed
    )?;
    writeln!(out, "injected malformed:      {} ({})", malformed.len(), malformed.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "))?;
    for (name, r) in &reports {
        writeln!(out, "stage {name:<6} read {:>6}, wrote {:>6}, dead-lettered {}", r.records_in, r.records_out, r.dead_lettered)?;
    }
    writeln!(out, "router telemetry follower read {telemetry_read} records; {} decisions used the conservative unknown-site state", s.conservative_decisions)?;
    writeln!(out, "edge model {model_version}: {} proposals ({} duplicate records re-delivered and ignored)", s.proposals, s.duplicates)?;
    writeln!(out, "  {:<10} {:>7} {:>13} {:>16}", "tier", "n", "schema-valid", "exact (vs ref)")?;
    for (tier, t) in &s.by_tier {
        let pct = |x: u64| 100.0 * x as f64 / t.proposals.max(1) as f64;
        writeln!(out, "  {:<10} {:>7} {:>12.1}% {:>15.1}%", tier, t.proposals, pct(t.schema_valid), pct(t.exact))?;
    }
    let edge_ms = percentiles(&mut s.edge_latency_ms);
    let delay_ms = percentiles(&mut s.pipeline_delay_ms);
    writeln!(out, "edge inference:          p50 {:.1} ms, p95 {:.1} ms", edge_ms.0, edge_ms.1)?;
    writeln!(out, "request → proposal read: p50 {:.1} ms, p95 {:.1} ms", delay_ms.0, delay_ms.1)?;
    writeln!(
        out,
        "final answers per policy (router bundle {}, cloud backend {cloud_name}, a simulation; success = answer equals the reference call, evaluation side only;\n  latency = request created → answer, cloud time modelled from the link; cost in currency units):",
        bundle.version
    )?;
    writeln!(out, "  {:<10} {:>7} {:>7} {:>8} {:>8} {:>8} {:>11} {:>9} {:>9} {:>7}", "policy", "answers", "cloud", "explored", "success", "valid", "cost/1k req", "p50 ms", "p95 ms", "net-down")?;
    let by_policy = s.by_policy();
    let order = netgpt_router::policy::POLICY_NAMES;
    for name in order.iter().map(|n| n.to_string()).chain(by_policy.keys().filter(|k| !order.contains(&k.as_str())).cloned()) {
        let Some(t) = by_policy.get(&name) else { continue };
        let mut lat = t.latency_ms.clone();
        let (p50, p95) = percentiles(&mut lat);
        let pct = |x: u64| 100.0 * x as f64 / t.answers.max(1) as f64;
        writeln!(
            out,
            "  {:<10} {:>7} {:>6.1}% {:>8} {:>7.1}% {:>7.1}% {:>11.3} {:>9.0} {:>9.0} {:>7}",
            name, t.answers, pct(t.cloud), t.explored, pct(t.success), pct(t.schema_valid), 1000.0 * t.cost / t.answers.max(1) as f64, p50, p95, t.network_down
        )?;
    }
    let (compared, agreed) = by_policy.values().fold((0, 0), |(c, a), t| (c + t.shadow_compared, a + t.shadow_agreed));
    if compared > 0 {
        writeln!(out, "shadow policy {}: agreed with the active placement on {:.1}% of {compared} decisions", app.router.router.shadow_policy, 100.0 * agreed as f64 / compared as f64)?;
    }
    let missing = load.requests.saturating_sub(s.responses);
    writeln!(out, "decisions {}, final answers {}; requests without an answer: {missing}", s.decisions, s.responses)?;
    writeln!(
        out,
        "archive: {} records read, {} written to {} Parquet files at {} ({} already archived, {} dead-lettered)",
        archive.records_in, archive.records_written, archive.files_written, lake.location(), archive.already_archived, archive.dead_lettered
    )?;
    let engine = netgpt_dataset::engine::LogEngine::open(&lake).await?;
    let quality = netgpt_dataset::sql::ANALYTICS.iter().find(|(n, _)| *n == "quality_by_policy_and_model").map(|(_, q)| *q).unwrap_or_default();
    writeln!(out, "SQL over the logs (sql/analytics/quality_by_policy_and_model.sql via DataFusion; includes earlier runs archived to the same lake):")?;
    writeln!(out, "{}", netgpt_dataset::render(&engine.query(quality).await?, netgpt_dataset::OutputFormat::Table)?)?;
    writeln!(out, "more: netgpt sql --file sql/analytics/cost_by_schedule.sql; netgpt dataset build")?;
    if missing > 0 {
        anyhow::bail!("{out}\n{missing} acknowledged requests got no final answer");
    }
    Ok(out)
}
