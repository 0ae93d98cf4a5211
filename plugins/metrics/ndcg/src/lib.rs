//! NDCG@K = DCG@K / IDCG@K, with gain 1/log2(rank + 1) per hit and an ideal list of
//! min(|targets|, K) hits (RecBole's `NDCG`).
use encore_sdk::metric::{hit_flags, Metric};

struct Ndcg {
    k: usize,
}

impl Metric for Ndcg {
    fn new(k: u32, _n_items: u32) -> Self {
        Ndcg { k: k as usize }
    }
    fn add(&mut self, ranked: &[u32], targets: &[u32]) -> Option<f64> {
        let gain = |rank: usize| 1.0 / ((rank + 2) as f64).log2();
        let dcg: f64 = hit_flags(ranked, targets).enumerate().filter(|(_, h)| *h).map(|(r, _)| gain(r)).sum();
        let ideal: f64 = (0..targets.len().min(self.k)).map(gain).sum();
        Some(dcg / ideal)
    }
}

encore_sdk::export_metric!(Ndcg);
