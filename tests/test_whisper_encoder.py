"""Whisper tiny.en's encoder: strict loading, the front end against OpenAI's, parity with CTranslate2."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch", reason="needs the full profile: the Whisper encoder's conversion")
import torch

from emotion_encoder.convert import read_ct2
from emotion_encoder.make_golden import GOLDEN, golden_signals
from pipeline.errors import ModelError, TooShortError
from pipeline.whisper_encoder import (
    MAX_FRAMES,
    N_STATES,
    WEIGHTS_PATH,
    EncoderRunner,
    EncoderStates,
    WhisperEncoder,
    ct2_names,
    load_encoder,
    log_mel,
    mel_filters,
    sinusoids,
)

SR = 16000


@pytest.fixture(scope="module")
def runner() -> EncoderRunner:
    return EncoderRunner()


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN) as data:
        return dict(data)


def test_shipped_weights_fill_every_parameter_bit_for_bit_in_float16():
    from safetensors.torch import load_file

    stored = load_file(str(WEIGHTS_PATH))
    expected = WhisperEncoder().state_dict()
    assert set(stored) == set(expected) == set(ct2_names().values())
    assert sum(t.numel() for t in stored.values()) == 8_209_920
    for key, tensor in expected.items():
        assert stored[key].shape == tensor.shape and stored[key].dtype == torch.float16, key
    model = load_encoder()
    assert not model.training
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, stored[key].float()), key


def test_stored_positions_are_whispers_sinusoids():
    from safetensors.torch import load_file

    stored = load_file(str(WEIGHTS_PATH))["positions"].float()
    assert torch.allclose(stored, sinusoids(MAX_FRAMES // 2, 384), atol=1e-3)  # float16 rounding


def test_mel_filters_are_slaney_80_by_201_and_cover_the_band():
    filters = mel_filters()
    assert filters.shape == (80, 201) and filters.dtype == np.float32
    assert (filters >= 0).all() and (filters.sum(axis=1) > 0).all()
    peaks = filters.argmax(axis=1)
    assert (np.diff(peaks) >= 0).all() and peaks[0] <= 2 and peaks[-1] >= 180


@pytest.mark.parametrize("name", ["vowel", "chirp", "burst"])
def test_log_mel_matches_openai_whisper(golden, name):
    ours = log_mel(golden_signals()[name])
    reference = golden[f"mel_{name}"]
    assert ours.shape == reference.shape == (80, golden_signals()[name].size // 160)
    np.testing.assert_allclose(ours, reference, atol=2e-5)


def test_log_mel_known_values_for_silence_and_a_tone():
    silent = log_mel(np.zeros(SR, dtype=np.float32))
    np.testing.assert_allclose(silent, (-10.0 + 4.0) / 4.0)  # log10 floor of 1e-10, scaled
    t = np.arange(SR) / SR
    tone = log_mel((0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32))
    assert tone.max() - tone.min() == pytest.approx(2.0, abs=1e-5)  # clipped at 8 below the maximum, / 4
    band = int(np.argmax(tone[:, 50]))
    centre_hz = np.argmax(mel_filters()[band]) * SR / 400
    assert abs(centre_hz - 1000) < 120


def test_too_short_input_is_refused():
    with pytest.raises(TooShortError):
        log_mel(np.zeros(100, dtype=np.float32))


@pytest.mark.parametrize("name", ["vowel", "chirp", "burst"])
def test_encoder_matches_ctranslate2(runner, golden, name):
    mels = torch.from_numpy(golden[f"mel_{name}"])[None]
    with torch.inference_mode():
        states = runner.model(mels)[:, 0].numpy()
    reference = golden[f"encoded_{name}"]
    assert states.shape == (N_STATES, reference.shape[0], 384)
    np.testing.assert_allclose(states[-1], reference, atol=1e-3)
    assert np.abs(states[-1] - reference).mean() < 1e-4


def test_states_and_pooling_shapes(runner):
    y = golden_signals()["vowel"]
    states = runner.states(y)
    assert states.states.shape == (N_STATES, 80, 384) and states.states.dtype == np.float32
    both = states.pooled([4], "mean_std")
    assert both.shape == (768,)
    np.testing.assert_allclose(both[:384], states.states[4].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(both[384:], states.states[4].std(axis=0), rtol=1e-5)
    assert states.pooled(range(5), "mean").shape == (5 * 384,)
    with pytest.raises(ValueError):
        states.pooled([4], "max")


def test_clips_over_thirty_seconds_are_encoded_in_windows(runner):
    rng = np.random.default_rng(0)
    y = (0.1 * rng.standard_normal(31 * SR)).astype(np.float32)
    states = runner.states(y)
    assert states.states.shape == (N_STATES, 1500 + 50, 384)
    assert np.isfinite(states.states).all()


def test_missing_or_wrong_weights_raise_model_error(tmp_path):
    with pytest.raises(ModelError, match="missing"):
        load_encoder(tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="could not be read"):
        load_encoder(bad)
    from safetensors.torch import save_file

    partial = tmp_path / "partial.safetensors"
    save_file({"conv1.weight": torch.zeros(384, 80, 3)}, str(partial))
    with pytest.raises(ModelError, match="does not hold"):
        load_encoder(partial)


def test_ct2_parser_reads_what_ctranslate2_writes():
    import struct

    def string(text: str) -> bytes:
        return struct.pack("<H", len(text) + 1) + text.encode() + b"\0"

    weights = np.arange(6, dtype=np.float16).reshape(2, 3)
    blob = (struct.pack("<I", 6) + string("WhisperSpec") + struct.pack("<I", 3) + struct.pack("<I", 1)
            + string("encoder/x") + struct.pack("<B", 2) + struct.pack("<II", 2, 3) + struct.pack("<B", 4)
            + struct.pack("<I", weights.nbytes) + weights.tobytes() + struct.pack("<I", 0))
    header, variables = read_ct2(blob)
    assert header == {"version": "6", "spec": "WhisperSpec", "revision": "3"}
    np.testing.assert_array_equal(variables["encoder/x"], weights)


def test_encoder_states_dataclass_pools_every_layer_in_order():
    states = EncoderStates(np.stack([np.full((4, 384), float(i), np.float32) for i in range(N_STATES)]))
    pooled = states.pooled(range(N_STATES), "mean_std").reshape(N_STATES, 768)
    np.testing.assert_array_equal(pooled[:, 0], np.arange(N_STATES))
    np.testing.assert_array_equal(pooled[:, 384:], 0.0)
