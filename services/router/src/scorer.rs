//! The scorer: s = r(x, y_e) ∈ [0,1], the estimated chance that the edge's
//! proposed call is correct, from the proposal's features. A logistic model
//! ranks proposals; an isotonic (or Platt) map fitted on separate data makes
//! the score calibrated — P(correct | s) ≈ s — which is what the threshold
//! theory needs (τ* = q_c − ΔC holds for a calibrated score). Versioned and
//! serialised as JSON so the trainer can replace it.

use netgpt_core::records::EdgeProposal;
use serde::{Deserialize, Serialize};

/// What the scorer reads of a proposal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProposalFeatures {
    pub mean_logprob: f64,
    pub min_logprob: f64,
    pub mean_entropy: f64,
    pub schema_valid: bool,
    pub output_tokens: f64,
    /// Share of the request's words the edge model has no token for. Long
    /// training makes the model confident on phrasings it has never seen, so
    /// its token probabilities stop telling those answers apart; how
    /// unfamiliar the request is still does. `None` when the backend did not
    /// say (and in proposals recorded before the feature existed); the scorer
    /// reads that as 0.
    #[serde(default)]
    pub unknown_word_share: Option<f64>,
    /// The tool the call names (none when it names no known tool). How
    /// reliable the edge is differs by tool: some tools' requests are phrased
    /// in ways its training never showed.
    #[serde(default)]
    pub tool: Option<String>,
}

impl ProposalFeatures {
    pub fn of(p: &EdgeProposal) -> Self {
        Self {
            mean_logprob: p.mean_logprob,
            min_logprob: p.min_logprob,
            mean_entropy: p.mean_entropy,
            schema_valid: p.schema_valid,
            output_tokens: f64::from(p.output_tokens),
            unknown_word_share: p.unknown_word_share,
            tool: p.tool_name.clone(),
        }
    }

    /// Features besides the tool's indicator.
    const N: usize = 6;

    /// Feature `i` of the vector for `tools` (sorted, unique): the numeric
    /// features, then one indicator per tool (a tool outside the list, or
    /// none, sets no indicator). Indexed rather than iterated: the scorer
    /// reads it for every decision, where a chained iterator cost a third more.
    fn features(&self, tools: &[String]) -> impl Fn(usize) -> f64 {
        let hit = self.tool.as_deref().and_then(|t| tools.binary_search_by(|x| x.as_str().cmp(t)).ok());
        let numeric = self.numeric();
        move |i| if i < Self::N { numeric[i] } else { f64::from(u8::from(hit == Some(i - Self::N))) }
    }

    fn numeric(&self) -> [f64; Self::N] {
        // Surprisals (−log-prob) and entropies enter on a log scale: a
        // well-trained model's right and wrong calls differ between 1e-4 and
        // 1e-2 nats, which a linear feature squashes next to the rare large
        // values. Clamped to [1e-6, 30], so a -inf from a masked token or a
        // NaN cannot poison the model.
        let log_scale = |v: f64| if v.is_nan() { 30f64.ln() } else { v.clamp(1e-6, 30.0).ln() };
        [
            log_scale(-self.mean_logprob),
            log_scale(-self.min_logprob),
            log_scale(self.mean_entropy),
            f64::from(u8::from(self.schema_valid)),
            (1.0 + self.output_tokens.max(0.0)).ln(),
            self.unknown_word_share.filter(|u| u.is_finite()).map_or(0.0, |u| u.clamp(0.0, 1.0)),
        ]
    }
}

/// How raw probabilities become calibrated scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "lowercase")]
pub enum Calibration {
    /// The logistic model's probability as is.
    None,
    /// σ(a · logit + b).
    Platt { a: f64, b: f64 },
    /// A non-decreasing piecewise-linear map through the pool-adjacent-violators blocks.
    Isotonic { xs: Vec<f64>, ys: Vec<f64> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CalibrationMethod {
    None,
    Platt,
    Isotonic,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "SavedScorer")]
pub struct Scorer {
    pub version: String,
    /// The tools with an indicator feature: those of the ranker's training data.
    tools: Vec<String>,
    mean: Vec<f64>,
    std: Vec<f64>,
    weights: Vec<f64>,
    bias: f64,
    pub calibration: Calibration,
}

/// A scorer as saved, checked before use: one fitted on another feature set
/// (an older bundle) must be refused, not silently read with features missing.
#[derive(Deserialize)]
struct SavedScorer {
    version: String,
    #[serde(default)]
    tools: Vec<String>,
    mean: Vec<f64>,
    std: Vec<f64>,
    weights: Vec<f64>,
    bias: f64,
    calibration: Calibration,
}

impl TryFrom<SavedScorer> for Scorer {
    type Error = String;

    fn try_from(s: SavedScorer) -> Result<Self, String> {
        let n = ProposalFeatures::N + s.tools.len();
        if [s.mean.len(), s.std.len(), s.weights.len()] != [n; 3] {
            return Err(format!(
                "scorer {} was fitted on {} features, this build reads {n}: refit it (`netgpt train router`)",
                s.version,
                s.weights.len()
            ));
        }
        if !s.tools.windows(2).all(|w| w[0] < w[1]) {
            return Err(format!("scorer {}: its tool list is not sorted and unique", s.version));
        }
        Ok(Self { version: s.version, tools: s.tools, mean: s.mean, std: s.std, weights: s.weights, bias: s.bias, calibration: s.calibration })
    }
}

/// A labelled proposal: its features and whether the call was right.
pub type Labelled = (ProposalFeatures, bool);

pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl Scorer {
    /// Fits the logistic ranker on `train` and the calibration map on `calibrate`
    /// (separate data, or the map would learn the ranker's overfitting).
    pub fn fit(version: impl Into<String>, train: &[Labelled], calibrate: &[Labelled], method: CalibrationMethod) -> Self {
        let mut tools: Vec<String> = train.iter().filter_map(|(f, _)| f.tool.clone()).collect();
        tools.sort();
        tools.dedup();
        let n = ProposalFeatures::N + tools.len();
        let xs: Vec<Vec<f64>> = train.iter().map(|(f, _)| (0..n).map(f.features(&tools)).collect()).collect();
        let mut mean = vec![0.0; n];
        let mut std = vec![0.0; n];
        for x in &xs {
            for i in 0..n {
                mean[i] += x[i] / xs.len().max(1) as f64;
            }
        }
        for x in &xs {
            for i in 0..n {
                std[i] += (x[i] - mean[i]).powi(2) / xs.len().max(1) as f64;
            }
        }
        let std: Vec<f64> = std.iter().map(|v| v.sqrt().max(1e-6)).collect();
        let mut s = Self { version: version.into(), tools, mean, std, weights: vec![0.0; n], bias: 0.0, calibration: Calibration::None };
        // Full-batch gradient descent with a little L2: a convex problem of a few
        // dozen parameters, where this converges well within the iteration budget.
        let (lr, l2) = (0.5, 1e-3);
        let z: Vec<Vec<f64>> = xs.iter().map(|x| s.standardise(x)).collect();
        for _ in 0..1500 {
            let mut gw = vec![0.0; n];
            let mut gb = 0.0;
            for (zi, (_, y)) in z.iter().zip(train) {
                let p = sigmoid(s.bias + zi.iter().zip(&s.weights).map(|(a, b)| a * b).sum::<f64>());
                let e = p - f64::from(u8::from(*y));
                for (g, x) in gw.iter_mut().zip(zi) {
                    *g += e * x;
                }
                gb += e;
            }
            let m = train.len().max(1) as f64;
            for (w, g) in s.weights.iter_mut().zip(&gw) {
                *w -= lr * (g / m + l2 * *w);
            }
            s.bias -= lr * gb / m;
        }
        s.calibration = match method {
            CalibrationMethod::None => Calibration::None,
            CalibrationMethod::Platt => s.fit_platt(calibrate),
            CalibrationMethod::Isotonic => s.fit_isotonic(calibrate),
        };
        s
    }

    fn standardise(&self, x: &[f64]) -> Vec<f64> {
        x.iter().zip(&self.mean).zip(&self.std).map(|((v, m), s)| (v - m) / s).collect()
    }

    /// The ranker's logit.
    pub fn logit(&self, f: &ProposalFeatures) -> f64 {
        // `standardise` · weights, in the same order (so the same bits as in
        // the fit), without collecting the features: this runs for every
        // decision. `tools` is sorted (checked on load).
        let x = f.features(&self.tools);
        let sum = (0..self.weights.len()).map(|i| (x(i) - self.mean[i]) / self.std[i] * self.weights[i]).sum::<f64>();
        self.bias + sum
    }

    /// The calibrated score s ∈ [0, 1].
    pub fn score(&self, f: &ProposalFeatures) -> f64 {
        let z = self.logit(f);
        let s = match &self.calibration {
            Calibration::None => sigmoid(z),
            Calibration::Platt { a, b } => sigmoid(a * z + b),
            Calibration::Isotonic { xs, ys } => interpolate(xs, ys, sigmoid(z)),
        };
        if s.is_finite() { s.clamp(0.0, 1.0) } else { 0.0 }
    }

    fn fit_platt(&self, data: &[Labelled]) -> Calibration {
        let z: Vec<(f64, f64)> = data.iter().map(|(f, y)| (self.logit(f), f64::from(u8::from(*y)))).collect();
        let (mut a, mut b) = (1.0, 0.0);
        for _ in 0..2000 {
            let (mut ga, mut gb) = (0.0, 0.0);
            for (zi, y) in &z {
                let e = sigmoid(a * zi + b) - y;
                ga += e * zi;
                gb += e;
            }
            let m = z.len().max(1) as f64;
            a -= 0.1 * ga / m;
            b -= 0.1 * gb / m;
        }
        Calibration::Platt { a, b }
    }

    fn fit_isotonic(&self, data: &[Labelled]) -> Calibration {
        let mut pts: Vec<(f64, f64)> = data.iter().map(|(f, y)| (sigmoid(self.logit(f)), f64::from(u8::from(*y)))).collect();
        let (xs, ys) = isotonic_fit(&mut pts);
        Calibration::Isotonic { xs, ys }
    }

    /// Calibration quality of this scorer on labelled data.
    pub fn report(&self, data: &[Labelled]) -> CalibrationReport {
        let pairs: Vec<(f64, bool)> = data.iter().map(|(f, y)| (self.score(f), *y)).collect();
        CalibrationReport::of(&pairs)
    }
}

/// Pool adjacent violators: the non-decreasing fit of y on x; returns the
/// blocks' mean x and fitted y, for linear interpolation.
pub fn isotonic_fit(pts: &mut [(f64, f64)]) -> (Vec<f64>, Vec<f64>) {
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    // (sum x, sum y, count) per block.
    let mut blocks: Vec<(f64, f64, f64)> = Vec::new();
    for &(x, y) in pts.iter() {
        blocks.push((x, y, 1.0));
        while blocks.len() > 1 {
            let (b, a) = (blocks[blocks.len() - 1], blocks[blocks.len() - 2]);
            // Equal neighbours merge too, so the fitted values strictly increase.
            if a.1 / a.2 < b.1 / b.2 {
                break;
            }
            blocks.pop();
            let last = blocks.len() - 1;
            blocks[last] = (a.0 + b.0, a.1 + b.1, a.2 + b.2);
        }
    }
    blocks.iter().map(|(sx, sy, c)| (sx / c, sy / c)).unzip()
}

/// Piecewise-linear interpolation through (xs, ys), constant outside.
pub fn interpolate(xs: &[f64], ys: &[f64], x: f64) -> f64 {
    match xs.iter().position(|&v| v >= x) {
        None => ys.last().copied().unwrap_or(x),
        Some(0) => ys[0],
        Some(i) => {
            let (x0, x1, y0, y1) = (xs[i - 1], xs[i], ys[i - 1], ys[i]);
            if x1 - x0 <= f64::EPSILON { y1 } else { y0 + (y1 - y0) * (x - x0) / (x1 - x0) }
        }
    }
}

/// Expected calibration error, Brier score and a reliability table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CalibrationReport {
    pub n: usize,
    /// Σ_bins (n_b / n) · |mean score − accuracy| over 10 equal-width bins.
    pub ece: f64,
    pub brier: f64,
    /// (bin lower edge, count, mean score, accuracy).
    pub bins: Vec<(f64, usize, f64, f64)>,
    /// How well the score ranks right above wrong calls; `None` when the
    /// data holds only right or only wrong calls.
    #[serde(default)]
    pub auroc: Option<f64>,
}

impl CalibrationReport {
    pub fn of(pairs: &[(f64, bool)]) -> Self {
        let n = pairs.len();
        let mut bins = vec![(0usize, 0.0f64, 0.0f64); 10];
        let mut brier = 0.0;
        for &(s, y) in pairs {
            let yv = f64::from(u8::from(y));
            brier += (s - yv).powi(2);
            let b = ((s * 10.0) as usize).min(9);
            bins[b].0 += 1;
            bins[b].1 += s;
            bins[b].2 += yv;
        }
        let m = n.max(1) as f64;
        let ece = bins.iter().filter(|b| b.0 > 0).map(|(c, s, y)| (*c as f64 / m) * (s / *c as f64 - y / *c as f64).abs()).sum();
        let bins = bins
            .iter()
            .enumerate()
            .filter(|(_, b)| b.0 > 0)
            .map(|(i, (c, s, y))| (i as f64 / 10.0, *c, s / *c as f64, y / *c as f64))
            .collect();
        let auroc = Some(netgpt_core::stats::auroc(pairs)).filter(|a| !a.is_nan());
        Self { n, ece, brier: brier / m, bins, auroc }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Proposals whose correctness depends on the mean log-prob through a
    /// known, deliberately miscalibrated link (so calibration has work to do).
    pub fn synthetic(n: usize, seed: u64) -> Vec<Labelled> {
        labelled(n, seed, |_, rng| {
            let lp: f64 = -rng.random_range(0.0..1.5f64).powi(2);
            let valid = rng.random_bool(0.97);
            let p_right = if valid { sigmoid(6.0 * lp + 4.0).powf(2.0) } else { 0.0 };
            (ProposalFeatures { mean_logprob: lp, min_logprob: 3.0 * lp, mean_entropy: -lp * 0.8, schema_valid: valid, output_tokens: 20.0, unknown_word_share: None, tool: None }, p_right)
        })
    }

    /// `n` proposals from `draw` (the i-th's features and its chance of being
    /// right), each labelled by a coin with that chance.
    fn labelled(n: usize, seed: u64, draw: impl Fn(usize, &mut StdRng) -> (ProposalFeatures, f64)) -> Vec<Labelled> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n)
            .map(|i| {
                let (f, p_right) = draw(i, &mut rng);
                (f, rng.random_bool(p_right))
            })
            .collect()
    }

    #[test]
    fn isotonic_calibration_lowers_the_calibration_error_on_fresh_data() {
        let (train, cal, test) = (synthetic(3000, 1), synthetic(3000, 2), synthetic(3000, 3));
        let raw = Scorer::fit("raw", &train, &cal, CalibrationMethod::None);
        let iso = Scorer::fit("iso", &train, &cal, CalibrationMethod::Isotonic);
        let platt = Scorer::fit("platt", &train, &cal, CalibrationMethod::Platt);
        let (r, i, p) = (raw.report(&test), iso.report(&test), platt.report(&test));
        assert!(i.ece < 0.04, "isotonic ECE {}", i.ece);
        assert!(i.ece <= r.ece + 0.01 && p.ece <= r.ece + 0.01, "raw {} iso {} platt {}", r.ece, i.ece, p.ece);
        // The score ranks: right proposals score higher on average.
        let mean = |right: bool| {
            let v: Vec<f64> = test.iter().filter(|(_, y)| *y == right).map(|(f, _)| iso.score(f)).collect();
            v.iter().sum::<f64>() / v.len() as f64
        };
        assert!(mean(true) > mean(false) + 0.3);
    }

    #[test]
    fn scores_stay_in_range_for_extreme_features_and_survive_json() {
        let s = Scorer::fit("v1", &synthetic(500, 4), &synthetic(500, 5), CalibrationMethod::Isotonic);
        for f in [
            ProposalFeatures { mean_logprob: f64::NEG_INFINITY, min_logprob: f64::NEG_INFINITY, mean_entropy: f64::NAN, schema_valid: true, output_tokens: 0.0, unknown_word_share: Some(f64::NAN), tool: Some("never_seen".into()) },
            ProposalFeatures { mean_logprob: 0.0, min_logprob: 0.0, mean_entropy: 0.0, schema_valid: true, output_tokens: 1e9, unknown_word_share: Some(7.0), tool: None },
        ] {
            let v = s.score(&f);
            assert!((0.0..=1.0).contains(&v), "{v}");
        }
        let back: Scorer = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn the_tool_named_carries_its_own_reliability() {
        // Equal token statistics; calls of one tool are mostly right, of the other mostly wrong.
        let draw = |n: usize, seed: u64| {
            labelled(n, seed, |i, _| {
                let tool = if i % 2 == 0 { "get_site_status" } else { "list_alarms" };
                (ProposalFeatures { mean_logprob: -0.01, min_logprob: -0.05, mean_entropy: 0.02, schema_valid: true, output_tokens: 9.0, unknown_word_share: Some(0.1), tool: Some(tool.into()) }, if i % 2 == 0 { 0.95 } else { 0.4 })
            })
        };
        let s = Scorer::fit("t", &draw(1000, 1), &draw(1000, 2), CalibrationMethod::Isotonic);
        let score = |tool: &str| s.score(&ProposalFeatures { tool: Some(tool.into()), ..draw(1, 3)[0].0.clone() });
        assert!(score("get_site_status") > score("list_alarms") + 0.3, "{} {}", score("get_site_status"), score("list_alarms"));
    }

    #[test]
    fn a_scorer_fitted_on_fewer_features_is_refused_by_name() {
        let s = Scorer::fit("v-old", &synthetic(200, 4), &synthetic(200, 5), CalibrationMethod::Isotonic);
        let mut saved = serde_json::to_value(&s).unwrap();
        for key in ["mean", "std", "weights"] {
            saved[key].as_array_mut().unwrap().pop();
        }
        let err = serde_json::from_value::<Scorer>(saved).unwrap_err().to_string();
        assert!(err.contains("v-old") && err.contains("5 features"), "{err}");
    }

    #[test]
    fn unfamiliar_phrasing_ranks_proposals_whose_token_probabilities_do_not() {
        // Confident tokens whatever the outcome; only the share of unknown
        // words says which calls are likely wrong.
        let draw = |n: usize, seed: u64| {
            labelled(n, seed, |_, rng| {
                let u: f64 = rng.random_range(0.0..0.6);
                let lp = -rng.random_range(0.0..0.01);
                (ProposalFeatures { mean_logprob: lp, min_logprob: 5.0 * lp, mean_entropy: -lp, schema_valid: true, output_tokens: 14.0, unknown_word_share: Some(u), tool: None }, 1.0 - u * 1.5)
            })
        };
        let s = Scorer::fit("u", &draw(2000, 1), &draw(2000, 2), CalibrationMethod::Isotonic);
        let test = draw(2000, 3);
        let pairs: Vec<(f64, bool)> = test.iter().map(|(f, y)| (s.score(f), *y)).collect();
        let mean = |right: bool| pairs.iter().filter(|p| p.1 == right).map(|p| p.0).sum::<f64>() / pairs.iter().filter(|p| p.1 == right).count() as f64;
        assert!(mean(true) > mean(false) + 0.15, "right {} wrong {}", mean(true), mean(false));
    }

    #[test]
    fn pav_output_is_non_decreasing_and_averages_violators() {
        let mut pts = vec![(0.1, 0.0), (0.2, 1.0), (0.3, 0.0), (0.4, 1.0), (0.5, 1.0)];
        let (xs, ys) = isotonic_fit(&mut pts);
        assert!(ys.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(ys, vec![0.0, 0.5, 1.0]);
        assert!((xs[1] - 0.25).abs() < 1e-12);
        assert_eq!(interpolate(&xs, &ys, 0.0), 0.0);
        assert_eq!(interpolate(&xs, &ys, 1.0), 1.0);
    }
}
