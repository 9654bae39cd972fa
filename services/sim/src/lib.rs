//! netgpt-sim: the pipeline without Kafka.
//!
//! - [`traffic`]: tool requests from the workload generator and per-site
//!   telemetry from the link traces (also what `netgpt loadgen` produces);
//! - [`edge`]: a synthetic edge agent for logs too large to run the model on;
//! - [`offload`]: request → proposal → the real router's decision → edge
//!   answer or the simulated cloud's, in simulated time, written as the
//!   archiver would write it (Parquet per topic on the lake).

pub mod edge;
pub mod offload;
pub mod traffic;
