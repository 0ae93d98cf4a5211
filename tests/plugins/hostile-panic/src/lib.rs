//! Panics: the host must report the panic message.
use encore_sdk::metric::Metric;

struct Boom;

impl Metric for Boom {
    fn new(_k: u32, _n: u32) -> Self {
        Boom
    }
    fn add(&mut self, ranked: &[u32], _targets: &[u32]) -> Option<f64> {
        panic!("boom: this plugin cannot rank {} items", ranked.len())
    }
}

encore_sdk::export_metric!(Boom);
