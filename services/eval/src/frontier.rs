//! `frontier`: task success against cloud spend (and against the latency
//! fallbacks add) for GOOD, MID and BAD links under each price schedule,
//! for every policy, with the quality–cost trade-off swept.
//!
//! Per seed: fresh requests proposed by the real edge model and labelled
//! ([`Lab::proposals`]); the controllers are fitted on half of them under
//! states from every regime and schedule, once per trade-off κ (both λ of
//! the cost model times κ), and measured on the other half under the states
//! of one cell (regime × schedule) at a time. The threshold swept without
//! looking at the network is the FrugalGPT-style cascade (its knob is the
//! budget, i.e. τ); the RouteLLM-style classifier is swept over its
//! cloud-call fraction. Success is the expected task success (edge answers
//! by their label, cloud answers at the cloud's success rate q_c).

use std::collections::BTreeMap;
use std::path::PathBuf;

use netgpt_core::records::LinkRegime;
use netgpt_router::fit::{RoutingSample, evaluate};
use netgpt_router::policy::{FallbackPolicy, FixedThreshold, PolicySpec, RouteLlm};
use netgpt_router::textclf::cut_for_cloud_fraction;
use serde::Serialize;

use crate::lab::{Lab, SeedProposals, regime_name, scaled};
use crate::plot::{Mark, Panel, Point, Series};
use crate::report::{csv, table};
use crate::stats::Interval;

#[derive(Debug, Clone)]
pub struct FrontierSpec {
    pub seeds: Vec<u64>,
    /// Labelled proposals per seed (half fit, half measured).
    pub proposals: usize,
    /// Trade-off multipliers κ of the cost model's λ (1 = as configured).
    pub kappas: Vec<f64>,
    /// Network states each measured proposal is seen under, per cell.
    pub states_per_proposal: usize,
    /// Request templates: train, held-out or mixed.
    pub split: String,
    pub out: PathBuf,
    pub show_progress: bool,
}

impl Default for FrontierSpec {
    fn default() -> Self {
        Self { seeds: vec![1, 2, 3], proposals: 2_000, kappas: vec![0.25, 0.5, 1.0, 2.0, 4.0, 8.0], states_per_proposal: 4, split: "held-out".into(), out: PathBuf::from("results/frontier"), show_progress: true }
    }
}

/// One policy at one knob setting in one cell, for one seed.
#[derive(Debug, Clone, Serialize)]
pub struct FrontierRow {
    pub seed: u64,
    pub regime: String,
    pub schedule: String,
    /// all-edge, all-cloud, fixed, frugalgpt, routellm, funcdyn, policynet, oracle.
    pub policy: String,
    /// κ for fitted controllers, τ for the FrugalGPT-style sweep, the cloud fraction for RouteLLM.
    pub knob: f64,
    /// The κ the utility is measured at.
    pub kappa: f64,
    pub utility: f64,
    pub success: f64,
    pub offload: f64,
    /// Cloud spend per 1k requests (currency units).
    pub cost_per_1k: f64,
    /// Latency fallbacks add, per request on average (ms).
    pub added_latency_ms: f64,
}

/// Policies as listed in tables and legends.
pub const POLICIES: [&str; 8] = ["all-edge", "all-cloud", "fixed", "frugalgpt", "routellm", "funcdyn", "policynet", "oracle"];
/// The controllers refitted for every κ.
const FITTED: [&str; 4] = ["fixed", "funcdyn", "policynet", "oracle"];

/// Every row of the experiment, for the seeds' proposals.
pub fn run(lab: &Lab, spec: &FrontierSpec, data: &[SeedProposals]) -> anyhow::Result<Vec<FrontierRow>> {
    anyhow::ensure!(spec.kappas.contains(&1.0), "the κ sweep must include 1 (the configured trade-off)");
    let schedules = lab.schedules();
    let cost = &lab.inputs.router.cost;
    let mut rows = Vec::new();
    let bar = netgpt_core::progress::bar((data.len() * spec.kappas.len()) as u64, "frontier", spec.show_progress);
    for d in data {
        let seed = d.seed;
        let mixed = lab.states(4096, seed ^ 0x5eed, &[], &schedules);
        let cells: Vec<(LinkRegime, String, Vec<_>)> = LinkRegime::VARIANTS
            .iter()
            .enumerate()
            .flat_map(|(i, r)| schedules.iter().enumerate().map(move |(j, p)| (i, *r, j, p.clone())))
            .map(|(i, r, j, p)| {
                let states = lab.states(1024, seed.wrapping_mul(101).wrapping_add((i * 10 + j) as u64), &[r], std::slice::from_ref(&p));
                (r, p, states)
            })
            .collect();
        for &kappa in &spec.kappas {
            let cost_k = scaled(cost, kappa);
            let fit = lab.samples(&d.fit, &mixed, crate::lab::FIT_STATES_PER_PROPOSAL, &cost_k, seed + 1);
            let controllers = lab.controllers(&fit)?;
            for (regime, schedule, states) in &cells {
                let test = lab.samples(&d.test, states, spec.states_per_proposal, &cost_k, seed + 2);
                let mut push = |policy: &str, knob: f64, p: &dyn FallbackPolicy| rows.push(row(seed, *regime, schedule, policy, knob, kappa, p, &test));
                for (name, p) in &controllers.policies {
                    if FITTED.contains(&name.as_str()) {
                        push(name, kappa, p.as_ref());
                    } else if kappa == 1.0 {
                        let knob = if name == "routellm" { lab.inputs.router.router.routellm_cloud_fraction } else { f64::NAN };
                        push(name, knob, p.as_ref());
                    }
                }
                if kappa == 1.0 {
                    for (knob, p) in sweeps(lab, d)? {
                        let name = if p.name() == "routellm" { "routellm-sweep" } else { "frugalgpt" };
                        push(name, knob, p.as_ref());
                    }
                }
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok(rows)
}

/// The knob sweeps: the network-blind threshold (FrugalGPT-style, τ from 0 to
/// 1) and the RouteLLM-style cut (cloud fraction from 0 to 1 on the fit prompts).
fn sweeps(lab: &Lab, d: &SeedProposals) -> anyhow::Result<Vec<(f64, Box<dyn FallbackPolicy>)>> {
    let mut out: Vec<(f64, Box<dyn FallbackPolicy>)> = (0..=20).map(|i| (f64::from(i) / 20.0, Box::new(FixedThreshold { tau: f64::from(i) / 20.0 }) as Box<dyn FallbackPolicy>)).collect();
    let PolicySpec::RouteLlm { classifier, .. } = lab.bundle.policy("routellm")? else { anyhow::bail!("the bundle's routellm entry is not a RouteLLM policy") };
    let p_fail: Vec<f64> = d.fit.iter().map(|p| classifier.p_fail(&p.prompt)).collect();
    for fraction in [0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0] {
        out.push((fraction, Box::new(RouteLlm { classifier: classifier.clone(), cut: cut_for_cloud_fraction(&p_fail, fraction) })));
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn row(seed: u64, regime: LinkRegime, schedule: &str, policy: &str, knob: f64, kappa: f64, p: &dyn FallbackPolicy, test: &[RoutingSample]) -> FrontierRow {
    let o = evaluate(p, test);
    FrontierRow {
        seed,
        regime: regime_name(regime).into(),
        schedule: schedule.into(),
        policy: policy.into(),
        knob,
        kappa,
        utility: o.utility,
        success: o.success,
        offload: o.cloud_fraction,
        cost_per_1k: o.price * 1_000.0,
        added_latency_ms: o.added_latency_s * 1_000.0,
    }
}

pub fn to_csv(rows: &[FrontierRow]) -> String {
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.seed.to_string(),
                r.regime.clone(),
                r.schedule.clone(),
                r.policy.clone(),
                format!("{:.4}", r.knob),
                format!("{:.4}", r.kappa),
                format!("{:.6}", r.utility),
                format!("{:.6}", r.success),
                format!("{:.6}", r.offload),
                format!("{:.6}", r.cost_per_1k),
                format!("{:.3}", r.added_latency_ms),
            ]
        })
        .collect();
    csv(&["seed", "regime", "schedule", "policy", "knob", "kappa", "utility", "success", "offload", "cost_per_1k", "added_latency_ms"], &body)
}

/// Cells in display order.
fn cells(rows: &[FrontierRow]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for r in rows {
        if !out.iter().any(|(a, b)| *a == r.regime && *b == r.schedule) {
            out.push((r.regime.clone(), r.schedule.clone()));
        }
    }
    out
}

/// The configured-trade-off point of `policy` in a cell: the row per seed.
fn headline<'a>(rows: &'a [FrontierRow], cell: &(String, String), policy: &str) -> Vec<&'a FrontierRow> {
    rows.iter().filter(|r| r.regime == cell.0 && r.schedule == cell.1 && r.policy == policy && r.kappa == 1.0 && (r.knob == 1.0 || !FITTED.contains(&policy))).collect()
}

/// Success lost against the best any swept point reaches at no more spend, in
/// the same seed and cell (0 when the point is on the frontier).
fn gap_below_frontier(rows: &[FrontierRow], point: &FrontierRow) -> f64 {
    let best = rows
        .iter()
        .filter(|r| r.seed == point.seed && r.regime == point.regime && r.schedule == point.schedule && r.cost_per_1k <= point.cost_per_1k + 1e-9)
        .map(|r| r.success)
        .fold(f64::NEG_INFINITY, f64::max);
    (best - point.success).max(0.0)
}

/// The headline policies at κ = 1 (the sweeps' own points are only on the plots).
const HEADLINE: [&str; 7] = ["all-edge", "all-cloud", "fixed", "routellm", "funcdyn", "policynet", "oracle"];

/// Mean over seeds of a per-seed statistic of the headline rows.
fn per_seed(points: &[&FrontierRow], f: impl Fn(&FrontierRow) -> f64) -> Interval {
    Interval::of(&points.iter().map(|r| f(r)).collect::<Vec<_>>())
}

/// Plots and the results section.
pub fn summarise(rows: &[FrontierRow], spec: &FrontierSpec, command: &str) -> anyhow::Result<String> {
    let cells = cells(rows);
    plots(rows, &cells, spec)?;
    let col_header: Vec<String> = std::iter::once("policy".to_string()).chain(cells.iter().map(|(r, p)| format!("{r} · {p}"))).collect();
    let header: Vec<&str> = col_header.iter().map(String::as_str).collect();
    let table_of = |f: &dyn Fn(&[&FrontierRow]) -> String| -> Vec<Vec<String>> {
        HEADLINE.iter().map(|p| std::iter::once(p.to_string()).chain(cells.iter().map(|c| f(&headline(rows, c, p)))).collect()).collect()
    };
    let utility = table_of(&|pts| per_seed(pts, |r| r.utility).show(3));
    let success_cost = table_of(&|pts| format!("{} / {:.2}", per_seed(pts, |r| r.success).show(3), per_seed(pts, |r| r.cost_per_1k).mean));
    let gaps = table_of(&|pts| per_seed(pts, |r| gap_below_frontier(rows, r)).show(3));

    // Regret against the oracle, averaged over cells per seed.
    let mut regret: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for &seed in &spec.seeds {
        for p in HEADLINE {
            let diffs: Vec<f64> = cells
                .iter()
                .filter_map(|c| {
                    let of = |name: &str| headline(rows, c, name).into_iter().find(|r| r.seed == seed).map(|r| r.utility);
                    Some(of("oracle")? - of(p)?)
                })
                .collect();
            if !diffs.is_empty() {
                regret.entry(p).or_default().push(diffs.iter().sum::<f64>() / diffs.len() as f64);
            }
        }
    }
    let mut regret_rows: Vec<(f64, Vec<String>)> = regret.iter().map(|(p, v)| (Interval::of(v).mean, vec![p.to_string(), Interval::of(v).show(4)])).collect();
    regret_rows.sort_by(|a, b| a.0.total_cmp(&b.0));

    let mut s = String::new();
    s.push_str("## Frontier: task success against cost, per link and price schedule\n\n");
    s.push_str(&format!(
        "Command: `{command}` · seeds {:?} · {} fresh {} requests per seed, proposed by the real edge model (half to fit the controllers, half measured) · each measured proposal under {} states of each cell · trade-off κ ∈ {:?} (both λ of `[cost]` times κ).\n\n",
        spec.seeds, spec.proposals, spec.split, spec.states_per_proposal, spec.kappas
    ));
    s.push_str("Raw rows: `frontier.csv`. Plots: `frontier_cost.svg` (success against cloud spend per 1k requests), `frontier_latency.svg` (success against the latency fallbacks add).\n\n");
    s.push_str("![success against cost](frontier/frontier_cost.svg)\n\n![success against latency](frontier/frontier_latency.svg)\n\n");
    s.push_str("Utility per request (quality minus ΔC) at the configured trade-off κ = 1:\n\n");
    s.push_str(&table(&header, &utility));
    s.push_str("\nTask success / cloud spend per 1k requests at κ = 1:\n\n");
    s.push_str(&table(&header, &success_cost));
    s.push_str("\nWhere each policy sits: success below the frontier at the same spend (the best success any swept point of any policy reaches at no more cost in that cell and seed; 0 = on the frontier):\n\n");
    s.push_str(&table(&header, &gaps));
    s.push_str("\nUtility regret against the oracle τ*, mean over the six cells (lower is better):\n\n");
    s.push_str(&table(&["policy", "regret"], &regret_rows.into_iter().map(|(_, r)| r).collect::<Vec<_>>()));
    s.push_str(
        "\n`fixed` is the single τ fitted for utility on mixed links (the design's FrugalGPT-style cascade tuned offline); `frugalgpt` on the plots is the same network-blind threshold swept over its budget knob τ. `routellm` decides from the request text before seeing the proposal (the bundle's cut; swept over its cloud fraction on the plots). FuncDyn, PolicyNet and the oracle are refitted for each κ; the oracle is τ* from the fit half's empirical score distribution. The edge's own latency (the same for every policy, which all run the edge first) is not in the latency axis.\n",
    );
    Ok(s)
}

fn plots(rows: &[FrontierRow], cells: &[(String, String)], spec: &FrontierSpec) -> anyhow::Result<()> {
    for (axis, file, label) in [(0, "frontier_cost.svg", "cloud spend per 1k requests"), (1, "frontier_latency.svg", "added latency per request (ms)")] {
        let panels: Vec<Panel> = cells
            .iter()
            .map(|cell| {
                let series = ["all-edge", "all-cloud", "frugalgpt", "routellm-sweep", "fixed", "funcdyn", "policynet", "oracle"]
                    .iter()
                    .filter_map(|p| {
                        let in_cell: Vec<&FrontierRow> = rows.iter().filter(|r| r.regime == cell.0 && r.schedule == cell.1 && r.policy == *p).collect();
                        let mut knobs: Vec<f64> = in_cell.iter().map(|r| r.knob).collect();
                        knobs.sort_by(f64::total_cmp);
                        knobs.dedup_by(|a, b| a == b || (a.is_nan() && b.is_nan()));
                        let points: Vec<Point> = knobs
                            .iter()
                            .map(|k| {
                                let at: Vec<&&FrontierRow> = in_cell.iter().filter(|r| r.knob == *k || (r.knob.is_nan() && k.is_nan())).collect();
                                let x = Interval::of(&at.iter().map(|r| if axis == 0 { r.cost_per_1k } else { r.added_latency_ms }).collect::<Vec<_>>()).mean;
                                let y = Interval::of(&at.iter().map(|r| r.success).collect::<Vec<_>>());
                                Point::with_err(x, y.mean, y.half_width)
                            })
                            .collect();
                        let mark = match *p {
                            "all-edge" | "all-cloud" => Mark::Markers,
                            "frugalgpt" | "routellm-sweep" => Mark::Line,
                            _ => Mark::LineAndMarkers,
                        };
                        (!points.is_empty()).then(|| Series::new(*p, mark, points))
                    })
                    .collect();
                Panel { title: format!("{} · {}", cell.0, cell.1), x_label: label.into(), y_label: "task success".into(), series }
            })
            .collect();
        crate::plot::write_svg(&spec.out.join(file), &format!("Frontier: task success against {label} (mean over seeds {:?}, bars: 95 % CI)", spec.seeds), &panels, 2)?;
    }
    Ok(())
}
