"""Emotion on a held-out corpus (studies.emotion_holdout): known answers with constant models."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.corpus import Utterance
from pipeline.emotion import EmotionModel
from studies.emotion_holdout.study import main, route_by_gender, run, score_corpus, to_markdown
from pipeline.features import DEFAULT_FEATURE_CONFIG, feature_names
from pipeline.testing import make_emotion_model

N_FEATURES = len(feature_names(DEFAULT_FEATURE_CONFIG))


@pytest.fixture(scope="module")
def constant_models(tmp_path_factory) -> dict[str, EmotionModel]:
    """Models that always answer one label: male "angry", female "sad", pooled "happy", shipped ones swapped."""
    root = tmp_path_factory.mktemp("constant_emotion")
    spec = {"male": "angry", "female": "sad", "pooled": "happy", "shipped_male": "sad", "shipped_female": "sad"}
    return {name: EmotionModel.load(make_emotion_model(root / name, name=name, favourite=label))
            for name, label in spec.items()}


def _rows() -> list[Utterance]:
    """12 clips of corpus ``c``: 4 angry + 2 calm (men), 4 sad + 2 happy (women); one clip per speaker pair."""
    spec = [("male", "angry")] * 4 + [("male", "calm")] * 2 + [("female", "sad")] * 4 + [("female", "happy")] * 2
    return [Utterance(Path(f"c/{i}.wav"), "c", f"c_{g}_{i % 3}", g, e, "", "xx", "test" if i % 2 else "train", 2.0)
            for i, (g, e) in enumerate(spec)]


def test_score_corpus_known_answers(constant_models):
    rows = _rows()
    X = np.zeros((len(rows), N_FEATURES), dtype=np.float32)
    held_out = {k: constant_models[k] for k in ("male", "female", "pooled")}
    shipped = {"male": constant_models["shipped_male"], "female": constant_models["shipped_female"]}
    assert list(route_by_gender(held_out, X[:2], ["male", "female"])) == ["angry", "sad"]
    r = score_corpus("c", rows, X, held_out, trained_labels=["angry", "happy", "sad"], trained_on=["b", "a"],
                     shipped=shipped, n_boot=200)
    assert r.n == 12 and r.trained_on == ["a", "b"]
    assert r.routed["accuracy"] == pytest.approx(8 / 12)   # every angry man and sad woman
    assert r.pooled["accuracy"] == pytest.approx(2 / 12)   # the two happy women
    assert r.per_gender["male"]["accuracy"] == pytest.approx(4 / 6)
    assert r.per_gender["female"]["accuracy"] == pytest.approx(4 / 6)
    assert r.known_labels == ["happy", "sad", "angry"]     # calm was never in training
    assert r.routed_known["accuracy"] == pytest.approx(8 / 10) and r.routed_known["n"] == 10
    assert r.chance == pytest.approx(4 / 12)
    assert r.routed["recall"]["calm"] == 0.0 and r.routed["recall"]["angry"] == 1.0
    assert 0.0 <= r.interval[0] <= 8 / 12 <= r.interval[1] <= 1.0
    # test rows are the odd ones: 2 angry, 1 calm, 2 sad, 1 happy; shipped says sad to all -> 2/6
    assert r.test_unseen["n"] == 6 and r.test_unseen["accuracy"] == pytest.approx(4 / 6)
    assert r.test_seen["accuracy"] == pytest.approx(2 / 6)
    text = to_markdown([r], command="python -m studies.emotion_holdout --out x", n_seeds=5)
    assert "| c | a, b | 12 | 6 | 66.7% |" in text
    assert "| 3 of 4 | 80.0% | 33.3% |" in text
    assert "| c | 6 | 33.3% | 66.7% |" in text


def test_run_holds_the_corpus_out_and_refuses_unknown_ones(constant_models, tmp_path, monkeypatch):
    import training.dataset as dataset
    import training.emotion_train as te
    from training.dataset import FeatureTable

    lines = ["path,corpus,speaker,gender,emotion,intensity,language,split,duration_s"]
    for corpus, emotions in (("ravdess", ("calm", "angry")), ("emovo", ("sad", "angry")), ("ased", ("sad", "happy"))):
        for split in ("train", "val", "test"):
            for g in ("male", "female"):
                for e in emotions:
                    lines.append(f"{corpus}/{split}_{g}_{e}.wav,{corpus},{corpus}_{split}_{g},{g},{e},,xx,{split},2.0")
    (tmp_path / "manifest.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    monkeypatch.setenv("SER_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(dataset, "build_table", lambda rows, **kw: FeatureTable(
        X=np.zeros((len(rows), N_FEATURES), dtype=np.float32), utterances=tuple(rows), ok=np.ones(len(rows), bool)))
    seen = []

    def fake_family(config, **kw):
        seen.append(config)
        return {k: constant_models[k] for k in ("male", "female", "pooled")}, {}

    monkeypatch.setattr(te, "train_family", fake_family)
    results = run(["ravdess"], n_seeds=1, shipped_dirs=None)
    assert seen[0].corpora == ("ased", "emovo") and seen[0].n_seeds == 1
    (r,) = results
    assert r.corpus == "ravdess" and r.n == 12 and r.test_seen is None
    assert r.known_labels == ["angry"]                      # calm exists in neither ased nor emovo
    assert r.routed["accuracy"] == pytest.approx(3 / 12)   # men say angry: right on the 3 angry men
    with pytest.raises(ValueError, match="cannot hold out"):
        run(["librispeech"])
    assert main(["--corpora", "savee-typo", "--out", str(tmp_path / "x")]) == 2


def test_holdout_limit_line_in_the_model_cards():
    """The cards' known limits carry the held-out figures of studies/emotion_holdout/report.json, and stay in step."""
    import json

    from pipeline.paths import PROJECT_ROOT
    from training.cards import _holdout_limit, emotion_card

    assert _holdout_limit(None) == [] and _holdout_limit({"results": []}) == []
    fake = {"results": [{"corpus": "x", "routed": {"accuracy": 0.25}, "chance": 0.125}]}
    (line,) = _holdout_limit(fake)
    assert "x 25.0% (chance 12.5%)" in line and "studies/emotion_holdout/report.md" in line
    metrics = json.loads((PROJECT_ROOT / "reports" / "metrics.json").read_text(encoding="utf-8"))
    holdout = json.loads((PROJECT_ROOT / "studies" / "emotion_holdout" / "report.json").read_text(encoding="utf-8"))
    study = json.loads((PROJECT_ROOT / "studies" / "emotion_encoder" / "report.json").read_text(encoding="utf-8"))
    folder = PROJECT_ROOT / "male_models"
    card = emotion_card(EmotionModel.load(folder), metrics, holdout, study)
    assert card == (folder / "README.md").read_text(encoding="utf-8")
    assert "studies/emotion_encoder/report.md" in card  # the shipped models read the encoder: its study's figures
