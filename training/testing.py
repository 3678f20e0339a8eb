"""Synthetic corpora for tests of the training code: a ``manifest.csv`` plus audio, in seconds.

Public, like :mod:`pipeline.testing` (whose :func:`~pipeline.testing.speech_like` voices
they use): point ``SER_DATA_DIR`` at the folder and :func:`training.corpus.read_manifest`
and the trainers read it like the shared corpus. Voices are harmonic complexes, male at
f0 ~110 Hz, female at ~230 Hz (each speaker 4 % higher than the one before), 16 kHz
mono WAV; every file is named ``<speaker>_<clip>.wav``.
"""
from __future__ import annotations

import os
from pathlib import Path

from pipeline.testing import SR, speech_like

__all__ = ["MANIFEST_HEADER", "write_gender_corpus", "write_two_corpora"]

MANIFEST_HEADER = "path,corpus,speaker,gender,emotion,intensity,language,split,duration_s"
_VOICES = (("male", 110.0), ("female", 230.0))


def write_gender_corpus(root: str | os.PathLike, corpus: str = "syn") -> Path:
    """One corpus in three splits for gender training; returns ``Path(root)``.

    Speakers per gender: 4 train, 2 val, 2 test; two 2.0 s clips each (32 clips), no
    emotion labels, language ``en``. Every row gets ``corpus`` as its corpus name
    (``"librispeech"`` makes the babble-noise readers use it).
    """
    import soundfile as sf

    root = Path(root)
    lines = [MANIFEST_HEADER]
    for split, n_speakers in (("train", 4), ("val", 2), ("test", 2)):
        for gender, f0 in _VOICES:
            for s in range(n_speakers):
                speaker = f"syn_{split}_{gender}_{s}"
                for clip in range(2):
                    rel = f"{speaker}_{clip}.wav"
                    y = speech_like(2.0, f0=f0 * (1 + 0.04 * s), seed=len(lines))
                    sf.write(root / rel, y, SR)
                    lines.append(f"{rel},{corpus},{speaker},{gender},,,en,{split},2.0")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def write_two_corpora(root: str | os.PathLike) -> Path:
    """Corpora ``syn`` and ``other`` for held-out-corpus training; returns ``Path(root)``.

    Speakers per gender: ``syn`` 4 train / 2 val / 2 test, ``other`` 1 / 1 / 2; two 1.5 s
    clips each (48 clips). ``other`` carries emotion labels (clip 0 *angry*, clip 1 *sad*),
    ``syn`` none; language ``xx``.
    """
    import soundfile as sf

    root = Path(root)
    lines = [MANIFEST_HEADER]
    layout = {"syn": (("train", 4), ("val", 2), ("test", 2)), "other": (("train", 1), ("val", 1), ("test", 2))}
    for corpus, splits in layout.items():
        for split, n in splits:
            for gender, f0 in _VOICES:
                for s in range(n):
                    speaker = f"{corpus}_{split}_{gender}_{s}"
                    for clip, emotion in enumerate(("angry", "sad")):
                        rel = f"{speaker}_{clip}.wav"
                        sf.write(root / rel, speech_like(1.5, f0=f0 * (1 + 0.04 * s), seed=len(lines)), SR)
                        emo = emotion if corpus == "other" else ""
                        lines.append(f"{rel},{corpus},{speaker},{gender},{emo},,xx,{split},1.5")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


SYNTHETIC_GENDER_RECIPE = {"exclude_corpora": (), "second_opinion": None, "noise_kinds": ("white", "pink")}
"""Gender recipe keys that fit the shipped recipe to a synthetic corpus: it has no nEMO to leave out, no
LibriSpeech readers to make babble of, and a handful of synthetic voices is no place to fit the GE2E second
opinion (their own tests do those)."""
