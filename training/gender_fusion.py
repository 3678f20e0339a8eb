"""Fitting the late fusion of :mod:`pipeline.gender_fusion` (temperatures, weight, GE2E head).

Everything here is fitted on speakers the two models were not fitted on (the ``val`` rows of
a model fitted on ``train``), never on the clips that are reported. Labels are ``1`` for
female and ``0`` for male; log-odds are of female, as in :mod:`pipeline.gender_fusion`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from pipeline.gender_fusion import GE2EHead, GenderFusion

WEIGHT_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)


def log_loss(z: np.ndarray, y: np.ndarray) -> float:
    """Mean binary cross-entropy (nats) of log-odds ``z [shape=(n,)]`` against labels ``y [shape=(n,)]`` in {0, 1}."""
    z = np.asarray(z, np.float64)
    y = np.asarray(y, np.float64)
    # log(1 + exp(-z)) for y=1, log(1 + exp(z)) for y=0, computed stably
    return float(np.mean(np.logaddexp(0.0, np.where(y > 0.5, -z, z))))


def fit_temperature(z: np.ndarray, y: np.ndarray) -> float:
    """Temperature ``T`` minimising :func:`log_loss` of ``z / T`` (searched over ``T`` in [0.05, 20])."""
    from scipy.optimize import minimize_scalar

    z = np.asarray(z, np.float64)
    result = minimize_scalar(lambda log_t: log_loss(z / np.exp(log_t), y), bounds=(np.log(0.05), np.log(20.0)),
                             method="bounded", options={"xatol": 1e-4})
    return float(np.exp(result.x))


@dataclass(frozen=True)
class FusionFit:
    """A fitted fusion and the validation log-loss of every weight tried.

    Attributes:
        fusion: the chosen :class:`GenderFusion`.
        val_log_loss: ``{weight: mean log-loss}`` on the fitting rows.
        n_val: rows it was fitted on.
    """

    fusion: GenderFusion
    val_log_loss: dict[float, float]
    n_val: int


def fit_fusion(ecapa_log_odds: np.ndarray, head: GE2EHead, embeddings: np.ndarray, y: np.ndarray, *,
               weights: Sequence[float] = WEIGHT_GRID, provenance: dict | None = None) -> FusionFit:
    """Temperatures of each model, then the ECAPA weight with the lowest log-loss (ties: nearer 0.5).

    Args:
        ecapa_log_odds: ``[shape=(n,)]`` the ECAPA's log-odds of female on the fitting rows.
        head: the GE2E logistic regression (fitted elsewhere, on other rows).
        embeddings: ``[shape=(n, 256)]`` GE2E embeddings of the same rows.
        y: ``[shape=(n,)]`` 1 female, 0 male.
    """
    t_e, t_g, best, losses = fit_weights(ecapa_log_odds, head.log_odds(embeddings), y, weights=weights)
    fusion = GenderFusion(head, ecapa_temperature=t_e, ge2e_temperature=t_g, ecapa_weight=best,
                          provenance=dict(provenance or {}))
    return FusionFit(fusion, losses, int(len(y)))


def fit_weights(ecapa_log_odds: np.ndarray, ge2e_log_odds: np.ndarray, y: np.ndarray, *,
                weights: Sequence[float] = WEIGHT_GRID) -> tuple[float, float, float, dict[float, float]]:
    """``(T_ecapa, T_ge2e, w, {w: log-loss})``: each model's temperature, then the weight with the lowest log-loss.

    Args:
        ecapa_log_odds, ge2e_log_odds: ``[shape=(n,)]`` each model's log-odds of female on the same rows.
        y: ``[shape=(n,)]`` 1 female, 0 male. Ties between weights go to the one nearer 0.5.
    """
    z_e = np.asarray(ecapa_log_odds, np.float64)
    z_g = np.asarray(ge2e_log_odds, np.float64)
    t_e, t_g = fit_temperature(z_e, y), fit_temperature(z_g, y)
    losses = {float(w): log_loss(w * z_e / t_e + (1 - w) * z_g / t_g, y) for w in weights}
    best = min(losses, key=lambda w: (round(losses[w], 6), abs(w - 0.5)))
    return t_e, t_g, best, losses


def fit_ge2e_head(embeddings: np.ndarray, y: np.ndarray, groups: np.ndarray, *, seed: int = 0) -> tuple[GE2EHead, float]:
    """Logistic regression on GE2E embeddings, ``C`` by 5-fold GroupKFold over speakers (clip accuracy).

    Args:
        embeddings: ``[shape=(n, 256)]``; y: ``[shape=(n,)]`` 1 female, 0 male; groups: ``[shape=(n,)]`` speaker ids.

    Returns: the head refitted on all rows with the chosen ``C``, and that ``C``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold

    X = np.asarray(embeddings, np.float64)
    y = np.asarray(y, int)

    def make(c: float) -> LogisticRegression:
        return LogisticRegression(C=c, class_weight="balanced", max_iter=5000, random_state=seed)

    folds = list(GroupKFold(n_splits=5).split(X, y, groups))
    cv = {c: sum(int((make(c).fit(X[tr], y[tr]).predict(X[te]) == y[te]).sum()) for tr, te in folds) / len(y)
          for c in C_GRID}
    best = max(C_GRID, key=lambda c: (cv[c], -abs(np.log10(c))))
    model = make(best).fit(X, y)
    assert list(model.classes_) == [0, 1]
    return GE2EHead(model.coef_[0].astype(np.float64), float(model.intercept_[0])), best
