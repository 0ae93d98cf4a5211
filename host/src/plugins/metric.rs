//! Metric plugins: one instance per plugin, one accumulator per cutoff K.
use super::bindings::metric::exports::encore::plugin::metric::UserRanking;
use super::bindings::{guest_error, metric::MetricPlugin};
use super::runtime::{HostState, Plugin, PluginKind};
use super::PluginError;
use wasmtime::component::ResourceAny;
use wasmtime::Store;

/// One user's ranking as metric plugins receive it: top-K item indices, best first, and targets.
pub type Ranking = UserRanking;

/// A running metric plugin with one accumulator per cutoff.
pub struct MetricInstance {
    plugin: Plugin,
    store: Store<HostState>,
    bindings: MetricPlugin,
    accumulators: Vec<(u32, ResourceAny)>,
    per_user: Option<bool>,
}

impl MetricInstance {
    /// Instantiates `plugin` with one accumulator per cutoff in `ks`.
    pub fn new(plugin: &Plugin, ks: &[u32], n_items: u32) -> Result<Self, PluginError> {
        plugin.expect_kind(PluginKind::Metric)?;
        let (mut store, linker) = plugin.sandbox()?;
        let bindings = MetricPlugin::instantiate(&mut store, plugin.component(), &linker).map_err(|e| {
            PluginError::Load { path: plugin.id().path.clone(), message: format!("instantiating: {e:#}") }
        })?;
        let mut accumulators = Vec::with_capacity(ks.len());
        for &k in ks {
            let acc = plugin.call(&mut store, |s| {
                bindings.encore_plugin_metric().accumulator().call_constructor(s, k, n_items)
            })?;
            accumulators.push((k, acc));
        }
        Ok(MetricInstance { plugin: plugin.clone(), store, bindings, accumulators, per_user: None })
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.plugin.info().name
    }

    /// The plugin.
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// Adds a batch of users to every cutoff. Returns, per cutoff, the per-user values (all `None`
    /// for a global metric). The lists are checked: one value per user, finite, and either every
    /// user has a value or none does.
    pub fn add(&mut self, batch: &[Ranking]) -> Result<Vec<Vec<Option<f64>>>, PluginError> {
        let bytes: u64 = batch.iter().map(|u| 8 + 4 * (u.ranked.len() + u.targets.len()) as u64 + 16).sum();
        if bytes > self.plugin.memory_cap() / 2 {
            return Err(PluginError::InputTooLarge {
                plugin: self.plugin.id().clone(),
                reason: format!(
                    "a batch of {} users takes {} MiB, over half the memory cap of {} MiB; use smaller batches",
                    batch.len(),
                    bytes >> 20,
                    self.plugin.memory_cap() >> 20
                ),
            });
        }
        let mut out = Vec::with_capacity(self.accumulators.len());
        for &(k, acc) in &self.accumulators {
            let bindings = &self.bindings;
            let values = self
                .plugin
                .call(&mut self.store, |s| bindings.encore_plugin_metric().accumulator().call_add(s, acc, batch))?
                .map_err(|e| self.plugin.returned(guest_error(e)))?;
            if values.len() != batch.len() {
                return Err(self.plugin.invalid(format!(
                    "@{k}: `add` returned {} values for a batch of {} users",
                    values.len(),
                    batch.len()
                )));
            }
            for (i, v) in values.iter().enumerate() {
                if let Some(x) = v {
                    if !x.is_finite() {
                        return Err(self.plugin.invalid(format!("@{k}: user {i} of the batch got the value {x}")));
                    }
                }
                let is_some = v.is_some();
                match self.per_user {
                    None => self.per_user = Some(is_some),
                    Some(p) if p != is_some => {
                        return Err(self.plugin.invalid(format!(
                            "@{k}: some users got a per-user value and some did not; a metric returns either always or never"
                        )))
                    }
                    _ => {}
                }
            }
            out.push(values);
        }
        Ok(out)
    }

    /// The final value at each cutoff, in the order of `ks`. Consumes the instance.
    pub fn finish(mut self) -> Result<Vec<(u32, f64)>, PluginError> {
        let mut out = Vec::with_capacity(self.accumulators.len());
        for &(k, acc) in &self.accumulators {
            let bindings = &self.bindings;
            let v = self
                .plugin
                .call(&mut self.store, |s| bindings.encore_plugin_metric().accumulator().call_finish(s, acc))?
                .map_err(|e| self.plugin.returned(guest_error(e)))?;
            if !v.is_finite() {
                return Err(self.plugin.invalid(format!("@{k}: `finish` returned {v}")));
            }
            out.push((k, v));
        }
        for (_, acc) in self.accumulators.drain(..) {
            let _ = acc.resource_drop(&mut self.store);
        }
        Ok(out)
    }
}
