"""Export every shipped network to ONNX, beside its weights, with a card and a parity check.

Usage (full install; from the project root)::

    python -m training.export_onnx                 # all five networks, and tests/data/onnx_golden.npz
    python -m training.export_onnx --only gender   # one family: gender, ge2e, whisper, emotion

Writes, for each network, ``<stem>.onnx`` and its card ``<stem>.onnx.json``
(:class:`pipeline.backend.OnnxSpec`: opset, input/output names and shapes with their dynamic
axes, the sha256 of the weights exported, library versions, and the maximum absolute
difference from the original network measured here on inputs of several lengths):

==========================  ======================================  =========================================
network                     export                                  graph
==========================  ======================================  =========================================
gender ECAPA-TDNN           ``gender_model/model.onnx``             log-mel ``[batch, 80, frames]`` -> logits
GE2E speaker encoder        ``speaker_encoder/ge2e.onnx``           power mel ``[batch, frames, 40]`` -> unit vectors
Whisper tiny.en encoder     ``emotion_encoder/whisper_tiny_en_      log-mel ``[batch, 80, frames]`` -> 5 hidden
                            encoder.onnx``                          states ``[5, batch, ceil(frames/2), 384]``
emotion CNNs                ``{male_models,female_models,           standardised rows -> 8 probabilities
                            pooled_model}/model.onnx``
==========================  ======================================  =========================================

The spectrogram front ends are not in the graphs (:mod:`pipeline.frontends`). The torch
networks go through ``torch.onnx.export`` (the TorchScript exporter, ``dynamo=False``); the
Keras CNNs through :mod:`training.keras_onnx`. The Whisper export keeps its weights in
float16, as the shipped safetensors do (each is cast to float32 inside the graph, exactly
what the native loader does). Also writes ``tests/data/onnx_golden.npz``: fixed inputs and
the original networks' outputs, which ``tests/test_onnx_parity.py`` checks the exports
against, with or without torch and TensorFlow installed.
"""
from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np

from pipeline.backend import OnnxSpec, TensorSpec, file_sha256, spec_path
from pipeline.paths import PROJECT_ROOT

OPSET = 17
GOLDEN = PROJECT_ROOT / "tests" / "data" / "onnx_golden.npz"
FAMILIES = ("gender", "ge2e", "whisper", "emotion")
EMOTION_DIRS = ("male_models", "female_models", "pooled_model")


def versions() -> dict[str, str]:
    """Versions of the libraries an export depends on."""
    out = {}
    for name in ("torch", "tensorflow-cpu", "keras", "onnx", "onnxruntime", "numpy"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return out


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _max_diff(path: Path, reference: Callable[..., np.ndarray], cases: list[tuple[np.ndarray, ...]]) -> float:
    """Largest absolute difference between ``reference(*case)`` and the export's first output."""
    session = _session(path)
    names = [i.name for i in session.get_inputs()]
    worst = 0.0
    for case in cases:
        ours = session.run(None, dict(zip(names, case)))[0]
        theirs = reference(*case)
        if ours.shape != theirs.shape:
            raise RuntimeError(f"{path}: export gives shape {ours.shape}, the original {theirs.shape}")
        worst = max(worst, float(np.max(np.abs(ours - theirs))))
    return worst


def _write_card(path: Path, *, network: str, source: Path, inputs, outputs, front_end: str, max_diff: float,
                checked_on: str) -> OnnxSpec:
    spec = OnnxSpec(network=network, source=source.name, source_sha256=file_sha256(source), opset=OPSET,
                    inputs=tuple(inputs), outputs=tuple(outputs), front_end=front_end, versions=versions(),
                    parity={"max_abs_diff": float(f"{max_diff:.3g}"), "checked_on": checked_on})
    spec_path(path).write_text(json.dumps(spec.to_dict(), indent=2) + "\n", encoding="utf-8")
    return spec


def _torch_export(module, example, path: Path, inputs: list[str], outputs: list[str], axes: dict) -> None:
    import torch

    module = module.eval()
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(module, example, str(path), dynamo=False, opset_version=OPSET, input_names=inputs,
                          output_names=outputs, dynamic_axes=axes, do_constant_folding=True)


def _torch_reference(module) -> Callable[..., np.ndarray]:
    import torch

    def run(*arrays: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(*(torch.from_numpy(a) for a in arrays)).float().numpy()

    return run


# ------------------------------------------------------------------------------------ networks


def export_gender(folder: Path = PROJECT_ROOT / "gender_model") -> tuple[OnnxSpec, dict]:
    """The ECAPA-TDNN of ``folder`` from its log-mel input (the front end stays in numpy)."""
    import torch

    from pipeline.frontends import ecapa_log_mel
    from pipeline.gender import _load_network
    from speaker_encoder.make_golden import voice

    network = _load_network(folder, is_local=True, device="cpu").eval()

    class FromFeatures(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.network = network

        def forward(self, features):
            return self.network.forward_features(features)

    module = FromFeatures().eval()
    path = folder / "model.onnx"
    _torch_export(module, (torch.zeros(1, 80, 200),), path, ["features"], ["logits"],
                  {"features": {0: "batch", 2: "frames"}, "logits": {0: "batch"}})
    rng = np.random.default_rng(0)
    cases = [(rng.standard_normal((b, 80, t)).astype(np.float32),) for b, t in ((1, 26), (3, 301), (2, 1501))]
    golden_features = ecapa_log_mel(voice(110.0, 1.0, 1.0, 1)[None])
    cases.append((golden_features,))
    reference = _torch_reference(module)
    spec = _write_card(path, network="ecapa-gender", source=folder / "model.safetensors",
                       inputs=[TensorSpec("features", ("batch", 80, "frames"))],
                       outputs=[TensorSpec("logits", ("batch", 2))],
                       front_end="pipeline.frontends.ecapa_log_mel: waveform [batch, samples] 16 kHz -> "
                                 "mean-normalised log-mel [batch, 80, 1 + samples // 160]; logits index 0 male, 1 female",
                       max_diff=_max_diff(path, reference, cases),
                       checked_on="random log-mel of 26, 301 and 1501 frames (batches 1-3) and a 1 s synthetic vowel")
    return spec, {"ecapa_features": golden_features, "ecapa_logits": reference(golden_features)}


def export_ge2e() -> tuple[OnnxSpec, dict]:
    """The GE2E LSTM from its power-mel partials (the front end is librosa's already)."""
    import torch

    from pipeline.speaker_encoder import PARTIAL_FRAMES, WEIGHTS_PATH, _partial_mels, load_ge2e
    from speaker_encoder.make_golden import golden_clips

    module = load_ge2e(WEIGHTS_PATH).eval()
    path = WEIGHTS_PATH.with_suffix(".onnx")
    _torch_export(module, (torch.zeros(2, PARTIAL_FRAMES, 40),), path, ["mels"], ["embeddings"],
                  {"mels": {0: "batch", 1: "frames"}, "embeddings": {0: "batch"}})
    clip = next(iter(golden_clips().values()))
    golden_mels = _partial_mels(clip, rate=1.3, min_coverage=0.75)[0][:2]
    rng = np.random.default_rng(1)
    cases = [(golden_mels,), (np.abs(rng.standard_normal((5, PARTIAL_FRAMES, 40))).astype(np.float32),),
             (np.abs(rng.standard_normal((1, 40, 40))).astype(np.float32),)]
    reference = _torch_reference(module)
    spec = _write_card(path, network="ge2e", source=WEIGHTS_PATH,
                       inputs=[TensorSpec("mels", ("batch", "frames", 40))],
                       outputs=[TensorSpec("embeddings", ("batch", 256))],
                       front_end="pipeline.speaker_encoder.mel_frames (librosa power mel, 40 bands); the runtime "
                                 "feeds 160-frame partials; embeddings are unit vectors",
                       max_diff=_max_diff(path, reference, cases),
                       checked_on="partials of a synthetic voice, random mels of 160 (batch 5) and 40 frames")
    return spec, {"ge2e_mels": golden_mels, "ge2e_embeddings": reference(golden_mels)}


def _weights_to_float16(path: Path) -> int:
    """Store every float32 initializer that float16 holds exactly as float16 plus a Cast; returns how many."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    casts, kept, converted = [], [], 0
    for init in model.graph.initializer:
        value = numpy_helper.to_array(init)
        if value.dtype == np.float32 and value.size >= 16 and np.array_equal(value.astype(np.float16).astype(np.float32), value):
            half = numpy_helper.from_array(value.astype(np.float16), init.name + "_fp16")
            kept.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT, name=init.name + "_cast"))
            converted += 1
        else:
            kept.append(init)
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    nodes = casts + list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return converted


def export_whisper() -> tuple[OnnxSpec, dict]:
    """Whisper tiny.en's encoder from its log-mel input; every hidden state out; float16 weights."""
    import torch

    from emotion_encoder.make_golden import golden_signals
    from pipeline.whisper_encoder import WEIGHTS_PATH, load_encoder, log_mel

    module = load_encoder(WEIGHTS_PATH).eval()
    path = WEIGHTS_PATH.with_suffix(".onnx")
    _torch_export(module, (torch.zeros(1, 80, 200),), path, ["mels"], ["states"],
                  {"mels": {0: "batch", 2: "frames"}, "states": {1: "batch", 2: "positions"}})
    _weights_to_float16(path)
    golden_mels = log_mel(golden_signals()["burst"])[None]
    rng = np.random.default_rng(2)
    cases = [(golden_mels,), (rng.uniform(-1, 1, (1, 80, 3000)).astype(np.float32),),
             (rng.uniform(-1, 1, (2, 80, 301)).astype(np.float32),), (rng.uniform(-1, 1, (1, 80, 2)).astype(np.float32),)]
    reference = _torch_reference(module)
    spec = _write_card(path, network="whisper-tiny-en-encoder", source=WEIGHTS_PATH,
                       inputs=[TensorSpec("mels", ("batch", 80, "frames"))],
                       outputs=[TensorSpec("states", (5, "batch", "positions", 384))],
                       front_end="pipeline.frontends.whisper_log_mel: 16 kHz clip -> log-mel [80, n // 160], unpadded; "
                                 "frames <= 3000 per call (positions = ceil(frames / 2)); weights stored as float16",
                       max_diff=_max_diff(path, reference, cases),
                       checked_on="a synthetic burst's log-mel, random log-mels of 3000 (30 s), 301 (batch 2) and 2 frames")
    return spec, {"whisper_mels": golden_mels, "whisper_states": reference(golden_mels)}


def export_emotion(folder: Path) -> tuple[OnnxSpec, dict]:
    """An emotion folder's Keras network, from its standardised input rows (the scalers stay in scikit-learn)."""
    import onnx

    from pipeline.emotion import EmotionModel, _input_shapes
    from training.keras_onnx import keras_to_onnx

    loaded = EmotionModel.load(folder)
    model = loaded.model
    path = folder / "model.onnx"
    onnx.save(keras_to_onnx(model, opset=OPSET), str(path))
    shapes = _input_shapes(loaded.config)
    names = [t.name for t in model.inputs]
    rng = np.random.default_rng(3)

    def rows(n: int) -> tuple[np.ndarray, ...]:
        return tuple(rng.standard_normal((n, s[0])).astype(np.float32) for s in shapes)

    def reference(*arrays: np.ndarray) -> np.ndarray:
        return np.asarray(model(list(arrays) if len(arrays) > 1 else arrays[0], training=False), np.float32)

    golden = rows(2)
    spec = _write_card(path, network="emotion-cnn", source=folder / "model.keras",
                       inputs=[TensorSpec(n, ("batch", s[0])) for n, s in zip(names, shapes)],
                       outputs=[TensorSpec("probabilities", ("batch", len(loaded.config.labels)))],
                       front_end="pipeline.emotion.model_inputs: raw rows standardised by scaler.joblib "
                                 "(and encoder_scaler.joblib); output columns in config.json's label order",
                       max_diff=_max_diff(path, reference, [rows(1), rows(7), golden]),
                       checked_on="standard-normal rows, batches of 1, 2 and 7")
    key = folder.name
    return spec, {f"{key}_{n}": a for n, a in zip(names, golden)} | {f"{key}_probabilities": reference(*golden)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=FAMILIES, action="append", help="export only these (repeatable)")
    parser.add_argument("--no-golden", action="store_true", help="leave tests/data/onnx_golden.npz as it is")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    families = args.only or list(FAMILIES)
    golden: dict[str, np.ndarray] = {}
    if GOLDEN.is_file():
        with np.load(GOLDEN) as old:
            golden.update({k: old[k] for k in old.files})
    jobs: list[tuple[str, Callable[[], tuple[OnnxSpec, dict]]]] = []
    if "gender" in families:
        jobs.append(("gender_model", export_gender))
    if "ge2e" in families:
        jobs.append(("speaker_encoder", export_ge2e))
    if "whisper" in families:
        jobs.append(("emotion_encoder", export_whisper))
    if "emotion" in families:
        jobs += [(name, lambda name=name: export_emotion(PROJECT_ROOT / name)) for name in EMOTION_DIRS]
    for label, job in jobs:
        spec, arrays = job()
        golden.update(arrays)
        onnx_file = PROJECT_ROOT / label / (spec.source.rsplit(".", 1)[0] + ".onnx" if label in
                                            ("speaker_encoder", "emotion_encoder") else "model.onnx")
        print(f"{label}: {onnx_file.name} {onnx_file.stat().st_size / 1e6:.1f} MB, opset {spec.opset}, "
              f"max |ONNX - original| = {spec.parity['max_abs_diff']:.2g}")
    if not args.no_golden:
        np.savez(GOLDEN, **golden)
        print(f"golden inputs and outputs -> {GOLDEN.relative_to(PROJECT_ROOT)} ({GOLDEN.stat().st_size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
