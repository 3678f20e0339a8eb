"""Build (or load) every cached table the study reads: librosa statistics and pooled encoder states.

Usage::

    python -m studies.emotion_encoder.tables [--jobs 2]

Clean: every emotional row of the manifest (the row order of
:func:`training.emotion_train.emotion_rows`). Augmented (the shipped recipe's
augmentations): the rows of each fitting split, as :func:`training.emotion_train.training_rows`
builds them, so the emotion recipe finds the librosa tables in its cache.
"""
from __future__ import annotations

import argparse
import sys
import time

from training.emotion_train import TrainConfig, emotion_rows
from training.encoder_table import EncoderTable, build_encoder_table

FIT_SPLITS = ("train", "val")


def clean_table(*, jobs: int | None = None) -> EncoderTable:
    """Encoder states of every emotional row, clean."""
    return build_encoder_table(emotion_rows(), jobs=jobs)


def augmented_tables(*, jobs: int | None = None, splits=FIT_SPLITS) -> dict[tuple[str, str], EncoderTable]:
    """``{(augmentation tag, split): table}`` for the recipe's augmentations and ``splits``."""
    rows = emotion_rows()
    out = {}
    for augmentation in TrainConfig().augmentations:
        for split in splits:
            out[augmentation.tag, split] = build_encoder_table([u for u in rows if u.split == split],
                                                               augmentation=augmentation, jobs=jobs)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=None)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    table = clean_table(jobs=args.jobs)
    print(f"clean: {len(table.utterances)} rows, {int((~table.ok).sum())} failed, "
          f"{time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    for (tag, split), t in augmented_tables(jobs=args.jobs).items():
        print(f"{tag} {split}: {len(t.utterances)} rows, {int((~t.ok).sum())} failed, "
              f"{time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
