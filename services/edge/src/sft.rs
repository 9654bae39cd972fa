//! Supervised fine-tuning of the edge model on the synthetic workload, and the
//! held-out evaluation by difficulty tier.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use candle_core::{D, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use netgpt_core::records::Difficulty;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::agent::{EdgeAgent, METRICS_FILE, Proposal};
use crate::catalog::ToolCatalog;
use crate::model::{EdgeModel, ModelConfig, log_softmax};
use crate::tokenizer::{PAD, Tokenizer, UNK, words};
use crate::workload::{Example, Split, WorkloadGenerator, same_call, template_text};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SftConfig {
    pub seed: u64,
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub d_ff: usize,
    pub max_len: usize,
    /// Training requests whose words make the prompt vocabulary.
    pub vocab_corpus: usize,
    /// Held-out requests evaluated per difficulty tier.
    pub eval_per_tier: usize,
    /// Share of prompt words replaced by `<unk>` in training, so the model does
    /// not hinge on any one word (held-out phrasings have unseen words). Words
    /// that state an argument's value are never dropped: the target still
    /// holds the value, and hiding its words would teach the model to invent
    /// values the request does not state.
    pub word_dropout: f64,
    /// Probability of each framing augmentation of a training prompt (a
    /// different generic request verb, a polite prefix, a trailing filler).
    pub augment: f64,
}

impl Default for SftConfig {
    fn default() -> Self {
        Self {
            seed: 7,
            steps: 4000,
            batch: 32,
            lr: 3e-3,
            warmup_steps: 100,
            weight_decay: 0.01,
            d_model: 128,
            n_layers: 3,
            n_heads: 4,
            d_ff: 256,
            max_len: 96,
            vocab_corpus: 20_000,
            eval_per_tier: 300,
            word_dropout: 0.1,
            augment: 0.3,
        }
    }
}

/// Quality of a model on one set of requests.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TierMetrics {
    pub n: usize,
    /// Calls equal to the reference (tool and every argument).
    pub exact: f64,
    /// Calls that validate against their tool's schema.
    pub schema_valid: f64,
    /// Calls naming the reference tool.
    pub tool_correct: f64,
}

/// One bin of a reliability table: proposals whose confidence fell in
/// [lo, hi), their mean confidence and how many were right.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReliabilityBin {
    pub lo: f64,
    pub hi: f64,
    pub n: usize,
    pub mean_confidence: f64,
    pub accuracy: f64,
}

/// How well the proposal features separate right from wrong calls.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Separation {
    /// AUROC of the mean token log-probability for "the call is exactly right".
    pub auroc_mean_logprob: f64,
    /// AUROC of the minimum token log-probability.
    pub auroc_min_logprob: f64,
    /// AUROC of the share of the request's words the model knows (1 minus the
    /// unknown-word share); `None` from a backend that does not report it.
    #[serde(default)]
    pub auroc_known_words: Option<f64>,
    /// Reliability of the raw sequence probability exp(sum of log-probs) as a
    /// confidence (uncalibrated: the router's scorer calibrates it).
    pub reliability: Vec<ReliabilityBin>,
}

/// Exact calls on one phrasing template: where a tier's misses come from.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TemplateScore {
    pub tool: String,
    pub template: String,
    pub tier: String,
    pub n: usize,
    pub exact: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EvalReport {
    pub separation: Separation,
    pub split: String,
    /// A few wrong answers (prompt, reference, proposed), for people to read.
    #[serde(default)]
    pub examples_wrong: Vec<(String, String, String)>,
    /// Exact-call rate per template, worst first.
    #[serde(default)]
    pub by_template: Vec<TemplateScore>,
    pub seed: u64,
    pub by_tier: BTreeMap<String, TierMetrics>,
    pub overall: TierMetrics,
    pub mean_latency_ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SftReport {
    pub config: SftConfig,
    pub parameters: usize,
    pub train_seconds: f64,
    pub steps_per_second: f64,
    pub final_loss: f32,
    pub held_out: EvalReport,
    pub train: EvalReport,
}

/// Generic request verbs: interchangeable in any request, so swapping them
/// teaches the model general phrasing, not tool-specific templates.
const GENERIC_VERBS: &[&str] = &["show", "get", "list", "display", "give me", "pull", "fetch", "report", "tell me", "find"];
const PREFIXES: &[&str] = &["please", "can you", "could you", "i need you to", "quick one:", "hey,", "urgent:"];
const SUFFIXES: &[&str] = &["please", "thanks", "asap", "now", "for the noc", "when you can"];

/// Re-frames a training prompt without changing what it asks for.
pub fn augment<R: rand::Rng>(prompt: &str, p: f64, rng: &mut R) -> String {
    let mut text = prompt.to_string();
    if rng.random_bool(p)
        && let Some(v) = GENERIC_VERBS.iter().find(|v| text.starts_with(&format!("{v} ")))
    {
        text = format!("{}{}", GENERIC_VERBS[rng.random_range(0..GENERIC_VERBS.len())], &text[v.len()..]);
    }
    if rng.random_bool(p) {
        text = format!("{} {text}", PREFIXES[rng.random_range(0..PREFIXES.len())]);
    }
    if rng.random_bool(p) {
        text = format!("{text} {}", SUFFIXES[rng.random_range(0..SUFFIXES.len())]);
    }
    text
}

/// Input ids, target ids and loss mask for a batch: the loss covers the call only.
fn batch_tensors<R: rand::Rng>(tok: &Tokenizer, examples: &[Example], word_dropout: f64, rng: &mut R, device: &Device) -> anyhow::Result<(Tensor, Tensor, Tensor)> {
    let mut seqs = Vec::with_capacity(examples.len());
    for e in examples {
        let mut p = tok.encode_prompt(&e.prompt);
        if word_dropout > 0.0 {
            let values: Vec<u32> = e.value_phrases.iter().flat_map(|v| words(v)).filter_map(|w| tok.id(&w)).collect();
            for id in p.ids.iter_mut() {
                if tok.is_word(*id) && !values.contains(id) && rng.random_bool(word_dropout) {
                    *id = UNK;
                }
            }
        }
        let out = tok.encode_call(&e.call, &p.slots).ok_or_else(|| anyhow::anyhow!("cannot encode the call of {:?}", e.prompt))?;
        seqs.push((p.ids.len(), [p.ids, out].concat()));
    }
    Ok(pack_sequences(&seqs, device)?)
}

/// Teacher-forcing tensors for sequences of (prompt length, prompt + call ids):
/// inputs `s[i]`, targets `s[i + 1]`, and a mask that is 1 where the target is
/// a call token; every row padded to the longest.
pub fn pack_sequences(seqs: &[(usize, Vec<u32>)], device: &Device) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let t = seqs.iter().map(|(_, s)| s.len().saturating_sub(1)).max().unwrap_or(1).max(1);
    let (mut inp, mut tgt, mut mask) = (Vec::new(), Vec::new(), Vec::new());
    for (prompt_len, s) in seqs {
        for i in 0..t {
            inp.push(s.get(i).copied().unwrap_or(PAD));
            tgt.push(s.get(i + 1).copied().unwrap_or(PAD));
            mask.push(if i + 1 >= *prompt_len && i + 1 < s.len() { 1f32 } else { 0.0 });
        }
    }
    let b = seqs.len();
    Ok((Tensor::from_vec(inp, (b, t), device)?, Tensor::from_vec(tgt, (b, t), device)?, Tensor::from_vec(mask, (b, t), device)?))
}

pub fn masked_nll(logits: &Tensor, targets: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    let logp = log_softmax(logits)?;
    let picked = logp.gather(&targets.unsqueeze(D::Minus1)?, D::Minus1)?.squeeze(D::Minus1)?;
    let total = (picked * mask)?.sum_all()?;
    total.neg()? / mask.sum_all()?.to_scalar::<f32>()?.max(1.0) as f64
}

/// Trains a model from scratch; writes it, its tokenizer and metrics to `out_dir`.
pub fn train_sft(cfg: &SftConfig, out_dir: &Path, show_progress: bool) -> anyhow::Result<SftReport> {
    let catalog = ToolCatalog::embedded();
    let device = Device::Cpu;
    let train = WorkloadGenerator::new(catalog, Split::Train)?;
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let corpus: Vec<String> = (0..cfg.vocab_corpus).flat_map(|_| words(&augment(&train.sample(&mut rng).prompt, cfg.augment, &mut rng))).collect();
    let tokenizer = Tokenizer::new(catalog, corpus);
    let mcfg = ModelConfig {
        vocab_size: tokenizer.vocab_size(),
        d_model: cfg.d_model,
        n_heads: cfg.n_heads,
        n_layers: cfg.n_layers,
        d_ff: cfg.d_ff,
        max_len: cfg.max_len,
    };
    let (model, varmap) = EdgeModel::init_seeded(mcfg, &device, cfg.seed)?;
    let parameters = EdgeModel::num_parameters(&varmap);
    let mut opt = AdamW::new(varmap.all_vars(), ParamsAdamW { lr: cfg.lr, weight_decay: cfg.weight_decay, ..Default::default() })?;

    let pb = netgpt_core::progress::bar(cfg.steps as u64, "sft", show_progress);
    let started = Instant::now();
    let mut final_loss = f32::NAN;
    for step in 0..cfg.steps {
        // Linear warm-up, then cosine decay to 5% of the peak rate.
        let lr = if step < cfg.warmup_steps {
            cfg.lr * (step + 1) as f64 / cfg.warmup_steps as f64
        } else {
            let p = (step - cfg.warmup_steps) as f64 / (cfg.steps - cfg.warmup_steps).max(1) as f64;
            cfg.lr * (0.05 + 0.95 * 0.5 * (1.0 + (std::f64::consts::PI * p).cos()))
        };
        opt.set_learning_rate(lr);
        let examples: Vec<Example> = (0..cfg.batch)
            .map(|_| {
                let mut e = train.sample(&mut rng);
                e.prompt = augment(&e.prompt, cfg.augment, &mut rng);
                e
            })
            .collect();
        let (inp, tgt, mask) = batch_tensors(&tokenizer, &examples, cfg.word_dropout, &mut rng, &device)?;
        let loss = masked_nll(&model.forward(&inp)?, &tgt, &mask)?;
        opt.backward_step(&loss)?;
        if step % 20 == 0 || step + 1 == cfg.steps {
            final_loss = loss.to_scalar::<f32>()?;
            pb.set_message(format!("loss {final_loss:.4}"));
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    let train_seconds = started.elapsed().as_secs_f64();

    let agent = EdgeAgent::new(model, varmap, tokenizer, "sft");
    agent.save(out_dir)?;
    let held_out = evaluate(&agent, Split::HeldOut, cfg.seed + 1000, cfg.eval_per_tier)?;
    let train_eval = evaluate(&agent, Split::Train, cfg.seed + 2000, cfg.eval_per_tier / 3)?;
    let report = SftReport {
        config: cfg.clone(),
        parameters,
        train_seconds,
        steps_per_second: cfg.steps as f64 / train_seconds,
        final_loss,
        held_out,
        train: train_eval,
    };
    std::fs::write(out_dir.join(METRICS_FILE), serde_json::to_string_pretty(&report)?)?;
    Ok(report)
}

/// Exact-match and schema-validity rates per difficulty tier on `per_tier`
/// requests of each tier from `split`.
pub fn evaluate(agent: &EdgeAgent, split: Split, seed: u64, per_tier: usize) -> anyhow::Result<EvalReport> {
    evaluate_with(agent.catalog(), split, seed, per_tier, |e| Ok(agent.propose(&e.prompt)?))
}

/// [`evaluate`] for any backend that proposes a call for a request: the same
/// requests for the same seed, so the figures of two backends compare.
pub fn evaluate_with(catalog: &ToolCatalog, split: Split, seed: u64, per_tier: usize, mut propose: impl FnMut(&Example) -> anyhow::Result<Proposal>) -> anyhow::Result<EvalReport> {
    let g = WorkloadGenerator::new(catalog, split)?;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut buckets: BTreeMap<String, Vec<Example>> = BTreeMap::new();
    let mut draws = 0;
    while buckets.values().map(Vec::len).sum::<usize>() < 3 * per_tier && draws < 200 * per_tier.max(1) {
        draws += 1;
        let e = g.sample(&mut rng);
        let b = buckets.entry(e.difficulty.as_str().to_string()).or_default();
        if b.len() < per_tier {
            b.push(e);
        }
    }
    let mut report = EvalReport { split: format!("{split:?}"), seed, ..Default::default() };
    let (mut all, mut latency) = (Vec::new(), 0f64);
    let mut scored: Vec<(f64, f64, f64, bool, Option<f64>)> = Vec::new(); // mean lp, min lp, seq prob, right, unknown-word share
    let mut templates: BTreeMap<(String, usize), TemplateScore> = BTreeMap::new();
    for (tier, examples) in &buckets {
        let mut scores = Vec::with_capacity(examples.len());
        for e in examples {
            let p = propose(e)?;
            latency += p.latency.as_secs_f64() * 1e3;
            let parsed: Option<serde_json::Value> = serde_json::from_str(&p.call_json).ok();
            let exact = parsed.as_ref().is_some_and(|c| same_call(c, &e.call));
            let tool_ok = p.check.tool.as_deref() == Some(e.tool.as_str());
            scored.push((p.mean_logprob, p.min_logprob, (p.mean_logprob * p.output_tokens as f64).exp(), exact, p.unknown_word_share));
            if !exact && report.examples_wrong.len() < 12 {
                report.examples_wrong.push((e.prompt.clone(), e.call_json(), p.call_json.clone()));
            }
            scores.push((exact, p.check.valid, tool_ok));
            let t = templates.entry((e.tool.clone(), e.template)).or_insert_with(|| TemplateScore { tool: e.tool.clone(), template: template_text(&e.tool, e.template).to_string(), tier: tier.clone(), ..Default::default() });
            t.n += 1;
            t.exact += f64::from(u8::from(exact));
        }
        report.by_tier.insert(tier.clone(), rates(&scores));
        all.extend(scores);
    }
    report.overall = rates(&all);
    report.by_template = templates.into_values().map(|t| TemplateScore { exact: t.exact / t.n.max(1) as f64, ..t }).collect();
    report.by_template.sort_by(|a, b| a.exact.total_cmp(&b.exact).then(b.n.cmp(&a.n)));
    report.separation = Separation {
        auroc_mean_logprob: auroc(&scored.iter().map(|s| (s.0, s.3)).collect::<Vec<_>>()),
        auroc_min_logprob: auroc(&scored.iter().map(|s| (s.1, s.3)).collect::<Vec<_>>()),
        auroc_known_words: scored.iter().map(|s| s.4.map(|u| (1.0 - u, s.3))).collect::<Option<Vec<_>>>().map(|known| auroc(&known)),
        reliability: reliability(&scored.iter().map(|s| (s.2, s.3)).collect::<Vec<_>>(), 10),
    };
    report.mean_latency_ms = latency / all.len().max(1) as f64;
    Ok(report)
}

fn rates(scores: &[(bool, bool, bool)]) -> TierMetrics {
    let n = scores.len();
    let frac = |f: fn(&(bool, bool, bool)) -> bool| scores.iter().filter(|s| f(s)).count() as f64 / n.max(1) as f64;
    TierMetrics { n, exact: frac(|s| s.0), schema_valid: frac(|s| s.1), tool_correct: frac(|s| s.2) }
}

/// The tiers in display order.
pub fn tier_names() -> [&'static str; 3] {
    [Difficulty::Easy.as_str(), Difficulty::Medium.as_str(), Difficulty::Hard.as_str()]
}

pub use netgpt_core::stats::auroc;

/// Equal-width reliability bins of a confidence in [0, 1].
pub fn reliability(samples: &[(f64, bool)], bins: usize) -> Vec<ReliabilityBin> {
    (0..bins)
        .map(|b| {
            let (lo, hi) = (b as f64 / bins as f64, (b + 1) as f64 / bins as f64);
            let inside: Vec<&(f64, bool)> = samples.iter().filter(|s| s.0 >= lo && (s.0 < hi || (b + 1 == bins && s.0 <= hi))).collect();
            let n = inside.len();
            ReliabilityBin {
                lo,
                hi,
                n,
                mean_confidence: inside.iter().map(|s| s.0).sum::<f64>() / n.max(1) as f64,
                accuracy: inside.iter().filter(|s| s.1).count() as f64 / n.max(1) as f64,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auroc_is_one_for_perfect_order_and_half_for_ties() {
        assert_eq!(auroc(&[(0.1, false), (0.2, false), (0.8, true), (0.9, true)]), 1.0);
        assert_eq!(auroc(&[(0.9, false), (0.8, false), (0.2, true), (0.1, true)]), 0.0);
        assert_eq!(auroc(&[(0.5, false), (0.5, true)]), 0.5);
        assert!(auroc(&[(0.5, true)]).is_nan());
        let bins = reliability(&[(0.05, false), (0.95, true), (1.0, true)], 10);
        assert_eq!(bins[0].n, 1);
        assert_eq!(bins[9].n, 2);
        assert_eq!(bins[9].accuracy, 1.0);
    }

    #[test]
    fn training_is_reproducible_from_the_seed() {
        let base = std::env::temp_dir().join(format!("netgpt-sft-seed-{}", std::process::id()));
        let cfg = SftConfig { steps: 20, batch: 16, d_model: 32, n_layers: 1, d_ff: 64, vocab_corpus: 500, eval_per_tier: 3, ..SftConfig::default() };
        let weights = |seed: u64, name: &str| {
            let dir = base.join(name);
            train_sft(&SftConfig { seed, ..cfg.clone() }, &dir, false).unwrap();
            std::fs::read(dir.join(crate::agent::WEIGHTS_FILE)).unwrap()
        };
        let (a, b, c) = (weights(1, "a"), weights(1, "b"), weights(2, "c"));
        assert!(a == b, "same seed, different weights");
        assert!(a != c, "different seeds, same weights");
        std::fs::remove_dir_all(&base).ok();
    }

    /// The model learns: a short run on a small model takes exact-match
    /// accuracy on training phrasings far above what an untrained model gets.
    #[test]
    fn a_short_training_run_learns_the_format_and_the_easy_calls() {
        let dir = std::env::temp_dir().join(format!("netgpt-sft-test-{}", std::process::id()));
        let cfg = SftConfig { steps: 250, batch: 32, d_model: 64, n_layers: 2, d_ff: 128, vocab_corpus: 3000, eval_per_tier: 60, ..SftConfig::default() };
        let report = train_sft(&cfg, &dir, false).unwrap();
        // The same architecture untrained gets nothing right.
        let fresh = EdgeAgent::load(&dir, "fresh").unwrap();
        let (untrained, _) = EdgeModel::init_seeded(fresh.model.config.clone(), &Device::Cpu, 99).unwrap();
        let untrained = EdgeAgent::new(untrained, candle_nn::VarMap::new(), fresh.tokenizer.clone(), "untrained");
        let before = evaluate(&untrained, Split::Train, cfg.seed + 2000, cfg.eval_per_tier / 3).unwrap();
        assert_eq!(before.overall.exact, 0.0);
        assert!(report.train.overall.schema_valid > 0.8, "schema-valid {:.2}", report.train.overall.schema_valid);
        assert!(report.train.overall.exact > 0.3, "exact {:.2} after 250 steps", report.train.overall.exact);
        // The saved model reloads and answers the same way.
        let agent = EdgeAgent::load(&dir, "reloaded").unwrap();
        let again = evaluate(&agent, Split::Train, cfg.seed + 2000, cfg.eval_per_tier / 3).unwrap();
        assert_eq!(again.overall, report.train.overall);
        std::fs::remove_dir_all(&dir).ok();
    }
}
