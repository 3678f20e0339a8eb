"""Speaker gender from a prepared speech signal (ECAPA-TDNN, see :mod:`pipeline.ecapa`).

``GenderClassifier.load()`` reads the model shipped in ``<project>/gender_model``
(trained by :mod:`pipeline.train_gender`); a local folder or the public hub id
``JaesungHuh/voice-gender-classifier`` (needs internet) load the same way,
always with ``strict=True``. Input signals are 16 kHz mono float32 as returned by
:func:`pipeline.audio.load_audio` / :func:`pipeline.audio.prepare_signal`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import ModelError, PredictionError

GENDER_LABELS: tuple[str, str] = ("male", "female")
DEFAULT_GENDER_MODEL_DIR = Path(__file__).resolve().parent.parent / "gender_model"
PUBLIC_HUB_ID = "JaesungHuh/voice-gender-classifier"
MODEL_FILES = ("config.json", "model.safetensors")
SAMPLE_RATE = 16000


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
    """Wraps an :class:`~pipeline.ecapa.ECAPAGender` for inference.

    Attributes:
        model: the network, in eval mode, on ``device``.
        source: where it was loaded from (folder path or hub id).
        info: contents of the folder's optional ``metadata.json``, else ``{}``.
        device: torch device string.
    """

    labels = GENDER_LABELS

    def __init__(self, model, *, source: str, info: dict | None = None, device: str = "cpu") -> None:
        self.model = model.eval()
        self.source = source
        self.info = dict(info or {})
        self.device = device

    @classmethod
    def load(cls, source: str | os.PathLike | None = None, *, device: str = "cpu") -> "GenderClassifier":
        """Load a model folder (default: the shipped one) or a hub id.

        Raises:
            ModelError: a file is missing, the weights do not match the
                architecture, CUDA is asked for but absent, or the hub cannot be reached.
        """
        import torch

        from .ecapa import ECAPAGender

        device = str(device)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ModelError(f"device {device!r} requested but CUDA is not available; use device='cpu'")
        path = Path(source) if source is not None else DEFAULT_GENDER_MODEL_DIR
        is_local = source is None or path.is_dir()
        if not is_local and _looks_like_path(os.fspath(source)):
            raise ModelError(
                "gender model folder not found; pass an existing folder holding config.json and "
                "model.safetensors, or None for the shipped model",
                path=str(path),
            )
        if is_local:
            for name in MODEL_FILES:
                if not (path / name).is_file():
                    raise ModelError(
                        f"gender model folder is missing {name}; retrain with "
                        "`python -m pipeline.train_gender --out gender_model` or restore the file",
                        path=str(path),
                    )
            label = str(path)
        else:
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
        info: dict = {}
        if is_local and (path / "metadata.json").is_file():
            try:
                info = json.loads((path / "metadata.json").read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ModelError(f"metadata.json is not valid JSON: {exc}", path=label) from exc
        model.to(device)
        return cls(model, source=label, info=info, device=device)

    def _logits(self, batch: np.ndarray) -> np.ndarray:
        import torch

        try:
            with torch.inference_mode():
                x = torch.as_tensor(np.ascontiguousarray(batch, dtype=np.float32), device=self.device)
                return self.model(x).float().cpu().numpy()
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

    def predict_proba_batch(self, signals: Sequence[np.ndarray]) -> np.ndarray:
        """Probabilities ``(n, 2)`` for ``n`` signals; equal to per-clip :meth:`predict_proba`.

        Clips of identical length share one forward pass (no padding, so the
        per-utterance mean normalisation and pooling see exactly the clip).
        """
        checked = [self._check(s) for s in signals]
        out = np.zeros((len(checked), 2), dtype=np.float32)
        by_length: dict[int, list[int]] = {}
        for i, y in enumerate(checked):
            by_length.setdefault(y.size, []).append(i)
        for indices in by_length.values():
            logits = self._logits(np.stack([checked[i] for i in indices]))
            logits = logits - logits.max(axis=1, keepdims=True)
            probs = np.exp(logits)
            probs /= probs.sum(axis=1, keepdims=True)
            out[indices] = probs
        return out

    def predict(self, samples: np.ndarray) -> str:
        """``"male"`` or ``"female"`` for one prepared signal."""
        return GENDER_LABELS[int(np.argmax(self.predict_proba(samples)))]
