//! Allocates and touches 1 GiB: the sandbox must stop it with OutOfMemory under a 64 MiB cap.
use encore_sdk::metric::Metric;

struct Bomb;

impl Metric for Bomb {
    fn new(_k: u32, _n: u32) -> Self {
        Bomb
    }
    fn add(&mut self, _ranked: &[u32], _targets: &[u32]) -> Option<f64> {
        let v = std::hint::black_box(vec![1u8; 1 << 30]);
        Some(v[v.len() - 1] as f64)
    }
}

encore_sdk::export_metric!(Bomb);
