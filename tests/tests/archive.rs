//! The archiver on a real broker: records land in Parquet exactly once even
//! when the archiver dies mid-stream and a new one takes over, undecodable
//! records are dead-lettered (not archived), and the logs answer SQL.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use arrow::array::Int64Array;
use netgpt_archive::ArchiveConfig;
use netgpt_archive::archiver::Archiver;
use netgpt_archive::store::Lake;
use netgpt_core::AnyRecord;
use netgpt_core::bus::Producer;
use netgpt_core::metrics::Metrics;
use netgpt_core::topics::{DEAD_LETTER, TOOL_REQUESTS};
use netgpt_dataset::engine::LogEngine;
use netgpt_tests::{TestBroker, read_until, requests};
use tokio_util::sync::CancellationToken;

fn config(dir: &std::path::Path) -> ArchiveConfig {
    ArchiveConfig {
        url: dir.display().to_string(),
        options: BTreeMap::new(),
        max_records_per_file: 40,
        max_bytes_per_file: 1 << 20,
        max_file_age_ms: 200,
        topics: vec![TOOL_REQUESTS.into()],
    }
}

async fn count(engine: &LogEngine, sql: &str) -> i64 {
    let b = engine.query(sql).await.unwrap();
    b[0].column(0).as_any().downcast_ref::<Int64Array>().unwrap().value(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archiver_killed_mid_stream_and_restarted_archives_every_record_exactly_once() {
    let tb = TestBroker::start().await.unwrap();
    let dir = std::env::temp_dir().join(format!("netgpt-archive-test-{}", uuid::Uuid::new_v4()));
    let lake = Arc::new(Lake::open(dir.to_str().unwrap(), &BTreeMap::new()).unwrap());
    let producer = Producer::new(&tb.kafka).unwrap();
    let batch = requests(1000, 9, &["S001", "S002", "S003"]);
    for (i, r) in batch.iter().enumerate() {
        producer.send(TOOL_REQUESTS, r).await.await.unwrap();
        if i == 500 {
            producer.send_bytes(TOOL_REQUESTS, b"garbage", b"not avro at all", None).await.await.unwrap();
        }
    }

    // First archiver: killed (task aborted: no final write, no final commit) mid-stream.
    let first = Archiver::new(config(&dir), lake.clone()).await.unwrap();
    let seen = first.records_seen();
    let kafka = tb.kafka.clone();
    let task = tokio::spawn(async move { first.run(&kafka, "test.archive", Metrics::new(), CancellationToken::new()).await });
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.load(Ordering::Relaxed) < 450 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
    let _ = task.await;
    let partial = lake.objects("tool_requests").await.unwrap().len();
    assert!(partial > 0, "the first archiver wrote some files before it died");

    // Second archiver: same group, takes over from the committed offsets.
    let second = Archiver::new(config(&dir), lake.clone()).await.unwrap();
    let stop = CancellationToken::new();
    let (kafka, token) = (tb.kafka.clone(), stop.clone());
    let task = tokio::spawn(async move { second.run(&kafka, "test.archive", Metrics::new(), token).await });
    let deadline = Instant::now() + Duration::from_secs(60);
    // A fresh engine each time: one engine keeps the file listing it first saw.
    while count(&LogEngine::open(&lake).await.unwrap(), "SELECT count(*) FROM tool_requests").await < 1000 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.cancel();
    let report = task.await.unwrap().unwrap();

    let engine = LogEngine::open(&lake).await.unwrap();
    assert_eq!(count(&engine, "SELECT count(*) FROM tool_requests").await, 1000, "no record lost, none twice");
    assert_eq!(count(&engine, "SELECT count(DISTINCT request_id) FROM tool_requests").await, 1000);
    let want: std::collections::HashSet<String> = batch.iter().map(|r| r.request_id.to_string()).collect();
    let got = engine.query("SELECT request_id FROM tool_requests").await.unwrap();
    let got: std::collections::HashSet<String> = got
        .iter()
        .flat_map(|b| b.column(0).as_any().downcast_ref::<arrow::array::StringArray>().unwrap().iter().flatten().map(str::to_string).collect::<Vec<_>>())
        .collect();
    assert_eq!(got, want);
    assert!(report.records_written + report.already_archived > 0, "{report:?}");
    // Hive partitions are columns.
    assert_eq!(count(&engine, "SELECT count(*) FROM tool_requests WHERE date IS NOT NULL AND hour IS NOT NULL").await, 1000);

    let dead = read_until(&tb.kafka, DEAD_LETTER, Duration::from_secs(10), |l| !l.is_empty()).await.unwrap();
    assert!(dead.iter().any(|l| matches!(&l.record, Ok(AnyRecord::DeadLetter(d)) if d.stage == "archive")), "the garbage record was dead-lettered by the archiver");
    // A SQL error is DataFusion's message, not a panic.
    let e = engine.query("SELECT no_such_column FROM tool_requests").await.unwrap_err();
    assert!(e.to_string().contains("no_such_column"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
    tb.broker.stop().await;
}

/// Archives `batch` from a fresh local broker into `lake` and returns the
/// archiver's report once every record of it is durable.
async fn archive_through_a_fresh_broker(lake: &Arc<Lake>, dir: &std::path::Path, batch: &[netgpt_core::records::ToolRequest]) -> netgpt_archive::archiver::ArchiveReport {
    let tb = TestBroker::start().await.unwrap();
    let producer = Producer::new(&tb.kafka).unwrap();
    for r in batch {
        producer.send(TOOL_REQUESTS, r).await.await.unwrap();
    }
    let archiver = Archiver::new(config(dir), lake.clone()).await.unwrap();
    let seen = archiver.records_seen();
    let stop = CancellationToken::new();
    let (kafka, token) = (tb.kafka.clone(), stop.clone());
    let task = tokio::spawn(async move { archiver.run(&kafka, "test.archive-clusters", Metrics::new(), token).await });
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.load(Ordering::Relaxed) < batch.len() as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    let report = task.await.unwrap().unwrap();
    tb.broker.stop().await;
    report
}

/// The demo starts an in-memory broker every run and archives to the same lake:
/// the second broker numbers its offsets from 0 again, and its records are
/// new, not "already archived" (nor written over the first run's files).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lake_shared_by_two_broker_lifetimes_keeps_the_records_of_both() {
    let dir = std::env::temp_dir().join(format!("netgpt-archive-clusters-{}", uuid::Uuid::new_v4()));
    let lake = Arc::new(Lake::open(dir.to_str().unwrap(), &BTreeMap::new()).unwrap());
    let (first, second) = (requests(200, 21, &["S001", "S002"]), requests(150, 22, &["S003"]));
    let report = archive_through_a_fresh_broker(&lake, &dir, &first).await;
    assert_eq!((report.records_written, report.already_archived), (200, 0), "{report:?}");
    let report = archive_through_a_fresh_broker(&lake, &dir, &second).await;
    assert_eq!((report.records_written, report.already_archived), (150, 0), "{report:?}");

    let engine = LogEngine::open(&lake).await.unwrap();
    assert_eq!(count(&engine, "SELECT count(*) FROM tool_requests").await, 350);
    assert_eq!(count(&engine, "SELECT count(DISTINCT request_id) FROM tool_requests").await, 350);
    assert_eq!(count(&engine, "SELECT count(*) FROM tool_requests WHERE site_id = 'S003'").await, 150);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The same archiver and SQL on `s3://`: a real S3-compatible server (moto,
/// installed by infra/setup.sh) on loopback, no mock object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_archiver_writes_parquet_to_s3_and_the_logs_answer_sql_there() {
    let s3 = netgpt_tests::S3Server::start().await.unwrap();
    s3.create_bucket("netgpt-lake").await.unwrap();
    let tb = TestBroker::start().await.unwrap();
    let cfg = ArchiveConfig { url: "s3://netgpt-lake/offload".into(), options: s3.options(), ..config(std::path::Path::new("unused")) };
    let lake = Arc::new(Lake::open(&cfg.url, &cfg.options).unwrap());
    let producer = Producer::new(&tb.kafka).unwrap();
    let batch = requests(300, 10, &["S001", "S002"]);
    for r in &batch {
        producer.send(TOOL_REQUESTS, r).await.await.unwrap();
    }
    let archiver = Archiver::new(cfg.clone(), lake.clone()).await.unwrap();
    let stop = CancellationToken::new();
    let (kafka, token) = (tb.kafka.clone(), stop.clone());
    let task = tokio::spawn(async move { archiver.run(&kafka, "test.archive-s3", Metrics::new(), token).await });
    let deadline = Instant::now() + Duration::from_secs(60);
    while lake.objects("tool_requests").await.unwrap().iter().map(|(_, n)| n.last_offset - n.first_offset + 1).sum::<i64>() < 300 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.cancel();
    let report = task.await.unwrap().unwrap();
    assert_eq!(report.records_written, 300, "{report:?}");

    let objects = lake.objects("tool_requests").await.unwrap();
    assert!(objects.iter().all(|(p, _)| p.as_ref().starts_with("offload/tool_requests/date=")), "{objects:?}");
    let engine = LogEngine::open(&lake).await.unwrap();
    assert_eq!(count(&engine, "SELECT count(DISTINCT request_id) FROM tool_requests").await, 300);
    assert_eq!(count(&engine, "SELECT count(*) FROM requests WHERE site_id = 'S002'").await, batch.iter().filter(|r| r.site_id == "S002").count() as i64);
    // Datasets are written back to the bucket, with their manifest.
    let manifest = netgpt_dataset::build::build(&engine, &lake, netgpt_dataset::sql::DATASETS, Some("s3-test".into()), false).await.unwrap();
    assert_eq!(manifest.sources["tool_requests"].rows, 300);
    assert_eq!(netgpt_dataset::build::latest(&lake).await.unwrap().version, "s3-test");
    tb.broker.stop().await;
}
