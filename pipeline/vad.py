"""Voice activity detection: where in a recording someone speaks (silero-vad).

The model is silero-vad 6.2.3's TorchScript network (MIT licence), read from the installed
wheel's own data folder (``silero_vad/data/silero_vad.jit``): nothing is downloaded. It
gives one speech probability per 512-sample frame (32 ms at 16 kHz) and carries a
recurrent state from frame to frame.

Streaming, in flat memory: the 16 kHz signal is cut into at most ``streams`` contiguous
pieces (64 by default), each at least ``min_stream_s`` long (60 s), that run side by side as
one batch, one 512-sample frame each per step, so no copy of the signal, and no
spectrogram, is ever made (a step holds ``streams x 512`` samples). A recording under two
minutes is one stream: exactly silero's own frame-by-frame loop. Each piece except the first
is preceded by ``warmup_frames`` frames of the audio before it (8 s by default), whose
outputs are discarded, so the recurrent state has mostly settled where the piece's own
frames start (silero's state has a long memory: frame decisions near a piece start agree
with one long stream on about 99% of frames, measured in ``tests/test_vad.py``). Batching
makes an hour take about 3 s on one core instead of about 25 s frame by frame.

Frames -> regions: silero's own ``get_speech_timestamps_from_probs`` (hysteresis between
``threshold`` and ``threshold - 0.15``, gaps shorter than ``min_gap_s`` bridged, regions
shorter than ``min_speech_s`` dropped, ``pad_s`` added each side), which works on the
probabilities alone. Regions longer than ``max_segment_s`` are then cut into pieces of
``min_piece_s``..``max_segment_s`` at the quietest 32 ms frame near each even cut point
(:func:`split_long`), the lengths the emotion model was trained on.

Without torch (or with ``SER_BACKEND=onnx``) the wheel's ``silero_vad.onnx`` runs instead, in
ONNX Runtime, with a numpy port of the regions rule (:mod:`pipeline.vad_onnx`).

Note: silero ignores synthetic harmonic signals (:func:`pipeline.testing.speech_like`
scores about 0.003); tests use the real example clips in ``examples/``.
"""
from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from pipeline.errors import AudioError, ModelError

SAMPLE_RATE = 16000  #: Hz; the only rate accepted here
FRAME = 512  #: samples per VAD frame (32 ms)
FRAME_S = FRAME / SAMPLE_RATE

Progress = Callable[[float], None]
"""Called with the fraction done, 0..1."""


@dataclass(frozen=True)
class SpeechRegion:
    """A stretch of speech, in seconds from the start of the recording."""

    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def samples(self, sr: int = SAMPLE_RATE) -> slice:
        """The region as a slice of a signal at ``sr`` Hz."""
        return slice(int(round(self.start_s * sr)), int(round(self.end_s * sr)))


@dataclass(frozen=True)
class VadConfig:
    """Parameters of :class:`SileroVad` (seconds unless said otherwise).

    Attributes:
        threshold: speech probability that starts a region (silero's default, 0.5).
        min_gap_s: pauses shorter than this are bridged (one region).
        min_speech_s: regions shorter than this are dropped.
        pad_s: added to each side of a region (silero's ``speech_pad_ms``).
        max_segment_s: regions longer than this are split ...
        min_piece_s: ... into pieces at least this long.
        streams: at most this many pieces of the recording run side by side as one batch ...
        min_stream_s: ... each at least this long (shorter recordings: fewer pieces, down to one).
        warmup_frames: frames of preceding audio fed to a piece before its own (32 ms each).
    """

    threshold: float = 0.5
    min_gap_s: float = 0.25
    min_speech_s: float = 0.25
    pad_s: float = 0.03
    max_segment_s: float = 6.0
    min_piece_s: float = 2.0
    streams: int = 64
    min_stream_s: float = 60.0
    warmup_frames: int = 250


def silero_model_path() -> Path:
    """Path of ``silero_vad.jit`` inside the installed silero-vad package (found without importing it).

    Raises :class:`ModelError` when the package or its model file is missing.
    """
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("silero-vad is not installed (pip install silero-vad==6.2.3; see requirements.txt)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "silero_vad.jit"
    if not path.is_file():
        raise ModelError("silero-vad's model file is missing from the installed package", path=str(path))
    return path


def _timestamps_from_probs():
    """silero's ``get_speech_timestamps_from_probs``.

    Importing ``silero_vad`` calls ``torch.set_num_threads(1)`` as a side effect; the
    caller's thread count is put back.
    """
    from pipeline import backend

    if backend.requested_backend() == "onnx" or not backend.installed("torch"):
        from pipeline.vad_onnx import speech_timestamps_from_probs

        return speech_timestamps_from_probs
    import torch

    threads = torch.get_num_threads()
    try:
        from silero_vad.utils_vad import get_speech_timestamps_from_probs
    finally:
        torch.set_num_threads(threads)
    return get_speech_timestamps_from_probs


class SileroVad:
    """silero-vad over a 16 kHz signal, streamed in batches (see the module docstring).

    Not thread-safe (the model keeps its recurrent state); one instance per thread.
    """

    def __init__(self, config: VadConfig = VadConfig(), *, path: str | Path | None = None) -> None:
        self.config = config
        from pipeline import vad_onnx

        if path is None and vad_onnx.use_onnx():
            self.model = vad_onnx.OnnxSilero()
            return
        import torch

        path = Path(path) if path is not None else silero_model_path()
        try:
            self.model = torch.jit.load(str(path), map_location="cpu").eval()
        except (RuntimeError, OSError, ValueError) as exc:
            raise ModelError(f"silero-vad model does not load: {exc}", path=str(path)) from None

    def probabilities(self, y: np.ndarray, *, progress: Progress | None = None) -> np.ndarray:
        """Speech probability per 512-sample frame of ``y [shape=(n,)]`` float32 at 16 kHz.

        Returns ``[shape=(ceil(n / 512),)]`` float32 (the last frame zero-padded).
        """
        y = _check(y)
        n_frames = math.ceil(y.size / FRAME)
        if n_frames == 0:
            return np.zeros(0, np.float32)
        min_frames = max(1, int(self.config.min_stream_s / FRAME_S))
        streams = max(1, min(self.config.streams, n_frames // min_frames))
        per = math.ceil(n_frames / streams)
        n_streams = math.ceil(n_frames / per)
        warm = self.config.warmup_frames
        out = np.zeros((n_streams, per), np.float32)
        batch = np.zeros((n_streams, FRAME), np.float32)
        self.model.reset_states()
        with self._no_grad():
            for step in range(-warm, per):
                batch.fill(0.0)
                for b in range(n_streams):
                    frame = b * per + step
                    if 0 <= frame < n_frames and (step >= 0 or b > 0):
                        chunk = y[frame * FRAME:(frame + 1) * FRAME]
                        batch[b, :chunk.size] = chunk
                probs = self._step(batch)
                if step >= 0:
                    out[:, step] = probs.reshape(-1)
                if progress is not None and step % 256 == 0:
                    progress((step + warm) / (per + warm))
        if progress is not None:
            progress(1.0)
        return out.reshape(-1)[:n_frames]

    def _no_grad(self):
        """``torch.inference_mode()`` for the TorchScript model; nothing for the ONNX one."""
        from contextlib import nullcontext

        from pipeline.vad_onnx import OnnxSilero

        if isinstance(self.model, OnnxSilero):
            return nullcontext()
        import torch

        return torch.inference_mode()

    def _step(self, batch: np.ndarray) -> np.ndarray:
        """One frame of every stream, ``[shape=(streams, 512)]`` -> probabilities (numpy)."""
        from pipeline.vad_onnx import OnnxSilero

        if isinstance(self.model, OnnxSilero):
            return self.model(batch, SAMPLE_RATE)
        import torch

        return self.model(torch.from_numpy(batch), SAMPLE_RATE).numpy()

    def regions(self, y: np.ndarray, *, progress: Progress | None = None) -> list[SpeechRegion]:
        """Speech regions of ``y [shape=(n,)]`` at 16 kHz, time-ordered, before :func:`split_long`."""
        probs = self.probabilities(y, progress=progress)
        return regions_from_probabilities(probs, y.size, self.config)

    def segments(self, y: np.ndarray, *, progress: Progress | None = None) -> list[SpeechRegion]:
        """:meth:`regions` with the long ones split (each at most ``config.max_segment_s``)."""
        return split_long(self.regions(y, progress=progress), y, self.config)


def regions_from_probabilities(probs: np.ndarray, n_samples: int, config: VadConfig = VadConfig()) -> list[SpeechRegion]:
    """Frame probabilities ``[shape=(n_frames,)]`` of an ``n_samples`` signal -> time-ordered regions."""
    if not len(probs):
        return []
    stamps = _timestamps_from_probs()(
        [float(p) for p in probs], sampling_rate=SAMPLE_RATE, threshold=config.threshold,
        min_speech_duration_ms=int(config.min_speech_s * 1000), min_silence_duration_ms=int(config.min_gap_s * 1000),
        speech_pad_ms=int(config.pad_s * 1000), audio_length_samples=int(n_samples))
    regions = [SpeechRegion(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in stamps]
    return [r for r in regions if r.duration_s >= config.min_speech_s]


def split_long(regions: list[SpeechRegion], y: np.ndarray, config: VadConfig = VadConfig()) -> list[SpeechRegion]:
    """Cut every region longer than ``config.max_segment_s`` into pieces of ``min_piece_s``..``max_segment_s``.

    A region of ``d`` seconds becomes ``ceil(d / (max_segment_s - 1))`` pieces; each cut moves from its
    even position to the quietest 32 ms frame (RMS of ``y``, 16 kHz) within a radius that keeps every
    piece inside the bounds. Only the region's own samples are read.
    """
    out: list[SpeechRegion] = []
    longest, shortest = config.max_segment_s, config.min_piece_s
    for region in regions:
        if region.duration_s <= longest:
            out.append(region)
            continue
        n = math.ceil(region.duration_s / max(longest - 1.0, shortest))
        even = region.duration_s / n
        radius = max(0.0, min((even - shortest) / 2, (longest - even) / 2, 0.5))
        rms = _frame_rms(y[region.samples()])
        cuts = [region.start_s]
        for k in range(1, n):
            centre = region.start_s + k * even
            lo = max(0, int((centre - radius - region.start_s) / FRAME_S))
            hi = min(len(rms), int((centre + radius - region.start_s) / FRAME_S) + 1)
            if hi > lo:
                best = lo + int(np.argmin(rms[lo:hi]))
                centre = min(max(region.start_s + (best + 0.5) * FRAME_S, centre - radius), centre + radius)
            cuts.append(centre)
        cuts.append(region.end_s)
        out.extend(SpeechRegion(a, b) for a, b in zip(cuts[:-1], cuts[1:]))
    return out


def _frame_rms(y: np.ndarray) -> np.ndarray:
    """RMS per 512-sample frame of ``y [shape=(n,)]`` -> ``[shape=(n // 512,)]``."""
    n = y.size // FRAME
    if n == 0:
        return np.zeros(0, np.float32)
    frames = y[:n * FRAME].reshape(n, FRAME).astype(np.float32)
    return np.sqrt(np.mean(frames * frames, axis=1))


def _check(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise AudioError(f"expected a mono 16 kHz signal of shape (n,), got shape {y.shape}")
    return y.astype(np.float32, copy=False)
