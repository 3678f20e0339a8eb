"""Feature tables for training and evaluation, cached on disk.

A table holds the features of a list of manifest rows, optionally under one
augmentation. Tables are cached in ``<project>/cache/features`` keyed by the
feature configuration, the audio configuration and the augmentation, so the
expensive extraction runs once per machine.
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from pipeline.audio import DEFAULT_AUDIO_CONFIG, AudioConfig, decode_audio, prepare_signal, to_mono_float
from training.augment import Augmentation
from pipeline.paths import PROJECT_ROOT
from training.corpus import Utterance
from pipeline.features import DEFAULT_FEATURE_CONFIG, FeatureConfig, extract_features, feature_names

CACHE_DIR = PROJECT_ROOT / "cache" / "features"


@dataclass(frozen=True)
class FeatureTable:
    """Features of ``utterances`` (row ``i`` of ``X`` belongs to ``utterances[i]``).

    Attributes:
        X: ``np.ndarray [shape=(n_rows, n_features)]`` float32.
        utterances: the manifest rows, same order.
        ok: ``np.ndarray [shape=(n_rows,)]`` bool; False where extraction failed
            (the row of ``X`` is then zeros and must be dropped).
    """

    X: np.ndarray
    utterances: tuple[Utterance, ...]
    ok: np.ndarray

    def labels(self, field: str) -> np.ndarray:
        return np.array([getattr(u, field) for u in self.utterances])

    def select(self, keep) -> "FeatureTable":
        """The rows that extracted fine and satisfy ``keep(utterance)``, in order (all ``ok``)."""
        idx = [i for i, u in enumerate(self.utterances) if self.ok[i] and keep(u)]
        return FeatureTable(X=self.X[idx], utterances=tuple(self.utterances[i] for i in idx),
                            ok=np.ones(len(idx), dtype=bool))


def _init_worker() -> None:
    """One BLAS thread per worker process: the workers already fill the cores."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def _one(args: tuple) -> np.ndarray | None:
    path, augmentation, seed, audio_config, feature_config = args
    try:
        decoded = decode_audio(path)
        y, _ = to_mono_float(decoded.samples)
        if augmentation is not None:
            y = augmentation.apply(y, decoded.sample_rate, seed=seed)
        prepared = prepare_signal(y, decoded.sample_rate, config=audio_config)
        return extract_features(prepared.samples, config=feature_config)
    except Exception:  # reported as ok=False; the caller counts and drops them
        return None


def _cache_key(paths: Sequence[str], augmentation: Augmentation | None, audio_config: AudioConfig,
               feature_config: FeatureConfig) -> str:
    payload = json.dumps(
        {
            "paths": list(paths),
            "augmentation": None if augmentation is None else augmentation.__dict__,
            "audio": audio_config.to_dict(),
            "features": feature_config.to_dict(),
            "feature_names": list(feature_names(feature_config)),
        },
        sort_keys=True,
    )
    return hashlib.sha1(payload.encode()).hexdigest()[:16]


def build_table(
    utterances: Sequence[Utterance],
    *,
    augmentation: Augmentation | None = None,
    seed: int = 0,
    audio_config: AudioConfig = DEFAULT_AUDIO_CONFIG,
    feature_config: FeatureConfig = DEFAULT_FEATURE_CONFIG,
    jobs: int | None = None,
    use_cache: bool = True,
) -> FeatureTable:
    """Extract (or load from cache) the features of ``utterances``.

    ``seed`` makes noise augmentation reproducible (row ``i`` uses ``seed + i``).
    ``jobs`` worker processes (default: the CPU count).
    """
    utterances = tuple(utterances)
    paths = [str(u.path) for u in utterances]
    key = _cache_key([u.relpath for u in utterances], augmentation, audio_config, feature_config) + f"-s{seed}"
    cache_file = CACHE_DIR / f"{key}.npz"
    if use_cache and cache_file.is_file():
        cached = np.load(cache_file)
        return FeatureTable(X=cached["X"], utterances=utterances, ok=cached["ok"])
    jobs = jobs or os.cpu_count() or 1
    tasks = [(p, augmentation, seed + i, audio_config, feature_config) for i, p in enumerate(paths)]
    if jobs > 1 and len(tasks) > 16:
        with ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker) as pool:
            results = list(pool.map(_one, tasks, chunksize=16))
    else:
        results = [_one(t) for t in tasks]
    n_features = next((r.shape[0] for r in results if r is not None), 0)
    ok = np.array([r is not None for r in results], dtype=bool)
    X = np.zeros((len(results), n_features), dtype=np.float32)
    for i, r in enumerate(results):
        if r is not None:
            X[i] = r
    if use_cache:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache_file, X=X, ok=ok)
    return FeatureTable(X=X, utterances=utterances, ok=ok)
