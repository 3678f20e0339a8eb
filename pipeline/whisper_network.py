"""Whisper tiny.en's audio encoder in PyTorch (the native path of :mod:`pipeline.whisper_encoder`).

The architecture is described in :mod:`pipeline.whisper_encoder`, which holds the front end,
the runners and the same constants (repeated here so that neither module imports the other
both ways; ``tests/test_onnx_parity.py`` checks they agree). Imported only where PyTorch
runs the encoder: the ONNX path never imports this module, nor torch.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.errors import ModelError
from pipeline.paths import PROJECT_ROOT

WEIGHTS_PATH = PROJECT_ROOT / "emotion_encoder" / "whisper_tiny_en_encoder.safetensors"
N_MELS = 80
WIDTH = 384
HEADS = 6
BLOCKS = 4
MLP_WIDTH = 1536
MAX_FRAMES = 3000  #: mel frames in one 30 s window (1500 encoder positions)


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
