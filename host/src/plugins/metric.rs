//! Metric plugins: one instance and one accumulator per plugin, holding every cutoff.
use super::bindings::metric::exports::encore::plugin::metric::RankingBatch;
use super::bindings::{guest_error, metric::MetricPlugin};
use super::runtime::{HostState, Plugin, PluginKind};
use super::PluginError;
use wasmtime::component::ResourceAny;
use wasmtime::Store;

/// One user's ranking: top-K item indices, best first, and the distinct items to find.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ranking {
    /// Item indices, best first.
    pub ranked: Vec<u32>,
    /// Distinct target items, never empty.
    pub targets: Vec<u32>,
}

/// A batch of rankings flattened for the component boundary (four copies per call instead of two
/// per user), built once and sent to every metric plugin.
pub struct Batch {
    inner: RankingBatch,
    users: usize,
}

impl Batch {
    /// Flattens `rankings`.
    pub fn new(rankings: &[Ranking]) -> Self {
        let (nr, nt) = rankings.iter().fold((0, 0), |(a, b), r| (a + r.ranked.len(), b + r.targets.len()));
        let mut inner = RankingBatch {
            ranked: Vec::with_capacity(nr),
            ranked_offsets: Vec::with_capacity(rankings.len() + 1),
            targets: Vec::with_capacity(nt),
            target_offsets: Vec::with_capacity(rankings.len() + 1),
        };
        inner.ranked_offsets.push(0);
        inner.target_offsets.push(0);
        for r in rankings {
            inner.ranked.extend_from_slice(&r.ranked);
            inner.ranked_offsets.push(inner.ranked.len() as u32);
            inner.targets.extend_from_slice(&r.targets);
            inner.target_offsets.push(inner.targets.len() as u32);
        }
        Batch { inner, users: rankings.len() }
    }

    /// Users in the batch.
    pub fn users(&self) -> usize {
        self.users
    }

    fn bytes(&self) -> u64 {
        4 * (self.inner.ranked.len() + self.inner.targets.len() + 2 * self.users + 2) as u64
    }
}

/// A running metric plugin.
pub struct MetricInstance {
    plugin: Plugin,
    store: Store<HostState>,
    bindings: MetricPlugin,
    accumulator: Option<ResourceAny>,
    ks: Vec<u32>,
    per_user: Option<bool>,
}

impl MetricInstance {
    /// Instantiates `plugin` with an accumulator over the cutoffs `ks`.
    pub fn new(plugin: &Plugin, ks: &[u32], n_items: u32) -> Result<Self, PluginError> {
        plugin.expect_kind(PluginKind::Metric)?;
        let (mut store, linker) = plugin.sandbox()?;
        let bindings = MetricPlugin::instantiate(&mut store, plugin.component(), &linker)
            .map_err(|e| PluginError::Load { path: plugin.id().path.clone(), message: format!("instantiating: {e:#}") })?;
        let acc = plugin.call(&mut store, |s| bindings.encore_plugin_metric().accumulator().call_constructor(s, ks, n_items))?;
        Ok(MetricInstance { plugin: plugin.clone(), store, bindings, accumulator: Some(acc), ks: ks.to_vec(), per_user: None })
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.plugin.info().name
    }

    /// The plugin.
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// Adds a batch. Returns, per cutoff, the per-user values (`None` for a global metric). The
    /// result is checked: one list per cutoff, one finite value per user, and either every cutoff
    /// of every batch has per-user values or none does.
    pub fn add(&mut self, batch: &Batch) -> Result<Vec<Option<Vec<f64>>>, PluginError> {
        if batch.bytes() > self.plugin.memory_cap() / 2 {
            return Err(PluginError::InputTooLarge {
                plugin: self.plugin.id().clone(),
                reason: format!(
                    "a batch of {} users takes {} MiB, over half the memory cap of {} MiB; use smaller batches",
                    batch.users,
                    batch.bytes() >> 20,
                    self.plugin.memory_cap() >> 20
                ),
            });
        }
        let acc = self.accumulator.expect("the accumulator lives until finish");
        let bindings = &self.bindings;
        let values = self
            .plugin
            .call(&mut self.store, |s| bindings.encore_plugin_metric().accumulator().call_add(s, acc, &batch.inner))?
            .map_err(|e| self.plugin.returned(guest_error(e)))?;
        if values.len() != self.ks.len() {
            return Err(self.plugin.invalid(format!("`add` returned {} lists for {} cutoffs", values.len(), self.ks.len())));
        }
        for (v, k) in values.iter().zip(&self.ks) {
            if let Some(v) = v {
                if v.len() != batch.users {
                    return Err(self.plugin.invalid(format!("@{k}: `add` returned {} values for a batch of {} users", v.len(), batch.users)));
                }
                if let Some((u, x)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
                    return Err(self.plugin.invalid(format!("@{k}: user {u} of the batch got the value {x}")));
                }
            }
            match self.per_user {
                None => self.per_user = Some(v.is_some()),
                Some(p) if p != v.is_some() => {
                    return Err(self.plugin.invalid(format!("@{k}: per-user values came and went; a metric returns them always or never")))
                }
                _ => {}
            }
        }
        Ok(values)
    }

    /// The final value at each cutoff, in the order of `ks`. Consumes the instance.
    pub fn finish(mut self) -> Result<Vec<(u32, f64)>, PluginError> {
        let acc = self.accumulator.take().expect("the accumulator lives until finish");
        let bindings = &self.bindings;
        let values = self
            .plugin
            .call(&mut self.store, |s| bindings.encore_plugin_metric().accumulator().call_finish(s, acc))?
            .map_err(|e| self.plugin.returned(guest_error(e)))?;
        let _ = acc.resource_drop(&mut self.store);
        if values.len() != self.ks.len() {
            return Err(self.plugin.invalid(format!("`finish` returned {} values for {} cutoffs", values.len(), self.ks.len())));
        }
        if let Some((k, v)) = self.ks.iter().zip(&values).find(|(_, v)| !v.is_finite()) {
            return Err(self.plugin.invalid(format!("@{k}: `finish` returned {v}")));
        }
        Ok(self.ks.iter().copied().zip(values).collect())
    }
}
