//! Percentile bootstrap over users: resample users with replacement, recompute every per-user
//! metric's mean, and take the 2.5th and 97.5th percentiles (Efron & Tibshirani, 1993).
use rand::{Rng, SeedableRng};

/// Bootstrap settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bootstrap {
    /// Number of resamples.
    pub resamples: usize,
    /// Seed of the resampling.
    pub seed: u64,
    /// Confidence level, e.g. 0.95.
    pub level: f64,
}

impl Default for Bootstrap {
    fn default() -> Self {
        Bootstrap { resamples: 1000, seed: 42, level: 0.95 }
    }
}

impl Bootstrap {
    /// One interval per series (`None` for an empty series). All series must have the same length
    /// or be empty: they are resampled with the same user indices, so intervals are comparable.
    pub fn intervals(&self, series: &[&[f64]]) -> Vec<Option<(f64, f64)>> {
        let n = series.iter().map(|s| s.len()).max().unwrap_or(0);
        let live: Vec<usize> = (0..series.len()).filter(|&i| series[i].len() == n && n > 0).collect();
        let mut out = vec![None; series.len()];
        if live.is_empty() || self.resamples == 0 {
            return out;
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed);
        let mut means = vec![Vec::with_capacity(self.resamples); live.len()];
        let mut sums = vec![0.0f64; live.len()];
        for _ in 0..self.resamples {
            sums.iter_mut().for_each(|s| *s = 0.0);
            for _ in 0..n {
                let u = rng.random_range(0..n);
                for (j, &s) in live.iter().enumerate() {
                    sums[j] += series[s][u];
                }
            }
            for (j, s) in sums.iter().enumerate() {
                means[j].push(s / n as f64);
            }
        }
        let alpha = (1.0 - self.level) / 2.0;
        for (j, &s) in live.iter().enumerate() {
            let m = &mut means[j];
            m.sort_by(|a, b| a.total_cmp(b));
            out[s] = Some((quantile(m, alpha), quantile(m, 1.0 - alpha)));
        }
        out
    }
}

/// A paired comparison of two systems on the same cases: the mean per-case difference `b − a`,
/// its bootstrap interval, and a two-sided p-value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Paired {
    /// Mean of `b[i] − a[i]`.
    pub mean_diff: f64,
    /// Percentile bootstrap interval of the mean difference.
    pub ci: (f64, f64),
    /// Two-sided bootstrap p-value for "no difference": twice the share of resampled means on
    /// the far side of zero (with the +1 correction, so never 0).
    pub p_value: f64,
}

impl Bootstrap {
    /// Paired bootstrap of the per-case difference `b − a`: cases are resampled together, so the
    /// interval reflects the differences, not the two systems' separate spreads. `None` when
    /// the series are empty or of different lengths.
    pub fn paired(&self, a: &[f64], b: &[f64]) -> Option<Paired> {
        if a.is_empty() || a.len() != b.len() || self.resamples == 0 {
            return None;
        }
        let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| y - x).collect();
        let n = d.len();
        let mean_diff = d.iter().sum::<f64>() / n as f64;
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed);
        let mut means: Vec<f64> = (0..self.resamples).map(|_| (0..n).map(|_| d[rng.random_range(0..n)]).sum::<f64>() / n as f64).collect();
        means.sort_by(|x, y| x.total_cmp(y));
        let alpha = (1.0 - self.level) / 2.0;
        let below = means.iter().filter(|&&m| m <= 0.0).count();
        let above = means.iter().filter(|&&m| m >= 0.0).count();
        let p_value = (2.0 * (below.min(above) + 1) as f64 / (self.resamples + 1) as f64).min(1.0);
        Some(Paired { mean_diff, ci: (quantile(&means, alpha), quantile(&means, 1.0 - alpha)), p_value })
    }
}

/// Linear-interpolated quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_covers_the_mean_and_shrinks_with_more_users() {
        let small: Vec<f64> = (0..100).map(|i| (i % 2) as f64).collect();
        let large: Vec<f64> = (0..10_000).map(|i| (i % 2) as f64).collect();
        let b = Bootstrap::default();
        let (lo_s, hi_s) = b.intervals(&[&small])[0].unwrap();
        let (lo_l, hi_l) = b.intervals(&[&large])[0].unwrap();
        assert!(lo_s < 0.5 && 0.5 < hi_s);
        assert!(lo_l < 0.5 && 0.5 < hi_l);
        assert!(hi_l - lo_l < (hi_s - lo_s) / 5.0, "{lo_l}..{hi_l} vs {lo_s}..{hi_s}");
        // Binomial standard error at n = 100 is 0.05, so the 95% interval is about ±0.1.
        assert!((hi_s - lo_s - 0.196).abs() < 0.05, "{}", hi_s - lo_s);
    }

    #[test]
    fn a_paired_difference_is_found_where_separate_intervals_overlap() {
        // b is a plus a small constant gain on every case: separate intervals overlap, the
        // paired one excludes 0.
        let a: Vec<f64> = (0..200).map(|i| ((i * 7919) % 100) as f64 / 100.0).collect();
        let b: Vec<f64> = a.iter().map(|x| x + 0.02).collect();
        let bs = Bootstrap::default();
        let cis = bs.intervals(&[&a, &b]);
        let (ia, ib) = (cis[0].unwrap(), cis[1].unwrap());
        assert!(ib.0 < ia.1, "the separate intervals overlap: {ia:?} {ib:?}");
        let p = bs.paired(&a, &b).unwrap();
        assert!((p.mean_diff - 0.02).abs() < 1e-12 && p.ci.0 > 0.019 && p.p_value < 0.01, "{p:?}");
        let same = bs.paired(&a, &a).unwrap();
        assert_eq!((same.mean_diff, same.p_value), (0.0, 1.0));
        assert!(bs.paired(&a, &b[..10]).is_none());
    }

    #[test]
    fn empty_series_get_no_interval() {
        assert_eq!(Bootstrap::default().intervals(&[&[]]), vec![None]);
    }
}
