//! A test extractor that misbehaves on chosen tracks: a title containing `LOOP` loops forever
//! (the sandbox stops it with OutOfFuel), `PANIC` panics, `NONE` returns none. Every other track
//! gets `[scale · title length, scale · tag count, audio samples or -1]`. `rate = N` asks for audio
//! at N Hz; then a track without audio is missing (none). `spin = N` burns N loop iterations per
//! track, to make runs slow enough to interrupt.
use encore_sdk::extractor::{Extractor, Spec, Track};
use encore_sdk::{Error, Params, Value};

struct Picky {
    scale: f32,
    audio: bool,
    spin: u64,
}

impl Extractor for Picky {
    fn configure(params: &Params) -> Result<(Self, Spec), Error> {
        params.only(&["scale", "rate", "spin"])?;
        let scale = match params.get("scale") {
            None => 1.0,
            Some(Value::Float(f)) => *f as f32,
            Some(Value::Int(i)) => *i as f32,
            Some(v) => return Err(Error::invalid(format!("scale must be a number, got {v:?}"))),
        };
        let rate = match params.get("rate") {
            None => None,
            Some(Value::Int(r)) if *r > 0 => Some(*r as u32),
            Some(v) => return Err(Error::invalid(format!("rate must be a positive integer, got {v:?}"))),
        };
        let spin = match params.get("spin") {
            None => 0,
            Some(Value::Int(n)) if *n >= 0 => *n as u64,
            Some(v) => return Err(Error::invalid(format!("spin must be a non-negative integer, got {v:?}"))),
        };
        Ok((Picky { scale, audio: rate.is_some(), spin }, Spec { name: "picky".into(), dim: 3, wants_audio: rate }))
    }

    fn extract(&mut self, track: &Track, audio: Option<&[f32]>) -> Result<Option<Vec<f32>>, Error> {
        if track.title.contains("LOOP") {
            let mut x = 0u64;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        if track.title.contains("PANIC") {
            panic!("picky panics on {}", track.track_id);
        }
        if track.title.contains("NONE") || (self.audio && audio.is_none()) {
            return Ok(None);
        }
        let mut x = 0u64;
        for _ in 0..self.spin {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let n = audio.map_or(-1.0, |a| a.len() as f32);
        Ok(Some(vec![self.scale * track.title.len() as f32, self.scale * track.tags.len() as f32, n]))
    }
}

encore_sdk::export_extractor!(Picky);
