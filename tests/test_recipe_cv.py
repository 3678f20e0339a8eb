"""studies.recipe_cv: speaker folds, accuracy curves, epoch choice, and a tiny end-to-end run."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="needs the full profile: the emotion trainer")

from training.corpus import Utterance
from pipeline.emotion import EMOTION_LABELS, configure_tensorflow
from studies.recipe_cv.study import Curve, best_epoch, curve, run_folds, speaker_folds, to_markdown
from training.emotion_train import Split, TrainConfig


def _utterances(n_per_speaker: int = 16) -> list[Utterance]:
    rows = []
    for corpus, n_speakers in (("alpha", 6), ("beta", 6)):
        for s in range(n_speakers):
            gender = "male" if s % 2 else "female"
            for i in range(n_per_speaker):
                emotion = EMOTION_LABELS[i % len(EMOTION_LABELS)]
                rows.append(Utterance(Path(f"{corpus}/{s}/{i}.wav"), corpus, f"{corpus}_{s}", gender, emotion,
                                      "", "en", "train", 2.0))
    return rows


def _features(utterances: list[Utterance], seed: int, n_features: int = 24) -> Split:
    rng = np.random.default_rng(seed)
    y = np.array([EMOTION_LABELS.index(u.emotion) for u in utterances])
    X = rng.normal(0, 1, (len(y), n_features)).astype(np.float32)
    X[np.arange(len(y)), y] += 2.5  # emotion k raises feature k
    return Split(X=X, y=y, utterances=list(utterances))


def test_speaker_folds_keep_speakers_together_and_spread_strata():
    rows = _utterances()
    fold = speaker_folds(rows, 3, seed=0)
    assert set(fold) == {0, 1, 2}
    by_speaker: dict[str, set] = {}
    for u, f in zip(rows, fold):
        by_speaker.setdefault(u.speaker, set()).add(int(f))
    assert all(len(f) == 1 for f in by_speaker.values())
    for k in range(3):  # 3 speakers per corpus x gender stratum: one in each fold
        strata = {(u.corpus, u.gender) for u, f in zip(rows, fold) if f == k}
        assert strata == {("alpha", "male"), ("alpha", "female"), ("beta", "male"), ("beta", "female")}


def test_curve_known_answer():
    rows = _utterances(2)[:4]  # alpha_0 (female): neutral, calm; alpha_1 (male): neutral, calm
    rows[2] = Utterance(rows[2].path, "beta", "beta_9", "male", "neutral", "", "en", "train", 1.0)
    truth = np.array([EMOTION_LABELS.index(u.emotion) for u in rows])
    wrong = (truth + 1) % len(EMOTION_LABELS)
    predictions = np.stack([wrong, np.array([truth[0], wrong[1], truth[2], truth[3]])])
    c = curve(predictions, rows)
    assert c.overall == [0.0, 0.75]
    assert c.per_corpus["alpha"] == pytest.approx([0.0, 2 / 3], abs=1e-4)
    assert c.per_corpus["beta"] == [0.0, 1.0]
    assert c.balanced[1] == pytest.approx((2 / 3 + 1.0) / 2, abs=1e-4)
    assert c.per_gender["female"] == [0.0, 0.5]
    assert c.at(2)["corpus/beta"] == 1.0


def test_best_epoch_prefers_a_plateau_to_a_single_spike():
    values = [0.1, 0.9, 0.1, 0.6, 0.6, 0.6]
    c = Curve(first_epoch=1, overall=values, balanced=values, per_corpus={}, per_gender={})
    assert best_epoch(c, width=1) == 2
    assert best_epoch(c, width=3) == 5
    shifted = Curve(first_epoch=0, overall=values, balanced=values, per_corpus={}, per_gender={})
    assert best_epoch(shifted, width=3) == 4  # epoch 0 = before fine-tuning


def test_run_folds_end_to_end_on_learnable_synthetic_features():
    configure_tensorflow(1)
    rows = _utterances()
    clean = _features(rows, seed=0)
    copies = [_features(rows, seed=1)]
    config = TrainConfig(batch_size=32, learning_rate=3e-3, finetune_learning_rate=1e-3, dropout=0.1)
    report = run_folds(clean, copies, config, n_folds=3, max_epochs=6, max_finetune_epochs=2, verbose=False)

    assert sorted(s for f in report["folds"] for s in f) == sorted({u.speaker for u in rows})
    pre, fine = report["pretrain"], report["finetune"]
    assert len(pre["curve"]["overall"]) == 6 and 1 <= pre["chosen_epochs"] <= 6
    assert len(fine["curve"]["overall"]) == 3 and 0 <= fine["chosen_epochs"] <= 2
    # epoch 0 of fine-tuning is the pre-trained network at the chosen epoch
    assert fine["curve"]["overall"][0] == pre["curve"]["overall"][pre["chosen_epochs"] - 1]
    assert pre["at_chosen"]["overall"] > 0.5  # every clip scored by a network that never saw its speaker; chance 0.125
    assert "(chosen)" in to_markdown(report)
