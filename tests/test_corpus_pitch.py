"""Voice pitch per corpus and gender (studies.corpus_pitch): known answers on synthetic voices."""
from __future__ import annotations

from pathlib import Path

import pytest

from training.pitch import clip_median_f0
from studies.corpus_pitch.study import sample_rows, summarise, to_markdown
from training.corpus import Utterance
from pipeline.testing import speech_like
from training.testing import SYNTHETIC_GENDER_RECIPE


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
    text = to_markdown([male, female], command="python -m studies.corpus_pitch --out x")
    assert "| a | male | 3 | 3 | 120 Hz | 110-160 Hz | 33% |" in text


def test_side_accuracy_known_answer():
    from studies.corpus_pitch.study import side_accuracy

    rows = [_u("a", f"m{i}", "male") for i in range(4)] + [_u("a", "f0", "female"), _u("b", "f1", "female")]
    f0 = [100.0, 120.0, 200.0, 220.0, 150.0, 250.0]
    # the model calls high men female and the low woman male; corpus b was not scored (None)
    predicted = ["male", "male", "female", "male", "male", None]
    (women, men) = side_accuracy("m", rows, f0, predicted)  # sorted by (corpus, gender)
    assert (men.corpus, men.gender, men.usual_n, men.usual_correct, men.other_n, men.other_correct) == \
        ("a", "male", 2, 2, 2, 1)
    assert (women.gender, women.usual_n, women.other_n, women.other_correct) == ("female", 0, 1, 0)
    text = to_markdown([], command="x", sides=[men, women])
    assert "| `m` | a | male | 100% (2/2) | 50% (1/2) |" in text and "| `m` | a | female | – | 0% (0/1) |" in text


def test_main_refuses_a_model_that_saw_every_corpus(tmp_path):
    from studies.corpus_pitch.study import main
    from pipeline.testing import make_gender_model

    model = make_gender_model(tmp_path / "g", female_logit=2.0)
    assert main(["--out", str(tmp_path / "r"), "--models", str(model)]) == 2
    assert main(["--out", str(tmp_path / "r"), "--clips", "0"]) == 2
    assert not (tmp_path / "r.md").exists()


@pytest.mark.parametrize("f0", [110.0, 240.0])
def test_fast_median_f0_of_a_synthetic_voice(f0):
    from training.pitch import fast_median_f0

    assert fast_median_f0(speech_like(1.5, f0=f0, seed=3)) == pytest.approx(f0, rel=0.04)


def test_pitch_balance_known_answer():
    import numpy as np

    from training.gender_batches import pitch_balance

    w = np.array([1 / 8] * 4 + [1 / 4] * 2)  # genders already half of the mass each
    genders = ["male"] * 4 + ["female"] * 2
    f0 = [100.0, 100.0, 100.0, 200.0, 220.0, None]
    flat = pitch_balance(w, f0, genders, power=1.0)
    # men: the 200 Hz clip (one bin alone) weighs as much as the three 100 Hz clips together
    np.testing.assert_allclose(flat[:4], [1 / 12, 1 / 12, 1 / 12, 1 / 4])
    np.testing.assert_allclose(flat[4:], [1 / 4, 1 / 4])   # one woman without F0 keeps her share
    np.testing.assert_allclose(pitch_balance(w, f0, genders, power=0.0), w)
    half = pitch_balance(w, f0, genders, power=0.5)
    assert half[3] / half[0] == pytest.approx(3 ** 0.5) and half.sum() == pytest.approx(1.0)


def test_train_gender_with_pitch_balance(tmp_path, two_corpora_env):
    from studies.gender_robustness.study import describe
    from training.gender_train import train_gender
    from pipeline.testing import TINY_GENDER_WIDTHS as TINY_WIDTHS

    meta = train_gender(tmp_path / "m", **SYNTHETIC_GENDER_RECIPE, epochs=1, samples_per_epoch=16, batch_size=8, widths=TINY_WIDTHS,
                        speed_factors=(1.0,), evaluate_test=False, pitch_balance_power=0.5)
    assert meta["training"]["pitch_balance_power"] == 0.5 and "F0 bin" in meta["training"]["sampling"]
    assert describe(str(tmp_path / "m"))["pitch balance"] == "power 0.5"


def test_write_report_writes_json_and_markdown(tmp_path):
    import json

    from training.reporting import write_report

    md = write_report(tmp_path / "sub" / "r", {"a": [1, 2]}, "# R\n", command="python -m x --y 1")
    assert md == tmp_path / "sub" / "r.md" and md.read_text() == "# R\n"
    data = json.loads((tmp_path / "sub" / "r.json").read_text())
    assert data["a"] == [1, 2] and data["run"]["command"] == "python -m x --y 1"
