"""Who speaks when from short windows: window embeddings, a spectral voice count, re-segmentation.

Opt-in (``Cascade.analyse_recording(..., diarization=DiarizationConfig())``). The steps after
speech detection, chosen in ``studies/room_conversations`` (rounds 2-3) on conversations that
share one room, microphone, noise and codec; not the default because gender per voice and
corpus-clip conversations got worse in that study's full run:

1. :func:`speech_windows`: windows of ``window_s`` (1.5 s) every ``hop_s`` (0.75 s) inside each
   speech region (a shorter region is one window); each gets a GE2E embedding. A whole VAD
   segment often holds two voices (a turn changes inside it, or they overlap); a window rarely does.
2. :func:`spectral_groups`: spectral clustering of the windows in the manner of NME-SC and
   SpeechBrain's ``Spec_Clust_unorm`` (cosine affinity, each row pruned to its most similar
   ``p`` share, symmetrised, unnormalised Laplacian, the number of groups from the largest
   eigengap, seeded k-means on the eigenvectors), then :func:`merge_similar` joins groups whose
   duration-weighted centroids are more similar than ``merge_similarity``, most similar pair
   first; that is also how a recording of one voice gets one. Average linkage with one cut
   (:func:`ahc_groups`) is the alternative the study compared.
3. re-segmentation (:mod:`pipeline.resegment`): every ``step_s`` (0.1 s) frame of speech takes a
   voice, the most similar centroid's (:func:`~pipeline.resegment.resegment`) or, with ``hmm``, an
   HMM's Viterbi path (:func:`~pipeline.resegment.hmm_resegment`); runs of one voice become the
   segments.

Whether a recording is one voice at all is decided first: by the shipped first cut over whole
segments (round 3's guard), or, with ``one_voice_model`` (:data:`ONE_VOICE_MODEL`, round 4), by a
logistic regression over :func:`one_voice_features` whose coefficients are data in
``pipeline/one_voice.json``; it lost round 4's rule on corpus-clip conversations, so it is opt-in too.
Round 5's hybrid (``keep_first_cut``) keeps the default pipeline's voices when the learnt decision
says more and the first cut already splits the recording (:func:`voice_path`).

SpeechBrain's own class is not used: importing it imports torch (5.6 s here), its k-means is not
seeded and it never answers fewer than two speakers.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.resegment import HmmConfig, Window, _unit
from pipeline.vad import SpeechRegion
from pipeline.voices import MIN_VOICE_S, _average_linkage, _centroids, assign_voices


@dataclass(frozen=True)
class DiarizationConfig:
    """How windows become voices and segments (seconds unless said otherwise).

    Attributes:
        vad_threshold: silero-vad's speech probability that starts a region.
        window_s, hop_s: window length and step of the embeddings.
        method: ``"spectral"`` (:func:`spectral_groups`) or ``"ahc"`` (:func:`ahc_groups`).
        prune: share ``p`` of each affinity row kept (spectral).
        max_voices: most voices the eigengap may propose (spectral).
        merge_similarity: groups whose centroids' cosine similarity exceeds this are merged (spectral).
        ahc_threshold: cosine distance of the average-linkage cut (ahc).
        min_voice_s: a group with less speech than this folds into the nearest one.
        step_s: frame step of the re-segmentation.
        min_run_s: shorter runs of one voice join a neighbour.
        max_cluster_windows: above this many windows, an even subset is clustered and the others
            join the nearest centroid (keeps an hour at a few seconds).
        seed: of k-means.
        one_voice_model: ``None``: the shipped first cut decides "one voice" (round 3's guard).
            A path to a JSON logistic regression (:data:`ONE_VOICE_MODEL`, round 4 of
            ``studies/room_conversations``): one voice when its P(more than one) over
            :func:`one_voice_features` is under its threshold.
        keep_first_cut: round 5's hybrid: when the recording is not one voice and the shipped first
            cut over whole segments already finds two or more voices, the default pipeline's voices
            (:func:`pipeline.voices.cluster_voices` on whole segments) are kept; the windows are used
            only when the first cut hears one voice (:func:`voice_path`).
        hmm: ``None``: the plain re-segmentation; else the HMM's (:func:`pipeline.resegment.hmm_resegment`).
            Its overlap marking must stay off (``overlap_posterior=None``): a recording's segments carry one
            voice each, and the marking raised DER in round 7.
        segments_hmm: with ``keep_first_cut`` and ``hmm``: the default pipeline's voices are carried to the
            windows and re-segmented by the HMM too (:func:`pipeline.resegment.carry_voices`).
        three_voices: when the learnt decision says one voice but the first cut finds three or more, the
            recording is not one voice (:func:`voice_path`).
    """

    vad_threshold: float = 0.35
    window_s: float = 1.5
    hop_s: float = 0.75
    method: str = "spectral"
    prune: float = 0.3
    max_voices: int = 8
    merge_similarity: float = 0.9
    ahc_threshold: float = 0.4
    min_voice_s: float = MIN_VOICE_S
    step_s: float = 0.1
    min_run_s: float = 0.5
    max_cluster_windows: int = 1500
    seed: int = 0
    one_voice_model: str | None = None
    keep_first_cut: bool = False
    hmm: HmmConfig | None = None
    segments_hmm: bool = False
    three_voices: bool = False

    def __post_init__(self) -> None:
        if self.hmm is not None and self.hmm.overlap_posterior is not None:
            raise ValueError("DiarizationConfig: overlap marking (hmm.overlap_posterior) is not available to recordings; "
                             "their segments carry one voice each")


def speech_windows(regions: Sequence[SpeechRegion], *, window_s: float = 1.5, hop_s: float = 0.75) -> list[Window]:
    """Windows of ``window_s`` every ``hop_s`` inside each region, the last one ending at the region's end."""
    out: list[Window] = []
    for k, r in enumerate(regions):
        if r.duration_s <= window_s:
            out.append(Window(r.start_s, r.end_s, k))
            continue
        starts = list(np.arange(r.start_s, r.end_s - window_s, hop_s))
        starts.append(r.end_s - window_s)
        out.extend(Window(float(s), float(s) + window_s, k) for s in starts)
    return out


def merge_similar(X: np.ndarray, w: np.ndarray, groups: np.ndarray, similarity: float) -> np.ndarray:
    """Join the two groups with the most similar duration-weighted centroids while that similarity exceeds ``similarity``.

    ``X [shape=(n, d)]`` unit vectors, ``w [shape=(n,)]`` seconds, ``groups [shape=(n,)]`` -> groups ``0..k-1``.
    """
    groups = np.unique(np.asarray(groups, int), return_inverse=True)[1]
    while groups.max() > 0:
        C = _centroids(X, w, groups)
        S = C @ C.T
        np.fill_diagonal(S, -np.inf)
        i, j = np.unravel_index(int(np.argmax(S)), S.shape)
        if S[i, j] <= similarity:
            break
        groups[groups == max(i, j)] = min(i, j)
        groups = np.unique(groups, return_inverse=True)[1]
    return groups


def spectral_groups(X: np.ndarray, w: np.ndarray, *, prune: float = 0.3, max_voices: int = 8,
                    merge_similarity: float = 0.8, seed: int = 0) -> np.ndarray:
    """Group of each window: spectral clustering with an eigengap count, then :func:`merge_similar`.

    Args:
        X: ``[shape=(n, d)]`` window embeddings; w: ``[shape=(n,)]`` their durations, seconds.
    Returns ``[shape=(n,)]`` int groups ``0..k-1``.
    """
    X = _unit(X)
    n = len(X)
    if n < 4:
        return merge_similar(X, w, np.arange(n), merge_similarity)
    from sklearn.cluster import KMeans

    lam, vec, _ = _spectrum(X, prune, max_voices)
    k = _eigengap_count(lam)
    groups = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(vec[:, :k])
    return merge_similar(X, w, groups, merge_similarity)


def _spectrum(X: np.ndarray, prune: float, max_voices: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Smallest ``max_voices + 1`` eigenvalues and eigenvectors of the pruned affinity's Laplacian, and its mean degree."""
    from scipy.linalg import eigh

    n = len(X)
    A = X @ X.T
    keep = max(2, int(np.ceil(prune * n)))
    drop = np.argsort(-A, axis=1)[:, keep:]
    np.put_along_axis(A, drop, 0.0, axis=1)
    A = np.maximum(0.5 * (A + A.T), 0.0)
    np.fill_diagonal(A, 0.0)
    degree = A.sum(axis=1)
    L = np.diag(degree) - A
    lam, vec = eigh(L, subset_by_index=[0, min(max_voices, n - 1)])
    return lam, vec, float(degree.mean())


def _eigengap_count(lam: np.ndarray) -> int:
    """Groups below the largest gap between consecutive eigenvalues, 2 at least."""
    top = len(lam) - 1
    gaps = np.diff(lam)  # gaps[i] = lam[i+1] - lam[i]; i + 1 groups below the gap
    return int(np.argmax(gaps[1:top])) + 2 if top >= 2 else 2


def ahc_groups(X: np.ndarray, w: np.ndarray, *, threshold: float = 0.4) -> np.ndarray:
    """Group of each window: average linkage on cosine distance cut at ``threshold``."""
    return np.unique(_average_linkage(_unit(X), threshold), return_inverse=True)[1]


def window_voices(X: np.ndarray, windows: Sequence[Window], config: DiarizationConfig = DiarizationConfig()) -> np.ndarray:
    """Voice index ``0..k-1`` (first appearance order) of each window; ``X [shape=(n, d)]`` their embeddings."""
    n = len(windows)
    if n == 0:
        return np.zeros(0, int)
    X = _unit(X)
    w = np.array([win.duration_s for win in windows])
    pick = np.arange(n)
    if n > config.max_cluster_windows:
        pick = np.unique(np.linspace(0, n - 1, config.max_cluster_windows).round().astype(int))
    if config.method == "spectral":
        groups = spectral_groups(X[pick], w[pick], prune=config.prune, max_voices=config.max_voices,
                                 merge_similarity=config.merge_similarity, seed=config.seed)
    elif config.method == "ahc":
        groups = ahc_groups(X[pick], w[pick], threshold=config.ahc_threshold)
    else:
        raise ValueError(f"unknown method {config.method!r}: 'spectral' or 'ahc'")
    return assign_voices(X, w, pick, groups, min_voice_s=config.min_voice_s)


ONE_VOICE_MODEL = str(Path(__file__).with_name("one_voice.json"))
"""The logistic regression of ``studies/room_conversations`` round 4 (fitted on dev + dev_one), as data."""

ONE_VOICE_MODEL_NO_LENGTH = str(Path(__file__).with_name("one_voice_no_length.json"))
"""Round 7's refit of the same model without the seconds of speech (which encode the simulator's recording lengths)."""

ROOM_CONVERSATION = DiarizationConfig(one_voice_model=ONE_VOICE_MODEL_NO_LENGTH, keep_first_cut=True,
                                      hmm=HmmConfig(concentration=10.0, loop=0.9), segments_hmm=True)
"""Round 7's R7 + L (``studies/room_conversations``): the learnt one-voice decision without recording length; the
default's voices when its first cut splits, else the windows' spectral voices; both re-segmented by the HMM over
1.5 s windows at silero 0.35. Better than the default on simulated one-room conversations, not on monologues
(it splits more of them), so it is a choice (``script.py --segments --voices room``), not the default."""

ONE_VOICE_FEATURES = ("first_cut_more", "eigengap", "eigenvalue_2", "eigenvalue_3", "eigenvalue_4",
                      "similarity_p10", "similarity_p50", "similarity_p90", "max_centroid_similarity", "speech_s")


def one_voice_features(first_cut_voices: int, X: np.ndarray, windows: Sequence[Window], speech_s: float,
                       config: DiarizationConfig = DiarizationConfig()) -> np.ndarray | None:
    """Recording-level statistics of the window embeddings for the one-voice decision (:data:`ONE_VOICE_FEATURES`).

    Args:
        first_cut_voices: voices of the shipped first cut over whole segments.
        X: ``[shape=(n, d)]`` window embeddings; windows: their spans; speech_s: seconds of speech.
    Returns ``[shape=(10,)]``, or ``None`` under 4 windows (too few to cluster: one voice).
    """
    n = len(windows)
    if n < 4:
        return None
    X = _unit(X)
    w = np.array([win.duration_s for win in windows])
    if n > config.max_cluster_windows:
        pick = np.unique(np.linspace(0, n - 1, config.max_cluster_windows).round().astype(int))
        X, w = X[pick], w[pick]
    similarity = (X @ X.T)[np.triu_indices(len(X), 1)]
    lam, _, degree = _spectrum(X, config.prune, config.max_voices)
    lam = lam / max(degree, 1e-12)  # at least 4 eigenvalues: n >= 4
    k = _eigengap_count(lam)
    groups = spectral_groups(X, w, prune=config.prune, max_voices=config.max_voices, merge_similarity=np.inf,
                             seed=config.seed)
    C = _centroids(X, w, groups)
    S = C @ C.T
    np.fill_diagonal(S, -np.inf)
    return np.array([float(first_cut_voices > 1), lam[k] - lam[k - 1], lam[1], lam[2], lam[3],
                     *np.percentile(similarity, [10, 50, 90]), float(S.max()) if len(C) > 1 else 1.0, speech_s])


@lru_cache(maxsize=4)
def load_one_voice_model(path: str) -> dict:
    """The JSON logistic regression: ``features`` (some of :data:`ONE_VOICE_FEATURES`, in that order), ``mean``,
    ``scale``, ``coef``, ``intercept``, ``threshold``."""
    model = json.loads(Path(path).read_text(encoding="utf-8"))
    names = tuple(model["features"])
    if not names or names != tuple(f for f in ONE_VOICE_FEATURES if f in names) or len(set(names)) != len(names):
        raise ValueError(f"{path}: features {model['features']} are not some of {ONE_VOICE_FEATURES} in that order")
    if any(len(model[k]) != len(names) for k in ("mean", "scale", "coef")):
        raise ValueError(f"{path}: mean, scale and coef need one value for each of its {len(names)} features")
    return model


def more_than_one_probability(features: np.ndarray, model: dict) -> float:
    """P(more than one speaker) under the logistic ``model`` of the standardised ``features``
    (``[shape=(10,)]``, :data:`ONE_VOICE_FEATURES`; the model uses those it names)."""
    used = [ONE_VOICE_FEATURES.index(f) for f in model["features"]]
    z = (np.asarray(features, np.float64)[used] - np.asarray(model["mean"])) / np.asarray(model["scale"])
    return float(1.0 / (1.0 + np.exp(-(z @ np.asarray(model["coef"]) + float(model["intercept"])))))


def one_voice(first_cut_voices: int, X: np.ndarray, windows: Sequence[Window], speech_s: float,
              config: DiarizationConfig) -> bool:
    """Whether a recording is one voice: the first cut (``one_voice_model=None``) or the model's P(more) under its threshold."""
    if config.one_voice_model is None:
        return first_cut_voices <= 1
    features = one_voice_features(first_cut_voices, X, windows, speech_s, config)
    if features is None:
        return True
    model = load_one_voice_model(config.one_voice_model)
    return more_than_one_probability(features, model) < float(model.get("threshold", 0.5))


def voice_path(first_cut_voices: int, X: np.ndarray, windows: Sequence[Window], speech_s: float,
               config: DiarizationConfig) -> str:
    """How a recording's voices are found: ``"one"`` (:func:`one_voice`, unless ``three_voices`` and the first cut
    finds three or more), ``"segments"`` (``keep_first_cut`` and the first cut finds two or more: the default
    pipeline's voices) or ``"windows"`` (the window path)."""
    if one_voice(first_cut_voices, X, windows, speech_s, config) and not (config.three_voices and first_cut_voices >= 3):
        return "one"
    return "segments" if config.keep_first_cut and first_cut_voices > 1 else "windows"


