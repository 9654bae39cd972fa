//! Inference: KV-cached greedy decoding of a tool call, per-token
//! log-probabilities, the proposal features the scorer reads, and schema
//! validation of the result.

use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

use crate::catalog::{CallCheck, ToolCatalog};
use crate::constrain::CallGrammar;
use crate::model::{EdgeModel, KvCache, ModelConfig};
use crate::tokenizer::{EOS, Tokenizer};

pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const CONFIG_FILE: &str = "config.json";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const METRICS_FILE: &str = "metrics.json";

/// The most tokens a call may take.
pub const MAX_CALL_TOKENS: usize = 40;

/// One proposed call with its features.
#[derive(Debug, Clone)]
pub struct Proposal {
    pub call_json: String,
    pub check: CallCheck,
    pub mean_logprob: f64,
    pub min_logprob: f64,
    pub mean_entropy: f64,
    pub output_tokens: usize,
    /// Share of the request's words the model has no token for; `None` from a
    /// backend whose vocabulary covers every word (a byte-level BPE).
    pub unknown_word_share: Option<f64>,
    pub latency: Duration,
}

impl Proposal {
    /// A decoded call with the features the router's scorer reads, from its
    /// tokens' log-probabilities and entropies (one definition for every
    /// backend, so the scorer sees the same features from each).
    pub fn scored(catalog: &ToolCatalog, call_json: String, logprobs: &[f64], entropies: &[f64], unknown_word_share: Option<f64>, started: Instant) -> Self {
        let check = catalog.check_call(&call_json);
        let n = logprobs.len().max(1) as f64;
        Self {
            call_json,
            check,
            mean_logprob: logprobs.iter().sum::<f64>() / n,
            min_logprob: logprobs.iter().copied().fold(0.0, f64::min),
            mean_entropy: entropies.iter().sum::<f64>() / n,
            output_tokens: logprobs.len(),
            unknown_word_share,
            latency: started.elapsed(),
        }
    }
}

/// Greedy choice, its log-probability and the distribution's entropy (nats),
/// from one step's logits; masked tokens are -inf. Every backend decodes
/// with it, so their features are computed the same way.
pub fn greedy_step(logits: &[f32]) -> Option<(u32, f64, f64)> {
    // The first of equal maxima, as argmax conventionally picks.
    let (best, max) = logits.iter().enumerate().filter(|(_, l)| l.is_finite()).fold(None, |acc: Option<(usize, f32)>, (i, &l)| match acc {
        Some((_, m)) if m >= l => acc,
        _ => Some((i, l)),
    })?;
    let max = f64::from(max);
    let sum: f64 = logits.iter().filter(|l| l.is_finite()).map(|&l| (f64::from(l) - max).exp()).sum();
    let lse = max + sum.ln();
    // H = -Σ p log p = lse - Σ p l.
    let mean_logit: f64 = logits.iter().filter(|l| l.is_finite()).map(|&l| (f64::from(l) - lse).exp() * f64::from(l)).sum();
    Some((best as u32, max - lse, (lse - mean_logit).max(0.0)))
}

#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    #[error("the prompt takes {tokens} tokens; the edge model reads at most {max}")]
    PromptTooLong { tokens: usize, max: usize },
    #[error("model error: {0}")]
    Model(#[from] candle_core::Error),
}

pub struct EdgeAgent {
    pub model: EdgeModel,
    pub varmap: VarMap,
    pub tokenizer: Tokenizer,
    pub version: String,
    /// Mask tokens that would break the JSON or the tool's schema.
    pub constrained: bool,
    catalog: &'static ToolCatalog,
}

impl EdgeAgent {
    pub fn new(model: EdgeModel, varmap: VarMap, tokenizer: Tokenizer, version: impl Into<String>) -> Self {
        Self { model, varmap, tokenizer, version: version.into(), constrained: false, catalog: ToolCatalog::embedded() }
    }

    /// Loads a model directory written by `netgpt train sft` (or the trainer).
    pub fn load(dir: &Path, version: impl Into<String>) -> anyhow::Result<Self> {
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).map_err(|e| anyhow::anyhow!("{}: {e}", dir.join(f).display()));
        let config: ModelConfig = serde_json::from_str(&read(CONFIG_FILE)?)?;
        let tokenizer = Tokenizer::from_json(&read(TOKENIZER_FILE)?)?;
        anyhow::ensure!(tokenizer.vocab_size() == config.vocab_size, "tokenizer and model disagree on the vocabulary size");
        let mut varmap = VarMap::new();
        let model = EdgeModel::new(config, VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu))?;
        varmap.load(dir.join(WEIGHTS_FILE)).map_err(|e| anyhow::anyhow!("loading {}: {e}", dir.join(WEIGHTS_FILE).display()))?;
        Ok(Self::new(model, varmap, tokenizer, version))
    }

    /// Writes weights, config and tokenizer to `dir`.
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        self.varmap.save(dir.join(WEIGHTS_FILE))?;
        std::fs::write(dir.join(CONFIG_FILE), serde_json::to_string_pretty(&self.model.config)?)?;
        std::fs::write(dir.join(TOKENIZER_FILE), self.tokenizer.to_json())?;
        Ok(())
    }

    pub fn catalog(&self) -> &'static ToolCatalog {
        self.catalog
    }

    /// Greedy, KV-cached decoding of the call for `prompt`.
    pub fn propose(&self, prompt: &str) -> Result<Proposal, ProposeError> {
        let started = Instant::now();
        let encoded = self.tokenizer.encode_prompt(prompt);
        let max_prompt = self.model.config.max_len.saturating_sub(MAX_CALL_TOKENS);
        if encoded.ids.len() > max_prompt {
            return Err(ProposeError::PromptTooLong { tokens: encoded.ids.len(), max: max_prompt });
        }
        let device = self.model.device().clone();
        let mut cache = KvCache::default();
        let input = Tensor::new(encoded.ids.as_slice(), &device)?.unsqueeze(0)?;
        let logits = self.model.forward_cached(&input, &mut cache, true)?;
        let mut last: Vec<f32> = logits.narrow(1, encoded.ids.len() - 1, 1)?.flatten_all()?.to_vec1()?;
        let (mut out, mut logprobs, mut entropies) = (Vec::new(), Vec::new(), Vec::new());
        let mut grammar = self.constrained.then(|| CallGrammar::new(&self.tokenizer, self.catalog, &encoded.slots));
        for _ in 0..MAX_CALL_TOKENS {
            if let Some(allowed) = grammar.as_ref().and_then(CallGrammar::allowed).filter(|a| !a.is_empty()) {
                // Disallowed tokens get -inf; the distribution renormalises over the rest.
                let mut masked = vec![f32::NEG_INFINITY; last.len()];
                for id in allowed {
                    masked[id as usize] = last[id as usize];
                }
                last = masked;
            }
            let (next, lp, entropy) = greedy_step(&last).ok_or_else(|| candle_core::Error::Msg("the model produced no finite logits".into()))?;
            logprobs.push(lp);
            entropies.push(entropy);
            out.push(next);
            if let Some(g) = grammar.as_mut() {
                g.advance(next);
            }
            if next == EOS {
                break;
            }
            let step = Tensor::new(&[next], &device)?.unsqueeze(0)?;
            last = self.model.forward_cached(&step, &mut cache, true)?.flatten_all()?.to_vec1()?;
        }
        let call_json = self.tokenizer.decode_call(&out, &encoded.slots);
        Ok(Proposal::scored(self.catalog, call_json, &logprobs, &entropies, Some(encoded.unknown_word_share), started))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_step_gives_log_probability_and_entropy() {
        let (id, lp, h) = greedy_step(&[0.0, 0.0, f32::NEG_INFINITY, 0.0, 0.0]).unwrap();
        assert_eq!(id, 0);
        assert!((lp - (0.25f64).ln()).abs() < 1e-9);
        assert!((h - 4f64.ln()).abs() < 1e-9);
        assert!(greedy_step(&[f32::NAN]).is_none());
    }
}
