"""Training-time data augmentation on raw waveforms.

Each augmentation is applied to the decoded signal *before*
:func:`pipeline.audio.prepare_signal`, so augmented clips are trimmed and
level-normalised exactly like real input.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from pipeline.audio import resample


@dataclass(frozen=True)
class Augmentation:
    """A named, seeded waveform transform.

    Attributes:
        name: ``"speed"`` (resampling by ``factor``: tempo and pitch together,
            as in Kaldi speed perturbation) or ``"noise"`` (pink-ish noise at
            ``snr_db`` relative to the signal power).
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


def pink_noise(n: int, *, seed: int) -> np.ndarray:
    """Unit-power 1/f (pink) noise, ``np.ndarray [shape=(n,)]`` float64."""
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.arange(spectrum.size, dtype=np.float64)
    freqs[0] = 1.0
    pink = np.fft.irfft(spectrum / np.sqrt(freqs), n=n)
    return pink / (np.sqrt(np.mean(pink**2)) or 1.0)


def add_noise(y: np.ndarray, *, snr_db: float, seed: int) -> np.ndarray:
    """Add pink noise to ``y [shape=(n,)]`` at ``snr_db`` dB below the clip's mean power (float32)."""
    signal_power = float(np.mean(np.square(y, dtype=np.float64)))
    noise = pink_noise(y.size, seed=seed) * np.sqrt(signal_power / (10 ** (snr_db / 10)))
    return (y + noise).astype(np.float32)


def make_babble(talkers: Sequence[np.ndarray], *, seconds: float, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """Sum of ``talkers`` (each RMS-normalised and looped to ``seconds``, random start). ``[shape=(n,)]`` float32."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    out = np.zeros(n, dtype=np.float64)
    for y in talkers:
        y = y / (np.sqrt(np.mean(np.square(y, dtype=np.float64))) or 1.0)
        start = int(rng.integers(0, y.size))
        out += np.resize(np.roll(y, -start), n)
    return out.astype(np.float32)


def study_babble_rows(utterances: Sequence, n: int = 6) -> list:
    """The ``n`` LibriSpeech ``train`` readers (half female) whose babble the noise study adds.

    Kept out of any training babble, so the study's babble stays unseen noise.
    """
    pool = [u for u in utterances if u.corpus == "librispeech" and u.split == "train"]
    return [u for u in pool if u.gender == "female"][: n // 2] + [u for u in pool if u.gender == "male"][: n - n // 2]


#: The augmentation set measured in ``python -m studies.experiments``.
DEFAULT_AUGMENTATIONS = (
    Augmentation("speed", factor=0.9),
    Augmentation("speed", factor=1.1),
    Augmentation("noise", snr_db=15.0),
)
