//! Time-varying links: each site's link switches between the GOOD / MID / BAD
//! regimes as a Markov chain and drifts with a diurnal load cycle, plus
//! measurement jitter. `netgpt loadgen` turns these traces into `SiteTelemetry`;
//! the evaluation replays them in-process.

use netgpt_core::records::LinkRegime;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::network::{Regimes, SiteState};

/// `[network.trace]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceConfig {
    /// `static`: each site stays in one regime (site i gets regime i mod 3);
    /// `markov`: regimes switch at random.
    pub kind: TraceKind,
    /// Mean regime switches per site per minute (markov).
    pub switches_per_minute: f64,
    /// Relative load swing of the diurnal cycle: at peak load bandwidth drops
    /// and RTT grows by this fraction.
    pub diurnal_amplitude: f64,
    /// Length of one "day" of the cycle in seconds (compressed for demos).
    pub diurnal_period_s: f64,
    /// Relative measurement jitter of each reading.
    pub jitter: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TraceKind {
    Static,
    Markov,
}

/// One site's link over time.
#[derive(Debug, Clone)]
pub struct LinkTrace {
    pub regime: LinkRegime,
    price_schedule: String,
    phase: f64,
    cfg: TraceConfig,
}

impl LinkTrace {
    /// Site `index`'s trace: the starting regime cycles GOOD, MID, BAD over
    /// sites, the diurnal phase is spread over sites, and even sites pay the
    /// flat price, odd ones peak/off-peak.
    pub fn for_site(index: u32, cfg: &TraceConfig) -> Self {
        Self {
            regime: LinkRegime::VARIANTS[index as usize % LinkRegime::VARIANTS.len()],
            price_schedule: if index.is_multiple_of(2) { "flat" } else { "peak-offpeak" }.into(),
            phase: f64::from(index) * 0.37,
            cfg: cfg.clone(),
        }
    }

    pub fn price_schedule(&self) -> &str {
        &self.price_schedule
    }

    /// Advances the chain by `dt_s` seconds (markov traces only).
    pub fn step<R: Rng>(&mut self, rng: &mut R, dt_s: f64) {
        if self.cfg.kind != TraceKind::Markov || self.cfg.switches_per_minute <= 0.0 {
            return;
        }
        let p_switch = 1.0 - (-self.cfg.switches_per_minute / 60.0 * dt_s).exp();
        if rng.random_bool(p_switch.clamp(0.0, 1.0)) {
            // Links degrade and recover through MID: GOOD <-> MID <-> BAD, MID goes either way.
            self.regime = match self.regime {
                LinkRegime::Good | LinkRegime::Bad => LinkRegime::Mid,
                LinkRegime::Mid if rng.random_bool(0.5) => LinkRegime::Good,
                LinkRegime::Mid => LinkRegime::Bad,
            };
        }
    }

    /// Diurnal load in [0, 1] at time `t_s`.
    pub fn load(&self, t_s: f64) -> f64 {
        if self.cfg.diurnal_period_s <= 0.0 {
            return 0.0;
        }
        0.5 * (1.0 - (std::f64::consts::TAU * t_s / self.cfg.diurnal_period_s + self.phase).cos())
    }

    /// The state a measurement at `t_s` reads.
    pub fn observe<R: Rng>(&self, rng: &mut R, t_s: f64, regimes: &Regimes) -> SiteState {
        let p = regimes.preset(self.regime);
        let load = self.cfg.diurnal_amplitude * self.load(t_s);
        let j = self.cfg.jitter.abs();
        let mut jitter = || if j > 0.0 { rng.random_range(1.0 - j..1.0 + j) } else { 1.0 };
        SiteState {
            uplink_mbps: p.uplink_mbps * (1.0 - load) * jitter(),
            downlink_mbps: p.downlink_mbps * (1.0 - load) * jitter(),
            rtt_ms: p.rtt_ms * (1.0 + load) * jitter(),
            loss_rate: p.loss_rate,
            price_schedule: self.price_schedule.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn cfg(kind: TraceKind) -> TraceConfig {
        TraceConfig { kind, switches_per_minute: 6.0, diurnal_amplitude: 0.3, diurnal_period_s: 120.0, jitter: 0.05 }
    }

    #[test]
    fn markov_traces_visit_every_regime_and_static_ones_stay() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut t = LinkTrace::for_site(0, &cfg(TraceKind::Markov));
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2000 {
            t.step(&mut rng, 1.0);
            seen.insert(t.regime);
        }
        assert_eq!(seen.len(), 3);
        let mut s = LinkTrace::for_site(2, &cfg(TraceKind::Static));
        for _ in 0..100 {
            s.step(&mut rng, 1.0);
        }
        assert_eq!(s.regime, LinkRegime::Bad);
    }

    #[test]
    fn peak_load_slows_the_link() {
        let regimes = crate::network::tests::regimes();
        let mut c = cfg(TraceKind::Static);
        c.jitter = 0.0;
        let t = LinkTrace::for_site(0, &c);
        let (quiet_t, busy_t) = ((0..120).map(f64::from).min_by(|a, b| t.load(*a).total_cmp(&t.load(*b))).unwrap(), (0..120).map(f64::from).max_by(|a, b| t.load(*a).total_cmp(&t.load(*b))).unwrap());
        let mut rng = StdRng::seed_from_u64(1);
        let (quiet, busy) = (t.observe(&mut rng, quiet_t, &regimes), t.observe(&mut rng, busy_t, &regimes));
        assert!(busy.rtt_ms > quiet.rtt_ms && busy.uplink_mbps < quiet.uplink_mbps);
    }
}
