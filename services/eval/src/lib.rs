//! netgpt-eval: the experiments that show what netgpt's routing and training
//! buy, run in-process over the same edge model, router, simulated cloud,
//! datasets and trainer code the services run (no Kafka in the loop, except
//! in [`through_kafka`], which checks that the broker path gives the same
//! numbers).
//!
//! - [`frontier`]: success against cost and latency per link regime and
//!   price schedule, for every policy and the trade-off swept;
//! - [`dynamic`]: time-varying links, dynamic thresholds against the best
//!   fixed τ in hindsight;
//! - [`rl_rounds`]: online trainer rounds on the traffic the edge served;
//! - [`scorer_refresh`]: routing with and without periodic scorer refits;
//! - [`theorem`]: τ*(S) from the empirical score distribution;
//! - [`tally`]: the observer that checks final answers against the requests'
//!   reference calls (also behind the demo's summary);
//! - [`lab`], [`stats`], [`report`], [`plot`]: what they share.

pub mod dynamic;
pub mod frontier;
pub mod lab;
pub mod plot;
pub mod report;
pub mod rl_rounds;
pub mod scorer_refresh;
pub mod stats;
pub mod tally;
pub mod theorem;
pub mod through_kafka;

use netgpt_cloud::simulated::SimulatedConfig;
use netgpt_edge::stage::EdgeConfig;
use netgpt_router::RouterSettings;
use netgpt_trainer::TrainerConfig;

/// What the experiments run on: the configured edge model, router bundle,
/// simulated cloud and trainer settings.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub edge: EdgeConfig,
    pub router: RouterSettings,
    pub cloud: SimulatedConfig,
    pub trainer: TrainerConfig,
}
