//! `[fusion]`: content-aware encoders. A fusion plugin plans how the ID embedding and the
//! modality vectors of `features/<name>.parquet` (from `encore features extract`) combine into
//! the item table; the host checks the features against the prepared catalog, asks the plugin
//! once for its plan, bounds its size, and loads the vectors onto the training device, all
//! before any training starts.
//!
//! ```toml
//! [fusion]
//! plugin = "weighted-sum"                          # any fusion plugin on the plugin path
//! modalities = ["audio-dsp", "lyrics", "mgphot"]   # features/<name>.parquet
//! params = { }                                     # handed to the plugin
//! missing = "mask"                                 # mask (default) | zeros (the paper's behaviour)
//! standardize = true                               # z-score each feature over the items (default)
//! ```
//!
//! **Standardization** is done here, once, per feature (column) over the items that have a
//! vector, rather than as a layer norm inside the plan: a layer norm works per item across
//! features, and cannot undo scales that differ by feature (audio-dsp puts MFCC 0 near −500
//! beside spectral flatness near 0.01). Missing rows stay zero, which after standardization is
//! the mean.
use crate::features::store;
use crate::models::fusion_plan::{check_size, ModalityInput};
use crate::models::FusionSpec;
use crate::plugins::fusion::{self, Modality};
use crate::plugins::{discover, PluginKind, Runtime};
use anyhow::{bail, Context};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How a missing modality vector enters the fusion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Missing {
    /// Left out of that item's fusion: weights renormalised, attention masked, FiLM identity.
    #[default]
    Mask,
    /// A zero vector, as the paper's code does.
    Zeros,
}

/// The `[fusion]` table of a training or run config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FusionConfig {
    /// The fusion plugin: a name on the plugin path, or a `.wasm` file.
    pub plugin: String,
    /// The modalities to fuse, each read from `features/<name>.parquet`.
    #[serde(default)]
    pub modalities: Vec<String>,
    /// Parameters handed to the plugin.
    #[serde(default)]
    pub params: toml::Table,
    /// How a missing vector is treated.
    #[serde(default)]
    pub missing: Missing,
    /// Z-score each modality's features over the items that have a vector (`false`: raw values).
    #[serde(default = "yes")]
    pub standardize: bool,
    /// Offer the ID embedding to the plan as the input `id`; `false` makes a content-only model.
    #[serde(default = "yes")]
    pub id: bool,
    /// Where the features files are; default: `features/` in the prepared data directory.
    /// Relative to the config's directory.
    #[serde(default)]
    pub features: Option<PathBuf>,
}

fn yes() -> bool {
    true
}

/// One modality's vectors for the whole catalog, with their presence.
struct Loaded {
    values: Vec<f32>,
    present: Vec<bool>,
    dim: usize,
}

/// Reads `features/<name>.parquet`, verified, and checks it row by row against the catalog;
/// returns it with its SHA-256.
fn load_modality(path: &Path, name: &str, catalog: &[String]) -> anyhow::Result<(Loaded, String)> {
    if !path.is_file() {
        bail!(
            "[fusion] modality `{name}`: {} does not exist; extract it first with `encore features extract --data DIR --plugin {name}` (or set `features` to its directory)",
            path.display()
        );
    }
    let _lock = path.parent().map(crate::artifact::DirLock::shared).transpose().with_context(|| format!("[fusion] modality `{name}`"))?;
    let sha = store::verify(path).with_context(|| format!("[fusion] modality `{name}`"))?;
    let file = store::read(path).with_context(|| format!("[fusion] modality `{name}`"))?;
    if file.rows.len() != catalog.len() {
        bail!(
            "[fusion] modality `{name}`: {} has {} rows, but the prepared data has {} items; extract the features again for this data",
            path.display(),
            file.rows.len(),
            catalog.len()
        );
    }
    let dim = file.dim;
    if dim == 0 {
        bail!("[fusion] modality `{name}`: {} holds vectors of width 0", path.display());
    }
    let mut values = vec![0f32; catalog.len() * dim];
    let mut present = vec![false; catalog.len()];
    for (i, row) in file.rows.iter().enumerate() {
        if row.item as usize != i || row.track_id != catalog[i] {
            bail!(
                "[fusion] modality `{name}`: row {i} of {} is item {} `{}`, but item {i} of the prepared data is `{}`; extract the features again for this data",
                path.display(),
                row.item,
                row.track_id,
                catalog[i]
            );
        }
        if let Some(v) = &row.vector {
            if let Some(x) = v.iter().find(|x| !x.is_finite()) {
                bail!("[fusion] modality `{name}`: {} row {i} (`{}`) holds {x}", path.display(), row.track_id);
            }
            values[i * dim..(i + 1) * dim].copy_from_slice(v);
            present[i] = true;
        }
    }
    if !present.iter().any(|&p| p) {
        bail!("[fusion] modality `{name}`: every vector in {} is missing; check its `reason` column", path.display());
    }
    Ok((Loaded { values, present, dim }, sha))
}

/// Z-scores every column over the rows present (a constant column becomes 0); missing rows stay 0.
fn standardize(l: &mut Loaded) {
    let n = l.present.iter().filter(|&&p| p).count() as f64;
    for j in 0..l.dim {
        let col = || l.present.iter().enumerate().filter(|(_, &p)| p).map(|(i, _)| l.values[i * l.dim + j] as f64);
        let mean = col().sum::<f64>() / n;
        let var = col().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
        let sd = var.sqrt();
        for i in 0..l.present.len() {
            let v = &mut l.values[i * l.dim + j];
            *v = if l.present[i] && sd > 1e-12 { ((*v as f64 - mean) / sd) as f32 } else { 0.0 };
        }
    }
}

/// Everything `cfg` needs for an encoder whose item table is `out_dim` wide, over a catalog of
/// track ids (`items.parquet`'s order): the plugin's validated plan and the modality vectors on
/// `device`. Every error names the plugin, modality, file or node, before training starts.
pub fn prepare(
    cfg: &FusionConfig,
    features_dir: &Path,
    catalog: &[String],
    out_dim: usize,
    runtime: &Runtime,
    dirs: &[PathBuf],
    device: &Device,
) -> anyhow::Result<FusionSpec> {
    if cfg.modalities.is_empty() && !cfg.id {
        bail!("[fusion] has no modality and `id = false`: there is nothing to fuse");
    }
    for (i, m) in cfg.modalities.iter().enumerate() {
        if m == "id" {
            bail!("[fusion] `id` is the ID embedding, not a modality: leave it out of `modalities` (it is offered unless `id = false`)");
        }
        if cfg.modalities[..i].contains(m) {
            bail!("[fusion] modality `{m}` is listed twice");
        }
    }
    let plugin = discover::find(runtime, dirs, &cfg.plugin, PluginKind::Fusion).with_context(|| format!("[fusion] plugin `{}`", cfg.plugin))?;
    let (mut loaded, shas): (Vec<Loaded>, Vec<String>) = cfg
        .modalities
        .iter()
        .map(|m| load_modality(&features_dir.join(format!("{m}.parquet")), m, catalog))
        .collect::<anyhow::Result<Vec<_>>>()?
        .into_iter()
        .unzip();
    if cfg.standardize {
        loaded.iter_mut().for_each(standardize);
    }
    let mut inputs = Vec::new();
    if cfg.id {
        inputs.push(Modality { name: "id".into(), dim: out_dim as u32 });
    }
    inputs.extend(cfg.modalities.iter().zip(&loaded).map(|(m, l)| Modality { name: m.clone(), dim: l.dim as u32 }));
    let params = crate::features::config::params_from_toml(&cfg.params).with_context(|| format!("[fusion] params for `{}`", cfg.plugin))?;
    let id = plugin.id();
    let plan = fusion::plan(&plugin, &inputs, out_dim as u32, &params)?;
    check_size(&plan, catalog.len()).map_err(|reason| anyhow::anyhow!("fusion plugin `{}` ({}): {reason}", id.name, id.path.display()))?;
    let n = catalog.len();
    let inputs = cfg
        .modalities
        .iter()
        .zip(loaded)
        .map(|(name, l)| {
            let values = Tensor::from_vec(l.values, (n, l.dim), device)?;
            let all = l.present.iter().all(|&p| p);
            let present = match (cfg.missing, all) {
                (Missing::Mask, false) => Some(Tensor::from_vec(l.present.iter().map(|&p| p as u8 as f32).collect::<Vec<_>>(), (n, 1), device)?),
                _ => None,
            };
            Ok(ModalityInput { name: name.clone(), values, present })
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    let digest = crate::artifact::sha256_hex(format!("{:?} {:?} {:?}", plan, cfg, shas).as_bytes());
    Ok(FusionSpec { plan, inputs, id_present: None, digest })
}

/// With `missing = "mask"`, the `id` input of the items never played in `train` counts as
/// missing (their fusion reads content only); with `zeros`, every ID row is used.
pub fn mask_cold_ids(spec: &mut FusionSpec, cfg: &FusionConfig, n: usize, train: &[Vec<u32>], device: &Device) -> candle_core::Result<()> {
    if cfg.missing == Missing::Zeros {
        return Ok(());
    }
    let mut played = vec![0f32; n];
    train.iter().flatten().filter(|&&i| (i as usize) < n).for_each(|&i| played[i as usize] = 1.0);
    if played.iter().all(|&p| p == 1.0) {
        return Ok(());
    }
    spec.id_present = Some(Tensor::from_vec(played, (n, 1), device)?);
    Ok(())
}

/// The track ids of a prepared directory's catalog, in item order.
pub fn catalog(prepared: &Path) -> anyhow::Result<Vec<String>> {
    Ok(crate::features::items::read_items(prepared)?.into_iter().map(|t| t.track_id).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standardization_is_per_feature_over_the_items_present() {
        // Two features with scales 1000 apart; item 1 missing.
        let mut l = Loaded { values: vec![-500.0, 0.01, 0.0, 0.0, -300.0, 0.03], present: vec![true, false, true], dim: 2 };
        standardize(&mut l);
        assert_eq!(l.values, vec![-1.0, -1.0, 0.0, 0.0, 1.0, 1.0]);
        let mut c = Loaded { values: vec![5.0, 5.0], present: vec![true, true], dim: 1 };
        standardize(&mut c);
        assert_eq!(c.values, vec![0.0, 0.0], "a constant feature carries nothing");
    }
}

#[cfg(test)]
mod cold_tests {
    use super::*;
    use crate::plugins::fusion::{Op, Plan};

    #[test]
    fn items_never_played_read_content_only_unless_missing_is_zeros() {
        let plan = Plan { nodes: vec![Op::Input("id".into())], dims: vec![2], output: 0 };
        let mut spec = FusionSpec { plan, inputs: vec![], id_present: None, digest: String::new() };
        let cfg: FusionConfig = toml::from_str("plugin = \"x\"").unwrap();
        mask_cold_ids(&mut spec, &cfg, 4, &[vec![0, 2], vec![2]], &Device::Cpu).unwrap();
        let m: Vec<f32> = spec.id_present.as_ref().unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(m, vec![1.0, 0.0, 1.0, 0.0]);
        let mut spec = FusionSpec { id_present: None, ..spec };
        let zeros: FusionConfig = toml::from_str("plugin = \"x\"\nmissing = \"zeros\"").unwrap();
        mask_cold_ids(&mut spec, &zeros, 4, &[vec![0]], &Device::Cpu).unwrap();
        assert!(spec.id_present.is_none(), "the paper's behaviour uses every ID row");
    }
}
