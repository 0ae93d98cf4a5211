//! Streams a LastFM-1K listening log (plain or gzip) into interned, columnar events.
//!
//! A row is 6 tab-separated fields: user id, ISO-8601 timestamp, artist MBID, artist name, track
//! MBID, track name. A header line is recognised (first line whose first field starts with
//! `user` and whose second is not a timestamp) and skipped. `\r\n` endings are accepted. The
//! parser splits bytes with `memchr` and decodes UTF-8 lossily only for rows that need it.
use super::DataError;
use super::FastMap;
use std::borrow::Cow;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// What to do with a malformed row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OnBadRow {
    /// Count it, keep the first examples for the report, go on.
    #[default]
    Skip,
    /// Stop with `file:line` and what is wrong.
    Error,
}

/// A malformed row kept as an example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    /// 1-based line number.
    pub line: u64,
    /// What is wrong.
    pub what: String,
}

/// Counts from one ingest run.
#[derive(Debug, Clone, Default)]
pub struct IngestReport {
    /// Lines read, header and blank lines included.
    pub lines: u64,
    /// Whether the first line was a header.
    pub header: bool,
    /// Events kept.
    pub events: u64,
    /// Blank lines skipped (not counted as bad).
    pub blank_lines: u64,
    /// Malformed rows skipped.
    pub bad_rows: u64,
    /// The first malformed rows, with line numbers.
    pub examples: Vec<BadRow>,
    /// Rows with bytes that are not UTF-8 (decoded lossily, with U+FFFD).
    pub lossy_rows: u64,
    /// Rows whose track MBID was empty, so the id was hashed from the names.
    pub hashed_track_ids: u64,
    /// Rows whose artist MBID was empty, so the id was hashed from the name.
    pub hashed_artist_ids: u64,
}

/// A distinct track of the log: its id (MBID, or the name hash) and names, as first seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    /// The track MBID, or `h64:` + the hash of the names (see [`name_hash_id`]).
    pub id: String,
    /// The artist MBID, or `h64:` + the hash of the artist name.
    pub artist_id: String,
    /// Artist name.
    pub artist: String,
    /// Track name.
    pub title: String,
}

/// An ingested log: interned users and tracks, and one event per kept row, in file order.
#[derive(Debug, Clone, Default)]
pub struct Log {
    /// User ids, by raw user index (order of first appearance).
    pub users: Vec<String>,
    /// Tracks, by raw track index (order of first appearance).
    pub tracks: Vec<Track>,
    /// Per event: raw user index.
    pub user: Vec<u32>,
    /// Per event: Unix seconds (UTC).
    pub ts: Vec<i64>,
    /// Per event: raw track index.
    pub track: Vec<u32>,
    /// Per event: 1-based line number in the file.
    pub line: Vec<u64>,
    /// What the run saw.
    pub report: IngestReport,
}

/// Ingest settings.
#[derive(Debug, Clone, Copy)]
pub struct IngestOptions {
    /// Malformed rows: skip or stop.
    pub on_bad_row: OnBadRow,
    /// How many malformed rows to keep as examples.
    pub max_examples: usize,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self { on_bad_row: OnBadRow::Skip, max_examples: 10 }
    }
}

/// FNV-1a, 64-bit: the documented hash for empty MBIDs (simple enough to reproduce anywhere).
pub fn fnv1a64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h ^= 0x1f; // unit separator between parts, so ("ab","c") ≠ ("a","bc")
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// The id of a track or artist with an empty MBID: `h64:` + 16 lowercase hex digits of
/// [`fnv1a64`] over the UTF-8 names (artist name, then track name for a track), joined by 0x1F.
pub fn name_hash_id(parts: &[&str]) -> String {
    let mut s = String::with_capacity(20);
    push_hash_id(&mut s, parts.iter().map(|p| p.as_bytes()).collect::<Vec<_>>().as_slice());
    s
}

fn push_hash_id(out: &mut String, parts: &[&[u8]]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let h = fnv1a64(parts);
    out.push_str("h64:");
    for i in (0..16).rev() {
        out.push(HEX[((h >> (i * 4)) & 0xf) as usize] as char);
    }
}

/// Opens `path`, gunzipping when it starts with the gzip magic bytes.
pub fn open(path: &Path) -> Result<Box<dyn BufRead + Send>, DataError> {
    let io = |source| DataError::Io { file: path.to_path_buf(), source };
    let mut f = File::open(path).map_err(io)?;
    let mut magic = [0u8; 2];
    let n = read_up_to(&mut f, &mut magic).map_err(io)?;
    let f = File::open(path).map_err(io)?;
    Ok(if n == 2 && magic == [0x1f, 0x8b] {
        Box::new(BufReader::with_capacity(1 << 20, flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 20, f))))
    } else {
        Box::new(BufReader::with_capacity(1 << 20, f))
    })
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Reads and interns the log at `path`. `progress` is called now and then with bytes read.
pub fn ingest(path: &Path, opts: IngestOptions, progress: &mut dyn FnMut(u64)) -> Result<Log, DataError> {
    let reader = open(path)?;
    ingest_reader(reader, path, opts, progress)
}

struct Interner {
    users: FastMap<Box<str>, u32>,
    tracks: FastMap<Box<str>, u32>,
    key: String,
    last_user: String,
    last_user_idx: u32,
}

/// [`ingest`] over any reader; `path` only names the source in errors.
pub fn ingest_reader(mut r: impl BufRead, path: &Path, opts: IngestOptions, progress: &mut dyn FnMut(u64)) -> Result<Log, DataError> {
    let mut log = Log::default();
    let mut int = Interner { users: FastMap::default(), tracks: FastMap::default(), key: String::new(), last_user: String::new(), last_user_idx: 0 };
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut bytes = 0u64;
    let mut next_progress = 1u64 << 24;
    loop {
        buf.clear();
        let n = match r.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                // A truncated gzip stream, or a read error: what was read stays; the rest is lost.
                let what = format!("the input ends early ({e}); the rows after line {} are lost", log.report.lines);
                let line = log.report.lines + 1;
                bad(&mut log, path, opts, line, what)?;
                break;
            }
        };
        bytes += n as u64;
        if bytes >= next_progress {
            progress(bytes);
            next_progress = bytes + (1 << 24);
        }
        log.report.lines += 1;
        let line_no = log.report.lines;
        let mut line = &buf[..];
        // Byte checks, not slice comparisons: `strip_suffix` calls memcmp, per row.
        if let [rest @ .., b'\n'] = line {
            line = rest;
        }
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        if line.iter().all(|c| c.is_ascii_whitespace()) {
            log.report.blank_lines += 1;
            continue;
        }
        let mut f: [&[u8]; 6] = [&[]; 6];
        let mut count = 0usize;
        let mut start = 0usize;
        for tab in memchr::memchr_iter(b'\t', line) {
            if count < 6 {
                f[count] = &line[start..tab];
            }
            count += 1;
            start = tab + 1;
        }
        if count < 6 {
            f[count] = &line[start..];
        }
        count += 1;
        if line_no == 1 && count >= 2 && super::time::parse_iso8601(f[1]).is_none() && f[0].to_ascii_lowercase().starts_with(b"user") {
            log.report.header = true;
            continue;
        }
        if count != 6 {
            bad(&mut log, path, opts, line_no, format!("{count} tab-separated fields, expected 6"))?;
            continue;
        }
        let Some(ts) = super::time::parse_iso8601(f[1]) else {
            let shown = String::from_utf8_lossy(&f[1][..f[1].len().min(40)]).into_owned();
            bad(&mut log, path, opts, line_no, format!("bad timestamp {shown:?} (expected ISO-8601, e.g. 2009-05-04T23:08:57Z)"))?;
            continue;
        };
        if f[0].is_empty() {
            bad(&mut log, path, opts, line_no, "empty user id".into())?;
            continue;
        }
        if f[4].is_empty() && f[5].is_empty() {
            bad(&mut log, path, opts, line_no, "no track MBID and no track name".into())?;
            continue;
        }
        // Validate UTF-8 once per row; fields of a valid row are borrowed, never copied.
        let fields: [Cow<'_, str>; 6] = match std::str::from_utf8(line) {
            Ok(text) => {
                let base = line.as_ptr() as usize;
                f.map(|b| {
                    let at = b.as_ptr() as usize - base;
                    Cow::Borrowed(&text[at..at + b.len()])
                })
            }
            Err(_) => {
                log.report.lossy_rows += 1;
                f.map(String::from_utf8_lossy)
            }
        };
        // Users: rows come grouped by user, so the previous row's user is checked first.
        let user = if !int.last_user.is_empty() && int.last_user == fields[0] {
            int.last_user_idx
        } else {
            let u = fields[0].as_ref();
            let i = match int.users.get(u) {
                Some(&i) => i,
                None => {
                    let i = log.users.len() as u32;
                    int.users.insert(u.into(), i);
                    log.users.push(u.to_string());
                    i
                }
            };
            int.last_user.clear();
            int.last_user.push_str(u);
            int.last_user_idx = i;
            i
        };
        // Tracks, keyed by MBID or the name hash.
        let key: &str = if fields[4].is_empty() {
            log.report.hashed_track_ids += 1;
            int.key.clear();
            push_hash_id(&mut int.key, &[fields[3].as_bytes(), fields[5].as_bytes()]);
            &int.key
        } else {
            &fields[4]
        };
        if fields[2].is_empty() {
            log.report.hashed_artist_ids += 1;
        }
        let track = match int.tracks.get(key) {
            Some(&i) => i,
            None => {
                let i = log.tracks.len() as u32;
                let artist_id = if fields[2].is_empty() {
                    let mut s = String::new();
                    push_hash_id(&mut s, &[fields[3].as_bytes()]);
                    s
                } else {
                    fields[2].to_string()
                };
                int.tracks.insert(key.into(), i);
                log.tracks.push(Track { id: key.to_string(), artist_id, artist: fields[3].to_string(), title: fields[5].to_string() });
                i
            }
        };
        log.user.push(user);
        log.ts.push(ts);
        log.track.push(track);
        log.line.push(line_no);
    }
    progress(bytes);
    log.report.events = log.user.len() as u64;
    Ok(log)
}

fn bad(log: &mut Log, path: &Path, opts: IngestOptions, line: u64, what: String) -> Result<(), DataError> {
    if opts.on_bad_row == OnBadRow::Error {
        return Err(DataError::BadRow { file: PathBuf::from(path), line, what });
    }
    log.report.bad_rows += 1;
    if log.report.examples.len() < opts.max_examples {
        log.report.examples.push(BadRow { line, what });
    }
    Ok(())
}

impl IngestReport {
    /// A few lines for people: counts, then the first malformed rows.
    pub fn summary(&self, file: &Path) -> String {
        let mut s = format!(
            "{}: {} lines, {} events{}; {} malformed rows skipped, {} blank lines, {} rows decoded lossily (not UTF-8); {} track ids and {} artist ids hashed from names (empty MBID)\n",
            file.display(),
            self.lines,
            self.events,
            if self.header { " (header skipped)" } else { "" },
            self.bad_rows,
            self.blank_lines,
            self.lossy_rows,
            self.hashed_track_ids,
            self.hashed_artist_ids
        );
        for ex in &self.examples {
            s.push_str(&format!("  {}:{}: {}\n", file.display(), ex.line, ex.what));
        }
        if self.bad_rows > self.examples.len() as u64 {
            s.push_str(&format!("  ... and {} more\n", self.bad_rows - self.examples.len() as u64));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &[u8], mode: OnBadRow) -> Result<Log, DataError> {
        ingest_reader(text, Path::new("t.tsv"), IngestOptions { on_bad_row: mode, max_examples: 5 }, &mut |_| {})
    }

    #[test]
    fn hash_is_fnv1a_with_separator() {
        // FNV-1a 64 of "" is the offset basis; of "a" a published test vector.
        assert_eq!(fnv1a64(&[b""]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(&[b"a", b"b"]), fnv1a64(&[b"a\x1fb"]));
        assert_ne!(fnv1a64(&[b"ab", b"c"]), fnv1a64(&[b"a", b"bc"]));
        assert_eq!(name_hash_id(&["a"]), "h64:af63dc4c8601ec8c");
    }

    #[test]
    fn parses_rows_interns_and_hashes() {
        let t = b"user_000001\t2009-05-04T23:08:57Z\tam1\tArtist\ttm1\tSong\r\n\
                  user_000001\t2009-05-04T23:12:57Z\t\tArtist\t\tOther\n\
                  user_000002\t2009-05-04T23:12:57Z\tam1\tArtist\ttm1\tSong";
        let log = run(t, OnBadRow::Error).unwrap();
        assert_eq!(log.users, ["user_000001", "user_000002"]);
        assert_eq!(log.track, [0, 1, 0]);
        assert_eq!(log.tracks[1].id, name_hash_id(&["Artist", "Other"]));
        assert_eq!(log.tracks[1].artist_id, name_hash_id(&["Artist"]));
        assert_eq!(log.report.hashed_track_ids, 1);
    }

    #[test]
    fn bad_rows_skip_or_error() {
        let t = b"userid\ttimestamp\ta\tb\tc\td\nu\tnot-a-time\ta\tb\tc\td\nu\t2009-05-04T23:08:57Z\ta\tb\nu\t2009-05-04T23:08:57Z\ta\tb\tc\td\n";
        let log = run(t, OnBadRow::Skip).unwrap();
        assert!(log.report.header);
        assert_eq!(log.report.bad_rows, 2);
        assert_eq!(log.report.examples[0].line, 2);
        assert_eq!(log.report.examples[1].line, 3);
        assert_eq!(log.user.len(), 1);
        let e = run(t, OnBadRow::Error).unwrap_err().to_string();
        assert!(e.starts_with("t.tsv:2: bad timestamp"), "{e}");
    }
}
