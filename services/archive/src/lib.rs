//! netgpt-archive: the offload logs. Every record topic is written as Parquet
//! through `object_store` (a local folder by default; `s3://`, `gs://`, `az://`
//! by URL), one table per topic, Hive-partitioned by date and hour, with
//! object names derived from the Kafka partition and offset range, so that a
//! restarted archiver neither loses nor duplicates a record.
//!
//! - [`schema`]: Arrow schemas derived from the Avro contract (nested records
//!   flattened to `parent_child` columns) and rows from records;
//! - [`store`]: opening an object store from a URL, naming objects;
//! - [`archiver`]: the consuming loop (buffers, rolls, writes, then commits).

pub mod archiver;
pub mod schema;
pub mod store;

use serde::{Deserialize, Serialize};

/// `[archive]` in netgpt.toml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchiveConfig {
    /// Where the logs go: a local path, `file:///...`, `s3://bucket/prefix`,
    /// `gs://bucket/prefix` or `az://container/prefix`.
    pub url: String,
    /// object_store options for the URL's scheme (credentials, endpoint,
    /// region, allow_http, ...), e.g. `aws_endpoint = "http://127.0.0.1:9000"`.
    #[serde(default)]
    pub options: std::collections::BTreeMap<String, String>,
    /// A file is written when it holds this many records ...
    pub max_records_per_file: usize,
    /// ... or this many bytes of encoded records ...
    pub max_bytes_per_file: usize,
    /// ... or its oldest record has waited this long (ms).
    pub max_file_age_ms: u64,
    /// Topics archived (default: every record topic of the contract).
    #[serde(default)]
    pub topics: Vec<String>,
}
