"""The GE2E speaker encoder: strict loading, parity with resemblyzer, known answers, edge cases."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch", reason="needs the full profile: the GE2E network against its ONNX export and golden outputs")
import torch

from pipeline.errors import AudioError, ModelError, NonFiniteAudioError, PipelineError, SilentAudioError, TooShortError
from pipeline.speaker_encoder import (
    PARTIAL_FRAMES,
    WEIGHTS_PATH,
    GE2EEncoder,
    SpeakerEncoder,
    load_ge2e,
    partial_starts,
)
from speaker_encoder.make_golden import GOLDEN, golden_clips, voice

SR = 16000


@pytest.fixture(scope="module")
def encoder() -> SpeakerEncoder:
    return SpeakerEncoder()


def test_shipped_weights_fill_every_parameter_with_the_right_shape():
    from safetensors.torch import load_file

    stored = load_file(str(WEIGHTS_PATH))
    expected = GE2EEncoder().state_dict()
    assert set(stored) == set(expected) and len(stored) == 14
    for key, tensor in expected.items():
        assert stored[key].shape == tensor.shape and stored[key].dtype == torch.float32, key
    assert stored["lstm.weight_ih_l0"].shape == (1024, 40)
    assert stored["linear.weight"].shape == (256, 256)
    model = load_ge2e()
    assert not model.training
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, stored[key]), key


def test_missing_weights_raise_model_error_naming_the_file(tmp_path):
    missing = tmp_path / "nowhere.safetensors"
    with pytest.raises(ModelError, match="nowhere.safetensors"):
        load_ge2e(missing)


def test_garbage_file_raises_model_error_naming_the_file(tmp_path):
    bad = tmp_path / "garbage.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ModelError, match="garbage.safetensors"):
        load_ge2e(bad)


@pytest.mark.parametrize("change", ["drop", "extra", "reshape"])
def test_mismatched_weights_raise_model_error_naming_the_file(tmp_path, change):
    from safetensors.torch import load_file, save_file

    state = load_file(str(WEIGHTS_PATH))
    if change == "drop":
        del state["linear.bias"]
    elif change == "extra":
        state["similarity_weight"] = torch.ones(1)
    else:
        state["linear.weight"] = torch.zeros(128, 256)
    path = tmp_path / f"{change}.safetensors"
    save_file(state, str(path))
    with pytest.raises(ModelError, match=f"{change}.safetensors.*do not match"):
        load_ge2e(path)


def test_matches_resemblyzer_golden_embeddings(encoder):
    golden = np.load(GOLDEN)
    clips = golden_clips()
    ours_many = encoder.embed_many([clips[name] for name in golden["names"]])
    for row, (name, reference, n_partials) in enumerate(zip(golden["names"], golden["embeddings"],
                                                             golden["n_partials"])):
        ours = encoder.embed(clips[name])
        assert len(ours.partials) == n_partials, name
        assert float(ours.vector @ reference) > 1 - 1e-4, name
        assert float(ours_many[row] @ reference) > 1 - 1e-4, name


def test_same_voice_is_closer_than_another_voice(encoder):
    a, b = encoder.embed_many([voice(110.0, 1.0, 3.0, 10), voice(110.0, 1.0, 2.5, 11)])
    other = encoder.embed_utterance(voice(220.0, 1.18, 3.0, 12))
    assert float(a @ b) > 0.95
    assert float(a @ b) > float(a @ other) + 0.1


def test_embeddings_are_unit_vectors_with_nonnegative_entries(encoder):
    e = encoder.embed_utterance(voice(160.0, 1.08, 4.0, 5))
    assert e.shape == (256,) and e.dtype == np.float32
    assert abs(float(np.linalg.norm(e)) - 1.0) < 1e-5
    assert float(e.min()) >= 0.0


def test_quiet_input_is_raised_to_the_same_level(encoder):
    y = voice(140.0, 1.0, 2.0, 6)
    quiet, quieter = encoder.embed_many([0.01 * y, 0.002 * y])
    assert float(quiet @ quieter) > 1 - 1e-5


def test_partials_follow_resemblyzer_scheme():
    assert partial_starts(4 * SR) == [0, 77, 154, 231]  # the 5th would be 57% real audio: dropped
    assert partial_starts(3 * SR) == [0, 77, 154]
    assert partial_starts(SR // 2) == [0]
    assert PARTIAL_FRAMES == 160


def test_half_second_clip_is_padded_to_one_partial(encoder):
    short = encoder.embed(voice(110.0, 1.0, 0.5, 7))
    assert short.partials.shape == (1, 256) and short.starts_s == (0.0,)
    assert abs(float(np.linalg.norm(short.vector)) - 1.0) < 1e-5


@pytest.mark.parametrize("signal, error", [
    (np.zeros(100, np.float32), TooShortError),
    (np.zeros(SR, np.float32), SilentAudioError),
    (np.full(SR, np.nan, np.float32), NonFiniteAudioError),
    (np.zeros((SR, 2), np.float32), AudioError),
])
def test_unusable_input_raises_a_pipeline_error(encoder, signal, error):
    with pytest.raises(error) as caught:
        encoder.embed_utterance(signal)
    assert isinstance(caught.value, PipelineError)
    with pytest.raises(error):
        encoder.embed_many([voice(110.0, 1.0, 1.0, 8), signal])


def test_embed_many_of_nothing_is_empty(encoder):
    assert encoder.embed_many([]).shape == (0, 256)
