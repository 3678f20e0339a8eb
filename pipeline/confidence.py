"""How far to trust one answer: measured accuracy per probability level, and the "uncertain" mark.

The models' probabilities are fairly well calibrated on new speakers of the corpora
they were trained on (expected calibration error 0.043 for emotion, reports/metrics.json
``calibration``), so the app shows them, next to what was *measured* at that level: of
the test clips (``reports/test_predictions.csv``: 2,674 clips of 68 new speakers; gender on
the 1,595 of the six gender training corpora, emotion on the 2,171 with an emotion label,
nEMO's included) on which the model was about as sure, how many it got right. The gender bins leave out the 40 clips of the two `test`
speakers whose labels are in doubt (speechocean 2430 and 3023: their median F0 and every
model contradict the label; the gender recipe's ``exclude_speakers``). An answer is marked
**uncertain** below a threshold read off that reliability curve:

* gender below 0.80: clips answered at 0.50-0.80 were right 86% of the time
  (93 clips), against 100% above 0.80 (1,462 clips);
* emotion below 0.50: clips answered below 0.50 were right 49% of the time
  (467 clips), against 58-96% per bin above it; an emotion answer is also uncertain
  when the gender is, since the gender picks which emotion model answers.

These are in-domain figures. On recordings unlike the training data (another
language, microphone or speaking style) the same probabilities mean much less:
:data:`RELIABILITY` holds the measured figures the page quotes. Runtime code: no
pandas, no file reads; ``tests/test_app.py`` recomputes every number here from the
reports with :func:`reliability_bins`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

GENDER_UNCERTAIN_BELOW = 0.80
"""Gender answers with a probability below this are shown as uncertain."""

EMOTION_UNCERTAIN_BELOW = 0.50
"""Emotion answers with a probability below this are shown as uncertain."""

GENDER_EDGES = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
EMOTION_EDGES = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)

# (low, high, clips, share right) per probability bin: gender on the test split's gender corpora, emotion on all
GENDER_BINS: tuple[tuple[float, float, int, float], ...] = (
    (0.5, 0.6, 18, 0.667), (0.6, 0.7, 26, 0.846), (0.7, 0.8, 46, 0.913), (0.8, 0.9, 135, 0.993),
    (0.9, 0.95, 167, 1.0), (0.95, 1.0, 1163, 1.0),
)
EMOTION_BINS: tuple[tuple[float, float, int, float], ...] = (
    (0.0, 0.3, 81, 0.309), (0.3, 0.4, 164, 0.494), (0.4, 0.5, 221, 0.566), (0.5, 0.6, 214, 0.579),
    (0.6, 0.7, 236, 0.661), (0.7, 0.8, 267, 0.813), (0.8, 0.9, 445, 0.885), (0.9, 1.0, 543, 0.956),
)

RELIABILITY = {
    "gender_new_speakers": 0.966,        # test split, new speakers of the six training corpora
    "gender_degraded_range": (0.954, 0.979),  # test split as 8-bit, telephone, MP3, Opus, pink noise, babble
    "gender_unseen_range": (0.807, 0.998),  # whole corpora left out of training (studies/gender_fusion, rule report)
    "emotion_new_speakers": 0.756,       # test split, eight emotions (chance 12.5%)
    "emotion_ravdess": 0.746,            # RAVDESS part of the test split
    "emotion_unseen_range": (0.316, 0.458),  # whole corpora left out of training (studies/emotion_encoder)
}
"""Measured accuracies quoted on the page (reports/metrics.json, studies/gender_fusion, studies/emotion_encoder)."""

DETAILS_PAGE = "pages/1_How_it_works.py"


def percent(p: float) -> str:
    """``p`` as a whole percentage, rounded down (79.96% -> "79%", 99.5% -> "99.5%"): never sounds surer than it is."""
    if 0.99 < p < 1.0:
        return f"{np.floor(p * 1000) / 10:.1f}%"
    return f"{int(np.floor(p * 100 + 1e-9))}%"


def reliability_bins(confidence: Sequence[float], correct: Sequence[bool],
                     edges: Sequence[float]) -> list[tuple[float, float, int, float]]:
    """``(low, high, n, share correct)`` per bin ``[low, high)`` (the last bin includes ``high``)."""
    conf = np.asarray(confidence, dtype=float)
    right = np.asarray(correct, dtype=bool)
    rows = []
    for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        inside = (conf >= lo) & ((conf <= hi) if k == len(edges) - 2 else (conf < hi))
        n = int(inside.sum())
        rows.append((float(lo), float(hi), n, round(float(right[inside].mean()), 3) if n else float("nan")))
    return rows


def measured_accuracy(probability: float, bins=EMOTION_BINS) -> tuple[float, int] | None:
    """``(share right, clips)`` of the bin holding ``probability``, or ``None`` outside the table."""
    for k, (lo, hi, n, share) in enumerate(bins):
        last = k == len(bins) - 1
        if lo <= probability < hi or (last and lo <= probability <= hi):
            return share, n
    return None


@dataclass(frozen=True)
class Judgement:
    """One answer as the page shows it.

    Attributes:
        label: the answer (``"male"``, ``"angry"``...).
        probability: the model's probability for it, 0..1.
        uncertain: True when the page must show it as uncertain.
        measured: share of test clips answered at about this probability that were right
            (new speakers of the training corpora), or ``None``.
        clips: how many test clips that share is based on.
        reason: why it is uncertain, in plain words (``""`` when it is not).
    """

    label: str
    probability: float
    uncertain: bool
    measured: float | None
    clips: int
    reason: str = ""


def judge_gender(label: str, probability: float) -> Judgement:
    measured = measured_accuracy(probability, GENDER_BINS)
    uncertain = probability < GENDER_UNCERTAIN_BELOW
    reason = (f"the model is only {percent(probability)} sure (below {GENDER_UNCERTAIN_BELOW:.0%}; "
              + ("a coin toss" if probability < 0.6 else "such answers were wrong more often in tests") + ")"
              if uncertain else "")
    return Judgement(label, probability, uncertain, *(measured or (None, 0)), reason=reason)


def judge_emotion(label: str, probability: float, *, gender_uncertain: bool = False) -> Judgement:
    measured = measured_accuracy(probability, EMOTION_BINS)
    reasons = []
    if probability < EMOTION_UNCERTAIN_BELOW:
        reasons.append(f"the model is only {percent(probability)} sure (below {EMOTION_UNCERTAIN_BELOW:.0%}, "
                       "where fewer than half of such answers were right in tests)")
    if gender_uncertain:
        reasons.append("the gender is uncertain, and it decides which emotion model answers")
    return Judgement(label, probability, bool(reasons), *(measured or (None, 0)), reason="; ".join(reasons))


def reliability_note() -> str:
    """The short "how reliable is this" paragraph shown next to results (markdown)."""
    r = RELIABILITY
    lo_g, hi_g = r["gender_unseen_range"]
    lo_e, hi_e = r["emotion_unseen_range"]
    lo_d, hi_d = r["gender_degraded_range"]
    return (
        f"**How reliable is this?** On new speakers recorded like the training data (acted or read speech "
        f"in English, Amharic, Italian and, for emotion, Polish), gender was right {r['gender_new_speakers']:.0%} of the time and "
        f"emotion {r['emotion_new_speakers']:.0%} (eight emotions; guessing gives 12.5%). The same clips as a phone "
        f"call, a low-quality file or with background noise: gender {lo_d:.0%}-{hi_d:.0%}. On recordings "
        f"unlike them (another language, microphone or speaking style) gender was right {lo_g:.0%}-{hi_g:.0%} "
        f"and emotion only {lo_e:.0%}-{hi_e:.0%}, however sure the model says it is. Treat the emotion as a "
        "hint, not a fact."
    )
