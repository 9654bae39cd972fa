//! Edge → router → cloud gateway on a real broker: every request gets one
//! decision and one final answer, decisions follow each site's telemetry (and
//! say when they had none), policies hot-reload from the compacted update
//! topic, and a restarted router catches up with the newest policy.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use netgpt_cloud::stage::CloudGateway;
use netgpt_core::AnyRecord;
use netgpt_core::avro::TimestampMillis;
use netgpt_core::bus::Producer;
use netgpt_core::metrics::Metrics;
use netgpt_core::records::{AgentResponse, LinkRegime, Origin, Placement, PolicyUpdate, RoutingDecision, SiteTelemetry};
use netgpt_core::stage::{RunReport, Stage, run_stage};
use netgpt_core::topics::{AGENT_RESPONSES, POLICY_UPDATES, ROUTING_DECISIONS, SITE_TELEMETRY, TOOL_REQUESTS};
use netgpt_edge::stage::{EdgeConfig, EdgeStage};
use netgpt_router::RouterSettings;
use netgpt_router::bundle::RouterBundle;
use netgpt_router::stage::{ACTIVE_CHANNEL, RouterStage, SiteTable, follow_telemetry};
use netgpt_tests::{TestBroker, read_until, records_of, requests};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).join(path)
}

fn settings(policy: &str) -> RouterSettings {
    let mut s = RouterSettings::defaults();
    s.router.bundle_dir = repo("services/router/bundle");
    s.router.policy = policy.into();
    s.router.exploration_rate = 0.0;
    s
}

fn spawn<S: Stage + 'static>(stage: S, tb: &TestBroker, stop: &CancellationToken) -> JoinHandle<anyhow::Result<RunReport>> {
    let (kafka, token, group) = (tb.kafka.clone(), stop.clone(), format!("test.{}", stage.name()));
    tokio::spawn(async move { run_stage(stage, &kafka, &group, Metrics::new(), token).await })
}

fn telemetry(site: &str, regime: LinkRegime) -> SiteTelemetry {
    let s = RouterSettings::defaults().network.regimes.state(regime, "flat");
    SiteTelemetry {
        site_id: site.into(),
        uplink_mbps: s.uplink_mbps,
        downlink_mbps: s.downlink_mbps,
        rtt_ms: s.rtt_ms,
        loss_rate: s.loss_rate,
        price_schedule_id: "flat".into(),
        link_regime: Some(regime),
        observed_at: TimestampMillis::now(),
    }
}

fn decisions(l: &AnyRecord) -> Option<RoutingDecision> {
    match l {
        AnyRecord::RoutingDecision(d) => Some(d.clone()),
        _ => None,
    }
}

fn responses(l: &AnyRecord) -> Option<AgentResponse> {
    match l {
        AnyRecord::AgentResponse(r) => Some(r.clone()),
        _ => None,
    }
}

async fn start_router(tb: &TestBroker, policy: &str, stop: &CancellationToken) -> (RouterStage, JoinHandle<anyhow::Result<u64>>) {
    let sites = SiteTable::default();
    let ready = CancellationToken::new();
    let follower = tokio::spawn(follow_telemetry(tb.kafka.clone(), sites.clone(), 1000, ready.clone(), stop.clone()));
    tokio::time::timeout(Duration::from_secs(20), ready.cancelled()).await.expect("telemetry backlog read");
    let mut router = RouterStage::load(settings(policy), sites).unwrap();
    router.catch_up(&tb.kafka).await.unwrap();
    (router, follower)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_is_decided_and_answered_once_by_network_aware_hot_reloaded_policies() {
    let tb = TestBroker::start().await.unwrap();
    let producer = Producer::new(&tb.kafka).unwrap();
    // S001 has a good link, S002 a bad one, S003 sends no telemetry.
    producer.send(SITE_TELEMETRY, &telemetry("S001", LinkRegime::Good)).await.await.unwrap();
    producer.send(SITE_TELEMETRY, &telemetry("S002", LinkRegime::Bad)).await.await.unwrap();

    let stop = CancellationToken::new();
    let edge_cfg = EdgeConfig { model_dir: repo("services/edge/checkpoint"), model_version: "sft-base".into(), max_prompt_bytes: 2048, constrained_decoding: true, gguf_file: Default::default() };
    let (router, follower) = start_router(&tb, "funcdyn", &stop).await;
    assert_eq!(router.sites().len(), 2, "the follower read both sites' telemetry");
    let cloud = CloudGateway::from_config(&netgpt_cloud::CloudConfig::defaults(), RouterSettings::defaults().cost).unwrap();
    let running = [spawn(EdgeStage::load(&edge_cfg).unwrap(), &tb, &stop), spawn(router, &tb, &stop), spawn(cloud, &tb, &stop)];

    let batch = requests(45, 3, &["S001", "S002", "S003"]);
    for r in &batch {
        producer.send(TOOL_REQUESTS, r).await.await.unwrap();
    }
    let landed = read_until(&tb.kafka, AGENT_RESPONSES, Duration::from_secs(60), |l| l.len() >= 45).await.unwrap();
    let answers = records_of(&landed, responses);
    let decided = records_of(&read_until(&tb.kafka, ROUTING_DECISIONS, Duration::from_secs(10), |l| l.len() >= 45).await.unwrap(), decisions);
    assert_eq!(answers.len(), 45, "one final answer per request");
    assert_eq!(decided.len(), 45, "one decision per request");
    let by_id: HashMap<_, _> = decided.iter().map(|d| (d.request_id, d)).collect();
    let site_of: HashMap<_, _> = batch.iter().map(|r| (r.request_id, r.site_id.as_str())).collect();
    let mut tau: HashMap<&str, Vec<f64>> = HashMap::new();
    for a in &answers {
        let d = by_id.get(&a.request_id).expect("the answer's request was decided");
        assert_eq!(d.policy_name, "funcdyn");
        assert_eq!(a.origin == Origin::Cloud, d.placement == Placement::Cloud, "answers come from where the router placed them");
        assert!(!a.network_down_fallback);
        let site = site_of[&a.request_id];
        assert_eq!(d.network.conservative_default, site == "S003", "{site}: {:?}", d.reason_detail);
        if site == "S003" {
            assert!(d.reason_detail.as_deref().unwrap_or_default().contains("no telemetry"), "{:?}", d.reason_detail);
        }
        tau.entry(site).or_default().push(d.threshold);
    }
    let mean = |s: &str| tau[s].iter().sum::<f64>() / tau[s].len() as f64;
    assert!(mean("S001") > mean("S002"), "a good link gets a higher threshold than a bad one: {} vs {}", mean("S001"), mean("S002"));

    // Switch to all-cloud through the compacted update topic.
    let bundle = RouterBundle::load(&repo("services/router/bundle")).unwrap();
    let update = PolicyUpdate {
        channel: ACTIVE_CHANNEL.into(),
        version: "test-all-cloud".into(),
        policy_name: "all-cloud".into(),
        params_json: serde_json::to_string(bundle.policy("all-cloud").unwrap()).unwrap(),
        weights_uri: None,
        scorer_version: bundle.scorer.version.clone(),
        scorer_uri: None,
        model_version: bundle.model_version.clone(),
        published_at: TimestampMillis::now(),
    };
    producer.send(POLICY_UPDATES, &update).await.await.unwrap();
    let mut switched = false;
    for round in 0..30 {
        let more = requests(3, 100 + round, &["S001"]);
        for r in &more {
            producer.send(TOOL_REQUESTS, r).await.await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let all = records_of(&read_until(&tb.kafka, ROUTING_DECISIONS, Duration::from_secs(2), |_| false).await.unwrap(), decisions);
        if all.iter().any(|d| d.policy_version == "test-all-cloud") {
            assert!(all.iter().filter(|d| d.policy_version == "test-all-cloud").all(|d| d.placement == Placement::Cloud));
            switched = true;
            break;
        }
    }
    assert!(switched, "the router never applied the policy update");
    stop.cancel();
    for r in running {
        let report = r.await.unwrap().unwrap();
        assert_eq!(report.dead_lettered, 0);
    }
    assert!(follower.await.unwrap().unwrap() >= 2);

    // A restarted router begins with its configured policy and catches up.
    let stop = CancellationToken::new();
    let (restarted, follower) = start_router(&tb, "funcdyn", &stop).await;
    assert_eq!(restarted.active(), ("all-cloud", "test-all-cloud"));
    stop.cancel();
    follower.await.unwrap().unwrap();
    tb.broker.stop().await;
}
