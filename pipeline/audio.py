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

#: Extensions the batch scorer and the web app treat as audio (lower case); each is
#: decoded in tests/test_formats.py. soundfile reads the first six, PyAV the rest.
AUDIO_EXTENSIONS = (
    ".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3",
    ".m4a", ".mp4", ".aac", ".webm", ".weba", ".mka", ".amr", ".wma",
)

#: The formats named in error messages and on the page.
SUPPORTED_FORMATS = "WAV, FLAC, OGG/Vorbis, Opus, MP3, M4A/AAC, MP4 audio, WebM/Opus, AMR, WMA"

#: Samples processed per step by the chunked loops below (1 MiB of float32, 16 s at
#: 16 kHz): long recordings never exist as float64 or as a second full-length copy.
CHUNK = 1 << 18


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
        channels: channel count of the file (``samples`` is 1-D when decoded with
            ``mono=True`` or when the file is mono); 0 when not known.
    """

    samples: np.ndarray
    sample_rate: int
    channels: int = 0


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


def decode_audio(
    source: AudioSource, *, name: str | None = None, mono: bool = False, max_seconds: float | None = None
) -> DecodedAudio:
    """Decode a file path, bytes or binary file object at its own sample rate.

    soundfile (libsndfile) reads WAV (8/16/24/32-bit integer and float), FLAC, OGG
    (Vorbis, Opus) and MP3; whatever it refuses goes to PyAV (FFmpeg): M4A/MP4 (AAC,
    ALAC), WebM/Matroska (Opus, Vorbis), ADTS AAC, AMR and WMA (see
    :mod:`pipeline.decoders` and ``docs/formats.md``). Paths are read from disk (never
    copied into memory whole), bytes are not copied, file objects are read from their
    current position.

    Args:
        mono: mix channels to one while decoding (block by block, float64 mean as
            :func:`to_mono_float`), so a stereo hour never exists as a 2-channel array.
            :attr:`DecodedAudio.channels` still says how many the file had.
        max_seconds: refuse (:class:`TooLongError`) a recording longer than this,
            from its header where it says, else as soon as decoding passes it.

    Raises :class:`FileAccessError` for missing/unreadable paths, :class:`EmptyAudioError`
    for zero-length input and :class:`UnreadableAudioError` for anything that is not
    decodable audio (the message names the supported formats, or says that a
    container holds no audio stream).
    """
    from pipeline import decoders

    label = name or (str(source) if isinstance(source, (str, os.PathLike)) else "<memory>")
    handle = None
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
            handle = stream = open(path, "rb")
        except PermissionError:
            raise FileAccessError("permission denied: make the file readable", path=label) from None
        except OSError as exc:
            raise FileAccessError(f"cannot read file: {exc.strerror or exc}", path=label) from None
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise EmptyAudioError("file is empty (0 bytes)", path=label)
        stream = io.BytesIO(source)  # shares the buffer of a bytes object: no copy
    else:
        stream = source
        if not _seekable(stream):
            stream = io.BytesIO(stream.read())
    try:
        start = stream.tell()
        samples = rate = channels = None
        errors_seen = []
        for reader in (decoders.read_soundfile, decoders.read_pyav):
            try:
                stream.seek(start)
                samples, rate, channels = reader(stream, mono=mono, max_seconds=max_seconds)
                break
            except decoders.TooManyFrames as exc:
                seconds = exc.frames / exc.rate
                lasts = f"lasts {seconds:.0f} s" if exc.exact else f"lasts more than {max_seconds:g} s"
                raise TooLongError(
                    f"clip {lasts}; the limit is {max_seconds:g} s. Split it or use the timeline", path=label
                ) from None
            except MemoryError:
                raise
            except decoders.NoAudioStream as exc:
                raise UnreadableAudioError(
                    f"the file holds no audio stream (only {exc}); is it a video without sound? "
                    f"Supported formats: {SUPPORTED_FORMATS}",
                    path=label,
                ) from None
            except Exception as exc:  # soundfile: LibsndfileError, RuntimeError...; PyAV: FFmpegError...
                errors_seen.append(exc)
        if samples is None:
            reason = _decoder_reason(errors_seen[0])
            if isinstance(errors_seen[-1], decoders.NotAudioFormat):
                reason += f"; FFmpeg sees {errors_seen[-1]}, not audio"
            elif len(errors_seen) > 1:
                reason += f"; FFmpeg: {_decoder_reason(errors_seen[-1])}"
            raise UnreadableAudioError(
                f"Failed to load audio: {reason}. The file is not audio, is damaged or is in an unknown "
                f"format; supported formats: {SUPPORTED_FORMATS}",
                path=label,
            )
    except OSError as exc:
        raise FileAccessError(f"cannot read file: {exc.strerror or exc}", path=label) from None
    finally:
        if handle is not None:
            handle.close()
    if samples.size == 0:
        raise EmptyAudioError("file holds no audio frames", path=label)
    return DecodedAudio(samples=samples, sample_rate=int(rate), channels=int(channels))


def _seekable(stream) -> bool:
    try:
        return bool(stream.seekable())
    except Exception:
        return False


def _decoder_reason(exc: BaseException) -> str:
    """The decoder's reason without object reprs (``<_io.BytesIO object at 0x...>``)."""
    import re

    text = getattr(exc, "error_string", None) or getattr(exc, "strerror", None) or str(exc)
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
        ``(mono, n_channels)`` with ``mono`` of shape ``(n,)``, float32: ``y`` itself
        when it already is 1-D float32, else a new array computed :data:`CHUNK`
        samples at a time (float64 within a chunk), so no full-length float64 copy
        is ever made.
    """
    y = np.asarray(y)
    if y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.number) or np.iscomplexobj(y):
        raise UnreadableAudioError(f"samples must be real numbers, got dtype {y.dtype}")
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
    if y.size == 0:
        raise EmptyAudioError("signal holds no samples")
    if y.ndim == 1 and y.dtype == np.float32:
        mono = y
    elif y.ndim == 1 and np.issubdtype(y.dtype, np.floating):
        with np.errstate(all="ignore"):
            mono = y.astype(np.float32)  # out-of-range values become inf, caught below
    else:
        mono = np.empty(y.shape[0], dtype=np.float32)
        with np.errstate(all="ignore"):
            for start in range(0, y.shape[0], CHUNK):
                block = _as_float64(y[start:start + CHUNK])
                mono[start:start + CHUNK] = block.mean(axis=1) if block.ndim == 2 else block
    with np.errstate(all="ignore"):
        if not (np.isfinite(np.min(mono)) and np.isfinite(np.max(mono))):  # NaN propagates through min/max
            raise NonFiniteAudioError("signal contains NaN, infinite or out-of-range samples; the file is corrupt")
    return mono, channels


def _as_float64(y: np.ndarray) -> np.ndarray:
    """A block of samples as float64, integers scaled to [-1, 1] (unsigned centred)."""
    if np.issubdtype(y.dtype, np.unsignedinteger):
        mid = (int(np.iinfo(y.dtype).max) + 1) / 2.0
        return (y.astype(np.float64) - mid) / mid
    if np.issubdtype(y.dtype, np.integer):
        return y.astype(np.float64) / float(-np.iinfo(y.dtype).min)
    return y.astype(np.float64)


def _peak(y: np.ndarray) -> float:
    """Largest absolute sample of ``y`` without an ``abs`` copy."""
    return float(max(np.max(y), -np.min(y)))


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
    """Resample ``y [shape=(n,)]`` from ``orig_sr`` to ``target_sr`` Hz with soxr.

    Streams :data:`CHUNK` samples at a time into one output array (bit-identical to
    ``soxr.resample`` on the whole signal). Returns ``y`` itself when the rates match.
    """
    if orig_sr == target_sr:
        return y
    return _resample_chunks(y, orig_sr, target_sr, quality=quality)


def _resample_chunks(y: np.ndarray, orig_sr: int, target_sr: int, *, quality: str, scale: float = 1.0) -> np.ndarray:
    """``resample(y / scale)``, or ``y / scale`` when the rates match; the division in float64, chunk by chunk."""
    from pipeline.decoders import GrowingBuffer

    def chunks():
        for start in range(0, y.size, CHUNK):
            block = y[start:start + CHUNK]
            yield block if scale == 1.0 else np.divide(block, scale, dtype=np.float64).astype(np.float32), start + CHUNK >= y.size

    if orig_sr == target_sr:
        out = np.empty(y.size, dtype=np.float32)
        for start, (block, _) in zip(range(0, y.size, CHUNK), chunks()):
            out[start:start + block.size] = block
        return out
    import soxr

    stream = soxr.ResampleStream(orig_sr, target_sr, 1, dtype="float32", quality=quality)
    out = GrowingBuffer(int(y.size * target_sr / orig_sr) + 64, 1)
    for block, last in chunks():
        out.append(stream.resample_chunk(np.ascontiguousarray(block, dtype=np.float32), last=last))
    return out.result()


def prepare_signal(
    y: np.ndarray, sr: int, *, config: AudioConfig = DEFAULT_AUDIO_CONFIG, channels: int | None = None
) -> PreparedAudio:
    """Validate and normalise a raw signal for the models.

    Args:
        y: ``np.ndarray [shape=(n,), (n, channels) or (channels, n)]``, any real dtype.
        sr: sample rate of ``y`` in Hz.
        config: thresholds and targets, see the module docstring.
        channels: channel count of the source when ``y`` was already mixed to mono
            (as by ``decode_audio(..., mono=True)``); reported as ``source_channels``.

    Returns:
        :class:`PreparedAudio` (mono, ``config.sample_rate``, trimmed, RMS-normalised).
        ``y`` is never modified. Memory beyond ``y``: one float32 array at the
        model rate plus a chunk (see :data:`CHUNK`).

    Raises:
        EmptyAudioError, NonFiniteAudioError, SilentAudioError, TooShortError,
        TooLongError, UnreadableAudioError: each with a message saying what to do.
    """
    sr = validate_rate(sr)
    mono, n_channels = to_mono_float(y)  # also rejects empty and non-finite signals
    duration = mono.size / sr
    if duration < config.min_duration_s:
        raise TooShortError(
            f"clip lasts {duration * 1000:.0f} ms; at least {config.min_duration_s * 1000:.0f} ms of speech is needed"
        )
    if duration > config.max_duration_s:
        raise TooLongError(
            f"clip lasts {duration:.0f} s; the limit is {config.max_duration_s:.0f} s. Split it or use the timeline"
        )
    peak = _peak(mono)
    if peak < 10 ** (config.silence_peak_dbfs / 20):
        raise SilentAudioError(
            f"clip is silent (peak below {config.silence_peak_dbfs:.0f} dBFS): there is no sound to analyse"
        )
    # Peak-normalise first: librosa's trim clamps frames at -100 dB and its float32 RMS
    # overflows above ~1e19, so trimming is only level-invariant near full scale. The
    # division and the resampling go chunk by chunk into one new array (ours to scale).
    scaled = _resample_chunks(mono, sr, config.sample_rate, quality=config.resample_quality, scale=peak)
    del mono
    trimmed = trim_silence(scaled, config=config)
    speech_s = trimmed.size / config.sample_rate
    if speech_s < config.min_speech_s:
        raise TooShortError(
            f"only {speech_s * 1000:.0f} ms of sound above the silence threshold; "
            f"at least {config.min_speech_s * 1000:.0f} ms is needed"
        )
    in_place = 2 * trimmed.size >= scaled.size  # else copy, so the cut-off silence can be freed
    return PreparedAudio(
        samples=normalise_level(trimmed, target_rms_dbfs=config.target_rms_dbfs, in_place=in_place),
        sample_rate=config.sample_rate,
        duration_s=float(duration),
        speech_duration_s=float(speech_s),
        source_sample_rate=sr,
        source_channels=int(channels or n_channels),
    )


def trim_silence(y: np.ndarray, *, config: AudioConfig = DEFAULT_AUDIO_CONFIG) -> np.ndarray:
    """Cut leading/trailing frames ``config.trim_top_db`` below the loudest frame.

    ``y [shape=(n,)]`` at ``config.sample_rate``; returns a view of ``y``. Same result as
    ``librosa.effects.trim`` (which it calls for clips up to :data:`CHUNK` samples);
    longer signals get their frame RMS computed a block of frames at a time, because
    librosa materialises every frame (``frame_length / hop_length`` = 2.5 times the signal).
    """
    import librosa

    frame, hop = config.trim_frame_length, config.trim_hop_length
    if y.size <= CHUNK:
        _, (start, end) = librosa.effects.trim(y, top_db=config.trim_top_db, frame_length=frame, hop_length=hop)
        return y[start:end]
    db = librosa.amplitude_to_db(frame_rms(y, frame, hop), ref=np.max, top_db=None)
    nonzero = np.flatnonzero(db > -config.trim_top_db)
    if nonzero.size == 0:
        return y[0:0]
    start = int(librosa.frames_to_samples(nonzero[0], hop_length=hop))
    end = min(y.size, int(librosa.frames_to_samples(nonzero[-1] + 1, hop_length=hop)))
    return y[start:end]


def frame_rms(y: np.ndarray, frame_length: int, hop_length: int, *, block_frames: int | None = None) -> np.ndarray:
    """``librosa.feature.rms(y=y, ...)[0]`` (centred, zero-padded), bit for bit, a block of frames at a time."""
    from librosa.util import abs2, frame as frames_of

    pad = frame_length // 2
    n_frames = 1 + (y.size + 2 * pad - frame_length) // hop_length
    block_frames = block_frames or max(1, CHUNK // frame_length)  # a CHUNK of float32 per block
    out = np.empty(n_frames, dtype=np.float32)
    for f0 in range(0, n_frames, block_frames):
        f1 = min(n_frames, f0 + block_frames)
        lo, hi = f0 * hop_length - pad, (f1 - 1) * hop_length + frame_length - pad  # padded span in y's indices
        block = np.zeros(hi - lo, dtype=y.dtype)
        block[max(0, -lo):block.size - max(0, hi - y.size)] = y[max(0, lo):min(hi, y.size)]
        x = frames_of(block, frame_length=frame_length, hop_length=hop_length)
        out[f0:f1] = np.sqrt(np.mean(abs2(x, dtype=np.float32), axis=-2))
    return out


def normalise_level(y: np.ndarray, *, target_rms_dbfs: float, in_place: bool = False) -> np.ndarray:
    """Scale ``y [shape=(n,)]`` so its RMS equals ``target_rms_dbfs`` (float32).

    The mean square is summed in float64 :data:`CHUNK` samples at a time; ``in_place``
    scales a float32 ``y`` itself instead of a copy.
    """
    total = sum(float(np.sum(np.square(y[i:i + CHUNK], dtype=np.float64))) for i in range(0, y.size, CHUNK))
    rms = float(np.sqrt(total / y.size)) if y.size else 0.0
    if rms <= 0.0:
        return y.astype(np.float32)
    gain = 10 ** (target_rms_dbfs / 20) / rms
    if in_place and y.dtype == np.float32:
        y *= gain
        return y
    return (y * gain).astype(np.float32)


def load_audio(
    source: AudioSource, *, config: AudioConfig = DEFAULT_AUDIO_CONFIG, name: str | None = None
) -> PreparedAudio:
    """Decode ``source`` (path, bytes or file object) and :func:`prepare_signal` it.

    Channels are mixed while decoding and recordings over ``config.max_duration_s``
    are refused before they are decoded whole. Peak memory for an hour of 44.1 kHz mono
    is about 0.9 GB (the decoded float32 signal plus the 16 kHz copy; docs/formats.md).
    Errors carry the file path: ``"{path}: Failed to load audio: {reason}"``.
    """
    decoded = decode_audio(source, name=name, mono=True, max_seconds=config.max_duration_s)
    label = name or (str(source) if isinstance(source, (str, os.PathLike)) else None)
    samples, rate, channels = decoded.samples, decoded.sample_rate, decoded.channels
    del decoded
    try:
        return prepare_signal(samples, rate, config=config, channels=channels)
    except Exception as exc:
        from pipeline.errors import PipelineError

        if isinstance(exc, PipelineError) and exc.path is None and label is not None:
            raise type(exc)(exc.message, path=label) from None
        raise
