"""The segment CSV: one row per speech segment of a recording (``script.py --segments``, the app's download).

A row is :func:`segment_rows` of a :class:`~pipeline.recording.Recording`: its segments in time
order, each with its voice, the voice's gender (decided over all the voice's speech) and the
segment's emotion; a recording that could not be analysed (unreadable, no speech, ...) gets
exactly one row with its ``status`` and ``error`` and empty times.

Crash safety: :class:`SegmentSink` writes all rows of a recording at once and flushes; a kill can
only cut the rows of the file being written, which is the last file in the CSV. So
:func:`read_segments_done` keeps every file but the last one (and drops a cut line); ``--resume``
redoes that last file.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from pipeline.batch import CsvSink, rewrite
from pipeline.emotion import EMOTION_LABELS

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.batch import InputFile
    from pipeline.cascade import Cascade
    from pipeline.recording import Recording

SEGMENT_COLUMNS: tuple[str, ...] = (
    "file", "start_s", "end_s", "voice", "status", "error", "gender", "gender_confidence", "emotion",
    "emotion_confidence", "emotion_model", *(f"prob_{label}" for label in EMOTION_LABELS),
)


def _fmt(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def analyse_input(cascade: "Cascade", item: "InputFile", *, vad=None, encoder=None, batch_size: int = 16,
                  progress=None, voices: str = "auto") -> list[dict[str, str]]:
    """The segment rows of one input of ``script.py --segments`` (local or on Ray): never raises for bad audio.

    ``vad`` / ``encoder``: the loaded :class:`~pipeline.vad.SileroVad` and speaker encoder, reused across
    files; ``progress(done, total)`` as :meth:`Cascade.analyse_recording` takes it. An input that cannot
    be opened (an unreadable URI) gets its one row with the status, like a missing path. ``voices``: a key of
    :data:`pipeline.recording.VOICE_MODES` (``auto`` or ``room``).
    """
    from pipeline.prediction import Prediction
    from pipeline.recording import VOICE_MODES, Recording

    try:
        source = item.source()
    except Exception as exc:  # noqa: BLE001 - every input gets a row
        failure = Prediction.failure(exc)
        rec = Recording(duration_s=None, status=failure.status, error=failure.error, file=item.name)
    else:
        rec = cascade.analyse_recording(source, name=item.name, progress=progress, vad=vad, encoder=encoder,
                                        batch_size=max(batch_size, 1), diarization=VOICE_MODES[voices])
    return segment_rows(rec, item.name)


def segment_rows(rec: "Recording", name: str | None = None) -> list[dict[str, str]]:
    """The CSV rows (column -> text) of a recording: one per segment, time-ordered; one row if none."""
    file = name if name is not None else (rec.file or "")
    if not rec.segments:
        status, error = rec.status, rec.error
        if rec.ok:  # cannot happen today: an ok recording has segments; keep the one-row promise anyway
            status, error = "no_speech", "no speech segments found"
        return [{**{c: "" for c in SEGMENT_COLUMNS}, "file": file, "status": status, "error": error}]
    voices = {v.label: v for v in rec.voices}
    rows = []
    for s in sorted(rec.segments, key=lambda s: (s.start_s, s.end_s)):
        p, voice = s.prediction, voices.get(s.voice)
        gender = voice.gender if voice is not None else p.gender
        confidence = voice.gender_confidence if voice is not None else p.gender_confidence
        row = {
            "file": file, "start_s": _fmt(s.start_s, 3), "end_s": _fmt(s.end_s, 3), "voice": s.voice,
            "status": p.status, "error": p.error, "gender": gender or "", "gender_confidence": _fmt(confidence),
            "emotion": p.emotion or "", "emotion_confidence": _fmt(p.emotion_confidence),
            "emotion_model": p.emotion_model or "",
        }
        for label in EMOTION_LABELS:
            row[f"prob_{label}"] = _fmt(p.emotion_probabilities.get(label))
        rows.append(row)
    return rows


def segments_csv_bytes(rows: Iterable[dict[str, str]]) -> bytes:
    """The rows as a UTF-8 CSV under the standard header (for a download)."""
    import io

    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(SEGMENT_COLUMNS), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


class SegmentSink(CsvSink):
    """:class:`pipeline.batch.CsvSink` over :data:`SEGMENT_COLUMNS`: all rows of a recording are
    written together, then flushed and fsynced."""

    def __init__(self, path: Path, *, append: bool = False) -> None:
        super().__init__(path, append=append, columns=SEGMENT_COLUMNS)

    def write_file(self, rows: list[dict[str, str]]) -> None:
        self.write_many(rows)


def read_segments_done(path: Path) -> dict[str, list[dict[str, str]]]:
    """Rows of the files an interrupted ``--segments`` run finished, keyed by ``file``, in CSV order.

    A file's rows are known complete once a later file's line (whole or cut) follows them: the
    last complete file is left out unless a cut line of another file follows it (its rows may have
    been cut short by a kill; it is redone); a line cut short is dropped.

    Raises:
        ValueError: the CSV was not written by ``script.py --segments`` (columns differ).
    """
    if not path.exists():
        return {}
    done: dict[str, list[dict[str, str]]] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != SEGMENT_COLUMNS:
            raise ValueError(f"{path} was not written by script.py --segments (columns differ)")
        cut = None  # the file name at the start of a line cut short (possibly cut itself)
        for row in reader:
            if None in row.values() or None in row:
                cut = row.get("file") or ""
                continue
            done.setdefault(row["file"], []).append(row)
    if done:
        last = list(done)[-1]
        if cut is None or last.startswith(cut):  # no later file had begun: the last one may be incomplete
            done.pop(last)
    return done


def rewrite_segments(path: Path, rows: Iterable[dict[str, str]]) -> None:
    """Atomically replace ``path`` with ``rows`` under the segment header."""
    rewrite(path, rows, columns=SEGMENT_COLUMNS)
