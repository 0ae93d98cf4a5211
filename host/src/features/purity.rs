//! k-NN label purity of feature vectors: for each track with a vector and a label, the share of
//! its `k` nearest other tracks (cosine similarity) that carry the same label, averaged over
//! tracks. On `encore data synth` data the label is the planted style (`style` in `tracks.tsv`),
//! so purity far above chance means the extractor's vectors see the styles.
//!
//! Two chance levels are reported: `1 / classes`, and the expected purity of random neighbours
//! under the actual class sizes, `Σ_c n_c (n_c − 1) / (n (n − 1))` (higher when styles are
//! unequal). Vectors are compared raw and after z-scoring each dimension (the scales of e.g.
//! `audio-dsp`'s entries differ by orders of magnitude; constant dimensions are dropped).
use rayon::prelude::*;

/// Purity of one set of vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct Purity {
    /// Vectors with a label.
    pub n: usize,
    /// Neighbours per track.
    pub k: usize,
    /// Distinct labels.
    pub classes: usize,
    /// Purity with raw vectors.
    pub raw: f64,
    /// Purity with z-scored dimensions.
    pub standardized: f64,
    /// `1 / classes`.
    pub chance_uniform: f64,
    /// Random neighbours under the class sizes.
    pub chance_prior: f64,
}

fn unit_rows(x: &[Vec<f32>], standardize: bool) -> Vec<Vec<f32>> {
    let d = x.first().map_or(0, Vec::len);
    let n = x.len().max(1) as f64;
    let (mut mean, mut sd) = (vec![0.0f64; d], vec![1.0f64; d]);
    if standardize {
        for v in x {
            v.iter().enumerate().for_each(|(j, &a)| mean[j] += f64::from(a) / n);
        }
        let mut var = vec![0.0f64; d];
        for v in x {
            v.iter().enumerate().for_each(|(j, &a)| var[j] += (f64::from(a) - mean[j]).powi(2) / n);
        }
        sd = var.iter().map(|v| v.sqrt()).collect();
    }
    x.par_iter()
        .map(|v| {
            let mut r: Vec<f32> = v.iter().enumerate().map(|(j, &a)| if sd[j] > 1e-12 { ((f64::from(a) - mean[j]) / sd[j]) as f32 } else { 0.0 }).collect();
            let norm = r.iter().map(|a| a * a).sum::<f32>().sqrt();
            if norm > 0.0 {
                r.iter_mut().for_each(|a| *a /= norm);
            }
            r
        })
        .collect()
}

fn purity_of(rows: &[Vec<f32>], labels: &[u32], k: usize) -> f64 {
    let n = rows.len();
    let k = k.min(n.saturating_sub(1));
    if k == 0 {
        return 0.0;
    }
    let total: f64 = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut sims: Vec<(f32, usize)> = (0..n).filter(|&j| j != i).map(|j| (rows[i].iter().zip(&rows[j]).map(|(a, b)| a * b).sum::<f32>(), j)).collect();
            // Most similar first; ties by index, so the result does not depend on threads.
            let cmp = |a: &(f32, usize), b: &(f32, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
            sims.select_nth_unstable_by(k - 1, cmp);
            sims[..k].iter().filter(|(_, j)| labels[*j] == labels[i]).count() as f64 / k as f64
        })
        .sum();
    total / n as f64
}

/// k-NN purity of `vectors` (all of one width) with `labels` (one per vector).
pub fn knn_purity(vectors: &[Vec<f32>], labels: &[u32], k: usize) -> Purity {
    assert_eq!(vectors.len(), labels.len(), "one label per vector");
    let n = vectors.len();
    let mut sizes = std::collections::BTreeMap::<u32, usize>::new();
    labels.iter().for_each(|l| *sizes.entry(*l).or_default() += 1);
    let chance_prior = if n > 1 { sizes.values().map(|&c| (c * (c - 1)) as f64).sum::<f64>() / (n * (n - 1)) as f64 } else { 0.0 };
    Purity {
        n,
        k,
        classes: sizes.len(),
        raw: purity_of(&unit_rows(vectors, false), labels, k),
        standardized: purity_of(&unit_rows(vectors, true), labels, k),
        chance_uniform: if sizes.is_empty() { 0.0 } else { 1.0 / sizes.len() as f64 },
        chance_prior,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separated_clusters_are_pure_and_noise_is_at_chance() {
        let mut rng = crate::data::synth::Rng::new(7);
        let mut v = Vec::new();
        let mut l = Vec::new();
        for c in 0..4u32 {
            for _ in 0..50 {
                let mut x = vec![0.0f32; 8];
                x[c as usize] = 5.0;
                x.iter_mut().for_each(|a| *a += rng.normal() as f32 * 0.3);
                v.push(x);
                l.push(c);
            }
        }
        let p = knn_purity(&v, &l, 10);
        assert!(p.raw > 0.99 && p.standardized > 0.99, "{p:?}");
        assert_eq!((p.classes, p.chance_uniform), (4, 0.25));
        let noise: Vec<Vec<f32>> = (0..200).map(|_| (0..8).map(|_| rng.normal() as f32).collect()).collect();
        let p = knn_purity(&noise, &l, 10);
        assert!((p.raw - p.chance_prior).abs() < 0.08, "{p:?}");
    }
}
