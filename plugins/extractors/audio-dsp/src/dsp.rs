//! The signal processing behind the plugin, kept free of the SDK so it reads as plain DSP.
//! Every step that has a librosa counterpart follows librosa 0.11 (named per function), since
//! the MFCC part is checked against librosa's output (`tests/make_fixture.py`).
use rustfft::algorithm::Radix4;
use rustfft::num_complex::Complex;
use rustfft::{Fft, FftDirection};
use std::f64::consts::PI;
use std::sync::Arc;

/// Frame length of the STFT, in samples (librosa's `n_fft`).
pub const N_FFT: usize = 2048;
/// Hop between frames, in samples (librosa's `hop_length`).
pub const HOP: usize = 512;
/// Bins of a one-sided spectrum.
pub const N_BINS: usize = N_FFT / 2 + 1;
/// Savitzky–Golay window of the MFCC deltas (librosa's `width`).
const DELTA_WIDTH: usize = 9;

/// What one clip is summarised into; see the crate docs for the vector layout.
pub struct Features {
    pub mfcc_mean: Vec<f64>,
    pub mfcc_std: Vec<f64>,
    pub delta_mean: Vec<f64>,
    pub delta_std: Vec<f64>,
    pub chroma: [f64; 12],
    pub centroid: (f64, f64),
    pub rolloff: (f64, f64),
    pub flux: (f64, f64),
    pub tempo: f64,
}

/// Settings, validated by the plugin's `configure`.
#[derive(Clone, Debug)]
pub struct Config {
    pub sample_rate: u32,
    pub n_mfcc: usize,
    pub n_mels: usize,
    pub roll_percent: f64,
    pub start_bpm: f64,
}

/// Plans and tables that depend only on the config, built once per plugin instance.
pub struct Analyzer {
    cfg: Config,
    fft: Arc<dyn Fft<f32>>,
    window: Vec<f32>,
    mel: Vec<(usize, Vec<f64>)>,
    dct: Vec<Vec<f64>>,
    pitch_class: Vec<Option<usize>>,
    // Scratch, reused across tracks.
    buf: Vec<Complex<f32>>,
    scratch: Vec<Complex<f32>>,
}

impl Analyzer {
    pub fn new(cfg: Config) -> Analyzer {
        // Built directly rather than through `FftPlanner`, whose HashMap asks WASI for a random
        // seed, a capability the sandbox denies. 2048 is a power of two, which Radix4 handles.
        let fft: Arc<dyn Fft<f32>> = Arc::new(Radix4::new(N_FFT, FftDirection::Forward));
        let scratch = vec![Complex::default(); fft.get_inplace_scratch_len()];
        // scipy.signal.get_window("hann", N_FFT, fftbins=True): the periodic Hann window.
        let window = (0..N_FFT).map(|n| (0.5 - 0.5 * (2.0 * PI * n as f64 / N_FFT as f64).cos()) as f32).collect();
        let sr = cfg.sample_rate as f64;
        let mel = mel_filters(sr, cfg.n_mels);
        let dct = dct_ortho(cfg.n_mfcc, cfg.n_mels);
        // Bins between C1 and C8 vote for the pitch class nearest to them (A4 = 440 Hz, C = 0).
        let pitch_class = (0..N_BINS)
            .map(|k| {
                let f = k as f64 * sr / N_FFT as f64;
                (32.70..=4186.0).contains(&f).then(|| (((12.0 * (f / 440.0).log2()).round() as i64 + 9).rem_euclid(12)) as usize)
            })
            .collect();
        Analyzer { cfg, fft, window, mel, dct, pitch_class, buf: vec![Complex::default(); N_FFT], scratch }
    }

    /// The summary of a mono clip, or `None` when it is shorter than one frame or not finite.
    pub fn analyze(&mut self, y: &[f32]) -> Option<Features> {
        if y.len() < N_FFT || y.iter().any(|s| !s.is_finite()) {
            return None;
        }
        let sr = self.cfg.sample_rate as f64;
        let n_mels = self.cfg.n_mels;
        // librosa.stft(center=True, pad_mode="constant"): frames centred on t * HOP, zero padded.
        let n_frames = 1 + y.len() / HOP;
        let mut mel_db = vec![0.0f64; n_frames * n_mels];
        let mut mag = vec![0.0f64; N_BINS];
        let mut prev_mag = vec![0.0f64; N_BINS];
        let (mut centroid, mut rolloff, mut flux) = (Vec::with_capacity(n_frames), Vec::with_capacity(n_frames), Vec::new());
        let mut chroma = [0.0f64; 12];
        for t in 0..n_frames {
            let start = (t * HOP) as isize - (N_FFT / 2) as isize;
            for (n, b) in self.buf.iter_mut().enumerate() {
                let i = start + n as isize;
                let s = if i >= 0 && (i as usize) < y.len() { y[i as usize] } else { 0.0 };
                *b = Complex::new(s * self.window[n], 0.0);
            }
            self.fft.process_with_scratch(&mut self.buf, &mut self.scratch);
            let power: Vec<f64> = self.buf[..N_BINS].iter().map(|c| c.norm_sqr() as f64).collect();
            for (m, p) in mag.iter_mut().zip(&power) {
                *m = p.sqrt();
            }
            // Mel power → dB (the top_db clip is global, so it waits for every frame).
            for (i, (lo, w)) in self.mel.iter().enumerate() {
                let e: f64 = w.iter().zip(&power[*lo..]).map(|(w, p)| w * p).sum();
                mel_db[t * n_mels + i] = 10.0 * e.max(1e-10).log10();
            }
            // librosa.feature.spectral_centroid / spectral_rolloff on the magnitude spectrum.
            let total: f64 = mag.iter().sum();
            if total > 0.0 {
                centroid.push(mag.iter().enumerate().map(|(k, m)| k as f64 * m).sum::<f64>() * sr / N_FFT as f64 / total);
                let mut acc = 0.0;
                let k = mag.iter().position(|m| {
                    acc += m;
                    acc >= self.cfg.roll_percent * total
                });
                rolloff.push(k.unwrap_or(N_BINS - 1) as f64 * sr / N_FFT as f64);
            } else {
                centroid.push(0.0);
                rolloff.push(0.0);
            }
            if t > 0 {
                flux.push(mag.iter().zip(&prev_mag).map(|(m, p)| (m - p).max(0.0).powi(2)).sum::<f64>().sqrt());
            }
            std::mem::swap(&mut mag, &mut prev_mag);
            // Chroma: power per pitch class, each frame scaled so its loudest class is 1.
            let mut frame = [0.0f64; 12];
            for (pc, p) in self.pitch_class.iter().zip(&power) {
                if let Some(pc) = pc {
                    frame[*pc] += p;
                }
            }
            let peak = frame.iter().cloned().fold(0.0, f64::max);
            if peak > 1e-10 {
                for (c, f) in chroma.iter_mut().zip(frame) {
                    *c += f / peak;
                }
            }
        }
        // librosa.power_to_db(ref=1.0, amin=1e-10, top_db=80).
        let floor = mel_db.iter().cloned().fold(f64::NEG_INFINITY, f64::max) - 80.0;
        for v in &mut mel_db {
            *v = v.max(floor);
        }
        // librosa.feature.mfcc: DCT-II (orthonormal) over the mel axis, frame by frame.
        let n_mfcc = self.cfg.n_mfcc;
        let mut mfcc = vec![vec![0.0f64; n_frames]; n_mfcc];
        for t in 0..n_frames {
            let frame = &mel_db[t * n_mels..(t + 1) * n_mels];
            for (c, row) in self.dct.iter().enumerate() {
                mfcc[c][t] = row.iter().zip(frame).map(|(a, b)| a * b).sum();
            }
        }
        let deltas: Vec<Vec<f64>> = mfcc.iter().map(|m| delta(m)).collect();
        let (mfcc_mean, mfcc_std) = mfcc.iter().map(|m| mean_std(m)).unzip();
        let (delta_mean, delta_std) = deltas.iter().map(|m| mean_std(m)).unzip();
        for c in &mut chroma {
            *c /= n_frames as f64;
        }
        let tempo = tempo(&onset_strength(&mel_db, n_mels), sr / HOP as f64, self.cfg.start_bpm);
        Some(Features {
            mfcc_mean,
            mfcc_std,
            delta_mean,
            delta_std,
            chroma,
            centroid: mean_std(&centroid),
            rolloff: mean_std(&rolloff),
            flux: if flux.is_empty() { (0.0, 0.0) } else { mean_std(&flux) },
            tempo,
        })
    }
}

/// Mean and population standard deviation (numpy's `ddof=0`).
fn mean_std(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    (mean, (x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt())
}

/// Hz → mel on the Slaney scale (librosa.hz_to_mel, htk=False): linear below 1 kHz, log above.
fn hz_to_mel(f: f64) -> f64 {
    let (f_sp, min_log_hz, logstep) = (200.0 / 3.0, 1000.0, 6.4f64.ln() / 27.0);
    if f >= min_log_hz {
        min_log_hz / f_sp + (f / min_log_hz).ln() / logstep
    } else {
        f / f_sp
    }
}

fn mel_to_hz(m: f64) -> f64 {
    let (f_sp, min_log_hz, logstep) = (200.0 / 3.0, 1000.0, 6.4f64.ln() / 27.0);
    let min_log_mel = min_log_hz / f_sp;
    if m >= min_log_mel {
        min_log_hz * (logstep * (m - min_log_mel)).exp()
    } else {
        f_sp * m
    }
}

/// librosa.filters.mel(sr, n_fft, n_mels, fmin=0, fmax=sr/2, htk=False, norm="slaney"), stored
/// sparsely: each filter as its first non-zero bin and its weights from there.
fn mel_filters(sr: f64, n_mels: usize) -> Vec<(usize, Vec<f64>)> {
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(sr / 2.0));
    let mel_f: Vec<f64> = (0..n_mels + 2).map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (n_mels + 1) as f64)).collect();
    let fft_f: Vec<f64> = (0..N_BINS).map(|k| k as f64 * (sr / 2.0) / (N_BINS - 1) as f64).collect();
    (0..n_mels)
        .map(|i| {
            let enorm = 2.0 / (mel_f[i + 2] - mel_f[i]);
            let w: Vec<f64> = fft_f
                .iter()
                .map(|f| {
                    let lower = (f - mel_f[i]) / (mel_f[i + 1] - mel_f[i]);
                    let upper = (mel_f[i + 2] - f) / (mel_f[i + 2] - mel_f[i + 1]);
                    lower.min(upper).max(0.0) * enorm
                })
                .collect();
            let first = w.iter().position(|v| *v > 0.0).unwrap_or(0);
            let last = w.iter().rposition(|v| *v > 0.0).map_or(first, |l| l + 1);
            (first, w[first..last].to_vec())
        })
        .collect()
}

/// Rows of scipy's orthonormal DCT-II matrix, the first `n_out` of `n_in`.
fn dct_ortho(n_out: usize, n_in: usize) -> Vec<Vec<f64>> {
    (0..n_out)
        .map(|k| {
            let scale = if k == 0 { (1.0 / n_in as f64).sqrt() } else { (2.0 / n_in as f64).sqrt() };
            (0..n_in).map(|n| scale * (PI * k as f64 * (2 * n + 1) as f64 / (2 * n_in) as f64).cos()).collect()
        })
        .collect()
}

/// librosa.feature.delta(width=9, order=1, mode="interp"): a Savitzky–Golay first derivative,
/// i.e. the least-squares slope over 9 frames. In "interp" mode the edge frames take the slope of
/// the first (last) full window. Clips of fewer than 9 frames (librosa refuses them) repeat their
/// edge frames instead.
fn delta(x: &[f64]) -> Vec<f64> {
    let half = (DELTA_WIDTH / 2) as isize;
    let norm: f64 = (1..=half).map(|k| 2.0 * (k * k) as f64).sum();
    let n = x.len() as isize;
    let at = |i: isize| x[i.clamp(0, n - 1) as usize];
    (0..n)
        .map(|t| {
            let c = if n >= DELTA_WIDTH as isize { t.clamp(half, n - 1 - half) } else { t };
            (-half..=half).map(|k| k as f64 * at(c + k)).sum::<f64>() / norm
        })
        .collect()
}

/// librosa.onset.onset_strength on the mel dB spectrogram: the mean over bands of the positive
/// frame-to-frame rise (lag 1). Frame 0 has no predecessor and gets 0.
fn onset_strength(mel_db: &[f64], n_mels: usize) -> Vec<f64> {
    let n = mel_db.len() / n_mels;
    let mut env = vec![0.0; n];
    for t in 1..n {
        let (prev, cur) = (&mel_db[(t - 1) * n_mels..t * n_mels], &mel_db[t * n_mels..(t + 1) * n_mels]);
        env[t] = cur.iter().zip(prev).map(|(c, p)| (c - p).max(0.0)).sum::<f64>() / n_mels as f64;
    }
    env
}

/// Tempo in BPM from an onset envelope sampled at `fps` frames per second: the autocorrelation
/// of the (mean-removed) envelope over lags of 30–240 BPM, weighted by a log-normal prior around
/// `start_bpm` (one octave wide, as librosa's), picks the beat period. A whole-frame lag is too
/// coarse (at 43 frames/s, 120 BPM lies between lags 21 and 22: 123.0 and 117.5 BPM), so the
/// period is refined from the centroids of the autocorrelation peaks at its first multiples.
/// 0 when the envelope is flat.
pub fn tempo(env: &[f64], fps: f64, start_bpm: f64) -> f64 {
    let mean = env.iter().sum::<f64>() / env.len() as f64;
    let x: Vec<f64> = env.iter().map(|v| v - mean).collect();
    let min_lag = (fps * 60.0 / 240.0).floor().max(2.0) as usize;
    let max_lag = (fps * 60.0 / 30.0).ceil() as usize;
    if max_lag + 2 >= x.len() {
        return 0.0;
    }
    // Biased autocorrelation up to four periods of the slowest tempo (or the clip's length).
    let acs: Vec<f64> = (0..(4 * max_lag + 3).min(x.len())).map(|lag| x.iter().zip(&x[lag..]).map(|(a, b)| a * b).sum()).collect();
    let prior = |lag: f64| (-0.5 * ((fps * 60.0 / lag).log2() - start_bpm.log2()).powi(2)).exp();
    let best = (min_lag..=max_lag)
        .filter(|&l| acs[l] > 0.0 && acs[l] >= acs[l - 1] && acs[l] >= acs[l + 1])
        .max_by(|&a, &b| (acs[a] * prior(a as f64)).total_cmp(&(acs[b] * prior(b as f64))));
    let Some(l) = best else { return 0.0 };
    // Centroid of the positive autocorrelation within ±1 lag of a peak near `near`.
    let centroid = |near: f64| -> Option<f64> {
        let c = near.round() as usize;
        let c = (c.saturating_sub(1)..=c + 1).filter(|&i| i + 1 < acs.len()).max_by(|&a, &b| acs[a].total_cmp(&acs[b]))?;
        let w: f64 = acs[c - 1..=c + 1].iter().map(|a| a.max(0.0)).sum();
        let m: f64 = acs[c - 1..=c + 1].iter().zip(c - 1..).map(|(a, i)| a.max(0.0) * i as f64).sum();
        (w > 0.0).then(|| m / w)
    };
    let mut period = centroid(l as f64).unwrap_or(l as f64);
    // Least-squares period through the peaks at 2, 3 and 4 periods, each found near the estimate
    // the previous ones give.
    let (mut num, mut den) = (period, 1.0);
    for k in 2..=4 {
        let Some(p) = centroid(k as f64 * period).filter(|p| p + 2.0 < acs.len() as f64) else { break };
        num += k as f64 * p;
        den += (k * k) as f64;
        period = num / den;
    }
    fps * 60.0 / period
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clicks(bpm: f64, seconds: f64, sr: f64) -> Vec<f32> {
        let mut y = vec![0.0f32; (seconds * sr) as usize];
        let mut beat = 0.0;
        while beat < seconds {
            let start = (beat * sr).round() as usize;
            for n in 0..(0.02 * sr) as usize {
                let t = n as f64 / sr;
                if let Some(s) = y.get_mut(start + n) {
                    *s = ((-t / 0.003).exp() * (2.0 * PI * 1000.0 * t).sin()) as f32;
                }
            }
            beat += 60.0 / bpm;
        }
        y
    }

    #[test]
    fn click_tracks_give_their_tempo() {
        let mut a = Analyzer::new(Config { sample_rate: 22050, n_mfcc: 20, n_mels: 128, roll_percent: 0.85, start_bpm: 120.0 });
        for bpm in [60.0, 72.0, 90.0, 100.0, 120.0, 128.0, 140.0, 174.0] {
            for secs in [10.0, 30.0] {
                let t = a.analyze(&clicks(bpm, secs, 22050.0)).unwrap().tempo;
                eprintln!("{bpm} BPM, {secs} s: {t:.2}");
                assert!((t - bpm).abs() < 1.0, "{bpm}: {t}");
            }
        }
    }
}

/// `cargo test --release -p audio-dsp --lib -- --ignored --nocapture`: native timings.
#[cfg(test)]
mod timing {
    use super::*;

    #[test]
    #[ignore]
    fn time_30s() {
        let mut a = Analyzer::new(Config { sample_rate: 22050, n_mfcc: 20, n_mels: 128, roll_percent: 0.85, start_bpm: 120.0 });
        let y: Vec<f32> = (0..30 * 22050).map(|i| ((i as f32) * 0.05).sin() * 0.3 + ((i * 7919 % 1000) as f32) * 1e-4).collect();
        let t = std::time::Instant::now();
        for _ in 0..10 {
            a.analyze(&y).unwrap();
        }
        eprintln!("native: {:.1} ms per 30 s clip", t.elapsed().as_secs_f64() * 100.0);
        let mut buf = vec![Complex::<f32>::default(); N_FFT];
        let t = std::time::Instant::now();
        for _ in 0..1292 * 10 {
            a.fft.process_with_scratch(&mut buf, &mut a.scratch);
        }
        eprintln!("native fft only: {:.1} ms per 30 s clip", t.elapsed().as_secs_f64() * 100.0);
    }
}
