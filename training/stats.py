"""Statistics for the reports: speaker bootstrap, calibration, grouped permutation importance.

Each function is deterministic given its ``seed``, so notebooks, model cards and
``reports/metrics.*`` show the same numbers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np


@dataclass(frozen=True)
class Interval:
    """A point estimate with a percentile bootstrap interval.

    Attributes:
        estimate: the statistic on the full sample.
        low, high: the ``level`` percentile interval over bootstrap resamples.
        level: coverage, e.g. 0.95.
        n_boot: number of resamples.
        n_groups: number of independent units resampled (speakers).
    """

    estimate: float
    low: float
    high: float
    level: float
    n_boot: int
    n_groups: int

    def to_dict(self) -> dict:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "level": self.level,
                "n_boot": self.n_boot, "n_groups": self.n_groups}


def speaker_bootstrap(groups: Sequence[str], statistic: Callable[[np.ndarray], float], *, n_boot: int = 2000,
                      level: float = 0.95, seed: int = 0) -> Interval:
    """Percentile bootstrap over speakers (clips of a speaker are resampled together).

    Speakers, not clips, are the independent units: clips of one actor share
    voice, microphone and acting style, so resampling clips understates the
    uncertainty.

    Args:
        groups: ``[n_rows]`` speaker id per row.
        statistic: maps an index array ``[m]`` into the rows to a number (for example
            the accuracy difference of two methods on those rows).
        n_boot: resamples; ``level``: interval coverage; ``seed``: RNG seed.
    """
    groups = np.asarray(groups)
    speakers, inverse = np.unique(groups, return_inverse=True)
    rows_of = [np.flatnonzero(inverse == k) for k in range(speakers.size)]
    rng = np.random.default_rng(seed)
    values = np.empty(n_boot)
    for b in range(n_boot):
        picked = rng.integers(0, speakers.size, size=speakers.size)
        values[b] = statistic(np.concatenate([rows_of[k] for k in picked]))
    alpha = (1 - level) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return Interval(float(statistic(np.arange(groups.size))), float(low), float(high), level, n_boot, int(speakers.size))


def accuracy_difference(y_true: Sequence[str], pred_a: Sequence[str], pred_b: Sequence[str],
                        groups: Sequence[str], **kwargs) -> Interval:
    """Accuracy of ``pred_a`` minus accuracy of ``pred_b`` (same rows), speaker-bootstrapped."""
    correct_a = np.asarray(pred_a) == np.asarray(y_true)
    correct_b = np.asarray(pred_b) == np.asarray(y_true)
    diff = correct_a.astype(float) - correct_b.astype(float)
    return speaker_bootstrap(groups, lambda idx: float(diff[idx].mean()), **kwargs)


@dataclass(frozen=True)
class Reliability:
    """A reliability diagram: confidence vs accuracy in equal-width bins.

    Attributes:
        bin_edges: ``[n_bins + 1]`` confidence bin edges in [0, 1].
        confidence: ``[n_bins]`` mean confidence per bin (NaN for empty bins).
        accuracy: ``[n_bins]`` share correct per bin (NaN for empty bins).
        count: ``[n_bins]`` rows per bin.
        ece: expected calibration error, ``sum(count/n * |accuracy - confidence|)``.
    """

    bin_edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray
    ece: float


def reliability(probabilities: np.ndarray, y_true: Sequence[int], *, n_bins: int = 10) -> Reliability:
    """Top-label calibration of ``probabilities [n, n_classes]`` against class indices ``y_true [n]``."""
    probabilities = np.asarray(probabilities, dtype=float)
    correct = probabilities.argmax(axis=1) == np.asarray(y_true)
    return _binned(probabilities.max(axis=1), correct, n_bins)


def binary_reliability(p_positive: Sequence[float], positive: Sequence[bool], *, n_bins: int = 10) -> Reliability:
    """Calibration of one class's probability ``p_positive [n]`` against whether each row is that class, ``positive [n]``.

    The :class:`Reliability` it returns bins ``p_positive`` (not the top probability): ``confidence``
    is the mean ``p_positive`` per bin and ``accuracy`` the share of positive rows there, so all
    ``n_bins`` bins of [0, 1] can fill (for two classes the top probability never falls below 0.5).
    """
    return _binned(np.asarray(p_positive, dtype=float), np.asarray(positive, dtype=bool), n_bins)


def _binned(score: np.ndarray, hit: np.ndarray, n_bins: int) -> Reliability:
    """Mean ``score`` and mean ``hit`` in ``n_bins`` equal-width bins of [0, 1] (``(lo, hi]``, the first also takes 0)."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(score, edges[1:-1], right=True), 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore"):
        mean_conf = np.bincount(which, weights=score, minlength=n_bins) / count
        mean_acc = np.bincount(which, weights=hit.astype(float), minlength=n_bins) / count
    filled = count > 0
    ece = float(np.sum(count[filled] / count.sum() * np.abs(mean_acc[filled] - mean_conf[filled]))) if count.sum() else 0.0
    return Reliability(edges, mean_conf, mean_acc, count, ece)


def group_permutation_importance(predict: Callable[[np.ndarray], np.ndarray], X: np.ndarray, y: Sequence[int],
                                 groups: Mapping[str, Sequence[int]], *, n_repeats: int = 5,
                                 seed: int = 0) -> dict[str, tuple[float, float]]:
    """Accuracy drop when the columns of a feature group are permuted together.

    Permuting a group's columns jointly (the same row shuffle for all of them)
    keeps the correlations inside the group and breaks its link to the label, so
    the drop is what the model loses without that group's information.

    Args:
        predict: maps ``X [n, d]`` to predicted class indices ``[n]``.
        X: ``[n, d]`` features; ``y``: ``[n]`` true class indices.
        groups: group name -> column indices.
        n_repeats: shuffles per group; ``seed``: RNG seed.

    Returns:
        group -> (mean accuracy drop, std over repeats), in accuracy units (0-1).
    """
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    base = float(np.mean(predict(X) == y))
    out: dict[str, tuple[float, float]] = {}
    for name, columns in groups.items():
        columns = np.asarray(columns)
        drops = []
        for _ in range(n_repeats):
            shuffled = X.copy()
            shuffled[:, columns] = X[rng.permutation(X.shape[0])][:, columns]
            drops.append(base - float(np.mean(predict(shuffled) == y)))
        out[name] = (float(np.mean(drops)), float(np.std(drops)))
    return out
