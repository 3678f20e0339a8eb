"""silero-vad without PyTorch: the wheel's own ONNX model and its probabilities-to-regions rule in numpy.

silero-vad 6.2.3 ships ``silero_vad/data/silero_vad.onnx`` beside the TorchScript model
that :class:`pipeline.vad.SileroVad` runs natively; importing the ``silero_vad`` package
imports torch, so this module finds the file without importing it and reproduces the two
pieces of ``silero_vad.utils_vad`` that the pipeline uses (MIT licence, Silero Team):

* :class:`OnnxSilero`: ``OnnxWrapper.__call__`` for 16 kHz batches, i.e. each stream's
  512-sample frame preceded by the last 64 samples of its previous frame (the context),
  and the recurrent state ``[2, batch, 128]`` carried between calls;
* :func:`speech_timestamps_from_probs`: ``get_speech_timestamps_from_probs`` with no
  maximum region length (what :func:`pipeline.vad.regions_from_probabilities` asks for):
  hysteresis between ``threshold`` and ``threshold - 0.15``, short gaps bridged, short
  regions dropped, padding added and shared between close regions.

``tests/test_onnx_parity.py`` compares both with silero's own where torch is installed.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from pipeline import backend
from pipeline.errors import ModelError, PredictionError

SAMPLE_RATE = 16000
FRAME = 512  #: samples per frame at 16 kHz
CONTEXT = 64  #: samples of the previous frame the ONNX model sees before each frame
STATE_SHAPE = (2, 128)  #: recurrent state per stream: ``[2, batch, 128]``


def silero_onnx_path() -> Path:
    """``silero_vad/data/silero_vad.onnx`` of the installed wheel (found without importing the package)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("silero-vad is not installed (pip install silero-vad==6.2.3; see requirements-runtime.txt)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "silero_vad.onnx"
    if not path.is_file():
        raise ModelError("silero-vad's ONNX model is missing from the installed package", path=str(path))
    return path


def use_onnx() -> bool:
    """Whether the VAD runs in ONNX Runtime (:func:`pipeline.backend.resolve` on torch and the wheel's model)."""
    return backend.resolve(("torch",), silero_onnx_path(), what="silero-vad") == "onnx"


class OnnxSilero:
    """The wheel's ONNX silero-vad, called like its TorchScript model but on numpy arrays.

    ``model(batch, 16000)`` with ``batch [shape=(streams, 512)]`` float32 returns the speech
    probability of each stream's frame, ``[shape=(streams, 1)]``; :meth:`reset_states` starts
    every stream afresh (zero state and context).
    """

    def __init__(self, path: str | Path | None = None) -> None:
        import onnxruntime as ort

        path = Path(path) if path is not None else silero_onnx_path()
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # silero's own setting: one frame per stream is a tiny graph
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(f"silero-vad's ONNX model does not load: {exc}", path=str(path)) from None
        self.reset_states()

    def reset_states(self) -> None:
        self._state: np.ndarray | None = None
        self._context: np.ndarray | None = None

    def __call__(self, batch: np.ndarray, sr: int) -> np.ndarray:
        if sr != SAMPLE_RATE:
            raise PredictionError(f"silero-vad here runs at {SAMPLE_RATE} Hz, got {sr}")
        batch = np.asarray(batch, np.float32)
        n = batch.shape[0]
        if self._state is None or self._state.shape[1] != n:
            self._state = np.zeros((STATE_SHAPE[0], n, STATE_SHAPE[1]), np.float32)
            self._context = np.zeros((n, CONTEXT), np.float32)
        x = np.concatenate([self._context, batch], axis=1)
        out, self._state = self.session.run(None, {"input": x, "state": self._state,
                                                   "sr": np.array(SAMPLE_RATE, np.int64)})
        self._context = x[:, -CONTEXT:]
        return out


def speech_timestamps_from_probs(probs: list[float], *, sampling_rate: int = SAMPLE_RATE, threshold: float = 0.5,
                                 min_speech_duration_ms: int = 250, min_silence_duration_ms: int = 100,
                                 speech_pad_ms: int = 30, audio_length_samples: int | None = None) -> list[dict]:
    """silero's ``get_speech_timestamps_from_probs`` without a maximum region length.

    Args:
        probs: one speech probability per 512-sample frame.
        audio_length_samples: samples of the signal (default ``len(probs) * 512``).

    Returns:
        ``[{"start": sample, "end": sample}, ...]``, time-ordered, in samples at ``sampling_rate``.
    """
    if audio_length_samples is None:
        audio_length_samples = len(probs) * FRAME
    min_speech = sampling_rate * min_speech_duration_ms / 1000
    pad = sampling_rate * speech_pad_ms / 1000
    min_silence = sampling_rate * min_silence_duration_ms / 1000
    neg_threshold = max(threshold - 0.15, 0.01)
    speeches: list[dict] = []
    current: dict = {}
    triggered = False
    temp_end = 0
    for i, p in enumerate(probs):
        sample = FRAME * i
        if p >= threshold and temp_end:
            temp_end = 0
        if p >= threshold and not triggered:
            triggered = True
            current["start"] = sample
            continue
        if p < neg_threshold and triggered:
            if not temp_end:
                temp_end = sample
            if sample - temp_end < min_silence:
                continue
            current["end"] = temp_end
            if current["end"] - current["start"] > min_speech:
                speeches.append(current)
            current, temp_end, triggered = {}, 0, False
    if current and audio_length_samples - current["start"] > min_speech:
        current["end"] = audio_length_samples
        speeches.append(current)
    for i, speech in enumerate(speeches):
        if i == 0:
            speech["start"] = int(max(0, speech["start"] - pad))
        if i != len(speeches) - 1:
            gap = speeches[i + 1]["start"] - speech["end"]
            if gap < 2 * pad:
                speech["end"] += int(gap // 2)
                speeches[i + 1]["start"] = int(max(0, speeches[i + 1]["start"] - gap // 2))
            else:
                speech["end"] = int(min(audio_length_samples, speech["end"] + pad))
                speeches[i + 1]["start"] = int(max(0, speeches[i + 1]["start"] - pad))
        else:
            speech["end"] = int(min(audio_length_samples, speech["end"] + pad))
    return speeches
