//! The benchmark's Parquet files, schema version [`SCHEMA_VERSION`] (documented in
//! `docs/data.md`). Every file carries the key-value metadata `encore.schema_version`; every file
//! is written to a temporary name, then renamed.
use super::ingest::Log;
use super::sessions::{Dataset, Item, Sessions, User};
use super::split::SplitRows;
use anyhow::{bail, Context};
use arrow_array::builder::{Float32Builder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type, UInt32Type, UInt64Type};
use arrow_array::{Array, ArrayRef, Float32Array, Int64Array, ListArray, RecordBatch, StringArray, UInt32Array, UInt64Array};
use arrow_schema::{DataType, Field};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use std::path::Path;
use std::sync::Arc;

/// The version of the file layout below. Bump it on any change of columns or meaning.
pub const SCHEMA_VERSION: u32 = 1;
/// The metadata key holding [`SCHEMA_VERSION`].
pub const SCHEMA_VERSION_KEY: &str = "encore.schema_version";
/// The manifest kind of a directory from `encore data prepare`.
pub const PREPARED: &str = "prepared";
/// The files of a prepared directory, all listed in its manifest.
pub const PREPARED_FILES: [&str; 6] = ["items.parquet", "users.parquet", "sessions.parquet", "train.parquet", "valid.parquet", "test.parquet"];
/// The manifest kind of a directory from `encore data ingest`.
pub const INGEST: &str = "ingest";

fn u32s(v: &[u32]) -> ArrayRef {
    Arc::new(UInt32Array::from(v.to_vec()))
}

fn strings<'a>(v: impl Iterator<Item = &'a str>) -> ArrayRef {
    let mut b = StringBuilder::new();
    v.for_each(|s| b.append_value(s));
    Arc::new(b.finish())
}

fn list(offsets: &[u32], values: ArrayRef) -> ArrayRef {
    let field = Arc::new(Field::new("item", values.data_type().clone(), true));
    let o: Vec<i32> = offsets.iter().map(|&x| x as i32).collect();
    Arc::new(ListArray::new(field, arrow_buffer::OffsetBuffer::new(o.into()), values, None))
}

fn completion(v: &[Option<f32>]) -> ArrayRef {
    let mut b = Float32Builder::with_capacity(v.len());
    v.iter().for_each(|c| b.append_option(*c));
    Arc::new(b.finish())
}

/// Writes `cols` to `path` with `encore.schema_version` and `extra` metadata, atomically.
pub fn write(path: &Path, cols: Vec<(&str, ArrayRef)>, extra: &[(&str, String)]) -> anyhow::Result<()> {
    let batch = RecordBatch::try_from_iter(cols.into_iter().map(|(n, a)| (n.to_string(), a))).with_context(|| format!("building {}", path.display()))?;
    let mut kv = vec![KeyValue::new(SCHEMA_VERSION_KEY.into(), SCHEMA_VERSION.to_string())];
    kv.extend(extra.iter().map(|(k, v)| KeyValue::new(k.to_string(), v.clone())));
    let mut props = WriterProperties::builder().set_compression(Compression::SNAPPY).set_key_value_metadata(Some(kv));
    // Dictionary encoding only where values repeat: not for timestamps and ratios (nearly all
    // distinct), row numbers, or ids that are unique per row. Trying it costs a hash per value.
    for field in batch.schema().fields() {
        let leaf = match field.data_type() {
            DataType::List(item) => item.data_type().clone(),
            t => t.clone(),
        };
        let unique =
            matches!(field.name().as_str(), "item" | "session" | "line" | "track_id" | "title" | "user_id") && !matches!(field.data_type(), DataType::List(_));
        if unique || matches!(leaf, DataType::Int64 | DataType::Float32) {
            let path = match field.data_type() {
                DataType::List(item) => ColumnPath::new(vec![field.name().clone(), "list".into(), item.name().clone()]),
                _ => ColumnPath::new(vec![field.name().clone()]),
            };
            props = props.set_column_dictionary_enabled(path.clone(), false);
            // Timestamps rise within a session: their deltas pack into a few bits.
            if leaf == DataType::Int64 {
                props = props.set_column_encoding(path, parquet::basic::Encoding::DELTA_BINARY_PACKED);
            }
        }
    }
    let props = props.build();
    crate::io::write_atomic_file(path, |file| {
        let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props))?;
        w.write(&batch)?;
        w.close()?;
        Ok(())
    })
}

/// `events.parquet`, `users.parquet` and `tracks.parquet` of `encore data ingest`: every kept
/// row, in file order, with raw (first-appearance) user and track indices; then their manifest.
/// Call it under the directory's [`crate::artifact::DirLock`].
pub fn write_ingest(dir: &Path, log: &Log, source: &str) -> anyhow::Result<()> {
    crate::artifact::Manifest::remove(dir)?;
    let mut plays = vec![0u64; log.tracks.len()];
    log.track.iter().for_each(|&t| plays[t as usize] += 1);
    write(
        &dir.join("tracks.parquet"),
        vec![
            ("track", Arc::new(UInt32Array::from_iter_values(0..log.tracks.len() as u32))),
            ("track_id", strings(log.tracks.iter().map(|t| t.id.as_str()))),
            ("artist_id", strings(log.tracks.iter().map(|t| t.artist_id.as_str()))),
            ("artist", strings(log.tracks.iter().map(|t| t.artist.as_str()))),
            ("title", strings(log.tracks.iter().map(|t| t.title.as_str()))),
            ("plays", Arc::new(UInt64Array::from(plays))),
        ],
        &[],
    )?;
    write(
        &dir.join("users.parquet"),
        vec![("user", Arc::new(UInt32Array::from_iter_values(0..log.users.len() as u32))), ("user_id", strings(log.users.iter().map(|u| u.as_str())))],
        &[],
    )?;
    write(
        &dir.join("events.parquet"),
        vec![
            ("user", u32s(&log.user)),
            ("ts", Arc::new(Int64Array::from(log.ts.clone()))),
            ("track", u32s(&log.track)),
            ("line", Arc::new(UInt64Array::from(log.line.clone()))),
        ],
        &[],
    )?;
    let mut m = crate::artifact::Manifest::new(INGEST);
    m.inputs.insert("source".into(), source.into());
    for f in ["tracks.parquet", "users.parquet", "events.parquet"] {
        m.add(dir, f)?;
    }
    m.write(dir)?;
    Ok(())
}

/// `items.parquet`, `users.parquet` and `sessions.parquet` of a dataset, with a manifest that
/// lists them (a catalog without splits: enough for `features extract`, not for `train`).
pub fn write_dataset(dir: &Path, d: &Dataset, meta: &[(&str, String)]) -> anyhow::Result<()> {
    let _lock = crate::artifact::DirLock::exclusive(dir, "encore write_dataset")?;
    crate::artifact::Manifest::remove(dir)?;
    let mut m = crate::artifact::Manifest::new(PREPARED);
    for file in DatasetFile::ALL {
        write_dataset_file(dir, d, meta, file)?;
    }
    for f in &PREPARED_FILES[..3] {
        m.add(dir, f)?;
    }
    m.write(dir)?;
    Ok(())
}

/// A prepared directory whose manifest and files were verified, held under a shared lock (no
/// writer can start on it) until dropped.
#[derive(Debug)]
pub struct Verified {
    /// Its manifest.
    pub manifest: crate::artifact::Manifest,
    /// The manifest's digest: the identity of this exact dataset.
    pub digest: String,
    _lock: Option<crate::artifact::DirLock>,
}

/// Locks `dir` for reading and verifies its manifest and every file it lists: a directory left by
/// an interrupted `prepare`, a file from another run, or a flipped bit is refused, naming the file.
pub fn verify_prepared(dir: &Path) -> anyhow::Result<Verified> {
    let lock = crate::artifact::DirLock::shared(dir)?;
    let manifest = crate::artifact::Manifest::verify(dir, PREPARED)?;
    Ok(Verified { digest: manifest.digest(), manifest, _lock: lock })
}

/// One file of a prepared dataset (see [`write_dataset`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetFile {
    /// `items.parquet`.
    Items,
    /// `users.parquet`.
    Users,
    /// `sessions.parquet`.
    Sessions,
}

impl DatasetFile {
    /// The three files, in the order [`write_dataset`] writes them.
    pub const ALL: [DatasetFile; 3] = [DatasetFile::Items, DatasetFile::Users, DatasetFile::Sessions];
}

/// `meta` plus the catalog sizes `encore.n_items` and `encore.n_users`, which every file of a
/// prepared dataset carries (the dataset's three and the splits alike), so a reader of any one
/// file knows the index ranges without opening another.
fn with_counts<'a>(d: &Dataset, meta: &[(&'a str, String)]) -> Vec<(&'a str, String)> {
    let mut meta = meta.to_vec();
    meta.push(("encore.n_items", d.items.len().to_string()));
    meta.push(("encore.n_users", d.users.len().to_string()));
    meta
}

/// Writes one file of [`write_dataset`], so that the three can be written in parallel.
pub fn write_dataset_file(dir: &Path, d: &Dataset, meta: &[(&str, String)], file: DatasetFile) -> anyhow::Result<()> {
    let meta = with_counts(d, meta);
    match file {
        DatasetFile::Items => {
            let mut dur = Float32Builder::new();
            d.items.iter().for_each(|i| dur.append_option(i.duration_s));
            write(
                &dir.join("items.parquet"),
                vec![
                    ("item", Arc::new(UInt32Array::from_iter_values(0..d.items.len() as u32))),
                    ("track_id", strings(d.items.iter().map(|i| i.track.id.as_str()))),
                    ("artist_id", strings(d.items.iter().map(|i| i.track.artist_id.as_str()))),
                    ("artist", strings(d.items.iter().map(|i| i.track.artist.as_str()))),
                    ("title", strings(d.items.iter().map(|i| i.track.title.as_str()))),
                    ("plays", Arc::new(UInt64Array::from_iter_values(d.items.iter().map(|i| i.plays)))),
                    ("duration_s", Arc::new(dur.finish())),
                ],
                &meta,
            )
        }
        DatasetFile::Users => write(
            &dir.join("users.parquet"),
            vec![
                ("user", Arc::new(UInt32Array::from_iter_values(0..d.users.len() as u32))),
                ("user_id", strings(d.users.iter().map(|u| u.id.as_str()))),
                ("sessions", Arc::new(UInt32Array::from_iter_values(d.users.iter().map(|u| u.sessions)))),
                ("plays", Arc::new(UInt64Array::from_iter_values(d.users.iter().map(|u| u.plays)))),
            ],
            &meta,
        ),
        DatasetFile::Sessions => {
            let s = &d.sessions;
            write(
                &dir.join("sessions.parquet"),
                vec![
                    ("session", Arc::new(UInt32Array::from_iter_values(0..s.len() as u32))),
                    ("user", u32s(&s.user)),
                    ("items", list(&s.offsets, u32s(&s.item))),
                    ("ts", list(&s.offsets, Arc::new(Int64Array::from(s.ts.clone())))),
                    ("completion", list(&s.offsets, completion(&s.completion))),
                ],
                &meta,
            )
        }
    }
}

/// One split file (`train.parquet`, `valid.parquet`, `test.parquet`) of the dataset `d`.
pub fn write_split(path: &Path, r: &SplitRows, d: &Dataset, meta: &[(&str, String)]) -> anyhow::Result<()> {
    write(
        path,
        vec![
            ("user", u32s(&r.user)),
            ("session", Arc::new(UInt32Array::from(r.session.clone()))),
            ("items", list(&r.offsets, u32s(&r.item))),
            ("ts", list(&r.offsets, Arc::new(Int64Array::from(r.ts.clone())))),
            ("completion", list(&r.offsets, completion(&r.completion))),
            ("target_from", u32s(&r.target_from)),
        ],
        &with_counts(d, meta),
    )
}

pub(crate) fn batches(path: &Path) -> anyhow::Result<(Vec<RecordBatch>, Option<String>)> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let b = ParquetRecordBatchReaderBuilder::try_new(file).with_context(|| format!("{} is not a readable Parquet file", path.display()))?;
    let version =
        b.metadata().file_metadata().key_value_metadata().and_then(|kv| kv.iter().find(|e| e.key == SCHEMA_VERSION_KEY).and_then(|e| e.value.clone()));
    let r = b.with_batch_size(65_536).build()?;
    let out = r.collect::<Result<Vec<_>, _>>().with_context(|| format!("reading {}", path.display()))?;
    Ok((out, version))
}

pub(crate) fn check_version(path: &Path, v: Option<String>) -> anyhow::Result<()> {
    match v.as_deref() {
        Some(v) if v == SCHEMA_VERSION.to_string() => Ok(()),
        Some(v) => bail!("{}: schema version {v}, this encore reads version {SCHEMA_VERSION}", path.display()),
        None => bail!("{}: no `{SCHEMA_VERSION_KEY}` metadata: not an encore data file", path.display()),
    }
}

pub(crate) fn column<'a>(path: &Path, b: &'a RecordBatch, name: &str) -> anyhow::Result<&'a ArrayRef> {
    b.column_by_name(name).with_context(|| format!("{}: no column `{name}`", path.display()))
}

/// Reads `items.parquet`, `users.parquet` and `sessions.parquet` back from `dir`, verified.
pub fn read_dataset(dir: &Path) -> anyhow::Result<Dataset> {
    let verified = verify_prepared(dir)?;
    read_dataset_verified(dir, &verified)
}

/// [`read_dataset`] of a directory the caller has verified (and holds locked) already.
pub fn read_dataset_verified(dir: &Path, _verified: &Verified) -> anyhow::Result<Dataset> {
    let mut d = Dataset::default();
    let p = dir.join("items.parquet");
    let (bs, v) = batches(&p)?;
    check_version(&p, v)?;
    for b in &bs {
        let s = |n| -> anyhow::Result<&StringArray> { column(&p, b, n)?.as_string_opt::<i32>().with_context(|| format!("{}: `{n}` is not utf8", p.display())) };
        let (id, aid, ar, ti) = (s("track_id")?, s("artist_id")?, s("artist")?, s("title")?);
        let plays = column(&p, b, "plays")?.as_primitive_opt::<UInt64Type>().context("`plays` is not uint64")?;
        let dur = column(&p, b, "duration_s")?.as_primitive_opt::<Float32Type>().context("`duration_s` is not float32")?;
        for i in 0..b.num_rows() {
            let track = super::ingest::Track { id: id.value(i).into(), artist_id: aid.value(i).into(), artist: ar.value(i).into(), title: ti.value(i).into() };
            d.items.push(Item { track, plays: plays.value(i), duration_s: dur.is_valid(i).then(|| dur.value(i)) });
        }
    }
    let p = dir.join("users.parquet");
    let (bs, v) = batches(&p)?;
    check_version(&p, v)?;
    for b in &bs {
        let id = column(&p, b, "user_id")?.as_string_opt::<i32>().context("`user_id` is not utf8")?;
        let se = column(&p, b, "sessions")?.as_primitive_opt::<UInt32Type>().context("`sessions` is not uint32")?;
        let pl = column(&p, b, "plays")?.as_primitive_opt::<UInt64Type>().context("`plays` is not uint64")?;
        for i in 0..b.num_rows() {
            d.users.push(User { id: id.value(i).into(), sessions: se.value(i), plays: pl.value(i) });
        }
    }
    let p = dir.join("sessions.parquet");
    d.sessions = read_sessions(&p)?;
    Ok(d)
}

/// Reads `sessions.parquet` (or a split file, whose rows have the same list columns).
pub fn read_sessions(p: &Path) -> anyhow::Result<Sessions> {
    let (bs, v) = batches(p)?;
    check_version(p, v)?;
    let mut s = Sessions { offsets: vec![0], ..Sessions::default() };
    for b in &bs {
        let user = column(p, b, "user")?.as_primitive_opt::<UInt32Type>().context("`user` is not uint32")?;
        let items = column(p, b, "items")?.as_list_opt::<i32>().context("`items` is not a list")?;
        let ts = column(p, b, "ts")?.as_list_opt::<i32>().context("`ts` is not a list")?;
        let co = column(p, b, "completion")?.as_list_opt::<i32>().context("`completion` is not a list")?;
        for i in 0..b.num_rows() {
            s.user.push(user.value(i));
            let it = items.value(i);
            s.item.extend(it.as_primitive_opt::<UInt32Type>().context("`items` is not list<uint32>")?.values().iter());
            let t = ts.value(i);
            s.ts.extend(t.as_primitive_opt::<Int64Type>().context("`ts` is not list<int64>")?.values().iter());
            let c = co.value(i);
            let c: &Float32Array = c.as_primitive_opt::<Float32Type>().context("`completion` is not list<float32>")?;
            s.completion.extend(c.iter());
            if s.ts.len() != s.item.len() || s.completion.len() != s.item.len() {
                bail!("{}: row {i}: items, ts and completion differ in length", p.display());
            }
            s.offsets.push(s.item.len() as u32);
        }
    }
    Ok(s)
}

/// Reads a split file (`train.parquet`, `valid.parquet`, `test.parquet`) back.
pub fn read_split(p: &Path) -> anyhow::Result<SplitRows> {
    let s = read_sessions(p)?;
    let (bs, _) = batches(p)?;
    let mut r = SplitRows { user: s.user, offsets: s.offsets, item: s.item, ts: s.ts, completion: s.completion, ..SplitRows::default() };
    for b in &bs {
        let tf = column(p, b, "target_from")?.as_primitive_opt::<UInt32Type>().context("`target_from` is not uint32")?;
        let se = column(p, b, "session")?.as_primitive_opt::<UInt32Type>().context("`session` is not uint32")?;
        r.target_from.extend(tf.values().iter());
        r.session.extend(se.iter());
    }
    for i in 0..r.len() {
        let n = r.offsets[i + 1] - r.offsets[i];
        if r.target_from[i] > n {
            bail!("{}: row {i}: target_from {} is past the row's {n} items", p.display(), r.target_from[i]);
        }
    }
    Ok(r)
}

/// The splits of a prepared directory, as [`read_splits`] reads them.
#[derive(Debug)]
pub struct PreparedSplits {
    /// The catalog size (`items.parquet`'s rows).
    pub n_items: usize,
    /// Train, valid and test.
    pub splits: super::split::Splits,
    /// The directory's manifest digest (see [`Verified`]).
    pub digest: String,
}

/// Reads the three split files and the catalog size of a prepared directory, verified (see
/// [`verify_prepared`]). An empty validation or test split is an error.
pub fn read_splits(dir: &Path) -> anyhow::Result<PreparedSplits> {
    let verified = verify_prepared(dir)?;
    read_splits_verified(dir, &verified)
}

/// [`read_splits`] of a directory the caller has verified (and holds locked) already.
pub fn read_splits_verified(dir: &Path, verified: &Verified) -> anyhow::Result<PreparedSplits> {
    let p = dir.join("items.parquet");
    let (bs, v) = batches(&p)?;
    check_version(&p, v)?;
    let n_items = bs.iter().map(|b| b.num_rows()).sum();
    let sp = super::split::Splits {
        train: read_split(&dir.join("train.parquet"))?,
        valid: read_split(&dir.join("valid.parquet"))?,
        test: read_split(&dir.join("test.parquet"))?,
        cuts: None,
    };
    for (name, rows) in [("train", &sp.train), ("valid", &sp.valid), ("test", &sp.test)] {
        if rows.is_empty() {
            bail!(
                "{}: {name}.parquet has no row: nothing to {}; prepare the data with more users or other [split] settings",
                dir.display(),
                if name == "train" { "train on" } else { "evaluate" }
            );
        }
    }
    Ok(PreparedSplits { n_items, splits: sp, digest: verified.digest.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let track = |id: &str| super::super::ingest::Track { id: id.into(), artist_id: "a".into(), artist: "A".into(), title: "T".into() };
        let d = Dataset {
            items: vec![Item { track: track("x"), plays: 2, duration_s: Some(100.0) }, Item { track: track("y"), plays: 1, duration_s: None }],
            users: vec![User { id: "u".into(), sessions: 1, plays: 3 }],
            sessions: Sessions { user: vec![0], offsets: vec![0, 3], item: vec![0, 1, 0], ts: vec![1, 2, 3], completion: vec![Some(0.5), None, Some(0.0)] },
            report: Default::default(),
        };
        write_dataset(dir.path(), &d, &[]).unwrap();
        let back = read_dataset(dir.path()).unwrap();
        assert_eq!(back.items, d.items);
        assert_eq!(back.users, d.users);
        assert_eq!(back.sessions, d.sessions);
    }
}
