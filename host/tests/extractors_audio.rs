//! The `audio-dsp` extractor plugin, run in the sandbox on synthesized PCM at 22050 Hz.
mod common;

use encore::plugins::extractor::ExtractorInstance;
use encore::plugins::{ParamValue, PluginError, Track};
use std::f64::consts::PI;

const SR: f64 = 22050.0;
const N_MFCC: usize = 20;
/// Index of the first chroma bin (C) and of the tempo with the default `n_mfcc`.
const CHROMA: usize = 4 * N_MFCC;
const CENTROID: usize = CHROMA + 12;
const ROLLOFF: usize = CHROMA + 14;
const TEMPO: usize = CHROMA + 18;

fn instance(params: &[(String, ParamValue)]) -> ExtractorInstance {
    ExtractorInstance::new(&common::load("audio-dsp"), params).unwrap()
}

/// One vector per clip, in the sandbox.
fn run(x: &mut ExtractorInstance, clips: Vec<Option<Vec<f32>>>) -> Vec<Option<Vec<f32>>> {
    let tracks: Vec<Track> = (0..clips.len() as u32).map(common::track).collect();
    x.extract(&tracks, &clips).unwrap()
}

fn sine(freq: f64, seconds: f64) -> Vec<f32> {
    (0..(seconds * SR) as usize).map(|n| (0.5 * (2.0 * PI * freq * n as f64 / SR).sin()) as f32).collect()
}

/// `seconds` of silence with a 20 ms decaying 1 kHz click at every beat of `bpm`.
fn clicks(bpm: f64, seconds: f64) -> Vec<f32> {
    let mut y = vec![0.0f32; (seconds * SR) as usize];
    let mut beat = 0.0;
    while beat < seconds {
        let start = (beat * SR).round() as usize;
        for n in 0..(0.02 * SR) as usize {
            let t = n as f64 / SR;
            if let Some(s) = y.get_mut(start + n) {
                *s = ((-t / 0.003).exp() * (2.0 * PI * 1000.0 * t).sin()) as f32;
            }
        }
        beat += 60.0 / bpm;
    }
    y
}

/// The signal of plugins/extractors/audio-dsp/tests/make_fixture.py, from the same formula.
fn fixture_signal(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let t = i as f64 / SR;
            let env = (-6.0 * t.rem_euclid(0.5)).exp();
            let tone = 0.5 * (2.0 * PI * 220.0 * t).sin() + 0.3 * (2.0 * PI * 660.0 * t + 0.5).sin() + 0.15 * (2.0 * PI * 1760.0 * t + 1.0).sin();
            (env * tone + 0.1 * (2.0 * PI * (200.0 * t + 300.0 * t * t)).sin()) as f32
        })
        .collect()
}

/// A number or a list of numbers from the fixture's flat JSON object (no JSON crate needed).
fn fixture(key: &str) -> Vec<f64> {
    static TEXT: &str = include_str!("fixtures/mfcc_librosa.json");
    let start = TEXT.find(&format!("\"{key}\":")).unwrap_or_else(|| panic!("{key} not in the fixture")) + key.len() + 3;
    let rest = TEXT[start..].trim_start();
    let body = if let Some(list) = rest.strip_prefix('[') { &list[..list.find(']').unwrap()] } else { &rest[..rest.find([',', '\n', '}']).unwrap()] };
    body.split(',').map(|v| v.trim().parse().unwrap()).collect()
}

#[test]
fn spec_asks_for_22050_hz_and_the_vector_has_its_dim_all_finite() {
    let mut x = instance(&[]);
    assert_eq!((x.spec().name.as_str(), x.spec().dim, x.spec().wants_audio), ("audio-dsp", 99, Some(22050)));
    let out = run(&mut x, vec![Some(fixture_signal(3 * 22050))]);
    let v = out[0].as_ref().unwrap();
    assert_eq!(v.len(), 99);
    assert!(v.iter().all(|x| x.is_finite()), "{v:?}");

    let mut x = instance(&[("n_mfcc".into(), ParamValue::Integer(13))]);
    assert_eq!(x.spec().dim, 4 * 13 + 19);
    assert_eq!(run(&mut x, vec![Some(sine(440.0, 1.0))])[0].as_ref().unwrap().len(), 4 * 13 + 19);
}

#[test]
fn missing_short_or_non_finite_audio_is_missing_not_zero_filled() {
    let mut x = instance(&[]);
    let mut nan = sine(440.0, 1.0);
    nan[100] = f32::NAN;
    let out = run(&mut x, vec![None, Some(vec![0.1; 2047]), Some(nan), Some(vec![0.0; 2048]), Some(sine(440.0, 0.5))]);
    assert_eq!(out.iter().map(Option::is_some).collect::<Vec<_>>(), [false, false, false, true, true]);
    // Silence is a valid (if dull) clip: finite, with no tempo.
    let silence = out[3].as_ref().unwrap();
    assert!(silence.iter().all(|v| v.is_finite()));
    assert_eq!(silence[TEMPO], 0.0);
}

#[test]
fn a_440_hz_sine_has_its_chroma_peak_at_a() {
    let mut x = instance(&[]);
    let v = run(&mut x, vec![Some(sine(440.0, 2.0))]).remove(0).unwrap();
    let chroma = &v[CHROMA..CHROMA + 12];
    let argmax = (0..12).max_by(|&a, &b| chroma[a].total_cmp(&chroma[b])).unwrap();
    eprintln!("chroma of a 440 Hz sine: {chroma:?}, argmax {argmax}");
    assert_eq!(argmax, 9, "{chroma:?}");
    assert!((chroma[9] - 1.0).abs() < 1e-3, "every frame is max-normalised: {chroma:?}");
    assert!((v[CENTROID] - 440.0).abs() < 20.0, "centroid {}", v[CENTROID]);
}

#[test]
fn click_tracks_give_their_tempo() {
    let mut x = instance(&[]);
    let bpms = [120.0, 90.0, 75.0, 150.0];
    let out = run(&mut x, bpms.iter().map(|&b| Some(clicks(b, 10.0))).collect());
    for (bpm, v) in bpms.iter().zip(&out) {
        let tempo = v.as_ref().unwrap()[TEMPO] as f64;
        eprintln!("click track at {bpm} BPM: tempo {tempo:.2}");
        assert!((tempo - bpm).abs() <= 2.0, "{bpm} BPM click track gave {tempo}");
    }
}

#[test]
fn mfcc_statistics_match_librosa() {
    let n = fixture("n_samples")[0] as usize;
    let mut x = instance(&[]);
    let v = run(&mut x, vec![Some(fixture_signal(n))]).remove(0).unwrap();
    // Relative error below 1e-3, with the scale floored at 1 so that coefficients near 0 are
    // judged on their absolute error (the MFCCs are in dB-like units). Measured: 3.4e-6 at most.
    let check = |name: &str, got: &[f32], tol: f64| {
        let want = fixture(name);
        let err = got.iter().zip(&want).map(|(g, w)| (*g as f64 - w).abs() / w.abs().max(1.0)).fold(0.0, f64::max);
        eprintln!("{name}: max relative error {err:.2e} vs librosa");
        assert!(err < tol, "{name}: max relative error {err} ≥ {tol}\n got {got:?}\nwant {want:?}");
    };
    check("mfcc_mean", &v[..N_MFCC], 1e-3);
    check("mfcc_std", &v[N_MFCC..2 * N_MFCC], 1e-3);
    check("delta_mean", &v[2 * N_MFCC..3 * N_MFCC], 1e-3);
    check("delta_std", &v[3 * N_MFCC..4 * N_MFCC], 1e-3);
    check("centroid_mean", &v[CENTROID..CENTROID + 1], 1e-3);
    check("centroid_std", &v[CENTROID + 1..CENTROID + 2], 1e-3);
    check("rolloff_mean", &v[ROLLOFF..ROLLOFF + 1], 1e-3);
    check("rolloff_std", &v[ROLLOFF + 1..ROLLOFF + 2], 1e-3);
    // Its tone bursts restart every 0.5 s: 120 BPM, though no click marks the beat.
    eprintln!("fixture signal (bursts every 0.5 s): tempo {:.2}", v[TEMPO]);
    assert!((v[TEMPO] - 120.0).abs() <= 2.0, "tempo {}", v[TEMPO]);
}

#[test]
fn throughput_on_30_second_clips() {
    let mut x = instance(&[]);
    let clips: Vec<Option<Vec<f32>>> = (0..4).map(|i| Some(fixture_signal(30 * 22050 + i))).collect();
    let n = clips.len();
    let start = std::time::Instant::now();
    let out = run(&mut x, clips);
    let secs = start.elapsed().as_secs_f64();
    assert!(out.iter().all(Option::is_some));
    eprintln!("audio-dsp: {n} clips of 30 s in {secs:.2} s = {:.1} tracks/s (in the sandbox, one instance)", n as f64 / secs);
}

#[test]
fn refuses_unknown_or_out_of_range_parameters() {
    for params in [
        vec![("n_fft".to_string(), ParamValue::Integer(1024))],
        vec![("n_mfcc".to_string(), ParamValue::Integer(0))],
        vec![("n_mfcc".to_string(), ParamValue::Integer(40)), ("n_mels".to_string(), ParamValue::Integer(20))],
        vec![("roll_percent".to_string(), ParamValue::Float(1.5))],
    ] {
        let err = ExtractorInstance::new(&common::load("audio-dsp"), &params).err().unwrap();
        assert!(matches!(err, PluginError::Returned { .. }), "{err}");
        assert!(err.to_string().contains("`audio-dsp`"), "{err}");
    }
}
