//! netgpt-router: keep the edge answer or fall back to the cloud, request by
//! request, from the proposal's score and the live network state of its site.
//!
//! - [`network`]: network state S, pricing schedules, the fallback cost ΔC(S, x);
//! - [`trace`]: time-varying link traces (Markov regimes + diurnal drift);
//! - [`scorer`]: calibrated score s from the proposal's features;
//! - [`policy`]: the policies (all-edge, all-cloud, fixed τ, RouteLLM-style,
//!   FuncDyn, PolicyNet, oracle), pure and IO-free;
//! - [`oracle`], [`fit`], [`policynet`], [`textclf`]: τ* and the fits;
//! - [`bundle`]: the fitted scorer and policies as files;
//! - [`stage`]: the router stage on the bus.

pub mod bundle;
pub mod fit;
pub mod network;
pub mod oracle;
pub mod policy;
pub mod policynet;
pub mod scorer;
pub mod stage;
pub mod textclf;
pub mod trace;

use serde::{Deserialize, Serialize};

pub use network::{CostModel, SiteState};
pub use stage::RouterConfig;

/// `[network]` of netgpt.toml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkConfig {
    /// Telemetry older than this (relative to the proposal) is stale (ms).
    pub stale_after_ms: i64,
    /// The state assumed for a site with stale or no telemetry.
    pub unknown_site: SiteState,
    pub regimes: network::Regimes,
    pub trace: trace::TraceConfig,
}

/// The sections of netgpt.toml the router, the cloud simulation and the
/// evaluation share: `[network]`, `[cost]`, `[router]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouterSettings {
    pub network: NetworkConfig,
    pub cost: CostModel,
    pub router: RouterConfig,
}

impl RouterSettings {
    /// The compiled-in defaults (tests, benchmarks).
    pub fn defaults() -> Self {
        // The defaults file is compiled in and parsed by a test: a failure is a build defect.
        #[allow(clippy::expect_used)]
        netgpt_core::config::defaults_of().expect("the default router settings parse")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_settings_parse() {
        let s = super::RouterSettings::defaults();
        assert!(s.cost.price_schedules.len() >= 2);
        assert!(s.network.unknown_site.rtt_ms >= s.network.regimes.bad.rtt_ms, "the unknown state is at least as bad as BAD");
    }
}
