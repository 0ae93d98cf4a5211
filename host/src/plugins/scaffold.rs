//! `encore plugin new`: a crate that builds to a plugin and passes its own test.
use super::PluginKind;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

/// The SDK this binary was built with, for scaffolded crates to depend on.
pub fn default_sdk_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk")
}

/// Writes a new plugin crate `name` of `kind` into `dir/name`. Refuses to overwrite.
pub fn new_plugin(kind: PluginKind, name: &str, dir: &Path, sdk: &Path) -> anyhow::Result<PathBuf> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') || !name.starts_with(|c: char| c.is_ascii_lowercase())
    {
        bail!("plugin name {name:?} must start with a lowercase letter and hold only a-z, 0-9 and -");
    }
    let sdk = sdk.canonicalize().with_context(|| format!("the encore SDK is not at {}: pass --sdk PATH to the encore-sdk crate", sdk.display()))?;
    let root = dir.join(name);
    if root.exists() {
        bail!("{} already exists; pick another name or directory", root.display());
    }
    let ty: String = name
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect();
    let (description, body) = match kind {
        PluginKind::Metric => ("A metric plugin for encore.", METRIC),
        PluginKind::Fusion => ("A fusion plugin for encore.", FUSION),
        PluginKind::Extractor => ("An extractor plugin for encore.", EXTRACTOR),
    };
    let cargo = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
publish = false
description = "{description}"

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
encore-sdk = {{ path = "{sdk}" }}

# A plugin is its own workspace; build it with:
#   cargo build --release --target wasm32-wasip2
# and load target/wasm32-wasip2/release/{file}.wasm with `encore plugin check`.
[workspace]
"#,
        sdk = sdk.display().to_string().replace('\\', "/"),
        file = name.replace('-', "_"),
    );
    std::fs::create_dir_all(root.join("src")).with_context(|| format!("creating {}", root.display()))?;
    std::fs::write(root.join("Cargo.toml"), cargo)?;
    std::fs::write(root.join("src/lib.rs"), body.replace("Name", &ty).replace("NAME", name))?;
    Ok(root)
}

const METRIC: &str = r#"//! NAME: Recall@K, a starting point. Edit `add` (per-user value) and, for a global metric,
//! `finish`.
use encore_sdk::metric::{hits, Metric};

pub struct Name;

impl Metric for Name {
    fn new(_k: u32, _n_items: u32) -> Self {
        Name
    }

    fn add(&mut self, ranked: &[u32], targets: &[u32]) -> Option<f64> {
        Some(hits(ranked, targets) as f64 / targets.len() as f64)
    }
}

encore_sdk::export_metric!(Name);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_of_two_targets_found() {
        let mut m = Name::new(3, 10);
        assert_eq!(m.add(&[1, 2, 3], &[2, 9]), Some(0.5));
    }
}
"#;

const FUSION: &str = r#"//! NAME: concatenate every input, then project; a starting point.
use encore_sdk::fusion::{Fusion, Modality, Plan, PlanBuilder};
use encore_sdk::{Error, Params};

pub struct Name;

impl Fusion for Name {
    fn plan(inputs: &[Modality], out_dim: u32, params: &Params) -> Result<Plan, Error> {
        params.only(&[])?;
        let p = PlanBuilder::new();
        let parts: Vec<_> = inputs.iter().map(|m| p.input(&m.name)).collect();
        Ok(p.output(p.linear(p.concat(&parts), out_dim)))
    }
}

encore_sdk::export_fusion!(Name);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_one_linear_over_the_concatenation() {
        let inputs = [Modality { name: "id".into(), dim: 64 }, Modality { name: "audio".into(), dim: 32 }];
        let plan = Name::plan(&inputs, 64, &Params::default()).unwrap();
        assert_eq!(plan.nodes.len(), 4);
    }
}
"#;

const EXTRACTOR: &str = r#"//! NAME: two numbers per track from its metadata; a starting point.
use encore_sdk::extractor::{Extractor, Spec, Track};
use encore_sdk::{Error, Params};

pub struct Name;

impl Extractor for Name {
    fn configure(params: &Params) -> Result<(Self, Spec), Error> {
        params.only(&[])?;
        Ok((Name, Spec { name: "NAME".into(), dim: 2, wants_audio: None }))
    }

    fn extract(&mut self, track: &Track, _audio: Option<&[f32]>) -> Result<Option<Vec<f32>>, Error> {
        Ok(Some(vec![track.title.chars().count() as f32, track.tags.len() as f32]))
    }
}

encore_sdk::export_extractor!(Name);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_title_characters_and_tags() {
        let (mut x, spec) = Name::configure(&Params::default()).unwrap();
        let t = Track { title: "Hey".into(), tags: vec!["rock".into()], ..Track::default() };
        assert_eq!(x.extract(&t, None).unwrap().unwrap().len(), spec.dim as usize);
    }
}
"#;
