//! Says dim 4, returns 5 numbers: the host's validation must refuse it.
use encore_sdk::extractor::{Extractor, Spec, Track};
use encore_sdk::{Error, Params};

struct Off;

impl Extractor for Off {
    fn configure(_params: &Params) -> Result<(Self, Spec), Error> {
        Ok((Off, Spec { name: "off".into(), dim: 4, wants_audio: None }))
    }
    fn extract(&mut self, _track: &Track, _audio: Option<&[f32]>) -> Result<Option<Vec<f32>>, Error> {
        Ok(Some(vec![0.0; 5]))
    }
}

encore_sdk::export_extractor!(Off);
