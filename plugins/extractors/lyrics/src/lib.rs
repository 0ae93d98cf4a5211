//! Lyrics as a sentence embedding, computed by a host text model (`model`, default
//! `all-minilm-l6-v2`). A track without lyrics (or with only whitespace) is missing, never zeros.
use encore_sdk::extractor::{Extractor, Spec, Track};
use encore_sdk::{models, Error, Params};

struct Lyrics {
    model: String,
}

impl Extractor for Lyrics {
    fn configure(params: &Params) -> Result<(Self, Spec), Error> {
        params.only(&["model"])?;
        let model = params.str_or("model", "all-minilm-l6-v2")?.to_string();
        let info = models::describe(&model)?;
        if info.sample_rate.is_some() {
            return Err(Error::invalid(format!("model `{model}` is an audio model; lyrics needs a text model")));
        }
        Ok((Lyrics { model }, Spec { name: "lyrics".into(), dim: info.dim, wants_audio: None }))
    }

    fn extract(&mut self, track: &Track, audio: Option<&[f32]>) -> Result<Option<Vec<f32>>, Error> {
        let mut v = self.extract_batch(std::slice::from_ref(track), &[audio.map(<[f32]>::to_vec)])?;
        Ok(v.pop().flatten())
    }

    fn extract_batch(&mut self, tracks: &[Track], _audio: &[Option<Vec<f32>>]) -> Result<Vec<Option<Vec<f32>>>, Error> {
        let texts = tracks.iter().map(|t| t.lyrics.clone().filter(|l| !l.trim().is_empty())).collect();
        models::embed_text_each(&self.model, texts)
    }
}

encore_sdk::export_extractor!(Lyrics);
