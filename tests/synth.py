"""Synthetic, speech-like test audio with known properties.

Plain functions, deterministic for a given ``seed``; import them as
``from tests.synth import voiced_signal, tone, silence, with_silence_padding, write_audio``.
"""
from __future__ import annotations

import os

import numpy as np

__all__ = [
    "voiced_signal",
    "tone",
    "silence",
    "white_noise",
    "with_silence_padding",
    "write_audio",
    "dominant_frequency",
    "align_and_correlate",
]


def voiced_signal(
    duration_s: float,
    sr: int = 16000,
    f0: float = 150.0,
    seed: int = 0,
    *,
    n_harmonics: int = 10,
    vibrato_hz: float = 0.5,
    vibrato_depth: float = 0.01,
    syllable_hz: float = 4.0,
    am_depth: float = 0.6,
    peak: float = 0.5,
    noise_db: float = -50.0,
) -> np.ndarray:
    """A vowel-like harmonic complex, float32 ``[shape=(round(duration_s * sr),)]``.

    * ``n_harmonics`` harmonics of ``f0`` (amplitude 1/k, with a gentle formant-like
      bump near 500 Hz and 1500 Hz), all below Nyquist;
    * slow F0 vibrato: ``f0 * (1 + vibrato_depth * sin(2 pi vibrato_hz t))``, so the
      median F0 stays ``f0``;
    * syllable-like amplitude modulation at ``syllable_hz``: envelope
      ``1 - am_depth * (1 + cos(2 pi syllable_hz t)) / 2`` (minimum ``1 - am_depth``);
    * a little seeded white noise ``noise_db`` below the peak;
    * scaled to an absolute peak of ``peak``.
    """
    n = int(round(duration_s * sr))
    if n <= 0:
        return np.zeros(0, dtype=np.float32)
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    inst_f0 = f0 * (1.0 + vibrato_depth * np.sin(2 * np.pi * vibrato_hz * t + rng.uniform(0, 2 * np.pi)))
    phase = 2 * np.pi * np.cumsum(inst_f0) / sr
    y = np.zeros(n, dtype=np.float64)
    for k in range(1, n_harmonics + 1):
        if k * f0 * (1 + vibrato_depth) >= sr / 2:
            break
        fk = k * f0
        formant = 1.0 + 1.5 * np.exp(-(((fk - 500.0) / 200.0) ** 2)) + 0.8 * np.exp(-(((fk - 1500.0) / 300.0) ** 2))
        y += (formant / k) * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    envelope = 1.0 - am_depth * (1.0 + np.cos(2 * np.pi * syllable_hz * t)) / 2.0
    y *= envelope
    y /= np.max(np.abs(y))
    y += 10 ** (noise_db / 20) * rng.standard_normal(n)
    y *= peak / np.max(np.abs(y))
    return y.astype(np.float32)


def tone(freq: float, duration_s: float, sr: int = 16000, *, amplitude: float = 0.5, phase: float = 0.0) -> np.ndarray:
    """A pure sine, float32 ``[shape=(round(duration_s * sr),)]``."""
    n = int(round(duration_s * sr))
    t = np.arange(n) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


def silence(duration_s: float, sr: int = 16000) -> np.ndarray:
    """Digital silence (zeros), float32."""
    return np.zeros(int(round(duration_s * sr)), dtype=np.float32)


def white_noise(duration_s: float, sr: int = 16000, *, peak: float = 0.5, seed: int = 0) -> np.ndarray:
    """Seeded Gaussian white noise scaled to an absolute peak of ``peak``, float32."""
    n = int(round(duration_s * sr))
    y = np.random.default_rng(seed).standard_normal(n)
    if n:
        y *= peak / np.max(np.abs(y))
    return y.astype(np.float32)


def with_silence_padding(y: np.ndarray, sr: int, lead_s: float, trail_s: float) -> np.ndarray:
    """``y`` with ``lead_s`` seconds of zeros before and ``trail_s`` after (same dtype, channels on axis 1)."""
    y = np.asarray(y)
    lead = int(round(lead_s * sr))
    trail = int(round(trail_s * sr))
    pad = [(lead, trail)] + [(0, 0)] * (y.ndim - 1)
    return np.pad(y, pad)


def write_audio(path, y: np.ndarray, sr: int, *, subtype: str | None = None, format: str | None = None) -> str:
    """Write ``y`` (``(n,)`` or ``(n, channels)``) with soundfile; returns the path as ``str``.

    ``subtype``: 'PCM_U8', 'PCM_16', 'PCM_24', 'PCM_32', 'FLOAT', 'VORBIS',
    'MPEG_LAYER_III', ...; ``format``: 'WAV', 'FLAC', 'OGG', 'MP3' (default: from the
    extension, which may be missing or misleading when ``format`` is given).
    """
    import soundfile as sf

    path = os.fspath(path)
    if format is None:
        ext = os.path.splitext(path)[1].lstrip(".").upper()
        format = {"OGA": "OGG", "OPUS": "OGG"}.get(ext, ext) or None
    if subtype is None and format is not None:
        subtype = {"OGG": "VORBIS", "MP3": "MPEG_LAYER_III"}.get(format.upper())
    with open(path, "wb") as handle:
        sf.write(handle, np.asarray(y), sr, subtype=subtype, format=format)
    return path


def dominant_frequency(y: np.ndarray, sr: int) -> float:
    """Frequency (Hz) of the largest FFT magnitude bin of a Hann-windowed ``y``."""
    y = np.asarray(y, dtype=np.float64)
    spectrum = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    spectrum[0] = 0.0
    return float(np.fft.rfftfreq(y.size, 1.0 / sr)[int(np.argmax(spectrum))])


def align_and_correlate(a: np.ndarray, b: np.ndarray, *, max_lag: int = 4000) -> float:
    """Peak normalised cross-correlation of ``a`` and ``b`` over lags in ``[-max_lag, max_lag]``."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    n = max(a.size, b.size)
    size = 1 << int(np.ceil(np.log2(2 * n)))
    xc = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size)), size)
    lags = np.r_[xc[: max_lag + 1], xc[-max_lag:]] if max_lag > 0 else xc[:1]
    return float(np.max(lags) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
