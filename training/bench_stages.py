"""Per-clip cost of each stage of the cascade (decode + prepare, features, speech encoder, gender, emotion), for the
benchmark (:mod:`training.bench`) and the engines' scaling on paper (:mod:`training.bench_engines`)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def clip_duration(path: Path) -> float:
    """Seconds of audio in the file at ``path`` (from its header)."""
    import soundfile as sf

    return sf.info(str(path)).duration


def bench_stages(cascade, paths) -> dict:
    """Mean milliseconds per clip of each stage, run stage by stage over ``paths``."""
    from pipeline.audio import load_audio
    from pipeline.features import extract_features

    t0 = time.perf_counter()
    prepared = [load_audio(p, config=cascade.audio_config) for p in paths]
    t1 = time.perf_counter()
    feats = np.stack([extract_features(a.samples, config=cascade.feature_config) for a in prepared])
    t2 = time.perf_counter()
    if cascade.reads_encoder:
        from pipeline.whisper_encoder import encoder_block

        feats = np.concatenate([feats, np.stack([encoder_block(a.samples) for a in prepared])], axis=1)
    t_enc = time.perf_counter()
    cascade.gender.predict_proba_batch([a.samples for a in prepared])
    t3 = time.perf_counter()
    for model in cascade.emotion_models.values():
        model.predict_proba(feats)
    t4 = time.perf_counter()
    n = len(paths)
    seconds = sum(a.samples.size for a in prepared) / cascade.audio_config.sample_rate
    return {
        "decode_prepare_ms": 1000 * (t1 - t0) / n,
        "features_ms": 1000 * (t2 - t1) / n,
        "encoder_ms": 1000 * (t_enc - t2) / n,
        "encoder_ms_per_4s": 1000 * (t_enc - t2) / seconds * 4.0 if seconds else 0.0,
        "gender_ms": 1000 * (t3 - t_enc) / n,
        "emotion_ms_both_models": 1000 * (t4 - t3) / n,
    }
