"""The web app's downloads: all results (a row per file, then a row per voice) and the voices.

:func:`results_rows` keeps the batch scorer's columns (:data:`pipeline.batch.CSV_COLUMNS`) and
adds :data:`EXTRA_COLUMNS`: ``uncertain`` (``yes``/``no``; empty when the file was not
analysed), why (``uncertain_reason``), and for a voice row the share of that voice's speaking
time its main emotion took (``emotion_share_of_time``; a share of time, not a probability).
A recording split into voices gets its whole-recording row (voice empty) followed by one row
per voice (``voice`` = ``A``, ``B``...; the voice's gender and probability, its main emotion,
its seconds of speech in ``speech_duration_s``). :func:`voices_rows` is the per-voice summary
CSV (:data:`VOICE_CSV_COLUMNS`). No Streamlit calls: ``app.py`` offers these as downloads.
"""
from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING, Iterable, Sequence

from pipeline.batch import CSV_COLUMNS
from pipeline.emotion import EMOTION_LABELS
from pipeline.gender import GENDER_LABELS

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.app_views import ClipResult

EXTRA_COLUMNS: tuple[str, ...] = ("uncertain", "uncertain_reason", "emotion_share_of_time")
RESULTS_COLUMNS: tuple[str, ...] = (*CSV_COLUMNS, *EXTRA_COLUMNS)
"""Columns of the "all results" CSV: the batch scorer's, then :data:`EXTRA_COLUMNS`."""

VOICE_CSV_COLUMNS: tuple[str, ...] = (
    "file", "voice", "gender", "gender_confidence", "uncertain", "speech_s", "share_of_speech", "turns",
    "first_heard_s", *(f"time_share_{label}" for label in EMOTION_LABELS),
)
"""Columns of the voices CSV: shares are of time (0..1), ``speech_s`` and ``first_heard_s`` in seconds."""


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _fmt(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def uncertain_reason(result: "ClipResult") -> str:
    """Why a file's whole-recording answer is uncertain, in words (``""`` when it is not or was not analysed)."""
    if not result.prediction.ok:
        return ""
    reasons = []
    if result.several_voices:
        reasons.append(f"{len(result.recording.voices)} voices: one answer for the whole recording mixes them "
                       "(see the voice rows)")
    g, e = result.gender, result.emotion
    if g.uncertain:
        reasons.append(f"gender: {g.reason}")
    if e.uncertain:
        reasons.append(f"emotion: {e.reason}")
    return "; ".join(reasons)


def results_rows(results: Sequence["ClipResult"]) -> list[dict[str, str]]:
    """Rows of the "all results" CSV: per file its batch-scorer row, then a row per voice (if split by voice)."""
    from pipeline.app_voices import voice_rows

    rows = []
    for r in results:
        reason = uncertain_reason(r)
        rows.append({**{c: "" for c in RESULTS_COLUMNS}, **r.row,
                     "uncertain": _yes(bool(reason)) if r.prediction.ok else "", "uncertain_reason": reason})
        if not r.several_voices:
            continue
        for v in voice_rows(r.recording):
            main = next(iter(v.emotion_shares.items()), (None, None))
            row = {c: "" for c in RESULTS_COLUMNS}
            row.update({"file": r.row.get("file", r.name), "voice": v.label, "status": "ok",
                        "duration_s": r.row.get("duration_s", ""), "gender": v.gender or "",
                        "gender_confidence": _fmt(v.gender_probability), "emotion": main[0] or "",
                        "speech_duration_s": _fmt(v.speech_s, 3), "uncertain": _yes(v.uncertain),
                        "uncertain_reason": "gender below the uncertain level" if v.uncertain else "",
                        "emotion_share_of_time": _fmt(main[1])})
            if v.gender is not None:
                p = v.gender_probability
                for label in GENDER_LABELS:
                    row[f"gender_prob_{label}"] = _fmt(p if label == v.gender else 1.0 - p)
            rows.append(row)
    return rows


def voices_rows(results: Sequence["ClipResult"]) -> list[dict[str, str]]:
    """Rows of the voices CSV: one per voice of every recording that was split by voice."""
    from pipeline.app_voices import voice_rows

    rows = []
    for r in results:
        if r.recording is None or not r.recording.ok:
            continue
        for v in voice_rows(r.recording):
            row = {"file": r.name, "voice": v.label, "gender": v.gender or "",
                   "gender_confidence": _fmt(v.gender_probability), "uncertain": _yes(v.uncertain),
                   "speech_s": _fmt(v.speech_s, 3), "share_of_speech": _fmt(v.share_of_speech),
                   "turns": str(v.turns), "first_heard_s": _fmt(v.first_s, 3)}
            for label in EMOTION_LABELS:
                row[f"time_share_{label}"] = _fmt(v.emotion_shares.get(label, 0.0))
            rows.append(row)
    return rows


def csv_bytes(rows: Iterable[dict[str, str]], columns: Sequence[str]) -> bytes:
    """``rows`` as a UTF-8 CSV under ``columns``."""
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")
