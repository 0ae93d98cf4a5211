//! File output that never leaves a partial file under its final name, and what the machine has.
use anyhow::Context;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The temporary path next to `path` that [`write_atomic`] writes before renaming.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Writes `path` through `write` into a temporary file in the same directory, syncs it, then
/// renames it into place. On any error the temporary file is removed and `path` is untouched.
pub fn write_atomic(path: &Path, write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>) -> anyhow::Result<()> {
    write_atomic_file(path, |file| {
        let mut w = BufWriter::new(file);
        write(&mut w)?;
        w.flush()?;
        Ok(())
    })
}

/// Like [`write_atomic`], for writers that take a `File` (Parquet's `ArrowWriter`).
pub fn write_atomic_file(path: &Path, write: impl FnOnce(File) -> anyhow::Result<()>) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating directory {}", dir.display()))?;
    }
    let tmp = temp_path(path);
    let result = (|| -> anyhow::Result<()> {
        let start = std::time::Instant::now();
        let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        write(file.try_clone()?)?;
        let written = start.elapsed();
        file.sync_all()?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
        tracing::debug!(
            "{}: written in {:.1} ms, synced and renamed in {:.1} ms",
            path.display(),
            written.as_secs_f64() * 1e3,
            (start.elapsed() - written).as_secs_f64() * 1e3
        );
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

/// The machine's physical memory in bytes, when the OS says: what configs are bounded against.
pub fn physical_memory() -> Option<u64> {
    #[cfg(unix)]
    {
        // SAFETY: sysconf only reads system constants.
        let (pages, page) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
        if pages > 0 && page > 0 {
            return (pages as u64).checked_mul(page as u64);
        }
    }
    None
}

/// Reads into `buf` until it is full or the input ends (a short read is not the end); returns the
/// bytes read. For magic numbers and headers.
pub fn read_up_to(r: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Writes one Arrow batch as a Parquet file, atomically (a temporary file, then a rename).
pub fn write_parquet(path: &Path, batch: &arrow_array::RecordBatch) -> anyhow::Result<()> {
    write_atomic_file(path, |file| {
        let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None)?;
        w.write(batch)?;
        w.close()?;
        Ok(())
    })
    .with_context(|| format!("writing {}", path.display()))
}

/// Rows as left-aligned text columns two spaces apart, each line without trailing blanks; padded
/// by characters, not bytes.
pub fn text_table(rows: &[Vec<String>]) -> String {
    table(rows, false)
}

/// [`text_table`] with a rule of dashes under the first row.
pub fn text_table_ruled(rows: &[Vec<String>]) -> String {
    table(rows, true)
}

fn table(rows: &[Vec<String>], rule: bool) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n).map(|c| rows.iter().filter_map(|r| r.get(c)).map(|x| x.chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
        if rule && i == 0 {
            out.push_str(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  "));
            out.push('\n');
        }
    }
    out
}
