"""Voice baselines for the voice_baseline study: which clips form one voice (contexts) and the
voice-relative feature transforms of each variant (see plan.md beside this file).

Features ``Z [shape=(n_clips, 483)]`` are the raw statistics standardised with the fitting rows'
mean and standard deviation; a context is an index array into the rows of one voice.
"""
from __future__ import annotations

import math
from itertools import combinations
from typing import Sequence

import numpy as np

#: Pseudo-clips of unit variance that shrink a voice's per-feature variance toward 1.
STD_PSEUDO = 2.0


# --------------------------------------------------------------------------------------------
# Contexts: which clips form one voice. Each is an index array into the rows being scored.

def voice_contexts(speakers: Sequence[str]) -> list[np.ndarray]:
    """One context per speaker: all of its rows (in row order)."""
    speakers = np.asarray(speakers)
    return [np.flatnonzero(speakers == s) for s in dict.fromkeys(speakers.tolist())]


def emotion_contexts(speakers: Sequence[str], emotions: Sequence[str]) -> list[np.ndarray]:
    """One context per speaker x emotion group (a voice with one steady emotion)."""
    keys = [f"{s}\x00{e}" for s, e in zip(speakers, emotions)]
    return voice_contexts(keys)


def pair_contexts(speakers: Sequence[str], emotions: Sequence[str], *, all_pairs: bool = True,
                  rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """Two-emotion groups of each speaker.

    ``all_pairs``: every pair of the speaker's emotions (a row is in one context per other emotion);
    otherwise the speaker's emotions are shuffled by ``rng`` and paired consecutively, each row
    once (with an odd count, the last emotion is paired with the first, whose rows then appear twice).
    A speaker with a single emotion gives that one group.
    """
    speakers, emotions = np.asarray(speakers), np.asarray(emotions)
    out = []
    for s in dict.fromkeys(speakers.tolist()):
        mine = speakers == s
        labels = list(dict.fromkeys(emotions[mine].tolist()))
        if len(labels) < 2:
            out.append(np.flatnonzero(mine))
            continue
        if all_pairs:
            pairs = list(combinations(labels, 2))
        else:
            order = [labels[i] for i in (rng or np.random.default_rng(0)).permutation(len(labels))]
            pairs = [(order[i], order[i + 1] if i + 1 < len(order) else order[0]) for i in range(0, len(order), 2)]
        for a, b in pairs:
            out.append(np.flatnonzero(mine & np.isin(emotions, (a, b))))
    return out


def chunk_contexts(speakers: Sequence[str], sizes: int | Sequence[int], rng: np.random.Generator) -> list[np.ndarray]:
    """Each speaker's rows shuffled and cut into chunks (each row in exactly one chunk).

    ``sizes``: one chunk size, or sizes to draw each chunk's size from; the last chunk of a speaker
    may be smaller.
    """
    out = []
    for rows in voice_contexts(speakers):
        rows = rows[rng.permutation(rows.size)]
        start = 0
        while start < rows.size:
            n = sizes if isinstance(sizes, (int, np.integer)) else int(rng.choice(sizes))
            out.append(np.sort(rows[start:start + n]))
            start += n
    return out


# --------------------------------------------------------------------------------------------
# Baseline transforms of one context ``Zc [n, d]`` (standardised features of one voice).

def shrunk_mean(Zc: np.ndarray, k: float) -> np.ndarray:
    """The context mean shrunk toward the population mean (0) with weight ``k/(k+n)``; zeros when ``n == 0``."""
    n = Zc.shape[0]
    if n == 0:
        return np.zeros(Zc.shape[1])
    return Zc.mean(axis=0) * (n / (n + k))


def shrunk_std(Zc: np.ndarray, pseudo: float = STD_PSEUDO) -> np.ndarray:
    """Per-feature standard deviation with the variance shrunk toward 1 by ``pseudo`` clips."""
    n = Zc.shape[0]
    var = Zc.var(axis=0) if n else np.zeros(Zc.shape[1])
    return np.sqrt((n * var + pseudo) / (n + pseudo))


def lowest_mean(Zc: np.ndarray, scores: np.ndarray, share: float = 1 / 3) -> np.ndarray:
    """Mean of the ``ceil(share * n)`` rows with the lowest ``scores`` (at least one)."""
    m = max(1, math.ceil(share * Zc.shape[0]))
    return Zc[np.argsort(scores, kind="stable")[:m]].mean(axis=0)


def context_features(variant: str, Zc: np.ndarray, *, k: float | None = None,
                     arousal: np.ndarray | None = None) -> np.ndarray:
    """The features of each clip of one context under ``variant`` (rows as ``Zc``)."""
    n = Zc.shape[0]
    if variant == "raw":
        return Zc
    if variant == "sub":
        return Zc - Zc.mean(axis=0)
    if variant == "raw+std":
        return np.hstack([Zc, (Zc - Zc.mean(axis=0)) / shrunk_std(Zc)])
    if variant == "raw+shrunk":
        return np.hstack([Zc, Zc - shrunk_mean(Zc, k)])
    if variant == "raw+calm":
        return np.hstack([Zc, Zc - lowest_mean(Zc, arousal)])
    if variant == "raw+typical":
        return np.hstack([Zc, Zc - np.median(Zc, axis=0)])
    if variant == "groups":
        spread = float(Zc.std(axis=0).mean())
        extra = np.tile([math.log(n), spread], (n, 1))
        return np.hstack([Zc, Zc - shrunk_mean(Zc, k), extra])
    raise ValueError(f"unknown variant {variant!r}")


def featurise(variant: str, Z: np.ndarray, contexts: Sequence[np.ndarray], *, k: float | None = None,
              arousal: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Stack :func:`context_features` over ``contexts``; returns ``(F [m, d'], rows [m])`` (row of ``Z`` per line)."""
    blocks, rows = [], []
    for c in contexts:
        blocks.append(context_features(variant, Z[c], k=k, arousal=None if arousal is None else arousal[c]))
        rows.append(c)
    return np.vstack(blocks), np.concatenate(rows)


# --------------------------------------------------------------------------------------------
# Models.
