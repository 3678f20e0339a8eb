"""Write a report as ``STEM.json`` (machine-readable) and ``STEM.md`` (for people), side by side."""
from __future__ import annotations

import json
from pathlib import Path


def write_report(stem: str | Path, payload: dict, markdown: str) -> Path:
    """Write ``payload`` to ``STEM.json`` (indented, UTF-8) and ``markdown`` to ``STEM.md``.

    Creates the parent folder. Returns the Markdown path.
    """
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    path = stem.with_suffix(".md")
    path.write_text(markdown, encoding="utf-8")
    return path
