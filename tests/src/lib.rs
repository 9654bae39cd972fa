//! Fixtures for the end-to-end tests: a real local broker per test, unique
//! topics, a forwarding stage, and readers that collect what landed on a topic.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use netgpt_core::broker::LocalBroker;
use netgpt_core::bus::create_topics;
use netgpt_core::config::{Config, KafkaConfig};
use netgpt_core::stage::{Incoming, Outgoing, Rejection, Stage};
use netgpt_core::topics::{self, TopicSpec};
use netgpt_core::AnyRecord;
use rdkafka::message::{Headers, Message};

/// A broker on a free loopback port with every declared topic created; killed on drop.
pub struct TestBroker {
    pub broker: LocalBroker,
    pub kafka: KafkaConfig,
}

impl TestBroker {
    pub async fn start() -> anyhow::Result<Self> {
        let config = Config::defaults()?;
        let mut broker_cfg = config.broker.clone();
        if let Ok(bin) = std::env::var("NETGPT_BROKER_BIN") {
            broker_cfg.binary = bin;
        }
        let broker = LocalBroker::start(&broker_cfg).await?;
        let mut kafka = broker.kafka_config(config.kafka);
        // Tests want quick group moves and no statistics noise.
        kafka.session_timeout_ms = 6000;
        kafka.statistics_interval_ms = 0;
        kafka.close_timeout_ms = 5000;
        create_topics(&kafka, &topics::declared()?).await?;
        Ok(Self { broker, kafka })
    }

    /// A fresh input and output topic pair.
    pub async fn in_out(&self, partitions: i32) -> anyhow::Result<(String, String)> {
        Ok((self.topic("in", partitions).await?, self.topic("out", partitions).await?))
    }

    /// Creates a fresh topic and returns its name.
    pub async fn topic(&self, prefix: &str, partitions: i32) -> anyhow::Result<String> {
        let name = format!("test.{prefix}.{}", uuid::Uuid::new_v4().simple());
        let spec = TopicSpec { name: name.clone(), record: "any".into(), partitions, retention_ms: 3_600_000, cleanup_policy: "delete".into() };
        create_topics(&self.kafka, &[spec]).await?;
        Ok(name)
    }
}

/// Forwards every input record unchanged to `output`; refuses records whose
/// prompt is `"reject me"`; stops the run (via `stop_after`) after N records;
/// takes `delay` per record so tests can act mid-stream.
pub struct Forward {
    pub input: String,
    pub output: String,
    pub handled: u64,
    pub stop_after: Option<(u64, tokio_util::sync::CancellationToken)>,
    pub delay: Duration,
}

impl Forward {
    pub fn new(input: &str, output: &str) -> Self {
        Self { input: input.into(), output: output.into(), handled: 0, stop_after: None, delay: Duration::ZERO }
    }

    pub fn stop_after(mut self, n: u64, token: &tokio_util::sync::CancellationToken) -> Self {
        self.stop_after = Some((n, token.clone()));
        self
    }

    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
}

impl Stage for Forward {
    fn name(&self) -> &str {
        "forward"
    }

    fn input_topics(&self) -> Vec<String> {
        vec![self.input.clone()]
    }

    async fn handle(&mut self, input: Incoming<'_>) -> Result<Vec<Outgoing>, Rejection> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if let AnyRecord::ToolRequest(r) = &input.record
            && r.prompt == "reject me"
        {
            return Err(Rejection("prompt asks to be rejected".into()));
        }
        self.handled += 1;
        if let Some((n, token)) = &self.stop_after
            && self.handled >= *n
        {
            token.cancel();
        }
        Ok(vec![Outgoing::new(self.output.clone(), input.record)])
    }
}

/// A record read back from a topic.
#[derive(Debug, Clone)]
pub struct Landed {
    pub record: Result<AnyRecord, String>,
    pub headers: HashMap<String, String>,
    pub partition: i32,
    pub offset: i64,
}

/// Reads `topic` from the beginning until `want` records arrived or `idle`
/// passed without a new one. Assigns every partition directly (no group join,
/// which takes seconds) and never commits.
pub async fn read_topic(kafka: &KafkaConfig, topic: &str, want: usize, idle: Duration) -> anyhow::Result<Vec<Landed>> {
    read_until(kafka, topic, idle, |landed| landed.len() >= want).await
}

/// Reads `topic` from the beginning until `done` holds or `idle` passed without a new record.
pub async fn read_until(kafka: &KafkaConfig, topic: &str, idle: Duration, done: impl Fn(&[Landed]) -> bool) -> anyhow::Result<Vec<Landed>> {
    let consumer = netgpt_core::bus::reader(kafka, "test.reader")?;
    netgpt_core::bus::assign_from_beginning(&consumer, topic, Duration::from_secs(5))?;
    let mut out = Vec::new();
    let mut last = Instant::now();
    while !done(&out) && last.elapsed() < idle {
        match tokio::time::timeout(Duration::from_millis(200), consumer.recv()).await {
            Ok(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| h.iter().map(|x| (x.key.to_string(), String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned())).collect())
                    .unwrap_or_default();
                out.push(Landed {
                    record: AnyRecord::from_bytes(m.payload().unwrap_or_default()).map_err(|e| e.to_string()),
                    headers,
                    partition: m.partition(),
                    offset: m.offset(),
                });
                last = Instant::now();
            }
            Ok(Err(e)) => anyhow::bail!("reading {topic}: {e}"),
            Err(_) => {}
        }
    }
    netgpt_core::bus::close_reader(consumer, Duration::from_secs(5)).await;
    Ok(out)
}

/// Request ids of the ToolRequests among `landed`.
pub fn request_ids(landed: &[Landed]) -> Vec<uuid::Uuid> {
    landed
        .iter()
        .filter_map(|l| match &l.record {
            Ok(AnyRecord::ToolRequest(r)) => Some(r.request_id),
            _ => None,
        })
        .collect()
}

/// `n` held-out requests spread over `sites`, with reference calls, deterministic by seed.
pub fn requests(n: usize, seed: u64, sites: &[&str]) -> Vec<netgpt_core::records::ToolRequest> {
    use netgpt_edge::catalog::{CATALOG_VERSION, ToolCatalog};
    use netgpt_edge::workload::{Split, WorkloadGenerator};
    use rand::SeedableRng;
    // The embedded catalog and its templates are checked by the edge crate's tests.
    #[allow(clippy::expect_used)]
    let g = WorkloadGenerator::new(ToolCatalog::embedded(), Split::HeldOut).expect("the embedded workload loads");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let e = g.sample(&mut rng);
            netgpt_core::records::ToolRequest {
                request_id: uuid::Uuid::new_v4(),
                site_id: sites[i % sites.len().max(1)].to_string(),
                tenant: "noc".into(),
                prompt: e.prompt.clone(),
                tool_catalog_version: CATALOG_VERSION.into(),
                upload_bytes: 6000,
                download_bytes: 300,
                expected_output_tokens: 30,
                created_at: netgpt_core::avro::TimestampMillis::now(),
                eval_reference_call: Some(e.call_json()),
                eval_difficulty: Some(e.difficulty),
            }
        })
        .collect()
}

/// The records of type `R` among `landed`, in order.
pub fn records_of<R>(landed: &[Landed], pick: impl Fn(&AnyRecord) -> Option<R>) -> Vec<R> {
    landed.iter().filter_map(|l| l.record.as_ref().ok().and_then(&pick)).collect()
}

/// The repository's root (the tests crate sits one level below it).
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A program of the Python tools `infra/install-python-tools.sh` installs
/// (duckdb, moto_server), from the virtualenv under `NETGPT_HOME`.
pub fn python_tool(name: &str) -> anyhow::Result<std::path::PathBuf> {
    let home = std::env::var_os("NETGPT_HOME").map(std::path::PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache/netgpt")));
    let path = home.ok_or_else(|| anyhow::anyhow!("neither NETGPT_HOME nor HOME is set"))?.join("py/bin").join(name);
    anyhow::ensure!(path.exists(), "{} is missing: run `bash infra/setup.sh` (the test command does)", path.display());
    Ok(path)
}

/// A real S3-compatible server on loopback (moto, from PyPI), killed on drop.
pub struct S3Server {
    _child: tokio::process::Child,
    pub endpoint: String,
}

impl S3Server {
    /// Starts moto's server on a free port; retries on another port if the
    /// server exits (say, the port was taken meanwhile). Its output goes to a
    /// log file named in errors.
    pub async fn start() -> anyhow::Result<Self> {
        let mut last = String::new();
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let log_path = std::env::temp_dir().join(format!("netgpt-moto-{port}.log"));
            let log = std::fs::File::create(&log_path)?;
            let mut child = tokio::process::Command::new(python_tool("moto_server")?)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(log.try_clone()?)
                .stderr(log)
                .kill_on_drop(true)
                .spawn()?;
            let endpoint = format!("http://127.0.0.1:{port}");
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Some(status) = child.try_wait()? {
                    last = format!("moto_server exited ({status}); see {}", log_path.display());
                    break;
                }
                // Listening and answering as S3 (an XML bucket list), not some other server on the port.
                if let Ok(Ok(reply)) = tokio::time::timeout(Duration::from_secs(5), http(&endpoint, "GET", "/")).await
                    && reply.contains("ListAllMyBucketsResult")
                {
                    return Ok(Self { _child: child, endpoint });
                }
                anyhow::ensure!(Instant::now() < deadline, "moto_server did not answer on port {port} within 60 s; see {}", log_path.display());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        anyhow::bail!("{last}")
    }

    /// Creates a bucket (one unsigned PUT: moto does not check signatures).
    pub async fn create_bucket(&self, bucket: &str) -> anyhow::Result<()> {
        let reply = tokio::time::timeout(Duration::from_secs(30), http(&self.endpoint, "PUT", &format!("/{bucket}"))).await??;
        anyhow::ensure!(reply.starts_with("HTTP/1.1 200") || reply.starts_with("HTTP/1.0 200"), "creating bucket {bucket}: {}", reply.lines().next().unwrap_or(""));
        Ok(())
    }

    /// object_store options for an `s3://` URL on this server.
    pub fn options(&self) -> std::collections::BTreeMap<String, String> {
        [("aws_endpoint", self.endpoint.as_str()), ("aws_allow_http", "true"), ("aws_access_key_id", "test"), ("aws_secret_access_key", "test"), ("aws_region", "us-east-1")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

/// One plain HTTP/1.1 request without a body; the whole reply.
async fn http(endpoint: &str, method: &str, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = endpoint.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(host).await?;
    s.write_all(format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).await?;
    Ok(reply)
}
