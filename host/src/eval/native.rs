//! The built-in metrics in plain Rust: the anchor the plugin-overhead benchmark compares against,
//! and a cross-check for the plugins. Definitions follow RecBole 1.2.1 (`recbole/evaluator/metrics.py`);
//! `ranked` is a user's top-K, `targets` their distinct ground-truth items.

/// 1 if any target is in the top-K.
pub fn hit(ranked: &[u32], targets: &[u32]) -> f64 {
    ranked.iter().any(|i| targets.contains(i)) as u8 as f64
}

/// Hits in the top-K over the number of targets.
pub fn recall(ranked: &[u32], targets: &[u32]) -> f64 {
    hits(ranked, targets) as f64 / targets.len() as f64
}

/// Hits in the top-K over K (not over the list length when fewer than K items were ranked).
pub fn precision(ranked: &[u32], targets: &[u32], k: usize) -> f64 {
    hits(ranked, targets) as f64 / k as f64
}

/// 1 / rank of the first hit, 0 without a hit.
pub fn mrr(ranked: &[u32], targets: &[u32]) -> f64 {
    ranked.iter().position(|i| targets.contains(i)).map_or(0.0, |p| 1.0 / (p + 1) as f64)
}

/// DCG of the hits (gain 1 / log2(rank + 1)) over the ideal DCG of min(|targets|, K) hits.
pub fn ndcg(ranked: &[u32], targets: &[u32], k: usize) -> f64 {
    let dcg: f64 = ranked.iter().enumerate().filter(|(_, i)| targets.contains(i)).map(|(r, _)| 1.0 / ((r + 2) as f64).log2()).sum();
    let ideal: f64 = (0..targets.len().min(k)).map(|r| 1.0 / ((r + 2) as f64).log2()).sum();
    dcg / ideal
}

/// Sum over hit positions r of precision@r, over min(|targets|, K).
pub fn map(ranked: &[u32], targets: &[u32], k: usize) -> f64 {
    let mut found = 0usize;
    let mut sum = 0.0;
    for (r, i) in ranked.iter().enumerate() {
        if targets.contains(i) {
            found += 1;
            sum += found as f64 / (r + 1) as f64;
        }
    }
    sum / targets.len().min(k) as f64
}

fn hits(ranked: &[u32], targets: &[u32]) -> usize {
    ranked.iter().filter(|i| targets.contains(i)).count()
}

/// Catalog coverage@K: distinct items in anyone's top-K over the catalog size.
#[derive(Debug, Clone)]
pub struct Coverage {
    seen: Vec<bool>,
    distinct: usize,
}

impl Coverage {
    /// An empty tally over `n_items` items.
    pub fn new(n_items: usize) -> Self {
        Coverage { seen: vec![false; n_items], distinct: 0 }
    }
    /// Counts one user's top-K.
    pub fn add(&mut self, ranked: &[u32]) {
        for &i in ranked {
            if let Some(s) = self.seen.get_mut(i as usize) {
                if !*s {
                    *s = true;
                    self.distinct += 1;
                }
            }
        }
    }
    /// The share of the catalog recommended to someone.
    pub fn value(&self) -> f64 {
        if self.seen.is_empty() {
            0.0
        } else {
            self.distinct as f64 / self.seen.len() as f64
        }
    }
}
