"""GE2E speaker encoder (resemblyzer's pretrained d-vector network), reimplemented.

The network is resemblyzer 0.1.4's ``VoiceEncoder`` (Jemine; the GE2E "speaker
encoder" of Wan et al. 2018): a 3-layer LSTM (40 -> 256) over mel frames, the last
layer's final hidden state through ``Linear(256, 256)``, ReLU and L2 normalisation,
so every embedding is a unit vector with non-negative entries. The weights are
the wheel's ``pretrained.pt``, reduced to its 14 inference tensors in
``speaker_encoder/ge2e.safetensors`` (provenance, sha256 and licence in
``speaker_encoder/README.md``); they load with ``strict=True`` or raise
:class:`pipeline.errors.ModelError` naming the file.

Front end, as resemblyzer's ``preprocess_wav`` + ``wav_to_mel_spectrogram``:

* 16 kHz mono float32; volume raised (never lowered) to -30 dBFS RMS;
* **no** silence trimming: resemblyzer's ``trim_long_silences`` (webrtcvad, which
  needs a compiler to install) is left out on purpose. Callers pass speech, e.g.
  :func:`pipeline.audio.load_audio`'s output, whose leading/trailing silence is
  already cut; pauses inside the clip are kept, which resemblyzer would shorten;
* a *power* (not log) mel spectrogram: ``librosa.feature.melspectrogram`` with a
  25 ms window (n_fft 400), 10 ms hop (160), 40 bands, centred frames. The librosa
  0.11 defaults (``pad_mode="constant"``, Slaney mel scale and norm) are spelled out
  so a librosa upgrade cannot change them silently.

Utterance embedding (resemblyzer's ``embed_utterance``): the clip is cut into
160-frame (1.6 s) partials, 1.3 per second, the last one kept only if at least 75%
of it is real audio (zero-padded to full length); the partial embeddings are
averaged and renormalised. A clip shorter than one partial is zero-padded to one
partial and still embeds (resemblyzer does the same); a 0.5 s clip is ~30% real
audio, so its embedding is less reliable than a long clip's but well defined. Only
inputs under one analysis window (400 samples, 25 ms) raise
:class:`pipeline.errors.TooShortError`; all-zero input raises
:class:`pipeline.errors.SilentAudioError`.

The network runs in PyTorch (:mod:`pipeline.ge2e_network`) or, from its export
``speaker_encoder/ge2e.onnx``, in ONNX Runtime (:func:`pipeline.backend.resolve`); the
front end is numpy and librosa either way. Runs on the CPU unless a ``device`` is given.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline import backend
from pipeline.errors import AudioError, ModelError, NonFiniteAudioError, SilentAudioError, TooShortError
from pipeline.paths import PROJECT_ROOT

#: The shipped weights (14 tensors, float32).
WEIGHTS_PATH = PROJECT_ROOT / "speaker_encoder" / "ge2e.safetensors"
#: Their ONNX export (power mel ``[batch, frames, 40]`` -> ``[batch, 256]``), written by ``python -m training.export_onnx``.
ONNX_PATH = WEIGHTS_PATH.with_suffix(".onnx")

SAMPLE_RATE = 16000  #: Hz
N_MELS = 40
N_FFT = 400  #: 25 ms window at 16 kHz
HOP = 160  #: 10 ms hop at 16 kHz
PARTIAL_FRAMES = 160  #: frames per partial utterance (1.6 s)
PARTIAL_RATE = 1.3  #: partials per second
MIN_COVERAGE = 0.75  #: share of real audio the last partial needs to be kept
TARGET_DBFS = -30.0  #: volume normalisation target (increase only)
EMBEDDING_DIM = 256
_INT16_MAX = 2**15 - 1


def normalize_volume(y: np.ndarray, target_dbfs: float = TARGET_DBFS) -> np.ndarray:
    """Raise ``y [shape=(n,)]`` to ``target_dbfs`` RMS (int16 full scale), never lower it (resemblyzer's rule)."""
    rms = np.sqrt(np.mean((y * _INT16_MAX) ** 2))
    change = target_dbfs - 20 * np.log10(rms / _INT16_MAX)
    return y if change < 0 else y * (10 ** (change / 20))


@lru_cache(maxsize=1)
def _blas_threads():
    """One ``threadpoolctl.ThreadpoolController`` for the process: building one scans the loaded libraries
    (about 15 ms, reading ``/proc/self/maps``), which ``threadpool_limits`` did on every call."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def mel_frames(y: np.ndarray) -> np.ndarray:
    """Power mel spectrogram ``[shape=(1 + n // 160, 40)]`` float32 of ``y [shape=(n,)]`` at 16 kHz."""
    import librosa

    # one BLAS thread: the filterbank product is small, and idle BLAS threads spinning after it take the
    # cores from the LSTM that runs next (measured: 58 ms instead of 29 ms per 4 s clip with 2 torch threads)
    with _blas_threads().limit(limits=1, user_api="blas"):
        mel = librosa.feature.melspectrogram(
            y=y, sr=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS,
            center=True, pad_mode="constant", power=2.0, htk=False, norm="slaney",
        )
    return mel.astype(np.float32).T


def partial_starts(n_samples: int, *, rate: float = PARTIAL_RATE, min_coverage: float = MIN_COVERAGE) -> list[int]:
    """First mel frame of each 160-frame partial of an ``n_samples`` clip (resemblyzer's ``compute_partial_slices``).

    Always at least one; the last is dropped when less than ``min_coverage`` of it is real audio.
    """
    n_frames = int(np.ceil((n_samples + 1) / HOP))
    step = int(np.round((SAMPLE_RATE / rate) / HOP))
    if not 0 < step <= PARTIAL_FRAMES:
        raise ValueError(f"rate {rate}/s gives a step of {step} frames; it must lie in 1..{PARTIAL_FRAMES}")
    starts = list(range(0, max(1, n_frames - PARTIAL_FRAMES + step + 1), step))
    coverage = (n_samples - starts[-1] * HOP) / (PARTIAL_FRAMES * HOP)
    if coverage < min_coverage and len(starts) > 1:
        starts.pop()
    return starts


@dataclass(frozen=True)
class Embedding:
    """An utterance embedding with the partials it averages.

    Attributes:
        vector: ``[shape=(256,)]`` float32, unit L2 norm, non-negative entries.
        partials: ``[shape=(k, 256)]`` float32 unit embeddings of the ``k`` partials.
        starts_s: ``[k]`` start of each partial in the clip, seconds.
    """

    vector: np.ndarray
    partials: np.ndarray
    starts_s: tuple[float, ...]


def _check(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise AudioError(f"expected a mono signal of shape (n,), got shape {y.shape}")
    if y.size < N_FFT:
        raise TooShortError(f"{y.size} samples: the speaker encoder needs at least {N_FFT} (25 ms at 16 kHz)")
    y = y.astype(np.float32, copy=False)
    if not np.all(np.isfinite(y)):
        raise NonFiniteAudioError("the signal holds NaN or infinite samples")
    if not np.any(y):
        raise SilentAudioError("the signal is all zeros")
    return y


def _partial_mels(y: np.ndarray, *, rate: float, min_coverage: float) -> tuple[np.ndarray, list[int]]:
    """``[shape=(k, 160, 40)]`` mels of the partials of a checked clip, and their start frames."""
    y = normalize_volume(y)
    starts = partial_starts(y.size, rate=rate, min_coverage=min_coverage)
    needed = (starts[-1] + PARTIAL_FRAMES) * HOP
    if needed >= y.size:
        y = np.pad(y, (0, needed - y.size))
    mel = mel_frames(y)
    return np.stack([mel[s:s + PARTIAL_FRAMES] for s in starts]), starts


class SpeakerEncoder:
    """Waveform -> GE2E embedding (front end + :class:`GE2EEncoder` or its ONNX export).

    Args:
        path: safetensors weights (default :data:`WEIGHTS_PATH`); the export is ``path`` with ``.onnx``.
        device: torch device, ``"cpu"`` by default (the ONNX path runs on the CPU only).
        batch_size: partials per forward pass in :meth:`embed_many`.

    Attributes:
        backend: ``"native"`` (PyTorch) or ``"onnx"`` (:func:`pipeline.backend.resolve`).
    """

    def __init__(self, path: str | Path = WEIGHTS_PATH, *, device="cpu", batch_size: int = 64) -> None:
        path = Path(path)
        self.backend = backend.resolve(("torch",), path.with_suffix(".onnx"), what="the GE2E speaker encoder")
        if self.backend == "onnx":
            if not str(device).startswith("cpu"):
                raise ModelError(f"device {device!r}: the ONNX speaker encoder runs on the CPU only")
            self.device = "cpu"
            self.model = backend.OnnxNetwork(path.with_suffix(".onnx"))
        else:
            import torch

            from pipeline.ge2e_network import load_ge2e

            self.device = torch.device(device)
            self.model = load_ge2e(path, device=self.device)
        self.batch_size = int(batch_size)

    def _forward(self, mels: np.ndarray) -> np.ndarray:
        """``mels [shape=(k, 160, 40)]`` float32 -> partial embeddings ``[shape=(k, 256)]`` float32."""
        if self.backend == "onnx":
            return self.model.run(mels)[0]
        import torch

        with torch.inference_mode():
            return self.model(torch.from_numpy(mels).to(self.device)).cpu().numpy()

    def embed(self, y: np.ndarray, *, rate: float = PARTIAL_RATE, min_coverage: float = MIN_COVERAGE) -> Embedding:
        """Embed ``y [shape=(n,)]`` float32 at 16 kHz; the result keeps the partial embeddings."""
        mels, starts = _partial_mels(_check(y), rate=rate, min_coverage=min_coverage)
        partials = self._forward(mels)
        mean = partials.mean(axis=0)
        return Embedding(mean / np.linalg.norm(mean), partials, tuple(s * HOP / SAMPLE_RATE for s in starts))

    def embed_utterance(self, y: np.ndarray, **kwargs) -> np.ndarray:
        """``y [shape=(n,)]`` float32 at 16 kHz (speech) -> ``[shape=(256,)]`` float32 unit vector."""
        return self.embed(y, **kwargs).vector

    def embed_many(self, clips: Sequence[np.ndarray], *, rate: float = PARTIAL_RATE,
                   min_coverage: float = MIN_COVERAGE) -> np.ndarray:
        """Embed every clip of ``clips`` (each ``[shape=(n_i,)]`` at 16 kHz) -> ``[shape=(len(clips), 256)]``.

        The partials of all clips go through the network together, ``batch_size``
        at a time; each row equals :meth:`embed_utterance` of its clip.
        """
        if not len(clips):
            return np.zeros((0, EMBEDDING_DIM), np.float32)
        mels = [_partial_mels(_check(y), rate=rate, min_coverage=min_coverage)[0] for y in clips]
        counts = [m.shape[0] for m in mels]
        stacked = np.concatenate(mels)
        partials = np.concatenate([self._forward(stacked[i:i + self.batch_size])
                                   for i in range(0, stacked.shape[0], self.batch_size)])
        out = np.empty((len(clips), EMBEDDING_DIM), np.float32)
        for row, chunk in enumerate(np.split(partials, np.cumsum(counts)[:-1])):
            mean = chunk.mean(axis=0)
            out[row] = mean / np.linalg.norm(mean)
        return out


def __getattr__(name: str):
    """The PyTorch network, imported on first use: ``from pipeline.speaker_encoder import GE2EEncoder`` still works."""
    if name in ("GE2EEncoder", "load_ge2e"):
        from pipeline import ge2e_network

        return getattr(ge2e_network, name)
    raise AttributeError(f"module 'pipeline.speaker_encoder' has no attribute {name!r}")
