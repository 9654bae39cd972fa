//! Benchmarks of the offload logs: the dataset build (DataFusion beside
//! DuckDB on the same files) and the archiver's throughput.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use netgpt_archive::store::Lake;
use netgpt_core::AnyRecord;
use netgpt_core::broker::LocalBroker;
use netgpt_core::bus::{Delivery, Producer};
use netgpt_dataset::engine::LogEngine;
use netgpt_sim::offload::{OffloadLogSpec, RecordSink};

use crate::AppConfig;
use crate::logs::sim_world;
use netgpt_core::config::netgpt_home;

fn dir_bytes(d: &Path) -> u64 {
    std::fs::read_dir(d).into_iter().flatten().flatten().map(|e| if e.path().is_dir() { dir_bytes(&e.path()) } else { e.metadata().map_or(0, |m| m.len()) }).sum()
}

/// The log of `spec` at `dir`, written unless a complete one is there.
pub(crate) async fn offload_log(app: &AppConfig, spec: &OffloadLogSpec, dir: &Path) -> anyhow::Result<Lake> {
    let marker = dir.join(".complete.json");
    let want = serde_json::to_string_pretty(spec)?;
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(want.as_str()) {
        println!("offload log: {} requests at {} (kept from an earlier run)", spec.requests, dir.display());
        return Lake::open(&dir.display().to_string(), &Default::default());
    }
    let lake = Lake::open(&dir.display().to_string(), &Default::default())?;
    if marker.exists() {
        // A log this benchmark wrote with another spec: replace it.
        std::fs::remove_dir_all(dir)?;
        std::fs::create_dir_all(dir)?;
    } else {
        crate::logs::refuse_non_empty(&lake).await?;
    }
    let report = netgpt_sim::offload::write(spec, &sim_world(app)?, &lake, true).await?;
    println!(
        "offload log: {} requests simulated into {}: {} records, {} files, {:.2} GB, {:.0} s ({:.0} records/s into Parquet)",
        spec.requests,
        dir.display(),
        report.records,
        report.files,
        dir_bytes(dir) as f64 / 1e9,
        report.seconds,
        report.records as f64 / report.seconds
    );
    std::fs::write(&marker, want)?;
    Ok(lake)
}

#[derive(Debug, Default)]
struct EngineRun {
    seconds: f64,
    rows: std::collections::BTreeMap<String, u64>,
}

async fn run_datafusion(lake: &Lake, version: &str) -> anyhow::Result<EngineRun> {
    let t = Instant::now();
    let engine = LogEngine::open(lake).await?;
    let m = netgpt_dataset::build::build(&engine, lake, netgpt_dataset::sql::DATASETS, Some(version.into()), true).await?;
    Ok(EngineRun { seconds: t.elapsed().as_secs_f64(), rows: m.datasets.into_iter().map(|(k, d)| (k, d.rows)).collect() })
}

async fn run_duckdb(dir: &Path, out: &Path) -> anyhow::Result<(EngineRun, String)> {
    let script = Path::new("infra/duckdb/lake.py");
    anyhow::ensure!(script.exists(), "{} not found: run the benchmark from the repository root", script.display());
    let python = netgpt_home().join("py/bin/python");
    anyhow::ensure!(python.exists(), "{} is missing: run `bash infra/setup.sh`", python.display());
    let output = tokio::process::Command::new(&python)
        .arg(script)
        .args(["build", "--sql", "sql", "--lake"])
        .arg(dir)
        .arg("--out")
        .arg(out)
        .output()
        .await?;
    anyhow::ensure!(output.status.success(), "duckdb: {}", String::from_utf8_lossy(&output.stderr));
    let v: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let rows = v["datasets"].as_object().map(|m| m.iter().map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0))).collect()).unwrap_or_default();
    let about = format!("DuckDB {} ({} threads)", v["duckdb"].as_str().unwrap_or("?"), v["threads"]);
    Ok((EngineRun { seconds: v["seconds"].as_f64().unwrap_or(f64::NAN), rows }, about))
}

pub async fn datasets(app: &AppConfig, requests: u64, seed: u64, lake: Option<PathBuf>, runs: usize) -> anyhow::Result<()> {
    let spec = OffloadLogSpec { requests, seed, sites: 8, ..Default::default() };
    let dir = lake.unwrap_or_else(|| netgpt_home().join(format!("bench/offload-{requests}-{seed}")));
    let lake = offload_log(app, &spec, &dir).await?;
    let (mut best_df, mut best_duck): (Option<EngineRun>, Option<EngineRun>) = (None, None);
    let mut duck_about = String::new();
    let (df_out, duck_out) = (dir.join("datasets/bench-datafusion"), dir.join("datasets/bench-duckdb"));
    for run in 0..runs.max(1) {
        for d in [&df_out, &duck_out] {
            let _ = std::fs::remove_dir_all(d);
        }
        // Alternate which engine goes first, so neither always meets a warmer page cache.
        let (df, (duck, about)) = if run % 2 == 0 {
            let df = run_datafusion(&lake, "bench-datafusion").await?;
            (df, run_duckdb(&dir, &duck_out).await?)
        } else {
            let duck = run_duckdb(&dir, &duck_out).await?;
            (run_datafusion(&lake, "bench-datafusion").await?, duck)
        };
        duck_about = about;
        println!("run {}: DataFusion {:.2} s, DuckDB {:.2} s", run + 1, df.seconds, duck.seconds);
        if best_df.as_ref().is_none_or(|b| df.seconds < b.seconds) {
            best_df = Some(df);
        }
        if best_duck.as_ref().is_none_or(|b| duck.seconds < b.seconds) {
            best_duck = Some(duck);
        }
    }
    let (df, duck) = (best_df.unwrap_or_default(), best_duck.unwrap_or_default());
    println!("\ndataset build over {requests} simulated requests (source statistics + {} datasets written as Parquet; same SQL text, same files):", df.rows.len());
    println!("  {:<22} {:>16} {:>26}", "", format!("DataFusion (netgpt, {} threads)", std::thread::available_parallelism().map_or(1, |n| n.get())), duck_about);
    println!("  {:<22} {:>16.2} {:>26.2}", "seconds", df.seconds, duck.seconds);
    for (name, rows) in &df.rows {
        println!("  {:<22} {:>16} {:>26}", format!("{name} rows"), rows, duck.rows.get(name).copied().unwrap_or(0));
    }
    let ratio = df.seconds / duck.seconds;
    println!("  ratio DataFusion / DuckDB: {ratio:.2} (goal ≤ 1.0: {})", if ratio <= 1.0 { "met" } else { "not met" });
    anyhow::ensure!(df.rows == duck.rows, "the engines disagree on dataset rows: DataFusion {:?}, DuckDB {:?}", df.rows, duck.rows);
    // Same rows, not only as many: each dataset compared row by row (EXCEPT ALL both ways).
    let output = tokio::process::Command::new(netgpt_home().join("py/bin/python"))
        .arg("infra/duckdb/lake.py")
        .args(["compare", "--left"])
        .arg(&df_out)
        .arg("--right")
        .arg(&duck_out)
        .output()
        .await?;
    anyhow::ensure!(output.status.success(), "comparing the outputs: {}", String::from_utf8_lossy(&output.stderr));
    let diff: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    println!("  rows only in one engine's output (DataFusion / DuckDB): {diff}");
    let agree = diff.as_object().is_some_and(|m| m.values().all(|v| v["only_left"] == 0 && v["only_right"] == 0));
    anyhow::ensure!(agree, "the engines' datasets differ: {diff}");
    Ok(())
}

/// Simulated records straight to the broker.
struct BrokerSink {
    producer: Producer,
    acks: FuturesUnordered<Delivery>,
    sent: u64,
    failed: u64,
}

impl RecordSink for BrokerSink {
    async fn push(&mut self, topic: &str, record: AnyRecord, _timestamp_ms: i64) -> anyhow::Result<()> {
        let delivery = self.producer.send_bytes(topic, record.key().as_bytes(), &record.to_bytes(), None).await;
        self.acks.push(delivery);
        self.sent += 1;
        while self.acks.len() > 50_000 {
            if let Some(Err(_)) = self.acks.next().await {
                self.failed += 1;
            }
        }
        Ok(())
    }
}

pub async fn archive(app: &AppConfig, requests: u64) -> anyhow::Result<()> {
    let mut config = app.core.clone();
    config.kafka.bootstrap_servers.clear();
    // Always a fresh local broker: the benchmark produces to the contract's topic names.
    let local = LocalBroker::start_unless_configured(&mut config).await?.ok_or_else(|| anyhow::anyhow!("no local broker"))?;
    netgpt_core::bus::create_topics(&config.kafka, &netgpt_core::topics::declared()?).await?;
    let spec = OffloadLogSpec { requests, sites: 8, ..Default::default() };
    let mut sink = BrokerSink { producer: Producer::new(&config.kafka)?, acks: FuturesUnordered::new(), sent: 0, failed: 0 };
    netgpt_sim::offload::simulate(&spec, &sim_world(app)?, &mut sink, true).await?;
    while let Some(r) = sink.acks.next().await {
        if r.is_err() {
            sink.failed += 1;
        }
    }
    anyhow::ensure!(sink.failed == 0, "{} of {} records were not delivered", sink.failed, sink.sent);
    let produced = sink.sent;

    let dir = netgpt_home().join(format!("bench/archive-{}", uuid::Uuid::new_v4().simple()));
    let lake = Arc::new(Lake::open(&dir.display().to_string(), &Default::default())?);
    let cfg = netgpt_archive::ArchiveConfig { url: dir.display().to_string(), ..app.archive.clone() };
    let archiver = netgpt_archive::archiver::Archiver::new(cfg, lake).await?;
    let seen = archiver.records_seen();
    let stop = tokio_util::sync::CancellationToken::new();
    let (kafka, token) = (config.kafka.clone(), stop.clone());
    let started = Instant::now();
    let task = tokio::spawn(async move { archiver.run(&kafka, "netgpt.bench.archive", netgpt_core::metrics::Metrics::new(), token).await });
    let mut first = None;
    let deadline = Instant::now() + Duration::from_secs(3600);
    while seen.load(Ordering::Relaxed) < produced && Instant::now() < deadline && !task.is_finished() {
        if first.is_none() && seen.load(Ordering::Relaxed) > 0 {
            first = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.cancel();
    let report = task.await??;
    let done = Instant::now();
    let from_first = done.duration_since(first.unwrap_or(started)).as_secs_f64();
    let bytes = dir_bytes(&dir);
    println!("archiver: {} records of {requests} simulated requests (every topic) from the local broker into Parquet on a local folder", report.records_written);
    println!("  {:.0} records/s from the first record to the last file written ({from_first:.1} s; {:.1} s with the consumer group join)", report.records_written as f64 / from_first, done.duration_since(started).as_secs_f64());
    println!("  {} files, {:.1} MB of Parquet ({:.1} MB/s), {} dead-lettered", report.files_written, bytes as f64 / 1e6, bytes as f64 / 1e6 / from_first, report.dead_lettered);
    anyhow::ensure!(report.records_written == produced, "archived {} of {produced} records", report.records_written);
    std::fs::remove_dir_all(&dir).ok();
    local.stop().await;
    Ok(())
}
