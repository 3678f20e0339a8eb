"""Clips for the gender training: prepared signals, their log-mels, and the cached speed and channel versions.

Every clip goes through :func:`pipeline.audio.load_audio` (trimmed and
level-normalised to 16 kHz mono, exactly as at inference); its log-mel (before
mean normalisation) is computed once with :class:`pipeline.ecapa.LogMelFrontEnd`
and kept in memory, together with speed-perturbed copies (resampled waveforms:
x0.9 and x1.1 change tempo and pitch by 10 %, about 1.8 semitones, so the gender
label stays valid) and copies through random recording channels
(:mod:`training.channel`). :func:`clip_versions` assembles them per clip;
:func:`select_rows` and :func:`prepare_clips` turn a recipe into :class:`Clips`.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from training.corpus import Utterance, read_manifest

if TYPE_CHECKING:
    from training.gender_recipe import GenderRecipe


def gender_rows(utterances: Iterable[Utterance], split: str) -> list[Utterance]:
    """Rows of ``split`` whose gender is ``male`` or ``female``."""
    return [u for u in utterances if u.split == split and u.gender in ("male", "female")]


def load_signals(utterances: Sequence[Utterance], *, log_every: int = 1000) -> list[np.ndarray | None]:
    """Prepared signals (``load_audio(...).samples``: float32 ``[samples]`` at 16 kHz) of ``utterances``.

    ``None`` where :func:`pipeline.audio.load_audio` refuses the clip (reported on
    stderr); progress printed every ``log_every`` clips (0: never).
    """
    from pipeline.audio import load_audio
    from pipeline.errors import AudioError

    out: list[np.ndarray | None] = []
    for i, u in enumerate(utterances):
        try:
            out.append(load_audio(u.path).samples)
        except AudioError as exc:
            print(f"  skipped {u.relpath}: {exc.message}", file=sys.stderr)
            out.append(None)
        if log_every and (i + 1) % log_every == 0:
            print(f"  loaded {i + 1}/{len(utterances)}", flush=True)
    return out


def compute_log_mels(signals: Sequence[np.ndarray], frontend) -> list:
    """Un-normalised log-mel ``[80, frames]`` tensors (10 ms frames) of ``signals`` (one front-end pass each)."""
    import torch

    with torch.inference_mode():
        return [frontend.log_mel(torch.from_numpy(y)[None])[0].clone() for y in signals]


def speed_perturb(y: np.ndarray, factor: float) -> np.ndarray:
    """``y [samples]`` played ``factor`` times faster (resampled: tempo and pitch both scale by ``factor``).

    The result has ``len(y) / factor`` samples; its RMS is restored to that of ``y``.
    ``factor == 1.0`` returns ``y`` itself.
    """
    import torch
    import torchaudio

    if factor == 1.0:
        return y
    frac = Fraction(factor).limit_denominator(100)
    # reading y as if sampled at factor * sr and resampling to sr shortens it by 1/factor
    out = torchaudio.functional.resample(torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32)),
                                         orig_freq=frac.numerator, new_freq=frac.denominator).numpy()
    rms_in, rms_out = float(np.sqrt(np.mean(y**2))), float(np.sqrt(np.mean(out**2)))
    if rms_out > 0:
        out = out * (rms_in / rms_out)
    return out.astype(np.float32)


def channel_versions(signals: Sequence[np.ndarray], frontend, *, copies: int, seed: int,
                     sr: int = 16000, recipe=None) -> tuple[list[list], list]:
    """Log-mels of ``copies`` random-channel versions of each signal, and the channels drawn.

    Returns ``(mels, channels)``: ``mels[i]`` is a list of ``copies`` log-mels
    ``[80, frames]`` of ``signals[i]`` (``sr`` Hz); ``channels`` lists every
    :class:`training.channel.Channel` drawn. Uses its own generator
    (``seed + 7919``), so the training stream is unchanged. ``recipe``: the
    :class:`training.channel.ChannelRecipe` drawn from (default: its defaults).
    """
    from training.channel import apply_channel, draw_channel

    rng = np.random.default_rng(seed + 7919)
    out, drawn = [], []
    for i, y in enumerate(signals):
        versions = []
        for _ in range(copies):
            channel = draw_channel(rng) if recipe is None else draw_channel(rng, recipe)
            drawn.append(channel)
            versions.append(apply_channel(y, sr, channel, seed=int(rng.integers(2**31))))
        out.append(compute_log_mels(versions, frontend))
        if (i + 1) % 1000 == 0:
            print(f"channel copies: {i + 1}/{len(signals)}", flush=True)
    return out, drawn


def clip_versions(signals: Sequence[np.ndarray], frontend, *, speed_factors: Sequence[float],
                  channel_copies: int, seed: int, channel_recipe=None) -> tuple[list, list]:
    """The cached log-mels training draws from, one entry per signal, and the channels drawn.

    Entry ``i`` is the log-mel ``[80, frames]`` of ``signals[i]`` when there is
    nothing else to cache, else the list ``[original, speed copies..., channel
    copies...]`` (``speed_factors[0]`` must be 1.0, the original; channel copies
    by :func:`channel_versions` with ``seed`` and ``channel_recipe``). Returns ``(mels, channels)``.
    """
    mels = compute_log_mels(signals, frontend)
    if len(speed_factors) > 1:
        copies = [compute_log_mels([speed_perturb(y, f) for y in signals], frontend) for f in speed_factors[1:]]
        mels = [[m, *(c[j] for c in copies)] for j, m in enumerate(mels)]
    channels: list = []
    if channel_copies > 0:
        channel_mels, channels = channel_versions(signals, frontend, copies=channel_copies, seed=seed,
                                                     recipe=channel_recipe)
        mels = [[*(m if isinstance(m, list) else [m]), *channel_mels[j]] for j, m in enumerate(mels)]
    return mels, channels


@dataclass
class Clips:
    """The clips of one split, ready to train on or to score.

    ``mels[i]``: log-mel ``[80, frames]`` of clip ``i``, or the list of its cached
    versions (:func:`training.gender_signals.clip_versions`); ``labels [n]``:
    index into ``GENDER_LABELS``; ``f0``: median F0 in Hz per clip (only for
    pitch balance); ``channels``: the recording channels drawn for the copies.
    """

    rows: list[Utterance]
    mels: list
    labels: np.ndarray
    f0: list | None = None
    channels: list = field(default_factory=list)


def select_rows(recipe: GenderRecipe, rng: np.random.Generator) -> tuple[list, list, list, list]:
    """``(all_rows, kept_manifest, fit_rows, val_rows)`` of the recipe (``val_rows`` empty when val is fitted).

    ``kept_manifest`` is the manifest without ``exclude_corpora``; ``exclude_speakers``
    are left out of the fit and val rows only (ids the manifest lacks are ignored: the
    shipped recipe names real speakers, and a smaller or synthetic corpus has none of
    them); ``max_rows`` draws (from ``rng``) that many fit rows, then val rows.
    """
    manifest = read_manifest()
    unknown = set(recipe.excluded) - {u.corpus for u in manifest}
    if unknown:
        raise ValueError(f"exclude_corpora names corpora not in the manifest: {sorted(unknown)}")
    kept = [u for u in manifest if u.corpus not in recipe.excluded]
    left_out = set(recipe.exclude_speakers)
    fitted = [u for u in kept if u.speaker not in left_out]
    fit_rows = [u for split in recipe.fit_splits for u in gender_rows(fitted, split)]
    val_rows = gender_rows(fitted, "val") if recipe.select_on_val else []
    if recipe.max_rows:
        fit_rows = [fit_rows[i] for i in rng.permutation(len(fit_rows))[:recipe.max_rows]]
        val_rows = [val_rows[i] for i in rng.permutation(len(val_rows))[:recipe.max_rows]]
    return manifest, kept, fit_rows, val_rows


def prepare_clips(rows: Sequence[Utterance], frontend, recipe: GenderRecipe, *, fit: bool) -> Clips:
    """Load ``rows`` (refused clips dropped) and cache their log-mels; ``fit`` adds versions and F0s."""
    from pipeline.gender import GENDER_LABELS
    from training.gender_recipe import channel_recipe

    signals = load_signals(rows)
    keep = [i for i, y in enumerate(signals) if y is not None]
    rows, signals = [rows[i] for i in keep], [signals[i] for i in keep]
    channels: list = []
    if fit:
        mels, channels = clip_versions(signals, frontend, speed_factors=recipe.speed_factors,
                                       channel_copies=recipe.channel_copies, seed=recipe.seed,
                                       channel_recipe=channel_recipe(recipe))
    else:
        mels = compute_log_mels(signals, frontend)
    labels = np.array([GENDER_LABELS.index(u.gender) for u in rows])
    f0 = None
    if fit and recipe.pitch_balance_power > 0:
        from training.pitch import fast_median_f0

        f0 = [fast_median_f0(y) for y in signals]
    return Clips(rows, mels, labels, f0, channels)
