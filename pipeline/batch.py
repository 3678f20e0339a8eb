"""Batch scoring: find audio files, score them, write one CSV row per file.

Shared by ``script.py`` and the web app so both produce the same table.
Rows are written and flushed as they complete, so an interrupted run leaves a
valid CSV; :func:`read_done` lets a later run resume without redoing them.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence, TextIO

from pipeline.audio import AUDIO_EXTENSIONS
from pipeline.cascade import Cascade, Featurised, Prediction
from pipeline.emotion import EMOTION_LABELS
from pipeline.gender import GENDER_LABELS

CSV_COLUMNS: tuple[str, ...] = (
    "file", "status", "error", "duration_s", "gender", "gender_confidence", "emotion",
    "emotion_confidence", "emotion_model",
    *(f"prob_{label}" for label in EMOTION_LABELS),
    *(f"gender_prob_{label}" for label in GENDER_LABELS),
    "speech_duration_s",
)


@dataclass(frozen=True)
class InputFile:
    """An audio file to score: ``path`` on disk, ``name`` as written in the CSV."""

    path: Path
    name: str


def is_audio_name(name: str) -> bool:
    """True if ``name`` ends with a known audio extension (any case)."""
    return name.lower().endswith(AUDIO_EXTENSIONS)


def discover(inputs: Sequence[str | os.PathLike], *, recursive: bool = False) -> list[InputFile]:
    """List the audio files named by ``inputs`` (files and/or folders), in a stable order.

    Folders contribute files with an audio extension (case-insensitive), sorted
    by relative path; with ``recursive`` their sub-folders too (symbolic links to
    folders are not followed, so link loops are harmless). Files named directly
    are always included, whatever their extension. In the CSV a file inside a
    given folder is named relative to that folder; a file given directly keeps
    the path as given. Each file appears once.

    Raises:
        FileNotFoundError: an input does not exist.
    """
    found: list[InputFile] = []
    seen: set[str] = set()
    for item in inputs:
        root = Path(item)
        if root.is_dir():
            entries: list[InputFile] = []
            if recursive:
                for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
                    dirnames.sort()
                    for filename in filenames:
                        if is_audio_name(filename):
                            path = Path(dirpath) / filename
                            entries.append(InputFile(path, path.relative_to(root).as_posix()))
            else:
                for path in root.iterdir():
                    if is_audio_name(path.name) and not path.is_dir():
                        entries.append(InputFile(path, path.name))
            entries.sort(key=lambda entry: entry.name)
        elif root.exists() or root.is_symlink():
            entries = [InputFile(root, str(item))]
        else:
            raise FileNotFoundError(f"no such file or folder: {item}")
        for entry in entries:
            key = os.path.abspath(entry.path)
            if key not in seen:
                seen.add(key)
                found.append(entry)
    return found


def _fmt(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def prediction_row(prediction: Prediction, *, name: str | None = None) -> dict[str, str]:
    """The CSV row (column -> text) for one prediction."""
    row = {
        "file": name if name is not None else (prediction.file or ""),
        "status": prediction.status,
        "error": prediction.error,
        "duration_s": _fmt(prediction.duration_s, 3),
        "gender": prediction.gender or "",
        "gender_confidence": _fmt(prediction.gender_confidence),
        "emotion": prediction.emotion or "",
        "emotion_confidence": _fmt(prediction.emotion_confidence),
        "emotion_model": prediction.emotion_model or "",
        "speech_duration_s": _fmt(prediction.speech_duration_s, 3),
    }
    for label in EMOTION_LABELS:
        row[f"prob_{label}"] = _fmt(prediction.emotion_probabilities.get(label))
    for label in GENDER_LABELS:
        row[f"gender_prob_{label}"] = _fmt(prediction.gender_probabilities.get(label))
    return row


def _init_worker() -> None:
    """Feature workers use one BLAS/OpenMP thread each: the pool already fills the cores."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def score(cascade: Cascade, files: Sequence[InputFile], *, batch_size: int = 16,
          jobs: int = 1) -> Iterator[tuple[InputFile, Prediction]]:
    """Yield ``(file, prediction)`` for every file, in order, scoring ``batch_size`` at a time.

    With ``jobs > 1``, decoding and feature extraction (stage 1) run in that many
    worker processes, one batch ahead of the models (stage 2) in this process;
    results equal ``jobs == 1`` up to floating-point rounding (about 1e-7).
    """
    chunks = [files[i:i + batch_size] for i in range(0, len(files), batch_size)]
    if jobs <= 1:
        for chunk in chunks:
            predictions = cascade.predict_files([f.path for f in chunk], names=[f.name for f in chunk])
            yield from zip(chunk, predictions)
        return
    from pipeline.cascade import featurise_source

    def submit(pool, chunk):
        return [pool.submit(featurise_source, f.path, f.name, cascade.audio_config, cascade.feature_config,
                            cascade.denoise)
                for f in chunk]

    import torch

    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers take the other cores; more torch threads oversubscribe them
    try:
        yield from _score_pooled(cascade, chunks, jobs, submit)
    finally:
        torch.set_num_threads(torch_threads)


def _score_pooled(cascade: Cascade, chunks, jobs: int, submit) -> Iterator[tuple[InputFile, Prediction]]:
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker) as pool:
        ahead = [submit(pool, c) for c in chunks[:2]]
        for k, chunk in enumerate(chunks):
            futures = ahead.pop(0)
            if k + 2 < len(chunks):
                ahead.append(submit(pool, chunks[k + 2]))
            items = []
            for f, future in zip(chunk, futures):
                try:
                    items.append(future.result())
                except Exception as exc:  # a worker died: only this file fails
                    items.append(Featurised(f.name, failure=Prediction.failure(exc, file=f.name)))
            yield from zip(chunk, cascade.score(items))


class CsvSink:
    """Append rows to a CSV file, flushing after each one (crash-safe)."""

    def __init__(self, path: Path, *, append: bool = False) -> None:
        self.path = path
        new = not (append and path.exists() and path.stat().st_size > 0)
        self._handle: TextIO = open(path, "a" if not new else "w", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._handle, fieldnames=list(CSV_COLUMNS), extrasaction="ignore")
        if new:
            self._writer.writeheader()
            self._flush()

    def write(self, row: dict[str, str]) -> None:
        self._writer.writerow(row)
        self._flush()

    def _flush(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "CsvSink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_done(path: Path) -> dict[str, dict[str, str]]:
    """Rows already in an existing output CSV, keyed by ``file`` (for ``--resume``).

    A last line cut short by a kill (wrong column count) is ignored and dropped.
    """
    if not path.exists():
        return {}
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
            raise ValueError(f"{path} was not written by this version of script.py (columns differ)")
        return {row["file"]: row for row in reader if None not in row.values() and None not in row}


def rewrite(path: Path, rows: Iterable[dict[str, str]]) -> None:
    """Atomically replace ``path`` with ``rows`` under the standard header."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(CSV_COLUMNS), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
