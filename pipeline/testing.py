"""Fakes for tests: synthetic speech-like audio and tiny models with known answers.

Public, like ``audonnx.testing``: the project's tests and anyone checking code that
uses :class:`pipeline.Cascade` can build inputs and models whose answers are known
without the shipped models or the shared corpus::

    from pipeline.testing import make_emotion_model, make_gender_model, speech_like

    gender = make_gender_model(tmp / "gender", female_logit=4.0)        # always female, p=0.982
    male = make_emotion_model(tmp / "male", name="male", favourite="sad")
    female = make_emotion_model(tmp / "female", name="female", favourite="angry")
    Cascade.load(gender, male_dir=male, female_dir=female).predict_signal(speech_like(2.0), 16000)

Signals are deterministic for a given ``seed``; all are float32 ``[shape=(n,)]`` with ``n``
samples at ``sr`` Hz unless said otherwise. Heavy libraries (torch, TensorFlow,
scikit-learn, soundfile) are imported inside the functions that need them.
Nothing in the runtime imports this module.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

__all__ = [
    "SR",
    "TINY_GENDER_WIDTHS",
    "speech_like",
    "voiced_signal",
    "tone",
    "silence",
    "white_noise",
    "with_silence_padding",
    "write_audio",
    "dominant_frequency",
    "align_and_correlate",
    "make_gender_model",
    "make_emotion_model",
]

SR = 16000
"""Sample rate of the models, Hz; the default of every signal below."""

TINY_GENDER_WIDTHS = {"C": 16, "mfa_channels": 24, "attention_channels": 8, "embedding_dim": 8}
"""Widths of a tiny :class:`~pipeline.ecapa.ECAPAGender` (the shipped model uses C=1024): fast to build and train."""


# --------------------------------------------------------------------------- signals


def speech_like(duration_s: float = 2.0, *, sr: int = SR, f0: float = 150.0, seed: int = 0) -> np.ndarray:
    """A voice-like harmonic complex, float32 ``[shape=(int(duration_s * sr),)]``, absolute peak 0.5.

    Ten harmonics of ``f0`` Hz (amplitude 1/k, zero phase) with a 3 Hz vibrato of +-5 %,
    a 4 Hz syllable-like amplitude envelope (between 0.1 and 1) and seeded white noise
    (standard deviation 0.003 before scaling, about 60 dB below the peak). Passes the
    pipeline's speech checks; its median F0 is ``f0`` Hz. :func:`voiced_signal` is the
    configurable variant (formant-like weighting, random phases, every parameter a knob).
    """
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration_s * sr)) / sr
    inst_f0 = f0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(inst_f0) / sr
    y = sum(np.sin(k * phase) / k for k in range(1, 11))
    envelope = 0.5 * (1 - np.cos(2 * np.pi * 4 * t)) * 0.9 + 0.1
    y = y * envelope + 0.003 * rng.standard_normal(t.size)
    return (0.5 * y / np.max(np.abs(y))).astype(np.float32)


def voiced_signal(
    duration_s: float,
    sr: int = SR,
    f0: float = 150.0,
    seed: int = 0,
    *,
    n_harmonics: int = 10,
    vibrato_hz: float = 0.5,
    vibrato_depth: float = 0.01,
    syllable_hz: float = 4.0,
    am_depth: float = 0.6,
    peak: float = 0.5,
    noise_db: float = -50.0,
) -> np.ndarray:
    """A vowel-like harmonic complex, float32 ``[shape=(round(duration_s * sr),)]``; ``f0`` in Hz.

    * ``n_harmonics`` harmonics of ``f0`` (amplitude 1/k, with a gentle formant-like
      bump near 500 Hz and 1500 Hz), all below Nyquist;
    * slow F0 vibrato: ``f0 * (1 + vibrato_depth * sin(2 pi vibrato_hz t))``, so the
      median F0 stays ``f0``;
    * syllable-like amplitude modulation at ``syllable_hz``: envelope
      ``1 - am_depth * (1 + cos(2 pi syllable_hz t)) / 2`` (minimum ``1 - am_depth``);
    * a little seeded white noise ``noise_db`` below the peak;
    * scaled to an absolute peak of ``peak``.
    """
    n = int(round(duration_s * sr))
    if n <= 0:
        return np.zeros(0, dtype=np.float32)
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    inst_f0 = f0 * (1.0 + vibrato_depth * np.sin(2 * np.pi * vibrato_hz * t + rng.uniform(0, 2 * np.pi)))
    phase = 2 * np.pi * np.cumsum(inst_f0) / sr
    y = np.zeros(n, dtype=np.float64)
    for k in range(1, n_harmonics + 1):
        if k * f0 * (1 + vibrato_depth) >= sr / 2:
            break
        fk = k * f0
        formant = 1.0 + 1.5 * np.exp(-(((fk - 500.0) / 200.0) ** 2)) + 0.8 * np.exp(-(((fk - 1500.0) / 300.0) ** 2))
        y += (formant / k) * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    envelope = 1.0 - am_depth * (1.0 + np.cos(2 * np.pi * syllable_hz * t)) / 2.0
    y *= envelope
    y /= np.max(np.abs(y))
    y += 10 ** (noise_db / 20) * rng.standard_normal(n)
    y *= peak / np.max(np.abs(y))
    return y.astype(np.float32)


def tone(freq: float, duration_s: float, sr: int = SR, *, amplitude: float = 0.5, phase: float = 0.0) -> np.ndarray:
    """A pure sine, float32 ``[shape=(round(duration_s * sr),)]``."""
    n = int(round(duration_s * sr))
    t = np.arange(n) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


def silence(duration_s: float, sr: int = SR) -> np.ndarray:
    """Digital silence (zeros), float32."""
    return np.zeros(int(round(duration_s * sr)), dtype=np.float32)


def white_noise(duration_s: float, sr: int = SR, *, peak: float = 0.5, seed: int = 0) -> np.ndarray:
    """Seeded Gaussian white noise scaled to an absolute peak of ``peak``, float32."""
    n = int(round(duration_s * sr))
    y = np.random.default_rng(seed).standard_normal(n)
    if n:
        y *= peak / np.max(np.abs(y))
    return y.astype(np.float32)


def with_silence_padding(y: np.ndarray, sr: int, lead_s: float, trail_s: float) -> np.ndarray:
    """``y`` with ``lead_s`` seconds of zeros before and ``trail_s`` after (same dtype, channels on axis 1)."""
    y = np.asarray(y)
    lead = int(round(lead_s * sr))
    trail = int(round(trail_s * sr))
    pad = [(lead, trail)] + [(0, 0)] * (y.ndim - 1)
    return np.pad(y, pad)


def write_audio(path, y: np.ndarray, sr: int, *, subtype: str | None = None, format: str | None = None) -> str:
    """Write ``y`` (``(n,)`` or ``(n, channels)``) with soundfile; returns the path as ``str``.

    ``subtype``: 'PCM_U8', 'PCM_16', 'PCM_24', 'PCM_32', 'FLOAT', 'VORBIS',
    'MPEG_LAYER_III', ...; ``format``: 'WAV', 'FLAC', 'OGG', 'MP3' (default: from the
    extension, which may be missing or misleading when ``format`` is given).
    """
    import soundfile as sf

    path = os.fspath(path)
    if format is None:
        ext = os.path.splitext(path)[1].lstrip(".").upper()
        format = {"OGA": "OGG", "OPUS": "OGG"}.get(ext, ext) or None
    if subtype is None and format is not None:
        subtype = {"OGG": "VORBIS", "MP3": "MPEG_LAYER_III"}.get(format.upper())
    with open(path, "wb") as handle:
        sf.write(handle, np.asarray(y), sr, subtype=subtype, format=format)
    return path


def dominant_frequency(y: np.ndarray, sr: int) -> float:
    """Frequency (Hz) of the largest FFT magnitude bin of a Hann-windowed ``y``."""
    y = np.asarray(y, dtype=np.float64)
    spectrum = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    spectrum[0] = 0.0
    return float(np.fft.rfftfreq(y.size, 1.0 / sr)[int(np.argmax(spectrum))])


def align_and_correlate(a: np.ndarray, b: np.ndarray, *, max_lag: int = 4000) -> float:
    """Peak normalised cross-correlation of ``a`` and ``b`` over lags in ``[-max_lag, max_lag]``."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    n = max(a.size, b.size)
    size = 1 << int(np.ceil(np.log2(2 * n)))
    xc = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size)), size)
    lags = np.r_[xc[: max_lag + 1], xc[-max_lag:]] if max_lag > 0 else xc[:1]
    return float(np.max(lags) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


# --------------------------------------------------------------------------- tiny models


def make_gender_model(folder: str | os.PathLike, *, female_logit: float) -> Path:
    """Save a tiny gender model whose answer ignores the input; returns ``Path(folder)``.

    An untrained :class:`~pipeline.ecapa.ECAPAGender` of :data:`TINY_GENDER_WIDTHS` whose
    last layer has zero weights and biases ``[0, female_logit]``: for every signal
    ``predict_proba`` is ``softmax([0, female_logit])`` = ``[p_male, p_female]``
    (``female_logit=4.0``: female, p=0.982; ``-4.0``: male; ``0.0``: 50/50).
    The folder (``config.json``, ``model.safetensors``) loads with
    :meth:`pipeline.gender.GenderClassifier.load`. Where the ``onnx`` package is installed the
    folder also gets a ``model.onnx`` with the same answer (:func:`write_constant_onnx`); without
    torch (the runtime profile) it gets only that and ``config.json``.
    """
    from pipeline.backend import installed

    folder = Path(folder)
    if installed("onnx"):
        folder.mkdir(parents=True, exist_ok=True)
        write_constant_onnx(folder / "model.onnx", inputs={"features": 80}, logits=[0.0, female_logit],
                            network="fake-gender", source="model.safetensors", softmax=False, feature_axis_3d=True)
    if not installed("torch"):
        (folder / "config.json").write_text(json.dumps(TINY_GENDER_WIDTHS) + "\n", encoding="utf-8")
        return folder
    import torch

    from pipeline.ecapa import ECAPAGender

    torch.manual_seed(0)
    model = ECAPAGender(**TINY_GENDER_WIDTHS)
    with torch.no_grad():
        model.fc7.weight.zero_()
        model.fc7.bias.copy_(torch.tensor([0.0, female_logit]))
    model.eval()
    model.save_pretrained(folder)
    _seal(folder / "model.onnx")
    return folder


def make_emotion_model(folder: str | os.PathLike, *, name: str, favourite: str, strength: float = 4.0,
                       encoder=None) -> Path:
    """Save an emotion model whose answer ignores the input; returns ``Path(folder)``.

    The project's CNN (:func:`pipeline.emotion.build_cnn`, untrained) with a zero output
    kernel and output bias ``strength`` for ``favourite``, 0 for the other labels: every
    clip gets ``softmax(bias)`` over :data:`pipeline.emotion.EMOTION_LABELS` (8 labels,
    ``strength=4``: ``favourite`` at p=0.886). ``name`` ("male" / "female") is written to
    ``config.json``; the folder loads with :meth:`pipeline.emotion.EmotionModel.load`.
    ``encoder`` (a :class:`pipeline.emotion.EncoderInput`): the model also reads the speech
    encoder's states (a second input branch and an encoder scaler), so a cascade with it runs
    the encoder. Where the ``onnx`` package is installed the folder also gets a ``model.onnx`` with the
    same answer (:func:`write_constant_onnx`); without TensorFlow (the runtime profile) it gets only
    that, the scaler(s) and ``config.json``.
    """
    from sklearn.preprocessing import StandardScaler

    from pipeline.audio import DEFAULT_AUDIO_CONFIG
    from pipeline.backend import installed
    from pipeline.emotion import EMOTION_LABELS, EmotionModel, EmotionModelConfig, build_cnn
    from pipeline.features import DEFAULT_FEATURE_CONFIG, feature_names

    folder = Path(folder)
    n = len(feature_names(DEFAULT_FEATURE_CONFIG))
    bias = np.zeros(len(EMOTION_LABELS), np.float32)
    bias[EMOTION_LABELS.index(favourite)] = strength
    if installed("onnx"):
        folder.mkdir(parents=True, exist_ok=True)
        widths = {} if encoder is not None and encoder.combine == "encoder_only" else {"features": n}
        write_constant_onnx(folder / "model.onnx", inputs=widths | ({"encoder": encoder.dim} if encoder else {}),
                            logits=list(bias), network="fake-emotion", source="model.keras", softmax=True)
    net = None
    if installed("tensorflow") and installed("keras"):
        net = build_cnn(n, seed=1, encoder=encoder)
        last = net.get_layer("emotion")
        kernel, _ = last.get_weights()
        last.set_weights([np.zeros_like(kernel), bias])
    scaler = StandardScaler().fit(np.random.default_rng(0).standard_normal((32, n)))
    encoder_scaler = None
    if encoder is not None:
        encoder_scaler = StandardScaler().fit(np.random.default_rng(1).standard_normal((32, encoder.dim)))
    config = EmotionModelConfig(
        name=name, labels=EMOTION_LABELS, feature_config=DEFAULT_FEATURE_CONFIG,
        audio_config=DEFAULT_AUDIO_CONFIG, sample_rate=SR, n_features=n, encoder=encoder,
    )
    if net is None:  # the runtime profile: the ONNX twin, the scalers and the config only
        import joblib

        joblib.dump(scaler, folder / "scaler.joblib")
        if encoder_scaler is not None:
            joblib.dump(encoder_scaler, folder / "encoder_scaler.joblib")
        (folder / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n", encoding="utf-8")
        return folder
    EmotionModel(net, scaler, config, encoder_scaler=encoder_scaler).save(folder)
    _seal(folder / "model.onnx")
    return folder


def _seal(onnx_file: Path) -> None:
    """Record in a fake export's card the hash of the weights saved beside it since, so it is not stale."""
    from pipeline.backend import OnnxSpec, file_sha256, spec_path

    card = spec_path(onnx_file)
    if not card.is_file():
        return
    spec = OnnxSpec.from_dict(json.loads(card.read_text(encoding="utf-8")))
    source = onnx_file.parent / spec.source
    if source.is_file():
        sealed = {**spec.to_dict(), "source_sha256": file_sha256(source)}
        card.write_text(json.dumps(sealed, indent=2) + "\n", encoding="utf-8")


def write_constant_onnx(path: str | os.PathLike, *, inputs: dict[str, int], logits: list[float], network: str,
                        source: str, softmax: bool, feature_axis_3d: bool = False) -> Path:
    """An ONNX graph (and its card) whose output ignores its inputs: ``logits`` (or their softmax) per row.

    Args:
        inputs: name -> width of each float32 input, ``[batch, width]``, or ``[batch, width, frames]``
            with ``feature_axis_3d`` (the gender ECAPA's log-mel input).
        logits: the answer before the softmax, one per output column.
        network, source: written to the card (:class:`pipeline.backend.OnnxSpec`); ``source`` names
            weights that need not exist (no stale check then).

    Needs the ``onnx`` package (the full profile, or ``make test-runtime``'s test extras).
    """
    from onnx import TensorProto, helper, numpy_helper

    from pipeline.backend import OnnxSpec, TensorSpec, spec_path

    path = Path(path)
    nodes, inits, zero_rows = [], [numpy_helper.from_array(np.zeros(1, np.float32), "zero")], []
    for name in inputs:
        axes = [1, 2] if feature_axis_3d else [1]
        inits.append(numpy_helper.from_array(np.array(axes, np.int64), f"{name}_axes"))
        nodes.append(helper.make_node("ReduceSum", [name, f"{name}_axes"], [f"{name}_sum"], keepdims=0))
        nodes.append(helper.make_node("Mul", [f"{name}_sum", "zero"], [f"{name}_zero"]))
        zero_rows.append(f"{name}_zero")
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "column"))
    inits.append(numpy_helper.from_array(np.asarray([logits], np.float32), "logits_row"))
    nodes.append(helper.make_node("Sum", zero_rows, ["rows"]))
    nodes.append(helper.make_node("Unsqueeze", ["rows", "column"], ["rows_2d"]))
    output = "probabilities" if softmax else "logits"
    nodes.append(helper.make_node("Add", ["rows_2d", "logits_row"], [output + ("_raw" if softmax else "")]))
    if softmax:
        nodes.append(helper.make_node("Softmax", [output + "_raw"], [output], axis=-1))
    shape = (lambda w: ["batch", w, "frames"]) if feature_axis_3d else (lambda w: ["batch", w])
    graph = helper.make_graph(
        nodes, network, [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape(w)) for n, w in inputs.items()],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", len(logits)])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="pipeline.testing")
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    spec = OnnxSpec(network=network, source=source, source_sha256="", opset=17,
                    inputs=tuple(TensorSpec(n, tuple(shape(w))) for n, w in inputs.items()),
                    outputs=(TensorSpec(output, ("batch", len(logits))),), front_end="a test fake: the answer ignores the input")
    spec_path(path).write_text(json.dumps(spec.to_dict(), indent=2) + "\n", encoding="utf-8")
    return path
