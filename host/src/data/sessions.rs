//! Filters, sessionization and completion ratios, in the documented order:
//!
//! 0. sort events by (user, timestamp, line); drop exact duplicates (same user, time, track);
//!    compute each event's completion ratio against the next play of the same user;
//! 1. keep users with ≥ `min_user_streams` events;
//! 2. keep tracks with ≥ `min_track_plays` plays (counted after 1);
//! 3. split sessions where the gap to the previous kept event exceeds `session_gap_minutes`;
//! 4. drop consecutive repeats of a track within a session;
//! 5. keep sessions with ≥ `min_session_len` tracks, truncated to `max_session_len`;
//! 6. keep users with ≥ `min_user_sessions` sessions.
//!
//! Then items are re-indexed densely (by plays, descending, then track id) and users by id.
use super::config::{DataConfig, LastEvent};
use super::ingest::{Key, Log, Track};
use super::DataError;
use rayon::prelude::*;
use std::path::Path;

/// Sessions in compressed-row form: session `s` spans `offsets[s]..offsets[s+1]` of the flat
/// per-event arrays. Sessions are sorted by (user, start time).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sessions {
    /// Per session: dense user index.
    pub user: Vec<u32>,
    /// Session boundaries, `len() == sessions + 1`.
    pub offsets: Vec<u32>,
    /// Per event: dense item index.
    pub item: Vec<u32>,
    /// Per event: Unix seconds.
    pub ts: Vec<i64>,
    /// Per event: completion ratio in [0, 1], or unknown.
    pub completion: Vec<Option<f32>>,
}

impl Sessions {
    /// Number of sessions.
    pub fn len(&self) -> usize {
        self.user.len()
    }
    /// Whether there are no sessions.
    pub fn is_empty(&self) -> bool {
        self.user.is_empty()
    }
    /// The event range of session `s`.
    pub fn range(&self, s: usize) -> std::ops::Range<usize> {
        self.offsets[s] as usize..self.offsets[s + 1] as usize
    }
}

/// One item of the final catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Track id, names.
    pub track: Track,
    /// Plays in the final sessions.
    pub plays: u64,
    /// Duration in seconds, when the item table knows it.
    pub duration_s: Option<f32>,
}

/// One user of the final data.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    /// The log's user id.
    pub id: String,
    /// Sessions kept.
    pub sessions: u32,
    /// Events kept.
    pub plays: u64,
}

/// Rows, users and tracks left after each step, for the report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FilterReport {
    /// `(step, events, users, tracks, sessions)` after each step; sessions 0 before step 3.
    pub steps: Vec<(String, u64, u64, u64, u64)>,
    /// Events whose completion ratio is null (unknown duration or `last_event = "null"`).
    pub completion_null: u64,
    /// Events whose ratio used `estimate_duration_s`.
    pub completion_estimated: u64,
}

/// The benchmark's content: catalog, users and sessions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dataset {
    /// Items by dense index.
    pub items: Vec<Item>,
    /// Users by dense index.
    pub users: Vec<User>,
    /// Sessions.
    pub sessions: Sessions,
    /// What each step kept.
    pub report: FilterReport,
}

/// Track durations in seconds by track id, keyed as the ingest keys tracks (an MBID by its 128
/// bits, a name-hash id by its 64), so that reading a large table allocates nothing per row.
#[derive(Default)]
pub struct Durations(super::ingest::TrackTable<Box<str>, f32>);

impl Durations {
    /// The duration of track `id`, if the table has it.
    pub fn get(&self, id: &str) -> Option<f32> {
        self.0.get(Key::of(id))
    }
    /// Sets the duration of track `id`.
    pub fn insert(&mut self, id: &str, seconds: f32) {
        self.0.insert(Key::of(id), || Box::from(id), seconds);
    }
    /// Tracks in the table.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<S: AsRef<str>> FromIterator<(S, f32)> for Durations {
    fn from_iter<I: IntoIterator<Item = (S, f32)>>(iter: I) -> Self {
        let mut d = Durations::default();
        for (id, s) in iter {
            d.insert(id.as_ref(), s);
        }
        d
    }
}

/// Reads a duration table: a TSV whose header names `track_id` and `duration_s`.
pub fn read_durations(path: &Path) -> Result<Durations, DataError> {
    parse_durations(super::ingest::open(path)?, path)
}

/// [`read_durations`] over any reader; `path` names it in errors.
pub fn parse_durations(mut r: impl std::io::Read, path: &Path) -> Result<Durations, DataError> {
    let mut bytes = Vec::new();
    let failed = r.read_to_end(&mut bytes).err();
    match (std::str::from_utf8(&bytes), failed) {
        (Ok(text), None) => parse_duration_lines(text.lines().map(Ok), memchr::memchr_iter(b'\n', &bytes).count(), path),
        // Not UTF-8, or a read error: line by line, so the error is the one a streamed read gives
        // (the complete lines before a read error count, then the error).
        (_, failed) => {
            if failed.is_some() {
                bytes.truncate(memchr::memrchr(b'\n', &bytes).map_or(0, |p| p + 1));
            }
            parse_duration_lines(std::io::BufRead::lines(&bytes[..]).chain(failed.map(Err)), 0, path)
        }
    }
}

fn parse_duration_lines<S: AsRef<str>>(mut lines: impl Iterator<Item = std::io::Result<S>>, rows: usize, path: &Path) -> Result<Durations, DataError> {
    let err = |what: String| DataError::Table { file: path.into(), what };
    let io = |source| DataError::Io { file: path.into(), source };
    let header = lines.next().transpose().map_err(io)?.ok_or_else(|| err("empty; expected a header with track_id and duration_s".into()))?;
    let header: Vec<&str> = header.as_ref().trim_end_matches('\r').split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).ok_or_else(|| err(format!("no column `{name}` in the header")));
    let (ci, cd) = (col("track_id")?, col("duration_s")?);
    let mut out = Durations::default();
    out.0.reserve(rows);
    for (i, l) in lines.enumerate() {
        let l = l.map_err(io)?;
        let l = l.as_ref().trim_end_matches('\r');
        let (mut id, mut d) = (None, None);
        // The tab-separated fields, up to the last one needed.
        let mut from = 0;
        for (k, tab) in memchr::memchr_iter(b'\t', l.as_bytes()).chain([l.len()]).enumerate() {
            let f = l.get(from..tab).unwrap_or_default();
            from = tab + 1;
            if k == ci {
                id = Some(f);
            }
            if k == cd {
                d = Some(f);
            }
            if k >= ci.max(cd) {
                break;
            }
        }
        let (Some(id), Some(d)) = (id, d) else {
            return Err(err(format!("line {}: too few columns", i + 2)));
        };
        if d.is_empty() {
            continue;
        }
        let d: f32 = d.parse().map_err(|_| err(format!("line {}: duration_s {d:?} is not a number", i + 2)))?;
        if !(d.is_finite() && d > 0.0) {
            return Err(err(format!("line {}: duration_s {d} must be positive", i + 2)));
        }
        out.insert(id, d);
    }
    Ok(out)
}

/// Runs the filters and sessionization of `cfg` over `log`. `durations` maps track ids to seconds.
pub fn build(log: &Log, cfg: &DataConfig, durations: &Durations) -> Dataset {
    let f = &cfg.filters;
    let gap = cfg.gap_seconds();
    let mut report = FilterReport::default();
    let n_tracks = log.tracks.len();
    let mut clock = std::time::Instant::now();
    let mut lap = |what: &str| { tracing::debug!("build: {what} {:.1} ms", clock.elapsed().as_secs_f64() * 1e3); clock = std::time::Instant::now(); };
    let step = |r: &mut FilterReport, name: &str, events: u64, users: u64, tracks: u64, sessions: u64| {
        r.steps.push((name.to_string(), events, users, tracks, sessions));
    };
    step(&mut report, "ingested", log.ts.len() as u64, log.users.len() as u64, n_tracks as u64, 0);

    // 0. Sort by (user, time, line): out-of-order files (LastFM-1K is newest first) are fine.
    // The events are bucketed by user (in line order), then each user's are sorted by time, in
    // parallel: the same order as one sort by (user, time, line).
    let mut bucket = vec![0usize; log.users.len() + 1];
    log.user.iter().for_each(|&u| bucket[u as usize + 1] += 1);
    for u in 0..log.users.len() {
        bucket[u + 1] += bucket[u];
    }
    let mut order: Vec<(i64, u32)> = vec![(0, 0); log.ts.len()]; // (ts, line index)
    {
        let mut at = bucket.clone();
        for (i, (&u, &t)) in log.user.iter().zip(&log.ts).enumerate() {
            order[at[u as usize]] = (t, i as u32);
            at[u as usize] += 1;
        }
    }
    let mut per_user: Vec<&mut [(i64, u32)]> = Vec::with_capacity(log.users.len());
    let mut rest = &mut order[..];
    for u in 0..log.users.len() {
        let (head, tail) = rest.split_at_mut(bucket[u + 1] - bucket[u]);
        per_user.push(head);
        rest = tail;
    }
    let dedup = f.drop_exact_duplicates;
    let user_n: Vec<u32> = per_user
        .par_iter_mut()
        .map(|s| {
            // Logs come newest first: reversed, a user's events are nearly sorted already.
            if s.first() > s.last() {
                s.reverse();
            }
            s.sort_unstable();
            // In place: the line index becomes the track, and exact duplicates (same time and
            // track as the previous event kept) go. The kept events are the first `n`.
            let mut n = 0;
            for k in 0..s.len() {
                let e = (s[k].0, log.track[s[k].1 as usize]);
                if dedup && n > 0 && s[n - 1] == e {
                    continue;
                }
                s[n] = e;
                n += 1;
            }
            n as u32
        })
        .collect();
    let mut ev: Vec<(u32, i64, u32)> = Vec::with_capacity(user_n.iter().map(|&n| n as usize).sum()); // (user, ts, track)
    for (u, (s, &n)) in per_user.iter().zip(&user_n).enumerate() {
        ev.extend(s[..n as usize].iter().map(|&(t, tr)| (u as u32, t, tr)));
    }
    drop(per_user);
    drop(order);
    step(&mut report, "sorted, exact duplicates dropped", ev.len() as u64, log.users.len() as u64, n_tracks as u64, 0);

    lap("sort+dedup");
    // Completion ratios against the next raw play of the same user (filtered plays were heard too).
    let table: Vec<Option<f32>> = log.tracks.par_iter().map(|t| durations.get(&t.id)).collect();
    let dur: Vec<Option<f32>> = table.iter().map(|d| d.or(cfg.completion.estimate_duration_s.map(|e| e as f32))).collect();
    let known: Vec<bool> = table.iter().map(|d| d.is_some()).collect();
    let completion: Vec<Option<f32>> = (0..ev.len())
        .into_par_iter()
        .map(|i| {
            let (u, t, tr) = ev[i];
            let next = ev.get(i + 1).filter(|n| n.0 == u && n.1 - t <= gap);
            match next {
                Some(n) => dur[tr as usize].map(|d| ((n.1 - t) as f32 / d).clamp(0.0, 1.0)),
                None => match cfg.completion.last_event {
                    LastEvent::Null => None,
                    LastEvent::Zero => Some(0.0),
                    LastEvent::One => Some(1.0),
                },
            }
        })
        .collect();

    lap("completion");
    // 1. Users by streams (`user_n`, counted above). Every user has an event left in `ev`.
    let keep_user: Vec<bool> = user_n.iter().map(|&n| n >= f.min_user_streams).collect();
    // The plays of each track by the kept users: the tracks left are its non-zero entries.
    let mut track_n = vec![0u32; n_tracks];
    let mut kept_1 = 0usize;
    for e in &ev {
        if keep_user[e.0 as usize] {
            track_n[e.2 as usize] += 1;
            kept_1 += 1;
        }
    }
    let users_1 = keep_user.iter().filter(|&&k| k).count() as u64;
    let tracks_1 = track_n.iter().filter(|&&n| n > 0).count() as u64;
    step(&mut report, "users >= min_user_streams", kept_1 as u64, users_1, tracks_1, 0);
    let count_tracks = |k: &[u32]| {
        let mut seen = vec![false; n_tracks];
        k.iter().for_each(|&i| seen[ev[i as usize].2 as usize] = true);
        seen.iter().filter(|&&s| s).count() as u64
    };

    lap("filter1");
    // 2. Tracks by plays.
    let mut kept: Vec<u32> = Vec::with_capacity(kept_1);
    let mut user_left = vec![false; log.users.len()];
    for (i, e) in ev.iter().enumerate() {
        if keep_user[e.0 as usize] && track_n[e.2 as usize] >= f.min_track_plays {
            kept.push(i as u32);
            user_left[e.0 as usize] = true;
        }
    }
    let users_2 = user_left.iter().filter(|&&k| k).count() as u64;
    let tracks_2 = track_n.iter().filter(|&&n| n > 0 && n >= f.min_track_plays).count() as u64;
    step(&mut report, "tracks >= min_track_plays", kept.len() as u64, users_2, tracks_2, 0);

    lap("filter2");
    // 3–5. Sessions at gaps; repeats; length.
    let mut sess_user: Vec<u32> = Vec::new();
    let mut offsets: Vec<u32> = vec![0];
    let mut flat: Vec<u32> = Vec::with_capacity(kept.len()); // indices into ev
    let (mut n_sessions_raw, mut after_repeats) = (0u64, 0u64);
    let mut cur: Vec<u32> = Vec::new();
    let max_len = if f.max_session_len == 0 { usize::MAX } else { f.max_session_len as usize };
    let flush = |cur: &mut Vec<u32>, flat: &mut Vec<u32>, offsets: &mut Vec<u32>, sess_user: &mut Vec<u32>| {
        if !cur.is_empty() && cur.len() >= f.min_session_len as usize {
            sess_user.push(ev[cur[0] as usize].0);
            flat.extend(cur.iter().take(max_len));
            offsets.push(flat.len() as u32);
        }
        cur.clear();
    };
    let mut prev: Option<(u32, i64)> = None;
    for &i in &kept {
        let (u, t, tr) = ev[i as usize];
        let new_session = match prev {
            Some((pu, pt)) => pu != u || t - pt > gap,
            None => true,
        };
        prev = Some((u, t));
        if new_session {
            n_sessions_raw += 1;
            flush(&mut cur, &mut flat, &mut offsets, &mut sess_user);
        }
        if f.drop_consecutive_repeats {
            if let Some(&last) = cur.last() {
                if ev[last as usize].2 == tr {
                    continue;
                }
            }
        }
        after_repeats += 1;
        cur.push(i);
    }
    flush(&mut cur, &mut flat, &mut offsets, &mut sess_user);
    step(&mut report, "sessions at the gap", kept.len() as u64, users_2, tracks_2, n_sessions_raw);
    step(&mut report, "consecutive repeats dropped", after_repeats, users_2, tracks_2, n_sessions_raw);
    let n_users_5 = {
        let mut s = sess_user.clone();
        s.dedup();
        s.len() as u64
    };
    step(&mut report, "sessions >= min_session_len, truncated", flat.len() as u64, n_users_5, count_tracks(&flat), sess_user.len() as u64);

    lap("sessions");
    // 6. Users by sessions.
    let mut user_s = vec![0u32; log.users.len()];
    sess_user.iter().for_each(|&u| user_s[u as usize] += 1);
    let mut final_sessions: Vec<usize> = (0..sess_user.len()).filter(|&s| user_s[sess_user[s] as usize] >= f.min_user_sessions).collect();
    // Sessions are already in (user, time) order; re-sort by user id string below via the dense map.

    // Dense users (by id) and items (by plays desc, then id).
    let mut item_plays = vec![0u64; n_tracks];
    let mut user_plays = vec![0u64; log.users.len()];
    for &s in &final_sessions {
        let u = sess_user[s] as usize;
        for &i in &flat[offsets[s] as usize..offsets[s + 1] as usize] {
            item_plays[ev[i as usize].2 as usize] += 1;
            user_plays[u] += 1;
        }
    }
    let mut users_raw: Vec<u32> = (0..log.users.len() as u32).filter(|&u| user_plays[u as usize] > 0).collect();
    users_raw.sort_unstable_by(|a, b| log.users[*a as usize].cmp(&log.users[*b as usize]));
    let mut user_map = vec![u32::MAX; log.users.len()];
    for (d, &u) in users_raw.iter().enumerate() {
        user_map[u as usize] = d as u32;
    }
    let mut items_raw: Vec<u32> = (0..n_tracks as u32).filter(|&t| item_plays[t as usize] > 0).collect();
    items_raw.sort_unstable_by(|a, b| item_plays[*b as usize].cmp(&item_plays[*a as usize]).then_with(|| log.tracks[*a as usize].id.cmp(&log.tracks[*b as usize].id)));
    let mut item_map = vec![u32::MAX; n_tracks];
    for (d, &t) in items_raw.iter().enumerate() {
        item_map[t as usize] = d as u32;
    }
    final_sessions.sort_by_key(|&s| (user_map[sess_user[s] as usize], ev[flat[offsets[s] as usize] as usize].1));

    let mut out = Sessions { offsets: vec![0], ..Sessions::default() };
    let n_out: usize = final_sessions.iter().map(|&s| (offsets[s + 1] - offsets[s]) as usize).sum();
    out.user.reserve(final_sessions.len());
    out.offsets.reserve(final_sessions.len());
    out.item.reserve(n_out);
    out.ts.reserve(n_out);
    out.completion.reserve(n_out);
    for &s in &final_sessions {
        out.user.push(user_map[sess_user[s] as usize]);
        for &i in &flat[offsets[s] as usize..offsets[s + 1] as usize] {
            let (_, t, tr) = ev[i as usize];
            out.item.push(item_map[tr as usize]);
            out.ts.push(t);
            let c = completion[i as usize];
            if c.is_none() {
                report.completion_null += 1;
            } else if !known[tr as usize] && cfg.completion.estimate_duration_s.is_some() && ev.get(i as usize + 1).is_some_and(|n| n.0 == ev[i as usize].0 && n.1 - t <= gap) {
                report.completion_estimated += 1;
            }
            out.completion.push(c);
        }
        out.offsets.push(out.item.len() as u32);
    }
    step(&mut report, "users >= min_user_sessions", out.item.len() as u64, users_raw.len() as u64, items_raw.len() as u64, out.len() as u64);

    lap("output");
    let items = items_raw
        .iter()
        .map(|&t| Item { track: log.tracks[t as usize].clone(), plays: item_plays[t as usize], duration_s: table[t as usize] })
        .collect();
    let mut user_sessions = vec![0u32; users_raw.len()];
    out.user.iter().for_each(|&u| user_sessions[u as usize] += 1);
    let users = users_raw
        .iter()
        .enumerate()
        .map(|(d, &u)| User { id: log.users[u as usize].clone(), sessions: user_sessions[d], plays: user_plays[u as usize] })
        .collect();
    lap("items");
    Dataset { items, users, sessions: out, report }
}

impl FilterReport {
    /// A table: one line per step.
    pub fn table(&self) -> String {
        let mut s = format!("{:<40} {:>12} {:>8} {:>10} {:>10}\n", "step", "events", "users", "tracks", "sessions");
        for (name, e, u, t, se) in &self.steps {
            let se = if *se == 0 { "-".to_string() } else { se.to_string() };
            s.push_str(&format!("{name:<40} {e:>12} {u:>8} {t:>10} {se:>10}\n"));
        }
        s.push_str(&format!("completion ratio: {} null, {} from the estimated duration\n", self.completion_null, self.completion_estimated));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::ingest::{ingest_reader, IngestOptions};

    fn log(rows: &[(&str, i64, &str)]) -> Log {
        let mut text = Vec::new();
        for (u, t, tr) in rows {
            text.extend_from_slice(u.as_bytes());
            text.push(b'\t');
            crate::data::time::format_iso8601(*t, &mut text);
            text.extend_from_slice(format!("\tam\tArtist\t{tr}\tTitle {tr}\n").as_bytes());
        }
        ingest_reader(&text[..], Path::new("t"), IngestOptions::default(), &mut |_| {}).unwrap()
    }

    #[test]
    fn sessions_repeats_truncation_and_completion() {
        // u1: a b b c | (gap) d e ; out of order in the file.
        let l = log(&[("u1", 1000 + 3 * 3600, "e"), ("u1", 1000, "a"), ("u1", 1100, "b"), ("u1", 1150, "b"), ("u1", 1400, "c"), ("u1", 1000 + 3 * 3600 - 60, "d"), ("u1", 1100, "b")]);
        let mut cfg = DataConfig::default();
        cfg.filters.max_session_len = 2;
        cfg.completion.last_event = LastEvent::Null;
        let durs: Durations = [("a", 200.0), ("b", 100.0), ("c", 10.0), ("d", 30.0)].into_iter().collect();
        let d = build(&l, &cfg, &durs);
        assert_eq!(d.sessions.offsets, [0, 2, 4]);
        let title = |i: u32| d.items[i as usize].track.id.clone();
        let seq: Vec<String> = d.sessions.item.iter().map(|&i| title(i)).collect();
        assert_eq!(seq, ["a", "b", "d", "e"]);
        // a: 100 s of 200 → 0.5; b: next raw play (the repeat) after 50 s of 100 → 0.5; d: 60/30 → 1; e: last → null.
        assert_eq!(d.sessions.completion, [Some(0.5), Some(0.5), Some(1.0), None]);
        assert_eq!(d.report.steps[1].1, 6, "the exact duplicate is dropped");
    }

    #[test]
    fn estimated_durations_are_counted_and_last_event_is_a_parameter() {
        let l = log(&[("u", 0, "a"), ("u", 60, "b"), ("u", 100, "c")]);
        let mut cfg = DataConfig::default();
        cfg.completion.estimate_duration_s = Some(120.0);
        cfg.completion.last_event = LastEvent::One;
        let durs: Durations = [("b", 40.0)].into_iter().collect();
        let d = build(&l, &cfg, &durs);
        assert_eq!(d.sessions.completion, [Some(0.5), Some(1.0), Some(1.0)]);
        assert_eq!(d.report.completion_estimated, 1, "only a's ratio used the estimate");
        assert_eq!(d.items.iter().find(|i| i.track.id == "a").unwrap().duration_s, None, "the estimate is not stored as a duration");
    }

    #[test]
    fn filters_apply_in_order() {
        let mut rows = Vec::new();
        for i in 0..30 {
            rows.push(("heavy", i * 60, if i % 2 == 0 { "x" } else { "y" }));
        }
        rows.push(("heavy", 10_000, "rare"));
        rows.push(("light", 0, "x"));
        let l = log(&rows);
        let mut cfg = DataConfig::default();
        cfg.filters.min_user_streams = 10;
        cfg.filters.min_track_plays = 2;
        let d = build(&l, &cfg, &Durations::default());
        assert_eq!(d.users.len(), 1);
        assert_eq!(d.items.len(), 2, "the rare track and the light user are gone");
        assert_eq!(d.sessions.len(), 1);
        assert!(d.sessions.completion.iter().all(|c| c.is_none()), "unknown durations stay null");
    }
}
