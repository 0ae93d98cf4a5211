//! encore: multimodal, LLM-based session recommendation of music.
//!
//! The pipeline, in module order: `data` (ingest, sessions, splits) → `features` (extractor
//! plugins) → `models` / `train` (ID encoders, E4SRec) → `eval` (full ranking, metric plugins,
//! bootstrap) → `report`. `plugins` is the wasmtime sandbox the extractor, fusion and metric
//! plugins run in.
pub mod annotate;
pub mod cli;
pub mod data;
pub mod eval;
pub mod features;
pub mod hostmodels;
pub mod io;
pub mod math;
pub mod models;
pub mod plugins;
pub mod run;
pub mod train;
