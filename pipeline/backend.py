"""Which engine runs the shipped networks: their own framework, or ONNX Runtime.

Every shipped network exists twice: in the framework it was trained in (PyTorch for the
gender ECAPA-TDNN, the GE2E speaker encoder and the Whisper encoder; Keras/TensorFlow for
the emotion CNNs) and as an ONNX export beside those weights, written by
``python -m training.export_onnx``. An export is ``<stem>.onnx`` plus ``<stem>.onnx.json``
(:class:`OnnxSpec`: opset, input and output names and shapes, the sha256 of the weights
it was exported from, the versions that produced it and the parity measured at export).

The choice, per network, at load time (:func:`resolve`), from ``$SER_BACKEND``:

* ``auto`` (default): the network's own framework when it is installed, so the full
  install gives exactly the answers it always gave; ONNX Runtime otherwise (the runtime
  install, ``requirements-runtime.txt``, has neither torch nor TensorFlow);
* ``onnx``: ONNX Runtime always (the answers agree with the framework's to about 1e-5,
  ``docs/runtime.md``);
* ``native``: the framework always; an error names the missing package.

Only numpy is imported here; ``onnxruntime`` when a session is made. Feature front ends
(STFTs, mel filterbanks) are never part of an exported graph: :mod:`pipeline.frontends`
computes them with numpy for the ONNX path.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from pipeline.errors import ModelError, PredictionError

BACKEND_ENV = "SER_BACKEND"
BACKENDS = ("auto", "onnx", "native")
THREADS_ENV = "SER_ONNX_THREADS"  #: intra-op threads of every ONNX Runtime session (default: ONNX Runtime's)
SPEC_SUFFIX = ".json"  #: ``model.onnx`` -> ``model.onnx.json``
FORMAT = "onnx-export/1"


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, found without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def requested_backend() -> str:
    """``$SER_BACKEND`` (``auto`` when unset), checked against :data:`BACKENDS`."""
    value = os.environ.get(BACKEND_ENV, "auto").strip().lower() or "auto"
    if value not in BACKENDS:
        raise ModelError(f"{BACKEND_ENV}={value!r} is not one of {', '.join(BACKENDS)}")
    return value


def resolve(frameworks: Sequence[str], onnx_file: str | os.PathLike, *, what: str) -> str:
    """``"native"`` or ``"onnx"``: how to run the network ``what`` (see the module docstring).

    Args:
        frameworks: modules the native path imports, e.g. ``("torch",)`` or ``("tensorflow", "keras")``.
        onnx_file: where the network's export would be.
        what: the network, for messages ("the gender model").

    Raises:
        ModelError: the backend asked for (or, with ``auto``, both) cannot run here; the message
            names the missing package or file and how to get it.
    """
    choice = requested_backend()
    missing = [m for m in frameworks if not installed(m)]
    onnx_file = Path(onnx_file)
    if choice == "native" or (choice == "auto" and not missing):
        if missing:
            raise ModelError(f"{what} needs {', '.join(missing)} with {BACKEND_ENV}=native; install the full "
                             f"profile (pip install -r requirements.txt) or set {BACKEND_ENV}=onnx")
        return "native"
    problems = []
    if not installed("onnxruntime"):
        problems.append("onnxruntime is not installed (pip install -r requirements-runtime.txt)")
    if not onnx_file.is_file():
        problems.append(f"its ONNX export {onnx_file} is missing (python -m training.export_onnx writes it)")
    if problems:
        lead = f"{what} cannot run: {' and '.join(missing)} not installed, and " if choice == "auto" else f"{what}: "
        raise ModelError(lead + "; ".join(problems), path=str(onnx_file))
    return "onnx"


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: ``name``, ``shape`` (ints, or names of dynamic axes), ``dtype``."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str = "float32"

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, data: dict) -> "TensorSpec":
        return cls(str(data["name"]), tuple(data["shape"]), str(data.get("dtype", "float32")))


@dataclass(frozen=True)
class OnnxSpec:
    """Contents of ``<stem>.onnx.json``, the card of one export.

    Attributes:
        network: what the graph is ("ecapa-gender", "ge2e", "whisper-tiny-en-encoder", "emotion-cnn").
        source: file name (beside the export) of the weights it was exported from.
        source_sha256: their sha256 at export time; a mismatch means the export is stale.
        opset: ONNX opset of the graph.
        inputs, outputs: the graph's tensors, in order.
        front_end: what the caller computes before the graph (numpy, :mod:`pipeline.frontends`).
        versions: libraries that produced the export.
        parity: maximum absolute difference from the original network on the export's check inputs.
    """

    network: str
    source: str
    source_sha256: str
    opset: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    front_end: str = ""
    versions: dict = field(default_factory=dict)
    parity: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"format": FORMAT, "network": self.network, "source": self.source,
                "source_sha256": self.source_sha256, "opset": self.opset,
                "inputs": [t.to_dict() for t in self.inputs], "outputs": [t.to_dict() for t in self.outputs],
                "front_end": self.front_end, "versions": self.versions, "parity": self.parity,
                "command": "python -m training.export_onnx"}

    @classmethod
    def from_dict(cls, data: dict) -> "OnnxSpec":
        if data.get("format") != FORMAT:
            raise ValueError(f"unknown format {data.get('format')!r}; expected {FORMAT!r}")
        return cls(network=str(data["network"]), source=str(data["source"]), source_sha256=str(data["source_sha256"]),
                   opset=int(data["opset"]), inputs=tuple(TensorSpec.from_dict(t) for t in data["inputs"]),
                   outputs=tuple(TensorSpec.from_dict(t) for t in data["outputs"]),
                   front_end=str(data.get("front_end", "")), versions=dict(data.get("versions") or {}),
                   parity=dict(data.get("parity") or {}))


def spec_path(onnx_file: str | os.PathLike) -> Path:
    """``model.onnx`` -> ``model.onnx.json``."""
    onnx_file = Path(onnx_file)
    return onnx_file.with_name(onnx_file.name + SPEC_SUFFIX)


def session_threads(threads: int | None = None) -> int:
    """Intra-op threads for a new session: ``threads``, else ``$SER_ONNX_THREADS``, else 0 (ONNX Runtime's choice)."""
    if threads:
        return int(threads)
    value = os.environ.get(THREADS_ENV, "").strip()
    return int(value) if value.isdigit() else 0


class OnnxNetwork:
    """One exported network in an ONNX Runtime CPU session, checked against its card at load.

    Args:
        onnx_file: ``<stem>.onnx``; its card ``<stem>.onnx.json`` must sit beside it.
        threads: intra-op threads (see :func:`session_threads`); inter-op is always 1.

    Raises:
        ModelError: the export or its card is missing or unreadable, the card's input names differ
            from the graph's, or the weights beside it changed since the export (stale export).
    """

    def __init__(self, onnx_file: str | os.PathLike, *, threads: int | None = None) -> None:
        self.path = Path(onnx_file)
        self.spec = read_spec(self.path)
        source = self.path.parent / self.spec.source
        if source.is_file() and file_sha256(source) != self.spec.source_sha256:
            raise ModelError(f"the ONNX export is stale: {self.spec.source} changed since it was exported; "
                             "re-export with `python -m training.export_onnx`", path=str(self.path))
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelError(f"onnxruntime is not installed ({exc}); pip install -r requirements-runtime.txt") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = session_threads(threads)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"the ONNX export does not load ({first}); the file may be truncated: "
                             "re-export with `python -m training.export_onnx`", path=str(self.path)) from None
        names = tuple(i.name for i in self.session.get_inputs())
        if names != tuple(t.name for t in self.spec.inputs):
            raise ModelError(f"the graph's inputs {names} differ from its card's "
                             f"{tuple(t.name for t in self.spec.inputs)}", path=str(self.path))
        self.input_names = names

    def run(self, *inputs: np.ndarray) -> list[np.ndarray]:
        """Run the graph on ``inputs`` (in :attr:`input_names` order, float32); every output, in order."""
        feed = {name: np.ascontiguousarray(x, dtype=np.float32) for name, x in zip(self.input_names, inputs)}
        try:
            return self.session.run(None, feed)
        except Exception as exc:
            raise PredictionError(f"{self.spec.network} (ONNX) failed: {type(exc).__name__}: {exc}") from None


def read_spec(onnx_file: str | os.PathLike) -> OnnxSpec:
    """The card of an export; :class:`ModelError` naming the file when it is missing or malformed."""
    onnx_file = Path(onnx_file)
    card = spec_path(onnx_file)
    if not onnx_file.is_file() or not card.is_file():
        raise ModelError(f"ONNX export incomplete: {onnx_file.name} and {card.name} are both needed; "
                         "write them with `python -m training.export_onnx`", path=str(onnx_file.parent))
    try:
        return OnnxSpec.from_dict(json.loads(card.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{card.name} is not a valid export card ({type(exc).__name__}: {exc})",
                         path=str(card)) from None


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """``torch.set_num_threads(n)`` for the block when torch is already imported; nothing otherwise.

    The ONNX path never imports torch, and its sessions fix their threads when made.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def set_threads(n: int) -> None:
    """``n`` intra-op threads for the networks from now on, without importing torch where it will not run.

    Sets ``$SER_ONNX_THREADS`` (read by every ONNX Runtime session made after this call) and, where
    torch is already imported or will run the networks (installed, ``SER_BACKEND`` not ``onnx``),
    ``torch.set_num_threads(n)``.
    """
    os.environ[THREADS_ENV] = str(max(1, int(n)))
    if "torch" in sys.modules or (installed("torch") and requested_backend() != "onnx"):
        import torch

        torch.set_num_threads(max(1, int(n)))


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax of ``logits`` along ``axis`` (float32 in, float32 out)."""
    shifted = logits - np.max(logits, axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=axis, keepdims=True)
