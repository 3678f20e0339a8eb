"""Re-segmentation: after the voices of a recording are known, which voice speaks in every 0.1 s frame.

Each speech region's frames take an embedding from the windows covering them (:func:`region_frames`).

- :func:`resegment` (plain): each frame takes the voice whose centroid is most similar; runs under
  ``min_run_s`` join the neighbour they resemble most.
- :func:`hmm_resegment` (in the manner of VBx): an HMM with one state per voice decodes the frames.
  Emission log p(frame | voice) = κ · cos(frame embedding, voice centroid), a von Mises-Fisher model on
  the unit sphere (VBx scores x-vectors with a trained PLDA; the GE2E encoder has none); stay with
  probability ``loop``, switch to each other voice with (1 − loop)/(k − 1); the first frame of a region
  takes each voice in proportion to its share of the windows. The centroids are re-estimated from all
  frames weighted by their forward-backward posteriors (``passes - 1`` times), as VBx alternates soft
  assignments and speaker models; then Viterbi gives each frame's voice, and short runs join a
  neighbour as above. With ``overlap_posterior``, a frame whose second most likely voice is at least
  that likely also carries it (stretches under ``min_overlap_s`` dropped): overlapped speech.
- :func:`carry_voices`: voices found over whole segments carried to the windows, so that the HMM can
  re-segment them too.

Compared in ``studies/room_conversations`` (round 7).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from pipeline.vad import SpeechRegion
from pipeline.voices import _centroids


@dataclass(frozen=True)
class Window:
    """One embedding window: its span and the index of the speech region it lies in."""

    start_s: float
    end_s: float
    region: int

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def samples(self, sr: int = 16000) -> slice:
        return slice(int(round(self.start_s * sr)), int(round(self.end_s * sr)))


def _unit(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, np.float64)
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class VoiceSegment:
    """A stretch of one voice: seconds from the start of the recording and the voice index."""

    start_s: float
    end_s: float
    voice: int

    @property
    def region(self) -> SpeechRegion:
        return SpeechRegion(self.start_s, self.end_s)


def resegment(regions: Sequence[SpeechRegion], windows: Sequence[Window], X: np.ndarray, labels: np.ndarray, *,
              step_s: float = 0.1, min_run_s: float = 0.5) -> list[VoiceSegment]:
    """Frame-level voices inside each region -> time-ordered runs of one voice.

    Args:
        regions: the speech regions the ``windows`` were cut from.
        X: ``[shape=(n_windows, d)]`` window embeddings; labels: ``[shape=(n_windows,)]`` voice per window.
        step_s: frame step, seconds; min_run_s: shorter runs join the neighbour they resemble most.
    """
    X = _unit(X)
    labels = np.asarray(labels, int)
    if not len(windows):
        return []
    w = np.array([win.duration_s for win in windows])
    C = _centroids(X, w, labels)
    out: list[VoiceSegment] = []
    for edges, frame_emb in region_frames(regions, windows, X, step_s=step_s):
        frame_voice = np.argmax(frame_emb @ C.T, axis=1)
        runs = _runs(frame_voice)
        runs = _absorb_short(runs, frame_emb, C, max(1, int(round(min_run_s / step_s))))
        out.extend(VoiceSegment(float(edges[a]), float(edges[b]), v) for a, b, v in runs)
    return out


def region_frames(regions: Sequence[SpeechRegion], windows: Sequence[Window], X: np.ndarray, *,
                  step_s: float = 0.1) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per region holding windows: frame edges ``[shape=(f + 1,)]`` (seconds) and frame embeddings ``[shape=(f, d)]``.

    A frame's embedding is the normalised mean of the (unit) embeddings ``X`` of the windows covering its
    centre; a frame no window covers takes the nearest window's.
    """
    X = _unit(X)
    by_region: dict[int, list[int]] = {}
    for i, win in enumerate(windows):
        by_region.setdefault(win.region, []).append(i)
    out = []
    for k, r in enumerate(regions):
        mine = by_region.get(k)
        if not mine:
            continue
        n_frames = max(1, int(round(r.duration_s / step_s)))
        edges = np.linspace(r.start_s, r.end_s, n_frames + 1)
        centres = 0.5 * (edges[:-1] + edges[1:])
        starts = np.array([windows[i].start_s for i in mine])
        ends = np.array([windows[i].end_s for i in mine])
        cover = (centres[:, None] >= starts[None, :]) & (centres[:, None] < ends[None, :])
        empty = ~cover.any(axis=1)  # frames no window covers take the nearest window
        if empty.any():
            mid = 0.5 * (starts + ends)
            cover[np.flatnonzero(empty), np.argmin(np.abs(centres[empty, None] - mid[None, :]), axis=1)] = True
        out.append((edges, _unit(cover.astype(np.float64) @ X[mine])))
    return out


def _runs(values: np.ndarray) -> list[tuple[int, int, int]]:
    """``(first, end, value)`` of each run of equal values (``end`` exclusive)."""
    change = np.flatnonzero(np.diff(values)) + 1
    bounds = np.concatenate([[0], change, [len(values)]])
    return [(int(a), int(b), int(values[a])) for a, b in zip(bounds[:-1], bounds[1:])]


def _absorb_short(runs, frame_emb: np.ndarray, C: np.ndarray, min_frames: int):
    """Merge runs shorter than ``min_frames`` into the adjacent run whose voice their mean embedding resembles most."""
    runs = list(runs)
    while len(runs) > 1:
        lengths = [b - a for a, b, _ in runs]
        i = int(np.argmin(lengths))
        if lengths[i] >= min_frames:
            break
        a, b, _ = runs[i]
        mean = frame_emb[a:b].mean(axis=0)
        neighbours = [j for j in (i - 1, i + 1) if 0 <= j < len(runs)]
        j = max(neighbours, key=lambda j: float(C[runs[j][2]] @ mean))
        lo, hi = min(i, j), max(i, j)
        runs[lo:hi + 1] = [(runs[lo][0], runs[hi][1], runs[j][2])]
        # neighbours of one voice that now touch become one run
        merged = [runs[0]]
        for run in runs[1:]:
            if run[2] == merged[-1][2]:
                merged[-1] = (merged[-1][0], run[1], run[2])
            else:
                merged.append(run)
        runs = merged
    return runs


@dataclass(frozen=True)
class HmmConfig:
    """The HMM re-segmentation's settings.

    Attributes:
        concentration: κ, the von Mises-Fisher concentration (log-likelihood per unit of cosine).
        loop: probability that a 0.1 s frame keeps the previous frame's voice.
        passes: decoding passes; the centroids are re-estimated from the posteriors before each after the first.
        overlap_posterior: ``None``: no overlap marking; else the posterior at which a frame's second voice is kept.
        min_overlap_s: shorter stretches of a second voice are dropped, seconds.
    """

    concentration: float = 10.0
    loop: float = 0.99
    passes: int = 2
    overlap_posterior: float | None = None
    min_overlap_s: float = 0.3


@dataclass(frozen=True)
class Resegmentation:
    """:func:`hmm_resegment`'s answer: time-ordered runs of one voice, and the stretches where a second voice overlaps."""

    segments: list[VoiceSegment]
    overlaps: list[VoiceSegment]


def _log_transitions(k: int, loop: float) -> np.ndarray:
    if k == 1:
        return np.zeros((1, 1))
    T = np.full((k, k), (1.0 - loop) / (k - 1))
    np.fill_diagonal(T, loop)
    return np.log(T)


def viterbi(log_emission: np.ndarray, log_transition: np.ndarray, log_initial: np.ndarray) -> np.ndarray:
    """Most likely state path ``[shape=(f,)]`` of ``log_emission [shape=(f, k)]``."""
    f, k = log_emission.shape
    score = log_initial + log_emission[0]
    back = np.zeros((f, k), int)
    for t in range(1, f):
        cand = score[:, None] + log_transition  # from (rows) -> to (columns)
        back[t] = np.argmax(cand, axis=0)
        score = cand[back[t], np.arange(k)] + log_emission[t]
    path = np.empty(f, int)
    path[-1] = int(np.argmax(score))
    for t in range(f - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


def posteriors(log_emission: np.ndarray, log_transition: np.ndarray, log_initial: np.ndarray) -> np.ndarray:
    """Forward-backward state posteriors ``[shape=(f, k)]`` (rows sum to 1), scaled at every frame."""
    f, k = log_emission.shape
    e = np.exp(log_emission - log_emission.max(axis=1, keepdims=True))
    T = np.exp(log_transition)
    alpha = np.empty((f, k))
    beta = np.ones((f, k))
    a = np.exp(log_initial - log_initial.max()) * e[0]
    alpha[0] = a / a.sum()
    for t in range(1, f):
        a = (alpha[t - 1] @ T) * e[t]
        alpha[t] = a / a.sum()
    for t in range(f - 2, -1, -1):
        b = T @ (e[t + 1] * beta[t + 1])
        beta[t] = b / b.sum()
    g = alpha * beta
    return g / g.sum(axis=1, keepdims=True)


def hmm_resegment(regions: Sequence[SpeechRegion], windows: Sequence[Window], X: np.ndarray, labels: np.ndarray,
                  config: HmmConfig = HmmConfig(), *, step_s: float = 0.1, min_run_s: float = 0.5) -> Resegmentation:
    """Frame-level voices inside each region by the HMM -> runs of one voice (and overlapped stretches).

    Args:
        regions: the speech regions the ``windows`` were cut from.
        X: ``[shape=(n_windows, d)]`` window embeddings; labels: ``[shape=(n_windows,)]`` voice ``0..k-1`` per window.
        step_s: frame step, seconds; min_run_s: shorter runs join the neighbour they resemble most.
    """
    labels = np.asarray(labels, int)
    if not len(windows):
        return Resegmentation([], [])
    X = _unit(X)
    w = np.array([win.duration_s for win in windows])
    C = _centroids(X, w, labels)
    k = len(C)
    share = np.bincount(labels, weights=w, minlength=k)
    log_initial = np.log(np.maximum(share / share.sum(), 1e-6))
    log_transition = _log_transitions(k, config.loop)
    frames = region_frames(regions, windows, X, step_s=step_s)
    for _ in range(max(1, config.passes) - 1):  # VB-style: each voice's centroid from its frames' posteriors
        sums = sum(posteriors(config.concentration * (E @ C.T), log_transition, log_initial).T @ E for _, E in frames)
        weight = np.linalg.norm(sums, axis=1)
        C = np.where((weight > 1e-9)[:, None], sums / np.maximum(weight, 1e-12)[:, None], C)
    paths = [viterbi(config.concentration * (E @ C.T), log_transition, log_initial) for _, E in frames]
    segments: list[VoiceSegment] = []
    overlaps: list[VoiceSegment] = []
    min_frames = max(1, int(round(min_run_s / step_s)))
    for (edges, E), path in zip(frames, paths):
        runs = _absorb_short(_runs(path), E, C, min_frames)
        segments.extend(VoiceSegment(float(edges[a]), float(edges[b]), v) for a, b, v in runs)
        if config.overlap_posterior is not None and k > 1:
            overlaps.extend(_overlaps(edges, E, C, runs, config, log_transition, log_initial, step_s))
    segments.sort(key=lambda s: s.start_s)
    overlaps.sort(key=lambda s: s.start_s)
    return Resegmentation(segments, overlaps)


def _overlaps(edges, E, C, runs, config: HmmConfig, log_transition, log_initial, step_s: float) -> list[VoiceSegment]:
    """Stretches where a voice other than the frame's own has posterior >= ``config.overlap_posterior``."""
    gamma = posteriors(config.concentration * (E @ C.T), log_transition, log_initial)
    own = np.empty(len(E), int)
    for a, b, v in runs:
        own[a:b] = v
    gamma[np.arange(len(E)), own] = -1.0
    second = np.argmax(gamma, axis=1)
    marked = np.where(gamma[np.arange(len(E)), second] >= config.overlap_posterior, second, -1)
    min_frames = max(1, int(round(config.min_overlap_s / step_s)))
    return [VoiceSegment(float(edges[a]), float(edges[b]), v) for a, b, v in _runs(marked)
            if v >= 0 and b - a >= min_frames]


def carry_voices(segments: Sequence[SpeechRegion], segment_voices: np.ndarray, windows: Sequence[Window],
                 X: np.ndarray) -> np.ndarray:
    """Voices found over whole segments carried to the windows: ``[shape=(n_windows,)]`` voices ``0..k-1``.

    A window takes the voice of the segment it overlaps most; a window no segment overlaps takes the voice
    whose centroid (of the windows that got one) is most similar to its embedding ``X [shape=(n_windows, d)]``.
    """
    labels = np.full(len(windows), -1)
    segment_voices = np.asarray(segment_voices, int)
    starts = np.array([s.start_s for s in segments])
    ends = np.array([s.end_s for s in segments])
    for i, win in enumerate(windows):
        if not len(segments):
            break
        overlap = np.minimum(ends, win.end_s) - np.maximum(starts, win.start_s)
        if overlap.max() > 0:
            labels[i] = segment_voices[int(np.argmax(overlap))]
    known = labels >= 0
    if not known.any():
        return np.zeros(len(windows), int)
    if not known.all():
        Xu = _unit(X)
        w = np.array([win.duration_s for win in windows])
        present, dense = np.unique(labels[known], return_inverse=True)
        C = _centroids(Xu[known], w[known], dense)
        labels[~known] = present[np.argmax(Xu[~known] @ C.T, axis=1)]
    return np.unique(labels, return_inverse=True)[1]
