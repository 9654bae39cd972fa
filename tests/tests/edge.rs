//! The edge agent stage on a real broker: requests in, scored proposals out,
//! bad input dead-lettered, model updates hot-reloaded (and refused when the
//! weights do not match their checksum).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::PathBuf;
use std::time::Duration;

use netgpt_core::AnyRecord;
use netgpt_core::avro::TimestampMillis;
use netgpt_core::bus::Producer;
use netgpt_core::metrics::Metrics;
use netgpt_core::records::{DeadLetterKind, ModelUpdate, ToolRequest};
use netgpt_core::stage::run_stage;
use netgpt_core::topics::{DEAD_LETTER, EDGE_PROPOSALS, MODEL_UPDATES, TOOL_REQUESTS};
use netgpt_edge::catalog::ToolCatalog;
use netgpt_edge::stage::{EdgeConfig, EdgeStage, sha256_file};
use netgpt_tests::{Landed, TestBroker, read_until};
use tokio_util::sync::CancellationToken;

fn checkpoint() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../services/edge/checkpoint"))
}

fn requests(n: usize, seed: u64) -> Vec<ToolRequest> {
    netgpt_tests::requests(n, seed, &["S001"])
}

fn proposals(landed: &[Landed]) -> Vec<netgpt_core::records::EdgeProposal> {
    landed
        .iter()
        .filter_map(|l| match &l.record {
            Ok(AnyRecord::EdgeProposal(p)) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_stage_proposes_validates_dead_letters_and_hot_reloads() {
    let tb = TestBroker::start().await.unwrap();
    let cfg = EdgeConfig { model_dir: checkpoint(), model_version: "sft-base".into(), max_prompt_bytes: 512, constrained_decoding: false, gguf_file: Default::default() };
    let stage = EdgeStage::load(&cfg).unwrap();
    let stop = CancellationToken::new();
    let (kafka, token) = (tb.kafka.clone(), stop.clone());
    let running = tokio::spawn(async move { run_stage(stage, &kafka, "test.edge", Metrics::new(), token).await });

    let producer = Producer::new(&tb.kafka).unwrap();
    let batch = requests(20, 1);
    for r in &batch {
        producer.send(TOOL_REQUESTS, r).await.await.unwrap();
    }
    let mut oversized = requests(1, 2).remove(0);
    oversized.prompt = "check site S001 ".repeat(100);
    producer.send(TOOL_REQUESTS, &oversized).await.await.unwrap();

    let landed = read_until(&tb.kafka, EDGE_PROPOSALS, Duration::from_secs(60), |l| proposals(l).len() >= 20).await.unwrap();
    let got = proposals(&landed);
    assert_eq!(got.len(), 20);
    let catalog = ToolCatalog::embedded();
    let by_id: std::collections::HashMap<_, _> = got.iter().map(|p| (p.request.request_id, p)).collect();
    for r in &batch {
        let p = by_id.get(&r.request_id).expect("every request gets a proposal");
        assert_eq!(p.request, *r, "the proposal carries its request unchanged");
        assert_eq!(p.model_version, "sft-base");
        let check = catalog.check_call(&p.call_json);
        assert_eq!(p.schema_valid, check.valid, "{}", p.call_json);
        assert_eq!(p.schema_error, check.error);
        assert!(p.min_logprob <= p.mean_logprob && p.mean_logprob <= 0.0);
        assert!(p.mean_entropy >= 0.0 && p.output_tokens > 0 && p.edge_latency_ms > 0.0);
        assert!(p.unknown_word_share.is_some_and(|u| (0.0..=1.0).contains(&u)), "{:?}", p.unknown_word_share);
    }
    let dead = read_until(&tb.kafka, DEAD_LETTER, Duration::from_secs(10), |l| !l.is_empty()).await.unwrap();
    match &dead[0].record {
        Ok(AnyRecord::DeadLetter(d)) => {
            assert_eq!(d.error_kind, DeadLetterKind::Rejected);
            assert!(d.error.contains("bytes"), "{}", d.error);
        }
        other => panic!("{other:?}"),
    }

    // A corrupt update (checksum mismatch) is refused; the next good one loads.
    let sha = sha256_file(&checkpoint().join("model.safetensors")).unwrap();
    let update = |version: &str, sha: &str| ModelUpdate {
        channel: "edge".into(),
        version: version.into(),
        parent_version: Some("sft-base".into()),
        weights_uri: format!("file://{}", checkpoint().display()),
        weights_sha256: sha.into(),
        metrics_json: "{}".into(),
        published_at: TimestampMillis::now(),
    };
    producer.send(MODEL_UPDATES, &update("corrupt", &"0".repeat(64))).await.await.unwrap();
    producer.send(MODEL_UPDATES, &update("v2", &sha)).await.await.unwrap();
    let mut seen_v2 = false;
    for round in 0..20 {
        for r in requests(3, 10 + round) {
            producer.send(TOOL_REQUESTS, &r).await.await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let landed = read_until(&tb.kafka, EDGE_PROPOSALS, Duration::from_secs(2), |_| false).await.unwrap();
        let versions: Vec<String> = proposals(&landed).into_iter().map(|p| p.model_version).collect();
        assert!(!versions.iter().any(|v| v == "corrupt"), "a corrupt model was loaded");
        if versions.iter().any(|v| v == "v2") {
            seen_v2 = true;
            break;
        }
    }
    assert!(seen_v2, "the edge never switched to the published model");
    stop.cancel();
    let report = running.await.unwrap().unwrap();
    assert_eq!(report.dead_lettered, 1);

    // A restarted edge starts from the shipped model and catches up with the
    // newest update on the compacted topic before serving.
    let mut restarted = EdgeStage::load(&cfg).unwrap();
    assert_eq!(restarted.model_version(), "sft-base");
    restarted.catch_up(&tb.kafka).await.unwrap();
    assert_eq!(restarted.model_version(), "v2");
    tb.broker.stop().await;
}
