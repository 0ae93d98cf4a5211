//! Hand-crafted audio features from mono PCM at 22050 Hz (the host decodes and resamples).
//!
//! STFT: 2048-sample periodic Hann frames, hop 512, centred with zero padding (librosa's
//! defaults). With `n` = `n_mfcc` (default 20) the vector has `4n + 19` entries (99 by default):
//!
//! | indices            | what                                                              |
//! | ------------------ | ----------------------------------------------------------------- |
//! | `0..n`             | MFCC means over frames (librosa.feature.mfcc defaults)            |
//! | `n..2n`            | MFCC standard deviations                                          |
//! | `2n..3n`           | means of the MFCC deltas (librosa.feature.delta, width 9)         |
//! | `3n..4n`           | standard deviations of the deltas                                 |
//! | `4n..4n+12`        | chroma, mean over frames, C = `4n` … B = `4n+11`, each frame max-normalised |
//! | `4n+12`, `4n+13`   | spectral centroid (Hz): mean, std                                 |
//! | `4n+14`, `4n+15`   | spectral rolloff (Hz, `roll_percent` of the magnitude): mean, std |
//! | `4n+16`, `4n+17`   | spectral flux (L2 norm of the positive magnitude rise): mean, std |
//! | `4n+18`            | tempo in BPM (30–240; 0 when the onset envelope is flat)          |
//!
//! MFCCs: power spectrogram → `n_mels` Slaney mel bands (Slaney-normalised) → dB (ref 1, amin
//! 1e-10, top_db 80) → orthonormal DCT-II. Parameters: `n_mfcc` (1–128, default 20), `n_mels`
//! (default 128, at least `n_mfcc`), `roll_percent` (default 0.85), `start_bpm` (the centre of
//! the tempo prior, default 120). Missing audio, a clip shorter than one frame (2048 samples) or
//! a non-finite sample makes the track missing, never zero-filled. See docs/audio-dsp.md.
pub mod dsp;

use dsp::{Analyzer, Config};
use encore_sdk::extractor::{Extractor, Spec, Track};
use encore_sdk::{Error, Params};

/// The sample rate the plugin asks the host for.
pub const SAMPLE_RATE: u32 = 22050;

struct AudioDsp {
    analyzer: Analyzer,
}

impl Extractor for AudioDsp {
    fn configure(params: &Params) -> Result<(Self, Spec), Error> {
        params.only(&["n_mfcc", "n_mels", "roll_percent", "start_bpm"])?;
        let n_mfcc = params.u32_or("n_mfcc", 20)? as usize;
        let n_mels = params.u32_or("n_mels", 128)? as usize;
        let roll_percent = params.f64_or("roll_percent", 0.85)?;
        let start_bpm = params.f64_or("start_bpm", 120.0)?;
        if !(1..=128).contains(&n_mfcc) {
            return Err(Error::invalid(format!("n_mfcc must be in 1..=128, got {n_mfcc}")));
        }
        if !(n_mfcc..=256).contains(&n_mels) {
            return Err(Error::invalid(format!("n_mels must be in n_mfcc..=256 ({n_mfcc}..=256), got {n_mels}")));
        }
        if !(roll_percent > 0.0 && roll_percent < 1.0) {
            return Err(Error::invalid(format!("roll_percent must be in (0, 1), got {roll_percent}")));
        }
        if !(30.0..=240.0).contains(&start_bpm) {
            return Err(Error::invalid(format!("start_bpm must be in 30..=240, got {start_bpm}")));
        }
        let cfg = Config { sample_rate: SAMPLE_RATE, n_mfcc, n_mels, roll_percent, start_bpm };
        let spec = Spec { name: "audio-dsp".into(), dim: 4 * n_mfcc as u32 + 19, wants_audio: Some(SAMPLE_RATE) };
        Ok((AudioDsp { analyzer: Analyzer::new(cfg) }, spec))
    }

    fn extract(&mut self, track: &Track, audio: Option<&[f32]>) -> Result<Option<Vec<f32>>, Error> {
        let Some(y) = audio else { return Ok(None) };
        let Some(f) = self.analyzer.analyze(y) else {
            encore_sdk::log::warn(&format!("track {}: audio shorter than {} samples or not finite, recorded as missing", track.track_id, dsp::N_FFT));
            return Ok(None);
        };
        let mut out: Vec<f64> = [f.mfcc_mean, f.mfcc_std, f.delta_mean, f.delta_std].concat();
        out.extend(f.chroma);
        out.extend([f.centroid.0, f.centroid.1, f.rolloff.0, f.rolloff.1, f.flux.0, f.flux.1, f.tempo]);
        Ok(Some(out.into_iter().map(|v| v as f32).collect()))
    }
}

encore_sdk::export_extractor!(AudioDsp);
