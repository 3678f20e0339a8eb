"""training.gender_conditions (the degraded copies of a clip and the gender robustness table) and the
gender calibration of the evaluation (training.stats.binary_reliability, training.evaluate.gender_calibration).

Codec outputs are cut or zero-padded to the input length, so every condition returns exactly
``len(y)`` samples; the codecs' own decoded length is checked to be within 20 ms (320 samples) of it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.testing import (
    SR,
    speech_like,
    white_noise,
    with_silence_padding,
    write_audio,
)
from training.gender_conditions import (
    CONDITIONS,
    apply_condition,
    codec_roundtrip,
    score_conditions,
)
from training.noise import make_babble, speech_power


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    """1.5 s of voice-like sound between 0.3 s of silence, float32 at 16 kHz."""
    return with_silence_padding(speech_like(1.5, f0=140.0, seed=3), SR, 0.3, 0.3)


@pytest.fixture(scope="module")
def babble() -> np.ndarray:
    talkers = [speech_like(2.0, f0=f0, seed=k) for k, f0 in enumerate((110.0, 130.0, 210.0, 240.0))]
    return make_babble(talkers, seconds=4.0, seed=1)


@pytest.mark.parametrize("condition", CONDITIONS)
def test_condition_keeps_rate_length_and_is_deterministic(condition, clip, babble):
    out = apply_condition(clip, condition, seed=5, babble=babble)
    assert out.dtype == np.float32 and out.shape == clip.shape and np.all(np.isfinite(out))
    assert np.array_equal(out, apply_condition(clip, condition, seed=5, babble=babble))
    if condition == "clean":
        assert np.array_equal(out, clip)
    else:
        assert not np.array_equal(out, clip)
    if condition.endswith("_10db"):  # the seed picks the noise
        assert not np.array_equal(out, apply_condition(clip, condition, seed=6, babble=babble))


@pytest.mark.parametrize("condition", ["mp3_32k", "opus_16k"])
def test_codecs_decode_to_about_the_input_length_and_keep_the_signal(condition, clip):
    raw = codec_roundtrip(clip, condition)
    assert abs(raw.size - clip.size) <= 320
    from pipeline.testing import align_and_correlate

    assert align_and_correlate(apply_condition(clip, condition), clip, max_lag=400) > 0.9


def test_pcm_u8_has_at_most_256_levels_within_one_step(clip):
    out = apply_condition(clip, "pcm_u8")
    assert np.unique(out).size <= 256
    assert np.max(np.abs(out - clip)) <= 1 / 128 + 1e-6


def test_telephone_has_no_energy_above_4_khz_and_passes_the_band():
    noise = white_noise(2.0, seed=2)
    out = apply_condition(noise, "telephone_8k")
    power = np.abs(np.fft.rfft(out.astype(np.float64) * np.hanning(out.size))) ** 2  # Hann: no leakage from the ends
    freqs = np.fft.rfftfreq(out.size, 1 / SR)
    assert power[freqs > 4000].sum() < 1e-10 * power.sum()
    assert power[freqs < 150].sum() < 1e-3 * power.sum()  # the 300 Hz high-pass
    from pipeline.testing import tone

    y = tone(1000.0, 1.0)
    z = apply_condition(y, "telephone_8k")
    assert np.std(z[4000:-4000]) == pytest.approx(np.std(y), rel=0.05)


@pytest.mark.parametrize("condition", ["pink_10db", "babble_10db"])
def test_noise_reaches_10_db_against_the_speech(condition, clip, babble):
    out = apply_condition(clip, condition, seed=0, babble=babble)
    noise = out.astype(np.float64) - clip
    assert 10 * np.log10(speech_power(clip) / np.mean(noise**2)) == pytest.approx(10.0, abs=0.05)


def test_unknown_condition_and_missing_babble_are_refused(clip):
    with pytest.raises(ValueError, match="unknown condition"):
        apply_condition(clip, "am_radio")
    with pytest.raises(ValueError, match="babble"):
        apply_condition(clip, "babble_10db")


class HighBandGender:
    """Fake gender model with a known answer: female when over 1% of the energy lies above 4.5 kHz."""

    def predict_proba_batch(self, signals):
        out = []
        for y in signals:
            power = np.abs(np.fft.rfft(np.asarray(y, dtype=np.float64))) ** 2
            female = power[np.fft.rfftfreq(len(y), 1 / SR) > 4500].sum() > 0.01 * power.sum()
            out.append([0.0, 1.0] if female else [1.0, 0.0])
        return np.array(out)


def test_score_conditions_known_answer(tmp_path):
    """A broadband 'female' clip loses its high band on the telephone; a voice-like 'male' clip keeps its answer;
    a silent clip is left out of every condition."""
    from training.corpus import Utterance

    def row(name: str, y: np.ndarray, gender: str, corpus: str) -> Utterance:
        path = Path(write_audio(tmp_path / f"{name}.wav", y, SR))
        return Utterance(path, corpus, f"{corpus}_1", gender, "", "", "en", "test", y.size / SR)

    rows = [row("hiss", white_noise(1.0, seed=1), "female", "a"), row("voice", speech_like(1.0), "male", "b"),
            row("silent", np.zeros(SR, dtype=np.float32), "male", "b")]
    table = score_conditions(HighBandGender(), rows, conditions=("telephone_8k", "pcm_u8"))
    assert list(table.scores) == ["clean", "telephone_8k", "pcm_u8"]
    clean, phone, u8 = (table.scores[c] for c in table.scores)
    assert (clean.n, clean.correct, clean.flipped, clean.failed) == (2, 2, 0, 0)
    assert (phone.n, phone.correct, phone.flipped, phone.failed) == (2, 1, 1, 0)
    assert (u8.correct, u8.flipped) == (2, 0)
    assert table.change_pts("telephone_8k") == pytest.approx(-50.0)
    assert table.change_pts("telephone_8k", "a") == pytest.approx(-100.0)
    assert table.change_pts("telephone_8k", "b") == pytest.approx(0.0)
    d = table.to_dict()
    assert d["telephone_8k"]["accuracy"] == 0.5 and d["telephone_8k"]["flipped"] == 0.5
    assert d["telephone_8k"]["per_corpus"] == {"a": {"n": 1, "accuracy": 0.0, "change_pts": -100.0},
                                               "b": {"n": 1, "accuracy": 1.0, "change_pts": 0.0}}
    from training.metrics_report import _robustness_rows

    text = "\n".join(_robustness_rows({"split": "test", "target_pts": 2.0, "conditions": d}))
    assert "| 8 kHz, 300-3400 Hz band | 2 | 50.0% | -50.0 pts | 50.0% | 0.0% | 100.0% |" in text


def test_binary_ece_known_answer_and_sklearn_agrees():
    from sklearn.calibration import calibration_curve

    from training.stats import binary_reliability, reliability

    p = np.array([0.05, 0.05, 0.95, 0.95, 0.75, 0.75, 0.75, 0.75])
    female = np.array([0, 0, 1, 1, 1, 1, 1, 0], dtype=bool)
    r = binary_reliability(p, female)
    # bins (0, .1]: P 0.05, none female; (.9, 1]: P 0.95, all female; (.7, .8]: P 0.75, 3 of 4 female
    assert r.count.tolist() == [2, 0, 0, 0, 0, 0, 0, 4, 0, 2]
    assert r.ece == pytest.approx((2 * 0.05 + 4 * 0.0 + 2 * 0.05) / 8)
    observed, predicted = calibration_curve(female, p, n_bins=10)
    filled = r.count > 0
    assert np.allclose(observed, r.accuracy[filled]) and np.allclose(predicted, r.confidence[filled])
    # top-label: four answers at 0.95 all right (gap 0.05), four at 0.75 three right (gap 0)
    top = reliability(np.stack([1 - p, p], axis=1), female.astype(int))
    assert top.ece == pytest.approx(4 * 0.05 / 8)


def test_gender_calibration_of_a_predictions_frame():
    import pandas as pd

    from training.evaluate import gender_calibration
    from training.metrics_report import _calibration_lines

    p = [0.05, 0.05, 0.95, 0.95, 0.75, 0.75, 0.75, 0.75, 0.5]
    frame = pd.DataFrame({"status": ["ok"] * 8 + ["error"], "p_female": p,
                          "gender": ["male", "male", "female", "female", "female", "female", "female", "male", "male"],
                          "corpus": ["x"] * 4 + ["y"] * 5})
    c = gender_calibration(frame, training_corpora=["x"])
    assert c["n"] == 8 and c["p_female"]["ece"] == pytest.approx(0.025)
    assert c["p_female"]["bins"][7] == {"low": 0.7, "high": 0.8, "n": 4, "mean_p_female": 0.75, "share_female": 0.75}
    assert c["p_female"]["bins"][5]["mean_p_female"] is None
    assert c["seen_corpora"] == {"n": 4, "p_female_ece": pytest.approx(0.05), "top_label_ece": pytest.approx(0.05)}
    text = "\n".join(_calibration_lines(c))
    assert "**0.025**" in text and "| 0.7-0.8 | 4 | 0.750 | 75.0% |" in text and "| 0.4-0.5 | 0 | – | – |" in text


def test_study_babble_speakers_are_not_in_the_test_split(shared_data):
    from training.corpus import read_manifest
    from training.gender_conditions import study_babble

    manifest = read_manifest()
    test = [u for u in manifest if u.split == "test"]
    babble = study_babble(manifest, scored=test, seconds=2.0)
    assert babble.shape == (2 * SR,) and babble.dtype == np.float32
    with pytest.raises(ValueError, match="among the scored speakers"):
        study_babble(manifest, scored=[u for u in manifest if u.corpus == "librispeech" and u.split == "train"])
