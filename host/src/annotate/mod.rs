//! `encore annotate`: MGPHot gene ratings written by an LLM, and their validation.
//!
//! `encore annotate mgphot` takes the most-played tracks of a prepared dataset and asks a model
//! for all 58 gene ratings (0–5) as JSON ([`prompt`]), through an OpenAI-compatible HTTP server
//! ([`openai`]) or a GGUF model run by the host ([`local`]). Answers are checked against a strict
//! schema, retried when malformed, and otherwise recorded as failures with the reason — never
//! filled in. Finished tracks go to a cache ([`cache`]) as they come, so runs resume; the
//! annotation file ([`store`]) is written atomically at the end. `encore annotate validate`
//! ([`validate`]) reports Spearman ρ and MAE per gene and group against a reference.
pub mod cache;
pub mod local;
pub mod openai;
pub mod prompt;
pub mod store;
pub mod validate;

use crate::features::mgphot::N_GENES;
use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use prompt::TrackText;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why a track has no ratings.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// The model answered, but never within the schema (cached: a rerun does not ask again).
    Schema(String),
    /// The server could not be reached or kept failing (not cached: a rerun asks again).
    Transport(String),
    /// Every further request would fail too (bad URL, model or key): the run stops.
    Fatal(String),
}

/// What a backend made of one track.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The ratings, or why there are none.
    pub result: Result<[u8; N_GENES], Failure>,
    /// Answers asked.
    pub attempts: u32,
}

/// A model that rates tracks.
pub trait Backend: Sync {
    /// The model's name in the cache key and the output (includes what changes its answers).
    fn model(&self) -> String;
    /// Rates one track.
    fn annotate(&self, track: &TrackText) -> Outcome;
}

/// `encore annotate ...`.
#[derive(Debug, Subcommand)]
pub enum AnnotateCommand {
    /// Ask an LLM for the 58 MGPHot gene ratings of the most-played tracks.
    Mgphot(MgphotArgs),
    /// Spearman ρ and MAE per gene and group of annotations against a reference.
    Validate(ValidateArgs),
}

/// Which model answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// An OpenAI-compatible server (`--base-url`, `--model`).
    Openai,
    /// A GGUF model run by the host (`--gguf`).
    Local,
}

/// `encore annotate mgphot`.
#[derive(Debug, Args)]
pub struct MgphotArgs {
    /// A directory from `encore data prepare` (its items.parquet).
    #[arg(long)]
    pub data: PathBuf,
    /// The `tracks.tsv` side-car with tags and lyrics (as `encore data synth` writes it).
    #[arg(long)]
    pub tracks: Option<PathBuf>,
    /// Annotate the N most-played tracks.
    #[arg(long, default_value_t = 1000)]
    pub top: usize,
    /// The annotation file to write (Parquet).
    #[arg(long)]
    pub out: PathBuf,
    /// The answer cache (JSON lines; default: OUT with `.cache.jsonl` appended).
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Which model answers.
    #[arg(long, value_enum)]
    pub backend: BackendKind,
    /// OpenAI-compatible base URL, up to `/v1`.
    #[arg(long, default_value = "http://127.0.0.1:8000/v1")]
    pub base_url: String,
    /// Model name sent to the server.
    #[arg(long)]
    pub model: Option<String>,
    /// Environment variable holding the API key (sent as a bearer token when set).
    #[arg(long, default_value = "OPENAI_API_KEY")]
    pub api_key_env: String,
    /// Timeout of one HTTP request, in seconds.
    #[arg(long, default_value_t = 120.0)]
    pub timeout_s: f64,
    /// Requests in flight (threads). The local backend runs one track at a time.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Answers asked per track before it is recorded as failed (a malformed answer is sent back
    /// with the reason).
    #[arg(long, default_value_t = 3)]
    pub max_attempts: u32,
    /// Retries of one request after a timeout, a connection error, HTTP 408, 429 or 5xx.
    #[arg(long, default_value_t = 5)]
    pub max_retries: u32,
    /// First backoff delay in milliseconds (doubled per retry, with jitter).
    #[arg(long, default_value_t = 1000)]
    pub backoff_ms: u64,
    /// Longest backoff delay in milliseconds.
    #[arg(long, default_value_t = 60_000)]
    pub max_backoff_ms: u64,
    /// Ask the server for `response_format: json_object`.
    #[arg(long)]
    pub json_mode: bool,
    /// The GGUF model file (local backend).
    #[arg(long)]
    pub gguf: Option<PathBuf>,
    /// Local decoding: the host writes the JSON and the model picks digits, or free text.
    #[arg(long, value_enum, default_value_t = local::Decode::Constrained)]
    pub decode: local::Decode,
    /// Keep the GGUF weights quantized (less memory; slow on CPU unless encore is built with
    /// `-C target-cpu=native`). By default they are expanded to f32 at load.
    #[arg(long)]
    pub keep_quantized: bool,
    /// Sampling temperature (0: greedy).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Seed of the sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Longest answer in tokens.
    #[arg(long, default_value_t = 800)]
    pub max_tokens: u32,
    /// Lyrics excerpt length in characters.
    #[arg(long, default_value_t = 600)]
    pub lyrics_chars: usize,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// `encore annotate validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The annotation file (Parquet from `encore annotate mgphot`, or a tracks.tsv with `mgphot`).
    pub annotations: PathBuf,
    /// The reference: a tracks.tsv with an `mgphot` column (e.g. the synth's true genes), or
    /// another annotation file.
    #[arg(long)]
    pub reference: PathBuf,
    /// Where to write the report (`.tsv`, else Parquet); default ANNOTATIONS with
    /// `.validation.tsv` appended.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Runs `encore annotate ...`.
pub fn run(cmd: AnnotateCommand) -> anyhow::Result<()> {
    match cmd {
        AnnotateCommand::Mgphot(a) => mgphot(a).context("encore annotate mgphot"),
        AnnotateCommand::Validate(a) => validate_cmd(a).context("encore annotate validate"),
    }
}

/// SHA-256 of a file, hex.
pub fn file_sha256(path: &Path) -> anyhow::Result<String> {
    use sha2::Digest;
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut f, &mut buf).with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn mgphot(a: MgphotArgs) -> anyhow::Result<()> {
    if a.top == 0 {
        bail!("--top must be at least 1");
    }
    let tracks = store::select_tracks(&a.data, a.tracks.as_deref(), a.top)?;
    let backend: Box<dyn Backend> = match a.backend {
        BackendKind::Openai => {
            let model = a.model.clone().context("--backend openai needs --model NAME")?;
            if !(a.base_url.starts_with("http://") || a.base_url.starts_with("https://")) {
                bail!("--base-url {:?}: expected http://HOST:PORT/v1", a.base_url);
            }
            if a.base_url.starts_with("https://") && !cfg!(feature = "https") {
                bail!("--base-url {:?}: https needs encore built with `--features https`", a.base_url);
            }
            Box::new(openai::OpenAi::new(openai::OpenAiConfig {
                base_url: a.base_url.clone(),
                model,
                api_key: std::env::var(&a.api_key_env).ok().filter(|k| !k.is_empty()),
                timeout: Duration::from_secs_f64(a.timeout_s.max(0.001)),
                max_attempts: a.max_attempts,
                max_retries: a.max_retries,
                backoff: Duration::from_millis(a.backoff_ms),
                max_backoff: Duration::from_millis(a.max_backoff_ms),
                temperature: a.temperature,
                seed: a.seed,
                json_mode: a.json_mode,
                max_tokens: a.max_tokens,
                lyrics_chars: a.lyrics_chars,
            }))
        }
        BackendKind::Local => {
            let path = a.gguf.as_ref().context("--backend local needs --gguf FILE")?;
            let cfg = local::LocalConfig {
                decode: a.decode,
                temperature: a.temperature,
                seed: a.seed,
                max_attempts: a.max_attempts,
                max_tokens: a.max_tokens as usize,
                lyrics_chars: a.lyrics_chars,
                dequantize: !a.keep_quantized,
            };
            Box::new(local::Local::load(path, cfg)?)
        }
    };
    let cache_path = a.cache.clone().unwrap_or_else(|| with_suffix(&a.out, ".cache.jsonl"));
    let cache = cache::Cache::open(&cache_path)?;
    if cache.skipped_lines > 0 {
        eprintln!("note: {} unreadable line(s) in {} were skipped (a run killed mid-write)", cache.skipped_lines, cache_path.display());
    }
    let concurrency = if a.backend == BackendKind::Local { 1 } else { a.concurrency.max(1) };
    let summary = annotate(backend.as_ref(), &tracks, &cache, concurrency, !a.quiet)?;
    store::write_annotations(&a.out, &summary.rows)?;
    let failed: Vec<&store::Annotation> = summary.rows.iter().filter(|r| r.ratings.is_err()).collect();
    eprintln!(
        "{} tracks: {} ok, {} failed; {} asked now in {:.1} s ({:.3} tracks/s), {} from the cache; model {}",
        summary.rows.len(),
        summary.rows.len() - failed.len(),
        failed.len(),
        summary.asked,
        summary.seconds,
        summary.asked as f64 / summary.seconds.max(1e-9),
        summary.rows.len() - summary.asked,
        backend.model()
    );
    for f in failed.iter().take(5) {
        eprintln!("  failed: {} ({} – {}): {}", f.track_id, f.artist, f.title, f.ratings.as_ref().err().map_or("", |e| e.as_str()));
    }
    eprintln!("wrote {} (cache {})", a.out.display(), cache_path.display());
    Ok(())
}

/// What [`annotate`] did.
pub struct Summary {
    /// One row per track, in the order given.
    pub rows: Vec<store::Annotation>,
    /// Tracks sent to the model in this run.
    pub asked: usize,
    /// Wall time of the asking.
    pub seconds: f64,
}

/// Rates `tracks` with `backend`, taking what `cache` already holds and appending every new
/// result to it, with `concurrency` threads. Stops at the first fatal failure (after the tracks
/// in flight finish, so their answers are cached).
pub fn annotate(backend: &dyn Backend, tracks: &[TrackText], cache: &cache::Cache, concurrency: usize, progress: bool) -> anyhow::Result<Summary> {
    let model = backend.model();
    let version = prompt::PROMPT_VERSION;
    let todo: Vec<usize> = (0..tracks.len()).filter(|&i| cache.get(&tracks[i].track_id, &model, version).is_none()).collect();
    let bar = if progress { indicatif::ProgressBar::new(todo.len() as u64) } else { indicatif::ProgressBar::hidden() };
    bar.set_style(
        indicatif::ProgressStyle::with_template("annotating {bar:40} {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let fatal: Mutex<Option<String>> = Mutex::new(None);
    let fresh: Mutex<Vec<(usize, Outcome)>> = Mutex::new(Vec::new());
    let io_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..concurrency.min(todo.len().max(1)) {
            s.spawn(|| loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&i) = todo.get(k) else { return };
                let t = &tracks[i];
                let out = backend.annotate(t);
                let entry = match &out.result {
                    Ok(r) => Some(cache::Entry {
                        track_id: t.track_id.clone(),
                        model: model.clone(),
                        prompt_version: version.into(),
                        ratings: Some(r.to_vec()),
                        attempts: out.attempts,
                        error: None,
                    }),
                    Err(Failure::Schema(e)) => Some(cache::Entry {
                        track_id: t.track_id.clone(),
                        model: model.clone(),
                        prompt_version: version.into(),
                        ratings: None,
                        attempts: out.attempts,
                        error: Some(format!("invalid answer: {e}")),
                    }),
                    Err(Failure::Transport(e)) => {
                        tracing::warn!("track {}: {e}", t.track_id);
                        None
                    }
                    Err(Failure::Fatal(e)) => {
                        stop.store(true, Ordering::Relaxed);
                        fatal.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e.clone());
                        return;
                    }
                };
                if let Some(e) = entry {
                    if let Err(err) = cache.append(&e) {
                        stop.store(true, Ordering::Relaxed);
                        io_error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(err);
                        return;
                    }
                }
                fresh.lock().unwrap_or_else(|p| p.into_inner()).push((i, out));
                bar.inc(1);
            });
        }
    });
    bar.finish_and_clear();
    if let Some(e) = io_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    if let Some(e) = fatal.into_inner().unwrap_or_else(|p| p.into_inner()) {
        bail!("{e}; the answers received so far are in the cache, rerun to continue");
    }
    let seconds = start.elapsed().as_secs_f64();
    let mut fresh: std::collections::HashMap<usize, Outcome> = fresh.into_inner().unwrap_or_else(|p| p.into_inner()).into_iter().collect();
    let asked = fresh.len();
    let rows = tracks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let (ratings, attempts) = match fresh.remove(&i) {
                Some(o) => (
                    o.result.map_err(|f| match f {
                        Failure::Schema(e) => format!("invalid answer: {e}"),
                        Failure::Transport(e) => format!("transport: {e}"),
                        Failure::Fatal(e) => e,
                    }),
                    o.attempts,
                ),
                None => match cache.get(&t.track_id, &model, version) {
                    Some(e) => match &e.ratings {
                        Some(r) if r.len() == N_GENES && r.iter().all(|&v| v <= 5) => (Ok(std::array::from_fn(|g| r[g])), e.attempts),
                        Some(_) => (Err("cache entry with malformed ratings".to_string()), e.attempts),
                        None => (Err(e.error.clone().unwrap_or_default()), e.attempts),
                    },
                    None => (Err("not asked".to_string()), 0),
                },
            };
            store::Annotation {
                item: t.item,
                track_id: t.track_id.clone(),
                artist: t.artist.clone(),
                title: t.title.clone(),
                ratings,
                attempts,
                model: model.clone(),
                prompt_version: version.into(),
            }
        })
        .collect();
    Ok(Summary { rows, asked, seconds })
}

fn validate_cmd(a: ValidateArgs) -> anyhow::Result<()> {
    let annotated = store::read_genes(&a.annotations)?;
    let reference = store::read_genes(&a.reference)?;
    let rows = validate::compare(&annotated, &reference).with_context(|| format!("{} against {}", a.annotations.display(), a.reference.display()))?;
    print!("{}", validate::table(&rows));
    let out = a.out.unwrap_or_else(|| with_suffix(&a.annotations, ".validation.tsv"));
    validate::write(&out, &rows)?;
    eprintln!("wrote {}", out.display());
    Ok(())
}
