//! `encore features extract`: runs one extractor plugin over a catalog, in batches, cached and
//! resumable.
//!
//! - **Run key**: SHA-256 of the plugin file, its name and version, its parameters, its spec, the
//!   audio settings (clip cap, decoding method) and any host-model fingerprints. Rows computed
//!   under another run key are never reused: a new plugin version or parameter recomputes all.
//! - **Input key** per track: SHA-256 of what the plugin sees (track id, artist, title, duration,
//!   tags, lyrics, MGPHot) and, for plugins that want audio, the clip's file name, size and mtime.
//!   Rows whose run key and input key match are reused; only new or changed tracks are computed.
//! - **Resumable**: after each batch its rows are committed to a part file
//!   (`.<name>.parts/part-NNNNNN.parquet`, written atomically). A killed run leaves whole part
//!   files only; the next run reuses them, writes `<name>.parquet` and the manifest (atomically),
//!   then deletes the parts.
//! - **Missing and failed tracks**: no clip, an undecodable clip, or `none` from the plugin makes a
//!   row `missing` (null vector, with the reason). When a batch traps (fuel, memory, panic) or
//!   errs, the batch is retried track by track in fresh instances; the tracks that still fail are
//!   `failed`, each with the plugin's error, and every other track keeps its vector. Failed rows
//!   are retried by the next run (e.g. with a larger `--fuel`); beyond `max_failed` the run stops.
use super::audio;
use super::store::{self, Row, Status};
use crate::plugins::extractor::{ExtractorInstance, Spec};
use crate::plugins::{ParamValue, Plugin, PluginError, Track};
use anyhow::{bail, Context};
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How an extraction runs.
#[derive(Debug, Clone)]
pub struct ExtractOptions {
    /// Where `<name>.parquet` and `<name>.manifest.toml` go.
    pub out_dir: PathBuf,
    /// Clips: `<dir>/<track_id>.{wav,flac,mp3,ogg}`.
    pub audio_dir: Option<PathBuf>,
    /// Keep only the first seconds of each clip; `None`: [`audio::DEFAULT_MAX_SECONDS`].
    pub max_seconds: Option<f32>,
    /// Tracks per plugin call; `None`: 8 for plugins that want audio, 256 otherwise.
    pub batch: Option<usize>,
    /// Stop when more tracks than this have failed.
    pub max_failed: usize,
    /// Show a progress bar.
    pub progress: bool,
    /// Fingerprints of the host models the extractor may call (names, folders, file sizes and times), part of the
    /// run key ([`crate::hostmodels::ModelRegistry::cache_key`]). The runtime that loaded the
    /// plugin carries the model registry into every instance [`instantiate`] makes.
    pub models_key: Vec<String>,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            out_dir: PathBuf::from("features"),
            audio_dir: None,
            max_seconds: None,
            batch: None,
            max_failed: 100,
            progress: false,
            models_key: vec![],
        }
    }
}

/// What one extraction did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Output name (`<name>.parquet`).
    pub name: String,
    /// The features file.
    pub file: PathBuf,
    /// Vector width.
    pub dim: usize,
    /// Tracks in the catalog.
    pub items: usize,
    /// With a vector.
    pub done: usize,
    /// Missing input or `none` from the plugin.
    pub missing: usize,
    /// Plugin failures on single tracks.
    pub failed: usize,
    /// Tracks computed by this run.
    pub computed: usize,
    /// Tracks reused from an earlier run (the features file or part files).
    pub cached: usize,
    /// Whether the features file was (re)written.
    pub wrote: bool,
    /// Wall time of the computation, seconds.
    pub seconds: f64,
    /// Up to 10 (track id, reason) of missing tracks.
    pub missing_examples: Vec<(String, String)>,
    /// Every failed (track id, reason).
    pub failures: Vec<(String, String)>,
}

/// Makes a configured extractor instance. When `host-models` lands, the model registry is passed
/// through here.
pub fn instantiate(plugin: &Plugin, params: &[(String, ParamValue)]) -> Result<ExtractorInstance, PluginError> {
    ExtractorInstance::new(plugin, params)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// SHA-256 of a file, hex.
pub fn file_sha256(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex(&Sha256::digest(&bytes)))
}

fn run_key(wasm_sha: &str, plugin: &Plugin, params: &[(String, ParamValue)], spec: &Spec, opts: &ExtractOptions) -> String {
    let i = plugin.info();
    let mut h = Sha256::new();
    let text = format!(
        "encore-features-v1\nwasm={wasm_sha}\nplugin={} {}\nparams={params:?}\nspec={} {} {:?}\nmax_seconds={:?}\naudio={}\nmodels={:?}\n",
        i.name,
        i.version,
        spec.name,
        spec.dim,
        spec.wants_audio,
        spec.wants_audio.map(|_| audio::cap_seconds(opts.max_seconds)),
        audio::METHOD,
        opts.models_key
    );
    h.update(text.as_bytes());
    hex(&h.finalize())
}

/// Where a track's clip is, as far as the cache cares.
#[derive(Debug, Clone)]
enum Clip {
    NotWanted,
    None,
    File(PathBuf),
}

fn input_key(t: &Track, clip: &Clip) -> String {
    let mut h = Sha256::new();
    let mut put = |b: &[u8]| {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    put(t.track_id.as_bytes());
    put(t.artist.as_bytes());
    put(t.title.as_bytes());
    put(&t.duration_s.map_or(u32::MAX, f32::to_bits).to_le_bytes());
    put(t.tags.join("\x1f").as_bytes());
    put(t.lyrics.as_deref().unwrap_or("\0none").as_bytes());
    let m: Vec<u8> = t.mgphot.as_ref().map_or(b"none".to_vec(), |v| v.iter().flat_map(|x| x.to_le_bytes()).collect());
    put(&m);
    match clip {
        Clip::NotWanted => put(b"-"),
        Clip::None => put(b"no clip"),
        Clip::File(p) => {
            put(p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default().as_bytes());
            let meta = std::fs::metadata(p).ok();
            let len = meta.as_ref().map_or(0, |m| m.len());
            let mtime = meta.and_then(|m| m.modified().ok()).and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
            put(&len.to_le_bytes());
            put(&mtime.to_le_bytes());
        }
    }
    hex(&h.finalize()[..16])
}

/// A clip as the plugin will get it.
enum AudioIn {
    NotWanted,
    NoClip,
    Bad(String),
    Pcm(Vec<f32>),
}

fn load_audio(clip: &Clip, rate: Option<u32>, max_seconds: Option<f32>) -> AudioIn {
    match (clip, rate) {
        (Clip::File(p), Some(rate)) => match audio::load(p, rate, max_seconds) {
            Ok(x) => AudioIn::Pcm(x),
            Err(e) => AudioIn::Bad(e.to_string()),
        },
        (Clip::None, _) => AudioIn::NoClip,
        _ => AudioIn::NotWanted,
    }
}

/// The valid output name of a spec: ASCII letters, digits, `-`, `_`, `.`.
fn check_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.starts_with('.') || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        bail!("feature name {name:?} must be ASCII letters, digits, `-`, `_` or `.` (not starting with `.`)");
    }
    Ok(())
}

/// The part files directory of `name`.
pub fn parts_dir(out_dir: &Path, name: &str) -> PathBuf {
    out_dir.join(format!(".{name}.parts"))
}

/// Runs `plugin` with `params` over `tracks` (the catalog, by index) and writes
/// `<out_dir>/<name>.parquet` and `<name>.manifest.toml`, `name` being `name_override` or the
/// plugin's spec name.
pub fn extract(
    plugin: &Plugin,
    params: &[(String, ParamValue)],
    name_override: Option<&str>,
    tracks: &[Track],
    opts: &ExtractOptions,
) -> anyhow::Result<Summary> {
    let pname = plugin.info().name.clone();
    let wasm_sha = file_sha256(&plugin.id().path)?;
    let mut inst = instantiate(plugin, params)?;
    let spec = inst.spec().clone();
    let name = name_override.unwrap_or(&spec.name).to_string();
    check_name(&name)?;
    if let Some(rate) = spec.wants_audio.filter(|r| !audio::CLIP_RATES.contains(r)) {
        bail!(
            "extractor `{pname}` ({}) asks for audio at {rate} Hz, outside {}..={} Hz: fix the plugin's spec",
            plugin.id().path.display(),
            audio::CLIP_RATES.start(),
            audio::CLIP_RATES.end()
        );
    }
    if let Some(m) = opts.max_seconds {
        audio::check_max_seconds(m).map_err(|e| anyhow::anyhow!("max_seconds (--max-seconds or [features]) {e}"))?;
    }
    if spec.wants_audio.is_some() && opts.audio_dir.is_none() {
        bail!("extractor `{pname}` wants audio ({} Hz): pass --audio DIR (clips named <track_id>.wav/.flac/.mp3/.ogg)", spec.wants_audio.unwrap_or(0));
    }
    if let Some(d) = opts.audio_dir.as_ref().filter(|_| spec.wants_audio.is_some()) {
        if !d.is_dir() {
            bail!("--audio {}: not a directory", d.display());
        }
    }
    let key = run_key(&wasm_sha, plugin, params, &spec, opts);
    let final_path = opts.out_dir.join(format!("{name}.parquet"));
    let parts = parts_dir(&opts.out_dir, &name);

    let clips: Vec<Clip> = tracks
        .par_iter()
        .map(|t| match (&opts.audio_dir, spec.wants_audio) {
            (Some(d), Some(_)) => audio::find_clip(d, &t.track_id).map_or(Clip::None, Clip::File),
            _ => Clip::NotWanted,
        })
        .collect();
    let keys: Vec<String> = tracks.par_iter().zip(&clips).map(|(t, c)| input_key(t, c)).collect();

    // The cache: the previous features file and committed parts of the same run key.
    let mut cached: HashMap<String, Row> = HashMap::new();
    let mut previous: Option<Vec<Row>> = None;
    if final_path.is_file() {
        match store::read_verified(&final_path) {
            Ok(f) if f.run_key.as_deref() == Some(key.as_str()) && f.dim == spec.dim => {
                for r in &f.rows {
                    cached.insert(r.track_id.clone(), r.clone());
                }
                previous = Some(f.rows);
            }
            Ok(_) => tracing::info!("{}: computed by another plugin version or parameters; recomputing", final_path.display()),
            Err(e) => tracing::warn!("ignoring {}: {e:#}", final_path.display()),
        }
    }
    let mut next_part = 0u32;
    let mut n_parts = 0;
    if parts.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&parts)?.flatten().map(|e| e.path()).collect();
        files.sort();
        for p in files {
            let fname = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if let Some(n) = fname.strip_prefix("part-").and_then(|s| s.strip_suffix(".parquet")).and_then(|s| s.parse::<u32>().ok()) {
                next_part = next_part.max(n + 1);
                match store::read(&p) {
                    Ok(f) if f.run_key.as_deref() == Some(key.as_str()) && f.dim == spec.dim => {
                        n_parts += 1;
                        for r in f.rows {
                            cached.insert(r.track_id.clone(), r);
                        }
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("ignoring part file {}: {e:#}", p.display()),
                }
            }
            // A part of another run, or a temporary file of a killed one.
            let _ = std::fs::remove_file(&p);
        }
    }
    let reusable = |i: usize| cached.get(&tracks[i].track_id).filter(|r| r.input_key == keys[i] && r.status != Status::Failed);
    let todo: Vec<usize> = (0..tracks.len()).filter(|&i| reusable(i).is_none()).collect();

    let mut summary =
        Summary { name: name.clone(), file: final_path.clone(), dim: spec.dim, items: tracks.len(), cached: tracks.len() - todo.len(), ..Summary::default() };
    let unchanged = todo.is_empty()
        && n_parts == 0
        && previous.as_ref().is_some_and(|p| {
            p.len() == tracks.len() && p.iter().zip(tracks).zip(&keys).all(|((r, t), k)| r.item == t.index && r.track_id == t.track_id && &r.input_key == k)
        });
    let started = Instant::now();
    let mut computed: HashMap<usize, Row> = HashMap::new();
    if !todo.is_empty() {
        std::fs::create_dir_all(&parts).with_context(|| format!("creating {}", parts.display()))?;
        let batch = opts.batch.unwrap_or(if spec.wants_audio.is_some() { 8 } else { 256 }).max(1);
        let bar = if opts.progress { indicatif::ProgressBar::new(todo.len() as u64) } else { indicatif::ProgressBar::hidden() };
        bar.set_style(
            indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} tracks, {per_sec} [{elapsed_precise}<{eta_precise}]")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(name.clone());
        let cap_bytes = (plugin.memory_cap() / 4).max(1);
        let audio_dir = opts.audio_dir.clone().unwrap_or_default();
        let result: anyhow::Result<()> = std::thread::scope(|s| {
            // Decoding runs one batch ahead of the plugin, on its own thread.
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<AudioIn>>(1);
            let chunks: Vec<&[usize]> = todo.chunks(batch).collect();
            let chunks2 = chunks.clone();
            let clips = &clips;
            let (rate, max_seconds) = (spec.wants_audio, opts.max_seconds);
            s.spawn(move || {
                for c in chunks2 {
                    let a: Vec<AudioIn> = c.par_iter().map(|&i| load_audio(&clips[i], rate, max_seconds)).collect();
                    if tx.send(a).is_err() {
                        break;
                    }
                }
            });
            for (chunk, audio_in) in chunks.iter().zip(rx.iter()) {
                let batch_tracks: Vec<Track> = chunk.iter().map(|&i| tracks[i].clone()).collect();
                let mut pcm: Vec<Option<Vec<f32>>> = Vec::with_capacity(chunk.len());
                let mut no_input: Vec<Option<String>> = Vec::with_capacity(chunk.len());
                for (a, t) in audio_in.into_iter().zip(&batch_tracks) {
                    let (p, why) = match a {
                        AudioIn::Pcm(x) => (Some(x), None),
                        AudioIn::NoClip => {
                            (None, Some(format!("no clip for {} in {} (looked for {})", t.track_id, audio_dir.display(), audio::EXTENSIONS.join(", "))))
                        }
                        AudioIn::Bad(e) => (None, Some(e)),
                        AudioIn::NotWanted => (None, None),
                    };
                    pcm.push(p);
                    no_input.push(why);
                }
                let out = run_batch(&mut inst, plugin, params, &batch_tracks, &pcm, cap_bytes)?;
                let mut rows = Vec::with_capacity(chunk.len());
                for (k, (&i, o)) in chunk.iter().zip(out).enumerate() {
                    let t = &tracks[i];
                    let (status, reason, vector) = match o {
                        Ok(Some(v)) => (Status::Ok, None, Some(v)),
                        Ok(None) => {
                            (Status::Missing, Some(no_input[k].clone().unwrap_or_else(|| format!("`{pname}` returned none (input missing or unusable)"))), None)
                        }
                        Err(e) => (Status::Failed, Some(e), None),
                    };
                    if status == Status::Failed {
                        summary.failures.push((t.track_id.clone(), reason.clone().unwrap_or_default()));
                    }
                    rows.push(Row { item: t.index, track_id: t.track_id.clone(), input_key: keys[i].clone(), status, reason, vector });
                }
                let part = parts.join(format!("part-{next_part:06}.parquet"));
                next_part += 1;
                store::write(&part, &rows, spec.dim, &key).with_context(|| format!("committing batch to {}", part.display()))?;
                for (&i, r) in chunk.iter().zip(rows) {
                    computed.insert(i, r);
                }
                bar.inc(chunk.len() as u64);
                if summary.failures.len() > opts.max_failed {
                    let (id, why) = summary.failures.last().cloned().unwrap_or_default();
                    bail!(
                        "`{pname}` failed on {} tracks (more than --max-failed {}); the last, {id}: {why}. Completed batches are kept in {}; fix the input or the plugin, or raise the limits, and rerun",
                        summary.failures.len(),
                        opts.max_failed,
                        parts.display()
                    );
                }
            }
            Ok(())
        });
        bar.finish_and_clear();
        result?;
    }
    summary.seconds = started.elapsed().as_secs_f64();
    summary.computed = computed.len();

    let rows: Vec<Row> = (0..tracks.len())
        .map(|i| match computed.remove(&i) {
            Some(r) => r,
            None => {
                let mut r = reusable(i).cloned().expect("every track is computed or cached");
                r.item = tracks[i].index;
                r
            }
        })
        .collect();
    for r in &rows {
        match r.status {
            Status::Ok => summary.done += 1,
            Status::Missing => {
                summary.missing += 1;
                if summary.missing_examples.len() < 10 {
                    summary.missing_examples.push((r.track_id.clone(), r.reason.clone().unwrap_or_default()));
                }
            }
            Status::Failed => summary.failed += 1,
        }
    }
    if !unchanged {
        store::write(&final_path, &rows, spec.dim, &key)?;
        write_manifest(plugin, &wasm_sha, params, &spec, &key, opts, &summary)?;
        summary.wrote = true;
    }
    if parts.is_dir() {
        std::fs::remove_dir_all(&parts).with_context(|| format!("removing {}", parts.display()))?;
    }
    Ok(summary)
}

fn is_trap(e: &PluginError) -> bool {
    matches!(e, PluginError::Trap { .. })
}

/// One plugin call per sub-batch that fits the memory cap; a failing sub-batch is retried track
/// by track in fresh instances. One entry per track: the vector or none, or the error that made
/// this track alone fail.
fn run_batch(
    inst: &mut ExtractorInstance,
    plugin: &Plugin,
    params: &[(String, ParamValue)],
    tracks: &[Track],
    pcm: &[Option<Vec<f32>>],
    cap_bytes: u64,
) -> anyhow::Result<Vec<Result<Option<Vec<f32>>, String>>> {
    let mut out = Vec::with_capacity(tracks.len());
    let mut start = 0;
    while start < tracks.len() {
        // Greedy sub-batches under a quarter of the memory cap (a lone big clip goes alone, and
        // the instance refuses it by name if it cannot fit).
        let mut end = start + 1;
        let mut bytes = pcm[start].as_ref().map_or(0, |a| 4 * a.len() as u64);
        while end < tracks.len() {
            let b = pcm[end].as_ref().map_or(0, |a| 4 * a.len() as u64);
            if bytes + b > cap_bytes {
                break;
            }
            bytes += b;
            end += 1;
        }
        match inst.extract(&tracks[start..end], &pcm[start..end]) {
            Ok(v) => out.extend(v.into_iter().map(Ok)),
            Err(e) => {
                tracing::warn!("a batch of {} tracks failed ({e}); retrying them one by one", end - start);
                if is_trap(&e) {
                    *inst = instantiate(plugin, params).context("re-instantiating the extractor after a trap")?;
                }
                if end - start == 1 {
                    out.push(Err(e.to_string()));
                } else {
                    for j in start..end {
                        match inst.extract(&tracks[j..j + 1], &pcm[j..j + 1]) {
                            Ok(mut v) => out.push(Ok(v.pop().flatten())),
                            Err(e) => {
                                if is_trap(&e) {
                                    *inst = instantiate(plugin, params).context("re-instantiating the extractor after a trap")?;
                                }
                                out.push(Err(e.to_string()));
                            }
                        }
                    }
                }
            }
        }
        start = end;
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn write_manifest(
    plugin: &Plugin,
    wasm_sha: &str,
    params: &[(String, ParamValue)],
    spec: &Spec,
    key: &str,
    opts: &ExtractOptions,
    s: &Summary,
) -> anyhow::Result<()> {
    let i = plugin.info();
    let mut t = toml::Table::new();
    t.insert("format".into(), 1i64.into());
    t.insert("name".into(), s.name.clone().into());
    t.insert("file".into(), format!("{}.parquet", s.name).into());
    t.insert("plugin".into(), i.name.clone().into());
    t.insert("plugin_version".into(), i.version.clone().into());
    t.insert("plugin_api".into(), i.api.clone().into());
    t.insert("plugin_file".into(), plugin.id().path.display().to_string().into());
    t.insert("wasm_sha256".into(), wasm_sha.into());
    t.insert("dim".into(), (spec.dim as i64).into());
    if let Some(r) = spec.wants_audio {
        t.insert("audio_rate".into(), i64::from(r).into());
        t.insert("audio_method".into(), audio::METHOD.into());
        t.insert("audio_max_seconds".into(), f64::from(audio::cap_seconds(opts.max_seconds)).into());
        if let Some(d) = &opts.audio_dir {
            t.insert("audio_dir".into(), d.display().to_string().into());
        }
    }
    let mut p = toml::Table::new();
    for (k, v) in params {
        p.insert(k.clone(), super::config::param_to_toml(v));
    }
    t.insert("params_sha256".into(), hex(&Sha256::digest(format!("{params:?}").as_bytes())).into());
    t.insert("params".into(), p.into());
    t.insert("run_key".into(), key.into());
    let mut c = toml::Table::new();
    for (k, v) in [("items", s.items), ("done", s.done), ("missing", s.missing), ("failed", s.failed), ("computed", s.computed), ("cached", s.cached)] {
        c.insert(k.into(), (v as i64).into());
    }
    t.insert("counts".into(), c.into());
    t.insert("encore_version".into(), env!("CARGO_PKG_VERSION").into());
    store::write_manifest(&s.file, t)
}
