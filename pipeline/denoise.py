"""Optional spectral-gating noise reduction before feature extraction.

Wraps :func:`noisereduce.reduce_noise` (Sainburg et al., spectral gating). It
runs on the mono signal *before* :func:`pipeline.audio.prepare_signal`, so the
noise estimate can use the leading and trailing room tone that trimming would
cut. Off by default: ``python -m studies.noise_study`` (notebook 5) measures
whether it helps the shipped models on clean and noisy speech; the result is in
``studies/noise_study/report.md``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from pipeline.errors import AudioError


@dataclass(frozen=True)
class DenoiseConfig:
    """Parameters of spectral gating (names as in ``noisereduce.reduce_noise``).

    Attributes:
        stationary: ``True``: one noise threshold per frequency for the whole clip
            (mean + ``n_std_thresh_stationary`` std of its spectrum); ``False``:
            a threshold that follows a smoothed noise floor over ``time_constant_s``.
        prop_decrease: how much of the gated noise is removed, 0 (none) to 1 (all).
        time_constant_s: smoothing window of the non-stationary noise floor, seconds.
        n_std_thresh_stationary: threshold in standard deviations (stationary mode).
    """

    stationary: bool = False
    prop_decrease: float = 1.0
    time_constant_s: float = 2.0
    n_std_thresh_stationary: float = 1.5

    def to_dict(self) -> dict:
        return asdict(self)


def reduce_noise(y: np.ndarray, sr: int, *, config: DenoiseConfig = DenoiseConfig()) -> np.ndarray:
    """Spectral-gate ``y``.

    Args:
        y: mono signal, ``np.ndarray [shape=(n,)]`` float, any level.
        sr: sample rate in Hz.
        config: gating parameters.

    Returns:
        ``np.ndarray [shape=(n,)]`` float32, same rate and length.

    Raises:
        AudioError: noisereduce failed on this signal (message says why).
    """
    import noisereduce

    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"reduce_noise expects a mono signal, got shape {y.shape}")
    try:
        out = noisereduce.reduce_noise(
            y=y, sr=int(sr), stationary=config.stationary, prop_decrease=config.prop_decrease,
            time_constant_s=config.time_constant_s, n_std_thresh_stationary=config.n_std_thresh_stationary,
            n_jobs=1,
        )
    except Exception as exc:  # noisereduce raises plain ValueErrors for degenerate input
        raise AudioError(f"noise reduction failed: {type(exc).__name__}: {exc}") from exc
    out = np.asarray(out, dtype=np.float32)
    if out.shape != y.shape or not np.all(np.isfinite(out)):
        raise AudioError("noise reduction produced an invalid signal")
    return out
