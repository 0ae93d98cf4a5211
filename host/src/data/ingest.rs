//! Streams a LastFM-1K listening log (plain or gzip) into interned, columnar events.
//!
//! A row is 6 tab-separated fields: user id, ISO-8601 timestamp, artist MBID, artist name, track
//! MBID, track name. A header line is recognised (first line whose first field starts with
//! `user` and whose second is not a timestamp) and skipped. `\r\n` endings are accepted. The
//! parser splits bytes with `memchr` and decodes UTF-8 lossily only for rows that need it.
use super::DataError;
use super::{take_front, FastMap};
use std::borrow::Cow;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek};
use std::mem::MaybeUninit;
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
    push_hex_id(out, fnv1a64(parts));
}

fn push_hex_id(out: &mut String, h: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push_str("h64:");
    for i in (0..16).rev() {
        out.push(HEX[((h >> (i * 4)) & 0xf) as usize] as char);
    }
}

/// `h64:` + the 16 lowercase hex digits of `h`.
fn hash_id(h: u64) -> String {
    let mut s = String::with_capacity(20);
    push_hex_id(&mut s, h);
    s
}

/// The first two bytes of a gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Opens `path`, gunzipping when it starts with the gzip magic bytes. The file is opened and
/// read once (the magic bytes are put back in front), so a pipe (`<(zcat ...)`) works too.
pub fn open(path: &Path) -> Result<Box<dyn BufRead + Send>, DataError> {
    let f = File::open(path).map_err(|cause| DataError::Io { file: path.to_path_buf(), cause })?;
    reader(f, path)
}

/// [`open`] for a file already open; `path` names it in errors.
fn reader(mut f: File, path: &Path) -> Result<Box<dyn BufRead + Send>, DataError> {
    let io = |cause| DataError::Io { file: path.to_path_buf(), cause };
    let mut magic = [0u8; 2];
    let n = crate::io::read_up_to(&mut f, &mut magic).map_err(io)?;
    let r = std::io::Cursor::new(magic).take(n as u64).chain(f);
    Ok(if n == 2 && magic == GZIP_MAGIC {
        Box::new(BufReader::with_capacity(1 << 20, flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 20, r))))
    } else {
        Box::new(BufReader::with_capacity(1 << 20, r))
    })
}

/// Reads and interns the log at `path`. `progress` is called now and then with bytes read.
///
/// A plain regular file is memory-mapped and parsed in place (no copy through a read buffer);
/// like any mapped reader, it must not be truncated while it is read. A gzip file, or anything
/// that cannot be mapped (a pipe), is streamed.
pub fn ingest(path: &Path, opts: IngestOptions, progress: &mut dyn FnMut(u64)) -> Result<Log, DataError> {
    let io = |cause| DataError::Io { file: path.to_path_buf(), cause };
    let mut file = File::open(path).map_err(io)?;
    // A regular file's first bytes are read and it is rewound; a pipe is opened and read once
    // only (a second open could wait forever for a writer).
    let plain = file.metadata().map_err(io)?.is_file() && {
        let mut magic = [0u8; 2];
        let n = crate::io::read_up_to(&mut file, &mut magic).map_err(io)?;
        file.seek(std::io::SeekFrom::Start(0)).map_err(io)?;
        !(n == 2 && magic == GZIP_MAGIC)
    };
    if plain {
        // SAFETY: the map is read-only and lives until the parse ends; its bytes are only read.
        // (A concurrent truncation of the file would raise SIGBUS, as for any mapped reader.)
        if let Ok(map) = unsafe { memmap2::Mmap::map(&file) } {
            let _ = map.advise(memmap2::Advice::Sequential);
            // Parsed and merged ranges leave the process's resident set: for a read-only file
            // map, MADV_DONTNEED only drops page-table entries (a later read faults the same
            // bytes back in from the page cache), so it cannot change what the parse sees.
            let release = |from: usize, to: usize| {
                // SAFETY: see above; nothing of the range is written, and its contents stay.
                let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, from, to - from) };
            };
            return ingest_mapped(&map, path, opts, progress, CHUNK, &release);
        }
    }
    ingest_chunked(reader(file, path)?, path, opts, progress, CHUNK)
}

/// Bytes per parse chunk: chunks end at a line break and are parsed in parallel, then merged in
/// file order, so the result is the same as a one-pass parse (indices in order of first appearance).
const CHUNK: usize = 8 << 20;

/// Chunks parsed at once: two per thread, so that a slow chunk does not idle the others.
fn batch_len() -> usize {
    2 * rayon::current_num_threads().max(1)
}

/// The size of the `sent`-th chunk. The first batch is parsed against empty tables, so each of
/// its chunks copies out every track it sees: with the default `CHUNK`, sizes ramp up (a batch of
/// 1 MiB chunks, one of 2 MiB, one of 4 MiB, then `CHUNK`), so that the tables fill before the
/// large chunks come. Any other size (the tests') is used as it is.
fn chunk_size(chunk: usize, sent: usize) -> usize {
    if chunk == CHUNK {
        CHUNK >> 3usize.saturating_sub(sent / batch_len())
    } else {
        chunk
    }
}

/// [`ingest`] over any reader; `path` only names the source in errors.
pub fn ingest_reader(r: impl BufRead + Send, path: &Path, opts: IngestOptions, progress: &mut dyn FnMut(u64)) -> Result<Log, DataError> {
    ingest_chunked(r, path, opts, progress, CHUNK)
}

/// Parses `data` (a mapped file) in batches of chunks that end at line breaks; `release(from,
/// to)` is told of each byte range that is parsed and merged, and never read again.
fn ingest_mapped(
    data: &[u8],
    path: &Path,
    opts: IngestOptions,
    progress: &mut dyn FnMut(u64),
    chunk: usize,
    release: &dyn Fn(usize, usize),
) -> Result<Log, DataError> {
    let mut m = Merger::new(data.len() / 64);
    let (mut at, mut sent, mut released) = (0usize, 0usize, 0usize);
    let mut batch: Vec<&[u8]> = Vec::with_capacity(batch_len());
    while at < data.len() {
        batch.clear();
        while batch.len() < batch_len() && at < data.len() {
            let want = at.saturating_add(chunk_size(chunk, sent).max(1)).min(data.len());
            sent += 1;
            // To the line break at or after byte `want - 1`, or to the end.
            let end = memchr::memchr(b'\n', &data[want - 1..]).map_or(data.len(), |p| want + p);
            batch.push(&data[at..end]);
            at = end;
        }
        m.batch(&batch, path, opts)?;
        progress(at as u64);
        release(released, at);
        released = at;
    }
    Ok(m.finish())
}

/// One thread reads (and gunzips) chunks of whole lines; the rayon pool parses a batch of chunks
/// at once (fields, timestamps, UTF-8, chunk-local interning borrowing the chunk's bytes); the
/// caller's thread merges each batch in order into the global tables, allocating only for users
/// and tracks it has not seen before, and the pool writes the batch's events into the columns.
fn ingest_chunked(r: impl BufRead + Send, path: &Path, opts: IngestOptions, progress: &mut dyn FnMut(u64), chunk: usize) -> Result<Log, DataError> {
    let mut m = Merger::new(0);
    let batch_len = batch_len();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Piece>(batch_len);
    // Parsed chunks' buffers go back to the reader: fresh pages cost a page fault each.
    let (give_back, recycled) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| -> Result<(), DataError> {
        scope.spawn(move || read_chunks(r, &tx, chunk, &recycled));
        let mut batch: Vec<(Vec<u8>, usize)> = Vec::with_capacity(batch_len);
        let mut bytes = 0u64;
        let mut done = false;
        while !done {
            batch.clear();
            let mut failure = None;
            while batch.len() < batch_len {
                match rx.recv() {
                    Ok(Piece::Chunk(c, n)) => {
                        bytes += n as u64;
                        batch.push((c, n));
                    }
                    Ok(Piece::Failed(e)) => {
                        failure = Some(e);
                        done = true;
                        break;
                    }
                    Err(_) => {
                        done = true;
                        break;
                    }
                }
            }
            let slices: Vec<&[u8]> = batch.iter().map(|(c, n)| &c[..*n]).collect();
            m.batch(&slices, path, opts)?;
            for (buf, _) in batch.drain(..) {
                let _ = give_back.send(buf);
            }
            progress(bytes);
            if let Some(e) = failure {
                // A truncated gzip stream, or a read error: what was read stays; the rest is lost.
                let what = format!("the input ends early ({e}); the rows after line {} are lost", m.log.report.lines);
                let line = m.log.report.lines + 1;
                bad(&mut m.log, path, opts, line, what)?;
            }
        }
        // Dropping the receiver stops the reader if an error ended the merge early.
        drop(rx);
        Ok(())
    })?;
    Ok(m.finish())
}

/// The global tables and columns that batches of parsed chunks are merged into, in file order.
struct Merger {
    log: Log,
    users: FastMap<Box<str>, u32>,
    tracks: TrackTable<Box<str>>,
    /// Merged chunks' event columns, emptied, for the next chunks (fresh pages fault).
    spare: Vec<Columns>,
    /// Whether the next chunk is the file's first (the only one that may hold a header).
    first: bool,
}

impl Merger {
    /// `rows`: the expected number of events, reserved up front (address space only, until
    /// written), which saves growing the columns while they fill.
    fn new(rows: usize) -> Self {
        let mut log = Log::default();
        log.reserve_events(rows);
        Self { log, users: FastMap::default(), tracks: TrackTable::default(), spare: Vec::new(), first: true }
    }

    /// Parses `chunks` (consecutive runs of whole lines) in parallel, merges their new users and
    /// tracks in order, then writes their events into the columns in parallel.
    fn batch(&mut self, chunks: &[&[u8]], path: &Path, opts: IngestOptions) -> Result<(), DataError> {
        use rayon::prelude::*;
        let first = std::mem::take(&mut self.first);
        let parsed: Vec<Chunk<'_>> = {
            let known = Known { users: &self.users, tracks: &self.tracks };
            let cols: Vec<Columns> = chunks.iter().map(|_| self.spare.pop().unwrap_or_default()).collect();
            chunks.par_iter().zip(cols).enumerate().map(|(i, (c, cols))| parse_chunk(c, first && i == 0, opts, known, cols)).collect()
        };
        let mut merged = Vec::with_capacity(parsed.len());
        for c in parsed {
            merged.push(merge(&mut self.log, &mut self.users, &mut self.tracks, c, path, opts)?);
        }
        let log = &mut self.log;
        let n: usize = merged.iter().map(|m| m.cols.user.len()).sum();
        log.reserve_events(n);
        let old = log.user.len();
        {
            // Each chunk's events go to their own stretch of the columns' spare capacity.
            let (mut user, mut ts) = (&mut log.user.spare_capacity_mut()[..n], &mut log.ts.spare_capacity_mut()[..n]);
            let (mut track, mut line) = (&mut log.track.spare_capacity_mut()[..n], &mut log.line.spare_capacity_mut()[..n]);
            let mut jobs = Vec::with_capacity(merged.len());
            for m in &merged {
                let k = m.cols.user.len();
                jobs.push((m, take_front(&mut user, k), take_front(&mut ts, k), take_front(&mut track, k), take_front(&mut line, k)));
            }
            jobs.into_par_iter().for_each(|(m, u, t, tr, l)| m.write(u, t, tr, l));
        }
        // SAFETY: the stretches partition the first `n` spare slots of each column, and
        // `Merged::write` wrote every slot of its stretches (each is as long as the chunk's columns).
        unsafe {
            log.user.set_len(old + n);
            log.ts.set_len(old + n);
            log.track.set_len(old + n);
            log.line.set_len(old + n);
        }
        for m in merged {
            let mut cols = m.cols;
            cols.clear();
            self.spare.push(cols);
        }
        Ok(())
    }

    fn finish(mut self) -> Log {
        self.log.report.events = self.log.user.len() as u64;
        self.log
    }
}

/// What the reader thread sends: a buffer whose first `n` bytes are whole lines (the last may
/// lack its `\n`), or the read error that ended the input (after the complete lines before it).
enum Piece {
    Chunk(Vec<u8>, usize),
    Failed(std::io::Error),
}

/// Reads `r` in chunks of at least `chunk` bytes (or to the end) that end at a line break. The
/// reads go straight into the chunk buffers (a read as large as a `BufReader`'s buffer bypasses
/// it), and the buffers come back through `recycled` to be filled again, never zeroed twice.
fn read_chunks(mut r: impl Read, tx: &std::sync::mpsc::SyncSender<Piece>, chunk: usize, recycled: &std::sync::mpsc::Receiver<Vec<u8>>) {
    let mut carry: Vec<u8> = Vec::new(); // the start of a line that the previous chunk cut off
    let mut sent = 0usize;
    loop {
        let chunk = chunk_size(chunk, sent);
        sent += 1;
        let mut buf = recycled.try_recv().unwrap_or_default();
        let want = chunk.min(CHUNK).max(carry.len() + 1);
        if buf.len() < want {
            buf.resize(want, 0);
        }
        buf[..carry.len()].copy_from_slice(&carry);
        let mut filled = carry.len();
        let mut last_break = memchr::memrchr(b'\n', &carry);
        carry.clear();
        let mut eof = false;
        let mut failed = None;
        // Fill to `chunk` bytes and on to a line break, growing the buffer for a long line.
        while filled < chunk || last_break.is_none() {
            if filled == buf.len() {
                let grown = (buf.len() * 2).min(buf.len().saturating_add(CHUNK)).max(buf.len() + 1);
                buf.resize(grown, 0);
            }
            match r.read(&mut buf[filled..]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    if let Some(p) = memchr::memrchr(b'\n', &buf[filled..filled + n]) {
                        last_break = Some(filled + p);
                    }
                    filled += n;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let end = match (eof, last_break) {
            (true, _) => filled,
            (false, Some(p)) => p + 1,
            (false, None) => 0,
        };
        if failed.is_none() && !eof {
            carry.extend_from_slice(&buf[end..filled]);
        }
        // On a read error the complete lines count; a partial last line is lost with the rest.
        if end > 0 && tx.send(Piece::Chunk(buf, end)).is_err() {
            return;
        }
        if let Some(e) = failed {
            let _ = tx.send(Piece::Failed(e));
            return;
        }
        if eof {
            return;
        }
    }
}

/// Marks a chunk-local user or track index in a parsed chunk's events; unmarked ones are global.
const LOCAL: u32 = 1 << 31;

/// The global tables as of the previous batch, read (never written) while a batch is parsed: a
/// user or track seen before gets its global index in the parallel parse, so the sequential merge
/// only handles the new ones.
#[derive(Clone, Copy)]
struct Known<'g> {
    users: &'g FastMap<Box<str>, u32>,
    tracks: &'g TrackTable<Box<str>>,
}

/// A track id as the tables hold it: a lowercase hyphenated UUID (an MBID) as its 128 bits, a
/// name-hash id (`h64:` + 16 lowercase hex digits) as its 64, any other id as its text. The
/// encoding is one-to-one, so two ids get the same key exactly when they are the same string;
/// the common keys are hashed and compared without touching the text.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key<'a> {
    Uuid(u128),
    H64(u64),
    Other(&'a str),
}

impl<'a> Key<'a> {
    pub(crate) fn of(id: &'a str) -> Self {
        let b = id.as_bytes();
        if let Some(k) = parse_uuid(b) {
            return Key::Uuid(k);
        }
        if b.len() == 20 && b.starts_with(b"h64:") {
            if let Some(h) = hex_digits(b, [4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]) {
                return Key::H64(h);
            }
        }
        Key::Other(id)
    }
}

/// Each byte's value as a lowercase hex digit, or 0xff (uppercase is not one: the key must stay
/// one-to-one).
const HEX_VALUE: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 16 {
        t[b"0123456789abcdef"[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// The value of the lowercase hex digits of `b` at `at`, or `None` if one is not such a digit.
#[inline(always)]
fn hex_digits<const N: usize>(b: &[u8], at: [usize; N]) -> Option<u64> {
    let (mut v, mut bad) = (0u64, 0u8);
    for i in at {
        let d = HEX_VALUE[b[i] as usize];
        bad |= d;
        v = v << 4 | u64::from(d);
    }
    (bad & 0xf0 == 0).then_some(v)
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in lowercase hex, as 128 bits.
fn parse_uuid(b: &[u8]) -> Option<u128> {
    if b.len() != 36 || b[8] != b'-' || b[13] != b'-' || b[18] != b'-' || b[23] != b'-' {
        return None;
    }
    let hi = hex_digits(b, [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 14, 15, 16, 17])?;
    let lo = hex_digits(b, [19, 20, 21, 22, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35])?;
    Some(u128::from(hi) << 64 | u128::from(lo))
}

/// Track ids → values (indices, in the ingest), by [`Key`]; `S` holds the text of the other ids.
pub(crate) struct TrackTable<S, V = u32> {
    uuid: FastMap<u128, V>,
    h64: FastMap<u64, V>,
    other: FastMap<S, V>,
}

impl<S, V> Default for TrackTable<S, V> {
    fn default() -> Self {
        Self { uuid: FastMap::default(), h64: FastMap::default(), other: FastMap::default() }
    }
}

impl<S: std::borrow::Borrow<str> + std::hash::Hash + Eq, V: Copy> TrackTable<S, V> {
    pub(crate) fn get(&self, k: Key<'_>) -> Option<V> {
        match k {
            Key::Uuid(u) => self.uuid.get(&u),
            Key::H64(h) => self.h64.get(&h),
            Key::Other(s) => self.other.get(s),
        }
        .copied()
    }
    /// Adds `k` (whose text is `id`) → `v`.
    pub(crate) fn insert(&mut self, k: Key<'_>, id: impl FnOnce() -> S, v: V) {
        match k {
            Key::Uuid(u) => self.uuid.insert(u, v),
            Key::H64(h) => self.h64.insert(h, v),
            Key::Other(_) => self.other.insert(id(), v),
        };
    }
    pub(crate) fn len(&self) -> usize {
        self.uuid.len() + self.h64.len() + self.other.len()
    }
    /// Room for `n` more ids of the common kinds.
    pub(crate) fn reserve(&mut self, n: usize) {
        self.uuid.reserve(n);
    }
}

/// One chunk, parsed: users and tracks new to the global tables (borrowing the chunk's bytes
/// where they are valid UTF-8), events in global indices or chunk-local ones marked [`LOCAL`],
/// and the chunk's counts.
#[derive(Default)]
struct Chunk<'a> {
    lines: u64,
    header: bool,
    blank: u64,
    lossy: u64,
    hashed_track: u64,
    hashed_artist: u64,
    bad: Vec<(u64, String)>,
    bad_count: u64,
    users: Vec<Cow<'a, str>>,
    /// Tracks new to the chunk, copied out here (in parallel) rather than in the merge.
    tracks: Vec<Track>,
    cols: Columns,
}

/// A parsed chunk's events: user, timestamp, track, line number in the chunk.
#[derive(Default)]
struct Columns {
    user: Vec<u32>,
    ts: Vec<i64>,
    track: Vec<u32>,
    line: Vec<u32>,
}

impl Columns {
    fn reserve(&mut self, rows: usize) {
        self.user.reserve(rows);
        self.ts.reserve(rows);
        self.track.reserve(rows);
        self.line.reserve(rows);
    }
    fn clear(&mut self) {
        self.user.clear();
        self.ts.clear();
        self.track.clear();
        self.line.clear();
    }
}

impl Log {
    /// Room for `rows` more events in each column.
    fn reserve_events(&mut self, rows: usize) {
        self.user.reserve(rows);
        self.ts.reserve(rows);
        self.track.reserve(rows);
        self.line.reserve(rows);
    }
}

fn parse_chunk<'a>(data: &'a [u8], first: bool, opts: IngestOptions, known: Known<'_>, cols: Columns) -> Chunk<'a> {
    let mut c = Chunk { cols, ..Chunk::default() };
    let rows = data.len() / 96 + 16;
    c.cols.reserve(rows);
    let mut user_map: FastMap<Cow<'a, str>, u32> = FastMap::default();
    let mut track_map: TrackTable<Cow<'a, str>> = TrackTable::default();
    let mut last_user: Option<(&[u8], u32)> = None;
    let mut clean = Clean::default();
    // One scan for tabs and line breaks over the whole chunk.
    let mut breaks = memchr::memchr2_iter(b'\t', b'\n', data);
    let mut start = 0usize;
    while start < data.len() {
        let line_at = start;
        // The tabs of this line (the first 5 kept), then its end.
        let mut tabs = [0usize; 5];
        let mut n_tabs = 0usize;
        let end = loop {
            match breaks.next() {
                Some(p) if data[p] == b'\t' => {
                    if n_tabs < 5 {
                        tabs[n_tabs] = p;
                    }
                    n_tabs += 1;
                }
                Some(p) => break p,
                None => break data.len(),
            }
        };
        let mut line = &data[start..end];
        start = end + 1;
        c.lines += 1;
        let line_no = c.lines;
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            c.blank += 1;
            continue;
        }
        let line_end = line_at + line.len();
        let mut f: [&[u8]; 6] = [&[]; 6];
        let mut from = line_at;
        for (k, &tab) in tabs.iter().take(n_tabs.min(5)).enumerate() {
            f[k] = &data[from..tab];
            from = tab + 1;
        }
        if n_tabs < 6 {
            // The last field runs to the line's end (with 6 tabs or more the row is malformed and
            // only the first two fields are read).
            f[n_tabs] = &data[from..line_end];
        }
        let count = n_tabs + 1;
        if first && line_no == 1 && count >= 2 && super::time::parse_iso8601(f[1]).is_none() && f[0].to_ascii_lowercase().starts_with(b"user") {
            c.header = true;
            continue;
        }
        let ts = match check_fields(&f, count) {
            Ok(ts) => ts,
            Err(what) => {
                c.bad_count += 1;
                if c.bad.len() < opts.max_examples.max(1) {
                    c.bad.push((line_no, what));
                }
                if opts.on_bad_row == OnBadRow::Error {
                    break;
                }
                continue;
            }
        };
        // UTF-8 is checked a stretch of rows at a time (the whole chunk, when it is valid); the
        // fields of a valid row are borrowed, never copied.
        if line_at >= clean.end() {
            clean = Clean::from(data, line_at);
        }
        let fields: [Cow<'_, str>; 6] = if line_end <= clean.end() {
            let text = &clean.text[line_at - clean.from..line_end - clean.from];
            let base = line.as_ptr() as usize;
            f.map(|b| {
                let at = b.as_ptr() as usize - base;
                Cow::Borrowed(text.get(at..at + b.len()).unwrap_or_default())
            })
        } else {
            c.lossy += 1;
            f.map(String::from_utf8_lossy)
        };
        // Users: rows come grouped by user, so the previous row's user is checked first.
        let user = match last_user {
            Some((u, i)) if u == f[0] => i,
            _ => {
                let [u, ..] = &fields;
                let i = match known.users.get(u.as_ref()) {
                    Some(&g) => g,
                    None => {
                        let n = c.users.len() as u32;
                        let i = *user_map.entry(u.clone()).or_insert(n);
                        if i == n {
                            c.users.push(u.clone());
                        }
                        i | LOCAL
                    }
                };
                last_user = Some((f[0], i));
                i
            }
        };
        let [_, _, artist_mbid, artist, track_mbid, title] = fields;
        // Tracks, keyed by MBID or the name hash.
        let hashed = track_mbid.is_empty();
        if hashed {
            c.hashed_track += 1;
        }
        if artist_mbid.is_empty() {
            c.hashed_artist += 1;
        }
        let key = if hashed { Key::H64(fnv1a64(&[artist.as_bytes(), title.as_bytes()])) } else { Key::of(&track_mbid) };
        let track = if let Some(g) = known.tracks.get(key) {
            g
        } else if let Some(i) = track_map.get(key) {
            i | LOCAL
        } else {
            let n = c.tracks.len() as u32;
            let id: Cow<'a, str> = match key {
                Key::H64(h) if hashed => Cow::Owned(hash_id(h)),
                _ => track_mbid.clone(),
            };
            let artist_id = if artist_mbid.is_empty() { Cow::Owned(hash_id(fnv1a64(&[artist.as_bytes()]))) } else { artist_mbid };
            track_map.insert(key, || id.clone(), n);
            c.tracks.push(Track { id: id.into_owned(), artist_id: artist_id.into_owned(), artist: artist.into_owned(), title: title.into_owned() });
            n | LOCAL
        };
        c.cols.user.push(user);
        c.cols.ts.push(ts);
        c.cols.track.push(track);
        c.cols.line.push(line_no as u32);
    }
    c
}

/// A stretch of a chunk known to be valid UTF-8: `text` is `data[from..from + text.len()]`.
#[derive(Default)]
struct Clean<'a> {
    from: usize,
    text: &'a str,
}

impl<'a> Clean<'a> {
    /// The longest valid stretch of `data` from `from` (to the end, or to the first bad byte).
    fn from(data: &'a [u8], from: usize) -> Self {
        let rest = &data[from..];
        let text = match std::str::from_utf8(rest) {
            Ok(t) => t,
            Err(e) => std::str::from_utf8(&rest[..e.valid_up_to()]).unwrap_or_default(),
        };
        Clean { from, text }
    }
    fn end(&self) -> usize {
        self.from + self.text.len()
    }
}

/// The timestamp of a row split into `count` fields `f`, or what is wrong with the row.
fn check_fields(f: &[&[u8]; 6], count: usize) -> Result<i64, String> {
    if count != 6 {
        return Err(format!("{count} tab-separated fields, expected 6"));
    }
    let Some(ts) = super::time::parse_iso8601_lastfm(f[1]) else {
        let shown = String::from_utf8_lossy(&f[1][..f[1].len().min(40)]);
        return Err(format!("bad timestamp {shown:?} (expected ISO-8601, e.g. 2009-05-04T23:08:57Z)"));
    };
    if f[0].is_empty() {
        return Err("empty user id".into());
    }
    if f[4].is_empty() && f[5].is_empty() {
        return Err("no track MBID and no track name".into());
    }
    Ok(ts)
}

/// Merges a parsed chunk's tables into `log`'s: chunk-local users and tracks get global indices
/// (new ones are moved out of the chunk), and the counts are added. The events are left for
/// [`Merged::write`].
fn merge(
    log: &mut Log,
    users: &mut FastMap<Box<str>, u32>,
    tracks: &mut TrackTable<Box<str>>,
    c: Chunk<'_>,
    path: &Path,
    opts: IngestOptions,
) -> Result<Merged, DataError> {
    let base = log.report.lines;
    log.report.header |= c.header;
    log.report.blank_lines += c.blank;
    log.report.lossy_rows += c.lossy;
    log.report.hashed_track_ids += c.hashed_track;
    log.report.hashed_artist_ids += c.hashed_artist;
    let kept = c.bad.len() as u64;
    for (line, what) in c.bad {
        bad(log, path, opts, base + line, what)?;
    }
    log.report.bad_rows += c.bad_count - kept;
    let umap: Vec<u32> = c
        .users
        .into_iter()
        .map(|u| {
            let n = log.users.len() as u32;
            *users.entry(Box::from(u.as_ref())).or_insert_with(|| {
                log.users.push(u.into_owned());
                n
            })
        })
        .collect();
    let tmap: Vec<u32> = c
        .tracks
        .into_iter()
        .map(|t| {
            let k = Key::of(&t.id);
            match tracks.get(k) {
                Some(i) => i,
                None => {
                    let i = log.tracks.len() as u32;
                    tracks.insert(k, || Box::from(t.id.as_str()), i);
                    log.tracks.push(t);
                    i
                }
            }
        })
        .collect();
    if log.tracks.len() as u64 >= u64::from(LOCAL) || log.users.len() as u64 >= u64::from(LOCAL) {
        return Err(DataError::Table { file: path.to_path_buf(), what: format!("more than {LOCAL} distinct users or tracks; split the log") });
    }
    log.report.lines += c.lines;
    Ok(Merged { cols: c.cols, umap, tmap, base })
}

/// A chunk whose tables are merged: its events, and how to make their indices global.
struct Merged {
    cols: Columns,
    /// Chunk-local user and track index → global index.
    umap: Vec<u32>,
    tmap: Vec<u32>,
    /// Lines of the file before the chunk's first.
    base: u64,
}

impl Merged {
    /// Writes the chunk's events, in global indices and file line numbers, into the slots given
    /// (each exactly as long as the chunk's columns).
    fn write(&self, user: &mut [MaybeUninit<u32>], ts: &mut [MaybeUninit<i64>], track: &mut [MaybeUninit<u32>], line: &mut [MaybeUninit<u64>]) {
        let global = |map: &[u32], i: u32| if i & LOCAL != 0 { map[(i & !LOCAL) as usize] } else { i };
        let c = &self.cols;
        assert!(user.len() == c.user.len() && ts.len() == c.ts.len() && track.len() == c.track.len() && line.len() == c.line.len());
        for (d, &u) in user.iter_mut().zip(&c.user) {
            d.write(global(&self.umap, u));
        }
        for (d, &t) in ts.iter_mut().zip(&c.ts) {
            d.write(t);
        }
        for (d, &t) in track.iter_mut().zip(&c.track) {
            d.write(global(&self.tmap, t));
        }
        for (d, &l) in line.iter_mut().zip(&c.line) {
            d.write(self.base + u64::from(l));
        }
    }
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

    /// Every chunk size (down to one line per chunk) gives what one pass over the file gives.
    #[test]
    fn chunked_parse_equals_one_pass() {
        let mut t: Vec<u8> = b"userid\ttimestamp\ta\tb\tc\td\r\n".to_vec();
        for i in 0..400u32 {
            let u = i / 37;
            let tr = (i * 7919) % 53;
            match i % 41 {
                5 => t.extend_from_slice(b"\n"),
                9 => t.extend_from_slice(b"u\tnot-a-time\ta\tb\tc\td\n"),
                13 => t.extend_from_slice(b"u\t2009-05-04T23:08:57Z\ta\tb\n"),
                17 => {
                    t.extend_from_slice(format!("user_{u}\t2009-05-04T23:{:02}:57Z\t\tArt", i % 60).as_bytes());
                    t.push(0xff); // not UTF-8: decoded lossily
                    t.extend_from_slice(format!("{tr}\t\tSong {tr}\r\n").as_bytes());
                }
                _ => t.extend_from_slice(
                    format!(
                        "user_{u}\t2009-05-04T23:{:02}:57Z\tam{}\tArtist {}\t{}\tSong {tr}\n",
                        i % 60,
                        tr % 5,
                        tr % 5,
                        if tr % 3 == 0 { String::new() } else { format!("tm{tr}") }
                    )
                    .as_bytes(),
                ),
            }
        }
        t.extend_from_slice(b"user_x\t2009-05-04T23:08:57Z\tam1\tArtist\ttm1\tSong"); // no final newline
        let opts = IngestOptions { on_bad_row: OnBadRow::Skip, max_examples: 3 };
        let show = |l: &Log| format!("{:?} {:?} {:?} {:?} {:?} {:?} {:?}", l.users, l.tracks, l.user, l.ts, l.track, l.line, l.report);
        let one = ingest_chunked(&t[..], Path::new("t"), opts, &mut |_| {}, usize::MAX).unwrap();
        assert_eq!(one.report.bad_rows, 20);
        assert!(one.report.header && one.report.lossy_rows > 0 && one.report.hashed_track_ids > 0);
        for chunk in [1, 7, 64, 1000, 5000, CHUNK] {
            let l = ingest_chunked(&t[..], Path::new("t"), opts, &mut |_| {}, chunk).unwrap();
            assert_eq!(show(&l), show(&one), "streamed, chunk {chunk}");
            // The mapped path cuts the same bytes, and releases each range once, in order.
            let released = std::cell::RefCell::new(0usize);
            let release = |from: usize, to: usize| {
                assert!(from == *released.borrow() && to > from, "released {from}..{to}");
                *released.borrow_mut() = to;
            };
            let l = ingest_mapped(&t, Path::new("t"), opts, &mut |_| {}, chunk, &release).unwrap();
            assert_eq!(show(&l), show(&one), "mapped, chunk {chunk}");
            assert_eq!(*released.borrow(), t.len());
        }
        let strict = IngestOptions { on_bad_row: OnBadRow::Error, max_examples: 3 };
        for chunk in [1, 64, usize::MAX] {
            let e = ingest_chunked(&t[..], Path::new("t"), strict, &mut |_| {}, chunk).unwrap_err().to_string();
            assert!(e.starts_with("t:11: bad timestamp"), "chunk {chunk}: {e}");
            let e = ingest_mapped(&t, Path::new("t"), strict, &mut |_| {}, chunk, &|_, _| {}).unwrap_err().to_string();
            assert!(e.starts_with("t:11: bad timestamp"), "mapped, chunk {chunk}: {e}");
        }
    }

    /// A regular file is mapped, a pipe is streamed (plain or gzip): the same log either way, and
    /// no byte of a pipe is lost to the gzip check.
    #[test]
    fn files_and_pipes_give_the_same_log() {
        use std::io::Write;
        let mut t = Vec::new();
        for i in 0..3000u32 {
            t.extend_from_slice(
                format!(
                    "user_{}\t2009-05-04T23:{:02}:57Z\tam{}\tArtist\t{}\tSong {i}\n",
                    i / 700,
                    i % 60,
                    i % 7,
                    if i % 3 == 0 { String::new() } else { format!("tm{}", i % 400) }
                )
                .as_bytes(),
            );
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&t).unwrap();
        let gz = gz.finish().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let show = |l: &Log| format!("{:?} {:?} {:?} {:?} {:?} {:?}", l.users, l.tracks, l.user, l.ts, l.track, l.line);
        let file = dir.path().join("log.tsv");
        std::fs::write(&file, &t).unwrap();
        let want = show(&ingest(&file, IngestOptions::default(), &mut |_| {}).unwrap());
        assert!(want.starts_with("[\"user_0\""), "{}", &want[..40]);
        for (name, bytes) in [("plain", &t), ("gzip", &gz)] {
            let fifo = dir.path().join(name);
            let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
            // SAFETY: a valid NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
            let writer = {
                let (fifo, bytes) = (fifo.clone(), bytes.clone());
                std::thread::spawn(move || std::fs::OpenOptions::new().write(true).open(fifo).unwrap().write_all(&bytes).unwrap())
            };
            let got = ingest(&fifo, IngestOptions::default(), &mut |_| {}).unwrap();
            writer.join().unwrap();
            assert_eq!(show(&got), want, "{name} through a pipe");
        }
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
