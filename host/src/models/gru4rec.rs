//! GRU4Rec: Session-based Recommendations with Recurrent Neural Networks (Hidasi et al., ICLR
//! 2016).
//!
//! A GRU over the session's item embeddings, projected back to the embedding width; the output at
//! each position scores the next item by dot product with the item table. Architecture and
//! initialisation follow RecBole 1.2.1 (`gru4rec.py`): embedding (Xavier normal), embedding
//! dropout, a bias-free GRU (Xavier uniform at layer 0, PyTorch's default above, as RecBole only
//! re-initialises `_l0`), and a dense layer (PyTorch's default init).
use super::layers::{dropout, embed, Gru, Init, Linear, Params, TrainCtx};
use super::layers::{Completion, CompletionEmbed};
use super::{CompletionMode, FusionSpec, ItemTable, Objective, Result, SeqEncoder};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

/// GRU4Rec hyperparameters; defaults are RecBole's `gru4rec.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Gru4RecConfig {
    /// Item embedding width.
    pub embedding_size: usize,
    /// GRU state width.
    pub hidden_size: usize,
    /// Stacked GRU layers.
    pub num_layers: usize,
    /// Dropout on the item embeddings.
    pub dropout_prob: f32,
    /// Longest input sequence.
    pub max_len: usize,
    /// Whether each position's completion ratio enters the input.
    pub completion: CompletionMode,
}

impl Default for Gru4RecConfig {
    fn default() -> Self {
        Gru4RecConfig { embedding_size: 64, hidden_size: 128, num_layers: 1, dropout_prob: 0.3, max_len: 50, completion: CompletionMode::None }
    }
}

/// The GRU4Rec encoder.
pub struct Gru4Rec {
    items: ItemTable,
    grus: Vec<Gru>,
    dense: Linear,
    completion: Option<CompletionEmbed>,
    cfg: Gru4RecConfig,
    n_items: usize,
}

impl Gru4Rec {
    /// Fresh weights; the item table has `n_items + 1` rows, the last one padding (zero). With
    /// `fusion`, the catalog rows are the fusion plan's output.
    pub fn new(cfg: Gru4RecConfig, n_items: usize, p: &mut Params, fusion: Option<&FusionSpec>) -> Result<Self> {
        if cfg.num_layers == 0 {
            return Err(super::ModelError::Config("GRU4Rec needs num_layers ≥ 1".into()));
        }
        let items = p.var("item_embedding.weight", &[n_items + 1, cfg.embedding_size], Init::XavierNormal)?;
        p.zero_row("item_embedding.weight", n_items)?;
        let grus = (0..cfg.num_layers)
            .map(|i| Gru::new(p, "gru_layers", if i == 0 { cfg.embedding_size } else { cfg.hidden_size }, cfg.hidden_size, i))
            .collect::<Result<Vec<_>>>()?;
        let dense = Linear::torch_default(p, "dense", cfg.hidden_size, cfg.embedding_size)?;
        let items = ItemTable::new(items, n_items, fusion, p)?;
        let completion = (cfg.completion == CompletionMode::Embed).then(|| CompletionEmbed::new(p, "completion", cfg.embedding_size, 0.02)).transpose()?;
        Ok(Gru4Rec { items, grus, dense, completion, cfg, n_items })
    }
}

impl Gru4Rec {
    /// Item embeddings of `ids`, plus the completion input when the encoder reads it.
    fn input(&self, table: &Tensor, ids: &Tensor, completion: Option<&Completion>) -> Result<Tensor> {
        let x = embed(table, ids)?;
        Ok(match CompletionEmbed::input(self.completion.as_ref(), completion)? {
            Some(e) => (x + e)?,
            None => x,
        })
    }
}

impl SeqEncoder for Gru4Rec {
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
    fn forward(&self, table: &Tensor, ids: &Tensor, _lens: &[usize], completion: Option<&Completion>, ctx: Option<&TrainCtx>) -> Result<Tensor> {
        // Padding sits after each sequence's end, so a real position's state never depends on it.
        let mut h = dropout(&self.input(table, ids, completion)?, self.cfg.dropout_prob, ctx)?;
        for gru in &self.grus {
            h = gru.forward(&h)?;
        }
        self.dense.forward(&h)
    }
    fn reads_completion(&self) -> bool {
        self.completion.is_some()
    }
    fn forward_last(&self, table: &Tensor, ids: &Tensor, lens: &[usize], completion: Option<&Completion>) -> Result<Tensor> {
        let (last, rest) = self.grus.split_last().ok_or_else(|| super::ModelError::Config("GRU4Rec needs num_layers ≥ 1".into()))?;
        let mut h = self.input(table, ids, completion)?;
        for gru in rest {
            h = gru.forward(&h)?;
        }
        self.dense.forward(&last.last_state(&h, lens)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn only_the_first_gru_layer_is_xavier_initialised_as_in_recbole() {
        let mut p = Params::new(1, &Device::Cpu);
        let cfg = Gru4RecConfig { num_layers: 2, ..Default::default() };
        Gru4Rec::new(cfg.clone(), 100, &mut p, None).unwrap();
        let max_abs = |name: &str| {
            let (_, v) = p.named_vars().into_iter().find(|(n, _)| n == name).unwrap();
            v.as_tensor().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap() as f64
        };
        let (e, h) = (cfg.embedding_size as f64, cfg.hidden_size as f64);
        let torch = 1.0 / h.sqrt();
        // Xavier uniform's bound is √(6 / (fan_in + fan_out)) over the whole (3H × in) matrix.
        let ih0 = (6.0 / (e + 3.0 * h)).sqrt();
        assert!(max_abs("gru_layers.weight_ih_l0") > torch && max_abs("gru_layers.weight_ih_l0") <= ih0);
        for w in ["gru_layers.weight_ih_l1", "gru_layers.weight_hh_l1"] {
            let m = max_abs(w);
            assert!(m <= torch && m > 0.95 * torch, "{w}: {m} against PyTorch's bound {torch}");
        }
    }
}
