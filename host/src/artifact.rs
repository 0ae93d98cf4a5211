//! Artifacts bound together: content-hash manifests, and one writer per output directory.
//!
//! A directory of outputs (a prepared dataset, an ingest, a features directory) is written under
//! an exclusive [`DirLock`] in three steps: its old `manifest.toml` is removed, the files are
//! written (each atomically), and a new manifest with every file's SHA-256 is written **last**.
//! A reader takes a shared lock and verifies every file against the manifest before it uses any,
//! so it sees the old set whole, the new set whole, or an error naming what is wrong; never a mix
//! of a killed run and an earlier one, a truncated file, or a flipped bit.
//!
//! Parquet page checksums would be the other way to catch a flipped bit, but parquet 60.1 does
//! not write them (`column/page.rs`: "TODO: Add support for crc checksum"), and they would not
//! cover the footer or bind files together. A whole-file SHA-256 does both.
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The manifest's file name inside the directory it describes.
pub const MANIFEST: &str = "manifest.toml";
/// The lock file's name inside the directory it guards.
pub const LOCK: &str = ".encore.lock";
/// The manifest format this build writes and reads.
pub const FORMAT: u32 = 1;

/// What can go wrong with an artifact.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// No manifest: the directory was never completed, or a run writing it was interrupted.
    #[error(
        "{dir}: no {MANIFEST}: it is not a complete {kind} directory (a run writing it was interrupted, or it was made by another tool); rerun the command that makes it"
    )]
    Incomplete {
        /// The directory.
        dir: PathBuf,
        /// What it should hold.
        kind: String,
    },
    /// A file is missing, or its content is not what the manifest records.
    #[error("{file}: {reason}; the {kind} directory {dir} is damaged or was changed after it was written: rerun the command that makes it")]
    Altered {
        /// The file.
        file: PathBuf,
        /// The directory.
        dir: PathBuf,
        /// What the directory holds.
        kind: String,
        /// What differs.
        reason: String,
    },
    /// The manifest itself cannot be read, or describes something else.
    #[error("{path}: {reason}")]
    BadManifest {
        /// The manifest.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Another process holds the directory.
    #[error("{dir} is {state} by another encore process ({holder}); wait for it to finish, or choose another output directory")]
    Locked {
        /// The directory.
        dir: PathBuf,
        /// "being written" or "being read".
        state: &'static str,
        /// What the holder recorded in the lock file.
        holder: String,
    },
    /// An I/O error, with what was being done.
    #[error("{context}: {cause}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        cause: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ArtifactError {
    let context = context.into();
    move |cause| ArtifactError::Io { context, cause }
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 (hex) and length of a file, streamed.
pub fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex(&h.finalize()), n))
}

/// One file of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// SHA-256 of the whole file, hex.
    pub sha256: String,
    /// Its length in bytes.
    pub bytes: u64,
}

/// `manifest.toml`: what a directory holds, and what it was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// What the directory is: `prepared`, `ingest`, `features`.
    pub kind: String,
    /// The encore version that wrote it.
    pub encore: String,
    /// What it was made from: the source, the config's hash, the digests of input artifacts.
    #[serde(default)]
    pub inputs: BTreeMap<String, String>,
    /// Its files, by name relative to the directory.
    pub files: BTreeMap<String, Entry>,
}

impl Manifest {
    /// A manifest of `kind` with no files yet.
    pub fn new(kind: &str) -> Self {
        Manifest { format: FORMAT, kind: kind.into(), encore: env!("CARGO_PKG_VERSION").into(), inputs: BTreeMap::new(), files: BTreeMap::new() }
    }

    /// The SHA-256 of the manifest's canonical text: one string that names this exact set of files
    /// and inputs. Checkpoints record it for the data they were trained on.
    pub fn digest(&self) -> String {
        sha256_hex(self.to_text().as_bytes())
    }

    fn to_text(&self) -> String {
        // A struct of strings and maps always serializes.
        toml::to_string(self).unwrap_or_default()
    }

    /// Hashes `dir/name` into the manifest.
    pub fn add(&mut self, dir: &Path, name: &str) -> Result<(), ArtifactError> {
        let p = dir.join(name);
        let (sha256, bytes) = sha256_file(&p).map_err(io(format!("hashing {}", p.display())))?;
        self.files.insert(name.to_string(), Entry { sha256, bytes });
        Ok(())
    }

    /// Writes the manifest into `dir` (atomically). Call it after every file it lists is written.
    pub fn write(&self, dir: &Path) -> Result<(), ArtifactError> {
        let p = dir.join(MANIFEST);
        let text = self.to_text();
        crate::io::write_atomic(&p, |w| w.write_all(text.as_bytes()))
            .map_err(|e| ArtifactError::Io { context: format!("writing {}", p.display()), cause: std::io::Error::other(format!("{e:#}")) })
    }

    /// Reads `dir`'s manifest, which must be of `kind`, without checking the files.
    pub fn read(dir: &Path, kind: &str) -> Result<Manifest, ArtifactError> {
        let p = dir.join(MANIFEST);
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ArtifactError::Incomplete { dir: dir.into(), kind: kind.into() }),
            Err(e) => return Err(ArtifactError::BadManifest { path: p, reason: format!("cannot read it: {e}") }),
        };
        let m: Manifest = toml::from_str(&text).map_err(|e| ArtifactError::BadManifest { path: p.clone(), reason: e.to_string() })?;
        if m.format != FORMAT {
            return Err(ArtifactError::BadManifest { path: p, reason: format!("format {} is not the format {FORMAT} this encore reads", m.format) });
        }
        if m.kind != kind {
            return Err(ArtifactError::BadManifest { path: p, reason: format!("it describes a {} directory, not a {kind} one", m.kind) });
        }
        if m.to_text() != text {
            return Err(ArtifactError::BadManifest { path: p, reason: "it was edited after encore wrote it".into() });
        }
        Ok(m)
    }

    /// Reads `dir`'s manifest and checks that every file it lists exists with the recorded
    /// length and SHA-256.
    pub fn verify(dir: &Path, kind: &str) -> Result<Manifest, ArtifactError> {
        let m = Manifest::read(dir, kind)?;
        for (name, e) in &m.files {
            m.check(dir, name, e)?;
        }
        Ok(m)
    }

    /// Checks one listed file.
    pub fn verify_file(&self, dir: &Path, name: &str) -> Result<(), ArtifactError> {
        let e = self.files.get(name).ok_or_else(|| ArtifactError::Altered {
            file: dir.join(name),
            dir: dir.into(),
            kind: self.kind.clone(),
            reason: format!("not listed in {MANIFEST}"),
        })?;
        self.check(dir, name, e)
    }

    fn check(&self, dir: &Path, name: &str, e: &Entry) -> Result<(), ArtifactError> {
        let p = dir.join(name);
        let altered = |reason: String| ArtifactError::Altered { file: p.clone(), dir: dir.into(), kind: self.kind.clone(), reason };
        let (sha, bytes) = sha256_file(&p).map_err(|err| altered(format!("cannot read it: {err}")))?;
        if bytes != e.bytes {
            return Err(altered(format!("{bytes} bytes, the manifest records {}", e.bytes)));
        }
        if sha != e.sha256 {
            return Err(altered(format!("its SHA-256 is {sha}, the manifest records {}", e.sha256)));
        }
        Ok(())
    }

    /// Removes `dir`'s manifest, so that no reader takes the directory for complete while it is
    /// rewritten. Call it, under the directory's exclusive lock, before writing any file.
    pub fn remove(dir: &Path) -> Result<(), ArtifactError> {
        let p = dir.join(MANIFEST);
        match std::fs::remove_file(&p) {
            Ok(()) => {
                // The removal must reach the disk before the first new file does.
                File::open(dir).and_then(|d| d.sync_all()).map_err(io(format!("syncing {}", dir.display())))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(format!("removing {}", p.display()))(e)),
        }
    }
}

/// A lock on an output directory, held until dropped: exclusive for the one process writing it,
/// shared for readers. The kernel releases it when the process dies, however it dies.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes `dir` (created if needed) for writing, or fails at once if another process holds it.
    /// `what` (the command) is recorded for the error another process would see. Temporary files
    /// of killed runs (`.NAME.tmp-PID` whose process is gone) are removed.
    pub fn exclusive(dir: &Path, what: &str) -> Result<DirLock, ArtifactError> {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        let p = dir.join(LOCK);
        let mut file =
            std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&p).map_err(io(format!("opening {}", p.display())))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(ArtifactError::Locked { dir: dir.into(), state: "being written or read", holder: holder(&p) });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(format!("locking {}", p.display()))(e)),
        }
        let note = format!("pid {}: {what}", std::process::id());
        file.set_len(0).and_then(|()| file.write_all(note.as_bytes())).map_err(io(format!("writing {}", p.display())))?;
        remove_stale_temporaries(dir);
        Ok(DirLock { _file: file })
    }

    /// Takes `dir` for reading: fails at once if a writer holds it. A directory without a lock
    /// file (never written by this encore, or on a read-only mount) is read unlocked; its
    /// manifest still guards it.
    pub fn shared(dir: &Path) -> Result<Option<DirLock>, ArtifactError> {
        let p = dir.join(LOCK);
        let file = match File::open(&p) {
            Ok(f) => f,
            Err(_) => return Ok(None),
        };
        match file.try_lock_shared() {
            Ok(()) => Ok(Some(DirLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Err(ArtifactError::Locked { dir: dir.into(), state: "being written", holder: holder(&p) }),
            Err(std::fs::TryLockError::Error(e)) => Err(io(format!("locking {}", p.display()))(e)),
        }
    }
}

/// A lock that waits: processes that need the same stage (grid cells on one machine, or Slurm
/// array tasks on several nodes over a shared directory) queue on its file, so the first computes
/// the stage and the others then find it done. It is a file of its own, never a directory's
/// `.encore.lock`, which the stage's writer takes without waiting.
#[derive(Debug)]
pub struct StageLock {
    _file: File,
}

impl StageLock {
    /// Waits for `path` (created if needed) exclusively, for computing a stage.
    pub fn exclusive(path: &Path) -> Result<StageLock, ArtifactError> {
        let file = StageLock::open(path)?;
        file.lock().map_err(io(format!("locking {}", path.display())))?;
        Ok(StageLock { _file: file })
    }

    /// Waits for `path` shared, for reading what an exclusive holder writes.
    pub fn shared(path: &Path) -> Result<StageLock, ArtifactError> {
        let file = StageLock::open(path)?;
        file.lock_shared().map_err(io(format!("locking {}", path.display())))?;
        Ok(StageLock { _file: file })
    }

    fn open(path: &Path) -> Result<File, ArtifactError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        }
        std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(io(format!("opening {}", path.display())))
    }
}

fn holder(lock: &Path) -> String {
    std::fs::read_to_string(lock).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).unwrap_or_else(|| "unknown".into())
}

/// Removes `dir`'s `.NAME.tmp-PID` files (from [`crate::io::write_atomic`]) and directories (a
/// grid cell's result being written), and `.NAME.old-PID` directories (a result being replaced),
/// whose process no longer runs.
pub fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name.strip_prefix('.').and_then(|n| n.rsplit_once(".tmp-").or_else(|| n.rsplit_once(".old-"))).and_then(|(_, pid)| pid.parse::<u32>().ok());
        if let Some(pid) = pid {
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                let p = e.path();
                let _ = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_catches_a_flipped_bit_a_missing_file_and_an_edit() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"hello").unwrap();
        std::fs::write(dir.path().join("b"), b"world").unwrap();
        let mut m = Manifest::new("test");
        m.add(dir.path(), "a").unwrap();
        m.add(dir.path(), "b").unwrap();
        m.write(dir.path()).unwrap();
        assert_eq!(Manifest::verify(dir.path(), "test").unwrap(), m);
        assert!(matches!(Manifest::verify(dir.path(), "prepared"), Err(ArtifactError::BadManifest { .. })));
        std::fs::write(dir.path().join("b"), b"wORld").unwrap();
        let e = Manifest::verify(dir.path(), "test").unwrap_err().to_string();
        assert!(e.contains("/b: its SHA-256"), "{e}");
        std::fs::remove_file(dir.path().join("b")).unwrap();
        assert!(matches!(Manifest::verify(dir.path(), "test"), Err(ArtifactError::Altered { .. })));
        let text = std::fs::read_to_string(dir.path().join(MANIFEST)).unwrap();
        std::fs::write(dir.path().join(MANIFEST), text.replace("kind = \"test\"", "kind = \"test\"\n")).unwrap();
        assert!(Manifest::read(dir.path(), "test").unwrap_err().to_string().contains("edited"));
        Manifest::remove(dir.path()).unwrap();
        assert!(matches!(Manifest::verify(dir.path(), "test"), Err(ArtifactError::Incomplete { .. })));
    }

    #[test]
    fn one_writer_and_no_reader_while_it_writes() {
        let dir = tempfile::tempdir().unwrap();
        let w = DirLock::exclusive(dir.path(), "encore test").unwrap();
        let e = DirLock::exclusive(dir.path(), "encore other").unwrap_err().to_string();
        assert!(e.contains("another encore process (pid") && e.contains("encore test"), "{e}");
        assert!(DirLock::shared(dir.path()).is_err());
        drop(w);
        let r1 = DirLock::shared(dir.path()).unwrap();
        let r2 = DirLock::shared(dir.path()).unwrap();
        assert!(r1.is_some() && r2.is_some());
        assert!(DirLock::exclusive(dir.path(), "encore test").is_err());
    }

    #[test]
    fn stale_temporaries_are_removed_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join(".items.parquet.tmp-4000000");
        let live = dir.path().join(format!(".items.parquet.tmp-{}", std::process::id()));
        let other = dir.path().join("items.parquet");
        for p in [&dead, &live, &other] {
            std::fs::write(p, b"x").unwrap();
        }
        let _w = DirLock::exclusive(dir.path(), "test").unwrap();
        assert!(!dead.exists() && live.exists() && other.exists());
    }
}
