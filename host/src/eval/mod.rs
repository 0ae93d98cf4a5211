//! Evaluation: full ranking over all items, metric plugins, bootstrap confidence intervals.
//!
//! Per-user values come back from the metric plugins' `add` (the WIT returns one value per user
//! for per-user metrics), so the host bootstraps confidence intervals from one pass, without
//! re-running plugins on resampled users. Global metrics (catalog coverage) have no per-user value
//! and get no interval.
pub mod bootstrap;
pub mod compare;
pub mod native;
pub mod rank;
pub mod rankings;
pub mod report;

pub use rank::{full_ranking, DotScorer, EvalUser, RankOptions, RankingSink, Scorer};
pub use report::{EvalReport, MetricResult};

use crate::plugins::metric::{Batch, MetricInstance, Ranking};
use crate::plugins::{Plugin, PluginError};

/// The metrics a run reports unless told otherwise: the seven built-in plugins.
pub const DEFAULT_METRICS: [&str; 7] = ["recall", "ndcg", "mrr", "hit", "precision", "map", "coverage"];
/// The cutoffs a run reports unless told otherwise.
pub const DEFAULT_KS: [u32; 3] = [5, 10, 20];

/// A set of metric plugins at a set of cutoffs, fed batch by batch.
pub struct MetricSuite {
    instances: Vec<MetricInstance>,
    ks: Vec<u32>,
    n_items: u32,
    /// `[metric][k]` → per-user values (empty for global metrics).
    per_user: Vec<Vec<Vec<f64>>>,
    n_users: usize,
}

impl MetricSuite {
    /// Instantiates every plugin with one accumulator per cutoff.
    pub fn new(plugins: &[Plugin], ks: &[u32], n_items: u32) -> Result<Self, PluginError> {
        assert!(!ks.is_empty() && ks.iter().all(|&k| k > 0), "cutoffs must be positive");
        let instances = plugins.iter().map(|p| MetricInstance::new(p, ks, n_items)).collect::<Result<Vec<_>, _>>()?;
        let per_user = vec![vec![Vec::new(); ks.len()]; instances.len()];
        Ok(MetricSuite { instances, ks: ks.to_vec(), n_items, per_user, n_users: 0 })
    }

    /// The largest cutoff: rankings must hold at least this many items (when the catalog allows).
    pub fn max_k(&self) -> u32 {
        *self.ks.iter().max().expect("ks is not empty")
    }

    /// The catalog size the metrics were set up for.
    pub fn n_items(&self) -> u32 {
        self.n_items
    }

    /// Feeds a batch of validated rankings to every metric.
    pub fn add(&mut self, batch: &[Ranking]) -> Result<(), PluginError> {
        if batch.is_empty() {
            return Ok(());
        }
        let batch = Batch::new(batch);
        for (m, inst) in self.instances.iter_mut().enumerate() {
            for (ki, values) in inst.add(&batch)?.into_iter().enumerate() {
                self.per_user[m][ki].extend(values.into_iter().flatten());
            }
        }
        self.n_users += batch.users();
        Ok(())
    }

    /// Final values, with bootstrap intervals for per-user metrics when `bootstrap` is set.
    pub fn finish(self, bootstrap: Option<bootstrap::Bootstrap>) -> Result<EvalReport, PluginError> {
        let mut results = Vec::new();
        let mut series: Vec<&[f64]> = Vec::new();
        for (m, inst) in self.instances.into_iter().enumerate() {
            let name = inst.name().to_string();
            let version = inst.plugin().info().version.clone();
            for (ki, (k, value)) in inst.finish()?.into_iter().enumerate() {
                results.push(MetricResult { metric: name.clone(), k, value, ci: None, n_users: self.n_users, plugin_version: version.clone() });
                series.push(&self.per_user[m][ki]);
            }
        }
        if let Some(b) = bootstrap {
            let cis = b.intervals(&series);
            for (r, ci) in results.iter_mut().zip(cis) {
                r.ci = ci;
            }
        }
        Ok(EvalReport { results, n_users: self.n_users, n_items: self.n_items, bootstrap })
    }

    /// Per-user values of one metric at one cutoff (empty for global metrics).
    pub fn per_user(&self, metric: &str, k: u32) -> Option<&[f64]> {
        let m = self.instances.iter().position(|i| i.name() == metric)?;
        let ki = self.ks.iter().position(|&x| x == k)?;
        Some(&self.per_user[m][ki])
    }
}
