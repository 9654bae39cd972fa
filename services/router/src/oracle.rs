//! The oracle threshold τ*(S), computed numerically.
//!
//! From an empirical score distribution {(s_i, q_i)} (q_i the edge's outcome)
//! the design note's expected utility of threshold τ at fallback cost ΔC is
//!
//!   J(τ) = ∫_{s<τ} (q_c − ΔC) f(s) ds + ∫_{s≥τ} m(s) f(s) ds,
//!   dJ/dτ = f(τ) · (q_c − ΔC − m(τ)),
//!
//! with f the score density and m(s) = E[Q_edge | s]. Both are estimated with
//! a logistic kernel of bandwidth h: f by a kernel density estimate (positive
//! everywhere, the regularity assumption of the design note), m by kernel
//! regression of the outcomes on the scores, or m(s) = s under the calibrated
//! premise. J is evaluated on a fine grid of τ; the number of local maxima is
//! reported so tests and the evaluation can check uniqueness.

use serde::{Deserialize, Serialize};

use crate::scorer::sigmoid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreDistribution {
    /// (score, edge outcome in [0, 1]).
    pub samples: Vec<(f64, f64)>,
    /// Kernel bandwidth h.
    pub bandwidth: f64,
    /// The calibrated premise: E[Q_edge | s] = s (the outcomes are not used).
    #[serde(default)]
    pub calibrated: bool,
}

/// The maximiser of J and what the search saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TauStar {
    pub tau: f64,
    pub utility: f64,
    /// Strict local maxima of J on the grid (1 for a unique maximiser).
    pub local_maxima: usize,
}

/// The logistic kernel's density at `u` for bandwidth `h`.
fn kernel(u: f64, h: f64) -> f64 {
    let z = sigmoid(u / h);
    z * (1.0 - z) / h
}

impl ScoreDistribution {
    /// The calibrated premise over these scores: E[Q_edge | s] = s.
    pub fn calibrated(scores: &[f64], bandwidth: f64) -> Self {
        Self { samples: scores.iter().map(|&s| (s, s)).collect(), bandwidth, calibrated: true }
    }

    /// Outcomes as labelled: E[Q_edge | s] by kernel regression.
    pub fn labelled(samples: Vec<(f64, f64)>, bandwidth: f64) -> Self {
        Self { samples, bandwidth, calibrated: false }
    }

    /// The density weight w_j and gain-side value m_j at grid points x_j = j/steps.
    fn grid(&self, steps: usize) -> (Vec<f64>, Vec<f64>) {
        let h = self.bandwidth.max(1e-6);
        let mut w = Vec::with_capacity(steps + 1);
        let mut m = Vec::with_capacity(steps + 1);
        for j in 0..=steps {
            let x = j as f64 / steps as f64;
            let (mut density, mut outcome) = (0.0, 0.0);
            for &(s, q) in &self.samples {
                let k = kernel(x - s, h);
                density += k;
                outcome += k * q;
            }
            w.push(density);
            m.push(if self.calibrated { x } else if density > 0.0 { outcome / density } else { 0.0 });
        }
        let total: f64 = w.iter().sum();
        if total > 0.0 {
            w.iter_mut().for_each(|v| *v /= total);
        }
        (w, m)
    }

    /// J(τ) on the grid τ_k = k/steps of `grid`: (q_c − ΔC) over the mass below τ_k, m over the mass at and above it.
    fn utilities((w, m): &(Vec<f64>, Vec<f64>), q_cloud: f64, delta: f64) -> Vec<f64> {
        let mut above: f64 = w.iter().zip(m).map(|(w, m)| w * m).sum();
        let mut below = 0.0;
        let mut js = Vec::with_capacity(w.len());
        for (wk, mk) in w.iter().zip(m) {
            js.push(below * (q_cloud - delta) + above);
            below += wk;
            above -= wk * mk;
        }
        js
    }

    /// J(τ) at one τ (on a 1/1000 grid).
    pub fn utility(&self, tau: f64, q_cloud: f64, delta: f64) -> f64 {
        let steps = 1000;
        let js = Self::utilities(&self.grid(steps), q_cloud, delta);
        js[((tau.clamp(0.0, 1.0) * steps as f64).round() as usize).min(steps)]
    }

    /// Grid search over τ ∈ [0, 1] with `steps` intervals.
    pub fn tau_star(&self, q_cloud: f64, delta: f64, steps: usize) -> TauStar {
        let steps = steps.max(2);
        Self::search(&Self::utilities(&self.grid(steps), q_cloud, delta))
    }

    fn search(js: &[f64]) -> TauStar {
        let steps = js.len().saturating_sub(1).max(1);
        let (best, &utility) = js.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap_or((0, &f64::NAN));
        // Runs of values equal up to rounding form one plateau; a plateau is a
        // local maximum when its neighbours (if any) are both lower.
        let eps = 1e-12;
        let mut runs: Vec<f64> = Vec::new();
        for &j in js {
            if runs.last().is_none_or(|&r| (r - j).abs() > eps) {
                runs.push(j);
            }
        }
        let local_maxima = (0..runs.len())
            .filter(|&i| (i == 0 || runs[i - 1] < runs[i]) && (i + 1 == runs.len() || runs[i + 1] < runs[i]))
            .count();
        TauStar { tau: best as f64 / steps as f64, utility, local_maxima }
    }

    /// τ* tabulated over ΔC ∈ [0, max_delta] (the oracle policy's table).
    pub fn table(&self, q_cloud: f64, max_delta: f64, points: usize) -> Vec<(f64, f64)> {
        let grid = self.grid(400);
        (0..=points.max(1))
            .map(|i| {
                let d = max_delta * i as f64 / points.max(1) as f64;
                (d, Self::search(&Self::utilities(&grid, q_cloud, d)).tau)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::tests::{cost_model, regimes, shape};
    use crate::network::SiteState;
    use netgpt_core::records::LinkRegime;
    use proptest::prelude::*;

    /// A score sample from a Beta-like mixture: mostly confident, some not.
    fn scores(n: usize, a: f64, b: f64, seed: u64) -> Vec<f64> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n).map(|_| {
            let u: f64 = rng.random::<f64>();
            if rng.random_bool(0.7) { u.powf(1.0 / a) } else { u.powf(b) }
        }).collect()
    }

    fn dist(seed: u64) -> ScoreDistribution {
        ScoreDistribution::calibrated(&scores(1000, 4.0, 2.0, seed), 0.01)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Uniqueness: J has one local maximum, at the first-order balance
        /// g(τ*) = ΔC, i.e. τ* = q_c − ΔC for a calibrated score (clipped).
        #[test]
        fn tau_star_is_unique_and_balances_gain_against_cost(seed in 0u64..1000, q_c in 0.6f64..1.0, delta in 0.0f64..1.2) {
            let d = dist(seed);
            let t = d.tau_star(q_c, delta, 1000);
            prop_assert_eq!(t.local_maxima, 1);
            let closed = (q_c - delta).clamp(0.0, 1.0);
            prop_assert!((t.tau - closed).abs() <= 0.011, "numeric {} vs closed form {}", t.tau, closed);
        }

        /// Monotone signs: τ* falls as RTT or price rises and rises with bandwidth.
        #[test]
        fn tau_star_moves_the_right_way_with_the_network(seed in 0u64..1000, rtt in 10f64..400.0, bw in 1f64..200.0, q_c in 0.8f64..1.0) {
            let d = dist(seed);
            let c = cost_model();
            let tau = |s: &SiteState| d.tau_star(q_c, c.fallback_cost(s, &shape(), 0).delta, 1000).tau;
            let mut s = regimes().state(LinkRegime::Mid, "flat");
            s.rtt_ms = rtt;
            s.uplink_mbps = bw;
            s.downlink_mbps = 2.0 * bw;
            let base = tau(&s);
            let mut slower = s.clone();
            slower.rtt_ms = rtt * 1.5 + 20.0;
            let mut wider = s.clone();
            wider.uplink_mbps = bw * 4.0;
            wider.downlink_mbps = bw * 8.0;
            let mut dearer = s.clone();
            dearer.price_schedule = "premium".into(); // unknown: priced at the dearest schedule
            prop_assert!(tau(&slower) <= base, "RTT up: {} -> {}", base, tau(&slower));
            prop_assert!(tau(&wider) >= base, "bandwidth up: {} -> {}", base, tau(&wider));
            prop_assert!(tau(&dearer) <= base);
        }
    }

    #[test]
    fn strictly_monotone_where_the_optimum_is_interior() {
        let d = dist(7);
        let c = cost_model();
        let mut last = f64::INFINITY;
        for rtt in [10.0, 60.0, 120.0, 200.0, 300.0] {
            let mut s = regimes().state(LinkRegime::Mid, "flat");
            s.rtt_ms = rtt;
            let t = d.tau_star(0.97, c.fallback_cost(&s, &shape(), 0).delta, 1000).tau;
            assert!(t > 0.0 && t < 1.0, "interior at rtt {rtt}: {t}");
            assert!(t < last, "rtt {rtt}: {t} !< {last}");
            last = t;
        }
    }

    #[test]
    fn the_table_follows_the_closed_form() {
        let table = dist(3).table(0.95, 1.0, 10);
        // The table's grid is 1/400: allow one step beside the kernel's bias.
        for (d, t) in table {
            assert!((t - (0.95 - d).clamp(0.0, 1.0)).abs() <= 0.011, "ΔC {d}: {t}");
        }
    }
}
