//! Export of a trained encoder's item embedding table, the input of the E4SRec issue: a
//! safetensors file (`item_embeddings`, `n_items × d`, f32) and a Parquet file (`item`: u32,
//! `embedding`: fixed-size list of f32).
use super::TrainError;
use crate::models::SeqEncoder;
use arrow_array::{builder::FixedSizeListBuilder, builder::Float32Builder, Array, RecordBatch, UInt32Array};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use std::path::Path;
use std::sync::Arc;

/// The tensor name in the safetensors export.
pub const TENSOR_NAME: &str = "item_embeddings";

/// Writes `model`'s item table to `path.safetensors` and `path.parquet` (atomically each).
pub fn item_embeddings(model: &dyn SeqEncoder, stem: &Path) -> Result<(), TrainError> {
    let table = model.item_table()?.to_device(&candle_core::Device::Cpu)?.contiguous()?;
    let (n, d) = table.dims2()?;
    super::checkpoint::save_tensors(&stem.with_extension("safetensors"), &[(TENSOR_NAME.to_string(), table.clone())])?;
    let values = table.flatten_all()?.to_vec1::<f32>()?;
    let mut list = FixedSizeListBuilder::new(Float32Builder::with_capacity(n * d), d as i32);
    for row in values.chunks(d) {
        list.values().append_slice(row);
        list.append(true);
    }
    let list = list.finish();
    let schema = Arc::new(Schema::new(vec![Field::new("item", DataType::UInt32, false), Field::new("embedding", list.data_type().clone(), false)]));
    let batch = RecordBatch::try_new(schema, vec![Arc::new(UInt32Array::from_iter_values(0..n as u32)), Arc::new(list)])
        .map_err(|e| TrainError::Data(format!("building the embedding table: {e}")))?;
    let path = stem.with_extension("parquet");
    crate::io::write_atomic_file(&path, |file| {
        let mut w = ArrowWriter::try_new(file, batch.schema(), None)?;
        w.write(&batch)?;
        w.close()?;
        Ok(())
    })
    .map_err(|e| TrainError::Io { context: format!("writing {}", path.display()), cause: std::io::Error::other(format!("{e:#}")) })
}
