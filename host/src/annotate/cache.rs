//! The answer cache: an append-only JSON-lines file, one line per finished track, keyed by
//! (track id, model, prompt version). Each line is written whole and flushed as soon as its track
//! is done, so a run killed at any point keeps every answer it received, and a rerun asks only for
//! what is missing. A line cut short by a kill is skipped on reading (and counted). Answers that
//! failed the schema are cached too (the model did answer); transport failures are not, so a
//! rerun tries those tracks again.
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One cached result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Track id.
    pub track_id: String,
    /// Model, as the backend names it.
    pub model: String,
    /// Prompt version.
    pub prompt_version: String,
    /// The 58 ratings, or none for a failure.
    pub ratings: Option<Vec<u8>>,
    /// Answers asked.
    pub attempts: u32,
    /// Why it failed.
    pub error: Option<String>,
}

/// The cache file and what it held when opened.
pub struct Cache {
    path: PathBuf,
    file: Mutex<std::fs::File>,
    entries: HashMap<(String, String, String), Entry>,
    /// Lines that could not be read (a line cut by a kill, or a foreign line).
    pub skipped_lines: usize,
}

impl Cache {
    /// Opens (or creates) the cache at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        // One process per cache: two appending at once would interleave their lines.
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).with_context(|| format!("opening the cache {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                anyhow::bail!("the cache {} is in use by another `encore annotate`; wait for it to finish, or pass another --cache", path.display())
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e).with_context(|| format!("locking the cache {}", path.display())),
        }
        let mut entries = HashMap::new();
        let mut skipped_lines = 0;
        let text = std::fs::read(path).with_context(|| format!("reading the cache {}", path.display()))?;
        let needs_newline = !text.is_empty() && !text.ends_with(b"\n");
        for line in text.split(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(line);
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Entry>(&line) {
                Ok(e) => {
                    entries.insert((e.track_id.clone(), e.model.clone(), e.prompt_version.clone()), e);
                }
                Err(_) => skipped_lines += 1,
            }
        }
        if needs_newline {
            // The last line was cut by a kill: start the next one on its own line.
            file.write_all(b"\n")?;
        }
        Ok(Self { path: path.to_path_buf(), file: Mutex::new(file), entries, skipped_lines })
    }

    /// The cached result for a key.
    pub fn get(&self, track_id: &str, model: &str, prompt_version: &str) -> Option<&Entry> {
        self.entries.get(&(track_id.to_string(), model.to_string(), prompt_version.to_string()))
    }

    /// Appends an entry (one write of one whole line, then a flush).
    pub fn append(&self, e: &Entry) -> anyhow::Result<()> {
        let mut line = serde_json::to_string(e)?;
        line.push('\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        f.write_all(line.as_bytes()).and_then(|_| f.flush()).map_err(|err| anyhow::anyhow!("appending to the cache {}: {err}", self.path.display()))
    }

    /// Entries read at opening.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing was cached at opening.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_process_on_the_same_cache_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.cache.jsonl");
        let first = Cache::open(&p).unwrap();
        let e = Cache::open(&p).err().expect("a second writer must be refused").to_string();
        assert!(e.contains("in use by another `encore annotate`") && e.contains("a.cache.jsonl"), "{e}");
        drop(first);
        Cache::open(&p).unwrap();
    }
}
