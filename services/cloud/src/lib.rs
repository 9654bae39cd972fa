//! netgpt-cloud: the cloud side of a fallback. The gateway stage consumes
//! `CloudRequest`s and answers each through a backend: any OpenAI-compatible
//! chat-completions endpoint with tools ([`openai`]), or the built-in
//! simulation ([`simulated`]) for demos and experiments. When the cloud cannot
//! be reached the edge answer is used and flagged (network-down fallback).

pub mod breaker;
pub mod openai;
pub mod simulated;
pub mod stage;

use serde::{Deserialize, Serialize};

/// `[cloud]` in netgpt.toml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudConfig {
    /// `simulated` or `openai`.
    pub backend: BackendKind,
    /// Cloud calls in flight at once.
    pub max_concurrency: usize,
    pub openai: openai::OpenAiConfig,
    pub simulated: simulated::SimulatedConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Simulated,
    OpenAi,
}

/// A cloud model's answer to one request.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudAnswer {
    /// `{"tool": ..., "arguments": {...}}`.
    pub call_json: String,
    pub tokens_in: u32,
    pub tokens_out: u32,
    /// Wall-clock (or, simulated, modelled) time of the call.
    pub latency_ms: f64,
    /// Which model answered.
    pub model: String,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum CloudError {
    #[error("the cloud circuit is open after repeated failures; not calling")]
    CircuitOpen,
    #[error("cloud call failed after {attempts} attempt(s): {last}")]
    Unavailable { attempts: u32, last: String },
    #[error("the cloud answered but not with a usable tool call: {0}")]
    BadAnswer(String),
}

/// Something that answers tool-calling requests in the cloud.
pub trait CloudBackend: Send + Sync {
    fn name(&self) -> &str;
    fn answer<'a>(&'a self, request: &'a netgpt_core::records::CloudRequest) -> futures::future::BoxFuture<'a, Result<CloudAnswer, CloudError>>;
}

impl CloudConfig {
    /// The compiled-in `[cloud]` defaults (tests, benchmarks).
    pub fn defaults() -> Self {
        #[derive(Deserialize)]
        struct File {
            cloud: CloudConfig,
        }
        // The defaults file is compiled in and parsed by the tests: a failure is a build defect.
        #[allow(clippy::expect_used)]
        netgpt_core::config::defaults_of::<File>().expect("the default cloud settings parse").cloud
    }
}
