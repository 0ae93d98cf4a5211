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

/// Runs a [`Metric`] behind the exported accumulator: cuts lists to K and keeps the running mean.
#[doc(hidden)]
pub struct Runner<M> {
    metric: std::cell::RefCell<(M, f64, u64)>,
    k: usize,
}

impl<M: Metric> Runner<M> {
    /// A runner at cutoff `k`.
    pub fn new(k: u32, n_items: u32) -> Self {
        Runner { metric: std::cell::RefCell::new((M::new(k, n_items), 0.0, 0)), k: k as usize }
    }

    /// Adds one user; see [`Metric::add`].
    pub fn add(&self, ranked: &[u32], targets: &[u32]) -> Option<f64> {
        let mut state = self.metric.borrow_mut();
        let cut = &ranked[..ranked.len().min(self.k)];
        let value = state.0.add(cut, targets);
        if let Some(v) = value {
            state.1 += v;
            state.2 += 1;
        }
        value
    }

    /// The final value; see [`Metric::finish`].
    pub fn finish(&self) -> f64 {
        let state = self.metric.borrow();
        let mean = if state.2 == 0 { 0.0 } else { state.1 / state.2 as f64 };
        state.0.finish(mean)
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
    fn the_runner_cuts_lists_to_k_and_averages() {
        let r = Runner::<FirstHit>::new(2, 10);
        assert_eq!(r.add(&[5, 6, 7], &[7]), Some(0.0), "item 7 is third, past K = 2");
        assert_eq!(r.add(&[7], &[7]), Some(1.0), "a list shorter than K is fine");
        assert_eq!(r.finish(), 0.5);
    }

    #[test]
    fn no_users_gives_zero() {
        assert_eq!(Runner::<FirstHit>::new(5, 10).finish(), 0.0);
    }
}
