//! The tracks an extractor sees: the catalog of a prepared dataset (`items.parquet`: item index,
//! track id, artist, title, duration) joined by `track_id` with an optional side-car item table
//! (a TSV such as `encore data synth`'s `tracks.tsv`, plain or gzipped) that adds tags, lyrics and
//! the MGPHot annotation.
use crate::data::schema;
use crate::data::FastMap;
use crate::plugins::Track;
use anyhow::{bail, Context};
use arrow_array::cast::AsArray;
use arrow_array::types::Float32Type;
use arrow_array::Array;
use std::io::BufRead;
use std::path::Path;

/// Reads `items.parquet` of a prepared dataset: one [`Track`] per item, by dense index, with no
/// tags, lyrics or annotation yet.
pub fn read_items(prepared: &Path) -> anyhow::Result<Vec<Track>> {
    let _lock = crate::artifact::DirLock::shared(prepared)?;
    crate::artifact::Manifest::read(prepared, schema::PREPARED)?.verify_file(prepared, "items.parquet")?;
    let p = prepared.join("items.parquet");
    let (bs, v) = schema::batches(&p)?;
    schema::check_version(&p, v)?;
    let mut out = Vec::new();
    for b in &bs {
        let s = |n| -> anyhow::Result<_> { schema::column(&p, b, n)?.as_string_opt::<i32>().with_context(|| format!("{}: `{n}` is not utf8", p.display())) };
        let (id, ar, ti) = (s("track_id")?, s("artist")?, s("title")?);
        let dur =
            schema::column(&p, b, "duration_s")?.as_primitive_opt::<Float32Type>().with_context(|| format!("{}: `duration_s` is not float32", p.display()))?;
        for i in 0..b.num_rows() {
            out.push(Track {
                index: out.len() as u32,
                track_id: id.value(i).into(),
                artist: ar.value(i).into(),
                title: ti.value(i).into(),
                duration_s: dur.is_valid(i).then(|| dur.value(i)),
                tags: vec![],
                lyrics: None,
                mgphot: None,
            });
        }
    }
    Ok(out)
}

/// What a side-car table adds to a track. Empty cells are `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SideRow {
    /// `duration_s`.
    pub duration_s: Option<f32>,
    /// `tags`, comma-separated.
    pub tags: Vec<String>,
    /// `lyrics`.
    pub lyrics: Option<String>,
    /// `mgphot`: 58 comma-separated values in [0, 1].
    pub mgphot: Option<Vec<f32>>,
}

/// Reads a side-car item table: a TSV whose header names `track_id` and any of `duration_s`,
/// `tags`, `lyrics`, `mgphot` (other columns are ignored). A malformed value is an error naming the
/// file and line.
pub fn read_sidecar(path: &Path) -> anyhow::Result<FastMap<String, SideRow>> {
    let r = crate::data::ingest::open(path)?;
    let mut lines = r.lines();
    let header = lines
        .next()
        .transpose()
        .with_context(|| format!("reading {}", path.display()))?
        .with_context(|| format!("{}: empty; expected a header with track_id", path.display()))?;
    let header: Vec<String> = header.trim_end_matches('\r').split('\t').map(String::from).collect();
    let col = |n: &str| header.iter().position(|h| h == n);
    let ci = col("track_id").with_context(|| format!("{}: no column `track_id` in the header", path.display()))?;
    let (cd, ct, cl, cm) = (col("duration_s"), col("tags"), col("lyrics"), col("mgphot"));
    let mut out = FastMap::default();
    for (i, l) in lines.enumerate() {
        let line = i + 2;
        let l = l.with_context(|| format!("reading {}", path.display()))?;
        let f: Vec<&str> = l.trim_end_matches('\r').split('\t').collect();
        if f.len() != header.len() {
            bail!("{}:{line}: {} columns, the header has {}", path.display(), f.len(), header.len());
        }
        let cell = |c: Option<usize>| c.map(|c| f[c]).filter(|s| !s.is_empty());
        let mut row = SideRow::default();
        if let Some(d) = cell(cd) {
            let d: f32 = d
                .parse()
                .ok()
                .filter(|d: &f32| d.is_finite() && *d > 0.0)
                .with_context(|| format!("{}:{line}: duration_s {d:?} is not a positive number", path.display()))?;
            row.duration_s = Some(d);
        }
        if let Some(t) = cell(ct) {
            row.tags = t.split(',').map(str::trim).filter(|t| !t.is_empty()).map(String::from).collect();
        }
        row.lyrics = cell(cl).map(String::from);
        if let Some(m) = cell(cm) {
            let v: Vec<f32> = m
                .split(',')
                .map(|x| x.trim().parse::<f32>().ok().filter(|x| (0.0..=1.0).contains(x)))
                .collect::<Option<_>>()
                .with_context(|| format!("{}:{line}: mgphot must be comma-separated numbers in [0, 1]", path.display()))?;
            if v.len() != crate::features::mgphot::N_GENES {
                bail!("{}:{line}: mgphot has {} values, expected {}", path.display(), v.len(), crate::features::mgphot::N_GENES);
            }
            row.mgphot = Some(v);
        }
        out.insert(f[ci].to_string(), row);
    }
    Ok(out)
}

/// Adds the side-car's content to `tracks` (the catalog's artist and title stay; its duration
/// wins when both have one). Returns how many tracks the side-car covered.
pub fn join_sidecar(tracks: &mut [Track], side: &FastMap<String, SideRow>) -> usize {
    let mut n = 0;
    for t in tracks {
        if let Some(r) = side.get(&t.track_id) {
            n += 1;
            t.duration_s = t.duration_s.or(r.duration_s);
            t.tags = r.tags.clone();
            t.lyrics = r.lyrics.clone();
            t.mgphot = r.mgphot.clone();
        }
    }
    n
}

/// One column of a TSV keyed by `track_id` (e.g. `style` of `tracks.tsv`), for labels.
pub fn read_labels(path: &Path, column: &str) -> anyhow::Result<FastMap<String, String>> {
    let r = crate::data::ingest::open(path)?;
    let mut lines = r.lines();
    let header = lines.next().transpose().with_context(|| format!("reading {}", path.display()))?.with_context(|| format!("{}: empty", path.display()))?;
    let header: Vec<&str> = header.trim_end_matches('\r').split('\t').collect();
    let ci = header.iter().position(|h| *h == "track_id").with_context(|| format!("{}: no column `track_id`", path.display()))?;
    let cl = header.iter().position(|h| *h == column).with_context(|| format!("{}: no column `{column}` (columns: {})", path.display(), header.join(", ")))?;
    let mut out = FastMap::default();
    for (i, l) in lines.enumerate() {
        let l = l.with_context(|| format!("reading {}", path.display()))?;
        let f: Vec<&str> = l.trim_end_matches('\r').split('\t').collect();
        let (Some(id), Some(label)) = (f.get(ci), f.get(cl)) else { bail!("{}:{}: too few columns", path.display(), i + 2) };
        if !label.is_empty() {
            out.insert(id.to_string(), label.to_string());
        }
    }
    Ok(out)
}
