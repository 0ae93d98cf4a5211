//! `encore data synth`: a realistic LastFM-1K-format log with a **planted content signal**.
//!
//! Tracks belong to latent styles. A style drives each track's metadata, with noise: tags, a
//! lyrics text, a 58-gene MGPHot vector (multiples of 0.2, as the 0–5 ratings divided by 5),
//! duration, and optional WAV clips whose tempo, pitch and timbre depend on it. Popularity is Zipf.
//! Users prefer a main style and one or two others; within a session they drift between styles
//! with probability `drift`; plays of a style they do not prefer are skipped (a low completion
//! ratio) far more often. With `substyles` > 0 each style splits into sub-styles (micro-genres)
//! whose own gene offsets, lyric words, tempo and pitch mark their tracks, and with probability
//! `stay` a play follows the previous one within its sub-style, picked regardless of popularity
//! (a listener follows a sound, not a chart): a signal that content can find on tail items, where
//! the style-level signal alone cannot (within a style, the best guess is always its hits). Gaps between plays are the listened part of the track plus a short
//! pause; sessions are separated by ≥ 30 minutes. Like the real file, each user's rows are newest
//! first. Everything comes from one seeded xoshiro256** stream, so a seed gives byte-identical
//! output. Files: `listens.tsv[.gz]`, `tracks.tsv` (the side-car item table, with `track_id` as
//! ingest computes it), `users.tsv` (the planted preferences), `clips/<track_id>.wav`.
use super::ingest::name_hash_id;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Generator parameters; every one is on the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    /// Users.
    pub users: u32,
    /// Tracks.
    pub tracks: u32,
    /// Seed.
    pub seed: u64,
    /// Well-formed rows to write in all, exactly (malformed rows come on top). Default: 3000 per user.
    pub rows: Option<u64>,
    /// Latent styles.
    pub styles: u32,
    /// Zipf exponent of track popularity.
    pub zipf: f64,
    /// Per play, the chance that the session drifts to another style.
    pub drift: f64,
    /// Mean session length, in plays.
    pub session_mean: f64,
    /// Fraction of tracks and artists with an empty MBID (hashed from names at ingest).
    pub empty_mbid: f64,
    /// Per row, the chance of an extra malformed row.
    pub bad_rows: f64,
    /// WAV clips for the most popular tracks (0: none).
    pub clips: u32,
    /// Clip length in seconds.
    pub clip_seconds: f32,
    /// Write `listens.tsv.gz` instead of `listens.tsv`.
    pub gzip: bool,
    /// Sub-styles per style (0: none, and the stream is as without them).
    pub substyles: u32,
    /// With sub-styles, per play, the chance that it follows the previous track's sub-style.
    pub stay: f64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            users: 50,
            tracks: 5000,
            seed: 42,
            rows: None,
            styles: 12,
            zipf: 1.0,
            drift: 0.12,
            session_mean: 14.0,
            empty_mbid: 0.15,
            bad_rows: 0.0,
            clips: 0,
            clip_seconds: 2.0,
            gzip: false,
            substyles: 0,
            stay: 0.5,
        }
    }
}

/// xoshiro256**, seeded by splitmix64: small, fast, and stable across library versions.
#[derive(Debug, Clone)]
pub struct Rng([u64; 4]);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            x ^ (x >> 31)
        };
        Self([next(), next(), next(), next()])
    }
    /// The next 64 random bits.
    pub fn u64(&mut self) -> u64 {
        let s = &mut self.0;
        let r = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        r
    }
    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (((self.u64() >> 32) * n as u64) >> 32) as usize
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u = 1.0 - self.f64();
        let v = self.f64();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
    /// Exponential with mean `m`.
    pub fn exp(&mut self, m: f64) -> f64 {
        -m * (1.0 - self.f64()).ln()
    }
    /// An index drawn by a cumulative weight table.
    pub fn pick(&mut self, cdf: &[f64]) -> usize {
        let x = self.f64() * cdf.last().copied().unwrap_or(0.0);
        cdf.partition_point(|&c| c <= x).min(cdf.len().saturating_sub(1))
    }
}

const GENRES: [&str; 16] =
    ["rock", "jazz", "electronic", "folk", "hiphop", "classical", "metal", "soul", "reggae", "ambient", "punk", "blues", "country", "disco", "latin", "techno"];
const DESCRIPTORS: [&str; 40] = [
    "mellow",
    "energetic",
    "dark",
    "bright",
    "acoustic",
    "distorted",
    "groovy",
    "dreamy",
    "aggressive",
    "melancholic",
    "upbeat",
    "raw",
    "lush",
    "minimal",
    "epic",
    "intimate",
    "funky",
    "hypnotic",
    "noisy",
    "smooth",
    "catchy",
    "brooding",
    "playful",
    "heavy",
    "airy",
    "soulful",
    "gritty",
    "cinematic",
    "retro",
    "futuristic",
    "lofi",
    "orchestral",
    "danceable",
    "slow",
    "fast",
    "vocal",
    "instrumental",
    "romantic",
    "political",
    "spiritual",
];
const SYLLABLES: [&str; 24] =
    ["ka", "lo", "mi", "ra", "to", "ne", "su", "vi", "da", "re", "zo", "pa", "li", "mo", "fe", "gu", "an", "el", "or", "ti", "be", "sha", "nu", "ko"];
/// MGPHot genes (see SEED.md): 58 values in [0, 1], in 7 groups.
pub const GENES: usize = 58;

struct Style {
    name: String,
    tags: Vec<&'static str>,
    words: Vec<usize>,
    genes: Vec<f64>,
    duration: f64,
    tempo: f64,
    pitch: f64,
    timbre: [f64; 4],
}

/// A sub-style: offsets from its style that mark its tracks.
struct Substyle {
    genes: Vec<f64>,
    words: Vec<usize>,
    tempo: f64,
    pitch: f64,
}

/// One generated track.
#[derive(Debug, Clone)]
pub struct SynthTrack {
    /// The id ingest gives it: the MBID, or the name hash when the MBID is empty.
    pub id: String,
    /// Track MBID (may be empty).
    pub mbid: String,
    /// Artist index.
    pub artist: usize,
    /// Title.
    pub title: String,
    /// Latent style.
    pub style: usize,
    /// Sub-style within the style (0 without sub-styles).
    pub substyle: usize,
    /// Seconds.
    pub duration: u32,
    /// Beats per minute of its clip.
    pub tempo: f64,
    /// Fundamental frequency of its clip.
    pub pitch: f64,
    /// Tags.
    pub tags: Vec<&'static str>,
    /// Lyrics text.
    pub lyrics: String,
    /// MGPHot genes.
    pub genes: Vec<f64>,
    /// Popularity rank (0: most popular).
    pub rank: usize,
}

fn word(rng: &mut Rng, syllables: usize) -> String {
    (0..syllables).map(|_| SYLLABLES[rng.below(SYLLABLES.len())]).collect()
}

fn uuid(rng: &mut Rng) -> String {
    let (a, b) = (rng.u64(), rng.u64());
    format!("{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}", a >> 32, (a >> 16) & 0xffff, a & 0xfff, 0x8000 | (b >> 48) & 0x3fff, b & 0xffff_ffff_ffff)
}

fn cap(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// What was written.
#[derive(Debug, Clone, Default)]
pub struct SynthSummary {
    /// Listening rows (malformed ones excluded).
    pub rows: u64,
    /// Malformed rows.
    pub bad_rows: u64,
    /// Files.
    pub files: Vec<PathBuf>,
}

/// Generates the log and its side tables into `out`.
pub fn synth(cfg: &SynthConfig, out: &Path) -> anyhow::Result<SynthSummary> {
    anyhow::ensure!(cfg.users > 0 && cfg.tracks > 0 && cfg.styles > 0, "--users, --tracks and --styles must be positive");
    anyhow::ensure!((0.0..=1.0).contains(&cfg.stay), "--stay must be in [0, 1], not {}", cfg.stay);
    let mut rng = Rng::new(cfg.seed);
    let n_styles = cfg.styles as usize;
    let pool: Vec<String> = (0..600)
        .map(|_| {
            let n = 2 + rng.below(2);
            word(&mut rng, n)
        })
        .collect();
    let styles: Vec<Style> = (0..n_styles)
        .map(|k| {
            let name = if k < GENRES.len() { GENRES[k].to_string() } else { format!("{}{}", GENRES[k % GENRES.len()], k / GENRES.len()) };
            let mut tags = Vec::new();
            while tags.len() < 5 {
                let d = DESCRIPTORS[rng.below(DESCRIPTORS.len())];
                if !tags.contains(&d) {
                    tags.push(d);
                }
            }
            let words = (0..40).map(|_| rng.below(pool.len())).collect();
            let genes = (0..GENES).map(|_| 0.1 + 0.8 * rng.f64()).collect();
            let timbre = [1.0, rng.f64(), rng.f64() * 0.7, rng.f64() * 0.4];
            Style {
                name,
                tags,
                words,
                genes,
                duration: 150.0 + 180.0 * rng.f64(),
                tempo: 70.0 + 100.0 * rng.f64(),
                pitch: 110.0 * 2f64.powf(2.0 * rng.f64()),
                timbre,
            }
        })
        .collect();
    // Drawn only with sub-styles, so a seed without them gives the stream it always gave.
    let n_subs = cfg.substyles as usize;
    let subs: Vec<Vec<Substyle>> = (0..if n_subs > 0 { n_styles } else { 0 })
        .map(|_| {
            (0..n_subs)
                .map(|_| Substyle {
                    genes: (0..GENES).map(|_| 0.2 * rng.normal()).collect(),
                    words: (0..20).map(|_| rng.below(pool.len())).collect(),
                    tempo: 2f64.powf(0.6 * rng.f64() - 0.3),
                    pitch: 2f64.powf(rng.f64() - 0.5),
                })
                .collect()
        })
        .collect();

    // Artists: a style each, Zipf popularity over artists.
    let n_artists = (cfg.tracks as usize / 8).max(1);
    let artists: Vec<(String, String, usize)> = (0..n_artists)
        .map(|_| {
            let mbid = if rng.f64() < cfg.empty_mbid * 0.7 { String::new() } else { uuid(&mut rng) };
            let name =
                if rng.f64() < 0.3 { format!("The {}s", cap(&word(&mut rng, 2))) } else { format!("{} {}", cap(&word(&mut rng, 2)), cap(&word(&mut rng, 3))) };
            (mbid, name, rng.below(n_styles))
        })
        .collect();
    let artist_cdf = cdf((0..n_artists).map(|r| 1.0 / (r as f64 + 1.0).powf(0.8)));

    // Tracks.
    let n_tracks = cfg.tracks as usize;
    let mut perm: Vec<usize> = (0..n_tracks).collect();
    for i in (1..n_tracks).rev() {
        perm.swap(i, rng.below(i + 1));
    }
    let tracks: Vec<SynthTrack> = (0..n_tracks)
        .map(|t| {
            let artist = rng.pick(&artist_cdf);
            let style = if rng.f64() < 0.85 { artists[artist].2 } else { rng.below(n_styles) };
            let st = &styles[style];
            let title = (0..2 + rng.below(2))
                .map(|_| cap(&pool[if rng.f64() < 0.6 { st.words[rng.below(st.words.len())] } else { rng.below(pool.len()) }]))
                .collect::<Vec<_>>()
                .join(" ");
            let mbid = if rng.f64() < cfg.empty_mbid { String::new() } else { uuid(&mut rng) };
            let id = if mbid.is_empty() { name_hash_id(&[&artists[artist].1, &title]) } else { mbid.clone() };
            let mut tags: Vec<&'static str> = vec![];
            for _ in 0..3 {
                let d = st.tags[rng.below(st.tags.len())];
                if !tags.contains(&d) {
                    tags.push(d);
                }
            }
            if rng.f64() < 0.3 {
                tags.push(DESCRIPTORS[rng.below(DESCRIPTORS.len())]);
            }
            let substyle = if n_subs > 0 { rng.below(n_subs) } else { 0 };
            let sub = subs.get(style).map(|v| &v[substyle]);
            let lyrics = (0..40)
                .map(|_| {
                    let w = match sub {
                        Some(sb) if rng.f64() < 0.4 => sb.words[rng.below(sb.words.len())],
                        _ if rng.f64() < 0.7 => st.words[rng.below(st.words.len())],
                        _ => rng.below(pool.len()),
                    };
                    pool[w].as_str()
                })
                .collect::<Vec<_>>()
                .join(" ");
            let genes = st
                .genes
                .iter()
                .enumerate()
                .map(|(i, g)| ((g + sub.map_or(0.0, |sb| sb.genes[i]) + 0.12 * rng.normal()).clamp(0.0, 1.0) * 5.0).round() / 5.0)
                .collect();
            let duration = (st.duration * (0.25 * rng.normal()).exp()).clamp(30.0, 900.0).round() as u32;
            let tempo = (st.tempo * sub.map_or(1.0, |sb| sb.tempo) * (1.0 + 0.05 * rng.normal())).max(40.0);
            let pitch = st.pitch * sub.map_or(1.0, |sb| sb.pitch) * 2f64.powf(0.1 * rng.normal());
            SynthTrack { id, mbid, artist, title, style, substyle, duration, tempo, pitch, tags, lyrics, genes, rank: perm[t] }
        })
        .collect();
    let zipf_w = |t: &SynthTrack| 1.0 / (t.rank as f64 + 1.0).powf(cfg.zipf);
    let mut by_style: Vec<Vec<usize>> = vec![Vec::new(); n_styles];
    tracks.iter().enumerate().for_each(|(i, t)| by_style[t.style].push(i));
    let style_cdf: Vec<Vec<f64>> = by_style.iter().map(|ts| cdf(ts.iter().map(|&i| zipf_w(&tracks[i])))).collect();
    let any_cdf = cdf(tracks.iter().map(zipf_w));
    let mut by_sub: Vec<Vec<usize>> = vec![Vec::new(); n_styles * n_subs];
    tracks.iter().enumerate().filter(|_| n_subs > 0).for_each(|(i, t)| by_sub[t.style * n_subs + t.substyle].push(i));

    // Users: a main style, one or two more, and a little of everything.
    let n_users = cfg.users as usize;
    let total = cfg.rows.unwrap_or(3000 * n_users as u64);
    let shares: Vec<f64> = (0..n_users).map(|_| (0.5 * rng.normal()).exp()).collect();
    let share_sum: f64 = shares.iter().sum();
    // Each user's quota is the step between rounded running totals, so the quotas add up to
    // `total` exactly (rounding each share on its own drifts by up to one row per user).
    let mut cum = 0.0;
    let quotas: Vec<u64> = shares
        .iter()
        .map(|s| {
            let before = (total as f64 * cum / share_sum).round() as u64;
            cum += s;
            (total as f64 * cum / share_sum).round().min(total as f64) as u64 - before
        })
        .collect();
    let users: Vec<(String, Vec<usize>, Vec<f64>, u64)> = (0..n_users)
        .map(|u| {
            let main = rng.below(n_styles);
            let mut prefs = vec![main];
            for _ in 0..1 + rng.below(2) {
                let s = rng.below(n_styles);
                if !prefs.contains(&s) {
                    prefs.push(s);
                }
            }
            let mut w = vec![0.1 / n_styles as f64; n_styles];
            w[main] += 0.6;
            for &s in &prefs[1..] {
                w[s] += 0.3 / (prefs.len() - 1) as f64;
            }
            (format!("user_{:06}", u + 1), prefs, cdf(w.into_iter()), quotas[u])
        })
        .collect();

    std::fs::create_dir_all(out)?;
    let mut summary = SynthSummary::default();
    let listens = out.join(if cfg.gzip { "listens.tsv.gz" } else { "listens.tsv" });
    crate::io::write_atomic_file(&listens, |file| {
        let buf = std::io::BufWriter::with_capacity(1 << 20, file);
        let mut w: Box<dyn Write> = if cfg.gzip { Box::new(flate2::write::GzEncoder::new(buf, flate2::Compression::new(9))) } else { Box::new(buf) };
        let mut rows: Vec<(i64, usize)> = Vec::new();
        let mut line = Vec::with_capacity(256);
        for (uid, prefs, pref_cdf, n) in &users {
            rows.clear();
            let mut t = 1_108_339_200 + (rng.f64() * 72_000_000.0) as i64; // 2005-02-14 + up to ~2.3 years
            while (rows.len() as u64) < *n {
                let len = 1 + rng.exp(cfg.session_mean - 1.0).round() as usize;
                let mut style = rng.pick(pref_cdf);
                let mut prev: Option<usize> = None;
                for _ in 0..len {
                    if rng.f64() < cfg.drift {
                        style = rng.pick(pref_cdf);
                    }
                    let tr = match prev {
                        Some(p) if rng.f64() < 0.04 => p,
                        Some(p) if n_subs > 0 && rng.f64() < cfg.stay => {
                            let near = &by_sub[tracks[p].style * n_subs + tracks[p].substyle];
                            near[rng.below(near.len())]
                        }
                        _ if by_style[style].is_empty() => rng.pick(&any_cdf),
                        _ => by_style[style][rng.pick(&style_cdf[style])],
                    };
                    let track = &tracks[tr];
                    if n_subs > 0 {
                        style = track.style;
                    }
                    let skip_p = if prefs.contains(&track.style) { 0.08 } else { 0.45 };
                    let frac = if rng.f64() < skip_p {
                        0.03 + 0.27 * rng.f64()
                    } else if rng.f64() < 0.7 {
                        1.0
                    } else {
                        0.85 + 0.15 * rng.f64()
                    };
                    rows.push((t, tr));
                    t += (f64::from(track.duration) * frac).round() as i64 + rng.below(9) as i64;
                    prev = Some(tr);
                }
                t += 1800 + rng.exp(16.0 * 3600.0) as i64;
            }
            // Sessions come whole, so the last one overshoots the quota; it is cut short (a
            // session that ends early is as real as any), so `--rows` is the exact row count.
            rows.truncate(*n as usize);
            // Newest first, as in LastFM-1K.
            for &(ts, tr) in rows.iter().rev() {
                let track = &tracks[tr];
                let (amb, aname, _) = &artists[track.artist];
                line.clear();
                line.extend_from_slice(uid.as_bytes());
                line.push(b'\t');
                super::time::format_iso8601(ts, &mut line);
                writeln!(line, "\t{amb}\t{aname}\t{}\t{}", track.mbid, track.title)?;
                w.write_all(&line)?;
                summary.rows += 1;
                if cfg.bad_rows > 0.0 && rng.f64() < cfg.bad_rows {
                    summary.bad_rows += 1;
                    match rng.below(4) {
                        0 => writeln!(w, "{uid}\t2009-13-45T99:00:00Z\t\t{aname}\t\t{}", track.title)?,
                        1 => writeln!(w, "{uid}\t{aname}\t{}", track.title)?,
                        2 => writeln!(w, "\t2008-01-01T00:00:00Z\t{amb}\t{aname}\t{}\t{}", track.mbid, track.title)?,
                        _ => {
                            // Six valid fields, but Latin-1 bytes: decoded lossily, not dropped.
                            line.clear();
                            line.extend_from_slice(uid.as_bytes());
                            line.push(b'\t');
                            super::time::format_iso8601(ts, &mut line);
                            line.extend_from_slice(b"\t\tBj\xf6rk\t\tJ\xf3ga\n");
                            w.write_all(&line)?;
                        }
                    }
                }
            }
        }
        w.flush()?;
        drop(w);
        Ok(())
    })?;
    summary.files.push(listens);

    let p = out.join("tracks.tsv");
    crate::io::write_atomic(&p, |w| {
        writeln!(
            w,
            "track_id\ttrack_mbid\tartist_id\tartist\ttitle\tstyle\tsubstyle\tstyle_name\tduration_s\ttempo_bpm\tpitch_hz\tpopularity_rank\ttags\tlyrics\tmgphot"
        )?;
        for t in &tracks {
            let (amb, aname, _) = &artists[t.artist];
            let aid = if amb.is_empty() { name_hash_id(&[aname]) } else { amb.clone() };
            let genes = t.genes.iter().map(|g| format!("{g:.1}")).collect::<Vec<_>>().join(",");
            writeln!(
                w,
                "{}\t{}\t{aid}\t{aname}\t{}\t{}\t{}\t{}\t{}\t{:.1}\t{:.1}\t{}\t{}\t{}\t{genes}",
                t.id,
                t.mbid,
                t.title,
                t.style,
                t.substyle,
                styles[t.style].name,
                t.duration,
                t.tempo,
                t.pitch,
                t.rank,
                t.tags.join(","),
                t.lyrics
            )?;
        }
        Ok(())
    })?;
    summary.files.push(p);
    let p = out.join("users.tsv");
    crate::io::write_atomic(&p, |w| {
        writeln!(w, "user_id\tmain_style\tstyles\tstreams")?;
        for (id, prefs, _, n) in &users {
            writeln!(w, "{id}\t{}\t{}\t{n}", prefs[0], prefs.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(","))?;
        }
        Ok(())
    })?;
    summary.files.push(p);
    if cfg.clips > 0 {
        let mut ranked: Vec<usize> = (0..n_tracks).collect();
        ranked.sort_by_key(|&i| tracks[i].rank);
        for &i in ranked.iter().take(cfg.clips as usize) {
            let p = out.join("clips").join(format!("{}.wav", tracks[i].id.replace(':', "_")));
            let samples = clip(&tracks[i], &styles[tracks[i].style].timbre, cfg.clip_seconds);
            crate::io::write_atomic(&p, |w| write_wav(w, 16_000, &samples))?;
            summary.files.push(p);
        }
    }
    Ok(summary)
}

fn cdf(w: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut acc = 0.0;
    w.map(|x| {
        acc += x;
        acc
    })
    .collect()
}

/// A clip: harmonics of the track's pitch weighted by the style's timbre, pulsed at its tempo.
fn clip(t: &SynthTrack, timbre: &[f64; 4], seconds: f32) -> Vec<i16> {
    let sr = 16_000.0;
    let n = (f64::from(seconds) * sr) as usize;
    let beat = 60.0 / t.tempo;
    let norm: f64 = timbre.iter().sum();
    (0..n)
        .map(|i| {
            let x = i as f64 / sr;
            let tone: f64 = timbre.iter().enumerate().map(|(h, w)| w * (std::f64::consts::TAU * t.pitch * (h + 1) as f64 * x).sin()).sum::<f64>() / norm;
            let env = 0.3 + 0.7 * (-(x % beat) / 0.08).exp();
            (tone * env * 0.8 * f64::from(i16::MAX)) as i16
        })
        .collect()
}

fn write_wav(w: &mut impl Write, rate: u32, s: &[i16]) -> std::io::Result<()> {
    let data = (s.len() * 2) as u32;
    w.write_all(b"RIFF")?;
    w.write_all(&(36 + data).to_le_bytes())?;
    w.write_all(b"WAVEfmt ")?;
    w.write_all(&16u32.to_le_bytes())?;
    w.write_all(&1u16.to_le_bytes())?; // PCM
    w.write_all(&1u16.to_le_bytes())?; // mono
    w.write_all(&rate.to_le_bytes())?;
    w.write_all(&(rate * 2).to_le_bytes())?;
    w.write_all(&2u16.to_le_bytes())?;
    w.write_all(&16u16.to_le_bytes())?;
    w.write_all(b"data")?;
    w.write_all(&data.to_le_bytes())?;
    for x in s {
        w.write_all(&x.to_le_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_stable() {
        let mut r = Rng::new(42);
        let v: Vec<u64> = (0..3).map(|_| r.u64()).collect();
        let mut r2 = Rng::new(42);
        assert_eq!(v, (0..3).map(|_| r2.u64()).collect::<Vec<_>>());
        let mean = (0..10_000).map(|_| r.f64()).sum::<f64>() / 10_000.0;
        assert!((mean - 0.5).abs() < 0.02);
        assert!((0..1000).all(|_| r.below(7) < 7));
    }
}
