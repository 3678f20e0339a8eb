"""What the full study and round 5 share without importing each other: the opt-in pipelines and kept rows.

``HYBRID`` is round 5's H, ``ROUND4`` round 4's learnt decision (both opt-in :class:`pipeline.diarize.DiarizationConfig`);
:func:`staged` keeps a step's rows under ``cache/room_conversations`` so that a rerun resumes from them.
"""
from __future__ import annotations

import pickle
import sys
import time
from typing import Callable

from pipeline.diarize import ONE_VOICE_MODEL, DiarizationConfig
from pipeline.paths import PROJECT_ROOT

CACHE = PROJECT_ROOT / "cache" / "room_conversations"
HYBRID = DiarizationConfig(one_voice_model=ONE_VOICE_MODEL, keep_first_cut=True)
ROUND4 = DiarizationConfig(one_voice_model=ONE_VOICE_MODEL)


def staged(name: str, n: int, compute: Callable[[], list[dict]]) -> list[dict]:
    """Rows kept under ``cache/room_conversations/round5_{name}_{n}.pkl`` (a rerun resumes from them)."""
    path = CACHE / f"round5_{name}_{n}.pkl"
    if path.is_file():
        return pickle.loads(path.read_bytes())
    start = time.perf_counter()
    rows = compute()
    print(f"{name}: {len(rows)} recordings in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(rows))
    return rows
