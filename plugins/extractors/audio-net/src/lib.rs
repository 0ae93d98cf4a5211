//! A track's audio through a host audio network (`model`, default `encodec-24khz`, e.g.
//! facebook/encodec_24khz): the mean over time of its encoder frames. Asks for mono PCM at the
//! model's sample rate. A track without audio, or with a clip shorter than `min_seconds`
//! (default 0.1), is missing.
use encore_sdk::extractor::{Extractor, Spec, Track};
use encore_sdk::{models, Error, Params};

struct AudioNet {
    model: String,
    rate: u32,
    min_samples: usize,
}

impl Extractor for AudioNet {
    fn configure(params: &Params) -> Result<(Self, Spec), Error> {
        params.only(&["model", "min_seconds"])?;
        let model = params.str_or("model", "encodec-24khz")?.to_string();
        let info = models::describe(&model)?;
        let Some(rate) = info.sample_rate else {
            return Err(Error::invalid(format!("model `{model}` is a text model; audio-net needs an audio model")));
        };
        let min_samples = (params.f64_or("min_seconds", 0.1)?.max(0.0) * rate as f64).ceil() as usize;
        let spec = Spec { name: "audio-net".into(), dim: info.dim, wants_audio: Some(rate) };
        Ok((AudioNet { model, rate, min_samples: min_samples.max(1) }, spec))
    }

    fn extract(&mut self, track: &Track, audio: Option<&[f32]>) -> Result<Option<Vec<f32>>, Error> {
        Ok(self.extract_batch(std::slice::from_ref(track), &[audio.map(<[f32]>::to_vec)])?.pop().flatten())
    }

    fn extract_batch(&mut self, _tracks: &[Track], audio: &[Option<Vec<f32>>]) -> Result<Vec<Option<Vec<f32>>>, Error> {
        let clips = audio.iter().map(|a| a.as_ref().filter(|a| a.len() >= self.min_samples).cloned()).collect();
        models::embed_audio_each(&self.model, clips, self.rate)
    }
}

encore_sdk::export_extractor!(AudioNet);
