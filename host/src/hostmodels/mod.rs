//! Pretrained models the host runs natively for extractor plugins (WIT interface `host-models`).
//!
//! A plugin names a model; the [`ModelRegistry`] resolves the name to an HF folder, loads the model
//! once (the first time any plugin asks) and runs it on the host's device. The sandbox stays
//! closed: plugins never see a path. A name resolves, in order, from
//! - entries added by the host: a config's `[models.NAME] path = "..."` table
//!   ([`ModelRegistry::from_config`]) or a `--model-dir NAME=PATH` flag ([`parse_model_flag`]);
//! - the environment variable `ENCORE_MODEL_<NAME>` (upper case, `-` and `.` as `_`), e.g.
//!   `ENCORE_MODEL_ALL_MINILM_L6_V2=/path/to/all-MiniLM-L6-v2`.
//!
//! The architecture comes from the folder's `config.json` (`model_type`): `bert` is a text model
//! ([`bert::SentenceEncoder`]), `encodec` an audio model ([`encodec::AudioEncoder`]).
pub mod bert;
pub mod encodec;

use candle_core::Device;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Most texts one `embed-text` call may carry.
pub const MAX_TEXTS: usize = 4096;
/// Longest clip `embed-audio` accepts, in seconds.
pub const MAX_AUDIO_S: usize = 900;

/// One `[models.NAME]` table of a config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// The HF folder (config.json, model.safetensors, and tokenizer.json for text models). A
    /// relative path is relative to the config file's folder.
    pub path: PathBuf,
}

/// The `[models]` table of a config: name → entry.
pub type ModelsConfig = BTreeMap<String, ModelEntry>;

/// What a model takes and returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// Length of every vector.
    pub dim: usize,
    /// For an audio model, the sample rate it needs; `None` for a text model.
    pub sample_rate: Option<u32>,
    /// `bert` or `encodec`.
    pub architecture: String,
}

/// Why a model call failed. Every message names the model and says what to do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ModelError {
    /// The name is neither registered nor in the environment.
    #[error(
        "model `{name}` is not registered: add `[models.{name}] path = \"/path/to/hf-folder\"` to the config, pass `--model-dir {name}=PATH`, or set {env}"
    )]
    Unknown {
        /// The model's name.
        name: String,
        /// The environment variable that would name its folder.
        env: String,
    },
    /// The folder could not be loaded.
    #[error("model `{name}` ({}): {message}", path.display())]
    Load {
        /// The model's name.
        name: String,
        /// Its folder.
        path: PathBuf,
        /// What is wrong, naming the file.
        message: String,
    },
    /// A text model was asked for audio, or the other way round.
    #[error("model `{name}` is a {found} model ({architecture}); call {instead} instead")]
    WrongKind {
        /// The model's name.
        name: String,
        /// `text` or `audio`.
        found: &'static str,
        /// Its architecture.
        architecture: String,
        /// The function that fits it.
        instead: &'static str,
    },
    /// The input is not what the model accepts (sample rate, size, an empty clip).
    #[error("model `{name}`: {message}")]
    Input {
        /// The model's name.
        name: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// The model failed while running.
    #[error("model `{name}` failed: {message}")]
    Run {
        /// The model's name.
        name: String,
        /// candle's or the tokenizer's message.
        message: String,
    },
}

enum Loaded {
    Text(bert::SentenceEncoder),
    Audio(encodec::AudioEncoder),
}

impl Loaded {
    fn info(&self) -> ModelInfo {
        match self {
            Loaded::Text(m) => ModelInfo { dim: m.dim(), sample_rate: None, architecture: "bert".into() },
            Loaded::Audio(m) => ModelInfo { dim: m.dim(), sample_rate: Some(m.sample_rate()), architecture: "encodec".into() },
        }
    }
}

/// Named models, loaded lazily and shared by every plugin instance of a run. Cheap to clone.
#[derive(Clone)]
pub struct ModelRegistry {
    entries: Arc<BTreeMap<String, PathBuf>>,
    env_fallback: bool,
    device: Device,
    loaded: Arc<Mutex<HashMap<String, Arc<Loaded>>>>,
}

impl Default for ModelRegistry {
    fn default() -> Self {
        ModelRegistry::new()
    }
}

impl std::fmt::Debug for ModelRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelRegistry").field("entries", &self.entries).field("env_fallback", &self.env_fallback).finish()
    }
}

/// The environment variable that names the folder of model `name`.
pub fn env_var(name: &str) -> String {
    let up: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    format!("ENCORE_MODEL_{up}")
}

/// Parses a `NAME=PATH` command-line value.
pub fn parse_model_flag(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((name, path)) if valid_name(name) && !path.is_empty() => Ok((name.to_string(), PathBuf::from(path))),
        _ => Err(format!("expected NAME=PATH (NAME of ASCII letters, digits, `-`, `_`, `.`), got {s:?}")),
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl ModelRegistry {
    /// No registered models; names resolve from `ENCORE_MODEL_<NAME>`. Runs on the CPU.
    pub fn new() -> Self {
        ModelRegistry { entries: Arc::default(), env_fallback: true, device: Device::Cpu, loaded: Arc::default() }
    }

    /// The `[models]` table of a config read from a file in `base_dir`.
    pub fn from_config(models: &ModelsConfig, base_dir: &Path) -> Self {
        let mut r = ModelRegistry::new();
        for (name, e) in models {
            r = r.with(name, base_dir.join(&e.path));
        }
        r
    }

    /// Adds (or replaces) the model `name` at `path`.
    pub fn with(mut self, name: &str, path: impl Into<PathBuf>) -> Self {
        Arc::make_mut(&mut self.entries).insert(name.to_string(), path.into());
        self.loaded.lock().unwrap_or_else(|e| e.into_inner()).remove(name);
        self
    }

    /// Whether names not registered are looked up in the environment (on by default).
    pub fn env_fallback(mut self, on: bool) -> Self {
        self.env_fallback = on;
        self
    }

    /// Runs the models on `device` (e.g. a CUDA device with the `cuda` feature).
    pub fn on_device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// What the feature cache keys on: each registered model and each `ENCORE_MODEL_*` folder, with
    /// the size and modification time of its files, so swapping a model's weights recomputes.
    pub fn cache_key(&self) -> Vec<String> {
        let mut folders: Vec<(String, PathBuf)> = self.entries.iter().map(|(n, p)| (n.clone(), p.clone())).collect();
        if self.env_fallback {
            folders.extend(std::env::vars_os().filter_map(|(k, v)| Some((k.to_str()?.strip_prefix("ENCORE_MODEL_")?.to_string(), PathBuf::from(v)))));
        }
        folders
            .into_iter()
            .map(|(name, dir)| {
                let mut files: Vec<String> = std::fs::read_dir(&dir)
                    .map(|rd| {
                        rd.flatten()
                            .filter_map(|e| {
                                let m = e.metadata().ok()?;
                                let t = m.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos();
                                Some(format!("{}:{}:{t}", e.file_name().to_string_lossy(), m.len()))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                files.sort();
                format!("{name}={} [{}]", dir.display(), files.join(","))
            })
            .collect()
    }

    /// The folder model `name` resolves to.
    pub fn resolve(&self, name: &str) -> Result<PathBuf, ModelError> {
        let unknown = || ModelError::Unknown { name: name.to_string(), env: env_var(name) };
        if !valid_name(name) {
            return Err(unknown());
        }
        if let Some(p) = self.entries.get(name) {
            return Ok(p.clone());
        }
        if self.env_fallback {
            if let Some(p) = std::env::var_os(env_var(name)).filter(|p| !p.is_empty()) {
                return Ok(PathBuf::from(p));
            }
        }
        Err(unknown())
    }

    fn get(&self, name: &str) -> Result<Arc<Loaded>, ModelError> {
        // One lock for the whole load: two plugins asking for the same model load it once.
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = loaded.get(name) {
            return Ok(m.clone());
        }
        let path = self.resolve(name)?;
        let load_err = |message: String| ModelError::Load { name: name.to_string(), path: path.clone(), message };
        let config = path.join("config.json");
        let text = std::fs::read_to_string(&config)
            .map_err(|e| load_err(format!("reading {}: {e} (a model is an HF folder with config.json and model.safetensors)", config.display())))?;
        #[derive(Deserialize)]
        struct Kind {
            model_type: Option<String>,
        }
        let kind: Kind = serde_json::from_str(&text).map_err(|e| load_err(format!("parsing {}: {e}", config.display())))?;
        let model = match kind.model_type.as_deref() {
            Some("bert") => Loaded::Text(bert::SentenceEncoder::load(&path, &self.device).map_err(load_err)?),
            Some("encodec") => Loaded::Audio(encodec::AudioEncoder::load(&path, &self.device).map_err(load_err)?),
            other => {
                let found = other.map_or("missing".to_string(), |t| format!("{t:?}"));
                return Err(load_err(format!("{}: model_type {found} is not supported (text: \"bert\"; audio: \"encodec\")", config.display())));
            }
        };
        tracing::info!(model = name, path = %path.display(), "loaded host model");
        let model = Arc::new(model);
        loaded.insert(name.to_string(), model.clone());
        Ok(model)
    }

    /// Loads model `name` if needed and says what it produces.
    pub fn describe(&self, name: &str) -> Result<ModelInfo, ModelError> {
        Ok(self.get(name)?.info())
    }

    /// One sentence embedding per text, in order.
    pub fn embed_text(&self, name: &str, texts: &[String]) -> Result<Vec<Vec<f32>>, ModelError> {
        let input = |message: String| ModelError::Input { name: name.to_string(), message };
        let model = self.get(name)?;
        let Loaded::Text(m) = &*model else {
            return Err(self.wrong_kind(name, &model, "embed-text"));
        };
        if texts.len() > MAX_TEXTS {
            return Err(input(format!("{} texts in one call; send at most {MAX_TEXTS} per call", texts.len())));
        }
        m.embed(texts).map_err(|message| ModelError::Run { name: name.to_string(), message })
    }

    /// One embedding per clip of mono PCM at `sample_rate`, in order.
    pub fn embed_audio(&self, name: &str, clips: &[Vec<f32>], sample_rate: u32) -> Result<Vec<Vec<f32>>, ModelError> {
        let input = |message: String| ModelError::Input { name: name.to_string(), message };
        let model = self.get(name)?;
        let Loaded::Audio(m) = &*model else {
            return Err(self.wrong_kind(name, &model, "embed-audio"));
        };
        if sample_rate != m.sample_rate() {
            return Err(input(format!(
                "PCM at {sample_rate} Hz, but the model takes {} Hz: ask for wants-audio = the sample rate `describe` returns",
                m.sample_rate()
            )));
        }
        let max = MAX_AUDIO_S * m.sample_rate() as usize;
        for (i, c) in clips.iter().enumerate() {
            if c.len() < m.min_samples() || c.len() > max {
                return Err(input(format!(
                    "clip {i} has {} samples; the model takes {}..={max} ({MAX_AUDIO_S} s); report shorter clips as missing",
                    c.len(),
                    m.min_samples()
                )));
            }
            if let Some(x) = c.iter().find(|x| !x.is_finite()) {
                return Err(input(format!("clip {i} holds a non-finite sample ({x})")));
            }
        }
        clips.iter().map(|c| m.embed(c).map_err(|message| ModelError::Run { name: name.to_string(), message })).collect()
    }

    fn wrong_kind(&self, name: &str, model: &Loaded, asked: &str) -> ModelError {
        let info = model.info();
        let (found, instead) = match model {
            Loaded::Text(_) => ("text", "embed-text"),
            Loaded::Audio(_) => ("audio", "embed-audio"),
        };
        debug_assert_ne!(asked, instead);
        ModelError::WrongKind { name: name.to_string(), found, architecture: info.architecture, instead }
    }
}
