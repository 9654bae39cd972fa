//! Small summaries of measured figures, shared by the demo and the benchmarks.

/// (p50, p95) of `xs` (sorted in place; nearest rank), NaN when empty.
pub fn percentiles(xs: &mut [f64]) -> (f64, f64) {
    xs.sort_by(f64::total_cmp);
    let at = |q: f64| xs.get(((xs.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(f64::NAN);
    (at(0.5), at(0.95))
}
