//! The edge model: a small decoder-only transformer in candle.
//!
//! The training path uses only primitive tensor ops (layer norm and softmax
//! written out): candle's fused `LayerNorm`, `RmsNorm`, `softmax_last_dim` and
//! `sdpa` have no backward pass and would silently stop the gradients.
//! Input and output embeddings are tied, so a slot token means the same thing
//! where the prompt holds a value and where the call copies it.

use candle_core::{D, DType, Device, Module, Result, Tensor};
use candle_nn::{Embedding, Init, VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelConfig {
    pub vocab_size: usize,
    pub d_model: usize,
    pub n_heads: usize,
    pub n_layers: usize,
    pub d_ff: usize,
    pub max_len: usize,
}

struct LayerNorm {
    gamma: Tensor,
    beta: Tensor,
}

impl LayerNorm {
    fn new(d: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self { gamma: vb.get_with_hints(d, "gamma", Init::Const(1.0))?, beta: vb.get_with_hints(d, "beta", Init::Const(0.0))? })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (rows, d) = rows_of(x)?;
        let flat = x.reshape((rows, d))?;
        let mean = flat.mean_keepdim(D::Minus1)?;
        let centered = flat.broadcast_sub(&mean)?;
        let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centered.broadcast_div(&(var + 1e-5)?.sqrt()?)?;
        ((normed * spread_rows(&self.gamma, rows)?)? + spread_rows(&self.beta, rows)?)?.reshape(x.shape())
    }
}

/// A dense layer over the last dimension, with the leading dimensions folded
/// into rows.
///
/// Why not `candle_nn::Linear`: it broadcasts the weight over the batch and
/// adds the bias by broadcasting, and candle's backward of a broadcast sums
/// the gradient over the broadcast (leading) dimensions on a slow strided
/// path. That took a third of every training step. As plain 2-D matmuls the
/// same sums are gemm calls.
struct Dense {
    weight: Tensor,
    bias: Tensor,
}

impl Dense {
    fn new(i: usize, o: usize, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints((o, i), "weight", Init::Randn { mean: 0.0, stdev: 0.02 })?;
        let bias = vb.get_with_hints(o, "bias", Init::Const(0.0))?;
        Ok(Self { weight, bias })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (rows, i) = rows_of(x)?;
        let y = (x.reshape((rows, i))?.matmul(&self.weight.t()?)? + spread_rows(&self.bias, rows)?)?;
        let mut dims = x.dims().to_vec();
        if let Some(last) = dims.last_mut() {
            *last = self.weight.dim(0)?;
        }
        y.reshape(dims)
    }
}

/// (rows, last dimension) of `x` with every leading dimension folded into rows.
fn rows_of(x: &Tensor) -> Result<(usize, usize)> {
    let d = x.dim(D::Minus1)?;
    Ok((x.elem_count() / d.max(1), d))
}

/// `v` (d) repeated as `rows` rows (rows, d), by an outer product with ones, so
/// that its gradient (the sum over rows) is a gemm, not a strided reduction.
fn spread_rows(v: &Tensor, rows: usize) -> Result<Tensor> {
    Tensor::ones((rows, 1), v.dtype(), v.device())?.matmul(&v.reshape((1, v.elem_count()))?)
}

/// GELU (tanh approximation, as candle's `gelu`) from primitive ops: candle's
/// fused op recomputes `powf` and `tanh` in its backward pass, which cost a
/// tenth of a training step; written out, the backward reuses the forward's
/// tanh.
fn gelu(x: &Tensor) -> Result<Tensor> {
    const C: f64 = 0.797_884_560_802_865_4; // sqrt(2 / pi)
    let inner = ((x.sqr()? * x)?.affine(0.044_715 * C, 0.0)? + x.affine(C, 0.0)?)?;
    x * inner.tanh()?.affine(0.5, 0.5)?
}

/// Softmax over the last dimension from primitive ops (differentiable).
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?;
    let e = x.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// log-softmax over the last dimension from primitive ops (differentiable).
pub fn log_softmax(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?;
    let shifted = x.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    shifted.broadcast_sub(&lse)
}

struct Block {
    ln1: LayerNorm,
    qkv: Dense,
    out: Dense,
    ln2: LayerNorm,
    ff1: Dense,
    ff2: Dense,
}

/// Keys and values of the positions seen so far, per layer.
#[derive(Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    pub fn len(&self) -> usize {
        self.layers.first().and_then(|l| l.as_ref()).map_or(0, |(k, _)| k.dim(2).unwrap_or(0))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub struct EdgeModel {
    pub config: ModelConfig,
    tok: Embedding,
    pos: Embedding,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    device: Device,
}

impl EdgeModel {
    pub fn new(config: ModelConfig, vb: VarBuilder) -> Result<Self> {
        let d = config.d_model;
        let tok = Embedding::new(vb.get_with_hints((config.vocab_size, d), "tok.weight", Init::Randn { mean: 0.0, stdev: 0.02 })?, d);
        let pos = Embedding::new(vb.get_with_hints((config.max_len, d), "pos.weight", Init::Randn { mean: 0.0, stdev: 0.02 })?, d);
        let blocks = (0..config.n_layers)
            .map(|i| {
                let vb = vb.pp(format!("block{i}"));
                Ok(Block {
                    ln1: LayerNorm::new(d, vb.pp("ln1"))?,
                    qkv: Dense::new(d, 3 * d, vb.pp("qkv"))?,
                    out: Dense::new(d, d, vb.pp("out"))?,
                    ln2: LayerNorm::new(d, vb.pp("ln2"))?,
                    ff1: Dense::new(d, config.d_ff, vb.pp("ff1"))?,
                    ff2: Dense::new(config.d_ff, d, vb.pp("ff2"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let ln_f = LayerNorm::new(d, vb.pp("ln_f"))?;
        Ok(Self { device: vb.device().clone(), config, tok, pos, blocks, ln_f })
    }

    /// A freshly initialised model and the variables that hold its weights.
    pub fn init(config: ModelConfig, device: &Device) -> Result<(Self, VarMap)> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        Ok((Self::new(config, vb)?, varmap))
    }

    /// A model initialised deterministically from `seed` (candle's CPU backend
    /// cannot seed its own generator): N(0, 0.02) weights, unit gains, zero biases.
    pub fn init_seeded(config: ModelConfig, device: &Device, seed: u64) -> Result<(Self, VarMap)> {
        use rand::{Rng, SeedableRng};
        let (model, varmap) = Self::init(config, device)?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let vars = varmap.data().lock().map_err(|_| candle_core::Error::Msg("varmap lock poisoned".into()))?;
        let mut names: Vec<&String> = vars.keys().collect();
        names.sort();
        for name in names {
            let var = &vars[name];
            let n = var.elem_count();
            let values: Vec<f32> = if name.ends_with("gamma") {
                vec![1.0; n]
            } else if name.ends_with("beta") || name.ends_with("bias") {
                vec![0.0; n]
            } else {
                // Box-Muller: two uniforms give a standard normal.
                (0..n)
                    .map(|_| {
                        let (u1, u2): (f64, f64) = (rng.random::<f64>().max(f64::MIN_POSITIVE), rng.random());
                        (0.02 * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
                    })
                    .collect()
            };
            var.set(&Tensor::from_vec(values, var.shape(), device)?)?;
        }
        drop(vars);
        Ok((model, varmap))
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn num_parameters(varmap: &VarMap) -> usize {
        varmap.all_vars().iter().map(|v| v.elem_count()).sum()
    }

    /// Logits for every position of `ids` (B, T) → (B, T, V), attending only backwards.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        self.forward_cached(ids, &mut KvCache::default(), false)
    }

    /// Runs `ids` (B, Tn) after the positions already in `cache`; with
    /// `keep`, appends their keys and values to it.
    pub fn forward_cached(&self, ids: &Tensor, cache: &mut KvCache, keep: bool) -> Result<Tensor> {
        let (b, tn) = ids.dims2()?;
        let past = cache.len();
        if past + tn > self.config.max_len {
            candle_core::bail!("sequence of {} tokens exceeds the model's max_len {}", past + tn, self.config.max_len);
        }
        // Positions looked up per row (not broadcast over the batch): see `Dense`.
        let positions = Tensor::arange(past as u32, (past + tn) as u32, &self.device)?.repeat(b)?;
        let mut x = (self.tok.forward(ids)? + self.pos.forward(&positions)?.reshape((b, tn, self.config.d_model))?)?;
        let mask = if tn > 1 { Some(causal_mask(tn, past, 1, &self.device)?) } else { None };
        if cache.layers.len() < self.blocks.len() {
            cache.layers.resize_with(self.blocks.len(), || None);
        }
        let (h, d) = (self.config.n_heads, self.config.d_model);
        let dh = d / h;
        let scale = 1.0 / (dh as f64).sqrt();
        for (block, slot) in self.blocks.iter().zip(cache.layers.iter_mut()) {
            let a = block.ln1.forward(&x)?;
            let qkv = block.qkv.forward(&a)?.reshape((b, tn, 3, h, dh))?;
            let q = qkv.narrow(2, 0, 1)?.squeeze(2)?.transpose(1, 2)?.contiguous()?;
            let mut k = qkv.narrow(2, 1, 1)?.squeeze(2)?.transpose(1, 2)?.contiguous()?;
            let mut v = qkv.narrow(2, 2, 1)?.squeeze(2)?.transpose(1, 2)?.contiguous()?;
            if let Some((pk, pv)) = slot.as_ref() {
                k = Tensor::cat(&[pk, &k], 2)?;
                v = Tensor::cat(&[pv, &v], 2)?;
            }
            if keep {
                *slot = Some((k.clone(), v.clone()));
            }
            let mut scores = (q.matmul(&k.t()?)? * scale)?;
            if let Some(m) = &mask {
                scores = scores.broadcast_add(m)?;
            }
            let attn = softmax(&scores)?.matmul(&v)?; // (B, H, Tn, dh)
            let attn = attn.transpose(1, 2)?.reshape((b, tn, d))?;
            x = (x + block.out.forward(&attn)?)?;
            let f = block.ff2.forward(&gelu(&block.ff1.forward(&block.ln2.forward(&x)?)?)?)?;
            x = (x + f)?;
        }
        let x = self.ln_f.forward(&x)?;
        // Tied output layer: logits are similarities with the token embeddings.
        x.reshape((b * tn, self.config.d_model))?.matmul(&self.tok.embeddings().t()?)?.reshape((b, tn, self.config.vocab_size))
    }
}

/// Additive mask (n_rep · t, past + t) for `t` new positions after `past`
/// cached ones: 0 where position `past + i` may attend, -1e9 after it (its
/// exponential is exactly 0). Rows repeat `n_rep` times, once per query head
/// sharing a key/value head (grouped-query attention in `gguf.rs`; 1 here).
pub(crate) fn causal_mask(t: usize, past: usize, n_rep: usize, device: &Device) -> Result<Tensor> {
    let total = past + t;
    let m: Vec<f32> = (0..n_rep * t).flat_map(|r| (0..total).map(move |j| if j <= past + r % t { 0.0 } else { -1e9 })).collect();
    Tensor::from_vec(m, (n_rep * t, total), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> (EdgeModel, VarMap) {
        let cfg = ModelConfig { vocab_size: 17, d_model: 16, n_heads: 2, n_layers: 2, d_ff: 32, max_len: 12 };
        EdgeModel::init(cfg, &Device::Cpu).unwrap()
    }

    #[test]
    fn cached_decoding_matches_the_full_forward_pass() {
        let (m, _) = tiny();
        let ids: Vec<u32> = vec![1, 5, 7, 2, 9, 3];
        let full = m.forward(&Tensor::new(ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap()).unwrap();
        let mut cache = KvCache::default();
        let prefix = Tensor::new(&ids[..3], &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let mut last = m.forward_cached(&prefix, &mut cache, true).unwrap().narrow(1, 2, 1).unwrap();
        let full_at = |t: usize| full.narrow(1, t, 1).unwrap();
        let diff = |a: &Tensor, b: &Tensor| (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff(&last, &full_at(2)) < 1e-4);
        for (t, &id) in ids.iter().enumerate().skip(3) {
            last = m.forward_cached(&Tensor::new(&[id], &Device::Cpu).unwrap().unsqueeze(0).unwrap(), &mut cache, true).unwrap();
            assert!(diff(&last, &full_at(t)) < 1e-4, "position {t}");
        }
    }

    /// The written-out layers compute what candle's own do (they exist only
    /// for the speed of their backward pass).
    #[test]
    fn written_out_layers_match_candles() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 2.0, (3, 5, 8), &dev).unwrap();
        let diff = |a: &Tensor, b: &Tensor| (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff(&gelu(&x).unwrap(), &x.gelu().unwrap()) < 1e-5);
        let dense = Dense { weight: Tensor::randn(0f32, 1.0, (4, 8), &dev).unwrap(), bias: Tensor::new(&[0.5f32, -1.0, 2.0, 0.0], &dev).unwrap() };
        let linear = candle_nn::Linear::new(dense.weight.clone(), Some(dense.bias.clone()));
        assert!(diff(&dense.forward(&x).unwrap(), &linear.forward(&x).unwrap()) < 1e-5);
    }

    #[test]
    fn gradients_reach_every_parameter() {
        let (m, varmap) = tiny();
        let ids = Tensor::new(&[[1u32, 5, 7, 2], [3, 4, 8, 9]], &Device::Cpu).unwrap();
        let logits = m.forward(&ids).unwrap();
        let loss = log_softmax(&logits).unwrap().mean_all().unwrap().neg().unwrap();
        let grads = loss.backward().unwrap();
        for var in varmap.all_vars() {
            let g = grads.get(var.as_tensor()).expect("every parameter has a gradient");
            let norm = g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(norm > 0.0, "a zero gradient: the backward pass stops somewhere");
        }
    }
}
