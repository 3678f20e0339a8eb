"""Gender-specific emotion models: a Keras 1-D CNN over the feature statistics.

A model folder (``male_models/``, ``female_models/``) describes itself:

* ``model.keras``   the network (loaded with ``safe_mode=True``, no compile);
* ``scaler.joblib`` the ``sklearn.preprocessing.StandardScaler`` fitted on training rows;
* ``encoder_scaler.joblib`` (models that read the speech encoder) the scaler of the
  pooled encoder states;
* ``config.json``   labels in output order, the feature and audio configuration
  and version, sample rate, the encoder input (``encoder``: which hidden states of
  :mod:`pipeline.whisper_encoder`, which pooling, how the network combines them;
  absent for librosa-only models), library versions and training summary;
* ``README.md``     the model card;
* ``model.onnx`` and ``model.onnx.json`` the network exported to ONNX
  (``python -m training.export_onnx``), run by ONNX Runtime where TensorFlow is absent
  or ``SER_BACKEND=onnx`` (:func:`pipeline.backend.resolve`).

A model's input row is the librosa statistics (``n_features`` columns), followed,
when any model of a cascade reads the encoder, by the encoder's five hidden states
pooled as mean and standard deviation (:data:`ENCODER_COLUMNS` columns,
:func:`pipeline.whisper_encoder.EncoderStates.pooled` over every state). Each model
takes the columns it was trained on, so librosa-only model folders keep working
beside encoder models.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import backend
from pipeline.audio import AudioConfig
from pipeline.errors import ModelError, PredictionError
from pipeline.features import FeatureConfig, feature_names

EMOTION_LABELS: tuple[str, ...] = (
    "neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised",
)
MODEL_FILE = "model.keras"
ONNX_FILE = "model.onnx"
SCALER_FILE = "scaler.joblib"
ENCODER_SCALER_FILE = "encoder_scaler.joblib"
CONFIG_FILE = "config.json"
REQUIRED_FILES = (MODEL_FILE, SCALER_FILE, CONFIG_FILE)
#: Pooled encoder columns appended to a row when a cascade reads the encoder: 5 states x (mean, std) x 384.
ENCODER_COLUMNS = 5 * 2 * 384
COMBINES = ("concat", "wsum", "encoder_only")


@dataclass(frozen=True)
class EncoderInput:
    """Which part of the pooled encoder states a model reads, and how its network combines them.

    Attributes:
        layers: hidden states of :mod:`pipeline.whisper_encoder` (0 = after the stem, 4 = last).
        pooling: ``"mean"`` or ``"mean_std"`` over time.
        combine: ``"concat"`` (the states side by side into a dense branch beside the CNN),
            ``"wsum"`` (a learnt weighted sum of the states first) or ``"encoder_only"`` (no
            librosa branch: a study reference, not a product model).
        weights_sha256: sha256 of the encoder weights the model was trained with.
    """

    layers: tuple[int, ...] = (4,)
    pooling: str = "mean_std"
    combine: str = "concat"
    weights_sha256: str = ""

    def __post_init__(self) -> None:
        if not self.layers or any(not 0 <= k <= 4 for k in self.layers):
            raise ModelError(f"encoder layers must be among 0..4, got {self.layers}")
        if self.pooling not in ("mean", "mean_std") or self.combine not in COMBINES:
            raise ModelError(f"unknown encoder pooling {self.pooling!r} or combination {self.combine!r}")

    @property
    def width(self) -> int:
        """Columns per state: 384 (mean) or 768 (mean and std)."""
        return 384 if self.pooling == "mean" else 768

    @property
    def dim(self) -> int:
        """Columns this model reads from the pooled encoder block."""
        return len(self.layers) * self.width

    def columns(self) -> np.ndarray:
        """Indices into the :data:`ENCODER_COLUMNS` block, ``[shape=(dim,)]``, state by state."""
        return np.concatenate([np.arange(k * 768, k * 768 + self.width) for k in self.layers])

    def to_dict(self) -> dict:
        return {"layers": list(self.layers), "pooling": self.pooling, "combine": self.combine,
                "weights_sha256": self.weights_sha256}

    @classmethod
    def from_dict(cls, data: dict) -> "EncoderInput":
        return cls(layers=tuple(int(k) for k in data["layers"]), pooling=data["pooling"], combine=data["combine"],
                   weights_sha256=data.get("weights_sha256", ""))


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
    encoder: EncoderInput | None = None

    def to_dict(self) -> dict:
        data = {
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
        if self.encoder is not None:
            data["encoder"] = self.encoder.to_dict()
        return data

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
            encoder=EncoderInput.from_dict(data["encoder"]) if data.get("encoder") else None,
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
              dropout: float = 0.4, name: str = "emotion_cnn", encoder: EncoderInput | None = None) -> Any:
    """A small 1-D CNN over the (standardised) feature vector, with an optional encoder branch.

    Librosa branch: input ``[batch, n_features]`` -> reshape ``[batch, n_features, 1]`` ->
    Conv1D(16, 7, stride 2) -> BatchNorm -> ReLU -> Conv1D(32, 5, stride 2) ->
    BatchNorm -> ReLU -> flatten -> dropout. Features are ordered by group (MFCC means
    together, and so on), so neighbouring inputs are related and the convolution
    shares weights across them. Strided convolutions keep it cheap on a CPU
    (about 0.6 M multiply-adds per clip).

    With ``encoder`` a second input ``"encoder"`` ``[batch, encoder.dim]`` (standardised pooled
    states) goes through dropout(0.2) -> Dense(128, ReLU); with ``combine="wsum"`` the states are
    first reshaped to ``[batch, n_states, width]`` and mixed by a learnt weight per state
    (Dense(1) over the state axis, started at the mean). The branches are concatenated ->
    Dense(64, ReLU) -> dropout -> Dense(``n_classes``, softmax). ``combine="encoder_only"``
    has no librosa input. Without ``encoder`` the network is exactly the librosa-only CNN.
    """
    configure_tensorflow()
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    inputs, branches = [], []
    if encoder is None or encoder.combine != "encoder_only":
        features = keras.Input(shape=(n_features,), name="features")
        x = layers.Reshape((n_features, 1))(features)
        for filters, width in ((16, 7), (32, 5)):
            x = layers.Conv1D(filters, width, strides=2, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            x = layers.ReLU()(x)
        x = layers.Flatten()(x)
        inputs.append(features)
        branches.append(layers.Dropout(dropout)(x))
    if encoder is not None:
        states = keras.Input(shape=(encoder.dim,), name="encoder")
        e = states
        if encoder.combine == "wsum":
            n_states = len(encoder.layers)
            e = layers.Reshape((n_states, encoder.width))(e)
            e = layers.Permute((2, 1))(e)
            e = layers.Dense(1, use_bias=False, kernel_initializer=keras.initializers.Constant(1.0 / n_states),
                             name="layer_weights")(e)
            e = layers.Flatten()(e)
        e = layers.Dropout(0.2)(e)
        e = layers.Dense(128, activation="relu", kernel_regularizer=keras.regularizers.l2(1e-4))(e)
        inputs.append(states)
        branches.append(e)
    x = branches[0] if len(branches) == 1 else layers.Concatenate()(branches)
    x = layers.Dense(64, activation="relu", kernel_regularizer=keras.regularizers.l2(1e-4))(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="emotion")(x)
    return keras.Model(inputs[0] if len(inputs) == 1 else inputs, outputs, name=name)


class EmotionModel:
    """A loaded emotion model folder: scaler(s) + network + label order.

    Attributes:
        model: the Keras network, or its :class:`~pipeline.backend.OnnxNetwork` export.
        backend: ``"native"`` (Keras/TensorFlow) or ``"onnx"``.
    """

    def __init__(self, model: Any, scaler: Any, config: EmotionModelConfig, folder: Path | None = None, *,
                 encoder_scaler: Any = None) -> None:
        self.model = model
        self.backend = "onnx" if isinstance(model, backend.OnnxNetwork) else "native"
        self.scaler = scaler
        self.encoder_scaler = encoder_scaler
        self.config = config
        self.folder = folder
        if config.encoder is not None and encoder_scaler is None:
            raise ModelError(f"emotion model '{config.name}' reads the speech encoder but has no encoder scaler")
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
        engine = backend.resolve(("tensorflow", "keras"), folder / ONNX_FILE, what=f"the emotion model {folder.name}")
        for name in REQUIRED_FILES if engine == "native" else (SCALER_FILE, CONFIG_FILE):
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
        encoder_scaler = None
        if config.encoder is not None:
            if not (folder / ENCODER_SCALER_FILE).is_file():
                raise ModelError(f"emotion model folder {folder} is missing {ENCODER_SCALER_FILE}, which its "
                                 "config.json's encoder input needs. Restore it from the repository or retrain")
            try:
                encoder_scaler = joblib.load(folder / ENCODER_SCALER_FILE)
            except Exception as exc:
                raise ModelError(f"{folder / ENCODER_SCALER_FILE} could not be loaded ({exc}); "
                                 "the file may be truncated") from None
            if getattr(encoder_scaler, "n_features_in_", config.encoder.dim) != config.encoder.dim:
                raise ModelError(f"{folder / ENCODER_SCALER_FILE} expects {encoder_scaler.n_features_in_} columns, "
                                 f"config.json's encoder input has {config.encoder.dim}")
        expected = _input_shapes(config)
        if engine == "onnx":
            model = backend.OnnxNetwork(folder / ONNX_FILE)
            shapes = [tuple(t.shape[1:]) for t in model.spec.inputs]
            outputs = model.spec.outputs[0].shape[-1]
            if shapes != expected or outputs != len(config.labels):
                raise ModelError(f"{folder / ONNX_FILE} has inputs {shapes} / {outputs} outputs; expected {expected} -> "
                                 f"{len(config.labels)} classes: re-export with `python -m training.export_onnx`")
            return cls(model, scaler, config, folder, encoder_scaler=encoder_scaler)
        configure_tensorflow()
        try:
            import keras

            model = keras.saving.load_model(folder / MODEL_FILE, compile=False, safe_mode=True)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{folder / MODEL_FILE} could not be loaded ({first}); the file may be truncated") from None
        shapes = model.input_shape if isinstance(model.input_shape, list) else [model.input_shape]
        if [tuple(s[1:]) for s in shapes] != expected or model.output_shape[-1] != len(config.labels):
            raise ModelError(
                f"{folder / MODEL_FILE} has input {model.input_shape} / output {model.output_shape}; "
                f"expected {expected} -> {len(config.labels)} classes"
            )
        return cls(model, scaler, config, folder, encoder_scaler=encoder_scaler)

    @property
    def reads_encoder(self) -> bool:
        """Whether input rows must carry the pooled encoder block (:data:`ENCODER_COLUMNS` columns)."""
        return self.config.encoder is not None

    def save(self, folder: str | os.PathLike) -> None:
        """Write ``model.keras``, the scaler(s) and ``config.json`` into ``folder`` (a Keras model only)."""
        import joblib

        if self.backend == "onnx":
            raise ModelError("an emotion model loaded from its ONNX export cannot be saved as Keras; load it with "
                             "TensorFlow installed (SER_BACKEND=native)")

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save(folder / MODEL_FILE)
        joblib.dump(self.scaler, folder / SCALER_FILE)
        if self.encoder_scaler is not None:
            joblib.dump(self.encoder_scaler, folder / ENCODER_SCALER_FILE)
        (folder / CONFIG_FILE).write_text(json.dumps(self.config.to_dict(), indent=2) + "\n", encoding="utf-8")

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Emotion probabilities.

        Args:
            X: ``np.ndarray [shape=(n, n_features)]`` raw (unscaled) librosa statistics, or
                ``[shape=(n, n_features + ENCODER_COLUMNS)]`` with the pooled encoder block after them
                (required by a model that :attr:`reads_encoder`, ignored by one that does not).

        Returns:
            ``np.ndarray [shape=(n, 8)]`` float64, columns in :data:`EMOTION_LABELS` order.
        """
        X = np.asarray(X, dtype=np.float32)
        n = self.config.n_features
        widths = (n + ENCODER_COLUMNS,) if self.reads_encoder else (n, n + ENCODER_COLUMNS)
        if X.ndim != 2 or X.shape[1] not in widths:
            raise PredictionError(f"expected input rows of shape (n, {' or '.join(map(str, widths))}), got {X.shape}"
                                  + ("; this model reads the speech encoder's states after the librosa statistics"
                                     if self.reads_encoder else ""))
        if X.shape[0] == 0:
            return np.zeros((0, len(EMOTION_LABELS)))
        try:
            inputs = model_inputs(self.config, self.scaler, self.encoder_scaler, X)
            if self.backend == "onnx":
                probs = np.asarray(self.model.run(*(inputs if isinstance(inputs, list) else [inputs]))[0], np.float64)
            else:
                probs = np.asarray(self.model(inputs, training=False), dtype=np.float64)
        except Exception as exc:
            raise PredictionError(f"emotion model '{self.config.name}' failed: {exc}") from None
        return probs[:, self._order]


def _input_shapes(config: EmotionModelConfig) -> list[tuple[int, ...]]:
    """The network's input shapes (without the batch axis), in input order."""
    encoder = config.encoder
    shapes = [] if encoder is not None and encoder.combine == "encoder_only" else [(config.n_features,)]
    return shapes + ([(encoder.dim,)] if encoder is not None else [])


def model_inputs(config: EmotionModelConfig, scaler: Any, encoder_scaler: Any, X: np.ndarray) -> Any:
    """Standardised network inputs from raw rows ``X [n, n_features (+ ENCODER_COLUMNS)]`` (float32).

    One array for a librosa-only (or encoder-only) network, ``[librosa, encoder]`` for a two-branch one.
    """
    n = config.n_features
    parts = []
    if config.encoder is None or config.encoder.combine != "encoder_only":
        parts.append(scaler.transform(X[:, :n]).astype(np.float32))
    if config.encoder is not None:
        block = X[:, n:][:, config.encoder.columns()]
        parts.append(encoder_scaler.transform(block).astype(np.float32))
    return parts[0] if len(parts) == 1 else parts
