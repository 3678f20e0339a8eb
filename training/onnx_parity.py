"""The whole cascade with the original networks and with their ONNX exports, clip by clip.

Usage (full install, shared corpus at ../shared/data)::

    python -m training.onnx_parity                 # every clip of the test split
    python -m training.onnx_parity --every 9       # every 9th test clip (in manifest order)

Loads :class:`pipeline.cascade.Cascade` twice, with ``SER_BACKEND=native`` (PyTorch and
Keras, what the full install runs) and ``SER_BACKEND=onnx`` (what the runtime install runs:
ONNX Runtime with numpy front ends), scores the same clips with both, and counts the clips
whose status, gender or emotion label differ and the largest difference of any probability.
``tests/test_onnx_parity.py`` runs it on a sample; ``docs/runtime.md`` quotes a full run.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from training.corpus import read_manifest


@dataclass(frozen=True)
class ParityReport:
    """Agreement of the two backends over ``clips`` clips.

    Attributes:
        clips: clips scored by both.
        status_differs, gender_differs, emotion_differs: clips whose status / gender label /
            emotion label differ between the backends.
        max_gender_diff, max_emotion_diff: largest absolute difference of any probability.
        worst_clip: the clip with the largest difference of either kind.
    """

    clips: int
    status_differs: int
    gender_differs: int
    emotion_differs: int
    max_gender_diff: float
    max_emotion_diff: float
    worst_clip: str

    def summary(self) -> str:
        return (f"{self.clips} clips: status differs on {self.status_differs}, gender label on {self.gender_differs}, "
                f"emotion label on {self.emotion_differs}; max |p_onnx - p_native| gender {self.max_gender_diff:.2e}, "
                f"emotion {self.max_emotion_diff:.2e} (worst: {self.worst_clip})")


def _predict(backend: str, paths: Sequence[Path]) -> list:
    from pipeline.cascade import Cascade

    before = os.environ.get("SER_BACKEND")
    os.environ["SER_BACKEND"] = backend
    try:
        cascade = Cascade.load()
        if backend == "onnx" and cascade.gender.backend != "onnx":
            raise RuntimeError("SER_BACKEND=onnx did not load the ONNX gender model")
        return [cascade.predict_file(p) for p in paths]
    finally:
        if before is None:
            os.environ.pop("SER_BACKEND", None)
        else:
            os.environ["SER_BACKEND"] = before


def compare(paths: Sequence[Path]) -> ParityReport:
    """Score ``paths`` with both backends and count where they differ."""
    native, onnx = _predict("native", paths), _predict("onnx", paths)
    status = gender = emotion = 0
    worst_g = worst_e = worst = 0.0
    worst_clip = ""
    for path, a, b in zip(paths, native, onnx):
        status += a.status != b.status
        gender += a.gender != b.gender
        emotion += a.emotion != b.emotion
        dg = max((abs(a.gender_probabilities[k] - b.gender_probabilities.get(k, np.nan)) for k in a.gender_probabilities),
                 default=0.0)
        de = max((abs(a.emotion_probabilities[k] - b.emotion_probabilities.get(k, np.nan)) for k in a.emotion_probabilities),
                 default=0.0)
        worst_g, worst_e = max(worst_g, dg), max(worst_e, de)
        if max(dg, de) > worst:
            worst, worst_clip = max(dg, de), path.name
    return ParityReport(len(paths), status, gender, emotion, worst_g, worst_e, worst_clip)


def sample_clips(every: int = 1) -> list[Path]:
    """Every ``every``-th clip of the test split, in manifest order."""
    return [u.path for u in read_manifest() if u.split == "test"][::every]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--every", type=int, default=1, help="take every N-th test clip (default: all)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    report = compare(sample_clips(args.every))
    print(report.summary())
    return 0 if not (report.gender_differs or report.emotion_differs or report.status_differs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
