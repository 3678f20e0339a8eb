"""training.stats: speaker bootstrap, calibration and grouped permutation importance, with known answers."""
from __future__ import annotations

import numpy as np
import pytest

from training.stats import accuracy_difference, group_permutation_importance, reliability, speaker_bootstrap


def test_bootstrap_of_a_constant_is_degenerate():
    groups = np.repeat(["a", "b", "c"], 4)
    iv = speaker_bootstrap(groups, lambda idx: 0.25, n_boot=50)
    assert (iv.estimate, iv.low, iv.high, iv.n_groups) == (0.25, 0.25, 0.25, 3)


def test_bootstrap_resamples_speakers_not_clips():
    # Speaker a: 100 clips all right; speaker b: 1 clip wrong. Clip-level accuracy ~0.99, but a
    # speaker-level resample drawing b twice holds 2 wrong of 2 clips: accuracy 0.
    groups = np.array(["a"] * 100 + ["b"])
    correct = np.array([1.0] * 100 + [0.0])
    iv = speaker_bootstrap(groups, lambda idx: float(correct[idx].mean()), n_boot=400, seed=1)
    assert iv.estimate == pytest.approx(100 / 101)
    assert iv.low == pytest.approx(0.0)  # some resamples are b, b
    assert iv.high == pytest.approx(1.0)  # some are a, a


def test_accuracy_difference_sign_and_pairing():
    y = np.array(["x", "y"] * 20)
    better = y.copy()
    worse = np.where(np.arange(40) % 4 == 0, "z", y)  # 10 of 40 wrong
    iv = accuracy_difference(y, better, worse, np.repeat(np.arange(8), 5).astype(str), n_boot=200)
    assert iv.estimate == pytest.approx(0.25)
    assert 0 < iv.low <= iv.estimate <= iv.high
    same = accuracy_difference(y, worse, worse, np.repeat(np.arange(8), 5).astype(str), n_boot=50)
    assert (same.estimate, same.low, same.high) == (0.0, 0.0, 0.0)


def test_reliability_known_answer():
    # Two bins: confidence 0.95 with 1 of 2 right (gap 0.45), confidence 0.55 with 2 of 2 right (gap 0.45).
    p = np.array([[0.95, 0.05], [0.95, 0.05], [0.45, 0.55], [0.45, 0.55]])
    y = np.array([0, 1, 1, 1])
    r = reliability(p, y, n_bins=10)
    assert r.count.sum() == 4 and r.count[9] == 2 and r.count[5] == 2
    assert r.accuracy[9] == pytest.approx(0.5) and r.confidence[5] == pytest.approx(0.55)
    assert r.ece == pytest.approx(0.45)


def test_reliability_of_calibrated_probabilities_is_small():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.5, 1.0, 20000)
    y = (rng.uniform(size=confidence.size) > confidence).astype(int)  # class 0 right with prob = confidence
    p = np.stack([confidence, 1 - confidence], axis=1)
    assert reliability(p, y).ece < 0.02
    overconfident = np.stack([np.full_like(confidence, 0.99), np.full_like(confidence, 0.01)], axis=1)
    assert reliability(overconfident, y).ece > 0.2


def test_group_permutation_importance_finds_the_used_group():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 6))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)

    def predict(features):
        return (features[:, 0] + features[:, 1] > 0).astype(int)

    out = group_permutation_importance(predict, X, y, {"used": [0, 1], "unused": [2, 3, 4, 5]}, n_repeats=3)
    assert out["unused"] == (0.0, 0.0)
    assert 0.35 < out["used"][0] < 0.65  # shuffling both columns leaves chance accuracy


def test_gender_metrics_interval_is_over_speakers():
    """One speaker all wrong, three all right: 75% with an interval that spans what resampling speakers can give."""
    import pandas as pd

    from training.evaluate import gender_metrics
    from training.metrics_report import headline

    speakers = np.repeat(["a", "b", "c", "d"], 10)
    truth = np.repeat(["male", "female", "male", "female"], 10)
    pred = truth.copy()
    pred[:10] = "female"  # speaker a is always wrong
    frame = pd.DataFrame({"status": "ok", "speaker": speakers, "gender": truth, "pred_gender": pred,
                          "corpus": "x", "language": "en", "emotion": "", "path": [f"{i}.wav" for i in range(40)],
                          "p_female": np.where(pred == "female", 0.9, 0.1)})
    g = gender_metrics(frame)
    assert g["overall"]["accuracy"] == 0.75 and len(g["errors"]) == 10
    iv = g["overall_interval"]
    assert iv["n_groups"] == 4 and iv["estimate"] == 0.75
    assert 0.25 <= iv["low"] < 0.75 < iv["high"] <= 1.0  # speaker-level resampling: accuracy moves in 25% steps
    metrics = {"gender": g, "emotion": {}}
    assert "bootstrap interval over the 4 test speakers" in headline(metrics)
