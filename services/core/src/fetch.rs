//! Folders named by URI — a model or router bundle the trainer published — as
//! local folders the stages can load: a local path or `file://` URI as it is,
//! an object store URL (`s3://`, `gs://`, `az://`, opened with the lake's
//! options) downloaded once into a cache. What the trainer publishes is
//! content-addressed, so a cached copy never goes stale.

use std::collections::BTreeMap;
use std::path::PathBuf;

use object_store::ObjectStoreExt;

/// Where remote folders come from (store options) and where copies go.
#[derive(Debug, Clone)]
pub struct RemoteFolders {
    /// object_store options (credentials, endpoint, region), as in `[archive.options]`.
    pub options: BTreeMap<String, String>,
    pub cache: PathBuf,
}

impl RemoteFolders {
    /// Copies under `$NETGPT_HOME/cache/updates`.
    pub fn new(options: BTreeMap<String, String>) -> Self {
        Self { options, cache: crate::config::netgpt_home().join("cache").join("updates") }
    }

    /// Where the copy of `uri` is kept.
    fn cached(&self, uri: &str) -> PathBuf {
        self.cache.join(uri.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect::<String>())
    }

    /// `load` run on a local folder holding `files` of the folder at `uri`.
    /// When it fails on a cached copy of a remote folder (a damaged copy: a
    /// checksum or parse error), the copy is dropped, fetched once more and
    /// loaded again.
    pub async fn load<T>(&self, uri: &str, files: &[&str], load: impl Fn(&std::path::Path) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let loaded = load(&self.local_folder(uri, files).await?);
        if loaded.is_ok() || is_local(uri) {
            return loaded;
        }
        std::fs::remove_dir_all(self.cached(uri)).ok();
        load(&self.local_folder(uri, files).await?)
    }

    /// A local folder holding `files` of the folder at `uri`.
    pub async fn local_folder(&self, uri: &str, files: &[&str]) -> anyhow::Result<PathBuf> {
        if is_local(uri) {
            return crate::config::local_path(uri);
        }
        let dir = self.cached(uri);
        if files.iter().all(|f| dir.join(f).is_file()) {
            return Ok(dir);
        }
        let url = url::Url::parse(uri).map_err(|e| anyhow::anyhow!("{uri}: {e}"))?;
        let (store, root) = object_store::parse_url_opts(&url, self.options.iter()).map_err(|e| anyhow::anyhow!("opening {uri}: {e}"))?;
        // Downloaded beside the final place and renamed into it: a folder in
        // the cache is always complete.
        let partial = dir.with_extension(format!("partial-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&partial)?;
        let fetched = async {
            for f in files {
                let bytes = store.get(&root.clone().join(*f)).await.map_err(|e| anyhow::anyhow!("{uri}/{f}: {e}"))?.bytes().await?;
                std::fs::write(partial.join(f), &bytes)?;
            }
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = fetched {
            std::fs::remove_dir_all(&partial).ok();
            return Err(e);
        }
        if std::fs::rename(&partial, &dir).is_err() {
            // Another reader finished first: its copy is the same content.
            std::fs::remove_dir_all(&partial).ok();
            anyhow::ensure!(files.iter().all(|f| dir.join(f).is_file()), "could not place the copy of {uri} at {}", dir.display());
        }
        Ok(dir)
    }
}

/// True for a URI the stages read in place.
pub fn is_local(uri: &str) -> bool {
    !uri.contains("://") || uri.starts_with("file://")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[tokio::test]
    async fn local_uris_are_used_in_place() {
        let folders = RemoteFolders { options: BTreeMap::new(), cache: std::env::temp_dir() };
        assert_eq!(folders.local_folder("file:///a/b", &["x"]).await.unwrap_or_default(), Path::new("/a/b"));
        assert_eq!(folders.local_folder("rel/dir", &["x"]).await.unwrap_or_default(), Path::new("rel/dir"));
        assert!(is_local("/abs") && !is_local("s3://bucket/x"));
    }
}
