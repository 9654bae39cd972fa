//! Rollouts: calls sampled from the edge model for logged prompts, and their
//! rewards against the cloud's answer.

use candle_core::{D, DType, Device, Tensor};
use netgpt_edge::agent::{EdgeAgent, MAX_CALL_TOKENS};
use netgpt_edge::catalog::ToolCatalog;
use netgpt_edge::model::{EdgeModel, KvCache, log_softmax};
use netgpt_edge::tokenizer::{EOS, PAD, Slot};
use netgpt_edge::workload::same_call;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A logged request with the cloud's call for it.
#[derive(Debug, Clone)]
pub struct Target {
    pub prompt: String,
    pub call: Value,
    /// Did the edge's call at the time agree with the cloud's?
    pub edge_agreed: bool,
}

/// One sampled call.
#[derive(Debug, Clone)]
pub struct Rollout {
    /// Index of the target it answers.
    pub target: usize,
    pub prompt_ids: Vec<u32>,
    /// Sampled tokens (EOS included when emitted).
    pub out_ids: Vec<u32>,
    pub call_json: String,
    pub valid: bool,
    pub reward: f64,
}

/// `[trainer.reward]`: what a sampled call earns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewardConfig {
    /// The cloud's call exactly (as `json_same` judges).
    pub exact: f64,
    /// A schema-valid call of the right tool with some argument wrong.
    pub right_tool: f64,
    /// Subtracted from a call that breaks its tool's schema (or JSON): the
    /// format is what RL must never trade away.
    pub invalid_penalty: f64,
}

impl Default for RewardConfig {
    fn default() -> Self {
        Self { exact: 1.0, right_tool: 0.25, invalid_penalty: 1.0 }
    }
}

/// The reward of `call_json` for a request whose cloud answer was `target`.
pub fn reward(cfg: &RewardConfig, catalog: &ToolCatalog, call_json: &str, target: &Value) -> (f64, bool) {
    let check = catalog.check_call(call_json);
    let parsed: Option<Value> = serde_json::from_str(call_json).ok();
    let mut r = if parsed.as_ref().is_some_and(|c| same_call(c, target)) {
        cfg.exact
    } else if check.valid && check.tool.as_deref() == target.get("tool").and_then(Value::as_str) {
        cfg.right_tool
    } else {
        0.0
    };
    if !check.valid {
        r -= cfg.invalid_penalty;
    }
    (r, check.valid)
}

/// `group` calls for one prompt, sampled at `temperature` with one batched,
/// KV-cached decoding pass (unconstrained: the model's own distribution).
pub fn sample_group<R: Rng>(model: &EdgeModel, agent: &EdgeAgent, prompt_ids: &[u32], slots: &[Slot], group: usize, temperature: f64, rng: &mut R) -> candle_core::Result<Vec<(Vec<u32>, String)>> {
    let device = Device::Cpu;
    let mut cache = KvCache::default();
    let rows: Vec<u32> = (0..group).flat_map(|_| prompt_ids.iter().copied()).collect();
    let input = Tensor::from_vec(rows, (group, prompt_ids.len()), &device)?;
    let logits = model.forward_cached(&input, &mut cache, true)?;
    let mut last = logits.narrow(1, prompt_ids.len() - 1, 1)?.squeeze(1)?; // (G, V)
    let mut outs: Vec<Vec<u32>> = vec![Vec::new(); group];
    let mut done = vec![false; group];
    let max_new = MAX_CALL_TOKENS.min(model.config.max_len.saturating_sub(prompt_ids.len()));
    for _ in 0..max_new {
        let probs = log_softmax(&(last / temperature.max(1e-3))?)?.exp()?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        let mut next = vec![PAD; group];
        for (g, p) in probs.iter().enumerate() {
            if done[g] {
                continue;
            }
            let id = categorical(p, rng);
            outs[g].push(id);
            next[g] = id;
            done[g] = id == EOS;
        }
        if done.iter().all(|d| *d) {
            break;
        }
        let step = Tensor::from_vec(next, (group, 1), &device)?;
        last = model.forward_cached(&step, &mut cache, true)?.squeeze(1)?;
    }
    Ok(outs.into_iter().map(|o| {
        let json = agent.tokenizer.decode_call(&o, slots);
        (o, json)
    }).collect())
}

fn categorical<R: Rng>(p: &[f32], rng: &mut R) -> u32 {
    let u: f32 = rng.random::<f32>() * p.iter().sum::<f32>();
    let mut acc = 0.0;
    for (i, &x) in p.iter().enumerate() {
        acc += x;
        if u < acc {
            return i as u32;
        }
    }
    (p.len() - 1) as u32
}

/// How rollouts are drawn and scored.
pub struct Sampling<'a> {
    /// Calls per prompt.
    pub group: usize,
    pub temperature: f64,
    pub reward: &'a RewardConfig,
}

/// Rollouts for the targets `picked`, `sampling.group` per prompt, rewarded.
pub fn rollouts<R: Rng>(model: &EdgeModel, agent: &EdgeAgent, targets: &[Target], picked: &[usize], sampling: &Sampling<'_>, rng: &mut R) -> anyhow::Result<Vec<Rollout>> {
    let (group, temperature, reward_cfg) = (sampling.group, sampling.temperature, sampling.reward);
    let mut out = Vec::with_capacity(picked.len() * group);
    for &i in picked {
        let t = &targets[i];
        let encoded = agent.tokenizer.encode_prompt(&t.prompt);
        for (out_ids, call_json) in sample_group(model, agent, &encoded.ids, &encoded.slots, group, temperature, rng)? {
            let (reward, valid) = reward(reward_cfg, agent.catalog(), &call_json, &t.call);
            out.push(Rollout { target: i, prompt_ids: encoded.ids.clone(), out_ids, call_json, valid, reward });
        }
    }
    Ok(out)
}

/// Group-relative advantages: each reward minus its prompt's mean, scaled by
/// the batch's standard deviation (floored, so near-uniform batches do not explode).
pub fn advantages(rollouts: &[Rollout]) -> Vec<f64> {
    let mut sums: std::collections::HashMap<usize, (f64, usize)> = std::collections::HashMap::new();
    for r in rollouts {
        let e = sums.entry(r.target).or_default();
        e.0 += r.reward;
        e.1 += 1;
    }
    let centred: Vec<f64> = rollouts.iter().map(|r| r.reward - sums[&r.target].0 / sums[&r.target].1 as f64).collect();
    let n = centred.len().max(1) as f64;
    let sd = (centred.iter().map(|a| a * a).sum::<f64>() / n).sqrt().max(0.1);
    centred.iter().map(|a| a / sd).collect()
}

/// Mean of the last-dimension `gather` of `logits`' log-softmax at `targets`.
pub fn token_logprobs(logits: &Tensor, targets: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
    let logp = log_softmax(logits)?;
    let picked = logp.gather(&targets.unsqueeze(D::Minus1)?, D::Minus1)?.squeeze(D::Minus1)?;
    Ok((logp, picked))
}
