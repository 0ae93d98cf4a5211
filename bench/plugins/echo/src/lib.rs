//! Measures the component boundary: `list<f32>` in (audio) and, with `echo = true`, out again.
use encore_sdk::extractor::{Extractor, Spec, Track};
use encore_sdk::{Error, Params};

struct Echo {
    echo: bool,
}

/// Width of the echoed vectors: the host's largest allowed vector.
const DIM: u32 = 65536;

impl Extractor for Echo {
    fn configure(params: &Params) -> Result<(Self, Spec), Error> {
        params.only(&["echo"])?;
        let echo = params.bool_or("echo", false)?;
        Ok((Echo { echo }, Spec { name: "echo".into(), dim: if echo { DIM } else { 1 }, wants_audio: Some(16_000) }))
    }

    fn extract(&mut self, _track: &Track, audio: Option<&[f32]>) -> Result<Option<Vec<f32>>, Error> {
        let pcm = audio.ok_or_else(|| Error::invalid("no audio"))?;
        Ok(Some(if self.echo { pcm.to_vec() } else { vec![pcm.len() as f32] }))
    }
}

encore_sdk::export_extractor!(Echo);
