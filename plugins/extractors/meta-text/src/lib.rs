//! Artist, title and tags as one sentence embedding, computed by a host text model (`model`,
//! default `all-minilm-l6-v2`). The text is `"{artist} - {title}. Tags: {tag}, {tag}."`, leaving
//! out the empty parts; `tags = false` leaves the tags out. A track with none of them is missing.
use encore_sdk::extractor::{Extractor, Spec, Track};
use encore_sdk::{models, Error, Params};

struct MetaText {
    model: String,
    tags: bool,
}

impl MetaText {
    fn text(&self, t: &Track) -> Option<String> {
        let name = [t.artist.trim(), t.title.trim()].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" - ");
        let tags: Vec<&str> = if self.tags { t.tags.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).collect() } else { vec![] };
        let parts = [name, if tags.is_empty() { String::new() } else { format!("Tags: {}", tags.join(", ")) }];
        let text = parts.into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join(". ");
        (!text.is_empty()).then(|| format!("{text}."))
    }
}

impl Extractor for MetaText {
    fn configure(params: &Params) -> Result<(Self, Spec), Error> {
        params.only(&["model", "tags"])?;
        let model = params.str_or("model", "all-minilm-l6-v2")?.to_string();
        let info = models::describe(&model)?;
        if info.sample_rate.is_some() {
            return Err(Error::invalid(format!("model `{model}` is an audio model; meta-text needs a text model")));
        }
        let spec = Spec { name: "meta-text".into(), dim: info.dim, wants_audio: None };
        Ok((MetaText { model, tags: params.bool_or("tags", true)? }, spec))
    }

    fn extract(&mut self, track: &Track, _audio: Option<&[f32]>) -> Result<Option<Vec<f32>>, Error> {
        Ok(models::embed_text_each(&self.model, vec![self.text(track)])?.pop().flatten())
    }

    fn extract_batch(&mut self, tracks: &[Track], _audio: &[Option<Vec<f32>>]) -> Result<Vec<Option<Vec<f32>>>, Error> {
        models::embed_text_each(&self.model, tracks.iter().map(|t| self.text(t)).collect())
    }
}

encore_sdk::export_extractor!(MetaText);
