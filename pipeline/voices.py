"""Who speaks when: speech segments grouped into voices (speaker diarization without names).

1. Each segment (a :class:`pipeline.vad.SpeechRegion`) is embedded with the GE2E speaker
   encoder (:class:`pipeline.speaker_encoder.SpeakerEncoder`, 256-d unit vectors),
   ``batch`` segments at a time, so memory does not grow with the recording.
2. :func:`cluster_voices`: segments of at least :data:`MIN_ANCHOR_S` seconds are grouped by
   agglomerative clustering (average linkage on cosine distance, cut at
   :data:`CLUSTER_THRESHOLD`); clusters with less than :data:`MIN_VOICE_S` seconds of speech
   are folded into the nearest other one; then every segment, shorter ones included, goes to
   the voice whose duration-weighted centroid is nearest. If that finds one voice, it is the
   answer; otherwise the grouping is redone on the embeddings with the recording's mean removed
   (:func:`centre_embeddings`, cut at :data:`CENTRED_THRESHOLD`): what all voices of a recording
   share (room, channel, language) is taken out, so voices separate better, while a recording
   of one voice, where only noise around that voice would remain, keeps its single voice.
   Voices are labelled ``"A"``, ``"B"``, ... in order of first speech.
3. :func:`voice_genders`: a voice's gender is decided over all its speech: the gender
   classifier's probabilities averaged over the voice's segments, weighted by duration.

The constants come from ``studies/diarization`` (the first cut, a grid on synthetic
conversations of train/val speakers) and ``studies/diarization_clustering`` (the second, rounds
2-4, chosen on conversations of val speakers).
"""
from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from pipeline.vad import SAMPLE_RATE, SpeechRegion

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.speaker_encoder import SpeakerEncoder

CLUSTER_THRESHOLD = 0.35
"""Cosine distance at which the average-linkage tree is cut (studies/diarization)."""

CENTRED_THRESHOLD = 0.925
"""Cosine distance of the second cut, on embeddings with the recording's mean removed (studies/diarization_clustering)."""

MIN_ANCHOR_S = 1.0
"""Segments shorter than this do not shape the clusters; they join the nearest voice afterwards."""

MIN_VOICE_S = 3.0
"""A cluster with less speech than this (seconds) is folded into the nearest other cluster."""

GENDERS = ("male", "female")


@dataclass(frozen=True)
class VoiceSummary:
    """One voice of a recording.

    Attributes:
        label: ``"A"``, ``"B"``, ... in order of first speech.
        speech_s: seconds of speech (sum of its segments' durations).
        n_segments: how many segments it holds.
        first_s: start of its first segment, seconds.
        gender: ``"male"`` / ``"female"``, or ``None`` when none of its segments could be judged.
        gender_probabilities: ``{"male": p, "female": 1 - p}``, duration-weighted mean over the
            voice's judged segments (empty when ``gender`` is ``None``).
    """

    label: str
    speech_s: float
    n_segments: int
    first_s: float
    gender: str | None = None
    gender_probabilities: dict[str, float] = field(default_factory=dict)

    @property
    def gender_confidence(self) -> float | None:
        return self.gender_probabilities.get(self.gender) if self.gender else None


def voice_label(index: int) -> str:
    """``0 -> "A"``, ..., ``25 -> "Z"``, ``26 -> "AA"``, ..."""
    letters = string.ascii_uppercase
    label = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        label = letters[rest] + label
    return label


def embed_segments(encoder: "SpeakerEncoder", y: np.ndarray, regions: Sequence[SpeechRegion], *,
                   batch: int = 32, progress: Callable[[int], None] | None = None) -> np.ndarray:
    """GE2E embedding of each region of ``y [shape=(n,)]`` (16 kHz) -> ``[shape=(len(regions), 256)]`` float32.

    ``batch`` regions at a time (their samples are views of ``y``); ``progress`` gets the number done.
    """
    out = np.zeros((len(regions), 256), np.float32)
    for start in range(0, len(regions), batch):
        clips = [y[r.samples(SAMPLE_RATE)] for r in regions[start:start + batch]]
        out[start:start + len(clips)] = encoder.embed_many(clips)
        if progress is not None:
            progress(start + len(clips))
    return out


def cluster_voices(embeddings: np.ndarray, durations_s: np.ndarray, *, threshold: float = CLUSTER_THRESHOLD,
                   min_anchor_s: float = MIN_ANCHOR_S, min_voice_s: float = MIN_VOICE_S,
                   centred_threshold: float | None = CENTRED_THRESHOLD) -> np.ndarray:
    """Voice index per segment, ``[shape=(n,)]`` int, ``0..k-1`` in order of first appearance.

    Args:
        embeddings: ``[shape=(n, d)]`` unit vectors of time-ordered segments.
        durations_s: ``[shape=(n,)]`` segment durations, seconds.
        threshold: cosine distance at which the average-linkage tree is cut.
        min_anchor_s: segments at least this long form the clusters (all of them if none is).
        min_voice_s: clusters with less speech are folded into the nearest other cluster.
        centred_threshold: the second cut, on the embeddings with the recording's mean removed,
            used when the first finds more than one voice; ``None``: the first cut only.
    """
    n = len(embeddings)
    if n == 0:
        return np.zeros(0, int)
    X = np.asarray(embeddings, np.float64)
    anchors = anchor_segments(durations_s, min_anchor_s)
    labels = assign_voices(X, durations_s, anchors, _average_linkage(X[anchors], threshold), min_voice_s=min_voice_s)
    if centred_threshold is None or labels.max() == 0:
        return labels
    centred = centre_embeddings(X, durations_s)
    return assign_voices(centred, durations_s, anchors, _average_linkage(centred[anchors], centred_threshold),
                         min_voice_s=min_voice_s)


def _average_linkage(X: np.ndarray, threshold: float) -> np.ndarray:
    """Group of each row of ``X [shape=(m, d)]``: average-linkage tree on cosine distance cut at ``threshold``."""
    if len(X) == 1:
        return np.zeros(1, int)
    from scipy.cluster.hierarchy import fcluster, linkage

    return fcluster(linkage(X, method="average", metric="cosine"), t=threshold, criterion="distance") - 1


def centre_embeddings(embeddings: np.ndarray, durations_s: np.ndarray) -> np.ndarray:
    """Embeddings ``[shape=(n, d)]`` minus their duration-weighted mean, renormalised to unit length."""
    X = np.asarray(embeddings, np.float64)
    centred = X - np.average(X, axis=0, weights=np.maximum(np.asarray(durations_s, np.float64), 1e-3))
    return centred / np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-12)


def anchor_segments(durations_s: np.ndarray, min_anchor_s: float = MIN_ANCHOR_S) -> np.ndarray:
    """Indices of the segments that shape the clusters: those of at least ``min_anchor_s`` (all if none is)."""
    w = np.asarray(durations_s, np.float64)
    anchors = np.flatnonzero(w >= min_anchor_s)
    return anchors if anchors.size else np.arange(w.size)


def assign_voices(embeddings: np.ndarray, durations_s: np.ndarray, anchors: np.ndarray, groups: np.ndarray, *,
                  min_voice_s: float = MIN_VOICE_S) -> np.ndarray:
    """From a grouping of the anchor segments to a voice index for every segment (``[shape=(n,)]`` int).

    Groups with less than ``min_voice_s`` seconds of speech are folded into the most similar
    other group; every non-anchor segment joins the voice with the nearest duration-weighted
    centroid; voices are numbered ``0..k-1`` in order of first appearance.

    Args:
        embeddings: ``[shape=(n, d)]`` unit vectors; durations_s: ``[shape=(n,)]`` seconds.
        anchors: ``[shape=(m,)]`` indices into the segments; groups: ``[shape=(m,)]`` group of each anchor.
    """
    X = np.asarray(embeddings, np.float64)
    w = np.asarray(durations_s, np.float64)
    groups = np.unique(np.asarray(groups, int), return_inverse=True)[1]
    centroids = _centroids(X[anchors], w[anchors], groups)
    speech = np.bincount(groups, weights=w[anchors], minlength=len(centroids))
    while len(centroids) > 1 and speech.min() < min_voice_s:
        small = int(np.argmin(speech))
        similarity = centroids @ centroids[small]
        similarity[small] = -np.inf
        groups[groups == small] = int(np.argmax(similarity))
        groups = np.unique(groups, return_inverse=True)[1]
        centroids = _centroids(X[anchors], w[anchors], groups)
        speech = np.bincount(groups, weights=w[anchors], minlength=len(centroids))
    labels = np.argmax(X @ centroids.T, axis=1)
    labels[anchors] = groups
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(np.argsort(first))  # old cluster id -> rank of its first appearance
    return order[np.unique(labels, return_inverse=True)[1]]


def _centroids(X: np.ndarray, w: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Duration-weighted, renormalised mean embedding per group -> ``[shape=(k, d)]``."""
    k = int(groups.max()) + 1
    sums = np.zeros((k, X.shape[1]))
    np.add.at(sums, groups, X * np.maximum(w, 1e-3)[:, None])
    return sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)


def voice_genders(labels: np.ndarray, durations_s: np.ndarray, female_probability: np.ndarray) -> list[dict[str, float]]:
    """Per voice, the duration-weighted mean gender probabilities of its judged segments.

    Args:
        labels: ``[shape=(n,)]`` voice index per segment (``0..k-1``).
        durations_s: ``[shape=(n,)]`` seconds.
        female_probability: ``[shape=(n,)]`` P(female) per segment, NaN where a segment was not judged.

    Returns: one ``{"male": p, "female": 1 - p}`` per voice, ``{}`` where no segment was judged.
    """
    k = int(labels.max()) + 1 if len(labels) else 0
    out: list[dict[str, float]] = []
    for voice in range(k):
        mine = (labels == voice) & np.isfinite(female_probability)
        if not mine.any():
            out.append({})
            continue
        weights = np.maximum(durations_s[mine], 1e-3)
        female = float(np.average(female_probability[mine], weights=weights))
        out.append({"male": 1.0 - female, "female": female})
    return out


def summarise_voices(regions: Sequence[SpeechRegion], labels: np.ndarray,
                     genders: Sequence[dict[str, float]]) -> list[VoiceSummary]:
    """One :class:`VoiceSummary` per voice index of ``labels`` (time-ordered ``regions``)."""
    summaries = []
    for voice, probs in enumerate(genders):
        mine = [r for r, lab in zip(regions, labels) if lab == voice]
        gender = max(GENDERS, key=lambda g: probs[g]) if probs else None
        summaries.append(VoiceSummary(label=voice_label(voice), speech_s=float(sum(r.duration_s for r in mine)),
                                      n_segments=len(mine), first_s=mine[0].start_s if mine else 0.0,
                                      gender=gender, gender_probabilities=dict(probs)))
    return summaries
