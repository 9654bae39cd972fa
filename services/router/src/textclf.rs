//! The RouteLLM-style router's classifier: P(edge will fail | request text),
//! a logistic regression over hashed word uni- and bigrams. Identifiers and
//! numbers are replaced by their shape (`<site>`, `<cell>`, `<num>`) so it
//! learns phrasings, not particular sites.

use serde::{Deserialize, Serialize};

use crate::scorer::sigmoid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextClassifier {
    pub buckets: usize,
    pub weights: Vec<f32>,
    pub bias: f32,
}

fn shape(word: &str) -> String {
    let b = word.as_bytes();
    let all_digits = !b.is_empty() && b.iter().all(|c| c.is_ascii_digit() || *c == b'.');
    if all_digits {
        "<num>".into()
    } else if b.len() == 4 && (b[0] == b's' || b[0] == b'S') && b[1..].iter().all(u8::is_ascii_digit) {
        "<site>".into()
    } else if b.len() == 3 && b[0].is_ascii_alphabetic() && b[1..].iter().all(u8::is_ascii_digit) {
        "<cell>".into()
    } else if b.iter().any(u8::is_ascii_digit) {
        "<id>".into()
    } else {
        word.to_lowercase()
    }
}

fn fnv1a(s: &str) -> u64 {
    netgpt_core::hash::fnv1a(s.as_bytes())
}

impl TextClassifier {
    /// Bucket indices of the text's features (unigrams and bigrams), deduplicated.
    pub fn features(&self, text: &str) -> Vec<usize> {
        let words: Vec<String> = text.split(|c: char| !(c.is_alphanumeric() || c == '.' || c == '-')).filter(|w| !w.is_empty()).map(shape).collect();
        let mut f: Vec<usize> = words.iter().map(|w| (fnv1a(w) % self.buckets as u64) as usize).collect();
        f.extend(words.windows(2).map(|p| (fnv1a(&format!("{} {}", p[0], p[1])) % self.buckets as u64) as usize));
        f.sort_unstable();
        f.dedup();
        f
    }

    pub fn p_fail(&self, text: &str) -> f64 {
        let z: f32 = self.bias + self.features(text).iter().map(|&i| self.weights.get(i).copied().unwrap_or(0.0)).sum::<f32>();
        sigmoid(f64::from(z))
    }

    /// Fits on (text, edge failed) pairs with full-batch gradient descent and L2.
    pub fn fit(data: &[(&str, bool)], buckets: usize, epochs: usize) -> Self {
        let mut c = Self { buckets, weights: vec![0.0; buckets], bias: 0.0 };
        let feats: Vec<Vec<usize>> = data.iter().map(|(t, _)| c.features(t)).collect();
        let base = data.iter().filter(|d| d.1).count() as f64 / data.len().max(1) as f64;
        c.bias = (base.clamp(1e-3, 1.0 - 1e-3) / (1.0 - base.clamp(1e-3, 1.0 - 1e-3))).ln() as f32;
        let (lr, l2) = (2.0f32, 1e-4f32);
        let m = data.len().max(1) as f32;
        for _ in 0..epochs {
            let mut grad = vec![0f32; buckets];
            let mut gb = 0f32;
            for (f, (_, y)) in feats.iter().zip(data) {
                let z = c.bias + f.iter().map(|&i| c.weights[i]).sum::<f32>();
                let e = sigmoid(f64::from(z)) as f32 - f32::from(u8::from(*y));
                for &i in f {
                    grad[i] += e;
                }
                gb += e;
            }
            for (w, g) in c.weights.iter_mut().zip(&grad) {
                *w -= lr * (g / m + l2 * *w);
            }
            c.bias -= lr * gb / m;
        }
        c
    }
}

/// The cut on P(fail) that sends `fraction` of these requests to the cloud.
pub fn cut_for_cloud_fraction(p_fail: &[f64], fraction: f64) -> f64 {
    let mut v: Vec<f64> = p_fail.to_vec();
    v.sort_by(|a, b| b.total_cmp(a));
    let k = ((fraction.clamp(0.0, 1.0) * v.len() as f64).round() as usize).min(v.len());
    match k {
        0 => v.first().copied().unwrap_or(1.0),
        _ if k == v.len() => -f64::MIN_POSITIVE,
        _ => 0.5 * (v[k - 1] + v[k]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_which_phrasings_fail_and_hits_the_target_cloud_fraction() {
        let mut data = Vec::new();
        for i in 0..400 {
            data.push((format!("show the alarms at S{:03}", i % 100), false));
            data.push((format!("could you perhaps figure out what is going on near S{:03}", i % 100), true));
        }
        let refs: Vec<(&str, bool)> = data.iter().map(|(t, y)| (t.as_str(), *y)).collect();
        let c = TextClassifier::fit(&refs, 1 << 10, 200);
        assert!(c.p_fail("could you perhaps figure out what is going on near S999") > 0.8);
        assert!(c.p_fail("show the alarms at S777") < 0.2);
        let ps: Vec<f64> = (0..100).map(|i| f64::from(i) / 100.0).collect();
        let cut = cut_for_cloud_fraction(&ps, 0.3);
        assert_eq!(ps.iter().filter(|p| **p > cut).count(), 30);
        assert_eq!(ps.iter().filter(|p| **p > cut_for_cloud_fraction(&ps, 1.0)).count(), 100);
        assert_eq!(ps.iter().filter(|p| **p > cut_for_cloud_fraction(&ps, 0.0)).count(), 0);
    }
}
