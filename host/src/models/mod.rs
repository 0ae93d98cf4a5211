//! Models: the ID-based sequential encoders (SASRec, BERT4Rec, GRU4Rec), one file each, the
//! layers they share (`layers.rs`), and the content-aware item table (`fusion_plan.rs`,
//! `item_table.rs`): the recommenders trained from scratch. Frozen pretrained networks live
//! elsewhere: the extractors' BERT and EnCodec in `hostmodels/`, the LLM (frozen base, trained
//! adapters) in `llm/`.
//!
//! Item indices are `0..n_items`. Every encoder's embedding table has extra rows after the
//! catalog: a padding row (`n_items` for SASRec and GRU4Rec), and for BERT4Rec a mask token
//! (`n_items`) and then the padding row (`n_items + 1`). Sequences are left-aligned and padded at
//! the end, so causal models never see padding from a real position.
//!
//! Only candle ops with a backward are used: no fused softmax, layer norm, rms norm or rope
//! (candle 0.11 drops their gradients silently). A test checks that every trainable tensor gets
//! a gradient.
pub mod bert4rec;
pub mod fusion_plan;
pub mod gru4rec;
pub mod item_table;
pub mod layers;
pub mod sasrec;

pub use bert4rec::{Bert4Rec, Bert4RecConfig};
pub use gru4rec::{Gru4Rec, Gru4RecConfig};
pub use item_table::{FusionSpec, ItemTable};
pub use layers::{Completion, Params, TrainCtx};
pub use sasrec::{SasRec, SasRecConfig};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// Errors from building or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A configuration value is out of range.
    #[error("invalid model config: {0}")]
    Config(String),
}

/// Result alias for model code.
pub type Result<T> = std::result::Result<T, ModelError>;

/// Which encoder, with its hyperparameters (`kind = "sasrec" | "bert4rec" | "gru4rec"` in TOML).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum EncoderConfig {
    /// Causal self-attention (Kang & McAuley, 2018).
    SasRec(SasRecConfig),
    /// Bidirectional self-attention with the cloze objective (Sun et al., 2019).
    Bert4Rec(Bert4RecConfig),
    /// A GRU over the session (Hidasi et al., 2016).
    Gru4Rec(Gru4RecConfig),
}

impl EncoderConfig {
    /// The encoder's name, as reports print it.
    pub fn name(&self) -> &'static str {
        match self {
            EncoderConfig::SasRec(_) => "SASRec",
            EncoderConfig::Bert4Rec(_) => "BERT4Rec",
            EncoderConfig::Gru4Rec(_) => "GRU4Rec",
        }
    }
    /// The longest input sequence the encoder takes.
    pub fn max_len(&self) -> usize {
        match self {
            EncoderConfig::SasRec(c) => c.max_len,
            EncoderConfig::Bert4Rec(c) => c.max_len,
            EncoderConfig::Gru4Rec(c) => c.max_len,
        }
    }
    /// The width of its item table (what a fusion plan must produce).
    pub fn item_dim(&self) -> usize {
        match self {
            EncoderConfig::SasRec(c) => c.hidden_size,
            EncoderConfig::Bert4Rec(c) => c.hidden_size,
            EncoderConfig::Gru4Rec(c) => c.embedding_size,
        }
    }
    /// Builds the encoder with fresh weights drawn from `params`; with `fusion`, its catalog
    /// rows are the fusion plan's output.
    pub fn build(&self, n_items: usize, params: &mut Params, fusion: Option<&FusionSpec>) -> Result<Box<dyn SeqEncoder>> {
        Ok(match self {
            EncoderConfig::SasRec(c) => Box::new(SasRec::new(c.clone(), n_items, params, fusion)?),
            EncoderConfig::Bert4Rec(c) => Box::new(Bert4Rec::new(c.clone(), n_items, params, fusion)?),
            EncoderConfig::Gru4Rec(c) => Box::new(Gru4Rec::new(c.clone(), n_items, params, fusion)?),
        })
    }
}

/// Whether an encoder reads each position's completion ratio (`[encoder] completion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompletionMode {
    /// Items only.
    #[default]
    None,
    /// A learned projection of the ratio (or a learned "unknown" vector) is added to each
    /// position's input.
    Embed,
}

/// The widest layer, the longest sequence and the most layers a config may ask for: far beyond
/// any published setting, and small enough that no size computation overflows.
const MAX_WIDTH: usize = 1 << 16;
const MAX_LEN: usize = 1 << 16;
const MAX_LAYERS: usize = 256;

/// Range checks on one config key: `Err("encoder.KEY = VALUE: …")`.
struct Check(Vec<String>);

impl Check {
    fn size(&mut self, key: &str, v: usize, lo: usize, hi: usize) {
        if v < lo || v > hi {
            self.0.push(format!("encoder.{key} = {v}: must lie in {lo}..={hi}"));
        }
    }
    fn prob(&mut self, key: &str, v: f32, closed: bool) {
        let ok = v.is_finite() && v >= 0.0 && (v < 1.0 || (closed && v == 1.0));
        if !ok {
            self.0.push(format!("encoder.{key} = {v}: must be a probability in [0, 1{}", if closed { "]" } else { ")" }));
        }
    }
    fn positive(&mut self, key: &str, v: f64) {
        if !(v.is_finite() && v > 0.0) {
            self.0.push(format!("encoder.{key} = {v}: must be a positive finite number"));
        }
    }
    fn heads(&mut self, hidden: usize, heads: usize) {
        if heads == 0 || heads > hidden || (hidden > 0 && !hidden.is_multiple_of(heads)) {
            self.0.push(format!("encoder.n_heads = {heads}: must be at least 1 and divide hidden_size ({hidden})"));
        }
    }
}

impl EncoderConfig {
    /// Every hyperparameter in its range, checked before any data is read or weight allocated:
    /// sizes positive and bounded, heads dividing the width, probabilities in [0, 1), epsilons and
    /// scales positive and finite. The message names each bad key, its value and the range.
    pub fn check(&self) -> std::result::Result<(), String> {
        let mut c = Check(Vec::new());
        // SASRec and BERT4Rec share the transformer's keys.
        macro_rules! transformer {
            ($x:expr) => {{
                c.size("hidden_size", $x.hidden_size, 1, MAX_WIDTH);
                c.size("n_layers", $x.n_layers, 1, MAX_LAYERS);
                c.heads($x.hidden_size, $x.n_heads);
                c.size("inner_size", $x.inner_size, 1, MAX_WIDTH);
                c.prob("hidden_dropout", $x.hidden_dropout, false);
                c.prob("attn_dropout", $x.attn_dropout, false);
                c.positive("layer_norm_eps", $x.layer_norm_eps);
                c.positive("initializer_range", $x.initializer_range);
            }};
        }
        match self {
            EncoderConfig::SasRec(x) => {
                transformer!(x);
                c.size("max_len", x.max_len, 1, MAX_LEN);
            }
            EncoderConfig::Bert4Rec(x) => {
                transformer!(x);
                c.size("max_len", x.max_len, 2, MAX_LEN);
                c.prob("mask_ratio", x.mask_ratio, true);
                c.prob("ft_ratio", x.ft_ratio, true);
                c.size("mask_copies", x.mask_copies, 1, 64);
            }
            EncoderConfig::Gru4Rec(x) => {
                c.size("embedding_size", x.embedding_size, 1, MAX_WIDTH);
                c.size("hidden_size", x.hidden_size, 1, MAX_WIDTH);
                c.size("num_layers", x.num_layers, 1, MAX_LAYERS);
                c.prob("dropout_prob", x.dropout_prob, false);
                c.size("max_len", x.max_len, 1, MAX_LEN);
            }
        }
        match c.0.is_empty() {
            true => Ok(()),
            false => Err(c.0.join("; ")),
        }
    }

    /// Whether it reads completion ratios.
    pub fn completion(&self) -> CompletionMode {
        match self {
            EncoderConfig::SasRec(c) => c.completion,
            EncoderConfig::Bert4Rec(c) => c.completion,
            EncoderConfig::Gru4Rec(c) => c.completion,
        }
    }
}

/// How an encoder is trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objective {
    /// Predict the next item at every position (SASRec, GRU4Rec).
    NextItem,
    /// Predict masked items (BERT4Rec's cloze task); the mask token's index.
    Cloze {
        /// The mask token (`n_items`).
        mask: u32,
    },
}

/// What the training loop and the scorers need from an encoder.
///
/// The item table is an argument: a step computes it once ([`embedding_table`](Self::embedding_table),
/// which runs the fusion plan when there is one) and hands it to the forward pass, and the
/// scorers compute it once per evaluation.
pub trait SeqEncoder: Send + Sync {
    /// Catalog size (scored items).
    fn n_items(&self) -> usize;
    /// The padding index fed after the end of a sequence.
    fn pad(&self) -> u32;
    /// How it is trained.
    fn objective(&self) -> Objective;
    /// Every row of the input table (the catalog, then padding and other special tokens), with
    /// dropout inside a fusion plan only when `ctx` is given.
    fn embedding_table(&self, ctx: Option<&TrainCtx>) -> Result<Tensor>;
    /// Hidden states `B × L × d` for item indices `B × L` (u32) and the true lengths, reading
    /// items from `table` (from [`embedding_table`](Self::embedding_table)) and, when the encoder
    /// reads them, each position's completion ratio.
    fn forward(&self, table: &Tensor, items: &Tensor, lens: &[usize], completion: Option<&Completion>, ctx: Option<&TrainCtx>) -> Result<Tensor>;
    /// Whether [`forward`](Self::forward) reads completion ratios (`completion = "embed"`).
    fn reads_completion(&self) -> bool {
        false
    }
    /// The item vectors that hidden states are scored against, `n_items × d`: the catalog rows
    /// of the input table.
    fn item_table(&self) -> Result<Tensor> {
        Ok(self.embedding_table(None)?.narrow(0, 0, self.n_items())?)
    }
    /// A per-item score offset (`n_items`), added to `hidden · item_table()ᵀ`; none by default.
    fn item_bias(&self) -> Result<Option<Tensor>> {
        Ok(None)
    }
    /// The longest input.
    fn max_len(&self) -> usize;
    /// The hidden state at position `lens[i] - 1` of each row, `B × d`: what a user vector reads.
    /// The default runs [`forward`](Self::forward) and gathers; the transformers override it to
    /// run their last layer at those positions only (the same values, to rounding).
    fn forward_last(&self, table: &Tensor, items: &Tensor, lens: &[usize], completion: Option<&Completion>) -> Result<Tensor> {
        gather_last(&self.forward(table, items, lens, completion, None)?, lens)
    }
    /// User representations `U × d` for histories (at most `max_len` used, the most recent),
    /// with each history's completion ratios (`completions[i]` parallel to `histories[i]`, or
    /// empty: unknown) when the encoder reads them.
    fn user_vectors(&self, table: &Tensor, histories: &[&[u32]], completions: &[&[Option<f32>]], device: &Device) -> Result<Tensor> {
        let max_len = self.max_len();
        // The ratios of the kept (most recent) items, aligned with the kept history.
        let kept_ratios = |i: usize, keep: usize| -> Vec<Option<f32>> {
            let h = histories[i];
            let r = completions.get(i).copied().unwrap_or(&[]);
            if r.len() == h.len() {
                r[h.len() - keep..].to_vec()
            } else {
                vec![None; keep]
            }
        };
        let (input, lens, ratios) = match self.objective() {
            // BERT4Rec appends the mask token (its ratio unknown) and reads its output.
            Objective::Cloze { mask } => {
                let mut ratios = Vec::with_capacity(histories.len());
                let seqs: Vec<Vec<u32>> = histories
                    .iter()
                    .enumerate()
                    .map(|(i, h)| {
                        let keep = h.len().min(max_len - 1);
                        let mut s = h[h.len() - keep..].to_vec();
                        s.push(mask);
                        let mut r = kept_ratios(i, keep);
                        r.push(None);
                        ratios.push(r);
                        s
                    })
                    .collect();
                let (t, lens) = pad_batch(&seqs.iter().map(|s| s.as_slice()).collect::<Vec<_>>(), max_len, self.pad(), device)?;
                (t, lens, ratios)
            }
            Objective::NextItem => {
                let ratios = histories.iter().enumerate().map(|(i, h)| kept_ratios(i, h.len().min(max_len))).collect();
                let (t, lens) = pad_batch(histories, max_len, self.pad(), device)?;
                (t, lens, ratios)
            }
        };
        let completion = match self.reads_completion() {
            true => Some(Completion::from_rows(&ratios.iter().map(Vec::as_slice).collect::<Vec<_>>(), input.dim(1)?, device)?),
            false => None,
        };
        self.forward_last(table, &input, &lens, completion.as_ref())
    }
}

/// Pads the most recent `max_len` items of each sequence at the end into a `B × L` u32 tensor,
/// `L` the longest kept length; returns it with the kept lengths. Empty sequences get one padding
/// item (their output is the model's prior).
pub fn pad_batch(seqs: &[&[u32]], max_len: usize, pad: u32, device: &Device) -> Result<(Tensor, Vec<usize>)> {
    let lens: Vec<usize> = seqs.iter().map(|s| s.len().min(max_len)).collect();
    let width = lens.iter().copied().max().unwrap_or(1).max(1);
    let mut data = Vec::with_capacity(seqs.len() * width);
    for (s, &l) in seqs.iter().zip(&lens) {
        data.extend_from_slice(&s[s.len() - l..]);
        data.extend(std::iter::repeat_n(pad, width - l));
    }
    let t = Tensor::from_vec(data, (seqs.len(), width), device)?;
    Ok((t, lens.into_iter().map(|l| l.max(1)).collect()))
}

/// The hidden state at position `len - 1` of each row of `B × L × d`.
pub fn gather_last(hidden: &Tensor, lens: &[usize]) -> Result<Tensor> {
    let (b, l, d) = hidden.dims3()?;
    Ok(hidden.reshape((b * l, d))?.index_select(&last_positions(lens, l, hidden.device())?, 0)?)
}

/// The flat row `i · l + lens[i] - 1` of each of the `lens.len()` sequences padded to `l`.
pub fn last_positions(lens: &[usize], l: usize, device: &Device) -> Result<Tensor> {
    let idx: Vec<u32> = lens.iter().enumerate().map(|(i, &n)| (i * l + n.clamp(1, l) - 1) as u32).collect();
    Ok(Tensor::from_vec(idx, lens.len(), device)?)
}
