"""Voice pitch per corpus and gender (pipeline.corpus_pitch): known answers on synthetic voices."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.corpus_pitch import clip_median_f0, sample_rows, summarise, to_markdown
from pipeline.data import Utterance
from tests.conftest import speech_like


@pytest.mark.parametrize("f0", [110.0, 220.0])
def test_clip_median_f0_of_a_synthetic_voice(f0):
    assert clip_median_f0(speech_like(1.5, f0=f0, seed=2)) == pytest.approx(f0, rel=0.04)


def test_clip_median_f0_of_silence_is_none():
    import numpy as np

    assert clip_median_f0(np.zeros(16000, dtype=np.float32)) is None


def _u(corpus, speaker, gender, i=0):
    return Utterance(Path(f"{speaker}_{i}.wav"), corpus, speaker, gender, "", "", "xx", "train", 1.0)


def test_sample_rows_round_robin_over_speakers():
    rows = [_u("a", "a_m1", "male", i) for i in range(10)] + [_u("a", "a_m2", "male", i) for i in range(2)] \
        + [_u("a", "a_f1", "female", i) for i in range(3)]
    picked = sample_rows(rows, 4, seed=1)
    male = [u.speaker for u in picked if u.gender == "male"]
    assert len(male) == 4 and male.count("a_m2") == 2   # the small speaker gives all it has before a_m1 fills up
    assert len([u for u in picked if u.gender == "female"]) == 3
    assert picked == sample_rows(rows, 4, seed=1)


def test_summarise_known_answer():
    rows = [_u("a", f"m{i}", "male") for i in range(4)] + [_u("a", f"f{i}", "female") for i in range(4)]
    f0 = [100.0, 120.0, 200.0, None, 150.0, 210.0, 230.0, 250.0]
    male, female = sorted(summarise(rows, f0), key=lambda g: g.gender == "female")
    assert male.clips == 3 and male.speakers == 3 and male.median_hz == 120.0
    assert male.wrong_side == pytest.approx(1 / 3)        # 200 Hz is above 165 Hz
    assert female.clips == 4 and female.wrong_side == pytest.approx(1 / 4)  # 150 Hz is below
    assert female.median_hz == pytest.approx(220.0)
    text = to_markdown([male, female], command="python -m pipeline.corpus_pitch --out x")
    assert "| a | male | 3 | 3 | 120 Hz | 110-160 Hz | 33% |" in text
