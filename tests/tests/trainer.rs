//! The trainer against a real broker: a corrupted candidate is rejected by the
//! gate and nothing changes downstream; an accepted one is stored and
//! announced with the router policy refitted for it, and edge and router,
//! catching up from the broker, switch together.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::Duration;

use netgpt_archive::store::Lake;
use netgpt_core::bus::Producer;
use netgpt_core::records::EdgeProposal;
use netgpt_core::topics::{MODEL_UPDATES, POLICY_UPDATES};
use netgpt_dataset::engine::LogEngine;
use netgpt_edge::agent::EdgeAgent;
use netgpt_edge::stage::{EdgeConfig, EdgeStage};
use netgpt_router::bundle::RouterBundle;
use netgpt_router::stage::{RouterStage, SiteTable};
use netgpt_sim::offload::{OffloadLogSpec, World, write};
use netgpt_tests::{TestBroker, read_topic, repo_root};
use netgpt_trainer::TrainerConfig;
use netgpt_trainer::gate::{GateConfig, judge, measure};
use netgpt_trainer::publish::{KafkaPublisher, RoundSetup, conclude, registry, rollback_pair};
use netgpt_trainer::refit::{RefitConfig, load_label_rows};
use netgpt_trainer::rl::trainable_copy;
use netgpt_trainer::round::RoundReport;

/// A proposal of `model_version` (the router's choice of policy depends on nothing else here).
fn proposal(model_version: &str) -> EdgeProposal {
    use rand::SeedableRng;
    EdgeProposal { model_version: model_version.into(), ..netgpt_core::samples::edge_proposal(&mut rand::rngs::StdRng::seed_from_u64(1)) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_candidate_changes_nothing_and_an_accepted_one_switches_router_and_edge_together() {
    let tb = TestBroker::start().await.unwrap();
    let dir = std::env::temp_dir().join(format!("netgpt-trainer-test-{}", uuid::Uuid::new_v4().simple()));
    let lake = Lake::open(&dir.display().to_string(), &Default::default()).unwrap();
    let mut settings = netgpt_router::RouterSettings::defaults();
    settings.router.bundle_dir = repo_root().join("services/router/bundle");
    // Logs with cloud answers (simulated), and their datasets.
    let world = World::load(settings.clone(), netgpt_cloud::CloudConfig::defaults().simulated).unwrap();
    write(&OffloadLogSpec { requests: 4000, ..Default::default() }, &world, &lake, false).await.unwrap();
    netgpt_dataset::build::build(&LogEngine::open(&lake).await.unwrap(), &lake, netgpt_dataset::sql::DATASETS, None, false).await.unwrap();

    let cfg = TrainerConfig { gate: GateConfig { per_tier: 60, ..Default::default() }, refit: RefitConfig { proposals: 300, min_rows: 100, seed: 1 }, ..Default::default() };
    let setup = RoundSetup { cfg: &cfg, router: &settings, current_bundle: RouterBundle::load(&settings.router.bundle_dir).ok(), constrained: true, show_progress: false };
    let publisher = KafkaPublisher(Producer::new(&tb.kafka).unwrap());
    let checkpoint = repo_root().join("services/edge/checkpoint");
    let mut current = EdgeAgent::load(&checkpoint, "sft-base").unwrap();
    current.constrained = true;
    let before = measure(&mut current, true, &cfg.gate).unwrap();

    // A corrupted candidate: one block's weights blown up.
    let mut broken = trainable_copy(&current, "candidate").unwrap();
    for (name, var) in broken.varmap.data().lock().unwrap().iter() {
        if name.starts_with("block1.qkv") || name.starts_with("block1.ff1") {
            var.set(&(var.as_tensor() * 50.0).unwrap()).unwrap();
        }
    }
    let report = RoundReport { gate: judge(before.clone(), measure(&mut broken, true, &cfg.gate).unwrap(), &cfg.gate), ..Default::default() };
    assert!(!report.gate.accepted, "the gate let a corrupted model through: {:?}", report.gate.after);
    let out = conclude(&setup, &lake, "sft-base", Some(broken), report, load_label_rows(&lake).await.unwrap(), &publisher).await.unwrap();
    assert!(out.published.is_none() && !out.report.gate.reasons.is_empty());
    assert!(!dir.join("models").exists() && !dir.join("router").exists(), "a rejected model or bundle was stored");
    assert!(registry(&lake).await.unwrap().is_empty());
    for topic in [MODEL_UPDATES, POLICY_UPDATES] {
        assert!(read_topic(&tb.kafka, topic, 1, Duration::from_secs(3)).await.unwrap().is_empty(), "something was announced on {topic}");
    }

    // An accepted candidate (a copy of the serving model stands in for an RL result; the RL is tested in netgpt-trainer).
    let mut same = trainable_copy(&current, "candidate").unwrap();
    let report = RoundReport { gate: judge(before, measure(&mut same, true, &cfg.gate).unwrap(), &cfg.gate), ..Default::default() };
    assert!(report.gate.accepted, "{:?}", report.gate.reasons);
    let out = conclude(&setup, &lake, "sft-base", Some(same), report, load_label_rows(&lake).await.unwrap(), &publisher).await.unwrap();
    let (policy, model) = out.published.expect("an accepted round publishes");
    assert_eq!(policy.model_version, model.version, "the policy names the model it was fitted for");
    assert_eq!(model.parent_version.as_deref(), Some("sft-base"));
    assert!(out.report.refit.is_some());
    assert_eq!(registry(&lake).await.unwrap().len(), 1);

    // Edge and router pick the pair up from the broker, as restarted stages do.
    let mut edge = EdgeStage::load(&EdgeConfig { model_dir: checkpoint, model_version: "sft-base".into(), max_prompt_bytes: 2048, constrained_decoding: true, gguf_file: Default::default() }).unwrap();
    edge.catch_up(&tb.kafka).await.unwrap();
    assert_eq!(edge.model_version(), model.version);
    let mut router = RouterStage::load(settings.clone(), SiteTable::default()).unwrap();
    let old_policy = router.active().1.to_string();
    router.catch_up(&tb.kafka).await.unwrap();
    assert_eq!(router.decide(&proposal(&model.version)).policy_version, policy.version, "new model, new policy");
    assert_eq!(router.decide(&proposal("sft-base")).policy_version, old_policy, "in-flight proposals of the old model keep its policy");

    // Rolling back from the first published model goes to the configured one, which the registry does not hold.
    assert!(rollback_pair(&registry(&lake).await.unwrap()).unwrap().is_none());
    std::fs::remove_dir_all(&dir).ok();
    tb.broker.stop().await;
}

/// With the lake on S3 (a real S3-compatible server, moto), what the trainer
/// stores is what the edge and router load: both fetch the content-addressed
/// folders through object_store and switch; an update naming a folder that is
/// not there changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pair_published_to_an_s3_lake_is_fetched_and_served_by_edge_and_router() {
    let s3 = netgpt_tests::S3Server::start().await.unwrap();
    s3.create_bucket("netgpt-lake").await.unwrap();
    let lake = Lake::open("s3://netgpt-lake/site-a", &s3.options()).unwrap();
    let cache = std::env::temp_dir().join(format!("netgpt-fetch-test-{}", uuid::Uuid::new_v4().simple()));
    let remote = netgpt_core::fetch::RemoteFolders { options: s3.options(), cache: cache.clone() };
    let checkpoint = repo_root().join("services/edge/checkpoint");
    let bundle_dir = repo_root().join("services/router/bundle");

    // A "new" model: the shipped one under a content-addressed name, and a bundle fitted for it.
    let agent = EdgeAgent::load(&checkpoint, "sft-base").unwrap();
    let model = netgpt_trainer::round::store_model(&lake, &agent, "sft-base", "{}".into()).await.unwrap();
    assert!(model.weights_uri.starts_with("s3://netgpt-lake/site-a/models/edge/"), "{}", model.weights_uri);
    let bundle = RouterBundle { version: "router-s3test".into(), model_version: model.version.clone(), ..RouterBundle::load(&bundle_dir).unwrap() };
    let bundle_uri = netgpt_trainer::refit::store_bundle(&lake, &bundle, &netgpt_router::bundle::load_proposals(&bundle_dir).unwrap()).await.unwrap();
    let policy = bundle.policy_update("funcdyn", Some(&bundle_uri)).unwrap();

    let mut settings = netgpt_router::RouterSettings::defaults();
    settings.router.bundle_dir = bundle_dir;
    let mut router = RouterStage::load(settings.clone(), SiteTable::default()).unwrap().with_remote(remote.clone());
    let mut edge = EdgeStage::load(&EdgeConfig { model_dir: checkpoint, model_version: "sft-base".into(), max_prompt_bytes: 2048, constrained_decoding: true, gguf_file: Default::default() }).unwrap().with_remote(remote);

    // A model update whose folder is missing: refused, the old model keeps serving.
    let missing = netgpt_core::records::ModelUpdate { version: "edge-000000000000".into(), weights_uri: format!("{}-missing", model.weights_uri), ..model.clone() };
    edge.reload(&missing).await;
    assert_eq!(edge.model_version(), "sft-base");

    router.receive_update(policy.clone()).await;
    edge.reload(&model).await;
    assert_eq!(edge.model_version(), model.version, "the edge loads the model from S3");
    assert_eq!(router.active().1, policy.version, "the router loads the bundle from S3");
    assert_eq!(router.decide(&proposal(&model.version)).policy_version, policy.version);
    assert!(cache.read_dir().unwrap().count() >= 2, "both folders were copied into the cache");

    // A damaged cached copy is fetched again rather than refused for ever.
    let cached_with = |file: &str| cache.read_dir().unwrap().flatten().map(|e| e.path()).find(|p| p.join(file).exists()).unwrap().join(file);
    std::fs::write(cached_with(netgpt_edge::agent::WEIGHTS_FILE), b"damaged").unwrap();
    std::fs::write(cached_with(netgpt_router::bundle::BUNDLE_FILE), b"damaged").unwrap();
    let mut another = EdgeStage::load(&EdgeConfig { model_dir: repo_root().join("services/edge/checkpoint"), model_version: "sft-base".into(), max_prompt_bytes: 2048, constrained_decoding: true, gguf_file: Default::default() })
        .unwrap()
        .with_remote(netgpt_core::fetch::RemoteFolders { options: s3.options(), cache: cache.clone() });
    another.reload(&model).await;
    assert_eq!(another.model_version(), model.version);
    let mut another_router = RouterStage::load(settings, SiteTable::default()).unwrap().with_remote(netgpt_core::fetch::RemoteFolders { options: s3.options(), cache: cache.clone() });
    another_router.receive_update(policy.clone()).await;
    assert_eq!(another_router.active().1, policy.version);
    std::fs::remove_dir_all(&cache).ok();
}
