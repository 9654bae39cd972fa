//! Means with 95 % confidence intervals over repetitions (Student's t).

use serde::Serialize;

/// A mean over repetitions and its 95 % confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub mean: f64,
    /// Half-width of the 95 % interval (0 for a single repetition: unknown, not exact).
    pub half_width: f64,
    pub n: usize,
}

impl Interval {
    /// Mean and t-based 95 % interval of `values` (NaNs are dropped).
    pub fn of(values: &[f64]) -> Self {
        let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        let n = v.len();
        if n == 0 {
            return Self { mean: f64::NAN, half_width: f64::NAN, n };
        }
        let mean = v.iter().sum::<f64>() / n as f64;
        if n == 1 {
            return Self { mean, half_width: 0.0, n };
        }
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        Self { mean, half_width: t975(n - 1) * (var / n as f64).sqrt(), n }
    }

    pub fn lo(&self) -> f64 {
        self.mean - self.half_width
    }

    pub fn hi(&self) -> f64 {
        self.mean + self.half_width
    }

    /// "0.912 ± 0.004" with `digits` decimals.
    pub fn show(&self, digits: usize) -> String {
        if self.n > 1 { format!("{:.*} ± {:.*}", digits, self.mean, digits, self.half_width) } else { format!("{:.*}", digits, self.mean) }
    }

    /// True when the whole interval lies above `other`'s.
    pub fn clearly_above(&self, other: &Interval) -> bool {
        self.lo() > other.hi()
    }
}

/// The 97.5 % quantile of Student's t with `df` degrees of freedom.
pub fn t975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::INFINITY,
        1..=30 => TABLE[df - 1],
        31..=60 => 2.042 - (2.042 - 2.000) * (df - 30) as f64 / 30.0,
        61..=120 => 2.000 - (2.000 - 1.980) * (df - 60) as f64 / 60.0,
        _ => 1.960,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_match_a_hand_computation() {
        // mean 2, sample sd 1, n 3: half-width t(2) · 1/√3.
        let i = Interval::of(&[1.0, 2.0, 3.0]);
        assert!((i.mean - 2.0).abs() < 1e-12);
        assert!((i.half_width - 4.303 / 3f64.sqrt()).abs() < 1e-9);
        assert_eq!(Interval::of(&[5.0]).half_width, 0.0);
        assert!(Interval::of(&[]).mean.is_nan());
        assert!(Interval::of(&[10.0, 10.1, 9.9]).clearly_above(&Interval::of(&[1.0, 1.1, 0.9])));
        assert!(t975(200) < t975(40) && t975(40) < t975(10));
    }
}
