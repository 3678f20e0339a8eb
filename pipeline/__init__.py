"""Gender-routed speech emotion recognition.

``from pipeline import Cascade``; ``Cascade.load().predict_file("x.wav")``.
Heavy libraries (torch, TensorFlow, librosa) are imported lazily.
"""
from __future__ import annotations

from pipeline.errors import PipelineError

__all__ = ["Cascade", "Prediction", "PipelineError"]


def __getattr__(name: str):
    if name in ("Cascade", "Prediction"):
        from pipeline import cascade

        return getattr(cascade, name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
