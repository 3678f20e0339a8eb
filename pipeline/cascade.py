"""The gender-routed cascade: audio -> gender -> gender-specific emotion model.

``Cascade.load()`` loads every model once. ``predict_signal`` does the work for
one signal; ``predict_file`` and ``predict_files`` are thin wrappers over the
same path, so the batch scorer, the web app and the Python API agree exactly.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from pipeline.audio import (
    AudioConfig,
    AudioSource,
    PreparedAudio,
    decode_audio,
    prepare_signal,
    to_mono_float,
    validate_rate,
)
from pipeline.denoise import DenoiseConfig, reduce_noise
from pipeline.paths import PROJECT_ROOT
from pipeline.emotion import EMOTION_LABELS, EmotionModel
from pipeline.errors import ModelError
from pipeline.features import extract_features
from pipeline.gender import GENDER_LABELS, GenderClassifier
from pipeline.prediction import Prediction  # re-exported: ``from pipeline.cascade import Prediction``

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.recording import Recording

MALE_MODEL_DIR = PROJECT_ROOT / "male_models"
FEMALE_MODEL_DIR = PROJECT_ROOT / "female_models"
ROUTING_MODES = ("hard", "soft")


@dataclass
class Featurised:
    """An input after stage 1 (decode, prepare, features), ready for the models.

    Either ``failure`` is set (the input's final, non-ok :class:`Prediction`), or
    ``audio`` (:class:`PreparedAudio`) and ``features`` (``np.ndarray [shape=(n_features,)]``, or
    ``[shape=(n_features + ENCODER_COLUMNS,)]`` with the pooled speech-encoder states after the
    librosa statistics when the emotion models read them) are.
    Picklable, so stage 1 can run in worker processes (``script.py --jobs``).
    """

    name: str | None
    audio: PreparedAudio | None = None
    features: np.ndarray | None = None
    failure: Prediction | None = None


def _prepare(y: np.ndarray, sr: int, audio_config: AudioConfig, denoise: DenoiseConfig | None) -> PreparedAudio:
    """Prepare a decoded signal ``y`` at ``sr`` Hz (noise-reduced first when ``denoise`` is set). Raises on bad audio."""
    if denoise is not None:
        prepare_signal(y, sr, config=audio_config)  # the input's own problems first (empty, silent, ...)
        y = reduce_noise(to_mono_float(y)[0], validate_rate(sr), config=denoise)
    return prepare_signal(y, sr, config=audio_config)


def _decode_source(source: AudioSource, name: str, audio_config: AudioConfig) -> tuple[np.ndarray, int]:
    # Mixed to mono while decoding, and a recording over the limit is refused from its header.
    decoded = decode_audio(source, name=name, mono=True, max_seconds=audio_config.max_duration_s)
    return decoded.samples, decoded.sample_rate


def prepare_source(source: AudioSource, name: str, audio_config: AudioConfig,
                   denoise: DenoiseConfig | None = None) -> PreparedAudio:
    """Decode and prepare one file path, bytes or file object exactly as stage 1 does, without features.

    Raises the :class:`~pipeline.errors.PipelineError` of a bad input (stage 1 turns it into a row).
    """
    return _prepare(*_decode_source(source, name, audio_config), audio_config, denoise)


def _featurise(name: str | None, decode: Callable[[], tuple[np.ndarray, int]], audio_config: AudioConfig,
               feature_config, denoise: DenoiseConfig | None = None, encoder: bool = False) -> Featurised:
    duration = None
    try:
        y, sr = decode()
        duration = _duration_s(y, sr)
        audio = _prepare(y, sr, audio_config, denoise)
        features = extract_features(audio.samples, config=feature_config)
        if encoder:
            from pipeline.whisper_encoder import encoder_block

            features = np.concatenate([features, encoder_block(audio.samples)])
    except Exception as exc:  # one bad input never stops the others
        return Featurised(name, failure=Prediction.failure(exc, file=name, duration_s=duration))
    return Featurised(name, audio=audio, features=features)


def featurise_source(source: AudioSource, name: str, audio_config: AudioConfig, feature_config,
                     denoise: DenoiseConfig | None = None, encoder: bool = False) -> Featurised:
    """Stage 1 for a file path, bytes or file object (a top-level function, for process pools).

    ``encoder``: append the pooled speech-encoder states (:func:`pipeline.whisper_encoder.encoder_block`).
    """
    return _featurise(name, lambda: _decode_source(source, name, audio_config), audio_config, feature_config, denoise,
                      encoder)


def _import_audio_libraries() -> None:
    """Import the librosa modules the first clip needs *before* torch and TensorFlow.

    librosa loads its submodules lazily, and its lazy loader calls ``inspect.stack()``, whose cost
    grows with every module already imported: after torch and TensorFlow it takes about 0.5 s of a
    cold start (measured with ``python -m pipeline.bench``), before them almost nothing. Numerically
    neutral: the same modules are imported either way.
    """
    import librosa.effects  # noqa: F401
    import librosa.feature  # noqa: F401


@dataclass
class _Pending:
    """A prepared input waiting for the models (internal to batch prediction)."""

    index: int
    audio: PreparedAudio
    features: np.ndarray


class Cascade:
    """Gender classifier + male and female emotion models.

    Args:
        gender: a loaded :class:`GenderClassifier`.
        male, female: loaded :class:`EmotionModel` folders.
        routing: ``"hard"`` (the model of the predicted gender answers) or
            ``"soft"`` (both answer; their probabilities are averaged with the
            gender probabilities as weights: useful for uncertain voices).
        denoise: ``None`` (default) or a :class:`DenoiseConfig`: spectral-gating
            noise reduction of every input before it is prepared (see
            :mod:`pipeline.denoise` for when it helps).
    """

    def __init__(self, gender: GenderClassifier, male: EmotionModel, female: EmotionModel, *,
                 routing: str = "hard", denoise: DenoiseConfig | None = None) -> None:
        if routing not in ROUTING_MODES:
            raise ValueError(f"routing must be one of {ROUTING_MODES}, got {routing!r}")
        if male.config.feature_config != female.config.feature_config:
            raise ModelError("male and female emotion models were trained on different feature configurations")
        if male.config.audio_config != female.config.audio_config:
            raise ModelError("male and female emotion models expect different audio preparation")
        self.gender = gender
        self.emotion_models = {"male": male, "female": female}
        self.routing = routing
        self.denoise = denoise
        self.feature_config = male.config.feature_config
        self.audio_config: AudioConfig = male.config.audio_config
        #: Whether stage 1 appends the pooled speech-encoder states (an emotion model reads them).
        self.reads_encoder = male.reads_encoder or female.reads_encoder
        if self.reads_encoder:
            from pipeline.whisper_encoder import shared_runner

            shared_runner()  # load the encoder weights now: a missing file is a load error, not a row error

    @classmethod
    def load(
        cls,
        gender_model: str | os.PathLike | None = None,
        *,
        male_dir: str | os.PathLike = MALE_MODEL_DIR,
        female_dir: str | os.PathLike = FEMALE_MODEL_DIR,
        routing: str = "hard",
        device: str = "cpu",
        denoise: DenoiseConfig | bool | None = None,
    ) -> "Cascade":
        """Load all models once.

        Args:
            gender_model: ``None`` for the shipped gender model (offline), a local
                folder, or a hub id such as ``"JaesungHuh/voice-gender-classifier"``.
            male_dir, female_dir: emotion model folders.
            routing: ``"hard"`` or ``"soft"``.
            device: ``"cpu"`` (default) or ``"cuda"`` for the gender model.
            denoise: ``None``/``False`` (default), ``True`` for the default
                :class:`DenoiseConfig`, or a :class:`DenoiseConfig`.
        """
        _import_audio_libraries()
        gender = GenderClassifier.load(gender_model, device=device)
        if denoise is True:
            denoise = DenoiseConfig()
        return cls(gender, EmotionModel.load(male_dir), EmotionModel.load(female_dir), routing=routing,
                   denoise=denoise or None)

    # -- one signal ---------------------------------------------------------------------------
    def predict_signal(self, y: np.ndarray, sr: int, *, file: str | None = None) -> Prediction:
        """Predict gender and emotion for one signal (never raises for bad audio).

        Args:
            y: ``np.ndarray [shape=(n,), (n, channels) or (channels, n)]`` any real dtype.
            sr: sample rate of ``y`` in Hz (resampled to 16 kHz internally).
            file: optional name carried into the result.
        """
        return self._predict([(file, lambda: (y, sr))])[0]

    def predict_signals(self, signals: Sequence[tuple[np.ndarray, int]]) -> list[Prediction]:
        """Predict for several in-memory signals; one :class:`Prediction` per signal, same order.

        Args:
            signals: ``(y, sr)`` pairs, ``y`` an ``np.ndarray [shape=(n,), (n, channels) or
                (channels, n)]`` of any real dtype, ``sr`` its sample rate in Hz.

        Models run once for the whole batch (as in :meth:`predict_files`); a bad
        signal only affects its own result.
        """
        def source(y: np.ndarray, sr: int) -> Callable[[], tuple[np.ndarray, int]]:
            return lambda: (y, sr)

        return self._predict([(None, source(y, sr)) for y, sr in signals])

    def predict_file(self, source: AudioSource, *, name: str | None = None) -> Prediction:
        """Predict for one file path, bytes or binary file object (never raises for bad audio)."""
        return self.predict_files([source], names=None if name is None else [name])[0]

    def predict_files(self, sources: Sequence[AudioSource], *, names: Sequence[str] | None = None) -> list[Prediction]:
        """Predict for several inputs; one :class:`Prediction` per input, same order.

        Models run once per batch. A failure in one input only affects its own result.
        """
        if names is None:
            names = [str(s) if isinstance(s, (str, os.PathLike)) else f"<input {i}>" for i, s in enumerate(sources)]

        return self.score([self.featurise_file(source, name) for source, name in zip(sources, names)])

    # -- stages -------------------------------------------------------------------------------
    def featurise_file(self, source: AudioSource, name: str) -> "Featurised":
        """Stage 1 for one input: decode, prepare and extract features (no model runs)."""
        return featurise_source(source, name, self.audio_config, self.feature_config, self.denoise,
                                self.reads_encoder)

    def featurise_signal(self, y: np.ndarray, sr: int, *, name: str | None = None) -> "Featurised":
        """Stage 1 for one in-memory signal ``y [shape=(n,)...]`` at ``sr`` Hz (as :meth:`predict_signal`)."""
        return _featurise(name, lambda: (y, sr), self.audio_config, self.feature_config, self.denoise,
                          self.reads_encoder)

    def score(self, items: Sequence["Featurised"]) -> list[Prediction]:
        """Stage 2: run the gender and emotion models once over the featurised ``items``."""
        results: list[Prediction] = []
        pending: list[_Pending] = []
        for index, item in enumerate(items):
            if item.failure is not None:
                results.append(item.failure)
                continue
            assert item.audio is not None and item.features is not None
            results.append(Prediction(file=item.name, duration_s=item.audio.duration_s,
                                      speech_duration_s=item.audio.speech_duration_s))
            pending.append(_Pending(index, item.audio, item.features))
        if pending:
            self._score(pending, results)
        return results

    # -- whole recordings ---------------------------------------------------------------------
    def analyse_recording(self, source: AudioSource | np.ndarray, sr: int | None = None, *,
                          name: str | None = None, progress: Callable[[int, int], None] | None = None,
                          **options) -> "Recording":
        """Who speaks when, each voice's gender and each segment's emotion, for a recording of any length.

        ``source`` is a path, bytes or file object (``sr=None``) or a signal with its rate ``sr``;
        ``progress(done, total)`` is called over the speech segments. Never raises for bad audio.
        See :func:`pipeline.recording.analyse_recording` (``options``: ``vad``, ``encoder``,
        ``threshold``, ``batch_size``) and ``docs/speakers.md``.
        """
        from pipeline.recording import analyse_recording  # lazy: loads silero-vad and GE2E only when used

        return analyse_recording(self, source, sr, name=name, progress=progress, **options)

    # -- internals ----------------------------------------------------------------------------
    def _predict(self, jobs: Sequence[tuple[str | None, Callable[[], tuple[np.ndarray, int]]]]) -> list[Prediction]:
        """Decode, prepare and featurise each job, then score all good ones in one batch."""
        return self.score([_featurise(name, decode, self.audio_config, self.feature_config, self.denoise,
                                      self.reads_encoder) for name, decode in jobs])

    def _score(self, pending: list[_Pending], results: list[Prediction]) -> None:
        try:
            gender_probs = self.gender.predict_proba_batch([p.audio.samples for p in pending])
            X = np.stack([p.features for p in pending])
            emotion_probs = {g: m.predict_proba(X) for g, m in self._needed_models(gender_probs).items()}
        except Exception as exc:
            for p in pending:
                failed = Prediction.failure(exc, file=results[p.index].file, duration_s=results[p.index].duration_s)
                results[p.index] = failed
            return
        for row, p in enumerate(pending):
            result = results[p.index]
            g = gender_probs[row]
            result.gender_probabilities = {label: float(g[i]) for i, label in enumerate(GENDER_LABELS)}
            result.gender = GENDER_LABELS[int(np.argmax(g))]
            result.set_emotion({name: probs[row] for name, probs in emotion_probs.items()}, routing=self.routing,
                               labels=EMOTION_LABELS)

    def _needed_models(self, gender_probs: np.ndarray) -> dict[str, EmotionModel]:
        if self.routing == "soft":
            return self.emotion_models
        winners = {GENDER_LABELS[i] for i in np.argmax(gender_probs, axis=1)}
        return {g: m for g, m in self.emotion_models.items() if g in winners}


def _duration_s(y: np.ndarray, sr: int) -> float | None:
    """Duration in seconds of a raw signal (longer axis of a 2-D array = time)."""
    try:
        shape = np.shape(y)
        return float(max(shape) / int(sr)) if shape and int(sr) > 0 else None
    except (TypeError, ValueError):
        return None
