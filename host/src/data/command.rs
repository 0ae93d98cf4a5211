//! `encore data ...`: the command-line side of the data steps.
use super::config::{DataConfig, Protocol};
use super::ingest::{self, IngestOptions, OnBadRow};
use super::synth::SynthConfig;
use super::{export, schema, sessions, split, stats};
use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The embedded default log: `data/sample/listens.tsv.gz` (parameters in `docs/data.md`).
pub const SAMPLE_LISTENS: &[u8] = include_bytes!("../../../data/sample/listens.tsv.gz");
/// Its side-car item table (durations and content).
pub const SAMPLE_TRACKS: &[u8] = include_bytes!("../../../data/sample/tracks.tsv.gz");

/// `encore data ...`.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Parse a LastFM-1K log (plain or .gz) into events.parquet, users.parquet, tracks.parquet.
    Ingest {
        /// The log.
        file: PathBuf,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// What to do with malformed rows.
        #[arg(long, value_enum, default_value_t = OnBadRow::Skip)]
        on_bad_row: OnBadRow,
    },
    /// Ingest, filter, sessionize and split: items, users, sessions and train/valid/test Parquet.
    Prepare(PrepareArgs),
    /// Print users, tracks, sessions, interactions and their distributions.
    Stats {
        /// A directory written by `encore data prepare`.
        dir: PathBuf,
    },
    /// Write the prepared data in another tool's format.
    #[command(subcommand)]
    Export(ExportCommand),
    /// Generate a synthetic LastFM-1K-format log with a planted content signal.
    Synth(SynthArgs),
}

/// `encore data prepare`.
#[derive(Debug, Args)]
pub struct PrepareArgs {
    /// The log (plain or .gz). Default: the embedded sample (data/sample/listens.tsv.gz).
    pub file: Option<PathBuf>,
    /// Data config (TOML), e.g. configs/data/paper.toml. Default: the defaults of docs/data.md.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Item table with durations (TSV with track_id and duration_s); overrides the config's.
    #[arg(long)]
    pub durations: Option<PathBuf>,
    /// Split protocol; overrides the config's.
    #[arg(long, value_enum)]
    pub split: Option<Protocol>,
    /// What to do with malformed rows; overrides the config's.
    #[arg(long, value_enum)]
    pub on_bad_row: Option<OnBadRow>,
}

/// `encore data export ...`.
#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// RecBole atomic files (.inter, .item, and the benchmark parts .train/.valid/.test.inter).
    Recbole {
        /// A directory written by `encore data prepare`.
        dir: PathBuf,
        /// Where to write (default: DIR/recbole/encore, as RecBole reads DATA_PATH/encore/encore.*).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Items of history kept per case in the benchmark parts, the newest (0: all); RecBole's
        /// MAX_ITEM_LIST_LENGTH must be at least this.
        #[arg(long, default_value_t = export::DEFAULT_MAX_HISTORY)]
        max_history: usize,
    },
}

/// `encore data synth`.
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Users.
    #[arg(long, default_value_t = 50)]
    pub users: u32,
    /// Tracks.
    #[arg(long, default_value_t = 5000)]
    pub tracks: u32,
    /// Seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Well-formed rows in all, exactly (default 3000 per user); --bad-rows adds malformed ones.
    #[arg(long)]
    pub rows: Option<u64>,
    /// Latent styles.
    #[arg(long, default_value_t = 12)]
    pub styles: u32,
    /// Zipf exponent of popularity.
    #[arg(long, default_value_t = 1.0)]
    pub zipf: f64,
    /// Chance per play that a session drifts to another style.
    #[arg(long, default_value_t = 0.12)]
    pub drift: f64,
    /// Mean session length in plays.
    #[arg(long, default_value_t = 14.0)]
    pub session_mean: f64,
    /// Fraction of tracks with an empty MBID.
    #[arg(long, default_value_t = 0.15)]
    pub empty_mbid: f64,
    /// Chance per row of an extra malformed row.
    #[arg(long, default_value_t = 0.0)]
    pub bad_rows: f64,
    /// WAV clips for the N most popular tracks.
    #[arg(long, default_value_t = 0)]
    pub clips: u32,
    /// Clip length in seconds.
    #[arg(long, default_value_t = 2.0)]
    pub clip_seconds: f32,
    /// Write listens.tsv.gz.
    #[arg(long)]
    pub gzip: bool,
    /// Sub-styles per style, marked in genes, lyrics, tempo and pitch (0: none).
    #[arg(long, default_value_t = 0)]
    pub substyles: u32,
    /// With --substyles, the chance per play of following the previous track's sub-style.
    #[arg(long, default_value_t = 0.5)]
    pub stay: f64,
}

/// Runs `encore data ...`.
pub fn run(cmd: DataCommand) -> anyhow::Result<()> {
    match cmd {
        DataCommand::Ingest { file, out, on_bad_row } => {
            let start = Instant::now();
            let _lock = crate::artifact::DirLock::exclusive(&out, "encore data ingest")?;
            let log = read_log(&file, on_bad_row)?;
            eprint!("{}", log.report.summary(&file));
            if log.report.events == 0 {
                anyhow::bail!(
                    "{}: no valid row to ingest; a LastFM-1K log has 6 tab-separated columns (user, ISO-8601 time, artist MBID, artist, track MBID, track)",
                    file.display()
                );
            }
            schema::write_ingest(&out, &log, &file.display().to_string())
                .with_context(|| format!("writing the ingest of {} into {}", file.display(), out.display()))?;
            eprintln!(
                "wrote {} events, {} users, {} tracks to {} in {:.2}s",
                log.user.len(),
                log.users.len(),
                log.tracks.len(),
                out.display(),
                start.elapsed().as_secs_f64()
            );
            Ok(())
        }
        DataCommand::Prepare(a) => prepare(a),
        DataCommand::Stats { dir } => {
            let d = schema::read_dataset(&dir).with_context(|| format!("reading the dataset in {}", dir.display()))?;
            print!("{}", stats::stats(&d));
            Ok(())
        }
        DataCommand::Export(ExportCommand::Recbole { dir, out, max_history }) => {
            let d = schema::read_dataset(&dir).with_context(|| format!("reading the dataset in {}", dir.display()))?;
            let out = out.unwrap_or_else(|| dir.join("recbole").join("encore"));
            for f in export::recbole(&dir, &d, &out, max_history).with_context(|| format!("exporting {} for RecBole into {}", dir.display(), out.display()))? {
                eprintln!("wrote {}", f.display());
            }
            Ok(())
        }
        DataCommand::Synth(a) => {
            let cfg = SynthConfig {
                users: a.users,
                tracks: a.tracks,
                seed: a.seed,
                rows: a.rows,
                styles: a.styles,
                zipf: a.zipf,
                drift: a.drift,
                session_mean: a.session_mean,
                empty_mbid: a.empty_mbid,
                bad_rows: a.bad_rows,
                clips: a.clips,
                clip_seconds: a.clip_seconds,
                gzip: a.gzip,
                substyles: a.substyles,
                stay: a.stay,
            };
            let s = super::synth::synth(&cfg, &a.out).with_context(|| format!("writing the synthetic log into {}", a.out.display()))?;
            eprintln!("wrote {} rows ({} malformed) to {}", s.rows, s.bad_rows, a.out.display());
            Ok(())
        }
    }
}

fn progress_bar(path: &Path) -> indicatif::ProgressBar {
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let pb = indicatif::ProgressBar::new(len);
    pb.set_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes} {elapsed}").unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    pb.set_message(format!("reading {}", path.display()));
    pb
}

fn read_log(file: &Path, on_bad_row: OnBadRow) -> anyhow::Result<ingest::Log> {
    let pb = progress_bar(file);
    let opts = IngestOptions { on_bad_row, ..IngestOptions::default() };
    let gz = file.extension().is_some_and(|e| e == "gz");
    let log = ingest::ingest(file, opts, &mut |b| {
        if !gz {
            pb.set_position(b)
        }
    })?;
    pb.finish_and_clear();
    Ok(log)
}

fn prepare(a: PrepareArgs) -> anyhow::Result<()> {
    let mut cfg = match &a.config {
        Some(p) => DataConfig::load(p)?,
        None => DataConfig::default(),
    };
    if let Some(p) = a.split {
        cfg.split.protocol = p;
    }
    if let Some(m) = a.on_bad_row {
        cfg.ingest.on_bad_row = m;
    }
    if let Some(d) = a.durations {
        cfg.completion.durations = Some(d);
    }
    let prepared = prepare_into(a.file.as_deref(), &cfg, a.config.as_deref(), &a.out)?;
    // Nothing else reads it: another thread frees it while the command ends.
    std::thread::spawn(move || drop(prepared));
    Ok(())
}

/// What a prepared directory is made from, as its manifest records it: the log (path, size and
/// modification time, or the embedded sample), the duration table likewise, and the data config.
/// `encore run` reuses a directory whose manifest records the same.
pub fn inputs(file: Option<&Path>, cfg: &DataConfig) -> std::collections::BTreeMap<String, String> {
    // The canonical path: `configs/../runs/x.tsv` and `/work/runs/x.tsv` are one log, however a
    // config or a `--cell` process spelled it.
    let identity = |p: &Path| match std::fs::metadata(p) {
        Ok(m) => format!(
            "{} ({} bytes, modified {} ns)",
            std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()).display(),
            m.len(),
            m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos())
        ),
        Err(_) => p.display().to_string(),
    };
    let mut m = std::collections::BTreeMap::new();
    m.insert("source".into(), file.map_or_else(|| "data/sample/listens.tsv.gz (embedded)".into(), identity));
    if let Some(d) = &cfg.completion.durations {
        m.insert("durations".into(), identity(d));
    }
    m.insert("split".into(), format!("{:?}", cfg.split.protocol).to_lowercase());
    m.insert("config_sha256".into(), crate::artifact::sha256_hex(format!("{cfg:?}").as_bytes()));
    m
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_log_spelled_two_ways_is_one_input() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        let log = dir.path().join("a/listens.tsv");
        std::fs::write(&log, "x").unwrap();
        let cfg = super::DataConfig::default();
        let other = dir.path().join("a/../a/./listens.tsv");
        assert_eq!(super::inputs(Some(&log), &cfg), super::inputs(Some(&other), &cfg));
    }
}

/// Reads back a prepared directory (verified once, under a shared lock) as [`prepare_into`]
/// returns it.
pub fn load_prepared(dir: &Path) -> anyhow::Result<Prepared> {
    let verified = schema::verify_prepared(dir)?;
    let dataset = schema::read_dataset_verified(dir, &verified)?;
    let p = schema::read_splits_verified(dir, &verified)?;
    Ok(Prepared { dataset, splits: p.splits, digest: p.digest })
}

/// A dataset `encore data prepare` wrote, still in memory.
#[derive(Debug)]
pub struct Prepared {
    /// Items, users and sessions.
    pub dataset: sessions::Dataset,
    /// The splits.
    pub splits: split::Splits,
    /// The digest of its manifest: what checkpoints record as the data they were trained on.
    pub digest: String,
}

/// Ingests `file` (the embedded sample when `None`), filters, sessionizes and splits it by `cfg`,
/// and writes the dataset and its splits into `out`. Returns them for the caller to go on with.
/// `config_path` is recorded in the files' metadata.
///
/// `out` is held under an exclusive lock: a second run on it fails at once. Its old manifest is
/// removed before the first file is written and the new one is written last, so a run killed at
/// any moment leaves the old dataset whole, the new one whole, or a directory every reader
/// refuses.
pub fn prepare_into(file: Option<&Path>, cfg: &DataConfig, config_path: Option<&Path>, out: &Path) -> anyhow::Result<Prepared> {
    let start = Instant::now();
    let _lock = crate::artifact::DirLock::exclusive(out, "encore data prepare")?;
    // The duration table is read on its own thread while the log is parsed.
    let read_durations = || -> anyhow::Result<sessions::Durations> {
        Ok(match (&cfg.completion.durations, file) {
            (Some(p), _) => sessions::read_durations(p)?,
            (None, None) => sessions::parse_durations(flate2::read::MultiGzDecoder::new(SAMPLE_TRACKS), Path::new("data/sample/tracks.tsv.gz (embedded)"))?,
            (None, Some(_)) => Default::default(),
        })
    };
    let (log, name, durations) = std::thread::scope(|scope| -> anyhow::Result<_> {
        let durations = scope.spawn(read_durations);
        let (log, name) = match file {
            Some(f) => (read_log(f, cfg.ingest.on_bad_row)?, f.display().to_string()),
            None => {
                let r = std::io::BufReader::new(flate2::read::MultiGzDecoder::new(SAMPLE_LISTENS));
                let name = "data/sample/listens.tsv.gz (embedded)";
                (
                    ingest::ingest_reader(r, Path::new(name), IngestOptions { on_bad_row: cfg.ingest.on_bad_row, ..Default::default() }, &mut |_| {})?,
                    name.to_string(),
                )
            }
        };
        let durations = durations.join().map_err(|_| anyhow::anyhow!("reading the duration table failed"))??;
        Ok((log, name, durations))
    })?;
    eprint!("{}", log.report.summary(Path::new(&name)));
    // Empty results are errors, never empty outputs with exit code 0.
    if log.report.events == 0 {
        anyhow::bail!(
            "{name}: no valid row to prepare; a LastFM-1K log has 6 tab-separated columns (user, ISO-8601 time, artist MBID, artist, track MBID, track)"
        );
    }
    let t_ingest = start.elapsed();
    let d = sessions::build(&log, cfg, &durations);
    if d.sessions.user.is_empty() {
        eprint!("{}", d.report.table());
        anyhow::bail!("{name}: the filters kept no session (see the table above for where the data went); lower the [filters] thresholds of the data config");
    }
    // Freeing the log's strings takes a while; another thread does it.
    std::thread::spawn(move || drop((log, durations)));
    eprint!("{}", d.report.table());
    let sp = split::split(&d.sessions, &cfg.split);
    let t_build = start.elapsed();
    let protocol = format!("{:?}", cfg.split.protocol).to_lowercase();
    let mut meta = vec![("encore.source", name.clone()), ("encore.split", protocol.clone())];
    if let Some((tv, tt)) = sp.cuts {
        meta.push(("encore.t_valid", tv.to_string()));
        meta.push(("encore.t_test", tt.to_string()));
    }
    if let Some(c) = config_path {
        meta.push(("encore.config", c.display().to_string()));
    }
    // The dataset's three files and the three splits are written in parallel, each atomically,
    // on threads of their own: much of a write is waiting for the disk (each file is synced).
    crate::artifact::Manifest::remove(out)?;
    let splits = [("train", &sp.train), ("valid", &sp.valid), ("test", &sp.test)];
    let written: Vec<anyhow::Result<()>> = std::thread::scope(|scope| {
        let (d, meta) = (&d, &meta);
        let dataset = schema::DatasetFile::ALL.map(|part| {
            scope.spawn(move || schema::write_dataset_file(out, d, meta, part).with_context(|| format!("writing the dataset into {}", out.display())))
        });
        let splits = splits.map(|(name, rows)| scope.spawn(move || schema::write_split(&out.join(format!("{name}.parquet")), rows, d, meta)));
        dataset.into_iter().chain(splits).map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a writer thread panicked")))).collect()
    });
    written.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    let mut manifest = crate::artifact::Manifest::new(schema::PREPARED);
    manifest.inputs = inputs(file, cfg);
    for f in schema::PREPARED_FILES {
        manifest.add(out, f)?;
    }
    manifest.write(out)?;
    eprintln!(
        "split {protocol}: {} train, {} valid, {} test rows; wrote {} (ingest {:.2}s, filters+split {:.2}s, total {:.2}s)",
        sp.train.len(),
        sp.valid.len(),
        sp.test.len(),
        out.display(),
        t_ingest.as_secs_f64(),
        (t_build - t_ingest).as_secs_f64(),
        start.elapsed().as_secs_f64()
    );
    Ok(Prepared { dataset: d, splits: sp, digest: manifest.digest() })
}
