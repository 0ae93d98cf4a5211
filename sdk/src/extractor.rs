//! Modality extractors: one vector per track.
use crate::{Error, Params};

/// A track as an extractor sees it. Missing metadata is `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Track {
    /// Dense index of the track in `items.parquet`.
    pub index: u32,
    /// The track's id (MBID, or the hash of artist and title).
    pub track_id: String,
    /// Artist name.
    pub artist: String,
    /// Track title.
    pub title: String,
    /// Duration in seconds, when known.
    pub duration_s: Option<f32>,
    /// Free-form tags.
    pub tags: Vec<String>,
    /// Lyrics text, when known.
    pub lyrics: Option<String>,
    /// The 58 MGPHot genes in [0, 1], when annotated.
    pub mgphot: Option<Vec<f32>>,
}

/// What a configured extractor produces.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// The modality's name, e.g. `lyrics`.
    pub name: String,
    /// Length of every vector.
    pub dim: u32,
    /// Sample rate of the mono PCM wanted, or `None` for no audio.
    pub wants_audio: Option<u32>,
}

/// A modality extractor.
pub trait Extractor: Sized + 'static {
    /// Reads the parameters and says what it will produce.
    fn configure(params: &Params) -> Result<(Self, Spec), Error>;

    /// One track's vector (of length `spec.dim`), or `None` when its input is missing or unusable.
    /// `audio` is mono PCM at the requested rate, when audio was asked for and could be decoded.
    fn extract(&mut self, track: &Track, audio: Option<&[f32]>) -> Result<Option<Vec<f32>>, Error>;

    /// A batch; the default calls [`Extractor::extract`] per track. Override it to batch work.
    fn extract_batch(&mut self, tracks: &[Track], audio: &[Option<Vec<f32>>]) -> Result<Vec<Option<Vec<f32>>>, Error> {
        tracks.iter().enumerate().map(|(i, t)| self.extract(t, audio.get(i).and_then(|a| a.as_deref()))).collect()
    }
}
