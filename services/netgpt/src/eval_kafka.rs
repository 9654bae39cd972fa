//! The broker half of `netgpt eval through-kafka`: one configuration through
//! a fresh local Kafka-protocol broker (or the configured cluster) with the
//! demo's edge, router, cloud and tally stages.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netgpt_cloud::stage::CloudGateway;
use netgpt_core::broker::LocalBroker;
use netgpt_core::bus::Producer;
use netgpt_core::metrics::Metrics;
use netgpt_edge::stage::EdgeStage;
use netgpt_eval::tally::Measures;
use netgpt_eval::through_kafka::{KafkaCheckSpec, network};
use tokio_util::sync::CancellationToken;

use crate::AppConfig;
use crate::demo::{spawn, start_router};
use crate::loadgen::{LoadgenArgs, generate};
use crate::tally::{Tally, TallyState};

/// Runs `spec`'s configuration for `seed` through the broker and tallies the answers.
pub async fn run_seed(app: &AppConfig, inputs: &netgpt_eval::Inputs, spec: &KafkaCheckSpec, seed: u64) -> anyhow::Result<Measures> {
    let mut app = app.clone();
    app.router.network = network(inputs);
    app.router.router.policy = spec.policy.clone();
    app.router.router.shadow_policy = String::new();
    app.core.loadgen.split = spec.split.clone();
    app.core.loadgen.sites = spec.sites;
    app.core.loadgen.seed = seed;
    // Every run starts from empty topics and new consumer groups.
    app.core.kafka.group_prefix = format!("netgpt-eval-{seed}-{}", std::process::id());
    let broker = LocalBroker::start_unless_configured(&mut app.core).await?;
    anyhow::ensure!(broker.is_some(), "--through-kafka starts its own local broker for each run; unset kafka.bootstrap_servers");
    let result = pipeline(&app, spec, seed).await;
    if let Some(b) = broker {
        b.stop().await;
    }
    result
}

async fn pipeline(app: &AppConfig, spec: &KafkaCheckSpec, seed: u64) -> anyhow::Result<Measures> {
    let config = &app.core;
    netgpt_core::bus::create_topics(&config.kafka, &netgpt_core::topics::declared()?).await?;
    let metrics = Metrics::new();
    let edge = EdgeStage::load(&app.edge)?;
    let follower_stop = CancellationToken::new();
    let (router, follower) = start_router(app, &follower_stop).await?;
    let cloud = CloudGateway::from_config(&app.cloud, app.router.cost.clone())?;
    let state = Arc::new(Mutex::new(TallyState::default()));
    let stages = vec![spawn(edge, config, &metrics), spawn(router, config, &metrics), spawn(cloud, config, &metrics), spawn(Tally { state: state.clone() }, config, &metrics)];
    let join_deadline = Instant::now() + Duration::from_secs(30);
    while stages.iter().any(|s| metrics.assigned(&s.name) == 0 && !s.handle.is_finished()) && Instant::now() < join_deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let producer = Producer::new(&config.kafka)?;
    let seconds = spec.requests as f64 / spec.rate;
    let load = generate(config, &app.router.network, &LoadgenArgs { rate: Some(spec.rate), sites: Some(spec.sites), seconds: Some(seconds), seed: Some(seed) }, &producer, CancellationToken::new()).await?;
    anyhow::ensure!(load.failed == 0, "{} records were not delivered to the broker", load.failed);
    let deadline = Instant::now() + Duration::from_secs(120);
    while state.lock().unwrap_or_else(|p| p.into_inner()).responses < load.requests && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for s in stages {
        s.stop.cancel();
        s.handle.await??;
    }
    follower_stop.cancel();
    follower.await??;
    let s = std::mem::take(&mut *state.lock().unwrap_or_else(|p| p.into_inner()));
    anyhow::ensure!(s.responses >= load.requests, "seed {seed}: {} of {} requests got an answer through the broker", s.responses, load.requests);
    s.measures(&spec.policy)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use netgpt_eval::through_kafka::{ModeRow, compare, in_process};

    use super::*;

    /// The check `eval through-kafka` makes, small: one seed through a fresh
    /// local broker must answer every request (at least once) and measure what the
    /// in-process run does. The bound is three times the 95 % noise of the
    /// shares' difference, so chance alone almost never trips it, while a
    /// broken stage (lost answers, nothing offloaded, wrong calls) does.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_broker_pipeline_measures_what_the_in_process_run_does() -> anyhow::Result<()> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut app: AppConfig = netgpt_core::config::defaults_of()?;
        app.edge.model_dir = root.join(&app.edge.model_dir);
        app.router.router.bundle_dir = root.join(&app.router.router.bundle_dir);
        let inputs = crate::eval::inputs(&app);
        let spec = KafkaCheckSpec { seeds: vec![1], requests: 400, rate: 200.0, ..Default::default() };

        let local = in_process(&inputs, &spec, 1).await?;
        let broker = run_seed(&app, &inputs, &spec, 1).await?;
        assert_eq!(local.answers, spec.requests);
        // run_seed fails unless every request the load generator produced was
        // answered; the generator paces by time and may stop a few short.
        assert!(broker.answers as f64 >= 0.95 * spec.requests as f64, "{} of {} requests answered through the broker", broker.answers, spec.requests);
        let rows = [ModeRow { mode: "in-process".into(), seed: 1, measures: local }, ModeRow { mode: "kafka".into(), seed: 1, measures: broker }];
        for c in compare(&rows) {
            assert!(c.difference().abs() <= 3.0 * c.noise, "{}: in-process {:.3}, through Kafka {:.3}, more than 3 × ±{:.3} apart", c.name, c.in_process.mean, c.kafka.mean, c.noise);
        }
        Ok(())
    }
}
