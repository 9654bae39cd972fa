//! `theorem`: τ*(S) computed numerically from the empirical score
//! distribution of the real edge model's proposals (scores from the router
//! bundle's scorer), against RTT, bandwidth and price, one network quantity
//! moved at a time from the MID state.
//!
//! The theorem's premise is a calibrated score, E[Q_edge | s] = s: with it,
//! J(τ) is computed over the empirical score distribution and must have one
//! maximiser at every state (counted as local maxima on a 1/1000 grid), at
//! the closed form q_c − ΔC, falling as RTT or price rises and rising with
//! bandwidth. Beside it, the same search with the proposals' actual outcomes
//! (labels) in place of the scores shows what is left of the result when the
//! score is only approximately calibrated.

use std::path::PathBuf;

use netgpt_core::records::LinkRegime;
use netgpt_router::CostModel;
use netgpt_router::network::{RequestShape, SiteState};
use netgpt_router::oracle::ScoreDistribution;
use serde::Serialize;

use crate::lab::{Lab, SeedProposals, regime_name};
use crate::plot::{Mark, Panel, Point, Series};
use crate::report::{csv, table};
use crate::stats::Interval;

#[derive(Debug, Clone)]
pub struct TheoremSpec {
    pub seeds: Vec<u64>,
    pub proposals: usize,
    /// Points per sweep.
    pub points: usize,
    /// Kernel bandwidth of the smoothed score distribution.
    pub kernel: f64,
    pub split: String,
    pub out: PathBuf,
}

impl Default for TheoremSpec {
    fn default() -> Self {
        Self { seeds: vec![1, 2, 3], proposals: 2_000, points: 25, kernel: 0.02, split: "held-out".into(), out: PathBuf::from("results/theorem") }
    }
}

/// τ* at one state of one sweep.
#[derive(Debug, Clone, Serialize)]
pub struct TauRow {
    pub seed: u64,
    /// rtt, bandwidth or price.
    pub sweep: String,
    /// RTT (ms), uplink bandwidth (Mbit/s) or price multiplier.
    pub x: f64,
    pub delta: f64,
    /// τ* and the local maxima of J over the empirical scores, calibrated premise.
    pub tau_star: f64,
    pub local_maxima: usize,
    /// The same with the proposals' labels as outcomes.
    pub tau_star_labelled: f64,
    pub local_maxima_labelled: usize,
    /// q_c − ΔC clipped to [0, 1]: τ* for a calibrated score.
    pub closed_form: f64,
}

pub const SWEEPS: [&str; 3] = ["rtt", "bandwidth", "price"];

fn sweep_values(sweep: &str, points: usize) -> Vec<f64> {
    let n = points.max(2);
    let lerp = |lo: f64, hi: f64, i: usize| lo + (hi - lo) * i as f64 / (n - 1) as f64;
    match sweep {
        "rtt" => (0..n).map(|i| lerp(10.0, 500.0, i)).collect(),
        // Log-spaced: the cost is in 1/B.
        "bandwidth" => (0..n).map(|i| 10f64.powf(lerp(0.0, 2.3, i))).collect(),
        _ => (0..n).map(|i| lerp(0.0, 4.0, i)).collect(),
    }
}

/// The MID state with one quantity moved, and the cost model it is priced with.
fn state_at(lab: &Lab, sweep: &str, x: f64) -> (SiteState, CostModel) {
    let settings = &lab.inputs.router;
    let mut s = settings.network.regimes.state(LinkRegime::Mid, "flat");
    let mut cost = settings.cost.clone();
    match sweep {
        "rtt" => s.rtt_ms = x,
        "bandwidth" => {
            s.uplink_mbps = x;
            s.downlink_mbps = 2.0 * x;
        }
        _ => {
            for p in &mut cost.price_schedules {
                p.input_per_1k *= x;
                p.output_per_1k *= x;
            }
        }
    }
    (s, cost)
}

/// The average request shape of the proposals.
fn mean_shape(d: &SeedProposals) -> RequestShape {
    let n = d.test.len().max(1) as f64;
    let sum = |f: fn(&RequestShape) -> f64| d.test.iter().map(|p| f(&p.shape)).sum::<f64>() / n;
    RequestShape { upload_bytes: sum(|s| s.upload_bytes), download_bytes: sum(|s| s.download_bytes), tokens_in: sum(|s| s.tokens_in), tokens_out: sum(|s| s.tokens_out) }
}

/// The empirical distribution of (score, outcome) over the valid measured proposals, and its calibrated twin (outcome = score).
fn distributions(lab: &Lab, d: &SeedProposals, kernel: f64) -> (ScoreDistribution, ScoreDistribution) {
    let labelled = ScoreDistribution::labelled(d.test.iter().filter(|p| p.features.schema_valid).map(|p| (lab.bundle.scorer.score(&p.features), f64::from(u8::from(p.correct)))).collect(), kernel);
    let scores: Vec<f64> = labelled.samples.iter().map(|s| s.0).collect();
    (ScoreDistribution::calibrated(&scores, kernel), labelled)
}

pub fn run(lab: &Lab, spec: &TheoremSpec, data: &[SeedProposals]) -> Vec<TauRow> {
    let q_c = lab.q_cloud();
    let mut rows = Vec::new();
    for d in data {
        let (calibrated, labelled) = distributions(lab, d, spec.kernel);
        let shape = mean_shape(d);
        for sweep in SWEEPS {
            for x in sweep_values(sweep, spec.points) {
                let (state, cost) = state_at(lab, sweep, x);
                let delta = cost.fallback_cost(&state, &shape, 0).delta;
                let (t, l) = (calibrated.tau_star(q_c, delta, 1000), labelled.tau_star(q_c, delta, 1000));
                rows.push(TauRow {
                    seed: d.seed,
                    sweep: sweep.into(),
                    x,
                    delta,
                    tau_star: t.tau,
                    local_maxima: t.local_maxima,
                    tau_star_labelled: l.tau,
                    local_maxima_labelled: l.local_maxima,
                    closed_form: (q_c - delta).clamp(0.0, 1.0),
                });
            }
        }
    }
    rows
}

pub fn to_csv(rows: &[TauRow]) -> String {
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.seed.to_string(),
                r.sweep.clone(),
                format!("{:.4}", r.x),
                format!("{:.6}", r.delta),
                format!("{:.4}", r.tau_star),
                r.local_maxima.to_string(),
                format!("{:.4}", r.tau_star_labelled),
                r.local_maxima_labelled.to_string(),
                format!("{:.4}", r.closed_form),
            ]
        })
        .collect();
    csv(&["seed", "sweep", "x", "delta", "tau_star", "local_maxima", "tau_star_labelled", "local_maxima_labelled", "closed_form"], &body)
}

/// Steps of a sweep where τ* (as `tau` reads it) moved against the theory's sign (beyond one grid step).
pub fn sign_violations(rows: &[TauRow], tau: fn(&TauRow) -> f64) -> usize {
    let mut v = 0;
    let mut seeds: Vec<u64> = rows.iter().map(|r| r.seed).collect();
    seeds.dedup();
    for seed in seeds {
        for sweep in SWEEPS {
            let series: Vec<&TauRow> = rows.iter().filter(|r| r.seed == seed && r.sweep == sweep).collect();
            for w in series.windows(2) {
                let step = tau(w[1]) - tau(w[0]);
                // RTT and price up: τ* must not rise; bandwidth up: τ* must not fall.
                let wrong = if sweep == "bandwidth" { step < -1.5e-3 } else { step > 1.5e-3 };
                v += usize::from(wrong);
            }
        }
    }
    v
}

pub fn summarise(lab: &Lab, rows: &[TauRow], data: &[SeedProposals], spec: &TheoremSpec, command: &str) -> anyhow::Result<String> {
    plots(lab, rows, data, spec)?;
    let states = rows.len();
    let unique = rows.iter().filter(|r| r.local_maxima == 1).count();
    let unique_labelled = rows.iter().filter(|r| r.local_maxima_labelled == 1).count();
    let violations = sign_violations(rows, |r| r.tau_star);
    let violations_labelled = sign_violations(rows, |r| r.tau_star_labelled);
    let off_closed_form = rows.iter().map(|r| (r.tau_star - r.closed_form).abs()).fold(0.0, f64::max);
    let steps = rows.len().saturating_sub(spec.seeds.len() * SWEEPS.len());
    let middle = lab.middle_score_share(data);
    let q_c = lab.q_cloud();
    let span = |sweep: &str, first: bool| {
        // The calibrated-premise τ*.
        let vals: Vec<f64> = spec
            .seeds
            .iter()
            .filter_map(|&s| {
                let series: Vec<&TauRow> = rows.iter().filter(|r| r.seed == s && r.sweep == sweep).collect();
                if first { series.first() } else { series.last() }.map(|r| r.tau_star)
            })
            .collect();
        Interval::of(&vals)
    };
    let range_rows: Vec<Vec<String>> = SWEEPS
        .iter()
        .map(|sw| {
            let v = sweep_values(sw, spec.points);
            let unit = match *sw {
                "rtt" => "ms",
                "bandwidth" => "Mbit/s up",
                _ => "× price",
            };
            vec![sw.to_string(), format!("{:.0} → {:.0} {unit}", v[0], v[v.len() - 1]), span(sw, true).show(3), span(sw, false).show(3)]
        })
        .collect();
    let mut s = String::from("## Theorem: the optimal threshold τ*(S)\n\n");
    s.push_str(&format!(
        "Command: `{command}` · seeds {:?} · per seed the empirical score distribution of {} measured proposals of the real edge model ({} requests; scores from the router bundle's scorer, outcomes from the labels), smoothed with a logistic kernel of bandwidth {} · q_c = {q_c} · τ* by grid search over [0, 1] in steps of 0.001 · {} points per sweep, one quantity moved at a time from the MID link on the flat price, at the proposals' mean request size.\n\n",
        spec.seeds, spec.proposals / 2, spec.split, spec.kernel, spec.points
    ));
    s.push_str("Raw rows: `theorem.csv`. Plot: `theorem.svg` (τ* against each quantity with the calibrated closed form q_c − ΔC, and J(τ) at the GOOD, MID and BAD presets).\n\n![theorem](theorem/theorem.svg)\n\n");
    s.push_str(&format!(
        "With the theorem's premise (a calibrated score: outcome = score, over the empirical score distribution):\n\n\
         - uniqueness: J(τ) had exactly one local maximum at {unique} of {states} states;\n\
         - monotonicity: {violations} of {steps} sweep steps moved τ* against the theory's sign by more than the grid (RTT and price up must not raise τ*; bandwidth up must not lower it);\n\
         - the numeric τ* was never more than {off_closed_form:.4} from the closed form q_c − ΔC.\n\n\
         With the proposals' actual outcomes (labels) in place of the calibrated premise: one local maximum at {unique_labelled} of {states} states; {violations_labelled} sign violations. {:.1} % of the valid proposals score between 0.1 and 0.9; the rest sit in two clusters near 0 and near 1, so with labels J(τ) is nearly flat across the gap between them and τ* can sit anywhere in it.\n\n",
        100.0 * middle
    ));
    s.push_str("τ* (calibrated premise) at the two ends of each sweep (mean ± 95 % CI over seeds):\n\n");
    s.push_str(&table(&["sweep", "range", "τ* at the low end", "τ* at the high end"], &range_rows));
    s.push_str("\nThe kernel gives the empirical distribution the positive density the regularity assumption asks for; under the calibrated premise that is what makes the maximiser unique.\n");
    Ok(s)
}

fn plots(lab: &Lab, rows: &[TauRow], data: &[SeedProposals], spec: &TheoremSpec) -> anyhow::Result<()> {
    let mean_series = |sweep: &str, f: &dyn Fn(&TauRow) -> f64| -> Vec<Point> {
        sweep_values(sweep, spec.points)
            .iter()
            .map(|x| {
                let v = Interval::of(&rows.iter().filter(|r| r.sweep == sweep && (r.x - x).abs() < 1e-9).map(f).collect::<Vec<_>>());
                Point::with_err(*x, v.mean, v.half_width)
            })
            .collect()
    };
    let mut panels: Vec<Panel> = [("rtt", "RTT (ms)"), ("bandwidth", "uplink bandwidth (Mbit/s)"), ("price", "price multiplier")]
        .iter()
        .map(|(sweep, label)| Panel {
            title: format!("τ* against {label}"),
            x_label: label.to_string(),
            y_label: "τ*".into(),
            series: vec![
                Series::new("τ* calibrated premise", Mark::LineAndMarkers, mean_series(sweep, &|r| r.tau_star)),
                Series::new("τ*, with labels", Mark::LineAndMarkers, mean_series(sweep, &|r| r.tau_star_labelled)),
                Series::new("q_c − ΔC (closed form)", Mark::Line, mean_series(sweep, &|r| r.closed_form)),
            ],
        })
        .collect();
    if let Some(d) = data.first() {
        let (dist, _) = distributions(lab, d, spec.kernel);
        let shape = mean_shape(d);
        let series = LinkRegime::VARIANTS
            .iter()
            .map(|r| {
                let state = lab.inputs.router.network.regimes.state(*r, "flat");
                let delta = lab.inputs.router.cost.fallback_cost(&state, &shape, 0).delta;
                let pts = (0..=100).map(|i| f64::from(i) / 100.0).map(|t| Point::new(t, dist.utility(t, lab.q_cloud(), delta))).collect();
                Series::new(format!("J(τ), {} link, calibrated premise", regime_name(*r)), Mark::Line, pts)
            })
            .collect();
        panels.push(Panel { title: format!("J(τ) at the regime presets (seed {})", d.seed), x_label: "τ".into(), y_label: "expected utility".into(), series });
    }
    crate::plot::write_svg(&spec.out.join("theorem.svg"), &format!("τ*(S) from the empirical score distribution (mean over seeds {:?}, bars: 95 % CI)", spec.seeds), &panels, 2)
}
