#!/usr/bin/env python3
"""Reference values for the audio-dsp plugin, computed with librosa.

Writes host/tests/fixtures/mfcc_librosa.json, which host/tests/extractors_audio.rs compares the
plugin's output against (so the Rust tests need no Python). Run from the repository root:

    python3 -m venv $HOME/.cache/encore-venv-librosa
    $HOME/.cache/encore-venv-librosa/bin/pip install librosa numpy
    $HOME/.cache/encore-venv-librosa/bin/python plugins/extractors/audio-dsp/tests/make_fixture.py

The test signal is a formula that the Rust test evaluates identically (in f64, then cast to f32):
    t     = n / 22050,  n = 0 .. 4 * 22050 - 1
    env   = exp(-6 * (t mod 0.5))
    y(t)  = env * (0.5 sin(2π 220 t) + 0.3 sin(2π 660 t + 0.5) + 0.15 sin(2π 1760 t + 1.0))
            + 0.1 sin(2π (200 t + 300 t²))
"""
import json
import pathlib

import librosa
import numpy as np

SR = 22050
N = 4 * SR


def signal():
    t = np.arange(N, dtype=np.float64) / SR
    env = np.exp(-6.0 * np.mod(t, 0.5))
    y = env * (0.5 * np.sin(2 * np.pi * 220 * t) + 0.3 * np.sin(2 * np.pi * 660 * t + 0.5)
               + 0.15 * np.sin(2 * np.pi * 1760 * t + 1.0)) + 0.1 * np.sin(2 * np.pi * (200 * t + 300 * t * t))
    return y.astype(np.float32)


def main():
    y = signal()
    # librosa's defaults, spelled out: n_fft 2048, hop 512, 128 Slaney mel bands, dB with top_db 80.
    mfcc = librosa.feature.mfcc(y=y, sr=SR, n_mfcc=20, n_fft=2048, hop_length=512, n_mels=128,
                                center=True, pad_mode="constant", htk=False, norm="ortho")
    delta = librosa.feature.delta(mfcc, width=9)
    centroid = librosa.feature.spectral_centroid(y=y, sr=SR, n_fft=2048, hop_length=512, pad_mode="constant")
    rolloff = librosa.feature.spectral_rolloff(y=y, sr=SR, n_fft=2048, hop_length=512, pad_mode="constant",
                                               roll_percent=0.85)
    out = {
        "librosa": librosa.__version__,
        "sample_rate": SR,
        "n_samples": N,
        "n_frames": int(mfcc.shape[1]),
        "mfcc_mean": mfcc.mean(axis=1).tolist(),
        "mfcc_std": mfcc.std(axis=1).tolist(),
        "delta_mean": delta.mean(axis=1).tolist(),
        "delta_std": delta.std(axis=1).tolist(),
        "centroid_mean": float(centroid.mean()),
        "centroid_std": float(centroid.std()),
        "rolloff_mean": float(rolloff.mean()),
        "rolloff_std": float(rolloff.std()),
    }
    path = pathlib.Path(__file__).resolve().parents[4] / "host/tests/fixtures/mfcc_librosa.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
