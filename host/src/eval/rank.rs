//! Full ranking: score every item for a batch of users, mask what must not be recommended, take
//! the top-K, and stream the rankings into the metric plugins.
//!
//! Ties are broken by item index: of two items with the same score, the lower index ranks first,
//! so a ranking is deterministic whatever the batch size or thread count.
use super::MetricSuite;
use crate::plugins::metric::Ranking;
use anyhow::{bail, Context};
use candle_core::{Device, Tensor};
use rayon::prelude::*;

/// One user to evaluate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EvalUser {
    /// Items masked out of this user's ranking (e.g. already heard), when masking is on.
    pub seen: Vec<u32>,
    /// The items to find.
    pub targets: Vec<u32>,
}

/// Produces scores over the whole catalog for a batch of users.
pub trait Scorer: Sync {
    /// Catalog size.
    fn n_items(&self) -> usize;
    /// Scores for `users` (indices into the evaluation set), row-major `users.len() × n_items`.
    fn score(&self, users: std::ops::Range<usize>) -> anyhow::Result<Vec<f32>>;
}

/// Scores by dot product of user and item vectors, with candle's matmul.
pub struct DotScorer {
    users: Tensor,
    items_t: Tensor,
}

impl DotScorer {
    /// `users`: U × d, `items`: N × d, both f32 on the same device.
    pub fn new(users: Tensor, items: Tensor) -> anyhow::Result<Self> {
        let (_, du) = users.dims2().context("user vectors must be a matrix")?;
        let (_, di) = items.dims2().context("item vectors must be a matrix")?;
        if du != di {
            bail!("user vectors have width {du} but item vectors {di}");
        }
        Ok(DotScorer { users, items_t: items.t()?.contiguous()? })
    }

    /// From row-major host vectors.
    pub fn from_vecs(users: Vec<f32>, items: Vec<f32>, dim: usize, device: &Device) -> anyhow::Result<Self> {
        let nu = users_len(&users, dim)?;
        let ni = users_len(&items, dim)?;
        Self::new(Tensor::from_vec(users, (nu, dim), device)?, Tensor::from_vec(items, (ni, dim), device)?)
    }
}

fn users_len(v: &[f32], dim: usize) -> anyhow::Result<usize> {
    if dim == 0 || v.len() % dim != 0 {
        bail!("a matrix of {} values does not split into rows of {dim}", v.len());
    }
    Ok(v.len() / dim)
}

impl Scorer for DotScorer {
    fn n_items(&self) -> usize {
        self.items_t.dims()[1]
    }
    fn score(&self, users: std::ops::Range<usize>) -> anyhow::Result<Vec<f32>> {
        let u = self.users.narrow(0, users.start, users.len())?;
        Ok(u.matmul(&self.items_t)?.flatten_all()?.to_vec1::<f32>()?)
    }
}

/// How a full-ranking run batches and masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RankOptions {
    /// Users scored per batch.
    pub batch_users: usize,
    /// Whether each user's `seen` items are removed from their ranking.
    pub mask_seen: bool,
}

impl Default for RankOptions {
    fn default() -> Self {
        RankOptions { batch_users: 1024, mask_seen: true }
    }
}

/// Where rankings go: the metric plugins ([`MetricSuite`]), or native metrics in benchmarks.
pub trait RankingSink {
    /// The catalog size the metrics expect.
    fn n_items(&self) -> u32;
    /// How many items each ranking must hold (the largest cutoff).
    fn max_k(&self) -> u32;
    /// Takes a batch of rankings.
    fn add(&mut self, batch: &[Ranking]) -> anyhow::Result<()>;
}

impl RankingSink for MetricSuite {
    fn n_items(&self) -> u32 {
        MetricSuite::n_items(self)
    }
    fn max_k(&self) -> u32 {
        MetricSuite::max_k(self)
    }
    fn add(&mut self, batch: &[Ranking]) -> anyhow::Result<()> {
        Ok(MetricSuite::add(self, batch)?)
    }
}

/// Ranks all items for every user and feeds the metrics. Users without targets are skipped, as
/// RecBole does; the count of users evaluated is in the report.
pub fn full_ranking(scorer: &dyn Scorer, users: &[EvalUser], suite: &mut dyn RankingSink, opts: RankOptions) -> anyhow::Result<()> {
    let n = scorer.n_items();
    if n as u64 != suite.n_items() as u64 {
        bail!("the scorer ranks {n} items but the metrics were set up for {}", suite.n_items());
    }
    let k = (suite.max_k() as usize).min(n);
    let batch = opts.batch_users.max(1);
    for start in (0..users.len()).step_by(batch) {
        let end = (start + batch).min(users.len());
        let mut scores = scorer.score(start..end)?;
        if scores.len() != (end - start) * n {
            bail!("the scorer returned {} scores for {} users × {n} items", scores.len(), end - start);
        }
        let rankings: Vec<Option<Ranking>> = scores
            .par_chunks_mut(n)
            .zip(&users[start..end])
            .enumerate()
            .map(|(i, (row, user))| -> anyhow::Result<Option<Ranking>> {
                if user.targets.is_empty() {
                    return Ok(None);
                }
                if let Some(j) = row.iter().position(|s| s.is_nan()) {
                    bail!("the model scored item {j} as NaN for user {}", start + i);
                }
                if opts.mask_seen {
                    for &s in &user.seen {
                        if let Some(x) = row.get_mut(s as usize) {
                            *x = f32::NAN; // NaN marks "masked"; real NaNs were refused above
                        }
                    }
                }
                let mut targets = user.targets.clone();
                targets.sort_unstable();
                targets.dedup();
                if let Some(&t) = targets.iter().find(|&&t| t as usize >= n) {
                    bail!("user {} has target item {t}, outside the catalog of {n} items", start + i);
                }
                Ok(Some(Ranking { ranked: top_k(row, k), targets }))
            })
            .collect::<anyhow::Result<_>>()?;
        let rankings: Vec<Ranking> = rankings.into_iter().flatten().collect();
        suite.add(&rankings)?;
    }
    Ok(())
}

/// The indices of the `k` best scores, best first; NaN entries are skipped (they mark masked
/// items). Equal scores rank the lower index first.
pub fn top_k(scores: &[f32], k: usize) -> Vec<u32> {
    // A min-heap of the best k so far; its root is the worst of them.
    let worse = |a: (f32, u32), b: (f32, u32)| a.0 < b.0 || (a.0 == b.0 && a.1 > b.1);
    let mut heap: Vec<(f32, u32)> = Vec::with_capacity(k);
    if k == 0 {
        return Vec::new();
    }
    for (i, &s) in scores.iter().enumerate() {
        if s.is_nan() {
            continue;
        }
        let item = (s, i as u32);
        if heap.len() < k {
            heap.push(item);
            let mut c = heap.len() - 1;
            while c > 0 {
                let p = (c - 1) / 2;
                if worse(heap[c], heap[p]) {
                    heap.swap(c, p);
                    c = p;
                } else {
                    break;
                }
            }
        } else if worse(heap[0], item) {
            heap[0] = item;
            let mut p = 0;
            loop {
                let (l, r) = (2 * p + 1, 2 * p + 2);
                let mut m = p;
                if l < k && worse(heap[l], heap[m]) {
                    m = l;
                }
                if r < k && worse(heap[r], heap[m]) {
                    m = r;
                }
                if m == p {
                    break;
                }
                heap.swap(p, m);
                p = m;
            }
        }
    }
    heap.sort_by(|&a, &b| if worse(a, b) { std::cmp::Ordering::Greater } else { std::cmp::Ordering::Less });
    heap.into_iter().map(|(_, i)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::top_k;

    #[test]
    fn ties_rank_the_lower_index_first() {
        assert_eq!(top_k(&[1.0, 3.0, 3.0, 2.0, 3.0], 3), vec![1, 2, 4]);
        assert_eq!(top_k(&[0.5; 6], 4), vec![0, 1, 2, 3]);
    }

    #[test]
    fn masked_items_are_skipped_and_k_may_exceed_the_catalog() {
        assert_eq!(top_k(&[f32::NAN, 1.0, f32::NAN, 0.0], 10), vec![1, 3]);
    }

    #[test]
    fn matches_a_full_sort() {
        let scores: Vec<f32> = (0..5000u32).map(|i| ((i * 7919) % 613) as f32 / 7.0).collect();
        let mut idx: Vec<u32> = (0..5000).collect();
        idx.sort_by(|&a, &b| scores[b as usize].total_cmp(&scores[a as usize]).then(a.cmp(&b)));
        assert_eq!(top_k(&scores, 50), idx[..50].to_vec());
    }
}
