//! SASRec: Self-Attentive Sequential Recommendation (Kang & McAuley, ICDM 2018).
//!
//! A causal transformer over item embeddings plus learned positions; the hidden state at each
//! position scores the next item by dot product with the item table. Architecture and
//! initialisation follow RecBole 1.2.1 (`sasrec.py`): embedding + position, LayerNorm, dropout,
//! post-norm transformer layers, weights Normal(0, 0.02), LayerNorm (1, 0), biases 0.
use super::layers::{attention_mask, embed_with_positions, Init, LayerNorm, Params, TrainCtx, TransformerEncoder, TransformerSpec};
use super::layers::{Completion, CompletionEmbed};
use super::{CompletionMode, FusionSpec, ItemTable, Objective, Result, SeqEncoder};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

/// SASRec hyperparameters; defaults are RecBole's `sasrec.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SasRecConfig {
    /// Embedding and model width.
    pub hidden_size: usize,
    /// Transformer layers.
    pub n_layers: usize,
    /// Attention heads.
    pub n_heads: usize,
    /// Feed-forward width.
    pub inner_size: usize,
    /// Dropout on hidden states.
    pub hidden_dropout: f32,
    /// Dropout on attention probabilities.
    pub attn_dropout: f32,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Std of the normal initialisation.
    pub initializer_range: f64,
    /// Longest input sequence (positions).
    pub max_len: usize,
    /// Whether each position's completion ratio enters the input.
    pub completion: CompletionMode,
}

impl Default for SasRecConfig {
    fn default() -> Self {
        SasRecConfig {
            hidden_size: 64,
            n_layers: 2,
            n_heads: 2,
            inner_size: 256,
            hidden_dropout: 0.5,
            attn_dropout: 0.5,
            layer_norm_eps: 1e-12,
            initializer_range: 0.02,
            max_len: 50,
            completion: CompletionMode::None,
        }
    }
}

/// The SASRec encoder.
pub struct SasRec {
    items: ItemTable,
    pos: Tensor,
    norm: LayerNorm,
    encoder: TransformerEncoder,
    completion: Option<CompletionEmbed>,
    cfg: SasRecConfig,
    n_items: usize,
}

impl SasRec {
    /// Fresh weights; the item table has `n_items + 1` rows, the last one padding (zero). With
    /// `fusion`, the catalog rows are the fusion plan's output.
    pub fn new(cfg: SasRecConfig, n_items: usize, p: &mut Params, fusion: Option<&FusionSpec>) -> Result<Self> {
        let std = cfg.initializer_range;
        let items = p.var("item_embedding.weight", &[n_items + 1, cfg.hidden_size], Init::Normal(std))?;
        p.zero_row("item_embedding.weight", n_items)?;
        let pos = p.var("position_embedding.weight", &[cfg.max_len, cfg.hidden_size], Init::Normal(std))?;
        let norm = LayerNorm::new(p, "LayerNorm", cfg.hidden_size, cfg.layer_norm_eps)?;
        let spec = TransformerSpec {
            n_layers: cfg.n_layers,
            n_heads: cfg.n_heads,
            hidden: cfg.hidden_size,
            inner: cfg.inner_size,
            hidden_dropout: cfg.hidden_dropout,
            attn_dropout: cfg.attn_dropout,
            eps: cfg.layer_norm_eps,
            init_std: std,
        };
        let encoder = TransformerEncoder::new(p, "trm_encoder", &spec)?;
        let items = ItemTable::new(items, n_items, fusion, p)?;
        let completion = (cfg.completion == CompletionMode::Embed).then(|| CompletionEmbed::new(p, "completion", cfg.hidden_size, std)).transpose()?;
        Ok(SasRec { items, pos, norm, encoder, completion, cfg, n_items })
    }

    /// The encoder's input (item + position embeddings, normalised) and its causal mask.
    fn input(&self, table: &Tensor, ids: &Tensor, lens: &[usize], completion: Option<&Completion>, ctx: Option<&TrainCtx>) -> Result<(Tensor, Tensor)> {
        let extra = CompletionEmbed::input(self.completion.as_ref(), completion)?;
        let x = embed_with_positions(table, &self.pos, &self.norm, self.cfg.hidden_dropout, ids, extra.as_ref(), ctx)?;
        Ok((x, attention_mask(lens, ids.dim(1)?, true, ids.device())?))
    }
}

impl SeqEncoder for SasRec {
    fn n_items(&self) -> usize {
        self.n_items
    }
    fn pad(&self) -> u32 {
        self.n_items as u32
    }
    fn objective(&self) -> Objective {
        Objective::NextItem
    }
    fn max_len(&self) -> usize {
        self.cfg.max_len
    }
    fn embedding_table(&self, ctx: Option<&TrainCtx>) -> Result<Tensor> {
        self.items.rows(ctx)
    }
    fn forward(&self, table: &Tensor, ids: &Tensor, lens: &[usize], completion: Option<&Completion>, ctx: Option<&TrainCtx>) -> Result<Tensor> {
        let (x, mask) = self.input(table, ids, lens, completion, ctx)?;
        self.encoder.forward(&x, &mask, ctx)
    }
    fn reads_completion(&self) -> bool {
        self.completion.is_some()
    }
    fn forward_last(&self, table: &Tensor, ids: &Tensor, lens: &[usize], completion: Option<&Completion>) -> Result<Tensor> {
        let (x, mask) = self.input(table, ids, lens, completion, None)?;
        self.encoder.forward_last(&x, &mask, lens)
    }
}
