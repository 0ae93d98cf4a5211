//! Audio input: WAV, FLAC, MP3 and Ogg Vorbis decode to mono f32 (fixtures of
//! tests/fixtures/audio/make.py: one second of a 440 Hz sine at 16 kHz); resampling keeps the
//! frequency; a missing or corrupt clip is recorded as missing with its path, never zero-filled.
mod common;

use encore::data::ingest::Track as LogTrack;
use encore::data::sessions::{Dataset, Item, Sessions};
use encore::features::audio;
use encore::features::store::{self, Status};
use std::path::{Path, PathBuf};

fn fixture(ext: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/audio/sine440.{ext}"))
}

/// Frequency from upward zero crossings over the middle of the signal.
fn frequency(x: &[f32], rate: u32) -> f64 {
    let mid = &x[x.len() / 5..x.len() * 4 / 5];
    let ups: Vec<usize> = mid.windows(2).enumerate().filter(|(_, w)| w[0] < 0.0 && w[1] >= 0.0).map(|(i, _)| i).collect();
    let periods = (ups.len() - 1) as f64;
    periods / ((ups[ups.len() - 1] - ups[0]) as f64 / f64::from(rate))
}

fn peak(x: &[f32]) -> f32 {
    x[x.len() / 5..x.len() * 4 / 5].iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

#[test]
fn every_format_decodes_to_a_mono_440_hz_sine() {
    for ext in audio::EXTENSIONS {
        let pcm = audio::decode(&fixture(ext), None).unwrap_or_else(|e| panic!("{ext}: {e}"));
        assert_eq!(pcm.rate, 16_000, "{ext}");
        // MP3 and Vorbis add encoder delay and padding; the lossless formats are exact.
        let tolerance = if ext == "wav" || ext == "flac" { 0 } else { 2500 };
        assert!(pcm.samples.len().abs_diff(16_000) <= tolerance, "{ext}: {} samples", pcm.samples.len());
        let f = frequency(&pcm.samples, pcm.rate);
        assert!((f - 440.0).abs() < 1.0, "{ext}: {f} Hz");
        // The stereo FLAC's mix-down keeps the amplitude (0.5).
        assert!((peak(&pcm.samples) - 0.5).abs() < 0.03, "{ext}: peak {}", peak(&pcm.samples));
    }
}

#[test]
fn resampling_to_the_plugins_rate_keeps_the_frequency_and_the_duration() {
    for ext in ["wav", "flac"] {
        for rate in [8_000, 22_050, 44_100] {
            let y = audio::load(&fixture(ext), rate, None).unwrap();
            assert_eq!(y.len(), rate as usize, "{ext} at {rate} Hz");
            let f = frequency(&y, rate);
            assert!((f - 440.0).abs() < 1.0, "{ext} at {rate} Hz: {f} Hz");
        }
    }
    // The cap keeps the first seconds.
    assert_eq!(audio::load(&fixture("wav"), 22_050, Some(0.25)).unwrap().len(), 5513);
    assert_eq!(audio::decode(&fixture("ogg"), Some(0.5)).unwrap().samples.len(), 8000);
}

#[test]
fn a_corrupt_or_truncated_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.mp3");
    std::fs::write(&bad, b"this is not audio at all, just text pretending to be an mp3 file").unwrap();
    let e = audio::decode(&bad, None).unwrap_err().to_string();
    assert!(e.contains("bad.mp3") && e.contains("cannot decode"), "{e}");
    let flac = std::fs::read(fixture("flac")).unwrap();
    let cut = dir.path().join("cut.flac");
    std::fs::write(&cut, &flac[..40]).unwrap();
    let e = audio::decode(&cut, None).unwrap_err().to_string();
    assert!(e.contains("cut.flac"), "{e}");
}

#[test]
fn extract_feeds_pcm_at_the_plugins_rate_and_records_bad_clips_as_missing() {
    let dir = tempfile::tempdir().unwrap();
    let prep = dir.path().join("prep");
    let items = (0..6)
        .map(|i| Item { track: LogTrack { id: format!("t{i}"), artist_id: "a".into(), artist: "A".into(), title: "x".into() }, plays: 1, duration_s: None })
        .collect();
    encore::data::schema::write_dataset(&prep, &Dataset { items, sessions: Sessions { offsets: vec![0], ..Sessions::default() }, ..Dataset::default() }, &[])
        .unwrap();
    let clips = dir.path().join("clips");
    std::fs::create_dir_all(&clips).unwrap();
    for (i, ext) in audio::EXTENSIONS.iter().enumerate() {
        std::fs::copy(fixture(ext), clips.join(format!("t{i}.{ext}"))).unwrap();
    }
    std::fs::write(clips.join("t4.wav"), b"RIFF....WAVEjunk").unwrap(); // corrupt; t5 has no clip
    let cfg = dir.path().join("f.toml");
    std::fs::write(
        &cfg,
        "[features]\nprepared = \"prep\"\naudio = \"clips\"\n\n[[features.extractor]]\nplugin = \"hostile-picky\"\nparams = { rate = 22050 }\n",
    )
    .unwrap();
    let o = common::encore().args(["features", "extract", "--config", cfg.to_str().unwrap(), "--quiet"]).output().unwrap();
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{err}");
    assert!(out.contains("4 done, 2 missing, 0 failed"), "{out}");
    let f = store::read(&prep.join("features/picky.parquet")).unwrap();
    for (i, r) in f.rows.iter().enumerate().take(4) {
        let n = r.vector.as_ref().unwrap()[2] as usize;
        let tolerance = if i < 2 { 0 } else { 3500 };
        assert!(n.abs_diff(22_050) <= tolerance, "t{i}: {n} samples at 22050 Hz");
    }
    assert_eq!(f.rows[4].status, Status::Missing);
    assert!(f.rows[4].reason.as_ref().unwrap().contains("t4.wav"), "{:?}", f.rows[4].reason);
    assert!(f.rows[5].reason.as_ref().unwrap().contains("no clip for t5"), "{:?}", f.rows[5].reason);
    assert!(err.contains("t4.wav"), "the summary names the bad clip: {err}");

    // --max-seconds is part of the cache key and caps every clip.
    let o = common::encore().args(["features", "extract", "--config", cfg.to_str().unwrap(), "--max-seconds", "0.5", "--quiet"]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("computed 6 "), "{}", String::from_utf8_lossy(&o.stdout));
    let f = store::read(&prep.join("features/picky.parquet")).unwrap();
    assert_eq!(f.rows[0].vector.as_ref().unwrap()[2], 11_025.0);

    // An audio extractor without --audio is refused with what to do.
    let o = common::encore().args(["features", "extract", "--data", prep.to_str().unwrap(), "--plugin", "audio-dsp"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("pass --audio DIR"), "{err}");
}
