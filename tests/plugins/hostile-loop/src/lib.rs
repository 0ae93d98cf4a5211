//! Loops forever: the sandbox must stop it with OutOfFuel.
use encore_sdk::metric::Metric;

struct Forever;

impl Metric for Forever {
    fn new(_k: u32, _n: u32) -> Self {
        Forever
    }
    fn add(&mut self, _ranked: &[u32], _targets: &[u32]) -> Option<f64> {
        let mut x = 0u64;
        loop {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }
}

encore_sdk::export_metric!(Forever);
