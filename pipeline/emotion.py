"""Gender-specific emotion models: a Keras 1-D CNN over the feature statistics.

A model folder (``male_models/``, ``female_models/``) describes itself:

* ``model.keras``   the network (loaded with ``safe_mode=True``, no compile);
* ``scaler.joblib`` the ``sklearn.preprocessing.StandardScaler`` fitted on training rows;
* ``config.json``   labels in output order, the feature and audio configuration
  and version, sample rate, library versions and training summary;
* ``README.md``     the model card.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.audio import AudioConfig
from pipeline.errors import ModelError, PredictionError
from pipeline.features import FeatureConfig, feature_names

EMOTION_LABELS: tuple[str, ...] = (
    "neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised",
)
MODEL_FILE = "model.keras"
SCALER_FILE = "scaler.joblib"
CONFIG_FILE = "config.json"
REQUIRED_FILES = (MODEL_FILE, SCALER_FILE, CONFIG_FILE)


@dataclass(frozen=True)
class EmotionModelConfig:
    """Contents of an emotion model folder's ``config.json``."""

    name: str
    labels: tuple[str, ...]
    feature_config: FeatureConfig
    audio_config: AudioConfig
    sample_rate: int
    n_features: int
    versions: dict[str, str] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "labels": list(self.labels),
            "feature_config": self.feature_config.to_dict(),
            "audio_config": self.audio_config.to_dict(),
            "sample_rate": self.sample_rate,
            "n_features": self.n_features,
            "feature_names": list(feature_names(self.feature_config)),
            "versions": self.versions,
            "training": self.training,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "EmotionModelConfig":
        return cls(
            name=data["name"],
            labels=tuple(data["labels"]),
            feature_config=FeatureConfig.from_dict(data["feature_config"]),
            audio_config=AudioConfig(**data["audio_config"]),
            sample_rate=int(data["sample_rate"]),
            n_features=int(data["n_features"]),
            versions=dict(data.get("versions", {})),
            training=dict(data.get("training", {})),
        )


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape features and models."""
    import importlib.metadata as md

    names = ("numpy", "librosa", "soundfile", "soxr", "scikit-learn", "tensorflow-cpu", "keras", "torch", "torchaudio")
    versions = {}
    for name in names:
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return versions


def configure_tensorflow(threads: int | None = None) -> None:
    """Quiet TensorFlow's start-up logs and cap its thread pools (call before import)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import tensorflow as tf

    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # already initialised: keep the existing pools
            pass


def build_cnn(n_features: int, n_classes: int = len(EMOTION_LABELS), *, seed: int = 0,
              dropout: float = 0.4, name: str = "emotion_cnn") -> Any:
    """A small 1-D CNN over the (standardised) feature vector.

    Input ``[batch, n_features]`` -> reshape ``[batch, n_features, 1]`` ->
    Conv1D(16, 7, stride 2) -> BatchNorm -> ReLU -> Conv1D(32, 5, stride 2) ->
    BatchNorm -> ReLU -> flatten -> dropout -> Dense(64, ReLU) -> dropout ->
    Dense(``n_classes``, softmax). Features are ordered by group (MFCC means
    together, and so on), so neighbouring inputs are related and the convolution
    shares weights across them. Strided convolutions keep it cheap on a CPU
    (about 0.6 M multiply-adds per clip).
    """
    configure_tensorflow()
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(n_features,), name="features")
    x = layers.Reshape((n_features, 1))(inputs)
    for filters, width in ((16, 7), (32, 5)):
        x = layers.Conv1D(filters, width, strides=2, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(dropout)(x)
    x = layers.Dense(64, activation="relu", kernel_regularizer=keras.regularizers.l2(1e-4))(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="emotion")(x)
    return keras.Model(inputs, outputs, name=name)


class EmotionModel:
    """A loaded emotion model folder: scaler + Keras CNN + label order."""

    def __init__(self, model: Any, scaler: Any, config: EmotionModelConfig, folder: Path | None = None) -> None:
        self.model = model
        self.scaler = scaler
        self.config = config
        self.folder = folder
        missing = [label for label in EMOTION_LABELS if label not in config.labels]
        if missing or len(config.labels) != len(EMOTION_LABELS):
            raise ModelError(f"model labels {config.labels} do not match the eight emotions {EMOTION_LABELS}")
        self._order = np.array([config.labels.index(label) for label in EMOTION_LABELS])

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "EmotionModel":
        """Load a model folder, checking every required file first.

        Raises:
            ModelError: naming the missing/corrupt file and what was expected.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise ModelError(f"emotion model folder {folder} does not exist")
        for name in REQUIRED_FILES:
            if not (folder / name).is_file():
                raise ModelError(
                    f"emotion model folder {folder} is missing {name}; expected {', '.join(REQUIRED_FILES)}. "
                    "Restore it from the repository or retrain with `python -m pipeline.train`"
                )
        try:
            config = EmotionModelConfig.from_dict(json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8")))
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"{folder / CONFIG_FILE} is not a valid model config: {exc}") from None
        try:
            import joblib

            scaler = joblib.load(folder / SCALER_FILE)
        except Exception as exc:
            raise ModelError(f"{folder / SCALER_FILE} could not be loaded ({exc}); the file may be truncated") from None
        if getattr(scaler, "n_features_in_", config.n_features) != config.n_features:
            raise ModelError(
                f"{folder / SCALER_FILE} expects {scaler.n_features_in_} features, config.json says {config.n_features}"
            )
        if config.n_features != len(feature_names(config.feature_config)):
            raise ModelError(f"{folder / CONFIG_FILE}: n_features does not match the feature configuration")
        configure_tensorflow()
        try:
            import keras

            model = keras.saving.load_model(folder / MODEL_FILE, compile=False, safe_mode=True)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{folder / MODEL_FILE} could not be loaded ({first}); the file may be truncated") from None
        if tuple(model.input_shape[1:]) != (config.n_features,) or model.output_shape[-1] != len(config.labels):
            raise ModelError(
                f"{folder / MODEL_FILE} has input {model.input_shape} / output {model.output_shape}; "
                f"expected ({config.n_features},) -> {len(config.labels)} classes"
            )
        return cls(model, scaler, config, folder)

    def save(self, folder: str | os.PathLike) -> None:
        """Write ``model.keras``, ``scaler.joblib`` and ``config.json`` into ``folder``."""
        import joblib

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save(folder / MODEL_FILE)
        joblib.dump(self.scaler, folder / SCALER_FILE)
        (folder / CONFIG_FILE).write_text(json.dumps(self.config.to_dict(), indent=2) + "\n", encoding="utf-8")

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Emotion probabilities.

        Args:
            X: ``np.ndarray [shape=(n, n_features)]`` raw (unscaled) features.

        Returns:
            ``np.ndarray [shape=(n, 8)]`` float64, columns in :data:`EMOTION_LABELS` order.
        """
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.config.n_features:
            raise PredictionError(f"expected features of shape (n, {self.config.n_features}), got {X.shape}")
        if X.shape[0] == 0:
            return np.zeros((0, len(EMOTION_LABELS)))
        try:
            scaled = self.scaler.transform(X).astype(np.float32)
            probs = np.asarray(self.model(scaled, training=False), dtype=np.float64)
        except Exception as exc:
            raise PredictionError(f"emotion model '{self.config.name}' failed: {exc}") from None
        return probs[:, self._order]
