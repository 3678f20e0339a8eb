"""training.emotion_train's fitting step on tiny synthetic data (no audio, no shared corpus)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="needs the full profile: the emotion trainer")

from pipeline.emotion import EMOTION_LABELS, build_cnn, configure_tensorflow
from pipeline.paths import PROJECT_ROOT
from training.emotion_train import TrainConfig, _class_weights, _fit


def _data(n: int, seed: int):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(EMOTION_LABELS), n)
    X = rng.normal(0, 1, (n, 32)).astype(np.float32)
    X[np.arange(n), y] += 3.0  # class k raises feature k
    return X, y


@pytest.mark.parametrize("monitor", ["val_loss", "val_accuracy"])
def test_fit_keeps_the_monitored_best_epoch(monitor):
    configure_tensorflow(1)
    X, y = _data(400, 0)
    X_val, y_val = _data(120, 1)
    config = TrainConfig(early_stopping=True, monitor=monitor, patience=2, batch_size=32)
    h = _fit(build_cnn(32, seed=0, dropout=0.1), X, y, X_val, y_val, epochs=12, lr=3e-3, config=config, seed=0)
    curve = np.asarray(h[monitor])
    best = int(np.argmin(curve) if monitor == "val_loss" else np.argmax(curve)) + 1
    assert h["best_epoch"] == best
    assert max(h["val_accuracy"]) > 0.5  # learnable: 8 classes, chance 0.125


def test_fit_rejects_an_unknown_monitor():
    X, y = _data(40, 0)
    with pytest.raises(ValueError, match="monitor"):
        _fit(build_cnn(32, seed=0, dropout=0.1), X, y, X, y, epochs=1, lr=1e-3,
             config=TrainConfig(monitor="accuracy"), seed=0)


def test_fit_without_early_stopping_runs_every_epoch_and_needs_no_val():
    configure_tensorflow(1)
    X, y = _data(200, 0)
    h = _fit(build_cnn(32, seed=0, dropout=0.1), X, y, epochs=3, lr=3e-3,
             config=TrainConfig(early_stopping=False, batch_size=32), seed=0)
    assert len(h["loss"]) == 3 and h["best_epoch"] == 3 and "val_loss" not in h
    with pytest.raises(ValueError, match="validation"):
        _fit(build_cnn(32, seed=0, dropout=0.1), X, y, epochs=1, lr=1e-3,
             config=TrainConfig(early_stopping=True), seed=0)


def test_class_weights_balance_present_classes_only():
    y = np.array([0] * 6 + [1] * 2)
    w = _class_weights(y)
    assert w[0] * 6 == pytest.approx(w[1] * 2) and w[2] == 0.0
    assert sum(w[k] * c for k, c in ((0, 6), (1, 2))) == pytest.approx(len(y))


def _synthetic_rows(config, genders, splits, *, jobs=None):
    """Stand-in for ``training_rows``: learnable 483-dimensional rows for two speakers per gender and split."""
    from pathlib import Path

    from training.corpus import Utterance
    from pipeline.features import DEFAULT_FEATURE_CONFIG, feature_names
    from training.emotion_train import Split

    n_features = len(feature_names(DEFAULT_FEATURE_CONFIG))
    rows = [Utterance(Path(f"{split}/{g}{s}/{i}.wav"), "ravdess", f"{split}_{g}{s}", g,
                      EMOTION_LABELS[i % len(EMOTION_LABELS)], "", "en", split, 2.0)
            for split in splits for g in genders for s in range(2) for i in range(24)]
    rng = np.random.default_rng(len(rows))
    y = np.array([EMOTION_LABELS.index(u.emotion) for u in rows])
    X = rng.normal(0, 1, (len(rows), n_features)).astype(np.float32)
    X[np.arange(len(rows)), y] += 3.0
    clean = Split(X=X, y=y, utterances=rows)
    copies = [Split(X=X + rng.normal(0, 0.1, X.shape).astype(np.float32), y=y, utterances=rows)
              for _ in config.augmentations]
    return clean, copies


@pytest.mark.parametrize("fit_splits, finetune_epochs", [(("train", "val"), 0), (("train",), 2)])
def test_train_family_fits_the_configured_splits(monkeypatch, fit_splits, finetune_epochs):
    import training.emotion_train as te

    configure_tensorflow(1)
    monkeypatch.setattr(te, "training_rows", _synthetic_rows)
    config = TrainConfig(n_seeds=2, epochs=3, finetune_epochs=finetune_epochs, batch_size=32,
                         early_stopping=False, fit_splits=fit_splits, encoder_layers=())  # librosa rows only
    models, history = te.train_family(config, verbose=False)
    assert set(models) == {"pooled", "male", "female"}
    for name, model in models.items():
        training = model.config.training
        assert tuple(training["fit_splits"]) == fit_splits
        assert set(s.split("_")[0] for s in training["train_speakers"]) == set(fit_splits)
        assert (training["n_val_rows"] == 0) == ("val" in fit_splits)
        assert model.predict_proba(np.zeros((2, 483), dtype=np.float32)).shape == (2, len(EMOTION_LABELS))
    assert all(len(h["loss"]) == finetune_epochs for h in history["female"])
    assert all(len(h["loss"]) == 3 for h in history["pooled"])


# --------------------------------------------------------------------------- the recipe (training/recipes/emotion.yaml)


def test_emotion_recipe_is_what_the_shipped_models_record():
    """TrainConfig() is training/recipes/emotion.yaml, and equals the recipe each shipped model's config.json records."""
    import json

    from training.augment import Augmentation
    from training.recipes import load_recipe
    from training.emotion_train import EMOTION_CORPORA

    config = TrainConfig()
    assert load_recipe("emotion") == config
    assert config.augmentations == (Augmentation("speed", factor=0.9), Augmentation("speed", factor=1.1),
                                    Augmentation("noise", snr_db=15.0))
    assert EMOTION_CORPORA == config.corpora == ("ravdess", "savee", "ased", "emovo", "nemo")
    assert config.encoder_layers == (0, 1, 2, 3, 4) and config.encoder_pooling == "mean_std"
    assert config.encoder_combine == "concat"  # the winner of studies/emotion_encoder
    root = PROJECT_ROOT
    for folder in ("male_models", "female_models", "pooled_model"):
        recorded = json.loads((root / folder / "config.json").read_text())["training"]
        assert {k: recorded[k] for k in config.to_dict()} == json.loads(json.dumps(config.to_dict())), folder


def test_emotion_recipe_overrides():
    from dataclasses import replace

    from training.augment import Augmentation
    from training.config import RecipeError, parse_sets
    from training.recipes import load_recipe

    shipped = TrainConfig()
    assert TrainConfig(epochs=3) == replace(shipped, epochs=3) == load_recipe("emotion", {"epochs": "3"})
    c = load_recipe("emotion", parse_sets(["augmentations=[{name: speed, factor: 0.8}]", "fit_splits=train",
                                           "early_stopping=yes", "finetune_learning_rate=1e-4"]))
    assert c.augmentations == (Augmentation("speed", factor=0.8),) and c.fit_splits == ("train",)
    assert c.early_stopping is True and c.finetune_learning_rate == 1e-4 and c.epochs == shipped.epochs
    with pytest.raises(RecipeError, match="unknown key 'n_seed' in the emotion recipe"):
        load_recipe("emotion", {"n_seed": 2})
    with pytest.raises(RecipeError, match="unknown key 'speed'"):
        load_recipe("emotion", {"augmentations": "[{name: speed, speed: 0.8}]"})


def test_pipeline_train_saves_the_resolved_emotion_recipe(monkeypatch, tmp_path):
    """python -m pipeline.train --set emotion.KEY=VALUE trains with that recipe and saves it as recipe.yaml."""
    import training.emotion_train as te
    import training.train as tt
    from training.recipes import load_recipe

    seen = {}

    class Saved:
        def save(self, folder):
            folder.mkdir(parents=True, exist_ok=True)

    def fake_family(config, **kwargs):
        seen["config"] = config
        return {"pooled": Saved(), "male": Saved(), "female": Saved()}, {"pooled": [], "male": [], "female": []}

    monkeypatch.setattr(te, "train_family", fake_family)
    monkeypatch.setattr(tt, "EMOTION_DIRS", {k: tmp_path / k for k in ("male", "female", "pooled")})
    assert tt.main(["--only", "male", "--no-evaluate", "--seeds", "2", "--set", "emotion.epochs=3",
                    "--set", "emotion.fit_splits=train"]) == 0
    expected = TrainConfig(epochs=3, n_seeds=2, fit_splits=("train",))
    assert seen["config"] == expected
    assert load_recipe("emotion", path=tmp_path / "male" / "recipe.yaml") == expected
    assert not (tmp_path / "female").exists()
    with pytest.raises(SystemExit):
        tt.main(["--only", "male", "--no-evaluate", "--set", "emotion.epoch=3"])
    with pytest.raises(SystemExit):
        tt.main(["--only", "male", "--no-evaluate", "--set", "speaker.epochs=3"])
