"""The anchor of bench/features/run.sh: audio-dsp's features computed by librosa, clip by clip, in
one process. For each clip: load at 22050 Hz (librosa.load, which decodes and resamples with
soxr), MFCCs (20 of 128 mel bands) with deltas (means and stds), chroma (chroma_stft), spectral
centroid, rolloff (0.85) and flux (means and stds), and a tempo (onset strength + tempo
estimation) -- the same analyses as plugins/extractors/audio-dsp (docs/audio-dsp.md).

Usage: python librosa_features.py CLIP_DIR [LIMIT]. Prints `librosa: N clips in S s = R tracks/s`.
The first clip is processed once before timing (numba compiles some of librosa's functions on
first use), as encore's plugin compilation is cached before its timed run.
"""
import os
import sys
import time

import librosa
import numpy as np

SR = 22050


def features(path):
    y, sr = librosa.load(path, sr=SR, mono=True)
    spec = np.abs(librosa.stft(y, n_fft=2048, hop_length=512, center=True, pad_mode="constant"))
    power = spec**2
    mel = librosa.feature.melspectrogram(S=power, sr=sr, n_mels=128)
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=20)
    delta = librosa.feature.delta(mfcc, width=9, mode="interp")
    chroma = librosa.feature.chroma_stft(S=power, sr=sr)
    centroid = librosa.feature.spectral_centroid(S=spec, sr=sr)[0]
    rolloff = librosa.feature.spectral_rolloff(S=spec, sr=sr, roll_percent=0.85)[0]
    flux = np.sqrt((np.maximum(np.diff(spec, axis=1), 0.0) ** 2).sum(axis=0))
    onset = librosa.onset.onset_strength(S=librosa.power_to_db(mel), sr=sr)
    tempo = librosa.feature.tempo(onset_envelope=onset, sr=sr, start_bpm=120.0)[0]
    return np.concatenate(
        [
            mfcc.mean(1), mfcc.std(1), delta.mean(1), delta.std(1), chroma.mean(1),
            [centroid.mean(), centroid.std(), rolloff.mean(), rolloff.std(), flux.mean(), flux.std(), tempo],
        ]
    )


def main():
    d = sys.argv[1]
    clips = sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith((".wav", ".flac", ".mp3", ".ogg")))
    if len(sys.argv) > 2:
        clips = clips[: int(sys.argv[2])]
    features(clips[0])  # warm-up, untimed
    t = time.perf_counter()
    for c in clips:
        v = features(c)
        assert v.shape == (99,) and np.isfinite(v).all(), c
    s = time.perf_counter() - t
    print(f"librosa: {len(clips)} clips in {s:.2f} s = {len(clips) / s:.2f} tracks/s")


if __name__ == "__main__":
    main()
