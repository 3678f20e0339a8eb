"""The shared speech corpus: manifest rows and where the data lives.

The corpus sits beside the project as ``../shared/data`` (override with the
environment variable ``SER_DATA_DIR``). Its ``manifest.csv`` splits speakers into
``train``/``val``/``test``; nothing here ever mixes a speaker across splits.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.paths import PROJECT_ROOT


def data_dir() -> Path:
    """Folder of the shared corpus (``$SER_DATA_DIR`` or ``<project>/../shared/data``)."""
    env = os.environ.get("SER_DATA_DIR")
    return Path(env) if env else PROJECT_ROOT.parent / "shared" / "data"


@dataclass(frozen=True)
class Utterance:
    """One manifest row. ``emotion`` and ``intensity`` are ``""`` when unknown."""

    path: Path
    corpus: str
    speaker: str
    gender: str
    emotion: str
    intensity: str
    language: str
    split: str
    duration_s: float

    @property
    def relpath(self) -> str:
        return self.path.relative_to(data_dir()).as_posix() if self.path.is_absolute() else self.path.as_posix()


def read_manifest(root: Path | None = None) -> list[Utterance]:
    """Read ``manifest.csv`` under ``root`` (default :func:`data_dir`) in file order."""
    root = Path(root) if root is not None else data_dir()
    manifest = root / "manifest.csv"
    if not manifest.is_file():
        raise FileNotFoundError(
            f"{manifest} not found: put the shared corpus at ../shared/data or set SER_DATA_DIR"
        )
    with open(manifest, newline="", encoding="utf-8") as handle:
        return [
            Utterance(
                path=root / row["path"],
                corpus=row["corpus"],
                speaker=row["speaker"],
                gender=row["gender"],
                emotion=row["emotion"] or "",
                intensity=row["intensity"] or "",
                language=row["language"],
                split=row["split"],
                duration_s=float(row["duration_s"]),
            )
            for row in csv.DictReader(handle)
        ]


def spread(rows: list, n: int | None) -> list:
    """Every k-th row so that about ``n`` remain (all of them when ``n`` is None or not smaller)."""
    if n is None or len(rows) <= n:
        return list(rows)
    return list(rows[:: -(-len(rows) // max(n, 1))])
