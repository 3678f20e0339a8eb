"""Shared fixtures: tiny models with known answers, synthetic audio, the shipped cascade."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path

import numpy as np
import pytest

from training.corpus import data_dir

SR = 16000


def speech_like(duration_s: float = 2.0, *, sr: int = SR, f0: float = 150.0, seed: int = 0) -> np.ndarray:
    """A harmonic complex with vibrato and 4 Hz syllable-like amplitude modulation (peak 0.5)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration_s * sr)) / sr
    inst_f0 = f0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(inst_f0) / sr
    y = sum(np.sin(k * phase) / k for k in range(1, 11))
    envelope = 0.5 * (1 - np.cos(2 * np.pi * 4 * t)) * 0.9 + 0.1
    y = y * envelope + 0.003 * rng.standard_normal(t.size)
    return (0.5 * y / np.max(np.abs(y))).astype(np.float32)


def make_gender_model(folder: Path, *, female_logit: float) -> Path:
    """A tiny ECAPA (C=16) whose output ignores the input: softmax([0, female_logit])."""
    import torch

    from pipeline.ecapa import ECAPAGender

    torch.manual_seed(0)
    model = ECAPAGender(C=16, mfa_channels=24, attention_channels=8, embedding_dim=8)
    with torch.no_grad():
        model.fc7.weight.zero_()
        model.fc7.bias.copy_(torch.tensor([0.0, female_logit]))
    model.eval()
    model.save_pretrained(folder)
    return folder


def make_emotion_model(folder: Path, *, name: str, favourite: str, strength: float = 4.0) -> Path:
    """An untrained CNN whose output is softmax(bias) with ``favourite`` dominant."""
    from sklearn.preprocessing import StandardScaler

    from pipeline.audio import DEFAULT_AUDIO_CONFIG
    from pipeline.emotion import EMOTION_LABELS, EmotionModel, EmotionModelConfig, build_cnn
    from pipeline.features import DEFAULT_FEATURE_CONFIG, feature_names

    n = len(feature_names(DEFAULT_FEATURE_CONFIG))
    net = build_cnn(n, seed=1)
    last = net.get_layer("emotion")
    kernel, bias = last.get_weights()
    bias = np.zeros_like(bias)
    bias[EMOTION_LABELS.index(favourite)] = strength
    last.set_weights([np.zeros_like(kernel), bias])
    scaler = StandardScaler().fit(np.random.default_rng(0).standard_normal((32, n)))
    config = EmotionModelConfig(
        name=name, labels=EMOTION_LABELS, feature_config=DEFAULT_FEATURE_CONFIG,
        audio_config=DEFAULT_AUDIO_CONFIG, sample_rate=16000, n_features=n,
    )
    EmotionModel(net, scaler, config).save(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Folders of tiny models with known answers.

    ``female_gender``: always female (p=0.982); ``male_gender``: always male;
    ``even_gender``: 50/50. ``male``: emotion model that answers *sad*;
    ``female``: answers *angry*.
    """
    root = tmp_path_factory.mktemp("tiny_models")
    return {
        "female_gender": make_gender_model(root / "female_gender", female_logit=4.0),
        "male_gender": make_gender_model(root / "male_gender", female_logit=-4.0),
        "even_gender": make_gender_model(root / "even_gender", female_logit=0.0),
        "male": make_emotion_model(root / "male", name="male", favourite="sad"),
        "female": make_emotion_model(root / "female", name="female", favourite="angry"),
    }


@pytest.fixture(scope="session")
def tiny_cascade(tiny_models):
    from pipeline.cascade import Cascade

    return Cascade.load(tiny_models["female_gender"], male_dir=tiny_models["male"], female_dir=tiny_models["female"])


@pytest.fixture(scope="session")
def shipped_cascade():
    from pipeline.cascade import Cascade

    return Cascade.load()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = data_dir()
    if not (root / "manifest.csv").is_file():
        pytest.skip(f"shared corpus not found at {root}")
    return root


@pytest.fixture
def wav_file(tmp_path):
    """Factory: write ``speech_like`` audio (or a given array) to a file and return its path."""
    import soundfile as sf

    def make(name: str = "speech.wav", *, duration_s: float = 2.0, sr: int = SR, y: np.ndarray | None = None,
             **write_kwargs) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = speech_like(duration_s, sr=sr) if y is None else y
        sf.write(path, data, sr, **write_kwargs)
        return path

    return make


@pytest.fixture
def two_corpora_env(tmp_path, monkeypatch) -> Path:
    """The two-corpus synthetic manifest of ``tests/test_gender_holdout.py`` in a fresh folder, set as the data dir."""
    from tests.test_gender_holdout import _two_corpora

    data = tmp_path / "data"
    data.mkdir()
    _two_corpora(data)
    monkeypatch.setenv("SER_DATA_DIR", str(data))
    return data
