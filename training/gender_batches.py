"""Mini-batches for the gender training: which clips are drawn, which cached version, and how each crop is made.

Clips are drawn with :func:`sampling_weights` (optionally :func:`pitch_balance`);
each clip's version (original, speed-perturbed or channel copy) with
:func:`version_probs`; :func:`make_batch` crops them to a common length, adds
noise in the mel power domain at a random SNR, mean-normalises every crop per
band and optionally applies :func:`spec_augment`. Every draw comes from one
``numpy`` generator, in a fixed order, so a recipe's run is reproducible.
Defaults come from ``training/recipes/gender.yaml`` (the shipped recipe).
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Sequence

import numpy as np

from pipeline.audio import DEFAULT_AUDIO_CONFIG
from training.corpus import Utterance
from training.gender_noise import draw_noise
from training.gender_recipe import GenderRecipe

_SHIPPED = GenderRecipe()
#: Mean power of a prepared clip (``load_audio`` normalises to ``target_rms_dbfs``), the SNR reference.
SIGNAL_POWER = 10 ** (DEFAULT_AUDIO_CONFIG.target_rms_dbfs / 10)


def sampling_weights(utterances: Sequence[Utterance], *, by_speaker: bool = True) -> np.ndarray:
    """Per-clip sampling probabilities ``[n]`` (sum 1).

    Each (corpus, gender) group gets a mass proportional to ``sqrt(group size)``
    (clips); inside a group every speaker gets the same share (``by_speaker``,
    else every clip); then both genders are scaled to half of the mass.

    This keeps ASED (1500 train clips) and RAVDESS from dominating while not
    over-sampling the 106-clip LibriSpeech groups 10-fold, and makes every
    speaker of an emotional corpus count equally.
    """
    groups = Counter((u.corpus, u.gender) for u in utterances)
    speakers: dict[tuple, set] = defaultdict(set)
    for u in utterances:
        speakers[(u.corpus, u.gender)].add(u.speaker)
    per_speaker = Counter(u.speaker for u in utterances)
    if by_speaker:
        w = np.array([
            math.sqrt(groups[(u.corpus, u.gender)])
            / (len(speakers[(u.corpus, u.gender)]) * per_speaker[u.speaker])
            for u in utterances
        ])
    else:
        w = np.array([1.0 / math.sqrt(groups[(u.corpus, u.gender)]) for u in utterances])
    return _halve_by_gender(w, [u.gender for u in utterances])


def _halve_by_gender(w: np.ndarray, genders: Sequence[str]) -> np.ndarray:
    """``w`` scaled so that each gender holds half of the mass, then normalised to sum 1."""
    genders = np.asarray(genders)
    for g in ("male", "female"):
        mask = genders == g
        if mask.any():
            w[mask] *= 0.5 / w[mask].sum()
    return w / w.sum()


def pitch_balance(weights: np.ndarray, f0_hz: Sequence[float | None], genders: Sequence[str], *,
                  bin_semitones: float = _SHIPPED.pitch_bin_semitones, power: float = 0.5) -> np.ndarray:
    """``weights [n]`` re-weighted so that, within each gender, rare voice pitches are drawn more often.

    Clips are binned by their median F0 (``f0_hz [n]`` in Hz, ``bin_semitones`` wide
    bins); each clip's weight is divided by the binned *weighted* share of its
    pitch to the ``power`` (0: unchanged, 1: a flat pitch distribution per gender).
    Clips without an F0 keep their weight. Both genders are scaled back to half
    of the mass. High-pitched men and low-pitched women, the voices a model
    trained on other corpora misjudges (``studies/corpus_pitch/report.md``), gain weight.
    """
    w = np.asarray(weights, dtype=np.float64).copy()
    genders = np.asarray(genders)
    f0 = np.array([np.nan if v is None else float(v) for v in f0_hz])
    bins = np.floor(12.0 * np.log2(np.where(np.isfinite(f0), f0, 100.0) / 100.0) / bin_semitones)
    for g in np.unique(genders):
        mask = (genders == g) & np.isfinite(f0)
        if not mask.any():
            continue
        mass = defaultdict(float)
        for b, wi in zip(bins[mask], w[mask]):
            mass[b] += wi
        total = sum(mass.values())
        share = np.array([mass[b] / total for b in bins[mask]])
        w[mask] = w[mask] / share**power
    return _halve_by_gender(w, genders)


def version_probs(n_speed: int, n_channel: int, *, speed_probs: Sequence[float] = _SHIPPED.speed_probs,
                  channel_share: float = _SHIPPED.channel_share) -> tuple[float, ...] | None:
    """Sampling probabilities of a clip's cached versions ``[original, speed copies..., channel copies...]``.

    Without channel copies: ``speed_probs`` when ``n_speed`` matches it, else
    ``None`` (uniform), as the shipped recipe always drew. With them: the speed
    versions share ``1 - channel_share`` in their usual proportions and the
    channel copies share ``channel_share`` equally.
    """
    speed_probs = tuple(speed_probs)
    if n_channel <= 0:
        return speed_probs if n_speed == len(speed_probs) else None
    speed = speed_probs if n_speed == len(speed_probs) else tuple([1.0 / n_speed] * n_speed)
    return tuple(p * (1.0 - channel_share) for p in speed) + tuple([channel_share / n_channel] * n_channel)


def spec_augment(
    x, rng: np.random.Generator, *, freq_masks: int = _SHIPPED.spec_freq_masks,
    max_freq_width: int = _SHIPPED.spec_max_freq_width, time_masks: int = _SHIPPED.spec_time_masks,
    max_time_fraction: float = _SHIPPED.spec_max_time_fraction,
):
    """SpecAugment on mean-normalised log-mels ``x [batch, bands, frames]`` (in place; masks set to 0).

    Per example: ``freq_masks`` bands of width U{0..max_freq_width}, then
    ``time_masks`` stretches of U{0..max_time_fraction * frames} frames.
    Returns ``x``.
    """
    bands, frames = int(x.shape[1]), int(x.shape[2])
    for b in range(int(x.shape[0])):
        for _ in range(freq_masks):
            width = int(rng.integers(0, max_freq_width + 1))
            if width:
                f0 = int(rng.integers(0, bands - width + 1))
                x[b, f0 : f0 + width, :] = 0.0
        max_t = int(max_time_fraction * frames)
        for _ in range(time_masks):
            width = int(rng.integers(0, max_t + 1)) if max_t > 0 else 0
            if width:
                t0 = int(rng.integers(0, frames - width + 1))
                x[b, :, t0 : t0 + width] = 0.0
    return x


def make_batch(
    mels: Sequence, indices: Sequence[int], *, crop_frames: int, noise, rng: np.random.Generator,
    noise_prob: float = _SHIPPED.noise_prob, snr_db: tuple[float, float] = _SHIPPED.snr_db,
    signal_power: float = SIGNAL_POWER, specaugment: bool = False,
    version_probs: Sequence[float] | None = None, speed_probs: Sequence[float] = _SHIPPED.speed_probs,
):
    """Random crops of ``mels[indices]`` to a common length, noise-augmented and mean-normalised.

    ``mels[i]`` is a log-mel ``[80, frames]`` or a sequence of alternative
    versions of clip ``i`` (original, speed-perturbed and channel copies),
    drawn with ``version_probs`` (default: ``speed_probs`` when there are
    as many versions, else uniformly). Returns ``[batch, 80, frames]``
    float32 with ``frames = min(crop_frames, shortest clip)``; SpecAugment
    masks (shipped settings) when ``specaugment``.

    ``noise`` is ``None``, one unit-variance noise mel power ``[80, 1 or frames]``
    or a :func:`training.gender_noise.noise_bank`. With probability ``noise_prob``
    a crop gets noise of a kind drawn uniformly (then a track uniformly, and a
    random stretch of a non-stationary track) at an SNR in dB drawn from
    ``snr_db`` against ``signal_power`` (the level :func:`pipeline.audio.load_audio`
    normalises to), added in the power domain.
    """
    import torch

    chosen = []
    for i in indices:
        m = mels[i]
        if isinstance(m, (list, tuple)):
            p = version_probs if version_probs is not None else (speed_probs if len(m) == len(speed_probs) else None)
            m = m[int(rng.choice(len(m), p=p))]
        chosen.append(m)
    length = min(crop_frames, min(int(m.shape[1]) for m in chosen))
    crops = []
    for m in chosen:
        start = int(rng.integers(0, m.shape[1] - length + 1))
        crop = m[:, start : start + length]
        noisy = rng.random() < noise_prob  # drawn even without noise: one random stream whatever the options
        if noisy and noise is not None:
            snr = rng.uniform(*snr_db)
            noise_power = signal_power / (10 ** (snr / 10))
            crop = torch.log(torch.exp(crop) + noise_power * draw_noise(noise, length, rng))
        crops.append(crop - crop.mean(dim=1, keepdim=True))
    x = torch.stack(crops)
    if specaugment:
        spec_augment(x, rng)
    return x
