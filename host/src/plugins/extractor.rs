//! Extractor plugins: configured once, then fed batches of tracks; every vector is checked.
use super::bindings::extractor::ExtractorPlugin;
use super::bindings::guest_error;
use super::bindings::types::{ParamValue, Track};
use super::runtime::{HostState, Plugin, PluginKind};
use super::PluginError;
use wasmtime::Store;

/// What a configured extractor produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The modality's name.
    pub name: String,
    /// Width of every vector.
    pub dim: usize,
    /// Sample rate of the mono PCM it wants, if any.
    pub wants_audio: Option<u32>,
}

/// A configured extractor instance.
pub struct ExtractorInstance {
    plugin: Plugin,
    store: Store<HostState>,
    bindings: ExtractorPlugin,
    spec: Spec,
}

impl ExtractorInstance {
    /// Instantiates and configures `plugin`.
    pub fn new(plugin: &Plugin, params: &[(String, ParamValue)]) -> Result<Self, PluginError> {
        let params = params.to_vec();
        plugin.expect_kind(PluginKind::Extractor)?;
        let (mut store, linker) = plugin.sandbox()?;
        let bindings = ExtractorPlugin::instantiate(&mut store, plugin.component(), &linker)
            .map_err(|e| PluginError::Load { path: plugin.id().path.clone(), message: format!("instantiating: {e:#}") })?;
        let spec = plugin.call(&mut store, |s| bindings.encore_plugin_extractor().call_configure(s, &params))?.map_err(|e| plugin.returned(guest_error(e)))?;
        if spec.dim == 0 || spec.dim as usize > super::fusion::MAX_DIM {
            return Err(plugin.invalid(format!("spec dim {} is outside 1..={}", spec.dim, super::fusion::MAX_DIM)));
        }
        let spec = Spec { name: spec.name, dim: spec.dim as usize, wants_audio: spec.wants_audio };
        Ok(ExtractorInstance { plugin: plugin.clone(), store, bindings, spec })
    }

    /// What it produces.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// One entry per track: a vector of `spec.dim` finite numbers, or `None` when the plugin
    /// reports the track's input as missing.
    pub fn extract(&mut self, tracks: &[Track], audio: &[Option<Vec<f32>>]) -> Result<Vec<Option<Vec<f32>>>, PluginError> {
        assert_eq!(tracks.len(), audio.len(), "one audio entry per track");
        let bytes: u64 = audio.iter().flatten().map(|a| 4 * a.len() as u64).sum::<u64>()
            + tracks.iter().map(|t| 256 + t.lyrics.as_ref().map_or(0, |l| l.len()) as u64).sum::<u64>();
        if bytes > self.plugin.memory_cap() / 2 {
            return Err(PluginError::InputTooLarge {
                plugin: self.plugin.id().clone(),
                reason: format!(
                    "a batch of {} tracks takes {} MiB, over half the memory cap of {} MiB; use smaller batches",
                    tracks.len(),
                    bytes >> 20,
                    self.plugin.memory_cap() >> 20
                ),
            });
        }
        let bindings = &self.bindings;
        let out = self
            .plugin
            .call(&mut self.store, |s| bindings.encore_plugin_extractor().call_extract(s, tracks, audio))?
            .map_err(|e| self.plugin.returned(guest_error(e)))?;
        if out.len() != tracks.len() {
            return Err(self.plugin.invalid(format!("returned {} vectors for {} tracks", out.len(), tracks.len())));
        }
        for (t, v) in tracks.iter().zip(&out) {
            if let Some(v) = v {
                if v.len() != self.spec.dim {
                    return Err(self.plugin.invalid(format!(
                        "track {} ({}): vector of length {}, but the spec says {}",
                        t.index,
                        t.track_id,
                        v.len(),
                        self.spec.dim
                    )));
                }
                if let Some(x) = v.iter().find(|x| !x.is_finite()) {
                    return Err(self.plugin.invalid(format!("track {} ({}): non-finite value {x}", t.index, t.track_id)));
                }
            }
        }
        Ok(out)
    }
}
