//! The item table an encoder reads at its input and scores against: its own trainable ID rows,
//! or a fusion plan's output over those rows and frozen modality vectors. One table serves both
//! ends, so training, full-ranking evaluation and embedding export do not care whether items
//! were fused.
use super::fusion_plan::{FusionModule, ModalityInput};
use super::layers::{Params, TrainCtx};
use super::Result;
use crate::plugins::fusion::Plan;
use candle_core::Tensor;

/// What a content-aware encoder fuses: a validated plan and its frozen inputs.
#[derive(Debug, Clone)]
pub struct FusionSpec {
    /// The plan, validated for this encoder's width.
    pub plan: Plan,
    /// The modality vectors the plan reads (not `id`, which is the encoder's own table).
    pub inputs: Vec<ModalityInput>,
    /// Where the `id` input counts as present (`items × 1`): with `missing = "mask"`, items
    /// never played in training have no learned ID embedding, only one pushed down as a negative,
    /// so their fusion reads content alone. `None`: every item's ID row is used.
    pub id_present: Option<Tensor>,
    /// What the plan and its inputs are (the plan, and each features file's SHA-256), folded into
    /// the data digest checkpoints record: re-extracted features or another plugin build make a
    /// checkpoint another run's. Empty for a spec made in code.
    pub digest: String,
}

/// An encoder's item embeddings: `n_items` catalog rows, then its special rows (padding, mask).
pub struct ItemTable {
    id: Tensor,
    n_items: usize,
    fusion: Option<FusionModule>,
}

impl ItemTable {
    /// Wraps the trainable table `id` (`n_items + specials` rows); with `fusion`, the catalog
    /// rows become the plan's output, its weights created in `p`.
    pub fn new(id: Tensor, n_items: usize, fusion: Option<&FusionSpec>, p: &mut Params) -> Result<Self> {
        let fusion = fusion.map(|f| FusionModule::new(&f.plan, f.inputs.clone(), p).map(|m| m.with_id_presence(f.id_present.clone()))).transpose()?;
        Ok(ItemTable { id, n_items, fusion })
    }

    /// This step's table, every row; the fusion plan runs once over the catalog, with dropout
    /// only when training. Without fusion it is the ID table itself.
    pub fn rows(&self, ctx: Option<&TrainCtx>) -> Result<Tensor> {
        let Some(f) = &self.fusion else { return Ok(self.id.clone()) };
        let n = self.n_items;
        let fused = f.forward(Some(&self.id.narrow(0, 0, n)?), ctx)?;
        let specials = self.id.narrow(0, n, self.id.dim(0)? - n)?;
        Ok(Tensor::cat(&[&fused, &specials], 0)?)
    }
}
