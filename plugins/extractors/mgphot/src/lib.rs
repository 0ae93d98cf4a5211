//! A track's MGPHot annotation (58 genes in [0, 1], see configs/mgphot/genes.tsv) as a vector.
//! `mode = "raw"` (default) keeps the values; `mode = "binned"` one-hot encodes each gene as
//! Low (< 0.33), Moderate (< 0.66) or High. `groups = [...]` keeps only those gene groups.
//! A track without an annotation, or with a malformed one, is reported missing, never zero-filled.
use encore_sdk::extractor::{Extractor, Spec, Track};
use encore_sdk::{Error, Params, Value};

/// The seven gene groups and their index ranges (SEED.md).
const GROUPS: [(&str, std::ops::Range<usize>); 7] =
    [("vocals", 0..7), ("harmony", 7..9), ("rhythm", 9..19), ("instrumentation", 19..35), ("lyrics", 35..43), ("sonority", 43..49), ("composition", 49..58)];

struct Mgphot {
    binned: bool,
    genes: Vec<usize>,
}

impl Extractor for Mgphot {
    fn configure(params: &Params) -> Result<(Self, Spec), Error> {
        params.only(&["mode", "groups"])?;
        let binned = match params.str_or("mode", "raw")? {
            "raw" => false,
            "binned" => true,
            m => return Err(Error::invalid(format!("mode must be \"raw\" or \"binned\", got {m:?}"))),
        };
        let groups: Vec<&str> = match params.get("groups") {
            None => GROUPS.iter().map(|g| g.0).collect(),
            Some(Value::Texts(g)) => g.iter().map(String::as_str).collect(),
            Some(v) => return Err(Error::invalid(format!("groups must be a list of group names, got {v:?}"))),
        };
        let mut genes = Vec::new();
        for name in groups {
            let (_, range) = GROUPS.iter().find(|g| g.0 == name).ok_or_else(|| {
                Error::invalid(format!("unknown gene group {name:?} (known: vocals, harmony, rhythm, instrumentation, lyrics, sonority, composition)"))
            })?;
            genes.extend(range.clone());
        }
        let dim = genes.len() as u32 * if binned { 3 } else { 1 };
        let name = if binned { "mgphot-binned" } else { "mgphot" };
        Ok((Mgphot { binned, genes }, Spec { name: name.into(), dim, wants_audio: None }))
    }

    fn extract(&mut self, track: &Track, _audio: Option<&[f32]>) -> Result<Option<Vec<f32>>, Error> {
        let Some(values) = &track.mgphot else { return Ok(None) };
        if values.len() != 58 || values.iter().any(|v| !(0.0..=1.0).contains(v)) {
            encore_sdk::log::warn(&format!("track {}: malformed MGPHot annotation, recorded as missing", track.track_id));
            return Ok(None);
        }
        let mut out = Vec::with_capacity(self.genes.len() * if self.binned { 3 } else { 1 });
        for &g in &self.genes {
            let v = values[g];
            if self.binned {
                let bin = if v < 0.33 {
                    0
                } else if v < 0.66 {
                    1
                } else {
                    2
                };
                out.extend((0..3).map(|b| (b == bin) as u8 as f32));
            } else {
                out.push(v);
            }
        }
        Ok(Some(out))
    }
}

encore_sdk::export_extractor!(Mgphot);
