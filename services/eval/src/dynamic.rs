//! `dynamic`: time-varying links. Every site's link switches between the
//! GOOD, MID and BAD regimes (a Markov chain) and drifts with a load cycle,
//! and the peak/off-peak price follows the same compressed day. Requests (the
//! real edge model's measured proposals) arrive at random sites; each
//! controller decides with the site's latest telemetry. Utility, success,
//! spend and offload are tallied per time window, and each dynamic
//! controller's utility is compared with the best single τ chosen in
//! hindsight on the very same trace (an upper bound for any fixed threshold).

use std::path::PathBuf;

use netgpt_core::avro::TimestampMillis;
use netgpt_core::records::{LinkRegime, Placement};
use netgpt_router::fit::{RoutingSample, fit_fixed};
use netgpt_router::network::SiteState;
use netgpt_router::policy::{FallbackPolicy, FixedThreshold};
use netgpt_router::trace::TraceKind;
use netgpt_sim::traffic::SiteLinks;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::lab::{FIT_STATES_PER_PROPOSAL, Lab, SeedProposals};
use crate::plot::{Mark, Panel, Point, Series};
use crate::report::{csv, table};
use crate::stats::Interval;

#[derive(Debug, Clone)]
pub struct DynamicSpec {
    pub seeds: Vec<u64>,
    pub proposals: usize,
    /// Simulated length of each trace (s) and the window the series are tallied over (s).
    pub duration_s: f64,
    pub window_s: f64,
    /// Mean time between requests (s) and the number of sites.
    pub request_every_s: f64,
    pub sites: u32,
    /// Regime switches per site per minute (overrides `[network.trace]`).
    pub switches_per_minute: f64,
    pub split: String,
    pub out: PathBuf,
    pub show_progress: bool,
    /// Share of the measured proposals scoring between 0.1 and 0.9 ([`Lab::middle_score_share`]), for the summary.
    pub middle_score_share: Option<f64>,
}

impl Default for DynamicSpec {
    fn default() -> Self {
        Self {
            seeds: vec![1, 2, 3],
            proposals: 2_000,
            duration_s: 3_600.0,
            window_s: 120.0,
            request_every_s: 0.2,
            sites: 8,
            switches_per_minute: 1.0,
            split: "held-out".into(),
            out: PathBuf::from("results/dynamic"),
            show_progress: true,
            middle_score_share: None,
        }
    }
}

/// One controller over one window of one seed's trace.
#[derive(Debug, Clone, Serialize)]
pub struct WindowRow {
    pub seed: u64,
    pub window_end_s: f64,
    pub policy: String,
    pub requests: usize,
    pub utility: f64,
    pub success: f64,
    pub offload: f64,
    pub cost_per_1k: f64,
    /// Share of requests from sites whose link was BAD at the time.
    pub bad_share: f64,
}

/// Controllers compared, in display order; `best-fixed-hindsight` is fitted
/// on the trace itself, and `clairvoyant` is the bound no router reaches: it
/// knows whether each edge answer is right and places every request at the
/// better of its two utilities.
pub const POLICIES: [&str; 9] = ["all-edge", "all-cloud", "fixed", "routellm", "best-fixed-hindsight", "funcdyn", "policynet", "oracle", "clairvoyant"];
pub const DYNAMIC: [&str; 3] = ["funcdyn", "policynet", "oracle"];

/// A request on the trace: the sample and the regime its site was in.
struct Arrival {
    t_s: f64,
    sample: RoutingSample,
    regime: LinkRegime,
}

pub fn run(lab: &Lab, spec: &DynamicSpec, data: &[SeedProposals]) -> anyhow::Result<Vec<WindowRow>> {
    anyhow::ensure!(spec.duration_s > 0.0 && spec.window_s > 0.0 && spec.request_every_s > 0.0 && spec.sites > 0, "dynamic needs a positive duration, window, request interval and sites");
    let cost = &lab.inputs.router.cost;
    let mut rows = Vec::new();
    let bar = netgpt_core::progress::bar(data.len() as u64, "dynamic", spec.show_progress);
    for d in data {
        let mixed = lab.states(4096, d.seed ^ 0x5eed, &[], &lab.schedules());
        let fit = lab.samples(&d.fit, &mixed, FIT_STATES_PER_PROPOSAL, cost, d.seed + 1);
        let controllers = lab.controllers(&fit)?;
        let arrivals = trace(lab, spec, d);
        let samples: Vec<RoutingSample> = arrivals.iter().map(|a| a.sample.clone()).collect();
        let hindsight = FixedThreshold { tau: fit_fixed(&samples) };
        for name in POLICIES {
            let decide: Box<dyn Fn(&RoutingSample) -> Placement> = match name {
                "clairvoyant" => Box::new(|s: &RoutingSample| if s.utility(Placement::Edge) >= s.utility(Placement::Cloud) { Placement::Edge } else { Placement::Cloud }),
                "best-fixed-hindsight" => Box::new(|s: &RoutingSample| hindsight.decide(&s.input()).placement),
                _ => {
                    let policy: &dyn FallbackPolicy = controllers.get(name).ok_or_else(|| anyhow::anyhow!("no controller {name}"))?;
                    Box::new(move |s: &RoutingSample| policy.decide(&s.input()).placement)
                }
            };
            rows.extend(windows(spec, d.seed, name, decide.as_ref(), &arrivals));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(rows)
}

/// The seed's trace: telemetry every second per site, requests at random
/// times and sites, each a measured proposal costed in its site's state.
fn trace(lab: &Lab, spec: &DynamicSpec, d: &SeedProposals) -> Vec<Arrival> {
    let settings = &lab.inputs.router;
    let mut network = settings.network.clone();
    network.trace.kind = TraceKind::Markov;
    network.trace.switches_per_minute = spec.switches_per_minute;
    let mut links = SiteLinks::new(spec.sites, &network);
    let mut rng = StdRng::seed_from_u64(d.seed.wrapping_mul(31).wrapping_add(5));
    let scorer = &lab.bundle.scorer;
    // Prices follow the same compressed day as the load: one diurnal period is 24 h of the schedule.
    let day_ms = 86_400_000.0;
    let period = network.trace.diurnal_period_s.max(1.0);
    let mut state: Vec<(SiteState, LinkRegime)> = Vec::new();
    let mut next_reading = 0.0;
    let mut t = 0.0;
    let mut out = Vec::new();
    while t < spec.duration_s {
        while next_reading <= t {
            state = links.readings(&mut rng, next_reading, TimestampMillis(0)).iter().map(|r| (SiteState::from_telemetry(r), r.link_regime.unwrap_or(LinkRegime::Mid))).collect();
            next_reading += 1.0;
        }
        let (site_state, regime) = &state[rng.random_range(0..state.len())];
        let p = &d.test[rng.random_range(0..d.test.len())];
        let at_ms = ((t / period).fract() * day_ms) as i64;
        let c = settings.cost.fallback_cost(site_state, &p.shape, at_ms);
        out.push(Arrival {
            t_s: t,
            regime: *regime,
            sample: RoutingSample {
                prompt: p.prompt.clone(),
                score: scorer.score(&p.features),
                schema_valid: p.features.schema_valid,
                state: site_state.clone(),
                shape: p.shape,
                cost: c,
                q_edge: f64::from(u8::from(p.correct)),
                q_cloud: settings.router.cloud_success_estimate,
                weight: 1.0,
            },
        });
        // Poisson arrivals.
        t += -spec.request_every_s * (1.0 - rng.random::<f64>()).ln();
    }
    out
}

fn windows(spec: &DynamicSpec, seed: u64, name: &str, decide: &dyn Fn(&RoutingSample) -> Placement, arrivals: &[Arrival]) -> Vec<WindowRow> {
    let n_windows = (spec.duration_s / spec.window_s).ceil() as usize;
    let mut acc = vec![(0usize, 0.0, 0.0, 0.0, 0.0, 0.0); n_windows];
    for a in arrivals {
        let w = ((a.t_s / spec.window_s) as usize).min(n_windows - 1);
        let placement = decide(&a.sample);
        let cloud = placement == Placement::Cloud;
        let e = &mut acc[w];
        e.0 += 1;
        e.1 += a.sample.utility(placement);
        e.2 += if cloud { a.sample.q_cloud } else { a.sample.q_edge };
        e.3 += f64::from(u8::from(cloud));
        e.4 += if cloud { a.sample.cost.price } else { 0.0 };
        e.5 += f64::from(u8::from(a.regime == LinkRegime::Bad));
    }
    acc.iter()
        .enumerate()
        .filter(|(_, e)| e.0 > 0)
        .map(|(i, e)| {
            let n = e.0 as f64;
            WindowRow { seed, window_end_s: (i + 1) as f64 * spec.window_s, policy: name.into(), requests: e.0, utility: e.1 / n, success: e.2 / n, offload: e.3 / n, cost_per_1k: e.4 / n * 1_000.0, bad_share: e.5 / n }
        })
        .collect()
}

pub fn to_csv(rows: &[WindowRow]) -> String {
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.seed.to_string(),
                format!("{:.0}", r.window_end_s),
                r.policy.clone(),
                r.requests.to_string(),
                format!("{:.6}", r.utility),
                format!("{:.6}", r.success),
                format!("{:.6}", r.offload),
                format!("{:.6}", r.cost_per_1k),
                format!("{:.4}", r.bad_share),
            ]
        })
        .collect();
    csv(&["seed", "window_end_s", "policy", "requests", "utility", "success", "offload", "cost_per_1k", "bad_share"], &body)
}

/// Whole-trace means of one policy for one seed (request-weighted over windows).
fn whole(rows: &[WindowRow], seed: u64, policy: &str, f: impl Fn(&WindowRow) -> f64) -> Option<f64> {
    let mine: Vec<&WindowRow> = rows.iter().filter(|r| r.seed == seed && r.policy == policy).collect();
    let n: usize = mine.iter().map(|r| r.requests).sum();
    (n > 0).then(|| mine.iter().map(|r| f(r) * r.requests as f64).sum::<f64>() / n as f64)
}

/// Per seed, U(policy) / U(best fixed τ in hindsight).
pub fn utility_ratios(rows: &[WindowRow], seeds: &[u64], policy: &str) -> Vec<f64> {
    seeds.iter().filter_map(|&s| Some(whole(rows, s, policy, |r| r.utility)? / whole(rows, s, "best-fixed-hindsight", |r| r.utility)?)).collect()
}

pub fn summarise(rows: &[WindowRow], spec: &DynamicSpec, command: &str) -> anyhow::Result<String> {
    plots(rows, spec)?;
    let seeds = &spec.seeds;
    let per_seed = |p: &str, f: &dyn Fn(&WindowRow) -> f64| Interval::of(&seeds.iter().filter_map(|&s| whole(rows, s, p, f)).collect::<Vec<_>>());
    let body: Vec<Vec<String>> = POLICIES
        .iter()
        .map(|p| {
            let ratio = Interval::of(&utility_ratios(rows, seeds, p));
            vec![
                p.to_string(),
                per_seed(p, &|r| r.utility).show(4),
                ratio.show(3),
                per_seed(p, &|r| r.success).show(3),
                per_seed(p, &|r| r.cost_per_1k).show(2),
                per_seed(p, &|r| r.offload).show(3),
            ]
        })
        .collect();
    let mut s = String::from("## Dynamic: thresholds on time-varying links\n\n");
    s.push_str(&format!(
        "Command: `{command}` · seeds {seeds:?} · {} fresh {} requests per seed proposed by the real edge model (half fit the controllers on static mixed links, half are replayed) · {} sites, Markov regimes at {} switches per site per minute plus the diurnal load cycle, peak/off-peak prices on the same compressed day · {:.0} s of simulated time per seed, a request every {} s on average, windows of {:.0} s.\n\n",
        spec.proposals, spec.split, spec.sites, spec.switches_per_minute, spec.duration_s, spec.request_every_s, spec.window_s
    ));
    s.push_str("Raw rows: `dynamic.csv` (one row per seed, window and controller). Plot: `dynamic.svg`.\n\n![dynamic](dynamic/dynamic.svg)\n\n");
    s.push_str("Whole-trace means (utility = quality − ΔC per request; ratio = utility ÷ the best fixed τ chosen in hindsight on the same trace):\n\n");
    s.push_str(&table(&["controller", "utility", "ratio to best fixed (hindsight)", "task success", "spend per 1k", "offload"], &body));
    let goal = |p: &str| Interval::of(&utility_ratios(rows, seeds, p));
    let lines: Vec<String> = DYNAMIC
        .iter()
        .map(|p| {
            let r = goal(p);
            let verdict = if r.lo() > 1.05 {
                "meets the goal (> 1.05)"
            } else if r.mean > 1.05 {
                "above 1.05 on average, but the interval reaches below it"
            } else if r.lo() > 1.0 {
                "better than the best fixed τ, but short of the 1.05 goal"
            } else {
                "not better than the best fixed τ within the interval: misses the 1.05 goal"
            };
            format!("- {p}: {} — {verdict}.", r.show(3))
        })
        .collect();
    s.push_str(&format!("\nGoal: dynamic controllers' utility relative to the best fixed τ > 1.05.\n\n{}\n", lines.join("\n")));
    let clairvoyant = goal("clairvoyant");
    let headroom: Vec<String> = DYNAMIC
        .iter()
        .map(|p| {
            let share = Interval::of(&seeds.iter().filter_map(|&sd| {
                let (r, c) = (Interval::of(&utility_ratios(rows, &[sd], p)).mean, Interval::of(&utility_ratios(rows, &[sd], "clairvoyant")).mean);
                (c > 1.0).then(|| (r - 1.0) / (c - 1.0))
            }).collect::<Vec<_>>());
            format!("{p} {}", share.show(2))
        })
        .collect();
    s.push_str(&format!(
        "\nHeadroom: the clairvoyant router, which knows whether each edge answer is right, reaches {} of the best fixed τ's utility; that bounds what any threshold on any score could gain on these traces. Share of that headroom (clairvoyant − best fixed) the dynamic controllers capture: {}. {}\n",
        clairvoyant.show(3),
        headroom.join(", "),
        middle_scores(spec)
    ));
    s.push_str("\n`best-fixed-hindsight` is fitted on the evaluation trace itself, an upper bound for any fixed threshold; `fixed` is the deployable one, fitted on the fit half.\n");
    Ok(s)
}

/// Why a dynamic τ gains little or much: it matters only for proposals whose score lies where ΔC moves τ*.
fn middle_scores(spec: &DynamicSpec) -> String {
    match spec.middle_score_share {
        Some(m) => format!("{:.1} % of the measured proposals score between 0.1 and 0.9; a dynamic τ can only change the placement of proposals whose score lies between the thresholds it moves between, so a score distribution with few middle scores leaves little for it to gain.", 100.0 * m),
        None => String::new(),
    }
}

fn plots(rows: &[WindowRow], spec: &DynamicSpec) -> anyhow::Result<()> {
    // One seed's trace: the windows of different seeds see different link states, so a mean over seeds would blur them.
    let seed = spec.seeds.first().copied().unwrap_or_default();
    let series = |policy: &str, f: &dyn Fn(&WindowRow) -> f64| -> Vec<Point> {
        rows.iter().filter(|r| r.seed == seed && r.policy == policy).map(|r| Point::new(r.window_end_s / 60.0, f(r))).collect()
    };
    let panel = |title: &str, y: &str, f: &dyn Fn(&WindowRow) -> f64, policies: &[&str]| Panel {
        title: title.into(),
        x_label: "simulated time (min)".into(),
        y_label: y.into(),
        series: policies.iter().map(|p| Series::new(*p, Mark::Line, series(p, f))).collect(),
    };
    let shown = ["fixed", "best-fixed-hindsight", "funcdyn", "policynet", "oracle", "routellm"];
    let panels = vec![
        panel("utility per request", "utility", &|r| r.utility, &shown),
        panel("task success", "success", &|r| r.success, &shown),
        panel("cloud spend per 1k requests", "spend", &|r| r.cost_per_1k, &shown),
        panel("offload rate", "share to cloud", &|r| r.offload, &shown),
        Panel { title: "share of requests on BAD links".into(), x_label: "simulated time (min)".into(), y_label: "share".into(), series: vec![Series::new("BAD links", Mark::Line, series("oracle", &|r| r.bad_share))] },
    ];
    crate::plot::write_svg(&spec.out.join("dynamic.svg"), &format!("Dynamic links: per-window means on the trace of seed {seed} (the table has all seeds)"), &panels, 2)
}
