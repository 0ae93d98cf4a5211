//! Zero-shot ranking by an LLM's likelihood, with nothing trained: the session's tracks are
//! written out as text ("Artist – Title", one per line), and each candidate track is scored by
//! the mean log-probability per token of its own line as the continuation. The prompt runs once
//! per case; its keys and values are shared by every candidate, which run in batches (right-
//! padded, masked).
//!
//! This is the honest form of the paper's zero-shot setting: the model sees only names, and is
//! evaluated under the same candidate sets as the trained models (`train::scoring::sampled_candidates`).
use super::llama::{Llama, Mode};
use super::{LlmError, Result, Tokenizer};
use candle_core::{DType, Tensor, D};

/// The text before the tracks.
pub const HEADER: &str = "A listener played these tracks, in this order:\n";
/// The text after them, before a candidate.
pub const NEXT: &str = "The next track the listener played:\n";

/// An LLM with the catalog's track lines.
pub struct ZeroShot<'a> {
    llm: &'a Llama,
    lines: Vec<Vec<u32>>,
    header: Vec<u32>,
    next: Vec<u32>,
    max_items: usize,
    batch: usize,
}

impl<'a> ZeroShot<'a> {
    /// `texts[i]` names item `i` (e.g. "Björk – Jóga"); the prompt holds at most `max_items` of a
    /// session's most recent tracks.
    pub fn new(llm: &'a Llama, tok: &Tokenizer, texts: &[String], max_items: usize) -> Result<Self> {
        let mut lines = Vec::with_capacity(texts.len());
        for (i, t) in texts.iter().enumerate() {
            let ids = tok.encode(&format!("{}\n", t.trim()))?;
            if ids.is_empty() {
                return Err(LlmError::Input(format!("item {i} has an empty name")));
            }
            // Long names are cut: the likelihood of the first 24 tokens decides.
            lines.push(ids.into_iter().take(24).collect());
        }
        Ok(ZeroShot { llm, lines, header: tok.encode(HEADER)?, next: tok.encode(NEXT)?, max_items: max_items.max(1), batch: 32 })
    }

    /// The prompt's token ids for a history (its last `max_items` tracks).
    pub fn prompt(&self, history: &[u32]) -> Vec<u32> {
        let mut ids = self.header.clone();
        for &i in &history[history.len().saturating_sub(self.max_items)..] {
            if let Some(l) = self.lines.get(i as usize) {
                ids.extend_from_slice(l);
            }
        }
        ids.extend_from_slice(&self.next);
        ids
    }

    /// Mean log-probability per token of each candidate's line after the history's prompt.
    pub fn score(&self, history: &[u32], candidates: &[u32]) -> Result<Vec<f32>> {
        let device = self.llm.device().clone();
        let prompt = self.prompt(history);
        let p = prompt.len();
        let x = self.llm.embed_ids(&Tensor::from_vec(prompt, (1, p), &device)?)?;
        let (h, cache) = self.llm.forward(&x, &Tensor::ones((1, p), DType::F32, &device)?, None, Mode::Infer)?;
        let first = candle_nn::ops::log_softmax(&self.llm.logits(&h.narrow(1, p - 1, 1)?)?.flatten_all()?, D::Minus1)?.to_vec1::<f32>()?;
        let mut out = Vec::with_capacity(candidates.len());
        for chunk in candidates.chunks(self.batch) {
            let lines: Vec<&[u32]> = chunk
                .iter()
                .map(|&c| self.lines.get(c as usize).map(|l| l.as_slice()).ok_or_else(|| LlmError::Input(format!("candidate {c} is outside the catalog"))))
                .collect::<Result<_>>()?;
            let b = lines.len();
            let t = lines.iter().map(|l| l.len()).max().unwrap_or(1);
            let mut ids = vec![0u32; b * t];
            let mut valid = vec![0f32; b * t];
            for (r, l) in lines.iter().enumerate() {
                ids[r * t..r * t + l.len()].copy_from_slice(l);
                valid[r * t..r * t + l.len()].fill(1.0);
            }
            let x = self.llm.embed_ids(&Tensor::from_vec(ids.clone(), (b, t), &device)?)?;
            let keys = Tensor::cat(&[&Tensor::ones((b, p), DType::F32, &device)?, &Tensor::from_vec(valid, (b, t), &device)?], 1)?;
            let h = self.llm.hidden(&x, &keys, Some(&cache), Mode::Infer)?;
            // Position j predicts token j + 1; the first token comes from the prompt's last position.
            let picked: Vec<f32> = if t > 1 {
                let logp = candle_nn::ops::log_softmax(&self.llm.logits(&h.narrow(1, 0, t - 1)?)?, D::Minus1)?;
                let next: Vec<u32> = (0..b).flat_map(|r| (1..t).map(move |j| (r, j))).map(|(r, j)| ids[r * t + j]).collect();
                logp.gather(&Tensor::from_vec(next, (b, t - 1, 1), &device)?, 2)?.flatten_all()?.to_vec1()?
            } else {
                Vec::new()
            };
            for (r, l) in lines.iter().enumerate() {
                let rest: f32 = (1..l.len()).map(|j| picked[r * (t - 1) + j - 1]).sum();
                out.push((first[l[0] as usize] + rest) / l.len() as f32);
            }
        }
        Ok(out)
    }
}

/// Ranks each case's candidates (from `candidates`, in tie-break order, with the targets) by
/// [`ZeroShot::score`] into `sink`; equal scores keep the given order.
fn rank_each(
    zs: &ZeroShot,
    cases: &[crate::train::EvalCase],
    sink: &mut dyn crate::eval::RankingSink,
    progress: bool,
    what: &str,
    mut candidates: impl FnMut(usize, &crate::train::EvalCase) -> std::result::Result<(Vec<u32>, Vec<u32>), crate::train::TrainError>,
) -> std::result::Result<(), crate::train::TrainError> {
    let k = sink.max_k() as usize;
    let bar = progress.then(|| {
        let b = indicatif::ProgressBar::new(cases.len() as u64);
        b.set_style(indicatif::ProgressStyle::with_template(&format!("{what} {{bar:30}} {{pos}}/{{len}} cases [{{elapsed}}<{{eta}}]")).expect("template"));
        b
    });
    for (u, case) in cases.iter().enumerate() {
        if case.targets.is_empty() {
            continue;
        }
        let (cands, targets) = candidates(u, case)?;
        let scores = zs.score(&case.history, &cands)?;
        let mut order: Vec<usize> = (0..cands.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        let ranked = order.into_iter().take(k).map(|j| cands[j]).collect();
        sink.add(&[crate::plugins::metric::Ranking { ranked, targets }]).map_err(crate::train::TrainError::Eval)?;
        if let Some(b) = &bar {
            b.inc(1);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(())
}

/// Re-ranks each case's `tops[u]` (an encoder's best items, best first) by [`ZeroShot::score`]
/// into `sink`: full-ranking metrics where the LLM decides the order of the encoder's top N (N
/// must cover the largest cutoff; ties keep the encoder's order); a target outside the top N is
/// not found.
pub fn rerank(
    zs: &ZeroShot,
    cases: &[crate::train::EvalCase],
    tops: &[Vec<u32>],
    sink: &mut dyn crate::eval::RankingSink,
    progress: bool,
) -> std::result::Result<(), crate::train::TrainError> {
    let k = sink.max_k() as usize;
    rank_each(zs, cases, sink, progress, "zero-shot re-ranking", |u, case| {
        let top = tops.get(u).cloned().unwrap_or_default();
        if top.len() < k {
            return Err(crate::train::TrainError::Config(format!("re-ranking a top {} cannot fill the largest cutoff {k}: raise `top`", top.len())));
        }
        let mut targets = case.targets.clone();
        targets.sort_unstable();
        targets.dedup();
        Ok((top, targets))
    })
}

/// Ranks each case's sampled candidates (`params.sampled_negatives`, which must be positive:
/// scoring the whole catalog by likelihood is not practical) by [`ZeroShot::score`] into
/// `sink`; ties rank the lower index first. Case `u`'s candidates are those every other model gets
/// under the sampled protocol on the same `cases`.
pub fn evaluate(
    zs: &ZeroShot,
    cases: &[crate::train::EvalCase],
    params: &crate::train::EvalParams,
    sink: &mut dyn crate::eval::RankingSink,
    progress: bool,
) -> std::result::Result<(), crate::train::TrainError> {
    if params.sampled_negatives == 0 {
        return Err(crate::train::TrainError::Config("zero-shot ranking needs sampled candidates: set negatives > 0".into()));
    }
    let n = zs.lines.len();
    rank_each(zs, cases, sink, progress, "zero-shot", |u, case| {
        let (mut cands, targets) = crate::train::scoring::sampled_candidates(case, u, n, params);
        cands.sort_unstable();
        Ok((cands, targets))
    })
}
