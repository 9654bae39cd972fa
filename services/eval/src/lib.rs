//! netgpt-eval: the experiments that show what netgpt's routing and training
//! buy, run in-process over the same edge model, router, simulated cloud,
//! datasets and trainer code the services run (no Kafka in the loop).
//!
//! - [`tally`]: the observer that checks final answers against the requests'
//!   reference calls (also behind the demo's summary);
//! - [`rl_rounds`]: online trainer rounds on the traffic the edge served.

pub mod rl_rounds;
pub mod tally;
