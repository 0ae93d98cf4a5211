//! Pretrained models the host runs for extractor plugins (WIT `host-models`): sentence encoders for
//! text, audio encoders for PCM. A model is named (e.g. `all-minilm-l6-v2`); the host's config maps
//! the name to a model folder, so the plugin never reads a file.
//!
//! ```ignore
//! let info = encore_sdk::models::describe("all-minilm-l6-v2")?;   // in `configure`: dim, sample rate
//! let vecs = encore_sdk::models::embed_text("all-minilm-l6-v2", &["a ballad".to_string()])?;
//! ```
//! Only extractor plugins can call these; elsewhere (other kinds, native unit tests) they return
//! [`Error::Unsupported`].
use crate::Error;
use std::sync::OnceLock;

/// What a model takes and returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// Length of every vector it returns.
    pub dim: u32,
    /// For an audio model, the sample rate its PCM must have (ask for it in `Spec::wants_audio`);
    /// `None` for a text model.
    pub sample_rate: Option<u32>,
    /// The architecture, e.g. `bert` or `encodec`.
    pub architecture: String,
}

/// The host imports, registered by [`export_extractor!`](crate::export_extractor). Not part of the API.
#[doc(hidden)]
pub struct Imports {
    /// `host-models.describe`.
    pub describe: fn(&str) -> Result<ModelInfo, Error>,
    /// `host-models.embed-text`.
    pub embed_text: fn(&str, &[String]) -> Result<Vec<Vec<f32>>, Error>,
    /// `host-models.embed-audio`.
    pub embed_audio: fn(&str, &[Vec<f32>], u32) -> Result<Vec<Vec<f32>>, Error>,
}

static IMPORTS: OnceLock<Imports> = OnceLock::new();

/// Registers the host imports. Not part of the API.
#[doc(hidden)]
pub fn __set_imports(imports: Imports) {
    let _ = IMPORTS.set(imports);
}

fn imports() -> Result<&'static Imports, Error> {
    IMPORTS.get().ok_or_else(|| Error::unsupported("host models are only available to extractor plugins running in the encore host"))
}

/// Describes model `model` (the host loads it on first use). Call it in `configure`.
pub fn describe(model: &str) -> Result<ModelInfo, Error> {
    (imports()?.describe)(model)
}

/// One sentence embedding per text, in order (L2-normalised; long texts are truncated).
pub fn embed_text(model: &str, texts: &[String]) -> Result<Vec<Vec<f32>>, Error> {
    (imports()?.embed_text)(model, texts)
}

/// One embedding per clip of mono PCM at `sample_rate` (the model's rate), in order.
pub fn embed_audio(model: &str, clips: &[Vec<f32>], sample_rate: u32) -> Result<Vec<Vec<f32>>, Error> {
    (imports()?.embed_audio)(model, clips, sample_rate)
}

/// Embeds the texts that are present in one call and keeps `None` where a text is missing, so a
/// track without input stays missing instead of becoming a vector.
pub fn embed_text_each(model: &str, texts: Vec<Option<String>>) -> Result<Vec<Option<Vec<f32>>>, Error> {
    let present: Vec<String> = texts.iter().flatten().cloned().collect();
    let mut vecs = if present.is_empty() { Vec::new() } else { embed_text(model, &present)? }.into_iter();
    Ok(texts.iter().map(|t| t.as_ref().and_then(|_| vecs.next())).collect())
}

/// Embeds the clips that are present in one call and keeps `None` where a clip is missing.
pub fn embed_audio_each(model: &str, clips: Vec<Option<Vec<f32>>>, sample_rate: u32) -> Result<Vec<Option<Vec<f32>>>, Error> {
    let present: Vec<bool> = clips.iter().map(Option::is_some).collect();
    let clips: Vec<Vec<f32>> = clips.into_iter().flatten().collect();
    let mut vecs = if clips.is_empty() { Vec::new() } else { embed_audio(model, &clips, sample_rate)? }.into_iter();
    Ok(present.into_iter().map(|p| if p { vecs.next() } else { None }).collect())
}
