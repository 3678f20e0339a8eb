"""Encoder tables: Whisper encoder states of manifest rows, pooled over time, cached on disk.

Each signal is decoded, augmented (optionally) and prepared exactly as
:mod:`training.dataset` does for the librosa statistics; from the same prepared
signal this computes both the librosa statistics (written to the
:func:`training.dataset.build_table` cache under that function's own key, so the
emotion recipe reads them from there) and the encoder's hidden states pooled as
mean and standard deviation over time for every state
(:class:`pipeline.whisper_encoder.EncoderStates`). The emotion models pick their
layers and pooling from that array (:meth:`pipeline.emotion.EncoderInput.columns`).

Tables are cached in ``<project>/cache/encoder`` keyed by the rows, the
augmentation and seed, the audio configuration and the encoder weights' sha256.
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
from pipeline.features import DEFAULT_FEATURE_CONFIG, extract_features
from pipeline.paths import PROJECT_ROOT
from pipeline.whisper_encoder import N_STATES, WIDTH, weights_sha256
from training.augment import Augmentation
from training.corpus import Utterance
from training.dataset import CACHE_DIR as FEATURE_CACHE_DIR
from training.dataset import _cache_key as feature_cache_key

CACHE_DIR = PROJECT_ROOT / "cache" / "encoder"
#: Pooled width per state: mean (384) then standard deviation (384).
POOLED = 2 * WIDTH


@dataclass(frozen=True)
class EncoderTable:
    """Pooled encoder states of ``utterances``.

    Attributes:
        E: ``np.ndarray [shape=(n_rows, 5, 768)]`` float32: per hidden state, mean then std over time.
        utterances: the manifest rows, same order.
        ok: ``np.ndarray [shape=(n_rows,)]`` bool; False where decoding or preparation failed.
    """

    E: np.ndarray
    utterances: tuple[Utterance, ...]
    ok: np.ndarray


_RUNNER = None


def _init_worker() -> None:
    global _RUNNER
    import torch
    from threadpoolctl import threadpool_limits

    from pipeline.whisper_encoder import EncoderRunner

    threadpool_limits(1)
    torch.set_num_threads(1)
    _RUNNER = EncoderRunner()


def _one(args: tuple) -> tuple[np.ndarray, np.ndarray] | None:
    path, augmentation, seed, audio_config = args
    try:
        decoded = decode_audio(path)
        y, _ = to_mono_float(decoded.samples)
        if augmentation is not None:
            y = augmentation.apply(y, decoded.sample_rate, seed=seed)
        prepared = prepare_signal(y, decoded.sample_rate, config=audio_config)
        features = extract_features(prepared.samples, config=DEFAULT_FEATURE_CONFIG)
        states = _RUNNER.states(prepared.samples)
        pooled = states.pooled(range(N_STATES), "mean_std").reshape(N_STATES, POOLED)
        return features, pooled
    except Exception:  # reported as ok=False; callers drop those rows
        return None


def build_encoder_table(utterances: Sequence[Utterance], *, augmentation: Augmentation | None = None, seed: int = 0,
                        audio_config: AudioConfig = DEFAULT_AUDIO_CONFIG, jobs: int | None = None,
                        use_cache: bool = True) -> EncoderTable:
    """Encoder states (and, into their own cache, librosa statistics) of ``utterances``.

    ``seed`` makes noise augmentation reproducible (row ``i`` uses ``seed + i``, as
    :func:`training.dataset.build_table`). ``jobs`` worker processes (default: the CPU count),
    each with one thread.
    """
    utterances = tuple(utterances)
    relpaths = [u.relpath for u in utterances]
    payload = json.dumps({"paths": relpaths, "augmentation": None if augmentation is None else augmentation.__dict__,
                          "audio": audio_config.to_dict(), "encoder": weights_sha256()[:16], "seed": seed}, sort_keys=True)
    key = hashlib.sha1(payload.encode()).hexdigest()[:16]
    cache_file = CACHE_DIR / f"{key}.npz"
    if use_cache and cache_file.is_file():
        cached = np.load(cache_file)
        return EncoderTable(E=cached["E"], utterances=utterances, ok=cached["ok"])
    jobs = jobs or os.cpu_count() or 1
    tasks = [(str(u.path), augmentation, seed + i, audio_config) for i, u in enumerate(utterances)]
    with ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker) as pool:
        results = list(pool.map(_one, tasks, chunksize=8))
    ok = np.array([r is not None for r in results], dtype=bool)
    E = np.zeros((len(results), N_STATES, POOLED), dtype=np.float32)
    n_features = next((r[0].shape[0] for r in results if r is not None), 0)
    X = np.zeros((len(results), n_features), dtype=np.float32)
    for i, r in enumerate(results):
        if r is not None:
            X[i], E[i] = r
    if use_cache:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        np.savez(cache_file, E=E, ok=ok)
        feature_key = feature_cache_key(relpaths, augmentation, audio_config, DEFAULT_FEATURE_CONFIG) + f"-s{seed}"
        feature_file = FEATURE_CACHE_DIR / f"{feature_key}.npz"
        if not feature_file.is_file():
            FEATURE_CACHE_DIR.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(feature_file, X=X, ok=ok)
    return EncoderTable(E=E, utterances=utterances, ok=ok)
