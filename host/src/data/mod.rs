//! Data: LastFM-1K ingest, sessionization with completion ratios, temporal splits, a synthetic
//! generator with a planted content signal, and the versioned Parquet benchmark.
//!
//! The steps, one file each: [`ingest`] (TSV → events) → [`sessions`] (filters, sessions,
//! completion ratios) → [`split`] (train/valid/test) → [`schema`] (Parquet in and out). [`stats`]
//! and [`export`] read the outputs; [`synth`] writes LastFM-1K-format logs. The formats, the
//! filter order, the MBID hash and the completion-ratio rule are documented in `docs/data.md`.
pub mod command;
pub mod config;
pub mod export;
pub mod ingest;
pub mod schema;
pub mod sessions;
pub mod split;
pub mod stats;
pub mod synth;
pub mod time;

use std::path::PathBuf;

/// The hash map of the hot paths: foldhash with a fixed seed (fast on short strings, and
/// deterministic; FxHash collided badly on MBIDs).
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::FixedState>;

/// Cuts the first `n` elements off `rest` and returns them: the pieces of a slice handed out in
/// turn, one per parallel job.
pub(crate) fn take_front<'a, T>(rest: &mut &'a mut [T], n: usize) -> &'a mut [T] {
    let (head, tail) = std::mem::take(rest).split_at_mut(n);
    *rest = tail;
    head
}

/// What can go wrong in the data steps. Every variant names the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A malformed row, under `--on-bad-row error`.
    #[error("{file}:{line}: {what}")]
    BadRow {
        /// The input file.
        file: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong with the row.
        what: String,
    },
    /// The file could not be opened or read.
    #[error("reading {file}: {cause}")]
    Io {
        /// The file.
        file: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// A config file that does not parse or holds an invalid value.
    #[error("config {file}: {what}")]
    Config {
        /// The config file.
        file: PathBuf,
        /// What is wrong, naming the key.
        what: String,
    },
    /// A side table (durations) that does not have the expected shape.
    #[error("{file}: {what}")]
    Table {
        /// The table.
        file: PathBuf,
        /// What is wrong.
        what: String,
    },
}
