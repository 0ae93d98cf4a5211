//! Catalog coverage@K = distinct items in anyone's top-K / catalog size (RecBole's
//! `ItemCoverage`). A global metric: it has no per-user value.
use encore_sdk::metric::Metric;

struct Coverage {
    seen: Vec<bool>,
    distinct: usize,
}

impl Metric for Coverage {
    fn new(_k: u32, n_items: u32) -> Self {
        Coverage { seen: vec![false; n_items as usize], distinct: 0 }
    }
    fn add(&mut self, ranked: &[u32], _targets: &[u32]) -> Option<f64> {
        for &i in ranked {
            if let Some(s) = self.seen.get_mut(i as usize).filter(|s| !**s) {
                *s = true;
                self.distinct += 1;
            }
        }
        None
    }
    fn finish(&self, _mean: f64) -> f64 {
        self.distinct as f64 / self.seen.len().max(1) as f64
    }
}

encore_sdk::export_metric!(Coverage);
