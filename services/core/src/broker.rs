//! The local Kafka-protocol broker (Tansu, in-memory storage) that `netgpt demo`
//! and the tests start on a loopback port when no cluster is configured.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::process::{Child, Command};

use crate::config::{BrokerConfig, KafkaConfig, netgpt_home};

/// A running local broker; killed when stopped or dropped.
pub struct LocalBroker {
    child: Child,
    pub bootstrap: String,
}

impl LocalBroker {
    /// Where the broker binary is expected.
    pub fn binary(cfg: &BrokerConfig) -> PathBuf {
        if !cfg.binary.is_empty() {
            return PathBuf::from(&cfg.binary);
        }
        netgpt_home().join("broker").join("tansu")
    }

    /// Starts the broker and waits until it answers metadata requests.
    pub async fn start(cfg: &BrokerConfig) -> anyhow::Result<Self> {
        let bin = Self::binary(cfg);
        if !bin.exists() {
            anyhow::bail!("the local broker is not installed at {}: run `bash infra/install-broker.sh` (or set broker.binary)", bin.display());
        }
        let port = if cfg.port == 0 { free_port()? } else { cfg.port };
        let url = format!("tcp://127.0.0.1:{port}");
        // Its storage is in memory, so every start is a new cluster whose
        // offsets begin at 0 again: a fresh cluster id says so to the archiver,
        // which names lake objects by cluster, partition and offsets.
        let cluster_id = format!("netgpt-local-{}", uuid::Uuid::new_v4().simple());
        let child = Command::new(&bin)
            .arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url, "--storage-engine", "memory://tansu/", "--cluster-id", &cluster_id])
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting the broker {}", bin.display()))?;
        let mut broker = Self { child, bootstrap: format!("127.0.0.1:{port}") };
        broker.wait_ready(Duration::from_millis(cfg.startup_timeout_ms)).await?;
        tracing::info!(bootstrap = %broker.bootstrap, "local broker started");
        Ok(broker)
    }

    /// Starts a local broker when `config` names no cluster, and points
    /// `config.kafka` at it; `None` when a cluster is configured.
    pub async fn start_unless_configured(config: &mut crate::Config) -> anyhow::Result<Option<Self>> {
        if !config.kafka.bootstrap_servers.trim().is_empty() {
            return Ok(None);
        }
        let broker = Self::start(&config.broker).await?;
        config.kafka = broker.kafka_config(config.kafka.clone());
        Ok(Some(broker))
    }

    async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let kafka = self.kafka_config(KafkaConfig { bootstrap_servers: String::new(), ..crate::config::Config::defaults()?.kafka });
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("the broker exited during start-up ({status})");
            }
            let cfg = kafka.clone();
            let ok = tokio::task::spawn_blocking(move || crate::bus::list_topics(&cfg, Duration::from_millis(500)).is_ok()).await?;
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                anyhow::bail!("the broker at {} did not answer within {timeout:?}", self.bootstrap);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `base` pointed at this broker.
    pub fn kafka_config(&self, base: KafkaConfig) -> KafkaConfig {
        KafkaConfig { bootstrap_servers: self.bootstrap.clone(), ..base }
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

fn free_port() -> anyhow::Result<u16> {
    // Bind port 0, read the port, release it; the broker binds it a moment later.
    let l = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}
