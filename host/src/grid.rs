//! `encore grid CONFIG.toml`: the cartesian product of a run config's axes (LLM, encoder,
//! modality subset, fusion plugin, completion mode, protocol, seed), one cell per combination.
//!
//! A grid config is a run config whose `[[encoder]]` and `[[llm]]` entries are templates, named,
//! plus a `[grid]` table of axes. Each cell is a run config of its own (one encoder, at most one
//! LLM), built from the templates and checked as `encore run` checks its config.
//!
//! Stages are shared by every cell that needs them and computed once: the prepared data
//! (`OUT/data/`), the features, each ID encoder (`OUT/stages/<encoder>-<key>/`) and each E4SRec
//! (`OUT/stages/<llm>-<key>/`), where the key hashes everything the stage depends on. Processes
//! queue on a lock file per stage (`OUT/.locks/`), so cells may run at once, on one machine
//! (`--jobs N`) or as a Slurm job array over a shared directory (`--slurm`, `--cell I`): the first
//! computes a stage, the others find it done.
//!
//! A cell's result (`OUT/cells/<cell>/`: its metrics and per-case values, sealed by a manifest)
//! is written in a temporary directory and renamed, so after a SIGKILL at any point a cell is
//! either whole or absent, and a rerun skips exactly the finished cells. A failing cell is
//! recorded (`OUT/failed/<cell>.txt`) and the others go on. `--collect` (and every full run)
//! gathers the cells into `results.csv`, `results.parquet`, `comparisons.parquet`, `report.md`
//! and `report.html`.
use crate::artifact::{Manifest, StageLock};
use crate::eval::bootstrap::Bootstrap;
use crate::eval::compare::PerCase;
use crate::eval::EvalReport;
use crate::pipeline::{self, Evaluation, Ranker};
use crate::plugins::{discover, PluginKind, Runtime};
use crate::results::ResultRow;
use crate::run::RunConfig;
use crate::train::EvalParams;
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `[grid]`: the axes. Every axis has a default, so a grid of one axis names only that one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridAxes {
    /// `[[llm]]` templates by name, or `none` (the encoder alone ranks). Default `["none"]`.
    #[serde(default = "none_axis")]
    pub llm: Vec<String>,
    /// `[[encoder]]` templates by name. Default: every template.
    #[serde(default)]
    pub encoder: Vec<String>,
    /// Modality subsets fused with the ID embedding; `[]` is ID only. Default `[[]]`.
    #[serde(default)]
    pub modalities: Option<Vec<Vec<String>>>,
    /// Fusion plugins, for the cells with modalities. Default `["weighted-sum"]`.
    #[serde(default = "weighted_sum")]
    pub fusion: Vec<String>,
    /// The encoders' `completion` mode: `none` or `embed`. Default `["none"]`.
    #[serde(default)]
    pub completion: Option<Vec<String>>,
    /// Explicit (modalities, completion) pairs, e.g. the paper's ID only, +A/L/M and +A/L/M+CR,
    /// instead of the product of `modalities` and `completion` (which then must not be given).
    #[serde(default)]
    pub variants: Vec<VariantAxis>,
    /// `full` (rank all items) or `1+N` (the target among N sampled negatives). Default `["full"]`.
    #[serde(default = "full_axis")]
    pub protocol: Vec<String>,
    /// Training seeds (of the encoder and the LLM). Default: `[train] seed`.
    #[serde(default)]
    pub seed: Vec<u64>,
    /// Short names of modalities in column labels (`audio-dsp = "A"`); default: each name's
    /// first letter, upper-cased.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `[grid.slurm]`: what `--slurm` asks of each array task.
    #[serde(default)]
    pub slurm: SlurmParams,
}

fn none_axis() -> Vec<String> {
    vec!["none".into()]
}

/// One `[[grid.variants]]`: modalities fused and the completion mode.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantAxis {
    /// Fused modalities; `[]`: ID only.
    #[serde(default)]
    pub modalities: Vec<String>,
    /// `none` or `embed`.
    #[serde(default = "none_mode")]
    pub completion: String,
    /// The fusion plugins of this variant's cells, in place of the `fusion` axis (e.g. the
    /// completion input with one plugin only).
    #[serde(default)]
    pub fusion: Option<Vec<String>>,
}

fn none_mode() -> String {
    "none".into()
}
fn weighted_sum() -> Vec<String> {
    vec!["weighted-sum".into()]
}
fn full_axis() -> Vec<String> {
    vec!["full".into()]
}

/// `[grid.slurm]`: resources of each array task.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlurmParams {
    /// `--partition`, if any.
    pub partition: Option<String>,
    /// `--time` per task.
    pub time: String,
    /// `--cpus-per-task`.
    pub cpus_per_task: u32,
    /// `--mem` per task, e.g. `64G`.
    pub mem: String,
    /// GPUs per task (`--gres=gpu:N`; 0: none).
    pub gpus: u32,
    /// At most this many tasks at once (`--array=…%N`; 0: no limit).
    pub max_parallel: u32,
    /// More `#SBATCH` lines, each an option such as `--account=proj`.
    pub extra: Vec<String>,
}

impl Default for SlurmParams {
    fn default() -> Self {
        SlurmParams { partition: None, time: "24:00:00".into(), cpus_per_task: 8, mem: "64G".into(), gpus: 0, max_parallel: 0, extra: Vec::new() }
    }
}

/// How a cell's test cases are ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Every item.
    Full,
    /// The target among this many sampled negatives.
    Sampled(usize),
}

impl Protocol {
    fn parse(s: &str) -> Option<Protocol> {
        match s {
            "full" => Some(Protocol::Full),
            _ => s.strip_prefix("1+").and_then(|n| n.parse().ok()).filter(|&n: &usize| n > 0).map(Protocol::Sampled),
        }
    }
    /// `full` or `1+N`.
    pub fn label(self) -> String {
        match self {
            Protocol::Full => "full".into(),
            Protocol::Sampled(n) => format!("1+{n}"),
        }
    }
    fn negatives(self) -> usize {
        match self {
            Protocol::Full => 0,
            Protocol::Sampled(n) => n,
        }
    }
}

/// One combination of the axes.
#[derive(Debug, Clone)]
pub struct Cell {
    /// Its index in the grid's order (`--cell I`, the Slurm array index).
    pub index: usize,
    /// Its directory name under `cells/`, from its axis values.
    pub id: String,
    /// The `[[llm]]` template, if any.
    pub llm: Option<String>,
    /// The `[[encoder]]` template.
    pub encoder: String,
    /// Fused modalities (empty: ID only).
    pub modalities: Vec<String>,
    /// The fusion plugin (with modalities).
    pub fusion: Option<String>,
    /// `none` or `embed`.
    pub completion: String,
    /// The ranking protocol.
    pub protocol: Protocol,
    /// The training seed.
    pub seed: u64,
    /// The column of the paper's table: `ID only`, `+A/L/M`, `+A/L/M+CR`.
    pub variant: String,
    /// The run config it stands for.
    pub config: RunConfig,
    /// Its encoder stage's directory name (`stages/…`).
    pub encoder_stage: String,
    /// Its E4SRec stage's directory name, with an LLM.
    pub llm_stage: Option<String>,
    /// A hash of everything the cell's result depends on.
    pub key: String,
}

/// A grid config, read and expanded into its cells.
#[derive(Debug, Clone)]
pub struct Grid {
    /// The config file.
    pub path: PathBuf,
    /// The axes.
    pub axes: GridAxes,
    /// The base run config (the first cell's, for the data, features and baselines).
    pub base: RunConfig,
    /// Every cell, in order.
    pub cells: Vec<Cell>,
}

fn sha(text: &str) -> String {
    crate::artifact::sha256_hex(text.as_bytes())
}

/// A template's name: its `name` key, else what `encore run` would call it.
fn template_names(list: Option<&toml::Value>, what: &str, path: &Path) -> anyhow::Result<Vec<(String, toml::Table)>> {
    let Some(list) = list else { return Ok(Vec::new()) };
    let arr = list.as_array().with_context(|| format!("{}: `{what}` must be an array of tables ([[{what}]])", path.display()))?;
    let mut out: Vec<(String, toml::Table)> = Vec::new();
    for v in arr {
        let t = v.as_table().with_context(|| format!("{}: every [[{what}]] must be a table", path.display()))?.clone();
        let name = match (what, t.get("name").and_then(|n| n.as_str())) {
            (_, Some(n)) => n.to_string(),
            ("encoder", None) => {
                let enc: crate::run::RunEncoder = toml::Value::Table(t.clone()).try_into().with_context(|| format!("[[encoder]] in {}", path.display()))?;
                enc.model.name().to_string()
            }
            _ => bail!("{}: every [[{what}]] of a grid needs a `name`, which [grid] {what} refers to", path.display()),
        };
        if out.iter().any(|(n, _)| *n == name) {
            bail!("{}: two [[{what}]] templates are both named `{name}`: give one a `name`", path.display());
        }
        out.push((name, t));
    }
    Ok(out)
}

impl Grid {
    /// Reads `path` and builds every cell's config; any cell's config error is an error here,
    /// naming the cell, before anything runs.
    pub fn load(path: &Path) -> anyhow::Result<Grid> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut table: toml::Table = toml::from_str(&text).with_context(|| format!("in {}", path.display()))?;
        let axes: GridAxes = match table.remove("grid") {
            Some(v) => v.try_into().with_context(|| format!("[grid] in {}", path.display()))?,
            None => {
                bail!("{}: no [grid] table: a grid config is a run config with [grid] axes (see docs/grid.md); for one run, use `encore run`", path.display())
            }
        };
        let encoders = template_names(table.get("encoder"), "encoder", path)?;
        let llms = template_names(table.get("llm"), "llm", path)?;
        if encoders.is_empty() {
            bail!("{}: no [[encoder]] template", path.display());
        }
        if table.contains_key("zero_shot") {
            bail!("{}: [[zero_shot]] is not a grid axis; run it with `encore run`", path.display());
        }
        let enc_axis: Vec<String> = if axes.encoder.is_empty() { encoders.iter().map(|(n, _)| n.clone()).collect() } else { axes.encoder.clone() };
        for e in &enc_axis {
            if !encoders.iter().any(|(n, _)| n == e) {
                bail!("{}: [grid] encoder `{e}` is not an [[encoder]] template (they are {})", path.display(), names(&encoders));
            }
        }
        for l in axes.llm.iter().filter(|l| *l != "none") {
            if !llms.iter().any(|(n, _)| n == l) {
                bail!("{}: [grid] llm `{l}` is not an [[llm]] template (they are {}), nor `none`", path.display(), names(&llms));
            }
        }
        let variants: Vec<(Vec<String>, String, Option<Vec<String>>)> = if axes.variants.is_empty() {
            let mods = axes.modalities.clone().unwrap_or_else(|| vec![vec![]]);
            let completion = axes.completion.clone().unwrap_or_else(none_axis);
            if mods.is_empty() || completion.is_empty() {
                bail!(
                    "{}: [grid] {} is empty: give it at least one value, or leave it out for its default",
                    path.display(),
                    if mods.is_empty() { "modalities" } else { "completion" }
                );
            }
            mods.iter().flat_map(|m| completion.iter().map(move |c| (m.clone(), c.clone(), None))).collect()
        } else if axes.modalities.is_some() || axes.completion.is_some() {
            bail!("{}: [grid] has both `variants` and `modalities`/`completion`: give either the pairs or the two axes", path.display());
        } else {
            axes.variants.iter().map(|v| (v.modalities.clone(), v.completion.clone(), v.fusion.clone())).collect()
        };
        for (_, c, f) in &variants {
            if c != "none" && c != "embed" {
                bail!("{}: [grid] completion `{c}`: use `none` or `embed`", path.display());
            }
            if f.as_ref().is_some_and(|f| f.is_empty()) {
                bail!("{}: [grid] a variant's `fusion` is empty: give it at least one plugin, or leave it out for the `fusion` axis", path.display());
            }
        }
        // Cells name their plugin when the grid has more than one.
        let plugins = {
            let mut all: Vec<&String> = axes.fusion.iter().chain(variants.iter().flat_map(|v| v.2.iter().flatten())).collect();
            all.sort();
            all.dedup();
            all.len()
        };
        let protocols = axes
            .protocol
            .iter()
            .map(|p| Protocol::parse(p).with_context(|| format!("{}: [grid] protocol `{p}`: use `full` or `1+N` (e.g. `1+199`)", path.display())))
            .collect::<anyhow::Result<Vec<_>>>()?;
        for (axis, n) in [("llm", axes.llm.len()), ("encoder", enc_axis.len()), ("fusion", axes.fusion.len()), ("protocol", protocols.len())] {
            if n == 0 {
                bail!("{}: [grid] {axis} is empty: give it at least one value, or leave it out for its default", path.display());
            }
        }
        // The base: the templates' first encoder, no LLM; it carries data, features, eval, report.
        let mut base_table = table.clone();
        base_table.insert("encoder".into(), toml::Value::Array(vec![toml::Value::Table(encoders[0].1.clone())]));
        base_table.remove("llm");
        let base: RunConfig = toml::Value::Table(base_table).try_into().with_context(|| format!("in {}", path.display()))?;
        let base = base.resolved(path)?;
        let seeds = if axes.seed.is_empty() { vec![base.train.seed] } else { axes.seed.clone() };
        let mut cells: Vec<Cell> = Vec::new();
        for llm in &axes.llm {
            for enc in &enc_axis {
                for (mods, completion, pinned) in &variants {
                    // Without modalities the fusion plugin has nothing to fuse: one cell, not one per plugin.
                    let fusions: Vec<Option<&String>> =
                        if mods.is_empty() { vec![None] } else { pinned.as_ref().unwrap_or(&axes.fusion).iter().map(Some).collect() };
                    for fusion in fusions {
                        {
                            for &protocol in &protocols {
                                for &seed in &seeds {
                                    let llm = (llm != "none").then(|| llm.clone());
                                    let mut variant = crate::results::variant(mods, completion == "embed", &axes.labels);
                                    if let (Some(f), true) = (fusion, plugins > 1) {
                                        variant = format!("{variant} ({f})");
                                    }
                                    let cell = build_cell(
                                        path,
                                        &table,
                                        &encoders,
                                        &llms,
                                        CellAxes { llm, encoder: enc, modalities: mods, fusion, completion, protocol, seed, variant, index: cells.len() },
                                    )?;
                                    if cells.iter().any(|c| c.id == cell.id) {
                                        bail!("{}: two cells would share the directory `cells/{}`: rename a template", path.display(), cell.id);
                                    }
                                    cells.push(cell);
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(Grid { path: path.to_path_buf(), axes, base, cells })
    }

    /// The cell `--cell I` names.
    pub fn cell(&self, index: usize) -> anyhow::Result<&Cell> {
        self.cells.get(index).with_context(|| {
            format!("{} has {} cells (0 to {}); there is no cell {index}", self.path.display(), self.cells.len(), self.cells.len().saturating_sub(1))
        })
    }
}

fn names(list: &[(String, toml::Table)]) -> String {
    if list.is_empty() {
        return "none".into();
    }
    list.iter().map(|(n, _)| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

struct CellAxes<'a> {
    llm: Option<String>,
    encoder: &'a str,
    modalities: &'a [String],
    fusion: Option<&'a String>,
    completion: &'a str,
    protocol: Protocol,
    seed: u64,
    variant: String,
    index: usize,
}

fn build_cell(path: &Path, table: &toml::Table, encoders: &[(String, toml::Table)], llms: &[(String, toml::Table)], a: CellAxes) -> anyhow::Result<Cell> {
    let mut t = table.clone();
    let mut enc = encoders.iter().find(|(n, _)| n == a.encoder).map(|(_, t)| t.clone()).context("the encoder template")?;
    enc.insert("name".into(), a.encoder.into());
    enc.insert("completion".into(), a.completion.into());
    match a.fusion {
        Some(plugin) => {
            let mut f = enc.get("fusion").and_then(|f| f.as_table()).cloned().unwrap_or_default();
            f.insert("plugin".into(), plugin.as_str().into());
            f.insert("modalities".into(), toml::Value::Array(a.modalities.iter().map(|m| m.as_str().into()).collect()));
            enc.insert("fusion".into(), toml::Value::Table(f));
        }
        None => {
            enc.remove("fusion");
        }
    }
    t.insert("encoder".into(), toml::Value::Array(vec![toml::Value::Table(enc.clone())]));
    let train = t.entry("train").or_insert_with(|| toml::Value::Table(toml::Table::new()));
    train.as_table_mut().with_context(|| format!("{}: [train] must be a table", path.display()))?.insert("seed".into(), (a.seed as i64).into());
    t.remove("llm");
    let mut llm_table = None;
    if let Some(l) = &a.llm {
        let mut lt = llms.iter().find(|(n, _)| n == l).map(|(_, t)| t.clone()).context("the llm template")?;
        lt.insert("encoder".into(), a.encoder.into());
        lt.insert("name".into(), l.as_str().into());
        let lt_train = lt.entry("train").or_insert_with(|| toml::Value::Table(toml::Table::new()));
        lt_train.as_table_mut().with_context(|| format!("{}: [llm.train] must be a table", path.display()))?.insert("seed".into(), (a.seed as i64).into());
        t.insert("llm".into(), toml::Value::Array(vec![toml::Value::Table(lt.clone())]));
        llm_table = Some(lt);
    }
    let mods = if a.modalities.is_empty() { "id".to_string() } else { a.modalities.join("+") };
    let id = pipeline::dir_name(&format!(
        "{}-{}-{mods}{}-{}-{}-s{}",
        a.llm.as_deref().unwrap_or("none"),
        a.encoder,
        a.fusion.map(|f| format!("-{f}")).unwrap_or_default(),
        a.completion,
        a.protocol.label(),
        a.seed
    ));
    let config: RunConfig = toml::Value::Table(t.clone()).try_into().with_context(|| format!("cell {} ({id}) of {}", a.index, path.display()))?;
    let config = config.resolved(path).with_context(|| format!("cell {} ({id})", a.index))?;
    // Stage keys: what each stage's result depends on, as canonical TOML.
    let section = |k: &str| t.get(k).map(|v| toml::to_string(&toml::Table::from_iter([(k.to_string(), v.clone())])).unwrap_or_default()).unwrap_or_default();
    let enc_text = toml::to_string(&enc).unwrap_or_default();
    let enc_key = sha(&format!("{enc_text}\n{}\n{}\n{}\n{}", section("data"), section("features"), section("train"), section("eval")));
    let encoder_stage = format!("{}-{}", pipeline::dir_name(a.encoder), &enc_key[..12]);
    let llm_key = llm_table.map(|lt| sha(&format!("{enc_key}\n{}", toml::to_string(&lt).unwrap_or_default())));
    let llm_stage = llm_key.as_ref().zip(a.llm.as_ref()).map(|(k, l)| format!("{}-{}", pipeline::dir_name(l), &k[..12]));
    let key = sha(&format!("{}\n{}\n{}\n{}", llm_key.as_deref().unwrap_or(&enc_key), a.protocol.label(), section("report"), env!("CARGO_PKG_VERSION")));
    Ok(Cell {
        index: a.index,
        id,
        llm: a.llm,
        encoder: a.encoder.to_string(),
        modalities: a.modalities.to_vec(),
        fusion: a.fusion.cloned(),
        completion: a.completion.to_string(),
        protocol: a.protocol,
        seed: a.seed,
        variant: a.variant,
        config,
        encoder_stage,
        llm_stage,
        key,
    })
}

/// A finished cell's result, `cells/<id>/cell.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellResult {
    /// The cell's directory name.
    pub id: String,
    /// The cell's key when it ran.
    pub key: String,
    /// One entry per metric@k.
    pub metric: Vec<CellMetric>,
}

/// One metric@k of a cell.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellMetric {
    /// The metric plugin.
    pub metric: String,
    /// The cutoff.
    pub k: u32,
    /// The mean over test cases.
    pub value: f64,
    /// The bootstrap interval, when one was computed.
    pub ci: Option<[f64; 2]>,
    /// Test cases.
    pub n_cases: usize,
    /// Per-case values, in test-case order (for paired comparisons).
    pub cases: Vec<f64>,
}

const CELL_KIND: &str = "grid-cell";

fn cell_dir(out: &Path, id: &str) -> PathBuf {
    out.join("cells").join(id)
}

/// The cell's result, when a finished one of the same key is there and verifies.
pub fn finished(out: &Path, cell: &Cell) -> Option<CellResult> {
    let dir = cell_dir(out, &cell.id);
    let m = Manifest::verify(&dir, CELL_KIND).ok()?;
    if m.inputs.get("cell").map(String::as_str) != Some(cell.key.as_str()) {
        return None;
    }
    let text = std::fs::read_to_string(dir.join("cell.toml")).ok()?;
    toml::from_str(&text).ok()
}

/// Appends a line to `OUT/grid.log` (one write, so concurrent cells' lines do not interleave).
fn log(out: &Path, line: &str) {
    use std::io::Write;
    let when = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let text = format!("{when} pid {} {line}\n", std::process::id());
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(out.join("grid.log")) {
        let _ = f.write_all(text.as_bytes());
    }
    eprintln!("grid: {line}");
}

/// The command line's settings, for every cell.
pub struct Env<'a> {
    /// The plugin runtime (the command line's sandbox over the config's).
    pub runtime: &'a Runtime,
    /// Plugin directories.
    pub dirs: &'a [PathBuf],
    /// The training device.
    pub device: &'a candle_core::Device,
    /// Progress bars.
    pub progress: bool,
}

/// Runs one cell into `out`, unless it is finished. Shared stages are computed under their locks
/// by whichever process comes first.
pub fn run_cell(grid: &Grid, cell: &Cell, out: &Path, env: &Env) -> anyhow::Result<()> {
    let locks = out.join(".locks");
    let _cell_lock = StageLock::exclusive(&locks.join(format!("cell-{}.lock", cell.id)))?;
    if finished(out, cell).is_some() {
        log(out, &format!("cell {} {}: finished before", cell.index, cell.id));
        return Ok(());
    }
    let cfg = &cell.config;
    let plugins = cfg.report.metrics.iter().map(|m| discover::find(env.runtime, env.dirs, m, PluginKind::Metric)).collect::<anyhow::Result<Vec<_>>>()?;
    let prepared = out.join("data");
    let staged = {
        let _l = StageLock::exclusive(&locks.join("data.lock"))?;
        let d = pipeline::data(cfg, &prepared).with_context(|| format!("the data of {}", grid.path.display()))?;
        log(out, &format!("data {}", if d.reused { "reused" } else { "computed" }));
        d
    };
    {
        let _l = StageLock::exclusive(&locks.join("features.lock"))?;
        pipeline::features(cfg, env.runtime, env.dirs, &prepared, env.progress).with_context(|| format!("[features] in {}", grid.path.display()))?;
    }
    let fusion = {
        let _l = StageLock::shared(&locks.join("features.lock"))?;
        pipeline::fusion_specs(cfg, &staged, &prepared, env.runtime, env.dirs, env.device)?.pop().flatten()
    };
    let data = &staged.data;
    let enc = &cfg.encoder[0];
    let (trained, computed) = {
        let _l = StageLock::exclusive(&locks.join(format!("{}.lock", cell.encoder_stage)))?;
        pipeline::encoder(enc, cfg, data, fusion, &out.join("stages").join(&cell.encoder_stage), env.device, env.progress)?
    };
    log(out, &format!("stage stages/{} {}", cell.encoder_stage, if computed { "computed" } else { "reused" }));
    let bootstrap = (cfg.report.bootstrap > 0).then_some(Bootstrap { resamples: cfg.report.bootstrap, seed: cfg.report.seed, ..Bootstrap::default() });
    let eval = Evaluation {
        plugins: &plugins,
        params: EvalParams { sampled_negatives: cell.protocol.negatives(), ..cfg.eval.clone() },
        metrics: &cfg.report.metrics,
        bootstrap,
    };
    let (report, per) = match (cfg.llm.first(), &cell.llm_stage) {
        (Some(l), Some(stage)) => {
            let items = trained.model.embedding_table(None)?.narrow(0, 0, data.n_items)?.detach();
            drop(trained);
            let (llm, computed) = {
                let _l = StageLock::exclusive(&locks.join(format!("{stage}.lock")))?;
                pipeline::e4srec(l, items, data, &out.join("stages").join(stage), env.device, env.progress)?
            };
            log(out, &format!("stage stages/{stage} {}", if computed { "computed" } else { "reused" }));
            eval.run(Ranker::E4SRec(&llm.model), &data.test, data.n_items, env.device)?
        }
        _ => eval.run(Ranker::Encoder(trained.model.as_ref()), &data.test, data.n_items, env.device)?,
    };
    write_cell(out, cell, &report, &per)?;
    log(out, &format!("cell {} {}: written", cell.index, cell.id));
    Ok(())
}

/// Writes `cells/<id>/` whole: into a temporary directory, sealed, then renamed into place.
fn write_cell(out: &Path, cell: &Cell, report: &EvalReport, per: &PerCase) -> anyhow::Result<()> {
    let metric = report
        .results
        .iter()
        .map(|r| CellMetric {
            metric: r.metric.clone(),
            k: r.k,
            value: r.value,
            ci: r.ci.map(|(a, b)| [a, b]),
            n_cases: r.n_users,
            cases: per.iter().find(|(m, k, _)| *m == r.metric && *k == r.k).map(|(_, _, v)| v.clone()).unwrap_or_default(),
        })
        .collect();
    let result = CellResult { id: cell.id.clone(), key: cell.key.clone(), metric };
    let cells = out.join("cells");
    std::fs::create_dir_all(&cells).with_context(|| format!("creating {}", cells.display()))?;
    crate::artifact::remove_stale_temporaries(&cells);
    let tmp = cells.join(format!(".{}.tmp-{}", cell.id, std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let text = toml::to_string(&result).context("serializing a cell's result")?;
    crate::io::write_atomic(&tmp.join("cell.toml"), |w| std::io::Write::write_all(w, text.as_bytes()))?;
    let mut m = Manifest::new(CELL_KIND);
    m.inputs.insert("cell".into(), cell.key.clone());
    m.add(&tmp, "cell.toml")?;
    m.write(&tmp)?;
    std::fs::File::open(&tmp).and_then(|d| d.sync_all()).with_context(|| format!("syncing {}", tmp.display()))?;
    let dest = cell_dir(out, &cell.id);
    if dest.exists() {
        // An unfinished or outdated result: moved aside, then removed.
        let old = cells.join(format!(".{}.old-{}", cell.id, std::process::id()));
        std::fs::rename(&dest, &old).with_context(|| format!("moving {} aside", dest.display()))?;
        let _ = std::fs::remove_dir_all(&old);
    }
    std::fs::rename(&tmp, &dest).with_context(|| format!("renaming {} to {}", tmp.display(), dest.display()))?;
    std::fs::File::open(&cells).and_then(|d| d.sync_all()).with_context(|| format!("syncing {}", cells.display()))?;
    let _ = std::fs::remove_file(out.join("failed").join(format!("{}.txt", cell.id)));
    Ok(())
}

/// Records a failed cell's error in `failed/<id>.txt`.
fn record_failure(out: &Path, cell: &Cell, err: &anyhow::Error) -> anyhow::Result<()> {
    let text = format!("cell {} ({})\n{err:#}\n", cell.index, cell.id);
    crate::io::write_atomic(&out.join("failed").join(format!("{}.txt", cell.id)), |w| std::io::Write::write_all(w, text.as_bytes()))
}

/// Runs `cell` and records its failure, if any, rather than returning it: the grid goes on.
pub fn run_or_record(grid: &Grid, cell: &Cell, out: &Path, env: &Env) -> anyhow::Result<bool> {
    match run_cell(grid, cell, out, env) {
        Ok(()) => Ok(true),
        Err(e) => {
            log(out, &format!("cell {} {}: FAILED: {}", cell.index, cell.id, format!("{e:#}").replace('\n', " ")));
            record_failure(out, cell, &e)?;
            Ok(false)
        }
    }
}

/// What `--dry-run` prints: every cell, and which of its stages are done.
pub fn dry_run(grid: &Grid, out: &Path) -> String {
    let data = match Manifest::verify(&out.join("data"), crate::data::schema::PREPARED) {
        Ok(_) => "prepared",
        Err(_) => "to prepare",
    };
    let stage = |name: &str| {
        let dir = out.join("stages").join(name);
        if dir.join("best.toml").is_file() || dir.join("checkpoint.toml").is_file() {
            "checkpoint"
        } else {
            "to train"
        }
    };
    let mut rows = vec![["cell", "id", "variant", "encoder stage", "llm stage", "result"].map(String::from).to_vec()];
    for c in &grid.cells {
        let result = if finished(out, c).is_some() {
            "done"
        } else if out.join("failed").join(format!("{}.txt", c.id)).is_file() {
            "failed (rerun)"
        } else {
            "to run"
        };
        rows.push(vec![
            c.index.to_string(),
            c.id.clone(),
            c.variant.clone(),
            format!("{} ({})", c.encoder_stage, stage(&c.encoder_stage)),
            c.llm_stage.as_ref().map(|s| format!("{s} ({})", stage(s))).unwrap_or_else(|| "-".into()),
            result.into(),
        ]);
    }
    let mut text = format!("{}: {} cells; data: {data} ({})\n", grid.path.display(), grid.cells.len(), out.join("data").display());
    text.push_str(&crate::io::text_table(&rows));
    let stages: std::collections::BTreeSet<&String> =
        grid.cells.iter().map(|c| &c.encoder_stage).chain(grid.cells.iter().filter_map(|c| c.llm_stage.as_ref())).collect();
    text.push_str(&format!("{} shared training stages, each computed once\n", stages.len()));
    text
}

/// The sbatch script of a job array with one task per cell.
pub fn sbatch(grid: &Grid, out: &Path, encore: &Path, flags: &[String]) -> String {
    let s = &grid.axes.slurm;
    let n = grid.cells.len();
    let mut text = String::from("#!/bin/bash\n");
    text.push_str("#SBATCH --job-name=encore-grid\n");
    let limit = if s.max_parallel > 0 { format!("%{}", s.max_parallel) } else { String::new() };
    text.push_str(&format!("#SBATCH --array=0-{}{limit}\n", n.saturating_sub(1)));
    text.push_str(&format!("#SBATCH --time={}\n#SBATCH --cpus-per-task={}\n#SBATCH --mem={}\n", s.time, s.cpus_per_task, s.mem));
    if let Some(p) = &s.partition {
        text.push_str(&format!("#SBATCH --partition={p}\n"));
    }
    if s.gpus > 0 {
        text.push_str(&format!("#SBATCH --gres=gpu:{}\n", s.gpus));
    }
    for e in &s.extra {
        text.push_str(&format!("#SBATCH {e}\n"));
    }
    text.push_str(&format!("#SBATCH --output={}/slurm/%A_%a.out\n", out.display()));
    text.push_str("# One array task per cell; tasks share stages through locks in OUT/.locks. When the array\n");
    text.push_str(&format!("# has finished: {} grid {} --out {} --collect\n", encore.display(), grid.path.display(), out.display()));
    text.push_str("set -euo pipefail\nexport CANDLE_NUM_THREADS=1\n");
    let device = if s.gpus > 0 { " --device cuda:0" } else { "" };
    let flags: String = flags.iter().map(|f| format!(" {}", shell_quote(f))).collect();
    text.push_str(&format!(
        "exec {} grid {} --out {} --cell \"$SLURM_ARRAY_TASK_ID\" --quiet{device}{flags}\n",
        shell_quote(&encore.display().to_string()),
        shell_quote(&grid.path.display().to_string()),
        shell_quote(&out.display().to_string())
    ));
    text
}

fn shell_quote(s: &str) -> String {
    if s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Gathers every finished cell, with MostPop under each protocol for scale, into results,
/// comparisons and the report. Returns the rows and the cells not finished (failed or missing).
pub fn collect(grid: &Grid, out: &Path, env: &Env) -> anyhow::Result<(Vec<ResultRow>, Vec<String>)> {
    let cfg = &grid.base;
    let locks = out.join(".locks");
    let staged = {
        let _l = StageLock::exclusive(&locks.join("data.lock"))?;
        pipeline::data(cfg, &out.join("data"))?
    };
    let data = &staged.data;
    let plugins = cfg.report.metrics.iter().map(|m| discover::find(env.runtime, env.dirs, m, PluginKind::Metric)).collect::<anyhow::Result<Vec<_>>>()?;
    let bootstrap = (cfg.report.bootstrap > 0).then_some(Bootstrap { resamples: cfg.report.bootstrap, seed: cfg.report.seed, ..Bootstrap::default() });
    let counts = staged.counts();
    let pop = pipeline::Popularity::new(&counts)?;
    let mut models: Vec<(String, PerCase)> = Vec::new();
    let mut rows: Vec<ResultRow> = Vec::new();
    let mut missing = Vec::new();
    let mut protocols: Vec<Protocol> = Vec::new();
    // MostPop's per-case values, per protocol: its long-tail and cold-start rows.
    let mut mostpop: Vec<(Protocol, String, PerCase)> = Vec::new();
    for c in &grid.cells {
        if !protocols.contains(&c.protocol) {
            protocols.push(c.protocol);
        }
    }
    let row = |cell: &str, llm: &str, encoder: &str, variant: &str, seed: u64, protocol: Protocol, m: &CellMetric| ResultRow {
        cell: cell.into(),
        llm: llm.into(),
        encoder: encoder.into(),
        variant: variant.into(),
        seed,
        protocol: protocol.label(),
        metric: m.metric.clone(),
        k: m.k,
        value: m.value,
        ci: m.ci.map(|c| (c[0], c[1])),
        n_cases: m.n_cases,
        ..ResultRow::default()
    };
    for &p in &protocols {
        let eval = Evaluation {
            plugins: &plugins,
            params: EvalParams { sampled_negatives: p.negatives(), ..cfg.eval.clone() },
            metrics: &cfg.report.metrics,
            bootstrap,
        };
        let (report, cases) = eval.run(Ranker::Scorer(&pop), &data.test, data.n_items, &candle_core::Device::Cpu)?;
        let id = format!("mostpop-{}", p.label());
        mostpop.push((p, id.clone(), cases));
        for r in &report.results {
            let m = CellMetric { metric: r.metric.clone(), k: r.k, value: r.value, ci: r.ci.map(|(a, b)| [a, b]), n_cases: r.n_users, cases: Vec::new() };
            rows.push(row(&id, "-", "MostPop", "-", cfg.train.seed, p, &m));
        }
    }
    let mut results: Vec<(&Cell, CellResult)> = Vec::new();
    for c in &grid.cells {
        match finished(out, c) {
            Some(r) => results.push((c, r)),
            None => missing.push(c.id.clone()),
        }
    }
    // Paired comparisons: each cell against the ID-only cell of the same LLM, encoder, seed and
    // protocol; Holm's correction within each protocol, subset and metric@k.
    // A cell's baselines are cells of the same row: the same LLM, encoder, seed and protocol.
    let sibling = |c: &Cell, is: &dyn Fn(&Cell) -> bool| -> Option<String> {
        grid.cells.iter().find(|b| b.llm == c.llm && b.encoder == c.encoder && b.seed == c.seed && b.protocol == c.protocol && is(b)).map(|b| b.id.clone())
    };
    let id_only = |b: &Cell| b.modalities.is_empty() && b.completion == "none";
    let baseline_of = |c: &Cell| if id_only(c) { None } else { sibling(c, &id_only) };
    for (c, r) in &results {
        models.push((c.id.clone(), r.metric.iter().filter(|m| !m.cases.is_empty()).map(|m| (m.metric.clone(), m.k, m.cases.clone())).collect()));
    }
    let baselines: Vec<(String, Option<String>)> = results.iter().map(|(c, _)| (c.id.clone(), baseline_of(c))).collect();
    // The completion input on its own: each `embed` cell against the same cell without it.
    let without_cr = |c: &Cell| {
        if c.completion != "embed" {
            return None;
        }
        sibling(c, &|b: &Cell| b.completion == "none" && b.modalities == c.modalities && b.fusion == c.fusion)
    };
    let cr_baselines: Vec<(String, Option<String>)> = results.iter().map(|(c, _)| (c.id.clone(), without_cr(c))).collect();
    let subsets = crate::eval::compare::subsets(&data.test, &counts);
    // One family of comparisons per protocol (and, inside compare, per subset and metric@k).
    let mut comparisons = Vec::new();
    for &p in &protocols {
        let mut of_p: Vec<(String, PerCase)> = models.iter().filter(|(id, _)| grid.cells.iter().any(|c| c.id == *id && c.protocol == p)).cloned().collect();
        of_p.extend(mostpop.iter().filter(|m| m.0 == p).map(|(_, id, cases)| (id.clone(), cases.clone())));
        comparisons.extend(crate::eval::compare::compare(&of_p, &baselines, &subsets, bootstrap.unwrap_or_default()));
        // A family of its own (Holm within it): only the rows that compare something.
        if cr_baselines.iter().any(|(_, b)| b.is_some()) {
            comparisons.extend(
                crate::eval::compare::compare(&of_p, &cr_baselines, &subsets, bootstrap.unwrap_or_default()).into_iter().filter(|r| r.baseline.is_some()),
            );
        }
    }
    for ((c, r), (_, base)) in results.iter().zip(&baselines) {
        for m in &r.metric {
            let mut x = row(&c.id, c.llm.as_deref().unwrap_or("-"), &c.encoder, &c.variant, c.seed, c.protocol, m);
            if let Some(cmp) =
                comparisons.iter().find(|x| x.model == c.id && x.subset == "all" && x.metric == m.metric && x.k == m.k && base.is_some() && x.baseline == *base)
            {
                x.baseline = cmp.baseline.clone();
                x.diff = cmp.diff;
                x.diff_ci = cmp.diff_ci;
                x.p_value = cmp.p_value;
                x.p_adjusted = cmp.p_holm;
                x.correction = "holm".into();
            }
            rows.push(x);
        }
    }
    crate::results::write_csv(&out.join("results.csv"), &rows)?;
    crate::results::write_parquet(&out.join("results.parquet"), &rows)?;
    crate::eval::compare::write_parquet(&out.join("comparisons.parquet"), &comparisons)?;
    let notes: Vec<String> = missing.iter().map(|m| format!("cell `{m}` has no result (failed or not run yet; see failed/ and grid.log)")).collect();
    let config = grid.path.display().to_string();
    let summary = format!("{}.", staged.summary());
    let report =
        crate::report::GridReport { title: "encore grid report", config: &config, data: &summary, rows: &rows, notes: &notes, comparisons: &comparisons };
    let md = crate::report::grid_markdown(&report);
    crate::io::write_atomic(&out.join("report.md"), |w| std::io::Write::write_all(w, md.as_bytes()))?;
    let html = crate::report::html(&report);
    crate::io::write_atomic(&out.join("report.html"), |w| std::io::Write::write_all(w, html.as_bytes()))?;
    Ok((rows, missing))
}
