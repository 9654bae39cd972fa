//! PolicyNet: a small candle MLP from network and request features to τ ∈ (0,1),
//! trained to maximise a smoothed empirical utility (the indicator 1[s < τ]
//! relaxed to a sigmoid) on logged routing samples.

use candle_core::{Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::fit::RoutingSample;
use crate::policy::NetFeatures;

const INPUTS: usize = 5;

/// The network's weights as they travel in JSON (row-major).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyNetParams {
    pub hidden: usize,
    pub input_mean: Vec<f32>,
    pub input_std: Vec<f32>,
    pub w1: Vec<f32>,
    pub b1: Vec<f32>,
    pub w2: Vec<f32>,
    pub b2: Vec<f32>,
    pub w3: Vec<f32>,
    pub b3: Vec<f32>,
}

/// `[router.policynet]`: training settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyNetTraining {
    pub hidden: usize,
    pub epochs: usize,
    pub learning_rate: f64,
    /// Temperature of the sigmoid relaxation of 1[s < τ].
    pub temperature: f64,
    pub seed: u64,
}

impl Default for PolicyNetTraining {
    fn default() -> Self {
        Self { hidden: 16, epochs: 400, learning_rate: 0.01, temperature: 0.03, seed: 11 }
    }
}

pub struct PolicyNet {
    pub params: PolicyNetParams,
    layers: [(Tensor, Tensor); 3],
    mean: Tensor,
    std: Tensor,
}

fn raw_inputs(f: &NetFeatures) -> [f32; INPUTS] {
    [f.rtt_s as f32, f.transfer_s as f32, (f.price * 1000.0) as f32, (f.loss * 100.0) as f32, (1.0 + f.tokens_out.max(0.0)).ln() as f32]
}

/// σ from primitive ops (differentiable).
fn sigmoid(x: &Tensor) -> candle_core::Result<Tensor> {
    (x.neg()?.exp()? + 1.0)?.recip()
}

fn mlp(x: &Tensor, layers: &[(Tensor, Tensor); 3]) -> candle_core::Result<Tensor> {
    let h = x.matmul(&layers[0].0.t()?)?.broadcast_add(&layers[0].1)?.relu()?;
    let h = h.matmul(&layers[1].0.t()?)?.broadcast_add(&layers[1].1)?.relu()?;
    sigmoid(&h.matmul(&layers[2].0.t()?)?.broadcast_add(&layers[2].1)?)?.flatten_all()
}

impl PolicyNet {
    pub fn from_params(p: &PolicyNetParams) -> anyhow::Result<Self> {
        let h = p.hidden;
        let d = Device::Cpu;
        let t = |v: &[f32], shape: &[usize]| -> anyhow::Result<Tensor> {
            anyhow::ensure!(v.len() == shape.iter().product::<usize>(), "PolicyNet weights have {} values where {:?} needs {}", v.len(), shape, shape.iter().product::<usize>());
            anyhow::ensure!(v.iter().all(|x| x.is_finite()), "PolicyNet weights are not finite");
            Ok(Tensor::from_slice(v, shape, &d)?)
        };
        Ok(Self {
            layers: [(t(&p.w1, &[h, INPUTS])?, t(&p.b1, &[h])?), (t(&p.w2, &[h, h])?, t(&p.b2, &[h])?), (t(&p.w3, &[1, h])?, t(&p.b3, &[1])?)],
            mean: t(&p.input_mean, &[INPUTS])?,
            std: t(&p.input_std, &[INPUTS])?,
            params: p.clone(),
        })
    }

    fn standardised(&self, rows: &[[f32; INPUTS]]) -> candle_core::Result<Tensor> {
        let x = Tensor::from_iter(rows.iter().flatten().copied(), &Device::Cpu)?.reshape((rows.len(), INPUTS))?;
        x.broadcast_sub(&self.mean)?.broadcast_div(&self.std)
    }

    /// τ for each feature row.
    pub fn taus(&self, rows: &[NetFeatures]) -> anyhow::Result<Vec<f64>> {
        let x = self.standardised(&rows.iter().map(raw_inputs).collect::<Vec<_>>())?;
        Ok(mlp(&x, &self.layers)?.to_vec1::<f32>()?.into_iter().map(f64::from).collect())
    }

    pub fn tau(&self, f: &NetFeatures) -> f64 {
        // A failure here is a shape defect caught at load; be conservative anyway.
        self.taus(std::slice::from_ref(f)).ok().and_then(|v| v.first().copied()).unwrap_or(0.5)
    }

    /// Trains on the valid samples (an invalid edge call falls back whatever τ is).
    pub fn train(samples: &[RoutingSample], cfg: &PolicyNetTraining) -> anyhow::Result<Self> {
        let d = Device::Cpu;
        let valid: Vec<&RoutingSample> = samples.iter().filter(|s| s.schema_valid).collect();
        anyhow::ensure!(!valid.is_empty(), "no valid samples to train PolicyNet on");
        let rows: Vec<[f32; INPUTS]> = valid.iter().map(|s| raw_inputs(&s.features())).collect();
        let n = rows.len() as f32;
        let mut mean = [0f32; INPUTS];
        let mut std = [0f32; INPUTS];
        for r in &rows {
            for i in 0..INPUTS {
                mean[i] += r[i] / n;
            }
        }
        for r in &rows {
            for i in 0..INPUTS {
                std[i] += (r[i] - mean[i]).powi(2) / n;
            }
        }
        let std = std.map(|v| v.sqrt().max(1e-4));
        let h = cfg.hidden;
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let mut init = |len: usize, fan_in: usize| -> Vec<f32> {
            use rand::Rng;
            let a = (6.0 / fan_in as f32).sqrt();
            (0..len).map(|_| rng.random_range(-a..a)).collect()
        };
        let var = |v: Vec<f32>, shape: &[usize]| Var::from_tensor(&Tensor::from_vec(v, shape, &d)?);
        let vars = [
            var(init(h * INPUTS, INPUTS), &[h, INPUTS])?,
            var(vec![0.0; h], &[h])?,
            var(init(h * h, h), &[h, h])?,
            var(vec![0.0; h], &[h])?,
            var(init(h, h).iter().map(|w| w * 0.1).collect(), &[1, h])?,
            var(vec![0.0], &[1])?,
        ];
        let x = Tensor::from_iter(rows.iter().flatten().copied(), &d)?
            .reshape((rows.len(), INPUTS))?
            .broadcast_sub(&Tensor::from_slice(&mean, INPUTS, &d)?)?
            .broadcast_div(&Tensor::from_slice(&std, INPUTS, &d)?)?;
        let col = |f: &dyn Fn(&RoutingSample) -> f64| Tensor::from_iter(valid.iter().map(|s| f(s) as f32), &d);
        let score = col(&|s| s.score)?;
        let gain_cloud = col(&|s| s.weight * (s.q_cloud - s.cost.delta))?;
        let gain_edge = col(&|s| s.weight * s.q_edge)?;
        let mut opt = AdamW::new(vars.to_vec(), ParamsAdamW { lr: cfg.learning_rate, weight_decay: 0.0, ..Default::default() })?;
        for _ in 0..cfg.epochs {
            let layers = [(vars[0].as_tensor().clone(), vars[1].as_tensor().clone()), (vars[2].as_tensor().clone(), vars[3].as_tensor().clone()), (vars[4].as_tensor().clone(), vars[5].as_tensor().clone())];
            let tau = mlp(&x, &layers)?;
            let fall = sigmoid(&((tau - &score)? / cfg.temperature)?)?;
            let keep = (fall.ones_like()? - &fall)?;
            let utility = ((fall * &gain_cloud)? + (keep * &gain_edge)?)?.mean_all()?;
            opt.backward_step(&utility.neg()?)?;
        }
        let v = |i: usize| -> anyhow::Result<Vec<f32>> { Ok(vars[i].as_tensor().flatten_all()?.to_vec1::<f32>()?) };
        let params = PolicyNetParams { hidden: h, input_mean: mean.to_vec(), input_std: std.to_vec(), w1: v(0)?, b1: v(1)?, w2: v(2)?, b2: v(3)?, w3: v(4)?, b3: v(5)? };
        Self::from_params(&params)
    }
}

