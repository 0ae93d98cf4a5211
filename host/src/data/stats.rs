//! `encore data stats`: the counts and distributions of a prepared dataset.
use super::sessions::Dataset;
use std::fmt::Write;

/// Summary numbers of a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    /// Users with at least one session.
    pub users: usize,
    /// Items (tracks) in the catalog.
    pub tracks: usize,
    /// Sessions.
    pub sessions: usize,
    /// Events.
    pub interactions: usize,
    /// `(length, sessions)` for every session length present.
    pub session_lengths: Vec<(usize, usize)>,
    /// Plays per track at the quantiles of [`QUANTILES`].
    pub plays_per_track: Vec<u64>,
    /// Mean plays per track.
    pub plays_mean: f64,
    /// Completion ratios: (known, mean of known).
    pub completion: (usize, f64),
}

/// The quantiles reported for plays per track.
pub const QUANTILES: [f64; 7] = [0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0];

/// Computes [`Stats`] of `d`.
pub fn stats(d: &Dataset) -> Stats {
    let s = &d.sessions;
    let mut lens = std::collections::BTreeMap::new();
    for i in 0..s.len() {
        *lens.entry(s.range(i).len()).or_insert(0usize) += 1;
    }
    let mut plays: Vec<u64> = d.items.iter().map(|i| i.plays).collect();
    plays.sort_unstable();
    let q = |q: f64| if plays.is_empty() { 0 } else { plays[((plays.len() - 1) as f64 * q).round() as usize] };
    let known: Vec<f32> = s.completion.iter().flatten().copied().collect();
    Stats {
        users: d.users.len(),
        tracks: d.items.len(),
        sessions: s.len(),
        interactions: s.item.len(),
        session_lengths: lens.into_iter().collect(),
        plays_per_track: QUANTILES.iter().map(|&x| q(x)).collect(),
        plays_mean: if plays.is_empty() { 0.0 } else { plays.iter().sum::<u64>() as f64 / plays.len() as f64 },
        completion: (known.len(), if known.is_empty() { 0.0 } else { known.iter().map(|&c| f64::from(c)).sum::<f64>() / known.len() as f64 }),
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = String::new();
        writeln!(s, "users         {}", self.users)?;
        writeln!(s, "tracks        {}", self.tracks)?;
        writeln!(s, "sessions      {}", self.sessions)?;
        writeln!(s, "interactions  {}", self.interactions)?;
        writeln!(s, "session length (tracks: sessions)")?;
        for (len, n) in &self.session_lengths {
            writeln!(s, "  {len:>4}: {n}")?;
        }
        writeln!(s, "plays per track: mean {:.2}", self.plays_mean)?;
        for (q, v) in QUANTILES.iter().zip(&self.plays_per_track) {
            writeln!(s, "  p{:<3} {v}", (q * 100.0).round() as u32)?;
        }
        writeln!(s, "completion ratio: {} known, mean {:.3}", self.completion.0, self.completion.1)?;
        f.write_str(&s)
    }
}
