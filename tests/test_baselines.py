"""studies.baselines on synthetic features with known structure (no audio, no shared data)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from studies.baselines.study import Baseline, cluster_structure, run_classifiers, to_markdown
from training.corpus import Utterance
from training.dataset import FeatureTable

EMOTIONS = ("happy", "sad")


def synthetic_table(seed: int = 0) -> FeatureTable:
    """12 speakers per gender; feature 0 carries gender, feature 1 emotion, the rest noise."""
    rng = np.random.default_rng(seed)
    rows, X = [], []
    for gender in ("male", "female"):
        for s in range(12):
            split = "train" if s < 7 else ("val" if s < 9 else "test")
            speaker_offset = rng.normal(0, 0.3, 6)
            for k in range(10):
                emotion = EMOTIONS[k % 2]
                x = rng.normal(0, 1, 6) + speaker_offset
                x[0] += 4 if gender == "female" else -4
                x[1] += 3 if emotion == "happy" else -3
                X.append(x)
                rows.append(Utterance(Path(f"{gender}{s}_{k}.wav"), "synthetic", f"{gender}{s}", gender, emotion, "",
                                      "en", split, 1.0))
    return FeatureTable(X=np.asarray(X, dtype=np.float32), utterances=tuple(rows), ok=np.ones(len(rows), dtype=bool))


def test_classifiers_learn_the_synthetic_structure():
    grid = (Baseline("logistic regression", {"model__C": [0.1, 1.0]}), Baseline("KNN", {"model__n_neighbors": [5]}))
    results = run_classifiers(synthetic_table(), baselines=grid)
    for name in ("logistic regression", "KNN"):
        gender = results["gender"][name]
        assert gender["test"]["n"] == 2 * 3 * 10 and gender["test"]["accuracy"] > 0.97
        assert 0.9 < gender["cv_accuracy"] <= 1.0
        emotion = results["emotion"][name]
        assert emotion["routed_by_true_gender"]["all"]["n"] == 60
        assert emotion["routed_by_true_gender"]["all"]["accuracy"] > 0.9
        assert set(emotion) == {"male", "female", "routed_by_true_gender"}
    assert results["gender"]["logistic regression"]["best_params"]["C"] in (0.1, 1.0)


def test_grouped_cv_never_splits_a_speaker(monkeypatch):
    """Memorising speakers must not help: with speaker-specific labels CV accuracy stays at chance."""
    table = synthetic_table()
    rng = np.random.default_rng(1)
    X = rng.normal(0, 0.05, table.X.shape).astype(np.float32)
    speakers = sorted({u.speaker for u in table.utterances})
    label_of = {s: ("male", "female")[i % 2] for i, s in enumerate(speakers)}
    for i, u in enumerate(table.utterances):
        X[i, :3] += speakers.index(u.speaker)  # each speaker is its own tight cluster
    rows = tuple(Utterance(u.path, u.corpus, u.speaker, label_of[u.speaker], u.emotion, "", "en", u.split, 1.0)
                 for u in table.utterances)
    leaky = FeatureTable(X=X, utterances=rows, ok=table.ok)
    results = run_classifiers(leaky, baselines=(Baseline("KNN", {"model__n_neighbors": [1]}),))
    # With clip-level folds 1-NN would find the same speaker and score ~100%.
    assert results["gender"]["KNN"]["cv_accuracy"] < 0.75


def test_clustering_recovers_separated_groups():
    X = synthetic_table().X
    truth_gender = np.where(X[:, 0] > 0, "female", "male")
    projection, clusters = cluster_structure(X, {"gender": truth_gender}, counts=(2, 4))
    assert projection.shape == (X.shape[0], 2)
    assert {(c.algorithm, c.k) for c in clusters} == {(a, k) for a in ("k-means", "Gaussian mixture",
                                                                        "agglomerative (Ward)") for k in (2, 4)}
    for c in clusters:
        assert c.labels.shape == (X.shape[0],)
        assert -1 <= c.scores["silhouette"] <= 1 and c.scores["davies_bouldin"] > 0
        if c.k == 4:  # 2 genders x 2 emotions: every cluster is pure in gender
            assert c.scores["homogeneity_gender"] > 0.8


def test_report_renders():
    grid = (Baseline("logistic regression", {"model__C": [1.0]}),)
    table = synthetic_table()
    results = run_classifiers(table, baselines=grid)
    _, clusters = cluster_structure(table.X, {"gender": [u.gender for u in table.utterances],
                                              "emotion": [u.emotion for u in table.utterances]}, counts=(2,))
    text = to_markdown(results, clusters)
    assert "| logistic regression |" in text and "| k-means | 2 |" in text
