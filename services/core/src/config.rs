//! Configuration: the compiled-in `netgpt.toml` defaults, layered under an
//! optional user file and `NETGPT__SECTION__KEY` environment variables.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};

/// The documented defaults (the repository's `netgpt.toml`).
pub const DEFAULTS_TOML: &str = include_str!("../../../netgpt.toml");

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub broker: BrokerConfig,
    pub admin: AdminConfig,
    pub loadgen: LoadgenConfig,
    pub demo: DemoConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    pub client_id: String,
    pub group_prefix: String,
    pub delivery_timeout_ms: u64,
    pub max_in_flight: usize,
    pub close_timeout_ms: u64,
    pub session_timeout_ms: u64,
    pub statistics_interval_ms: u64,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BrokerConfig {
    pub binary: String,
    pub port: u16,
    pub startup_timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminConfig {
    pub listen: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadgenConfig {
    pub rate: f64,
    pub sites: u32,
    pub telemetry_hz: f64,
    pub seed: u64,
    pub split: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoConfig {
    pub seconds: u64,
    /// Router policies the demo runs one after another (hot-reloaded).
    #[serde(default)]
    pub policies: Vec<String>,
}

/// Extracts `T` from the layered configuration: defaults < `file` (if any) <
/// environment. Stage crates extend the core sections with their own by
/// flattening [`Config`] into a bigger struct.
pub fn load_layered<T: serde::de::DeserializeOwned>(file: Option<&Path>) -> anyhow::Result<T> {
    let mut fig = Figment::from(Toml::string(DEFAULTS_TOML));
    if let Some(path) = file {
        if !path.exists() {
            anyhow::bail!("config file {} does not exist", path.display());
        }
        fig = fig.merge(Toml::file(path));
    }
    fig = fig.merge(Env::prefixed("NETGPT__").split("__"));
    fig.extract().map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))
}

impl Config {
    /// Defaults < `file` (if any) < environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        load_layered(file)
    }

    /// The compiled-in defaults only (tests, benchmarks).
    pub fn defaults() -> anyhow::Result<Self> {
        defaults_of()
    }
}

/// Extracts `T` from the compiled-in defaults only.
pub fn defaults_of<T: serde::de::DeserializeOwned>() -> anyhow::Result<T> {
    Figment::from(Toml::string(DEFAULTS_TOML)).extract().map_err(|e| anyhow::anyhow!("invalid default configuration: {e}"))
}

/// A local path from a `file://` URI or a plain path. Update records name
/// weights and scorers this way; object-store URIs are read through the lake.
pub fn local_path(uri: &str) -> anyhow::Result<PathBuf> {
    match uri.split_once("://") {
        None => Ok(PathBuf::from(uri)),
        Some(("file", rest)) => Ok(PathBuf::from(rest)),
        Some((scheme, _)) => anyhow::bail!("URI scheme {scheme}:// is not supported here yet (only local paths and file://)"),
    }
}

/// Where netgpt keeps installed tools and demo data: `$NETGPT_HOME`, else `~/.cache/netgpt`.
pub fn netgpt_home() -> PathBuf {
    if let Some(h) = std::env::var_os("NETGPT_HOME") {
        return PathBuf::from(h);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    home.join(".cache").join("netgpt")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure signature
    fn defaults_parse_and_env_overrides_them() {
        let d = Config::defaults().unwrap();
        assert_eq!(d.kafka.bootstrap_servers, "");
        assert!(d.kafka.max_in_flight > 0);
        // figment::Jail isolates the process environment for the closure.
        figment::Jail::expect_with(|jail| {
            jail.set_env("NETGPT__KAFKA__BOOTSTRAP_SERVERS", "b1:9092,b2:9092");
            jail.set_env("NETGPT__LOADGEN__RATE", "12.5");
            jail.create_file("my.toml", "[demo]\nseconds = 3\n[kafka.properties]\n\"security.protocol\" = \"SSL\"\n")?;
            let c = Config::load(Some(Path::new("my.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.kafka.bootstrap_servers, "b1:9092,b2:9092");
            assert_eq!(c.loadgen.rate, 12.5);
            assert_eq!(c.demo.seconds, 3);
            assert_eq!(c.kafka.properties.get("security.protocol").map(String::as_str), Some("SSL"));
            assert_eq!(c.loadgen.sites, d.loadgen.sites, "untouched keys keep their defaults");
            Ok(())
        });
    }

    #[test]
    fn a_missing_config_file_is_a_clear_error() {
        let e = Config::load(Some(Path::new("/nonexistent/netgpt.toml"))).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
    }
}
