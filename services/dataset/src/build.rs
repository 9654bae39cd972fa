//! `netgpt dataset build`: the dataset SQL run over the logs, each result
//! written as Parquet under `datasets/VERSION/NAME/`, with a manifest (row
//! counts, the logs' time range, the contract's schema ids, each query's
//! hash) and a `datasets/LATEST` pointer the trainer follows.

use std::collections::BTreeMap;

use arrow::array::{Array, Int64Array, TimestampMillisecondArray};
use datafusion::dataframe::DataFrameWriteOptions;
use futures::TryStreamExt;
use netgpt_archive::store::Lake;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::LogEngine;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TableStats {
    pub rows: i64,
    pub first_ms: Option<i64>,
    pub last_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetEntry {
    pub rows: u64,
    /// URL of the dataset's folder of Parquet files.
    pub url: String,
    pub sql_sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetManifest {
    pub version: String,
    pub created_at: String,
    /// Schema ids of the record types in the logs' contract.
    pub schema_ids: BTreeMap<String, u32>,
    /// Source tables: rows and record time range.
    pub sources: BTreeMap<String, TableStats>,
    pub datasets: BTreeMap<String, DatasetEntry>,
}

pub const MANIFEST_FILE: &str = "manifest.json";
pub const LATEST_FILE: &str = "LATEST";

fn datasets_path(lake: &Lake) -> Path {
    lake.root.clone().join("datasets")
}

/// Row count and `_timestamp` range of a log table.
async fn stats(engine: &LogEngine, table: &str) -> anyhow::Result<TableStats> {
    let b = engine.query(&format!("SELECT count(*) AS n, min(_timestamp) AS lo, max(_timestamp) AS hi FROM {table}")).await?;
    let Some(b) = b.first() else { return Ok(TableStats::default()) };
    let n = b.column(0).as_any().downcast_ref::<Int64Array>().map_or(0, |a| a.value(0));
    let ts = |i: usize| b.column(i).as_any().downcast_ref::<TimestampMillisecondArray>().and_then(|a| (!a.is_null(0)).then(|| a.value(0)));
    Ok(TableStats { rows: n, first_ms: ts(1), last_ms: ts(2) })
}

/// Runs every query of `queries` and writes the results; returns the manifest.
pub async fn build(engine: &LogEngine, lake: &Lake, queries: &[(&str, &str)], version: Option<String>, show_progress: bool) -> anyhow::Result<DatasetManifest> {
    let version = version.unwrap_or_else(|| chrono::Utc::now().format("v%Y%m%dT%H%M%S%.3fZ").to_string());
    let bar = netgpt_core::progress::bar((engine.tables.len() + queries.len()) as u64, "datasets", show_progress);
    let mut sources = BTreeMap::new();
    for t in &engine.tables {
        sources.insert(t.clone(), stats(engine, t).await?);
        bar.inc(1);
    }
    let base = lake.table_url(&format!("datasets/{version}"));
    let mut datasets = BTreeMap::new();
    for (name, sql) in queries {
        bar.set_message(name.to_string());
        let df = engine.ctx.sql(sql).await.map_err(|e| anyhow::anyhow!("dataset {name}: {e}"))?;
        let url = format!("{base}{name}/");
        // A rebuild of a version replaces it: DataFusion names its files
        // afresh, so an earlier build's files would stay beside the new ones
        // and every reader would count their rows twice.
        let folder = datasets_path(lake).join(version.as_str()).join(*name);
        let earlier: Vec<Path> = lake.store.list(Some(&folder)).map_ok(|m| m.location).try_collect().await?;
        for path in earlier {
            lake.store.delete(&path).await.map_err(|e| anyhow::anyhow!("removing {path} of an earlier build: {e}"))?;
        }
        // Snappy, like the archived logs (DataFusion's own default is zstd).
        let mut parquet = datafusion::config::TableParquetOptions::default();
        parquet.global.compression = Some("snappy".into());
        let written = df.write_parquet(&url, DataFrameWriteOptions::new(), Some(parquet)).await.map_err(|e| anyhow::anyhow!("writing dataset {name}: {e}"))?;
        let rows = written
            .iter()
            .filter_map(|b| b.column(0).as_any().downcast_ref::<arrow::array::UInt64Array>().map(|a| a.iter().flatten().sum::<u64>()))
            .sum();
        let sql_sha256 = Sha256::digest(sql.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        datasets.insert(name.to_string(), DatasetEntry { rows, url, sql_sha256 });
        bar.inc(1);
    }
    bar.finish_and_clear();
    let registry = netgpt_core::avro::SchemaRegistry::embedded();
    let schema_ids = netgpt_core::topics::declared()?
        .into_iter()
        .filter_map(|t| registry.latest(&t.record).map(|s| (t.record.clone(), s.id)))
        .collect();
    let manifest = DatasetManifest { version: version.clone(), created_at: chrono::Utc::now().to_rfc3339(), schema_ids, sources, datasets };
    let dir = datasets_path(lake).join(version.as_str());
    lake.store.put(&dir.join(MANIFEST_FILE), serde_json::to_vec_pretty(&manifest)?.into()).await?;
    lake.store.put(&datasets_path(lake).join(LATEST_FILE), version.clone().into_bytes().into()).await?;
    Ok(manifest)
}

/// The manifest `datasets/LATEST` points at.
pub async fn latest(lake: &Lake) -> anyhow::Result<DatasetManifest> {
    let v = lake.store.get(&datasets_path(lake).join(LATEST_FILE)).await.map_err(|e| anyhow::anyhow!("no dataset built yet ({e}); run `netgpt dataset build`"))?.bytes().await?;
    let version = String::from_utf8(v.to_vec())?;
    let m = lake.store.get(&datasets_path(lake).join(version.trim()).join(MANIFEST_FILE)).await?.bytes().await?;
    Ok(serde_json::from_slice(&m)?)
}
