//! The edge agent stage: `ToolRequest` in, `EdgeProposal` out; new weights
//! from `ModelUpdate` records, hot-reloaded (the old model keeps serving when
//! loading fails).

use std::path::{Path, PathBuf};

use netgpt_core::AnyRecord;
use netgpt_core::avro::TimestampMillis;
use netgpt_core::records::{EdgeProposal, ModelUpdate, ToolRequest};
use netgpt_core::stage::{Incoming, Outgoing, Rejection, Stage};
use netgpt_core::topics::{EDGE_PROPOSALS, MODEL_UPDATES, TOOL_REQUESTS};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use netgpt_core::fetch::RemoteFolders;

use crate::agent::{CONFIG_FILE, EdgeAgent, Proposal, ProposeError, TOKENIZER_FILE, WEIGHTS_FILE};
use crate::gguf::GgufEdge;

/// `[edge]` in netgpt.toml.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EdgeConfig {
    /// Model directory served at start-up (weights, config, tokenizer).
    pub model_dir: PathBuf,
    /// Version name of that model.
    pub model_version: String,
    /// Requests with a longer prompt are dead-lettered, not run.
    pub max_prompt_bytes: usize,
    /// Mask, while decoding, every token that would break the JSON or the tool's schema.
    pub constrained_decoding: bool,
    /// A pretrained GGUF chat model served instead of `model_dir` (see
    /// `gguf.rs`); empty: the native model. Trainer `ModelUpdate`s name native
    /// models, so a GGUF edge keeps its model when one arrives.
    #[serde(default)]
    pub gguf_file: PathBuf,
}

/// The model behind the stage: netgpt's own, or a pretrained GGUF chat model.
// One per stage and never moved on a hot path, so the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum EdgeModelBackend {
    Native(EdgeAgent),
    Gguf(GgufEdge),
}

impl EdgeModelBackend {
    fn version(&self) -> &str {
        match self {
            Self::Native(a) => &a.version,
            Self::Gguf(g) => &g.version,
        }
    }

    fn propose(&self, prompt: &str) -> Result<Proposal, ProposeError> {
        match self {
            Self::Native(a) => a.propose(prompt),
            Self::Gguf(g) => g.propose(prompt),
        }
    }
}

pub struct EdgeStage {
    agent: EdgeModelBackend,
    max_prompt_bytes: usize,
    constrained: bool,
    /// Where published models on an object store are read from.
    remote: RemoteFolders,
}

impl EdgeStage {
    pub fn new(mut agent: EdgeAgent, cfg: &EdgeConfig) -> Self {
        agent.constrained = cfg.constrained_decoding;
        Self::serving(EdgeModelBackend::Native(agent), cfg)
    }

    fn serving(agent: EdgeModelBackend, cfg: &EdgeConfig) -> Self {
        Self { agent, max_prompt_bytes: cfg.max_prompt_bytes, constrained: cfg.constrained_decoding, remote: RemoteFolders::new(Default::default()) }
    }

    /// Reads published models on an object store with these options (the lake's).
    pub fn with_remote(mut self, remote: RemoteFolders) -> Self {
        self.remote = remote;
        self
    }

    pub fn load(cfg: &EdgeConfig) -> anyhow::Result<Self> {
        if cfg.gguf_file.as_os_str().is_empty() {
            return Ok(Self::new(EdgeAgent::load(&cfg.model_dir, &cfg.model_version)?, cfg));
        }
        let gguf = GgufEdge::load(&cfg.gguf_file)?;
        tracing::info!(file = %cfg.gguf_file.display(), version = %gguf.version, "the edge serves a GGUF chat model (unconstrained decoding)");
        Ok(Self::serving(EdgeModelBackend::Gguf(gguf), cfg))
    }

    pub fn model_version(&self) -> &str {
        self.agent.version()
    }

    fn propose(&self, request: ToolRequest) -> Result<EdgeProposal, Rejection> {
        if request.prompt.len() > self.max_prompt_bytes {
            return Err(Rejection(format!("prompt is {} bytes; the edge accepts at most {}", request.prompt.len(), self.max_prompt_bytes)));
        }
        // Inference is CPU work: keep it off the async worker's critical section.
        let p = tokio::task::block_in_place(|| self.agent.propose(&request.prompt)).map_err(|e| match e {
            ProposeError::PromptTooLong { .. } => Rejection(e.to_string()),
            ProposeError::Model(m) => Rejection(format!("edge model failed on this request: {m}")),
        })?;
        Ok(proposal_record(request, self.agent.version(), p, TimestampMillis::now()))
    }

    /// Applies the newest edge update already on the compacted update topic, so
    /// a restarted edge serves the model it served before (its consumer group
    /// resumes after that update).
    pub async fn catch_up(&mut self, kafka: &netgpt_core::config::KafkaConfig) -> anyhow::Result<()> {
        let updates: Vec<ModelUpdate> = netgpt_core::bus::latest_per_key(kafka, MODEL_UPDATES, std::time::Duration::from_secs(10)).await?;
        if let Some(u) = updates.iter().filter(|u| u.channel == "edge").max_by_key(|u| u.published_at) {
            self.reload(u).await;
        }
        Ok(())
    }

    /// Loads the model an update names (from the object store when it is
    /// remote); on any failure the current model stays.
    pub async fn reload(&mut self, update: &ModelUpdate) {
        if update.version == self.agent.version() {
            return;
        }
        if let EdgeModelBackend::Gguf(g) = &self.agent {
            tracing::warn!(version = %update.version, "model update names a native model; the GGUF edge keeps serving {}", g.version);
            return;
        }
        let loaded = self.remote.load(&update.weights_uri, &[WEIGHTS_FILE, CONFIG_FILE, TOKENIZER_FILE], |dir| load_update_from(update, dir)).await;
        match loaded {
            Ok(mut agent) => {
                agent.constrained = self.constrained;
                tracing::info!(from = %self.agent.version(), to = %update.version, "edge model hot-reloaded");
                self.agent = EdgeModelBackend::Native(agent);
            }
            Err(e) => tracing::error!(version = %update.version, uri = %update.weights_uri, error = %e, "model update not loaded; keeping {}", self.agent.version()),
        }
    }
}

/// The record of `agent`'s proposal `p` for `request`, made at `at`.
pub fn proposal_record(request: ToolRequest, model_version: &str, p: crate::agent::Proposal, at: TimestampMillis) -> EdgeProposal {
    EdgeProposal {
        request,
        model_version: model_version.to_string(),
        call_json: p.call_json,
        tool_name: p.check.tool,
        schema_valid: p.check.valid,
        schema_error: p.check.error,
        mean_logprob: p.mean_logprob,
        min_logprob: p.min_logprob,
        mean_entropy: p.mean_entropy,
        output_tokens: p.output_tokens as i32,
        unknown_word_share: p.unknown_word_share,
        edge_latency_ms: p.latency.as_secs_f64() * 1e3,
        proposed_at: at,
    }
}

/// The model an update names (a local folder), after checking its weights against the update's sha256.
pub fn load_update(update: &ModelUpdate) -> anyhow::Result<EdgeAgent> {
    load_update_from(update, &netgpt_core::config::local_path(&update.weights_uri)?)
}

/// The model of `update` from `dir` (a local copy of its folder), checked against the update's sha256.
pub fn load_update_from(update: &ModelUpdate, dir: &Path) -> anyhow::Result<EdgeAgent> {
    let digest = sha256_file(&dir.join(WEIGHTS_FILE))?;
    anyhow::ensure!(digest == update.weights_sha256, "weights checksum {digest} != {} named in the update", update.weights_sha256);
    EdgeAgent::load(dir, &update.version)
}

pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect())
}

impl Stage for EdgeStage {
    fn name(&self) -> &str {
        "edge"
    }

    fn input_topics(&self) -> Vec<String> {
        vec![TOOL_REQUESTS.into(), MODEL_UPDATES.into()]
    }

    async fn handle(&mut self, input: Incoming<'_>) -> Result<Vec<Outgoing>, Rejection> {
        match input.record {
            AnyRecord::ToolRequest(r) => Ok(vec![Outgoing::new(EDGE_PROPOSALS, self.propose(r)?)]),
            AnyRecord::ModelUpdate(u) => {
                self.reload(&u).await;
                Ok(Vec::new())
            }
            other => Err(Rejection(format!("the edge stage takes ToolRequest and ModelUpdate records, not {}", other.record_name()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    /// With `edge.gguf_file` set the stage serves the GGUF model: proposals
    /// carry its version, and a (native) model update leaves it in place.
    /// Skipped without the SmolLM2 file (`infra/smollm2.sh`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_gguf_edge_proposes_under_its_own_version_and_keeps_it_on_native_updates() {
        let Some(path) = crate::gguf::tests::smollm2() else {
            eprintln!("skipped: no SmolLM2 GGUF (run infra/smollm2.sh or set NETGPT_GGUF)");
            return;
        };
        let cfg = EdgeConfig { model_dir: PathBuf::from("/nonexistent"), model_version: "unused".into(), max_prompt_bytes: 512, constrained_decoding: true, gguf_file: path };
        let mut stage = EdgeStage::load(&cfg).unwrap();
        assert_eq!(stage.model_version(), "SmolLM2-135M-Instruct.Q4_1");
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut request = netgpt_core::samples::tool_request(&mut rng);
        request.prompt = "list alarms at site S012".into();
        let proposal = stage.propose(request).unwrap();
        assert_eq!(proposal.model_version, "SmolLM2-135M-Instruct.Q4_1");
        assert!(proposal.output_tokens > 0 && proposal.mean_logprob <= 0.0);
        stage.reload(&netgpt_core::samples::model_update(&mut rng)).await;
        assert_eq!(stage.model_version(), "SmolLM2-135M-Instruct.Q4_1");
    }
}
