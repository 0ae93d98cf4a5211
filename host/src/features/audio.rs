//! Audio input for extractors: a track's clip is `<dir>/<track_id>.{wav,flac,mp3,ogg}` (with `:`
//! written `_`, as `encore data synth` names its clips). The host decodes it with symphonia, mixes
//! it down to mono f32 (the mean of the channels), keeps only the first seconds, and resamples it
//! with rubato's FFT resampler to the rate the plugin's spec asks for.
//!
//! Clips are untrusted input. Their headers are checked before anything is sized from them
//! ([`CLIP_RATES`], [`MAX_CHANNELS`]); the decoded samples never grow past the cap of
//! `max_seconds`; samples that are not finite or far beyond full scale make the clip unusable; and
//! a panic inside the decoder or the resampler is caught and reported as this clip's error, so one
//! hostile file costs one missing track, never the run.
use crate::unwind::contain;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::RangeInclusive;
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

/// Sample rates accepted, for clips and for the rate a plugin asks for. The resampler works in
/// chunks of 1024 input frames, so a clip at a few Hz would make one chunk minutes long at the
/// output rate (a 1 Hz clip resampled to 22050 Hz: 90 MB per chunk from an 8 KB file); rubato
/// sizes its FFTs from the rates, so 0xFFFFFFFF Hz asked for 23 GB. Real audio lies well inside.
pub const CLIP_RATES: RangeInclusive<u32> = 1_000..=768_000;

/// Most channels a clip may declare (symphonia's channel masks stop at 32 as well).
pub const MAX_CHANNELS: usize = 32;

/// The clip cap when none is configured: the first 10 minutes. With the cap, a clip's decoded
/// PCM is at most `max_seconds · rate · 4` bytes whatever its header declares.
pub const DEFAULT_MAX_SECONDS: f32 = 600.0;

/// The largest `max_seconds` accepted: one day.
pub const MAX_SECONDS_LIMIT: f32 = 86_400.0;

/// Samples louder than this (60 dB over full scale) are not audio but garbage, e.g. a float WAV
/// written in integer scale or filled with 3e38; they would overflow the resampler's FFT to
/// infinities. Decoders of integer formats never exceed 1.
pub const MAX_ABS_SAMPLE: f32 = 1_000.0;

/// Why a clip gave no PCM. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// The file could not be read.
    // The OS error is in the message and deliberately not a `#[source]`: the message becomes a
    // track's stored reason on its own, and a source would print the OS error twice in a chain.
    #[error("{path}: cannot read: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        error: std::io::Error,
    },
    /// The header declares something no real clip has (a sample rate of 0, 4 billion Hz, 200
    /// channels); nothing is decoded or allocated from it.
    #[error("{path}: refused before decoding: {message}")]
    Header {
        /// The file.
        path: PathBuf,
        /// What is out of range, and the range.
        message: String,
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
    /// The decoder or the resampler panicked on this file (a bug they have with hostile input);
    /// the panic was contained to this clip.
    #[error("{path}: the decoder panicked on this file (it is corrupt or hostile; re-encode it to use it): {message}")]
    Panic {
        /// The file.
        path: PathBuf,
        /// The panic's message and where it happened.
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

/// Most frames a packet may declare. Decoders size their buffers from it (FLAC's largest block
/// is 65535 frames, ADPCM WAV's about 131000); with [`MAX_CHANNELS`] and 8-byte samples this
/// bounds a packet's buffers to 32 MiB.
const MAX_FRAMES_PER_PACKET: u64 = 1 << 17;

/// The clip cap in force: `max_seconds`, or [`DEFAULT_MAX_SECONDS`] when none is configured.
pub fn cap_seconds(max_seconds: Option<f32>) -> f32 {
    max_seconds.unwrap_or(DEFAULT_MAX_SECONDS)
}

/// Checks a configured clip cap: positive, finite, at most [`MAX_SECONDS_LIMIT`].
pub fn check_max_seconds(s: f32) -> Result<(), String> {
    if s.is_finite() && s > 0.0 && s <= MAX_SECONDS_LIMIT {
        Ok(())
    } else {
        Err(format!("must be positive and at most {MAX_SECONDS_LIMIT} seconds (one day), got {s}"))
    }
}

fn check_rate(what: &str, rate: u32) -> Result<(), String> {
    if CLIP_RATES.contains(&rate) {
        Ok(())
    } else {
        Err(format!("{what} sample rate {rate} Hz is outside {}..={} Hz", CLIP_RATES.start(), CLIP_RATES.end()))
    }
}

fn check_channels(n: usize) -> Result<(), String> {
    if (1..=MAX_CHANNELS).contains(&n) {
        Ok(())
    } else {
        Err(format!("{n} channels (1 to {MAX_CHANNELS} are accepted)"))
    }
}

/// Checks what symphonia would read from the clip's header before it does. Its probe takes the
/// first container marker anywhere in the first MiB (so a RIFF header after junk escaped the
/// checks below), and its metadata readers allocate whatever a header declares (a LIST/INFO chunk
/// or a FLAC picture of 4 GB, in a 2 KB file). So a clip must start with its container: RIFF,
/// `fLaC`, `OggS`, an ID3v2 tag or an MPEG audio frame; a RIFF/WAVE or FLAC header must fit in
/// the file. Ogg and ID3v2 metadata are left to symphonia.
fn check_header(path: &Path, file: &mut File) -> Result<(), AudioError> {
    let io_err = |error: std::io::Error| AudioError::Io { path: path.to_path_buf(), error };
    let header_err = |message: String| AudioError::Header { path: path.to_path_buf(), message };
    let size = file.metadata().map_err(io_err)?.len();
    let mut magic = [0u8; 4];
    let n = crate::io::read_up_to(file, &mut magic).map_err(io_err)?;
    match &magic[..n] {
        b"RIFF" => check_wav_header(file, size).map_err(header_err),
        b"fLaC" => check_flac_header(file, size).map_err(header_err),
        b"OggS" => Ok(()),
        [b'I', b'D', b'3', ..] => Ok(()),
        [0xff, b, ..] if b & 0xe0 == 0xe0 => Ok(()),
        m => Err(AudioError::Decode {
            path: path.to_path_buf(),
            message: format!("unrecognised container: not a WAV, FLAC, MP3 or Ogg file (it starts with {m:02x?})"),
        }),
    }
}

/// Reads the chunks of a RIFF/WAVE file up to `data` (after its first 4 bytes) and refuses what
/// symphonia cannot take safely: a chunk past the end of the file (it would allocate a LIST's
/// INFO entries at their declared size); a `fmt ` with a rate of 0 (symphonia panics while
/// probing, before any check of its own), or a block size symphonia would read 1152 frames of per
/// packet. Like symphonia, it walks every chunk up to `data` (a second `fmt ` replaces the
/// first). Anything else (not WAVE, a short chunk) is left to symphonia.
fn check_wav_header(file: &mut File, size: u64) -> Result<(), String> {
    let mut riff = [0u8; 8];
    if file.read_exact(&mut riff).is_err() || &riff[4..] != b"WAVE" {
        return Ok(());
    }
    let mut at = 12u64;
    // Bounded: a hostile file may chain many tiny chunks.
    for _ in 0..1024 {
        let mut head = [0u8; 8];
        if file.read_exact(&mut head).is_err() || &head[..4] == b"data" {
            break;
        }
        let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        at += 8;
        if at + u64::from(len) > size {
            let tag = String::from_utf8_lossy(&head[..4]);
            return Err(format!("chunk {tag:?} at byte {} declares {len} bytes, past the end of the {size}-byte file", at - 8));
        }
        let mut skip = i64::from(len) + i64::from(len & 1);
        at += skip as u64;
        if &head[..4] == b"fmt " && len >= 16 {
            let mut f = [0u8; 16];
            if file.read_exact(&mut f).is_err() {
                break;
            }
            skip -= 16;
            let u16_at = |i: usize| u16::from_le_bytes([f[i], f[i + 1]]);
            let (tag, channels, block_align) = (u16_at(0), u16_at(2), u16_at(12));
            check_rate("declared", u32::from_le_bytes([f[4], f[5], f[6], f[7]]))?;
            check_channels(usize::from(channels))?;
            // symphonia computes ADPCM frames per block as block_align - k·channels, in u16.
            let (min_align, max_align) = match tag {
                0x0002 => (7 * channels + 1, u16::MAX),
                0x0011 => (4 * channels + 1, u16::MAX),
                // PCM, float, A-law, µ-law, extensible: one frame is at most 8 bytes per channel.
                _ => (1, 8 * channels),
            };
            if !(min_align..=max_align).contains(&block_align) {
                return Err(format!("block align {block_align} bytes for {channels} channels in format {tag:#06x} (expected {min_align}..={max_align})"));
            }
        }
        if file.seek(SeekFrom::Current(skip)).is_err() {
            break;
        }
    }
    Ok(())
}

/// Reads the metadata blocks of a FLAC file (after `fLaC`): each must fit in the file, and the
/// lengths inside a picture or a Vorbis comment block must fit in the block, since symphonia
/// allocates them as declared before reading.
fn check_flac_header(file: &mut File, size: u64) -> Result<(), String> {
    let mut at = 4u64;
    for _ in 0..1024 {
        let mut head = [0u8; 4];
        if file.read_exact(&mut head).is_err() {
            break;
        }
        let (last, kind, len) = (head[0] & 0x80 != 0, head[0] & 0x7f, u64::from(u32::from_be_bytes([0, head[1], head[2], head[3]])));
        at += 4;
        if at + len > size {
            return Err(format!("FLAC metadata block {kind} at byte {} declares {len} bytes, past the end of the {size}-byte file", at - 4));
        }
        if kind == 4 || kind == 6 {
            // At most 16 MiB, and within the file.
            let mut block = vec![0u8; len as usize];
            file.read_exact(&mut block).map_err(|e| format!("cannot read: {e}"))?;
            flac_block_lengths(kind, &block).map_err(|what| format!("FLAC metadata block {kind} at byte {}: {what}", at - 4))?;
        } else if file.seek(SeekFrom::Current(len as i64)).is_err() {
            break;
        }
        at += len;
        if last {
            break;
        }
    }
    Ok(())
}

/// Checks the length fields of a picture (6) or Vorbis comment (4) block against the block.
fn flac_block_lengths(kind: u8, block: &[u8]) -> Result<(), String> {
    let mut rest = block;
    if kind == 6 {
        // Picture type, media type, description, 4 fixed fields, data; big-endian.
        rest = rest.get(4..).unwrap_or_default();
        let _ = skip_field(&mut rest, "the media type", true, 0)?
            && skip_field(&mut rest, "the description", true, 16)?
            && skip_field(&mut rest, "the picture data", true, 0)?;
    } else if skip_field(&mut rest, "the vendor string", false, 0)? {
        // Vendor string, comment count, comments; little-endian.
        if let Some((count, r)) = rest.split_first_chunk::<4>() {
            rest = r;
            for _ in 0..u32::from_le_bytes(*count) {
                if !skip_field(&mut rest, "a comment", false, 0)? {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// Reads a 32-bit length from `rest` and skips that many bytes, then `then` more; `false` at the
/// end of the block, an error when the length runs past it.
fn skip_field(rest: &mut &[u8], what: &str, big: bool, then: usize) -> Result<bool, String> {
    let Some((b, r)) = rest.split_first_chunk::<4>() else { return Ok(false) };
    let n = if big { u32::from_be_bytes(*b) } else { u32::from_le_bytes(*b) };
    if n as usize > r.len() {
        return Err(format!("{what} declares {n} bytes, {} are left in the block", r.len()));
    }
    *rest = r.get(n as usize + then..).unwrap_or_default();
    Ok(true)
}

/// Decodes `path` to mono f32, keeping at most the first `max_seconds` ([`DEFAULT_MAX_SECONDS`]
/// when `None`). A panic inside symphonia is returned as [`AudioError::Panic`].
pub fn decode(path: &Path, max_seconds: Option<f32>) -> Result<Pcm, AudioError> {
    contain(|| decode_unguarded(path, cap_seconds(max_seconds))).unwrap_or_else(|message| Err(AudioError::Panic { path: path.to_path_buf(), message }))
}

fn decode_unguarded(path: &Path, max_seconds: f32) -> Result<Pcm, AudioError> {
    let io_err = |error: std::io::Error| AudioError::Io { path: path.to_path_buf(), error };
    let mut file = File::open(path).map_err(io_err)?;
    check_header(path, &mut file)?;
    file.rewind().map_err(io_err)?;
    decode_stream(path, file, max_seconds)
}

/// Decodes an open clip with symphonia, checking what its demuxer reports before decoding.
fn decode_stream(path: &Path, file: File, max_seconds: f32) -> Result<Pcm, AudioError> {
    let dec_err = |message: String| AudioError::Decode { path: path.to_path_buf(), message };
    let header_err = |message: String| AudioError::Header { path: path.to_path_buf(), message };
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let probed = symphonia::default::get_probe()
        .format(&hint, mss, &FormatOptions::default(), &MetadataOptions::default())
        .map_err(|e| dec_err(format!("unrecognised container: {e}")))?;
    let mut format = probed.format;
    let track = format.tracks().iter().find(|t| t.codec_params.codec != CODEC_TYPE_NULL).ok_or_else(|| dec_err("no audio track".into()))?;
    let track_id = track.id;
    // Every container's header, checked before the decoder sizes its buffers from it.
    let params = &track.codec_params;
    if let Some(r) = params.sample_rate {
        check_rate("declared", r).map_err(header_err)?;
    }
    if let Some(c) = params.channels {
        check_channels(c.count()).map_err(header_err)?;
    }
    if let Some(n) = params.max_frames_per_packet.filter(|&n| n > MAX_FRAMES_PER_PACKET) {
        return Err(header_err(format!("{n} frames per packet (at most {MAX_FRAMES_PER_PACKET} are accepted)")));
    }
    let mut rate = params.sample_rate;
    let mut decoder = symphonia::default::get_codecs().make(params, &DecoderOptions::default()).map_err(|e| dec_err(format!("unsupported codec: {e}")))?;
    let mut samples: Vec<f32> = Vec::new();
    let mut buf: Option<SampleBuffer<f32>> = None;
    let (mut packets, mut bad_packets, mut first_error) = (0usize, 0usize, None);
    let cap = |rate: u32| (f64::from(max_seconds) * f64::from(rate)).round() as usize;
    loop {
        if rate.is_some_and(|r| samples.len() >= cap(r)) {
            break;
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
        // A stream may change its rate or layout mid-way (MP3 does); each packet is checked.
        check_rate("packet", spec.rate).map_err(|m| dec_err(format!("the packet at {}: {m}", packet.ts())))?;
        check_channels(spec.channels.count()).map_err(|m| dec_err(format!("the packet at {}: {m}", packet.ts())))?;
        rate = Some(spec.rate);
        let channels = spec.channels.count();
        if buf.as_ref().is_none_or(|b| b.capacity() < decoded.capacity() * channels) {
            buf = Some(SampleBuffer::new(decoded.capacity() as u64, spec));
        }
        let b = buf.as_mut().expect("allocated above");
        b.copy_interleaved_ref(decoded);
        let frames = (b.samples().len() / channels).min(cap(spec.rate).saturating_sub(samples.len()));
        if samples.capacity() < samples.len() + frames {
            // Doubling as `extend` would, but never past the cap: whatever the header declares,
            // the clip's PCM stays within `max_seconds · rate` samples.
            let want = (2 * samples.capacity()).clamp(samples.len() + frames, cap(spec.rate));
            samples.reserve_exact(want - samples.len());
        }
        let inv = 1.0 / channels as f32;
        samples.extend(b.samples().chunks_exact(channels).take(frames).map(|f| f.iter().sum::<f32>() * inv));
    }
    if bad_packets > 0 && bad_packets * 10 > packets {
        return Err(dec_err(format!("{bad_packets} of {packets} packets do not decode (first: {})", first_error.unwrap_or_default())));
    }
    let rate = rate.ok_or_else(|| dec_err("no sample rate".into()))?;
    if samples.is_empty() {
        return Err(AudioError::Empty { path: path.to_path_buf() });
    }
    if let Some((i, x)) = samples.iter().enumerate().find(|(_, x)| !(x.abs() <= MAX_ABS_SAMPLE)) {
        let at = i as f64 / f64::from(rate);
        return Err(dec_err(format!(
            "sample {x:e} at {at:.3} s is not finite or beyond ±{MAX_ABS_SAMPLE} (audio lies within ±1): the file is not usable audio"
        )));
    }
    Ok(Pcm { samples, rate })
}

/// Resamples mono PCM from `from` Hz to `to` Hz with rubato's synchronous FFT resampler (its
/// anti-aliasing filter included); the output has `round(len · to / from)` samples, aligned with
/// the input (the resampler's delay removed). Both rates must lie in [`CLIP_RATES`] (rubato sizes
/// its FFTs from them) and every sample within ±[`MAX_ABS_SAMPLE`].
pub fn resample(x: &[f32], from: u32, to: u32) -> Result<Vec<f32>, String> {
    use rubato::{FftFixedIn, Resampler};
    check_rate("input", from)?;
    check_rate("output", to)?;
    // Beyond this the FFT overflows to infinities, and rubato unwraps the error that follows.
    if let Some(v) = x.iter().find(|v| !(v.abs() <= MAX_ABS_SAMPLE)) {
        return Err(format!("sample {v:e} is not finite or beyond ±{MAX_ABS_SAMPLE}"));
    }
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

/// Decodes `path`, keeps at most `max_seconds` ([`DEFAULT_MAX_SECONDS`] when `None`), and
/// resamples to `rate`. Never panics: a panic in symphonia or rubato is this clip's
/// [`AudioError::Panic`].
pub fn load(path: &Path, rate: u32, max_seconds: Option<f32>) -> Result<Vec<f32>, AudioError> {
    let run = || {
        let pcm = decode_unguarded(path, cap_seconds(max_seconds))?;
        if pcm.rate == rate {
            return Ok(pcm.samples);
        }
        resample(&pcm.samples, pcm.rate, rate).map_err(|message| AudioError::Resample { path: path.to_path_buf(), from: pcm.rate, to: rate, message })
    };
    contain(run).unwrap_or_else(|message| Err(AudioError::Panic { path: path.to_path_buf(), message }))
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

    #[test]
    fn a_panic_in_symphonia_is_contained_with_its_message_and_place() {
        // A WAV with a sample rate of 0, past the host's own header check: symphonia's probe
        // panics ("TimeBase cannot have 0 numerator or denominator").
        let mut v = b"RIFF\x28\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00".to_vec();
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&[2, 0, 16, 0]);
        v.extend_from_slice(b"data\x04\x00\x00\x00\x00\x00\x00\x00");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("zero.wav");
        std::fs::write(&p, &v).unwrap();
        let e = contain(|| decode_stream(&p, File::open(&p).unwrap(), 1.0)).expect_err("symphonia panics on this file");
        assert!(e.contains("TimeBase") && e.contains("units.rs"), "{e}");
        // The thread is usable afterwards, and a later panic is contained again.
        assert_eq!(contain(|| 7), Ok(7));
        assert!(contain(|| panic!("second")).unwrap_err().starts_with("second (at "));
    }
}
