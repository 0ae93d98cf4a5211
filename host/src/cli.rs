//! The `encore` command line. Subcommands follow the pipeline.
use crate::eval::{self, bootstrap::Bootstrap, MetricSuite};
use crate::plugins::{self, discover, PluginKind, Runtime, SandboxConfig};
use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// encore: multimodal, LLM-based session recommendation of music, with sandboxed Wasm plugins.
#[derive(Debug, Parser)]
#[command(name = "encore", version, about)]
pub struct Cli {
    /// More log output (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Where plugins come from and how they are confined.
#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// A directory of `.wasm` plugins, searched first (repeatable). Then $ENCORE_PLUGIN_PATH, then
    /// the directory `cargo plugins` builds into.
    #[arg(long = "plugins", value_name = "DIR", global = true)]
    pub plugin_dirs: Vec<PathBuf>,
    /// Memory cap per plugin instance, in MiB (at most the machine's memory).
    #[arg(long, global = true, default_value_t = SandboxConfig::default().memory_mib, value_parser = parse_memory_mib)]
    pub memory_mib: u64,
    /// Fuel per plugin call (about one unit per Wasm instruction).
    #[arg(long, global = true, default_value_t = SandboxConfig::default().fuel)]
    pub fuel: u64,
    /// Let plugins read this environment variable (repeatable). Nothing is granted by default.
    #[arg(long = "grant-env", value_name = "NAME", global = true)]
    pub grant_env: Vec<String>,
    /// Let plugins read the wall and monotonic clocks.
    #[arg(long, global = true)]
    pub grant_clock: bool,
    /// Compile plugins every time instead of using the on-disk cache.
    #[arg(long, global = true)]
    pub no_cache: bool,
    /// A model folder for the `host-models` imports, as NAME=PATH (repeatable); names not given
    /// here resolve from $ENCORE_MODEL_<NAME>.
    #[arg(long = "model-dir", value_name = "NAME=PATH", global = true, value_parser = crate::hostmodels::parse_model_flag)]
    pub models: Vec<(String, PathBuf)>,
}

/// `--memory-mib`: a count of MiB whose byte count fits in 64 bits and in this machine's memory
/// (clap's error names the flag).
fn parse_memory_mib(s: &str) -> Result<u64, String> {
    let mib = s.parse::<u64>().map_err(|e| e.to_string())?;
    plugins::runtime::memory_cap_bytes(mib)?;
    Ok(mib)
}

impl SandboxArgs {
    fn runtime(&self) -> anyhow::Result<Runtime> {
        self.runtime_over(&SandboxConfig::default())
    }
    /// The runtime for a config whose `[sandbox]` is `base`: a flag set to other than its default
    /// wins over the config, and granted capabilities add up.
    fn runtime_over(&self, base: &SandboxConfig) -> anyhow::Result<Runtime> {
        let default = SandboxConfig::default();
        let pick = |flag: u64, dflt: u64, cfg: u64| if flag != dflt { flag } else { cfg };
        let mut env = base.grants.env.clone();
        env.extend(self.grant_env.iter().filter(|e| !base.grants.env.contains(e)).cloned());
        let grants = plugins::Grants { env, clock: self.grant_clock || base.grants.clock };
        let cfg =
            SandboxConfig { memory_mib: pick(self.memory_mib, default.memory_mib, base.memory_mib), fuel: pick(self.fuel, default.fuel, base.fuel), grants };
        let models = self.models.iter().fold(crate::hostmodels::ModelRegistry::new(), |r, (name, path)| r.with(name, path));
        Ok(Runtime::new(cfg, if self.no_cache { None } else { plugins::runtime::default_cache_dir() })?.with_models(models))
    }
    fn dirs(&self) -> Vec<PathBuf> {
        discover::search_path(&self.plugin_dirs)
    }
    /// The flags as given, for a child process (a grid cell) to get the same sandbox.
    fn to_flags(&self) -> Vec<String> {
        let mut f = Vec::new();
        for d in &self.plugin_dirs {
            f.push("--plugins".into());
            f.push(absolute(d).display().to_string());
        }
        let default = SandboxConfig::default();
        if self.memory_mib != default.memory_mib {
            f.push(format!("--memory-mib={}", self.memory_mib));
        }
        if self.fuel != default.fuel {
            f.push(format!("--fuel={}", self.fuel));
        }
        for e in &self.grant_env {
            f.push(format!("--grant-env={e}"));
        }
        if self.grant_clock {
            f.push("--grant-clock".into());
        }
        if self.no_cache {
            f.push("--no-cache".into());
        }
        for (name, path) in &self.models {
            f.push(format!("--model-dir={name}={}", absolute(path).display()));
        }
        f
    }
}

/// `p` made absolute against the current directory (for scripts that run elsewhere).
fn absolute(p: &std::path::Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// The pipeline's steps.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The pipeline end to end: prepare data, train encoders, evaluate them and a baseline.
    Run(RunArgs),
    /// A grid of runs (LLM × encoder × modalities × fusion × completion × protocol × seed): shared
    /// stages computed once, kill-safe cells, `--jobs N` on one machine or a Slurm job array.
    Grid(GridArgs),
    /// Ingest, sessionize, split, inspect and synthesize listening logs.
    #[command(subcommand)]
    Data(crate::data::command::DataCommand),
    /// Evaluate rankings with metric plugins.
    Eval(EvalArgs),
    /// Extract item features with extractor plugins; measure their label purity.
    #[command(subcommand)]
    Features(crate::features::command::FeaturesCommand),
    /// List, check and create plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Train an ID encoder (SASRec, BERT4Rec, GRU4Rec) and evaluate it by full ranking.
    Train(TrainArgs),
    /// MGPHot gene ratings by an LLM, and their validation.
    #[command(subcommand)]
    Annotate(crate::annotate::AnnotateCommand),
}

/// `encore train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The run's TOML config: `[data]`, `[encoder]`, `[train]`, `[eval]`.
    pub config: PathBuf,
    /// Output directory: checkpoints, best weights, item embeddings, metrics.
    #[arg(long, default_value = "runs/encoder")]
    pub out: PathBuf,
    /// Continue from the last complete checkpoint in the output directory.
    #[arg(long)]
    pub resume: bool,
    /// `cpu`, or `cuda:N` (needs the `cuda` feature).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Metric plugins for the test report, by name or path.
    #[arg(long, value_delimiter = ',', default_values_t = ["recall", "ndcg", "mrr"].map(String::from))]
    pub metrics: Vec<String>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// `encore grid`.
#[derive(Debug, Args)]
pub struct GridArgs {
    /// The grid config: a run config whose `[[encoder]]`/`[[llm]]` are named templates, plus
    /// `[grid]` axes (docs/grid.md).
    pub config: PathBuf,
    /// Output directory, shared by every cell: data/, stages/, cells/, results, report.
    #[arg(long, default_value = "runs/grid")]
    pub out: PathBuf,
    /// List the cells and which of their stages are done; run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Cells run at once on this machine (each in its own process).
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Run only cell I (0-based, as `--dry-run` lists them), e.g. one Slurm array task.
    #[arg(long, value_name = "I")]
    pub cell: Option<usize>,
    /// Gather the finished cells into results.csv, results.parquet and the report; run nothing.
    #[arg(long)]
    pub collect: bool,
    /// Write OUT/grid.sbatch, a Slurm job array with one task per cell, and say how to submit it.
    #[arg(long)]
    pub slurm: bool,
    /// `cpu`, or `cuda:N` (needs the `cuda` feature).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

/// `encore run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The run config: `[data]`, `[[encoder]]`, `[train]`, `[eval]`, `[report]`, `[sandbox]`.
    #[arg(default_value = "configs/default.toml")]
    pub config: PathBuf,
    /// Output directory: the prepared data, each encoder's run, results.parquet.
    #[arg(long, default_value = "runs/default")]
    pub out: PathBuf,
    /// `cpu`, or `cuda:N` (needs the `cuda` feature).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

/// `encore eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Precomputed rankings (Parquet: user, ranked, targets).
    #[arg(long, required_unless_present = "zero_shot", conflicts_with = "zero_shot")]
    pub rankings: Option<PathBuf>,
    /// Honest zero-shot ranking instead: an LLM (HF folder, llama .gguf, or `smollm2`) ranks each
    /// test case's candidates by the likelihood of their "Artist – Title" after the session's.
    #[arg(long, value_name = "MODEL", requires = "data")]
    pub zero_shot: Option<PathBuf>,
    /// With --zero-shot: the prepared data directory (`encore data prepare`) whose test cases are ranked.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// With --zero-shot: test cases scored (a seeded subset; 0: all).
    #[arg(long, default_value_t = 200)]
    pub cases: usize,
    /// With --zero-shot: sampled negatives per case (the target ranks among negatives + 1).
    #[arg(long, default_value_t = 99)]
    pub negatives: usize,
    /// With --zero-shot: the most recent tracks the prompt names.
    #[arg(long, default_value_t = 10)]
    pub max_items: usize,
    /// `cpu`, or `cuda:N` (needs the `cuda` feature).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Metric plugins, by name or path.
    #[arg(long, value_delimiter = ',', default_values_t = eval::DEFAULT_METRICS.map(String::from))]
    pub metrics: Vec<String>,
    /// Cutoffs.
    #[arg(long = "k", value_delimiter = ',', default_values_t = eval::DEFAULT_KS)]
    pub ks: Vec<u32>,
    /// Catalog size, when the file's metadata does not say.
    #[arg(long)]
    pub n_items: Option<u32>,
    /// Bootstrap resamples for confidence intervals (0 turns them off).
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Write the results here (Parquet), atomically.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Users per batch sent to the plugins.
    #[arg(long, default_value_t = 1024)]
    pub batch: usize,
}

/// `encore plugin ...`.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Show every plugin found: name, kind, version, API version, file.
    List,
    /// Load a plugin, check its API version, and exercise it once.
    Check {
        /// The `.wasm` file.
        file: PathBuf,
    },
    /// Create a plugin crate that builds and passes its own test.
    New {
        /// Which kind of plugin.
        #[arg(long, value_enum)]
        kind: KindArg,
        /// Its name (lowercase, digits and -).
        name: String,
        /// Where to create it.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The encore-sdk crate to depend on.
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

/// A plugin kind on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
#[allow(missing_docs)]
pub enum KindArg {
    Metric,
    Fusion,
    Extractor,
}

impl From<KindArg> for PluginKind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::Metric => PluginKind::Metric,
            KindArg::Fusion => PluginKind::Fusion,
            KindArg::Extractor => PluginKind::Extractor,
        }
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Data(cmd) => crate::data::command::run(cmd),
        Command::Eval(args) => eval_rankings(&cli.sandbox, args),
        Command::Features(cmd) => crate::features::command::run(&cli.sandbox.runtime()?, &cli.sandbox.dirs(), cmd).context("encore features"),
        Command::Plugin(cmd) => plugin(&cli.sandbox, cmd),
        Command::Train(args) => train_encoder(&cli.sandbox, args),
        Command::Run(args) => run_pipeline(&cli.sandbox, args),
        Command::Grid(args) => run_grid(&cli.sandbox, args),
        Command::Annotate(cmd) => crate::annotate::run(cmd),
    }
}

/// Parses `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(s: &str) -> anyhow::Result<candle_core::Device> {
    match s {
        "cpu" => Ok(candle_core::Device::Cpu),
        _ => {
            let n = match s.strip_prefix("cuda") {
                Some("") => 0,
                Some(r) => r.strip_prefix(':').and_then(|n| n.parse::<usize>().ok()).with_context(|| format!("--device {s:?}: expected cpu or cuda:N"))?,
                None => bail!("--device {s:?}: expected cpu or cuda:N"),
            };
            candle_core::Device::new_cuda(n).with_context(|| format!("opening {s} (is encore built with `--features cuda`?)"))
        }
    }
}

fn train_encoder(sandbox: &SandboxArgs, args: TrainArgs) -> anyhow::Result<()> {
    use crate::train::{self, TrainConfig, TrainOptions};
    let text = std::fs::read_to_string(&args.config).with_context(|| format!("reading {}", args.config.display()))?;
    let cfg = TrainConfig::from_toml(&text).with_context(|| format!("in {}", args.config.display()))?;
    let mut source = cfg.data.clone().with_context(|| format!("{} has no [data] section", args.config.display()))?;
    // Paths in a config are relative to the config's directory.
    let base = args.config.parent().unwrap_or(std::path::Path::new("."));
    for p in [&mut source.sequences, &mut source.prepared].into_iter().flatten() {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    }
    let data = match (&source.prepared, &source.sequences) {
        (Some(dir), None) => {
            let p = crate::data::schema::read_splits(dir).with_context(|| format!("reading the prepared data in {}", dir.display()))?;
            train::SequenceData { digest: p.digest, ..train::SequenceData::from_splits(p.n_items, &p.splits) }
        }
        (None, Some(_)) => train::read_sequences_txt(&source)?,
        _ => bail!("{}: [data] takes exactly one of `prepared` (a directory from `encore data prepare`) or `sequences`", args.config.display()),
    };
    data.validate()?;
    let device = parse_device(&args.device)?;
    // Load the metric plugins first: a missing plugin should fail before hours of training.
    let runtime = sandbox.runtime()?;
    let dirs = sandbox.dirs();
    let plugins = args.metrics.iter().map(|m| discover::find(&runtime, &dirs, m, PluginKind::Metric)).collect::<anyhow::Result<Vec<_>>>()?;
    eprintln!(
        "{}: {} items, {} training sequences, {} validation and {} test users",
        cfg.encoder.name(),
        data.n_items,
        data.train.len(),
        data.valid.len(),
        data.test.len()
    );
    let fusion = match &cfg.fusion {
        Some(f) => {
            let prepared = source.prepared.as_ref().with_context(|| {
                format!("{}: [fusion] needs [data] prepared (a directory from `encore data prepare`), whose catalog the features match", args.config.display())
            })?;
            let features = f.features.as_ref().map(|p| base.join(p)).unwrap_or_else(|| prepared.join("features"));
            let catalog = train::fusion::catalog(prepared)?;
            let spec = train::fusion::prepare(f, &features, &catalog, cfg.encoder.item_dim(), &runtime, &dirs, &device)
                .with_context(|| format!("in {}", args.config.display()))?;
            eprintln!(
                "fusion: `{}` over {} ({} plan nodes)",
                f.plugin,
                if f.id {
                    std::iter::once("id").chain(f.modalities.iter().map(String::as_str)).collect::<Vec<_>>().join(", ")
                } else {
                    f.modalities.join(", ")
                },
                spec.plan.nodes.len()
            );
            Some(spec)
        }
        None => None,
    };
    // One run per output directory: a second one fails before it writes anything, instead of
    // mixing checkpoints. Taken after every check, so a bad config leaves nothing behind.
    let _lock = crate::artifact::DirLock::exclusive(&args.out, "encore train")?;
    let opts = TrainOptions { out_dir: Some(args.out.clone()), resume: args.resume, progress: !args.quiet, fusion };
    let trained = train::train(&cfg, &data, &device, &opts)?;
    if trained.resumed_from > 0 {
        eprintln!("resumed after epoch {}", trained.resumed_from);
    }
    if let Some((v, e)) = trained.best {
        eprintln!("best validation {} {v:.4} at epoch {e} of {}", cfg.train.valid_metric, trained.epochs);
    }
    let mut suite = MetricSuite::new(&plugins, &cfg.eval.ks, data.n_items as u32)?;
    let test_started = std::time::Instant::now();
    train::scoring::evaluate(trained.model.as_ref(), &data.test, &cfg.eval, &mut suite, &device)?;
    let test_seconds = test_started.elapsed().as_secs_f64();
    let report = suite.finish(None)?;
    println!(
        "{} on the test users ({}):",
        cfg.encoder.name(),
        if cfg.eval.sampled_negatives > 0 { format!("1 positive + {} sampled negatives", cfg.eval.sampled_negatives) } else { "full ranking".into() }
    );
    print!("{}", report.table());
    report.write_parquet(&args.out.join("test_metrics.parquet"))?;
    train::export::item_embeddings(trained.model.as_ref(), &args.out.join("item_embeddings"))?;
    let mut summary = toml::Table::new();
    summary.insert("encoder".into(), cfg.encoder.name().into());
    summary.insert("epochs".into(), (trained.epochs as i64).into());
    if let Some((v, e)) = trained.best {
        summary.insert("best_valid".into(), v.into());
        summary.insert("best_epoch".into(), (e as i64).into());
    }
    let mut test = toml::Table::new();
    for r in &report.results {
        test.insert(format!("{}@{}", r.metric, r.k), r.value.into());
    }
    summary.insert("test".into(), test.into());
    let floats = |v: &[f64]| toml::Value::Array(v.iter().map(|&x| x.into()).collect());
    summary.insert("valid_history".into(), floats(&trained.valid_history));
    let text = toml::to_string(&summary)?;
    crate::io::write_atomic(&args.out.join("summary.toml"), |w| std::io::Write::write_all(w, text.as_bytes()))?;
    // Wall times of this process (bench/encoders/run.sh reads them), apart from the summary so
    // that the summary stays identical across reruns: seconds per training epoch, per
    // validation, and for the test evaluation through the metric plugins.
    let mut timings = toml::Table::new();
    timings.insert("epoch_seconds".into(), floats(&trained.epoch_seconds));
    timings.insert("valid_seconds".into(), floats(&trained.valid_seconds));
    timings.insert("test_eval_seconds".into(), test_seconds.into());
    timings.insert("test_users".into(), (data.test.len() as i64).into());
    let text = toml::to_string(&timings)?;
    crate::io::write_atomic(&args.out.join("timings.toml"), |w| std::io::Write::write_all(w, text.as_bytes()))?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

fn run_pipeline(sandbox: &SandboxArgs, args: RunArgs) -> anyhow::Result<()> {
    let cfg = crate::run::RunConfig::load(&args.config)?;
    let device = parse_device(&args.device)?;
    let runtime = sandbox.runtime_over(&cfg.sandbox)?;
    let reports = crate::run::run(&cfg, &args.config, &args.out, &runtime, &sandbox.dirs(), &device, !args.quiet)?;
    let what = if cfg.eval.sampled_negatives > 0 {
        format!("1 positive + {} sampled negatives", cfg.eval.sampled_negatives)
    } else {
        "full ranking over all items".to_string()
    };
    let n = reports.first().map_or(0, |r| r.1.n_users);
    println!("test: {n} cases, {what}; ± is half the 95% bootstrap interval over cases");
    print!("{}", crate::run::table(&reports));
    eprintln!("wrote {}", args.out.join("results.parquet").display());
    println!("report: {}", args.out.join("report.md").display());
    Ok(())
}

fn run_grid(sandbox: &SandboxArgs, args: GridArgs) -> anyhow::Result<()> {
    use crate::grid;
    let grid = grid::Grid::load(&args.config)?;
    let out = absolute(&args.out);
    if args.dry_run {
        print!("{}", grid::dry_run(&grid, &out));
        return Ok(());
    }
    if args.slurm {
        let exe = std::env::current_exe().context("finding the encore binary")?;
        let grid = grid::Grid { path: absolute(&grid.path), ..grid };
        let script = grid::sbatch(&grid, &out, &exe, &sandbox.to_flags());
        let path = out.join("grid.sbatch");
        crate::io::write_atomic(&path, |w| std::io::Write::write_all(w, script.as_bytes()))?;
        // Slurm opens each task's --output file before the task runs: its directory must exist.
        let logs = out.join("slurm");
        std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
        println!("wrote {} ({} array tasks, one per cell)", path.display(), grid.cells.len());
        println!("submit:  sbatch {}", path.display());
        println!("then:    {} grid {} --out {} --collect", exe.display(), grid.path.display(), out.display());
        return Ok(());
    }
    let device = parse_device(&args.device)?;
    let runtime = sandbox.runtime_over(&grid.base.sandbox)?;
    let dirs = sandbox.dirs();
    let env = grid::Env { runtime: &runtime, dirs: &dirs, device: &device, progress: !args.quiet };
    if let Some(i) = args.cell {
        let cell = grid.cell(i)?;
        if !grid::run_or_record(&grid, cell, &out, &env)? {
            bail!("cell {i} ({}) failed: {}", cell.id, out.join("failed").join(format!("{}.txt", cell.id)).display());
        }
        return Ok(());
    }
    if !args.collect {
        if args.jobs <= 1 {
            for cell in &grid.cells {
                grid::run_or_record(&grid, cell, &out, &env)?;
            }
        } else {
            run_cells_in_processes(&grid, &out, &args, sandbox)?;
        }
    }
    let (rows, missing) = grid::collect(&grid, &out, &env)?;
    let n_cells = grid.cells.len() - missing.len();
    println!("{n_cells} of {} cells finished; {} result rows", grid.cells.len(), rows.len());
    println!("wrote {}, {} and {}", out.join("results.csv").display(), out.join("results.parquet").display(), out.join("report.html").display());
    println!("report: {}", out.join("report.md").display());
    if !missing.is_empty() {
        bail!(
            "{} cells have no result ({}): see {} and {}; rerun to retry them",
            missing.len(),
            missing.join(", "),
            out.join("failed").display(),
            out.join("grid.log").display()
        );
    }
    Ok(())
}

/// `--jobs N`: every cell in a child `encore grid --cell I`, N at a time, each logging into
/// OUT/logs/<cell>.log. A child that dies without recording its failure is recorded here.
fn run_cells_in_processes(grid: &crate::grid::Grid, out: &std::path::Path, args: &GridArgs, sandbox: &SandboxArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding the encore binary")?;
    let logs = out.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let mut pending: std::collections::VecDeque<&crate::grid::Cell> = grid.cells.iter().filter(|c| crate::grid::finished(out, c).is_none()).collect();
    let mut running: Vec<(&crate::grid::Cell, std::process::Child)> = Vec::new();
    while !pending.is_empty() || !running.is_empty() {
        while running.len() < args.jobs {
            let Some(cell) = pending.pop_front() else { break };
            let log = std::fs::File::create(logs.join(format!("{}.log", cell.id))).with_context(|| format!("creating a log in {}", logs.display()))?;
            let child = std::process::Command::new(&exe)
                .arg("grid")
                .arg(absolute(&grid.path))
                .arg("--out")
                .arg(out)
                .arg("--cell")
                .arg(cell.index.to_string())
                .arg("--quiet")
                .arg("--device")
                .arg(&args.device)
                .args(sandbox.to_flags())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {}", exe.display()))?;
            running.push((cell, child));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        let mut still = Vec::new();
        for (cell, mut child) in running {
            match child.try_wait()? {
                Some(status) => {
                    eprintln!("grid: cell {} {}: {}", cell.index, cell.id, if status.success() { "done".to_string() } else { format!("failed ({status})") });
                    let failed = out.join("failed").join(format!("{}.txt", cell.id));
                    if !status.success() && !failed.exists() {
                        let text = format!(
                            "cell {} ({})\nthe process exited with {status}; its log: {}\n",
                            cell.index,
                            cell.id,
                            logs.join(format!("{}.log", cell.id)).display()
                        );
                        crate::io::write_atomic(&failed, |w| std::io::Write::write_all(w, text.as_bytes()))?;
                    }
                }
                None => still.push((cell, child)),
            }
        }
        running = still;
    }
    Ok(())
}

fn eval_rankings(sandbox: &SandboxArgs, args: EvalArgs) -> anyhow::Result<()> {
    if args.ks.is_empty() || args.ks.contains(&0) {
        bail!("--k takes positive cutoffs, e.g. --k 5,10,20");
    }
    let Some(rankings) = &args.rankings else { return eval_zero_shot(sandbox, &args) };
    let file = eval::rankings::read(rankings, args.n_items)?;
    let runtime = sandbox.runtime()?;
    let dirs = sandbox.dirs();
    let plugins = args.metrics.iter().map(|m| discover::find(&runtime, &dirs, m, PluginKind::Metric)).collect::<anyhow::Result<Vec<_>>>()?;
    let mut suite = MetricSuite::new(&plugins, &args.ks, file.n_items)?;
    for chunk in file.rankings.chunks(args.batch.max(1)) {
        suite.add(chunk)?;
    }
    let bootstrap = (args.bootstrap > 0).then(|| Bootstrap { resamples: args.bootstrap, seed: args.seed, ..Bootstrap::default() });
    let report = suite.finish(bootstrap)?;
    if file.skipped_no_targets > 0 {
        eprintln!("note: {} users without targets were skipped", file.skipped_no_targets);
    }
    print!("{}", report.table());
    if let Some(out) = &args.out {
        report.write_parquet(out)?;
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}

/// `encore eval --zero-shot MODEL --data DIR`: the LLM ranks a seeded subset of the test cases,
/// each target among sampled negatives, next to MostPop and a random ranking on the same candidates.
fn eval_zero_shot(sandbox: &SandboxArgs, args: &EvalArgs) -> anyhow::Result<()> {
    let (model, dir) = (args.zero_shot.as_ref().context("--zero-shot")?, args.data.as_ref().context("--data")?);
    if args.negatives == 0 || args.max_items == 0 || args.ks.is_empty() || args.ks.contains(&0) {
        bail!("--negatives, --max-items and every --k must be at least 1");
    }
    let device = parse_device(&args.device)?;
    let runtime = sandbox.runtime()?;
    let dirs = sandbox.dirs();
    let plugins = args.metrics.iter().map(|m| discover::find(&runtime, &dirs, m, PluginKind::Metric)).collect::<anyhow::Result<Vec<_>>>()?;
    let prepared = crate::data::command::load_prepared(dir)?;
    let data = crate::train::SequenceData::from_splits(prepared.dataset.items.len(), &prepared.splits);
    let cases = crate::train::scoring::subset(&data.test, args.cases, args.seed);
    if cases.is_empty() {
        bail!("{} has no test cases", dir.display());
    }
    let texts = crate::pipeline::item_texts(&prepared.dataset);
    let params = crate::train::EvalParams { ks: args.ks.clone(), sampled_negatives: args.negatives, ..crate::train::EvalParams::default() };
    let bootstrap = (args.bootstrap > 0).then(|| Bootstrap { resamples: args.bootstrap, seed: args.seed, ..Bootstrap::default() });
    let label = |name: &str| format!("{name} (zs {}, 1+{})", cases.len(), args.negatives);
    let mut reports = crate::pipeline::sampled_baselines(&plugins, &cases, &params, &crate::pipeline::play_counts(&data), args.seed, bootstrap, &label)?;
    let (name, report, _) = crate::pipeline::zero_shot(&plugins, model, &texts, args.max_items, &cases, &params, &device, bootstrap, true)?;
    reports.push((label(&name), report));
    print!("{}", crate::run::table(&reports));
    if let Some(out) = &args.out {
        crate::run::write_results(out, &reports)?;
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}

fn plugin(sandbox: &SandboxArgs, cmd: PluginCommand) -> anyhow::Result<()> {
    match cmd {
        PluginCommand::List => {
            let runtime = sandbox.runtime()?;
            let dirs = sandbox.dirs();
            if dirs.is_empty() {
                bail!("no plugin directory: pass --plugins DIR or set ENCORE_PLUGIN_PATH");
            }
            let mut rows = vec![["NAME", "KIND", "VERSION", "API", "FILE"].map(String::from).to_vec()];
            let mut failed = 0;
            for (file, loaded) in discover::load_all(&runtime, &dirs) {
                match loaded {
                    Ok(p) => {
                        let i = p.info();
                        rows.push(vec![i.name.clone(), i.kind.to_string(), i.version.clone(), i.api.clone(), file.display().to_string()]);
                    }
                    Err(e) => {
                        failed += 1;
                        rows.push(vec!["-".into(), "error".into(), "-".into(), "-".into(), format!("{}: {e}", file.display())]);
                    }
                }
            }
            print!("{}", crate::io::text_table(&rows));
            if failed > 0 {
                eprintln!("{failed} file(s) could not be loaded as plugins");
            }
            Ok(())
        }
        PluginCommand::Check { file } => {
            let runtime = sandbox.runtime()?;
            let p = runtime.load(&file)?;
            let summary = crate::plugins::check::exercise(&p)?;
            let i = p.info();
            println!("ok: {} {} ({} plugin, encore:plugin@{}) — {}", i.name, i.version, i.kind, i.api, i.description);
            println!("{summary}");
            Ok(())
        }
        PluginCommand::New { kind, name, dir, sdk } => {
            let sdk = sdk.unwrap_or_else(plugins::scaffold::default_sdk_path);
            let root = plugins::scaffold::new_plugin(kind.into(), &name, &dir, &sdk)?;
            println!("created {}", root.display());
            println!("test it:  (cd {} && cargo test)", root.display());
            println!("build it: (cd {} && cargo build --release --target wasm32-wasip2)", root.display());
            Ok::<(), anyhow::Error>(())
        }
    }
    .context("encore plugin")
}
