"""Diarization error rate (DER), frame-based, with the pyannote.metrics definition.

``DER = (missed + false alarm + confusion) / total reference speech``, where, per frame of
``frame_s`` seconds, with ``N_ref`` reference and ``N_hyp`` hypothesis speakers active:
missed = ``max(0, N_ref - N_hyp)``, false alarm = ``max(0, N_hyp - N_ref)``, confusion =
``min(N_ref, N_hyp) - N_correct``; ``N_correct`` counts the reference speakers whose mapped
hypothesis speaker is active. The mapping is the one-to-one assignment maximising the total
co-occurring time (``scipy.optimize.linear_sum_assignment``), as in pyannote. ``collar_s``
seconds on each side of every reference boundary are left out of scoring (NIST md-eval's
0.25 s; pyannote's ``collar`` is the total width, so ``collar=0.5`` there). Overlapping
speech is scored (no ``skip_overlap``). pyannote.metrics itself is not a dependency.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

Turn = tuple[float, float, str]
"""``(start_s, end_s, speaker)``."""


@dataclass(frozen=True)
class DerResult:
    """Seconds of each error and of scored reference speech; ``mapping`` reference -> hypothesis label."""

    total_s: float
    missed_s: float
    false_alarm_s: float
    confusion_s: float
    mapping: dict[str, str]

    @property
    def der(self) -> float:
        return (self.missed_s + self.false_alarm_s + self.confusion_s) / self.total_s if self.total_s else 0.0

    def rate(self, part: str) -> float:
        """``"missed"``, ``"false_alarm"`` or ``"confusion"`` as a share of reference speech."""
        return getattr(self, f"{part}_s") / self.total_s if self.total_s else 0.0


def _activity(turns: Sequence[Turn], labels: list[str], n_frames: int, frame_s: float) -> np.ndarray:
    """``[shape=(n_frames, len(labels))]`` bool: who is active in each frame (frame centre inside a turn)."""
    act = np.zeros((n_frames, len(labels)), bool)
    index = {lab: k for k, lab in enumerate(labels)}
    for start, end, who in turns:
        a, b = int(np.ceil(start / frame_s - 0.5)), int(np.ceil(end / frame_s - 0.5))
        act[max(0, a):max(0, min(n_frames, b)), index[who]] = True
    return act


def diarization_error(reference: Sequence[Turn], hypothesis: Sequence[Turn], *, collar_s: float = 0.0,
                      frame_s: float = 0.01) -> DerResult:
    """DER of ``hypothesis`` against ``reference`` (see the module docstring)."""
    end = max([t[1] for t in reference] + [t[1] for t in hypothesis] + [0.0])
    n = int(np.ceil(end / frame_s)) + 1
    ref_labels = sorted({t[2] for t in reference})
    hyp_labels = sorted({t[2] for t in hypothesis})
    ref = _activity(reference, ref_labels, n, frame_s)
    hyp = _activity(hypothesis, hyp_labels, n, frame_s)
    scored = np.ones(n, bool)
    if collar_s > 0:
        centres = (np.arange(n) + 0.5) * frame_s
        for start, stop, _ in reference:
            for edge in (start, stop):
                scored &= np.abs(centres - edge) >= collar_s
    ref, hyp = ref[scored], hyp[scored]
    mapping: dict[str, str] = {}
    correct = np.zeros(len(ref), int)
    if ref_labels and hyp_labels:
        from scipy.optimize import linear_sum_assignment

        overlap = ref.T.astype(np.int64) @ hyp.astype(np.int64)
        rows, cols = linear_sum_assignment(-overlap)
        for r, c in zip(rows, cols):
            if overlap[r, c] > 0:
                mapping[ref_labels[r]] = hyp_labels[c]
                correct += ref[:, r] & hyp[:, c]
    n_ref, n_hyp = ref.sum(axis=1), hyp.sum(axis=1)
    return DerResult(total_s=float(n_ref.sum() * frame_s),
                     missed_s=float(np.maximum(0, n_ref - n_hyp).sum() * frame_s),
                     false_alarm_s=float(np.maximum(0, n_hyp - n_ref).sum() * frame_s),
                     confusion_s=float((np.minimum(n_ref, n_hyp) - correct).sum() * frame_s),
                     mapping=mapping)
