//! Prometheus metrics of the stages and the admin server that exposes them
//! (`/metrics`, `/healthz`). Metric names follow `netgpt_<what>_<unit>` with a
//! `stage` label; counters end in `_total`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub stage: String,
    pub topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub stage: String,
    pub topic: String,
    pub partition: String,
}

/// Every metric netgpt exports. One instance per process, shared by all stages.
pub struct Metrics {
    registry: Registry,
    pub records_in: Family<TopicLabels, Counter>,
    pub records_out: Family<TopicLabels, Counter>,
    pub dead_lettered: Family<StageLabels, Counter>,
    pub consumer_lag: Family<PartitionLabels, Gauge>,
    pub assigned_partitions: Family<StageLabels, Gauge>,
    pub processing_seconds: Family<StageLabels, Histogram>,
    healthy: AtomicBool,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("netgpt");
        let records_in = Family::<TopicLabels, Counter>::default();
        let records_out = Family::<TopicLabels, Counter>::default();
        let dead_lettered = Family::<StageLabels, Counter>::default();
        let consumer_lag = Family::<PartitionLabels, Gauge>::default();
        let assigned_partitions = Family::<StageLabels, Gauge>::default();
        let processing_seconds =
            Family::<StageLabels, Histogram>::new_with_constructor(|| Histogram::new(exponential_buckets(1e-5, 4.0, 12)));
        registry.register("records_in", "Input records read by a stage", records_in.clone());
        registry.register("records_out", "Output records produced and acknowledged by the broker", records_out.clone());
        registry.register("dead_lettered", "Input records sent to the dead-letter topic", dead_lettered.clone());
        registry.register("consumer_lag", "Records behind the partition end, per assigned partition", consumer_lag.clone());
        registry.register("assigned_partitions", "Partitions currently assigned to a stage's consumer", assigned_partitions.clone());
        registry.register(
            "processing_seconds",
            "Time from reading an input record to its outputs being acknowledged",
            processing_seconds.clone(),
        );
        Arc::new(Self { registry, records_in, records_out, dead_lettered, consumer_lag, assigned_partitions, processing_seconds, healthy: AtomicBool::new(true) })
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Partitions assigned to `stage` right now (0 before its group has joined).
    pub fn assigned(&self, stage: &str) -> i64 {
        self.assigned_partitions.get_or_create(&StageLabels { stage: stage.to_string() }).get()
    }

    pub fn set_healthy(&self, ok: bool) {
        self.healthy.store(ok, Ordering::Relaxed);
    }

    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

/// Serves `/metrics` and `/healthz` until `shutdown`; returns the bound address.
pub async fn serve_admin(listen: &str, metrics: Arc<Metrics>, shutdown: CancellationToken) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| anyhow::anyhow!("admin server cannot bind {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(health_handler))
        .with_state(metrics);
    tokio::spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "admin server stopped");
        }
    });
    Ok(addr)
}

async fn metrics_handler(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], m.encode())
}

async fn health_handler(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    if m.healthy() { (StatusCode::OK, "ok\n") } else { (StatusCode::SERVICE_UNAVAILABLE, "unhealthy\n") }
}
