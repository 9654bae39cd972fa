//! The network and cost model of the design note: a site's network state S,
//! pricing schedules, and the fallback cost
//!
//! ΔC(S, x) = λ_lat · (RTT + 8·(bytes_up + bytes_down)/B + T_cloud(x)) + λ_price · price(x)
//!
//! with two refinements a real link needs: a call costs a few round trips
//! (connection reuse, request, response), and lost packets cost retransmission
//! timeouts. Everything here is pure arithmetic, shared by the router, the
//! simulated cloud and the evaluation, so they all price a fallback the same way.

use netgpt_core::records::{LinkRegime, NetworkSnapshot, SiteTelemetry, ToolRequest};
use serde::{Deserialize, Serialize};

/// The network state S of one site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteState {
    pub uplink_mbps: f64,
    pub downlink_mbps: f64,
    pub rtt_ms: f64,
    pub loss_rate: f64,
    pub price_schedule: String,
}

impl SiteState {
    pub fn from_telemetry(t: &SiteTelemetry) -> Self {
        Self { uplink_mbps: t.uplink_mbps, downlink_mbps: t.downlink_mbps, rtt_ms: t.rtt_ms, loss_rate: t.loss_rate, price_schedule: t.price_schedule_id.clone() }
    }

    pub fn snapshot(&self, telemetry_age_ms: Option<i64>, conservative_default: bool) -> NetworkSnapshot {
        NetworkSnapshot {
            uplink_mbps: self.uplink_mbps,
            downlink_mbps: self.downlink_mbps,
            rtt_ms: self.rtt_ms,
            loss_rate: self.loss_rate,
            price_schedule_id: self.price_schedule.clone(),
            telemetry_age_ms,
            conservative_default,
        }
    }

    pub fn from_snapshot(s: &NetworkSnapshot) -> Self {
        Self { uplink_mbps: s.uplink_mbps, downlink_mbps: s.downlink_mbps, rtt_ms: s.rtt_ms, loss_rate: s.loss_rate, price_schedule: s.price_schedule_id.clone() }
    }
}

/// A named link preset (the GOOD / MID / BAD regimes of the design note).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkPreset {
    pub uplink_mbps: f64,
    pub downlink_mbps: f64,
    pub rtt_ms: f64,
    pub loss_rate: f64,
}

/// `[network.regimes]`: the link presets per regime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Regimes {
    pub good: LinkPreset,
    pub mid: LinkPreset,
    pub bad: LinkPreset,
}

impl Regimes {
    pub fn preset(&self, r: LinkRegime) -> &LinkPreset {
        match r {
            LinkRegime::Good => &self.good,
            LinkRegime::Mid => &self.mid,
            LinkRegime::Bad => &self.bad,
        }
    }

    pub fn state(&self, r: LinkRegime, price_schedule: &str) -> SiteState {
        let p = self.preset(r);
        SiteState { uplink_mbps: p.uplink_mbps, downlink_mbps: p.downlink_mbps, rtt_ms: p.rtt_ms, loss_rate: p.loss_rate, price_schedule: price_schedule.into() }
    }
}

/// A cloud price list: per 1k input and output tokens, optionally higher in a
/// daily peak window (UTC hours, `start <= hour < end`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceSchedule {
    pub id: String,
    pub input_per_1k: f64,
    pub output_per_1k: f64,
    #[serde(default)]
    pub peak_start_hour: Option<u32>,
    #[serde(default)]
    pub peak_end_hour: Option<u32>,
    #[serde(default = "one")]
    pub peak_multiplier: f64,
}

fn one() -> f64 {
    1.0
}

impl PriceSchedule {
    /// Price multiplier at `at_ms` (Unix milliseconds).
    pub fn multiplier_at(&self, at_ms: i64) -> f64 {
        let hour = (at_ms.div_euclid(3_600_000)).rem_euclid(24) as u32;
        match (self.peak_start_hour, self.peak_end_hour) {
            (Some(s), Some(e)) if (s <= e && (s..e).contains(&hour)) || (s > e && (hour >= s || hour < e)) => self.peak_multiplier,
            _ => 1.0,
        }
    }

    pub fn price(&self, tokens_in: f64, tokens_out: f64, at_ms: i64) -> f64 {
        (tokens_in * self.input_per_1k + tokens_out * self.output_per_1k) / 1000.0 * self.multiplier_at(at_ms)
    }
}

/// What a request sends and receives if it falls back to the cloud.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RequestShape {
    pub upload_bytes: f64,
    pub download_bytes: f64,
    pub tokens_in: f64,
    pub tokens_out: f64,
}

impl RequestShape {
    /// Bytes per token of the prompt and catalog, a common rule of thumb for English and JSON.
    pub const BYTES_PER_TOKEN: f64 = 4.0;

    pub fn of(r: &ToolRequest) -> Self {
        Self {
            upload_bytes: r.upload_bytes.max(0) as f64,
            download_bytes: r.download_bytes.max(0) as f64,
            tokens_in: r.upload_bytes.max(0) as f64 / Self::BYTES_PER_TOKEN,
            tokens_out: f64::from(r.expected_output_tokens.max(1)),
        }
    }
}

/// `[cost]`: the fallback cost's coefficients and the cloud's timing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostModel {
    /// λ_lat: quality units per second of added latency.
    pub lambda_latency_per_s: f64,
    /// λ_price: quality units per currency unit spent on the cloud.
    pub lambda_price: f64,
    /// Round trips a cloud call costs on the site's link.
    pub round_trips_per_call: f64,
    /// Retransmission timeout a lost packet costs (ms).
    pub retransmit_timeout_ms: f64,
    /// Bytes per packet on the wire.
    pub packet_bytes: f64,
    /// Cloud model time to first token (ms).
    pub cloud_first_token_ms: f64,
    /// Cloud model time per output token (ms).
    pub cloud_ms_per_output_token: f64,
    pub price_schedules: Vec<PriceSchedule>,
}

/// ΔC and its parts for one request in one state.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FallbackCost {
    /// Network time of the cloud call (s).
    pub network_s: f64,
    /// Of which transfer time 8·bytes/B (s), FuncDyn's bytes/B feature.
    pub transfer_s: f64,
    /// Cloud model time (s).
    pub cloud_s: f64,
    /// Currency units.
    pub price: f64,
    /// ΔC in quality units.
    pub delta: f64,
}

impl FallbackCost {
    pub fn latency_s(&self) -> f64 {
        self.network_s + self.cloud_s
    }
}

impl CostModel {
    pub fn schedule(&self, id: &str) -> Option<&PriceSchedule> {
        self.price_schedules.iter().find(|s| s.id == id)
    }

    /// The dearest schedule's price, used for a site whose schedule is unknown.
    fn dearest(&self, shape: &RequestShape, at_ms: i64) -> f64 {
        self.price_schedules.iter().map(|s| s.price(shape.tokens_in, shape.tokens_out, at_ms)).fold(0.0, f64::max)
    }

    pub fn fallback_cost(&self, s: &SiteState, x: &RequestShape, at_ms: i64) -> FallbackCost {
        // Bandwidth floors keep a zero reading (a dead link) finite: it just becomes very dear.
        let up_bps = (s.uplink_mbps * 1e6).max(1e3);
        let down_bps = (s.downlink_mbps * 1e6).max(1e3);
        let transfer_s = 8.0 * x.upload_bytes / up_bps + 8.0 * x.download_bytes / down_bps;
        let packets = ((x.upload_bytes + x.download_bytes) / self.packet_bytes).ceil();
        let retransmit_s = packets * s.loss_rate.clamp(0.0, 1.0) * self.retransmit_timeout_ms / 1e3;
        let network_s = self.round_trips_per_call * s.rtt_ms.max(0.0) / 1e3 + transfer_s + retransmit_s;
        let cloud_s = (self.cloud_first_token_ms + self.cloud_ms_per_output_token * x.tokens_out) / 1e3;
        let price = match self.schedule(&s.price_schedule) {
            Some(p) => p.price(x.tokens_in, x.tokens_out, at_ms),
            None => self.dearest(x, at_ms),
        };
        let delta = self.lambda_latency_per_s * (network_s + cloud_s) + self.lambda_price * price;
        FallbackCost { network_s, transfer_s, cloud_s, price, delta }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn cost_model() -> CostModel {
        crate::RouterSettings::defaults().cost
    }

    pub fn regimes() -> Regimes {
        crate::RouterSettings::defaults().network.regimes
    }

    pub fn shape() -> RequestShape {
        RequestShape { upload_bytes: 6100.0, download_bytes: 300.0, tokens_in: 1525.0, tokens_out: 30.0 }
    }

    #[test]
    fn fallback_cost_grows_with_rtt_and_loss_and_falls_with_bandwidth() {
        let c = cost_model();
        let base = regimes().state(LinkRegime::Mid, "flat");
        let d = |s: &SiteState| c.fallback_cost(s, &shape(), 0).delta;
        let mut slower = base.clone();
        slower.rtt_ms *= 2.0;
        let mut lossy = base.clone();
        lossy.loss_rate = 0.05;
        let mut wider = base.clone();
        wider.uplink_mbps *= 4.0;
        wider.downlink_mbps *= 4.0;
        assert!(d(&slower) > d(&base));
        assert!(d(&lossy) > d(&base));
        assert!(d(&wider) < d(&base));
        let (good, bad) = (regimes().state(LinkRegime::Good, "flat"), regimes().state(LinkRegime::Bad, "flat"));
        assert!(d(&good) < d(&base) && d(&base) < d(&bad));
    }

    #[test]
    fn peak_hours_cost_more_and_unknown_schedules_take_the_dearest() {
        let c = cost_model();
        let s = c.schedule("peak-offpeak").unwrap();
        let (peak_start, peak_end) = (s.peak_start_hour.unwrap(), s.peak_end_hour.unwrap());
        let at = |h: u32| i64::from(h) * 3_600_000;
        assert_eq!(s.multiplier_at(at(peak_start)), s.peak_multiplier);
        assert_eq!(s.multiplier_at(at(peak_end)), 1.0);
        let mut state = regimes().state(LinkRegime::Good, "peak-offpeak");
        let peak = c.fallback_cost(&state, &shape(), at(peak_start)).price;
        let off = c.fallback_cost(&state, &shape(), at(peak_end)).price;
        assert!(peak > off);
        state.price_schedule = "nobody-knows".into();
        assert_eq!(c.fallback_cost(&state, &shape(), at(peak_start)).price, peak.max(c.fallback_cost(&regimes().state(LinkRegime::Good, "flat"), &shape(), 0).price));
    }
}
