//! Small statistics shared by the stages that judge scores.

/// Area under the ROC curve of `score` for the positive label: the chance a
/// random positive scores above a random negative (ties count half).
pub fn auroc(samples: &[(f64, bool)]) -> f64 {
    let mut v: Vec<(f64, bool)> = samples.to_vec();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (pos, neg) = (v.iter().filter(|s| s.1).count(), v.iter().filter(|s| !s.1).count());
    if pos == 0 || neg == 0 {
        return f64::NAN;
    }
    // Sum of the (average, for ties) ranks of the positives: Mann-Whitney U.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1].0 == v[i].0 {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += avg_rank * v[i..=j].iter().filter(|s| s.1).count() as f64;
        i = j + 1;
    }
    (rank_sum - (pos * (pos + 1)) as f64 / 2.0) / (pos * neg) as f64
}
