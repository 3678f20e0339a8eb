"""The ONNX exports against the networks they came from, and the backend choice at model loading.

Each export is checked on the committed golden inputs (``tests/data/onnx_golden.npz``, written
by ``python -m training.export_onnx`` with the original networks' outputs), so these checks run
on the runtime install too (no torch, no TensorFlow). Maximum absolute differences measured at
export (the cards' ``parity``): ECAPA logits 1.8e-07, GE2E embeddings 2.8e-07, Whisper states
2.0e-04 (values up to 15; 2.5e-05 on speech-like input), emotion probabilities 1.2e-07. The numpy
front ends and the VAD are compared with their torch originals where torch is installed; the
whole cascade on test clips of the shared corpus where everything is.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline import backend
from pipeline.errors import ModelError

pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "data" / "onnx_golden.npz"
EXPORTS = {
    # export -> (golden input keys, golden output key, tolerance on the max abs difference)
    "gender_model/model.onnx": (["ecapa_features"], "ecapa_logits", 1e-5),
    "speaker_encoder/ge2e.onnx": (["ge2e_mels"], "ge2e_embeddings", 1e-5),
    "emotion_encoder/whisper_tiny_en_encoder.onnx": (["whisper_mels"], "whisper_states", 1e-4),
    "male_models/model.onnx": (["male_models_features", "male_models_encoder"], "male_models_probabilities", 1e-6),
    "female_models/model.onnx": (["female_models_features", "female_models_encoder"], "female_models_probabilities", 1e-6),
    "pooled_model/model.onnx": (["pooled_model_features", "pooled_model_encoder"], "pooled_model_probabilities", 1e-6),
}
HAS_TORCH = backend.installed("torch")
HAS_TF = backend.installed("tensorflow") and backend.installed("keras")
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed (runtime profile)")


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN) as data:
        return {k: data[k] for k in data.files}


@pytest.mark.parametrize("export", sorted(EXPORTS))
def test_export_matches_the_original_on_golden_inputs(export, golden):
    inputs, output, tolerance = EXPORTS[export]
    network = backend.OnnxNetwork(ROOT / export)
    ours = network.run(*(golden[k] for k in inputs))[0]
    assert ours.shape == golden[output].shape
    assert float(np.max(np.abs(ours - golden[output]))) < tolerance


@pytest.mark.parametrize("export", sorted(EXPORTS))
def test_cards_state_opset_shapes_and_are_current(export):
    path = ROOT / export
    card = json.loads(backend.spec_path(path).read_text(encoding="utf-8"))
    spec = backend.read_spec(path)
    assert spec.opset == card["opset"] == 17
    assert spec.source_sha256 == backend.file_sha256(path.parent / spec.source), "stale export: re-export"
    assert spec.parity["max_abs_diff"] <= EXPORTS[export][2] * 2
    assert {"onnx", "onnxruntime"} <= set(spec.versions)
    assert any(isinstance(d, str) for t in spec.inputs for d in t.shape), "a dynamic axis (batch at least)"


def test_whisper_export_runs_any_length_up_to_thirty_seconds():
    network = backend.OnnxNetwork(ROOT / "emotion_encoder" / "whisper_tiny_en_encoder.onnx")
    for frames in (2, 3, 301, 3000):
        states = network.run(np.zeros((1, 80, frames), np.float32))[0]
        assert states.shape == (5, 1, (frames + 1) // 2, 384)


def test_stale_export_is_refused(tmp_path):
    for name in ("model.onnx", "model.onnx.json"):
        (tmp_path / name).write_bytes((ROOT / "gender_model" / name).read_bytes())
    (tmp_path / "model.safetensors").write_bytes(b"retrained")
    with pytest.raises(ModelError, match="stale"):
        backend.OnnxNetwork(tmp_path / "model.onnx")


def test_missing_card_is_named(tmp_path):
    (tmp_path / "model.onnx").write_bytes((ROOT / "gender_model" / "model.onnx").read_bytes())
    with pytest.raises(ModelError, match="model.onnx.json"):
        backend.OnnxNetwork(tmp_path / "model.onnx")


# ----------------------------------------------------------------------------- front ends


def test_whisper_numpy_front_end_matches_openai_golden():
    from emotion_encoder.make_golden import GOLDEN as WHISPER_GOLDEN, golden_signals
    from pipeline.frontends import whisper_log_mel
    from pipeline.whisper_encoder import mel_filters

    with np.load(WHISPER_GOLDEN) as reference:
        for name, y in golden_signals().items():
            ours = whisper_log_mel(y, mel_filters())
            assert float(np.max(np.abs(ours - reference[f"mel_{name}"]))) < 1e-4, name


@needs_torch
def test_numpy_front_ends_match_the_torch_ones():
    import torch

    from pipeline.ecapa import LogMelFrontEnd
    from pipeline.frontends import ecapa_log_mel, whisper_log_mel
    from pipeline.whisper_encoder import log_mel, mel_filters
    from speaker_encoder.make_golden import golden_clips

    clips = list(golden_clips().values())
    for y in clips:
        torch_mel = LogMelFrontEnd()(torch.from_numpy(y)[None]).numpy()
        # float32 STFT rounding in torch: 1.5e-4 from a float64 reference on loud noise; ours is float64
        assert float(np.max(np.abs(ecapa_log_mel(y[None]) - torch_mel))) < 5e-4
        # measured 2.4e-05 (torch's float32 STFT again, in the quietest bands)
        assert float(np.max(np.abs(whisper_log_mel(y, mel_filters()) - log_mel(y)))) < 5e-5


@needs_torch
def test_network_constants_agree_between_the_torch_and_runtime_modules():
    from pipeline import ge2e_network, speaker_encoder, whisper_encoder, whisper_network

    for name in ("N_MELS", "WIDTH", "HEADS", "BLOCKS", "MLP_WIDTH", "MAX_FRAMES", "WEIGHTS_PATH"):
        assert getattr(whisper_network, name) == getattr(whisper_encoder, name), name
    for name in ("N_MELS", "EMBEDDING_DIM", "WEIGHTS_PATH"):
        assert getattr(ge2e_network, name) == getattr(speaker_encoder, name), name


# ----------------------------------------------------------------------------- VAD


def test_vad_regions_rule_port_on_known_probabilities():
    from pipeline.vad_onnx import speech_timestamps_from_probs

    probs = [0.1] * 10 + [0.9] * 20 + [0.1] * 30 + [0.8] * 5 + [0.45] * 3 + [0.9] * 10
    stamps = speech_timestamps_from_probs(probs, min_silence_duration_ms=250, audio_length_samples=len(probs) * 512)
    assert stamps == [{"start": 10 * 512 - 480, "end": 30 * 512 + 480}, {"start": 60 * 512 - 480, "end": 78 * 512}]


@needs_torch
def test_vad_onnx_matches_silero_torchscript():
    import soundfile as sf
    from silero_vad.utils_vad import get_speech_timestamps_from_probs

    from pipeline.vad import SileroVad
    from pipeline.vad_onnx import OnnxSilero, speech_timestamps_from_probs

    y = np.concatenate([sf.read(p, dtype="float32")[0] for p in sorted((ROOT / "examples").glob("*.flac"))] * 3)
    native = SileroVad()
    onnx = SileroVad()
    onnx.model = OnnxSilero()
    a, b = native.probabilities(y), onnx.probabilities(y)
    assert float(np.max(np.abs(a - b))) < 1e-4  # measured 1.1e-05 on 6 minutes of these clips in 5 streams
    rng = np.random.default_rng(0)
    for _ in range(100):
        probs = list(np.cumsum(rng.normal(0, 0.2, 300)) % 1.0)
        kwargs = dict(sampling_rate=16000, threshold=0.5, min_speech_duration_ms=250, min_silence_duration_ms=250,
                      speech_pad_ms=30, audio_length_samples=300 * 512 - int(rng.integers(0, 500)))
        assert speech_timestamps_from_probs(probs, **kwargs) == get_speech_timestamps_from_probs(probs, **kwargs)


# ----------------------------------------------------------------------------- backend choice


def test_unknown_backend_is_a_model_error(monkeypatch):
    monkeypatch.setenv(backend.BACKEND_ENV, "tensorrt")
    with pytest.raises(ModelError, match="SER_BACKEND"):
        backend.resolve(("torch",), ROOT / "gender_model" / "model.onnx", what="x")


def test_auto_falls_back_to_onnx_without_the_framework(monkeypatch):
    real = backend.installed
    monkeypatch.setattr(backend, "installed", lambda m: m not in ("torch", "tensorflow") and real(m))
    monkeypatch.delenv(backend.BACKEND_ENV, raising=False)
    assert backend.resolve(("torch",), ROOT / "gender_model" / "model.onnx", what="x") == "onnx"
    monkeypatch.setenv(backend.BACKEND_ENV, "native")
    with pytest.raises(ModelError, match="needs torch"):
        backend.resolve(("torch",), ROOT / "gender_model" / "model.onnx", what="x")


def test_auto_without_framework_or_export_names_both(monkeypatch, tmp_path):
    monkeypatch.setattr(backend, "installed", lambda m: False)
    monkeypatch.delenv(backend.BACKEND_ENV, raising=False)
    with pytest.raises(ModelError, match="torch not installed.*onnxruntime is not installed.*missing"):
        backend.resolve(("torch",), tmp_path / "model.onnx", what="the gender model")


def test_hub_id_without_torch_names_the_missing_packages(monkeypatch):
    from pipeline.gender import GenderClassifier

    real = backend.installed
    monkeypatch.setattr(backend, "installed", lambda m: m not in ("torch", "huggingface_hub") and real(m))
    with pytest.raises(ModelError, match="needs torch, huggingface_hub"):
        GenderClassifier.load("JaesungHuh/voice-gender-classifier")


def test_onnx_backend_loads_every_stage(monkeypatch):
    from pipeline.emotion import EmotionModel
    from pipeline.gender import GenderClassifier
    from pipeline.speaker_encoder import SpeakerEncoder

    monkeypatch.setenv(backend.BACKEND_ENV, "onnx")
    gender = GenderClassifier.load()
    assert gender.backend == "onnx" and gender.fusion is not None
    assert gender.encoder.backend == "onnx"
    assert EmotionModel.load(ROOT / "male_models").backend == "onnx"
    assert SpeakerEncoder().backend == "onnx"
    with pytest.raises(ModelError, match="CPU"):
        GenderClassifier.load(device="cuda")


def test_set_threads_reaches_onnx_sessions_without_importing_torch(monkeypatch):
    monkeypatch.setenv(backend.BACKEND_ENV, "onnx")
    monkeypatch.delenv(backend.THREADS_ENV, raising=False)
    before = "torch" in sys.modules
    backend.set_threads(1)
    assert os.environ[backend.THREADS_ENV] == "1" and backend.session_threads() == 1
    assert ("torch" in sys.modules) == before


BLOCKER = """
import sys
class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "torchaudio", "tensorflow", "keras", "speechbrain"}:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: runtime profile)", name=name)
        return None
sys.meta_path.insert(0, _Blocked())
"""


def _run_blocked(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != backend.BACKEND_ENV}
    return subprocess.run([sys.executable, "-c", BLOCKER + code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


def test_runtime_answers_without_torch_or_tensorflow(tmp_path):
    """As the runtime profile: torch, TensorFlow, Keras and SpeechBrain cannot be imported at all."""
    out, segments = tmp_path / "out.csv", tmp_path / "segments.csv"
    code = f"""
import sys
from pipeline import Cascade
prediction = Cascade.load().predict_file("examples/woman_angry.flac")
assert prediction.status == "ok" and prediction.gender == "female", prediction
import script
assert script.main(["examples/man_calm.flac", "-o", {str(out)!r}, "-q"]) == 0
assert script.main(["examples/man_sad.flac", "--segments", "-o", {str(segments)!r}, "-q"]) == 0
import app  # defines the page's helpers only
print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "tensorflow", "keras")))
"""
    done = _run_blocked(code, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert ",ok," in out.read_text() and ",ok," in segments.read_text()


@pytest.mark.skipif(not (HAS_TORCH and HAS_TF), reason="the original networks need torch and TensorFlow")
def test_whole_cascade_agrees_on_test_clips(shared_data):
    """Every 90th clip of the test split (30 clips, every corpus): same labels, probabilities within 1e-4."""
    from training.onnx_parity import compare, sample_clips

    report = compare(sample_clips(every=90))
    assert report.clips >= 25
    assert (report.status_differs, report.gender_differs, report.emotion_differs) == (0, 0, 0), report.summary()
    assert report.max_gender_diff < 1e-4 and report.max_emotion_diff < 1e-4, report.summary()
