//! One RL stage of a round: schema-preserving, SFT-anchored PPO on the edge
//! model (the objective of ../shared/design/routing-model.md):
//!
//! ```text
//! L(θ) = −E[min(ρ·Â, clip(ρ, 1−ε, 1+ε)·Â)]     PPO surrogate, ρ = π_θ/π_behaviour per token
//!        + β · KL(π_θ ‖ π_old)                 reverse-KL trust region to the round's start model
//!        + γ · NLL_θ(cloud targets)            forward-KL realignment, KL(π_SFT ‖ π_θ) ≈ NLL
//! ```
//!
//! Rewards come from agreement with the cloud's call and a schema term
//! (`rollout::reward`). Every log-prob goes through the model's own
//! `log_softmax` (primitive ops with a backward pass); frozen models are
//! copies of the weights, so they build no gradient graph.

use std::collections::HashMap;

use candle_core::{D, DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use netgpt_edge::agent::EdgeAgent;
use netgpt_edge::model::{EdgeModel, log_softmax};
use netgpt_edge::sft::{masked_nll, pack_sequences};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::rollout::{RewardConfig, Rollout, Sampling, Target, advantages, rollouts, token_logprobs};

/// `[trainer.rl]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RlConfig {
    pub seed: u64,
    /// Sample-then-update iterations per round.
    pub iterations: usize,
    /// Prompts per iteration, and calls sampled per prompt (the group whose
    /// mean reward is the baseline).
    pub prompts_per_iteration: usize,
    pub group_size: usize,
    pub temperature: f64,
    /// Share of prompts drawn from requests the edge got wrong at the time
    /// (a group whose calls are all right has no advantage to learn from).
    pub disagreement_share: f64,
    /// Passes over an iteration's rollouts, in minibatches of this many.
    pub epochs: usize,
    pub minibatch: usize,
    /// ε of the clipped surrogate.
    pub clip_epsilon: f64,
    /// β: weight of KL(π_θ ‖ π_old).
    pub reverse_kl: f64,
    /// γ: weight of the NLL of cloud targets (forward KL to the SFT prior).
    pub forward_kl: f64,
    /// Cloud targets per update for the NLL term.
    pub nll_batch: usize,
    /// AdamW learning rate (no weight decay: decay would pull towards zero,
    /// not towards the prior). Above 1e-4 a good checkpoint was seen to lose
    /// its format (schema-valid 100 % → 82 %), so higher rates are refused.
    pub lr: f64,
    /// Gradients are rescaled to at most this global norm.
    pub max_grad_norm: f64,
    pub reward: RewardConfig,
}

impl Default for RlConfig {
    fn default() -> Self {
        Self {
            seed: 17,
            iterations: 8,
            prompts_per_iteration: 16,
            group_size: 4,
            temperature: 1.0,
            disagreement_share: 0.5,
            epochs: 2,
            minibatch: 32,
            clip_epsilon: 0.2,
            reverse_kl: 0.05,
            forward_kl: 0.5,
            nll_batch: 32,
            lr: 5e-5,
            max_grad_norm: 1.0,
            reward: RewardConfig::default(),
        }
    }
}

impl RlConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.lr > 0.0 && self.lr <= 1e-4, "trainer.rl.lr = {} is outside (0, 1e-4]: higher rates were seen to wreck a good checkpoint", self.lr);
        anyhow::ensure!(self.group_size >= 2, "trainer.rl.group_size must be at least 2 (the group mean is the baseline)");
        anyhow::ensure!(self.prompts_per_iteration > 0 && self.minibatch > 0 && self.epochs > 0, "trainer.rl sizes must be positive");
        anyhow::ensure!(self.clip_epsilon > 0.0 && self.clip_epsilon < 1.0, "trainer.rl.clip_epsilon must be in (0, 1)");
        anyhow::ensure!(self.temperature > 0.0, "trainer.rl.temperature must be positive");
        anyhow::ensure!((0.0..=1.0).contains(&self.disagreement_share), "trainer.rl.disagreement_share must be in [0, 1]");
        anyhow::ensure!(self.forward_kl == 0.0 || self.nll_batch > 0, "trainer.rl.nll_batch must be positive when forward_kl > 0");
        Ok(())
    }
}

/// What one iteration did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IterationStats {
    pub rollouts: usize,
    pub mean_reward: f64,
    pub exact_rate: f64,
    pub valid_rate: f64,
    pub loss: f64,
    pub surrogate: f64,
    /// KL(π_θ ‖ π_old) per call token, averaged over the iteration's updates.
    pub kl_old: f64,
    pub nll_targets: f64,
    /// Share of call tokens whose ratio left [1−ε, 1+ε].
    pub clip_fraction: f64,
    pub grad_norm: f64,
}

/// A frozen copy of a model's weights (constants: no gradient graph, and not
/// changed by later optimizer steps, which write the variables in place).
pub fn frozen(agent: &EdgeAgent) -> candle_core::Result<EdgeModel> {
    let data = agent.varmap.data().lock().map_err(|_| candle_core::Error::Msg("varmap lock poisoned".into()))?;
    let tensors: HashMap<String, Tensor> = data.iter().map(|(k, v)| Ok((k.clone(), v.as_tensor().copy()?.detach()))).collect::<candle_core::Result<_>>()?;
    EdgeModel::new(agent.model.config.clone(), VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu))
}

/// A trainable copy of `agent` (its own variables), named `version`.
pub fn trainable_copy(agent: &EdgeAgent, version: &str) -> anyhow::Result<EdgeAgent> {
    let varmap = VarMap::new();
    let model = EdgeModel::new(agent.model.config.clone(), VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu))?;
    {
        let src = agent.varmap.data().lock().map_err(|_| anyhow::anyhow!("varmap lock poisoned"))?;
        let dst = varmap.data().lock().map_err(|_| anyhow::anyhow!("varmap lock poisoned"))?;
        for (name, var) in dst.iter() {
            let from = src.get(name).ok_or_else(|| anyhow::anyhow!("weight {name} missing from the source model"))?;
            var.set(&from.as_tensor().copy()?)?;
        }
    }
    let mut copy = EdgeAgent::new(model, varmap, agent.tokenizer.clone(), version);
    copy.constrained = agent.constrained;
    Ok(copy)
}

/// Teacher-forcing tensors of cloud targets (prompt → the cloud's call).
fn target_batch(agent: &EdgeAgent, targets: &[&Target]) -> anyhow::Result<(Tensor, Tensor, Tensor)> {
    let seqs: Vec<(usize, Vec<u32>)> = targets
        .iter()
        .filter_map(|t| {
            let p = agent.tokenizer.encode_prompt(&t.prompt);
            let out = agent.tokenizer.encode_call(&t.call, &p.slots)?;
            Some((p.ids.len(), [p.ids, out].concat()))
        })
        .collect();
    anyhow::ensure!(!seqs.is_empty(), "no cloud target could be encoded");
    Ok(pack_sequences(&seqs, &Device::Cpu)?)
}

/// The targets the model can learn from: the cloud's call must be expressible
/// in the model's tokens (ids copied from the prompt) and fit its length.
pub fn learnable(agent: &EdgeAgent, targets: Vec<Target>) -> Vec<Target> {
    let max = agent.model.config.max_len;
    targets
        .into_iter()
        .filter(|t| {
            let p = agent.tokenizer.encode_prompt(&t.prompt);
            agent.tokenizer.encode_call(&t.call, &p.slots).is_some_and(|c| p.ids.len() + c.len() <= max)
        })
        .collect()
}

/// The loss terms of one minibatch (scalars), with the total to differentiate.
struct Terms {
    total: Tensor,
    surrogate: f64,
    kl_old: f64,
    nll: f64,
    clipped: f64,
}

#[allow(clippy::too_many_arguments)]
fn loss(cfg: &RlConfig, model: &EdgeModel, inp: &Tensor, tgt: &Tensor, mask: &Tensor, lp_behaviour: &Tensor, logp_old: &Tensor, adv: &Tensor, nll_batch: Option<&(Tensor, Tensor, Tensor)>) -> candle_core::Result<Terms> {
    let n = mask.sum_all()?.to_scalar::<f32>()?.max(1.0) as f64;
    let logits = model.forward(inp)?;
    // ρ compares the sampling distribution (logits / T) of the two models; the KL is of the served one (T = 1).
    let lp = token_logprobs(&(&logits / cfg.temperature)?, tgt)?.1;
    let logp = log_softmax(&logits)?;
    // Zero at masked (padding) positions before exp, so no overflow there can turn into 0·∞.
    let ratio = ((lp - lp_behaviour)? * mask)?.exp()?;
    let eps = cfg.clip_epsilon;
    let s1 = ratio.broadcast_mul(adv)?;
    let s2 = ratio.clamp(1.0 - eps, 1.0 + eps)?.broadcast_mul(adv)?;
    let surrogate = ((s1.minimum(&s2)? * mask)?.sum_all()? / n)?.neg()?;
    let kl_old = (((logp.exp()? * (&logp - logp_old)?)?.sum(D::Minus1)? * mask)?.sum_all()? / n)?;
    let mut total = (&surrogate + (&kl_old * cfg.reverse_kl)?)?;
    let mut nll_value = 0.0;
    if let (Some((i, t, m)), true) = (nll_batch, cfg.forward_kl > 0.0) {
        let nll = masked_nll(&model.forward(i)?, t, m)?;
        nll_value = nll.to_scalar::<f32>()? as f64;
        total = (total + (nll * cfg.forward_kl)?)?;
    }
    let outside = ratio.affine(1.0, -1.0)?.abs()?.gt(eps)?.to_dtype(DType::F32)?;
    let clipped = ((outside * mask)?.sum_all()?.to_scalar::<f32>()? as f64) / n;
    Ok(Terms { surrogate: surrogate.to_scalar::<f32>()? as f64, kl_old: kl_old.to_scalar::<f32>()? as f64, nll: nll_value, clipped, total })
}

/// Backward, rescale to `max_norm`, step; returns the norm before rescaling.
fn clipped_step(opt: &mut AdamW, varmap: &VarMap, loss: &Tensor, max_norm: f64) -> candle_core::Result<f64> {
    let mut grads = loss.backward()?;
    let vars = varmap.all_vars();
    let mut sq = 0f64;
    for v in &vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        }
    }
    let norm = sq.sqrt();
    if !norm.is_finite() {
        candle_core::bail!("non-finite gradient norm");
    }
    if norm > max_norm {
        let scale = max_norm / norm;
        for v in &vars {
            if let Some(g) = grads.remove(v.as_tensor()) {
                grads.insert(v.as_tensor(), (g * scale)?);
            }
        }
    }
    opt.step(&grads)?;
    Ok(norm)
}

/// Runs `cfg.iterations` sample-then-update iterations on `candidate` (whose
/// variables are updated in place), anchored to `old` (the round's start model).
pub fn train(cfg: &RlConfig, candidate: &EdgeAgent, old: &EdgeModel, targets: &[Target], show_progress: bool) -> anyhow::Result<Vec<IterationStats>> {
    cfg.validate()?;
    anyhow::ensure!(!targets.is_empty(), "no cloud targets to learn from");
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut opt = AdamW::new(candidate.varmap.all_vars(), ParamsAdamW { lr: cfg.lr, weight_decay: 0.0, ..Default::default() })?;
    let wrong: Vec<usize> = (0..targets.len()).filter(|&i| !targets[i].edge_agreed).collect();
    let bar = netgpt_core::progress::bar(cfg.iterations as u64, "rl", show_progress);
    let mut stats = Vec::with_capacity(cfg.iterations);
    for _ in 0..cfg.iterations {
        let picked: Vec<usize> = (0..cfg.prompts_per_iteration)
            .map(|_| if !wrong.is_empty() && rng.random_bool(cfg.disagreement_share) { wrong[rng.random_range(0..wrong.len())] } else { rng.random_range(0..targets.len()) })
            .collect();
        let batch: Vec<Rollout> = rollouts(&candidate.model, candidate, targets, &picked, &Sampling { group: cfg.group_size, temperature: cfg.temperature, reward: &cfg.reward }, &mut rng)?;
        let adv = advantages(&batch);
        let seqs: Vec<(usize, Vec<u32>)> = batch.iter().map(|r| (r.prompt_ids.len(), [r.prompt_ids.clone(), r.out_ids.clone()].concat())).collect();
        let (inp, tgt, mask) = pack_sequences(&seqs, &Device::Cpu)?;
        // Behaviour log-probs (the sampling model, before this iteration's updates) and the anchor's distribution.
        let lp_behaviour = token_logprobs(&(candidate.model.forward(&inp)? / cfg.temperature)?, &tgt)?.1.detach();
        let logp_old = log_softmax(&old.forward(&inp)?)?;
        let adv_t = Tensor::from_vec(adv.iter().map(|&a| a as f32).collect::<Vec<_>>(), (adv.len(), 1), &Device::Cpu)?;
        let mut it = IterationStats {
            rollouts: batch.len(),
            mean_reward: batch.iter().map(|r| r.reward).sum::<f64>() / batch.len().max(1) as f64,
            exact_rate: batch.iter().filter(|r| r.reward >= cfg.reward.exact).count() as f64 / batch.len().max(1) as f64,
            valid_rate: batch.iter().filter(|r| r.valid).count() as f64 / batch.len().max(1) as f64,
            ..Default::default()
        };
        let mut order: Vec<u32> = (0..batch.len() as u32).collect();
        let mut steps = 0usize;
        for _ in 0..cfg.epochs {
            order.shuffle(&mut rng);
            for chunk in order.chunks(cfg.minibatch) {
                let idx = Tensor::new(chunk, &Device::Cpu)?;
                let pick = |t: &Tensor| t.index_select(&idx, 0);
                let nll_batch = if cfg.forward_kl > 0.0 {
                    let nll_targets: Vec<&Target> = (0..cfg.nll_batch).map(|_| &targets[rng.random_range(0..targets.len())]).collect();
                    Some(target_batch(candidate, &nll_targets)?)
                } else {
                    None
                };
                let terms = loss(cfg, &candidate.model, &pick(&inp)?, &pick(&tgt)?, &pick(&mask)?, &pick(&lp_behaviour)?, &pick(&logp_old)?, &pick(&adv_t)?, nll_batch.as_ref())?;
                let norm = clipped_step(&mut opt, &candidate.varmap, &terms.total, cfg.max_grad_norm)?;
                steps += 1;
                it.loss += terms.total.to_scalar::<f32>()? as f64;
                it.surrogate += terms.surrogate;
                it.kl_old += terms.kl_old;
                it.nll_targets += terms.nll;
                it.clip_fraction += terms.clipped;
                it.grad_norm += norm;
            }
        }
        let s = steps.max(1) as f64;
        for v in [&mut it.loss, &mut it.surrogate, &mut it.kl_old, &mut it.nll_targets, &mut it.clip_fraction, &mut it.grad_norm] {
            *v /= s;
        }
        anyhow::ensure!(it.loss.is_finite(), "the RL loss is not finite; the round stops");
        bar.set_message(format!("reward {:.3} valid {:.2} kl {:.4}", it.mean_reward, it.valid_rate, it.kl_old));
        bar.inc(1);
        stats.push(it);
    }
    bar.finish_and_clear();
    Ok(stats)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use netgpt_edge::workload::{Split, WorkloadGenerator};

    fn checkpoint() -> EdgeAgent {
        EdgeAgent::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../edge/checkpoint"), "sft-base").unwrap()
    }

    fn targets(agent: &EdgeAgent, split: Split, n: usize, seed: u64) -> Vec<Target> {
        let g = WorkloadGenerator::new(agent.catalog(), split).unwrap();
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n).map(|_| g.sample(&mut rng)).map(|e| Target { prompt: e.prompt, call: e.call, edge_agreed: true }).collect()
    }

    fn packed(agent: &EdgeAgent, ts: &[Target], rng: &mut StdRng) -> (Vec<Rollout>, (Tensor, Tensor, Tensor)) {
        let picked: Vec<usize> = (0..ts.len()).collect();
        let batch = rollouts(&agent.model, agent, ts, &picked, &Sampling { group: 2, temperature: 1.0, reward: &RewardConfig::default() }, rng).unwrap();
        let seqs: Vec<(usize, Vec<u32>)> = batch.iter().map(|r| (r.prompt_ids.len(), [r.prompt_ids.clone(), r.out_ids.clone()].concat())).collect();
        (batch, pack_sequences(&seqs, &Device::Cpu).unwrap())
    }

    #[test]
    fn at_the_anchor_the_trust_region_is_zero_and_no_ratio_is_clipped_and_gradients_reach_every_weight() {
        let agent = checkpoint();
        let old = frozen(&agent).unwrap();
        let candidate = trainable_copy(&agent, "c").unwrap();
        let ts = targets(&agent, Split::Train, 6, 1);
        let mut rng = StdRng::seed_from_u64(2);
        let (batch, (inp, tgt, mask)) = packed(&candidate, &ts, &mut rng);
        let lp_b = token_logprobs(&candidate.model.forward(&inp).unwrap(), &tgt).unwrap().1.detach();
        let logp_old = log_softmax(&old.forward(&inp).unwrap()).unwrap();
        let adv: Vec<f32> = (0..batch.len()).map(|i| if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
        let adv = Tensor::from_vec(adv, (batch.len(), 1), &Device::Cpu).unwrap();
        let nll = target_batch(&candidate, &ts.iter().collect::<Vec<_>>()).unwrap();
        let cfg = RlConfig::default();
        let terms = loss(&cfg, &candidate.model, &inp, &tgt, &mask, &lp_b, &logp_old, &adv, Some(&nll)).unwrap();
        assert!(terms.kl_old.abs() < 1e-5, "KL to an identical model: {}", terms.kl_old);
        assert_eq!(terms.clipped, 0.0);
        assert!(terms.nll > 0.0);
        let grads = terms.total.backward().unwrap();
        for var in candidate.varmap.all_vars() {
            let g = grads.get(var.as_tensor()).expect("every weight has a gradient");
            assert!(g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.0, "a zero gradient: the RL loss does not reach every weight");
        }
    }

    #[test]
    fn a_frozen_copy_stays_put_while_the_candidate_learns() {
        let agent = checkpoint();
        let old = frozen(&agent).unwrap();
        let candidate = trainable_copy(&agent, "c").unwrap();
        let ts = targets(&agent, Split::Train, 4, 3);
        let ids = Tensor::new(&[[1u32, 5, 7, 9]], &Device::Cpu).unwrap();
        let before = old.forward(&ids).unwrap();
        let mut opt = AdamW::new(candidate.varmap.all_vars(), ParamsAdamW { lr: 1e-3, weight_decay: 0.0, ..Default::default() }).unwrap();
        let (i, t, m) = target_batch(&candidate, &ts.iter().collect::<Vec<_>>()).unwrap();
        for _ in 0..3 {
            let l = masked_nll(&candidate.model.forward(&i).unwrap(), &t, &m).unwrap();
            clipped_step(&mut opt, &candidate.varmap, &l, 1.0).unwrap();
        }
        let diff = |a: &Tensor, b: &Tensor| (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(diff(&before, &old.forward(&ids).unwrap()), 0.0, "the frozen copy moved with the candidate");
        assert!(diff(&before, &candidate.model.forward(&ids).unwrap()) > 0.0, "the candidate did not learn");
        assert!(diff(&agent.model.forward(&ids).unwrap(), &before) == 0.0, "the source model changed");
    }

    #[test]
    fn learning_rates_above_1e_4_are_refused() {
        assert!(RlConfig { lr: 3e-4, ..Default::default() }.validate().is_err());
        assert!(RlConfig { disagreement_share: 1.5, ..Default::default() }.validate().is_err());
        assert!(RlConfig { nll_batch: 0, ..Default::default() }.validate().is_err());
        assert!(RlConfig::default().validate().is_ok());
    }

    /// A few iterations on requests the model gets wrong raise its greedy
    /// reward on them, and the format survives.
    #[test]
    fn rl_raises_reward_on_requests_the_model_got_wrong_and_keeps_the_format() {
        let agent = checkpoint();
        let pool = targets(&agent, Split::HeldOut, 600, 5);
        let score = |a: &EdgeAgent, ts: &[Target]| {
            let (mut r, mut valid) = (0.0, 0);
            for t in ts {
                let p = a.propose(&t.prompt).unwrap();
                r += crate::rollout::reward(&RewardConfig::default(), a.catalog(), &p.call_json, &t.call).0;
                valid += usize::from(p.check.valid);
            }
            (r / ts.len() as f64, valid as f64 / ts.len() as f64)
        };
        let wrong: Vec<Target> = learnable(&agent, pool).into_iter().filter(|t| score(&agent, std::slice::from_ref(t)).0 < 1.0).map(|t| Target { edge_agreed: false, ..t }).take(48).collect();
        assert!(wrong.len() >= 16, "the checkpoint gets too few held-out requests wrong to test with ({})", wrong.len());
        let (before, _) = score(&agent, &wrong);
        let old = frozen(&agent).unwrap();
        let candidate = trainable_copy(&agent, "c").unwrap();
        let cfg = RlConfig { iterations: 6, lr: 1e-4, ..Default::default() };
        let stats = train(&cfg, &candidate, &old, &wrong, false).unwrap();
        let (after, valid) = score(&candidate, &wrong);
        assert!(after > before, "greedy reward on the wrong requests {before:.3} → {after:.3}; iterations {stats:?}");
        assert!(valid >= 0.95, "schema validity (unconstrained) fell to {valid:.3}");
        assert!(stats.iter().all(|s| s.kl_old.is_finite() && s.kl_old >= -1e-6));
    }
}
