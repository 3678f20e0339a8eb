"""Gender-routed speech emotion recognition.

``from pipeline import Cascade``; ``Cascade.load().predict_file("x.wav")``.
Heavy libraries (torch, TensorFlow, librosa) are imported lazily.

The package is the runtime: what ``app.py``, ``script.py`` and :class:`Cascade` need. It
never imports :mod:`training` or :mod:`studies`; ``pipeline.train``, ``pipeline.evaluate``
and ``pipeline.bench`` are only entry points into :mod:`training`, and
:mod:`pipeline.testing` holds fakes for tests (tiny models with known answers, synthetic
speech). ``tests/test_structure.py`` checks all of this.
"""
from __future__ import annotations

from pipeline.errors import PipelineError

__all__ = ["Cascade", "Prediction", "PipelineError", "predict_timeline"]


def __getattr__(name: str):
    if name in ("Cascade", "Prediction"):
        from pipeline import cascade

        return getattr(cascade, name)
    if name == "predict_timeline":  # emotion over fixed windows, all voices mixed (the app shows voices instead)
        from pipeline import timeline

        return timeline.predict_timeline
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
