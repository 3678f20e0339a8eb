"""Training-time data augmentation on raw waveforms.

Each augmentation is applied to the decoded signal *before*
:func:`pipeline.audio.prepare_signal`, so augmented clips are trimmed and
level-normalised exactly like real input.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.audio import resample
from training.noise import mix_at_snr, pink_noise


@dataclass(frozen=True)
class Augmentation:
    """A named, seeded waveform transform.

    Attributes:
        name: ``"speed"`` (resampling by ``factor``: tempo and pitch together,
            as in Kaldi speed perturbation) or ``"noise"`` (pink noise at
            ``snr_db`` relative to the whole clip's power, :func:`add_noise`).
        factor: speed factor for ``"speed"``.
        snr_db: signal-to-noise ratio in dB for ``"noise"``.
    """

    name: str
    factor: float = 1.0
    snr_db: float = 20.0

    @property
    def tag(self) -> str:
        return f"speed{self.factor:g}" if self.name == "speed" else f"noise{self.snr_db:g}dB"

    def apply(self, y: np.ndarray, sr: int, *, seed: int) -> np.ndarray:
        """Return the transformed copy of ``y [shape=(n,)]`` at the same rate ``sr``."""
        if self.name == "speed":
            # Playing n samples at sr * factor: resample from sr * factor to sr.
            return resample(y, int(round(sr * self.factor)), sr, quality="HQ")
        if self.name == "noise":
            return add_noise(y, snr_db=self.snr_db, seed=seed)
        raise ValueError(f"unknown augmentation {self.name!r}")


def add_noise(y: np.ndarray, *, snr_db: float, seed: int) -> np.ndarray:
    """Add pink noise to ``y [shape=(n,)]`` at ``snr_db`` dB below the whole clip's mean power (float32).

    The ``"clip"`` SNR of :func:`training.noise.mix_at_snr` (the noise studies use ``"speech"``).
    """
    return mix_at_snr(y, pink_noise(y.size, seed=seed), snr_db, reference="clip", seed=seed, noise_power=1.0)
