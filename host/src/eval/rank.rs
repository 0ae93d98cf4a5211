//! Full ranking: score every item for a batch of users, mask what must not be recommended, take
//! the top-K, and stream the rankings into the metric plugins.
//!
//! Every scorer in encore is a dot product, `user vector · item vector (+ item bias)`: the ID
//! encoders (last hidden state · item table), the popularity baseline (a constant user vector
//! against the play counts as 1-d item vectors), the E4SRec head (projected hidden state · head
//! weights + bias). So a [`Scorer`] gives user vectors and the item table, and the evaluator does
//! the rest on the host:
//!
//! - users are batched by [`Scorer::batch_key`] (the history length for the encoders, so a batch
//!   pads little), and the batches run in parallel on rayon, one per thread;
//! - each thread multiplies its batch into a score buffer it reuses (`gemm`, the kernel candle's
//!   matmul calls), with the item bias as the buffer's initial value: no per-batch allocation of a
//!   `users × items` matrix, no copy out of a tensor;
//! - the top-K scan compares blocks of 16 scores against the heap's worst before looking at any
//!   one of them, and checks masked items only when they would enter the heap;
//! - rankings go to the sink in the evaluation set's order, whatever the batching.
//!
//! Ties are broken by item index: of two items with the same score, the lower index ranks first,
//! so a ranking is deterministic whatever the batch size or thread count.
use super::MetricSuite;
use crate::plugins::metric::Ranking;
use anyhow::{bail, Context};
use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// One user to evaluate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EvalUser {
    /// Items masked out of this user's ranking (e.g. already heard), when masking is on.
    pub seen: Vec<u32>,
    /// The items to find.
    pub targets: Vec<u32>,
}

/// A model's scores over the whole catalog, as `user vector · item vector + item bias`.
pub trait Scorer: Sync {
    /// The item vectors, `n_items × d`.
    fn item_table(&self) -> &Tensor;
    /// A per-item score offset (`n_items`), if any.
    fn item_bias(&self) -> Option<&Tensor> {
        None
    }
    /// User vectors `users.len() × d` for these users (indices into the evaluation set), in order.
    fn user_vectors(&self, users: &[usize]) -> anyhow::Result<Tensor>;
    /// Users with equal keys cost about the same to score (e.g. their history length) and are
    /// batched together; all 0 by default.
    fn batch_key(&self, _user: usize) -> usize {
        0
    }
}

/// Fixed user vectors against an item table.
pub struct DotScorer {
    users: Tensor,
    items: Tensor,
}

impl DotScorer {
    /// `users`: U × d, `items`: N × d, both on the same device.
    pub fn new(users: Tensor, items: Tensor) -> anyhow::Result<Self> {
        let (_, du) = users.dims2().context("user vectors must be a matrix")?;
        let (_, di) = items.dims2().context("item vectors must be a matrix")?;
        if du != di {
            bail!("user vectors have width {du} but item vectors {di}");
        }
        Ok(DotScorer { users, items })
    }

    /// From row-major host vectors.
    pub fn from_vecs(users: Vec<f32>, items: Vec<f32>, dim: usize, device: &Device) -> anyhow::Result<Self> {
        let nu = rows_of(&users, dim)?;
        let ni = rows_of(&items, dim)?;
        Self::new(Tensor::from_vec(users, (nu, dim), device)?, Tensor::from_vec(items, (ni, dim), device)?)
    }
}

fn rows_of(v: &[f32], dim: usize) -> anyhow::Result<usize> {
    if dim == 0 || !v.len().is_multiple_of(dim) {
        bail!("a matrix of {} values does not split into rows of {dim}", v.len());
    }
    Ok(v.len() / dim)
}

impl Scorer for DotScorer {
    fn item_table(&self) -> &Tensor {
        &self.items
    }
    fn user_vectors(&self, users: &[usize]) -> anyhow::Result<Tensor> {
        let idx: Vec<u32> = users.iter().map(|&u| u as u32).collect();
        Ok(self.users.index_select(&Tensor::new(idx.as_slice(), self.users.device())?, 0)?)
    }
}

/// How a full-ranking run batches and masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RankOptions {
    /// Users scored per batch; fewer when a batch's scores would pass [`SCORE_BUFFER_BYTES`].
    pub batch_users: usize,
    /// Whether each user's `seen` items are removed from their ranking.
    pub mask_seen: bool,
}

impl Default for RankOptions {
    fn default() -> Self {
        RankOptions { batch_users: 1024, mask_seen: true }
    }
}

/// The most a thread's score buffer holds (users × items × 4 bytes): 256 MiB, so that 384k items
/// are scored 174 users at a time.
pub const SCORE_BUFFER_BYTES: usize = 256 << 20;

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

/// A host copy of a vector or matrix, as f32.
fn host_f32(t: &Tensor) -> anyhow::Result<Vec<f32>> {
    Ok(t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

/// Ranks all items for every user and feeds the metrics. Users without targets are skipped, as
/// RecBole does; the count of users evaluated is in the report.
pub fn full_ranking(scorer: &dyn Scorer, users: &[EvalUser], suite: &mut dyn RankingSink, opts: RankOptions) -> anyhow::Result<()> {
    let (n, dim) = scorer.item_table().dims2().context("the item table must be a matrix")?;
    if n as u64 != suite.n_items() as u64 {
        bail!("the scorer ranks {n} items but the metrics were set up for {}", suite.n_items());
    }
    let table = host_f32(scorer.item_table())?;
    let bias = match scorer.item_bias() {
        Some(b) if b.elem_count() != n => bail!("the item bias has {} values for {n} items", b.elem_count()),
        Some(b) => Some(host_f32(b)?),
        None => None,
    };
    let k = (suite.max_k() as usize).min(n);
    for (u, user) in users.iter().enumerate() {
        if let Some(&t) = user.targets.iter().find(|&&t| t as usize >= n) {
            bail!("user {u} has target item {t}, outside the catalog of {n} items");
        }
    }

    // Users with targets, batched by cost; the sort is stable, so equal keys keep their order.
    let mut order: Vec<usize> = (0..users.len()).filter(|&u| !users[u].targets.is_empty()).collect();
    order.sort_by_key(|&u| scorer.batch_key(u));
    let rows = opts.batch_users.max(1).min((SCORE_BUFFER_BYTES / (4 * n.max(1))).max(1));
    let batches: Vec<&[usize]> = order.chunks(rows).collect();
    let threads = rayon::current_num_threads().max(1);
    // One batch per thread, each multiplying on its own thread; a lone batch uses them all.
    let par = if batches.len() >= threads { gemm::Parallelism::None } else { gemm::Parallelism::Rayon(threads) };
    let ctx = BatchCtx { scorer, users, table: &table, bias: bias.as_deref(), n, dim, k, mask: opts.mask_seen, par, phases: Default::default() };
    let mut buffers: Vec<Vec<f32>> = (0..threads).map(|_| Vec::new()).collect();
    let mut ranked: Vec<Option<Ranking>> = vec![None; users.len()];
    let started = Instant::now();
    for wave in batches.chunks(threads) {
        let done: Vec<Vec<(usize, Ranking)>> = wave.par_iter().zip(buffers.par_iter_mut()).map(|(b, buf)| ctx.rank(b, buf)).collect::<anyhow::Result<_>>()?;
        for (u, r) in done.into_iter().flatten() {
            ranked[u] = Some(r);
        }
    }
    drop(buffers);
    let ranked: Vec<Ranking> = ranked.into_iter().flatten().collect();
    let scored = started.elapsed().as_secs_f64();
    for chunk in ranked.chunks(opts.batch_users.max(1)) {
        suite.add(chunk)?;
    }
    let [v, s, t] = ctx.phases.each_ref().map(|p| p.load(Ordering::Relaxed) as f64 * 1e-9);
    tracing::debug!(
        "full ranking of {} users × {n} items: {} batches on {threads} threads, {scored:.2} s (thread-seconds: user vectors {v:.2}, scores {s:.2}, top-K {t:.2}), metrics {:.2} s",
        ranked.len(),
        batches.len(),
        started.elapsed().as_secs_f64() - scored
    );
    Ok(())
}

/// What every batch of one ranking run shares.
struct BatchCtx<'a> {
    scorer: &'a dyn Scorer,
    users: &'a [EvalUser],
    table: &'a [f32],
    bias: Option<&'a [f32]>,
    n: usize,
    dim: usize,
    k: usize,
    mask: bool,
    par: gemm::Parallelism,
    /// Nanoseconds spent on user vectors, scores and top-K, summed over threads.
    phases: [AtomicU64; 3],
}

impl BatchCtx<'_> {
    /// Scores one batch into `buf` and ranks each of its users.
    fn rank(&self, batch: &[usize], buf: &mut Vec<f32>) -> anyhow::Result<Vec<(usize, Ranking)>> {
        let (m, n) = (batch.len(), self.n);
        let clock = Instant::now();
        let lap = |phase: usize, since: Instant| self.phases[phase].fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let vecs = self.scorer.user_vectors(batch)?;
        let (vm, vd) = vecs.dims2().context("user vectors must be a matrix")?;
        if (vm, vd) != (m, self.dim) {
            bail!("the scorer gave {vm} user vectors of width {vd} for {m} users and items of width {}", self.dim);
        }
        let vecs = host_f32(&vecs)?;
        lap(0, clock);
        let clock = Instant::now();
        buf.resize(m * n, 0.0);
        if let Some(b) = self.bias {
            buf.par_chunks_mut(n).for_each(|row| row.copy_from_slice(b));
        }
        crate::math::matmul_nt(buf, &vecs, self.table, m, n, self.dim, self.bias.is_some(), self.par);
        lap(1, clock);
        let clock = Instant::now();
        let ranked = buf
            .par_chunks(n)
            .zip(batch)
            .map(|(row, &u)| {
                let user = &self.users[u];
                let mut seen = if self.mask { user.seen.clone() } else { Vec::new() };
                seen.sort_unstable();
                let ranked = top_k(row, self.k, &seen).map_err(|j| anyhow::anyhow!("the model scored item {j} as NaN for user {u}"))?;
                let mut targets = user.targets.clone();
                targets.sort_unstable();
                targets.dedup();
                Ok((u, Ranking { ranked, targets }))
            })
            .collect();
        lap(2, clock);
        ranked
    }
}

/// The indices of the `k` best scores, best first, leaving out `masked` (sorted ascending). Equal
/// scores rank the lower index first. A NaN score is an error: its index comes back.
pub fn top_k(scores: &[f32], k: usize, masked: &[u32]) -> Result<Vec<u32>, usize> {
    // A min-heap of the best k so far; its root is the worst of them. Items arrive in index order,
    // so an item that ties the root comes later than it and never displaces it.
    let worse = |a: (f32, u32), b: (f32, u32)| a.0 < b.0 || (a.0 == b.0 && a.1 > b.1);
    let is_masked = |i: usize| !masked.is_empty() && masked.binary_search(&(i as u32)).is_ok();
    let mut heap: Vec<(f32, u32)> = Vec::with_capacity(k);
    let mut i = 0;
    while i < scores.len() && heap.len() < k {
        let s = scores[i];
        if s.is_nan() {
            return Err(i);
        }
        if !is_masked(i) {
            heap.push((s, i as u32));
            let mut c = heap.len() - 1;
            while c > 0 {
                let p = (c - 1) / 2;
                if !worse(heap[c], heap[p]) {
                    break;
                }
                heap.swap(c, p);
                c = p;
            }
        }
        i += 1;
    }
    const BLOCK: usize = 16;
    while i < scores.len() {
        let end = (i + BLOCK).min(scores.len());
        let floor = heap.first().map_or(f32::INFINITY, |h| h.0);
        // `!(s <= floor)` holds for a better score and for NaN; a block without either is skipped.
        if scores[i..end].iter().fold(false, |any, &s| any | !(s <= floor)) {
            for (j, &s) in scores.iter().enumerate().take(end).skip(i) {
                if s.is_nan() {
                    return Err(j);
                }
                if k > 0 && s > heap[0].0 && !is_masked(j) {
                    heap[0] = (s, j as u32);
                    sift_down(&mut heap, worse);
                }
            }
        }
        i = end;
    }
    heap.sort_by(|&a, &b| if worse(a, b) { std::cmp::Ordering::Greater } else { std::cmp::Ordering::Less });
    Ok(heap.into_iter().map(|(_, i)| i).collect())
}

fn sift_down(heap: &mut [(f32, u32)], worse: impl Fn((f32, u32), (f32, u32)) -> bool) {
    let (k, mut p) = (heap.len(), 0);
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

#[cfg(test)]
mod tests {
    use super::top_k;

    /// The reference: a full sort, lower index first on ties, masked items left out.
    fn sorted(scores: &[f32], k: usize, masked: &[u32]) -> Vec<u32> {
        let mut idx: Vec<u32> = (0..scores.len() as u32).filter(|i| !masked.contains(i)).collect();
        idx.sort_by(|&a, &b| scores[b as usize].total_cmp(&scores[a as usize]).then(a.cmp(&b)));
        idx.truncate(k);
        idx
    }

    #[test]
    fn ties_rank_the_lower_index_first() {
        assert_eq!(top_k(&[1.0, 3.0, 3.0, 2.0, 3.0], 3, &[]), Ok(vec![1, 2, 4]));
        assert_eq!(top_k(&[0.5; 40], 4, &[]), Ok(vec![0, 1, 2, 3]));
    }

    #[test]
    fn masked_items_are_left_out_and_k_may_exceed_the_catalog() {
        assert_eq!(top_k(&[5.0, 1.0, 4.0, 0.0], 10, &[0, 2]), Ok(vec![1, 3]));
        assert_eq!(top_k(&[], 3, &[]), Ok(vec![]));
        assert_eq!(top_k(&[1.0; 40], 0, &[]), Ok(vec![]));
        assert_eq!(top_k(&[1.0, f32::NAN], 0, &[]), Err(1));
    }

    #[test]
    fn a_nan_anywhere_is_an_error_naming_its_index() {
        for at in [0, 5, 17, 39] {
            let mut s: Vec<f32> = (0..40).map(|i| i as f32).collect();
            s[at] = f32::NAN;
            assert_eq!(top_k(&s, 3, &[]), Err(at), "NaN at {at}");
        }
        // Even where a block holds nothing better than the heap, and at a masked item.
        let mut s = vec![1.0f32; 64];
        s[50] = f32::NAN;
        assert_eq!(top_k(&s, 2, &[50]), Err(50));
    }

    #[test]
    fn matches_a_full_sort() {
        let scores: Vec<f32> = (0..5000u32).map(|i| ((i * 7919) % 613) as f32 / 7.0).collect();
        let masked: Vec<u32> = (0..5000).filter(|i| i % 37 == 3).collect();
        for k in [1, 7, 50, 600] {
            assert_eq!(top_k(&scores, k, &[]).unwrap(), sorted(&scores, k, &[]), "k {k}");
            assert_eq!(top_k(&scores, k, &masked).unwrap(), sorted(&scores, k, &masked), "k {k}, masked");
        }
        // Rising scores replace the root in every block; infinities order like any value.
        let mut rising: Vec<f32> = (0..300).map(|i| i as f32).collect();
        rising[10] = f32::INFINITY;
        rising[20] = f32::NEG_INFINITY;
        assert_eq!(top_k(&rising, 5, &[]).unwrap(), sorted(&rising, 5, &[]));
    }
}
