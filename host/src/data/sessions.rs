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
use super::take_front;
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
    let io = |cause| DataError::Io { file: path.into(), cause };
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
///
/// Every step but the global counts runs per user, in parallel: a user's sessions depend only on
/// the user's events and the track counts.
pub fn build(log: &Log, cfg: &DataConfig, durations: &Durations) -> Dataset {
    let f = &cfg.filters;
    let gap = cfg.gap_seconds();
    let mut report = FilterReport::default();
    let (n_users, n_tracks) = (log.users.len(), log.tracks.len());
    let mut clock = std::time::Instant::now();
    let mut lap = |what: &str| {
        tracing::debug!("build: {what} in {:.1} ms", clock.elapsed().as_secs_f64() * 1e3);
        clock = std::time::Instant::now();
    };
    let step = |r: &mut FilterReport, name: &str, events: usize, users: usize, tracks: usize, sessions: usize| {
        r.steps.push((name.to_string(), events as u64, users as u64, tracks as u64, sessions as u64));
    };
    step(&mut report, "ingested", log.ts.len(), n_users, n_tracks, 0);

    // 0. Each user's events as (time, track), sorted by (time, line), exact duplicates dropped.
    let (mut order, bucket) = by_user(log);
    lap("events bucketed by user");
    let dedup = f.drop_exact_duplicates;
    let mut per_user: Vec<&mut [(i64, u32)]> = Vec::with_capacity(n_users);
    let mut rest = &mut order[..];
    for u in 0..n_users {
        per_user.push(take_front(&mut rest, bucket[u + 1] - bucket[u]));
    }
    per_user.par_iter_mut().for_each(|s| {
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
        let all = std::mem::take(s);
        *s = &mut all[..n];
    });
    let per_user: Vec<&[(i64, u32)]> = per_user.into_iter().map(|s| &*s).collect();
    let n_sorted: usize = per_user.iter().map(|s| s.len()).sum();
    step(&mut report, "sorted, exact duplicates dropped", n_sorted, n_users, n_tracks, 0);
    lap("sorted");

    // 1. Users by streams.
    let keep_user: Vec<bool> = per_user.iter().map(|s| s.len() >= f.min_user_streams as usize).collect();
    // The plays of each track by the kept users: the tracks left are its non-zero entries.
    let track_n: Vec<u32> = per_user
        .par_iter()
        .zip(&keep_user)
        .with_min_len(n_users.div_ceil(rayon::current_num_threads()).max(1))
        .fold(
            || vec![0u32; n_tracks],
            |mut n, (s, &keep)| {
                if keep {
                    s.iter().for_each(|e| n[e.1 as usize] += 1);
                }
                n
            },
        )
        .reduce_with(|mut a, b| {
            a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
            a
        })
        .unwrap_or_else(|| vec![0; n_tracks]);
    let kept_1: usize = per_user.iter().zip(&keep_user).filter(|(_, &k)| k).map(|(s, _)| s.len()).sum();
    let users_1 = keep_user.iter().filter(|&&k| k).count();
    step(&mut report, "users >= min_user_streams", kept_1, users_1, track_n.iter().filter(|&&n| n > 0).count(), 0);

    // 2.–5. Per user: tracks by plays; sessions at gaps; repeats; session length.
    let max_len = if f.max_session_len == 0 { usize::MAX } else { f.max_session_len as usize };
    let min_len = (f.min_session_len as usize).max(1);
    let user_sessions: Vec<UserSessions> = per_user
        .par_iter()
        .zip(&keep_user)
        .map(|(s, &keep)| {
            let mut out = UserSessions::default();
            if !keep {
                return out;
            }
            let mut cur: Vec<u32> = Vec::new();
            let flush = |cur: &mut Vec<u32>, out: &mut UserSessions| {
                if cur.len() >= min_len {
                    out.events.extend(cur.iter().take(max_len));
                    out.ends.push(out.events.len() as u32);
                }
                cur.clear();
            };
            let mut prev: Option<i64> = None;
            for (p, &(t, tr)) in s.iter().enumerate() {
                if track_n[tr as usize] < f.min_track_plays {
                    continue;
                }
                out.kept += 1;
                if prev.is_none_or(|pt| t - pt > gap) {
                    out.raw_sessions += 1;
                    flush(&mut cur, &mut out);
                }
                prev = Some(t);
                if f.drop_consecutive_repeats && cur.last().is_some_and(|&last| s[last as usize].1 == tr) {
                    continue;
                }
                out.after_repeats += 1;
                cur.push(p as u32);
            }
            flush(&mut cur, &mut out);
            out
        })
        .collect();
    let sum = |g: fn(&UserSessions) -> usize| user_sessions.iter().map(g).sum::<usize>();
    let users_2 = user_sessions.iter().filter(|u| u.kept > 0).count();
    let tracks_2 = track_n.iter().filter(|&&n| n > 0 && n >= f.min_track_plays).count();
    let (raw_sessions, after_repeats) = (sum(|u| u.raw_sessions as usize), sum(|u| u.after_repeats as usize));
    step(&mut report, "tracks >= min_track_plays", sum(|u| u.kept as usize), users_2, tracks_2, 0);
    step(&mut report, "sessions at the gap", sum(|u| u.kept as usize), users_2, tracks_2, raw_sessions);
    step(&mut report, "consecutive repeats dropped", after_repeats, users_2, tracks_2, raw_sessions);
    let mut seen = vec![false; n_tracks];
    for (s, us) in per_user.iter().zip(&user_sessions) {
        us.events.iter().for_each(|&p| seen[s[p as usize].1 as usize] = true);
    }
    let tracks_5 = seen.iter().filter(|&&s| s).count();
    let users_5 = user_sessions.iter().filter(|u| !u.ends.is_empty()).count();
    step(&mut report, "sessions >= min_session_len, truncated", sum(|u| u.events.len()), users_5, tracks_5, sum(|u| u.ends.len()));
    lap("sessions");

    // 6. Users by sessions. Then dense users (by id) and items (by plays desc, then id).
    let final_user = |u: usize| !user_sessions[u].ends.is_empty() && user_sessions[u].ends.len() >= f.min_user_sessions as usize;
    let mut item_plays = vec![0u64; n_tracks];
    let mut users_raw: Vec<u32> = Vec::new();
    for u in (0..n_users).filter(|&u| final_user(u)) {
        users_raw.push(u as u32);
        user_sessions[u].events.iter().for_each(|&p| item_plays[per_user[u][p as usize].1 as usize] += 1);
    }
    users_raw.sort_unstable_by(|a, b| log.users[*a as usize].cmp(&log.users[*b as usize]));
    // Items by plays (descending), then id. The ids' first 8 bytes (zero-padded, big-endian)
    // order all but a few ties without reading the strings; the rest compare the whole ids.
    let prefix = |t: usize| {
        let (b, mut k) = (log.tracks[t].id.as_bytes(), [0u8; 8]);
        k[..b.len().min(8)].copy_from_slice(&b[..b.len().min(8)]);
        u64::from_be_bytes(k)
    };
    let mut keyed: Vec<(u64, u64, u32)> = (0..n_tracks).filter(|&t| item_plays[t] > 0).map(|t| (u64::MAX - item_plays[t], prefix(t), t as u32)).collect();
    keyed.par_sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)).then_with(|| log.tracks[a.2 as usize].id.cmp(&log.tracks[b.2 as usize].id)));
    let items_raw: Vec<u32> = keyed.into_iter().map(|k| k.2).collect();
    let mut item_map = vec![u32::MAX; n_tracks];
    for (d, &t) in items_raw.iter().enumerate() {
        item_map[t as usize] = d as u32;
    }
    // Durations, looked up for the final items only.
    let item_duration: Vec<Option<f32>> = items_raw.par_iter().map(|&t| durations.get(&log.tracks[t as usize].id)).collect();
    let mut duration = vec![None; n_tracks];
    for (&t, &d) in items_raw.iter().zip(&item_duration) {
        duration[t as usize] = d;
    }
    lap("catalog");

    // The output, user by user in parallel, each into its own stretch of the columns.
    let n_sessions: usize = users_raw.iter().map(|&u| user_sessions[u as usize].ends.len()).sum();
    let n_events: usize = users_raw.iter().map(|&u| user_sessions[u as usize].events.len()).sum();
    let mut out = Sessions {
        user: vec![0; n_sessions],
        offsets: vec![0; n_sessions + 1],
        item: vec![0; n_events],
        ts: vec![0; n_events],
        completion: vec![None; n_events],
    };
    let mut jobs = Vec::with_capacity(users_raw.len());
    {
        let (mut user, mut offsets, mut item, mut ts, mut completion) =
            (&mut out.user[..], &mut out.offsets[1..], &mut out.item[..], &mut out.ts[..], &mut out.completion[..]);
        let mut base = 0u32;
        for (d, &u) in users_raw.iter().enumerate() {
            let us = &user_sessions[u as usize];
            let (k, n) = (us.ends.len(), us.events.len());
            jobs.push((
                d as u32,
                u as usize,
                base,
                take_front(&mut user, k),
                take_front(&mut offsets, k),
                take_front(&mut item, n),
                take_front(&mut ts, n),
                take_front(&mut completion, n),
            ));
            base += n as u32;
        }
    }
    let estimate = cfg.completion.estimate_duration_s.map(|e| e as f32);
    let (null, estimated) = jobs
        .into_par_iter()
        .map(|(d, u, base, user, offsets, item, ts, completion)| {
            let (s, us) = (per_user[u], &user_sessions[u]);
            user.fill(d);
            offsets.iter_mut().zip(&us.ends).for_each(|(o, &e)| *o = base + e);
            let (mut null, mut estimated) = (0u64, 0u64);
            for (k, &p) in us.events.iter().enumerate() {
                let (t, tr) = s[p as usize];
                item[k] = item_map[tr as usize];
                ts[k] = t;
                // Against the next play of the user in the sorted log (filtered plays were heard too).
                let c = match s.get(p as usize + 1).filter(|n| n.0 - t <= gap) {
                    Some(n) => {
                        let known = duration[tr as usize];
                        if known.is_none() && estimate.is_some() {
                            estimated += 1;
                        }
                        known.or(estimate).map(|d| ((n.0 - t) as f32 / d).clamp(0.0, 1.0))
                    }
                    None => match cfg.completion.last_event {
                        LastEvent::Null => None,
                        LastEvent::Zero => Some(0.0),
                        LastEvent::One => Some(1.0),
                    },
                };
                null += u64::from(c.is_none());
                completion[k] = c;
            }
            (null, estimated)
        })
        .reduce(|| (0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    report.completion_null = null;
    report.completion_estimated = estimated;
    step(&mut report, "users >= min_user_sessions", n_events, users_raw.len(), items_raw.len(), n_sessions);
    lap("sessions written");

    let items = items_raw
        .par_iter()
        .zip(item_duration)
        .map(|(&t, duration_s)| Item { track: log.tracks[t as usize].clone(), plays: item_plays[t as usize], duration_s })
        .collect();
    let users = users_raw
        .iter()
        .map(|&u| {
            let us = &user_sessions[u as usize];
            User { id: log.users[u as usize].clone(), sessions: us.ends.len() as u32, plays: us.events.len() as u64 }
        })
        .collect();
    lap("items and users");
    Dataset { items, users, sessions: out, report }
}

/// One user's sessions after steps 2–5, and the counts for the report.
#[derive(Default)]
struct UserSessions {
    /// Events left after step 2.
    kept: u32,
    /// Sessions at the gap (step 3), before the length filter.
    raw_sessions: u32,
    /// Events left after step 4.
    after_repeats: u32,
    /// The kept sessions' events, as positions in the user's sorted events, session after session.
    events: Vec<u32>,
    /// Where each kept session ends in `events`.
    ends: Vec<u32>,
}

/// The log's events bucketed by user, as (time, index in the log), users in index order and each
/// user's events in log order; and each user's range (`bucket[u]..bucket[u + 1]`). Each thread
/// fills the buckets of a range of users (about an equal share of the events).
fn by_user(log: &Log) -> (Vec<(i64, u32)>, Vec<usize>) {
    let n_users = log.users.len();
    let mut bucket = vec![0usize; n_users + 1];
    log.user.iter().for_each(|&u| bucket[u as usize + 1] += 1);
    for u in 0..n_users {
        bucket[u + 1] += bucket[u];
    }
    let total = log.user.len();
    let mut order: Vec<(i64, u32)> = vec![(0, 0); total];
    let pieces = rayon::current_num_threads().max(1);
    let mut jobs = Vec::with_capacity(pieces);
    let mut rest = &mut order[..];
    let mut u0 = 0usize;
    for k in 1..=pieces {
        // Users up to the one holding the k-th share of the events.
        let want = total * k / pieces;
        let mut u1 = bucket.partition_point(|&b| b < want).clamp(u0, n_users);
        if k == pieces {
            u1 = n_users;
        }
        jobs.push((u0, u1, take_front(&mut rest, bucket[u1] - bucket[u0])));
        u0 = u1;
    }
    jobs.into_par_iter().for_each(|(u0, u1, out)| {
        if u0 == u1 {
            return;
        }
        let mut at: Vec<usize> = bucket[u0..u1].iter().map(|&b| b - bucket[u0]).collect();
        let range = u0 as u32..u1 as u32;
        for (i, &u) in log.user.iter().enumerate() {
            if range.contains(&u) {
                let a = &mut at[(u - range.start) as usize];
                out[*a] = (log.ts[i], i as u32);
                *a += 1;
            }
        }
    });
    (order, bucket)
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
        let l = log(&[
            ("u1", 1000 + 3 * 3600, "e"),
            ("u1", 1000, "a"),
            ("u1", 1100, "b"),
            ("u1", 1150, "b"),
            ("u1", 1400, "c"),
            ("u1", 1000 + 3 * 3600 - 60, "d"),
            ("u1", 1100, "b"),
        ]);
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

    /// Sessions as (user id, [(track id, time, completion)]), in output order.
    type Plain = Vec<(String, Vec<(String, i64, Option<f32>)>)>;

    /// The documented order, one step at a time over plain collections: what `build` must give.
    fn reference(l: &Log, cfg: &DataConfig, durations: &Durations) -> (Plain, Vec<(String, u64, u64, u64, u64)>, u64, u64) {
        use std::collections::{BTreeMap, HashSet};
        let (f, gap) = (&cfg.filters, cfg.gap_seconds());
        let distinct =
            |e: &[(u32, i64, u32)]| (e.iter().map(|x| x.0).collect::<HashSet<_>>().len() as u64, e.iter().map(|x| x.2).collect::<HashSet<_>>().len() as u64);
        let mut steps = vec![("ingested".to_string(), l.ts.len() as u64, l.users.len() as u64, l.tracks.len() as u64, 0)];
        // 0. Sort by (user, time, line); exact duplicates.
        let mut raw: Vec<(u32, i64, usize, u32)> = (0..l.ts.len()).map(|i| (l.user[i], l.ts[i], i, l.track[i])).collect();
        raw.sort();
        let mut e0: Vec<(u32, i64, u32)> = Vec::new();
        for (u, t, _, tr) in raw {
            if !(f.drop_exact_duplicates && e0.last() == Some(&(u, t, tr))) {
                e0.push((u, t, tr));
            }
        }
        steps.push(("sorted, exact duplicates dropped".into(), e0.len() as u64, l.users.len() as u64, l.tracks.len() as u64, 0));
        // Completion against the next play of the user in e0: (ratio, whether it used the estimate).
        let estimate = cfg.completion.estimate_duration_s.map(|e| e as f32);
        let completion = |i: usize| match e0.get(i + 1).filter(|n| n.0 == e0[i].0 && n.1 - e0[i].1 <= gap) {
            Some(n) => {
                let known = durations.get(&l.tracks[e0[i].2 as usize].id);
                (known.or(estimate).map(|d| ((n.1 - e0[i].1) as f32 / d).clamp(0.0, 1.0)), known.is_none() && estimate.is_some())
            }
            None => (
                match cfg.completion.last_event {
                    LastEvent::Null => None,
                    LastEvent::Zero => Some(0.0),
                    LastEvent::One => Some(1.0),
                },
                false,
            ),
        };
        // 1. Users by streams.
        let mut streams: BTreeMap<u32, u32> = BTreeMap::new();
        e0.iter().for_each(|e| *streams.entry(e.0).or_default() += 1);
        let i1: Vec<usize> = (0..e0.len()).filter(|&i| streams[&e0[i].0] >= f.min_user_streams).collect();
        let sub = |ix: &[usize]| ix.iter().map(|&i| e0[i]).collect::<Vec<_>>();
        let (u1, t1) = distinct(&sub(&i1));
        steps.push(("users >= min_user_streams".into(), i1.len() as u64, u1, t1, 0));
        // 2. Tracks by plays.
        let mut plays: BTreeMap<u32, u32> = BTreeMap::new();
        i1.iter().for_each(|&i| *plays.entry(e0[i].2).or_default() += 1);
        let i2: Vec<usize> = i1.into_iter().filter(|&i| plays[&e0[i].2] >= f.min_track_plays).collect();
        let (u2, t2) = distinct(&sub(&i2));
        steps.push(("tracks >= min_track_plays".into(), i2.len() as u64, u2, t2, 0));
        // 3. Sessions at gaps.
        let mut sessions: Vec<Vec<usize>> = Vec::new();
        for (k, &i) in i2.iter().enumerate() {
            if k == 0 || e0[i2[k - 1]].0 != e0[i].0 || e0[i].1 - e0[i2[k - 1]].1 > gap {
                sessions.push(Vec::new());
            }
            sessions.last_mut().unwrap().push(i);
        }
        steps.push(("sessions at the gap".into(), i2.len() as u64, u2, t2, sessions.len() as u64));
        // 4. Repeats.
        if f.drop_consecutive_repeats {
            for s in &mut sessions {
                s.dedup_by_key(|i| e0[*i].2);
            }
        }
        let n4: usize = sessions.iter().map(|s| s.len()).sum();
        steps.push(("consecutive repeats dropped".into(), n4 as u64, u2, t2, sessions.len() as u64));
        // 5. Length.
        sessions.retain(|s| s.len() >= f.min_session_len as usize);
        if f.max_session_len > 0 {
            sessions.iter_mut().for_each(|s| s.truncate(f.max_session_len as usize));
        }
        let all: Vec<usize> = sessions.concat();
        let (u5, t5) = distinct(&sub(&all));
        steps.push(("sessions >= min_session_len, truncated".into(), all.len() as u64, u5, t5, sessions.len() as u64));
        // 6. Users by sessions.
        let mut per_user: BTreeMap<u32, u32> = BTreeMap::new();
        sessions.iter().for_each(|s| *per_user.entry(e0[s[0]].0).or_default() += 1);
        sessions.retain(|s| per_user[&e0[s[0]].0] >= f.min_user_sessions);
        let all: Vec<usize> = sessions.concat();
        let (u6, t6) = distinct(&sub(&all));
        steps.push(("users >= min_user_sessions".into(), all.len() as u64, u6, t6, sessions.len() as u64));
        let null = all.iter().filter(|&&i| completion(i).0.is_none()).count() as u64;
        let estimated = all.iter().filter(|&&i| completion(i).1).count() as u64;
        sessions.sort_by(|a, b| (&l.users[e0[a[0]].0 as usize], e0[a[0]].1).cmp(&(&l.users[e0[b[0]].0 as usize], e0[b[0]].1)));
        let plain = sessions
            .iter()
            .map(|s| (l.users[e0[s[0]].0 as usize].clone(), s.iter().map(|&i| (l.tracks[e0[i].2 as usize].id.clone(), e0[i].1, completion(i).0)).collect()))
            .collect();
        (plain, steps, null, estimated)
    }

    /// Random logs (out of order, with duplicates, repeats and long gaps) under random settings:
    /// `build` equals the one-step-at-a-time reference, and its catalog is in the documented order.
    #[test]
    fn build_equals_a_step_by_step_reference() {
        use rand::{Rng, SeedableRng};
        // Short ids, and long ones that share their first 8 bytes (the catalog sort's prefix key).
        let id = |k: u32| if k.is_multiple_of(2) { format!("t{k}") } else { format!("track-id-{}", 11 - k) };
        for seed in 0..60u64 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut rows: Vec<(String, i64, String)> = Vec::new();
            for u in 0..rng.random_range(1..6) {
                let mut t = 1_000_000i64;
                for _ in 0..rng.random_range(0..80) {
                    t += if rng.random_bool(0.1) { rng.random_range(1200..9000) } else { rng.random_range(0..400) };
                    let tr = id(rng.random_range(0..12));
                    rows.push((format!("user{u}"), t, tr.clone()));
                    if rng.random_bool(0.05) {
                        rows.push((format!("user{u}"), t, tr)); // an exact duplicate
                    }
                }
            }
            // Shuffle a little: the file is not in time order.
            for i in 0..rows.len() {
                let j = rng.random_range(0..rows.len());
                if rng.random_bool(0.3) {
                    rows.swap(i, j);
                }
            }
            let rows: Vec<(&str, i64, &str)> = rows.iter().map(|(u, t, tr)| (u.as_str(), *t, tr.as_str())).collect();
            let l = log(&rows);
            let mut cfg = DataConfig::default();
            let f = &mut cfg.filters;
            f.drop_exact_duplicates = rng.random_bool(0.7);
            f.min_user_streams = rng.random_range(0..30);
            f.min_track_plays = rng.random_range(0..5);
            f.session_gap_minutes = [5.0, 10.0, 20.0][rng.random_range(0..3)];
            f.drop_consecutive_repeats = rng.random_bool(0.7);
            f.min_session_len = rng.random_range(0..4);
            f.max_session_len = rng.random_range(0..6);
            f.min_user_sessions = rng.random_range(0..4);
            cfg.completion.estimate_duration_s = rng.random_bool(0.5).then_some(180.0);
            cfg.completion.last_event = [LastEvent::Null, LastEvent::Zero, LastEvent::One][rng.random_range(0..3)];
            let durs: Durations = (0..12).filter(|k| k % 3 != 0).map(|k| (id(k), 60.0 + k as f32 * 20.0)).collect();
            let d = build(&l, &cfg, &durs);
            let (want, steps, null, estimated) = reference(&l, &cfg, &durs);
            let got: Plain = (0..d.sessions.len())
                .map(|s| {
                    (
                        d.users[d.sessions.user[s] as usize].id.clone(),
                        d.sessions
                            .range(s)
                            .map(|i| (d.items[d.sessions.item[i] as usize].track.id.clone(), d.sessions.ts[i], d.sessions.completion[i]))
                            .collect(),
                    )
                })
                .collect();
            assert_eq!(got, want, "seed {seed}");
            assert_eq!(d.report.steps, steps, "seed {seed}");
            assert_eq!((d.report.completion_null, d.report.completion_estimated), (null, estimated), "seed {seed}");
            // Items by plays (counted in the sessions), descending, then id; users by id.
            let mut plays: std::collections::BTreeMap<&str, u64> = Default::default();
            want.iter().flat_map(|(_, s)| s).for_each(|(tr, _, _)| *plays.entry(tr.as_str()).or_default() += 1);
            let mut items: Vec<(u64, &str)> = plays.iter().map(|(k, v)| (*v, *k)).collect();
            items.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
            assert_eq!(d.items.iter().map(|i| (i.plays, i.track.id.as_str())).collect::<Vec<_>>(), items, "seed {seed}");
            assert!(d.users.windows(2).all(|w| w[0].id < w[1].id), "seed {seed}");
            assert_eq!(d.users.iter().map(|u| u.sessions as usize).sum::<usize>(), d.sessions.len());
        }
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
