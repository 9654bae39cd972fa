//! Golden tests of every SQL file in `sql/`, and of `netgpt dataset build`, on
//! a small fixed offload log that netgpt-sim writes (600 requests over ~3.3
//! simulated hours, 4 sites, three router policies in turn, some records
//! delivered twice, a few dead letters). Each query's result, as CSV, must
//! equal `tests/golden/<dir>/<name>.csv`: a change in results shows up as a
//! diff. After a deliberate change, `NETGPT_BLESS=1 cargo test -p
//! netgpt-tests --test sql` rewrites the files; review the diff before
//! committing it.
//!
//! The same files are then read by DuckDB (from PyPI), unchanged.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow::array::Int64Array;
use netgpt_archive::store::Lake;
use netgpt_dataset::engine::LogEngine;
use netgpt_dataset::{OutputFormat, render};
use netgpt_sim::offload::{OffloadLogSpec, World, write};
use netgpt_tests::{python_tool, repo_root};

fn golden_spec() -> OffloadLogSpec {
    OffloadLogSpec {
        requests: 600,
        seed: 11,
        sites: 4,
        interval_ms: 20_000,
        // Within the router's staleness limit (10 s), so most decisions see fresh telemetry.
        telemetry_every_ms: 8_000,
        replay_rate: 0.02,
        undecodable_rate: 0.005,
        ..OffloadLogSpec::default()
    }
}

async fn fixture_lake(dir: &Path) -> (Lake, netgpt_sim::offload::OffloadLogReport) {
    let mut settings = netgpt_router::RouterSettings::defaults();
    settings.router.bundle_dir = repo_root().join("services/router/bundle");
    // Some cloud calls fail, so network-down fallbacks are in the log too.
    let cloud = netgpt_cloud::simulated::SimulatedConfig { failure_rate: 0.03, ..netgpt_cloud::CloudConfig::defaults().simulated };
    let world = World::load(settings, cloud).unwrap();
    let lake = Lake::open(&dir.display().to_string(), &BTreeMap::new()).unwrap();
    let report = write(&golden_spec(), &world, &lake, false).await.unwrap();
    (lake, report)
}

fn check_golden(file: &Path, actual: &str, failures: &mut Vec<String>) {
    if std::env::var_os("NETGPT_BLESS").is_some() {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, actual).unwrap();
        return;
    }
    match std::fs::read_to_string(file) {
        Ok(expected) if expected.lines().count() == actual.lines().count() && expected.lines().zip(actual.lines()).all(|(a, b)| same_line(a, b)) => {}
        Ok(expected) => {
            let first = expected.lines().zip(actual.lines()).position(|(a, b)| !same_line(a, b)).unwrap_or(expected.lines().count().min(actual.lines().count()));
            failures.push(format!(
                "{}: differs from line {} ({} expected lines, {} actual)\n  expected: {:?}\n  actual:   {:?}",
                file.display(),
                first + 1,
                expected.lines().count(),
                actual.lines().count(),
                expected.lines().nth(first),
                actual.lines().nth(first)
            ));
        }
        Err(e) => failures.push(format!("{}: {e} (NETGPT_BLESS=1 writes it)", file.display())),
    }
}

/// CSV lines equal cell by cell; numbers may differ in the last rounded digit
/// (a float sum depends on the order parallel partitions finish in).
fn same_line(a: &str, b: &str) -> bool {
    let (x, y): (Vec<&str>, Vec<&str>) = (a.split(',').collect(), b.split(',').collect());
    x.len() == y.len()
        && x.iter().zip(&y).all(|(u, v)| {
            u == v || matches!((u.parse::<f64>(), v.parse::<f64>()), (Ok(p), Ok(q)) if (p - q).abs() <= 2e-6 + 1e-9 * p.abs().max(q.abs()))
        })
}

fn sql_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join("sql").join(dir)).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "sql")).collect();
    files.sort();
    files
}

async fn count(engine: &LogEngine, sql: &str) -> u64 {
    let b = engine.query(sql).await.unwrap();
    b[0].column(0).as_any().downcast_ref::<Int64Array>().unwrap().value(0) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sql_file_gives_its_golden_result_and_duckdb_reads_the_logs_and_datasets_unchanged() {
    let dir = tempdir("golden");
    let (lake, report) = fixture_lake(&dir).await;
    let engine = LogEngine::open(&lake).await.unwrap();

    // The fixture is what the spec says: every request and its records, replays on top.
    let spec = golden_spec();
    let requests = count(&engine, "SELECT count(*) FROM requests").await;
    let dead = count(&engine, "SELECT count(*) FROM dead_letter").await;
    assert_eq!(requests + dead, spec.requests, "{report:?}");
    assert!(dead > 0 && count(&engine, "SELECT count(*) FROM tool_requests").await > requests, "no dead letters or no replays: {report:?}");
    assert_eq!(count(&engine, "SELECT count(*) FROM decisions").await, requests);
    assert_eq!(count(&engine, "SELECT count(*) FROM answers").await, requests);
    assert_eq!(count(&engine, "SELECT count(DISTINCT policy_name) FROM decisions").await, spec.policies.len() as u64);
    assert_eq!(count(&engine, "SELECT count(DISTINCT hour) FROM decisions").await, 4);

    // Every SQL file against its golden CSV.
    let golden = repo_root().join("tests/golden");
    let mut failures = Vec::new();
    for sub in ["analytics", "datasets"] {
        for file in sql_files(sub) {
            let name = file.file_stem().unwrap().to_string_lossy().to_string();
            let sql = std::fs::read_to_string(&file).unwrap();
            let batches = engine.query(&sql).await.unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            assert!(rows > 0, "{} returned no rows on the fixture", file.display());
            check_golden(&golden.join(sub).join(format!("{name}.csv")), &render(&batches, OutputFormat::Csv).unwrap(), &mut failures);
        }
    }
    assert!(failures.is_empty(), "results changed (NETGPT_BLESS=1 rewrites the golden files after a deliberate change):\n{}", failures.join("\n"));

    // `netgpt dataset build`: every dataset as Parquet with a manifest whose counts match.
    // Built twice under one version: a rebuild replaces the version's files
    // (DuckDB below counts what is on disk, so leftovers would show).
    netgpt_dataset::build::build(&engine, &lake, netgpt_dataset::sql::DATASETS, Some("golden".into()), false).await.unwrap();
    let manifest = netgpt_dataset::build::build(&engine, &lake, netgpt_dataset::sql::DATASETS, Some("golden".into()), false).await.unwrap();
    assert_eq!(netgpt_dataset::build::latest(&lake).await.unwrap().version, "golden");
    assert_eq!(manifest.datasets.len(), sql_files("datasets").len());
    assert_eq!(manifest.sources["tool_requests"].rows as u64, count(&engine, "SELECT count(*) FROM tool_requests").await);
    for (name, d) in &manifest.datasets {
        let expected = count(&engine, &format!("SELECT count(*) FROM ({})", netgpt_dataset::sql::DATASETS.iter().find(|(n, _)| n == name).unwrap().1)).await;
        assert_eq!(d.rows, expected, "dataset {name}");
        assert!(d.rows > 0, "dataset {name} is empty");
    }
    let sft_rows = manifest.datasets["sft_targets"].rows;
    let cloud_answers = count(&engine, "SELECT count(*) FROM answers WHERE origin = 'CLOUD' AND NOT network_down_fallback AND schema_valid").await;
    assert_eq!(sft_rows, cloud_answers);

    // DuckDB reads the same Parquet, unchanged: the same rows per table and per dataset.
    let python = python_tool("python").unwrap();
    let out = std::process::Command::new(&python)
        .arg(repo_root().join("infra/duckdb/lake.py"))
        .args(["count", "--lake"])
        .arg(&dir)
        .arg("--datasets")
        .arg(dir.join("datasets/golden"))
        .output()
        .unwrap();
    assert!(out.status.success(), "duckdb: {}", String::from_utf8_lossy(&out.stderr));
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (table, stats) in &manifest.sources {
        if stats.rows > 0 {
            assert_eq!(seen["tables"][table].as_u64(), Some(stats.rows as u64), "DuckDB rows of {table}: {seen}");
        }
    }
    for (name, d) in &manifest.datasets {
        assert_eq!(seen["datasets"][name].as_u64(), Some(d.rows), "DuckDB rows of dataset {name}: {seen}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fixture_log_is_the_same_every_time() {
    let (a, b) = (tempdir("same-a"), tempdir("same-b"));
    let (_, ra) = fixture_lake(&a).await;
    let (_, rb) = fixture_lake(&b).await;
    assert_eq!((ra.records, ra.files, &ra.rows), (rb.records, rb.files, &rb.rows));
    let files = |d: &Path| {
        let mut v: Vec<(String, Vec<u8>)> = walk(d).into_iter().map(|p| (p.strip_prefix(d).unwrap().display().to_string(), std::fs::read(&p).unwrap())).collect();
        v.sort();
        v
    };
    let (fa, fb) = (files(&a), files(&b));
    assert_eq!(fa.iter().map(|(n, _)| n).collect::<Vec<_>>(), fb.iter().map(|(n, _)| n).collect::<Vec<_>>(), "two runs of the same spec wrote different objects");
    let differing: Vec<&String> = fa.iter().zip(&fb).filter(|((_, x), (_, y))| x != y).map(|((n, _), _)| n).collect();
    assert!(differing.is_empty(), "two runs of the same spec wrote different bytes in {differing:?}");
    if std::env::var_os("NETGPT_KEEP").is_none() {
        std::fs::remove_dir_all(&a).ok();
        std::fs::remove_dir_all(&b).ok();
    }
}

fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

fn tempdir(label: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("netgpt-{label}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `json_same` means the same in DataFusion (netgpt's UDF) and in DuckDB (the
/// macro of infra/duckdb/lake.py the dataset benchmark uses), on the cases
/// where a loose implementation would go wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_same_agrees_between_datafusion_and_duckdb() {
    let pairs: Vec<(&str, &str)> = vec![
        (r#"{"tool":"t","arguments":{"a":5,"b":"x"}}"#, r#"{"arguments":{"b":"x","a":5.0},"tool":"t"}"#),
        (r#"{"tool":"t","arguments":{"a":5}}"#, r#"{"tool":"t","arguments":{"a":"5"}}"#),
        (r#"{"tool":"t","arguments":{}}"#, r#"{"tool":"t","arguments":{"n":null}}"#),
        (r#"{"tool":"t","arguments":{"n":"abc"}}"#, r#"{"tool":"t","arguments":{"n":"xyz"}}"#),
        (r#"{"tool":"t","arguments":{"n":[1]}}"#, r#"{"tool":"t","arguments":{"n":"x"}}"#),
        (r#"{"tool":"t","arguments":{"n":1},"extra":1}"#, r#"{"tool":"t","arguments":{"n":1}}"#),
        (r#"{"tool":"u","arguments":{}}"#, r#"{"tool":"t","arguments":{}}"#),
        (r#"{"tool": "t", "arguments": {"site_id": "S001"}}"#, r#"{"tool":"t","arguments":{"site_id":"S001"}}"#),
        (r#"{"tool":"t","arguments":{"a":true}}"#, r#"{"tool":"t","arguments":{"a":1}}"#),
        ("not json", "{}"),
    ];
    let empty = tempdir("json-same");
    let engine = LogEngine::open(&Lake::open(&empty.display().to_string(), &BTreeMap::new()).unwrap()).await.unwrap();
    let mut ours = Vec::new();
    for (a, b) in &pairs {
        let sql = format!("SELECT json_same('{}', '{}')", a.replace('\'', "''"), b.replace('\'', "''"));
        let batches = engine.query(&sql).await.unwrap();
        let col = batches[0].column(0).as_any().downcast_ref::<arrow::array::BooleanArray>().unwrap();
        ours.push(if arrow::array::Array::is_null(col, 0) { serde_json::Value::Null } else { serde_json::Value::Bool(col.value(0)) });
    }
    assert_eq!(ours[0], serde_json::Value::Bool(true));
    assert_eq!(ours[9], serde_json::Value::Null);
    let mut child = std::process::Command::new(python_tool("python").unwrap())
        .arg(repo_root().join("infra/duckdb/lake.py"))
        .arg("json-same")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(serde_json::to_string(&pairs).unwrap().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "duckdb: {}", String::from_utf8_lossy(&out.stderr));
    let theirs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    for (i, (a, b)) in pairs.iter().enumerate() {
        assert_eq!(ours[i], theirs[i], "json_same({a}, {b}): DataFusion {} vs DuckDB {}", ours[i], theirs[i]);
    }
    std::fs::remove_dir_all(&empty).ok();
}
