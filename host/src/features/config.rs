//! The `[features]` section of a run config, and plugin parameters from TOML.
//!
//! ```toml
//! [features]
//! prepared = "prepared"        # a directory from `encore data prepare` (items.parquet)
//! tracks = "synth/tracks.tsv"  # optional side-car item table: tags, lyrics, mgphot
//! audio = "synth/clips"        # optional clips: <track_id>.{wav,flac,mp3,ogg}
//! out = "prepared/features"    # default: <prepared>/features
//! max_seconds = 30.0           # optional: keep the first seconds of each clip (default 600)
//! batch = 8                    # optional: tracks per plugin call
//!
//! [[features.extractor]]
//! plugin = "audio-dsp"         # a name in the plugin search path, or a .wasm path
//! name = "audio-dsp"           # optional output name (default: the plugin's spec name)
//! params = { n_mfcc = 20 }     # passed to the plugin's `configure`
//! ```
use crate::plugins::ParamValue;
use anyhow::{bail, Context};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// `[features]`: paths are relative to the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeaturesConfig {
    /// A prepared dataset directory (its `items.parquet`).
    pub prepared: Option<PathBuf>,
    /// Side-car item table (TSV with track_id and any of duration_s, tags, lyrics, mgphot).
    pub tracks: Option<PathBuf>,
    /// Clip directory.
    pub audio: Option<PathBuf>,
    /// Output directory.
    pub out: Option<PathBuf>,
    /// Keep only the first seconds of each clip (default [`super::audio::DEFAULT_MAX_SECONDS`]).
    pub max_seconds: Option<f32>,
    /// Tracks per plugin call.
    pub batch: Option<usize>,
    /// The extractors to run, in order.
    #[serde(default)]
    pub extractor: Vec<ExtractorConfig>,
}

/// One `[[features.extractor]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractorConfig {
    /// Plugin name or `.wasm` path.
    pub plugin: String,
    /// Output name; default: the plugin's spec name.
    pub name: Option<String>,
    /// Parameters for `configure`.
    #[serde(default)]
    pub params: toml::Table,
}

impl FeaturesConfig {
    /// Reads the `[features]` section of a TOML file (other sections are left to their own
    /// readers); unknown keys in it are errors naming the file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut table: toml::Table = toml::from_str(&text).with_context(|| format!("in {}", path.display()))?;
        let Some(section) = table.remove("features") else { bail!("{} has no [features] section", path.display()) };
        let mut cfg: FeaturesConfig = section.try_into().with_context(|| format!("in [features] of {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut cfg.prepared, &mut cfg.tracks, &mut cfg.audio, &mut cfg.out].into_iter().flatten() {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        for e in &mut cfg.extractor {
            if e.plugin.ends_with(".wasm") && Path::new(&e.plugin).is_relative() {
                e.plugin = base.join(&e.plugin).display().to_string();
            }
        }
        Ok(cfg)
    }
}

/// A TOML table as plugin parameters: nested tables are flattened with dotted keys; arrays must
/// hold only numbers or only strings.
pub fn params_from_toml(t: &toml::Table) -> anyhow::Result<Vec<(String, ParamValue)>> {
    fn walk(prefix: &str, t: &toml::Table, out: &mut Vec<(String, ParamValue)>) -> anyhow::Result<()> {
        for (k, v) in t {
            let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            let p = match v {
                toml::Value::Boolean(b) => ParamValue::Boolean(*b),
                toml::Value::Integer(i) => ParamValue::Integer(*i),
                toml::Value::Float(f) => ParamValue::Float(*f),
                toml::Value::String(s) => ParamValue::Text(s.clone()),
                toml::Value::Table(t) => {
                    walk(&key, t, out)?;
                    continue;
                }
                toml::Value::Array(a) if a.iter().all(|x| x.is_str()) => ParamValue::Texts(a.iter().filter_map(|x| x.as_str().map(String::from)).collect()),
                toml::Value::Array(a) if a.iter().all(|x| x.is_integer() || x.is_float()) => {
                    ParamValue::Floats(a.iter().map(|x| x.as_float().unwrap_or_else(|| x.as_integer().unwrap_or(0) as f64)).collect())
                }
                other => bail!("parameter `{key}`: {} is not supported (booleans, numbers, strings, and lists of numbers or of strings are)", other.type_str()),
            };
            out.push((key, p));
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk("", t, &mut out)?;
    Ok(out)
}

/// A parameter back as TOML, for the manifest.
pub fn param_to_toml(v: &ParamValue) -> toml::Value {
    match v {
        ParamValue::Boolean(b) => (*b).into(),
        ParamValue::Integer(i) => (*i).into(),
        ParamValue::Float(f) => (*f).into(),
        ParamValue::Text(s) => s.clone().into(),
        ParamValue::Floats(f) => toml::Value::Array(f.iter().map(|x| (*x).into()).collect()),
        ParamValue::Texts(t) => toml::Value::Array(t.iter().map(|x| x.clone().into()).collect()),
    }
}
