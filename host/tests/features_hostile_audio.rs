//! Hostile clips, written byte by byte: a sample rate of 0 (symphonia panicked), 4 billion Hz
//! (rubato asked for 23 GB), 3e38 float samples (rubato panicked), absurd channel counts and
//! block sizes. Each is refused or contained as that clip's error with a reason naming the file,
//! and an extraction over them goes on with the other tracks.
mod common;

use encore::data::ingest::Track as LogTrack;
use encore::data::sessions::{Dataset, Item, Sessions};
use encore::features::audio::{self, AudioError};
use encore::features::store::{self, Status};
use std::path::{Path, PathBuf};

const PCM: u16 = 1;
const FLOAT: u16 = 3;

/// A RIFF/WAVE file: a 16-byte `fmt ` chunk, then `data` declaring `data_len` bytes (`u32::MAX`
/// with a RIFF length of `u32::MAX` is how streaming encoders write "unknown").
fn wav_raw(tag: u16, channels: u16, rate: u32, block_align: u16, bits: u16, data_len: u32, data: &[u8]) -> Vec<u8> {
    let riff_len = if data_len == u32::MAX { u32::MAX } else { 36 + data_len };
    let mut v = Vec::new();
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&riff_len.to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&tag.to_le_bytes());
    v.extend_from_slice(&channels.to_le_bytes());
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&rate.wrapping_mul(u32::from(block_align)).to_le_bytes());
    v.extend_from_slice(&block_align.to_le_bytes());
    v.extend_from_slice(&bits.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&data_len.to_le_bytes());
    v.extend_from_slice(data);
    v
}

fn wav(tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
    wav_raw(tag, channels, rate, channels * bits / 8, bits, data.len() as u32, data)
}

/// `seconds` of a 440 Hz sine at half scale, 16-bit mono.
fn sine16(rate: u32, seconds: f64) -> Vec<u8> {
    let n = (f64::from(rate) * seconds) as usize;
    (0..n).flat_map(|i| ((0.5 * (std::f64::consts::TAU * 440.0 * i as f64 / f64::from(rate)).sin() * 32767.0) as i16).to_le_bytes()).collect()
}

fn floats(x: &[f32]) -> Vec<u8> {
    x.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn a_sample_rate_of_0_is_refused_before_symphonia_sees_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "zero.wav", &wav(PCM, 1, 0, 16, &sine16(16_000, 0.1)));
    let e = audio::decode(&p, None).unwrap_err();
    assert!(matches!(e, AudioError::Header { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("zero.wav") && msg.contains("sample rate 0 Hz") && msg.contains("1000..=768000"), "{msg}");
    assert!(audio::load(&p, 22_050, None).is_err());
}

#[test]
fn a_rate_of_4_billion_hz_is_refused_before_anything_is_sized_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = vec![0u8; 8 * 1024];
    let p = write(dir.path(), "huge-rate.wav", &wav(PCM, 1, u32::MAX, 16, &data));
    let t = std::time::Instant::now();
    let e = audio::load(&p, 22_050, None).unwrap_err();
    assert!(matches!(e, AudioError::Header { .. }) && e.to_string().contains("4294967295 Hz"), "{e}");
    assert!(t.elapsed().as_secs_f64() < 1.0, "refused at once, not after allocating: {:?}", t.elapsed());
    // The resampler itself refuses such rates too (it sized its FFTs from them).
    assert!(audio::resample(&[0.0; 16], u32::MAX, 22_050).unwrap_err().contains("4294967295 Hz"));
    assert!(audio::resample(&[0.0; 16], 16_000, 0).unwrap_err().contains("0 Hz"));
}

#[test]
fn huge_or_non_finite_float_samples_make_the_clip_unusable_instead_of_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bad) in [("big.wav", 3e38f32), ("inf.wav", f32::INFINITY), ("nan.wav", f32::NAN), ("int-scale.wav", 32767.0)] {
        let mut x: Vec<f32> = (0..16_000).map(|i| (i as f32 * 0.1).sin() * 0.5).collect();
        x[8000] = bad;
        let p = write(dir.path(), name, &wav(FLOAT, 1, 16_000, 32, &floats(&x)));
        // Resampled (rubato panicked on 3e38) and not (same rate).
        for rate in [22_050, 16_000] {
            let e = audio::load(&p, rate, None).unwrap_err();
            assert!(matches!(e, AudioError::Decode { .. }), "{name} at {rate} Hz: {e:?}");
            let msg = e.to_string();
            assert!(msg.contains(name) && msg.contains("at 0.500 s") && msg.contains("not usable audio"), "{msg}");
        }
    }
    // A clip full of ±3e38: its FFT overflowed, and rubato unwrapped the error ("Imaginary part
    // of first value was non-zero") on the decoding thread, which took the run down.
    let x: Vec<f32> = (0..16_000).map(|i| if i % 2 == 0 { 3e38 } else { -3e38 }).collect();
    let p = write(dir.path(), "all-big.wav", &wav(FLOAT, 1, 16_000, 32, &floats(&x)));
    let e = audio::load(&p, 22_050, None).unwrap_err();
    assert!(matches!(e, AudioError::Decode { .. }) && e.to_string().contains("sample 3e38 at 0.000 s"), "{e}");
    // resample() on its own refuses such samples too.
    assert!(audio::resample(&x, 16_000, 22_050).unwrap_err().contains("sample 3e38"));
    // A float clip a little over full scale is audio: kept as it is, not clamped.
    let mut x: Vec<f32> = (0..16_000).map(|i| (i as f32 * 0.1).sin() * 0.5).collect();
    x[100] = 1.5;
    let p = write(dir.path(), "hot.wav", &wav(FLOAT, 1, 16_000, 32, &floats(&x)));
    assert_eq!(audio::decode(&p, None).unwrap().samples[100], 1.5);
    assert_eq!(audio::load(&p, 22_050, None).unwrap().len(), 22_050);
}

#[test]
fn absurd_channel_counts_and_block_sizes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = vec![0u8; 4096];
    let cases = [
        ("no-channels.wav", wav_raw(PCM, 0, 16_000, 2, 16, 4096, &data), "0 channels"),
        ("200-channels.wav", wav_raw(PCM, 200, 16_000, 400, 16, 4096, &data), "200 channels"),
        // 1152 frames of 65535 bytes: symphonia would read 75 MB per packet.
        ("fat-frames.wav", wav_raw(PCM, 1, 16_000, 65_535, 16, 4096, &data), "block align 65535"),
        ("zero-align.wav", wav_raw(PCM, 2, 16_000, 0, 16, 4096, &data), "block align 0"),
        // MS ADPCM: block_align - 7·channels underflowed in symphonia's u16 arithmetic.
        ("adpcm.wav", wav_raw(2, 2, 16_000, 3, 4, 4096, &data), "block align 3"),
    ];
    for (name, bytes, want) in cases {
        let p = write(dir.path(), name, &bytes);
        let e = audio::load(&p, 22_050, None).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, AudioError::Header { .. }) && msg.contains(name) && msg.contains(want), "{name}: {msg}");
    }
}

#[test]
fn a_second_fmt_chunk_is_checked_too() {
    // symphonia keeps the last `fmt ` before `data`; a valid first one must not hide a bad second.
    let dir = tempfile::tempdir().unwrap();
    let good = wav(PCM, 1, 16_000, 16, &[]);
    let bad = wav(PCM, 1, 0, 16, &[]);
    let mut bytes = good[..36].to_vec(); // RIFF header and the good fmt chunk
    bytes.extend_from_slice(&bad[12..36]); // the bad fmt chunk
    bytes.extend_from_slice(b"data");
    let pcm = sine16(16_000, 0.1);
    bytes.extend_from_slice(&(pcm.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&pcm);
    let riff_len = (bytes.len() - 8) as u32;
    bytes[4..8].copy_from_slice(&riff_len.to_le_bytes());
    let p = write(dir.path(), "two-fmt.wav", &bytes);
    let e = audio::decode(&p, None).unwrap_err();
    assert!(matches!(e, AudioError::Header { .. }) && e.to_string().contains("sample rate 0 Hz"), "{e}");
}

#[test]
fn the_cap_bounds_what_a_long_or_lying_clip_decodes_to() {
    let dir = tempfile::tempdir().unwrap();
    // A data chunk declaring 4 GB holds one second: one second comes out.
    let p = write(dir.path(), "liar.wav", &wav_raw(PCM, 1, 16_000, 2, 16, u32::MAX, &sine16(16_000, 1.0)));
    assert_eq!(audio::decode(&p, None).unwrap().samples.len(), 16_000);
    // The default cap is 600 s: a 601 s clip gives 600 s.
    let p = write(dir.path(), "long.wav", &wav(PCM, 1, 1_000, 16, &sine16(1_000, 601.0)));
    assert_eq!(audio::DEFAULT_MAX_SECONDS, 600.0);
    assert_eq!(audio::decode(&p, None).unwrap().samples.len(), 600_000);
    assert_eq!(audio::decode(&p, Some(2.0)).unwrap().samples.len(), 2_000);
    assert!(audio::check_max_seconds(0.0).is_err() && audio::check_max_seconds(f32::NAN).is_err() && audio::check_max_seconds(1e9).is_err());
}

#[test]
fn an_unreadable_clip_names_the_os_error_once() {
    let dir = tempfile::tempdir().unwrap();
    let e = audio::decode(&dir.path().join("gone.wav"), None).unwrap_err();
    assert!(matches!(e, AudioError::Io { .. }), "{e:?}");
    // As the binary prints errors: the whole chain, `{:#}`.
    let chain = format!("{:#}", anyhow::Error::new(e));
    assert_eq!(chain.matches("No such file or directory").count(), 1, "{chain}");
    assert!(chain.contains("gone.wav"), "{chain}");
}

/// A prepared dataset of `n` items, `t0`..`t{n-1}`.
fn catalog(dir: &Path, n: usize) -> PathBuf {
    let prep = dir.join("prep");
    let items = (0..n)
        .map(|i| Item { track: LogTrack { id: format!("t{i}"), artist_id: "a".into(), artist: "A".into(), title: "x".into() }, plays: 1, duration_s: None })
        .collect();
    encore::data::schema::write_dataset(&prep, &Dataset { items, sessions: Sessions { offsets: vec![0], ..Sessions::default() }, ..Dataset::default() }, &[])
        .unwrap();
    prep
}

#[test]
fn an_extraction_over_hostile_clips_marks_each_missing_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let prep = catalog(dir.path(), 7);
    let clips = dir.path().join("clips");
    std::fs::create_dir_all(&clips).unwrap();
    let big: Vec<f32> = (0..16_000).map(|i| if i % 2 == 0 { 3e38 } else { -3e38 }).collect();
    let files: [(&str, Vec<u8>); 7] = [
        ("t0.wav", wav(PCM, 1, 16_000, 16, &sine16(16_000, 1.0))),
        ("t1.wav", wav(PCM, 1, 0, 16, &sine16(16_000, 0.5))),
        ("t2.wav", wav(FLOAT, 1, 16_000, 32, &floats(&big))),
        ("t3.wav", wav(PCM, 1, u32::MAX, 16, &vec![0u8; 8 * 1024])),
        ("t4.wav", wav_raw(PCM, 200, 16_000, 400, 16, 4096, &[0u8; 4096])),
        ("t5.wav", wav_raw(2, 2, 16_000, 3, 4, 4096, &[0u8; 4096])),
        ("t6.wav", wav(PCM, 1, 44_100, 16, &sine16(44_100, 0.5))),
    ];
    for (name, bytes) in &files {
        write(&clips, name, bytes);
    }
    let cfg = dir.path().join("f.toml");
    std::fs::write(&cfg, "[features]\nprepared = \"prep\"\naudio = \"clips\"\n\n[[features.extractor]]\nplugin = \"hostile-picky\"\nname = \"picky-audio\"\nparams = { rate = 22050 }\n").unwrap();
    let o = common::encore().args(["features", "extract", "--config", common::s(&cfg), "--quiet"]).output().unwrap();
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{err}");
    assert!(out.contains("2 done, 5 missing, 0 failed"), "{out}\n{err}");
    assert!(!err.contains("panicked"), "no panic reaches stderr: {err}");
    let f = store::read(&prep.join("features/picky-audio.parquet")).unwrap();
    assert_eq!(f.rows[0].vector.as_ref().unwrap()[2], 22_050.0);
    assert_eq!(f.rows[6].vector.as_ref().unwrap()[2], 11_025.0);
    let want = [(1, "sample rate 0 Hz"), (2, "not usable audio"), (3, "4294967295 Hz"), (4, "200 channels"), (5, "block align 3")];
    for (i, why) in want {
        let r = &f.rows[i];
        let reason = r.reason.as_deref().unwrap_or_default();
        assert_eq!(r.status, Status::Missing, "t{i}: {reason}");
        assert!(reason.contains(&format!("t{i}.wav")) && reason.contains(why), "t{i}: {reason}");
    }

    // A plugin asking for an absurd rate is refused before any clip is touched, naming it.
    std::fs::write(
        &cfg,
        "[features]\nprepared = \"prep\"\naudio = \"clips\"\n\n[[features.extractor]]\nplugin = \"hostile-picky\"\nparams = { rate = 4294967295 }\n",
    )
    .unwrap();
    let o = common::encore().args(["features", "extract", "--config", common::s(&cfg), "--quiet"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("`hostile-picky`") && err.contains("asks for audio at 4294967295 Hz"), "{err}");
    // So is a cap beyond a day.
    let o = common::encore()
        .args(["features", "extract", "--data", common::s(&prep), "--audio", common::s(&clips), "--plugin", "hostile-picky", "--max-seconds", "1e9"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--max-seconds"), "{err}");
}
