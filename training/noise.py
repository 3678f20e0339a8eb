"""Noise on raw waveforms: pink noise, babble, and the one function that mixes noise in at an SNR.

Noise is added to the decoded clip *before* :func:`pipeline.audio.prepare_signal`,
like real noise. An SNR needs a signal power to be relative to, and the project
uses two (:func:`mix_at_snr`'s ``reference``):

* ``"speech"``: the power of the span :func:`pipeline.audio.trim_silence` keeps
  (:func:`speech_power`), so the silent lead and tail of a RAVDESS clip do not make
  the noise weaker than the stated SNR. The noise study and the gender robustness
  comparison use it (:func:`corrupt`).
* ``"clip"``: the mean power of the whole clip (:func:`clip_power`). The emotion
  training's noise augmentation (:func:`training.augment.add_noise`) uses it.

A clip with a second of silence either side of two seconds of speech has its
``"clip"`` SNR about 3 dB below its ``"speech"`` SNR for the same noise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

#: The signal powers an SNR can be relative to (see the module docstring).
SNR_REFERENCES = ("speech", "clip")


def pink_noise(n: int, *, seed: int) -> np.ndarray:
    """Unit-power 1/f (pink) noise, ``np.ndarray [shape=(n,)]`` float64."""
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.arange(spectrum.size, dtype=np.float64)
    freqs[0] = 1.0
    pink = np.fft.irfft(spectrum / np.sqrt(freqs), n=n)
    return pink / (np.sqrt(np.mean(pink**2)) or 1.0)


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
    """The ``n`` LibriSpeech ``train`` readers (half female) whose babble the noise studies add.

    Kept out of any training babble, so the studies' babble stays unseen noise.
    """
    pool = [u for u in utterances if u.corpus == "librispeech" and u.split == "train"]
    return [u for u in pool if u.gender == "female"][: n // 2] + [u for u in pool if u.gender == "male"][: n - n // 2]


def babble_talkers(utterances: Sequence, n: int = 6) -> list[np.ndarray]:
    """The :func:`study_babble_rows` readers (3 female, 3 male when ``n = 6``) as 16 kHz arrays."""
    import soundfile as sf

    from pipeline.audio import to_mono_float

    return [to_mono_float(sf.read(u.path, dtype="float32")[0])[0] for u in study_babble_rows(utterances, n)]


def clip_power(y: np.ndarray) -> float:
    """Mean power of the whole of ``y [shape=(n,)]``."""
    return float(np.mean(np.square(y, dtype=np.float64)))


def speech_power(y: np.ndarray) -> float:
    """Mean power of the non-silent span of ``y [shape=(n,)]`` (16 kHz), as trimming defines it."""
    from pipeline.audio import trim_silence

    peak = float(np.max(np.abs(y))) or 1.0
    span = trim_silence((y / peak).astype(np.float32))
    span = span if span.size else y / peak
    return float(np.mean(np.square(span, dtype=np.float64))) * peak**2


def mix_at_snr(y: np.ndarray, noise: np.ndarray, snr_db: float, *, reference: str, seed: int = 0,
               noise_power: float | None = None) -> np.ndarray:
    """``y + g * noise`` (float32) with ``g`` putting the noise ``snr_db`` dB below ``y``'s ``reference`` power.

    Args:
        y: the clean clip ``[shape=(n,)]``.
        noise: noise of any length; a stretch starting at a random offset (seeded by ``seed``)
            is tiled to ``n`` samples. Noise as long as ``y`` is used as is.
        snr_db: the signal-to-noise ratio in dB.
        reference: ``"speech"`` (:func:`speech_power`) or ``"clip"`` (:func:`clip_power`).
        noise_power: the noise's mean power when known by construction (1.0 for :func:`pink_noise`);
            measured over the stretch used when None.
    """
    if reference not in SNR_REFERENCES:
        raise ValueError(f"reference must be one of {SNR_REFERENCES}, got {reference!r}")
    signal = speech_power(y) if reference == "speech" else clip_power(y)
    rng = np.random.default_rng(seed)
    start = int(rng.integers(0, max(1, noise.size - y.size)))
    segment = np.resize(noise[start:], y.size).astype(np.float64)
    if noise_power is None:
        noise_power = float(np.mean(segment**2)) or 1.0
    gain = np.sqrt(signal / noise_power / 10 ** (snr_db / 10))
    return (y + gain * segment).astype(np.float32)


@dataclass(frozen=True)
class NoiseCondition:
    """Noise added to a clip: ``noise`` is ``"clean"``, ``"pink"`` or ``"babble"``; ``snr_db`` None when clean."""

    noise: str
    snr_db: float | None

    @property
    def label(self) -> str:
        return "clean" if self.noise == "clean" else f"{self.noise} {self.snr_db:g} dB"


def corrupt(y: np.ndarray, condition: NoiseCondition, *, babble: np.ndarray, seed: int) -> np.ndarray:
    """The clip ``y [shape=(n,)]`` under ``condition``'s noise, SNR against its speech part.

    Pink noise is drawn afresh per clip (``seed``); babble is a seeded stretch of ``babble``.
    """
    if condition.noise == "clean":
        return y
    if condition.noise == "pink":
        return mix_at_snr(y, pink_noise(y.size, seed=seed), condition.snr_db, reference="speech", seed=seed)
    if condition.noise == "babble":
        return mix_at_snr(y, babble, condition.snr_db, reference="speech", seed=seed)
    raise ValueError(f"unknown noise {condition.noise!r}")
