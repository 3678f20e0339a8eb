"""Emotion under degraded recordings: the ``test`` clips under noise, babble and the telephone band.

The same conditions, seeds and babble as the gender robustness table
(:mod:`training.gender_conditions`): each clip is decoded once, degraded, prepared
like any input, and turned into the runtime's input row (librosa statistics, then
the pooled speech-encoder block). Rows are cached per condition in
``<project>/cache/conditions`` (keyed by the rows, the condition set, the seed and the
encoder weights), so several emotion models can be scored on the same rows.

Usage (a model pair beside the shipped one; both are scored on identical rows)::

    python -m training.emotion_conditions --models shipped=male_models:female_models before=OLD_MALE:OLD_FEMALE --out STEM
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from pipeline.emotion import EMOTION_LABELS, EmotionModel
from pipeline.paths import PROJECT_ROOT
from training.corpus import Utterance

CACHE_DIR = PROJECT_ROOT / "cache" / "conditions"
#: The conditions of the emotion robustness table (clean first).
EMOTION_CONDITIONS = ("clean", "pink_10db", "babble_10db", "telephone_8k")


@dataclass(frozen=True)
class ConditionRows:
    """Input rows of ``rows`` under each condition.

    Attributes:
        rows: the scored manifest rows.
        X: ``{condition: np.ndarray [shape=(n, 483 + 3840)]}`` float32 (zeros where ``ok`` is False).
        ok: ``{condition: np.ndarray [shape=(n,)]}`` bool: decoded, prepared and featurised.
    """

    rows: tuple[Utterance, ...]
    X: dict[str, np.ndarray]
    ok: dict[str, np.ndarray]


def _chunk(args: tuple) -> tuple[int, dict[str, list]]:
    start, rows, conditions, babble, seed = args
    import torch
    from threadpoolctl import threadpool_limits

    from pipeline.features import DEFAULT_FEATURE_CONFIG, extract_features
    from pipeline.whisper_encoder import encoder_block
    from training.gender_conditions import condition_batches

    threadpool_limits(1)
    torch.set_num_threads(1)
    out: dict[str, list] = {c: [None] * len(rows) for c in conditions}
    for indices, prepared in condition_batches(rows, conditions=conditions, babble=babble, seed=seed + start):
        for c in conditions:
            for i, y in zip(indices, prepared[c]):
                if y is None:
                    continue
                try:
                    out[c][i] = np.concatenate([extract_features(y, config=DEFAULT_FEATURE_CONFIG), encoder_block(y)])
                except Exception:  # noqa: BLE001 - too little left after the condition: not scored
                    out[c][i] = None
    return start, out


def condition_rows(rows: Sequence[Utterance], manifest: Sequence[Utterance], *,
                   conditions: Sequence[str] = EMOTION_CONDITIONS, seed: int = 0, jobs: int | None = None,
                   use_cache: bool = True) -> ConditionRows:
    """Input rows of ``rows`` under ``conditions`` (clip ``i`` gets noise seed ``seed + i``)."""
    from pipeline.whisper_encoder import weights_sha256
    from training.gender_conditions import study_babble

    rows = tuple(rows)
    key = hashlib.sha1(json.dumps({"rows": [u.relpath for u in rows], "conditions": list(conditions), "seed": seed,
                                   "encoder": weights_sha256()},
                                  sort_keys=True).encode()).hexdigest()[:16]
    cache = CACHE_DIR / f"{key}.npz"
    if use_cache and cache.is_file():
        data = np.load(cache)
        return ConditionRows(rows, {c: data[f"X_{c}"] for c in conditions}, {c: data[f"ok_{c}"] for c in conditions})
    babble = study_babble(manifest, scored=rows) if "babble_10db" in conditions else None
    jobs = jobs or os.cpu_count() or 1
    size = max(1, -(-len(rows) // (4 * jobs)))
    tasks = [(s, list(rows[s:s + size]), tuple(conditions), babble, seed) for s in range(0, len(rows), size)]
    X = {c: [None] * len(rows) for c in conditions}
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for start, out in pool.map(_chunk, tasks):
            for c in conditions:
                X[c][start:start + len(out[c])] = out[c]
    width = next(x.shape[0] for c in conditions for x in X[c] if x is not None)
    ok = {c: np.array([x is not None for x in X[c]]) for c in conditions}
    arrays = {c: np.stack([x if x is not None else np.zeros(width, np.float32) for x in X[c]]).astype(np.float32)
              for c in conditions}
    if use_cache:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **{f"X_{c}": arrays[c] for c in conditions}, **{f"ok_{c}": ok[c] for c in conditions})
    return ConditionRows(rows, arrays, ok)


def routed_labels(models: Mapping[str, EmotionModel], X: np.ndarray, genders: Sequence[str]) -> np.ndarray:
    """Emotion labels of rows ``X [n, ...]``, each from ``models[gender]`` (the speaker's true gender)."""
    genders = np.asarray(genders)
    out = np.empty(len(genders), dtype=object)
    for gender in ("male", "female"):
        idx = np.flatnonzero(genders == gender)
        if idx.size:
            out[idx] = np.asarray(EMOTION_LABELS, dtype=object)[models[gender].predict_proba(X[idx]).argmax(1)]
    return out


def robustness_table(models: Mapping[str, EmotionModel], data: ConditionRows) -> dict:
    """Accuracy per condition (and per corpus) on the clips every condition could score.

    Returns ``{"n": clips, "accuracy": {condition: a}, "per_corpus": {condition: {corpus: a}},
    "change_pts": {condition: points from clean}}``.
    """
    keep = np.logical_and.reduce([data.ok[c] for c in data.X])
    rows = [u for u, k in zip(data.rows, keep) if k]
    truth = np.array([u.emotion for u in rows], dtype=object)
    corpora = np.array([u.corpus for u in rows])
    accuracy, per_corpus = {}, {}
    for c, X in data.X.items():
        right = routed_labels(models, X[keep], [u.gender for u in rows]) == truth
        accuracy[c] = float(right.mean())
        per_corpus[c] = {k: float(right[corpora == k].mean()) for k in sorted(set(corpora))}
    return {"n": int(keep.sum()), "accuracy": accuracy, "per_corpus": per_corpus,
            "change_pts": {c: 100 * (a - accuracy["clean"]) for c, a in accuracy.items()}}


def main(argv: list[str] | None = None) -> int:
    from training.corpus import read_manifest
    from training.reporting import pct, write_report

    parser = argparse.ArgumentParser(description="emotion on the test clips under degraded recordings")
    parser.add_argument("--models", nargs="+", required=True, metavar="[LABEL=]MALE_DIR:FEMALE_DIR")
    parser.add_argument("--out", required=True, help="report stem (STEM.json, STEM.md)")
    parser.add_argument("--jobs", type=int, default=None)
    args = parser.parse_args(argv)
    manifest = read_manifest()
    rows = [u for u in manifest if u.emotion and u.split == "test"]
    data = condition_rows(rows, manifest, jobs=args.jobs)
    tables = {}
    for item in args.models:
        label, _, pair = item.rpartition("=")
        male, female = pair.split(":")
        tables[label or pair] = robustness_table({"male": EmotionModel.load(male), "female": EmotionModel.load(female)},
                                                 data)
    lines = ["# Emotion on `test` under degraded recordings", "",
             "Routed by the speaker's true gender; clips every condition could score. Conditions as the gender "
             "robustness table (training/gender_conditions.py).", "",
             "| models | clips | " + " | ".join(EMOTION_CONDITIONS) + " |", "|---|---:|" + "---:|" * len(EMOTION_CONDITIONS)]
    for pair, t in tables.items():  # the label, or the folders
        cells = [pct(t["accuracy"]["clean"])] + [f"{pct(t['accuracy'][c])} ({t['change_pts'][c]:+.1f})"
                                                 for c in EMOTION_CONDITIONS[1:]]
        lines.append(f"| `{pair}` | {t['n']} | " + " | ".join(cells) + " |")
    write_report(args.out, {"tables": tables}, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
