//! `encore features ...`: the command-line side of feature extraction.
use super::config::{params_from_toml, ExtractorConfig, FeaturesConfig};
use super::extract::{extract, ExtractOptions};
use super::{items, purity, store};
use crate::plugins::{discover, PluginKind, Runtime};
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// `encore features ...`.
#[derive(Debug, Subcommand)]
pub enum FeaturesCommand {
    /// Run extractor plugins over a prepared dataset's items: features/<name>.parquet + manifest.
    Extract(ExtractArgs),
    /// k-NN label purity (cosine) of feature files, e.g. against the synthetic data's styles.
    Purity(PurityArgs),
}

/// `encore features extract`.
#[derive(Debug, Args)]
pub struct ExtractArgs {
    /// A directory from `encore data prepare` (its items.parquet).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// A TOML file with a `[features]` section (paths, `[[features.extractor]]` with params).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Extractor plugins by name or path, with default parameters (repeatable; adds to the config's).
    #[arg(long = "plugin", value_name = "NAME")]
    pub plugins: Vec<String>,
    /// Side-car item table: TSV with track_id and any of duration_s, tags, lyrics, mgphot (e.g. synth's tracks.tsv).
    #[arg(long)]
    pub tracks: Option<PathBuf>,
    /// Clip directory: <track_id>.{wav,flac,mp3,ogg}.
    #[arg(long)]
    pub audio: Option<PathBuf>,
    /// Keep only the first N seconds of each clip (default 600; it also bounds what a clip may cost).
    #[arg(long)]
    pub max_seconds: Option<f32>,
    /// Tracks per plugin call (default 8 for audio extractors, 256 otherwise).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Output directory (default: DATA/features).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Stop when more tracks than this have failed in the plugin.
    #[arg(long, default_value_t = 100)]
    pub max_failed: usize,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// `encore features purity`.
#[derive(Debug, Args)]
pub struct PurityArgs {
    /// Feature files (features/<name>.parquet).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// A TSV with track_id and the label column (e.g. synth's tracks.tsv).
    #[arg(long)]
    pub labels: PathBuf,
    /// The label column.
    #[arg(long, default_value = "style")]
    pub label_column: String,
    /// Neighbours.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
}

/// Runs `encore features ...`.
pub fn run(runtime: &Runtime, dirs: &[PathBuf], cmd: FeaturesCommand) -> anyhow::Result<()> {
    match cmd {
        FeaturesCommand::Extract(a) => run_extract(runtime, dirs, a),
        FeaturesCommand::Purity(a) => run_purity(a),
    }
}

fn run_extract(runtime: &Runtime, dirs: &[PathBuf], a: ExtractArgs) -> anyhow::Result<()> {
    let mut cfg = match &a.config {
        Some(p) => FeaturesConfig::load(p)?,
        None => FeaturesConfig::default(),
    };
    cfg.extractor.extend(a.plugins.iter().map(|p| ExtractorConfig { plugin: p.clone(), name: None, params: toml::Table::new() }));
    let prepared = a.data.or(cfg.prepared.clone()).context("pass --data DIR (a directory from `encore data prepare`) or `prepared` in [features]")?;
    if cfg.extractor.is_empty() {
        bail!("no extractor: pass --plugin NAME or list [[features.extractor]] in --config");
    }
    cfg.tracks = a.tracks.or(cfg.tracks);
    cfg.out = a.out.or(cfg.out);
    cfg.audio = a.audio.or(cfg.audio);
    cfg.max_seconds = a.max_seconds.or(cfg.max_seconds);
    cfg.batch = a.batch.or(cfg.batch);
    extract_all(runtime, dirs, &cfg, &prepared, a.max_failed, !a.quiet)
}

/// Runs every extractor of `cfg` over the catalog of `prepared`, into `cfg.out` (default
/// `<prepared>/features`): cached and resumable, as `encore features extract`; `encore run`'s
/// features stage.
pub fn extract_all(
    runtime: &Runtime,
    dirs: &[PathBuf],
    cfg: &FeaturesConfig,
    prepared: &std::path::Path,
    max_failed: usize,
    progress: bool,
) -> anyhow::Result<()> {
    let mut tracks = items::read_items(prepared).with_context(|| format!("reading the catalog of {}", prepared.display()))?;
    if let Some(side) = &cfg.tracks {
        let table = items::read_sidecar(side)?;
        let n = items::join_sidecar(&mut tracks, &table);
        eprintln!("{}: content for {n} of {} items", side.display(), tracks.len());
    }
    let opts = ExtractOptions {
        out_dir: cfg.out.clone().unwrap_or_else(|| prepared.join("features")),
        audio_dir: cfg.audio.clone(),
        max_seconds: cfg.max_seconds,
        batch: cfg.batch,
        max_failed,
        progress,
        models_key: runtime.models().cache_key(),
    };
    let _lock = crate::artifact::DirLock::exclusive(&opts.out_dir, "encore features extract")?;
    if let Some(m) = opts.max_seconds {
        super::audio::check_max_seconds(m).map_err(|e| anyhow::anyhow!("--max-seconds (or max_seconds in [features]) {e}"))?;
    }
    // Load every plugin first: a typo should fail before hours of extraction.
    let plugins = cfg.extractor.iter().map(|e| discover::find(runtime, dirs, &e.plugin, PluginKind::Extractor)).collect::<anyhow::Result<Vec<_>>>()?;
    for (e, plugin) in cfg.extractor.iter().zip(&plugins) {
        let params = params_from_toml(&e.params).with_context(|| format!("parameters of extractor `{}`", e.plugin))?;
        let s = extract(plugin, &params, e.name.as_deref(), &tracks, &opts)
            .with_context(|| format!("extracting with `{}` ({})", plugin.info().name, plugin.id().path.display()))?;
        let rate = if s.seconds > 0.0 { s.computed as f64 / s.seconds } else { 0.0 };
        println!(
            "{}: {} items, dim {}: {} done, {} missing, {} failed; computed {} ({rate:.1} tracks/s), cached {}{}",
            s.name,
            s.items,
            s.dim,
            s.done,
            s.missing,
            s.failed,
            s.computed,
            s.cached,
            if s.wrote { String::new() } else { " (unchanged)".into() }
        );
        for (id, why) in s.missing_examples.iter().take(5) {
            eprintln!("  missing {id}: {why}");
        }
        if s.missing > 5 {
            eprintln!("  ... {} missing in all (status and reason are in the file)", s.missing);
        }
        for (id, why) in &s.failures {
            eprintln!("  failed {id}: {why}");
        }
        eprintln!("wrote {}", s.file.display());
    }
    Ok(())
}

fn run_purity(a: PurityArgs) -> anyhow::Result<()> {
    if a.k == 0 {
        bail!("--k must be positive");
    }
    let labels = items::read_labels(&a.labels, &a.label_column)?;
    println!("{:<24} {:>6} {:>3} {:>7} {:>8} {:>12} {:>9} {:>12}", "features", "n", "k", "classes", "raw", "standardized", "1/classes", "random(prior)");
    for f in &a.files {
        let file = store::read_verified(f)?;
        let mut names = std::collections::BTreeMap::new();
        let (mut v, mut l) = (Vec::new(), Vec::new());
        for r in file.rows {
            if let (Some(x), Some(lab)) = (r.vector, labels.get(&r.track_id)) {
                let n = names.len() as u32;
                l.push(*names.entry(lab.clone()).or_insert(n));
                v.push(x);
            }
        }
        if v.len() < 2 {
            bail!("{}: {} vectors with a label in {}; need at least 2", f.display(), v.len(), a.labels.display());
        }
        let p = purity::knn_purity(&v, &l, a.k);
        let name = f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        println!(
            "{name:<24} {:>6} {:>3} {:>7} {:>8.4} {:>12.4} {:>9.4} {:>12.4}",
            p.n, p.k, p.classes, p.raw, p.standardized, p.chance_uniform, p.chance_prior
        );
    }
    Ok(())
}
