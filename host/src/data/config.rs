//! The typed data config (`configs/data/*.toml`). Unknown keys are errors that name the key and
//! the file; every number of the paper's preset is a parameter here.
use super::ingest::OnBadRow;
use super::DataError;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The whole data config.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Parsing.
    pub ingest: IngestConfig,
    /// Filters and sessions, applied in the documented order.
    pub filters: FilterConfig,
    /// Completion ratios.
    pub completion: CompletionConfig,
    /// Train/valid/test.
    pub split: SplitConfig,
}

/// Parsing settings.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Malformed rows: `skip` (default) or `error`.
    pub on_bad_row: OnBadRow,
}

/// Filters and sessionization. Order: sort, exact duplicates, users, tracks, sessions, repeats,
/// session length, users by sessions (see `docs/data.md`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    /// Drop a row equal to the previous one after sorting (same user, timestamp and track).
    pub drop_exact_duplicates: bool,
    /// Keep users with at least this many streams.
    pub min_user_streams: u32,
    /// Keep tracks with at least this many plays (counted after the user filter).
    pub min_track_plays: u32,
    /// A gap longer than this (minutes) starts a new session.
    pub session_gap_minutes: f64,
    /// Drop a play of the same track as the previous play of the session.
    pub drop_consecutive_repeats: bool,
    /// Keep sessions with at least this many tracks.
    pub min_session_len: u32,
    /// Truncate sessions to this many tracks (0: no truncation).
    pub max_session_len: u32,
    /// Keep users with at least this many sessions (after the session filters).
    pub min_user_sessions: u32,
}

impl Default for FilterConfig {
    fn default() -> Self {
        Self {
            drop_exact_duplicates: true,
            min_user_streams: 0,
            min_track_plays: 0,
            session_gap_minutes: 20.0,
            drop_consecutive_repeats: true,
            min_session_len: 1,
            max_session_len: 0,
            min_user_sessions: 0,
        }
    }
}

/// What the last event of a (raw) session gets as its completion ratio.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LastEvent {
    /// Unknown: null.
    #[default]
    Null,
    /// 0, as the reference code does.
    Zero,
    /// 1: assume the last track was heard to the end.
    One,
}

/// Completion ratios.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CompletionConfig {
    /// A TSV with a header naming at least `track_id` and `duration_s` (the synthetic
    /// generator's `tracks.tsv`); relative to the config file. Without it every duration is unknown.
    pub durations: Option<PathBuf>,
    /// Seconds to assume when a track's duration is unknown. Absent: the ratio is null.
    pub estimate_duration_s: Option<f64>,
    /// The last event of a session.
    pub last_event: LastEvent,
}

/// Which split protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Global temporal (the paper's): sessions by end time against timestamp quantiles.
    #[default]
    Temporal,
    /// Leave-one-out per user (E4SRec, RecBole): last item test, the one before valid.
    Loo,
    /// Next item within each session: last item test, the one before valid.
    Session,
}

/// Train/valid/test.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SplitConfig {
    /// The protocol.
    pub protocol: Protocol,
    /// Temporal: sessions ending after this quantile of all timestamps are test.
    pub test_quantile: f64,
    /// Temporal: of the rest, sessions ending after this quantile of their timestamps are valid.
    pub valid_quantile: f64,
}

impl Default for SplitConfig {
    fn default() -> Self {
        Self { protocol: Protocol::Temporal, test_quantile: 0.9, valid_quantile: 0.9 }
    }
}

impl DataConfig {
    /// Reads `path`; relative paths inside are resolved against its directory.
    pub fn load(path: &Path) -> Result<Self, DataError> {
        let text = std::fs::read_to_string(path).map_err(|cause| DataError::Io { file: path.into(), cause })?;
        let mut cfg = Self::parse(&text).map_err(|what| DataError::Config { file: path.into(), what })?;
        if let Some(d) = &cfg.completion.durations {
            if d.is_relative() {
                cfg.completion.durations = Some(path.parent().unwrap_or(Path::new(".")).join(d));
            }
        }
        Ok(cfg)
    }

    /// Parses TOML text and checks the values; the error names the key.
    pub fn parse(text: &str) -> Result<Self, String> {
        let cfg: Self = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        let f = &self.filters;
        if !(f.session_gap_minutes.is_finite() && f.session_gap_minutes > 0.0) {
            return Err(format!("filters.session_gap_minutes = {} must be positive", f.session_gap_minutes));
        }
        if f.max_session_len != 0 && f.max_session_len < f.min_session_len {
            return Err(format!("filters.max_session_len = {} is below filters.min_session_len = {}", f.max_session_len, f.min_session_len));
        }
        for (k, q) in [("split.test_quantile", self.split.test_quantile), ("split.valid_quantile", self.split.valid_quantile)] {
            if !(q > 0.0 && q < 1.0) {
                return Err(format!("{k} = {q} must be in (0, 1)"));
            }
        }
        if let Some(e) = self.completion.estimate_duration_s {
            if !(e.is_finite() && e > 0.0) {
                return Err(format!("completion.estimate_duration_s = {e} must be positive"));
            }
        }
        Ok(())
    }

    /// The session gap in seconds.
    pub fn gap_seconds(&self) -> i64 {
        (self.filters.session_gap_minutes * 60.0).round() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_preset_parses() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/data/paper.toml");
        let c = DataConfig::load(&p).unwrap();
        assert_eq!(c.filters.min_user_streams, 1000);
        assert_eq!(c.filters.min_track_plays, 7);
        assert_eq!(c.gap_seconds(), 1200);
        assert_eq!((c.filters.min_session_len, c.filters.max_session_len, c.filters.min_user_sessions), (10, 10, 50));
        assert_eq!(c.split.protocol, Protocol::Temporal);
    }

    #[test]
    fn typo_names_key_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.toml");
        std::fs::write(&p, "[filters]\nmin_user_stream = 3\n").unwrap();
        let e = DataConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("bad.toml") && e.contains("min_user_stream"), "{e}");
        assert!(DataConfig::parse("[split]\ntest_quantile = 1.5\n").unwrap_err().contains("split.test_quantile"));
    }
}
