"""The cascade's answer for one input (:class:`Prediction`).

In its own module so that modules the cascade calls lazily (:mod:`pipeline.recording`) can
build predictions without importing :mod:`pipeline.cascade` (no import cycle);
``from pipeline.cascade import Prediction`` still works.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from pipeline.errors import PipelineError


@dataclass
class Prediction:
    """The cascade's answer for one input.

    Attributes:
        status: ``"ok"`` or a short error code (``unreadable``, ``empty``,
            ``silent``, ``too_short``, ...; see :mod:`pipeline.errors`).
        error: human-readable message; ``""`` when ``status == "ok"``.
        file: the path or name the input came from, if any.
        duration_s: input duration in seconds (``None`` if it could not be decoded).
        speech_duration_s: seconds left after trimming leading/trailing silence.
        gender: ``"male"`` / ``"female"`` (``None`` on error).
        gender_probabilities: ``{"male": p, "female": 1 - p}``.
        emotion: the most probable of the eight emotions (``None`` on error).
        emotion_probabilities: probability per emotion label, summing to 1.
        emotion_model: which model answered: ``"male"``, ``"female"`` or ``"blended"`` (soft routing).
    """

    status: str = "ok"
    error: str = ""
    file: str | None = None
    duration_s: float | None = None
    speech_duration_s: float | None = None
    gender: str | None = None
    gender_probabilities: dict[str, float] = field(default_factory=dict)
    emotion: str | None = None
    emotion_probabilities: dict[str, float] = field(default_factory=dict)
    emotion_model: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def gender_confidence(self) -> float | None:
        return self.gender_probabilities.get(self.gender) if self.gender else None

    @property
    def emotion_confidence(self) -> float | None:
        return self.emotion_probabilities.get(self.emotion) if self.emotion else None

    def set_emotion(self, probs_by_gender: Mapping[str, np.ndarray], *, routing: str, labels: Sequence[str]) -> None:
        """Fill the emotion fields from each gender model's probabilities ``[len(labels)]`` for this input.

        ``routing="hard"``: the model of :attr:`gender` answers; ``"soft"``: both models weighted by
        :attr:`gender_probabilities` (``emotion_model`` ``"blended"``). Set the gender fields first.
        """
        if routing == "soft":
            probs = (self.gender_probabilities["male"] * probs_by_gender["male"]
                     + self.gender_probabilities["female"] * probs_by_gender["female"])
            self.emotion_model = "blended"
        else:
            probs = probs_by_gender[self.gender]
            self.emotion_model = self.gender
        probs = probs / probs.sum()
        self.emotion_probabilities = {label: float(probs[i]) for i, label in enumerate(labels)}
        self.emotion = labels[int(np.argmax(probs))]

    @classmethod
    def failure(cls, exc: BaseException, *, file: str | None = None, duration_s: float | None = None) -> "Prediction":
        """A non-ok prediction from an exception (PipelineError codes, else ``internal_error``)."""
        if isinstance(exc, PipelineError):
            return cls(status=exc.code, error=exc.message, file=file, duration_s=duration_s)
        return cls(status="internal_error", error=f"{type(exc).__name__}: {exc}", file=file, duration_s=duration_s)
