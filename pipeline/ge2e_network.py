"""The GE2E speaker encoder's network in PyTorch (the native path of :mod:`pipeline.speaker_encoder`).

Imported only where PyTorch runs it: the ONNX path (``speaker_encoder/ge2e.onnx``) never
imports this module, nor torch.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from pipeline.errors import ModelError
from pipeline.paths import PROJECT_ROOT

WEIGHTS_PATH = PROJECT_ROOT / "speaker_encoder" / "ge2e.safetensors"  #: as :data:`pipeline.speaker_encoder.WEIGHTS_PATH`
N_MELS = 40
EMBEDDING_DIM = 256


class GE2EEncoder(nn.Module):
    """The GE2E d-vector network: ``LSTM(40, 256, 3 layers) -> Linear(256, 256) -> ReLU -> L2``.

    Parameter names match the checkpoint (``lstm.weight_ih_l0`` ... ``linear.bias``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(N_MELS, 256, 3, batch_first=True)
        self.linear = nn.Linear(256, EMBEDDING_DIM)
        self.relu = nn.ReLU()

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        """``mels [shape=(batch, frames, 40)]`` power mel -> ``[shape=(batch, 256)]`` unit vectors."""
        _, (hidden, _) = self.lstm(mels)
        raw = self.relu(self.linear(hidden[-1]))
        return raw / torch.norm(raw, dim=1, keepdim=True)


def load_ge2e(path: str | Path = WEIGHTS_PATH, *, device: str | torch.device = "cpu") -> GE2EEncoder:
    """Build :class:`GE2EEncoder` and load ``path`` (safetensors) with ``strict=True``, in eval mode.

    Raises :class:`ModelError` (``path`` set) when the file is missing, is not a
    safetensors file, or lacks, adds or reshapes any tensor.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ModelError("GE2E speaker-encoder weights not found (see speaker_encoder/README.md)", path=str(path))
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"not a readable safetensors file: {exc}", path=str(path)) from None
    model = GE2EEncoder()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise ModelError(f"weights do not match the GE2E encoder: {detail}", path=str(path)) from None
    return model.to(device).eval()
