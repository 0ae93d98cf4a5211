//! The synthetic generator: deterministic, with a planted content signal, and the paper's preset
//! on it gives statistics in the paper's shape.
use encore::data::config::DataConfig;
use encore::data::ingest::{ingest, IngestOptions};
use encore::data::sessions::{build, read_durations};
use encore::data::synth::{synth, SynthConfig};
use std::collections::HashMap;
use std::path::Path;

fn cfg(users: u32, tracks: u32, rows: u64, seed: u64) -> SynthConfig {
    SynthConfig { users, tracks, rows: Some(rows), seed, bad_rows: 0.001, ..SynthConfig::default() }
}

#[test]
fn same_seed_same_bytes() {
    let (a, b, c) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut k = cfg(5, 300, 3000, 9);
    k.clips = 2;
    synth(&k, a.path()).unwrap();
    synth(&k, b.path()).unwrap();
    synth(&SynthConfig { seed: 10, ..k.clone() }, c.path()).unwrap();
    for f in ["listens.tsv", "tracks.tsv", "users.tsv"] {
        let x = std::fs::read(a.path().join(f)).unwrap();
        assert_eq!(x, std::fs::read(b.path().join(f)).unwrap(), "{f}");
        assert_ne!(x, std::fs::read(c.path().join(f)).unwrap(), "{f}: another seed differs");
    }
    let clips: Vec<_> = std::fs::read_dir(a.path().join("clips")).unwrap().collect();
    assert_eq!(clips.len(), 2);
    let gz = tempfile::tempdir().unwrap();
    synth(&SynthConfig { gzip: true, ..k }, gz.path()).unwrap();
    assert_eq!(std::fs::read(gz.path().join("listens.tsv.gz")).unwrap(), {
        let d = tempfile::tempdir().unwrap();
        synth(&SynthConfig { gzip: true, ..cfg(5, 300, 3000, 9) }, d.path()).unwrap();
        std::fs::read(d.path().join("listens.tsv.gz")).unwrap()
    });
}

fn tsv(path: &Path) -> Vec<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    lines.map(|l| header.iter().zip(l.split('\t')).map(|(h, v)| (h.to_string(), v.to_string())).collect()).collect()
}

#[test]
fn planted_signal_styles_and_skips() {
    let dir = tempfile::tempdir().unwrap();
    synth(&cfg(30, 3000, 60_000, 1), dir.path()).unwrap();
    let style: HashMap<String, String> = tsv(&dir.path().join("tracks.tsv")).into_iter().map(|r| (r["track_id"].clone(), r["style"].clone())).collect();
    let prefs: HashMap<String, Vec<String>> =
        tsv(&dir.path().join("users.tsv")).into_iter().map(|r| (r["user_id"].clone(), r["styles"].split(',').map(String::from).collect())).collect();
    let log = ingest(&dir.path().join("listens.tsv"), IngestOptions::default(), &mut |_| {}).unwrap();
    assert!(log.report.bad_rows > 0 && log.report.lossy_rows > 0, "the optional malformed rows are there");
    let mut data_cfg = DataConfig::default();
    data_cfg.completion.last_event = encore::data::config::LastEvent::Null;
    let d = build(&log, &data_cfg, &read_durations(&dir.path().join("tracks.tsv")).unwrap());
    let (mut hit, mut n, mut chance) = (0usize, 0usize, 0.0);
    let (mut c_in, mut c_out) = ((0.0, 0usize), (0.0, 0usize));
    for s in 0..d.sessions.len() {
        let p = &prefs[&d.users[d.sessions.user[s] as usize].id];
        for e in d.sessions.range(s) {
            // The malformed-but-lossy rows ("Björk") are not in the side-car: no style.
            let Some(st) = style.get(&d.items[d.sessions.item[e] as usize].track.id) else { continue };
            let inside = p.contains(st);
            hit += inside as usize;
            n += 1;
            chance += p.len() as f64 / 12.0;
            if let Some(c) = d.sessions.completion[e] {
                let acc = if inside { &mut c_in } else { &mut c_out };
                acc.0 += f64::from(c);
                acc.1 += 1;
            }
        }
    }
    let (share, chance) = (hit as f64 / n as f64, chance / n as f64);
    assert!(share > 0.8 && share > 3.0 * chance, "plays in preferred styles: {share:.3}, chance {chance:.3}");
    let (m_in, m_out) = (c_in.0 / c_in.1 as f64, c_out.0 / c_out.1 as f64);
    assert!(m_in - m_out > 0.2, "completion: preferred {m_in:.3}, other {m_out:.3}");
}

#[test]
fn paper_preset_gives_the_papers_shape() {
    let dir = tempfile::tempdir().unwrap();
    synth(&cfg(80, 20_000, 240_000, 3), dir.path()).unwrap();
    let mut c = DataConfig::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/data/paper.toml")).unwrap();
    c.completion.durations = Some(dir.path().join("tracks.tsv"));
    let log = ingest(&dir.path().join("listens.tsv"), IngestOptions::default(), &mut |_| {}).unwrap();
    let d = build(&log, &c, &read_durations(&dir.path().join("tracks.tsv")).unwrap());
    let s = encore::data::stats::stats(&d);
    println!("{}\n{s}", d.report.table());
    // Sessions of exactly 10, users with >= 50 of them, most users kept, a long tail of tracks cut.
    assert_eq!(s.session_lengths, vec![(10, s.sessions)]);
    assert_eq!(s.interactions, 10 * s.sessions);
    assert!(d.users.iter().all(|u| u.sessions >= 50));
    assert!(s.users as f64 >= 0.6 * 80.0, "{} users kept", s.users);
    assert!(s.tracks < 20_000 && s.tracks > 2000, "{} tracks", s.tracks);
    let kept = s.interactions as f64 / log.user.len() as f64;
    assert!((0.1..0.6).contains(&kept), "interactions kept: {kept:.3} (the paper: 4.2M of 19M = 0.22)");
    for (c, &i) in d.sessions.completion.iter().zip(&d.sessions.item) {
        match c {
            Some(c) => assert!((0.0..=1.0).contains(c)),
            None => assert!(d.items[i as usize].duration_s.is_none(), "null only for unknown durations"),
        }
    }
    let sp = encore::data::split::split(&d.sessions, &c.split);
    let frac = sp.test.len() as f64 / s.sessions as f64;
    assert!((0.05..0.2).contains(&frac), "test sessions: {frac:.3}");
    assert!(sp.train.ts.iter().all(|&t| t <= sp.cuts.unwrap().0));
}

/// `--rows N` writes exactly N well-formed rows, plain or gzip, with malformed rows on top. Whole
/// sessions used to overshoot each user's quota: `--users 300 --tracks 3000 --rows 60000 --seed 7`
/// wrote 64,074 rows.
#[test]
fn rows_is_exact() {
    for (users, rows, bad_rows, gzip) in
        [(300, 60_000, 0.0, false), (300, 60_000, 0.0, true), (5, 3, 0.0, false), (1, 1, 0.0, true), (7, 1001, 0.01, true), (40, 12_345, 0.001, false)]
    {
        let dir = tempfile::tempdir().unwrap();
        let k = SynthConfig { users, tracks: 3000, rows: Some(rows), seed: 7, bad_rows, gzip, ..SynthConfig::default() };
        let s = synth(&k, dir.path()).unwrap();
        let case = format!("{users} users, {rows} rows, bad_rows {bad_rows}, gzip {gzip}");
        assert_eq!(s.rows, rows, "{case}: summary");
        let log = ingest(&dir.path().join(if gzip { "listens.tsv.gz" } else { "listens.tsv" }), IngestOptions::default(), &mut |_| {}).unwrap();
        // The Latin-1 kind of malformed row parses (decoded lossily); the other kinds are dropped.
        assert_eq!(log.report.events - log.report.lossy_rows, rows, "{case}: well-formed rows in the log");
        assert_eq!(log.report.bad_rows + log.report.lossy_rows, s.bad_rows, "{case}: malformed rows");
        assert_eq!(bad_rows == 0.0, s.bad_rows == 0, "{case}");
        let streams: u64 = tsv(&dir.path().join("users.tsv")).iter().map(|r| r["streams"].parse::<u64>().unwrap()).sum();
        assert_eq!(streams, rows, "{case}: users.tsv");
    }
    // The reported command, through the CLI.
    let dir = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_encore"))
        .args(["data", "synth", "--users", "300", "--tracks", "3000", "--rows", "60000", "--seed", "7", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_to_string(dir.path().join("listens.tsv")).unwrap().lines().count(), 60_000);
}

fn sha256(path: &Path) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(std::fs::read(path).unwrap()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Sub-styles draw nothing from the stream when off: a seed still gives the log it gave before
/// they existed (these digests come from the generator of 2026-11-29, without `--substyles`).
#[test]
fn without_substyles_the_stream_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    synth(&SynthConfig { clips: 2, ..cfg(5, 300, 3000, 9) }, dir.path()).unwrap();
    assert_eq!(sha256(&dir.path().join("listens.tsv")), "cdd2f8aeb1a844f7e7ed012d5b002b051ab151e8d0b14df4e10992e846558bea");
    assert_eq!(sha256(&dir.path().join("users.tsv")), "d89c033d0a7f82753d99f9ada41f7c50eb21fe74b4d32b0825e97629f639a78c");
    let tracks = tsv(&dir.path().join("tracks.tsv"));
    assert!(tracks.iter().all(|t| t["substyle"] == "0"));
}

/// With sub-styles, a sub-style's tracks share genes beyond their style's, and plays follow the
/// previous track's sub-style about `stay` of the time (plus what the style-level pick gives).
#[test]
fn substyles_mark_content_and_sessions_follow_them() {
    let dir = tempfile::tempdir().unwrap();
    synth(&SynthConfig { substyles: 10, stay: 0.6, bad_rows: 0.0, ..cfg(20, 3000, 20_000, 3) }, dir.path()).unwrap();
    let tracks = tsv(&dir.path().join("tracks.tsv"));
    let genes = |t: &HashMap<String, String>| t["mgphot"].split(',').map(|g| g.parse::<f64>().unwrap()).collect::<Vec<_>>();
    let dist = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>();
    let (mut same, mut other) = ((0.0, 0usize), (0.0, 0usize));
    for (i, a) in tracks.iter().enumerate().step_by(7).take(300) {
        for b in tracks.iter().skip(i + 1).step_by(5).take(200).filter(|b| b["style"] == a["style"]) {
            let d = dist(&genes(a), &genes(b));
            let acc = if b["substyle"] == a["substyle"] { &mut same } else { &mut other };
            acc.0 += d;
            acc.1 += 1;
        }
    }
    let (same, other) = (same.0 / same.1 as f64, other.0 / other.1 as f64);
    assert!(same < 0.6 * other, "gene distance within a sub-style {same:.3}, across sub-styles of a style {other:.3}");
    let sub: HashMap<&str, (&str, &str)> = tracks.iter().map(|t| (t["track_id"].as_str(), (t["style"].as_str(), t["substyle"].as_str()))).collect();
    let log = ingest(&dir.path().join("listens.tsv"), IngestOptions::default(), &mut |_| {}).unwrap();
    let d = build(&log, &DataConfig::default(), &read_durations(&dir.path().join("tracks.tsv")).unwrap());
    let (mut follow, mut n) = (0usize, 0usize);
    for s in 0..d.sessions.len() {
        for w in d.sessions.item[d.sessions.range(s)].windows(2) {
            let key = |i: u32| sub.get(d.items[i as usize].track.id.as_str()).copied();
            follow += usize::from(key(w[0]) == key(w[1]));
            n += 1;
        }
    }
    let share = follow as f64 / n as f64;
    eprintln!("sub-style share {share:.3}");
    assert!(share > 0.6 && share < 0.85, "consecutive plays in one sub-style: {share:.3} of {n}");
}

#[test]
fn stay_out_of_range_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let e = synth(&SynthConfig { substyles: 3, stay: 1.5, ..cfg(2, 50, 100, 1) }, dir.path()).unwrap_err().to_string();
    assert!(e.contains("--stay") && e.contains("1.5"), "{e}");
}
