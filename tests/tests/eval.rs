//! The in-process evaluation on the real parts: `rl-rounds` serves traffic
//! with the real edge model and router, trains on the logs it wrote, and
//! serves the next round with exactly the pair the trainer stored; the
//! routing experiments (frontier, dynamic, theorem, scorer-refresh), small,
//! hold the invariants their results rest on and write their results.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use netgpt_edge::stage::EdgeConfig;
use netgpt_eval::Inputs;
use netgpt_eval::rl_rounds::{Objective, RlRoundsSpec, run, to_csv};
use netgpt_tests::repo_root;
use netgpt_trainer::TrainerConfig;
use netgpt_trainer::gate::GateConfig;
use netgpt_trainer::refit::RefitConfig;
use netgpt_trainer::rl::RlConfig;

/// The shipped edge model and router bundle, default network, cost and cloud.
fn inputs(trainer: TrainerConfig) -> Inputs {
    let mut router = netgpt_router::RouterSettings::defaults();
    router.router.bundle_dir = repo_root().join("services/router/bundle");
    Inputs {
        edge: EdgeConfig { model_dir: repo_root().join("services/edge/checkpoint"), model_version: "sft-base".into(), max_prompt_bytes: 2048, constrained_decoding: true, gguf_file: Default::default() },
        router,
        cloud: netgpt_cloud::CloudConfig::defaults().simulated,
        trainer,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rl_round_serves_the_next_traffic_with_the_pair_it_stored() {
    let work = std::env::temp_dir().join(format!("netgpt-rl-rounds-{}", uuid::Uuid::new_v4().simple()));
    // A small round: the point is the wiring, not the gain.
    let inputs = inputs(TrainerConfig {
        rl: RlConfig { iterations: 2, ..Default::default() },
        gate: GateConfig { per_tier: 60, ..Default::default() },
        refit: RefitConfig { proposals: 300, min_rows: 100, seed: 1 },
        ..Default::default()
    });
    let spec = RlRoundsSpec {
        rounds: 2,
        // Held-out phrasings: the SFT model is weaker on them, so more requests reach the cloud.
        requests: 2_500,
        seeds: vec![3],
        objectives: vec![Objective::SftAnchored],
        policy: "funcdyn".into(),
        split: "held-out".into(),
        work_dir: work.clone(),
        show_progress: false,
        parallel: 1,
    };
    let mut seen = 0;
    let rows = run(&spec, &inputs, |_| seen += 1).await.unwrap();
    assert_eq!((rows.len(), seen), (3, 3), "one row per traffic round");
    assert_eq!(rows.iter().map(|r| r.round).collect::<Vec<_>>(), [0, 1, 2]);
    // Every decodable request was answered once (0.1 % arrive undecodable; replays are not counted twice).
    for r in &rows {
        assert!(r.traffic.answers >= 2_470 && r.traffic.answers <= 2_500, "{} answers", r.traffic.answers);
        assert!(r.traffic.offload_rate > 0.0 && r.traffic.offload_rate < 1.0 && r.traffic.explored_rate <= r.traffic.offload_rate, "{r:?}");
        assert!(r.traffic.schema_valid >= 0.99 && r.traffic.task_success > 0.5, "{r:?}");
    }
    // One round's logs hold too few cloud answers for a router refit: no RL is wasted on them.
    assert_eq!((rows[0].verdict.as_deref(), rows[0].rl_targets), (Some("skipped"), None), "{:?}", rows[0]);
    assert_eq!(rows[1].model_version, "sft-base");
    // Two rounds' logs do; the trainer round runs and its verdict decides what serves round 2.
    let (trained, next) = (&rows[1], &rows[2]);
    assert!(trained.rl_targets.is_some_and(|t| t >= 64) && trained.verdict.as_deref() != Some("skipped"), "{trained:?}");
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

#[test]
fn the_routing_experiments_hold_their_invariants_and_write_their_results() {
    use netgpt_eval::{dynamic, frontier, lab::Lab, report, scorer_refresh, theorem};
    let out = std::env::temp_dir().join(format!("netgpt-experiments-{}", uuid::Uuid::new_v4().simple()));
    let lab = Lab::load(&inputs(TrainerConfig::default())).unwrap();
    let data = vec![lab.proposals(5, 400, "held-out", false).unwrap()];
    let doc = out.join("results.md");

    // Frontier: the bounds are where they must be, and no policy beats the oracle's utility by more than noise.
    let spec = frontier::FrontierSpec { seeds: vec![5], proposals: 400, kappas: vec![1.0, 4.0], out: out.join("frontier"), show_progress: false, ..Default::default() };
    let rows = frontier::run(&lab, &spec, &data).unwrap();
    let at = |cell: &str, policy: &str| rows.iter().find(|r| r.regime == cell && r.schedule == "flat" && r.policy == policy && r.kappa == 1.0 && (r.knob == 1.0 || !["fixed", "funcdyn", "policynet", "oracle"].contains(&policy))).unwrap();
    for cell in ["GOOD", "MID", "BAD"] {
        assert_eq!(at(cell, "all-edge").offload, 0.0);
        assert_eq!(at(cell, "all-cloud").offload, 1.0);
        assert!((at(cell, "all-cloud").success - lab.q_cloud()).abs() < 1e-9);
        for p in ["fixed", "routellm", "funcdyn", "policynet", "all-edge", "all-cloud"] {
            assert!(at(cell, p).utility <= at(cell, "oracle").utility + 0.01, "{cell}: {p} {} vs oracle {}", at(cell, p).utility, at(cell, "oracle").utility);
        }
    }
    // A worse link costs more per fallback, so the network-aware controllers fall back less.
    assert!(at("BAD", "funcdyn").offload <= at("GOOD", "funcdyn").offload);
    assert!(at("BAD", "oracle").offload < at("GOOD", "oracle").offload);
    let section = frontier::summarise(&rows, &spec, "test").unwrap();
    report::write_section(&doc, "frontier", &section).unwrap();
    assert!(spec.out.join("frontier_cost.svg").exists() && spec.out.join("frontier_latency.svg").exists());

    // Dynamic: the clairvoyant bound is above every router, and the hindsight τ above the deployable one.
    let spec = dynamic::DynamicSpec { seeds: vec![5], proposals: 400, duration_s: 600.0, window_s: 60.0, out: out.join("dynamic"), show_progress: false, ..Default::default() };
    let rows = dynamic::run(&lab, &spec, &data).unwrap();
    let whole = |p: &str| dynamic::utility_ratios(&rows, &[5], p)[0];
    assert!((whole("best-fixed-hindsight") - 1.0).abs() < 1e-12);
    for p in dynamic::POLICIES {
        assert!(whole(p) <= whole("clairvoyant") + 1e-12, "{p} above the clairvoyant bound");
    }
    assert!(whole("fixed") <= 1.0 + 1e-12, "the deployable τ beat the best τ in hindsight");
    report::write_section(&doc, "dynamic", &dynamic::summarise(&rows, &spec, "test").unwrap()).unwrap();

    // Theorem: under the calibrated premise τ* is unique, on the closed form, and moves the right way.
    let spec = theorem::TheoremSpec { seeds: vec![5], proposals: 400, points: 12, out: out.join("theorem"), ..Default::default() };
    let rows = theorem::run(&lab, &spec, &data);
    assert!(rows.iter().all(|r| r.local_maxima == 1));
    assert!(rows.iter().all(|r| (r.tau_star - r.closed_form).abs() <= 0.0015), "τ* off the closed form");
    assert_eq!(theorem::sign_violations(&rows, |r| r.tau_star), 0);
    let rtt: Vec<f64> = rows.iter().filter(|r| r.sweep == "rtt").map(|r| r.tau_star).collect();
    assert!(rtt[0] > rtt[rtt.len() - 1], "τ* did not fall with RTT: {rtt:?}");
    report::write_section(&doc, "theorem", &theorem::summarise(&lab, &rows, &data, &spec, "test").unwrap()).unwrap();

    // Scorer refresh: metrics are measured for both scorers in every later period and scenario.
    let spec = scorer_refresh::ScorerRefreshSpec { seeds: vec![5], periods: 3, requests: 300, out: out.join("scorer-refresh"), show_progress: false, ..Default::default() };
    let rows = scorer_refresh::run(&lab, &spec).unwrap();
    assert_eq!(rows.len(), 2 * 2 * 2, "scenarios × later periods × scorers");
    assert!(rows.iter().all(|r| (0.0..=1.0).contains(&r.routing_accuracy) && (0.0..=1.0).contains(&r.ece)));
    report::write_section(&doc, "scorer-refresh", &scorer_refresh::summarise(&rows, &spec, "test").unwrap()).unwrap();

    let text = std::fs::read_to_string(&doc).unwrap();
    for name in ["frontier", "dynamic", "theorem", "scorer-refresh"] {
        assert!(report::section(&text, name).is_some_and(|s| s.contains("Command: `test`")), "section {name}");
    }
    std::fs::remove_dir_all(&out).unwrap();
}
