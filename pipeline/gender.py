"""Speaker gender from a prepared speech signal (ECAPA-TDNN, see :mod:`pipeline.ecapa`).

``GenderClassifier.load()`` reads the model shipped in ``<project>/gender_model``
(trained by :mod:`training.gender_train`); a local folder or the public hub id
``JaesungHuh/voice-gender-classifier`` (needs internet) load the same way,
always with ``strict=True``. A folder holding ``ensemble.json`` is a seed
ensemble (:mod:`training.gender_ensemble`): each member is such a folder, loaded
the same way, and the classifier returns the mean of the members' probabilities.
A folder holding ``fusion.json`` (:mod:`pipeline.gender_fusion`) adds a second
opinion, a logistic regression on the pretrained GE2E speaker embedding, fused with
the ECAPA's calibrated log-odds; the GE2E encoder is loaded on first use.
Each network runs in PyTorch or, from its export ``model.onnx`` beside the weights, in ONNX
Runtime (:func:`pipeline.backend.resolve`; the log-mel front end is then numpy's,
:func:`pipeline.frontends.ecapa_log_mel`). A hub id always needs PyTorch.
Input signals are 16 kHz mono float32 as returned by
:func:`pipeline.audio.load_audio` / :func:`pipeline.audio.prepare_signal`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline import backend
from pipeline.errors import ModelError, PredictionError
from pipeline.gender_fusion import GenderFusion
from pipeline.paths import PROJECT_ROOT

GENDER_LABELS: tuple[str, str] = ("male", "female")
DEFAULT_GENDER_MODEL_DIR = PROJECT_ROOT / "gender_model"
PUBLIC_HUB_ID = "JaesungHuh/voice-gender-classifier"
MODEL_FILES = ("config.json", "model.safetensors")
ONNX_FILE = "model.onnx"  #: the ECAPA's export, log-mel in (``python -m training.export_onnx``)
HUB_PACKAGES = ("torch", "huggingface_hub", "safetensors")  #: what loading a hub id imports
ENSEMBLE_FILE = "ensemble.json"
ENSEMBLE_COMBINE = "mean_probability"


def _looks_like_path(text: str) -> bool:
    """True for strings that cannot be a hub id ``namespace/name`` (absolute, relative with ./, deep)."""
    return (
        os.path.isabs(text)
        or text.startswith((".", "~"))
        or "\\" in text
        or text.count("/") > 1
        or os.path.exists(text)
    )


class GenderClassifier:
    """Wraps one :class:`~pipeline.ecapa.ECAPAGender`, or several averaged, for inference.

    Attributes:
        models: the networks (one, or the members of an ensemble): torch modules in eval mode on ``device``,
            or :class:`~pipeline.backend.OnnxNetwork` exports (log-mel in, logits out).
        backend: ``"native"`` (PyTorch) or ``"onnx"``.
        model: the first (for a single model, the only) network.
        source: where it was loaded from (folder path or hub id).
        info: contents of the folder's optional ``metadata.json``, else ``{}``.
        device: torch device string.
        fusion: the folder's :class:`~pipeline.gender_fusion.GenderFusion`, or ``None`` (the ECAPA alone).
    """

    labels = GENDER_LABELS

    def __init__(self, model, *, source: str, info: dict | None = None, device: str = "cpu",
                 fusion: GenderFusion | None = None, encoder=None) -> None:
        models = list(model) if isinstance(model, (list, tuple)) else [model]
        if not models:
            raise ModelError("a gender classifier needs at least one network", path=source)
        self.backend = "onnx" if isinstance(models[0], backend.OnnxNetwork) else "native"
        self.models = tuple(m if self.backend == "onnx" else m.eval() for m in models)
        self.source = source
        self.info = dict(info or {})
        self.device = device
        self.fusion = fusion
        self._encoder = encoder

    @property
    def encoder(self):
        """The GE2E :class:`~pipeline.speaker_encoder.SpeakerEncoder` of the fusion (loaded on first use)."""
        if self._encoder is None:
            from pipeline.speaker_encoder import SpeakerEncoder

            self._encoder = SpeakerEncoder(device=self.device)
        return self._encoder

    @property
    def model(self):
        return self.models[0]

    @classmethod
    def load(cls, source: str | os.PathLike | None = None, *, device: str = "cpu",
             second_opinion: bool = True) -> "GenderClassifier":
        """Load a model folder (default: the shipped one), an ensemble folder, or a hub id.

        ``second_opinion=False`` leaves out the folder's ``fusion.json``: the ECAPA's own opinion
        (what the studies compare the fusion with).

        Raises:
            ModelError: a file is missing, the weights do not match the
                architecture, CUDA is asked for but absent, the hub cannot be reached, or
                neither PyTorch nor ONNX Runtime with the folder's export can run it (the
                message names the missing package).
        """
        device = str(device)
        path = Path(source) if source is not None else DEFAULT_GENDER_MODEL_DIR
        is_local = source is None or path.is_dir()
        if not is_local and _looks_like_path(os.fspath(source)):
            raise ModelError(
                "gender model folder not found; pass an existing folder holding config.json and "
                "model.safetensors (or ensemble.json), or None for the shipped model",
                path=str(path),
            )
        if not is_local:
            missing = [m for m in HUB_PACKAGES if not backend.installed(m)]
            if missing:
                raise ModelError(f"loading {os.fspath(source)!r} from the Hugging Face hub needs {', '.join(missing)}, "
                                 "which this install lacks; install the full profile (pip install -r requirements.txt) "
                                 "or use the shipped model (default) or a local folder with model.onnx")
        members = ensemble_members(path) if is_local and (path / ENSEMBLE_FILE).is_file() else None
        engine = "native"
        if is_local:
            engine = backend.resolve(("torch",), (members[0] if members else path) / ONNX_FILE, what="the gender model")
        if engine == "onnx" and not device.startswith("cpu"):
            raise ModelError(f"device {device!r}: the ONNX gender model runs on the CPU only; use device='cpu' "
                             "or the full install")
        if engine == "native":
            import torch

            if device.startswith("cuda") and not torch.cuda.is_available():
                raise ModelError(f"device {device!r} requested but CUDA is not available; use device='cpu'")
        load = _load_network if engine == "native" else _load_onnx
        fusion = GenderFusion.load(path) if is_local and second_opinion else None
        if members is not None:
            models = [load(member, is_local=True, device=device) for member in members]
            return cls(models, source=str(path), info=_read_metadata(path), device=device, fusion=fusion)
        label = str(path) if is_local else os.fspath(source)
        model = load(path if is_local else label, is_local=is_local, device=device)
        return cls(model, source=label, info=_read_metadata(path) if is_local else {}, device=device, fusion=fusion)

    def _probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Mean over the networks of their softmax, ``(n, 2)``, for a batch ``(n, samples)`` of equal-length clips."""
        if self.backend == "onnx":
            from pipeline.frontends import ecapa_log_mel

            try:
                features = ecapa_log_mel(batch)
            except Exception as exc:
                raise PredictionError(f"gender model failed: {type(exc).__name__}: {exc}") from exc
            probs = sum(backend.softmax(m.run(features)[0]) for m in self.models)
            return (probs / len(self.models)).astype(np.float32)
        import torch

        try:
            with torch.inference_mode():
                x = torch.as_tensor(np.ascontiguousarray(batch, dtype=np.float32), device=self.device)
                # the log-mel front end has no parameters and is the same in every ECAPAGender: compute it once
                features = self.models[0].logfbank(x)
                probs = sum(torch.softmax(m.forward_features(features).float(), dim=1) for m in self.models)
                return (probs / len(self.models)).cpu().numpy()
        except Exception as exc:
            raise PredictionError(f"gender model failed: {type(exc).__name__}: {exc}") from exc

    @staticmethod
    def _check(samples: np.ndarray) -> np.ndarray:
        y = np.asarray(samples, dtype=np.float32)
        if y.ndim != 1:
            raise PredictionError(f"expected a 1-D signal, got shape {y.shape}")
        if y.size < 2:
            raise PredictionError("signal is too short for the gender model")
        if not np.all(np.isfinite(y)):
            raise PredictionError("signal contains NaN or infinite samples")
        return y

    def predict_proba(self, samples: np.ndarray) -> np.ndarray:
        """``[p_male, p_female]`` (shape ``(2,)``) for one prepared 16 kHz mono signal."""
        return self.predict_proba_batch([samples])[0]

    def predict_proba_batch(self, signals: Sequence[np.ndarray], *, embeddings: np.ndarray | None = None) -> np.ndarray:
        """Probabilities ``(n, 2)`` for ``n`` signals; equal to per-clip :meth:`predict_proba`.

        Clips of identical length share one forward pass (no padding, so the
        per-utterance mean normalisation and pooling see exactly the clip).

        Args:
            signals: ``n`` prepared 16 kHz mono float32 signals ``[shape=(samples,)]``.
            embeddings: with a fusion only: the signals' GE2E embeddings ``[shape=(n, 256)]``
                when the caller has them already (e.g. the voices of a recording); computed here otherwise.
        """
        checked = [self._check(s) for s in signals]
        out = np.zeros((len(checked), 2), dtype=np.float32)
        by_length: dict[int, list[int]] = {}
        for i, y in enumerate(checked):
            by_length.setdefault(y.size, []).append(i)
        for indices in by_length.values():
            out[indices] = self._probabilities(np.stack([checked[i] for i in indices]))
        if self.fusion is None or not checked:
            return out
        try:
            if self.fusion.needs_embeddings and embeddings is None:
                embeddings = self.encoder.embed_many(checked)
            return self.fusion.probabilities(out, embeddings)
        except Exception as exc:
            raise PredictionError(f"gender fusion failed: {type(exc).__name__}: {exc}") from exc

    def predict(self, samples: np.ndarray) -> str:
        """``"male"`` or ``"female"`` for one prepared signal."""
        return GENDER_LABELS[int(np.argmax(self.predict_proba(samples)))]


def ensemble_members(folder: str | os.PathLike) -> list[Path]:
    """Member folders listed by ``folder/ensemble.json`` (``{"members": ["seed0", ...]}``, relative paths).

    Raises:
        ModelError: the file is not valid JSON, lists no members, names a way of combining
            them other than the mean probability, or a member is missing or leaves the folder.
    """
    folder = Path(folder)
    try:
        spec = json.loads((folder / ENSEMBLE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{ENSEMBLE_FILE} is not valid JSON: {exc}", path=str(folder)) from exc
    members = spec.get("members") if isinstance(spec, dict) else None
    if not isinstance(members, list) or not members or not all(isinstance(m, str) and m for m in members):
        raise ModelError(f"{ENSEMBLE_FILE} must list its member folders under 'members'", path=str(folder))
    if spec.get("combine", ENSEMBLE_COMBINE) != ENSEMBLE_COMBINE:
        raise ModelError(f"{ENSEMBLE_FILE}: unknown 'combine' {spec['combine']!r}; only {ENSEMBLE_COMBINE!r} "
                         "(mean of the members' probabilities) is implemented", path=str(folder))
    paths = []
    for name in members:
        member = (folder / name).resolve()
        if folder.resolve() not in member.parents:
            raise ModelError(f"ensemble member {name!r} is not inside the ensemble folder", path=str(folder))
        if not member.is_dir():
            raise ModelError(f"ensemble member folder {name!r} is missing", path=str(folder))
        paths.append(member)
    return paths


def _read_metadata(path: Path) -> dict:
    """``path/metadata.json`` as a dict, ``{}`` when absent."""
    if not (path / "metadata.json").is_file():
        return {}
    try:
        return json.loads((path / "metadata.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"metadata.json is not valid JSON: {exc}", path=str(path)) from exc


def _load_onnx(source: str | Path, *, is_local: bool = True, device: str = "cpu") -> backend.OnnxNetwork:
    """The ECAPA export ``source/model.onnx`` (log-mel ``[batch, 80, frames]`` -> logits ``[batch, 2]``)."""
    path = Path(source)
    if not (path / "config.json").is_file():
        raise ModelError("gender model folder is missing config.json; restore the folder", path=str(path))
    return backend.OnnxNetwork(path / ONNX_FILE)


def _load_network(source: str | Path, *, is_local: bool, device: str):
    """One :class:`~pipeline.ecapa.ECAPAGender` from a local folder or a hub id, ``strict=True``, on ``device``."""
    from pipeline.ecapa import ECAPAGender

    if is_local:
        path = Path(source)
        for name in MODEL_FILES:
            if not (path / name).is_file():
                raise ModelError(
                    f"gender model folder is missing {name}; retrain with "
                    "`python -m training.gender_train --out gender_model` or restore the file",
                    path=str(path),
                )
    label = os.fspath(source)
    try:
        model = ECAPAGender.from_pretrained(label, strict=True, map_location=device)
    except ModelError:
        raise
    except RuntimeError as exc:  # state-dict mismatch (missing/unexpected keys, shapes)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"weights do not match the ECAPA gender architecture ({first}); "
            "check config.json against model.safetensors or retrain",
            path=label,
        ) from exc
    except (OSError, ValueError) as exc:
        if is_local:
            raise ModelError(f"cannot read the gender model: {exc}", path=label) from exc
        raise ModelError(
            f"cannot load {label!r} from the Hugging Face hub ({type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}). "
            "No internet? Use the shipped model (default) or a local copy of the folder",
            path=None,
        ) from exc
    except Exception as exc:  # hub client errors that are not OSErrors, corrupt files
        raise ModelError(
            f"cannot load the gender model ({type(exc).__name__}: {exc}). "
            "No internet? Use the shipped model (default) or a local copy of the folder",
            path=label,
        ) from exc
    return model.to(device)
