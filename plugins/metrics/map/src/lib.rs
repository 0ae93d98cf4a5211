//! MAP@K = Σ over hit ranks r of precision@r, divided by min(|targets|, K) (RecBole's `MAP`).
use encore_sdk::metric::{hit_flags, Metric};

struct Map {
    k: usize,
}

impl Metric for Map {
    fn new(k: u32, _n_items: u32) -> Self {
        Map { k: k as usize }
    }
    fn add(&mut self, ranked: &[u32], targets: &[u32]) -> Option<f64> {
        let (mut found, mut sum) = (0usize, 0.0);
        for (r, hit) in hit_flags(ranked, targets).enumerate() {
            if hit {
                found += 1;
                sum += found as f64 / (r + 1) as f64;
            }
        }
        Some(sum / targets.len().min(self.k) as f64)
    }
}

encore_sdk::export_metric!(Map);
