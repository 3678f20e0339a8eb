"""Where the project lives: the one definition of the project root.

Every other path (shipped model folders, ``reports/``, ``docs/``) is built from
:data:`PROJECT_ROOT`, so the project can be run from any working directory.
"""
from __future__ import annotations

from pathlib import Path

#: The repository root (the folder holding ``app.py``, ``script.py`` and ``pipeline/``).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
