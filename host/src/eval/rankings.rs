//! Precomputed rankings in Parquet, for `encore eval --rankings`.
//!
//! Schema (version 1): `user` (utf8 or any integer), `ranked` (list of non-negative integers: item
//! indices, best first), `targets` (list of non-negative integers). The catalog size is the
//! file's key-value metadata `encore.n_items`, or `--n-items`.
use crate::plugins::metric::Ranking;
use anyhow::{bail, Context};
use arrow_array::builder::{ListBuilder, StringBuilder, UInt32Builder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, UInt32Type, UInt64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use std::path::Path;
use std::sync::Arc;

/// The metadata key holding the catalog size.
pub const N_ITEMS_KEY: &str = "encore.n_items";

/// Rankings read from a file, validated.
#[derive(Debug, Clone)]
pub struct RankingsFile {
    /// User ids, as text, in file order (users without targets included).
    pub users: Vec<String>,
    /// One ranking per user with targets; targets deduplicated.
    pub rankings: Vec<Ranking>,
    /// Users skipped because they have no targets.
    pub skipped_no_targets: usize,
    /// The catalog size.
    pub n_items: u32,
}

/// Reads and validates `path`. `n_items` overrides the file's metadata. Errors name the file and
/// the row (0-based, counting from the first row of the file). A null list is an error, and so is
/// a file without a single user with targets. A panic of the Parquet reader on a corrupt file
/// is this file's error.
pub fn read(path: &Path, n_items: Option<u32>) -> anyhow::Result<RankingsFile> {
    crate::unwind::contain(|| read_unguarded(path, n_items))
        .unwrap_or_else(|message| bail!("{}: the Parquet reader failed on this file (it is corrupt; write it again): {message}", path.display()))
}

fn read_unguarded(path: &Path, n_items: Option<u32>) -> anyhow::Result<RankingsFile> {
    // Read whole, then parsed from memory: parquet's thrift reader can take a corrupt page header
    // one byte at a time, a system call each from a file (a 1.3 KB file took 55 s).
    let file = bytes::Bytes::from(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?);
    let builder = ParquetRecordBatchReaderBuilder::try_new(file.clone()).with_context(|| format!("{} is not a readable Parquet file", path.display()))?;
    page_headers::check(&file, builder.metadata()).map_err(|why| anyhow::anyhow!("{}: corrupt Parquet page: {why}; write the file again", path.display()))?;
    let meta_n = builder.metadata().file_metadata().key_value_metadata().and_then(|kv| kv.iter().find(|e| e.key == N_ITEMS_KEY).and_then(|e| e.value.clone()));
    let n_items = match (n_items, meta_n) {
        (Some(n), _) => n,
        (None, Some(v)) => v.parse().with_context(|| format!("{}: metadata {N_ITEMS_KEY} = {v:?} is not a count", path.display()))?,
        (None, None) => bail!("{}: the catalog size is unknown: pass --n-items N, or write the key `{N_ITEMS_KEY}` in the file's metadata", path.display()),
    };
    let reader = builder.build().with_context(|| format!("reading {}", path.display()))?;
    let mut out = RankingsFile { users: Vec::new(), rankings: Vec::new(), skipped_no_targets: 0, n_items };
    let mut row = 0usize;
    for batch in reader {
        let batch = batch.with_context(|| format!("reading {}", path.display()))?;
        let col = |name: &str| {
            batch
                .column_by_name(name)
                .cloned()
                .with_context(|| format!("{}: no column `{name}` (the file needs `user`, `ranked` and `targets`)", path.display()))
        };
        let users = texts(&col("user")?).with_context(|| format!("{}: column `user`", path.display()))?;
        let ranked = lists(&col("ranked")?, row).with_context(|| format!("{}: column `ranked`", path.display()))?;
        let targets = lists(&col("targets")?, row).with_context(|| format!("{}: column `targets`", path.display()))?;
        for ((user, ranked), targets) in users.into_iter().zip(ranked).zip(targets) {
            // A null list is not an empty one: read as empty, a null ranking would score 0 and
            // pass unnoticed.
            let ranking = match (ranked, targets) {
                (Some(ranked), Some(targets)) => validate(ranked, targets, n_items),
                (None, _) => Err(anyhow::anyhow!("`ranked` is null: write the ranked items, best first")),
                (_, None) => Err(anyhow::anyhow!("`targets` is null: write the target items (an empty list skips the user)")),
            }
            .with_context(|| format!("{}: row {row} (user {user})", path.display()))?;
            match ranking {
                Some(r) => out.rankings.push(r),
                None => out.skipped_no_targets += 1,
            }
            out.users.push(user);
            row += 1;
        }
    }
    // Every metric would read 0 over no users; that is no evaluation, not a result.
    if out.rankings.is_empty() {
        bail!(
            "{}: no user to evaluate: {row} rows, {} of them without targets; each row needs `ranked` and at least one item in `targets`",
            path.display(),
            out.skipped_no_targets
        );
    }
    Ok(out)
}

/// Checks one ranking: items in the catalog, no item twice in `ranked`. Deduplicates targets.
/// Returns `None` for a user without targets.
pub fn validate(ranked: Vec<u32>, mut targets: Vec<u32>, n_items: u32) -> anyhow::Result<Option<Ranking>> {
    if let Some(i) = ranked.iter().chain(&targets).find(|&&i| i >= n_items) {
        bail!("item {i} is outside the catalog of {n_items} items");
    }
    let mut sorted = ranked.clone();
    sorted.sort_unstable();
    if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
        bail!("item {} appears twice in the ranking", w[0]);
    }
    targets.sort_unstable();
    targets.dedup();
    if targets.is_empty() {
        return Ok(None);
    }
    Ok(Some(Ranking { ranked, targets }))
}

fn texts(a: &ArrayRef) -> anyhow::Result<Vec<String>> {
    let n = a.len();
    Ok(match a.data_type() {
        DataType::Utf8 => a.as_string::<i32>().iter().map(|s| s.unwrap_or("").to_string()).collect(),
        DataType::LargeUtf8 => a.as_string::<i64>().iter().map(|s| s.unwrap_or("").to_string()).collect(),
        DataType::Int32 => a.as_primitive::<Int32Type>().iter().map(|v| v.map_or(String::new(), |v| v.to_string())).collect(),
        DataType::Int64 => a.as_primitive::<Int64Type>().iter().map(|v| v.map_or(String::new(), |v| v.to_string())).collect(),
        DataType::UInt32 => a.as_primitive::<UInt32Type>().iter().map(|v| v.map_or(String::new(), |v| v.to_string())).collect(),
        DataType::UInt64 => a.as_primitive::<UInt64Type>().iter().map(|v| v.map_or(String::new(), |v| v.to_string())).collect(),
        t => bail!("type {t} is not text or an integer ({n} rows)"),
    })
}

/// The lists of a column, `None` for a null list.
fn lists(a: &ArrayRef, first_row: usize) -> anyhow::Result<Vec<Option<Vec<u32>>>> {
    let (offsets, values): (Vec<usize>, ArrayRef) = match a.data_type() {
        DataType::List(_) => {
            let l = a.as_list::<i32>();
            (l.value_offsets().iter().map(|&o| o as usize).collect(), l.values().clone())
        }
        DataType::LargeList(_) => {
            let l = a.as_list::<i64>();
            (l.value_offsets().iter().map(|&o| o as usize).collect(), l.values().clone())
        }
        t => bail!("type {t} is not a list"),
    };
    let flat: Vec<Option<i128>> = match values.data_type() {
        DataType::UInt32 => values.as_primitive::<UInt32Type>().iter().map(|v| v.map(i128::from)).collect(),
        DataType::Int32 => values.as_primitive::<Int32Type>().iter().map(|v| v.map(i128::from)).collect(),
        DataType::Int64 => values.as_primitive::<Int64Type>().iter().map(|v| v.map(i128::from)).collect(),
        DataType::UInt64 => values.as_primitive::<UInt64Type>().iter().map(|v| v.map(i128::from)).collect(),
        t => bail!("list elements of type {t} are not integers"),
    };
    let mut out = Vec::with_capacity(a.len());
    for r in 0..a.len() {
        if a.is_null(r) {
            out.push(None);
            continue;
        }
        let mut v = Vec::with_capacity(offsets[r + 1] - offsets[r]);
        for x in &flat[offsets[r]..offsets[r + 1]] {
            match x {
                Some(x) if (0..=u32::MAX as i128).contains(x) => v.push(*x as u32),
                Some(x) => bail!("row {}: item {x} is not a valid item index", first_row + r),
                None => bail!("row {}: a null item", first_row + r),
            }
        }
        out.push(Some(v));
    }
    Ok(out)
}

/// Writes rankings (atomically) in the schema [`read`] takes, with `n_items` in the metadata.
pub fn write(path: &Path, users: &[String], ranked: &[Vec<u32>], targets: &[Vec<u32>], n_items: u32) -> anyhow::Result<()> {
    assert!(users.len() == ranked.len() && users.len() == targets.len());
    let mut u = StringBuilder::new();
    let mut r = ListBuilder::new(UInt32Builder::new());
    let mut t = ListBuilder::new(UInt32Builder::new());
    for i in 0..users.len() {
        u.append_value(&users[i]);
        r.values().append_slice(&ranked[i]);
        r.append(true);
        t.values().append_slice(&targets[i]);
        t.append(true);
    }
    let batch = RecordBatch::try_from_iter([
        ("user", Arc::new(u.finish()) as ArrayRef),
        ("ranked", Arc::new(r.finish()) as ArrayRef),
        ("targets", Arc::new(t.finish()) as ArrayRef),
    ])?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_key_value_metadata(Some(vec![KeyValue::new(N_ITEMS_KEY.to_string(), n_items.to_string())]))
        .build();
    crate::io::write_atomic_file(path, |file| {
        let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props))?;
        w.write(&batch)?;
        w.close()?;
        Ok(())
    })
}

/// Every page header of a Parquet file, walked before the Parquet reader decodes any: parquet
/// 60.1 reads page headers from a stream, and a corrupt one can cost it a system call per byte
/// (55 s for 1.3 KB) or a gigabyte of memory for a collection or page size it declares. Here
/// each header is decoded (Thrift compact protocol) from the bytes of its column chunk, and a
/// size that cannot fit there, a nesting deeper than 32 or a page declaring more than 64 MiB
/// beyond 1,024 times its stored size is refused.
mod page_headers {
    use parquet::file::metadata::ParquetMetaData;

    struct Walk<'a> {
        buf: &'a [u8],
        pos: usize,
    }

    impl Walk<'_> {
        fn byte(&mut self) -> Result<u8, String> {
            let b = *self.buf.get(self.pos).ok_or("a page header runs past its column chunk")?;
            self.pos += 1;
            Ok(b)
        }
        fn varint(&mut self) -> Result<u64, String> {
            let mut v = 0u64;
            for shift in (0..70).step_by(7) {
                let b = self.byte()?;
                v |= u64::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
                if b & 0x80 == 0 {
                    return Ok(v);
                }
            }
            Err("a varint longer than 10 bytes".into())
        }
        fn zigzag(&mut self) -> Result<i64, String> {
            let v = self.varint()?;
            Ok((v >> 1) as i64 ^ -((v & 1) as i64))
        }
        fn skip(&mut self, n: u64) -> Result<(), String> {
            let n = usize::try_from(n).map_err(|_| "a size beyond memory")?;
            if n > self.buf.len() - self.pos {
                return Err(format!("a field of {n} bytes where {} remain", self.buf.len() - self.pos));
            }
            self.pos += n;
            Ok(())
        }
        /// Skips one value of compact type `t`.
        fn value(&mut self, t: u8, depth: usize) -> Result<(), String> {
            if depth > 32 {
                return Err("nested deeper than 32".into());
            }
            match t {
                1 | 2 => Ok(()),
                3 => self.skip(1),
                4..=6 => self.varint().map(drop),
                7 => self.skip(8),
                8 => {
                    let n = self.varint()?;
                    self.skip(n)
                }
                9 | 10 => {
                    let h = self.byte()?;
                    let n = match h >> 4 {
                        15 => self.varint()?,
                        n => u64::from(n),
                    };
                    if n > (self.buf.len() - self.pos) as u64 {
                        return Err(format!("a list of {n} elements where {} bytes remain", self.buf.len() - self.pos));
                    }
                    (0..n).try_for_each(|_| if h & 0x0f <= 2 { self.skip(1) } else { self.value(h & 0x0f, depth + 1) })
                }
                11 => {
                    let n = self.varint()?;
                    if n == 0 {
                        return Ok(());
                    }
                    if n > (self.buf.len() - self.pos) as u64 {
                        return Err(format!("a map of {n} entries where {} bytes remain", self.buf.len() - self.pos));
                    }
                    let kv = self.byte()?;
                    (0..n).try_for_each(|_| {
                        self.value(kv >> 4, depth + 1)?;
                        self.value(kv & 0x0f, depth + 1)
                    })
                }
                12 => self.fields(depth + 1, |_, _, _| Ok(false)).map(drop),
                t => Err(format!("unknown Thrift type {t}")),
            }
        }
        /// Walks a struct's fields; `read(id, type, walk)` may consume a field itself (true).
        fn fields(&mut self, depth: usize, mut read: impl FnMut(i16, u8, &mut Self) -> Result<bool, String>) -> Result<(), String> {
            let mut id = 0i16;
            loop {
                let h = self.byte()?;
                let t = h & 0x0f;
                if t == 0 {
                    return Ok(());
                }
                id = match h >> 4 {
                    0 => i16::try_from(self.zigzag()?).map_err(|_| "a field id out of range")?,
                    d => id.checked_add(i16::from(d)).ok_or("a field id out of range")?,
                };
                if !read(id, t, self)? {
                    self.value(t, depth)?;
                }
            }
        }
    }

    /// Walks every page of every column chunk of `file`.
    pub fn check(file: &[u8], meta: &ParquetMetaData) -> Result<(), String> {
        for rg in meta.row_groups() {
            for col in rg.columns() {
                let start = col.dictionary_page_offset().filter(|&d| d > 0).unwrap_or(col.data_page_offset());
                let len = col.compressed_size();
                let (Ok(start), Ok(len)) = (usize::try_from(start), usize::try_from(len)) else { return Err("a column chunk at a negative offset".into()) };
                let chunk = start.checked_add(len).and_then(|end| file.get(start..end)).ok_or("a column chunk past the end of the file")?;
                let mut w = Walk { buf: chunk, pos: 0 };
                while w.pos < chunk.len() {
                    let (mut stored, mut declared, mut values) = (None, None, 0i64);
                    w.fields(0, |id, t, w| match (id, t) {
                        (2, 5) => w.zigzag().map(|v| declared = Some(v)).map(|_| true),
                        (3, 5) => w.zigzag().map(|v| stored = Some(v)).map(|_| true),
                        (5 | 7 | 8, 12) => w
                            .fields(1, |id, t, w| match (id, t) {
                                (1, 5) => w.zigzag().map(|v| values = v).map(|_| true),
                                _ => Ok(false),
                            })
                            .map(|_| true),
                        _ => Ok(false),
                    })?;
                    let (Some(stored), Some(declared)) = (stored, declared) else { return Err("a page header without its sizes".into()) };
                    if stored < 0 || declared < 0 || values < 0 {
                        return Err(format!("negative sizes (stored {stored}, declared {declared}, values {values})"));
                    }
                    if declared > (64 << 20) + 1024 * stored || values > (64 << 20) + 64 * declared {
                        return Err(format!("a page of {stored} bytes declares {declared} bytes and {values} values"));
                    }
                    w.skip(stored as u64)?;
                }
            }
        }
        Ok(())
    }
}
