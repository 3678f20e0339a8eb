"""Median fundamental frequency (F0) of a clip: pYIN for studies, plain YIN for thousands of training clips."""
from __future__ import annotations

import numpy as np


def clip_median_f0(y: np.ndarray, sr: int = 16000, *, fmin: float = 60.0, fmax: float = 500.0) -> float | None:
    """Median F0 in Hz over the voiced frames of ``y [shape=(n,)]`` (``librosa.pyin``); ``None`` if < 10 voiced frames."""
    import librosa

    f0, voiced, _ = librosa.pyin(np.asarray(y, dtype=np.float32), fmin=fmin, fmax=fmax, sr=sr, frame_length=1024)
    f0 = f0[voiced & np.isfinite(f0)]
    return float(np.median(f0)) if f0.size >= 10 else None


def fast_median_f0(y: np.ndarray, sr: int = 16000, *, fmin: float = 60.0, fmax: float = 500.0,
                   gate_db: float = 30.0) -> float | None:
    """Median F0 in Hz of ``y [shape=(n,)]`` by plain YIN (``librosa.yin``, about 30x faster than pYIN).

    Frames count as voiced when their RMS is within ``gate_db`` of the loudest
    frame and YIN's estimate lies strictly inside (``fmin``, ``fmax``); ``None``
    with fewer than 10 such frames. Cruder than :func:`clip_median_f0`, meant
    for thousands of training clips.
    """
    import librosa

    y = np.asarray(y, dtype=np.float32)
    if y.size < 2048:
        return None
    f0 = librosa.yin(y, fmin=fmin, fmax=fmax, sr=sr, frame_length=1024, hop_length=256)
    rms = librosa.feature.rms(y=y, frame_length=1024, hop_length=256)[0]
    n = min(f0.size, rms.size)
    f0, rms = f0[:n], rms[:n]
    loud = 20 * np.log10(np.maximum(rms, 1e-10) / max(float(rms.max()), 1e-10)) > -gate_db
    voiced = loud & (f0 > fmin * 1.05) & (f0 < fmax * 0.95)
    return float(np.median(f0[voiced])) if voiced.sum() >= 10 else None
