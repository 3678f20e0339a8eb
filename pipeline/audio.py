"""Audio input: decode, validate, mix to mono, resample, trim and level-normalise.

Everything that turns bytes or an array into the signal the models read lives
here, so training and inference treat audio identically (same resampler, same
silence trimming, same level normalisation).

Thresholds (see :class:`AudioConfig`), chosen for speech at 16 kHz:

* ``silence_peak_dbfs = -80``: a clip whose absolute peak is below -80 dBFS
  (amplitude 1e-4, about the noise floor of 16-bit audio) is *silent*. Quiet but
  real recordings (peak -60 dBFS) still pass and are normalised.
* ``trim_top_db = 40``: leading and trailing frames more than 40 dB below the
  loudest frame are cut (``librosa.effects.trim``; relative, so level-invariant).
* ``min_duration_s = 0.25``: shorter files are *too short* before any analysis.
* ``min_speech_s = 0.30``: after trimming, fewer than 0.30 s of sound is *too short*
  to judge emotion (one syllable) or gender reliably.
* ``max_duration_s = 3600``: longer recordings are refused (use the timeline).
* ``target_rms_dbfs = -26``: the trimmed clip is scaled to this RMS level, so
  microphone gain does not change any feature or the gender front end.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np

from pipeline.errors import (
    EmptyAudioError,
    FileAccessError,
    NonFiniteAudioError,
    SilentAudioError,
    TooLongError,
    TooShortError,
    UnreadableAudioError,
)

AudioSource = Union[str, os.PathLike, bytes, BinaryIO]

#: Extensions the batch scorer and the web app treat as audio (lower case).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3")


@dataclass(frozen=True)
class AudioConfig:
    """Frozen parameters of audio preparation (part of every model's config)."""

    sample_rate: int = 16000
    silence_peak_dbfs: float = -80.0
    trim_top_db: float = 40.0
    trim_frame_length: int = 400
    trim_hop_length: int = 160
    min_duration_s: float = 0.25
    min_speech_s: float = 0.30
    max_duration_s: float = 3600.0
    target_rms_dbfs: float = -26.0
    resample_quality: str = "HQ"

    def to_dict(self) -> dict:
        return dict(self.__dict__)


DEFAULT_AUDIO_CONFIG = AudioConfig()


@dataclass(frozen=True)
class DecodedAudio:
    """Raw decoded audio, before any processing.

    Attributes:
        samples: ``np.ndarray [shape=(n_samples,) or (n_samples, n_channels)]``,
            float32 in [-1, 1] as decoded.
        sample_rate: rate of ``samples`` in Hz.
    """

    samples: np.ndarray
    sample_rate: int


@dataclass(frozen=True)
class PreparedAudio:
    """A validated speech signal ready for the models.

    Attributes:
        samples: ``np.ndarray [shape=(n_samples,)]``, float32 mono at
            ``sample_rate``, leading/trailing silence trimmed, RMS-normalised.
        sample_rate: Hz (always the config's rate, 16000 by default).
        duration_s: duration of the input before trimming, in seconds.
        speech_duration_s: duration of ``samples`` (after trimming), in seconds.
        source_sample_rate: rate of the input in Hz.
        source_channels: channel count of the input.
    """

    samples: np.ndarray
    sample_rate: int
    duration_s: float
    speech_duration_s: float
    source_sample_rate: int
    source_channels: int


def decode_audio(source: AudioSource, *, name: str | None = None) -> DecodedAudio:
    """Decode a file path, bytes or binary file object with soundfile.

    Reads WAV (8/16/24/32-bit integer and float), FLAC, OGG (Vorbis, Opus) and
    MP3. Raises :class:`FileAccessError` for missing/unreadable paths,
    :class:`EmptyAudioError` for zero-length input and
    :class:`UnreadableAudioError` for anything that is not decodable audio.
    """
    import soundfile as sf

    label = name or (str(source) if isinstance(source, (str, os.PathLike)) else "<memory>")
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise FileAccessError("file not found (it may have been moved or deleted)", path=label) from None
        except OSError as exc:
            raise FileAccessError(f"cannot access file: {exc.strerror or exc}", path=label) from None
        if not path.is_file():
            raise FileAccessError("not a regular file", path=label)
        if size == 0:
            raise EmptyAudioError("file is empty (0 bytes)", path=label)
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except PermissionError:
            raise FileAccessError("permission denied: make the file readable", path=label) from None
        except OSError as exc:
            raise FileAccessError(f"cannot read file: {exc.strerror or exc}", path=label) from None
        source = data
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise EmptyAudioError("file is empty (0 bytes)", path=label)
        stream: BinaryIO = io.BytesIO(bytes(source))
    else:
        stream = source
    try:
        samples, rate = sf.read(stream, dtype="float32", always_2d=False)
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, TypeError...
        reason = _decoder_reason(exc)
        raise UnreadableAudioError(
            f"Failed to load audio: {reason}. The file is not audio or is damaged; supported formats: WAV, FLAC, OGG/Opus, MP3",
            path=label,
        ) from None
    if samples.size == 0:
        raise EmptyAudioError("file holds no audio frames", path=label)
    return DecodedAudio(samples=np.asarray(samples, dtype=np.float32), sample_rate=int(rate))


def _decoder_reason(exc: BaseException) -> str:
    """The decoder's reason without object reprs (``<_io.BytesIO object at 0x...>``)."""
    import re

    text = getattr(exc, "error_string", None) or str(exc)
    text = re.sub(r"^Error opening <[^>]*>: ?", "", text.strip())
    text = re.sub(r"<[^>]* at 0x[0-9a-f]+>", "<stream>", text)
    return (text.splitlines()[0].strip().rstrip(".") if text.strip() else type(exc).__name__) or type(exc).__name__


def to_mono_float(y: np.ndarray) -> tuple[np.ndarray, int]:
    """Convert an array of any numeric dtype and layout to mono float32.

    Args:
        y: ``np.ndarray [shape=(n,), (n, channels) or (channels, n)]``. Integer
            arrays are scaled to [-1, 1] (unsigned 8-bit centred on 128). For a
            2-D array the shorter axis is taken as channels.

    Returns:
        ``(mono, n_channels)`` with ``mono`` of shape ``(n,)``, float32.
    """
    y = np.asarray(y)
    if y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.number) or np.iscomplexobj(y):
        raise UnreadableAudioError(f"samples must be real numbers, got dtype {y.dtype}")
    if np.issubdtype(y.dtype, np.unsignedinteger):
        info = np.iinfo(y.dtype)
        mid = (int(info.max) + 1) / 2.0
        y = (y.astype(np.float64) - mid) / mid
    elif np.issubdtype(y.dtype, np.integer):
        y = y.astype(np.float64) / float(-np.iinfo(y.dtype).min)
    if y.ndim == 0:
        raise EmptyAudioError("signal is a scalar, not an array of samples")
    if y.ndim > 2:
        raise UnreadableAudioError(f"expected a 1-D or 2-D signal, got shape {y.shape}")
    channels = 1
    if y.ndim == 2:
        if y.shape[0] < y.shape[1]:
            y = y.T
        channels = int(y.shape[1])
        if y.shape[0] == 0 or channels == 0:
            raise EmptyAudioError("signal holds no samples")
        with np.errstate(all="ignore"):
            y = y.astype(np.float64).mean(axis=1)
    if y.size == 0:
        raise EmptyAudioError("signal holds no samples")
    with np.errstate(all="ignore"):
        if not np.all(np.isfinite(y)) or np.max(np.abs(y)) > np.finfo(np.float32).max:
            raise NonFiniteAudioError("signal contains NaN, infinite or out-of-range samples; the file is corrupt")
    return np.asarray(y, dtype=np.float32), channels


def validate_rate(sr: object) -> int:
    """``sr`` as an integer number of Hz, or :class:`UnreadableAudioError` if implausible."""
    try:
        rate = int(sr)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        raise UnreadableAudioError(f"sample rate must be an integer number of Hz, got {sr!r}") from None
    if rate <= 0 or rate > 1_000_000:
        raise UnreadableAudioError(f"implausible sample rate {rate} Hz")
    return rate


def resample(y: np.ndarray, orig_sr: int, target_sr: int, *, quality: str = "HQ") -> np.ndarray:
    """Resample ``y [shape=(n,)]`` from ``orig_sr`` to ``target_sr`` Hz with soxr."""
    if orig_sr == target_sr:
        return y
    import soxr

    return np.asarray(soxr.resample(y, orig_sr, target_sr, quality=quality), dtype=np.float32)


def prepare_signal(
    y: np.ndarray, sr: int, *, config: AudioConfig = DEFAULT_AUDIO_CONFIG
) -> PreparedAudio:
    """Validate and normalise a raw signal for the models.

    Args:
        y: ``np.ndarray [shape=(n,), (n, channels) or (channels, n)]``, any real dtype.
        sr: sample rate of ``y`` in Hz.
        config: thresholds and targets, see the module docstring.

    Returns:
        :class:`PreparedAudio` (mono, ``config.sample_rate``, trimmed, RMS-normalised).

    Raises:
        EmptyAudioError, NonFiniteAudioError, SilentAudioError, TooShortError,
        TooLongError, UnreadableAudioError: each with a message saying what to do.
    """
    sr = validate_rate(sr)
    mono, channels = to_mono_float(y)  # also rejects empty and non-finite signals
    duration = mono.size / sr
    if duration < config.min_duration_s:
        raise TooShortError(
            f"clip lasts {duration * 1000:.0f} ms; at least {config.min_duration_s * 1000:.0f} ms of speech is needed"
        )
    if duration > config.max_duration_s:
        raise TooLongError(
            f"clip lasts {duration:.0f} s; the limit is {config.max_duration_s:.0f} s. Split it or use the timeline"
        )
    peak = float(np.max(np.abs(mono)))
    if peak < 10 ** (config.silence_peak_dbfs / 20):
        raise SilentAudioError(
            f"clip is silent (peak below {config.silence_peak_dbfs:.0f} dBFS); check the microphone or the file"
        )
    # Peak-normalise first: librosa's trim clamps frames at -100 dB and its float32 RMS
    # overflows above ~1e19, so trimming is only level-invariant near full scale.
    mono = (mono.astype(np.float64) / peak).astype(np.float32)
    mono = resample(mono, sr, config.sample_rate, quality=config.resample_quality)
    trimmed = trim_silence(mono, config=config)
    speech_s = trimmed.size / config.sample_rate
    if speech_s < config.min_speech_s:
        raise TooShortError(
            f"only {speech_s * 1000:.0f} ms of sound above the silence threshold; "
            f"at least {config.min_speech_s * 1000:.0f} ms is needed"
        )
    return PreparedAudio(
        samples=normalise_level(trimmed, target_rms_dbfs=config.target_rms_dbfs),
        sample_rate=config.sample_rate,
        duration_s=float(duration),
        speech_duration_s=float(speech_s),
        source_sample_rate=sr,
        source_channels=channels,
    )


def trim_silence(y: np.ndarray, *, config: AudioConfig = DEFAULT_AUDIO_CONFIG) -> np.ndarray:
    """Cut leading/trailing frames ``config.trim_top_db`` below the loudest frame.

    ``y [shape=(n,)]`` at ``config.sample_rate``; returns a view of ``y``.
    """
    import librosa

    _, (start, end) = librosa.effects.trim(
        y,
        top_db=config.trim_top_db,
        frame_length=config.trim_frame_length,
        hop_length=config.trim_hop_length,
    )
    return y[start:end]


def normalise_level(y: np.ndarray, *, target_rms_dbfs: float) -> np.ndarray:
    """Scale ``y [shape=(n,)]`` so its RMS equals ``target_rms_dbfs`` (float32)."""
    rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))
    if rms <= 0.0:
        return y.astype(np.float32)
    gain = 10 ** (target_rms_dbfs / 20) / rms
    return (y * gain).astype(np.float32)


def load_audio(
    source: AudioSource, *, config: AudioConfig = DEFAULT_AUDIO_CONFIG, name: str | None = None
) -> PreparedAudio:
    """Decode ``source`` (path, bytes or file object) and :func:`prepare_signal` it.

    Errors carry the file path: ``"{path}: Failed to load audio: {reason}"``.
    """
    decoded = decode_audio(source, name=name)
    label = name or (str(source) if isinstance(source, (str, os.PathLike)) else None)
    try:
        return prepare_signal(decoded.samples, decoded.sample_rate, config=config)
    except Exception as exc:
        from pipeline.errors import PipelineError

        if isinstance(exc, PipelineError) and exc.path is None and label is not None:
            raise type(exc)(exc.message, path=label) from None
        raise
