//! The in-process evaluation on the real parts: `rl-rounds` serves traffic
//! with the real edge model and router, trains on the logs it wrote, and
//! serves the next round with exactly the pair the trainer stored.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use netgpt_edge::stage::EdgeConfig;
use netgpt_eval::rl_rounds::{Inputs, Objective, RlRoundsSpec, run, to_csv};
use netgpt_tests::repo_root;
use netgpt_trainer::TrainerConfig;
use netgpt_trainer::gate::GateConfig;
use netgpt_trainer::refit::RefitConfig;
use netgpt_trainer::rl::RlConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rl_round_serves_the_next_traffic_with_the_pair_it_stored() {
    let work = std::env::temp_dir().join(format!("netgpt-rl-rounds-{}", uuid::Uuid::new_v4().simple()));
    let mut router = netgpt_router::RouterSettings::defaults();
    router.router.bundle_dir = repo_root().join("services/router/bundle");
    let inputs = Inputs {
        edge: EdgeConfig { model_dir: repo_root().join("services/edge/checkpoint"), model_version: "sft-base".into(), max_prompt_bytes: 2048, constrained_decoding: true },
        router,
        cloud: netgpt_cloud::CloudConfig::defaults().simulated,
        // A small round: the point is the wiring, not the gain.
        trainer: TrainerConfig {
            rl: RlConfig { iterations: 2, ..Default::default() },
            gate: GateConfig { per_tier: 60, ..Default::default() },
            refit: RefitConfig { proposals: 300, min_rows: 100, seed: 1 },
            ..Default::default()
        },
    };
    let spec = RlRoundsSpec {
        rounds: 2,
        // Held-out phrasings: the SFT model is weaker on them, so more requests reach the cloud.
        requests: 1_500,
        seeds: vec![3],
        objectives: vec![Objective::SftAnchored],
        policy: "funcdyn".into(),
        split: "held-out".into(),
        work_dir: work.clone(),
        show_progress: false,
    };
    let mut seen = 0;
    let rows = run(&spec, &inputs, |_| seen += 1).await.unwrap();
    assert_eq!((rows.len(), seen), (3, 3), "one row per traffic round");
    assert_eq!(rows.iter().map(|r| r.round).collect::<Vec<_>>(), [0, 1, 2]);
    // Every decodable request was answered once (0.1 % arrive undecodable; replays are not counted twice).
    for r in &rows {
        assert!(r.answers >= 1_480 && r.answers <= 1_500, "{} answers", r.answers);
        assert!(r.offload_rate > 0.0 && r.offload_rate < 1.0 && r.explored_rate <= r.offload_rate, "{r:?}");
        assert!(r.schema_valid >= 0.99 && r.task_success > 0.5, "{r:?}");
    }
    // One round's logs hold too few cloud answers for a router refit: no RL is wasted on them.
    assert_eq!((rows[0].verdict.as_deref(), rows[0].rl_targets), (Some("skipped"), None), "{:?}", rows[0]);
    assert_eq!(rows[1].model_version, "sft-base");
    // Two rounds' logs do; the trainer round runs and its verdict decides what serves round 2.
    let (trained, next) = (&rows[1], &rows[2]);
    assert!(trained.rl_targets.unwrap() >= 64 && trained.verdict.as_deref() != Some("skipped"), "{trained:?}");
    assert!(next.verdict.is_none() && next.rl_targets.is_none(), "no trainer round after the last traffic");
    let lake = work.join("sft-anchored-seed3");
    if trained.verdict.as_deref() == Some("accepted") {
        assert_ne!(next.model_version, trained.model_version, "an accepted round is served next");
        assert!(lake.join("models/edge").join(&next.model_version).exists(), "the served model is the stored one");
        assert!(next.policy_version.ends_with("/funcdyn") && next.policy_version != trained.policy_version);
    } else {
        assert_eq!(next.model_version, trained.model_version, "a rejected round changes nothing: {:?}", trained.reasons);
        assert!(!lake.join("models").exists());
    }
    let csv = to_csv(&rows);
    println!("{csv}");
    assert_eq!(csv.lines().count(), 4);
    std::fs::remove_dir_all(&work).ok();
}
