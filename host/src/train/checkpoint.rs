//! Checkpoints: a safetensors file of weights (and optimizer moments) plus a TOML file that
//! holds the run's config, the item count, the training state and the weights' SHA-256.
//!
//! The weights are written first (to a temporary file, synced, renamed), then the TOML. A
//! checkpoint is complete exactly when its TOML exists, so a run killed mid-write leaves the
//! previous checkpoint as the last complete one. Loading re-hashes the weights, so a truncated or
//! altered file is named in the error instead of being loaded.
//!
//! The TOML is sealed: its `seal` is the SHA-256 of its own text with an empty seal, so an edited
//! `epoch`, `best` or `steps` is refused rather than believed. It also records the digest of the
//! data it was trained on ([`crate::train::SequenceData::digest`]), and `--resume` refuses other
//! data.
use super::{TrainConfig, TrainError};
use crate::models::Params;
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The checkpoint format this build writes and reads. 3: `train.batch_size` counts targets unless
/// `batch_unit = "windows"`; a format-2 config's `batch_size` counted windows, so resuming one
/// would silently change its steps.
pub const FORMAT: u32 = 3;

/// The TOML half of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    /// [`FORMAT`].
    pub format: u32,
    /// The encoder's name.
    pub encoder: String,
    /// Catalog size the weights were trained for.
    pub n_items: usize,
    /// Epochs completed.
    pub epoch: usize,
    /// Optimizer steps taken.
    pub steps: usize,
    /// Best validation value so far, and the epoch it came from.
    pub best: Option<(f64, usize)>,
    /// Validations since the best one.
    pub bad_evals: usize,
    /// Validation values, one per validation.
    pub valid_history: Vec<f64>,
    /// The weights file, next to this one.
    pub weights: String,
    /// SHA-256 of the weights file, hex.
    pub sha256: String,
    /// The data it was trained on ([`crate::train::SequenceData::digest`]).
    pub data: String,
    /// SHA-256 of this TOML's text with `seal = ""`.
    pub seal: String,
    /// The config that trained it.
    pub config: TrainConfig,
}

/// `m` as TOML text with its seal (reached by `seal`) set to the SHA-256 of the text with an
/// empty seal.
pub fn sealed_text<T: Serialize>(m: &mut T, seal: impl Fn(&mut T) -> &mut String) -> Result<String, TrainError> {
    let ser = |m: &T| toml::to_string(m).map_err(|e| TrainError::Config(format!("serialising checkpoint metadata: {e}")));
    seal(m).clear();
    let body = ser(m)?;
    *seal(m) = crate::artifact::sha256_hex(body.as_bytes());
    ser(m)
}

/// Parses and checks a TOML text written by [`sealed_text`]; `path` names it in errors.
pub fn parse_sealed<T: Serialize + serde::de::DeserializeOwned>(text: &str, path: &Path, seal: impl Fn(&mut T) -> &mut String) -> Result<T, TrainError> {
    let corrupt = |reason: String| TrainError::Corrupt { path: path.to_path_buf(), reason };
    let mut m: T = toml::from_str(text).map_err(|e| corrupt(e.to_string()))?;
    let recorded = std::mem::take(seal(&mut m));
    let body = toml::to_string(&m).map_err(|e| corrupt(e.to_string()))?;
    if recorded.is_empty() || crate::artifact::sha256_hex(body.as_bytes()) != recorded {
        return Err(corrupt(
            "its seal does not match its content: it was edited or damaged after training wrote it; use an unedited checkpoint, or train anew".into(),
        ));
    }
    *seal(&mut m) = recorded;
    Ok(m)
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> TrainError {
    move |cause| TrainError::Io { context, cause }
}

fn sha256_file(path: &Path) -> Result<String, TrainError> {
    let bytes = std::fs::read(path).map_err(|e| TrainError::Corrupt { path: path.to_path_buf(), reason: format!("cannot read it: {e}") })?;
    Ok(Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes `tensors` to `path` atomically; returns the file's SHA-256.
pub fn save_tensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<String, TrainError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    }
    let tmp = crate::io::temp_path(path);
    let map: HashMap<String, Tensor> = tensors.iter().cloned().collect();
    let written = candle_core::safetensors::save(&map, &tmp)
        .map_err(|e| TrainError::Io { context: format!("writing {}", tmp.display()), cause: std::io::Error::other(e.to_string()) })
        .and_then(|()| std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io(format!("syncing {}", tmp.display()))))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(io(format!("renaming {} to {}", tmp.display(), path.display()))));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    sha256_file(path)
}

/// Writes `tensors` as the weights of checkpoint `stem` in `dir`, under a name of their own
/// content (`stem.<sha>.safetensors`); returns the name and the SHA-256. The TOML that names them
/// is then the one switch between two checkpoints: a run killed before it is rewritten leaves the
/// old TOML naming the old weights, which [`finish_weights`] removes only afterwards.
pub fn write_weights(dir: &Path, stem: &str, tensors: &[(String, Tensor)]) -> Result<(String, String), TrainError> {
    let staging = dir.join(format!("{stem}.next.safetensors"));
    let sha = save_tensors(&staging, tensors)?;
    let name = format!("{stem}.{}.safetensors", &sha[..16]);
    std::fs::rename(&staging, dir.join(&name)).map_err(io(format!("renaming {} to {name}", staging.display())))?;
    Ok((name, sha))
}

/// After the TOML naming `current` is written: removes the other weights of `stem`, and points
/// `stem.safetensors` (what tools open) at `current`.
pub fn finish_weights(dir: &Path, stem: &str, current: &str) {
    let stable = format!("{stem}.safetensors");
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let versioned = name
                .strip_prefix(&format!("{stem}."))
                .and_then(|r| r.strip_suffix(".safetensors"))
                .is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()));
            if versioned && name != current {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let tmp = crate::io::temp_path(&dir.join(&stable));
    let _ = std::fs::remove_file(&tmp);
    if std::fs::hard_link(dir.join(current), &tmp).or_else(|_| std::fs::copy(dir.join(current), &tmp).map(drop)).is_ok() {
        let _ = std::fs::rename(&tmp, dir.join(&stable));
    }
}

/// Writes a checkpoint named `stem` (`stem.toml`, its weights `stem.<sha>.safetensors`, and
/// `stem.safetensors` linked to them) in `dir`.
pub fn write(dir: &Path, stem: &str, tensors: &[(String, Tensor)], mut meta: Meta) -> Result<PathBuf, TrainError> {
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    let (name, sha) = write_weights(dir, stem, tensors)?;
    meta.sha256 = sha;
    meta.weights = name.clone();
    let text = sealed_text(&mut meta, |m: &mut Meta| &mut m.seal)?;
    let meta_path = dir.join(format!("{stem}.toml"));
    crate::io::write_atomic(&meta_path, |w| std::io::Write::write_all(w, text.as_bytes()))
        .map_err(|e| TrainError::Io { context: format!("writing {}", meta_path.display()), cause: std::io::Error::other(format!("{e:#}")) })?;
    finish_weights(dir, stem, &name);
    Ok(meta_path)
}

/// The most recent complete `epoch-NNNN` checkpoint in `dir` (its TOML path).
pub fn latest(dir: &Path) -> Result<Option<PathBuf>, TrainError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(TrainError::Io { context: format!("listing {}", dir.display()), cause: e }),
    };
    let mut best: Option<(usize, PathBuf)> = None;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(n) = name.strip_prefix("epoch-").and_then(|r| r.strip_suffix(".toml")).and_then(|n| n.parse::<usize>().ok()) {
            if best.as_ref().is_none_or(|(b, _)| n > *b) {
                best = Some((n, e.path()));
            }
        }
    }
    Ok(best.map(|(_, p)| p))
}

/// Removes `epoch-*` checkpoints in `dir` older than `keep`.
pub fn prune(dir: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let epoch = name.strip_prefix("epoch-").and_then(|r| r.split('.').next()).and_then(|n| n.parse::<usize>().ok());
        if epoch.is_some_and(|n| n < keep) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Reads a checkpoint from its TOML path: the metadata and the verified tensors.
pub fn read(meta_path: &Path, device: &Device) -> Result<(Meta, HashMap<String, Tensor>), TrainError> {
    let corrupt = |path: &Path, reason: String| TrainError::Corrupt { path: path.to_path_buf(), reason };
    let text = std::fs::read_to_string(meta_path).map_err(|e| corrupt(meta_path, format!("cannot read it: {e}")))?;
    // The format first, so an old checkpoint gets that reason rather than a parse error.
    let format = toml::from_str::<toml::Table>(&text).ok().and_then(|t| t.get("format").and_then(toml::Value::as_integer));
    if format != Some(i64::from(FORMAT)) {
        return Err(corrupt(meta_path, format!("format {} is not the format {FORMAT} this build reads", format.map_or("unknown".into(), |f| f.to_string()))));
    }
    let meta: Meta = parse_sealed(&text, meta_path, |m: &mut Meta| &mut m.seal)?;
    // Only a file next to the TOML: a path elsewhere (`/dev/zero`, `../..`) is never opened.
    let bare = Path::new(&meta.weights).file_name().is_some_and(|n| n == meta.weights.as_str()) && meta.weights != "..";
    if !bare {
        return Err(corrupt(meta_path, format!("`weights = {:?}` must name a file next to it", meta.weights)));
    }
    let weights = meta_path.with_file_name(&meta.weights);
    let sha = sha256_file(&weights)?;
    if sha != meta.sha256 {
        return Err(corrupt(&weights, format!("its SHA-256 is {sha}, but {} records {}", meta_path.display(), meta.sha256)));
    }
    let tensors = candle_core::safetensors::load(&weights, device).map_err(|e| corrupt(&weights, e.to_string()))?;
    Ok((meta, tensors))
}

/// Refuses a checkpoint trained with another config (other than `epochs`), item count or data.
pub fn check_matches(meta: &Meta, path: &Path, cfg: &TrainConfig, n_items: usize, data: &str) -> Result<(), TrainError> {
    let mismatch = |reason: String| TrainError::Mismatch { path: path.to_path_buf(), reason };
    if meta.n_items != n_items {
        return Err(mismatch(format!("it was trained on {} items, the data has {n_items}", meta.n_items)));
    }
    if meta.data != data {
        return Err(mismatch(format!(
            "it was trained on other data (digest {}), not this data (digest {}); resume only on the data it started with, or train anew",
            if meta.data.is_empty() { "none" } else { &meta.data },
            if data.is_empty() { "none" } else { data }
        )));
    }
    let strip = |c: &TrainConfig| {
        let mut c = c.clone();
        c.train.epochs = 0;
        c.data = None;
        c.eval = Default::default();
        toml::Value::try_from(c).map_err(|e| TrainError::Config(e.to_string()))
    };
    let (a, b) = (strip(&meta.config)?, strip(cfg)?);
    let mut diffs = Vec::new();
    diff("", &a, &b, &mut diffs);
    if !diffs.is_empty() {
        return Err(mismatch(format!("its config differs at {}", diffs.join(", "))));
    }
    Ok(())
}

fn diff(prefix: &str, a: &toml::Value, b: &toml::Value, out: &mut Vec<String>) {
    match (a, b) {
        (toml::Value::Table(x), toml::Value::Table(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => diff(&p, u, v, out),
                    (u, v) => out.push(format!("{p} (checkpoint {}, config {})", show(u), show(v))),
                }
            }
        }
        _ if a != b => out.push(format!("{prefix} (checkpoint {a}, config {b})")),
        _ => {}
    }
}

fn show(v: Option<&toml::Value>) -> String {
    v.map_or("unset".into(), |v| v.to_string())
}

/// Sets every model variable from `tensors`; a missing, extra or mis-shaped tensor is a mismatch.
pub fn load_params(params: &Params, tensors: &HashMap<String, Tensor>, path: &Path) -> Result<(), TrainError> {
    let mismatch = |reason: String| TrainError::Mismatch { path: path.to_path_buf(), reason };
    let vars = params.named_vars();
    for (name, var) in &vars {
        let t = tensors.get(name).ok_or_else(|| mismatch(format!("it has no tensor {name}")))?;
        if t.shape() != var.shape() {
            return Err(mismatch(format!("{name} has shape {:?}, the model expects {:?}", t.dims(), var.dims())));
        }
        var.set(&t.to_device(params.device())?)?;
    }
    if let Some(extra) = tensors.keys().filter(|k| !k.starts_with("adamw.")).find(|k| !vars.iter().any(|(n, _)| n == *k)) {
        return Err(mismatch(format!("it has a tensor {extra} the model lacks")));
    }
    Ok(())
}
