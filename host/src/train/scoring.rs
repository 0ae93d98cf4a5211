//! Evaluating an encoder: a [`Scorer`] that runs the model's user representation against the
//! item table, so the foundation's `full_ranking` and the metric plugins evaluate it; a sampled
//! option (the positive among N seeded negatives); and a native metric sink for early stopping.
use super::{EvalCase, EvalParams, TrainError};
use crate::eval::{self, native, EvalUser, RankOptions, RankingSink, Scorer};
use crate::models::SeqEncoder;
use crate::plugins::metric::Ranking;
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Scores the whole catalog for evaluation users by `user vector · item tableᵀ (+ item bias)`.
pub struct EncoderScorer<'a> {
    model: &'a dyn SeqEncoder,
    cases: &'a [EvalCase],
    /// Every row of the input table, computed once (a fusion plan runs once per evaluation).
    table: Tensor,
    items: Tensor,
    bias: Option<Tensor>,
    device: Device,
}

impl<'a> EncoderScorer<'a> {
    /// A scorer over `cases`, in their order.
    pub fn new(model: &'a dyn SeqEncoder, cases: &'a [EvalCase], device: &Device) -> Result<Self, TrainError> {
        let table = model.embedding_table(None)?;
        let items = table.narrow(0, 0, model.n_items())?;
        Ok(EncoderScorer { model, cases, table, items, bias: model.item_bias()?, device: device.clone() })
    }
}

impl Scorer for EncoderScorer<'_> {
    fn item_table(&self) -> &Tensor {
        &self.items
    }
    fn item_bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }
    fn user_vectors(&self, users: &[usize]) -> anyhow::Result<Tensor> {
        let hist: Vec<&[u32]> = users.iter().map(|&u| self.cases[u].history.as_slice()).collect();
        let ratios: Vec<&[Option<f32>]> = users.iter().map(|&u| self.cases[u].completion.as_slice()).collect();
        Ok(self.model.user_vectors(&self.table, &hist, &ratios, &self.device)?)
    }
    /// Histories of equal (truncated) length pad to the same width.
    fn batch_key(&self, user: usize) -> usize {
        self.cases[user].history.len().min(self.model.max_len())
    }
}

/// Each case's `n` best items by `scorer` (history excluded when `mask_history`), best first,
/// ties to the lower index: what a re-ranker re-orders. For small case sets (one dense
/// `cases × n_items` product per batch).
pub fn top_n(scorer: &dyn Scorer, cases: &[EvalCase], n: usize, mask_history: bool) -> Result<Vec<Vec<u32>>, TrainError> {
    let mut out = Vec::with_capacity(cases.len());
    for (b, chunk) in cases.chunks(256).enumerate() {
        let ids: Vec<usize> = (b * 256..b * 256 + chunk.len()).collect();
        let users = scorer.user_vectors(&ids).map_err(TrainError::Eval)?;
        let mut scores = users.matmul(&scorer.item_table().t()?)?;
        if let Some(bias) = scorer.item_bias() {
            scores = scores.broadcast_add(&bias.reshape((1, ()))?)?;
        }
        let rows: Vec<Vec<f32>> = scores.to_device(&Device::Cpu)?.to_vec2()?;
        for (case, row) in chunk.iter().zip(rows) {
            let seen: std::collections::HashSet<u32> = if mask_history { case.history.iter().copied().collect() } else { Default::default() };
            let mut order: Vec<u32> = (0..row.len() as u32).filter(|i| !seen.contains(i)).collect();
            order.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]).then(a.cmp(&b)));
            order.truncate(n);
            out.push(order);
        }
    }
    Ok(out)
}

/// The evaluation users for `cases`: their history is what gets masked when masking is on.
pub fn eval_users(cases: &[EvalCase]) -> Vec<EvalUser> {
    cases.iter().map(|c| EvalUser { seen: c.history.clone(), targets: c.targets.clone() }).collect()
}

/// A seeded subset of `n` cases (all when `n` is 0 or covers them), in their original order.
pub fn subset(cases: &[EvalCase], n: usize, seed: u64) -> Vec<EvalCase> {
    if n == 0 || n >= cases.len() {
        return cases.to_vec();
    }
    let mut idx: Vec<usize> = (0..cases.len()).collect();
    rand::seq::SliceRandom::shuffle(idx.as_mut_slice(), &mut StdRng::seed_from_u64(seed ^ 0x5EED));
    let mut keep: Vec<usize> = idx.into_iter().take(n).collect();
    keep.sort_unstable();
    keep.into_iter().map(|i| cases[i].clone()).collect()
}

/// Evaluates `model` on `cases` into `sink`: full ranking, or sampled when
/// `params.sampled_negatives > 0`.
pub fn evaluate(model: &dyn SeqEncoder, cases: &[EvalCase], params: &EvalParams, sink: &mut dyn RankingSink, device: &Device) -> Result<(), TrainError> {
    if params.sampled_negatives > 0 {
        return sampled_ranking(model, cases, params, sink, device);
    }
    let scorer = EncoderScorer::new(model, cases, device)?;
    let opts = RankOptions { batch_users: params.batch_users.max(1), mask_seen: params.mask_history };
    eval::full_ranking(&scorer, &eval_users(cases), sink, opts).map_err(TrainError::Eval)
}

/// Sampled evaluation: each user's targets ranked among `sampled_negatives` items drawn
/// uniformly, without replacement, from the items outside their history and targets. The draw
/// for user `u` depends only on `(sample_seed, u)`, so it is the same for every model and batch
/// size. Ties rank the lower index first, as in full ranking.
pub fn sampled_ranking(model: &dyn SeqEncoder, cases: &[EvalCase], params: &EvalParams, sink: &mut dyn RankingSink, device: &Device) -> Result<(), TrainError> {
    let scorer = EncoderScorer::new(model, cases, device)?;
    sampled(&scorer, cases, params, sink, device)
}

/// The candidates of case `u` under the sampled protocol: its distinct targets (sorted), then
/// `params.sampled_negatives` items drawn uniformly without replacement from the items outside
/// its history and targets, from a generator seeded by `(sample_seed, u)`. Returns the candidates
/// and the targets.
pub fn sampled_candidates(case: &EvalCase, u: usize, n: usize, params: &EvalParams) -> (Vec<u32>, Vec<u32>) {
    let mut excluded: std::collections::HashSet<u32> = case.history.iter().chain(&case.targets).copied().collect();
    let available = n.saturating_sub(excluded.len());
    let want = params.sampled_negatives.min(available);
    let mut rng = StdRng::seed_from_u64(params.sample_seed ^ (u as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut cands: Vec<u32> = case.targets.clone();
    cands.sort_unstable();
    cands.dedup();
    let targets = cands.clone();
    while cands.len() < targets.len() + want {
        let j = rng.random_range(0..n as u32);
        if excluded.insert(j) {
            cands.push(j);
        }
    }
    (cands, targets)
}

/// [`sampled_ranking`] for any scorer over `cases` (user `u` of the scorer is `cases[u]`).
pub fn sampled(scorer: &dyn Scorer, cases: &[EvalCase], params: &EvalParams, sink: &mut dyn RankingSink, device: &Device) -> Result<(), TrainError> {
    let table = scorer.item_table().clone();
    let n = table.dims()[0];
    let k = sink.max_k() as usize;
    let bias = scorer.item_bias().cloned();
    for (b, chunk) in cases.chunks(params.batch_users.max(1)).enumerate() {
        let first = b * params.batch_users.max(1);
        let ids: Vec<usize> = (first..first + chunk.len()).collect();
        let users = scorer.user_vectors(&ids).map_err(TrainError::Eval)?;
        let mut batch = Vec::new();
        for (i, case) in chunk.iter().enumerate() {
            if case.targets.is_empty() {
                continue;
            }
            let (cands, targets) = sampled_candidates(case, first + i, n, params);
            let idx = Tensor::new(cands.as_slice(), device)?;
            let mut scores = table.index_select(&idx, 0)?.matmul(&users.narrow(0, i, 1)?.t()?)?.flatten_all()?;
            if let Some(bias) = &bias {
                scores = (scores + bias.index_select(&idx, 0)?)?;
            }
            let scores = scores.to_vec1::<f32>()?;
            let mut order: Vec<usize> = (0..cands.len()).collect();
            order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(cands[a].cmp(&cands[b])));
            let ranked = order.into_iter().take(k).map(|j| cands[j]).collect();
            batch.push(Ranking { ranked, targets });
        }
        sink.add(&batch).map_err(TrainError::Eval)?;
    }
    Ok(())
}

/// A validation metric, e.g. `ndcg@10`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidMetric {
    /// Which metric.
    pub kind: MetricKind,
    /// Its cutoff.
    pub k: u32,
}

/// The metrics early stopping can watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Recall@K.
    Recall,
    /// NDCG@K.
    Ndcg,
    /// MRR@K.
    Mrr,
    /// Hit@K.
    Hit,
}

impl ValidMetric {
    /// Parses `name@K`.
    pub fn parse(s: &str) -> Result<Self, TrainError> {
        let bad = || TrainError::Config(format!("valid_metric {s:?} is not one of recall@K, ndcg@K, mrr@K, hit@K"));
        let (name, k) = s.split_once('@').ok_or_else(bad)?;
        let k: u32 = k.parse().map_err(|_| bad())?;
        let kind = match name.to_ascii_lowercase().as_str() {
            "recall" => MetricKind::Recall,
            "ndcg" => MetricKind::Ndcg,
            "mrr" => MetricKind::Mrr,
            "hit" => MetricKind::Hit,
            _ => return Err(bad()),
        };
        if k == 0 {
            return Err(bad());
        }
        Ok(ValidMetric { kind, k })
    }
}

/// A sink computing one metric natively (`eval::native`): cheap enough to run every epoch.
pub struct NativeSink {
    metric: ValidMetric,
    n_items: u32,
    sum: f64,
    users: usize,
}

impl NativeSink {
    /// An empty tally.
    pub fn new(metric: ValidMetric, n_items: u32) -> Self {
        NativeSink { metric, n_items, sum: 0.0, users: 0 }
    }
    /// The mean over users (0 without users).
    pub fn value(&self) -> f64 {
        if self.users == 0 {
            0.0
        } else {
            self.sum / self.users as f64
        }
    }
}

impl RankingSink for NativeSink {
    fn n_items(&self) -> u32 {
        self.n_items
    }
    fn max_k(&self) -> u32 {
        self.metric.k
    }
    fn add(&mut self, batch: &[Ranking]) -> anyhow::Result<()> {
        let k = self.metric.k as usize;
        for r in batch {
            let top = &r.ranked[..r.ranked.len().min(k)];
            self.sum += match self.metric.kind {
                MetricKind::Recall => native::recall(top, &r.targets),
                MetricKind::Ndcg => native::ndcg(top, &r.targets, k),
                MetricKind::Mrr => native::mrr(top, &r.targets),
                MetricKind::Hit => native::hit(top, &r.targets),
            };
            self.users += 1;
        }
        Ok(())
    }
}
