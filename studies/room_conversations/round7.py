"""Round 7 of ``plan.md``: an HMM re-segmentation, overlap marking and "three voices heard", chosen on `dev` + `dev3`.

Usage::

    python -m studies.room_conversations.round7 --cache dev dev2_one test_one   # build caches (one process each)
    python -m studies.room_conversations.round7 --choose                        # the choosing grid, report_round7_choose.*
    python -m studies.room_conversations.round7 --judge                         # round 6's rule on dev4, test_one, real, clips

Caches come from grid.py's :func:`~studies.room_conversations.grid.build_cache` at silero 0.5 and 0.35.
"""
from __future__ import annotations

import argparse
from typing import Sequence

from .grid import build_cache
from .study import SEEDS, _log

VAD_THRESHOLDS = (0.5, 0.35)
#: name -> (recordings, speakers per conversation (None: 1-6), seed, speaker splits)
SETS = {
    "dev": (60, None, SEEDS["dev"], frozenset({"train", "val"})),
    "dev3": (60, None, 7, frozenset({"train", "val"})),
    "dev2_one": (40, 1, 6, frozenset({"train", "val"})),
    "dev4": (60, None, 10, frozenset({"train", "val"})),
    "test_one": (40, 1, 9, frozenset({"test"})),
}


def cached(name: str) -> list[dict]:
    n, k, seed, splits = SETS[name]
    return build_cache(name, n, k=k, seed=seed, thresholds=VAD_THRESHOLDS, splits=splits)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.room_conversations.round7", description=__doc__.splitlines()[0])
    parser.add_argument("--cache", nargs="+", choices=sorted(SETS), default=[])
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    for name in args.cache:
        rows = cached(name)
        _log(f"{name}: {len(rows)} conversations cached")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
