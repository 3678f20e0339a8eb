"""Rebuild ``speaker_encoder/ge2e.safetensors`` from resemblyzer's ``pretrained.pt``.

Usage (from the project root)::

    .venv/bin/python -m speaker_encoder.convert /tmp/rz/rzpkg/resemblyzer/pretrained.pt

The source is ``resemblyzer/pretrained.pt`` inside the Resemblyzer 0.1.4 wheel
(``Resemblyzer-0.1.4-py3-none-any.whl`` on PyPI; 17,090,379 bytes, sha256
``39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e``; Apache-2.0,
see ``LICENSE`` beside this file). The script refuses any other file.

That checkpoint is a pickled training state: ``{"step", "model_state",
"optimizer_state"}``. Inference needs only the 14 tensors of the LSTM and the
linear layer; ``optimizer_state`` (Adam moments, about two thirds of the file)
and the GE2E loss's ``similarity_weight``/``similarity_bias`` are dropped, which
is why resemblyzer itself loads it with ``strict=False``. Writing just the 14
tensors to safetensors lets :mod:`pipeline.speaker_encoder` load with
``strict=True`` (every key present, nothing extra) and without unpickling.
The tensors are copied bit for bit (checked below).
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

SOURCE_SHA256 = "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e"
TARGET = Path(__file__).resolve().parent / "ge2e.safetensors"
DROPPED = ("similarity_weight", "similarity_bias")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    import torch
    from safetensors.torch import load_file, save_file

    source = Path(argv[0])
    found = sha256(source)
    if found != SOURCE_SHA256:
        print(f"{source}: sha256 {found} is not resemblyzer 0.1.4's pretrained.pt", file=sys.stderr)
        return 1
    checkpoint = torch.load(source, map_location="cpu", weights_only=False)  # the hash is checked above
    state = {k: v.contiguous() for k, v in checkpoint["model_state"].items() if k not in DROPPED}
    metadata = {
        "source": "resemblyzer 0.1.4 wheel, resemblyzer/pretrained.pt",
        "source_sha256": SOURCE_SHA256,
        "training_step": str(checkpoint["step"]),
        "licence": "Apache-2.0 (speaker_encoder/LICENSE)",
    }
    save_file(state, str(TARGET), metadata=metadata)
    back = load_file(str(TARGET))
    assert set(back) == set(state) and all(torch.equal(back[k], state[k]) for k in state)
    print(f"{TARGET}: {len(state)} tensors, {TARGET.stat().st_size} bytes, sha256 {sha256(TARGET)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
