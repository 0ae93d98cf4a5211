//! Audio input for extractors: a track's clip is `<dir>/<track_id>.{wav,flac,mp3,ogg}` (with `:`
//! written `_`, as `encore data synth` names its clips). The host decodes it with symphonia, mixes
//! it down to mono f32 (the mean of the channels), optionally keeps only the first seconds, and
//! resamples it with rubato's FFT resampler to the rate the plugin's spec asks for.
use std::fs::File;
use std::path::{Path, PathBuf};
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// The extensions looked for, in this order.
pub const EXTENSIONS: [&str; 4] = ["wav", "flac", "mp3", "ogg"];

/// Identifies the decoding and resampling, so a change of method invalidates cached features.
pub const METHOD: &str = "symphonia-0.5/mono-mean/rubato-0.16-fft";

/// Why a clip gave no PCM. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The container or codec is not recognised, or a packet does not decode.
    #[error("{path}: cannot decode: {message}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// symphonia's message.
        message: String,
    },
    /// The file decodes to no samples.
    #[error("{path}: no audio samples")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// Resampling failed (an invalid rate).
    #[error("{path}: resampling {from} Hz to {to} Hz: {message}")]
    Resample {
        /// The file.
        path: PathBuf,
        /// Source rate.
        from: u32,
        /// Target rate.
        to: u32,
        /// rubato's message.
        message: String,
    },
}

/// Decoded mono PCM.
#[derive(Debug, Clone, PartialEq)]
pub struct Pcm {
    /// Samples, mono.
    pub samples: Vec<f32>,
    /// Their rate in Hz.
    pub rate: u32,
}

/// The clip of `track_id` in `dir`, if one of [`EXTENSIONS`] exists.
pub fn find_clip(dir: &Path, track_id: &str) -> Option<PathBuf> {
    let stem = track_id.replace([':', '/', '\\'], "_");
    EXTENSIONS.iter().map(|e| dir.join(format!("{stem}.{e}"))).find(|p| p.is_file())
}

/// Decodes `path` to mono f32, keeping at most `max_seconds` (from the start) when given.
pub fn decode(path: &Path, max_seconds: Option<f32>) -> Result<Pcm, AudioError> {
    let dec_err = |message: String| AudioError::Decode { path: path.to_path_buf(), message };
    let file = File::open(path).map_err(|source| AudioError::Io { path: path.to_path_buf(), source })?;
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let probed = symphonia::default::get_probe()
        .format(&hint, mss, &FormatOptions::default(), &MetadataOptions::default())
        .map_err(|e| dec_err(format!("unrecognised container: {e}")))?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| dec_err("no audio track".into()))?;
    let track_id = track.id;
    let mut rate = track.codec_params.sample_rate;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| dec_err(format!("unsupported codec: {e}")))?;
    let mut samples: Vec<f32> = Vec::new();
    let mut buf: Option<SampleBuffer<f32>> = None;
    let (mut packets, mut bad_packets, mut first_error) = (0usize, 0usize, None);
    let limit = |rate: Option<u32>| max_seconds.zip(rate).map(|(s, r)| (f64::from(s) * f64::from(r)).round() as usize);
    loop {
        if let Some(n) = limit(rate) {
            if samples.len() >= n {
                break;
            }
        }
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(dec_err(format!("reading a packet: {e}"))),
        };
        if packet.track_id() != track_id {
            continue;
        }
        packets += 1;
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            // A damaged packet is skipped, as players do; many of them make the file corrupt.
            Err(SymError::DecodeError(e)) => {
                bad_packets += 1;
                first_error.get_or_insert_with(|| format!("packet at {}: {e}", packet.ts()));
                continue;
            }
            Err(e) => return Err(dec_err(format!("decoding the packet at {}: {e}", packet.ts()))),
        };
        let spec = *decoded.spec();
        rate = Some(spec.rate);
        let channels = spec.channels.count().max(1);
        if buf.as_ref().is_none_or(|b| b.capacity() < decoded.capacity() * channels) {
            buf = Some(SampleBuffer::new(decoded.capacity() as u64, spec));
        }
        let b = buf.as_mut().expect("allocated above");
        b.copy_interleaved_ref(decoded);
        let inv = 1.0 / channels as f32;
        samples.extend(b.samples().chunks_exact(channels).map(|f| f.iter().sum::<f32>() * inv));
    }
    if bad_packets > 0 && bad_packets * 10 > packets {
        return Err(dec_err(format!("{bad_packets} of {packets} packets do not decode (first: {})", first_error.unwrap_or_default())));
    }
    if let Some(n) = limit(rate) {
        samples.truncate(n);
    }
    let rate = rate.ok_or_else(|| dec_err("no sample rate".into()))?;
    if samples.is_empty() {
        return Err(AudioError::Empty { path: path.to_path_buf() });
    }
    if let Some(x) = samples.iter().find(|x| !x.is_finite()) {
        return Err(dec_err(format!("non-finite sample {x}")));
    }
    Ok(Pcm { samples, rate })
}

/// Resamples mono PCM from `from` Hz to `to` Hz with rubato's synchronous FFT resampler (its
/// anti-aliasing filter included); the output has `round(len · to / from)` samples, aligned with
/// the input (the resampler's delay removed).
pub fn resample(x: &[f32], from: u32, to: u32) -> Result<Vec<f32>, String> {
    use rubato::{FftFixedIn, Resampler};
    if from == to {
        return Ok(x.to_vec());
    }
    let expected = ((x.len() as u64 * u64::from(to) + u64::from(from) / 2) / u64::from(from)) as usize;
    let mut r = FftFixedIn::<f32>::new(from as usize, to as usize, 1024, 2, 1).map_err(|e| e.to_string())?;
    let delay = r.output_delay();
    let mut out: Vec<f32> = Vec::with_capacity(expected + delay + 4096);
    let mut pos = 0;
    while pos + r.input_frames_next() <= x.len() {
        let n = r.input_frames_next();
        let o = r.process(&[&x[pos..pos + n]], None).map_err(|e| e.to_string())?;
        out.extend_from_slice(&o[0]);
        pos += n;
    }
    if pos < x.len() {
        let o = r.process_partial(Some(&[&x[pos..]]), None).map_err(|e| e.to_string())?;
        out.extend_from_slice(&o[0]);
    }
    while out.len() < delay + expected {
        let o = r.process_partial::<&[f32]>(None, None).map_err(|e| e.to_string())?;
        if o[0].is_empty() {
            break;
        }
        out.extend_from_slice(&o[0]);
    }
    out.drain(..delay.min(out.len()));
    out.truncate(expected);
    Ok(out)
}

/// Decodes `path`, keeps at most `max_seconds`, and resamples to `rate`.
pub fn load(path: &Path, rate: u32, max_seconds: Option<f32>) -> Result<Vec<f32>, AudioError> {
    let pcm = decode(path, max_seconds)?;
    resample(&pcm.samples, pcm.rate, rate).map_err(|message| AudioError::Resample { path: path.to_path_buf(), from: pcm.rate, to: rate, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resampling_keeps_the_length_and_the_frequency() {
        let from = 16_000;
        let x: Vec<f32> = (0..from).map(|n| (std::f64::consts::TAU * 440.0 * n as f64 / from as f64).sin() as f32).collect();
        let y = resample(&x, from, 22_050).unwrap();
        assert_eq!(y.len(), 22_050);
        // Upward zero crossings over the middle second-ish: 440 per second.
        let mid = &y[2000..20_050];
        let ups = mid.windows(2).filter(|w| w[0] < 0.0 && w[1] >= 0.0).count() as f64;
        let hz = ups / (mid.len() as f64 / 22_050.0);
        assert!((hz - 440.0).abs() < 2.0, "{hz}");
        // Aligned: sample n of the output is the input at time n / 22050.
        for n in [5000usize, 11_025, 17_000] {
            let want = (std::f64::consts::TAU * 440.0 * n as f64 / 22_050.0).sin() as f32;
            assert!((y[n] - want).abs() < 0.02, "sample {n}: {} vs {want}", y[n]);
        }
        assert_eq!(resample(&x, from, from).unwrap(), x);
    }
}
