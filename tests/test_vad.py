"""pipeline.vad: silero-vad streamed in batches, regions, and the long-turn splitter.

silero ignores synthetic harmonics (pipeline.testing.speech_like scores ~0.003), so speech here
is the repository's example clips (real RAVDESS speech, examples/README.md).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.testing import silence, white_noise
from pipeline.vad import (FRAME, SileroVad, SpeechRegion, VadConfig, regions_from_probabilities, silero_model_path,
                          split_long)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def example(name: str) -> np.ndarray:
    import soundfile as sf

    y, sr = sf.read(EXAMPLES / f"{name}.flac", dtype="float32")
    assert sr == 16000
    return y


@pytest.fixture(scope="module")
def vad() -> SileroVad:
    return SileroVad()


def test_model_comes_from_the_installed_wheel():
    path = silero_model_path()
    assert path.name == "silero_vad.jit" and path.parent.name == "data" and path.is_file()


def test_loading_keeps_the_callers_thread_count(vad):
    import torch

    before = torch.get_num_threads()
    vad.regions(np.concatenate([example("man_calm"), silence(0.5)]))
    assert torch.get_num_threads() == before


def test_finds_each_utterance_between_pauses(vad):
    gap = silence(1.0)
    y = np.concatenate([gap, example("man_calm"), gap, example("woman_sad"), gap])
    regions = vad.regions(y)
    assert len(regions) == 2
    first_end = 1.0 + 3.0
    assert 1.0 <= regions[0].start_s < regions[0].end_s <= first_end + 0.25
    assert first_end + 1.0 - 0.1 <= regions[1].start_s < regions[1].end_s <= y.size / 16000
    assert all(r.duration_s >= 1.0 for r in regions)


@pytest.mark.parametrize("signal", [silence(5.0), white_noise(5.0, peak=0.05), white_noise(5.0, peak=0.5)],
                         ids=["silence", "quiet-noise", "loud-noise"])
def test_no_speech_in_silence_or_noise(vad, signal):
    assert vad.segments(signal) == []


def test_batched_streams_match_one_stream(vad):
    clips = [example(n) for n in ("man_calm", "woman_angry", "man_sad", "woman_sad")]
    y = np.concatenate([part for _ in range(14) for c in clips for part in (c, silence(0.7))])  # ~4 minutes
    one = SileroVad(VadConfig(streams=1)).probabilities(y)
    many = vad.probabilities(y)  # 4 pieces of 60 s side by side, each after 8 s of warm-up
    assert many.shape == one.shape == (int(np.ceil(y.size / FRAME)),)
    assert np.mean((many > 0.5) == (one > 0.5)) > 0.98
    assert len(vad.regions(y)) == pytest.approx(len(regions_from_probabilities(one, y.size)), abs=2)


def test_empty_and_multichannel_input(vad):
    from pipeline.errors import AudioError

    assert vad.probabilities(np.zeros(0, np.float32)).shape == (0,)
    with pytest.raises(AudioError):
        vad.probabilities(np.zeros((2, 1000), np.float32))


def test_split_long_caps_every_piece():
    rng = np.random.default_rng(0)
    y = rng.standard_normal(16000 * 40).astype(np.float32) * 0.1
    y[int(16000 * 7.4):int(16000 * 7.5)] = 0.0  # a quiet spot near the even cut (7.15 s) that the cut should prefer
    config = VadConfig()
    regions = [SpeechRegion(0.5, 3.0), SpeechRegion(4.0, 10.3), SpeechRegion(10.5, 39.0), SpeechRegion(39.2, 39.9)]
    pieces = split_long(regions, y, config)
    assert pieces[0] == regions[0] and pieces[-1] == regions[-1]
    for p in pieces[1:-1]:
        assert config.min_piece_s - 1e-9 <= p.duration_s <= config.max_segment_s + 1e-9
    # contiguous and covering: nothing lost
    assert sum(p.duration_s for p in pieces) == pytest.approx(sum(r.duration_s for r in regions))
    assert all(a.end_s == pytest.approx(b.start_s) or b.start_s > a.end_s for a, b in zip(pieces, pieces[1:]))
    assert any(abs(p.end_s - 7.45) < 0.05 for p in pieces)  # the 4.0-10.3 s turn is cut at the quiet spot


def test_segments_of_a_long_turn_are_split(vad):
    y = np.concatenate([example(n) for n in ("man_calm", "man_happy", "man_sad")] * 2)  # ~18 s, short pauses
    for seg in vad.segments(y):
        assert seg.duration_s <= VadConfig().max_segment_s + 1e-9
