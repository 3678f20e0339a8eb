"""The two decoders behind :func:`pipeline.audio.decode_audio`: soundfile first, PyAV second.

* :func:`read_soundfile` (libsndfile): WAV, FLAC, OGG/Vorbis, OGG/Opus, MP3, AIFF. Fast,
  reads straight into one float32 array.
* :func:`read_pyav` (PyAV, whose wheels carry FFmpeg): what libsndfile refuses, within the
  containers of :data:`PYAV_FORMATS`: M4A/MP4 (AAC, ALAC), WebM/Matroska (Opus, Vorbis),
  ADTS AAC, AMR, WMA, and the rest of the above. Other things FFmpeg would open (images,
  subtitles, text) are refused, so a PNG never decodes to noise.

Both return ``(samples, sample_rate, channels)`` at the file's own rate: float32
``[shape=(n,)]`` when ``mono`` (channels averaged in float64 block by block, exactly as
:func:`pipeline.audio.to_mono_float` does) or ``[shape=(n, channels)]`` otherwise (mono
files always give ``(n,)``). Memory: one float32 array of the output plus a block; nothing
is copied whole. Errors are raised as they come (soundfile, PyAV) except the ones below;
:mod:`pipeline.audio` turns them into :mod:`pipeline.errors`.
"""
from __future__ import annotations

from typing import BinaryIO

import numpy as np

BLOCK_FRAMES = 1 << 16
"""Frames read per block when mixing to mono (256 KiB of float32 per channel)."""

PYAV_FORMATS = {
    "mov,mp4,m4a,3gp,3g2,mj2": "M4A/MP4",
    "matroska,webm": "WebM/Matroska",
    "ogg": "OGG",
    "mp3": "MP3",
    "aac": "AAC (ADTS)",
    "flac": "FLAC",
    "wav": "WAV",
    "amr": "AMR",
    "asf": "WMA",
    "aiff": "AIFF",
    "caf": "CAF",
}
"""FFmpeg demuxer names PyAV may decode, with the name users know."""


class NoAudioStream(Exception):
    """The container opened but holds no audio stream (a video or image only)."""


class NotAudioFormat(Exception):
    """FFmpeg recognised the input as something that is not an audio container."""


class NoAudioDecoded(Exception):
    """The container has an audio stream but not one frame of it decodes (damaged, or not audio)."""


class TooManyFrames(Exception):
    """Longer than ``max_seconds`` (header or decoded count); ``frames`` is a lower bound unless ``exact``."""

    def __init__(self, frames: int, rate: int, exact: bool) -> None:
        super().__init__(frames, rate, exact)
        self.frames, self.rate, self.exact = frames, rate, exact


def _mix(block: np.ndarray) -> np.ndarray:
    """``(n, channels)`` float -> ``(n,)`` float32, the mean in float64 (as to_mono_float)."""
    return block.astype(np.float64).mean(axis=1).astype(np.float32)


def read_soundfile(stream: BinaryIO, *, mono: bool = False, max_seconds: float | None = None):
    """Decode ``stream`` with soundfile; see the module docstring."""
    import soundfile as sf

    with sf.SoundFile(stream) as f:
        frames, channels, rate = int(f.frames), int(f.channels), int(f.samplerate)
        if max_seconds is not None and frames > max_seconds * rate:
            raise TooManyFrames(frames, rate, exact=True)
        if channels == 1 or not mono:
            samples = f.read(frames, dtype="float32", always_2d=False)  # one array, read in place
            return samples, rate, channels
        out = np.empty(frames, dtype=np.float32)
        done = 0
        while done < frames:
            block = f.read(min(BLOCK_FRAMES, frames - done), dtype="float32", always_2d=True)
            if block.shape[0] == 0:
                break
            out[done:done + block.shape[0]] = _mix(block)
            done += block.shape[0]
        return out[:done], rate, channels


class GrowingBuffer:
    """A float32 buffer filled block by block, grown by half when full (rarely: sized from the header)."""

    def __init__(self, capacity: int, width: int) -> None:
        self.shape_tail = () if width == 1 else (width,)
        self.data = np.empty((max(capacity, 1024), *self.shape_tail), dtype=np.float32)
        self.size = 0

    def append(self, block: np.ndarray) -> None:
        end = self.size + block.shape[0]
        if end > self.data.shape[0]:
            grown = np.empty((max(end, self.data.shape[0] * 3 // 2), *self.shape_tail), dtype=np.float32)
            grown[:self.size] = self.data[:self.size]
            self.data = grown
        self.data[self.size:end] = block
        self.size = end

    def result(self) -> np.ndarray:
        if self.data.shape[0] - self.size > max(self.size // 10, 1 << 20):
            return self.data[:self.size].copy()  # do not hold a much larger buffer alive
        return self.data[:self.size]


def read_pyav(stream: BinaryIO, *, mono: bool = False, max_seconds: float | None = None):
    """Decode the first audio stream of ``stream`` with PyAV; see the module docstring."""
    import av

    with av.open(stream, mode="r") as container:
        kind = container.format.name
        if kind not in PYAV_FORMATS:
            raise NotAudioFormat(kind)
        if not container.streams.audio:
            others = sorted({s.type for s in container.streams})
            raise NoAudioStream(", ".join(others) or "nothing")
        audio = container.streams.audio[0]
        rate = int(audio.codec_context.sample_rate or audio.rate or 0)
        channels = int(audio.codec_context.channels or 0)
        expected = 0
        if audio.duration and audio.time_base:
            expected = int(audio.duration * audio.time_base * rate)
        elif container.duration:
            expected = int(container.duration / 1_000_000 * rate)
        max_frames = None if max_seconds is None or not rate else int(max_seconds * rate)
        if max_frames is not None and expected > max_frames * 1.01 + rate:  # headers can be a little off
            raise TooManyFrames(expected, rate, exact=False)
        resampler = av.AudioResampler(format="flt", rate=rate or None)  # packed float32, the stream's layout
        buffer: GrowingBuffer | None = None

        def add(frame) -> None:
            nonlocal buffer, channels
            width = len(frame.layout.channels)
            block = frame.to_ndarray().reshape(-1, width)
            if buffer is None:
                channels = width
                buffer = GrowingBuffer(int(expected * 1.02) + 4096, 1 if mono or width == 1 else width)
            buffer.append(block[:, 0] if width == 1 else (_mix(block) if mono else block))
            if max_frames is not None and buffer.size > max_frames:
                raise TooManyFrames(buffer.size, rate, exact=False)

        for frame in container.decode(audio):
            rate = rate or int(frame.sample_rate)
            for converted in resampler.resample(frame):
                add(converted)
        for converted in resampler.resample(None):
            add(converted)
    if buffer is None or buffer.size == 0:
        raise NoAudioDecoded(f"no audio could be decoded from the {PYAV_FORMATS[kind]} container")
    return buffer.result(), rate, max(channels, 1)
