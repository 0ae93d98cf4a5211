//! `encore plugin check`: load a plugin, then call it once on a small, valid input.
use super::extractor::ExtractorInstance;
use super::fusion::{self, Modality};
use super::metric::{Batch, MetricInstance, Ranking};
use super::{bindings::types::Track, Plugin, PluginError, PluginKind};

/// Calls the plugin once with a typical input and describes what came back.
pub fn exercise(plugin: &Plugin) -> Result<String, PluginError> {
    match plugin.info().kind {
        PluginKind::Metric => {
            let mut m = MetricInstance::new(plugin, &[1, 3], 10)?;
            let users = [Ranking { ranked: vec![1, 2, 3], targets: vec![2] }, Ranking { ranked: vec![4, 5, 6], targets: vec![9] }];
            m.add(&Batch::new(&users))?;
            let v = m.finish()?;
            Ok(format!("two users, 10 items: @1 = {:.4}, @3 = {:.4}", v[0].1, v[1].1))
        }
        PluginKind::Fusion => {
            let inputs = [Modality { name: "id".into(), dim: 64 }, Modality { name: "audio".into(), dim: 32 }, Modality { name: "lyrics".into(), dim: 384 }];
            let plan = fusion::plan(plugin, &inputs, 64, &[])?;
            Ok(format!("plan over id:64, audio:32, lyrics:384 → 64: {} nodes, valid", plan.nodes.len()))
        }
        PluginKind::Extractor => {
            let mut x = ExtractorInstance::new(plugin, &[])?;
            let track = Track {
                index: 0,
                track_id: "t0".into(),
                artist: "Artist".into(),
                title: "Title".into(),
                duration_s: Some(180.0),
                tags: vec!["rock".into()],
                lyrics: Some("la la la".into()),
                mgphot: Some(vec![0.5; 58]),
            };
            let audio = x.spec().wants_audio.map(|sr| vec![0.0f32; sr as usize]);
            let out = x.extract(&[track], &[audio])?;
            Ok(format!("spec {} (dim {}), one track → {}", x.spec().name, x.spec().dim, if out[0].is_some() { "a vector" } else { "missing" }))
        }
    }
}
