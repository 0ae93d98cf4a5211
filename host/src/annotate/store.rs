//! Files of the annotation step: the tracks to annotate (a prepared dataset's `items.parquet`,
//! with tags and lyrics from a `tracks.tsv` side-car), the annotation Parquet it writes, and the
//! gene files `validate` compares (an annotation Parquet, or a `tracks.tsv` with an `mgphot`
//! column, as `encore data synth` writes).
//!
//! The annotation file (`encore.annotation_version` = [`ANNOTATION_VERSION`]), one row per track:
//! `item` uint32, `track_id` utf8, `artist` utf8, `title` utf8, `status` utf8 (`ok` | `failed`),
//! `error` utf8 (null when ok), `attempts` uint32, `model` utf8, `prompt_version` utf8, then the 58
//! genes as uint8 columns named as in `configs/mgphot/genes.tsv` (the 0–5 ratings; null when
//! failed), and `mgphot` list<float32> (the ratings divided by 5, the value of a track's
//! `mgphot` field for the extractor plugins; null when failed).
use super::prompt::TrackText;
use crate::features::mgphot::{genes, N_GENES};
use anyhow::{bail, Context};
use arrow_array::builder::{Float32Builder, ListBuilder, StringBuilder, UInt32Builder, UInt8Builder};
use arrow_array::cast::AsArray;
use arrow_array::types::{UInt32Type, UInt64Type, UInt8Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Version of the annotation file layout.
pub const ANNOTATION_VERSION: u32 = 1;

/// One row of the annotation file.
#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    /// Item index in the prepared dataset.
    pub item: u32,
    /// Track id.
    pub track_id: String,
    /// Artist.
    pub artist: String,
    /// Title.
    pub title: String,
    /// The ratings, or the reason of the failure.
    pub ratings: Result<[u8; N_GENES], String>,
    /// Answers asked.
    pub attempts: u32,
    /// Model.
    pub model: String,
    /// Prompt version.
    pub prompt_version: String,
}

fn batches(path: &Path) -> anyhow::Result<Vec<RecordBatch>> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let r = ParquetRecordBatchReaderBuilder::try_new(f).with_context(|| format!("{}: not a Parquet file", path.display()))?.build()?;
    r.collect::<Result<Vec<_>, _>>().with_context(|| format!("reading {}", path.display()))
}

fn col<'a>(path: &Path, b: &'a RecordBatch, name: &str) -> anyhow::Result<&'a ArrayRef> {
    b.column_by_name(name).with_context(|| format!("{}: no column `{name}`", path.display()))
}

/// The `top` most-played items of `data_dir/items.parquet` (ties: lower item index first), with
/// tags and lyrics from `side_car` (a `tracks.tsv` with `track_id`, and optionally `tags` and
/// `lyrics` columns) when given.
pub fn select_tracks(data_dir: &Path, side_car: Option<&Path>, top: usize) -> anyhow::Result<Vec<TrackText>> {
    let p = data_dir.join("items.parquet");
    let mut rows: Vec<(u64, TrackText)> = Vec::new();
    for b in batches(&p)? {
        let s = |n| -> anyhow::Result<_> { col(&p, &b, n)?.as_string_opt::<i32>().with_context(|| format!("{}: `{n}` is not utf8", p.display())) };
        let (id, artist, title) = (s("track_id")?, s("artist")?, s("title")?);
        let item = col(&p, &b, "item")?.as_primitive_opt::<UInt32Type>().with_context(|| format!("{}: `item` is not uint32", p.display()))?;
        let plays = col(&p, &b, "plays")?.as_primitive_opt::<UInt64Type>().with_context(|| format!("{}: `plays` is not uint64", p.display()))?;
        for i in 0..b.num_rows() {
            let t = TrackText {
                item: item.value(i),
                track_id: id.value(i).into(),
                artist: artist.value(i).into(),
                title: title.value(i).into(),
                tags: vec![],
                lyrics: None,
            };
            rows.push((plays.value(i), t));
        }
    }
    rows.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.item.cmp(&b.1.item)));
    rows.truncate(top);
    let mut tracks: Vec<TrackText> = rows.into_iter().map(|r| r.1).collect();
    if let Some(sc) = side_car {
        let table = read_side_car(sc)?;
        for t in &mut tracks {
            if let Some(row) = table.get(&t.track_id) {
                t.tags = row.tags.clone();
                t.lyrics = row.lyrics.clone();
            }
        }
    }
    Ok(tracks)
}

/// One row of a `tracks.tsv` side-car.
#[derive(Debug, Clone, Default)]
pub struct SideCarRow {
    /// Tags.
    pub tags: Vec<String>,
    /// Lyrics.
    pub lyrics: Option<String>,
    /// Genes in [0, 1], from the `mgphot` column.
    pub mgphot: Option<Vec<f32>>,
}

/// Reads a `tracks.tsv` side-car (plain or gzip; tab-separated, with a header naming `track_id` and any of
/// `tags` (comma-separated), `lyrics`, `mgphot` (58 comma-separated values in [0, 1])).
pub fn read_side_car(path: &Path) -> anyhow::Result<HashMap<String, SideCarRow>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let text = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut flate2::read::MultiGzDecoder::new(&bytes[..]), &mut s)
            .with_context(|| format!("decompressing {}", path.display()))?;
        s
    } else {
        String::from_utf8(bytes).with_context(|| format!("{}: not UTF-8", path.display()))?
    };
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().with_context(|| format!("{}: empty file", path.display()))?.split('\t').collect();
    let at = |n: &str| header.iter().position(|h| *h == n);
    let id = at("track_id").with_context(|| format!("{}:1: no `track_id` column in the header", path.display()))?;
    let (tags, lyrics, mgphot) = (at("tags"), at("lyrics"), at("mgphot"));
    let mut out = HashMap::new();
    for (n, line) in lines.enumerate() {
        if line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != header.len() {
            bail!("{}:{}: {} fields, the header has {}", path.display(), n + 2, f.len(), header.len());
        }
        let mut row = SideCarRow {
            tags: tags.map(|i| f[i].split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()).unwrap_or_default(),
            lyrics: lyrics.map(|i| f[i].to_string()).filter(|l| !l.is_empty()),
            mgphot: None,
        };
        if let Some(i) = mgphot.filter(|&i| !f[i].is_empty()) {
            let v: Vec<f32> = f[i]
                .split(',')
                .map(|x| x.trim().parse::<f32>())
                .collect::<Result<_, _>>()
                .map_err(|e| anyhow::anyhow!("{}:{}: mgphot: {e}", path.display(), n + 2))?;
            if v.len() != N_GENES || v.iter().any(|x| !(0.0..=1.0).contains(x)) {
                bail!("{}:{}: mgphot must be {N_GENES} values in [0, 1], got {} values", path.display(), n + 2, v.len());
            }
            row.mgphot = Some(v);
        }
        out.insert(f[id].to_string(), row);
    }
    Ok(out)
}

/// Writes the annotation file, atomically.
pub fn write_annotations(path: &Path, rows: &[Annotation]) -> anyhow::Result<()> {
    let mut item = UInt32Builder::new();
    let mut attempts = UInt32Builder::new();
    let (mut id, mut artist, mut title, mut status, mut error, mut model, mut version) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let mut gene_cols: Vec<UInt8Builder> = (0..N_GENES).map(|_| UInt8Builder::new()).collect();
    let mut scaled = ListBuilder::new(Float32Builder::new());
    for r in rows {
        item.append_value(r.item);
        id.append_value(&r.track_id);
        artist.append_value(&r.artist);
        title.append_value(&r.title);
        attempts.append_value(r.attempts);
        model.append_value(&r.model);
        version.append_value(&r.prompt_version);
        match &r.ratings {
            Ok(g) => {
                status.append_value("ok");
                error.append_null();
                for (b, &v) in gene_cols.iter_mut().zip(g) {
                    b.append_value(v);
                }
                g.iter().for_each(|&v| scaled.values().append_value(v as f32 / 5.0));
                scaled.append(true);
            }
            Err(e) => {
                status.append_value("failed");
                error.append_value(e);
                gene_cols.iter_mut().for_each(|b| b.append_null());
                scaled.append(false);
            }
        }
    }
    let table = genes();
    let mut cols: Vec<(&str, ArrayRef)> = vec![
        ("item", Arc::new(item.finish())),
        ("track_id", Arc::new(id.finish())),
        ("artist", Arc::new(artist.finish())),
        ("title", Arc::new(title.finish())),
        ("status", Arc::new(status.finish())),
        ("error", Arc::new(error.finish())),
        ("attempts", Arc::new(attempts.finish())),
        ("model", Arc::new(model.finish())),
        ("prompt_version", Arc::new(version.finish())),
    ];
    for (g, mut b) in table.iter().zip(gene_cols) {
        cols.push((g.name, Arc::new(b.finish())));
    }
    cols.push(("mgphot", Arc::new(scaled.finish())));
    crate::data::schema::write(path, cols, &[("encore.annotation_version", ANNOTATION_VERSION.to_string())])
}

/// Reads an annotation file back.
pub fn read_annotations(path: &Path) -> anyhow::Result<Vec<Annotation>> {
    let table = genes();
    let mut out = Vec::new();
    for b in batches(path)? {
        let s = |n| -> anyhow::Result<_> { col(path, &b, n)?.as_string_opt::<i32>().with_context(|| format!("{}: `{n}` is not utf8", path.display())) };
        let (id, artist, title, status, error, model, version) =
            (s("track_id")?, s("artist")?, s("title")?, s("status")?, s("error")?, s("model")?, s("prompt_version")?);
        let u32c =
            |n| -> anyhow::Result<_> { col(path, &b, n)?.as_primitive_opt::<UInt32Type>().with_context(|| format!("{}: `{n}` is not uint32", path.display())) };
        let (item, attempts) = (u32c("item")?, u32c("attempts")?);
        let gcols = table
            .iter()
            .map(|g| {
                col(path, &b, g.name)?.as_primitive_opt::<UInt8Type>().with_context(|| format!("{}: gene column `{}` is not uint8", path.display(), g.name))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        for i in 0..b.num_rows() {
            let ratings = match status.value(i) {
                "ok" => {
                    let mut r = [0u8; N_GENES];
                    for (g, c) in gcols.iter().enumerate() {
                        if c.is_null(i) || c.value(i) > 5 {
                            bail!("{}: row {i} (track {}) is ok but gene `{}` is null or above 5", path.display(), id.value(i), table[g].name);
                        }
                        r[g] = c.value(i);
                    }
                    Ok(r)
                }
                "failed" => Err(if error.is_null(i) { String::new() } else { error.value(i).to_string() }),
                other => bail!("{}: row {i}: status {other:?} is neither \"ok\" nor \"failed\"", path.display()),
            };
            out.push(Annotation {
                item: item.value(i),
                track_id: id.value(i).into(),
                artist: artist.value(i).into(),
                title: title.value(i).into(),
                ratings,
                attempts: attempts.value(i),
                model: model.value(i).into(),
                prompt_version: version.value(i).into(),
            });
        }
    }
    Ok(out)
}

/// The genes of each track in [0, 1] (ratings divided by 5), from an annotation Parquet (rows
/// with status `ok`) or from a `tracks.tsv` with an `mgphot` column. This is what a track's
/// `mgphot` field holds for the extractor plugins.
pub fn read_genes(path: &Path) -> anyhow::Result<HashMap<String, Vec<f32>>> {
    let is_parquet = std::fs::File::open(path)
        .and_then(|mut f| {
            let mut magic = [0u8; 4];
            std::io::Read::read_exact(&mut f, &mut magic).map(|_| &magic == b"PAR1")
        })
        .unwrap_or(false);
    if is_parquet {
        Ok(read_annotations(path)?.into_iter().filter_map(|a| a.ratings.ok().map(|r| (a.track_id, r.iter().map(|&v| v as f32 / 5.0).collect()))).collect())
    } else {
        let rows = read_side_car(path)?;
        Ok(rows.into_iter().filter_map(|(id, r)| r.mgphot.map(|m| (id, m))).collect())
    }
}
