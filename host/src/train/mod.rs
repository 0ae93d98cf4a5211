//! Training: the ID encoders' loop (`encoder.rs`), losses (`loss.rs`), AdamW with checkpointable
//! state (`optim.rs`), checkpoints (`checkpoint.rs`), and evaluation of a trained encoder
//! through the full-ranking evaluator (`scoring.rs`).
//!
//! The loop reads an in-memory [`SequenceData`], so any source (the data issue's Parquet splits,
//! a text file) feeds it through one conversion function.
pub mod checkpoint;
pub mod e4srec;
pub mod encoder;
pub mod export;
pub mod fusion;
pub mod loss;
pub mod optim;
pub mod scoring;

pub use encoder::{train, TrainOptions, Trained};
pub use fusion::{FusionConfig, Missing};

use crate::models::{EncoderConfig, ModelError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A split ready for training, in item indices `0..n_items`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SequenceData {
    /// Catalog size.
    pub n_items: usize,
    /// Training sequences, oldest item first. Every position after the first is a target.
    pub train: Vec<Vec<u32>>,
    /// Each training sequence's completion ratios, parallel to `train` (empty when the source
    /// has none, e.g. a sequences text file).
    pub train_completion: Vec<Vec<Option<f32>>>,
    /// Validation users: the history the encoder reads and the items to find.
    pub valid: Vec<EvalCase>,
    /// Test users, same shape.
    pub test: Vec<EvalCase>,
    /// What the data is, recorded in checkpoints so that `--resume` refuses other data: a prepared
    /// directory's manifest digest, a sequences file's SHA-256, or empty for data made in code.
    pub digest: String,
}

/// One user to evaluate: the input sequence and the held-out targets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EvalCase {
    /// The items before the targets, oldest first.
    pub history: Vec<u32>,
    /// The items to find (usually one: the next item).
    pub targets: Vec<u32>,
    /// The history's completion ratios, parallel to `history` (empty: unknown). The targets'
    /// own ratios are never part of a case.
    pub completion: Vec<Option<f32>>,
}

impl SequenceData {
    /// Leave-one-out from whole sequences, as RecBole's `LS` split: the last item of each sequence
    /// is its test target, the one before its validation target, the rest trains. Sequences with
    /// fewer than 3 items train only.
    pub fn leave_one_out(n_items: usize, sequences: Vec<Vec<u32>>) -> Self {
        let mut d = SequenceData { n_items, ..Default::default() };
        for s in sequences {
            if s.len() < 3 {
                d.train.push(s);
                continue;
            }
            let n = s.len();
            d.test.push(EvalCase { history: s[..n - 1].to_vec(), targets: vec![s[n - 1]], completion: vec![] });
            d.valid.push(EvalCase { history: s[..n - 2].to_vec(), targets: vec![s[n - 2]], completion: vec![] });
            d.train.push(s[..n - 1].to_vec());
        }
        d
    }

    /// From `encore data prepare`'s splits. A training row trains whole. A validation or test row
    /// (`items[..target_from]` context, `items[target_from..]` targets, predicted one after another)
    /// gives one case per target position `p`: history `items[..p]`, target `items[p]`.
    pub fn from_splits(n_items: usize, s: &crate::data::split::Splits) -> Self {
        type Row = (Vec<u32>, Vec<Option<f32>>, usize);
        let rows = |r: &crate::data::split::SplitRows| -> Vec<Row> {
            (0..r.len())
                .map(|i| {
                    let span = r.offsets[i] as usize..r.offsets[i + 1] as usize;
                    let ratios = r.completion.get(span.clone()).map(<[_]>::to_vec).unwrap_or_default();
                    (r.item[span].to_vec(), ratios, r.target_from[i] as usize)
                })
                .collect()
        };
        let cases = |r: &crate::data::split::SplitRows| -> Vec<EvalCase> {
            rows(r)
                .into_iter()
                .flat_map(|(items, ratios, from)| {
                    (from.max(1)..items.len())
                        .map(|p| EvalCase {
                            history: items[..p].to_vec(),
                            targets: vec![items[p]],
                            completion: ratios.get(..p).map(<[_]>::to_vec).unwrap_or_default(),
                        })
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        let (train, train_completion) = rows(&s.train).into_iter().filter(|(items, _, _)| items.len() >= 2).map(|(items, ratios, _)| (items, ratios)).unzip();
        SequenceData { n_items, train, train_completion, valid: cases(&s.valid), test: cases(&s.test), digest: String::new() }
    }

    /// Checks that every item index lies in the catalog, and that there is something to train on
    /// and to evaluate (an empty split would print 0.0000 for every metric).
    pub fn validate(&self) -> Result<(), TrainError> {
        let n = self.n_items;
        let bad = |s: &[u32]| s.iter().find(|&&i| i as usize >= n).copied();
        let all = self.train.iter().map(|s| s.as_slice()).chain(self.valid.iter().chain(&self.test).flat_map(|c| [c.history.as_slice(), c.targets.as_slice()]));
        for s in all {
            if let Some(i) = bad(s) {
                return Err(TrainError::Data(format!("item {i} is outside the catalog of {n} items")));
            }
        }
        if n == 0 {
            return Err(TrainError::Data("the catalog is empty".into()));
        }
        if self.train.iter().all(|s| s.len() < 2) {
            return Err(TrainError::Data("no training sequence has two items: there is nothing to learn from".into()));
        }
        if self.test.is_empty() {
            return Err(TrainError::Data("no test case (sequences of fewer than 3 items only train): there is nothing to evaluate".into()));
        }
        Ok(())
    }
}

/// Which loss trains the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LossKind {
    /// Softmax cross-entropy over the full item set.
    #[default]
    Ce,
    /// Binary cross-entropy with one uniformly sampled negative per target.
    Bce,
}

/// What `train.batch_size` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BatchUnit {
    /// Training targets, as RecBole's `train_batch_size` counts its samples: a next-item target
    /// (SASRec, GRU4Rec) is one prefix, a cloze window (BERT4Rec) counts its positions. A
    /// next-item window is split between two steps where the count runs out, so every step but an
    /// epoch's last holds exactly `batch_size` targets and an epoch takes RecBole's number of steps.
    #[default]
    Targets,
    /// Whole windows of at most `max_len` items, whatever their length (encore before #15: a
    /// step held about 44 targets per window on the parity data).
    Windows,
}

/// Optimisation and early stopping; defaults follow RecBole's `overall.yaml` where it has one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainParams {
    /// Most epochs to run.
    pub epochs: usize,
    /// Per optimizer step: targets (RecBole's meaning, the default) or windows, as `batch_unit`
    /// says.
    pub batch_size: usize,
    /// What `batch_size` counts.
    pub batch_unit: BatchUnit,
    /// Next-item encoders: the fewest items a target sees before it (past its sequence's first
    /// `min_context` items), by overlapping windows; scored once per epoch all the same. 0: a
    /// window's first target sees one item. Costs about `max_len / (max_len − min_context)` times
    /// the compute; RecBole's samples are `max_len`.
    pub min_context: usize,
    /// AdamW learning rate.
    pub lr: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// The loss.
    pub loss: LossKind,
    /// Seed of initialisation, shuffling, dropout, masking and negative sampling.
    pub seed: u64,
    /// Validation metric for early stopping and model selection: `recall@K`, `ndcg@K`, `mrr@K`
    /// or `hit@K`.
    pub valid_metric: String,
    /// Stop after this many validations without improvement (RecBole's `stopping_step`).
    pub patience: usize,
    /// Validate every this many epochs.
    pub eval_every: usize,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            epochs: 300,
            batch_size: 2048,
            batch_unit: BatchUnit::Targets,
            min_context: 0,
            lr: 1e-3,
            weight_decay: 0.0,
            loss: LossKind::Ce,
            seed: 2020,
            valid_metric: "ndcg@10".into(),
            patience: 10,
            eval_every: 1,
        }
    }
}

/// How trained encoders are evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalParams {
    /// Cutoffs.
    pub ks: Vec<u32>,
    /// Remove each user's history from their ranking (RecBole's full-sort default).
    pub mask_history: bool,
    /// Rank 1 positive + this many sampled negatives instead of the full catalog (0: full
    /// ranking). For parity with papers that sample.
    pub sampled_negatives: usize,
    /// Seed of the sampled negatives.
    pub sample_seed: u64,
    /// Users scored per batch.
    pub batch_users: usize,
}

impl Default for EvalParams {
    fn default() -> Self {
        EvalParams { ks: vec![5, 10, 20], mask_history: true, sampled_negatives: 0, sample_seed: 0, batch_users: 512 }
    }
}

/// Where `encore train` reads its data: exactly one of `prepared` (a directory written by
/// `encore data prepare`) or `sequences` (a text file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSource {
    /// A text file, one sequence per line, item indices separated by spaces; split leave-one-out.
    #[serde(default)]
    pub sequences: Option<PathBuf>,
    /// A directory written by `encore data prepare`: its train/valid/test splits and catalog.
    #[serde(default)]
    pub prepared: Option<PathBuf>,
    /// Catalog size; by default one more than the largest index.
    #[serde(default)]
    pub n_items: Option<usize>,
}

/// An `encore train` config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The training data.
    pub data: Option<DataSource>,
    /// The encoder and its hyperparameters.
    pub encoder: EncoderConfig,
    /// Optimisation.
    #[serde(default)]
    pub train: TrainParams,
    /// Evaluation.
    #[serde(default)]
    pub eval: EvalParams,
    /// A content-aware item table: the fusion plugin and the modalities it fuses (none: ID only).
    #[serde(default)]
    pub fusion: Option<FusionConfig>,
}

impl TrainConfig {
    /// Parses a TOML config; unknown keys are errors that name the key.
    pub fn from_toml(text: &str) -> Result<Self, TrainError> {
        let cfg: TrainConfig = toml::from_str(text).map_err(|e| TrainError::Config(e.to_string()))?;
        cfg.check()?;
        Ok(cfg)
    }

    /// Range checks serde cannot express.
    pub fn check(&self) -> Result<(), TrainError> {
        let t = &self.train;
        self.encoder.check().map_err(TrainError::Config)?;
        // `epochs = 0` is allowed: it evaluates the untrained model (bench/encoders/eval.sh).
        if t.batch_size == 0 || t.eval_every == 0 {
            return Err(TrainError::Config(format!("train.batch_size = {}, train.eval_every = {}: each must be at least 1", t.batch_size, t.eval_every)));
        }
        if t.min_context > 0 && (matches!(self.encoder, EncoderConfig::Bert4Rec(_)) || t.min_context >= self.encoder.max_len()) {
            return Err(TrainError::Config(format!(
                "train.min_context = {}: it applies to next-item encoders (SASRec, GRU4Rec) and must be below the encoder's max_len ({})",
                t.min_context,
                self.encoder.max_len()
            )));
        }
        if !(t.lr.is_finite() && t.lr > 0.0) {
            return Err(TrainError::Config(format!("train.lr = {}: must be a positive finite number", t.lr)));
        }
        if !(t.weight_decay.is_finite() && t.weight_decay >= 0.0) {
            return Err(TrainError::Config(format!("train.weight_decay = {}: must be a finite number ≥ 0", t.weight_decay)));
        }
        scoring::ValidMetric::parse(&t.valid_metric)?;
        if self.eval.ks.is_empty() || self.eval.ks.contains(&0) {
            return Err(TrainError::Config("eval.ks takes positive cutoffs".into()));
        }
        // What does not depend on the catalog is bounded before any data is read.
        self.check_memory(0)
    }

    /// A rough upper estimate of training's peak memory in bytes, for a catalog of `n_items`:
    /// weights with their gradients and two AdamW moments, the activations a batch keeps for the
    /// backward pass, and its targets' logits over the catalog (the fused loss turns them into
    /// their gradient in place).
    pub fn memory_estimate(&self, n_items: usize) -> u64 {
        let (b, n) = (self.train.batch_size as u64, n_items as u64 + 1);
        let (params, len, per_position) = match &self.encoder {
            EncoderConfig::SasRec(_) | EncoderConfig::Bert4Rec(_) => {
                let (h, layers, inner, heads, len) = match &self.encoder {
                    EncoderConfig::SasRec(c) => (c.hidden_size, c.n_layers, c.inner_size, c.n_heads, c.max_len),
                    EncoderConfig::Bert4Rec(c) => (c.hidden_size, c.n_layers, c.inner_size, c.n_heads, c.max_len),
                    EncoderConfig::Gru4Rec(_) => unreachable!("matched above"),
                };
                let (h, layers, inner, heads, len) = (h as u64, layers as u64, inner as u64, heads as u64, len as u64);
                let params = (n + len) * h + layers * (4 * h * h + 2 * h * inner + 10 * h);
                (params, len, layers * (10 * h + 2 * inner + 3 * heads * len))
            }
            EncoderConfig::Gru4Rec(c) => {
                let (e, h, layers, len) = (c.embedding_size as u64, c.hidden_size as u64, c.num_layers as u64, c.max_len as u64);
                (n * e + layers * 3 * (e + h + 2) * h, len, e + layers * 8 * h)
            }
        };
        // A step holds at most `b` windows either way (each window in a step trains at least one
        // of its targets); only the targets' rows reach the loss, so the logits have one row per
        // target: at most `b` (or one longer cloze window), or every position of `b` windows.
        let targets = match self.train.batch_unit {
            BatchUnit::Targets => b.max(len),
            BatchUnit::Windows => b.saturating_mul(len),
        };
        let activations = b.saturating_mul(len).saturating_mul(per_position);
        let floats = params.saturating_mul(4).saturating_add(activations).saturating_add(targets.saturating_mul(n));
        floats.saturating_mul(4)
    }

    /// Refuses a config whose [`Self::memory_estimate`] exceeds this machine's physical memory,
    /// naming the keys that size it.
    pub fn check_memory(&self, n_items: usize) -> Result<(), TrainError> {
        let need = self.memory_estimate(n_items);
        let Some(have) = crate::io::physical_memory() else { return Ok(()) };
        if need > have {
            let gib = |x: u64| x as f64 / (1u64 << 30) as f64;
            return Err(TrainError::Config(format!(
                "training needs about {:.1} GiB{}, but this machine has {:.1} GiB of memory: lower train.batch_size ({}), the encoder's max_len or its width",
                gib(need),
                if n_items > 0 { format!(" for {n_items} items") } else { String::new() },
                gib(have),
                self.train.batch_size
            )));
        }
        Ok(())
    }
}

/// Errors from training, checkpoints and evaluation of encoders.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The LLM (E4SRec) failed.
    #[error(transparent)]
    Llm(#[from] crate::llm::LlmError),
    /// A config value is invalid.
    #[error("invalid training config: {0}")]
    Config(String),
    /// The data is unusable.
    #[error("invalid training data: {0}")]
    Data(String),
    /// A checkpoint file is truncated, corrupt or unreadable.
    #[error("checkpoint {path} is corrupt or incomplete: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A checkpoint does not belong to this config or data.
    #[error("checkpoint {path} does not match this run: {reason}")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// What differs.
        reason: String,
    },
    /// Reading or writing a file failed. The cause is in the message and not chained as a
    /// source, so a report that prints the chain says it once.
    #[error("{context}: {cause}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        cause: std::io::Error,
    },
    /// Evaluation failed.
    #[error("evaluation failed: {0:#}")]
    Eval(anyhow::Error),
}

/// Reads a text file of sequences, one per line, item indices separated by whitespace (blank
/// lines and `#` comments skipped), and splits it leave-one-out. The one place `encore train`
/// reads data from, until it reads the data issue's Parquet splits.
pub fn read_sequences_txt(src: &DataSource) -> Result<SequenceData, TrainError> {
    let path = src.sequences.as_ref().ok_or_else(|| TrainError::Config("[data] needs `sequences` or `prepared`".into()))?;
    let text = std::fs::read_to_string(path).map_err(|cause| TrainError::Io { context: format!("reading {}", path.display()), cause })?;
    let mut seqs = Vec::new();
    for (ln, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let s = line
            .split_whitespace()
            .map(|w| w.parse::<u32>().map_err(|_| TrainError::Data(format!("{}:{}: {w:?} is not an item index", path.display(), ln + 1))))
            .collect::<Result<Vec<u32>, _>>()?;
        seqs.push(s);
    }
    let max = seqs.iter().flatten().copied().max().map_or(0, |m| m as usize + 1);
    let n_items = src.n_items.unwrap_or(max);
    if n_items < max {
        return Err(TrainError::Data(format!("{} holds item {} but n_items is {n_items}", path.display(), max - 1)));
    }
    let mut data = SequenceData::leave_one_out(n_items, seqs);
    data.digest = crate::artifact::sha256_hex(text.as_bytes());
    data.validate()?;
    Ok(data)
}

#[cfg(test)]
mod memory_tests {
    use super::*;

    #[test]
    fn a_config_beyond_the_machine_is_refused_before_any_data_is_read() {
        let ok: TrainConfig = TrainConfig::from_toml("[encoder]\nkind = \"sasrec\"\n").unwrap();
        // The default step is 2,048 targets; the bound lets each sit in its own padded window
        // (≈ 1.2 GB of SASRec activations), where real data packs them into ≈ 47.
        assert!(ok.memory_estimate(3000) < 2 << 30, "{}", ok.memory_estimate(3000));
        ok.check_memory(3000).unwrap();
        // Each size in its range, but together about 2 PiB of activations.
        let text = "[encoder]\nkind = \"sasrec\"\nhidden_size = 8192\ninner_size = 8192\nn_heads = 8\nmax_len = 65536\n[train]\nbatch_size = 4096\n";
        let e = TrainConfig::from_toml(text).unwrap_err().to_string();
        assert!(e.contains("GiB") && e.contains("batch_size (4096)"), "{e}");
        // The catalog's share is checked once its size is known.
        let e = ok.check_memory(1 << 40).unwrap_err().to_string();
        assert!(e.contains("items"), "{e}");
    }
}
