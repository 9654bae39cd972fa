//! The lake: an object store opened from a URL, table and object paths, and
//! what is already archived.
//!
//! Object names carry a tag of the Kafka cluster, the partition and the
//! offset range of the records inside:
//! `TABLE/date=YYYY-MM-DD/hour=HH/part-c0123456789abcdef-p0002-o00000000000000001000-o00000000000000001999.parquet`.
//! Objects are written whole (object_store puts are atomic), and offsets are
//! committed only afterwards, so at start-up the highest offset named per
//! table and partition of this cluster says exactly which records are already
//! durable. Offsets mean nothing across clusters: a new cluster (the demo's
//! in-memory broker at every start) numbers from 0 again, and without the tag
//! its records would pass for archived ones, or overwrite them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path;

pub struct Lake {
    pub store: Arc<dyn ObjectStore>,
    /// Prefix of every table inside the store.
    pub root: Path,
    /// The store's base URL (`file:///abs/dir`, `s3://bucket`, ...), for query engines.
    pub base_url: url::Url,
}

/// An archived object's place in its table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectName {
    /// [`cluster_tag`] of the cluster whose offsets these are ("" in names
    /// written before clusters were told apart).
    pub cluster: String,
    pub partition: i32,
    pub first_offset: i64,
    pub last_offset: i64,
}

impl ObjectName {
    pub fn file_name(&self) -> String {
        let cluster = if self.cluster.is_empty() { String::new() } else { format!("c{}-", self.cluster) };
        format!("part-{cluster}p{:04}-o{:020}-o{:020}.parquet", self.partition, self.first_offset, self.last_offset)
    }

    pub fn parse(file_name: &str) -> Option<Self> {
        let rest = file_name.strip_prefix("part-")?.strip_suffix(".parquet")?;
        let (cluster, rest) = match rest.strip_prefix('c') {
            Some(tagged) => {
                let (tag, rest) = tagged.split_once('-')?;
                (tag.bytes().all(|b| b.is_ascii_hexdigit()).then(|| tag.to_string())?, rest)
            }
            None => (String::new(), rest),
        };
        let mut parts = rest.strip_prefix('p')?.split("-o");
        let partition = parts.next()?.parse().ok()?;
        let first_offset = parts.next()?.parse().ok()?;
        let last_offset = parts.next()?.parse().ok()?;
        parts.next().is_none().then_some(Self { cluster, partition, first_offset, last_offset })
    }
}

/// A short, file-name-safe tag of a Kafka cluster id (FNV-1a, 64 bits, hex).
pub fn cluster_tag(cluster_id: &str) -> String {
    format!("{:016x}", netgpt_core::hash::fnv1a(cluster_id.as_bytes()))
}

impl Lake {
    /// Opens `url`: a plain path (created if missing) or any URL object_store
    /// understands, with `options` for its scheme.
    pub fn open(url: &str, options: &BTreeMap<String, String>) -> anyhow::Result<Self> {
        if netgpt_core::fetch::is_local(url) {
            let dir = netgpt_core::config::local_path(url)?;
            std::fs::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("creating the lake folder {}: {e}", dir.display()))?;
            let dir = dir.canonicalize()?;
            // An unprefixed local store with absolute paths, the way query engines
            // see `file://` URLs, so the same store serves the archiver and DataFusion.
            let root = Path::from_absolute_path(&dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
            let base_url = url::Url::parse("file:///")?;
            return Ok(Self { store: Arc::new(LocalFileSystem::new()), root, base_url });
        }
        let parsed = url::Url::parse(url).map_err(|e| anyhow::anyhow!("archive URL {url}: {e}"))?;
        let (store, root) = object_store::parse_url_opts(&parsed, options.iter()).map_err(|e| anyhow::anyhow!("opening {url}: {e}"))?;
        let mut base_url = parsed.clone();
        base_url.set_path("/");
        Ok(Self { store: Arc::from(store), root, base_url })
    }

    /// Where the lake is, for people: the base URL and root.
    pub fn location(&self) -> String {
        format!("{}{}", self.base_url, self.root)
    }

    /// The path of `relative` (slash-separated segments) under the lake's root.
    pub fn path(&self, relative: &str) -> Path {
        relative.split('/').filter(|s| !s.is_empty()).fold(self.root.clone(), |p, segment| p.join(segment))
    }

    pub fn table_path(&self, table: &str) -> Path {
        self.root.clone().join(table)
    }

    /// The URL of a table's folder, as query engines take it.
    pub fn table_url(&self, table: &str) -> String {
        // base_url ends with '/', the root has none at either end.
        let root = self.root.as_ref();
        if root.is_empty() { format!("{}{table}/", self.base_url) } else { format!("{}{root}/{table}/", self.base_url) }
    }

    pub fn object_path(&self, table: &str, date: &str, hour: u32, name: &ObjectName) -> Path {
        self.table_path(table).join(format!("date={date}").as_str()).join(format!("hour={hour:02}").as_str()).join(name.file_name().as_str())
    }

    /// Every archived object of `table`.
    pub async fn objects(&self, table: &str) -> anyhow::Result<Vec<(Path, ObjectName)>> {
        let prefix = self.table_path(table);
        let metas: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
        Ok(metas.into_iter().filter_map(|m| ObjectName::parse(m.location.filename()?).map(|n| (m.location, n))).collect())
    }

    /// Highest archived offset per partition of `table`, of the cluster tagged `cluster`.
    pub async fn archived_offsets(&self, table: &str, cluster: &str) -> anyhow::Result<HashMap<i32, i64>> {
        let mut out: HashMap<i32, i64> = HashMap::new();
        for (_, n) in self.objects(table).await?.into_iter().filter(|(_, n)| n.cluster == cluster) {
            let e = out.entry(n.partition).or_insert(n.last_offset);
            *e = (*e).max(n.last_offset);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;

    #[test]
    fn object_names_round_trip_and_sort_by_offset() {
        let n = ObjectName { cluster: cluster_tag("MkU3OEVBNTcwNTJENDM2Qg"), partition: 2, first_offset: 1000, last_offset: 1999 };
        assert_eq!(ObjectName::parse(&n.file_name()), Some(n.clone()));
        let untagged = ObjectName { cluster: String::new(), ..n.clone() };
        assert_eq!(ObjectName::parse(&untagged.file_name()), Some(untagged));
        assert_eq!(ObjectName::parse("part-p0002-o00000000000000000001-o00000000000000000009.parquet").map(|n| n.last_offset), Some(9));
        assert!(ObjectName::parse("part-p2-o1.parquet").is_none());
        assert!(ObjectName::parse("part-cnot_hex-p0002-o1-o2.parquet").is_none());
        assert!(ObjectName::parse("notes.txt").is_none());
        let later = ObjectName { first_offset: 2000, last_offset: 2999, ..n.clone() };
        assert!(n.file_name() < later.file_name());
        assert_ne!(cluster_tag("a"), cluster_tag("b"));
    }

    #[tokio::test]
    async fn a_local_lake_lists_what_was_put() {
        let dir = std::env::temp_dir().join(format!("netgpt-lake-{}", uuid::Uuid::new_v4()));
        let lake = Lake::open(dir.to_str().unwrap(), &BTreeMap::new()).unwrap();
        for (cluster, first, last) in [("a", 0, 9), ("a", 10, 19), ("b", 0, 29)] {
            let name = ObjectName { cluster: cluster_tag(cluster), partition: 1, first_offset: first, last_offset: last };
            lake.store.put(&lake.object_path("t", "2026-12-04", 7, &name), bytes::Bytes::from_static(b"x").into()).await.unwrap();
        }
        assert_eq!(lake.archived_offsets("t", &cluster_tag("a")).await.unwrap(), HashMap::from([(1, 19)]));
        assert_eq!(lake.archived_offsets("t", &cluster_tag("b")).await.unwrap(), HashMap::from([(1, 29)]));
        assert!(lake.archived_offsets("t", &cluster_tag("c")).await.unwrap().is_empty());
        assert!(lake.table_url("t").starts_with("file:///") && lake.table_url("t").ends_with("/t/"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
