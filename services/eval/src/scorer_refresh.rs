//! `scorer-refresh`: routing accuracy and calibration with and without a
//! periodic scorer refit, while the traffic drifts.
//!
//! The traffic moves period by period from the phrasings the edge model was
//! trained on to phrasings it never saw (the held-out templates' share grows
//! from `start_held_out` to 1), so the relation between the proposal features and
//! correctness shifts. Each period, a random share of requests gets a cloud
//! answer to label it (exploration and fallbacks; a uniform sample keeps it
//! unbiased). The *static* scorer is fitted once on period 0's labels; the
//! *refreshed* one is refitted each period on the previous period's labels,
//! the same way (logistic ranker plus isotonic map). Both route period p's
//! requests with the calibrated-score optimum τ = q_c − ΔC(S) on mixed
//! links; routing accuracy is the share of placements equal to the best
//! placement in hindsight (keep the edge answer exactly when it is right,
//! unless the cloud is not worth its cost either way).

use std::path::PathBuf;

use netgpt_core::avro::TimestampMillis;
use netgpt_router::fit::LabelledProposal;
use netgpt_router::scorer::{CalibrationMethod, CalibrationReport, Labelled, Scorer};
use netgpt_sim::traffic::RequestSource;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::lab::Lab;
use crate::plot::{Mark, Panel, Point, Series};
use crate::report::{csv, table};
use crate::stats::Interval;

#[derive(Debug, Clone)]
pub struct ScorerRefreshSpec {
    pub seeds: Vec<u64>,
    pub periods: usize,
    /// Requests per period (all proposed by the real edge model).
    pub requests: usize,
    /// Share of a period's requests that get a cloud label.
    pub label_rate: f64,
    /// Held-out phrasings' share in period 0 (it grows linearly to 1 in the last period).
    pub start_held_out: f64,
    pub out: PathBuf,
    pub show_progress: bool,
}

impl Default for ScorerRefreshSpec {
    fn default() -> Self {
        Self { seeds: vec![1, 2, 3], periods: 4, requests: 1_200, label_rate: 0.4, start_held_out: 0.2, out: PathBuf::from("results/scorer-refresh"), show_progress: true }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RefreshRow {
    /// Where the static scorer was fitted: period 0 with a share of held-out phrasings, or on familiar ones only.
    pub scenario: String,
    pub seed: u64,
    pub period: usize,
    /// Share of requests from held-out phrasings.
    pub held_out_share: f64,
    /// static or refreshed.
    pub scorer: String,
    pub edge_accuracy: f64,
    pub ece: f64,
    pub brier: f64,
    pub auroc: f64,
    pub routing_accuracy: f64,
    pub utility: f64,
    pub offload: f64,
}

pub const ARMS: [&str; 2] = ["static", "refreshed"];
/// The static scorer fitted on period 0 with its share of held-out phrasings ("mixed start"), or on familiar phrasings only.
pub const SCENARIOS: [&str; 2] = ["mixed start", "familiar start"];

/// Fits a scorer on labelled proposals: 60 % for the ranker, 40 % for the isotonic map.
fn fit(version: &str, labelled: &[Labelled]) -> Scorer {
    let cut = labelled.len() * 3 / 5;
    Scorer::fit(version, &labelled[..cut], &labelled[cut..], CalibrationMethod::Isotonic)
}

pub fn run(lab: &Lab, spec: &ScorerRefreshSpec) -> anyhow::Result<Vec<RefreshRow>> {
    anyhow::ensure!(spec.periods >= 2 && spec.requests >= 50 && (0.0..=1.0).contains(&spec.label_rate) && (0.0..=1.0).contains(&spec.start_held_out), "scorer-refresh needs ≥ 2 periods, ≥ 50 requests per period, and a label rate and start share in [0, 1]");
    let (train, held_out) = (RequestSource::new("train", 8)?, RequestSource::new("held-out", 8)?);
    let states = lab.states(4096, 0x5c0e, &[], &lab.schedules());
    let mut rows = Vec::new();
    for &seed in &spec.seeds {
        let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(6_007).wrapping_add(3));
        let period = |share: f64, rng: &mut StdRng| -> anyhow::Result<(f64, Vec<LabelledProposal>)> {
            let requests: Vec<_> = (0..spec.requests).map(|_| if rng.random_bool(share.clamp(0.0, 1.0)) { &held_out } else { &train }.request(rng, TimestampMillis(0))).collect();
            Ok((share, netgpt_sim::edge::labelled_proposals(&lab.agent, &requests, spec.show_progress)?))
        };
        // Periods 1.. are shared by both scenarios; period 0 differs.
        let mut later = Vec::new();
        for p in 1..spec.periods {
            later.push(period(spec.start_held_out + (1.0 - spec.start_held_out) * p as f64 / (spec.periods - 1) as f64, &mut rng)?);
        }
        for (scenario, first_share) in [(SCENARIOS[0], spec.start_held_out), (SCENARIOS[1], 0.0)] {
            let periods: Vec<(f64, Vec<LabelledProposal>)> = std::iter::once(period(first_share, &mut rng)?).chain(later.iter().cloned()).collect();
            rows.extend(measure(lab, spec, scenario, seed, &periods, &states, &mut rng));
        }
    }
    Ok(rows)
}

/// The static and refreshed scorers over one scenario's periods.
fn measure(lab: &Lab, spec: &ScorerRefreshSpec, scenario: &str, seed: u64, periods: &[(f64, Vec<LabelledProposal>)], states: &[(netgpt_router::SiteState, i64)], rng: &mut StdRng) -> Vec<RefreshRow> {
    let cost = &lab.inputs.router.cost;
    let q_c = lab.q_cloud();
    let mut rows = Vec::new();
    {
        let labels = |ps: &[LabelledProposal], rng: &mut StdRng| -> Vec<Labelled> { ps.iter().filter(|_| rng.random_bool(spec.label_rate)).map(|p| (p.features.clone(), p.correct)).collect() };
        let static_scorer = fit("static", &labels(&periods[0].1, rng));
        for p in 1..spec.periods {
            let refreshed = fit("refreshed", &labels(&periods[p - 1].1, rng));
            let (share, proposals) = &periods[p];
            for (arm, scorer) in [("static", &static_scorer), ("refreshed", &refreshed)] {
                let pairs: Vec<(f64, bool)> = proposals.iter().map(|x| (scorer.score(&x.features), x.correct)).collect();
                let cal = CalibrationReport::of(&pairs);
                let (mut right_place, mut utility, mut offload) = (0usize, 0.0, 0usize);
                for (x, (score, correct)) in proposals.iter().zip(&pairs) {
                    let (state, at) = &states[rng.random_range(0..states.len())];
                    let delta = cost.fallback_cost(state, &x.shape, *at).delta;
                    let cloud_gain = q_c - delta;
                    let keep = x.features.schema_valid && *score >= cloud_gain.clamp(0.0, 1.0);
                    let edge_value = f64::from(u8::from(*correct));
                    let best_keep = edge_value >= cloud_gain;
                    right_place += usize::from(keep == best_keep);
                    utility += if keep { edge_value } else { cloud_gain };
                    offload += usize::from(!keep);
                }
                let n = proposals.len() as f64;
                rows.push(RefreshRow {
                    scenario: scenario.into(),
                    seed,
                    period: p,
                    held_out_share: *share,
                    scorer: arm.into(),
                    edge_accuracy: proposals.iter().filter(|x| x.correct).count() as f64 / n,
                    ece: cal.ece,
                    brier: cal.brier,
                    auroc: netgpt_edge::sft::auroc(&pairs),
                    routing_accuracy: right_place as f64 / n,
                    utility: utility / n,
                    offload: offload as f64 / n,
                });
            }
        }
    }
    rows
}

pub fn to_csv(rows: &[RefreshRow]) -> String {
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.scenario.clone(),
                r.seed.to_string(),
                r.period.to_string(),
                format!("{:.3}", r.held_out_share),
                r.scorer.clone(),
                format!("{:.6}", r.edge_accuracy),
                format!("{:.6}", r.ece),
                format!("{:.6}", r.brier),
                format!("{:.6}", r.auroc),
                format!("{:.6}", r.routing_accuracy),
                format!("{:.6}", r.utility),
                format!("{:.6}", r.offload),
            ]
        })
        .collect();
    csv(&["scenario", "seed", "period", "held_out_share", "scorer", "edge_accuracy", "ece", "brier", "auroc", "routing_accuracy", "utility", "offload"], &body)
}

fn metric(rows: &[RefreshRow], scenario: &str, arm: &str, period: Option<usize>, f: &dyn Fn(&RefreshRow) -> f64, seeds: &[u64]) -> Interval {
    // Per seed: the mean over the periods asked for.
    let per_seed: Vec<f64> = seeds
        .iter()
        .filter_map(|&s| {
            let v: Vec<f64> = rows.iter().filter(|r| r.scenario == scenario && r.seed == s && r.scorer == arm && period.is_none_or(|p| r.period == p)).map(f).collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        })
        .collect();
    Interval::of(&per_seed)
}

pub fn summarise(rows: &[RefreshRow], spec: &ScorerRefreshSpec, command: &str) -> anyhow::Result<String> {
    plots(rows, spec)?;
    let seeds = &spec.seeds;
    type Metric = (&'static str, fn(&RefreshRow) -> f64, usize);
    let metrics: [Metric; 5] = [("routing accuracy", |r| r.routing_accuracy, 3), ("utility", |r| r.utility, 4), ("ECE", |r| r.ece, 3), ("Brier", |r| r.brier, 4), ("AUROC", |r| r.auroc, 3)];
    let mut s = String::from("## Scorer refresh: routing with and without periodic refits\n\n");
    s.push_str(&format!(
        "Command: `{command}` · seeds {seeds:?} · {} periods of {} requests proposed by the real edge model; from period 1 on, the held-out phrasings' share grows from {:.0} % to 100 % (the same requests in both scenarios) · {:.0} % of each period's requests labelled by a cloud answer · the static scorer is fitted once on period 0's labels, the refreshed one each period on the previous period's · routing with τ = q_c − ΔC(S) on mixed links. Two scenarios differ only in period 0: *mixed start* ({:.0} % held-out phrasings, so the static scorer has seen the edge fail on new phrasings) and *familiar start* (only the phrasings the edge was trained on).\n\n",
        spec.periods,
        spec.requests,
        spec.start_held_out * 100.0 + (1.0 - spec.start_held_out) * 100.0 / (spec.periods - 1).max(1) as f64,
        spec.label_rate * 100.0,
        spec.start_held_out * 100.0,
    ));
    s.push_str("Raw rows: `scorer_refresh.csv`. Plot: `scorer_refresh.svg`.\n\n![scorer refresh](scorer-refresh/scorer_refresh.svg)\n\n");
    let mut header = vec!["scenario", "period", "held-out share", "edge accuracy", "scorer"];
    header.extend(metrics.iter().map(|(n, _, _)| *n));
    let mut body = Vec::new();
    for scenario in SCENARIOS {
        for p in 1..spec.periods {
            let share = rows.iter().find(|r| r.period == p).map_or(f64::NAN, |r| r.held_out_share);
            let acc = metric(rows, scenario, "static", Some(p), &|r| r.edge_accuracy, seeds);
            for arm in ARMS {
                let mut line = vec![scenario.to_string(), p.to_string(), format!("{share:.2}"), acc.show(3), arm.to_string()];
                line.extend(metrics.iter().map(|(_, f, d)| metric(rows, scenario, arm, Some(p), f, seeds).show(*d)));
                body.push(line);
            }
        }
    }
    s.push_str(&table(&header, &body));
    s.push('\n');
    for scenario in SCENARIOS {
        let overall = |arm: &str, f: &dyn Fn(&RefreshRow) -> f64| metric(rows, scenario, arm, None, f, seeds);
        let (acc_s, acc_r) = (overall("static", &|r| r.routing_accuracy), overall("refreshed", &|r| r.routing_accuracy));
        let (ece_s, ece_r) = (overall("static", &|r| r.ece), overall("refreshed", &|r| r.ece));
        let diff = Interval::of(&seeds.iter().map(|&sd| metric(rows, scenario, "refreshed", None, &|r| r.routing_accuracy, &[sd]).mean - metric(rows, scenario, "static", None, &|r| r.routing_accuracy, &[sd]).mean).filter(|d| d.is_finite()).collect::<Vec<_>>());
        s.push_str(&format!(
            "\n- **{scenario}**, periods 1–{}: routing accuracy {} static vs {} refreshed (refreshed − static per seed: {}); ECE {} static vs {} refreshed. {}",
            spec.periods - 1,
            acc_s.show(3),
            acc_r.show(3),
            diff.show(4),
            ece_s.show(3),
            ece_r.show(3),
            if diff.lo() > 0.0 {
                "Refreshing routes measurably better."
            } else if diff.mean > 0.0 {
                "Refreshing helps on average, but the interval includes no gain."
            } else {
                "Refreshing did not route better here."
            }
        ));
    }
    s.push('\n');
    Ok(s)
}

fn plots(rows: &[RefreshRow], spec: &ScorerRefreshSpec) -> anyhow::Result<()> {
    let series = |scenario: &str, f: &dyn Fn(&RefreshRow) -> f64| -> Vec<Series> {
        ARMS.iter()
            .map(|arm| {
                let pts = (1..spec.periods)
                    .map(|p| {
                        let v = metric(rows, scenario, arm, Some(p), f, &spec.seeds);
                        Point::with_err(p as f64, v.mean, v.half_width)
                    })
                    .collect();
                Series::new(*arm, Mark::LineAndMarkers, pts)
            })
            .collect()
    };
    let panel = |scenario: &str, title: &str, f: &dyn Fn(&RefreshRow) -> f64| Panel { title: format!("{title} ({scenario})"), x_label: "period (held-out share grows)".into(), y_label: title.into(), series: series(scenario, f) };
    let panels: Vec<Panel> = SCENARIOS.iter().flat_map(|sc| [panel(sc, "routing accuracy", &|r| r.routing_accuracy), panel(sc, "ECE", &|r| r.ece)]).collect();
    crate::plot::write_svg(&spec.out.join("scorer_refresh.svg"), &format!("Scorer refresh under drift (mean over seeds {:?}, bars: 95 % CI)", spec.seeds), &panels, 2)
}
