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
        SequenceData { n_items, train, train_completion, valid: cases(&s.valid), test: cases(&s.test) }
    }

    /// Checks that every item index lies in the catalog.
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

/// Optimisation and early stopping; defaults follow RecBole's `overall.yaml` where it has one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainParams {
    /// Most epochs to run.
    pub epochs: usize,
    /// Sequences (windows of at most `max_len`) per batch.
    pub batch_size: usize,
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
            batch_size: 256,
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
    let data = SequenceData::leave_one_out(n_items, seqs);
    data.validate()?;
    Ok(data)
}
