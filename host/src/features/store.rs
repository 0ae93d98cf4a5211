//! `features/<name>.parquet` and its batch part files: one row per track, in catalog order.
//!
//! | column | type | meaning |
//! | --- | --- | --- |
//! | `item` | uint32 | index in `items.parquet` |
//! | `track_id` | utf8 | the track |
//! | `vector` | fixed_size_list<float32, dim>, nullable | the features; null when there are none |
//! | `missing` | bool | true when `vector` is null (input missing or corrupt, or the plugin failed) |
//! | `status` | utf8 | `ok`, `missing` (no usable input, or the plugin returned none) or `failed` (the plugin trapped or erred on this track alone) |
//! | `reason` | utf8, nullable | why it is missing or failed, naming the file or the plugin |
//! | `input_key` | utf8 | hash of what the plugin saw for this track (metadata, and the clip's name, size and mtime), for the cache |
//!
//! Key-value metadata: `encore.schema_version`, `encore.features.run_key` (hash of the plugin
//! file, its name, version and parameters, and the audio settings), `encore.features.dim`.
use anyhow::{bail, Context};
use arrow_array::builder::{BooleanBuilder, Float32Builder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, UInt32Type};
use arrow_array::{Array, ArrayRef, FixedSizeListArray, UInt32Array};
use arrow_schema::{DataType, Field};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::path::Path;
use std::sync::Arc;

/// Metadata key of the run key.
pub const RUN_KEY: &str = "encore.features.run_key";
/// Metadata key of the vector width.
pub const DIM_KEY: &str = "encore.features.dim";

/// What happened to one track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// A vector.
    Ok,
    /// No usable input (no clip, an undecodable clip, no annotation) or the plugin returned none.
    Missing,
    /// The plugin trapped or returned an error on this track alone.
    Failed,
}

impl Status {
    /// Its name in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Missing => "missing",
            Status::Failed => "failed",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ok" => Status::Ok,
            "missing" => Status::Missing,
            "failed" => Status::Failed,
            _ => return None,
        })
    }
}

/// One track's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Index in `items.parquet`.
    pub item: u32,
    /// The track.
    pub track_id: String,
    /// Hash of the plugin's input for this track.
    pub input_key: String,
    /// Outcome.
    pub status: Status,
    /// Why it is missing or failed.
    pub reason: Option<String>,
    /// The vector, when `status` is `Ok`.
    pub vector: Option<Vec<f32>>,
}

/// Writes `rows` (vectors of width `dim`) to `path`, atomically, with the run key in the metadata.
pub fn write(path: &Path, rows: &[Row], dim: usize, run_key: &str) -> anyhow::Result<()> {
    let mut values = Float32Builder::with_capacity(rows.len() * dim);
    let mut valid = Vec::with_capacity(rows.len());
    let (mut ids, mut status, mut reason, mut keys) = (StringBuilder::new(), StringBuilder::new(), StringBuilder::new(), StringBuilder::new());
    let mut missing = BooleanBuilder::with_capacity(rows.len());
    for r in rows {
        match &r.vector {
            Some(v) => {
                if v.len() != dim {
                    bail!("{}: track {} has a vector of length {}, expected {dim}", path.display(), r.track_id, v.len());
                }
                values.append_slice(v);
            }
            // Nulls all the way down: a reader that ignores the list's mask still sees no zeros.
            None => (0..dim).for_each(|_| values.append_null()),
        }
        valid.push(r.vector.is_some());
        missing.append_value(r.vector.is_none());
        ids.append_value(&r.track_id);
        status.append_value(r.status.as_str());
        reason.append_option(r.reason.as_deref());
        keys.append_value(&r.input_key);
    }
    let field = Arc::new(Field::new("item", DataType::Float32, true));
    let vectors = FixedSizeListArray::try_new(field, dim as i32, Arc::new(values.finish()), Some(valid.into())).context("building the vector column")?;
    let cols: Vec<(&str, ArrayRef)> = vec![
        ("item", Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.item)))),
        ("track_id", Arc::new(ids.finish())),
        ("vector", Arc::new(vectors)),
        ("missing", Arc::new(missing.finish())),
        ("status", Arc::new(status.finish())),
        ("reason", Arc::new(reason.finish())),
        ("input_key", Arc::new(keys.finish())),
    ];
    crate::data::schema::write(path, cols, &[(RUN_KEY, run_key.to_string()), (DIM_KEY, dim.to_string())])
}

/// A features file read back.
#[derive(Debug, Clone)]
pub struct FeatureFile {
    /// Its rows, in file order.
    pub rows: Vec<Row>,
    /// Vector width.
    pub dim: usize,
    /// The run key it was computed under.
    pub run_key: Option<String>,
}

/// The manifest `encore features extract` writes next to `<name>.parquet`: `<name>.manifest.toml`.
pub fn manifest_path(path: &Path) -> std::path::PathBuf {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!("{stem}.manifest.toml"))
}

/// Writes the manifest of the features file `path` ([`manifest_path`]): `fields` plus the file's
/// `sha256` and `bytes`, atomically. Call it after the file is written; readers check the file
/// against it ([`verify`]).
pub fn write_manifest(path: &Path, mut fields: toml::Table) -> anyhow::Result<()> {
    let (sha, bytes) = crate::artifact::sha256_file(path).with_context(|| format!("hashing {}", path.display()))?;
    fields.insert("sha256".into(), sha.into());
    fields.insert("bytes".into(), (bytes as i64).into());
    let text = toml::to_string(&fields)?;
    crate::io::write_atomic(&manifest_path(path), |w| std::io::Write::write_all(w, text.as_bytes()))
}

/// Checks `path` against the SHA-256 its manifest records ([`manifest_path`]); returns it.
pub fn verify(path: &Path) -> anyhow::Result<String> {
    let m = manifest_path(path);
    let rerun = "rerun `encore features extract` to write it again";
    let text = std::fs::read_to_string(&m).with_context(|| format!("{}: cannot read its manifest {} ({rerun})", path.display(), m.display()))?;
    let t: toml::Table = toml::from_str(&text).with_context(|| format!("{}: not a features manifest ({rerun})", m.display()))?;
    let want = t.get("sha256").and_then(toml::Value::as_str).with_context(|| format!("{}: no `sha256` ({rerun})", m.display()))?;
    let (sha, _) = crate::artifact::sha256_file(path).with_context(|| format!("reading {}", path.display()))?;
    if sha != want {
        bail!("{}: its SHA-256 is {sha}, but {} records {want}: the file was damaged or changed after it was written; {rerun}", path.display(), m.display());
    }
    Ok(sha)
}

/// [`read`], after [`verify`]: how every reader of `encore features extract`'s output reads it.
pub fn read_verified(path: &Path) -> anyhow::Result<FeatureFile> {
    verify(path)?;
    read(path)
}

/// Reads a features file (or a part file) written by [`write`], unverified.
pub fn read(path: &Path) -> anyhow::Result<FeatureFile> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let b = ParquetRecordBatchReaderBuilder::try_new(file).with_context(|| format!("{} is not a readable Parquet file", path.display()))?;
    let kv = |k: &str| b.metadata().file_metadata().key_value_metadata().and_then(|kv| kv.iter().find(|e| e.key == k).and_then(|e| e.value.clone()));
    crate::data::schema::check_version(path, kv(crate::data::schema::SCHEMA_VERSION_KEY))?;
    let run_key = kv(RUN_KEY);
    let dim: usize =
        kv(DIM_KEY).and_then(|d| d.parse().ok()).with_context(|| format!("{}: no `{DIM_KEY}` metadata: not an encore features file", path.display()))?;
    let mut rows = Vec::new();
    for batch in b.build()? {
        let batch = batch.with_context(|| format!("reading {}", path.display()))?;
        let col = |n| crate::data::schema::column(path, &batch, n);
        let item = col("item")?.as_primitive_opt::<UInt32Type>().with_context(|| format!("{}: `item` is not uint32", path.display()))?;
        let s = |n| -> anyhow::Result<_> { col(n)?.as_string_opt::<i32>().with_context(|| format!("{}: `{n}` is not utf8", path.display())) };
        let (ids, status, reason, keys) = (s("track_id")?, s("status")?, s("reason")?, s("input_key")?);
        let vec = col("vector")?.as_fixed_size_list_opt().with_context(|| format!("{}: `vector` is not a fixed-size list", path.display()))?;
        if vec.value_length() as usize != dim {
            bail!("{}: vectors of width {}, the metadata says {dim}", path.display(), vec.value_length());
        }
        let values = vec.values().as_primitive_opt::<Float32Type>().with_context(|| format!("{}: `vector` is not a list of float32", path.display()))?;
        for i in 0..batch.num_rows() {
            let st = Status::parse(status.value(i)).with_context(|| format!("{}: row {i}: unknown status {:?}", path.display(), status.value(i)))?;
            let vector = vec.is_valid(i).then(|| values.values()[i * dim..(i + 1) * dim].to_vec());
            if (st == Status::Ok) != vector.is_some() {
                bail!("{}: row {i}: status {} but the vector is {}", path.display(), st.as_str(), if vector.is_some() { "present" } else { "null" });
            }
            rows.push(Row {
                item: item.value(i),
                track_id: ids.value(i).to_string(),
                input_key: keys.value(i).to_string(),
                status: st,
                reason: reason.is_valid(i).then(|| reason.value(i).to_string()),
                vector,
            });
        }
    }
    Ok(FeatureFile { rows, dim, run_key })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_with_nulls_for_missing_vectors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.parquet");
        let rows = vec![
            Row { item: 0, track_id: "a".into(), input_key: "k0".into(), status: Status::Ok, reason: None, vector: Some(vec![1.0, -2.0, 3.5]) },
            Row { item: 1, track_id: "b".into(), input_key: "k1".into(), status: Status::Missing, reason: Some("no clip".into()), vector: None },
            Row { item: 2, track_id: "c".into(), input_key: "k2".into(), status: Status::Failed, reason: Some("trap".into()), vector: None },
        ];
        write(&p, &rows, 3, "run").unwrap();
        let back = read(&p).unwrap();
        assert_eq!(back.rows, rows);
        assert_eq!((back.dim, back.run_key.as_deref()), (3, Some("run")));
    }
}
