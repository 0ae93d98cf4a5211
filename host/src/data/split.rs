//! Train/valid/test splits. Every split is a list of sequences: a row's `items[..target_from]`
//! is context and `items[target_from..]` are the targets to predict, one after another.
//!
//! - `temporal` (the paper's): `t_test` is the `test_quantile` of all event timestamps; sessions
//!   whose last event is after it are test. `t_valid` is the `valid_quantile` of the timestamps of
//!   the remaining sessions; those ending after it are valid; the rest train. Every row is one
//!   whole session with `target_from = 1`.
//! - `loo` (E4SRec, RecBole): per user, the sessions concatenated in time order; test predicts
//!   the last item, valid the one before, train is everything before that.
//! - `session`: the same, within each session (sessions under 3 items stay in train).
use super::config::{Protocol, SplitConfig};
use super::sessions::Sessions;

/// Rows of one split.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SplitRows {
    /// Per row: dense user index.
    pub user: Vec<u32>,
    /// Per row: the session (index into `sessions.parquet`) the targets come from, if one.
    pub session: Vec<Option<u32>>,
    /// Row boundaries into the flat arrays.
    pub offsets: Vec<u32>,
    /// Flat items.
    pub item: Vec<u32>,
    /// Flat timestamps.
    pub ts: Vec<i64>,
    /// Flat completion ratios.
    pub completion: Vec<Option<f32>>,
    /// Per row: where the targets start.
    pub target_from: Vec<u32>,
}

impl SplitRows {
    fn new() -> Self {
        Self { offsets: vec![0], ..Self::default() }
    }
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.user.len()
    }
    /// Whether the split has no rows.
    pub fn is_empty(&self) -> bool {
        self.user.is_empty()
    }
    fn push(&mut self, s: &Sessions, user: u32, session: Option<u32>, events: impl Iterator<Item = usize>, target_from: u32) {
        for e in events {
            self.item.push(s.item[e]);
            self.ts.push(s.ts[e]);
            self.completion.push(s.completion[e]);
        }
        self.user.push(user);
        self.session.push(session);
        self.target_from.push(target_from);
        self.offsets.push(self.item.len() as u32);
    }
}

/// The three splits, and the cut timestamps of the temporal protocol.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Splits {
    /// Training rows.
    pub train: SplitRows,
    /// Validation rows.
    pub valid: SplitRows,
    /// Test rows.
    pub test: SplitRows,
    /// Temporal: `(t_valid, t_test)`.
    pub cuts: Option<(i64, i64)>,
}

/// The `q`-quantile of `ts` (nearest rank, lower); `ts` gets reordered.
fn quantile(ts: &mut [i64], q: f64) -> Option<i64> {
    if ts.is_empty() {
        return None;
    }
    let k = ((ts.len() - 1) as f64 * q).floor() as usize;
    Some(*ts.select_nth_unstable(k).1)
}

/// Splits `s` by `cfg`.
pub fn split(s: &Sessions, cfg: &SplitConfig) -> Splits {
    let mut out = Splits { train: SplitRows::new(), valid: SplitRows::new(), test: SplitRows::new(), cuts: None };
    match cfg.protocol {
        Protocol::Temporal => {
            let mut all = s.ts.clone();
            let Some(t_test) = quantile(&mut all, cfg.test_quantile) else { return out };
            let end = |i: usize| s.ts[s.range(i).end - 1];
            let mut rest: Vec<i64> = (0..s.len()).filter(|&i| end(i) <= t_test).flat_map(|i| s.ts[s.range(i)].iter().copied()).collect();
            let t_valid = quantile(&mut rest, cfg.valid_quantile).unwrap_or(t_test);
            out.cuts = Some((t_valid, t_test));
            for i in 0..s.len() {
                let dst = if end(i) > t_test {
                    &mut out.test
                } else if end(i) > t_valid {
                    &mut out.valid
                } else {
                    &mut out.train
                };
                dst.push(s, s.user[i], Some(i as u32), s.range(i), 1);
            }
        }
        Protocol::Session => {
            for i in 0..s.len() {
                let r = s.range(i);
                let n = r.len();
                if n < 3 {
                    out.train.push(s, s.user[i], Some(i as u32), r, 1);
                    continue;
                }
                out.train.push(s, s.user[i], Some(i as u32), r.start..r.end - 2, 1);
                out.valid.push(s, s.user[i], Some(i as u32), r.start..r.end - 1, (n - 2) as u32);
                out.test.push(s, s.user[i], Some(i as u32), r.clone(), (n - 1) as u32);
            }
        }
        Protocol::Loo => {
            let mut i = 0;
            while i < s.len() {
                let u = s.user[i];
                let mut j = i;
                while j < s.len() && s.user[j] == u {
                    j += 1;
                }
                // Sessions i..j are this user's, in time order, and contiguous in the flat arrays.
                let (a, b) = (s.offsets[i] as usize, s.offsets[j] as usize);
                let n = b - a;
                let session_of = |e: usize| (i..j).find(|&k| s.range(k).contains(&e)).map(|k| k as u32);
                if n < 3 {
                    out.train.push(s, u, None, a..b, 1);
                } else {
                    out.train.push(s, u, None, a..b - 2, 1);
                    out.valid.push(s, u, session_of(b - 2), a..b - 1, (n - 2) as u32);
                    out.test.push(s, u, session_of(b - 1), a..b, (n - 1) as u32);
                }
                i = j;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions() -> Sessions {
        // user 0: sessions [1,2,3] at t=0.., [4,5,6] at t=100..; user 1: [7,8,9] at t=200..
        let mut s = Sessions { offsets: vec![0], ..Sessions::default() };
        for (u, base, items) in [(0u32, 0i64, [1u32, 2, 3]), (0, 100, [4, 5, 6]), (1, 200, [7, 8, 9])] {
            s.user.push(u);
            for (k, it) in items.iter().enumerate() {
                s.item.push(*it);
                s.ts.push(base + k as i64);
                s.completion.push(Some(1.0));
            }
            s.offsets.push(s.item.len() as u32);
        }
        s
    }

    #[test]
    fn temporal_by_session_end() {
        let sp = split(&sessions(), &SplitConfig { protocol: Protocol::Temporal, test_quantile: 0.7, valid_quantile: 0.5 });
        assert_eq!(sp.test.item, [7, 8, 9]);
        assert_eq!(sp.valid.item, [4, 5, 6]);
        assert_eq!(sp.train.item, [1, 2, 3]);
        assert_eq!(sp.test.target_from, [1]);
    }

    #[test]
    fn loo_and_session() {
        let sp = split(&sessions(), &SplitConfig { protocol: Protocol::Loo, ..SplitConfig::default() });
        assert_eq!(sp.test.item, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(sp.test.target_from, [5, 2]);
        assert_eq!(sp.test.session, [Some(1), Some(2)]);
        assert_eq!(sp.train.item, [1, 2, 3, 4, 7]);
        let sp = split(&sessions(), &SplitConfig { protocol: Protocol::Session, ..SplitConfig::default() });
        assert_eq!(sp.train.item, [1, 4, 7]);
        assert_eq!(sp.valid.target_from, [1, 1, 1]);
        assert_eq!(sp.test.len(), 3);
    }
}
