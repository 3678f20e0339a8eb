"""Late fusion of two gender opinions: the ECAPA-TDNN and a logistic regression on GE2E embeddings.

A gender model folder may hold ``fusion.json`` beside the ECAPA's ``config.json`` and
``model.safetensors``. It names a second opinion, a logistic regression over the pretrained
GE2E speaker embedding (:mod:`pipeline.speaker_encoder`, 256-d unit vectors), and how the two
are combined, in log-odds of "female" (``z = log(p_female / p_male)``)::

    z = w * z_ecapa / T_ecapa + (1 - w) * z_ge2e / T_ge2e        p_female = sigmoid(z)

``T`` are temperatures (each model's log-odds divided by its ``T`` is calibrated on held-out
speakers) and ``w`` the weight of the ECAPA, both fitted by :mod:`training.gender_fusion` on
speakers neither model was fitted on. This module only applies them; it has no fitting code.

File format (``fusion.json``)::

    {"format": "ecapa+ge2e-lr/1",
     "ecapa_temperature": 1.3, "ge2e_temperature": 0.9, "ecapa_weight": 0.5,
     "ge2e_head": {"coef": [256 floats], "intercept": -0.2},
     "provenance": {...}}
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.errors import ModelError

FUSION_FILE = "fusion.json"
FORMAT = "ecapa+ge2e-lr/1"
EMBEDDING_DIM = 256
_EPS = 1e-6


def log_odds_female(probabilities: np.ndarray) -> np.ndarray:
    """``[shape=(n, 2)]`` ``[p_male, p_female]`` -> ``[shape=(n,)]`` ``log(p_female / p_male)``, clipped to +-13.8."""
    p = np.clip(np.asarray(probabilities, np.float64), _EPS, 1.0)
    return np.log(p[:, 1]) - np.log(p[:, 0])


def probabilities_from_log_odds(z: np.ndarray) -> np.ndarray:
    """``[shape=(n,)]`` log-odds of female -> ``[shape=(n, 2)]`` float32 ``[p_male, p_female]``."""
    female = 1.0 / (1.0 + np.exp(-np.asarray(z, np.float64)))
    return np.stack([1.0 - female, female], axis=1).astype(np.float32)


@dataclass(frozen=True)
class GE2EHead:
    """Logistic regression on a GE2E embedding: ``z_ge2e = embedding @ coef + intercept`` (log-odds of female).

    Attributes:
        coef: ``[shape=(256,)]`` float64 weights.
        intercept: bias, log-odds.
    """

    coef: np.ndarray
    intercept: float

    def log_odds(self, embeddings: np.ndarray) -> np.ndarray:
        """``[shape=(n, 256)]`` unit embeddings -> ``[shape=(n,)]`` log-odds of female."""
        return np.asarray(embeddings, np.float64) @ self.coef + self.intercept


@dataclass(frozen=True)
class GenderFusion:
    """How the ECAPA's and the GE2E head's log-odds are combined (see the module docstring).

    Attributes:
        head: the GE2E logistic regression.
        ecapa_temperature, ge2e_temperature: positive divisors of each model's log-odds.
        ecapa_weight: ``w`` in ``[0, 1]``; 1 is the ECAPA alone (calibrated), 0 the GE2E head alone.
        provenance: what it was fitted on and by which command (free-form, kept for model cards).
    """

    head: GE2EHead
    ecapa_temperature: float = 1.0
    ge2e_temperature: float = 1.0
    ecapa_weight: float = 0.5
    provenance: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (self.ecapa_temperature > 0 and self.ge2e_temperature > 0):
            raise ModelError("fusion temperatures must be positive")
        if not 0.0 <= self.ecapa_weight <= 1.0:
            raise ModelError(f"fusion ecapa_weight must be in [0, 1], got {self.ecapa_weight}")
        if np.shape(self.head.coef) != (EMBEDDING_DIM,):
            raise ModelError(f"fusion ge2e_head.coef must hold {EMBEDDING_DIM} numbers, got shape {np.shape(self.head.coef)}")

    @property
    def needs_embeddings(self) -> bool:
        """False when the weight is 1 (the GE2E encoder need not run)."""
        return self.ecapa_weight < 1.0

    def fused_log_odds(self, ecapa_log_odds: np.ndarray, embeddings: np.ndarray | None) -> np.ndarray:
        """``[shape=(n,)]`` fused log-odds of female from the ECAPA's log-odds ``(n,)`` and GE2E embeddings ``(n, 256)``."""
        z = self.ecapa_weight * np.asarray(ecapa_log_odds, np.float64) / self.ecapa_temperature
        if self.needs_embeddings:
            if embeddings is None:
                raise ValueError("this fusion needs the GE2E embeddings of the clips")
            z = z + (1.0 - self.ecapa_weight) * self.head.log_odds(embeddings) / self.ge2e_temperature
        return z

    def probabilities(self, ecapa_probabilities: np.ndarray, embeddings: np.ndarray | None) -> np.ndarray:
        """``[shape=(n, 2)]`` fused ``[p_male, p_female]`` from the ECAPA's ``(n, 2)`` and embeddings ``(n, 256)``."""
        return probabilities_from_log_odds(self.fused_log_odds(log_odds_female(ecapa_probabilities), embeddings))

    def to_dict(self) -> dict:
        return {"format": FORMAT, "ecapa_temperature": float(self.ecapa_temperature),
                "ge2e_temperature": float(self.ge2e_temperature), "ecapa_weight": float(self.ecapa_weight),
                "ge2e_head": {"coef": [float(c) for c in self.head.coef], "intercept": float(self.head.intercept)},
                "provenance": self.provenance}

    def save(self, folder: str | os.PathLike) -> Path:
        path = Path(folder) / FUSION_FILE
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_dict(cls, spec: dict, *, path: str | None = None) -> "GenderFusion":
        """Raises :class:`ModelError` naming ``path`` when ``spec`` is not a valid fusion."""
        try:
            if spec.get("format") != FORMAT:
                raise ModelError(f"unknown fusion format {spec.get('format')!r}; expected {FORMAT!r}", path=path)
            head = GE2EHead(np.asarray(spec["ge2e_head"]["coef"], np.float64), float(spec["ge2e_head"]["intercept"]))
            return cls(head, float(spec["ecapa_temperature"]), float(spec["ge2e_temperature"]),
                       float(spec["ecapa_weight"]), dict(spec.get("provenance") or {}))
        except ModelError as exc:
            raise ModelError(exc.message, path=path) from exc
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelError(f"{FUSION_FILE} is malformed ({type(exc).__name__}: {exc})", path=path) from exc

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "GenderFusion | None":
        """The fusion of a gender model folder, ``None`` when it has no ``fusion.json``."""
        path = Path(folder) / FUSION_FILE
        if not path.is_file():
            return None
        try:
            spec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelError(f"{FUSION_FILE} is not valid JSON: {exc}", path=str(path)) from exc
        if not isinstance(spec, dict):
            raise ModelError(f"{FUSION_FILE} must hold a JSON object", path=str(path))
        return cls.from_dict(spec, path=str(path))
