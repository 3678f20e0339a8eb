"""The measured figures the "How it works" page quotes, read from the project's reports.

Nothing here is typed in by hand: :func:`read_figures` reads ``reports/metrics.json`` (the
test split: speakers never heard in training) and the speaker-grouping study's summary
(``studies/room_conversations/report.json``: conversations that sound like one room) and
returns a :class:`Figures`. A file that is missing leaves its part ``None``/empty, and the
page leaves that part out. The uncertain levels and the figures for recordings unlike the
training data come from :mod:`pipeline.confidence` (checked against the reports by the tests).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.paths import PROJECT_ROOT

METRICS = PROJECT_ROOT / "reports" / "metrics.json"
ROOM_STUDY = PROJECT_ROOT / "studies" / "room_conversations" / "report.json"

CORPUS_WORDS = {
    "ravdess": "North-American English, actors",
    "savee": "British English, actors",
    "emovo": "Italian, actors",
    "nemo": "Polish, actors",
    "ased": "Amharic, read by non-actors at home",
}
"""How each test corpus sounds, in words for visitors."""

CONDITION_WORDS = {
    "pcm_u8": "a low-quality 8-bit file",
    "telephone_8k": "a phone call",
    "mp3_32k": "a small MP3",
    "opus_16k": "a small Opus voice message",
    "pink_10db": "steady background noise",
    "babble_10db": "other people talking in the background",
}
"""The degraded copies of the test clips, in words for visitors."""


@dataclass(frozen=True)
class Share:
    """A measured share right: ``value`` 0..1 over ``n`` test clips (or recordings)."""

    value: float
    n: int


@dataclass
class Figures:
    """What the page quotes.

    Attributes:
        test_clips, test_speakers: size of the test split (speakers never heard in training).
        emotion_by_corpus: ``{corpus: Share}`` emotion right (eight emotions) per test corpus.
        emotion_by_label: ``{emotion: share of its test clips recognised}`` (recall).
        gender_by_condition: ``{condition: Share}`` gender right on the test clips as recorded
            (``"clean"``) and degraded (keys of :data:`CONDITION_WORDS`).
        voices: the one-room conversation study's summary (``count_right``, ``count_within_one``,
            ``gender_per_voice``, ``recordings``), or ``None``.
    """

    test_clips: int | None = None
    test_speakers: int | None = None
    emotion_by_corpus: dict[str, Share] = field(default_factory=dict)
    emotion_by_label: dict[str, float] = field(default_factory=dict)
    gender_by_condition: dict[str, Share] = field(default_factory=dict)
    voices: dict[str, float] | None = None


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_figures(metrics: Path = METRICS, room_study: Path = ROOM_STUDY) -> Figures:
    """:class:`Figures` from the reports (missing files leave their part empty)."""
    out = Figures()
    m = _read(metrics)
    if m:
        out.test_clips, out.test_speakers = m.get("n_clips"), m.get("n_speakers")
        cascade = m.get("emotion", {}).get("cascade", {})
        out.emotion_by_corpus = {c: Share(v["accuracy"], v["n"]) for c, v in cascade.get("per_corpus", {}).items()}
        out.emotion_by_label = dict(cascade.get("overall", {}).get("recall", {}))
        conditions = m.get("gender_robustness", {}).get("conditions", {})
        out.gender_by_condition = {c: Share(v["accuracy"], v.get("n", 0)) for c, v in conditions.items()}
    room = _read(room_study)
    if room and "test" in room.get("summary", {}):
        out.voices = dict(room["summary"]["test"])
    return out
