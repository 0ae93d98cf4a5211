//! Ranking metrics, streamed over users.
//!
//! The host ranks items, cuts each user's list to the cutoff K, checks that items are distinct and
//! in the catalog, drops users without targets, and hands each user's top-K and targets to
//! [`Metric::add`]. A per-user metric returns that user's value; the host keeps the values for
//! bootstrap confidence intervals.

/// A metric at one cutoff K. One value lives per evaluation run.
pub trait Metric: Sized + 'static {
    /// Starts a fresh evaluation at cutoff `k` over a catalog of `n_items` items.
    fn new(k: u32, n_items: u32) -> Self;

    /// Scores one user. `ranked` is the user's top-K, best first (shorter when fewer items were
    /// ranked); `targets` is non-empty and has no duplicates. Returns the user's value for a metric
    /// that is a mean over users, `None` for one that only has a global value.
    fn add(&mut self, ranked: &[u32], targets: &[u32]) -> Option<f64>;

    /// The final value. `mean` is the mean of the per-user values (0 when there were none), which
    /// is the answer for every per-user metric; global metrics compute their own.
    fn finish(&self, mean: f64) -> f64 {
        mean
    }
}

/// The number of `ranked` items that are among `targets`.
pub fn hits(ranked: &[u32], targets: &[u32]) -> usize {
    ranked.iter().filter(|i| targets.contains(i)).count()
}

/// For each position of `ranked`, whether the item there is a target.
pub fn hit_flags<'a>(ranked: &'a [u32], targets: &'a [u32]) -> impl Iterator<Item = bool> + 'a {
    ranked.iter().map(move |i| targets.contains(i))
}

/// Runs a [`Metric`] behind the exported accumulator: one instance per cutoff, lists cut to K,
/// running means kept.
#[doc(hidden)]
pub struct Runner<M> {
    state: std::cell::RefCell<Vec<(usize, M, f64, u64)>>,
}

impl<M: Metric> Runner<M> {
    /// A runner at cutoffs `ks`.
    pub fn new(ks: &[u32], n_items: u32) -> Self {
        Runner { state: std::cell::RefCell::new(ks.iter().map(|&k| (k as usize, M::new(k, n_items), 0.0, 0)).collect()) }
    }

    /// Adds one user at every cutoff; pushes the per-user values into `out[cutoff]`.
    pub fn add(&self, ranked: &[u32], targets: &[u32], out: &mut [Option<Vec<f64>>]) {
        for (slot, (k, metric, sum, n)) in out.iter_mut().zip(self.state.borrow_mut().iter_mut()) {
            let cut = &ranked[..ranked.len().min(*k)];
            if let Some(v) = metric.add(cut, targets) {
                *sum += v;
                *n += 1;
                slot.get_or_insert_with(Vec::new).push(v);
            }
        }
    }

    /// Adds a flattened batch (see the WIT's `ranking-batch`); per cutoff, the per-user values.
    pub fn add_batch(&self, ranked: &[u32], ranked_offsets: &[u32], targets: &[u32], target_offsets: &[u32]) -> Result<Vec<Option<Vec<f64>>>, crate::Error> {
        let users = ranked_offsets.len().saturating_sub(1);
        if target_offsets.len() != ranked_offsets.len() {
            return Err(crate::Error::invalid("ranked-offsets and target-offsets differ in length"));
        }
        let slice = |v: &'_ [u32], o: &[u32], u: usize| -> Result<std::ops::Range<usize>, crate::Error> {
            let (a, b) = (o[u] as usize, o[u + 1] as usize);
            if a > b || b > v.len() {
                return Err(crate::Error::invalid(format!("offsets {a}..{b} of user {u} are outside 0..{}", v.len())));
            }
            Ok(a..b)
        };
        let mut out = vec![None; self.state.borrow().len()];
        for u in 0..users {
            let r = slice(ranked, ranked_offsets, u)?;
            let t = slice(targets, target_offsets, u)?;
            self.add(&ranked[r], &targets[t], &mut out);
        }
        Ok(out)
    }

    /// The final value at each cutoff; see [`Metric::finish`].
    pub fn finish(&self) -> Vec<f64> {
        self.state.borrow().iter().map(|(_, metric, sum, n)| metric.finish(if *n == 0 { 0.0 } else { sum / *n as f64 })).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FirstHit;
    impl Metric for FirstHit {
        fn new(_k: u32, _n: u32) -> Self {
            FirstHit
        }
        fn add(&mut self, ranked: &[u32], targets: &[u32]) -> Option<f64> {
            Some(hits(ranked, targets) as f64)
        }
    }

    #[test]
    fn the_runner_cuts_lists_to_each_k_and_averages() {
        let r = Runner::<FirstHit>::new(&[2, 3], 10);
        // User 0 ranked [5, 6, 7] (item 7 third: past K = 2); user 1 ranked [7] (shorter than K).
        let out = r.add_batch(&[5, 6, 7, 7], &[0, 3, 4], &[7, 7], &[0, 1, 2]).unwrap();
        assert_eq!(out, vec![Some(vec![0.0, 1.0]), Some(vec![1.0, 1.0])]);
        assert_eq!(r.finish(), vec![0.5, 1.0]);
    }

    #[test]
    fn bad_offsets_are_an_error_and_no_users_gives_zero() {
        let r = Runner::<FirstHit>::new(&[5], 10);
        assert!(r.add_batch(&[1], &[0, 2], &[1], &[0, 1]).is_err());
        assert_eq!(Runner::<FirstHit>::new(&[5], 10).finish(), vec![0.0]);
    }
}
