"""One exception hierarchy for everything the pipeline can refuse.

Every error carries a short machine-readable ``code`` (used as the ``status``
column of the batch CSV) and a human message that says what is wrong and, where
possible, what to do about it.
"""
from __future__ import annotations


class PipelineError(Exception):
    """Base class of every error raised on purpose by :mod:`pipeline`."""

    code: str = "error"

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.path = path
        self.message = message
        super().__init__(message if path is None else f"{path}: {message}")


class AudioError(PipelineError):
    """The input could not be turned into a usable speech signal."""

    code = "bad_audio"


class UnreadableAudioError(AudioError):
    """Not audio, corrupt, truncated, or in a format the decoder does not know."""

    code = "unreadable"


class FileAccessError(AudioError):
    """The file is missing, vanished, or cannot be read (permissions)."""

    code = "not_found"


class EmptyAudioError(AudioError):
    """The file decodes to zero samples."""

    code = "empty"


class NonFiniteAudioError(AudioError):
    """The signal holds NaN or infinite samples."""

    code = "non_finite"


class SilentAudioError(AudioError):
    """The signal is digital silence or below the silence threshold."""

    code = "silent"


class TooShortError(AudioError):
    """Too little audio, or too little speech, to judge."""

    code = "too_short"


class TooLongError(AudioError):
    """The recording exceeds the configured maximum duration."""

    code = "too_long"


class FeatureError(PipelineError):
    """Feature extraction failed on an otherwise valid signal."""

    code = "feature_error"


class ModelError(PipelineError):
    """A model folder is missing a file, is truncated, or does not match."""

    code = "model_error"


class PredictionError(PipelineError):
    """A model failed while scoring a valid feature vector or signal."""

    code = "model_failed"


class NoSpeechError(AudioError):
    """The recording holds sound but no speech (silence, noise or music only)."""

    code = "no_speech"
