"""Feature front ends of the exported networks, in numpy (no torch): what the ONNX path feeds its graphs.

The exports (:mod:`pipeline.backend`) start after the spectrogram: STFTs do not export
cleanly and are cheap in numpy. Each function here reproduces the PyTorch front end of the
native path; ``tests/test_onnx_parity.py`` states how closely.

* :func:`ecapa_log_mel`: :class:`pipeline.ecapa.LogMelFrontEnd` (the gender ECAPA-TDNN);
* :func:`whisper_log_mel`: :func:`pipeline.whisper_encoder.log_mel` (Whisper tiny.en);
* the GE2E encoder's power mel is librosa's already (:func:`pipeline.speaker_encoder.mel_frames`).

Computed in float64 and returned as float32.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

#: Front-end parameters of the gender ECAPA-TDNN (also written to the model folder's metadata.json).
ECAPA_FRONTEND: dict = {
    "sample_rate": 16000,
    "pre_emphasis": 0.97,
    "n_fft": 512,
    "win_length": 400,
    "hop_length": 160,
    "window": "hamming (periodic)",
    "center": True,
    "pad_mode": "reflect",
    "f_min": 20.0,
    "f_max": 7600.0,
    "n_mels": 80,
    "mel_scale": "htk",
    "mel_norm": None,
    "log_offset": 1e-6,
    "mean_normalisation": "subtract per-band mean over time",
}


def _frames(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Centred, reflect-padded frames of ``x [shape=(..., n)]`` -> ``[shape=(..., 1 + n // hop, n_fft)]``."""
    pad = [(0, 0)] * (x.ndim - 1) + [(n_fft // 2, n_fft // 2)]
    padded = np.pad(x, pad, mode="reflect")
    return np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=-1)[..., ::hop, :]


def _padded_window(window: np.ndarray, n_fft: int) -> np.ndarray:
    """A ``win_length`` window zero-padded on both sides to ``n_fft`` (as ``torch.stft`` does)."""
    left = (n_fft - window.size) // 2
    return np.pad(window, (left, n_fft - window.size - left))


@lru_cache(maxsize=4)
def htk_mel_filterbank(n_freqs: int = 257, f_min: float = 20.0, f_max: float = 7600.0, n_mels: int = 80,
                       sample_rate: int = 16000) -> np.ndarray:
    """Triangular HTK mel filters without area normalisation, ``[shape=(n_freqs, n_mels)]`` float64.

    The formula of ``torchaudio.functional.melscale_fbanks(norm=None, mel_scale="htk")``.
    """
    all_freqs = np.linspace(0, sample_rate // 2, n_freqs)
    m_min, m_max = (2595.0 * np.log10(1.0 + f / 700.0) for f in (f_min, f_max))
    f_pts = 700.0 * (10 ** (np.linspace(m_min, m_max, n_mels + 2) / 2595.0) - 1.0)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts[None, :] - all_freqs[:, None]
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return np.maximum(0.0, np.minimum(down, up))


def ecapa_log_mel(waveforms: np.ndarray) -> np.ndarray:
    """The gender ECAPA's mean-normalised log mel filterbank.

    Args:
        waveforms: ``np.ndarray [shape=(batch, samples)]`` float, 16 kHz, ``samples >= 2``.

    Returns:
        ``np.ndarray [shape=(batch, 80, 1 + samples // 160)]`` float32: pre-emphasis 0.97,
        |STFT|^2 (n_fft 512, periodic Hamming 400, hop 160, centred, reflect), 80 HTK mel bands
        20-7600 Hz, ``log(mel + 1e-6)``, each band's mean over time subtracted.
    """
    p = ECAPA_FRONTEND
    x = np.asarray(waveforms, dtype=np.float64)
    emphasised = np.empty_like(x)
    emphasised[:, 1:] = x[:, 1:] - p["pre_emphasis"] * x[:, :-1]
    emphasised[:, 0] = x[:, 0] - p["pre_emphasis"] * x[:, 1]  # reflect padding by one sample
    n = np.arange(p["win_length"])
    hamming = 0.54 - 0.46 * np.cos(2.0 * np.pi * n / p["win_length"])
    window = _padded_window(hamming, p["n_fft"])
    spectrum = np.fft.rfft(_frames(emphasised, p["n_fft"], p["hop_length"]) * window, axis=-1)
    power = spectrum.real ** 2 + spectrum.imag ** 2  # [batch, frames, freqs]
    fbank = htk_mel_filterbank(p["n_fft"] // 2 + 1, p["f_min"], p["f_max"], p["n_mels"], p["sample_rate"])
    log_mel = np.log(power @ fbank + p["log_offset"]).transpose(0, 2, 1)
    return (log_mel - log_mel.mean(axis=-1, keepdims=True)).astype(np.float32)


def whisper_log_mel(samples: np.ndarray, mel_filters: np.ndarray) -> np.ndarray:
    """Whisper's log-mel spectrogram of one clip, unpadded (see :func:`pipeline.whisper_encoder.log_mel`).

    Args:
        samples: ``np.ndarray [shape=(n,)]`` float, 16 kHz mono, ``n >= 320`` (checked by the caller).
        mel_filters: ``[shape=(80, 201)]`` Slaney mel matrix.

    Returns:
        ``np.ndarray [shape=(80, n // 160)]`` float32.
    """
    n_fft, hop = 400, 160
    x = np.asarray(samples, dtype=np.float64)
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)
    spectrum = np.fft.rfft(_frames(x, n_fft, hop)[:-1] * hann, axis=-1)  # the last frame dropped
    power = spectrum.real ** 2 + spectrum.imag ** 2  # [frames, 201]
    mel = np.asarray(mel_filters, np.float64) @ power.T
    log_spec = np.log10(np.maximum(mel, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)
